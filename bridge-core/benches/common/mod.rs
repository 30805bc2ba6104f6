//! Workloads shared by the core's benches (`core.rs` with criterion, `apply_wasm.rs` natively
//! and compiled to wasm32), so every figure in BENCHMARKS.md measures the same thing.
//!
//! Remote applies are fed realistic input: documents written on another replica and cut
//! from it with [`Replica::delta`] in push-sized batches, exactly what a `push` frame carries.

#![allow(dead_code)] // each bench uses its own subset

use bridge_core::frame::DocEntry;
use bridge_core::{DocKey, Policy, Replica, ReplicaId, Tier, VersionVector, WriteOp};
use serde_json::{json, Map, Value};

/// Wall clock passed to every call (the core never reads one).
pub const NOW: u64 = 1_764_000_000_000;
/// Documents per push batch (the engine's default `batch_docs`).
pub const BATCH: usize = 256;
pub const COLLECTION: &str = "items";

pub const SOURCE: ReplicaId = ReplicaId(0x0a0a_0a0a_0a0a_0a0a);
pub const TARGET: ReplicaId = ReplicaId(0x0b0b_0b0b_0b0b_0b0b);

/// One push: the documents and the watermark that comes with them.
pub type Batch = (Vec<DocEntry>, VersionVector);

pub fn key(i: usize) -> DocKey {
    DocKey::new(COLLECTION, format!("item-{i:07}"))
}

/// A small, typical document: a few fields of different JSON types.
pub fn body(i: usize) -> Map<String, Value> {
    let v = json!({
        "title": format!("item number {i}"),
        "n": i,
        "done": i % 3 == 0,
        "tags": ["bench", if i % 2 == 0 { "even" } else { "odd" }],
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Cuts and persists everything staged, as a host does after each round of input.
pub fn flush(r: &mut Replica) {
    while let Some(batch) = r.cut() {
        r.persisted(batch.id)
            .expect("batches are reported in order");
    }
}

/// `n` documents written on a source replica, cut into push batches with [`Replica::delta`].
pub fn remote_batches(n: usize) -> Vec<Batch> {
    let mut src = Replica::new(SOURCE, Tier::Local, "bench");
    for i in 0..n {
        src.write(NOW, key(i), WriteOp::Put(body(i)))
            .expect("a valid write");
    }
    flush(&mut src);
    deltas(&src, &VersionVector::new())
}

/// Everything `from` holds that a peer at `known` lacks, in push batches.
pub fn deltas(from: &Replica, known: &VersionVector) -> Vec<Batch> {
    let mut known = known.clone();
    let mut out = Vec::new();
    while from.ahead_of(&known) {
        let d = from.delta(&known, BATCH).expect("in memory");
        known.join(&d.watermark);
        out.push((d.docs, d.watermark));
    }
    out
}

/// Applies push batches into `r`, cutting and persisting after each push. Returns the number
/// of documents that changed.
pub fn apply(r: &mut Replica, batches: Vec<Batch>) -> usize {
    let mut changed = 0;
    for (docs, watermark) in batches {
        changed += r
            .apply_remote(NOW, docs, &watermark)
            .expect("a valid push")
            .len();
        flush(r);
    }
    changed
}

/// The apply workload: `batches` into a fresh replica, which is returned so that the caller
/// can drop it outside the timed section.
pub fn apply_workload(batches: Vec<Batch>) -> Replica {
    let mut r = Replica::new(TARGET, Tier::Cloud, "bench");
    let changed = apply(&mut r, batches);
    assert_eq!(changed, r.doc_count().expect("in memory") as usize);
    r
}

/// A replica's durable contents, to rebuild it quickly for every measured merge.
pub struct Snapshot {
    id: ReplicaId,
    tier: Tier,
    docs: Vec<DocEntry>,
    vector: VersionVector,
    clock: bridge_core::Stamp,
}

impl Snapshot {
    pub fn of(r: &Replica) -> Self {
        Snapshot {
            id: r.id(),
            tier: r.tier(),
            docs: r
                .delta(&VersionVector::new(), usize::MAX)
                .expect("in memory")
                .docs,
            vector: r.vector().clone(),
            clock: r.clock(),
        }
    }

    /// The replica again, as a host restores it from storage.
    pub fn restore(&self, policy: Policy) -> Replica {
        let mut r = Replica::new(self.id, self.tier, "bench").with_default_policy(policy);
        for e in &self.docs {
            r.restore_doc(DocKey::new(&e.collection, &e.id), e.state.clone());
        }
        r.restore_meta(self.vector.clone(), self.clock, VersionVector::new());
        r
    }
}

/// Two replicas (local and cloud) holding the same `n` documents, after which both edit
/// every tenth document concurrently (different fields, so `merge` has something to merge).
/// Returns their snapshots and the keys edited on both sides.
pub fn diverged(n: usize, policy: Policy) -> (Snapshot, Snapshot, Vec<DocKey>) {
    let mut a = Replica::new(SOURCE, Tier::Local, "bench").with_default_policy(policy);
    let mut b = Replica::new(TARGET, Tier::Cloud, "bench").with_default_policy(policy);
    for i in 0..n {
        a.write(NOW, key(i), WriteOp::Put(body(i)))
            .expect("a valid write");
    }
    flush(&mut a);
    let initial = deltas(&a, b.vector());
    apply(&mut b, initial);
    let mut edited = Vec::new();
    for i in (0..n).step_by(10) {
        let mut pa = Map::new();
        pa.insert("title".into(), Value::from(format!("edited on a {i}")));
        a.write(NOW + 1, key(i), WriteOp::Patch(pa))
            .expect("a valid write");
        let mut pb = Map::new();
        pb.insert("n".into(), Value::from(-(i as i64)));
        b.write(NOW + 2, key(i), WriteOp::Patch(pb))
            .expect("a valid write");
        edited.push(key(i));
    }
    flush(&mut a);
    flush(&mut b);
    (Snapshot::of(&a), Snapshot::of(&b), edited)
}

/// The merge workload: A's delta into B and B's back into A (push batches, cut and persist
/// after each), then the visible value of every concurrently edited document on both sides.
/// Returns how many of them show a value.
pub fn merge_workload(a: &mut Replica, b: &mut Replica, edited: &[DocKey]) -> usize {
    let a_to_b = deltas(a, b.vector());
    apply(b, a_to_b);
    let b_to_a = deltas(b, a.vector());
    apply(a, b_to_a);
    let mut shown = 0;
    for k in edited {
        let va = a.get(k).expect("in memory");
        let vb = b.get(k).expect("in memory");
        if va.is_some() && vb.is_some() {
            shown += 1;
        }
        std::hint::black_box((va, vb));
    }
    shown
}
