//! The sync state machine of one space at one store, for both ends of every connection.
//!
//! An [`Engine`] owns a [`Replica`] and the sessions attached to it: agents (programs using
//! the agent verbs) and peers (other replicas). It is driven like quinn-proto: the host feeds
//! it (`accept`, `connect`, `handle_frame`, `close`, local `write` / `publish`,
//! `persisted`) and drains it (`poll_transmit`, `poll_persist`, `poll_event`). Nothing in it
//! blocks or reads a clock.
//!
//! ## Sync
//! Every peer session keeps `known`: the vector the peer is known to hold. It starts from the
//! vector in the peer's `hello` / `welcome` and grows with each push either way. Whenever our
//! durable vector is ahead of `known`, [`Engine::poll_transmit`] cuts the next [`Push`] from
//! [`Replica::delta`]: initial sync, live propagation and resume after reconnect are the same
//! loop. At most `window` pushes per session are unacknowledged, which bounds memory and
//! paces a large initial sync.
//!
//! ## Durability on ack
//! A write (agent `put`, peer `push`, local [`Engine::write`]) is applied to the staged layer
//! at once, so reads see it, but its `ack` waits until the host has persisted the batch that
//! holds it ([`Engine::persisted`]). Pushes and forwarded messages carry only durable state.
//!
//! ```
//! use bridge_core::{DocKey, Engine, EngineConfig, ReplicaId, Tier, Transmit, WriteOp};
//! let mut a = Engine::new(EngineConfig::new(ReplicaId(1), Tier::Local, "demo"));
//! let mut b = Engine::new(EngineConfig::new(ReplicaId(2), Tier::Cloud, "demo"));
//! let doc = serde_json::json!({"title": "hello"});
//! a.write(0, 1, DocKey::new("notes", "n1"), WriteOp::Put(doc.as_object().cloned().unwrap()))
//!     .unwrap();
//! a.connect(0, 7, None, "to-b"); // session 7 on `a` is the link to `b`
//! b.accept(0, 9); //                session 9 on `b` is the same link
//! // The host loop: persist what is staged, then carry frames across, until both are quiet.
//! for _round in 0..100 {
//!     let mut moved = false;
//!     for e in [&mut a, &mut b] {
//!         while let Some(batch) = e.poll_persist() {
//!             e.persisted(batch.id).unwrap(); // a real host writes `batch` to disk first
//!         }
//!     }
//!     while let Some(Transmit::Frame { frame, .. }) = a.poll_transmit() {
//!         b.handle_frame(0, 9, frame);
//!         moved = true;
//!     }
//!     while let Some(Transmit::Frame { frame, .. }) = b.poll_transmit() {
//!         a.handle_frame(0, 7, frame);
//!         moved = true;
//!     }
//!     if !moved && !a.has_staged() && !b.has_staged() {
//!         break;
//!     }
//! }
//! assert_eq!(b.replica().get(&DocKey::new("notes", "n1")).unwrap()["title"], "hello");
//! assert_eq!(a.peer_status(7).unwrap().pending, 0); // b persisted and acknowledged it
//! ```

use crate::auth::{self, Rights};
use crate::codec::{object_size_bound, size_bound, MAX_DOC_BYTES};
use crate::doc::WriteOp;
use crate::frame::{Ack, Conflict, DocView, Frame, Hello, Push, SessionKind, Welcome};
use crate::message::{Message, MessageId, PresenceEntry, Retained};
use crate::replica::{PersistBatch, Replica, CONFIG_COLLECTION};
use crate::{
    check_name, DocKey, Dot, Error, ErrorCode, Policy, ReplicaId, Result, SessionId, Tier,
    VersionVector,
};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Budget for the documents of one push: half the frame limit, so a push stays under
/// [`crate::frame::MAX_FRAME_BYTES`] in either encoding with room for the envelope.
pub const PUSH_BYTES: usize = crate::frame::MAX_FRAME_BYTES / 2;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub replica: ReplicaId,
    pub tier: Tier,
    pub space: String,
    /// The default policy this store seeds a new space with (`_config/space`), and uses until
    /// the space's replicated default is known. Not the space's policy: that is replicated.
    pub default_policy: Policy,
    /// Whether this store writes the seed when it finds the space without one. Hosts that
    /// serve a space (native, Durable Object) do; a browser joins spaces and does not.
    pub seed_default_policy: bool,
    /// Messages a channel retains unless its configuration says otherwise.
    pub default_retain: usize,
    pub max_skew_ms: u64,
    /// Documents per push.
    pub batch_docs: usize,
    /// Unacknowledged pushes allowed per peer session.
    pub window: usize,
    /// When set, every session must present a token signed with it.
    pub secret: Option<Vec<u8>>,
    /// Display name sent in `hello`.
    pub name: String,
    /// A connection that has not finished its handshake this long after it began is closed
    /// (`timeout`).
    pub hello_timeout_ms: u64,
    /// Peer links: the side that dialed sends `ping` after this long without hearing from
    /// the other side, and either side closes a peer session (`timeout`) that has been silent
    /// for three times this long. 0 turns heartbeats and idle closes off.
    pub heartbeat_ms: u64,
}

/// Default for [`EngineConfig::hello_timeout_ms`].
pub const DEFAULT_HELLO_TIMEOUT_MS: u64 = 10_000;
/// Default for [`EngineConfig::heartbeat_ms`].
pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// A peer session silent for this many heartbeats is closed.
pub const SILENT_HEARTBEATS: u64 = 3;

impl EngineConfig {
    pub fn new(replica: ReplicaId, tier: Tier, space: impl Into<String>) -> Self {
        EngineConfig {
            replica,
            tier,
            space: space.into(),
            default_policy: Policy::Lww,
            seed_default_policy: true,
            default_retain: crate::replica::DEFAULT_RETAIN,
            max_skew_ms: crate::clock::DEFAULT_MAX_SKEW_MS,
            batch_docs: 256,
            window: 4,
            secret: None,
            name: String::new(),
            hello_timeout_ms: DEFAULT_HELLO_TIMEOUT_MS,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
        }
    }
}

