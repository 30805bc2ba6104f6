//! What the compact forms of a document state share: the stored state
//! ([`super::state`], feature `sql`) and the compact `push` (tag 33) that every peer speaks.
//!
//! A state is written against a sorted table of replica ids, referred to by index (the
//! state's own table when stored, the frame's in a `push`), and a base wall that stamps' walls
//! are written above (0 when stored, the least wall of the frame in a `push`). A field stamped
//! by its sibling's own write (every field of a `put`, and the fields a `patch` set) is one
//! byte, 0, instead of the stamp. A `push` adds a shape byte per state, so the usual state (one
//! sibling whose dot is its context's only entry) needs neither a context nor a dot list.
//! The layouts are in the module documentation of [`super`].

use super::{put_len, put_str, put_varint, Reader, Wire, MAX_PREALLOC};
use crate::codec::check_doc_state;
use crate::doc::{DocState, Sibling};
use crate::frame::{DocEntry, Push, MAX_FRAME_BYTES};
use crate::policy::{Field, Fields};
use crate::{Dot, ReplicaId, Result, Stamp, Tier, VersionVector};
use serde_json::Value;

/// Adds every replica `state` names (its context, dots and stamps) to `table`, unsorted.
pub(super) fn collect_replicas(state: &DocState, table: &mut Vec<ReplicaId>) {
    table.extend(state.context.iter().map(|(r, _)| r));
    for s in &state.siblings {
        table.push(s.dot.replica);
        table.push(s.stamp.replica);
        for f in s.body.iter().flat_map(|b| b.values()) {
            table.push(f.stamp.replica);
        }
    }
}

/// What a state's replica indices and walls are written against: a sorted table of replica
/// ids (the state's own when stored, the frame's in a `push`) and a base wall (0 when
/// stored, the least wall of the frame in a `push`).
pub(super) struct Refs<'t> {
    pub(super) table: &'t [ReplicaId],
    pub(super) base: u64,
}

impl Refs<'_> {
    fn index(&self, r: ReplicaId) -> usize {
        // Every id is in the table by construction; 0 is never reached.
        self.table.binary_search(&r).unwrap_or(0)
    }

    fn put_stamp(&self, w: &mut Vec<u8>, st: &Stamp) {
        // The base is the least wall written against it; saturating keeps a bad base from
        // panicking (the decoder would then read another wall, never a crash).
        put_varint(w, st.wall.saturating_sub(self.base));
        put_varint(w, u64::from(st.counter));
        put_len(w, self.index(st.replica));
    }
}

/// Shape byte bits of a state in a `push` (see [`put_body`]).
const SHAPE_SIMPLE: u8 = 1;
const SHAPE_CLOUD: u8 = 2;
const SHAPE_BODY: u8 = 4;
const SHAPE_OWN_REPLICA: u8 = 8;

/// The one sibling of a state that has one, when its dot is the context's only entry (one
/// replica's write that superseded everything before it: nearly every state).
fn simple(state: &DocState) -> Option<&Sibling> {
    match (state.siblings.as_slice(), state.context.iter().next()) {
        ([s], Some(only))
            if state.context.iter().nth(1).is_none() && only == (s.dot.replica, s.dot.counter) =>
        {
            Some(s)
        }
        _ => None,
    }
}

/// Writes a state after its replica table. `shaped` (a `push`'s states) starts with a shape
/// byte: `SHAPE_SIMPLE` for [`simple`] states, written as the dot, the stamp (its replica
/// only when it is not the dot's) and the body; 0 for the general form, which is also the
/// whole of a stored state's (unshaped) layout: context, dots, siblings.
pub(super) fn put_body(w: &mut Vec<u8>, state: &DocState, refs: &Refs<'_>, shaped: bool) {
    if shaped {
        if let Some(s) = simple(state) {
            let own = s.stamp.replica == s.dot.replica;
            let mut shape = SHAPE_SIMPLE;
            shape |= if s.tier == Tier::Cloud {
                SHAPE_CLOUD
            } else {
                0
            };
            shape |= if s.body.is_some() { SHAPE_BODY } else { 0 };
            shape |= if own { SHAPE_OWN_REPLICA } else { 0 };
            w.push(shape);
            put_len(w, refs.index(s.dot.replica));
            put_varint(w, s.dot.counter);
            put_varint(w, s.stamp.wall.saturating_sub(refs.base));
            put_varint(w, u64::from(s.stamp.counter));
            if !own {
                put_len(w, refs.index(s.stamp.replica));
            }
            if let Some(body) = &s.body {
                put_fields(w, body, &s.stamp, refs);
            }
            return;
        }
        w.push(0);
    }
    // The vector never holds zero entries; filtered anyway, as its frame form does.
    let context: Vec<(ReplicaId, u64)> = state.context.iter().filter(|(_, c)| *c > 0).collect();
    put_len(w, context.len());
    for (r, c) in &context {
        put_len(w, refs.index(*r));
        put_varint(w, *c);
    }
    put_len(w, state.siblings.len());
    for s in &state.siblings {
        put_len(w, refs.index(s.dot.replica));
        let top = state.context.get(s.dot.replica);
        put_varint(w, top.wrapping_sub(s.dot.counter));
    }
    for s in &state.siblings {
        refs.put_stamp(w, &s.stamp);
        s.tier.put(w);
        match &s.body {
            None => w.push(0),
            Some(body) => {
                w.push(1);
                put_fields(w, body, &s.stamp, refs);
            }
        }
    }
}

