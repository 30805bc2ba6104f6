//! The Durable Object: one per space, running a bridge-core replica of tier `cloud`.
//!
//! The host loop is the core's ([`Engine::flush`]), on one object: feed the engine (a
//! WebSocket frame, a close, an HTTP request), then [`Host::flush`]: persist every batch the
//! engine cuts (one `transactionSync` each, [`store::write`]), report it persisted, and only
//! then send what the engine wants sent. Acks therefore leave after the write they vouch for;
//! the runtime's output gate would hold them until the write is durable in any case.
//!
//! The engine lives in a `RefCell` (the `DurableObject` trait takes `&self`), shared (`Rc`)
//! with the body stream of an export in progress; it is created on first use, restored from
//! storage, and never borrowed across an `await`. WebSockets are
//! hibernatable (`accept_web_socket`): each carries a [`session::Attachment`], its session's
//! snapshot, kept current after every flush, from which a woken object restores the session
//! ([`session::resume`]).

use crate::session::{self, Attachment, CLOSE_RECONNECT, RECONNECT_REASON};
use crate::store::{self, StoreError};
use bridge_core::api::{self, ApiError, ApiRequest, ApiResponse, Outcome, Route};
use bridge_core::auth::Grant;
use bridge_core::{codec, EngineConfig, Error, ErrorCode, Event, Policy, SessionId, Tier};
use bridge_core::{Engine, Output, Transmit};
use futures_util::StreamExt;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, Storage, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

/// Milliseconds since the epoch, from the runtime's clock.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// The secret tokens are signed with; the edge refuses everything without it.
pub fn secret(env: &Env) -> Option<Vec<u8>> {
    let s = env
        .secret("BRIDGE_SECRET")
        .map(|s| s.to_string())
        .or_else(|_| env.var("BRIDGE_SECRET").map(|v| v.to_string()))
        .ok()?;
    (!s.is_empty()).then(|| s.into_bytes())
}

#[durable_object]
pub struct SpaceObject {
    state: State,
    env: Env,
    /// Shared with the body streams of exports in progress ([`ExportPages`]).
    host: Rc<RefCell<Option<Host>>>,
}

struct Socket {
    ws: WebSocket,
    /// Answer in the binary encoding (the last frame that decoded was binary).
    binary: bool,
    /// The attachment as last stored on the socket (JSON), to store it only when it changed.
    stored: String,
}

struct Host {
    space: String,
    /// The space's integer id in storage (`spaces.sid`).
    sid: i64,
    engine: Engine,
    /// Rows read ahead of the engine in the round in progress ([`store::Ahead`]).
    ahead: store::Ahead,
    sockets: BTreeMap<SessionId, Socket>,
    /// The storage alarm this instance set (ms since the epoch), not yet fired: always at or
    /// before the engine's deadline, so it is moved only when the deadline comes earlier.
    armed: Option<u64>,
}

impl Host {
    /// The core's host loop ([`Engine::flush`]): persist, release, send; then each socket's
    /// attachment is brought up to date with its session. On a storage failure nothing more
    /// is acknowledged: the caller drops the host (as a crash would) and clients reconnect to
    /// a restored one.
    fn flush(&mut self, storage: &Storage) -> std::result::Result<Vec<u64>, StoreError> {
        let (space, sid, ahead) = (&self.space, self.sid, &self.ahead);
        let sockets = &mut self.sockets;
        let mut acked = Vec::new();
        let flushed = self.engine.flush(
            |batches| {
                batches
                    .iter()
                    .try_for_each(|b| store::write(storage, space, sid, ahead, b))
            },
            |engine, out| match out {
                Output::Event(Event::Acked { req, .. }) => acked.push(req),
                Output::Event(_) => {}
                Output::Transmit(t) => transmit(engine, sockets, t),
            },
        );
        self.ahead.clear();
        flushed?;
        self.store_attachments();
        Ok(acked)
    }

    /// Stores the attachment of every socket whose session changed since it was stored.
    fn store_attachments(&mut self) {
        for (id, s) in self.sockets.iter_mut() {
            let Some(att) = Attachment::of(&self.engine, *id, &self.space, s.binary) else {
                continue;
            };
            let json = att.to_json();
            if json != s.stored {
                if let Err(e) = s.ws.serialize_attachment(&json) {
                    worker::console_error!("could not store a socket attachment: {e}");
                }
                s.stored = json;
            }
        }
    }

