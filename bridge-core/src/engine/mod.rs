//! The sync state machine of one space at one store, for both ends of every connection.
//!
//! An [`Engine`] owns a [`Replica`] and the sessions attached to it: agents (programs using
//! the agent verbs) and peers (other replicas). It is driven like quinn-proto: the host feeds
//! it (`accept`, `connect`, `handle_frame`, `close`, the host's own [`Request`]s,
//! `persisted`) and drains it (`poll_transmit`, `poll_persist`, `poll_event`). Nothing in it
//! blocks or reads a clock.
//!
//! ## Sync
//! Every peer session keeps `known`: the vector the peer is known to hold. It starts from the
//! vector in the peer's `hello` / `welcome` and grows with each push either way. Whenever our
//! durable vector is ahead of `known`, [`Engine::poll_transmit`] cuts the next
//! [`Push`](crate::frame::Push) from [`Replica::delta`]: initial sync, live propagation and
//! resume after reconnect are the same loop. At most `window` pushes per session are unacknowledged, which bounds memory and
//! paces a large initial sync.
//!
//! ## Durability on ack
//! A write (agent `put`, peer `push`, a local [`Engine::request`]) is applied to the staged layer
//! at once, so reads see it, but its `ack` waits until the host has persisted the batch that
//! holds it ([`Engine::persisted`]). Pushes and forwarded messages carry only durable state.
//!
//! ```
//! use bridge_core::auth::Grant;
//! use bridge_core::{DocKey, Engine, EngineConfig, Output, PersistBatch, ReplicaId, Request, Tier, Transmit, WriteOp};
//! let mut a = Engine::new(EngineConfig::new(ReplicaId(1), Tier::Local, "demo"));
//! let mut b = Engine::new(EngineConfig::new(ReplicaId(2), Tier::Cloud, "demo"));
//! let doc = serde_json::json!({"title": "hello"});
//! let key = DocKey::new("notes", "n1");
//! let op = WriteOp::Put(doc.as_object().cloned().unwrap());
//! a.request(0, &Grant::ADMIN, Request::Write { key, op }).unwrap();
//! let up = a.connect(0, None, "to-b"); // the engine numbers its sessions
//! let down = b.accept(0); //              the same link, seen from `b`
//! // The host loop (`Engine::flush`): persist what is staged, report it persisted, then
//! // carry what each side transmits to the other, until both are quiet.
//! for _round in 0..100 {
//!     let mut moved = false;
//!     let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
//!     // A real host writes the batches to disk in `persist`, before anything is sent.
//!     let persist = |_: &[PersistBatch]| Ok::<(), ()>(());
//!     a.flush(persist, |_, out| {
//!         if let Output::Transmit(Transmit::Frame { frame, .. }) = out {
//!             to_b.push(frame);
//!         }
//!     })
//!     .unwrap();
//!     b.flush(persist, |_, out| {
//!         if let Output::Transmit(Transmit::Frame { frame, .. }) = out {
//!             to_a.push(frame);
//!         }
//!     })
//!     .unwrap();
//!     for frame in to_b {
//!         b.handle_frame(0, down, frame);
//!         moved = true;
//!     }
//!     for frame in to_a {
//!         a.handle_frame(0, up, frame);
//!         moved = true;
//!     }
//!     if !moved && !a.has_staged() && !b.has_staged() {
//!         break;
//!     }
//! }
//! let got = b.replica().get(&DocKey::new("notes", "n1")).unwrap(); // a read of the store
//! assert_eq!(got.unwrap()["title"], "hello");
//! assert_eq!(a.peer_status(up).unwrap().pending, 0); // b persisted and acknowledged it
//! ```
//!
//! ## The methods, sorted
//! [`Engine`]'s own documentation sorts its methods by role, quinn-proto style: the inputs a
//! host feeds (sessions, frames, requests, timers, store results), the outputs it polls
//! (persist batches, transmits, events, the timeout), and the order to poll them in.
//!
//! ## Where things live
//! This file holds the state and the public API; the rest is split by concern: every
//! [`Request`] (agent verbs, HTTP, JS and tab calls) in `request.rs`; the peer handshake,
//! push / ack / pull, trust checks and push cutting in `peer.rs`; presence in `presence.rs`;
//! timers in `timers.rs`; the host loop in `driver.rs`; session snapshots in `snapshot.rs`.

use crate::auth::{Grant, Rights};
use crate::doc::WriteOp;
use crate::frame::{Conflict, DocView, Frame, Hello, SessionKind};
use crate::message::{Message, MessageId, PresenceEntry, Retained};
use crate::replica::{PersistBatch, Replica, CONFIG_COLLECTION};
use crate::request::Request;
use crate::vec_map::VecMap;
use crate::{
    DocKey, Dot, Error, ErrorCode, Policy, ReplicaId, Result, SessionId, Tier, VersionVector,
};
use serde_json::{Map, Value};
use std::collections::VecDeque;

mod driver;
mod fill;
mod horizon;
mod peer;
mod presence;
mod replicate;
mod request;
mod resync;
mod snapshot;
mod timers;

pub use driver::Output;
pub use snapshot::SessionSnapshot;

/// Budget for the documents of one push: half the frame limit, so a push stays under
/// [`crate::frame::MAX_FRAME_BYTES`] in either encoding with room for the envelope.
pub const PUSH_BYTES: usize = crate::frame::MAX_FRAME_BYTES / 2;

