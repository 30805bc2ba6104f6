//! Channel messages and presence.
//!
//! A message is named by (origin replica, seq); seqs of one origin increase. A store accepts
//! a message only if its seq is above the highest it has seen from that origin, so however
//! many hops and loops a message takes (local → cloud → local), each store — and so each
//! subscriber of a store — gets it at most once and in per-sender order. Each channel retains
//! its last N messages with a store-local offset, so a reconnecting agent replays from a
//! cursor and a reconnecting peer receives what it missed.

use crate::ids::SessionKind;
use crate::vec_map::VecMap;
use crate::{ReplicaId, Stamp, Tier};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BinaryHeap, VecDeque};

/// A message's name: the replica that published it and its sequence there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    /// The replica the message was published on.
    pub origin: ReplicaId,
    /// The origin's message sequence: 1 for its first message, one more for each after (per
    /// space, across channels). A store takes a message only if `seq` is above the highest it
    /// has seen from `origin`.
    pub seq: u64,
}

/// A message published on a channel. Messages are not documents: no merge, no conflicts;
/// each store retains the last few per channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Its name, which makes delivery at most once per store.
    pub id: MessageId,
    /// The channel (a name, checked like every other).
    pub channel: String,
    /// Any JSON value, at most [`crate::limits::MAX_MESSAGE_BYTES`].
    pub payload: Value,
    /// Hybrid-clock stamp taken when it was published.
    pub stamp: Stamp,
}

/// Who is connected, seen from anywhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// The store the session is attached to.
    pub node: ReplicaId,
    /// The session number on that store.
    pub session: u64,
    /// Its display name (the `hello`'s `name`).
    pub name: String,
    /// Agent or peer.
    pub kind: SessionKind,
    /// A peer's own tier; for an agent, the tier of the store it is attached to.
    pub tier: Tier,
    /// When the session started (ms since the epoch, the host's clock).
    pub since: u64,
}

/// A retained message with its store-local offset.
#[derive(Clone, Debug, PartialEq)]
pub struct Retained {
    /// This store's offset of the message: increasing across all channels, never reused, and
    /// not the same on another store. Agents pass it as `from` to resume.
    pub offset: u64,
    /// The message.
    pub message: Message,
}

/// The last N messages of each channel (channels in name order), when the replica keeps them
/// in memory (the browser). A replica whose durable layer is the host's store (feature
/// `store`) keeps only the highest offset here and reads retained messages from the store
/// ([`crate::replica::DocStore::messages`]).
#[derive(Clone, Debug, Default)]
pub struct ChannelLogs {
    logs: VecMap<String, VecDeque<Retained>>,
    next_offset: u64,
}

impl ChannelLogs {
    /// Appends a message at its offset, keeping at most `retain` for its channel.
    pub fn append_at(&mut self, r: Retained, retain: usize) {
        self.next_offset = self.next_offset.max(r.offset);
        let log = self
            .logs
            .get_or_insert_with(r.message.channel.clone(), VecDeque::new);
        log.push_back(r);
        while log.len() > retain {
            log.pop_front();
        }
    }

    /// Restores one retained message after a restart (in offset order).
    pub fn restore(&mut self, r: Retained) {
        self.next_offset = self.next_offset.max(r.offset);
        self.logs
            .get_or_insert_with(r.message.channel.clone(), VecDeque::new)
            .push_back(r);
    }

    /// Moves the highest offset to at least `offset` without retaining a message: for a
    /// replica whose retained messages live in the host's store (feature `store`), which
    /// keeps only this figure in memory.
    #[cfg(feature = "store")]
    pub fn advance(&mut self, offset: u64) {
        self.next_offset = self.next_offset.max(offset);
    }

    /// The highest offset a retained message has had (0 before the first); the next message
    /// stored gets a higher one. Every message up to it is durable.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Retained messages of a channel after `cursor`.
    pub fn after<'a>(&'a self, channel: &str, cursor: u64) -> impl Iterator<Item = &'a Retained> {
        self.logs
            .get(channel)
            .into_iter()
            .flat_map(move |l| l.iter().filter(move |r| r.offset > cursor))
    }

    /// Every retained message, in offset order.
    pub fn all(&self) -> Vec<&Retained> {
        let v: Vec<&Retained> = self.logs.values().flatten().collect();
        // Ordered by (offset, position): what a stable sort by offset gives, with a heap sort
        // of plain pairs (far less code in the browser package than `sort_by_key`).
        let order = BinaryHeap::from_iter(v.iter().enumerate().map(|(i, r)| (r.offset, i)));
        order
            .into_sorted_vec()
            .into_iter()
            .map(|(_, i)| v[i])
            .collect()
    }
}
