//! Deterministic simulation: many replicas, relays and agents as pure state machines over a
//! seeded network that drops (breaks connections), duplicates, reorders (across
//! connections), partitions, and crashes nodes — losing whatever they had not yet persisted.
//!
//! After the faults stop and the network heals, [`run`] checks:
//! - every replica holds identical documents and identical open conflicts, on disk too
//!   (each node is restarted from its simulated disk before the comparison);
//! - every acknowledged write is present, or superseded by a write that saw it;
//! - no deleted document is shown again because of a write the delete had seen;
//! - each agent received each message at most once and in per-sender order within each
//!   channel, and every
//!   message published after healing reached every subscriber exactly once.
//!
//! A failing run returns its seed; `SIM_SEED=n cargo test -p bridge-core --test sim` replays
//! it. The same loop runs from fuzzer bytes ([`run_bytes`]) instead of a seeded generator.
//!
//! Topology: node 0 is a cloud relay; node 1 is a hybrid host (tier local) linked up to
//! node 0 with an `admin` token (it relays); the remaining nodes are client replicas of
//! either tier, each linked to node 0 or node 1 with a `write` or an `admin` token (with
//! `write` they may introduce only their own writes); agents (plain protocol clients, no
//! replica) attach to nodes 0 and 1. Every node has its own random local default policy
//! (`CONFLICT_STRATEGY`): only a seed, so the space must still converge.
//!
//! Adversarial peers connect to node 0 or 1 with a `write` token and try what the trust rule
//! forbids: a push touching `_config`, a write of another replica, a watermark or context
//! claiming another replica's writes, a write of their own id above their watermark, a
//! message under another replica's origin. Each must be refused (never acknowledged), and
//! everything above must still hold.

use crate::auth::{self, Claims, Rights};
use crate::codec::{decode, encode_binary, encode_json};
use crate::doc::WriteOp;
use crate::frame::{Ack, DocEntry, Frame, Hello, Push, SessionKind};
use crate::message::{Message, MessageId, Retained};
use crate::replica::{PersistBatch, Replica};
use crate::request::{Answer, Reply, Request};
use crate::{
    DocKey, Dot, Engine, EngineConfig, Event, Output, Policy, ReplicaId, SessionId, Stamp, Tier,
    Transmit, VersionVector,
};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod actions;
mod checks;
mod store;

use store::SimDocs;

/// Where the simulation's choices come from.
pub trait Choices {
    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize;
    /// False when a byte source has run dry (the fault phase then ends).
    fn more(&self) -> bool {
        true
    }
    /// True with a chance of `per_mille` in 1000 (drawn with [`Choices::below`]).
    fn chance(&mut self, per_mille: usize) -> bool {
        self.below(1000) < per_mille
    }
}

/// splitmix64: small, fast, good enough, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`: the same seed gives the same run, on every platform.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Choices for Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Choices read from fuzzer bytes; zeros once exhausted.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// Choices read from `data`, two bytes (big-endian) per choice.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
}

impl Choices for Bytes<'_> {
    fn below(&mut self, n: usize) -> usize {
        let mut v = 0usize;
        for _ in 0..2 {
            let b = self.data.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            v = (v << 8) | b as usize;
        }
        v % n.max(1)
    }
    fn more(&self) -> bool {
        self.pos < self.data.len()
    }
}

/// The shape of one simulated scenario: how many of each participant, how long the fault
/// phase lasts, and how often each fault strikes.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Client replicas besides the relay (node 0) and the hybrid host (node 1).
    pub clients: usize,
    /// Agents (protocol clients without a replica), attached to nodes 0 and 1.
    pub agents: usize,
    /// Steps of the fault phase.
    pub steps: usize,
    /// Per-mille chances per step, on average: a link breaks.
    pub break_link: usize,
    /// On average, per mille per step (roughly): a node crashes, losing what it had not
    /// persisted.
    pub crash: usize,
    /// Per mille per frame delivered on a link between replicas: the frame arrives twice
    /// (agents' links never duplicate, as a WebSocket does not).
    pub duplicate: usize,
    /// Document ids per collection that writes pick from (few, so that writes collide).
    pub documents: usize,
    /// Adversarial peers (write tokens, forged pushes and messages).
    pub attackers: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            clients: 4,
            agents: 3,
            steps: 600,
            break_link: 15,
            crash: 6,
            duplicate: 20,
            documents: 6,
            attackers: 1,
        }
    }
}

