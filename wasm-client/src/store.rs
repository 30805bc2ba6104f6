//! The IndexedDB store of one space in one browser profile.
//!
//! One database per space (name `sacred-bridge/{space}` unless `open({ db })` says otherwise)
//! with three object stores:
//!
//! | store | key | value |
//! | --- | --- | --- |
//! | `docs` | `[collection, id]` | `{ s, d, x }`: `s` the document's full state as a binary `push` frame of one document, `d` its live dots `[[replica hex, counter], …]`, `x` its key `[collection, id]` when it has more than one sibling (absent otherwise) |
//! | `messages` | offset (number) | the retained message, as a binary `broadcast` frame |
//! | `meta` | `"replica"` | replica id (hex text) |
//! | `meta` | `"space"` | `[pull frame with the vector, hello frame with messages seen, clock wall, clock counter]` |
//! | `meta` | `"cloud"` | `[highest own counter a cloud acknowledged, when]` |
//! | `meta` | `"collections"` | the collection patterns a partial store replicates (an array of strings; absent: the whole space), set when the store is created and with the batch that changes them (`Engine::replicate`) |
//! | `meta` | `"forget"` | patterns a partial store no longer replicates whose documents it is still dropping (an array of strings), written with the batch that changes them |
//! | `meta` | `"upstream"` | a partial store's server (replica id, hex text), fixed at its first `welcome`, written with the batch of its first pushes |
//! | `meta` | `"layout"` | `2` while document records of schema 2 (a bare byte array) are still to be rewritten (schema 3's upgrade sets it; `open` rewrites them and deletes it) |
//! | `meta` | `"requests"` | the newest done requests with an idempotency key (forwarded tab calls): `[[origin, id, dot replica hex or null, dot counter], …]` |
//! | `damaged` | `[store, key]` | `[the record, why it could not be read]`: records set aside at open |
//!
//! Two indexes on `docs` answer the engine's range reads without reading the documents:
//! `dots` (multi-entry on `d`: a replica's live dots in counter order, each to its document —
//! the live-dot index) and `conflicts` (on `x`: documents with several siblings, in key
//! order). Opening reads the metadata, the `_config` documents and the retained messages
//! (bounded by each channel's retention), never the other documents: the engine reads them
//! through [`crate::scratch::Prefetched`], which the client fills with [`IdbStore::fetch`].
//!
//! What is stored was checked by the core's `limits` before it was written, so it reads
//! back. Should a document or message record still fail to decode (a bug, a disk error), the
//! store is not refused: the record is moved to `damaged` — a message record at open, a
//! document record when it is first read — reported (`stats().setAside`, `status().error`),
//! and read as absent; everything else works.
//!
//! Records are the core's own binary frame encoding (docs/protocol.md): one byte array per
//! record is cheap to move across the wasm boundary and to structured-clone, the decoder
//! already checks every invariant (and never panics) on the way back in, and the package
//! needs no JSON decoder for its own data (a third smaller than with JSON text records).
//!
//! Everything a [`PersistBatch`] holds is written in **one** read-write transaction, and
//! nothing but IndexedDB requests happens inside it (awaiting any other future would let the
//! transaction auto-commit half-way). Several batches cut in one round share that transaction
//! (a group commit, as the native host does); each is still whole in it.

use crate::retention::RetentionIndex;
use crate::scratch::{Miss, Read};
use bridge_core::codec::binary::decode_binary_record;
use bridge_core::codec::encode_binary;
use bridge_core::doc::DocState;
use bridge_core::frame::{DocEntry, Hello, Push, SessionKind};
use bridge_core::message::Retained;
use bridge_core::replica::CONFIG_COLLECTION;
use bridge_core::request::{DoneRequest, RequestKey, REMEMBERED_REQUESTS};
use bridge_core::{DocKey, Dot, Engine, Frame, PersistBatch, ReplicaId, Stamp, VersionVector};
use idb::{
    Database, Factory, IndexParams, KeyPath, KeyRange, ObjectStoreParams, Query, TransactionMode,
};
use js_sys::{Array, Function, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbDatabase, IdbTransaction};

const DOCS: &str = "docs";
const MESSAGES: &str = "messages";
const META: &str = "meta";
const DAMAGED: &str = "damaged";
/// Index of `docs` on its records' live dots (multi-entry).
const DOTS: &str = "dots";
/// Index of `docs` on the key of records with several siblings.
const CONFLICTS: &str = "conflicts";
/// 2 added `damaged`; 3 made a document record `{ s, d, x }` with the indexes `dots` and
/// `conflicts` (records of 2 are rewritten once, at the first open: `migrate`).
const SCHEMA_VERSION: u32 = 3;
/// How many records one transaction of the rewrite to schema 3 takes.
const MIGRATE_PAGE: u32 = 2000;

/// Why the store could not do what was asked, in words a developer can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// IndexedDB refused or failed a request.
    #[error("IndexedDB: {0}")]
    Idb(String),
    /// This page has no IndexedDB (or no `crypto.getRandomValues` for a replica id).
    #[error("{0} is not available here")]
    Unavailable(String),
    /// A transaction did not commit: nothing of it was stored.
    #[error("IndexedDB aborted {0}")]
    Aborted(&'static str),
    /// A stored record does not read back.
    #[error(
        "stored {what} could not be read ({why}); the browser store is damaged: delete it \
         (DevTools → Application → IndexedDB) and let it sync again"
    )]
    Corrupt { what: String, why: String },
    /// `open({ collections })` on a store of the whole space, or none on a partial one.
    #[error(
        "this store replicates {stored}, and open() asked for {wanted}: a store of part of \
         a space changes its collections but stays one, and a store of the whole space \
         stays whole; open it accordingly, or open another `db`"
    )]
    Collections { stored: String, wanted: String },
}

