//! The engine as agents and peers see it: acks gated on persistence, reads, subscriptions,
//! conflicts, policies, auth and error codes.

use bridge_core::auth::{self, Claims, Rights};
use bridge_core::frame::{Conflict, Hello, SessionKind};
use bridge_core::{
    DocKey, EngineConfig, ErrorCode, Event, Frame, Policy, ReplicaId, Tier, WriteOp,
};
use serde_json::{json, Value};

#[path = "support/harness.rs"]
mod harness;

use harness::{sync_pair, Net, Node, Out, Wire};

const SPACE: &str = "team";

fn engine(id: u64, tier: Tier) -> Node {
    Node::of(id, tier, SPACE)
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().expect("object")
}

fn agent(e: &mut Node, session: u64, token: Option<String>) -> Vec<Out> {
    e.accept_as(0, session);
    e.handle_frame(
        0,
        session,
        Frame::Hello(Hello {
            space: SPACE.into(),
            kind: SessionKind::Agent,
            name: Some("tester".into()),
            token,
            ..Hello::default()
        }),
    );
    e.drain()
}

fn error_code(frames: &[Out]) -> Option<ErrorCode> {
    frames.iter().find_map(|(_, f)| match f {
        Some(Frame::Error { code, .. }) => Some(*code),
        _ => None,
    })
}

fn closed(frames: &[Out]) -> bool {
    frames.iter().any(|(_, f)| f.is_none())
}

#[test]
fn agent_write_is_acked_only_after_persist() {
    let mut e = engine(1, Tier::Local);
    let hello = agent(&mut e, 1, None);
    assert!(matches!(hello[0].1, Some(Frame::Welcome(_))));
    e.handle_frame(
        0,
        1,
        Frame::Put {
            req: Some(5),
            collection: "notes".into(),
            id: "a".into(),
            value: json!({"t": 1}),
        },
    );
    assert!(e.drain().is_empty(), "no ack before the batch is persisted");
    // Reads see the staged write at once.
    e.handle_frame(
        0,
        1,
        Frame::Get {
            req: Some(6),
            collection: "notes".into(),
            id: "a".into(),
        },
    );
    let got = e.drain();
    assert!(
        matches!(&got[0].1, Some(Frame::Doc { doc, .. }) if doc.value == Some(json!({"t": 1})))
    );
    let batch = e.poll_persist().expect("a batch");
    // The write, and the space's default-policy seed this new space gets in its first batch.
    let keys: Vec<String> = batch
        .docs
        .iter()
        .map(|(k, _)| format!("{}/{}", k.collection, k.id))
        .collect();
    assert_eq!(keys, ["_config/space", "notes/a"]);
    assert!(
        e.drain().is_empty(),
        "still no ack while the batch is in flight"
    );
    e.persisted(batch.id).expect("persisted");
    let acks = e.drain();
    assert!(matches!(&acks[0].1, Some(Frame::Ack(a)) if a.req == Some(5) && a.dot.is_some()));
}

#[test]
fn persisted_out_of_order_is_refused() {
    let mut e = engine(1, Tier::Local);
    e.write(0, DocKey::new("c", "a"), WriteOp::Put(obj(json!({"x": 1}))))
        .expect("write");
    let b1 = e.poll_persist().expect("batch 1");
    e.write(0, DocKey::new("c", "b"), WriteOp::Put(obj(json!({"x": 2}))))
        .expect("write");
    let b2 = e.poll_persist().expect("batch 2");
    assert!(e.persisted(b2.id).is_err());
    e.persisted(b1.id).expect("first");
    e.persisted(b2.id).expect("second");
    let acked: Vec<u64> = std::iter::from_fn(|| e.poll_event())
        .filter_map(|ev| match ev {
            Event::Acked { req, .. } => Some(req),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![1, 2]);
}

#[test]
fn list_pages_and_skips_deleted() {
    let mut e = engine(1, Tier::Local);
    for i in 0..5 {
        e.write(
            0,
            DocKey::new("c", format!("d{i}")),
            WriteOp::Put(obj(json!({"i": i}))),
        )
        .expect("write");
    }
    e.write(0, DocKey::new("c", "d2"), WriteOp::Delete)
        .expect("delete");
    e.persist_all();
    agent(&mut e, 1, None);
    e.handle_frame(
        0,
        1,
        Frame::List {
            req: Some(1),
            collection: "c".into(),
            after: None,
            limit: Some(2),
        },
    );
    let page = e.drain();
    let Some(Frame::Docs { docs, next, .. }) = &page[0].1 else {
        panic!("docs expected: {page:?}")
    };
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["d0", "d1"]);
    e.handle_frame(
        0,
        1,
        Frame::List {
            req: Some(2),
            collection: "c".into(),
            after: next.clone(),
            limit: Some(10),
        },
    );
    let page = e.drain();
    let Some(Frame::Docs { docs, next, .. }) = &page[0].1 else {
        panic!("docs expected")
    };
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["d3", "d4"]);
    assert!(next.is_none());
}

#[test]
fn bad_requests_get_codes_and_the_session_goes_on() {
    let mut e = engine(1, Tier::Local);
    // Anything before hello closes the connection.
    let s = e.accept(0);
    e.handle_frame(0, s, Frame::Ping { nonce: 1 });
    let out = e.drain();
    assert_eq!(error_code(&out), Some(ErrorCode::HelloRequired));
    assert!(closed(&out));

    agent(&mut e, 1, None);
    e.handle_frame(
        0,
        1,
        Frame::Put {
            req: Some(1),
            collection: "c".into(),
            id: "a".into(),
            value: json!([1, 2]),
        },
    );
    let out = e.drain();
    assert_eq!(error_code(&out), Some(ErrorCode::BadRequest));
    assert!(!closed(&out));
    e.handle_frame(
        0,
        1,
        Frame::Put {
            req: Some(2),
            collection: "".into(),
            id: "a".into(),
            value: json!({}),
        },
    );
    assert_eq!(error_code(&e.drain()), Some(ErrorCode::BadRequest));
    e.handle_frame(
        0,
        1,
        Frame::Put {
            req: Some(2),
            collection: "_config".into(),
            id: "x".into(),
            value: json!({}),
        },
    );
    assert_eq!(
        error_code(&e.drain()),
        Some(ErrorCode::BadRequest),
        "unknown config entry"
    );
    e.handle_frame(
        0,
        1,
        Frame::Put {
            req: Some(2),
            collection: "_mine".into(),
            id: "x".into(),
            value: json!({}),
        },
    );
    assert_eq!(
        error_code(&e.drain()),
        Some(ErrorCode::BadRequest),
        "reserved names"
    );
    e.handle_frame(
        0,
        1,
        Frame::Put {
            req: Some(2),
            collection: "_config".into(),
            id: "collection:c".into(),
            value: json!({"policy": "nope"}),
        },
    );
    assert_eq!(error_code(&e.drain()), Some(ErrorCode::BadPolicy));
    e.handle_decode_error(
        1,
        None,
        &bridge_core::codec::decode_json(b"{nope").unwrap_err(),
    );
    let out = e.drain();
    assert_eq!(error_code(&out), Some(ErrorCode::Malformed));
    assert!(!closed(&out), "an agent survives a malformed frame");
    e.handle_frame(0, 1, Frame::Ping { nonce: 7 });
    assert!(matches!(e.drain()[0].1, Some(Frame::Pong { nonce: 7 })));
    assert_eq!(
        e.replica().latest_vector().get(ReplicaId(1)),
        0,
        "nothing was written"
    );
}

#[test]
fn tokens_open_one_space_with_their_rights() {
    let secret = b"k".to_vec();
    let mut cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    cfg.secret = Some(secret.clone());
    let mut e = Node::new(cfg);
    let tok = |space: &str, rights, exp| {
        auth::mint(
            &secret,
            &Claims {
                space: space.into(),
                rights,
                exp,
                collections: None,
            },
        )
    };

    let out = agent(&mut e, 1, None);
    assert_eq!(error_code(&out), Some(ErrorCode::Unauthorized));
    assert!(closed(&out));
    let out = agent(&mut e, 2, Some(tok("other", Rights::Admin, u64::MAX)));
    assert_eq!(error_code(&out), Some(ErrorCode::Unauthorized));
    let out = agent(&mut e, 3, Some(tok(SPACE, Rights::Admin, 0)));
    assert_eq!(error_code(&out), Some(ErrorCode::Unauthorized), "expired");

    let out = agent(&mut e, 4, Some(tok(SPACE, Rights::Read, u64::MAX)));
    assert!(matches!(out[0].1, Some(Frame::Welcome(_))));
    e.handle_frame(
        0,
        4,
        Frame::Put {
            req: Some(1),
            collection: "c".into(),
            id: "a".into(),
            value: json!({}),
        },
    );
    assert_eq!(error_code(&e.drain()), Some(ErrorCode::Forbidden));
    e.handle_frame(
        0,
        4,
        Frame::Get {
            req: Some(2),
            collection: "c".into(),
            id: "a".into(),
        },
    );
    assert!(matches!(e.drain()[0].1, Some(Frame::Doc { .. })));

    let out = agent(&mut e, 5, Some(tok(SPACE, Rights::Write, u64::MAX)));
    assert!(matches!(out[0].1, Some(Frame::Welcome(_))));
    e.handle_frame(
        0,
        5,
        Frame::SetPolicy {
            req: Some(1),
            collection: "c".into(),
            policy: Policy::Merge,
        },
    );
    assert_eq!(
        error_code(&e.drain()),
        Some(ErrorCode::Forbidden),
        "policy needs admin"
    );
}

