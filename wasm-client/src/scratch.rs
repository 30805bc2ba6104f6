//! The browser's durable layer as the core reads it: [`Prefetched`], a
//! [`bridge_core::replica::DocStore`] whose synchronous reads answer from what the client
//! read from IndexedDB before it called the engine.
//!
//! IndexedDB is asynchronous and the core reads synchronously (ARCHITECTURE.md, "The storage
//! model"), so the client reads ahead: the keys of a write or of a received push before it
//! hands them to the engine, the states of a batch it just stored. Every other read — a list
//! page, the live dots of a push to the host, the conflict list, the document count — is
//! answered from a result read earlier **for exactly that question**, or refused: the
//! question is remembered as a [`Miss`] and the read fails with `Error::Store`, never with
//! "absent", which would lose data. The client then reads the misses from IndexedDB and asks
//! again ([`DocStore::missed`] tells the engine to leave a push for later instead of closing
//! the link). Reads are deterministic, so the second run asks the same questions, now
//! answered, and goes on to the next page.
//!
//! What is read ahead is scratch: the client empties it ([`Scratch::trim`]) at the start of
//! an operation once it holds more than [`SCRATCH_DOCS`] documents. The bounded cache of
//! document states is the core's (`EngineConfig::cache_bytes`). Answers to range questions
//! (pages of keys, of dots, of conflicts, the count, the collections) are dropped whenever a
//! batch is stored ([`Scratch::stored`]); the states of that batch replace what was read of
//! them, so the scratch never answers with an older state than the store holds.

use bridge_core::doc::DocState;
use bridge_core::replica::DocStore;
use bridge_core::{DocKey, Error, ReplicaId, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Above this many documents the scratch is emptied at the start of the next operation.
pub const SCRATCH_DOCS: usize = 2048;

/// How many pages of live dots (each with its documents) one read asks for when a push
/// misses one: a push to the host walks them in order, so the next pages are the next
/// questions.
pub const DOTS_AHEAD: usize = 4;

/// How many pages of a collection's ids (each with its documents) one read asks for when a
/// list misses one.
pub const KEYS_AHEAD: usize = 4;

/// A read the scratch could not answer: what the client must read from IndexedDB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Miss {
    /// One document's state.
    Doc(DocKey),
    /// `DocStore::keys`.
    Keys {
        collection: String,
        after: Option<String>,
        limit: usize,
    },
    /// `DocStore::dots`.
    Dots {
        replica: ReplicaId,
        from: u64,
        upto: u64,
        limit: usize,
    },
    /// `DocStore::conflicted`.
    Conflicted {
        collection: Option<String>,
        after: Option<DocKey>,
        limit: usize,
    },
    /// `DocStore::doc_count`.
    Count,
    /// `DocStore::next_collection`.
    NextCollection(String),
}

impl Miss {
    /// The question without its page size: a page read with a larger limit, or one that
    /// reached the end, answers a smaller one.
    fn same_question(&self, other: &Miss) -> bool {
        match (self, other) {
            (
                Miss::Keys {
                    collection: a,
                    after: x,
                    ..
                },
                Miss::Keys {
                    collection: b,
                    after: y,
                    ..
                },
            ) => a == b && x == y,
            (
                Miss::Dots {
                    replica: a,
                    from: x,
                    upto: p,
                    ..
                },
                Miss::Dots {
                    replica: b,
                    from: y,
                    upto: q,
                    ..
                },
            ) => a == b && x == y && p == q,
            (
                Miss::Conflicted {
                    collection: a,
                    after: x,
                    ..
                },
                Miss::Conflicted {
                    collection: b,
                    after: y,
                    ..
                },
            ) => a == b && x == y,
            _ => self == other,
        }
    }

    fn limit(&self) -> usize {
        match self {
            Miss::Keys { limit, .. }
            | Miss::Dots { limit, .. }
            | Miss::Conflicted { limit, .. } => *limit,
            _ => usize::MAX,
        }
    }
}

/// A page read from IndexedDB for a range question: `(counter, key)` pairs (the counter of
/// a live dot; for `Count`, one pair holding the count; for `NextCollection`, the first key
/// of the next collection, if any).
pub type Page = Vec<(u64, DocKey)>;

