//! One MCP session's connection to the host: an ordinary WebSocket **agent** session speaking
//! the JSON frames of docs/protocol.md. Requests carry a `req` and wait for the answer with the
//! same `req`; everything else the host sends (`change`, `broadcast`, `presence`, `conflict`)
//! goes to [`Events`].
//!
//! Because the MCP session is an agent session of the host, the host checks its token's rights,
//! acknowledges writes only once durable, shows it in presence and delivers changes and
//! messages exactly as for any other agent: nothing is checked a second time here.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long a request may wait for its answer before it is reported as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// An error answer of the bridge (or of this link), with the bridge's stable code.
#[derive(Debug, Clone)]
pub struct BridgeError {
    pub code: String,
    pub message: String,
}

impl BridgeError {
    pub fn new(code: &str, message: impl Into<String>) -> BridgeError {
        BridgeError {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// What the host sends without being asked: handed to the session that owns the link.
pub trait Events: Send + Sync + 'static {
    fn frame(&self, frame: Value);
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>;

/// A live agent connection. Dropping it closes the connection.
pub struct Link {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_req: AtomicI64,
    alive: Arc<AtomicBool>,
    pub welcome: Value,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Locks a mutex, recovering the data if another thread panicked while holding it.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Link {
    /// Connects to `{ws_base}/v1/spaces/{space}/ws`, says `hello` as an agent named `name`,
    /// and returns once the host answered `welcome`. An `error` answer (bad token, wrong
    /// space) is returned with its code.
    pub async fn connect(
        ws_base: &str,
        space: &str,
        name: &str,
        token: Option<&str>,
        events: Weak<dyn Events>,
    ) -> Result<Link, BridgeError> {
        let url = format!(
            "{}/v1/spaces/{}/ws",
            ws_base.trim_end_matches('/'),
            super::uri::enc(space)
        );
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .map_err(|_| BridgeError::new("unavailable", format!("{url}: no answer within 10 s")))?
        .map_err(|e| {
            BridgeError::new(
                "unavailable",
                format!("cannot reach the bridge at {url}: {e}. Is `sacred-bridge serve` running?"),
            )
        })?;
        let mut hello =
            json!({"type": "hello", "v": 1, "space": space, "name": name, "kind": "agent"});
        if let Some(t) = token {
            hello["token"] = Value::from(t);
        }
        ws.send(Message::Text(hello.to_string().into()))
            .await
            .map_err(|e| BridgeError::new("unavailable", format!("{url}: {e}")))?;
        let welcome = loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .map_err(|_| BridgeError::new("unavailable", "no answer to hello within 10 s"))?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).map_err(|e| {
                        BridgeError::new("internal", format!("the host sent bad JSON: {e}"))
                    })?;
                    match v["type"].as_str() {
                        Some("welcome") => break v,
                        Some("error") => return Err(error_of(&v)),
                        _ => continue,
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(BridgeError::new(
                        "unavailable",
                        "the host closed the connection during hello",
                    ))
                }
                Some(Err(e)) => return Err(BridgeError::new("unavailable", e.to_string())),
                Some(Ok(_)) => continue,
            }
        };
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let task = {
            let pending = pending.clone();
            let alive = alive.clone();
            tokio::spawn(async move {
                let (mut sink, mut stream) = ws.split();
                loop {
                    tokio::select! {
                        m = out_rx.recv() => match m {
                            Some(m) => if sink.send(m).await.is_err() { break },
                            None => break,
                        },
                        m = stream.next() => match m {
                            Some(Ok(Message::Text(t))) => {
                                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                                // `pong` answers `ping` by nonce (see `Link::barrier`).
                                let key = if v["type"] == "pong" { v.get("nonce") } else { v.get("req") };
                                let waiter = key.and_then(Value::as_i64)
                                    .and_then(|r| lock(&pending).remove(&r));
                                match waiter {
                                    Some(w) => { let _ = w.send(v); }
                                    None => match events.upgrade() {
                                        Some(e) => e.frame(v),
                                        None => break,
                                    },
                                }
                            }
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                            Some(Ok(_)) => {}
                        },
                    }
                }
                alive.store(false, Ordering::SeqCst);
                // Waiters see their sender dropped: "connection lost".
                lock(&pending).clear();
            })
        };
        Ok(Link {
            out,
            pending,
            next_req: AtomicI64::new(1),
            alive,
            welcome,
            task,
        })
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Sends `frame` with a fresh `req` and waits for the answer with that `req`. An `error`
    /// answer becomes `Err` with the bridge's code and message.
    pub async fn call(&self, mut frame: Value) -> Result<Value, BridgeError> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        frame["req"] = Value::from(req);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(req, tx);
        self.send(&frame)?;
        let answer = match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => return Err(lost()),
            Err(_) => {
                lock(&self.pending).remove(&req);
                return Err(BridgeError::new(
                    "timeout",
                    "the host did not answer within 60 s; the request may or may not have been applied",
                ));
            }
        };
        if answer["type"] == "error" {
            return Err(error_of(&answer));
        }
        Ok(answer)
    }

    /// Waits until the host has answered everything sent before (a `ping` answered in order):
    /// e.g. the retained messages a `subscribe` replays after its `ack`.
    pub async fn barrier(&self) -> Result<(), BridgeError> {
        let nonce = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(nonce, tx);
        self.send(&json!({"type": "ping", "nonce": nonce}))?;
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(lost()),
            Err(_) => {
                lock(&self.pending).remove(&nonce);
                Err(BridgeError::new(
                    "timeout",
                    "the host did not answer a ping within 60 s",
                ))
            }
        }
    }

    /// Sends a frame without waiting for anything.
    pub fn send(&self, frame: &Value) -> Result<(), BridgeError> {
        self.out
            .send(Message::Text(frame.to_string().into()))
            .map_err(|_| lost())
    }
}

fn lost() -> BridgeError {
    BridgeError::new(
        "unavailable",
        "the connection to the bridge was lost; the next call reconnects",
    )
}

fn error_of(v: &Value) -> BridgeError {
    BridgeError::new(
        v["code"].as_str().unwrap_or("internal"),
        v["message"]
            .as_str()
            .unwrap_or("the host refused the request"),
    )
}
