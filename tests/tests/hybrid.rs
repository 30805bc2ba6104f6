//! A hybrid host keeps an upstream link to a cloud-mode host: documents and messages flow
//! both ways, each message reaches each side once, and the link comes back after the cloud
//! restarts.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::time::{Duration, Instant};
use tests::{bridge_cmd, http, Agent};

use tests::{eventually, start_pair, wait_link_up, Pair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_syncs_docs_and_messages_both_ways() {
    let Pair {
        mut cloud,
        local,
        token,
        _dirs,
    } = start_pair(&[]);
    let tok = Some(token.as_str());

    // local → cloud
    let (s, v) = local.http(
        "PUT",
        "/v1/spaces/proj/docs/notes/a",
        Some(r#"{"from":"local"}"#),
    );
    assert_eq!(s, 200, "{v}");
    eventually(
        cloud.api_port,
        "/v1/spaces/proj/docs/notes/a",
        tok,
        |s, v| s == 200 && v["value"]["from"] == "local",
    );
    // cloud → local
    let (s, _) = http(
        cloud.api_port,
        "PUT",
        "/v1/spaces/proj/docs/notes/b",
        Some(r#"{"from":"cloud"}"#),
        tok,
    );
    assert_eq!(s, 200);
    eventually(
        local.api_port,
        "/v1/spaces/proj/docs/notes/b",
        None,
        |s, v| s == 200 && v["value"]["from"] == "cloud",
    );

    // messages cross both ways, once on each side
    let (mut la, _) = Agent::hello(&local.ws_url("proj"), "proj", None).await;
    la.send(&json!({"type": "subscribe", "req": 1, "channel": "chat"}))
        .await;
    la.recv_type("ack").await;
    let (mut ca, w) = Agent::hello(&cloud.ws_url("proj"), "proj", tok).await;
    assert_eq!(w["type"], "welcome", "{w}");
    ca.send(&json!({"type": "subscribe", "req": 1, "channel": "chat"}))
        .await;
    ca.recv_type("ack").await;
    la.send(&json!({"type": "send", "req": 2, "channel": "chat", "payload": "up"}))
        .await;
    ca.send(&json!({"type": "send", "req": 2, "channel": "chat", "payload": "down"}))
        .await;
    let mut got_local = Vec::new();
    let mut got_cloud = Vec::new();
    // Until both arrived, then a little longer to catch a duplicate (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut settle: Option<Instant> = None;
    while Instant::now() < deadline
        && settle.is_none_or(|t| t.elapsed() < Duration::from_millis(500))
    {
        if settle.is_none() && !got_local.is_empty() && !got_cloud.is_empty() {
            settle = Some(Instant::now());
        }
        for (a, got) in [(&mut la, &mut got_local), (&mut ca, &mut got_cloud)] {
            if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(100), a.recv()).await {
                if v["type"] == "broadcast" {
                    got.push(v["message"]["payload"].clone());
                }
            }
        }
    }
    got_local.sort_by_key(|v| v.to_string());
    got_cloud.sort_by_key(|v| v.to_string());
    assert_eq!(
        got_local,
        [json!("down")],
        "local agent gets the cloud message once"
    );
    assert_eq!(
        got_cloud,
        [json!("up")],
        "cloud agent gets the local message once"
    );

    // the cloud goes down: local writes go on and wait durably, then go up on reconnect
    cloud.kill9();
    for i in 0..20 {
        let (s, _) = local.http(
            "PUT",
            &format!("/v1/spaces/proj/docs/offline/o{i}"),
            Some(&json!({"i": i}).to_string()),
        );
        assert_eq!(
            s, 200,
            "local writes are acknowledged while the cloud is down"
        );
    }
    cloud.restart_same_ports();
    eventually(
        cloud.api_port,
        "/v1/spaces/proj/docs/offline?limit=100",
        tok,
        |s, v| s == 200 && v["docs"].as_array().map(Vec::len) == Some(20),
    );
    // and the local status shows nothing pending on the upstream link
    eventually(local.api_port, "/v1/status", None, |_, v| {
        v["spaces"].as_array().into_iter().flatten().any(|s| {
            s["space"] == "proj"
                && s["peers"]
                    .as_array()
                    .is_some_and(|p| p.len() == 1 && p[0]["pending"] == 0 && p[0]["open"] == true)
        })
    });
}

#[test]
fn manual_sync_mode_pushes_only_when_asked() {
    let Pair {
        cloud,
        local,
        token,
        _dirs,
    } = start_pair(&[("SYNC_MODE", "manual")]);
    let tok = Some(token.as_str());
    wait_link_up(&local);
    let (s, _) = local.http("PUT", "/v1/spaces/proj/docs/n/held", Some(r#"{"x":1}"#));
    assert_eq!(s, 200);
    std::thread::sleep(Duration::from_millis(700));
    let (s, _) = http(
        cloud.api_port,
        "GET",
        "/v1/spaces/proj/docs/n/held",
        None,
        tok,
    );
    assert_eq!(s, 404, "manual mode does not push by itself");

    let out = bridge_cmd(&_dirs.1 .0)
        .args([
            "sync",
            "--push",
            "--api",
            &format!("http://127.0.0.1:{}", local.api_port),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The CLI waited for the cloud's ack and shows the bar and the last successful sync.
    assert!(
        err.contains("push [") && err.contains("synced; last successful sync"),
        "{err}"
    );
    let v = http(local.api_port, "GET", "/v1/status", None, None).1;
    let link = &v["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["space"] == "proj")
        .unwrap()["upstream"];
    assert!(link["last_sync_ms"].as_u64().unwrap() > 0, "{link}");
    assert_eq!(link["pending"], 0, "{link}");
    eventually(
        cloud.api_port,
        "/v1/spaces/proj/docs/n/held",
        tok,
        |s, v| s == 200 && v["value"]["x"] == 1,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_mode_pushes_when_a_trigger_fires() {
    let Pair {
        cloud,
        local,
        token,
        _dirs,
    } = start_pair(&[
        ("SYNC_MODE", "event"),
        ("SYNC_EVENT_COLLECTIONS", "orders"),
        ("SYNC_EVENT_CHANNELS", "alerts"),
    ]);
    let tok = Some(token.as_str());
    wait_link_up(&local);
    let on_cloud = |path: &str| http(cloud.api_port, "GET", path, None, tok).0;
    let local_ok = |method: &str, path: &str, body: &str| {
        let (s, v) = local.http(method, &format!("/v1/spaces/proj/{path}"), Some(body));
        assert_eq!(s, 200, "{v}");
    };
    let reaches_cloud = |path: &str| {
        eventually(
            cloud.api_port,
            &format!("/v1/spaces/proj/{path}"),
            tok,
            |s, _| s == 200,
        );
    };
    let held = |path: &str, why: &str| {
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(on_cloud(&format!("/v1/spaces/proj/{path}")), 404, "{why}");
    };

    // A write to a collection that is not a trigger waits.
    local_ok("PUT", "docs/notes/a", r#"{"x":1}"#);
    held("docs/notes/a", "not a trigger: held");

    // A durable write to a listed collection pushes, and takes everything waiting with it.
    local_ok("PUT", "docs/orders/o1", r#"{"n":1}"#);
    reaches_cloud("docs/orders/o1");
    reaches_cloud("docs/notes/a");

    // A message on a channel that is not listed pushes nothing.
    local_ok("PUT", "docs/notes/b", r#"{"x":2}"#);
    local_ok("POST", "messages/chat", r#""hi""#);
    held("docs/notes/b", "chat is not a trigger");

    // A message on a listed channel (here sent by a WebSocket agent) pushes.
    let (mut agent, _) = Agent::hello(&local.ws_url("proj"), "proj", None).await;
    agent
        .send(&json!({"type": "send", "req": 1, "channel": "alerts", "payload": {"level": "high"}}))
        .await;
    agent.recv_type("ack").await;
    reaches_cloud("docs/notes/b");
    let v = http(local.api_port, "GET", "/v1/status", None, None).1;
    let pushes = v["spaces"][0]["upstream"]["event_pushes"]
        .as_u64()
        .unwrap_or(0);
    assert!(pushes >= 2, "{v}");
}
