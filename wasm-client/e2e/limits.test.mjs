// The browser store never accepts what it cannot keep, read back or sync, and never refuses
// to open over one bad record; a forwarded call is done once across a tab hand-over.
// Written against wasm-client/README.md and the .d.ts: only what a page can do.
//
//   bash scripts/build-wasm-client.sh && node --test wasm-client/e2e/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CloudHost, launch, mintToken, staticServer, testPage, testRoots, until } from "./harness.mjs";

let host, web, browser;

before(async () => {
  host = await CloudHost.start();
  web = await staticServer(testRoots());
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await web?.close();
  await host?.stop();
});

const status = (page) => page.evaluate(() => window.db.status());

async function openOn(page, options) {
  await page.evaluate((o) => window.openBridge(o), options);
}

async function reopen(page, options) {
  await page.evaluate(() => window.db.close());
  await page.reload();
  await page.waitForFunction(() => document.title === "ready");
  // open() must not fail after whatever the page did before.
  return page.evaluate(async (o) => {
    try {
      await window.openBridge(o);
      return { ok: true };
    } catch (e) {
      return { ok: false, message: String(e && e.message) };
    }
  }, options);
}

test("limits are checked before anything is stored, as promise rejections with a code", async () => {
  const space = "limits";
  const token = mintToken(host.dir, space);
  const options = { url: host.url, space, token, name: "limits" };
  const ctx = await browser.newContext();
  const page = await testPage(ctx, web.url);
  await openOn(page, options);
  await until("online", async () => (await status(page)).online);

  const results = await page.evaluate(async () => {
    const db = window.db;
    // `levels` nested objects, the document itself being the first.
    const nested = (levels) => {
      let v = 1;
      for (let i = 1; i < levels; i++) v = { a: v };
      return { a: v };
    };
    // Calls a verb the way a page written from the README would: `.then/.catch` on what it
    // returns. A synchronous throw is recorded as such.
    const outcome = async (f) => {
      let p;
      try {
        p = f();
      } catch (e) {
        return { sync: true, name: e?.name, code: e?.code, message: String(e?.message) };
      }
      if (!(p instanceof Promise)) return { notPromise: true };
      try {
        await p;
        return { resolved: true };
      } catch (e) {
        return { rejected: true, code: e?.code, message: String(e?.message) };
      }
    };
    const out = {};
    out.depth64 = await outcome(() => db.put("notes", "depth64", nested(64)));
    for (const n of [65, 71, 200, 5000]) {
      out[`depth${n}`] = await outcome(() => db.put("notes", `depth${n}`, nested(n)));
    }
    out.patchDeep = await outcome(() => db.patch("notes", "depth64", nested(65)));
    out.sendDeep = await outcome(() => db.send("chat", nested(65)));
    out.send1MiB = await outcome(() => db.send("chat", { blob: "x".repeat(1 << 20) }));
    out.send2MiB = await outcome(() => db.send("chat", { blob: "x".repeat(2 << 20) }));
    out.putNumberName = await outcome(() => db.put("notes", 7, { n: 1 }));
    out.putNumberCollection = await outcome(() => db.put(7, "x", { n: 1 }));
    out.sendNumberChannel = await outcome(() => db.send(7, { n: 1 }));
    out.putNotObject = await outcome(() => db.put("notes", "arr", [1, 2]));
    out.putReserved = await outcome(() => db.put("_secret", "x", { n: 1 }));
    out.bigDoc = await outcome(() => db.put("notes", "big", { s: "x".repeat(300 * 1024) }));
    // A read is a promise too: a bad argument rejects it, it never throws.
    out.getNumber = await outcome(() => db.get("notes", 7));
    out.loneSurrogate = await outcome(() => db.put("notes", "lone", { s: "a\ud800b" }));
    out.numbers = await outcome(() =>
      db.put("notes", "numbers", {
        big: 2 ** 60, neg: -(2 ** 60), small: -5, half: 1.5, zero: -0, huge: 1e21, nan: NaN,
        emoji: "\ud83d\ude00",
      }),
    );
    out.ok = await outcome(() => db.put("notes", "after", { fine: true }));
    out.sendOk = await outcome(() => db.send("chat", { text: "hi" }));
    return out;
  });

  assert.deepEqual(results.depth64, { resolved: true }, "64 levels are allowed");
  for (const k of ["depth65", "depth71", "depth200", "depth5000", "patchDeep", "sendDeep"]) {
    assert.equal(results[k].rejected, true, `${k}: ${JSON.stringify(results[k])}`);
    assert.equal(results[k].code, "malformed", k);
  }
  for (const k of ["send1MiB", "send2MiB", "bigDoc"]) {
    assert.equal(results[k].rejected, true, `${k}: ${JSON.stringify(results[k])}`);
    assert.equal(results[k].code, "too_large", k);
  }
  for (const k of ["putNumberName", "putNumberCollection", "sendNumberChannel", "putNotObject", "putReserved"]) {
    assert.equal(results[k].rejected, true, `${k}: ${JSON.stringify(results[k])}`);
    assert.equal(results[k].code, "bad_request", k);
  }
  assert.equal(results.loneSurrogate.code, "malformed", JSON.stringify(results.loneSurrogate));
  assert.deepEqual(results.numbers, { resolved: true });
  assert.equal(results.getNumber.rejected, true, JSON.stringify(results.getNumber));
  assert.equal(results.getNumber.code, "bad_request");
  assert.deepEqual(results.ok, { resolved: true });
  assert.deepEqual(results.sendOk, { resolved: true });

  // Everything accepted syncs: nothing is stuck, no error.
  await until("synced", async () => {
    const s = await status(page);
    return s.online && s.pending === 0 && s.error === null;
  });
  const r = await host.get(`/v1/spaces/${space}/docs/notes/after`, token);
  assert.deepEqual(r.body.value, { fine: true });
  // Numbers arrive as the JSON text `JSON.stringify` wrote would have been read: integers
  // as integers (2^60 as its shortest digits), the rest as floats, NaN as null.
  const raw = await fetch(`http://127.0.0.1:${host.apiPort}/v1/spaces/${space}/docs/notes/numbers`, {
    headers: { authorization: `Bearer ${token}` },
  }).then((x) => x.text());
  const rawField = (k) => raw.match(new RegExp(`"${k}":([^,}]*)`))?.[1];
  assert.equal(rawField("big"), "1152921504606847000", raw);
  assert.equal(rawField("neg"), "-1152921504606847000", raw);
  assert.equal(rawField("small"), "-5", raw);
  assert.equal(rawField("half"), "1.5", raw);
  assert.equal(rawField("zero"), "0", raw);
  assert.match(rawField("huge"), /^1(\.0)?e\+?21$/, raw);
  assert.equal(rawField("nan"), "null", raw);
  assert.equal(rawField("emoji"), '"\u{1F600}"', raw);

  // And the store opens again with all of it.
  assert.deepEqual(await reopen(page, options), { ok: true });
  const back = await page.evaluate(async () => ({
    after: await window.db.get("notes", "after"),
    deep: (await window.db.get("notes", "depth64")) !== null,
    refused: await window.db.get("notes", "depth65"),
    messages: window.db.messages("chat").map((m) => m.message.payload),
    setAside: window.db.stats().setAside,
  }));
  assert.deepEqual(back, {
    after: { fine: true },
    deep: true,
    refused: null,
    messages: [{ text: "hi" }],
    setAside: 0,
  });
  await ctx.close();
});