#[test]
fn a_token_scoped_to_collections_opens_only_them() {
    use bridge_core::{Answer, Reply, Request, VersionVector};
    // Conflicts in two collections: manual policy, concurrent edits on two replicas.
    let mut local = engine(1, Tier::Local);
    let mut cloud = engine(2, Tier::Cloud);
    for c in ["notes/a", "users"] {
        local.set_policy(0, c, Policy::Manual).expect("policy");
        let key = DocKey::new(c, "d");
        local
            .write(0, key, WriteOp::Put(obj(json!({"x": 0}))))
            .expect("w");
    }
    local
        .write(
            0,
            DocKey::new("audit", "log"),
            WriteOp::Put(obj(json!({"n": 1}))),
        )
        .expect("w");
    link(&mut local, &mut cloud);
    local.close(UP);
    cloud.close(DOWN);
    for c in ["notes/a", "users"] {
        let key = DocKey::new(c, "d");
        let patch = |v| WriteOp::Patch(obj(json!({ "x": v })));
        local.write(100, key.clone(), patch("l")).expect("w");
        cloud.write(200, key, patch("c")).expect("w");
    }
    link(&mut local, &mut cloud);
    assert_eq!(cloud.replica().conflicts(None).expect("read").len(), 2);

    let claims = Claims {
        space: SPACE.into(),
        rights: Rights::Read,
        exp: u64::MAX,
        collections: auth::parse_collections("notes/*:write,audit:read").ok(),
    };
    let g = claims.grant();
    let now = |r: bridge_core::Result<Answer>| match r {
        Ok(Answer::Now(reply)) => Ok(reply),
        Ok(Answer::WhenDurable { reply, .. }) => Ok(reply),
        Err(e) => Err(e.code()),
    };
    let get = |c: &str| Request::Get {
        key: DocKey::new(c, "d"),
    };
    // Every conflict: only the collections the token reads.
    let Ok(Reply::Conflicts(list)) =
        now(cloud.request(300, &g, Request::Conflicts { collection: None }))
    else {
        panic!("conflicts")
    };
    let names: Vec<&str> = list.iter().map(|c| c.collection.as_str()).collect();
    assert_eq!(names, ["notes/a"]);
    let users = Request::Conflicts {
        collection: Some("users".into()),
    };
    assert_eq!(
        now(cloud.request(300, &g, users)).err(),
        Some(ErrorCode::Forbidden)
    );
    // Reads and writes per collection.
    assert!(matches!(
        now(cloud.request(300, &g, get("notes/a"))),
        Ok(Reply::Doc(_))
    ));
    assert!(matches!(
        now(cloud.request(300, &g, get("audit"))),
        Ok(Reply::Doc(_))
    ));
    let err = cloud
        .request(300, &g, get("users"))
        .expect_err("users is not in the token");
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert!(err.to_string().contains("`users`"), "{err}");
    let put = |c: &str| Request::Write {
        key: DocKey::new(c, "new"),
        op: WriteOp::Put(obj(json!({"y": 1}))),
    };
    assert!(matches!(
        now(cloud.request(300, &g, put("notes/b"))),
        Ok(Reply::Written { .. })
    ));
    cloud.persist_all();
    for refused in [
        put("audit"),
        put("users"),
        Request::SetPolicy {
            collection: "notes/a".into(),
            policy: Policy::Lww,
        },
        Request::Send {
            channel: "ops".into(),
            payload: json!(1),
        },
        Request::Import(vec![(DocKey::new("notes/a", "i"), Some(obj(json!({}))))]),
    ] {
        assert_eq!(
            now(cloud.request(300, &g, refused)).err(),
            Some(ErrorCode::Forbidden)
        );
    }
    // The changes feed and the export hold only what it reads.
    let Ok(Reply::Changes { changes, .. }) = now(cloud.request(
        300,
        &g,
        Request::Changes {
            since: VersionVector::default(),
            limit: 1000,
        },
    )) else {
        panic!("changes")
    };
    let mut seen: Vec<String> = changes.iter().map(|d| d.collection.clone()).collect();
    seen.sort();
    assert_eq!(seen, ["audit", "notes/a", "notes/b"]);
    let Ok(Reply::Export { docs, next: None }) =
        now(cloud.request(300, &g, Request::Export { after: None }))
    else {
        panic!("export")
    };
    let exported: Vec<String> = docs
        .iter()
        .map(|(k, _)| format!("{}/{}", k.collection, k.id))
        .collect();
    // `_config` holds the policy of `notes/a` (readable) and of `users` (not), and the
    // space's own configuration.
    assert_eq!(
        exported,
        [
            "_config/collection:notes/a",
            "_config/space",
            "audit/log",
            "notes/a/d",
            "notes/b/new"
        ]
    );
    let policy = |c: &str| Request::Get {
        key: DocKey::new("_config", format!("collection:{c}")),
    };
    assert!(now(cloud.request(300, &g, policy("notes/a"))).is_ok());
    assert_eq!(
        now(cloud.request(300, &g, policy("users"))).err(),
        Some(ErrorCode::Forbidden)
    );

    // `_config` lists only the policies of what it reads.
    let Ok(Reply::Docs { docs, .. }) = now(cloud.request(
        300,
        &g,
        Request::List {
            collection: "_config".into(),
            after: None,
            limit: 100,
        },
    )) else {
        panic!("list")
    };
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["collection:notes/a", "space"]);
    // A policy is changed with `admin` in the token's own rights and on the collection.
    let grant = |rights, patterns: &str| Claims {
        space: SPACE.into(),
        rights,
        exp: u64::MAX,
        collections: auth::parse_collections(patterns).ok(),
    };
    let set = |c: &str| Request::SetPolicy {
        collection: c.into(),
        policy: Policy::Lww,
    };
    let raw = |c: &str| Request::Write {
        key: DocKey::new("_config", format!("collection:{c}")),
        op: WriteOp::Put(obj(json!({"policy": "lww"}))),
    };
    for (claims, request) in [
        (grant(Rights::Admin, "notes/*:write"), raw("users")),
        (grant(Rights::Admin, "notes/*:write"), set("notes/a")),
        (grant(Rights::Read, "notes/*:admin"), set("notes/a")),
        (grant(Rights::Read, "notes/*:admin"), raw("notes/a")),
    ] {
        let refused = now(cloud.request(300, &claims.grant(), request.clone()));
        assert_eq!(
            refused.err(),
            Some(ErrorCode::Forbidden),
            "{claims:?} {request:?}"
        );
    }
    let admin = grant(Rights::Admin, "notes/*:admin").grant();
    assert!(now(cloud.request(300, &admin, set("notes/a"))).is_ok());
    assert_eq!(
        now(cloud.request(300, &admin, set("users"))).err(),
        Some(ErrorCode::Forbidden)
    );

    // Over a session: an agent is held to the same; a peer cannot open with such a token.
    let secret = b"k".to_vec();
    let mut cfg = EngineConfig::new(ReplicaId(3), Tier::Cloud, SPACE);
    cfg.secret = Some(secret.clone());
    let mut e = Node::new(cfg);
    let token = auth::mint(&secret, &claims);
    let out = agent(&mut e, 1, Some(token.clone()));
    assert!(matches!(out[0].1, Some(Frame::Welcome(_))));
    e.handle_frame(
        0,
        1,
        Frame::Get {
            req: Some(1),
            collection: "users".into(),
            id: "d".into(),
        },
    );
    let out = e.drain();
    assert_eq!(error_code(&out), Some(ErrorCode::Forbidden));
    assert!(!closed(&out), "an agent's session stays open");
    e.handle_frame(
        0,
        1,
        Frame::Subscribe {
            req: Some(2),
            channel: None,
            collection: Some("users".into()),
            from: None,
        },
    );
    assert_eq!(error_code(&e.drain()), Some(ErrorCode::Forbidden));
    // Subscribed to `_config`, it hears of the policies of what it reads only.
    e.handle_frame(
        0,
        1,
        Frame::Subscribe {
            req: Some(3),
            channel: None,
            collection: Some("_config".into()),
            from: None,
        },
    );
    assert_eq!(error_code(&e.drain()), None);
    e.set_policy(0, "users", Policy::Manual).expect("policy");
    e.set_policy(0, "notes/a", Policy::Manual).expect("policy");
    e.persist_all();
    let changed: Vec<String> = e
        .drain()
        .into_iter()
        .filter_map(|(_, f)| match f {
            Some(Frame::Change { doc }) => Some(doc.id),
            _ => None,
        })
        .collect();
    assert!(
        changed.contains(&"collection:notes/a".to_string()),
        "{changed:?}"
    );
    assert!(
        !changed.contains(&"collection:users".to_string()),
        "{changed:?}"
    );
    e.accept_as(0, 2);
    e.handle_frame(
        0,
        2,
        Frame::Hello(Hello {
            space: SPACE.into(),
            kind: SessionKind::Peer,
            replica: Some(ReplicaId(9)),
            tier: Some(Tier::Local),
            token: Some(token),
            ..Hello::default()
        }),
    );
    let out = e.drain();
    assert_eq!(error_code(&out), Some(ErrorCode::Forbidden));
    assert!(closed(&out));
}

