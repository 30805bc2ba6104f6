//! Conflict policies: deterministic functions from a document's sibling set to what it shows.
//!
//! Whatever order writes arrive in, replicas holding the same sibling set show the same
//! document, because the visible value is computed from the set alone. Authority (`cloud_wins`,
//! `local_wins`) only breaks ties between *concurrent* siblings: a write made after seeing
//! another has already removed it from the set.

use crate::doc::{DocState, Sibling, WriteOp};
use crate::{Dot, Error, Stamp, Tier};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// Bodies live in `field.rs`, below both `doc` and this module; named here, as they always were.
pub use crate::field::{Field, Fields};

/// How a collection settles concurrent writes to one document. Set per collection in
/// `_config/collection:NAME`, defaulting to the space's default policy (`_config/space`). In
/// JSON: `lww`, `cloud_wins`, `local_wins`, `merge`, `manual` (`last_write_wins` is read as
/// `lww`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The sibling with the highest stamp, whole document.
    #[default]
    #[serde(alias = "last_write_wins")]
    Lww,
    /// Whole document: a sibling written by a cloud replica beats any local one; among those
    /// equal in that, the highest stamp.
    CloudWins,
    /// Whole document: a sibling written by a local replica beats any cloud one; among those
    /// equal in that, the highest stamp.
    LocalWins,
    /// Field by field (top level): each field takes its newest value.
    Merge,
    /// Shows the `lww` winner and keeps the others as an open conflict until resolved.
    Manual,
}

impl Policy {
    /// Every policy, in the order of their wire names in error messages.
    pub const ALL: [Policy; 5] = [
        Policy::Lww,
        Policy::CloudWins,
        Policy::LocalWins,
        Policy::Merge,
        Policy::Manual,
    ];

    /// The policy's wire name (`"cloud_wins"`), as [`std::str::FromStr`] reads it back.
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
            if merge_takes(out.get(k), f) {
                out.insert(k.clone(), f.clone());
            }
        }
    }
    Some(out)
}

/// The merge rule for one field, siblings taken in order: `f` replaces what was found so
/// far (`cur`) when its stamp is higher, so the first sibling's field wins a tie.
fn merge_takes(cur: Option<&Field>, f: &Field) -> bool {
    cur.is_none_or(|c| c.stamp < f.stamp)
}

/// The value of one field as [`visible`] shows it, without building the object: `None`
/// when the document is deleted or the field absent or removed.
pub fn visible_field<'a>(policy: Policy, state: &'a DocState, field: &str) -> Option<&'a Value> {
    let w = winner(policy, state)?;
    let body = w.body.as_ref()?;
    if policy != Policy::Merge {
        return body.get(field)?.value.as_ref();
    }
    let merged = state
        .siblings
        .iter()
        .filter_map(|s| s.body.as_ref()?.get(field))
        .fold(
            None,
            |best, f| if merge_takes(best, f) { Some(f) } else { best },
        );
    merged?.value.as_ref()
}

/// The JSON object a policy shows, or `None` when deleted.
pub fn visible(policy: Policy, state: &DocState) -> Option<Value> {
    visible_fields(policy, state).map(fields_to_object)
}

/// The JSON object of a body: every present field's value, removed fields left out.
pub fn fields_to_object(fields: Fields) -> Value {
    let mut m = Map::new();
    for (k, f) in fields {
        if let Some(v) = f.value {
            m.insert(k, v);
        }
    }
    Value::Object(m)
}

/// A write is made under the policy of its collection: the writer saw the visible document,
/// and a field keeps its stamp unless the write changed it.
impl DocState {
    /// Applies a local write that saw this whole state: the new sibling supersedes all others.
    /// `base` is the visible field set under the collection's policy, from which unchanged
    /// fields keep their stamps (so `merge` keeps concurrent edits to other fields).
    pub fn write(&mut self, policy: Policy, dot: Dot, stamp: Stamp, tier: Tier, op: WriteOp) {
        let base = visible_fields(policy, self);
        let body = match op {
            WriteOp::Delete => None,
            WriteOp::Put(obj) => {
                let mut fields = Fields::new();
                if let Some(base) = &base {
                    for (k, f) in base {
                        if !obj.contains_key(k) {
                            let stamp = if f.value.is_none() { f.stamp } else { stamp };
                            fields.insert(k.clone(), Field { stamp, value: None });
                        }
                    }
                }
                for (k, v) in obj {
                    let keep = base
                        .as_ref()
                        .and_then(|b| b.get(&k))
                        .filter(|f| f.value.as_ref() == Some(&v));
                    let field = match keep {
                        Some(f) => f.clone(),
                        None => Field {
                            stamp,
                            value: Some(v),
                        },
                    };
                    fields.insert(k, field);
                }
                Some(fields)
            }
            WriteOp::Patch(obj) => {
                let mut fields = base.unwrap_or_default();
                for (k, v) in obj {
                    let new = if v.is_null() { None } else { Some(v) };
                    if fields.get(&k).map(|f| &f.value) != Some(&new) {
                        fields.insert(k, Field { stamp, value: new });
                    }
                }
                Some(fields)
            }
        };
        self.context.add_dot(dot);
        self.siblings = vec![Sibling {
            dot,
            stamp,
            tier,
            body,
        }];
    }

    /// The JSON object `policy` shows, or `None` when deleted.
    pub fn visible(&self, policy: Policy) -> Option<Value> {
        visible(policy, self)
    }
}
