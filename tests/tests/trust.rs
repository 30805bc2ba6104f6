//! The trust rule against a real cloud-mode host: a peer session with a `write` token tries
//! each attack the issue reproduced (policy change through a push, a write of another
//! replica, an inflated watermark, a future counter of its own id, a forged message origin)
//! over JSON and binary WebSocket frames. Each is answered with its error code and a close,
//! nothing is stored, and a real second replica's later writes still arrive.
#![allow(clippy::unwrap_used)]

use bridge_core::codec::{decode_binary, decode_json, encode_binary, encode_json};
use bridge_core::frame::{DocEntry, Hello, Push, SessionKind};
use bridge_core::{
    DocKey, Dot, ErrorCode, Frame, Message, MessageId, Replica, ReplicaId, Stamp, Tier,
    VersionVector, WriteOp,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tests::{mint_token, Host, TempDir, Ws};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SECRET: &str = "trust-e2e-secret-0123456789";
const SPACE: &str = "proj";
const REAL: ReplicaId = ReplicaId(0xbb);
const ATTACKER: ReplicaId = ReplicaId(0xaa);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A peer session speaking one encoding.
struct Peer {
    ws: Ws,
    binary: bool,
}

impl Peer {
    async fn open(host: &Host, token: &str, replica: ReplicaId, binary: bool) -> Peer {
        let (ws, _) = tokio_tungstenite::connect_async(host.ws_url(SPACE))
            .await
            .expect("connect");
        let mut p = Peer { ws, binary };
        p.send(&Frame::Hello(Hello {
            space: SPACE.into(),
            kind: SessionKind::Peer,
            name: Some(format!("peer-{replica}")),
            token: Some(token.into()),
            replica: Some(replica),
            tier: Some(Tier::Local),
            vector: Some(VersionVector::new()),
            messages: Some(VersionVector::new()),
            horizon: None,
            collections: None,
            unclaimed: None,
            compact: Some(true),
        }))
        .await;
        match p.recv_until(|f| matches!(f, Frame::Welcome(_))).await {
            Some(Frame::Welcome(w)) => assert_eq!(
                w.rights,
                Some(bridge_core::auth::Rights::Write),
                "welcome tells the peer its rights"
            ),
            other => panic!("no welcome: {other:?}"),
        }
        p
    }

    async fn send(&mut self, f: &Frame) {
        let m = if self.binary {
            WsMessage::Binary(encode_binary(f).into())
        } else {
            WsMessage::Text(encode_json(f).into())
        };
        self.ws.send(m).await.expect("send");
    }

    /// Frames until `pred` matches one; `None` once the server closed the connection.
    async fn recv_until(&mut self, pred: impl Fn(&Frame) -> bool) -> Option<Frame> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("no frame within 10 s");
            let f = match msg {
                Some(Ok(WsMessage::Text(t))) => decode_json(t.as_bytes()).expect("json frame"),
                Some(Ok(WsMessage::Binary(b))) => decode_binary(&b).expect("binary frame"),
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            };
            if pred(&f) {
                return Some(f);
            }
        }
    }

    /// The connection's close code, skipping frames.
    async fn close_code(&mut self) -> Option<u16> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("no close within 10 s");
            match msg {
                Some(Ok(WsMessage::Close(c))) => return c.map(|c| u16::from(c.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// A document state written by `by`, then with its dot (and context) replaced.
fn entry(key: &DocKey, value: Value, dot: Dot, extra_context: &[(ReplicaId, u64)]) -> DocEntry {
    let mut r = Replica::new(dot.replica, Tier::Local, SPACE);
    let m = value.as_object().cloned().unwrap_or_default();
    r.write(now_ms(), key.clone(), WriteOp::Put(m))
        .expect("write");
    let mut state = r
        .state(key)
        .expect("read")
        .map(|s| (*s).clone())
        .expect("state");
    for s in &mut state.siblings {
        s.dot = dot;
    }
    state.context = VersionVector::new();
    state.context.add_dot(dot);
    for (rep, c) in extra_context {
        state.context.raise(*rep, *c);
    }
    DocEntry {
        collection: key.collection.clone(),
        id: key.id.clone(),
        state,
    }
}

fn vv(entries: &[(ReplicaId, u64)]) -> VersionVector {
    let mut v = VersionVector::new();
    for (r, c) in entries {
        v.raise(*r, *c);
    }
    v
}

fn push(seq: u64, docs: Vec<DocEntry>, watermark: VersionVector) -> Frame {
    Frame::Push(Push {
        seq,
        docs,
        watermark,
        remaining: 0,
        expanded: false,
    })
}

fn attacks() -> Vec<(&'static str, Frame, ErrorCode)> {
    let notes = |id: &str| DocKey::new("notes", id);
    vec![
        (
            "a push that changes a policy",
            push(
                1,
                vec![entry(
                    &DocKey::new("_config", "collection:notes"),
                    json!({"policy": "manual"}),
                    Dot::new(ATTACKER, 1),
                    &[],
                )],
                vv(&[(ATTACKER, 1)]),
            ),
            ErrorCode::Forbidden,
        ),
        (
            "a write of another replica",
            push(
                1,
                vec![entry(
                    &notes("x"),
                    json!({"v": 1}),
                    Dot::new(REAL, 1_000_000),
                    &[],
                )],
                vv(&[(REAL, 1_000_000)]),
            ),
            ErrorCode::RelayForbidden,
        ),
        (
            "an inflated watermark",
            push(
                1,
                vec![entry(
                    &notes("y"),
                    json!({"v": 1}),
                    Dot::new(ATTACKER, 1),
                    &[],
                )],
                vv(&[(ATTACKER, 1), (REAL, 1_000_000)]),
            ),
            ErrorCode::RelayForbidden,
        ),
        (
            "a future counter of its own id",
            push(
                1,
                vec![entry(
                    &notes("z"),
                    json!({"v": 1}),
                    Dot::new(ATTACKER, 1_000_000),
                    &[],
                )],
                vv(&[(ATTACKER, 1)]),
            ),
            ErrorCode::RelayForbidden,
        ),
        (
            "a message under another replica's origin",
            Frame::Broadcast {
                message: Message {
                    id: MessageId {
                        origin: REAL,
                        seq: 1_000_000,
                    },
                    channel: "chat".into(),
                    payload: json!({"forged": true}),
                    stamp: Stamp::new(now_ms(), 0, ATTACKER),
                },
                offset: None,
            },
            ErrorCode::RelayForbidden,
        ),
    ]
}

fn cursor(host: &Host, token: &str) -> Value {
    let (s, v) = tests::http(
        host.api_port,
        "GET",
        &format!("/v1/spaces/{SPACE}/changes?since="),
        None,
        Some(token),
    );
    assert_eq!(s, 200, "{v}");
    v["cursor"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_token_peer_cannot_forge_and_real_writes_still_arrive() {
    let dir = TempDir::new("trust");
    let host = Host::start(&dir.0, "cloud", &[("BRIDGE_SECRET", SECRET)]);
    let write = mint_token(&dir.0, SECRET, SPACE, "write", "1h");
    let admin = mint_token(&dir.0, SECRET, SPACE, "admin", "1h");

    // The real replica (write token) pushes its first write.
    let mut real = Peer::open(&host, &write, REAL, false).await;
    let mut next = 1;
    let mut real_write = |real_counter: u64, id: &str| {
        let f = push(
            next,
            vec![entry(
                &DocKey::new("notes", id),
                json!({"by": "real", "n": real_counter}),
                Dot::new(REAL, real_counter),
                &[],
            )],
            vv(&[(REAL, real_counter)]),
        );
        next += 1;
        f
    };
    real.send(&real_write(1, "r1")).await;
    let ack = real
        .recv_until(|f| matches!(f, Frame::Ack(a) if a.seq.is_some()))
        .await;
    assert!(ack.is_some(), "the real replica's push is acknowledged");
    let mut before = cursor(&host, &admin);

    let mut counter = 1;
    for binary in [false, true] {
        for (name, attack, code) in attacks() {
            let mut evil = Peer::open(&host, &write, ATTACKER, binary).await;
            evil.send(&attack).await;
            let answer = evil
                .recv_until(|f| matches!(f, Frame::Error { .. } | Frame::Ack(_)))
                .await;
            match answer {
                Some(Frame::Error { code: c, .. }) => {
                    assert_eq!(c, code, "{name} (binary {binary})")
                }
                other => panic!("{name} (binary {binary}): answered {other:?}"),
            }
            assert_eq!(
                evil.close_code().await,
                Some(1008),
                "{name}: the session is closed (1008)"
            );
            assert_eq!(cursor(&host, &admin), before, "{name}: nothing stored");
            let (_, p) = tests::http(
                host.api_port,
                "GET",
                &format!("/v1/spaces/{SPACE}/docs/notes/x"),
                None,
                Some(&admin),
            );
            assert_ne!(p["value"]["v"], 1, "{name}: no forged document");

            // The real replica's next write still arrives.
            counter += 1;
            let id = format!("r{counter}");
            real.send(&real_write(counter, &id)).await;
            assert!(real
                .recv_until(|f| matches!(f, Frame::Ack(a) if a.seq.is_some()))
                .await
                .is_some());
            let (s, v) = tests::http(
                host.api_port,
                "GET",
                &format!("/v1/spaces/{SPACE}/docs/notes/{id}"),
                None,
                Some(&admin),
            );
            assert_eq!((s, &v["value"]["n"]), (200, &json!(counter)), "{name}");
            let after = cursor(&host, &admin);
            assert_ne!(after, before);
            before = after;
        }
    }
    // The policy of `notes` was never changed: an admin agent reads `_config` over the
    // WebSocket (HTTP does not serve reserved collections).
    let (mut admin_agent, w) = tests::Agent::hello(&host.ws_url(SPACE), SPACE, Some(&admin)).await;
    assert_eq!(w["type"], "welcome", "{w}");
    admin_agent
        .send(&json!({"type": "get", "req": 1, "collection": "_config", "id": "collection:notes"}))
        .await;
    let doc = admin_agent.recv_type("doc").await;
    assert_eq!(doc["req"], 1, "{doc}");
    assert_eq!(
        doc["doc"]["value"],
        Value::Null,
        "no policy entry for notes: {doc}"
    );
}