#[test]
fn channel_messages_reach_subscribers_and_replay_from_a_cursor() {
    let mut e = engine(1, Tier::Local);
    agent(&mut e, 1, None);
    agent(&mut e, 2, None);
    e.handle_frame(
        0,
        2,
        Frame::Subscribe {
            req: Some(1),
            channel: Some("ops".into()),
            collection: None,
            from: None,
        },
    );
    e.drain();
    for n in 0..3 {
        e.handle_frame(
            0,
            1,
            Frame::Send {
                req: Some(n),
                channel: "ops".into(),
                payload: json!({"n": n}),
            },
        );
    }
    e.persist_all();
    let out = e.drain();
    let to_2: Vec<u64> = out
        .iter()
        .filter_map(|(s, f)| match f {
            Some(Frame::Broadcast {
                offset: Some(o), ..
            }) if *s == 2 => Some(*o),
            _ => None,
        })
        .collect();
    assert_eq!(to_2.len(), 3, "{out:?}");
    let to_1 = out
        .iter()
        .filter(|(s, f)| *s == 1 && matches!(f, Some(Frame::Broadcast { .. })))
        .count();
    assert_eq!(to_1, 0, "the sender does not get its own message back");
    // A late agent replays from a cursor.
    agent(&mut e, 3, None);
    e.handle_frame(
        0,
        3,
        Frame::Subscribe {
            req: None,
            channel: Some("ops".into()),
            collection: None,
            from: Some(to_2[0]),
        },
    );
    let replay = e.drain();
    let payloads: Vec<Value> = replay
        .iter()
        .filter_map(|(_, f)| match f {
            Some(Frame::Broadcast { message, .. }) => Some(message.payload.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, vec![json!({"n": 1}), json!({"n": 2})]);
}

/// What the tests call the sessions of a link between two engines (the harness maps them to
/// the engines' own ids), and of the link that replaces it.
const UP: bridge_core::SessionId = 10;
const DOWN: bridge_core::SessionId = 20;
const UP_AGAIN: bridge_core::SessionId = 11;
const DOWN_AGAIN: bridge_core::SessionId = 21;

/// Two engines joined by one link (`a`'s session [`UP`], `b`'s [`DOWN`]), synced until quiet.
fn link(a: &mut Node, b: &mut Node) {
    a.connect_as(0, UP, None, "up");
    b.accept_as(0, DOWN);
    sync(a, b);
}

/// Carries frames between `a` (session [`UP`]) and `b` (session [`DOWN`]) until quiet.
fn sync(a: &mut Node, b: &mut Node) {
    sync_pair(0, (a, UP), (b, DOWN), Wire::Json);
}

#[test]
fn policies_decide_concurrent_writes_the_same_everywhere() {
    let expected = [
        (Policy::Lww, json!({"x": "cloud", "y": 2})),
        (Policy::CloudWins, json!({"x": "cloud", "y": 2})),
        (Policy::LocalWins, json!({"x": "local", "z": 1})),
        (Policy::Merge, json!({"x": "cloud", "y": 2, "z": 1})),
        (Policy::Manual, json!({"x": "cloud", "y": 2})),
    ];
    for (policy, want) in expected {
        let mut local = engine(1, Tier::Local);
        let mut cloud = engine(2, Tier::Cloud);
        let key = DocKey::new("c", "doc");
        local.set_policy(0, "c", policy).expect("policy");
        local
            .write(0, key.clone(), WriteOp::Put(obj(json!({"x": 0}))))
            .expect("base");
        link(&mut local, &mut cloud);
        assert_eq!(cloud.replica().policy("c"), policy, "policy replicates");
        local.close(UP);
        cloud.close(DOWN);
        // Concurrent edits while apart; the cloud one is later in time.
        local
            .write(
                100,
                key.clone(),
                WriteOp::Patch(obj(json!({"x": "local", "z": 1}))),
            )
            .expect("w");
        cloud
            .write(
                200,
                key.clone(),
                WriteOp::Patch(obj(json!({"x": "cloud", "y": 2}))),
            )
            .expect("w");
        link(&mut local, &mut cloud);
        assert_eq!(
            local.replica().get(&key).expect("read"),
            Some(want.clone()),
            "{policy}"
        );
        assert_eq!(
            cloud.replica().get(&key).expect("read"),
            Some(want),
            "{policy}"
        );
        let conflicts: Vec<Conflict> = local.replica().conflicts(None).expect("read");
        assert_eq!(conflicts, cloud.replica().conflicts(None).expect("read"));
        if policy == Policy::Manual {
            assert_eq!(conflicts.len(), 1);
            assert_eq!(conflicts[0].fields, ["x", "y", "z"]);
            assert_eq!(conflicts[0].sides.len(), 2);
            // Resolve on one side; the resolution supersedes both sides everywhere.
            local
                .resolve(300, key.clone(), Some(obj(json!({"x": "agreed"}))))
                .expect("resolve");
            sync(&mut local, &mut cloud);
            assert!(cloud.replica().conflicts(None).expect("read").is_empty());
            assert_eq!(
                cloud.replica().get(&key).expect("read"),
                Some(json!({"x": "agreed"}))
            );
            assert!(
                local.resolve(400, key.clone(), None).is_err(),
                "nothing left to resolve"
            );
        } else {
            assert!(conflicts.is_empty());
        }
        // A write made after seeing the other always wins, whatever the tiers.
        cloud
            .write(500, key.clone(), WriteOp::Put(obj(json!({"after": true}))))
            .expect("w");
        sync(&mut local, &mut cloud);
        assert_eq!(
            local.replica().get(&key).expect("read"),
            Some(json!({"after": true})),
            "{policy}"
        );
    }
}

#[test]
fn initial_sync_streams_in_batches_with_progress() {
    let mut cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    cfg.batch_docs = 10;
    // Exactly 95 documents to count (no `_config/space` seed).
    cfg.seed_default_policy = false;
    let mut cloud = Node::new(cfg);
    for i in 0..95 {
        cloud
            .write(
                0,
                DocKey::new("c", format!("{i:03}")),
                WriteOp::Put(obj(json!({"i": i}))),
            )
            .expect("w");
    }
    cloud.persist_all();
    let mut local = engine(2, Tier::Local);
    local.connect_as(0, UP, None, "up");
    cloud.accept_as(0, DOWN);
    sync(&mut local, &mut cloud);
    assert_eq!(
        local.replica().list("c", None, 1000).expect("read").len(),
        95
    );
    let progress: Vec<(u64, u64)> = std::iter::from_fn(|| cloud.poll_event())
        .filter_map(|e| match e {
            Event::SyncProgress {
                sent, remaining, ..
            } => Some((sent, remaining)),
            _ => None,
        })
        .collect();
    assert_eq!(progress.len(), 10, "{progress:?}");
    assert_eq!(progress.first(), Some(&(10, 85)));
    assert_eq!(progress.last(), Some(&(95, 0)));
    // The receiving side hears of the welcome and of each push as typed events: hosts show
    // them without reading the frames themselves.
    let events: Vec<Event> = std::iter::from_fn(|| local.poll_event()).collect();
    let welcomed = events.iter().find_map(|e| match e {
        Event::Welcomed { tier, vector, .. } => Some((*tier, vector.get(ReplicaId(1)))),
        _ => None,
    });
    assert_eq!(welcomed, Some((Tier::Cloud, 95)));
    let received: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::PushReceived {
                docs, remaining, ..
            } => Some((*docs, *remaining)),
            _ => None,
        })
        .collect();
    assert_eq!(received.len(), 10, "{received:?}");
    assert_eq!(received.first(), Some(&(10, 85)));
    assert_eq!(received.last(), Some(&(5, 0)));
    // Reconnect after a few edits: only the changes travel.
    local.close(UP);
    cloud.close(DOWN);
    for i in 0..3 {
        cloud
            .write(
                1,
                DocKey::new("c", format!("{i:03}")),
                WriteOp::Put(obj(json!({"v": 2}))),
            )
            .expect("w");
    }
    cloud.persist_all();
    local.connect_as(0, UP, None, "up");
    cloud.accept_as(0, DOWN);
    local.persist_all();
    let mut pushed = 0;
    for _ in 0..10 {
        for (_, f) in local.drain() {
            cloud.handle_frame(0, DOWN, f.expect("frame"));
        }
        cloud.persist_all();
        for (_, f) in cloud.drain() {
            if let Some(Frame::Push(p)) = &f {
                pushed += p.docs.len();
            }
            local.handle_frame(0, UP, f.expect("frame"));
        }
        local.persist_all();
    }
    assert_eq!(pushed, 3, "resume sends only what changed");
}

#[test]
fn a_stamp_far_in_the_future_is_refused_and_nothing_is_stored() {
    let mut far = engine(1, Tier::Local);
    far.write(
        10_000_000,
        DocKey::new("c", "a"),
        WriteOp::Put(obj(json!({"x": 1}))),
    )
    .expect("w");
    far.persist_all();
    let mut cloud = engine(2, Tier::Cloud);
    far.connect_as(0, UP, None, "up");
    cloud.accept_as(0, DOWN);
    let mut refused = false;
    for _ in 0..5 {
        for (_, f) in far.drain() {
            if let Some(f) = f {
                cloud.handle_frame(0, DOWN, f);
            }
        }
        cloud.persist_all();
        for (_, f) in cloud.drain() {
            match f {
                Some(Frame::Error {
                    code: ErrorCode::ClockSkew,
                    ..
                }) => refused = true,
                Some(f) => far.handle_frame(0, UP, f),
                None => {}
            }
        }
    }
    assert!(refused);
    assert_eq!(
        cloud.replica().get(&DocKey::new("c", "a")).expect("read"),
        None
    );
    // Nothing of the refused push is stored: the one batch is the peer's entry in the
    // horizon table (made at `hello`), which seeds the space's default policy.
    assert_eq!(
        cloud.replica().collections().expect("read"),
        vec!["_config".to_owned()]
    );
    assert_eq!(cloud.replica().doc_count().expect("read"), 1);
}

