//! The host loop, written once: after every round of input, **persist → `persisted` →
//! events and transmits**, and then the host arms its one timer ([`Engine::poll_timeout`]).
//!
//! Every host runs this order; only the IO differs. A host whose store writes synchronously
//! (SQLite on the native host, the Durable Object's SQL, the simulation's disk) calls
//! [`Engine::flush`] with its store and its output handler. A host whose store is
//! asynchronous (IndexedDB in the browser), or one that commits the batches of several
//! engines together (the native hub, one transaction for every space), uses the three steps
//! one by one:
//!
//! 1. [`Engine::cut_batches`]: every batch staged since the last round, in order. The host
//!    writes them (several may share one commit; all or nothing).
//! 2. [`Engine::batches_persisted`] once the store holds them durably. This releases the acks
//!    they gate and the changes and messages they hold. If the write failed, the host does
//!    not call it: nothing those batches hold is ever acknowledged, announced or pushed. (It
//!    may keep the batches and write them again, before anything newer, or stop.)
//! 3. [`Engine::drain`]: events, then transmits, handed to the host's output handler until the
//!    engine is quiet. The handler gets the engine back, so that it can react at once (turn
//!    off automatic pushing when a manual link opens, close a session whose connection is
//!    gone); what that causes is drained in the same call.
//!
//! Transmits come after `persisted` because pushes are cut from the durable layer when
//! polled: they then carry the batch just stored.

use super::{Engine, Event, Transmit};
use crate::replica::PersistBatch;
use crate::Result;

/// What [`Engine::drain`] hands the host: something to show or act on, or something to put
/// on the wire.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Something to show or act on ([`Engine::poll_event`]).
    Event(Event),
    /// Something to put on the wire, or a connection to close ([`Engine::poll_transmit`]).
    Transmit(Transmit),
}

impl Engine {
    /// One round of the host loop with a synchronous store: cuts the staged batches, hands
    /// them to `persist` (one call, one commit), reports them persisted, then drains events
    /// and transmits into `output`.
    ///
    /// When `persist` fails, its error is returned at once: nothing is reported persisted and
    /// nothing is drained, so no acknowledgement leaves (the host then stops, or drops the
    /// engine and restores it from storage, as after a crash).
    pub fn flush<E>(
        &mut self,
        persist: impl FnOnce(&[PersistBatch]) -> std::result::Result<(), E>,
        output: impl FnMut(&mut Engine, Output),
    ) -> std::result::Result<(), E> {
        let batches = self.cut_batches();
        if !batches.is_empty() {
            persist(&batches)?;
            // Our own batches, just cut and reported in order: `persisted` cannot refuse them.
            let _ = self.batches_persisted(&batches);
        }
        self.drain(output);
        Ok(())
    }

    /// Step 1 of a round: every batch staged since the last one ([`Engine::poll_persist`]
    /// until `None`), in the order they must be written.
    #[must_use]
    pub fn cut_batches(&mut self) -> Vec<PersistBatch> {
        let mut batches = Vec::new();
        while let Some(b) = self.poll_persist() {
            batches.push(b);
        }
        batches
    }

