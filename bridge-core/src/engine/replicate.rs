//! Changing what a partial replica holds while it runs (docs/protocol.md, section 5,
//! "Changing what a replica holds"; ARCHITECTURE.md, "Partial replication").
//!
//! The vector of a partial replica is complete for its collections only, so what it claims
//! must change in a safe order. On the replica that dials ([`Engine::replicate`]):
//!
//! 1. **Forget what it holds of the collections it adds** (those not within its current
//!    patterns): documents whose every sibling the server holds (its blind writes, left-overs
//!    of an earlier subscription). The server sends its own state of them next; one it
//!    deleted and collected meanwhile would otherwise stay here for good. A document with a
//!    write of ours the server lacks stays: the write goes up and the server settles it.
//! 2. **Stop claiming what it drops**: the stored collections become the patterns both lists
//!    share, the patterns it drops or adds are stored as to be forgotten (an added one is
//!    passed over once it is claimed; a walk cut short leaves part of it, which must not
//!    stay), and `replicate` goes to the server once that is durable. From the moment the server takes it, its pushes pass
//!    writes of the dropped collections without carrying them.
//! 3. The server walks the added collections by key (`fill.rs`, no claim: the replica's
//!    vector already passes their writes, and the walk reads every durable state), then
//!    answers `replicated`; no delta goes meanwhile. The replica then stores the new list
//!    ([`Event::Replicated`] once durable).
//! 4. **Forget the dropped collections** (step 1's rule), a page at a time, on any session on
//!    which no `replicate` waits for its answer; the list to forget is stored, so a restart
//!    goes on with it.

use super::*;
use crate::frame::Frame;

/// Where forgetting the collections dropped (`Stability::forget`) stands.
#[derive(Debug, Default)]
pub(super) struct Forgetting {
    /// The pass goes on after this key (`None`: a pass begins).
    at: Option<DocKey>,
    /// This pass kept a document for a write of ours.
    kept: bool,
    /// The last pass kept some, with the server at this vector: the next waits until it
    /// has acknowledged more.
    waits: Option<VersionVector>,
}

/// A change of collections under way on a replica that dials.
#[derive(Debug)]
pub(super) struct Change {
    /// What it will replicate.
    target: Vec<String>,
    step: Step,
    /// A change asked for while this one was with the server: it follows.
    queued: Option<Vec<String>>,
    /// What it replicated when the change was asked for: a change the server refuses goes
    /// back to it.
    from: Vec<String>,
}

#[derive(Debug)]
enum Step {
    /// Forgetting what it holds of the added collections, after this key.
    ForgetAdded(Option<DocKey>),
    /// Ready to store the shared patterns and send `replicate`.
    Send,
    /// `replicate` went (or waits to be durable) on this session.
    Sent(SessionId),
}

/// Sorted, without duplicates.
fn normal(mut patterns: Vec<String>) -> Vec<String> {
    patterns.sort();
    patterns.dedup();
    patterns
}

/// The collections both pattern lists match, as patterns (two patterns either nest or match
/// nothing in common).
fn shared(a: &[String], b: &[String]) -> Vec<String> {
    let from_a = a.iter().filter(|p| crate::auth::within_any(p, b));
    let from_b = b.iter().filter(|p| crate::auth::within_any(p, a));
    normal(from_a.chain(from_b).cloned().collect())
}

/// The patterns of `a` not within `b`.
fn outside(a: &[String], b: &[String]) -> Vec<String> {
    a.iter()
        .filter(|p| !crate::auth::within_any(p, b))
        .cloned()
        .collect()
}