#[test]
fn presence_is_seen_from_both_sides() {
    let mut local = engine(1, Tier::Local);
    let mut cloud = engine(2, Tier::Cloud);
    agent(&mut local, 5, None);
    agent(&mut cloud, 6, None);
    link(&mut local, &mut cloud);
    for e in [&local, &cloud] {
        let names: Vec<(String, Tier)> =
            e.presence().into_iter().map(|p| (p.name, p.tier)).collect();
        assert!(
            names.contains(&("tester".to_string(), Tier::Local)),
            "{names:?}"
        );
        assert!(
            names.contains(&("tester".to_string(), Tier::Cloud)),
            "{names:?}"
        );
    }
}

#[test]
fn documents_too_large_to_travel_are_refused() {
    let mut e = engine(1, Tier::Local);
    agent(&mut e, 1, None);
    let big = "x".repeat(200 * 1024);
    e.handle_frame(
        0,
        1,
        Frame::Put {
            req: Some(1),
            collection: "c".into(),
            id: "a".into(),
            value: json!({"a": big}),
        },
    );
    e.persist_all();
    assert!(matches!(e.drain()[0].1, Some(Frame::Ack(_))));
    // Growing it past the limit by a patch is refused, and the stored document is intact.
    e.handle_frame(
        0,
        1,
        Frame::Patch {
            req: Some(2),
            collection: "c".into(),
            id: "a".into(),
            value: json!({"b": big}),
        },
    );
    let out = e.drain();
    assert_eq!(error_code(&out), Some(ErrorCode::TooLarge));
    assert!(!closed(&out));
    let doc = e
        .replica()
        .get(&DocKey::new("c", "a"))
        .expect("read")
        .expect("still there");
    assert!(doc.get("b").is_none());
    // Control characters count as their JSON escapes.
    let controls = "\u{1}".repeat(50 * 1024);
    let err = e
        .write(
            0,
            DocKey::new("c", "b"),
            WriteOp::Put(obj(json!({"c": controls}))),
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooLarge);
}

#[test]
fn pushes_stay_under_the_frame_limit_with_large_documents() {
    let mut cloud = engine(1, Tier::Cloud);
    let big = "y\u{2}\"".repeat(25 * 1024); // escapes make the JSON form ~2.7x the bytes
    for i in 0..8 {
        cloud
            .write(
                0,
                DocKey::new("c", format!("d{i}")),
                WriteOp::Put(obj(json!({"b": big}))),
            )
            .expect("w");
    }
    cloud.persist_all();
    let mut local = engine(2, Tier::Local);
    local.connect_as(0, UP, None, "up");
    cloud.accept_as(0, DOWN);
    let mut pushes = 0;
    for _ in 0..50 {
        for (_, f) in local.drain() {
            cloud.handle_frame(0, DOWN, f.expect("frame"));
        }
        cloud.persist_all();
        for (_, f) in cloud.drain() {
            let f = f.expect("frame");
            if let Frame::Push(p) = &f {
                pushes += 1;
                let json = bridge_core::codec::encode_json(&f).len();
                let bin = bridge_core::codec::encode_binary(&f).len();
                assert!(
                    json <= bridge_core::frame::MAX_FRAME_BYTES,
                    "{json} bytes, {} docs",
                    p.docs.len()
                );
                assert!(bin <= bridge_core::frame::MAX_FRAME_BYTES);
            }
            local.handle_frame(0, UP, f);
        }
        local.persist_all();
    }
    assert!(pushes >= 2, "the documents needed several pushes");
    assert_eq!(local.replica().list("c", None, 100).expect("read").len(), 8);
}

#[test]
fn lag_and_pending_reach_zero_both_ways() {
    let mut local = engine(1, Tier::Local);
    let mut cloud = engine(2, Tier::Cloud);
    local
        .write(
            0,
            DocKey::new("c", "l"),
            WriteOp::Put(obj(json!({"from": "local"}))),
        )
        .expect("w");
    cloud
        .write(
            0,
            DocKey::new("c", "c"),
            WriteOp::Put(obj(json!({"from": "cloud"}))),
        )
        .expect("w");
    link(&mut local, &mut cloud);
    let up = local.peer_status(UP).expect("link");
    let down = cloud.peer_status(DOWN).expect("link");
    assert_eq!((up.pending, up.lag), (0, 0), "{up:?}");
    assert_eq!((down.pending, down.lag), (0, 0), "{down:?}");
    // A write not yet synced shows as pending and lag.
    local.close(UP);
    cloud.close(DOWN);
    local
        .write(0, DocKey::new("c", "l2"), WriteOp::Put(obj(json!({}))))
        .expect("w");
    local.persist_all();
    local.connect_as(0, UP_AGAIN, None, "up");
    cloud.accept_as(0, DOWN_AGAIN);
    // Only the handshake: the cloud's welcome says what it holds durably.
    for (_, f) in local.drain() {
        cloud.handle_frame(0, DOWN_AGAIN, f.expect("hello"));
    }
    for (_, f) in cloud.drain() {
        if let Some(f @ Frame::Welcome(_)) = f {
            local.handle_frame(0, UP_AGAIN, f);
        }
    }
    let st = local.peer_status(UP_AGAIN).expect("link");
    assert_eq!((st.pending, st.lag), (1, 1), "{st:?}");
}

/// The engine's timers on the harness's virtual clock: nothing happens before a deadline, and
/// at it the engine closes a handshake that did not finish, pings a quiet link it dialed, and
/// closes a link silent for three heartbeats. Time moves only when the test says so.
#[test]
fn timers_fire_at_their_deadlines_on_the_virtual_clock() {
    // A socket that never says hello.
    let mut alone = Net::new(vec![engine(2, Tier::Cloud)]);
    let hello = alone.nodes[0].config().hello_timeout_ms;
    alone.nodes[0].accept(alone.now_ms);
    assert_eq!(alone.advance(hello - 1), [], "not before the hello timeout");
    assert_eq!(alone.advance(1), [ErrorCode::Timeout], "at it");

    // A linked pair: a quiet link gets one ping and pong per heartbeat, and stays up.
    let mut net = Net::new(vec![engine(1, Tier::Local), engine(2, Tier::Cloud)]);
    let link = net.link(0, 1, None, Wire::Binary);
    assert_eq!(net.pump(), []);
    let hb = net.nodes[0].config().heartbeat_ms;
    let frames = net.frames;
    assert_eq!(net.advance(hb - 1), []);
    assert_eq!(net.frames, frames, "nothing is due before a heartbeat");
    assert_eq!(net.advance(1), []);
    assert_eq!(net.frames, frames + 2, "a ping and its pong");
    assert_eq!(net.advance(10 * hb), [], "pinged and answered all along");
    assert!(net.links[link].is_open());

    // The link freezes: frames are lost. Three heartbeats after it last heard anything, and
    // not before, an end gives up and closes the connection (the other end sees it drop).
    net.frozen.push(link);
    assert_eq!(net.advance(3 * hb - 1), []);
    assert!(net.links[link].is_open());
    assert_eq!(net.advance(1), [ErrorCode::Timeout]);
    assert!(!net.links[link].is_open());
}

/// Three nodes for the horizon tests, not linked yet: the root (node 0, cloud), and two
/// local replicas (nodes 1 and 2).
fn tree() -> Net {
    let mut root_cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    root_cfg.root = true;
    Net::new(vec![
        Node::new(root_cfg),
        engine(2, Tier::Local),
        engine(3, Tier::Local),
    ])
}

/// The stable horizon over a tree root ← hybrid ← client: it rises to cover what every
/// replica holds (two rounds of reports after the last write), travels down, is adopted
/// only as far as a replica holds it, and stops for a replica that went away.
#[test]
fn the_stable_horizon_covers_what_every_replica_holds_and_waits_for_the_absent() {
    let mut net = tree();
    let key = |id: &str| DocKey::new("c", id);
    let put = |n: &mut Node, id: &str| {
        n.write(0, key(id), WriteOp::Put(obj(json!({"v": id}))))
            .expect("write")
    };
    let horizon = |n: &Node| n.replica().stability().horizon.clone();
    let d1 = put(&mut net.nodes[0], "a");
    let d2 = put(&mut net.nodes[1], "b");
    let d3 = put(&mut net.nodes[2], "c");
    let up = net.link(1, 0, None, Wire::Binary);
    let leaf = net.link(2, 1, None, Wire::Json);
    // A few quiet rounds: reports go up, the candidate is confirmed, the horizon comes down.
    for t in 1..=3 {
        let closes = net.at(t * 1000).pump();
        assert!(closes.is_empty(), "{closes:?}");
        let w = put(&mut net.nodes[0], &format!("tick{t}"));
        assert!(
            !horizon(&net.nodes[0]).contains(w),
            "a write just made is not stable"
        );
        net.pump();
    }
    for (n, node) in net.nodes.iter().enumerate() {
        let h = horizon(node);
        for d in [d1, d2, d3] {
            assert!(h.contains(d), "node {n}: {d:?} is below the horizon {h:?}");
        }
        assert!(node.replica().vector().dominates(&h), "node {n}");
        assert_eq!(
            node.replica().stability().peers.len(),
            [1, 1, 0][n],
            "node {n} tracks the peers that dialed it"
        );
    }
    // The client goes away; what is written after that is never stable while it is gone.
    net.unlink(leaf);
    let later = put(&mut net.nodes[0], "later");
    for t in 10..20 {
        net.at(t * 1000).pump();
        put(&mut net.nodes[1], &format!("more{t}"));
        net.pump();
    }
    assert!(!horizon(&net.nodes[0]).contains(later));
    assert!(!horizon(&net.nodes[1]).contains(later));
    // Back: it reports, catches up, and the horizon moves past `later`.
    assert!(net.links[up].is_open());
    net.link(2, 1, None, Wire::Json);
    for t in 20..24 {
        net.at(t * 1000).pump();
        put(&mut net.nodes[0], &format!("tock{t}"));
        net.pump();
    }
    for (n, node) in net.nodes.iter().enumerate() {
        assert!(horizon(node).contains(later), "node {n}");
    }
}

