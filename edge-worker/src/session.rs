//! What a hibernatable WebSocket carries so that a woken Durable Object takes its session
//! back exactly. Pure: no Worker types, tested natively.
//!
//! A Durable Object with hibernatable WebSockets may be evicted from memory while its sockets
//! stay open; the next message (or the alarm) wakes a fresh object whose [`Engine`] is
//! restored from storage and knows no session. Each socket therefore carries an
//! [`Attachment`] (`serialize_attachment`, at most 2 KiB): the session's
//! [`SessionSnapshot`], which the engine makes and takes back
//! ([`Engine::session_snapshot`], [`Engine::restore_session`]). The object stores it again
//! after every round in which the snapshot changed, so it is current whenever the object is
//! idle, which is the only time it can be evicted.
//!
//! On wake, [`resume`] restores every session from its snapshot: agents and peers alike keep
//! their id, rights, subscriptions, timers and, for a peer, its sync position (what it
//! holds, unacknowledged pushes): nothing is replayed and nothing sent, and the other side
//! notices nothing. A session whose snapshot does not fit (a peer relaying the presence of
//! very many sessions, very many subscriptions) is closed on wake with 1012 ("service
//! restart") instead; its client reconnects and resumes by vector, so only what is missing
//! travels.

use bridge_core::{Engine, SessionId, SessionSnapshot};
use serde::{Deserialize, Serialize};

/// Largest serialized attachment the runtime accepts.
pub const MAX_ATTACHMENT_BYTES: usize = 2048;

/// WebSocket close code asking a client to reconnect (RFC 6455 "service restart").
pub const CLOSE_RECONNECT: u16 = 1012;

/// Why sessions that cannot be restored are closed.
pub const RECONNECT_REASON: &str = "the relay restarted; reconnect to resume";

/// Per-socket state that survives hibernation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Session id in this object's engine.
    pub session: SessionId,
    pub space: String,
    /// Answer in the binary encoding (the last frame that decoded was binary).
    #[serde(default, skip_serializing_if = "is_false")]
    pub binary: bool,
    /// The session as the engine last had it; `None` when it did not fit (close on wake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SessionSnapshot>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Attachment {
    /// The attachment for `session` of `engine` now, within [`MAX_ATTACHMENT_BYTES`]: a
    /// snapshot that does not fit is left out. `None` when the engine has no such session.
    pub fn of(engine: &Engine, session: SessionId, space: &str, binary: bool) -> Option<Self> {
        let mut att = Attachment {
            session,
            space: space.to_owned(),
            binary,
            state: Some(engine.session_snapshot(session)?),
        };
        if att.to_json().len() > MAX_ATTACHMENT_BYTES {
            att.state = None;
        }
        Some(att)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Option<Attachment> {
        serde_json::from_str(s).ok()
    }
}

/// Takes the sessions of `sockets` back into a freshly restored `engine` (see the module
/// doc). Returns the sessions to close with [`CLOSE_RECONNECT`]: those without a snapshot.
pub fn resume(engine: &mut Engine, sockets: &[Attachment]) -> Vec<SessionId> {
    let mut reconnect = Vec::new();
    for a in sockets {
        match &a.state {
            Some(s) if s.session == a.session => {
                engine.restore_session(s.clone());
            }
            _ => reconnect.push(a.session),
        }
    }
    reconnect
}

