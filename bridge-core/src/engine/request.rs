//! The one place a [`Request`] is executed, whoever asked: an agent's verb frame on a session,
//! the host's HTTP API, a JS call in the browser, a call a follower tab forwarded. Rights are
//! checked here ([`Request::needs`], per collection), then the limits ([`Request::check`]),
//! then the request runs. Writes are answered once durable: on a session the answer frames
//! wait behind the batch; the host's own callers get [`Answer::WhenDurable`] and an
//! `Event::Acked { req }` when it is time.

use super::{Engine, Fatal, Gated};
use crate::auth::{Grant, Rights};
use crate::doc::WriteOp;
use crate::replica::CONFIG_COLLECTION;
use crate::request::{Answer, DoneRequest, Reply, Request, RequestKey};
use crate::{DocKey, Error, Result, SessionId};
use serde_json::{Map, Value};

impl Engine {
    /// Runs a request from the host's own API — HTTP, the CLI, a JS call — for a caller
    /// holding `grant` (a host without tokens, or a browser's own store, passes
    /// [`Grant::all`]`(Admin)`).
    /// Reads answer at once; writes answer with [`Answer::WhenDurable`], whose `req` the
    /// engine allocated and names in `Event::Acked` once the write is durable.
    pub fn request(&mut self, now_ms: u64, grant: &Grant, request: Request) -> Result<Answer> {
        let (reply, durable) = self.execute(now_ms, grant, None, request)?;
        Ok(self.answer(reply, durable))
    }

    /// [`Engine::request`] at most once per idempotency `key`: if a request with this key was
    /// already done — by this engine, or by an earlier one on the same store (given back with
    /// [`Engine::restore_requests`]) — nothing is done again, and the answer is
    /// [`Reply::Again`] with the first result, released once that is durable. Otherwise the
    /// request runs and its result is stored in the same batch as its write.
    pub fn request_once(
        &mut self,
        now_ms: u64,
        key: RequestKey,
        grant: &Grant,
        request: Request,
    ) -> Result<Answer> {
        if let Some(dot) = self.requests.get(&key) {
            return Ok(self.answer(Reply::Again { dot }, true));
        }
        let (reply, durable) = self.execute(now_ms, grant, None, request)?;
        if durable {
            let done = DoneRequest {
                key,
                dot: reply.dot(),
            };
            self.requests.insert(done, true);
        }
        Ok(self.answer(reply, durable))
    }

    /// Gives back done requests the host stored with earlier batches (oldest first).
    pub fn restore_requests(&mut self, done: impl IntoIterator<Item = DoneRequest>) {
        for r in done {
            self.requests.insert(r, false);
        }
    }

    /// An agent's verb on an open session ([`Engine::handle_frame`] sends only those here):
    /// answered on the session, writes once durable.
    pub(super) fn on_request(
        &mut self,
        now_ms: u64,
        session: SessionId,
        req: Option<u64>,
        request: Request,
    ) -> Result<(), Fatal> {
        let grant = self
            .sessions
            .get(&session)
            .map_or(Grant::all(Rights::Read), |s| s.grant.clone());
        let (reply, durable) = self.execute(now_ms, &grant, Some(session), request)?;
        for frame in reply.into_frames(req) {
            if durable {
                self.gate(Gated::Frame(session, frame));
            } else {
                self.send(session, frame);
            }
        }
        Ok(())
    }

    fn answer(&mut self, reply: Reply, durable: bool) -> Answer {
        if !durable {
            return Answer::Now(reply);
        }
        self.next_req += 1;
        let req = self.next_req;
        self.gate(Gated::Local(req, reply.dot()));
        Answer::WhenDurable { req, reply }
    }

