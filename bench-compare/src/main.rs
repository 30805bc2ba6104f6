//! The map workload of BENCHMARKS.md done with bridge-core, automerge and yrs, side by side in
//! one run: `n` keys written on replica A, `m` other keys on replica B, then synced A→B and
//! B→A with each library's own sync mechanism, after which both sides must hold the same map.
//!
//! - bridge-core: one document per key (`{"v": i}`); B's vector → A's `Replica::delta` in
//!   push batches of 256 → binary `push` frames (encoded and decoded) → `apply_remote`, then
//!   the batch is cut and reported persisted; then the same from B to A.
//! - automerge: one `AutoCommit` per replica, all keys in the root map (value `i`), one commit
//!   per replica; each side's `save_incremental()` bytes → the other's `load_incremental()`.
//! - yrs: one root map per replica (value `i`), one transaction per replica; B's state vector
//!   (v1 bytes) → A's `encode_state_as_update_v1` → B's `apply_update`, then B to A.
//!
//! `cargo run --release -- [RUNS] [SIZES...]` from `bench-compare/` (default: 5 runs of
//! 10000 and 100000 keys per side). Runs of the three libraries are interleaved, so noise on
//! this shared machine hits them alike; the table shows medians and ratios.

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ReadDoc, ROOT};
use bridge_core::codec::{decode_binary, encode_binary};
use bridge_core::frame::Push;
use bridge_core::{DocKey, Frame, Replica, ReplicaId, Tier, VersionVector, WriteOp};
use serde_json::{Map, Value};
use std::hint::black_box;
use std::time::{Duration, Instant};
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, Map as _, ReadTxn, StateVector, Transact, Update};

const NOW: u64 = 1_764_000_000_000;
const BATCH: usize = 256;

/// Time to write (both sides) and to sync (both ways), and the bytes that crossed the wire.
#[derive(Clone, Copy, Default)]
struct Run {
    write: Duration,
    sync: Duration,
    bytes: usize,
}

impl Run {
    fn total(&self) -> Duration {
        self.write + self.sync
    }
}

fn key_a(i: usize) -> String {
    format!("a-{i:07}")
}
fn key_b(i: usize) -> String {
    format!("b-{i:07}")
}

// ---- bridge-core ---------------------------------------------------------------------------

fn flush(r: &mut Replica) {
    while let Some(batch) = r.cut() {
        r.persisted(batch.id)
            .expect("batches are reported in order");
    }
}

/// Everything `from` has that `to` lacks, as binary push frames over a pretend wire.
fn bridge_sync(from: &Replica, to: &mut Replica) -> usize {
    let mut known: VersionVector = to.vector().clone();
    let mut bytes = 0;
    let mut seq = 0;
    while from.ahead_of(&known) {
        let d = from
            .delta(&known, BATCH)
            .expect("a replica in memory reads");
        known.join(&d.watermark);
        seq += 1;
        let wire = encode_binary(&Frame::Push(Push {
            seq,
            docs: d.docs,
            watermark: d.watermark,
            remaining: d.remaining,
            expanded: false,
        }));
        bytes += wire.len();
        let Ok(Frame::Push(p)) = decode_binary(&wire) else {
            panic!("a push frame decodes");
        };
        to.apply_remote(NOW, p.docs, &p.watermark)
            .expect("a valid push");
        flush(to);
    }
    bytes
}

fn bridge_run(n: usize, m: usize) -> Run {
    let doc = |i: usize| {
        let mut o = Map::new();
        o.insert("v".into(), Value::from(i));
        WriteOp::Put(o)
    };
    let t0 = Instant::now();
    let mut a = Replica::new(ReplicaId(1), Tier::Local, "kv");
    let mut b = Replica::new(ReplicaId(2), Tier::Cloud, "kv");
    for i in 0..n {
        a.write(NOW, DocKey::new("kv", key_a(i)), doc(i))
            .expect("a valid write");
    }
    flush(&mut a);
    for i in 0..m {
        b.write(NOW, DocKey::new("kv", key_b(i)), doc(i))
            .expect("a valid write");
    }
    flush(&mut b);
    let t1 = Instant::now();
    let mut bytes = bridge_sync(&a, &mut b);
    bytes += bridge_sync(&b, &mut a);
    let t2 = Instant::now();
    let la = a
        .list("kv", None, usize::MAX)
        .expect("a replica in memory reads");
    assert_eq!(la.len(), n + m);
    assert_eq!(
        la,
        b.list("kv", None, usize::MAX)
            .expect("a replica in memory reads"),
        "bridge-core: replicas differ"
    );
    black_box((a, b));
    Run {
        write: t1 - t0,
        sync: t2 - t1,
        bytes,
    }
}

// ---- automerge -----------------------------------------------------------------------------

