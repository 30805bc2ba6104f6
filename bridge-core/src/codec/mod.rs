//! Frame encodings: JSON text (for any agent, no SDK) and compact binary (for peers, see
//! [`binary`] for its layout). With feature `sql`, also the compact form a store keeps a
//! document state in ([`binary::state`]: [`encode_state`], [`decode_state`]).
//!
//! Both check the size limit before parsing and the protocol version before interpreting,
//! and neither panics on any input: bad bytes become a typed [`Error`]. Both also apply the
//! same checks after parsing — JSON values nest at most [`MAX_VALUE_DEPTH`] levels, document
//! states keep their invariants — so a frame one decoder accepts can be re-encoded in the
//! other form and is accepted there too.
//!
//! JSON: one object per WebSocket text message, `"type"` names the frame, `"v"` the protocol
//! version (optional; absent means 1).

pub mod binary;

/// A document state as a store keeps it (`docs.state`): see [`binary::state`].
#[cfg(feature = "sql")]
pub use binary::state::{decode_state, encode_state, state_dots, StateColumn};
pub use binary::{decode_binary, decode_hello_record, encode_binary};

use serde::Deserialize;

use crate::doc::DocState;
use crate::frame::{Frame, MAX_FRAME_BYTES, PROTOCOL_VERSION};
use crate::{Error, Result};
use serde_json::Value;

/// How many arrays and objects a JSON value inside a frame may nest. Deeper input is
/// `malformed` in both encodings, so no decoder (or anything walking a decoded value
/// recursively) can be driven into a stack overflow.
pub const MAX_VALUE_DEPTH: usize = 64;

/// Decodes a frame in either form: `binary` for a WebSocket binary message, otherwise JSON
/// text.
pub fn decode(bytes: &[u8], binary: bool) -> Result<Frame> {
    if binary {
        decode_binary(bytes)
    } else {
        decode_json(bytes)
    }
}

/// The `req` a frame carries, read from its bytes without decoding the frame: for a frame
/// that does not decode (unknown `type`, unsupported `v`, a missing or mistyped field, over
/// the size limit), so that the `error` answering it still names the request. `None` when
/// the bytes are not a JSON object with an integer `req` (or, in binary, a request frame
/// whose `req` is readable).
pub fn request_id(bytes: &[u8], binary: bool) -> Option<u64> {
    if binary {
        return binary::request_id(bytes);
    }
    /// Only `req`; serde skips every other field without building it.
    #[derive(Deserialize)]
    struct ReqOnly {
        #[serde(default)]
        req: Option<u64>,
    }
    serde_json::from_slice::<ReqOnly>(bytes).ok()?.req
}

/// Re-encodes `frame` in both forms and decodes each back, describing the first difference.
/// Every frame a decoder accepts must pass: the property tests, the fuzz target and the
/// crasher replay all assert it.
pub fn check_round_trip(frame: &Frame) -> std::result::Result<(), String> {
    let json = encode_json(frame);
    match decode_json(json.as_bytes()) {
        Ok(back) if back == *frame => {}
        other => return Err(format!("JSON {json} decoded to {other:?}, not {frame:?}")),
    }
    let binary = encode_binary(frame);
    match decode_binary(&binary) {
        Ok(back) if back == *frame => Ok(()),
        other => Err(format!(
            "binary {binary:?} decoded to {other:?}, not {frame:?}"
        )),
    }
}

/// Largest document a write may produce, by [`size_bound`]. A push carries whole document
/// states (every sibling), so documents must stay well under [`MAX_FRAME_BYTES`].
pub const MAX_DOC_BYTES: usize = 256 * 1024;

/// An upper bound on the bytes `value` takes in either encoding: exact for JSON text, and
/// never below the binary form (which is at most a few bytes more for a number).
pub fn size_bound(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(n) => n.to_string().len().max(10),
        Value::String(s) => string_bound(s),
        Value::Array(a) => 2 + a.iter().map(|v| size_bound(v) + 1).sum::<usize>(),
        Value::Object(m) => object_size_bound(m),
    }
}

