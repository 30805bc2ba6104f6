//! The state behind a handle: one [`Inner`] per `open()`, shared as [`Shared`] by the API,
//! the pump, the link and the tab channel, and what it derives from the frames it sees
//! (status, the peer's and the cloud's progress).

use super::channel::TabChannel;
use super::link::Link;
use crate::scratch::Prefetched;
use crate::status::{CloudProgress, SyncStatus};
use crate::store::{Damaged, IdbStore, Reader};
use crate::tabs::message::TabMsg;
use bridge_core::backoff::Backoff;
use bridge_core::request::RequestKey;
use bridge_core::{DocKey, Engine, Frame, PersistBatch, SessionId, Tier};
use js_sys::Function;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

pub(super) enum SubKind {
    Docs(String),
    Messages,
    Status,
    Conflicts,
    Presence,
}

pub(super) struct Sub {
    pub(super) id: u32,
    pub(super) kind: SubKind,
    pub(super) f: Function,
}

pub(super) struct Inner {
    pub(super) engine: Engine,
    /// The engine's durable layer: what was read ahead from IndexedDB (`scratch.rs`).
    pub(super) scratch: Prefetched,
    /// Reads for the engine, also while the pump holds `store` for a write.
    pub(super) reader: Reader,
    /// Writes and frames waiting for the pump, which reads their documents first.
    pub(super) inputs: VecDeque<Input>,
    /// Document records found unreadable by a read; the pump sets them aside.
    pub(super) damaged: Vec<Damaged>,
    /// Taken by the pump while it writes.
    pub(super) store: Option<IdbStore>,
    pub(super) url: Option<String>,
    pub(super) token: Option<String>,
    pub(super) name: String,
    pub(super) link: Option<Link>,
    /// The engine's session of the current link, 0 while there is none (or it is still
    /// opening).
    pub(super) session: SessionId,
    /// The current link's number, 0 when there is none: callbacks of an older socket find
    /// another number here and do nothing.
    pub(super) dial: u64,
    pub(super) next_dial: u64,
    pub(super) handshake_done: bool,
    pub(super) backoff: Backoff,
    pub(super) timer: Option<i32>,
    pub(super) closed: bool,
    /// The id of the next call this tab forwards to the leader (with its tab id, the
    /// idempotency key).
    pub(super) next_call: u64,
    /// Requests waiting for `Event::Acked`: our own promises, or a follower tab's call.
    pub(super) waiting: Pending<Waiter>,
    /// `subscribeCollections` calls waiting for `Event::Replicated` of their list (as
    /// `Engine::replicate` names it):
    /// resolve and reject.
    pub(super) replicating: Vec<(Vec<String>, Function, Function)>,
    pub(super) next_sub: u32,
    pub(super) subs: Vec<Sub>,
    /// What a cloud replica holds of our writes (persisted) and what the current peer does.
    pub(super) cloud: CloudProgress,
    pub(super) cloud_at: u64,
    pub(super) cloud_dirty: bool,
    pub(super) peer: CloudProgress,
    pub(super) peer_tier: Option<Tier>,
    pub(super) incoming: u64,
    pub(super) pumping: bool,
    /// Batches whose write failed; retried before anything newer.
    pub(super) unwritten: Vec<PersistBatch>,
    pub(super) error: Option<String>,
    pub(super) last_status: Option<SyncStatus>,
    pub(super) release_lock: Option<Function>,
    pub(super) listeners: Vec<(&'static str, Listener)>,
    /// Other tabs of this profile on the same store (`None` without BroadcastChannel).
    pub(super) tabs: Option<TabChannel>,
    /// This tab follows a leader tab (it has no link and makes no writes itself).
    pub(super) follower: bool,
    pub(super) tab_id: u64,
    /// Follower: calls forwarded to the leader, by id, until it answers.
    pub(super) forwarded: Pending<(Frame, Function, Function)>,
    /// Follower: what the leader last said about the link and presence.
    pub(super) mirror_status: Option<JsValue>,
    pub(super) mirror_presence: Option<JsValue>,
    /// Messages from other tabs, handled one at a time (a batch is re-read before the
    /// replies that follow it are answered).
    pub(super) inbox: VecDeque<TabMsg>,
    pub(super) inbox_busy: bool,
    /// Leader: a follower has shown up, so stored batches are worth announcing.
    pub(super) followers: bool,
    pub(super) heartbeat_ms: u32,
    /// When the link last delivered a frame.
    pub(super) last_rx: u64,
    pub(super) heartbeat: Option<(i32, Closure<dyn FnMut()>)>,
}

/// An input for the engine that reads documents: the pump reads them from IndexedDB first.
pub(super) enum Input {
    /// A write made here or forwarded by a follower tab (with its idempotency key).
    Call {
        frame: Frame,
        key: Option<RequestKey>,
        waiter: Waiter,
    },
    /// A frame from the link of `session`.
    Frame { session: SessionId, frame: Frame },
}

impl Input {
    /// The documents the engine reads when it takes this input.
    pub(super) fn keys(&self) -> Vec<DocKey> {
        match self {
            Input::Call { frame, .. } => match frame {
                Frame::Put { collection, id, .. }
                | Frame::Patch { collection, id, .. }
                | Frame::Delete { collection, id, .. }
                | Frame::Resolve { collection, id, .. } => {
                    vec![DocKey::new(collection.clone(), id.clone())]
                }
                _ => Vec::new(),
            },
            Input::Frame {
                frame: Frame::Push(p),
                ..
            } => p
                .docs
                .iter()
                .map(|e| DocKey::new(e.collection.clone(), e.id.clone()))
                .collect(),
            Input::Frame { .. } => Vec::new(),
        }
    }
}

pub(super) enum Waiter {
    Local(Function, Function),
    Tab { tab: u64, id: u64 },
}

pub(super) type Listener = Closure<dyn FnMut(web_sys::Event)>;

pub(super) type Shared = Rc<RefCell<Inner>>;

impl Inner {
    pub(super) fn status(&self) -> SyncStatus {
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
            collections: self.engine.config().collections.clone(),
            replicating: self.engine.replicating().map(<[String]>::to_vec),
            forgetting: self.engine.forgetting().to_vec(),
        }
    }

