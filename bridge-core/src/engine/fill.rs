//! The initial sync of a new partial replica, **by key** (docs/protocol.md, section 5,
//! "Partial replication"; ARCHITECTURE.md, "Partial replication").
//!
//! A peer that says `collections` and holds nothing (a `hello` vector with no entry but its
//! own writes) is sent its
//! collections' documents by walking them in key order ([`Replica::fill_page`]) instead of
//! every live dot of the space above its vector: a subset of 10k documents out of a million
//! costs the subset. The pages carry an empty `watermark`, so a peer that loses the session
//! half way has claimed nothing; the last page claims the server's durable vector as it was
//! when the walk began (`claim`): every write below it was durable then, so the walk, which
//! reads durable states no older than that, carried every one of the peer's collections.
//! Deltas then go on from the claim as for any peer (writes made during the walk go twice;
//! a join takes them once).
//!
//! A peer whose walk did not finish holds documents beyond its vector; its next
//! `hello` says so (`unclaimed`), and a server that has a horizon resyncs it first, so a
//! document it got and the server has since collected is dropped, not kept for good.

use super::*;
#[cfg(feature = "serve")]
use crate::frame::Push;
#[cfg(feature = "serve")]
use crate::replica::FillPage;
use serde::{Deserialize, Serialize};

/// A walk by key under way on a link that dialed us.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Fill {
    /// Our durable vector when the first page was cut: what the last page claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) claim: Option<VersionVector>,
    /// The last key walked; the next page starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) after: Option<DocKey>,
    /// Documents sent so far.
    #[serde(default)]
    pub(super) sent: u64,
    /// A walk for a `replicate` (`replicate.rs`): the collections it adds. It claims
    /// nothing. `None`: an initial sync of the link's collections, which claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) adds: Option<Vec<String>>,
    /// The `replicate` to answer with `replicated` once the walk is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) answer: Option<Vec<String>>,
}

#[cfg(feature = "serve")]
impl Engine {
    /// Whether a peer that dialed us with `hello` gets its initial sync by key: it holds part
    /// of the space, and its vector claims nothing but its own writes (a host seeds the
    /// space's default policy with its first batch, so a new one may have made one).
    pub(super) fn fills(filter: Option<&[String]>, known: &VersionVector, peer: ReplicaId) -> bool {
        filter.is_some() && claims_only(known, peer)
    }
}

/// Whether `vector` has no entry but `replica`'s own.
pub(super) fn claims_only(vector: &VersionVector, replica: ReplicaId) -> bool {
    vector.iter().all(|(r, _)| r == replica)
}

#[cfg(feature = "serve")]
impl Engine {
    /// Cuts the next page of the walk by key of `session` (the link is open, may take a
    /// push, and its walk is under way): a push with an empty watermark, or the last one,
    /// which claims `claim`. `None` when a read must be fetched first (a host that reads
    /// ahead); a failed read closes the session.
    pub(super) fn next_fill(&mut self, session: SessionId) -> Option<Transmit> {
        let link = self.sessions.get(&session)?.peer.as_ref()?;
        let fill = link.fill.clone()?;
        let filter = fill
            .adds
            .clone()
            .or_else(|| link.filter.clone())
            .unwrap_or_default();
        let claim = fill
            .claim
            .clone()
            .unwrap_or_else(|| self.replica.vector().clone());
        let page = self.replica.fill_page(
            &filter,
            fill.after.as_ref(),
            self.cfg.batch_docs.max(1),
            PUSH_BYTES,
        );
        let FillPage { docs, next } = match page {
            Ok(page) => page,
            Err(e) => return self.read_failed(session, e),
        };
        let link = self.sessions.get_mut(&session)?.peer.as_mut()?;
        let sent = fill.sent + docs.len() as u64;
        let claims = fill.adds.is_none();
        if next.is_none() {
            // The walk is over: `replicated` follows its last page (the outbox goes first
            // at the next poll), or goes alone when that page would be empty.
            if let Some(collections) = fill.answer.clone() {
                link.fill = None;
                let answer = Frame::Replicated { collections };
                if docs.is_empty() && !claims {
                    return Some(Transmit::Frame {
                        session,
                        frame: answer,
                    });
                }
                self.outbox.push_back(Transmit::Frame {
                    session,
                    frame: answer,
                });
            }
        }
        let link = self.sessions.get_mut(&session)?.peer.as_mut()?;
        let (watermark, remaining) = match next {
            Some(after) => {
                link.fill = Some(Fill {
                    claim: Some(claim.clone()),
                    after: Some(after),
                    sent,
                    ..fill
                });
                // An upper bound, from the vector alone (as a delta's): every write below
                // the claim not yet sent, at least one while the walk goes on.
                let writes: u64 = claim.iter().map(|(_, c)| c).sum();
                (VersionVector::new(), writes.saturating_sub(sent).max(1))
            }
            None if claims => {
                link.fill = None;
                link.known.join(&claim);
                (claim, 0)
            }
            None => {
                link.fill = None;
                (VersionVector::new(), 0)
            }
        };
        let seq = link.take_seq(watermark.clone());
        link.run_sent = sent;
        self.events.push_back(Event::SyncProgress {
            session,
            sent,
            remaining,
        });
        Some(Transmit::Frame {
            session,
            frame: Frame::Push(Push {
                seq,
                docs,
                watermark,
                remaining,
                // Set for the session by `Engine::poll_transmit`.
                expanded: false,
            }),
        })
    }
}
