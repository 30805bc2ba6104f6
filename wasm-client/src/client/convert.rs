//! JavaScript values ⇄ Rust: name and value arguments, checked before anything is staged,
//! and errors as JavaScript `Error`s with a stable `code`.

use bridge_core::{codec, Error};
use serde::Serialize;
use serde_json::{Map, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

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

/// A JavaScript value → JSON, as `JSON.stringify` writes it (so `toJSON`, dropped
/// `undefined`s, `NaN` → `null` and cycle errors are JavaScript's own), read back with
/// `JSON.parse` and walked into a [`Value`] without a JSON text parser in the package. It
/// reads exactly what `serde_json` would read from that text: integers as `u64` / `i64` when
/// they fit, other numbers as `f64`; text with a lone surrogate is refused, and so is
/// nesting of [`PARSE_DEPTH`] arrays/objects (the limits proper, `bridge_core::limits`, are
/// checked on the result).
pub(super) fn value_from_js(v: &JsValue, what: &str) -> Result<Value, Error> {
    let not_json = |e: JsValue| Error::Malformed(format!("{what} is not JSON: {}", describe(&e)));
    let text = js_sys::JSON::stringify(v).map_err(not_json)?;
    let Some(text) = text.as_string() else {
        return Err(Error::Malformed(format!("{what} is not a JSON value")));
    };
    if has_lone_surrogate(&text) {
        return Err(Error::Malformed(format!(
            "{what} is not JSON: a string holds a lone surrogate"
        )));
    }
    let plain = js_sys::JSON::parse(&text).map_err(not_json)?;
    plain_to_value(&plain, PARSE_DEPTH).ok_or_else(|| {
        Error::Malformed(format!(
            "{what} nests deeper than {} arrays/objects",
            codec::MAX_VALUE_DEPTH
        ))
    })
}

/// The nesting at which a value is refused while it is read (`serde_json`'s recursion limit:
/// 127 levels pass). Deeper than [`codec::MAX_VALUE_DEPTH`] is refused later, by the limits.
const PARSE_DEPTH: usize = 128;

/// A value `JSON.parse` returned (plain objects, arrays, strings, finite numbers, booleans,
/// `null`) → [`Value`]; `depth` is how many more arrays/objects may open (none: too deep).
fn plain_to_value(v: &JsValue, depth: usize) -> Option<Value> {
    if let Some(b) = v.as_bool() {
        return Some(Value::Bool(b));
    }
    if let Some(n) = v.as_f64() {
        return Some(number(v, n));
    }
    if v.is_string() {
        return Some(Value::String(plain_string(v)));
    }
    if v.is_null() || !v.is_object() {
        return Some(Value::Null);
    }
    let depth = depth - 1;
    if depth == 0 {
        return None;
    }
    if js_sys::Array::is_array(v) {
        let a: &js_sys::Array = v.unchecked_ref();
        return a
            .iter()
            .map(|x| plain_to_value(&x, depth))
            .collect::<Option<_>>()
            .map(Value::Array);
    }
    let mut map = Map::new();
    for key in js_sys::Object::keys::<JsValue>(v.unchecked_ref()).iter() {
        let item = js_sys::Reflect::get(v, &key).unwrap_or(JsValue::NULL);
        map.insert(plain_string(&key), plain_to_value(&item, depth)?);
    }
    Some(Value::Object(map))
}

fn plain_string(v: &JsValue) -> String {
    v.as_string().unwrap_or_default()
}

/// Whether `JSON.stringify`'s text holds a lone surrogate: it writes paired surrogates as
/// they are and a lone one as an escape `\udXXX` (X from 8 on), which JSON readers refuse.
fn has_lone_surrogate(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'u')
                && matches!(b.get(i + 2), Some(b'd' | b'D'))
                && matches!(b.get(i + 3), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'))
            {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// A finite number as `serde_json` reads the text `JSON.stringify` writes for it: without a
/// fraction or an exponent it is an integer, `u64` (`i64` if negative) when it fits, else the
/// `f64`. Integers from 2^53 on are written as their shortest digits padded with zeros
/// (2^60 as `1152921504606847000`), so those are read from JavaScript's text.
fn number(v: &JsValue, n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() != 0.0 || !n.is_finite() {
        return serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number);
    }
    if n.abs() < EXACT {
        return if n < 0.0 {
            Value::from(n as i64)
        } else {
            Value::from(n as u64)
        };
    }
    let text = String::from(
        v.unchecked_ref::<js_sys::Number>()
            .to_string_with_radix(10)
            .unwrap_or_default(),
    );
    if let Ok(u) = text.parse::<u64>() {
        Value::from(u)
    } else if let Ok(i) = text.parse::<i64>() {
        Value::from(i)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

pub(super) fn describe_value(v: &JsValue) -> String {
    v.as_f64()
        .and_then(|_| {
            v.unchecked_ref::<js_sys::Number>()
                .to_string_with_radix(10)
                .ok()
        })
        .map(String::from)
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
