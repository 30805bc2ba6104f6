//! The edge worker under wrangler's local dev server (the real workerd runtime), for the
//! end-to-end tests.
//!
//! [`Edge::start`] writes a throw-away copy of the repository's wrangler.toml (without the
//! `[build]` step, `main` pointing at the prebuilt bundle) and a `.dev.vars` holding the
//! secret, then runs scripts/edge-dev.mjs — wrangler's own dev server (`unstable_startWorker`,
//! what `wrangler dev` runs) with the offline variables of scripts/edge-env.sh and Node 22
//! first on PATH, persisting to a folder the test chooses. It binds port 0 and prints the
//! address it got, which the harness reads: no free-port race. [`Edge::evict`] asks it to
//! evict a space's Durable Object the way workerd evicts an idle one, so hibernation is
//! tested on demand instead of by waiting for workerd's idle timer. It stops by signalling
//! the process group it started.
//!
//! The bundle is built once per test binary by scripts/edge-build.sh, unless
//! `SACRED_BRIDGE_EDGE_BUILT=1` says scripts/test.sh already built it.
#![allow(clippy::unwrap_used)] // test support: a failed unwrap is a failed test

use crate::TempDir;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_owned()
}

/// Builds the worker bundle once per test binary; returns the path of its entry module.
/// `SACRED_BRIDGE_EDGE_SHIM` names another bundle's entry module instead (a benchmark of an
/// older build), used as it is.
pub fn edge_bundle() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(shim) = std::env::var_os("SACRED_BRIDGE_EDGE_SHIM") {
                return PathBuf::from(shim);
            }
            let root = repo_root();
            let shim = root.join("edge-worker/build/worker/shim.mjs");
            if std::env::var("SACRED_BRIDGE_EDGE_BUILT").as_deref() != Ok("1") {
                let t = Instant::now();
                let status = Command::new("bash")
                    .arg(root.join("scripts/edge-build.sh"))
                    .current_dir(&root)
                    .stdout(Stdio::null())
                    .status()
                    .expect("run scripts/edge-build.sh");
                assert!(status.success(), "scripts/edge-build.sh failed");
                eprintln!("edge: bundle built in {:.1} s", t.elapsed().as_secs_f64());
            }
            assert!(shim.exists(), "no {} after the build", shim.display());
            shim
        })
        .clone()
}

/// One dev server at a time: each runs workerd, and the machine is small.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A running dev server (scripts/edge-dev.mjs). Stopped on drop.
pub struct Edge {
    child: Option<Child>,
    /// Its command input (`evict SPACE`).
    commands: Option<ChildStdin>,
    /// Its output lines (also appended to the log).
    lines: Option<Receiver<String>>,
    pub port: u16,
    /// Where workerd keeps Durable Object state (`--persist-to`).
    pub persist: PathBuf,
    /// Time from spawn to the first `/healthz` answer after the server said it was ready.
    pub ready_after: Duration,
    config: TempDir,
}

impl Edge {
    /// Starts the dev server with `secret` as BRIDGE_SECRET, persisting to `persist`.
    pub fn start(persist: &Path, secret: &str) -> Edge {
        Self::start_with_vars(persist, secret, &[])
    }