/// A replica's own write is the last one: its report (floor counting the write) overtakes
/// the push that carries the write, so the server caps the floor below it at first; once
/// the push is acknowledged the report is applied again, and the horizon covers the write.
#[test]
fn the_horizon_covers_a_last_write_made_below_the_root() {
    let mut net = tree();
    net.link(1, 0, None, Wire::Binary);
    net.link(2, 1, None, Wire::Json);
    net.pump();
    for (writer, id) in [(2, "from-client"), (1, "from-hybrid")] {
        let d = net.nodes[writer]
            .write(0, DocKey::new("c", id), WriteOp::Put(obj(json!({"v": 1}))))
            .expect("write");
        // Quiet: nobody writes after it.
        for _ in 0..5 {
            net.pump();
        }
        for (n, node) in net.nodes.iter().enumerate() {
            let h = &node.replica().stability().horizon;
            assert!(
                h.contains(d),
                "node {n}: {d:?} (by node {writer}) below {h:?}"
            );
        }
    }
}

/// Collection over a tree root ← hybrid ← client, every replica collecting: a document
/// deleted below the horizon leaves every replica, a write that recreates it reaches every
/// replica as a new document, a new replica syncs, and a replica that holds an old copy of
/// the deleted document but not what the horizon covers is resynced (a delta could never tell
/// it of the collected deletion) and drops it.
#[test]
fn deletions_below_the_horizon_are_collected_everywhere_and_stay_deleted() {
    let cfg = |id: u64, tier: Tier, root: bool| {
        let mut c = EngineConfig::new(ReplicaId(id), tier, SPACE);
        c.root = root;
        c.collect = true;
        Node::new(c)
    };
    let mut net = Net::new(vec![
        cfg(1, Tier::Cloud, true),
        cfg(2, Tier::Local, false),
        cfg(3, Tier::Local, false),
        cfg(4, Tier::Local, false),
        cfg(5, Tier::Local, false),
    ]);
    let key = |id: &str| DocKey::new("c", id);
    let put = |n: &mut Node, id: &str, v: i64| {
        n.write(0, key(id), WriteOp::Put(obj(json!({"v": v}))))
            .expect("write")
    };
    net.link(1, 0, None, Wire::Binary);
    net.link(2, 1, None, Wire::Json);
    let early = put(&mut net.nodes[2], "gone", 1);
    put(&mut net.nodes[2], "kept", 1);
    net.pump();
    // Node 4 is a copy of node 2's store made now, before the deletion.
    let mut old = bridge_core::VersionVector::new();
    old.add_dot(early);
    let copy = net.nodes[2]
        .replica()
        .state(&key("gone"))
        .expect("read")
        .map(|s| bridge_core::DocState::clone(&s))
        .expect("state");
    net.nodes[4].replica_mut().restore_doc(key("gone"), copy);
    net.nodes[4]
        .replica_mut()
        .restore_meta(old, Default::default(), Default::default());
    let delete = net.nodes[2]
        .write(0, key("gone"), WriteOp::Delete)
        .expect("delete");
    for t in 1..=4 {
        net.at(t * 1000).pump();
        put(&mut net.nodes[0], &format!("tick{t}"), t as i64);
        net.pump();
    }
    for (n, node) in net.nodes.iter().enumerate().take(3) {
        let r = node.replica();
        assert!(r.stability().horizon.contains(delete), "node {n}");
        assert_eq!(
            r.collected_total(),
            1,
            "node {n} collected the deleted document"
        );
        assert!(r.state(&key("gone")).expect("read").is_none(), "node {n}");
        assert_eq!(r.get(&key("kept")).expect("read"), Some(json!({"v": 1})));
    }
    // Written again by the hybrid: a new document everywhere, nothing of the old one.
    put(&mut net.nodes[1], "gone", 2);
    for _ in 0..3 {
        net.pump();
    }
    for (n, node) in net.nodes.iter().enumerate().take(3) {
        let r = node.replica();
        assert_eq!(
            r.get(&key("gone")).expect("read"),
            Some(json!({"v": 2})),
            "node {n}"
        );
        let st = r.state(&key("gone")).expect("read").expect("state");
        assert_eq!(st.siblings.len(), 1, "node {n}: {st:?}");
    }
    // A new replica (only its own writes) joins and gets the space as it is.
    put(&mut net.nodes[3], "new", 3);
    let fresh = net.link(3, 0, None, Wire::Json);
    let closes = net.pump();
    assert!(closes.is_empty(), "{closes:?}");
    assert!(net.links[fresh].is_open());
    assert_eq!(
        net.nodes[3].replica().get(&key("gone")).expect("read"),
        Some(json!({"v": 2}))
    );
    assert_eq!(
        net.nodes[0].replica().get(&key("new")).expect("read"),
        Some(json!({"v": 3}))
    );
    // A copy of node 2's store from before the deletion: resynced, the old copy goes,
    // and it gets the space as it is.
    let behind = net.link(4, 0, None, Wire::Json);
    let closes = net.pump();
    assert!(closes.is_empty(), "{closes:?}");
    assert!(net.links[behind].is_open());
    assert_eq!(
        net.nodes[4].replica().get(&key("gone")).expect("read"),
        Some(json!({"v": 2})),
        "the old copy is gone, the new write is there"
    );
    let st = net.nodes[4]
        .replica()
        .state(&key("gone"))
        .expect("read")
        .expect("state");
    assert_eq!(st.siblings.len(), 1, "{st:?}");
    assert_eq!(
        net.nodes[4].replica().get(&key("kept")).expect("read"),
        Some(json!({"v": 1}))
    );
}

/// Expiry: a client that went away holds the horizon back until the root's expiry has run
/// out; then the horizon moves past what it never saw, the deletion made meanwhile is
/// collected, and the client, back with a store that missed it, is resynced and drops the
/// document. Without an expiry it would be waited for forever.
#[test]
fn a_replica_gone_past_the_expiry_no_longer_holds_the_horizon() {
    let mut root_cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    root_cfg.root = true;
    root_cfg.collect = true;
    root_cfg.heartbeat_ms = 0;
    root_cfg.expiry_ms = Some(60_000);
    let mut net = Net::new(vec![
        Node::new(root_cfg),
        engine(2, Tier::Local),
        engine(3, Tier::Local),
    ]);
    let key = DocKey::new("c", "x");
    net.nodes[0]
        .write(0, key.clone(), WriteOp::Put(obj(json!({"v": 1}))))
        .expect("write");
    net.at(1_000);
    let stays = net.link(1, 0, None, Wire::Json);
    let leaves = net.link(2, 0, None, Wire::Json);
    net.pump();
    net.unlink(leaves);
    let delete = net.nodes[0]
        .write(0, key.clone(), WriteOp::Delete)
        .expect("delete");
    let horizon = |n: &Node| n.replica().stability().horizon.clone();
    // Short of the expiry, the gone client holds the deletion back.
    assert!(net.advance(59_000).is_empty());
    assert!(!horizon(&net.nodes[0]).contains(delete));
    assert_eq!(net.nodes[0].replica().stability().peers.len(), 2);
    // Past it, the client is dropped from the table; the deletion becomes stable and is
    // collected (a write or two later, once the candidate is confirmed).
    assert!(net.advance(2_000).is_empty());
    assert_eq!(net.nodes[0].replica().stability().peers.len(), 1);
    for t in 0..3 {
        net.nodes[1]
            .write(
                0,
                DocKey::new("c", format!("t{t}")),
                WriteOp::Put(obj(json!({}))),
            )
            .expect("write");
        net.pump();
    }
    assert!(horizon(&net.nodes[0]).contains(delete));
    assert_eq!(net.nodes[0].replica().collected_total(), 1);
    assert!(net.links[stays].is_open());
    // The client comes back holding the document the deletion removed: resynced, it drops
    // it, and it gets what was written meanwhile.
    assert!(net.nodes[2].replica().get(&key).expect("read").is_some());
    let back = net.link(2, 0, None, Wire::Json);
    assert!(net.pump().is_empty());
    assert!(net.links[back].is_open());
    assert_eq!(net.nodes[2].replica().get(&key).expect("read"), None);
    assert!(net.nodes[2]
        .replica()
        .get(&DocKey::new("c", "t2"))
        .expect("read")
        .is_some());
}