fn automerge_run(n: usize, m: usize) -> Run {
    let t0 = Instant::now();
    let mut a = AutoCommit::new().with_actor(ActorId::from(vec![1u8; 16]));
    let mut b = AutoCommit::new().with_actor(ActorId::from(vec![2u8; 16]));
    for i in 0..n {
        a.put(ROOT, key_a(i), i as i64).expect("a valid put");
    }
    a.commit();
    for i in 0..m {
        b.put(ROOT, key_b(i), i as i64).expect("a valid put");
    }
    b.commit();
    let t1 = Instant::now();
    let a_to_b = a.save_incremental();
    b.load_incremental(&a_to_b).expect("A's changes load");
    let b_to_a = b.save_after(&a.get_heads());
    a.load_incremental(&b_to_a).expect("B's changes load");
    let t2 = Instant::now();
    assert_eq!(a.get_heads(), b.get_heads(), "automerge: heads differ");
    assert_eq!(a.length(ROOT), n + m);
    assert_eq!(b.length(ROOT), n + m);
    for k in [key_a(0), key_a(n - 1), key_b(0), key_b(m - 1)] {
        let va = a.get(ROOT, k.as_str()).expect("readable").map(|(v, _)| v);
        let vb = b.get(ROOT, k.as_str()).expect("readable").map(|(v, _)| v);
        assert!(va.is_some() && va == vb, "automerge: {k} differs");
    }
    black_box((a, b));
    Run {
        write: t1 - t0,
        sync: t2 - t1,
        bytes: a_to_b.len() + b_to_a.len(),
    }
}

// ---- yrs -----------------------------------------------------------------------------------

/// What `from` has that `to` lacks, as a v1 update computed from `to`'s encoded state vector.
fn yrs_sync(from: &Doc, to: &Doc) -> usize {
    let sv = to.transact().state_vector().encode_v1();
    let sv = StateVector::decode_v1(&sv).expect("a state vector decodes");
    let update = from.transact().encode_state_as_update_v1(&sv);
    let decoded = Update::decode_v1(&update).expect("an update decodes");
    to.transact_mut()
        .apply_update(decoded)
        .expect("the update applies");
    sv.encode_v1().len() + update.len()
}

fn yrs_run(n: usize, m: usize) -> Run {
    let t0 = Instant::now();
    let a = Doc::with_client_id(1);
    let b = Doc::with_client_id(2);
    let ma = a.get_or_insert_map("kv");
    let mb = b.get_or_insert_map("kv");
    {
        let mut t = a.transact_mut();
        for i in 0..n {
            ma.insert(&mut t, key_a(i), i as i64);
        }
    }
    {
        let mut t = b.transact_mut();
        for i in 0..m {
            mb.insert(&mut t, key_b(i), i as i64);
        }
    }
    let t1 = Instant::now();
    let mut bytes = yrs_sync(&a, &b);
    bytes += yrs_sync(&b, &a);
    let t2 = Instant::now();
    {
        let (ta, tb) = (a.transact(), b.transact());
        assert_eq!(ma.len(&ta) as usize, n + m);
        assert_eq!(ta.state_vector(), tb.state_vector(), "yrs: states differ");
        assert_eq!(ma.to_json(&ta), mb.to_json(&tb), "yrs: maps differ");
    }
    black_box((a, b));
    Run {
        write: t1 - t0,
        sync: t2 - t1,
        bytes,
    }
}

// ---- report --------------------------------------------------------------------------------

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .map(|s| s.parse().expect("RUNS is a number"))
        .unwrap_or(5);
    let mut sizes: Vec<usize> = args.map(|s| s.parse().expect("a size")).collect();
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000];
    }
    type Lib = (&'static str, fn(usize, usize) -> Run);
    let all: [Lib; 3] = [
        ("bridge-core", bridge_run),
        ("automerge", automerge_run),
        ("yrs", yrs_run),
    ];
    // `BENCH_ONLY=bridge-core` (or another name) runs one library alone, for a profiler.
    let only = std::env::var("BENCH_ONLY").ok();
    let libs: Vec<Lib> = all
        .into_iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
        .collect();
    assert!(!libs.is_empty(), "BENCH_ONLY names none of bridge-core, automerge, yrs");
    println!(
        "map workload: N keys written on A, N other keys on B, synced A->B and B->A; \
         median of {runs} interleaved runs"
    );
    for &n in &sizes {
        // One warm-up run each, then interleaved measured runs.
        for (_, f) in &libs {
            f(n.min(1000), n.min(1000));
        }
        let mut results: Vec<Vec<Run>> = vec![Vec::new(); libs.len()];
        for _ in 0..runs {
            for (i, (_, f)) in libs.iter().enumerate() {
                results[i].push(f(n, n));
            }
        }
        let med: Vec<(Duration, Duration, Duration, usize)> = results
            .iter()
            .map(|rs| {
                (
                    median(rs.iter().map(|r| r.write).collect()),
                    median(rs.iter().map(|r| r.sync).collect()),
                    median(rs.iter().map(Run::total).collect()),
                    rs[0].bytes,
                )
            })
            .collect();
        println!("\nN = M = {n}");
        println!(
            "{:<12} {:>10} {:>10} {:>10} {:>12} {:>14} {:>14}",
            "library",
            "write ms",
            "sync ms",
            "total ms",
            "wire bytes",
            "total vs this",
            "sync vs this"
        );
        let (_, bc_sync, bc_total, _) = med[0];
        for ((name, _), (w, s, t, bytes)) in libs.iter().zip(&med) {
            println!(
                "{:<12} {:>10.1} {:>10.1} {:>10.1} {:>12} {:>13.2}x {:>13.2}x",
                name,
                ms(*w),
                ms(*s),
                ms(*t),
                bytes,
                ms(*t) / ms(bc_total),
                ms(*s) / ms(bc_sync),
            );
        }
    }
    println!(
        "\n`total vs this` = library's median total / bridge-core's: above 1 means bridge-core \
         is that many times faster."
    );
}
