//! One space at one store: documents, the live-dot index, the space version vector,
//! messages, and the line between what is durable and what is not yet.
//!
//! State comes in three layers. **Staged** holds changes since the last cut; **in flight**
//! holds batches handed to the host to persist; **durable** holds what the host reported
//! persisted. Reads see the newest layer. Everything that leaves the store — pushes to peers,
//! acks, forwarded messages — comes from the durable layer only, so a crash (which loses the
//! other two) can never lose something another store has seen, and a replica never reuses a
//! dot or a message seq that escaped.
//!
//! The live-dot index maps every sibling's dot to its document. A peer at vector V lacks
//! exactly the documents with a live dot above V, so a delta is a few range scans: its cost
//! grows with the changes, not with the data set.
//!
//! The durable layer is either in memory or the host's store itself, read through
//! [`DocStore`] with a cache bounded by a byte budget ([`Replica::with_store`]; `store.rs`).

use crate::doc::{DocState, WriteOp};
use crate::frame::{Conflict, ConflictSide, DocEntry, DocView};
use crate::message::{ChannelLogs, Message, MessageId, Retained};
use crate::vec_map::VecMap;
use crate::{DocKey, Dot, Error, Hlc, Policy, ReplicaId, Result, Stamp, Tier, VersionVector};
use serde_json::Value;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

mod delta;
mod horizon;
mod store;
mod trust;

pub use delta::{Delta, FillPage, OwnDelta};
pub use horizon::{meet, Stability, Tracked};
#[cfg(feature = "store")]
pub use store::DocStore;
#[cfg(feature = "store")]
use store::MESSAGE_PAGE;
pub use store::{DotState, StateRef};
use store::{Durable, PAGE};

/// A page of an export: documents with their visible values, and the key the next page
/// starts after (`None`: the last page).
#[cfg(feature = "http")]
pub type ExportPage = (Vec<(DocKey, Value)>, Option<DocKey>);

/// Collection holding the space's replicated configuration.
pub const CONFIG_COLLECTION: &str = "_config";
/// The policy of [`CONFIG_COLLECTION`]: the cloud's value wins over a concurrent local one
/// (a write made after seeing the other still wins), so the cloud is authoritative for the
/// space's settings, including the default policy each host seeds when it creates a space.
pub const CONFIG_POLICY: Policy = Policy::CloudWins;
/// The configuration entry that holds the space-wide settings (`default_policy`).
pub const SPACE_ENTRY: &str = "space";
/// At most this many collected documents go into one batch.
pub const COLLECT_BATCH: usize = 1024;

/// Default number of messages a channel keeps for replay.
pub const DEFAULT_RETAIN: usize = 100;

/// What the host must write, atomically, before reporting [`Replica::persisted`].
#[derive(Clone, Debug, PartialEq)]
pub struct PersistBatch {
    /// The batch number, in cut order: report it to [`Replica::persisted`] (through the engine) in that order.
    pub id: u64,
    /// Full new states of changed documents (upsert by key), shared with the replica's
    /// in-flight layer (no copy is made for the host; drop the batch once it is written).
    pub docs: Vec<(DocKey, Arc<DocState>)>,
    /// The space vector after this batch.
    pub vector: VersionVector,
    /// The clock after this batch (so a restart never goes back).
    pub clock: Stamp,
    /// Highest message seq seen per origin after this batch.
    pub message_seen: VersionVector,
    /// New retained messages, with their offsets.
    pub messages: Vec<Retained>,
    /// Per channel written in this batch, how many messages it retains: the host keeps the
    /// newest that many and may delete older ones.
    pub retain: Vec<(String, usize)>,
    /// Requests with an idempotency key done by this batch's writes ([`crate::Engine::request_once`]):
    /// stored with the batch, given back with [`crate::Engine::restore_requests`].
    pub requests: Vec<crate::request::DoneRequest>,
    /// The horizon and the peers' table, when they changed since the last batch: stored
    /// with the metadata, given back with [`Replica::restore_stability`].
    pub stability: Option<Stability>,
    /// Documents collected (ARCHITECTURE.md, "Collection"): deleted everywhere, their whole
    /// context below the horizon. The host removes each one's row and live dots. None of
    /// them is in [`PersistBatch::docs`].
    pub collected: Vec<DocKey>,
}

impl PersistBatch {
    /// Whether the batch carries no document and no message (metadata only).
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty() && self.messages.is_empty() && self.collected.is_empty()
    }
}

#[derive(Default, Debug)]
struct Layer {
    /// States behind an `Arc` in every layer (staged, in flight, durable in memory, the
    /// batch handed to the host): one map type, and a batch shares its states, never copies.
    docs: BTreeMap<DocKey, Arc<DocState>>,
    messages: Vec<Message>,
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    docs: BTreeMap<DocKey, Arc<DocState>>,
    vector: VersionVector,
    message_seen: VersionVector,
    messages: Vec<Retained>,
    collected: Vec<DocKey>,
    /// The peers of the table this batch persists, when it persists the table.
    #[cfg(feature = "serve")]
    peers: Option<Vec<ReplicaId>>,
}

/// A batch the host has persisted, handed back so the engine can release what it gated.
#[derive(Debug, Default)]
pub struct Released {
    /// The batch that was persisted.
    pub id: u64,
    /// Documents whose durable state changed: announced to subscribers now.
    pub docs: Vec<DocKey>,
    /// Messages that became durable: delivered now.
    pub messages: Vec<Retained>,
}