/// How an [`Engine`] is set up: who this store is, which space it serves, and its limits and
/// timers. [`EngineConfig::new`] gives the defaults; set fields directly to change them
/// before [`Engine::new`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This store's replica id: stable across restarts (kept with the data), never 0, and
    /// unique among every store that syncs the space.
    pub replica: ReplicaId,
    /// This store's tier, stamped on each of its writes (what `cloud_wins` / `local_wins`
    /// compare) and sent in `hello` / `welcome`.
    pub tier: Tier,
    /// The one space this engine serves; a `hello` or `welcome` for another is refused
    /// (`wrong_space`).
    pub space: String,
    /// The default policy this store seeds a new space with (`_config/space`), and uses until
    /// the space's replicated default is known. Not the space's policy: that is replicated.
    pub default_policy: Policy,
    /// Whether this store writes the seed when it finds the space without one. Hosts that
    /// serve a space (native, Durable Object) do; a browser joins spaces and does not.
    pub seed_default_policy: bool,
    /// Messages a channel retains unless its configuration says otherwise.
    pub default_retain: usize,
    /// How far ahead of `now_ms` (in ms) a stamp from a peer may be; a push or message beyond
    /// it is refused with `clock_skew` and the session closed. Default
    /// [`crate::clock::DEFAULT_MAX_SKEW_MS`].
    pub max_skew_ms: u64,
    /// Documents per push.
    pub batch_docs: usize,
    /// Unacknowledged pushes allowed per peer session.
    pub window: usize,
    /// When set, every session must present a token signed with it (without the feature
    /// `tokens`, none can: every `hello` is refused).
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
    /// Bytes of document states a replica whose durable layer is a store
    /// ([`Engine::with_store`]) keeps cached in memory. Ignored in memory.
    pub cache_bytes: usize,
    /// This replica is the root of the space's sync tree (it dials no server): it computes
    /// the stable horizon from its peers' reports. A replica that dials a server follows its
    /// server's horizon instead. Default `false` (a replica that is never told computes no
    /// horizon of its own, which is always safe).
    pub root: bool,
    /// Collect tombstones: documents deleted everywhere, whose whole context is below the
    /// stable horizon, are removed from the store (ARCHITECTURE.md, "Collection"). Default
    /// `false`. Needs a store that lists its dead documents ([`crate::replica::DocStore::dead`]).
    pub collect: bool,
    /// A peer that dialed this replica and has been gone this long (ms) is dropped from the
    /// horizon's table, so it no longer holds the horizon back (ARCHITECTURE.md,
    /// "Expiry"). If it comes back it is new to this replica, and resynced if it missed a
    /// collected deletion. `None` (the default):
    /// a peer is waited for forever.
    pub expiry_ms: Option<u64>,
    /// The collections this replica replicates from the servers it dials (patterns: a name,
    /// or a prefix ending in `*`), sent in `hello`; `None` (the default): the whole space.
    /// Fixed for the store's life: the vector it holds is complete for these collections
    /// only (ARCHITECTURE.md, "Partial replication"). A replica with a subscription serves
    /// only peers whose own `collections` lie within these.
    pub collections: Option<Vec<String>>,
    /// With `collections`: the server this replica syncs with (its replica id), once it has
    /// had one (`Event::Welcomed` says which; the host stores it and gives it back here).
    /// A partial replica's vector passes writes of other collections it never held, which
    /// only the server it got them from holds: so it syncs with that server alone, and a
    /// `welcome` from another is refused (`protocol`, closed).
    pub upstream: Option<ReplicaId>,
    /// Which durable changes reach the host as [`Event::DocChanged`] (and
    /// [`Event::ConflictOpened`]). Each event is the document's view, built from its state:
    /// a host that does not use them says so, and a change that no session and no event
    /// wants costs nothing more than its write. Default [`DocEvents::All`].
    pub doc_events: DocEvents,
}

/// The collections whose durable changes the host wants as events
/// ([`EngineConfig::doc_events`]). Sessions subscribed to a collection get their `change`
/// frames either way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DocEvents {
    /// Every collection's (the browser: its page subscribes in JavaScript).
    #[default]
    All,
    /// Only these collections' (empty: none).
    Collections(std::collections::BTreeSet<String>),
}

impl DocEvents {
    fn wants(&self, collection: &str) -> bool {
        match self {
            DocEvents::All => true,
            DocEvents::Collections(c) => c.contains(collection),
        }
    }
}

/// Pages of dead documents collection looks at per [`Engine::poll_persist`].
#[cfg(feature = "serve")]
const COLLECT_PAGES: usize = 16;

/// Default for [`EngineConfig::cache_bytes`]: 64 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// Default for [`EngineConfig::hello_timeout_ms`].
pub const DEFAULT_HELLO_TIMEOUT_MS: u64 = 10_000;
/// Default for [`EngineConfig::heartbeat_ms`].
pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// A peer session silent for this many heartbeats is closed.
pub const SILENT_HEARTBEATS: u64 = 3;

impl EngineConfig {
    /// The defaults for a store `replica` of `tier` serving `space`: policy `lww` (seeded),
    /// 100 retained messages per channel, 60 s skew bound, 256 documents per push, a window
    /// of 4 pushes, no secret, no name, a 10 s hello timeout and a 15 s heartbeat.
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
            cache_bytes: DEFAULT_CACHE_BYTES,
            root: false,
            collect: false,
            expiry_ms: None,
            collections: None,
            upstream: None,
            doc_events: DocEvents::All,
        }
    }
}

