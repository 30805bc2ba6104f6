//! The JavaScript handle: `open()` and the verbs of [`Bridge`], the package's API surface.
//!
//! One [`Engine`] per handle, behind `Rc<RefCell<_>>` (the browser is single-threaded). Every
//! input — a local write, a frame from the socket, the socket opening or closing — is handed
//! to the engine at once, then the **pump** runs (as a microtask, so a burst of inputs in one
//! task shares one transaction): it cuts the staged changes into batches, writes them to
//! IndexedDB in one transaction, reports them persisted, and drains what the engine wants
//! done — frames to send, acks to release as resolved promises, changes and messages for
//! the callbacks. A borrow is never held across an `await` or while JavaScript runs, so a
//! callback may call back into the handle.
//!
//! The link is a plain `WebSocket` (binary frames, peer session). It is redialled with
//! `bridge_core::backoff::Backoff` and jitter from `crypto.getRandomValues`, immediately on
//! the `online` event, and dropped on `offline`; on every (re)connect the engine's `hello`
//! carries our vector, so only what is missing travels — writes made offline included.
//!
//! Modules, by concern:
//! - `ts`: the TypeScript declarations of the package's `.d.ts`;
//! - `convert`: arguments and errors across the JavaScript boundary;
//! - `state`: [`Inner`], the state of one handle, and the status it derives;
//! - `drain`: the host loop — persist, report persisted, transmit and call back;
//! - `link`: the WebSocket link, backoff, `online`/`offline`, heartbeat;
//! - `channel`: the `BroadcastChannel` among tabs and its inbox;
//! - `leader` / `follower`: the two roles of a tab sharing the store ([`crate::tabs`]).

mod channel;
mod convert;
mod drain;
mod follower;
mod leader;
mod link;
mod state;
mod ts;

use self::channel::{join_tabs, tab_channel_supported};
use self::convert::{
    coded, core_err, describe_value, js_err, name_arg, object_from_js, opt_name_arg, to_js,
    value_from_js,
};
use self::drain::schedule;
use self::drain::{with_reads, ReadFn};
use self::leader::promote;
use self::link::{dial, listen_network};
use self::state::{Inner, Input, Pending, Shared, Sub, SubKind, Waiter};
use crate::js;
use crate::scratch::Prefetched;
use crate::status::CloudProgress;
use crate::store::{Damaged, IdbStore, Loaded};
use crate::tabs;
use crate::tabs::message::TabMsg;
use bridge_core::backoff::Backoff;
use bridge_core::{check_name, DocKey, Engine, EngineConfig, Error, Frame, Policy, Tier};
use js_sys::{Function, Promise};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// `open()`'s options (`OpenOptions` in the typings).
struct OpenOptions {
    url: Option<String>,
    space: String,
    token: Option<String>,
    name: Option<String>,
    db: Option<String>,
    heartbeat_ms: Option<u32>,
    cache_bytes: Option<usize>,
    collections: Option<Vec<String>>,
}

impl OpenOptions {
    /// Reads the options object field by field: `undefined` and `null` are absent, other
    /// fields are ignored, and a field of the wrong type is an error naming it.
    fn from_js(v: &JsValue) -> Result<Self, String> {
        if !v.is_object() {
            return Err("expected an object with `space`".into());
        }
        let get = |k: &str| js_sys::Reflect::get(v, &k.into()).unwrap_or(JsValue::UNDEFINED);
        let absent = |x: &JsValue| x.is_undefined() || x.is_null();
        let text = |k: &str| -> Result<Option<String>, String> {
            let x = get(k);
            if absent(&x) {
                return Ok(None);
            }
            x.as_string()
                .map(Some)
                .ok_or_else(|| format!("`{k}` must be a string"))
        };
        let whole = |k: &str, what: &str| -> Result<Option<u32>, String> {
            let x = get(k);
            if absent(&x) {
                return Ok(None);
            }
            match x.as_f64() {
                Some(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) => {
                    Ok(Some(n as u32))
                }
                _ => Err(format!("`{k}` must be a whole number of {what}")),
            }
        };
        let collections = {
            let x = get("collections");
            if absent(&x) {
                None
            } else {
                let arr = x
                    .dyn_ref::<js_sys::Array>()
                    .ok_or("`collections` must be an array of collection patterns")?;
                let list: Vec<String> = arr
                    .iter()
                    .map(|p| p.as_string().ok_or("`collections` must hold strings"))
                    .collect::<Result<_, _>>()?;
                if list.is_empty() {
                    return Err("`collections` must name at least one collection pattern".into());
                }
                bridge_core::auth::check_patterns(list.iter().map(String::as_str))
                    .map_err(|e| format!("`collections`: {e}"))?;
                Some(list)
            }
        };
        let heartbeat_ms = whole("heartbeatMs", "milliseconds")?;
        let cache_bytes = whole("cacheBytes", "bytes")?.map(|n| n as usize);
        Ok(OpenOptions {
            url: text("url")?,
            space: text("space")?.ok_or("missing field `space`")?,
            token: text("token")?,
            name: text("name")?,
            db: text("db")?,
            heartbeat_ms,
            cache_bytes,
            collections,
        })
    }
}

