//! The MCP server: one [`Bridge`] per MCP session (stdio: the process; Streamable HTTP: each
//! `Mcp-Session-Id`). At `initialize` it opens an agent session on the host ([`Link`]) named
//! after the client (`clientInfo.name`); every tool and resource is a frame on that session.

use super::link::{lock, BridgeError, Events, Link};
use super::tools::{self, Args};
use super::uri::{self, Target};
use bridge_core::status::HostStatus;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, InitializeRequestParams,
    InitializeResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, ResourceUpdatedNotificationParam, ServerCapabilities,
    SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Messages kept per channel for `read_messages` (the oldest go first).
const CHANNEL_BUFFER: usize = 1000;
/// And at most this many bytes of payload per channel.
const CHANNEL_BUFFER_BYTES: usize = 8 << 20;
/// Documents per page of `resources/list` (read from the changes feed).
const RESOURCE_PAGE: usize = 100;

/// Where the host is and who this server speaks as.
#[derive(Debug, Clone)]
pub struct Options {
    /// WebSocket base URL of the host, e.g. `ws://127.0.0.1:3333`.
    pub ws: String,
    /// HTTP API base URL of the host (for `status` and `resources/list`).
    pub api: String,
    /// The space, unless an HTTP request names one (`/mcp?space=`).
    pub space: String,
    /// stdio: the token presented to the host. HTTP: unused (each session's bearer token).
    pub token: Option<String>,
    /// The cloud's HTTP API, for the cloud side of `status`.
    pub cloud_api: Option<String>,
    /// Token for the cloud API (default: the session's token).
    pub cloud_token: Option<String>,
    /// Streamable HTTP: token and space come from the `initialize` request.
    pub http: bool,
}

/// Who this session is on the host, fixed at `initialize`.
struct Ident {
    name: String,
    space: String,
    token: Option<String>,
}

#[derive(Default)]
struct Channel {
    /// Messages with an offset above this were asked for (replayed from the host's retention).
    from: u64,
    msgs: BTreeMap<u64, Value>,
    bytes: usize,
    /// Highest offset dropped from the buffer unread (0: none).
    dropped_to: u64,
}

struct Session {
    opts: Arc<Options>,
    ident: OnceLock<Ident>,
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
    peer: OnceLock<Peer<RoleServer>>,
    /// Subscribed resource URIs.
    subs: Mutex<BTreeSet<String>>,
    channels: Mutex<HashMap<String, Channel>>,
    arrived: Notify,
    presence: Mutex<Vec<oneshot::Sender<Value>>>,
}

impl Events for Session {
    fn frame(&self, v: Value) {
        match v["type"].as_str() {
            Some("change") => {
                let (Some(c), Some(id), Some(ident), Some(peer)) = (
                    v["doc"]["collection"].as_str(),
                    v["doc"]["id"].as_str(),
                    self.ident.get(),
                    self.peer.get(),
                ) else {
                    return;
                };
                let uris = [
                    uri::doc(&ident.space, c, id),
                    uri::collection(&ident.space, c),
                ];
                let subs = lock(&self.subs);
                for u in uris.into_iter().filter(|u| subs.contains(u)) {
                    let peer = peer.clone();
                    tokio::spawn(async move {
                        let _ = peer
                            .notify_resource_updated(ResourceUpdatedNotificationParam::new(u))
                            .await;
                    });
                }
            }
            Some("broadcast") => {
                let m = &v["message"];
                let (Some(ch), Some(offset)) = (m["channel"].as_str(), v["offset"].as_u64()) else {
                    return;
                };
                let msg = json!({
                    "offset": offset,
                    "payload": m["payload"],
                    "origin": m["id"]["origin"],
                    "seq": m["id"]["seq"],
                    "stamp": m["stamp"],
                });
                let mut chans = lock(&self.channels);
                if let Some(c) = chans.get_mut(ch) {
                    if !c.msgs.contains_key(&offset) {
                        c.bytes += m["payload"].to_string().len();
                        c.msgs.insert(offset, msg);
                        while c.msgs.len() > CHANNEL_BUFFER
                            || (c.bytes > CHANNEL_BUFFER_BYTES && c.msgs.len() > 1)
                        {
                            if let Some((o, old)) = c.msgs.pop_first() {
                                c.bytes = c.bytes.saturating_sub(old["payload"].to_string().len());
                                c.dropped_to = c.dropped_to.max(o);
                            }
                        }
                    }
                }
                drop(chans);
                self.arrived.notify_waiters();
            }
            Some("presence") => {
                for w in lock(&self.presence).drain(..) {
                    let _ = w.send(v.clone());
                }
            }
            _ => {}
        }
    }
}

