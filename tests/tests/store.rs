//! The database is the replica: a native host whose cache budget (`CACHE_MB=1`) is far below
//! the space it holds serves every document, every list page, the changes feed and an open
//! conflict correctly — before and after a kill -9 restart — its status reports cache bytes
//! within the budget, and its export streams every document page by page.
#![allow(clippy::unwrap_used)]

use bridge_core::codec::{decode_json, encode_json};
use bridge_core::frame::{DocEntry, Hello, Push, SessionKind};
use bridge_core::{DocKey, Dot, Frame, Replica, ReplicaId, Tier, VersionVector, WriteOp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use tests::{Host, TempDir};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SPACE: &str = "big";
/// Documents per collection: 20,000 in all, some 6 MB of cached states against a 1 MiB budget.
const PER_COLLECTION: usize = 10_000;
const PEER: ReplicaId = ReplicaId(0x5eed);

fn doc(i: usize) -> Value {
    json!({"title": format!("Item number {i}"), "done": i % 2 == 0, "tags": ["a", "b"], "n": i})
}

fn import(host: &Host) {
    for coll in ["items", "more"] {
        for start in (0..PER_COLLECTION).step_by(2_000) {
            let mut body = String::new();
            for i in start..start + 2_000 {
                let line = json!({"collection": coll, "id": format!("d{i:06}"), "value": doc(i)});
                body.push_str(&line.to_string());
                body.push('\n');
            }
            let (s, v) = host.http("POST", &format!("/v1/spaces/{SPACE}/import"), Some(&body));
            assert_eq!(s, 200, "{v}");
        }
    }
}

fn space_status(host: &Host) -> Value {
    let (s, v) = host.http("GET", "/v1/status", None);
    assert_eq!(s, 200, "{v}");
    v["spaces"]
        .as_array()
        .and_then(|a| a.iter().find(|sp| sp["space"] == SPACE))
        .cloned()
        .unwrap_or_else(|| panic!("no space {SPACE} in {v}"))
}

/// Every page of a collection, through `after`.
fn list_all(host: &Host, coll: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/v1/spaces/{SPACE}/docs/{coll}?limit=1000&after={after}");
        let (s, v) = host.http("GET", &path, None);
        assert_eq!(s, 200, "{v}");
        out.extend(v["docs"].as_array().unwrap().iter().cloned());
        match v["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return out,
        }
    }
}

/// Every change since the start, through the cursor.
fn changes_all(host: &Host) -> BTreeSet<(String, String)> {
    let mut seen = BTreeSet::new();
    let mut since = String::new();
    for _ in 0..1_000 {
        let path = format!("/v1/spaces/{SPACE}/changes?limit=5000&since={since}");
        let (s, v) = host.http("GET", &path, None);
        assert_eq!(s, 200, "{v}");
        for c in v["changes"].as_array().unwrap() {
            seen.insert((
                c["collection"].as_str().unwrap().to_owned(),
                c["id"].as_str().unwrap().to_owned(),
            ));
        }
        since = v["cursor"].as_str().unwrap().to_owned();
        if v["remaining"] == 0 {
            return seen;
        }
    }
    panic!("the changes feed did not end");
}

