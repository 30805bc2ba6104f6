//! The one harness for engine tests: engines driven the way a host drives them, on a virtual
//! clock, joined by in-memory links whose frames really go through a codec.
//!
//! Used by `tests/engine.rs`, `tests/trust.rs`, `tests/wasm.rs` (run natively and compiled to
//! wasm32) and `examples/wasm_probe.rs` (the module whose imports `scripts/test.sh` checks),
//! so all exercise the path a host takes: persist what is staged, report it persisted, then
//! send; encode each frame to bytes, decode it on the other side, feed it in; fire the timers
//! the engine asks for when the clock reaches them.
//!
//! **Every call into [`Engine`] the tests make is in this file** ([`Node`] wraps it), so a
//! change to the engine's API is adapted here once. Time is virtual: [`Net::now_ms`] moves
//! only when a test says so ([`Net::advance`]), and timers fire only then.
#![allow(dead_code)] // each test file uses part of it

use bridge_core::codec::{decode_binary, decode_json, encode_binary, encode_json};
use bridge_core::engine::PeerStatus;
use bridge_core::error::Result as CoreResult;
use bridge_core::message::{MessageId, PresenceEntry};
use bridge_core::testing;
use bridge_core::{
    DocKey, Dot, Engine, EngineConfig, Error, ErrorCode, Event, Frame, PersistBatch, Policy,
    Replica, ReplicaId, SessionId, Tier, Transmit, WriteOp,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How frames cross a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// The JSON text encoding every agent speaks.
    Json,
    /// The compact binary encoding peers use.
    Binary,
}

impl Wire {
    /// `frame` as the other side decodes it, and its size in bytes on the wire.
    pub fn carry(self, frame: &Frame) -> Result<(Frame, usize), String> {
        let bytes = match self {
            Wire::Json => encode_json(frame).into_bytes(),
            Wire::Binary => encode_binary(frame),
        };
        match self {
            Wire::Json => decode_json(&bytes),
            Wire::Binary => decode_binary(&bytes),
        }
        .map(|f| (f, bytes.len()))
        .map_err(|e| format!("{} frame did not survive the codec: {e}", frame.type_name()))
    }

    /// `frame` after a round trip through this encoding (panics if it does not survive).
    pub fn round_trip(self, frame: &Frame) -> Frame {
        match self.carry(frame) {
            Ok((f, _)) => f,
            Err(e) => panic!("{e}"),
        }
    }
}

/// What an engine sends: a frame on a session, or `None` for a close.
pub type Out = (SessionId, Option<Frame>);

/// One engine, driven as a host drives it.
///
/// The engine numbers its sessions; a test that wants to name one itself opens it with
/// [`Node::accept_as`] / [`Node::connect_as`], and the node translates that name to the
/// engine's id and back on every call (sessions opened with [`Node::accept`] /
/// [`Node::connect`] keep the engine's id).
pub struct Node {
    engine: Engine,
    /// The test's name of a session → the engine's id, and back.
    to_engine: BTreeMap<SessionId, SessionId>,
    to_test: BTreeMap<SessionId, SessionId>,
}

impl Node {
    pub fn new(cfg: EngineConfig) -> Node {
        Node {
            engine: Engine::new(cfg),
            to_engine: BTreeMap::new(),
            to_test: BTreeMap::new(),
        }
    }

    fn engine_id(&self, session: SessionId) -> SessionId {
        self.to_engine.get(&session).copied().unwrap_or(session)
    }

    fn test_id(&self, session: SessionId) -> SessionId {
        self.to_test.get(&session).copied().unwrap_or(session)
    }

    fn name(&mut self, name: SessionId, id: SessionId) -> SessionId {
        self.to_engine.insert(name, id);
        self.to_test.insert(id, name);
        name
    }

    fn translate(&self, t: Transmit) -> Transmit {
        match t {
            Transmit::Frame { session, frame } => Transmit::Frame {
                session: self.test_id(session),
                frame,
            },
            Transmit::Close {
                session,
                code,
                reason,
            } => Transmit::Close {
                session: self.test_id(session),
                code,
                reason,
            },
        }
    }

    /// A node of `tier` in `space` with the default configuration.
    pub fn of(id: u64, tier: Tier, space: &str) -> Node {
        Node::new(EngineConfig::new(ReplicaId(id), tier, space))
    }

    // ---- getters ---------------------------------------------------------------------------

    pub fn replica(&self) -> &Replica {
        self.engine.replica()
    }

    /// The replica itself, to meddle with it as an attacker would.
    pub fn replica_mut(&mut self) -> &mut Replica {
        self.engine.replica_mut()
    }

