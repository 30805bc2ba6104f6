// A browser store that replicates part of a space (`open({ collections })`) against a
// cloud-mode host: only its collections come down; its writes elsewhere go up; a token
// scoped to those collections is enough; the store keeps its collections for life.
//
//   bash scripts/build-wasm-client.sh && node --test wasm-client/e2e/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CloudHost, launch, mintToken, staticServer, testPage, testRoots, until } from "./harness.mjs";

const SPACE = "part";
let host, web, browser, admin;

before(async () => {
  host = await CloudHost.start();
  admin = mintToken(host.dir, SPACE, "admin");
  web = await staticServer(testRoots());
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await web?.close();
  await host?.stop();
});

const put = async (path, value) => {
  const r = await fetch(`http://127.0.0.1:${host.apiPort}/v1/spaces/${SPACE}/docs/${path}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
    body: JSON.stringify(value),
  });
  assert.equal(r.status, 200, `${path}: ${await r.text()}`);
};
const status = (page) => page.evaluate(() => window.db.status());
const get = (page, c, id) => page.evaluate(([c, id]) => window.db.get(c, id), [c, id]);
const count = (page, c) => page.evaluate((c) => window.db.list(c, null, 1000).then((docs) => docs.length), c);

test("a store of 2 of 10 collections gets only those, writes elsewhere go up, and it keeps its collections", async () => {
  for (let c = 0; c < 10; c++) {
    for (let i = 0; i < 20; i++) await put(`c${c}/d${i}`, { c, i });
  }
  // A token that reads and writes c1 and c2 only (and reads nothing else).
  const scoped = mintToken(host.dir, SPACE, "read", "c1:write,c2:write");
  const ctx = await browser.newContext();
  const page = await testPage(ctx, web.url);
  const open = (collections, token) =>
    page.evaluate(([o]) => window.openBridge(o).then(() => null, (e) => ({ code: e.code, message: e.message })), [
      { url: host.url, space: SPACE, token, name: "part", collections },
    ]);
  assert.equal(await open(["c1", "c2"], scoped), null);
  await until("c1 and c2 arrived", async () => (await count(page, "c1")) === 20 && (await count(page, "c2")) === 20);
  assert.equal(await count(page, "c3"), 0);
  assert.equal(await get(page, "c7", "d0"), null);
  assert.equal((await get(page, "c2", "d5")).i, 5);
  // A write of its own goes up; a later write on the host comes down, and one of another
  // collection made before it does not.
  await page.evaluate(() => window.db.put("c1", "mine", { by: "browser" }));
  await until("acknowledged", async () => (await status(page)).pending === 0);
  assert.equal((await host.get(`/v1/spaces/${SPACE}/docs/c1/mine`, admin)).body.value.by, "browser");
  await put("c9/late", { late: true });
  await put("c2/late", { late: true });
  await until("c2/late arrived", async () => (await get(page, "c2", "late"))?.late === true);
  assert.equal(await get(page, "c9", "late"), null);
  const s = await status(page);
  assert.equal(s.online, true);
  assert.equal(s.error, null, `no sync error: ${s.error}`);
  await page.evaluate(() => window.db.close());

  // The same store opened for other collections: refused, with why.
  const refused = await open(["c1", "c2", "c3"], admin);
  assert.equal(refused?.code, "bad_request", JSON.stringify(refused));
  assert.match(refused.message, /keeps its collections for life/);

  // A store of c1 with a write token (not scoped) writes blind to c5: it goes up, and the
  // host's own version of c5/d0 stays beside it.
  const writer = mintToken(host.dir, SPACE, "write");
  const page2 = await testPage(await browser.newContext(), web.url);
  await page2.evaluate(([o]) => window.openBridge(o), [
    { url: host.url, space: SPACE, token: writer, name: "blind", collections: ["c1"] },
  ]);
  await until("c1 arrived", async () => (await count(page2, "c1")) === 21);
  await page2.evaluate(() => window.db.put("c5", "d0", { by: "blind" }));
  await until("acknowledged", async () => (await status(page2)).pending === 0);
  // Under lww (the default) the newer version shows: the browser's.
  const doc = await host.get(`/v1/spaces/${SPACE}/docs/c5/d0`, admin);
  assert.equal(doc.body.value.by, "blind", JSON.stringify(doc.body));
  // It never gets the host's version of c5/d0 back: its copy holds its own write only.
  assert.deepEqual(await get(page2, "c5", "d0"), { by: "blind" });
  assert.equal(await get(page2, "c5", "d1"), null);
  await ctx.close();
});