/// An upper bound on the bytes a document state takes inside a `push`, in either encoding.
pub fn doc_state_size_bound(key: &crate::DocKey, state: &DocState) -> usize {
    // A stamp or dot in JSON: {"wall":…,"counter":…,"replica":"…16 hex…"} is under 80 bytes.
    const STAMP: usize = 80;
    let siblings: usize = state
        .siblings
        .iter()
        .map(|s| {
            let body: usize = s.body.as_ref().map_or(0, |b| {
                b.iter()
                    .map(|(k, f)| {
                        string_bound(k) + 16 + STAMP + f.value.as_ref().map_or(0, size_bound)
                    })
                    .sum()
            });
            3 * STAMP + 40 + body
        })
        .sum();
    string_bound(&key.collection) + string_bound(&key.id) + 80 + siblings + 30 * state.context.len()
}

/// [`size_bound`] of a JSON object given as its map.
pub fn object_size_bound(m: &serde_json::Map<String, Value>) -> usize {
    2 + m
        .iter()
        .map(|(k, v)| string_bound(k) + 1 + size_bound(v) + 1)
        .sum::<usize>()
}

fn string_bound(s: &str) -> usize {
    // JSON escapes control characters as \u00XX (at most 6 bytes) and `"` / `\` as 2.
    let escaped: usize = s
        .bytes()
        .map(|b| match b {
            0..=0x1f => 6,
            b'"' | b'\\' => 2,
            _ => 1,
        })
        .sum();
    escaped + 5
}

/// Checks that `value` nests at most [`MAX_VALUE_DEPTH`] arrays and objects; for hosts that
/// accept documents by other paths than frames (HTTP, imports).
pub fn check_value_depth(value: &Value) -> Result<()> {
    if too_deep(value, MAX_VALUE_DEPTH) {
        return Err(Error::Malformed(format!(
            "a JSON value nests deeper than {MAX_VALUE_DEPTH} arrays/objects"
        )));
    }
    Ok(())
}

/// True when `v` holds more than `budget` nested containers. Recurses at most `budget + 1`
/// levels whatever the input.
pub(crate) fn too_deep(v: &Value, budget: usize) -> bool {
    match v {
        Value::Array(items) => budget == 0 || items.iter().any(|c| too_deep(c, budget - 1)),
        Value::Object(m) => budget == 0 || m.values().any(|c| too_deep(c, budget - 1)),
        _ => false,
    }
}

/// The invariants [`DocState::join`] relies on: siblings sorted by dot without duplicates,
/// and every sibling's dot inside the context.
pub fn check_doc_state(state: &DocState) -> std::result::Result<(), &'static str> {
    if state.siblings.windows(2).any(|w| w[0].dot >= w[1].dot) {
        return Err("document siblings must be sorted by dot without duplicates");
    }
    if state
        .siblings
        .iter()
        .any(|s| !state.context.contains(s.dot))
    {
        return Err("a document sibling's dot is missing from its context");
    }
    Ok(())
}