    /// What the host learns from a frame before the engine takes it: a refusal from the
    /// host, before or after the handshake. One that repeats on every reconnect (a push the
    /// host will never take) stays visible, since only progress clears it
    /// (`clear_error_on_progress`). What the engine understands — the peer's tier and what
    /// it holds, catch-up progress — comes as events instead (`drain.rs`).
    pub(super) fn observe(&mut self, frame: &Frame) {
        if let Frame::Error { code, message, .. } = frame {
            self.error = Some(format!("{}: {message}", code.as_str()));
        }
    }

    /// The error is cleared once sync works again: the link is up and the peer holds every
    /// write of ours, with nothing left to store or receive.
    pub(super) fn clear_error_on_progress(&mut self) {
        let r = self.engine.replica();
        let own = r.latest_vector().get(r.id());
        let online = self.session != 0 && self.handshake_done;
        if online && own <= self.peer.acked && self.incoming == 0 && self.unwritten.is_empty() {
            self.error = None;
        }
    }

    pub(super) fn drop_link(&mut self) {
        self.link = None;
        self.dial = 0;
        let s = std::mem::take(&mut self.session);
        if s != 0 {
            self.engine.close(s);
        }
        self.handshake_done = false;
        self.incoming = 0;
    }
}

pub(super) fn callbacks(rc: &Shared, want: impl Fn(&SubKind) -> bool) -> Vec<Function> {
    rc.borrow()
        .subs
        .iter()
        .filter(|s| want(&s.kind))
        .map(|s| s.f.clone())
        .collect()
}

/// Calls waiting for an answer, by id, in id order. Ids are handed out in increasing order
/// and answered mostly in order, so a sorted `VecDeque` does what a `BTreeMap` would, and
/// compiles to far less code in the package than a B-tree per value type.
pub(super) struct Pending<V>(VecDeque<(u64, V)>);

impl<V> Default for Pending<V> {
    fn default() -> Self {
        Pending(VecDeque::new())
    }
}

impl<V> Pending<V> {
    /// Adds (or replaces) the entry of `id`.
    pub(super) fn insert(&mut self, id: u64, v: V) {
        match self.0.binary_search_by_key(&id, |e| e.0) {
            Ok(i) => self.0[i].1 = v,
            Err(i) => self.0.insert(i, (id, v)),
        }
    }

    pub(super) fn remove(&mut self, id: &u64) -> Option<V> {
        let i = self.0.binary_search_by_key(id, |e| e.0).ok()?;
        self.0.remove(i).map(|e| e.1)
    }

    pub(super) fn into_values(self) -> impl Iterator<Item = V> {
        self.0.into_iter().map(|e| e.1)
    }
}

impl<V> IntoIterator for Pending<V> {
    type Item = (u64, V);
    type IntoIter = std::collections::vec_deque::IntoIter<(u64, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a Pending<V> {
    type Item = &'a (u64, V);
    type IntoIter = std::collections::vec_deque::Iter<'a, (u64, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
