//! `GET /v1/status`: the hub builds the status document (`bridge_core::status`) from its
//! engines, links and store; with a secret, a token sees only the spaces it opens.

use super::Hub;
use crate::clock::now_ms;
use bridge_core::api::{self, ApiError};
use bridge_core::auth::Rights;
use bridge_core::status::{
    HostDetails, HostStatus, LinkState, PeerSession, PullProgress, PushProgress, SpaceStatus,
    Stored, UpstreamLink,
};
use bridge_core::ErrorCode;
use std::collections::BTreeSet;

impl Hub {
    /// Which spaces a status request may see: `None` for all (no secret: local mode), else
    /// those the token opens (a token is for one space), and an error without a valid one.
    pub(super) fn visible_spaces(
        &self,
        token: Option<&str>,
        now: u64,
        min: Rights,
    ) -> Result<Option<BTreeSet<String>>, ApiError> {
        let Some(secret) = self.cfg.secret.as_deref() else {
            return Ok(None);
        };
        let Some(token) = token else {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "this server requires a token here: send `Authorization: Bearer <token>`; the answer covers the spaces the token opens",
            ));
        };
        let open: BTreeSet<String> = self
            .spaces
            .keys()
            .filter(|name| {
                bridge_core::auth::verify(secret, token, name, now).is_ok_and(|g| g.rights >= min)
            })
            .cloned()
            .collect();
        if open.is_empty() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the token opens none of this server's spaces with the rights needed (it may be expired, read-only where writing is needed, or for a space that holds nothing yet)",
            ));
        }
        Ok(Some(open))
    }

    pub(super) fn status(&self, visible: Option<&BTreeSet<String>>) -> HostStatus {
        let now = now_ms();
        let spaces = self
            .spaces
            .iter()
            .filter(|(name, _)| visible.is_none_or(|v| v.contains(*name)))
            .map(|(name, s)| {
                let r = s.engine.replica();
                let peers = s
                    .conns
                    .keys()
                    .filter_map(|id| {
                        let p = s.engine.peer_status(*id)?;
                        Some(PeerSession {
                            session: *id,
                            upstream: s.conns.get(id).is_some_and(|c| c.upstream),
                            replica: p.replica,
                            tier: p.tier,
                            pending: p.pending,
                            lag: p.lag,
                            acked: api::format_cursor(&p.acked),
                            open: p.open,
                        })
                    })
                    .collect();
                let upstream = self.links.get(name).map(|l| {
                    let peer = l.session.and_then(|id| s.engine.peer_status(id));
                    let up = peer.as_ref().is_some_and(|p| p.open);
                    let down = l.acked_when_down.as_ref().filter(|_| peer.is_none());
                    let (state, reason) = match (&l.not_linked, up) {
                        (Some(why), _) => (LinkState::NotLinked, Some(why)),
                        (None, true) => (LinkState::Connected, None),
                        (None, false) => (LinkState::Connecting, l.last_error.as_ref()),
                    };
                    UpstreamLink {
                        state,
                        reason: reason.cloned(),
                        up,
                        up_since_ms: l.up_since_ms,
                        last_sync_ms: l.last_sync_ms,
                        last_sync_age_ms: (l.last_sync_ms > 0)
                            .then(|| now.saturating_sub(l.last_sync_ms)),
                        pending: peer.as_ref().map(|p| p.pending).or_else(|| {
                            down.map(|a| {
                                r.latest_vector().get(r.id()).saturating_sub(a.get(r.id()))
                            })
                        }),
                        lag: peer
                            .as_ref()
                            .map(|p| p.lag)
                            .or_else(|| down.map(|a| r.vector().ahead_of(a))),
                        acked: peer
                            .as_ref()
                            .map(|p| api::format_cursor(&p.acked))
                            .or_else(|| down.map(api::format_cursor)),
                        push: PushProgress {
                            sent: l.push_sent,
                            remaining: l.push_remaining,
                        },
                        pull: PullProgress {
                            received: l.pull_received,
                            remaining: l.pull_remaining,
                            last_ms: l.pull_last_ms,
                        },
                        event_pushes: l.event_pushes,
                        collections: s.engine.config().collections.clone(),
                        replicating: s.engine.replicating().map(<[String]>::to_vec),
                        forgetting: s.engine.forgetting().to_vec(),
                    }
                });
                let cache = r.cache_bytes();
                SpaceStatus {
                    space: name.clone(),
                    replica: r.id(),
                    tier: r.tier(),
                    docs: logged(r.doc_count(), "count documents"),
                    cursor: api::format_cursor(r.vector()),
                    sessions: s.engine.session_count() as u64,
                    open_conflicts: logged(r.conflicts(None), "list conflicts").len() as u64,
                    cache_bytes: cache.0 as u64,
                    cache_budget: cache.1 as u64,
                    horizon: api::format_cursor(&r.stability().horizon),
                    tracked_peers: r.stability().peers.len() as u64,
                    collects: r.collects(),
                    collected: r.collected_total(),
                    default_policy: r.space_default_policy(),
                    conflict_strategy: r.local_default_policy(),
                    default_policy_mismatch: r.space_default_policy() != r.local_default_policy(),
                    presence: s.engine.presence(),
                    peers,
                    upstream,
                }
            })
            .collect();
        // A token sees its spaces, not the database's totals or where it lives.
        let host = visible.is_none().then(|| {
            let (spaces, docs, messages) = self.store.counts().unwrap_or_default();
            HostDetails {
                stored: Stored {
                    spaces,
                    docs,
                    messages,
                },
                db: self.cfg.db_path.clone(),
                pid: std::process::id(),
                last_peer_ack_ms: self.metrics.last_peer_ack_ms,
            }
        });
        HostStatus {
            uptime_s: self.started.elapsed().as_secs(),
            host,
            tier: self.cfg.tier,
            now_ms: now,
            spaces,
        }
    }
}

/// A figure read from the store for the status, or its empty value when the read failed
/// (logged: the status still answers, the failure shows in the log).
pub(super) fn logged<T: Default>(read: bridge_core::Result<T>, what: &str) -> T {
    read.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "status: could not {what}");
        T::default()
    })
}
