//! The compact binary encoding of frames, spoken between peers.
//!
//! One frame is one WebSocket binary message:
//!
//! ```text
//! byte 0      protocol version (PROTOCOL_VERSION, currently 1)
//! byte 1      frame type tag (table below)
//! bytes 2..   the frame's fields, in the order the table lists them, with nothing after
//! ```
//!
//! | tag | type | fields |
//! | --- | --- | --- |
//! | 1 | `hello` | space, kind, name?, token?, replica?, tier?, vector?, messages?, horizon?, collections?, unclaimed?, compact?ᵗ |
//! | 2 | `welcome` | space, replica, tier, vector, messages, session, rights?, resync?, compact?ᵗ |
//! | 3 | `push`, expanded (to and from peers without `compact`) | seq, docs: \[collection, id, state\], watermark, remaining |
//! | 4 | `ack` | req?, seq?, dot? |
//! | 5 | `pull` | vector |
//! | 6 | `put` | req?, collection, id, value |
//! | 7 | `patch` | req?, collection, id, value |
//! | 8 | `delete` | req?, collection, id |
//! | 9 | `get` | req?, collection, id |
//! | 10 | `doc` | req?, doc |
//! | 11 | `list` | req?, collection, after?, limit? |
//! | 12 | `docs` | req?, docs: \[doc\], next? |
//! | 13 | `subscribe` | req?, channel?, collection?, from? |
//! | 14 | `unsubscribe` | req?, channel?, collection? |
//! | 15 | `send` | req?, channel, payload |
//! | 16 | `broadcast` | message, offset? |
//! | 17 | `change` | doc |
//! | 18 | `presence` | entries: \[node, session, name, kind, tier, since\] |
//! | 19 | `conflicts` | req?, collection? |
//! | 20 | `conflict_list` | req?, conflicts: \[conflict\] |
//! | 21 | `conflict` | conflict |
//! | 22 | `resolve` | req?, collection, id, value?ⁿ |
//! | 23 | `set_policy` | req?, collection, policy |
//! | 24 | `error` | req?, code, message |
//! | 25 | `ping` | nonce |
//! | 26 | `pong` | nonce |
//! | 27 | `report` | floor, ceiling |
//! | 28 | `horizon` | horizon |
//! | 29 | `resync` | horizon |
//! | 30 | `inventory` | seq, docs \[collection, id, dots \[dot\]\], last (bool) |
//! | 31 | `replicate` | collections: \[string\] |
//! | 32 | `replicated` | collections: \[string\] |
//! | 33 | `push`, compact (between peers that said `compact`) | seq, watermark, remaining, replicas \[replica id\], collections \[string\], base wall (u64), docs: \[collection index, id, compact state\] |
//!
//! Field types:
//!
//! - integers (`u64`, `u32`): unsigned LEB128 varint, at most 10 bytes, minimal (no
//!   trailing `0x00` continuation groups); a `u32` field above `u32::MAX` is malformed;
//! - `bool`: one byte, 0 or 1;
//! - `x?` (optional): one byte, 0 = absent, 1 = present followed by `x`; `value?ⁿ` is an
//!   optional value where `null` means absent (as in JSON): a present `null` is malformed;
//!   `x?ᵗ` is an optional field last in its frame that the frame gained later: absent, it is
//!   not written at all (the frame is what older builds write); present, it is `1` and `x`;
//!   a frame that ends before it, or a `0` marker there, reads as absent;
//! - string: varint byte length, then that many bytes of UTF-8;
//! - `[x]` (list): varint count, then the items;
//! - replica id: 8 bytes, little-endian (ids are random, so a varint would be longer);
//! - tier: one byte, 0 = local, 1 = cloud; session kind: 0 = agent, 1 = peer;
//! - rights: one byte, 0 = read, 1 = write, 2 = admin;
//! - policy: one byte, 0 = lww, 1 = cloud_wins, 2 = local_wins, 3 = merge, 4 = manual;
//! - error code: one byte, in the order malformed, too_large, unsupported_version,
//!   unknown_type, clock_skew, bad_policy, bad_request, hello_required, wrong_space,
//!   unauthorized, forbidden, not_found, protocol, internal, timeout, relay_forbidden
//!   (0 to 15);
//! - dot: replica, counter; stamp: wall, counter (u32), replica;
//! - version vector: varint count, then (replica, counter) pairs with strictly increasing
//!   replica ids and counters of at least 1;
//! - doc state: siblings \[dot, stamp, tier, body?\] with strictly increasing dots, then the
//!   context (a version vector) which must contain every sibling's dot; a body is a varint
//!   count of (name, field) pairs with strictly increasing names, a field is (stamp, value?);
//! - compact state (in a compact `push`): replicas are varint indices into the frame's
//!   `replicas` (ids strictly increasing as 64-bit unsigned numbers, not as their bytes),
//!   collections varint indices into its `collections`
//!   (the encoder writes each name once, in order of first use), and every wall is written as
//!   its distance above the frame's base wall (the encoder's base is the least wall of the
//!   frame). A state starts with a shape byte:
//!   - bit 0 set: a *simple* state, one sibling whose dot is the context's only entry. Bit 1:
//!     tier cloud (else local); bit 2: the sibling has a body; bit 3: the stamp's replica is
//!     the dot's; no other bit may be set. Then: dot replica index, dot counter (≥ 1), stamp
//!     wall, stamp counter (u32), the stamp's replica index unless bit 3, and the body if bit 2;
//!   - 0: the general form: context \[replica index, counter ≥ 1\] with strictly increasing
//!     indices; dots \[replica index, context counter − dot counter\]; then per dot: stamp
//!     (wall, counter, replica index), tier, body?;
//!   - a body is a varint count of (name, field stamp, value?) with strictly increasing names,
//!     where the field stamp is 0 for the sibling's own stamp or 1 followed by a stamp.
//!
//!   The decoded state must meet every rule of the expanded form (the context contains every
//!   sibling's dot; dots strictly increase);
//! - doc view: collection, id, value?ⁿ, stamp?, conflict (bool);
//! - message: id (origin replica, seq), channel, payload (value), stamp;
//! - conflict: collection, id, shown (dot), sides \[dot, tier, stamp, value?ⁿ\], fields
//!   \[string\].
//!
//! A JSON value is a one-byte tag and its payload:
//!
//! | tag | value | payload |
//! | --- | --- | --- |
//! | 0 | `null` | none |
//! | 1 | `false` | none |
//! | 2 | `true` | none |
//! | 3 | integer ≥ 0 | varint |
//! | 4 | integer < 0 | varint of `-1 - n` (so −1 is 0) |
//! | 5 | other number | 8 bytes, IEEE 754 double, little-endian; NaN and ±∞ are malformed |
//! | 6 | string | string |
//! | 7 | array | varint count, then the values |
//! | 8 | object | varint count, then (key string, value) pairs, keys distinct |
//!
//! Arrays and objects nest at most [`MAX_VALUE_DEPTH`] levels.
//!
//! The decoder checks the size limit first and the version before the tag, never reads past
//! the end, never allocates more than the input can fill, and refuses trailing bytes. Any
//! violation is an [`Error`]: `too_large`, `unsupported_version`, `unknown_type` or
//! `malformed` (with the byte offset where decoding stopped).

