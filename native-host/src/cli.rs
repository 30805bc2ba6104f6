//! Client subcommands: they talk to a running host over HTTP (and WebSocket for `subscribe`)
//! and print JSON, one value a line, so they compose in pipes.

use crate::config::Config;
use crate::http::request;
use bridge_core::auth::{self, Claims, Rights};
use bridge_core::codec;
use bridge_core::frame::{Frame, Hello};
use bridge_core::status::{HostStatus, LinkState, PullProgress, PushProgress, UpstreamLink};
use bridge_core::Policy;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Where the host is and who we are.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// Space (default CLOUD_PROJECT_ID, else `default`)
    #[arg(long, short = 's')]
    space: Option<String>,
    /// HTTP API base URL (default http://127.0.0.1:LOCAL_API_PORT)
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// WebSocket base URL (default ws://127.0.0.1:LOCAL_WS_PORT)
    #[arg(long, value_name = "URL")]
    ws: Option<String>,
    /// Access token (else BRIDGE_TOKEN from the environment or .env; needed by cloud hosts)
    #[arg(long)]
    token: Option<String>,
}

/// The cloud side, for `status` and `monitor`.
#[derive(clap::Args, Debug, Clone)]
pub struct CloudTarget {
    /// The cloud's HTTP API base URL (default CLOUD_API_URL; unset: the local side only)
    #[arg(long, value_name = "URL")]
    cloud_api: Option<String>,
    /// Token for the cloud (default: --token / BRIDGE_TOKEN)
    #[arg(long, value_name = "TOKEN")]
    cloud_token: Option<String>,
}

/// The cloud's side of `status` and `monitor`: its status, or why it could not be read.
pub enum CloudStatus {
    Read { api: String, status: HostStatus },
    Unreachable { api: String, error: String },
}

impl CloudStatus {
    /// As `status` prints it: the cloud's status with its `api`, or `{"api", "error"}`.
    fn to_json(&self) -> Value {
        match self {
            CloudStatus::Read { api, status } => {
                let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("api".into(), Value::from(api.as_str()));
                }
                v
            }
            CloudStatus::Unreachable { api, error } => json!({"api": api, "error": error}),
        }
    }
}

