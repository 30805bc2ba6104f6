//! One request type for everything an agent, the host's HTTP API or a browser tab asks of a
//! space.
//!
//! Three transports decode into a [`Request`]: a WebSocket verb frame
//! ([`Request::from_frame`]), an HTTP request (`crate::api::parse`) and a write a follower
//! tab forwards to the leader (the verb frame again, in the binary encoding). One engine
//! entry point runs it: [`crate::Engine::request`] for the host's own callers, the frame path
//! for a session. Both check the caller's rights against [`Request::needs`] (per collection:
//! `_config` needs `admin`), every limit with [`Request::check`], and execute it in
//! `engine/request.rs`. The answer is a [`Reply`]: the engine turns it into frames for a
//! session ([`Reply::into_frames`]), the HTTP layer into JSON.
//!
//! [`key`] holds the idempotency keys that make a forwarded call safe to run twice.

pub mod key;

pub use key::{DoneRequest, RequestKey, REMEMBERED_REQUESTS};

use crate::auth::Rights;
use crate::doc::WriteOp;
use crate::frame::{Ack, Conflict, DocView, Frame};
use crate::message::PresenceEntry;
use crate::message::Retained;
use crate::replica::CONFIG_COLLECTION;
use crate::{check_name, DocKey, Dot, Error, MessageId, Policy, Replica, Result};
use serde_json::{Map, Value};

/// The collection whose read right opens document `key`: its own, except for a collection's
/// configuration (`_config/collection:<name>`, its policy), which opens with `<name>`.
pub fn read_scope(key: &DocKey) -> &str {
    match key.id.strip_prefix("collection:") {
        Some(c) if key.collection == CONFIG_COLLECTION => c,
        _ => &key.collection,
    }
}

/// Default and largest page of `list` (WebSocket and HTTP alike).
pub const LIST_LIMIT: (usize, u64) = (100, 1000);
#[cfg(feature = "http")]
/// Documents per page of [`Request::Export`].
pub const EXPORT_PAGE: usize = 1000;
/// Default and largest page of the HTTP changes feed.
pub const CHANGES_LIMIT: (usize, u64) = (1000, 10_000);

/// What is asked of a space.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `put`, `patch` or `delete` of one document.
    Write {
        /// The document written.
        key: DocKey,
        /// What is written.
        op: WriteOp,
    },
    /// Ends an open conflict with `value` (`None` deletes the document).
    Resolve {
        /// The document in conflict; without an open conflict the request is refused
        /// ([`Error::NoConflict`]).
        key: DocKey,
        /// The value that supersedes every side.
        value: Option<Map<String, Value>>,
    },
    /// Sets a collection's policy (a write to `_config/collection:NAME`).
    SetPolicy {
        /// The collection, not reserved.
        collection: String,
        /// The new policy.
        policy: Policy,
    },
    /// Publishes a message on a channel.
    Send {
        /// The channel.
        channel: String,
        /// Any JSON value, at most [`crate::limits::MAX_MESSAGE_BYTES`].
        payload: Value,
    },
    /// Writes many documents (`None` deletes); answered once all are durable.
    Import(Vec<ImportLine>),
    /// One document (absent ones have no value).
    Get {
        /// The document read.
        key: DocKey,
    },
    /// A page of a collection, after the document id `after`.
    List {
        /// The collection listed.
        collection: String,
        /// Start after this document id (the `next` of the previous page).
        after: Option<String>,
        /// Documents per page, already checked ([`page_limit`] with [`LIST_LIMIT`]).
        limit: usize,
    },
    /// Open conflicts, of one collection or all.
    Conflicts {
        /// Only this collection's; every collection's when `None`.
        collection: Option<String>,
    },
    /// One document's open conflict.
    Conflict {
        /// The document; [`Error::NoConflict`] when it has no open conflict.
        key: DocKey,
    },
    /// Documents changed since a cursor (`_config` left out). (Feature `http`: only the HTTP
    /// API and MCP ask for it.)
    #[cfg(feature = "http")]
    Changes {
        /// The cursor: the `cursor` of the previous page, empty for everything.
        since: crate::VersionVector,
        /// Most changes to return ([`page_limit`] with [`CHANGES_LIMIT`]).
        limit: usize,
    },
    /// Who is connected, here and through peers.
    Presence,
    /// (Feature `http`: only the HTTP API asks for it.)
    #[cfg(feature = "http")]
    /// A page of every live document, configuration included, in key order: at most
    /// [`EXPORT_PAGE`] after `after`. A host streams a whole export page by page.
    Export {
        /// The key the previous page ended with (`None`: from the start).
        after: Option<DocKey>,
    },
    /// Session only: `broadcast` on a channel (replayed after `from`), `change` for a
    /// collection.
    Subscribe {
        /// The channel whose messages to receive.
        channel: Option<String>,
        /// The collection whose changes (and conflicts) to receive.
        collection: Option<String>,
        /// Replay the retained messages with an offset above this first.
        from: Option<u64>,
    },
    /// Session only: stops what `subscribe` started.
    Unsubscribe {
        /// The channel to leave.
        channel: Option<String>,
        /// The collection to leave.
        collection: Option<String>,
    },
}

