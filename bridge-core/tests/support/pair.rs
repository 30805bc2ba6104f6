//! Two engines joined by an in-memory link whose frames really go through a codec.
//!
//! Shared by `tests/wasm.rs` (run natively and compiled to wasm32) and
//! `examples/wasm_probe.rs` (the module whose imports `scripts/test.sh` checks), so both
//! exercise the same path a host takes: persist what is staged, encode each frame to bytes,
//! decode it on the other side, feed it in, until both ends are quiet.

use bridge_core::codec::{decode_binary, decode_json, encode_binary, encode_json};
use bridge_core::{Engine, EngineConfig, Frame, ReplicaId, SessionId, Tier, Transmit};

/// The link's session id on `a` (the side that connects): its engine's first session.
pub const A_SIDE: SessionId = 1;
/// The link's session id on `b` (the side that accepts): its engine's first session.
pub const B_SIDE: SessionId = 1;

/// How frames cross the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// The JSON text encoding every agent speaks.
    Json,
    /// The compact binary encoding peers use.
    Binary,
}

pub struct Pair {
    /// A local replica (a native host or a browser).
    pub a: Engine,
    /// A cloud replica (the relay).
    pub b: Engine,
    pub wire: Wire,
    /// Frames carried so far, both directions.
    pub frames: u64,
    /// Bytes carried so far, both directions.
    pub bytes: u64,
}

impl Pair {
    /// `a` (local, replica 1) connects to `b` (cloud, replica 2) in space `space`.
    pub fn connect(space: &str, wire: Wire) -> Pair {
        let mut a = Engine::new(EngineConfig::new(ReplicaId(1), Tier::Local, space));
        let mut b = Engine::new(EngineConfig::new(ReplicaId(2), Tier::Cloud, space));
        let sides = (a.connect(0, None, "probe-a"), b.accept(0));
        assert_eq!(
            sides,
            (A_SIDE, B_SIDE),
            "the engines number sessions from 1"
        );
        Pair {
            a,
            b,
            wire,
            frames: 0,
            bytes: 0,
        }
    }

    fn carry(&mut self, frame: &Frame) -> Result<Frame, String> {
        let bytes = match self.wire {
            Wire::Json => encode_json(frame).into_bytes(),
            Wire::Binary => encode_binary(frame),
        };
        self.frames += 1;
        self.bytes += bytes.len() as u64;
        match self.wire {
            Wire::Json => decode_json(&bytes),
            Wire::Binary => decode_binary(&bytes),
        }
        .map_err(|e| format!("{} frame did not survive the codec: {e}", frame.type_name()))
    }

    /// Persists, carries frames both ways and repeats until nothing moves.
    /// Fails if either side closes the link or the pair is still busy after `max_rounds`.
    pub fn settle(&mut self, now_ms: u64, max_rounds: usize) -> Result<(), String> {
        for _ in 0..max_rounds {
            for e in [&mut self.a, &mut self.b] {
                while let Some(batch) = e.poll_persist() {
                    // A real host writes `batch` to its store before saying so.
                    e.persisted(batch.id)
                        .map_err(|err| format!("persisted({}): {err}", batch.id))?;
                }
            }
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                let frame = Self::frame_of(t)?;
                let frame = self.carry(&frame)?;
                self.b.handle_frame(now_ms, B_SIDE, frame);
                moved = true;
            }
            while let Some(t) = self.b.poll_transmit() {
                let frame = Self::frame_of(t)?;
                let frame = self.carry(&frame)?;
                self.a.handle_frame(now_ms, A_SIDE, frame);
                moved = true;
            }
            if !moved && !self.a.has_staged() && !self.b.has_staged() {
                return Ok(());
            }
        }
        Err(format!("still busy after {max_rounds} rounds"))
    }

    fn frame_of(t: Transmit) -> Result<Frame, String> {
        match t {
            Transmit::Frame { frame, .. } => Ok(frame),
            Transmit::Close { code, reason, .. } => Err(format!("link closed: {code:?}: {reason}")),
        }
    }
}
