//! The peer side of a session: the handshake (`hello` / `welcome`), sync (`push`, `ack`,
//! `pull`, and `next_push`, which cuts the next push for [`Engine::poll_transmit`]),
//! relayed messages (`broadcast`), and the trust checks every write and message from a peer
//! passes before anything changes.

#[cfg(feature = "serve")]
use super::fill;
use super::{Engine, Event, Fatal, Gated, PeerLink, Phase, Transmit, PUSH_BYTES};
#[cfg(feature = "tokens")]
use crate::auth;
use crate::auth::{Grant, Rights};
use crate::frame::{Ack, DocEntry, Frame, Hello, Push, SessionKind, Welcome};
use crate::message::Message;
use crate::replica::CONFIG_COLLECTION;
use crate::{check_name, Error, ReplicaId, SessionId, Tier, VersionVector};
use std::collections::VecDeque;

impl Engine {
    pub(super) fn on_hello(
        &mut self,
        now_ms: u64,
        session: SessionId,
        h: Hello,
    ) -> Result<(), Fatal> {
        if h.space != self.cfg.space {
            return Err(Fatal(Error::WrongSpace {
                expected: self.cfg.space.clone(),
                got: h.space,
            }));
        }
        let grant = match (&self.cfg.secret, &h.token) {
            (None, _) => Grant::all(Rights::Admin),
            #[cfg(feature = "tokens")]
            (Some(secret), Some(t)) => auth::verify(secret, t, &self.cfg.space, now_ms)?,
            // Built without token verification (the browser): a secret opens nothing.
            #[cfg(not(feature = "tokens"))]
            (Some(_), Some(_)) => {
                let _ = now_ms;
                return Err(Fatal(Error::Unauthorized(
                    "this build cannot verify tokens (bridge-core without `tokens`)".into(),
                )));
            }
            (Some(_), None) => {
                return Err(Fatal(Error::Unauthorized(
                    "this server requires a token; pass one in `hello.token`".into(),
                )))
            }
        };
        let kind = h.kind_str();
        let peer = match h.kind {
            SessionKind::Agent => None,
            // A replica with a subscription holds part of the space: it serves a replica of
            // part of that part, and no other.
            SessionKind::Peer
                if self.serving().is_some_and(|mine| {
                    !h.collections
                        .as_ref()
                        .is_some_and(|c| c.iter().all(|p| crate::auth::within_any(p, &mine)))
                }) =>
            {
                return Err(Fatal(Error::Protocol(format!(
                    "this replica holds only the collections {:?}: a replica it serves must name `collections` within them",
                    self.serving().unwrap_or_default()
                ))))
            }
            // A token scoped to collections replicates within what it reads, and says so.
            SessionKind::Peer
                if grant.is_scoped()
                    && !h
                        .collections
                        .as_ref()
                        .is_some_and(|c| c.iter().all(|p| grant.reads_all(p))) =>
            {
                return Err(Fatal(Error::Forbidden {
                    has: "rights on some collections only",
                    needs: "a `hello` whose `collections` name only collections the token reads",
                }))
            }
            SessionKind::Peer => {
                let (Some(replica), Some(tier)) = (h.replica, h.tier) else {
                    return Err(Fatal(Error::Malformed(
                        "a peer `hello` needs `replica` and `tier`".into(),
                    )));
                };
                if replica == self.replica.id() {
                    return Err(Fatal(Error::Protocol(
                        "the peer has this store's own replica id".into(),
                    )));
                }
                let mut known = h.vector.unwrap_or_default();
                self.distrust_own_claim(&mut known);
                #[cfg(feature = "serve")]
                self.expire(now_ms);
                if let Some(c) = &h.collections {
                    crate::auth::check_patterns(c.iter().map(String::as_str))?;
                }
                let mut link = PeerLink::new(replica, tier, known, h.messages.unwrap_or_default());
                link.peer_horizon = h.horizon.unwrap_or_default();
                #[cfg(feature = "serve")]
                if Self::fills(h.collections.as_deref(), &link.known, replica) {
                    link.fill = Some(fill::Fill::default());
                }
                link.held = h.collections.clone();
                link.filter = h.collections;
                #[cfg(feature = "serve")]
                if self.replica.stability().resync.contains(&replica) {
                    link.resync = Some(self.replica.stability().resync_below());
                } else if self.behind(&link.acked)
                    // A walk by key that did not finish left documents beyond its vector
                    // (`fill.rs`): one we collected since must go there too.
                    || (h.unclaimed == Some(true)
                        && fill::claims_only(&link.acked, replica)
                        && !self.replica.stability().horizon.is_empty())
                {
                    link.resync = Some(self.replica.stability().horizon.clone());
                }
                Some(link)
            }
        };
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        s.phase = Phase::Open;
        s.kind = h.kind;
        let rights = grant.rights;
        s.grant = grant;
        let compact = h.compact == Some(true);
        s.compact = compact;
        s.name = h.name.unwrap_or_else(|| format!("{kind}-{session}"));
        s.peer = peer;
        let welcome = Welcome {
            space: self.cfg.space.clone(),
            replica: self.replica.id(),
            tier: self.replica.tier(),
            vector: self.replica.vector().clone(),
            messages: self.replica.message_seen().clone(),
            session,
            rights: Some(rights),
            resync: self.link(session).and_then(|l| l.resync.clone()),
            // Only to a peer whose `hello` carried the field: an older build refuses a
            // `welcome` longer than it knows.
            compact: compact.then_some(true),
        };
        self.send(session, Frame::Welcome(welcome));
        #[cfg(feature = "serve")]
        if let Some(peer) = self.link(session) {
            // From now on the peer holds the horizon back until it reports.
            let (replica, held) = (peer.replica, peer.acked.clone());
            if !self.replica.stability().is_tracked(replica) {
                self.replica.stability_mut().track(replica, &held);
            }
            self.replica.stability_mut().seen(replica, now_ms);
        }
        self.opened(session)?;
        self.horizon_round();
        Ok(())
    }