/// Something the host must put on the wire.
#[derive(Clone, Debug, PartialEq)]
pub enum Transmit {
    /// Send `frame` on the connection of `session`.
    Frame {
        /// The session whose connection carries it.
        session: SessionId,
        /// The frame, for the host to encode in the session's encoding ([`crate::codec`]).
        frame: Frame,
    },
    /// Close the connection after sending what was queued before.
    Close {
        /// The session to close.
        session: SessionId,
        /// Why: the WebSocket close code is [`ErrorCode::close_code`].
        code: ErrorCode,
        /// A human-readable reason, for the close frame.
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
    Message {
        /// The message.
        message: Message,
        /// This store's offset of it ([`crate::message::Retained::offset`]).
        offset: u64,
    },
    /// A write of the host's own API ([`Engine::request`], answered
    /// [`crate::Answer::WhenDurable`]) is durable.
    Acked {
        /// The request number [`crate::Answer::WhenDurable`] gave.
        req: u64,
        /// The write's dot; `None` for a message or an import.
        dot: Option<Dot>,
    },
    /// A peer has persisted our changes up to `vector` ("synced" when the peer is cloud).
    PeerAcked {
        /// The peer's session.
        session: SessionId,
        /// The peer's tier.
        tier: Tier,
        /// Everything of ours the peer has acknowledged so far.
        vector: VersionVector,
    },
    /// Catch-up progress on a peer session: documents sent so far and still to come.
    SyncProgress {
        /// The peer's session.
        session: SessionId,
        /// Documents pushed in this catch-up run so far.
        sent: u64,
        /// Documents still to push in it (0: caught up).
        remaining: u64,
    },
    /// A peer's push was taken (staged; its `ack` follows once durable): `docs` documents,
    /// and the `remaining` ones the peer says are still to come in this catch-up.
    PushReceived {
        /// The peer's session.
        session: SessionId,
        /// Documents in this push.
        docs: u64,
        /// Documents the peer says are still to come (0: the catch-up is done).
        remaining: u64,
    },
    /// The server we dialed ([`Engine::connect`]) welcomed us: its replica and tier, what it
    /// holds durably (its `welcome` vector; a claim on our own writes beyond what we made is
    /// not believed and reads as nothing), and the rights it gave us. Comes just before
    /// [`Event::SessionOpened`] for the same session.
    Welcomed {
        /// The session we dialed.
        session: SessionId,
        /// The server's replica id.
        replica: ReplicaId,
        /// The server's tier.
        tier: Tier,
        /// What the server holds durably, as we believe it.
        vector: VersionVector,
        /// The rights the server gave us (`None` from servers that do not say).
        rights: Option<Rights>,
    },
    /// A session finished its handshake.
    SessionOpened {
        /// The session.
        session: SessionId,
        /// Agent or peer.
        kind: SessionKind,
        /// Its display name (from `hello`, or `agent-N` / `peer-N`; for a session we dialed, the
        /// name given to [`Engine::connect`]).
        name: String,
        /// The peer's replica id; `None` for an agent.
        replica: Option<ReplicaId>,
    },
    /// The set of connected agents and peers changed.
    PresenceChanged,
    /// A change of collections asked with [`Engine::replicate`] is in effect and durable:
    /// this replica holds every document of `collections` (and forgets, a page at a time,
    /// those of collections it dropped: [`Engine::forgetting`]).
    Replicated {
        /// What it replicates now.
        collections: Vec<String>,
    },
    /// The server refused a change of collections ([`Engine::replicate`]): `forbidden` (the
    /// token does not read them all), `malformed`, or `protocol` (a partial server that does
    /// not hold them). The replica goes back to what it replicated before.
    ReplicateRefused {
        /// The list refused.
        collections: Vec<String>,
        /// Why, as the server said.
        code: crate::ErrorCode,
        /// The server's message.
        message: String,
    },
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
    /// On an `own_only` link: `known` and our own durable counter when the last push stopped
    /// before writes the peer may not take from us yet. Nothing more goes until one of them
    /// moves (the peer got the rest through a relay, or we wrote again).
    blocked_at: Option<(VersionVector, u64)>,
    /// On a link we dialed: the floor and ceiling of our last `report` on it.
    reported: Option<(VersionVector, VersionVector)>,
    /// The other side's stable horizon as it told us (its `hello`, or its `horizon`
    /// frames on a link we dialed): it may have collected below it, so its pushes are read
    /// against it as well as against ours.
    peer_horizon: VersionVector,
    /// On a link that dialed us: a resync under way (the horizon it began at): no push goes
    /// to the peer until its last `inventory`.
    resync: Option<VersionVector>,
    /// On a link that dialed us: resync again once the one under way ends.
    resync_again: bool,
    /// On a link that dialed us: the collections the peer replicates (its `hello`), `None`
    /// for the whole space. Only their documents go to it; its vector is complete for them
    /// only, so its pushes of others are not read against it.
    filter: Option<Vec<String>>,
    /// On a link that dialed us: the collections the peer's vector is complete for, as far
    /// as this session knows (its `hello`'s, narrowed by each `replicate`, never widened
    /// within the session: a push of a document of an added collection may have been cut
    /// before the walk brought it, so it is a blind write). Its pushes are read against its
    /// vector for these only. `None`: the whole space.
    held: Option<Vec<String>>,
    /// On a link we dialed: the last `error` the server sent, which a `replicated` refusing
    /// our list explains.
    last_error: Option<(crate::ErrorCode, String)>,
    /// On a link we dialed: the `inventory` walk a `resync` asked for.
    inventory: Option<resync::Inventory>,
    /// On a link that dialed us: its initial sync by key, under way (`fill.rs`): no delta
    /// goes until its last page has claimed what it carried.
    fill: Option<fill::Fill>,
    /// On a link that dialed us: the horizon we last sent it.
    horizon_sent: VersionVector,
    /// On a link that dialed us: its last `report` as sent, before capping. Applied again
    /// whenever `acked` rises: a report usually overtakes the push that carries the writes
    /// its floor counts, and a capped floor would otherwise stay below them.
    #[cfg(feature = "serve")]
    report: Option<(VersionVector, VersionVector)>,
}

#[derive(Debug)]
struct Session {
    phase: Phase,
    kind: SessionKind,
    name: String,
    since: u64,
    /// What its token allows: a peer's is never scoped to collections (`on_hello`).
    grant: Grant,
    peer: Option<PeerLink>,
    /// Subscriptions of an agent session (sorted names; no values).
    channels: VecMap<String, ()>,
    collections: VecMap<String, ()>,
    /// Push automatically once open (peer sessions); settable before the handshake ends.
    auto_push: bool,
    /// We dialed this connection ([`Engine::connect`]): we keep it alive with `ping`.
    dialed: bool,
    /// The peer reads the compact binary `push` (its `hello` or `welcome` said so); pushes
    /// to one that does not are marked [`crate::frame::Push::expanded`].
    compact: bool,
    /// When a frame last arrived on it.
    last_rx: u64,
    /// When we last sent it a `ping`.
    last_ping: u64,
    /// A close is on its way to the host: no more timers for it.
    closing: bool,
    /// Replays still to send, oldest subscription first (feature `store`): sent a message
    /// at a time from [`Engine::poll_transmit`] while the host lets the session be
    /// written ([`Engine::set_writable`]).
    #[cfg(feature = "store")]
    replays: VecDeque<Replay>,
    /// The host said the session's connection cannot take more now ([`Engine::set_writable`]).
    #[cfg(feature = "store")]
    full: bool,
}

/// A subscriber's replay of one channel in progress: the offset of the last retained
/// message read, and the page read but not sent yet. It reads up to the highest durable
/// offset of the moment, and ends when a read finds nothing after `cursor`; until then the
/// channel's live messages are not delivered to the session (the replay reads them).
#[cfg(feature = "store")]
#[derive(Debug)]
struct Replay {
    channel: String,
    cursor: u64,
    page: VecDeque<Retained>,
}

#[derive(Debug)]
enum Gated {
    Frame(SessionId, Frame),
    Local(u64, Option<Dot>),
    /// Our durable states of these documents, each context raised by the dots listed, to
    /// send to the session once the batch holding the change is durable
    /// ([`Engine::send_collected`]).
    #[cfg(feature = "serve")]
    States(SessionId, Vec<(DocKey, Vec<Dot>)>),
    /// [`Event::Replicated`], once the stored collections are durable.
    Replicated(Vec<String>),
}

/// The sync state machine of one space at one store: a [`Replica`] and every session
/// attached to it. Sans-IO, driven like quinn-proto's `Connection`: the host calls an
/// **input** method for everything that happens to it, then **polls** the outputs until they
/// are empty and acts on each. Nothing blocks, reads a clock or does IO; every `now_ms` is
/// the host's wall clock in ms since the Unix epoch, and [`Engine::poll_timeout`] answers
/// on the same clock.
///
/// # Inputs: what the host feeds in
/// - **Sessions.** [`Engine::accept`] when a connection arrives (it must open with `hello`)
///   and [`Engine::connect`] when we dial a peer (sends our `hello`): both return the new
///   [`SessionId`], which the host keeps with the connection; the engine numbers sessions and
///   never reuses a number. [`Engine::close`] when a connection is gone, whoever closed it
///   (it also drops what was still queued for it). A host that loses its memory while its
///   connections live on (a hibernating Durable Object) keeps [`Engine::session_snapshot`]s
///   and brings them back with [`Engine::restore_session`].
/// - **Frames.** [`Engine::handle_frame`] for every decoded frame, and
///   [`Engine::handle_decode_error`] for bytes that did not decode. Neither returns an error:
///   whatever is wrong is answered on the session (an `error` frame, and a close when the
///   session cannot go on), never by touching stored data.
/// - **Requests** of the host's own API (HTTP, CLI, JS, a tab's forwarded call):
///   [`Engine::request`], and [`Engine::request_once`] with an idempotency key. Reads answer
///   at once; writes answer [`crate::Answer::WhenDurable`] and are confirmed by
///   [`Event::Acked`]. Refusals ([`crate::Error::Forbidden`], limits) come back as `Err` and
///   store nothing. Agents' verb frames run through the same code.
/// - **Manual sync** of a peer session: [`Engine::set_auto_push`], [`Engine::sync_now`],
///   [`Engine::pull`].
/// - **Timers.** [`Engine::handle_timeout`] when the time from [`Engine::poll_timeout`] is
///   reached (early or late calls are harmless: it acts on what is due at `now_ms`).
/// - **Store results.** [`Engine::persisted`] once batch `id` is durable (or
///   [`Engine::batches_persisted`] for several): `Err` for a batch that is not in flight or is
///   reported out of order. At start-up, before any session, what the store holds:
///   [`Engine::restore_meta`], [`Engine::restore_doc`], [`Engine::restore_message`],
///   [`Engine::restore_requests`]. (`crash`, which drops everything not durable, and
///   `replica_mut` exist for tests and the simulation only, feature `sim`.)
///
/// # Outputs: what the host polls, all `#[must_use]`
/// - [`Engine::poll_persist`]: the next [`PersistBatch`] to write, in order. Nothing a
///   batch holds is acknowledged, announced or pushed before it is reported persisted.
/// - [`Engine::poll_transmit`]: the next [`Transmit`]: a frame to send on a session, or a
///   connection to close (after sending what was queued before it). Pushes to peers are
///   cut here, from the durable layer, at most [`EngineConfig::window`] unacknowledged per
///   session.
/// - [`Engine::poll_event`]: the next [`Event`] to show or act on.
/// - [`Engine::poll_timeout`]: when to call [`Engine::handle_timeout`] (`None`: no timer).
///
/// Getters for status and reads: [`Engine::config`], [`Engine::replica`],
/// [`Engine::has_staged`], [`Engine::peer_status`], [`Engine::session_count`],
/// [`Engine::presence`], [`Engine::default_policies`].
///
/// # In which order to poll
/// After every input (or batch of inputs, to group commits), drain the engine in this order:
/// 1. [`Engine::poll_persist`] until `None`: write each batch (in order; several may share one
///    commit) and call [`Engine::persisted`] once it is durable. This releases the gated acks
///    and the changes and messages the batch holds into the queues below. If the write
///    failed, do not report it: nothing it holds is ever acknowledged.
/// 2. [`Engine::poll_event`] and [`Engine::poll_transmit`] until both are `None` (events
///    first, so that a reaction to one, such as turning automatic pushing off, comes before
///    pushes are cut; polling transmits can queue an event, so loop until both are empty).
///    Transmit after persisting: pushes are cut from the durable layer when polled, so they
///    carry the batch just stored.
/// 3. [`Engine::poll_timeout`] last, and arm the host's one timer for it; when it fires call
///    [`Engine::handle_timeout`] and drain again.
///
/// The host loop is written once (`driver.rs`): [`Engine::flush`] does steps 1 and 2 for a
/// synchronous store; [`Engine::cut_batches`], [`Engine::batches_persisted`] and
/// [`Engine::drain`] are its three steps one by one, for an asynchronous store (IndexedDB)
/// or a commit shared by several engines. The module documentation has a complete example.
pub struct Engine {
    cfg: EngineConfig,
    replica: Replica,
    /// Boxed: a session is large, and the map moves its entries when one is removed.
    sessions: VecMap<SessionId, Box<Session>>,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    staged_gates: Vec<Gated>,
    inflight_gates: VecDeque<(u64, Vec<Gated>)>,
    /// A change of collections under way ([`Engine::replicate`]).
    change: Option<replicate::Change>,
    /// Where forgetting the collections dropped stands (`Stability::forget`).
    forget: replicate::Forgetting,
    msg_from: VecMap<MessageId, SessionId>,
    presence_dirty: bool,
    push_cursor: SessionId,
    /// The id [`Engine::accept`] / [`Engine::connect`] give the next session.
    next_session: SessionId,
    /// The space's default policy was seeded or found (checked once, at the first cut).
    seeded: bool,
    /// Done requests with an idempotency key ([`Engine::request_once`]).
    requests: crate::request::key::Requests,
    /// The last request id handed out for a write of the host's own API ([`Engine::request`]).
    next_req: u64,
    /// Root only: the floor and ceiling of the tree at one moment, waiting for the floor to
    /// pass that ceiling ([`Engine::horizon_round`]).
    #[cfg(feature = "serve")]
    candidate: Option<(VersionVector, VersionVector)>,
    /// Not root: the highest horizon our server sent, adopted as far as our own durable
    /// vector covers it.
    horizon_heard: VersionVector,
    /// Collection may take its next step at the next [`Engine::poll_persist`] (set by each
    /// persisted batch and each horizon change).
    #[cfg(feature = "serve")]
    collect_due: bool,
    /// The latest time an input carried: a collection pass under way asks for a timer at
    /// it ([`Engine::poll_timeout`]), so it goes on, a step per round, while nothing else
    /// happens.
    #[cfg(feature = "serve")]
    last_now: u64,
}

impl Engine {
    /// An engine with an empty replica and no session. A host that has data restores it
    /// (`restore_meta`, `restore_doc`, `restore_message`, `restore_requests`) before the
    /// first session.
    pub fn new(cfg: EngineConfig) -> Self {
        let replica = Replica::new(cfg.replica, cfg.tier, cfg.space.clone())
            .with_default_policy(cfg.default_policy)
            .with_default_retain(cfg.default_retain)
            .with_max_skew(cfg.max_skew_ms)
            .with_collection(cfg.collect);
        Engine {
            cfg,
            replica,
            sessions: VecMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            staged_gates: Vec::new(),
            inflight_gates: VecDeque::new(),
            change: None,
            forget: Default::default(),
            msg_from: VecMap::new(),
            presence_dirty: false,
            push_cursor: 0,
            next_session: 1,
            seeded: false,
            requests: Default::default(),
            next_req: 0,
            #[cfg(feature = "serve")]
            candidate: None,
            horizon_heard: VersionVector::new(),
            #[cfg(feature = "serve")]
            collect_due: true,
            #[cfg(feature = "serve")]
            last_now: 0,
        }
    }