impl CloudTarget {
    /// The cloud's status, `None` without a cloud API.
    async fn status(&self, cfg: &Config, local: &Ctx) -> Option<CloudStatus> {
        let api = self
            .cloud_api
            .clone()
            .or_else(|| cfg.cloud_api_url.clone())?;
        let token = self.cloud_token.clone().or_else(|| local.token.clone());
        let c = Ctx {
            api: api.clone(),
            ws: String::new(),
            space: local.space.clone(),
            token,
        };
        Some(match c.status().await {
            Ok(status) => CloudStatus::Read { api, status },
            Err(error) => CloudStatus::Unreachable { api, error },
        })
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum ClientCmd {
    /// Replace a document with a JSON object; returns once it is durable.
    #[command(after_help = "Example:\n  sacred-bridge put notes n1 '{\"title\":\"hello\"}'")]
    Put {
        collection: String,
        id: String,
        json: String,
        #[command(flatten)]
        t: Target,
    },
    /// Merge top-level fields into a document (`null` removes a field).
    #[command(after_help = "Example:\n  sacred-bridge patch notes n1 '{\"done\":true}'")]
    Patch {
        collection: String,
        id: String,
        json: String,
        #[command(flatten)]
        t: Target,
    },
    /// Print a document.
    #[command(after_help = "Example:\n  sacred-bridge get notes n1")]
    Get {
        collection: String,
        id: String,
        #[command(flatten)]
        t: Target,
    },
    /// Delete a document (a tombstone that replicates).
    #[command(after_help = "Example:\n  sacred-bridge delete notes n1")]
    Delete {
        collection: String,
        id: String,
        #[command(flatten)]
        t: Target,
    },
    /// List a collection as NDJSON, following pages.
    #[command(after_help = "Example:\n  sacred-bridge list notes --limit 50")]
    List {
        collection: String,
        /// Start after this document id
        #[arg(long)]
        after: Option<String>,
        /// Stop after this many documents
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        t: Target,
    },
    /// Publish a JSON message on a channel.
    #[command(after_help = "Example:\n  sacred-bridge send chat '{\"text\":\"hi\"}'")]
    Send {
        channel: String,
        json: String,
        #[command(flatten)]
        t: Target,
    },
    /// Print a channel's messages as NDJSON as they arrive.
    #[command(after_help = "Example:\n  sacred-bridge subscribe chat --from 0 | jq .payload")]
    Subscribe {
        channel: String,
        /// Replay retained messages after this offset first
        #[arg(long)]
        from: Option<u64>,
        #[command(flatten)]
        t: Target,
    },
    /// Print document changes as NDJSON, following the changes cursor.
    #[command(after_help = "Example:\n  sacred-bridge watch --since '' | jq .value")]
    Watch {
        /// Start from this cursor (default: now; '' for everything)
        #[arg(long)]
        since: Option<String>,
        /// Poll interval in milliseconds
        #[arg(long, default_value_t = 500)]
        interval: u64,
        #[command(flatten)]
        t: Target,
    },
    /// List or resolve open conflicts of `manual` collections.
    #[command(subcommand)]
    Conflicts(ConflictsCmd),
    /// Set a collection's conflict policy (lww, cloud_wins, local_wins, merge, manual).
    #[command(after_help = "Example:\n  sacred-bridge policy tasks manual")]
    Policy {
        collection: String,
        #[arg(value_enum)]
        policy: PolicyArg,
        #[command(flatten)]
        t: Target,
    },
    /// Host status as JSON: counts, sessions, peers, pending uploads, lag, last successful
    /// sync per upstream link, open conflicts; with a cloud API (`--cloud-api` or
    /// CLOUD_API_URL) the cloud's status too, under `cloud`.
    #[command(
        after_help = "Example:\n  sacred-bridge status | jq '.spaces[].upstream.last_sync_age_ms'"
    )]
    Status {
        #[command(flatten)]
        t: Target,
        #[command(flatten)]
        cloud: CloudTarget,
    },
    /// Live view of the host's status (and the cloud's, with a cloud API), redrawn every
    /// second (`--once` prints it once).
    #[command(
        after_help = "Examples:\n  sacred-bridge monitor\n  sacred-bridge monitor --once --api http://127.0.0.1:3001 --cloud-api https://cloud.example"
    )]
    Monitor {
        #[command(flatten)]
        cloud: CloudTarget,
        /// Print one screen and exit (for scripts)
        #[arg(long)]
        once: bool,
        /// Refresh interval in milliseconds
        #[arg(long, default_value_t = 1000)]
        interval: u64,
        #[command(flatten)]
        t: Target,
    },
    /// Who is connected, on this host and (through its links) on the other side.
    #[command(
        after_help = "Examples:\n  sacred-bridge agents\n  sacred-bridge agents --json | jq .name"
    )]
    Agents {
        /// NDJSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        t: Target,
    },
    /// Sync the upstream link now (hybrid mode) and wait for it, with a progress bar.
    #[command(
        after_help = "Examples:\n  sacred-bridge sync --push\n  sacred-bridge sync --pull --timeout 60"
    )]
    Sync {
        /// Only push local changes up
        #[arg(long, conflicts_with = "pull")]
        push: bool,
        /// Only pull what the cloud has
        #[arg(long)]
        pull: bool,
        /// Start the sync and return without waiting for it
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this many seconds
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[command(flatten)]
        t: Target,
    },
    /// Copy the host's SQLite database to FILE (online backup, safe while the host runs),
    /// verified with `PRAGMA integrity_check`.
    #[command(
        after_help = "Examples:\n  sacred-bridge backup backups/2026-11-25.db\n  sacred-bridge backup copy.db --db local/databases/sacred-bridge.db"
    )]
    Backup {
        file: String,
        /// The database to copy (default: the one the running host reports, else LOCAL_DB_PATH)
        #[arg(long, value_name = "FILE")]
        db: Option<String>,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        t: Target,
    },
    /// Replace the host's database with a backup, after verifying it. The host must be
    /// stopped; an existing database is replaced only with --force.
    #[command(after_help = "Example:\n  sacred-bridge restore backups/2026-11-25.db --force")]
    Restore {
        file: String,
        /// The database to replace (default LOCAL_DB_PATH)
        #[arg(long, value_name = "FILE")]
        db: Option<String>,
        /// Replace an existing database
        #[arg(long)]
        force: bool,
    },
    /// Deploy the edge worker: `npx wrangler deploy` with the project's wrangler.toml
    /// (needs Node's npx, wrangler installed in the project, and CLOUDFLARE_API_TOKEN).
    #[command(
        after_help = "Examples:\n  CLOUDFLARE_API_TOKEN=... sacred-bridge deploy\n  sacred-bridge deploy --config edge/wrangler.toml -- --env staging"
    )]
    Deploy {
        /// wrangler.toml to use (default: the first found from here upwards)
        #[arg(long, value_name = "FILE")]
        config: Option<String>,
        /// More arguments for `wrangler deploy`, after `--`
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Write a space as NDJSON to stdout.
    #[command(after_help = "Example:\n  sacred-bridge export > space.ndjson")]
    Export {
        #[command(flatten)]
        t: Target,
    },
    /// Read NDJSON (as written by `export`) from a file and write it into a space, in
    /// batches (each durable when answered), with a progress bar.
    #[command(after_help = "Example:\n  sacred-bridge import space.ndjson --batch 5000")]
    Import {
        file: String,
        /// Lines per request (a batch is also cut at 4 MB)
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        #[command(flatten)]
        t: Target,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum ConflictsCmd {
    /// Print open conflicts as NDJSON.
    #[command(after_help = "Example:\n  sacred-bridge conflicts list --collection tasks")]
    List {
        #[arg(long)]
        collection: Option<String>,
        #[command(flatten)]
        t: Target,
    },
    /// Show one open conflict: each side (who wrote it, when, its value) and the fields that
    /// differ.
    #[command(
        after_help = "Examples:\n  sacred-bridge conflicts show tasks t1\n  sacred-bridge conflicts show tasks t1 --json"
    )]
    Show {
        collection: String,
        id: String,
        /// The conflict as JSON instead of text
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        t: Target,
    },
    /// Resolve a conflict with a JSON object (or `null` to delete).
    #[command(
        after_help = "Example:\n  sacred-bridge conflicts resolve tasks t1 '{\"title\":\"merged\"}'"
    )]
    Resolve {
        collection: String,
        id: String,
        json: String,
        #[command(flatten)]
        t: Target,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Mint a token for one space.
    #[command(
        after_help = "Example:\n  BRIDGE_SECRET=... sacred-bridge token create --space team --rights write --ttl 7d"
    )]
    Create {
        #[arg(long)]
        space: String,
        #[arg(long, value_enum, default_value_t = RightsArg::Write)]
        rights: RightsArg,
        /// Lifetime: seconds, or a duration: 30s, 15m, 12h, 7d, 1w, 1h30m
        #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = ttl_arg)]
        ttl: u64,
    },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// A token's lifetime in ms: `humantime` durations (`30s`, `15m`, `12h`, `7d`, `1w`,