/// One document of an import: its key and value (`None` deletes).
pub type ImportLine = (DocKey, Option<Map<String, Value>>);

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A document write (write, resolve): its dot, and the document written (the HTTP API
    /// answers with how it shows).
    Written {
        /// The write's dot.
        dot: Dot,
        /// The document written.
        key: DocKey,
    },
    /// A policy was set.
    PolicySet {
        /// The dot of the `_config` write that set it.
        dot: Dot,
        /// The collection.
        collection: String,
        /// Its policy from now on.
        policy: Policy,
    },
    /// A message was stored.
    Sent {
        /// The message's id (this replica and its message sequence).
        id: MessageId,
        /// The channel it was published on.
        channel: String,
    },
    /// An import was stored.
    Imported {
        /// How many lines were written (deletes included).
        count: usize,
    },
    /// A request with an idempotency key that was already done: its first result.
    Again {
        /// The first run's dot (`None` for a message).
        dot: Option<Dot>,
    },
    /// [`Request::Get`]: the document as it reads now (staged writes included).
    Doc(DocView),
    /// [`Request::List`]: one page, in id order.
    Docs {
        /// The page's documents.
        docs: Vec<DocView>,
        /// The last id of the page when more follow (pass as `after`); `None` on the last.
        next: Option<String>,
    },
    /// [`Request::Conflicts`]: the open conflicts.
    Conflicts(Vec<Conflict>),
    /// [`Request::Conflict`]: the document's open conflict.
    Conflict(Conflict),
    /// [`Request::Changes`]: one page of the changes feed.
    #[cfg(feature = "http")]
    Changes {
        /// The documents changed, each once, as they read now (deleted: `value` `None`).
        changes: Vec<DocView>,
        /// The cursor to pass as `since` next time: covers `since` and this page.
        cursor: crate::VersionVector,
        /// Changes still to come after this page (ask again at once while above 0).
        remaining: u64,
    },
    /// [`Request::Presence`]: every session known here and through peers.
    Presence(Vec<PresenceEntry>),
    #[cfg(feature = "http")]
    /// [`Request::Export`]: a page of live (not deleted) documents and their values, in key
    /// order.
    Export {
        /// The page.
        docs: Vec<(DocKey, Value)>,
        /// Where the next page starts (`None`: this was the last).
        next: Option<DocKey>,
    },
    /// Subscribed; the retained messages to replay after the acknowledgement.
    Subscribed {
        /// The retained messages of the channel with an offset above `from`, in offset order
        /// (empty without `from`).
        replay: Vec<Retained>,
    },
    /// [`Request::Unsubscribe`] is done.
    Unsubscribed,
}

/// How the engine answers a request from the host's own API.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// A read: the reply now.
    Now(Reply),
    /// A write: give `reply` once the engine reports `Event::Acked { req }` (durable).
    WhenDurable {
        /// The number [`crate::Event::Acked`] will carry.
        req: u64,
        /// The answer to give then.
        reply: Reply,
    },
}

