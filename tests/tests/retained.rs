//! Retained channel messages live in the database, not in the host's memory: a native host
//! with a small memory budget (`CACHE_MB=1`) holding a few MB of retained messages restarts
//! (kill -9) without reading them, replays a channel from a cursor after the restart — every
//! message after the cursor once, in offset order, payloads intact — keeps each channel's
//! retention, and numbers new messages after the old ones.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::collections::BTreeSet;
use tests::{Agent, Host, TempDir};

const SPACE: &str = "logs";
/// Messages published, one in five on `other` (which retains the default 100).
const SENT: usize = 2_400;
/// Payload padding: some 2 KB a message, ~4 MB retained on `log` (under the 8 MiB a
/// connection's queue holds, so one subscribe can replay all of it).
const PAD: usize = 2_000;

fn channel_of(i: usize) -> &'static str {
    if i % 5 == 0 {
        "other"
    } else {
        "log"
    }
}

/// Resident memory of a process in KiB (Linux), for the log.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Subscribes to `channel` from `from`; returns the replayed broadcasts (after the `ack`),
/// reading until `expect` arrived.
async fn replay(host: &Host, channel: &str, from: u64, expect: usize) -> (Agent, Vec<Value>) {
    let (mut a, w) = Agent::hello(&host.ws_url(SPACE), SPACE, None).await;
    assert_eq!(w["type"], "welcome", "{w}");
    a.send(&json!({"type": "subscribe", "req": 1, "channel": channel, "from": from}))
        .await;
    let ack = a.recv_type("ack").await;
    assert_eq!(ack["req"], 1, "{ack}");
    let mut got = Vec::new();
    while got.len() < expect {
        let f = a.recv().await.expect("replay frames");
        match f["type"].as_str() {
            Some("broadcast") => got.push(f),
            Some("presence") => {}
            _ => panic!("unexpected frame during replay: {f}"),
        }
    }
    (a, got)
}

/// Checks a replay: offsets strictly increasing and above `from`, the channel's messages in
/// publication order, each once, payloads intact.
fn check(got: &[Value], channel: &str, from: u64, indices: &[usize]) {
    let offsets: Vec<u64> = got.iter().map(|f| f["offset"].as_u64().unwrap()).collect();
    assert!(
        offsets.iter().all(|o| *o > from),
        "offsets above the cursor"
    );
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets increase: each message once, in order"
    );
    let seen: Vec<usize> = got
        .iter()
        .map(|f| {
            assert_eq!(f["message"]["channel"], channel);
            let p = &f["message"]["payload"];
            assert_eq!(p["pad"].as_str().unwrap().len(), PAD, "payload intact");
            p["i"].as_u64().unwrap() as usize
        })
        .collect();
    assert_eq!(seen, indices, "{channel}: every message once, in order");
    let unique: BTreeSet<u64> = got
        .iter()
        .map(|f| f["message"]["id"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(unique.len(), got.len(), "no message twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_replay_from_the_store_after_a_restart() {
    let dir = TempDir::new("retained");
    let mut host = Host::start(&dir.0, "local", &[("CACHE_MB", "1")]);
    let (mut pubr, w) = Agent::hello(&host.ws_url(SPACE), SPACE, None).await;
    assert_eq!(w["type"], "welcome", "{w}");
    pubr.send(&json!({"type": "put", "req": 1, "collection": "_config",
        "id": "channel:log", "value": {"retain": 5000}}))
        .await;
    assert_eq!(pubr.recv_type("ack").await["req"], 1);
    let pad = "x".repeat(PAD);
    for i in 0..SENT {
        pubr.send(
            &json!({"type": "send", "req": 10 + i, "channel": channel_of(i),
            "payload": {"i": i, "pad": pad}}),
        )
        .await;
    }
    let mut acked = 0;
    while acked < SENT {
        let f = pubr.recv().await.expect("acks");
        match f["type"].as_str() {
            Some("ack") => acked += 1,
            Some("presence") => {}
            _ => panic!("unexpected frame: {f}"),
        }
    }
    drop(pubr);
    let before = rss_kib(host.child.id());

    host.restart();
    // Started: the first answer comes after the space is open.
    let (s, v) = host.http("GET", &format!("/v1/spaces/{SPACE}/docs/none"), None);
    assert_eq!(s, 200, "{v}");
    let after = rss_kib(host.child.id());
    eprintln!(
        "host RSS: {before:?} KiB after publishing, {after:?} KiB after a restart \
         (~{} KiB of payloads retained)",
        SENT * PAD / 1024
    );

    // Everything retained on `log`, from the start.
    let log: Vec<usize> = (0..SENT).filter(|i| channel_of(*i) == "log").collect();
    let (_all, got) = replay(&host, "log", 0, log.len()).await;
    check(&got, "log", 0, &log);

    // From a cursor in the middle: exactly the later ones.
    let mid = 1_000;
    let cursor = got[mid - 1]["offset"].as_u64().unwrap();
    let (mut sub, rest) = replay(&host, "log", cursor, log.len() - mid).await;
    check(&rest, "log", cursor, &log[mid..]);
    let last = rest.last().unwrap()["offset"].as_u64().unwrap();

    // `other` keeps its newest 100 (the default), in order.
    let other: Vec<usize> = (0..SENT).filter(|i| channel_of(*i) == "other").collect();
    let (_o, got) = replay(&host, "other", 0, 100).await;
    check(&got, "other", 0, &other[other.len() - 100..]);

    // A message published after the restart is numbered after every retained one and reaches
    // the subscriber once, live.
    let (mut again, _) = Agent::hello(&host.ws_url(SPACE), SPACE, None).await;
    again
        .send(&json!({"type": "send", "req": 5, "channel": "log",
            "payload": {"i": SENT, "pad": pad}}))
        .await;
    assert_eq!(again.recv_type("ack").await["req"], 5);
    let live = sub.recv_type("broadcast").await;
    assert_eq!(live["message"]["payload"]["i"], SENT);
    assert!(live["offset"].as_u64().unwrap() > last, "{live}");
}