/// A ping this often; a link silent for three intervals is taken for dead.
const HEARTBEAT_MS: u32 = 15_000;

/// The default budget of the engine's cache of document states (`open({ cacheBytes })`).
const CACHE_BYTES: usize = 32 << 20;

/// An engine whose durable layer is the IndexedDB store, read through a fresh scratch.
pub(super) fn new_engine(cfg: EngineConfig) -> (Engine, Prefetched) {
    let scratch = Prefetched::default();
    let engine = Engine::with_store(cfg, Box::new(scratch.clone()));
    (engine, scratch)
}

/// Opens the store of `options.space` in this browser (IndexedDB), restores it, and — when
/// `options.url` is given — keeps a link to that host, resuming by vector on every
/// reconnect. Fails if another tab already has the same store open.
#[wasm_bindgen]
pub async fn open(
    #[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue,
) -> Result<Bridge, JsValue> {
    let opts = OpenOptions::from_js(&options)
        .map_err(|e| coded("bad_request", &format!("open(): bad options: {e}")))?;
    check_name("space", &opts.space, false).map_err(|e| core_err(&e))?;
    let db_name = opts
        .db
        .clone()
        .unwrap_or_else(|| format!("sacred-bridge/{}", opts.space));
    let lock_name = format!("sacred-bridge:{db_name}");
    let (release_lock, follower) = match js::lock(&lock_name, false).await? {
        js::Lock::Held(release) => (Some(release), false),
        js::Lock::Unsupported => (None, false),
        js::Lock::Busy if tab_channel_supported() => (None, true),
        js::Lock::Busy => {
            return Err(coded(
                "busy",
                &format!(
                    "this store ({db_name}) is open in another tab or window of this browser, \
                 and tabs cannot coordinate here (no BroadcastChannel); close it there, \
                 or open a different `db` name"
                ),
            ))
        }
    };
    match open_store(&opts, &db_name, !follower).await {
        Ok((engine, scratch, store, loaded)) => {
            let cloud = loaded.cloud;
            let inner = Rc::new(RefCell::new(Inner {
                engine,
                scratch,
                reader: store.reader(),
                inputs: VecDeque::new(),
                damaged: Vec::new(),
                store: Some(store),
                url: opts.url.map(|u| socket_url(&u, &opts.space)),
                token: opts.token,
                name: opts.name.unwrap_or_default(),
                link: None,
                session: 0,
                dial: 0,
                next_dial: 1,
                handshake_done: false,
                backoff: Backoff::default(),
                timer: None,
                closed: false,
                next_call: 1,
                waiting: Pending::default(),
                replicating: Vec::new(),
                next_sub: 1,
                subs: Vec::new(),
                cloud: CloudProgress { acked: cloud.acked },
                cloud_at: cloud.at,
                cloud_dirty: false,
                peer: CloudProgress::default(),
                peer_tier: None,
                incoming: 0,
                pumping: false,
                unwritten: Vec::new(),
                error: damage_report(&loaded.damaged),
                last_status: None,
                release_lock,
                listeners: Vec::new(),
                tabs: None,
                follower,
                // Below 2^53: it crosses JavaScript as a number.
                tab_id: js::random_u64().unwrap_or_else(|_| js::now_ms()) >> 11,
                forwarded: Pending::default(),
                mirror_status: None,
                mirror_presence: None,
                inbox: VecDeque::new(),
                inbox_busy: false,
                followers: false,
                heartbeat_ms: opts.heartbeat_ms.unwrap_or(HEARTBEAT_MS).max(50),
                last_rx: 0,
                heartbeat: None,
            }));
            join_tabs(&inner, &db_name);
            if follower {
                let rc = inner.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    if let Ok(js::Lock::Held(release)) = js::lock(&lock_name, true).await {
                        promote(rc, release).await;
                    }
                });
            } else {
                listen_network(&inner);
                dial(&inner);
            }
            Ok(Bridge { inner })
        }
        Err(e) => {
            if let Some(release) = release_lock {
                let _ = release.call0(&JsValue::NULL);
            }
            Err(e)
        }
    }
}

