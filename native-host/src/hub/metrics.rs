//! `/metrics`: the hub's counters, the commit-duration histogram and the per-space gauges,
//! kept in a `prometheus-client` registry and encoded as OpenMetrics text (which Prometheus
//! scrapes; every sample line is also valid in the older Prometheus text format).
//!
//! Counters are registered without their `_total` suffix: the encoder adds it to the sample
//! (`sacred_bridge_frames_in_total`), as OpenMetrics wants. Help texts get their final period
//! from the registry.

use bridge_core::api::ApiError;
use bridge_core::ErrorCode;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the commit-duration histogram: a commit gates every ack in it,
/// so its tail is the floor of the write latency's tail.
const COMMIT_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// WebSocket message payload bytes received by every connection of the process (the upstream
/// link included; framing not counted).
pub static WS_BYTES_IN: LazyLock<Counter> = LazyLock::new(Counter::default);
/// See [`WS_BYTES_IN`].
pub static WS_BYTES_OUT: LazyLock<Counter> = LazyLock::new(Counter::default);

/// A per-space gauge's labels: `{space="..."}`.
type SpaceLabel = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub inputs: Counter,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub decode_errors: Counter,
    pub commits: Counter,
    pub batches: Counter,
    pub docs_written: Counter,
    pub messages_written: Counter,
    pub commit_seconds: Counter<f64, AtomicU64>,
    pub commit_duration: Histogram,
    pub api_requests: Counter,
    pub api_errors: Counter,
    pub acks_local: Counter,
    /// Connections closed (1013) because their outbound queue would pass its bound.
    pub dropped_slow: Counter,
    /// Bytes in every connection's outbound queue, read at each scrape.
    pub out_queue_bytes: Gauge,
    pub in_queue_bytes: Gauge,
    docs: Family<SpaceLabel, Gauge>,
    sessions: Family<SpaceLabel, Gauge>,
    uptime: Gauge,
    /// When a peer last acknowledged something (ms since the epoch); shown in status.
    pub last_peer_ack_ms: u64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("sacred_bridge");
        let r = &mut registry;
        let inputs = counter(r, "inputs", "Inputs handled by the hub");
        let frames_in = counter(r, "frames_in", "WebSocket frames received");
        let frames_out = counter(r, "frames_out", "WebSocket frames sent");
        let decode_errors = counter(r, "decode_errors", "Frames that could not be decoded");
        let commits = counter(r, "commits", "SQLite group commits");
        let batches = counter(r, "batches", "Persist batches written");
        let docs_written = counter(r, "docs_written", "Document states written");
        let messages_written = counter(r, "messages_written", "Messages written");
        let commit_seconds = Counter::<f64, AtomicU64>::default();
        r.register(
            "commit_seconds",
            "Time spent in commits",
            commit_seconds.clone(),
        );
        let api_requests = counter(r, "api_requests", "HTTP API requests that reached the hub");
        let api_errors = counter(r, "api_errors", "HTTP API requests answered with an error");
        let acks_local = counter(r, "acks_local", "Local API writes acknowledged");
        r.register(
            "ws_bytes_in",
            "WebSocket message bytes received (framing not counted)",
            WS_BYTES_IN.clone(),
        );
        r.register(
            "ws_bytes_out",
            "WebSocket message bytes sent (framing not counted)",
            WS_BYTES_OUT.clone(),
        );
        let dropped_slow = counter(
            r,
            "dropped_connections",
            "Connections closed with 1013 for falling behind (their outbound queue would pass OUT_QUEUE_MB, or all queues OUT_QUEUE_TOTAL_MB)",
        );
        let out_queue_bytes = Gauge::default();
        r.register(
            "out_queue_bytes",
            "Bytes queued for sending over every connection (frames counted as their JSON text)",
            out_queue_bytes.clone(),
        );
        let in_queue_bytes = Gauge::default();
        r.register(
            "in_queue_bytes",
            "Bytes read from every connection and not handled yet (frames counted as their size on the wire; bounded by IN_QUEUE_TOTAL_MB)",
            in_queue_bytes.clone(),
        );
        let commit_duration = Histogram::new(COMMIT_BUCKETS);
        r.register(
            "commit_duration_seconds",
            "SQLite group commits by duration (each gates the acks in it)",
            commit_duration.clone(),
        );
        let docs = Family::<SpaceLabel, Gauge>::default();
        r.register(
            "docs",
            "Documents per space (tombstones included)",
            docs.clone(),
        );
        let sessions = Family::<SpaceLabel, Gauge>::default();
        r.register("sessions", "Open sessions per space", sessions.clone());
        let uptime = Gauge::default();
        r.register("uptime_seconds", "Seconds since start", uptime.clone());
        Metrics {
            registry,
            inputs,
            frames_in,
            frames_out,
            decode_errors,
            commits,
            batches,
            docs_written,
            messages_written,
            commit_seconds,
            commit_duration,
            api_requests,
            api_errors,
            acks_local,
            dropped_slow,
            out_queue_bytes,
            in_queue_bytes,
            docs,
            sessions,
            uptime,
            last_peer_ack_ms: 0,
        }
    }
}

