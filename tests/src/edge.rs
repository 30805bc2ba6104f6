//! The edge worker under `wrangler dev` (the real workerd runtime), for the end-to-end tests.
//!
//! [`Edge::start`] writes a throw-away copy of the repository's wrangler.toml (without the
//! `[build]` step, `main` pointing at the prebuilt bundle) and a `.dev.vars` holding the
//! secret, then runs `wrangler dev` on a free loopback port with the offline variables of
//! scripts/edge-env.sh and Node 22 first on PATH, persisting to a folder the test chooses.
//! It waits (bounded) for `/healthz`, and stops by signalling the process group it started.
//!
//! The bundle is built once per test binary by scripts/edge-build.sh, unless
//! `SACRED_BRIDGE_EDGE_BUILT=1` says scripts/test.sh already built it.
#![allow(clippy::unwrap_used)] // test support: a failed unwrap is a failed test

use crate::{free_port, TempDir};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
pub fn edge_bundle() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
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

/// One `wrangler dev` at a time: each runs workerd, and the machine is small.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A running `wrangler dev`. Stopped on drop.
pub struct Edge {
    child: Option<Child>,
    pub port: u16,
    /// Where workerd keeps Durable Object state (`--persist-to`).
    pub persist: PathBuf,
    /// Time from spawn to the first `/healthz` answer.
    pub ready_after: Duration,
    config: TempDir,
}

impl Edge {
    /// Starts `wrangler dev` with `secret` as BRIDGE_SECRET, persisting to `persist`.
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
        Self::spawn(config, persist, free_port())
    }

    fn spawn(config: TempDir, persist: &Path, port: u16) -> Edge {
        let root = repo_root();
        let script = format!(
            "source {:?} && exec {:?} dev --config {:?} --ip 127.0.0.1 --port {port} \
             --persist-to {:?} --show-interactive-dev-session=false --log-level info",
            root.join("scripts/edge-env.sh"),
            root.join("node_modules/.bin/wrangler"),
            config.0.join("wrangler.toml"),
            persist,
        );
        let started = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.0.join("wrangler.log"))
            .expect("wrangler.log");
        let child = Command::new("bash")
            .args(["-c", &script])
            .current_dir(&config.0)
            .env("XDG_CONFIG_HOME_EDGE", config.0.join("xdg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn wrangler dev");
        let mut edge = Edge {
            child: Some(child),
            port,
            persist: persist.to_owned(),
            ready_after: Duration::ZERO,
            config,
        };
        let deadline = started + Duration::from_secs(90);
        loop {
            if health(port) {
                break;
            }
            if let Some(c) = edge.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    let log = std::fs::read_to_string(edge.config.0.join("wrangler.log"));
                    panic!(
                        "wrangler dev exited before it was ready: {status}\n{}",
                        log.unwrap_or_default()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "wrangler dev not ready within 90 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        edge.ready_after = started.elapsed();
        eprintln!(
            "edge: wrangler dev ready on port {port} in {:.2} s",
            edge.ready_after.as_secs_f64()
        );
        edge
    }

    /// Stops wrangler dev (SIGTERM to its process group, SIGKILL after 10 s).
    pub fn stop(&mut self) {
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

    /// Stops and starts again on the same state folder and port.
    pub fn restart(&mut self) {
        self.stop();
        let config = std::mem::replace(&mut self.config, TempDir::new("wrangler-old"));
        let next = Self::spawn(config, &self.persist, self.port);
        *self = next;
    }

    /// What wrangler dev and the worker printed so far (requests, `console.*`).
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
