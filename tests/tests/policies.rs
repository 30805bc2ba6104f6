//! Concurrent edits on a cloud-mode host and a hybrid host, made by WebSocket agents on both
//! sides, converge under each of the five policies (set through the policy endpoint); a
//! `manual` conflict shows the same on both sides, is resolved with the CLI, and then both
//! sides agree.
//!
//! Concurrency is made deterministic with `SYNC_MODE=manual`: the local write is held on the
//! hybrid host while the cloud agent writes the same document without having seen it; only
//! then does `sacred-bridge sync --push` send it up.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use tests::{cli, eventually, http, start_pair, wait_link_up, Agent, Pair};

const POLICIES: [&str; 5] = ["lww", "cloud_wins", "local_wins", "merge", "manual"];

async fn put(agent: &mut Agent, req: u64, collection: &str, value: Value) {
    agent
        .send(&json!({"type": "put", "req": req, "collection": collection, "id": "doc", "value": value}))
        .await;
    let ack = agent.recv_type("ack").await;
    assert_eq!(ack["req"], req, "{ack}");
}

fn cli_ok(dir: &std::path::Path, args: &[&str]) -> String {
    let (code, out, err) = cli(dir, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_converge_under_every_policy_and_manual_resolves_from_the_cli() {
    let Pair {
        cloud,
        local,
        token,
        _dirs,
    } = start_pair(&[("SYNC_MODE", "manual")]);
    let tok = Some(token.as_str());
    let dir = _dirs.1 .0.clone();
    let local_api = format!("http://127.0.0.1:{}", local.api_port);
    let cloud_api = format!("http://127.0.0.1:{}", cloud.api_port);
    wait_link_up(&local);

    // Policies through the policy endpoint, on the local side, pushed up with the CLI.
    for p in POLICIES {
        let (s, v) = local.http(
            "PUT",
            &format!("/v1/spaces/proj/policies/c_{p}"),
            Some(&json!({ "policy": p }).to_string()),
        );
        assert_eq!(s, 200, "{v}");
    }
    cli_ok(
        &dir,
        &["sync", "--push", "--timeout", "20", "--api", &local_api],
    );

    let (mut la, w) = Agent::hello(&local.ws_url("proj"), "proj", None).await;
    assert_eq!(w["type"], "welcome", "{w}");
    let (mut ca, w) = Agent::hello(&cloud.ws_url("proj"), "proj", tok).await;
    assert_eq!(w["type"], "welcome", "{w}");

    // Local first (held on the hybrid host), then the cloud without having seen it.
    let mut req = 1;
    for p in POLICIES {
        let c = format!("c_{p}");
        put(
            &mut la,
            req,
            &c,
            json!({"v": "local", "l": 1, "shared": "L"}),
        )
        .await;
        req += 1;
    }
    for p in POLICIES {
        let c = format!("c_{p}");
        put(
            &mut ca,
            req,
            &c,
            json!({"v": "cloud", "c": 1, "shared": "C"}),
        )
        .await;
        req += 1;
    }
    cli_ok(
        &dir,
        &["sync", "--push", "--timeout", "20", "--api", &local_api],
    );

    let expected = |p: &str| match p {
        // The cloud wrote last: the highest stamp.
        "lww" | "cloud_wins" | "manual" => json!({"v": "cloud", "c": 1, "shared": "C"}),
        "local_wins" => json!({"v": "local", "l": 1, "shared": "L"}),
        // Field by field: each field's newest value, fields from both sides kept.
        "merge" => json!({"v": "cloud", "c": 1, "l": 1, "shared": "C"}),
        _ => unreachable!(),
    };
    for p in POLICIES {
        let path = format!("/v1/spaces/proj/docs/c_{p}/doc");
        let want = expected(p);
        let on_cloud = eventually(cloud.api_port, &path, tok, |s, v| {
            s == 200 && v["value"] == want
        });
        let on_local = eventually(local.api_port, &path, None, |s, v| {
            s == 200 && v["value"] == want
        });
        assert_eq!(on_cloud["value"], on_local["value"], "policy {p}");
        assert_eq!(
            on_cloud["conflict"],
            p == "manual",
            "policy {p}: {on_cloud}"
        );
        assert_eq!(
            on_local["conflict"],
            p == "manual",
            "policy {p}: {on_local}"
        );
    }

    // The manual conflict is the same on both sides, over HTTP and from the CLI.
    let path = "/v1/spaces/proj/conflicts?collection=c_manual";
    let cc = eventually(cloud.api_port, path, tok, |_, v| {
        v["conflicts"].as_array().is_some_and(|a| a.len() == 1)
    });
    let lc = eventually(local.api_port, path, None, |_, v| {
        v["conflicts"].as_array().is_some_and(|a| a.len() == 1)
    });
    assert_eq!(cc, lc, "one conflict, seen the same on both sides");
    assert_eq!(cc["conflicts"][0]["sides"].as_array().unwrap().len(), 2);
    let fields = &cc["conflicts"][0]["fields"];
    assert!(
        fields.as_array().unwrap().contains(&json!("shared")),
        "{fields}"
    );
    let show = |api: &str, token: Option<&str>| {
        let mut args = vec![
            "conflicts",
            "show",
            "c_manual",
            "doc",
            "--json",
            "--space",
            "proj",
            "--api",
            api,
        ];
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        cli_ok(&dir, &args)
    };
    assert_eq!(show(&local_api, None), show(&cloud_api, tok));
    let text = cli_ok(
        &dir,
        &[
            "conflicts",
            "show",
            "c_manual",
            "doc",
            "--space",
            "proj",
            "--api",
            &local_api,
        ],
    );
    assert!(
        text.contains("cloud side") && text.contains("local side"),
        "{text}"
    );

    // monitor and status show both sides, each with the one open conflict.
    let both = [
        "--api",
        &local_api,
        "--cloud-api",
        &cloud_api,
        "--cloud-token",
        &token,
    ];
    let screen = cli_ok(&dir, &[&["monitor", "--once"][..], &both].concat());
    let rows: Vec<&str> = screen.lines().filter(|l| l.starts_with("proj ")).collect();
    assert_eq!(rows.len(), 2, "a local and a cloud row: {screen}");
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[3], "1", "one open conflict on each side: {row}");
    }
    assert!(
        screen.contains("last successful sync") && screen.contains("cloud http"),
        "{screen}"
    );
    let status: Value =
        serde_json::from_str(&cli_ok(&dir, &[&["status"][..], &both].concat())).unwrap();
    assert_eq!(status["cloud"]["tier"], "cloud", "{status}");

    // Resolve from the CLI on the local side, push, and both sides agree.
    cli_ok(
        &dir,
        &[
            "conflicts",
            "resolve",
            "c_manual",
            "doc",
            r#"{"v":"resolved"}"#,
            "--space",
            "proj",
            "--api",
            &local_api,
        ],
    );
    cli_ok(
        &dir,
        &["sync", "--push", "--timeout", "20", "--api", &local_api],
    );
    let path = "/v1/spaces/proj/docs/c_manual/doc";
    let want = json!({"v": "resolved"});
    for (port, t) in [(cloud.api_port, tok), (local.api_port, None)] {
        let v = eventually(port, path, t, |s, v| s == 200 && v["value"] == want);
        assert_eq!(v["conflict"], false, "{v}");
        eventually(port, "/v1/spaces/proj/conflicts", t, |_, v| {
            v["conflicts"] == json!([])
        });
    }

    // Everything else agrees too: the exports are identical.
    let cloud_export = http(cloud.api_port, "GET", "/v1/spaces/proj/export", None, tok).1;
    let local_export = local.http("GET", "/v1/spaces/proj/export", None).1;
    assert_eq!(cloud_export, local_export);
}

