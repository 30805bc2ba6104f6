// An MCP agent written with the official TypeScript SDK (@modelcontextprotocol/sdk, pinned in
// package.json), driven by tests/tests/mcp.rs over stdio, with the same line protocol as
// client.py:
//
//   node client.mjs SPACE BIN WS API TOKEN WRITE_TOKEN
//
// `{"step": ...}` lines report answers, `{"wait": NAME}` asks the Rust test to act and answer
// one line on stdin, `{"done": true}` ends. A failed check throws: the process exits non-zero.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ResourceUpdatedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import assert from "node:assert/strict";
import readline from "node:readline";

const [space, bin, ws, api, token, writeToken] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
async function waitForGo(name) {
  out({ wait: name });
  const { done } = await lines.next();
  if (done) throw new Error(`stdin closed while waiting for ${name}`);
}
function within(ms, promise, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

async function session(name, tok, body) {
  const client = new Client({ name, version: "1.0.0" });
  const updates = [];
  let wake = () => {};
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
    updates.push(n.params.uri);
    wake();
  });
  const transport = new StdioClientTransport({
    command: bin,
    args: ["mcp", "--space", space, "--ws", ws, "--api", api],
    env: { ...process.env, BRIDGE_TOKEN: tok, RUST_LOG: "warn" },
  });
  await client.connect(transport);
  out({ step: "initialize", server: client.getServerVersion().name });
  const call = async (tool, args) => {
    const r = await client.callTool({ name: tool, arguments: args });
    return [r.isError === true, r.structuredContent, r.content[0].text];
  };
  const nextUpdate = async () => {
    while (updates.length === 0) await new Promise((r) => (wake = r));
    return updates.shift();
  };
  try {
    await body({ client, call, nextUpdate });
  } finally {
    await client.close();
  }
}

await session("ts-stdio-agent", token, async ({ client, call, nextUpdate }) => {
  const { tools } = await client.listTools();
  assert.equal(tools.length, 13);
  for (const t of tools) {
    assert.ok(t.description && t.inputSchema.type === "object", t.name);
  }
  out({ step: "tools", names: tools.map((t) => t.name).sort() });

  let [err, res] = await call("put", { collection: "notes", id: "t1", value: { by: "ts" } });
  assert.ok(!err && res.ok, JSON.stringify(res));
  [err, res] = await call("get", { collection: "notes", id: "t1" });
  assert.deepEqual(res.doc.value, { by: "ts" });
  const [, page] = await call("list", { collection: "notes", limit: 1000 });
  assert.ok(page.docs.some((d) => d.id === "t1"));
  out({ step: "put_get_list", get: res.doc.value, pages: [page] });

  let text;
  [err, res, text] = await call("put", { collection: "notes", id: "bad", value: [1] });
  assert.ok(err && res.error.code === "bad_request", JSON.stringify(res));
  out({ step: "bad_argument", error: res.error, text });

  const { resourceTemplates } = await client.listResourceTemplates();
  assert.equal(resourceTemplates.length, 2);
  const uris = (await client.listResources()).resources.map((r) => r.uri);
  assert.ok(uris.includes(`sacred-bridge://${space}/notes/t1`), uris.join(" "));
  [err, res] = await call("conflicts_show", { collection: "notes", id: "t1" });
  assert.ok(err && res.error.code === "not_found", JSON.stringify(res));
  out({ step: "resources", uris: uris.sort(), conflict_show: res.error });

  const uri = `sacred-bridge://${space}/notes/w1`;
  await client.subscribeResource({ uri });
  await waitForGo("subscribed");
  const got = await within(20000, nextUpdate(), "resources/updated");
  assert.equal(got, uri);
  const read = await client.readResource({ uri });
  out({ step: "resource_updated", uri: got, value: JSON.parse(read.contents[0].text) });

  [err, res] = await call("read_messages", { channel: "ops", after: 0 });
  assert.ok(!err);
  await waitForGo("listening");
  [err, res] = await call("read_messages", { channel: "ops", after: res.next, wait_seconds: 20 });
  assert.ok(!err && res.messages.length > 0, JSON.stringify(res));
  out({ step: "message_in", payload: res.messages[0].payload });
  [err, res] = await call("send", { channel: "ops", payload: { from: "mcp" } });
  assert.ok(!err && res.ok);
  await waitForGo("sent");

  [err, res] = await call("presence", {});
  assert.ok(!err);
  out({ step: "presence", names: [...new Set(res.entries.map((e) => e.name))].sort() });
  [err, res] = await call("status", {});
  assert.ok(!err && res.session.space === space);
  out({ step: "status", rights: res.session.rights });
});

await session("ts-stdio-writer", writeToken, async ({ call }) => {
  const [err, res, text] = await call("set_policy", { collection: "notes", policy: "manual" });
  assert.ok(err && res.error.code === "forbidden", JSON.stringify(res));
  out({ step: "write_token", admin_tool: res.error, text });
});

out({ done: true });
lines.return?.();
process.exit(0);
