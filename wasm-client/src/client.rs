//! The JavaScript handle: `open()`, the verbs, the WebSocket link and the pump.
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

use crate::js;
use crate::status::{CloudProgress, SyncStatus};
use crate::store::{CloudMeta, Damaged, IdbStore, Loaded};
use crate::tabs;
use bridge_core::backoff::Backoff;
use bridge_core::requests::RequestKey;
use bridge_core::{
    check_name, codec, DocKey, Engine, EngineConfig, Error, Event, Frame, PersistBatch, Policy,
    SessionId, Tier, Transmit,
};
use js_sys::{Function, Promise, Uint8Array};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, BroadcastChannel, CloseEvent, MessageEvent, WebSocket};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `open()`. */
export interface OpenOptions {
  /** WebSocket base URL of a host (`ws://127.0.0.1:3333`) or a full `/v1/spaces/{space}/ws` URL. Without it the store works offline only. */
  url?: string;
  space: string;
  /** Token from `sacred-bridge token create` (cloud hosts require one). */
  token?: string;
  /** Display name in presence. */
  name?: string;
  /** IndexedDB database name; default `sacred-bridge/{space}`. */
  db?: string;
  /** Ping interval on the link (ms, default 15000); a link silent for three is redialled. */
  heartbeatMs?: number;
}
export interface Stamp { wall: number; counter: number; replica: string }
export interface Dot { replica: string; counter: number }
export interface DocView {
  collection: string;
  id: string;
  /** `null` when deleted. */
  value: Record<string, unknown> | null;
  stamp?: Stamp;
  /** An open conflict (collections with policy `manual`). */
  conflict: boolean;
}
export interface ConflictSide { dot: Dot; tier: "local" | "cloud"; stamp: Stamp; value: Record<string, unknown> | null }
export interface Conflict { collection: string; id: string; shown: Dot; sides: ConflictSide[]; fields: string[] }
export interface Message { id: { origin: string; seq: number }; channel: string; payload: unknown; stamp: Stamp }
export interface PresenceEntry { node: string; session: number; name: string; kind: "agent" | "peer"; tier: "local" | "cloud"; since: number }
export interface Status {
  online: boolean;
  syncing: boolean;
  /** Own writes not yet acknowledged by a cloud replica ("synced" when 0). */
  pending: number;
  lastCloudAck: number | null;
  peerTier: "local" | "cloud" | null;
  replica: string;
  incoming: number;
  /** The last problem (`"forbidden: …"` when the host refuses our pushes, an unreachable host, records set aside at open); `null` once sync works again. */
  error: string | null;
}
/** Stable error codes (docs/protocol.md), plus `closed` (the handle was closed) and, from `open()`, `busy`. */
export type ErrorCode = "bad_request" | "malformed" | "too_large" | "bad_policy" | "not_found" | "forbidden" | "unauthorized" | "internal" | "closed" | "busy" | string;
/** What every promise of this package rejects with, and what reads throw: an `Error` with a `code`. Promise-returning calls never throw. */
export interface BridgeError extends Error { code: ErrorCode }
export type Policy = "lww" | "cloud_wins" | "local_wins" | "merge" | "manual";
"#;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenOptions {
    url: Option<String>,
    space: String,
    token: Option<String>,
    name: Option<String>,
    db: Option<String>,
    heartbeat_ms: Option<u32>,
}

/// A ping this often; a link silent for three intervals is taken for dead.
const HEARTBEAT_MS: u32 = 15_000;

enum SubKind {
    Docs(String),
    Messages,
    Status,
    Conflicts,
    Presence,
}

struct Sub {
    id: u32,
    kind: SubKind,
    f: Function,
}

