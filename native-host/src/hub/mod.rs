//! The hub: one thread that owns every space's [`Engine`] and the [`Store`], so the core stays
//! single-threaded and SQLite is used from one place.
//!
//! Group commit: wait for one input, drain everything else already queued, then persist every
//! batch the engines cut in one transaction (`synchronous=FULL`), report them persisted, and
//! only then hand out what the engines want sent. An ack therefore never leaves before the
//! commit that holds its write.
//!
//! | file | what |
//! | --- | --- |
//! | `mod.rs` | the hub's inputs and outputs, its state, opening spaces |
//! | `run.rs` | the loop: inputs in, one group commit per round, frames out, the timer |
//! | `status.rs` | the `GET /v1/status` document, and which spaces a token may see |
//! | `metrics.rs` | `/metrics`: counters, the registry, who may read it |

mod metrics;
mod run;
mod status;
#[cfg(test)]
mod tests;

pub use metrics::{MetricsAccess, WS_BYTES_IN, WS_BYTES_OUT};

use crate::out_queue::{self, Budget};
use crate::store::Store;
use bridge_core::api::{ApiError, ApiResponse};
use bridge_core::Request;
use bridge_core::{
    check_name, Engine, EngineConfig, Error, ErrorCode, Frame, Policy, SessionId, Tier,
    VersionVector,
};
use metrics::Metrics;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;
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

#[derive(Debug)]
pub enum Input {
    /// A WebSocket connection for `space` opened (agent or peer, it says in `hello`). The
    /// hub answers with the session id the space's engine gave it, which later inputs name.
    Accept {
        space: String,
        out: out_queue::Sender,
        session: oneshot::Sender<SessionId>,
    },
    /// This host dialled an upstream peer for `space`; answered like [`Input::Accept`].
    Connect {
        space: String,
        token: Option<String>,
        out: out_queue::Sender,
        manual: bool,
        session: oneshot::Sender<SessionId>,
    },
    Frame {
        space: String,
        session: SessionId,
        frame: Frame,
        /// The frame's bytes in the connection's inbound budget (`IN_QUEUE_MB`), given back
        /// when the hub has handled it and drops the input.
        permit: crate::in_queue::Permit,
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
        request: Request,
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
        /// The caller's token (HTTP); checked when the host has a secret.
        token: Option<String>,
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
    /// Bytes of document states each space's engine caches (`CACHE_MB`).
    pub cache_bytes: usize,
    /// Collect tombstones below the stable horizon (`COLLECT_TOMBSTONES`).
    pub collect: bool,
    /// Drop a peer gone this long from the horizon's table (`REPLICA_EXPIRY_MS`).
    pub expiry_ms: Option<u64>,
    /// The collections every space replicates from upstream (`SYNC_COLLECTIONS`).
    pub collections: Option<Vec<String>>,
    /// The collections of named spaces, in place of `collections` for those
    /// (`SYNC_COLLECTIONS_SPACES`).
    pub space_collections: BTreeMap<String, Vec<String>>,
    /// The connections' outbound queues (`OUT_QUEUE_MB`, `OUT_QUEUE_TOTAL_MB`): `/metrics`
    /// shows the bytes queued.
    pub out_queues: Arc<Budget>,
    /// The connections' inbound budgets (`IN_QUEUE_MB`, `IN_QUEUE_TOTAL_MB`): `/metrics`
    /// shows the bytes held.
    pub in_queues: Arc<crate::in_queue::Budget>,
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
    /// Bounded in bytes; a connection whose queue falls behind is closed with 1013.
    out: out_queue::Sender,
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
    metrics: Metrics,
    started: Instant,
    /// A connection's writer says here that a session holding a replay back has room again
    /// (`out_queue::Sender::when_room`); the loop lets its engine send on.
    room_tx: mpsc::UnboundedSender<(String, SessionId)>,
    room_rx: Option<mpsc::UnboundedReceiver<(String, SessionId)>>,
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
                docs = status::logged(engine.replica().doc_count(), "count documents"),
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
        let (room_tx, room_rx) = mpsc::unbounded_channel();
        let mut hub = Hub {
            room_tx,
            room_rx: Some(room_rx),
            cfg,
            store,
            spaces,
            links: BTreeMap::new(),
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
}

fn engine_config(cfg: &HubConfig, space: &str) -> EngineConfig {
    let mut c = EngineConfig::new(bridge_core::ReplicaId(0), cfg.tier, space);
    c.default_policy = cfg.default_policy;
    c.secret = cfg.secret.clone();
    c.name = cfg.name.clone();
    c.hello_timeout_ms = cfg.hello_timeout_ms;
    c.heartbeat_ms = cfg.heartbeat_ms;
    c.cache_bytes = cfg.cache_bytes;
    // A host without an upstream link (local and cloud modes) is the root of its spaces'
    // sync trees: it computes their stable horizons; a hybrid host follows its cloud's.
    c.root = cfg.link_spaces.is_none();
    c.collect = cfg.collect;
    c.expiry_ms = cfg.expiry_ms;
    // The hub reads `DocChanged` only to push at once a change of an event collection.
    c.doc_events = bridge_core::DocEvents::Collections(cfg.event_collections.clone());
    c.collections = cfg
        .space_collections
        .get(space)
        .cloned()
        .or_else(|| cfg.collections.clone());
    c
}