    fn drop_session(&mut self, session: SessionId, code: u16, reason: &str) {
        drop_session(&mut self.engine, &mut self.sockets, session, code, reason);
    }

    fn close_all(&mut self, code: u16, reason: &str) {
        let ids: Vec<SessionId> = self.sockets.keys().copied().collect();
        for id in ids {
            self.drop_session(id, code, reason);
        }
    }
}

fn transmit(engine: &mut Engine, sockets: &mut BTreeMap<SessionId, Socket>, t: Transmit) {
    match t {
        Transmit::Frame { session, frame } => {
            let Some(s) = sockets.get(&session) else {
                return;
            };
            let sent = if s.binary {
                s.ws.send_with_bytes(codec::encode_binary(&frame))
            } else {
                s.ws.send_with_str(codec::encode_json(&frame))
            };
            if sent.is_err() {
                drop_session(engine, sockets, session, 1011, "the connection broke");
            }
        }
        Transmit::Close {
            session,
            code,
            reason,
        } => drop_session(engine, sockets, session, code.close_code(), &reason),
    }
}

fn drop_session(
    engine: &mut Engine,
    sockets: &mut BTreeMap<SessionId, Socket>,
    session: SessionId,
    code: u16,
    reason: &str,
) {
    engine.close(session);
    if let Some(s) = sockets.remove(&session) {
        // Closing an already closed socket throws; nothing to do about it.
        let _ = s.ws.close(Some(code), Some(session::close_reason(reason)));
    }
}

fn attachment(ws: &WebSocket) -> Option<(Attachment, String)> {
    let json = ws.deserialize_attachment::<String>().ok().flatten()?;
    Attachment::from_json(&json).map(|a| (a, json))
}

/// What the object answers an HTTP request with.
enum Answer {
    /// One body.
    Whole(ApiResponse),
    /// The first page of an export with more to come, and the grant it was asked with.
    Export { first: ApiResponse, grant: Grant },
}

/// One page of an export's body, or the error that cuts it.
type Chunk = std::result::Result<Vec<u8>, worker::Error>;

/// The pages of an export after the first, read from the engine one at a time.
struct ExportPages {
    host: Rc<RefCell<Option<Host>>>,
    storage: Storage,
    grant: Grant,
    /// The key the next page starts after (`None`: the last page went out).
    next: Option<bridge_core::DocKey>,
}

impl ExportPages {
    /// The next page's bytes and what follows it; `None` after the last page. An error ends
    /// the stream (and the body, cut).
    fn next_page(mut self) -> Option<(Chunk, Option<Self>)> {
        let after = self.next.take()?;
        let request = bridge_core::Request::Export { after: Some(after) };
        let page = run_on(&self.host, &self.storage, |host| {
            api::execute(&mut host.engine, now_ms(), &self.grant, request)
        });
        let why = match page {
            Ok((Outcome::Done(page), _)) if page.status == 200 => {
                self.next = page.next;
                return Some((Ok(page.body), Some(self)));
            }
            Ok((Outcome::Done(page), _)) => String::from_utf8_lossy(&page.body).into_owned(),
            Ok((Outcome::AfterAck { .. }, _)) => "an export page waited for an ack".into(),
            Err(e) => e.message,
        };
        worker::console_error!("export stopped part way: {why}");
        Some((Err(worker::Error::RustError(why)), None))
    }
}

/// Runs `f` on the host in `cell`, then flushes. A storage failure drops the host (as a crash
/// would); so does nothing if there is no host (it was dropped since).
fn run_on<T>(
    cell: &RefCell<Option<Host>>,
    storage: &Storage,
    f: impl FnOnce(&mut Host) -> std::result::Result<T, ApiError>,
) -> std::result::Result<(T, Vec<u64>), ApiError> {
    let mut guard = cell.borrow_mut();
    let Some(host) = guard.as_mut() else {
        return Err(internal(
            "the space is not open (the relay restarted); retry",
        ));
    };
    let out = f(host);
    match host.flush(storage) {
        Ok(acked) => Ok((out?, acked)),
        Err(e) => {
            worker::console_error!("{e}; dropping the in-memory state");
            host.close_all(1011, "the relay could not store; reconnect");
            *guard = None;
            Err(internal(e))
        }
    }
}

