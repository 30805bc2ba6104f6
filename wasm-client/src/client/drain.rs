//! The host loop: every input is handed to the engine, then the pump runs the core's loop in
//! its split form, since IndexedDB is asynchronous: `Engine::cut_batches`, one IndexedDB
//! transaction for them, `Engine::batches_persisted`, and `Engine::drain` — frames to send,
//! acks to release, events for the callbacks and for follower tabs.

use super::convert::{coded, core_err, js_err, to_js};
use super::damage_report;
use super::link::reconnect_later;
use super::state::{Input, Shared, SubKind, Waiter};
use crate::js;
use crate::scratch::Miss;
use crate::status::CloudProgress;
use crate::store::CloudMeta;
use crate::tabs;
use crate::tabs::message::TabMsg;
use bridge_core::{codec, DocKey, Event, Frame, Output, Tier, Transmit};
use js_sys::Function;
use wasm_bindgen::prelude::*;

/// Runs the pump soon (a microtask), unless it is running: then it picks the input up.
pub(super) fn schedule(rc: &Shared) {
    {
        let mut i = rc.borrow_mut();
        if i.pumping {
            return;
        }
        i.pumping = true;
    }
    let rc = rc.clone();
    wasm_bindgen_futures::spawn_local(async move { pump(rc).await });
}

/// How many times one operation reads what the engine missed before it gives up (each
/// read answers every question of the last try; a list of `n` pages needs `n` tries).
const READ_TRIES: usize = 1024;

/// Reads what the engine's durable layer missed ([`Miss`]) from IndexedDB into the scratch.
/// Records found unreadable are kept for the pump to set aside, and reported.
pub(super) async fn fetch_misses(rc: &Shared, misses: &[Miss]) -> Result<(), String> {
    let (reader, epoch) = {
        let i = rc.borrow();
        let epoch = i.scratch.lock().epoch();
        (i.reader.clone(), epoch)
    };
    let (read, damaged) = reader.fetch(misses).await.map_err(|e| e.to_string())?;
    let found = {
        let mut i = rc.borrow_mut();
        i.scratch.lock().fill(epoch, read);
        let mut found = false;
        for d in damaged {
            // The same record found by two reads before the pump set it aside: once.
            if !i.damaged.iter().any(|o| o.doc_key() == d.doc_key()) {
                i.error = damage_report(std::slice::from_ref(&d));
                i.damaged.push(d);
                found = true;
            }
        }
        found
    };
    if found {
        schedule(rc);
    }
    Ok(())
}

/// A read of the engine turned into JavaScript (one type for every read: one copy of
/// [`with_reads`] in the package).
pub(super) type ReadFn = Box<dyn FnMut(&bridge_core::Engine) -> Result<JsValue, JsValue>>;

/// Runs `read` on the engine, reading from IndexedDB what it missed and running it again,
/// until it answers without a miss (the reads of `get`, `list`, `conflicts`, ...).
pub(super) async fn with_reads(rc: Shared, mut read: ReadFn) -> Result<JsValue, JsValue> {
    if rc.borrow().closed {
        return Err(coded("closed", "this handle is closed; open() a new one"));
    }
    rc.borrow().scratch.lock().trim();
    for _ in 0..READ_TRIES {
        let (out, misses) = {
            let i = rc.borrow();
            let out = read(&i.engine);
            let misses = i.scratch.lock().take_misses();
            (out, misses)
        };
        if misses.is_empty() {
            return out;
        }
        fetch_misses(&rc, &misses).await.map_err(|e| js_err(&e))?;
    }
    Err(js_err(
        "the browser store did not answer a read (too many tries)",
    ))
}

