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
use bridge_core::doc::DocState;
use bridge_core::message::{Message, Retained};
use bridge_core::replica::DocStore;
use bridge_core::schema;
use bridge_core::{DocKey, Engine, EngineConfig, PersistBatch, ReplicaId, Stamp, VersionVector};
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
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub struct Store {
    /// Shared with every space's [`SqlDocs`]: all of them run on the hub's one thread, so
    /// the lock is never contended; it only makes the connection shareable.
    conn: Arc<Mutex<Connection>>,
    /// Held while the store lives; the checkpointer thread stops when it is gone.
    _alive: std::sync::Arc<()>,
}

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
    pub fn replica_for(&mut self, space: &str) -> Result<ReplicaId> {
        let found: Option<String> = self
            .conn()
            .query_row(schema::SELECT_REPLICA, [space], |r| r.get(0))
            .optional()?;
        if let Some(r) = found {
            return r
                .parse()
                .map_err(|e| corrupt(format!("spaces.replica of {space}"), e));
        }
        let id = random_replica()?;
        self.conn().execute(
            schema::INSERT_SPACE,
            params![space, id.to_string(), now_ms() as i64],
        )?;
        Ok(id)
    }

    /// Opens `space`: its replica id (created if new) and an engine whose durable layer is
    /// this database. Reads the metadata, the `_config` entries and the highest retained
    /// message offset (the messages themselves are read when a replay needs them).
    pub fn load_engine(&mut self, mut cfg: EngineConfig) -> Result<Engine> {
        cfg.replica = self.replica_for(&cfg.space)?;
        let space = cfg.space.clone();
        let docs = SqlDocs {
            conn: self.conn.clone(),
            space: space.clone(),
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

        let config = bridge_core::replica::CONFIG_COLLECTION;
        let mut st = conn.prepare(schema::SELECT_COLLECTION_DOCS)?;
        let rows = st.query_map([&space, config], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (id, state) = row?;
            let state: DocState = serde_json::from_str(&state)
                .map_err(|e| corrupt(format!("docs.state of {config}/{id}"), e))?;
            engine.restore_doc(DocKey::new(config, id), state);
        }
        drop(st);

        let last: i64 = conn.query_row(schema::SELECT_LAST_OFFSET, [&space], |r| r.get(0))?;
        let last = u64::try_from(last).map_err(|e| corrupt("messages.offset", e))?;
        engine.restore_message_offset(last);
        drop(conn);
        Ok(engine)
    }

    /// Writes batches of several spaces in one transaction: a group commit.
    pub fn write(&mut self, batches: &[(&str, &PersistBatch)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut put_doc = tx.prepare_cached(schema::UPSERT_DOC)?;
            let mut drop_dots = tx.prepare_cached(schema::DELETE_DOC_DOTS)?;
            let mut put_dot = tx.prepare_cached(schema::INSERT_DOT)?;
            let mut put_meta = tx.prepare_cached(schema::UPSERT_META)?;
            let mut put_msg = tx.prepare_cached(schema::UPSERT_MESSAGE)?;
            let mut trim = tx.prepare_cached(schema::TRIM_CHANNEL)?;
            for (space, b) in batches {
                for (key, state) in &b.docs {
                    let json = to_json(state)?;
                    let n = state.siblings.len() as i64;
                    put_doc.execute(params![space, key.collection, key.id, json, n])?;
                    drop_dots.execute(params![space, key.collection, key.id])?;
                    for s in &state.siblings {
                        let (replica, counter) = (s.dot.replica.to_string(), s.dot.counter as i64);
                        put_dot.execute(params![
                            space,
                            replica,
                            counter,
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
            n(schema::COUNT_DOCS)?,
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
    space: String,
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
    fn load(&self, key: &DocKey) -> bridge_core::Result<Option<DocState>> {
        let conn = lock(&self.conn);
        let mut st = conn.prepare_cached(schema::SELECT_DOC).map_err(read_err)?;
        let json: Option<String> = st
            .query_row(params![self.space, key.collection, key.id], |r| r.get(0))
            .optional()
            .map_err(read_err)?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| read_err(format!("docs.state of {}/{}: {e}", key.collection, key.id)))
        })
        .transpose()
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
                params![self.space, collection, after.unwrap_or(""), limit],
                |r| Ok(DocKey::new(collection, r.get::<_, String>(0)?)),
            )
            .map_err(read_err)?;
        rows.collect::<Result<_, _>>().map_err(read_err)
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
                params![self.space, replica.to_string(), from, upto, limit],
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

    fn count_dots(&self, replica: ReplicaId, from: u64, upto: u64) -> bridge_core::Result<u64> {
        let conn = lock(&self.conn);
        let mut st = conn.prepare_cached(schema::COUNT_DOTS).map_err(read_err)?;
        let n: i64 = st
            .query_row(
                params![self.space, replica.to_string(), from as i64, upto as i64],
                |r| r.get(0),
            )
            .map_err(read_err)?;
        Ok(n as u64)
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
            params![self.space, collection.unwrap_or(""), ac, ai, limit],
        )
    }

    fn doc_count(&self) -> bridge_core::Result<u64> {
        let conn = lock(&self.conn);
        let n: i64 = conn
            .query_row(schema::COUNT_SPACE_DOCS, [&self.space], |r| r.get(0))
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
                    .query_map(params![self.space, ch, from, upto, limit], row)
                    .map_err(read_err)?;
                rows.collect::<Result<_, _>>().map_err(read_err)?
            }
            None => {
                let mut st = conn
                    .prepare_cached(schema::SELECT_MESSAGES_AFTER)
                    .map_err(read_err)?;
                let rows = st
                    .query_map(params![self.space, from, upto, limit], row)
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
        st.query_row(params![self.space, after], |r| r.get::<_, String>(0))
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
            assert_eq!(s.schema_version().expect("version"), 2);
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
