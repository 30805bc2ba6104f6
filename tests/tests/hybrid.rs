//! A hybrid host keeps an upstream link to a cloud-mode host: documents and messages flow
//! both ways, each message reaches each side once, and the link comes back after the cloud
//! restarts.
#![allow(clippy::unwrap_used)]

use bridge_core::status::HostStatus;
use serde_json::json;
use tests::{bridge_cmd, cli, http, mint_token, Agent, Host, TempDir, PAIR_SECRET};

use tests::{eventually, start_hybrid, start_pair, wait_link_up, wait_space, Pair};

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
    // Each side reads until the other's message arrived, then sends an end marker and reads
    // until the other's marker. A side sends its marker only after its host delivered the
    // other's message, so any duplicate or echo of either message travels each link before
    // the marker that follows it: what a side read before the marker is all it ever gets.
    let mut got_local = broadcasts_until(&mut la, "down").await;
    let mut got_cloud = broadcasts_until(&mut ca, "up").await;
    la.send(&json!({"type": "send", "req": 3, "channel": "chat", "payload": "end-local"}))
        .await;
    ca.send(&json!({"type": "send", "req": 3, "channel": "chat", "payload": "end-cloud"}))
        .await;
    got_local.extend(broadcasts_until(&mut la, "end-cloud").await);
    got_cloud.extend(broadcasts_until(&mut ca, "end-local").await);
    assert_eq!(
        got_local,
        [json!("down"), json!("end-cloud")],
        "local agent gets each cloud message once, and none of its own"
    );
    assert_eq!(
        got_cloud,
        [json!("up"), json!("end-local")],
        "cloud agent gets each local message once, and none of its own"
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

/// The payloads of the `broadcast` frames `a` reads, up to and including `last` (each read
/// is bounded by [`Agent::recv`]).
async fn broadcasts_until(a: &mut Agent, last: &str) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    loop {
        let b = a.recv_type("broadcast").await;
        let payload = b["message"]["payload"].clone();
        got.push(payload.clone());
        if payload == last {
            return got;
        }
    }
}

/// A cloud agent listening on channel `barrier` (which no trigger lists), to tell when the
/// upstream link has carried everything the hybrid host sent before a given moment.
struct Barrier {
    cloud_agent: Agent,
    n: u64,
}

impl Barrier {
    async fn new(cloud: &Host, token: Option<&str>) -> Barrier {
        let (mut cloud_agent, w) = Agent::hello(&cloud.ws_url("proj"), "proj", token).await;
        assert_eq!(w["type"], "welcome", "{w}");
        cloud_agent
            .send(&json!({"type": "subscribe", "req": 1, "channel": "barrier"}))
            .await;
        cloud_agent.recv_type("ack").await;
        Barrier { cloud_agent, n: 0 }
    }

    /// Sends a message on `barrier` from the hybrid host and waits until the cloud delivers
    /// it. Messages go up at once in every sync mode, on the same link as pushes, and the
    /// cloud handles that link's frames in order: whatever the hybrid host pushed before this
    /// call is on the cloud when it returns.
    async fn pass(&mut self, local: &Host) {
        self.n += 1;
        let (s, v) = local.http(
            "POST",
            "/v1/spaces/proj/messages/barrier",
            Some(&self.n.to_string()),
        );
        assert_eq!(s, 200, "{v}");
        loop {
            let b = self.cloud_agent.recv_type("broadcast").await;
            if b["message"]["payload"] == self.n {
                return;
            }
        }
    }
}

