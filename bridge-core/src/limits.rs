//! Every limit on what a write or a message may hold, checked in one place **before**
//! anything is stored, by every path that stores: agent frames and the host API
//! ([`crate::Request::check`], run by [`crate::Engine::request`] and the session path) in the native host, the edge worker
//! and the browser alike. A store therefore never holds a record it cannot read back or send
//! on in one frame.
//!
//! | limit | error code |
//! | --- | --- |
//! | names (collection, document id, channel): 1–256 bytes, no control characters, `_` reserved | `bad_request` |
//! | a document or payload nests at most [`MAX_VALUE_DEPTH`] arrays/objects (the document itself counts) | `malformed` |
//! | a document takes at most [`MAX_DOC_BYTES`] (by [`size_bound`]) after the write | `too_large` |
//! | a message payload takes at most [`MAX_MESSAGE_BYTES`] | `too_large` |

use crate::codec::{object_size_bound, size_bound, too_deep, MAX_DOC_BYTES, MAX_VALUE_DEPTH};
use crate::doc::WriteOp;
use crate::frame::MAX_FRAME_BYTES;
use crate::replica::CONFIG_COLLECTION;
use crate::{check_name, DocKey, Error, Result};
use serde_json::{Map, Value};

/// Largest message payload, by [`size_bound`]. A stored message travels as one `broadcast`
/// frame (payload, channel name of at most 256 bytes, id, stamp, offset), so the payload must
/// leave room for that envelope under [`MAX_FRAME_BYTES`]; the same budget as a document
/// keeps it far from the edge.
pub const MAX_MESSAGE_BYTES: usize = MAX_DOC_BYTES;

// A broadcast frame: payload + channel (≤ 256 bytes, each escaped to at most 6) + envelope.
const _: () = assert!(MAX_MESSAGE_BYTES + 6 * 256 + 1024 < MAX_FRAME_BYTES);

/// Checks a document write before it is made: names, nesting of the written object, and the
/// size of the document it leaves. `current` is the document's visible value now (only a
/// `patch` needs it: the result keeps the other fields). Writes to `_config` are allowed here;
/// who may make them is the caller's business (rights).
pub fn check_doc_write(key: &DocKey, op: &WriteOp, current: Option<&Value>) -> Result<()> {
    match op {
        WriteOp::Delete => check_doc(key, None, 0),
        WriteOp::Put(m) => check_doc(key, Some(m), 0),
        WriteOp::Patch(m) => check_doc(key, Some(m), current.map_or(0, size_bound)),
    }
}

/// [`check_doc_write`] of a write that leaves `written` (`None`: a delete) over `base` bytes
/// of fields it keeps.
pub fn check_doc(key: &DocKey, written: Option<&Map<String, Value>>, base: usize) -> Result<()> {
    let config = key.collection == CONFIG_COLLECTION;
    check_name("collection", &key.collection, config)?;
    check_name("document id", &key.id, true)?;
    let Some(m) = written else {
        return Ok(());
    };
    if config {
        // A configuration entry must name a known setting with a valid value.
        crate::replica::check_config(&key.id, m)?;
    }
    check_object_depth(m)?;
    let size = base + object_size_bound(m);
    if size > MAX_DOC_BYTES {
        return Err(Error::DocTooLarge {
            size,
            max: MAX_DOC_BYTES,
        });
    }
    Ok(())
}

