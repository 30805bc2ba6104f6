//! End-to-end through the core on both targets.
//!
//! These tests run natively under `cargo test` and, compiled to wasm32, in Node under
//! wasm-bindgen-test-runner (`scripts/test.sh`), so the code a browser or a Durable Object
//! runs is checked there too: two engines sync writes, patches, deletes and concurrent edits
//! through frames encoded as JSON and as binary, and end up showing the same documents.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[path = "support/harness.rs"]
mod harness;

use bridge_core::{DocKey, Policy, WriteOp};
use harness::{Pair, Wire, A_SIDE, B_SIDE};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("test document must be an object, got {other}"),
    }
}

fn assert_same_collection(p: &Pair, collection: &str) {
    let a = p.replicas().0.list(collection, None, usize::MAX);
    let b = p.replicas().1.list(collection, None, usize::MAX);
    assert_eq!(a, b, "replicas differ in `{collection}`");
}

fn writes_on_one_side_reach_the_other_and_are_acked(wire: Wire) {
    let mut p = Pair::connect("wasm-e2e", wire);
    for i in 0..25u64 {
        let key = DocKey::new("notes", format!("n{i:02}"));
        let doc = obj(json!({ "title": format!("note {i}"), "n": i }));
        p.a()
            .write(10 + i, key, WriteOp::Put(doc))
            .expect("local write");
    }
    p.settle(100, 200).expect("settles");

    assert_eq!(
        p.replicas().1.doc_count().expect("read"),
        p.replicas().0.doc_count().expect("read")
    );
    let got = p
        .replicas()
        .1
        .get(&DocKey::new("notes", "n07"))
        .expect("read");
    assert_eq!(got, Some(json!({ "title": "note 7", "n": 7 })));
    assert_same_collection(&p, "notes");
    let status = p.a().peer_status(A_SIDE).expect("link is a peer session");
    assert!(status.open);
    assert_eq!(
        status.pending, 0,
        "the cloud persisted and acknowledged every write"
    );
    assert!(p.net.frames > 0 && p.net.bytes > 0);
}

fn both_sides_write_and_converge(wire: Wire) {
    let mut p = Pair::connect("wasm-e2e", wire);
    p.settle(0, 50).expect("handshake");

    let shared = DocKey::new("notes", "shared");
    p.a()
        .write(
            1_000,
            shared.clone(),
            WriteOp::Put(obj(json!({ "by": "a" }))),
        )
        .expect("write on a");
    p.b()
        .write(
            1_001,
            shared.clone(),
            WriteOp::Put(obj(json!({ "by": "b" }))),
        )
        .expect("write on b");
    p.b()
        .write(
            1_002,
            DocKey::new("todo", "t1"),
            WriteOp::Put(obj(json!({ "done": false }))),
        )
        .expect("write on b");
    p.settle(2_000, 200).expect("settles");

    // Concurrent writes under `lww`: the same winner everywhere (b's stamp is higher).
    assert_eq!(
        p.replicas().0.get(&shared).expect("read"),
        Some(json!({ "by": "b" }))
    );
    assert_eq!(
        p.replicas().0.get(&shared).expect("read"),
        p.replicas().1.get(&shared).expect("read")
    );
    assert_eq!(p.replicas().0.policy("notes"), Policy::Lww);

    // A patch and a delete made after seeing the other side's writes win everywhere.
    let t1 = DocKey::new("todo", "t1");
    p.a()
        .write(
            3_000,
            t1.clone(),
            WriteOp::Patch(obj(json!({ "done": true }))),
        )
        .expect("patch on a");
    p.b()
        .write(3_001, shared.clone(), WriteOp::Delete)
        .expect("delete on b");
    p.settle(4_000, 200).expect("settles");

    assert_eq!(
        p.replicas().1.get(&t1).expect("read"),
        Some(json!({ "done": true }))
    );
    assert_eq!(
        p.replicas().0.get(&shared).expect("read"),
        None,
        "the delete reached a"
    );
    for c in ["notes", "todo"] {
        assert_same_collection(&p, c);
    }
    assert_eq!(p.replicas().0.vector(), p.replicas().1.vector());
    assert_eq!(p.b().peer_status(B_SIDE).map(|s| s.pending), Some(0));
}

/// A long initial sync (several bounded batches) through each codec: `settle` fails on any
/// frame a codec cannot carry. Returns the bytes carried.
fn initial_sync_of_600_documents(wire: Wire) -> u64 {
    let mut p = Pair::connect("wasm-e2e", wire);
    for i in 0..600u64 {
        let key = DocKey::new("bulk", format!("d{i:04}"));
        p.a()
            .write(i, key, WriteOp::Put(obj(json!({ "i": i, "tag": "bulk" }))))
            .expect("local write");
    }
    p.settle(1_000, 1_000).expect("settles");
    assert_eq!(
        p.replicas().1.list("bulk", None, 1000).expect("read").len(),
        600
    );
    assert_same_collection(&p, "bulk");
    assert!(p.net.frames >= 4, "600 documents take more than one push");
    p.net.bytes
}

#[test]
fn writes_reach_the_other_side_over_json_and_binary() {
    writes_on_one_side_reach_the_other_and_are_acked(Wire::Json);
    writes_on_one_side_reach_the_other_and_are_acked(Wire::Binary);
}

#[test]
fn both_sides_converge_over_json_and_binary() {
    both_sides_write_and_converge(Wire::Json);
    both_sides_write_and_converge(Wire::Binary);
}

#[test]
fn initial_sync_goes_through_both_codecs_and_binary_is_smaller() {
    let json = initial_sync_of_600_documents(Wire::Json);
    let binary = initial_sync_of_600_documents(Wire::Binary);
    assert!(
        binary < json,
        "binary frames should be the compact form: {binary} bytes vs {json} as JSON"
    );
}

/// A short run of the deterministic simulation (drops, duplicates, reorders, partitions,
/// crashes) on this target: the full 500-seed run is native (`tests/sim.rs`).
#[test]
fn a_short_simulation_converges() {
    use bridge_core::sim::{self, SimConfig};
    let mut writes = 0;
    for seed in 0..6u64 {
        let report = sim::run(seed).unwrap_or_else(|f| panic!("{f}"));
        writes += report.acked_writes;
    }
    for seed in 1_000..1_010u64 {
        let report = sim::run_with(seed, &SimConfig::short()).unwrap_or_else(|f| panic!("{f}"));
        writes += report.acked_writes;
    }
    assert!(
        writes > 16,
        "the runs must acknowledge real writes, got {writes}"
    );
}
