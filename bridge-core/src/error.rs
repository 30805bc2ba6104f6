//! One error type for the core, each variant with a stable wire code.
//!
//! Hosts map [`ErrorCode`] to HTTP statuses and WebSocket `error` frames in one place; the
//! codes are part of the protocol (docs/protocol.md) and never change meaning.

use serde::{Deserialize, Serialize};

/// The core's result type: [`Error`] unless another error type is named.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the core refuses, with a message meant for the person reading it (it says what
/// to do). [`Error::code`] gives the stable [`ErrorCode`] the wire carries; several variants
/// share one code (all three size limits are `too_large`). No error leaves stored data
/// changed: whatever is refused is refused before anything is written.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Bytes that do not decode to a frame (not JSON, not an object, a missing or mistyped
    /// field, a bad binary encoding), or a value a decoder cannot take. Says what and where.
    #[error("frame is not valid: {0}")]
    Malformed(String),
    /// A frame over [`crate::frame::MAX_FRAME_BYTES`], refused before it is parsed.
    #[error("frame is {size} bytes; the limit is {max} bytes. Split the write into smaller ones")]
    TooLarge {
        /// The frame's size, in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// A frame's `v` (or binary version byte) is not [`crate::PROTOCOL_VERSION`].
    #[error("protocol version {got} is not supported; this peer speaks version {supported}")]
    UnsupportedVersion {
        /// The version the frame claims.
        got: u32,
        /// The version this build speaks.
        supported: u32,
    },
    /// A write would leave a document larger than [`crate::codec::MAX_DOC_BYTES`] (a bound
    /// on its JSON size with every concurrent version, so that a push can carry it).
    #[error("the document would take up to {size} bytes; the limit is {max} bytes. Split it into several documents")]
    DocTooLarge {
        /// The bound on the document's size, in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// A channel message's payload is larger than [`crate::limits::MAX_MESSAGE_BYTES`].
    #[error("the message payload takes up to {size} bytes; the limit is {max} bytes. Send a smaller payload (or a document id to fetch)")]
    MessageTooLarge {
        /// The bound on the payload's size, in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// A frame whose `type` (or binary tag) this build does not know; the string names it.
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    /// A stamp from the other side is further ahead of this replica's clock than the skew
    /// bound allows ([`crate::clock`]); the session is closed and nothing of it is stored.
    #[error("a stamp is {ahead_ms} ms ahead of this replica's clock; at most {max_ms} ms is accepted. Check the sender's system clock")]
    ClockSkew {
        /// How far ahead the stamp's wall time is, in ms.
        ahead_ms: u64,
        /// The bound ([`crate::EngineConfig::max_skew_ms`]), in ms.
        max_ms: u64,
    },
    /// A policy name that is not one of the five ([`crate::Policy`]); holds the name given.
    #[error("`{0}` is not a policy; use one of lww, cloud_wins, local_wins, merge, manual")]
    BadPolicy(String),
    /// Text that is not a replica id (1 to 16 hex digits); holds the text.
    #[error("`{0}` is not a replica id (1 to 16 hex digits)")]
    BadReplicaId(String),
    /// A page size outside 1..=`max` ([`crate::request::page_limit`]); never clamped.
    #[error("limit {got} is out of range: ask for 1 to {max}")]
    BadLimit {
        /// The limit asked for.
        got: u64,
        /// The largest limit allowed.
        max: u64,
    },
    /// A document value that is not a JSON object; holds what it is instead ("an array").
    #[error("a document must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// A space, collection, document id or channel name refused by [`check_name`].
    #[error("{what} `{name}` is not valid: {why}")]
    BadName {
        /// What kind of name ("collection", "channel", ...).
        what: &'static str,
        /// The name, cut to its first 64 characters.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The first frame on a connection was not `hello`; the connection is closed.
    #[error("the first frame on a connection must be `hello`")]
    HelloRequired,
    /// A `hello` or `welcome` names another space than this engine's; the connection is closed.
    #[error("this connection is for space `{expected}`, not `{got}`")]
    WrongSpace {
        /// The space this connection or server is for.
        expected: String,
        /// The space that was named.
        got: String,
    },
    /// No token where one is required, or a token that does not verify (malformed, wrong
    /// signature, another space, expired); the text says which.
    #[error("{0}")]
    Unauthorized(String),
    /// The token verified, but its rights are below what the request needs.
    #[error("this token allows {has}, and the request needs {needs}")]
    Forbidden {
        /// The session's rights ([`crate::auth::Rights::as_str`]).
        has: &'static str,
        /// The rights the request needs.
        needs: &'static str,
    },
    /// The token verified, but it gives no right on the collection the request names, or a
    /// lower one than it needs (a token scoped to collections; `forbidden`).
    #[error("this token allows {has} on collection `{collection}`, and the request needs {needs}")]
    ForbiddenCollection {
        /// The collection (its first 64 characters).
        collection: String,
        /// The token's rights there ([`crate::auth::Rights::as_str`]), `nothing` when none.
        has: &'static str,
        /// The rights the request needs.
        needs: &'static str,
    },
    /// `resolve` on a document that has no open conflict (`not_found`).
    #[error("document {collection}/{id} has no open conflict")]
    NoConflict {
        /// The document's collection.
        collection: String,
        /// The document's id.
        id: String,
    },
    /// An agent sent a frame only peers may send (`push`, `broadcast`); holds its type.
    #[error("`{0}` is only for peers (replicas); agents use put/patch/delete")]
    PeerOnly(&'static str),
    /// A request that only makes sense on a WebSocket session (`subscribe`, `unsubscribe`)
    /// came through a host's API; holds the verb.
    #[error("`{0}` is for WebSocket sessions: it says what the session receives")]
    SessionOnly(&'static str),
    /// The other side broke the protocol: a frame out of its phase (`welcome` expected, a
    /// second `hello`, a server-only frame sent to a server), a document state that
    /// contradicts itself (a sibling outside its own context), a peer with this store's own
    /// replica id; the session is closed. Also the host's own mistake of reporting a batch
    /// persisted out of order ([`crate::Engine::persisted`]).
    #[error("the peer sent a change out of order: {0}")]
    Protocol(String),
    /// A handshake that took longer than [`crate::EngineConfig::hello_timeout_ms`], or a peer
    /// silent for [`crate::engine::SILENT_HEARTBEATS`] heartbeats; the session is closed.
    #[error("{0}")]
    Timeout(String),
    /// The replica's store could not be read (see [`crate::replica::DocStore`]): the
    /// request fails with `internal` and nothing is written.
    #[error("the store could not be read: {0}")]
    Store(String),
    /// A peer session with rights below `admin` sent a write (or message) of another replica
    /// than its own, or claimed to hold more than it may; the session is closed and nothing
    /// of the push is stored.
    #[error("this session may introduce only writes of its own replica {own}: {what}. Writes of other replicas reach this server through a session whose token is `admin` (a relay)")]
    RelayForbidden {
        /// The replica the session may introduce writes of.
        own: crate::ReplicaId,
        /// What it sent beyond that.
        what: String,
    },
}

/// Stable codes for [`Error`], as they appear in `error` frames and HTTP bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// `malformed`: [`Error::Malformed`]. HTTP 400.
    Malformed,
    /// `too_large`: a frame, document or message over its limit. HTTP 413, close 1009.
    TooLarge,
    /// `unsupported_version`: [`Error::UnsupportedVersion`]. HTTP 400.
    UnsupportedVersion,
    /// `unknown_type`: [`Error::UnknownType`]. HTTP 400.
    UnknownType,
    /// `clock_skew`: [`Error::ClockSkew`]; the session is closed. HTTP 400.
    ClockSkew,
    /// `bad_policy`: [`Error::BadPolicy`]. HTTP 400.
    BadPolicy,
    /// `bad_request`: a name, value or limit that is not acceptable, or a verb on the wrong
    /// kind of session. HTTP 400.
    BadRequest,
    /// `hello_required`: [`Error::HelloRequired`]; the connection is closed. HTTP 400.
    HelloRequired,
    /// `wrong_space`: [`Error::WrongSpace`]. HTTP 403, close 1008.
    WrongSpace,
    /// `unauthorized`: [`Error::Unauthorized`]. HTTP 401, close 1008.
    Unauthorized,
    /// `forbidden`: [`Error::Forbidden`], [`Error::ForbiddenCollection`]; an agent's session
    /// stays open. HTTP 403.
    Forbidden,
    /// `not_found`: no such conflict, route or resource. HTTP 404.
    NotFound,
    /// `protocol`: [`Error::Protocol`]; the session is closed. HTTP 400, close 1002.
    Protocol,
    /// `internal`: the host failed (its store, its shutdown); never made by the core. HTTP
    /// 500, close 1011.
    Internal,
    /// `timeout`: [`Error::Timeout`]. HTTP 400, close 1001.
    Timeout,
    /// `relay_forbidden`: [`Error::RelayForbidden`]. HTTP 403, close 1008.
    RelayForbidden,
}

impl ErrorCode {
    /// The code as it appears on the wire (`"too_large"`), the same as its serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::ClockSkew => "clock_skew",
            ErrorCode::BadPolicy => "bad_policy",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::WrongSpace => "wrong_space",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Protocol => "protocol",
            ErrorCode::Internal => "internal",
            ErrorCode::Timeout => "timeout",
            ErrorCode::RelayForbidden => "relay_forbidden",
        }
    }

    /// The HTTP status a host answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::TooLarge => 413,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::WrongSpace | ErrorCode::RelayForbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Internal => 500,
            _ => 400,
        }
    }

    /// The WebSocket close code (RFC 6455) a host closes a session with for this error:
    /// 1008 policy (auth), 1009 too big, 1011 server error, 1002 protocol otherwise.
    pub fn close_code(self) -> u16 {
        match self {
            ErrorCode::Unauthorized
            | ErrorCode::Forbidden
            | ErrorCode::WrongSpace
            | ErrorCode::RelayForbidden => 1008,
            ErrorCode::Timeout => 1001,
            ErrorCode::TooLarge => 1009,
            ErrorCode::Internal => 1011,
            _ => 1002,
        }
    }
}