impl From<idb::Error> for StoreError {
    fn from(e: idb::Error) -> Self {
        StoreError::Idb(e.to_string())
    }
}

fn corrupt(what: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        why: why.to_string(),
    }
}

/// A list of strings as a JavaScript array (no JSON: the package links no JSON reader).
fn array(list: &[String]) -> js_sys::Array {
    list.iter().map(|p| JsValue::from_str(p)).collect()
}

/// A stored array of strings (`what` names it in an error), `None` when absent.
fn strings(v: Option<JsValue>, what: &str) -> Result<Option<Vec<String>>> {
    let Some(v) = v else { return Ok(None) };
    let a = v
        .dyn_ref::<js_sys::Array>()
        .ok_or_else(|| corrupt(what, "not an array"))?;
    a.iter()
        .map(|p| p.as_string())
        .collect::<Option<Vec<String>>>()
        .map(Some)
        .ok_or_else(|| corrupt(what, "not strings"))
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What the store keeps besides the engine's state: the cloud acknowledgement mark.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CloudMeta {
    /// Highest own write counter a cloud replica acknowledged.
    pub acked: u64,
    /// When (ms since the epoch), 0 if never.
    pub at: u64,
}

/// An open IndexedDB database holding one space.
pub struct IdbStore {
    db: Database,
    /// The same connection, for the one call `idb` does not wrap: a transaction with options.
    raw: IdbDatabase,
    name: String,
    retention: RetentionIndex,
    stats: StoreStats,
    /// The done requests as stored (newest last, at most `REMEMBERED_REQUESTS`).
    requests: Vec<DoneRequest>,
}

/// Counters of what [`IdbStore::write`] did (for status displays and tests).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct StoreStats {
    /// Committed read-write transactions of batches.
    pub commits: u64,
    pub batches: u64,
    pub docs: u64,
    pub messages: u64,
    /// Records that could not be read at open and were set aside (store `damaged`).
    #[serde(rename = "setAside")]
    pub set_aside: u64,
    /// Bytes of document states the engine's cache holds (the core's accounting), and its
    /// budget (`open({ cacheBytes })`): filled in by `stats()`.
    #[serde(rename = "cacheBytes")]
    pub cache_bytes: u64,
    #[serde(rename = "cacheBudget")]
    pub cache_budget: u64,
}

/// What [`IdbStore::load`] read back, for reporting.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub docs: usize,
    pub messages: usize,
    pub cloud: CloudMeta,
    /// Records that could not be read (skipped); [`IdbStore::set_aside`] moves them away.
    pub damaged: Vec<Damaged>,
}

/// A record `load` could not read.
#[derive(Clone, Debug)]
pub struct Damaged {
    /// `docs` or `messages`.
    pub store: &'static str,
    pub key: JsValue,
    pub value: JsValue,
    pub why: String,
}

impl Damaged {
    /// The document a damaged `docs` record is keyed by.
    pub fn doc_key(&self) -> Option<DocKey> {
        key_of(&self.key)
    }
}