/// The checks the binary decoder makes while parsing, made on a frame decoded from JSON.
fn check_decoded(frame: &Frame) -> Result<()> {
    let mut values: Vec<&Value> = Vec::new();
    match frame {
        Frame::Push(p) => {
            for d in &p.docs {
                check_doc_state(&d.state).map_err(|why| {
                    Error::Malformed(format!("`push` frame, {}/{}: {why}", d.collection, d.id))
                })?;
                let bodies = d.state.siblings.iter().filter_map(|s| s.body.as_ref());
                values.extend(bodies.flat_map(|b| b.values().filter_map(|f| f.value.as_ref())));
            }
        }
        Frame::Put { value, .. } | Frame::Patch { value, .. } => values.push(value),
        Frame::Send { payload, .. } => values.push(payload),
        Frame::Broadcast { message, .. } => values.push(&message.payload),
        Frame::Doc { doc, .. } | Frame::Change { doc } => values.extend(doc.value.as_ref()),
        Frame::Docs { docs, .. } => values.extend(docs.iter().filter_map(|d| d.value.as_ref())),
        Frame::ConflictList { conflicts, .. } => {
            let sides = conflicts.iter().flat_map(|c| &c.sides);
            values.extend(sides.filter_map(|s| s.value.as_ref()));
        }
        Frame::Conflict { conflict } => {
            values.extend(conflict.sides.iter().filter_map(|s| s.value.as_ref()));
        }
        Frame::Resolve { value, .. } => values.extend(value.as_ref()),
        // Listed one by one so that a new frame type has to decide whether it carries values.
        Frame::Hello(_)
        | Frame::Welcome(_)
        | Frame::Ack(_)
        | Frame::Pull { .. }
        | Frame::Report { .. }
        | Frame::Horizon { .. }
        | Frame::Resync { .. }
        | Frame::Inventory { .. }
        | Frame::Replicate { .. }
        | Frame::Replicated { .. }
        | Frame::Delete { .. }
        | Frame::Get { .. }
        | Frame::List { .. }
        | Frame::Subscribe { .. }
        | Frame::Unsubscribe { .. }
        | Frame::Presence { .. }
        | Frame::Conflicts { .. }
        | Frame::SetPolicy { .. }
        | Frame::Error { .. }
        | Frame::Ping { .. }
        | Frame::Pong { .. } => {}
    }
    for v in values {
        check_value_depth(v).map_err(|e| match e {
            Error::Malformed(m) => Error::Malformed(format!("`{}` frame: {m}", frame.type_name())),
            other => other,
        })?;
    }
    Ok(())
}

/// Encodes a frame as a JSON text frame (with `"v"`).
pub fn encode_json(frame: &Frame) -> String {
    let mut v = serde_json::to_value(frame).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("v".into(), Value::from(PROTOCOL_VERSION));
    }
    v.to_string()
}

/// True when `ty` names a frame type. Asked of serde itself (a frame with only its `type`
/// fails with "unknown variant" exactly when the type is unknown), so the answer cannot
/// drift from [`Frame`]; only on the error path.
fn is_frame_type(ty: &str) -> bool {
    match serde_json::from_value::<Frame>(serde_json::json!({ "type": ty })) {
        Ok(_) => true,
        Err(e) => !e.to_string().starts_with("unknown variant"),
    }
}