impl Metrics {
    /// One SQLite group commit that took `seconds`.
    pub fn commit(&self, seconds: f64) {
        self.commits.inc();
        self.commit_seconds.inc_by(seconds);
        self.commit_duration.observe(seconds);
    }

    /// The exposition: `spaces` gives each space served with its documents and sessions now.
    pub fn render<'a>(
        &self,
        spaces: impl Iterator<Item = (&'a str, u64, u64)>,
        uptime_s: u64,
    ) -> String {
        // Only the spaces served now, with their current values.
        self.docs.clear();
        self.sessions.clear();
        for (space, docs, sessions) in spaces {
            let label = vec![("space", space.to_owned())];
            self.docs.get_or_create(&label).set(saturating_i64(docs));
            self.sessions
                .get_or_create(&label)
                .set(saturating_i64(sessions));
        }
        self.uptime.set(saturating_i64(uptime_s));
        let mut out = String::new();
        // Writing to a String cannot fail; the encoder only passes on the writer's errors.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    registry.register(name, help, c.clone());
    c
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shape_stay_as_scrapers_expect() {
        let m = Metrics::default();
        m.inputs.inc();
        m.commit(0.003);
        let text = m.render([("team", 7, 2), ("a\"b", 1, 0)].into_iter(), 5);
        for line in [
            "sacred_bridge_inputs_total 1\n",
            "sacred_bridge_commits_total 1\n",
            "# HELP sacred_bridge_frames_in WebSocket frames received.\n",
            "# TYPE sacred_bridge_frames_in counter\n",
            "sacred_bridge_commit_duration_seconds_bucket{le=\"0.005\"} 1\n",
            "sacred_bridge_commit_duration_seconds_bucket{le=\"0.0025\"} 0\n",
            "sacred_bridge_commit_duration_seconds_bucket{le=\"+Inf\"} 1\n",
            "sacred_bridge_commit_duration_seconds_count 1\n",
            "sacred_bridge_docs{space=\"team\"} 7\n",
            "sacred_bridge_sessions{space=\"team\"} 2\n",
            "sacred_bridge_docs{space=\"a\\\"b\"} 1\n",
            "sacred_bridge_uptime_seconds 5\n",
            "sacred_bridge_ws_bytes_in_total ",
            "sacred_bridge_dropped_connections_total 0\n",
            "sacred_bridge_out_queue_bytes 0\n",
            "sacred_bridge_in_queue_bytes 0\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // A space no longer served is not shown any more.
        let text = m.render([("team", 7, 2)].into_iter(), 6);
        assert!(!text.contains("a\\\"b"));
    }
}

/// Who may read `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Anyone who reaches the API port (local and hybrid mode without `METRICS_TOKEN`).
    Open,
    /// Requests with `Authorization: Bearer <this>` (`METRICS_TOKEN`).
    Token(String),
    /// Nobody (cloud mode without `METRICS_TOKEN`).
    Off,
}

impl MetricsAccess {
    /// Checks a request's bearer token.
    pub fn check(&self, token: Option<&str>) -> Result<(), ApiError> {
        match (self, token) {
            (MetricsAccess::Open, _) => Ok(()),
            (MetricsAccess::Token(want), Some(got)) if same_secret(want.as_bytes(), got.as_bytes()) => Ok(()),
            (MetricsAccess::Token(_), _) => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "/metrics needs `Authorization: Bearer <METRICS_TOKEN>` on this server",
            )),
            (MetricsAccess::Off, _) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "/metrics is off in cloud mode because it names every space: set METRICS_TOKEN and send it as `Authorization: Bearer <METRICS_TOKEN>`",
            )),
        }
    }
}

/// Compares two secrets in time that depends only on their lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl super::Hub {
    /// The `/metrics` text: the counters, and per-space gauges read from the engines now.
    pub(super) fn render_metrics(&self) -> String {
        self.metrics
            .out_queue_bytes
            .set(saturating_i64(self.cfg.out_queues.queued() as u64));
        self.metrics
            .in_queue_bytes
            .set(saturating_i64(self.cfg.in_queues.queued() as u64));
        self.metrics.render(
            self.spaces.iter().map(|(name, s)| {
                (
                    name.as_str(),
                    super::status::logged(s.engine.replica().doc_count(), "count documents"),
                    s.engine.session_count() as u64,
                )
            }),
            self.started.elapsed().as_secs(),
        )
    }
}