/// `1h 30m`), or a bare number of seconds.
/// `--ttl` for clap: the lifetime in ms.
fn ttl_arg(s: &str) -> Result<u64, String> {
    parse_ttl(s).ok_or_else(|| {
        "expected seconds or a duration such as 30s, 15m, 12h, 7d, 1w or 1h30m".to_owned()
    })
}

/// `--rights`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RightsArg {
    Read,
    Write,
    Admin,
}

impl From<RightsArg> for Rights {
    fn from(r: RightsArg) -> Rights {
        match r {
            RightsArg::Read => Rights::Read,
            RightsArg::Write => Rights::Write,
            RightsArg::Admin => Rights::Admin,
        }
    }
}

/// A collection's conflict policy, as `policy` takes it.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum PolicyArg {
    #[value(alias = "last_write_wins")]
    Lww,
    CloudWins,
    LocalWins,
    Merge,
    Manual,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Policy {
        match p {
            PolicyArg::Lww => Policy::Lww,
            PolicyArg::CloudWins => Policy::CloudWins,
            PolicyArg::LocalWins => Policy::LocalWins,
            PolicyArg::Merge => Policy::Merge,
            PolicyArg::Manual => Policy::Manual,
        }
    }
}

pub fn parse_ttl(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok()?.checked_mul(1000);
    }
    u64::try_from(humantime::parse_duration(s).ok()?.as_millis()).ok()
}