/// One space at one store: its layers (staged, in flight, durable), vectors, clock and
/// channel logs. See the module documentation.
pub struct Replica {
    id: ReplicaId,
    tier: Tier,
    space: String,
    clock: Hlc,
    default_policy: Policy,
    default_retain: usize,
    // durable layer
    durable: Durable,
    vv: VersionVector,
    msg_seen: VersionVector,
    logs: ChannelLogs,
    // newer layers
    inflight: VecDeque<InFlight>,
    staged: Layer,
    vv_latest: VersionVector,
    msg_seen_latest: VersionVector,
    next_batch: u64,
    stability: Stability,
    /// The stability changed since the last cut.
    stability_dirty: bool,
    /// Documents whose state a peer's push changed by dropping a sibling and bringing
    /// nothing new ([`Replica::take_announced`]).
    announce: Vec<DocKey>,
    /// Documents of which a push dropped a sibling by reading it against its sender
    /// ([`Replica::take_announced`]): the sender may hold it again since it cut the push.
    answer: Vec<DocKey>,
    /// The peers of the table as last persisted, in id order.
    #[cfg(feature = "serve")]
    durable_peers: Vec<ReplicaId>,
    /// Tombstone collection (off unless the host turns it on).
    collector: Collector,
}

/// Where tombstone collection stands: documents found collectable and not cut yet, and the
/// pass over the store's dead documents (`docs_dead`) that finds them.
#[derive(Debug, Default)]
struct Collector {
    enabled: bool,
    /// Found, waiting for the next cut.
    staged: BTreeSet<DocKey>,
    /// The pass under way: the horizon it collects below, and the last key it looked at.
    #[cfg(feature = "serve")]
    pass: Option<(VersionVector, Option<DocKey>)>,
    /// The horizon of the last pass that ran to the end: a new pass starts when the horizon
    /// moves past it.
    #[cfg(feature = "serve")]
    done_below: VersionVector,
    /// Documents collected since this replica was made (counted when persisted).
    total: u64,
}

impl Replica {
    /// An empty replica of `space` with id `id`, its durable layer in memory.
    pub fn new(id: ReplicaId, tier: Tier, space: impl Into<String>) -> Self {
        Replica {
            id,
            tier,
            space: space.into(),
            clock: Hlc::new(id),
            default_policy: Policy::Lww,
            default_retain: DEFAULT_RETAIN,
            durable: Durable::memory(),
            vv: VersionVector::new(),
            msg_seen: VersionVector::new(),
            logs: ChannelLogs::default(),
            inflight: VecDeque::new(),
            staged: Layer::default(),
            vv_latest: VersionVector::new(),
            msg_seen_latest: VersionVector::new(),
            next_batch: 1,
            stability: Stability::default(),
            stability_dirty: false,
            announce: Vec::new(),
            answer: Vec::new(),
            #[cfg(feature = "serve")]
            durable_peers: Vec::new(),
            collector: Collector::default(),
        }
    }

    /// Turns tombstone collection on: documents whose siblings are all tombstones and
    /// whose whole context is below the horizon are removed from the store.
    pub fn with_collection(mut self, on: bool) -> Self {
        self.collector.enabled = on;
        self
    }

    /// Whether this replica collects tombstones.
    pub fn collects(&self) -> bool {
        self.collector.enabled
    }

    /// Documents collected since this replica was made.
    pub fn collected_total(&self) -> u64 {
        self.collector.total
    }

    /// Sets the policy this store seeds as the space default when it creates the space.
    pub fn with_default_policy(mut self, p: Policy) -> Self {
        self.default_policy = p;
        self
    }

    /// Sets how many messages a channel retains when `_config` says nothing of it.
    pub fn with_default_retain(mut self, n: usize) -> Self {
        self.default_retain = n;
        self
    }

    /// Sets how far ahead of `now_ms` a stamp from a peer may be, in milliseconds.
    pub fn with_max_skew(mut self, ms: u64) -> Self {
        self.clock = self.clock.clone().with_max_skew(ms);
        self
    }

    /// Reads the durable layer from `store` (which the host writes every batch to before it
    /// reports the batch persisted), keeping at most `cache_bytes` of document states in
    /// memory. Restore the metadata, the `_config` documents and the highest message offset
    /// ([`Replica::restore_message_offset`]); no other document and no retained message
    /// needs to be read at start: replays read them from the store in pages.
    #[cfg(feature = "store")]
    pub fn with_store(mut self, store: Box<dyn DocStore>, cache_bytes: usize) -> Self {
        self.read_from(store, cache_bytes);
        self
    }

    /// [`Replica::with_store`] on a replica already made (before anything is restored).
    #[cfg(feature = "store")]
    pub fn read_from(&mut self, store: Box<dyn DocStore>, cache_bytes: usize) {
        self.durable = Durable::stored(store, cache_bytes);
    }

    /// Bytes of document states the cache holds, and its budget (both 0 when the durable
    /// layer is in memory).
    pub fn cache_bytes(&self) -> (usize, usize) {
        self.durable.cache_bytes()
    }

