//! Cloud mode requires tokens: it refuses to start without BRIDGE_SECRET, and refuses a
//! missing, wrong-space, expired or forged token over WebSocket and HTTP; its status shows a
//! token the spaces it opens and nothing else.
#![allow(clippy::unwrap_used)]

use bridge_core::status::HostStatus;
use serde_json::json;
use tests::{bridge_cmd, http, Agent, Host, TempDir};

const SECRET: &str = "e2e-secret-0123456789";

fn mint(dir: &std::path::Path, space: &str, rights: &str, ttl: &str, secret: &str) -> String {
    tests::mint_token(dir, secret, space, rights, ttl)
}

#[test]
fn cloud_mode_without_a_secret_refuses_to_start() {
    let dir = TempDir::new("nosecret");
    let out = bridge_cmd(&dir.0)
        .args([
            "serve",
            "--mode",
            "cloud",
            "--ws-port",
            "0",
            "--api-port",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BRIDGE_SECRET"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_mode_refuses_missing_wrong_space_and_expired_tokens() {
    let dir = TempDir::new("cloud");
    let host = Host::start(&dir.0, "cloud", &[("BRIDGE_SECRET", SECRET)]);
    let url = host.ws_url("team");
    let good = mint(&dir.0, "team", "write", "1h", SECRET);
    let other = mint(&dir.0, "other", "admin", "1h", SECRET);
    let expired = mint(&dir.0, "team", "write", "0", SECRET);
    let forged = mint(&dir.0, "team", "admin", "1h", "not-the-secret");
    let reader = mint(&dir.0, "team", "read", "1h", SECRET);

    for (token, why) in [
        (None, "missing"),
        (Some(&other), "wrong space"),
        (Some(&expired), "expired"),
        (Some(&forged), "forged"),
    ] {
        let (mut a, e) = Agent::hello(&url, "team", token.map(String::as_str)).await;
        assert_eq!(e["type"], "error", "{why}: {e}");
        assert_eq!(e["code"], "unauthorized", "{why}: {e}");
        assert!(a.recv().await.is_none(), "{why}: connection closed");
    }

    let (mut a, w) = Agent::hello(&url, "team", Some(&good)).await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["tier"], "cloud");
    a.send(&json!({"type": "put", "req": 1, "collection": "c", "id": "x", "value": {"a": 1}}))
        .await;
    assert_eq!(a.recv_type("ack").await["req"], 1);

    // a read token cannot write
    let (mut r, _) = Agent::hello(&url, "team", Some(&reader)).await;
    r.send(&json!({"type": "put", "req": 1, "collection": "c", "id": "y", "value": {}}))
        .await;
    assert_eq!(r.recv_type("error").await["code"], "forbidden");

    // HTTP: the same rules with `Authorization: Bearer`
    let p = "/v1/spaces/team/docs/c/x";
    let port = host.api_port;
    assert_eq!(http(port, "GET", p, None, None).0, 401);
    assert_eq!(http(port, "GET", p, None, Some(&other)).0, 401);
    assert_eq!(http(port, "GET", p, None, Some(&expired)).0, 401);
    assert_eq!(http(port, "GET", p, None, Some(&forged)).0, 401);
    let (s, v) = http(port, "GET", p, None, Some(&good));
    assert_eq!((s, &v["value"]), (200, &json!({"a": 1})));
    let (s, v) = http(port, "PUT", p, Some("{}"), Some(&reader));
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    // a token for `team` opens nothing in `other`
    let (s, _) = http(port, "GET", "/v1/spaces/other/docs/c/x", None, Some(&good));
    assert_eq!(s, 401);

    // status: a token sees the spaces it opens and nothing of the others
    let (s, _) = http(
        port,
        "PUT",
        "/v1/spaces/other/docs/c/z",
        Some("{}"),
        Some(&other),
    );
    assert_eq!(s, 200);
    let spaces = |token: &str| {
        let (s, v) = http(port, "GET", "/v1/status", None, Some(token));
        assert_eq!(s, 200, "{v}");
        assert!(v.get("db").is_none() && v.get("stored").is_none(), "{v}");
        // The token-limited document is the core's typed status too, without host details.
        let typed: HostStatus = serde_json::from_value(v.clone()).expect("typed status");
        assert!(typed.host.is_none(), "{v}");
        assert_eq!(serde_json::to_value(&typed).expect("encodes"), v);
        let names: Vec<String> = v["spaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["space"].as_str().unwrap().to_owned())
            .collect();
        names
    };
    assert_eq!(spaces(&good), ["team"]);
    assert_eq!(spaces(&other), ["other"]);
    assert_eq!(http(port, "GET", "/v1/status", None, None).0, 401);
    assert_eq!(http(port, "GET", "/v1/status", None, Some(&forged)).0, 403);

    // `POST /v1/sync` (an operator action) needs a token that may write a space; this host
    // has no upstream link, so a good token gets the documented 404.
    let sync = |token: Option<&str>| {
        let (s, v) = http(port, "POST", "/v1/sync", None, token);
        (s, v["error"]["code"].as_str().map(str::to_owned))
    };
    assert_eq!(sync(None), (401, Some("unauthorized".into())));
    assert_eq!(sync(Some(&forged)), (403, Some("forbidden".into())));
    assert_eq!(sync(Some(&reader)), (403, Some("forbidden".into())));
    assert_eq!(sync(Some(&good)), (404, Some("not_found".into())));
}

/// A token scoped to collections (`token create --collections 'notes/*:write,audit:read'`)
/// reads and writes only what it names, by WebSocket and HTTP alike; the answers that span
/// collections (conflicts, changes, export) hold nothing else; it cannot open a replication
/// session (a replica holds the whole space).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_scoped_to_collections_opens_only_them() {
    let dir = TempDir::new("scoped");
    let host = Host::start(&dir.0, "cloud", &[("BRIDGE_SECRET", SECRET)]);
    let port = host.api_port;
    let admin = mint(&dir.0, "team", "admin", "1h", SECRET);
    for (c, id) in [("users", "u1"), ("audit", "log"), ("notes%2Fa", "n1")] {
        let (s, v) = http(
            port,
            "PUT",
            &format!("/v1/spaces/team/docs/{c}/{id}"),
            Some(r#"{"v":1}"#),
            Some(&admin),
        );
        assert_eq!(s, 200, "{v}");
    }
    // (Open conflicts to filter need two replicas; the core's tests check that filter.)
    let scoped = tests::mint_scoped(&dir.0, SECRET, "team", "notes/*:write,audit:read");
    let bad = tests::cli(
        &dir.0,
        &[
            "token",
            "create",
            "--space",
            "team",
            "--collections",
            "notes:own",
        ],
    );
    assert_ne!(bad.0, 0, "a right that does not exist is refused: {bad:?}");

    // WebSocket: an agent session opens; each request is held to its collection.
    let url = host.ws_url("team");
    let (mut a, w) = Agent::hello(&url, "team", Some(&scoped)).await;
    assert_eq!(w["type"], "welcome", "{w}");
    a.send(&json!({"type": "get", "req": 1, "collection": "users", "id": "u1"}))
        .await;
    tests::refused_collection(&mut a, 1, "users").await;
    a.send(&json!({"type": "get", "req": 2, "collection": "audit", "id": "log"}))
        .await;
    assert_eq!(a.recv_type("doc").await["doc"]["value"], json!({"v": 1}));
    a.send(
        &json!({"type": "put", "req": 3, "collection": "notes/b", "id": "n2", "value": {"w": 1}}),
    )
    .await;
    assert_eq!(a.recv_type("ack").await["req"], 3);
    a.send(&json!({"type": "put", "req": 4, "collection": "audit", "id": "x", "value": {}}))
        .await;
    assert_eq!(a.recv_type("error").await["code"], "forbidden");
    a.send(&json!({"type": "subscribe", "req": 5, "collection": "users"}))
        .await;
    assert_eq!(a.recv_type("error").await["code"], "forbidden");

    // HTTP: the same, and the answers spanning collections hold only what it reads.
    let get = |path: &str| http(port, "GET", path, None, Some(&scoped));
    assert_eq!(get("/v1/spaces/team/docs/users/u1").0, 403);
    assert_eq!(get("/v1/spaces/team/docs/users").0, 403);
    assert_eq!(get("/v1/spaces/team/conflicts?collection=users").0, 403);
    let (s, v) = get("/v1/spaces/team/docs/audit/log");
    assert_eq!((s, &v["value"]), (200, &json!({"v": 1})));
    let (s, v) = http(
        port,
        "PUT",
        "/v1/spaces/team/docs/users/u2",
        Some("{}"),
        Some(&scoped),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, v) = get("/v1/spaces/team/changes");
    assert_eq!(s, 200, "{v}");
    let mut changed: Vec<&str> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["collection"].as_str().unwrap())
        .collect();
    changed.sort();
    assert_eq!(changed, ["audit", "notes/a", "notes/b"]);
    let (s, v) = get("/v1/spaces/team/conflicts");
    assert_eq!((s, &v["conflicts"]), (200, &json!([])));
    let (s, raw) = tests::http_raw(port, "GET", "/v1/spaces/team/export", None, Some(&scoped));
    assert_eq!(s, 200);
    let exported: Vec<String> = String::from_utf8_lossy(&raw)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}/{}",
                v["collection"].as_str().unwrap(),
                v["id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        exported,
        ["_config/space", "audit/log", "notes/a/n1", "notes/b/n2"]
    );
    // The admin's export has `users` too: the filter is the token's, not the data's.
    let (_, raw) = tests::http_raw(port, "GET", "/v1/spaces/team/export", None, Some(&admin));
    assert!(String::from_utf8_lossy(&raw).contains("\"users\""));

    // A replication session (a peer's pull) cannot open with it.
    tests::peer_refused(&url, "team", &scoped).await;
}