/// Step 0 of a round: reads the documents the waiting inputs need, then hands them to the
/// engine, in order.
async fn apply_inputs(rc: &Shared) {
    let (n, unread) = {
        let i = rc.borrow();
        if i.inputs.is_empty() {
            return;
        }
        let mut s = i.scratch.lock();
        s.trim();
        let keys: Vec<DocKey> = i.inputs.iter().flat_map(Input::keys).collect();
        (i.inputs.len(), s.unread(&keys))
    };
    if !unread.is_empty() {
        // Only the pump stores batches, so no batch is stored while this read runs: what it
        // brings back is taken (see `Scratch::fill`).
        let misses: Vec<Miss> = unread.into_iter().map(Miss::Doc).collect();
        if let Err(e) = fetch_misses(rc, &misses).await {
            rc.borrow_mut().error = Some(e);
        }
    }
    let mut rejected: Vec<(Function, JsValue)> = Vec::new();
    {
        let mut guard = rc.borrow_mut();
        let i = &mut *guard;
        let n = n.min(i.inputs.len());
        let inputs: Vec<Input> = i.inputs.drain(..n).collect();
        for input in inputs {
            match input {
                Input::Call { frame, key, waiter } => {
                    match tabs::apply(frame, &mut i.engine, js::now_ms(), key) {
                        Ok(req) => i.waiting.insert(req, waiter),
                        Err(e) => match waiter {
                            Waiter::Local(_, reject) => rejected.push((reject, core_err(&e))),
                            Waiter::Tab { tab, id } => {
                                if let Some(t) = &i.tabs {
                                    t.post(&TabMsg::Reply {
                                        tab,
                                        id,
                                        frame: Frame::error(None, &e),
                                    });
                                }
                            }
                        },
                    }
                }
                Input::Frame { session, frame } => {
                    if session == i.session && session != 0 {
                        i.engine.handle_frame(js::now_ms(), session, frame);
                    }
                }
            }
        }
        // What the engine missed taking them was answered by nothing: it refused those
        // inputs (their promises reject), and nothing of them was stored.
        i.scratch.lock().take_misses();
    }
    for (reject, e) in rejected {
        let _ = reject.call1(&JsValue::NULL, &e);
    }
}

/// Step 3 with reads: drains, and while the engine left a push for want of a read
/// (`DocStore::missed`), reads what it missed and drains again.
async fn drain_reading(rc: &Shared) {
    for _ in 0..READ_TRIES {
        drain(rc);
        let misses = rc.borrow().scratch.lock().take_misses();
        if misses.is_empty() {
            return;
        }
        if let Err(e) = fetch_misses(rc, &misses).await {
            rc.borrow_mut().error = Some(e);
            return;
        }
    }
}

/// Read, apply, persist, release, send — until no input waits and nothing is staged.
async fn pump(rc: Shared) {
    loop {
        apply_inputs(&rc).await;
        drain_reading(&rc).await;
        let (batches, mut store, cloud, damaged) = {
            let mut i = rc.borrow_mut();
            // Batches whose write failed go first, then what the engine cut since.
            let mut batches = std::mem::take(&mut i.unwritten);
            batches.extend(i.engine.cut_batches());
            let cloud = std::mem::take(&mut i.cloud_dirty).then_some(CloudMeta {
                acked: i.cloud.acked,
                at: i.cloud_at,
            });
            let damaged = std::mem::take(&mut i.damaged);
            if batches.is_empty() && cloud.is_none() && damaged.is_empty() {
                if i.inputs.is_empty() {
                    i.pumping = false;
                    break;
                }
                continue;
            }
            let Some(store) = i.store.take() else {
                i.unwritten = batches;
                i.pumping = false;
                break;
            };
            (batches, store, cloud, damaged)
        };
        if !damaged.is_empty() {
            if let Err(e) = store.set_aside(&damaged).await {
                rc.borrow_mut().error = Some(e.to_string());
            }
        }
        let written = store.write(&batches).await;
        if let Some(c) = cloud {
            let _ = store.write_cloud(c).await;
        }
        let mut i = rc.borrow_mut();
        i.store = Some(store);
        match written {
            Ok(()) => {
                // The batches' states are the newest: reads answer from them from now on.
                let none = std::sync::Arc::new(bridge_core::DocState::default());
                i.scratch.lock().stored(
                    batches
                        .iter()
                        .flat_map(|b| b.docs.iter().map(|(k, s)| (k, s)))
                        .chain(
                            batches
                                .iter()
                                .flat_map(|b| b.collected.iter().map(|k| (k, &none))),
                        ),
                );
                if let Err(e) = i.engine.batches_persisted(&batches) {
                    i.error = Some(e.to_string());
                }
            }
            Err(e) => {
                // Nothing was acknowledged; keep the batches and retry on the next input.
                i.error = Some(e.to_string());
                i.unwritten = batches;
                i.pumping = false;
                drop(i);
                drain(&rc);
                break;
            }
        }
    }
}

