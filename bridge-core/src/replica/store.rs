//! The durable layer: where a replica's persisted documents are read from.
//!
//! Either **in memory** (every durable state in a map, with the live-dot index beside it: what
//! the browser and the Durable Object hold until they read from a store of their own), or
//! **stored**: the host's store *is* the durable layer, read synchronously through
//! [`DocStore`], with a cache of document states in front of it bounded by a byte budget.
//! A stored replica keeps in memory only the space's metadata (vectors, clock), the
//! `_config` documents (a few, read on every write), the staged and in-flight layers
//! (bounded by back-pressure) and the cache.
//!
//! The host writes every [`super::PersistBatch`] to its store itself (one transaction, the
//! shared statements of `schema`): documents with their live dots and sibling counts. Only
//! then does it report the batch persisted, so from then on the store answers for it.

use super::*;
#[cfg(feature = "store")]
use std::cell::RefCell;
use std::ops::Deref;
use std::sync::Arc;

/// Synchronous reads of a replica's durable layer from the host's store (the native host's
/// SQLite, later the Durable Object's SQL). Implementations answer from committed data: the
/// host commits a batch before it reports it persisted, so reads never see a torn batch.
///
/// An error is reported to the caller of the operation that needed the read (a request
/// fails with `internal`); nothing is written on a failed read.
#[cfg(feature = "store")]
pub trait DocStore: Send {
    /// The durable state of one document.
    fn load(&self, key: &DocKey) -> Result<Option<DocState>>;
    /// Keys of `collection` (tombstones included) with an id above `after` (all with
    /// `None`), in id order, at most `limit`.
    fn keys(&self, collection: &str, after: Option<&str>, limit: usize) -> Result<Vec<DocKey>>;
    /// Live dots of `replica` with a counter in `from + 1 ..= upto`, in counter order, at
    /// most `limit`, each with the document it is a sibling of.
    fn dots(
        &self,
        replica: ReplicaId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DocKey)>>;
    /// [`DocStore::dots`] with the durable state of each dot's document (`None` when the
    /// store has none), so a delta reads a page of states at once. The default asks
    /// [`DocStore::load`] for each; a SQL store joins them in one statement
    /// (`schema::SELECT_DOT_STATES`).
    fn dot_states(
        &self,
        replica: ReplicaId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DocKey, Option<DocState>)>> {
        self.dots(replica, from, upto, limit)?
            .into_iter()
            .map(|(counter, key)| {
                let state = self.load(&key)?;
                Ok((counter, key, state))
            })
            .collect()
    }
    /// [`DocStore::keys`] with the durable state of each document, so an initial sync by
    /// key reads a page of states at once. The default asks [`DocStore::load`] for each; a
    /// SQL store reads them in one statement (`schema::SELECT_DOC_STATES`).
    fn key_states(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(DocKey, Option<DocState>)>> {
        self.keys(collection, after, limit)?
            .into_iter()
            .map(|key| {
                let state = self.load(&key)?;
                Ok((key, state))
            })
            .collect()
    }
    /// Keys of documents with more than one sibling (in `collection`, or any), above
    /// `after`, in key order, at most `limit`.
    fn conflicted(
        &self,
        collection: Option<&str>,
        after: Option<&DocKey>,
        limit: usize,
    ) -> Result<Vec<DocKey>>;
    /// Number of durable documents, tombstones included.
    fn doc_count(&self) -> Result<u64>;
    /// Documents whose siblings are all tombstones ([`DocState::is_dead`]) above `after`,
    /// in key order, at most `limit`, with their states: what collection looks at
    /// (`schema::SELECT_DEAD`). The default has none: a store without that index (the
    /// browser's) never collects. Servers only (built with `serve`).
    #[cfg(feature = "serve")]
    fn dead(&self, after: Option<&DocKey>, limit: usize) -> Result<Vec<(DocKey, DocState)>> {
        let _ = (after, limit);
        Ok(Vec::new())
    }
    /// The first collection above `after` (`""`: the first of all) holding a document.
    fn next_collection(&self, after: &str) -> Result<Option<String>>;
    /// Retained messages with an offset in `from + 1 ..= upto` — of `channel`, or of every
    /// channel with `None` — in offset order, at most `limit`. The host stores a batch's
    /// messages and trims each channel to its retention in the batch's transaction.
    fn messages(
        &self,
        channel: Option<&str>,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Retained>>;
    /// Whether the store holds the retained messages (the SQL stores do). A store that does
    /// not (the browser's) leaves them to the replica, in memory, as a `Memory` layer does;
    /// [`DocStore::messages`] is then never called.
    fn holds_messages(&self) -> bool {
        true
    }
    /// Whether a persisted state enters the cache when its document is not cached already
    /// (a cached one is always replaced). A SQL store reads a document back in
    /// microseconds: its replica caches what is read, and a large catch-up does not churn
    /// the cache, each new state evicting an older one (`false`). The default, `true`, suits
    /// a store whose misses cost a round trip (the browser's IndexedDB).
    fn cache_new_writes(&self) -> bool {
        true
    }
    /// Whether the last read refused failed only because the host has not fetched what it
    /// asked for yet: a host whose store is asynchronous (the browser's IndexedDB) answers
    /// from what it read ahead, and a read it did not foresee is refused
    /// (`Error::Store`) and remembered, never answered "absent". The engine then leaves a
    /// push for later instead of closing the link; the host reads what was missed and
    /// drains again.
    fn missed(&self) -> bool {
        false
    }
}

/// A document state borrowed from a layer in memory or shared with the cache.
#[derive(Debug)]
pub enum StateRef<'a> {
    /// A state of the staged or in-flight layer, or of a durable layer in memory.
    Borrowed(&'a DocState),
    /// A state read from the store, shared with the cache.
    #[cfg(feature = "store")]
    Shared(Arc<DocState>),
}

impl Deref for StateRef<'_> {
    type Target = DocState;
    fn deref(&self) -> &DocState {
        match self {
            StateRef::Borrowed(s) => s,
            #[cfg(feature = "store")]
            StateRef::Shared(s) => s,
        }
    }
}

/// A live dot's counter, its document, and the document's durable state (shared).
pub type DotState = (u64, DocKey, Option<Arc<DocState>>);

/// How many dots or keys one store read asks for.
pub(super) const PAGE: usize = 256;

/// How many retained messages one store read asks for (a message may be up to
/// [`crate::limits::MAX_MESSAGE_BYTES`]: a page is at most 8 MiB of payloads).
#[cfg(feature = "store")]
pub(super) const MESSAGE_PAGE: usize = 32;

#[cfg(feature = "store")]
/// What one cached state is charged: three times its encoded size bound, plus the cache's
/// own entries. A state in memory is a tree of allocations (siblings, a map node per few
/// fields, a `Value` and a stamp per field, each string its own block), which measured on
/// x86_64 at about three times its JSON size: with the bound alone a 64 MiB budget held
/// ~190 MB of heap (`bench_host large`, BENCHMARKS.md).
fn charge(key: &DocKey, state: &DocState) -> usize {
    3 * crate::codec::doc_state_size_bound(key, state)
        + 2 * (key.collection.len() + key.id.len())
        + 160
}

/// Document states read from or written to the store, least recently used first out, never
/// above `budget` bytes (by [`charge`]): the core's own accounting, reported by
/// [`Replica::cache_bytes`].
#[cfg(feature = "store")]
#[derive(Debug, Default)]
pub(super) struct Cache {
    budget: usize,
    bytes: usize,
    tick: u64,
    states: BTreeMap<DocKey, (Arc<DocState>, usize, u64)>,
    order: BTreeMap<u64, DocKey>,
}

#[cfg(feature = "store")]
impl Cache {
    fn new(budget: usize) -> Self {
        Cache {
            budget,
            ..Cache::default()
        }
    }

