//! Delta extraction: what a peer at a version vector lacks, cut from the durable layer in
//! counter order by range scans of the live-dot index (so the watermark can say "everything of
//! replica r up to c"), bounded in documents and bytes; and the own-writes-only variant for a
//! link that may not relay.

use super::*;

/// Result of [`Replica::delta_own`].
#[derive(Debug, Default)]
pub struct OwnDelta {
    pub delta: Delta,
    /// Stopped at a document the receiver may not take from us yet.
    pub blocked: bool,
}

/// Result of a delta extraction.
#[derive(Debug, Default)]
pub struct Delta {
    pub docs: Vec<DocEntry>,
    pub watermark: VersionVector,
    /// Live dots above the peer's vector not included in this batch (an upper bound on
    /// documents still to come).
    pub remaining: u64,
}

impl Replica {
    // ---- delta ---------------------------------------------------------------------------

    /// What a peer holding `known` lacks, from the durable layer, at most `max_docs`
    /// documents. The watermark holds the ranges covered by this batch (never beyond our own
    /// durable vector). Dots are visited replica by replica in counter order, so the watermark can
    /// say "everything of replica r up to c" as soon as r's live dots up to c are sent.
    pub fn delta(&self, known: &VersionVector, max_docs: usize) -> Delta {
        self.delta_bounded(known, max_docs, usize::MAX)
    }

    /// [`Replica::delta`] that also stops before the documents' encoded size (by
    /// [`crate::codec::doc_state_size_bound`]) passes `max_bytes` — except that the first
    /// document always goes, so a large document cannot stall a sync.
    pub fn delta_bounded(&self, known: &VersionVector, max_docs: usize, max_bytes: usize) -> Delta {
        // The watermark names only ranges walked here: every entry is something this store
        // holds, so the receiver may also credit it to us (not just to itself).
        let mut out = Delta::default();
        let mut sent: BTreeSet<&DocKey> = BTreeSet::new();
        let mut bytes = 0usize;
        let mut full = false;
        for (r, upto) in self.vv.iter() {
            let from = known.get(r);
            if from >= upto {
                continue;
            }
            let mut range = self.live.range(Dot::new(r, from + 1)..=Dot::new(r, upto));
            if full {
                out.remaining += range.count() as u64;
                continue;
            }
            let mut last = from;
            let mut exhausted = true;
            for (dot, key) in range.by_ref() {
                let state = if sent.contains(key) {
                    None
                } else {
                    self.docs.get(key)
                };
                let size = match (state, max_bytes) {
                    (Some(st), m) if m < usize::MAX => crate::codec::doc_state_size_bound(key, st),
                    _ => 0,
                };
                let over = !sent.is_empty() && bytes.saturating_add(size) > max_bytes;
                if !sent.contains(key) && (sent.len() >= max_docs || over) {
                    exhausted = false;
                    full = true;
                    out.remaining += 1;
                    break;
                }
                last = dot.counter;
                bytes = bytes.saturating_add(size);
                if sent.insert(key) {
                    if let Some(state) = state {
                        out.docs.push(DocEntry {
                            collection: key.collection.clone(),
                            id: key.id.clone(),
                            state: state.clone(),
                        });
                    }
                }
            }
            if full {
                // Every further dot of this range is remaining too: counted by walking the
                // range, without the per-dot lookups of the loop above.
                out.remaining += range.count() as u64;
            }
            out.watermark.raise(r, if exhausted { upto } else { last });
        }
        out
    }

    /// [`Replica::delta_bounded`] for a link that may introduce only this replica's own
    /// writes (the receiver's token for us is below `admin`): walks our own live dots above
    /// `known` only, and sends a document only when the receiver, as far as `known` tells,
    /// already holds every other replica's write in it. At the first document it may not
    /// send yet it stops (`blocked`); that document goes once `known` shows the receiver got
    /// the rest from a session that may relay it. Documents of `_config` are never sent on
    /// such a link (they need `admin`).
    ///
    /// The watermark claims our writes only up to the last document carried (the receiver
    /// refuses a claim of our own writes beyond what a push carries or it holds): writes
    /// in a gap below it were superseded or are `_config`, and nothing is lost by claiming
    /// them; writes after it that did not go (`_config`, or superseded by a write the
    /// receiver lacks) are left unclaimed and `blocked` is set, so that the link waits
    /// instead of walking them again — a relay claims them, or our next write carries the
    /// claim past them.
    pub fn delta_own(&self, known: &VersionVector, max_docs: usize, max_bytes: usize) -> OwnDelta {
        let mut out = OwnDelta::default();
        let me = self.id;
        let from = known.get(me);
        let upto = self.vv.get(me);
        if from >= upto {
            return out;
        }
        let mut claim = from;
        let mut bytes = 0usize;
        let mut range = self.live.range(Dot::new(me, from + 1)..=Dot::new(me, upto));
        for (dot, key) in range.by_ref() {
            let Some(state) = self.docs.get(key) else {
                continue;
            };
            if key.collection == CONFIG_COLLECTION {
                continue;
            }
            let foreign_held = state
                .siblings
                .iter()
                .all(|s| s.dot.replica == me || known.contains(s.dot))
                && state
                    .context
                    .iter()
                    .all(|(r, c)| r == me || c <= known.get(r));
            if !foreign_held {
                out.blocked = true;
                out.delta.remaining += 1;
                break;
            }
            let size = crate::codec::doc_state_size_bound(key, state);
            if !out.delta.docs.is_empty()
                && (out.delta.docs.len() >= max_docs || bytes.saturating_add(size) > max_bytes)
            {
                out.delta.remaining += 1;
                break;
            }
            bytes = bytes.saturating_add(size);
            claim = dot.counter;
            out.delta.docs.push(DocEntry {
                collection: key.collection.clone(),
                id: key.id.clone(),
                state: state.clone(),
            });
        }
        out.delta.remaining += range.count() as u64;
        if out.delta.remaining == 0 && claim < upto {
            // Only unclaimable writes remain after the last one carried.
            out.blocked = true;
        }
        out.delta.watermark.raise(me, claim);
        out
    }

    /// True when `known` lacks something durable here.
    pub fn ahead_of(&self, known: &VersionVector) -> bool {
        !known.dominates(&self.vv)
    }
}