    /// Whether the read that just failed asked for something a prefetching host has not
    /// fetched yet (`DocStore::missed`; always `false` in memory).
    pub fn store_missed(&self) -> bool {
        self.durable.missed()
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }
    /// This replica's tier (local or cloud).
    pub fn tier(&self) -> Tier {
        self.tier
    }
    /// The space this replica holds.
    pub fn space(&self) -> &str {
        &self.space
    }
    /// The durable space vector (what peers are told we hold).
    pub fn vector(&self) -> &VersionVector {
        &self.vv
    }
    /// The vector including changes not yet persisted.
    pub fn latest_vector(&self) -> &VersionVector {
        &self.vv_latest
    }
    /// The durable vector of messages seen: per origin, the highest seq persisted here.
    pub fn message_seen(&self) -> &VersionVector {
        &self.msg_seen
    }
    /// The clock's last stamp (persisted with every batch, so a restart never goes back).
    pub fn clock(&self) -> Stamp {
        self.clock.last()
    }
    /// The retained messages of every channel, durable ones only, when they are kept in
    /// memory; a replica read from a store keeps only the highest offset here (read them
    /// with [`Replica::replay`]).
    pub fn logs(&self) -> &ChannelLogs {
        &self.logs
    }

    /// Retained messages of `channel` after offset `cursor`, durable ones only, in offset
    /// order: from memory, or read from the store a page at a time (feature `store`; the
    /// browser's build reads [`Replica::logs`]).
    #[cfg(feature = "store")]
    pub fn replay(&self, channel: &str, cursor: u64) -> Result<Vec<Retained>> {
        if let Some(store) = self.durable.store() {
            return self.stored_messages(store, Some(channel), cursor, |_| true);
        }
        Ok(self.logs.after(channel, cursor).cloned().collect())
    }

    /// The first page (at most `MESSAGE_PAGE`, 32) of `channel`'s retained messages after
    /// offset `cursor`, durable ones only, in offset order; empty once `cursor` is at the
    /// highest durable offset or the channel holds nothing after it. A subscriber's replay
    /// reads these one after the other as its connection drains.
    #[cfg(feature = "store")]
    pub fn replay_page(&self, channel: &str, cursor: u64) -> Result<Vec<Retained>> {
        let Some(store) = self.durable.store() else {
            return Ok(self
                .logs
                .after(channel, cursor)
                .take(MESSAGE_PAGE)
                .cloned()
                .collect());
        };
        let upto = self.logs.next_offset();
        if cursor >= upto {
            return Ok(Vec::new());
        }
        let page = store.messages(Some(channel), cursor, upto, MESSAGE_PAGE)?;
        let mut last = cursor;
        for r in &page {
            in_range(r.offset, last, upto)?;
            last = r.offset;
        }
        Ok(page)
    }

    /// Every durable retained message for which `keep` says yes, in offset order (what a
    /// peer session is replayed when it opens): from memory, or read from the store a page
    /// at a time, so only the kept ones are held.
    #[cfg(feature = "store")]
    pub fn retained_where(&self, mut keep: impl FnMut(&Retained) -> bool) -> Result<Vec<Retained>> {
        if let Some(store) = self.durable.store() {
            return self.stored_messages(store, None, 0, keep);
        }
        Ok(self
            .logs
            .all()
            .into_iter()
            .filter(|r| keep(r))
            .cloned()
            .collect())
    }

    /// Retained messages in the store above `cursor` (of `channel`, or all) up to the highest
    /// durable offset, `keep` choosing, a page at a time.
    #[cfg(feature = "store")]
    fn stored_messages(
        &self,
        store: &dyn DocStore,
        channel: Option<&str>,
        mut cursor: u64,
        mut keep: impl FnMut(&Retained) -> bool,
    ) -> Result<Vec<Retained>> {
        // Only what the engine was told is persisted: a batch the host committed but has
        // not reported yet is delivered when it is reported, not replayed before.
        let upto = self.logs.next_offset();
        let mut out = Vec::new();
        while cursor < upto {
            let page = store.messages(channel, cursor, upto, MESSAGE_PAGE)?;
            let last_page = page.len() < MESSAGE_PAGE;
            for r in page {
                in_range(r.offset, cursor, upto)?;
                cursor = r.offset;
                if keep(&r) {
                    out.push(r);
                }
            }
            if last_page {
                break;
            }
        }
        Ok(out)
    }
    /// Number of durable documents (tombstones included).
    pub fn doc_count(&self) -> Result<u64> {
        self.durable.doc_count()
    }

    /// Collections holding at least one document (tombstones included), newest layer, in
    /// order: one store seek per collection.
    pub fn collections(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut after = String::new();
        while let Some(c) = self.next_collection(&after)? {
            after.clone_from(&c);
            out.push(c);
        }
        Ok(out)
    }

