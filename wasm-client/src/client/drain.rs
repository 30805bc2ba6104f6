//! The host loop: every input is handed to the engine, then the pump runs the core's loop in
//! its split form, since IndexedDB is asynchronous: `Engine::cut_batches`, one IndexedDB
//! transaction for them, `Engine::batches_persisted`, and `Engine::drain` — frames to send,
//! acks to release, events for the callbacks and for follower tabs.

use super::convert::to_js;
use super::link::reconnect_later;
use super::state::{Shared, SubKind, Waiter};
use crate::js;
use crate::status::CloudProgress;
use crate::store::CloudMeta;
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

/// Persist, release, send — until the engine has nothing staged.
async fn pump(rc: Shared) {
    loop {
        drain(&rc);
        let (batches, mut store, cloud) = {
            let mut i = rc.borrow_mut();
            // Batches whose write failed go first, then what the engine cut since.
            let mut batches = std::mem::take(&mut i.unwritten);
            batches.extend(i.engine.cut_batches());
            let cloud = std::mem::take(&mut i.cloud_dirty).then_some(CloudMeta {
                acked: i.cloud.acked,
                at: i.cloud_at,
            });
            if batches.is_empty() && cloud.is_none() {
                i.pumping = false;
                break;
            }
            let Some(store) = i.store.take() else {
                i.unwritten = batches;
                i.pumping = false;
                break;
            };
            (batches, store, cloud)
        };
        let written = store.write(&batches).await;
        if let Some(c) = cloud {
            let _ = store.write_cloud(c).await;
        }
        let mut i = rc.borrow_mut();
        i.store = Some(store);
        match written {
            Ok(()) => {
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
    drain(&rc);
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
        i.engine.drain(|_, out| match out {
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
