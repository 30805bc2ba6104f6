//! Frame encodings: JSON text (for any agent, no SDK) and compact binary (for peers).
//!
//! Both check the size limit before parsing and the protocol version before interpreting,
//! and neither panics on any input: bad bytes become a typed [`Error`].
//!
//! JSON: one object per WebSocket text message, `"type"` names the frame, `"v"` the protocol
//! version (optional; absent means 1).

use crate::frame::{Frame, MAX_FRAME_BYTES, PROTOCOL_VERSION};
use crate::{Error, Result};
use serde_json::Value;

/// Encodes a frame as a JSON text frame (with `"v"`).
pub fn encode_json(frame: &Frame) -> String {
    let mut v = serde_json::to_value(frame).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("v".into(), Value::from(PROTOCOL_VERSION));
    }
    v.to_string()
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
    serde_json::from_value(v).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("unknown variant") {
            Error::UnknownType(ty)
        } else {
            Error::Malformed(format!("`{ty}` frame: {msg}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

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
            let err = decode_json(input).unwrap_err();
            assert_eq!(err.code(), code, "{}", String::from_utf8_lossy(input));
        }
        let big = vec![b' '; MAX_FRAME_BYTES + 1];
        assert_eq!(decode_json(&big).unwrap_err().code(), ErrorCode::TooLarge);
    }

    #[test]
    fn agent_frame_without_version_decodes() {
        let f = decode_json(br#"{"type":"put","collection":"notes","id":"a","value":{"t":"hi"}}"#)
            .expect("valid put");
        assert_eq!(f.type_name(), "put");
        let back = decode_json(encode_json(&f).as_bytes()).expect("round trip");
        assert_eq!(back, f);
    }
}