    /// A peer that holds part of what is below our horizon but not all of it, while we
    /// collect: it may hold a document whose deletion it lacks and we collected, which no
    /// delta could tell it about, so it is resynced (`resync.rs`) before any push. A peer
    /// that holds nothing below the horizon (a new replica, or a server whose writes so far
    /// come from its own peers) holds nothing that could have been collected; a peer we
    /// track holds all of it (the horizon is below its floor), so this costs them nothing,
    /// and checking them anyway catches a store restored from an old copy.
    #[cfg(feature = "serve")]
    fn behind(&self, held: &VersionVector) -> bool {
        // Whether or not this replica collects: its own server may have resynced it, and
        // what it dropped then is what its peers would keep.
        let horizon = &self.replica.stability().horizon;
        let holds_part = !crate::replica::meet(held, horizon).is_empty();
        holds_part && !held.dominates(horizon)
    }

    pub(super) fn on_welcome(&mut self, session: SessionId, w: Welcome) -> Result<(), Fatal> {
        if w.space != self.cfg.space {
            return Err(Fatal(Error::WrongSpace {
                expected: self.cfg.space.clone(),
                got: w.space,
            }));
        }
        if self.cfg.collections.is_some() {
            let pinned = self.cfg.upstream.or(self.replica.stability().upstream);
            match pinned {
                Some(pinned) if pinned != w.replica => {
                    return Err(Fatal(Error::Protocol(format!(
                        "this store replicates part of the space from server {pinned}, and {} answered: a partial store syncs with the server it began with only (its vector passes writes of other collections that only that server holds); open a new store to sync with another",
                        w.replica
                    ))))
                }
                Some(_) => {}
                None => {
                    self.cfg.upstream = Some(w.replica);
                    self.replica.stability_mut().upstream = Some(w.replica);
                }
            }
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        s.phase = Phase::Open;
        s.compact = w.compact == Some(true);
        // We chose this server: what it sends is taken as a relay's.
        s.grant = Grant::all(Rights::Admin);
        let mut known = w.vector;
        self.distrust_own_claim(&mut known);
        let mut link = PeerLink::new(w.replica, w.tier, known, w.messages);
        link.own_only = w.rights.is_some_and(|r| r < Rights::Admin);
        link.inventory = w.resync.map(super::resync::Inventory::new);
        self.events.push_back(Event::Welcomed {
            session,
            replica: w.replica,
            tier: w.tier,
            vector: link.acked.clone(),
            rights: w.rights,
        });
        if let Some(s) = self.sessions.get_mut(&session) {
            s.peer = Some(link);
        }
        self.opened(session)?;
        self.horizon_round();
        Ok(())
    }

    /// A peer claims to hold more writes of this replica than it ever made: forged by a
    /// session that claimed our id, or we were restored from an older copy. Either way the
    /// claim must not hide our writes from it, nor may our next write reuse a counter it
    /// covers: we forget what the peer holds of us (everything of ours is offered again,
    /// which the peer takes idempotently) and move our counter past the claim.
    fn distrust_own_claim(&mut self, known: &mut VersionVector) {
        let me = self.replica.id();
        let claimed = known.get(me);
        if claimed > self.replica.latest_vector().get(me) {
            self.replica.skip_own_counter(claimed);
            known.forget(me);
        }
    }

    /// A session is open: presence changes, and a peer is replayed the retained messages it
    /// has not seen (a failed store read closes it: it reconnects and is replayed then).
    fn opened(&mut self, session: SessionId) -> Result<(), Fatal> {
        self.presence_dirty = true;
        let Some(s) = self.sessions.get(&session) else {
            return Ok(());
        };
        self.events.push_back(Event::SessionOpened {
            session,
            kind: s.kind,
            name: s.name.clone(),
            replica: s.peer.as_ref().map(|p| p.replica),
        });
        // Replay retained messages the peer has not seen, oldest first.
        let Some((known, own_only)) = s.peer.as_ref().map(|p| (p.msg_known.clone(), p.own_only))
        else {
            return Ok(());
        };
        let me = self.replica.id();
        let mut seen = known;
        // Read from the store a page at a time when the replica is stored; the browser's
        // build (no `store`) walks its logs in memory.
        #[cfg(feature = "store")]
        let frames: Vec<Frame> = self
            .replica
            .retained_where(|r| {
                if own_only && r.message.id.origin != me {
                    return false;
                }
                if r.message.id.seq > seen.get(r.message.id.origin) {
                    seen.raise(r.message.id.origin, r.message.id.seq);
                    return true;
                }
                false
            })?
            .into_iter()
            .map(|r| Frame::Broadcast {
                message: r.message,
                offset: None,
            })
            .collect();
        #[cfg(not(feature = "store"))]
        let mut frames = Vec::new();
        #[cfg(not(feature = "store"))]
        for r in self.replica.logs().all() {
            if own_only && r.message.id.origin != me {
                continue;
            }
            if r.message.id.seq > seen.get(r.message.id.origin) {
                seen.raise(r.message.id.origin, r.message.id.seq);
                frames.push(Frame::Broadcast {
                    message: r.message.clone(),
                    offset: None,
                });
            }
        }
        if let Some(p) = self.link_mut(session) {
            p.msg_known = seen;
        }
        for f in frames {
            self.send(session, f);
        }
        Ok(())
    }

    /// `push`: the trust rule, then the join; the `ack` waits until the push is durable.
    pub(super) fn on_push(
        &mut self,
        now_ms: u64,
        session: SessionId,
        // Mutated by the server's drop of what it collected (feature `serve`).
        #[cfg_attr(not(feature = "serve"), allow(unused_mut))] mut p: Push,
    ) -> Result<(), Fatal> {
        // A token scoped to collections writes per collection (checked below, document by
        // document); any other needs `write`.
        if !self
            .sessions
            .get(&session)
            .is_some_and(|s| s.grant.is_scoped())
        {
            self.need(session, Rights::Write)?;
        }
        let Some(s) = self.sessions.get(&session) else {
            return Ok(());
        };
        let Some(link) = s.peer.as_ref() else {
            return Err(Fatal(Error::PeerOnly("push")));
        };
        // A push carries documents through their live writes: a state without one comes
        // only from a server resyncing us (`resync.rs`), and from anyone else it would, read
        // against what its sender holds, erase ours.
        if !s.dialed && p.docs.iter().any(|d| d.state.siblings.is_empty()) {
            return Err(Fatal(Error::Protocol(
                "a pushed document has no sibling".into(),
            )));
        }
        // What the peer brought back of what we collected is dropped before the trust rule
        // sees it, and answered (`resync.rs`).
        #[cfg(feature = "serve")]
        let gone = if !s.dialed && (s.grant.rights < Rights::Admin || link.resync.is_some()) {
            self.drop_collected(&mut p.docs)?
        } else {
            Vec::new()
        };
        // A token scoped to collections writes only where it may: `write` on a document's
        // collection, `admin` on the collection of a policy (`_config/collection:<name>`)
        // and in its own rights for the rest of `_config`.
        let needs = |d: &DocEntry| match d.collection == CONFIG_COLLECTION {
            true => Rights::Admin,
            false => Rights::Write,
        };
        let scope = |d: &DocEntry| {
            crate::request::read_scope(&crate::DocKey::new(&d.collection, &d.id)).to_owned()
        };
        if let Some(d) = p
            .docs
            .iter()
            .find(|d| s.grant.is_scoped() && s.grant.on(&scope(d)).is_none_or(|r| r < needs(d)))
        {
            return Err(Fatal(Error::ForbiddenCollection {
                collection: scope(d).chars().take(64).collect(),
                has: s.grant.on(&scope(d)).map_or("nothing", Rights::as_str),
                needs: needs(d).as_str(),
            }));
        }
        // The trust rule, for every push from every session, before anything changes.
        if s.grant.rights < Rights::Admin {
            if p.docs.iter().any(|d| d.collection == CONFIG_COLLECTION) {
                return Err(Fatal(Error::Forbidden {
                    has: s.grant.rights.as_str(),
                    needs: "admin (the push changes `_config`)",
                }));
            }
            self.replica
                .check_introduced(link.replica, &p.docs, &p.watermark)?;
        }
        let Push {
            seq,
            docs,
            mut watermark,
            remaining,
            expanded: _,
        } = p;
        self.distrust_own_claim(&mut watermark);
        let count = docs.len() as u64;
        // What the peer holds durably below our horizon (ARCHITECTURE.md, "Collection"): a
        // sibling it has seen and no longer holds is gone there, so it is gone here too.
        let held = self
            .link(session)
            .map(|l| {
                let mut h = self.replica.stability().horizon.clone();
                h.join(&l.peer_horizon);
                crate::replica::meet(&h, &l.acked)
            })
            .unwrap_or_default();
        let filter = self.link_held(session);
        self.replica
            .apply_remote_held(now_ms, docs, &watermark, &held, filter.as_deref())?;
        self.events.push_back(Event::PushReceived {
            session,
            docs: count,
            remaining,
        });
        if let Some(link) = self.link_mut(session) {
            link.known.join(&watermark);
            // A peer only sends what it has persisted: that counts as acknowledged, so
            // changes that came from the peer never show as lag towards it.
            link.acked.join(&watermark);
        }
        self.apply_report(session);
        self.gate(Gated::Frame(
            session,
            Frame::Ack(Ack {
                seq: Some(seq),
                ..Ack::default()
            }),
        ));
        #[cfg(feature = "serve")]
        self.send_collected(session, gone)?;
        #[cfg(feature = "serve")]
        self.announce_drops(session)?;
        Ok(())
    }

    /// `ack` of our pushes: what the peer has persisted of ours.
    pub(super) fn on_ack(&mut self, session: SessionId, a: Ack) -> Result<(), Fatal> {
        let Some(seq) = a.seq else { return Ok(()) };
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        let Some(link) = s.peer.as_mut() else {
            return Ok(());
        };
        let mut acked = None;
        while link.unacked.front().is_some_and(|(q, _)| *q <= seq) {
            acked = link.unacked.pop_front();
        }
        let inventory_done = link.inventory.as_ref().is_some_and(|i| i.done.is_some());
        if inventory_done {
            self.inventory_acked(session, seq);
        }
        let Some(link) = self
            .sessions
            .get_mut(&session)
            .and_then(|s| s.peer.as_mut())
        else {
            return Ok(());
        };
        if let Some((_, wm)) = acked {
            link.acked.join(&wm);
            self.events.push_back(Event::PeerAcked {
                session,
                tier: link.tier,
                vector: link.acked.clone(),
            });
            self.apply_report(session);
        }
        Ok(())
    }

    /// `pull`: the peer asks for everything above `vector` again.
    pub(super) fn on_pull(
        &mut self,
        session: SessionId,
        mut vector: VersionVector,
    ) -> Result<(), Fatal> {
        self.distrust_own_claim(&mut vector);
        if let Some(link) = self.link_mut(session) {
            link.known = vector;
            link.sync_requested = true;
        }
        Ok(())
    }

    /// `broadcast` from a peer: a message relayed to this store, checked like a push.
    pub(super) fn on_broadcast(
        &mut self,
        now_ms: u64,
        session: SessionId,
        message: Message,
    ) -> Result<(), Fatal> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        let Some(link) = s.peer.as_mut() else {
            return Err(Fatal(Error::PeerOnly("broadcast")));
        };
        if s.grant.rights < Rights::Write {
            return Err(Fatal(Error::Forbidden {
                has: s.grant.rights.as_str(),
                needs: "write",
            }));
        }
        if s.grant.rights < Rights::Admin && message.id.origin != link.replica {
            return Err(Fatal(Error::RelayForbidden {
                own: link.replica,
                what: format!("message {} of origin {}", message.id.seq, message.id.origin),
            }));
        }
        link.msg_known.raise(message.id.origin, message.id.seq);
        check_name("channel", &message.channel, false)?;
        self.replica.accept_message(now_ms, message)?;
        Ok(())
    }

