// Browser benchmarks (BENCHMARKS.md, "## browser"), in headless Chromium with the release
// package (bash scripts/build-wasm-client.sh):
//   - 10k puts: `Promise.all` of 10,000 `put`s until every one is stored in IndexedDB;
//   - cold open: `open()` of a store holding 50,000 documents, after a page reload;
//   - upload: 100,000 documents written in one browser, until the cloud acknowledged all;
//   - initial sync: a fresh browser opens against that host until it holds all 100,000.
// Prints one line per figure (median of RUNS where repeated). The host is the release build
// when SACRED_BRIDGE_BIN points at it (the debug build makes the sync figures the host's).
//
//   SACRED_BRIDGE_BIN=target/release/sacred-bridge node wasm-client/e2e/bench.mjs
import { CloudHost, launch, mintToken, staticServer, testPage, testRoots } from "./harness.mjs";

const RUNS = Number(process.env.RUNS ?? 3);
const SPACE = "bench";
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x) => `${x.toFixed(0)} ms`;

const host = await CloudHost.start();
const token = mintToken(host.dir, SPACE);
const web = await staticServer(testRoots());
const browser = await launch();
const results = [];
const report = (name, value, note = "") => {
  results.push([name, value, note]);
  console.log(`${name.padEnd(44)} ${value.padStart(12)}  ${note}`);
};

try {
  // ---- 10k puts -------------------------------------------------------------------------
  {
    const ctx = await browser.newContext();
    const page = await testPage(ctx, web.url);
    await page.evaluate(() => window.openBridge({ space: "bench", db: "puts" }));
    const times = [];
    for (let run = 0; run < RUNS + 1; run++) {
      const t = await page.evaluate(async (run) => {
        const t0 = performance.now();
        const all = [];
        for (let i = 0; i < 10_000; i++) {
          all.push(window.db.put("items", `r${run}-${i}`, { title: `item ${i}`, n: i, tags: ["a", "b"], done: false }));
        }
        await Promise.all(all);
        return performance.now() - t0;
      }, run);
      if (run > 0) times.push(t); // the first run warms the JIT and the database up
    }
    const commits = (await page.evaluate(() => window.db.stats())).commits;
    report("10k puts (stored in IndexedDB)", ms(median(times)), `runs ${times.map((t) => t.toFixed(0)).join("/")} ms; ${commits} commits for ${RUNS + 1} bursts`);
    await ctx.close();
  }

  // ---- cold open with 50k documents -----------------------------------------------------
  {
    const ctx = await browser.newContext();
    let page = await testPage(ctx, web.url);
    await page.evaluate(async () => {
      await window.openBridge({ space: "bench", db: "cold" });
      for (let c = 0; c < 5; c++) {
        const all = [];
        for (let i = 0; i < 10_000; i++) {
          all.push(window.db.put("items", `d${c}-${i}`, { title: `item ${i}`, n: i, tags: ["a", "b"], done: false }));
        }
        await Promise.all(all);
      }
      await window.db.close();
    });
    const times = [];
    for (let run = 0; run < RUNS; run++) {
      await page.reload();
      await page.waitForFunction(() => document.title === "ready");
      const [t, n] = await page.evaluate(async () => {
        const t0 = performance.now();
        const db = await window.sb.open({ space: "bench", db: "cold" });
        const t = performance.now() - t0;
        const n = await db.docCount();
        await db.close();
        return [t, n];
      });
      if (n !== 50_000) throw new Error(`cold open restored ${n} documents, wanted 50000`);
      times.push(t);
    }
    report("cold open, 50k documents", ms(median(times)), `runs ${times.map((t) => t.toFixed(0)).join("/")} ms`);
    await ctx.close();
  }

  // ---- 100k documents up to the cloud, then an initial sync down -------------------------
  const N = Number(process.env.SYNC_DOCS ?? 100_000);
  {
    const ctx = await browser.newContext();
    const page = await testPage(ctx, web.url);
    const t = await page.evaluate(async ([o, N]) => {
      await window.openBridge(o);
      const t0 = performance.now();
      for (let c = 0; c < N / 10_000; c++) {
        const all = [];
        for (let i = 0; i < 10_000; i++) {
          all.push(window.db.put("items", `d${c}-${i}`, { title: `item ${i}`, n: i, tags: ["a", "b"], done: false }));
        }
        await Promise.all(all);
      }
      while (window.db.status().pending > 0) await new Promise((r) => setTimeout(r, 5));
      return performance.now() - t0;
    }, [{ url: host.url, space: SPACE, token, name: "writer" }, N]);
    report(`${N / 1000}k documents written and acked by the cloud`, ms(t), "write + upload + host commit");
    await ctx.close();
  }
  {
    const times = [];
    for (let run = 0; run < Math.min(RUNS, 2); run++) {
      const ctx = await browser.newContext();
      const page = await testPage(ctx, web.url);
      const [t, n] = await page.evaluate(async ([o, N]) => {
        const t0 = performance.now();
        const db = await window.sb.open(o);
        while ((await db.docCount()) < N || db.status().incoming > 0) await new Promise((r) => setTimeout(r, 5));
        const t = performance.now() - t0;
        return [t, await db.docCount()];
      }, [{ url: host.url, space: SPACE, token, name: `reader-${run}` }, N]);
      if (n < N) throw new Error(`initial sync got ${n} documents`);
      times.push(t);
      await ctx.close();
    }
    report(`initial sync of ${N / 1000}k documents into a fresh browser`, ms(median(times)),
      `runs ${times.map((t) => t.toFixed(0)).join("/")} ms; open → all stored in IndexedDB`);
  }
} finally {
  await browser.close();
  await web.close();
  await host.stop();
}