impl SimConfig {
    /// A smaller run, for wasm32 and quick checks.
    pub fn short() -> Self {
        SimConfig {
            clients: 2,
            agents: 2,
            steps: 200,
            ..SimConfig::default()
        }
    }
}

/// What a passing run did (for logs and for checking that runs do real work).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Document writes acknowledged (to agents and to nodes' own API), each checked present
    /// or superseded at the end.
    pub acked_writes: usize,
    /// Acknowledged deletes, each checked to stay deleted.
    pub acked_deletes: usize,
    /// Channel messages delivered to agents.
    pub messages_delivered: usize,
    /// Frames delivered over links.
    pub frames: usize,
    /// Node crashes.
    pub crashes: usize,
    /// Links broken (by the fault, by partitions, by crashes).
    pub breaks: usize,
    /// Open conflicts left at the end (the same on every replica).
    pub conflicts_open: usize,
    /// Documents held at the end (the same on every replica).
    pub docs: usize,
    /// Delivery rounds the healing phase took to go quiet.
    pub heal_rounds: usize,
    /// Forged pushes and messages sent by adversarial peers, and sessions closed on them.
    pub attacks: usize,
    /// Sessions of adversarial peers that the servers closed.
    pub attacks_refused: usize,
    /// Writes below the root's stable horizon at the end (the sum of its counters).
    pub horizon: usize,
    /// Documents collected, over every node's disk.
    pub collected: usize,
    /// Resyncs a server began (a peer behind its horizon, after an expiry).
    pub resyncs: usize,
    /// Documents of their collections that partial replicas hold at the end.
    pub partial_docs: usize,
    /// Writes partial replicas made to documents of other collections (blind writes).
    pub blind_writes: usize,
    /// Pages of initial syncs by key that were not the last (a push with no watermark
    /// and documents still to come).
    pub fill_pages: usize,
    /// `hello`s of partial replicas holding documents their vector does not claim (a walk
    /// by key cut short).
    pub unclaimed: usize,
    /// Changes of collections that took effect ([`Event::Replicated`]).
    pub replicated: usize,
}

/// A run that broke an invariant (or hit an engine error): where, and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The seed of the run, to replay it with `SIM_SEED`; `None` for runs from fuzzer bytes.
    pub seed: Option<u64>,
    /// The fault-phase step it failed at (the last one when it failed while healing or in
    /// the final checks).
    pub step: usize,
    /// What went wrong, for a person to read.
    pub what: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seed {
            Some(s) => write!(
                f,
                "simulation failed (SIM_SEED={s}) at step {}: {}",
                self.step, self.what
            ),
            None => write!(f, "simulation failed at step {}: {}", self.step, self.what),
        }
    }
}

const SPACE: &str = "sim";
const SECRET: &[u8] = b"sim-secret";
/// Replica ids the adversaries claim (never a real node's).
const ATTACKER_BASE: u64 = 0x6660;

/// A token with `rights`, scoped to `scope` (each pattern at `rights`) when given.
fn token(rights: Rights, scope: Option<&[String]>) -> String {
    auth::mint(
        SECRET,
        &Claims {
            space: SPACE.into(),
            rights,
            exp: u64::MAX,
            collections: scope.map(|s| s.iter().map(|p| (p.clone(), rights)).collect()),
        },
    )
}

/// The subscriptions a partial client may have (`EngineConfig::collections`).
const SUBSCRIPTIONS: [&[&str]; 4] = [&["k0"], &["k1", "k2"], &["k*"], &["k2*"]];
const CHANNELS: [&str; 2] = ["c0", "c1"];
const COLLECTIONS: [&str; 3] = ["k0", "k1", "k2"];

#[derive(Default)]
struct Disk {
    docs: SimDocs,
    vector: VersionVector,
    clock: Stamp,
    msg_seen: VersionVector,
    stability: crate::replica::Stability,
    /// Documents collected on this disk.
    collected: usize,
}

impl Disk {
    fn write(&mut self, b: &PersistBatch) {
        if let Some(s) = &b.stability {
            self.stability = s.clone();
        }
        for (k, s) in &b.docs {
            self.docs.put(k.clone(), crate::DocState::clone(s));
        }
        for k in &b.collected {
            self.docs.remove(k);
        }
        self.collected += b.collected.len();
        self.vector = b.vector.clone();
        self.clock = b.clock;
        self.msg_seen = b.message_seen.clone();
        self.docs.put_messages(&b.messages, &b.retain);
    }
}

