//! Conflict policies: deterministic functions from a document's sibling set to what it shows.
//!
//! Whatever order writes arrive in, replicas holding the same sibling set show the same
//! document, because the visible value is computed from the set alone. Authority (`cloud_wins`,
//! `local_wins`) only breaks ties between *concurrent* siblings: a write made after seeing
//! another has already removed it from the set.

use crate::doc::{DocState, Sibling};
use crate::{Error, Stamp, Tier};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The sibling with the highest stamp, whole document.
    #[default]
    #[serde(alias = "last_write_wins")]
    Lww,
    CloudWins,
    LocalWins,
    /// Field by field (top level): each field takes its newest value.
    Merge,
    /// Shows the `lww` winner and keeps the others as an open conflict until resolved.
    Manual,
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::Lww,
        Policy::CloudWins,
        Policy::LocalWins,
        Policy::Merge,
        Policy::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Lww => "lww",
            Policy::CloudWins => "cloud_wins",
            Policy::LocalWins => "local_wins",
            Policy::Merge => "merge",
            Policy::Manual => "manual",
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "lww" | "last_write_wins" => Policy::Lww,
            "cloud_wins" => Policy::CloudWins,
            "local_wins" => Policy::LocalWins,
            "merge" => Policy::Merge,
            "manual" => Policy::Manual,
            other => return Err(Error::BadPolicy(other.to_owned())),
        })
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sibling a whole-document policy shows.
pub fn winner(policy: Policy, state: &DocState) -> Option<&Sibling> {
    let rank = |s: &Sibling| -> (bool, Stamp) {
        let preferred = match policy {
            Policy::CloudWins => s.tier == Tier::Cloud,
            Policy::LocalWins => s.tier == Tier::Local,
            Policy::Lww | Policy::Merge | Policy::Manual => true,
        };
        (preferred, s.stamp)
    };
    state.siblings.iter().max_by_key(|s| rank(s))
}

/// The fields (with their stamps) a policy shows, or `None` when the document is deleted.
/// Field tombstones are kept in the result so a writer carries them forward.
pub fn visible_fields(policy: Policy, state: &DocState) -> Option<Fields> {
    let w = winner(policy, state)?;
    let body = w.body.as_ref()?;
    if policy != Policy::Merge {
        return Some(body.clone());
    }
    let mut out = Fields::new();
    for s in &state.siblings {
        let Some(b) = &s.body else { continue };
        for (k, f) in b {
            match out.get(k) {
                Some(cur) if cur.stamp >= f.stamp => {}
                _ => {
                    out.insert(k.clone(), f.clone());
                }
            }
        }
    }
    Some(out)
}

/// The JSON object a policy shows, or `None` when deleted.
pub fn visible(policy: Policy, state: &DocState) -> Option<Value> {
    visible_fields(policy, state).map(fields_to_object)
}

pub fn fields_to_object(fields: Fields) -> Value {
    let mut m = Map::new();
    for (k, f) in fields {
        if let Some(v) = f.value {
            m.insert(k, v);
        }
    }
    Value::Object(m)
}

/// One top-level field as a write left it: the stamp of the write that last changed it, and
/// its value (`None` when that write removed it, kept so an older concurrent value loses).
///
/// In JSON an absent `value` is a removed field and `"value": null` is a field holding `null`
/// (a `put` of `{"a": null}`); plain `Option` deserialization would read both as removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub stamp: Stamp,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_value"
    )]
    pub value: Option<Value>,
}

fn present_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

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
