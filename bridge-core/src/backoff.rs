//! Reconnect pacing: capped exponential backoff with jitter.
//!
//! The randomness comes from the host (the core has none): pass any random `u64` per
//! attempt. Delays grow 2× per failed attempt up to the cap, and each is drawn uniformly from
//! the upper half of the current step ("equal jitter"), so a fleet of clients that lost the
//! same server does not reconnect in lockstep, yet none retries immediately.

/// The pacing of one connection's reconnects: call [`Backoff::next_delay`] after each failed
/// attempt and wait that long (ms), and [`Backoff::reset`] once connected. The `n`th delay
/// since the last reset lies between half of and all of `min(base_ms * 2^(n-1), max_ms)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    base_ms: u64,
    max_ms: u64,
    attempt: u32,
}

impl Default for Backoff {
    /// 250 ms doubling to at most 30 s.
    fn default() -> Self {
        Backoff::new(250, 30_000)
    }
}

impl Backoff {
    /// A backoff whose first step is `base_ms` and whose steps stop doubling at `max_ms` (both
    /// in ms; `base_ms` is at least 1, and `max_ms` at least `base_ms`).
    pub fn new(base_ms: u64, max_ms: u64) -> Self {
        Backoff {
            base_ms: base_ms.max(1),
            max_ms: max_ms.max(base_ms.max(1)),
            attempt: 0,
        }
    }

    /// The delay before the next attempt, given a random number from the host.
    pub fn next_delay(&mut self, random: u64) -> u64 {
        let step = self
            .base_ms
            .saturating_mul(1u64 << self.attempt.min(40))
            .min(self.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + random % (step - half + 1)
    }

    /// Failed attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Call after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_jittered_and_resets() {
        let mut b = Backoff::new(100, 1000);
        let lo: Vec<u64> = (0..6).map(|_| b.next_delay(0)).collect();
        assert_eq!(lo, [50, 100, 200, 400, 500, 500]);
        let mut b = Backoff::new(100, 1000);
        let hi: Vec<u64> = (0..6).map(|_| b.next_delay(u64::MAX - 1)).collect();
        for (l, h) in lo.iter().zip(&hi) {
            assert!(h >= l && *h <= l * 2, "{l} {h}");
        }
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.next_delay(0), 50);
        let mut b = Backoff::default();
        for _ in 0..100 {
            assert!(b.next_delay(12345) <= 30_000);
        }
    }
}