impl IdbStore {
    /// Opens (creating on first use) the database `name`.
    pub async fn open(name: &str) -> Result<IdbStore> {
        let factory =
            Factory::new().map_err(|e| StoreError::Unavailable(format!("IndexedDB ({e})")))?;
        let mut req = factory.open(name, Some(SCHEMA_VERSION))?;
        req.on_upgrade_needed(|event| {
            let Ok(target) = idb::Event::target(&event) else {
                return;
            };
            let Ok(db) = target.database() else {
                return;
            };
            let old = event.old_version().unwrap_or(0);
            let have = db.store_names();
            for store in [DOCS, MESSAGES, META, DAMAGED] {
                if !have.iter().any(|s| s == store) {
                    let _ = db.create_object_store(store, ObjectStoreParams::new());
                }
            }
            let Some(tx) = idb::Request::transaction(&target) else {
                return;
            };
            if let Ok(docs) = tx.object_store(DOCS) {
                let names = docs.index_names();
                if !names.iter().any(|n| n == DOTS) {
                    let mut p = IndexParams::new();
                    p.multi_entry(true);
                    let _ = docs.create_index(DOTS, KeyPath::new_single("d"), Some(p));
                }
                if !names.iter().any(|n| n == CONFLICTS) {
                    let _ = docs.create_index(CONFLICTS, KeyPath::new_single("x"), None);
                }
            }
            if (1..3).contains(&old) {
                if let Ok(meta) = tx.object_store(META) {
                    let _ = meta.put(&2.into(), Some(&JsValue::from_str("layout")));
                }
            }
        });
        let raw: IdbDatabase = req.await?.into();
        Ok(IdbStore {
            db: Database::from(raw.clone()),
            raw,
            name: name.to_owned(),
            retention: RetentionIndex::default(),
            stats: StoreStats::default(),
            requests: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// This store's replica id: read back, or drawn with `random` and stored on first use
    /// (in one transaction, so two racing opens cannot both create one).
    /// The store's replica id, drawn with `random` and stored when the store is new, with
    /// the `collections` it replicates (`None`: the whole space); and the collections it
    /// replicates (for an existing store, the stored ones: changing them is
    /// `Engine::replicate`'s work, and a change between part of the space and the whole of
    /// it is refused). A store from before collections replicates the whole space.
    pub async fn replica_id(
        &self,
        random: impl Fn() -> Option<u64>,
        collections: Option<&[String]>,
    ) -> Result<(ReplicaId, Option<Vec<String>>)> {
        let tx = self.db.transaction(&[META], TransactionMode::ReadWrite)?;
        let meta = tx.object_store(META)?;
        let found = meta.get(JsValue::from_str("replica"))?.await?;
        let shown = |c: Option<&[String]>| match c {
            Some(c) => format!("[{}]", c.join(", ")),
            None => "the whole space".to_owned(),
        };
        let id = match found.and_then(|v| v.as_string()) {
            Some(s) => {
                let id = s
                    .parse::<ReplicaId>()
                    .map_err(|e| corrupt("replica id", e))?;
                // An array of strings (no JSON: the package links no JSON reader for it).
                let stored = meta.get(JsValue::from_str("collections"))?.await?;
                let stored = strings(stored, "collections")?;
                if stored.is_some() != collections.is_some() {
                    return Err(StoreError::Collections {
                        stored: shown(stored.as_deref()),
                        wanted: shown(collections),
                    });
                }
                (id, stored)
            }
            None => {
                let r = random()
                    .ok_or_else(|| StoreError::Unavailable("crypto.getRandomValues".into()))?;
                let id = ReplicaId::from_random(r.to_le_bytes());
                meta.put(
                    &JsValue::from_str(&id.to_string()),
                    Some(&JsValue::from_str("replica")),
                )?;
                if let Some(c) = collections {
                    meta.put(&array(c), Some(&JsValue::from_str("collections")))?;
                }
                (id, collections.map(<[String]>::to_vec))
            }
        };
        let done = tx.await?;
        if !done.is_committed() {
            return Err(StoreError::Aborted("storing the replica id"));
        }
        Ok(id)
    }

    /// The server a partial store syncs with, once it had one (`EngineConfig::upstream`),
    /// and the patterns it is still forgetting (`Stability::forget`).
    pub async fn upstream(&self) -> Result<(Option<ReplicaId>, Vec<String>)> {
        let tx = self.db.transaction(&[META], TransactionMode::ReadOnly)?;
        let meta = tx.object_store(META)?;
        let found = meta.get(JsValue::from_str("upstream"))?;
        let forget = meta.get(JsValue::from_str("forget"))?;
        let (found, forget) = (found.await?, forget.await?);
        tx.await?;
        let forget = strings(forget, "forget")?.unwrap_or_default();
        match found.and_then(|v| v.as_string()) {
            Some(s) => s
                .parse::<ReplicaId>()
                .map(|r| (Some(r), forget))
                .map_err(|e| corrupt("upstream", e)),
            None => Ok((None, forget)),
        }
    }

    /// Restores the metadata, the `_config` documents and the retained messages into a
    /// fresh `engine` (made `Engine::with_store` over a [`crate::scratch::Prefetched`]), in
    /// one read-only transaction (a consistent snapshot even if another connection writes).
    /// No other document is read: the engine asks for them as it needs them.
    pub async fn load(&mut self, engine: &mut Engine) -> Result<Loaded> {
        self.migrate().await?;
        let tx = self
            .db
            .transaction(&[DOCS, MESSAGES, META], TransactionMode::ReadOnly)?;
        let meta = tx.object_store(META)?;
        let docs = tx.object_store(DOCS)?;
        let msgs = tx.object_store(MESSAGES)?;
        // Every request is issued first, and read once the transaction completed (then each
        // has its result): one await, not one per request.
        let space = JsRequest::from(meta.get(JsValue::from_str("space"))?);
        let cloud = JsRequest::from(meta.get(JsValue::from_str("cloud"))?);
        let requests = JsRequest::from(meta.get(JsValue::from_str("requests"))?);
        let config = Some(collection_range(CONFIG_COLLECTION, None)?);
        let doc_keys = JsRequest::from(docs.get_all_keys(config.clone(), None)?);
        let doc_values = JsRequest::from(docs.get_all(config, None)?);
        let msg_keys = JsRequest::from(msgs.get_all_keys(None, None)?);
        let msg_values = JsRequest::from(msgs.get_all(None, None)?);
        let done = tx.await?;
        if !done.is_committed() {
            return Err(StoreError::Aborted("reading the store at open"));
        }
        let present = |r: JsRequest| -> Result<Option<JsValue>> {
            let v = r.result()?;
            Ok((!v.is_undefined()).then_some(v))
        };
        let (space, cloud, requests) = (present(space)?, present(cloud)?, present(requests)?);
        let doc_keys: Vec<JsValue> = Array::from(&doc_keys.result()?).to_vec();
        let doc_values: Vec<JsValue> = Array::from(&doc_values.result()?).to_vec();
        let msg_keys: Vec<JsValue> = Array::from(&msg_keys.result()?).to_vec();
        let msg_values: Vec<JsValue> = Array::from(&msg_values.result()?).to_vec();

        let mut loaded = Loaded::default();
        self.retention = RetentionIndex::default();
        if let Some(v) = space {
            let (vector, clock, seen) = read_space_meta(&v, engine.replica().id())?;
            engine.restore_meta(vector, clock, seen);
        }
        if let Some(v) = cloud {
            let a = Array::from(&v);
            loaded.cloud = CloudMeta {
                acked: a.get(0).as_f64().unwrap_or(0.0) as u64,
                at: a.get(1).as_f64().unwrap_or(0.0) as u64,
            };
        }
        if doc_keys.len() != doc_values.len() {
            return Err(corrupt("documents", "keys and values differ in number"));
        }
        // A record that does not read back is skipped (and set aside by the caller), so one
        // bad record never keeps the rest of the store from opening.
        let mut damaged = |store, key: &JsValue, value: &JsValue, why: String| {
            loaded.damaged.push(Damaged {
                store,
                key: key.clone(),
                value: value.clone(),
                why,
            })
        };
        for (k, v) in doc_keys.iter().zip(&doc_values) {
            match decode_doc(v) {
                Ok(Some((key, state))) => {
                    engine.restore_doc(key, state);
                    loaded.docs += 1;
                }
                Ok(None) => damaged(DOCS, k, v, "not a push record".into()),
                Err(e) => damaged(DOCS, k, v, e.to_string()),
            }
        }
        if msg_keys.len() != msg_values.len() {
            return Err(corrupt("messages", "keys and values differ in number"));
        }
        // Keys come back in ascending offset order, as `restore_message` wants them.
        for (k, v) in msg_keys.iter().zip(&msg_values) {
            match decode_record(v, "message") {
                Ok(Frame::Broadcast {
                    message,
                    offset: Some(offset),
                }) => {
                    self.retention.stored(&message.channel, offset);
                    engine.restore_message(Retained { offset, message });
                    loaded.messages += 1;
                }
                Ok(_) => damaged(MESSAGES, k, v, "not a broadcast record".into()),
                Err(e) => damaged(MESSAGES, k, v, e.to_string()),
            }
        }
        // The done requests (idempotency keys); a record that does not read is only a lost
        // chance to recognise a re-run, never a reason not to open.
        self.requests = requests.map(|v| read_requests(&v)).unwrap_or_default();
        engine.restore_requests(self.requests.iter().copied());
        Ok(loaded)
    }

    /// Moves records `load` could not read to the `damaged` store (out of the way of every
    /// later open, kept for inspection), in one transaction.
    pub async fn set_aside(&mut self, damaged: &[Damaged]) -> Result<()> {
        if damaged.is_empty() {
            return Ok(());
        }
        let tx = self.strict_transaction(&[DOCS, MESSAGES, DAMAGED])?;
        let out = tx.object_store(DAMAGED)?;
        for d in damaged {
            let key = Array::of2(&d.store.into(), &d.key);
            let record = Array::of2(&d.value, &d.why.as_str().into());
            out.put(&record, Some(&key))?;
            tx.object_store(d.store)?.delete(d.key.clone())?;
        }
        let done = tx.await?;
        if !done.is_committed() {
            return Err(StoreError::Aborted("setting damaged records aside"));
        }
        self.stats.set_aside += damaged.len() as u64;
        Ok(())
    }

    /// The space vector as stored (what the store holds durably), if any.
    pub async fn stored_vector(&self) -> Result<Option<VersionVector>> {
        let tx = self.db.transaction(&[META], TransactionMode::ReadOnly)?;
        let v = tx
            .object_store(META)?
            .get(JsValue::from_str("space"))?
            .await?;
        match v {
            Some(v) => Ok(Some(read_space_meta(&v, ReplicaId(0))?.0)),
            None => Ok(None),
        }
    }

    /// The stored states of `keys` (a follower tab re-reading what the leader stored);
    /// keys not in the store are left out.
    pub async fn read_docs(&self, keys: &[DocKey]) -> Result<Vec<(DocKey, DocState)>> {
        let misses: Vec<Miss> = keys.iter().cloned().map(Miss::Doc).collect();
        let (read, _) = self.reader().fetch(&misses).await?;
        Ok(read
            .docs
            .into_iter()
            .filter_map(|(k, s)| Some((k, s?)))
            .collect())
    }

    /// Rewrites document records of schema 2 (a bare byte array, not in the indexes) as
    /// records of schema 3, [`MIGRATE_PAGE`] per transaction, once: the upgrade to 3 marks
    /// the store (`meta.layout`), the last page clears the mark. A record that does not read
    /// is left as it is, and set aside when it is read.
    async fn migrate(&self) -> Result<()> {
        let tx = self.db.transaction(&[META], TransactionMode::ReadOnly)?;
        let layout = JsRequest::from(tx.object_store(META)?.get(JsValue::from_str("layout"))?);
        tx.await?;
        if layout.result()?.is_undefined() {
            return Ok(());
        }
        // A page read in one transaction, rewritten in the next (a request's result is read
        // once its transaction completed, see `Reader::fetch`). Rewriting is idempotent: two
        // tabs opening at once may both do it.
        let mut after: Option<JsValue> = None;
        loop {
            let tx = self.db.transaction(&[DOCS], TransactionMode::ReadOnly)?;
            let docs = tx.object_store(DOCS)?;
            let range = match &after {
                Some(k) => Some(Query::from(KeyRange::lower_bound(k, Some(true))?)),
                None => None,
            };
            let keys = JsRequest::from(docs.get_all_keys(range.clone(), Some(MIGRATE_PAGE))?);
            let values = JsRequest::from(docs.get_all(range, Some(MIGRATE_PAGE))?);
            tx.await?;
            let (keys, values) = (Array::from(&keys.result()?), Array::from(&values.result()?));
            let tx = self.strict_transaction(&[DOCS, META])?;
            let docs = tx.object_store(DOCS)?;
            for (k, v) in keys.iter().zip(values.iter()) {
                if v.is_instance_of::<Uint8Array>() {
                    if let Ok(Some((key, state))) = decode_doc(&v) {
                        docs.put(&doc_record(&key, &state), Some(&k))?;
                    }
                }
            }
            let last = keys.length() < MIGRATE_PAGE;
            if last {
                tx.object_store(META)?.delete(JsValue::from_str("layout"))?;
            }
            after = Some(keys.get(keys.length().saturating_sub(1))).filter(|k| !k.is_undefined());
            let done = tx.await?;
            if !done.is_committed() {
                return Err(StoreError::Aborted("rewriting documents for schema 3"));
            }
            if last {
                return Ok(());
            }
        }
    }

    /// A handle for reads while the store itself is busy writing (`fetch`).
    pub fn reader(&self) -> Reader {
        Reader {
            raw: self.raw.clone(),
        }
    }
}

/// Reads of the documents for the engine ([`Reader::fetch`]): a second handle on the same
/// connection, usable while the pump holds the [`IdbStore`] for a write (IndexedDB orders a
/// read after a write begun before it).
#[derive(Clone)]
pub struct Reader {
    raw: IdbDatabase,
}

impl Reader {
    /// Reads from IndexedDB what the engine asked for and the scratch could not answer
    /// ([`crate::scratch::Scratch::take_misses`]), in one read-only transaction: states, and
    /// for each range question its page (with the states of the documents in it). Every
    /// request is issued at once and read once the transaction completes (then every request
    /// of it has its result). Records that do not read come back in `damaged` and read as
    /// absent (the caller sets them aside).
    pub async fn fetch(&self, misses: &[Miss]) -> Result<(Read, Vec<Damaged>)> {
        let (left, absent) = self.burst(misses).await?;
        let (mut read, damaged) = self.fetch_each(left.as_deref().unwrap_or(misses)).await?;
        read.docs.extend(absent.into_iter().map(|k| (k, None)));
        Ok((read, damaged))
    }

    /// A burst of writes asks for many documents of one collection, most of them new: one
    /// read of the keys between the first and the last (at most twice as many as asked)
    /// tells which exist, and only those are read one by one. `None` when `misses` is not
    /// such a burst (then every one is read).
    async fn burst(&self, misses: &[Miss]) -> Result<(Option<Vec<Miss>>, Vec<DocKey>)> {
        let keys: Vec<&DocKey> = misses
            .iter()
            .filter_map(|m| match m {
                Miss::Doc(k) => Some(k),
                _ => None,
            })
            .collect();
        let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
            return Ok((None, Vec::new()));
        };
        let burst = keys.len() >= 16
            && keys.len() == misses.len()
            && keys.windows(2).all(|w| w[0] < w[1])
            && first.collection == last.collection;
        if !burst {
            return Ok((None, Vec::new()));
        }
        let db = Database::from(self.raw.clone());
        let tx = db.transaction(&[DOCS], TransactionMode::ReadOnly)?;
        let range = KeyRange::bound(&key_value(first), &key_value(last), None, None)?;
        let limit = u32::try_from(2 * keys.len()).unwrap_or(u32::MAX);
        let stored = JsRequest::from(
            tx.object_store(DOCS)?
                .get_all_keys(Some(Query::from(range)), Some(limit))?,
        );
        let done = tx.await?;
        if !done.is_committed() {
            return Err(StoreError::Aborted("a read of keys"));
        }
        let stored = Array::from(&stored.result()?);
        if stored.length() >= limit {
            return Ok((None, Vec::new()));
        }
        // Both in key order: one merge walk.
        let stored: Vec<DocKey> = stored.iter().filter_map(|k| key_of(&k)).collect();
        let (mut left, mut absent) = (Vec::new(), Vec::new());
        let mut at = 0;
        for k in keys {
            while at < stored.len() && &stored[at] < k {
                at += 1;
            }
            if stored.get(at) == Some(k) {
                left.push(Miss::Doc(k.clone()));
            } else {
                absent.push(k.clone());
            }
        }
        Ok((Some(left), absent))
    }

    async fn fetch_each(&self, misses: &[Miss]) -> Result<(Read, Vec<Damaged>)> {
        let db = Database::from(self.raw.clone());
        let tx = db.transaction(&[DOCS], TransactionMode::ReadOnly)?;
        let docs = tx.object_store(DOCS)?;
        // Per miss: the request for its keys (or its one record, or its count), and the one
        // for the values of a range.
        let mut issued: Vec<(JsRequest, Option<JsRequest>)> = Vec::with_capacity(misses.len());
        for m in misses {
            let range = |q: Option<Query>, limit: usize, index: Option<&str>| -> Result<_> {
                let n = Some(u32::try_from(limit).unwrap_or(u32::MAX));
                Ok(match index {
                    Some(name) => {
                        let index = docs.index(name)?;
                        let keys = index.get_all_keys(q.clone(), n)?;
                        (
                            JsRequest::from(keys),
                            Some(JsRequest::from(index.get_all(q, n)?)),
                        )
                    }
                    None => (
                        JsRequest::from(docs.get_all_keys(q.clone(), n)?),
                        Some(JsRequest::from(docs.get_all(q, n)?)),
                    ),
                })
            };
            issued.push(match m {
                Miss::Doc(key) => (JsRequest::from(docs.get(key_value(key))?), None),
                Miss::Count => (JsRequest::from(docs.count(None)?), None),
                Miss::Keys {
                    collection,
                    after,
                    limit,
                } => range(
                    Some(collection_range(collection, after.as_deref())?),
                    *limit,
                    None,
                )?,
                Miss::NextCollection(after) => {
                    let lower = Array::of2(&after.as_str().into(), &Array::new());
                    let q = Query::from(KeyRange::lower_bound(&lower, Some(true))?);
                    range(Some(q), 1, None)?
                }
                Miss::Dots {
                    replica,
                    from,
                    upto,
                    limit,
                } => {
                    let r = JsValue::from_str(&replica.to_string());
                    let lo = Array::of2(&r, &((from + 1) as f64).into());
                    let hi = Array::of2(&r, &(*upto as f64).into());
                    let q = Query::from(KeyRange::bound(&lo, &hi, None, None)?);
                    range(Some(q), *limit, Some(DOTS))?
                }
                Miss::Conflicted {
                    collection,
                    after,
                    limit,
                } => {
                    let q = match (collection, after) {
                        (Some(c), a) => Some(collection_range(
                            c,
                            a.as_ref()
                                .filter(|a| &a.collection == c)
                                .map(|a| a.id.as_str()),
                        )?),
                        (None, Some(a)) => Some(Query::from(KeyRange::lower_bound(
                            &key_value(a),
                            Some(true),
                        )?)),
                        (None, None) => None,
                    };
                    range(q, *limit, Some(CONFLICTS))?
                }
            });
        }
        let done = tx.await?;
        if !done.is_committed() {
            return Err(StoreError::Aborted("a read of documents"));
        }
        let mut read = Read::default();
        let mut damaged = Vec::new();
        // A record's state into `read`; its key (`None`: not a key of ours).
        let mut take = |k: &JsValue, v: &JsValue, read: &mut Read| -> Option<DocKey> {
            let key = key_of(k)?;
            let state = match decode_doc(v) {
                Ok(Some((_, state))) => Some(state),
                other => {
                    let why = match other {
                        Err(e) => e.to_string(),
                        _ => "not a push record".into(),
                    };
                    damaged.push(Damaged {
                        store: DOCS,
                        key: k.clone(),
                        value: v.clone(),
                        why,
                    });
                    // Read as absent (and set aside), as a record found damaged at open was.
                    None
                }
            };
            read.docs.push((key.clone(), state));
            Some(key)
        };
        for (m, (first, values)) in misses.iter().zip(issued) {
            let result = first.result()?;
            match (m, values) {
                (Miss::Doc(key), _) => {
                    if result.is_undefined() {
                        read.docs.push((key.clone(), None));
                    } else {
                        take(&key_value(key), &result, &mut read);
                    }
                }
                (Miss::Count, _) => {
                    let n = result.as_f64().unwrap_or(0.0) as u64;
                    read.pages.push((m.clone(), vec![(n, DocKey::new("", ""))]));
                }
                (_, Some(values)) => {
                    let (keys, values) = (Array::from(&result), Array::from(&values.result()?));
                    if keys.length() != values.length() {
                        return Err(corrupt("documents", "keys and values differ in number"));
                    }
                    let mut page = Vec::with_capacity(keys.length() as usize);
                    for (k, v) in keys.iter().zip(values.iter()) {
                        let Some(key) = take(&k, &v, &mut read) else {
                            continue;
                        };
                        let counter = match m {
                            Miss::Dots { replica, .. } => dot_of(&v, *replica).unwrap_or(0),
                            _ => 0,
                        };
                        page.push((counter, key));
                    }
                    read.pages.push((m.clone(), page));
                }
                (_, None) => {}
            }
        }
        Ok((read, damaged))
    }
}

/// A request whose result is read after its transaction completed.
struct JsRequest(web_sys::IdbRequest);

impl JsRequest {
    fn result(&self) -> Result<JsValue> {
        self.0
            .result()
            .map_err(|e| StoreError::Idb(format!("a read failed: {e:?}")))
    }
}

macro_rules! js_request_from {
    ($($t:ty),*) => {$(
        impl From<$t> for JsRequest {
            fn from(r: $t) -> Self {
                JsRequest(web_sys::IdbRequest::from(r))
            }
        }
    )*};
}

js_request_from!(
    idb::request::GetStoreRequest,
    idb::request::CountStoreRequest,
    idb::request::GetAllKeysStoreRequest,
    idb::request::GetAllStoreRequest
);

impl IdbStore {
    /// Writes `batches` (in order) in one transaction and returns once it committed.
    pub async fn write(&mut self, batches: &[PersistBatch]) -> Result<()> {
        let Some(last) = batches.last() else {
            return Ok(());
        };
        let tx = self.strict_transaction(&[DOCS, MESSAGES, META])?;
        let docs = tx.object_store(DOCS)?;
        let msgs = tx.object_store(MESSAGES)?;
        let meta = tx.object_store(META)?;
        // The retention index changes only if the transaction commits.
        let mut retention = self.retention.clone();
        for b in batches {
            for (key, state) in &b.docs {
                docs.put(&doc_record(key, state), Some(&key_value(key)))?;
            }
            // Removed: a resync dropped everything its server had collected.
            for key in &b.collected {
                docs.delete(key_value(key))?;
            }
            for r in &b.messages {
                let record = Frame::Broadcast {
                    message: r.message.clone(),
                    offset: Some(r.offset),
                };
                msgs.put(&bytes(&record), Some(&(r.offset as f64).into()))?;
                retention.stored(&r.message.channel, r.offset);
            }
            for (channel, keep) in &b.retain {
                for offset in retention.trim(channel, *keep) {
                    msgs.delete(JsValue::from_f64(offset as f64))?;
                }
            }
            // A partial store's server, in the transaction of the batch that takes its
            // first pushes, and its collections as they change (the rest of the stability
            // record is not kept here).
            if let Some(st) = &b.stability {
                if let Some(up) = st.upstream {
                    meta.put(
                        &JsValue::from_str(&up.to_string()),
                        Some(&JsValue::from_str("upstream")),
                    )?;
                }
                // Both change only with a change of collections, which sets the first: a
                // store that never changed its list writes neither.
                if let Some(c) = &st.collections {
                    meta.put(&array(c), Some(&JsValue::from_str("collections")))?;
                    meta.put(&array(&st.forget), Some(&JsValue::from_str("forget")))?;
                }
            }
        }
        meta.put(
            &space_meta(&last.vector, last.clock, &last.message_seen),
            Some(&JsValue::from_str("space")),
        )?;
        // Done requests commit with the writes they made (their idempotency keys).
        let mut requests = None;
        if batches.iter().any(|b| !b.requests.is_empty()) {
            let mut all = self.requests.clone();
            all.extend(batches.iter().flat_map(|b| b.requests.iter().copied()));
            let extra = all.len().saturating_sub(REMEMBERED_REQUESTS);
            all.drain(..extra);
            meta.put(&requests_record(&all), Some(&JsValue::from_str("requests")))?;
            requests = Some(all);
        }
        let done = tx.await?;
        if !done.is_committed() {
            return Err(StoreError::Aborted(
                "the write (storage full or the database was deleted)",
            ));
        }
        self.retention = retention;
        if let Some(r) = requests {
            self.requests = r;
        }
        self.stats.commits += 1;
        for b in batches {
            self.stats.batches += 1;
            self.stats.docs += b.docs.len() as u64;
            self.stats.messages += b.messages.len() as u64;
        }
        Ok(())
    }

    /// A read-write transaction with `durability: "strict"`: `complete` fires only once the
    /// data is flushed to disk, as `synchronous=FULL` in the native host. Browsers default to
    /// "relaxed" (complete once handed to the OS), and a write lost in a power cut after its
    /// dot was pushed would let the restarted store hand the same dot to another write.
    fn strict_transaction(&self, stores: &[&str]) -> Result<idb::Transaction> {
        let js = |e: JsValue| StoreError::Idb(format!("cannot start a transaction: {e:?}"));
        let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        let options = js_sys::Object::new();
        Reflect::set(&options, &"durability".into(), &"strict".into()).map_err(js)?;
        let open: Function = Reflect::get(&self.raw, &"transaction".into())
            .map_err(js)?
            .dyn_into()
            .map_err(js)?;
        let tx = open
            .call3(&self.raw, &names, &"readwrite".into(), &options)
            .map_err(js)?;
        Ok(idb::Transaction::from(
            tx.unchecked_into::<IdbTransaction>(),
        ))
    }

    /// Stores the cloud acknowledgement mark (status only: losing it costs a wrong
    /// "pending" count until the next ack, never data).
    pub async fn write_cloud(&self, cloud: CloudMeta) -> Result<()> {
        let tx = self.db.transaction(&[META], TransactionMode::ReadWrite)?;
        let record = Array::of2(&(cloud.acked as f64).into(), &(cloud.at as f64).into());
        tx.object_store(META)?
            .put(&record, Some(&JsValue::from_str("cloud")))?;
        tx.await?;
        Ok(())
    }

    pub fn close(&self) {
        self.db.close();
    }
}

/// A document's key as IndexedDB's: `[collection, id]`.
fn key_value(key: &DocKey) -> JsValue {
    Array::of2(&key.collection.as_str().into(), &key.id.as_str().into()).into()
}

fn key_of(k: &JsValue) -> Option<DocKey> {
    let a = k.dyn_ref::<Array>()?;
    Some(DocKey::new(a.get(0).as_string()?, a.get(1).as_string()?))
}

/// The keys of `collection` after `after` (all of them with `None`): `[collection, []]`
/// sorts after every `[collection, id]` (an array sorts after every string).
fn collection_range(collection: &str, after: Option<&str>) -> Result<Query> {
    let lower = Array::of2(&collection.into(), &after.unwrap_or("").into());
    let upper = Array::of2(&collection.into(), &Array::new());
    Ok(Query::from(KeyRange::bound(
        &lower,
        &upper,
        Some(after.is_some()),
        Some(true),
    )?))
}

/// A document record of schema 3: `{ s: push frame, d: live dots, x: key if conflicted }`.
fn doc_record(key: &DocKey, state: &DocState) -> JsValue {
    let record = Frame::Push(Push {
        seq: 0,
        docs: vec![DocEntry {
            collection: key.collection.clone(),
            id: key.id.clone(),
            state: DocState::clone(state),
        }],
        watermark: VersionVector::new(),
        remaining: 0,
        // Expanded, as builds before the compact form wrote them: a tab of an older
        // package, following this one, reads what it writes.
        expanded: true,
    });
    let dots: Array = state
        .siblings
        .iter()
        .map(|s| -> JsValue {
            Array::of2(
                &s.dot.replica.to_string().into(),
                &(s.dot.counter as f64).into(),
            )
            .into()
        })
        .collect();
    let o = js_sys::Object::new();
    let _ = Reflect::set(&o, &"s".into(), &bytes(&record));
    let _ = Reflect::set(&o, &"d".into(), &dots);
    if state.siblings.len() > 1 {
        let _ = Reflect::set(&o, &"x".into(), &key_value(key));
    }
    o.into()
}

/// The key and state of a document record (schema 3's object, or 2's bare byte array);
/// `None` when it holds no document.
fn decode_doc(v: &JsValue) -> Result<Option<(DocKey, DocState)>> {
    let frame = if v.is_instance_of::<Uint8Array>() {
        decode_record(v, "document")?
    } else {
        let s = Reflect::get(v, &"s".into()).unwrap_or(JsValue::UNDEFINED);
        decode_record(&s, "document")?
    };
    match frame {
        Frame::Push(p) => Ok(p
            .docs
            .into_iter()
            .next()
            .map(|e| (DocKey::new(e.collection, e.id), e.state))),
        _ => Ok(None),
    }
}

/// The counter of `replica`'s live dot in a record's `d` (a document has at most one live
/// dot per replica: a replica's writes supersede one another).
fn dot_of(v: &JsValue, replica: ReplicaId) -> Option<u64> {
    let r = replica.to_string();
    let d = Reflect::get(v, &"d".into()).ok()?;
    Array::from(&d)
        .iter()
        .find_map(|e| {
            let a = Array::from(&e);
            (a.get(0).as_string()? == r).then(|| a.get(1).as_f64())?
        })
        .map(|c| c as u64)
}

/// A frame as a record: its binary encoding in a `Uint8Array`.
fn bytes(frame: &Frame) -> JsValue {
    Uint8Array::from(encode_binary(frame).as_slice()).into()
}

fn decode_record(v: &JsValue, what: &str) -> Result<Frame> {
    let Some(a) = v.dyn_ref::<Uint8Array>() else {
        return Err(corrupt(what, "not a byte array"));
    };
    decode_binary_record(&a.to_vec()).map_err(|e| corrupt(what, e))
}

/// Done requests as a record: `[[origin, id, dot replica hex or null, dot counter], …]`.
/// Origins and ids cross as numbers (tab ids are drawn below 2^53).
fn requests_record(done: &[DoneRequest]) -> JsValue {
    let out: Array = done
        .iter()
        .map(|r| {
            let (replica, counter) = match r.dot {
                Some(d) => (JsValue::from_str(&d.replica.to_string()), d.counter as f64),
                None => (JsValue::NULL, 0.0),
            };
            let a = Array::of4(
                &(r.key.origin as f64).into(),
                &(r.key.id as f64).into(),
                &replica,
                &counter.into(),
            );
            JsValue::from(a)
        })
        .collect();
    out.into()
}

/// The done requests of a `requests` record; entries that do not read are left out.
fn read_requests(v: &JsValue) -> Vec<DoneRequest> {
    Array::from(v)
        .iter()
        .filter_map(|e| {
            let a = Array::from(&e);
            let key = RequestKey {
                origin: a.get(0).as_f64()? as u64,
                id: a.get(1).as_f64()? as u64,
            };
            let dot = match a.get(2).as_string() {
                Some(r) => Some(Dot {
                    replica: r.parse::<ReplicaId>().ok()?,
                    counter: a.get(3).as_f64()? as u64,
                }),
                None => None,
            };
            Some(DoneRequest { key, dot })
        })
        .collect()
}

/// The space record: the vector and the messages seen as frames, the clock as numbers.
fn space_meta(vector: &VersionVector, clock: Stamp, seen: &VersionVector) -> JsValue {
    let vector = bytes(&Frame::Pull {
        vector: vector.clone(),
    });
    let seen = bytes(&Frame::Hello(Hello {
        space: String::new(),
        kind: SessionKind::Peer,
        messages: Some(seen.clone()),
        horizon: None,
        ..Hello::default()
    }));
    let a = Array::of4(
        &vector,
        &seen,
        &(clock.wall as f64).into(),
        &f64::from(clock.counter).into(),
    );
    a.into()
}

fn read_space_meta(v: &JsValue, me: ReplicaId) -> Result<(VersionVector, Stamp, VersionVector)> {
    let a = Array::from(v);
    let Frame::Pull { vector } = decode_record(&a.get(0), "space vector")? else {
        return Err(corrupt("space vector", "not a pull record"));
    };
    let seen = a.get(1);
    let Some(seen) = seen.dyn_ref::<Uint8Array>() else {
        return Err(corrupt("messages seen", "not a byte array"));
    };
    let seen = bridge_core::codec::decode_hello_record(&seen.to_vec())
        .map_err(|e| corrupt("messages seen", e))?;
    let Frame::Hello(h) = seen else {
        return Err(corrupt("messages seen", "not a hello record"));
    };
    let (Some(wall), Some(counter)) = (a.get(2).as_f64(), a.get(3).as_f64()) else {
        return Err(corrupt("clock", "not two numbers"));
    };
    let clock = Stamp::new(wall as u64, counter as u32, me);
    Ok((vector, clock, h.messages.unwrap_or_default()))
}
