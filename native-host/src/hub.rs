//! The hub: one thread that owns every space's [`Engine`] and the [`Store`], so the core stays
//! single-threaded and SQLite is used from one place.
//!
//! Group commit: wait for one input, drain everything else already queued, then persist every
//! batch the engines cut in one transaction (`synchronous=FULL`), report them persisted, and
//! only then hand out what the engines want sent. An ack therefore never leaves before the
//! commit that holds its write.

use crate::metrics::Metrics;
use crate::store::{now_ms, Store};
use bridge_core::api::{self, ApiError, ApiResponse, Outcome, SpaceOp};
use bridge_core::status::{
    HostDetails, HostStatus, LinkState, PeerSession, PullProgress, PushProgress, SpaceStatus,
    Stored, UpstreamLink,
};
use bridge_core::{
    check_name, Engine, EngineConfig, Error, ErrorCode, Event, Frame, PersistBatch, Policy,
    SessionId, Tier, Transmit, VersionVector,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Frames and closes for one connection.
#[derive(Debug)]
pub enum Output {
    Frame(Frame),
    /// Close the WebSocket with this close code (RFC 6455) and reason.
    Close {
        code: u16,
        reason: String,
    },
}

/// The answer to `POST /v1/sync` (and `sacred-bridge sync`) when no upstream link is up.
pub const NO_LINK: &str = "no upstream link is up: is this host in hybrid mode (CLOUD_WS_URL) and can it reach the cloud? `sacred-bridge monitor` shows the link";

/// Outbound queue per connection; a connection that falls this far behind is dropped.
pub const OUTPUT_QUEUE: usize = 8192;

#[derive(Debug)]
pub enum Input {
    /// A WebSocket connection for `space` opened (agent or peer, it says in `hello`).
    Accept {
        space: String,
        session: SessionId,
        out: mpsc::Sender<Output>,
    },
    /// This host dialled an upstream peer for `space`.
    Connect {
        space: String,
        session: SessionId,
        token: Option<String>,
        out: mpsc::Sender<Output>,
        manual: bool,
    },
    Frame {
        space: String,
        session: SessionId,
        frame: Frame,
    },
    DecodeError {
        space: String,
        session: SessionId,
        /// The request id the bytes carry, if it could be read.
        req: Option<u64>,
        error: Error,
    },
    Closed {
        space: String,
        session: SessionId,
    },
    Api {
        space: String,
        op: SpaceOp,
        token: Option<String>,
        reply: oneshot::Sender<ApiResponse>,
    },
    Metrics {
        /// The request's bearer token, checked against [`HubConfig::metrics`].
        token: Option<String>,
        reply: oneshot::Sender<ApiResponse>,
    },
    /// Host status; with a secret (cloud mode) only the spaces `token` opens.
    Status {
        token: Option<String>,
        reply: oneshot::Sender<ApiResponse>,
    },
    /// Push and/or pull on every upstream link now (manual / periodic sync).
    Sync {
        push: bool,
        pull: bool,
        reply: Option<oneshot::Sender<ApiResponse>>,
    },
    /// What the link manager knows of `space`'s upstream link (hybrid mode).
    Link {
        space: String,
        note: LinkNote,
    },
}

/// News of an upstream link that only the dialling side knows.
#[derive(Debug)]
pub enum LinkNote {
    /// The space has no usable token for the cloud: it stays local. The reason is shown.
    NotLinked(String),
    /// The last dial failed (the link keeps trying).
    Unreachable(String),
}

pub struct HubConfig {
    pub tier: Tier,
    pub secret: Option<Vec<u8>>,
    pub default_policy: Policy,
    /// Who may read `/metrics` (it names every space).
    pub metrics: MetricsAccess,
    pub name: String,
    /// The database file, shown by status (backup and restore find it there).
    pub db_path: String,
    /// `SYNC_MODE=event`: a durable change to one of these collections pushes upstream.
    pub event_collections: BTreeSet<String>,
    /// `SYNC_MODE=event`: a message on one of these channels pushes upstream.
    pub event_channels: BTreeSet<String>,
    /// Hybrid mode: every space the hub opens (restored or new) is announced here, once, so
    /// that the link manager ([`crate::upstream::manage`]) links it.
    pub link_spaces: Option<mpsc::UnboundedSender<String>>,
    /// `HELLO_TIMEOUT_MS`: a connection must finish its handshake this soon.
    pub hello_timeout_ms: u64,
    /// `HEARTBEAT_MS`: pings on links we dialed, silent peers closed after three (0 = off).
    pub heartbeat_ms: u64,
}

/// Who may read `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Anyone who reaches the API port (local and hybrid mode without `METRICS_TOKEN`).
    Open,
    /// Requests with `Authorization: Bearer <this>` (`METRICS_TOKEN`).
    Token(String),
    /// Nobody (cloud mode without `METRICS_TOKEN`).
    Off,
}

