//! One error type for the core, each variant with a stable wire code.
//!
//! Hosts map [`ErrorCode`] to HTTP statuses and WebSocket `error` frames in one place; the
//! codes are part of the protocol (docs/protocol.md) and never change meaning.

use serde::{Deserialize, Serialize};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    #[error("frame is not valid: {0}")]
    Malformed(String),
    #[error("frame is {size} bytes; the limit is {max} bytes. Split the write into smaller ones")]
    TooLarge { size: usize, max: usize },
    #[error("protocol version {got} is not supported; this peer speaks version {supported}")]
    UnsupportedVersion { got: u32, supported: u32 },
    #[error("the document would take up to {size} bytes; the limit is {max} bytes. Split it into several documents")]
    DocTooLarge { size: usize, max: usize },
    #[error("the message payload takes up to {size} bytes; the limit is {max} bytes. Send a smaller payload (or a document id to fetch)")]
    MessageTooLarge { size: usize, max: usize },
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    #[error("a stamp is {ahead_ms} ms ahead of this replica's clock; at most {max_ms} ms is accepted. Check the sender's system clock")]
    ClockSkew { ahead_ms: u64, max_ms: u64 },
    #[error("`{0}` is not a policy; use one of lww, cloud_wins, local_wins, merge, manual")]
    BadPolicy(String),
    #[error("`{0}` is not a replica id (1 to 16 hex digits)")]
    BadReplicaId(String),
    #[error("limit {got} is out of range: ask for 1 to {max}")]
    BadLimit { got: u64, max: u64 },
    #[error("a document must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("{what} `{name}` is not valid: {why}")]
    BadName {
        what: &'static str,
        name: String,
        why: &'static str,
    },
    #[error("the first frame on a connection must be `hello`")]
    HelloRequired,
    #[error("this connection is for space `{expected}`, not `{got}`")]
    WrongSpace { expected: String, got: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("this token allows {has}, and the request needs {needs}")]
    Forbidden {
        has: &'static str,
        needs: &'static str,
    },
    #[error("document {collection}/{id} has no open conflict")]
    NoConflict { collection: String, id: String },
    #[error("`{0}` is only for peers (replicas); agents use put/patch/delete")]
    PeerOnly(&'static str),
    #[error("`{0}` is for WebSocket sessions: it says what the session receives")]
    SessionOnly(&'static str),
    #[error("the peer sent a change out of order: {0}")]
    Protocol(String),
    #[error("{0}")]
    Timeout(String),
    #[error("the store could not be read: {0}")]
    Store(String),
    #[error("this session may introduce only writes of its own replica {own}: {what}. Writes of other replicas reach this server through a session whose token is `admin` (a relay)")]
    RelayForbidden { own: crate::ReplicaId, what: String },
}

/// Stable codes for [`Error`], as they appear in `error` frames and HTTP bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    Malformed,
    TooLarge,
    UnsupportedVersion,
    UnknownType,
    ClockSkew,
    BadPolicy,
    BadRequest,
    HelloRequired,
    WrongSpace,
    Unauthorized,
    Forbidden,
    NotFound,
    Protocol,
    Internal,
    Timeout,
    RelayForbidden,
}

impl ErrorCode {
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
            Error::Forbidden { .. } => ErrorCode::Forbidden,
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
