//! What a hibernatable WebSocket carries so that a woken Durable Object can map it back to a
//! session, and how sessions are resumed on wake. Pure: no Worker types, tested natively.
//!
//! A Durable Object with hibernatable WebSockets may be evicted from memory while its sockets
//! stay open; the next message wakes a fresh object whose [`Engine`] is restored from storage
//! and knows no session. Each socket therefore carries an [`Attachment`] (serialized with
//! `serialize_attachment`, at most 2 KiB) and on wake [`resume`] rebuilds the sessions:
//!
//! - **Agents resume in place.** The attachment keeps what the agent's `hello` established
//!   (name and token) and its subscriptions; on wake the engine is fed that `hello` again —
//!   authorised at the time it was first accepted, so a resumed session keeps the rights it
//!   had — and the subscriptions (without `from`: nothing is replayed twice). The answers to
//!   these replayed frames (`welcome`, `ack`, presence) are dropped: the agent already had
//!   them. The agent notices nothing.
//! - **Peers are asked to reconnect** (close code 1012, "service restart"). A peer session's
//!   state — the vector the peer holds, unacknowledged pushes — is too large for an attachment
//!   and must be exact: guessing it could leave the peer without writes until its next
//!   reconnect. Peers reconnect with backoff and resume by vector anyway, so a reconnect
//!   costs one handshake and only what is missing travels.
//! - A socket whose attachment overflowed (very many subscriptions) or could not be read is
//!   closed the same way, so its client reconnects and subscribes again.

use bridge_core::frame::{Hello, SessionKind};
use bridge_core::{Engine, Frame, SessionId, Transmit};
use serde::{Deserialize, Serialize};

/// Largest serialized attachment the runtime accepts.
pub const MAX_ATTACHMENT_BYTES: usize = 2048;

/// WebSocket close code asking a client to reconnect (RFC 6455 "service restart").
pub const CLOSE_RECONNECT: u16 = 1012;