impl Engine {
    /// Replicates `collections` (patterns, as [`EngineConfig::collections`]) from now on, in
    /// place of the present ones: a replica of part of the space widens or narrows what it
    /// holds. The change is carried out with the server this replica syncs with, once a
    /// session to it is open; [`Event::Replicated`] says when it is in effect and durable.
    /// A change asked for while one is under way replaces it, or follows it once the server
    /// has it. The documents of collections it drops are forgotten after that, a page at a
    /// time ([`Engine::forgetting`]). Returns the list as the change and its
    /// [`Event::Replicated`] name it (sorted, without duplicates).
    ///
    /// # Errors
    /// `bad_request` on a replica of the whole space (its `collections` are `None`), for an
    /// empty list, or for a bad pattern; `malformed` for more than 64 patterns (as in
    /// `hello`).
    pub fn replicate(&mut self, collections: Vec<String>) -> Result<Vec<String>> {
        let Some(current) = self.cfg.collections.clone() else {
            return Err(Error::BadName {
                what: "collections",
                name: collections.join(",").chars().take(64).collect(),
                why: "this store replicates the whole space; open a new store for part of it",
            });
        };
        if collections.is_empty() {
            return Err(Error::BadName {
                what: "collections",
                name: String::new(),
                why: "name at least one collection to replicate",
            });
        }
        crate::auth::check_patterns(collections.iter().map(String::as_str))?;
        let target = normal(collections);
        let named = target.clone();
        if let Some(c) = self
            .change
            .as_mut()
            .filter(|c| matches!(c.step, Step::Sent(_)))
        {
            c.queued = Some(target);
        } else if normal(current.clone()) == target {
            self.change = None;
            self.gate(Gated::Replicated(target));
        } else {
            let from = match &self.change {
                Some(c) => c.from.clone(),
                None => normal(current),
            };
            self.change = Some(Change {
                target,
                step: Step::ForgetAdded(None),
                queued: None,
                from,
            });
        }
        Ok(named)
    }

    /// What a host does at start with the collections it is configured with (`open({
    /// collections })`, `SYNC_COLLECTIONS`): a change to them ([`Engine::replicate`]) when
    /// the store holds others, nothing (and no event) when it holds those.
    ///
    /// # Errors
    /// As [`Engine::replicate`].
    pub fn ask_collections(&mut self, collections: Vec<String>) -> Result<()> {
        let now = self.cfg.collections.clone().unwrap_or_default();
        if self.change.is_none() && normal(now) == normal(collections.clone()) {
            return Ok(());
        }
        self.replicate(collections).map(drop)
    }

    /// The collections a change under way ([`Engine::replicate`]) will replicate.
    pub fn replicating(&self) -> Option<&[String]> {
        self.change.as_ref().map(|c| c.target.as_slice())
    }

    /// Patterns this replica no longer replicates whose documents it is still forgetting.
    pub fn forgetting(&self) -> &[String] {
        &self.replica.stability().forget
    }

    /// The next step of a change, and of forgetting, on `session` (one we dialed, open): a
    /// page forgotten, the shared patterns stored and `replicate` gated, or nothing.
    pub(super) fn step_change(&mut self, session: SessionId) -> Option<Transmit> {
        let server = self.sessions.get(&session)?.peer.as_ref()?.acked.clone();
        let current = self.cfg.collections.clone()?;
        // Forgetting waits while a change is under way: a change the server refuses goes
        // back, and what it dropped is then wanted again.
        let waiting = self.change.is_some();
        let forget = self.replica.stability().forget.clone();
        // A pass that kept documents for writes of ours goes again once the server has
        // acknowledged more.
        let fresh = self.forget.at.is_none();
        let waits = fresh && self.forget.waits.as_ref() == Some(&server);
        if !forget.is_empty() && !waiting && !waits {
            let at = self.forget.at.take();
            let mut kept = false;
            let step = self
                .replica
                .forget_step(&forget, &current, at.as_ref(), &server, &mut kept);
            self.forget.kept |= kept;
            match step {
                Ok(Some(next)) => self.forget.at = Some(next),
                Ok(None) if std::mem::take(&mut self.forget.kept) => {
                    self.forget.waits = Some(server.clone())
                }
                Ok(None) => {
                    self.forget.waits = None;
                    self.replica.stability_mut().forget.clear();
                }
                Err(e) => {
                    self.forget.at = at;
                    return self.read_failed(session, e);
                }
            }
        }
        let change = self.change.as_mut()?;
        if let Step::ForgetAdded(at) = &change.step {
            let added = outside(&change.target, &current);
            if added.is_empty() {
                change.step = Step::Send;
            } else {
                let at = at.clone();
                // What it keeps for a write of ours goes up and is settled by the server.
                let mut kept = false;
                match self
                    .replica
                    .forget_step(&added, &current, at.as_ref(), &server, &mut kept)
                {
                    Ok(Some(next)) => {
                        if let Some(c) = self.change.as_mut() {
                            c.step = Step::ForgetAdded(Some(next));
                        }
                        return None;
                    }
                    Ok(None) => {
                        if let Some(c) = self.change.as_mut() {
                            c.step = Step::Send;
                        }
                    }
                    Err(e) => return self.read_failed(session, e),
                }
            }
        }
        let change = self.change.as_mut()?;
        if matches!(change.step, Step::Send) {
            let target = change.target.clone();
            change.step = Step::Sent(session);
            let kept = shared(&current, &target);
            // To forget: what it drops, and what it adds until it holds all of it (a walk
            // cut short leaves part of it, which no list would claim; `replicated` makes it
            // a kept collection, which forgetting passes over).
            let dropped = outside(&current, &target);
            let added = outside(&target, &current);
            self.cfg.collections = Some(kept.clone());
            let st = self.replica.stability_mut();
            st.collections = Some(kept);
            let mut forget = std::mem::take(&mut st.forget);
            forget.extend(dropped);
            forget.extend(added);
            st.forget = normal(forget);
            // A pass under way walked the old list: the new one starts from the beginning.
            self.forget = Forgetting::default();
            if let Some(link) = self.link_mut(session) {
                link.last_error = None;
            }
            self.close_unserved();
            self.gate(Gated::Frame(
                session,
                Frame::Replicate {
                    collections: target,
                },
            ));
        }
        None
    }

