//! Property tests for the merge algebra: on document states that real histories produce,
//! `DocState::join` is commutative, associative and idempotent, and what every policy shows
//! does not depend on the order in which states were joined.
//!
//! States come from simulated histories rather than from independent random values, because
//! the algebra only holds for consistent states: a dot names one write everywhere, and a
//! replica's context covers exactly what it has seen.

use bridge_core::{DocState, Dot, Policy, ReplicaId, Stamp, Tier, WriteOp};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{Map, Value};

#[derive(Clone, Debug)]
enum Step {
    Write {
        at: Index,
        op: Op,
    },
    /// `to` joins the state of `from`.
    Join {
        from: Index,
        to: Index,
    },
}

#[derive(Clone, Debug)]
enum Op {
    Put(Map<String, Value>),
    Patch(Map<String, Value>),
    Delete,
}

fn fields() -> impl Strategy<Value = Map<String, Value>> {
    // Few names and values, so writes overlap and often agree.
    let value = prop_oneof![
        Just(Value::Null),
        (0i64..3).prop_map(Value::from),
        "[xy]".prop_map(Value::from),
    ];
    btree_map(select(vec!["a", "b", "c"]), value, 0..3)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn step() -> impl Strategy<Value = Step> {
    let op = prop_oneof![
        3 => fields().prop_map(Op::Put),
        3 => fields().prop_map(Op::Patch),
        1 => Just(Op::Delete),
    ];
    prop_oneof![
        (any::<Index>(), op).prop_map(|(at, op)| Step::Write { at, op }),
        (any::<Index>(), any::<Index>()).prop_map(|(from, to)| Step::Join { from, to }),
    ]
}

/// Runs a history on 3–4 replicas of one document and returns every state any replica
/// passed through.
fn history() -> impl Strategy<Value = (Policy, Vec<DocState>)> {
    (select(Policy::ALL.to_vec()), 3usize..=4, vec(step(), 1..40)).prop_map(|(policy, n, steps)| {
        let mut states = vec![DocState::default(); n];
        let mut counters = vec![0u64; n];
        let mut seen = vec![DocState::default()];
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Write { at, op } => {
                    let r = at.index(n);
                    counters[r] += 1;
                    let id = ReplicaId(r as u64 + 1);
                    let tier = if r % 2 == 0 { Tier::Local } else { Tier::Cloud };
                    // Stamps rise with the step, as a shared clock would have them.
                    let stamp = Stamp::new(100 + i as u64, 0, id);
                    let op = match op {
                        Op::Put(m) => WriteOp::Put(m),
                        Op::Patch(m) => WriteOp::Patch(m),
                        Op::Delete => WriteOp::Delete,
                    };
                    states[r].write(policy, Dot::new(id, counters[r]), stamp, tier, op);
                    seen.push(states[r].clone());
                }
                Step::Join { from, to } => {
                    let (from, to) = (from.index(n), to.index(n));
                    let other = states[from].clone();
                    states[to].join(&other);
                    seen.push(states[to].clone());
                }
            }
        }
        (policy, seen)
    })
}

fn join(a: &DocState, b: &DocState) -> DocState {
    let mut out = a.clone();
    out.join(b);
    out.siblings.sort_by_key(|s| s.dot);
    out
}

fn norm(s: &DocState) -> DocState {
    let mut s = s.clone();
    s.siblings.sort_by_key(|s| s.dot);
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn join_is_commutative_associative_idempotent(
        (_policy, states) in history(),
        picks in vec(any::<Index>(), 3),
    ) {
        let [a, b, c] = [0, 1, 2].map(|i| &states[picks[i].index(states.len())]);
        prop_assert_eq!(join(a, b), join(b, a));
        prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
        prop_assert_eq!(join(a, a), norm(a));
        // Joining again what is already in changes nothing.
        let ab = join(a, b);
        prop_assert_eq!(join(&ab, b), ab.clone());
        prop_assert_eq!(join(&ab, a), ab);
    }

    #[test]
    fn every_policy_shows_the_same_whatever_the_join_order(
        (policy, states) in history(),
        picks in vec(any::<Index>(), 3),
    ) {
        let [a, b, c] = [0, 1, 2].map(|i| &states[picks[i].index(states.len())]);
        let orders = [
            join(&join(a, b), c),
            join(&join(a, c), b),
            join(&join(b, a), c),
            join(&join(b, c), a),
            join(&join(c, a), b),
            join(&join(c, b), a),
            join(a, &join(b, c)),
        ];
        for p in Policy::ALL {
            let first = orders[0].visible(p);
            for (i, joined) in orders.iter().enumerate() {
                prop_assert_eq!(
                    &joined.visible(p),
                    &first,
                    "policy {} (history written under {}), order {}",
                    p,
                    policy,
                    i
                );
            }
        }
    }

    /// One field read alone (as a policy lookup reads `_config`) is that field of the
    /// whole object the policy shows.
    #[test]
    fn one_field_reads_as_the_whole_object_shows_it((_policy, states) in history()) {
        for s in &states {
            for p in Policy::ALL {
                let whole = s.visible(p);
                for f in ["a", "b", "c", "d"] {
                    prop_assert_eq!(
                        bridge_core::policy::visible_field(p, s, f),
                        whole.as_ref().and_then(|v| v.get(f)),
                        "policy {}, field {}",
                        p,
                        f
                    );
                }
            }
        }
    }

    /// Everything a history produced, joined in any order, shows the same document.
    #[test]
    fn joining_all_states_converges((_policy, states) in history(), rotate in any::<Index>()) {
        let all = states.iter().fold(DocState::default(), |acc, s| join(&acc, s));
        let mut shuffled = states.clone();
        shuffled.rotate_left(rotate.index(states.len()));
        shuffled.reverse();
        let again = shuffled.iter().fold(DocState::default(), |acc, s| join(&acc, s));
        prop_assert_eq!(&all, &again);
        for p in Policy::ALL {
            prop_assert_eq!(all.visible(p), again.visible(p));
        }
    }
}
