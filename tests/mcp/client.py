"""An MCP agent written with the official Python SDK (`mcp`), driven by tests/tests/mcp.rs.

    python client.py stdio SPACE BIN WS API TOKEN [WRITE_TOKEN]   # launches `BIN mcp ...`
    python client.py http  SPACE URL TOKEN [WRITE_TOKEN]           # Streamable HTTP at URL
    python client.py hybrid-local|hybrid-cloud SPACE BIN WS API TOKEN
    python client.py scoped SPACE BIN WS API TOKEN   # a token for `notes/*:write,audit:read`

Prints one JSON object a line on stdout. `{"step": NAME, ...}` reports what the server
answered; `{"wait": NAME}` asks the Rust test to act (write over WebSocket, send a message)
and to answer with one line on stdin before the script goes on. The last line is
`{"done": true}`. Any failed check raises, so the process exits non-zero.
"""

import json
import sys
import warnings

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

# resources/subscribe is what `initialize`-era servers offer; the SDK flags it as legacy.
warnings.simplefilter("ignore")

TOOLS = {
    "get", "put", "patch", "delete", "list", "send", "read_messages", "conflicts_list",
    "conflicts_show", "conflicts_resolve", "set_policy", "status", "presence",
}


def out(obj):
    print(json.dumps(obj), flush=True)


async def wait_for_go(name):
    out({"wait": name})
    line = await anyio.to_thread.run_sync(sys.stdin.readline)
    if not line:
        raise SystemExit(f"stdin closed while waiting for {name}")


class Agent:
    """One MCP session; collects `notifications/resources/updated`."""

    def __init__(self, session, updates):
        self.s = session
        self.updates = updates

    async def call(self, name, args):
        r = await self.s.call_tool(name, args)
        return r.is_error, r.structured_content, r.content[0].text


async def open_session(mode, argv, token, name, body):
    """Runs `body(agent)` in an MCP session of client name `name`."""
    send, recv = anyio.create_memory_object_stream(100)

    async def on_message(msg):
        if isinstance(msg, types.ResourceUpdatedNotification):
            await send.send(msg.params.uri)

    async def run(read, write):
        async with ClientSession(read, write, message_handler=on_message,
                                 client_info=types.Implementation(name=name, version="1")) as s:
            init = await s.initialize()
            out({"step": "initialize", "server": init.server_info.name,
                 "protocol": init.protocol_version})
            return await body(Agent(s, recv))

    if mode == "http":
        url = argv[0]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with create_mcp_http_client(headers=headers) as client:
            async with streamable_http_client(url, http_client=client) as (read, write):
                return await run(read, write)
    bin_, ws, api, space = argv
    params = StdioServerParameters(
        command=bin_, args=["mcp", "--space", space, "--ws", ws, "--api", api],
        env={"BRIDGE_TOKEN": token, "RUST_LOG": "warn"} if token else {"RUST_LOG": "warn"})
    async with stdio_client(params) as (read, write):
        return await run(read, write)


