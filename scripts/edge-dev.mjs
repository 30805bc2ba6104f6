// The edge worker under wrangler's local dev server (the same workerd runtime and Durable
// Object storage as `wrangler dev`), driven by the end-to-end tests (tests/src/edge.rs).
//
//   node scripts/edge-dev.mjs CONFIG PERSIST_DIR [PORT]
//
// Binds 127.0.0.1 on PORT, or on a port the OS picks when PORT is 0 or absent, and prints
// `ready on http://127.0.0.1:PORT/` once the server listens. Then reads commands, one a line, on stdin:
//
//   evict SPACE   evicts the space's Durable Object as workerd does an idle one (its
//                 hibernatable WebSockets stay open); prints `evicted SPACE` when done
//
// and stops when stdin closes or on SIGTERM. Run with Node 22 and the offline variables of
// scripts/edge-env.sh, like `wrangler dev`.
import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const [config, persist, portArg = "0"] = process.argv.slice(2);
const port = Number(portArg);
if (!config || !persist || !Number.isInteger(port) || port < 0 || port > 65535) {
    console.error("usage: node scripts/edge-dev.mjs CONFIG PERSIST_DIR [PORT]");
    process.exit(2);
}
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(root, "package.json"));
const wrangler = require("wrangler");

const worker = await wrangler.unstable_startWorker({
    config,
    dev: {
        remote: false,
        server: { hostname: "127.0.0.1", port },
        inspector: false,
        persist,
        liveReload: false,
        watch: false,
        logLevel: "info",
    },
});
await worker.ready;
const url = await worker.url;
console.log(`ready on ${url}`);
// The first call to the runtime's control service sets it up (seconds); make it now, in the
// background, so that an `evict` later takes milliseconds. Evicting an object that is not
// running only fails.
const mf = worker.raw.runtimes[0].mf;
const warm = mf
    .unsafeEvictDurableObject(worker.config.name, "SpaceObject", { name: "warm-up" })
    .catch(() => {});

let stopping = false;
async function stop(code) {
    if (stopping) return;
    stopping = true;
    await worker.dispose().catch(() => {});
    process.exit(code);
}
process.on("SIGTERM", () => stop(0));
process.on("SIGINT", () => stop(0));

const lines = readline.createInterface({ input: process.stdin });
// One command at a time, in order.
let queue = Promise.resolve();
lines.on("line", (line) => {
    queue = queue.then(() => command(line.trim()));
});
lines.on("close", () => queue.then(() => stop(0)));

async function command(line) {
    const [verb, arg] = line.split(/\s+/);
    try {
        if (verb === "evict" && arg) {
            await warm;
            await mf.unsafeEvictDurableObject(worker.config.name, "SpaceObject", {
                name: arg,
                webSockets: "hibernate",
            });
            console.log(`evicted ${arg}`);
        } else {
            console.log(`error: unknown command ${JSON.stringify(line)}`);
        }
    } catch (e) {
        console.log(`error: ${String(e?.stack ?? e).replaceAll("\n", " | ")}`);
    }
}