struct Node {
    cfg: EngineConfig,
    engine: Engine,
    disk: Disk,
    writing: VecDeque<PersistBatch>,
    offset_ms: u64,
    /// Steps during which the node stays cut off.
    partitioned_until: usize,
    /// A partial client's collections as last asked for ([`Engine::replicate`]): asked
    /// again after a restart, as a host does with its setting.
    want: Option<Vec<String>>,
}

impl Node {
    /// Odd nodes read their durable layer from their disk through a tiny cache (0, 512 or
    /// 4096 bytes: evicting at nearly every step), half of them caching what they write too;
    /// even nodes hold it in memory.
    fn boot(cfg: EngineConfig, disk: Disk, offset_ms: u64) -> Node {
        let stored = cfg.replica.0 % 2 == 1;
        let mut engine = if stored {
            disk.docs.lock().cache_new_writes = cfg.replica.0 % 4 == 1;
            Engine::with_store(cfg.clone(), Box::new(disk.docs.clone()))
        } else {
            Engine::new(cfg.clone())
        };
        let r = engine.replica_mut();
        for (k, s) in disk.docs.snapshot() {
            // A stored replica reads its documents from disk; only `_config` is restored.
            if !stored || k.collection == crate::replica::CONFIG_COLLECTION {
                r.restore_doc(k, s);
            }
        }
        r.restore_meta(disk.vector.clone(), disk.clock, disk.msg_seen.clone());
        engine.restore_stability(disk.stability.clone());
        let r = engine.replica_mut();
        if stored {
            // A stored replica reads its retained messages from disk when it replays them.
            r.restore_message_offset(disk.docs.last_offset());
        } else {
            let messages: Vec<Retained> = disk.docs.lock().messages.values().cloned().collect();
            for m in messages {
                r.restore_message(m);
            }
        }
        Node {
            cfg,
            engine,
            disk,
            writing: VecDeque::new(),
            offset_ms,
            partitioned_until: 0,
            want: None,
        }
    }