/// A cloud host seeded `lww` and a hybrid host whose `CONFLICT_STRATEGY` is `merge` patch
/// different fields of one document concurrently: both must show the same document, because
/// the default policy is part of the space's replicated configuration (the local setting only
/// seeds new spaces, and the cloud's seed wins), and the hybrid's status names the mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_with_different_conflict_strategies_converge() {
    let Pair {
        cloud,
        local,
        token,
        _dirs,
    } = start_pair(&[("SYNC_MODE", "manual"), ("CONFLICT_STRATEGY", "merge")]);
    let tok = Some(token.as_str());
    let dir = _dirs.1 .0.clone();
    let local_api = format!("http://127.0.0.1:{}", local.api_port);
    wait_link_up(&local);
    let sync = || {
        cli_ok(
            &dir,
            &["sync", "--push", "--timeout", "20", "--api", &local_api],
        )
    };

    let (mut la, _) = Agent::hello(&local.ws_url("proj"), "proj", None).await;
    let (mut ca, _) = Agent::hello(&cloud.ws_url("proj"), "proj", tok).await;
    put(&mut la, 1, "notes", json!({"base": 1})).await;
    sync();
    let path = "/v1/spaces/proj/docs/notes/doc";
    eventually(cloud.api_port, path, tok, |s, _| s == 200);
    for (agent, field) in [(&mut la, "h"), (&mut ca, "c")] {
        agent
            .send(&json!({"type": "patch", "req": 2, "collection": "notes", "id": "doc", "value": {field: 1}}))
            .await;
        let ack = agent.recv_type("ack").await;
        assert_eq!(ack["req"], 2, "{ack}");
    }
    sync();
    let cloud_doc = eventually(cloud.api_port, path, tok, |s, v| {
        s == 200 && http(local.api_port, "GET", path, None, None).1 == *v
    });
    assert_eq!(local.http("GET", path, None).1, cloud_doc);

    // Both name the same default; the hybrid says its own setting is only a seed.
    let default_of = |v: &Value| {
        v["spaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["space"] == "proj")
            .cloned()
            .unwrap_or(Value::Null)
    };
    let cloud_space = default_of(&http(cloud.api_port, "GET", "/v1/status", None, tok).1);
    let local_space = default_of(&local.http("GET", "/v1/status", None).1);
    assert_eq!(cloud_space["default_policy"], local_space["default_policy"]);
    assert_eq!(local_space["conflict_strategy"], "merge");
    assert_eq!(
        local_space["default_policy_mismatch"],
        local_space["default_policy"] != "merge",
        "{local_space}"
    );
    let screen = cli_ok(&dir, &["monitor", "--once", "--api", &local_api]);
    assert!(screen.contains("default policy"), "{screen}");
    if local_space["default_policy_mismatch"] == true {
        assert!(screen.contains("only seeds new spaces"), "{screen}");
    }
}
