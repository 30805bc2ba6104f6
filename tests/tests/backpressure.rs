//! Back-pressure: a connection that stops reading is closed with 1013 once its outbound
//! queue would pass `OUT_QUEUE_MB`, the host stays up for everyone else, and the closed
//! client resumes where it stopped: an agent re-subscribes with `from` (its cursor), a peer
//! redials with its vector. Every wait is on something observable (frames, `/metrics`,
//! status), bounded in time and in the number of messages sent.
#![allow(clippy::unwrap_used)]

use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tests::{
    eventually, http, mint_token, start_hybrid, wait_link_up, Agent, Host, TempDir, PAIR_SECRET,
};
use tokio_tungstenite::tungstenite::Message;

/// Payload bytes of each message: large, under the 256 KiB limit of a message.
const BLOB: usize = 200_000;
/// The most messages a test sends before the slow reader must have been closed.
const MAX_SENT: u64 = 500;

fn metric(port: u16, token: Option<&str>, name: &str) -> u64 {
    let (_, v) = http(port, "GET", "/metrics", None, token);
    v.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("sacred_bridge_{name} ")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn dropped(port: u16, token: Option<&str>) -> u64 {
    metric(port, token, "dropped_connections_total")
}

/// Sends message `n` on `channel` (a payload of [`BLOB`] bytes) and waits for its ack.
async fn send(a: &mut Agent, channel: &str, n: u64) {
    let blob = "x".repeat(BLOB);
    a.send(&json!({"type": "send", "req": n + 1, "channel": channel, "payload": {"n": n, "blob": blob}}))
        .await;
    loop {
        let v = a.recv().await.expect("sender closed");
        match v["type"].as_str() {
            Some("ack") if v["req"] == n + 1 => return,
            Some("error") => panic!("send {n}: {v}"),
            _ => {}
        }
    }
}

/// A `broadcast` frame's message number and offset.
fn numbered(v: &Value) -> Option<(u64, u64)> {
    (v["type"] == "broadcast").then(|| {
        (
            v["message"]["payload"]["n"].as_u64().unwrap(),
            v["offset"].as_u64().unwrap(),
        )
    })
}

/// Reads until the server's close frame; returns the messages seen, the last offset, and
/// the close code.
async fn read_until_closed(a: &mut Agent, limit: Duration) -> (Vec<u64>, Option<u64>, Option<u16>) {
    let deadline = Instant::now() + limit;
    let (mut seen, mut offset) = (Vec::new(), None);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, a.ws.next())
            .await
            .unwrap_or_else(|_| panic!("not closed within {limit:?}"));
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if let Some((n, o)) = numbered(&v) {
                    seen.push(n);
                    offset = Some(o);
                }
            }
            Some(Ok(Message::Close(f))) => return (seen, offset, f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}

/// Receives `broadcast` frames until message `last` arrived; returns their numbers in order.
async fn collect_until(a: &mut Agent, last: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        let v = a.recv().await.expect("closed while collecting");
        if let Some((n, _)) = numbered(&v) {
            seen.push(n);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_stops_reading_is_closed_with_1013_and_resumes_from_its_cursor() {
    let dir = TempDir::new("backpressure-agent");
    let host = Host::start(&dir.0, "local", &[("OUT_QUEUE_MB", "1")]);
    let url = host.ws_url("team");
    let hello = |name: &'static str| {
        let url = url.clone();
        async move {
            let (a, w) = Agent::hello(&url, "team", None).await;
            assert_eq!(w["type"], "welcome", "{name}: {w}");
            a
        }
    };

    let mut sender = hello("sender").await;
    // Keep every message the test sends, so the slow reader can replay all it missed.
    sender
        .send(&json!({"type": "put", "req": 1_000_000, "collection": "_config", "id": "channel:bulk", "value": {"retain": 1000}}))
        .await;
    assert_eq!(sender.recv_type("ack").await["req"], 1_000_000);

    let mut slow = hello("slow").await;
    slow.send(&json!({"type": "subscribe", "req": 1, "channel": "bulk"}))
        .await;
    slow.recv_type("ack").await;
    let mut fast = hello("fast").await;
    fast.send(&json!({"type": "subscribe", "req": 1, "channel": "bulk"}))
        .await;
    fast.recv_type("ack").await;
    // The fast reader keeps reading, in order, until it has the final message.
    let (last_tx, last_rx) = tokio::sync::oneshot::channel::<u64>();
    let fast_reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut last = None;
        let mut last_rx = Some(last_rx);
        loop {
            if let Some(rx) = last_rx.as_mut() {
                if let Ok(n) = rx.try_recv() {
                    last = Some(n);
                    last_rx = None;
                }
            }
            if last.is_some() && seen.last() == last.as_ref() {
                return seen;
            }
            let v = fast.recv().await.expect("the fast reader was closed");
            if let Some((n, _)) = numbered(&v) {
                seen.push(n);
            }
        }
    });

    // The slow reader reads nothing from here on; send until the host closes it.
    let mut n = 0;
    while dropped(host.api_port, None) == 0 {
        assert!(
            n < MAX_SENT,
            "{MAX_SENT} messages of {BLOB} bytes and the slow reader is still open"
        );
        send(&mut sender, "bulk", n).await;
        n += 1;
    }
    let (seen, cursor, code) = read_until_closed(&mut slow, Duration::from_secs(30)).await;
    assert_eq!(code, Some(1013), "closed with {code:?}");
    // What it did get came in order, without gaps, before the close.
    assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>());
    assert!(
        (seen.len() as u64) < n,
        "the slow reader got everything ({n}) and was still closed"
    );

    // The host stays up and serves the others: a few more messages reach the fast reader.
    let last = n + 4;
    while n <= last {
        send(&mut sender, "bulk", n).await;
        n += 1;
    }
    let _ = last_tx.send(last);
    let got = tokio::time::timeout(Duration::from_secs(60), fast_reader)
        .await
        .expect("the fast reader did not get everything within 60 s")
        .unwrap();
    assert_eq!(got, (0..=last).collect::<Vec<_>>());
    assert_eq!(
        dropped(host.api_port, None),
        1,
        "only the slow reader was closed"
    );

    // It reconnects and resumes from its cursor: exactly what it missed, in order.
    let mut again = hello("slow again").await;
    again
        .send(
            &json!({"type": "subscribe", "req": 1, "channel": "bulk", "from": cursor.unwrap_or(0)}),
        )
        .await;
    let replayed = collect_until(&mut again, last).await;
    assert_eq!(replayed, (seen.len() as u64..=last).collect::<Vec<_>>());
}