    /// The first collection above `after` (`""`: the first) holding a document, newest layer.
    fn next_collection(&self, after: &str) -> Result<Option<String>> {
        let durable = self.durable.next_collection(after)?;
        let newer = self
            .inflight
            .iter()
            .map(|f| &f.docs)
            .chain([&self.staged.docs])
            .filter_map(|layer| {
                layer
                    .keys()
                    .map(|k| &k.collection)
                    .find(|c| c.as_str() > after)
            })
            .min()
            .cloned();
        Ok(match (durable, newer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    #[cfg(feature = "http")]
    /// A page of every visible document (configuration included) in key order after
    /// `after`, at most `limit`, and the key to continue after when there is more, of the
    /// collections `reads` keeps (the others are skipped, not read). Reads the store a page
    /// at a time, so a whole space is never held.
    pub fn export_page(
        &self,
        after: Option<&DocKey>,
        limit: usize,
        reads: &dyn Fn(&str) -> bool,
    ) -> Result<ExportPage> {
        let mut out: Vec<(DocKey, Value)> = Vec::new();
        let mut coll = match after {
            Some(a) => Some(a.collection.clone()),
            None => self.next_collection("")?,
        };
        let mut from = after.map(|a| a.id.clone());
        while let Some(c) = coll {
            if !reads(&c) {
                coll = self.next_collection(&c)?;
                from = None;
                continue;
            }
            let want = (limit + 1).saturating_sub(out.len());
            for view in self.list(&c, from.as_deref(), want)? {
                if let Some(value) = view.value {
                    out.push((DocKey::new(view.collection, view.id), value));
                }
            }
            if out.len() > limit {
                out.truncate(limit);
                let next = out.last().map(|(k, _)| k.clone());
                return Ok((out, next));
            }
            coll = self.next_collection(&c)?;
            from = None;
        }
        Ok((out, None))
    }

    // ---- restore -------------------------------------------------------------------------

    /// Loads one document as read back from storage (into the cache, when the durable layer
    /// is a store: only `_config` documents need restoring then).
    pub fn restore_doc(&mut self, key: DocKey, state: DocState) {
        if let Some(st) = state.max_stamp() {
            self.clock.observe(st);
        }
        self.durable.put(key, Arc::new(state));
    }

    /// Loads the space metadata as read back from storage.
    pub fn restore_meta(
        &mut self,
        vector: VersionVector,
        clock: Stamp,
        message_seen: VersionVector,
    ) {
        self.vv = vector.clone();
        self.vv_latest = vector;
        self.clock.restore(clock);
        self.msg_seen = message_seen.clone();
        self.msg_seen_latest = message_seen;
    }

    /// Loads a retained message as read back from storage. A replica read from a store
    /// keeps only its offset (the store holds the message).
    pub fn restore_message(&mut self, r: Retained) {
        #[cfg(feature = "store")]
        if self.durable.store().is_some() {
            self.logs.advance(r.offset);
            return;
        }
        self.logs.restore(r);
    }

    /// The highest offset of a retained message in the store, read back at start by a
    /// replica whose retained messages stay in the store (`schema::SELECT_LAST_OFFSET`):
    /// offsets continue above it, and replays read up to it.
    #[cfg(feature = "store")]
    pub fn restore_message_offset(&mut self, offset: u64) {
        self.logs.advance(offset);
    }

    // ---- reads ---------------------------------------------------------------------------

    /// The newest state of a document (staged, then in flight, then durable).
    pub fn state(&self, key: &DocKey) -> Result<Option<StateRef<'_>>> {
        if let Some(s) = self.staged.docs.get(key) {
            return Ok(Some(StateRef::Borrowed(s)));
        }
        unstaged_state(&self.inflight, &self.durable, key)
    }

    /// A page of `replica`'s durable live dots in `from + 1 ..= upto`, each with its
    /// document's durable state (as a delta reads them; nothing is cached).
    pub fn durable_dot_states(
        &self,
        replica: ReplicaId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<DotState>> {
        if from >= upto {
            return Ok(Vec::new());
        }
        self.durable.dot_states(replica, from, upto, limit)
    }

    /// The durable state of a document.
    pub fn durable_state(&self, key: &DocKey) -> Result<Option<StateRef<'_>>> {
        self.durable.get(key)
    }

    /// The newest state of a `_config` document (always in memory).
    fn config_state(&self, key: &DocKey) -> Option<&DocState> {
        self.staged
            .docs
            .get(key)
            .map(|s| &**s)
            .or_else(|| {
                self.inflight
                    .iter()
                    .rev()
                    .find_map(|f| f.docs.get(key).map(|s| &**s))
            })
            .or_else(|| self.durable.config(key))
    }

    /// The conflict policy of `collection`: its `_config` entry, else the space default.
    pub fn policy(&self, collection: &str) -> Policy {
        if collection == CONFIG_COLLECTION {
            return CONFIG_POLICY;
        }
        self.config_field(&format!("collection:{collection}"), "policy")
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| self.space_default_policy())
    }

    /// The space's default policy: the replicated `_config/space` entry once it exists
    /// anywhere this store has heard of, else this store's local seed.
    pub fn space_default_policy(&self) -> Policy {
        self.config_field(SPACE_ENTRY, "default_policy")
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(self.default_policy)
    }

    /// This store's local setting: the seed it writes when it creates the space.
    pub fn local_default_policy(&self) -> Policy {
        self.default_policy
    }

    /// Whether the durable layer holds the space configuration entry.
    pub fn has_durable_space_entry(&self) -> bool {
        self.durable
            .config(&DocKey::new(CONFIG_COLLECTION, SPACE_ENTRY))
            .is_some()
    }

    /// How many messages `channel` retains: its `_config` entry (at most 100,000), else the
    /// store's default.
    pub fn retain(&self, channel: &str) -> usize {
        self.config_field(&format!("channel:{channel}"), "retain")
            .and_then(|v| v.as_u64())
            .map(|n| n.min(100_000) as usize)
            .unwrap_or(self.default_retain)
    }

    fn config_field(&self, id: &str, field: &str) -> Option<Value> {
        let key = DocKey::new(CONFIG_COLLECTION, id);
        crate::policy::visible_field(CONFIG_POLICY, self.config_state(&key)?, field).cloned()
    }

    /// How a document looks to readers under its collection's policy (newest layer):
    /// visible value (`None` when absent or deleted), winning stamp, open conflict.
    pub fn view(&self, key: &DocKey) -> Result<DocView> {
        let policy = self.policy(&key.collection);
        let st = self.state(key)?;
        let st = st.as_deref();
        let winner = st.and_then(|s| crate::policy::winner(policy, s));
        Ok(DocView {
            collection: key.collection.clone(),
            id: key.id.clone(),
            value: st.and_then(|s| s.visible(policy)),
            stamp: winner.map(|w| w.stamp),
            conflict: policy == Policy::Manual && st.is_some_and(|s| s.siblings.len() > 1),
        })
    }

    /// The visible value of a document under its collection's policy (newest layer).
    pub fn get(&self, key: &DocKey) -> Result<Option<Value>> {
        Ok(self
            .state(key)?
            .and_then(|s| s.visible(self.policy(&key.collection))))
    }

    /// Keys of `collection` above `after` in the staged and in-flight layers, each layer in
    /// key order (one after the other: a key may come more than once).
    pub(super) fn newer_keys<'a>(
        &'a self,
        collection: &'a str,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = &'a DocKey> + 'a {
        let start = DocKey::new(collection, after.unwrap_or(""));
        self.inflight
            .iter()
            .map(|f| &f.docs)
            .chain([&self.staged.docs])
            .flat_map(move |layer| {
                layer
                    .range(start.clone()..)
                    .map(|(k, _)| k)
                    .take_while(move |k| k.collection == collection)
                    .filter(move |k| after.is_none_or(|a| k.id.as_str() > a))
            })
    }

