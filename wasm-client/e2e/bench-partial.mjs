// A browser store of one collection out of a large space, from the Durable Object under
// `wrangler dev` (BENCHMARKS.md, "Partial replication"): time from `open({ collections })`
// until the store holds the collection's documents, and the bytes its WebSocket received
// against the collection's NDJSON. Run by `bench_edge` with `BENCH_PARTIAL=1` (by hand, not
// in CI), which uploads the space and passes EDGE_URL, EDGE_TOKEN, EDGE_SPACE, SUBSET,
// SUBSET_DOCS, SUBSET_BYTES and TOTAL_DOCS.
import { launch, staticServer, testPage, testRoots } from "./harness.mjs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is required`);
  return v;
};
const [url, token, space, subset] = ["EDGE_URL", "EDGE_TOKEN", "EDGE_SPACE", "SUBSET"].map(env);
const docs = Number(env("SUBSET_DOCS"));
const ndjson = Number(env("SUBSET_BYTES"));
const total = Number(env("TOTAL_DOCS"));

const web = await staticServer(testRoots());
const browser = await launch();
try {
  const page = await testPage(await browser.newContext(), web.url);
  let bytes = 0;
  page.on("websocket", (ws) =>
    ws.on("framereceived", (f) => {
      bytes += typeof f.payload === "string" ? Buffer.byteLength(f.payload) : f.payload.length;
    }),
  );
  const r = await page.evaluate(
    async ([o, docs]) => {
      const t0 = performance.now();
      const db = await window.sb.open(o);
      // The subset, `_config/space` and nothing else: a count of the IndexedDB store.
      while ((await db.docCount()) < docs + 1) {
        if (performance.now() - t0 > 300_000) throw new Error(`only ${await db.docCount()} documents after 5 min`);
        await new Promise((ok) => setTimeout(ok, 20));
      }
      const t = performance.now() - t0;
      const held = (await db.list(o.collections[0], undefined, 10)).length;
      const other = await db.get("c08", "d0000008");
      await db.close();
      return { t, held, other };
    },
    [{ url, space, token, name: "bench-partial", collections: [subset] }, docs],
  );
  if (r.held === 0 || r.other !== null) throw new Error(`wrong store: ${JSON.stringify(r)}`);
  console.log(
    `bench partial: browser store of ${docs} documents (${subset}) out of ${total} from the Durable Object: ` +
      `${(r.t / 1000).toFixed(2)} s from open(); ${(bytes / 1e6).toFixed(2)} MB received, ` +
      `${(bytes / ndjson).toFixed(2)}x the subset's NDJSON (${(ndjson / 1e6).toFixed(2)} MB)`,
  );
} finally {
  await browser.close();
  await web.close();
}