    /// An engine whose durable layer is `store` (see [`crate::replica::DocStore`]), with a
    /// cache of [`EngineConfig::cache_bytes`]. The host writes every batch to that store
    /// before it calls [`Engine::persisted`], and restores only the metadata, the `_config`
    /// documents and the highest message offset ([`Engine::restore_message_offset`]): no
    /// document and no retained message needs reading at start.
    #[cfg(feature = "store")]
    pub fn with_store(cfg: EngineConfig, store: Box<dyn crate::replica::DocStore>) -> Self {
        let budget = cfg.cache_bytes;
        let mut e = Engine::new(cfg);
        e.replica.read_from(store, budget);
        e
    }

    /// The configuration the engine was made with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The replica: documents, messages and vectors, for reads ([`Replica::get`],
    /// [`Replica::vector`], ...). Changes go through [`Engine::request`] and sessions only.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Loads a document's state as read back from the store: when the host opens a space,
    /// and in a browser tab that mirrors another tab's writes from the shared store.
    pub fn restore_doc(&mut self, key: DocKey, state: crate::DocState) {
        self.replica.restore_doc(key, state);
    }

    /// Loads the space's metadata as read back from the store (before any session).
    pub fn restore_meta(
        &mut self,
        vector: VersionVector,
        clock: crate::Stamp,
        message_seen: VersionVector,
    ) {
        self.replica.restore_meta(vector, clock, message_seen);
    }