    /// Visible (not deleted) documents of a collection, newest layer, in id order, after
    /// `after`, at most `limit`. The durable layer is read in pages, so deleted documents
    /// never eat into the page and a store is never read whole.
    pub fn list(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DocView>> {
        // Documents only in the newer layers are few: gather them, then merge with the
        // durable range.
        // Sorted and unique (a sorted Vec: see `delta_bounded`).
        let mut newer: VecMap<&DocKey, ()> = VecMap::new();
        for k in self.newer_keys(collection, after) {
            newer.insert(k, ());
        }
        let mut newer = newer.keys().copied().peekable();
        let mut out = Vec::new();
        let push = |out: &mut Vec<DocView>, key: &DocKey| -> Result<()> {
            let view = self.view(key)?;
            if view.value.is_some() {
                out.push(view);
            }
            Ok(())
        };
        let mut cursor: Option<String> = after.map(str::to_owned);
        let page_size = limit.saturating_add(1).clamp(1, PAGE);
        'pages: loop {
            let page = self
                .durable
                .keys(collection, cursor.as_deref(), page_size)?;
            let last_page = page.len() < page_size;
            for key in page {
                while let Some(n) = newer.next_if(|n| **n < key) {
                    if out.len() >= limit {
                        break 'pages;
                    }
                    push(&mut out, n)?;
                }
                newer.next_if(|n| **n == key);
                if out.len() >= limit {
                    break 'pages;
                }
                push(&mut out, &key)?;
                cursor = Some(key.id);
            }
            if last_page {
                break;
            }
        }
        for n in newer {
            if out.len() >= limit {
                break;
            }
            push(&mut out, n)?;
        }
        Ok(out)
    }

    /// Open conflicts (documents of `manual` collections with more than one sibling).
    pub fn conflicts(&self, collection: Option<&str>) -> Result<Vec<Conflict>> {
        // Sorted and unique (see `delta_bounded` for why not a B-tree).
        let mut keys: VecMap<DocKey, ()> = self
            .durable
            .conflicted(collection)?
            .into_iter()
            .map(|k| (k, ()))
            .collect();
        let layers = self
            .inflight
            .iter()
            .map(|f| &f.docs)
            .chain([&self.staged.docs]);
        for layer in layers {
            for (k, s) in layer {
                if s.siblings.len() > 1 && collection.is_none_or(|c| c == k.collection) {
                    keys.insert(k.clone(), ());
                }
            }
        }
        let mut out = Vec::new();
        for k in keys.keys() {
            if self.policy(&k.collection) == Policy::Manual {
                out.extend(self.conflict(k)?);
            }
        }
        Ok(out)
    }

    /// The open conflict on `key`, if its collection is `manual` and it has several
    /// siblings: every side with its fields, and the names of the fields that differ.
    pub fn conflict(&self, key: &DocKey) -> Result<Option<Conflict>> {
        let Some(st) = self.state(key)? else {
            return Ok(None);
        };
        if st.siblings.len() < 2 || self.policy(&key.collection) != Policy::Manual {
            return Ok(None);
        }
        let Some(shown) = crate::policy::winner(Policy::Lww, &st).map(|w| w.dot) else {
            return Ok(None);
        };
        let sides: Vec<ConflictSide> = st
            .siblings
            .iter()
            .map(|s| ConflictSide {
                dot: s.dot,
                tier: s.tier,
                stamp: s.stamp,
                value: s.body.clone().map(crate::policy::fields_to_object),
            })
            .collect();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for s in &sides {
            if let Some(Value::Object(m)) = &s.value {
                names.extend(m.keys().map(String::as_str));
            }
        }
        let field = |s: &ConflictSide, n: &str| s.value.as_ref().and_then(|v| v.get(n)).cloned();
        let fields = names
            .into_iter()
            .filter(|n| sides.iter().any(|s| field(s, n) != field(&sides[0], n)))
            .map(str::to_owned)
            .collect();
        Ok(Some(Conflict {
            collection: key.collection.clone(),
            id: key.id.clone(),
            shown,
            sides,
            fields,
        }))
    }

    // ---- writes --------------------------------------------------------------------------

