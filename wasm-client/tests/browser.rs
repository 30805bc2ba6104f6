//! The browser store in a real browser (headless Chromium, `scripts/test.sh` step
//! `test-browser`): IndexedDB keeps everything across a re-open, a burst of writes is one
//! transaction, and the binary codec round-trips inside the page.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bridge_core::codec::{decode_binary, encode_binary};
use bridge_core::frame::{DocEntry, Push};
use bridge_core::{DocKey, Engine, EngineConfig, Frame, ReplicaId, Tier, VersionVector, WriteOp};
use js_sys::{Function, Promise, Reflect, JSON};
use serde_json::json;
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use wasm_client::store::IdbStore;
use wasm_client::{open, Bridge};

wasm_bindgen_test_configure!(run_in_browser);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", (js_sys::Math::random() * 1e12) as u64)
}

fn js(v: serde_json::Value) -> JsValue {
    JSON::parse(&v.to_string()).unwrap()
}

fn rust(v: &JsValue) -> serde_json::Value {
    let text: String = JSON::stringify(v).unwrap().into();
    serde_json::from_str(&text).unwrap()
}

async fn wait(p: Promise) -> JsValue {
    JsFuture::from(p).await.unwrap()
}

async fn sleep(ms: u32) {
    let set_timeout: Function = Reflect::get(&js_sys::global(), &"setTimeout".into())
        .unwrap()
        .dyn_into()
        .unwrap();
    wait(Promise::new(&mut |resolve, _| {
        set_timeout
            .call2(&JsValue::NULL, &resolve, &JsValue::from(ms))
            .unwrap();
    }))
    .await;
}

async fn open_db(db: &str) -> Bridge {
    open(js(json!({"space": "team", "db": db, "name": "test"})))
        .await
        .unwrap()
}

fn stat(b: &Bridge, field: &str) -> f64 {
    Reflect::get(&b.stats().unwrap(), &field.into())
        .unwrap()
        .as_f64()
        .unwrap()
}

#[wasm_bindgen_test]
async fn documents_messages_and_replica_id_survive_reopen() {
    let db = unique("reopen");
    let b = open_db(&db).await;
    let replica = b.replica();
    let dot = wait(b.put(
        "notes".into(),
        "n1".into(),
        js(json!({"title": "hi", "n": 1})),
    ))
    .await;
    assert_eq!(rust(&dot)["counter"], 1);
    wait(b.patch("notes".into(), "n1".into(), js(json!({"n": 2})))).await;
    wait(b.put("notes".into(), "gone".into(), js(json!({"x": 1})))).await;
    wait(b.delete("notes".into(), "gone".into())).await;
    wait(b.send("chat".into(), js(json!({"text": "hello"})))).await;
    // Offline from the start: every write is pending (no cloud has it).
    assert_eq!(rust(&b.status().unwrap())["pending"], 4);
    wait(b.close()).await;

    let b = open_db(&db).await;
    assert_eq!(b.replica(), replica, "the replica id is stable");
    assert_eq!(
        rust(&b.get("notes".into(), "n1".into()).unwrap()),
        json!({"title": "hi", "n": 2})
    );
    assert!(b.get("notes".into(), "gone".into()).unwrap().is_null());
    assert_eq!(b.doc_count(), 2, "the tombstone is kept");
    let list = rust(&b.list("notes".into(), JsValue::NULL, None).unwrap());
    assert_eq!(list.as_array().unwrap().len(), 1);
    let msgs = rust(&b.messages("chat".into(), None).unwrap());
    assert_eq!(msgs[0]["message"]["payload"]["text"], "hello");
    assert_eq!(rust(&b.status().unwrap())["pending"], 4);
    // The next write continues the counter: a dot is never reused after a restart.
    let dot = wait(b.put("notes".into(), "n2".into(), js(json!({})))).await;
    assert_eq!(rust(&dot)["counter"], 5);
    wait(b.close()).await;
}

#[wasm_bindgen_test]
async fn a_second_handle_follows_the_first_and_takes_over_when_it_closes() {
    let db = unique("tabs");
    let leader = open_db(&db).await;
    let follower = open_db(&db).await;
    assert_eq!(leader.role(), "leader");
    assert_eq!(follower.role(), "follower");
    assert_eq!(
        follower.replica(),
        leader.replica(),
        "one store, one replica"
    );

    // A follower's write is made by the leader, stored once, and read back by the follower.
    let dot = wait(follower.put("notes".into(), "f1".into(), js(json!({"by": "follower"})))).await;
    assert_eq!(rust(&dot)["counter"], 1);
    assert_eq!(
        rust(&leader.get("notes".into(), "f1".into()).unwrap()),
        json!({"by": "follower"})
    );
    assert_eq!(
        rust(&follower.get("notes".into(), "f1".into()).unwrap()),
        json!({"by": "follower"}),
        "the follower re-read the stored batch before its write resolved"
    );
    wait(leader.put("notes".into(), "l1".into(), js(json!({"by": "leader"})))).await;
    assert_eq!(stat(&leader, "docs"), 2.0);

    // The leader closes: the follower takes the lock and leads, with nothing lost.
    wait(leader.close()).await;
    for _ in 0..500 {
        if follower.role() == "leader" {
            break;
        }
        sleep(10).await;
    }
    assert_eq!(follower.role(), "leader");
    let dot = wait(follower.put("notes".into(), "f2".into(), js(json!({})))).await;
    assert_eq!(
        rust(&dot)["counter"],
        3,
        "dots continue after the hand-over"
    );
    assert_eq!(follower.doc_count(), 3);
    wait(follower.close()).await;
}