/// A replica that moves to a server whose horizon lags its own: it learned (at the root) that
/// a deletion was collected, the server it moves to still holds the deletion, and the
/// replica writes the document again. The server reads the push against the horizon the
/// replica sent in its `hello`, so the old deletion goes there too, instead of staying beside
/// the new write on that server only.
#[test]
fn a_push_is_read_against_the_horizon_its_sender_brings() {
    let node = |id: u64, tier: Tier, root: bool, collect: bool| {
        let mut c = EngineConfig::new(ReplicaId(id), tier, SPACE);
        c.root = root;
        c.collect = collect;
        Node::new(c)
    };
    let mut net = Net::new(vec![
        node(1, Tier::Cloud, true, true),
        node(2, Tier::Local, false, false),
        node(3, Tier::Local, false, true),
    ]);
    let key = DocKey::new("c", "x");
    net.nodes[0]
        .write(0, key.clone(), WriteOp::Put(obj(json!({"v": 1}))))
        .expect("write");
    let hybrid = net.link(1, 0, None, Wire::Json);
    net.pump();
    let delete = net.nodes[0]
        .write(0, key.clone(), WriteOp::Delete)
        .expect("delete");
    // Round by round until the root's horizon covers the deletion; the hybrid host never
    // hears it (its link goes dead at that moment).
    for _ in 0..100 {
        let _ = net.settle(1);
        if net.nodes[0].replica().stability().horizon.contains(delete) {
            break;
        }
    }
    assert!(net.nodes[0].replica().stability().horizon.contains(delete));
    net.frozen.push(hybrid);
    let _ = net.settle(3);
    net.unlink(hybrid);
    assert!(!net.nodes[1].replica().stability().horizon.contains(delete));
    assert!(net.nodes[1].replica().state(&key).expect("read").is_some());
    // A new replica syncs with the root: the document was collected there, so it never
    // gets it, and it adopts the horizon.
    let up = net.link(2, 0, None, Wire::Json);
    for _ in 0..3 {
        net.pump();
    }
    assert_eq!(net.nodes[0].replica().collected_total(), 1);
    assert!(net.nodes[2].replica().stability().horizon.contains(delete));
    assert!(net.nodes[2].replica().state(&key).expect("read").is_none());
    // It moves to the hybrid host and writes the document again.
    net.unlink(up);
    net.link(2, 1, None, Wire::Json);
    net.nodes[2]
        .write(0, key.clone(), WriteOp::Put(obj(json!({"v": 2}))))
        .expect("write");
    net.pump();
    for n in [1, 2] {
        let st = net.nodes[n]
            .replica()
            .state(&key)
            .expect("read")
            .expect("state");
        assert_eq!(st.siblings.len(), 1, "node {n}: {st:?}");
        assert_eq!(
            net.nodes[n].replica().get(&key).expect("read"),
            Some(json!({"v": 2}))
        );
    }
}

/// A replica that replicates some collections (`EngineConfig::collections`) gets only their
/// documents, and `_config`'s policy of those; its vector rises past the others all the
/// same. A write of its to a collection it does not hold goes up, and is concurrent there
/// with what it never saw: the server does not read it against that vector (it would drop
/// the root's own write as superseded). It serves replicas of part of its part only, and
/// syncs with the server it began with only.
#[test]
fn a_partial_replica_holds_its_collections_and_its_blind_writes_lose_nothing() {
    let mut root_cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    root_cfg.root = true;
    let mut part_cfg = EngineConfig::new(ReplicaId(2), Tier::Local, SPACE);
    part_cfg.collections = Some(vec!["notes".into()]);
    let mut net = Net::new(vec![Node::new(root_cfg), Node::new(part_cfg)]);
    let todo = DocKey::new("todo", "x");
    let note = DocKey::new("notes", "n");
    net.nodes[0]
        .set_policy(0, "notes", Policy::Merge)
        .expect("policy");
    net.nodes[0]
        .set_policy(0, "todo", Policy::Manual)
        .expect("policy");
    let root_write = net.nodes[0]
        .write(0, todo.clone(), WriteOp::Put(obj(json!({"by": "root"}))))
        .expect("write");
    net.nodes[0]
        .write(0, note.clone(), WriteOp::Put(obj(json!({"t": 1}))))
        .expect("write");
    net.link(1, 0, None, Wire::Binary);
    net.pump();
    // Its vector and the horizon (which waits for it) pass the write it does not hold.
    assert!(net.nodes[1].replica().vector().contains(root_write));
    assert!(net.nodes[0]
        .replica()
        .stability()
        .horizon
        .contains(root_write));
    assert!(net.nodes[1]
        .replica()
        .stability()
        .horizon
        .contains(root_write));
    let part = net.nodes[1].replica();
    assert_eq!(part.get(&note).expect("read"), Some(json!({"t": 1})));
    assert_eq!(part.get(&todo).expect("read"), None);
    assert_eq!(part.policy("notes"), Policy::Merge);
    let policy_of = |c: &str| DocKey::new("_config", format!("collection:{c}"));
    assert!(part.state(&policy_of("notes")).expect("read").is_some());
    assert!(part.state(&policy_of("todo")).expect("read").is_none());
    // It writes `todo/x` without holding it: the root keeps both versions.
    net.nodes[1]
        .write(0, todo.clone(), WriteOp::Put(obj(json!({"by": "part"}))))
        .expect("write");
    net.pump();
    let st = net.nodes[0]
        .replica()
        .state(&todo)
        .expect("read")
        .expect("state");
    assert_eq!(st.siblings.len(), 2, "{st:?}");
    assert_eq!(
        net.nodes[0].replica().conflicts(None).expect("read").len(),
        1
    );
    // And the root's version never comes down to it.
    let mine = net.nodes[1]
        .replica()
        .state(&todo)
        .expect("read")
        .expect("state");
    assert!(
        mine.siblings.iter().all(|s| s.dot.replica == ReplicaId(2)),
        "{mine:?}"
    );
    // A replica with a subscription serves replicas of part of its part, and no other.
    net.nodes.push(engine(3, Tier::Local));
    net.link(2, 1, None, Wire::Json);
    let closes = net.pump();
    assert!(closes.contains(&ErrorCode::Protocol), "{closes:?}");
    assert!(net.nodes[2].replica().get(&note).expect("read").is_none());
    let mut sub_cfg = EngineConfig::new(ReplicaId(4), Tier::Local, SPACE);
    sub_cfg.collections = Some(vec!["notes".into()]);
    net.nodes.push(Node::new(sub_cfg));
    net.link(3, 1, None, Wire::Binary);
    assert!(net.pump().is_empty());
    assert_eq!(
        net.nodes[3].replica().get(&note).expect("read"),
        Some(json!({"t": 1}))
    );
    assert_eq!(net.nodes[3].replica().get(&todo).expect("read"), None);
    // It syncs with the server it began with only: its vector passes writes of `todo`
    // that only that server holds, and another server would take them as sent.
    assert_eq!(
        net.nodes[1].replica().stability().upstream,
        Some(ReplicaId(1))
    );
    net.nodes.push(engine(5, Tier::Cloud));
    net.link(1, 4, None, Wire::Json);
    let closes = net.pump();
    assert!(closes.contains(&ErrorCode::Protocol), "{closes:?}");
    assert!(!net.nodes[4].replica().vector().contains(root_write));
}

/// A new partial replica gets its collections **by key**: pages of their documents with an
/// empty watermark, then a last page that claims the server's vector (docs/protocol.md,
/// section 5, "Partial replication"); nothing of other collections travels, and deltas go
/// on from the claim. A walk cut short leaves documents beyond an empty vector: the next
/// `hello` says so (`unclaimed`), and a server that collected meanwhile resyncs the replica
/// first, so a document deleted and collected since is dropped there, not kept for good.
#[test]
fn a_new_partial_replica_is_filled_by_key_and_a_walk_cut_short_is_resynced() {
    let mut root_cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    root_cfg.root = true;
    root_cfg.collect = true;
    root_cfg.heartbeat_ms = 0;
    root_cfg.expiry_ms = Some(60_000);
    root_cfg.batch_docs = 2;
    root_cfg.window = 1;
    // A browser's store: it seeds nothing, so its vector stays empty until the claim (a
    // host's seed would be below the horizon, which resyncs it without `unclaimed`).
    let mut part_cfg = EngineConfig::new(ReplicaId(3), Tier::Local, SPACE);
    part_cfg.collections = Some(vec!["notes".into()]);
    part_cfg.seed_default_policy = false;
    let mut net = Net::new(vec![
        Node::new(root_cfg),
        engine(2, Tier::Local),
        Node::new(part_cfg),
    ]);
    let note = |i: usize| DocKey::new("notes", format!("n{i}"));
    for i in 0..6 {
        net.nodes[0]
            .write(0, note(i), WriteOp::Put(obj(json!({"i": i}))))
            .expect("write");
        net.nodes[0]
            .write(
                0,
                DocKey::new("todo", format!("t{i}")),
                WriteOp::Put(obj(json!({"i": i}))),
            )
            .expect("write");
    }
    net.at(1_000);
    let stays = net.link(1, 0, None, Wire::Json);
    net.pump();
    // The partial replica: one round at a time (a window of one push), cut after its first
    // page of notes.
    let part = net.link(2, 0, None, Wire::Binary);
    let held = |n: &Node| {
        (0..6)
            .filter(|&i| n.replica().state(&note(i)).is_ok_and(|s| s.is_some()))
            .count()
    };
    for _ in 0..50 {
        if held(&net.nodes[2]) > 0 {
            break;
        }
        let _ = net.settle(1);
    }
    assert!(
        (1..6).contains(&held(&net.nodes[2])),
        "{} notes",
        held(&net.nodes[2])
    );
    assert!(net.nodes[2].replica().vector().is_empty());
    net.unlink(part);
    // Meanwhile, n0 (which it holds) is deleted, and collected once the replica is past the
    // expiry.
    assert!(net.nodes[2]
        .replica()
        .get(&note(0))
        .expect("read")
        .is_some());
    let delete = net.nodes[0]
        .write(0, note(0), WriteOp::Delete)
        .expect("delete");
    assert!(net.advance(61_000).is_empty());
    for t in 0..3 {
        net.nodes[1]
            .write(
                0,
                DocKey::new("c", format!("w{t}")),
                WriteOp::Put(obj(json!({}))),
            )
            .expect("write");
        net.pump();
    }
    assert!(net.nodes[0].replica().stability().horizon.contains(delete));
    assert_eq!(net.nodes[0].replica().collected_total(), 1);
    assert!(net.links[stays].is_open());
    // Back: resynced (n0 dropped), then walked to the end, then claimed.
    let frames = net.frames;
    let back = net.link(2, 0, None, Wire::Binary);
    assert!(net.pump().is_empty());
    assert!(net.links[back].is_open());
    let p = net.nodes[2].replica();
    assert_eq!(p.get(&note(0)).expect("read"), None);
    for i in 1..6 {
        assert_eq!(
            p.get(&note(i)).expect("read"),
            Some(json!({"i": i})),
            "n{i}"
        );
    }
    for i in 0..6 {
        let todo = DocKey::new("todo", format!("t{i}"));
        assert!(p.state(&todo).expect("read").is_none());
    }
    assert_eq!(p.vector(), net.nodes[0].replica().vector());
    // Five notes in pages of two, the rest of `_config`, a resync: a few dozen frames, not
    // one per write of the space.
    assert!(net.frames - frames < 40, "{} frames", net.frames - frames);
    // Deltas go on from the claim: a new note comes, a new todo does not.
    net.nodes[0]
        .write(net.now_ms, note(9), WriteOp::Put(obj(json!({"i": 9}))))
        .expect("write");
    net.nodes[0]
        .write(
            net.now_ms,
            DocKey::new("todo", "t9"),
            WriteOp::Put(obj(json!({}))),
        )
        .expect("write");
    assert!(net.pump().is_empty());
    let p = net.nodes[2].replica();
    assert_eq!(p.get(&note(9)).expect("read"), Some(json!({"i": 9})));
    assert!(p.state(&DocKey::new("todo", "t9")).expect("read").is_none());
    assert_eq!(p.vector(), net.nodes[0].replica().vector());
}

