//! `sacred-bridge monitor`: the host's status as a screen that redraws every second (plain
//! ANSI, no curses), or once with `--once` for scripts. Also the text of `agents`.

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

/// One space: documents, sessions, open conflicts, cursor.
fn space_row(o: &mut String, sp: &Value) {
    let _ = writeln!(
        o,
        "{:<20} {:>8} {:>9} {:>10}  {}",
        s(&sp["space"]),
        s(&sp["docs"]),
        s(&sp["sessions"]),
        s(&sp["open_conflicts"]),
        s(&sp["cursor"]),
    );
}

/// The status screen, as text.
pub fn render(status: &Value, api: &str) -> String {
    let mut o = String::new();
    let now = status["now_ms"].as_u64().unwrap_or(0);
    let _ = writeln!(
        o,
        "sacred-bridge {api}  tier {}  pid {}  up {} s  db {}",
        s(&status["tier"]),
        s(&status["pid"]),
        s(&status["uptime_s"]),
        s(&status["db"]),
    );
    let st = &status["stored"];
    let _ = writeln!(
        o,
        "stored: {} spaces, {} documents, {} messages",
        s(&st["spaces"]),
        s(&st["docs"]),
        s(&st["messages"])
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<20} {:>8} {:>9} {:>10}  cursor (version vector)",
        "SPACE", "DOCS", "SESSIONS", "CONFLICTS"
    );
    for sp in status["spaces"].as_array().into_iter().flatten() {
        space_row(&mut o, sp);
        let _ = writeln!(o, "  default policy {}", s(&sp["default_policy"]));
        if sp["default_policy_mismatch"] == true {
            let _ = writeln!(
                o,
                "  NOTE: CONFLICT_STRATEGY here is {}; it only seeds new spaces, and this space's replicated default ({}) applies",
                s(&sp["conflict_strategy"]),
                s(&sp["default_policy"]),
            );
        }
        let up = &sp["upstream"];
        if up["state"] == "not_linked" {
            let _ = writeln!(o, "  upstream NOT LINKED: {}", s(&up["reason"]));
        } else if up.is_object() {
            let state = match up["reason"].as_str() {
                _ if up["up"] == true => "up".to_owned(),
                Some(why) => format!("DOWN ({why})"),
                None => "DOWN".to_owned(),
            };
            let _ = writeln!(
                o,
                "  upstream {state}: pending uploads {}, lag {}, last successful sync {}, push {}/{}, pull {} (+{} to come), event pushes {}",
                s(&up["pending"]),
                s(&up["lag"]),
                age(up["last_sync_age_ms"].as_u64()),
                s(&up["push"]["sent"]),
                up["push"]["sent"].as_u64().unwrap_or(0) + up["push"]["remaining"].as_u64().unwrap_or(0),
                s(&up["pull"]["received"]),
                s(&up["pull"]["remaining"]),
                s(&up["event_pushes"]),
            );
            let _ = writeln!(o, "    cloud has of ours: {}", s(&up["acked"]));
        }
        for p in sp["peers"].as_array().into_iter().flatten() {
            if p["upstream"] == true {
                continue;
            }
            let _ = writeln!(
                o,
                "  peer {} ({}): pending {}, lag {}, has {}",
                s(&p["replica"]),
                s(&p["tier"]),
                s(&p["pending"]),
                s(&p["lag"]),
                s(&p["acked"]),
            );
        }
    }
    let _ = writeln!(o, "at {}", clock(now));
    o
}

/// The cloud's side, from its `/v1/status`: counts, sessions and open conflicts per space.
pub fn render_cloud(cloud: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(o);
    if let Some(e) = cloud["error"].as_str() {
        let _ = writeln!(o, "cloud {}: unreachable: {e}", s(&cloud["api"]));
        return o;
    }
    let st = &cloud["stored"];
    let _ = writeln!(
        o,
        "cloud {} (tier {}, up {} s): {} spaces, {} documents, {} messages",
        s(&cloud["api"]),
        s(&cloud["tier"]),
        s(&cloud["uptime_s"]),
        s(&st["spaces"]),
        s(&st["docs"]),
        s(&st["messages"])
    );
    for sp in cloud["spaces"].as_array().into_iter().flatten() {
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