/// The MCP server handler of one session.
pub struct Bridge {
    s: Arc<Session>,
}

impl Bridge {
    pub fn new(opts: Arc<Options>) -> Bridge {
        Bridge {
            s: Arc::new(Session {
                opts,
                ident: OnceLock::new(),
                link: tokio::sync::Mutex::new(None),
                peer: OnceLock::new(),
                subs: Mutex::default(),
                channels: Mutex::default(),
                arrived: Notify::new(),
                presence: Mutex::default(),
            }),
        }
    }

    fn ident(&self) -> Result<&Ident, BridgeError> {
        self.s
            .ident
            .get()
            .ok_or_else(|| BridgeError::new("hello_required", "initialize first"))
    }

    /// The live link, reconnecting (and renewing subscriptions) when the old one was lost.
    async fn link(&self) -> Result<Arc<Link>, BridgeError> {
        let mut guard = self.s.link.lock().await;
        if let Some(l) = guard.as_ref().filter(|l| l.is_alive()) {
            return Ok(l.clone());
        }
        let ident = self.ident()?;
        let events: Arc<dyn Events> = self.s.clone();
        let link = Arc::new(
            Link::connect(
                &self.s.opts.ws,
                &ident.space,
                &ident.name,
                ident.token.as_deref(),
                Arc::downgrade(&events),
            )
            .await?,
        );
        if guard.is_some() {
            // A reconnect: ask again for what the old session was subscribed to.
            let collections: BTreeSet<String> = lock(&self.s.subs)
                .iter()
                .filter_map(|u| match uri::parse(u) {
                    Ok(Target::Collection { collection, .. } | Target::Doc { collection, .. }) => {
                        Some(collection)
                    }
                    Err(_) => None,
                })
                .collect();
            for c in collections {
                link.call(json!({"type": "subscribe", "collection": c}))
                    .await?;
            }
            let channels: Vec<(String, u64)> = lock(&self.s.channels)
                .iter()
                .map(|(name, c)| {
                    let seen = c.msgs.last_key_value().map_or(c.from, |(o, _)| *o);
                    (name.clone(), seen.max(c.from))
                })
                .collect();
            for (ch, from) in channels {
                link.call(json!({"type": "subscribe", "channel": ch, "from": from}))
                    .await?;
            }
        }
        *guard = Some(link.clone());
        Ok(link)
    }

    /// Streamable HTTP: every request must carry the bearer token the session was opened with.
    fn check_bearer(&self, ctx: &RequestContext<RoleServer>) -> Result<(), McpError> {
        if !self.s.opts.http {
            return Ok(());
        }
        let Some(ident) = self.s.ident.get() else {
            return Ok(());
        };
        if bearer(ctx) != ident.token {
            return Err(McpError::invalid_request(
                "unauthorized: this request's bearer token is not the one the MCP session was opened with",
                Some(json!({"code": "unauthorized"})),
            ));
        }
        Ok(())
    }

    fn same_space(&self, space: &str) -> Result<(), BridgeError> {
        let ident = self.ident()?;
        if space != ident.space {
            return Err(BridgeError::new(
                "wrong_space",
                format!(
                    "this MCP session is connected to space {:?}, not {space:?} (a token opens one space)",
                    ident.space
                ),
            ));
        }
        Ok(())
    }