/// A partial replica widens and narrows what it holds while connected (`Engine::replicate`):
/// widening forgets its blind write there (the server holds it) and gets the added
/// collection whole, by key; narrowing forgets the dropped collection's documents; deltas
/// follow the new collections; the stored collections change with each step.
#[test]
fn a_partial_replica_widens_and_narrows_what_it_holds() {
    let mut root_cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    root_cfg.root = true;
    root_cfg.batch_docs = 2;
    root_cfg.collect = true;
    root_cfg.heartbeat_ms = 0;
    let mut part_cfg = EngineConfig::new(ReplicaId(3), Tier::Local, SPACE);
    part_cfg.collections = Some(vec!["a".into()]);
    let mut net = Net::new(vec![Node::new(root_cfg), Node::new(part_cfg)]);
    let key = |c: &str, i: usize| DocKey::new(c, format!("d{i}"));
    for c in ["a", "b", "c"] {
        for i in 0..5 {
            net.nodes[0]
                .write(0, key(c, i), WriteOp::Put(obj(json!({"c": c, "i": i}))))
                .expect("write");
        }
    }
    net.link(1, 0, None, Wire::Binary);
    assert!(net.pump().is_empty());
    let holds = |n: &Node, c: &str| {
        (0..5)
            .filter(|&i| n.replica().state(&key(c, i)).is_ok_and(|s| s.is_some()))
            .count()
    };
    assert_eq!(holds(&net.nodes[1], "a"), 5);
    assert_eq!(holds(&net.nodes[1], "b"), 0);
    // A blind write to `b`, acknowledged.
    let blind = DocKey::new("b", "mine");
    net.nodes[1]
        .write(0, blind.clone(), WriteOp::Put(obj(json!({"by": "part"}))))
        .expect("write");
    assert!(net.pump().is_empty());
    // Another blind write, which the root deletes and collects: the replica never hears of
    // it (it does not hold `b`), and widening must not keep it.
    let gone = DocKey::new("b", "gone");
    net.nodes[1]
        .write(0, gone.clone(), WriteOp::Put(obj(json!({"by": "part"}))))
        .expect("write");
    assert!(net.pump().is_empty());
    net.nodes[0]
        .write(0, gone.clone(), WriteOp::Delete)
        .expect("delete");
    for t in 0..3 {
        net.nodes[0]
            .write(0, key("a", 10 + t), WriteOp::Put(obj(json!({}))))
            .expect("write");
        assert!(net.pump().is_empty());
    }
    assert_eq!(net.nodes[0].replica().collected_total(), 1);
    assert!(net.nodes[1].replica().get(&gone).expect("read").is_some());
    net.nodes[1].events();
    // Widen to `a` and `b`.
    net.nodes[1]
        .engine_mut()
        .replicate(vec!["b".into(), "a".into()])
        .expect("replicate");
    assert_eq!(
        net.nodes[1].engine_mut().replicating(),
        Some(&["a".to_string(), "b".to_string()][..])
    );
    assert!(net.pump().is_empty());
    let done = |n: &mut Node| {
        n.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Replicated { collections } => Some(collections),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        done(&mut net.nodes[1]),
        vec![vec!["a".to_string(), "b".to_string()]]
    );
    assert_eq!(net.nodes[1].engine_mut().replicating(), None);
    let p = &net.nodes[1];
    assert_eq!(holds(p, "a"), 5);
    assert_eq!(holds(p, "b"), 5);
    assert_eq!(holds(p, "c"), 0);
    assert_eq!(
        p.replica().get(&blind).expect("read"),
        Some(json!({"by": "part"}))
    );
    assert!(p.replica().state(&gone).expect("read").is_none());
    assert_eq!(
        p.config().collections.as_deref(),
        Some(&["a".to_string(), "b".to_string()][..])
    );
    assert_eq!(
        p.replica().stability().collections.as_deref(),
        Some(&["a".to_string(), "b".to_string()][..])
    );
    assert_eq!(p.replica().vector(), net.nodes[0].replica().vector());
    // Deltas follow: a write to `b` comes, one to `c` does not.
    net.nodes[0]
        .write(0, key("b", 9), WriteOp::Put(obj(json!({}))))
        .expect("write");
    net.nodes[0]
        .write(0, key("c", 9), WriteOp::Put(obj(json!({}))))
        .expect("write");
    assert!(net.pump().is_empty());
    let has = |n: &Node, k: &DocKey| n.replica().state(k).expect("read").is_some();
    assert!(has(&net.nodes[1], &key("b", 9)));
    assert!(!has(&net.nodes[1], &key("c", 9)));
    // Narrow to `b`: `a` is forgotten, and no longer follows.
    net.nodes[1]
        .engine_mut()
        .replicate(vec!["b".into()])
        .expect("replicate");
    assert!(net.pump().is_empty());
    assert_eq!(done(&mut net.nodes[1]), vec![vec!["b".to_string()]]);
    let p = &mut net.nodes[1];
    assert_eq!(holds(p, "a"), 0);
    assert_eq!(holds(p, "b"), 5);
    assert!(p.engine_mut().forgetting().is_empty());
    assert_eq!(
        p.replica().stability().collections.as_deref(),
        Some(&["b".to_string()][..])
    );
    net.nodes[0]
        .write(0, key("a", 7), WriteOp::Put(obj(json!({}))))
        .expect("write");
    assert!(net.pump().is_empty());
    assert!(!has(&net.nodes[1], &key("a", 7)));
    // Asking for what it holds already answers at once.
    net.nodes[1]
        .engine_mut()
        .replicate(vec!["b".into()])
        .expect("replicate");
    assert!(net.pump().is_empty());
    assert_eq!(done(&mut net.nodes[1]), vec![vec!["b".to_string()]]);
    // A whole replica takes no list.
    let mut whole = engine(5, Tier::Local);
    assert!(whole.engine_mut().replicate(vec!["a".into()]).is_err());
}

/// Once a partial replica's `replicate` adds a collection, a push of its that was cut before
/// the walk brought a document of it is a blind write: the server does not read it against
/// the replica's vector, which would drop the server's own sibling as seen (the replica's
/// vector passes it; its copy never held it).
#[test]
fn a_push_cut_before_the_walk_reached_it_is_read_as_blind() {
    let mut root_cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    root_cfg.root = true;
    root_cfg.heartbeat_ms = 0;
    let mut part_cfg = EngineConfig::new(ReplicaId(3), Tier::Local, SPACE);
    part_cfg.collections = Some(vec!["a".into()]);
    part_cfg.seed_default_policy = false;
    // The partial replica is node 0: in each round it sends before the root does.
    let mut net = Net::new(vec![
        Node::new(part_cfg),
        Node::new(root_cfg),
        engine(2, Tier::Local),
    ]);
    let x = DocKey::new("b", "x");
    net.nodes[2]
        .write(
            0,
            x.clone(),
            WriteOp::Put(obj(json!({"by": "r", "keep": 1}))),
        )
        .expect("write");
    let part = net.link(0, 1, None, Wire::Binary);
    net.link(2, 1, None, Wire::Binary);
    assert!(net.pump().is_empty());
    // The horizon rises past R's write.
    let s = net.nodes[1]
        .replica()
        .state(&x)
        .expect("read")
        .expect("state");
    let dot = s.siblings[0].dot;
    for t in 0..3 {
        net.nodes[2]
            .write(
                0,
                DocKey::new("c", format!("w{t}")),
                WriteOp::Put(obj(json!({}))),
            )
            .expect("write");
        assert!(net.pump().is_empty());
    }
    assert!(net.nodes[1].replica().stability().horizon.contains(dot));
    assert!(net.nodes[0].replica().state(&x).expect("read").is_none());
    // `replicate` reaches the root; then, before the walk's page of `b/x` reaches it, the
    // partial replica patches `b/x` (its copy: its own write only).
    net.nodes[0]
        .engine_mut()
        .replicate(vec!["a".into(), "b".into()])
        .expect("replicate");
    let root_session = net.links[part].acceptor_session;
    let takes_b = |n: &Node| {
        let snap = n.engine().session_snapshot(root_session).expect("session");
        serde_json::to_value(snap).expect("json")["peer"]["filter"]
            .as_array()
            .is_some_and(|f| f.iter().any(|p| p == "b"))
    };
    // Only the partial replica's frames move, by hand: the root's wait in its engine.
    let send_up = |net: &mut Net| {
        let now = net.now_ms;
        net.nodes[0].persist_all();
        while let Some(t) = net.nodes[0].poll_transmit() {
            if let bridge_core::Transmit::Frame { frame, .. } = t {
                let (frame, _) = Wire::Binary.carry(&frame).expect("carry");
                net.nodes[1].handle_frame(now, root_session, frame);
            }
        }
    };
    for _ in 0..5 {
        send_up(&mut net);
    }
    assert!(takes_b(&net.nodes[1]));
    assert!(net.nodes[0].replica().state(&x).expect("read").is_none());
    net.nodes[0]
        .write(0, x.clone(), WriteOp::Patch(obj(json!({"by": "part"}))))
        .expect("write");
    send_up(&mut net);
    assert!(net.pump().is_empty());
    // R's version is still there, beside the partial replica's, everywhere.
    for n in [0, 1, 2] {
        let st = net.nodes[n]
            .replica()
            .state(&x)
            .expect("read")
            .expect("state");
        assert!(
            st.siblings.iter().any(|s| s.dot == dot),
            "node {n} lost R's write: {st:?}"
        );
    }
}

