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
use wasm_client::scratch::{Miss, Prefetched};
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
        rust(&wait(b.get("notes".into(), "n1".into())).await),
        json!({"title": "hi", "n": 2})
    );
    assert!(wait(b.get("notes".into(), "gone".into())).await.is_null());
    assert_eq!(
        wait(b.doc_count()).await.as_f64(),
        Some(2.0),
        "the tombstone is kept"
    );
    let list = rust(&wait(b.list("notes".into(), JsValue::NULL, None)).await);
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
        rust(&wait(leader.get("notes".into(), "f1".into())).await),
        json!({"by": "follower"})
    );
    assert_eq!(
        rust(&wait(follower.get("notes".into(), "f1".into())).await),
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
    assert_eq!(wait(follower.doc_count()).await.as_f64(), Some(3.0));
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
    assert_eq!(wait(b.doc_count()).await.as_f64(), Some(500.0));
    wait(b.close()).await;
}

/// An engine over an IndexedDB store, as the package makes it (`Engine::with_store` over a
/// scratch the client fills from the store).
fn engine_over(id: ReplicaId, cache: usize) -> (Engine, Prefetched) {
    let mut cfg = EngineConfig::new(id, Tier::Local, "team");
    // As the browser package configures it: a browser does not seed a space's default.
    cfg.seed_default_policy = false;
    cfg.cache_bytes = cache;
    let scratch = Prefetched::default();
    (Engine::with_store(cfg, Box::new(scratch.clone())), scratch)
}

/// Reads what the engine missed into its scratch, as the client's pump does.
async fn fetch_missed(store: &IdbStore, scratch: &Prefetched) -> bool {
    let misses = scratch.lock().take_misses();
    if misses.is_empty() {
        return false;
    }
    let epoch = scratch.lock().epoch();
    let (read, damaged) = store.reader().fetch(&misses).await.unwrap();
    assert!(damaged.is_empty());
    assert!(scratch.lock().fill(epoch, read));
    true
}

#[wasm_bindgen_test]
async fn a_partial_store_stays_partial_and_keeps_what_it_replicates_now() {
    let name = unique("collections");
    let notes = vec!["notes".to_string()];
    let store = IdbStore::open(&name).await.unwrap();
    let (id, now) = store.replica_id(|| Some(5), Some(&notes)).await.unwrap();
    assert_eq!(now.as_deref(), Some(&notes[..]));
    store.close();
    let store = IdbStore::open(&name).await.unwrap();
    // Opened for other collections: the stored ones are what it holds (the engine changes
    // them with its server); opened for the whole space: refused.
    let both = vec!["notes".to_string(), "todo".to_string()];
    assert_eq!(
        store.replica_id(|| Some(6), Some(&both)).await.unwrap(),
        (id, Some(notes.clone()))
    );
    let err = store
        .replica_id(|| Some(6), None)
        .await
        .expect_err("the whole space");
    assert!(err.to_string().contains("stays one"), "{err}");
    store.close();
    // A store created for the whole space stays so.
    let name = unique("whole");
    let store = IdbStore::open(&name).await.unwrap();
    store.replica_id(|| Some(8), None).await.unwrap();
    assert!(store.replica_id(|| Some(8), Some(&notes)).await.is_err());
    store.close();
}

#[wasm_bindgen_test]
async fn a_partial_store_keeps_its_server_with_the_batch_of_its_welcome() {
    let name = unique("upstream");
    let mut store = IdbStore::open(&name).await.unwrap();
    let notes = vec!["notes".to_string()];
    store.replica_id(|| Some(3), Some(&notes)).await.unwrap();
    assert_eq!(store.upstream().await.unwrap(), (None, Vec::new()));
    let mut cfg = EngineConfig::new(ReplicaId(3), Tier::Local, "s");
    cfg.collections = Some(vec!["notes".into()]);
    let mut e = Engine::new(cfg);
    let link = e.connect(0, None, "up");
    e.handle_frame(
        0,
        link,
        Frame::Welcome(bridge_core::frame::Welcome {
            space: "s".into(),
            replica: ReplicaId(9),
            tier: Tier::Cloud,
            vector: VersionVector::new(),
            messages: VersionVector::new(),
            session: 1,
            rights: None,
            resync: None,
            compact: Some(true),
        }),
    );
    let batch = e.poll_persist().expect("the pin is a batch");
    store.write(std::slice::from_ref(&batch)).await.unwrap();
    e.persisted(batch.id).unwrap();
    // A change of collections stores what it replicates and what it forgets with its batch.
    e.replicate(vec!["todo".into()]).unwrap();
    e.drain(|_, _| {});
    let batch = e.poll_persist().expect("the change is a batch");
    store.write(std::slice::from_ref(&batch)).await.unwrap();
    store.close();
    let store = IdbStore::open(&name).await.unwrap();
    assert_eq!(
        store.upstream().await.unwrap(),
        (
            Some(ReplicaId(9)),
            vec!["notes".to_string(), "todo".to_string()]
        )
    );
    // Nothing is held of both lists until the server answers.
    let (_, now) = store.replica_id(|| Some(3), Some(&notes)).await.unwrap();
    assert_eq!(now, Some(Vec::new()));
    store.close();
}