    /// Asks for `want` (when the store replicates something else), as a host does at start.
    fn ask(&mut self, want: Option<Vec<String>>) -> Result<(), String> {
        if std::env::var("SIM_DEBUG").is_ok() {
            eprintln!(
                "replica {}: has {:?}, asks {want:?}",
                self.cfg.replica,
                self.engine.config().collections
            );
        }
        if let Some(w) = &want {
            self.engine
                .ask_collections(w.clone())
                .map_err(|e| format!("replicate {w:?} refused: {e}"))?;
        }
        self.want = want;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum End {
    Node(usize),
    Agent(usize),
    Attacker(usize),
}

enum Wire {
    Frame(Vec<u8>),
    Close,
}

struct Link {
    client: End,
    server: usize,
    up: bool,
    client_sid: SessionId,
    server_sid: SessionId,
    to_server: VecDeque<Wire>,
    to_client: VecDeque<Wire>,
    /// Peer links alternate between the binary and the JSON encoding.
    binary: bool,
    /// What the client's token allows.
    rights: Rights,
    /// The collections the client's token is scoped to (each at `rights`), if it is.
    scope: Option<Vec<String>>,
}

impl Link {
    fn encode(&self, frame: &Frame) -> Vec<u8> {
        if self.binary {
            encode_binary(frame)
        } else {
            encode_json(frame).into_bytes()
        }
    }
}

#[derive(Default)]
struct Agent {
    node: usize,
    link: usize,
    next_req: u64,
    writes: BTreeMap<u64, DocKey>,
    cursor: u64,
    last_seq: BTreeMap<(String, ReplicaId), u64>,
    received: BTreeSet<MessageId>,
    ready: bool,
}

struct World<'c, C: Choices> {
    c: &'c mut C,
    cfg: SimConfig,
    nodes: Vec<Node>,
    links: Vec<Link>,
    agents: Vec<Agent>,
    time: u64,
    step: usize,
    acked: Vec<(DocKey, Dot)>,
    delete_ctx: BTreeMap<Dot, (DocKey, VersionVector)>,
    acked_deletes: Vec<Dot>,
    local_reqs: BTreeMap<(usize, u64), DocKey>,
    report: Report,
    attacks: usize,
    /// `SIM_TRACE_KEY` (debugging): each node's last state of that document, shown.
    traced: BTreeMap<usize, String>,
}

/// Runs one seeded scenario with the default configuration.
pub fn run(seed: u64) -> Result<Report, Failure> {
    run_with(seed, &SimConfig::default())
}

/// Runs one seeded scenario of the shape `cfg`. A failure carries `seed`.
pub fn run_with(seed: u64, cfg: &SimConfig) -> Result<Report, Failure> {
    let mut rng = Rng::new(seed);
    simulate(&mut rng, cfg).map_err(|mut f| {
        f.seed = Some(seed);
        f
    })
}

/// Runs the scenario driven by fuzzer bytes.
pub fn run_bytes(data: &[u8]) -> Result<Report, Failure> {
    let mut b = Bytes::new(data);
    let cfg = SimConfig {
        steps: data.len(),
        ..SimConfig::short()
    };
    simulate(&mut b, &cfg)
}

/// Runs one scenario with choices from `c`: the fault phase of `cfg.steps` steps, then
/// healing, restarting every node from its disk, and the checks of the module documentation.
pub fn simulate<C: Choices>(c: &mut C, cfg: &SimConfig) -> Result<Report, Failure> {
    let mut w = World::new(c, cfg.clone());
    w.run().map_err(|what| Failure {
        seed: None,
        step: w.step,
        what,
    })?;
    Ok(w.report)
}

impl<'c, C: Choices> World<'c, C> {
    fn new(c: &'c mut C, cfg: SimConfig) -> Self {
        let mut nodes = Vec::new();
        let total = cfg.clients + 2;
        // Clients with a write token may introduce only their own writes; like browsers,
        // they do not seed the space's default policy.
        let rights: Vec<Rights> = (0..total)
            .map(|i| match i {
                0 | 1 => Rights::Admin,
                _ if c.chance(500) => Rights::Write,
                _ => Rights::Admin,
            })
            .collect();
        // Some clients replicate part of the space; some of those hold a token scoped to it
        // (and then write only there).
        let subs: Vec<Option<Vec<String>>> = (0..total)
            .map(|i| {
                (i >= 2 && c.chance(250)).then(|| {
                    let sub = SUBSCRIPTIONS[c.below(SUBSCRIPTIONS.len())];
                    sub.iter().map(|p| p.to_string()).collect()
                })
            })
            .collect();
        let scoped: Vec<Option<Vec<String>>> = subs
            .iter()
            .map(|s| s.clone().filter(|_| c.chance(500)))
            .collect();
        for (i, &r) in rights.iter().enumerate() {
            let tier = match i {
                0 => Tier::Cloud,
                1 => Tier::Local,
                _ if c.chance(300) => Tier::Cloud,
                _ => Tier::Local,
            };
            let mut ec = EngineConfig::new(ReplicaId(0x100 + i as u64), tier, SPACE);
            ec.default_policy = Policy::ALL[c.below(Policy::ALL.len())];
            ec.seed_default_policy = r == Rights::Admin;
            ec.secret = Some(SECRET.to_vec());
            ec.batch_docs = 1 + c.below(4);
            ec.window = 1 + c.below(3);
            ec.default_retain = [0, 3, 100][c.below(3)];
            ec.cache_bytes = [0, 512, 4096][i % 3];
            // Node 0 dials nobody: it is the root that computes the stable horizon.
            ec.root = i == 0;
            // Most nodes collect tombstones below their horizon; the rest keep them. Some
            // servers give up on a peer gone for a while (it resyncs when it comes back).
            ec.collect = !c.chance(200);
            if i < 2 && c.chance(400) {
                ec.expiry_ms = Some(20 + c.below(300) as u64);
            }
            ec.collections = subs[i].clone();
            let offset = c.below(3000) as u64;
            nodes.push(Node::boot(ec, Disk::default(), offset));
        }
        let mut w = World {
            c,
            cfg,
            nodes,
            links: Vec::new(),
            agents: Vec::new(),
            time: 1_000_000,
            step: 0,
            acked: Vec::new(),
            delete_ctx: BTreeMap::new(),
            acked_deletes: Vec::new(),
            local_reqs: BTreeMap::new(),
            report: Report::default(),
            attacks: 0,
            traced: BTreeMap::new(),
        };
        // node 1 (hybrid) links up to the relay; clients link to node 0 or 1.
        w.add_link(End::Node(1), 0, Rights::Admin, None);
        for (i, &r) in rights.iter().enumerate().skip(2) {
            let server = w.c.below(2);
            w.add_link(End::Node(i), server, r, scoped[i].clone());
        }
        for a in 0..w.cfg.agents {
            let server = a % 2;
            let link = w.links.len();
            w.agents.push(Agent {
                node: server,
                link,
                next_req: 1,
                ..Agent::default()
            });
            w.add_link(End::Agent(a), server, Rights::Admin, None);
        }
        for x in 0..w.cfg.attackers {
            let server = w.c.below(2);
            w.add_link(End::Attacker(x), server, Rights::Write, None);
        }
        w
    }

