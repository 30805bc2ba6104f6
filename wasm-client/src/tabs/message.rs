//! What tabs say to each other over the store's `BroadcastChannel`, and how it looks there.

use bridge_core::{codec, DocKey, Frame};
use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// What tabs say to each other over the `BroadcastChannel` (see [`crate::tabs`]). On the
/// channel a message is a plain object `{ t, tab, id, frame, keys, value }`; frames travel in
/// the core's binary encoding, status and presence as the objects the callbacks get.
pub(crate) enum TabMsg {
    /// Follower → leader: store this write frame; answer with `Reply { tab, id }`.
    Call {
        tab: u64,
        id: u64,
        frame: Frame,
    },
    /// Leader → follower `tab`: stored (`ack` with the dot) or refused (`error`).
    Reply {
        tab: u64,
        id: u64,
        frame: Frame,
    },
    /// Leader → all: these documents changed in the store.
    Batch {
        keys: Vec<DocKey>,
    },
    /// Leader → all: a message was stored (a `broadcast` frame with its offset).
    Message {
        frame: Frame,
    },
    Status(JsValue),
    Presence(JsValue),
    /// A new leader: followers send again every call not answered yet.
    Leader,
    /// A new follower: the leader says its status and presence.
    Joined,
}

impl TabMsg {
    pub(crate) fn to_js(&self) -> Result<JsValue, JsValue> {
        let o = js_sys::Object::new();
        let set = |k: &str, v: &JsValue| js_sys::Reflect::set(&o, &k.into(), v).map(drop);
        let bytes = |f: &Frame| JsValue::from(Uint8Array::from(codec::encode_binary(f).as_slice()));
        let (t, tab, id) = match self {
            TabMsg::Call { tab, id, frame } => {
                set("frame", &bytes(frame))?;
                ("call", *tab, *id)
            }
            TabMsg::Reply { tab, id, frame } => {
                set("frame", &bytes(frame))?;
                ("reply", *tab, *id)
            }
            TabMsg::Batch { keys } => {
                let a: js_sys::Array = keys
                    .iter()
                    .map(|k| {
                        js_sys::Array::of2(&k.collection.as_str().into(), &k.id.as_str().into())
                    })
                    .collect();
                set("keys", &a)?;
                ("batch", 0, 0)
            }
            TabMsg::Message { frame } => {
                set("frame", &bytes(frame))?;
                ("message", 0, 0)
            }
            TabMsg::Status(v) => {
                set("value", v)?;
                ("status", 0, 0)
            }
            TabMsg::Presence(v) => {
                set("value", v)?;
                ("presence", 0, 0)
            }
            TabMsg::Leader => ("leader", 0, 0),
            TabMsg::Joined => ("joined", 0, 0),
        };
        set("t", &t.into())?;
        set("tab", &(tab as f64).into())?;
        set("id", &(id as f64).into())?;
        Ok(o.into())
    }

    /// `None` for anything that is not a well-formed message (another version, a stranger).
    pub(crate) fn from_js(v: &JsValue) -> Option<TabMsg> {
        let get = |k: &str| js_sys::Reflect::get(v, &k.into()).ok();
        let num = |k: &str| get(k).and_then(|x| x.as_f64()).map(|x| x as u64);
        let frame = || {
            let b = get("frame")?.dyn_into::<Uint8Array>().ok()?;
            codec::decode_binary(&b.to_vec()).ok()
        };
        let (tab, id) = (num("tab")?, num("id")?);
        Some(match get("t")?.as_string()?.as_str() {
            "call" => TabMsg::Call {
                tab,
                id,
                frame: frame()?,
            },
            "reply" => TabMsg::Reply {
                tab,
                id,
                frame: frame()?,
            },
            "batch" => {
                let keys = js_sys::Array::from(&get("keys")?)
                    .iter()
                    .filter_map(|k| {
                        let k = js_sys::Array::from(&k);
                        Some(DocKey::new(k.get(0).as_string()?, k.get(1).as_string()?))
                    })
                    .collect();
                TabMsg::Batch { keys }
            }
            "message" => TabMsg::Message { frame: frame()? },
            "status" => TabMsg::Status(get("value")?),
            "presence" => TabMsg::Presence(get("value")?),
            "leader" => TabMsg::Leader,
            "joined" => TabMsg::Joined,
            _ => return None,
        })
    }
}