fn put_fields(w: &mut Vec<u8>, body: &Fields, own: &Stamp, refs: &Refs<'_>) {
    put_len(w, body.len());
    for (name, field) in body {
        put_str(w, name);
        if field.stamp == *own {
            w.push(0);
        } else {
            w.push(1);
            refs.put_stamp(w, &field.stamp);
        }
        field.value.put(w);
    }
}

/// The least wall of every stamp in `state`, if it has any.
fn least_wall(state: &DocState) -> Option<u64> {
    state
        .siblings
        .iter()
        .flat_map(|s| {
            let fields = s.body.iter().flat_map(|b| b.values()).map(|f| f.stamp.wall);
            std::iter::once(s.stamp.wall).chain(fields)
        })
        .min()
}

/// Writes a `push` in its compact form (tag 33, the module documentation of [`super`]):
/// seq, watermark, remaining, then the frame's replica table, collection table and base
/// wall, then each document as (collection index, id, shaped state).
pub(super) fn put_push(p: &Push, w: &mut Vec<u8>) {
    p.seq.put(w);
    p.watermark.put(w);
    p.remaining.put(w);
    let mut table = Vec::new();
    let mut collections: Vec<&str> = Vec::new();
    let mut indices = Vec::with_capacity(p.docs.len());
    let mut base: Option<u64> = None;
    for e in &p.docs {
        collect_replicas(&e.state, &mut table);
        if let Some(least) = least_wall(&e.state) {
            base = Some(base.map_or(least, |b| b.min(least)));
        }
        // Documents of one collection usually come together: look at the last one first.
        let last = collections.len().checked_sub(1);
        let i = match last.filter(|&i| collections[i] == e.collection) {
            Some(i) => i,
            None => match collections.iter().position(|c| *c == e.collection) {
                Some(i) => i,
                None => {
                    collections.push(&e.collection);
                    collections.len() - 1
                }
            },
        };
        indices.push(i);
    }
    table.sort_unstable();
    table.dedup();
    put_len(w, table.len());
    for r in &table {
        r.put(w);
    }
    put_len(w, collections.len());
    for c in &collections {
        put_str(w, c);
    }
    let base = base.unwrap_or(0);
    put_varint(w, base);
    let refs = Refs {
        table: &table,
        base,
    };
    put_len(w, p.docs.len());
    for (e, i) in p.docs.iter().zip(indices) {
        put_len(w, i);
        put_str(w, &e.id);
        put_body(w, &e.state, &refs, true);
    }
}

/// Reads a `push` that [`put_push`] wrote (tag 33).
pub(super) fn get_push(r: &mut Reader<'_>) -> Result<Push> {
    let seq = u64::get(r)?;
    let watermark = <VersionVector as Wire>::get(r)?;
    let remaining = u64::get(r)?;
    let table = get_table(r)?;
    let collections: Vec<String> = r.list("a collection table")?;
    let base = r.varint()?;
    let refs = Refs {
        table: &table,
        base,
    };
    // A document takes at least 5 bytes: collection index, id length, a shape byte and two
    // counts.
    let n = r.count("a document list", 5)?;
    let mut docs = Vec::with_capacity(n.min(MAX_PREALLOC));
    // Each document gets its own copy of its collection's name: bounded in all by what an
    // expanded push of the largest frame could carry, so a small frame of many documents
    // naming one long collection cannot make the decoder allocate gigabytes.
    let mut named = 0usize;
    for _ in 0..n {
        let at = r.pos;
        let collection = get_indexed(r, &collections, "collection")?.clone();
        named = named.saturating_add(collection.len());
        if named > MAX_FRAME_BYTES {
            r.pos = at;
            return Err(r.malformed(format_args!(
                "the documents' collection names come to more than {MAX_FRAME_BYTES} bytes"
            )));
        }
        let id = String::get(r)?;
        let state = get_shaped(r, &refs)?;
        docs.push(DocEntry {
            collection,
            id,
            state,
        });
    }
    Ok(Push {
        seq,
        docs,
        watermark,
        remaining,
        expanded: false,
    })
}