    pub fn config(&self) -> &EngineConfig {
        self.engine.config()
    }

    /// The engine, for calls the node does not wrap.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The engine, to read what the node does not wrap.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn has_staged(&self) -> bool {
        self.engine.has_staged()
    }

    pub fn peer_status(&self, session: SessionId) -> Option<PeerStatus> {
        self.engine.peer_status(self.engine_id(session))
    }

    pub fn presence(&self) -> Vec<PresenceEntry> {
        self.engine.presence()
    }

    // ---- sessions and frames ---------------------------------------------------------------

    /// A connection came in; the session id the engine gave it.
    pub fn accept(&mut self, now_ms: u64) -> SessionId {
        self.engine.accept(now_ms)
    }

    /// We dial a peer; the session id the engine gave the link.
    pub fn connect(&mut self, now_ms: u64, token: Option<String>, name: &str) -> SessionId {
        self.engine.connect(now_ms, token, name)
    }

    /// [`Node::accept`], the session named `name` by the test.
    pub fn accept_as(&mut self, now_ms: u64, name: SessionId) -> SessionId {
        let id = self.engine.accept(now_ms);
        self.name(name, id)
    }

    /// [`Node::connect`], the session named `name` by the test.
    pub fn connect_as(
        &mut self,
        now_ms: u64,
        name: SessionId,
        token: Option<String>,
        peer: &str,
    ) -> SessionId {
        let id = self.engine.connect(now_ms, token, peer);
        self.name(name, id)
    }

    pub fn close(&mut self, session: SessionId) {
        self.engine.close(self.engine_id(session));
    }

    pub fn handle_frame(&mut self, now_ms: u64, session: SessionId, frame: Frame) {
        self.engine
            .handle_frame(now_ms, self.engine_id(session), frame);
    }

    pub fn handle_decode_error(&mut self, session: SessionId, req: Option<u64>, e: &Error) {
        self.engine
            .handle_decode_error(self.engine_id(session), req, e);
    }

    // ---- the host's own API ----------------------------------------------------------------------

    /// A write through the host's own API ([`Engine::request`], `admin`); its dot.
    /// A request from the host's own API (HTTP) by a caller holding `grant`.
    #[allow(dead_code)]
    pub fn request(
        &mut self,
        now_ms: u64,
        grant: &bridge_core::auth::Grant,
        request: bridge_core::Request,
    ) -> CoreResult<bridge_core::Answer> {
        self.engine.request(now_ms, grant, request)
    }

    pub fn write(&mut self, now_ms: u64, key: DocKey, op: WriteOp) -> CoreResult<Dot> {
        testing::write(&mut self.engine, now_ms, key, op)
    }

    pub fn resolve(
        &mut self,
        now_ms: u64,
        key: DocKey,
        value: Option<Map<String, Value>>,
    ) -> CoreResult<Dot> {
        testing::resolve(&mut self.engine, now_ms, key, value)
    }

    pub fn set_policy(&mut self, now_ms: u64, collection: &str, policy: Policy) -> CoreResult<Dot> {
        testing::set_policy(&mut self.engine, now_ms, collection, policy)
    }

    pub fn publish(&mut self, now_ms: u64, channel: &str, payload: Value) -> CoreResult<MessageId> {
        testing::publish(&mut self.engine, now_ms, channel, payload)
    }

    // ---- persistence, output, timers -------------------------------------------------------

    /// The next batch to persist (a test that looks inside batches or reports them itself).
    pub fn poll_persist(&mut self) -> Option<PersistBatch> {
        self.engine.poll_persist()
    }

    pub fn persisted(&mut self, id: u64) -> CoreResult<()> {
        self.engine.persisted(id)
    }

    /// Persists every staged batch, in order, as a host does before it sends anything.
    pub fn persist_all(&mut self) {
        while let Some(batch) = self.engine.poll_persist() {
            // A real host writes `batch` to its store before saying so.
            if let Err(e) = self.engine.persisted(batch.id) {
                panic!("persisted({}): {e}", batch.id);
            }
        }
    }

    /// Everything the engine wants to send now, without persisting first.
    pub fn drain(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        while let Some(t) = self.engine.poll_transmit() {
            out.push(match self.translate(t) {
                Transmit::Frame { session, frame } => (session, Some(frame)),
                Transmit::Close { session, .. } => (session, None),
            });
        }
        out
    }

    /// The next transmit, closes with their codes (for links that must see them).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.engine.poll_transmit().map(|t| self.translate(t))
    }

    /// A host's turn after an input: persist, then send.
    pub fn flush(&mut self) -> Vec<Out> {
        self.persist_all();
        self.drain()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.engine.poll_event()
    }

    /// Every pending event.
    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }

    /// The engine's next deadline on the clock the host passes.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.engine.poll_timeout()
    }

    /// Does whatever is due at `now_ms`, as a host's timer would when it fires.
    pub fn fire_timers(&mut self, now_ms: u64) {
        while self.engine.poll_timeout().is_some_and(|d| d <= now_ms) {
            self.engine.handle_timeout(now_ms);
            // A deadline at or before `now_ms` that handling did not move would loop.
            if self.engine.poll_timeout().is_some_and(|d| d <= now_ms) {
                break;
            }
        }
    }
}

