//! Benchmarks of the native host over real processes on loopback (issue 3).
//!
//! ```sh
//! CARGO_TARGET_DIR=target cargo build --release -p native-host -p tests --bin bench_host
//! target/release/bench_host            # all; or name some: writes latency sync fanout slow replay
//! BENCH_DOCS=1000000 target/release/bench_host large   # by hand only: never in the default set
//! BENCH_DOCS=1000000 target/release/bench_host partial-sync   # by hand only, likewise
//! ```
//!
//! Uses the release `sacred-bridge` next to this binary (or `SACRED_BRIDGE_BIN`). Prints one
//! line per figure; BENCHMARKS.md records a run.
#![allow(clippy::unwrap_used)] // a benchmark that cannot run should stop loudly

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tests::{http, http_raw, mint_token, Agent, Host, TempDir};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "bench-secret-0123456789abcdef";

fn rss_mb(host: &Host) -> f64 {
    rss_of(host.child.id())
}

/// What the cloud-mode hosts here take for `/metrics`.
const METRICS_TOKEN: &str = "bench-metrics";

fn metric(port: u16, token: Option<&str>, name: &str) -> u64 {
    let (_, v) = http(port, "GET", "/metrics", None, token);
    let text = v.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find(|l| l.starts_with(&format!("sacred_bridge_{name} ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Documents the host stores for `space`: the `/metrics` gauge, which reads the count schema 7
/// keeps (one row, not a scan of the space).
fn engine_docs(port: u16, token: Option<&str>, space: &str) -> u64 {
    let (_, v) = http(port, "GET", "/metrics", None, token);
    let prefix = format!("sacred_bridge_docs{{space=\"{space}\"}} ");
    v.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The commit-duration histogram: the smallest bucket bound holding 99% of the commits, and
/// how many commits took over 5 ms, of how many.
fn commit_tail(port: u16) -> (String, u64, u64) {
    let (_, v) = http(port, "GET", "/metrics", None, None);
    let buckets: Vec<(String, u64)> = v
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("sacred_bridge_commit_duration_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, n) = l.split_once("\"} ")?;
            Some((le.to_owned(), n.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0, |b| b.1);
    let p99 = buckets
        .iter()
        .find(|(_, n)| *n as f64 >= total as f64 * 0.99)
        .map_or_else(|| "?".to_owned(), |(le, _)| le.clone());
    let under_5ms = buckets
        .iter()
        .find(|(le, _)| le == "0.005")
        .map_or(0, |b| b.1);
    (p99, total - under_5ms, total)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sends `count` messages of `blob` bytes of payload on channel `big`, at most `window`
/// unacknowledged, and returns once every one is acknowledged.
async fn send_on_big(sender: &mut Agent, count: u64, blob: usize, window: u64) {
    let payload = "x".repeat(blob);
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < count {
        while sent < count && sent - acked < window {
            sent += 1;
            let f = json!({"type": "send", "req": sent, "channel": "big", "payload": {"n": sent, "blob": payload}});
            sender
                .ws
                .feed(Message::Text(f.to_string().into()))
                .await
                .unwrap();
        }
        sender.ws.flush().await.unwrap();
        let v = sender.recv().await.unwrap();
        match v["type"].as_str() {
            Some("ack") => acked += 1,
            Some("error") => panic!("{v}"),
            _ => {}
        }
    }
}

async fn hello(url: &str, space: &str, token: Option<&str>) -> Agent {
    let (a, w) = Agent::hello(url, space, token).await;
    assert_eq!(w["type"], "welcome", "{w}");
    a
}

/// Durable acknowledged writes/s: 10 agents, each with up to 256 puts in flight.
async fn writes() {
    let dir = TempDir::new("bench-writes");
    let host = Host::start(&dir.0, "local", &[]);
    let (agents, per_agent, window) = (10usize, 20_000usize, 256usize);
    let mut tasks = Vec::new();
    let start = Instant::now();
    for a in 0..agents {
        let url = host.ws_url("bench");
        tasks.push(tokio::spawn(async move {
            let mut ag = hello(&url, "bench", None).await;
            let (mut sent, mut acked) = (0usize, 0usize);
            while acked < per_agent {
                while sent < per_agent && sent - acked < window {
                    let f = json!({"type": "put", "req": sent + 1, "collection": "w",
                        "id": format!("a{a}-{sent}"), "value": {"i": sent, "text": "lorem ipsum dolor sit amet"}});
                    ag.ws.feed(Message::Text(f.to_string().into())).await.unwrap();
                    sent += 1;
                }
                ag.ws.flush().await.unwrap();
                let v = ag.recv().await.unwrap();
                if v["type"] == "ack" {
                    acked += 1;
                } else if v["type"] == "error" {
                    panic!("{v}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = agents * per_agent;
    let commits = metric(host.api_port, None, "commits_total");
    println!(
        "writes: {n} durable acknowledged writes from {agents} agents in {secs:.2} s = {:.0} writes/s ({commits} group commits, {:.0} writes/commit)",
        n as f64 / secs,
        n as f64 / commits.max(1) as f64
    );
}

/// Write on agent A → change seen by agent B (subscribed to the collection).
async fn latency() {
    let dir = TempDir::new("bench-latency");
    let host = Host::start(&dir.0, "local", &[]);
    let mut a = hello(&host.ws_url("lat"), "lat", None).await;
    let mut b = hello(&host.ws_url("lat"), "lat", None).await;
    b.send(&json!({"type": "subscribe", "req": 1, "collection": "l"}))
        .await;
    b.recv_type("ack").await;
    let mut samples = Vec::new();
    for i in 0..3000u64 {
        let t = Instant::now();
        a.send(&json!({"type": "put", "req": i + 1, "collection": "l", "id": format!("d{}", i % 100), "value": {"i": i}}))
            .await;
        loop {
            let v = b.recv().await.unwrap();
            if v["type"] == "change" && v["doc"]["value"]["i"] == i {
                break;
            }
        }
        if i >= 200 {
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        a.recv_type("ack").await;
    }
    samples.sort_by(f64::total_cmp);
    let (commit_p99, slow, commits) = commit_tail(host.api_port);
    println!(
        "latency: A put → B change, {} samples: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; commits: p99 ≤ {commit_p99} s, {slow} of {commits} over 5 ms",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

/// Initial sync of 100k documents cloud → hybrid, reconnect after 100 edits, RSS.
fn sync() {
    let n = 100_000;
    let cloud_dir = TempDir::new("bench-cloud");
    let local_dir = TempDir::new("bench-local");
    // A cloud-mode host serves /metrics only to METRICS_TOKEN (it names every space).
    let cloud = Host::start(
        &cloud_dir.0,
        "cloud",
        &[("BRIDGE_SECRET", SECRET), ("METRICS_TOKEN", METRICS_TOKEN)],
    );
    let token = mint_token(&cloud_dir.0, SECRET, "big", "admin", "1h");
    let tok = Some(token.as_str());
    let mtok = Some(METRICS_TOKEN);
    let mut body = String::new();
    for i in 0..n {
        body.push_str(
            &json!({"collection": "docs", "id": format!("d{i:06}"),
            "value": {"i": i, "title": format!("document {i}"), "text": "x".repeat(64)}})
            .to_string(),
        );
        body.push('\n');
    }
    let payload_total = body.len();
    let t = Instant::now();
    // In batches of 2,000 lines, as `sacred-bridge import` sends them.
    let lines: Vec<&str> = body.lines().collect();
    for chunk in lines.chunks(2000) {
        let part = chunk.join("\n");
        let (s, _) = http_raw(
            cloud.api_port,
            "POST",
            "/v1/spaces/big/import",
            Some(part.as_bytes()),
            tok,
        );
        assert_eq!(s, 200);
    }
    println!(
        "sync: import of {n} docs into the cloud host (50 requests of 2,000) took {:.2} s ({:.1} MB NDJSON)",
        t.elapsed().as_secs_f64(),
        payload_total as f64 / 1e6
    );
    println!(
        "rss: cloud host right after importing {n} documents: {:.1} MB",
        rss_mb(&cloud)
    );
    let mut cloud = cloud;
    cloud.restart_same_ports();
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "rss: cloud host restarted, holding {n} documents loaded from SQLite: {:.1} MB",
        rss_mb(&cloud)
    );

    let out0 = metric(cloud.api_port, mtok, "ws_bytes_out_total");
    let in0 = metric(cloud.api_port, mtok, "ws_bytes_in_total");
    let url = format!("ws://127.0.0.1:{}", cloud.ws_port);
    let t = Instant::now();
    let mut local = Host::start(
        &local_dir.0,
        "hybrid",
        &[
            ("CLOUD_WS_URL", url.as_str()),
            ("CLOUD_PROJECT_ID", "big"),
            ("BRIDGE_TOKEN", token.as_str()),
        ],
    );
    while engine_docs(local.api_port, None, "big") < n as u64 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "initial sync did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = t.elapsed().as_secs_f64();
    let bytes = metric(cloud.api_port, mtok, "ws_bytes_out_total") - out0
        + metric(cloud.api_port, mtok, "ws_bytes_in_total")
        - in0;
    println!(
        "sync: initial sync of {n} docs cloud host → hybrid host (process start included): {secs:.2} s, {:.1} MB on the wire (binary frames, both directions), {:.2}× the NDJSON",
        bytes as f64 / 1e6,
        bytes as f64 / payload_total as f64
    );
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "rss: hybrid host holding {n} documents after initial sync: {:.1} MB",
        rss_mb(&local)
    );

    // Reconnect: the hybrid host is down while 100 documents change in the cloud.
    let mut times = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..5 {
        local.kill9();
        let mut changed = 0;
        for i in 0..100 {
            let v = json!({"i": i, "title": format!("edited {round}"), "text": "y".repeat(64)})
                .to_string();
            changed += v.len();
            let (s, _) = http(
                cloud.api_port,
                "PUT",
                &format!("/v1/spaces/big/docs/docs/d{:06}", i * 997),
                Some(&v),
                tok,
            );
            assert_eq!(s, 200);
        }
        let out0 = metric(cloud.api_port, mtok, "ws_bytes_out_total");
        let in0 = metric(cloud.api_port, mtok, "ws_bytes_in_total");
        local.restart();
        let t = Instant::now();
        let last = format!("/v1/spaces/big/docs/docs/d{:06}", 99 * 997);
        loop {
            let (s, v) = local.http("GET", &last, None);
            if s == 200 && v["value"]["title"] == format!("edited {round}") {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "reconnect did not converge"
            );
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        std::thread::sleep(Duration::from_millis(200));
        let bytes = metric(cloud.api_port, mtok, "ws_bytes_out_total") - out0
            + metric(cloud.api_port, mtok, "ws_bytes_in_total")
            - in0;
        for i in 0..100 {
            let (_, v) = local.http(
                "GET",
                &format!("/v1/spaces/big/docs/docs/d{:06}", i * 997),
                None,
            );
            assert_eq!(v["value"]["title"], format!("edited {round}"));
        }
        times.push(ms);
        ratios.push(bytes as f64 / changed as f64);
        println!("reconnect round {round}: {ms:.1} ms from the restarted host listening to all 100 edits present; {bytes} bytes on the wire for {changed} bytes of changed JSON ({:.2}×)", bytes as f64 / changed as f64);
    }
    times.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    println!(
        "reconnect: median {:.1} ms, median bytes ratio {:.2}×",
        times[2], ratios[2]
    );
}

/// 1,000 connected agents; 10k deliveries/s for 3 s, two shapes; none may be lost.
async fn fanout() {
    let dir = TempDir::new("bench-fanout");
    let host = Host::start(&dir.0, "local", &[]);
    let agents = 1000usize;
    let secs = 3u64;
    for (shape, per_agent_channel) in [
        (
            "broadcast: 10 msg/s on one channel × 1000 subscribers",
            false,
        ),
        (
            "spread: 10k msg/s over 1000 channels, one subscriber each",
            true,
        ),
    ] {
        let mut subs = Vec::new();
        for i in 0..agents {
            let mut a = hello(&host.ws_url("fan"), "fan", None).await;
            let ch = if per_agent_channel {
                format!("c{i}")
            } else {
                "all".to_owned()
            };
            a.send(&json!({"type": "subscribe", "req": 1, "channel": ch}))
                .await;
            a.recv_type("ack").await;
            subs.push(a);
        }
        // Each subscriber expects 10 msg/s for `secs` seconds.
        let expect = (10 * secs) as usize;
        let mut counters = Vec::new();
        for mut a in subs {
            counters.push(tokio::spawn(async move {
                let mut got = std::collections::BTreeSet::new();
                let deadline = Instant::now() + Duration::from_secs(secs + 20);
                while got.len() < expect && Instant::now() < deadline {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, a.ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            let v: Value = serde_json::from_str(t.as_str()).unwrap();
                            if v["type"] == "broadcast" {
                                got.insert(v["message"]["payload"]["n"].as_u64().unwrap());
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
                (got.len(), a)
            }));
        }
        let pubs = 10usize;
        let mut publishers = Vec::new();
        let start = Instant::now();
        for p in 0..pubs {
            let url = host.ws_url("fan");
            publishers.push(tokio::spawn(async move {
                let mut a = hello(&url, "fan", None).await;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut req = 0u64;
                // 100 ticks/s; per tick this publisher sends its share.
                for t in 0..(100 * secs) {
                    tick.tick().await;
                    if per_agent_channel {
                        // 10 publishers × 10 per tick × 100 ticks/s = 10k msg/s; channel c{k}.
                        for j in 0..10u64 {
                            let k = (p as u64 * 100 + (t % 10) * 10 + j) % 1000;
                            req += 1;
                            let f = json!({"type": "send", "req": req, "channel": format!("c{k}"), "payload": {"n": t / 10}});
                            a.ws.feed(Message::Text(f.to_string().into())).await.unwrap();
                        }
                        a.ws.flush().await.unwrap();
                    } else if p == 0 && t % 10 == 0 {
                        req += 1;
                        a.send(&json!({"type": "send", "req": req, "channel": "all", "payload": {"n": t / 10}})).await;
                    }
                }
                a
            }));
        }
        let mut keep = Vec::new();
        for p in publishers {
            keep.push(p.await.unwrap());
        }
        let published_in = start.elapsed().as_secs_f64();
        let mut delivered = 0;
        let mut short = 0;
        for c in counters {
            let (n, _a) = c.await.unwrap();
            delivered += n;
            if n < expect {
                short += 1;
            }
        }
        let all_in = start.elapsed().as_secs_f64();
        println!(
            "fanout ({shape}): {agents} agents, {delivered}/{} deliveries ({:.0}/s over {published_in:.2} s of publishing; all in after {all_in:.2} s); agents short of messages: {short}; dropped connections: {}",
            agents * expect,
            delivered as f64 / published_in,
            metric(host.api_port, None, "dropped_connections_total"),
        );
        drop(keep);
    }
}

/// Peak VmRSS of `pid` in MB, sampled every 50 ms until `stop` is set.
/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat` (NaN when
/// unreadable): what a side costs, less disturbed than wall time on a shared machine.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which ends with the last ')'): utime is the 14th
    // field of the line, stime the 15th, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() == 2 {
        (f[0] + f[1]) / 100.0
    } else {
        f64::NAN
    }
}

fn rss_sampler(
    pid: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak = 0f64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(kb) = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
            {
                peak = peak.max(kb / 1024.0);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    })
}

/// Reads a space the way users do: `gets` single documents spread over the space, then the
/// first `pages` list pages of 1,000. Returns the peak RSS meanwhile.
fn serve(host: &Host, n: usize, gets: usize, pages: usize) -> f64 {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(host.child.id(), stop.clone());
    let t = Instant::now();
    for k in 0..gets {
        let i = (k * 7919) % n;
        let (s, _) = host.http("GET", &format!("/v1/spaces/big/docs/items/d{i:07}"), None);
        assert_eq!(s, 200);
    }
    let gets_s = t.elapsed().as_secs_f64();
    let mut after = String::new();
    for _ in 0..pages {
        let (s, v) = host.http(
            "GET",
            &format!("/v1/spaces/big/docs/items?limit=1000&after={after}"),
            None,
        );
        assert_eq!(s, 200);
        match v["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(f64::NAN);
    println!(
        "large: {gets} GETs in {gets_s:.2} s ({:.0}/s), {pages} list pages in {:.2} s; peak RSS {peak:.1} MB",
        gets as f64 / gets_s,
        t.elapsed().as_secs_f64() - gets_s
    );
    peak
}

/// A cloud-mode host in `dir` (secret and metrics token set) with the NDJSON `file`
/// imported into space `big`: the host, an admin token for `big`, and the import's seconds.
fn cloud_with(dir: &std::path::Path, file: &std::path::Path) -> (Host, String, f64) {
    let cloud = Host::start(
        dir,
        "cloud",
        &[("BRIDGE_SECRET", SECRET), ("METRICS_TOKEN", METRICS_TOKEN)],
    );
    let token = mint_token(dir, SECRET, "big", "admin", "1h");
    let api = format!("http://127.0.0.1:{}", cloud.api_port);
    let t = Instant::now();
    tests::import(dir, file, "big", &api, Some(&token));
    (cloud, token, t.elapsed().as_secs_f64())
}

/// Initial sync of `BENCH_DOCS` (1M) documents from a cloud-mode host to a fresh hybrid host,
/// both on their defaults: time from the hybrid host's start until its space holds every
/// document, bytes on the wire, and both hosts' peak RSS meanwhile. By hand only.
fn large_sync() {
    let n = tests::bench_docs();
    let cloud_dir = TempDir::new("bench-lsync-cloud");
    let local_dir = TempDir::new("bench-lsync-local");
    let (file, ndjson) = tests::large_ndjson(&cloud_dir.0, n);
    let (cloud, token, took) = cloud_with(&cloud_dir.0, &file);
    println!(
        "large sync: import of {n} documents ({:.1} MB NDJSON) into the cloud host took {took:.1} s",
        ndjson as f64 / 1e6,
    );
    let mtok = Some(METRICS_TOKEN);
    let out0 = metric(cloud.api_port, mtok, "ws_bytes_out_total");
    let in0 = metric(cloud.api_port, mtok, "ws_bytes_in_total");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cloud_peak = rss_sampler(cloud.child.id(), stop.clone());
    let url = format!("ws://127.0.0.1:{}", cloud.ws_port);
    let cloud_cpu0 = cpu_secs(cloud.child.id());
    let t = Instant::now();
    let local = Host::start(
        &local_dir.0,
        "hybrid",
        &[
            ("CLOUD_WS_URL", url.as_str()),
            ("CLOUD_PROJECT_ID", "big"),
            ("BRIDGE_TOKEN", token.as_str()),
        ],
    );
    let local_peak = rss_sampler(local.child.id(), stop.clone());
    while engine_docs(local.api_port, None, "big") < n as u64 {
        assert!(
            t.elapsed() < Duration::from_secs(1800),
            "initial sync did not finish"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let secs = t.elapsed().as_secs_f64();
    let (cloud_cpu, local_cpu) = (
        cpu_secs(cloud.child.id()) - cloud_cpu0,
        cpu_secs(local.child.id()),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (cloud_peak, local_peak) = (
        cloud_peak.join().unwrap_or(f64::NAN),
        local_peak.join().unwrap_or(f64::NAN),
    );
    let bytes = metric(cloud.api_port, mtok, "ws_bytes_out_total") - out0
        + metric(cloud.api_port, mtok, "ws_bytes_in_total")
        - in0;
    println!(
        "large sync: initial sync of {n} documents cloud host → hybrid host (process start included, polled every 250 ms): {secs:.1} s ({:.0} docs/s), {:.1} MB on the wire ({:.2}× the NDJSON); peak RSS meanwhile: cloud {cloud_peak:.1} MB, hybrid {local_peak:.1} MB",
        n as f64 / secs,
        bytes as f64 / 1e6,
        bytes as f64 / ndjson as f64
    );
    println!(
        "large sync: CPU time during it: cloud {cloud_cpu:.1} s, hybrid {local_cpu:.1} s (since its start)"
    );
}

/// Issue 12's partial sync: BENCH_DOCS documents of the large shape spread over 100
/// collections (`c00`..`c99`, one document in 100 each) imported into a cloud-mode host; then
/// a hybrid host with `SYNC_COLLECTIONS=c07` starts and syncs that one collection (BENCH_DOCS
/// / 100 documents): the time from its start until it holds them, and the bytes on the wire
/// against the subset's NDJSON.
fn partial_sync() {
    let n = tests::bench_docs();
    let cloud_dir = TempDir::new("bench-psync-cloud");
    let local_dir = TempDir::new("bench-psync-local");
    let (file, subset, subset_bytes) = tests::spread_ndjson(&cloud_dir.0, n);
    let (cloud, token, took) = cloud_with(&cloud_dir.0, &file);
    println!(
        "partial sync: import of {n} documents in 100 collections into the cloud host took {took:.1} s"
    );
    let mtok = Some(METRICS_TOKEN);
    let out0 = metric(cloud.api_port, mtok, "ws_bytes_out_total");
    let in0 = metric(cloud.api_port, mtok, "ws_bytes_in_total");
    let url = format!("ws://127.0.0.1:{}", cloud.ws_port);
    let cloud_cpu0 = cpu_secs(cloud.child.id());
    let t = Instant::now();
    let local = Host::start(
        &local_dir.0,
        "hybrid",
        &[
            ("CLOUD_WS_URL", url.as_str()),
            ("CLOUD_PROJECT_ID", "big"),
            ("BRIDGE_TOKEN", token.as_str()),
            ("SYNC_COLLECTIONS", "c07"),
        ],
    );
    // The subset and `_config/space`.
    while engine_docs(local.api_port, None, "big") < subset + 1 {
        assert!(
            t.elapsed() < Duration::from_secs(1800),
            "the partial sync did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t.elapsed().as_secs_f64();
    let cloud_cpu = cpu_secs(cloud.child.id()) - cloud_cpu0;
    let bytes = metric(cloud.api_port, mtok, "ws_bytes_out_total") - out0
        + metric(cloud.api_port, mtok, "ws_bytes_in_total")
        - in0;
    println!(
        "partial sync: {subset} documents of 1 collection out of {n} (process start included, polled every 20 ms): {secs:.2} s; {:.2} MB on the wire, {:.2}x the subset's NDJSON ({:.2} MB); cloud CPU {cloud_cpu:.2} s",
        bytes as f64 / 1e6,
        bytes as f64 / subset_bytes as f64,
        subset_bytes as f64 / 1e6,
    );
}

/// Issue 10's large figures on the native host: BENCH_DOCS documents (default 1,000,000)
/// shaped `{"title":"Item number i","done":bool,"tags":["a","b"],"n":i}`, imported with
/// `sacred-bridge import` into a local host on its defaults; RSS during the import, while
/// serving, after a restart; start to `/healthz`; database size against the NDJSON.
fn large() {
    let n = tests::bench_docs();
    let dir = TempDir::new("bench-large");
    let (file, ndjson) = tests::large_ndjson(&dir.0, n);
    let mut host = Host::start(&dir.0, "local", &[]);
    let api = format!("http://127.0.0.1:{}", host.api_port);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(host.child.id(), stop.clone());
    let t = Instant::now();
    tests::import(&dir.0, &file, "big", &api, None);
    let took = t.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(f64::NAN);
    println!(
        "large: import of {n} documents ({:.1} MB NDJSON) took {took:.1} s ({:.0} docs/s); host peak RSS during import {peak:.1} MB, after {:.1} MB",
        ndjson as f64 / 1e6,
        n as f64 / took,
        rss_mb(&host)
    );
    serve(&host, n, 20_000, 100);
    println!("large: RSS after serving {:.1} MB", rss_mb(&host));

    let t = Instant::now();
    host.restart();
    loop {
        let (s, _) = host.http("GET", "/healthz", None);
        if s == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no /healthz");
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "large: kill -9, start to /healthz 200: {:.3} s; RSS {:.1} MB",
        t.elapsed().as_secs_f64(),
        rss_mb(&host)
    );
    let t = Instant::now();
    let (s, _) = host.http("GET", "/v1/spaces/big/docs/items/d0000007", None);
    assert_eq!(s, 200);
    println!(
        "large: first GET after the restart: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    serve(&host, n, 20_000, 100);
    println!("large: RSS after serving again {:.1} MB", rss_mb(&host));
    let db: u64 = ["bridge.db", "bridge.db-wal", "bridge.db-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.0.join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "large: database {:.1} MB for {:.1} MB of NDJSON ({:.2}x, {:.0} B per document)",
        db as f64 / 1e6,
        ndjson as f64 / 1e6,
        db as f64 / ndjson as f64,
        db as f64 / n as f64
    );
    // What each table and index takes (SQLite's dbstat, compiled into the bundled SQLite),
    // read while the host still serves (WAL: a reader sees the committed pages).
    let conn = rusqlite::Connection::open_with_flags(
        dir.0.join("bridge.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = conn
        .prepare(
            "SELECT name, SUM(pgsize), SUM(payload), SUM(unused), COUNT(*) FROM dbstat
             GROUP BY name ORDER BY SUM(pgsize) DESC",
        )
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .unwrap();
    for row in rows {
        let (name, size, payload, unused, pages) = row.unwrap();
        println!(
            "large: dbstat {name}: {:.1} MB in {pages} pages ({:.1} MB payload, {:.1} MB unused; {:.1} B per document)",
            size as f64 / 1e6,
            payload as f64 / 1e6,
            unused as f64 / 1e6,
            size as f64 / n as f64
        );
    }
}

/// Back-pressure (issue 10): host RSS while one subscriber reads nothing and another agent
/// sends 1,500 large messages (250 KB: a message payload may take at most 256 KiB).
async fn slow() {
    let dir = TempDir::new("bench-slow");
    let host = Host::start(&dir.0, "local", &[]);
    let url = host.ws_url("big");
    let (count, blob, window) = (1500u64, 250_000usize, 16u64);
    let mut slow = hello(&url, "big", None).await;
    slow.send(&json!({"type": "subscribe", "req": 1, "channel": "big"}))
        .await;
    slow.recv_type("ack").await;
    // From here on `slow` reads nothing.
    let rss_start = rss_mb(&host);
    let peak = std::sync::Arc::new(std::sync::Mutex::new(rss_start));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), host.child.id());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let rss = rss_of(pid);
                let mut p = peak.lock().unwrap();
                if rss > *p {
                    *p = rss;
                }
                drop(p);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut sender = hello(&url, "big", None).await;
    let start = Instant::now();
    send_on_big(&mut sender, count, blob, window).await;
    let elapsed = start.elapsed().as_secs_f64();
    // Let the host settle (writers give up on the silent socket), then read it again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = *peak.lock().unwrap();
    println!(
        "slow subscriber: {count} messages of {blob} bytes sent and acknowledged in {elapsed:.2} s; host RSS {rss_start:.1} MB before, peak {peak:.1} MB, {:.1} MB 3 s after; connections closed for falling behind: {}; bytes still queued: {}",
        rss_mb(&host),
        metric(host.api_port, None, "dropped_connections_total"),
        metric(host.api_port, None, "out_queue_bytes"),
    );
    drop(slow);
}

/// Paced replays (issue 10): a channel retains 400 messages of 250 KB (some 100 MB, twelve
/// times the 8 MiB default queue); an agent subscribes from 0 and reads at about 2 ms a
/// message. Host RSS peak during the replay, how long it took, what arrived, and how the
/// connection ended.
async fn replay() {
    let dir = TempDir::new("bench-replay");
    let host = Host::start(&dir.0, "local", &[]);
    let url = host.ws_url("big");
    let (count, blob, window) = (400u64, 250_000usize, 16u64);
    let mut sender = hello(&url, "big", None).await;
    sender
        .send(&json!({"type": "put", "req": 1_000_000, "collection": "_config", "id": "channel:big", "value": {"retain": 1000}}))
        .await;
    sender.recv_type("ack").await;
    send_on_big(&mut sender, count, blob, window).await;
    drop(sender);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start = rss_mb(&host);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(host.child.id(), stop.clone());
    let mut reader = hello(&url, "big", None).await;
    let start = Instant::now();
    reader
        .send(&json!({"type": "subscribe", "req": 1, "channel": "big", "from": 0}))
        .await;
    let (mut got, mut in_order, mut ended) = (0u64, true, String::from("open"));
    while got < count {
        let msg = tokio::time::timeout(Duration::from_secs(30), reader.ws.next()).await;
        match msg {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "broadcast" {
                    got += 1;
                    in_order &= v["message"]["payload"]["n"] == got;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            Ok(Some(Ok(Message::Close(f)))) => {
                ended = format!("closed with {:?}", f.map(|f| u16::from(f.code)));
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => {
                ended = format!("ended: {other:?}");
                break;
            }
            Err(_) => {
                ended = "nothing for 30 s".into();
                break;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    println!(
        "replay: {count} retained messages of {blob} bytes, subscribe from 0 at ~2 ms a message: {got} received{} in {elapsed:.2} s, connection {ended}; host RSS {rss_start:.1} MB before, peak {peak:.1} MB during",
        if in_order { " in order" } else { " OUT OF ORDER" },
    );
}

fn rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    tests::use_binary_beside_this_one();
    let which: Vec<String> = std::env::args().skip(1).collect();
    let on = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if on("writes") {
        rt.block_on(writes());
    }
    if on("latency") {
        rt.block_on(latency());
    }
    if on("sync") {
        sync();
    }
    if on("fanout") {
        rt.block_on(fanout());
    }
    // By hand only: a million documents take minutes and gigabytes of disk.
    if which.iter().any(|w| w == "large") {
        large();
    }
    if which.iter().any(|w| w == "large-sync") {
        large_sync();
    }
    if which.iter().any(|w| w == "partial-sync") {
        partial_sync();
    }
    if on("slow") {
        rt.block_on(slow());
    }
    if on("replay") {
        rt.block_on(replay());
    }
}