fn respond(r: ApiResponse) -> Result<Response> {
    let mut resp = Response::from_bytes(r.body)?.with_status(r.status);
    resp.headers_mut().set("content-type", r.content_type)?;
    Ok(resp)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

/// A variable that turns something on (`1`, `true`) or off (`0`, `false`, empty); anything
/// else is refused rather than read as off, so a typo does not pass unnoticed.
fn switch(key: &str, v: &str) -> std::result::Result<bool, ApiError> {
    // The same words as the native host's `.env`.
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(internal(format!(
            "{key}={v:?}: expected 1, true, yes or on (or 0, false, no, off)"
        ))),
    }
}

/// Mebibytes of document states the object keeps cached when `CACHE_MB` is unset: a
/// quarter of the 128 MB a Durable Object may use.
const DEFAULT_CACHE_MB: usize = 32;

impl SpaceObject {
    fn engine_config(&self, space: &str) -> std::result::Result<EngineConfig, ApiError> {
        let mut cfg = EngineConfig::new(bridge_core::ReplicaId(0), Tier::Cloud, space);
        cfg.secret = Some(secret(&self.env).ok_or_else(|| {
            internal("BRIDGE_SECRET is not set: `npx wrangler secret put BRIDGE_SECRET` (or .dev.vars locally)")
        })?);
        cfg.name = "edge".into();
        // The edge dials nobody: it is the root of the space's sync tree.
        cfg.root = true;
        // The object reads no `DocChanged`: its sessions get their `change` frames anyway.
        cfg.doc_events = bridge_core::DocEvents::Collections(Default::default());
        if let Ok(v) = self.env.var("CONFLICT_STRATEGY") {
            let v = v.to_string();
            if !v.is_empty() {
                cfg.default_policy = v.parse::<Policy>().map_err(ApiError::from)?;
            }
        }
        if let Some(ms) = self.millis("HELLO_TIMEOUT_MS", false)? {
            cfg.hello_timeout_ms = ms;
        }
        if let Some(ms) = self.millis("HEARTBEAT_MS", true)? {
            cfg.heartbeat_ms = ms;
        }
        cfg.cache_bytes = DEFAULT_CACHE_MB << 20;
        if let Ok(v) = self.env.var("CACHE_MB") {
            let v = v.to_string();
            if !v.is_empty() {
                cfg.cache_bytes = match v.parse::<usize>() {
                    Ok(mb) if (1..=1024).contains(&mb) => mb << 20,
                    _ => {
                        return Err(internal(format!(
                            "CACHE_MB={v:?}: expected a whole number of mebibytes from 1 to 1024"
                        )))
                    }
                };
            }
        }
        // Tombstone collection is asked for, never assumed: once on, a peer that holds part
        // of what is below the horizon but not all of it is resynced before any push.
        if let Ok(v) = self.env.var("COLLECT_TOMBSTONES") {
            cfg.collect = switch("COLLECT_TOMBSTONES", &v.to_string())?;
        }
        // A peer gone this long no longer holds the horizon back (checked at each `hello`
        // and by the object's alarm, which the engine's next deadline arms).
        if let Some(ms) = self.millis("REPLICA_EXPIRY_MS", true)? {
            cfg.expiry_ms = (ms > 0).then_some(ms);
        }
        Ok(cfg)
    }

    /// A duration variable in milliseconds (`[vars]` or `.dev.vars`); unset or empty: `None`.
    fn millis(&self, key: &str, zero_ok: bool) -> std::result::Result<Option<u64>, ApiError> {
        let Ok(v) = self.env.var(key) else {
            return Ok(None);
        };
        let v = v.to_string();
        if v.is_empty() {
            return Ok(None);
        }
        match v.parse::<u64>() {
            Ok(n) if n > 0 || zero_ok => Ok(Some(n)),
            _ => Err(internal(format!(
                "{key}={v:?}: expected a whole number of milliseconds{}",
                if zero_ok {
                    " (0 turns it off)"
                } else {
                    " greater than 0"
                }
            ))),
        }
    }

