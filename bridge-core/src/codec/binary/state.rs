//! The compact binary form of a document state as a store keeps it (feature `sql`): the
//! `docs.state` BLOB of [`crate::schema`], on the native host and in the Durable Object.
//!
//! It reuses the frame encoding's pieces (varints, strings, JSON values: see [`super`]) and
//! adds three things that make a stored state about half the size of its frame form:
//!
//! - every replica id is written once, in a table at the start, and referred to by its
//!   index (a state names one or two replicas, each 8 bytes, many times over);
//! - a field stamped by its sibling's own write (every field of a `put`, and the fields a
//!   `patch` set) is one byte, 0, instead of the stamp;
//! - a sibling's dot counter is written as the distance below the context's counter for its
//!   replica (0 for the newest write of a replica, the usual case).
//!
//! Layout:
//!
//! ```text
//! format        one byte, STATE_FORMAT (1)
//! replicas      varint n, then n replica ids (8 bytes little-endian each), strictly increasing
//! context       varint n, then n × (replica index, counter ≥ 1), indices strictly increasing
//! dots          varint n (the siblings), then n × (replica index, context counter − dot
//!               counter, wrapping): the siblings' dots, strictly increasing
//! siblings      n × (stamp, tier, body?), in the order of the dots
//!   stamp       wall (varint), counter (varint, u32), replica index
//!   body        varint count, then (name, field stamp, value?) with strictly increasing names
//!   field stamp 0 = the sibling's stamp; 1 followed by a stamp
//! ```
//!
//! The dots come before everything else that is large, so [`state_dots`] (what a host reads
//! of a state it is about to replace, to drop its live dots) stops after the head. The
//! decoder makes every check the frame decoder makes (bounds, minimal varints, UTF-8, value
//! depth, sorted keys, the state's invariants) and refuses trailing bytes; it has no size
//! limit (a store's own state may outgrow one frame).

use super::compact::{
    checked, collect_replicas, get_context_and_dots, get_siblings, get_table, put_body, Refs,
};
use super::{put_len, Reader, Wire};
use crate::codec::check_doc_state;
use crate::doc::DocState;
use crate::{Dot, Error, ReplicaId, Result, VersionVector};

/// The first byte of every stored state in this form; another value is refused.
pub const STATE_FORMAT: u8 = 1;

/// The replica table of a state: every replica its context, dots and stamps name, sorted.
fn replica_table(state: &DocState) -> Vec<ReplicaId> {
    let mut table = Vec::new();
    collect_replicas(state, &mut table);
    table.sort_unstable();
    table.dedup();
    table
}

/// Encodes `state` in the stored form (see the module documentation).
pub fn encode_state(state: &DocState) -> Vec<u8> {
    let table = replica_table(state);
    let mut w = Vec::with_capacity(128);
    w.push(STATE_FORMAT);
    put_len(&mut w, table.len());
    for r in &table {
        r.put(&mut w);
    }
    put_body(
        &mut w,
        state,
        &Refs {
            table: &table,
            base: 0,
        },
        false,
    );
    w
}

/// Decodes a state [`encode_state`] wrote. Any input that is not one is `malformed`, never
/// a panic.
pub fn decode_state(bytes: &[u8]) -> Result<DocState> {
    let mut r = Reader {
        bytes,
        pos: 0,
        depth: 0,
    };
    get_state(&mut r).map_err(renamed)
}

/// The dots of a stored state's siblings, read from its head only (the siblings' bodies are
/// not decoded): the live dots a host drops before it replaces the state.
pub fn state_dots(bytes: &[u8]) -> Result<Vec<Dot>> {
    let mut r = Reader {
        bytes,
        pos: 0,
        depth: 0,
    };
    let head = get_head(&mut r).map_err(renamed)?;
    Ok(head.dots)
}

/// A `docs.state` value as a store reads it back: the SQL type tells the form (see
/// [`crate::schema`]). Both hosts read every state through this, so old rows (JSON text,
/// schema 1 and 2) and new ones (a BLOB) mean the same thing everywhere.
#[derive(Clone, Copy, Debug)]
pub enum StateColumn<'a> {
    /// A BLOB: the form [`encode_state`] writes.
    Blob(&'a [u8]),
    /// TEXT: the `serde_json` form written before schema 3.
    Text(&'a [u8]),
}

impl StateColumn<'_> {
    /// The state; `malformed` when the value is neither form (or breaks a state invariant).
    pub fn decode(self) -> Result<DocState> {
        match self {
            StateColumn::Blob(b) => decode_state(b),
            StateColumn::Text(t) => {
                let state: DocState = serde_json::from_slice(t).map_err(|e| {
                    Error::Malformed(format!("stored state (JSON text) does not decode: {e}"))
                })?;
                check_doc_state(&state)
                    .map_err(|why| Error::Malformed(format!("stored state (JSON text): {why}")))?;
                Ok(state)
            }
        }
    }

    /// The dots of the state's siblings (for a BLOB, read from its head alone).
    pub fn dots(self) -> Result<Vec<Dot>> {
        match self {
            StateColumn::Blob(b) => state_dots(b),
            StateColumn::Text(_) => Ok(self.decode()?.siblings.iter().map(|s| s.dot).collect()),
        }
    }
}