/// An open WebSocket and the handlers it calls (dropped with it).
struct Link {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

struct Inner {
    engine: Engine,
    /// Taken by the pump while it writes.
    store: Option<IdbStore>,
    url: Option<String>,
    token: Option<String>,
    name: String,
    link: Option<Link>,
    /// The session of the current link, 0 when there is none.
    session: SessionId,
    next_session: SessionId,
    handshake_done: bool,
    backoff: Backoff,
    timer: Option<i32>,
    closed: bool,
    next_req: u64,
    /// Requests waiting for `Event::Acked`: our own promises, or a follower tab's call.
    waiting: BTreeMap<u64, Waiter>,
    next_sub: u32,
    subs: Vec<Sub>,
    /// What a cloud replica holds of our writes (persisted) and what the current peer does.
    cloud: CloudProgress,
    cloud_at: u64,
    cloud_dirty: bool,
    peer: CloudProgress,
    peer_tier: Option<Tier>,
    incoming: u64,
    pumping: bool,
    /// Batches whose write failed; retried before anything newer.
    unwritten: Vec<PersistBatch>,
    error: Option<String>,
    last_status: Option<SyncStatus>,
    release_lock: Option<Function>,
    listeners: Vec<(&'static str, Listener)>,
    /// Other tabs of this profile on the same store (`None` without BroadcastChannel).
    tabs: Option<TabChannel>,
    /// This tab follows a leader tab (it has no link and makes no writes itself).
    follower: bool,
    tab_id: u64,
    /// Follower: calls forwarded to the leader, by id, until it answers.
    forwarded: BTreeMap<u64, (Frame, Function, Function)>,
    /// Follower: what the leader last said about the link and presence.
    mirror_status: Option<JsValue>,
    mirror_presence: Option<JsValue>,
    /// Messages from other tabs, handled one at a time (a batch is re-read before the
    /// replies that follow it are answered).
    inbox: VecDeque<TabMsg>,
    inbox_busy: bool,
    /// Leader: a follower has shown up, so stored batches are worth announcing.
    followers: bool,
    heartbeat_ms: u32,
    /// When the link last delivered a frame.
    last_rx: u64,
    heartbeat: Option<(i32, Closure<dyn FnMut()>)>,
}

enum Waiter {
    Local(Function, Function),
    Tab { tab: u64, id: u64 },
}

struct TabChannel {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl Drop for TabChannel {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

impl TabChannel {
    fn post(&self, msg: &TabMsg) {
        if let Ok(v) = msg.to_js() {
            let _ = self.channel.post_message(&v);
        }
    }
}

/// What tabs say to each other over the `BroadcastChannel` (see [`crate::tabs`]). On the
/// channel a message is a plain object `{ t, tab, id, frame, keys, value }`; frames travel in
/// the core's binary encoding, status and presence as the objects the callbacks get.
enum TabMsg {
    /// Follower → leader: store this write frame; answer with `Reply { tab, id }`.
    Call {
        tab: u64,
        id: u64,
        frame: Frame,
    },
    /// Leader → follower `tab`: stored (`ack` with the dot) or refused (`error`).
    Reply {
        tab: u64,
        id: u64,
        frame: Frame,
    },
    /// Leader → all: these documents changed in the store.
    Batch {
        keys: Vec<DocKey>,
    },
    /// Leader → all: a message was stored (a `broadcast` frame with its offset).
    Message {
        frame: Frame,
    },
    Status(JsValue),
    Presence(JsValue),
    /// A new leader: followers send again every call not answered yet.
    Leader,
    /// A new follower: the leader says its status and presence.
    Joined,
}

impl TabMsg {
    fn to_js(&self) -> Result<JsValue, JsValue> {
        let o = js_sys::Object::new();
        let set = |k: &str, v: &JsValue| js_sys::Reflect::set(&o, &k.into(), v).map(drop);
        let bytes = |f: &Frame| JsValue::from(Uint8Array::from(codec::encode_binary(f).as_slice()));
        let (t, tab, id) = match self {
            TabMsg::Call { tab, id, frame } => {
                set("frame", &bytes(frame))?;
                ("call", *tab, *id)
            }
            TabMsg::Reply { tab, id, frame } => {
                set("frame", &bytes(frame))?;
                ("reply", *tab, *id)
            }
            TabMsg::Batch { keys } => {
                let a: js_sys::Array = keys
                    .iter()
                    .map(|k| {
                        js_sys::Array::of2(&k.collection.as_str().into(), &k.id.as_str().into())
                    })
                    .collect();
                set("keys", &a)?;
                ("batch", 0, 0)
            }
            TabMsg::Message { frame } => {
                set("frame", &bytes(frame))?;
                ("message", 0, 0)
            }
            TabMsg::Status(v) => {
                set("value", v)?;
                ("status", 0, 0)
            }
            TabMsg::Presence(v) => {
                set("value", v)?;
                ("presence", 0, 0)
            }
            TabMsg::Leader => ("leader", 0, 0),
            TabMsg::Joined => ("joined", 0, 0),
        };
        set("t", &t.into())?;
        set("tab", &(tab as f64).into())?;
        set("id", &(id as f64).into())?;
        Ok(o.into())
    }

