//! Delta extraction: what a peer at a version vector lacks, cut from the durable layer in
//! counter order by range scans of the live-dot index (so the watermark can say "everything of
//! replica r up to c"), bounded in documents and bytes; and the own-writes-only variant for a
//! link that may not relay.

use super::*;

/// Result of [`Replica::delta_own`].
#[derive(Debug, Default)]
pub struct OwnDelta {
    /// The documents, watermark and remaining count, as for [`Replica::delta_bounded`].
    pub delta: Delta,
    /// Stopped at a document the receiver may not take from us yet.
    pub blocked: bool,
}

/// Result of a delta extraction.
#[derive(Debug, Default)]
pub struct Delta {
    /// Full states of the documents the peer lacks, in the order their dots were walked.
    pub docs: Vec<DocEntry>,
    /// What the peer holds once it has these documents: only ranges walked here.
    pub watermark: VersionVector,
    /// Writes above the peer's vector not walked by this batch: an upper bound on the
    /// documents still to come (some of those writes may since have been superseded), 0 when
    /// nothing is. Told from the vectors alone: counting the live dots instead costs a scan of
    /// everything still to come at every batch, quadratic over a whole initial sync.
    pub remaining: u64,
}

/// Result of [`Replica::fill_page`].
#[derive(Debug, Default)]
pub struct FillPage {
    /// Full durable states of the documents walked, in key order.
    pub docs: Vec<DocEntry>,
    /// The last key walked, to continue after; `None` when the walk is over.
    pub next: Option<DocKey>,
}

impl Replica {
    // ---- delta ---------------------------------------------------------------------------

    /// What a peer holding `known` lacks, from the durable layer, at most `max_docs`
    /// documents. The watermark holds the ranges covered by this batch (never beyond our own
    /// durable vector). Dots are visited replica by replica in counter order, so the watermark can
    /// say "everything of replica r up to c" as soon as r's live dots up to c are sent.
    pub fn delta(&self, known: &VersionVector, max_docs: usize) -> Result<Delta> {
        self.delta_bounded(known, max_docs, usize::MAX, None)
    }

