//! The Durable Object's storage: the shared schema and statements of
//! [`bridge_core::schema`] run on SQLite-backed Durable Object storage (`storage().sql()`).
//!
//! A batch is written in one `transactionSync`, so it is stored whole or not at all; and the
//! runtime's output gate holds every message the object sends until the writes before it are
//! durable, so an `ack` sent after [`write`] returned never overtakes its write.
//!
//! Statements are planned as plain values ([`Stmt`], built by [`plan_batch`], tested
//! natively) and executed by [`run`]. The storage is the engine's durable layer: [`DoDocs`]
//! reads documents, pages of ids, live dots, conflicts and pages of retained messages from it
//! as the engine needs them, and [`load`] reads only the metadata, the `_config` entries and
//! the highest message offset, so waking the object costs the same for ten documents or a
//! million, and for ten retained messages or a hundred thousand.

use bridge_core::codec::{encode_state, StateColumn};
use bridge_core::doc::DocState;
use bridge_core::message::{Message, Retained};
use bridge_core::replica::{DocStore, CONFIG_COLLECTION};
use bridge_core::schema;
use bridge_core::{
    DocKey, Dot, Engine, EngineConfig, PersistBatch, ReplicaId, Stamp, VersionVector,
};
use std::collections::BTreeMap;
use worker::send::SendWrapper;
use worker::{SqlStorage, SqlStorageValue as Value, Storage};

#[derive(Debug)]
pub enum StoreError {
    Sql(String),
    Corrupt { what: String, why: String },
    TooNew { found: i64, known: i64 },
    Random(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sql(e) => write!(f, "Durable Object storage failed: {e}"),
            StoreError::Corrupt { what, why } => {
                write!(f, "stored data in {what} could not be read: {why}")
            }
            StoreError::TooNew { found, known } => write!(
                f,
                "the stored schema is version {found}, newer than this build ({known}); deploy the newer worker"
            ),
            StoreError::Random(e) => write!(f, "no randomness for a replica id: {e}"),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<worker::Error> for StoreError {
    fn from(e: worker::Error) -> Self {
        StoreError::Sql(e.to_string())
    }
}

fn corrupt(what: impl Into<String>, why: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        why: why.to_string(),
    }
}

/// One statement with its bindings (numbered parameters, bound in order).
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub sql: &'static str,
    pub args: Vec<Value>,
}

fn stmt(sql: &'static str, args: Vec<Value>) -> Stmt {
    Stmt { sql, args }
}

fn json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_string(v)
        .map(Value::String)
        .map_err(|e| corrupt("a value to store", e))
}

fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The statements that store `batch` of `space` (space id `sid`), in the order the native
/// host runs them. `stored_dots` gives the dots of a document's state in the store (read
/// before the batch's transaction: the object runs nothing else in between), whose dots the
/// new state no longer holds are dropped.
pub fn plan_batch(
    space: &str,
    sid: i64,
    batch: &PersistBatch,
    mut stored_dots: impl FnMut(&DocKey) -> Result<Vec<Dot>>,
) -> Result<Vec<Stmt>> {
    let sp = || Value::String(space.to_owned());
    let sid_value = || Value::Integer(sid);
    let mut out = Vec::with_capacity(2 * batch.docs.len() + batch.messages.len() + 2);
    for r in schema::batch_replicas(batch) {
        out.push(stmt(
            schema::ENSURE_REPLICA,
            vec![sid_value(), Value::String(r.to_string())],
        ));
    }
    // A key written twice in one batch replaces what the batch wrote first.
    let mut planned: BTreeMap<&DocKey, Vec<Dot>> = BTreeMap::new();
    for (key, state) in &batch.docs {
        let coll = || Value::String(key.collection.clone());
        let id = || Value::String(key.id.clone());
        let old = match planned.get(key) {
            Some(dots) => dots.clone(),
            None => stored_dots(key)?,
        };
        let (dropped, added) = schema::dot_changes(&old, state);
        for d in &dropped {
            out.push(stmt(
                schema::DELETE_DOT,
                vec![
                    sid_value(),
                    Value::String(d.replica.to_string()),
                    int(d.counter),
                ],
            ));
        }
        out.push(stmt(
            schema::UPSERT_DOC,
            vec![
                sid_value(),
                coll(),
                id(),
                Value::Blob(encode_state(state)),
                int(state.siblings.len() as u64),
            ],
        ));
        for d in &added {
            out.push(stmt(
                schema::INSERT_DOT,
                vec![
                    sid_value(),
                    Value::String(d.replica.to_string()),
                    int(d.counter),
                    coll(),
                    id(),
                ],
            ));
        }
        planned.insert(key, state.siblings.iter().map(|s| s.dot).collect());
    }
    for r in &batch.messages {
        out.push(stmt(
            schema::UPSERT_MESSAGE,
            vec![
                sp(),
                int(r.offset),
                Value::String(r.message.channel.clone()),
                json(&r.message)?,
            ],
        ));
    }
    for (channel, keep) in &batch.retain {
        out.push(stmt(
            schema::TRIM_CHANNEL,
            vec![sp(), Value::String(channel.clone()), int(*keep as u64)],
        ));
    }
    out.push(stmt(
        schema::UPSERT_META,
        vec![
            sp(),
            json(&batch.vector)?,
            json(&batch.clock)?,
            json(&batch.message_seen)?,
        ],
    ));
    if let Some(st) = &batch.stability {
        out.push(stmt(schema::UPSERT_STABILITY, vec![sid_value(), json(st)?]));
    }
    Ok(out)
}

