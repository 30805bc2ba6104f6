//! The Durable Object's storage: the shared schema and statements of
//! [`bridge_core::schema`] run on SQLite-backed Durable Object storage (`storage().sql()`).
//!
//! A batch is written in one `transactionSync`, so it is stored whole or not at all; and the
//! runtime's output gate holds every message the object sends until the writes before it are
//! durable, so an `ack` sent after [`write`] returned never overtakes its write.
//!
//! Statements are planned as plain values ([`Stmt`], built by [`plan_batch`], tested
//! natively) and executed by [`run`]. The storage is the engine's durable layer: [`DoDocs`]
//! reads documents, pages of ids, live dots, conflicts, pages of dead documents (for
//! collection) and pages of retained messages from it as the engine needs them, and [`load`]
//! reads only the metadata, the `_config` entries and the highest message offset, so waking
//! the object costs the same for ten documents or a million, and for ten retained messages or
//! a hundred thousand.

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

// The Durable Object's forms of `schema`'s per-document statements, one statement for many
// documents. A call into the object's SQL costs far more than the row it writes (a crossing
// from wasm into JavaScript and into the runtime, a cursor object, each argument converted),
// and one statement may bind at most 100 parameters; so the rows of a batch travel as one
// JSON array (`?2`, read with `json_each`) and their states as one BLOB (`?3`) that each row
// slices. Each does what the statement it stands for does, row by row, in array order; the
// native host runs those (rusqlite prepares them once and pays little per call).

/// ?1 space id, ?2 JSON `[[collection, id], ...]` → (index in ?2, state) for each of those
/// documents the store holds: [`schema::SELECT_DOC`] for many keys.
pub const SELECT_DOCS_IN: &str = "SELECT j.key, d.state FROM json_each(?2) AS j
 CROSS JOIN docs AS d
 WHERE d.sid = ?1 AND d.collection = j.value ->> 0 AND d.id = j.value ->> 1";

/// ?1 space id, ?2 JSON `[[replica hex, counter], ...]`: [`schema::DELETE_DOT`] for many dots.
pub const DELETE_DOTS_IN: &str = "DELETE FROM dots WHERE sid = ?1 AND (rid, counter) IN
 (SELECT (SELECT rid FROM replicas WHERE sid = ?1 AND replica = j.value ->> 0), j.value ->> 1
  FROM json_each(?2) AS j)";

/// ?1 space id, ?2 JSON `[[collection, id], ...]`: [`schema::DELETE_DOC`] for many documents
/// (the collected ones; their dots go with [`DELETE_DOTS_IN`]).
pub const DELETE_DOCS_IN: &str = "DELETE FROM docs WHERE sid = ?1 AND (collection, id) IN
 (SELECT j.value ->> 0, j.value ->> 1 FROM json_each(?2) AS j)";

/// ?1 space id, ?2 JSON `[[collection, id, offset, length, siblings, dead], ...]`, ?3 the
/// states end to end (BLOB; a row's state is `length` bytes from `offset`, 1-based):
/// [`schema::UPSERT_DOC`] for many documents (`WHERE true` lets SQLite parse the upsert
/// clause after a SELECT).
pub const UPSERT_DOCS_IN: &str = "INSERT INTO docs (sid, collection, id, state, siblings, dead)
 SELECT ?1, j.value ->> 0, j.value ->> 1, substr(?3, j.value ->> 2, j.value ->> 3),
    j.value ->> 4, j.value ->> 5
 FROM json_each(?2) AS j WHERE true
 ON CONFLICT (sid, collection, id) DO UPDATE SET state = excluded.state,
    siblings = excluded.siblings, dead = excluded.dead";

/// ?1 space id, ?2 JSON `[[replica hex, counter, collection, id], ...]`:
/// [`schema::INSERT_DOT`] for many dots (a replica without its number fails the insert, as
/// there).
pub const INSERT_DOTS_IN: &str = "INSERT OR REPLACE INTO dots (sid, rid, counter, collection, id)
 SELECT ?1, (SELECT rid FROM replicas WHERE sid = ?1 AND replica = j.value ->> 0),
    j.value ->> 1, j.value ->> 2, j.value ->> 3
 FROM json_each(?2) AS j";

/// Most documents (or dots) one of the statements above carries, and about the most bytes of
/// JSON rows or of states: a batch larger than that is written in several statements of
/// the same transaction. (A Durable Object refuses a string or BLOB over 2 MB.)
const ROWS_PER_STMT: usize = 512;
const BYTES_PER_STMT: usize = 1 << 20;

/// The rows of batched statements as they are built: a JSON array of rows (each serialized
/// once, straight into the text) and the BLOB of states they slice, cut into a new
/// statement's rows at [`ROWS_PER_STMT`] rows or [`BYTES_PER_STMT`] bytes.
#[derive(Default)]
struct Rows {
    /// Each statement's rows: JSON array, BLOB of states, number of rows.
    done: Vec<(String, Vec<u8>, usize)>,
    text: Vec<u8>,
    blob: Vec<u8>,
    n: usize,
}

