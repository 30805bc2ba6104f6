//! Operator commands against real processes: `backup` of a running host and `restore` into
//! a stopped one give identical documents; a corrupt backup, a live host and an existing
//! database without `--force` are refused and harm nothing; `agents`, `monitor --once` and
//! `conflicts show` talk to the host; `deploy` says clearly what is missing.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use tests::{cli, Agent, Host, TempDir};

fn export(host: &Host, space: &str) -> String {
    let (s, v) = host.http("GET", &format!("/v1/spaces/{space}/export"), None);
    assert_eq!(s, 200);
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

fn sha(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn backup_then_restore_gives_identical_documents_and_bad_restores_harm_nothing() {
    let dir = TempDir::new("backup");
    let d = &dir.0;
    let mut host = Host::start(d, "local", &[]);
    let api = format!("http://127.0.0.1:{}", host.api_port);
    for i in 0..300 {
        let (s, _) = host.http(
            "PUT",
            &format!("/v1/spaces/ops/docs/notes/n{i:03}"),
            Some(&json!({"i": i, "text": "x".repeat(200)}).to_string()),
        );
        assert_eq!(s, 200);
    }
    host.http("DELETE", "/v1/spaces/ops/docs/notes/n007", None);
    let before = export(&host, "ops");
    // 299 notes and the space's configuration (`_config/space`, its default-policy seed).
    assert_eq!(before.lines().count(), 300);

    // export → import through the CLI, in batches with a progress bar: the same documents.
    let (code, ndjson, err) = cli(d, &["export", "--space", "ops", "--api", &api]);
    assert_eq!(code, 0, "{err}");
    let file = d.join("ops.ndjson");
    std::fs::write(&file, &ndjson).unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = cli(
        d,
        &[
            "import", f, "--batch", "50", "--space", "ops2", "--api", &api,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"imported\":300") && err.contains("import: "),
        "{out} {err}"
    );
    assert_eq!(export(&host, "ops2"), before);
    std::fs::write(&file, format!("{ndjson}{{\"collection\":\"notes\"}}\n")).unwrap();
    let (code, _, err) = cli(
        d,
        &[
            "import", f, "--batch", "100", "--space", "ops3", "--api", &api,
        ],
    );
    assert_eq!(code, 1);
    assert!(
        // 300 exported lines, then the bad one alone in the fourth batch.
        err.contains("lines 301..301") && err.contains("the 300 before them are"),
        "{err}"
    );

    // Online backup of the running host: the host tells the CLI where its database is.
    let backup = d.join("backups/one.db");
    let (code, _, err) = cli(d, &["backup", backup.to_str().unwrap(), "--api", &api]);
    assert_eq!(code, 0, "{err}");
    assert!(
        // ops: 300 notes (one a tombstone) + its `_config/space`; ops2 and ops3: the 300
        // lines each imported (the export carries `_config/space` too).
        err.contains("integrity ok") && err.contains("3 spaces, 901 documents"),
        "{err}"
    );
    assert!(err.contains("100%"), "a progress bar: {err}");
    // Again without --force: refused, the first backup stays.
    let (code, _, err) = cli(d, &["backup", backup.to_str().unwrap(), "--api", &api]);
    assert_eq!(code, 1);
    assert!(err.contains("--force"), "{err}");

    // Restoring over the live host's database is refused, whatever --force says.
    let live_db = host.db.clone();
    let (code, _, err) = cli(
        d,
        &[
            "restore",
            backup.to_str().unwrap(),
            "--db",
            live_db.to_str().unwrap(),
            "--force",
        ],
    );
    assert_eq!(code, 1);
    // The host was started on port 0: its pid file names the port it bound.
    assert!(
        err.contains("Stop it first") && err.contains(&format!("pid {}, {api})", host.child.id())),
        "{err}"
    );

    // A write after the backup, then stop the host and restore into a fresh file.
    host.http("PUT", "/v1/spaces/ops/docs/notes/late", Some("{}"));
    host.kill9();
    let restored = d.join("restored/bridge.db");
    let (code, _, err) = cli(
        d,
        &[
            "restore",
            backup.to_str().unwrap(),
            "--db",
            restored.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("restored") && err.contains("integrity ok"),
        "{err}"
    );
    // Over an existing database only with --force.
    let (code, _, err) = cli(
        d,
        &[
            "restore",
            backup.to_str().unwrap(),
            "--db",
            live_db.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );

    // Corrupt backups: a truncated copy and garbage. Refused, the target untouched.
    let truncated = d.join("truncated.db");
    std::fs::write(&truncated, &std::fs::read(&backup).unwrap()[..6000]).unwrap();
    let garbage = d.join("garbage.db");
    std::fs::write(
        &garbage,
        b"this is not a database at all, not even close ......",
    )
    .unwrap();
    let not_ours = d.join("other.db");
    {
        let c = rusqlite::Connection::open(&not_ours).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let target_before = sha(&restored);
    for bad in [&truncated, &garbage, &not_ours] {
        let (code, _, err) = cli(
            d,
            &[
                "restore",
                bad.to_str().unwrap(),
                "--db",
                restored.to_str().unwrap(),
                "--force",
            ],
        );
        assert_eq!(code, 1, "{bad:?} must be refused");
        assert!(
            err.contains("refusing to restore")
                && err.contains("not a usable Sacred Bridge database"),
            "{err}"
        );
        assert_eq!(
            sha(&restored),
            target_before,
            "a refused restore harms nothing"
        );
    }

    // The restored database serves exactly the documents that were backed up.
    // Host::start serves DIR/bridge.db: the restored file.
    let host2 = Host::start(restored.parent().unwrap(), "local", &[]);
    assert_eq!(export(&host2, "ops"), before);
    let (s, _) = host2.http("GET", "/v1/spaces/ops/docs/notes/late", None);
    assert_eq!(s, 404, "the write after the backup is not in it");
    let (s, _) = host2.http("GET", "/v1/spaces/ops/docs/notes/n007", None);
    assert_eq!(s, 404, "the delete is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_monitor_and_conflicts_show_talk_to_the_host() {
    let dir = TempDir::new("agents");
    let d = dir.0.clone();
    let host = Host::start(&d, "local", &[]);
    let api = format!("http://127.0.0.1:{}", host.api_port);
    let (_a, w) = Agent::hello(&host.ws_url("team"), "team", None).await;
    assert_eq!(w["type"], "welcome");
    let run = |args: Vec<String>| {
        let d = d.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                cli(&d, &args)
            })
            .await
            .unwrap()
        }
    };
    let args = |a: &[&str]| -> Vec<String> {
        a.iter()
            .map(|s| s.to_string())
            .chain(["--api".into(), api.clone(), "--space".into(), "team".into()])
            .collect()
    };
    let (code, out, err) = run(args(&["agents"])).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("e2e") && out.contains("here"), "{out}");
    let (code, out, _) = run(args(&["agents", "--json"])).await;
    assert_eq!(code, 0);
    let a: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(a["name"], "e2e");

    let (code, out, err) = run(args(&["monitor", "--once"])).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("team") && out.contains("stored:"), "{out}");
    assert!(!out.contains('\x1b'), "--once draws no escape codes");

    let (code, _, err) = run(args(&["conflicts", "show", "tasks", "t1"])).await;
    assert_eq!(code, 1);
    assert!(err.contains("no open conflict"), "{err}");
}

#[test]
fn deploy_says_what_is_missing() {
    let dir = TempDir::new("deploy");
    let d = &dir.0;
    // No wrangler.toml anywhere above a temp folder.
    let (code, _, err) = cli(d, &["deploy"]);
    assert_eq!(code, 1);
    assert!(err.contains("no wrangler.toml"), "{err}");
    std::fs::write(d.join("wrangler.toml"), "name = \"x\"\n").unwrap();
    // No npx on PATH and no credentials: both said, nothing run.
    let out = tests::bridge_cmd(d)
        .env("PATH", d.join("empty-bin"))
        .arg("deploy")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("npx was not found"), "{err}");
    assert!(err.contains("CLOUDFLARE_API_TOKEN is not set"), "{err}");
    // npx present (if this machine has it) but no token: still refused before running anything.
    let (code, _, err) = cli(d, &["deploy"]);
    assert_eq!(code, 1);
    assert!(err.contains("CLOUDFLARE_API_TOKEN is not set"), "{err}");
}
