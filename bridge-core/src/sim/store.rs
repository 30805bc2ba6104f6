//! The simulated store: a node's documents on its simulated disk, shared with its engine when
//! the node's durable layer is a store (odd nodes, with tiny cache budgets), so every read of
//! the live-dot index, of a collection page or of a document goes to "disk" as it does on the
//! native host.

use crate::replica::DocStore;
use crate::{DocKey, DocState, Dot, ReplicaId, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default, PartialEq)]
pub(super) struct Docs {
    pub(super) docs: BTreeMap<DocKey, DocState>,
    live: BTreeMap<Dot, DocKey>,
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

    pub(super) fn snapshot(&self) -> BTreeMap<DocKey, DocState> {
        self.lock().docs.clone()
    }
}

impl DocStore for SimDocs {
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

    fn count_dots(&self, replica: ReplicaId, from: u64, upto: u64) -> Result<u64> {
        if from >= upto {
            return Ok(0);
        }
        let d = self.lock();
        Ok(d.live
            .range(Dot::new(replica, from + 1)..=Dot::new(replica, upto))
            .count() as u64)
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
