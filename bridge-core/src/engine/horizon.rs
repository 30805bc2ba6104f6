//! The stable horizon (ARCHITECTURE.md, "The stable horizon"): peers report their part of
//! the sync tree up (`report`), the root computes the horizon, and it travels down
//! (`horizon`). Nothing here is ever answered, and a lost frame is sent again at the next
//! change, so a broken link costs a delay, never a wrong horizon.

use super::{Engine, Fatal};
use crate::replica::meet;
use crate::{Error, Frame, SessionId, VersionVector};

impl Engine {
    /// `report` from a peer that dialed us: its part of the tree's floor and ceiling. The
    /// floor is believed only as far as we know the peer holds (its `hello` vector and the
    /// pushes it acknowledged): a peer can hold the horizon back, never push it past what
    /// it has.
    #[cfg(feature = "serve")]
    pub(super) fn on_report(
        &mut self,
        session: SessionId,
        floor: VersionVector,
        ceiling: VersionVector,
    ) -> Result<(), Fatal> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        let (Some(link), false) = (s.peer.as_mut(), s.dialed) else {
            return Err(Fatal(Error::Protocol(
                "`report` goes from a peer to the server it dialed".into(),
            )));
        };
        link.report = Some((floor, ceiling));
        self.apply_report(session);
        Ok(())
    }

    /// Puts a peer's last report, its floor capped at what we know the peer holds, in the
    /// table: when it arrives, and again whenever what we know the peer holds rises.
    #[cfg(feature = "serve")]
    pub(super) fn apply_report(&mut self, session: SessionId) {
        let Some(link) = self.link(session) else {
            return;
        };
        let Some((floor, ceiling)) = &link.report else {
            return;
        };
        let (floor, ceiling) = (meet(floor, &link.acked), ceiling.clone());
        let replica = link.replica;
        // Marked changed (and stored) only when the entry does change: a report repeats
        // often, and the table is not copied to find out.
        if self.replica.stability().differs(replica, &floor, &ceiling) {
            self.replica
                .stability_mut()
                .reported(replica, floor, ceiling);
            self.horizon_round();
        }
    }

    /// Built without `serve` (the browser), no peer reports to this replica.
    #[cfg(not(feature = "serve"))]
    pub(super) fn apply_report(&mut self, _: SessionId) {}

    /// Built without `serve` (the browser), no peer dials this replica.
    #[cfg(not(feature = "serve"))]
    pub(super) fn on_report(
        &mut self,
        _: SessionId,
        _: VersionVector,
        _: VersionVector,
    ) -> Result<(), Fatal> {
        Err(Fatal(Error::Protocol(
            "this build serves no peers (bridge-core without `serve`)".into(),
        )))
    }

    /// Whether a peer that dialed us may be sent documents: once its entry in our table is
    /// durable.
    #[cfg(feature = "serve")]
    pub(super) fn durably_tracked(&self, replica: crate::ReplicaId) -> bool {
        self.replica.durably_tracks(replica)
    }

    /// Built without `serve` (the browser), no peer dials this replica.
    #[cfg(not(feature = "serve"))]
    pub(super) fn durably_tracked(&self, _: crate::ReplicaId) -> bool {
        true
    }

    /// `horizon` from the server we dialed.
    pub(super) fn on_horizon(
        &mut self,
        session: SessionId,
        horizon: VersionVector,
    ) -> Result<(), Fatal> {
        let dialed = self
            .sessions
            .get(&session)
            .is_some_and(|s| s.dialed && s.peer.is_some());
        if !dialed {
            return Err(Fatal(Error::Protocol(
                "`horizon` goes from a server to a peer that dialed it".into(),
            )));
        }
        self.horizon_heard.join(&horizon);
        if let Some(link) = self.link_mut(session) {
            link.peer_horizon.join(&horizon);
        }
        self.horizon_round();
        Ok(())
    }

    /// After anything that may move the horizon (a batch persisted, a report, a horizon
    /// heard, a session opened): the root advances its horizon by the two-round rule; any
    /// other replica adopts what its server sent as far as its own durable vector covers
    /// it. Then the horizon goes down to the peers that dialed us, and our report up to the
    /// servers we dialed, each only when it changed.
    pub(super) fn horizon_round(&mut self) {
        let own = self.replica.vector().clone();
        let mut horizon = self.replica.stability().horizon.clone();
        #[cfg(feature = "serve")]
        let (floor, ceiling) = {
            let floor = self.replica.stability().floor(&own);
            let ceiling = self
                .replica
                .stability()
                .ceiling(self.replica.latest_vector());
            if self.cfg.root {
                // A candidate (F₀, J₀) is the tree's floor and ceiling at one moment. Every
                // write concurrent with one below F₀ was made before its writer's floor
                // covered F₀, so lies below J₀; once the floor passes J₀, every such write
                // has reached every replica, and everything below F₀ is stable.
                match self.candidate.take() {
                    Some((f0, j0)) if floor.dominates(&j0) => horizon.join(&f0),
                    waiting => self.candidate = waiting,
                }
                if self.candidate.is_none() {
                    if let Some(c) = &ceiling {
                        // Taken now; already confirmed if the floor is at the ceiling (a
                        // quiet tree: every write made so far is everywhere).
                        if floor.dominates(c) {
                            horizon.join(&floor);
                        }
                        self.candidate = Some((floor.clone(), c.clone()));
                    }
                }
            }
            (floor, ceiling)
        };
        // Without `serve` no peer dials us: our part of the tree is this replica alone.
        #[cfg(not(feature = "serve"))]
        let (floor, ceiling) = (own.clone(), Some(self.replica.latest_vector().clone()));
        if !self.cfg.root {
            // Never above our own part of the tree's floor: a server that expired us moves
            // on without our peers, and we must not collect what one of them still lacks
            // (it gets it from us first).
            horizon.join(&meet(&self.horizon_heard, &floor));
        }
        if horizon != self.replica.stability().horizon {
            self.replica.stability_mut().horizon = horizon.clone();
            #[cfg(feature = "serve")]
            {
                self.collect_due = true;
            }
        }
        let mut frames = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            let Some(link) = s.peer.as_mut() else {
                continue;
            };
            if !matches!(s.phase, super::Phase::Open) {
                continue;
            }
            if s.dialed {
                let Some(c) = &ceiling else { continue };
                if link
                    .reported
                    .as_ref()
                    .is_some_and(|(f, j)| f == &floor && j == c)
                {
                    continue;
                }
                link.reported = Some((floor.clone(), c.clone()));
                frames.push((
                    *id,
                    Frame::Report {
                        floor: floor.clone(),
                        ceiling: c.clone(),
                    },
                ));
            } else if cfg!(feature = "serve") && link.horizon_sent != horizon {
                link.horizon_sent = horizon.clone();
                frames.push((
                    *id,
                    Frame::Horizon {
                        horizon: horizon.clone(),
                    },
                ));
            }
        }
        for (id, f) in frames {
            self.send(id, f);
        }
    }
}