    /// [`Replica::delta`] that also stops before the documents' encoded size (by
    /// [`crate::codec::doc_state_size_bound`]) passes `max_bytes` — except that the first
    /// document always goes, so a large document cannot stall a sync. The live dots are read
    /// in pages, so a store is never read whole. With `filter` (collection patterns, a
    /// partial replica's subscription) only documents it holds go
    /// ([`crate::auth::subscribed`]); the others are walked past, and the watermark covers
    /// them all the same.
    pub fn delta_bounded(
        &self,
        known: &VersionVector,
        max_docs: usize,
        max_bytes: usize,
        filter: Option<&[String]>,
    ) -> Result<Delta> {
        // The watermark names only ranges walked here: every entry is something this store
        // holds, so the receiver may also credit it to us (not just to itself).
        let mut out = Delta::default();
        // Documents taken so far. A document with several live dots is taken at the first of
        // them the walk reaches: at a later one, one of its siblings' dots lies in a range
        // already walked (`walked`), so no set of keys is kept.
        let mut sent = 0usize;
        let mut bytes = 0usize;
        let mut full = false;
        for (r, upto) in self.vv.iter() {
            let from = known.get(r);
            if from >= upto {
                continue;
            }
            if full {
                out.remaining += upto - from;
                continue;
            }
            let mut last = from;
            let mut exhausted = true;
            'walk: loop {
                let page = self.durable.dot_states(r, last, upto, PAGE)?;
                let last_page = page.len() < PAGE;
                for (counter, key, state) in page {
                    let Some(state) = state else {
                        last = counter;
                        continue;
                    };
                    if filter.is_some_and(|f| !crate::auth::subscribed(f, &key)) {
                        last = counter;
                        continue;
                    }
                    // Replicas are walked in id order, each from `known` to our vector.
                    let walked = |d: Dot| {
                        (d.replica == r && from < d.counter && d.counter < counter)
                            || (d.replica < r
                                && known.get(d.replica) < d.counter
                                && d.counter <= self.vv.get(d.replica))
                    };
                    let seen = state.siblings.iter().any(|s| walked(s.dot));
                    let size = match max_bytes {
                        m if m < usize::MAX && !seen => {
                            crate::codec::doc_state_size_bound(&key, &state)
                        }
                        _ => 0,
                    };
                    let over = sent > 0 && bytes.saturating_add(size) > max_bytes;
                    if !seen && (sent >= max_docs || over) {
                        exhausted = false;
                        full = true;
                        // This dot and every further one of r are still to come.
                        out.remaining += upto - last;
                        break 'walk;
                    }
                    last = counter;
                    bytes = bytes.saturating_add(size);
                    if !seen {
                        sent += 1;
                        out.docs.push(DocEntry {
                            collection: key.collection,
                            id: key.id,
                            // Not shared (read for this delta alone): moved, not copied.
                            state: Arc::unwrap_or_clone(state),
                        });
                    }
                }
                if last_page {
                    break;
                }
            }
            out.watermark.raise(r, if exhausted { upto } else { last });
        }
        Ok(out)
    }

    /// A page of an initial sync **by key** for a partial replica subscribed to `filter`:
    /// the durable states of the documents it holds ([`crate::auth::subscribed`]) after
    /// `after` (from the first with `None`), in key order, at most `max_docs` and about
    /// `max_bytes`. Collections it does not hold are passed over by name, unread, so the
    /// walk costs the subset, not the space (what [`Replica::delta_bounded`] walks is every
    /// live dot). Tombstones go too, as a delta would send them; a state without a sibling
    /// does not. The walk claims nothing: the caller claims the vector it began at once it
    /// is over (docs/protocol.md, section 5, "Partial replication").
    #[cfg(feature = "serve")]
    pub fn fill_page(
        &self,
        filter: &[String],
        after: Option<&DocKey>,
        max_docs: usize,
        max_bytes: usize,
    ) -> Result<FillPage> {
        let mut out = FillPage::default();
        let mut bytes = 0usize;
        let mut walked = after.cloned();
        let mut coll = match after {
            Some(a) => Some(a.collection.clone()),
            None => self.durable.next_collection("")?,
        };
        while let Some(c) = coll {
            if c == CONFIG_COLLECTION || crate::auth::matches_any(filter, &c) {
                loop {
                    let from = walked
                        .as_ref()
                        .filter(|k| k.collection == c)
                        .map(|k| k.id.clone());
                    let page = self.durable.key_states(&c, from.as_deref(), PAGE)?;
                    let last_page = page.len() < PAGE;
                    for (key, state) in page {
                        let held = state.filter(|s| {
                            !s.siblings.is_empty() && crate::auth::subscribed(filter, &key)
                        });
                        if let Some(state) = held {
                            let size = crate::codec::doc_state_size_bound(&key, &state);
                            if !out.docs.is_empty()
                                && (out.docs.len() >= max_docs
                                    || bytes.saturating_add(size) > max_bytes)
                            {
                                out.next = walked;
                                return Ok(out);
                            }
                            bytes = bytes.saturating_add(size);
                            out.docs.push(DocEntry {
                                collection: key.collection.clone(),
                                id: key.id.clone(),
                                state: Arc::unwrap_or_clone(state),
                            });
                        }
                        walked = Some(key);
                    }
                    if last_page {
                        break;
                    }
                }
            }
            coll = self.durable.next_collection(&c)?;
        }
        Ok(out)
    }

    /// Keys of `collection` above `after` in the newest layer, tombstones included, in
    /// order: a page of the durable layer's keys (at most `limit`) with the keys of the
    /// newer layers in its range (or after it, on the last page).
    fn keys_newest(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DocKey>> {
        let durable = self.durable.keys(collection, after, limit)?;
        let bound = (durable.len() >= limit)
            .then(|| durable.last().cloned())
            .flatten();
        let mut keys: std::collections::BTreeSet<DocKey> = durable.into_iter().collect();
        for k in self
            .newer_keys(collection, after)
            .filter(|k| bound.as_ref().is_none_or(|b| *k <= b))
        {
            keys.insert(k.clone());
        }
        Ok(keys.into_iter().collect())
    }

    /// A step of forgetting documents this partial replica no longer replicates or is about
    /// to replicate anew ([`crate::Engine::replicate`]): of the collections matching
    /// `patterns` and not `keep`, and their policies in `_config`, in key order after `after`, each
    /// document whose every sibling `server` holds is dropped from this store (staged as an
    /// empty state, which the next cut removes, as a resync's would be). A document with a
    /// write of ours the server does not hold yet is kept: it goes up as a blind write.
    /// Walks pages until one forgets something (so the host's next
    /// persist drives the next step) or the walk ends; returns the key to go on after, or
    /// `None` when done. `kept` is set when a document was kept for a write of ours.
    pub fn forget_step(
        &mut self,
        patterns: &[String],
        keep: &[String],
        after: Option<&DocKey>,
        server: &VersionVector,
        kept: &mut bool,
    ) -> Result<Option<DocKey>> {
        let mut walked = after.cloned();
        let mut coll = match after {
            Some(a) => Some(a.collection.clone()),
            None => self.next_collection("")?,
        };
        // A collection it forgets, or `_config` (for those collections' policies).
        let forgets =
            |c: &str| crate::auth::matches_any(patterns, c) && !crate::auth::matches_any(keep, c);
        while let Some(c) = coll {
            if c == CONFIG_COLLECTION || forgets(&c) {
                loop {
                    let from = walked
                        .as_ref()
                        .filter(|k| k.collection == c)
                        .map(|k| k.id.clone());
                    let page = self.keys_newest(&c, from.as_deref(), PAGE)?;
                    let last_page = page.len() < PAGE;
                    let mut forgot = false;
                    for key in page {
                        let of = match key.collection == CONFIG_COLLECTION {
                            true => key.id.strip_prefix("collection:"),
                            false => Some(key.collection.as_str()),
                        };
                        if !of.is_some_and(forgets) {
                            walked = Some(key);
                            continue;
                        }
                        let (held, known) = self.state(&key)?.map_or((false, false), |s| {
                            (
                                !s.siblings.is_empty(),
                                s.siblings.iter().all(|x| server.contains(x.dot)),
                            )
                        });
                        *kept |= held && !known;
                        if held && known {
                            self.staged
                                .docs
                                .insert(key.clone(), Arc::new(DocState::default()));
                            forgot = true;
                        }
                        walked = Some(key);
                    }
                    if last_page {
                        break;
                    }
                    if forgot {
                        return Ok(walked);
                    }
                }
            }
            coll = self.next_collection(&c)?;
        }
        Ok(None)
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
    pub fn delta_own(
        &self,
        known: &VersionVector,
        max_docs: usize,
        max_bytes: usize,
    ) -> Result<OwnDelta> {
        let mut out = OwnDelta::default();
        let me = self.id;
        let from = known.get(me);
        let upto = self.vv.get(me);
        if from >= upto {
            return Ok(out);
        }
        let mut claim = from;
        let mut bytes = 0usize;
        // The last counter walked: the writes after it are counted as remaining, unless the
        // walk reached the end.
        let mut walked = from;
        let mut finished = false;
        'walk: loop {
            let page = self.durable.dot_states(me, walked, upto, PAGE)?;
            let last_page = page.len() < PAGE;
            for (counter, key, state) in page {
                let Some(state) = state else {
                    walked = counter;
                    continue;
                };
                if key.collection == CONFIG_COLLECTION {
                    walked = counter;
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
                    break 'walk;
                }
                let size = crate::codec::doc_state_size_bound(&key, &state);
                if !out.delta.docs.is_empty()
                    && (out.delta.docs.len() >= max_docs || bytes.saturating_add(size) > max_bytes)
                {
                    break 'walk;
                }
                bytes = bytes.saturating_add(size);
                claim = counter;
                walked = counter;
                out.delta.docs.push(DocEntry {
                    collection: key.collection,
                    id: key.id,
                    state: Arc::unwrap_or_clone(state),
                });
            }
            if last_page {
                finished = true;
                break;
            }
        }
        if !finished {
            out.delta.remaining += upto - walked;
        }
        if out.delta.remaining == 0 && claim < upto {
            // Only unclaimable writes remain after the last one carried.
            out.blocked = true;
        }
        out.delta.watermark.raise(me, claim);
        Ok(out)
    }

    /// True when `known` lacks something durable here.
    pub fn ahead_of(&self, known: &VersionVector) -> bool {
        !known.dominates(&self.vv)
    }
}