/// Carries frames between two nodes held apart (`(node, its session)` each) at `now_ms`,
/// each persisting before it sends, until both are quiet. Panics on a close or after 1,000
/// rounds.
pub fn sync_pair(now_ms: u64, a: (&mut Node, SessionId), b: (&mut Node, SessionId), wire: Wire) {
    let ((a, sa), (b, sb)) = (a, b);
    for _ in 0..1000 {
        let there = hop(now_ms, (a, sa), (b, sb), wire);
        let back = hop(now_ms, (b, sb), (a, sa), wire);
        if !there && !back && !a.has_staged() && !b.has_staged() {
            return;
        }
    }
    panic!("the two nodes did not settle");
}

/// `from` persists and sends; its frames reach `to`. Returns whether anything was sent.
fn hop(now_ms: u64, from: (&mut Node, SessionId), to: (&mut Node, SessionId), wire: Wire) -> bool {
    let ((from, s_from), (to, s_to)) = (from, to);
    let out = from.flush();
    for (s, f) in &out {
        assert_eq!(*s, s_from, "only the link sends");
        let f = f
            .as_ref()
            .unwrap_or_else(|| panic!("session {s_from} closed"));
        to.handle_frame(now_ms, s_to, wire.round_trip(f));
    }
    !out.is_empty()
}

/// A link between two nodes: (dialer, its session, acceptor, its session, encoding). A
/// closed link has both sessions set to 0.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub dialer: usize,
    pub dialer_session: SessionId,
    pub acceptor: usize,
    pub acceptor_session: SessionId,
    pub wire: Wire,
}

impl Link {
    pub fn is_open(&self) -> bool {
        self.dialer_session != 0
    }
}

/// Nodes joined by links, on one virtual clock.
pub struct Net {
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    /// The virtual clock every input carries (ms).
    pub now_ms: u64,
    /// Frames carried so far, all links, both directions.
    pub frames: u64,
    /// Bytes carried so far.
    pub bytes: u64,
    /// Links that carry nothing for now (a frozen or partitioned peer): frames sent on them
    /// are lost.
    pub frozen: Vec<usize>,
}

impl Net {
    pub fn new(nodes: Vec<Node>) -> Net {
        Net {
            nodes,
            links: Vec::new(),
            now_ms: 0,
            frames: 0,
            bytes: 0,
            frozen: Vec::new(),
        }
    }

    /// The clock at `now_ms` (never backwards).
    pub fn at(&mut self, now_ms: u64) -> &mut Net {
        self.now_ms = self.now_ms.max(now_ms);
        self
    }

    /// Moves the clock on by `ms`, deadline by deadline: the clock jumps to the earliest
    /// deadline of any node, every node does what is due then, and the net settles (frames
    /// cross instantly) before the next. Returns the close codes asked for on the way.
    pub fn advance(&mut self, ms: u64) -> Vec<ErrorCode> {
        let target = self.now_ms + ms;
        let mut closes = self.pump();
        for _ in 0..100_000 {
            let next = self.nodes.iter().filter_map(Node::poll_timeout).min();
            match next {
                Some(d) if d <= target => {
                    self.now_ms = self.now_ms.max(d);
                    let now = self.now_ms;
                    for n in &mut self.nodes {
                        n.fire_timers(now);
                    }
                    closes.extend(self.pump());
                }
                _ => {
                    self.now_ms = target;
                    return closes;
                }
            }
        }
        panic!("timers keep firing at {} ms", self.now_ms);
    }

    /// Node `a` dials node `b` presenting `token`; returns the link's index.
    pub fn link(&mut self, a: usize, b: usize, token: Option<String>, wire: Wire) -> usize {
        let sa = self.nodes[a].connect(self.now_ms, token, "up");
        let sb = self.nodes[b].accept(self.now_ms);
        self.links.push(Link {
            dialer: a,
            dialer_session: sa,
            acceptor: b,
            acceptor_session: sb,
            wire,
        });
        self.links.len() - 1
    }