    fn now(&self, node: usize) -> u64 {
        self.time + self.nodes[node].offset_ms
    }

    fn add_link(&mut self, client: End, server: usize, rights: Rights, scope: Option<Vec<String>>) {
        self.links.push(Link {
            client,
            server,
            up: false,
            client_sid: 0,
            server_sid: 0,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            binary: !matches!(client, End::Agent(_)) && self.links.len() % 2 == 1,
            rights,
            scope,
        });
        let l = self.links.len() - 1;
        self.connect(l);
    }

    fn connect(&mut self, l: usize) {
        let (client, server) = (self.links[l].client, self.links[l].server);
        {
            let link = &mut self.links[l];
            link.up = true;
            link.client_sid = 0;
            link.to_server.clear();
            link.to_client.clear();
        }
        let now = self.now(server);
        self.links[l].server_sid = self.nodes[server].engine.accept(now);
        match client {
            End::Node(n) => {
                let now = self.now(n);
                let t = token(self.links[l].rights, self.links[l].scope.as_deref());
                self.links[l].client_sid = self.nodes[n].engine.connect(now, Some(t), "sim");
            }
            End::Attacker(x) => {
                let hello = Frame::Hello(Hello {
                    space: SPACE.into(),
                    kind: SessionKind::Peer,
                    name: Some(format!("attacker-{x}")),
                    token: Some(token(Rights::Write, None)),
                    replica: Some(ReplicaId(ATTACKER_BASE + x as u64)),
                    tier: Some(Tier::Local),
                    vector: Some(VersionVector::new()),
                    messages: Some(VersionVector::new()),
                    horizon: None,
                    collections: None,
                    unclaimed: None,
                    // Half the attackers speak as builds before the compact `push`.
                    compact: (x % 2 == 0).then_some(true),
                });
                let link = &mut self.links[l];
                let bytes = link.encode(&hello);
                link.to_server.push_back(Wire::Frame(bytes));
            }
            End::Agent(a) => {
                let hello = Frame::Hello(Hello {
                    space: SPACE.into(),
                    kind: SessionKind::Agent,
                    name: Some(format!("agent-{a}")),
                    token: Some(token(Rights::Admin, None)),
                    ..Hello::default()
                });
                let cursor = self.agents[a].cursor;
                self.agents[a].ready = false;
                let link = &mut self.links[l];
                link.to_server
                    .push_back(Wire::Frame(encode_json(&hello).into_bytes()));
                for ch in CHANNELS {
                    let sub = Frame::Subscribe {
                        req: None,
                        channel: Some(ch.into()),
                        collection: None,
                        from: Some(cursor),
                    };
                    link.to_server
                        .push_back(Wire::Frame(encode_json(&sub).into_bytes()));
                }
            }
        }
    }

    fn break_link(&mut self, l: usize) {
        if !self.links[l].up {
            return;
        }
        self.report.breaks += 1;
        let link = &mut self.links[l];
        link.up = false;
        link.to_server.clear();
        link.to_client.clear();
        let (client, server, csid, ssid) =
            (link.client, link.server, link.client_sid, link.server_sid);
        self.nodes[server].engine.close(ssid);
        if let End::Node(n) = client {
            self.nodes[n].engine.close(csid);
        }
    }

    fn node_links(&self, n: usize) -> Vec<usize> {
        (0..self.links.len())
            .filter(|&l| self.links[l].server == n || self.links[l].client == End::Node(n))
            .collect()
    }

    fn crash(&mut self, n: usize) -> Result<(), String> {
        self.report.crashes += 1;
        for l in self.node_links(n) {
            self.break_link(l);
        }
        // Writes that were not durable are gone, and their dots may be reused.
        let me = self.nodes[n].cfg.replica;
        let durable = self.nodes[n].disk.vector.get(me);
        self.delete_ctx
            .retain(|d, _| d.replica != me || d.counter <= durable);
        let node = &mut self.nodes[n];
        node.writing.clear();
        let disk = std::mem::take(&mut node.disk);
        let (cfg, offset, want) = (node.cfg.clone(), node.offset_ms, node.want.clone());
        self.nodes[n] = Node::boot(cfg, disk, offset);
        self.nodes[n].ask(want)?;
        self.local_reqs.retain(|(node, _), _| *node != n);
        Ok(())
    }