    /// [`Edge::start`] with more variables for the worker (`.dev.vars`), e.g.
    /// `HELLO_TIMEOUT_MS`.
    pub fn start_with_vars(persist: &Path, secret: &str, vars: &[(&str, &str)]) -> Edge {
        let config = TempDir::new("wrangler");
        let root = repo_root();
        let toml = std::fs::read_to_string(root.join("wrangler.toml")).expect("wrangler.toml");
        let shim = edge_bundle();
        let mut out = String::new();
        let mut in_build = false;
        for line in toml.lines() {
            if line.starts_with('[') {
                in_build = line.trim() == "[build]";
            }
            if in_build {
                continue;
            }
            if line.starts_with("main = ") {
                out.push_str(&format!("main = {:?}\n", shim.display().to_string()));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(config.0.join("wrangler.toml"), out).expect("write wrangler.toml");
        let mut vars_file = format!("BRIDGE_SECRET={secret:?}\n");
        for (k, v) in vars {
            vars_file.push_str(&format!("{k}={v:?}\n"));
        }
        std::fs::write(config.0.join(".dev.vars"), vars_file).expect("write .dev.vars");
        Self::spawn(config, persist, 0)
    }

    /// Starts the dev server on `port` (0: one the OS picks) and waits for its `ready on`
    /// line and a `/healthz` answer (bounded).
    fn spawn(config: TempDir, persist: &Path, port: u16) -> Edge {
        let root = repo_root();
        let script = format!(
            "source {:?} && exec node {:?} {:?} {:?} {port}",
            root.join("scripts/edge-env.sh"),
            root.join("scripts/edge-dev.mjs"),
            config.0.join("wrangler.toml"),
            persist,
        );
        let started = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.0.join("wrangler.log"))
            .expect("wrangler.log");
        let mut child = Command::new("bash")
            .args(["-c", &script])
            .current_dir(&config.0)
            .env("XDG_CONFIG_HOME_EDGE", config.0.join("xdg"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().expect("log file"))
            .process_group(0)
            .spawn()
            .expect("spawn scripts/edge-dev.mjs");
        // Every output line goes to the log, and to the harness (the ready line, answers to
        // commands).
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = log;
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{l}");
                let _ = tx.send(l);
            }
        });
        let mut edge = Edge {
            commands: child.stdin.take(),
            child: Some(child),
            lines: Some(lines),
            port,
            persist: persist.to_owned(),
            ready_after: Duration::ZERO,
            config,
        };
        let ready = edge.wait_line(Duration::from_secs(90), |l| l.starts_with("ready on "));
        let bound = ready
            .rsplit_once(':')
            .and_then(|(_, p)| p.trim_end_matches('/').parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no port in {ready:?}"));
        assert!(
            port == 0 || bound == port,
            "asked for {port}, got {ready:?}"
        );
        edge.port = bound;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !health(bound) {
            assert!(
                Instant::now() < deadline,
                "no /healthz answer within 30 s after {ready:?}; log:\n{}",
                edge.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        edge.ready_after = started.elapsed();
        eprintln!(
            "edge: dev server ready on port {bound} in {:.2} s",
            edge.ready_after.as_secs_f64()
        );
        edge
    }

    /// The next output line that satisfies `want`, skipping others (bounded by `limit`).
    /// Panics with the log if the server exits or says `error:` first.
    fn wait_line(&mut self, limit: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        let lines = self.lines.as_ref().expect("a running server");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if want(&l) => return l,
                Ok(l) if l.starts_with("error: ") => {
                    panic!("edge dev server: {l}\nlog:\n{}", self.log())
                }
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "edge dev server: nothing within {limit:?}; log:\n{}",
                        self.log()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    panic!("edge dev server exited ({status:?}); log:\n{}", self.log())
                }
            }
        }
    }

    /// Evicts the Durable Object of `space` as workerd evicts an idle one: its in-memory
    /// state is gone, its hibernatable WebSockets stay open, and the next event builds a new
    /// instance from storage. Returns once the runtime has done it. Fails if the object is
    /// not running.
    pub fn evict(&mut self, space: &str) {
        let asked = Instant::now();
        let commands = self.commands.as_mut().expect("a running server");
        writeln!(commands, "evict {space}").expect("send evict");
        commands.flush().expect("send evict");
        let done = format!("evicted {space}");
        self.wait_line(Duration::from_secs(30), |l| l == done);
        eprintln!("edge: {space} evicted in {:?}", asked.elapsed());
    }

    /// Stops the dev server (SIGTERM to its process group, SIGKILL after 10 s).
    pub fn stop(&mut self) {
        self.commands = None;
        self.lines = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group (workerd) goes too.
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = child.wait();
    }

    /// Stops and starts again on the same state folder and the port the previous server
    /// bound (clients reconnect).
    pub fn restart(&mut self) {
        self.stop();
        let config = std::mem::replace(&mut self.config, TempDir::new("wrangler-old"));
        let next = Self::spawn(config, &self.persist, self.port);
        *self = next;
    }

    /// Waits (bounded: 30 s) until the log holds `text` at least `times` times: what the
    /// worker prints reaches the log through the server's output, a little after the event.
    pub fn wait_log(&self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "{text:?} not logged {times} time(s) within 30 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident memory of the workerd process(es) of this dev server (its process group),
    /// in MB: what the Durable Object's isolate, its SQLite and the runtime hold.
    pub fn workerd_rss_mb(&self) -> f64 {
        self.workerd_memory().total
    }

    /// [`Edge::workerd_rss_mb`] split as the kernel counts it (`/proc/PID/status`): anonymous
    /// memory (the V8 heap, the wasm memory, the runtime's allocations), file pages mapped in
    /// (the binary, and SQLite's files if it maps them) and shared memory (SQLite's WAL index).
    pub fn workerd_memory(&self) -> Resident {
        self.child
            .as_ref()
            .map_or_else(Resident::default, |c| workerd_memory_of(c.id()))
    }

    /// The process group of the dev server's processes ([`workerd_memory_of`]).
    pub fn group(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// What the dev server and the worker printed so far (requests, `console.*`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.0.join("wrangler.log")).unwrap_or_default()
    }

    pub fn ws_url(&self, space: &str) -> String {
        format!("ws://127.0.0.1:{}/v1/spaces/{space}/ws", self.port)
    }

    /// `CLOUD_WS_URL` for a hybrid host.
    pub fn base_ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop();
    }
}

fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.1 200")
}

/// Resident memory in MB, as `/proc/PID/status` splits it ([`Edge::workerd_memory`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Resident {
    pub total: f64,
    pub anon: f64,
    pub file: f64,
    pub shmem: f64,
}

impl std::fmt::Display for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} MB (anonymous {:.1}, file {:.1}, shared {:.1})",
            self.total, self.anon, self.file, self.shmem
        )
    }
}

/// [`Edge::workerd_memory`] of the dev server whose process group is `group`: usable from a
/// sampling thread.
pub fn workerd_memory_of(group: u32) -> Resident {
    let mut r = Resident::default();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`: the name may hold spaces, so split after ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let pgrp = rest
            .split_whitespace()
            .nth(2)
            .and_then(|g| g.parse::<u32>().ok());
        if pgrp != Some(group) || !head.contains("workerd") {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(0.0, |kb| kb as f64 / 1024.0)
        };
        r.total += field("VmRSS:");
        r.anon += field("RssAnon:");
        r.file += field("RssFile:");
        r.shmem += field("RssShmem:");
    }
    r
}