/// Decodes a JSON text frame.
pub fn decode_json(bytes: &[u8]) -> Result<Frame> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(Error::TooLarge {
            size: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let mut v: Value =
        serde_json::from_slice(bytes).map_err(|e| Error::Malformed(format!("not JSON: {e}")))?;
    let Value::Object(m) = &mut v else {
        return Err(Error::Malformed("a frame must be a JSON object".into()));
    };
    match m.remove("v") {
        None => {}
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(other) => {
            let got = other
                .as_u64()
                .map(|n| n.min(u64::from(u32::MAX)) as u32)
                .unwrap_or(0);
            return Err(Error::UnsupportedVersion {
                got,
                supported: PROTOCOL_VERSION,
            });
        }
    }
    let ty = match m.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Error::Malformed("`type` must be a string".into())),
        None => return Err(Error::Malformed("a frame needs a `type`".into())),
    };
    if ty == "set_policy" {
        // Answered like the HTTP API: `bad_policy`, not a generic decode error.
        if let Some(Value::String(p)) = m.get("policy") {
            p.parse::<crate::Policy>()?;
        }
    }
    let frame = serde_json::from_value(v).map_err(|e| {
        if is_frame_type(&ty) {
            Error::Malformed(format!("`{ty}` frame: {e}"))
        } else {
            Error::UnknownType(ty.clone())
        }
    })?;
    check_decoded(&frame)?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 the same `#[test]` functions run under wasm-bindgen-test (see scripts/test.sh).
    use crate::ErrorCode;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn json_errors_have_stable_codes() {
        let cases: [(&[u8], ErrorCode); 6] = [
            (b"{", ErrorCode::Malformed),
            (b"[1,2]", ErrorCode::Malformed),
            (br#"{"type":"nope"}"#, ErrorCode::UnknownType),
            (br#"{"type":"ping","v":9}"#, ErrorCode::UnsupportedVersion),
            (br#"{"type":"put","collection":"c"}"#, ErrorCode::Malformed),
            (br#"{"v":1}"#, ErrorCode::Malformed),
        ];
        for (input, code) in cases {
            let err = decode_json(input).expect_err("must be refused");
            assert_eq!(err.code(), code, "{}", String::from_utf8_lossy(input));
        }
        let big = vec![b' '; MAX_FRAME_BYTES + 1];
        assert_eq!(
            decode_json(&big).expect_err("must be refused").code(),
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn errors_of_frames_that_do_not_decode_keep_their_req() {
        let cases: [(&[u8], ErrorCode); 5] = [
            (br#"{"type":"nope","req":1}"#, ErrorCode::UnknownType),
            (
                br#"{"type":"ping","v":2,"req":1}"#,
                ErrorCode::UnsupportedVersion,
            ),
            (
                br#"{"type":"list","req":1,"collection":"c","limit":-1}"#,
                ErrorCode::Malformed,
            ),
            (
                br#"{"type":"set_policy","req":1,"collection":"c","policy":"newest"}"#,
                ErrorCode::BadPolicy,
            ),
            // A known type with a bad enum value elsewhere is not an unknown type.
            (
                br#"{"type":"hello","req":1,"space":"s","kind":"hello"}"#,
                ErrorCode::Malformed,
            ),
        ];
        for (input, code) in cases {
            let err = decode_json(input).expect_err("must be refused");
            assert_eq!(err.code(), code, "{}", String::from_utf8_lossy(input));
            assert_eq!(request_id(input, false), Some(1));
        }
        assert_eq!(request_id(b"{not json", false), None);
        assert_eq!(request_id(br#"{"req":"x"}"#, false), None);
        let put = Frame::Put {
            req: Some(300),
            collection: "c".into(),
            id: "i".into(),
            value: serde_json::json!({}),
        };
        let mut bytes = encode_binary(&put);
        assert_eq!(request_id(&bytes, true), Some(300));
        bytes.truncate(5);
        assert!(decode_binary(&bytes).is_err());
        assert_eq!(
            request_id(&bytes, true),
            Some(300),
            "the req survives a cut frame"
        );
        assert_eq!(
            request_id(&encode_binary(&Frame::Ping { nonce: 1 }), true),
            None
        );
    }

    #[test]
    fn agent_frame_without_version_decodes() {
        let f = decode_json(br#"{"type":"put","collection":"notes","id":"a","value":{"t":"hi"}}"#)
            .expect("valid put");
        assert_eq!(f.type_name(), "put");
        let back = decode_json(encode_json(&f).as_bytes()).expect("round trip");
        assert_eq!(back, f);
    }

    #[test]
    fn json_applies_the_binary_limits() {
        let deep = |levels: usize| {
            let value = "[".repeat(levels) + &"]".repeat(levels);
            format!(r#"{{"type":"put","collection":"c","id":"i","value":{value}}}"#)
        };
        assert!(decode_json(deep(MAX_VALUE_DEPTH).as_bytes()).is_ok());
        let err = decode_json(deep(MAX_VALUE_DEPTH + 1).as_bytes()).expect_err("must be refused");
        assert!(err.to_string().contains("nests deeper"), "{err}");
        // Siblings out of order would break DocState::join's binary search.
        let s = |c: u64| {
            format!(
                r#"{{"dot":{{"replica":"01","counter":{c}}},"stamp":{{"wall":1,"counter":0,"replica":"01"}},"tier":"local"}}"#
            )
        };
        let push = format!(
            r#"{{"type":"push","seq":1,"watermark":{{}},"docs":[{{"collection":"c","id":"i","state":{{"siblings":[{},{}],"context":{{"01":2}}}}}}]}}"#,
            s(2),
            s(1)
        );
        let err = decode_json(push.as_bytes()).expect_err("must be refused");
        assert!(err.to_string().contains("sorted by dot"), "{err}");
    }

    #[test]
    fn decode_picks_the_encoding() {
        let f = Frame::Ping { nonce: 9 };
        assert_eq!(decode(&encode_binary(&f), true), Ok(f.clone()));
        assert_eq!(decode(encode_json(&f).as_bytes(), false), Ok(f));
    }
}