impl Request {
    /// The verb frame's request number and request. A value that must be an object and is
    /// not is refused here (`bad_request`); a frame that is no request, as `protocol`.
    pub fn from_frame(f: Frame) -> Result<(Option<u64>, Request)> {
        let doc = |req, collection, id, op: Result<WriteOp>| {
            op.map(|op| {
                (
                    req,
                    Request::Write {
                        key: DocKey::new(collection, id),
                        op,
                    },
                )
            })
        };
        match f {
            Frame::Put {
                req,
                collection,
                id,
                value,
            } => doc(req, collection, id, object(value).map(WriteOp::Put)),
            Frame::Patch {
                req,
                collection,
                id,
                value,
            } => doc(req, collection, id, object(value).map(WriteOp::Patch)),
            Frame::Delete {
                req,
                collection,
                id,
            } => doc(req, collection, id, Ok(WriteOp::Delete)),
            Frame::Resolve {
                req,
                collection,
                id,
                value,
            } => optional_object(value).map(|value| {
                let key = DocKey::new(collection, id);
                (req, Request::Resolve { key, value })
            }),
            Frame::SetPolicy {
                req,
                collection,
                policy,
            } => Ok((req, Request::SetPolicy { collection, policy })),
            Frame::Send {
                req,
                channel,
                payload,
            } => Ok((req, Request::Send { channel, payload })),
            Frame::Get {
                req,
                collection,
                id,
            } => Ok((
                req,
                Request::Get {
                    key: DocKey::new(collection, id),
                },
            )),
            Frame::List {
                req,
                collection,
                after,
                limit,
            } => page_limit(limit.map(u64::from), LIST_LIMIT).map(|limit| {
                let list = Request::List {
                    collection,
                    after,
                    limit,
                };
                (req, list)
            }),
            Frame::Conflicts { req, collection } => Ok((req, Request::Conflicts { collection })),
            Frame::Subscribe {
                req,
                channel,
                collection,
                from,
            } => Ok((
                req,
                Request::Subscribe {
                    channel,
                    collection,
                    from,
                },
            )),
            Frame::Unsubscribe {
                req,
                channel,
                collection,
            } => Ok((
                req,
                Request::Unsubscribe {
                    channel,
                    collection,
                },
            )),
            other => Err(Error::Protocol(format!(
                "`{}` is not a request",
                other.type_name()
            ))),
        }
    }

    /// The rights the caller needs, and the collection they are needed on (`None`: the
    /// token's own rights, [`crate::auth::Grant::rights`]). Reading needs `read`, writing
    /// `write`, and the space's configuration (`_config`, a policy) and imports (which may
    /// carry it) need `admin`. A read spanning collections (every conflict, the changes
    /// feed, an export) needs `read` and its answer holds only collections the grant reads.
    pub fn needs(&self) -> (Rights, Option<&str>) {
        match self {
            // A collection's policy changes what its readers see: `admin` on that
            // collection too (and `admin` in the token's own rights, `writes_config`).
            Request::Write { key, .. } | Request::Resolve { key, .. }
                if key.collection == CONFIG_COLLECTION =>
            {
                (Rights::Admin, Some(read_scope(key)))
            }
            Request::SetPolicy { collection, .. } => (Rights::Admin, Some(collection)),
            Request::Import(_) => (Rights::Admin, None),
            Request::Write { key, .. } | Request::Resolve { key, .. } => {
                (Rights::Write, Some(&key.collection))
            }
            Request::Send { .. } => (Rights::Write, None),
            Request::Get { key } | Request::Conflict { key } => {
                (Rights::Read, Some(read_scope(key)))
            }
            Request::List { collection, .. } => (Rights::Read, Some(collection)),
            Request::Conflicts { collection } | Request::Subscribe { collection, .. } => {
                (Rights::Read, collection.as_deref())
            }
            Request::Presence | Request::Unsubscribe { .. } => (Rights::Read, None),
            #[cfg(feature = "http")]
            Request::Export { .. } | Request::Changes { .. } => (Rights::Read, None),
        }
    }