    /// A write made here, at `now_ms`. It supersedes every sibling this store holds.
    pub fn write(&mut self, now_ms: u64, key: DocKey, op: WriteOp) -> Result<Dot> {
        if key.collection == CONFIG_COLLECTION {
            if let WriteOp::Put(m) | WriteOp::Patch(m) = &op {
                check_config(&key.id, m)?;
            }
        }
        let policy = self.policy(&key.collection);
        let dot = Dot::new(self.id, self.vv_latest.get(self.id) + 1);
        let stamp = self.clock.tick(now_ms);
        // One search of the staged layer: a staged state is written in place (copied first
        // only if something else shares it), anything else is read from the layers below.
        match self.staged.docs.entry(key) {
            Entry::Occupied(mut slot) => {
                Arc::make_mut(slot.get_mut()).write(policy, dot, stamp, self.tier, op);
            }
            Entry::Vacant(slot) => {
                let mut st = unstaged_state(&self.inflight, &self.durable, slot.key())?
                    .map(|s| (*s).clone())
                    .unwrap_or_default();
                st.write(policy, dot, stamp, self.tier, op);
                slot.insert(Arc::new(st));
            }
        }
        self.vv_latest.add_dot(dot);
        Ok(dot)
    }

    /// Applies document states from a peer. All stamps are checked first, so a refused
    /// frame changes nothing. Returns the keys whose state changed.
    pub fn apply_remote(
        &mut self,
        now_ms: u64,
        docs: Vec<DocEntry>,
        watermark: &VersionVector,
    ) -> Result<Vec<DocKey>> {
        self.apply_remote_held(now_ms, docs, watermark, &VersionVector::new(), None)
    }

    /// [`Replica::apply_remote`] of a push from a peer known to hold durably everything
    /// below `held` (below the horizon): each state is read against it
    /// ([`DocState::read_against`]), so a sibling the peer has seen and no longer holds
    /// (its document collected there) is gone here too. A peer replicating only `filter`'s
    /// collections holds nothing of the others (its vector is complete for its own only):
    /// its states of those are not read against `held`.
    pub fn apply_remote_held(
        &mut self,
        now_ms: u64,
        docs: Vec<DocEntry>,
        watermark: &VersionVector,
        held: &VersionVector,
        filter: Option<&[String]>,
    ) -> Result<Vec<DocKey>> {
        for e in &docs {
            crate::check_name("collection", &e.collection, true)?;
            crate::check_name("document id", &e.id, true)?;
            for s in &e.state.siblings {
                self.clock.check(now_ms, s.stamp)?;
                if !e.state.context.contains(s.dot) {
                    return Err(Error::Protocol(format!(
                        "sibling {:?} of {}/{} is outside its own context",
                        s.dot, e.collection, e.id
                    )));
                }
            }
        }
        let mut changed = Vec::new();
        let none = VersionVector::new();
        for e in docs {
            let mut state = e.state;
            crate::doc::sort_siblings(&mut state.siblings);
            if let Some(st) = state.max_stamp() {
                self.clock.observe(st);
            }
            let key = DocKey::new(e.collection, e.id);
            let held = match filter {
                Some(f) if !crate::auth::subscribed(f, &key) => &none,
                _ => held,
            };
            // Whether the join changes anything is decided from dots and contexts first, so
            // a state is cloned only when it must be (the newer layers never alias the
            // durable one) and never compared by content.
            match self.staged.docs.entry(key) {
                Entry::Occupied(mut slot) => {
                    let read = !held.is_empty() && state.read_against(slot.get(), held);
                    #[cfg(feature = "serve")]
                    if read {
                        self.answer.push(slot.key().clone());
                    } else if silent_drop(slot.get(), &state) {
                        self.announce.push(slot.key().clone());
                    }
                    #[cfg(not(feature = "serve"))]
                    let _ = read;
                    if slot.get().join_changes(&state) {
                        // A staged state is in this layer only, so it is not shared: the
                        // match takes it without a copy.
                        match Arc::get_mut(slot.get_mut()) {
                            Some(st) => st.absorb(state),
                            None => {
                                let mut st = DocState::clone(slot.get());
                                st.join(&state);
                                slot.insert(Arc::new(st));
                            }
                        }
                        changed.push(slot.key().clone());
                    }
                }
                Entry::Vacant(slot) => {
                    let cur = unstaged_state(&self.inflight, &self.durable, slot.key())?;
                    let read = match (&cur, held.is_empty()) {
                        (Some(cur), false) => state.read_against(cur, held),
                        _ => false,
                    };
                    #[cfg(feature = "serve")]
                    if read {
                        self.answer.push(slot.key().clone());
                    } else if cur.as_ref().is_some_and(|c| silent_drop(c, &state)) {
                        self.announce.push(slot.key().clone());
                    }
                    #[cfg(not(feature = "serve"))]
                    let _ = read;
                    let joined = match cur {
                        Some(cur) if cur.join_changes(&state) => {
                            let mut cur = (*cur).clone();
                            cur.absorb(state);
                            Some(cur)
                        }
                        Some(_) => None,
                        // Joined into nothing, a state (sorted and deduplicated above) is
                        // itself: it changes something unless it is empty.
                        None if !state.siblings.is_empty() || !state.context.is_empty() => {
                            Some(state)
                        }
                        None => None,
                    };
                    if let Some(joined) = joined {
                        changed.push(slot.key().clone());
                        slot.insert(Arc::new(joined));
                    }
                }
            }
        }
        self.vv_latest.join(watermark);
        Ok(changed)
    }

    // ---- messages ------------------------------------------------------------------------

    /// The documents whose state a push changed by a drop alone since the last call: no
    /// delta carries such a change (it makes no write), so the engine sends these states to
    /// its peers that may hold what was dropped.
    /// The second list: documents a push dropped a sibling of by reading it against its
    /// sender, which go back to the sender only (it may have taken the sibling again since
    /// it cut the push; every other peer gets the drop with the push's new writes).
    pub fn take_announced(&mut self) -> (Vec<DocKey>, Vec<DocKey>) {
        (
            std::mem::take(&mut self.announce),
            std::mem::take(&mut self.answer),
        )
    }

