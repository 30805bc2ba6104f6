//! The simulated store: a node's documents and retained messages on its simulated disk,
//! shared with its engine when the node's durable layer is a store (odd nodes, with tiny cache
//! budgets), so every read of the live-dot index, of a collection page, of a document or of a
//! replay goes to "disk" as it does on the native host.

use crate::message::Retained;
use crate::replica::DocStore;
use crate::{DocKey, DocState, Dot, ReplicaId, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default, PartialEq)]
pub(super) struct Docs {
    pub(super) docs: BTreeMap<DocKey, DocState>,
    live: BTreeMap<Dot, DocKey>,
    /// Retained messages by offset.
    pub(super) messages: BTreeMap<u64, Retained>,
    /// [`DocStore::cache_new_writes`]: half the stored nodes cache what they write, half
    /// only what they read.
    pub(super) cache_new_writes: bool,
}

/// A node's documents on disk (cloning shares them).
#[derive(Clone, Debug, Default)]
pub(super) struct SimDocs(Arc<Mutex<Docs>>);

impl SimDocs {
    pub(super) fn lock(&self) -> MutexGuard<'_, Docs> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a state, as the host's store writes a batch's documents with their dots.
    pub(super) fn put(&self, key: DocKey, state: DocState) {
        let mut d = self.lock();
        if let Some(old) = d.docs.get(&key) {
            let dots: Vec<Dot> = old.siblings.iter().map(|s| s.dot).collect();
            for dot in dots {
                d.live.remove(&dot);
            }
        }
        for s in &state.siblings {
            d.live.insert(s.dot, key.clone());
        }
        d.docs.insert(key, state);
    }

    /// Removes a collected document and its dots.
    pub(super) fn remove(&self, key: &DocKey) {
        let mut d = self.lock();
        if let Some(old) = d.docs.remove(key) {
            for s in &old.siblings {
                d.live.remove(&s.dot);
            }
        }
    }

    /// Writes a batch's messages, then keeps the newest `keep` of each channel named in
    /// `retain` (as the host's `UPSERT_MESSAGE` and `TRIM_CHANNEL` in the batch's commit).
    pub(super) fn put_messages(&self, messages: &[Retained], retain: &[(String, usize)]) {
        let mut d = self.lock();
        for r in messages {
            d.messages.insert(r.offset, r.clone());
        }
        for (ch, keep) in retain {
            let offs: Vec<u64> = d
                .messages
                .values()
                .filter(|r| &r.message.channel == ch)
                .map(|r| r.offset)
                .collect();
            let drop = offs.len().saturating_sub(*keep);
            for o in offs.into_iter().take(drop) {
                d.messages.remove(&o);
            }
        }
    }

    /// The highest offset of a retained message (0 for none).
    pub(super) fn last_offset(&self) -> u64 {
        self.lock()
            .messages
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    pub(super) fn snapshot(&self) -> BTreeMap<DocKey, DocState> {
        self.lock().docs.clone()
    }
}

impl DocStore for SimDocs {
    fn cache_new_writes(&self) -> bool {
        self.lock().cache_new_writes
    }

    fn load(&self, key: &DocKey) -> Result<Option<DocState>> {
        Ok(self.lock().docs.get(key).cloned())
    }

    fn keys(&self, collection: &str, after: Option<&str>, limit: usize) -> Result<Vec<DocKey>> {
        let d = self.lock();
        Ok(d.docs
            .range(DocKey::new(collection, after.unwrap_or(""))..)
            .map(|(k, _)| k)
            .take_while(|k| k.collection == collection)
            .filter(|k| after.is_none_or(|a| k.id.as_str() > a))
            .take(limit)
            .cloned()
            .collect())
    }

    fn dots(
        &self,
        replica: ReplicaId,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DocKey)>> {
        if from >= upto {
            return Ok(Vec::new());
        }
        let d = self.lock();
        Ok(d.live
            .range(Dot::new(replica, from + 1)..=Dot::new(replica, upto))
            .take(limit)
            .map(|(dot, k)| (dot.counter, k.clone()))
            .collect())
    }