    /// `None` for anything that is not a well-formed message (another version, a stranger).
    fn from_js(v: &JsValue) -> Option<TabMsg> {
        let get = |k: &str| js_sys::Reflect::get(v, &k.into()).ok();
        let num = |k: &str| get(k).and_then(|x| x.as_f64()).map(|x| x as u64);
        let frame = || {
            let b = get("frame")?.dyn_into::<Uint8Array>().ok()?;
            codec::decode_binary(&b.to_vec()).ok()
        };
        let (tab, id) = (num("tab")?, num("id")?);
        Some(match get("t")?.as_string()?.as_str() {
            "call" => TabMsg::Call {
                tab,
                id,
                frame: frame()?,
            },
            "reply" => TabMsg::Reply {
                tab,
                id,
                frame: frame()?,
            },
            "batch" => {
                let keys = js_sys::Array::from(&get("keys")?)
                    .iter()
                    .filter_map(|k| {
                        let k = js_sys::Array::from(&k);
                        Some(DocKey::new(k.get(0).as_string()?, k.get(1).as_string()?))
                    })
                    .collect();
                TabMsg::Batch { keys }
            }
            "message" => TabMsg::Message { frame: frame()? },
            "status" => TabMsg::Status(get("value")?),
            "presence" => TabMsg::Presence(get("value")?),
            "leader" => TabMsg::Leader,
            "joined" => TabMsg::Joined,
            _ => return None,
        })
    }
}

type Listener = Closure<dyn FnMut(web_sys::Event)>;

type Shared = Rc<RefCell<Inner>>;

/// An `Error` with code `internal`: the browser or its storage failed.
fn js_err(e: impl std::fmt::Display) -> JsValue {
    coded("internal", &e.to_string())
}

/// A JavaScript `Error` whose `code` is `code` (a stable code of docs/protocol.md, or
/// `"closed"`).
fn coded(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = js_sys::Reflect::set(&e, &"code".into(), &code.into());
    e.into()
}

/// A core error as a JavaScript `Error` with its stable `code`.
fn core_err(e: &Error) -> JsValue {
    coded(e.code().as_str(), &e.to_string())
}

/// A name argument (collection, document id, channel): a string, else `bad_request` — a
/// number passed where wasm-bindgen expects a string would be read as a pointer.
fn name_arg(v: &JsValue, what: &'static str) -> Result<String, Error> {
    v.as_string().ok_or_else(|| Error::BadName {
        what,
        name: describe_value(v),
        why: "it is not a string",
    })
}

/// An optional name argument: `undefined` / `null` are none.
fn opt_name_arg(v: &JsValue, what: &'static str) -> Result<Option<String>, Error> {
    if v.is_undefined() || v.is_null() {
        Ok(None)
    } else {
        name_arg(v, what).map(Some)
    }
}

/// A JavaScript value → JSON, through `JSON.stringify` and the core's parser, whose nesting
/// limit (128) keeps any input from exhausting the wasm stack; the limits proper
/// (`bridge_core::limits`) are checked on the result.
fn value_from_js(v: &JsValue, what: &str) -> Result<Value, Error> {
    let text = js_sys::JSON::stringify(v)
        .map_err(|e| Error::Malformed(format!("{what} is not JSON: {}", describe(&e))))?;
    let Some(text) = text.as_string() else {
        return Err(Error::Malformed(format!("{what} is not a JSON value")));
    };
    serde_json::from_str(&text).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            Error::Malformed(format!(
                "{what} nests deeper than {} arrays/objects",
                codec::MAX_VALUE_DEPTH
            ))
        } else {
            Error::Malformed(format!("{what} is not JSON: {e}"))
        }
    })
}

fn describe_value(v: &JsValue) -> String {
    v.as_f64()
        .map(|n| n.to_string())
        .or_else(|| v.js_typeof().as_string())
        .unwrap_or_default()
}

fn describe(e: &JsValue) -> String {
    js_sys::Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Rust value → JavaScript value through JSON text (exact for every JSON document, including
/// integers beyond 2^53, which become the nearest double as with `JSON.parse` anywhere).
fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    let text = serde_json::to_string(v).map_err(js_err)?;
    js_sys::JSON::parse(&text)
}

fn object_from_js(value: &JsValue) -> Result<Map<String, Value>, Error> {
    match value_from_js(value, "the document")? {
        Value::Object(m) => Ok(m),
        Value::Array(_) => Err(Error::NotAnObject("an array")),
        _ => Err(Error::NotAnObject("a value that is not an object")),
    }
}

/// Opens the store of `options.space` in this browser (IndexedDB), restores it, and — when
/// `options.url` is given — keeps a link to that host, resuming by vector on every
/// reconnect. Fails if another tab already has the same store open.
#[wasm_bindgen]
pub async fn open(
    #[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue,
) -> Result<Bridge, JsValue> {
    let opts: OpenOptions = serde_wasm_bindgen::from_value(options)
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
        Ok((engine, store, loaded)) => {
            let cloud = loaded.cloud;
            let inner = Rc::new(RefCell::new(Inner {
                engine,
                store: Some(store),
                url: opts.url.map(|u| socket_url(&u, &opts.space)),
                token: opts.token,
                name: opts.name.unwrap_or_default(),
                link: None,
                session: 0,
                next_session: 1,
                handshake_done: false,
                backoff: Backoff::default(),
                timer: None,
                closed: false,
                next_req: 1,
                waiting: BTreeMap::new(),
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
                forwarded: BTreeMap::new(),
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
) -> Result<(Engine, IdbStore, Loaded), JsValue> {
    let mut store = IdbStore::open(db_name).await.map_err(js_err)?;
    let replica = store
        .replica_id(|| js::random_u64().ok())
        .await
        .map_err(js_err)?;
    let mut cfg = EngineConfig::new(replica, Tier::Local, opts.space.clone());
    cfg.name = opts.name.clone().unwrap_or_default();
    // A browser joins spaces; the hosts that serve them seed their default policy.
    cfg.seed_default_policy = false;
    let mut engine = Engine::new(cfg);
    let loaded = store.load(&mut engine).await.map_err(js_err)?;
    if leader {
        store.set_aside(&loaded.damaged).await.map_err(js_err)?;
    }
    Ok((engine, store, loaded))
}

/// What `status().error` says after an open that had to set records aside.
fn damage_report(damaged: &[Damaged]) -> Option<String> {
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
                tabs::check(&call, i.engine.replica())?;
            }
            let id = i.next_req;
            i.next_req += 1;
            if i.follower {
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
            tabs::apply(call, &mut i.engine, js::now_ms(), id, None)?;
            let waiting = &mut i.waiting;
            Promise::new(&mut |resolve, reject| {
                waiting.insert(id, Waiter::Local(resolve, reject));
            })
        };
        schedule(&self.inner);
        Ok(promise)
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

    /// The document's visible value, `null` if absent or deleted.
    #[wasm_bindgen(unchecked_return_type = "Record<string, unknown> | null")]
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
    ) -> Result<JsValue, JsValue> {
        let collection = name_arg(&collection, "collection").map_err(|e| core_err(&e))?;
        let id = name_arg(&id, "document id").map_err(|e| core_err(&e))?;
        let i = self.inner.borrow();
        match i.engine.replica().get(&DocKey::new(collection, id)) {
            Some(v) => to_js(&v),
            None => Ok(JsValue::NULL),
        }
    }

    /// The visible documents of a collection in id order, after `after`, at most `limit`.
    #[wasm_bindgen(unchecked_return_type = "DocView[]")]
    pub fn list(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] collection: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | null")] after: JsValue,
        limit: Option<u32>,
    ) -> Result<JsValue, JsValue> {
        let collection = name_arg(&collection, "collection").map_err(|e| core_err(&e))?;
        let after = opt_name_arg(&after, "document id").map_err(|e| core_err(&e))?;
        let i = self.inner.borrow();
        let limit = limit.map_or(usize::MAX, |l| l as usize);
        to_js(
            &i.engine
                .replica()
                .list(&collection, after.as_deref(), limit),
        )
    }

    /// Collections holding at least one document (deleted ones included), in name order.
    pub fn collections(&self) -> Vec<String> {
        let i = self.inner.borrow();
        let mut out: Vec<String> = Vec::new();
        for (k, _) in i.engine.replica().docs() {
            if out.last() != Some(&k.collection) && !k.collection.starts_with('_') {
                out.push(k.collection.clone());
            }
        }
        out
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
    #[wasm_bindgen(unchecked_return_type = "Conflict[]")]
    pub fn conflicts(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | null")] collection: JsValue,
    ) -> Result<JsValue, JsValue> {
        let collection = opt_name_arg(&collection, "collection").map_err(|e| core_err(&e))?;
        to_js(
            &self
                .inner
                .borrow()
                .engine
                .replica()
                .conflicts(collection.as_deref()),
        )
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

    /// What the IndexedDB store wrote since `open`: `{ commits, batches, docs, messages }`,
    /// and `setAside`: records that could not be read at open, moved to the `damaged` store.
    #[wasm_bindgen(
        unchecked_return_type = "{ commits: number; batches: number; docs: number; messages: number; setAside: number }"
    )]
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        let i = self.inner.borrow();
        to_js(&i.store.as_ref().map(IdbStore::stats).unwrap_or_default())
    }

    /// Documents held (tombstones included).
    #[wasm_bindgen(js_name = docCount)]
    pub fn doc_count(&self) -> u32 {
        self.inner.borrow().engine.replica().doc_count() as u32
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
            let (unsettled, release) = {
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

impl Inner {
    fn status(&self) -> SyncStatus {
        let r = self.engine.replica();
        let own = r.latest_vector().get(r.id());
        let online = self.session != 0 && self.handshake_done;
        SyncStatus {
            online,
            syncing: online && (own > self.peer.acked || self.incoming > 0),
            pending: self.cloud.pending(own),
            last_cloud_ack: (self.cloud_at > 0).then_some(self.cloud_at),
            peer_tier: self.peer_tier.map(Tier::as_str),
            replica: r.id().to_string(),
            incoming: self.incoming,
            error: self.error.clone(),
        }
    }

    /// What the host learns from a frame before the engine takes it: the peer's tier and how
    /// much of ours it holds (welcome), and how much an incoming catch-up has left.
    fn observe(&mut self, frame: &Frame) {
        let me = self.engine.replica().id();
        match frame {
            Frame::Welcome(w) => {
                self.peer_tier = Some(w.tier);
                self.peer = CloudProgress::default();
                self.peer.observe(w.vector.get(me));
                if w.tier == Tier::Cloud {
                    self.cloud_dirty |= self.cloud.observe(w.vector.get(me));
                }
            }
            Frame::Push(p) => self.incoming = p.remaining,
            // Any refusal from the host, before or after the handshake: one that repeats on
            // every reconnect (a push the host will never take) stays visible, since only
            // progress clears it (`clear_error_on_progress`).
            Frame::Error { code, message, .. } => {
                self.error = Some(format!("{}: {message}", code.as_str()));
            }
            _ => {}
        }
    }

    /// The error is cleared once sync works again: the link is up and the peer holds every
    /// write of ours, with nothing left to store or receive.
    fn clear_error_on_progress(&mut self) {
        let r = self.engine.replica();
        let own = r.latest_vector().get(r.id());
        let online = self.session != 0 && self.handshake_done;
        if online && own <= self.peer.acked && self.incoming == 0 && self.unwritten.is_empty() {
            self.error = None;
        }
    }

    fn drop_link(&mut self) {
        self.link = None;
        let s = std::mem::take(&mut self.session);
        if s != 0 {
            self.engine.close(s);
        }
        self.handshake_done = false;
        self.incoming = 0;
    }
}

/// Runs the pump soon (a microtask), unless it is running: then it picks the input up.
fn schedule(rc: &Shared) {
    {
        let mut i = rc.borrow_mut();
        if i.pumping {
            return;
        }
        i.pumping = true;
    }
    let rc = rc.clone();
    wasm_bindgen_futures::spawn_local(async move { pump(rc).await });
}

/// Persist, release, send — until the engine has nothing staged.
async fn pump(rc: Shared) {
    loop {
        drain(&rc);
        let (batches, mut store, cloud) = {
            let mut i = rc.borrow_mut();
            let mut batches = std::mem::take(&mut i.unwritten);
            while let Some(b) = i.engine.poll_persist() {
                batches.push(b);
            }
            let cloud = std::mem::take(&mut i.cloud_dirty).then_some(CloudMeta {
                acked: i.cloud.acked,
                at: i.cloud_at,
            });
            if batches.is_empty() && cloud.is_none() {
                i.pumping = false;
                break;
            }
            let Some(store) = i.store.take() else {
                i.unwritten = batches;
                i.pumping = false;
                break;
            };
            (batches, store, cloud)
        };
        let written = store.write(&batches).await;
        if let Some(c) = cloud {
            let _ = store.write_cloud(c).await;
        }
        let mut i = rc.borrow_mut();
        i.store = Some(store);
        match written {
            Ok(()) => {
                for b in &batches {
                    if let Err(e) = i.engine.persisted(b.id) {
                        i.error = Some(e.to_string());
                    }
                }
            }
            Err(e) => {
                // Nothing was acknowledged; keep the batches and retry on the next input.
                i.error = Some(e.to_string());
                i.unwritten = batches;
                i.pumping = false;
                drop(i);
                drain(&rc);
                break;
            }
        }
    }
    drain(&rc);
}

/// Sends what the engine wants sent and calls back into JavaScript for its events.
fn drain(rc: &Shared) {
    let mut calls: Vec<(Function, JsValue, JsValue)> = Vec::new();
    let mut closed_session = false;
    // For follower tabs, in this order: the stored batch, messages, then the replies (a
    // follower re-reads the batch before it resolves the write it asked for), status.
    let mut batch: Vec<DocKey> = Vec::new();
    let mut posts: Vec<TabMsg> = Vec::new();
    let mut replies: Vec<TabMsg> = Vec::new();
    {
        let mut guard = rc.borrow_mut();
        let i = &mut *guard;
        while let Some(t) = i.engine.poll_transmit() {
            match t {
                Transmit::Frame { session, frame } if session == i.session => {
                    if let Some(link) = &i.link {
                        let bytes = codec::encode_binary(&frame);
                        let _ = link.ws.send_with_u8_array(&bytes);
                    }
                }
                Transmit::Close {
                    session, reason, ..
                } if session == i.session => {
                    i.error = Some(reason);
                    closed_session = true;
                }
                _ => {}
            }
        }
        if closed_session {
            i.drop_link();
        }
        let me = i.engine.replica().id();
        let mut presence = false;
        while let Some(ev) = i.engine.poll_event() {
            match ev {
                Event::Acked { req, dot } => match i.waiting.remove(&req) {
                    Some(Waiter::Local(resolve, _)) => {
                        let v = dot.map_or(Ok(JsValue::UNDEFINED), |d| to_js(&d));
                        calls.push((resolve, v.unwrap_or(JsValue::UNDEFINED), JsValue::UNDEFINED));
                    }
                    Some(Waiter::Tab { tab, id }) => replies.push(TabMsg::Reply {
                        tab,
                        id,
                        frame: Frame::Ack(bridge_core::frame::Ack {
                            dot,
                            ..Default::default()
                        }),
                    }),
                    None => {}
                },
                Event::DocChanged(view) => {
                    if i.followers {
                        batch.push(DocKey::new(view.collection.clone(), view.id.clone()));
                    }
                    let mut value = None;
                    for s in &i.subs {
                        if let SubKind::Docs(c) = &s.kind {
                            if c == "*" || *c == view.collection {
                                let v = value.get_or_insert_with(|| {
                                    to_js(&view).unwrap_or(JsValue::UNDEFINED)
                                });
                                calls.push((s.f.clone(), v.clone(), JsValue::UNDEFINED));
                            }
                        }
                    }
                }
                Event::ConflictOpened(c) => {
                    for s in i
                        .subs
                        .iter()
                        .filter(|s| matches!(s.kind, SubKind::Conflicts))
                    {
                        let v = to_js(&c).unwrap_or(JsValue::UNDEFINED);
                        calls.push((s.f.clone(), v, JsValue::UNDEFINED));
                    }
                }
                Event::Message { message, offset } => {
                    if i.followers {
                        posts.push(TabMsg::Message {
                            frame: Frame::Broadcast {
                                message: message.clone(),
                                offset: Some(offset),
                            },
                        });
                    }
                    for s in i
                        .subs
                        .iter()
                        .filter(|s| matches!(s.kind, SubKind::Messages))
                    {
                        let v = to_js(&message).unwrap_or(JsValue::UNDEFINED);
                        calls.push((s.f.clone(), v, JsValue::from_f64(offset as f64)));
                    }
                }
                Event::PeerAcked {
                    session,
                    tier,
                    vector,
                } => {
                    if session == i.session {
                        i.peer.observe(vector.get(me));
                    }
                    if tier == Tier::Cloud && i.cloud.observe(vector.get(me)) {
                        i.cloud_at = js::now_ms();
                        i.cloud_dirty = true;
                    }
                }
                Event::SessionOpened { session, .. } if session == i.session => {
                    i.handshake_done = true;
                    i.backoff.reset();
                }
                Event::PresenceChanged => presence = true,
                _ => {}
            }
        }
        if presence && i.followers {
            posts.push(TabMsg::Presence(
                to_js(&i.engine.presence()).unwrap_or_default(),
            ));
        }
        if presence {
            let entries = to_js(&i.engine.presence()).unwrap_or(JsValue::UNDEFINED);
            for s in i
                .subs
                .iter()
                .filter(|s| matches!(s.kind, SubKind::Presence))
            {
                calls.push((s.f.clone(), entries.clone(), JsValue::UNDEFINED));
            }
        }
        i.clear_error_on_progress();
        let status = i.status();
        if i.last_status.as_ref() != Some(&status) {
            let v = to_js(&status).unwrap_or(JsValue::UNDEFINED);
            for s in i.subs.iter().filter(|s| matches!(s.kind, SubKind::Status)) {
                calls.push((s.f.clone(), v.clone(), JsValue::UNDEFINED));
            }
            if i.followers {
                posts.push(TabMsg::Status(to_js(&status).unwrap_or_default()));
            }
            i.last_status = Some(status);
        }
        if let Some(t) = i.tabs.as_ref().filter(|_| !i.follower && i.followers) {
            if !batch.is_empty() {
                t.post(&TabMsg::Batch { keys: batch });
            }
            let (status, others): (Vec<TabMsg>, Vec<TabMsg>) = posts
                .into_iter()
                .partition(|m| matches!(m, TabMsg::Status(_)));
            for m in others.iter().chain(&replies).chain(&status) {
                t.post(m);
            }
        }
    }
    if closed_session {
        reconnect_later(rc);
    }
    for (f, a, b) in calls {
        // A throwing callback must not stop the others or the pump.
        let _ = f.call2(&JsValue::NULL, &a, &b);
    }
}

/// Opens the link if there is a URL, no link, and the browser thinks it is online.
fn dial(rc: &Shared) {
    let (url, sid) = {
        let mut i = rc.borrow_mut();
        let Some(url) = i.url.clone() else { return };
        if i.closed || i.follower || i.link.is_some() || i.timer.is_some() {
            return;
        }
        if !js::navigator_online() {
            return; // the `online` event dials
        }
        let sid = i.next_session;
        i.next_session += 1;
        (url, sid)
    };
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(e) => {
            rc.borrow_mut().error = Some(format!("cannot open a WebSocket to {url}: {e:?}"));
            reconnect_later(rc);
            return;
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    let weak = Rc::downgrade(rc);
    let on_open = Closure::<dyn FnMut(web_sys::Event)>::new({
        let weak = weak.clone();
        move |_| {
            let Some(rc) = weak.upgrade() else { return };
            {
                let mut i = rc.borrow_mut();
                if i.session != sid {
                    return;
                }
                let (token, name) = (i.token.clone(), i.name.clone());
                i.last_rx = js::now_ms();
                i.engine.connect(js::now_ms(), sid, token, &name);
            }
            schedule(&rc);
        }
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let weak = weak.clone();
        move |e: MessageEvent| {
            let Some(rc) = weak.upgrade() else { return };
            let data = e.data();
            // Peers speak binary, and hosts answer in kind; the JSON decoder (agents' text
            // frames) would add a third of the package for nothing.
            let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() else {
                return;
            };
            let bytes = Uint8Array::new(buf).to_vec();
            let decoded = codec::decode_binary(&bytes);
            {
                let mut i = rc.borrow_mut();
                if i.session != sid {
                    return;
                }
                i.last_rx = js::now_ms();
                match decoded {
                    Ok(frame) => {
                        i.observe(&frame);
                        i.engine.handle_frame(js::now_ms(), sid, frame);
                    }
                    Err(err) => {
                        let req = codec::request_id(&bytes, true);
                        i.engine.handle_decode_error(sid, req, &err);
                    }
                }
            }
            schedule(&rc);
        }
    });
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
        let Some(rc) = weak.upgrade() else { return };
        {
            let mut i = rc.borrow_mut();
            if i.session != sid {
                return;
            }
            if !e.was_clean() && i.error.is_none() && !i.handshake_done {
                i.error = Some(format!(
                    "cannot reach {}",
                    i.url.clone().unwrap_or_default()
                ));
            }
            i.drop_link();
        }
        reconnect_later(&rc);
        schedule(&rc);
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let mut i = rc.borrow_mut();
    i.session = sid;
    i.link = Some(Link {
        ws,
        _on_open: on_open,
        _on_message: on_message,
        _on_close: on_close,
    });
}

/// Dials again after the backoff's next delay (jittered with `crypto.getRandomValues`).
fn reconnect_later(rc: &Shared) {
    let delay = {
        let mut i = rc.borrow_mut();
        if i.closed || i.url.is_none() || i.timer.is_some() || i.link.is_some() {
            return;
        }
        let random = js::random_u64().unwrap_or_else(|_| js::now_ms());
        i.backoff.next_delay(random)
    };
    let weak = Rc::downgrade(rc);
    let f = Closure::once_into_js(move || {
        if let Some(rc) = weak.upgrade() {
            rc.borrow_mut().timer = None;
            dial(&rc);
        }
    });
    let id = js::set_timeout(f.unchecked_ref(), delay.min(i32::MAX as u64) as i32);
    rc.borrow_mut().timer = Some(id);
}

/// `online`: redial now with a fresh backoff. `offline`: drop the link at once (a socket
/// can linger for minutes before the browser notices it is dead) and work from the store.
fn listen_network(rc: &Shared) {
    let target: web_sys::EventTarget = js_sys::global().unchecked_into();
    let weak: Weak<RefCell<Inner>> = Rc::downgrade(rc);
    let on_online = Closure::<dyn FnMut(web_sys::Event)>::new({
        let weak = weak.clone();
        move |_| {
            let Some(rc) = weak.upgrade() else { return };
            {
                let mut i = rc.borrow_mut();
                i.backoff.reset();
                if let Some(t) = i.timer.take() {
                    js::clear_timeout(t);
                }
            }
            dial(&rc);
        }
    });
    let on_offline = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        let Some(rc) = weak.upgrade() else { return };
        rc.borrow_mut().drop_link();
        schedule(&rc);
    });
    let mut i = rc.borrow_mut();
    for (name, l) in [("online", on_online), ("offline", on_offline)] {
        let _ = target.add_event_listener_with_callback(name, l.as_ref().unchecked_ref());
        i.listeners.push((name, l));
    }
    drop(i);
    start_heartbeat(rc);
}

/// Pings the link every `heartbeat_ms` and redials one that stayed silent for three: a
/// socket whose network vanished without the browser noticing can otherwise hang for
/// minutes, showing "online" while nothing moves.
fn start_heartbeat(rc: &Shared) {
    let weak = Rc::downgrade(rc);
    let tick = Closure::<dyn FnMut()>::new(move || {
        let Some(rc) = weak.upgrade() else { return };
        let dead = {
            let mut i = rc.borrow_mut();
            let Some(link) = &i.link else { return };
            if !i.handshake_done {
                return;
            }
            let now = js::now_ms();
            if now.saturating_sub(i.last_rx) > 3 * u64::from(i.heartbeat_ms) {
                i.error = Some("the link went silent; reconnecting".into());
                i.drop_link();
                true
            } else {
                let ping = codec::encode_binary(&Frame::Ping { nonce: now });
                let _ = link.ws.send_with_u8_array(&ping);
                false
            }
        };
        if dead {
            reconnect_later(&rc);
            schedule(&rc);
        }
    });
    let ms = rc.borrow().heartbeat_ms;
    let id = js::set_interval(tick.as_ref().unchecked_ref(), ms as i32);
    rc.borrow_mut().heartbeat = Some((id, tick));
}

fn tab_channel_supported() -> bool {
    js_sys::Reflect::has(&js_sys::global(), &"BroadcastChannel".into()).unwrap_or(false)
}

/// Joins the store's `BroadcastChannel`: a leader answers calls, a follower mirrors.
fn join_tabs(rc: &Shared, db_name: &str) {
    let Ok(channel) = BroadcastChannel::new(&format!("sacred-bridge:{db_name}")) else {
        return;
    };
    let weak = Rc::downgrade(rc);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        let Some(rc) = weak.upgrade() else { return };
        let Some(msg) = TabMsg::from_js(&e.data()) else {
            return;
        };
        rc.borrow_mut().inbox.push_back(msg);
        process_inbox(&rc);
    });
    channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let mut i = rc.borrow_mut();
    let tabs = TabChannel {
        channel,
        _on_message: on_message,
    };
    if i.follower {
        tabs.post(&TabMsg::Joined);
    }
    i.tabs = Some(tabs);
}

fn process_inbox(rc: &Shared) {
    {
        let mut i = rc.borrow_mut();
        if i.inbox_busy {
            return;
        }
        i.inbox_busy = true;
    }
    let rc = rc.clone();
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let next = {
                let mut i = rc.borrow_mut();
                let next = i.inbox.pop_front();
                if next.is_none() {
                    i.inbox_busy = false;
                }
                next
            };
            let Some(msg) = next else { break };
            on_tab_message(&rc, msg).await;
        }
    });
}