/// Something the host must put on the wire.
#[derive(Clone, Debug, PartialEq)]
pub enum Transmit {
    Frame {
        session: SessionId,
        frame: Frame,
    },
    /// Close the connection after sending what was queued before.
    Close {
        session: SessionId,
        code: ErrorCode,
        reason: String,
    },
}

/// Something the host may show or act on.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A document's durable state changed (locally or from a peer).
    DocChanged(DocView),
    /// A `manual` collection has an open conflict on this document.
    ConflictOpened(Conflict),
    /// A message was stored here (published here or arrived from a peer).
    Message { message: Message, offset: u64 },
    /// A local request ([`Engine::write`], [`Engine::publish`]) is durable.
    Acked { req: u64, dot: Option<Dot> },
    /// A peer has persisted our changes up to `vector` ("synced" when the peer is cloud).
    PeerAcked {
        session: SessionId,
        tier: Tier,
        vector: VersionVector,
    },
    /// Catch-up progress on a peer session: documents sent so far and still to come.
    SyncProgress {
        session: SessionId,
        sent: u64,
        remaining: u64,
    },
    /// A session finished its handshake.
    SessionOpened {
        session: SessionId,
        kind: SessionKind,
        name: String,
        replica: Option<ReplicaId>,
    },
    /// The set of connected agents and peers changed.
    PresenceChanged,
}

#[derive(Debug)]
enum Phase {
    AwaitHello,
    AwaitWelcome,
    Open,
}

#[derive(Debug)]
struct PeerLink {
    replica: ReplicaId,
    tier: Tier,
    known: VersionVector,
    msg_known: VersionVector,
    next_seq: u64,
    unacked: VecDeque<(u64, VersionVector)>,
    acked: VersionVector,
    sync_requested: bool,
    run_sent: u64,
    learned: Vec<PresenceEntry>,
    presence_sent: Vec<PresenceEntry>,
    /// The other side lets us introduce only our own writes (its `welcome` gave us rights
    /// below `admin`): we push only those, and forward only our own messages.
    own_only: bool,
    /// On an `own_only` link: `known` when the last push stopped at a document the peer may
    /// not take from us yet. Nothing more goes until `known` moves.
    blocked_at: Option<VersionVector>,
}

#[derive(Debug)]
struct Session {
    phase: Phase,
    kind: SessionKind,
    name: String,
    since: u64,
    rights: Rights,
    peer: Option<PeerLink>,
    channels: BTreeSet<String>,
    collections: BTreeSet<String>,
    /// Push automatically once open (peer sessions); settable before the handshake ends.
    auto_push: bool,
    /// We dialed this connection ([`Engine::connect`]): we keep it alive with `ping`.
    dialed: bool,
    /// When a frame last arrived on it.
    last_rx: u64,
    /// When we last sent it a `ping`.
    last_ping: u64,
    /// A close is on its way to the host: no more timers for it.
    closing: bool,
}

#[derive(Debug)]
enum Gated {
    Frame(SessionId, Frame),
    Local(u64, Option<Dot>),
}

