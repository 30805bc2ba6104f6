//! [`Error`]: everything a `sacred-bridge` command, or a host starting up, can fail with, in
//! one enum grouped by where the failure comes from. Each message tells the reader what to
//! do; [`Error::exit_code`] is the one place that turns an error into the process's exit code.
//!
//! `Tokens::for_space` keeps returning its reason as a string: that reason is not an error
//! of a command but a line of `status` (why a space is not linked).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A path as messages show it.
fn shown(p: &Path) -> std::path::Display<'_> {
    p.display()
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- The connection to a host (HTTP API, WebSocket) ---
    #[error("{base}: only http:// URLs are supported")]
    NotHttp { base: String },
    #[error("cannot reach the host at {base}: {source}. Is `sacred-bridge serve` running?")]
    Unreachable {
        base: String,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {base} failed: {source}")]
    Handshake { base: String, source: hyper::Error },
    #[error("bad request: {0}")]
    BadRequest(#[source] hyper::http::Error),
    #[error("request to {base} failed: {source}")]
    RequestFailed { base: String, source: hyper::Error },
    #[error("reading the answer from {base} failed: {source}")]
    AnswerUnread { base: String, source: hyper::Error },
    /// An error answer from the bridge's API: its message, its code and the HTTP status.
    #[error("{message} ({code}, HTTP {status})")]
    Refused {
        message: String,
        code: String,
        status: u16,
    },
    /// An error answer passed through as the host wrote it (`export`).
    #[error("{0}")]
    RefusedRaw(String),
    #[error("the status from {api} is not what this version of sacred-bridge reads ({source}); is it an older or newer host?")]
    UnreadableStatus {
        api: String,
        source: serde_json::Error,
    },
    #[error("cannot connect to {url}: {source}. Is `sacred-bridge serve` running?")]
    WsUnreachable {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("sending to {url} failed: {source}")]
    WsSend {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("connection to {url} failed: {source}")]
    WsLost {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("the host closed the connection: {reason}")]
    Closed { reason: String },
    /// An `error` frame from the host.
    #[error("{message} ({code})")]
    Rejected { code: String, message: String },

    // --- `sync` ---
    #[error("the host has no upstream link")]
    NoLink,
    #[error("the upstream link went down; the sync resumes when it comes back (`sacred-bridge monitor` shows it)")]
    LinkDown,
    #[error("the sync did not finish within {secs} s (it goes on in the host); link: {link}")]
    SyncTimeout { secs: u64, link: String },

    // --- Files and databases: `backup`, `restore`, `import`, `export` ---
    #[error("{} already exists; pass --force to overwrite it", shown(.0))]
    BackupExists(PathBuf),
    #[error("{} does not exist (or is not a file)", shown(.0))]
    NoSuchFile(PathBuf),
    #[error("{action} {}: {source}", shown(.path))]
    Sqlite {
        action: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{action} {}: {source}", shown(.path))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a usable Sacred Bridge database: {why}", shown(.path))]
    NotADatabase { path: PathBuf, why: String },
    /// The database `backup` should copy could not be opened.
    #[error("{0}. Which database? Pass --db, or run the command where the host's .env is")]
    WhichDatabase(Box<Error>),
    #[error("cannot restore: {0}")]
    CannotRestore(Box<Error>),
    #[error("refusing to restore: {0}")]
    BadBackup(Box<Error>),
    #[error("refusing to restore: a sacred-bridge host (pid {pid}, {api}) is serving {}. Stop it first, then run restore again", shown(.db))]
    HostServing { pid: u32, api: String, db: PathBuf },
    #[error("refusing to restore: {} already exists. Pass --force to replace it (take a backup of it first: sacred-bridge backup FILE --db {})", shown(.0), shown(.0))]
    RestoreOver(PathBuf),
    #[error("restore failed; {} is unchanged: {source}", shown(.db))]
    RestoreFailed { db: PathBuf, source: Box<Error> },
    #[error("cannot read {file}: {source}")]
    ImportUnread {
        file: String,
        source: std::io::Error,
    },
    #[error(
        "{source}; lines {first}..{last} of {file} were not imported (the {done} before them are)"
    )]
    ImportStopped {
        source: Box<Error>,
        first: u64,
        last: u64,
        file: String,
        done: u64,
    },

    // --- `deploy` ---
    #[error("--config {}: no such file", shown(.0))]
    NoWranglerConfig(PathBuf),
    #[error("no working directory: {0}")]
    NoWorkingDir(#[source] std::io::Error),
    #[error("no wrangler.toml in {} or any folder above it; run deploy from the project, or pass --config PATH", shown(.0))]
    NoWranglerToml(PathBuf),
    #[error("cannot deploy with {}:\n  - {}", shown(.toml), .missing.join("\n  - "))]
    DeployNotReady { toml: PathBuf, missing: Vec<String> },
    #[error("cannot run npx: {0}")]
    Npx(#[source] std::io::Error),
    #[error("wrangler deploy failed ({0})")]
    DeployFailed(std::process::ExitStatus),

    // --- `serve` starting up ---
    #[error("cloud mode requires tokens: set BRIDGE_SECRET (in the environment or .env) to a long random string, then mint tokens with `sacred-bridge token create`")]
    CloudNeedsSecret,
    #[error("hybrid mode needs CLOUD_WS_URL (e.g. ws://cloud.example:3333) for the upstream link")]
    HybridNeedsUrl,
    #[error("cannot open the database {}: {source}", shown(.path))]
    OpenStore {
        path: PathBuf,
        source: crate::store::StoreError,
    },
    #[error("cannot restore from {}: {source}", shown(.path))]
    LoadStore {
        path: PathBuf,
        source: crate::store::StoreError,
    },
    #[error("cannot listen for {what} on {addr}: {source} ({var})")]
    Listen {
        what: &'static str,
        addr: std::net::SocketAddr,
        var: &'static str,
        source: std::io::Error,
    },
    #[error("cannot start the hub thread: {0}")]
    HubThread(#[source] std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("MCP session failed to start: {0}")]
    McpStart(#[source] Box<rmcp::service::ServerInitializeError>),
    #[error("MCP session failed: {0}")]
    McpSession(#[source] tokio::task::JoinError),

    // --- The tokens of hybrid links (`BRIDGE_TOKEN`, `CLOUD_TOKENS_FILE`) ---
    #[error("BRIDGE_TOKEN is not a token (expected `sb1.…` from `sacred-bridge token create`)")]
    BadBridgeToken,
    #[error("cannot read CLOUD_TOKENS_FILE {}: {source}", shown(.path))]
    TokensFileUnread {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CLOUD_TOKENS_FILE {} line {line}: not a token; expected one token a line, from `sacred-bridge token create --space SPACE --rights admin`", shown(.path))]
    BadTokenLine { path: PathBuf, line: usize },

    // --- Bad arguments and configuration (exit code 2) ---
    #[error("{what} is not JSON: {source}")]
    NotJson {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{0:?} is not a Sacred Bridge resource: expected {s}{{space}}/{{collection}} or {s}{{space}}/{{collection}}/{{id}}, each part percent-encoded", s = crate::mcp::uri::SCHEME)]
    BadUri(String),
    #[error(
        "BRIDGE_SECRET is not set; tokens are signed with it (set it in the environment or .env)"
    )]
    NoSecret,
    #[error("{0}")]
    BadName(#[source] bridge_core::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Error {
    /// The process's exit code for this error: 2 for a command line or configuration the
    /// user has to fix before trying again, 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::NotJson { .. }
            | Error::BadUri(_)
            | Error::NoSecret
            | Error::BadName(_)
            | Error::Config(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }

    /// Prints `error: {self}` on stderr and returns the exit code.
    pub fn report(&self) -> ExitCode {
        eprintln!("error: {self}");
        self.exit_code()
    }
}