    /// Checks and runs `request`; the reply, and whether it waits for durability.
    fn execute(
        &mut self,
        now_ms: u64,
        grant: &Grant,
        session: Option<SessionId>,
        request: Request,
    ) -> Result<(Reply, bool)> {
        let (needs, on) = request.needs();
        allowed(grant, needs, on)?;
        if request.writes_config() {
            allowed(grant, Rights::Admin, None)?;
        }
        if let (Request::Import(lines), true) = (&request, grant.is_scoped()) {
            for (key, _) in lines {
                allowed(grant, Rights::Admin, Some(crate::request::read_scope(key)))?;
            }
        }
        request.check(&self.replica)?;
        let r = &self.replica;
        let read = |reply| Ok((reply, false));
        match request {
            Request::Write { key, op } => self.write_doc(now_ms, key, op),
            Request::Resolve { key, value } => {
                if r.conflict(&key)?.is_none() {
                    return Err(Error::NoConflict {
                        collection: key.collection,
                        id: key.id,
                    });
                }
                let op = value.map_or(WriteOp::Delete, WriteOp::Put);
                self.write_doc(now_ms, key, op)
            }
            Request::SetPolicy { collection, policy } => {
                let mut m = Map::new();
                m.insert("policy".into(), Value::from(policy.as_str()));
                let key = DocKey::new(CONFIG_COLLECTION, format!("collection:{collection}"));
                let dot = self.replica.write(now_ms, key, WriteOp::Patch(m))?;
                let set = Reply::PolicySet {
                    dot,
                    collection,
                    policy,
                };
                Ok((set, true))
            }
            Request::Send { channel, payload } => {
                let id = self.replica.publish(now_ms, channel.clone(), payload);
                if let Some(s) = session {
                    self.msg_from.insert(id, s);
                }
                Ok((Reply::Sent { id, channel }, true))
            }
            Request::Import(lines) => {
                let count = lines.len();
                for (key, value) in lines {
                    self.replica
                        .write(now_ms, key, value.map_or(WriteOp::Delete, WriteOp::Put))?;
                }
                // An empty import stores nothing and is answered at once.
                Ok((Reply::Imported { count }, count > 0))
            }
            Request::Get { key } => read(Reply::Doc(r.view(&key)?)),
            Request::List {
                collection,
                after,
                limit,
            } => {
                let mut docs = r.list(&collection, after.as_deref(), limit + 1)?;
                let next = if docs.len() > limit {
                    docs.truncate(limit);
                    docs.last().map(|d| d.id.clone())
                } else {
                    None
                };
                // `_config` holds every collection's policy: each shows to whom reads it.
                if collection == CONFIG_COLLECTION {
                    docs.retain(|d| {
                        let key = DocKey::new(&d.collection, &d.id);
                        grant.reads(crate::request::read_scope(&key))
                    });
                }
                read(Reply::Docs { docs, next })
            }
            Request::Conflicts { collection } => {
                let mut all = r.conflicts(collection.as_deref())?;
                all.retain(|c| grant.reads(&c.collection));
                read(Reply::Conflicts(all))
            }
            Request::Conflict { key } => match r.conflict(&key)? {
                Some(c) => read(Reply::Conflict(c)),
                None => Err(Error::NoConflict {
                    collection: key.collection,
                    id: key.id,
                }),
            },
            #[cfg(feature = "http")]
            Request::Changes { since, limit } => read(changes(r, grant, since, limit)?),
            Request::Presence => read(Reply::Presence(self.presence())),
            #[cfg(feature = "http")]
            Request::Export { after } => {
                let reads = |c: &str| grant.reads(c);
                let (mut docs, next) =
                    r.export_page(after.as_ref(), crate::request::EXPORT_PAGE, &reads)?;
                docs.retain(|(k, _)| grant.reads(crate::request::read_scope(k)));
                read(Reply::Export { docs, next })
            }
            Request::Subscribe {
                channel,
                collection,
                from,
            } => {
                let s = session.and_then(|s| self.sessions.get_mut(&s));
                let Some(s) = s else {
                    return Err(Error::SessionOnly("subscribe"));
                };
                let replay = match (&channel, from) {
                    // Sent after the acknowledgement as the connection drains
                    // (`Engine::next_replay`).
                    #[cfg(feature = "store")]
                    (Some(ch), Some(cursor)) => {
                        s.replays.push_back(super::Replay {
                            channel: ch.clone(),
                            cursor,
                            page: Default::default(),
                        });
                        Vec::new()
                    }
                    #[cfg(not(feature = "store"))]
                    (Some(ch), Some(cursor)) => r.logs().after(ch, cursor).cloned().collect(),
                    _ => Vec::new(),
                };
                if let Some(c) = channel {
                    s.channels.insert(c, ());
                }
                if let Some(c) = collection {
                    s.collections.insert(c, ());
                }
                read(Reply::Subscribed { replay })
            }
            Request::Unsubscribe {
                channel,
                collection,
            } => {
                let s = session.and_then(|s| self.sessions.get_mut(&s));
                let Some(s) = s else {
                    return Err(Error::SessionOnly("unsubscribe"));
                };
                if let Some(c) = channel {
                    #[cfg(feature = "store")]
                    s.replays.retain(|p| p.channel != c);
                    s.channels.remove(&c);
                }
                if let Some(c) = collection {
                    s.collections.remove(&c);
                }
                read(Reply::Unsubscribed)
            }
        }
    }

    fn write_doc(&mut self, now_ms: u64, key: DocKey, op: WriteOp) -> Result<(Reply, bool)> {
        let dot = self.replica.write(now_ms, key.clone(), op)?;
        Ok((Reply::Written { dot, key }, true))
    }
}

