//! Timers: the engine's deadlines ([`Engine::poll_timeout`]) and what happens when one is
//! reached ([`Engine::handle_timeout`]): handshakes that run out, `ping` on quiet links we
//! dialed, and peer sessions that fell silent. The host arms one timer and asks again after
//! every call into the engine.

use super::{Engine, Phase, Session, Transmit, SILENT_HEARTBEATS};
use crate::frame::Frame;
use crate::Error;

impl Engine {
    /// The earliest time at which [`Engine::handle_timeout`] has something to do: a handshake
    /// that runs out, a `ping` to send, a silent peer to close. The host arms one timer for it
    /// (and asks again after every call into the engine); `None` means no timer is needed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        let sessions = self
            .sessions
            .values()
            .filter_map(|s| self.session_deadline(s))
            .min();
        let deadline = match (sessions, self.expiry_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // A collection pass under way goes on at once, a step per round.
        #[cfg(feature = "serve")]
        if self.replica.collecting() {
            return Some(deadline.map_or(self.last_now, |d| d.min(self.last_now)));
        }
        deadline
    }

    /// When the next peer of the horizon's table that is not connected expires.
    #[cfg(feature = "serve")]
    fn expiry_deadline(&self) -> Option<u64> {
        let expiry = self.cfg.expiry_ms?;
        let connected = self.connected();
        self.replica
            .stability()
            .peers
            .iter()
            .filter(|p| connected.binary_search(&p.replica).is_err())
            .map(|p| p.seen_ms.saturating_add(expiry))
            .min()
    }

    #[cfg(not(feature = "serve"))]
    fn expiry_deadline(&self) -> Option<u64> {
        None
    }

    /// The peers that dialed us and are connected now, in id order (one pass over the
    /// sessions, then a search per table entry).
    #[cfg(feature = "serve")]
    fn connected(&self) -> Vec<crate::ReplicaId> {
        let mut ids: Vec<crate::ReplicaId> = self
            .sessions
            .values()
            .filter(|s| !s.dialed)
            .filter_map(|s| s.peer.as_ref().map(|p| p.replica))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Drops from the horizon's table every peer gone for longer than the expiry
    /// ([`crate::EngineConfig::expiry_ms`]); one whose last sight is not known (a table
    /// stored before it was kept) counts from now. Then the horizon may move.
    #[cfg(feature = "serve")]
    pub(super) fn expire(&mut self, now_ms: u64) {
        let Some(expiry) = self.cfg.expiry_ms else {
            return;
        };
        let unknown: Vec<crate::ReplicaId> = self
            .replica
            .stability()
            .peers
            .iter()
            .filter(|p| p.seen_ms == 0)
            .map(|p| p.replica)
            .collect();
        for r in unknown {
            self.replica.stability_mut().seen(r, now_ms);
        }
        let connected = self.connected();
        let gone: Vec<crate::ReplicaId> = self
            .replica
            .stability()
            .peers
            .iter()
            .filter(|p| {
                p.seen_ms.saturating_add(expiry) <= now_ms
                    && connected.binary_search(&p.replica).is_err()
            })
            .map(|p| p.replica)
            .collect();
        if gone.is_empty() {
            return;
        }
        self.replica
            .stability_mut()
            .peers
            .retain(|p| !gone.contains(&p.replica));
        self.horizon_round();
    }

    /// Time has reached `now_ms`: closes handshakes that ran out and peer sessions that fell
    /// silent (`error` `timeout` + close 1001), and sends `ping` on links we dialed that have
    /// been quiet for a heartbeat. Then drain [`Engine::poll_transmit`].
    pub fn handle_timeout(&mut self, now_ms: u64) {
        #[cfg(feature = "serve")]
        {
            self.last_now = self.last_now.max(now_ms);
            self.collect_due = true;
            self.expire(now_ms);
        }
        let hb = self.cfg.heartbeat_ms;
        let hello = self.cfg.hello_timeout_ms;
        let mut closes = Vec::new();
        let mut pings = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            if s.closing {
                continue;
            }
            if !matches!(s.phase, Phase::Open) {
                if now_ms >= s.since.saturating_add(hello) {
                    closes.push((
                        *id,
                        format!("the handshake did not finish within {hello} ms"),
                    ));
                    s.closing = true;
                }
                continue;
            }
            if hb == 0 || s.peer.is_none() {
                continue;
            }
            let silent = now_ms.saturating_sub(s.last_rx);
            if silent >= hb.saturating_mul(SILENT_HEARTBEATS) {
                closes.push((
                    *id,
                    format!("nothing heard on this link for {silent} ms; reconnect"),
                ));
                s.closing = true;
            } else if s.dialed && now_ms >= s.last_rx.max(s.last_ping).saturating_add(hb) {
                s.last_ping = now_ms;
                pings.push(*id);
            }
        }
        for id in pings {
            self.send(id, Frame::Ping { nonce: now_ms });
        }
        for (id, reason) in closes {
            let e = Error::Timeout(reason);
            self.send(id, Frame::error(None, &e));
            self.outbox.push_back(Transmit::Close {
                session: id,
                code: e.code(),
                reason: e.to_string(),
            });
        }
    }

    fn session_deadline(&self, s: &Session) -> Option<u64> {
        if s.closing {
            return None;
        }
        if !matches!(s.phase, Phase::Open) {
            return Some(s.since.saturating_add(self.cfg.hello_timeout_ms));
        }
        let hb = self.cfg.heartbeat_ms;
        if hb == 0 || s.peer.is_none() {
            return None;
        }
        let silent = s
            .last_rx
            .saturating_add(hb.saturating_mul(SILENT_HEARTBEATS));
        if s.dialed {
            Some(silent.min(s.last_rx.max(s.last_ping).saturating_add(hb)))
        } else {
            Some(silent)
        }
    }
}
