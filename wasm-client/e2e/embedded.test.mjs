// The inspector ships inside the binary: a host copied alone into a temporary folder and
// started there on non-default ports serves the page and the package at its API port's `/`;
// the page dials that host's WebSocket port by itself (no click, no URL parameters) and shows
// its documents; it keeps working while the host is down and catches up when it is back.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launch, repo, until } from "./harness.mjs";
import { NativeHost } from "./hosts.mjs";

const ARTIFACTS = process.env.ARTIFACTS_DIR || join(repo, "artifacts");
let host, browser;

before(async () => {
  host = await NativeHost.start({ mode: "local" });
  browser = await launch();
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await host?.stop();
});

test("the inspector served by a host from a temporary folder connects by itself", async () => {
  for (const [id, title] of [["n1", "from the host"], ["n2", "second"]]) {
    const r = await host.call("PUT", `/v1/spaces/default/docs/notes/${id}`, { title });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  // The package is the embedded one: served with its type, whatever the working directory.
  const wasm = await fetch(`${host.api}/pkg/wasm_client_bg.wasm`);
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers.get("content-type"), "application/wasm");
  assert.deepEqual([...new Uint8Array(await wasm.arrayBuffer()).slice(0, 4)], [0, 0x61, 0x73, 0x6d]);

  const ctx = await browser.newContext({ viewport: { width: 1300, height: 800 } });
  const page = await ctx.newPage();
  const failed = [];
  page.on("pageerror", (e) => failed.push(`page error: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${host.api}/`);
  await until("inspector online", async () =>
    (await page.textContent("#status-text"))?.startsWith("online"));
  assert.equal(await page.inputValue("#connect input[name=url]"), `ws://127.0.0.1:${host.wsPort}`);
  await page.waitForSelector('#docs tr[data-id="n1"]');
  await page.waitForSelector('#docs tr[data-id="n2"]');
  assert.match(await page.textContent('#docs tr[data-id="n1"]'), /from the host/);
  await page.screenshot({ path: join(ARTIFACTS, "inspector-embedded.png"), fullPage: true });

  // Offline as before: the host goes away, the page still shows and takes writes...
  await host.kill();
  await until("inspector offline", async () =>
    (await page.textContent("#status-text"))?.startsWith("offline"));
  await page.fill("#editor input[name=id]", "n3");
  await page.fill("#editor textarea", JSON.stringify({ title: "written offline" }));
  await page.click("#editor button[type=submit]");
  await until("saved offline", async () => (await page.textContent("#editor-msg")) === "saved");
  await page.waitForSelector('#docs tr[data-id="n3"]');
  // ...and they reach the host once it is back on the same ports.
  await host.spawn();
  await until("the offline write reached the host", async () => {
    const r = await host.call("GET", "/v1/spaces/default/docs/notes/n3");
    return r.body?.value?.title === "written offline";
  }, 40_000);
  assert.deepEqual(failed, [], "no page error and no failed request");
  await ctx.close();
});
