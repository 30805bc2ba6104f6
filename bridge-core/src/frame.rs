//! Protocol frames, as values. Encodings live in [`crate::codec`]; docs/protocol.md is the
//! reader's guide to every frame.
//!
//! Two kinds of sessions speak this protocol:
//! - **agents** (any program, any language): `put` / `patch` / `delete` / `get` / `list`,
//!   `subscribe`, `send`, `conflicts`, `resolve`, answered with `ack`, `doc`, `docs`,
//!   `change`, `broadcast`, ... A `websocat` is enough.
//! - **peers** (replicas: native hosts, browsers, Durable Objects) exchange whole document
//!   states with `push` (acknowledged by `ack` only once the receiver has persisted them),
//!   and relay `broadcast` and `presence`.

use crate::doc::DocState;
use crate::message::{Message, PresenceEntry};
use crate::{Dot, ErrorCode, Policy, ReplicaId, Stamp, Tier, VersionVector};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame accepted in either encoding.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Lives with the other identities ([`crate::ids`]); re-exported where frames name it.
pub use crate::ids::SessionKind;

/// The first frame on every connection, from the side that opened it: which space it wants,
/// who it is and, for peers, what it already holds. Answered by [`Welcome`], or by an `error`
/// and a close (`wrong_space`, `unauthorized`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Hello {
    /// The space this connection is for; a server that serves another space answers
    /// `wrong_space` and closes.
    pub space: String,
    /// Agent (the default when absent) or peer.
    #[serde(default)]
    pub kind: SessionKind,
    /// Display name, shown in presence (`agent-N` / `peer-N`, N the session, when absent).
    /// Dialing peers send their configured name or their replica id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An `sb1.` token ([`crate::auth`]) for this space. Required by a server that has a
    /// secret; ignored by one that has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Peers only: who they are and what they hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaId>,
    /// Peers only (required with `replica`): the peer's tier, which `cloud_wins` / `local_wins` break ties by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Peers only: the vector of the changes the peer holds; the other side pushes what is
    /// beyond it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<VersionVector>,
    /// Highest message sequence seen per origin, so retained messages can be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<VersionVector>,
    /// Peers only: the stable horizon the peer has adopted (absent: none). The server
    /// reads the peer's pushes against it (docs/protocol.md, section 5, Collection): the
    /// peer may have collected documents below it that the server still holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<VersionVector>,
    /// Peers only: the collections the peer replicates (patterns: a name, or a prefix ending
    /// in `*`); absent: the whole space. The server sends it only documents of these
    /// (docs/protocol.md, section 5, "Partial replication").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<String>>,
    /// Peers with `collections` only: `true` when the peer holds documents its `vector` does
    /// not claim (an initial sync by key that did not finish). A server that has collected
    /// resyncs it before anything else (docs/protocol.md, section 5, "Partial replication").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclaimed: Option<bool>,
    /// Peers only: `true` when the peer reads the compact binary `push` (tag 33); absent: it
    /// reads only the expanded one (tag 3), as builds before the compact form did
    /// (docs/protocol.md, section 8). Last in the binary `hello`, where an older peer's
    /// `hello` ends before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact: Option<bool>,
}

/// The server's answer to a good [`Hello`]: the handshake is done and the session is open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The space, as named in the `hello`.
    pub space: String,
    /// The server's replica id.
    pub replica: ReplicaId,
    /// The server's tier.
    pub tier: Tier,
    /// What the server holds durably; a dialing peer pushes what is beyond it. A claim on the
    /// dialer's own writes beyond what it made is not believed.
    pub vector: VersionVector,
    /// Highest message sequence the server has seen per origin.
    pub messages: VersionVector,
    /// The session's number on that server (the [`crate::SessionId`] it appears under in
    /// presence).
    pub session: u64,
    /// What the session's token allows here. A peer whose rights are below `admin` may
    /// introduce only its own writes (see [`crate::replica::Replica::check_introduced`]).
    /// Absent (servers before this field) means no such limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rights: Option<crate::auth::Rights>,
    /// Peers only: the peer must resync before anything else (docs/protocol.md, section 5,
    /// "Resync"): the server's horizon, below which the peer lists what it holds
    /// (`inventory`). Absent: no resync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync: Option<VersionVector>,
    /// Peers only: `true` when the server reads the compact binary `push` (tag 33), as
    /// [`Hello::compact`]; last in the binary `welcome`, where an older server's ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact: Option<bool>,
}