async fn on_tab_message(rc: &Shared, msg: TabMsg) {
    let follower = rc.borrow().follower;
    match msg {
        TabMsg::Call { tab, id, frame } if !follower => {
            let failed = {
                let mut i = rc.borrow_mut();
                i.followers = true;
                let req = i.next_req;
                i.next_req += 1;
                let key = RequestKey { origin: tab, id };
                match tabs::apply(frame, &mut i.engine, js::now_ms(), req, Some(key)) {
                    Ok(()) => {
                        i.waiting.insert(req, Waiter::Tab { tab, id });
                        None
                    }
                    Err(e) => Some(e),
                }
            };
            if let Some(e) = failed {
                let reply = TabMsg::Reply {
                    tab,
                    id,
                    frame: Frame::error(None, &e),
                };
                if let Some(t) = &rc.borrow().tabs {
                    t.post(&reply);
                }
            }
            schedule(rc);
        }
        TabMsg::Batch { keys } if follower => refresh(rc, keys).await,
        TabMsg::Joined if !follower => {
            rc.borrow_mut().followers = true;
            let i = rc.borrow();
            if let Some(t) = &i.tabs {
                t.post(&TabMsg::Status(to_js(&i.status()).unwrap_or_default()));
                t.post(&TabMsg::Presence(
                    to_js(&i.engine.presence()).unwrap_or_default(),
                ));
            }
        }
        TabMsg::Leader if follower => {
            let i = rc.borrow();
            if let Some(t) = &i.tabs {
                for (id, (frame, _, _)) in &i.forwarded {
                    t.post(&TabMsg::Call {
                        tab: i.tab_id,
                        id: *id,
                        frame: frame.clone(),
                    });
                }
            }
        }
        TabMsg::Reply { tab, id, frame } if follower => {
            let waiter = {
                let mut i = rc.borrow_mut();
                if tab != i.tab_id {
                    return;
                }
                i.forwarded.remove(&id)
            };
            if let Some((_, resolve, reject)) = waiter {
                let _ = match frame {
                    Frame::Ack(a) => resolve.call1(
                        &JsValue::NULL,
                        &a.dot
                            .map_or(Ok(JsValue::UNDEFINED), |d| to_js(&d))
                            .unwrap_or_default(),
                    ),
                    Frame::Error { code, message, .. } => {
                        reject.call1(&JsValue::NULL, &coded(code.as_str(), &message))
                    }
                    _ => reject.call1(&JsValue::NULL, &js_err("the leader tab answered oddly")),
                };
            }
        }
        TabMsg::Message {
            frame: Frame::Broadcast { message, offset },
        } if follower => {
            let m = to_js(&message).unwrap_or_default();
            let offset = JsValue::from_f64(offset.unwrap_or(0) as f64);
            for f in callbacks(rc, |k| matches!(k, SubKind::Messages)) {
                let _ = f.call2(&JsValue::NULL, &m, &offset);
            }
        }
        TabMsg::Status(v) if follower => {
            let first = rc.borrow_mut().mirror_status.replace(v.clone()).is_none();
            if first {
                catch_up(rc).await;
            }
            for f in callbacks(rc, |k| matches!(k, SubKind::Status)) {
                let _ = f.call1(&JsValue::NULL, &v);
            }
        }
        TabMsg::Presence(v) if follower => {
            rc.borrow_mut().mirror_presence = Some(v.clone());
            for f in callbacks(rc, |k| matches!(k, SubKind::Presence)) {
                let _ = f.call1(&JsValue::NULL, &v);
            }
        }
        _ => {}
    }
}

