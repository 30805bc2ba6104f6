// The web inspector served by the native host (http://127.0.0.1:<api port>/): a manual
// conflict made by a second browser profile appears there side by side, is resolved with
// "Save edit", and the resolution reaches the other profile and the host. Screenshots are
// saved under artifacts/ (the repository's ignored artifact folder).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { CloudHost, launch, mintToken, repo, staticServer, testPage, testRoots, until } from "./harness.mjs";

const SPACE = "team";
const ARTIFACTS = process.env.ARTIFACTS_DIR || join(repo, "artifacts");
let host, web, browser, token;

before(async () => {
  host = await CloudHost.start();
  token = mintToken(host.dir, SPACE);
  web = await staticServer(testRoots());
  browser = await launch();
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await web?.close();
  await host?.stop();
});

test("a manual conflict is shown in the inspector and resolved there", async () => {
  const ctxI = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const inspector = await ctxI.newPage();
  inspector.on("pageerror", (e) => console.error("inspector error:", e));
  // The token goes in the fragment, which the browser never sends; the page takes it into
  // the form and drops it from the address bar.
  const q = new URLSearchParams({ space: SPACE, name: "inspector" });
  const seen = [];
  inspector.on("request", (r) => seen.push(r.url()));
  await inspector.goto(`http://127.0.0.1:${host.apiPort}/?${q}#token=${token}`);
  await until("inspector online", async () =>
    (await inspector.textContent("#status-text"))?.startsWith("online"));
  assert.equal(await inspector.inputValue("#connect input[name=url]"), host.url);
  assert.ok(!inspector.url().includes(token), `the token left the address bar: ${inspector.url()}`);
  assert.ok(seen.length > 0 && seen.every((u) => !u.includes(token)), "no request carries the token in its URL");

  // Through the UI: a `tasks` collection with policy manual and a first document.
  await inspector.fill("#new-collection input", "tasks");
  await inspector.click("#new-collection button");
  await inspector.selectOption("#policy", "manual");
  await inspector.fill("#editor input[name=id]", "t1");
  await inspector.fill("#editor textarea", JSON.stringify({ title: "draft", owner: "ann" }));
  await inspector.click("#editor button[type=submit]");
  await inspector.waitForSelector('#docs tr[data-id="t1"]');

  // Bob, in another profile, has it too; he goes offline and both edit t1.
  const ctxB = await browser.newContext();
  const bob = await testPage(ctxB, web.url);
  await bob.evaluate((o) => window.openBridge(o), { url: host.url, space: SPACE, token, name: "bob" });
  await until("bob has t1 under manual", () =>
    bob.evaluate(async () => (await window.db.get("tasks", "t1"))?.title === "draft" && window.db.policy("tasks") === "manual"));
  await ctxB.setOffline(true);
  await until("bob offline", () => bob.evaluate(() => !window.db.status().online));
  await bob.evaluate(() => window.db.patch("tasks", "t1", { owner: "bob" }));
  await inspector.fill("#editor textarea", JSON.stringify({ title: "final", owner: "ann" }));
  await inspector.click("#editor button[type=submit]");
  await until("saved", async () => (await inspector.textContent("#editor-msg")) === "saved");
  await ctxB.setOffline(false);

  // The conflict appears in the inspector, both sides, differing fields marked.
  const card = inspector.locator('.conflict[data-key="tasks/t1"]');
  await card.waitFor({ timeout: 15_000 });
  assert.equal(await inspector.textContent("#conflict-count"), "1");
  const diffs = await card.locator("td.diff").count();
  assert.equal(diffs, 4, "title and owner differ, on both sides");
  await inspector.fill("#new-collection input", "");
  await inspector.fill("#send input[name=payload]", '{"text": "resolving t1"}');
  await inspector.click("#send button");
  await inspector.waitForSelector("#messages li");
  await inspector.screenshot({ path: join(ARTIFACTS, "inspector-conflict.png"), fullPage: true });

  // Save an edit that takes a field from each side.
  await card.locator('[data-testid="resolve-edit"]').fill(JSON.stringify({ title: "final", owner: "bob" }));
  await card.locator('[data-testid="save-edit"]').click();
  await inspector.waitForSelector(".conflict", { state: "detached" });
  assert.equal(await inspector.textContent("#conflict-count"), "0");

  // The resolution reaches Bob and the host; Bob got the message too.
  await until("bob sees the resolution", () => bob.evaluate(async () =>
    (await window.db.get("tasks", "t1"))?.title === "final" && (await window.db.conflicts()).length === 0));
  assert.deepEqual(await bob.evaluate(() => window.db.get("tasks", "t1")), { title: "final", owner: "bob" });
  await until("host has the resolution", async () => {
    const r = await host.get(`/v1/spaces/${SPACE}/docs/tasks/t1`, token);
    return r.body?.value?.owner === "bob" && !r.body.conflict;
  });
  await until("bob got the message", () =>
    bob.evaluate(() => window.events.messages.some((e) => e.m.payload?.text === "resolving t1")));
  await until("inspector synced", async () => (await inspector.textContent("#status-text"))?.includes("synced"));
  await inspector.screenshot({ path: join(ARTIFACTS, "inspector-resolved.png"), fullPage: true });
  await ctxI.close();
  await ctxB.close();
});

test("an inspector of part of a space shows what it holds and adds a collection", async () => {
  const put = async (path) => {
    const r = await fetch(`http://127.0.0.1:${host.apiPort}/v1/spaces/${SPACE}/docs/${path}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ path }),
    });
    assert.equal(r.status, 200, await r.text());
  };
  for (const path of ["notes/n1", "notes/n2", "audit/a1"]) await put(path);
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const inspector = await ctx.newPage();
  inspector.on("pageerror", (e) => console.error("inspector error:", e));
  const q = new URLSearchParams({ space: SPACE, name: "partial", collections: "notes" });
  await inspector.goto(`http://127.0.0.1:${host.apiPort}/?${q}#token=${token}`);
  await until("inspector online", async () =>
    (await inspector.textContent("#status-text"))?.startsWith("online"));
  const collections = () => inspector.$$eval("#collections li span:first-child", (s) => s.map((x) => x.textContent));
  await until("notes shown", async () => (await collections()).includes("notes"));
  assert.equal(await inspector.textContent("#holds"), "notes");
  assert.ok(!(await collections()).includes("audit"), `${await collections()}`);
  // Add `audit`: the store gets it, and says it holds both.
  await inspector.fill("#replicate input", "audit");
  await inspector.click("#replicate button");
  await until("audit replicated", async () => (await inspector.textContent("#holds-msg")) === "replicating audit");
  assert.equal(await inspector.textContent("#holds"), "audit, notes");
  await until("audit shown", async () => (await collections()).includes("audit"));
  assert.ok(inspector.url().includes("collections=audit"), inspector.url());
  await inspector.screenshot({ path: join(ARTIFACTS, "inspector-partial.png"), fullPage: true });
  await ctx.close();
});