/// One document of an `inventory`: its address and the live dots the sender holds of it
/// below the horizon of the `resync` it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// The collection the document lives in.
    pub collection: String,
    /// The document id inside the collection.
    pub id: String,
    /// Its siblings' dots below the horizon, in dot order.
    pub dots: Vec<Dot>,
}

/// One document of a [`Push`]: its address and whole state (every sibling and the causal
/// context), which the receiver merges into its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocEntry {
    /// The collection the document lives in.
    pub collection: String,
    /// The document id inside the collection.
    pub id: String,
    /// The whole replicated state, not a diff: merging it twice changes nothing.
    pub state: DocState,
}

/// A batch of document states. After applying it (and every earlier push of the session),
/// the receiver holds everything the sender had up to `watermark`. Two pushes are equal
/// when they say the same, whichever binary form they are written in (`expanded`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Push {
    /// The push's number in its session: 1 for the first, one more for each after. The receiver
    /// acknowledges it with [`Ack::seq`] once the push is durable.
    pub seq: u64,
    /// The documents, at most [`crate::EngineConfig::batch_docs`] of them and about
    /// [`crate::engine::PUSH_BYTES`] of state.
    pub docs: Vec<DocEntry>,
    /// The sender's vector that the receiver holds after this push and the earlier ones.
    pub watermark: VersionVector,
    /// Documents still to come in this catch-up run (progress of an initial sync).
    #[serde(default)]
    pub remaining: u64,
    /// Written in the expanded binary form (tag 3), for a peer that does not read the
    /// compact one ([`Hello::compact`]); a binary push read in that form says so. Not part
    /// of the JSON form, and no part of what the push means.
    #[serde(skip)]
    pub expanded: bool,
}

impl PartialEq for Push {
    fn eq(&self, other: &Push) -> bool {
        self.seq == other.seq
            && self.docs == other.docs
            && self.watermark == other.watermark
            && self.remaining == other.remaining
    }
}

/// Acknowledgement: of an agent's write (`req`, `dot`), sent only once the write is durable,
/// or of a peer's push (`seq`), sent only once the push is persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Ack {
    /// The agent request this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// The peer push this acknowledges (persisted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The write's dot, for agent writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dot: Option<Dot>,
}

/// A document as an agent sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocView {
    /// The collection of the document.
    pub collection: String,
    /// The document id.
    pub id: String,
    /// `null` when deleted or never written.
    pub value: Option<Value>,
    /// Hybrid-clock stamp of the write shown; absent for a document never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Stamp>,
    /// A `manual` collection holds an open conflict on this document; the value shown is the
    /// `lww` winner until it is resolved.
    #[serde(default)]
    pub conflict: bool,
}

/// One of the concurrent versions of a document in conflict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictSide {
    /// The write that made this version.
    pub dot: Dot,
    /// The tier of the replica that made it.
    pub tier: Tier,
    /// Its hybrid-clock stamp (what `lww` compares).
    pub stamp: Stamp,
    /// `null` for a delete.
    pub value: Option<Value>,
}

/// An open conflict of a `manual` collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The collection of the document.
    pub collection: String,
    /// The document id.
    pub id: String,
    /// The side shown until resolved (the `lww` winner).
    pub shown: Dot,
    /// Every concurrent version, the shown one among them.
    pub sides: Vec<ConflictSide>,
    /// Top-level fields whose values differ between sides.
    pub fields: Vec<String>,
}

