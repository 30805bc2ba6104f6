//! The end of a run: the network heals and settles, every node restarts from its disk, and
//! the invariants are checked (convergence, acknowledged writes present, no resurrection,
//! messages exactly once).

use super::*;
use crate::DocState;

impl<C: Choices> World<'_, C> {
    /// Heals the network and runs without faults until nothing moves.
    pub(super) fn settle(&mut self) -> Result<(), String> {
        for n in 0..self.nodes.len() {
            self.nodes[n].partitioned_until = 0;
        }
        for l in 0..self.links.len() {
            if !self.links[l].up {
                self.connect(l);
            }
        }
        for round in 0..200_000 {
            self.pump()?;
            let mut moved = false;
            for n in 0..self.nodes.len() {
                let batches: Vec<PersistBatch> = self.nodes[n].writing.drain(..).collect();
                for b in &batches {
                    self.nodes[n].disk.write(b);
                }
                if !batches.is_empty() {
                    self.nodes[n]
                        .engine
                        .batches_persisted(&batches)
                        .map_err(|e| e.to_string())?;
                    moved = true;
                }
            }
            for l in 0..self.links.len() {
                for s in [true, false] {
                    let k = &self.links[l];
                    let pending = if s {
                        !k.to_server.is_empty()
                    } else {
                        !k.to_client.is_empty()
                    };
                    if k.up && pending {
                        self.deliver(l, s, false)?;
                        moved = true;
                    }
                }
            }
            if !moved {
                // A link closed by a protocol error during healing comes back.
                let down: Vec<usize> = (0..self.links.len())
                    .filter(|&l| !self.links[l].up)
                    .collect();
                if down.is_empty() {
                    self.report.heal_rounds += round;
                    if std::env::var("SIM_DEBUG").is_ok() {
                        for (i, l) in self.links.iter().enumerate() {
                            if let End::Node(c) = l.client {
                                eprintln!(
                                    "settled link {i}: node {c} -> {}: {:?}; server side {:?}",
                                    l.server,
                                    self.nodes[c].engine.peer_status(l.client_sid),
                                    self.nodes[l.server].engine.peer_status(l.server_sid)
                                );
                            }
                        }
                    }
                    return Ok(());
                }
                for l in down {
                    self.connect(l);
                }
            }
        }
        Err("the network did not go quiet after healing".into())
    }

    pub(super) fn run(&mut self) -> Result<(), String> {
        self.pump()?;
        while self.step < self.cfg.steps && self.c.more() {
            // Halfway, the network heals once and goes quiet: horizons rise and replicas
            // collect, so the second half writes over collected documents (and some
            // replicas still hold what others collected).
            if self.step == self.cfg.steps / 2 {
                self.settle()?;
            }
            self.step_faulty()?;
            self.step += 1;
            if let Ok(k) = std::env::var("SIM_TRACE_KEY") {
                let (c, id) = k.split_once('/').unwrap_or_default();
                let key = DocKey::new(c, id);
                for n in 0..self.nodes.len() {
                    let st = self.nodes[n].engine.replica().state(&key).ok().flatten();
                    let now = format!("{st:?}");
                    let was = self.traced.insert(n, now.clone());
                    if was.as_deref() != Some(now.as_str()) {
                        let short = st.map(|s| {
                            let sib: Vec<String> = s
                                .siblings
                                .iter()
                                .map(|x| {
                                    format!(
                                        "{}:{}{}",
                                        x.dot.replica.0.wrapping_sub(0x100),
                                        x.dot.counter,
                                        if x.body.is_none() { "T" } else { "" }
                                    )
                                })
                                .collect();
                            format!(
                                "{sib:?} ctx {:?}",
                                s.context
                                    .iter()
                                    .map(|(r, c)| (r.0.wrapping_sub(0x100), c))
                                    .collect::<Vec<_>>()
                            )
                        });
                        eprintln!("step {} node {n}: {short:?}", self.step);
                    }
                }
            }
            // The core's own accounting: a stored replica's cache never exceeds its budget.
            for (n, node) in self.nodes.iter().enumerate() {
                let (used, budget) = node.engine.replica().cache_bytes();
                if used > budget {
                    return Err(format!("node {n} caches {used} bytes, over its {budget}"));
                }
                // A horizon is adopted only as far as the replica holds it durably.
                let h = &node.engine.replica().stability().horizon;
                if !node.engine.replica().vector().dominates(h) {
                    return Err(format!(
                        "node {n}'s horizon {h:?} is above its durable vector {:?}",
                        node.engine.replica().vector()
                    ));
                }
            }
        }
        // Agents still waiting for acks after the faults stop are fine: the write may have
        // been lost in a crash before it was durable, which is allowed.
        self.settle()?;
        // Every node publishes once after healing: each subscriber must get each exactly once.
        let before: Vec<BTreeSet<MessageId>> =
            self.agents.iter().map(|a| a.received.clone()).collect();
        let mut finals = Vec::new();
        for n in 0..self.nodes.len() {
            let now = self.now(n);
            finals.push(self.publish(n, now, "c0", json!({"final": n}))?);
        }
        self.settle()?;
        for (a, agent) in self.agents.iter().enumerate() {
            for id in &finals {
                if !agent.received.contains(id) || before[a].contains(id) {
                    return Err(format!(
                        "agent {a} did not receive message {id:?} published after healing"
                    ));
                }
            }
        }
        self.check()
    }

    pub(super) fn check(&mut self) -> Result<(), String> {
        // Restart every node from its disk: what is compared is what survives.
        for n in 0..self.nodes.len() {
            let disk = std::mem::take(&mut self.nodes[n].disk);
            let (cfg, offset) = (self.nodes[n].cfg.clone(), self.nodes[n].offset_ms);
            self.nodes[n] = Node::boot(cfg, disk, offset);
        }
        let reference = &self.nodes[0];
        let docs0_all = &reference.disk.docs.snapshot();
        let conflicts0_all = live_conflicts(reference)?;
        for (n, node) in self.nodes.iter().enumerate().skip(1) {
            let mut docs = node.disk.docs.snapshot();
            // A partial replica holds its collections, and nothing of the others but its
            // own writes (never sent back to it): those are all it is compared on.
            // What it replicates now (a change may have taken effect).
            let sub = node.engine.config().collections.clone();
            let sub = sub.as_deref();
            let held = |k: &DocKey| sub.is_none_or(|f| crate::auth::subscribed(f, k));
            let me = node.cfg.replica;
            for (k, st) in docs.iter().filter(|(k, _)| !held(k)) {
                let foreign = st.siblings.iter().any(|s| s.dot.replica != me)
                    || st.context.iter().any(|(r, _)| r != me);
                if foreign {
                    return Err(format!(
                        "node {n} (collections {sub:?}) holds {k:?} from another replica: {st:?}"
                    ));
                }
            }
            docs.retain(|k, _| held(k));
            if sub.is_some() {
                self.report.partial_docs += docs.len();
            }
            let docs = &docs;
            let only = |m: &BTreeMap<DocKey, DocState>| -> BTreeMap<DocKey, DocState> {
                m.iter()
                    .filter(|(k, _)| held(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            let docs0 = &only(docs0_all);
            let live0 = &live(docs0);
            let conflicts0: Vec<DocKey> =
                conflicts0_all.iter().filter(|k| held(k)).cloned().collect();

            // Collection makes replicas forget at different times: a document deleted
            // everywhere may be gone from one and not yet from another, and a collected
            // document's context is gone with it. What must agree is every document that is
            // not deleted, sibling for sibling.
            if &live(docs) != live0 && std::env::var("SIM_DEBUG").is_ok() {
                for (i, nd) in self.nodes.iter().enumerate() {
                    eprintln!(
                        "node {i}: collections {:?} upstream {:?} vv {:?}",
                        nd.cfg.collections,
                        nd.engine.replica().stability().upstream,
                        nd.disk.vector
                    );
                }
                for (i, l) in self.links.iter().enumerate() {
                    let st = match l.client {
                        End::Node(c) => {
                            format!("{:?}", self.nodes[c].engine.peer_status(l.client_sid))
                        }
                        _ => String::new(),
                    };
                    eprintln!(
                        "link {i}: {:?} -> {} rights {:?} scope {:?} up {} {st}",
                        l.client, l.server, l.rights, l.scope, l.up
                    );
                }
            }
            if &live(docs) != live0 {
                let diff = live0
                    .keys()
                    .chain(live(docs).keys())
                    .find(|k| live0.get(*k) != live(docs).get(*k))
                    .cloned();
                return Err(format!(
                    "node {n} differs from node 0 on {diff:?}: {:?} vs {:?}",
                    diff.as_ref().and_then(|k| docs.get(k)),
                    diff.as_ref().and_then(|k| docs0.get(k))
                ));
            }
            let collects = self.nodes.iter().any(|n| n.cfg.collect);
            if collects {
                let mut conflicts = live_conflicts(node)?;
                conflicts.retain(|k| held(k));
                if conflicts != conflicts0 {
                    return Err(format!("node {n} shows other open conflicts than node 0"));
                }
                for key in live0.keys() {
                    if node.engine.replica().get(key) != reference.engine.replica().get(key) {
                        return Err(format!("node {n} shows {key:?} differently from node 0"));
                    }
                }
                continue;
            }
            if docs != docs0 && std::env::var("SIM_DEBUG").is_ok() {
                for (i, nd) in self.nodes.iter().enumerate() {
                    eprintln!(
                        "node {i}: vv {:?} docs {}",
                        nd.disk.vector,
                        nd.disk.docs.lock().docs.len()
                    );
                }
            }
            if docs != docs0 {
                let diff = docs0
                    .keys()
                    .chain(docs.keys())
                    .find(|k| docs0.get(*k) != docs.get(*k));
                return Err(format!(
                    "node {n} differs from node 0 on {diff:?}: {:?} vs {:?}",
                    diff.and_then(|k| docs.get(k)),
                    diff.and_then(|k| docs0.get(k))
                ));
            }
            let mut conflicts = live_conflicts(node)?;
            conflicts.retain(|k| held(k));
            if conflicts != conflicts0 {
                return Err(format!("node {n} shows other open conflicts than node 0"));
            }
            for key in docs0.keys() {
                if node.engine.replica().get(key) != reference.engine.replica().get(key) {
                    return Err(format!("node {n} shows {key:?} differently from node 0"));
                }
            }
        }
        let docs0 = docs0_all;
        let conflicts0 = conflicts0_all;
        // A write below node 0's horizon that its document no longer shows was superseded by
        // a deletion and collected with it.
        let h0 = reference.engine.replica().stability().horizon.clone();
        let collected = |dot: &Dot| reference.cfg.collect && h0.contains(*dot);
        for (key, dot) in &self.acked {
            let present = docs0.get(key).is_some_and(|s| s.context.contains(*dot));
            if !present && !collected(dot) {
                return Err(format!("acknowledged write {dot:?} on {key:?} is missing"));
            }
        }
        for dot in &self.acked_deletes {
            let Some((key, ctx)) = self.delete_ctx.get(dot) else {
                continue;
            };
            let Some(st) = docs0.get(key) else {
                if collected(dot) {
                    continue;
                }
                return Err(format!("deleted document {key:?} vanished entirely"));
            };
            for s in &st.siblings {
                if s.body.is_some() && ctx.contains(s.dot) {
                    return Err(format!(
                        "write {:?} that delete {dot:?} had seen is back on {key:?}",
                        s.dot
                    ));
                }
            }
        }
        self.report.horizon = self.nodes[0]
            .engine
            .replica()
            .stability()
            .horizon
            .iter()
            .map(|(_, c)| c as usize)
            .sum();
        self.report.acked_writes = self.acked.len();
        self.report.acked_deletes = self.acked_deletes.len();
        self.report.conflicts_open = conflicts0.len();
        self.report.docs = docs0.len();
        self.report.attacks = self.attacks;
        self.report.collected = self.nodes.iter().map(|n| n.disk.collected).sum();
        Ok(())
    }
}

/// The documents that are not deleted (some sibling has a body), with their siblings.
fn live(docs: &BTreeMap<DocKey, DocState>) -> BTreeMap<DocKey, Vec<crate::doc::Sibling>> {
    docs.iter()
        .filter(|(_, s)| !s.is_dead())
        .map(|(k, s)| (k.clone(), s.siblings.clone()))
        .collect()
}

/// A node's open conflicts, but for documents deleted by every sibling (collectable).
fn live_conflicts(node: &Node) -> Result<Vec<DocKey>, String> {
    let r = node.engine.replica();
    let mut out = Vec::new();
    for c in r.conflicts(None).map_err(|e| e.to_string())? {
        let key = DocKey::new(c.collection.as_str(), c.id.as_str());
        let dead = r
            .state(&key)
            .map_err(|e| e.to_string())?
            .is_some_and(|s| s.is_dead());
        if !dead {
            out.push(key);
        }
    }
    Ok(out)
}