impl MetricsAccess {
    /// Checks a request's bearer token.
    pub fn check(&self, token: Option<&str>) -> Result<(), ApiError> {
        match (self, token) {
            (MetricsAccess::Open, _) => Ok(()),
            (MetricsAccess::Token(want), Some(got)) if same_secret(want.as_bytes(), got.as_bytes()) => Ok(()),
            (MetricsAccess::Token(_), _) => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "/metrics needs `Authorization: Bearer <METRICS_TOKEN>` on this server",
            )),
            (MetricsAccess::Off, _) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "/metrics is off in cloud mode because it names every space: set METRICS_TOKEN and send it as `Authorization: Bearer <METRICS_TOKEN>`",
            )),
        }
    }
}

/// Compares two secrets in time that depends only on their lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the hub remembers of a space's upstream link, across reconnects.
#[derive(Default)]
struct Link {
    /// The session while the link is up.
    session: Option<SessionId>,
    /// When the link last came up (ms since the epoch).
    up_since_ms: u64,
    /// Last time the cloud confirmed holding everything we had sent (ack or handshake with
    /// nothing pending), or a pull finished.
    last_sync_ms: u64,
    push_sent: u64,
    push_remaining: u64,
    pull_received: u64,
    pull_remaining: u64,
    /// When the last catch-up batch arrived from the cloud.
    pull_last_ms: u64,
    /// Pushes started by an event trigger (`SYNC_MODE=event`).
    event_pushes: u64,
    /// Why the space is not linked (no usable token); then it never is, until a restart.
    not_linked: Option<String>,
    /// Why the link is not up: the last failed dial, or the cloud's `error` frame.
    last_error: Option<String>,
    /// What the cloud had acknowledged of ours when the link last went down: while it is
    /// down, status counts pending uploads and lag against it.
    acked_when_down: Option<VersionVector>,
}

struct Conn {
    out: mpsc::Sender<Output>,
    upstream: bool,
    /// Upstream link that pushes only when asked (SYNC_MODE manual / periodic).
    manual: bool,
}

struct Space {
    engine: Engine,
    conns: HashMap<SessionId, Conn>,
    waiting: HashMap<u64, (oneshot::Sender<ApiResponse>, ApiResponse)>,
    /// The space's default policy as last logged (a mismatch with `CONFLICT_STRATEGY` is
    /// logged once per change).
    default_logged: Option<Policy>,
}

pub struct Hub {
    cfg: HubConfig,
    store: Store,
    spaces: BTreeMap<String, Space>,
    /// Upstream links by space (hybrid mode).
    links: BTreeMap<String, Link>,
    next_req: u64,
    metrics: Metrics,
    started: Instant,
}

impl Hub {
    /// Opens the hub and restores every space stored in the database.
    pub fn new(cfg: HubConfig, mut store: Store) -> Result<Hub, crate::store::StoreError> {
        let mut spaces = BTreeMap::new();
        for row in store.spaces()? {
            let engine = store.load_engine(engine_config(&cfg, &row.space))?;
            tracing::info!(
                space = %row.space,
                replica = %row.replica,
                docs = engine.replica().doc_count(),
                "restored space"
            );
            spaces.insert(
                row.space,
                Space {
                    engine,
                    conns: HashMap::new(),
                    waiting: HashMap::new(),
                    default_logged: None,
                },
            );
        }
        let names: Vec<String> = spaces.keys().cloned().collect();
        let mut hub = Hub {
            cfg,
            store,
            spaces,
            links: BTreeMap::new(),
            next_req: 1,
            metrics: Metrics::default(),
            started: Instant::now(),
        };
        for name in &names {
            hub.announce(name);
        }
        Ok(hub)
    }