    /// A message published here.
    pub fn publish(&mut self, now_ms: u64, channel: String, payload: Value) -> MessageId {
        let id = MessageId {
            origin: self.id,
            seq: self.msg_seen_latest.get(self.id) + 1,
        };
        self.msg_seen_latest.raise(self.id, id.seq);
        let stamp = self.clock.tick(now_ms);
        self.staged.messages.push(Message {
            id,
            channel,
            payload,
            stamp,
        });
        id
    }

    /// A message from a peer; `false` when it was already seen (or overtaken) here.
    pub fn accept_message(&mut self, now_ms: u64, m: Message) -> Result<bool> {
        if self.msg_seen_latest.get(m.id.origin) >= m.id.seq {
            return Ok(false);
        }
        self.clock.check(now_ms, m.stamp)?;
        self.clock.observe(m.stamp);
        self.msg_seen_latest.raise(m.id.origin, m.id.seq);
        self.staged.messages.push(m);
        Ok(true)
    }

    // ---- persistence ---------------------------------------------------------------------

    /// Whether anything waits to be cut into a batch (documents, messages, or a vector
    /// raised by a peer's watermark).
    pub fn has_staged(&self) -> bool {
        !self.staged.docs.is_empty()
            || !self.staged.messages.is_empty()
            || !self.collector.staged.is_empty()
            || self.stability_dirty
            || &self.vv_latest != self.inflight.back().map_or(&self.vv, |f| &f.vector)
    }