/// Checks a message before it is published: channel name, nesting and size of the payload.
pub fn check_message(channel: &str, payload: &Value) -> Result<()> {
    check_name("channel", channel, false)?;
    if too_deep(payload, MAX_VALUE_DEPTH) {
        return Err(depth_error("a message payload"));
    }
    let size = size_bound(payload);
    if size > MAX_MESSAGE_BYTES {
        return Err(Error::MessageTooLarge {
            size,
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}

/// A document (the object itself is one level) nests at most [`MAX_VALUE_DEPTH`] levels.
fn check_object_depth(m: &Map<String, Value>) -> Result<()> {
    if m.values().any(|v| too_deep(v, MAX_VALUE_DEPTH - 1)) {
        return Err(depth_error("a document"));
    }
    Ok(())
}

fn depth_error(what: &str) -> Error {
    Error::Malformed(format!(
        "{what} nests deeper than {MAX_VALUE_DEPTH} arrays/objects"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_binary, encode_binary};
    use crate::frame::{DocEntry, Push};
    use crate::{Engine, EngineConfig, ErrorCode, Frame, ReplicaId, Tier};
    use serde_json::json;

    fn nested(levels: usize) -> Map<String, Value> {
        let mut v = json!(1);
        for _ in 1..levels {
            v = json!({ "a": v });
        }
        let mut m = Map::new();
        m.insert("a".into(), v);
        m
    }

    fn key() -> DocKey {
        DocKey::new("notes", "n1")
    }

    #[test]
    fn a_document_nests_at_most_64_levels_and_what_is_accepted_reads_back() {
        let ok = WriteOp::Put(nested(MAX_VALUE_DEPTH));
        assert_eq!(check_doc_write(&key(), &ok, None), Ok(()));
        for levels in [MAX_VALUE_DEPTH + 1, MAX_VALUE_DEPTH + 7, 200] {
            let deep = WriteOp::Put(nested(levels));
            let e = check_doc_write(&key(), &deep, None).map(|_| ());
            assert_eq!(
                e.map_err(|e| e.code()),
                Err(ErrorCode::Malformed),
                "{levels}"
            );
        }
        // The deepest accepted document survives a store record (a one-document push).
        let mut e = Engine::new(EngineConfig::new(ReplicaId(1), Tier::Local, "s"));
        assert!(crate::testing::write(&mut e, 1, key(), ok).is_ok());
        let batch = e.poll_persist();
        let state = batch.and_then(|b| b.docs.into_iter().next());
        let Some((k, state)) = state else {
            panic!("no batch")
        };
        let record = Frame::Push(Push {
            seq: 0,
            docs: vec![DocEntry {
                collection: k.collection,
                id: k.id,
                state: crate::DocState::clone(&state),
            }],
            watermark: crate::VersionVector::new(),
            remaining: 0,
            expanded: false,
        });
        assert_eq!(decode_binary(&encode_binary(&record)), Ok(record));
    }

    #[test]
    fn names_and_sizes_are_refused_with_stable_codes() {
        let code = |r: Result<()>| r.map_err(|e| e.code());
        let v = WriteOp::Put(Map::new());
        assert_eq!(
            code(check_doc_write(&DocKey::new("", "x"), &v, None)),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(check_doc_write(&DocKey::new("_x", "x"), &v, None)),
            Err(ErrorCode::BadRequest)
        );
        let mut big = Map::new();
        big.insert("s".into(), json!("x".repeat(MAX_DOC_BYTES)));
        assert_eq!(
            code(check_doc_write(&key(), &WriteOp::Put(big), None)),
            Err(ErrorCode::TooLarge)
        );
        let half = json!({ "s": "x".repeat(MAX_DOC_BYTES / 2 + 10) });
        let mut patch = Map::new();
        patch.insert("t".into(), json!("y".repeat(MAX_DOC_BYTES / 2 + 10)));
        assert_eq!(
            code(check_doc_write(&key(), &WriteOp::Patch(patch), Some(&half))),
            Err(ErrorCode::TooLarge)
        );
        assert_eq!(code(check_message("chat", &json!({"t": "hi"}))), Ok(()));
        assert_eq!(
            code(check_message("", &json!(1))),
            Err(ErrorCode::BadRequest)
        );
        let huge = json!("x".repeat(1 << 20));
        assert_eq!(code(check_message("chat", &huge)), Err(ErrorCode::TooLarge));
        let deep = Value::Object(nested(MAX_VALUE_DEPTH + 1));
        assert_eq!(
            code(check_message("chat", &deep)),
            Err(ErrorCode::Malformed)
        );
    }
}