test("a record that cannot be read is set aside and reported (a message at open, a document when read); everything else works", async () => {
  const ctx = await browser.newContext();
  const page = await testPage(ctx, web.url);
  const options = { space: "damaged", name: "damaged" }; // offline: the store alone
  await openOn(page, options);
  await page.evaluate(async () => {
    await window.db.put("notes", "good", { ok: 1 });
    await window.db.send("chat", { text: "kept" });
  });
  await page.evaluate(() => window.db.close());
  // Damage one document record and add an unreadable message record, as a disk error would.
  await page.evaluate(
    () =>
      new Promise((ok, fail) => {
        const req = indexedDB.open("sacred-bridge/damaged");
        req.onerror = () => fail(req.error);
        req.onsuccess = () => {
          const idb = req.result;
          const tx = idb.transaction(["docs", "messages"], "readwrite");
          tx.objectStore("docs").put(new Uint8Array([1, 99, 5, 5]), ["notes", "bad"]);
          tx.objectStore("messages").put(new Uint8Array([1]), 999);
          tx.oncomplete = () => {
            idb.close();
            ok();
          };
          tx.onerror = () => fail(tx.error);
        };
      }),
  );
  for (let round = 1; round <= 2; round++) {
    assert.deepEqual(await reopen(page, options), { ok: true }, `open after damage, round ${round}`);
    const atOpen = await page.evaluate(() => ({
      setAside: window.db.stats().setAside,
      error: window.db.status().error,
    }));
    // Documents are read when asked for (not at open): the damaged one when it is read.
    const seen = await page.evaluate(async () => ({
      good: await window.db.get("notes", "good"),
      bad: await window.db.get("notes", "bad"),
      list: (await window.db.list("notes", null)).map((d) => d.id),
      messages: window.db.messages("chat").map((m) => m.message.payload),
    }));
    assert.deepEqual(seen.good, { ok: 1 });
    assert.equal(seen.bad, null, "an unreadable document reads as absent");
    assert.deepEqual(seen.list, ["good"]);
    assert.deepEqual(seen.messages, [{ text: "kept" }]);
    if (round === 1) {
      assert.equal(atOpen.setAside, 1, "the bad message set aside at open");
      assert.match(atOpen.error, /1 stored record\(s\) could not be read and were set aside/);
      await until("the bad document set aside once read", () =>
        page.evaluate(() => window.db.stats().setAside >= 2));
      assert.match(
        await page.evaluate(() => window.db.status().error),
        /1 stored record\(s\) could not be read and were set aside/,
      );
    } else {
      assert.deepEqual(atOpen, { setAside: 0, error: null }, "set aside once, not read again");
      assert.equal(await page.evaluate(() => window.db.stats().setAside), 0);
    }
  }
  // The store still takes writes and keeps them.
  await page.evaluate(() => window.db.put("notes", "later", { ok: 2 }));
  assert.deepEqual(await reopen(page, options), { ok: true });
  assert.deepEqual(await page.evaluate(() => window.db.get("notes", "later")), { ok: 2 });
  await ctx.close();
});

