//! Property tests for both frame encodings: decode ∘ encode = id for arbitrary frames of every
//! type, and no input — random or a mangled real frame — makes a decoder panic.

use bridge_core::auth::Rights;
use bridge_core::codec::{
    check_round_trip, decode_binary, decode_json, decode_state, encode_binary, encode_json,
    encode_state, state_dots,
};
use bridge_core::frame::{
    Ack, Conflict, ConflictSide, DocEntry, DocView, Hello, Push, SessionKind, Welcome,
};
use bridge_core::message::PresenceEntry;
use bridge_core::policy::{Field, Fields};
use bridge_core::{
    DocState, Dot, ErrorCode, Frame, Message, MessageId, Policy, ReplicaId, Sibling, Stamp, Tier,
    VersionVector,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Number, Value};

fn replica() -> impl Strategy<Value = ReplicaId> {
    // Small ids collide (siblings from one replica); random ones exercise all 8 bytes.
    prop_oneof![
        (1u64..5).prop_map(ReplicaId),
        any::<u64>().prop_map(ReplicaId)
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_]{0,8}", "(?s).{0,12}"]
}

fn req() -> impl Strategy<Value = Option<u64>> {
    option::of(any::<u64>())
}

fn tier() -> impl Strategy<Value = Tier> {
    prop_oneof![Just(Tier::Local), Just(Tier::Cloud)]
}

fn stamp() -> impl Strategy<Value = Stamp> {
    (any::<u64>(), any::<u32>(), replica()).prop_map(|(w, c, r)| Stamp::new(w, c, r))
}

fn dot() -> impl Strategy<Value = Dot> {
    (replica(), 1u64..).prop_map(|(r, c)| Dot::new(r, c))
}