pub fn token(cfg: &Config, cmd: TokenCmd) -> ExitCode {
    let TokenCmd::Create { space, rights, ttl } = cmd;
    let Some(secret) = &cfg.secret else {
        return usage("BRIDGE_SECRET is not set; tokens are signed with it (set it in the environment or .env)");
    };
    if let Err(e) = bridge_core::check_name("space", &space, false) {
        return usage(e);
    }
    let claims = Claims {
        space,
        rights: rights.into(),
        exp: crate::store::now_ms().saturating_add(ttl),
    };
    println!("{}", auth::mint(secret.as_bytes(), &claims));
    ExitCode::SUCCESS
}

struct Ctx {
    api: String,
    ws: String,
    space: String,
    token: Option<String>,
}

impl Ctx {
    fn new(cfg: &Config, t: Target) -> Ctx {
        let host = if cfg.listen.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            cfg.listen.to_string()
        };
        Ctx {
            api: t
                .api
                .unwrap_or_else(|| format!("http://{host}:{}", cfg.api_port)),
            ws: t
                .ws
                .unwrap_or_else(|| format!("ws://{host}:{}", cfg.ws_port)),
            space: t.space.unwrap_or_else(|| cfg.default_space.clone()),
            token: t.token.or_else(|| cfg.token.clone()),
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/spaces/{}/{rest}", enc(&self.space))
    }

    /// Sends a request; prints nothing; errors become a message.
    async fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Value, String> {
        let (status, bytes) = request(&self.api, method, path, body, self.token.as_deref()).await?;
        let v: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if status >= 400 {
            let msg = v["error"]["message"].as_str().unwrap_or("request failed");
            let code = v["error"]["code"].as_str().unwrap_or("error");
            return Err(format!("{msg} ({code}, HTTP {status})"));
        }
        Ok(v)
    }

    /// `GET /v1/status`, typed: a document this CLI cannot read is an error, not zeros.
    async fn status(&self) -> Result<HostStatus, String> {
        let v = self.call("GET", "/v1/status", None).await?;
        serde_json::from_value(v).map_err(|e| {
            format!(
                "the status from {} is not what this version of sacred-bridge reads ({e}); is it an older or newer host?",
                self.api
            )
        })
    }
}

/// The cursor after a page of changes: everything `cursor` covered and everything `next`
/// does, so a poll never goes back to changes already printed (whatever the host's cursor
/// names, a merge of both is never behind either).
fn advance(cursor: &str, next: &str) -> String {
    match (
        bridge_core::api::parse_cursor(cursor),
        bridge_core::api::parse_cursor(next),
    ) {
        (Ok(mut a), Ok(b)) => {
            a.join(&b);
            bridge_core::api::format_cursor(&a)
        }
        _ => next.to_owned(),
    }
}

/// What a path segment escapes: all but unreserved characters and `:`.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

/// Percent-encodes a path segment.
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

fn json_arg(what: &str, s: &str) -> Result<Vec<u8>, ExitCode> {
    match serde_json::from_str::<Value>(s) {
        Ok(v) => Ok(v.to_string().into_bytes()),
        Err(e) => Err(usage(format!("{what} is not JSON: {e}"))),
    }
}

fn print(v: &Value) {
    println!("{v}");
}

