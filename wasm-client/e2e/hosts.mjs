// A native host in any mode, run as a user would run it: the binary alone, copied into a
// fresh temporary folder (no repository beside it) and started there on free, non-default
// ports. Used by the tests of the embedded inspector and its monitor view.
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { bridgeBin, serve } from "./harness.mjs";

export class NativeHost {
  /** `mode`: local | hybrid | cloud; `env`: the only settings it gets besides PATH and HOME. */
  static async start({ mode = "local", env = {} } = {}) {
    const h = new NativeHost();
    h.mode = mode;
    h.env = env;
    h.dir = mkdtempSync(join(tmpdir(), "sb-native-host-"));
    h.bin = join(h.dir, "sacred-bridge");
    copyFileSync(bridgeBin(), h.bin);
    // Port 0: the system picks free ephemeral ports, never the defaults 3333 / 3001.
    await h.spawn();
    assert(h.wsPort !== 3333 && h.apiPort !== 3001, "non-default ports");
    return h;
  }

  spawn() {
    const env = { PATH: process.env.PATH, HOME: this.dir, RUST_LOG: "warn", ...this.env };
    const s = serve(this.bin, this.mode, this, env);
    this.child = s.child;
    return s.ready;
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