/// Runs one statement to completion and returns its rows.
fn exec(sql: &SqlStorage, q: &str, args: Vec<Value>) -> Result<Vec<Vec<Value>>> {
    let cursor = sql.exec(q, args)?;
    let mut rows = Vec::new();
    for row in cursor.raw() {
        rows.push(row?);
    }
    Ok(rows)
}

/// Runs `stmts` in one `transactionSync`: all or nothing.
pub fn run(storage: &Storage, stmts: Vec<Stmt>) -> Result<()> {
    let sql = storage.sql();
    transaction_sync(storage, move || {
        for s in stmts {
            exec(&sql, s.sql, s.args)?;
        }
        Ok(())
    })
}

/// `storage.transactionSync(f)`: the worker crate does not bind it, so it is called through
/// JavaScript. `f` returning an error throws inside the callback, which rolls back.
fn transaction_sync(storage: &Storage, f: impl FnOnce() -> Result<()> + 'static) -> Result<()> {
    use worker::js_sys::{Function, Reflect};
    use worker::wasm_bindgen::{closure::Closure, JsCast, JsValue};
    let raw: &JsValue = storage.as_raw().as_ref();
    let func: Function = Reflect::get(raw, &JsValue::from_str("transactionSync"))
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| StoreError::Sql("storage.transactionSync is not available".into()))?;
    let failure = std::rc::Rc::new(std::cell::RefCell::new(None));
    let seen = failure.clone();
    let cb = Closure::once(move || -> std::result::Result<(), JsValue> {
        f().map_err(|e| {
            let msg = e.to_string();
            *seen.borrow_mut() = Some(e);
            JsValue::from_str(&msg)
        })
    });
    let result = func.call1(raw, cb.as_ref().unchecked_ref());
    if let Some(e) = failure.borrow_mut().take() {
        return Err(e);
    }
    result.map(|_| ()).map_err(|e| {
        StoreError::Sql(
            e.as_string()
                .or_else(|| {
                    e.dyn_ref::<worker::js_sys::Error>()
                        .map(|e| String::from(e.message()))
                })
                .unwrap_or_else(|| format!("{e:?}")),
        )
    })
}

fn text(row: &[Value], i: usize, what: &str) -> Result<String> {
    match row.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(corrupt(what, format!("expected text, found {other:?}"))),
    }
}

fn integer(row: &[Value], i: usize, what: &str) -> Result<i64> {
    match row.get(i) {
        Some(Value::Integer(n)) => Ok(*n),
        other => Err(corrupt(
            what,
            format!("expected an integer, found {other:?}"),
        )),
    }
}

fn parse<T: serde::de::DeserializeOwned>(s: &str, what: impl Into<String>) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

/// A `docs.state` value in either of its forms (see [`bridge_core::schema`]).
fn state_column<'a>(row: &'a [Value], i: usize, what: &str) -> Result<StateColumn<'a>> {
    match row.get(i) {
        Some(Value::Blob(b)) => Ok(StateColumn::Blob(b)),
        Some(Value::String(s)) => Ok(StateColumn::Text(s.as_bytes())),
        other => Err(corrupt(
            what,
            format!("expected a BLOB or TEXT, found {other:?}"),
        )),
    }
}

fn state_of(row: &[Value], i: usize, what: String) -> Result<DocState> {
    state_column(row, i, &what)?
        .decode()
        .map_err(|e| corrupt(what, e))
}

