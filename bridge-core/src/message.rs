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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    pub origin: ReplicaId,
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub channel: String,
    pub payload: Value,
    pub stamp: Stamp,
}

/// Who is connected, seen from anywhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// The store the session is attached to.
    pub node: ReplicaId,
    /// The session number on that store.
    pub session: u64,
    pub name: String,
    pub kind: SessionKind,
    pub tier: Tier,
    /// When the session started (ms since the epoch, the host's clock).
    pub since: u64,
}

/// A retained message with its store-local offset.
#[derive(Clone, Debug, PartialEq)]
pub struct Retained {
    pub offset: u64,
    pub message: Message,
}

/// The last N messages of each channel (channels in name order).
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
