//! The hub in process, over a real SQLite store, without a server around it: inputs go in on
//! its channel as the WebSocket and HTTP front ends send them, answers come back on their
//! reply channels.

use super::{Hub, HubConfig, Input, MetricsAccess};
use crate::store::Store;
use bridge_core::api::ApiResponse;
use bridge_core::{DocKey, Policy, Tier};
use bridge_core::{Request, WriteOp};
use serde_json::{json, Value};
use std::path::Path;
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

fn config(db_path: &str) -> HubConfig {
    HubConfig {
        tier: Tier::Local,
        secret: None,
        default_policy: Policy::Lww,
        metrics: MetricsAccess::Open,
        name: "hub-test".into(),
        db_path: db_path.into(),
        event_collections: Default::default(),
        event_channels: Default::default(),
        link_spaces: None,
        hello_timeout_ms: 10_000,
        heartbeat_ms: 0,
        cache_bytes: 1 << 20,
        collect: false,
        expiry_ms: None,
        collections: None,
        space_collections: Default::default(),
        out_queues: crate::out_queue::Budget::new(1 << 20, 1 << 24),
        in_queues: crate::in_queue::Budget::new(1 << 20, 1 << 24),
    }
}

/// A hub running on its own thread, as `serve` runs it. Stops (and closes its store) when
/// dropped or [`Running::stop`]ped.
struct Running {
    tx: Option<mpsc::Sender<Input>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn start(store: Store, db_path: &str) -> Running {
        let hub = match Hub::new(config(db_path), store) {
            Ok(h) => h,
            Err(e) => panic!("hub: {e}"),
        };
        let (tx, rx) = mpsc::channel(64);
        let thread = std::thread::spawn(move || hub.run(rx, None));
        Running {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Sends one HTTP API operation and waits for its answer (a write's comes after its
    /// commit). Returns the status and the body as JSON.
    fn api(&self, space: &str, request: Request) -> (u16, Value) {
        let (reply, answer) = oneshot::channel();
        let Some(tx) = self.tx.as_ref() else {
            panic!("the hub was stopped")
        };
        let input = Input::Api {
            space: space.into(),
            request,
            token: None,
            reply,
        };
        assert!(tx.blocking_send(input).is_ok(), "the hub stopped");
        let ApiResponse { status, body, .. } = match answer.blocking_recv() {
            Ok(r) => r,
            Err(e) => panic!("no answer: {e}"),
        };
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, body)
    }

    /// Closes the input channel: the hub finishes its round and returns; its store closes.
    fn stop(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            assert!(t.join().is_ok(), "the hub thread panicked");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn put(id: &str, v: Value) -> Request {
    let Value::Object(m) = v else {
        panic!("a document is an object: {v}")
    };
    Request::Write {
        key: DocKey::new("notes", id),
        op: WriteOp::Put(m),
    }
}

fn get(id: &str) -> Request {
    Request::Get {
        key: DocKey::new("notes", id),
    }
}

#[test]
fn the_hub_serves_writes_and_reads_over_an_in_memory_store() {
    let store = match Store::in_memory() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let hub = Running::start(store, ":memory:");
    assert_eq!(hub.api("s", put("a", json!({"n": 1}))).0, 200);
    assert_eq!(hub.api("s", put("b", json!({"n": 2}))).0, 200);
    let (status, doc) = hub.api("s", get("a"));
    assert_eq!((status, &doc["value"]), (200, &json!({"n": 1})), "{doc}");
    let (status, page) = hub.api(
        "s",
        Request::List {
            collection: "notes".into(),
            after: None,
            limit: 10,
        },
    );
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["docs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(hub.api("s", get("missing")).0, 404);
    hub.stop();
}

#[test]
fn what_the_hub_acknowledged_is_there_after_it_restarts() {
    let dir = std::env::temp_dir().join(format!("sb-hub-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("bridge.db");
    let open = |p: &Path| match Store::open(p) {
        Ok(s) => s,
        Err(e) => panic!("open {}: {e}", p.display()),
    };
    let db = path.display().to_string();

    let hub = Running::start(open(&path), &db);
    for i in 0..10 {
        let (status, v) = hub.api("s", put(&format!("d{i}"), json!({"i": i})));
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = hub.api(
        "s",
        Request::Write {
            key: DocKey::new("notes", "d3"),
            op: WriteOp::Delete,
        },
    );
    assert_eq!(status, 200, "{v}");
    hub.stop();

    // A new hub on the same file: every acknowledged write, and the delete.
    let hub = Running::start(open(&path), &db);
    for i in (0..10).filter(|i| *i != 3) {
        let (status, doc) = hub.api("s", get(&format!("d{i}")));
        assert_eq!((status, &doc["value"]), (200, &json!({"i": i})), "d{i}");
    }
    assert_eq!(hub.api("s", get("d3")).0, 404, "the delete survived too");
    // And it writes on.
    assert_eq!(hub.api("s", put("after", json!({}))).0, 200);
    hub.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `SYNC_COLLECTIONS_SPACES` names a space's collections in place of `SYNC_COLLECTIONS`.
#[test]
fn a_space_named_in_sync_collections_spaces_replicates_its_own_collections() {
    let mut cfg = config("unused.db");
    cfg.collections = Some(vec!["notes".into()]);
    cfg.space_collections
        .insert("ops".into(), vec!["audit".into(), "logs*".into()]);
    assert_eq!(
        super::engine_config(&cfg, "ops").collections,
        Some(vec!["audit".to_string(), "logs*".to_string()])
    );
    assert_eq!(
        super::engine_config(&cfg, "team").collections,
        Some(vec!["notes".to_string()])
    );
    cfg.collections = None;
    assert_eq!(super::engine_config(&cfg, "team").collections, None);
}
