//! A document's body as stored: its top-level fields, each with the stamp of the write that
//! last changed it. Documents ([`crate::doc`]) hold bodies; policies ([`crate::policy`]) pick
//! and combine them; the codecs carry them.

use crate::Stamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One top-level field as a write left it: the stamp of the write that last changed it, and
/// its value (`None` when that write removed it, kept so an older concurrent value loses).
///
/// In JSON an absent `value` is a removed field and `"value": null` is a field holding `null`
/// (a `put` of `{"a": null}`); plain `Option` deserialization would read both as removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The stamp of the write that last changed the field (set or removed it).
    pub stamp: Stamp,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_value"
    )]
    /// The field's value; `None` when that write removed it.
    pub value: Option<Value>,
}

fn present_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A document body: top-level field name to [`Field`], in name order.
pub type Fields = BTreeMap<String, Field>;

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 the same `#[test]` functions run under wasm-bindgen-test (see scripts/test.sh).
    use crate::ReplicaId;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_null_field_survives_json_and_a_removed_one_stays_removed() {
        let stamp = Stamp::new(1, 0, ReplicaId(1));
        for value in [None, Some(Value::Null), Some(Value::from(1))] {
            let f = Field { stamp, value };
            let text = serde_json::to_string(&f).expect("serializable");
            let back: Field = serde_json::from_str(&text).expect("round trip");
            assert_eq!(back, f, "{text}");
        }
    }
}