/// Messages retained on the channel the paced replay reads: 400 of [`PACED_BLOB`] bytes,
/// some 40 MB, forty times the 1 MiB queue the host runs with.
const PACED: u64 = 400;
const PACED_BLOB: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_larger_than_the_queue_is_paced_by_the_reader_not_closed() {
    let dir = TempDir::new("backpressure-replay");
    let host = Host::start(&dir.0, "local", &[("OUT_QUEUE_MB", "1")]);
    let url = host.ws_url("team");
    let (mut sender, w) = Agent::hello(&url, "team", None).await;
    assert_eq!(w["type"], "welcome", "{w}");
    sender
        .send(&json!({"type": "put", "req": 1_000_000, "collection": "_config", "id": "channel:big", "value": {"retain": 1000}}))
        .await;
    assert_eq!(sender.recv_type("ack").await["req"], 1_000_000);
    // Sent in runs of 20, each run's acks awaited.
    let blob = "x".repeat(PACED_BLOB);
    let publish = |range: std::ops::Range<u64>| {
        range
            .map(|n| json!({"type": "send", "req": n + 1, "channel": "big", "payload": {"n": n, "blob": blob}}))
            .collect::<Vec<_>>()
    };
    for start in (0..PACED).step_by(20) {
        for f in publish(start..start + 20) {
            sender.send(&f).await;
        }
        let mut acked = 0;
        while acked < 20 {
            let v = sender.recv().await.expect("sender closed");
            match v["type"].as_str() {
                Some("ack") => acked += 1,
                Some("error") => panic!("send: {v}"),
                _ => {}
            }
        }
    }

    // The reader replays everything from 0 and reads slowly; meanwhile ten more messages
    // are published, which it must get once each, after the replayed ones.
    let (mut reader, w) = Agent::hello(&url, "team", None).await;
    assert_eq!(w["type"], "welcome", "{w}");
    reader
        .send(&json!({"type": "subscribe", "req": 1, "channel": "big", "from": 0}))
        .await;
    let total = PACED + 10;
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut offsets = Vec::new();
    while (seen.len() as u64) < total {
        let msg = tokio::time::timeout(Duration::from_secs(30), reader.ws.next())
            .await
            .expect("no frame within 30 s");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if let Some((n, o)) = numbered(&v) {
                    seen.push(n);
                    offsets.push(o);
                    if seen.len() == 100 {
                        for f in publish(PACED..total) {
                            sender.send(&f).await;
                        }
                    }
                    // A slow reader: the host's queue for it fills many times over.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
            Some(Ok(Message::Close(f))) => panic!(
                "closed during the replay after {} messages: {:?}",
                seen.len(),
                f.map(|f| u16::from(f.code))
            ),
            Some(Ok(_)) => {}
            other => panic!("the connection ended: {other:?}"),
        }
    }
    assert_eq!(
        seen,
        (0..total).collect::<Vec<_>>(),
        "each message once, in order"
    );
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase");
    assert_eq!(dropped(host.api_port, None), 0, "nobody fell behind");
    eprintln!(
        "replayed {} messages of {PACED_BLOB} bytes through a 1 MiB queue in {:?}",
        seen.len(),
        started.elapsed()
    );
    // Caught up: the next message arrives live.
    sender
        .send(&json!({"type": "send", "req": 9_999, "channel": "big", "payload": {"n": total}}))
        .await;
    let next = reader.recv_type("broadcast").await;
    assert_eq!(numbered(&next).map(|(n, _)| n), Some(total));
}