async def scenario(a, space):
    # tools/list: every tool, each with a description and an object schema.
    tools = (await a.s.list_tools()).tools
    names = {t.name for t in tools}
    assert names == TOOLS, names
    assert all(t.description and t.input_schema.get("type") == "object" for t in tools)
    out({"step": "tools", "names": sorted(names)})

    # put / get / list (paged).
    err, res, _ = await a.call("put", {"collection": "notes", "id": "n1", "value": {"title": "hi"}})
    assert not err and res["ok"] and res["dot"]["counter"] >= 1, res
    err, res, _ = await a.call("put", {"collection": "notes", "id": "n2", "value": {"title": "two"}})
    assert not err, res
    err, res, _ = await a.call("get", {"collection": "notes", "id": "n1"})
    assert not err and res["doc"]["value"] == {"title": "hi"}, res
    err, page1, _ = await a.call("list", {"collection": "notes", "limit": 1})
    assert not err and [d["id"] for d in page1["docs"]] == ["n1"] and page1["next"] == "n1", page1
    err, page2, _ = await a.call("list", {"collection": "notes", "limit": 1, "after": page1["next"]})
    assert not err and [d["id"] for d in page2["docs"]] == ["n2"], page2
    out({"step": "put_get_list", "get": res["doc"]["value"], "pages": [page1, page2]})

    # Bad arguments: tool errors with the bridge's code and message, and the session goes on.
    err, res, text = await a.call("put", {"collection": "notes", "id": "bad", "value": [1]})
    assert err and res["error"]["code"] == "bad_request", res
    err2, res2, _ = await a.call("get", {"collection": "notes"})
    assert err2 and res2["error"]["code"] == "malformed" and "id" in res2["error"]["message"], res2
    out({"step": "bad_argument", "error": res["error"], "text": text, "missing": res2["error"]})

    # Resources: templates, and a page of the space's documents and collections.
    templates = (await a.s.list_resource_templates()).resource_templates
    assert {t.uri_template for t in templates} == {
        "sacred-bridge://{space}/{collection}/{id}", "sacred-bridge://{space}/{collection}"}
    uris = {r.uri for r in (await a.s.list_resources()).resources}
    assert {f"sacred-bridge://{space}/notes", f"sacred-bridge://{space}/notes/n1"} <= uris, uris
    listing = json.loads((await a.s.read_resource(f"sacred-bridge://{space}/notes")).contents[0].text)
    assert [d["id"] for d in listing["docs"]] == ["n1", "n2"], listing
    # Conflicts: none open, and asking for one is a not_found tool error.
    err, res, _ = await a.call("conflicts_list", {})
    assert not err and res["conflicts"] == [], res
    err, res, _ = await a.call("conflicts_show", {"collection": "notes", "id": "n1"})
    assert err and res["error"]["code"] == "not_found", res
    out({"step": "resources", "uris": sorted(uris), "conflict_show": res["error"]})

    # A write from a WebSocket agent arrives as notifications/resources/updated.
    uri = f"sacred-bridge://{space}/notes/w1"
    await a.s.subscribe_resource(uri)
    await wait_for_go("subscribed")
    with anyio.fail_after(20):
        got = await a.updates.receive()
    assert got == uri, got
    read = await a.s.read_resource(uri)
    value = json.loads(read.contents[0].text)
    out({"step": "resource_updated", "uri": got, "value": value})

    # Messages both ways with a WebSocket agent.
    err, res, _ = await a.call("read_messages", {"channel": "ops", "after": 0})
    assert not err, res
    await wait_for_go("listening")
    with anyio.fail_after(30):
        err, res, _ = await a.call("read_messages",
                                   {"channel": "ops", "after": res["next"], "wait_seconds": 20})
    assert not err and res["messages"], res
    out({"step": "message_in", "payload": res["messages"][0]["payload"]})
    err, res, _ = await a.call("send", {"channel": "ops", "payload": {"from": "mcp"}})
    assert not err and res["ok"], res
    await wait_for_go("sent")

    # Presence: the WebSocket agent is there.
    err, res, _ = await a.call("presence", {})
    assert not err, res
    out({"step": "presence", "names": sorted({e["name"] for e in res["entries"]})})

    err, res, _ = await a.call("status", {})
    assert not err and res["session"]["space"] == space, res
    out({"step": "status", "rights": res["session"]["rights"]})


async def refused(a):
    err, res, text = await a.call("set_policy", {"collection": "notes", "policy": "manual"})
    assert err and res["error"]["code"] == "forbidden", res
    err2, res2, _ = await a.call("put", {"collection": "notes", "id": "by-writer", "value": {"w": 1}})
    assert not err2, res2
    out({"step": "write_token", "admin_tool": res["error"], "text": text})


async def scoped(a, space):
    """A token with `notes/*:write,audit:read`: the tools and resources open only those."""
    err, res, _ = await a.call("put", {"collection": "notes/a", "id": "m1", "value": {"by": "mcp"}})
    assert not err, res
    err, res, _ = await a.call("get", {"collection": "audit", "id": "log"})
    assert not err and res["doc"]["value"] is not None, res
    refused = {}
    for name, args in [
        ("get", {"collection": "users", "id": "u1"}),
        ("list", {"collection": "users"}),
        ("put", {"collection": "audit", "id": "log", "value": {"n": 2}}),
        ("conflicts_list", {"collection": "users"}),
    ]:
        err, res, _ = await a.call(name, args)
        assert err and res["error"]["code"] == "forbidden", (name, res)
        refused[name] = res["error"]["code"]
    uris = sorted(r.uri for r in (await a.s.list_resources()).resources)
    assert not any("/users" in u for u in uris), uris
    assert f"sacred-bridge://{space}/audit/log" in uris, uris
    out({"step": "scoped", "refused": refused, "uris": uris})


