//! An agent that knows only the JSON protocol (serde_json values over a plain WebSocket)
//! does hello / put / get / subscribe / send against a real host, and the HTTP API serves
//! the same documents.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use tests::{Agent, Host, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_put_get_subscribe_send_over_raw_json() {
    let dir = TempDir::new("agent");
    let host = Host::start(&dir.0, "local", &[]);
    let url = host.ws_url("team");

    let (mut a, welcome) = Agent::hello(&url, "team", None).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["space"], "team");
    assert_eq!(welcome["tier"], "local");

    // put → ack with the request id and a dot, once durable
    a.send(
        &json!({"type": "put", "req": 1, "collection": "notes", "id": "n1",
                   "value": {"title": "hello", "n": 1}}),
    )
    .await;
    let ack = a.recv_type("ack").await;
    assert_eq!(ack["req"], 1, "{ack}");
    assert!(ack["dot"]["counter"].as_u64().is_some(), "{ack}");

    a.send(&json!({"type": "get", "req": 2, "collection": "notes", "id": "n1"}))
        .await;
    let doc = a.recv_type("doc").await;
    assert_eq!(doc["req"], 2);
    assert_eq!(doc["doc"]["value"]["title"], "hello");

    // a second agent subscribes to a channel and a collection
    let (mut b, w) = Agent::hello(&url, "team", None).await;
    assert_eq!(w["type"], "welcome");
    b.send(&json!({"type": "subscribe", "req": 10, "channel": "chat"}))
        .await;
    assert_eq!(b.recv_type("ack").await["req"], 10);
    b.send(&json!({"type": "subscribe", "req": 11, "collection": "notes"}))
        .await;
    assert_eq!(b.recv_type("ack").await["req"], 11);

    // a sends on the channel: a gets its ack, b gets the broadcast
    a.send(&json!({"type": "send", "req": 3, "channel": "chat", "payload": {"text": "hi"}}))
        .await;
    assert_eq!(a.recv_type("ack").await["req"], 3);
    let msg = b.recv_type("broadcast").await;
    assert_eq!(msg["message"]["channel"], "chat");
    assert_eq!(msg["message"]["payload"]["text"], "hi");
    let offset = msg["offset"].as_u64().expect("offset for agents");

    // a patches the document: b sees the change
    a.send(
        &json!({"type": "patch", "req": 4, "collection": "notes", "id": "n1",
                   "value": {"n": 2}}),
    )
    .await;
    assert_eq!(a.recv_type("ack").await["req"], 4);
    let change = b.recv_type("change").await;
    assert_eq!(change["doc"]["value"], json!({"title": "hello", "n": 2}));

    // a late subscriber replays from a cursor
    let (mut c, _) = Agent::hello(&url, "team", None).await;
    c.send(&json!({"type": "subscribe", "req": 1, "channel": "chat", "from": offset - 1}))
        .await;
    assert_eq!(c.recv_type("ack").await["req"], 1);
    assert_eq!(
        c.recv_type("broadcast").await["message"]["payload"]["text"],
        "hi"
    );

    // the default space answers on `/`
    let root = format!("ws://127.0.0.1:{}/", host.ws_port);
    let (_d, w) = Agent::hello(&root, "default", None).await;
    assert_eq!(w["type"], "welcome", "{w}");
}