/// Sends what the engine wants sent and calls back into JavaScript for its events.
fn drain(rc: &Shared) {
    let mut calls: Vec<(Function, JsValue, JsValue)> = Vec::new();
    let mut closed_session = false;
    // For follower tabs, in this order: the stored batch, messages, then the replies (a
    // follower re-reads the batch before it resolves the write it asked for), status.
    let mut batch: Vec<DocKey> = Vec::new();
    let mut posts: Vec<TabMsg> = Vec::new();
    let mut replies: Vec<TabMsg> = Vec::new();
    {
        let mut guard = rc.borrow_mut();
        let i = &mut *guard;
        let me = i.engine.replica().id();
        let mut presence = false;
        i.engine.drain(|engine, out| match out {
            Output::Transmit(Transmit::Frame { session, frame }) if session == i.session => {
                if let Some(link) = &i.link {
                    let bytes = codec::encode_binary(&frame);
                    let _ = link.ws.send_with_u8_array(&bytes);
                }
            }
            Output::Transmit(Transmit::Close {
                session, reason, ..
            }) if session == i.session => {
                i.error = Some(reason);
                closed_session = true;
            }
            Output::Transmit(_) => {}
            Output::Event(ev) => match ev {
                Event::Acked { req, dot } => match i.waiting.remove(&req) {
                    Some(Waiter::Local(resolve, _)) => {
                        let v = dot.map_or(Ok(JsValue::UNDEFINED), |d| to_js(&d));
                        calls.push((resolve, v.unwrap_or(JsValue::UNDEFINED), JsValue::UNDEFINED));
                    }
                    Some(Waiter::Tab { tab, id }) => replies.push(TabMsg::Reply {
                        tab,
                        id,
                        frame: Frame::Ack(bridge_core::frame::Ack {
                            dot,
                            ..Default::default()
                        }),
                    }),
                    None => {}
                },
                Event::DocChanged(view) => {
                    if i.followers {
                        batch.push(DocKey::new(view.collection.clone(), view.id.clone()));
                    }
                    let mut value = None;
                    for s in &i.subs {
                        if let SubKind::Docs(c) = &s.kind {
                            if c == "*" || *c == view.collection {
                                let v = value.get_or_insert_with(|| {
                                    to_js(&view).unwrap_or(JsValue::UNDEFINED)
                                });
                                calls.push((s.f.clone(), v.clone(), JsValue::UNDEFINED));
                            }
                        }
                    }
                }
                Event::ConflictOpened(c) => {
                    for s in i
                        .subs
                        .iter()
                        .filter(|s| matches!(s.kind, SubKind::Conflicts))
                    {
                        let v = to_js(&c).unwrap_or(JsValue::UNDEFINED);
                        calls.push((s.f.clone(), v, JsValue::UNDEFINED));
                    }
                }
                Event::Message { message, offset } => {
                    if i.followers {
                        posts.push(TabMsg::Message {
                            frame: Frame::Broadcast {
                                message: message.clone(),
                                offset: Some(offset),
                            },
                        });
                    }
                    for s in i
                        .subs
                        .iter()
                        .filter(|s| matches!(s.kind, SubKind::Messages))
                    {
                        let v = to_js(&message).unwrap_or(JsValue::UNDEFINED);
                        calls.push((s.f.clone(), v, JsValue::from_f64(offset as f64)));
                    }
                }
                Event::Welcomed {
                    session,
                    tier,
                    vector,
                    ..
                } if session == i.session => {
                    // What the server holds of ours: the status's starting point, since after
                    // a reconnect with nothing to push no `ack` comes.
                    i.peer_tier = Some(tier);
                    i.peer = CloudProgress::default();
                    i.peer.observe(vector.get(me));
                    if tier == Tier::Cloud {
                        i.cloud_dirty |= i.cloud.observe(vector.get(me));
                    }
                }
                Event::PushReceived {
                    session, remaining, ..
                } if session == i.session => i.incoming = remaining,
                Event::PeerAcked {
                    session,
                    tier,
                    vector,
                } => {
                    if session == i.session {
                        i.peer.observe(vector.get(me));
                    }
                    if tier == Tier::Cloud && i.cloud.observe(vector.get(me)) {
                        i.cloud_at = js::now_ms();
                        i.cloud_dirty = true;
                    }
                }
                Event::SessionOpened { session, .. } if session == i.session => {
                    i.handshake_done = true;
                    i.backoff.reset();
                }
                Event::PresenceChanged => presence = true,
                Event::ReplicateRefused {
                    collections,
                    code,
                    message,
                } => {
                    // The server refused the list: its calls reject with its reason.
                    for (list, resolve, reject) in std::mem::take(&mut i.replicating) {
                        if list == collections {
                            calls.push((
                                reject,
                                coded(code.as_str(), &message),
                                JsValue::UNDEFINED,
                            ));
                        } else {
                            i.replicating.push((list, resolve, reject));
                        }
                    }
                }
                Event::Replicated { collections } => {
                    // Calls for this list resolve; a call for another list that no change
                    // carries any more was replaced by a later one.
                    let under_way = engine.replicating().map(<[String]>::to_vec);
                    for (list, resolve, reject) in std::mem::take(&mut i.replicating) {
                        if list == collections {
                            calls.push((resolve, JsValue::UNDEFINED, JsValue::UNDEFINED));
                        } else if under_way.as_ref() != Some(&list) {
                            let e = coded(
                                "bad_request",
                                "replaced by a later subscribeCollections before it took effect",
                            );
                            calls.push((reject, e, JsValue::UNDEFINED));
                        } else {
                            i.replicating.push((list, resolve, reject));
                        }
                    }
                }
                _ => {}
            },
        });
        if closed_session {
            i.drop_link();
        }
        if presence && i.followers {
            posts.push(TabMsg::Presence(
                to_js(&i.engine.presence()).unwrap_or_default(),
            ));
        }
        if presence {
            let entries = to_js(&i.engine.presence()).unwrap_or(JsValue::UNDEFINED);
            for s in i
                .subs
                .iter()
                .filter(|s| matches!(s.kind, SubKind::Presence))
            {
                calls.push((s.f.clone(), entries.clone(), JsValue::UNDEFINED));
            }
        }
        i.clear_error_on_progress();
        let status = i.status();
        if i.last_status.as_ref() != Some(&status) {
            let v = to_js(&status).unwrap_or(JsValue::UNDEFINED);
            for s in i.subs.iter().filter(|s| matches!(s.kind, SubKind::Status)) {
                calls.push((s.f.clone(), v.clone(), JsValue::UNDEFINED));
            }
            if i.followers {
                posts.push(TabMsg::Status(to_js(&status).unwrap_or_default()));
            }
            i.last_status = Some(status);
        }
        if let Some(t) = i.tabs.as_ref().filter(|_| !i.follower && i.followers) {
            if !batch.is_empty() {
                t.post(&TabMsg::Batch { keys: batch });
            }
            let (status, others): (Vec<TabMsg>, Vec<TabMsg>) = posts
                .into_iter()
                .partition(|m| matches!(m, TabMsg::Status(_)));
            for m in others.iter().chain(&replies).chain(&status) {
                t.post(m);
            }
        }
    }
    if closed_session {
        reconnect_later(rc);
    }
    for (f, a, b) in calls {
        // A throwing callback must not stop the others or the pump.
        let _ = f.call2(&JsValue::NULL, &a, &b);
    }
}