    /// Step 2: the store holds `batches` durably ([`Engine::persisted`] for each, in order).
    /// Returns the first refusal (a batch reported twice or out of order) after reporting the
    /// others.
    pub fn batches_persisted(&mut self, batches: &[PersistBatch]) -> Result<()> {
        let mut first = Ok(());
        for b in batches {
            if let Err(e) = self.persisted(b.id) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Step 3: hands every event, then every transmit, to `output` until the engine has
    /// neither (what `output` causes through the engine it is given is drained too). Events
    /// come first so that a host reacting to one (say, turning automatic pushing off when a
    /// manual link opens) does so before the pushes are cut.
    pub fn drain(&mut self, mut output: impl FnMut(&mut Engine, Output)) {
        loop {
            if let Some(ev) = self.poll_event() {
                output(self, Output::Event(ev));
            } else if let Some(t) = self.poll_transmit() {
                output(self, Output::Transmit(t));
            } else if self.events.is_empty() {
                // (Polling transmits may queue an event even when it sends nothing: the
                // presence change of a session that just ended.)
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, Hello, SessionKind};
    use crate::{DocKey, EngineConfig, ReplicaId, Tier, WriteOp};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn engine() -> Engine {
        Engine::new(EngineConfig::new(ReplicaId(1), Tier::Cloud, "s"))
    }

    fn agent(e: &mut Engine) -> u64 {
        let s = e.accept(0);
        e.handle_frame(
            0,
            s,
            Frame::Hello(Hello {
                space: "s".into(),
                kind: SessionKind::Agent,
                name: Some("a".into()),
                ..Hello::default()
            }),
        );
        e.drain(|_, _| {});
        s
    }

    fn put(e: &mut Engine, s: u64, req: u64) {
        let f = crate::codec::decode_json(
            json!({"type":"put","req":req,"collection":"c","id":"d","value":{"v":req}})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        e.handle_frame(1, s, f);
    }

    fn is_ack(o: &Output) -> bool {
        matches!(
            o,
            Output::Transmit(Transmit::Frame {
                frame: Frame::Ack(_),
                ..
            }) | Output::Event(Event::Acked { .. })
        )
    }

    #[test]
    fn nothing_is_acknowledged_before_the_store_says_persisted() {
        let mut e = engine();
        let s = agent(&mut e);
        put(&mut e, s, 7);
        crate::testing::write(
            &mut e,
            1,
            DocKey::new("c", "x"),
            WriteOp::Put(json!({"a":1}).as_object().cloned().unwrap()),
        )
        .unwrap();
        let log = std::cell::RefCell::new(Vec::new());
        let mut stored = 0;
        e.flush(
            |batches| {
                stored += batches.len();
                log.borrow_mut().push("persist");
                Ok::<_, ()>(())
            },
            |_, o| {
                if is_ack(&o) {
                    log.borrow_mut().push("ack");
                }
            },
        )
        .unwrap();
        let log = log.into_inner();
        assert_eq!(stored, 1, "one round, one batch");
        assert_eq!(log, ["persist", "ack", "ack"]);
    }

    #[test]
    fn a_failed_persist_acknowledges_nothing() {
        let mut e = engine();
        let s = agent(&mut e);
        put(&mut e, s, 7);
        let mut outputs = Vec::new();
        let r = e.flush(|_| Err("disk full"), |_, o| outputs.push(o));
        assert_eq!(r, Err("disk full"));
        assert!(outputs.is_empty(), "{outputs:?}");
        // Later rounds still acknowledge nothing: the write's batch was never persisted.
        put(&mut e, s, 8);
        let r = e.flush(|_| Err("disk full"), |_, o| outputs.push(o));
        assert!(r.is_err());
        e.drain(|_, o| outputs.push(o));
        assert!(!outputs.iter().any(is_ack), "{outputs:?}");
    }

    #[test]
    fn split_form_keeps_the_order_for_an_asynchronous_store() {
        let mut e = engine();
        let s = agent(&mut e);
        put(&mut e, s, 7);
        let batches = e.cut_batches();
        assert_eq!(batches.len(), 1);
        // While the store writes, more input arrives and the host drains: no ack yet.
        put(&mut e, s, 8);
        let mut out = Vec::new();
        e.drain(|_, o| out.push(o));
        assert!(!out.iter().any(is_ack), "{out:?}");
        let second = e.cut_batches();
        e.batches_persisted(&batches).unwrap();
        e.drain(|_, o| out.push(o));
        let acks: Vec<_> = out.iter().filter(|o| is_ack(o)).collect();
        assert_eq!(
            acks.len(),
            1,
            "only the first write is acknowledged: {out:?}"
        );
        e.batches_persisted(&second).unwrap();
        e.drain(|_, o| out.push(o));
        assert_eq!(out.iter().filter(|o| is_ack(o)).count(), 2);
        // A batch reported twice is refused.
        assert!(e.batches_persisted(&second).is_err());
    }

    #[test]
    fn drain_hands_events_before_transmits_and_drains_what_output_causes() {
        let mut e = engine();
        let s = e.accept(0);
        e.handle_frame(
            0,
            s,
            Frame::Hello(Hello {
                space: "s".into(),
                kind: SessionKind::Agent,
                ..Hello::default()
            }),
        );
        let mut kinds = Vec::new();
        let mut closed = false;
        e.drain(|e, o| {
            kinds.push(match &o {
                Output::Event(_) => "event",
                Output::Transmit(_) => "transmit",
            });
            if !closed {
                if let Output::Transmit(Transmit::Frame { session, .. }) = o {
                    closed = true;
                    e.close(session);
                }
            }
        });
        assert_eq!(kinds.first(), Some(&"event"));
        // The close made presence change; that was drained in the same call.
        assert_eq!(kinds.last(), Some(&"event"), "{kinds:?}");
        let (ev, t) = (e.poll_event(), e.poll_transmit());
        assert!(ev.is_none() && t.is_none(), "{ev:?} {t:?} {kinds:?}");
    }
}