pub async fn run(cfg: &Config, cmd: ClientCmd) -> ExitCode {
    match run_inner(cfg, cmd).await {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

async fn run_inner(cfg: &Config, cmd: ClientCmd) -> Result<ExitCode, String> {
    match cmd {
        ClientCmd::Put {
            collection,
            id,
            json,
            t,
        } => write(cfg, "PUT", &collection, &id, Some(&json), t).await,
        ClientCmd::Patch {
            collection,
            id,
            json,
            t,
        } => write(cfg, "PATCH", &collection, &id, Some(&json), t).await,
        ClientCmd::Delete { collection, id, t } => {
            write(cfg, "DELETE", &collection, &id, None, t).await
        }
        ClientCmd::Get { collection, id, t } => {
            let c = Ctx::new(cfg, t);
            let v = c
                .call(
                    "GET",
                    &c.path(&format!("docs/{}/{}", enc(&collection), enc(&id))),
                    None,
                )
                .await?;
            print(&v);
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::List {
            collection,
            after,
            limit,
            t,
        } => {
            let c = Ctx::new(cfg, t);
            let mut after = after;
            let mut left = limit.unwrap_or(usize::MAX);
            while left > 0 {
                let page = left.min(1000);
                let mut p = c.path(&format!("docs/{}?limit={page}", enc(&collection)));
                if let Some(a) = &after {
                    p.push_str(&format!("&after={}", enc(a)));
                }
                let v = c.call("GET", &p, None).await?;
                let docs = v["docs"].as_array().cloned().unwrap_or_default();
                for d in &docs {
                    print(d);
                }
                left = left.saturating_sub(docs.len());
                match v["next"].as_str() {
                    Some(n) => after = Some(n.to_owned()),
                    None => break,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::Send { channel, json, t } => {
            let body = match json_arg("the message", &json) {
                Ok(b) => b,
                Err(code) => return Ok(code),
            };
            let c = Ctx::new(cfg, t);
            let v = c
                .call(
                    "POST",
                    &c.path(&format!("messages/{}", enc(&channel))),
                    Some(body),
                )
                .await?;
            print(&v);
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::Subscribe { channel, from, t } => subscribe(cfg, channel, from, t).await,
        ClientCmd::Watch { since, interval, t } => {
            let c = Ctx::new(cfg, t);
            let mut cursor = match since {
                Some(s) => s,
                None => {
                    // "From now": the host's current cursor for this space.
                    let st = c.status().await?;
                    st.space(&c.space)
                        .map(|s| s.cursor.clone())
                        .unwrap_or_default()
                }
            };
            eprintln!("watching space {} from cursor {cursor:?}", c.space);
            loop {
                let v = c
                    .call(
                        "GET",
                        &c.path(&format!("changes?since={}", enc(&cursor))),
                        None,
                    )
                    .await?;
                for ch in v["changes"].as_array().into_iter().flatten() {
                    print(ch);
                }
                if let Some(next) = v["cursor"].as_str() {
                    cursor = advance(&cursor, next);
                }
                if v["remaining"].as_u64().unwrap_or(0) == 0 {
                    tokio::time::sleep(Duration::from_millis(interval.max(10))).await;
                }
            }
        }
        ClientCmd::Conflicts(ConflictsCmd::List { collection, t }) => {
            let c = Ctx::new(cfg, t);
            let mut p = c.path("conflicts");
            if let Some(col) = collection {
                p.push_str(&format!("?collection={}", enc(&col)));
            }
            let v = c.call("GET", &p, None).await?;
            for x in v["conflicts"].as_array().into_iter().flatten() {
                print(x);
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::Conflicts(ConflictsCmd::Show {
            collection,
            id,
            json,
            t,
        }) => {
            let c = Ctx::new(cfg, t);
            let p = c.path(&format!("conflicts/{}/{}", enc(&collection), enc(&id)));
            let v = c.call("GET", &p, None).await?;
            if json {
                print(&v);
            } else {
                print!("{}", conflict_text(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::Conflicts(ConflictsCmd::Resolve {
            collection,
            id,
            json,
            t,
        }) => {
            let body = match json_arg("the resolution", &json) {
                Ok(b) => b,
                Err(code) => return Ok(code),
            };
            let c = Ctx::new(cfg, t);
            let p = c.path(&format!(
                "conflicts/{}/{}/resolve",
                enc(&collection),
                enc(&id)
            ));
            print(&c.call("POST", &p, Some(body)).await?);
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::Policy {
            collection,
            policy,
            t,
        } => {
            let c = Ctx::new(cfg, t);
            let body = json!({ "policy": Policy::from(policy).as_str() })
                .to_string()
                .into_bytes();
            let p = c.path(&format!("policies/{}", enc(&collection)));
            print(&c.call("PUT", &p, Some(body)).await?);
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::Status { t, cloud } => {
            let c = Ctx::new(cfg, t);
            let mut v = serde_json::to_value(c.status().await?).map_err(|e| e.to_string())?;
            if let (Some(cs), Some(o)) = (cloud.status(cfg, &c).await, v.as_object_mut()) {
                o.insert("cloud".into(), cs.to_json());
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::Sync {
            push,
            pull,
            no_wait,
            timeout,
            t,
        } => {
            let c = Ctx::new(cfg, t);
            sync(&c, push, pull, no_wait, Duration::from_secs(timeout)).await
        }
        ClientCmd::Monitor {
            cloud,
            once,
            interval,
            t,
        } => {
            let c = Ctx::new(cfg, t);
            loop {
                let st = c.status().await?;
                let mut screen = crate::monitor::render(&st, &c.api);
                if let Some(cs) = cloud.status(cfg, &c).await {
                    screen.push_str(&crate::monitor::render_cloud(&cs));
                }
                if !once {
                    screen.push_str("(refreshing; Ctrl-C to stop)\n");
                }
                if once {
                    print!("{screen}");
                    return Ok(ExitCode::SUCCESS);
                }
                // Home, draw, clear what is left of the old screen.
                print!("\x1b[H{}\x1b[J", screen.replace('\n', "\x1b[K\n"));
                let _ = std::io::Write::flush(&mut std::io::stdout());
                tokio::time::sleep(Duration::from_millis(interval.max(100))).await;
            }
        }
        ClientCmd::Agents { json, t } => {
            let c = Ctx::new(cfg, t);
            let v = c.call("GET", &c.path("presence"), None).await?;
            let agents = v["agents"].as_array().cloned().unwrap_or_default();
            if json {
                for a in &agents {
                    print(a);
                }
            } else {
                let st = c.status().await?;
                let here = st
                    .space(&c.space)
                    .map(|s| s.replica.to_string())
                    .unwrap_or_default();
                print!(
                    "{}",
                    crate::monitor::agents_table(&agents, &here, st.now_ms)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::Backup { file, db, force, t } => {
            let db = match db {
                Some(d) => std::path::PathBuf::from(d),
                None => {
                    // The running host knows its database; else the configured one.
                    let c = Ctx::new(cfg, t);
                    match c.status().await.map(|s| s.host) {
                        Ok(Some(host)) => std::path::PathBuf::from(host.db),
                        _ => cfg.db_path.clone(),
                    }
                }
            };
            crate::ops::backup(&db, std::path::Path::new(&file), force)
        }
        ClientCmd::Restore { file, db, force } => {
            let db = db.map_or_else(|| cfg.db_path.clone(), std::path::PathBuf::from);
            crate::ops::restore(std::path::Path::new(&file), &db, force)
        }
        ClientCmd::Deploy { config, extra } => {
            crate::ops::deploy(config.as_deref().map(std::path::Path::new), &extra)
        }
        ClientCmd::Export { t } => {
            let c = Ctx::new(cfg, t);
            let (status, body) =
                request(&c.api, "GET", &c.path("export"), None, c.token.as_deref()).await?;
            if status >= 400 {
                return Err(String::from_utf8_lossy(&body).into_owned());
            }
            print!("{}", String::from_utf8_lossy(&body));
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::Import { file, batch, t } => {
            let body = std::fs::read(&file).map_err(|e| format!("cannot read {file}: {e}"))?;
            let c = Ctx::new(cfg, t);
            import(&c, &file, &body, batch.max(1)).await
        }
    }
}

/// A conflict for people: the sides, who wrote each and when, and the fields that differ.
fn conflict_text(v: &Value) -> String {
    let mut o = format!(
        "conflict on {}/{}: {} sides; fields that differ: {}\n",
        v["collection"].as_str().unwrap_or("?"),
        v["id"].as_str().unwrap_or("?"),
        v["sides"].as_array().map_or(0, Vec::len),
        v["fields"]
            .as_array()
            .map(|f| f
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    for side in v["sides"].as_array().into_iter().flatten() {
        let shown = if side["dot"] == v["shown"] {
            "  (shown until resolved)"
        } else {
            ""
        };
        o.push_str(&format!(
            "- written by replica {} ({} side), write #{}, stamp {}{shown}\n  {}\n",
            side["dot"]["replica"].as_str().unwrap_or("?"),
            side["tier"].as_str().unwrap_or("?"),
            side["dot"]["counter"],
            side["stamp"],
            side["value"]
        ));
    }
    o.push_str(&format!(
        "resolve with: sacred-bridge conflicts resolve {} {} '<json>'\n",
        v["collection"].as_str().unwrap_or("?"),
        v["id"].as_str().unwrap_or("?")
    ));
    o
}

/// Every upstream link in a status answer, summed: `POST /v1/sync` syncs them all. Spaces
/// that are not linked (no token for the cloud) have nothing to wait for.
#[derive(Debug, serde::Serialize)]
struct LinksTotal {
    up: bool,
    pending: u64,
    lag: u64,
    push: PushProgress,
    pull: PullProgress,
    last_sync_age_ms: Option<u64>,
}

impl LinksTotal {
    fn of(status: &HostStatus) -> Option<LinksTotal> {
        let links: Vec<&UpstreamLink> = status
            .spaces
            .iter()
            .filter_map(|s| s.upstream.as_ref())
            .filter(|u| u.state != LinkState::NotLinked)
            .collect();
        if links.is_empty() {
            return None;
        }
        let sum = |f: &dyn Fn(&UpstreamLink) -> u64| -> u64 { links.iter().map(|l| f(l)).sum() };
        Some(LinksTotal {
            up: links.iter().all(|l| l.up),
            // A link that never came up has no count yet: nothing known pending.
            pending: sum(&|l| l.pending.unwrap_or(0)),
            lag: sum(&|l| l.lag.unwrap_or(0)),
            push: PushProgress {
                sent: sum(&|l| l.push.sent),
                remaining: sum(&|l| l.push.remaining),
            },
            pull: PullProgress {
                received: sum(&|l| l.pull.received),
                remaining: sum(&|l| l.pull.remaining),
                last_ms: links.iter().map(|l| l.pull.last_ms).max().unwrap_or(0),
            },
            last_sync_age_ms: links.iter().filter_map(|l| l.last_sync_age_ms).max(),
        })
    }
}

/// `sync`: asks the host to sync, then follows the link's progress until done.
async fn sync(
    c: &Ctx,
    push: bool,
    pull: bool,
    no_wait: bool,
    timeout: Duration,
) -> Result<ExitCode, String> {
    let dir = match (push, pull) {
        (true, _) => "?direction=push",
        (_, true) => "?direction=pull",
        _ => "",
    };
    let (push, pull) = (push || !pull, pull || !push);
    let asked = c.status().await?.now_ms;
    // With no upstream link up the host answers 404 `not_found`, which `call` turns into
    // the error this command exits 1 with.
    let v = c.call("POST", &format!("/v1/sync{dir}"), None).await?;
    print(&v);
    if no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut up = crate::progress::Progress::new("push");
    let mut down = crate::progress::Progress::new("pull");
    let mut push_done = !push;
    let mut pull_done = !pull;
    let mut quiet_since = tokio::time::Instant::now();
    let mut last_pull = 0;
    loop {
        let st = c.status().await?;
        let Some(link) = LinksTotal::of(&st) else {
            return Err("the host has no upstream link".into());
        };
        if !link.up {
            return Err("the upstream link went down; the sync resumes when it comes back (`sacred-bridge monitor` shows it)".into());
        }
        if !push_done {
            let PushProgress { sent, remaining } = link.push;
            up.update(sent, sent + remaining, "docs");
            // Done when the cloud has acknowledged every write made here. (`lag` also counts
            // changes that came from the cloud itself, which it never acknowledges back.)
            push_done = link.pending == 0;
            if push_done {
                up.finish();
            }
        }
        if !pull_done {
            let got = link.pull.received;
            let remaining = link.pull.remaining;
            let last = link.pull.last_ms;
            if got > 0 {
                down.update(got, got + remaining, "docs");
            }
            if last != last_pull {
                last_pull = last;
                quiet_since = tokio::time::Instant::now();
            }
            // Done when the cloud's catch-up ended, or when nothing came for a second
            // (the cloud had nothing we lack).
            pull_done =
                (last >= asked && remaining == 0) || quiet_since.elapsed() > Duration::from_secs(1);
            if pull_done {
                down.finish();
            }
        }
        if push_done && pull_done {
            eprintln!(
                "synced; last successful sync {}",
                crate::monitor::age(link.last_sync_age_ms)
            );
            return Ok(ExitCode::SUCCESS);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the sync did not finish within {} s (it goes on in the host); link: {}",
                timeout.as_secs(),
                serde_json::to_string(&link).unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `import`: the file's lines in batches of `batch` lines (or 4 MB), one request each, so a
/// large import neither holds the host to one huge transaction nor shows nothing for minutes.
async fn import(c: &Ctx, file: &str, body: &[u8], batch: usize) -> Result<ExitCode, String> {
    const MAX_BATCH_BYTES: usize = 4 << 20;
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let total = lines.len() as u64;
    let mut bar = crate::progress::Progress::new("import");
    let (mut done, mut imported) = (0u64, 0u64);
    let mut chunk: Vec<u8> = Vec::new();
    let mut in_chunk = 0u64;
    for (i, line) in lines.iter().enumerate() {
        chunk.extend_from_slice(line);
        chunk.push(b'\n');
        in_chunk += 1;
        if in_chunk < batch as u64 && chunk.len() < MAX_BATCH_BYTES && i + 1 < lines.len() {
            continue;
        }
        let v = c
            .call("POST", &c.path("import"), Some(std::mem::take(&mut chunk)))
            .await
            .map_err(|e| {
                format!(
                    "{e}; lines {}..{} of {file} were not imported (the {done} before them are)",
                    done + 1,
                    done + in_chunk
                )
            })?;
        imported += v["imported"].as_u64().unwrap_or(0);
        done += in_chunk;
        in_chunk = 0;
        bar.update(done, total, "docs");
    }
    bar.finish();
    print(&json!({ "imported": imported }));
    Ok(ExitCode::SUCCESS)
}

async fn write(
    cfg: &Config,
    method: &str,
    collection: &str,
    id: &str,
    json: Option<&str>,
    t: Target,
) -> Result<ExitCode, String> {
    let body = match json {
        Some(j) => match json_arg("the document", j) {
            Ok(b) => Some(b),
            Err(code) => return Ok(code),
        },
        None => None,
    };
    let c = Ctx::new(cfg, t);
    let p = c.path(&format!("docs/{}/{}", enc(collection), enc(id)));
    print(&c.call(method, &p, body).await?);
    Ok(ExitCode::SUCCESS)
}

async fn subscribe(
    cfg: &Config,
    channel: String,
    from: Option<u64>,
    t: Target,
) -> Result<ExitCode, String> {
    let c = Ctx::new(cfg, t);
    let url = format!(
        "{}/v1/spaces/{}/ws",
        c.ws.trim_end_matches('/'),
        enc(&c.space)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}. Is `sacred-bridge serve` running?"))?;
    let hello = Frame::Hello(Hello {
        space: c.space.clone(),
        name: Some("cli-subscribe".into()),
        token: c.token.clone(),
        ..Hello::default()
    });
    let sub = Frame::Subscribe {
        req: Some(1),
        channel: Some(channel),
        collection: None,
        from,
    };
    for f in [hello, sub] {
        ws.send(Message::Text(codec::encode_json(&f).into()))
            .await
            .map_err(|e| format!("sending to {url} failed: {e}"))?;
    }
    while let Some(msg) = ws.next().await {
        let msg = msg.map_err(|e| format!("connection to {url} failed: {e}"))?;
        let Message::Text(text) = msg else {
            if let Message::Close(f) = msg {
                return Err(format!(
                    "the host closed the connection: {}",
                    f.map(|f| f.reason.to_string()).unwrap_or_default()
                ));
            }
            continue;
        };
        // A frame this CLI cannot decode (a newer host's) is not for it: skip it.
        match codec::decode_json(text.as_bytes()) {
            Ok(Frame::Broadcast { message, offset }) => {
                let mut m = serde_json::to_value(&message).unwrap_or(Value::Null);
                if let Some(obj) = m.as_object_mut() {
                    obj.insert("offset".into(), offset.map_or(Value::Null, Value::from));
                }
                print(&m);
            }
            Ok(Frame::Error { code, message, .. }) => {
                return Err(format!("{message} ({})", code.as_str()))
            }
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Some(90_000));
        assert_eq!(parse_ttl("15m"), Some(900_000));
        assert_eq!(parse_ttl("7d"), Some(604_800_000));
        assert_eq!(parse_ttl("1w"), Some(604_800_000));
        assert_eq!(parse_ttl("1h 30m"), Some(5_400_000));
        assert_eq!(parse_ttl("1h30m"), Some(5_400_000));
        assert_eq!(parse_ttl("1x"), None);
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl(""), None);
    }
}
