// Two browser profiles sync through the edge relay (the Durable Object under wrangler's dev server)
// instead of the native host: one goes offline, both edit, both converge. Run by
// tests/tests/edge_browser.rs, which starts wrangler's dev server and passes EDGE_URL and EDGE_TOKEN.
import assert from "node:assert/strict";
import { launch, staticServer, testPage, testRoots, until } from "./harness.mjs";

const url = process.env.EDGE_URL;
const token = process.env.EDGE_TOKEN;
const space = process.env.EDGE_SPACE ?? "team";
if (!url || !token) throw new Error("EDGE_URL and EDGE_TOKEN are required");

const web = await staticServer(testRoots());
const browser = await launch();
try {
  const status = (p) => p.evaluate(() => window.db.status());
  const get = (p, c, id) => p.evaluate(([c, id]) => window.db.get(c, id), [c, id]);
  const openOn = async (ctx, name) => {
    const page = await testPage(ctx, web.url);
    await page.evaluate((o) => window.openBridge(o), { url, space, token, name });
    await until(`${name} online`, async () => (await status(page)).online, 30_000);
    return page;
  };
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  const a = await openOn(ctxA, "alice");
  const b = await openOn(ctxB, "bob");

  await a.evaluate(async () => {
    await window.db.setPolicy("tasks", "merge");
    await window.db.put("tasks", "t1", { title: "v0", owner: "ann", done: false });
  });
  await until("B has t1", async () => (await get(b, "tasks", "t1"))?.title === "v0");
  await until("A synced", async () => (await status(a)).pending === 0);
  assert.equal((await status(a)).peerTier, "cloud");

  await ctxB.setOffline(true);
  await until("B offline", async () => !(await status(b)).online);
  await a.evaluate(() => window.db.patch("tasks", "t1", { title: "from A" }));
  await b.evaluate(() => window.db.patch("tasks", "t1", { done: true }));
  await ctxB.setOffline(false);
  await until("B synced", async () => (await status(b)).pending === 0, 30_000);
  const both = await until("converged", async () => {
    const [va, vb] = [await get(a, "tasks", "t1"), await get(b, "tasks", "t1")];
    return JSON.stringify(va) === JSON.stringify(vb) && va.done === true && va.title === "from A" && va;
  });
  assert.deepEqual(both, { title: "from A", owner: "ann", done: true });

  await a.evaluate(() => window.db.send("chat", { text: "via the edge" }));
  await until("B got the message", () =>
    b.evaluate(() => window.events.messages.some((e) => e.m.payload?.text === "via the edge")));
  console.log("edge-browser: two profiles converged through the edge relay");
} finally {
  await browser.close();
  await web.close();
}