/// Per-socket state that survives hibernation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Session id in this object's engine.
    pub session: SessionId,
    pub space: String,
    /// When the socket was accepted (ms): the session's `since`, and the time its `hello`
    /// was authorised.
    pub since: u64,
    /// Answer in the binary encoding (the last frame that decoded was binary).
    #[serde(default, skip_serializing_if = "is_false")]
    pub binary: bool,
    /// The agent's `hello` as accepted (name, token), once it has sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<AgentHello>,
    /// A peer session: not resumable in place (see the module doc).
    #[serde(default, skip_serializing_if = "is_false")]
    pub peer: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<String>,
    /// More state than fits: close on wake.
    #[serde(default, skip_serializing_if = "is_false")]
    pub overflow: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentHello {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Attachment {
    pub fn new(session: SessionId, space: impl Into<String>, since: u64) -> Self {
        Attachment {
            session,
            space: space.into(),
            since,
            ..Attachment::default()
        }
    }

    /// Records what `frame` (which decoded, in `binary` or not) changes about the session.
    /// Returns whether the attachment changed and must be stored again.
    pub fn observe(&mut self, frame: &Frame, binary: bool) -> bool {
        let before = self.clone();
        self.binary = binary;
        match frame {
            Frame::Hello(h) if self.hello.is_none() && !self.peer => match h.kind {
                SessionKind::Agent => {
                    self.hello = Some(AgentHello {
                        name: h.name.clone(),
                        token: h.token.clone(),
                    })
                }
                SessionKind::Peer => self.peer = true,
            },
            Frame::Subscribe {
                channel,
                collection,
                ..
            } => {
                add(&mut self.channels, channel);
                add(&mut self.collections, collection);
            }
            Frame::Unsubscribe {
                channel,
                collection,
                ..
            } => {
                remove(&mut self.channels, channel);
                remove(&mut self.collections, collection);
            }
            _ => {}
        }
        if *self != before && self.to_json().len() > MAX_ATTACHMENT_BYTES {
            // Keep what identifies the socket; drop what does not fit and close on wake.
            self.channels.clear();
            self.collections.clear();
            self.hello = None;
            self.overflow = true;
        }
        *self != before
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Option<Attachment> {
        serde_json::from_str(s).ok()
    }

    fn resumable(&self) -> bool {
        !self.peer && !self.overflow
    }
}

fn add(list: &mut Vec<String>, name: &Option<String>) {
    if let Some(n) = name {
        if !list.contains(n) {
            list.push(n.clone());
        }
    }
}

fn remove(list: &mut Vec<String>, name: &Option<String>) {
    if let Some(n) = name {
        list.retain(|x| x != n);
    }
}

/// What a woken object must do about its sockets.
#[derive(Debug, Default)]
pub struct Resumed {
    /// Sessions to close with [`CLOSE_RECONNECT`] (peers, overflowed attachments).
    pub reconnect: Vec<SessionId>,
    /// What the engine has for the resumed sessions besides the answers to replayed frames.
    pub transmits: Vec<Transmit>,
}

/// Why [`Resumed::reconnect`] sessions are closed.
pub const RECONNECT_REASON: &str = "the relay restarted; reconnect to resume";

/// Rebuilds the sessions of `sockets` in a freshly restored `engine` (see the module doc).
pub fn resume(engine: &mut Engine, now_ms: u64, sockets: &[Attachment]) -> Resumed {
    let mut out = Resumed::default();
    for a in sockets {
        if !a.resumable() {
            out.reconnect.push(a.session);
            continue;
        }
        engine.accept(a.since, a.session);
        let Some(h) = &a.hello else { continue };
        let hello = Hello {
            space: a.space.clone(),
            kind: SessionKind::Agent,
            name: h.name.clone(),
            token: h.token.clone(),
            ..Hello::default()
        };
        engine.handle_frame(a.since, a.session, Frame::Hello(hello));
        let subs = a
            .channels
            .iter()
            .map(|c| (Some(c.clone()), None))
            .chain(a.collections.iter().map(|c| (None, Some(c.clone()))));
        for (channel, collection) in subs {
            let sub = Frame::Subscribe {
                req: None,
                channel,
                collection,
                from: None,
            };
            engine.handle_frame(now_ms, a.session, sub);
        }
    }
    while engine.poll_event().is_some() {}
    while let Some(t) = engine.poll_transmit() {
        let replayed_answer = matches!(
            &t,
            Transmit::Frame {
                frame: Frame::Welcome(_)
                    | Frame::Ack(_)
                    | Frame::Error { .. }
                    | Frame::Presence { .. },
                ..
            }
        );
        if !replayed_answer {
            out.transmits.push(t);
        }
    }
    out
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
    use bridge_core::{EngineConfig, ReplicaId, Tier};
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

    #[test]
    fn attachment_tracks_hello_and_subscriptions() {
        let mut a = Attachment::new(3, "s", 100);
        assert!(a.observe(
            &frame(json!({"type":"hello","space":"s","name":"n"})),
            false
        ));
        assert_eq!(a.hello.as_ref().and_then(|h| h.name.as_deref()), Some("n"));
        assert!(a.observe(&frame(json!({"type":"subscribe","channel":"c"})), false));
        assert!(!a.observe(&frame(json!({"type":"subscribe","channel":"c"})), false));
        assert!(a.observe(&frame(json!({"type":"ping","nonce":1})), true));
        assert!(a.observe(&frame(json!({"type":"unsubscribe","channel":"c"})), true));
        assert!(a.channels.is_empty());
        let back = Attachment::from_json(&a.to_json());
        assert_eq!(back.as_ref(), Some(&a));
        let mut p = Attachment::new(4, "s", 100);
        let hello = json!({"type":"hello","space":"s","kind":"peer","replica":"0000000000000001","tier":"local"});
        p.observe(&frame(hello), true);
        assert!(p.peer && p.hello.is_none());
    }

    #[test]
    fn attachment_overflow_is_bounded() {
        let mut a = Attachment::new(3, "s", 100);
        for i in 0..200 {
            a.observe(
                &frame(json!({"type":"subscribe","channel": format!("channel-{i}")})),
                false,
            );
            assert!(a.to_json().len() <= MAX_ATTACHMENT_BYTES);
        }
        assert!(a.overflow);
    }

    #[test]
    fn woken_agent_keeps_its_subscriptions_and_peer_is_asked_to_reconnect() {
        let mut agent = Attachment::new(1, "s", 100);
        agent.observe(
            &frame(json!({"type":"hello","space":"s","name":"a"})),
            false,
        );
        agent.observe(&frame(json!({"type":"subscribe","channel":"chat"})), false);
        let mut peer = Attachment::new(2, "s", 100);
        peer.observe(&frame(json!({"type":"hello","space":"s","kind":"peer","replica":"0000000000000001","tier":"local"})), true);
        let mut idle = Attachment::new(3, "s", 100);
        idle.binary = true;

        let mut e = engine();
        let out = resume(&mut e, 200, &[agent, peer, idle]);
        // The peer reconnects; no welcome / ack is replayed to the agent.
        assert_eq!(out.reconnect, [2]);
        assert!(out.transmits.is_empty(), "{:?}", out.transmits);
        // The agent still gets broadcasts on its channel.
        bridge_core::testing::publish(&mut e, 300, "chat", json!("hi")).expect("publish");
        while let Some(b) = e.poll_persist() {
            e.persisted(b.id).expect("persisted");
        }
        let mut got = Vec::new();
        while let Some(t) = e.poll_transmit() {
            got.push(t);
        }
        assert!(
            got.iter().any(|t| matches!(
                t,
                Transmit::Frame {
                    session: 1,
                    frame: Frame::Broadcast { .. }
                }
            )),
            "{got:?}"
        );
        // The session that had not said hello yet must still say it.
        e.handle_frame(
            400,
            3,
            frame(json!({"type":"hello","space":"s","name":"late"})),
        );
        let welcome = e.poll_transmit();
        assert!(
            matches!(
                welcome,
                Some(Transmit::Frame {
                    session: 3,
                    frame: Frame::Welcome(_)
                })
            ),
            "{welcome:?}"
        );
    }

    #[test]
    fn woken_sessions_keep_their_deadlines() {
        // Accepted at 100 (default hello timeout 10 s); the object wakes at 5_000.
        let mut agent = Attachment::new(1, "s", 100);
        agent.observe(
            &frame(json!({"type":"hello","space":"s","name":"a"})),
            false,
        );
        let pending = Attachment::new(2, "s", 100);
        let mut e = engine();
        let out = resume(&mut e, 5_000, &[agent, pending]);
        assert!(out.reconnect.is_empty() && out.transmits.is_empty());
        // The handshake that was pending before hibernation still runs out when it would
        // have: from its accept time, not from the wake-up.
        assert_eq!(e.poll_timeout(), Some(100 + 10_000));
        e.handle_timeout(100 + 10_000);
        let mut got = Vec::new();
        while let Some(t) = e.poll_transmit() {
            got.push(t);
        }
        assert!(
            matches!(
                got.as_slice(),
                [
                    Transmit::Frame {
                        session: 2,
                        frame: Frame::Error { .. }
                    },
                    Transmit::Close { session: 2, .. }
                ]
            ),
            "{got:?}"
        );
        // The restored agent is never closed for silence: nothing more is due.
        e.close(2);
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