/// A close reason fits in 123 bytes (RFC 6455); cut at a character boundary.
pub fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::{EngineConfig, Frame, Output, PersistBatch, ReplicaId, Tier, Transmit};
    use serde_json::json;

    fn engine() -> Engine {
        Engine::new(EngineConfig::new(ReplicaId(9), Tier::Cloud, "s"))
    }

    fn frame(v: serde_json::Value) -> Frame {
        match bridge_core::codec::decode_json(v.to_string().as_bytes()) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    fn flush(e: &mut Engine) -> Vec<Transmit> {
        let mut out = Vec::new();
        let stored = e.flush(
            |_: &[PersistBatch]| Ok::<(), ()>(()),
            |_, o| {
                if let Output::Transmit(t) = o {
                    out.push(t)
                }
            },
        );
        assert!(stored.is_ok());
        out
    }

    /// Attachments as the runtime keeps them: JSON text.
    fn stored(e: &Engine, sessions: &[SessionId]) -> Vec<Attachment> {
        sessions
            .iter()
            .map(|s| {
                let att = Attachment::of(e, *s, "s", false).expect("session");
                let json = att.to_json();
                assert!(json.len() <= MAX_ATTACHMENT_BYTES);
                Attachment::from_json(&json).expect("reads back")
            })
            .collect()
    }

    #[test]
    fn woken_sessions_are_restored_from_their_attachments() {
        let mut e = engine();
        let agent = e.accept(100);
        e.handle_frame(
            100,
            agent,
            frame(json!({"type":"hello","space":"s","name":"a"})),
        );
        e.handle_frame(
            100,
            agent,
            frame(json!({"type":"subscribe","channel":"chat"})),
        );
        let peer = e.accept(100);
        e.handle_frame(100, peer, frame(json!({"type":"hello","space":"s","kind":"peer","replica":"0000000000000001","tier":"local"})));
        let idle = e.accept(100);
        flush(&mut e);
        let atts = stored(&e, &[agent, peer, idle]);
        assert!(atts.iter().all(|a| a.state.is_some()));

        // The object is evicted; a fresh engine from storage takes the sessions back.
        let mut e = engine();
        let reconnect = resume(&mut e, &atts);
        assert!(reconnect.is_empty());
        assert!(flush(&mut e).is_empty(), "nothing is replayed");
        assert!(e.peer_status(peer).is_some_and(|p| p.open));
        // The agent still gets broadcasts on its channel.
        bridge_core::testing::publish(&mut e, 300, "chat", json!("hi")).expect("publish");
        let got = flush(&mut e);
        assert!(
            got.iter().any(|t| matches!(
                t,
                Transmit::Frame {
                    session,
                    frame: Frame::Broadcast { .. }
                } if *session == agent
            )),
            "{got:?}"
        );
        // The session that had not said hello yet must still say it.
        e.handle_frame(
            400,
            idle,
            frame(json!({"type":"hello","space":"s","name":"late"})),
        );
        let got = flush(&mut e);
        assert!(
            matches!(
                got.first(),
                Some(Transmit::Frame {
                    session,
                    frame: Frame::Welcome(_)
                }) if *session == idle
            ),
            "{got:?}"
        );
        // New sessions get ids none of the restored ones has.
        assert!(e.accept(500) > idle);
    }

    #[test]
    fn a_snapshot_too_large_for_an_attachment_closes_the_session_on_wake() {
        let mut e = engine();
        let agent = e.accept(100);
        e.handle_frame(
            100,
            agent,
            frame(json!({"type":"hello","space":"s","name":"a"})),
        );
        for i in 0..200 {
            let sub = json!({"type":"subscribe","channel": format!("channel-{i}")});
            e.handle_frame(100, agent, frame(sub));
        }
        flush(&mut e);
        let att = Attachment::of(&e, agent, "s", true).expect("session");
        assert!(att.to_json().len() <= MAX_ATTACHMENT_BYTES);
        assert!(att.state.is_none());
        let mut fresh = engine();
        assert_eq!(resume(&mut fresh, &[att]), [agent]);
        // A snapshot of another session than the socket's is not taken either.
        let mut small = engine();
        let one = small.accept(0);
        let mut other = Attachment::of(&small, one, "s", false).expect("session");
        other.session = one + 1;
        assert_eq!(resume(&mut fresh, &[other]), [one + 1]);
    }

    #[test]
    fn woken_sessions_keep_their_deadlines() {
        // Accepted at 100 (default hello timeout 10 s); the object wakes at 5_000.
        let mut e = engine();
        let agent = e.accept(100);
        e.handle_frame(
            100,
            agent,
            frame(json!({"type":"hello","space":"s","name":"a"})),
        );
        let pending = e.accept(100);
        flush(&mut e);
        let atts = stored(&e, &[agent, pending]);
        let mut e = engine();
        assert!(resume(&mut e, &atts).is_empty());
        // The handshake that was pending before hibernation still runs out when it would
        // have: from its accept time, not from the wake-up.
        assert_eq!(e.poll_timeout(), Some(100 + 10_000));
        e.handle_timeout(100 + 10_000);
        let got = flush(&mut e);
        assert!(
            matches!(
                got.as_slice(),
                [
                    Transmit::Frame {
                        frame: Frame::Error { .. },
                        ..
                    },
                    Transmit::Close { session, .. }
                ] if *session == pending
            ),
            "{got:?}"
        );
        // The restored agent is never closed for silence: nothing more is due.
        e.close(pending);
        assert_eq!(e.poll_timeout(), None);
        e.handle_timeout(u64::MAX / 2);
        assert!(e.poll_transmit().is_none());
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let long = "é".repeat(100);
        let r = close_reason(&long);
        assert!(r.len() <= 123 && r.len().is_multiple_of(2));
    }
}
