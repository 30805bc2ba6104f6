//! Document state: a multi-value register with dotted version vectors.
//!
//! Every write carries a [`Dot`] and the causal context it saw. The state keeps the writes
//! nobody has seen past (the *siblings*) and a context summarising every dot the document has
//! seen. [`DocState::join`] is the usual causal-CRDT join, so it is commutative, associative
//! and idempotent, and a stale write (one the context covers) can never come back — that is
//! what keeps deleted documents deleted.

use crate::field::Fields;
use crate::{Dot, Stamp, Tier, VersionVector};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BinaryHeap;

/// One write that no other write of the document has seen past: a document with more than
/// one sibling has concurrent versions, which its collection's policy picks from or combines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    /// The write that made this version.
    pub dot: Dot,
    /// Its hybrid-clock stamp (what `lww` and `merge` compare).
    pub stamp: Stamp,
    /// The tier of the replica that made it (what `cloud_wins` / `local_wins` prefer).
    pub tier: Tier,
    /// `None` is a tombstone: the document was deleted by this write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Fields>,
}

/// A document's whole replicated state, as stored and as carried by a push. The empty state
/// (no sibling, empty context) is a document never written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocState {
    /// Concurrent writes, sorted by dot.
    pub siblings: Vec<Sibling>,
    /// Every dot this document has seen.
    pub context: VersionVector,
}

/// What a write does to a document.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    /// Replace the whole document.
    Put(Map<String, Value>),
    /// JSON merge patch on top-level fields: `null` removes a field.
    Patch(Map<String, Value>),
    /// Delete the document: a tombstone sibling that replicates like any write.
    Delete,
}

/// Whether `siblings` (sorted by dot) holds a sibling with dot `d`.
fn has_dot(siblings: &[Sibling], d: Dot) -> bool {
    siblings.binary_search_by(|s| s.dot.cmp(&d)).is_ok()
}

/// Sorts siblings by dot and keeps the first of each dot. Every caller goes through this one
/// function. Siblings already strictly sorted (nearly always: one or two) are left as they
/// are; others are ordered by (dot, position) with a heap sort — what a stable sort by dot
/// gives, with far less code in the browser package than `sort_by_key`.
pub(crate) fn sort_siblings(siblings: &mut Vec<Sibling>) {
    if siblings.windows(2).all(|w| w[0].dot < w[1].dot) {
        return;
    }
    let order = BinaryHeap::from_iter(siblings.iter().enumerate().map(|(i, s)| (s.dot, i)));
    let mut old: Vec<Option<Sibling>> = std::mem::take(siblings).into_iter().map(Some).collect();
    siblings.extend(
        order
            .into_sorted_vec()
            .into_iter()
            .filter_map(|(_, i)| old.get_mut(i).and_then(Option::take)),
    );
    siblings.dedup_by(|a, b| a.dot == b.dot);
}

impl DocState {
    /// No sibling: the document was never written (a deleted one keeps its tombstone sibling).
    pub fn is_empty(&self) -> bool {
        self.siblings.is_empty()
    }

    /// Every sibling is a tombstone, or there is none (a resync took away what its server
    /// had collected): the document is deleted everywhere this state has reached, and may
    /// be collected once its whole context is stable.
    pub fn is_dead(&self) -> bool {
        self.siblings.iter().all(|s| s.body.is_none())
    }

    /// Reads a state a peer sent against what the peer is known to hold (`held`: below the
    /// horizon and durable at the peer): a sibling of `local` that the peer's state neither
    /// holds nor has seen, but whose dot `held` covers, was seen by the peer and is gone
    /// there (superseded by a document it collected, or collected itself), so the peer's
    /// state counts as having seen it. Only the dots of such siblings are added to this
    /// state's context (they are in `local`'s already, so the join's context does not grow).
    /// Whether it counted any sibling as seen.
    pub fn read_against(&mut self, local: &DocState, held: &VersionVector) -> bool {
        let mut read = false;
        for s in &local.siblings {
            if held.contains(s.dot) && !self.context.contains(s.dot) && !self.has_dot(s.dot) {
                self.context.raise(s.dot.replica, s.dot.counter);
                read = true;
            }
        }
        read
    }

    /// Whether a sibling with dot `d` is live in this state.
    pub fn has_dot(&self, d: Dot) -> bool {
        has_dot(&self.siblings, d)
    }