impl Rows {
    /// Adds one row; `state` goes at the end of the BLOB and `row(offset, len)` gives the
    /// row that slices it (1-based offset, as `substr` counts).
    fn push<R: serde::Serialize>(
        &mut self,
        state: &[u8],
        row: impl FnOnce(usize, usize) -> R,
    ) -> Result<()> {
        if self.n > 0
            && (self.n >= ROWS_PER_STMT
                || self.text.len() >= BYTES_PER_STMT
                || self.blob.len() + state.len() > BYTES_PER_STMT)
        {
            self.cut();
        }
        self.text.push(if self.n == 0 { b'[' } else { b',' });
        serde_json::to_writer(&mut self.text, &row(self.blob.len() + 1, state.len()))
            .map_err(|e| corrupt("a row to store", e))?;
        self.blob.extend_from_slice(state);
        self.n += 1;
        Ok(())
    }

    fn cut(&mut self) {
        if self.n == 0 {
            return;
        }
        self.text.push(b']');
        // Only `serde_json` wrote to it: UTF-8.
        let text = String::from_utf8(std::mem::take(&mut self.text)).unwrap_or_default();
        self.done
            .push((text, std::mem::take(&mut self.blob), self.n));
        self.n = 0;
    }

    /// Every statement's rows: (JSON array, BLOB of states, number of rows).
    fn finish(mut self) -> Vec<(String, Vec<u8>, usize)> {
        self.cut();
        self.done
    }
}

