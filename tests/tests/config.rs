//! `sacred-bridge env`: flags over environment over `.env` over defaults; invalid values are
//! refused with the key, the accepted values and exit code 2. Port 0 binds free ports and
//! the host says which.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use tests::{bridge_cmd, http, listening_ports, TempDir};

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} missing in:\n{out}"))
}

#[test]
fn env_shows_each_value_and_its_source() {
    let dir = TempDir::new("env");
    std::fs::write(
        dir.0.join(".env"),
        "LOCAL_WS_PORT=4444\nLOCAL_API_PORT=4001\nNODE_ENV=production\nSYNC_MODE=manual\n",
    )
    .unwrap();
    let out = bridge_cmd(&dir.0)
        .env("LOCAL_API_PORT", "5001")
        .args(["env", "--ws-port", "6333"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(line(&out, "LOCAL_WS_PORT").contains("6333"));
    assert!(line(&out, "LOCAL_WS_PORT").contains("flag --ws-port"));
    assert!(line(&out, "LOCAL_API_PORT").contains("5001"));
    assert!(line(&out, "LOCAL_API_PORT").contains("environment"));
    assert!(line(&out, "SYNC_MODE").contains(".env"));
    // NODE_ENV=production → cloud
    assert!(line(&out, "BRIDGE_MODE").contains("cloud"));
    assert!(line(&out, "BRIDGE_MODE").contains("NODE_ENV"));
    assert!(line(&out, "SYNC_INTERVAL").contains("300000"));
    assert!(line(&out, "LOCAL_DB_PATH").contains("local/databases/sacred-bridge.db"));

    let out = bridge_cmd(&dir.0)
        .env("CONFLICT_STRATEGY", "newest")
        .arg("env")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CONFLICT_STRATEGY") && err.contains("local_wins"),
        "{err}"
    );

    let out = bridge_cmd(&dir.0)
        .args(["env", "--mode", "edge"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("local, cloud, hybrid"));
}

/// `LOCAL_WS_PORT=0` / `LOCAL_API_PORT=0` (from the environment; `Host::start` uses the
/// flags) bind free ports, and the host's `listening:` line and `/inspector/host.json` give
/// the ports bound.
#[test]
fn port_zero_binds_free_ports_and_says_which() {
    let dir = TempDir::new("port0");
    let mut child = bridge_cmd(&dir.0)
        .env("LOCAL_WS_PORT", "0")
        .env("LOCAL_API_PORT", "0")
        .env("LOCAL_DB_PATH", dir.0.join("bridge.db"))
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ports = listening_ports(&line);
    let (s, v) = match ports {
        Some((_, api)) => http(api, "GET", "/inspector/host.json", None, None),
        None => (0, serde_json::Value::Null),
    };
    let _ = child.kill();
    let _ = child.wait();
    let (ws, api) = ports.unwrap_or_else(|| panic!("no ports in: {line}"));
    assert!(ws != 0 && api != 0 && ws != api, "{line}");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ws_port"], ws, "{v}");
}