async def hybrid(a, role, space):
    """Two agents, one on each side, coordinate through channel `coord` and document plan/p1."""
    if role == "local":
        err, res, _ = await a.call("read_messages", {"channel": "coord", "after": 0})
        assert not err, res
        cursor = res["next"]
        err, res, _ = await a.call("put", {"collection": "plan", "id": "p1",
                                           "value": {"task": "deploy", "status": "todo"}})
        assert not err, res
        # The cloud agent's edit must come down as a resource notification.
        uri = f"sacred-bridge://{space}/plan/p1"
        await a.s.subscribe_resource(uri)
        err, res, _ = await a.call("send", {"channel": "coord", "payload": {"ask": "deploy", "doc": "plan/p1"}})
        assert not err, res
        with anyio.fail_after(60):
            while True:
                err, res, _ = await a.call("read_messages",
                                           {"channel": "coord", "after": cursor, "wait_seconds": 20})
                assert not err, res
                cursor = res["next"]
                replies = [m["payload"] for m in res["messages"] if m["payload"].get("done")]
                if replies:
                    break
        with anyio.fail_after(30):
            while True:
                assert await a.updates.receive() == uri
                err, res, _ = await a.call("get", {"collection": "plan", "id": "p1"})
                if res["doc"]["value"].get("status") == "done":
                    break
        out({"step": "hybrid_local", "reply": replies[0], "doc": res["doc"]["value"],
             "notified": uri})
    else:
        cursor = 0
        with anyio.fail_after(60):
            while True:
                err, res, _ = await a.call("read_messages",
                                           {"channel": "coord", "after": cursor, "wait_seconds": 20})
                assert not err, res
                cursor = res["next"]
                asks = [m["payload"] for m in res["messages"] if m["payload"].get("ask")]
                if asks:
                    break
        with anyio.fail_after(30):
            while True:
                err, res, _ = await a.call("get", {"collection": "plan", "id": "p1"})
                if res["doc"]["value"] is not None:
                    break
                await anyio.sleep(0.1)
        err, res, _ = await a.call("patch", {"collection": "plan", "id": "p1",
                                             "value": {"status": "done", "by": "cloud"}})
        assert not err, res
        err, res, _ = await a.call("send", {"channel": "coord", "payload": {"done": "deploy"}})
        assert not err, res
        out({"step": "hybrid_cloud", "ask": asks[0]})


async def main():
    mode, space, *rest = sys.argv[1:]
    if mode == "http":
        url, token, *write = rest
        argv = [f"{url}?space={space}"]
        kind = "http"
    else:
        bin_, ws, api, token, *write = rest
        argv = [bin_, ws, api, space]
        kind = "stdio"
    if mode == "scoped":
        await open_session(kind, argv, token, "py-scoped-agent", lambda a: scoped(a, space))
    elif mode.startswith("hybrid-"):
        role = mode.removeprefix("hybrid-")
        await open_session(kind, argv, token, f"py-{role}-agent", lambda a: hybrid(a, role, space))
    else:
        await open_session(kind, argv, token, f"py-{mode}-agent", lambda a: scenario(a, space))
        if write:
            await open_session(kind, argv, write[0], f"py-{mode}-writer", refused)
        if mode == "http":
            # Without a bearer token a cloud host refuses the session at `initialize`.
            try:
                await open_session(kind, argv, None, "py-anonymous", scenario)
                raise AssertionError("a session without a token was accepted")
            except Exception as e:  # the SDK raises McpError (possibly in an exception group)
                text = repr(e)
                while "unauthorized" not in text and getattr(e, "exceptions", None):
                    e = e.exceptions[0]
                    text = repr(e)
                assert "unauthorized" in text, text
                out({"step": "no_token", "error": text[:300]})
    out({"done": True})


if __name__ == "__main__":
    anyio.run(main)
