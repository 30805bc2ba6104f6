// A browser store that replicates part of a space (`open({ collections })`) against a
// cloud-mode host: only its collections come down (bytes counted at the host, against a
// store of the whole space); its writes elsewhere go up; a token scoped to those
// collections is enough, and refuses more; the store widens and narrows what it holds.
//
//   bash scripts/build-wasm-client.sh && node --test wasm-client/e2e/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CloudHost, launch, mintToken, staticServer, testPage, testRoots, until } from "./harness.mjs";

const SPACE = "part";
let host, web, browser, admin;

before(async () => {
  host = await CloudHost.start({ METRICS_TOKEN: "m" });
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
// What the host has sent on WebSockets so far.
const bytesOut = async () => {
  const r = await fetch(`http://127.0.0.1:${host.apiPort}/metrics`, { headers: { authorization: "Bearer m" } });
  const text = await r.text();
  const line = text.split("\n").find((l) => l.startsWith("sacred_bridge_ws_bytes_out_total "));
  assert.ok(line, text);
  return Number(line.split(" ")[1]);
};
const count = (page, c) => page.evaluate((c) => window.db.list(c, null, 1000).then((docs) => docs.length), c);

test("a store of 2 of 10 collections gets only those, writes elsewhere go up, widens and narrows", async () => {
  for (let c = 0; c < 10; c++) {
    for (let i = 0; i < 20; i++) await put(`c${c}/d${i}`, { c, i });
  }
  // A token that reads and writes c1 and c2 only (and reads nothing else).
  const scoped = mintToken(host.dir, SPACE, "read", "c1:write,c2:write");
  // A store of the whole space first, for the bytes it costs.
  const whole = await testPage(await browser.newContext(), web.url);
  let before = await bytesOut();
  await whole.evaluate(([o]) => window.openBridge(o), [{ url: host.url, space: SPACE, token: admin, name: "whole" }]);
  await until("the whole space arrived", async () => (await count(whole, "c9")) === 20);
  const wholeBytes = (await bytesOut()) - before;
  await whole.evaluate(() => window.db.close());
  const ctx = await browser.newContext();
  const page = await testPage(ctx, web.url);
  const open = (collections, token) =>
    page.evaluate(([o]) => window.openBridge(o).then(() => null, (e) => ({ code: e.code, message: e.message })), [
      { url: host.url, space: SPACE, token, name: "part", collections },
    ]);
  before = await bytesOut();
  assert.equal(await open(["c1", "c2"], scoped), null);
  await until("c1 and c2 arrived", async () => (await count(page, "c1")) === 20 && (await count(page, "c2")) === 20);
  // Two collections of ten: about a fifth of the bytes (each store also gets the handshake,
  // `_config` and presence).
  const partBytes = (await bytesOut()) - before;
  assert.ok(partBytes < wholeBytes * 0.4, `2 of 10 collections took ${partBytes} bytes, the whole space ${wholeBytes}`);
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
  // The scoped token does not read c3: widening to it is refused, and the store goes on
  // with c1 and c2.
  const refused = await page.evaluate(() =>
    window.db.subscribeCollections(["c1", "c2", "c3"]).then(() => null, (e) => ({ code: e.code, message: e.message })),
  );
  assert.equal(refused?.code, "forbidden", JSON.stringify(refused));
  await put("c2/after", { after: true });
  await until("c2/after arrived", async () => (await get(page, "c2", "after"))?.after === true);
  assert.equal(await count(page, "c3"), 0);
  await page.evaluate(() => window.db.close());

  // The same store opened for c2 and c3 with a token that reads them: it gets c3 whole,
  // and drops c1 (its own write there included, which the host holds).
  assert.equal(await open(["c2", "c3"], admin), null);
  await page.evaluate(() => window.db.subscribeCollections(["c3", "c2"]));
  assert.equal(await count(page, "c3"), 20);
  await until("c1 dropped", async () => (await count(page, "c1")) === 0);
  assert.equal(await count(page, "c2"), 22);
  assert.equal(await get(page, "c1", "mine"), null);
  await put("c3/late", { late: true });
  await put("c1/late", { late: true });
  await until("c3/late arrived", async () => (await get(page, "c3", "late"))?.late === true);
  assert.equal(await get(page, "c1", "late"), null);
  // The store was created partial: opening it for the whole space is refused, with why.
  await page.evaluate(() => window.db.close());
  const whole2 = await open(undefined, admin);
  assert.equal(whole2?.code, "bad_request", JSON.stringify(whole2));
  assert.match(whole2.message, /stays one/);

  // A store of c1 with a write token (not scoped) writes blind to c5: it goes up, and the
  // host's own version of c5/d0 stays beside it.
  const writer = mintToken(host.dir, SPACE, "write");
  const page2 = await testPage(await browser.newContext(), web.url);
  await page2.evaluate(([o]) => window.openBridge(o), [
    { url: host.url, space: SPACE, token: writer, name: "blind", collections: ["c1"] },
  ]);
  await until("c1 arrived", async () => (await count(page2, "c1")) === 22);
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
