// A native host in any mode, run as a user would run it: the binary alone, copied into a
// fresh temporary folder (no repository beside it) and started there on free, non-default
// ports. Used by the tests of the embedded inspector and its monitor view.
import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bridgeBin, freePort } from "./harness.mjs";

export class NativeHost {
  /** `mode`: local | hybrid | cloud; `env`: the only settings it gets besides PATH and HOME. */
  static async start({ mode = "local", env = {} } = {}) {
    const h = new NativeHost();
    h.mode = mode;
    h.env = env;
    h.dir = mkdtempSync(join(tmpdir(), "sb-native-host-"));
    h.bin = join(h.dir, "sacred-bridge");
    copyFileSync(bridgeBin(), h.bin);
    for (let attempt = 1; ; attempt++) {
      h.wsPort = await freePort();
      h.apiPort = await freePort();
      if (h.wsPort === 3333 || h.apiPort === 3001) continue;
      try {
        await h.spawn();
        return h;
      } catch (e) {
        if (attempt >= 5) throw e;
      }
    }
  }

  spawn() {
    const args = ["serve", "--mode", this.mode, "--ws-port", String(this.wsPort),
      "--api-port", String(this.apiPort), "--db", join(this.dir, "bridge.db")];
    this.child = spawn(this.bin, args, {
      cwd: this.dir,
      env: { PATH: process.env.PATH, HOME: this.dir, RUST_LOG: "warn", ...this.env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error("sacred-bridge did not start in 30 s")), 30_000);
      this.child.stdout.once("data", (line) => {
        clearTimeout(timer);
        if (String(line).includes("listening")) ok();
        else fail(new Error(`unexpected first line: ${line}`));
      });
      this.child.once("exit", (code) => fail(new Error(`sacred-bridge exited with ${code}`)));
    });
  }

  get api() {
    return `http://127.0.0.1:${this.apiPort}`;
  }

  /** A request to the host's HTTP API; resolves to { status, body } (JSON when it parses). */
  async call(method, path, body) {
    const r = await fetch(`${this.api}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let parsed = text;
    try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, body: parsed };
  }

  kill() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((ok) => this.child.once("exit", ok));
      this.child.kill("SIGKILL");
      return exited;
    }
    return Promise.resolve();
  }

  async stop() {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