    // ---- the host loop of every node ---------------------------------------------------------

    fn pump(&mut self) -> Result<(), String> {
        for n in 0..self.nodes.len() {
            // The simulated disk is asynchronous: batches are written (and reported with
            // `batches_persisted`) at random later steps, or lost in a crash.
            let node = &mut self.nodes[n];
            node.writing.extend(node.engine.cut_batches());
            let mut outputs = Vec::new();
            node.engine.drain(|_, o| outputs.push(o));
            for o in outputs {
                match o {
                    Output::Transmit(t) => self.transmit(n, t)?,
                    Output::Event(Event::Acked {
                        req,
                        dot: Some(dot),
                    }) => {
                        if let Some(key) = self.local_reqs.remove(&(n, req)) {
                            self.check_durable(n, &key, dot)?;
                            self.acked.push((key, dot));
                        }
                    }
                    Output::Event(Event::Replicated { collections }) => {
                        if std::env::var("SIM_DEBUG").is_ok() {
                            eprintln!("step {} node {n}: replicates {collections:?}", self.step);
                        }
                        self.report.replicated += 1
                    }
                    Output::Event(_) => {}
                }
            }
        }
        Ok(())
    }

    fn check_durable(&self, n: usize, key: &DocKey, dot: Dot) -> Result<(), String> {
        let on_disk = self.nodes[n]
            .disk
            .docs
            .lock()
            .docs
            .get(key)
            .is_some_and(|s| s.context.contains(dot));
        if on_disk {
            Ok(())
        } else {
            Err(format!(
                "node {n} acknowledged {dot:?} on {key:?} before it was on disk"
            ))
        }
    }

    fn transmit(&mut self, n: usize, t: Transmit) -> Result<(), String> {
        let sid = match &t {
            Transmit::Frame { session, .. } | Transmit::Close { session, .. } => *session,
        };
        let Some(l) = (0..self.links.len()).find(|&l| {
            let k = &self.links[l];
            k.up && ((k.server == n && k.server_sid == sid)
                || (k.client == End::Node(n) && k.client_sid == sid))
        }) else {
            return Ok(()); // the link is gone; the frame is lost with it
        };
        let wire = match t {
            Transmit::Frame { session, frame } => {
                if let Frame::Ack(Ack {
                    dot: Some(d),
                    req: Some(req),
                    ..
                }) = &frame
                {
                    if let Some(key) = self.agent_write_key(n, session, *req) {
                        self.check_durable(n, &key, *d)?;
                    }
                }
                Wire::Frame(self.links[l].encode(&frame))
            }
            Transmit::Close { code, reason, .. } => {
                if std::env::var("SIM_DEBUG").is_ok() {
                    eprintln!(
                        "step {}: node {n} closes link {l}: {code:?} {reason}",
                        self.step
                    );
                }
                if matches!(self.links[l].client, End::Attacker(_)) {
                    self.report.attacks_refused += 1;
                }
                Wire::Close
            }
        };
        let link = &mut self.links[l];
        if link.server == n && link.server_sid == sid {
            link.to_client.push_back(wire);
        } else {
            link.to_server.push_back(wire);
        }
        Ok(())
    }

    fn agent_write_key(&self, n: usize, sid: SessionId, req: u64) -> Option<DocKey> {
        let a = self.agents.iter().find(|a| {
            let l = &self.links[a.link];
            // Session ids are per engine and start again after a crash: only an open link
            // names a live session.
            a.node == n && l.up && l.server_sid == sid
        })?;
        a.writes.get(&req).cloned()
    }