    async fn tool(&self, name: &str, a: Args<'_>) -> Result<Value, BridgeError> {
        match name {
            "get" => {
                let ans = self
                    .call(json!({"type": "get", "collection": a.str("collection")?, "id": a.str("id")?}))
                    .await?;
                Ok(json!({"doc": ans["doc"]}))
            }
            "put" | "patch" => {
                let frame = json!({"type": name, "collection": a.str("collection")?, "id": a.str("id")?, "value": a.value("value")?});
                written(self.call(frame).await?)
            }
            "delete" => {
                let frame = json!({"type": "delete", "collection": a.str("collection")?, "id": a.str("id")?});
                written(self.call(frame).await?)
            }
            "list" => {
                let mut frame = json!({"type": "list", "collection": a.str("collection")?, "limit": a.uint("limit", 100, 1, 1000)?});
                if let Some(after) = a.opt_str("after")? {
                    frame["after"] = Value::from(after);
                }
                let ans = self.call(frame).await?;
                Ok(
                    json!({"docs": ans["docs"], "next": ans.get("next").cloned().unwrap_or(Value::Null)}),
                )
            }
            "send" => {
                let frame = json!({"type": "send", "channel": a.str("channel")?, "payload": a.value("payload")?});
                self.call(frame).await?;
                Ok(json!({"ok": true}))
            }
            "read_messages" => self.read_messages(&a).await,
            "conflicts_list" => {
                let mut frame = json!({"type": "conflicts"});
                if let Some(c) = a.opt_str("collection")? {
                    frame["collection"] = Value::from(c);
                }
                let ans = self.call(frame).await?;
                Ok(json!({"conflicts": ans["conflicts"]}))
            }
            "conflicts_show" => {
                let (c, id) = (a.str("collection")?, a.str("id")?);
                let ans = self
                    .call(json!({"type": "conflicts", "collection": c}))
                    .await?;
                ans["conflicts"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|x| x["id"] == id.as_str()))
                    .map(|x| json!({"conflict": x}))
                    .ok_or_else(|| {
                        BridgeError::new(
                            "not_found",
                            format!("document {c}/{id} has no open conflict"),
                        )
                    })
            }
            "conflicts_resolve" => {
                let frame = json!({"type": "resolve", "collection": a.str("collection")?, "id": a.str("id")?, "value": a.value("value")?});
                written(self.call(frame).await?)
            }
            "set_policy" => {
                let frame = json!({"type": "set_policy", "collection": a.str("collection")?, "policy": a.str("policy")?});
                self.call(frame).await?;
                Ok(json!({"ok": true}))
            }
            "status" => self.status().await,
            "presence" => self.presence().await,
            other => Err(BridgeError::new(
                "unknown_type",
                format!("no tool named {other:?}; tools/list names them"),
            )),
        }
    }

    async fn call(&self, frame: Value) -> Result<Value, BridgeError> {
        self.link().await?.call(frame).await
    }

    async fn read_messages(&self, a: &Args<'_>) -> Result<Value, BridgeError> {
        let channel = a.str("channel")?;
        let after = a.uint("after", 0, 0, u64::MAX)?;
        let limit = a.uint("limit", 100, 1, 1000)? as usize;
        let wait = a.seconds("wait_seconds", 60.0)?;
        let link = self.link().await?;
        // First read of the channel, or a read further back than asked so far: (re)subscribe
        // from `after`; the host replays what it retains, duplicates are dropped by offset.
        let (need, fresh) = match lock(&self.s.channels).get(&channel) {
            None => (true, true),
            Some(c) => (after < c.from, false),
        };
        if need {
            {
                let mut chans = lock(&self.s.channels);
                let c = chans.entry(channel.clone()).or_insert_with(|| Channel {
                    from: after,
                    ..Channel::default()
                });
                c.from = c.from.min(after);
            }
            let subscribed = link
                .call(json!({"type": "subscribe", "channel": channel, "from": after}))
                .await;
            if let Err(e) = subscribed {
                if fresh {
                    lock(&self.s.channels).remove(&channel);
                }
                return Err(e);
            }
            // The replay follows the ack: wait until it is in.
            link.barrier().await?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(wait);
        loop {
            let notified = self.s.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (msgs, dropped_to) = {
                let chans = lock(&self.s.channels);
                match chans.get(&channel) {
                    Some(c) => (
                        c.msgs
                            .range(after.saturating_add(1)..)
                            .take(limit)
                            .map(|(_, m)| m.clone())
                            .collect::<Vec<_>>(),
                        c.dropped_to,
                    ),
                    None => (Vec::new(), 0),
                }
            };
            if !msgs.is_empty() || tokio::time::Instant::now() >= deadline {
                let next = msgs
                    .last()
                    .map_or(after, |m| m["offset"].as_u64().unwrap_or(after));
                let mut out = json!({"messages": msgs, "next": next});
                if dropped_to > after {
                    out["missed"] = json!(format!(
                        "messages up to offset {dropped_to} were dropped unread from this session's buffer (it keeps the newest {CHANNEL_BUFFER}); read more often"
                    ));
                }
                return Ok(out);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn status(&self) -> Result<Value, BridgeError> {
        let link = self.link().await?;
        let ident = self.ident()?;
        let w = &link.welcome;
        let session = json!({
            "space": ident.space, "name": ident.name, "rights": w["rights"],
            "replica": w["replica"], "tier": w["tier"], "session": w["session"],
        });
        let local = status_get(&self.s.opts.api, ident.token.as_deref()).await?;
        let mut out = json!({"session": session, "local": local});
        if let Some(api) = &self.s.opts.cloud_api {
            let token = self
                .s
                .opts
                .cloud_token
                .as_deref()
                .or(ident.token.as_deref());
            out["cloud"] = match status_get(api, token).await {
                Ok(v) => v,
                Err(e) => json!({"api": api, "error": {"code": e.code, "message": e.message}}),
            };
        }
        Ok(out)
    }

    async fn presence(&self) -> Result<Value, BridgeError> {
        let link = self.link().await?;
        let (tx, rx) = oneshot::channel();
        lock(&self.s.presence).push(tx);
        link.send(&json!({"type": "presence"}))?;
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(v)) => Ok(json!({"entries": v["entries"]})),
            _ => Err(BridgeError::new(
                "timeout",
                "the host did not answer presence within 10 s",
            )),
        }
    }
}

fn written(ack: Value) -> Result<Value, BridgeError> {
    Ok(json!({"ok": true, "dot": ack.get("dot").cloned().unwrap_or(Value::Null)}))
}

/// `GET {base}/v1/status`, read as the typed [`HostStatus`] (a document this version cannot
/// read is an error, not zeros) and shown as the host sent it.
async fn status_get(base: &str, token: Option<&str>) -> Result<Value, BridgeError> {
    let v = http_get(base, "/v1/status", token).await?;
    let status: HostStatus = serde_json::from_value(v).map_err(|e| {
        BridgeError::new(
            "internal",
            format!("the status from {base} is not what this version of sacred-bridge reads: {e}"),
        )
    })?;
    serde_json::to_value(status).map_err(|e| BridgeError::new("internal", e.to_string()))
}

/// `GET {base}{path}` as JSON; an error answer keeps the bridge's code.
async fn http_get(base: &str, path: &str, token: Option<&str>) -> Result<Value, BridgeError> {
    let (status, body) = crate::http_client::request(base, "GET", path, None, token)
        .await
        .map_err(|e| BridgeError::new("unavailable", e.to_string()))?;
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    if status >= 400 {
        return Err(BridgeError::new(
            v["error"]["code"].as_str().unwrap_or("internal"),
            v["error"]["message"]
                .as_str()
                .map_or_else(|| format!("HTTP {status} from {base}{path}"), str::to_owned),
        ));
    }
    Ok(v)
}

/// The `Authorization: Bearer` token of the HTTP request behind `ctx`, if any.
fn bearer(ctx: &RequestContext<RoleServer>) -> Option<String> {
    ctx.extensions
        .get::<hyper::http::request::Parts>()?
        .headers
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
}

/// `?space=` of the HTTP request behind `ctx`, if any.
fn query_space(ctx: &RequestContext<RoleServer>) -> Option<String> {
    let q = ctx
        .extensions
        .get::<hyper::http::request::Parts>()?
        .uri
        .query()?
        .to_owned();
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "space")
        .and_then(|(_, v)| uri::parse(&format!("{}{v}/x", uri::SCHEME)).ok())
        .and_then(|t| match t {
            Target::Collection { space, .. } => Some(space),
            Target::Doc { .. } => None,
        })
}