    pub(super) fn next_push(&mut self) -> Option<Transmit> {
        let ids: Vec<SessionId> = self
            .sessions
            .range(self.push_cursor..)
            .chain(self.sessions.range(..self.push_cursor))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
            let Some(link) = s.peer.as_ref() else {
                continue;
            };
            if matches!(s.phase, Phase::Open)
                && s.dialed
                && link.inventory.is_none()
                && (self.change.is_some() || !self.replica.stability().forget.is_empty())
            {
                // A change of collections, or forgetting those dropped (`replicate.rs`).
                if let Some(t) = self.step_change(id) {
                    self.push_cursor = id + 1;
                    return Some(t);
                }
            }
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
            let Some(link) = s.peer.as_ref() else {
                continue;
            };
            if matches!(s.phase, Phase::Open) && s.dialed && link.inventory.is_some() {
                // Resyncing: the inventory goes first, whatever the push mode, and nothing
                // else until the server has acknowledged its last page.
                if let Some(t) = self.next_inventory(id) {
                    self.push_cursor = id + 1;
                    return Some(t);
                }
                continue;
            }
            if !matches!(s.phase, Phase::Open)
                || link.unacked.len() >= self.cfg.window
                || link.resync.is_some()
                || !(s.auto_push || link.sync_requested)
                // A peer that dialed us gets documents once its entry in our table is
                // durable (a batch or two after its `hello`): no restart can then forget
                // that it holds some, and the horizon waits for it.
                || (!s.dialed && !self.durably_tracked(link.replica))
            {
                continue;
            }
            #[cfg(feature = "serve")]
            if link.fill.is_some() {
                // A walk by key goes first, and no delta until its last page.
                if let Some(t) = self.next_fill(id) {
                    self.push_cursor = id + 1;
                    return Some(t);
                }
                continue;
            }
            let me = self.replica.id();
            let ahead = if link.own_only {
                let mine = self.replica.vector().get(me);
                mine > link.known.get(me)
                    && link
                        .blocked_at
                        .as_ref()
                        .is_none_or(|(k, m)| k != &link.known || *m != mine)
            } else {
                self.replica.ahead_of(&link.known)
            };
            if !ahead {
                if let Some(link) = self.link_mut(id) {
                    link.sync_requested = false;
                    link.run_sent = 0;
                }
                continue;
            }
            let cut = if link.own_only {
                self.replica
                    .delta_own(&link.known, self.cfg.batch_docs, PUSH_BYTES)
                    .map(|d| (d.delta, d.blocked))
            } else {
                self.replica
                    .delta_bounded(
                        &link.known,
                        self.cfg.batch_docs,
                        PUSH_BYTES,
                        link.filter.as_deref(),
                    )
                    .map(|d| (d, false))
            };
            let (delta, blocked) = match cut {
                Ok(cut) => cut,
                // A read the host has not fetched yet: nothing changed; this push is cut
                // again at the next drain, once the host has read what was missed.
                Err(_) if self.replica.store_missed() => continue,
                Err(e) => {
                    // The store could not be read: this link stops pushing and is closed;
                    // the peer resumes from its vector when it comes back.
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.auto_push = false;
                        if let Some(link) = s.peer.as_mut() {
                            link.sync_requested = false;
                        }
                    }
                    return Some(Transmit::Close {
                        session: id,
                        code: e.code(),
                        reason: e.to_string(),
                    });
                }
            };
            let Some(link) = self.sessions.get_mut(&id).and_then(|s| s.peer.as_mut()) else {
                continue;
            };
            if blocked {
                // Everything before the blocking document goes now; then we wait for `known`
                // to move. The peer believes we hold what we got elsewhere, so it would never
                // send it to us once it gets it: a `pull` with what we hold lowered to what
                // it holds makes its normal delta bring those writes, and `known` with them.
                let mut after = link.known.clone();
                after.join(&delta.watermark);
                link.blocked_at = Some((after, self.replica.vector().get(me)));
                let mut vector = self.replica.vector().clone();
                for (r, c) in self.replica.vector().iter() {
                    if r != me && c > link.known.get(r) {
                        vector.forget(r);
                        vector.raise(r, link.known.get(r));
                    }
                }
                let pull = Transmit::Frame {
                    session: id,
                    frame: Frame::Pull { vector },
                };
                if delta.docs.is_empty() && link.known.dominates(&delta.watermark) {
                    return Some(pull);
                }
                self.outbox.push_back(pull);
            }
            link.known.join(&delta.watermark);
            let seq = link.take_seq(delta.watermark.clone());
            link.run_sent += delta.docs.len() as u64;
            let (sent, remaining) = (link.run_sent, delta.remaining);
            self.events.push_back(Event::SyncProgress {
                session: id,
                sent,
                remaining,
            });
            self.push_cursor = id + 1;
            let frame = Frame::Push(Push {
                seq,
                docs: delta.docs,
                watermark: delta.watermark,
                remaining,
                // Set for the session by `Engine::poll_transmit`.
                expanded: false,
            });
            return Some(Transmit::Frame { session: id, frame });
        }
        None
    }
}

