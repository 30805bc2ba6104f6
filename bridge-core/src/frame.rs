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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Hello {
    pub space: String,
    #[serde(default)]
    pub kind: SessionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Peers only: who they are and what they hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<VersionVector>,
    /// Highest message sequence seen per origin, so retained messages can be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<VersionVector>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub space: String,
    pub replica: ReplicaId,
    pub tier: Tier,
    pub vector: VersionVector,
    pub messages: VersionVector,
    pub session: u64,
    /// What the session's token allows here. A peer whose rights are below `admin` may
    /// introduce only its own writes (see [`crate::replica::Replica::check_introduced`]).
    /// Absent (servers before this field) means no such limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rights: Option<crate::auth::Rights>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocEntry {
    pub collection: String,
    pub id: String,
    pub state: DocState,
}

/// A batch of document states. After applying it (and every earlier push of the session),
/// the receiver holds everything the sender had up to `watermark`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Push {
    pub seq: u64,
    pub docs: Vec<DocEntry>,
    pub watermark: VersionVector,
    /// Documents still to come in this catch-up run (progress of an initial sync).
    #[serde(default)]
    pub remaining: u64,
}

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
    pub collection: String,
    pub id: String,
    /// `null` when deleted or never written.
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Stamp>,
    #[serde(default)]
    pub conflict: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictSide {
    pub dot: Dot,
    pub tier: Tier,
    pub stamp: Stamp,
    /// `null` for a delete.
    pub value: Option<Value>,
}

/// An open conflict of a `manual` collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub collection: String,
    pub id: String,
    /// The side shown until resolved (the `lww` winner).
    pub shown: Dot,
    pub sides: Vec<ConflictSide>,
    /// Top-level fields whose values differ between sides.
    pub fields: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    Hello(Hello),
    Welcome(Welcome),
    Push(Push),
    Ack(Ack),
    /// Peer: "send me what I lack against this vector" (resync on demand).
    Pull {
        vector: VersionVector,
    },
    Put {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        collection: String,
        id: String,
        value: Value,
    },
    Patch {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        collection: String,
        id: String,
        value: Value,
    },
    Delete {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        collection: String,
        id: String,
    },
    Get {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        collection: String,
        id: String,
    },
    Doc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        doc: DocView,
    },
    List {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        collection: String,
        /// Start after this document id (pagination).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    Docs {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        docs: Vec<DocView>,
        /// Pass as `after` for the next page; absent on the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// Agent: receive `broadcast` on a channel (from a cursor) or `change` for a collection.
    Subscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collection: Option<String>,
        /// Replay retained messages with an offset greater than this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
    },
    Unsubscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collection: Option<String>,
    },
    /// Agent: publish on a channel; answered by `ack` once stored.
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        channel: String,
        payload: Value,
    },
    /// A message on a channel: peer to peer, and relay to subscribed agents (with `offset`).
    Broadcast {
        message: Message,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// A document changed (to agents subscribed to its collection).
    Change {
        doc: DocView,
    },
    /// Peer: the sessions it knows of. Agent: send with no entries to ask; the answer lists
    /// everyone connected anywhere.
    Presence {
        #[serde(default)]
        entries: Vec<PresenceEntry>,
    },
    /// Agent: ask for the open conflicts (optionally of one collection).
    Conflicts {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collection: Option<String>,
    },
    ConflictList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        conflicts: Vec<Conflict>,
    },
    /// A conflict opened (to agents subscribed to its collection).
    Conflict {
        conflict: Conflict,
    },
    /// Agent: end a conflict with this value (`null` deletes), superseding every side.
    Resolve {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        collection: String,
        id: String,
        value: Option<Value>,
    },
    /// Agent: set a collection's policy (replicated as space configuration).
    SetPolicy {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        collection: String,
        policy: Policy,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        code: ErrorCode,
        message: String,
    },
    Ping {
        #[serde(default)]
        nonce: u64,
    },
    Pong {
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

    pub fn error(req: Option<u64>, e: &crate::Error) -> Frame {
        Frame::Error {
            req,
            code: e.code(),
            message: e.to_string(),
        }
    }
}
