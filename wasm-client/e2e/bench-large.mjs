// A large browser store (BENCHMARKS.md, "browser store of 200k documents"): 200,000
// documents written into one IndexedDB store (no host), then, after a page reload,
// `open()` → first `get` (ms), and the wasm memory (`WebAssembly.Memory` buffer) then and
// after a few more reads. Run by hand (not in CI); PKG chooses the package to measure, so
// the same script measures a build of another commit:
//
//   bash scripts/build-wasm-client.sh && node wasm-client/e2e/bench-large.mjs
//   PKG=/path/to/other/wasm-client/pkg DOCS=200000 RUNS=3 node wasm-client/e2e/bench-large.mjs
import { launch, staticServer, testPage, testRoots } from "./harness.mjs";
import { resolve } from "node:path";

const DOCS = Number(process.env.DOCS ?? 200_000);
const RUNS = Number(process.env.RUNS ?? 3);
const roots = testRoots();
if (process.env.PKG) roots["/pkg/"] = resolve(process.env.PKG);
const web = await staticServer(roots);
const browser = await launch();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mb = (b) => `${(b / 2 ** 20).toFixed(1)} MB`;

try {
  const ctx = await browser.newContext();
  const page = await testPage(ctx, web.url);
  const fill = await page.evaluate(async (n) => {
    const db = await window.sb.open({ space: "bench", db: "large" });
    const t0 = performance.now();
    for (let c = 0; c < n / 10_000; c++) {
      const all = [];
      for (let i = c * 10_000; i < (c + 1) * 10_000; i++) {
        all.push(db.put("items", `d${String(i).padStart(6, "0")}`, { title: `Item number ${i}`, done: i % 2 === 0, tags: ["a", "b"], n: i }));
      }
      await Promise.all(all);
    }
    const t = performance.now() - t0;
    await db.close();
    return { t, memory: window.wasm.memory.buffer.byteLength };
  }, DOCS);
  console.log(`filled ${DOCS} documents in ${(fill.t / 1000).toFixed(1)} s; wasm memory then ${mb(fill.memory)}`);
  const runs = [];
  for (let run = 0; run < RUNS; run++) {
    await page.reload();
    await page.waitForFunction(() => document.title === "ready");
    runs.push(await page.evaluate(async (n) => {
      const t0 = performance.now();
      const db = await window.sb.open({ space: "bench", db: "large" });
      const tOpen = performance.now() - t0;
      const id = `d${String(Math.floor(n / 2)).padStart(6, "0")}`;
      const doc = await db.get("items", id);
      const tGet = performance.now() - t0;
      if (doc?.n !== Math.floor(n / 2)) throw new Error(`get ${id}: ${JSON.stringify(doc)}`);
      const memOpen = window.wasm.memory.buffer.byteLength;
      // A few more reads: a page of 1,000, and 1,000 single reads spread over the store.
      const t1 = performance.now();
      const list = await db.list("items", null, 1000);
      const tList = performance.now() - t1;
      const t2 = performance.now();
      for (let i = 0; i < 1000; i++) await db.get("items", `d${String((i * 197) % n).padStart(6, "0")}`);
      const tGets = performance.now() - t2;
      const memAfter = window.wasm.memory.buffer.byteLength;
      const stats = db.stats();
      await db.close();
      return { tOpen, tGet, memOpen, memAfter, tList, tGets, listed: list.length, cache: stats.cacheBytes };
    }, DOCS));
  }
  const pick = (k) => median(runs.map((r) => r[k]));
  console.log(`open → first get      ${pick("tGet").toFixed(0)} ms (open alone ${pick("tOpen").toFixed(0)} ms); runs ${runs.map((r) => r.tGet.toFixed(0)).join("/")}`);
  console.log(`wasm memory           ${mb(pick("memOpen"))} after open + first get; ${mb(pick("memAfter"))} after a list of 1,000 and 1,000 gets`);
  console.log(`list of 1,000         ${pick("tList").toFixed(0)} ms; 1,000 sequential gets ${pick("tGets").toFixed(0)} ms; cache ${pick("cache") ?? "n/a"} bytes`);
  await ctx.close();
} finally {
  await browser.close();
  await web.close();
}
