//! JavaScript values ⇄ Rust: name and value arguments, checked before anything is staged,
//! and errors as JavaScript `Error`s with a stable `code`.

use bridge_core::{codec, Error};
use serde::Serialize;
use serde_json::{Map, Value};
use wasm_bindgen::prelude::*;

/// An `Error` with code `internal`: the browser or its storage failed.
pub(super) fn js_err(e: impl std::fmt::Display) -> JsValue {
    coded("internal", &e.to_string())
}

/// A JavaScript `Error` whose `code` is `code` (a stable code of docs/protocol.md, or
/// `"closed"`).
pub(super) fn coded(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = js_sys::Reflect::set(&e, &"code".into(), &code.into());
    e.into()
}

/// A core error as a JavaScript `Error` with its stable `code`.
pub(super) fn core_err(e: &Error) -> JsValue {
    coded(e.code().as_str(), &e.to_string())
}

/// A name argument (collection, document id, channel): a string, else `bad_request` — a
/// number passed where wasm-bindgen expects a string would be read as a pointer.
pub(super) fn name_arg(v: &JsValue, what: &'static str) -> Result<String, Error> {
    v.as_string().ok_or_else(|| Error::BadName {
        what,
        name: describe_value(v),
        why: "it is not a string",
    })
}

/// An optional name argument: `undefined` / `null` are none.
pub(super) fn opt_name_arg(v: &JsValue, what: &'static str) -> Result<Option<String>, Error> {
    if v.is_undefined() || v.is_null() {
        Ok(None)
    } else {
        name_arg(v, what).map(Some)
    }
}

/// A JavaScript value → JSON, through `JSON.stringify` and the core's parser, whose nesting
/// limit (128) keeps any input from exhausting the wasm stack; the limits proper
/// (`bridge_core::limits`) are checked on the result.
pub(super) fn value_from_js(v: &JsValue, what: &str) -> Result<Value, Error> {
    let text = js_sys::JSON::stringify(v)
        .map_err(|e| Error::Malformed(format!("{what} is not JSON: {}", describe(&e))))?;
    let Some(text) = text.as_string() else {
        return Err(Error::Malformed(format!("{what} is not a JSON value")));
    };
    serde_json::from_str(&text).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            Error::Malformed(format!(
                "{what} nests deeper than {} arrays/objects",
                codec::MAX_VALUE_DEPTH
            ))
        } else {
            Error::Malformed(format!("{what} is not JSON: {e}"))
        }
    })
}

pub(super) fn describe_value(v: &JsValue) -> String {
    v.as_f64()
        .map(|n| n.to_string())
        .or_else(|| v.js_typeof().as_string())
        .unwrap_or_default()
}

pub(super) fn describe(e: &JsValue) -> String {
    js_sys::Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Rust value → JavaScript value through JSON text (exact for every JSON document, including
/// integers beyond 2^53, which become the nearest double as with `JSON.parse` anywhere).
pub(super) fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    let text = serde_json::to_string(v).map_err(js_err)?;
    js_sys::JSON::parse(&text)
}

pub(super) fn object_from_js(value: &JsValue) -> Result<Map<String, Value>, Error> {
    match value_from_js(value, "the document")? {
        Value::Object(m) => Ok(m),
        Value::Array(_) => Err(Error::NotAnObject("an array")),
        _ => Err(Error::NotAnObject("a value that is not an object")),
    }
}