fn tool_result(r: Result<Value, BridgeError>) -> CallToolResult {
    let (v, is_error) = match r {
        Ok(v) => (v, false),
        Err(e) => (
            json!({"error": {"code": e.code, "message": e.message}}),
            true,
        ),
    };
    let text = if is_error {
        format!(
            "{}: {}",
            v["error"]["code"].as_str().unwrap_or("error"),
            v["error"]["message"].as_str().unwrap_or("")
        )
    } else {
        v.to_string()
    };
    serde_json::from_value(json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": v,
        "isError": is_error,
    }))
    .unwrap_or_else(|e| CallToolResult::error(vec![rmcp::model::ContentBlock::text(e.to_string())]))
}

fn to_mcp(e: BridgeError) -> McpError {
    let data = Some(json!({"code": e.code}));
    match e.code.as_str() {
        "not_found" => McpError::resource_not_found(e.to_string(), data),
        "malformed" | "bad_request" | "wrong_space" => {
            McpError::invalid_params(e.to_string(), data)
        }
        _ => McpError::internal_error(e.to_string(), data),
    }
}

fn parse_result<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, McpError> {
    serde_json::from_value(v).map_err(|e| McpError::internal_error(e.to_string(), None))
}

/// What `initialize` answers (capabilities, identity, instructions).
pub fn server_info() -> InitializeResult {
    serde_json::from_value(json!({
        "protocolVersion": ProtocolVersion::V_2025_11_25.as_str(),
        "capabilities": {"tools": {}, "resources": {"subscribe": true}},
        "serverInfo": {"name": "sacred-bridge", "title": "Sacred Bridge", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "Sacred Bridge: documents (JSON objects in collections) and channel messages shared between local and cloud agents, offline-first. Use get/put/patch/delete/list for documents, send/read_messages to talk to other agents on a channel (keep the `next` offset and pass it as `after`), presence to see who is connected, conflicts_* for manual conflicts. Writes return once stored durably. Resources: sacred-bridge://{space}/{collection}/{id} (a document) and sacred-bridge://{space}/{collection} (a collection's first page); subscribe to be notified when they change, from either side.",
    }))
    .unwrap_or_else(|_| InitializeResult::new(ServerCapabilities::default()))
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> InitializeResult {
        server_info()
    }

    /// Only the `initialize` era: an MCP session is one agent session of the host.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        let opts = &self.s.opts;
        let (token, space) = if opts.http {
            (
                bearer(&context),
                query_space(&context).unwrap_or_else(|| opts.space.clone()),
            )
        } else {
            (opts.token.clone(), opts.space.clone())
        };
        let name = match request.client_info.name.trim() {
            "" => "mcp-client".to_owned(),
            n => n.to_owned(),
        };
        if self.s.ident.set(Ident { name, space, token }).is_err() {
            return Err(McpError::invalid_request("already initialized", None));
        }
        let _ = self.s.peer.set(context.peer.clone());
        self.link().await.map_err(|e| {
            McpError::invalid_request(
                format!("cannot open a session on the bridge: {e}"),
                Some(json!({"code": e.code})),
            )
        })?;
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        parse_result(json!({"tools": tools::list()}))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.check_bearer(&context)?;
        let empty = Map::new();
        let args = Args(request.arguments.as_ref().unwrap_or(&empty));
        if !tools::list()
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["name"] == request.name.as_ref()))
        {
            return Err(McpError::invalid_params(
                format!("no tool named {:?}; tools/list names them", request.name),
                None,
            ));
        }
        let r = tokio::select! {
            r = self.tool(&request.name, args) => r,
            _ = context.ct.cancelled() => Err(BridgeError::new("cancelled", "the client cancelled the call")),
        };
        Ok(tool_result(r).into())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        parse_result(json!({"resourceTemplates": [
            {
                "uriTemplate": "sacred-bridge://{space}/{collection}/{id}",
                "name": "document",
                "title": "A document",
                "description": "One document as JSON (null when deleted). Subscribe to be notified when it changes, from a local or a cloud writer. Parts are percent-encoded.",
                "mimeType": "application/json",
            },
            {
                "uriTemplate": "sacred-bridge://{space}/{collection}",
                "name": "collection",
                "title": "A collection listing",
                "description": "The first page (100) of a collection's documents as {docs, next}; the `list` tool pages further. Subscribe to be notified when any of its documents changes.",
                "mimeType": "application/json",
            },
        ]}))
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.check_bearer(&context)?;
        let ident = self.ident().map_err(to_mcp)?;
        let cursor = request.and_then(|r| r.cursor).unwrap_or_default();
        let path = format!(
            "/v1/spaces/{}/changes?since={}&limit={RESOURCE_PAGE}",
            uri::enc(&ident.space),
            uri::enc(&cursor)
        );
        let page = http_get(&self.s.opts.api, &path, ident.token.as_deref())
            .await
            .map_err(to_mcp)?;
        let mut resources = Vec::new();
        let mut collections = BTreeSet::new();
        for ch in page["changes"].as_array().into_iter().flatten() {
            let (Some(c), Some(id)) = (ch["collection"].as_str(), ch["id"].as_str()) else {
                continue;
            };
            if collections.insert(c.to_owned()) {
                resources.push(json!({"uri": uri::collection(&ident.space, c), "name": c, "title": format!("collection {c}"), "mimeType": "application/json"}));
            }
            if !ch["value"].is_null() {
                resources.push(json!({"uri": uri::doc(&ident.space, c, id), "name": format!("{c}/{id}"), "mimeType": "application/json"}));
            }
        }
        let mut out = json!({"resources": resources});
        if page["remaining"].as_u64().unwrap_or(0) > 0 {
            out["nextCursor"] = page["cursor"].clone();
        }
        parse_result(out)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.check_bearer(&context)?;
        let target = uri::parse(&request.uri).map_err(|e| {
            McpError::invalid_params(e.to_string(), Some(json!({"code": "bad_request"})))
        })?;
        let text = match target {
            Target::Doc {
                space,
                collection,
                id,
            } => {
                self.same_space(&space).map_err(to_mcp)?;
                let ans = self
                    .call(json!({"type": "get", "collection": collection, "id": id}))
                    .await
                    .map_err(to_mcp)?;
                ans["doc"]["value"].to_string()
            }
            Target::Collection { space, collection } => {
                self.same_space(&space).map_err(to_mcp)?;
                let ans = self
                    .call(json!({"type": "list", "collection": collection, "limit": 100}))
                    .await
                    .map_err(to_mcp)?;
                json!({"docs": ans["docs"], "next": ans.get("next").cloned().unwrap_or(Value::Null)}).to_string()
            }
        };
        let r: ReadResourceResult = parse_result(json!({"contents": [
            {"uri": request.uri, "mimeType": "application/json", "text": text}
        ]}))?;
        Ok(r.into())
    }

    #[allow(deprecated)] // resources/subscribe is the `initialize` era's mechanism, ours
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.check_bearer(&context)?;
        let (space, collection) = match uri::parse(&request.uri).map_err(|e| {
            McpError::invalid_params(e.to_string(), Some(json!({"code": "bad_request"})))
        })? {
            Target::Doc {
                space, collection, ..
            }
            | Target::Collection { space, collection } => (space, collection),
        };
        self.same_space(&space).map_err(to_mcp)?;
        // Subscribing again to a collection is harmless (the host keeps a set).
        self.call(json!({"type": "subscribe", "collection": collection}))
            .await
            .map_err(to_mcp)?;
        lock(&self.s.subs).insert(request.uri);
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.check_bearer(&context)?;
        let Ok(Target::Doc { collection, .. } | Target::Collection { collection, .. }) =
            uri::parse(&request.uri)
        else {
            return Ok(());
        };
        let still = {
            let mut subs = lock(&self.s.subs);
            subs.remove(&request.uri);
            subs.iter().any(|u| {
                matches!(uri::parse(u), Ok(Target::Doc { collection: c, .. } | Target::Collection { collection: c, .. }) if c == collection)
            })
        };
        if !still {
            self.call(json!({"type": "unsubscribe", "collection": collection}))
                .await
                .map_err(to_mcp)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_info_and_tools_parse_as_rmcp_types() {
        let info = server_info();
        assert_eq!(info.server_info.name, "sacred-bridge");
        let caps = serde_json::to_value(&info.capabilities).unwrap_or_default();
        assert_eq!(caps["resources"]["subscribe"], true, "{caps}");
        assert!(caps.get("tools").is_some(), "{caps}");
        let tools: ListToolsResult = parse_result(json!({"tools": tools::list()}))
            .unwrap_or_else(|e| panic!("tools do not parse: {e:?}"));
        assert_eq!(tools.tools.len(), 13);
        for t in &tools.tools {
            assert!(
                t.description.as_ref().is_some_and(|d| d.len() > 40),
                "{}",
                t.name
            );
            assert_eq!(
                t.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn tool_errors_carry_the_bridge_code() {
        let r = tool_result(Err(BridgeError::new("forbidden", "needs admin")));
        let v = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(v["isError"], true, "{v}");
        assert_eq!(v["structuredContent"]["error"]["code"], "forbidden", "{v}");
        assert_eq!(v["content"][0]["text"], "forbidden: needs admin", "{v}");
    }
}
