//! The IndexedDB store of one space in one browser profile.
//!
//! One database per space (name `sacred-bridge/{space}` unless `open({ db })` says otherwise)
//! with three object stores:
//!
//! | store | key | value |
//! | --- | --- | --- |
//! | `docs` | `[collection, id]` | the document's full state (`DocState`) as JSON text |
//! | `messages` | offset (number) | the retained `Message` as JSON text |
//! | `meta` | `"replica"`, `"space"`, `"cloud"` | replica id; vector + clock + messages seen; cloud ack mark |
//!
//! JSON text, the same encoding the native host keeps in SQLite: one string per record is
//! the cheapest thing to move across the wasm boundary and to structured-clone, and the core
//! already validates it on the way back in.
//!
//! Everything a [`PersistBatch`] holds is written in **one** read-write transaction, and
//! nothing but IndexedDB requests happens inside it (awaiting any other future would let the
//! transaction auto-commit half-way). Several batches cut in one round share that transaction
//! (a group commit, as the native host does); each is still whole in it.

use crate::retention::RetentionIndex;
use bridge_core::doc::DocState;
use bridge_core::message::{Message, Retained};
use bridge_core::{DocKey, Engine, PersistBatch, ReplicaId, Stamp, VersionVector};
use idb::{Database, Factory, ObjectStoreParams, TransactionMode};
use js_sys::Array;
use serde::{Deserialize, Serialize};
use std::future::IntoFuture;
use wasm_bindgen::JsValue;

const DOCS: &str = "docs";
const MESSAGES: &str = "messages";
const META: &str = "meta";
const SCHEMA_VERSION: u32 = 1;

/// Why the store could not do what was asked, in words a developer can act on.
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<idb::Error> for StoreError {
    fn from(e: idb::Error) -> Self {
        StoreError(format!("IndexedDB: {e}"))
    }
}

fn corrupt(what: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError(format!(
        "stored {what} could not be read ({why}); the browser store is damaged: delete it \
         (DevTools → Application → IndexedDB) and let it sync again"
    ))
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Serialize, Deserialize)]
struct SpaceMeta {
    vector: VersionVector,
    clock: Stamp,
    message_seen: VersionVector,
}

/// What the store keeps besides the engine's state: the cloud acknowledgement mark.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CloudMeta {
    /// Highest own write counter a cloud replica acknowledged.
    pub acked: u64,
    /// When (ms since the epoch), 0 if never.
    pub at: u64,
}

/// An open IndexedDB database holding one space.
pub struct IdbStore {
    db: Database,
    name: String,
    retention: RetentionIndex,
    stats: StoreStats,
}

/// Counters of what [`IdbStore::write`] did (for status displays and tests).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct StoreStats {
    /// Committed read-write transactions of batches.
    pub commits: u64,
    pub batches: u64,
    pub docs: u64,
    pub messages: u64,
}

/// What [`IdbStore::load`] read back, for reporting.
#[derive(Clone, Copy, Debug, Default)]
pub struct Loaded {
    pub docs: usize,
    pub messages: usize,
    pub cloud: CloudMeta,
}

