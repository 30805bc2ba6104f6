//! `conflicts list|show|resolve` and `policy`: open conflicts of `manual` collections and the
//! policy a collection resolves concurrent writes with.

use super::client::{enc, Ctx, Target};
use super::{json_arg, print};
use crate::config::Config;
use crate::error::Result;
use bridge_core::Policy;
use serde_json::{json, Value};
use std::process::ExitCode;

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

/// `conflicts ...`.
pub(super) async fn run(cfg: &Config, cmd: ConflictsCmd) -> Result<ExitCode> {
    match cmd {
        ConflictsCmd::List { collection, t } => list(cfg, collection, t).await,
        ConflictsCmd::Show {
            collection,
            id,
            json,
            t,
        } => show(cfg, collection, id, json, t).await,
        ConflictsCmd::Resolve {
            collection,
            id,
            json,
            t,
        } => resolve(cfg, collection, id, json, t).await,
    }
}

/// `conflicts list`: open conflicts as NDJSON.
async fn list(cfg: &Config, collection: Option<String>, t: Target) -> Result<ExitCode> {
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

/// `conflicts show`: one conflict, as text or JSON.
async fn show(
    cfg: &Config,
    collection: String,
    id: String,
    json: bool,
    t: Target,
) -> Result<ExitCode> {
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

/// `conflicts resolve`: write the resolution (`null` deletes).
async fn resolve(
    cfg: &Config,
    collection: String,
    id: String,
    json: String,
    t: Target,
) -> Result<ExitCode> {
    let body = json_arg("the resolution", &json)?;
    let c = Ctx::new(cfg, t);
    let p = c.path(&format!(
        "conflicts/{}/{}/resolve",
        enc(&collection),
        enc(&id)
    ));
    print(&c.call("POST", &p, Some(body)).await?);
    Ok(ExitCode::SUCCESS)
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

/// `policy`: set a collection's conflict policy.
pub(super) async fn policy(
    cfg: &Config,
    collection: String,
    policy: PolicyArg,
    t: Target,
) -> Result<ExitCode> {
    let c = Ctx::new(cfg, t);
    let body = json!({ "policy": Policy::from(policy).as_str() })
        .to_string()
        .into_bytes();
    let p = c.path(&format!("policies/{}", enc(&collection)));
    print(&c.call("PUT", &p, Some(body)).await?);
    Ok(ExitCode::SUCCESS)
}