async fn open_store(
    opts: &OpenOptions,
    db_name: &str,
    leader: bool,
) -> Result<(Engine, Prefetched, IdbStore, Loaded), JsValue> {
    let mut store = IdbStore::open(db_name).await.map_err(js_err)?;
    let (replica, stored) = store
        .replica_id(|| js::random_u64().ok(), opts.collections.as_deref())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Collections { .. } => coded("bad_request", &e.to_string()),
            e => js_err(e),
        })?;
    let mut cfg = EngineConfig::new(replica, Tier::Local, opts.space.clone());
    cfg.name = opts.name.clone().unwrap_or_default();
    // A browser joins spaces; the hosts that serve them seed their default policy.
    cfg.seed_default_policy = false;
    cfg.cache_bytes = opts.cache_bytes.unwrap_or(CACHE_BYTES);
    // What the store replicates now; other `collections` asked for start a change.
    cfg.collections = stored;
    let mut forget = Vec::new();
    if cfg.collections.is_some() {
        (cfg.upstream, forget) = store.upstream().await.map_err(js_err)?;
    }
    let (mut engine, scratch) = new_engine(cfg);
    let loaded = store.load(&mut engine).await.map_err(js_err)?;
    if !forget.is_empty() {
        // With the list it holds: a stability record that names it is what the store writes
        // the forget list back from once it is done.
        let collections = engine.config().collections.clone();
        engine.restore_stability(bridge_core::replica::Stability {
            forget,
            collections,
            ..Default::default()
        });
    }
    if let Some(wanted) = &opts.collections {
        engine
            .ask_collections(wanted.clone())
            .map_err(|e| core_err(&e))?;
    }
    if leader {
        store.set_aside(&loaded.damaged).await.map_err(js_err)?;
    }
    Ok((engine, scratch, store, loaded))
}

/// What `status().error` says after an open (or a read) that had to set records aside.
pub(super) fn damage_report(damaged: &[Damaged]) -> Option<String> {
    let first = damaged.first()?;
    Some(format!(
        "{} stored record(s) could not be read and were set aside (IndexedDB store `damaged`); \
         everything else is open. First: {} ({})",
        damaged.len(),
        first.store,
        first.why
    ))
}

/// `ws://host:port` → `ws://host:port/v1/spaces/{space}/ws`; a URL already naming a
/// WebSocket path is kept.
fn socket_url(url: &str, space: &str) -> String {
    if url.ends_with("/ws") {
        url.to_owned()
    } else {
        format!("{}/v1/spaces/{}/ws", url.trim_end_matches('/'), space)
    }
}

/// A handle on one space in this browser. Writes resolve once stored in IndexedDB; the
/// status says when the cloud has them too.
#[wasm_bindgen]
pub struct Bridge {
    inner: Shared,
}

impl Bridge {
    /// Runs the call `make` builds here, or forwards it to the leader tab; the promise
    /// resolves once stored. Every refusal — bad arguments, a limit, a closed handle — is a
    /// rejection with a `code`, never a synchronous throw.
    fn request(&self, make: impl FnOnce() -> Result<Frame, Error>) -> Promise {
        match make().and_then(|call| self.run(call)) {
            Ok(p) => p,
            Err(e) => Promise::reject(&core_err(&e)),
        }
    }