    /// Whether it writes the space's configuration (`_config`: a policy, an import), which
    /// needs `admin` in the token's own rights as well as on the collection concerned.
    pub fn writes_config(&self) -> bool {
        match self {
            Request::Write { key, .. } | Request::Resolve { key, .. } => {
                key.collection == CONFIG_COLLECTION
            }
            Request::SetPolicy { .. } | Request::Import(_) => true,
            _ => false,
        }
    }

    /// Whether it changes the space (a follower tab forwards these to the leader).
    pub fn is_write(&self) -> bool {
        self.needs().0 > Rights::Read
    }

    /// Every check that needs no more than a read of `replica` (names, nesting, sizes — see
    /// [`crate::limits`]), so a follower tab refuses a call at once, with the error the
    /// leader would give. Whether a conflict is open is the engine's to say.
    pub fn check(&self, replica: &Replica) -> Result<()> {
        use crate::limits::{check_doc, check_doc_write};
        match self {
            Request::Write { key, op } => {
                let current = match op {
                    WriteOp::Patch(_) => replica.get(key)?,
                    _ => None,
                };
                check_doc_write(key, op, current.as_ref())
            }
            Request::Resolve { key, value } => check_doc(key, value.as_ref(), 0),
            Request::Import(lines) => lines
                .iter()
                .try_for_each(|(key, value)| check_doc(key, value.as_ref(), 0)),
            Request::SetPolicy { collection, .. } => check_name("collection", collection, false),
            Request::Send { channel, payload } => crate::limits::check_message(channel, payload),
            Request::Subscribe {
                channel,
                collection,
                ..
            } => {
                if let Some(ch) = channel {
                    check_name("channel", ch, false)?;
                }
                match collection {
                    Some(c) => check_name("collection", c, true),
                    None => Ok(()),
                }
            }
            // The other reads take any name: what does not exist is simply not found.
            _ => Ok(()),
        }
    }
}

impl Reply {
    /// The frames that answer request `req` on a session, in order.
    pub fn into_frames(self, req: Option<u64>) -> Vec<Frame> {
        let ack = |dot| {
            Frame::Ack(Ack {
                req,
                dot,
                seq: None,
            })
        };
        match self {
            Reply::Written { dot, .. } | Reply::PolicySet { dot, .. } => vec![ack(Some(dot))],
            Reply::Again { dot } => vec![ack(dot)],
            Reply::Sent { .. } | Reply::Imported { .. } | Reply::Unsubscribed => vec![ack(None)],
            Reply::Doc(doc) => vec![Frame::Doc { req, doc }],
            Reply::Docs { docs, next } => vec![Frame::Docs { req, docs, next }],
            Reply::Conflicts(conflicts) => vec![Frame::ConflictList { req, conflicts }],
            Reply::Subscribed { replay } => std::iter::once(ack(None))
                .chain(replay.into_iter().map(|r| Frame::Broadcast {
                    message: r.message,
                    offset: Some(r.offset),
                }))
                .collect(),
            // Reached only through the host's API (no frame asks for them).
            Reply::Conflict(conflict) => vec![Frame::Conflict { conflict }],
            Reply::Presence(_) => vec![ack(None)],
            #[cfg(feature = "http")]
            Reply::Export { .. } | Reply::Changes { .. } => vec![ack(None)],
        }
    }

    /// The dot a write made, as an idempotent request remembers it.
    pub fn dot(&self) -> Option<Dot> {
        match self {
            Reply::Written { dot, .. } | Reply::PolicySet { dot, .. } => Some(*dot),
            Reply::Again { dot } => *dot,
            _ => None,
        }
    }
}

/// A document value: a JSON object, else `bad_request` naming what it was.
pub fn object(v: Value) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(Error::NotAnObject(kind(&other))),
    }
}

/// A document value or `null` (resolve: `null` deletes).
pub fn optional_object(v: Option<Value>) -> Result<Option<Map<String, Value>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => object(v).map(Some),
    }
}

/// What a JSON value is, for error messages ("got a string").
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A page size: `default` when not given, else 1 to `max`, else `bad_request` (the same
/// answer over WebSocket and HTTP; nothing is clamped silently).
pub fn page_limit(n: Option<u64>, (default, max): (usize, u64)) -> Result<usize> {
    match n {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(got) => Err(Error::BadLimit { got, max }),
    }
}
