//! The few browser globals used directly, declared on `globalThis` so they work in a page and
//! in a worker alike: timers, `crypto.getRandomValues`, `navigator.onLine`, Web Locks.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    pub fn set_timeout(handler: &Function, ms: i32) -> i32;
    #[wasm_bindgen(js_name = clearTimeout)]
    pub fn clear_timeout(id: i32);
    #[wasm_bindgen(js_name = setInterval)]
    pub fn set_interval(handler: &Function, ms: i32) -> i32;
    #[wasm_bindgen(js_name = clearInterval)]
    pub fn clear_interval(id: i32);
    #[wasm_bindgen(catch, js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// Milliseconds since the epoch (the host's clock; the core takes time only as input).
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// A random `u64` from `crypto.getRandomValues`; errors when the platform has none.
pub fn random_u64() -> Result<u64, JsValue> {
    let mut b = [0u8; 8];
    get_random_values(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// `navigator.onLine`, `true` where there is no such thing.
pub fn navigator_online() -> bool {
    Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"onLine".into()))
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

/// The outcome of asking for the store's Web Lock.
pub enum Lock {
    /// Held until the function is called.
    Held(Function),
    /// Another tab holds it.
    Busy,
    /// No Web Locks here (an insecure context): nothing can be coordinated.
    Unsupported,
}

/// Asks for the exclusive Web Lock `name`; with `wait`, resolves only once it is granted
/// (after the holder releases it or its tab is gone), else at once with [`Lock::Busy`].
///
/// Two tabs must never run two engines over one IndexedDB store with the same replica id:
/// they would hand out the same dots for different writes. The holder leads (see `tabs`).
pub async fn lock(name: &str, wait: bool) -> Result<Lock, JsValue> {
    let locks = Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"locks".into()))?;
    if locks.is_undefined() || locks.is_null() {
        return Ok(Lock::Unsupported);
    }
    let request: Function = Reflect::get(&locks, &"request".into())?.dyn_into()?;
    let mut release: Option<Function> = None;
    // The lock is held for as long as the promise the callback returns stays pending.
    let held = Promise::new(&mut |resolve, _| release = Some(resolve));
    let mut granted: Option<Function> = None;
    let answered = Promise::new(&mut |resolve, _| granted = Some(resolve));
    let (Some(release), Some(granted)) = (release, granted) else {
        return Err(js_sys::Error::new("Promise executors did not run").into());
    };
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let got = !lock.is_null() && !lock.is_undefined();
        let _ = granted.call1(&JsValue::NULL, &JsValue::from_bool(got));
        if got {
            held.into()
        } else {
            JsValue::UNDEFINED
        }
    });
    let opts = js_sys::Object::new();
    if !wait {
        Reflect::set(&opts, &"ifAvailable".into(), &JsValue::TRUE)?;
    }
    request.call3(&locks, &name.into(), &opts, &callback)?;
    if JsFuture::from(answered).await?.as_bool() == Some(true) {
        Ok(Lock::Held(release))
    } else {
        Ok(Lock::Busy)
    }
}