    /// `replicated` from the server we dialed: the list it sends us from now on. Our list:
    /// the change is in effect. Another (the list it sent before): it refused ours, and an
    /// `error` just before said why; the store then holds that list (it went on receiving
    /// it, and forgot nothing of it), and goes back to what it replicated before the change
    /// if that was more.
    pub(super) fn on_replicated(
        &mut self,
        session: SessionId,
        collections: Vec<String>,
    ) -> Result<(), Fatal> {
        let ours =
            matches!(&self.change, Some(Change { step: Step::Sent(s), .. }) if *s == session);
        let Some(link) = self.link_mut(session).filter(|_| ours) else {
            return Err(Fatal(Error::Protocol(
                "`replicated` answers no `replicate` of ours on this session".into(),
            )));
        };
        let why = link.last_error.take();
        let Some(change) = self.change.take() else {
            return Ok(());
        };
        self.cfg.collections = Some(collections.clone());
        self.replica.stability_mut().collections = Some(collections.clone());
        self.close_unserved();
        if change.target == collections {
            self.gate(Gated::Replicated(collections));
            if let Some(next) = change.queued {
                self.replicate(next).map_err(Fatal)?;
            }
            return Ok(());
        }
        let (code, message) = why.unwrap_or((
            crate::ErrorCode::Protocol,
            "the server kept the collections it sent".into(),
        ));
        self.events.push_back(Event::ReplicateRefused {
            collections: change.target,
            code,
            message,
        });
        // A list this replica held, or asked for since: `replicate`'s checks pass it.
        self.replicate(change.queued.unwrap_or(change.from))
            .map(drop)
            .map_err(Fatal)
    }

    /// `error` from the server we dialed, kept for a `replicated` that refuses our list.
    pub(super) fn on_error(&mut self, session: SessionId, code: crate::ErrorCode, message: String) {
        if self.change.is_none() {
            return;
        }
        if let Some(link) = self.link_mut(session) {
            link.last_error = Some((code, message));
        }
    }

    /// A session closed: a `replicate` it carried goes again on the next one, from its
    /// first step (what a walk on it brought of the added collections is forgotten again:
    /// the server may have collected some since).
    pub(super) fn change_closed(&mut self, session: SessionId) {
        if let Some(c) = self.change.as_mut() {
            if matches!(c.step, Step::Sent(s) if s == session) {
                c.step = Step::ForgetAdded(None);
            }
        }
    }

    /// The collections this replica serves replicas of: its own, or while a change is under
    /// way, what both its lists share. `None`: the whole space.
    pub(super) fn serving(&self) -> Option<Vec<String>> {
        let mine = self.cfg.collections.as_ref()?;
        Some(match &self.change {
            Some(c) => shared(mine, &c.target),
            None => mine.clone(),
        })
    }

