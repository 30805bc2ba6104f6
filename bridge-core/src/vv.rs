//! Version vectors: per replica, the highest counter known.
//!
//! A space-level vector summarises everything a store holds, so a peer can be sent exactly
//! what it lacks. A document's causal context is a vector too (see [`crate::doc`]).

use crate::{Dot, ReplicaId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Per replica, the highest write counter known. Since counters are gap-free, an entry
/// `r: c` stands for every dot `(r, 1..=c)`, so a vector is a set of writes and
/// [`VersionVector::join`] is its union. Serialized as a JSON object from hex replica id to
/// counter.
///
/// Never holds a zero entry (it would mean the same as no entry, yet compare unequal), not
/// even when deserialized.
///
/// Entries are kept sorted by replica id, one per replica, in a `Vec`: vectors are small, and
/// a B-tree would be compiled once more for this key and value type (the browser package's
/// size). Serialized as a map, as a `BTreeMap` would be.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionVector(Vec<(ReplicaId, u64)>);

impl fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Entries<'a>(&'a [(ReplicaId, u64)]);
        impl fmt::Debug for Entries<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(r, c)| (r, c)))
                    .finish()
            }
        }
        f.debug_tuple("VersionVector")
            .field(&Entries(&self.0))
            .finish()
    }
}

impl Serialize for VersionVector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(r, c)| (r, c)))
    }
}

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<ReplicaId, u64>::deserialize(d).map(|m| m.into_iter().collect())
    }
}

impl VersionVector {
    /// The empty vector: no write known.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter known for `r`; 0 when none.
    pub fn get(&self, r: ReplicaId) -> u64 {
        match self.find(r) {
            Ok(i) => self.0[i].1,
            Err(_) => 0,
        }
    }

    /// Where `r`'s entry is, or where it would go.
    fn find(&self, r: ReplicaId) -> Result<usize, usize> {
        self.0.binary_search_by(|(x, _)| x.cmp(&r))
    }

    /// Raises the entry for `r` to at least `c`.
    pub fn raise(&mut self, r: ReplicaId, c: u64) {
        if c == 0 {
            return;
        }
        match self.find(r) {
            Ok(i) => {
                let e = &mut self.0[i].1;
                if *e < c {
                    *e = c;
                }
            }
            Err(i) => self.0.insert(i, (r, c)),
        }
    }

    /// Forgets what is known of `r` (as if nothing of it were held).
    pub fn forget(&mut self, r: ReplicaId) {
        if let Ok(i) = self.find(r) {
            self.0.remove(i);
        }
    }

    /// Adds one write: raises `d.replica`'s entry to `d.counter` (to at least that).
    pub fn add_dot(&mut self, d: Dot) {
        self.raise(d.replica, d.counter);
    }

    /// Whether the vector covers the write `d` (its replica's entry is at least its counter).
    pub fn contains(&self, d: Dot) -> bool {
        self.get(d.replica) >= d.counter
    }

    /// Raises every entry to at least `other`'s: afterwards `self` dominates both.
    pub fn join(&mut self, other: &VersionVector) {
        for (r, c) in &other.0 {
            self.raise(*r, *c);
        }
    }

    /// True when every entry of `other` is ≤ ours.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(r, c)| self.get(*r) >= *c)
    }

    /// The entries, in replica id order; never one with counter 0.
    pub fn iter(&self) -> impl Iterator<Item = (ReplicaId, u64)> + '_ {
        self.0.iter().copied()
    }

    /// Number of replicas with an entry.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No entry: the vector knows no write.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sum over entries of how far `self` is ahead of `other`: a lag measure for status.
    pub fn ahead_of(&self, other: &VersionVector) -> u64 {
        self.0
            .iter()
            .map(|(r, c)| c.saturating_sub(other.get(*r)))
            .sum()
    }
}

impl FromIterator<(ReplicaId, u64)> for VersionVector {
    fn from_iter<T: IntoIterator<Item = (ReplicaId, u64)>>(iter: T) -> Self {
        let mut v = VersionVector::new();
        for (r, c) in iter {
            v.raise(r, c);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 the same `#[test]` functions run under wasm-bindgen-test (see scripts/test.sh).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn join_takes_max_and_dominates() {
        let a: VersionVector = [(ReplicaId(1), 3), (ReplicaId(2), 1)].into_iter().collect();
        let b: VersionVector = [(ReplicaId(2), 5)].into_iter().collect();
        let mut j = a.clone();
        j.join(&b);
        assert_eq!(j.get(ReplicaId(1)), 3);
        assert_eq!(j.get(ReplicaId(2)), 5);
        assert!(j.dominates(&a) && j.dominates(&b));
        assert!(!a.dominates(&b));
        assert_eq!(j.ahead_of(&a), 4);
        assert!(j.contains(Dot::new(ReplicaId(2), 5)));
        assert!(!j.contains(Dot::new(ReplicaId(3), 1)));
    }

    #[test]
    fn zero_entries_are_dropped_when_deserialized() {
        let v: VersionVector =
            serde_json::from_str(r#"{"01":0,"02":3}"#).expect("a vector in JSON");
        assert_eq!(v, [(ReplicaId(2), 3)].into_iter().collect());
    }
}
