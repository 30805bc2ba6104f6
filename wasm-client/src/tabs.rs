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
//! the other followers send theirs again (a put, patch, delete or resolve run twice stores
//! the same content; a message sent twice is delivered twice).
//!
//! A forwarded write is the agent frame for it (`put`, `patch`, `delete`, `send`, `resolve`,
//! `set_policy`) in the binary encoding: the core already encodes and checks those, so the
//! tabs need no message format — or decoder — of their own.

use bridge_core::{DocKey, Engine, Error, Frame, WriteOp};
use serde_json::{Map, Value};

/// Runs a write frame (made here, or forwarded by a follower tab) on the leader's engine as
/// request `req`; `Event::Acked { req }` follows once it is stored.
pub fn apply(frame: Frame, engine: &mut Engine, now_ms: u64, req: u64) -> bridge_core::Result<()> {
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
    engine.write(now_ms, req, key, op).map(drop)
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
) -> bridge_core::Result<()> {
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
        } => return engine.publish(now_ms, req, &channel, payload).map(drop),
        other => {
            return Err(Error::Protocol(format!(
                "a tab forwarded `{}`, which is not a write",
                other.type_name()
            )))
        }
    }
    .map(drop)
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
            assert!(apply(f, &mut e, 10, req as u64).is_ok());
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
        let not_a_write = apply(Frame::Ping { nonce: 1 }, &mut e, 10, 9);
        assert!(matches!(not_a_write, Err(Error::Protocol(_))));
        let not_an_object = Frame::Put {
            req: None,
            collection: "c".into(),
            id: "x".into(),
            value: json!([1]),
        };
        assert!(apply(not_an_object, &mut e, 10, 10).is_err());
    }
}