    /// Closes the sessions of replicas that hold more than this one serves now: its
    /// deltas would pass writes of collections it no longer receives.
    fn close_unserved(&mut self) {
        let Some(mine) = self.serving() else {
            return;
        };
        let gone: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.dialed)
            .filter(|(_, s)| {
                s.peer.as_ref().is_some_and(|l| {
                    !l.filter
                        .as_ref()
                        .is_some_and(|f| f.iter().all(|p| crate::auth::within_any(p, &mine)))
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for session in gone {
            let e = Error::Protocol(format!(
                "this replica holds only the collections {mine:?} now: reconnect with `collections` within them"
            ));
            self.send(session, Frame::error(None, &e));
            self.outbox.push_back(Transmit::Close {
                session,
                code: e.code(),
                reason: e.to_string(),
            });
        }
    }

    /// `replicate` from a partial replica that dialed us: its link's filter changes at once,
    /// and the documents of the collections it adds are walked by key (`fill.rs`) before
    /// `replicated` answers. A list the rules of `hello` refuse is answered with `error`,
    /// and nothing changes: the session goes on.
    #[cfg(feature = "serve")]
    pub(super) fn on_replicate(
        &mut self,
        session: SessionId,
        collections: Vec<String>,
    ) -> Result<(), Fatal> {
        let Some(s) = self.sessions.get(&session) else {
            return Ok(());
        };
        let old =
            match s.peer.as_ref().and_then(|l| l.filter.clone()) {
                Some(old) if !s.dialed => old,
                _ => return Err(Fatal(Error::Protocol(
                    "`replicate` comes from a replica of part of the space that dialed this one"
                        .into(),
                ))),
            };
        // One `replicate` at a time: a second before the first is answered would make the
        // answers ambiguous (a refusal's `replicated` names the list the server sends).
        let unanswered = s
            .peer
            .as_ref()
            .and_then(|l| l.fill.as_ref())
            .is_some_and(|f| f.answer.is_some());
        if unanswered {
            return Err(Fatal(Error::Protocol(
                "a `replicate` came before the previous one was answered with `replicated`".into(),
            )));
        }
        if let Err(e) = self.check_replicate(session, &collections) {
            // Refused: why, then the list it goes on sending.
            self.send(session, Frame::error(None, &e));
            self.send(session, Frame::Replicated { collections: old });
            return Ok(());
        }
        let added = outside(&collections, &old);
        let Some(link) = self.link_mut(session) else {
            return Ok(());
        };
        link.filter = Some(collections.clone());
        // Its vector stays complete for what both lists share; an added collection's
        // documents it pushes in this session are blind writes (`PeerLink::held`).
        link.held = link.held.as_deref().map(|h| shared(h, &collections));
        link.fill = match link.fill.take() {
            // A walk under way starts again over everything it now replicates (an initial
            // one still claims at its end).
            Some(f) => Some(fill::Fill {
                adds: f.adds.map(|_| collections.clone()),
                answer: Some(collections.clone()),
                ..fill::Fill::default()
            }),
            None if added.is_empty() => None,
            None => Some(fill::Fill {
                adds: Some(added),
                answer: Some(collections.clone()),
                ..fill::Fill::default()
            }),
        };
        if link.fill.is_none() {
            self.send(session, Frame::Replicated { collections });
        }
        Ok(())
    }

    /// The rules of `hello` for a list of collections from `session`: patterns, a scoped
    /// token's reads, a partial server's own collections.
    #[cfg(feature = "serve")]
    fn check_replicate(&self, session: SessionId, collections: &[String]) -> Result<()> {
        if collections.is_empty() {
            return Err(Error::Malformed("`replicate` names no collection".into()));
        }
        crate::auth::check_patterns(collections.iter().map(String::as_str))?;
        let grant = self.sessions.get(&session).map(|s| &s.grant);
        if grant.is_some_and(|g| g.is_scoped() && !collections.iter().all(|p| g.reads_all(p))) {
            return Err(Error::Forbidden {
                has: "rights on some collections only",
                needs: "a `replicate` that names only collections the token reads",
            });
        }
        if let Some(mine) = self.serving() {
            if !collections
                .iter()
                .all(|p| crate::auth::within_any(p, &mine))
            {
                return Err(Error::Protocol(format!(
                    "this replica holds only the collections {mine:?}: a replica it serves must replicate within them"
                )));
            }
        }
        Ok(())
    }
}