/// Refuses a request needing `needs` on collection `on` (`None`: the grant's own rights)
/// beyond what `grant` gives.
fn allowed(grant: &Grant, needs: Rights, on: Option<&str>) -> Result<()> {
    let has = match on {
        Some(c) => grant.on(c),
        None => Some(grant.rights),
    };
    if has >= Some(needs) {
        return Ok(());
    }
    Err(match (on, grant.is_scoped()) {
        (Some(c), true) => Error::ForbiddenCollection {
            collection: c.chars().take(64).collect(),
            has: has.map_or("nothing", Rights::as_str),
            needs: needs.as_str(),
        },
        _ => Error::Forbidden {
            has: grant.rights.as_str(),
            needs: needs.as_str(),
        },
    })
}

#[cfg(feature = "http")]
/// A page of the changes feed: documents changed since `since` (`_config` left out), the
/// cursor to pass back (everything seen so far, so `since` is part of it) and how many
/// changes are still to come.
fn changes(
    r: &crate::Replica,
    grant: &Grant,
    since: crate::VersionVector,
    limit: usize,
) -> Result<Reply> {
    let delta = r.delta(&since, limit)?;
    let mut cursor = since;
    cursor.join(&delta.watermark);
    let changes: Vec<crate::frame::DocView> = delta
        .docs
        .iter()
        .filter(|e| e.collection != CONFIG_COLLECTION && grant.reads(&e.collection))
        .map(|e| r.view(&DocKey::new(&e.collection, &e.id)))
        .collect::<Result<_>>()?;
    Ok(Reply::Changes {
        changes,
        cursor,
        remaining: delta.remaining,
    })
}

#[cfg(test)]
mod tests {
    use crate::auth::{Grant, Rights};
    use crate::request::{Answer, DoneRequest, Reply, Request, RequestKey};
    use crate::{DocKey, Engine, EngineConfig, ErrorCode, Event, ReplicaId, Tier, WriteOp};
    use serde_json::{json, Map};

    fn flush(e: &mut Engine) -> Vec<DoneRequest> {
        let mut stored = Vec::new();
        while let Some(b) = e.poll_persist() {
            stored.extend(b.requests.iter().copied());
            assert!(e.persisted(b.id).is_ok());
        }
        stored
    }

    fn acks(e: &mut Engine) -> Vec<(u64, Option<crate::Dot>)> {
        std::iter::from_fn(|| e.poll_event())
            .filter_map(|ev| match ev {
                Event::Acked { req, dot } => Some((req, dot)),
                _ => None,
            })
            .collect()
    }

    fn put(x: i64) -> Request {
        let mut m = Map::new();
        m.insert("x".into(), json!(x));
        Request::Write {
            key: DocKey::new("c", "d"),
            op: WriteOp::Put(m),
        }
    }

    #[test]
    fn a_request_run_again_on_a_restored_engine_is_answered_not_redone() {
        let mut cfg = EngineConfig::new(ReplicaId(1), Tier::Local, "s");
        // A browser-like store: no default-policy seed in its first batch.
        cfg.seed_default_policy = false;
        let key = RequestKey { origin: 7, id: 1 };
        let msg = RequestKey { origin: 7, id: 2 };
        let send = || Request::Send {
            channel: "chat".into(),
            payload: json!("hi"),
        };
        let mut a = Engine::new(cfg.clone());
        assert!(a
            .request_once(5, key, &Grant::all(Rights::Admin), put(1))
            .is_ok());
        assert!(a
            .request_once(5, msg, &Grant::all(Rights::Admin), send())
            .is_ok());
        let stored = flush(&mut a);
        assert_eq!(stored.len(), 2);
        let first = acks(&mut a);
        assert_eq!(first.len(), 2);

        // Another engine on the same store (restored), asked the same two requests again.
        let mut b = Engine::new(cfg);
        b.restore_requests(stored);
        let again = b.request_once(6, key, &Grant::all(Rights::Admin), put(2));
        let Ok(Answer::WhenDurable { req, reply }) = again else {
            panic!("{again:?}")
        };
        assert_eq!(reply, Reply::Again { dot: first[0].1 });
        assert!(b
            .request_once(6, msg, &Grant::all(Rights::Admin), send())
            .is_ok());
        assert_eq!(acks(&mut b), vec![(req, first[0].1), (req + 1, None)]);
        assert!(b.poll_persist().is_none(), "nothing new to store");
        assert_eq!(
            b.replica().doc_count().expect("read"),
            0,
            "the write was not made again"
        );
    }

