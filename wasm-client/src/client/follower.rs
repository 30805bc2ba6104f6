//! A tab that follows the one holding the store: it mirrors the batches, messages, status
//! and presence the leader announces, and settles the calls it forwarded.

use super::convert::{coded, js_err, to_js};
use super::new_engine;
use super::state::{callbacks, Shared, SubKind};
use crate::tabs::message::TabMsg;
use bridge_core::doc::DocState;
use bridge_core::{DocKey, Frame};
use js_sys::Function;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// A message from the leader tab (or another follower, which this one ignores).
pub(super) async fn on_tab_message(rc: &Shared, msg: TabMsg) {
    match msg {
        TabMsg::Batch { keys } => refresh(rc, keys).await,
        TabMsg::Leader => {
            let i = rc.borrow();
            if let Some(t) = &i.tabs {
                for (id, (frame, _, _)) in &i.forwarded {
                    t.post(&TabMsg::Call {
                        tab: i.tab_id,
                        id: *id,
                        frame: frame.clone(),
                    });
                }
            }
        }
        TabMsg::Reply { tab, id, frame } => {
            let waiter = {
                let mut i = rc.borrow_mut();
                if tab != i.tab_id {
                    return;
                }
                i.forwarded.remove(&id)
            };
            if let Some((_, resolve, reject)) = waiter {
                let _ = match frame {
                    Frame::Ack(a) => resolve.call1(
                        &JsValue::NULL,
                        &a.dot
                            .map_or(Ok(JsValue::UNDEFINED), |d| to_js(&d))
                            .unwrap_or_default(),
                    ),
                    Frame::Error { code, message, .. } => {
                        reject.call1(&JsValue::NULL, &coded(code.as_str(), &message))
                    }
                    _ => reject.call1(&JsValue::NULL, &js_err("the leader tab answered oddly")),
                };
            }
        }
        TabMsg::Message {
            frame: Frame::Broadcast { message, offset },
        } => {
            let m = to_js(&message).unwrap_or_default();
            let offset = JsValue::from_f64(offset.unwrap_or(0) as f64);
            for f in callbacks(rc, |k| matches!(k, SubKind::Messages)) {
                let _ = f.call2(&JsValue::NULL, &m, &offset);
            }
        }
        TabMsg::Status(v) => {
            let first = rc.borrow_mut().mirror_status.replace(v.clone()).is_none();
            if first {
                catch_up(rc).await;
            }
            for f in callbacks(rc, |k| matches!(k, SubKind::Status)) {
                let _ = f.call1(&JsValue::NULL, &v);
            }
        }
        TabMsg::Presence(v) => {
            rc.borrow_mut().mirror_presence = Some(v.clone());
            for f in callbacks(rc, |k| matches!(k, SubKind::Presence)) {
                let _ = f.call1(&JsValue::NULL, &v);
            }
        }
        _ => {}
    }
}

/// Follower, once the leader answered its `joined` (so every later batch is announced): if
/// the leader stored anything between this tab's load and then, load the store again.
async fn catch_up(rc: &Shared) {
    let Some(store) = rc.borrow_mut().store.take() else {
        return;
    };
    let stored = store.stored_vector().await;
    let mut store = store;
    let behind = match stored {
        Ok(Some(v)) => &v != rc.borrow().engine.replica().vector(),
        Ok(None) => false,
        Err(_) => true,
    };
    if behind {
        let (mut engine, scratch) = new_engine(rc.borrow().engine.config().clone());
        if store.load(&mut engine).await.is_ok() {
            let mut i = rc.borrow_mut();
            i.engine = engine;
            i.scratch = scratch;
        }
    }
    rc.borrow_mut().store = Some(store);
}

/// Follower: re-reads what the leader stored and tells the callbacks.
async fn refresh(rc: &Shared, keys: Vec<DocKey>) {
    let Some(store) = rc.borrow_mut().store.take() else {
        return;
    };
    let read = store.read_docs(&keys).await;
    let mut calls: Vec<(Function, JsValue)> = Vec::new();
    {
        let mut i = rc.borrow_mut();
        i.store = Some(store);
        let states = match read {
            Ok(states) => states,
            Err(e) => {
                i.error = Some(e.to_string());
                return;
            }
        };
        // What the leader stored is the newest: the scratch drops what it read of these
        // documents and every range answer, and takes the states read now.
        let states: Vec<(DocKey, Arc<DocState>)> =
            states.into_iter().map(|(k, s)| (k, Arc::new(s))).collect();
        i.scratch.lock().stored_elsewhere(&keys, &states);
        for (key, state) in states {
            i.engine.restore_doc(key.clone(), DocState::clone(&state));
            // Read from the cache or the scratch (both hold it now).
            let Ok(view) = i.engine.replica().view(&key) else {
                continue;
            };
            let conflict = if view.conflict {
                i.engine.replica().conflict(&key).ok().flatten()
            } else {
                None
            };
            for s in &i.subs {
                match &s.kind {
                    SubKind::Docs(c) if c == "*" || *c == view.collection => {
                        calls.push((s.f.clone(), to_js(&view).unwrap_or_default()));
                    }
                    SubKind::Conflicts => {
                        if let Some(c) = &conflict {
                            calls.push((s.f.clone(), to_js(c).unwrap_or_default()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    for (f, v) in calls {
        let _ = f.call1(&JsValue::NULL, &v);
    }
}