pub(super) fn get_index(r: &mut Reader<'_>, table: &[ReplicaId]) -> Result<ReplicaId> {
    get_indexed(r, table, "replica").copied()
}

/// A varint index into `table` (a frame's or a state's), and the entry it names.
fn get_indexed<'t, T>(r: &mut Reader<'_>, table: &'t [T], what: &str) -> Result<&'t T> {
    let at = r.pos;
    let i = r.varint()?;
    usize::try_from(i)
        .ok()
        .and_then(|i| table.get(i))
        .ok_or_else(|| {
            r.pos = at;
            r.malformed(format_args!(
                "{what} index {i} is past the table of {}",
                table.len()
            ))
        })
}

/// A replica table: a count, then that many ids, strictly increasing.
pub(super) fn get_table(r: &mut Reader<'_>) -> Result<Vec<ReplicaId>> {
    let n = r.count("a replica table", 8)?;
    let mut table: Vec<ReplicaId> = Vec::with_capacity(n.min(MAX_PREALLOC));
    for _ in 0..n {
        let at = r.pos;
        let id = ReplicaId::get(r)?;
        if table.last().is_some_and(|prev| *prev >= id) {
            r.pos = at;
            return Err(r.malformed("the replica table must strictly increase"));
        }
        table.push(id);
    }
    Ok(table)
}

/// The general form's context and sibling dots.
pub(super) fn get_context_and_dots(
    r: &mut Reader<'_>,
    table: &[ReplicaId],
) -> Result<(VersionVector, Vec<Dot>)> {
    let n = r.count("a context", 2)?;
    let mut context: Vec<(ReplicaId, u64)> = Vec::with_capacity(n.min(MAX_PREALLOC));
    for _ in 0..n {
        let at = r.pos;
        let replica = get_index(r, table)?;
        let counter = r.varint()?;
        if counter == 0 || context.last().is_some_and(|(prev, _)| *prev >= replica) {
            r.pos = at;
            return Err(r.malformed(
                "context entries must have strictly increasing replicas and counters of at least 1",
            ));
        }
        context.push((replica, counter));
    }
    let context: VersionVector = context.into_iter().collect();
    let n = r.count("a sibling list", 2)?;
    let mut dots = Vec::with_capacity(n.min(MAX_PREALLOC));
    for _ in 0..n {
        let replica = get_index(r, table)?;
        let counter = context.get(replica).wrapping_sub(r.varint()?);
        dots.push(Dot::new(replica, counter));
    }
    Ok((context, dots))
}

fn get_wall(r: &mut Reader<'_>, base: u64) -> Result<u64> {
    let at = r.pos;
    let delta = r.varint()?;
    base.checked_add(delta).ok_or_else(|| {
        r.pos = at;
        r.malformed("a wall clock past 2^64 (base wall plus its distance)")
    })
}

fn get_stamp(r: &mut Reader<'_>, refs: &Refs<'_>) -> Result<Stamp> {
    let wall = get_wall(r, refs.base)?;
    let counter = u32::get(r)?;
    let replica = get_index(r, refs.table)?;
    Ok(Stamp::new(wall, counter, replica))
}

pub(super) fn checked(r: &mut Reader<'_>, state: DocState) -> Result<DocState> {
    check_doc_state(&state).map_err(|why| r.malformed(why))?;
    Ok(state)
}