/// The statements that store `batch` of `space` (space id `sid`): the same rows as the
/// native host writes, with the per-document statements in their batched forms. `stored`
/// gives the dots of the state each document of the batch, written or collected, has in the
/// store (read before the batch's transaction: the object runs nothing else in between; a
/// key it lacks has no row); the dots the new state no longer holds are dropped, and a
/// collected document's row goes with all of its dots. A key written twice in one batch
/// counts once, with its last state.
pub fn plan_batch(
    space: &str,
    sid: i64,
    batch: &PersistBatch,
    stored: &BTreeMap<DocKey, Vec<Dot>>,
) -> Result<Vec<Stmt>> {
    let sp = || Value::String(space.to_owned());
    let sid_value = || Value::Integer(sid);
    let mut out = Vec::new();
    for r in schema::batch_replicas(batch) {
        out.push(stmt(
            schema::ENSURE_REPLICA,
            vec![sid_value(), Value::String(r.to_string())],
        ));
    }
    let mut last: BTreeMap<&DocKey, &DocState> = BTreeMap::new();
    for (key, state) in &batch.docs {
        last.insert(key, state);
    }
    let (mut dropped, mut docs, mut added) = (Rows::default(), Rows::default(), Rows::default());
    let mut removed = Rows::default();
    // The core never collects a document it writes in the same batch; should one be both, its
    // new state is written and its row kept: removing it would lose that write.
    for key in batch.collected.iter().filter(|k| !last.contains_key(k)) {
        for d in stored.get(key).map(Vec::as_slice).unwrap_or_default() {
            dropped.push(&[], |_, _| (d.replica.to_string(), d.counter))?;
        }
        removed.push(&[], |_, _| (&key.collection, &key.id))?;
    }
    for (key, state) in last {
        let old = stored.get(key).map(Vec::as_slice).unwrap_or_default();
        let (gone, new) = schema::dot_changes(old, state);
        for d in gone {
            dropped.push(&[], |_, _| (d.replica.to_string(), d.counter))?;
        }
        let (c, id, n) = (&key.collection, &key.id, state.siblings.len());
        let dead = u8::from(state.is_dead());
        docs.push(&encode_state(state), |at, len| (c, id, at, len, n, dead))?;
        for d in new {
            added.push(&[], |_, _| (d.replica.to_string(), d.counter, c, id))?;
        }
    }
    for (rows, _, _) in dropped.finish() {
        out.push(stmt(DELETE_DOTS_IN, vec![sid_value(), Value::String(rows)]));
    }
    for (rows, _, _) in removed.finish() {
        out.push(stmt(DELETE_DOCS_IN, vec![sid_value(), Value::String(rows)]));
    }
    for (rows, states, _) in docs.finish() {
        out.push(stmt(
            UPSERT_DOCS_IN,
            vec![sid_value(), Value::String(rows), Value::Blob(states)],
        ));
    }
    for (rows, _, _) in added.finish() {
        out.push(stmt(INSERT_DOTS_IN, vec![sid_value(), Value::String(rows)]));
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

/// A row's first three columns as a live dot: (counter, collection, id).
fn dot_of(r: &[Value]) -> bridge_core::Result<(u64, DocKey)> {
    let counter = integer(r, 0, "dots.counter").map_err(read_err)?;
    Ok((
        u64::try_from(counter).unwrap_or(0),
        DocKey::new(
            text(r, 1, "dots.collection").map_err(read_err)?,
            text(r, 2, "dots.id").map_err(read_err)?,
        ),
    ))
}

/// The bindings of [`schema::SELECT_DEAD`]: the page of at most `n` after `after` (`''`
/// and `''`: from the first).
fn dead_args(sid: i64, after: Option<&DocKey>, n: usize) -> Vec<Value> {
    let (ac, ai) = after.map_or(("", ""), |k| (k.collection.as_str(), k.id.as_str()));
    vec![
        Value::Integer(sid),
        Value::String(ac.to_owned()),
        Value::String(ai.to_owned()),
        limit(n),
    ]
}

/// A row of [`schema::SELECT_DEAD`]: (collection, id, state).
fn dead_of(r: &[Value]) -> bridge_core::Result<(DocKey, DocState)> {
    let key = DocKey::new(
        text(r, 0, "docs.collection").map_err(read_err)?,
        text(r, 1, "docs.id").map_err(read_err)?,
    );
    let what = format!("docs.state of {}/{}", key.collection, key.id);
    let state = state_of(r, 2, what).map_err(read_err)?;
    Ok((key, state))
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

/// The stored states of `keys` ([`SELECT_DOCS_IN`], in statements of at most
/// [`ROWS_PER_STMT`] keys): `f(key, state)` for each key with a row.
fn stored_states(
    sql: &SqlStorage,
    sid: i64,
    keys: &[&DocKey],
    mut f: impl FnMut(&DocKey, StateColumn<'_>) -> Result<()>,
) -> Result<()> {
    let mut rows = Rows::default();
    for k in keys {
        rows.push(&[], |_, _| (&k.collection, &k.id))?;
    }
    let mut first = 0;
    for (text, _, n) in rows.finish() {
        let chunk = keys.get(first..first + n).unwrap_or_default();
        first += n;
        for row in exec(
            sql,
            SELECT_DOCS_IN,
            vec![Value::Integer(sid), Value::String(text)],
        )? {
            let i = integer(&row, 0, "json_each.key")?;
            let key = usize::try_from(i)
                .ok()
                .and_then(|i| chunk.get(i))
                .ok_or_else(|| corrupt("json_each.key", format!("no key at {i}")))?;
            let what = format!("docs.state of {}/{}", key.collection, key.id);
            f(key, state_column(&row, 1, &what)?)?;
        }
    }
    Ok(())
}

/// What the object read ahead of the engine for the round in progress, shared by the
/// engine's [`DoDocs`] and the host's writes. A push's documents are read in one statement
/// before the engine applies it ([`Ahead::read`]): the engine then takes each state from
/// here instead of reading it alone, and the write that follows knows the dots each row
/// held. Kept current by [`write`] (a later batch of the same round sees the rows an earlier
/// one wrote) and emptied after every round ([`Ahead::clear`]): it holds one push at most.
#[derive(Clone, Default)]
pub struct Ahead(SendWrapper<std::rc::Rc<std::cell::RefCell<AheadRows>>>);

#[derive(Default)]
struct AheadRows {
    /// States read for the engine, each taken by its first [`DocStore::load`] (`None`: no row).
    states: BTreeMap<DocKey, Option<DocState>>,
    /// The dots of each row as stored now (empty: no row).
    dots: BTreeMap<DocKey, Vec<Dot>>,
}

impl Ahead {
    fn new() -> Self {
        Ahead(SendWrapper::new(Default::default()))
    }

    /// Reads the stored states of `keys` in one statement (a few for a large push).
    pub fn read<'a>(
        &self,
        storage: &Storage,
        sid: i64,
        keys: impl IntoIterator<Item = &'a DocKey>,
    ) -> Result<()> {
        let mut rows = self.0.borrow_mut();
        let keys: Vec<&DocKey> = keys
            .into_iter()
            // `_config` is in memory: the engine never reads it from the store.
            .filter(|k| k.collection != CONFIG_COLLECTION && !rows.dots.contains_key(*k))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        for k in &keys {
            rows.states.insert((*k).clone(), None);
            rows.dots.insert((*k).clone(), Vec::new());
        }
        stored_states(&storage.sql(), sid, &keys, |key, column| {
            let state = column
                .decode()
                .map_err(|e| corrupt(format!("docs.state of {}/{}", key.collection, key.id), e))?;
            rows.dots
                .insert(key.clone(), state.siblings.iter().map(|s| s.dot).collect());
            rows.states.insert(key.clone(), Some(state));
            Ok(())
        })
    }

    /// Forgets everything read: called after every round.
    pub fn clear(&self) {
        let mut rows = self.0.borrow_mut();
        rows.states.clear();
        rows.dots.clear();
    }

    fn take(&self, key: &DocKey) -> Option<Option<DocState>> {
        self.0.borrow_mut().states.remove(key)
    }
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
pub fn load(storage: &Storage, cfg: EngineConfig) -> Result<Loaded> {
    let sql = storage.sql();
    let sid = space_id(&sql, &cfg.space)?;
    let space = Value::String(cfg.space.clone());
    let ahead = Ahead::new();
    let docs = DoDocs {
        sql: SendWrapper::new(storage.sql()),
        sid,
        ahead: ahead.clone(),
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
    Ok(Loaded { engine, sid, ahead })
}

/// A space's engine restored by [`load`], with what the host needs to write for it.
pub struct Loaded {
    pub engine: Engine,
    /// The space's integer id (`spaces.sid`).
    pub sid: i64,
    /// The rows read ahead of the engine, shared with its [`DoDocs`].
    pub ahead: Ahead,
}

/// The space's documents in this object's storage: the [`DocStore`] its engine reads its
/// durable layer from, with the statements the native host runs on its SQLite.
pub struct DoDocs {
    /// A Durable Object runs on one thread; the core asks a store to be `Send` for the
    /// native host's sake, which a JavaScript handle cannot say of itself.
    sql: SendWrapper<SqlStorage>,
    /// The space's integer id (`spaces.sid`).
    sid: i64,
    /// States the host read ahead of the engine for the round in progress.
    ahead: Ahead,
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

    /// The bindings of `SELECT_DOC_IDS` and `SELECT_DOC_STATES`.
    fn page_args(&self, collection: &str, after: Option<&str>, n: usize) -> Vec<Value> {
        vec![
            self.sp(),
            Value::String(collection.to_owned()),
            Value::String(after.unwrap_or("").to_owned()),
            limit(n),
        ]
    }

    /// The bindings of `SELECT_DOTS` and `SELECT_DOT_STATES`.
    fn dot_args(&self, replica: ReplicaId, from: u64, upto: u64, n: usize) -> Vec<Value> {
        vec![
            self.sp(),
            Value::String(replica.to_string()),
            int(from),
            int(upto),
            limit(n),
        ]
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
    /// A document is read back in one statement: cache what is read, not every state a
    /// catch-up writes.
    fn cache_new_writes(&self) -> bool {
        false
    }

    fn load(&self, key: &DocKey) -> bridge_core::Result<Option<DocState>> {
        if let Some(state) = self.ahead.take(key) {
            return Ok(state);
        }
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
        let rows = self.rows(schema::SELECT_DOC_IDS, self.page_args(collection, after, n))?;
        rows.iter()
            .map(|r| {
                Ok(DocKey::new(
                    collection,
                    text(r, 0, "docs.id").map_err(read_err)?,
                ))
            })
            .collect()
    }

    fn key_states(
        &self,
        collection: &str,
        after: Option<&str>,
        n: usize,
    ) -> bridge_core::Result<Vec<(DocKey, Option<DocState>)>> {
        let rows = self.rows(
            schema::SELECT_DOC_STATES,
            self.page_args(collection, after, n),
        )?;
        rows.iter()
            .map(|r| {
                let key = DocKey::new(collection, text(r, 0, "docs.id").map_err(read_err)?);
                let what = format!("docs.state of {}/{}", key.collection, key.id);
                let state = state_of(r, 1, what).map_err(read_err)?;
                Ok((key, Some(state)))
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
        let rows = self.rows(schema::SELECT_DOTS, self.dot_args(replica, from, upto, n))?;
        rows.iter().map(|r| dot_of(r)).collect()
    }

    fn dot_states(
        &self,
        replica: ReplicaId,
        from: u64,
        upto: u64,
        n: usize,
    ) -> bridge_core::Result<Vec<(u64, DocKey, Option<DocState>)>> {
        let rows = self.rows(
            schema::SELECT_DOT_STATES,
            self.dot_args(replica, from, upto, n),
        )?;
        rows.iter()
            .map(|r| {
                let (counter, key) = dot_of(r)?;
                // NULL: a dot without its document row (a `LEFT JOIN`).
                let state = match r.get(3) {
                    None | Some(Value::Null) => None,
                    Some(_) => {
                        let what = format!("docs.state of {}/{}", key.collection, key.id);
                        Some(state_of(r, 3, what).map_err(read_err)?)
                    }
                };
                Ok((counter, key, state))
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

    fn dead(
        &self,
        after: Option<&DocKey>,
        n: usize,
    ) -> bridge_core::Result<Vec<(DocKey, DocState)>> {
        let rows = self.rows(schema::SELECT_DEAD, dead_args(self.sid, after, n))?;
        rows.iter().map(|r| dead_of(r)).collect()
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

/// Stores `batch` of `space` (space id `sid`) atomically. The dots of the rows it replaces
/// or removes come from `ahead`, or for keys not read ahead from one read of all of them;
/// `ahead` then holds the rows as written.
pub fn write(
    storage: &Storage,
    space: &str,
    sid: i64,
    ahead: &Ahead,
    batch: &PersistBatch,
) -> Result<()> {
    let plan = {
        let mut rows = ahead.0.borrow_mut();
        let missing: Vec<&DocKey> = batch
            .docs
            .iter()
            .map(|(k, _)| k)
            .chain(&batch.collected)
            .filter(|k| !rows.dots.contains_key(*k))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for k in &missing {
            rows.dots.insert((*k).clone(), Vec::new());
        }
        stored_states(&storage.sql(), sid, &missing, |key, column| {
            let dots = column
                .dots()
                .map_err(|e| corrupt(format!("docs.state of {}/{}", key.collection, key.id), e))?;
            rows.dots.insert(key.clone(), dots);
            Ok(())
        })?;
        plan_batch(space, sid, batch, &rows.dots)?
    };
    run(storage, plan)?;
    let mut rows = ahead.0.borrow_mut();
    // Collected first (no row now, and a state read ahead is stale), so that a key also
    // written, which the core never does, holds its new state as in the store.
    for key in &batch.collected {
        rows.states.remove(key);
        rows.dots.insert(key.clone(), Vec::new());
    }
    for (key, state) in &batch.docs {
        // A state read ahead and not yet taken is stale now: the engine holds the new one.
        rows.states.remove(key);
        rows.dots
            .insert(key.clone(), state.siblings.iter().map(|s| s.dot).collect());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::{Tier, WriteOp};

    /// An engine of replica 5 with one write per key in `keys` of collection `c` (value
    /// `{"n": i}`) and a message on `chat`, and the batch it cuts.
    fn batch_of(keys: &[&str]) -> PersistBatch {
        let ops = keys
            .iter()
            .enumerate()
            .map(|(i, id)| (DocKey::new("c", *id), put(i)))
            .collect();
        batch_with(ops)
    }

    /// `{"n": n}` as a write.
    fn put(n: usize) -> WriteOp {
        let Some(doc) = serde_json::json!({ "n": n }).as_object().cloned() else {
            panic!("object")
        };
        WriteOp::Put(doc)
    }

    /// An engine of replica 5 with `ops` done in order and a message on `chat`, and the
    /// batch it cuts.
    fn batch_with(ops: Vec<(DocKey, WriteOp)>) -> PersistBatch {
        let mut cfg = EngineConfig::new(ReplicaId(5), Tier::Cloud, "s");
        // Only these documents in the batch (no default-policy seed of a new space).
        cfg.seed_default_policy = false;
        let mut e = Engine::new(cfg);
        for (key, op) in ops {
            bridge_core::testing::write(&mut e, 10, key, op).expect("write");
        }
        bridge_core::testing::publish(&mut e, 11, "chat", serde_json::json!("hi"))
            .expect("publish");
        let Some(batch) = e.poll_persist() else {
            panic!("a batch")
        };
        batch
    }

    #[test]
    fn a_batch_plans_docs_messages_trim_then_meta() {
        let batch = batch_of(&["x"]);
        // The stored state of `c/x` had a dot the new state no longer holds.
        let old = Dot::new(ReplicaId(9), 4);
        let stored = BTreeMap::from([(DocKey::new("c", "x"), vec![old])]);
        let plan = plan_batch("s", 1, &batch, &stored).expect("plan");
        let sqls: Vec<&str> = plan.iter().map(|s| s.sql).collect();
        assert_eq!(
            sqls,
            [
                schema::ENSURE_REPLICA,
                DELETE_DOTS_IN,
                UPSERT_DOCS_IN,
                INSERT_DOTS_IN,
                schema::UPSERT_MESSAGE,
                schema::TRIM_CHANNEL,
                schema::UPSERT_META
            ]
        );
        assert_eq!(
            plan[1].args[1],
            Value::String(format!("[[\"{}\",4]]", ReplicaId(9)))
        );
        let Value::Blob(state) = &plan[2].args[2] else {
            panic!("the states are a BLOB: {:?}", plan[2].args[2])
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
        let stored = BTreeMap::from([(DocKey::new("c", "x"), vec![kept])]);
        let plan = plan_batch("s", 1, &batch, &stored).expect("plan");
        assert!(!plan
            .iter()
            .any(|s| s.sql == DELETE_DOTS_IN || s.sql == INSERT_DOTS_IN));
    }

    #[test]
    fn a_collected_document_loses_its_row_and_every_stored_dot() {
        let mut batch = batch_of(&["x"]);
        let gone = DocKey::new("c", "gone");
        batch.collected = vec![gone.clone()];
        let stored = BTreeMap::from([(
            gone.clone(),
            vec![Dot::new(ReplicaId(9), 4), Dot::new(ReplicaId(9), 6)],
        )]);
        let plan = plan_batch("s", 1, &batch, &stored).expect("plan");
        let sqls: Vec<&str> = plan.iter().map(|s| s.sql).collect();
        assert_eq!(
            sqls,
            [
                schema::ENSURE_REPLICA,
                DELETE_DOTS_IN,
                DELETE_DOCS_IN,
                UPSERT_DOCS_IN,
                INSERT_DOTS_IN,
                schema::UPSERT_MESSAGE,
                schema::TRIM_CHANNEL,
                schema::UPSERT_META
            ]
        );
        let r9 = ReplicaId(9);
        assert_eq!(
            plan[1].args[1],
            Value::String(format!("[[\"{r9}\",4],[\"{r9}\",6]]"))
        );
        assert_eq!(plan[2].args[1], Value::String("[[\"c\",\"gone\"]]".into()));
        for s in &plan {
            let highest = (1..=9)
                .filter(|n| s.sql.contains(&format!("?{n}")))
                .max()
                .unwrap_or(0);
            assert_eq!(s.args.len(), highest, "{}", s.sql);
        }
        // A key both written and collected (the core never cuts one) keeps its new state.
        batch.collected = vec![DocKey::new("c", "x")];
        let plan = plan_batch("s", 1, &batch, &BTreeMap::new()).expect("plan");
        assert!(plan.iter().any(|s| s.sql == UPSERT_DOCS_IN));
        assert!(!plan.iter().any(|s| s.sql == DELETE_DOCS_IN));
    }

    #[test]
    fn a_large_batch_is_cut_into_statements_of_bounded_size() {
        let ids: Vec<String> = (0..ROWS_PER_STMT + 3).map(|i| format!("d{i:05}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut batch = batch_of(&refs);
        // As many collected as written (other keys): their rows go in statements as bounded.
        batch.collected = ids.iter().map(|i| DocKey::new("k", i.as_str())).collect();
        let plan = plan_batch("s", 1, &batch, &BTreeMap::new()).expect("plan");
        let removed: Vec<&Stmt> = plan.iter().filter(|s| s.sql == DELETE_DOCS_IN).collect();
        assert_eq!(removed.len(), 2);
        for s in removed {
            let Value::String(rows) = &s.args[1] else {
                panic!("rows")
            };
            let rows: Vec<serde_json::Value> = serde_json::from_str(rows).expect("json");
            assert!(rows.len() <= ROWS_PER_STMT);
        }
        let docs: Vec<&Stmt> = plan.iter().filter(|s| s.sql == UPSERT_DOCS_IN).collect();
        assert_eq!(docs.len(), 2);
        for s in docs {
            let Value::String(rows) = &s.args[1] else {
                panic!("rows")
            };
            let rows: Vec<serde_json::Value> = serde_json::from_str(rows).expect("json");
            assert!(rows.len() <= ROWS_PER_STMT);
            assert_eq!(rows[0][2], serde_json::json!(1), "offsets start at 1");
        }
    }

    /// The batched statements on SQLite itself (rusqlite's bundled build; the Durable
    /// Object's is the same engine): they write the rows the per-document statements of
    /// `schema` write, and read them back by key with index seeks.
    #[cfg(not(target_arch = "wasm32"))]
    mod on_sqlite {
        use super::*;
        use rusqlite::types::Value as Sql;

        fn db() -> rusqlite::Connection {
            let c = rusqlite::Connection::open_in_memory().expect("open");
            c.execute_batch(schema::CREATE_MIGRATIONS_TABLE)
                .expect("migrations table");
            for m in schema::MIGRATIONS {
                c.execute_batch(m).expect("migration");
            }
            c.execute(
                schema::INSERT_SPACE,
                rusqlite::params!["s", ReplicaId(1).to_string(), 0],
            )
            .expect("space");
            c
        }

        fn sql(v: &Value) -> Sql {
            match v {
                Value::Null => Sql::Null,
                Value::Boolean(b) => Sql::Integer(i64::from(*b)),
                Value::Integer(n) => Sql::Integer(*n),
                Value::Float(f) => Sql::Real(*f),
                Value::String(s) => Sql::Text(s.clone()),
                Value::Blob(b) => Sql::Blob(b.clone()),
            }
        }

        fn run(c: &rusqlite::Connection, plan: &[Stmt]) {
            for s in plan {
                let args: Vec<Sql> = s.args.iter().map(sql).collect();
                c.execute(s.sql, rusqlite::params_from_iter(args))
                    .unwrap_or_else(|e| panic!("{e}: {}", s.sql));
            }
        }

        fn dots(c: &rusqlite::Connection) -> Vec<(i64, i64, String)> {
            let mut st = c
                .prepare("SELECT rid, counter, id FROM dots ORDER BY rid, counter")
                .expect("prepare");
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .expect("query")
                .collect::<std::result::Result<_, _>>()
                .expect("rows")
        }

        fn states_in(c: &rusqlite::Connection, keys: &[DocKey]) -> Vec<(i64, Vec<u8>)> {
            let rows: Vec<serde_json::Value> = keys
                .iter()
                .map(|k| serde_json::json!([k.collection, k.id]))
                .collect();
            let mut st = c.prepare(SELECT_DOCS_IN).expect("prepare");
            let mut out: Vec<(i64, Vec<u8>)> = st
                .query_map(
                    rusqlite::params![1, serde_json::Value::Array(rows).to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("query")
                .collect::<std::result::Result<_, _>>()
                .expect("rows");
            out.sort();
            out
        }

        #[test]
        fn the_batched_statements_write_what_the_single_ones_do() {
            let c = db();
            let batch = batch_of(&["a", "b", "it's \"quoted\" ✓"]);
            run(
                &c,
                &plan_batch("s", 1, &batch, &BTreeMap::new()).expect("plan"),
            );
            let keys: Vec<DocKey> = batch.docs.iter().map(|(k, _)| k.clone()).collect();
            let found = states_in(
                &c,
                &[keys[2].clone(), DocKey::new("c", "none"), keys[0].clone()],
            );
            assert_eq!(
                found,
                [
                    (0, encode_state(&batch.docs[2].1)),
                    (2, encode_state(&batch.docs[0].1))
                ]
            );
            let counters: Vec<(i64, i64, String)> = batch
                .docs
                .iter()
                .map(|(k, s)| (1, s.siblings[0].dot.counter as i64, k.id.clone()))
                .collect();
            assert_eq!(
                dots(&c),
                counters,
                "one live dot per document, replica 5 is rid 1"
            );
            let siblings: i64 = c
                .query_row("SELECT SUM(siblings) FROM docs", [], |r| r.get(0))
                .expect("sum");
            assert_eq!(siblings, 3);
            assert_eq!(kept_count(&c), 3);

            // The next states of `a` and `b` replace their dots: the old ones are dropped.
            let next = batch_of(&["a", "b"]);
            let moved = BTreeMap::from([
                (keys[0].clone(), vec![Dot::new(ReplicaId(5), 100)]),
                (keys[1].clone(), vec![Dot::new(ReplicaId(5), 101)]),
            ]);
            // Stored dots as if `a` and `b` held dots 100 and 101 (the same replica numbers).
            c.execute("DELETE FROM dots WHERE id IN ('a', 'b')", [])
                .expect("delete");
            c.execute(
                "INSERT INTO dots VALUES (1, 1, 100, 'c', 'a'), (1, 1, 101, 'c', 'b')",
                [],
            )
            .expect("insert");
            run(&c, &plan_batch("s", 1, &next, &moved).expect("plan"));
            let mut want: Vec<(i64, i64, String)> = next
                .docs
                .iter()
                .map(|(k, s)| (1, s.siblings[0].dot.counter as i64, k.id.clone()))
                .collect();
            want.push(counters[2].clone());
            want.sort();
            assert_eq!(dots(&c), want);
            let found = states_in(&c, &keys[..2]);
            assert_eq!(
                found,
                [
                    (0, encode_state(&next.docs[0].1)),
                    (1, encode_state(&next.docs[1].1))
                ]
            );
            assert_eq!(kept_count(&c), 3, "rows replaced are not counted again");
        }

        /// The space's document count as the triggers keep it (`schema::COUNT_SPACE_DOCS`),
        /// checked against the rows themselves.
        fn kept_count(c: &rusqlite::Connection) -> i64 {
            let kept: i64 = c
                .query_row(schema::COUNT_SPACE_DOCS, [1], |r| r.get(0))
                .expect("kept count");
            let rows: i64 = c
                .query_row("SELECT COUNT(*) FROM docs WHERE sid = 1", [], |r| r.get(0))
                .expect("rows");
            assert_eq!(kept, rows, "the kept count is the table's");
            kept
        }

        /// Runs `q` with `args` and gives its rows as the Durable Object's SQL gives them.
        fn query(c: &rusqlite::Connection, q: &str, args: &[Value]) -> Vec<Vec<Value>> {
            let mut st = c.prepare(q).expect("prepare");
            let n = st.column_count();
            let args: Vec<Sql> = args.iter().map(sql).collect();
            st.query_map(rusqlite::params_from_iter(args), |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get::<_, Sql>(i)? {
                            Sql::Null => Value::Null,
                            Sql::Integer(n) => Value::Integer(n),
                            Sql::Real(f) => Value::Float(f),
                            Sql::Text(s) => Value::String(s),
                            Sql::Blob(b) => Value::Blob(b),
                        })
                    })
                    .collect()
            })
            .expect("query")
            .collect::<std::result::Result<_, _>>()
            .expect("rows")
        }

        /// Every page of [`DocStore::dead`]'s statement, `n` at a time, as the engine asks
        /// for them (each after the last key of the one before), decoded as the object does.
        fn dead_pages(c: &rusqlite::Connection, n: usize) -> Vec<Vec<(DocKey, DocState)>> {
            let mut pages = Vec::new();
            let mut after = None;
            loop {
                let rows = query(c, schema::SELECT_DEAD, &dead_args(1, after.as_ref(), n));
                let page: Vec<(DocKey, DocState)> = rows
                    .iter()
                    .map(|r| dead_of(r).expect("a dead row"))
                    .collect();
                after = page.last().map(|(k, _)| k.clone());
                let full = page.len() == n;
                pages.push(page);
                if !full {
                    return pages;
                }
            }
        }

        fn doc_rows(c: &rusqlite::Connection) -> Vec<(String, String, i64)> {
            let mut st = c
                .prepare("SELECT collection, id, dead FROM docs ORDER BY collection, id")
                .expect("prepare");
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .expect("query")
                .collect::<std::result::Result<_, _>>()
                .expect("rows")
        }

        fn dot_keys(c: &rusqlite::Connection) -> Vec<(String, String)> {
            let mut st = c
                .prepare("SELECT DISTINCT collection, id FROM dots ORDER BY collection, id")
                .expect("prepare");
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .collect::<std::result::Result<_, _>>()
                .expect("rows")
        }

        #[test]
        fn dead_is_written_listed_in_key_order_and_collected() {
            let c = db();
            let key = |c: &str, id: &str| DocKey::new(c, id);
            let mut batch = batch_with(vec![
                (key("c", "a"), put(0)),
                (key("c", "b"), put(1)),
                (key("c", "b"), WriteOp::Delete),
                (key("c", "d"), WriteOp::Delete),
                (key("c", "m"), put(2)),
                (key("k", "a"), WriteOp::Delete),
            ]);
            // `c/m` has a tombstone of replica 7 beside its live sibling: not dead.
            let Some(m) = batch.docs.iter_mut().find(|(k, _)| k.id == "m") else {
                panic!("c/m")
            };
            let mut state = DocState::clone(&m.1);
            let live = state.siblings[0].clone();
            state.siblings.push(bridge_core::Sibling {
                dot: Dot::new(ReplicaId(7), 1),
                body: None,
                ..live
            });
            state.siblings.sort_by_key(|s| s.dot);
            state.context.raise(ReplicaId(7), 1);
            m.1 = std::sync::Arc::new(state);
            run(
                &c,
                &plan_batch("s", 1, &batch, &BTreeMap::new()).expect("plan"),
            );
            let row = |c: &str, id: &str, dead| (c.to_owned(), id.to_owned(), dead);
            assert_eq!(
                doc_rows(&c),
                [
                    row("c", "a", 0),
                    row("c", "b", 1),
                    row("c", "d", 1),
                    row("c", "m", 0),
                    row("k", "a", 1)
                ]
            );
            assert_eq!(kept_count(&c), 5);

            let state_of = |k: &DocKey| {
                let Some((_, s)) = batch.docs.iter().find(|(d, _)| d == k) else {
                    panic!("{k:?}")
                };
                DocState::clone(s)
            };
            let pages = dead_pages(&c, 2);
            let listed: Vec<Vec<DocKey>> = pages
                .iter()
                .map(|p| p.iter().map(|(k, _)| k.clone()).collect())
                .collect();
            assert_eq!(
                listed,
                [vec![key("c", "b"), key("c", "d")], vec![key("k", "a")]]
            );
            for (k, s) in pages.iter().flatten() {
                assert_eq!(s, &state_of(k), "{k:?}");
                assert!(s.is_dead());
            }

            // Collecting `c/b` and `k/a`: their dots are read from their stored states, as
            // `write` does, and go with their rows; nothing else is touched.
            let collected = vec![key("c", "b"), key("k", "a")];
            let stored: BTreeMap<DocKey, Vec<Dot>> = states_in(&c, &collected)
                .into_iter()
                .map(|(i, blob)| {
                    let Ok(state) = bridge_core::codec::decode_state(&blob) else {
                        panic!("a stored state")
                    };
                    let dots = state.siblings.iter().map(|s| s.dot).collect();
                    (collected[i as usize].clone(), dots)
                })
                .collect();
            assert_eq!(stored.len(), 2);
            let mut next = batch.clone();
            next.docs.clear();
            next.messages.clear();
            next.retain.clear();
            next.collected = collected;
            run(&c, &plan_batch("s", 1, &next, &stored).expect("plan"));
            assert_eq!(
                doc_rows(&c),
                [row("c", "a", 0), row("c", "d", 1), row("c", "m", 0)]
            );
            assert_eq!(kept_count(&c), 3, "collected rows leave the count");
            let held = |c: &str, id: &str| (c.to_owned(), id.to_owned());
            assert_eq!(
                dot_keys(&c),
                [held("c", "a"), held("c", "d"), held("c", "m")]
            );
            let listed: Vec<DocKey> = dead_pages(&c, 2)
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(listed, [key("c", "d")]);

            // A row written again takes its new state's `dead`, either way: `c/a` becomes a
            // tombstone (`c/b`'s state), `c/d` live again (`c/a`'s first state).
            let dots_of = |s: &DocState| s.siblings.iter().map(|s| s.dot).collect::<Vec<_>>();
            let (a, b) = (state_of(&key("c", "a")), state_of(&key("c", "b")));
            let d = state_of(&key("c", "d"));
            let stored =
                BTreeMap::from([(key("c", "a"), dots_of(&a)), (key("c", "d"), dots_of(&d))]);
            next.collected.clear();
            next.docs = vec![
                (key("c", "a"), std::sync::Arc::new(b)),
                (key("c", "d"), std::sync::Arc::new(a)),
            ];
            run(&c, &plan_batch("s", 1, &next, &stored).expect("plan"));
            assert_eq!(
                doc_rows(&c),
                [row("c", "a", 1), row("c", "d", 0), row("c", "m", 0)]
            );
            let listed: Vec<DocKey> = dead_pages(&c, 2)
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(listed, [key("c", "a")]);
        }

        #[test]
        fn reads_and_deletes_seek_by_key() {
            let c = db();
            for (q, table) in [
                (SELECT_DOCS_IN, "d"),
                (DELETE_DOTS_IN, "dots"),
                (DELETE_DOCS_IN, "docs"),
            ] {
                let mut st = c
                    .prepare(&format!("EXPLAIN QUERY PLAN {q}"))
                    .expect("prepare");
                let plan: Vec<String> = st
                    .query_map(rusqlite::params![1, "[]"], |r| r.get(3))
                    .expect("query")
                    .collect::<std::result::Result<_, _>>()
                    .expect("rows");
                assert!(
                    plan.iter()
                        .any(|l| l.starts_with(&format!("SEARCH {table} "))),
                    "{q}: {plan:?}"
                );
                assert!(
                    !plan.iter().any(|l| l.starts_with(&format!("SCAN {table}"))),
                    "{q}: {plan:?}"
                );
            }
        }
    }
}