/// Space `proj`'s cursor (its version vector) in a status document.
fn cursor_of(status: &Value) -> Option<String> {
    status["spaces"]
        .as_array()?
        .iter()
        .find(|s| s["space"] == "proj")?["cursor"]
        .as_str()
        .map(str::to_owned)
}

/// Whether cursor `a` (`replica:counter,...`) holds everything cursor `b` does.
fn covers(a: Option<&str>, b: Option<&str>) -> bool {
    let entries = |c: &str| -> Vec<(String, u64)> {
        c.split(',')
            .filter_map(|e| e.split_once(':'))
            .map(|(r, n)| (r.to_owned(), n.parse().unwrap()))
            .collect()
    };
    let (Some(a), Some(b)) = (a, b) else {
        return false;
    };
    let a = entries(a);
    entries(b)
        .iter()
        .all(|(r, n)| a.iter().any(|(ra, na)| ra == r && na >= n))
}

fn space_cursor(port: u16, token: Option<&str>) -> Option<String> {
    let (status, v) = http(port, "GET", "/v1/status", None, token);
    assert_eq!(status, 200, "{v}");
    let c = cursor_of(&v);
    assert!(c.is_some(), "no cursor for proj: {v}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_closed_with_1013_and_resumes_from_its_vector() {
    let (cloud_dir, local_dir) = (TempDir::new("bp-cloud"), TempDir::new("bp-hybrid"));
    let metrics = "bp-metrics";
    // The cloud's queues are small; the hybrid host will freeze and read nothing.
    let cloud = Host::start(
        &cloud_dir.0,
        "cloud",
        &[
            ("BRIDGE_SECRET", PAIR_SECRET),
            ("METRICS_TOKEN", metrics),
            ("OUT_QUEUE_MB", "1"),
        ],
    );
    let token = mint_token(&cloud_dir.0, PAIR_SECRET, "proj", "admin", "1h");
    let cloud_url = format!("ws://127.0.0.1:{}", cloud.ws_port);
    let local = start_hybrid(&local_dir.0, &cloud_url, &token, &[]);
    wait_link_up(&local);
    let token = token.as_str();

    let (mut sender, w) = Agent::hello(&cloud.ws_url("proj"), "proj", Some(token)).await;
    assert_eq!(w["type"], "welcome", "{w}");
    sender
        .send(&json!({"type": "put", "req": 1_000_000, "collection": "_config", "id": "channel:bulk", "value": {"retain": 1000}}))
        .await;
    assert_eq!(sender.recv_type("ack").await["req"], 1_000_000);
    // The hybrid host holds the retention setting before it freezes: it holds all the
    // cloud holds.
    let cloud_cursor = space_cursor(cloud.api_port, Some(token));
    eventually(local.api_port, "/v1/status", None, |_, v| {
        covers(cursor_of(v).as_deref(), cloud_cursor.as_deref())
    });

    let frozen = tests::Frozen::new(local.child.id());
    let mut n = 0;
    while dropped(cloud.api_port, Some(metrics)) == 0 {
        assert!(
            n < MAX_SENT,
            "{MAX_SENT} messages of {BLOB} bytes and the frozen peer is still linked"
        );
        send(&mut sender, "bulk", n).await;
        n += 1;
    }
    drop(frozen);
    // A few more while it comes back.
    let last = n + 4;
    while n <= last {
        send(&mut sender, "bulk", n).await;
        n += 1;
    }

    // The hybrid host redials with its vector and gets every message it missed: an agent
    // of its own replays them all from its store.
    wait_link_up(&local);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (mut a, w) = Agent::hello(&local.ws_url("proj"), "proj", Some(token)).await;
        assert_eq!(w["type"], "welcome", "{w}");
        a.send(&json!({"type": "subscribe", "req": 1, "channel": "bulk", "from": 0}))
            .await;
        a.recv_type("ack").await;
        // The replay comes right after the ack; a `presence` may come between.
        let mut got = BTreeSet::new();
        while let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(2), a.recv()).await {
            if let Some((m, _)) = numbered(&v) {
                got.insert(m);
            }
            if got.contains(&last) {
                break;
            }
        }
        if got.len() as u64 == last + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hybrid host has {} of {} messages after 60 s",
            got.len(),
            last + 1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
