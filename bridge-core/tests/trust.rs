//! The trust rule: a peer session whose token is below `admin` may introduce only writes of
//! its own replica, may not touch `_config`, and may not claim (by watermark or context)
//! writes it does not carry. Each attack is tried over both encodings; each is refused with
//! a stable code, changes nothing and closes the session; real replicas keep syncing.

use bridge_core::auth::{self, Claims, Rights};
use bridge_core::frame::{DocEntry, Hello, Push, SessionKind};
use bridge_core::{
    DocKey, Dot, EngineConfig, ErrorCode, Frame, Policy, Replica, ReplicaId, Tier, Transmit,
    VersionVector, WriteOp,
};
use serde_json::{json, Value};

#[path = "support/harness.rs"]
mod harness;

use harness::{Net, Node, Wire};

const SPACE: &str = "team";
const SECRET: &[u8] = b"trust-test-secret";
const ATTACKER: ReplicaId = ReplicaId(0xaa);
const REAL: ReplicaId = ReplicaId(0xbb);
const NOW: u64 = 1_000;

fn token(rights: Rights) -> String {
    auth::mint(
        SECRET,
        &Claims {
            space: SPACE.into(),
            rights,
            exp: u64::MAX,
            collections: None,
        },
    )
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// A frame as it arrives after crossing the wire in one encoding.
fn wire(f: &Frame, binary: bool) -> Frame {
    encoding(binary).round_trip(f)
}

fn encoding(binary: bool) -> Wire {
    if binary {
        Wire::Binary
    } else {
        Wire::Json
    }
}

/// A [`Net`] whose clock reads [`NOW`].
fn net_of(nodes: Vec<Node>) -> Net {
    let mut net = Net::new(nodes);
    net.at(NOW);
    net
}

/// What these tests do on a [`Net`].
trait Trust {
    /// Node `a` dials node `b` with a token of `rights` (`None`: no token); returns the
    /// link's index.
    fn dial(&mut self, a: usize, b: usize, rights: Option<Rights>, binary: bool) -> usize;
    fn has(&self, n: usize, collection: &str, id: &str) -> bool;
    fn write(&mut self, n: usize, id: &str, op: WriteOp);
}

impl Trust for Net {
    fn dial(&mut self, a: usize, b: usize, rights: Option<Rights>, binary: bool) -> usize {
        self.link(a, b, rights.map(token), encoding(binary))
    }

    fn has(&self, n: usize, collection: &str, id: &str) -> bool {
        self.nodes[n]
            .replica()
            .get(&DocKey::new(collection, id))
            .expect("read")
            .is_some()
    }

    fn write(&mut self, n: usize, id: &str, op: WriteOp) {
        let now = self.now_ms;
        self.nodes[n]
            .write(now, DocKey::new("notes", id), op)
            .expect("write");
    }
}

fn put(v: Value) -> WriteOp {
    WriteOp::Put(obj(v))
}

fn cloud() -> Node {
    let mut cfg = EngineConfig::new(ReplicaId(0xc1), Tier::Cloud, SPACE);
    cfg.secret = Some(SECRET.to_vec());
    Node::new(cfg)
}

fn browser(id: ReplicaId) -> Node {
    let mut cfg = EngineConfig::new(id, Tier::Local, SPACE);
    cfg.seed_default_policy = false;
    Node::new(cfg)
}

/// A document state as replica `by` would write it, then edited by `forge`.
fn forged(
    key: &DocKey,
    value: Value,
    by: ReplicaId,
    forge: impl FnOnce(&mut bridge_core::DocState),
) -> DocEntry {
    let mut r = Replica::new(by, Tier::Local, SPACE);
    r.write(NOW, key.clone(), WriteOp::Put(obj(value)))
        .expect("write");
    let mut state = r
        .state(key)
        .expect("read")
        .map(|s| (*s).clone())
        .expect("state");
    forge(&mut state);
    DocEntry {
        collection: key.collection.clone(),
        id: key.id.clone(),
        state,
    }
}

fn redot(state: &mut bridge_core::DocState, dot: Dot) {
    for s in &mut state.siblings {
        s.dot = dot;
    }
    state.context = VersionVector::new();
    state.context.add_dot(dot);
}

fn vv(entries: &[(ReplicaId, u64)]) -> VersionVector {
    let mut v = VersionVector::new();
    for (r, c) in entries {
        v.raise(*r, *c);
    }
    v
}

/// The attacks, each a push a write-token peer with replica id `ATTACKER` sends.
fn attacks() -> Vec<(&'static str, Push, ErrorCode)> {
    let notes = |id: &str| DocKey::new("notes", id);
    let config = DocKey::new("_config", "collection:notes");
    let push = |docs, watermark| Push {
        seq: 1,
        docs,
        watermark,
        remaining: 0,
        expanded: false,
    };
    vec![
        (
            "policy change through a push",
            push(
                vec![forged(
                    &config,
                    json!({"policy": "manual"}),
                    ATTACKER,
                    |_| {},
                )],
                vv(&[(ATTACKER, 1)]),
            ),
            ErrorCode::Forbidden,
        ),
        (
            "a write of another replica",
            push(
                vec![forged(&notes("x"), json!({"v": 1}), ATTACKER, |s| {
                    redot(s, Dot::new(REAL, 1_000_000))
                })],
                vv(&[(REAL, 1_000_000)]),
            ),
            ErrorCode::RelayForbidden,
        ),
        (
            "a watermark claiming another replica's writes",
            push(
                vec![forged(&notes("y"), json!({"v": 1}), ATTACKER, |_| {})],
                vv(&[(ATTACKER, 1), (REAL, 1_000_000)]),
            ),
            ErrorCode::RelayForbidden,
        ),
        (
            "a watermark claiming more of its own writes than it carries",
            push(
                vec![forged(&notes("y"), json!({"v": 1}), ATTACKER, |_| {})],
                vv(&[(ATTACKER, 1_000_000)]),
            ),
            ErrorCode::RelayForbidden,
        ),
        (
            "a future counter of its own id (above what its watermark accounts for)",
            push(
                vec![forged(&notes("z"), json!({"v": 1}), ATTACKER, |s| {
                    redot(s, Dot::new(ATTACKER, 1_000_000))
                })],
                vv(&[(ATTACKER, 1)]),
            ),
            ErrorCode::RelayForbidden,
        ),
        (
            "a context that claims another replica's writes",
            push(
                vec![forged(&notes("w"), json!({"v": 1}), ATTACKER, |s| {
                    s.context.raise(REAL, 1_000_000)
                })],
                vv(&[(ATTACKER, 1)]),
            ),
            ErrorCode::RelayForbidden,
        ),
    ]
}

#[test]
fn every_attack_of_a_write_token_peer_is_refused_and_real_writes_still_arrive() {
    const SERVER: usize = 0;
    const REAL_NODE: usize = 1;
    for binary in [false, true] {
        for (name, attack, code) in attacks() {
            let mut net = net_of(vec![cloud(), browser(REAL)]);
            // A real replica (a browser with a write token) syncs its first write.
            net.write(REAL_NODE, "b1", put(json!({"n": 1})));
            let l = net.dial(REAL_NODE, SERVER, Some(Rights::Write), binary);
            assert_eq!(net.pump(), []);
            net.unlink(l);
            let server = &mut net.nodes[SERVER];
            let before_vector = server.replica().vector().clone();
            let before_docs = server.replica().doc_count().expect("read");

            // The attacker: hello as a peer with a write token, then the forged push.
            let attacker = server.accept(NOW);
            let hello = Frame::Hello(Hello {
                space: SPACE.into(),
                kind: SessionKind::Peer,
                name: Some("mallory".into()),
                token: Some(token(Rights::Write)),
                replica: Some(ATTACKER),
                tier: Some(Tier::Local),
                vector: Some(VersionVector::new()),
                messages: Some(VersionVector::new()),
                horizon: None,
                collections: None,
                unclaimed: None,
                compact: None,
            });
            server.handle_frame(NOW, attacker, wire(&hello, binary));
            server.handle_frame(NOW, attacker, wire(&Frame::Push(attack), binary));
            server.persist_all();
            let mut answered = None;
            let mut closed = None;
            while let Some(t) = server.poll_transmit() {
                match t {
                    Transmit::Frame {
                        session,
                        frame: Frame::Error { code, .. },
                    } if session == attacker => answered = Some(code),
                    Transmit::Frame {
                        session,
                        frame: Frame::Ack(a),
                    } if session == attacker && a.seq.is_some() => {
                        panic!("{name}: the forged push was acknowledged")
                    }
                    Transmit::Close { session, code, .. } if session == attacker => {
                        closed = Some(code)
                    }
                    _ => {}
                }
            }
            assert_eq!(answered, Some(code), "{name} (binary: {binary})");
            assert_eq!(closed, Some(code), "{name}: the session is closed");
            server.close(30);
            assert_eq!(
                server.replica().vector(),
                &before_vector,
                "{name}: vector unchanged"
            );
            assert_eq!(
                server.replica().doc_count().expect("read"),
                before_docs,
                "{name}"
            );
            assert_eq!(server.replica().policy("notes"), Policy::Lww, "{name}");

            // The real replica's later writes still arrive, and are all acknowledged.
            net.write(REAL_NODE, "b2", put(json!({"n": 2})));
            let l = net.dial(REAL_NODE, SERVER, Some(Rights::Write), binary);
            assert_eq!(net.pump(), []);
            for id in ["b1", "b2"] {
                assert!(net.has(SERVER, "notes", id), "{name}: notes/{id} arrived");
            }
            let session = net.links[l].dialer_session;
            assert_eq!(
                net.nodes[REAL_NODE].peer_status(session).map(|s| s.pending),
                Some(0)
            );
        }
    }
}

#[test]
fn an_admin_peer_may_relay_other_replicas_writes_and_a_write_peer_only_its_own() {
    let (server, relay, origin) = (0, 1, 2);
    let mut net = net_of(vec![
        cloud(),
        browser(ReplicaId(0x11)),
        browser(ReplicaId(0x22)),
    ]);
    net.write(origin, "o", put(json!({"o": 1})));
    net.dial(origin, relay, None, true);
    assert_eq!(net.pump(), []);
    let up = net.dial(relay, server, Some(Rights::Write), false);
    assert_eq!(net.pump(), [], "a write-token relay is not refused");
    assert!(
        !net.has(server, "notes", "o"),
        "it sends only its own writes"
    );
    net.unlink(up);
    net.dial(relay, server, Some(Rights::Admin), false);
    assert_eq!(net.pump(), []);
    assert!(net.has(server, "notes", "o"), "with admin it relays");
}

/// A browser that synced with a local host and then moves to the cloud with a write token
/// holds the local host's writes, which the cloud lacks. It is never closed: it sends its own
/// writes; one built on local-only data waits (with those after it) until the cloud has that
/// data from a session that may relay it, and then goes by itself, on the same link.
#[test]
fn a_browser_that_moved_between_hosts_is_never_locked_out() {
    let (local, server, b) = (0, 1, 2);
    for binary in [false, true] {
        // The local host has no secret, so every session there is admin.
        let mut net = net_of(vec![browser(ReplicaId(0x10)), cloud(), browser(REAL)]);
        net.write(local, "l1", put(json!({"l": 1})));
        net.write(b, "b0", put(json!({"b": 0})));
        let to_local = net.dial(b, local, None, binary);
        assert_eq!(net.pump(), []);
        net.unlink(to_local);
        // Offline edits: one built on the local host's document, one independent after it.
        net.write(b, "l1", WriteOp::Patch(obj(json!({"b": 1}))));
        net.write(b, "b2", put(json!({"b": 2})));

        let to_cloud = net.dial(b, server, Some(Rights::Write), binary);
        assert_eq!(net.pump(), [], "never closed");
        assert!(net.has(server, "notes", "b0"), "its own earlier write went");
        assert!(
            !net.has(server, "notes", "l1"),
            "a write on local-only data waits"
        );
        assert!(
            !net.has(server, "notes", "b2"),
            "and so do the writes after it"
        );

        // The local host links up with an admin token and relays what it has; the cloud
        // passes it down the open browser link, and the browser's writes follow.
        net.dial(local, server, Some(Rights::Admin), binary);
        assert_eq!(net.pump(), []);
        for id in ["b0", "l1", "b2"] {
            assert!(net.has(server, "notes", id), "notes/{id} reached the cloud");
        }
        assert_eq!(
            net.nodes[server]
                .replica()
                .get(&DocKey::new("notes", "l1"))
                .expect("read"),
            Some(json!({"l": 1, "b": 1}))
        );
        let session = net.links[to_cloud].dialer_session;
        assert_eq!(
            net.nodes[b].peer_status(session).map(|s| s.pending),
            Some(0)
        );
    }
}

/// A session that claims a real replica's id and a huge counter of it is accepted (a
/// replica id is not a credential), but cannot hide the real replica's writes: the real
/// replica sees a claim of its own id beyond what it ever wrote, offers everything again and
/// moves its counter past the claim.
#[test]
fn an_impersonated_replica_still_gets_its_writes_through() {
    let (server, real, impostor) = (0, 1, 2);
    let mut net = net_of(vec![cloud(), browser(REAL), browser(REAL)]);
    net.write(real, "r1", put(json!({"r": 1})));
    net.nodes[impostor]
        .replica_mut()
        .skip_own_counter(1_000_000);
    net.write(impostor, "r1", put(json!({"forged": true})));
    let l = net.dial(impostor, server, Some(Rights::Write), true);
    assert_eq!(net.pump(), []);
    net.unlink(l);
    assert!(net.nodes[server].replica().vector().get(REAL) > 1_000_000);
    // The real replica connects: its earlier and later writes arrive.
    net.dial(real, server, Some(Rights::Write), false);
    assert_eq!(net.pump(), []);
    // The forged write claimed to have seen r1, so it overwrote it, as any write-token
    // holder may overwrite a document. What matters: the real replica's later writes,
    // including a new one to r1, are not taken for "already seen".
    net.write(real, "r2", put(json!({"r": 2})));
    net.write(real, "r1", put(json!({"r": 3})));
    assert_eq!(net.pump(), []);
    assert!(net.nodes[real].replica().vector().get(REAL) > 1_000_000);
    assert!(net.has(server, "notes", "r2"));
    assert_eq!(
        net.nodes[server]
            .replica()
            .get(&DocKey::new("notes", "r1"))
            .expect("read"),
        Some(json!({"r": 3}))
    );
}

/// A browser whose only writes the cloud lacks are ones it may not send itself — a policy it
/// set locally (`_config` needs admin), or a document a local host's agent overwrote after it
/// (superseded by a write the cloud does not have) — is not closed for it: the watermark never
/// claims its writes that did not go, its later writes still go, and the rest reaches the
/// cloud through the local host's admin link.
#[test]
fn writes_a_browser_may_not_send_itself_never_lock_it_out() {
    let (local, server, b) = (0, 1, 2);
    for binary in [false, true] {
        let mut net = net_of(vec![browser(ReplicaId(0x10)), cloud(), browser(REAL)]);
        // A write of the browser, synced to the local host, where an agent overwrites it.
        net.write(b, "x", put(json!({"by": "browser"})));
        let to_local = net.dial(b, local, None, binary);
        assert_eq!(net.pump(), []);
        net.write(local, "x", put(json!({"by": "local agent"})));
        assert_eq!(net.pump(), []);
        net.unlink(to_local);
        // And a policy the browser sets on its own store (it is admin there).
        net.nodes[b]
            .set_policy(NOW, "notes", Policy::Merge)
            .expect("set_policy");

        let to_cloud = net.dial(b, server, Some(Rights::Write), binary);
        assert_eq!(net.pump(), [], "not closed for what it may not send");
        assert!(!net.has(server, "notes", "x"));
        // A later write goes, on the same link.
        net.write(b, "later", put(json!({"n": 1})));
        assert_eq!(net.pump(), []);
        assert!(net.has(server, "notes", "later"));
        // The local host's admin link brings the overwritten document.
        net.dial(local, server, Some(Rights::Admin), binary);
        assert_eq!(net.pump(), []);
        assert_eq!(
            net.nodes[server]
                .replica()
                .get(&DocKey::new("notes", "x"))
                .expect("read"),
            Some(json!({"by": "local agent"}))
        );
        assert_eq!(net.nodes[server].replica().policy("notes"), Policy::Lww);
        let session = net.links[to_cloud].dialer_session;
        assert!(net.nodes[b].peer_status(session).is_some_and(|s| s.open));
    }
}
