//! [`Engine::once`]: requests with an idempotency key (see [`crate::requests`]).

use super::{Engine, Gated};
use crate::requests::{DoneRequest, RequestKey};
use crate::{Dot, Result};

impl Engine {
    /// Runs request `key` at most once. If a request with this key was already done — by this
    /// engine, or by an earlier one on the same store (given back with
    /// [`Engine::restore_requests`]) — nothing is done again: `Event::Acked { req }` follows
    /// with the original result once that is durable. Otherwise `run` makes the write (with
    /// `req`, so it is acknowledged as usual) and its result is recorded in the same batch.
    pub fn once(
        &mut self,
        key: RequestKey,
        req: u64,
        run: impl FnOnce(&mut Engine) -> Result<Option<Dot>>,
    ) -> Result<()> {
        if let Some(dot) = self.requests.get(&key) {
            self.gate(Gated::Local(req, dot));
            return Ok(());
        }
        let dot = run(self)?;
        self.requests.insert(DoneRequest { key, dot }, true);
        Ok(())
    }

    /// Gives back done requests the host stored with earlier batches (oldest first).
    pub fn restore_requests(&mut self, done: impl IntoIterator<Item = DoneRequest>) {
        for r in done {
            self.requests.insert(r, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::requests::{DoneRequest, RequestKey};
    use crate::{DocKey, Engine, EngineConfig, Event, ReplicaId, Tier, WriteOp};
    use serde_json::{json, Map};

    fn flush(e: &mut Engine) -> Vec<DoneRequest> {
        let mut stored = Vec::new();
        while let Some(b) = e.poll_persist() {
            stored.extend(b.requests.iter().copied());
            assert!(e.persisted(b.id).is_ok());
        }
        stored
    }

    fn acks(e: &mut Engine) -> Vec<(u64, Option<crate::Dot>)> {
        std::iter::from_fn(|| e.poll_event())
            .filter_map(|ev| match ev {
                Event::Acked { req, dot } => Some((req, dot)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_request_run_again_on_a_restored_engine_is_answered_not_redone() {
        let mut cfg = EngineConfig::new(ReplicaId(1), Tier::Local, "s");
        // A browser-like store: no default-policy seed in its first batch.
        cfg.seed_default_policy = false;
        let key = RequestKey { origin: 7, id: 1 };
        let msg = RequestKey { origin: 7, id: 2 };
        let mut a = Engine::new(cfg.clone());
        let mut m = Map::new();
        m.insert("x".into(), json!(1));
        let doc = DocKey::new("c", "d");
        let put = |e: &mut Engine, req| e.write(5, req, doc.clone(), WriteOp::Put(m.clone()));
        assert!(a.once(key, 1, |e| put(e, 1).map(Some)).is_ok());
        assert!(a
            .once(msg, 2, |e| e
                .publish(5, 2, "chat", json!("hi"))
                .map(|_| None))
            .is_ok());
        let stored = flush(&mut a);
        assert_eq!(stored.len(), 2);
        let first = acks(&mut a);
        assert_eq!(first.len(), 2);

        // Another engine on the same store (restored), asked the same two requests again.
        let mut b = Engine::new(cfg);
        b.restore_requests(stored);
        let mut ran = false;
        assert!(b
            .once(key, 10, |_| {
                ran = true;
                Ok(None)
            })
            .is_ok());
        assert!(b.once(msg, 11, |_| Ok(None)).is_ok());
        assert!(!ran, "a done request is not run again");
        assert_eq!(acks(&mut b), vec![(10, first[0].1), (11, None)]);
        assert!(b.poll_persist().is_none(), "nothing new to store");
    }
}
