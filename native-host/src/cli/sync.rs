//! `sync`: ask the host to sync its upstream links now, then follow their progress until the
//! cloud has acknowledged every write made here (and the pull has caught up).

use super::client::{Ctx, Target};
use super::print;
use crate::config::Config;
use crate::error::{Error, Result};
use bridge_core::status::{HostStatus, LinkState, PullProgress, PushProgress, UpstreamLink};
use std::process::ExitCode;
use std::time::Duration;

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
pub(super) async fn sync(
    cfg: &Config,
    t: Target,
    push: bool,
    pull: bool,
    no_wait: bool,
    timeout: Duration,
) -> Result<ExitCode> {
    let dir = match (push, pull) {
        (true, _) => "?direction=push",
        (_, true) => "?direction=pull",
        _ => "",
    };
    let (push, pull) = (push || !pull, pull || !push);
    let c = Ctx::new(cfg, t);
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
            return Err(Error::NoLink);
        };
        if !link.up {
            return Err(Error::LinkDown);
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
            return Err(Error::SyncTimeout {
                secs: timeout.as_secs(),
                link: serde_json::to_string(&link).unwrap_or_default(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