    /// Loads the space's stable horizon and table of peers as read back from the store
    /// (before any session; see [`crate::PersistBatch::stability`]).
    pub fn restore_stability(&mut self, s: crate::replica::Stability) {
        // The collections a partial replica changed to since its creation replace the ones
        // it was created with.
        if let (Some(now), Some(_)) = (&s.collections, &self.cfg.collections) {
            self.cfg.collections = Some(now.clone());
        }
        self.replica.restore_stability(s);
    }

    /// Loads a retained channel message as read back from the store (before any session).
    pub fn restore_message(&mut self, r: Retained) {
        self.replica.restore_message(r);
    }

    /// Loads the highest offset of a retained message in the store (before any session):
    /// what an engine made [`Engine::with_store`] restores instead of its retained messages,
    /// which it reads from the store in pages when a subscriber or a peer is replayed.
    #[cfg(feature = "store")]
    pub fn restore_message_offset(&mut self, offset: u64) {
        self.replica.restore_message_offset(offset);
    }

    /// The replica itself, bypassing every gate (tests and the simulation only: hosts restore
    /// through [`Engine::restore_doc`], [`Engine::restore_meta`], [`Engine::restore_message`]).
    #[cfg(any(test, feature = "sim"))]
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    /// Whether something written is not yet cut into a batch: [`Engine::poll_persist`] has
    /// work.
    pub fn has_staged(&self) -> bool {
        self.replica.has_staged()
    }

