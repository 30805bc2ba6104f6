//! What the simulated world's actors do at a step: a local write or message on a node, an
//! agent's verb, an adversarial peer's forged push.

use super::*;

impl<C: Choices> World<'_, C> {
    pub(super) fn random_value(&mut self) -> Map<String, Value> {
        let mut m = Map::new();
        for f in ["a", "b", "c"] {
            if self.c.chance(600) {
                m.insert(f.into(), json!(self.c.below(5)));
            }
        }
        m
    }

    pub(super) fn random_key(&mut self) -> DocKey {
        let coll = COLLECTIONS[self.c.below(COLLECTIONS.len())];
        let id = self.c.below(self.cfg.documents);
        DocKey::new(coll, format!("d{id}"))
    }

    pub(super) fn random_op(&mut self) -> WriteOp {
        match self.c.below(10) {
            0..=4 => WriteOp::Put(self.random_value()),
            5..=7 => WriteOp::Patch(self.random_value()),
            _ => WriteOp::Delete,
        }
    }

    pub(super) fn local_write(&mut self, n: usize) -> Result<(), String> {
        let mut key = self.random_key();
        // A client whose token is scoped writes only where it may.
        let scope = self
            .links
            .iter()
            .find(|l| l.client == End::Node(n))
            .and_then(|l| l.scope.clone());
        if let Some(scope) = scope {
            let allowed: Vec<&str> = COLLECTIONS
                .iter()
                .copied()
                .filter(|c| crate::auth::matches_any(&scope, c))
                .collect();
            if !allowed.is_empty() {
                key.collection = allowed[self.c.below(allowed.len())].into();
            }
        }
        let op = self.random_op();
        let is_delete = op == WriteOp::Delete;
        if self.nodes[n]
            .engine
            .config()
            .collections
            .as_deref()
            .is_some_and(|f| !crate::auth::subscribed(f, &key))
        {
            self.report.blind_writes += 1;
        }
        let now = self.now(n);
        let request = Request::Write {
            key: key.clone(),
            op,
        };
        let answer = self.nodes[n]
            .engine
            .request(now, &crate::auth::Grant::ADMIN, request)
            .map_err(|e| format!("local write refused: {e}"))?;
        let Answer::WhenDurable { req, reply } = answer else {
            return Err(format!(
                "a local write was answered before durable: {answer:?}"
            ));
        };
        let Some(dot) = reply.dot() else {
            return Err(format!("a local write made no dot: {reply:?}"));
        };
        if is_delete {
            if let Some(st) = self.nodes[n]
                .engine
                .replica()
                .state(&key)
                .map_err(|e| e.to_string())?
            {
                self.delete_ctx
                    .insert(dot, (key.clone(), st.context.clone()));
            }
        }
        self.local_reqs.insert((n, req), key);
        Ok(())
    }

    /// Node `n` publishes through its host's API.
    pub(super) fn publish(
        &mut self,
        n: usize,
        now: u64,
        channel: &str,
        payload: Value,
    ) -> Result<MessageId, String> {
        let request = Request::Send {
            channel: channel.into(),
            payload,
        };
        match self.nodes[n]
            .engine
            .request(now, &crate::auth::Grant::ADMIN, request)
        {
            Ok(Answer::WhenDurable {
                reply: Reply::Sent { id, .. },
                ..
            }) => Ok(id),
            other => Err(format!("node {n} could not publish: {other:?}")),
        }
    }

    pub(super) fn agent_action(&mut self, a: usize) {
        let l = self.agents[a].link;
        if !self.links[l].up {
            return;
        }
        let req = self.agents[a].next_req;
        self.agents[a].next_req += 1;
        let frame = match self.c.below(12) {
            0..=5 => {
                let key = self.random_key();
                self.agents[a].writes.insert(req, key.clone());
                match self.random_op() {
                    WriteOp::Put(m) => Frame::Put {
                        req: Some(req),
                        collection: key.collection,
                        id: key.id,
                        value: Value::Object(m),
                    },
                    WriteOp::Patch(m) => Frame::Patch {
                        req: Some(req),
                        collection: key.collection,
                        id: key.id,
                        value: Value::Object(m),
                    },
                    WriteOp::Delete => Frame::Delete {
                        req: Some(req),
                        collection: key.collection,
                        id: key.id,
                    },
                }
            }
            6..=8 => Frame::Send {
                req: Some(req),
                channel: CHANNELS[self.c.below(2)].into(),
                payload: json!({"n": req}),
            },
            9 => Frame::SetPolicy {
                req: Some(req),
                collection: COLLECTIONS[self.c.below(COLLECTIONS.len())].into(),
                policy: Policy::ALL[self.c.below(Policy::ALL.len())],
            },
            _ => {
                // Resolve a conflict this agent's node shows, if any.
                let node = self.agents[a].node;
                let Ok(conflicts) = self.nodes[node].engine.replica().conflicts(None) else {
                    return;
                };
                let Some(cf) = conflicts.get(self.c.below(conflicts.len().max(1))).cloned() else {
                    return;
                };
                let pick = cf.sides[self.c.below(cf.sides.len())].value.clone();
                self.agents[a]
                    .writes
                    .insert(req, DocKey::new(cf.collection.clone(), cf.id.clone()));
                Frame::Resolve {
                    req: Some(req),
                    collection: cf.collection,
                    id: cf.id,
                    value: pick,
                }
            }
        };
        self.links[l]
            .to_server
            .push_back(Wire::Frame(encode_json(&frame).into_bytes()));
    }

    /// An adversarial peer sends one forged push or message.
    pub(super) fn attacker_action(&mut self, x: usize) {
        let Some(l) = (0..self.links.len()).find(|&l| self.links[l].client == End::Attacker(x))
        else {
            return;
        };
        if !self.links[l].up {
            return;
        }
        let me = ReplicaId(ATTACKER_BASE + x as u64);
        let server = self.links[l].server;
        let now = self.now(server);
        // A real replica to forge, and a counter far beyond what anyone holds of it.
        let victim = self.nodes[self.c.below(self.nodes.len())].cfg.replica;
        let beyond = self.nodes[server]
            .engine
            .replica()
            .latest_vector()
            .get(victim)
            + 1000;
        let key = self.random_key();
        let entry = |key: &DocKey, dot: Dot, context: &[(ReplicaId, u64)]| {
            let mut r = Replica::new(me, Tier::Local, SPACE);
            let mut m = Map::new();
            m.insert("forged".into(), json!(true));
            let _ = r.write(now, key.clone(), WriteOp::Put(m));
            // A fresh replica in memory: its reads cannot fail.
            let mut state = r
                .state(key)
                .ok()
                .flatten()
                .map(|s| (*s).clone())
                .unwrap_or_default();
            for s in &mut state.siblings {
                s.dot = dot;
            }
            state.context = VersionVector::new();
            state.context.add_dot(dot);
            for (r, c) in context {
                state.context.raise(*r, *c);
            }
            DocEntry {
                collection: key.collection.clone(),
                id: key.id.clone(),
                state,
            }
        };
        let mut wm = VersionVector::new();
        let (docs, frame) = match self.c.below(6) {
            0 => {
                let k = DocKey::new("_config", format!("collection:{}", key.collection));
                wm.raise(me, 1);
                (vec![entry(&k, Dot::new(me, 1), &[])], None)
            }
            1 => {
                wm.raise(victim, beyond);
                (vec![entry(&key, Dot::new(victim, beyond), &[])], None)
            }
            2 => {
                wm.raise(me, 1);
                wm.raise(victim, beyond);
                (vec![entry(&key, Dot::new(me, 1), &[])], None)
            }
            3 => {
                wm.raise(me, 1);
                (
                    vec![entry(&key, Dot::new(me, 1), &[(victim, beyond)])],
                    None,
                )
            }
            4 => {
                wm.raise(me, 1);
                (vec![entry(&key, Dot::new(me, 1_000_000), &[])], None)
            }
            _ => {
                let stamp = Stamp::new(now, 0, me);
                let message = Message {
                    id: MessageId {
                        origin: victim,
                        seq: beyond,
                    },
                    channel: CHANNELS[0].into(),
                    payload: json!({"forged": true}),
                    stamp,
                };
                (
                    Vec::new(),
                    Some(Frame::Broadcast {
                        message,
                        offset: None,
                    }),
                )
            }
        };
        let frame = frame.unwrap_or(Frame::Push(Push {
            seq: 1 + self.attacks as u64,
            docs,
            watermark: wm,
            remaining: 0,
            // Both binary forms reach the server.
            expanded: self.attacks % 2 == 1,
        }));
        self.attacks += 1;
        let link = &mut self.links[l];
        let bytes = link.encode(&frame);
        link.to_server.push_back(Wire::Frame(bytes));
    }
}
