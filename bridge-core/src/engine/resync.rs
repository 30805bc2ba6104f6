//! Resync (ARCHITECTURE.md, "Resync"; docs/protocol.md, section 5): a peer that holds part
//! of what is below its server's horizon but not all of it may hold a document whose
//! deletion it lacks and the server collected, which no delta could tell it about. The
//! server says `resync` instead of pushing; the peer lists its live dots below that horizon
//! (`inventory`, read from its live-dot index a page at a time), and the server answers each
//! page with a push of its own state of every listed document that holds one of those dots
//! no more, its context covering them, so the peer's join drops exactly what was collected.
//! Then the normal pushes start. Nothing of it is stored on either side but those joins, so
//! a break part way starts it again at the next `hello`.

use super::{Engine, Fatal, Transmit};
#[cfg(feature = "serve")]
use super::{Gated, PUSH_BYTES};
#[cfg(feature = "serve")]
use crate::frame::{DocEntry, Push};
use crate::frame::{Frame, InventoryEntry};
#[cfg(feature = "serve")]
use crate::{DocKey, DocState};
use crate::{Error, SessionId, VersionVector};

/// At most this many documents in one `inventory` page.
pub(super) const INVENTORY_PAGE: usize = 256;

/// Where an inventory walk stands: the replica being walked and the last counter read.
type At = Option<(crate::ReplicaId, u64)>;

/// A dialing peer's walk of its live dots below the horizon of a `resync`.
#[derive(Debug, Clone)]
pub(crate) struct Inventory {
    /// The horizon the server asked about.
    pub(super) horizon: VersionVector,
    /// The replica being walked and the last counter read of it (`None`: not started).
    pub(super) at: At,
    /// The last page went, with this `seq`: the resync is over once it is acknowledged.
    pub(super) done: Option<u64>,
}

impl Inventory {
    pub(super) fn new(horizon: VersionVector) -> Inventory {
        Inventory {
            horizon,
            at: None,
            done: None,
        }
    }
}