impl PeerLink {
    /// The `seq` of the next frame we send that the peer acknowledges (a push, or an
    /// `inventory` page), waiting for its `ack` with what it gives the peer (`watermark`).
    pub(super) fn take_seq(&mut self, watermark: VersionVector) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.push_back((seq, watermark));
        seq
    }

    fn new(replica: ReplicaId, tier: Tier, known: VersionVector, msg_known: VersionVector) -> Self {
        PeerLink {
            replica,
            tier,
            // The vector in `hello` / `welcome` is what the peer holds durably.
            acked: known.clone(),
            known,
            peer_horizon: VersionVector::new(),
            resync: None,
            resync_again: false,
            filter: None,
            held: None,
            last_error: None,
            inventory: None,
            fill: None,
            msg_known,
            next_seq: 1,
            unacked: VecDeque::new(),
            sync_requested: false,
            run_sent: 0,
            learned: Vec::new(),
            presence_sent: Vec::new(),
            own_only: false,
            blocked_at: None,
            reported: None,
            horizon_sent: VersionVector::new(),
            #[cfg(feature = "serve")]
            report: None,
        }
    }
}

impl Hello {
    fn kind_str(&self) -> &'static str {
        match self.kind {
            SessionKind::Agent => "agent",
            SessionKind::Peer => "peer",
        }
    }
}
