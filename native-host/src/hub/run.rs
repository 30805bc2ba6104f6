//! The hub's loop: wait for an input, drain what else is queued, handle each, then flush —
//! persist every batch cut in one transaction, report them persisted, and only then send what
//! the engines want sent. One timer serves every engine's earliest deadline.

use super::{Conn, Hub, Input, LinkNote, Output, NO_LINK};
use crate::clock::now_ms;
use crate::out_queue::Refused;
use bridge_core::api::{self, ApiError, ApiResponse, Outcome};
use bridge_core::auth::Rights;
use bridge_core::{Engine, ErrorCode, Event, Frame, PersistBatch, Request, SessionId, Transmit};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

impl Hub {
    /// Runs until every input sender is gone. Blocks the calling thread.
    pub fn run(mut self, mut rx: mpsc::Receiver<Input>, sync_every: Option<Duration>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "could not start the hub runtime");
                std::process::exit(1);
            }
        };
        // Taken once: `run` consumes the hub.
        let mut room_rx = match self.room_rx.take() {
            Some(rx) => rx,
            None => mpsc::unbounded_channel().1,
        };
        rt.block_on(async move {
            let period = sync_every.unwrap_or(Duration::from_secs(3600 * 24 * 365));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                // One timer for every engine: the earliest deadline any of them has, asked
                // again after every round (each round ends with a flush).
                let deadline = self.poll_timeout();
                let wake = tokio::time::Instant::now()
                    + Duration::from_millis(deadline.unwrap_or(0).saturating_sub(now_ms()));
                tokio::select! {
                    input = rx.recv() => {
                        let Some(input) = input else { break };
                        self.handle(input);
                        let mut n = 1;
                        while n < 8192 {
                            match rx.try_recv() {
                                Ok(i) => {
                                    self.handle(i);
                                    n += 1;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    Some((space, session)) = room_rx.recv() => {
                        self.room(&space, session);
                        while let Ok((space, session)) = room_rx.try_recv() {
                            self.room(&space, session);
                        }
                    }
                    _ = tick.tick(), if sync_every.is_some() => {
                        self.handle(Input::Sync { push: true, pull: false, token: None, reply: None });
                    }
                    _ = tokio::time::sleep_until(wake), if deadline.is_some() => {
                        // Frames already queued count as heard before anyone is called
                        // silent.
                        while let Ok(i) = rx.try_recv() {
                            self.handle(i);
                        }
                        self.handle_timeout();
                    }
                }
                self.flush();
            }
        });
    }

    /// A connection that was too full for its session's replay drained: the engine sends on
    /// (in the `flush` that ends this round).
    fn room(&mut self, space: &str, session: SessionId) {
        if let Some(s) = self.spaces.get_mut(space) {
            if s.conns.contains_key(&session) {
                s.engine.set_writable(session, true);
            }
        }
    }

    /// The earliest deadline of any engine (ms since the epoch).
    fn poll_timeout(&self) -> Option<u64> {
        self.spaces
            .values()
            .filter_map(|s| s.engine.poll_timeout())
            .min()
    }

    /// The timer fired: every engine whose deadline has come handles it (pings, closes for
    /// a handshake that ran out or a silent peer); `flush` sends what it produced.
    fn handle_timeout(&mut self) {
        let now = now_ms();
        for s in self.spaces.values_mut() {
            if s.engine.poll_timeout().is_some_and(|d| d <= now) {
                s.engine.handle_timeout(now);
            }
        }
    }

    fn handle(&mut self, input: Input) {
        self.metrics.inputs.inc();
        let now = now_ms();
        match input {
            Input::Accept {
                space,
                out,
                session: reply,
            } => match self.space(&space) {
                Ok(s) => {
                    let session = s.engine.accept(now);
                    s.conns.insert(
                        session,
                        Conn {
                            out,
                            upstream: false,
                            manual: false,
                        },
                    );
                    let _ = reply.send(session);
                }
                Err(e) => {
                    let _ = out.send(Output::Frame(Frame::Error {
                        req: None,
                        code: e.code,
                        message: e.message.clone(),
                    }));
                    let _ = out.send(Output::Close {
                        code: e.code.close_code(),
                        reason: e.message,
                    });
                }
            },
            Input::Connect {
                space,
                token,
                out,
                manual,
                session: reply,
            } => {
                if let Ok(s) = self.space(&space) {
                    // `set_auto_push` only sticks once the handshake made the session a
                    // peer, so it is applied on `SessionOpened` (see `flush`).
                    let session = s.engine.connect(now, token, "upstream");
                    s.conns.insert(
                        session,
                        Conn {
                            out,
                            upstream: true,
                            manual,
                        },
                    );
                    let link = self.links.entry(space.clone()).or_default();
                    link.session = Some(session);
                    link.up_since_ms = now;
                    let _ = reply.send(session);
                }
            }
            Input::Frame {
                space,
                session,
                frame,
                permit: _permit,
            } => {
                self.metrics.frames_in.inc();
                if let Frame::Error { code, message, .. } = &frame {
                    // The cloud refused something (e.g. our token): status shows it.
                    if let Some(link) = self
                        .links
                        .get_mut(&space)
                        .filter(|l| l.session == Some(session))
                    {
                        link.last_error =
                            Some(format!("the cloud answered `{}`: {message}", code.as_str()));
                    }
                }
                if let Some(s) = self.spaces.get_mut(&space) {
                    s.engine.handle_frame(now, session, frame);
                }
            }
            Input::DecodeError {
                space,
                session,
                req,
                error,
            } => {
                self.metrics.decode_errors.inc();
                if let Some(s) = self.spaces.get_mut(&space) {
                    s.engine.handle_decode_error(session, req, &error);
                }
            }
            Input::Closed { space, session } => {
                if let Some(link) = self
                    .links
                    .get_mut(&space)
                    .filter(|l| l.session == Some(session))
                {
                    link.session = None;
                    link.acked_when_down = self
                        .spaces
                        .get(&space)
                        .and_then(|s| s.engine.peer_status(session))
                        .map(|p| p.acked)
                        .or(link.acked_when_down.take());
                }
                if let Some(s) = self.spaces.get_mut(&space) {
                    s.engine.close(session);
                    s.conns.remove(&session);
                }
            }
            Input::Api {
                space,
                request,
                token,
                reply,
            } => {
                self.metrics.api_requests.inc();
                let result = self.api(now, &space, request, token.as_deref());
                match result {
                    Ok(Outcome::Done(resp)) => {
                        let _ = reply.send(resp);
                    }
                    Ok(Outcome::AfterAck { req, response }) => {
                        if let Some(s) = self.spaces.get_mut(&space) {
                            s.waiting.insert(req, (reply, response));
                        }
                    }
                    Err(e) => {
                        self.metrics.api_errors.inc();
                        let _ = reply.send(e.response());
                    }
                }
            }
            Input::Metrics { token, reply } => {
                let resp = match self.cfg.metrics.check(token.as_deref()) {
                    Ok(()) => {
                        ApiResponse::text(200, super::metrics::CONTENT_TYPE, self.render_metrics())
                    }
                    Err(e) => e.response(),
                };
                let _ = reply.send(resp);
            }
            Input::Status { token, reply } => {
                let resp = match self.visible_spaces(token.as_deref(), now, Rights::Read) {
                    // Through a `Value`, whose keys are ordered as they always were.
                    Ok(visible) => match serde_json::to_value(self.status(visible.as_ref())) {
                        Ok(v) => ApiResponse::json(200, &v),
                        Err(e) => {
                            ApiError::new(ErrorCode::Internal, format!("status: {e}")).response()
                        }
                    },
                    Err(e) => e.response(),
                };
                let _ = reply.send(resp);
            }
            Input::Link { space, note } => {
                let link = self.links.entry(space).or_default();
                match note {
                    LinkNote::NotLinked(reason) => link.not_linked = Some(reason),
                    LinkNote::Unreachable(error) => link.last_error = Some(error),
                }
            }
            Input::Sync {
                push,
                pull,
                token,
                reply,
            } => {
                // Asked over HTTP, with a secret set: only the spaces the token may write.
                let only = match reply.is_some() {
                    true => match self.visible_spaces(token.as_deref(), now, Rights::Write) {
                        Ok(only) => only,
                        Err(e) => {
                            if let Some(reply) = reply {
                                let _ = reply.send(e.response());
                            }
                            return;
                        }
                    },
                    false => None,
                };
                let mut links = 0;
                for (name, s) in self.spaces.iter_mut() {
                    if only.as_ref().is_some_and(|o| !o.contains(name)) {
                        continue;
                    }
                    for (id, c) in &s.conns {
                        if c.upstream {
                            links += 1;
                            if push {
                                s.engine.sync_now(*id);
                            }
                            if pull {
                                s.engine.pull(*id);
                            }
                        }
                    }
                }
                for (name, link) in self.links.iter_mut() {
                    if only.as_ref().is_some_and(|o| !o.contains(name)) {
                        continue;
                    }
                    if push {
                        link.push_sent = 0;
                        link.push_remaining = 0;
                    }
                    if pull {
                        link.pull_received = 0;
                        link.pull_remaining = 0;
                    }
                }
                if let Some(reply) = reply {
                    let resp = if links == 0 {
                        ApiError::not_found(NO_LINK).response()
                    } else {
                        ApiResponse::json(200, &json!({"links": links, "push": push, "pull": pull}))
                    };
                    let _ = reply.send(resp);
                }
            }
        }
    }

    fn api(
        &mut self,
        now: u64,
        space: &str,
        request: Request,
        token: Option<&str>,
    ) -> Result<Outcome, ApiError> {
        let grant = api::authorize(self.cfg.secret.as_deref(), token, space, now)?;
        let s = self.space(space)?;
        api::execute(&mut s.engine, now, &grant, request)
    }

    /// Persist, release, send: the second half of every round — the core's host loop
    /// (`Engine::cut_batches`, `batches_persisted`, `drain`) over every space, with one
    /// commit for the batches of all of them.
    fn flush(&mut self) {
        let mut batches: Vec<(String, Vec<PersistBatch>)> = Vec::new();
        for (name, s) in self.spaces.iter_mut() {
            let cut = s.engine.cut_batches();
            if !cut.is_empty() {
                batches.push((name.clone(), cut));
            }
        }
        if !batches.is_empty() {
            let t = Instant::now();
            let refs: Vec<(&str, &PersistBatch)> = batches
                .iter()
                .flat_map(|(n, bs)| bs.iter().map(move |b| (n.as_str(), b)))
                .collect();
            if let Err(e) = self.store.write(&refs) {
                // Nothing can be acknowledged any more; stop rather than pretend.
                tracing::error!(error = %e, "could not persist; stopping so that no unpersisted write is acknowledged");
                std::process::exit(70);
            }
            self.metrics.commit(t.elapsed().as_secs_f64());
            for (name, bs) in &batches {
                for b in bs {
                    self.metrics.batches.inc();
                    self.metrics.docs_written.inc_by(b.docs.len() as u64);
                    self.metrics
                        .messages_written
                        .inc_by(b.messages.len() as u64);
                }
                if let Some(s) = self.spaces.get_mut(name) {
                    if let Err(e) = s.engine.batches_persisted(bs) {
                        tracing::error!(error = %e, space = %name, "engine refused a persisted report");
                    }
                    let (space_default, local) = s.engine.default_policies();
                    if s.default_logged != Some(space_default) {
                        s.default_logged = Some(space_default);
                        if space_default != local {
                            tracing::warn!(
                                space = %name,
                                space_default = space_default.as_str(),
                                conflict_strategy = local.as_str(),
                                "the space's replicated default policy differs from CONFLICT_STRATEGY, which only seeds new spaces; the space's value applies"
                            );
                        }
                    }
                }
            }
        }
        let mut fell_behind = 0;
        let mut peer_acked = false;
        let now = now_ms();
        let (cfg, metrics, room_tx) = (&self.cfg, &mut self.metrics, &self.room_tx);
        for (space, s) in self.spaces.iter_mut() {
            let mut link = self.links.get_mut(space);
            let upstream = link.as_ref().and_then(|l| l.session);
            let mut triggered = false;
            let (conns, waiting) = (&mut s.conns, &mut s.waiting);
            s.engine.drain(|engine, out| match out {
                bridge_core::Output::Event(ev) => match ev {
                    // SYNC_MODE=event: a durable change that matches a trigger pushes now
                    // (events come before transmits, so the push leaves in this round).
                    // Changes that came down from the cloud match too; the push then finds
                    // nothing to send.
                    Event::DocChanged(view)
                        if !triggered && cfg.event_collections.contains(&view.collection) =>
                    {
                        triggered = true;
                        event_push(engine, upstream, link.as_deref_mut());
                    }
                    Event::Message { message, .. }
                        if !triggered && cfg.event_channels.contains(&message.channel) =>
                    {
                        triggered = true;
                        event_push(engine, upstream, link.as_deref_mut());
                    }
                    Event::SyncProgress {
                        session,
                        sent,
                        remaining,
                    } if Some(session) == upstream => {
                        if let Some(l) = link.as_deref_mut() {
                            l.push_sent = sent;
                            l.push_remaining = remaining;
                        }
                    }
                    Event::PushReceived {
                        session,
                        docs,
                        remaining,
                    } if Some(session) == upstream => {
                        // A catch-up batch from the cloud: pull progress for `sync --pull`.
                        if let Some(l) = link.as_deref_mut() {
                            l.pull_received += docs;
                            l.pull_remaining = remaining;
                            l.pull_last_ms = now;
                            if remaining == 0 {
                                l.last_sync_ms = now;
                            }
                        }
                    }
                    Event::Acked { req, .. } => {
                        metrics.acks_local.inc();
                        if let Some((reply, resp)) = waiting.remove(&req) {
                            let _ = reply.send(resp);
                        }
                    }
                    Event::PeerAcked { session, .. } => {
                        peer_acked = true;
                        if Some(session) == upstream {
                            if let Some(l) = link.as_deref_mut() {
                                l.last_sync_ms = now;
                            }
                        }
                    }
                    Event::SessionOpened {
                        session,
                        kind,
                        name,
                        ..
                    } => {
                        tracing::debug!(session, ?kind, %name, "session opened");
                        if conns.get(&session).is_some_and(|c| c.manual) {
                            engine.set_auto_push(session, false);
                        }
                        if Some(session) == upstream {
                            if let Some(l) = link.as_deref_mut() {
                                l.last_error = None;
                                if engine.peer_status(session).is_some_and(|p| p.pending == 0) {
                                    l.last_sync_ms = now;
                                }
                            }
                        }
                    }
                    Event::Replicated { collections } => {
                        tracing::info!(%space, ?collections, "replicating these collections now");
                    }
                    Event::ReplicateRefused {
                        collections,
                        code,
                        message,
                    } => {
                        tracing::warn!(%space, ?collections, code = code.as_str(), %message, "the cloud refused SYNC_COLLECTIONS; replicating what was replicated before");
                        if let Some(l) = link.as_deref_mut() {
                            l.last_error = Some(format!("SYNC_COLLECTIONS refused: {message}"));
                        }
                    }
                    _ => {}
                },
                bridge_core::Output::Transmit(t) => {
                    let (session, out, close) = match t {
                        Transmit::Frame { session, frame } => {
                            (session, Output::Frame(frame), false)
                        }
                        Transmit::Close {
                            session,
                            code,
                            reason,
                        } => (
                            session,
                            Output::Close {
                                code: code.close_code(),
                                reason,
                            },
                            true,
                        ),
                    };
                    let Some(c) = conns.get(&session) else {
                        return;
                    };
                    metrics.frames_out.inc();
                    // Never waits: a connection whose queue would pass its bound is closed
                    // (1013) and its session ends here; the writer drops what it queued.
                    let sent = c.out.send(out);
                    if sent == Err(Refused::Behind) {
                        tracing::warn!(
                            %space,
                            session,
                            "connection fell behind (its outbound queue is full); closing it with 1013"
                        );
                        fell_behind += 1;
                    }
                    // A close the engine asked for (error, timeout) ends the session now,
                    // whether or not the other side ever answers it (a frozen peer does
                    // not); so does a connection that cannot take more. Ending a session
                    // changes presence, which this same drain sends to the others.
                    // Replays go out only while the queue is below half its bound: when
                    // it is not, the engine holds the session's replay back until the
                    // writer says the socket took enough.
                    if sent.is_ok() && !close {
                        let room = c.out.has_room();
                        engine.set_writable(session, room);
                        if !room && engine.has_replay(session) {
                            let (tx, key) = (room_tx.clone(), (space.clone(), session));
                            c.out.when_room(move || {
                                let _ = tx.send(key);
                            });
                        }
                    }
                    if close || sent.is_err() {
                        conns.remove(&session);
                        engine.close(session);
                        if close && Some(session) == upstream {
                            if let Some(l) = link.as_deref_mut() {
                                l.session = None;
                            }
                        }
                    }
                }
            });
        }
        if peer_acked {
            self.metrics.last_peer_ack_ms = now_ms();
        }
        self.metrics.dropped_slow.inc_by(fell_behind);
    }
}

/// `SYNC_MODE=event`: a trigger matched; push on the upstream link now.
fn event_push(engine: &mut Engine, upstream: Option<SessionId>, link: Option<&mut super::Link>) {
    if let (Some(id), Some(l)) = (upstream, link) {
        engine.sync_now(id);
        l.event_pushes += 1;
    }
}