use super::{check_doc_state, MAX_VALUE_DEPTH};
use crate::auth::Rights;
use crate::doc::{DocState, Sibling};
use crate::frame::{
    Ack, Conflict, ConflictSide, DocEntry, DocView, Frame, Hello, InventoryEntry, Push,
    SessionKind, Welcome, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use crate::message::{Message, MessageId, PresenceEntry};
use crate::policy::{Field, Fields};
use crate::{Dot, Error, ErrorCode, Policy, ReplicaId, Result, Stamp, Tier, VersionVector};
use serde_json::{Map, Number, Value};

/// The version byte that starts every binary frame.
const VERSION_BYTE: u8 = {
    assert!(PROTOCOL_VERSION <= u8::MAX as u32);
    PROTOCOL_VERSION as u8
};

/// A claimed item count reserves at most this many slots up front; the rest grow as items
/// actually arrive, so a lying count cannot make the decoder allocate much.
const MAX_PREALLOC: usize = 1024;

/// The tag of `push` in its first form: every state whole, replica ids written out.
/// Written to peers that do not read the compact form ([`Push::expanded`]); read from older
/// peers and from browser stores' records.
const PUSH_EXPANDED: u8 = 3;

/// The tag of `push` in its compact form (the frame's replica and collection tables, walls
/// against a base, shaped states), the one this build writes.
const PUSH_COMPACT: u8 = 33;

/// Encodes a frame in the binary form.
pub fn encode_binary(frame: &Frame) -> Vec<u8> {
    let mut w = Vec::with_capacity(64);
    w.push(VERSION_BYTE);
    put_frame(frame, &mut w);
    w
}

/// Decodes a binary frame.
pub fn decode_binary(bytes: &[u8]) -> Result<Frame> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(Error::TooLarge {
            size: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    decode_binary_record(bytes)
}

/// The optional fields `hello` gained at its end since browser stores first kept one as a
/// record (`horizon`, `collections`, `unclaimed`).
const HELLO_ADDED_FIELDS: usize = 3;

/// Decodes a `hello` a store wrote as a record (the browser keeps its messages-seen vector
/// so): one written by an older build lacks the markers of the fields added since at its
/// end, and reads with them absent.
pub fn decode_hello_record(bytes: &[u8]) -> Result<Frame> {
    let mut padded = bytes.to_vec();
    let mut first = None;
    for _ in 0..=HELLO_ADDED_FIELDS {
        match decode_binary_record(&padded) {
            Ok(f @ Frame::Hello(_)) => return Ok(f),
            Ok(f) => {
                return Err(Error::Malformed(format!(
                    "a `{}` record where a `hello` was kept",
                    f.type_name()
                )))
            }
            Err(e) => {
                first.get_or_insert(e);
                padded.push(0);
            }
        }
    }
    Err(first.unwrap_or_else(|| Error::Malformed("no record".into())))
}

/// Decodes a frame a store wrote itself (a browser record): every check of
/// [`decode_binary`] except the size limit of the wire, so a document whose concurrent
/// versions together outgrow one frame still reads back.
pub fn decode_binary_record(bytes: &[u8]) -> Result<Frame> {
    let (&version, rest) = bytes
        .split_first()
        .ok_or_else(|| Error::Malformed("empty binary frame".into()))?;
    if version != VERSION_BYTE {
        return Err(Error::UnsupportedVersion {
            got: u32::from(version),
            supported: PROTOCOL_VERSION,
        });
    }
    let (&tag, _) = rest.split_first().ok_or_else(|| {
        Error::Malformed("binary frame ends after the version byte; the type tag is missing".into())
    })?;
    let mut r = Reader {
        bytes,
        pos: 2,
        depth: 0,
    };
    let frame = get_frame(tag, &mut r)?;
    if r.pos != bytes.len() {
        return Err(Error::Malformed(format!(
            "binary `{}` frame ends at byte {} but {} more bytes follow",
            frame.type_name(),
            r.pos,
            bytes.len() - r.pos
        )));
    }
    Ok(frame)
}

/// The `req` of a binary request frame (`put` ... `set_policy`, whose first field is `req?`),
/// read without decoding the rest, so that an error answering a frame that does not decode
/// can still name its request. `None` when the bytes do not get that far.
pub fn request_id(bytes: &[u8]) -> Option<u64> {
    match bytes {
        [VERSION_BYTE, 6..=9 | 11 | 13..=15 | 19 | 22 | 23, 1, ..] => {}
        _ => return None,
    }
    let mut r = Reader {
        bytes,
        pos: 3,
        depth: 0,
    };
    r.varint().ok()
}

/// A cursor over untrusted input. Every read checks the bounds first.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Current nesting of JSON arrays and objects.
    depth: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self, what: impl std::fmt::Display) -> Error {
        Error::Malformed(format!("binary frame, byte {}: {what}", self.pos))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.malformed(format_args!(
                "truncated: {what} needs {n} bytes, {} left",
                self.remaining()
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn byte(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn varint(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.byte("a varint")?;
            if i == 9 && b > 1 {
                self.pos = start;
                return Err(self.malformed("overlong varint: does not fit in 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    self.pos = start;
                    return Err(self.malformed("overlong varint: not minimally encoded"));
                }
                return Ok(value);
            }
        }
        // Not reached: the tenth byte either ends the varint or is refused above.
        self.pos = start;
        Err(self.malformed("overlong varint: more than 10 bytes"))
    }

    /// A count or length that is only believed as far as the remaining input can back it:
    /// every item takes at least `min_item_bytes`.
    fn count(&mut self, what: &str, min_item_bytes: usize) -> Result<usize> {
        let n = self.varint()?;
        let most = self.remaining() / min_item_bytes.max(1);
        match usize::try_from(n) {
            Ok(n) if n <= most => Ok(n),
            _ => Err(self.malformed(format_args!(
                "truncated: {what} claims {n} items but only {} bytes are left",
                self.remaining()
            ))),
        }
    }

    fn list<T: Wire>(&mut self, what: &str) -> Result<Vec<T>> {
        let n = self.count(what, 1)?;
        let mut out = Vec::with_capacity(n.min(MAX_PREALLOC));
        for _ in 0..n {
            out.push(T::get(self)?);
        }
        Ok(out)
    }

    /// A map as a count and (key, value) pairs whose keys must strictly increase, so each
    /// map has exactly one encoding.
    fn sorted_entries<K: Wire + Ord, V: Wire>(
        &mut self,
        keys: &str,
        min_item_bytes: usize,
    ) -> Result<Vec<(K, V)>> {
        let n = self.count(keys, min_item_bytes)?;
        let mut out: Vec<(K, V)> = Vec::with_capacity(n.min(MAX_PREALLOC));
        for _ in 0..n {
            let at = self.pos;
            let key = K::get(self)?;
            let value = V::get(self)?;
            if out.last().is_some_and(|(prev, _)| *prev >= key) {
                self.pos = at;
                return Err(self.malformed(format_args!("{keys} must strictly increase")));
            }
            out.push((key, value));
        }
        Ok(out)
    }

    fn str(&mut self) -> Result<&'a str> {
        let n = self.count("a string", 1)?;
        let at = self.pos;
        let raw = self.take(n, "a string")?;
        std::str::from_utf8(raw).map_err(|e| {
            Error::Malformed(format!(
                "binary frame, byte {at}: a string is not valid UTF-8 ({e})"
            ))
        })
    }
}

fn put_varint(w: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        w.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    w.push(v as u8);
}

fn put_len(w: &mut Vec<u8>, n: usize) {
    put_varint(w, n as u64);
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    put_len(w, s.len());
    w.extend_from_slice(s.as_bytes());
}

/// A type with a binary form: `put` writes it, `get` reads it back from untrusted input.
trait Wire: Sized {
    fn put(&self, w: &mut Vec<u8>);
    fn get(r: &mut Reader<'_>) -> Result<Self>;
}

impl Wire for u64 {
    fn put(&self, w: &mut Vec<u8>) {
        put_varint(w, *self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.varint()
    }
}

impl Wire for u32 {
    fn put(&self, w: &mut Vec<u8>) {
        put_varint(w, u64::from(*self));
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        let start = r.pos;
        let v = r.varint()?;
        u32::try_from(v).map_err(|_| {
            r.pos = start;
            r.malformed(format_args!("{v} does not fit a 32-bit field"))
        })
    }
}

impl Wire for bool {
    fn put(&self, w: &mut Vec<u8>) {
        w.push(u8::from(*self));
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        match r.byte("a bool")? {
            0 => Ok(false),
            1 => Ok(true),
            b => {
                r.pos -= 1;
                Err(r.malformed(format_args!("a bool must be 0 or 1, got {b}")))
            }
        }
    }
}

impl Wire for String {
    fn put(&self, w: &mut Vec<u8>) {
        put_str(w, self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.str().map(str::to_owned)
    }
}

impl<T: Wire> Wire for Option<T> {
    fn put(&self, w: &mut Vec<u8>) {
        match self {
            None => w.push(0),
            Some(v) => {
                w.push(1);
                v.put(w);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        match r.byte("an option marker")? {
            0 => Ok(None),
            1 => T::get(r).map(Some),
            b => {
                r.pos -= 1;
                Err(r.malformed(format_args!("an option marker must be 0 or 1, got {b}")))
            }
        }
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn put(&self, w: &mut Vec<u8>) {
        put_len(w, self.len());
        for item in self {
            item.put(w);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.list("a list")
    }
}

impl Wire for ReplicaId {
    fn put(&self, w: &mut Vec<u8>) {
        w.extend_from_slice(&self.0.to_le_bytes());
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        let mut b = [0u8; 8];
        b.copy_from_slice(r.take(8, "a replica id")?);
        Ok(ReplicaId(u64::from_le_bytes(b)))
    }
}

impl Wire for VersionVector {
    fn put(&self, w: &mut Vec<u8>) {
        // Zero entries mean "nothing seen", the same as no entry; they are never sent.
        put_len(w, self.iter().filter(|(_, c)| *c > 0).count());
        for (replica, counter) in self.iter().filter(|(_, c)| *c > 0) {
            replica.put(w);
            counter.put(w);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        let entries = r.sorted_entries::<ReplicaId, u64>("version vector replica ids", 9)?;
        if entries.iter().any(|(_, c)| *c == 0) {
            return Err(r.malformed("version vector counters start at 1"));
        }
        Ok(entries.into_iter().collect())
    }
}

impl Wire for Fields {
    fn put(&self, w: &mut Vec<u8>) {
        put_len(w, self.len());
        for (name, field) in self {
            put_str(w, name);
            field.put(w);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        let entries = r.sorted_entries::<String, Field>("document field names", 2)?;
        // Inserted one by one (they are strictly increasing already): `collect` would sort
        // them again, with a stable sort of (name, field) pairs compiled for it alone.
        let mut fields = Fields::new();
        for (name, field) in entries {
            fields.insert(name, field);
        }
        Ok(fields)
    }
}

impl Wire for DocState {
    fn put(&self, w: &mut Vec<u8>) {
        self.siblings.put(w);
        self.context.put(w);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        let at = r.pos;
        let state = DocState {
            siblings: r.list("a sibling list")?,
            context: <VersionVector as Wire>::get(r)?,
        };
        check_doc_state(&state).map_err(|why| {
            r.pos = at;
            r.malformed(why)
        })?;
        Ok(state)
    }
}

impl Wire for Value {
    fn put(&self, w: &mut Vec<u8>) {
        match self {
            Value::Null => w.push(0),
            Value::Bool(false) => w.push(1),
            Value::Bool(true) => w.push(2),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    w.push(3);
                    put_varint(w, u);
                } else if let Some(i) = n.as_i64() {
                    // Only negative here: non-negative integers took the branch above.
                    w.push(4);
                    put_varint(w, !(i as u64));
                } else {
                    w.push(5);
                    w.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_le_bytes());
                }
            }
            Value::String(s) => {
                w.push(6);
                put_str(w, s);
            }
            Value::Array(items) => {
                w.push(7);
                items.put(w);
            }
            Value::Object(m) => {
                w.push(8);
                put_len(w, m.len());
                for (k, v) in m {
                    put_str(w, k);
                    v.put(w);
                }
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self> {
        let at = r.pos;
        let tag = r.byte("a value tag")?;
        Ok(match tag {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::from(r.varint()?),
            4 => {
                let k = r.varint()?;
                match i64::try_from(k) {
                    // -1 - k, which cannot overflow for k <= i64::MAX.
                    Ok(k) => Value::from(!k),
                    Err(_) => {
                        r.pos = at;
                        return Err(r.malformed("negative integer below the 64-bit range"));
                    }
                }
            }
            5 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(r.take(8, "a float")?);
                let f = f64::from_le_bytes(b);
                match Number::from_f64(f) {
                    Some(n) => Value::Number(n),
                    None => {
                        r.pos = at;
                        return Err(r.malformed("a number must be finite (JSON has no NaN or ∞)"));
                    }
                }
            }
            6 => Value::String(String::get(r)?),
            7 | 8 => {
                if r.depth >= MAX_VALUE_DEPTH {
                    r.pos = at;
                    return Err(r.malformed(format_args!(
                        "value nested deeper than {MAX_VALUE_DEPTH} arrays/objects"
                    )));
                }
                r.depth += 1;
                let v = if tag == 7 {
                    Value::Array(r.list("an array")?)
                } else {
                    get_object(r)?
                };
                r.depth -= 1;
                v
            }
            other => {
                r.pos = at;
                return Err(r.malformed(format_args!("unknown value tag {other}")));
            }
        })
    }
}

fn get_object(r: &mut Reader<'_>) -> Result<Value> {
    let n = r.count("an object", 2)?;
    let mut m = Map::new();
    for _ in 0..n {
        let at = r.pos;
        let key = String::get(r)?;
        let value = <Value as Wire>::get(r)?;
        if m.contains_key(&key) {
            r.pos = at;
            return Err(r.malformed(format_args!("object key `{key}` appears twice")));
        }
        m.insert(key, value);
    }
    Ok(Value::Object(m))
}

/// One-byte enums: the byte is the variant's index in the list.
macro_rules! wire_enum {
    ($($ty:ident [$($variant:ident),* $(,)?])*) => {$(
        impl Wire for $ty {
            fn put(&self, w: &mut Vec<u8>) {
                const ALL: &[$ty] = &[$($ty::$variant),*];
                // Exhaustive, so a new variant fails to compile until it has a byte.
                match self { $($ty::$variant)|* => {} }
                let i = ALL.iter().position(|v| v == self).unwrap_or(0);
                w.push(i as u8);
            }
            fn get(r: &mut Reader<'_>) -> Result<Self> {
                const ALL: &[$ty] = &[$($ty::$variant),*];
                let b = r.byte(stringify!($ty))?;
                ALL.get(usize::from(b)).copied().ok_or_else(|| {
                    r.pos -= 1;
                    r.malformed(format_args!("{} has no variant {b}", stringify!($ty)))
                })
            }
        }
    )*};
}

wire_enum! {
    Tier [Local, Cloud]
    SessionKind [Agent, Peer]
    Rights [Read, Write, Admin]
    Policy [Lww, CloudWins, LocalWins, Merge, Manual]
    ErrorCode [
        Malformed, TooLarge, UnsupportedVersion, UnknownType, ClockSkew, BadPolicy, BadRequest,
        HelloRequired, WrongSpace, Unauthorized, Forbidden, NotFound, Protocol, Internal,
        Timeout, RelayForbidden,
    ]
}

/// One field of a struct or frame: in its type's binary form, or through `$via`.
macro_rules! put_field {
    ($w:ident, $f:ident) => {
        $f.put($w)
    };
    ($w:ident, $f:ident, $via:ident) => {
        $via::put($f, $w)
    };
}

macro_rules! get_field {
    ($r:ident) => {
        Wire::get($r)?
    };
    ($r:ident, $via:ident) => {
        $via::get($r)?
    };
}

/// Structs: their fields in the order listed, each in its own binary form.
macro_rules! wire_struct {
    ($($ty:ident { $($field:ident $(as $via:ident)?),* $(,)? })*) => {$(
        impl Wire for $ty {
            fn put(&self, w: &mut Vec<u8>) {
                let $ty { $($field),* } = self;
                $( put_field!(w, $field $(, $via)?); )*
            }
            fn get(r: &mut Reader<'_>) -> Result<Self> {
                // Struct-literal fields are evaluated in the order written.
                Ok($ty { $( $field: get_field!(r $(, $via)?) ),* })
            }
        }
    )*};
}

/// The expanded `push` (tag 3): its fields in the order listed, every state whole. What it
/// decodes is marked [`Push::expanded`], so it is written back the same way.
impl Wire for Push {
    fn put(&self, w: &mut Vec<u8>) {
        self.seq.put(w);
        self.docs.put(w);
        self.watermark.put(w);
        self.remaining.put(w);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Push {
            seq: Wire::get(r)?,
            docs: Wire::get(r)?,
            watermark: Wire::get(r)?,
            remaining: Wire::get(r)?,
            expanded: true,
        })
    }
}

/// `x?` as the last field of a frame that gained it after peers already spoke the frame
/// (`hello.compact`, `welcome.compact`): absent is written as nothing, so the frame is byte
/// for byte what an older build writes and reads; present as any option (1, then `x`). Read
/// as absent when the frame ends before it (a 0 marker is read as absent too).
mod trailing {
    use super::{Reader, Result, Wire};

    pub(super) fn put<T: Wire>(v: &Option<T>, w: &mut Vec<u8>) {
        if v.is_some() {
            v.put(w);
        }
    }

    pub(super) fn get<T: Wire>(r: &mut Reader<'_>) -> Result<Option<T>> {
        if r.remaining() == 0 {
            return Ok(None);
        }
        Option::<T>::get(r)
    }
}

/// `value?` where the protocol reads `null` as absent (a doc view of a deleted document, a
/// conflict side that deleted, a resolution that deletes): JSON cannot tell `Some(null)` from
/// `None` there, so binary sends both as absent and refuses a present `null`, and the two
/// encodings always agree.
mod nullable {
    use super::{Reader, Result, Value, Wire};

    pub(super) fn put(v: &Option<Value>, w: &mut Vec<u8>) {
        match v {
            None | Some(Value::Null) => w.push(0),
            Some(v) => {
                w.push(1);
                v.put(w);
            }
        }
    }

    pub(super) fn get(r: &mut Reader<'_>) -> Result<Option<Value>> {
        let at = r.pos;
        match Option::<Value>::get(r)? {
            Some(Value::Null) => {
                r.pos = at;
                Err(r.malformed("a present value here cannot be null; send 0 for absent"))
            }
            v => Ok(v),
        }
    }
}

wire_struct! {
    Dot { replica, counter }
    Stamp { wall, counter, replica }
    Field { stamp, value }
    Sibling { dot, stamp, tier, body }
    MessageId { origin, seq }
    Message { id, channel, payload, stamp }
    PresenceEntry { node, session, name, kind, tier, since }
    Hello { space, kind, name, token, replica, tier, vector, messages, horizon, collections, unclaimed, compact as trailing }
    Welcome { space, replica, tier, vector, messages, session, rights, resync, compact as trailing }
    DocEntry { collection, id, state }
    InventoryEntry { collection, id, dots }
    Ack { req, seq, dot }
    DocView { collection, id, value as nullable, stamp, conflict }
    ConflictSide { dot, tier, stamp, value as nullable }
    Conflict { collection, id, shown, sides, fields }
}

/// The frame table: tag, variant and fields in wire order. Encoder and decoder are both
/// generated from it, so they cannot disagree.
macro_rules! frame_table {
    (
        wrapped { $($wtag:literal => $wvariant:ident),* $(,)? }
        inline { $($tag:literal => $variant:ident { $($field:ident $(as $via:ident)?),* }),* $(,)? }
    ) => {
        fn put_frame(frame: &Frame, w: &mut Vec<u8>) {
            match frame {
                $( Frame::$wvariant(inner) => {
                    w.push($wtag);
                    inner.put(w);
                } )*
                $( Frame::$variant { $($field),* } => {
                    w.push($tag);
                    $( put_field!(w, $field $(, $via)?); )*
                } )*
                Frame::Push(push) if push.expanded => {
                    w.push(PUSH_EXPANDED);
                    push.put(w);
                }
                Frame::Push(push) => {
                    w.push(PUSH_COMPACT);
                    compact::put_push(push, w);
                }
            }
        }

        fn get_frame(tag: u8, r: &mut Reader<'_>) -> Result<Frame> {
            // Without `agent-frames` (the browser), the agents' reads and their answers are
            // not decoded: no server sends them to a peer, and the decoder stays smaller.
            #[cfg(not(feature = "agent-frames"))]
            if matches!(tag, 9..=14 | 17 | 19..=21) {
                return Err(Error::UnknownType(format!("binary tag {tag}")));
            }
            Ok(match tag {
                $( $wtag => Frame::$wvariant(Wire::get(r)?), )*
                PUSH_EXPANDED => Frame::Push(Wire::get(r)?),
                PUSH_COMPACT => Frame::Push(compact::get_push(r)?),
                $( $tag => Frame::$variant { $( $field: get_field!(r $(, $via)?) ),* }, )*
                other => return Err(Error::UnknownType(format!("binary tag {other}"))),
            })
        }
    };
}

frame_table! {
    wrapped {
        1 => Hello,
        2 => Welcome,
        4 => Ack,
    }
    inline {
        5 => Pull { vector },
        6 => Put { req, collection, id, value },
        7 => Patch { req, collection, id, value },
        8 => Delete { req, collection, id },
        9 => Get { req, collection, id },
        10 => Doc { req, doc },
        11 => List { req, collection, after, limit },
        12 => Docs { req, docs, next },
        13 => Subscribe { req, channel, collection, from },
        14 => Unsubscribe { req, channel, collection },
        15 => Send { req, channel, payload },
        16 => Broadcast { message, offset },
        17 => Change { doc },
        18 => Presence { entries },
        19 => Conflicts { req, collection },
        20 => ConflictList { req, conflicts },
        21 => Conflict { conflict },
        22 => Resolve { req, collection, id, value as nullable },
        23 => SetPolicy { req, collection, policy },
        24 => Error { req, code, message },
        25 => Ping { nonce },
        26 => Pong { nonce },
        27 => Report { floor, ceiling },
        28 => Horizon { horizon },
        29 => Resync { horizon },
        30 => Inventory { seq, docs, last },
        31 => Replicate { collections },
        32 => Replicated { collections },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 the same `#[test]` functions run under wasm-bindgen-test (see scripts/test.sh).
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn malformed(bytes: &[u8]) -> String {
        match decode_binary(bytes) {
            Err(Error::Malformed(m)) => m,
            other => panic!("expected malformed for {bytes:?}, got {other:?}"),
        }
    }

    fn put(value: Value) -> Frame {
        Frame::Put {
            req: Some(7),
            collection: "notes".into(),
            id: "a".into(),
            value,
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let f = Frame::Ping { nonce: 300 };
        assert_eq!(encode_binary(&f), [1, 25, 0xac, 0x02]);
        let v = json!({"a": [null, true, -1, 2.5, "é"]});
        let mut expected = vec![1, 6, 1, 7, 5, b'n', b'o', b't', b'e', b's', 1, b'a'];
        expected.extend_from_slice(&[8, 1, 1, b'a', 7, 5, 0, 2, 4, 0, 5]);
        expected.extend_from_slice(&2.5f64.to_le_bytes());
        expected.extend_from_slice(&[6, 2, 0xc3, 0xa9]);
        assert_eq!(encode_binary(&put(v.clone())), expected);
        assert_eq!(decode_binary(&expected), Ok(put(v)));
    }

    #[test]
    fn integers_at_the_edges_round_trip() {
        for v in [
            json!(0),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(-1),
            json!(f64::MAX),
            json!(-0.0),
            json!(1.0),
        ] {
            let f = put(v);
            assert_eq!(decode_binary(&encode_binary(&f)), Ok(f));
        }
    }

    #[test]
    fn version_type_and_size_errors_have_their_codes() {
        let code = |b: &[u8]| decode_binary(b).map(|_| ()).map_err(|e| e.code());
        assert_eq!(code(&[2, 25, 0]), Err(ErrorCode::UnsupportedVersion));
        assert_eq!(code(&[0]), Err(ErrorCode::UnsupportedVersion));
        assert_eq!(code(&[1, 0]), Err(ErrorCode::UnknownType));
        assert_eq!(code(&[1, 200, 0]), Err(ErrorCode::UnknownType));
        assert_eq!(code(&[]), Err(ErrorCode::Malformed));
        assert_eq!(code(&[1]), Err(ErrorCode::Malformed));
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert_eq!(code(&big), Err(ErrorCode::TooLarge));
    }

    #[test]
    fn truncated_frames_are_malformed_at_every_cut() {
        let f = put(json!({"list": [1, "two", {"three": 3.5}], "yes": true}));
        let bytes = encode_binary(&f);
        for cut in 2..bytes.len() {
            let m = malformed(&bytes[..cut]);
            assert!(m.contains("truncated"), "cut {cut}: {m}");
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode_binary(&Frame::Ping { nonce: 1 });
        bytes.push(0);
        assert!(malformed(&bytes).contains("1 more bytes follow"));
    }

    #[test]
    fn overlong_varints_are_refused() {
        // Eleven continuation bytes, a tenth byte above 1, and a padded zero.
        let mut long = vec![1, 25];
        long.extend_from_slice(&[0xff; 10]);
        long.push(0);
        assert!(malformed(&long).contains("overlong"));
        let mut wide = vec![1, 25];
        wide.extend_from_slice(&[0xff; 9]);
        wide.push(0x02);
        assert!(malformed(&wide).contains("64 bits"));
        assert!(malformed(&[1, 25, 0x80, 0x00]).contains("minimally"));
        // u64::MAX itself is fine.
        let mut max = vec![1, 25];
        max.extend_from_slice(&[0xff; 9]);
        max.push(0x01);
        assert_eq!(decode_binary(&max), Ok(Frame::Ping { nonce: u64::MAX }));
    }

    #[test]
    fn a_hello_record_of_an_older_build_reads_with_the_new_fields_absent() {
        let hello = Frame::Hello(crate::frame::Hello {
            space: "s".into(),
            kind: crate::frame::SessionKind::Peer,
            messages: Some(crate::VersionVector::new()),
            ..Default::default()
        });
        // `compact` absent takes no byte: this is the layout of the builds before it.
        let bytes = encode_binary(&hello);
        let mut with = hello.clone();
        if let Frame::Hello(h) = &mut with {
            h.compact = Some(true);
        }
        let longer = encode_binary(&with);
        assert_eq!(
            (&longer[..bytes.len()], &longer[bytes.len()..]),
            (&bytes[..], &[1, 1][..])
        );
        assert_eq!(decode_binary(&longer), Ok(with));
        // A 0 marker there reads as absent too.
        let mut zero = bytes.clone();
        zero.push(0);
        assert_eq!(decode_binary(&zero), Ok(hello.clone()));
        for cut in 0..=HELLO_ADDED_FIELDS {
            let old = &bytes[..bytes.len() - cut];
            assert_eq!(decode_hello_record(old).ok(), Some(hello.clone()), "{cut}");
        }
        assert!(decode_binary_record(&bytes[..bytes.len() - 1]).is_err());
        let pull = encode_binary(&Frame::Pull {
            vector: crate::VersionVector::new(),
        });
        assert!(decode_hello_record(&pull).is_err());
    }

    #[test]
    fn bad_strings_and_markers_are_malformed() {
        // `delete` with req absent, a collection of invalid UTF-8.
        assert!(malformed(&[1, 8, 0, 2, 0xc3, 0x28, 0]).contains("UTF-8"));
        // A length far beyond the input is refused before anything is allocated.
        let mut huge = vec![1, 8, 0];
        put_varint(&mut huge, u64::MAX);
        assert!(malformed(&huge).contains("claims"));
        assert!(malformed(&[1, 8, 2, 0, 0]).contains("option marker"));
        // `doc` view with conflict = 2.
        assert!(malformed(&[1, 17, 1, b'c', 1, b'i', 0, 0, 2]).contains("bool"));
        // set_policy with policy 9, error with code 200.
        assert!(malformed(&[1, 23, 0, 1, b'c', 9]).contains("Policy has no variant 9"));
        assert!(malformed(&[1, 24, 0, 200, 0]).contains("ErrorCode"));
    }

    #[test]
    fn bad_values_are_malformed() {
        let value = |payload: &[u8]| {
            let mut b = vec![1, 6, 0, 1, b'c', 1, b'i'];
            b.extend_from_slice(payload);
            b
        };
        assert!(malformed(&value(&[9])).contains("unknown value tag 9"));
        let mut nan = vec![5];
        nan.extend_from_slice(&f64::NAN.to_le_bytes());
        assert!(malformed(&value(&nan)).contains("finite"));
        let mut below = vec![4];
        put_varint(&mut below, 1 << 63);
        assert!(malformed(&value(&below)).contains("64-bit"));
        let dup = [8, 2, 1, b'k', 0, 1, b'k', 1];
        assert!(malformed(&value(&dup)).contains("twice"));
        // A u32 field (the limit of `list`) above u32::MAX.
        let mut limit = vec![1, 11, 0, 1, b'c', 0, 1];
        put_varint(&mut limit, 1 << 32);
        assert!(malformed(&limit).contains("32-bit"));
    }

    #[test]
    fn null_is_absent_where_json_reads_it_so() {
        // Found by fuzzing: `resolve` with a present `null` decoded, and JSON turned it into
        // an absent value, so the encodings disagreed.
        assert!(malformed(&[1, 22, 0, 0, 1, b'#', 1, 0]).contains("cannot be null"));
        let resolve = |value| Frame::Resolve {
            req: None,
            collection: "c".into(),
            id: "i".into(),
            value,
        };
        let bytes = encode_binary(&resolve(Some(Value::Null)));
        assert_eq!(decode_binary(&bytes), Ok(resolve(None)));
        // A document field, though, may hold `null`.
        let field = Field {
            stamp: Stamp::default(),
            value: Some(Value::Null),
        };
        let mut w = Vec::new();
        field.put(&mut w);
        assert_eq!(w[w.len() - 2..], [1, 0]);
    }

    #[test]
    fn nesting_is_limited_without_recursing_deeper() {
        let nested = |levels: usize| {
            let mut b = vec![1, 6, 0, 1, b'c', 1, b'i'];
            for _ in 0..levels {
                b.extend_from_slice(&[7, 1]);
            }
            b.push(0);
            b
        };
        assert!(decode_binary(&nested(MAX_VALUE_DEPTH)).is_ok());
        assert!(malformed(&nested(MAX_VALUE_DEPTH + 1)).contains("nested deeper"));
        // Far deeper than any stack would take: refused at level 65, not overflowed.
        assert!(malformed(&nested(200_000)).contains("nested deeper"));
    }

    #[test]
    fn vectors_and_doc_states_must_be_canonical() {
        // pull with a vector of two entries in the wrong order.
        let mut b = vec![1, 5, 2];
        b.extend_from_slice(&2u64.to_le_bytes());
        b.push(1);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(1);
        assert!(malformed(&b).contains("strictly increase"));
        let mut zero = vec![1, 5, 1];
        zero.extend_from_slice(&1u64.to_le_bytes());
        zero.push(0);
        assert!(malformed(&zero).contains("start at 1"));
        // A push whose one sibling is not covered by the (empty) context.
        let sibling = Sibling {
            dot: Dot::new(ReplicaId(1), 1),
            stamp: Stamp::new(5, 0, ReplicaId(1)),
            tier: Tier::Local,
            body: None,
        };
        let push = Frame::Push(Push {
            seq: 1,
            docs: vec![DocEntry {
                collection: "c".into(),
                id: "i".into(),
                state: DocState {
                    siblings: vec![sibling],
                    context: VersionVector::new(),
                },
            }],
            watermark: VersionVector::new(),
            remaining: 0,
            expanded: false,
        });
        assert!(malformed(&encode_binary(&push)).contains("context"));
    }
}

mod compact;

// Last in the file, so the browser package (built without `sql`) keeps its exact bytes: the
// panic locations it embeds carry line numbers of this file.
#[cfg(feature = "sql")]
pub mod state;