#[wasm_bindgen_test]
async fn store_restores_an_engine_batch_exactly() {
    let name = unique("store");
    let mut store = IdbStore::open(&name).await.unwrap();
    let (id, _) = store.replica_id(|| Some(42), None).await.unwrap();
    assert_eq!(id, ReplicaId(42));
    let mut cfg = EngineConfig::new(id, Tier::Local, "s");
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
        store.replica_id(|| Some(7), None).await.unwrap().0,
        id,
        "kept, not redrawn"
    );
    let (mut back, scratch) = engine_over(id, 0);
    let loaded = store.load(&mut back).await.unwrap();
    assert_eq!(
        (loaded.docs, loaded.messages),
        (0, 1),
        "open reads no document (no `_config` here), and the retained message"
    );
    assert_eq!(back.replica().vector(), e.replica().vector());
    assert_eq!(back.replica().clock(), e.replica().clock());
    // Every durable state, tombstones included, read back through the live-dot index and
    // the document reads, as the engine asks for them.
    let all = e
        .replica()
        .delta(&VersionVector::new(), usize::MAX)
        .unwrap();
    assert_eq!(all.docs.len(), 3);
    let mut tries = 0;
    let read = loop {
        match back.replica().delta(&VersionVector::new(), usize::MAX) {
            Ok(d) => break d,
            Err(_) => {
                assert!(fetch_missed(&store, &scratch).await, "a refusal is a miss");
                tries += 1;
            }
        }
    };
    assert!(
        tries >= 1,
        "the live dots (with their documents) were read on demand"
    );
    assert_eq!(read.docs, all.docs);
    assert_eq!(read.watermark, all.watermark);
    store.close();
}

#[wasm_bindgen_test]
async fn a_read_not_fetched_is_an_error_never_absent() {
    let name = unique("miss");
    let b = open_db(&name).await;
    wait(b.put("notes".into(), "n1".into(), js(json!({"a": 1})))).await;
    wait(b.close()).await;
    let mut store = IdbStore::open(&name).await.unwrap();
    let (id, _) = store.replica_id(|| None, None).await.unwrap();
    let (mut e, scratch) = engine_over(id, 0);
    store.load(&mut e).await.unwrap();
    let key = DocKey::new("notes", "n1");
    let refused = e.replica().get(&key);
    assert!(
        matches!(refused, Err(bridge_core::Error::Store(_))),
        "{refused:?}"
    );
    // A write of a document not read is refused too, and changes nothing.
    let m = json!({"b": 2}).as_object().cloned().unwrap();
    assert!(bridge_core::testing::write(&mut e, 5_000, key.clone(), WriteOp::Patch(m)).is_err());
    assert!(!e.has_staged());
    assert!(fetch_missed(&store, &scratch).await);
    assert_eq!(e.replica().get(&key).unwrap(), Some(json!({"a": 1})));
    store.close();
}

fn opts(db: &str, cache: u32) -> JsValue {
    js(json!({"space": "team", "db": db, "name": "test", "cacheBytes": cache}))
}

async fn put_all(b: &Bridge, collection: &str, ids: impl Iterator<Item = u32>) {
    let promises: js_sys::Array = ids
        .map(|n| {
            JsValue::from(b.put(
                collection.into(),
                format!("d{n:05}").into(),
                js(json!({"n": n, "title": format!("Item number {n}"), "tags": ["a", "b"]})),
            ))
        })
        .collect();
    wait(Promise::all(&promises)).await;
}