    /// Causal join of two states of the same document.
    pub fn join(&mut self, other: &DocState) {
        let mut out: Vec<Sibling> = Vec::with_capacity(self.siblings.len() + other.siblings.len());
        for s in &self.siblings {
            if other.has_dot(s.dot) || !other.context.contains(s.dot) {
                out.push(s.clone());
            }
        }
        for s in &other.siblings {
            if !self.context.contains(s.dot) && !self.has_dot(s.dot) {
                out.push(s.clone());
            }
        }
        sort_siblings(&mut out);
        self.siblings = out;
        self.context.join(&other.context);
    }

    /// True when [`DocState::join`] with `other` would change this state. Decided from dots
    /// and contexts alone, so applying a push need not clone a state to compare it after.
    pub fn join_changes(&self, other: &DocState) -> bool {
        // `join` leaves the siblings strictly sorted by dot; a state that is not would change.
        if self.siblings.windows(2).any(|w| w[0].dot >= w[1].dot) {
            return true;
        }
        if !self.context.dominates(&other.context) {
            return true;
        }
        // With our siblings strictly sorted, `join` keeps them as they are unless it drops one
        // or adds one of theirs: the two loops of `join`, asked the other way round.
        let drops = |s: &Sibling| !other.has_dot(s.dot) && other.context.contains(s.dot);
        let adds = |s: &Sibling| !self.context.contains(s.dot) && !self.has_dot(s.dot);
        self.siblings.iter().any(drops) || other.siblings.iter().any(adds)
    }

    /// [`DocState::join`] with a state we own: its siblings move in instead of being cloned.
    /// The result is exactly that of `join`.
    pub fn absorb(&mut self, other: DocState) {
        let DocState {
            siblings: theirs,
            context,
        } = other;
        let mine = std::mem::take(&mut self.siblings);
        // Both decisions are made against both sides as they were, as in `join`.
        let take_theirs: Vec<bool> = theirs
            .iter()
            .map(|s| !self.context.contains(s.dot) && !has_dot(&mine, s.dot))
            .collect();
        let mut out: Vec<Sibling> = Vec::with_capacity(mine.len() + theirs.len());
        for s in mine {
            if has_dot(&theirs, s.dot) || !context.contains(s.dot) {
                out.push(s);
            }
        }
        out.extend(
            theirs
                .into_iter()
                .zip(take_theirs)
                .filter_map(|(s, take)| take.then_some(s)),
        );
        sort_siblings(&mut out);
        self.siblings = out;
        self.context.join(&context);
    }

    /// The newest stamp in the state (for clock observation).
    pub fn max_stamp(&self) -> Option<Stamp> {
        self.siblings.iter().map(|s| s.stamp).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The tests build states with writes, which depend on the policy (`policy.rs`).
    use crate::policy::Policy;
    use crate::ReplicaId;
    use serde_json::json;
    // On wasm32 the same `#[test]` functions run under wasm-bindgen-test (see scripts/test.sh).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn w(
        s: &mut DocState,
        p: Policy,
        r: u64,
        c: u64,
        wall: u64,
        tier: Tier,
        op: WriteOp,
    ) -> DocState {
        s.write(
            p,
            Dot::new(ReplicaId(r), c),
            Stamp::new(wall, 0, ReplicaId(r)),
            tier,
            op,
        );
        s.clone()
    }

    #[test]
    fn concurrent_writes_become_siblings_and_later_write_supersedes() {
        let base = DocState::default();
        let a = w(
            &mut base.clone(),
            Policy::Lww,
            1,
            1,
            10,
            Tier::Local,
            WriteOp::Put(obj(json!({"x": 1}))),
        );
        let b = w(
            &mut base.clone(),
            Policy::Lww,
            2,
            1,
            20,
            Tier::Cloud,
            WriteOp::Put(obj(json!({"x": 2}))),
        );
        let mut j = a.clone();
        j.join(&b);
        assert_eq!(j.siblings.len(), 2);
        assert_eq!(j.visible(Policy::Lww), Some(json!({"x": 2})));
        assert_eq!(j.visible(Policy::LocalWins), Some(json!({"x": 1})));
        assert_eq!(j.visible(Policy::CloudWins), Some(json!({"x": 2})));
        // A write that saw both supersedes both, whatever the tiers.
        let mut r = j.clone();
        w(
            &mut r,
            Policy::Lww,
            1,
            2,
            5,
            Tier::Local,
            WriteOp::Put(obj(json!({"x": 3}))),
        );
        let mut back = j.clone();
        back.join(&r);
        assert_eq!(back.siblings.len(), 1);
        assert_eq!(back.visible(Policy::CloudWins), Some(json!({"x": 3})));
    }

