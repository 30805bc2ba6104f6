// Shared by the browser end-to-end tests: a native host in cloud mode on free ports, a tiny
// static server for the test page and the package, and headless Chromium from the system
// (playwright-core never downloads a browser).
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, existsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, extname, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../..");
const pkg = join(repo, "wasm-client", "pkg");

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--disable-extensions",
  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
];

export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

export function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer();
    s.unref();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** The `sacred-bridge` binary: $SACRED_BRIDGE_BIN, or the workspace's debug build (built if missing). */
export function bridgeBin() {
  if (process.env.SACRED_BRIDGE_BIN) return process.env.SACRED_BRIDGE_BIN;
  const meta = JSON.parse(
    execFileSync("cargo", ["metadata", "--format-version", "1", "--no-deps"], { cwd: repo }),
  );
  const bin = join(meta.target_directory, "debug", "sacred-bridge");
  if (!existsSync(bin)) {
    execFileSync("cargo", ["build", "-q", "-p", "native-host", "--bin", "sacred-bridge"], {
      cwd: repo,
      stdio: "inherit",
    });
  }
  return bin;
}

const SECRET = "browser-e2e-secret-0123456789";

/** Only what the host needs: no inherited BRIDGE_* / NODE_ENV / LOCAL_* settings. */
function cleanEnv(extra = {}) {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME ?? "/tmp", RUST_LOG: "warn" };
  return { ...env, ...extra };
}

export function mintToken(dir, space, rights = "admin", collections = null) {
  const scope = collections ? ["--collections", collections] : [];
  return execFileSync(
    bridgeBin(),
    ["token", "create", "--space", space, "--rights", rights, "--ttl", "1h", ...scope],
    { cwd: dir, env: cleanEnv({ BRIDGE_SECRET: SECRET }) },
  )
    .toString()
    .trim();
}

/** A native host in cloud mode; `restart()` brings it back on the same ports and database. */
/**
 * Starts `bin serve --mode MODE` with its database in `host.dir`, on `host.wsPort` /
 * `host.apiPort` when set (a restart keeps them), else on port 0: the host binds free ports
 * and names them in its "listening" line, which sets `host.wsPort` / `host.apiPort`. `ready`
 * resolves on that line, rejects if it exits or is silent 30 s.
 */
export function serve(bin, mode, host, env) {
  const args = ["serve", "--mode", mode, "--ws-port", String(host.wsPort ?? 0),
    "--api-port", String(host.apiPort ?? 0), "--db", join(host.dir, "bridge.db")];
  const child = spawn(bin, args, { cwd: host.dir, env, stdio: ["ignore", "pipe", "inherit"] });
  const ready = new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("sacred-bridge did not start in 30 s")), 30_000);
    child.stdout.once("data", (line) => {
      clearTimeout(timer);
      const m = String(line).match(/listening: ws:\/\/[^:\s]+:(\d+) http:\/\/[^:\s]+:(\d+)/);
      if (!m) return fail(new Error(`unexpected first line: ${line}`));
      host.wsPort = Number(m[1]);
      host.apiPort = Number(m[2]);
      ok();
    });
    child.once("exit", (code) => fail(new Error(`sacred-bridge exited with ${code}`)));
  });
  return { child, ready };
}

export class CloudHost {
  static async start(env = {}) {
    const h = new CloudHost();
    h.env = env;
    h.dir = mkdtempSync(join(tmpdir(), "sb-browser-host-"));
    await h.spawn(); // on port 0: no race for a free port
    return h;
  }

  spawn() {
    const s = serve(bridgeBin(), "cloud", this, cleanEnv({ BRIDGE_SECRET: SECRET, ...this.env }));
    this.child = s.child;
    return s.ready;
  }

  get url() {
    return `ws://127.0.0.1:${this.wsPort}`;
  }

  /** GET on the host's HTTP API with an admin token. */
  async get(path, token) {
    const r = await fetch(`http://127.0.0.1:${this.apiPort}${path}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return { status: r.status, body: await r.json() };
  }

  kill() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((ok) => this.child.once("exit", ok));
      this.child.kill("SIGKILL");
      return exited;
    }
    return Promise.resolve();
  }

  /** SIGSTOP: the sockets stay open but nothing answers (a network that silently died). */
  pause() {
    this.child.kill("SIGSTOP");
  }

  resume() {
    this.child.kill("SIGCONT");
  }

  async restart() {
    await this.kill();
    await this.spawn();
  }

  async stop() {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".ts": "text/plain",
};

/** Serves `roots` ({ "/": dir, "/pkg/": dir }) on 127.0.0.1; resolves to { url, close }. */
export async function staticServer(roots) {
  if (!existsSync(join(pkg, "wasm_client.js"))) {
    throw new Error("wasm-client/pkg is missing: run `bash scripts/build-wasm-client.sh` first");
  }
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const prefix = Object.keys(roots)
      .sort((a, b) => b.length - a.length)
      .find((p) => path.startsWith(p));
    const file = prefix && resolve(roots[prefix], "." + path.slice(prefix.length - 1));
    if (!file || !file.startsWith(roots[prefix]) || !existsSync(file) || statSync(file).isDirectory()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[extname(file)] ?? "application/octet-stream",
      "cache-control": "no-store",
    });
    res.end(readFileSync(file));
  });
  const port = await freePort();
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((ok) => server.close(ok)),
  };
}

export const testRoots = () => ({ "/": here, "/pkg/": pkg });

/** Polls `fn` (async) until it returns a truthy value; throws with `what` after `ms`. */
export async function until(what, fn, ms = 15_000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for: ${what} (last: ${JSON.stringify(last)})`);
}

/** A page of `context` with the test page loaded and the package initialised. */
export async function testPage(context, base) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
  if (process.env.E2E_DEBUG) page.on("console", (m) => console.error("page:", m.text()));
  await page.goto(`${base}/page.html`);
  await page.waitForFunction(() => document.title === "ready");
  return page;
}

export function tempDir(prefix) {
  const d = mkdtempSync(join(tmpdir(), prefix));
  return { path: d, remove: () => rmSync(d, { recursive: true, force: true }) };
}
