//! Idempotency keys: a request that may be run twice (a browser tab forwards a write to the
//! tab holding the store; that tab dies after storing it but before answering; the next one
//! runs the call again) is recognised the second time, on whichever engine the store is
//! restored into, and answered with its first result instead of being done again.
//!
//! The engine records each keyed request's result in the same [`crate::PersistBatch`] as the
//! write itself (`requests`), so the key is durable exactly when the write is; the host stores
//! it with the batch and gives it back with [`crate::Engine::restore_requests`]. The engine
//! remembers the last [`REMEMBERED_REQUESTS`] keys (memory stays bounded); hosts need keep no
//! more than that many either.

use crate::Dot;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How many done requests an engine remembers (and a host needs to keep): a re-run happens
/// within one hand-over, so this is far more than ever needed.
pub const REMEMBERED_REQUESTS: usize = 1024;

/// Who asked (`origin`: for instance a browser tab's random id) and its own request number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestKey {
    /// Who asked: a number the caller drew at random once (a tab's id), so keys of different
    /// callers do not collide.
    pub origin: u64,
    /// The caller's own number for this request, unique per `origin`.
    pub id: u64,
}

/// A keyed request that was done, and its result: the dot of a document write, `None` for a
/// message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneRequest {
    /// The request's key.
    pub key: RequestKey,
    /// Its result: the write's dot, `None` for a message.
    pub dot: Option<Dot>,
}

/// The engine's memory of done requests: the newest [`REMEMBERED_REQUESTS`], and those made
/// since the last batch was cut (to persist with it).
///
/// The remembered ones are a queue, oldest first, searched from the newest: it is bounded and
/// only keyed requests look it up, and a map would compile one more B-tree into the browser
/// package.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    done: VecDeque<DoneRequest>,
    staged: Vec<DoneRequest>,
}

impl Requests {
    /// The result of `key` if it was done, as `Some(result)`.
    pub(crate) fn get(&self, key: &RequestKey) -> Option<Option<Dot>> {
        self.done
            .iter()
            .rev()
            .find(|d| d.key == *key)
            .map(|d| d.dot)
    }

    /// Remembers a done request; `stage` when it must be persisted with the next batch.
    pub(crate) fn insert(&mut self, r: DoneRequest, stage: bool) {
        match self.done.iter_mut().rev().find(|d| d.key == r.key) {
            // Known already: its result is replaced, its place in the queue kept.
            Some(d) => d.dot = r.dot,
            None => self.done.push_back(r),
        }
        while self.done.len() > REMEMBERED_REQUESTS {
            self.done.pop_front();
        }
        if stage {
            self.staged.push(r);
        }
    }

    pub(crate) fn take_staged(&mut self) -> Vec<DoneRequest> {
        std::mem::take(&mut self.staged)
    }
}