impl IdbStore {
    /// Opens (creating on first use) the database `name`.
    pub async fn open(name: &str) -> Result<IdbStore> {
        let factory = Factory::new()
            .map_err(|e| StoreError(format!("IndexedDB is not available here: {e}")))?;
        let mut req = factory.open(name, Some(SCHEMA_VERSION))?;
        req.on_upgrade_needed(|event| {
            let Ok(db) = idb::Event::target(&event).and_then(|r| r.database()) else {
                return;
            };
            let have = db.store_names();
            for store in [DOCS, MESSAGES, META] {
                if !have.iter().any(|s| s == store) {
                    let _ = db.create_object_store(store, ObjectStoreParams::new());
                }
            }
        });
        let db = req.await?;
        Ok(IdbStore {
            db,
            name: name.to_owned(),
            retention: RetentionIndex::default(),
            stats: StoreStats::default(),
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
    pub async fn replica_id(&self, random: impl Fn() -> Option<u64>) -> Result<ReplicaId> {
        let tx = self.db.transaction(&[META], TransactionMode::ReadWrite)?;
        let meta = tx.object_store(META)?;
        let found = meta.get(JsValue::from_str("replica"))?.await?;
        let id = match found.and_then(|v| v.as_string()) {
            Some(s) => s
                .parse::<ReplicaId>()
                .map_err(|e| corrupt("replica id", e))?,
            None => {
                let id = loop {
                    let r = random().ok_or_else(|| {
                        StoreError("crypto.getRandomValues is not available".into())
                    })?;
                    if r != 0 {
                        break ReplicaId(r);
                    }
                };
                meta.put(
                    &JsValue::from_str(&id.to_string()),
                    Some(&JsValue::from_str("replica")),
                )?;
                id
            }
        };
        let done = tx.await?;
        if !done.is_committed() {
            return Err(StoreError("the replica id could not be stored".into()));
        }
        Ok(id)
    }

    /// Restores documents, metadata and retained messages into a fresh `engine`, in one
    /// read-only transaction (a consistent snapshot even if another connection writes).
    pub async fn load(&mut self, engine: &mut Engine) -> Result<Loaded> {
        let tx = self
            .db
            .transaction(&[DOCS, MESSAGES, META], TransactionMode::ReadOnly)?;
        let meta = tx.object_store(META)?;
        let docs = tx.object_store(DOCS)?;
        let msgs = tx.object_store(MESSAGES)?;
        // Issue every request first; IndexedDB runs them in order within the transaction.
        // `into_future` attaches the result handlers now: a request whose success event fired
        // before its handler existed would never resolve.
        let space = meta.get(JsValue::from_str("space"))?.into_future();
        let cloud = meta.get(JsValue::from_str("cloud"))?.into_future();
        let doc_keys = docs.get_all_keys(None, None)?.into_future();
        let doc_values = docs.get_all(None, None)?.into_future();
        let msg_keys = msgs.get_all_keys(None, None)?.into_future();
        let msg_values = msgs.get_all(None, None)?.into_future();
        let space = space.await?;
        let cloud = cloud.await?;
        let doc_keys = doc_keys.await?;
        let doc_values = doc_values.await?;
        let msg_keys = msg_keys.await?;
        let msg_values = msg_values.await?;
        let _ = tx.await;

        let mut loaded = Loaded::default();
        let replica = engine.replica_mut();
        if let Some(text) = space.and_then(|v| v.as_string()) {
            let m: SpaceMeta = serde_json::from_str(&text).map_err(|e| corrupt("metadata", e))?;
            replica.restore_meta(m.vector, m.clock, m.message_seen);
        }
        if let Some(text) = cloud.and_then(|v| v.as_string()) {
            loaded.cloud = serde_json::from_str(&text).map_err(|e| corrupt("cloud ack mark", e))?;
        }
        if doc_keys.len() != doc_values.len() {
            return Err(corrupt("documents", "keys and values differ in number"));
        }
        for (k, v) in doc_keys.iter().zip(&doc_values) {
            let key = Array::from(k);
            let (Some(collection), Some(id)) = (key.get(0).as_string(), key.get(1).as_string())
            else {
                return Err(corrupt("document key", "not [collection, id]"));
            };
            let text = v
                .as_string()
                .ok_or_else(|| corrupt("document", "not text"))?;
            let state: DocState = serde_json::from_str(&text)
                .map_err(|e| corrupt(&format!("document {collection}/{id}"), e))?;
            replica.restore_doc(DocKey::new(collection, id), state);
            loaded.docs += 1;
        }
        if msg_keys.len() != msg_values.len() {
            return Err(corrupt("messages", "keys and values differ in number"));
        }
        // Keys come back in ascending offset order, as `restore_message` wants them.
        for (k, v) in msg_keys.iter().zip(&msg_values) {
            let offset = k
                .as_f64()
                .ok_or_else(|| corrupt("message offset", "not a number"))?
                as u64;
            let text = v
                .as_string()
                .ok_or_else(|| corrupt("message", "not text"))?;
            let message: Message = serde_json::from_str(&text)
                .map_err(|e| corrupt(&format!("message at offset {offset}"), e))?;
            self.retention.stored(&message.channel, offset);
            replica.restore_message(Retained { offset, message });
            loaded.messages += 1;
        }
        Ok(loaded)
    }

    /// Writes `batches` (in order) in one transaction and returns once it committed.
    pub async fn write(&mut self, batches: &[PersistBatch]) -> Result<()> {
        let Some(last) = batches.last() else {
            return Ok(());
        };
        let tx = self
            .db
            .transaction(&[DOCS, MESSAGES, META], TransactionMode::ReadWrite)?;
        let docs = tx.object_store(DOCS)?;
        let msgs = tx.object_store(MESSAGES)?;
        let meta = tx.object_store(META)?;
        // The retention index changes only if the transaction commits.
        let mut retention = self.retention.clone();
        for b in batches {
            for (key, state) in &b.docs {
                let text = serde_json::to_string(state).map_err(|e| corrupt("document", e))?;
                let k = Array::of2(&key.collection.as_str().into(), &key.id.as_str().into());
                docs.put(&JsValue::from_str(&text), Some(&k))?;
            }
            for r in &b.messages {
                let text = serde_json::to_string(&r.message).map_err(|e| corrupt("message", e))?;
                msgs.put(&JsValue::from_str(&text), Some(&(r.offset as f64).into()))?;
                retention.stored(&r.message.channel, r.offset);
            }
            for (channel, keep) in &b.retain {
                for offset in retention.trim(channel, *keep) {
                    msgs.delete(JsValue::from_f64(offset as f64))?;
                }
            }
        }
        let m = SpaceMeta {
            vector: last.vector.clone(),
            clock: last.clock,
            message_seen: last.message_seen.clone(),
        };
        let text = serde_json::to_string(&m).map_err(|e| corrupt("metadata", e))?;
        meta.put(&JsValue::from_str(&text), Some(&JsValue::from_str("space")))?;
        let done = tx.await?;
        if !done.is_committed() {
            return Err(StoreError(
                "IndexedDB aborted the write (storage full or the database was deleted)".into(),
            ));
        }
        self.retention = retention;
        self.stats.commits += 1;
        for b in batches {
            self.stats.batches += 1;
            self.stats.docs += b.docs.len() as u64;
            self.stats.messages += b.messages.len() as u64;
        }
        Ok(())
    }

    /// Stores the cloud acknowledgement mark (status only: losing it costs a wrong
    /// "pending" count until the next ack, never data).
    pub async fn write_cloud(&self, cloud: CloudMeta) -> Result<()> {
        let tx = self.db.transaction(&[META], TransactionMode::ReadWrite)?;
        let text = serde_json::to_string(&cloud).map_err(|e| corrupt("cloud ack mark", e))?;
        tx.object_store(META)?
            .put(&JsValue::from_str(&text), Some(&JsValue::from_str("cloud")))?;
        tx.await?;
        Ok(())
    }

    pub fn close(&self) {
        self.db.close();
    }
}
