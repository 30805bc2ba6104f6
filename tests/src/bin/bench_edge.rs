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
    let (file, ndjson) = tests::large_ndjson(&local_dir.0, n);
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
    let idle = edge.workerd_rss_mb();
    println!("bench edge: workerd RSS idle (empty space woken) {idle:.1} MB");

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
    let last = format!("/v1/spaces/big/docs/items/d{:07}", n - 1);
    let mut peak = idle;
    loop {
        peak = peak.max(edge.workerd_rss_mb());
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
    drop(hybrid);
    // Every document arrived: spot checks over the space.
    for i in (0..n).step_by((n / 97).max(1)) {
        let (s, v) = http(
            edge.port,
            "GET",
            &format!("/v1/spaces/big/docs/items/d{i:07}"),
            None,
            Some(&tok),
        );
        assert_eq!((s, &v["value"]["n"]), (200, &json!(i)), "d{i}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = edge.workerd_rss_mb();
    println!(
        "bench edge: hybrid host → Durable Object upload of {n} documents (host start included, polled every 250 ms): {secs:.1} s ({:.0} docs/s); workerd RSS peak {peak:.1} MB ({:.1} above idle), after {after:.1} MB ({:.1} above idle)",
        n as f64 / secs,
        peak - idle,
        after - idle
    );

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