    /// Cuts the staged changes into a batch for the host to persist.
    pub fn cut(&mut self) -> Option<PersistBatch> {
        if !self.has_staged() {
            return None;
        }
        let id = self.next_batch;
        self.next_batch += 1;
        let layer = std::mem::take(&mut self.staged);
        let mut docs = layer.docs;
        // A document written or joined since it was found collectable is kept.
        let mut collected: Vec<DocKey> = std::mem::take(&mut self.collector.staged)
            .into_iter()
            .filter(|k| !docs.contains_key(k))
            .collect();
        // A state left without a sibling (a resync dropped what its server collected) is
        // removed, as the server removed it: kept with its context, it would refuse those
        // writes for good where the server takes them back if a late concurrent write
        // brings them (ARCHITECTURE.md, "Resync").
        let emptied: Vec<DocKey> = docs
            .iter()
            .filter(|(_, s)| s.siblings.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for k in emptied {
            docs.remove(&k);
            if !collected.contains(&k) {
                collected.push(k);
            }
        }
        let mut offset = self
            .inflight
            .iter()
            .rev()
            .find_map(|f| f.messages.last().map(|r| r.offset))
            .unwrap_or(0)
            .max(self.logs.next_offset());
        let messages: Vec<Retained> = layer
            .messages
            .into_iter()
            .map(|message| {
                offset += 1;
                Retained { offset, message }
            })
            .collect();
        let channels: BTreeSet<&str> = messages
            .iter()
            .map(|r| r.message.channel.as_str())
            .collect();
        let retain = channels
            .into_iter()
            .map(|ch| (ch.to_owned(), self.retain(ch)))
            .collect();
        let batch = PersistBatch {
            id,
            docs: docs.iter().map(|(k, s)| (k.clone(), s.clone())).collect(),
            vector: self.vv_latest.clone(),
            clock: self.clock.last(),
            message_seen: self.msg_seen_latest.clone(),
            messages: messages.clone(),
            retain,
            requests: Vec::new(),
            stability: std::mem::take(&mut self.stability_dirty).then(|| self.stability.clone()),
            collected: collected.clone(),
        };
        #[cfg(feature = "serve")]
        let peers = batch
            .stability
            .as_ref()
            .map(|s| s.peers.iter().map(|p| p.replica).collect());
        self.inflight.push_back(InFlight {
            #[cfg(feature = "serve")]
            peers,
            id,
            docs,
            vector: self.vv_latest.clone(),
            message_seen: self.msg_seen_latest.clone(),
            messages,
            collected,
        });
        Some(batch)
    }

    /// The host has persisted batch `id`. Batches must be reported in the order they were cut.
    pub fn persisted(&mut self, id: u64) -> Result<Released> {
        match self.inflight.front() {
            Some(f) if f.id == id => {}
            _ => {
                return Err(Error::Protocol(format!(
                    "batch {id} reported persisted out of order"
                )))
            }
        }
        let Some(f) = self.inflight.pop_front() else {
            return Err(Error::Protocol(format!("batch {id} is not in flight")));
        };
        let mut released = Released {
            id,
            ..Released::default()
        };
        released.docs.reserve(f.docs.len());
        for (key, state) in f.docs {
            released.docs.push(key.clone());
            self.durable.put(key, state);
        }
        for key in &f.collected {
            self.durable.remove(key);
        }
        self.collector.total += f.collected.len() as u64;
        self.vv = f.vector;
        self.msg_seen = f.message_seen;
        #[cfg(feature = "serve")]
        if let Some(peers) = f.peers {
            self.durable_peers = peers;
        }
        for r in &f.messages {
            // A store holds them already (the host trimmed each channel in the same commit).
            #[cfg(feature = "store")]
            if self.durable.store().is_some() {
                self.logs.advance(r.offset);
                continue;
            }
            let retain = self.retain(&r.message.channel);
            self.logs.append_at(r.clone(), retain);
        }
        released.messages = f.messages;
        Ok(released)
    }

    /// Collection (servers only: built with `serve`): looks through at most `pages` pages of the store's dead documents (every
    /// sibling a tombstone) for those whose whole context is below the horizon, and stages
    /// them for the next cut (at most [`COLLECT_BATCH`] at a time). A pass starts when the
    /// horizon has moved since the last one ended, and runs from the first dead document to
    /// the last, one page per step, so memory stays a page and a batch. A document in a newer
    /// layer is left for a later pass: it is being changed.
    #[cfg(feature = "serve")]
    pub fn collect_step(&mut self, pages: usize) -> Result<()> {
        if !self.collector.enabled {
            return Ok(());
        }
        if self.collector.pass.is_none() {
            let h = &self.stability.horizon;
            if h.is_empty() || &self.collector.done_below == h {
                return Ok(());
            }
            self.collector.pass = Some((h.clone(), None));
        }
        for _ in 0..pages {
            if self.collector.staged.len() >= COLLECT_BATCH {
                break;
            }
            let Some((below, after)) = self.collector.pass.take() else {
                break;
            };
            let page = match self.durable.dead(after.as_ref(), PAGE) {
                Ok(page) => page,
                Err(e) => {
                    self.collector.done_below = below;
                    return Err(e);
                }
            };
            let full = page.len() == PAGE;
            let last = page.last().map(|(k, _)| k.clone());
            for (key, state) in page {
                let busy = self.staged.docs.contains_key(&key)
                    || self
                        .inflight
                        .iter()
                        .any(|f| f.docs.contains_key(&key) || f.collected.contains(&key));
                if key.collection != CONFIG_COLLECTION
                    && !busy
                    && state.is_dead()
                    && below.dominates(&state.context)
                {
                    self.collector.staged.insert(key);
                }
            }
            match last {
                Some(k) if full => self.collector.pass = Some((below, Some(k))),
                _ => self.collector.done_below = below,
            }
        }
        Ok(())
    }

    /// Whether a collection pass is under way (more steps would look at more documents).
    #[cfg(feature = "serve")]
    pub fn collecting(&self) -> bool {
        self.collector.pass.is_some()
    }

    /// Drops everything not yet persisted, as a crash would (used by the simulation).
    pub fn forget_unpersisted(&mut self) {
        self.staged = Layer::default();
        self.collector.staged.clear();
        #[cfg(feature = "serve")]
        {
            self.collector.pass = None;
        }
        self.inflight.clear();
        self.vv_latest = self.vv.clone();
        self.msg_seen_latest = self.msg_seen.clone();
    }
}

/// A retained message read from the store must lie in the range asked for (`after + 1 ..=
/// upto`): anything else is a corrupt store, not a message to deliver.
#[cfg(feature = "store")]
fn in_range(offset: u64, after: u64, upto: u64) -> Result<()> {
    if offset <= after || offset > upto {
        return Err(Error::Store(format!(
            "retained message at offset {offset} is outside {}..={upto}",
            after + 1
        )));
    }
    Ok(())
}

#[cfg(feature = "serve")]
/// Whether joining `incoming` into `cur` drops a sibling of `cur` while bringing none it
/// lacked: a change no delta carries further (it makes no new write), so the replica
/// announces its state to its peers ([`Replica::take_announced`]).
fn silent_drop(cur: &DocState, incoming: &DocState) -> bool {
    let drops = cur
        .siblings
        .iter()
        .any(|s| !incoming.has_dot(s.dot) && incoming.context.contains(s.dot));
    let brings = incoming
        .siblings
        .iter()
        .any(|s| !cur.context.contains(s.dot) && !cur.has_dot(s.dot));
    drops && !brings
}

/// The newest state of a document outside the staged layer: in flight, then durable.
fn unstaged_state<'a>(
    inflight: &'a VecDeque<InFlight>,
    durable: &'a Durable,
    key: &DocKey,
) -> Result<Option<StateRef<'a>>> {
    // A batch in flight that removes the document (collected, or left without a sibling)
    // hides what the durable layer still holds of it.
    for f in inflight.iter().rev() {
        if let Some(s) = f.docs.get(key) {
            return Ok(Some(StateRef::Borrowed(s)));
        }
        if f.collected.contains(key) {
            return Ok(None);
        }
    }
    durable.get(key)
}

/// Validates a write to the space configuration, so a bad policy never replicates.
pub(crate) fn check_config(id: &str, m: &serde_json::Map<String, Value>) -> Result<()> {
    if id == SPACE_ENTRY {
        if let Some(p) = m.get("default_policy") {
            let s = p.as_str().ok_or_else(|| Error::BadPolicy(p.to_string()))?;
            s.parse::<Policy>()?;
        }
        return Ok(());
    }
    if !id.starts_with("collection:") && !id.starts_with("channel:") {
        return Err(Error::BadName {
            what: "configuration entry",
            name: id.chars().take(64).collect(),
            why: "it must be `space`, `collection:NAME` or `channel:NAME`",
        });
    }
    if id.strip_prefix("collection:").is_some() {
        if let Some(p) = m.get("policy") {
            let s = p.as_str().ok_or_else(|| Error::BadPolicy(p.to_string()))?;
            s.parse::<Policy>()?;
        }
    } else if id.strip_prefix("channel:").is_some() {
        if let Some(r) = m.get("retain") {
            if !r.is_u64() {
                return Err(Error::Malformed(format!(
                    "`retain` must be a whole number, got {r}"
                )));
            }
        }
    }
    Ok(())
}
