//! The tab holding the store: it answers the calls follower tabs forward, and a follower
//! that gets the Web Lock is promoted to it.

use super::convert::{core_err, to_js};
use super::damage_report;
use super::drain::schedule;
use super::link::{dial, listen_network};
use super::sleep;
use super::state::{Shared, Waiter};
use crate::js;
use crate::status::CloudProgress;
use crate::tabs;
use crate::tabs::message::TabMsg;
use bridge_core::request::RequestKey;
use bridge_core::{Engine, Frame};
use js_sys::Function;
use wasm_bindgen::prelude::*;

/// A message from a follower tab: a call to run, or a newcomer to tell the status.
pub(super) fn on_tab_message(rc: &Shared, msg: TabMsg) {
    match msg {
        TabMsg::Call { tab, id, frame } => {
            let failed = {
                let mut i = rc.borrow_mut();
                i.followers = true;
                let key = RequestKey { origin: tab, id };
                match tabs::apply(frame, &mut i.engine, js::now_ms(), Some(key)) {
                    Ok(req) => {
                        i.waiting.insert(req, Waiter::Tab { tab, id });
                        None
                    }
                    Err(e) => Some(e),
                }
            };
            if let Some(e) = failed {
                let reply = TabMsg::Reply {
                    tab,
                    id,
                    frame: Frame::error(None, &e),
                };
                if let Some(t) = &rc.borrow().tabs {
                    t.post(&reply);
                }
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
    let mut engine = Engine::new(cfg);
    let mut loaded = store.load(&mut engine).await;
    if let Ok(l) = &loaded {
        if let Err(e) = store.set_aside(&l.damaged).await {
            loaded = Err(e);
        }
    }
    let mut rejected: Vec<(Function, JsValue)> = Vec::new();
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
            match tabs::apply(frame, &mut i.engine, js::now_ms(), Some(key)) {
                Ok(req) => {
                    i.waiting.insert(req, Waiter::Local(resolve, reject));
                }
                Err(e) => rejected.push((reject, core_err(&e))),
            }
        }
    }
    for (reject, e) in rejected {
        let _ = reject.call1(&JsValue::NULL, &e);
    }
    // Calls other followers sent while no tab led are re-sent on this announcement.
    if let Some(t) = &rc.borrow().tabs {
        t.post(&TabMsg::Leader);
    }
    listen_network(&rc);
    dial(&rc);
    schedule(&rc);
}