/// What was read ahead from IndexedDB, and the questions it could not answer.
#[derive(Default)]
pub struct Scratch {
    /// States read (or stored). A document read and found absent holds the empty state (a
    /// stored state is never empty: a tombstone keeps its context), read back as absent.
    docs: BTreeMap<DocKey, Arc<DocState>>,
    /// Range questions and their pages (a few at a time: searched in order).
    pages: Vec<(Miss, Page)>,
    misses: Vec<Miss>,
    /// Raised by every stored batch: what a read started before it brings back is dropped.
    epoch: u64,
}

impl Scratch {
    /// The questions not answered since the last call, each once.
    pub fn take_misses(&mut self) -> Vec<Miss> {
        std::mem::take(&mut self.misses)
    }

    pub fn has_misses(&self) -> bool {
        !self.misses.is_empty()
    }

    /// Keys among `keys` whose state is not read ahead, each once, in key order.
    pub fn unread<'a>(&self, keys: impl IntoIterator<Item = &'a DocKey>) -> Vec<DocKey> {
        // A set of keys (a burst of writes names thousands), as the map type the scratch
        // already has: no other B-tree type in the package for it.
        let none = Arc::new(DocState::default());
        let mut out: BTreeMap<DocKey, Arc<DocState>> = BTreeMap::new();
        for k in keys {
            if !self.docs.contains_key(k) {
                out.insert(k.clone(), none.clone());
            }
        }
        out.keys().cloned().collect()
    }

    /// The epoch a read from IndexedDB starts in (see [`Scratch::fill`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Empties the scratch when it holds more than [`SCRATCH_DOCS`] documents (at the start
    /// of an operation, never in the middle of one).
    pub fn trim(&mut self) {
        if self.docs.len() > SCRATCH_DOCS {
            // Dropped rather than `clear`ed: the calls the core makes on this map type
            // already, and no others (each is code in the package).
            self.docs = BTreeMap::new();
            self.pages.clear();
        }
    }

    /// A batch was stored (by this tab, or by the leader tab): its states are the newest, and
    /// every range answer may have changed.
    pub fn stored<'a>(&mut self, docs: impl IntoIterator<Item = (&'a DocKey, &'a Arc<DocState>)>) {
        self.epoch += 1;
        self.pages.clear();
        for (k, s) in docs {
            self.docs.insert(k.clone(), s.clone());
        }
    }

    /// The leader tab stored a batch with these keys; `states` are those read back (a key
    /// without one is no longer in the store).
    pub fn stored_elsewhere(&mut self, keys: &[DocKey], states: &[(DocKey, Arc<DocState>)]) {
        let none = Arc::new(DocState::default());
        self.stored(keys.iter().map(|k| (k, &none)));
        self.stored(states.iter().map(|(k, s)| (k, s)));
    }

    /// Answers read from IndexedDB in `epoch`; dropped (`false`) when a batch was stored
    /// since (the question is asked again and read again).
    pub fn fill(&mut self, epoch: u64, read: Read) -> bool {
        if epoch != self.epoch {
            return false;
        }
        // Read after the last stored batch (same epoch): as new as anything held.
        for (k, s) in read.docs {
            self.docs.insert(k, Arc::new(s.unwrap_or_default()));
        }
        self.pages.extend(read.pages);
        true
    }

    /// The page that answers `q`, cut to its limit.
    fn page(&mut self, q: Miss) -> Result<Page> {
        if let Miss::Dots {
            replica,
            from,
            upto,
            limit,
        } = q
        {
            // A page of live dots read from an earlier counter answers a question starting
            // inside it: a push walks one replica's dots page after page, and the client
            // reads them [`DOTS_AHEAD`] pages at a time.
            for (m, page) in &self.pages {
                let Miss::Dots {
                    replica: r,
                    from: f,
                    upto: u,
                    limit: l,
                } = m
                else {
                    continue;
                };
                if *r != replica || *u != upto || *f > from {
                    continue;
                }
                let whole = page.len() < *l;
                let covered = whole || page.last().is_some_and(|(c, _)| *c >= from);
                let after: Page = page
                    .iter()
                    .filter(|(c, _)| *c > from)
                    .take(limit)
                    .cloned()
                    .collect();
                if covered && (after.len() == limit || whole) {
                    return Ok(after);
                }
            }
            let limit = limit.saturating_mul(DOTS_AHEAD);
            return self.miss(Miss::Dots {
                replica,
                from,
                upto,
                limit,
            });
        }
        if let Miss::Keys {
            collection,
            after,
            limit,
        } = q
        {
            // The same for a collection's ids: a list walks them page after page.
            for (m, page) in &self.pages {
                let Miss::Keys {
                    collection: c,
                    after: a,
                    limit: l,
                } = m
                else {
                    continue;
                };
                if *c != collection || a.as_deref() > after.as_deref() {
                    continue;
                }
                let whole = page.len() < *l;
                let past =
                    |(_, k): &&(u64, DocKey)| after.as_deref().is_none_or(|a| k.id.as_str() > a);
                let covered = whole
                    || page
                        .last()
                        .is_some_and(|(_, k)| after.as_deref().is_none_or(|a| k.id.as_str() >= a));
                let rest: Page = page.iter().filter(past).take(limit).cloned().collect();
                if covered && (rest.len() == limit || whole) {
                    return Ok(rest);
                }
            }
            let limit = limit.saturating_mul(KEYS_AHEAD);
            return self.miss(Miss::Keys {
                collection,
                after,
                limit,
            });
        }
        let limit = q.limit();
        let found = self.pages.iter().find(|(m, page)| {
            m.same_question(&q) && (m.limit() >= limit || page.len() < m.limit())
        });
        match found {
            Some((_, page)) => Ok(page.iter().take(limit).cloned().collect()),
            None => self.miss(q),
        }
    }

    fn miss<T>(&mut self, m: Miss) -> Result<T> {
        if !self.misses.contains(&m) {
            self.misses.push(m);
        }
        Err(Error::Store(
            "a document was not read from IndexedDB yet (the browser client reads it and asks again)"
                .into(),
        ))
    }

    /// How many documents are read ahead.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

