//! What a replica knows of the space's **stable horizon** (ARCHITECTURE.md, "The stable
//! horizon"): the horizon it has adopted, and the table of the peers that dialed it, each
//! with the floor and ceiling it last reported. Persisted with the space's metadata
//! ([`PersistBatch::stability`]) whenever it changes, and restored at start
//! ([`Replica::restore_stability`]): a peer that once dialed this replica holds the horizon
//! back until it reports again, across restarts.

use super::*;
use serde::{Deserialize, Serialize};

/// One peer in a replica's table: the last floor and ceiling it reported (capped as the
/// engine believes them), or, until its first report, what it held at `hello` and no
/// ceiling — which holds the horizon back until it reports.
///
/// Only the peer's id is stored: the record stays a few bytes per peer however many
/// replicas write (two vectors per peer would be O(peers × writers), rewritten at every
/// report). Read back, an entry has no floor and no ceiling, so the horizon (stored, and
/// never lowered) waits until every peer has reported again; a peer that is gone held it
/// back at its old floor anyway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// The peer.
    pub replica: ReplicaId,
    /// Every write below it is durable everywhere in the peer's part of the tree (not
    /// stored).
    #[serde(skip)]
    pub floor: VersionVector,
    /// Every write made in the peer's part of the tree is below it; `None` before the
    /// peer's first report since it was tracked or since this replica started (not stored).
    #[serde(skip)]
    pub ceiling: Option<VersionVector>,
    /// When the peer was last connected (ms; its `hello`, or the last frame before it went
    /// away), stored: with an expiry set ([`crate::EngineConfig::expiry_ms`]) a peer gone
    /// longer is dropped from the table. 0: not known yet (a record stored before this
    /// field; the expiry then counts from the next time the engine looks).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seen_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A replica's horizon and its peers' table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stability {
    /// The horizon this replica has adopted: every write below it has reached every replica
    /// the space tracks, this one included (never above this replica's durable vector).
    #[serde(default)]
    pub horizon: VersionVector,
    /// The peers that dialed this replica, in replica id order.
    #[serde(default)]
    pub peers: Vec<Tracked>,
    /// Peers that must resync with this replica (it resynced with its own server, and they
    /// may hold what it dropped then), in replica id order; each leaves the list once its
    /// resync is done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resync: Vec<ReplicaId>,
    /// The horizon of the last resync this replica went through with its own server: its
    /// peers resync below it (joined with this replica's own horizon), since what this
    /// replica dropped then may lie above its own horizon.
    #[serde(default, skip_serializing_if = "VersionVector::is_empty")]
    pub resync_horizon: VersionVector,
    /// A replica of part of the space (`EngineConfig::collections`): the server it syncs
    /// with, fixed at its first `welcome` and stored with the batch that takes the server's
    /// first pushes (`EngineConfig::upstream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<ReplicaId>,
    /// A replica of part of the space whose collections changed since it was created
    /// (`Engine::replicate`): the collections its vector is complete for now. `None`: the
    /// ones it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<String>>,
    /// Collection patterns it no longer replicates and whose documents it has not all
    /// forgotten yet (`Engine::replicate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forget: Vec<String>,
}

impl Stability {
    /// The horizon a peer of this replica resyncs below.
    pub fn resync_below(&self) -> VersionVector {
        let mut h = self.horizon.clone();
        h.join(&self.resync_horizon);
        h
    }
}

impl Stability {
    /// The meet of `own` and every peer's floor: what is durable everywhere in this
    /// replica's part of the tree.
    pub fn floor(&self, own: &VersionVector) -> VersionVector {
        self.peers
            .iter()
            .fold(own.clone(), |f, p| meet(&f, &p.floor))
    }

    /// The join of `own` and every peer's ceiling, `None` while a peer has not reported one.
    pub fn ceiling(&self, own: &VersionVector) -> Option<VersionVector> {
        let mut j = own.clone();
        for p in &self.peers {
            j.join(p.ceiling.as_ref()?);
        }
        Some(j)
    }

    /// Whether `replica` has an entry.
    pub fn is_tracked(&self, replica: ReplicaId) -> bool {
        self.peers
            .binary_search_by(|p| p.replica.cmp(&replica))
            .is_ok()
    }