#[wasm_bindgen_test]
async fn a_store_larger_than_its_cache_serves_every_document_list_and_conflict() {
    const DOCS: u32 = 2_000;
    const BUDGET: u32 = 64 * 1024;
    let db = unique("large");
    let b = open(opts(&db, BUDGET)).await.unwrap();
    wait(b.set_policy("conf".into(), "manual".into())).await;
    for round in 0..4 {
        put_all(&b, "bulk", round * 500..(round + 1) * 500).await;
    }
    // Every tenth document deleted (a tombstone), ten documents to conflict on.
    let deletes: js_sys::Array = (0..DOCS)
        .step_by(10)
        .map(|n| JsValue::from(b.delete("bulk".into(), format!("d{n:05}").into())))
        .collect();
    wait(Promise::all(&deletes)).await;
    put_all(&b, "conf", 0..10).await;
    assert!(stat(&b, "cacheBytes") <= f64::from(BUDGET));
    let replica: ReplicaId = b.replica().parse().unwrap();
    wait(b.close()).await;

    // Another replica wrote the same ten documents concurrently; its states arrive as a push
    // from a peer would bring them, through an engine over the same store.
    {
        let mut peer = Engine::new(EngineConfig::new(ReplicaId(0xbeef), Tier::Cloud, "team"));
        for n in 0..10u32 {
            let m = json!({"n": n, "side": "peer"})
                .as_object()
                .cloned()
                .unwrap();
            bridge_core::testing::write(
                &mut peer,
                js_sys::Date::now() as u64,
                DocKey::new("conf", format!("d{n:05}")),
                WriteOp::Put(m),
            )
            .unwrap();
        }
        while let Some(batch) = peer.poll_persist() {
            peer.persisted(batch.id).unwrap();
        }
        let delta = peer
            .replica()
            .delta(&VersionVector::new(), usize::MAX)
            .unwrap();
        let mut store = IdbStore::open(&db).await.unwrap();
        let (mut e, scratch) = engine_over(replica, BUDGET as usize);
        store.load(&mut e).await.unwrap();
        // As the client does: every document a push names is read before the engine takes
        // it (a join is not undone when a later read of the same push fails).
        let misses: Vec<Miss> = delta
            .docs
            .iter()
            .map(|d| Miss::Doc(DocKey::new(&d.collection, &d.id)))
            .collect();
        let epoch = scratch.lock().epoch();
        let (read, _) = store.reader().fetch(&misses).await.unwrap();
        assert!(scratch.lock().fill(epoch, read));
        let now = js_sys::Date::now() as u64;
        let changed = e
            .replica_mut()
            .apply_remote(now, delta.docs.clone(), &delta.watermark)
            .unwrap();
        // Ten documents, and the `_config/space` seed the peer (a cloud) wrote.
        assert_eq!(changed.len(), 11);
        let batch = e.poll_persist().unwrap();
        store.write(std::slice::from_ref(&batch)).await.unwrap();
        e.persisted(batch.id).unwrap();
        store.close();
    }

    // Reopened with the same small budget: every document, list page and conflict is there.
    let b = open(opts(&db, BUDGET)).await.unwrap();
    assert_eq!(stat(&b, "cacheBudget"), f64::from(BUDGET));
    let gets: js_sys::Array = (0..DOCS)
        .map(|n| JsValue::from(b.get("bulk".into(), format!("d{n:05}").into())))
        .collect();
    let got = rust(&wait(Promise::all(&gets)).await);
    for n in 0..DOCS {
        let want = if n % 10 == 0 {
            json!(null)
        } else {
            json!({"n": n, "title": format!("Item number {n}"), "tags": ["a", "b"]})
        };
        assert_eq!(got[n as usize], want, "document d{n:05}");
    }
    assert!(stat(&b, "cacheBytes") <= f64::from(BUDGET));
    assert!(stat(&b, "cacheBytes") > 0.0);
    let expected: Vec<String> = (0..DOCS)
        .filter(|n| n % 10 != 0)
        .map(|n| format!("d{n:05}"))
        .collect();
    // Pages of 100, each after the last id of the one before.
    let mut ids: Vec<String> = Vec::new();
    loop {
        let after = ids.last().map_or(JsValue::NULL, |a| a.as_str().into());
        let page = rust(&wait(b.list("bulk".into(), after, Some(100))).await);
        let page = page.as_array().unwrap().clone();
        for d in &page {
            ids.push(d["id"].as_str().unwrap().to_owned());
        }
        if page.len() < 100 {
            break;
        }
    }
    assert_eq!(ids, expected, "every page complete and in order");
    let whole = rust(&wait(b.list("bulk".into(), JsValue::NULL, None)).await);
    assert_eq!(whole.as_array().unwrap().len(), expected.len());
    let conflicts = rust(&wait(b.conflicts(JsValue::NULL)).await);
    let keys: Vec<&str> = conflicts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..10).map(|n| format!("d{n:05}")).collect();
    assert_eq!(keys, want, "every conflict, in key order");
    assert_eq!(conflicts[0]["sides"].as_array().unwrap().len(), 2);
    assert_eq!(
        rust(&wait(b.conflicts("conf".into())).await),
        conflicts,
        "the same, asked of the collection"
    );
    let collections = rust(&wait(b.collections()).await);
    assert_eq!(collections, json!(["bulk", "conf"]));
    // 2,000 documents, 10 conflicted, and the `_config` entries `collection:conf` and `space`.
    assert_eq!(wait(b.doc_count()).await.as_f64(), Some(2_012.0));
    // Writes on documents not in memory: a patch keeps the stored fields, a resolve closes
    // its conflict, a put over a tombstone revives it.
    wait(b.patch("bulk".into(), "d00007".into(), js(json!({"extra": 1})))).await;
    assert_eq!(
        rust(&wait(b.get("bulk".into(), "d00007".into())).await),
        json!({"n": 7, "title": "Item number 7", "tags": ["a", "b"], "extra": 1})
    );
    wait(b.resolve("conf".into(), "d00003".into(), js(json!({"n": 3})))).await;
    assert_eq!(
        rust(&wait(b.conflicts(JsValue::NULL)).await)
            .as_array()
            .unwrap()
            .len(),
        9
    );
    wait(b.put("bulk".into(), "d00010".into(), js(json!({"back": true})))).await;
    let page = rust(&wait(b.list("bulk".into(), JsValue::NULL, Some(10))).await);
    assert_eq!(page[9]["id"], "d00010", "the revived document is listed");
    assert!(stat(&b, "cacheBytes") <= f64::from(BUDGET));
    wait(b.close()).await;
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
        expanded: false,
    });
    let bytes = encode_binary(&frame);
    assert_eq!(decode_binary(&bytes).unwrap(), frame);
    assert!(
        decode_binary(&bytes[..bytes.len() - 1]).is_err(),
        "truncated"
    );
}