fn vector() -> impl Strategy<Value = VersionVector> {
    btree_map(replica(), 1u64.., 0..5).prop_map(|m| m.into_iter().collect())
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("JSON numbers are finite", Number::from_f64)
            .prop_map(Value::Number),
        (-1000i32..1000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
    ]
}

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(text(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object, as documents are.
fn object() -> impl Strategy<Value = Value> {
    btree_map(text(), json(), 0..5).prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// An optional value where the protocol reads `null` as absent (views, conflict sides,
/// resolutions), so `Some(null)` is not a distinct value there.
fn shown() -> impl Strategy<Value = Option<Value>> {
    option::of(object())
}

fn body() -> impl Strategy<Value = Fields> {
    // A field's value may be `null` (a `put` of `{"a": null}`) or absent (removed).
    let field = (stamp(), option::of(json())).prop_map(|(stamp, value)| Field { stamp, value });
    btree_map(text(), field, 0..4)
}

/// A doc state that keeps the invariants: siblings sorted by dot, each inside the context.
fn doc_state() -> impl Strategy<Value = DocState> {
    let sibling =
        (dot(), stamp(), tier(), option::of(body())).prop_map(|(dot, stamp, tier, body)| Sibling {
            dot,
            stamp,
            tier,
            body,
        });
    (vec(sibling, 0..4), vector()).prop_map(|(mut siblings, mut context)| {
        siblings.sort_by_key(|s| s.dot);
        siblings.dedup_by_key(|s| s.dot);
        for s in &siblings {
            context.add_dot(s.dot);
        }
        DocState { siblings, context }
    })
}

/// A doc state as a store keeps it: like [`doc_state`], with some siblings' fields stamped by
/// their own write (as a `put` leaves them), which the stored form writes in one byte.
fn stored_state() -> impl Strategy<Value = DocState> {
    (doc_state(), vec(any::<bool>(), 4)).prop_map(|(mut state, own)| {
        for (s, own) in state.siblings.iter_mut().zip(own) {
            let stamp = s.stamp;
            for f in s
                .body
                .iter_mut()
                .flat_map(|b| b.values_mut())
                .filter(|_| own)
            {
                f.stamp = stamp;
            }
        }
        state
    })
}

fn view() -> impl Strategy<Value = DocView> {
    (text(), text(), shown(), option::of(stamp()), any::<bool>()).prop_map(
        |(collection, id, value, stamp, conflict)| DocView {
            collection,
            id,
            value,
            stamp,
            conflict,
        },
    )
}

fn conflict() -> impl Strategy<Value = Conflict> {
    let side =
        (dot(), tier(), stamp(), shown()).prop_map(|(dot, tier, stamp, value)| ConflictSide {
            dot,
            tier,
            stamp,
            value,
        });
    (text(), text(), dot(), vec(side, 0..3), vec(text(), 0..3)).prop_map(
        |(collection, id, shown, sides, fields)| Conflict {
            collection,
            id,
            shown,
            sides,
            fields,
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    (replica(), any::<u64>(), text(), json(), stamp()).prop_map(
        |(origin, seq, channel, payload, stamp)| Message {
            id: MessageId { origin, seq },
            channel,
            payload,
            stamp,
        },
    )
}

fn presence() -> impl Strategy<Value = PresenceEntry> {
    let kind = prop_oneof![Just(SessionKind::Agent), Just(SessionKind::Peer)];
    (replica(), any::<u64>(), text(), kind, tier(), any::<u64>()).prop_map(
        |(node, session, name, kind, tier, since)| PresenceEntry {
            node,
            session,
            name,
            kind,
            tier,
            since,
        },
    )
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(vec![
        ErrorCode::Malformed,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownType,
        ErrorCode::ClockSkew,
        ErrorCode::BadPolicy,
        ErrorCode::BadRequest,
        ErrorCode::HelloRequired,
        ErrorCode::WrongSpace,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Protocol,
        ErrorCode::Internal,
    ])
}

fn hello() -> impl Strategy<Value = Frame> {
    let kind = prop_oneof![Just(SessionKind::Agent), Just(SessionKind::Peer)];
    (
        text(),
        kind,
        option::of(text()),
        option::of(text()),
        option::of(replica()),
        option::of(tier()),
        option::of(vector()),
        option::of(vector()),
        option::of(vector()),
        option::of(proptest::collection::vec(text(), 0..3)),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(
                space,
                kind,
                name,
                token,
                replica,
                tier,
                vector,
                messages,
                horizon,
                collections,
                unclaimed,
                compact,
            )| {
                Frame::Hello(Hello {
                    space,
                    kind,
                    name,
                    token,
                    replica,
                    tier,
                    vector,
                    messages,
                    horizon,
                    collections,
                    unclaimed,
                    compact,
                })
            },
        )
}

fn peer_frames() -> impl Strategy<Value = Frame> {
    let entry = (text(), text(), doc_state()).prop_map(|(collection, id, state)| DocEntry {
        collection,
        id,
        state,
    });
    prop_oneof![
        hello(),
        (
            (text(), replica(), tier(), vector(), vector(), any::<u64>()),
            option::of(prop_oneof![
                Just(Rights::Read),
                Just(Rights::Write),
                Just(Rights::Admin)
            ]),
            option::of(vector()),
            option::of(any::<bool>())
        )
            .prop_map(
                |((space, replica, tier, vector, messages, session), rights, resync, compact)| {
                    Frame::Welcome(Welcome {
                        space,
                        replica,
                        tier,
                        vector,
                        messages,
                        session,
                        rights,
                        resync,
                        compact,
                    })
                }
            ),
        (any::<u64>(), vec(entry, 0..3), vector(), any::<u64>()).prop_map(
            |(seq, docs, watermark, remaining)| Frame::Push(Push {
                seq,
                docs,
                watermark,
                remaining,
                expanded: false,
            })
        ),
        (req(), req(), option::of(dot())).prop_map(|(req, seq, dot)| Frame::Ack(Ack {
            req,
            seq,
            dot
        })),
        vector().prop_map(|vector| Frame::Pull { vector }),
        (message(), option::of(any::<u64>()))
            .prop_map(|(message, offset)| Frame::Broadcast { message, offset }),
        vec(presence(), 0..3).prop_map(|entries| Frame::Presence { entries }),
        any::<u64>().prop_map(|nonce| Frame::Ping { nonce }),
        any::<u64>().prop_map(|nonce| Frame::Pong { nonce }),
    ]
}

fn agent_frames() -> impl Strategy<Value = Frame> {
    let target = || (req(), text(), text());
    prop_oneof![
        (target(), object()).prop_map(|((req, collection, id), value)| Frame::Put {
            req,
            collection,
            id,
            value
        }),
        (target(), object()).prop_map(|((req, collection, id), value)| Frame::Patch {
            req,
            collection,
            id,
            value
        }),
        target().prop_map(|(req, collection, id)| Frame::Delete {
            req,
            collection,
            id
        }),
        target().prop_map(|(req, collection, id)| Frame::Get {
            req,
            collection,
            id
        }),
        (req(), view()).prop_map(|(req, doc)| Frame::Doc { req, doc }),
        (req(), text(), option::of(text()), option::of(any::<u32>())).prop_map(
            |(req, collection, after, limit)| Frame::List {
                req,
                collection,
                after,
                limit
            }
        ),
        (req(), vec(view(), 0..3), option::of(text())).prop_map(|(req, docs, next)| Frame::Docs {
            req,
            docs,
            next
        }),
        (
            req(),
            option::of(text()),
            option::of(text()),
            option::of(any::<u64>())
        )
            .prop_map(|(req, channel, collection, from)| Frame::Subscribe {
                req,
                channel,
                collection,
                from
            }),
        (req(), option::of(text()), option::of(text())).prop_map(|(req, channel, collection)| {
            Frame::Unsubscribe {
                req,
                channel,
                collection,
            }
        }),
        (req(), text(), json()).prop_map(|(req, channel, payload)| Frame::Send {
            req,
            channel,
            payload
        }),
        view().prop_map(|doc| Frame::Change { doc }),
        (req(), option::of(text()))
            .prop_map(|(req, collection)| Frame::Conflicts { req, collection }),
        (req(), vec(conflict(), 0..3))
            .prop_map(|(req, conflicts)| Frame::ConflictList { req, conflicts }),
        conflict().prop_map(|conflict| Frame::Conflict { conflict }),
        (target(), shown()).prop_map(|((req, collection, id), value)| Frame::Resolve {
            req,
            collection,
            id,
            value
        }),
        (
            req(),
            text(),
            proptest::sample::select(Policy::ALL.to_vec())
        )
            .prop_map(|(req, collection, policy)| Frame::SetPolicy {
                req,
                collection,
                policy
            }),
        (req(), error_code(), text()).prop_map(|(req, code, message)| Frame::Error {
            req,
            code,
            message
        }),
    ]
}

/// A frame of any of the 26 types.
fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![peer_frames(), agent_frames()]
}

/// Whatever a decoder accepts must survive its own round trip, and the other encoding's.
fn check_accepted(f: &Frame) {
    if let Err(why) = check_round_trip(f) {
        panic!("{why}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_round_trips(f in frame()) {
        let text = encode_json(&f);
        prop_assert_eq!(decode_json(text.as_bytes()), Ok(f), "{}", text);
    }

    #[test]
    fn binary_round_trips(f in frame()) {
        let bytes = encode_binary(&f);
        prop_assert_eq!(decode_binary(&bytes), Ok(f));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        for decoded in [decode_json(&bytes), decode_binary(&bytes)].into_iter().flatten() {
            check_accepted(&decoded);
        }
        // Behind a valid header, the bytes reach the field decoders of every frame type.
        for tag in 1..=33u8 {
            let mut framed = vec![1, tag];
            framed.extend_from_slice(&bytes);
            if let Ok(decoded) = decode_binary(&framed) {
                check_accepted(&decoded);
            }
        }
    }

    #[test]
    fn stored_states_round_trip(state in stored_state()) {
        let bytes = encode_state(&state);
        let dots: Vec<Dot> = state.siblings.iter().map(|s| s.dot).collect();
        prop_assert_eq!(state_dots(&bytes), Ok(dots));
        prop_assert_eq!(decode_state(&bytes), Ok(state));
    }

    #[test]
    fn mangled_stored_states_never_panic(
        state in stored_state(),
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        noise in vec(any::<u8>(), 0..128),
    ) {
        let mut bytes = encode_state(&state);
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(decode_state(truncated).is_err(), "a cut state must not decode");
        let _ = state_dots(truncated);
        for (at, byte) in &flips {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        for input in [&bytes, &noise] {
            // Whatever decodes is a valid state that round-trips.
            if let Ok(back) = decode_state(input) {
                prop_assert_eq!(decode_state(&encode_state(&back)), Ok(back));
            }
            let _ = state_dots(input);
        }
    }

    #[test]
    fn mangled_frames_never_panic(
        f in frame(),
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        for mut bytes in [encode_binary(&f), encode_json(&f).into_bytes()] {
            let truncated = &bytes[..cut.index(bytes.len() + 1)];
            for decoded in [decode_json(truncated), decode_binary(truncated)].into_iter().flatten() {
                check_accepted(&decoded);
            }
            for (at, byte) in &flips {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            for decoded in [decode_json(&bytes), decode_binary(&bytes)].into_iter().flatten() {
                check_accepted(&decoded);
            }
        }
    }
}

#[test]
fn every_frame_type_is_generated() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = frame();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3000 {
        let tree = strategy.new_tree(&mut runner).expect("a frame");
        seen.insert(tree.current().type_name());
    }
    assert_eq!(seen.len(), 26, "{seen:?}");
}
