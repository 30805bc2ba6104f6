//! Helpers for the end-to-end tests: build and run real `sacred-bridge` processes on loopback
//! ports they bind themselves (port 0, read back from their `listening:` line) with a
//! throw-away database, and talk to them the way any client would — raw JSON over a plain
//! WebSocket, plain HTTP/1.1 over TCP — never through the project's own Rust types.
#![allow(clippy::unwrap_used)] // test support: a failed unwrap is a failed test

pub mod edge;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::net::TcpStream as TokioTcp;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Builds `sacred-bridge` once per test binary and returns its path.
pub fn bridge_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("SACRED_BRIDGE_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "native-host", "--bin", "sacred-bridge"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p native-host failed");
        // target/<profile>/deps/<test binary> → target/<profile>/sacred-bridge
        let exe = std::env::current_exe().expect("current exe");
        let dir = exe.parent().and_then(Path::parent).expect("target dir");
        dir.join(format!("sacred-bridge{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "sb-e2e-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Keys the host reads from the environment; cleared so the tests see only what they set.
const CONFIG_KEYS: &[&str] = &[
    "BRIDGE_MODE",
    "NODE_ENV",
    "LOCAL_WS_PORT",
    "LOCAL_API_PORT",
    "LOCAL_DB_PATH",
    "CLOUD_WS_URL",
    "CLOUD_API_URL",
    "CLOUD_PROJECT_ID",
    "SYNC_MODE",
    "SYNC_INTERVAL",
    "CONFLICT_STRATEGY",
    "BRIDGE_SECRET",
    "BRIDGE_TOKEN",
    "METRICS_TOKEN",
    "SYNC_EVENT_COLLECTIONS",
    "SYNC_EVENT_CHANNELS",
    "CLOUD_TOKENS_FILE",
    "CLOUDFLARE_API_TOKEN",
    "HELLO_TIMEOUT_MS",
    "HEARTBEAT_MS",
];

/// A `sacred-bridge` command with a clean environment, run in `dir`.
pub fn bridge_cmd(dir: &Path) -> Command {
    let mut c = Command::new(bridge_bin());
    for k in CONFIG_KEYS {
        c.env_remove(k);
    }
    c.current_dir(dir).env("RUST_LOG", "warn");
    c
}

/// Runs `sacred-bridge ARGS` in `dir` (clean environment) and returns (exit code, stdout,
/// stderr).
pub fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = bridge_cmd(dir)
        .args(args)
        .output()
        .expect("run sacred-bridge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Mints a token with `sacred-bridge token create` signed with `secret`.
pub fn mint_token(dir: &Path, secret: &str, space: &str, rights: &str, ttl: &str) -> String {
    token_create(
        dir,
        secret,
        &["--space", space, "--rights", rights, "--ttl", ttl],
    )
}

/// A token for `space` scoped to collections (`token create --collections PATTERNS`), its
/// other rights `read` (the default with `--collections`), valid for an hour.
pub fn mint_scoped(dir: &Path, secret: &str, space: &str, patterns: &str) -> String {
    token_create(dir, secret, &["--space", space, "--collections", patterns])
}

/// `sacred-bridge token create ARGS` signed with `secret`: the token it prints.
fn token_create(dir: &Path, secret: &str, args: &[&str]) -> String {
    let out = bridge_cmd(dir)
        .env("BRIDGE_SECRET", secret)
        .args(["token", "create"])
        .args(args)
        .output()
        .expect("run token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Asserts that a scoped agent session refuses request `req`, a `get` of a collection the
/// token does not open (sent just before), with `forbidden` naming the collection.
pub async fn refused_collection(a: &mut Agent, req: u64, collection: &str) {
    let e = a.recv_type("error").await;
    assert_eq!(
        (e["req"].as_u64(), e["code"].as_str()),
        (Some(req), Some("forbidden")),
        "{e}"
    );
    let named = format!("`{collection}`");
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains(&named)),
        "{e}"
    );
}

/// Says a peer `hello` with `token` on `url` and asserts it is refused with `forbidden` and
/// the connection closed (a token scoped to collections opens no replication session).
pub async fn peer_refused(url: &str, space: &str, token: &str) {
    let mut p = Agent::connect(url).await;
    p.send(
        &serde_json::json!({"type": "hello", "v": 1, "space": space, "kind": "peer",
        "replica": "00000000000000aa", "tier": "local", "token": token}),
    )
    .await;
    assert_eq!(p.recv_type("error").await["code"], "forbidden");
    assert!(p.recv().await.is_none(), "the peer is closed");
}

/// A running host. Killed (SIGKILL) on drop.
pub struct Host {
    pub child: Child,
    pub ws_port: u16,
    pub api_port: u16,
    pub db: PathBuf,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    mode: String,
}

impl Host {
    /// Starts a host in `mode` with its database in `dir`; `env` adds variables.
    pub fn start(dir: &Path, mode: &str, env: &[(&str, &str)]) -> Host {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn(dir, mode, env, dir.join("bridge.db"))
    }

    /// Starts on ports the host binds itself (port 0), read from its `listening:` line.
    fn spawn(dir: &Path, mode: &str, env: Vec<(String, String)>, db: PathBuf) -> Host {
        Self::spawn_on(dir, mode, env, db, (0, 0))
    }

    fn spawn_on(
        dir: &Path,
        mode: &str,
        env: Vec<(String, String)>,
        db: PathBuf,
        (ws_port, api_port): (u16, u16),
    ) -> Host {
        let mut cmd = bridge_cmd(dir);
        cmd.args(["serve", "--mode", mode])
            .arg("--ws-port")
            .arg(ws_port.to_string())
            .arg("--api-port")
            .arg(api_port.to_string())
            .arg("--db")
            .arg(&db)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sacred-bridge");
        // Wait for the "listening" line, bounded.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(30));
        let mut host = Host {
            child,
            ws_port,
            api_port,
            db,
            dir: dir.to_owned(),
            env,
            mode: mode.to_owned(),
        };
        match line {
            Ok(l) => {
                let (ws, api) =
                    listening_ports(&l).unwrap_or_else(|| panic!("unexpected first line: {l}"));
                assert!(
                    (ws_port == 0 || ws == ws_port) && (api_port == 0 || api == api_port),
                    "asked for ports {ws_port}/{api_port}, got: {l}"
                );
                host.ws_port = ws;
                host.api_port = api;
            }
            Err(_) => panic!("sacred-bridge did not start within 30 s"),
        }
        host
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new process on the same database (new ports).
    pub fn restart(&mut self) {
        self.kill9();
        let next = Self::spawn(&self.dir, &self.mode, self.env.clone(), self.db.clone());
        let old = std::mem::replace(self, next);
        drop(old);
    }

    /// Starts a new process on the same database and the ports the previous one bound
    /// (clients reconnect).
    pub fn restart_same_ports(&mut self) {
        self.kill9();
        let ports = (self.ws_port, self.api_port);
        let next = Self::spawn_on(
            &self.dir,
            &self.mode,
            self.env.clone(),
            self.db.clone(),
            ports,
        );
        let old = std::mem::replace(self, next);
        drop(old);
    }

    pub fn ws_url(&self, space: &str) -> String {
        format!("ws://127.0.0.1:{}/v1/spaces/{space}/ws", self.ws_port)
    }

    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        http(self.api_port, method, path, body, None)
    }
}

/// The (WebSocket, HTTP) ports of a host's `sacred-bridge <mode> listening: ws://ADDR
/// http://ADDR` line.
pub fn listening_ports(line: &str) -> Option<(u16, u16)> {
    let rest = line.split_once(" listening: ")?.1;
    let port = |scheme: &str| -> Option<u16> {
        let addr = rest
            .split_whitespace()
            .find_map(|w| w.strip_prefix(scheme))?;
        addr.rsplit_once(':')?.1.parse().ok()
    };
    Some((port("ws://")?, port("http://")?))
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One HTTP/1.1 request over a plain TCP socket. The body is parsed as JSON when it is JSON,
/// else returned as a string.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let (status, raw) = http_raw(port, method, path, body.map(str::as_bytes), token);
    let v = serde_json::from_slice(&raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    (status, v)
}

pub fn http_raw(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    // The server may answer (e.g. 413) before reading the whole body; ignore write errors.
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
    out
}

pub type Ws = WebSocketStream<MaybeTlsStream<TokioTcp>>;

/// A client that speaks raw JSON frames.
pub struct Agent {
    pub ws: Ws,
}

impl Agent {
    pub async fn connect(url: &str) -> Agent {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .expect("connect timeout")
        .expect("connect");
        Agent { ws }
    }

    /// Connects and says `hello`; returns the agent and the `welcome` (or `error`) frame.
    pub async fn hello(url: &str, space: &str, token: Option<&str>) -> (Agent, Value) {
        let mut a = Agent::connect(url).await;
        let mut h = serde_json::json!({"type": "hello", "v": 1, "space": space, "name": "e2e"});
        if let Some(t) = token {
            h["token"] = Value::from(t);
        }
        a.send(&h).await;
        let w = a.recv().await.expect("answer to hello");
        (a, w)
    }

    pub async fn send(&mut self, v: &Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send raw");
    }

    /// The next JSON frame, `None` when the connection closed. Panics after 10 s.
    pub async fn recv(&mut self) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .expect("no frame within 10 s");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("JSON frame"))
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Waits (bounded by `limit`) for the `error` frame and the close frame that end this
    /// connection when the server closes it; returns them. Fails if anything else arrives or
    /// nothing does in time.
    pub async fn closed_by_server(&mut self, limit: Duration) -> (Value, Option<u16>) {
        let deadline = Instant::now() + limit;
        let mut error = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("the server did not close the socket within {limit:?}"));
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON frame");
                    assert!(error.is_none(), "more than one frame: {v}");
                    error = Some(v);
                }
                Some(Ok(Message::Close(frame))) => {
                    let e = error.expect("an error frame before the close");
                    return (e, frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                other => panic!("the connection ended without a close frame: {other:?}"),
            }
        }
    }

    /// Skips frames until one of `ty` arrives (e.g. skipping `presence`).
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {ty}"));
            if v["type"] == ty {
                return v;
            }
        }
    }
}