    // ---- sessions ------------------------------------------------------------------------

    /// A connection arrived; it must open with `hello`. Returns the session's id, which the
    /// host uses for every later call about this connection (and finds in [`Transmit`]s).
    pub fn accept(&mut self, now_ms: u64) -> SessionId {
        let session = self.new_session_id();
        self.sessions
            .insert(session, Session::new(Phase::AwaitHello, now_ms));
        session
    }

    /// We opened a connection to an upstream peer; sends our `hello`. Returns the session's
    /// id, as [`Engine::accept`] does.
    pub fn connect(&mut self, now_ms: u64, token: Option<String>, name: &str) -> SessionId {
        let session = self.new_session_id();
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
            horizon: Some(self.replica.stability().horizon.clone()).filter(|h| !h.is_empty()),
            collections: self.cfg.collections.clone(),
            // A partial replica whose vector claims nothing but its own writes, and that may
            // have taken documents (its clock moved: a walk by key that did not finish, or
            // only writes of its own; `fill.rs`).
            unclaimed: (self.cfg.collections.is_some()
                && fill::claims_only(self.replica.vector(), self.replica.id())
                && self.replica.clock() != crate::Stamp::default())
            .then_some(true),
            compact: Some(true),
        };
        self.send(session, Frame::Hello(hello));
        session
    }

    /// Session ids are never reused by one engine (nor after [`Engine::restore_session`],
    /// which moves the next id past the restored one), so a late frame or close for an ended
    /// session can never reach a new one.
    fn new_session_id(&mut self) -> SessionId {
        let id = self.next_session;
        self.next_session += 1;
        id
    }

