//! The WebSocket link to a host (binary frames, peer session): dial, jittered backoff,
//! the `online` / `offline` events, and the heartbeat that redials a silent link.

use super::drain::schedule;
use super::state::{Inner, Input, Shared};
use crate::js;
use bridge_core::{codec, Frame};
use js_sys::Uint8Array;
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

/// An open WebSocket and the handlers it calls (dropped with it).
pub(super) struct Link {
    pub(super) ws: WebSocket,
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// Opens the link if there is a URL, no link, and the browser thinks it is online.
pub(super) fn dial(rc: &Shared) {
    let (url, dial) = {
        let mut i = rc.borrow_mut();
        let Some(url) = i.url.clone() else { return };
        if i.closed || i.follower || i.link.is_some() || i.timer.is_some() {
            return;
        }
        if !js::navigator_online() {
            return; // the `online` event dials
        }
        let dial = i.next_dial;
        i.next_dial += 1;
        (url, dial)
    };
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(e) => {
            rc.borrow_mut().error = Some(format!("cannot open a WebSocket to {url}: {e:?}"));
            reconnect_later(rc);
            return;
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    let weak = Rc::downgrade(rc);
    let on_open = Closure::<dyn FnMut(web_sys::Event)>::new({
        let weak = weak.clone();
        move |_| {
            let Some(rc) = weak.upgrade() else { return };
            {
                let mut i = rc.borrow_mut();
                if i.dial != dial {
                    return;
                }
                let (token, name) = (i.token.clone(), i.name.clone());
                i.last_rx = js::now_ms();
                i.session = i.engine.connect(js::now_ms(), token, &name);
            }
            schedule(&rc);
        }
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let weak = weak.clone();
        move |e: MessageEvent| {
            let Some(rc) = weak.upgrade() else { return };
            let data = e.data();
            // Peers speak binary, and hosts answer in kind; the JSON decoder (agents' text
            // frames) would add a third of the package for nothing.
            let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() else {
                return;
            };
            let bytes = Uint8Array::new(buf).to_vec();
            let decoded = codec::decode_binary(&bytes);
            {
                let mut i = rc.borrow_mut();
                if i.dial != dial {
                    return;
                }
                i.last_rx = js::now_ms();
                match decoded {
                    Ok(frame) => {
                        i.observe(&frame);
                        // The pump hands it to the engine once the documents it names are
                        // read (in order with the writes and frames before it).
                        let session = i.session;
                        i.inputs.push_back(Input::Frame { session, frame });
                    }
                    Err(err) => {
                        // The binary reader only: `codec::request_id` would link the JSON one.
                        let req = codec::binary::request_id(&bytes);
                        let sid = i.session;
                        i.engine.handle_decode_error(sid, req, &err);
                    }
                }
            }
            schedule(&rc);
        }
    });
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
        let Some(rc) = weak.upgrade() else { return };
        {
            let mut i = rc.borrow_mut();
            if i.dial != dial {
                return;
            }
            if !e.was_clean() && i.error.is_none() && !i.handshake_done {
                i.error = Some(format!(
                    "cannot reach {}",
                    i.url.clone().unwrap_or_default()
                ));
            }
            i.drop_link();
        }
        reconnect_later(&rc);
        schedule(&rc);
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let mut i = rc.borrow_mut();
    i.dial = dial;
    i.link = Some(Link {
        ws,
        _on_open: on_open,
        _on_message: on_message,
        _on_close: on_close,
    });
}

/// Dials again after the backoff's next delay (jittered with `crypto.getRandomValues`).
pub(super) fn reconnect_later(rc: &Shared) {
    let delay = {
        let mut i = rc.borrow_mut();
        if i.closed || i.url.is_none() || i.timer.is_some() || i.link.is_some() {
            return;
        }
        let random = js::random_u64().unwrap_or_else(|_| js::now_ms());
        i.backoff.next_delay(random)
    };
    let weak = Rc::downgrade(rc);
    let f = Closure::once_into_js(move || {
        if let Some(rc) = weak.upgrade() {
            rc.borrow_mut().timer = None;
            dial(&rc);
        }
    });
    let id = js::set_timeout(f.unchecked_ref(), delay.min(i32::MAX as u64) as i32);
    rc.borrow_mut().timer = Some(id);
}

/// `online`: redial now with a fresh backoff. `offline`: drop the link at once (a socket
/// can linger for minutes before the browser notices it is dead) and work from the store.
pub(super) fn listen_network(rc: &Shared) {
    let target: web_sys::EventTarget = js_sys::global().unchecked_into();
    let weak: Weak<RefCell<Inner>> = Rc::downgrade(rc);
    let on_online = Closure::<dyn FnMut(web_sys::Event)>::new({
        let weak = weak.clone();
        move |_| {
            let Some(rc) = weak.upgrade() else { return };
            {
                let mut i = rc.borrow_mut();
                i.backoff.reset();
                if let Some(t) = i.timer.take() {
                    js::clear_timeout(t);
                }
            }
            dial(&rc);
        }
    });
    let on_offline = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        let Some(rc) = weak.upgrade() else { return };
        rc.borrow_mut().drop_link();
        schedule(&rc);
    });
    let mut i = rc.borrow_mut();
    for (name, l) in [("online", on_online), ("offline", on_offline)] {
        let _ = target.add_event_listener_with_callback(name, l.as_ref().unchecked_ref());
        i.listeners.push((name, l));
    }
    drop(i);
    start_heartbeat(rc);
}

/// Pings the link every `heartbeat_ms` and redials one that stayed silent for three: a
/// socket whose network vanished without the browser noticing can otherwise hang for
/// minutes, showing "online" while nothing moves.
fn start_heartbeat(rc: &Shared) {
    let weak = Rc::downgrade(rc);
    let tick = Closure::<dyn FnMut()>::new(move || {
        let Some(rc) = weak.upgrade() else { return };
        let dead = {
            let mut i = rc.borrow_mut();
            let Some(link) = &i.link else { return };
            if !i.handshake_done {
                return;
            }
            let now = js::now_ms();
            if now.saturating_sub(i.last_rx) > 3 * u64::from(i.heartbeat_ms) {
                i.error = Some("the link went silent; reconnecting".into());
                i.drop_link();
                true
            } else {
                let ping = codec::encode_binary(&Frame::Ping { nonce: now });
                let _ = link.ws.send_with_u8_array(&ping);
                false
            }
        };
        if dead {
            reconnect_later(&rc);
            schedule(&rc);
        }
    });
    let ms = rc.borrow().heartbeat_ms;
    let id = js::set_interval(tick.as_ref().unchecked_ref(), ms as i32);
    rc.borrow_mut().heartbeat = Some((id, tick));
}
