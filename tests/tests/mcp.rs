//! `sacred-bridge mcp` (stdio) and `/mcp` (Streamable HTTP) driven by MCP clients nobody here
//! wrote: the official Python SDK (`mcp`, in the venv scripts/setup.sh makes) and the official
//! TypeScript SDK (`@modelcontextprotocol/sdk`, pinned in package.json). The clients are
//! tests/mcp/client.py and tests/mcp/client.mjs; they print one JSON line per step and ask this
//! test, with `{"wait": ...}` lines, to act as a plain WebSocket agent in between.
#![allow(clippy::unwrap_used)] // test: a failed unwrap is a failed test

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tests::{bridge_bin, mint_token, start_pair, Agent, Host, TempDir};

const SECRET: &str = "mcp-test-secret-0123456789";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python with the MCP SDK that scripts/setup.sh installs.
fn python() -> PathBuf {
    let venv = std::env::var_os("SACRED_BRIDGE_MCP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME");
            Path::new(&home).join(".cache/sacred-bridge/mcp-venv")
        });
    let p = venv.join("bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it installs the Python MCP SDK)",
        p.display()
    );
    p
}

fn node_sdk_present() {
    let p = repo().join("node_modules/@modelcontextprotocol/sdk/package.json");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/setup.sh` (npm ci installs the TypeScript MCP SDK)",
        p.display()
    );
}

/// A client process and its output lines.
struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    steps: BTreeMap<String, Value>,
}

impl Client {
    fn spawn(mut cmd: Command) -> Client {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for k in ["BRIDGE_TOKEN", "BRIDGE_SECRET", "CLOUD_PROJECT_ID"] {
            cmd.env_remove(k);
        }
        let mut child = cmd.spawn().expect("spawn the MCP client");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Client {
            child,
            stdin,
            lines,
            steps: BTreeMap::new(),
        }
    }

    /// The next `{"wait": ..}` request (recording steps on the way), or `None` at `done`.
    fn next_wait(&mut self) -> Option<String> {
        loop {
            let line = match self.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(l) => l,
                Err(_) => {
                    let status = self.child.wait().ok();
                    panic!("the MCP client stopped or hung (exit: {status:?}); its stderr is above")
                }
            };
            eprintln!("client: {line}");
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("client printed non-JSON {line:?}: {e}"));
            if let Some(w) = v["wait"].as_str() {
                return Some(w.to_owned());
            }
            if v["done"] == true {
                return None;
            }
            let step = v["step"].as_str().expect("step name").to_owned();
            self.steps.insert(step, v);
        }
    }

    fn go(&mut self) {
        self.stdin.write_all(b"go\n").unwrap();
        self.stdin.flush().unwrap();
    }

    fn finish(mut self) -> BTreeMap<String, Value> {
        let status = self.child.wait().expect("wait for the client");
        assert!(status.success(), "the MCP client failed: {status}");
        std::mem::take(&mut self.steps)
    }
}

/// A cloud-mode host (tokens required) with an admin and a write token for space `team`.
struct Setup {
    host: Host,
    admin: String,
    write: String,
    _dir: TempDir,
}

fn setup() -> Setup {
    let dir = TempDir::new("mcp");
    let host = Host::start(&dir.0, "cloud", &[("BRIDGE_SECRET", SECRET)]);
    let admin = mint_token(&dir.0, SECRET, "team", "admin", "1h");
    let write = mint_token(&dir.0, SECRET, "team", "write", "1h");
    Setup {
        host,
        admin,
        write,
        _dir: dir,
    }
}

/// Plays the WebSocket agent side of the scenario of client.py / client.mjs, then checks what
/// the client reported.
async fn drive(s: &Setup, mut client: Client, client_name: &str, expect_no_token_step: bool) {
    let (mut agent, welcome) = Agent::hello(&s.host.ws_url("team"), "team", Some(&s.admin)).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    agent
        .send(&json!({"type": "subscribe", "req": 1, "channel": "ops"}))
        .await;
    assert_eq!(agent.recv_type("ack").await["req"], 1);
    // Reading the client's lines blocks: keep the runtime's other tasks going meanwhile.
    while let Some(wait) = tokio::task::block_in_place(|| client.next_wait()) {
        match wait.as_str() {
            "subscribed" => {
                agent
                    .send(&json!({"type": "put", "req": 2, "collection": "notes", "id": "w1", "value": {"by": "ws"}}))
                    .await;
                assert_eq!(agent.recv_type("ack").await["req"], 2);
            }
            "listening" => {
                agent
                    .send(&json!({"type": "send", "req": 3, "channel": "ops", "payload": {"from": "ws"}}))
                    .await;
                assert_eq!(agent.recv_type("ack").await["req"], 3);
            }
            "sent" => {
                let b = agent.recv_type("broadcast").await;
                assert_eq!(b["message"]["payload"], json!({"from": "mcp"}), "{b}");
                // The MCP session is an agent of the host, under the client's name.
                agent.send(&json!({"type": "presence"})).await;
                let p = agent.recv_type("presence").await;
                assert!(
                    p["entries"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["name"] == client_name && e["kind"] == "agent"),
                    "{client_name} missing from presence: {p}"
                );
            }
            other => panic!("unexpected wait {other:?}"),
        }
        client.go();
    }
    let steps = tokio::task::block_in_place(|| client.finish());
    assert_eq!(steps["tools"]["names"].as_array().unwrap().len(), 13);
    assert_eq!(steps["bad_argument"]["error"]["code"], "bad_request");
    assert!(steps["bad_argument"]["text"]
        .as_str()
        .unwrap()
        .contains("must be a JSON object"));
    assert_eq!(
        steps["resource_updated"]["uri"],
        "sacred-bridge://team/notes/w1"
    );
    assert_eq!(steps["resource_updated"]["value"], json!({"by": "ws"}));
    assert_eq!(steps["message_in"]["payload"], json!({"from": "ws"}));
    // resources/list (from the changes feed) lists what the client wrote; no open conflict.
    assert!(steps["resources"]["uris"]
        .as_array()
        .unwrap()
        .contains(&json!("sacred-bridge://team/notes")));
    assert_eq!(steps["resources"]["conflict_show"]["code"], "not_found");
    assert!(
        steps["presence"]["names"]
            .as_array()
            .unwrap()
            .contains(&json!("e2e")),
        "{}",
        steps["presence"]
    );
    assert_eq!(steps["status"]["rights"], "admin");
    assert_eq!(steps["write_token"]["admin_tool"]["code"], "forbidden");
    if expect_no_token_step {
        assert!(steps.contains_key("no_token"), "{steps:?}");
    }
    // What the MCP client wrote is stored on the host, durably, like any agent's write.
    let (st, v) = tests::http(
        s.host.api_port,
        "GET",
        "/v1/spaces/team/docs/notes/w1",
        None,
        Some(&s.admin),
    );
    assert_eq!(st, 200, "{v}");
}

fn python_client(args: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.arg(repo().join("tests/mcp/client.py")).args(args);
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_over_stdio() {
    let s = setup();
    let bin = bridge_bin();
    let (ws, api) = (
        format!("ws://127.0.0.1:{}", s.host.ws_port),
        format!("http://127.0.0.1:{}", s.host.api_port),
    );
    let client = Client::spawn(python_client(&[
        "stdio",
        "team",
        bin.to_str().unwrap(),
        &ws,
        &api,
        &s.admin,
        &s.write,
    ]));
    drive(&s, client, "py-stdio-agent", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_over_streamable_http() {
    let s = setup();
    let url = format!("http://127.0.0.1:{}/mcp", s.host.api_port);
    let client = Client::spawn(python_client(&["http", "team", &url, &s.admin, &s.write]));
    drive(&s, client, "py-http-agent", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn typescript_sdk_over_stdio() {
    node_sdk_present();
    let s = setup();
    let bin = bridge_bin();
    let mut cmd = Command::new("node");
    cmd.current_dir(repo())
        .arg("tests/mcp/client.mjs")
        .arg("team")
        .arg(&bin)
        .arg(format!("ws://127.0.0.1:{}", s.host.ws_port))
        .arg(format!("http://127.0.0.1:{}", s.host.api_port))
        .arg(&s.admin)
        .arg(&s.write);
    drive(&s, Client::spawn(cmd), "ts-stdio-agent", false).await;
}

/// A token scoped to collections (`notes/*:write,audit:read`): the MCP tools and the
/// resource list open those and nothing else, with the host's `forbidden` code.
#[tokio::test(flavor = "multi_thread")]
async fn a_scoped_token_opens_only_its_collections_over_mcp() {
    let s = setup();
    for (c, id) in [("users", "u1"), ("audit", "log"), ("notes/a", "n1")] {
        let (st, v) = tests::http(
            s.host.api_port,
            "PUT",
            &format!("/v1/spaces/team/docs/{}/{id}", c.replace('/', "%2F")),
            Some(r#"{"v":1}"#),
            Some(&s.admin),
        );
        assert_eq!(st, 200, "{v}");
    }
    let scoped = tests::mint_scoped(&s._dir.0, SECRET, "team", "notes/*:write,audit:read");
    let bin = bridge_bin();
    let mut client = Client::spawn(python_client(&[
        "scoped",
        "team",
        bin.to_str().unwrap(),
        &format!("ws://127.0.0.1:{}", s.host.ws_port),
        &format!("http://127.0.0.1:{}", s.host.api_port),
        &scoped,
    ]));
    assert_eq!(tokio::task::block_in_place(|| client.next_wait()), None);
    let steps = tokio::task::block_in_place(|| client.finish());
    assert_eq!(steps["scoped"]["refused"].as_object().unwrap().len(), 4);
    // Its write landed.
    let (st, v) = tests::http(
        s.host.api_port,
        "GET",
        "/v1/spaces/team/docs/notes%2Fa/m1",
        None,
        Some(&s.admin),
    );
    assert_eq!((st, &v["value"]), (200, &json!({"by": "mcp"})), "{v}");
}

/// Hybrid: an MCP agent on the local host and one on the cloud host coordinate through a
/// channel and a shared document, with nobody in between but the bridge; the local agent
/// learns of the cloud agent's edit through `notifications/resources/updated`.
#[test]
fn hybrid_agents_coordinate() {
    let pair = start_pair(&[]);
    tests::wait_link_up(&pair.local);
    let bin = bridge_bin();
    let side = |host: &Host, role: &str| {
        Client::spawn(python_client(&[
            &format!("hybrid-{role}"),
            "proj",
            bin.to_str().unwrap(),
            &format!("ws://127.0.0.1:{}", host.ws_port),
            &format!("http://127.0.0.1:{}", host.api_port),
            &pair.token,
        ]))
    };
    let mut cloud = side(&pair.cloud, "cloud");
    let mut local = side(&pair.local, "local");
    assert_eq!(local.next_wait(), None);
    assert_eq!(cloud.next_wait(), None);
    let (local, cloud) = (local.finish(), cloud.finish());
    assert_eq!(cloud["hybrid_cloud"]["ask"]["doc"], "plan/p1");
    assert_eq!(local["hybrid_local"]["reply"], json!({"done": "deploy"}));
    // The cloud agent's patch reached the local MCP agent as a resource notification.
    assert_eq!(
        local["hybrid_local"]["notified"],
        "sacred-bridge://proj/plan/p1"
    );
    assert_eq!(
        local["hybrid_local"]["doc"],
        json!({"task": "deploy", "status": "done", "by": "cloud"})
    );
    // Both sides hold the same document.
    tests::eventually(
        pair.cloud.api_port,
        "/v1/spaces/proj/docs/plan/p1",
        Some(&pair.token),
        |st, v| st == 200 && v["value"]["status"] == "done",
    );
}