pub struct Engine {
    cfg: EngineConfig,
    replica: Replica,
    sessions: BTreeMap<SessionId, Session>,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    staged_gates: Vec<Gated>,
    inflight_gates: VecDeque<(u64, Vec<Gated>)>,
    msg_from: BTreeMap<MessageId, SessionId>,
    presence_dirty: bool,
    push_cursor: SessionId,
    /// The space's default policy was seeded or found (checked once, at the first cut).
    seeded: bool,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        let replica = Replica::new(cfg.replica, cfg.tier, cfg.space.clone())
            .with_default_policy(cfg.default_policy)
            .with_default_retain(cfg.default_retain)
            .with_max_skew(cfg.max_skew_ms);
        Engine {
            cfg,
            replica,
            sessions: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            staged_gates: Vec::new(),
            inflight_gates: VecDeque::new(),
            msg_from: BTreeMap::new(),
            presence_dirty: false,
            push_cursor: 0,
            seeded: false,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// For restoring from storage before any session is attached.
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    pub fn has_staged(&self) -> bool {
        self.replica.has_staged()
    }

    // ---- sessions ------------------------------------------------------------------------

    /// A connection arrived; it must open with `hello`.
    pub fn accept(&mut self, now_ms: u64, session: SessionId) {
        self.sessions
            .insert(session, Session::new(Phase::AwaitHello, now_ms));
    }

    /// We opened a connection to an upstream peer; sends our `hello`.
    pub fn connect(&mut self, now_ms: u64, session: SessionId, token: Option<String>, name: &str) {
        let mut s = Session::new(Phase::AwaitWelcome, now_ms);
        s.kind = SessionKind::Peer;
        s.dialed = true;
        s.name = name.to_owned();
        self.sessions.insert(session, s);
        let hello = Hello {
            space: self.cfg.space.clone(),
            kind: SessionKind::Peer,
            name: Some(if self.cfg.name.is_empty() {
                self.replica.id().to_string()
            } else {
                self.cfg.name.clone()
            }),
            token,
            replica: Some(self.replica.id()),
            tier: Some(self.replica.tier()),
            vector: Some(self.replica.vector().clone()),
            messages: Some(self.replica.message_seen().clone()),
        };
        self.send(session, Frame::Hello(hello));
    }

    /// The connection is gone (either side closed it, or it broke).
    pub fn close(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.remove(&session) {
            if matches!(s.phase, Phase::Open) {
                self.presence_dirty = true;
            }
        }
        self.outbox.retain(|t| match t {
            Transmit::Frame { session: s, .. } | Transmit::Close { session: s, .. } => {
                *s != session
            }
        });
    }

    /// Manual sync: stop or resume pushing to a peer automatically.
    /// May be called right after [`Engine::connect`]: the setting holds from the handshake on.
    pub fn set_auto_push(&mut self, session: SessionId, on: bool) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.auto_push = on;
        }
    }

    /// Push everything the peer lacks now, even when automatic pushing is off.
    pub fn sync_now(&mut self, session: SessionId) {
        if let Some(p) = self
            .sessions
            .get_mut(&session)
            .and_then(|s| s.peer.as_mut())
        {
            p.sync_requested = true;
        }
    }

    /// Ask the peer to (re)send everything we lack (`sync --pull`).
    pub fn pull(&mut self, session: SessionId) {
        let vector = self.replica.vector().clone();
        self.send(session, Frame::Pull { vector });
    }

    /// What the peer on `session` has acknowledged as persisted, and how far behind it is.
    pub fn peer_status(&self, session: SessionId) -> Option<PeerStatus> {
        let s = self.sessions.get(&session)?;
        let p = s.peer.as_ref()?;
        Some(PeerStatus {
            replica: p.replica,
            tier: p.tier,
            acked: p.acked.clone(),
            pending: self
                .replica
                .latest_vector()
                .get(self.replica.id())
                .saturating_sub(p.acked.get(self.replica.id())),
            lag: self.replica.vector().ahead_of(&p.acked),
            open: matches!(s.phase, Phase::Open),
        })
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    // ---- local API (host HTTP / CLI / JS) --------------------------------------------------

    /// A write made through the host's own API. `Event::Acked { req }` follows once durable.
    pub fn write(&mut self, now_ms: u64, req: u64, key: DocKey, op: WriteOp) -> Result<Dot> {
        check_name(
            "collection",
            &key.collection,
            key.collection == CONFIG_COLLECTION,
        )?;
        check_name("document id", &key.id, true)?;
        self.check_size(&key, &op)?;
        let dot = self.replica.write(now_ms, key, op)?;
        self.gate(Gated::Local(req, Some(dot)));
        Ok(dot)
    }

    /// Resolves an open conflict with `value` (`None` deletes).
    pub fn resolve(
        &mut self,
        now_ms: u64,
        req: u64,
        key: DocKey,
        value: Option<Map<String, Value>>,
    ) -> Result<Dot> {
        if self.replica.conflict(&key).is_none() {
            return Err(Error::NoConflict {
                collection: key.collection,
                id: key.id,
            });
        }
        let op = value.map_or(WriteOp::Delete, WriteOp::Put);
        self.write(now_ms, req, key, op)
    }

    /// Sets a collection's policy (replicated space configuration).
    pub fn set_policy(
        &mut self,
        now_ms: u64,
        req: u64,
        collection: &str,
        policy: Policy,
    ) -> Result<Dot> {
        check_name("collection", collection, false)?;
        let mut m = Map::new();
        m.insert("policy".into(), Value::from(policy.as_str()));
        self.write(
            now_ms,
            req,
            DocKey::new(CONFIG_COLLECTION, format!("collection:{collection}")),
            WriteOp::Patch(m),
        )
    }

    /// Publishes a message. `Event::Acked { req }` follows once stored.
    pub fn publish(
        &mut self,
        now_ms: u64,
        req: u64,
        channel: &str,
        payload: Value,
    ) -> Result<MessageId> {
        check_name("channel", channel, false)?;
        let id = self.replica.publish(now_ms, channel.to_owned(), payload);
        self.gate(Gated::Local(req, None));
        Ok(id)
    }

    /// Everyone connected here and, through peers, elsewhere.
    pub fn presence(&self) -> Vec<PresenceEntry> {
        let mut all: BTreeSet<PresenceEntry> = BTreeSet::new();
        for (id, s) in &self.sessions {
            if matches!(s.phase, Phase::Open) {
                all.insert(PresenceEntry {
                    node: self.replica.id(),
                    session: *id,
                    name: s.name.clone(),
                    kind: s.kind,
                    tier: s.peer.as_ref().map_or(self.replica.tier(), |p| p.tier),
                    since: s.since,
                });
                if let Some(p) = &s.peer {
                    all.extend(p.learned.iter().cloned());
                }
            }
        }
        all.into_iter().collect()
    }

    // ---- persistence -----------------------------------------------------------------------

    /// The next batch to persist. Persist batches in order, then report each with
    /// [`Engine::persisted`]. Call after each round of input to group commits.
    #[must_use]
    pub fn poll_persist(&mut self) -> Option<PersistBatch> {
        self.seed_space();
        let batch = self.replica.cut()?;
        let gates = std::mem::take(&mut self.staged_gates);
        self.inflight_gates.push_back((batch.id, gates));
        Some(batch)
    }

    /// A store that finds its space without a default policy (a space created here) writes
    /// its local setting as the seed, once; the host restores the store before its first
    /// [`Engine::poll_persist`], so a restart finds the entry and writes nothing.
    fn seed_space(&mut self) {
        if self.seeded {
            return;
        }
        self.seeded = true;
        if !self.cfg.seed_default_policy || self.replica.has_space_entry() {
            return;
        }
        let mut m = Map::new();
        m.insert(
            "default_policy".into(),
            Value::from(self.cfg.default_policy.as_str()),
        );
        let key = DocKey::new(CONFIG_COLLECTION, crate::replica::SPACE_ENTRY);
        // A seed is stamped at time zero: the wall clock is not known here, and any real
        // configuration write (made later, by an admin) must win over every seed.
        let _ = self.replica.write(0, key, WriteOp::Patch(m));
    }

    /// The space's default policy as this store sees it now, and this store's local seed.
    pub fn default_policies(&self) -> (Policy, Policy) {
        (
            self.replica.space_default_policy(),
            self.replica.local_default_policy(),
        )
    }

    /// The host has durably stored batch `id`: release its acks, changes and messages.
    pub fn persisted(&mut self, id: u64) -> Result<()> {
        let released = self.replica.persisted(id)?;
        if let Some(pos) = self.inflight_gates.iter().position(|(b, _)| *b == id) {
            let (_, gates) = self.inflight_gates.remove(pos).unwrap_or_default();
            for g in gates {
                match g {
                    Gated::Frame(s, f) => self.send(s, f),
                    Gated::Local(req, dot) => self.events.push_back(Event::Acked { req, dot }),
                }
            }
        }
        for key in released.docs {
            self.announce_doc(&key);
        }
        for r in released.messages {
            self.deliver(r);
        }
        Ok(())
    }

    /// Drops everything not yet persisted, as a crash does. Sessions are dropped too.
    pub fn crash(&mut self) {
        self.replica.forget_unpersisted();
        self.sessions.clear();
        self.outbox.clear();
        self.staged_gates.clear();
        self.inflight_gates.clear();
        self.msg_from.clear();
    }

    // ---- output ------------------------------------------------------------------------------

    /// The next frame to send (or connection to close).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.presence_dirty {
            self.presence_dirty = false;
            self.broadcast_presence();
        }
        if let Some(t) = self.outbox.pop_front() {
            return Some(t);
        }
        self.next_push()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- time ----------------------------------------------------------------------------------

    /// The earliest time at which [`Engine::handle_timeout`] has something to do: a handshake
    /// that runs out, a `ping` to send, a silent peer to close. The host arms one timer for it
    /// (and asks again after every call into the engine); `None` means no timer is needed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.sessions
            .values()
            .filter_map(|s| self.session_deadline(s))
            .min()
    }

    /// Time has reached `now_ms`: closes handshakes that ran out and peer sessions that fell
    /// silent (`error` `timeout` + close 1001), and sends `ping` on links we dialed that have
    /// been quiet for a heartbeat. Then drain [`Engine::poll_transmit`].
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let hb = self.cfg.heartbeat_ms;
        let hello = self.cfg.hello_timeout_ms;
        let mut closes = Vec::new();
        let mut pings = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            if s.closing {
                continue;
            }
            if !matches!(s.phase, Phase::Open) {
                if now_ms >= s.since.saturating_add(hello) {
                    closes.push((
                        *id,
                        format!("the handshake did not finish within {hello} ms"),
                    ));
                    s.closing = true;
                }
                continue;
            }
            if hb == 0 || s.peer.is_none() {
                continue;
            }
            let silent = now_ms.saturating_sub(s.last_rx);
            if silent >= hb.saturating_mul(SILENT_HEARTBEATS) {
                closes.push((
                    *id,
                    format!("nothing heard on this link for {silent} ms; reconnect"),
                ));
                s.closing = true;
            } else if s.dialed && now_ms >= s.last_rx.max(s.last_ping).saturating_add(hb) {
                s.last_ping = now_ms;
                pings.push(*id);
            }
        }
        for id in pings {
            self.send(id, Frame::Ping { nonce: now_ms });
        }
        for (id, reason) in closes {
            let e = Error::Timeout(reason);
            self.send(id, Frame::error(None, &e));
            self.outbox.push_back(Transmit::Close {
                session: id,
                code: e.code(),
                reason: e.to_string(),
            });
        }
    }

    fn session_deadline(&self, s: &Session) -> Option<u64> {
        if s.closing {
            return None;
        }
        if !matches!(s.phase, Phase::Open) {
            return Some(s.since.saturating_add(self.cfg.hello_timeout_ms));
        }
        let hb = self.cfg.heartbeat_ms;
        if hb == 0 || s.peer.is_none() {
            return None;
        }
        let silent = s
            .last_rx
            .saturating_add(hb.saturating_mul(SILENT_HEARTBEATS));
        if s.dialed {
            Some(silent.min(s.last_rx.max(s.last_ping).saturating_add(hb)))
        } else {
            Some(silent)
        }
    }

    // ---- input -------------------------------------------------------------------------------

    /// A frame arrived on `session`. Errors are answered on the session (an `error` frame,
    /// and a close where the session cannot go on); they never touch stored data.
    pub fn handle_frame(&mut self, now_ms: u64, session: SessionId, frame: Frame) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.last_rx = s.last_rx.max(now_ms);
        let s = &*s;
        let req = frame_req(&frame);
        let result = match (&s.phase, frame) {
            (Phase::AwaitHello, Frame::Hello(h)) => self.on_hello(now_ms, session, h),
            (Phase::AwaitHello, _) => Err(Fatal(Error::HelloRequired)),
            (Phase::AwaitWelcome, Frame::Welcome(w)) => self.on_welcome(session, w),
            (Phase::AwaitWelcome, Frame::Error { code, message, .. }) => {
                self.outbox.push_back(Transmit::Close {
                    session,
                    code,
                    reason: message,
                });
                Ok(())
            }
            (Phase::AwaitWelcome, _) => Err(Fatal(Error::Protocol("expected `welcome`".into()))),
            (Phase::Open, f) => self.on_open_frame(now_ms, session, f),
        };
        if let Err(Fatal(e)) = result {
            let fatal = matches!(
                e.code(),
                ErrorCode::HelloRequired
                    | ErrorCode::Unauthorized
                    | ErrorCode::WrongSpace
                    | ErrorCode::Protocol
                    | ErrorCode::ClockSkew
            ) || self
                .sessions
                .get(&session)
                .is_some_and(|s| s.kind == SessionKind::Peer);
            self.send(session, Frame::error(req, &e));
            if fatal {
                self.outbox.push_back(Transmit::Close {
                    session,
                    code: e.code(),
                    reason: e.to_string(),
                });
            }
        }
    }

    /// A frame could not be decoded: answer with an error and keep the session if it is an
    /// agent (peers cannot skip a push safely, so they are closed).
    pub fn handle_decode_error(&mut self, session: SessionId, e: &Error) {
        self.send(session, Frame::error(None, e));
        let peer = self
            .sessions
            .get(&session)
            .is_some_and(|s| s.kind == SessionKind::Peer || matches!(s.phase, Phase::AwaitHello));
        if peer {
            self.outbox.push_back(Transmit::Close {
                session,
                code: e.code(),
                reason: e.to_string(),
            });
        }
    }

    fn on_hello(&mut self, now_ms: u64, session: SessionId, h: Hello) -> Result<(), Fatal> {
        if h.space != self.cfg.space {
            return Err(Fatal(Error::WrongSpace {
                expected: self.cfg.space.clone(),
                got: h.space,
            }));
        }
        let rights = match (&self.cfg.secret, &h.token) {
            (None, _) => Rights::Admin,
            (Some(secret), Some(t)) => auth::verify(secret, t, &self.cfg.space, now_ms)?,
            (Some(_), None) => {
                return Err(Fatal(Error::Unauthorized(
                    "this server requires a token; pass one in `hello.token`".into(),
                )))
            }
        };
        let kind = h.kind_str();
        let peer = match h.kind {
            SessionKind::Agent => None,
            SessionKind::Peer => {
                let (Some(replica), Some(tier)) = (h.replica, h.tier) else {
                    return Err(Fatal(Error::Malformed(
                        "a peer `hello` needs `replica` and `tier`".into(),
                    )));
                };
                if replica == self.replica.id() {
                    return Err(Fatal(Error::Protocol(
                        "the peer has this store's own replica id".into(),
                    )));
                }
                let mut known = h.vector.unwrap_or_default();
                self.distrust_own_claim(&mut known);
                Some(PeerLink::new(
                    replica,
                    tier,
                    known,
                    h.messages.unwrap_or_default(),
                ))
            }
        };
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        s.phase = Phase::Open;
        s.kind = h.kind;
        s.rights = rights;
        s.name = h.name.unwrap_or_else(|| format!("{kind}-{session}"));
        s.peer = peer;
        let welcome = Welcome {
            space: self.cfg.space.clone(),
            replica: self.replica.id(),
            tier: self.replica.tier(),
            vector: self.replica.vector().clone(),
            messages: self.replica.message_seen().clone(),
            session,
            rights: Some(rights),
        };
        self.send(session, Frame::Welcome(welcome));
        self.opened(session);
        Ok(())
    }

    fn on_welcome(&mut self, session: SessionId, w: Welcome) -> Result<(), Fatal> {
        if w.space != self.cfg.space {
            return Err(Fatal(Error::WrongSpace {
                expected: self.cfg.space.clone(),
                got: w.space,
            }));
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        s.phase = Phase::Open;
        // We chose this server: what it sends is taken as a relay's.
        s.rights = Rights::Admin;
        let mut known = w.vector;
        self.distrust_own_claim(&mut known);
        let mut link = PeerLink::new(w.replica, w.tier, known, w.messages);
        link.own_only = w.rights.is_some_and(|r| r < Rights::Admin);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.peer = Some(link);
        }
        self.opened(session);
        Ok(())
    }

    /// A peer claims to hold more writes of this replica than it ever made: forged by a
    /// session that claimed our id, or we were restored from an older copy. Either way the
    /// claim must not hide our writes from it, nor may our next write reuse a counter it
    /// covers: we forget what the peer holds of us (everything of ours is offered again,
    /// which the peer takes idempotently) and move our counter past the claim.
    fn distrust_own_claim(&mut self, known: &mut VersionVector) {
        let me = self.replica.id();
        let claimed = known.get(me);
        if claimed > self.replica.latest_vector().get(me) {
            self.replica.skip_own_counter(claimed);
            known.forget(me);
        }
    }

    fn opened(&mut self, session: SessionId) {
        self.presence_dirty = true;
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        self.events.push_back(Event::SessionOpened {
            session,
            kind: s.kind,
            name: s.name.clone(),
            replica: s.peer.as_ref().map(|p| p.replica),
        });
        // Replay retained messages the peer has not seen, oldest first.
        let Some((known, own_only)) = s.peer.as_ref().map(|p| (p.msg_known.clone(), p.own_only))
        else {
            return;
        };
        let me = self.replica.id();
        let mut frames = Vec::new();
        let mut seen = known;
        for r in self.replica.logs().all() {
            if own_only && r.message.id.origin != me {
                continue;
            }
            if r.message.id.seq > seen.get(r.message.id.origin) {
                seen.raise(r.message.id.origin, r.message.id.seq);
                frames.push(Frame::Broadcast {
                    message: r.message.clone(),
                    offset: None,
                });
            }
        }
        if let Some(p) = self
            .sessions
            .get_mut(&session)
            .and_then(|s| s.peer.as_mut())
        {
            p.msg_known = seen;
        }
        for f in frames {
            self.send(session, f);
        }
    }

    fn need(&self, session: SessionId, rights: Rights) -> Result<(), Fatal> {
        let has = self
            .sessions
            .get(&session)
            .map_or(Rights::Read, |s| s.rights);
        if has < rights {
            return Err(Fatal(Error::Forbidden {
                has: has.as_str(),
                needs: rights.as_str(),
            }));
        }
        Ok(())
    }

    fn on_open_frame(&mut self, now_ms: u64, session: SessionId, f: Frame) -> Result<(), Fatal> {
        match f {
            Frame::Push(p) => {
                self.need(session, Rights::Write)?;
                let Some(s) = self.sessions.get(&session) else {
                    return Ok(());
                };
                let Some(link) = s.peer.as_ref() else {
                    return Err(Fatal(Error::PeerOnly("push")));
                };
                // The trust rule, for every push from every session, before anything changes.
                if s.rights < Rights::Admin {
                    if p.docs.iter().any(|d| d.collection == CONFIG_COLLECTION) {
                        return Err(Fatal(Error::Forbidden {
                            has: s.rights.as_str(),
                            needs: "admin (the push changes `_config`)",
                        }));
                    }
                    self.replica
                        .check_introduced(link.replica, &p.docs, &p.watermark)?;
                }
                let Push {
                    seq,
                    docs,
                    mut watermark,
                    ..
                } = p;
                self.distrust_own_claim(&mut watermark);
                self.replica.apply_remote(now_ms, docs, &watermark)?;
                if let Some(link) = self
                    .sessions
                    .get_mut(&session)
                    .and_then(|s| s.peer.as_mut())
                {
                    link.known.join(&watermark);
                    // A peer only sends what it has persisted: that counts as acknowledged, so
                    // changes that came from the peer never show as lag towards it.
                    link.acked.join(&watermark);
                }
                self.gate(Gated::Frame(
                    session,
                    Frame::Ack(Ack {
                        seq: Some(seq),
                        ..Ack::default()
                    }),
                ));
            }
            Frame::Ack(a) => {
                let Some(seq) = a.seq else { return Ok(()) };
                let Some(s) = self.sessions.get_mut(&session) else {
                    return Ok(());
                };
                let Some(link) = s.peer.as_mut() else {
                    return Ok(());
                };
                let mut acked = None;
                while link.unacked.front().is_some_and(|(q, _)| *q <= seq) {
                    acked = link.unacked.pop_front();
                }
                if let Some((_, wm)) = acked {
                    link.acked.join(&wm);
                    self.events.push_back(Event::PeerAcked {
                        session,
                        tier: link.tier,
                        vector: link.acked.clone(),
                    });
                }
            }
            Frame::Pull { mut vector } => {
                self.distrust_own_claim(&mut vector);
                if let Some(link) = self
                    .sessions
                    .get_mut(&session)
                    .and_then(|s| s.peer.as_mut())
                {
                    link.known = vector;
                    link.sync_requested = true;
                }
            }
            Frame::Put {
                req,
                collection,
                id,
                value,
            } => {
                let op = WriteOp::Put(as_object(value)?);
                self.agent_write(now_ms, session, req, DocKey::new(collection, id), op)?;
            }
            Frame::Patch {
                req,
                collection,
                id,
                value,
            } => {
                let op = WriteOp::Patch(as_object(value)?);
                self.agent_write(now_ms, session, req, DocKey::new(collection, id), op)?;
            }
            Frame::Delete {
                req,
                collection,
                id,
            } => {
                let key = DocKey::new(collection, id);
                self.agent_write(now_ms, session, req, key, WriteOp::Delete)?;
            }
            Frame::Resolve {
                req,
                collection,
                id,
                value,
            } => {
                self.need(session, Rights::Write)?;
                let key = DocKey::new(collection, id);
                if self.replica.conflict(&key).is_none() {
                    return Err(Fatal(Error::NoConflict {
                        collection: key.collection,
                        id: key.id,
                    }));
                }
                let op = match value {
                    None | Some(Value::Null) => WriteOp::Delete,
                    Some(v) => WriteOp::Put(as_object(v)?),
                };
                self.agent_write(now_ms, session, req, key, op)?;
            }
            Frame::SetPolicy {
                req,
                collection,
                policy,
            } => {
                self.need(session, Rights::Admin)?;
                check_name("collection", &collection, false)?;
                let mut m = Map::new();
                m.insert("policy".into(), Value::from(policy.as_str()));
                let key = DocKey::new(CONFIG_COLLECTION, format!("collection:{collection}"));
                self.agent_write(now_ms, session, req, key, WriteOp::Patch(m))?;
            }
            Frame::Get {
                req,
                collection,
                id,
            } => {
                self.need(session, Rights::Read)?;
                let doc = self.replica.view(&DocKey::new(collection, id));
                self.send(session, Frame::Doc { req, doc });
            }
            Frame::List {
                req,
                collection,
                after,
                limit,
            } => {
                self.need(session, Rights::Read)?;
                let limit = limit.unwrap_or(100).clamp(1, 1000) as usize;
                let docs = self.replica.list(&collection, after.as_deref(), limit + 1);
                let (docs, next) = if docs.len() > limit {
                    let docs: Vec<DocView> = docs.into_iter().take(limit).collect();
                    let next = docs.last().map(|d| d.id.clone());
                    (docs, next)
                } else {
                    (docs, None)
                };
                self.send(session, Frame::Docs { req, docs, next });
            }
            Frame::Subscribe {
                req,
                channel,
                collection,
                from,
            } => {
                self.need(session, Rights::Read)?;
                let mut replay = Vec::new();
                if let Some(ch) = &channel {
                    check_name("channel", ch, false)?;
                    if let Some(cursor) = from {
                        replay = self.replica.logs().after(ch, cursor).cloned().collect();
                    }
                }
                if let Some(c) = &collection {
                    check_name("collection", c, true)?;
                }
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.channels.extend(channel);
                    s.collections.extend(collection);
                }
                self.send(
                    session,
                    Frame::Ack(Ack {
                        req,
                        ..Ack::default()
                    }),
                );
                for r in replay {
                    self.send(
                        session,
                        Frame::Broadcast {
                            message: r.message,
                            offset: Some(r.offset),
                        },
                    );
                }
            }
            Frame::Unsubscribe {
                req,
                channel,
                collection,
            } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    if let Some(c) = channel {
                        s.channels.remove(&c);
                    }
                    if let Some(c) = collection {
                        s.collections.remove(&c);
                    }
                }
                self.send(
                    session,
                    Frame::Ack(Ack {
                        req,
                        ..Ack::default()
                    }),
                );
            }
            Frame::Send {
                req,
                channel,
                payload,
            } => {
                self.need(session, Rights::Write)?;
                check_name("channel", &channel, false)?;
                let id = self.replica.publish(now_ms, channel, payload);
                self.msg_from.insert(id, session);
                self.gate(Gated::Frame(
                    session,
                    Frame::Ack(Ack {
                        req,
                        ..Ack::default()
                    }),
                ));
            }
            Frame::Broadcast { message, .. } => {
                let Some(s) = self.sessions.get_mut(&session) else {
                    return Ok(());
                };
                let Some(link) = s.peer.as_mut() else {
                    return Err(Fatal(Error::PeerOnly("broadcast")));
                };
                if s.rights < Rights::Write {
                    return Err(Fatal(Error::Forbidden {
                        has: s.rights.as_str(),
                        needs: "write",
                    }));
                }
                if s.rights < Rights::Admin && message.id.origin != link.replica {
                    return Err(Fatal(Error::RelayForbidden {
                        own: link.replica,
                        what: format!("message {} of origin {}", message.id.seq, message.id.origin),
                    }));
                }
                link.msg_known.raise(message.id.origin, message.id.seq);
                check_name("channel", &message.channel, false)?;
                self.replica.accept_message(now_ms, message)?;
            }
            Frame::Presence { entries } => {
                let me = self.replica.id();
                let Some(s) = self.sessions.get_mut(&session) else {
                    return Ok(());
                };
                match s.peer.as_mut() {
                    Some(link) => {
                        let learned: Vec<PresenceEntry> = entries
                            .into_iter()
                            .filter(|e| e.node != me)
                            .take(10_000)
                            .collect();
                        if learned != link.learned {
                            link.learned = learned;
                            self.presence_dirty = true;
                        }
                    }
                    None => {
                        let entries = self.presence();
                        self.send(session, Frame::Presence { entries });
                    }
                }
            }
            Frame::Conflicts { req, collection } => {
                self.need(session, Rights::Read)?;
                let conflicts = self.replica.conflicts(collection.as_deref());
                self.send(session, Frame::ConflictList { req, conflicts });
            }
            Frame::Ping { nonce } => self.send(session, Frame::Pong { nonce }),
            Frame::Pong { .. } | Frame::Error { .. } => {}
            Frame::Hello(_) | Frame::Welcome(_) => {
                return Err(Fatal(Error::Protocol(
                    "the handshake is already done".into(),
                )));
            }
            other @ (Frame::Doc { .. }
            | Frame::Docs { .. }
            | Frame::Change { .. }
            | Frame::ConflictList { .. }
            | Frame::Conflict { .. }) => {
                return Err(Fatal(Error::Protocol(format!(
                    "`{}` is sent by servers, not to them",
                    other.type_name()
                ))));
            }
        }
        Ok(())
    }

    fn agent_write(
        &mut self,
        now_ms: u64,
        session: SessionId,
        req: Option<u64>,
        key: DocKey,
        op: WriteOp,
    ) -> Result<(), Fatal> {
        self.need(session, Rights::Write)?;
        let config = key.collection == CONFIG_COLLECTION;
        if config {
            self.need(session, Rights::Admin)?;
        }
        check_name("collection", &key.collection, config)?;
        check_name("document id", &key.id, true)?;
        self.check_size(&key, &op)?;
        let dot = self.replica.write(now_ms, key, op)?;
        self.gate(Gated::Frame(
            session,
            Frame::Ack(Ack {
                req,
                dot: Some(dot),
                seq: None,
            }),
        ));
        Ok(())
    }

    /// Refuses a write whose document would be too large to travel in one push.
    fn check_size(&self, key: &DocKey, op: &WriteOp) -> Result<()> {
        let size = match op {
            WriteOp::Delete => return Ok(()),
            WriteOp::Put(m) => object_size_bound(m),
            WriteOp::Patch(m) => {
                self.replica.get(key).map_or(0, |v| size_bound(&v)) + object_size_bound(m)
            }
        };
        if size > MAX_DOC_BYTES {
            return Err(Error::DocTooLarge {
                size,
                max: MAX_DOC_BYTES,
            });
        }
        Ok(())
    }

    /// Holds an acknowledgement until everything it vouches for is durable.
    fn gate(&mut self, g: Gated) {
        if self.replica.has_staged() {
            self.staged_gates.push(g);
        } else if let Some((_, last)) = self.inflight_gates.back_mut() {
            last.push(g);
        } else {
            match g {
                Gated::Frame(s, f) => self.send(s, f),
                Gated::Local(req, dot) => self.events.push_back(Event::Acked { req, dot }),
            }
        }
    }

    fn send(&mut self, session: SessionId, frame: Frame) {
        self.outbox.push_back(Transmit::Frame { session, frame });
    }

    fn announce_doc(&mut self, key: &DocKey) {
        let view = self.replica.view(key);
        let conflict = if view.conflict {
            self.replica.conflict(key)
        } else {
            None
        };
        let targets: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.collections.contains(&key.collection))
            .map(|(id, _)| *id)
            .collect();
        for t in targets {
            self.send(t, Frame::Change { doc: view.clone() });
            if let Some(c) = &conflict {
                self.send(
                    t,
                    Frame::Conflict {
                        conflict: c.clone(),
                    },
                );
            }
        }
        self.events.push_back(Event::DocChanged(view));
        if let Some(c) = conflict {
            self.events.push_back(Event::ConflictOpened(c));
        }
    }

    fn deliver(&mut self, r: Retained) {
        let from = self.msg_from.remove(&r.message.id);
        let mut out = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            if !matches!(s.phase, Phase::Open) || Some(*id) == from {
                continue;
            }
            match s.peer.as_mut() {
                Some(link) if link.own_only && r.message.id.origin != self.replica.id() => {}
                Some(link) if link.msg_known.get(r.message.id.origin) < r.message.id.seq => {
                    link.msg_known.raise(r.message.id.origin, r.message.id.seq);
                    out.push((*id, None));
                }
                Some(_) => {}
                None if s.channels.contains(&r.message.channel) => out.push((*id, Some(r.offset))),
                None => {}
            }
        }
        for (id, offset) in out {
            self.send(
                id,
                Frame::Broadcast {
                    message: r.message.clone(),
                    offset,
                },
            );
        }
        self.events.push_back(Event::Message {
            message: r.message,
            offset: r.offset,
        });
    }

    fn broadcast_presence(&mut self) {
        let all = self.presence();
        let peers: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| matches!(s.phase, Phase::Open) && s.peer.is_some())
            .map(|(id, _)| *id)
            .collect();
        let me = self.replica.id();
        for id in peers {
            let Some(link) = self.sessions.get_mut(&id).and_then(|s| s.peer.as_mut()) else {
                continue;
            };
            // What this peer does not already know: not what it told us, not its own link.
            let entries: Vec<PresenceEntry> = all
                .iter()
                .filter(|e| !(link.learned.contains(e) || (e.node == me && e.session == id)))
                .cloned()
                .collect();
            if entries == link.presence_sent {
                continue;
            }
            link.presence_sent = entries.clone();
            self.send(id, Frame::Presence { entries });
        }
        self.events.push_back(Event::PresenceChanged);
    }

    fn next_push(&mut self) -> Option<Transmit> {
        let ids: Vec<SessionId> = self
            .sessions
            .range(self.push_cursor..)
            .chain(self.sessions.range(..self.push_cursor))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
            let Some(link) = s.peer.as_ref() else {
                continue;
            };
            if !matches!(s.phase, Phase::Open)
                || link.unacked.len() >= self.cfg.window
                || !(s.auto_push || link.sync_requested)
            {
                continue;
            }
            let me = self.replica.id();
            let ahead = if link.own_only {
                self.replica.vector().get(me) > link.known.get(me)
                    && link.blocked_at.as_ref() != Some(&link.known)
            } else {
                self.replica.ahead_of(&link.known)
            };
            if !ahead {
                if let Some(link) = self.sessions.get_mut(&id).and_then(|s| s.peer.as_mut()) {
                    link.sync_requested = false;
                    link.run_sent = 0;
                }
                continue;
            }
            let (delta, blocked) = if link.own_only {
                let d = self
                    .replica
                    .delta_own(&link.known, self.cfg.batch_docs, PUSH_BYTES);
                (d.delta, d.blocked)
            } else {
                let d = self
                    .replica
                    .delta_bounded(&link.known, self.cfg.batch_docs, PUSH_BYTES);
                (d, false)
            };
            let Some(link) = self.sessions.get_mut(&id).and_then(|s| s.peer.as_mut()) else {
                continue;
            };
            if blocked {
                // Everything before the blocking document goes now; then we wait for `known`
                // to move (the peer got the rest through a relay and told us).
                let mut after = link.known.clone();
                after.join(&delta.watermark);
                link.blocked_at = Some(after);
                if delta.docs.is_empty() && link.known.dominates(&delta.watermark) {
                    continue;
                }
            }
            let seq = link.next_seq;
            link.next_seq += 1;
            link.known.join(&delta.watermark);
            link.unacked.push_back((seq, delta.watermark.clone()));
            link.run_sent += delta.docs.len() as u64;
            let (sent, remaining) = (link.run_sent, delta.remaining);
            self.events.push_back(Event::SyncProgress {
                session: id,
                sent,
                remaining,
            });
            self.push_cursor = id + 1;
            let frame = Frame::Push(Push {
                seq,
                docs: delta.docs,
                watermark: delta.watermark,
                remaining,
            });
            return Some(Transmit::Frame { session: id, frame });
        }
        None
    }
}