test("a sync error that repeats on every reconnect stays visible in status().error", async () => {
  const space = "readonly";
  const token = mintToken(host.dir, space, "read"); // the host refuses our pushes
  const ctx = await browser.newContext();
  const page = await testPage(ctx, web.url);
  await openOn(page, { url: host.url, space, token, name: "reader" });
  await page.evaluate(() => window.db.put("notes", "n1", { n: 1 }));
  await until("the refusal shows", async () => (await status(page)).error);
  // Through several reconnects it stays visible while the write stays pending.
  await page.evaluate(
    () =>
      new Promise((ok) => {
        let seen = 0;
        window.db.onStatus((s) => {
          if (!s.online && ++seen >= 3) ok();
        });
      }),
  );
  const s = await status(page);
  assert.match(s.error, /forbidden/);
  assert.equal(s.pending, 1);
  await ctx.close();
});

test("a forwarded call the leader stored but never answered is done once after the hand-over", async () => {
  const space = "handover";
  const token = mintToken(host.dir, space);
  const options = { url: host.url, space, token, name: "tab" };
  const ctx = await browser.newContext();
  const leader = await testPage(ctx, web.url);
  await openOn(leader, options);
  await until("leader online", async () => (await status(leader)).online);
  // The leader stores forwarded calls but dies before answering: its replies never leave.
  await leader.evaluate(() => {
    window.dropped = 0;
    const post = BroadcastChannel.prototype.postMessage;
    BroadcastChannel.prototype.postMessage = function (m) {
      if (m && m.t === "reply") {
        window.dropped++;
        return;
      }
      return post.call(this, m);
    };
  });
  const follower = await testPage(ctx, web.url);
  await openOn(follower, options);
  assert.equal(await follower.evaluate(() => window.db.role), "follower");
  await follower.evaluate(() => {
    window.calls = [
      window.db.send("chat", { text: "once" }),
      window.db.put("notes", "n1", { v: 1 }),
    ];
  });
  await until("the leader stored both and swallowed the replies", () =>
    leader.evaluate(() => window.dropped >= 2),
  );
  await leader.close(); // the leading tab is gone before answering
  const [, dot] = await follower.evaluate(() => Promise.all(window.calls));
  assert.equal(await follower.evaluate(() => window.db.role), "leader");
  assert.equal(dot.counter, 1, "the put answered with its first dot, not made again");
  const messages = await follower.evaluate(() => window.db.messages("chat").map((m) => m.message.payload));
  assert.deepEqual(messages, [{ text: "once" }], "the message stored once");
  await until("synced", async () => (await status(follower)).pending === 0);
  assert.equal((await status(follower)).pending, 0);
  await ctx.close();
});