    /// The connection is gone (either side closed it, or it broke).
    pub fn close(&mut self, session: SessionId) {
        self.change_closed(session);
        if let Some(s) = self.sessions.remove(&session) {
            if matches!(s.phase, Phase::Open) {
                self.presence_dirty = true;
            }
            // A peer that dialed us is gone: its expiry counts from the last frame it sent.
            #[cfg(feature = "serve")]
            if let (Some(p), false) = (&s.peer, s.dialed) {
                if self.replica.stability().is_tracked(p.replica) {
                    self.replica.stability_mut().seen(p.replica, s.last_rx);
                }
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
        if let Some(p) = self.link_mut(session) {
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

    /// Sessions attached now (agents and peers, handshake done or not).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    // ---- persistence -----------------------------------------------------------------------

    /// The next batch to persist. Persist batches in order, then report each with
    /// [`Engine::persisted`]. Call after each round of input to group commits.
    #[must_use]
    pub fn poll_persist(&mut self) -> Option<PersistBatch> {
        self.seed_space();
        // A store read that fails ends the pass until the horizon moves again; collection
        // is never needed for correctness, so the batch goes on without it.
        // One step per round of input: a host cuts every batch of a round before it commits
        // any, so a pass must not run to its end in one round (its batches would pile up).
        #[cfg(feature = "serve")]
        if std::mem::take(&mut self.collect_due) {
            let _ = self.replica.collect_step(COLLECT_PAGES);
        }
        let mut batch = self.replica.cut()?;
        batch.requests = self.requests.take_staged();
        let gates = std::mem::take(&mut self.staged_gates);
        self.inflight_gates.push_back((batch.id, gates));
        Some(batch)
    }

    /// A store that creates a space writes its local default policy as the seed
    /// (`_config/space`), once, with the space's first batch: a connection that only reads
    /// (or never says `hello`) creates nothing on disk. "Creates" means the store's durable
    /// state has no seed yet; a seed that arrived from a peer in the same batch is a
    /// concurrent write, which `_config`'s `cloud_wins` settles the same way everywhere.
    fn seed_space(&mut self) {
        if self.seeded || !self.replica.has_staged() {
            return;
        }
        self.seeded = true;
        if !self.cfg.seed_default_policy || self.replica.has_durable_space_entry() {
            return;
        }
        let mut m = Map::new();
        m.insert(
            "default_policy".into(),
            Value::from(self.cfg.default_policy.as_str()),
        );
        let key = DocKey::new(CONFIG_COLLECTION, crate::replica::SPACE_ENTRY);
        // No wall time is known here: the seed takes the clock as it stands.
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
    /// Batches must be reported in the order they were cut ([`Engine::poll_persist`]); any
    /// other `id` is refused (`protocol`) and releases nothing.
    pub fn persisted(&mut self, id: u64) -> Result<()> {
        let released = self.replica.persisted(id)?;
        #[cfg(feature = "serve")]
        {
            self.collect_due = true;
        }
        if let Some(pos) = self.inflight_gates.iter().position(|(b, _)| *b == id) {
            let (_, gates) = self.inflight_gates.remove(pos).unwrap_or_default();
            for g in gates {
                self.release(g)?;
            }
        }
        // A change that cannot be read back is not announced; the others still are, and the
        // first such error is returned once the batch is fully released.
        let mut failed = Ok(());
        for key in released.docs {
            if let Err(e) = self.announce_doc(&key) {
                failed = failed.and(Err(e));
            }
        }
        for r in released.messages {
            self.deliver(r);
        }
        self.horizon_round();
        failed
    }

    /// Drops everything not yet persisted, as a crash does. Sessions are dropped too. For
    /// the simulation (a host that crashes simply starts a new engine from its store).
    #[cfg(any(test, feature = "sim"))]
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
        let mut t = self.next_transmit()?;
        if let Transmit::Frame {
            session,
            frame: Frame::Push(p),
        } = &mut t
        {
            p.expanded = !self.sessions.get(session).is_some_and(|s| s.compact);
        }
        Some(t)
    }

    fn next_transmit(&mut self) -> Option<Transmit> {
        if self.presence_dirty {
            self.presence_dirty = false;
            self.broadcast_presence();
        }
        if let Some(t) = self.outbox.pop_front() {
            return Some(t);
        }
        #[cfg(feature = "store")]
        if let Some(t) = self.next_replay() {
            return Some(t);
        }
        self.next_push()
    }

    /// The next message of a subscriber's replay, for the first session that has one and
    /// can be written; reads the store a page at a time. A failed read ends the session
    /// (`internal`): it reconnects and replays from its cursor.
    #[cfg(feature = "store")]
    fn next_replay(&mut self) -> Option<Transmit> {
        loop {
            let (&session, s) = self
                .sessions
                .iter_mut()
                .find(|(_, s)| !s.full && !s.closing && !s.replays.is_empty())?;
            let replay = s.replays.front_mut()?;
            if replay.page.is_empty() {
                match self.replica.replay_page(&replay.channel, replay.cursor) {
                    Ok(page) if page.is_empty() => {
                        // Caught up: from now on the channel's messages go out live.
                        s.replays.pop_front();
                        continue;
                    }
                    Ok(page) => {
                        replay.cursor = page.last().map_or(replay.cursor, |r| r.offset);
                        replay.page = page.into();
                    }
                    Err(e) => {
                        s.replays.clear();
                        s.closing = true;
                        self.send(session, Frame::error(None, &e));
                        self.outbox.push_back(Transmit::Close {
                            session,
                            code: e.code(),
                            reason: e.to_string(),
                        });
                        return self.outbox.pop_front();
                    }
                }
            }
            if let Some(r) = replay.page.pop_front() {
                return Some(Transmit::Frame {
                    session,
                    frame: Frame::Broadcast {
                        message: r.message,
                        offset: Some(r.offset),
                    },
                });
            }
        }
    }

    /// Whether `session`'s connection can take more frames now. A host whose connections
    /// have bounded outbound queues says `false` when one is full enough and `true` once it
    /// drained: while `false`, the session's replays (a `subscribe` with `from`) wait, and
    /// [`Engine::poll_transmit`] sends the rest of them after `true`. Everything else is sent
    /// as always. Sessions start writable; a host that never calls this gets every replay in
    /// one drain (still read from the store a page at a time). Feature `store`.
    #[cfg(feature = "store")]
    pub fn set_writable(&mut self, session: SessionId, writable: bool) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.full = !writable;
        }
    }

    /// Whether `session` has a replay still to send (see [`Engine::set_writable`]): a host
    /// that said `false` then waits for its connection to drain before saying `true`.
    /// Feature `store`.
    #[cfg(feature = "store")]
    pub fn has_replay(&self, session: SessionId) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(|s| !s.replays.is_empty())
    }

    /// The next event to show or act on; `None` when there is none. Events are released in
    /// the order they happened, document and message events only once durable.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- input -------------------------------------------------------------------------------

    /// A frame arrived on `session`. Errors are answered on the session (an `error` frame,
    /// and a close where the session cannot go on); they never touch stored data.
    pub fn handle_frame(&mut self, now_ms: u64, session: SessionId, frame: Frame) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.last_rx = s.last_rx.max(now_ms);
        #[cfg(feature = "serve")]
        {
            self.last_now = self.last_now.max(now_ms);
        }
        // A peer that dialed us is seen now: its expiry counts from here, stored now and
        // then (at most every eighth of the expiry), so a crash cannot make it look gone
        // for longer than it was.
        #[cfg(feature = "serve")]
        if let (Some(p), false, Some(expiry)) = (&s.peer, s.dialed, self.cfg.expiry_ms) {
            let replica = p.replica;
            let peers = &self.replica.stability().peers;
            let stale = peers
                .binary_search_by(|t| t.replica.cmp(&replica))
                .is_ok_and(|i| now_ms.saturating_sub(peers[i].seen_ms) > expiry / 8);
            if stale {
                self.replica.stability_mut().seen(replica, now_ms);
            }
        }
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        let req = frame_req(&frame);
        // A `hello` refused closes the connection, whatever the reason.
        let handshake = matches!(s.phase, Phase::AwaitHello);
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
            ) || handshake
                || self
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
    /// agent (peers cannot skip a push safely, so they are closed). `req` is the request id
    /// the bytes carry ([`crate::codec::request_id`]), so the answer names its request.
    pub fn handle_decode_error(&mut self, session: SessionId, req: Option<u64>, e: &Error) {
        self.send(session, Frame::error(req, e));
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

    fn need(&self, session: SessionId, rights: Rights) -> Result<(), Fatal> {
        let has = self
            .sessions
            .get(&session)
            .map_or(Rights::Read, |s| s.grant.rights);
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
            // Peers: sync and relay (peer.rs, presence.rs).
            Frame::Push(p) => self.on_push(now_ms, session, p),
            Frame::Ack(a) => self.on_ack(session, a),
            Frame::Pull { vector } => self.on_pull(session, vector),
            Frame::Report { floor, ceiling } => self.on_report(session, floor, ceiling),
            Frame::Horizon { horizon } => self.on_horizon(session, horizon),
            Frame::Resync { horizon } => self.on_resync(session, horizon),
            Frame::Inventory { seq, docs, last } => self.on_inventory(session, seq, docs, last),
            #[cfg(feature = "serve")]
            Frame::Replicate { collections } => self.on_replicate(session, collections),
            #[cfg(not(feature = "serve"))]
            Frame::Replicate { .. } => Err(Fatal(Error::Protocol(
                "this replica serves no replica of part of the space".into(),
            ))),
            Frame::Replicated { collections } => self.on_replicated(session, collections),
            Frame::Broadcast { message, .. } => self.on_broadcast(now_ms, session, message),
            Frame::Presence { entries } => self.on_presence(session, entries),
            // Either kind of session.
            Frame::Ping { nonce } => {
                self.send(session, Frame::Pong { nonce });
                Ok(())
            }
            Frame::Error { code, message, .. } => {
                self.on_error(session, code, message);
                Ok(())
            }
            Frame::Pong { .. } => Ok(()),
            // Agents: the verbs (request.rs).
            verb @ (Frame::Put { .. }
            | Frame::Patch { .. }
            | Frame::Delete { .. }
            | Frame::Resolve { .. }
            | Frame::SetPolicy { .. }
            | Frame::Get { .. }
            | Frame::List { .. }
            | Frame::Subscribe { .. }
            | Frame::Unsubscribe { .. }
            | Frame::Send { .. }
            | Frame::Conflicts { .. }) => {
                let (req, request) = Request::from_frame(verb)?;
                self.on_request(now_ms, session, req, request)
            }
            Frame::Hello(_) | Frame::Welcome(_) => Err(Fatal(Error::Protocol(
                "the handshake is already done".into(),
            ))),
            other @ (Frame::Doc { .. }
            | Frame::Docs { .. }
            | Frame::Change { .. }
            | Frame::ConflictList { .. }
            | Frame::Conflict { .. }) => Err(Fatal(Error::Protocol(format!(
                "`{}` is sent by servers, not to them",
                other.type_name()
            )))),
        }
    }