/// The reader's messages name a frame; these bytes are a stored state.
fn renamed(e: Error) -> Error {
    match e {
        Error::Malformed(m) => Error::Malformed(m.replacen("binary frame", "stored state", 1)),
        other => other,
    }
}

/// What comes before the siblings' stamps and bodies.
struct Head {
    table: Vec<ReplicaId>,
    context: VersionVector,
    dots: Vec<Dot>,
}

fn get_head(r: &mut Reader<'_>) -> Result<Head> {
    let format = r.byte("the state format byte")?;
    if format != STATE_FORMAT {
        r.pos = 0;
        return Err(r.malformed(format_args!(
            "unknown stored state format {format} (this build reads {STATE_FORMAT})"
        )));
    }
    let table = get_table(r)?;
    let (context, dots) = get_context_and_dots(r, &table)?;
    Ok(Head {
        table,
        context,
        dots,
    })
}

fn get_state(r: &mut Reader<'_>) -> Result<DocState> {
    let Head {
        table,
        context,
        dots,
    } = get_head(r)?;
    let refs = Refs {
        table: &table,
        base: 0,
    };
    let state = get_siblings(r, &refs, context, dots)?;
    if r.pos != r.bytes.len() {
        return Err(r.malformed(format_args!(
            "the state ends here but {} more bytes follow",
            r.bytes.len() - r.pos
        )));
    }
    checked(r, state)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn put_state(replica: u64, counter: u64, wall: u64) -> DocState {
        use serde_json::json;
        let fields = [
            ("title", json!("Item number 7")),
            ("done", json!(false)),
            ("tags", json!(["a", "b"])),
            ("n", json!(7)),
        ];
        super::super::compact::one_write(replica, counter, wall, &fields)
    }

    #[test]
    fn a_put_is_small_and_round_trips() {
        let s = put_state(0x1234_5678_9abc_def0, 123_456, 1_780_000_000_000);
        let bytes = encode_state(&s);
        assert_eq!(decode_state(&bytes), Ok(s.clone()));
        assert_eq!(state_dots(&bytes), Ok(vec![s.siblings[0].dot]));
        // The JSON of the same state is over four times as long.
        let json = serde_json::to_string(&s).map(|j| j.len()).unwrap_or(0);
        assert!(
            4 * bytes.len() < json && bytes.len() < 90,
            "{} bytes against {json} of JSON",
            bytes.len()
        );
    }

    #[test]
    fn bad_states_are_malformed() {
        let s = put_state(9, 3, 1000);
        let bytes = encode_state(&s);
        for cut in 0..bytes.len() {
            assert!(decode_state(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_state(&longer).is_err());
        let mut other = bytes.clone();
        other[0] = 2;
        let err = decode_state(&other).expect_err("unknown format");
        assert!(err.to_string().contains("stored state"), "{err}");
        // A dot above its context: index 0, distance wrapping below zero.
        let mut above = vec![STATE_FORMAT, 1];
        above.extend_from_slice(&9u64.to_le_bytes());
        above.extend_from_slice(&[1, 0, 3, 1, 0, 0x7f, 0, 0, 0, 0, 0]);
        assert!(decode_state(&above).is_err());
        assert!(decode_state(b"{\"siblings\":[]}").is_err());
    }

    #[test]
    fn both_column_forms_read_the_same() {
        let s = put_state(0xfeed, 42, 1_780_000_000_000);
        let bytes = encode_state(&s);
        let json = serde_json::to_vec(&s).unwrap_or_default();
        assert_eq!(StateColumn::Blob(&bytes).decode(), Ok(s.clone()));
        assert_eq!(StateColumn::Text(&json).decode(), Ok(s.clone()));
        let dots = vec![s.siblings[0].dot];
        assert_eq!(StateColumn::Blob(&bytes).dots(), Ok(dots.clone()));
        assert_eq!(StateColumn::Text(&json).dots(), Ok(dots));
        assert!(StateColumn::Text(&bytes).decode().is_err());
        assert!(StateColumn::Blob(&json).decode().is_err());
    }

    #[test]
    fn empty_state_round_trips() {
        let s = DocState::default();
        assert_eq!(decode_state(&encode_state(&s)), Ok(s));
    }
}
