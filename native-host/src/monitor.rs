//! `sacred-bridge monitor`: the host's status as a screen that redraws every second (plain
//! ANSI, no curses), or once with `--once` for scripts. Also the text of `agents`.

use crate::cli::status::CloudStatus;
use bridge_core::status::{HostStatus, LinkState, SpaceStatus};
use serde_json::Value;
use std::fmt::Write as _;

/// "3.2 s ago", "4 min ago", "never".
pub fn age(ms: Option<u64>) -> String {
    match ms {
        None => "never".into(),
        Some(ms) if ms < 60_000 => format!("{:.1} s ago", ms as f64 / 1000.0),
        Some(ms) if ms < 3_600_000 => format!("{} min ago", ms / 60_000),
        Some(ms) => format!("{:.1} h ago", ms as f64 / 3_600_000.0),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A text field, `-` when empty or absent.
fn text(v: Option<&str>) -> String {
    match v {
        None | Some("") => "-".into(),
        Some(t) => t.to_owned(),
    }
}

/// A number, `-` when absent.
fn num<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

/// One space: documents, sessions, open conflicts, cursor.
fn space_row(o: &mut String, sp: &SpaceStatus) {
    let _ = writeln!(
        o,
        "{:<20} {:>8} {:>9} {:>10}  {}",
        text(Some(&sp.space)),
        sp.docs,
        sp.sessions,
        sp.open_conflicts,
        text(Some(&sp.cursor)),
    );
}

/// The status screen, as text.
pub fn render(status: &HostStatus, api: &str) -> String {
    let mut o = String::new();
    let host = status.host.as_ref();
    let _ = writeln!(
        o,
        "sacred-bridge {api}  tier {}  pid {}  up {} s  db {}",
        status.tier.as_str(),
        num(host.map(|h| h.pid)),
        status.uptime_s,
        text(host.map(|h| h.db.as_str())),
    );
    let st = host.map(|h| h.stored);
    let _ = writeln!(
        o,
        "stored: {} spaces, {} documents, {} messages",
        num(st.map(|s| s.spaces)),
        num(st.map(|s| s.docs)),
        num(st.map(|s| s.messages))
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<20} {:>8} {:>9} {:>10}  cursor (version vector)",
        "SPACE", "DOCS", "SESSIONS", "CONFLICTS"
    );
    for sp in &status.spaces {
        space_row(&mut o, sp);
        let _ = writeln!(o, "  default policy {}", sp.default_policy.as_str());
        if sp.default_policy_mismatch {
            let _ = writeln!(
                o,
                "  NOTE: CONFLICT_STRATEGY here is {}; it only seeds new spaces, and this space's replicated default ({}) applies",
                sp.conflict_strategy.as_str(),
                sp.default_policy.as_str(),
            );
        }
        match &sp.upstream {
            Some(up) if up.state == LinkState::NotLinked => {
                let _ = writeln!(o, "  upstream NOT LINKED: {}", text(up.reason.as_deref()));
            }
            Some(up) => {
                let state = match up.reason.as_deref() {
                    _ if up.up => "up".to_owned(),
                    Some(why) => format!("DOWN ({why})"),
                    None => "DOWN".to_owned(),
                };
                let _ = writeln!(
                    o,
                    "  upstream {state}: pending uploads {}, lag {}, last successful sync {}, push {}/{}, pull {} (+{} to come), event pushes {}",
                    num(up.pending),
                    num(up.lag),
                    age(up.last_sync_age_ms),
                    up.push.sent,
                    up.push.sent + up.push.remaining,
                    up.pull.received,
                    up.pull.remaining,
                    up.event_pushes,
                );
                let _ = writeln!(o, "    cloud has of ours: {}", text(up.acked.as_deref()));
                if let Some(c) = &up.collections {
                    let _ = write!(o, "    replicates: {}", c.join(", "));
                    if let Some(next) = &up.replicating {
                        let _ = write!(o, " (changing to {})", next.join(", "));
                    }
                    if !up.forgetting.is_empty() {
                        let _ = write!(o, " (dropping {})", up.forgetting.join(", "));
                    }
                    let _ = writeln!(o);
                }
            }
            None => {}
        }
        for p in sp.peers.iter().filter(|p| !p.upstream) {
            let _ = writeln!(
                o,
                "  peer {} ({}): pending {}, lag {}, has {}",
                p.replica,
                p.tier.as_str(),
                p.pending,
                p.lag,
                text(Some(&p.acked)),
            );
        }
    }
    let _ = writeln!(o, "at {}", clock(status.now_ms));
    o
}

/// The cloud's side, from its `/v1/status`: counts, sessions and open conflicts per space.
pub fn render_cloud(cloud: &CloudStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(o);
    let (api, status) = match cloud {
        CloudStatus::Unreachable { api, error } => {
            let _ = writeln!(o, "cloud {}: unreachable: {error}", text(Some(api)));
            return o;
        }
        CloudStatus::Read { api, status } => (api, status),
    };
    let st = status.host.as_ref().map(|h| h.stored);
    let _ = writeln!(
        o,
        "cloud {} (tier {}, up {} s): {} spaces, {} documents, {} messages",
        text(Some(api)),
        status.tier.as_str(),
        status.uptime_s,
        num(st.map(|s| s.spaces)),
        num(st.map(|s| s.docs)),
        num(st.map(|s| s.messages))
    );
    for sp in &status.spaces {
        space_row(&mut o, sp);
    }
    o
}

/// UTC time of day of `ms` since the epoch.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02} UTC",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

/// The `agents` table: one line per connected agent or peer, here and through peers.
pub fn agents_table(agents: &[Value], here: &str, now_ms: u64) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<28} {:<6} {:<6} {:<6} {:<18} connected",
        "NAME", "KIND", "SIDE", "WHERE", "NODE"
    );
    for a in agents {
        let node = s(&a["node"]);
        let place = if node == here { "here" } else { "remote" };
        let since = a["since"].as_u64().map(|t| now_ms.saturating_sub(t));
        let _ = writeln!(
            o,
            "{:<28} {:<6} {:<6} {:<6} {:<18} {}",
            s(&a["name"]),
            s(&a["kind"]),
            s(&a["tier"]),
            place,
            node,
            age(since),
        );
    }
    o
}