/// The general form's siblings (stamps, tiers, bodies) for the dots its head read.
pub(super) fn get_siblings(
    r: &mut Reader<'_>,
    refs: &Refs<'_>,
    context: VersionVector,
    dots: Vec<Dot>,
) -> Result<DocState> {
    let mut siblings = Vec::with_capacity(dots.len());
    for dot in dots {
        let stamp = get_stamp(r, refs)?;
        let tier = Tier::get(r)?;
        let body = match r.byte("an option marker")? {
            0 => None,
            1 => Some(get_body(r, refs, stamp)?),
            b => {
                r.pos -= 1;
                return Err(r.malformed(format_args!("an option marker must be 0 or 1, got {b}")));
            }
        };
        siblings.push(Sibling {
            dot,
            stamp,
            tier,
            body,
        });
    }
    Ok(DocState { siblings, context })
}

/// A state as a `push` carries it: a shape byte, then the simple or the general form
/// ([`put_body`]), checked.
fn get_shaped(r: &mut Reader<'_>, refs: &Refs<'_>) -> Result<DocState> {
    let at = r.pos;
    let shape = r.byte("a state's shape byte")?;
    if shape == 0 {
        let (context, dots) = get_context_and_dots(r, refs.table)?;
        let state = get_siblings(r, refs, context, dots)?;
        return checked(r, state);
    }
    if shape & SHAPE_SIMPLE == 0
        || shape > SHAPE_SIMPLE | SHAPE_CLOUD | SHAPE_BODY | SHAPE_OWN_REPLICA
    {
        r.pos = at;
        return Err(r.malformed(format_args!("unknown state shape {shape}")));
    }
    let replica = get_index(r, refs.table)?;
    let at_counter = r.pos;
    let counter = r.varint()?;
    if counter == 0 {
        r.pos = at_counter;
        return Err(r.malformed("a dot counter starts at 1"));
    }
    let dot = Dot::new(replica, counter);
    let wall = get_wall(r, refs.base)?;
    let stamp_counter = u32::get(r)?;
    let stamp_replica = if shape & SHAPE_OWN_REPLICA != 0 {
        replica
    } else {
        get_index(r, refs.table)?
    };
    let stamp = Stamp::new(wall, stamp_counter, stamp_replica);
    let body = if shape & SHAPE_BODY != 0 {
        Some(get_body(r, refs, stamp)?)
    } else {
        None
    };
    let tier = if shape & SHAPE_CLOUD != 0 {
        Tier::Cloud
    } else {
        Tier::Local
    };
    let mut context = VersionVector::new();
    context.add_dot(dot);
    let state = DocState {
        siblings: vec![Sibling {
            dot,
            stamp,
            tier,
            body,
        }],
        context,
    };
    checked(r, state)
}

fn get_body(r: &mut Reader<'_>, refs: &Refs<'_>, own: Stamp) -> Result<Fields> {
    let n = r.count("document field names", 3)?;
    let mut fields = Fields::new();
    let mut last: Option<String> = None;
    for _ in 0..n {
        let at = r.pos;
        let name = String::get(r)?;
        if last.as_ref().is_some_and(|prev| *prev >= name) {
            r.pos = at;
            return Err(r.malformed("document field names must strictly increase"));
        }
        let stamp = match r.byte("a field stamp marker")? {
            0 => own,
            1 => get_stamp(r, refs)?,
            b => {
                r.pos -= 1;
                return Err(
                    r.malformed(format_args!("a field stamp marker must be 0 or 1, got {b}"))
                );
            }
        };
        let value = Option::<Value>::get(r)?;
        last = Some(name.clone());
        fields.insert(name, Field { stamp, value });
    }
    Ok(fields)
}