    /// Arms the storage alarm for the engine's next deadline (a handshake that runs out, a
    /// silent peer). The alarm outlives hibernation: it wakes the object, which restores its
    /// sessions (a socket that never said `hello` keeps its accept time) and runs the
    /// engine's timeout. Called after every input; a storage write only when the deadline
    /// comes earlier than the alarm already set.
    async fn arm(&self) {
        let at = {
            let mut guard = self.host.borrow_mut();
            let Some(host) = guard.as_mut() else { return };
            match host.engine.poll_timeout() {
                Some(d) if host.armed.is_none_or(|a| d < a) => {
                    host.armed = Some(d);
                    d
                }
                // No deadline, or an alarm at or before it: when that fires it re-arms.
                _ => return,
            }
        };
        let offset = i64::try_from(at.saturating_sub(now_ms())).unwrap_or(i64::MAX);
        if let Err(e) = self.state.storage().set_alarm(offset).await {
            worker::console_error!("could not set the alarm: {e}");
            if let Some(host) = self.host.borrow_mut().as_mut() {
                host.armed = None;
            }
        }
    }

    /// The alarm fired: the engine handles its deadlines (closes handshakes that ran out and
    /// silent peers), then the next alarm is armed.
    async fn on_alarm(&self) {
        let space = {
            let mut guard = self.host.borrow_mut();
            match guard.as_mut() {
                Some(host) => {
                    host.armed = None;
                    Some(host.space.clone())
                }
                None => None,
            }
        };
        // Woken by the alarm after eviction: the space is the one in storage.
        let space = match space {
            Some(s) => Some(s),
            None => match store::stored_space(&self.state.storage()) {
                Ok(s) => s.map(|(space, _)| space),
                Err(e) => {
                    worker::console_error!("alarm: could not read the space: {e}");
                    None
                }
            },
        };
        let Some(space) = space else { return };
        let result = self.with_host(&space, |host| {
            host.engine.handle_timeout(now_ms());
            Ok(())
        });
        if let Err(e) = result {
            worker::console_error!("alarm: {}", e.message);
        }
        self.arm().await;
    }

    /// Creates the host on first use: the space's engine restored from storage, and the
    /// sessions of any sockets that outlived a previous instance (hibernation).
    fn ensure_host(&self, space: &str) -> std::result::Result<(), ApiError> {
        if self.host.borrow().is_some() {
            return Ok(());
        }
        let now = now_ms();
        let storage = self.state.storage();
        store::migrate(&storage, now).map_err(internal)?;
        let mut cfg = self.engine_config(space)?;
        cfg.replica = match store::stored_space(&storage).map_err(internal)? {
            Some((stored, replica)) if stored == space => replica,
            Some((stored, _)) => {
                return Err(internal(format!(
                    "this Durable Object holds space {stored:?}, not {space:?}"
                )))
            }
            None => store::create_space(&storage, space, now).map_err(internal)?,
        };
        let store::Loaded {
            mut engine,
            sid,
            ahead,
        } = store::load(&storage, cfg).map_err(internal)?;

        let mut sockets = BTreeMap::new();
        let mut atts = Vec::new();
        for ws in self.state.get_websockets() {
            match attachment(&ws) {
                Some((att, stored)) if att.space == space => {
                    sockets.insert(
                        att.session,
                        Socket {
                            ws,
                            binary: att.binary,
                            stored,
                        },
                    );
                    atts.push(att);
                }
                _ => {
                    let _ = ws.close(Some(CLOSE_RECONNECT), Some(RECONNECT_REASON));
                }
            }
        }
        let reconnect = session::resume(&mut engine, &atts);
        if !atts.is_empty() {
            worker::console_warn!(
                "space {space}: woke with {} sockets: {} resumed, {} asked to reconnect",
                atts.len(),
                atts.len() - reconnect.len(),
                reconnect.len()
            );
        }
        let mut host = Host {
            space: space.to_owned(),
            sid,
            engine,
            ahead,
            sockets,
            armed: None,
        };
        for id in reconnect {
            host.drop_session(id, CLOSE_RECONNECT, RECONNECT_REASON);
        }
        *self.host.borrow_mut() = Some(host);
        Ok(())
    }

    /// Runs `f` on the host, then flushes. A storage failure drops the host.
    fn with_host<T>(
        &self,
        space: &str,
        f: impl FnOnce(&mut Host) -> std::result::Result<T, ApiError>,
    ) -> std::result::Result<(T, Vec<u64>), ApiError> {
        self.ensure_host(space)?;
        run_on(&self.host, &self.state.storage(), f)
    }