/// The integer id of `space` (`spaces.sid`), which `docs` and `dots` are keyed by.
fn space_id(sql: &SqlStorage, space: &str) -> Result<i64> {
    let rows = exec(
        sql,
        schema::SELECT_SPACE_ID,
        vec![Value::String(space.to_owned())],
    )?;
    match rows.first() {
        Some(row) => integer(row, 0, "spaces.sid"),
        None => Err(corrupt("spaces.sid", format!("no space {space}"))),
    }
}

/// The dots of the stored state of `key` (none if it has no row).
fn stored_dots(sql: &SqlStorage, sid: i64, key: &DocKey) -> Result<Vec<Dot>> {
    let rows = exec(
        sql,
        schema::SELECT_DOC,
        vec![
            Value::Integer(sid),
            Value::String(key.collection.clone()),
            Value::String(key.id.clone()),
        ],
    )?;
    let Some(row) = rows.first() else {
        return Ok(Vec::new());
    };
    let what = format!("docs.state of {}/{}", key.collection, key.id);
    state_column(row, 0, &what)?
        .dots()
        .map_err(|e| corrupt(what, e))
}

/// Creates or upgrades the schema (each migration in its own transaction).
pub fn migrate(storage: &Storage, now_ms: u64) -> Result<()> {
    let sql = storage.sql();
    exec(&sql, schema::CREATE_MIGRATIONS_TABLE, vec![])?;
    let rows = exec(&sql, schema::SELECT_SCHEMA_VERSION, vec![])?;
    let found = rows
        .first()
        .map(|r| integer(r, 0, "migrations.version"))
        .transpose()?
        .unwrap_or(0);
    let known = schema::SCHEMA_VERSION;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, m) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
        run(
            storage,
            vec![
                stmt(m, vec![]),
                stmt(
                    schema::INSERT_MIGRATION,
                    vec![int(i as u64 + 1), int(now_ms)],
                ),
            ],
        )?;
    }
    Ok(())
}

/// The space this object holds and its replica id, once created.
pub fn stored_space(storage: &Storage) -> Result<Option<(String, ReplicaId)>> {
    let rows = exec(&storage.sql(), schema::SELECT_SPACES, vec![])?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let space = text(row, 0, "spaces.space")?;
    let replica = text(row, 1, "spaces.replica")?
        .parse::<ReplicaId>()
        .map_err(|e| corrupt("spaces.replica", e))?;
    Ok(Some((space, replica)))
}

/// Records `space` with a fresh random replica id.
pub fn create_space(storage: &Storage, space: &str, now_ms: u64) -> Result<ReplicaId> {
    let replica = random_replica()?;
    run(
        storage,
        vec![stmt(
            schema::INSERT_SPACE,
            vec![
                Value::String(space.to_owned()),
                Value::String(replica.to_string()),
                int(now_ms),
            ],
        )],
    )?;
    Ok(replica)
}

/// A random replica id from the Web Crypto API (0 is not an id).
fn random_replica() -> Result<ReplicaId> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(ReplicaId::from_random(b))
}

/// An engine for `cfg.space` whose durable layer is this storage (`cfg.replica` must be the
/// stored id): reads the metadata, the `_config` entries and the highest message offset only.
pub fn load(storage: &Storage, cfg: EngineConfig) -> Result<Engine> {
    let sql = storage.sql();
    let sid = space_id(&sql, &cfg.space)?;
    let space = Value::String(cfg.space.clone());
    let docs = DoDocs {
        sql: SendWrapper::new(storage.sql()),
        sid,
    };
    let mut engine = Engine::with_store(cfg, Box::new(docs));
    if let Some(row) = exec(&sql, schema::SELECT_META, vec![space.clone()])?.first() {
        let vector: VersionVector = parse(&text(row, 0, "meta.vector")?, "meta.vector")?;
        let clock: Stamp = parse(&text(row, 1, "meta.clock")?, "meta.clock")?;
        let seen: VersionVector = parse(&text(row, 2, "meta.message_seen")?, "meta.message_seen")?;
        engine.restore_meta(vector, clock, seen);
    }
    if let Some(row) = exec(&sql, schema::SELECT_STABILITY, vec![Value::Integer(sid)])?.first() {
        let st = parse(&text(row, 0, "stability.record")?, "stability.record")?;
        engine.restore_stability(st);
    }
    let config = Value::String(CONFIG_COLLECTION.into());
    for row in exec(
        &sql,
        schema::SELECT_COLLECTION_DOCS,
        vec![Value::Integer(sid), config],
    )? {
        let id = text(&row, 0, "docs.id")?;
        let state = state_of(&row, 1, format!("docs.state of {CONFIG_COLLECTION}/{id}"))?;
        engine.restore_doc(DocKey::new(CONFIG_COLLECTION, id), state);
    }
    let last = match exec(&sql, schema::SELECT_LAST_OFFSET, vec![space])?.first() {
        Some(row) => integer(row, 0, "messages.offset")?,
        None => 0,
    };
    engine.restore_message_offset(u64::try_from(last).map_err(|e| corrupt("messages.offset", e))?);
    Ok(engine)
}

