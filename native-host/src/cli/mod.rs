//! Client subcommands: they talk to a running host over HTTP (and WebSocket for `subscribe`)
//! and print JSON, one value a line, so they compose in pipes.
//!
//! [`ClientCmd`] is the command table (in the order `--help` lists it); each command's code
//! lives with its peers:
//!
//! | module | commands |
//! | --- | --- |
//! | [`documents`] | `put`, `patch`, `delete`, `get`, `list` |
//! | [`messages`] | `send`, `subscribe`, `watch` |
//! | [`conflicts`] | `conflicts list\|show\|resolve`, `policy` |
//! | [`status`] | `status`, `monitor`, `agents` |
//! | [`sync`] | `sync` |
//! | [`ops`] | `backup`, `restore`, `deploy`, `export`, `import` |
//! | [`tokens`] | `token create` |
//!
//! [`client`] resolves `--space` / `--api` / `--ws` / `--token` into the host to ask.

mod client;
mod conflicts;
mod documents;
mod messages;
mod ops;
pub mod status;
mod sync;
pub mod tokens;

use crate::config::Config;
use crate::error::{Error, Result};
use client::Target;
use conflicts::{ConflictsCmd, PolicyArg};
use serde_json::Value;
use status::CloudTarget;
use std::process::ExitCode;
use std::time::Duration;

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

/// A JSON argument, compacted for the request body.
fn json_arg(what: &'static str, s: &str) -> Result<Vec<u8>> {
    serde_json::from_str::<Value>(s)
        .map(|v| v.to_string().into_bytes())
        .map_err(|source| Error::NotJson { what, source })
}

fn print(v: &Value) {
    println!("{v}");
}

pub async fn run(cfg: &Config, cmd: ClientCmd) -> Result<ExitCode> {
    match cmd {
        ClientCmd::Put {
            collection,
            id,
            json,
            t,
        } => documents::write(cfg, "PUT", &collection, &id, Some(&json), t).await,
        ClientCmd::Patch {
            collection,
            id,
            json,
            t,
        } => documents::write(cfg, "PATCH", &collection, &id, Some(&json), t).await,
        ClientCmd::Delete { collection, id, t } => {
            documents::write(cfg, "DELETE", &collection, &id, None, t).await
        }
        ClientCmd::Get { collection, id, t } => documents::get(cfg, collection, id, t).await,
        ClientCmd::List {
            collection,
            after,
            limit,
            t,
        } => documents::list(cfg, collection, after, limit, t).await,
        ClientCmd::Send { channel, json, t } => messages::send(cfg, channel, json, t).await,
        ClientCmd::Subscribe { channel, from, t } => {
            messages::subscribe(cfg, channel, from, t).await
        }
        ClientCmd::Watch { since, interval, t } => messages::watch(cfg, since, interval, t).await,
        ClientCmd::Conflicts(c) => conflicts::run(cfg, c).await,
        ClientCmd::Policy {
            collection,
            policy,
            t,
        } => conflicts::policy(cfg, collection, policy, t).await,
        ClientCmd::Status { t, cloud } => status::status(cfg, t, cloud).await,
        ClientCmd::Sync {
            push,
            pull,
            no_wait,
            timeout,
            t,
        } => sync::sync(cfg, t, push, pull, no_wait, Duration::from_secs(timeout)).await,
        ClientCmd::Monitor {
            cloud,
            once,
            interval,
            t,
        } => status::monitor(cfg, t, cloud, once, interval).await,
        ClientCmd::Agents { json, t } => status::agents(cfg, t, json).await,
        ClientCmd::Backup { file, db, force, t } => ops::backup(cfg, file, db, force, t).await,
        ClientCmd::Restore { file, db, force } => ops::restore(cfg, file, db, force),
        ClientCmd::Deploy { config, extra } => ops::deploy(config, &extra),
        ClientCmd::Export { t } => ops::export(cfg, t).await,
        ClientCmd::Import { file, batch, t } => ops::import(cfg, file, batch, t).await,
    }
}
