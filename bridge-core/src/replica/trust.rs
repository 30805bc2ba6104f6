//! The trust rule for pushes from sessions that may not relay: such a session introduces
//! only writes of its own replica, and never makes this store believe it holds writes it does
//! not hold.

use super::*;

impl Replica {
    /// The trust rule for a push from a session that may not relay (its token is below
    /// `admin`): it may introduce only writes of its own replica `own`. Refuses, before
    /// anything changes, a push that
    /// - carries a sibling of another replica that this store neither holds in that document
    ///   nor has seen superseded there,
    /// - has a document context that claims more of another replica than this store holds,
    /// - has a watermark that claims more of another replica than this store holds, or more
    ///   of `own` than the highest write of `own` it carries or this store holds,
    /// - carries a write of `own` (sibling or context) above its own watermark.
    ///
    /// So such a session can never make this store believe it holds writes it does not hold,
    /// which is how a forged vector would make later real writes look "already seen".
    pub fn check_introduced(
        &self,
        own: ReplicaId,
        docs: &[DocEntry],
        watermark: &VersionVector,
    ) -> Result<()> {
        let held = &self.vv_latest;
        let refuse = |what: String| Err(Error::RelayForbidden { own, what });
        let own_mark = watermark.get(own);
        let mut own_max = 0;
        for e in docs {
            let key = DocKey::new(e.collection.as_str(), e.id.as_str());
            let mine = self.state(&key)?;
            for s in &e.state.siblings {
                if s.dot.replica == own {
                    own_max = own_max.max(s.dot.counter);
                    if s.dot.counter > own_mark {
                        return refuse(format!(
                            "{}/{} carries its write {} above the push's watermark {own_mark}",
                            e.collection, e.id, s.dot.counter
                        ));
                    }
                    continue;
                }
                if !mine
                    .as_deref()
                    .is_some_and(|m| m.has_dot(s.dot) || m.context.contains(s.dot))
                {
                    return refuse(format!(
                        "{}/{} carries write {} of replica {}, which this server does not hold",
                        e.collection, e.id, s.dot.counter, s.dot.replica
                    ));
                }
            }
            for (r, c) in e.state.context.iter() {
                let limit = if r == own { own_mark } else { held.get(r) };
                if c > limit {
                    return refuse(format!(
                        "the context of {}/{} claims {c} writes of replica {r}; at most {limit} may be claimed",
                        e.collection, e.id
                    ));
                }
            }
        }
        for (r, c) in watermark.iter() {
            let limit = if r == own {
                held.get(r).max(own_max)
            } else {
                held.get(r)
            };
            if c > limit {
                return refuse(format!(
                    "the watermark claims {c} writes of replica {r}; the push and this server account for {limit}"
                ));
            }
        }
        Ok(())
    }

    /// A peer claims to hold `claimed` writes of this replica, more than it ever made: the
    /// claim is forged (or this store was restored from an old copy). Our next write must
    /// not reuse a counter the claim covers, so the counter moves past it.
    pub fn skip_own_counter(&mut self, claimed: u64) {
        self.vv_latest.raise(self.id, claimed);
    }
}