/// Every frame of the protocol, tagged by `type` in JSON (snake case, see
/// [`Frame::type_name`]). Which side sends which is in the module documentation and in
/// docs/protocol.md; an agent's request may carry `req`, and its answer (`ack`, `doc`, `docs`,
/// `conflict_list` or `error`) carries the same `req`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// Opens every connection ([`Hello`]).
    Hello(Hello),
    /// The server's answer to `hello` ([`Welcome`]).
    Welcome(Welcome),
    /// Peer: a batch of document states ([`Push`]).
    Push(Push),
    /// Answer to an agent's write or a peer's push, sent once durable ([`Ack`]).
    Ack(Ack),
    /// Peer: "send me what I lack against this vector" (resync on demand).
    Pull {
        /// What the asking peer holds; the other side pushes everything beyond it.
        vector: VersionVector,
    },
    /// Peer, from the side that dialed to its server: what the dialer's part of the sync
    /// tree holds (`floor`: the meet of its own durable vector and its own peers' floors) and
    /// has written (`ceiling`: the join of its own vector and its peers' ceilings), from which
    /// the root of the tree computes the stable horizon (ARCHITECTURE.md, "The stable
    /// horizon"). Sent after `welcome` and whenever either changes; never answered.
    Report {
        /// Every write below it is durable at every replica of the sender's part of the tree.
        floor: VersionVector,
        /// Every write made in the sender's part of the tree so far is below it.
        ceiling: VersionVector,
    },
    /// Peer, from a server to a peer that dialed it, right after `welcome`: the peer holds
    /// part of what is below the server's horizon but not all of it, and the server has
    /// collected deleted documents (docs/protocol.md, section 5, "Resync"). The peer answers
    /// with `inventory` frames of its live dots below `horizon`; the server sends it no
    /// document until the last.
    Resync {
        /// The server's horizon when the resync began.
        horizon: VersionVector,
    },
    /// Peer, from a peer that got `resync` to its server: a page of the documents it holds
    /// with live dots below the resync's horizon. Answered by `ack` with its `seq`, after a
    /// `push` of the server's state of each document that holds one of those dots no more.
    Inventory {
        /// Numbered with the sender's pushes on the session (the `ack` names it).
        seq: u64,
        /// The documents, each with its dots below the horizon.
        docs: Vec<InventoryEntry>,
        /// The last page: the peer holds nothing more below the horizon.
        last: bool,
    },
    /// Peer, from a partial replica to the server it dialed: replicate `collections` from now
    /// on (docs/protocol.md, section 5, "Changing what a replica holds"). The server sends
    /// the documents of the collections it adds, then `replicated`.
    Replicate {
        /// Every collection pattern the replica replicates from now on.
        collections: Vec<String>,
    },
    /// Peer, from a server to a partial replica that sent `replicate`: it is in effect, and
    /// every document of the collections it added was sent before this frame.
    Replicated {
        /// The collections of the `replicate` it answers.
        collections: Vec<String>,
    },
    /// Peer, from a server to a peer that dialed it: the space's stable horizon as far as the
    /// server knows it. Sent after `welcome` and whenever it rises; never answered.
    Horizon {
        /// Every write below it has reached every replica the space tracks, and so has every
        /// write concurrent with it.
        horizon: VersionVector,
    },
    /// Agent: replace a document with `value`, a JSON object (a `null` field is kept as a
    /// value). Answered by `ack` once durable.
    Put {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The collection to write in.
        collection: String,
        /// The document id.
        id: String,
        /// The new document, a JSON object; anything else is `bad_request`.
        value: Value,
    },
    /// Agent: JSON merge patch on top-level fields (`null` removes a field). Answered by `ack`
    /// once durable.
    Patch {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The collection to write in.
        collection: String,
        /// The document id.
        id: String,
        /// The fields to set (`null` removes one), a JSON object.
        value: Value,
    },
    /// Agent: delete a document (a tombstone that replicates). Answered by `ack` once durable.
    Delete {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The collection of the document.
        collection: String,
        /// The document id.
        id: String,
    },
    /// Agent: read one document, including writes not yet durable. Answered by `doc`.
    Get {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The collection of the document.
        collection: String,
        /// The document id.
        id: String,
    },
    /// Answer to `get`: the document as it reads now.
    Doc {
        /// The `req` of the `get` this answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The document (`value` `null` when deleted or never written).
        doc: DocView,
    },
    /// Agent: one page of a collection's visible documents, in id order. Answered by `docs`.
    List {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The collection to list.
        collection: String,
        /// Start after this document id (pagination).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Documents per page, 1 to 1000 (100 when absent); anything else is `bad_request`, never
        /// clamped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Answer to `list`: one page.
    Docs {
        /// The `req` of the `list` this answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The page's documents, in id order.
        docs: Vec<DocView>,
        /// Pass as `after` for the next page; absent on the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// Agent: receive `broadcast` on a channel (from a cursor) or `change` for a collection.
    Subscribe {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The channel whose messages to receive as `broadcast`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// The collection whose durable changes to receive as `change` (and, if `manual`, its
        /// conflicts as `conflict`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collection: Option<String>,
        /// Replay retained messages with an offset greater than this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
    },
    /// Agent: stop receiving a channel's messages or a collection's changes.
    Unsubscribe {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The channel to leave.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// The collection to leave.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collection: Option<String>,
    },
    /// Agent: publish on a channel; answered by `ack` once stored.
    Send {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The channel to publish on.
        channel: String,
        /// Any JSON value, within [`crate::limits::check_message`]'s size limit.
        payload: Value,
    },
    /// A message on a channel: peer to peer, and relay to subscribed agents (with `offset`).
    Broadcast {
        /// The message, with its id (origin and sequence) and stamp.
        message: Message,
        /// To agents: the receiving server's retention offset of the message, to pass as `from` to
        /// resume. Absent between peers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// A document changed (to agents subscribed to its collection).
    Change {
        /// The document as it reads now that the change is durable.
        doc: DocView,
    },
    /// Peer: the sessions it knows of. Agent: send with no entries to ask; the answer lists
    /// everyone connected anywhere.
    Presence {
        /// The sessions the sender knows of (empty: a question, from an agent).
        #[serde(default)]
        entries: Vec<PresenceEntry>,
    },
    /// Agent: ask for the open conflicts (optionally of one collection).
    Conflicts {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// Only this collection's conflicts; all collections when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collection: Option<String>,
    },
    /// Answer to `conflicts`: the open conflicts.
    ConflictList {
        /// The `req` of the `conflicts` this answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The open conflicts.
        conflicts: Vec<Conflict>,
    },
    /// A conflict opened (to agents subscribed to its collection).
    Conflict {
        /// The conflict, with every side.
        conflict: Conflict,
    },
    /// Agent: end a conflict with this value (`null` deletes), superseding every side.
    Resolve {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The collection of the document in conflict.
        collection: String,
        /// The document id.
        id: String,
        /// The value that ends the conflict: a JSON object, or `null` to delete the document.
        value: Option<Value>,
    },
    /// Agent: set a collection's policy (replicated as space configuration).
    SetPolicy {
        /// The request id the answer carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The collection whose policy to set; needs `admin`.
        collection: String,
        /// The new policy, for writes from now on.
        policy: Policy,
    },
    /// A request failed, or the session is refused (then a close follows).
    Error {
        /// The `req` of the request that failed; absent when it could not be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The stable code ([`ErrorCode`]).
        code: ErrorCode,
        /// A human-readable explanation ([`crate::Error`]'s text).
        message: String,
    },
    /// Keep-alive: answered at once by `pong` with the same nonce. Dialing peers send it after
    /// [`crate::EngineConfig::heartbeat_ms`] of silence.
    Ping {
        /// Any number; the `pong` echoes it.
        #[serde(default)]
        nonce: u64,
    },
    /// Answer to `ping`.
    Pong {
        /// The nonce of the `ping` this answers.
        #[serde(default)]
        nonce: u64,
    },
}

impl Frame {
    /// The `type` tag of this frame as it appears in JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "hello",
            Frame::Welcome(_) => "welcome",
            Frame::Push(_) => "push",
            Frame::Ack(_) => "ack",
            Frame::Pull { .. } => "pull",
            Frame::Report { .. } => "report",
            Frame::Horizon { .. } => "horizon",
            Frame::Resync { .. } => "resync",
            Frame::Inventory { .. } => "inventory",
            Frame::Replicate { .. } => "replicate",
            Frame::Replicated { .. } => "replicated",
            Frame::Put { .. } => "put",
            Frame::Patch { .. } => "patch",
            Frame::Delete { .. } => "delete",
            Frame::Get { .. } => "get",
            Frame::Doc { .. } => "doc",
            Frame::List { .. } => "list",
            Frame::Docs { .. } => "docs",
            Frame::Subscribe { .. } => "subscribe",
            Frame::Unsubscribe { .. } => "unsubscribe",
            Frame::Send { .. } => "send",
            Frame::Broadcast { .. } => "broadcast",
            Frame::Change { .. } => "change",
            Frame::Presence { .. } => "presence",
            Frame::Conflicts { .. } => "conflicts",
            Frame::ConflictList { .. } => "conflict_list",
            Frame::Conflict { .. } => "conflict",
            Frame::Resolve { .. } => "resolve",
            Frame::SetPolicy { .. } => "set_policy",
            Frame::Error { .. } => "error",
            Frame::Ping { .. } => "ping",
            Frame::Pong { .. } => "pong",
        }
    }

    /// The `error` frame that answers request `req` with `e`: its code and its message.
    pub fn error(req: Option<u64>, e: &crate::Error) -> Frame {
        Frame::Error {
            req,
            code: e.code(),
            message: e.to_string(),
        }
    }
}
