//! Liveness, driven by the engine's timers (`poll_timeout` / `handle_timeout`): a socket that
//! never says `hello` is closed after `HELLO_TIMEOUT_MS`, and a hybrid host whose cloud
//! freezes (SIGSTOP) notices within three `HEARTBEAT_MS`, redials, and resumes once the cloud
//! runs again. Durations are never asserted: each condition is polled with a generous bound.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::time::{Duration, Instant};
use tests::{eventually, http, start_pair, wait_link_up, Agent, Host, Pair, TempDir};

/// The hybrid host's upstream link state for space `proj` (`up`), from its status.
fn link_up(local: &Host) -> Option<bool> {
    let (_, v) = local.http("GET", "/v1/status", None);
    v["spaces"]
        .as_array()?
        .iter()
        .find(|s| s["space"] == "proj")?["upstream"]["up"]
        .as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_says_hello_is_closed_after_the_hello_timeout() {
    let dir = TempDir::new("hello-timeout");
    let host = Host::start(&dir.0, "local", &[("HELLO_TIMEOUT_MS", "500")]);
    let url = host.ws_url("team");

    let mut silent = Agent::connect(&url).await;
    // An agent that did say hello is not closed for being quiet afterwards.
    let (mut talker, w) = Agent::hello(&url, "team", None).await;
    assert_eq!(w["type"], "welcome", "{w}");

    let (error, code) = silent.closed_by_server(Duration::from_secs(15)).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "timeout", "{error}");
    assert_eq!(code, Some(1001), "close code for `timeout`");

    talker.send(&json!({"type": "ping", "nonce": 7})).await;
    assert_eq!(talker.recv_type("pong").await["nonce"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hybrid_notices_a_frozen_cloud_redials_and_resumes() {
    let Pair {
        cloud,
        local,
        token,
        _dirs,
    } = start_pair(&[("HEARTBEAT_MS", "300"), ("HELLO_TIMEOUT_MS", "2000")]);
    wait_link_up(&local);
    let tok = Some(token.as_str());

    let frozen = tests::Frozen::new(cloud.child.id());
    // Three heartbeats (900 ms) and slack; polled, bounded generously.
    let deadline = Instant::now() + Duration::from_secs(15);
    while link_up(&local) != Some(false) {
        assert!(
            Instant::now() < deadline,
            "the hybrid still shows the link to a frozen cloud up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Written while the cloud is frozen: acknowledged locally, pending upstream.
    let (s, v) = local.http(
        "PUT",
        "/v1/spaces/proj/docs/notes/frozen",
        Some(r#"{"during":"freeze"}"#),
    );
    assert_eq!(s, 200, "{v}");

    drop(frozen); // SIGCONT
    wait_link_up(&local);
    eventually(
        cloud.api_port,
        "/v1/spaces/proj/docs/notes/frozen",
        tok,
        |s, v| s == 200 && v["value"]["during"] == "freeze",
    );
    // And the cloud's writes come down the new link.
    let (s, _) = http(
        cloud.api_port,
        "PUT",
        "/v1/spaces/proj/docs/notes/after",
        Some(r#"{"from":"cloud"}"#),
        tok,
    );
    assert_eq!(s, 200);
    eventually(
        local.api_port,
        "/v1/spaces/proj/docs/notes/after",
        None,
        |s, v| s == 200 && v["value"]["from"] == "cloud",
    );
}
