// The inspector's monitor view on a hybrid host: its upstream link to a cloud-mode host is
// shown up, then down while the cloud is stopped (with the write that waits for it counted
// as a pending upload), then up again once the cloud is restarted, with the write delivered;
// the charts fill from /metrics, the cloud's side comes from the cloud's status, and who is
// connected is shown per side. Screenshots in artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { CloudHost, launch, mintToken, repo, until } from "./harness.mjs";
import { NativeHost } from "./hosts.mjs";

const ARTIFACTS = process.env.ARTIFACTS_DIR || join(repo, "artifacts");
let cloud, hybrid, browser, cloudToken;

before(async () => {
  cloud = await CloudHost.start();
  cloudToken = mintToken(cloud.dir, "default", "admin");
  // No secret here: the hybrid host needs no token locally, and links up with BRIDGE_TOKEN.
  hybrid = await NativeHost.start({
    mode: "hybrid",
    env: {
      CLOUD_WS_URL: cloud.url,
      CLOUD_API_URL: `http://127.0.0.1:${cloud.apiPort}`,
      BRIDGE_TOKEN: cloudToken,
    },
  });
  browser = await launch();
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await hybrid?.stop();
  await cloud?.stop();
});

const card = '#mon-spaces [data-space="default"]';
const text = async (page, sel) => ((await page.locator(sel).count()) ? (await page.textContent(sel))?.trim() : null);

test("the monitor shows a hybrid link going down and coming back up", async () => {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${hybrid.api}/`);
  await page.click('#views a[data-view="monitor"]');
  assert.match(page.url(), /view=monitor/);
  assert.equal(await page.isHidden("#docs-view"), true);

  await until("link up", async () => (await text(page, `${card} [data-testid=link-state]`)) === "UP", 30_000);
  for (let i = 0; i < 20; i++) {
    const r = await hybrid.call("PUT", `/v1/spaces/default/docs/notes/n${i}`, { i });
    assert.equal(r.status, 200);
  }
  // The charts are fed from /metrics: twenty writes show as a rate above zero.
  await until("writes charted", () => page.evaluate(() =>
    Number(document.querySelector("#chart-writes").dataset.peak) > 0));
  await until("throughput charted", () => page.evaluate(() =>
    Number(document.querySelector("#chart-bytes").dataset.peak) > 0));
  await until("all uploaded", async () => (await text(page, `${card} [data-testid=pending]`)) === "0");
  assert.notEqual(await text(page, `${card} [data-testid=last-sync]`), "never");
  // Who is connected, per side: this page here, the hybrid host's link at the cloud.
  await until("this page listed on the local side", async () =>
    (await text(page, `${card} [data-side=local]`))?.includes("inspector"));
  // The cloud's side, from the cloud's own status: it holds what the host holds, and the
  // hybrid host's link is connected there.
  const cloudRow = '#mon-cloud tr[data-space="default"]';
  await until("the cloud's side", async () =>
    (await text(page, "[data-testid=cloud-state]")) === "REACHABLE"
      && (await text(page, `${cloudRow} [data-testid=docs]`)) === (await text(page, `${card} [data-testid=docs]`))
      && Number(await text(page, `${card} [data-testid=docs]`)) >= 20
      && (await text(page, `${cloudRow} [data-testid=who]`))?.includes("sacred-bridge-hybrid"));
  await page.screenshot({ path: join(ARTIFACTS, "monitor-up.png"), fullPage: true });

  // The cloud stops: the link goes down; a write made meanwhile waits as a pending upload.
  await cloud.kill();
  await until("link down", async () => (await text(page, `${card} [data-testid=link-state]`)) === "DOWN", 30_000);
  assert.equal((await hybrid.call("PUT", "/v1/spaces/default/docs/notes/offline", { t: 1 })).status, 200);
  await until("one pending upload", async () => (await text(page, `${card} [data-testid=pending]`)) === "1");
  await until("cloud unreachable", async () => (await text(page, "[data-testid=cloud-state]")) === "UNREACHABLE");
  await page.screenshot({ path: join(ARTIFACTS, "monitor-down.png"), fullPage: true });

  // The cloud is back on the same ports and database: the link comes up and uploads.
  await cloud.spawn();
  await until("link up again", async () => (await text(page, `${card} [data-testid=link-state]`)) === "UP", 40_000);
  await until("nothing pending", async () => (await text(page, `${card} [data-testid=pending]`)) === "0", 20_000);
  const r = await cloud.get("/v1/spaces/default/docs/notes/offline", cloudToken);
  assert.deepEqual(r.body?.value, { t: 1 });
  await until("cloud reachable again, holding what the host holds", async () =>
    (await text(page, "[data-testid=cloud-state]")) === "REACHABLE"
      && (await text(page, `${cloudRow} [data-testid=docs]`)) === (await text(page, `${card} [data-testid=docs]`)));
  await page.screenshot({ path: join(ARTIFACTS, "monitor-up-again.png"), fullPage: true });
  assert.deepEqual(errors, []);
  await ctx.close();
});
