//! The apply workload of `core.rs` (100k remote document writes, in push batches, cut and
//! persisted after each) timed by hand, so that the same code runs natively and compiled to
//! wasm32 in Node, and `scripts/bench-wasm.sh` can put the two side by side.
//!
//! Natively: `cargo test --release -p bridge-core --bench apply_wasm` (runs `main`).
//! wasm32: the same with `--target wasm32-unknown-unknown` and wasm-bindgen-test-runner as
//! the runner (runs the `#[wasm_bindgen_test]` below, timed with `performance.now()`).
//! It is a bench target, so plain `cargo test` never builds or runs it.
//!
//! Both print one line: `apply_100k <target>: median <ms> ms, <n> docs/s (<runs> runs)`.

mod common;

const DOCS: usize = 100_000;
const RUNS: usize = 7;

/// Runs the workload `RUNS` times (after one warm-up) and prints the median, timing with
/// `now_ms`.
fn measure(target: &str, now_ms: impl Fn() -> f64, print: impl Fn(&str)) {
    let batches = common::remote_batches(DOCS);
    assert_eq!(
        common::apply_workload(batches.clone())
            .doc_count()
            .expect("in memory") as usize,
        DOCS
    );
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let input = batches.clone();
        let start = now_ms();
        let replica = common::apply_workload(std::hint::black_box(input));
        times.push(now_ms() - start);
        // Dropped after the clock stops, as criterion does in `core.rs`.
        assert_eq!(replica.doc_count().expect("in memory") as usize, DOCS);
    }
    times.sort_by(f64::total_cmp);
    let median = times[RUNS / 2];
    print(&format!(
        "apply_100k {target}: median {median:.1} ms, {:.0} docs/s ({RUNS} runs, min {:.1} ms, max {:.1} ms)",
        DOCS as f64 / (median / 1000.0),
        times[0],
        times[RUNS - 1]
    ));
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let t0 = std::time::Instant::now();
    measure(
        "native",
        || t0.elapsed().as_secs_f64() * 1000.0,
        |line| println!("{line}"),
    );
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use wasm_bindgen_test::{console_log, wasm_bindgen_test};

    /// `performance.now()` where the host has it (Node, browsers), else `Date.now()`.
    fn now_ms() -> f64 {
        let global = js_sys::global();
        let perf = js_sys::Reflect::get(&global, &"performance".into()).ok();
        let now = perf.as_ref().and_then(|p| {
            let f = js_sys::Reflect::get(p, &"now".into()).ok()?;
            if !f.is_function() {
                return None;
            }
            js_sys::Function::from(f).call0(p).ok()?.as_f64()
        });
        now.unwrap_or_else(js_sys::Date::now)
    }

    #[wasm_bindgen_test]
    fn apply_100k() {
        super::measure("wasm32", now_ms, |line| console_log!("{line}"));
    }
}