    /// Hybrid mode: asks the link manager to link `space` (it links each space once).
    fn announce(&mut self, space: &str) {
        if let Some(tx) = &self.cfg.link_spaces {
            self.links.entry(space.to_owned()).or_default();
            let _ = tx.send(space.to_owned());
        }
    }

    fn space(&mut self, name: &str) -> Result<&mut Space, ApiError> {
        if !self.spaces.contains_key(name) {
            check_name("space", name, false)?;
            let cfg = engine_config(&self.cfg, name);
            let engine = self.store.load_engine(cfg).map_err(|e| {
                tracing::error!(error = %e, "could not open space");
                ApiError::new(ErrorCode::Internal, e.to_string())
            })?;
            tracing::info!(space = name, replica = %engine.replica().id(), "created space");
            self.announce(name);
            self.spaces.insert(
                name.to_owned(),
                Space {
                    engine,
                    conns: HashMap::new(),
                    waiting: HashMap::new(),
                    default_logged: None,
                },
            );
        }
        self.spaces
            .get_mut(name)
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "space vanished"))
    }

    /// Runs until every input sender is gone. Blocks the calling thread.
    pub fn run(mut self, mut rx: mpsc::Receiver<Input>, sync_every: Option<Duration>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "could not start the hub runtime");
                std::process::exit(1);
            }
        };
        rt.block_on(async move {
            let period = sync_every.unwrap_or(Duration::from_secs(3600 * 24 * 365));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                // One timer for every engine: the earliest deadline any of them has, asked
                // again after every round (each round ends with a flush).
                let deadline = self.poll_timeout();
                let wake = tokio::time::Instant::now()
                    + Duration::from_millis(deadline.unwrap_or(0).saturating_sub(now_ms()));
                tokio::select! {
                    input = rx.recv() => {
                        let Some(input) = input else { break };
                        self.handle(input);
                        let mut n = 1;
                        while n < 8192 {
                            match rx.try_recv() {
                                Ok(i) => {
                                    self.handle(i);
                                    n += 1;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    _ = tick.tick(), if sync_every.is_some() => {
                        self.handle(Input::Sync { push: true, pull: false, reply: None });
                    }
                    _ = tokio::time::sleep_until(wake), if deadline.is_some() => {
                        // Frames already queued count as heard before anyone is called
                        // silent.
                        while let Ok(i) = rx.try_recv() {
                            self.handle(i);
                        }
                        self.handle_timeout();
                    }
                }
                self.flush();
            }
        });
    }

    /// The earliest deadline of any engine (ms since the epoch).
    fn poll_timeout(&self) -> Option<u64> {
        self.spaces
            .values()
            .filter_map(|s| s.engine.poll_timeout())
            .min()
    }

    /// The timer fired: every engine whose deadline has come handles it (pings, closes for
    /// a handshake that ran out or a silent peer); `flush` sends what it produced.
    fn handle_timeout(&mut self) {
        let now = now_ms();
        for s in self.spaces.values_mut() {
            if s.engine.poll_timeout().is_some_and(|d| d <= now) {
                s.engine.handle_timeout(now);
            }
        }
    }

    fn handle(&mut self, input: Input) {
        self.metrics.inputs.inc();
        let now = now_ms();
        match input {
            Input::Accept {
                space,
                session,
                out,
            } => match self.space(&space) {
                Ok(s) => {
                    s.engine.accept(now, session);
                    s.conns.insert(
                        session,
                        Conn {
                            out,
                            upstream: false,
                            manual: false,
                        },
                    );
                }
                Err(e) => {
                    let _ = out.try_send(Output::Frame(Frame::Error {
                        req: None,
                        code: e.code,
                        message: e.message.clone(),
                    }));
                    let _ = out.try_send(Output::Close {
                        code: e.code.close_code(),
                        reason: e.message,
                    });
                }
            },
            Input::Connect {
                space,
                session,
                token,
                out,
                manual,
            } => {
                let name = format!("upstream-{session}");
                let link = self.links.entry(space.clone()).or_default();
                link.session = Some(session);
                link.up_since_ms = now;
                if let Ok(s) = self.space(&space) {
                    // `set_auto_push` only sticks once the handshake made the session a
                    // peer, so it is applied on `SessionOpened` (see `flush`).
                    s.engine.connect(now, session, token, &name);
                    s.conns.insert(
                        session,
                        Conn {
                            out,
                            upstream: true,
                            manual,
                        },
                    );
                }
            }
            Input::Frame {
                space,
                session,
                frame,
            } => {
                self.metrics.frames_in.inc();
                if let Frame::Error { code, message, .. } = &frame {
                    // The cloud refused something (e.g. our token): status shows it.
                    if let Some(link) = self
                        .links
                        .get_mut(&space)
                        .filter(|l| l.session == Some(session))
                    {
                        link.last_error =
                            Some(format!("the cloud answered `{}`: {message}", code.as_str()));
                    }
                }
                if let Frame::Push(p) = &frame {
                    // A catch-up batch from the cloud: pull progress for `sync --pull`.
                    if let Some(link) = self
                        .links
                        .get_mut(&space)
                        .filter(|l| l.session == Some(session))
                    {
                        link.pull_received += p.docs.len() as u64;
                        link.pull_remaining = p.remaining;
                        link.pull_last_ms = now;
                        if p.remaining == 0 {
                            link.last_sync_ms = now;
                        }
                    }
                }
                if let Some(s) = self.spaces.get_mut(&space) {
                    s.engine.handle_frame(now, session, frame);
                }
            }
            Input::DecodeError {
                space,
                session,
                req,
                error,
            } => {
                self.metrics.decode_errors.inc();
                if let Some(s) = self.spaces.get_mut(&space) {
                    s.engine.handle_decode_error(session, req, &error);
                }
            }
            Input::Closed { space, session } => {
                if let Some(link) = self
                    .links
                    .get_mut(&space)
                    .filter(|l| l.session == Some(session))
                {
                    link.session = None;
                    link.acked_when_down = self
                        .spaces
                        .get(&space)
                        .and_then(|s| s.engine.peer_status(session))
                        .map(|p| p.acked)
                        .or(link.acked_when_down.take());
                }
                if let Some(s) = self.spaces.get_mut(&space) {
                    s.engine.close(session);
                    s.conns.remove(&session);
                }
            }
            Input::Api {
                space,
                op,
                token,
                reply,
            } => {
                self.metrics.api_requests.inc();
                let result = self.api(now, &space, op, token.as_deref());
                match result {
                    Ok(Outcome::Done(resp)) => {
                        let _ = reply.send(resp);
                    }
                    Ok(Outcome::AfterAck { req, response }) => {
                        if let Some(s) = self.spaces.get_mut(&space) {
                            s.waiting.insert(req, (reply, response));
                        }
                    }
                    Err(e) => {
                        self.metrics.api_errors.inc();
                        let _ = reply.send(e.response());
                    }
                }
            }
            Input::Metrics { token, reply } => {
                let resp = match self.cfg.metrics.check(token.as_deref()) {
                    Ok(()) => {
                        ApiResponse::text(200, crate::metrics::CONTENT_TYPE, self.render_metrics())
                    }
                    Err(e) => e.response(),
                };
                let _ = reply.send(resp);
            }
            Input::Status { token, reply } => {
                let resp = match self.visible_spaces(token.as_deref(), now) {
                    // Through a `Value`, whose keys are ordered as they always were.
                    Ok(visible) => match serde_json::to_value(self.status(visible.as_ref())) {
                        Ok(v) => ApiResponse::json(200, &v),
                        Err(e) => {
                            ApiError::new(ErrorCode::Internal, format!("status: {e}")).response()
                        }
                    },
                    Err(e) => e.response(),
                };
                let _ = reply.send(resp);
            }
            Input::Link { space, note } => {
                let link = self.links.entry(space).or_default();
                match note {
                    LinkNote::NotLinked(reason) => link.not_linked = Some(reason),
                    LinkNote::Unreachable(error) => link.last_error = Some(error),
                }
            }
            Input::Sync { push, pull, reply } => {
                let mut links = 0;
                for s in self.spaces.values_mut() {
                    for (id, c) in &s.conns {
                        if c.upstream {
                            links += 1;
                            if push {
                                s.engine.sync_now(*id);
                            }
                            if pull {
                                s.engine.pull(*id);
                            }
                        }
                    }
                }
                for link in self.links.values_mut() {
                    if push {
                        link.push_sent = 0;
                        link.push_remaining = 0;
                    }
                    if pull {
                        link.pull_received = 0;
                        link.pull_remaining = 0;
                    }
                }
                if let Some(reply) = reply {
                    let resp = if links == 0 {
                        ApiError::not_found(NO_LINK).response()
                    } else {
                        ApiResponse::json(200, &json!({"links": links, "push": push, "pull": pull}))
                    };
                    let _ = reply.send(resp);
                }
            }
        }
    }

    fn api(
        &mut self,
        now: u64,
        space: &str,
        op: SpaceOp,
        token: Option<&str>,
    ) -> Result<Outcome, ApiError> {
        api::authorize(self.cfg.secret.as_deref(), token, space, op.needs(), now)?;
        let mut next = self.next_req;
        let s = self.space(space)?;
        let mut gen = || {
            let r = next;
            next += 1;
            r
        };
        let out = api::execute(&mut s.engine, now, &mut gen, op);
        self.next_req = next;
        out
    }

    /// Persist, release, send: the second half of every round.
    fn flush(&mut self) {
        let mut batches: Vec<(String, PersistBatch)> = Vec::new();
        for (name, s) in self.spaces.iter_mut() {
            while let Some(b) = s.engine.poll_persist() {
                batches.push((name.clone(), b));
            }
        }
        if !batches.is_empty() {
            let t = Instant::now();
            let refs: Vec<(&str, &PersistBatch)> =
                batches.iter().map(|(n, b)| (n.as_str(), b)).collect();
            if let Err(e) = self.store.write(&refs) {
                // Nothing can be acknowledged any more; stop rather than pretend.
                tracing::error!(error = %e, "could not persist; stopping so that no unpersisted write is acknowledged");
                std::process::exit(70);
            }
            self.metrics.commit(t.elapsed().as_secs_f64());
            for (name, b) in &batches {
                self.metrics.batches.inc();
                self.metrics.docs_written.inc_by(b.docs.len() as u64);
                self.metrics
                    .messages_written
                    .inc_by(b.messages.len() as u64);
                if let Some(s) = self.spaces.get_mut(name) {
                    if let Err(e) = s.engine.persisted(b.id) {
                        tracing::error!(error = %e, space = %name, "engine refused a persisted report");
                    }
                    let (space_default, local) = s.engine.default_policies();
                    if s.default_logged != Some(space_default) {
                        s.default_logged = Some(space_default);
                        if space_default != local {
                            tracing::warn!(
                                space = %name,
                                space_default = space_default.as_str(),
                                conflict_strategy = local.as_str(),
                                "the space's replicated default policy differs from CONFLICT_STRATEGY, which only seeds new spaces; the space's value applies"
                            );
                        }
                    }
                }
            }
        }
        let mut dropped_total = 0;
        let mut peer_acked = false;
        let now = now_ms();
        for (space, s) in self.spaces.iter_mut() {
            let mut link = self.links.get_mut(space);
            let upstream = link.as_ref().and_then(|l| l.session);
            let mut trigger = false;
            while let Some(ev) = s.engine.poll_event() {
                match ev {
                    Event::DocChanged(view) => {
                        trigger |= self.cfg.event_collections.contains(&view.collection);
                    }
                    Event::Message { message, .. } => {
                        trigger |= self.cfg.event_channels.contains(&message.channel);
                    }
                    Event::SyncProgress {
                        session,
                        sent,
                        remaining,
                    } if Some(session) == upstream => {
                        if let Some(l) = link.as_deref_mut() {
                            l.push_sent = sent;
                            l.push_remaining = remaining;
                        }
                    }
                    Event::Acked { req, .. } => {
                        self.metrics.acks_local.inc();
                        if let Some((reply, resp)) = s.waiting.remove(&req) {
                            let _ = reply.send(resp);
                        }
                    }
                    Event::PeerAcked { session, .. } => {
                        peer_acked = true;
                        if Some(session) == upstream {
                            if let Some(l) = link.as_deref_mut() {
                                l.last_sync_ms = now;
                            }
                        }
                    }
                    Event::SessionOpened {
                        session,
                        kind,
                        name,
                        ..
                    } => {
                        tracing::debug!(session, ?kind, %name, "session opened");
                        if s.conns.get(&session).is_some_and(|c| c.manual) {
                            s.engine.set_auto_push(session, false);
                        }
                        if Some(session) == upstream {
                            if let Some(l) = link.as_deref_mut() {
                                l.last_error = None;
                                if s.engine
                                    .peer_status(session)
                                    .is_some_and(|p| p.pending == 0)
                                {
                                    l.last_sync_ms = now;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            // SYNC_MODE=event: a durable change that matches a trigger pushes now. Changes
            // that came down from the cloud match too; the push then finds nothing to send.
            if trigger {
                if let (Some(id), Some(l)) = (upstream, link) {
                    s.engine.sync_now(id);
                    l.event_pushes += 1;
                }
            }
            // Ending sessions changes presence, which the next round sends to the others.
            loop {
                let mut dropped = Vec::new();
                let mut closed = Vec::new();
                while let Some(t) = s.engine.poll_transmit() {
                    let (session, out) = match t {
                        Transmit::Frame { session, frame } => (session, Output::Frame(frame)),
                        Transmit::Close {
                            session,
                            code,
                            reason,
                        } => {
                            closed.push(session);
                            (
                                session,
                                Output::Close {
                                    code: code.close_code(),
                                    reason,
                                },
                            )
                        }
                    };
                    let Some(c) = s.conns.get(&session) else {
                        continue;
                    };
                    self.metrics.frames_out.inc();
                    if let Err(e) = c.out.try_send(out) {
                        if matches!(e, mpsc::error::TrySendError::Full(_)) {
                            tracing::warn!(session, "connection too slow; dropping it");
                        }
                        dropped.push(session);
                    }
                }
                let ended = dropped.len() + closed.len();
                for session in dropped {
                    dropped_total += 1;
                    s.conns.remove(&session);
                    s.engine.close(session);
                }
                // The engine ended these sessions (error, timeout): they are over now, whether
                // or not the other side ever answers the close (a frozen peer does not).
                for session in closed {
                    s.conns.remove(&session);
                    s.engine.close(session);
                    if let Some(l) = self
                        .links
                        .get_mut(space)
                        .filter(|l| l.session == Some(session))
                    {
                        l.session = None;
                    }
                }
                if ended == 0 {
                    break;
                }
            }
        }
        if peer_acked {
            self.metrics.last_peer_ack_ms = now_ms();
        }
        self.metrics.dropped_slow.inc_by(dropped_total);
    }

    /// Which spaces a status request may see: `None` for all (no secret: local mode), else
    /// those the token opens (a token is for one space), and an error without a valid one.
    fn visible_spaces(
        &self,
        token: Option<&str>,
        now: u64,
    ) -> Result<Option<BTreeSet<String>>, ApiError> {
        let Some(secret) = self.cfg.secret.as_deref() else {
            return Ok(None);
        };
        let Some(token) = token else {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "this server requires a token for its status: send `Authorization: Bearer <token>`; it shows the spaces the token opens",
            ));
        };
        let open: BTreeSet<String> = self
            .spaces
            .keys()
            .filter(|name| bridge_core::auth::verify(secret, token, name, now).is_ok())
            .cloned()
            .collect();
        if open.is_empty() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the token opens none of this server's spaces (it may be expired, or for a space that holds nothing yet)",
            ));
        }
        Ok(Some(open))
    }

    fn status(&self, visible: Option<&BTreeSet<String>>) -> HostStatus {
        let now = now_ms();
        let spaces = self
            .spaces
            .iter()
            .filter(|(name, _)| visible.is_none_or(|v| v.contains(*name)))
            .map(|(name, s)| {
                let r = s.engine.replica();
                let peers = s
                    .conns
                    .keys()
                    .filter_map(|id| {
                        let p = s.engine.peer_status(*id)?;
                        Some(PeerSession {
                            session: *id,
                            upstream: s.conns.get(id).is_some_and(|c| c.upstream),
                            replica: p.replica,
                            tier: p.tier,
                            pending: p.pending,
                            lag: p.lag,
                            acked: api::format_cursor(&p.acked),
                            open: p.open,
                        })
                    })
                    .collect();
                let upstream = self.links.get(name).map(|l| {
                    let peer = l.session.and_then(|id| s.engine.peer_status(id));
                    let up = peer.as_ref().is_some_and(|p| p.open);
                    let down = l.acked_when_down.as_ref().filter(|_| peer.is_none());
                    let (state, reason) = match (&l.not_linked, up) {
                        (Some(why), _) => (LinkState::NotLinked, Some(why)),
                        (None, true) => (LinkState::Connected, None),
                        (None, false) => (LinkState::Connecting, l.last_error.as_ref()),
                    };
                    UpstreamLink {
                        state,
                        reason: reason.cloned(),
                        up,
                        up_since_ms: l.up_since_ms,
                        last_sync_ms: l.last_sync_ms,
                        last_sync_age_ms: (l.last_sync_ms > 0)
                            .then(|| now.saturating_sub(l.last_sync_ms)),
                        pending: peer.as_ref().map(|p| p.pending).or_else(|| {
                            down.map(|a| {
                                r.latest_vector().get(r.id()).saturating_sub(a.get(r.id()))
                            })
                        }),
                        lag: peer
                            .as_ref()
                            .map(|p| p.lag)
                            .or_else(|| down.map(|a| r.vector().ahead_of(a))),
                        acked: peer
                            .as_ref()
                            .map(|p| api::format_cursor(&p.acked))
                            .or_else(|| down.map(api::format_cursor)),
                        push: PushProgress {
                            sent: l.push_sent,
                            remaining: l.push_remaining,
                        },
                        pull: PullProgress {
                            received: l.pull_received,
                            remaining: l.pull_remaining,
                            last_ms: l.pull_last_ms,
                        },
                        event_pushes: l.event_pushes,
                    }
                });
                SpaceStatus {
                    space: name.clone(),
                    replica: r.id(),
                    tier: r.tier(),
                    docs: r.doc_count() as u64,
                    cursor: api::format_cursor(r.vector()),
                    sessions: s.engine.session_count() as u64,
                    open_conflicts: r.conflicts(None).len() as u64,
                    default_policy: r.space_default_policy(),
                    conflict_strategy: r.local_default_policy(),
                    default_policy_mismatch: r.space_default_policy() != r.local_default_policy(),
                    presence: s.engine.presence(),
                    peers,
                    upstream,
                }
            })
            .collect();
        // A token sees its spaces, not the database's totals or where it lives.
        let host = visible.is_none().then(|| {
            let (spaces, docs, messages) = self.store.counts().unwrap_or_default();
            HostDetails {
                stored: Stored {
                    spaces,
                    docs,
                    messages,
                },
                db: self.cfg.db_path.clone(),
                pid: std::process::id(),
                last_peer_ack_ms: self.metrics.last_peer_ack_ms,
            }
        });
        HostStatus {
            uptime_s: self.started.elapsed().as_secs(),
            host,
            tier: self.cfg.tier,
            now_ms: now,
            spaces,
        }
    }

    fn render_metrics(&self) -> String {
        self.metrics.render(
            self.spaces.iter().map(|(name, s)| {
                (
                    name.as_str(),
                    s.engine.replica().doc_count() as u64,
                    s.engine.session_count() as u64,
                )
            }),
            self.started.elapsed().as_secs(),
        )
    }
}

fn engine_config(cfg: &HubConfig, space: &str) -> EngineConfig {
    let mut c = EngineConfig::new(bridge_core::ReplicaId(0), cfg.tier, space);
    c.default_policy = cfg.default_policy;
    c.secret = cfg.secret.clone();
    c.name = cfg.name.clone();
    c.hello_timeout_ms = cfg.hello_timeout_ms;
    c.heartbeat_ms = cfg.heartbeat_ms;
    c
}
