//! The SQLite store: several spaces in one database, each with its own stable replica id.
//!
//! The engine decides what to write ([`PersistBatch`]); this module only writes it, in one
//! transaction. WAL mode with `synchronous=FULL`, so a commit that returned is on disk: the
//! host reports a batch persisted (releasing its acks) only after that commit.
//!
//! The database *is* each replica's durable layer: an engine reads documents, pages of a
//! collection, the live-dot index and open conflicts from it through [`SqlDocs`] (its
//! [`DocStore`]), with a bounded cache in front, and replays retained messages from it a page
//! at a time. Opening a space reads its metadata, its `_config` entries and the highest
//! message offset, never its documents nor its retained messages.

use crate::clock::now_ms;
use bridge_core::codec::{encode_state, StateColumn};
use bridge_core::doc::DocState;
use bridge_core::message::{Message, Retained};
use bridge_core::replica::DocStore;
use bridge_core::schema;
use bridge_core::{
    DocKey, Dot, Engine, EngineConfig, PersistBatch, ReplicaId, Stamp, VersionVector,
};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("could not create the database folder {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("stored data in {what} could not be read: {why}. Restore from a backup")]
    Corrupt { what: String, why: String },
    #[error("the database schema is version {found}, newer than this build ({known}); upgrade sacred-bridge")]
    TooNew { found: i64, known: i64 },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("space `{space}` of this database replicates {stored}, and SYNC_COLLECTIONS says {wanted}: a store of part of a space changes its collections, but stays a store of part of it, and a store of the whole space stays whole; restore SYNC_COLLECTIONS, or use a new database (DB_PATH)")]
    Collections {
        space: String,
        stored: String,
        wanted: String,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub struct Store {
    /// Shared with every space's [`SqlDocs`]: all of them run on the hub's one thread, so
    /// the lock is never contended; it only makes the connection shareable.
    conn: Arc<Mutex<Connection>>,
    /// Held while the store lives; the checkpointer thread stops when it is gone.
    _alive: std::sync::Arc<()>,
}

/// A `docs` row's key: (space id, collection, id).
type RowKey = (i64, String, String);

/// Rows per transaction when an upgraded database's JSON states are rewritten.
const REWRITE_PAGE: i64 = 2000;

/// How often the checkpointer folds the WAL back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// One space as read back from the database.
pub struct SpaceRow {
    pub space: String,
    pub replica: ReplicaId,
}

fn corrupt(what: impl Into<String>, why: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        why: why.to_string(),
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        let store = Self::init(conn)?;
        store.spawn_checkpointer(path);
        Ok(store)
    }

    /// A store over an in-memory SQLite database (tests of the hub without a file).
    #[cfg(test)]
    pub fn in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        // Checkpoints run on their own thread (see `spawn_checkpointer`), not inside the
        // commit that gates acks: an automatic checkpoint there costs a second fsync and
        // shows up as a latency spike for whoever waits on that commit.
        conn.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA wal_autocheckpoint=0;",
        )?;
        let mut store = Store {
            conn: Arc::new(Mutex::new(conn)),
            _alive: std::sync::Arc::new(()),
        };
        store.migrate()?;
        Ok(store)
    }

    /// A thread with its own connection that folds the WAL into the database every
    /// [`CHECKPOINT_EVERY`] (PASSIVE: it never blocks the writer), until the store is dropped.
    fn spawn_checkpointer(&self, path: &Path) {
        let alive = std::sync::Arc::downgrade(&self._alive);
        let path = path.to_owned();
        let spawned = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                let conn = match Connection::open(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpointer could not open the database; the WAL will only be folded at restart");
                        return;
                    }
                };
                let _ = conn.busy_timeout(std::time::Duration::from_millis(100));
                while alive.upgrade().is_some() {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::debug!(error = %e, "checkpoint skipped");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the checkpointer thread");
        }
    }

    /// The connection (never contended: see [`Store::conn`]; a panic while it was held
    /// left no transaction open, so a poisoned lock is still a usable connection).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row(schema::SELECT_SCHEMA_VERSION, [], |r| r.get(0))?)
    }

    fn migrate(&mut self) -> Result<()> {
        self.conn().execute_batch(schema::CREATE_MIGRATIONS_TABLE)?;
        let found = self.schema_version()?;
        let known = schema::SCHEMA_VERSION;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        let mut conn = self.conn();
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(
                schema::INSERT_MIGRATION,
                params![i as i64 + 1, now_ms() as i64],
            )?;
            tx.commit()?;
            tracing::info!(version = i + 1, "applied schema migration");
        }
        drop(conn);
        if found > 0 && found < schema::BINARY_STATES_SINCE {
            // An existing database just got migration 3, which copied `docs` and `dots` in
            // SQL (the states still JSON text): rewrite them in the binary form now, then
            // give the old tables' pages back, so the upgraded file is as compact as a new
            // one. Once only: a later open does not look for JSON rows (any left by a
            // crash here are still read, and rewritten on their next write).
            self.rewrite_json_states(REWRITE_PAGE)?;
        }
        // Migration 5 added `docs.dead` as 0 everywhere: mark the deleted documents stored
        // before, so collection finds them too. `user_version` records that it finished (a
        // crash part way marks again at the next start; marking is idempotent).
        let marked: i64 = self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if marked < schema::DEAD_SINCE {
            if found > 0 {
                self.mark_dead_states(REWRITE_PAGE)?;
            }
            self.conn()
                .execute_batch(&format!("PRAGMA user_version = {}", schema::DEAD_SINCE))?;
        }
        if found > 0 && found < known {
            // Fold the migration's WAL into the database and truncate it before serving.
            self.conn()
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    /// Walks every stored state in key order, a page of `page_rows` rows per transaction
    /// (memory stays bounded): `update` sees each row's key and state column and gives the
    /// value `sql` (?1 sid, ?2 collection, ?3 id, ?4 the value) writes back, or `None`.
    /// Returns the rows seen and the rows written. A crash part way leaves the rest as it
    /// was, and walking again is harmless.
    fn update_states(
        &mut self,
        page_rows: i64,
        sql: &str,
        mut update: impl FnMut(&RowKey, ValueRef<'_>) -> Result<Option<rusqlite::types::Value>>,
    ) -> Result<(u64, u64)> {
        let mut conn = self.conn();
        let mut after: RowKey = (0, String::new(), String::new());
        let (mut seen, mut written) = (0u64, 0u64);
        loop {
            let tx = conn.transaction()?;
            let mut page: Vec<(RowKey, Option<rusqlite::types::Value>)> = Vec::new();
            {
                let mut st = tx.prepare_cached(schema::SELECT_STATES_PAGE)?;
                let mut rows = st.query(params![after.0, after.1, after.2, page_rows])?;
                while let Some(row) = rows.next()? {
                    let key: RowKey = (row.get(0)?, row.get(1)?, row.get(2)?);
                    let value = update(&key, row.get_ref(3)?)?;
                    page.push((key, value));
                }
            }
            {
                let mut st = tx.prepare_cached(sql)?;
                for ((sid, collection, id), value) in &page {
                    if let Some(value) = value {
                        st.execute(params![sid, collection, id, value])?;
                        written += 1;
                    }
                }
            }
            tx.commit()?;
            seen += page.len() as u64;
            let full = page.len() as i64 == page_rows;
            match page.pop() {
                Some((key, _)) if full => after = key,
                _ => break,
            }
        }
        Ok((seen, written))
    }

    /// Sets `docs.dead` for every stored state whose siblings are all tombstones.
    fn mark_dead_states(&mut self, page_rows: i64) -> Result<()> {
        let started = std::time::Instant::now();
        let (seen, marked) = self.update_states(page_rows, schema::UPDATE_DEAD, |key, v| {
            let state = state_column(v)
                .and_then(|c| c.decode().map_err(|e| e.to_string()))
                .map_err(|e| corrupt(format!("docs.state of {}/{}", key.1, key.2), e))?;
            Ok(state
                .is_dead()
                .then_some(rusqlite::types::Value::Integer(1)))
        })?;
        tracing::info!(
            documents = seen,
            marked,
            seconds = started.elapsed().as_secs_f64(),
            "marked the deleted documents stored before schema 5"
        );
        Ok(())
    }

    /// Rewrites every state stored as JSON text (schema 2) in the binary form, then
    /// `VACUUM`s.
    fn rewrite_json_states(&mut self, page_rows: i64) -> Result<()> {
        let started = std::time::Instant::now();
        let (seen, rewritten) = self.update_states(page_rows, schema::UPDATE_STATE, |key, v| {
            let ValueRef::Text(t) = v else {
                return Ok(None);
            };
            let state = StateColumn::Text(t)
                .decode()
                .map_err(|e| corrupt(format!("docs.state of {}/{}", key.1, key.2), e))?;
            Ok(Some(rusqlite::types::Value::Blob(encode_state(&state))))
        })?;
        self.conn().execute_batch("VACUUM")?;
        tracing::info!(
            documents = seen,
            rewritten,
            seconds = started.elapsed().as_secs_f64(),
            "rewrote the states of schema 2 in the binary form"
        );
        Ok(())
    }

    pub fn spaces(&self) -> Result<Vec<SpaceRow>> {
        let conn = self.conn();
        let mut st = conn.prepare(schema::SELECT_SPACES)?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (space, replica) = row?;
            let replica = replica
                .parse::<ReplicaId>()
                .map_err(|e| corrupt(format!("spaces.replica of {space}"), e))?;
            out.push(SpaceRow { space, replica });
        }
        Ok(out)
    }

    /// The replica id of `space`, drawn at random from the OS and stored on first use.
    #[cfg(test)]
    pub fn replica_for(&mut self, space: &str) -> Result<ReplicaId> {
        Ok(self.replica_or_new(space)?.0)
    }

    /// [`Store::replica_for`], and whether the space was created by this call.
    fn replica_or_new(&mut self, space: &str) -> Result<(ReplicaId, bool)> {
        let found: Option<String> = self
            .conn()
            .query_row(schema::SELECT_REPLICA, [space], |r| r.get(0))
            .optional()?;
        if let Some(r) = found {
            let id = r
                .parse()
                .map_err(|e| corrupt(format!("spaces.replica of {space}"), e))?;
            return Ok((id, false));
        }
        let id = random_replica()?;
        self.conn().execute(
            schema::INSERT_SPACE,
            params![space, id.to_string(), now_ms() as i64],
        )?;
        Ok((id, true))
    }

    /// The collections `space`'s replica was created with (`EngineConfig::collections`):
    /// stores `wanted` for a new space; for an existing one, returns what it was created
    /// with, and refuses a change between part of the space and the whole of it (its
    /// vector is complete for its collections only). The collections it replicates now
    /// are in its stability record (`Stability::collections`), which the engine reads back;
    /// the hub asks for `wanted` when they differ (`Engine::replicate`).
    fn keep_collections(
        &self,
        space: &str,
        new: bool,
        wanted: Option<&[String]>,
    ) -> Result<Option<Vec<String>>> {
        let text = |c: Option<&[String]>| match c {
            Some(c) => serde_json::to_string(c).unwrap_or_default(),
            None => "the whole space".into(),
        };
        let conn = self.conn();
        if new {
            if let Some(c) = wanted {
                conn.execute(
                    schema::UPDATE_SPACE_COLLECTIONS,
                    params![space, text(Some(c))],
                )?;
            }
            return Ok(wanted.map(<[String]>::to_vec));
        }
        let stored: Option<String> =
            conn.query_row(schema::SELECT_SPACE_COLLECTIONS, [space], |r| r.get(0))?;
        let stored: Option<Vec<String>> = match stored {
            Some(t) => Some(
                serde_json::from_str(&t)
                    .map_err(|e| corrupt(format!("spaces.collections of {space}"), e))?,
            ),
            None => None,
        };
        if stored.is_some() != wanted.is_some() {
            return Err(StoreError::Collections {
                space: space.to_owned(),
                stored: text(stored.as_deref()),
                wanted: text(wanted),
            });
        }
        Ok(stored)
    }

    /// The integer id of `space` (`spaces.sid`), which `docs` and `dots` are keyed by.
    fn space_id(conn: &Connection, space: &str) -> Result<i64> {
        let mut st = conn.prepare_cached(schema::SELECT_SPACE_ID)?;
        let sid: Option<Option<i64>> = st.query_row([space], |r| r.get(0)).optional()?;
        sid.flatten()
            .ok_or_else(|| corrupt(format!("spaces.sid of {space}"), "no space id"))
    }

    /// Opens `space`: its replica id (created if new) and an engine whose durable layer is
    /// this database. Reads the metadata, the `_config` entries and the highest retained
    /// message offset (the messages themselves are read when a replay needs them).
    pub fn load_engine(&mut self, mut cfg: EngineConfig) -> Result<Engine> {
        let (replica, new) = self.replica_or_new(&cfg.space)?;
        cfg.replica = replica;
        let wanted = cfg.collections.clone();
        cfg.collections = self.keep_collections(&cfg.space, new, wanted.as_deref())?;
        let space = cfg.space.clone();
        let sid = Self::space_id(&self.conn(), &space)?;
        let docs = SqlDocs {
            conn: self.conn.clone(),
            sid,
        };
        let mut engine = Engine::with_store(cfg, Box::new(docs));
        let conn = self.conn();

        let meta: Option<(String, String, String)> = conn
            .query_row(schema::SELECT_META, [&space], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        if let Some((v, c, m)) = meta {
            let vector: VersionVector =
                serde_json::from_str(&v).map_err(|e| corrupt("meta.vector", e))?;
            let clock: Stamp = serde_json::from_str(&c).map_err(|e| corrupt("meta.clock", e))?;
            let seen: VersionVector =
                serde_json::from_str(&m).map_err(|e| corrupt("meta.message_seen", e))?;
            engine.restore_meta(vector, clock, seen);
        }
        let stability: Option<String> = conn
            .query_row(schema::SELECT_STABILITY, [sid], |r| r.get(0))
            .optional()?;
        if let Some(s) = stability {
            let s = serde_json::from_str(&s).map_err(|e| corrupt("stability.record", e))?;
            engine.restore_stability(s);
        }

        let config = bridge_core::replica::CONFIG_COLLECTION;
        let mut st = conn.prepare(schema::SELECT_COLLECTION_DOCS)?;
        let mut rows = st.query(params![sid, config])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let state = state_column(row.get_ref(1)?)
                .and_then(|c| c.decode().map_err(|e| e.to_string()))
                .map_err(|e| corrupt(format!("docs.state of {config}/{id}"), e))?;
            engine.restore_doc(DocKey::new(config, id), state);
        }
        drop(rows);
        drop(st);

        let last: i64 = conn.query_row(schema::SELECT_LAST_OFFSET, [&space], |r| r.get(0))?;
        let last = u64::try_from(last).map_err(|e| corrupt("messages.offset", e))?;
        engine.restore_message_offset(last);
        drop(conn);
        // Collections other than those it replicates now: a change, carried out with the
        // cloud once the link is up (`status` shows it as `upstream.replicating`).
        if let Some(w) = wanted {
            let now = engine.config().collections.clone().unwrap_or_default();
            engine
                .ask_collections(w.clone())
                .map_err(|e| StoreError::Collections {
                    space: space.clone(),
                    stored: format!("{now:?}"),
                    wanted: format!("{w:?} ({e})"),
                })?;
        }
        Ok(engine)
    }

    /// Writes batches of several spaces in one transaction: a group commit.
    ///
    /// Per document: the state it replaces is read first (its dots only, from the head of a
    /// binary state), the dots no longer live are dropped, the new state is written in the
    /// binary form, and the new dots go in.
    pub fn write(&mut self, batches: &[(&str, &PersistBatch)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut get_doc = tx.prepare_cached(schema::SELECT_DOC)?;
            let mut put_doc = tx.prepare_cached(schema::UPSERT_DOC)?;
            let mut drop_dot = tx.prepare_cached(schema::DELETE_DOT)?;
            let mut drop_doc = tx.prepare_cached(schema::DELETE_DOC)?;
            let mut put_replica = tx.prepare_cached(schema::ENSURE_REPLICA)?;
            let mut put_dot = tx.prepare_cached(schema::INSERT_DOT)?;
            let mut put_meta = tx.prepare_cached(schema::UPSERT_META)?;
            let mut put_msg = tx.prepare_cached(schema::UPSERT_MESSAGE)?;
            let mut trim = tx.prepare_cached(schema::TRIM_CHANNEL)?;
            for (space, b) in batches {
                let sid = Self::space_id(&tx, space)?;
                for r in schema::batch_replicas(b) {
                    put_replica.execute(params![sid, r.to_string()])?;
                }
                // The live dots of the state a key holds now (none for a new document).
                let mut old_dots = |key: &DocKey| -> Result<Vec<Dot>> {
                    Ok(get_doc
                        .query_row(params![sid, key.collection, key.id], |r| {
                            Ok(state_column(r.get_ref(0)?)
                                .and_then(|c| c.dots().map_err(|e| e.to_string())))
                        })
                        .optional()?
                        .transpose()
                        .map_err(|e| {
                            corrupt(format!("docs.state of {}/{}", key.collection, key.id), e)
                        })?
                        .unwrap_or_default())
                };
                for key in &b.collected {
                    for d in old_dots(key)? {
                        drop_dot.execute(params![sid, d.replica.to_string(), d.counter as i64])?;
                    }
                    drop_doc.execute(params![sid, key.collection, key.id])?;
                }
                for (key, state) in &b.docs {
                    let old = old_dots(key)?;
                    let (dropped, added) = schema::dot_changes(&old, state);
                    for d in dropped {
                        drop_dot.execute(params![sid, d.replica.to_string(), d.counter as i64])?;
                    }
                    let n = state.siblings.len() as i64;
                    put_doc.execute(params![
                        sid,
                        key.collection,
                        key.id,
                        encode_state(state),
                        n,
                        state.is_dead() as i64
                    ])?;
                    for d in added {
                        put_dot.execute(params![
                            sid,
                            d.replica.to_string(),
                            d.counter as i64,
                            key.collection,
                            key.id
                        ])?;
                    }
                }
                for r in &b.messages {
                    let json = to_json(&r.message)?;
                    put_msg.execute(params![space, r.offset as i64, r.message.channel, json])?;
                }
                for (channel, keep) in &b.retain {
                    trim.execute(params![space, channel, *keep as i64])?;
                }
                put_meta.execute(params![
                    space,
                    to_json(&b.vector)?,
                    to_json(&b.clock)?,
                    to_json(&b.message_seen)?
                ])?;
                if let Some(st) = &b.stability {
                    tx.prepare_cached(schema::UPSERT_STABILITY)?
                        .execute(params![sid, to_json(st)?])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// `PRAGMA integrity_check`: `ok` or the problems found.
    #[cfg(test)]
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// Row counts per table, for status and metrics.
    pub fn counts(&self) -> Result<(u64, u64, u64)> {
        let conn = self.conn();
        let n = |sql: &str| -> Result<u64> {
            Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        Ok((
            n(schema::COUNT_SPACES)?,
            n(schema::SUM_SPACE_DOCS)?,
            n(schema::COUNT_MESSAGES)?,
        ))
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One space's documents in the database: the [`DocStore`] its engine reads its durable
/// layer from.
pub struct SqlDocs {
    conn: Arc<Mutex<Connection>>,
    /// The space's integer id (`spaces.sid`).
    sid: i64,
}

/// A `docs.state` value in either of its forms (see [`bridge_core::schema`]).
fn state_column(v: ValueRef<'_>) -> std::result::Result<StateColumn<'_>, String> {
    match v {
        ValueRef::Blob(b) => Ok(StateColumn::Blob(b)),
        ValueRef::Text(t) => Ok(StateColumn::Text(t)),
        other => Err(format!(
            "expected a BLOB or TEXT, found {:?}",
            other.data_type()
        )),
    }
}

/// A store read that failed, as the core reports it (`internal` to whoever asked).
fn read_err(e: impl std::fmt::Display) -> bridge_core::Error {
    bridge_core::Error::Store(e.to_string())
}

impl SqlDocs {
    fn keys_of(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> bridge_core::Result<Vec<DocKey>> {
        let conn = lock(&self.conn);
        let mut st = conn.prepare_cached(sql).map_err(read_err)?;
        let rows = st
            .query_map(params, |r| {
                Ok(DocKey::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(read_err)?;
        rows.collect::<Result<_, _>>().map_err(read_err)
    }
}

impl DocStore for SqlDocs {
    /// A document is read back in one statement: cache what is read, not every state a
    /// catch-up writes.
    fn cache_new_writes(&self) -> bool {
        false
    }

    fn load(&self, key: &DocKey) -> bridge_core::Result<Option<DocState>> {
        let conn = lock(&self.conn);
        let mut st = conn.prepare_cached(schema::SELECT_DOC).map_err(read_err)?;
        let state = st
            .query_row(params![self.sid, key.collection, key.id], |r| {
                Ok(state_column(r.get_ref(0)?).and_then(|c| c.decode().map_err(|e| e.to_string())))
            })
            .optional()
            .map_err(read_err)?;
        state
            .transpose()
            .map_err(|e| read_err(format!("docs.state of {}/{}: {e}", key.collection, key.id)))
    }

    fn keys(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> bridge_core::Result<Vec<DocKey>> {
        let conn = lock(&self.conn);
        let mut st = conn
            .prepare_cached(schema::SELECT_DOC_IDS)
            .map_err(read_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st
            .query_map(
                params![self.sid, collection, after.unwrap_or(""), limit],
                |r| Ok(DocKey::new(collection, r.get::<_, String>(0)?)),
            )
            .map_err(read_err)?;
        rows.collect::<Result<_, _>>().map_err(read_err)
    }

    fn key_states(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> bridge_core::Result<Vec<(DocKey, Option<DocState>)>> {
        let conn = lock(&self.conn);
        let mut st = conn
            .prepare_cached(schema::SELECT_DOC_STATES)
            .map_err(read_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = st
            .query(params![self.sid, collection, after.unwrap_or(""), limit])
            .map_err(read_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(read_err)? {
            let key = DocKey::new(collection, r.get::<_, String>(0).map_err(read_err)?);
            let column = r.get_ref(1).map_err(read_err)?;
            let state = state_column(column)
                .and_then(|c| c.decode().map_err(|e| e.to_string()))
                .map_err(|e| {
                    read_err(format!("docs.state of {}/{}: {e}", key.collection, key.id))
                })?;
            out.push((key, Some(state)));
        }
        Ok(out)
    }

    fn dots(
        &self,
        replica: ReplicaId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> bridge_core::Result<Vec<(u64, DocKey)>> {
        let conn = lock(&self.conn);
        let mut st = conn.prepare_cached(schema::SELECT_DOTS).map_err(read_err)?;
        let (from, upto) = (from as i64, upto as i64);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st
            .query_map(
                params![self.sid, replica.to_string(), from, upto, limit],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        DocKey::new(r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                    ))
                },
            )
            .map_err(read_err)?;
        rows.collect::<Result<_, _>>().map_err(read_err)
    }

    fn dot_states(
        &self,
        replica: ReplicaId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> bridge_core::Result<Vec<(u64, DocKey, Option<DocState>)>> {
        let conn = lock(&self.conn);
        let mut st = conn
            .prepare_cached(schema::SELECT_DOT_STATES)
            .map_err(read_err)?;
        let (from, upto) = (from as i64, upto as i64);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = st
            .query(params![self.sid, replica.to_string(), from, upto, limit])
            .map_err(read_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(read_err)? {
            let counter = r.get::<_, i64>(0).map_err(read_err)? as u64;
            let key = DocKey::new(
                r.get::<_, String>(1).map_err(read_err)?,
                r.get::<_, String>(2).map_err(read_err)?,
            );
            let column = r.get_ref(3).map_err(read_err)?;
            let state = match column {
                ValueRef::Null => None,
                v => Some(
                    state_column(v)
                        .and_then(|c| c.decode().map_err(|e| e.to_string()))
                        .map_err(|e| {
                            read_err(format!("docs.state of {}/{}: {e}", key.collection, key.id))
                        })?,
                ),
            };
            out.push((counter, key, state));
        }
        Ok(out)
    }

    fn conflicted(
        &self,
        collection: Option<&str>,
        after: Option<&DocKey>,
        limit: usize,
    ) -> bridge_core::Result<Vec<DocKey>> {
        let (ac, ai) = after.map_or(("", ""), |k| (k.collection.as_str(), k.id.as_str()));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.keys_of(
            schema::SELECT_CONFLICTED,
            params![self.sid, collection.unwrap_or(""), ac, ai, limit],
        )
    }

    fn dead(
        &self,
        after: Option<&DocKey>,
        limit: usize,
    ) -> bridge_core::Result<Vec<(DocKey, DocState)>> {
        let conn = lock(&self.conn);
        let mut st = conn.prepare_cached(schema::SELECT_DEAD).map_err(read_err)?;
        let (ac, ai) = after.map_or(("", ""), |k| (k.collection.as_str(), k.id.as_str()));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = st
            .query(params![self.sid, ac, ai, limit])
            .map_err(read_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(read_err)? {
            let key = DocKey::new(
                r.get::<_, String>(0).map_err(read_err)?,
                r.get::<_, String>(1).map_err(read_err)?,
            );
            let state = state_column(r.get_ref(2).map_err(read_err)?)
                .and_then(|c| c.decode().map_err(|e| e.to_string()))
                .map_err(|e| {
                    read_err(format!("docs.state of {}/{}: {e}", key.collection, key.id))
                })?;
            out.push((key, state));
        }
        Ok(out)
    }

    fn doc_count(&self) -> bridge_core::Result<u64> {
        let conn = lock(&self.conn);
        let n: i64 = conn
            .query_row(schema::COUNT_SPACE_DOCS, [self.sid], |r| r.get(0))
            .map_err(read_err)?;
        Ok(n as u64)
    }

    fn messages(
        &self,
        channel: Option<&str>,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> bridge_core::Result<Vec<Retained>> {
        let conn = lock(&self.conn);
        let (from, upto) = (sql_int(from), sql_int(upto));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let row = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?));
        let rows: Vec<(i64, String)> = match channel {
            Some(ch) => {
                let mut st = conn
                    .prepare_cached(schema::SELECT_CHANNEL_AFTER)
                    .map_err(read_err)?;
                let rows = st
                    .query_map(params![self.sid, ch, from, upto, limit], row)
                    .map_err(read_err)?;
                rows.collect::<Result<_, _>>().map_err(read_err)?
            }
            None => {
                let mut st = conn
                    .prepare_cached(schema::SELECT_MESSAGES_AFTER)
                    .map_err(read_err)?;
                let rows = st
                    .query_map(params![self.sid, from, upto, limit], row)
                    .map_err(read_err)?;
                rows.collect::<Result<_, _>>().map_err(read_err)?
            }
        };
        rows.into_iter()
            .map(|(offset, json)| {
                let message: Message = serde_json::from_str(&json)
                    .map_err(|e| read_err(format!("messages.message at {offset}: {e}")))?;
                let offset = u64::try_from(offset)
                    .map_err(|e| read_err(format!("messages.offset {offset}: {e}")))?;
                Ok(Retained { offset, message })
            })
            .collect()
    }

    fn next_collection(&self, after: &str) -> bridge_core::Result<Option<String>> {
        let conn = lock(&self.conn);
        let mut st = conn
            .prepare_cached(schema::SELECT_NEXT_COLLECTION)
            .map_err(read_err)?;
        st.query_row(params![self.sid, after], |r| r.get::<_, String>(0))
            .optional()
            .map_err(read_err)
    }
}

/// An offset as an SQL integer (offsets never reach `i64::MAX`; a larger one saturates).
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| corrupt("space metadata", e))
}

fn random_replica() -> Result<ReplicaId> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(ReplicaId::from_random(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::{Tier, WriteOp};

    fn drive(store: &mut Store, e: &mut Engine) {
        let mut batches = Vec::new();
        while let Some(b) = e.poll_persist() {
            batches.push(b);
        }
        let space = e.config().space.clone();
        let refs: Vec<(&str, &PersistBatch)> = batches.iter().map(|b| (&*space, b)).collect();
        store.write(&refs).expect("write");
        for b in &batches {
            e.persisted(b.id).expect("persisted in order");
        }
    }

    #[test]
    fn trim_keeps_the_newest_messages_of_one_channel() {
        let conn = Connection::open_in_memory().expect("memory db");
        let mut s = Store::init(conn).expect("init");
        s.replica_for("s").expect("space");
        let mut conn = s.conn();
        let tx = conn.transaction().expect("tx");
        for (offset, ch) in [(1, "a"), (2, "b"), (3, "a"), (4, "a"), (5, "b"), (6, "a")] {
            tx.execute(schema::UPSERT_MESSAGE, params!["s", offset, ch, "{}"])
                .expect("insert");
        }
        tx.execute(schema::TRIM_CHANNEL, params!["s", "a", 2])
            .expect("trim a");
        tx.execute(schema::TRIM_CHANNEL, params!["s", "b", 5])
            .expect("trim b");
        let mut st = tx
            .prepare("SELECT offset FROM messages ORDER BY offset")
            .expect("select");
        let left: Vec<i64> = st
            .query_map([], |r| r.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect();
        assert_eq!(left, [2, 4, 5, 6], "a keeps its newest two, b keeps all");
        drop(st);
        tx.execute(schema::TRIM_CHANNEL, params!["s", "a", 0])
            .expect("trim a to nothing");
        let n: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE channel = 'a'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(n, 0);
    }

    /// One space of a test database: its name, replica id and documents.
    type OldSpace<'a> = (&'a str, ReplicaId, &'a [(DocKey, DocState)]);

    /// A database of schema 2 (JSON states, `dots` keyed by the space name and hex replica
    /// ids), written the way a schema-2 build wrote it.
    fn schema_2_database(path: &Path, spaces: &[OldSpace<'_>]) {
        let mut conn = Connection::open(path).expect("create");
        let tx = conn.transaction().expect("tx");
        tx.execute_batch(schema::CREATE_MIGRATIONS_TABLE)
            .expect("migrations table");
        for (i, sql) in schema::MIGRATIONS[..2].iter().enumerate() {
            tx.execute_batch(sql).expect("old migration");
            tx.execute(schema::INSERT_MIGRATION, params![i as i64 + 1, 1])
                .expect("record");
        }
        for (space, replica, docs) in spaces {
            tx.execute(
                "INSERT INTO spaces (space, replica, created_ms) VALUES (?1, ?2, 1)",
                params![space, replica.to_string()],
            )
            .expect("space");
            let mut vector = VersionVector::new();
            for (key, state) in docs.iter() {
                vector.join(&state.context);
                tx.execute(
                    "INSERT INTO docs (space, collection, id, state, siblings)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        space,
                        key.collection,
                        key.id,
                        to_json(state).expect("json"),
                        state.siblings.len() as i64
                    ],
                )
                .expect("doc");
                for s in &state.siblings {
                    tx.execute(
                        "INSERT INTO dots (space, replica, counter, collection, id)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            space,
                            s.dot.replica.to_string(),
                            s.dot.counter as i64,
                            key.collection,
                            key.id
                        ],
                    )
                    .expect("dot");
                }
            }
            let clock = Stamp::new(2_000_000, 0, *replica);
            tx.execute(
                schema::UPSERT_META,
                params![
                    space,
                    to_json(&vector).expect("json"),
                    to_json(&clock).expect("json"),
                    to_json(&VersionVector::new()).expect("json")
                ],
            )
            .expect("meta");
        }
        tx.commit().expect("commit");
    }

    /// Document states as an engine of `replica` writes them: `n` puts into `notes`, one of
    /// them deleted.
    fn written_states(replica: u64, n: usize) -> Vec<(DocKey, DocState)> {
        let mut cfg = EngineConfig::new(ReplicaId(replica), Tier::Local, "any");
        cfg.seed_default_policy = false;
        let mut e = Engine::new(cfg);
        for i in 0..n {
            let Some(m) = serde_json::json!({"title": format!("Item {i}"), "n": i, "tags": ["a"]})
                .as_object()
                .cloned()
            else {
                panic!("object")
            };
            bridge_core::testing::write(
                &mut e,
                1_000_000 + i as u64,
                DocKey::new("notes", format!("d{i:03}")),
                WriteOp::Put(m),
            )
            .expect("write");
        }
        bridge_core::testing::write(
            &mut e,
            1_500_000,
            DocKey::new("notes", "d002"),
            WriteOp::Delete,
        )
        .expect("delete");
        let mut states = std::collections::BTreeMap::new();
        while let Some(b) = e.poll_persist() {
            states.extend(b.docs.iter().cloned());
            e.persisted(b.id).expect("persisted");
        }
        states
            .into_iter()
            .map(|(k, s)| (k, DocState::clone(&s)))
            .collect()
    }

    #[test]
    fn a_schema_2_database_opens_and_keeps_every_document_and_dot() {
        upgrade_keeps_everything(true);
    }

    /// As the Durable Object upgrades: migration 3 alone, every old row left as JSON text
    /// until its document is written.
    #[test]
    fn json_rows_left_by_migration_3_read_and_rewrite_lazily() {
        upgrade_keeps_everything(false);
    }

    fn upgrade_keeps_everything(rewrite: bool) {
        let tag = if rewrite { "rewrite" } else { "lazy" };
        let dir = std::env::temp_dir().join(format!("sb-store-v2-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("old.db");
        let (ra, rb) = (ReplicaId(0xa1), ReplicaId(0xb2));
        let mut a = written_states(ra.0, 40);
        // A concurrent write from another replica: `notes/d001` holds two siblings.
        let theirs = written_states(rb.0, 2);
        let Some(slot) = a.iter_mut().find(|(k, _)| k.id == "d001") else {
            panic!("d001")
        };
        slot.1.join(&theirs[1].1);
        assert_eq!(slot.1.siblings.len(), 2);
        let b = written_states(rb.0, 5);
        schema_2_database(&path, &[("a", ra, &a), ("b", rb, &b)]);
        if !rewrite {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(schema::MIGRATIONS[2])
                .expect("migration 3");
            conn.execute(schema::INSERT_MIGRATION, params![3, 1])
                .expect("record");
        }

        let mut s = Store::open(&path).expect("open and migrate");
        assert_eq!(s.schema_version().expect("version"), schema::SCHEMA_VERSION);
        assert_eq!(s.integrity_check().expect("check"), "ok");
        assert_eq!(s.counts().expect("counts"), (2, 45, 0));
        for (space, replica, docs) in [("a", ra, &a), ("b", rb, &b)] {
            let e = s
                .load_engine(EngineConfig::new(ReplicaId(0), Tier::Local, space))
                .expect("load");
            assert_eq!(e.replica().id(), replica, "the replica id is kept");
            let sid = Store::space_id(&s.conn(), space).expect("sid");
            let store = SqlDocs {
                conn: s.conn.clone(),
                sid,
            };
            assert_eq!(store.doc_count().expect("count"), docs.len() as u64);
            // The deleted document stored before schema 5 is marked dead by the upgrade.
            let dead: Vec<DocKey> = store
                .dead(None, 100)
                .expect("dead")
                .into_iter()
                .map(|(k, st)| {
                    assert!(st.is_dead());
                    k
                })
                .collect();
            assert_eq!(dead, [DocKey::new("notes", "d002")], "{space}");
            let mut dots: Vec<(Dot, DocKey)> = Vec::new();
            for (key, state) in docs.iter() {
                assert_eq!(
                    store.load(key).expect("read").as_ref(),
                    Some(state),
                    "{key:?}"
                );
                dots.extend(state.siblings.iter().map(|s| (s.dot, key.clone())));
            }
            dots.sort();
            let mut stored: Vec<(Dot, DocKey)> = Vec::new();
            for r in [ra, rb] {
                let page = store.dots(r, 0, u64::MAX >> 1, 10_000).expect("dots");
                stored.extend(page.into_iter().map(|(c, k)| (Dot::new(r, c), k)));
            }
            stored.sort();
            assert_eq!(stored, dots, "every live dot of {space}");
            // The joined page read gives what a dot read and a load per dot give, page by page.
            for r in [ra, rb] {
                let mut from = 0;
                loop {
                    let joined = store.dot_states(r, from, u64::MAX >> 1, 7).expect("states");
                    let apart: Vec<(u64, DocKey, Option<DocState>)> = store
                        .dots(r, from, u64::MAX >> 1, 7)
                        .expect("dots")
                        .into_iter()
                        .map(|(c, k)| {
                            let st = store.load(&k).expect("load");
                            (c, k, st)
                        })
                        .collect();
                    assert_eq!(joined, apart, "{space}, replica {r}, after {from}");
                    assert!(joined.iter().all(|(_, _, st)| st.is_some()));
                    match joined.last() {
                        Some((c, _, _)) if joined.len() == 7 => from = *c,
                        _ => break,
                    }
                }
            }
            let view = e.replica().get(&DocKey::new("notes", "d004")).expect("get");
            assert_eq!(
                view.and_then(|v| v.get("n").cloned()),
                Some(serde_json::json!(4))
            );
        }

        // Writing a document rewrites its row in the binary form and moves its dots.
        let mut e = s
            .load_engine(EngineConfig::new(ReplicaId(0), Tier::Local, "a"))
            .expect("load");
        let sid = Store::space_id(&s.conn(), "a").expect("sid");
        let store = SqlDocs {
            conn: s.conn.clone(),
            sid,
        };
        let key = DocKey::new("notes", "d001");
        assert_eq!(
            store.conflicted(None, None, 10).expect("conflicts"),
            vec![key.clone()]
        );
        let Some(m) = serde_json::json!({"resolved": true}).as_object().cloned() else {
            panic!("object")
        };
        let dot = bridge_core::testing::write(&mut e, 3_000_000, key.clone(), WriteOp::Put(m))
            .expect("write");
        drive(&mut s, &mut e);
        let forms: Vec<(String, String)> = {
            let conn = s.conn();
            let mut st = conn
                .prepare(
                    "SELECT id, typeof(state) FROM docs WHERE sid = ?1 AND id IN ('d000', 'd001')",
                )
                .expect("select");
            let rows = st
                .query_map([sid], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("rows");
            rows.map(|r| r.expect("row")).collect()
        };
        assert_eq!(
            forms,
            [
                ("d000".into(), if rewrite { "blob" } else { "text" }.into()),
                ("d001".into(), "blob".into())
            ],
            "a JSON row is rewritten at open (native) or at its next write (lazy)"
        );
        assert!(store
            .conflicted(None, None, 10)
            .expect("conflicts")
            .is_empty());
        let theirs = store.dots(rb, 0, u64::MAX >> 1, 100).expect("dots");
        assert!(theirs.iter().all(|(_, k)| *k != key), "{theirs:?}");
        let ours = store
            .dots(ra, dot.counter - 1, dot.counter, 100)
            .expect("dots");
        assert_eq!(ours, vec![(dot.counter, key.clone())]);
        // `d001`'s own old dot (counter 2, its put) is gone with the other replica's.
        assert_eq!(store.dots(ra, 1, 2, 10).expect("dots"), vec![]);
        drop(e);
        if !rewrite {
            // The native host's rewrite, in pages smaller than the table, finds every row.
            s.rewrite_json_states(7).expect("rewrite");
            let text: i64 = s
                .conn()
                .query_row(
                    "SELECT COUNT(*) FROM docs WHERE typeof(state) <> 'blob'",
                    [],
                    |r| r.get(0),
                )
                .expect("count");
            assert_eq!(text, 0);
            for (key, state) in b.iter() {
                let sid = Store::space_id(&s.conn(), "b").expect("sid");
                let store = SqlDocs {
                    conn: s.conn.clone(),
                    sid,
                };
                assert_eq!(store.load(key).expect("read").as_ref(), Some(state));
            }
        }
        drop(s);
        let s = Store::open(&path).expect("reopen");
        assert_eq!(s.integrity_check().expect("check"), "ok");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_stable_horizon_and_the_peers_table_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("sb-stability-{}", std::process::id()));
        let path = dir.join("db.sqlite");
        let _ = std::fs::remove_dir_all(&dir);
        let vv = |e: &[(u64, u64)]| -> VersionVector {
            e.iter().map(|(r, c)| (ReplicaId(*r), *c)).collect()
        };
        let stability = bridge_core::replica::Stability {
            horizon: vv(&[(1, 4)]),
            peers: vec![bridge_core::replica::Tracked {
                replica: ReplicaId(7),
                floor: vv(&[(1, 5), (7, 2)]),
                ceiling: Some(vv(&[(1, 6), (7, 3)])),
                seen_ms: 1_700_000_000_000,
            }],
            resync: Vec::new(),
            resync_horizon: VersionVector::new(),
            upstream: Some(ReplicaId(0xc1)),
            collections: Some(vec!["notes".into()]),
            forget: vec!["todo*".into()],
        };
        {
            let mut s = Store::open(&path).expect("open");
            let e = s
                .load_engine(EngineConfig::new(ReplicaId(0), Tier::Cloud, "a"))
                .expect("load");
            assert_eq!(e.replica().stability(), &Default::default());
            let batch = PersistBatch {
                id: 1,
                docs: Vec::new(),
                vector: vv(&[(1, 6)]),
                clock: Stamp::default(),
                message_seen: VersionVector::new(),
                messages: Vec::new(),
                retain: Vec::new(),
                requests: Vec::new(),
                stability: Some(stability.clone()),
                collected: Vec::new(),
            };
            s.write(&[("a", &batch)]).expect("write");
            // A batch without a stability keeps the stored one.
            let later = PersistBatch {
                id: 2,
                stability: None,
                ..batch
            };
            s.write(&[("a", &later)]).expect("write");
        }
        let mut s = Store::open(&path).expect("reopen");
        let e = s
            .load_engine(EngineConfig::new(ReplicaId(0), Tier::Cloud, "a"))
            .expect("load");
        // The horizon and the peers come back; their floors and ceilings do not (each peer
        // reports again), so the horizon waits for them.
        let back = e.replica().stability();
        assert_eq!(back.horizon, stability.horizon);
        assert_eq!(back.peers.len(), 1);
        assert_eq!(back.peers[0].replica, ReplicaId(7));
        assert_eq!(back.peers[0].floor, VersionVector::new());
        assert_eq!(back.peers[0].ceiling, None);
        assert_eq!(
            back.peers[0].seen_ms, 1_700_000_000_000,
            "kept for the expiry"
        );
        assert!(e.replica().durably_tracks(ReplicaId(7)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The pages of conflicts and of tombstones read their partial indexes, not every
    /// document of the space (SQLite 3.50 walks the primary key unless told).
    #[test]
    fn conflict_and_tombstone_pages_read_their_partial_indexes() {
        let conn = Connection::open_in_memory().expect("memory db");
        let s = Store::init(conn).expect("init");
        for (q, index, args) in [
            (
                schema::SELECT_CONFLICTED,
                "docs_in_conflict",
                params![1, "", "", "", i64::MAX],
            ),
            (
                schema::SELECT_DEAD,
                "docs_dead",
                params![1, "", "", i64::MAX],
            ),
        ] {
            let conn = s.conn();
            let mut st = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {q}"))
                .expect("prepare");
            let plan: Vec<String> = st
                .query_map(args, |r| r.get(3))
                .expect("plan")
                .collect::<std::result::Result<_, _>>()
                .expect("rows");
            assert!(
                plan.iter()
                    .any(|l| l.starts_with(&format!("SEARCH docs USING INDEX {index} "))),
                "{q}: {plan:?}"
            );
        }
    }

    /// A root that collects: once a deletion is below its horizon (with no peer, at once),
    /// the document's row and its live dot leave the database; a document written again
    /// after that starts afresh; a live document is never collected.
    #[test]
    fn deleted_documents_below_the_horizon_leave_the_database() {
        let conn = Connection::open_in_memory().expect("memory db");
        let mut s = Store::init(conn).expect("init");
        let mut cfg = EngineConfig::new(ReplicaId(0), Tier::Cloud, "s");
        cfg.root = true;
        cfg.collect = true;
        let mut e = s.load_engine(cfg.clone()).expect("load");
        let key = |i: usize| DocKey::new("notes", format!("d{i:04}"));
        for i in 0..600 {
            let m = serde_json::json!({"n": i});
            let Some(m) = m.as_object().cloned() else {
                panic!("object")
            };
            bridge_core::testing::write(&mut e, 1000, key(i), WriteOp::Put(m)).expect("write");
        }
        drive(&mut s, &mut e);
        for i in (0..600).filter(|i| i % 3 == 0) {
            bridge_core::testing::write(&mut e, 2000, key(i), WriteOp::Delete).expect("delete");
        }
        drive(&mut s, &mut e);
        let sid = Store::space_id(&s.conn(), "s").expect("sid");
        let store = SqlDocs {
            conn: s.conn.clone(),
            sid,
        };
        assert_eq!(store.dead(None, 1000).expect("dead").len(), 200);
        // Each drive persists, which moves the horizon, then cuts what it found.
        for _ in 0..4 {
            drive(&mut s, &mut e);
        }
        assert_eq!(e.replica().collected_total(), 200);
        assert!(store.dead(None, 1000).expect("dead").is_empty());
        // The space's `_config/space` seed, and the 400 live documents: the count the
        // triggers keep (schema 7) is the table's, through inserts, updates and deletes.
        let rows = |s: &Store| -> i64 {
            s.conn()
                .query_row("SELECT COUNT(*) FROM docs WHERE sid = ?1", [sid], |r| {
                    r.get(0)
                })
                .expect("rows")
        };
        assert_eq!(store.doc_count().expect("count"), 401);
        assert_eq!(rows(&s), 401);
        let dots: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM dots WHERE sid = ?1", [sid], |r| {
                r.get(0)
            })
            .expect("dots");
        assert_eq!(dots, 401, "one live dot per document left");
        assert_eq!(e.replica().get(&key(3)).expect("get"), None);
        assert_eq!(
            e.replica().get(&key(4)).expect("get"),
            Some(serde_json::json!({"n": 4}))
        );
        // Written again after it was collected: a new document, read back after a restart.
        let m = serde_json::json!({"again": true});
        let Some(m) = m.as_object().cloned() else {
            panic!("object")
        };
        bridge_core::testing::write(&mut e, 3000, key(3), WriteOp::Put(m)).expect("write");
        drive(&mut s, &mut e);
        assert_eq!(store.doc_count().expect("count"), 402);
        assert_eq!(rows(&s), 402);
        let e = s.load_engine(cfg).expect("reload");
        assert_eq!(
            e.replica().get(&key(3)).expect("get"),
            Some(serde_json::json!({"again": true}))
        );
        assert_eq!(e.replica().get(&key(6)).expect("get"), None);
        assert_eq!(s.integrity_check().expect("check"), "ok");
    }

    #[test]
    fn batches_survive_reopen_and_replica_id_is_stable() {
        let dir = std::env::temp_dir().join(format!("sb-store-{}", std::process::id()));
        let path = dir.join("nested/db.sqlite");
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = |space: &str| EngineConfig::new(ReplicaId(0), Tier::Local, space);
        let (rid, vector) = {
            let mut s = Store::open(&path).expect("open");
            let mut e = s.load_engine(cfg("a")).expect("load");
            let obj = serde_json::json!({"t": 1});
            let Some(m) = obj.as_object().cloned() else {
                panic!("object")
            };
            bridge_core::testing::write(&mut e, 1000, DocKey::new("notes", "x"), WriteOp::Put(m))
                .expect("write");
            for i in 0..5 {
                bridge_core::testing::publish(&mut e, 1001, "chat", serde_json::json!(i))
                    .expect("publish");
            }
            drive(&mut s, &mut e);
            let mut other = s.load_engine(cfg("b")).expect("second space");
            drive(&mut s, &mut other);
            assert_eq!(s.integrity_check().expect("check"), "ok");
            assert_eq!(s.schema_version().expect("version"), schema::SCHEMA_VERSION);
            (e.replica().id(), e.replica().vector().clone())
        };
        let mut s = Store::open(&path).expect("reopen");
        assert_eq!(s.spaces().expect("spaces").len(), 2);
        let e = s.load_engine(cfg("a")).expect("load");
        assert_eq!(e.replica().id(), rid);
        assert_eq!(e.replica().vector(), &vector);
        assert_eq!(
            e.replica().get(&DocKey::new("notes", "x")).expect("read"),
            Some(serde_json::json!({"t": 1}))
        );
        assert_eq!(e.replica().replay("chat", 0).expect("replay").len(), 5);
        assert_eq!(e.replica().replay("chat", 3).expect("replay").len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