/// The space's documents in this object's storage: the [`DocStore`] its engine reads its
/// durable layer from, with the statements the native host runs on its SQLite.
pub struct DoDocs {
    /// A Durable Object runs on one thread; the core asks a store to be `Send` for the
    /// native host's sake, which a JavaScript handle cannot say of itself.
    sql: SendWrapper<SqlStorage>,
    /// The space's integer id (`spaces.sid`).
    sid: i64,
}

fn read_err(e: StoreError) -> bridge_core::Error {
    bridge_core::Error::Store(e.to_string())
}

impl DoDocs {
    fn rows(&self, q: &str, args: Vec<Value>) -> bridge_core::Result<Vec<Vec<Value>>> {
        exec(&self.sql, q, args).map_err(read_err)
    }

    fn sp(&self) -> Value {
        Value::Integer(self.sid)
    }

    fn count(&self, q: &str, args: Vec<Value>) -> bridge_core::Result<u64> {
        let rows = self.rows(q, args)?;
        let n = match rows.first() {
            Some(row) => integer(row, 0, "a count").map_err(read_err)?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn keys_of(&self, rows: Vec<Vec<Value>>) -> bridge_core::Result<Vec<DocKey>> {
        rows.iter()
            .map(|r| {
                Ok(DocKey::new(
                    text(r, 0, "docs.collection").map_err(read_err)?,
                    text(r, 1, "docs.id").map_err(read_err)?,
                ))
            })
            .collect()
    }
}

/// A limit as an SQL integer.
fn limit(n: usize) -> Value {
    int(u64::try_from(n).unwrap_or(u64::MAX))
}

impl DocStore for DoDocs {
    fn load(&self, key: &DocKey) -> bridge_core::Result<Option<DocState>> {
        let rows = self.rows(
            schema::SELECT_DOC,
            vec![
                self.sp(),
                Value::String(key.collection.clone()),
                Value::String(key.id.clone()),
            ],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let what = format!("docs.state of {}/{}", key.collection, key.id);
        state_of(row, 0, what).map(Some).map_err(read_err)
    }

    fn keys(
        &self,
        collection: &str,
        after: Option<&str>,
        n: usize,
    ) -> bridge_core::Result<Vec<DocKey>> {
        let rows = self.rows(
            schema::SELECT_DOC_IDS,
            vec![
                self.sp(),
                Value::String(collection.to_owned()),
                Value::String(after.unwrap_or("").to_owned()),
                limit(n),
            ],
        )?;
        rows.iter()
            .map(|r| {
                Ok(DocKey::new(
                    collection,
                    text(r, 0, "docs.id").map_err(read_err)?,
                ))
            })
            .collect()
    }

    fn dots(
        &self,
        replica: ReplicaId,
        from: u64,
        upto: u64,
        n: usize,
    ) -> bridge_core::Result<Vec<(u64, DocKey)>> {
        let rows = self.rows(
            schema::SELECT_DOTS,
            vec![
                self.sp(),
                Value::String(replica.to_string()),
                int(from),
                int(upto),
                limit(n),
            ],
        )?;
        rows.iter()
            .map(|r| {
                let counter = integer(r, 0, "dots.counter").map_err(read_err)?;
                Ok((
                    u64::try_from(counter).unwrap_or(0),
                    DocKey::new(
                        text(r, 1, "dots.collection").map_err(read_err)?,
                        text(r, 2, "dots.id").map_err(read_err)?,
                    ),
                ))
            })
            .collect()
    }

    fn conflicted(
        &self,
        collection: Option<&str>,
        after: Option<&DocKey>,
        n: usize,
    ) -> bridge_core::Result<Vec<DocKey>> {
        let (ac, ai) = after.map_or(("", ""), |k| (k.collection.as_str(), k.id.as_str()));
        let rows = self.rows(
            schema::SELECT_CONFLICTED,
            vec![
                self.sp(),
                Value::String(collection.unwrap_or("").to_owned()),
                Value::String(ac.to_owned()),
                Value::String(ai.to_owned()),
                limit(n),
            ],
        )?;
        self.keys_of(rows)
    }

    fn doc_count(&self) -> bridge_core::Result<u64> {
        self.count(schema::COUNT_SPACE_DOCS, vec![self.sp()])
    }

    fn messages(
        &self,
        channel: Option<&str>,
        from: u64,
        upto: u64,
        n: usize,
    ) -> bridge_core::Result<Vec<Retained>> {
        let rows = match channel {
            Some(ch) => self.rows(
                schema::SELECT_CHANNEL_AFTER,
                vec![
                    self.sp(),
                    Value::String(ch.to_owned()),
                    int(from),
                    int(upto),
                    limit(n),
                ],
            )?,
            None => self.rows(
                schema::SELECT_MESSAGES_AFTER,
                vec![self.sp(), int(from), int(upto), limit(n)],
            )?,
        };
        rows.iter()
            .map(|r| {
                let offset = integer(r, 0, "messages.offset").map_err(read_err)?;
                let what = format!("messages.message at {offset}");
                let json = text(r, 1, &what).map_err(read_err)?;
                let message: Message = parse(&json, what).map_err(read_err)?;
                let offset =
                    u64::try_from(offset).map_err(|e| read_err(corrupt("messages.offset", e)))?;
                Ok(Retained { offset, message })
            })
            .collect()
    }

    fn next_collection(&self, after: &str) -> bridge_core::Result<Option<String>> {
        let rows = self.rows(
            schema::SELECT_NEXT_COLLECTION,
            vec![self.sp(), Value::String(after.to_owned())],
        )?;
        rows.first()
            .map(|r| text(r, 0, "docs.collection").map_err(read_err))
            .transpose()
    }
}

/// Stores `batch` of `space` atomically.
pub fn write(storage: &Storage, space: &str, batch: &PersistBatch) -> Result<()> {
    let sql = storage.sql();
    let sid = space_id(&sql, space)?;
    let plan = plan_batch(space, sid, batch, |key| stored_dots(&sql, sid, key))?;
    run(storage, plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::{Tier, WriteOp};

    #[test]
    fn a_batch_plans_docs_messages_trim_then_meta() {
        let mut cfg = EngineConfig::new(ReplicaId(5), Tier::Cloud, "s");
        // One document in the batch (no default-policy seed of a new space).
        cfg.seed_default_policy = false;
        let mut e = Engine::new(cfg);
        let Some(doc) = serde_json::json!({"a": 1}).as_object().cloned() else {
            panic!("object")
        };
        bridge_core::testing::write(&mut e, 10, DocKey::new("c", "x"), WriteOp::Put(doc))
            .expect("write");
        bridge_core::testing::publish(&mut e, 11, "chat", serde_json::json!("hi"))
            .expect("publish");
        let Some(batch) = e.poll_persist() else {
            panic!("a batch")
        };
        // The stored state of `c/x` had a dot the new state no longer holds.
        let old = Dot::new(ReplicaId(9), 4);
        let plan = plan_batch("s", 1, &batch, |_| Ok(vec![old])).expect("plan");
        let sqls: Vec<&str> = plan.iter().map(|s| s.sql).collect();
        assert_eq!(
            sqls,
            [
                schema::ENSURE_REPLICA,
                schema::DELETE_DOT,
                schema::UPSERT_DOC,
                schema::INSERT_DOT,
                schema::UPSERT_MESSAGE,
                schema::TRIM_CHANNEL,
                schema::UPSERT_META
            ]
        );
        assert_eq!(plan[1].args[1], Value::String(ReplicaId(9).to_string()));
        let Value::Blob(state) = &plan[2].args[3] else {
            panic!("the state is a BLOB: {:?}", plan[2].args[3])
        };
        assert_eq!(
            bridge_core::codec::decode_state(state).as_ref(),
            Ok(&*batch.docs[0].1)
        );
        // Every statement gets exactly as many bindings as its highest `?N`.
        for s in &plan {
            let highest = (1..=9)
                .filter(|n| s.sql.contains(&format!("?{n}")))
                .max()
                .unwrap_or(0);
            assert_eq!(s.args.len(), highest, "{}", s.sql);
        }
        assert_eq!(
            plan[4].args[1],
            Value::Integer(1),
            "the first message offset"
        );
        // A dot both states hold is neither dropped nor inserted again.
        let kept = batch.docs[0].1.siblings[0].dot;
        let plan = plan_batch("s", 1, &batch, |_| Ok(vec![kept])).expect("plan");
        assert!(!plan
            .iter()
            .any(|s| s.sql == schema::DELETE_DOT || s.sql == schema::INSERT_DOT));
    }
}