    fn conflicted(
        &self,
        collection: Option<&str>,
        after: Option<&DocKey>,
        limit: usize,
    ) -> Result<Vec<DocKey>> {
        let d = self.lock();
        Ok(d.docs
            .iter()
            .filter(|(k, s)| {
                s.siblings.len() > 1
                    && collection.is_none_or(|c| c == k.collection)
                    && after.is_none_or(|a| *k > a)
            })
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn doc_count(&self) -> Result<u64> {
        Ok(self.lock().docs.len() as u64)
    }

    fn dead(&self, after: Option<&DocKey>, limit: usize) -> Result<Vec<(DocKey, DocState)>> {
        let d = self.lock();
        Ok(d.docs
            .iter()
            .filter(|(k, s)| after.is_none_or(|a| *k > a) && s.is_dead())
            .take(limit)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect())
    }

    fn messages(
        &self,
        channel: Option<&str>,
        from: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Retained>> {
        if from >= upto {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .messages
            .range(from + 1..=upto)
            .map(|(_, r)| r)
            .filter(|r| channel.is_none_or(|c| c == r.message.channel))
            .take(limit)
            .cloned()
            .collect())
    }

    fn next_collection(&self, after: &str) -> Result<Option<String>> {
        Ok(self
            .lock()
            .docs
            .keys()
            .map(|k| &k.collection)
            .find(|c| c.as_str() > after)
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, EngineConfig, Tier};
    use serde_json::json;

    fn engine(disk: &SimDocs, retain: usize) -> Engine {
        let mut cfg = EngineConfig::new(ReplicaId(7), Tier::Local, "s");
        cfg.default_retain = retain;
        cfg.seed_default_policy = false;
        let mut e = Engine::with_store(cfg, Box::new(disk.clone()));
        e.restore_message_offset(disk.last_offset());
        e
    }

    /// Cuts what is staged and writes it to `disk`; reports it persisted when `report`.
    fn commit(e: &mut Engine, disk: &SimDocs, report: bool) -> Vec<u64> {
        let mut ids = Vec::new();
        while let Some(b) = e.poll_persist() {
            disk.put_messages(&b.messages, &b.retain);
            ids.push(b.id);
        }
        if report {
            for id in &ids {
                e.persisted(*id).expect("persisted in order");
            }
        }
        ids
    }

    fn offsets(v: &[Retained]) -> Vec<u64> {
        v.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn retained_messages_stay_on_disk_and_replay_in_pages() {
        let disk = SimDocs::default();
        let mut e = engine(&disk, 50);
        // More than a page of each channel, interleaved, in several batches.
        for i in 0..120u64 {
            let ch = if i % 3 == 0 { "b" } else { "a" };
            crate::testing::publish(&mut e, 1000 + i, ch, json!(i)).expect("publish");
            if i % 7 == 0 {
                commit(&mut e, &disk, true);
            }
        }
        commit(&mut e, &disk, true);
        // Nothing retained in memory: only the highest offset.
        assert_eq!(e.replica().logs().all().len(), 0);
        assert_eq!(e.replica().logs().next_offset(), 120);
        // Each channel keeps its newest 50 on disk (b has 40 in all).
        let a = e.replica().replay("a", 0).expect("replay a");
        let b = e.replica().replay("b", 0).expect("replay b");
        assert_eq!((a.len(), b.len()), (50, 40));
        assert!(a.windows(2).all(|w| w[0].offset < w[1].offset));
        assert!(a.iter().all(|r| r.message.channel == "a"));
        assert_eq!(a.last().map(|r| r.offset), Some(120));
        // From a cursor in the middle: exactly the later ones.
        let cursor = a[20].offset;
        let rest = e.replica().replay("a", cursor).expect("replay from cursor");
        assert_eq!(offsets(&rest), offsets(&a[21..]));
        // Every channel, in offset order, filtered as a peer's replay is.
        let all = e.replica().retained_where(|_| true).expect("all");
        assert_eq!(all.len(), 90);
        assert!(all.windows(2).all(|w| w[0].offset < w[1].offset));

        // A restart reads only the highest offset, replays the same, and continues above it.
        let mut again = engine(&disk, 50);
        assert_eq!(again.replica().logs().next_offset(), 120);
        let replayed = again
            .replica()
            .replay("a", cursor)
            .expect("replay after restart");
        assert_eq!(replayed, rest);
        crate::testing::publish(&mut again, 5000, "a", json!("next")).expect("publish");
        commit(&mut again, &disk, true);
        let last = again
            .replica()
            .replay("a", 120)
            .expect("replay the new one");
        assert_eq!(offsets(&last), [121]);
    }

    #[test]
    fn a_committed_batch_is_replayed_only_once_reported() {
        let disk = SimDocs::default();
        let mut e = engine(&disk, 100);
        crate::testing::publish(&mut e, 1000, "a", json!(1)).expect("publish");
        commit(&mut e, &disk, true);
        crate::testing::publish(&mut e, 1001, "a", json!(2)).expect("publish");
        let ids = commit(&mut e, &disk, false);
        // On disk, not yet reported: it is delivered when reported, so no replay has it.
        assert_eq!(disk.last_offset(), 2);
        assert_eq!(offsets(&e.replica().replay("a", 0).expect("replay")), [1]);
        for id in ids {
            e.persisted(id).expect("persisted");
        }
        assert_eq!(
            offsets(&e.replica().replay("a", 0).expect("replay")),
            [1, 2]
        );
    }
}