    fn accept_websocket(&self, space: &str) -> std::result::Result<Response, ApiError> {
        let pair = WebSocketPair::new().map_err(internal)?;
        let now = now_ms();
        self.with_host(space, |host| {
            self.state.accept_web_socket(&pair.server);
            // The flush that follows stores the socket's attachment.
            let session = host.engine.accept(now);
            host.sockets.insert(
                session,
                Socket {
                    ws: pair.server.clone(),
                    binary: false,
                    stored: String::new(),
                },
            );
            Ok(())
        })?;
        Response::from_websocket(pair.client).map_err(internal)
    }

    async fn http(&self, mut req: Request) -> std::result::Result<Answer, ApiError> {
        if let Ok(Some(n)) = req.headers().get("content-length") {
            if n.parse::<usize>().is_ok_and(|n| n > api::MAX_BODY_BYTES) {
                return Err(too_large(api::MAX_BODY_BYTES + 1));
            }
        }
        let body = req.bytes().await.map_err(|e| {
            ApiError::new(
                ErrorCode::Malformed,
                format!("the body could not be read: {e}"),
            )
        })?;
        if body.len() > api::MAX_BODY_BYTES {
            return Err(too_large(body.len()));
        }
        let url = req.url().map_err(internal)?;
        let token = req
            .headers()
            .get("authorization")
            .ok()
            .flatten()
            .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_owned()));
        let route = api::parse(&ApiRequest {
            method: req.method().as_ref(),
            path: url.path(),
            query: url.query(),
            body: &body,
        })?;
        let Route::Space { space, request } = route else {
            return Err(ApiError::not_found(
                "this path is served by the Worker, not a space",
            ));
        };
        let now = now_ms();
        let secret = self.engine_config(&space)?.secret;
        let grant = api::authorize(secret.as_deref(), token.as_deref(), &space, now)?;
        let (outcome, acked) = self.with_host(&space, |host| {
            api::execute(&mut host.engine, now, &grant, request)
        })?;
        match outcome {
            // An export of several pages: the rest is asked of the engine a page at a time
            // as the body is read ([`ExportPages`]).
            Outcome::Done(first) if first.status == 200 && first.next.is_some() => {
                Ok(Answer::Export { first, grant })
            }
            Outcome::Done(resp) => Ok(Answer::Whole(resp)),
            Outcome::AfterAck { req, response } if acked.contains(&req) => {
                Ok(Answer::Whole(response))
            }
            Outcome::AfterAck { .. } => Err(internal("the write was not stored; retry")),
        }
    }

    /// The answer to an export of several pages: the first page at once, then each next one
    /// asked of the engine when the runtime pulls for more body, so the object holds one
    /// page of the space at a time, never the whole export. A page that fails ends the body
    /// with an error: the client sees a cut transfer, not a short export.
    fn export_stream(&self, first: ApiResponse, grant: Grant) -> Result<Response> {
        let content_type = first.content_type;
        let pages = ExportPages {
            host: self.host.clone(),
            storage: self.state.storage(),
            grant,
            next: first.next,
        };
        let head = futures_util::stream::once(std::future::ready(Ok(first.body)));
        let rest = futures_util::stream::unfold(Some(pages), |pages| {
            std::future::ready(pages.and_then(ExportPages::next_page))
        });
        let mut resp = Response::from_stream(head.chain(rest))?;
        resp.headers_mut().set("content-type", content_type)?;
        Ok(resp)
    }

    /// A frame arrived on a socket (or failed to decode).
    fn on_message(&self, ws: &WebSocket, bytes: &[u8], binary: bool) {
        let Some((att, _)) = attachment(ws) else {
            let _ = ws.close(Some(CLOSE_RECONNECT), Some(RECONNECT_REASON));
            return;
        };
        let session = att.session;
        let result = self.with_host(&att.space, |host| {
            let decoded = if binary {
                codec::decode_binary(bytes)
            } else {
                codec::decode_json(bytes)
            };
            match decoded {
                Ok(frame) => {
                    if let Some(s) = host.sockets.get_mut(&session) {
                        s.binary = binary;
                    }
                    if let bridge_core::Frame::Push(p) = &frame {
                        // The push's documents in one read instead of one each; should it
                        // fail, the engine reads them itself (and reports what fails then).
                        let keys: Vec<bridge_core::DocKey> = p
                            .docs
                            .iter()
                            .map(|d| bridge_core::DocKey::new(d.collection.clone(), d.id.clone()))
                            .collect();
                        let storage = self.state.storage();
                        if let Err(e) = host.ahead.read(&storage, host.sid, &keys) {
                            worker::console_warn!("reading a push's documents ahead: {e}");
                            host.ahead.clear();
                        }
                    }
                    host.engine.handle_frame(now_ms(), session, frame);
                }
                Err(e) => {
                    let req = codec::request_id(bytes, binary);
                    host.engine.handle_decode_error(session, req, &e);
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            worker::console_error!("session {session}: {}", e.message);
            let _ = ws.close(Some(1011), Some(session::close_reason(&e.message)));
        }
    }

    fn on_closed(&self, ws: &WebSocket) {
        let Some((att, _)) = attachment(ws) else {
            return;
        };
        let mut guard = self.host.borrow_mut();
        if let Some(host) = guard.as_mut() {
            host.engine.close(att.session);
            host.sockets.remove(&att.session);
            if let Err(e) = host.flush(&self.state.storage()) {
                worker::console_error!("{e}");
                host.close_all(1011, "the relay could not store; reconnect");
                *guard = None;
            }
        }
        // Reciprocate the close; throws when the socket is already closed.
        let _ = ws.close(Some(1000), Some("bye"));
    }
}

fn too_large(size: usize) -> ApiError {
    Error::TooLarge {
        size,
        max: api::MAX_BODY_BYTES,
    }
    .into()
}

/// The space a Durable Object request is for (the Worker only forwards `/v1/spaces/...`).
fn space_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1/spaces/")?;
    let seg = rest.split('/').next()?;
    Some(api::percent_decode(seg)).filter(|s| !s.is_empty())
}

fn is_websocket_path(path: &str) -> bool {
    path.strip_prefix("/v1/spaces/")
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(_, rest)| rest == "ws")
}