/// The hybrid host's upstream link in space `proj`, from its `/v1/status`.
fn proj_link(local: &Host) -> serde_json::Value {
    let v = http(local.api_port, "GET", "/v1/status", None, None).1;
    v["spaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["space"] == "proj")
        .map(|s| s["upstream"].clone())
        .unwrap_or_else(|| panic!("no space proj: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_sync_mode_pushes_only_when_asked() {
    let Pair {
        cloud,
        local,
        token,
        _dirs,
    } = start_pair(&[("SYNC_MODE", "manual")]);
    let tok = Some(token.as_str());
    wait_link_up(&local);
    let mut barrier = Barrier::new(&cloud, tok).await;
    let (s, _) = local.http("PUT", "/v1/spaces/proj/docs/n/held", Some(r#"{"x":1}"#));
    assert_eq!(s, 200);
    barrier.pass(&local).await;
    let link = proj_link(&local);
    assert!(link["pending"].as_u64().unwrap() >= 1, "{link}");
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
        err.contains("push: ") && err.contains("synced; last successful sync"),
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
    let mut barrier = Barrier::new(&cloud, tok).await;
    // Held: no trigger fired (the count of event pushes is still `pushes`, read before the
    // writes), and once the link has carried everything sent so far, the document is not on
    // the cloud.
    async fn held(
        barrier: &mut Barrier,
        local: &Host,
        on_cloud: impl Fn(&str) -> u16,
        path: &str,
        pushes: u64,
        why: &str,
    ) {
        let link = proj_link(local);
        assert_eq!(link["event_pushes"], pushes, "{why}: {link}");
        barrier.pass(local).await;
        assert_eq!(on_cloud(&format!("/v1/spaces/proj/{path}")), 404, "{why}");
    }

    let event_pushes = || proj_link(&local)["event_pushes"].as_u64().unwrap();

    // A write to a collection that is not a trigger waits.
    let pushes = event_pushes();
    local_ok("PUT", "docs/notes/a", r#"{"x":1}"#);
    held(
        &mut barrier,
        &local,
        on_cloud,
        "docs/notes/a",
        pushes,
        "not a trigger: held",
    )
    .await;

    // A durable write to a listed collection pushes, and takes everything waiting with it.
    local_ok("PUT", "docs/orders/o1", r#"{"n":1}"#);
    reaches_cloud("docs/orders/o1");
    reaches_cloud("docs/notes/a");

    // A message on a channel that is not listed pushes nothing.
    let pushes = event_pushes();
    local_ok("PUT", "docs/notes/b", r#"{"x":2}"#);
    local_ok("POST", "messages/chat", r#""hi""#);
    held(
        &mut barrier,
        &local,
        on_cloud,
        "docs/notes/b",
        pushes,
        "chat is not a trigger",
    )
    .await;

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

/// A hybrid host links every space it serves, each with a token for that space alone: from
/// `BRIDGE_TOKEN` or `CLOUD_TOKENS_FILE` (the space is read from each token), including
/// spaces first opened after start. A space without a usable token shows as not linked,
/// with the reason, in `/v1/status` and `sacred-bridge status`.
#[test]
fn hybrid_links_every_space_it_serves() {
    let cloud_dir = TempDir::new("cloud");
    let local_dir = TempDir::new("hybrid");
    let cloud = Host::start(&cloud_dir.0, "cloud", &[("BRIDGE_SECRET", PAIR_SECRET)]);
    let mint =
        |space: &str, rights: &str| mint_token(&cloud_dir.0, PAIR_SECRET, space, rights, "1h");
    let proj = mint("proj", "admin");
    let team = mint("team", "admin");
    let readonly = mint("ro", "write");
    // Signed with another secret than the cloud's: the cloud refuses it.
    let forged = mint_token(
        &cloud_dir.0,
        "not-the-cloud-secret",
        "forged",
        "admin",
        "1h",
    );
    std::fs::write(
        local_dir.0.join("cloud-tokens"),
        format!("# one token per line; each names its space\n{team}\n\n{readonly}\n{forged}\n"),
    )
    .unwrap();
    let cloud_url = format!("ws://127.0.0.1:{}", cloud.ws_port);
    let mut local = start_hybrid(
        &local_dir.0,
        &cloud_url,
        &proj,
        &[("CLOUD_TOKENS_FILE", "cloud-tokens")],
    );
    let on_cloud = |space: &str, token: &str, id: &str, from: &'static str| {
        eventually(
            cloud.api_port,
            &format!("/v1/spaces/{space}/docs/notes/{id}"),
            Some(token),
            move |s, v| s == 200 && v["value"]["from"] == from,
        );
    };
    let on_local = |space: &str, id: &str, from: &'static str| {
        eventually(
            local.api_port,
            &format!("/v1/spaces/{space}/docs/notes/{id}"),
            None,
            move |s, v| s == 200 && v["value"]["from"] == from,
        );
    };

    // Both spaces, both ways. `team` does not exist on the hybrid host until this write.
    for (space, token) in [("proj", &proj), ("team", &team)] {
        let (s, v) = local.http(
            "PUT",
            &format!("/v1/spaces/{space}/docs/notes/up"),
            Some(r#"{"from":"local"}"#),
        );
        assert_eq!(s, 200, "{v}");
        on_cloud(space, token, "up", "local");
        let (s, v) = http(
            cloud.api_port,
            "PUT",
            &format!("/v1/spaces/{space}/docs/notes/down"),
            Some(r#"{"from":"cloud"}"#),
            Some(token),
        );
        assert_eq!(s, 200, "{v}");
        on_local(space, "down", "cloud");
    }

    // Spaces without a usable token stay local, and status says why.
    for space in ["solo", "ro", "forged"] {
        let (s, v) = local.http(
            "PUT",
            &format!("/v1/spaces/{space}/docs/notes/x"),
            Some(r#"{"from":"local"}"#),
        );
        assert_eq!(s, 200, "{v}");
    }
    let link = |v: &serde_json::Value, space: &str| -> serde_json::Value {
        v["spaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["space"] == space)
            .map(|s| s["upstream"].clone())
            .unwrap_or_default()
    };
    let v = eventually(local.api_port, "/v1/status", None, |_, v| {
        ["proj", "team"]
            .iter()
            .all(|s| link(v, s)["state"] == "connected" && link(v, s)["pending"] == 0)
            && link(v, "solo")["state"] == "not_linked"
            && link(v, "ro")["state"] == "not_linked"
            && link(v, "forged")["reason"]
                .as_str()
                .is_some_and(|r| r.contains("unauthorized"))
    });
    // A link the cloud refuses stays `connecting`, retrying with backoff, and says why.
    assert_eq!(link(&v, "forged")["state"], "connecting", "{v}");
    // The whole document, with links in every state, is the core's typed status exactly:
    // what the CLI, `monitor` and MCP read back is what the host sent.
    let typed: HostStatus = serde_json::from_value(v.clone()).expect("typed status");
    assert!(typed.host.is_some(), "{v}");
    assert_eq!(serde_json::to_value(&typed).expect("encodes"), v);
    let solo = link(&v, "solo");
    assert!(
        solo["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no token") && r.contains("CLOUD_TOKENS_FILE")),
        "{solo}"
    );
    let ro = link(&v, "ro");
    assert!(
        ro["reason"].as_str().is_some_and(|r| r.contains("admin")),
        "{ro}"
    );
    // Nothing of the unlinked or refused spaces reached the cloud.
    for space in ["solo", "ro", "forged"] {
        let (s, v) = http(
            cloud.api_port,
            "GET",
            &format!("/v1/spaces/{space}/docs/notes/x"),
            None,
            Some(&mint(space, "read")),
        );
        assert_eq!(s, 404, "{space}: {v}");
    }

    // `sacred-bridge status` shows the same links.
    let (code, out, err) = cli(
        &local_dir.0,
        &[
            "status",
            "--api",
            &format!("http://127.0.0.1:{}", local.api_port),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(link(&st, "team")["state"], "connected", "{st}");
    assert_eq!(link(&st, "solo")["state"], "not_linked", "{st}");

    // After a restart, spaces restored from the database are linked at once: a cloud write
    // to `team` arrives before anything here touches `team` (status opens no space).
    local.restart();
    let (s, v) = http(
        cloud.api_port,
        "PUT",
        "/v1/spaces/team/docs/notes/later",
        Some(r#"{"from":"cloud"}"#),
        Some(&team),
    );
    assert_eq!(s, 200, "{v}");
    eventually(local.api_port, "/v1/status", None, |_, v| {
        v["spaces"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["space"] == "team" && s["upstream"]["state"] == "connected")
    });
    eventually(
        local.api_port,
        "/v1/spaces/team/docs/notes/later",
        None,
        |s, v| s == 200 && v["value"]["from"] == "cloud",
    );
}

/// The stable horizon between real hosts: once both are quiet, the cloud (the root) and the
/// hybrid host (which follows it) show a horizon covering every write of both, and each
/// tracks the peers that dialed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stable_horizon_covers_both_hosts_writes_once_quiet() {
    let Pair {
        cloud,
        local,
        token,
        _dirs,
    } = start_pair(&[]);
    let tok = Some(token.as_str());
    let (s, v) = local.http("PUT", "/v1/spaces/proj/docs/notes/l", Some(r#"{"n":1}"#));
    assert_eq!(s, 200, "{v}");
    let (s, v) = http(
        cloud.api_port,
        "PUT",
        "/v1/spaces/proj/docs/notes/c",
        Some(r#"{"n":2}"#),
        tok,
    );
    assert_eq!(s, 200, "{v}");
    let c = tests::wait_horizon_at_cursor(cloud.api_port, tok, "proj", 2);
    let l = tests::wait_horizon_at_cursor(local.api_port, None, "proj", 2);
    assert_eq!(c["cursor"], l["cursor"]);
    assert_eq!(c["tracked_peers"], 1, "the cloud tracks the hybrid host");
    assert_eq!(l["tracked_peers"], 0, "nobody dialed the hybrid host");
    // The hybrid host writes last: its report overtakes the push carrying the write, and
    // the horizon still reaches it once the push is taken.
    let (s, v) = local.http("PUT", "/v1/spaces/proj/docs/notes/last", Some(r#"{"n":3}"#));
    assert_eq!(s, 200, "{v}");
    let before = c["cursor"].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let c = loop {
        let c = tests::wait_horizon_at_cursor(cloud.api_port, tok, "proj", 2);
        if c["cursor"] != before {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cloud never got the write"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let l = tests::wait_horizon_at_cursor(local.api_port, None, "proj", 2);
    assert_eq!(c["cursor"], l["cursor"]);
}

/// Collection between real hosts, both with `COLLECT_TOMBSTONES=1`: documents deleted on the
/// hybrid host leave both databases once the deletion is below the horizon; one written
/// again on the cloud comes back everywhere as a new document; a restart brings nothing
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_documents_leave_both_databases_once_stable() {
    let cloud_dir = TempDir::new("cloud-collect");
    let local_dir = TempDir::new("hybrid-collect");
    let collect = ("COLLECT_TOMBSTONES", "1");
    let cloud = Host::start(
        &cloud_dir.0,
        "cloud",
        &[("BRIDGE_SECRET", PAIR_SECRET), collect],
    );
    let token = mint_token(&cloud_dir.0, PAIR_SECRET, "proj", "admin", "1h");
    let cloud_url = format!("ws://127.0.0.1:{}", cloud.ws_port);
    let mut local = start_hybrid(&local_dir.0, &cloud_url, &token, &[collect]);
    let tok = Some(token.as_str());
    for i in 0..10 {
        let path = format!("/v1/spaces/proj/docs/notes/d{i}");
        let (s, v) = local.http("PUT", &path, Some(&format!(r#"{{"n":{i}}}"#)));
        assert_eq!(s, 200, "{v}");
    }
    for i in 0..5 {
        let (s, v) = local.http("DELETE", &format!("/v1/spaces/proj/docs/notes/d{i}"), None);
        assert_eq!(s, 200, "{v}");
    }
    // Both hosts collect the five once the horizon covers the deletions (two quiet rounds
    // of reports), and their databases hold the five live documents and `_config/space`.
    let c = wait_space(
        cloud.api_port,
        tok,
        "proj",
        "the cloud never collected",
        |c| c["collected"] == 5,
    );
    let l = wait_space(
        local.api_port,
        None,
        "proj",
        "the hybrid never collected",
        |l| l["collected"] == 5,
    );
    assert_eq!(
        (c["collects"].clone(), l["collects"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(c["docs"], 6, "{c}");
    assert_eq!(l["docs"], 6, "{l}");
    for port in [cloud.api_port, local.api_port] {
        let (s, _) = http(port, "GET", "/v1/spaces/proj/docs/notes/d1", None, tok);
        assert_eq!(s, 404);
        let (s, v) = http(port, "GET", "/v1/spaces/proj/docs/notes/d7", None, tok);
        assert_eq!((s, v["value"]["n"].clone()), (200, json!(7)));
    }
    // Written again on the cloud: a new document on both.
    let (s, v) = http(
        cloud.api_port,
        "PUT",
        "/v1/spaces/proj/docs/notes/d0",
        Some(r#"{"again":true}"#),
        tok,
    );
    assert_eq!(s, 200, "{v}");
    eventually(
        local.api_port,
        "/v1/spaces/proj/docs/notes/d0",
        None,
        |s, v| s == 200 && v["value"]["again"] == true,
    );
    // A restart of the hybrid host brings no deleted document back, on either side.
    local.kill9();
    local.restart();
    wait_link_up(&local);
    for i in 1..5 {
        for port in [cloud.api_port, local.api_port] {
            let (s, v) = http(
                port,
                "GET",
                &format!("/v1/spaces/proj/docs/notes/d{i}"),
                None,
                tok,
            );
            assert_eq!(s, 404, "d{i} on port {port}: {v}");
        }
    }
    let (s, v) = local.http("GET", "/v1/spaces/proj/docs/notes/d0", None);
    assert_eq!((s, v["value"]["again"].clone()), (200, json!(true)));
}

/// Expiry and resync between real hosts: the cloud collects and gives up on a hybrid host
/// gone longer than `REPLICA_EXPIRY_MS`; a document deleted on the cloud meanwhile is
/// collected there; the hybrid host comes back holding it, is resynced, and drops it, while
/// keeping what it still holds of the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_back_after_its_expiry_is_resynced_and_drops_what_was_collected() {
    let cloud_dir = TempDir::new("cloud-expiry");
    let local_dir = TempDir::new("hybrid-expiry");
    let cloud = Host::start(
        &cloud_dir.0,
        "cloud",
        &[
            ("BRIDGE_SECRET", PAIR_SECRET),
            ("COLLECT_TOMBSTONES", "1"),
            ("REPLICA_EXPIRY_MS", "500"),
        ],
    );
    let token = mint_token(&cloud_dir.0, PAIR_SECRET, "proj", "admin", "1h");
    let tok = Some(token.as_str());
    let cloud_url = format!("ws://127.0.0.1:{}", cloud.ws_port);
    let mut local = start_hybrid(
        &local_dir.0,
        &cloud_url,
        &token,
        &[("COLLECT_TOMBSTONES", "1")],
    );
    for id in ["x", "y"] {
        let (s, v) = local.http(
            "PUT",
            &format!("/v1/spaces/proj/docs/notes/{id}"),
            Some(r#"{"n":1}"#),
        );
        assert_eq!(s, 200, "{v}");
    }
    eventually(
        cloud.api_port,
        "/v1/spaces/proj/docs/notes/y",
        tok,
        |s, _| s == 200,
    );
    tests::wait_horizon_at_cursor(local.api_port, None, "proj", 2);
    local.kill9();
    // Gone: the cloud deletes `x`, gives up on the hybrid host after the expiry, and
    // collects the deletion.
    let (s, v) = http(
        cloud.api_port,
        "DELETE",
        "/v1/spaces/proj/docs/notes/x",
        None,
        tok,
    );
    assert_eq!(s, 200, "{v}");
    let c = wait_space(cloud.api_port, tok, "proj", "not collected", |c| {
        c["collected"] == 1
    });
    assert_eq!(c["tracked_peers"], 0, "the hybrid host expired: {c}");
    // Back with its old copy of `x`: resynced, it drops it; `y` stays.
    local.restart();
    wait_link_up(&local);
    eventually(
        local.api_port,
        "/v1/spaces/proj/docs/notes/x",
        None,
        |s, _| s == 404,
    );
    let (s, v) = local.http("GET", "/v1/spaces/proj/docs/notes/y", None);
    assert_eq!((s, v["value"]["n"].clone()), (200, json!(1)));
    // And it syncs as before: a write on either side reaches the other.
    let (s, v) = local.http("PUT", "/v1/spaces/proj/docs/notes/z", Some(r#"{"n":3}"#));
    assert_eq!(s, 200, "{v}");
    eventually(
        cloud.api_port,
        "/v1/spaces/proj/docs/notes/z",
        tok,
        |s, _| s == 200,
    );
    let (s, _) = http(
        cloud.api_port,
        "GET",
        "/v1/spaces/proj/docs/notes/x",
        None,
        tok,
    );
    assert_eq!(s, 404, "nothing came back to the cloud");
}

/// A hybrid host with `SYNC_COLLECTIONS` replicates only those collections from its cloud,
/// still sends its writes to others up, shows its subscription in its status, and refuses
/// to start on the same database with other collections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hybrid_host_with_sync_collections_replicates_only_those() {
    let cloud_dir = TempDir::new("cloud");
    let local_dir = TempDir::new("hybrid");
    let cloud = Host::start(&cloud_dir.0, "cloud", &[("BRIDGE_SECRET", PAIR_SECRET)]);
    let token = mint_token(&cloud_dir.0, PAIR_SECRET, "proj", "admin", "1h");
    let tok = Some(token.as_str());
    let put = |port: u16, path: &str, token: Option<&str>| {
        let (s, v) = http(
            port,
            "PUT",
            &format!("/v1/spaces/proj/docs/{path}"),
            Some("{}"),
            token,
        );
        assert_eq!(s, 200, "{path}: {v}");
    };
    for path in ["notes/n1", "todo/t1", "users/u1"] {
        put(cloud.api_port, path, tok);
    }
    let url = format!("ws://127.0.0.1:{}", cloud.ws_port);
    let mut local = start_hybrid(
        &local_dir.0,
        &url,
        &token,
        &[("SYNC_COLLECTIONS", "notes, todo")],
    );
    wait_link_up(&local);
    let doc = |port: u16, path: &str, token: Option<&str>| {
        http(
            port,
            "GET",
            &format!("/v1/spaces/proj/docs/{path}"),
            None,
            token,
        )
        .0
    };
    eventually(
        local.api_port,
        "/v1/spaces/proj/docs/todo/t1",
        None,
        |s, _| s == 200,
    );
    assert_eq!(doc(local.api_port, "notes/n1", None), 200);
    assert_eq!(doc(local.api_port, "users/u1", None), 404);
    // Its writes go up, to its collections and to others.
    put(local.api_port, "users/u2", None);
    put(local.api_port, "notes/n2", None);
    for path in ["users/u2", "notes/n2"] {
        eventually(
            cloud.api_port,
            &format!("/v1/spaces/proj/docs/{path}"),
            tok,
            |s, _| s == 200,
        );
    }
    // Down, only its collections: `users/u3` is written before `notes/n3`, and is not there
    // when `notes/n3` is.
    put(cloud.api_port, "users/u3", tok);
    put(cloud.api_port, "notes/n3", tok);
    eventually(
        local.api_port,
        "/v1/spaces/proj/docs/notes/n3",
        None,
        |s, _| s == 200,
    );
    assert_eq!(doc(local.api_port, "users/u3", None), 404);
    let (s, v) = local.http("GET", "/v1/status", None);
    assert_eq!(s, 200, "{v}");
    let proj = v["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["space"] == "proj")
        .cloned()
        .unwrap();
    assert_eq!(
        proj["upstream"]["collections"],
        json!(["notes", "todo"]),
        "{proj}"
    );
    // The same database with other collections: the host changes what it replicates
    // with the cloud (`users` added, `todo` dropped) and says so in `status`.
    local.kill9();
    let local = start_hybrid(
        &local_dir.0,
        &url,
        &token,
        &[("SYNC_COLLECTIONS", "users,notes")],
    );
    for path in ["users/u1", "users/u3"] {
        eventually(
            local.api_port,
            &format!("/v1/spaces/proj/docs/{path}"),
            None,
            |s, _| s == 200,
        );
    }
    let settled = |v: &serde_json::Value| {
        v["spaces"].as_array().is_some_and(|a| {
            a.iter().any(|s| {
                s["space"] == "proj"
                    && s["upstream"]["collections"] == json!(["notes", "users"])
                    && s["upstream"].get("replicating").is_none()
                    && s["upstream"].get("forgetting").is_none()
            })
        })
    };
    eventually(local.api_port, "/v1/status", None, |s, v| {
        s == 200 && settled(v)
    });
    assert_eq!(doc(local.api_port, "todo/t1", None), 404);
    assert_eq!(doc(local.api_port, "notes/n3", None), 200);
    // What it wrote to `users` before is the cloud's document now, and a new write there
    // still goes up; `todo` no longer comes down.
    put(cloud.api_port, "todo/t2", tok);
    put(cloud.api_port, "users/u4", tok);
    eventually(
        local.api_port,
        "/v1/spaces/proj/docs/users/u4",
        None,
        |s, _| s == 200,
    );
    assert_eq!(doc(local.api_port, "todo/t2", None), 404);
    assert_eq!(doc(local.api_port, "users/u2", None), 200);
    // A store of part of the space stays one: started without SYNC_COLLECTIONS, it refuses.
    let mut local = local;
    local.kill9();
    let out = bridge_cmd(&local_dir.0)
        .args([
            "serve",
            "--mode",
            "hybrid",
            "--ws-port",
            "0",
            "--api-port",
            "0",
            "--db",
        ])
        .arg(&local.db)
        .env("CLOUD_WS_URL", &url)
        .env("CLOUD_PROJECT_ID", "proj")
        .env("BRIDGE_TOKEN", &token)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stays a store of part of it"), "{err}");
}