#[test]
fn http_put_get_list_changes_messages_and_export() {
    let dir = TempDir::new("http");
    let host = Host::start(&dir.0, "local", &[]);
    for i in 0..5 {
        let (s, v) = host.http(
            "PUT",
            &format!("/v1/spaces/s1/docs/tasks/t{i}"),
            Some(&json!({"i": i}).to_string()),
        );
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["doc"]["value"]["i"], i);
    }
    let (s, v) = host.http("GET", "/v1/spaces/s1/docs/tasks/t3", None);
    assert_eq!((s, &v["value"]), (200, &json!({"i": 3})));
    let (s, v) = host.http(
        "PATCH",
        "/v1/spaces/s1/docs/tasks/t3",
        Some(r#"{"done":true}"#),
    );
    assert_eq!(s, 200);
    assert_eq!(v["doc"]["value"], json!({"i": 3, "done": true}));

    let (s, v) = host.http("GET", "/v1/spaces/s1/docs/tasks?limit=2", None);
    assert_eq!(s, 200);
    assert_eq!(v["docs"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["next"], "t1");
    let (_, v) = host.http("GET", "/v1/spaces/s1/docs/tasks?after=t1&limit=10", None);
    let ids: Vec<&str> = v["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t2", "t3", "t4"]);

    let (s, _) = host.http("DELETE", "/v1/spaces/s1/docs/tasks/t0", None);
    assert_eq!(s, 200);
    let (s, v) = host.http("GET", "/v1/spaces/s1/docs/tasks/t0", None);
    assert_eq!((s, &v["error"]["code"]), (404, &json!("not_found")));

    // changes since a cursor: everything, then only what came after
    let (_, all) = host.http("GET", "/v1/spaces/s1/changes", None);
    assert_eq!(all["changes"].as_array().map(Vec::len), Some(5));
    let cursor = all["cursor"].as_str().unwrap().to_owned();
    host.http("PUT", "/v1/spaces/s1/docs/tasks/t9", Some("{}"));
    let (_, v) = host.http(
        "GET",
        &format!("/v1/spaces/s1/changes?since={cursor}"),
        None,
    );
    let changed: Vec<&str> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["t9"]);

    let (s, v) = host.http("POST", "/v1/spaces/s1/messages/chat", Some(r#"{"x":1}"#));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"]["seq"], 1);

    let (s, v) = host.http(
        "PUT",
        "/v1/spaces/s1/policies/tasks",
        Some(r#"{"policy":"manual"}"#),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = host.http("GET", "/v1/spaces/s1/conflicts", None);
    assert_eq!((s, &v["conflicts"]), (200, &json!([])));

    // export then import into another space gives the same documents
    let (s, raw) = tests::http_raw(host.api_port, "GET", "/v1/spaces/s1/export", None, None);
    assert_eq!(s, 200);
    let (s, v) = tests::http(
        host.api_port,
        "POST",
        "/v1/spaces/s2/import",
        Some(std::str::from_utf8(&raw).unwrap()),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let (_, a) = host.http("GET", "/v1/spaces/s1/docs/tasks?limit=100", None);
    let (_, b) = host.http("GET", "/v1/spaces/s2/docs/tasks?limit=100", None);
    let values = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["docs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["value"].clone())
            .collect()
    };
    assert_eq!(values(&a), values(&b));

    let (s, v) = host.http("GET", "/healthz", None);
    assert_eq!((s, &v["ok"]), (200, &json!(true)));
    let (s, v) = host.http("GET", "/metrics", None);
    assert_eq!(s, 200);
    let text = v.as_str().unwrap();
    assert!(text.contains("sacred_bridge_commits_total"));
    assert!(text.contains("sacred_bridge_commit_duration_seconds_bucket{le=\"+Inf\"}"));
    assert!(text.contains("sacred_bridge_ws_bytes_out_total"));
}

#[test]
fn cli_put_get_list_against_a_running_host() {
    let dir = TempDir::new("cli");
    let host = Host::start(&dir.0, "local", &[]);
    let api = format!("http://127.0.0.1:{}", host.api_port);
    let run = |args: &[&str]| {
        let out = tests::bridge_cmd(&dir.0)
            .args(args)
            .args(["--api", &api, "--space", "cli"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["put", "notes", "a", r#"{"t":"x"}"#]);
    run(&["patch", "notes", "a", r#"{"u":1}"#]);
    let got: serde_json::Value = serde_json::from_str(&run(&["get", "notes", "a"])).unwrap();
    assert_eq!(got["value"], json!({"t": "x", "u": 1}));
    run(&["put", "notes", "b", "{}"]);
    assert_eq!(run(&["list", "notes"]).lines().count(), 2);
    run(&["delete", "notes", "b"]);
    assert_eq!(run(&["list", "notes"]).lines().count(), 1);
    run(&["send", "chat", r#""hi""#]);
    let status: serde_json::Value = serde_json::from_str(&run(&["status"])).unwrap();
    assert!(status["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["space"] == "cli"));
}