    #[test]
    fn merge_keeps_edits_to_different_fields() {
        let mut s = DocState::default();
        w(
            &mut s,
            Policy::Merge,
            1,
            1,
            10,
            Tier::Local,
            WriteOp::Put(obj(json!({"a": 0, "b": 0}))),
        );
        let a = w(
            &mut s.clone(),
            Policy::Merge,
            1,
            2,
            20,
            Tier::Local,
            WriteOp::Patch(obj(json!({"a": 1}))),
        );
        let b = w(
            &mut s.clone(),
            Policy::Merge,
            2,
            1,
            15,
            Tier::Cloud,
            WriteOp::Put(obj(json!({"a": 0, "b": 2}))),
        );
        let mut j = a.clone();
        j.join(&b);
        assert_eq!(j.visible(Policy::Merge), Some(json!({"a": 1, "b": 2})));
        // A removal that is newer than a concurrent unchanged value wins.
        let c = w(
            &mut s.clone(),
            Policy::Merge,
            3,
            1,
            30,
            Tier::Local,
            WriteOp::Patch(obj(json!({"b": null}))),
        );
        let mut k = j.clone();
        k.join(&c);
        assert_eq!(k.visible(Policy::Merge), Some(json!({"a": 1})));
    }

    /// `absorb` is `join`, and `join_changes` says exactly when `join` changes a state, over
    /// many small states (including unsorted ones, which `join` sorts).
    #[test]
    fn absorb_and_join_changes_agree_with_join() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let state = |next: &mut dyn FnMut(u64) -> u64| {
            let mut st = DocState::default();
            for _ in 0..next(4) {
                let (r, c) = (1 + next(3), 1 + next(3));
                let body = (next(3) > 0).then(|| {
                    let mut f = Fields::new();
                    f.insert(
                        "x".into(),
                        crate::field::Field {
                            stamp: Stamp::new(c, 0, ReplicaId(r)),
                            value: Some(Value::from(next(5))),
                        },
                    );
                    f
                });
                st.siblings.push(Sibling {
                    dot: Dot::new(ReplicaId(r), c),
                    stamp: Stamp::new(c * 10 + next(10), 0, ReplicaId(r)),
                    tier: if next(2) == 0 {
                        Tier::Local
                    } else {
                        Tier::Cloud
                    },
                    body,
                });
                st.context.add_dot(Dot::new(ReplicaId(r), c));
            }
            if next(4) > 0 {
                st.siblings.sort_by_key(|s| s.dot);
                st.siblings.dedup_by(|a, b| a.dot == b.dot);
            }
            if next(2) == 0 {
                st.context.raise(ReplicaId(1 + next(3)), 1 + next(4));
            }
            st
        };
        let mut changes = 0;
        for _ in 0..20_000 {
            let a = state(&mut next);
            let mut b = state(&mut next);
            // Incoming states are sorted and deduplicated before they are joined.
            b.siblings.sort_by_key(|s| s.dot);
            b.siblings.dedup_by(|x, y| x.dot == y.dot);
            let mut joined = a.clone();
            joined.join(&b);
            let mut absorbed = a.clone();
            let changed = absorbed.join_changes(&b);
            absorbed.absorb(b.clone());
            assert_eq!(absorbed, joined, "{a:?} absorbing {b:?}");
            assert_eq!(changed, joined != a, "{a:?} joining {b:?}");
            changes += usize::from(changed);
        }
        // Both outcomes are well covered.
        assert!(changes > 2_000 && changes < 18_000, "{changes}");
    }

    #[test]
    fn stale_write_does_not_resurrect_a_delete() {
        let mut s = DocState::default();
        let v1 = w(
            &mut s,
            Policy::Lww,
            1,
            1,
            10,
            Tier::Local,
            WriteOp::Put(obj(json!({"a": 1}))),
        );
        let del = w(
            &mut v1.clone(),
            Policy::Lww,
            2,
            1,
            20,
            Tier::Cloud,
            WriteOp::Delete,
        );
        let mut j = del.clone();
        j.join(&v1);
        assert_eq!(j.visible(Policy::Lww), None);
        assert_eq!(j.siblings.len(), 1);
    }
}