impl DurableObject for SpaceObject {
    fn new(state: State, env: Env) -> Self {
        SpaceObject {
            state,
            env,
            host: Rc::new(RefCell::new(None)),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let url = req.url()?;
        let path = url.path().to_owned();
        let Some(space) = space_of(&path) else {
            return respond(ApiError::not_found(format!("no route for {path}")).response());
        };
        if is_websocket_path(&path) {
            let upgrade = req.headers().get("upgrade").ok().flatten();
            if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
                let e = ApiError {
                    status: 426,
                    code: ErrorCode::BadRequest,
                    message: "this is a WebSocket endpoint: send `Upgrade: websocket`".into(),
                };
                return respond(e.response());
            }
            let resp = match self.accept_websocket(&space) {
                Ok(resp) => Ok(resp),
                Err(e) => respond(e.response()),
            };
            self.arm().await;
            return resp;
        }
        let resp = match self.http(req).await {
            Ok(Answer::Whole(resp)) => respond(resp),
            Ok(Answer::Export { first, grant }) => self.export_stream(first, grant),
            Err(e) => respond(e.response()),
        };
        self.arm().await;
        resp
    }

    async fn alarm(&self) -> Result<Response> {
        self.on_alarm().await;
        Response::empty()
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        match message {
            WebSocketIncomingMessage::String(s) => self.on_message(&ws, s.as_bytes(), false),
            WebSocketIncomingMessage::Binary(b) => self.on_message(&ws, &b, true),
        }
        self.arm().await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        self.on_closed(&ws);
        self.arm().await;
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        self.on_closed(&ws);
        self.arm().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(space_of("/v1/spaces/team/ws").as_deref(), Some("team"));
        assert_eq!(
            space_of("/v1/spaces/a%20b/docs/c/x").as_deref(),
            Some("a b")
        );
        assert_eq!(space_of("/v1/spaces/"), None);
        assert!(is_websocket_path("/v1/spaces/team/ws"));
        assert!(!is_websocket_path("/v1/spaces/team/docs/ws"));
    }

    #[test]
    fn switches() {
        for (v, on) in [
            ("1", true),
            ("true", true),
            ("ON", true),
            ("0", false),
            ("false", false),
            ("no", false),
        ] {
            assert_eq!(switch("COLLECT_TOMBSTONES", v).ok(), Some(on), "{v}");
        }
        assert_eq!(switch("COLLECT_TOMBSTONES", "").ok(), Some(false));
        let Err(e) = switch("COLLECT_TOMBSTONES", "maybe") else {
            panic!("maybe is refused")
        };
        assert!(
            e.message.contains("COLLECT_TOMBSTONES=\"maybe\""),
            "{}",
            e.message
        );
    }
}
