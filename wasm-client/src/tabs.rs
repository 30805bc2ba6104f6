//! Several tabs of one profile on one store: one **leads**, the others **follow**.
//!
//! The tab holding the store's Web Lock runs the engine, the IndexedDB writes and the
//! WebSocket, exactly as a lone tab does. A tab that finds the lock taken opens the store
//! read-only: it restores a replica for reads, forwards every write to the leader over a
//! `BroadcastChannel`, and mirrors what the leader announces — the keys of each stored batch
//! (re-read from IndexedDB, so reads never run ahead of the store), messages, status and
//! presence. So one upload per change, whatever the number of tabs.
//!
//! A follower also queues for the lock. When the leader's tab closes or dies the browser
//! hands the lock to the next tab, which rebuilds its engine from the store, opens the link,
//! runs again every call it had forwarded without an answer, and announces itself so that
//! the other followers send theirs again. Each forwarded call carries an idempotency key
//! (tab id, call id) that the engine stores with the write
//! ([`bridge_core::Engine::once`]): a call the old leader stored but never answered is
//! recognised and answered with its first result, not made again.
//!
//! A forwarded write is the agent frame for it (`put`, `patch`, `delete`, `send`, `resolve`,
//! `set_policy`) in the binary encoding, decoded on both sides into the core's one
//! [`Request`] type and run by [`Engine::request`] like any other request: the tabs need no
//! message format, decoder or checks of their own.
//!
//! `message` (wasm32) is the envelope around those frames on the `BroadcastChannel`: which
//! tab calls, which answers, what the leader announces.

#[cfg(target_arch = "wasm32")]
pub(crate) mod message;

use bridge_core::auth::Grant;
use bridge_core::request::RequestKey;
use bridge_core::{Answer, Engine, Error, Frame, Replica, Request};

/// The write a call frame names; anything else is refused (a tab forwards only writes).
fn write(frame: Frame) -> bridge_core::Result<Request> {
    let name = frame.type_name();
    let (_, request) = Request::from_frame(frame)?;
    if request.is_write() {
        Ok(request)
    } else {
        Err(not_a_write(name))
    }
}

fn not_a_write(what: &str) -> Error {
    Error::Protocol(format!("a tab forwarded `{what}`, which is not a write"))
}

/// Runs a write call (made here, or forwarded by a follower tab) on the leader's engine, with
/// the rights of the store's owner; gives the request id that `Event::Acked` names once it
/// is stored.
///
/// A forwarded call carries `key` (the follower's tab id and call id): the engine stores it
/// with the write, so when a new leader runs again a call the old one stored but never
/// answered, it is recognised and answered with its first result — a message is not sent
/// twice, a document write not made twice.
pub fn apply(
    frame: Frame,
    engine: &mut Engine,
    now_ms: u64,
    key: Option<RequestKey>,
) -> bridge_core::Result<u64> {
    let request = write(frame)?;
    let answer = match key {
        Some(key) => engine.request_once(now_ms, key, &Grant::ADMIN, request)?,
        None => engine.request(now_ms, &Grant::ADMIN, request)?,
    };
    match answer {
        Answer::WhenDurable { req, .. } => Ok(req),
        Answer::Now(_) => Err(not_a_write("a read")),
    }
}

/// Every check the engine will make of this call that a read of the follower's replica
/// allows ([`Request::check`]), before it is forwarded, so it is refused at once, with the
/// same error.
pub fn check(frame: &Frame, replica: &Replica) -> bridge_core::Result<()> {
    write(frame.clone())?.check(replica)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::codec::{decode_binary, encode_binary};
    use bridge_core::{DocKey, EngineConfig, Event, Policy, ReplicaId, Tier};
    use serde_json::json;

    #[test]
    fn forwarded_frames_are_the_writes_they_name() {
        let mut e = Engine::new(EngineConfig::new(ReplicaId(1), Tier::Local, "s"));
        let frames = [
            Frame::SetPolicy {
                req: None,
                collection: "c".into(),
                policy: Policy::Merge,
            },
            Frame::Put {
                req: None,
                collection: "c".into(),
                id: "d".into(),
                value: json!({"a": 1}),
            },
            Frame::Patch {
                req: None,
                collection: "c".into(),
                id: "d".into(),
                value: json!({"b": 2}),
            },
            Frame::Send {
                req: None,
                channel: "chat".into(),
                payload: json!("hi"),
            },
        ];
        for f in frames {
            // Through the binary encoding, as between tabs.
            let f = decode_binary(&encode_binary(&f)).unwrap_or(Frame::Ping { nonce: 0 });
            assert!(check(&f, e.replica()).is_ok());
            assert!(apply(f, &mut e, 10, None).is_ok());
        }
        while let Some(b) = e.poll_persist() {
            assert!(e.persisted(b.id).is_ok());
        }
        let acked = std::iter::from_fn(|| e.poll_event())
            .filter(|ev| matches!(ev, Event::Acked { .. }))
            .count();
        assert_eq!(acked, 4);
        assert_eq!(
            e.replica().get(&DocKey::new("c", "d")).expect("read"),
            Some(json!({"a": 1, "b": 2}))
        );
        assert_eq!(e.replica().policy("c"), Policy::Merge);
        let not_a_write = apply(Frame::Ping { nonce: 1 }, &mut e, 10, None);
        assert!(matches!(not_a_write, Err(Error::Protocol(_))));
        let get = Frame::Get {
            req: None,
            collection: "c".into(),
            id: "d".into(),
        };
        assert!(matches!(
            apply(get, &mut e, 10, None),
            Err(Error::Protocol(_))
        ));
        let not_an_object = Frame::Put {
            req: None,
            collection: "c".into(),
            id: "x".into(),
            value: json!([1]),
        };
        assert!(check(&not_an_object, e.replica()).is_err());
        assert!(apply(not_an_object, &mut e, 10, None).is_err());
    }
}
