//! What docs/protocol.md promises, checked against a real host (issue 8, items 5, 6, 8):
//! errors name the request they answer, input errors close with codes that do not say
//! "reconnect", HTTP paths decode like URLs (not forms), list limits are checked, `watch`
//! prints each change once, `POST /v1/sync` and the CLI agree, `/metrics` needs a token in
//! cloud mode.
#![allow(clippy::unwrap_used)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tests::{bridge_cmd, cli, eventually, http, Agent, Host, TempDir};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::Message;

/// Reads until the server closes; returns the `error` frames seen and the close code
/// (`None` when the connection ended without a close frame).
async fn until_close(a: &mut Agent) -> (Vec<Value>, Option<u16>) {
    let mut errors = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), a.ws.next())
            .await
            .expect("no close within 30 s");
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "error" {
                    errors.push(v);
                }
            }
            Some(Ok(Message::Close(c))) => return (errors, c.map(|c| u16::from(c.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (errors, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_errors_carry_their_req() {
    let dir = TempDir::new("req");
    let host = Host::start(&dir.0, "local", &[]);
    let (mut a, w) = Agent::hello(&host.ws_url("s"), "s", None).await;
    assert_eq!(w["type"], "welcome");
    let big = format!(
        r#"{{"type":"put","req":10,"collection":"c","id":"big","value":{{"x":"{}"}}}}"#,
        "a".repeat(1_200_000)
    );
    let frames = [
        r#"{"type":"teleport","req":1}"#.to_owned(),
        r#"{"type":"ping","v":2,"req":2}"#.to_owned(),
        r#"{"type":"put","req":3,"collection":"c"}"#.to_owned(),
        r#"{"type":"list","req":4,"collection":"c","limit":-1}"#.to_owned(),
        r#"{"type":"set_policy","req":5,"collection":"c","policy":"newest"}"#.to_owned(),
        r#"{"type":"list","req":6,"collection":"c","limit":0}"#.to_owned(),
        r#"{"type":"list","req":7,"collection":"c","limit":1001}"#.to_owned(),
        r#"{"type":"set_policy","req":8,"collection":"c","policy":"manual"}"#.to_owned(),
        r#"{"type":"list","req":9,"collection":"c","limit":1000}"#.to_owned(),
        big,
        r#"{"type":"hello","req":11,"space":"s","kind":"nobody"}"#.to_owned(),
    ];
    for f in frames {
        a.send_raw(Message::Text(f.into())).await;
    }
    let mut answers: BTreeMap<u64, (String, String)> = BTreeMap::new();
    while answers.len() < 11 {
        let v = a.recv().await.expect("the session stays open");
        if v["type"] == "presence" {
            continue;
        }
        let req = v["req"]
            .as_u64()
            .unwrap_or_else(|| panic!("an answer without req: {v}"));
        let code = v["code"].as_str().unwrap_or_default().to_owned();
        answers.insert(req, (v["type"].as_str().unwrap().to_owned(), code));
    }
    let expect = |t: &str, c: &str| (t.to_owned(), c.to_owned());
    let want: BTreeMap<u64, (String, String)> = [
        (1, expect("error", "unknown_type")),
        (2, expect("error", "unsupported_version")),
        (3, expect("error", "malformed")),
        (4, expect("error", "malformed")),
        (5, expect("error", "bad_policy")),
        (6, expect("error", "bad_request")),
        (7, expect("error", "bad_request")),
        (8, expect("ack", "")),
        (9, expect("docs", "")),
        (10, expect("error", "too_large")),
        // A known type with a bad enum value is malformed, not an unknown type.
        (11, expect("error", "malformed")),
    ]
    .into_iter()
    .collect();
    assert_eq!(answers, want);
    // The policy set over WebSocket is the one HTTP sees.
    a.send(&json!({"type": "get", "req": 12, "collection": "_config", "id": "collection:c"}))
        .await;
    assert_eq!(a.recv_type("doc").await["doc"]["value"]["policy"], "manual");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_errors_close_with_input_codes_not_reconnect() {
    let dir = TempDir::new("close");
    let host = Host::start(&dir.0, "local", &[]);
    let url = host.ws_url("s");

    // A text message of 16 MiB or more: too_large, then 1009.
    let (mut a, _) = Agent::hello(&url, "s", None).await;
    let huge = format!(
        r#"{{"type":"put","req":1,"collection":"c","id":"x","value":{{"x":"{}"}}}}"#,
        "a".repeat(17 << 20)
    );
    // The host may refuse before it has read everything; the answer must still arrive.
    let _ = a.ws.send(Message::Text(huge.into())).await;
    let (errors, code) = until_close(&mut a).await;
    assert_eq!(code, Some(1009), "errors: {errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["code"], "too_large");

    // A text message that is not UTF-8: malformed, then 1007.
    let (mut b, _) = Agent::hello(&url, "s", None).await;
    let bad = WsFrame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    b.ws.send(Message::Frame(bad)).await.unwrap();
    let (errors, code) = until_close(&mut b).await;
    assert_eq!(code, Some(1007), "errors: {errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["code"], "malformed");

    // The host is fine and nothing was stored.
    let (mut c, _) = Agent::hello(&url, "s", None).await;
    c.send(&json!({"type": "get", "req": 1, "collection": "c", "id": "x"}))
        .await;
    assert_eq!(c.recv_type("doc").await["doc"]["value"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_paths_decode_as_urls_and_limits_are_checked() {
    let dir = TempDir::new("paths");
    let host = Host::start(&dir.0, "local", &[]);
    let (s, v) = host.http("PUT", "/v1/spaces/s/docs/c/a+b", Some(r#"{"n":1}"#));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["doc"]["id"], "a+b");
    // The same document over WebSocket and over HTTP with `+` percent-encoded.
    let (mut a, _) = Agent::hello(&host.ws_url("s"), "s", None).await;
    a.send(&json!({"type": "get", "req": 1, "collection": "c", "id": "a+b"}))
        .await;
    assert_eq!(a.recv_type("doc").await["doc"]["value"], json!({"n": 1}));
    assert_eq!(host.http("GET", "/v1/spaces/s/docs/c/a%2Bb", None).0, 200);
    assert_eq!(host.http("GET", "/v1/spaces/s/docs/c/a%20b", None).0, 404);
    // Query strings are forms: `+` is a space there.
    let (s, v) = host.http("GET", "/v1/spaces/s/docs/c?after=a+a", None);
    assert_eq!((s, v["docs"][0]["id"].as_str()), (200, Some("a+b")));

    for (path, status) in [
        ("/v1/spaces/s/docs/c?limit=0", 400),
        ("/v1/spaces/s/docs/c?limit=1001", 400),
        ("/v1/spaces/s/docs/c?limit=-1", 400),
        ("/v1/spaces/s/docs/c?limit=1000", 200),
        ("/v1/spaces/s/changes?limit=0", 400),
        ("/v1/spaces/s/changes?limit=10001", 400),
        ("/v1/spaces/s/changes?limit=10000", 200),
    ] {
        let (s, v) = host.http("GET", path, None);
        assert_eq!(s, status, "{path}: {v}");
        if s == 400 {
            assert_eq!(v["error"]["code"], "bad_request", "{path}: {v}");
        }
    }

    // A changes cursor passed back gives nothing new and the same cursor, not an older one.
    let (_, v) = host.http("GET", "/v1/spaces/s/changes?since=", None);
    let cursor = v["cursor"].as_str().unwrap().to_owned();
    assert!(!cursor.is_empty());
    let (_, v) = host.http("GET", &format!("/v1/spaces/s/changes?since={cursor}"), None);
    assert_eq!(v, json!({"changes": [], "cursor": cursor, "remaining": 0}));
}

#[test]
fn sync_without_a_link_fails_over_http_and_in_the_cli() {
    let dir = TempDir::new("nolink");
    let host = Host::start(&dir.0, "local", &[]);
    let (s, v) = host.http("POST", "/v1/sync", None);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let api = format!("http://127.0.0.1:{}", host.api_port);
    let (code, out, err) = cli(&dir.0, &["sync", "--api", &api]);
    assert_eq!(code, 1, "stdout {out} stderr {err}");
    assert!(err.contains("no upstream link"), "{err}");
}

#[test]
fn metrics_need_a_token_in_cloud_mode() {
    let dir = TempDir::new("metrics-cloud");
    let secret = ("BRIDGE_SECRET", "metrics-secret-0123456789");
    let cloud = Host::start(&dir.0, "cloud", &[secret]);
    let (s, v) = cloud.http("GET", "/metrics", None);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );

    let dir2 = TempDir::new("metrics-token");
    let cloud = Host::start(
        &dir2.0,
        "cloud",
        &[secret, ("METRICS_TOKEN", "scrape-me-0123")],
    );
    let get = |t: Option<&str>| http(cloud.api_port, "GET", "/metrics", None, t);
    let (s, v) = get(None);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(get(Some("scrape-me-0124")).0, 401);
    let (s, v) = get(Some("scrape-me-0123"));
    assert_eq!(s, 200);
    assert!(v
        .as_str()
        .unwrap()
        .contains("sacred_bridge_frames_in_total"));

    // Local mode listens on 127.0.0.1: open unless a token is set.
    let dir3 = TempDir::new("metrics-local");
    let local = Host::start(&dir3.0, "local", &[]);
    assert_eq!(local.http("GET", "/metrics", None).0, 200);
}

/// A running `sacred-bridge watch`, its output lines on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(host: &Host, since: Option<&str>) -> Watch {
        let api = format!("http://127.0.0.1:{}", host.api_port);
        let mut cmd = bridge_cmd(&host.dir);
        cmd.args(["watch", "--space", "s", "--api", &api, "--interval", "20"]);
        if let Some(s) = since {
            cmd.args(["--since", s]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        // `watch` says where it starts before it polls: after this, writes are "new".
        let first = erx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(first.contains("watching"), "{first}");
        Watch { child, lines }
    }

    /// Document ids printed, up to and including `last`.
    fn ids_until(&self, last: &str) -> Vec<String> {
        let mut ids = Vec::new();
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("`{last}` not printed; so far {ids:?}"));
            let v: Value = serde_json::from_str(&l).unwrap();
            let id = v["id"].as_str().unwrap().to_owned();
            ids.push(id.clone());
            if id == last {
                return ids;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A counter's value in a `/metrics` answer (0 when absent).
fn metric(body: &Value, name: &str) -> u64 {
    body.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The API requests `host` has served so far.
fn api_requests(host: &Host) -> u64 {
    let (s, v) = host.http("GET", "/metrics", None);
    assert_eq!(s, 200, "{v}");
    metric(&v, "sacred_bridge_api_requests_total")
}

#[test]
fn watch_prints_each_change_once_from_its_cursor() {
    let dir = TempDir::new("watch");
    let host = Host::start(&dir.0, "local", &[]);
    let put = |id: &str| {
        let (s, v) = host.http("PUT", &format!("/v1/spaces/s/docs/c/{id}"), Some("{}"));
        assert_eq!(s, 200, "{v}");
    };
    put("a");
    let (_, v) = host.http("GET", "/v1/spaces/s/changes?since=", None);
    let after_a = v["cursor"].as_str().unwrap().to_owned();
    put("b");

    let everything = Watch::start(&host, Some(""));
    let now = Watch::start(&host, None);
    let from_a = Watch::start(&host, Some(&after_a));
    for id in ["x", "y", "z"] {
        put(id);
    }
    assert_eq!(everything.ids_until("z"), ["a", "b", "x", "y", "z"]);
    assert_eq!(now.ids_until("z"), ["x", "y", "z"]);
    assert_eq!(from_a.ids_until("z"), ["b", "x", "y", "z"]);
    // Let the watchers poll many times over what they have printed, counted by the host
    // (every poll is one `GET /changes`, one API request; `/metrics` is not one), then write
    // once more: the next line of each must be that write, nothing printed again.
    let polled = api_requests(&host);
    eventually(host.api_port, "/metrics", None, |s, v| {
        s == 200 && metric(v, "sacred_bridge_api_requests_total") >= polled + 30
    });
    put("end");
    for w in [&everything, &now, &from_a] {
        assert_eq!(w.ids_until("end"), ["end"]);
    }
}

/// docs/protocol.md section 8: a binary peer whose `hello` ends before `compact` (a build
/// from before the compact `push`) gets a `welcome` that ends before it too (byte for byte
/// what such a build reads) and expanded pushes (tag 3); one whose `hello` says `compact`
/// gets `"compact":true` and compact pushes (tag 33). Both carry the same document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_take_the_form_the_peer_reads() {
    use bridge_core::codec::{decode_binary, encode_binary};
    use bridge_core::frame::{Hello, SessionKind};
    use bridge_core::{Frame, ReplicaId, Tier, VersionVector};
    let dir = TempDir::new("push-forms");
    let host = Host::start(&dir.0, "local", &[]);
    let (s, v) = host.http(
        "PUT",
        "/v1/spaces/s/docs/notes/a",
        Some(r#"{"title":"hi"}"#),
    );
    assert_eq!(s, 200, "{v}");
    for (i, compact) in [None, Some(true)].into_iter().enumerate() {
        let (mut ws, _) = tokio_tungstenite::connect_async(host.ws_url("s"))
            .await
            .unwrap();
        let hello = Frame::Hello(Hello {
            space: "s".into(),
            kind: SessionKind::Peer,
            name: Some(format!("peer-{i}")),
            replica: Some(ReplicaId(0x70 + i as u64)),
            tier: Some(Tier::Local),
            vector: Some(VersionVector::new()),
            messages: Some(VersionVector::new()),
            compact,
            ..Hello::default()
        });
        let bytes = encode_binary(&hello);
        if compact.is_none() {
            // Absent, `compact` takes no byte: the `hello` an older build writes.
            let mut with = hello.clone();
            if let Frame::Hello(h) = &mut with {
                h.compact = Some(true);
            }
            assert_eq!(encode_binary(&with)[..bytes.len()], bytes[..]);
            assert_eq!(encode_binary(&with).len(), bytes.len() + 2);
        }
        ws.send(Message::Binary(bytes.into())).await.unwrap();
        let mut welcomed = false;
        let push = loop {
            let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("no push within 10 s");
            match m {
                Some(Ok(Message::Binary(b))) => match decode_binary(&b).unwrap() {
                    Frame::Welcome(w) => {
                        assert_eq!(w.compact, compact, "the welcome answers the hello");
                        let mut old = Frame::Welcome(w);
                        if let Frame::Welcome(w) = &mut old {
                            w.compact = None;
                        }
                        // Without the field the welcome is exactly the older layout.
                        let len = encode_binary(&old).len();
                        assert_eq!(b.len(), len + if compact.is_some() { 2 } else { 0 });
                        welcomed = true;
                    }
                    Frame::Push(p) if !p.docs.is_empty() => break (b[1], p),
                    _ => {}
                },
                Some(Ok(_)) => {}
                other => panic!("closed before a push: {other:?}"),
            }
        };
        assert!(welcomed, "a push before the welcome");
        let (tag, p) = push;
        assert_eq!(tag, if compact.is_some() { 33 } else { 3 }, "{compact:?}");
        assert_eq!(p.expanded, compact.is_none());
        assert!(
            p.docs
                .iter()
                .any(|d| d.collection == "notes" && d.id == "a"),
            "{p:?}"
        );
    }
}