    /// Delivers the head frame of one direction of a link.
    fn deliver(&mut self, l: usize, to_server: bool, allow_dup: bool) -> Result<(), String> {
        // Duplicates test that peers apply pushes, acks and broadcasts idempotently. Agent
        // links are left alone: a WebSocket never duplicates, and agents keep no dedupe state.
        let agent_link = !matches!(self.links[l].client, End::Node(_));
        let dup = allow_dup && !agent_link && self.c.chance(self.cfg.duplicate);
        let link = &mut self.links[l];
        let q = if to_server {
            &mut link.to_server
        } else {
            &mut link.to_client
        };
        let Some(wire) = q.pop_front() else {
            return Ok(());
        };
        let bytes = match wire {
            Wire::Close => {
                self.break_link(l);
                return Ok(());
            }
            Wire::Frame(b) => b,
        };
        self.report.frames += 1;
        let binary = self.links[l].binary;
        let frame = decode(&bytes, binary)
            .map_err(|e| format!("a frame the core encoded did not decode: {e}"))?;
        let handshake = matches!(frame, Frame::Hello(_) | Frame::Welcome(_));
        if let (Ok(k), Frame::Push(p)) = (std::env::var("SIM_TRACE_KEY"), &frame) {
            if p.docs
                .iter()
                .any(|d| format!("{}/{}", d.collection, d.id) == k)
            {
                eprintln!(
                    "step {}: link {l} to_server {to_server} push seq {} watermark {:?}",
                    self.step, p.seq, p.watermark
                );
            }
        }
        if std::env::var("SIM_TRACE_KEY").is_ok()
            && matches!(
                frame,
                Frame::Replicate { .. }
                    | Frame::Replicated { .. }
                    | Frame::Hello(_)
                    | Frame::Welcome(_)
            )
        {
            eprintln!(
                "step {}: link {l} to_server {to_server} {:?}",
                self.step, frame
            );
        }
        match &frame {
            Frame::Resync { .. } => self.report.resyncs += 1,
            Frame::Push(p) if p.watermark.is_empty() && p.remaining > 0 => {
                self.report.fill_pages += 1
            }
            Frame::Hello(h) if h.unclaimed == Some(true) => self.report.unclaimed += 1,
            _ => {}
        }
        if dup && !handshake {
            let q = if to_server {
                &mut self.links[l].to_server
            } else {
                &mut self.links[l].to_client
            };
            q.push_front(Wire::Frame(bytes));
        }
        let (client, server, csid, ssid) = {
            let k = &self.links[l];
            (k.client, k.server, k.client_sid, k.server_sid)
        };
        if to_server {
            let now = self.now(server);
            if let (End::Agent(_), Frame::Delete { collection, id, .. }) = (client, &frame) {
                let key = DocKey::new(collection.clone(), id.clone());
                self.nodes[server].engine.handle_frame(now, ssid, frame);
                self.note_delete(server, key);
            } else {
                self.nodes[server].engine.handle_frame(now, ssid, frame);
            }
        } else {
            match client {
                End::Node(n) => {
                    let now = self.now(n);
                    self.nodes[n].engine.handle_frame(now, csid, frame);
                }
                End::Agent(a) => self.agent_receive(a, frame)?,
                End::Attacker(x) => {
                    if let Frame::Ack(Ack { seq: Some(seq), .. }) = frame {
                        return Err(format!(
                            "node {server} acknowledged push {seq} of attacker {x}"
                        ));
                    }
                    if let Frame::Push(p) = frame {
                        // It acknowledges what it is sent (so it does not hold the horizon
                        // back for ever) and reports a floor far beyond it, which the server
                        // must cap at what it knows the attacker holds.
                        let mut floor = p.watermark.clone();
                        for (r, c) in self.nodes[server].engine.replica().latest_vector().iter() {
                            floor.raise(r, c + 1000);
                        }
                        let frames = [
                            Frame::Ack(Ack {
                                seq: Some(p.seq),
                                ..Ack::default()
                            }),
                            Frame::Report {
                                ceiling: VersionVector::new(),
                                floor,
                            },
                        ];
                        for f in frames {
                            let link = &mut self.links[l];
                            let bytes = link.encode(&f);
                            link.to_server.push_back(Wire::Frame(bytes));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn note_delete(&mut self, n: usize, key: DocKey) {
        if let Ok(Some(st)) = self.nodes[n].engine.replica().state(&key) {
            if let [s] = st.siblings.as_slice() {
                if s.body.is_none() && s.dot.replica == self.nodes[n].cfg.replica {
                    self.delete_ctx.insert(s.dot, (key, st.context.clone()));
                }
            }
        }
    }

    fn agent_receive(&mut self, a: usize, frame: Frame) -> Result<(), String> {
        let agent = &mut self.agents[a];
        match frame {
            Frame::Welcome(_) => agent.ready = true,
            Frame::Ack(Ack {
                req: Some(req),
                dot: Some(dot),
                ..
            }) => {
                if let Some(key) = agent.writes.remove(&req) {
                    if self.delete_ctx.contains_key(&dot) {
                        self.acked_deletes.push(dot);
                    }
                    self.acked.push((key, dot));
                }
            }
            Frame::Broadcast { message, offset } => {
                let id = message.id;
                if !agent.received.insert(id) {
                    return Err(format!("agent {a} received message {id:?} twice"));
                }
                // Order is per sender within a channel (replays are per channel).
                let last = agent
                    .last_seq
                    .entry((message.channel.clone(), id.origin))
                    .or_insert(0);
                if id.seq <= *last {
                    return Err(format!(
                        "agent {a} received message {id:?} after seq {} of the same sender",
                        *last
                    ));
                }
                *last = id.seq;
                if let Some(o) = offset {
                    agent.cursor = agent.cursor.max(o);
                }
                self.report.messages_delivered += 1;
            }
            _ => {}
        }
        Ok(())
    }

    // ---- faults (the actors themselves: actions.rs) ------------------------------------------

    fn step_faulty(&mut self) -> Result<(), String> {
        let n_nodes = self.nodes.len();
        match self.c.below(100) {
            0..=44 => {
                // deliver something somewhere
                let busy: Vec<(usize, bool)> = (0..self.links.len())
                    .flat_map(|l| [(l, true), (l, false)])
                    .filter(|&(l, s)| {
                        let k = &self.links[l];
                        k.up && !(if s {
                            k.to_server.is_empty()
                        } else {
                            k.to_client.is_empty()
                        })
                    })
                    .collect();
                if !busy.is_empty() {
                    let (l, s) = busy[self.c.below(busy.len())];
                    self.deliver(l, s, true)?;
                }
            }
            45..=59 => {
                let n = self.c.below(n_nodes);
                if let Some(b) = self.nodes[n].writing.pop_front() {
                    self.nodes[n].disk.write(&b);
                    self.nodes[n]
                        .engine
                        .batches_persisted(std::slice::from_ref(&b))
                        .map_err(|e| format!("node {n} refused its own batch: {e}"))?;
                }
            }
            60..=69 => {
                let n = 2 + self.c.below(n_nodes - 2);
                // A partial client without a scoped token changes what it replicates now
                // and then.
                let unscoped = !self
                    .links
                    .iter()
                    .any(|l| l.client == End::Node(n) && l.scope.is_some());
                if self.nodes[n].cfg.collections.is_some() && unscoped && self.c.chance(40) {
                    let sub = SUBSCRIPTIONS[self.c.below(SUBSCRIPTIONS.len())];
                    let want = sub.iter().map(|p| p.to_string()).collect();
                    self.nodes[n].ask(Some(want))?;
                } else if self.c.chance(150) {
                    let now = self.now(n);
                    let ch = CHANNELS[self.c.below(2)];
                    self.publish(n, now, ch, json!({"from": n}))?;
                } else {
                    self.local_write(n)?;
                }
            }
            70..=71 if self.cfg.attackers > 0 => {
                let x = self.c.below(self.cfg.attackers);
                self.attacker_action(x);
            }
            70..=79 => {
                if !self.agents.is_empty() {
                    let a = self.c.below(self.agents.len());
                    self.agent_action(a);
                }
            }
            80..=84 => self.time += self.c.below(50) as u64,
            85..=89 => {
                if self.c.chance(self.cfg.break_link * 20) {
                    let l = self.c.below(self.links.len());
                    self.break_link(l);
                }
            }
            90..=94 => {
                // reconnect a broken link whose ends are not partitioned
                let down: Vec<usize> = (0..self.links.len())
                    .filter(|&l| !self.links[l].up)
                    .collect();
                if !down.is_empty() {
                    let l = down[self.c.below(down.len())];
                    let ends_ok = {
                        let k = &self.links[l];
                        let cut = |n: usize| self.nodes[n].partitioned_until > self.step;
                        !cut(k.server) && !matches!(k.client, End::Node(n) if cut(n))
                    };
                    if ends_ok {
                        self.connect(l);
                    }
                }
            }
            95..=97 => {
                if self.c.chance(self.cfg.crash * 30) {
                    let n = self.c.below(n_nodes);
                    self.crash(n)?;
                }
            }
            _ => {
                // partition a node for a while
                if self.c.chance(300) {
                    let n = self.c.below(n_nodes);
                    self.nodes[n].partitioned_until = self.step + 20 + self.c.below(80);
                    for l in self.node_links(n) {
                        self.break_link(l);
                    }
                }
            }
        }
        self.pump()
    }
}