    /// Holds an acknowledgement until everything it vouches for is durable.
    fn gate(&mut self, g: Gated) {
        if self.replica.has_staged() {
            self.staged_gates.push(g);
        } else if let Some((_, last)) = self.inflight_gates.back_mut() {
            last.push(g);
        } else {
            // Nothing waits to be durable: released at once (an error reading a state shows
            // at the next read; the peer resyncs or is answered again).
            let _ = self.release(g);
        }
    }

    /// Sends what was held for durability.
    fn release(&mut self, g: Gated) -> Result<()> {
        match g {
            Gated::Frame(s, f) => self.send(s, f),
            Gated::Local(req, dot) => self.events.push_back(Event::Acked { req, dot }),
            Gated::Replicated(collections) => {
                self.events.push_back(Event::Replicated { collections })
            }
            #[cfg(feature = "serve")]
            Gated::States(s, docs) => self.send_collected(s, docs).map_err(|Fatal(e)| e)?,
        }
        Ok(())
    }

    /// The collections the peer on `session` replicates (`None`: all, or no such peer).
    #[cfg(feature = "serve")]
    fn link_filter(&self, session: SessionId) -> Option<Vec<String>> {
        self.link(session)?.filter.clone()
    }

    /// The link of peer session `session` (`None`: no such session, or not a peer's).
    fn link(&self, session: SessionId) -> Option<&PeerLink> {
        self.sessions.get(&session)?.peer.as_ref()
    }

    /// [`Engine::link`], to change it.
    fn link_mut(&mut self, session: SessionId) -> Option<&mut PeerLink> {
        self.sessions.get_mut(&session)?.peer.as_mut()
    }

    /// The collections the peer on `session` holds completely as far as its vector goes
    /// (`PeerLink::held`; `None`: all, or no such peer).
    fn link_held(&self, session: SessionId) -> Option<Vec<String>> {
        self.link(session)?.held.clone()
    }

    /// A walk of the store for `session` could not read: nothing yet when the host has not
    /// fetched the read (it drains again once it has), else the session is closed.
    fn read_failed(&self, session: SessionId, e: Error) -> Option<Transmit> {
        if self.replica.store_missed() {
            return None;
        }
        Some(Transmit::Close {
            session,
            code: e.code(),
            reason: e.to_string(),
        })
    }

    fn send(&mut self, session: SessionId, frame: Frame) {
        self.outbox.push_back(Transmit::Frame { session, frame });
    }

    fn announce_doc(&mut self, key: &DocKey) -> Result<()> {
        let targets: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.collections.contains_key(&key.collection)
                    && s.grant.reads(crate::request::read_scope(key))
            })
            .map(|(id, _)| *id)
            .collect();
        let event = self.cfg.doc_events.wants(&key.collection);
        if targets.is_empty() && !event {
            return Ok(());
        }
        let view = self.replica.view(key)?;
        let conflict = if view.conflict {
            self.replica.conflict(key)?
        } else {
            None
        };
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
        if event {
            self.events.push_back(Event::DocChanged(view));
            if let Some(c) = conflict {
                self.events.push_back(Event::ConflictOpened(c));
            }
        }
        Ok(())
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
                // Its replay of the channel reads this message from the store.
                #[cfg(feature = "store")]
                None if s.replays.iter().any(|p| p.channel == r.message.channel) => {}
                None if s.channels.contains_key(&r.message.channel) => {
                    out.push((*id, Some(r.offset)))
                }
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
}

/// A peer's sync position, for status displays.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStatus {
    /// The peer's replica id.
    pub replica: ReplicaId,
    /// The peer's tier.
    pub tier: Tier,
    /// What the peer has persisted of ours.
    pub acked: VersionVector,
    /// Our own writes the peer has not acknowledged yet.
    pub pending: u64,
    /// Changes (any origin) we hold durably that the peer has not persisted, as far as we
    /// know: neither acknowledged by it nor received from it.
    pub lag: u64,
    /// The session's handshake is done.
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
    fn new(phase: Phase, now_ms: u64) -> Box<Self> {
        Box::new(Session {
            phase,
            kind: SessionKind::Agent,
            name: String::new(),
            since: now_ms,
            grant: Grant::all(Rights::Read),
            peer: None,
            channels: VecMap::new(),
            collections: VecMap::new(),
            auto_push: true,
            dialed: false,
            compact: false,
            last_rx: now_ms,
            last_ping: now_ms,
            closing: false,
            #[cfg(feature = "store")]
            replays: VecDeque::new(),
            #[cfg(feature = "store")]
            full: false,
        })
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