/// The secret a [`Pair`]'s cloud host signs tokens with.
pub const PAIR_SECRET: &str = "hybrid-secret-0123456789";

/// A cloud-mode host and a hybrid host linked to it (space `proj`), with an admin token.
pub struct Pair {
    pub cloud: Host,
    pub local: Host,
    pub token: String,
    /// (cloud, hybrid) data folders, removed on drop.
    pub _dirs: (TempDir, TempDir),
}

/// Starts a host in hybrid mode in `dir`, linked to `cloud_ws_url` (space `proj`) with
/// `token`; `extra` adds environment variables.
pub fn start_hybrid(dir: &Path, cloud_ws_url: &str, token: &str, extra: &[(&str, &str)]) -> Host {
    let mut env = vec![
        ("CLOUD_WS_URL", cloud_ws_url),
        ("CLOUD_PROJECT_ID", "proj"),
        ("BRIDGE_TOKEN", token),
    ];
    env.extend_from_slice(extra);
    Host::start(dir, "hybrid", &env)
}

/// Starts a [`Pair`]; `extra` adds environment variables to the hybrid host.
pub fn start_pair(extra: &[(&str, &str)]) -> Pair {
    let cloud_dir = TempDir::new("cloud");
    let local_dir = TempDir::new("hybrid");
    let cloud = Host::start(&cloud_dir.0, "cloud", &[("BRIDGE_SECRET", PAIR_SECRET)]);
    let token = mint_token(&cloud_dir.0, PAIR_SECRET, "proj", "admin", "1h");
    let cloud_url = format!("ws://127.0.0.1:{}", cloud.ws_port);
    let local = start_hybrid(&local_dir.0, &cloud_url, &token, extra);
    Pair {
        cloud,
        local,
        token,
        _dirs: (cloud_dir, local_dir),
    }
}