    #[test]
    fn rights_are_checked_per_request_and_per_collection() {
        let mut e = Engine::new(EngineConfig::new(ReplicaId(1), Tier::Local, "s"));
        let config = Request::Write {
            key: DocKey::new("_config", "space"),
            op: WriteOp::Delete,
        };
        for (rights, request) in [
            (Rights::Read, put(1)),
            (Rights::Write, config.clone()),
            (
                Rights::Write,
                Request::SetPolicy {
                    collection: "c".into(),
                    policy: crate::Policy::Merge,
                },
            ),
        ] {
            let err = e
                .request(1, &Grant::all(rights), request)
                .expect_err("refused");
            assert_eq!(err.code(), ErrorCode::Forbidden);
        }
        assert!(e.poll_persist().is_none(), "nothing refused was staged");
        assert!(e.request(1, &Grant::all(Rights::Admin), config).is_ok());
        let read = e.request(
            1,
            &Grant::all(Rights::Read),
            Request::Get {
                key: DocKey::new("c", "d"),
            },
        );
        assert!(matches!(read, Ok(Answer::Now(Reply::Doc(_)))));
        let sub = e.request(
            1,
            &Grant::ADMIN,
            Request::Unsubscribe {
                channel: None,
                collection: None,
            },
        );
        assert_eq!(sub.map_err(|e| e.code()), Err(ErrorCode::BadRequest));
    }

    /// Frames for `session` until the engine has nothing more to send.
    #[cfg(feature = "store")]
    fn frames_to(e: &mut Engine, session: u64) -> Vec<crate::Frame> {
        std::iter::from_fn(|| e.poll_transmit())
            .filter_map(|t| match t {
                crate::Transmit::Frame { session: s, frame } if s == session => Some(frame),
                _ => None,
            })
            .collect()
    }

    #[cfg(feature = "store")]
    fn offsets(frames: &[crate::Frame]) -> Vec<u64> {
        frames
            .iter()
            .filter_map(|f| match f {
                crate::Frame::Broadcast {
                    offset: Some(o), ..
                } => Some(*o),
                _ => None,
            })
            .collect()
    }

    #[test]
    #[cfg(feature = "store")]
    fn a_replay_waits_while_its_session_is_full_and_messages_meanwhile_come_once_in_order() {
        use crate::frame::{Frame, Hello, SessionKind};
        let mut e = Engine::new(EngineConfig::new(ReplicaId(1), Tier::Local, "s"));
        let mut retain = Map::new();
        retain.insert("retain".into(), json!(1000));
        let config = Request::Write {
            key: DocKey::new("_config", "channel:ops"),
            op: WriteOp::Put(retain),
        };
        assert!(e.request(0, &Grant::all(Rights::Admin), config).is_ok());
        let send = |e: &mut Engine, n: u64| {
            let r = Request::Send {
                channel: "ops".into(),
                payload: json!(n),
            };
            assert!(e.request(0, &Grant::all(Rights::Admin), r).is_ok());
            flush(e);
        };
        for n in 0..100 {
            send(&mut e, n);
        }
        let s = e.accept(0);
        let hello = Frame::Hello(Hello {
            space: "s".into(),
            kind: SessionKind::Agent,
            ..Hello::default()
        });
        e.handle_frame(0, s, hello);
        frames_to(&mut e, s);
        let subscribe = Frame::Subscribe {
            req: Some(1),
            channel: Some("ops".into()),
            collection: None,
            from: Some(10),
        };
        e.handle_frame(0, s, subscribe);
        // The acknowledgement, then replayed messages only while the host says there is room.
        let first = e.poll_transmit();
        assert!(
            matches!(
                first,
                Some(crate::Transmit::Frame {
                    frame: Frame::Ack(_),
                    ..
                })
            ),
            "{first:?}"
        );
        let mut got = Vec::new();
        for _ in 0..40 {
            if let Some(crate::Transmit::Frame { frame, .. }) = e.poll_transmit() {
                got.push(frame);
            }
        }
        e.set_writable(s, false);
        assert!(e.has_replay(s));
        assert!(
            frames_to(&mut e, s).is_empty(),
            "a full session gets no replay"
        );
        // Published during the replay: read by the replay, not sent live before it.
        send(&mut e, 100);
        assert!(frames_to(&mut e, s).is_empty());
        e.set_writable(s, true);
        got.extend(frames_to(&mut e, s));
        assert!(!e.has_replay(s));
        let want: Vec<u64> = (11..=101).collect();
        assert_eq!(
            offsets(&got),
            want,
            "every message after the cursor, once, in order"
        );
        // Caught up: the next message goes out live.
        send(&mut e, 101);
        assert_eq!(offsets(&frames_to(&mut e, s)), vec![102]);
    }
}
