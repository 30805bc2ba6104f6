//! Presence: who is connected here and, through peers, elsewhere. Each peer learns the
//! entries it does not already know (`presence` frames) whenever the set changes; an agent
//! asks with a `presence` frame and gets the whole list.

use super::{Engine, Event, Fatal, Phase};
use crate::frame::Frame;
use crate::message::PresenceEntry;
use crate::SessionId;
use std::collections::BinaryHeap;

impl Engine {
    /// Everyone connected here and, through peers, elsewhere.
    pub fn presence(&self) -> Vec<PresenceEntry> {
        let mut all: Vec<PresenceEntry> = Vec::new();
        let mut add = |e: PresenceEntry| all.push(e);
        for (id, s) in &self.sessions {
            if matches!(s.phase, Phase::Open) {
                add(PresenceEntry {
                    node: self.replica.id(),
                    session: *id,
                    name: s.name.clone(),
                    kind: s.kind,
                    tier: s.peer.as_ref().map_or(self.replica.tier(), |p| p.tier),
                    since: s.since,
                });
                if let Some(p) = &s.peer {
                    p.learned.iter().cloned().for_each(&mut add);
                }
            }
        }
        // Sorted, without duplicates. A heap sort rather than a `BTreeSet` or `sort`: far
        // less code in the browser package, and still O(n log n).
        let mut all = BinaryHeap::from(all).into_sorted_vec();
        all.dedup();
        all
    }

    /// `presence`: a peer tells us who it knows of; an agent asks for the list.
    pub(super) fn on_presence(
        &mut self,
        session: SessionId,
        entries: Vec<PresenceEntry>,
    ) -> Result<(), Fatal> {
        let me = self.replica.id();
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        match s.peer.as_mut() {
            Some(link) => {
                let learned: Vec<PresenceEntry> = entries
                    .into_iter()
                    .filter(|e| e.node != me)
                    .take(10_000)
                    .collect();
                if learned != link.learned {
                    link.learned = learned;
                    self.presence_dirty = true;
                }
            }
            None => {
                let entries = self.presence();
                self.send(session, Frame::Presence { entries });
            }
        }
        Ok(())
    }

    pub(super) fn broadcast_presence(&mut self) {
        let all = self.presence();
        let peers: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| matches!(s.phase, Phase::Open) && s.peer.is_some())
            .map(|(id, _)| *id)
            .collect();
        let me = self.replica.id();
        for id in peers {
            let Some(link) = self.link_mut(id) else {
                continue;
            };
            // What this peer does not already know: not what it told us, not its own link.
            let entries: Vec<PresenceEntry> = all
                .iter()
                .filter(|e| !(link.learned.contains(e) || (e.node == me && e.session == id)))
                .cloned()
                .collect();
            if entries == link.presence_sent {
                continue;
            }
            link.presence_sent = entries.clone();
            self.send(id, Frame::Presence { entries });
        }
        self.events.push_back(Event::PresenceChanged);
    }
}