    fn run(&self, call: Frame) -> Result<Promise, Error> {
        let promise = {
            let mut guard = self.inner.borrow_mut();
            let i = &mut *guard;
            if i.closed {
                return Ok(Promise::reject(&coded(
                    "closed",
                    "this handle is closed; open() a new one",
                )));
            }
            if i.follower {
                // A check that needs a document this tab has not read is left to the leader,
                // which makes every check again.
                let checked = tabs::check(&call, i.engine.replica());
                let missed = !i.scratch.lock().take_misses().is_empty();
                if !missed {
                    checked?;
                }
            }
            if i.follower {
                let id = i.next_call;
                i.next_call += 1;
                let msg = TabMsg::Call {
                    tab: i.tab_id,
                    id,
                    frame: call.clone(),
                };
                let forwarded = &mut i.forwarded;
                let p = Promise::new(&mut |resolve, reject| {
                    forwarded.insert(id, (call.clone(), resolve, reject));
                });
                if let Some(t) = &i.tabs {
                    t.post(&msg);
                }
                return Ok(p);
            }
            // The pump reads the document first, then hands the call to the engine.
            let inputs = &mut i.inputs;
            Promise::new(&mut |resolve, reject| {
                inputs.push_back(Input::Call {
                    frame: call.clone(),
                    key: None,
                    waiter: Waiter::Local(resolve, reject),
                });
            })
        };
        schedule(&self.inner);
        Ok(promise)
    }

    /// A read of the engine as a promise: `read` runs until it misses nothing
    /// (`drain::with_reads`).
    fn read(&self, read: ReadFn) -> Promise {
        wasm_bindgen_futures::future_to_promise(with_reads(self.inner.clone(), read))
    }

    fn add_sub(&self, kind: SubKind, f: Function) -> u32 {
        let mut i = self.inner.borrow_mut();
        let id = i.next_sub;
        i.next_sub += 1;
        i.subs.push(Sub { id, kind, f });
        id
    }
}

#[wasm_bindgen]
impl Bridge {
    /// Replaces document `collection/id` with `value` (a plain object). Resolves with the
    /// write's dot once stored in IndexedDB; rejects (never throws) with a `BridgeError`:
    /// `bad_request` (names, not an object), `malformed` (nested deeper than 64 levels),
    /// `too_large` (over 256 KiB), `closed`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Dot>")]
    pub fn put(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Record<string, unknown>")] value: JsValue,
    ) -> Promise {
        self.request(|| {
            Ok(Frame::Put {
                req: None,
                collection: name_arg(&collection, "collection")?,
                id: name_arg(&id, "document id")?,
                value: Value::Object(object_from_js(&value)?),
            })
        })
    }

    /// Sets the top-level fields of `value` on the document (others are kept). Resolves and
    /// rejects as `put` (the size limit applies to the resulting document).
    #[wasm_bindgen(unchecked_return_type = "Promise<Dot>")]
    pub fn patch(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Record<string, unknown>")] value: JsValue,
    ) -> Promise {
        self.request(|| {
            Ok(Frame::Patch {
                req: None,
                collection: name_arg(&collection, "collection")?,
                id: name_arg(&id, "document id")?,
                value: Value::Object(object_from_js(&value)?),
            })
        })
    }

    /// Deletes the document (a tombstone that syncs like a write).
    #[wasm_bindgen(unchecked_return_type = "Promise<Dot>")]
    pub fn delete(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
    ) -> Promise {
        self.request(|| {
            Ok(Frame::Delete {
                req: None,
                collection: name_arg(&collection, "collection")?,
                id: name_arg(&id, "document id")?,
            })
        })
    }

