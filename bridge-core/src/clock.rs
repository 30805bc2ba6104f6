//! Hybrid logical clock.
//!
//! A [`Stamp`] is (wall milliseconds, counter, replica). It never runs backwards on one
//! replica, it moves past every stamp the replica has seen, and it stays close to wall time,
//! so "newest" means what a person expects. The replica id breaks ties, which makes stamps
//! totally ordered and unique per replica. The core never reads a clock: hosts pass `now_ms`.

use crate::{Error, ReplicaId};
use serde::{Deserialize, Serialize};

/// How far ahead of our wall clock a remote stamp may be before it is refused.
pub const DEFAULT_MAX_SKEW_MS: u64 = 60_000;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
/// A hybrid-logical-clock timestamp. Stamps order by `wall`, then `counter`, then `replica`
/// (the derived `Ord`), so two stamps of different replicas are never equal; the newest
/// stamp is what `lww` keeps.
pub struct Stamp {
    /// Wall time in ms since the Unix epoch, as the issuing replica's host saw it (or later,
    /// when it had observed a newer stamp).
    pub wall: u64,
    /// Orders stamps within one millisecond of `wall`; restarts at 0 when `wall` moves.
    pub counter: u32,
    /// The replica that issued the stamp: the tie-breaker.
    pub replica: ReplicaId,
}

impl Stamp {
    /// A stamp from its parts.
    pub fn new(wall: u64, counter: u32, replica: ReplicaId) -> Self {
        Stamp {
            wall,
            counter,
            replica,
        }
    }
}

/// The clock of one replica.
#[derive(Clone, Debug)]
pub struct Hlc {
    replica: ReplicaId,
    last: Stamp,
    max_skew_ms: u64,
}

impl Hlc {
    /// A clock for `replica` that has seen nothing yet, with the default skew bound
    /// ([`DEFAULT_MAX_SKEW_MS`]).
    pub fn new(replica: ReplicaId) -> Self {
        Hlc {
            replica,
            last: Stamp::new(0, 0, replica),
            max_skew_ms: DEFAULT_MAX_SKEW_MS,
        }
    }

    /// Sets the skew bound: [`Hlc::check`] refuses a remote stamp more than `ms` milliseconds
    /// ahead of `now_ms`.
    pub fn with_max_skew(mut self, ms: u64) -> Self {
        self.max_skew_ms = ms;
        self
    }

    /// The newest stamp issued or observed; persisted so a restart never goes back.
    pub fn last(&self) -> Stamp {
        self.last
    }

    /// Restores the clock after a restart.
    pub fn restore(&mut self, last: Stamp) {
        if (last.wall, last.counter) > (self.last.wall, self.last.counter) {
            self.last = Stamp::new(last.wall, last.counter, self.replica);
        }
    }

    /// A fresh stamp for a local event at `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Stamp {
        let next = if now_ms > self.last.wall {
            Stamp::new(now_ms, 0, self.replica)
        } else {
            // Counter overflow would need 4 billion events in one millisecond; carry into wall.
            match self.last.counter.checked_add(1) {
                Some(c) => Stamp::new(self.last.wall, c, self.replica),
                None => Stamp::new(self.last.wall + 1, 0, self.replica),
            }
        };
        self.last = next;
        next
    }

    /// Checks a remote stamp against the skew bound without moving the clock.
    pub fn check(&self, now_ms: u64, remote: Stamp) -> Result<(), Error> {
        if remote.wall > now_ms.saturating_add(self.max_skew_ms) {
            return Err(Error::ClockSkew {
                ahead_ms: remote.wall - now_ms,
                max_ms: self.max_skew_ms,
            });
        }
        Ok(())
    }

    /// Moves the clock past a remote stamp (after [`Hlc::check`] accepted it).
    pub fn observe(&mut self, remote: Stamp) {
        if (remote.wall, remote.counter) > (self.last.wall, self.last.counter) {
            self.last = Stamp::new(remote.wall, remote.counter, self.replica);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 the same `#[test]` functions run under wasm-bindgen-test (see scripts/test.sh).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn ticks_are_monotonic_even_when_wall_goes_back() {
        let mut c = Hlc::new(ReplicaId(1));
        let a = c.tick(100);
        let b = c.tick(90);
        let d = c.tick(100);
        assert!(a < b && b < d);
        assert_eq!(c.tick(200).wall, 200);
    }

    #[test]
    fn observe_moves_past_remote() {
        let mut c = Hlc::new(ReplicaId(1));
        c.tick(100);
        let remote = Stamp::new(150, 7, ReplicaId(2));
        c.check(120, remote).expect("within skew");
        c.observe(remote);
        let next = c.tick(120);
        assert!(next > remote);
    }

    #[test]
    fn far_future_stamp_is_refused() {
        let c = Hlc::new(ReplicaId(1)).with_max_skew(1000);
        let err = c.check(0, Stamp::new(5000, 0, ReplicaId(2))).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::ClockSkew);
    }
}