/// A peer's sync position, for status displays.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStatus {
    pub replica: ReplicaId,
    pub tier: Tier,
    /// What the peer has persisted of ours.
    pub acked: VersionVector,
    /// Our own writes the peer has not acknowledged yet.
    pub pending: u64,
    /// Changes (any origin) we hold durably that the peer has not persisted, as far as we
    /// know: neither acknowledged by it nor received from it.
    pub lag: u64,
    pub open: bool,
}

/// An error that is answered on the session.
struct Fatal(Error);

impl From<Error> for Fatal {
    fn from(e: Error) -> Self {
        Fatal(e)
    }
}

impl Session {
    fn new(phase: Phase, now_ms: u64) -> Self {
        Session {
            phase,
            kind: SessionKind::Agent,
            name: String::new(),
            since: now_ms,
            rights: Rights::Read,
            peer: None,
            channels: BTreeSet::new(),
            collections: BTreeSet::new(),
            auto_push: true,
            dialed: false,
            last_rx: now_ms,
            last_ping: now_ms,
            closing: false,
        }
    }
}

impl PeerLink {
    fn new(replica: ReplicaId, tier: Tier, known: VersionVector, msg_known: VersionVector) -> Self {
        PeerLink {
            replica,
            tier,
            // The vector in `hello` / `welcome` is what the peer holds durably.
            acked: known.clone(),
            known,
            msg_known,
            next_seq: 1,
            unacked: VecDeque::new(),
            sync_requested: false,
            run_sent: 0,
            learned: Vec::new(),
            presence_sent: Vec::new(),
            own_only: false,
            blocked_at: None,
        }
    }
}

impl Hello {
    fn kind_str(&self) -> &'static str {
        match self.kind {
            SessionKind::Agent => "agent",
            SessionKind::Peer => "peer",
        }
    }
}

fn as_object(v: Value) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Err(Error::NotAnObject("null")),
        Value::Bool(_) => Err(Error::NotAnObject("a boolean")),
        Value::Number(_) => Err(Error::NotAnObject("a number")),
        Value::String(_) => Err(Error::NotAnObject("a string")),
        Value::Array(_) => Err(Error::NotAnObject("an array")),
    }
}

fn frame_req(f: &Frame) -> Option<u64> {
    match f {
        Frame::Put { req, .. }
        | Frame::Patch { req, .. }
        | Frame::Delete { req, .. }
        | Frame::Get { req, .. }
        | Frame::List { req, .. }
        | Frame::Subscribe { req, .. }
        | Frame::Unsubscribe { req, .. }
        | Frame::Send { req, .. }
        | Frame::Conflicts { req, .. }
        | Frame::Resolve { req, .. }
        | Frame::SetPolicy { req, .. } => *req,
        _ => None,
    }
}