    fn get(&mut self, key: &DocKey) -> Option<Arc<DocState>> {
        self.tick += 1;
        let tick = self.tick;
        let (state, _, used) = self.states.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, key.clone());
        Some(state.clone())
    }

    /// The cached state of `key`, without counting it as used.
    fn peek(&self, key: &DocKey) -> Option<Arc<DocState>> {
        self.states.get(key).map(|(s, _, _)| s.clone())
    }

    fn put(&mut self, key: DocKey, state: Arc<DocState>) {
        self.remove(&key);
        let size = charge(&key, &state);
        if size > self.budget {
            return;
        }
        while self.bytes + size > self.budget {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, s, _)) = self.states.remove(&old) {
                self.bytes -= s;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.states.insert(key, (state, size, self.tick));
        self.bytes += size;
    }

    fn remove(&mut self, key: &DocKey) {
        if let Some((_, size, used)) = self.states.remove(key) {
            self.order.remove(&used);
            self.bytes -= size;
        }
    }
}

pub(super) enum Durable {
    Memory {
        docs: BTreeMap<DocKey, Arc<DocState>>,
        /// The live-dot index: every durable sibling's dot, to its document.
        live: BTreeMap<Dot, DocKey>,
    },
    #[cfg(feature = "store")]
    Stored {
        store: Box<dyn DocStore>,
        /// `_config` documents, always in memory: every write reads a policy. (Behind an
        /// `Arc`, as in every other layer: one map type less in the browser's package.)
        config: BTreeMap<DocKey, Arc<DocState>>,
        cache: RefCell<Cache>,
    },
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Durable::Memory { docs, .. } => write!(f, "Memory({} documents)", docs.len()),
            #[cfg(feature = "store")]
            Durable::Stored { cache, .. } => write!(f, "Stored({:?})", cache.borrow().bytes),
        }
    }
}

