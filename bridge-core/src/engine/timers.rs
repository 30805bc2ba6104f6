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
        self.sessions
            .values()
            .filter_map(|s| self.session_deadline(s))
            .min()
    }

    /// Time has reached `now_ms`: closes handshakes that ran out and peer sessions that fell
    /// silent (`error` `timeout` + close 1001), and sends `ping` on links we dialed that have
    /// been quiet for a heartbeat. Then drain [`Engine::poll_transmit`].
    pub fn handle_timeout(&mut self, now_ms: u64) {
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
