// End to end in headless Chromium against a native host in cloud mode: two browser
// profiles edit the same documents, one goes offline, both edit, it comes back and both
// converge under every policy; a manual conflict is resolved from one side and reaches the
// other and the host; a reload while the cloud is unreachable keeps pending writes.
//
//   bash scripts/build-wasm-client.sh && node --test wasm-client/e2e/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CloudHost, launch, mintToken, staticServer, testPage, testRoots, until } from "./harness.mjs";

const SPACE = "team";
let host, web, browser, token;

before(async () => {
  host = await CloudHost.start();
  token = mintToken(host.dir, SPACE);
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
  await page.evaluate((o) => window.openBridge(o), { url: host.url, space: SPACE, token, name });
  await until(`${name} online`, async () => (await status(page)).online);
  return page;
}

const POLICIES = ["lww", "merge", "cloud_wins", "local_wins", "manual"];

test("two profiles converge after one edits offline, under every policy", async () => {
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  const a = await openOn(ctxA, "alice");
  const b = await openOn(ctxB, "bob");
  assert.notEqual(
    await a.evaluate(() => window.db.replica),
    await b.evaluate(() => window.db.replica),
    "each profile has its own replica id",
  );

  // Policies and a first version of every document, from A; B sees them all.
  await a.evaluate(async (policies) => {
    for (const p of policies) {
      await window.db.setPolicy(`c_${p}`, p);
      await window.db.put(`c_${p}`, "doc", { title: "v0", a: 0, b: 0 });
    }
  }, POLICIES);
  for (const p of POLICIES) {
    await until(`B has c_${p}/doc`, async () => (await get(b, `c_${p}`, "doc"))?.title === "v0");
    assert.equal(await b.evaluate((c) => window.db.policy(c), `c_${p}`), p);
  }
  await until("A synced (cloud acknowledged)", async () => (await status(a)).pending === 0);
  const sa = await status(a);
  assert.equal(sa.peerTier, "cloud");
  assert.ok(sa.lastCloudAck > 0);

  // B goes offline; both edit the same documents.
  await ctxB.setOffline(true);
  await until("B offline", async () => !(await status(b)).online);
  await a.evaluate(async (policies) => {
    for (const p of policies) await window.db.patch(`c_${p}`, "doc", { a: 1, title: "from A" });
  }, POLICIES);
  await b.evaluate(async (policies) => {
    for (const p of policies) await window.db.patch(`c_${p}`, "doc", { b: 2, title: "from B" });
    await window.db.put("notes", "offline-only", { made: "offline" });
  }, POLICIES);
  const offline = await status(b);
  assert.equal(offline.online, false);
  assert.equal(offline.pending, POLICIES.length + 1, "B's offline writes are pending");

  // B comes back: its writes go up, A's come down, both show the same thing.
  await ctxB.setOffline(false);
  await until("B synced", async () => (await status(b)).pending === 0, 20_000);
  for (const p of POLICIES) {
    const c = `c_${p}`;
    const both = await until(`${c} converged`, async () => {
      const [va, vb] = [await get(a, c, "doc"), await get(b, c, "doc")];
      return JSON.stringify(va) === JSON.stringify(vb) && va.title !== "v0" && [va, vb];
    });
    const v = both[0];
    if (p === "merge") assert.deepEqual({ a: v.a, b: v.b }, { a: 1, b: 2 }, "merge keeps both fields");
    if (p === "cloud_wins" || p === "local_wins") {
      // Both writers are local-tier browsers: authority cannot break the tie; stamps do.
      assert.ok(v.title === "from A" || v.title === "from B");
    }
  }
  assert.deepEqual(await get(a, "notes", "offline-only"), { made: "offline" });

  // The manual collection has an open conflict on both sides, with the same sides.
  const conflictsA = await until("A sees the conflict", async () => {
    const cs = await a.evaluate(() => window.db.conflicts("c_manual"));
    return cs.length === 1 && cs;
  });
  const conflictsB = await b.evaluate(() => window.db.conflicts("c_manual"));
  assert.deepEqual(conflictsB, conflictsA);
  assert.deepEqual(conflictsA[0].fields.sort(), ["a", "b", "title"]);
  const hostConflicts = await host.get(`/v1/spaces/${SPACE}/conflicts?collection=c_manual`, token);
  assert.equal(hostConflicts.status, 200);

  // Resolved in A: the resolution reaches B and the host.
  await a.evaluate(() => window.db.resolve("c_manual", "doc", { title: "agreed", a: 1, b: 2 }));
  await until("B sees the resolution", async () => (await get(b, "c_manual", "doc"))?.title === "agreed");
  assert.equal((await b.evaluate(() => window.db.conflicts())).length, 0);
  await until("the host has the resolution", async () => {
    const r = await host.get(`/v1/spaces/${SPACE}/docs/c_manual/doc`, token);
    return r.body?.value?.title === "agreed";
  });

  // Messages cross too, each once.
  await a.evaluate(() => window.db.send("chat", { text: "hi from A" }));
  await until("B got the message", () =>
    b.evaluate(() => window.events.messages.some((e) => e.m.payload.text === "hi from A")));
  assert.equal(
    await b.evaluate(() => window.events.messages.filter((e) => e.m.payload.text === "hi from A").length),
    1,
  );
  // Presence: B sees A (through the cloud) and itself.
  const names = await b.evaluate(() => window.db.presence().map((p) => p.name));
  assert.ok(names.includes("alice") && names.includes("bob"), JSON.stringify(names));

  await ctxA.close();
  await ctxB.close();
});

test("a reload while the cloud is unreachable keeps pending writes, which go up later", async () => {
  const ctx = await browser.newContext();
  let page = await openOn(ctx, "carol");
  await page.evaluate(() => window.db.put("notes", "before", { n: 0 }));
  await until("synced", async () => (await status(page)).pending === 0);

  await host.kill();
  await until("offline", async () => !(await status(page)).online);
  await page.evaluate(async () => {
    for (let i = 1; i <= 3; i++) await window.db.put("notes", `pending-${i}`, { n: i });
  });
  assert.equal((await status(page)).pending, 3);

  await page.reload();
  await page.waitForFunction(() => document.title === "ready");
  await page.evaluate((o) => window.openBridge(o), { url: host.url, space: SPACE, token, name: "carol" });
  const s = await status(page);
  assert.equal(s.online, false);
  assert.equal(s.pending, 3, "pending writes survived the reload");
  assert.deepEqual(await get(page, "notes", "pending-2"), { n: 2 });

  await host.restart();
  await page.evaluate(() => window.db.syncNow());
  await until("pending writes acknowledged by the cloud", async () => (await status(page)).pending === 0, 30_000);
  const r = await host.get(`/v1/spaces/${SPACE}/docs/notes/pending-3`, token);
  assert.deepEqual(r.body.value, { n: 3 });
  await ctx.close();
});

test("browser stores larger than their cache budget sync both ways, reopen, and serve every document, list and conflict", async () => {
  const N = 2000;
  const BUDGET = 64 * 1024;
  const open = async (context, name) => {
    const page = await testPage(context, web.url);
    await page.evaluate((o) => window.openBridge(o), {
      url: host.url, space: SPACE, token, name, db: "big", cacheBytes: BUDGET,
    });
    await until(`${name} online`, async () => (await status(page)).online);
    return page;
  };
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  const a = await open(ctxA, "big-a");
  await a.evaluate(async (n) => {
    await window.db.setPolicy("big_manual", "manual");
    for (let round = 0; round < n / 500; round++) {
      const writes = [];
      for (let i = round * 500; i < (round + 1) * 500; i++) {
        const id = `d${String(i).padStart(5, "0")}`;
        writes.push(window.db.put("big", id, { n: i, title: `Item number ${i}` }));
      }
      await Promise.all(writes);
    }
    for (let i = 0; i < 5; i++) await window.db.put("big_manual", `m${i}`, { v: 0 });
  }, N);
  // Uploaded through the live-dot index, far more than the cache holds.
  await until("A's writes acknowledged by the cloud", async () => (await status(a)).pending === 0, 60_000);
  const r = await host.get(`/v1/spaces/${SPACE}/docs/big/d01999`, token);
  assert.deepEqual(r.body.value, { n: 1999, title: "Item number 1999" });

  // A fresh profile downloads everything into its own small-budget store.
  const b = await open(ctxB, "big-b");
  await until("B has every document", async () => (await b.evaluate(() => window.db.docCount())) >= N + 5 + 1, 60_000);
  await until("B has the conflict policy", async () => (await b.evaluate(() => window.db.policy("big_manual"))) === "manual");
  // Both edit the manual documents while A is offline: five conflicts.
  await ctxA.setOffline(true);
  await until("A offline", async () => !(await status(a)).online);
  await a.evaluate(async () => { for (let i = 0; i < 5; i++) await window.db.put("big_manual", `m${i}`, { v: "a" }); });
  await b.evaluate(async () => { for (let i = 0; i < 5; i++) await window.db.put("big_manual", `m${i}`, { v: "b" }); });
  await ctxA.setOffline(false);
  for (const p of [a, b]) {
    await until("five conflicts", async () => (await p.evaluate(() => window.db.conflicts("big_manual"))).length === 5, 30_000);
  }

  // Reopened (a reload: nothing in memory), each store serves it all, within its budget.
  for (const [page, name] of [[a, "big-a"], [b, "big-b"]]) {
    await page.reload();
    await page.waitForFunction(() => document.title === "ready");
    await page.evaluate((o) => window.openBridge(o), {
      space: SPACE, token, name, db: "big", cacheBytes: BUDGET,
    });
    const seen = await page.evaluate(async (n) => {
      const db = window.db;
      const gets = [];
      for (let i = 0; i < n; i++) gets.push(db.get("big", `d${String(i).padStart(5, "0")}`));
      const docs = await Promise.all(gets);
      const bad = docs.findIndex((d, i) => d?.n !== i || d?.title !== `Item number ${i}`);
      const ids = [];
      for (let after = null; ;) {
        const page = await db.list("big", after, 128);
        ids.push(...page.map((d) => d.id));
        if (page.length < 128) break;
        after = page[page.length - 1].id;
      }
      const conflicts = (await db.conflicts()).map((c) => `${c.id}:${c.sides.length}`);
      const stats = db.stats();
      return { bad, ids: ids.length, sorted: ids.every((id, i) => i === 0 || ids[i - 1] < id), conflicts, stats };
    }, N);
    assert.equal(seen.bad, -1, `${name}: every document reads back`);
    assert.equal(seen.ids, N, `${name}: list pages complete`);
    assert.ok(seen.sorted, `${name}: list pages in order`);
    assert.deepEqual(seen.conflicts, ["m0:2", "m1:2", "m2:2", "m3:2", "m4:2"], name);
    assert.equal(seen.stats.cacheBudget, BUDGET);
    assert.ok(seen.stats.cacheBytes > 0 && seen.stats.cacheBytes <= BUDGET, `${name}: ${seen.stats.cacheBytes} bytes cached`);
  }
  await ctxA.close();
  await ctxB.close();
});

test("a link that goes silent is noticed by the heartbeat and redialled", async () => {
  const ctx = await browser.newContext();
  const page = await testPage(ctx, web.url);
  await page.evaluate((o) => window.openBridge(o), { url: host.url, space: SPACE, token, name: "dave", heartbeatMs: 200 });
  await until("online", async () => (await status(page)).online);
  host.pause();
  try {
    await until("the silent link is dropped", async () => !(await status(page)).online, 5_000);
    await page.evaluate(() => window.db.put("notes", "while-silent", { n: 1 }));
  } finally {
    host.resume();
  }
  await until("back online and synced", async () => {
    const s = await status(page);
    return s.online && s.pending === 0;
  }, 30_000);
  const r = await host.get(`/v1/spaces/${SPACE}/docs/notes/while-silent`, token);
  assert.deepEqual(r.body.value, { n: 1 });
  await ctx.close();
});

test("two tabs of one profile share one store: one upload, and closing the leader hands over", async () => {
  const ctx = await browser.newContext();
  const tabsToken = mintToken(host.dir, "tabs");
  const open = (page, name) =>
    page.evaluate((o) => window.openBridge(o), { url: host.url, space: "tabs", token: tabsToken, name });
  const tab1 = await testPage(ctx, web.url);
  await open(tab1, "tab-1");
  await until("tab 1 online", async () => (await status(tab1)).online);
  const tab2 = await testPage(ctx, web.url);
  await open(tab2, "tab-2");
  assert.equal(await tab1.evaluate(() => window.db.role), "leader");
  assert.equal(await tab2.evaluate(() => window.db.role), "follower");
  await until("tab 2 mirrors the leader's status", async () => (await status(tab2)).online);

  // Writes from the follower go through the leader: one store, one link, one upload.
  await tab2.evaluate(async () => {
    for (let i = 0; i < 20; i++) await window.db.put("notes", `t2-${i}`, { i });
  });
  assert.deepEqual(await get(tab1, "notes", "t2-19"), { i: 19 });
  assert.deepEqual(await get(tab2, "notes", "t2-19"), { i: 19 });
  await until("synced", async () => (await status(tab1)).pending === 0);
  const st = await host.get("/v1/status", tabsToken);
  const space = st.body.spaces.find((s) => s.space === "tabs");
  assert.equal(space.sessions, 1, "one link for both tabs");
  // The 20 notes, and the space's configuration (`_config/space`, the host's default-policy
  // seed, written when the space was created).
  assert.equal(space.docs, 21);

  // The leader's tab closes with a write of tab 2 in flight: tab 2 takes over, nothing lost.
  const pending = tab2.evaluate(() => window.db.put("notes", "during-handover", { ok: true }));
  await tab1.close();
  await pending;
  await until("tab 2 leads", async () => (await tab2.evaluate(() => window.db.role)) === "leader");
  await tab2.evaluate(() => window.db.put("notes", "after", { ok: true }));
  await until("tab 2 online and synced", async () => {
    const s = await status(tab2);
    return s.online && s.pending === 0;
  });
  for (const id of ["during-handover", "after"]) {
    const r = await host.get(`/v1/spaces/tabs/docs/notes/${id}`, tabsToken);
    assert.deepEqual(r.body.value, { ok: true }, id);
  }
  await ctx.close();
});