impl Engine {
    /// `resync` from the server we dialed: list what we hold below its horizon.
    pub(super) fn on_resync(
        &mut self,
        session: SessionId,
        horizon: VersionVector,
    ) -> Result<(), Fatal> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        let (Some(link), true) = (s.peer.as_mut(), s.dialed) else {
            return Err(Fatal(Error::Protocol(
                "`resync` goes from a server to a peer that dialed it".into(),
            )));
        };
        link.inventory = Some(Inventory::new(horizon));
        Ok(())
    }

    /// Our `inventory` pages are all acknowledged up to `seq`: when the last one is, the
    /// resync is over, and what it dropped here may still be held by the peers that dialed
    /// us, so each of them resyncs with us in turn (at once if connected, else at its next
    /// `hello`).
    pub(super) fn inventory_acked(&mut self, session: SessionId, seq: u64) {
        let Some(link) = self.link_mut(session) else {
            return;
        };
        if link
            .inventory
            .as_ref()
            .and_then(|i| i.done)
            .is_none_or(|last| last > seq)
        {
            return;
        }
        let Some(done) = link.inventory.take() else {
            return;
        };
        #[cfg(not(feature = "serve"))]
        let _ = done;
        #[cfg(feature = "serve")]
        {
            let peers: Vec<crate::ReplicaId> = self
                .replica
                .stability()
                .peers
                .iter()
                .map(|p| p.replica)
                .collect();
            if !peers.is_empty() {
                let st = self.replica.stability_mut();
                st.resync = peers;
                st.resync_horizon.join(&done.horizon);
            }
            let horizon = self.replica.stability().resync_below();
            let mut started = Vec::new();
            for (id, s) in self.sessions.iter_mut() {
                if let (Some(l), false) = (s.peer.as_mut(), s.dialed) {
                    if l.resync.is_some() {
                        // Mid-resync: another follows it (a page answered before our own
                        // drops would not have told it of them).
                        l.resync_again = true;
                        continue;
                    }
                    l.resync = Some(horizon.clone());
                    started.push(*id);
                }
            }
            for id in started {
                self.send(
                    id,
                    Frame::Resync {
                        horizon: horizon.clone(),
                    },
                );
            }
        }
    }

    /// The next `inventory` page of a link whose walk is under way: live dots of each
    /// replica of the horizon up to its entry, in replica then counter order, each with
    /// its document's dots below the horizon. `Err` is a store read that failed.
    pub(super) fn inventory_page(
        &self,
        inv: &Inventory,
    ) -> crate::Result<(Vec<InventoryEntry>, At, bool)> {
        let mut docs = Vec::new();
        let mut at = inv.at;
        let replicas: Vec<(crate::ReplicaId, u64)> = inv.horizon.iter().collect();
        let start = match at {
            Some((r, _)) => replicas.iter().position(|(x, _)| *x == r).unwrap_or(0),
            None => 0,
        };
        for &(r, upto) in &replicas[start..] {
            let mut from = match at {
                Some((ar, c)) if ar == r => c,
                _ => 0,
            };
            while from < upto {
                let page = self
                    .replica
                    .durable_dot_states(r, from, upto, INVENTORY_PAGE)?;
                let last_page = page.len() < INVENTORY_PAGE;
                for (counter, key, state) in page {
                    from = counter;
                    at = Some((r, counter));
                    let Some(state) = state else { continue };
                    let dots = state
                        .siblings
                        .iter()
                        .map(|s| s.dot)
                        .filter(|d| inv.horizon.contains(*d))
                        .collect();
                    docs.push(InventoryEntry {
                        collection: key.collection,
                        id: key.id,
                        dots,
                    });
                    if docs.len() >= INVENTORY_PAGE {
                        return Ok((docs, at, false));
                    }
                }
                if last_page {
                    break;
                }
            }
            at = Some((r, upto));
        }
        Ok((docs, at, true))
    }

    /// Cuts the next `inventory` page of `session` when its walk is under way; `None` when
    /// there is none to send (or a read to fetch first, for a host that reads ahead).
    pub(super) fn next_inventory(&mut self, session: SessionId) -> Option<Transmit> {
        let link = self.sessions.get(&session)?.peer.as_ref()?;
        let inv = link.inventory.clone().filter(|i| i.done.is_none())?;
        if link.unacked.len() >= self.cfg.window {
            return None;
        }
        let (docs, at, last) = match self.inventory_page(&inv) {
            Ok(page) => page,
            Err(e) => return self.read_failed(session, e),
        };
        let link = self.sessions.get_mut(&session)?.peer.as_mut()?;
        let seq = link.take_seq(VersionVector::new());
        if let Some(i) = link.inventory.as_mut() {
            i.at = at;
            i.done = last.then_some(seq);
        }
        Some(Transmit::Frame {
            session,
            frame: Frame::Inventory { seq, docs, last },
        })
    }

    /// `inventory` from a peer we asked to resync: for each listed document that holds one
    /// of the listed dots no more, our state of it (empty when collected) with those dots in
    /// its context; then `ack`. After the last page, our normal pushes start.
    #[cfg(feature = "serve")]
    pub(super) fn on_inventory(
        &mut self,
        session: SessionId,
        seq: u64,
        docs: Vec<InventoryEntry>,
        last: bool,
    ) -> Result<(), Fatal> {
        let Some(horizon) = self
            .sessions
            .get(&session)
            .filter(|s| !s.dialed)
            .and_then(|s| s.peer.as_ref())
            .and_then(|l| l.resync.clone())
        else {
            return Err(Fatal(Error::Protocol(
                "`inventory` answers a `resync` this server sent".into(),
            )));
        };
        if docs.len() > INVENTORY_PAGE {
            return Err(Fatal(Error::Protocol(format!(
                "an `inventory` lists at most {INVENTORY_PAGE} documents"
            ))));
        }
        let mut gone = Vec::new();
        for e in docs {
            crate::check_name("collection", &e.collection, true)?;
            crate::check_name("document id", &e.id, true)?;
            let key = DocKey::new(e.collection.as_str(), e.id.as_str());
            let ours = self.replica.state(&key)?;
            let dots: Vec<crate::Dot> = e
                .dots
                .into_iter()
                .filter(|d| horizon.contains(*d) && !ours.as_deref().is_some_and(|s| s.has_dot(*d)))
                .collect();
            drop(ours);
            if !dots.is_empty() {
                gone.push((key, dots));
            }
        }
        // The answer, then the page's `ack`, released in order with the acks of the pushes
        // taken before it.
        self.send_collected(session, gone)?;
        let Some(link) = self
            .sessions
            .get_mut(&session)
            .and_then(|s| s.peer.as_mut())
        else {
            return Ok(());
        };
        let replica = link.replica;
        // A cascade that came during this resync asks for another once it ends.
        let again = last && std::mem::take(&mut link.resync_again);
        if last && !again {
            link.resync = None;
        }
        let horizon_now = self.replica.stability().resync_below();
        if again {
            link.resync = Some(horizon_now.clone());
        }
        self.gate(Gated::Frame(
            session,
            Frame::Ack(crate::frame::Ack {
                seq: Some(seq),
                ..Default::default()
            }),
        ));
        if again {
            self.send(
                session,
                Frame::Resync {
                    horizon: horizon_now,
                },
            );
        } else if last && self.replica.stability().resync.contains(&replica) {
            self.replica
                .stability_mut()
                .resync
                .retain(|r| *r != replica);
        }
        Ok(())
    }

    /// After a push: each state it changed by a drop alone (a sibling gone, nothing new:
    /// [`crate::Replica::take_announced`]) goes to every open peer that may hold what was
    /// dropped, the sender included, as the answer to an `inventory` page does. No delta
    /// would carry it (it makes no write), and a peer that got the sibling from us before
    /// would keep it for good (ARCHITECTURE.md, "Partial replication", the race of 10,000
    /// seeds). Not to a link that may not relay, one resyncing, or a peer not yet tracked
    /// durably. Released once the change is durable.
    #[cfg(feature = "serve")]
    pub(super) fn announce_drops(&mut self, sender: SessionId) -> Result<(), Fatal> {
        let (keys, answer) = self.replica.take_announced();
        if !answer.is_empty() {
            let docs = answer.into_iter().map(|k| (k, Vec::new())).collect();
            self.gate(super::Gated::States(sender, docs));
        }
        if keys.is_empty() {
            return Ok(());
        }
        let targets: Vec<SessionId> = self
            .sessions
            .iter()
            .filter_map(|(id, s)| {
                let l = s.peer.as_ref()?;
                let open = matches!(s.phase, super::Phase::Open)
                    && !l.own_only
                    && l.resync.is_none()
                    && l.inventory.is_none()
                    && (s.dialed || self.durably_tracked(l.replica));
                open.then_some(*id)
            })
            .collect();
        for session in targets {
            let list = keys.iter().map(|k| (k.clone(), Vec::new())).collect();
            self.gate(super::Gated::States(session, list));
        }
        Ok(())
    }

    /// Sends `session` our state of each document of `gone` (empty when we hold none), its
    /// context covering the listed dots, which we hold no more (collected, or superseded):
    /// the peer's join drops them. In pushes as any other (at most `batch_docs` documents
    /// and about `PUSH_BYTES` each), acknowledged as pushes are. The one answer of a
    /// resync's `inventory`, of a push that brought back what we collected, and of a push
    /// that changed a state by a drop alone (`announce_drops`, released once durable).
    #[cfg(feature = "serve")]
    pub(super) fn send_collected(
        &mut self,
        session: SessionId,
        gone: Vec<(DocKey, Vec<crate::Dot>)>,
    ) -> Result<(), Fatal> {
        let max_docs = self.cfg.batch_docs.max(1);
        let mut pushes: Vec<Vec<DocEntry>> = Vec::new();
        let mut bytes = 0usize;
        let filter = self.link_filter(session);
        let dialed = self.sessions.get(&session).is_some_and(|s| s.dialed);
        for (key, dots) in gone {
            // A document outside a partial peer's collections is not sent: only that those
            // dots are gone, so its own copy of them goes too.
            let outside = filter
                .as_ref()
                .is_some_and(|f| !crate::auth::subscribed(f, &key));
            let mut state = match outside {
                true => DocState::default(),
                // Durable only: a peer never gets a write of ours a crash could take back.
                false => self
                    .replica
                    .durable_state(&key)?
                    .map(|s| DocState::clone(&s))
                    .unwrap_or_default(),
            };
            for d in dots {
                state.context.raise(d.replica, d.counter);
            }
            // A server refuses a state with no sibling from a replica that dialed it.
            if dialed && state.siblings.is_empty() {
                continue;
            }
            let size = crate::codec::doc_state_size_bound(&key, &state);
            match pushes.last_mut() {
                Some(p) if p.len() < max_docs && bytes + size <= PUSH_BYTES => bytes += size,
                _ => {
                    pushes.push(Vec::new());
                    bytes = size;
                }
            }
            if let Some(p) = pushes.last_mut() {
                p.push(DocEntry {
                    collection: key.collection,
                    id: key.id,
                    state,
                });
            }
        }
        for docs in pushes {
            let Some(link) = self.link_mut(session) else {
                return Ok(());
            };
            let seq = link.take_seq(VersionVector::new());
            self.send(
                session,
                Frame::Push(Push {
                    seq,
                    docs,
                    watermark: VersionVector::new(),
                    remaining: 0,
                    // Set for the session by `Engine::poll_transmit`.
                    expanded: false,
                }),
            );
        }
        Ok(())
    }

    /// Drops from a push of a peer that dialed us every sibling below our horizon that we
    /// neither hold nor have seen in that document: we held it once and collected it (we
    /// hold everything below the horizon, or what superseded it). Done for a peer that is
    /// resyncing (a push it cut before it knew) and for one below `admin` (it may push back,
    /// beside a write of its own, a deletion we collected since; we cannot tell that from a
    /// forged write). Returns what was dropped, for [`Engine::send_collected`].
    #[cfg(feature = "serve")]
    pub(super) fn drop_collected(
        &self,
        docs: &mut Vec<DocEntry>,
    ) -> crate::Result<Vec<(DocKey, Vec<crate::Dot>)>> {
        let horizon = &self.replica.stability().horizon;
        let mut gone = Vec::new();
        for d in docs.iter_mut() {
            let key = DocKey::new(d.collection.as_str(), d.id.as_str());
            let ours = self.replica.state(&key)?;
            let dots: Vec<crate::Dot> = d
                .state
                .siblings
                .iter()
                .map(|s| s.dot)
                .filter(|&dot| {
                    horizon.contains(dot)
                        && !ours
                            .as_deref()
                            .is_some_and(|o| o.has_dot(dot) || o.context.contains(dot))
                })
                .collect();
            drop(ours);
            if !dots.is_empty() {
                d.state.siblings.retain(|s| !dots.contains(&s.dot));
                gone.push((key, dots));
            }
        }
        docs.retain(|d| !d.state.siblings.is_empty());
        Ok(gone)
    }

    /// Built without `serve` (the browser), no peer dials this replica.
    #[cfg(not(feature = "serve"))]
    pub(super) fn on_inventory(
        &mut self,
        _: SessionId,
        _: u64,
        _: Vec<InventoryEntry>,
        _: bool,
    ) -> Result<(), Fatal> {
        Err(Fatal(Error::Protocol(
            "this build serves no peers (bridge-core without `serve`)".into(),
        )))
    }
}