impl Error {
    /// The stable code this error is sent with (in `error` frames, HTTP bodies, closes).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Malformed(_) => ErrorCode::Malformed,
            Error::TooLarge { .. } | Error::DocTooLarge { .. } | Error::MessageTooLarge { .. } => {
                ErrorCode::TooLarge
            }
            Error::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Error::UnknownType(_) => ErrorCode::UnknownType,
            Error::ClockSkew { .. } => ErrorCode::ClockSkew,
            Error::BadPolicy(_) => ErrorCode::BadPolicy,
            Error::BadReplicaId(_) | Error::NotAnObject(_) | Error::BadName { .. } => {
                ErrorCode::BadRequest
            }
            Error::PeerOnly(_) | Error::SessionOnly(_) | Error::BadLimit { .. } => {
                ErrorCode::BadRequest
            }
            Error::HelloRequired => ErrorCode::HelloRequired,
            Error::WrongSpace { .. } => ErrorCode::WrongSpace,
            Error::Unauthorized(_) => ErrorCode::Unauthorized,
            Error::Forbidden { .. } | Error::ForbiddenCollection { .. } => ErrorCode::Forbidden,
            Error::NoConflict { .. } => ErrorCode::NotFound,
            Error::Protocol(_) => ErrorCode::Protocol,
            Error::Timeout(_) => ErrorCode::Timeout,
            Error::RelayForbidden { .. } => ErrorCode::RelayForbidden,
            Error::Store(_) => ErrorCode::Internal,
        }
    }
}

/// Checks a space, collection, document id or channel name: 1..=256 bytes, no control
/// characters. Names starting with `_` are reserved for the bridge (e.g. `_config`).
pub fn check_name(what: &'static str, name: &str, allow_reserved: bool) -> Result<()> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 256 {
        Some("it is longer than 256 bytes")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else if !allow_reserved && name.starts_with('_') {
        Some("names starting with `_` are reserved")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::BadName {
            what,
            name: name.chars().take(64).collect(),
            why,
        }),
        None => Ok(()),
    }
}