/// A store as schema 2 left it (documents as bare byte records, no indexes), written with
/// the IndexedDB API directly.
async fn schema_2_store(db: &str, docs: &[DocEntry], vector: &VersionVector, clock: (u64, u32)) {
    use idb::{Factory, ObjectStoreParams, TransactionMode};
    let factory = Factory::new().unwrap();
    let mut req = factory.open(db, Some(2)).unwrap();
    req.on_upgrade_needed(|event| {
        let db = idb::Event::target(&event).unwrap().database().unwrap();
        for store in ["docs", "messages", "meta", "damaged"] {
            db.create_object_store(store, ObjectStoreParams::new())
                .unwrap();
        }
    });
    let conn = req.await.unwrap();
    let tx = conn
        .transaction(&["docs", "meta"], TransactionMode::ReadWrite)
        .unwrap();
    let store = tx.object_store("docs").unwrap();
    for d in docs {
        let record = encode_binary(&Frame::Push(Push {
            seq: 0,
            docs: vec![d.clone()],
            watermark: VersionVector::new(),
            remaining: 0,
            expanded: false,
        }));
        let key = js_sys::Array::of2(&d.collection.as_str().into(), &d.id.as_str().into());
        store
            .put(
                &js_sys::Uint8Array::from(record.as_slice()).into(),
                Some(&key),
            )
            .unwrap();
    }
    let meta = tx.object_store("meta").unwrap();
    let bytes = |f: &Frame| JsValue::from(js_sys::Uint8Array::from(encode_binary(f).as_slice()));
    let space = js_sys::Array::of4(
        &bytes(&Frame::Pull {
            vector: vector.clone(),
        }),
        &bytes(&Frame::Hello(bridge_core::frame::Hello {
            space: String::new(),
            kind: bridge_core::frame::SessionKind::Peer,
            messages: Some(VersionVector::new()),
            horizon: None,
            ..Default::default()
        })),
        &(clock.0 as f64).into(),
        &f64::from(clock.1).into(),
    );
    meta.put(&space, Some(&"space".into())).unwrap();
    meta.put(&"000000000000002a".into(), Some(&"replica".into()))
        .unwrap();
    assert!(tx.await.unwrap().is_committed());
    conn.close();
}