/// A peer (its own replica, in this test) pushes a write to `items/d000042` made without
/// seeing the host's: under `manual` the host then holds an open conflict.
async fn push_concurrent_write(host: &Host) {
    let (mut ws, _) = tokio_tungstenite::connect_async(host.ws_url(SPACE))
        .await
        .expect("connect");
    let send = |f: &Frame| WsMessage::Text(encode_json(f).into());
    let hello = Frame::Hello(Hello {
        space: SPACE.into(),
        kind: SessionKind::Peer,
        name: Some("concurrent".into()),
        token: None,
        replica: Some(PEER),
        tier: Some(Tier::Local),
        vector: Some(VersionVector::new()),
        messages: Some(VersionVector::new()),
        horizon: None,
        collections: None,
        unclaimed: None,
        compact: None,
    });
    ws.send(send(&hello)).await.unwrap();
    let key = DocKey::new("items", "d000042");
    let mut r = Replica::new(PEER, Tier::Local, SPACE);
    let m = json!({"title": "the peer's", "n": -1})
        .as_object()
        .cloned()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let dot: Dot = r.write(now, key.clone(), WriteOp::Put(m)).unwrap();
    let state = r.state(&key).unwrap().map(|s| (*s).clone()).unwrap();
    let mut watermark = VersionVector::new();
    watermark.add_dot(dot);
    let push = Frame::Push(Push {
        seq: 1,
        docs: vec![DocEntry {
            collection: key.collection.clone(),
            id: key.id.clone(),
            state,
        }],
        watermark,
        remaining: 0,
        expanded: false,
    });
    ws.send(send(&push)).await.unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("no ack within 20 s");
        match msg {
            Some(Ok(WsMessage::Text(t))) => {
                if let Ok(Frame::Ack(a)) = decode_json(t.as_bytes()) {
                    assert_eq!(a.seq, Some(1));
                    break;
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("the push was not acknowledged: {other:?}"),
        }
    }
}

fn check_everything(host: &Host, deleted: &BTreeSet<usize>) {
    // Every document through the lists: each visible one once, in id order, with its value;
    // deleted ones skipped.
    for coll in ["items", "more"] {
        let docs = list_all(host, coll);
        let gone = if coll == "items" { deleted.len() } else { 0 };
        assert_eq!(docs.len(), PER_COLLECTION - gone, "{coll}");
        let ids: Vec<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{coll} is listed in id order"
        );
        for d in &docs {
            let i: usize = d["id"].as_str().unwrap()[1..].parse().unwrap();
            assert!(
                coll != "items" || !deleted.contains(&i),
                "{coll}/{i} was deleted"
            );
            if !(coll == "items" && i == 42) {
                assert_eq!(d["value"], doc(i), "{coll}/{i}");
            }
        }
    }
    // And one by one, a sample of each (deleted ones among them).
    for i in (0..PER_COLLECTION).step_by(37) {
        let path = format!("/v1/spaces/{SPACE}/docs/items/d{i:06}");
        let (s, v) = host.http("GET", &path, None);
        if deleted.contains(&i) {
            assert_eq!(s, 404, "items/{i} was deleted: {v}");
        } else {
            assert_eq!((s, &v["value"]), (200, &doc(i)), "items/{i}");
        }
    }
    // The changes feed names every document (deleted ones too), `_config` left out.
    let changed = changes_all(host);
    assert_eq!(changed.len(), 2 * PER_COLLECTION);
    // The open conflict, with both sides.
    let (s, v) = host.http("GET", &format!("/v1/spaces/{SPACE}/conflicts"), None);
    assert_eq!(s, 200, "{v}");
    let conflicts = v["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{v}");
    assert_eq!(conflicts[0]["id"], "d000042");
    assert_eq!(conflicts[0]["sides"].as_array().unwrap().len(), 2);
    // The cache stayed within its budget, and it was used.
    let st = space_status(host);
    let (bytes, budget) = (st["cache_bytes"].as_u64(), st["cache_budget"].as_u64());
    assert_eq!(budget, Some(1 << 20), "{st}");
    assert!(bytes.unwrap() <= 1 << 20, "{st}");
    assert!(bytes.unwrap() > 0, "{st}");
    assert_eq!(st["docs"], 2 * PER_COLLECTION as u64 + 2, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_serves_a_space_larger_than_its_cache_and_restarts_without_reading_it() {
    let dir = TempDir::new("store");
    let mut host = Host::start(&dir.0, "local", &[("CACHE_MB", "1")]);
    let (s, v) = host.http(
        "PUT",
        &format!("/v1/spaces/{SPACE}/policies/items"),
        Some(r#"{"policy":"manual"}"#),
    );
    assert_eq!(s, 200, "{v}");
    import(&host);
    let deleted: BTreeSet<usize> = (0..PER_COLLECTION).step_by(97).collect();
    for i in &deleted {
        let path = format!("/v1/spaces/{SPACE}/docs/items/d{i:06}");
        assert_eq!(host.http("DELETE", &path, None).0, 200);
    }
    push_concurrent_write(&host).await;

    check_everything(&host, &deleted);
    host.restart();
    check_everything(&host, &deleted);

    // The export streams page by page (1,000 documents each): every visible document once,
    // in key order, the configuration with them.
    let (s, v) = host.http("GET", &format!("/v1/spaces/{SPACE}/export"), None);
    assert_eq!(s, 200);
    let text = v.as_str().unwrap().to_owned();
    let keys: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let d: Value = serde_json::from_str(l).unwrap();
            let key = (
                d["collection"].as_str().unwrap().to_owned(),
                d["id"].as_str().unwrap().to_owned(),
            );
            if key.0 != "_config" && key.1 != "d000042" {
                let i: usize = key.1[1..].parse().unwrap();
                assert_eq!(d["value"], doc(i), "{l}");
            }
            key
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "export in key order, each once"
    );
    assert_eq!(keys.len(), 2 + 2 * PER_COLLECTION - deleted.len());
}
