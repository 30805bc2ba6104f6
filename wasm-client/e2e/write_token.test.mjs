// Browsers with a `write` token (the usual production case) against a cloud-mode host: the
// host's `welcome` says the session may introduce only its own writes, and the browser's
// engine sends exactly those. Both profiles' writes, made online and offline, reach each
// other and the host; a policy set on the browser's own store (it is admin there) is never
// sent, and the browser is never closed for it.
//
//   bash scripts/build-wasm-client.sh && node --test wasm-client/e2e/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CloudHost, launch, mintToken, staticServer, testPage, testRoots, until } from "./harness.mjs";

const SPACE = "wt";
let host, web, browser, writeToken, adminToken;

before(async () => {
  host = await CloudHost.start();
  writeToken = mintToken(host.dir, SPACE, "write");
  adminToken = mintToken(host.dir, SPACE, "admin");
  web = await staticServer(testRoots());
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await web?.close();
  await host?.stop();
});

const status = (page) => page.evaluate(() => window.db.status());
const get = (page, c, id) => page.evaluate(([c, id]) => window.db.get(c, id), [c, id]);

async function openOn(context, name) {
  const page = await testPage(context, web.url);
  await page.evaluate((o) => window.openBridge(o), { url: host.url, space: SPACE, token: writeToken, name });
  await until(`${name} online`, async () => (await status(page)).online);
  return page;
}

test("write-token browsers sync their own writes both ways and are never closed for the rest", async () => {
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  const a = await openOn(ctxA, "alice");
  const b = await openOn(ctxB, "bob");

  await a.evaluate(() => window.db.put("notes", "a1", { by: "alice" }));
  await until("B sees a1", async () => (await get(b, "notes", "a1"))?.by === "alice");

  // A policy on A's own store: `_config` needs admin on the host, so it never goes up.
  await a.evaluate(() => window.db.setPolicy("notes", "merge"));
  await a.evaluate(() => window.db.put("notes", "a2", { by: "alice", after: "policy" }));
  await until("B sees a2", async () => (await get(b, "notes", "a2"))?.after === "policy");
  await until("A fully acknowledged", async () => (await status(a)).pending === 0);
  const sa = await status(a);
  assert.equal(sa.online, true, "A was not closed");
  assert.equal(sa.error, null, `no sync error: ${sa.error}`);

  // B edits offline, comes back: its writes go up and reach A.
  await ctxB.setOffline(true);
  await until("B offline", async () => !(await status(b)).online);
  await b.evaluate(() => window.db.patch("notes", "a1", { edited: "offline by bob" }));
  await ctxB.setOffline(false);
  await until("B back and acknowledged", async () => {
    const s = await status(b);
    return s.online && s.pending === 0;
  });
  await until("A sees B's offline edit", async () => (await get(a, "notes", "a1"))?.edited === "offline by bob");

  // The host has both profiles' documents, and its policy of `notes` is still the default.
  const doc = await host.get(`/v1/spaces/${SPACE}/docs/notes/a2`, adminToken);
  assert.equal(doc.status, 200);
  assert.equal(doc.body.value.after, "policy");
  // A's local policy stayed on A: B (which gets the space's configuration from the host)
  // still has the default for `notes`.
  assert.equal(await a.evaluate(() => window.db.policy("notes")), "merge");
  assert.equal(await b.evaluate(() => window.db.policy("notes")), "lww");
  await ctxA.close();
  await ctxB.close();
});
