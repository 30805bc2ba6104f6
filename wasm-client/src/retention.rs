//! Which stored messages a channel's retention drops.
//!
//! A [`bridge_core::PersistBatch`] carries new retained messages (each with a store-local
//! offset) and, per channel it wrote, how many that channel keeps. IndexedDB has no
//! "delete all but the newest N of this channel" statement, and awaiting a cursor inside the
//! batch's transaction would only slow it down, so the store keeps the offsets of every stored
//! message per channel in memory (rebuilt on open) and deletes the overflow by key in the same
//! transaction as the batch.

use std::collections::VecDeque;

/// Offsets of the stored messages of each channel, oldest first.
///
/// Channels are sorted by name in a `Vec` (binary search): there are few, and a `BTreeMap`
/// would add one more B-tree instantiation to the package.
#[derive(Clone, Debug, Default)]
pub struct RetentionIndex {
    channels: Vec<(String, VecDeque<u64>)>,
}

impl RetentionIndex {
    fn find(&self, channel: &str) -> Result<usize, usize> {
        self.channels
            .binary_search_by(|(c, _)| c.as_str().cmp(channel))
    }

    fn log(&self, channel: &str) -> Option<&VecDeque<u64>> {
        self.find(channel).ok().map(|i| &self.channels[i].1)
    }

    /// A message stored (or read back on open, in offset order) at `offset`.
    pub fn stored(&mut self, channel: &str, offset: u64) {
        match self.find(channel) {
            Ok(i) => self.channels[i].1.push_back(offset),
            Err(i) => self
                .channels
                .insert(i, (channel.to_owned(), VecDeque::from([offset]))),
        }
    }

    /// Keeps the newest `keep` of `channel` and returns the offsets to delete, oldest first.
    pub fn trim(&mut self, channel: &str, keep: usize) -> Vec<u64> {
        let Ok(i) = self.find(channel) else {
            return Vec::new();
        };
        let log = &mut self.channels[i].1;
        let excess = log.len().saturating_sub(keep);
        log.drain(..excess).collect()
    }

    /// Stored messages of `channel`.
    pub fn len(&self, channel: &str) -> usize {
        self.log(channel).map_or(0, VecDeque::len)
    }

    pub fn is_empty(&self) -> bool {
        self.channels.iter().all(|(_, log)| log.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_oldest_first_per_channel() {
        let mut r = RetentionIndex::default();
        assert!(r.is_empty());
        for off in 1..=5 {
            r.stored("chat", off);
        }
        r.stored("log", 6);
        assert_eq!(r.trim("chat", 2), vec![1, 2, 3]);
        assert_eq!(r.len("chat"), 2);
        assert_eq!(r.trim("chat", 2), Vec::<u64>::new());
        assert_eq!(r.trim("log", 0), vec![6]);
        assert_eq!(r.trim("nothing", 0), Vec::<u64>::new());
        r.stored("chat", 7);
        assert_eq!(r.trim("chat", 2), vec![4]);
    }
}
