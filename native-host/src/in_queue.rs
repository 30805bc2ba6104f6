//! What connections have read but the hub has not handled yet, bounded in bytes: per
//! connection (`IN_QUEUE_MB`) and over every connection of the process together
//! (`IN_QUEUE_TOTAL_MB`).
//!
//! A connection's reader ([`crate::ws::read_loop`]) reserves a frame's bytes (its size on
//! the wire) before it hands the frame to the hub, and the hub gives them back once it has
//! handled the frame (the [`Permit`] travels with [`crate::hub::Input::Frame`] and is dropped
//! with it). A reader over either bound waits, and so stops reading its socket: the client is
//! slowed down by TCP, it is not closed. A frame larger than a bound waits until it is
//! alone under it, then goes; so any frame the socket accepts gets through.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default of `IN_QUEUE_MB`.
pub const DEFAULT_PER_CONNECTION_MB: u64 = 8;
/// Default of `IN_QUEUE_TOTAL_MB`.
pub const DEFAULT_TOTAL_MB: u64 = 64;

/// The bounds, and the bytes held now over every connection. One per process.
#[derive(Debug)]
pub struct Budget {
    per_connection: usize,
    total_max: usize,
    total: Arc<Semaphore>,
}

impl Budget {
    pub fn new(per_connection: usize, total: usize) -> Arc<Budget> {
        let per_connection = per_connection.clamp(1, Semaphore::MAX_PERMITS);
        let total_max = total.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Budget {
            per_connection,
            total_max,
            total: Arc::new(Semaphore::new(total_max)),
        })
    }

    /// A new connection's share.
    pub fn connection(self: &Arc<Self>) -> Queue {
        Queue {
            budget: self.clone(),
            own: Arc::new(Semaphore::new(self.per_connection)),
        }
    }

    /// Bytes read and not handled yet, over every connection.
    pub fn queued(&self) -> usize {
        self.total_max
            .saturating_sub(self.total.available_permits())
    }
}

/// One connection's inbound bytes.
#[derive(Debug)]
pub struct Queue {
    budget: Arc<Budget>,
    own: Arc<Semaphore>,
}

impl Queue {
    /// Waits until `bytes` more fit under both bounds (a frame larger than a bound counts as
    /// the whole bound), and holds them until the permit is dropped.
    pub async fn reserve(&self, bytes: usize) -> Permit {
        let own = permits(bytes, self.budget.per_connection);
        let total = permits(bytes, self.budget.total_max);
        // Never closed, so these only fail if the process is going away.
        let own = self.own.clone().acquire_many_owned(own).await.ok();
        let total = self
            .budget
            .total
            .clone()
            .acquire_many_owned(total)
            .await
            .ok();
        Permit {
            _held: own.zip(total),
        }
    }

    /// Bytes this connection has read and the hub not handled yet.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.budget
            .per_connection
            .saturating_sub(self.own.available_permits())
    }
}

fn permits(bytes: usize, bound: usize) -> u32 {
    u32::try_from(bytes.min(bound)).unwrap_or(u32::MAX)
}

/// Bytes a frame holds until the hub has handled it (dropped with the hub's input).
#[derive(Debug, Default)]
pub struct Permit {
    _held: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reader_over_its_bound_waits_until_the_hub_handled_enough() {
        let budget = Budget::new(1000, 10_000);
        let conn = budget.connection();
        let a = conn.reserve(600).await;
        assert_eq!((conn.queued(), budget.queued()), (600, 600));
        // 600 + 600 > 1000: waits, holding nothing.
        let waiting = tokio::time::timeout(Duration::from_millis(50), conn.reserve(600)).await;
        assert!(waiting.is_err(), "over the bound must wait");
        assert_eq!(budget.queued(), 600);
        drop(a);
        assert_eq!((conn.queued(), budget.queued()), (0, 0));
        let b = conn.reserve(600).await;
        assert_eq!(budget.queued(), 600);
        // A frame larger than the bound goes alone.
        drop(b);
        let big = tokio::time::timeout(Duration::from_secs(5), conn.reserve(5000)).await;
        assert!(big.is_ok(), "a frame over the bound goes once alone");
        assert_eq!(conn.queued(), 1000);
    }

    #[tokio::test]
    async fn the_total_bounds_every_connection_together_and_each_gets_its_turn() {
        let budget = Budget::new(1000, 1500);
        let (one, two) = (budget.connection(), budget.connection());
        let a = one.reserve(1000).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), two.reserve(1000)).await;
        assert!(waiting.is_err(), "the total is full");
        let small = tokio::time::timeout(Duration::from_secs(5), two.reserve(500)).await;
        assert!(small.is_ok(), "what fits the total goes");
        drop(small);
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(5), two.reserve(1000)).await;
        assert!(b.is_ok());
        assert_eq!(budget.queued(), 1000);
    }
}