    /// The document's visible value, `null` if absent or deleted. Resolves once read (from
    /// the cache, or IndexedDB).
    #[wasm_bindgen(unchecked_return_type = "Promise<Record<string, unknown> | null>")]
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
    ) -> Promise {
        let key = match (
            name_arg(&collection, "collection"),
            name_arg(&id, "document id"),
        ) {
            (Ok(c), Ok(id)) => DocKey::new(c, id),
            (Err(e), _) | (_, Err(e)) => return Promise::reject(&core_err(&e)),
        };
        self.read(Box::new(move |e| match e.replica().get(&key) {
            Ok(Some(v)) => to_js(&v),
            Ok(None) => Ok(JsValue::NULL),
            Err(err) => Err(core_err(&err)),
        }))
    }

    /// The visible documents of a collection in id order, after `after`, at most `limit`.
    #[wasm_bindgen(unchecked_return_type = "Promise<DocView[]>")]
    pub fn list(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | null")] after: JsValue,
        limit: Option<u32>,
    ) -> Promise {
        let (collection, after) = match (
            name_arg(&collection, "collection"),
            opt_name_arg(&after, "document id"),
        ) {
            (Ok(c), Ok(a)) => (c, a),
            (Err(e), _) | (_, Err(e)) => return Promise::reject(&core_err(&e)),
        };
        let limit = limit.map_or(usize::MAX, |l| l as usize);
        self.read(Box::new(move |e| {
            let docs = e.replica().list(&collection, after.as_deref(), limit);
            to_js(&docs.map_err(|err| core_err(&err))?)
        }))
    }

    /// Collections holding at least one document (deleted ones included), in name order.
    #[wasm_bindgen(unchecked_return_type = "Promise<string[]>")]
    pub fn collections(&self) -> Promise {
        self.read(Box::new(|e| {
            let mut out = e.replica().collections().map_err(|err| core_err(&err))?;
            out.retain(|c| !c.starts_with('_'));
            to_js(&out)
        }))
    }

    /// Calls `callback(doc)` for every durable change of `collection` (`"*"`: all).
    /// Returns an id for `unsubscribe`.
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "(doc: DocView) => void")] callback: Function,
    ) -> Result<u32, JsValue> {
        let collection = name_arg(&collection, "collection").map_err(|e| core_err(&e))?;
        Ok(self.add_sub(SubKind::Docs(collection), callback))
    }

    /// Removes a callback added by `subscribe`, `onMessage`, `onStatus`, `onConflict` or
    /// `onPresence`.
    pub fn unsubscribe(&self, id: u32) {
        self.inner.borrow_mut().subs.retain(|s| s.id != id);
    }

    /// Publishes `payload` on `channel`; resolves once stored here (it travels on from there).
    /// Rejects (never throws) with a `BridgeError`: `bad_request` (channel), `malformed`
    /// (nested deeper than 64 levels), `too_large` (payload over 256 KiB), `closed`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn send(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] channel: JsValue,
        payload: JsValue,
    ) -> Promise {
        self.request(|| {
            Ok(Frame::Send {
                req: None,
                channel: name_arg(&channel, "channel")?,
                payload: value_from_js(&payload, "the payload")?,
            })
        })
    }

    /// Calls `callback(message, offset)` for every message stored here (sent here or
    /// arrived), each once.
    #[wasm_bindgen(js_name = onMessage)]
    pub fn on_message(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(message: Message, offset: number) => void")]
        callback: Function,
    ) -> u32 {
        self.add_sub(SubKind::Messages, callback)
    }

    /// Retained messages of `channel` after offset `from` (replay).
    #[wasm_bindgen(unchecked_return_type = "{ offset: number; message: Message }[]")]
    pub fn messages(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] channel: JsValue,
        from: Option<f64>,
    ) -> Result<JsValue, JsValue> {
        let channel = name_arg(&channel, "channel").map_err(|e| core_err(&e))?;
        let i = self.inner.borrow();
        let from = from.unwrap_or(0.0) as u64;
        let out: Vec<Value> = i
            .engine
            .replica()
            .logs()
            .after(&channel, from)
            .map(|r| serde_json::json!({"offset": r.offset, "message": r.message}))
            .collect();
        to_js(&out)
    }

    /// Who is connected: here, and through the host, on the other side.
    #[wasm_bindgen(unchecked_return_type = "PresenceEntry[]")]
    pub fn presence(&self) -> Result<JsValue, JsValue> {
        let i = self.inner.borrow();
        match (&i.mirror_presence, i.follower) {
            (Some(p), true) => Ok(p.clone()),
            _ => to_js(&i.engine.presence()),
        }
    }

    #[wasm_bindgen(js_name = onPresence)]
    pub fn on_presence(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(entries: PresenceEntry[]) => void")]
        callback: Function,
    ) -> u32 {
        self.add_sub(SubKind::Presence, callback)
    }

    /// Open conflicts (collections with policy `manual`), of one collection or all.
    #[wasm_bindgen(unchecked_return_type = "Promise<Conflict[]>")]
    pub fn conflicts(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | null")] collection: JsValue,
    ) -> Promise {
        let collection = match opt_name_arg(&collection, "collection") {
            Ok(c) => c,
            Err(e) => return Promise::reject(&core_err(&e)),
        };
        self.read(Box::new(move |e| {
            let conflicts = e.replica().conflicts(collection.as_deref());
            to_js(&conflicts.map_err(|err| core_err(&err))?)
        }))
    }

    #[wasm_bindgen(js_name = onConflict)]
    pub fn on_conflict(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(conflict: Conflict) => void")] callback: Function,
    ) -> u32 {
        self.add_sub(SubKind::Conflicts, callback)
    }

    /// Resolves an open conflict with `value` (`null` deletes the document): a write that
    /// supersedes every side.
    #[wasm_bindgen(unchecked_return_type = "Promise<Dot>")]
    pub fn resolve(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Record<string, unknown> | null")] value: JsValue,
    ) -> Promise {
        self.request(|| {
            let value = if value.is_null() || value.is_undefined() {
                None
            } else {
                Some(Value::Object(object_from_js(&value)?))
            };
            Ok(Frame::Resolve {
                req: None,
                collection: name_arg(&collection, "collection")?,
                id: name_arg(&id, "document id")?,
                value,
            })
        })
    }

    /// Sets a collection's conflict policy for the whole space (replicated configuration).
    #[wasm_bindgen(js_name = setPolicy, unchecked_return_type = "Promise<Dot>")]
    pub fn set_policy(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Policy")] policy: JsValue,
    ) -> Promise {
        self.request(|| {
            let policy = policy
                .as_string()
                .ok_or_else(|| Error::BadPolicy(describe_value(&policy)))?;
            Ok(Frame::SetPolicy {
                req: None,
                collection: name_arg(&collection, "collection")?,
                policy: policy.parse::<Policy>()?,
            })
        })
    }

    /// The policy a collection currently has.
    #[wasm_bindgen(unchecked_return_type = "Policy")]
    pub fn policy(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
    ) -> Result<String, JsValue> {
        let collection = name_arg(&collection, "collection").map_err(|e| core_err(&e))?;
        Ok(self
            .inner
            .borrow()
            .engine
            .replica()
            .policy(&collection)
            .as_str()
            .to_owned())
    }

    /// Replicates `collections` (patterns: a name, or a prefix ending in `*`) from now on, in
    /// place of those the store holds: a store opened with `collections` widens or narrows
    /// what it holds. Resolves once the change is in effect and stored (every document of
    /// the added collections is here; those of dropped collections are then dropped, a
    /// page at a time); it waits for a connection. Rejects with `bad_request` (a store of
    /// the whole space, an empty list, a call in a tab that follows the one holding the
    /// store), `malformed` (a bad pattern), or when a later call replaces it before it
    /// went to the server. `open({ collections })` with another list starts the same change.
    #[wasm_bindgen(js_name = subscribeCollections, unchecked_return_type = "Promise<void>")]
    pub fn subscribe_collections(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string[]")] collections: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        let promise = Promise::new(&mut |resolve, reject| {
            let fail = |e: JsValue| {
                let _ = reject.call1(&JsValue::NULL, &e);
            };
            let list = collections.dyn_ref::<js_sys::Array>().and_then(|a| {
                a.iter()
                    .map(|p| p.as_string())
                    .collect::<Option<Vec<String>>>()
            });
            let Some(list) = list else {
                return fail(coded(
                    "bad_request",
                    "collections must be an array of strings",
                ));
            };
            let mut i = inner.borrow_mut();
            if i.follower {
                return fail(coded(
                    "bad_request",
                    "this tab follows the tab that holds the store: call subscribeCollections there",
                ));
            }
            match i.engine.replicate(list) {
                Ok(named) => i.replicating.push((named, resolve, reject)),
                Err(e) => fail(core_err(&e)),
            }
        });
        schedule(&self.inner);
        promise
    }

    /// Pushes and pulls now if connected; otherwise redials at once.
    #[wasm_bindgen(js_name = syncNow)]
    pub fn sync_now(&self) {
        let redial = {
            let mut i = self.inner.borrow_mut();
            if i.follower {
                return; // the leader tab holds the link
            }
            if i.session != 0 && i.handshake_done {
                let s = i.session;
                i.engine.sync_now(s);
                i.engine.pull(s);
                false
            } else {
                i.backoff.reset();
                if let Some(t) = i.timer.take() {
                    js::clear_timeout(t);
                }
                true
            }
        };
        if redial {
            dial(&self.inner);
        }
        schedule(&self.inner);
    }

    #[wasm_bindgen(unchecked_return_type = "Status")]
    pub fn status(&self) -> Result<JsValue, JsValue> {
        let i = self.inner.borrow();
        match (&i.mirror_status, i.follower) {
            (Some(s), true) => Ok(s.clone()),
            _ => to_js(&i.status()),
        }
    }

    /// Whether this tab holds the store (runs the link and the writes) or follows the tab
    /// that does.
    #[wasm_bindgen(getter)]
    pub fn role(&self) -> String {
        if self.inner.borrow().follower {
            "follower"
        } else {
            "leader"
        }
        .to_owned()
    }

    /// Calls `callback(status)` whenever the status changes.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(status: Status) => void")] callback: Function,
    ) -> u32 {
        self.add_sub(SubKind::Status, callback)
    }

    /// This store's replica id.
    #[wasm_bindgen(getter)]
    pub fn replica(&self) -> String {
        self.inner.borrow().engine.replica().id().to_string()
    }

    /// What the IndexedDB store wrote since `open`: `{ commits, batches, docs, messages }`;
    /// `setAside`: records that could not be read, moved to the `damaged` store; and
    /// `cacheBytes` / `cacheBudget`: the bytes of document states the engine's cache holds
    /// (the core's accounting) and its budget (`open({ cacheBytes })`).
    #[wasm_bindgen(
        unchecked_return_type = "{ commits: number; batches: number; docs: number; messages: number; setAside: number; cacheBytes: number; cacheBudget: number }"
    )]
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        let i = self.inner.borrow();
        let mut stats = i.store.as_ref().map(IdbStore::stats).unwrap_or_default();
        let (bytes, budget) = i.engine.replica().cache_bytes();
        stats.cache_bytes = bytes as u64;
        stats.cache_budget = budget as u64;
        to_js(&stats)
    }

    /// Documents held (tombstones included): a count of the IndexedDB store.
    #[wasm_bindgen(js_name = docCount, unchecked_return_type = "Promise<number>")]
    pub fn doc_count(&self) -> Promise {
        self.read(Box::new(|e| match e.replica().doc_count() {
            Ok(n) => Ok(JsValue::from_f64(n as f64)),
            Err(err) => Err(core_err(&err)),
        }))
    }

    /// Closes the link and the store once pending writes are stored; resolves then.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let rc = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            {
                let mut i = rc.borrow_mut();
                i.closed = true;
                i.link = None;
                i.dial = 0;
                let s = std::mem::take(&mut i.session);
                if s != 0 {
                    i.engine.close(s);
                }
                if let Some(t) = i.timer.take() {
                    js::clear_timeout(t);
                }
                if let Some((h, _tick)) = i.heartbeat.take() {
                    js::clear_interval(h);
                }
                let target: web_sys::EventTarget = js_sys::global().unchecked_into();
                for (name, l) in i.listeners.drain(..) {
                    let _ = target
                        .remove_event_listener_with_callback(name, l.as_ref().unchecked_ref());
                }
            }
            // Let a running pump finish its transaction.
            while rc.borrow().pumping {
                sleep(5).await;
            }
            let (unsettled, release) =
                {
                    let mut i = rc.borrow_mut();
                    if let Some(store) = &i.store {
                        store.close();
                    }
                    i.tabs = None;
                    let mut unsettled: Vec<Function> = std::mem::take(&mut i.waiting)
                        .into_values()
                        .filter_map(|w| match w {
                            Waiter::Local(_, reject) => Some(reject),
                            Waiter::Tab { .. } => None,
                        })
                        .collect();
                    unsettled.extend(
                        std::mem::take(&mut i.forwarded)
                            .into_values()
                            .map(|(_, _, reject)| reject),
                    );
                    // Writes still waiting for their documents to be read (a pump that stopped
                    // on a failed write leaves them).
                    unsettled.extend(std::mem::take(&mut i.inputs).into_iter().filter_map(
                        |input| match input {
                            Input::Call {
                                waiter: Waiter::Local(_, reject),
                                ..
                            } => Some(reject),
                            _ => None,
                        },
                    ));
                    (unsettled, i.release_lock.take())
                };
            // Only writes whose transaction failed (or a leader never answered) are left;
            // say so rather than hang.
            let reason = coded(
                "closed",
                "the handle was closed before this write could be stored",
            );
            for reject in unsettled {
                let _ = reject.call1(&JsValue::NULL, &reason);
            }
            if let Some(release) = release {
                let _ = release.call0(&JsValue::NULL);
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        js::set_timeout(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}
