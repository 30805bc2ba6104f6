//! `put`, `patch`, `delete`, `get` and `list`: documents over the HTTP API.

use super::client::{enc, Ctx, Target};
use super::{json_arg, print};
use crate::config::Config;
use crate::error::Result;
use std::process::ExitCode;

/// `get`: one document.
pub(super) async fn get(
    cfg: &Config,
    collection: String,
    id: String,
    t: Target,
) -> Result<ExitCode> {
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

/// `list`: a collection as NDJSON, following pages, up to `limit` documents.
pub(super) async fn list(
    cfg: &Config,
    collection: String,
    after: Option<String>,
    limit: Option<usize>,
    t: Target,
) -> Result<ExitCode> {
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

/// `put` / `patch` (with a JSON body) and `delete` (without).
pub(super) async fn write(
    cfg: &Config,
    method: &str,
    collection: &str,
    id: &str,
    json: Option<&str>,
    t: Target,
) -> Result<ExitCode> {
    let body = match json {
        Some(j) => Some(json_arg("the document", j)?),
        None => None,
    };
    let c = Ctx::new(cfg, t);
    let p = c.path(&format!("docs/{}/{}", enc(collection), enc(id)));
    print(&c.call(method, &p, body).await?);
    Ok(ExitCode::SUCCESS)
}
