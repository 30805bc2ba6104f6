//! Criterion benches of the core: remote applies, two-way merges under every policy, and the
//! two frame encodings. Commands and recorded figures: BENCHMARKS.md.
//!
//! `cargo bench -p bridge-core --bench core` (a few minutes on 2 cores). Sample counts are
//! kept small: each measured iteration of the apply and merge benches is a whole 100k-document
//! workload, rebuilt from scratch (untimed) before every run.

#[cfg(not(target_arch = "wasm32"))]
mod common;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::common::{self, Batch};
    use bridge_core::codec::{decode_binary, decode_json, encode_binary, encode_json};
    use bridge_core::frame::{Ack, Push};
    use bridge_core::message::{Message, MessageId};
    use bridge_core::{Dot, Frame, Policy, Stamp};
    use criterion::{criterion_group, BatchSize, Criterion, Throughput};
    use serde_json::json;
    use std::hint::black_box;
    use std::time::Duration;

    const DOCS: usize = 100_000;

    fn apply(c: &mut Criterion) {
        let batches: Vec<Batch> = common::remote_batches(DOCS);
        assert_eq!(
            common::apply_workload(batches.clone())
                .doc_count()
                .expect("in memory") as usize,
            DOCS
        );
        let mut g = c.benchmark_group("apply");
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(6))
            .throughput(Throughput::Elements(DOCS as u64));
        g.bench_function("remote_writes_100k", |b| {
            b.iter_batched(
                || batches.clone(),
                // Returned, so criterion drops the replica after the clock stops.
                common::apply_workload,
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }

    fn merge(c: &mut Criterion) {
        let mut g = c.benchmark_group("merge_100k_10pct");
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
            .throughput(Throughput::Elements((DOCS / 10) as u64));
        for policy in Policy::ALL {
            let (sa, sb, edited) = common::diverged(DOCS, policy);
            // Checked once, untimed: both sides end showing the same documents.
            let (mut a, mut b) = (sa.restore(policy), sb.restore(policy));
            assert_eq!(
                common::merge_workload(&mut a, &mut b, &edited),
                edited.len()
            );
            for k in &edited {
                assert_eq!(
                    a.get(k).expect("read"),
                    b.get(k).expect("read"),
                    "{policy}: {k:?}"
                );
                let siblings = a.state(k).expect("read").map(|s| s.siblings.len());
                assert_eq!(siblings, Some(2));
            }
            g.bench_function(policy.as_str(), |bench| {
                bench.iter_batched(
                    || (sa.restore(policy), sb.restore(policy)),
                    |(mut a, mut b)| {
                        let shown = common::merge_workload(&mut a, &mut b, &edited);
                        (a, b, shown)
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        g.finish();
    }

    /// A push as a peer sends it during an initial sync, and three small agent frames.
    fn frames() -> Vec<(&'static str, Frame)> {
        let (docs, watermark) = common::remote_batches(common::BATCH)
            .into_iter()
            .next()
            .expect("one batch");
        let push = Frame::Push(Push {
            seq: 17,
            docs,
            watermark,
            remaining: 99_744,
            expanded: false,
        });
        let put = Frame::Put {
            req: Some(42),
            collection: "notes".into(),
            id: "note-0042".into(),
            value: json!({"title": "buy milk", "done": false, "prio": 2}),
        };
        let ack = Frame::Ack(Ack {
            req: Some(42),
            seq: None,
            dot: Some(Dot::new(common::SOURCE, 1234)),
        });
        let broadcast = Frame::Broadcast {
            message: Message {
                id: MessageId {
                    origin: common::SOURCE,
                    seq: 77,
                },
                channel: "chat".into(),
                payload: json!({"from": "agent-7", "text": "build finished", "ok": true}),
                stamp: Stamp::new(common::NOW, 3, common::SOURCE),
            },
            offset: Some(77),
        };
        vec![
            ("push_256_docs", push),
            ("agent_put", put),
            ("agent_ack", ack),
            ("agent_broadcast", broadcast),
        ]
    }

    fn codec(c: &mut Criterion) {
        for (name, frame) in frames() {
            let json_bytes = encode_json(&frame).into_bytes();
            let bin_bytes = encode_binary(&frame);
            assert_eq!(decode_json(&json_bytes).as_ref(), Ok(&frame));
            assert_eq!(decode_binary(&bin_bytes).as_ref(), Ok(&frame));
            let mut g = c.benchmark_group(format!("codec/{name}"));
            g.sample_size(20)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
            g.throughput(Throughput::Bytes(json_bytes.len() as u64));
            g.bench_function("json_encode", |b| b.iter(|| encode_json(black_box(&frame))));
            g.bench_function("json_decode", |b| {
                b.iter(|| decode_json(black_box(&json_bytes)))
            });
            g.throughput(Throughput::Bytes(bin_bytes.len() as u64));
            g.bench_function("binary_encode", |b| {
                b.iter(|| encode_binary(black_box(&frame)))
            });
            g.bench_function("binary_decode", |b| {
                b.iter(|| decode_binary(black_box(&bin_bytes)))
            });
            g.finish();
        }
    }

    criterion_group!(benches, apply, merge, codec);
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(native::benches);

// Criterion is a native-only dependency; `cargo clippy --target wasm32-unknown-unknown
// --all-targets` still builds this target.
#[cfg(target_arch = "wasm32")]
fn main() {}