/// One replica's write of `fields` as its `counter`th, stamped `wall`: the simple shape.
#[cfg(test)]
pub(super) fn one_write(
    replica: u64,
    counter: u64,
    wall: u64,
    fields: &[(&str, Value)],
) -> DocState {
    let dot = Dot::new(ReplicaId(replica), counter);
    let stamp = Stamp::new(wall, 0, ReplicaId(replica));
    let mut body = Fields::new();
    for (k, v) in fields {
        let value = Some(v.clone());
        body.insert((*k).into(), Field { stamp, value });
    }
    let mut context = VersionVector::new();
    context.add_dot(dot);
    DocState {
        siblings: vec![Sibling {
            dot,
            stamp,
            tier: Tier::Local,
            body: Some(body),
        }],
        context,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode_binary, encode_binary, PUSH_COMPACT, PUSH_EXPANDED, VERSION_BYTE};
    use super::*;
    use crate::frame::Frame;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const WALL: u64 = 1_780_000_000_000;

    /// One replica's write of `{"v": value}`.
    fn written(replica: u64, counter: u64, wall: u64, value: Value) -> DocState {
        one_write(replica, counter, wall, &[("v", value)])
    }

    fn push(docs: Vec<(&str, &str, DocState)>) -> Frame {
        let mut watermark = VersionVector::new();
        watermark.add_dot(Dot::new(ReplicaId(7), 9));
        Frame::Push(Push {
            seq: 3,
            docs: docs
                .into_iter()
                .map(|(c, i, state)| DocEntry {
                    collection: c.into(),
                    id: i.into(),
                    state,
                })
                .collect(),
            watermark,
            remaining: 12,
            expanded: false,
        })
    }

    /// Every shape a state can take: simple (local and cloud, with and without a body, its
    /// stamp by another replica, a field stamped apart), general (concurrent siblings, a
    /// context wider than the dot), and the empty state.
    fn every_shape() -> Frame {
        let mut cloud = written(5, 1, WALL + 9, json!(1));
        cloud.siblings[0].tier = Tier::Cloud;
        let mut deleted = written(5, 2, WALL, json!(null));
        deleted.siblings[0].body = None;
        let mut foreign = written(5, 3, WALL + 1, json!("x"));
        foreign.siblings[0].stamp = Stamp::new(WALL + 1, 4, ReplicaId(6));
        let mut apart = written(6, 4, WALL + 2, json!([1, 2]));
        let other = Stamp::new(WALL - 5, 1, ReplicaId(5));
        if let Some(b) = apart.siblings[0].body.as_mut() {
            b.insert(
                "w".into(),
                Field {
                    stamp: other,
                    value: Some(json!({"a": true})),
                },
            );
            b.insert(
                "x".into(),
                Field {
                    stamp: other,
                    value: None,
                },
            );
        }
        let mut concurrent = written(5, 8, WALL + 3, json!(1));
        concurrent.join(&written(6, 2, WALL + 4, json!(2)));
        let mut wider = written(5, 9, WALL, json!(3));
        wider.context.add_dot(Dot::new(ReplicaId(6), 1));
        push(vec![
            ("a", "1", written(5, 1, WALL, json!(7))),
            ("a", "2", cloud),
            ("b", "3", deleted),
            ("a", "4", foreign),
            ("b", "5", apart),
            ("c", "6", concurrent),
            ("c", "7", wider),
            ("c", "8", DocState::default()),
        ])
    }

    #[test]
    fn every_shape_round_trips() {
        let f = every_shape();
        let bytes = encode_binary(&f);
        assert_eq!(bytes[1], PUSH_COMPACT);
        assert_eq!(decode_binary(&bytes), Ok(f.clone()));
        // The general form is the only one where the context is not just the dot.
        let Frame::Push(p) = &f else { unreachable!() };
        assert_eq!(p.docs[5].state.siblings.len(), 2);
        assert!(simple(&p.docs[5].state).is_none() && simple(&p.docs[6].state).is_none());
        assert!(p.docs[..5].iter().all(|e| simple(&e.state).is_some()));
        // An empty push too.
        let empty = push(vec![]);
        assert_eq!(decode_binary(&encode_binary(&empty)), Ok(empty));
    }

    #[test]
    fn the_expanded_push_still_decodes() {
        // What builds before the compact form wrote, browser stores still hold, and a peer
        // that does not read the compact form is sent (`Push::expanded`).
        let f = every_shape();
        let Frame::Push(p) = &f else { unreachable!() };
        let mut bytes = vec![VERSION_BYTE, PUSH_EXPANDED];
        p.put(&mut bytes);
        let expanded = Frame::Push(Push {
            expanded: true,
            ..p.clone()
        });
        let decoded = decode_binary(&bytes);
        assert_eq!(decoded, Ok(expanded.clone()));
        assert!(matches!(
            decoded,
            Ok(Frame::Push(Push { expanded: true, .. }))
        ));
        assert_eq!(encode_binary(&expanded), bytes);
        // The same push either way: the form is how it is written, not what it says.
        assert_eq!(expanded, f);
        assert!(encode_binary(&f).len() * 2 < bytes.len());
    }

    #[test]
    fn a_batch_of_small_writes_costs_a_few_bytes_beyond_its_keys() {
        // 256 keys of one replica, as a catch-up sends them: `{"v": i}` under "a-000000i".
        let docs: Vec<(String, DocState)> = (1..=256u64)
            .map(|i| {
                (
                    format!("a-{i:07}"),
                    written(0x5eed_1234_abcd_0001, 90_000 + i, WALL, json!(i)),
                )
            })
            .collect();
        let f = push(
            docs.iter()
                .map(|(k, s)| ("kv", k.as_str(), s.clone()))
                .collect(),
        );
        let bytes = encode_binary(&f);
        assert_eq!(decode_binary(&bytes), Ok(f.clone()));
        let Frame::Push(p) = &f else { unreachable!() };
        let mut expanded = vec![VERSION_BYTE, PUSH_EXPANDED];
        p.put(&mut expanded);
        // Per document: collection index 1, id 10, shape 1, replica index 1, counter 3,
        // wall 1, stamp counter 1, one field ("v" 2, own stamp 1, value 3 with its tag, count
        // 1): 26 bytes, against 70 expanded.
        let per_doc = bytes.len() / 256;
        assert!(
            per_doc <= 26,
            "{per_doc} bytes per document ({} in all)",
            bytes.len()
        );
        assert!(
            expanded.len() / 256 >= 2 * per_doc,
            "{} expanded",
            expanded.len()
        );
    }

    #[test]
    fn many_documents_naming_one_long_collection_are_refused() {
        // 200 documents of a 10 KB collection name: 2 MB of names from a 10 KB frame.
        let mut b = vec![VERSION_BYTE, PUSH_COMPACT, 0, 0, 0, 1];
        b.extend_from_slice(&5u64.to_le_bytes());
        b.push(1);
        put_str(&mut b, &"c".repeat(10_000));
        b.push(0);
        put_len(&mut b, 200);
        for _ in 0..200 {
            // collection 0, empty id, the general shape with no context and no siblings.
            b.extend_from_slice(&[0, 0, 0, 0, 0]);
        }
        match decode_binary(&b) {
            Err(crate::Error::Malformed(m)) => assert!(m.contains("collection names"), "{m}"),
            other => panic!("expected malformed, got {other:?}"),
        }
        // 100 of them fit (1 MB of names).
        let mut fits = b[..b.len() - 500].to_vec();
        let at = fits.len() - 500 - 2;
        fits.truncate(at);
        put_len(&mut fits, 100);
        for _ in 0..100 {
            fits.extend_from_slice(&[0, 0, 0, 0, 0]);
        }
        assert!(
            decode_binary(&fits).is_ok(),
            "{:?}",
            decode_binary(&fits).err()
        );
    }

    #[test]
    fn bad_compact_pushes_are_malformed() {
        let bytes = encode_binary(&every_shape());
        for cut in 2..bytes.len() {
            assert!(decode_binary(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let err = |b: &[u8]| match decode_binary(b) {
            Err(crate::Error::Malformed(m)) => m,
            other => panic!("expected malformed, got {other:?}"),
        };
        // seq 0, an empty watermark, remaining 0, a table of one replica and one of one
        // collection, the base wall, then one document.
        let one = |shape: u8, coll: u8, replica: u8, counter: u8, base: &[u8]| {
            let mut b = vec![VERSION_BYTE, PUSH_COMPACT, 0, 0, 0, 1];
            b.extend_from_slice(&5u64.to_le_bytes());
            b.extend_from_slice(&[1, 1, b'c']);
            b.extend_from_slice(base);
            b.extend_from_slice(&[1, coll, 1, b'i', shape, replica, counter, 0, 0]);
            b
        };
        let fine = one(SHAPE_SIMPLE | SHAPE_OWN_REPLICA, 0, 0, 1, &[0]);
        assert!(decode_binary(&fine).is_ok(), "{:?}", decode_binary(&fine));
        assert!(err(&one(2, 0, 0, 1, &[0])).contains("unknown state shape 2"));
        assert!(err(&one(SHAPE_SIMPLE | 16, 0, 0, 1, &[0])).contains("unknown state shape"));
        assert!(err(&one(9, 1, 0, 1, &[0])).contains("collection index 1 is past"));
        assert!(err(&one(9, 0, 1, 1, &[0])).contains("replica index 1 is past"));
        assert!(err(&one(9, 0, 0, 0, &[0])).contains("counter starts at 1"));
        // A wall that overflows past its base.
        let mut high = vec![0xff; 9];
        high.push(1);
        let mut over = one(9, 0, 0, 1, &high);
        let at = over.len() - 2;
        over[at] = 1;
        assert!(err(&over).contains("past 2^64"), "{}", err(&over));
    }
}