fn callbacks(rc: &Shared, want: impl Fn(&SubKind) -> bool) -> Vec<Function> {
    rc.borrow()
        .subs
        .iter()
        .filter(|s| want(&s.kind))
        .map(|s| s.f.clone())
        .collect()
}

/// Follower, once the leader answered its `joined` (so every later batch is announced): if
/// the leader stored anything between this tab's load and then, load the store again.
async fn catch_up(rc: &Shared) {
    let Some(store) = rc.borrow_mut().store.take() else {
        return;
    };
    let stored = store.stored_vector().await;
    let mut store = store;
    let behind = match stored {
        Ok(Some(v)) => &v != rc.borrow().engine.replica().vector(),
        Ok(None) => false,
        Err(_) => true,
    };
    if behind {
        let mut engine = Engine::new(rc.borrow().engine.config().clone());
        if store.load(&mut engine).await.is_ok() {
            rc.borrow_mut().engine = engine;
        }
    }
    rc.borrow_mut().store = Some(store);
}

/// Follower: re-reads what the leader stored and tells the callbacks.
async fn refresh(rc: &Shared, keys: Vec<DocKey>) {
    let Some(store) = rc.borrow_mut().store.take() else {
        return;
    };
    let read = store.read_docs(&keys).await;
    let mut calls: Vec<(Function, JsValue)> = Vec::new();
    {
        let mut i = rc.borrow_mut();
        i.store = Some(store);
        let states = match read {
            Ok(states) => states,
            Err(e) => {
                i.error = Some(e.to_string());
                return;
            }
        };
        for (key, state) in states {
            i.engine.replica_mut().restore_doc(key.clone(), state);
            let view = i.engine.replica().view(&key);
            let conflict = if view.conflict {
                i.engine.replica().conflict(&key)
            } else {
                None
            };
            for s in &i.subs {
                match &s.kind {
                    SubKind::Docs(c) if c == "*" || *c == view.collection => {
                        calls.push((s.f.clone(), to_js(&view).unwrap_or_default()));
                    }
                    SubKind::Conflicts => {
                        if let Some(c) = &conflict {
                            calls.push((s.f.clone(), to_js(c).unwrap_or_default()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    for (f, v) in calls {
        let _ = f.call1(&JsValue::NULL, &v);
    }
}

/// The leader tab is gone and this tab got the lock: rebuild the engine from the store (the
/// leader left there everything it acknowledged), open the link, and run the calls the old
/// leader never answered.
async fn promote(rc: Shared, release: Function) {
    // A refresh of the old leader's last batch may still be reading the store: let it end.
    loop {
        {
            let i = rc.borrow();
            if i.closed || (i.store.is_some() && !i.inbox_busy) {
                break;
            }
        }
        sleep(5).await;
    }
    let taken = {
        let mut i = rc.borrow_mut();
        if i.closed {
            None
        } else {
            i.store.take().map(|s| (s, i.engine.config().clone()))
        }
    };
    let Some((mut store, cfg)) = taken else {
        let _ = release.call0(&JsValue::NULL);
        return;
    };
    let mut engine = Engine::new(cfg);
    let mut loaded = store.load(&mut engine).await;
    if let Ok(l) = &loaded {
        if let Err(e) = store.set_aside(&l.damaged).await {
            loaded = Err(e);
        }
    }
    let mut rejected: Vec<(Function, JsValue)> = Vec::new();
    {
        let mut guard = rc.borrow_mut();
        let i = &mut *guard;
        i.store = Some(store);
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                i.error = Some(e.to_string());
                let _ = release.call0(&JsValue::NULL);
                return;
            }
        };
        i.engine = engine;
        i.cloud = CloudProgress {
            acked: loaded.cloud.acked,
        };
        i.cloud_at = loaded.cloud.at;
        if let Some(report) = damage_report(&loaded.damaged) {
            i.error = Some(report);
        }
        i.follower = false;
        // Other tabs may be following too: announce batches from now on.
        i.followers = true;
        i.mirror_status = None;
        i.mirror_presence = None;
        i.release_lock = Some(release);
        // Each with its key: a call the old leader stored but did not answer is answered
        // from the store, not made again.
        for (id, (frame, resolve, reject)) in std::mem::take(&mut i.forwarded) {
            let req = i.next_req;
            i.next_req += 1;
            let key = RequestKey {
                origin: i.tab_id,
                id,
            };
            match tabs::apply(frame, &mut i.engine, js::now_ms(), req, Some(key)) {
                Ok(()) => {
                    i.waiting.insert(req, Waiter::Local(resolve, reject));
                }
                Err(e) => rejected.push((reject, core_err(&e))),
            }
        }
    }
    for (reject, e) in rejected {
        let _ = reject.call1(&JsValue::NULL, &e);
    }
    // Calls other followers sent while no tab led are re-sent on this announcement.
    if let Some(t) = &rc.borrow().tabs {
        t.post(&TabMsg::Leader);
    }
    listen_network(&rc);
    dial(&rc);
    schedule(&rc);
}
