//! A wasm32 module that links the real engine, for the import check in `scripts/test.sh`.
//!
//! `scripts/test.sh` builds this for `wasm32-unknown-unknown` and fails if the module imports
//! anything from `env` (the sign of a dependency reaching for libc, a clock or randomness the
//! core must not use). For the check to mean something the module must contain the engine,
//! so `main` drives two engines through a sync over JSON and over binary frames, with inputs the optimiser cannot
//! see through, and the checker also asserts a minimum code size.
//!
//! It is a binary, not a `cdylib` with `#[no_mangle]` exports: the workspace forbids
//! `unsafe_code`, which covers `no_mangle`, and `main` is exported anyway.
//!
//! Natively it runs too: `cargo run -p bridge-core --example wasm_probe -- 40`.

#[path = "../tests/support/harness.rs"]
mod harness;

use bridge_core::{DocKey, WriteOp};
use harness::{Pair, Wire};
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::process::ExitCode;

/// Writes `n` documents spread over both sides, syncs, and returns how many documents each
/// side holds.
fn probe(n: u64, wire: Wire) -> Result<usize, String> {
    let mut p = Pair::connect("probe", wire);
    for i in 0..n {
        let mut doc = Map::new();
        doc.insert("i".into(), Value::from(i));
        doc.insert("tag".into(), json!(["probe", i % 3]));
        let side = if i % 2 == 0 { p.a() } else { p.b() };
        side.write(i, DocKey::new("probe", format!("d{i}")), WriteOp::Put(doc))
            .map_err(|e| format!("write {i}: {e}"))?;
    }
    p.settle(n + 1, 10_000)?;
    let (a, b) = (
        p.replicas().0.doc_count().expect("in memory"),
        p.replicas().1.doc_count().expect("in memory"),
    );
    if a != b {
        return Err(format!("replicas differ: {a} vs {b} documents"));
    }
    Ok(a as usize)
}

fn main() -> ExitCode {
    // On wasm32-unknown-unknown there are no arguments; the default applies.
    let n = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let mut code = ExitCode::SUCCESS;
    for wire in [Wire::Json, Wire::Binary] {
        match probe(black_box(n), black_box(wire)) {
            Ok(docs) => println!(
                "wasm_probe: {wire:?}: {} documents on both sides",
                black_box(docs)
            ),
            Err(e) => {
                eprintln!("wasm_probe: {wire:?}: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}
