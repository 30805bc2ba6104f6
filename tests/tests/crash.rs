//! kill -9 during a burst of acknowledged writes from concurrent clients: after a restart
//! every acknowledged write is present and SQLite's integrity check passes (Jepsen's set
//! check, on real processes).
#![allow(clippy::unwrap_used)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::{Agent, Host, TempDir};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 8;
const WINDOW: usize = 64;
const TARGET_ACKS: usize = 6000;

/// Writes `burst/c{k}-{i}` as fast as the window allows; records each acknowledged id.
async fn writer(url: String, k: usize, acked: Arc<Mutex<Vec<String>>>, count: Arc<AtomicUsize>) {
    let (agent, w) = Agent::hello(&url, "crash", None).await;
    assert_eq!(w["type"], "welcome");
    let (mut tx, mut rx) = agent.ws.split();
    let permits = Arc::new(Semaphore::new(WINDOW));
    let p = permits.clone();
    let send = tokio::spawn(async move {
        for i in 1u64.. {
            let Ok(permit) = p.acquire().await else {
                return;
            };
            permit.forget();
            let f = json!({"type": "put", "req": i, "collection": "burst",
                           "id": format!("c{k}-{i}"), "value": {"k": k, "i": i}});
            if tx.send(Message::Text(f.to_string().into())).await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(m)) = rx.next().await {
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["type"] == "ack" {
            let i = v["req"].as_u64().unwrap();
            acked.lock().unwrap().push(format!("c{k}-{i}"));
            count.fetch_add(1, Ordering::Relaxed);
            permits.add_permits(1);
        } else {
            panic!("unexpected frame during the burst: {v}");
        }
    }
    send.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_burst_loses_no_acknowledged_write() {
    let dir = TempDir::new("crash");
    let mut host = Host::start(&dir.0, "local", &[]);
    let url = host.ws_url("crash");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|k| tokio::spawn(writer(url.clone(), k, acked.clone(), count.clone())))
        .collect();

    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::Relaxed) < TARGET_ACKS {
        assert!(
            Instant::now() < deadline,
            "too slow: {} acks",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Mid-burst: writes are still in flight on every connection.
    host.kill9();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("writers end when the host dies")
            .unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= TARGET_ACKS);

    {
        let db = rusqlite::Connection::open(&host.db).unwrap();
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    host.restart();
    let mut present: BTreeMap<String, Value> = BTreeMap::new();
    let mut after = String::new();
    loop {
        let (s, v) = host.http(
            "GET",
            &format!("/v1/spaces/crash/docs/burst?limit=1000&after={after}"),
            None,
        );
        assert_eq!(s, 200, "{v}");
        for d in v["docs"].as_array().unwrap() {
            present.insert(d["id"].as_str().unwrap().to_owned(), d["value"].clone());
        }
        match v["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !present.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    for id in &acked {
        let (k, i) = id[1..].split_once('-').unwrap();
        assert_eq!(
            present[id],
            json!({"k": k.parse::<u64>().unwrap(), "i": i.parse::<u64>().unwrap()})
        );
    }
    eprintln!(
        "{} acknowledged before kill -9, {} present after restart",
        acked.len(),
        present.len()
    );

    // the restarted host writes on with the same replica and no reused dots
    let (s, v) = host.http("PUT", "/v1/spaces/crash/docs/burst/after", Some("{}"));
    assert_eq!(s, 200, "{v}");
}