impl Durable {
    pub(super) fn memory() -> Self {
        Durable::Memory {
            docs: BTreeMap::new(),
            live: BTreeMap::new(),
        }
    }

    #[cfg(feature = "store")]
    pub(super) fn stored(store: Box<dyn DocStore>, budget: usize) -> Self {
        Durable::Stored {
            store,
            config: BTreeMap::new(),
            cache: RefCell::new(Cache::new(budget)),
        }
    }

    /// The `_config` documents, without a store read.
    pub(super) fn config(&self, key: &DocKey) -> Option<&DocState> {
        match self {
            Durable::Memory { docs, .. } => docs.get(key).map(|s| &**s),
            #[cfg(feature = "store")]
            Durable::Stored { config, .. } => config.get(key).map(|s| &**s),
        }
    }

    pub(super) fn get(&self, key: &DocKey) -> Result<Option<StateRef<'_>>> {
        match self {
            Durable::Memory { docs, .. } => Ok(docs.get(key).map(|s| StateRef::Borrowed(s))),
            #[cfg(feature = "store")]
            Durable::Stored {
                store,
                config,
                cache,
            } => {
                if key.collection == CONFIG_COLLECTION {
                    return Ok(config.get(key).map(|s| StateRef::Borrowed(s)));
                }
                if let Some(s) = cache.borrow_mut().get(key) {
                    return Ok(Some(StateRef::Shared(s)));
                }
                let Some(state) = store.load(key)? else {
                    return Ok(None);
                };
                let state = Arc::new(state);
                cache.borrow_mut().put(key.clone(), state.clone());
                Ok(Some(StateRef::Shared(state)))
            }
        }
    }

    /// A state the host persisted (or restored): it replaces the durable one, shared with
    /// the persisted batch (no copy).
    pub(super) fn put(&mut self, key: DocKey, state: Arc<DocState>) {
        match self {
            Durable::Memory { docs, live } => match docs.entry(key) {
                Entry::Occupied(mut slot) => {
                    for s in &slot.get().siblings {
                        live.remove(&s.dot);
                    }
                    for s in &state.siblings {
                        live.insert(s.dot, slot.key().clone());
                    }
                    slot.insert(state);
                }
                Entry::Vacant(slot) => {
                    for s in &state.siblings {
                        live.insert(s.dot, slot.key().clone());
                    }
                    slot.insert(state);
                }
            },
            #[cfg(feature = "store")]
            Durable::Stored {
                store,
                config,
                cache,
            } => {
                let cache = cache.get_mut();
                if key.collection == CONFIG_COLLECTION {
                    config.insert(key, state);
                } else if store.cache_new_writes() || cache.states.contains_key(&key) {
                    cache.put(key, state);
                }
            }
        }
    }

    /// A document the host collected: gone from the store, so from memory too.
    pub(super) fn remove(&mut self, key: &DocKey) {
        match self {
            Durable::Memory { docs, live } => {
                if let Some(old) = docs.remove(key) {
                    for s in &old.siblings {
                        live.remove(&s.dot);
                    }
                }
            }
            #[cfg(feature = "store")]
            Durable::Stored { config, cache, .. } => {
                config.remove(key);
                cache.get_mut().remove(key);
            }
        }
    }

    /// A page of durable documents whose siblings are all tombstones, above `after`, with
    /// their states (read from the store; not cached: collection looks at each once).
    #[cfg(feature = "serve")]
    pub(super) fn dead(
        &self,
        after: Option<&DocKey>,
        limit: usize,
    ) -> Result<Vec<(DocKey, DocState)>> {
        match self {
            Durable::Memory { docs, .. } => {
                let from = match after {
                    Some(k) => std::ops::Bound::Excluded(k.clone()),
                    None => std::ops::Bound::Unbounded,
                };
                Ok(docs
                    .range((from, std::ops::Bound::Unbounded))
                    .filter(|(_, s)| s.is_dead())
                    .take(limit)
                    .map(|(k, s)| (k.clone(), DocState::clone(s)))
                    .collect())
            }
            #[cfg(feature = "store")]
            Durable::Stored { store, .. } => store.dead(after, limit),
        }
    }

    pub(super) fn keys(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DocKey>> {
        match self {
            Durable::Memory { docs, .. } => Ok(docs
                .range(DocKey::new(collection, after.unwrap_or(""))..)
                .map(|(k, _)| k)
                .take_while(|k| k.collection == collection)
                .filter(|k| after.is_none_or(|a| k.id.as_str() > a))
                .take(limit)
                .cloned()
                .collect()),
            #[cfg(feature = "store")]
            Durable::Stored { config, .. } if collection == CONFIG_COLLECTION => Ok(config
                .keys()
                .filter(|k| after.is_none_or(|a| k.id.as_str() > a))
                .take(limit)
                .cloned()
                .collect()),
            #[cfg(feature = "store")]
            Durable::Stored { store, .. } => store.keys(collection, after, limit),
        }
    }

    /// A page of `collection`'s documents above `after` in id order, each with its durable
    /// state: what an initial sync by key reads. Like [`Durable::dot_states`], what it reads
    /// of the store is not put in the cache; a state the cache holds is taken from it.
    #[cfg(feature = "serve")]
    pub(super) fn key_states(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(DocKey, Option<Arc<DocState>>)>> {
        match self {
            Durable::Memory { docs, .. } => Ok(docs
                .range(DocKey::new(collection, after.unwrap_or(""))..)
                .take_while(|(k, _)| k.collection == collection)
                .filter(|(k, _)| after.is_none_or(|a| k.id.as_str() > a))
                .take(limit)
                .map(|(k, s)| (k.clone(), Some(s.clone())))
                .collect()),
            #[cfg(feature = "store")]
            Durable::Stored { config, .. } if collection == CONFIG_COLLECTION => Ok(config
                .iter()
                .filter(|(k, _)| after.is_none_or(|a| k.id.as_str() > a))
                .take(limit)
                .map(|(k, s)| (k.clone(), Some(s.clone())))
                .collect()),
            #[cfg(feature = "store")]
            Durable::Stored { store, cache, .. } => {
                let page = store.key_states(collection, after, limit)?;
                let cache = cache.borrow();
                Ok(page
                    .into_iter()
                    .map(|(key, state)| {
                        let state = cache.peek(&key).or_else(|| state.map(Arc::new));
                        (key, state)
                    })
                    .collect())
            }
        }
    }

    /// A page of `replica`'s live dots in `from + 1 ..= upto`, each with its document's
    /// durable state, for a delta: what it reads of the
    /// store is not put in the cache (a sync walks far more documents than a cache holds,
    /// and would only evict what readers use), a state the cache holds is taken from it.
    pub(super) fn dot_states(
        &self,
        replica: ReplicaId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<DotState>> {
        match self {
            Durable::Memory { live, docs } => Ok(live
                .range(Dot::new(replica, from + 1)..=Dot::new(replica, upto))
                .take(limit)
                .map(|(d, k)| (d.counter, k.clone(), docs.get(k).cloned()))
                .collect()),
            #[cfg(feature = "store")]
            Durable::Stored {
                store,
                config,
                cache,
            } => {
                let page = store.dot_states(replica, from, upto, limit)?;
                let cache = cache.borrow();
                Ok(page
                    .into_iter()
                    .map(|(counter, key, state)| {
                        let state = if key.collection == CONFIG_COLLECTION {
                            config.get(&key).cloned()
                        } else {
                            cache.peek(&key).or_else(|| state.map(Arc::new))
                        };
                        (counter, key, state)
                    })
                    .collect())
            }
        }
    }

    /// Every durable key with more than one sibling, in `collection` or any.
    pub(super) fn conflicted(&self, collection: Option<&str>) -> Result<Vec<DocKey>> {
        match self {
            Durable::Memory { docs, .. } => Ok(docs
                .iter()
                .filter(|(k, s)| {
                    s.siblings.len() > 1 && collection.is_none_or(|c| c == k.collection)
                })
                .map(|(k, _)| k.clone())
                .collect()),
            #[cfg(feature = "store")]
            Durable::Stored { store, .. } => {
                let mut out: Vec<DocKey> = Vec::new();
                loop {
                    let page = store.conflicted(collection, out.last(), PAGE)?;
                    let done = page.len() < PAGE;
                    out.extend(page);
                    if done {
                        return Ok(out);
                    }
                }
            }
        }
    }

    pub(super) fn doc_count(&self) -> Result<u64> {
        match self {
            Durable::Memory { docs, .. } => Ok(docs.len() as u64),
            #[cfg(feature = "store")]
            Durable::Stored { store, .. } => store.doc_count(),
        }
    }

    /// The first collection above `after` (`""`: the first) with a durable document: one
    /// seek, however large the collections.
    pub(super) fn next_collection(&self, after: &str) -> Result<Option<String>> {
        match self {
            Durable::Memory { docs, .. } => {
                // The first key of the next collection sorts after every key of `after`.
                let mut from = after.to_owned();
                if !after.is_empty() {
                    from.push('\0');
                }
                Ok(docs
                    .range(DocKey::new(from, "")..)
                    .map(|(k, _)| &k.collection)
                    .find(|c| c.as_str() > after)
                    .cloned())
            }
            #[cfg(feature = "store")]
            Durable::Stored { store, config, .. } => {
                let stored = store.next_collection(after)?;
                // `_config` is held in memory too; the store has it as well.
                let config = config
                    .keys()
                    .next()
                    .map(|k| k.collection.clone())
                    .filter(|c| c.as_str() > after);
                Ok(match (stored, config) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                })
            }
        }
    }

    /// The store, when the durable layer is one that holds the retained messages too (every
    /// caller reads or skips messages).
    #[cfg(feature = "store")]
    pub(super) fn store(&self) -> Option<&dyn DocStore> {
        match self {
            Durable::Stored { store, .. } if store.holds_messages() => Some(store.as_ref()),
            _ => None,
        }
    }

    /// Whether a read just refused was one the host has not fetched yet ([`DocStore::missed`]).
    pub(super) fn missed(&self) -> bool {
        match self {
            Durable::Memory { .. } => false,
            #[cfg(feature = "store")]
            Durable::Stored { store, .. } => store.missed(),
        }
    }

    /// Bytes the cache holds and its budget (`(0, 0)` in memory: nothing is cached).
    pub(super) fn cache_bytes(&self) -> (usize, usize) {
        match self {
            Durable::Memory { .. } => (0, 0),
            #[cfg(feature = "store")]
            Durable::Stored { cache, .. } => {
                let c = cache.borrow();
                (c.bytes, c.budget)
            }
        }
    }
}