/// Polls `GET path` until `pred` holds (bounded: 20 s).
pub fn eventually(
    port: u16,
    path: &str,
    token: Option<&str>,
    pred: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = http(port, "GET", path, None, token);
        if pred(s, &v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out on {path}: {s} {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until a host's `space` shows a stable horizon at its cursor, the cursor naming
/// `replicas` replicas (every write of theirs is everywhere); returns the space's status.
pub fn wait_horizon_at_cursor(
    port: u16,
    token: Option<&str>,
    space: &str,
    replicas: usize,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = http(port, "GET", "/v1/status", None, token);
        assert_eq!(s, 200, "{v}");
        let sp = v["spaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["space"] == space)
            .cloned()
            .unwrap_or(Value::Null);
        let (horizon, cursor) = (sp["horizon"].as_str(), sp["cursor"].as_str());
        if horizon.is_some()
            && horizon == cursor
            && cursor.is_some_and(|c| c.split(',').count() == replicas)
        {
            return sp;
        }
        assert!(
            Instant::now() < deadline,
            "no horizon at the cursor: horizon {horizon:?}, cursor {cursor:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `space` entry of a host's `/v1/status` (`null` when it has no such space).
pub fn space_status(port: u16, token: Option<&str>, space: &str) -> Value {
    let (s, v) = http(port, "GET", "/v1/status", None, token);
    assert_eq!(s, 200, "{v}");
    v["spaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["space"] == space)
        .cloned()
        .unwrap_or_default()
}

/// Polls a host's `/v1/status` until its `space` entry satisfies `pred` (bounded: 60 s);
/// returns the entry.
pub fn wait_space(
    port: u16,
    token: Option<&str>,
    space: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sp = space_status(port, token, space);
        if pred(&sp) {
            return sp;
        }
        assert!(Instant::now() < deadline, "{what}: {sp}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the hybrid host's upstream link is up.
pub fn wait_link_up(local: &Host) {
    eventually(local.api_port, "/v1/status", None, |_, v| {
        v["spaces"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["upstream"]["up"] == true)
    });
}

/// `n` documents of the large benchmarks' shape (`bench_host large`, `large-sync`, `bench_edge`) as an NDJSON file in `dir`, and its size.
pub fn large_ndjson(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, u64) {
    use std::io::Write;
    let file = dir.join("docs.ndjson");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for i in 0..n {
        let line = serde_json::json!({"collection": "items", "id": format!("d{i:07}"),
            "value": {"title": format!("Item number {i}"), "done": i % 2 == 0, "tags": ["a", "b"], "n": i}});
        writeln!(w, "{line}").unwrap();
    }
    drop(w);
    let size = std::fs::metadata(&file).unwrap().len();
    (file, size)
}

/// `n` documents of the large shape spread over 100 collections `c00`..`c99` (document `i`
/// in `c{i % 100}`), as an NDJSON file in `dir`: the partial-sync benchmarks. Returns the
/// file, and the documents and NDJSON bytes of the one collection `c07`.
pub fn spread_ndjson(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, u64, u64) {
    use std::io::Write;
    let file = dir.join("docs.ndjson");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let (mut subset, mut subset_bytes) = (0u64, 0u64);
    for i in 0..n {
        let c = format!("c{:02}", i % 100);
        let line = serde_json::json!({"collection": c, "id": format!("d{i:07}"),
            "value": {"title": format!("Item number {i}"), "done": i % 2 == 0, "tags": ["a", "b"], "n": i}})
        .to_string();
        if c == "c07" {
            subset += 1;
            subset_bytes += line.len() as u64 + 1;
        }
        writeln!(w, "{line}").unwrap();
    }
    drop(w);
    (file, subset, subset_bytes)
}

/// `BENCH_DOCS` from the environment (the size of the large benchmarks), 1M by default.
pub fn bench_docs() -> usize {
    std::env::var("BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// `sacred-bridge import FILE --space SPACE --api API [--token TOKEN]`, which must succeed.
pub fn import(dir: &Path, file: &Path, space: &str, api: &str, token: Option<&str>) {
    let file = file.to_str().expect("a UTF-8 path");
    let mut args = vec!["import", file, "--space", space, "--api", api];
    if let Some(t) = token {
        args.extend(["--token", t]);
    }
    let (code, _, err) = cli(dir, &args);
    assert_eq!(code, 0, "{err}");
}

/// A benchmark binary runs the `sacred-bridge` built beside it unless `SACRED_BRIDGE_BIN`
/// names another (an older build, side by side).
pub fn use_binary_beside_this_one() {
    if std::env::var_os("SACRED_BRIDGE_BIN").is_none() {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.to_owned()))
        {
            std::env::set_var("SACRED_BRIDGE_BIN", dir.join("sacred-bridge"));
        }
    }
}

/// A process stopped with SIGSTOP (it reads nothing, answers nothing), continued with SIGCONT
/// when dropped, so a failing test leaves nothing frozen.
pub struct Frozen(pub u32);

impl Frozen {
    /// Stops `pid`.
    pub fn new(pid: u32) -> Frozen {
        let status = Command::new("kill")
            .args(["-STOP".to_owned(), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -STOP {pid} failed");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT".to_owned(), self.0.to_string()])
            .status();
    }
}