#[wasm_bindgen_test]
async fn a_schema_2_store_opens_with_every_document_list_and_conflict() {
    // The states, made by engines in memory: replica 42 (the store's) and a peer that wrote
    // two of the same documents concurrently, in a `manual` collection.
    let mut mine = Engine::new(EngineConfig::new(ReplicaId(42), Tier::Local, "team"));
    let now = js_sys::Date::now() as u64;
    bridge_core::testing::set_policy(&mut mine, now, "conf", bridge_core::Policy::Manual).unwrap();
    for n in 0..2_100u32 {
        let m = json!({"n": n}).as_object().cloned().unwrap();
        let key = DocKey::new(if n < 5 { "conf" } else { "bulk" }, format!("d{n:04}"));
        bridge_core::testing::write(&mut mine, now, key, WriteOp::Put(m)).unwrap();
    }
    bridge_core::testing::write(
        &mut mine,
        now,
        DocKey::new("bulk", "d0100"),
        WriteOp::Delete,
    )
    .unwrap();
    let mut peer = Engine::new(EngineConfig::new(ReplicaId(0xbeef), Tier::Cloud, "team"));
    for n in 0..2u32 {
        let m = json!({"n": n, "peer": true}).as_object().cloned().unwrap();
        let key = DocKey::new("conf", format!("d{n:04}"));
        bridge_core::testing::write(&mut peer, now, key, WriteOp::Put(m)).unwrap();
    }
    for e in [&mut mine, &mut peer] {
        while let Some(b) = e.poll_persist() {
            e.persisted(b.id).unwrap();
        }
    }
    let theirs = peer
        .replica()
        .delta(&VersionVector::new(), usize::MAX)
        .unwrap();
    mine.replica_mut()
        .apply_remote(now, theirs.docs, &theirs.watermark)
        .unwrap();
    while let Some(b) = mine.poll_persist() {
        mine.persisted(b.id).unwrap();
    }
    let all = mine
        .replica()
        .delta(&VersionVector::new(), usize::MAX)
        .unwrap();
    let clock = mine.replica().clock();
    let db = unique("schema2");
    schema_2_store(
        &db,
        &all.docs,
        mine.replica().vector(),
        (clock.wall, clock.counter),
    )
    .await;

    let b = open(opts(&db, 16 * 1024)).await.unwrap();
    assert_eq!(b.replica(), "000000000000002a");
    assert_eq!(
        rust(&wait(b.get("bulk".into(), "d2050".into())).await),
        json!({"n": 2050})
    );
    assert!(wait(b.get("bulk".into(), "d0100".into())).await.is_null());
    let list = rust(&wait(b.list("bulk".into(), JsValue::NULL, None)).await);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (5..2_100)
        .filter(|n| *n != 100)
        .map(|n| format!("d{n:04}"))
        .collect();
    assert_eq!(ids, want);
    let conflicts = rust(&wait(b.conflicts(JsValue::NULL)).await);
    let keys: Vec<&str> = conflicts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["d0000", "d0001"],
        "found through the rebuilt conflicts index"
    );
    // 2,100 documents (rewritten in two transactions), the `_config` entries of `conf` and
    // of the peer's space seed.
    assert_eq!(wait(b.doc_count()).await.as_f64(), Some(2_102.0));
    // The next write continues from the stored vector, through the rebuilt live-dot index.
    let dot = wait(b.put("bulk".into(), "new".into(), js(json!({})))).await;
    assert_eq!(
        rust(&dot)["counter"],
        mine.replica().vector().get(ReplicaId(42)) + 1
    );
    wait(b.close()).await;
    // Rewritten once: the next open finds nothing left to rewrite, and everything still there.
    let b = open(opts(&db, 16 * 1024)).await.unwrap();
    assert_eq!(
        rust(&wait(b.get("conf".into(), "d0003".into())).await),
        json!({"n": 3})
    );
    wait(b.close()).await;
}
