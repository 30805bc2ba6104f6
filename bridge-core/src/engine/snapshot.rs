//! A session as a value: [`Engine::session_snapshot`] and [`Engine::restore_session`].
//!
//! A host that may lose its memory while its connections stay open (a Durable Object
//! evicted while its hibernatable WebSockets live on) keeps each session's snapshot beside
//! the connection, and a fresh engine restored from storage takes the sessions back from
//! their snapshots: the same id, handshake phase, name, rights, subscriptions, timers, and
//! for a peer its sync position (what it holds, unacknowledged pushes, message cursor,
//! presence). Nothing is replayed and nothing is sent: the other side notices nothing.
//!
//! A snapshot is exact only between rounds of the host loop ([`Engine::flush`]), when no
//! batch is in flight and no frame is queued: that is when a host takes it.

use super::{Engine, PeerLink, Phase, Session};
use crate::auth::{Grant, Rights};
use crate::frame::SessionKind;
use crate::message::PresenceEntry;
use crate::{ReplicaId, SessionId, Tier, VersionVector};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

/// One session of an [`Engine`], serde-encodable (JSON for a socket attachment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// The session's id, the one the host knows its connection by; [`Engine::restore_session`]
    /// restores it under this id.
    pub session: SessionId,
    phase: SnapPhase,
    kind: SessionKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    since: u64,
    /// The token's rights, for a token of the whole space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rights: Option<Rights>,
    /// What a token scoped to collections grants, in its place: an engine older than
    /// scopes finds no `rights` and restores nothing, rather than the whole space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scoped: Option<Grant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer: Option<PeerSnapshot>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    channels: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    collections: BTreeSet<String>,
    auto_push: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    dialed: bool,
    /// Absent in snapshots of builds before the compact `push`: the peer then gets expanded
    /// pushes until it reconnects, which every peer reads.
    #[serde(default, skip_serializing_if = "is_false")]
    compact: bool,
    last_rx: u64,
    last_ping: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    closing: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SnapPhase {
    AwaitHello,
    AwaitWelcome,
    Open,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PeerSnapshot {
    replica: ReplicaId,
    tier: Tier,
    /// What the peer holds, for a peer of the whole space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    known: Option<VersionVector>,
    /// The same for a partial peer (`filter`), in its place: an engine older than partial
    /// replication finds no `known` and restores nothing, rather than a link that would send
    /// the peer everything and read its writes elsewhere against its vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    known_partial: Option<VersionVector>,
    msg_known: VersionVector,
    next_seq: u64,
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    unacked: VecDeque<(u64, VersionVector)>,
    acked: VersionVector,
    #[serde(default, skip_serializing_if = "is_false")]
    sync_requested: bool,
    #[serde(default)]
    run_sent: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    learned: Vec<PresenceEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    presence_sent: Vec<PresenceEntry>,
    #[serde(default, skip_serializing_if = "is_false")]
    own_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blocked_at: Option<(VersionVector, u64)>,
    /// A resync under way with the peer (its horizon): no push goes until it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resync: Option<VersionVector>,
    /// Another resync follows the one under way.
    #[serde(default, skip_serializing_if = "is_false")]
    resync_again: bool,
    /// The horizon the peer brought in its `hello` (its pushes are read against it).
    #[serde(default, skip_serializing_if = "VersionVector::is_empty")]
    peer_horizon: VersionVector,
    /// The collections the peer replicates (`None`: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filter: Option<Vec<String>>,
    /// Its initial sync by key, under way (an engine that does not know it resumes with
    /// deltas from `known_partial`, which the walk left where it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fill: Option<super::fill::Fill>,
    /// The collections its vector is complete for in this session (`None` with a `filter`:
    /// a snapshot from before `replicate`, whose filter never changed: the filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    held: Option<Vec<String>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl SessionSnapshot {
    /// A peer session (other replica), as opposed to an agent or a connection that has not
    /// said which yet.
    pub fn is_peer(&self) -> bool {
        self.peer.is_some() || self.kind == SessionKind::Peer
    }
}

impl Engine {
    /// The session `session` as a value, to restore it later into an engine of the same
    /// store with [`Engine::restore_session`]. `None` if there is no such session.
    pub fn session_snapshot(&self, session: SessionId) -> Option<SessionSnapshot> {
        let s = self.sessions.get(&session)?;
        Some(SessionSnapshot {
            session,
            phase: match s.phase {
                Phase::AwaitHello => SnapPhase::AwaitHello,
                Phase::AwaitWelcome => SnapPhase::AwaitWelcome,
                Phase::Open => SnapPhase::Open,
            },
            kind: s.kind,
            name: s.name.clone(),
            since: s.since,
            rights: (!s.grant.is_scoped()).then_some(s.grant.rights),
            scoped: s.grant.is_scoped().then(|| s.grant.clone()),
            peer: s.peer.as_ref().map(|p| PeerSnapshot {
                replica: p.replica,
                tier: p.tier,
                known: p.filter.is_none().then(|| p.known.clone()),
                known_partial: p.filter.is_some().then(|| p.known.clone()),
                msg_known: p.msg_known.clone(),
                next_seq: p.next_seq,
                unacked: p.unacked.clone(),
                acked: p.acked.clone(),
                sync_requested: p.sync_requested,
                run_sent: p.run_sent,
                learned: p.learned.clone(),
                presence_sent: p.presence_sent.clone(),
                own_only: p.own_only,
                blocked_at: p.blocked_at.clone(),
                resync: p.resync.clone(),
                resync_again: p.resync_again,
                peer_horizon: p.peer_horizon.clone(),
                filter: p.filter.clone(),
                fill: p.fill.clone(),
                held: p.held.clone(),
            }),
            channels: s.channels.keys().cloned().collect(),
            collections: s.collections.keys().cloned().collect(),
            auto_push: s.auto_push,
            dialed: s.dialed,
            compact: s.compact,
            last_rx: s.last_rx,
            last_ping: s.last_ping,
            closing: s.closing,
        })
    }

    /// Takes a session back from its snapshot (replacing a session with the same id), as it
    /// was: nothing is sent and no event is emitted. Later sessions get ids above it. The
    /// engine must hold the store's durable state first (restored from storage): a peer's
    /// sync position is relative to it.
    pub fn restore_session(&mut self, snap: SessionSnapshot) -> SessionId {
        let id = snap.session;
        self.next_session = self.next_session.max(id.saturating_add(1));
        let session = Session {
            phase: match snap.phase {
                SnapPhase::AwaitHello => Phase::AwaitHello,
                SnapPhase::AwaitWelcome => Phase::AwaitWelcome,
                SnapPhase::Open => Phase::Open,
            },
            kind: snap.kind,
            name: snap.name,
            since: snap.since,
            grant: snap
                .scoped
                .unwrap_or_else(|| Grant::all(snap.rights.unwrap_or(Rights::Read))),
            peer: snap.peer.map(|p| PeerLink {
                replica: p.replica,
                tier: p.tier,
                known: p.known.or(p.known_partial).unwrap_or_default(),
                msg_known: p.msg_known,
                next_seq: p.next_seq,
                unacked: p.unacked,
                acked: p.acked,
                sync_requested: p.sync_requested,
                run_sent: p.run_sent,
                learned: p.learned,
                presence_sent: p.presence_sent,
                own_only: p.own_only,
                blocked_at: p.blocked_at,
                // Not kept: after a wake the horizon and the report go once more (both are
                // idempotent).
                reported: None,
                peer_horizon: p.peer_horizon,
                resync: p.resync,
                resync_again: p.resync_again,
                filter: p.filter.clone(),
                // Only served links are snapshotted (the Durable Object's): none walks one.
                inventory: None,
                held: p.held.or(p.filter.clone()),
                last_error: None,
                fill: p.fill,
                horizon_sent: VersionVector::new(),
                #[cfg(feature = "serve")]
                report: None,
            }),
            channels: snap.channels.into_iter().map(|c| (c, ())).collect(),
            collections: snap.collections.into_iter().map(|c| (c, ())).collect(),
            auto_push: snap.auto_push,
            dialed: snap.dialed,
            compact: snap.compact,
            last_rx: snap.last_rx,
            last_ping: snap.last_ping,
            closing: snap.closing,
            // A host snapshots after draining, and an unpaced replay ends within the drain.
            #[cfg(feature = "store")]
            replays: Default::default(),
            #[cfg(feature = "store")]
            full: false,
        };
        self.sessions.insert(id, Box::new(session));
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, Hello};
    use crate::replica::PersistBatch;
    use crate::{DocKey, EngineConfig, Event, Output, Transmit, WriteOp};
    use serde_json::json;
    use std::collections::BTreeMap;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A store on disk: what the batches wrote, to restore a fresh engine from.
    #[derive(Default)]
    struct Disk {
        docs: BTreeMap<DocKey, crate::DocState>,
        meta: Option<(VersionVector, crate::Stamp, VersionVector)>,
    }

    impl Disk {
        fn write(&mut self, batches: &[PersistBatch]) -> Result<(), ()> {
            for b in batches {
                for (k, s) in &b.docs {
                    self.docs.insert(k.clone(), crate::DocState::clone(s));
                }
                self.meta = Some((b.vector.clone(), b.clock, b.message_seen.clone()));
            }
            Ok(())
        }

        fn boot(&self, cfg: &EngineConfig) -> Engine {
            let mut e = Engine::new(cfg.clone());
            for (k, s) in &self.docs {
                e.replica_mut().restore_doc(k.clone(), s.clone());
            }
            if let Some((v, c, m)) = &self.meta {
                e.replica_mut().restore_meta(v.clone(), *c, m.clone());
            }
            e
        }
    }

    fn flush(e: &mut Engine, disk: &mut Disk) -> Vec<Output> {
        let mut out = Vec::new();
        e.flush(|b| disk.write(b), |_, o| out.push(o)).unwrap();
        out
    }

    fn frames(out: Vec<Output>, session: SessionId) -> Vec<Frame> {
        out.into_iter()
            .filter_map(|o| match o {
                Output::Transmit(Transmit::Frame { session: s, frame }) if s == session => {
                    Some(frame)
                }
                _ => None,
            })
            .collect()
    }

    fn json_frame(v: serde_json::Value) -> Frame {
        crate::codec::decode_json(v.to_string().as_bytes()).unwrap()
    }

    /// Through JSON, as a host stores it.
    fn round_trip(s: SessionSnapshot) -> SessionSnapshot {
        let text = serde_json::to_string(&s).unwrap();
        let back: SessionSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        back
    }

    #[test]
    fn a_restored_agent_keeps_its_rights_and_subscriptions() {
        let secret = b"k".to_vec();
        let mut cfg = EngineConfig::new(ReplicaId(9), Tier::Cloud, "s");
        cfg.secret = Some(secret.clone());
        let mut disk = Disk::default();
        let mut e = disk.boot(&cfg);
        let token = crate::auth::mint(
            &secret,
            &crate::auth::Claims {
                space: "s".into(),
                rights: Rights::Read,
                exp: u64::MAX,
                collections: crate::auth::parse_collections("notes:read,c*:read").ok(),
            },
        );
        let a = e.accept(100);
        e.handle_frame(
            100,
            a,
            Frame::Hello(Hello {
                space: "s".into(),
                name: Some("reader".into()),
                token: Some(token),
                ..Hello::default()
            }),
        );
        e.handle_frame(
            110,
            a,
            json_frame(json!({"type":"subscribe","channel":"chat"})),
        );
        e.handle_frame(
            110,
            a,
            json_frame(json!({"type":"subscribe","collection":"notes"})),
        );
        let pending = e.accept(120); // has not said hello yet
        flush(&mut e, &mut disk);
        let snaps: Vec<SessionSnapshot> = [a, pending]
            .iter()
            .map(|s| round_trip(e.session_snapshot(*s).unwrap()))
            .collect();
        drop(e);

        // A fresh engine from the same store takes the sessions back, silently.
        let mut e = disk.boot(&cfg);
        for s in snaps {
            e.restore_session(s);
        }
        assert!(flush(&mut e, &mut disk).is_empty());
        assert_eq!(e.presence().len(), 1);
        assert_eq!(e.presence()[0].name, "reader");
        // Subscriptions hold: a change and a message reach the agent.
        crate::testing::write(
            &mut e,
            200,
            DocKey::new("notes", "n"),
            WriteOp::Put(json!({"t":1}).as_object().cloned().unwrap()),
        )
        .unwrap();
        crate::testing::publish(&mut e, 200, "chat", json!("hi")).unwrap();
        let got = frames(flush(&mut e, &mut disk), a);
        assert!(
            got.iter().any(|f| matches!(f, Frame::Change { .. })),
            "{got:?}"
        );
        assert!(
            got.iter().any(|f| matches!(f, Frame::Broadcast { .. })),
            "{got:?}"
        );
        // Rights hold: a read token still cannot write.
        e.handle_frame(
            210,
            a,
            json_frame(json!({"type":"put","req":1,"collection":"c","id":"x","value":{}})),
        );
        let got = frames(flush(&mut e, &mut disk), a);
        assert!(
            matches!(
                &got[..],
                [Frame::Error {
                    code: crate::ErrorCode::Forbidden,
                    ..
                }]
            ),
            "{got:?}"
        );
        // The collection scope holds: a collection outside it cannot even be read.
        e.handle_frame(
            220,
            a,
            json_frame(json!({"type":"get","req":2,"collection":"other","id":"x"})),
        );
        let got = frames(flush(&mut e, &mut disk), a);
        assert!(
            matches!(
                &got[..],
                [Frame::Error {
                    code: crate::ErrorCode::Forbidden,
                    message,
                    ..
                }] if message.contains("`other`")
            ),
            "{got:?}"
        );
        // The pending handshake keeps its deadline from its accept time; new ids go above.
        assert_eq!(e.poll_timeout(), Some(120 + cfg.hello_timeout_ms));
        assert!(e.accept(300) > pending);
    }

    #[test]
    fn a_partial_peer_keeps_its_filter_and_an_older_engine_restores_nothing_of_it() {
        let cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, "s");
        let mut disk = Disk::default();
        let mut cloud = disk.boot(&cfg);
        let mut part = EngineConfig::new(ReplicaId(2), Tier::Local, "s");
        part.collections = Some(vec!["notes".into()]);
        let mut local = Engine::new(part);
        let mut local_disk = Disk::default();
        let up = local.connect(0, None, "up");
        let down = cloud.accept(0);
        for f in frames(flush(&mut local, &mut local_disk), up) {
            cloud.handle_frame(1, down, f);
        }
        flush(&mut cloud, &mut disk);
        let snap = round_trip(cloud.session_snapshot(down).unwrap());
        let text = serde_json::to_string(&snap).unwrap();
        assert!(
            text.contains("\"known_partial\"") && !text.contains("\"known\""),
            "{text}"
        );
        assert!(text.contains("\"filter\":[\"notes\"]"), "{text}");
        // An engine that predates partial replication needs `known`: it fails to read the
        // snapshot (the peer reconnects) instead of restoring a link without its filter.
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct OldPeer {
            known: VersionVector,
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(serde_json::from_value::<OldPeer>(v["peer"].clone()).is_err());
    }

    #[test]
    fn a_restored_peer_session_continues_its_sync_where_it_was() {
        let mut cfg = EngineConfig::new(ReplicaId(1), Tier::Cloud, "s");
        cfg.batch_docs = 5;
        cfg.window = 2;
        cfg.seed_default_policy = false;
        let mut disk = Disk::default();
        let mut cloud = disk.boot(&cfg);
        for i in 0..40 {
            let v = json!({"i": i}).as_object().cloned().unwrap();
            crate::testing::write(
                &mut cloud,
                0,
                DocKey::new("c", format!("{i:02}")),
                WriteOp::Put(v),
            )
            .unwrap();
        }
        flush(&mut cloud, &mut disk);
        let mut local_disk = Disk::default();
        let mut local = Engine::new(EngineConfig::new(ReplicaId(2), Tier::Local, "s"));
        let up = local.connect(0, None, "up");
        let down = cloud.accept(0);
        // Handshake, then the cloud sends its window of pushes; the local side acks one.
        let mut to_cloud = frames(flush(&mut local, &mut local_disk), up);
        for f in to_cloud.drain(..) {
            cloud.handle_frame(1, down, f);
        }
        let to_local = frames(flush(&mut cloud, &mut disk), down);
        let pushes = to_local
            .iter()
            .filter(|f| matches!(f, Frame::Push(_)))
            .count();
        assert_eq!(pushes, 2, "the window");
        for f in to_local {
            local.handle_frame(2, up, f);
        }
        let acks = frames(flush(&mut local, &mut local_disk), up);
        let sent_before = match cloud.session_snapshot(down).unwrap().peer {
            Some(ref p) => p.run_sent,
            None => unreachable!(),
        };
        let snap = round_trip(cloud.session_snapshot(down).unwrap());
        assert!(snap.is_peer());
        drop(cloud);

        // The cloud loses its memory (hibernation); the link stays open.
        let mut cloud = disk.boot(&cfg);
        cloud.restore_session(snap);
        assert!(
            flush(&mut cloud, &mut disk).is_empty(),
            "nothing is replayed"
        );
        let mut progress = Vec::new();
        let mut pending = acks;
        for _ in 0..100 {
            for f in pending.drain(..) {
                cloud.handle_frame(3, down, f);
            }
            let out = flush(&mut cloud, &mut disk);
            for o in &out {
                if let Output::Event(Event::SyncProgress { sent, .. }) = o {
                    progress.push(*sent);
                }
            }
            let to_local = frames(out, down);
            if to_local.is_empty() {
                break;
            }
            for f in to_local {
                local.handle_frame(4, up, f);
            }
            pending = frames(flush(&mut local, &mut local_disk), up);
        }
        assert_eq!(
            local.replica().list("c", None, 100).expect("read").len(),
            40
        );
        // Progress goes on counting from where it was, and ends with everything sent.
        assert_eq!(progress.first(), Some(&(sent_before + 5)), "{progress:?}");
        assert_eq!(progress.last(), Some(&40));
        // The peer's acks matched the pushes sent before the restore: nothing is pending.
        let st = cloud.peer_status(down).unwrap();
        assert_eq!(st.lag, 0, "{st:?}");
        assert!(cloud
            .session_snapshot(down)
            .unwrap()
            .peer
            .unwrap()
            .unacked
            .is_empty());
    }
}
