//! The store's `BroadcastChannel` among the tabs of this profile: joined at `open()`, its
//! messages handled one at a time, by the leader or a follower (see [`crate::tabs`]).

use super::state::Shared;
use super::{follower, leader};
use crate::tabs::message::TabMsg;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent};

pub(super) struct TabChannel {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl Drop for TabChannel {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

impl TabChannel {
    pub(super) fn post(&self, msg: &TabMsg) {
        if let Ok(v) = msg.to_js() {
            let _ = self.channel.post_message(&v);
        }
    }
}

pub(super) fn tab_channel_supported() -> bool {
    js_sys::Reflect::has(&js_sys::global(), &"BroadcastChannel".into()).unwrap_or(false)
}

/// Joins the store's `BroadcastChannel`: a leader answers calls, a follower mirrors.
pub(super) fn join_tabs(rc: &Shared, db_name: &str) {
    let Ok(channel) = BroadcastChannel::new(&format!("sacred-bridge:{db_name}")) else {
        return;
    };
    let weak = Rc::downgrade(rc);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        let Some(rc) = weak.upgrade() else { return };
        let Some(msg) = TabMsg::from_js(&e.data()) else {
            return;
        };
        rc.borrow_mut().inbox.push_back(msg);
        process_inbox(&rc);
    });
    channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let mut i = rc.borrow_mut();
    let tabs = TabChannel {
        channel,
        _on_message: on_message,
    };
    if i.follower {
        tabs.post(&TabMsg::Joined);
    }
    i.tabs = Some(tabs);
}

fn process_inbox(rc: &Shared) {
    {
        let mut i = rc.borrow_mut();
        if i.inbox_busy {
            return;
        }
        i.inbox_busy = true;
    }
    let rc = rc.clone();
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let next = {
                let mut i = rc.borrow_mut();
                let next = i.inbox.pop_front();
                if next.is_none() {
                    i.inbox_busy = false;
                }
                next
            };
            let Some(msg) = next else { break };
            on_tab_message(&rc, msg).await;
        }
    });
}

async fn on_tab_message(rc: &Shared, msg: TabMsg) {
    if rc.borrow().follower {
        follower::on_tab_message(rc, msg).await;
    } else {
        leader::on_tab_message(rc, msg);
    }
}
