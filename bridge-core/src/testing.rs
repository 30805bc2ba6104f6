//! Shorthands for tests (feature `sim`): a write or a message through the host's own API
//! ([`Engine::request`], with `admin` rights), giving what it made. Hosts call
//! [`Engine::request`] themselves; these only spare tests the request and answer types.

use crate::auth::Grant;
use crate::request::{Answer, Reply, Request};
use crate::{DocKey, Dot, Engine, Error, MessageId, Policy, Result, WriteOp};
use serde_json::{Map, Value};

fn durable(answer: Result<Answer>) -> Result<Reply> {
    match answer? {
        Answer::WhenDurable { reply, .. } => Ok(reply),
        Answer::Now(reply) => Err(Error::Protocol(format!(
            "a write was answered before it was durable: {reply:?}"
        ))),
    }
}

fn dot(reply: Reply) -> Result<Dot> {
    reply
        .dot()
        .ok_or_else(|| Error::Protocol(format!("a write made no dot: {reply:?}")))
}

/// `put` / `patch` / `delete` of one document; its dot.
pub fn write(e: &mut Engine, now_ms: u64, key: DocKey, op: WriteOp) -> Result<Dot> {
    dot(durable(e.request(
        now_ms,
        &Grant::ADMIN,
        Request::Write { key, op },
    ))?)
}

/// Resolves an open conflict (`None` deletes); the dot.
pub fn resolve(
    e: &mut Engine,
    now_ms: u64,
    key: DocKey,
    value: Option<Map<String, Value>>,
) -> Result<Dot> {
    dot(durable(e.request(
        now_ms,
        &Grant::ADMIN,
        Request::Resolve { key, value },
    ))?)
}

/// Sets a collection's policy; the dot.
pub fn set_policy(e: &mut Engine, now_ms: u64, collection: &str, policy: Policy) -> Result<Dot> {
    let collection = collection.to_owned();
    let request = Request::SetPolicy { collection, policy };
    dot(durable(e.request(now_ms, &Grant::ADMIN, request))?)
}

/// Publishes a message; its id.
pub fn publish(e: &mut Engine, now_ms: u64, channel: &str, payload: Value) -> Result<MessageId> {
    let channel = channel.to_owned();
    match durable(e.request(now_ms, &Grant::ADMIN, Request::Send { channel, payload }))? {
        Reply::Sent { id, .. } => Ok(id),
        other => Err(Error::Protocol(format!("a message was answered {other:?}"))),
    }
}
