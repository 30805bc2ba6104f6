//! A large space in one Durable Object under `wrangler dev` (issue 10's edge figures), by
//! hand only (minutes, and gigabytes of disk):
//!
//! ```sh
//! bash scripts/edge-build.sh
//! cargo build --release -p native-host -p tests --bin sacred-bridge --bin bench_edge
//! BENCH_DOCS=1000000 target/release/bench_edge
//! ```
//!
//! `BENCH_DOCS` documents of the large benchmarks' shape are imported into a hybrid host
//! while it is offline (local mode, same database); then it starts in hybrid mode linked to
//! the dev server and uploads them to the space's Durable Object. Printed: the upload rate
//! (until the object answers the last document), workerd's RSS idle / peak during the upload
//! / after it, and after a restart of the dev server the time to the first answer from the
//! object (a GET of one document), and workerd's RSS then.
//!
//! With `BENCH_PARTIAL=1` (issue 12's figure) the documents are spread over 100 collections
//! (`c00`..`c99`), and after the upload a headless Chromium opens a browser store of one of
//! them (`c07`, `BENCH_DOCS` / 100 documents) against the object and times it until the
//! store holds them, counting the bytes its WebSocket received
//! (`wasm-client/e2e/bench-partial.mjs`; needs `bash scripts/build-wasm-client.sh`).

use serde_json::json;
use std::time::{Duration, Instant};
use tests::edge::Edge;
use tests::{http, mint_token, Host, TempDir};

const SECRET: &str = "bench-secret-0123456789abcdef";

fn main() {
    tests::use_binary_beside_this_one();
    let n = tests::bench_docs();
    let local_dir = TempDir::new("bench-edge-local");
    let state = TempDir::new("bench-edge-state");

    // The documents, into a local-mode host on the database the hybrid host will use.
    let partial = std::env::var("BENCH_PARTIAL").is_ok_and(|v| v == "1");
    let (file, ndjson, subset) = if partial {
        let (file, docs, bytes) = tests::spread_ndjson(&local_dir.0, n);
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        (file, size, Some((docs, bytes)))
    } else {
        let (file, size) = tests::large_ndjson(&local_dir.0, n);
        (file, size, None)
    };
    // A document's path: the spread puts document `i` in collection `c{i % 100}`.
    let path = |i: usize| match partial {
        true => format!("/v1/spaces/big/docs/c{:02}/d{i:07}", i % 100),
        false => format!("/v1/spaces/big/docs/items/d{i:07}"),
    };
    {
        let local = Host::start(&local_dir.0, "local", &[]);
        let api = format!("http://127.0.0.1:{}", local.api_port);
        let t = Instant::now();
        tests::import(&local_dir.0, &file, "big", &api, None);
        println!(
            "bench edge: {n} documents ({:.1} MB NDJSON) imported into the local host in {:.1} s",
            ndjson as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
    }

    let mut edge = Edge::start(&state.0, SECRET);
    let tok = mint_token(&state.0, SECRET, "big", "admin", "1h");
    // Wake the object once, so "idle" includes an empty space's isolate.
    let (s, _) = http(
        edge.port,
        "GET",
        "/v1/spaces/big/docs/items/none",
        None,
        Some(&tok),
    );
    assert_eq!(s, 404);
    std::thread::sleep(Duration::from_millis(500));
    let idle_split = edge.workerd_memory();
    let idle = idle_split.total;
    println!("bench edge: workerd RSS idle (empty space woken) {idle_split}");

    let url = edge.base_ws_url();
    let t = Instant::now();
    let hybrid = Host::start(
        &local_dir.0,
        "hybrid",
        &[
            ("CLOUD_WS_URL", url.as_str()),
            ("CLOUD_PROJECT_ID", "big"),
            ("BRIDGE_TOKEN", tok.as_str()),
        ],
    );
    let last = path(n - 1);
    // Sampled every 50 ms on a thread of its own: the polling GETs below wait behind the
    // object's pushes, so sampling between them would miss the peak.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let group = edge.group();
        std::thread::spawn(move || {
            let mut peak = idle_split;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = group
                    .map(tests::edge::workerd_memory_of)
                    .unwrap_or_default();
                if now.total > peak.total {
                    peak = now;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    loop {
        if http(edge.port, "GET", &last, None, Some(&tok)).0 == 200 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3600),
            "upload did not finish"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_split = sampler.join().unwrap_or(idle_split);
    let peak = peak_split.total;
    drop(hybrid);
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "bench edge: workerd once the host left (before the spot checks) {}",
        edge.workerd_memory()
    );
    // Every document arrived: spot checks over the space.
    for i in (0..n).step_by((n / 97).max(1)) {
        let (s, v) = http(edge.port, "GET", &path(i), None, Some(&tok));
        assert_eq!((s, &v["value"]["n"]), (200, &json!(i)), "d{i}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let after_split = edge.workerd_memory();
    let after = after_split.total;
    println!("bench edge: workerd at the peak {peak_split}; after the upload {after_split}");
    println!(
        "bench edge: hybrid host → Durable Object upload of {n} documents (host start included, polled every 250 ms): {secs:.1} s ({:.0} docs/s); workerd RSS peak {peak:.1} MB ({:.1} above idle), after {after:.1} MB ({:.1} above idle)",
        n as f64 / secs,
        peak - idle,
        after - idle
    );

    if let Some((docs, bytes)) = subset {
        let status = std::process::Command::new("node")
            .arg("wasm-client/e2e/bench-partial.mjs")
            .current_dir(tests::edge::repo_root())
            .env("EDGE_URL", edge.base_ws_url())
            .env("EDGE_TOKEN", &tok)
            .env("EDGE_SPACE", "big")
            .env("SUBSET", "c07")
            .env("SUBSET_DOCS", docs.to_string())
            .env("SUBSET_BYTES", bytes.to_string())
            .env("TOTAL_DOCS", n.to_string())
            .env("TMPDIR", &state.0)
            .status()
            .expect("node");
        assert!(
            status.success(),
            "bench-partial.mjs failed:\n{}",
            edge.log()
        );
        return;
    }
    edge.restart();
    let restarted_idle = edge.workerd_rss_mb();
    let t = Instant::now();
    let (s, _) = http(
        edge.port,
        "GET",
        "/v1/spaces/big/docs/items/d0000000",
        None,
        Some(&tok),
    );
    let first = t.elapsed();
    assert_eq!(s, 200);
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "bench edge: after a restart of the dev server: first GET answered in {:.1} ms; workerd RSS before it {restarted_idle:.1} MB, after {:.1} MB",
        first.as_secs_f64() * 1000.0,
        edge.workerd_rss_mb()
    );
}