#[wasm_bindgen_test]
async fn a_burst_of_writes_is_one_transaction() {
    let db = unique("burst");
    let b = open_db(&db).await;
    let promises: js_sys::Array = (0..500)
        .map(|i| {
            JsValue::from(b.put(
                "bulk".into(),
                format!("d{i:04}").into(),
                js(json!({"i": i})),
            ))
        })
        .collect();
    wait(Promise::all(&promises)).await;
    assert_eq!(
        stat(&b, "commits"),
        1.0,
        "500 puts in one task share one commit"
    );
    assert_eq!(stat(&b, "docs"), 500.0);
    wait(b.close()).await;
    let b = open_db(&db).await;
    assert_eq!(b.doc_count(), 500);
    wait(b.close()).await;
}

#[wasm_bindgen_test]
async fn store_restores_an_engine_batch_exactly() {
    let name = unique("store");
    let mut store = IdbStore::open(&name).await.unwrap();
    let id = store.replica_id(|| Some(42)).await.unwrap();
    assert_eq!(id, ReplicaId(42));
    let mut cfg = EngineConfig::new(id, Tier::Local, "s");
    // As the browser package configures it: a browser does not seed a space's default.
    cfg.seed_default_policy = false;
    let mut e = Engine::new(cfg);
    for i in 0..3 {
        let v = json!({"i": i, "nested": {"a": [1, 2.5, null, "x"]}});
        let m = v.as_object().cloned().unwrap();
        bridge_core::testing::write(
            &mut e,
            1_000 + i,
            DocKey::new("c", format!("{i}")),
            WriteOp::Put(m),
        )
        .unwrap();
    }
    bridge_core::testing::publish(&mut e, 2_000, "ch", json!("m")).unwrap();
    let batch = e.poll_persist().unwrap();
    store.write(std::slice::from_ref(&batch)).await.unwrap();
    e.persisted(batch.id).unwrap();
    store.close();

    let mut store = IdbStore::open(&name).await.unwrap();
    assert_eq!(
        store.replica_id(|| Some(7)).await.unwrap(),
        id,
        "kept, not redrawn"
    );
    let mut back = Engine::new(EngineConfig::new(id, Tier::Local, "s"));
    let loaded = store.load(&mut back).await.unwrap();
    assert_eq!((loaded.docs, loaded.messages), (3, 1));
    assert_eq!(back.replica().vector(), e.replica().vector());
    assert_eq!(back.replica().clock(), e.replica().clock());
    // Every durable state, tombstones included.
    let all = e
        .replica()
        .delta(&VersionVector::new(), usize::MAX)
        .unwrap();
    assert_eq!(all.docs.len(), 3);
    for d in all.docs {
        let got = back
            .replica()
            .durable_state(&DocKey::new(&d.collection, &d.id));
        assert_eq!(got.unwrap().as_deref(), Some(&d.state));
    }
    store.close();
}

#[wasm_bindgen_test]
fn binary_codec_round_trips_in_the_browser() {
    let mut e = Engine::new(EngineConfig::new(ReplicaId(1), Tier::Local, "s"));
    let v = json!({"t": "ünïcode ✓", "f": 0.1, "big": 9_007_199_254_740_993_u64, "l": [true]});
    bridge_core::testing::write(
        &mut e,
        5,
        DocKey::new("c", "d"),
        WriteOp::Put(v.as_object().cloned().unwrap()),
    )
    .unwrap();
    let batch = e.poll_persist().unwrap();
    let docs: Vec<DocEntry> = batch
        .docs
        .iter()
        .map(|(k, s)| DocEntry {
            collection: k.collection.clone(),
            id: k.id.clone(),
            state: bridge_core::DocState::clone(s),
        })
        .collect();
    let frame = Frame::Push(Push {
        seq: 3,
        docs,
        watermark: VersionVector::new(),
        remaining: 0,
    });
    let bytes = encode_binary(&frame);
    assert_eq!(decode_binary(&bytes).unwrap(), frame);
    assert!(
        decode_binary(&bytes[..bytes.len() - 1]).is_err(),
        "truncated"
    );
}
