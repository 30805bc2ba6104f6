//! Malformed, wrong-version, oversized and binary frames and bad HTTP bodies get errors with
//! stable codes; the session (for agents) and the host keep serving, nothing stored is harmed.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use tests::{Agent, Host, TempDir};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_frames_and_the_host_keeps_serving() {
    let dir = TempDir::new("bad");
    let host = Host::start(&dir.0, "local", &[]);
    let url = host.ws_url("s");
    let (mut a, w) = Agent::hello(&url, "s", None).await;
    assert_eq!(w["type"], "welcome");
    a.send(&json!({"type": "put", "req": 1, "collection": "c", "id": "keep", "value": {"v": 1}}))
        .await;
    assert_eq!(a.recv_type("ack").await["req"], 1);

    let big = format!(
        r#"{{"type":"put","collection":"c","id":"big","value":{{"x":"{}"}}}}"#,
        "a".repeat(1_500_000)
    );
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("{not json".into()), "malformed"),
        (Message::Text("[1,2,3]".into()), "malformed"),
        (
            Message::Text(r#"{"type":"ping","v":99}"#.into()),
            "unsupported_version",
        ),
        (
            Message::Text(r#"{"type":"teleport"}"#.into()),
            "unknown_type",
        ),
        (
            Message::Text(r#"{"type":"put","collection":"c"}"#.into()),
            "malformed",
        ),
        (Message::Text(big.into()), "too_large"),
        (
            Message::Binary(vec![0xff, 0x00, 0x13].into()),
            "unsupported_version",
        ),
        (
            Message::Text(r#"{"type":"put","req":7,"collection":"c","id":"x","value":[1]}"#.into()),
            "bad_request",
        ),
    ];
    for (m, code) in cases {
        a.send_raw(m).await;
        let e = a.recv_type("error").await;
        assert_eq!(e["code"], code, "{e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // the same session still works, and what was stored is intact
    a.send(&json!({"type": "get", "req": 2, "collection": "c", "id": "keep"}))
        .await;
    assert_eq!(a.recv_type("doc").await["doc"]["value"], json!({"v": 1}));
    a.send(&json!({"type": "get", "req": 3, "collection": "c", "id": "big"}))
        .await;
    assert_eq!(a.recv_type("doc").await["doc"]["value"], json!(null));

    // a frame before hello is refused and that connection closed; others are unaffected
    let mut early = Agent::connect(&url).await;
    early
        .send(&json!({"type": "get", "collection": "c", "id": "keep"}))
        .await;
    assert_eq!(early.recv_type("error").await["code"], "hello_required");
    assert!(early.recv().await.is_none(), "closed after hello_required");

    // wrong space in hello
    let (_, e) = Agent::hello(&url, "other", None).await;
    assert_eq!(e["code"], "wrong_space", "{e}");

    let (mut b, w) = Agent::hello(&url, "s", None).await;
    assert_eq!(w["type"], "welcome");
    b.send(&json!({"type": "get", "req": 1, "collection": "c", "id": "keep"}))
        .await;
    assert_eq!(b.recv_type("doc").await["doc"]["value"], json!({"v": 1}));
}

#[test]
fn bad_http_requests_get_json_errors() {
    let dir = TempDir::new("badhttp");
    let host = Host::start(&dir.0, "local", &[]);
    let cases: [(&str, &str, Option<&str>, u16, &str); 7] = [
        (
            "PUT",
            "/v1/spaces/s/docs/c/a",
            Some("{oops"),
            400,
            "malformed",
        ),
        (
            "PUT",
            "/v1/spaces/s/docs/c/a",
            Some("[1]"),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/spaces/_s/docs/c/a",
            Some("{}"),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/spaces/s/policies/c",
            Some(r#"{"policy":"newest"}"#),
            400,
            "bad_policy",
        ),
        (
            "GET",
            "/v1/spaces/s/changes?since=zz",
            None,
            400,
            "bad_request",
        ),
        ("GET", "/nowhere", None, 404, "not_found"),
        (
            "POST",
            "/v1/spaces/s/conflicts/c/a/resolve",
            Some("{}"),
            404,
            "not_found",
        ),
    ];
    for (m, p, body, status, code) in cases {
        let (s, v) = host.http(m, p, body);
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{m} {p}: {v}"
        );
    }
    let huge = vec![b'x'; 40 << 20];
    let (s, raw) = tests::http_raw(
        host.api_port,
        "POST",
        "/v1/spaces/s/import",
        Some(&huge),
        None,
    );
    assert_eq!(s, 413, "{}", String::from_utf8_lossy(&raw));
    let doc = format!(r#"{{"x":"{}"}}"#, "a".repeat(1_200_000));
    let (s, v) = host.http("PUT", "/v1/spaces/s/docs/c/big", Some(&doc));
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("too_large")));
    let (s, _) = host.http("GET", "/healthz", None);
    assert_eq!(s, 200);
}

/// Peers may speak the compact binary encoding; the host answers in kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_session_is_answered_in_binary() {
    use bridge_core::{codec, frame::Hello, Frame};
    use futures_util::StreamExt;
    let dir = TempDir::new("binary");
    let host = Host::start(&dir.0, "local", &[]);
    let mut a = Agent::connect(&host.ws_url("s")).await;
    let hello = Frame::Hello(Hello {
        space: "s".into(),
        ..Hello::default()
    });
    a.send_raw(Message::Binary(codec::encode_binary(&hello).into()))
        .await;
    let m = tokio::time::timeout(std::time::Duration::from_secs(10), a.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Binary(b) = m else {
        panic!("expected a binary answer, got {m:?}")
    };
    assert!(matches!(codec::decode_binary(&b), Ok(Frame::Welcome(_))));
}