/// What one read from IndexedDB brought back: states (`None`: no such document), and per
/// range question its page.
#[derive(Default)]
pub struct Read {
    pub docs: Vec<(DocKey, Option<DocState>)>,
    pub pages: Vec<(Miss, Page)>,
}

/// The scratch, shared by the client (which fills it) and the engine's replica (which reads
/// it through [`DocStore`]).
#[derive(Clone, Default)]
pub struct Prefetched(Arc<Mutex<Scratch>>);

impl Prefetched {
    pub fn lock(&self) -> MutexGuard<'_, Scratch> {
        // The browser runs one thread: a poisoned lock only means a panic elsewhere, and
        // the scratch is still whole (every change is a single insert or clear).
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DocStore for Prefetched {
    fn load(&self, key: &DocKey) -> Result<Option<DocState>> {
        let mut s = self.lock();
        match s.docs.get(key) {
            Some(state) if state.siblings.is_empty() && state.context.is_empty() => Ok(None),
            Some(state) => Ok(Some(DocState::clone(state))),
            None => s.miss(Miss::Doc(key.clone())),
        }
    }

    fn keys(&self, collection: &str, after: Option<&str>, limit: usize) -> Result<Vec<DocKey>> {
        let page = self.lock().page(Miss::Keys {
            collection: collection.to_owned(),
            after: after.map(str::to_owned),
            limit,
        })?;
        Ok(page.into_iter().map(|(_, k)| k).collect())
    }

    fn dots(
        &self,
        replica: ReplicaId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DocKey)>> {
        self.lock().page(Miss::Dots {
            replica,
            from,
            upto,
            limit,
        })
    }

    fn conflicted(
        &self,
        collection: Option<&str>,
        after: Option<&DocKey>,
        limit: usize,
    ) -> Result<Vec<DocKey>> {
        let page = self.lock().page(Miss::Conflicted {
            collection: collection.map(str::to_owned),
            after: after.cloned(),
            limit,
        })?;
        Ok(page.into_iter().map(|(_, k)| k).collect())
    }

    fn doc_count(&self) -> Result<u64> {
        let page = self.lock().page(Miss::Count)?;
        Ok(page.first().map_or(0, |(n, _)| *n))
    }

    fn next_collection(&self, after: &str) -> Result<Option<String>> {
        let page = self.lock().page(Miss::NextCollection(after.to_owned()))?;
        Ok(page.into_iter().next().map(|(_, k)| k.collection))
    }

    fn messages(
        &self,
        _channel: Option<&str>,
        _from: u64,
        _upto: u64,
        _limit: usize,
    ) -> Result<Vec<bridge_core::message::Retained>> {
        // Never asked: `holds_messages` is false, the replica keeps them in memory.
        Ok(Vec::new())
    }

    fn holds_messages(&self) -> bool {
        false
    }

    fn missed(&self) -> bool {
        self.lock().has_misses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_not_fetched_is_refused_and_remembered_then_answered() {
        let p = Prefetched::default();
        let k = DocKey::new("c", "a");
        assert!(matches!(p.load(&k), Err(Error::Store(_))));
        assert!(p.missed());
        let misses = p.lock().take_misses();
        assert_eq!(misses, vec![Miss::Doc(k.clone())]);
        let epoch = p.lock().epoch();
        let read = Read {
            docs: vec![(k.clone(), None)],
            pages: vec![(
                Miss::Keys {
                    collection: "c".into(),
                    after: None,
                    limit: 2,
                },
                vec![(0, DocKey::new("c", "a")), (0, DocKey::new("c", "b"))],
            )],
        };
        assert!(p.lock().fill(epoch, read));
        assert_eq!(p.load(&k).expect("read ahead"), None, "absent, as read");
        assert_eq!(p.keys("c", None, 1).expect("page").len(), 1);
        assert_eq!(
            p.keys("c", Some("a"), 1).expect("inside the page"),
            vec![DocKey::new("c", "b")]
        );
        assert!(p.keys("c", None, 3).is_err(), "a longer page is not known");
        assert!(p.keys("c", Some("b"), 1).is_err(), "past the page");
        assert!(p.keys("d", None, 1).is_err(), "another collection");
        assert_eq!(
            p.lock().take_misses()[0],
            Miss::Keys {
                collection: "c".into(),
                after: None,
                limit: 3 * KEYS_AHEAD,
            },
            "read ahead"
        );
        // A stored batch drops range answers, and reads started before it.
        p.lock().stored(std::iter::empty());
        assert!(p.keys("c", None, 1).is_err());
        assert!(!p.lock().fill(epoch, Read::default()));
    }

    #[test]
    fn a_page_of_live_dots_answers_the_questions_that_start_inside_it() {
        let p = Prefetched::default();
        let r = ReplicaId(7);
        assert!(p.dots(r, 0, 100, 2).is_err());
        let misses = p.lock().take_misses();
        let read_for = Miss::Dots {
            replica: r,
            from: 0,
            upto: 100,
            limit: 2 * DOTS_AHEAD,
        };
        assert_eq!(misses, vec![read_for.clone()], "read ahead");
        let k = |i: u64| (i, DocKey::new("c", format!("{i}")));
        let page: Page = [1, 2, 3, 5, 8, 9, 11, 12].into_iter().map(k).collect();
        let epoch = p.lock().epoch();
        assert!(p.lock().fill(
            epoch,
            Read {
                docs: Vec::new(),
                pages: vec![(read_for, page)],
            }
        ));
        assert_eq!(p.dots(r, 0, 100, 2).expect("first"), vec![k(1), k(2)]);
        assert_eq!(p.dots(r, 3, 100, 2).expect("inside"), vec![k(5), k(8)]);
        assert_eq!(p.dots(r, 9, 100, 2).expect("last two"), vec![k(11), k(12)]);
        assert!(p.dots(r, 11, 100, 2).is_err(), "past the page: not known");
        assert!(p.dots(r, 3, 99, 2).is_err(), "another bound");
    }
}
