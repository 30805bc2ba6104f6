//! `sacred-bridge env`: flags over environment over `.env` over defaults; invalid values are
//! refused with the key, the accepted values and exit code 2.
#![allow(clippy::unwrap_used)]

use tests::{bridge_cmd, TempDir};

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