/// A change the server refuses (here a partial server asked for a collection it does not
/// hold) is answered with `error`, then `replicated` with the list it goes on sending: the
/// replica holds that list again, forgets nothing of it, and says why.
#[test]
fn a_refused_change_keeps_what_the_replica_held() {
    let mut root_cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    root_cfg.root = true;
    let mut mid_cfg = EngineConfig::new(ReplicaId(2), Tier::Local, SPACE);
    mid_cfg.collections = Some(vec!["a".into(), "b".into()]);
    let mut part_cfg = EngineConfig::new(ReplicaId(3), Tier::Local, SPACE);
    part_cfg.collections = Some(vec!["a".into(), "b".into()]);
    part_cfg.seed_default_policy = false;
    let mut net = Net::new(vec![
        Node::new(root_cfg),
        Node::new(mid_cfg),
        Node::new(part_cfg),
    ]);
    for c in ["a", "b", "c"] {
        for i in 0..3 {
            net.nodes[0]
                .write(
                    0,
                    DocKey::new(c, format!("d{i}")),
                    WriteOp::Put(obj(json!({"i": i}))),
                )
                .expect("write");
        }
    }
    net.link(1, 0, None, Wire::Binary);
    net.link(2, 1, None, Wire::Json);
    assert!(net.pump().is_empty());
    let holds = |n: &Node, c: &str| {
        (0..3)
            .filter(|i| {
                n.replica()
                    .state(&DocKey::new(c, format!("d{i}")))
                    .is_ok_and(|s| s.is_some())
            })
            .count()
    };
    assert_eq!(
        (holds(&net.nodes[2], "a"), holds(&net.nodes[2], "b")),
        (3, 3)
    );
    net.nodes[2].events();
    net.nodes[2]
        .engine_mut()
        .replicate(vec!["a".into(), "c".into()])
        .expect("replicate");
    assert!(net.pump().is_empty());
    let events = net.nodes[2].events();
    let refused: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ReplicateRefused {
                collections, code, ..
            } => Some((collections.clone(), *code)),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        vec![(vec!["a".to_string(), "c".to_string()], ErrorCode::Protocol)]
    );
    let p = &mut net.nodes[2];
    assert_eq!(p.engine_mut().replicating(), None);
    assert_eq!(
        p.config().collections.as_deref(),
        Some(&["a".to_string(), "b".to_string()][..])
    );
    assert_eq!((holds(p, "a"), holds(p, "b"), holds(p, "c")), (3, 3, 0));
    // It still follows `b`.
    net.nodes[0]
        .write(0, DocKey::new("b", "new"), WriteOp::Put(obj(json!({}))))
        .expect("write");
    assert!(net.pump().is_empty());
    assert!(net.nodes[2]
        .replica()
        .state(&DocKey::new("b", "new"))
        .expect("read")
        .is_some());
}

/// A partial server that narrows serves only what both its lists share from the moment the
/// change is asked for: a replica it serves that holds more is told why and closed, and
/// refused if it comes back with that list; one within the new list goes on.
#[test]
fn a_partial_server_that_narrows_closes_replicas_holding_more() {
    let mut root_cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    root_cfg.root = true;
    let mut mid_cfg = EngineConfig::new(ReplicaId(2), Tier::Local, SPACE);
    mid_cfg.collections = Some(vec!["a".into(), "b".into()]);
    let sub = |id: u64, c: &str| {
        let mut cfg = EngineConfig::new(ReplicaId(id), Tier::Local, SPACE);
        cfg.collections = Some(vec![c.into()]);
        cfg.seed_default_policy = false;
        Node::new(cfg)
    };
    let mut net = Net::new(vec![
        Node::new(root_cfg),
        Node::new(mid_cfg),
        sub(3, "b"),
        sub(4, "a"),
    ]);
    net.nodes[0]
        .write(0, DocKey::new("a", "x"), WriteOp::Put(obj(json!({}))))
        .expect("write");
    net.link(1, 0, None, Wire::Binary);
    let on_b = net.link(2, 1, None, Wire::Json);
    let on_a = net.link(3, 1, None, Wire::Json);
    assert!(net.pump().is_empty());
    net.nodes[1]
        .engine_mut()
        .replicate(vec!["a".into()])
        .expect("replicate");
    let closes = net.pump();
    assert!(closes.contains(&ErrorCode::Protocol), "{closes:?}");
    assert!(!net.links[on_b].is_open());
    assert!(net.links[on_a].is_open());
    let back = net.link(2, 1, None, Wire::Json);
    let closes = net.pump();
    assert!(closes.contains(&ErrorCode::Protocol), "{closes:?}");
    assert!(!net.links[back].is_open());
    // The replica of `a` goes on.
    net.nodes[0]
        .write(0, DocKey::new("a", "y"), WriteOp::Put(obj(json!({}))))
        .expect("write");
    assert!(net.pump().is_empty());
    assert!(net.nodes[3]
        .replica()
        .state(&DocKey::new("a", "y"))
        .expect("read")
        .is_some());
}

/// `EngineConfig::doc_events`: the host hears of changes in the collections it asked for
/// only, and a session subscribed to another collection still gets its `change` frames.
#[test]
fn doc_events_reach_the_host_for_its_collections_only() {
    let mut cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, SPACE);
    cfg.doc_events = bridge_core::DocEvents::Collections(["a".to_string()].into());
    let mut e = Node::new(cfg);
    agent(&mut e, 1, None);
    e.handle_frame(
        0,
        1,
        Frame::Subscribe {
            req: Some(1),
            channel: None,
            collection: Some("b".into()),
            from: None,
        },
    );
    e.drain();
    e.events();
    for c in ["a", "b", "c"] {
        e.write(0, DocKey::new(c, "1"), WriteOp::Put(obj(json!({"x": 1}))))
            .expect("write");
    }
    e.persist_all();
    let changes: Vec<String> = e
        .drain()
        .into_iter()
        .filter_map(|(_, f)| match f {
            Some(Frame::Change { doc }) => Some(doc.collection),
            _ => None,
        })
        .collect();
    assert_eq!(changes, ["b"]);
    let events: Vec<String> = e
        .events()
        .into_iter()
        .filter_map(|ev| match ev {
            Event::DocChanged(view) => Some(view.collection),
            _ => None,
        })
        .collect();
    assert_eq!(events, ["a"]);
    // The default: every change is an event (the seeded default policy's too).
    let mut all = engine(2, Tier::Cloud);
    all.write(0, DocKey::new("c", "1"), WriteOp::Put(obj(json!({"x": 1}))))
        .expect("write");
    all.persist_all();
    all.drain();
    let events: Vec<String> = all
        .events()
        .into_iter()
        .filter_map(|ev| match ev {
            Event::DocChanged(view) => Some(view.collection),
            _ => None,
        })
        .collect();
    assert_eq!(events, ["_config", "c"]);
}

/// A replica sends compact pushes only to a server whose `welcome` says it reads them
/// (`compact`); to an older server's (no `compact`) it sends expanded ones.
#[test]
fn pushes_to_a_server_are_compact_only_when_its_welcome_says_so() {
    for compact in [None, Some(true)] {
        let mut c = engine(3, Tier::Local);
        c.write(
            0,
            DocKey::new("notes", "a"),
            WriteOp::Put(obj(json!({"x": 1}))),
        )
        .expect("write");
        c.persist_all();
        let s = c.connect(0, None, "server");
        c.drain();
        c.handle_frame(
            0,
            s,
            Frame::Welcome(bridge_core::frame::Welcome {
                space: SPACE.into(),
                replica: ReplicaId(9),
                tier: Tier::Cloud,
                vector: Default::default(),
                messages: Default::default(),
                session: 1,
                rights: None,
                resync: None,
                compact,
            }),
        );
        let pushes: Vec<bool> = c
            .flush()
            .into_iter()
            .filter_map(|(_, f)| match f {
                Some(Frame::Push(p)) if !p.docs.is_empty() => Some(p.expanded),
                _ => None,
            })
            .collect();
        assert_eq!(pushes, [compact.is_none()], "{compact:?}");
    }
}