    /// Both ends close link `i` (a broken connection).
    pub fn unlink(&mut self, i: usize) {
        let l = self.links[i];
        if !l.is_open() {
            return;
        }
        self.nodes[l.dialer].close(l.dialer_session);
        self.nodes[l.acceptor].close(l.acceptor_session);
        self.links[i].dialer_session = 0;
        self.links[i].acceptor_session = 0;
    }

    /// The link and end a node's session belongs to.
    fn route(&self, node: usize, session: SessionId) -> Option<usize> {
        self.links.iter().position(|l| {
            l.is_open()
                && ((l.dialer == node && l.dialer_session == session)
                    || (l.acceptor == node && l.acceptor_session == session))
        })
    }

    /// One round: every node persists, then what it sends crosses its links. Returns whether
    /// anything was sent, and the close codes asked for (a closed link stops carrying).
    fn round(&mut self, closes: &mut Vec<ErrorCode>) -> Result<bool, String> {
        let mut moved = false;
        for n in 0..self.nodes.len() {
            self.nodes[n].persist_all();
            while let Some(t) = self.nodes[n].poll_transmit() {
                moved = true;
                let (session, frame) = match t {
                    Transmit::Frame { session, frame } => (session, Some(frame)),
                    Transmit::Close { session, code, .. } => {
                        closes.push(code);
                        (session, None)
                    }
                };
                let Some(i) = self.route(n, session) else {
                    continue;
                };
                let l = self.links[i];
                let Some(frame) = frame else {
                    self.unlink(i);
                    continue;
                };
                if self.frozen.contains(&i) {
                    continue;
                }
                let (frame, size) = l.wire.carry(&frame)?;
                self.frames += 1;
                self.bytes += size as u64;
                let now = self.now_ms;
                if l.dialer == n {
                    self.nodes[l.acceptor].handle_frame(now, l.acceptor_session, frame);
                } else {
                    self.nodes[l.dialer].handle_frame(now, l.dialer_session, frame);
                }
            }
        }
        Ok(moved)
    }

    /// Carries frames until everything is quiet (at most `max_rounds` rounds); returns the
    /// close codes asked for on the way.
    pub fn settle(&mut self, max_rounds: usize) -> Result<Vec<ErrorCode>, String> {
        let mut closes = Vec::new();
        for _ in 0..max_rounds {
            let moved = self.round(&mut closes)?;
            if !moved && self.nodes.iter().all(|n| !n.has_staged()) {
                return Ok(closes);
            }
        }
        Err(format!("still busy after {max_rounds} rounds"))
    }

    /// [`Net::settle`] that must succeed, within 10,000 rounds.
    pub fn pump(&mut self) -> Vec<ErrorCode> {
        match self.settle(10_000) {
            Ok(closes) => closes,
            Err(e) => panic!("{e}"),
        }
    }
}

/// The link's session id on `a` (the side that connects) in a [`Pair`]: its engine's first.
pub const A_SIDE: SessionId = 1;
/// The link's session id on `b` (the side that accepts) in a [`Pair`]: its engine's first.
pub const B_SIDE: SessionId = 1;

/// A local replica `a` (replica 1: a native host or a browser) linked to a cloud replica `b`
/// (replica 2: the relay), the link's frames in one encoding.
pub struct Pair {
    pub net: Net,
}

impl Pair {
    /// `a` connects to `b` in space `space`, at time 0.
    pub fn connect(space: &str, wire: Wire) -> Pair {
        let mut net = Net::new(vec![
            Node::of(1, Tier::Local, space),
            Node::of(2, Tier::Cloud, space),
        ]);
        net.link(0, 1, None, wire);
        let link = &net.links[0];
        assert_eq!(
            (link.dialer_session, link.acceptor_session),
            (A_SIDE, B_SIDE),
            "the engines number sessions from 1"
        );
        Pair { net }
    }

    pub fn a(&mut self) -> &mut Node {
        &mut self.net.nodes[0]
    }

    pub fn b(&mut self) -> &mut Node {
        &mut self.net.nodes[1]
    }

    /// Both replicas (to compare them).
    pub fn replicas(&self) -> (&Replica, &Replica) {
        (self.net.nodes[0].replica(), self.net.nodes[1].replica())
    }

    /// Persists, carries frames both ways and repeats until nothing moves, at `now_ms`.
    /// Fails if either side closes the link or the pair is still busy after `max_rounds`.
    pub fn settle(&mut self, now_ms: u64, max_rounds: usize) -> Result<(), String> {
        let closes = self.net.at(now_ms).settle(max_rounds)?;
        match closes.first() {
            None => Ok(()),
            Some(code) => Err(format!("link closed: {code:?}")),
        }
    }
}
