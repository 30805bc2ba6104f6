//! The tab holding the store: it answers the calls follower tabs forward, and a follower
//! that gets the Web Lock is promoted to it.

use super::convert::to_js;
use super::damage_report;
use super::drain::schedule;
use super::link::{dial, listen_network};
use super::new_engine;
use super::sleep;
use super::state::{Input, Shared, Waiter};
use crate::status::CloudProgress;
use crate::tabs::message::TabMsg;
use bridge_core::request::RequestKey;
use js_sys::Function;
use wasm_bindgen::prelude::*;

/// A message from a follower tab: a call to run, or a newcomer to tell the status.
pub(super) fn on_tab_message(rc: &Shared, msg: TabMsg) {
    match msg {
        TabMsg::Call { tab, id, frame } => {
            {
                let mut i = rc.borrow_mut();
                i.followers = true;
                // The pump runs it once its document is read, and answers a refusal.
                i.inputs.push_back(Input::Call {
                    frame,
                    key: Some(RequestKey { origin: tab, id }),
                    waiter: Waiter::Tab { tab, id },
                });
            }
            schedule(rc);
        }
        TabMsg::Joined => {
            rc.borrow_mut().followers = true;
            let i = rc.borrow();
            if let Some(t) = &i.tabs {
                t.post(&TabMsg::Status(to_js(&i.status()).unwrap_or_default()));
                t.post(&TabMsg::Presence(
                    to_js(&i.engine.presence()).unwrap_or_default(),
                ));
            }
        }
        _ => {}
    }
}

/// The leader tab is gone and this tab got the lock: rebuild the engine from the store (the
/// leader left there everything it acknowledged), open the link, and run the calls the old
/// leader never answered.
pub(super) async fn promote(rc: Shared, release: Function) {
    // A refresh of the old leader's last batch may still be reading the store: let it end.
    loop {
        {
            let i = rc.borrow();
            if i.closed || (i.store.is_some() && !i.inbox_busy) {
                break;
            }
        }
        sleep(5).await;
    }
    let taken = {
        let mut i = rc.borrow_mut();
        if i.closed {
            None
        } else {
            i.store.take().map(|s| (s, i.engine.config().clone()))
        }
    };
    let Some((mut store, cfg)) = taken else {
        let _ = release.call0(&JsValue::NULL);
        return;
    };
    let (mut engine, scratch) = new_engine(cfg);
    let mut loaded = store.load(&mut engine).await;
    if let Ok(l) = &loaded {
        if let Err(e) = store.set_aside(&l.damaged).await {
            loaded = Err(e);
        }
    }
    {
        let mut guard = rc.borrow_mut();
        let i = &mut *guard;
        i.store = Some(store);
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                i.error = Some(e.to_string());
                let _ = release.call0(&JsValue::NULL);
                return;
            }
        };
        i.engine = engine;
        i.scratch = scratch;
        i.cloud = CloudProgress {
            acked: loaded.cloud.acked,
        };
        i.cloud_at = loaded.cloud.at;
        if let Some(report) = damage_report(&loaded.damaged) {
            i.error = Some(report);
        }
        i.follower = false;
        // Other tabs may be following too: announce batches from now on.
        i.followers = true;
        i.mirror_status = None;
        i.mirror_presence = None;
        i.release_lock = Some(release);
        // Each with its key: a call the old leader stored but did not answer is answered
        // from the store, not made again.
        for (id, (frame, resolve, reject)) in std::mem::take(&mut i.forwarded) {
            let key = RequestKey {
                origin: i.tab_id,
                id,
            };
            i.inputs.push_back(Input::Call {
                frame,
                key: Some(key),
                waiter: Waiter::Local(resolve, reject),
            });
        }
    }
    // Calls other followers sent while no tab led are re-sent on this announcement.
    if let Some(t) = &rc.borrow().tabs {
        t.post(&TabMsg::Leader);
    }
    listen_network(&rc);
    dial(&rc);
    schedule(&rc);
}