    /// The peer's entry, created (with `floor`, no ceiling) when it has none; true when
    /// created.
    pub fn track(&mut self, replica: ReplicaId, floor: &VersionVector) -> bool {
        match self.peers.binary_search_by(|p| p.replica.cmp(&replica)) {
            Ok(_) => false,
            Err(i) => {
                self.peers.insert(
                    i,
                    Tracked {
                        replica,
                        floor: floor.clone(),
                        ceiling: None,
                        seen_ms: 0,
                    },
                );
                true
            }
        }
    }

    /// Whether [`Stability::reported`] with these would change the table.
    pub fn differs(
        &self,
        replica: ReplicaId,
        floor: &VersionVector,
        ceiling: &VersionVector,
    ) -> bool {
        match self.peers.binary_search_by(|p| p.replica.cmp(&replica)) {
            Ok(i) => {
                let p = &self.peers[i];
                &p.floor != floor || p.ceiling.as_ref() != Some(ceiling)
            }
            Err(_) => true,
        }
    }

    /// Records a peer's report; true when the entry changed.
    pub fn reported(
        &mut self,
        replica: ReplicaId,
        floor: VersionVector,
        ceiling: VersionVector,
    ) -> bool {
        self.track(replica, &floor);
        let Ok(i) = self.peers.binary_search_by(|p| p.replica.cmp(&replica)) else {
            return false;
        };
        let entry = &mut self.peers[i];
        let ceiling = Some(ceiling);
        if entry.floor == floor && entry.ceiling == ceiling {
            return false;
        }
        entry.floor = floor;
        entry.ceiling = ceiling;
        true
    }
}

impl Stability {
    /// Records that `replica` was connected at `now_ms`; true when its entry changed.
    pub fn seen(&mut self, replica: ReplicaId, now_ms: u64) -> bool {
        match self.peers.binary_search_by(|p| p.replica.cmp(&replica)) {
            Ok(i) if self.peers[i].seen_ms < now_ms => {
                self.peers[i].seen_ms = now_ms;
                true
            }
            _ => false,
        }
    }
}

/// Per replica, the lower of the two counters (a replica missing from either is 0).
pub fn meet(a: &VersionVector, b: &VersionVector) -> VersionVector {
    a.iter()
        .filter_map(|(r, c)| {
            let m = c.min(b.get(r));
            (m > 0).then_some((r, m))
        })
        .collect()
}

impl Replica {
    /// The horizon and the peers' table.
    pub fn stability(&self) -> &Stability {
        &self.stability
    }

    /// Changes the horizon or the table; the change goes into the next batch.
    pub(crate) fn stability_mut(&mut self) -> &mut Stability {
        self.stability_dirty = true;
        &mut self.stability
    }

    /// Loads the horizon and the peers' table as read back from storage.
    pub fn restore_stability(&mut self, s: Stability) {
        #[cfg(feature = "serve")]
        {
            self.durable_peers = s.peers.iter().map(|p| p.replica).collect();
        }
        self.stability = s;
        self.stability_dirty = false;
    }

    /// Whether `replica`'s entry in the table is durable: only then may it be sent
    /// documents, so that no restart can forget a replica that holds some.
    #[cfg(feature = "serve")]
    pub fn durably_tracks(&self, replica: ReplicaId) -> bool {
        self.durable_peers.binary_search(&replica).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn vv(e: &[(u64, u64)]) -> VersionVector {
        e.iter().map(|(r, c)| (ReplicaId(*r), *c)).collect()
    }

    #[test]
    fn floor_is_the_meet_and_ceiling_waits_for_every_report() {
        let mut s = Stability::default();
        let own = vv(&[(1, 5), (2, 3)]);
        assert_eq!(s.floor(&own), own);
        assert_eq!(s.ceiling(&own), Some(own.clone()));
        assert!(s.track(ReplicaId(9), &vv(&[(1, 2)])));
        assert!(!s.track(ReplicaId(9), &vv(&[(1, 4)])), "tracked once");
        assert_eq!(s.floor(&own), vv(&[(1, 2)]));
        assert_eq!(s.ceiling(&own), None, "no report from 9 yet");
        assert!(s.reported(ReplicaId(9), vv(&[(1, 4), (2, 3)]), vv(&[(1, 6), (9, 2)])));
        assert!(!s.reported(ReplicaId(9), vv(&[(1, 4), (2, 3)]), vv(&[(1, 6), (9, 2)])));
        assert_eq!(s.floor(&own), vv(&[(1, 4), (2, 3)]));
        assert_eq!(s.ceiling(&own), Some(vv(&[(1, 6), (2, 3), (9, 2)])));
    }
}
