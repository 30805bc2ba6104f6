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
//! `set_policy`) in the binary encoding: the core already encodes and checks those, so the
//! tabs need no message format — or decoder — of their own.
//!
//! `message` (wasm32) is the envelope around those frames on the `BroadcastChannel`: which
//! tab calls, which answers, what the leader announces.

#[cfg(target_arch = "wasm32")]
pub(crate) mod message;

use bridge_core::limits::{check_doc_write, check_message};
use bridge_core::requests::RequestKey;
use bridge_core::{check_name, DocKey, Dot, Engine, Error, Frame, Replica, WriteOp};
use serde_json::{Map, Value};

/// Runs a write frame (made here, or forwarded by a follower tab) on the leader's engine as
/// request `req`; `Event::Acked { req }` follows once it is stored.
///
/// A forwarded call carries `key` (the follower's tab id and call id): the engine stores it
/// with the write, so when a new leader runs again a call the old one stored but never
/// answered, it is recognised and answered with its first result — a message is not sent
/// twice, a document write not made twice.
pub fn apply(
    frame: Frame,
    engine: &mut Engine,
    now_ms: u64,
    req: u64,
    key: Option<RequestKey>,
) -> bridge_core::Result<()> {
    match key {
        Some(key) => engine.once(key, req, |e| run(frame, e, now_ms, req)),
        None => run(frame, engine, now_ms, req).map(drop),
    }
}

/// Every limit the engine will check on this write (the core's `limits`), checked against a
/// follower's read replica before the call is forwarded, so it is refused at once, with the
/// same error.
pub fn check(frame: &Frame, replica: &Replica) -> bridge_core::Result<()> {
    let doc = |collection: &str, id: &str, op: WriteOp| {
        let key = DocKey::new(collection, id);
        let current = match op {
            WriteOp::Patch(_) => replica.get(&key),
            _ => None,
        };
        check_doc_write(&key, &op, current.as_ref())
    };
    match frame {
        Frame::Put {
            collection,
            id,
            value,
            ..
        } => doc(collection, id, WriteOp::Put(object(value.clone())?)),
        Frame::Patch {
            collection,
            id,
            value,
            ..
        } => doc(collection, id, WriteOp::Patch(object(value.clone())?)),
        Frame::Delete { collection, id, .. } => doc(collection, id, WriteOp::Delete),
        Frame::Resolve {
            collection,
            id,
            value: Some(v @ Value::Object(_)),
            ..
        } => doc(collection, id, WriteOp::Put(object(v.clone())?)),
        Frame::Resolve { collection, id, .. } => doc(collection, id, WriteOp::Delete),
        Frame::SetPolicy { collection, .. } => check_name("collection", collection, false),
        Frame::Send {
            channel, payload, ..
        } => check_message(channel, payload),
        _ => Ok(()),
    }
}

fn run(
    frame: Frame,
    engine: &mut Engine,
    now_ms: u64,
    req: u64,
) -> bridge_core::Result<Option<Dot>> {
    let (key, op) = match frame {
        Frame::Put {
            collection,
            id,
            value,
            ..
        } => (DocKey::new(collection, id), WriteOp::Put(object(value)?)),
        Frame::Patch {
            collection,
            id,
            value,
            ..
        } => (DocKey::new(collection, id), WriteOp::Patch(object(value)?)),
        Frame::Delete { collection, id, .. } => (DocKey::new(collection, id), WriteOp::Delete),
        other => return apply_other(other, engine, now_ms, req),
    };
    engine.write(now_ms, req, key, op).map(Some)
}

fn object(v: Value) -> bridge_core::Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(Error::NotAnObject("something else")),
    }
}

/// The writes that are not document writes: resolve, policy, message.
fn apply_other(
    frame: Frame,
    engine: &mut Engine,
    now_ms: u64,
    req: u64,
) -> bridge_core::Result<Option<Dot>> {
    match frame {
        Frame::Resolve {
            collection,
            id,
            value,
            ..
        } => {
            let value = match value {
                None | Some(Value::Null) => None,
                Some(v) => Some(object(v)?),
            };
            engine.resolve(now_ms, req, DocKey::new(collection, id), value)
        }
        Frame::SetPolicy {
            collection, policy, ..
        } => engine.set_policy(now_ms, req, &collection, policy),
        Frame::Send {
            channel, payload, ..
        } => return engine.publish(now_ms, req, &channel, payload).map(|_| None),
        other => {
            return Err(Error::Protocol(format!(
                "a tab forwarded `{}`, which is not a write",
                other.type_name()
            )))
        }
    }
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::codec::{decode_binary, encode_binary};
    use bridge_core::{EngineConfig, Event, Policy, ReplicaId, Tier};
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
        for (req, f) in frames.into_iter().enumerate() {
            // Through the binary encoding, as between tabs.
            let f = decode_binary(&encode_binary(&f)).unwrap_or(Frame::Ping { nonce: 0 });
            assert!(apply(f, &mut e, 10, req as u64, None).is_ok());
        }
        while let Some(b) = e.poll_persist() {
            assert!(e.persisted(b.id).is_ok());
        }
        let acked = std::iter::from_fn(|| e.poll_event())
            .filter(|ev| matches!(ev, Event::Acked { .. }))
            .count();
        assert_eq!(acked, 4);
        assert_eq!(
            e.replica().get(&DocKey::new("c", "d")),
            Some(json!({"a": 1, "b": 2}))
        );
        assert_eq!(e.replica().policy("c"), Policy::Merge);
        let not_a_write = apply(Frame::Ping { nonce: 1 }, &mut e, 10, 9, None);
        assert!(matches!(not_a_write, Err(Error::Protocol(_))));
        let not_an_object = Frame::Put {
            req: None,
            collection: "c".into(),
            id: "x".into(),
            value: json!([1]),
        };
        assert!(apply(not_an_object, &mut e, 10, 10, None).is_err());
    }
}
