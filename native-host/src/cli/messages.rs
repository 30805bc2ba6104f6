//! `send`, `subscribe` and `watch`: channel messages (published over HTTP, followed over a
//! WebSocket) and the stream of document changes (the changes cursor, polled).

use super::client::{enc, Ctx, Target};
use super::{json_arg, print};
use crate::config::Config;
use crate::error::{Error, Result};
use bridge_core::codec;
use bridge_core::frame::{Frame, Hello};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// `send`: publish one message.
pub(super) async fn send(
    cfg: &Config,
    channel: String,
    json: String,
    t: Target,
) -> Result<ExitCode> {
    let body = json_arg("the message", &json)?;
    let c = Ctx::new(cfg, t);
    let v = c
        .call(
            "POST",
            &c.path(&format!("messages/{}", enc(&channel))),
            Some(body),
        )
        .await?;
    print(&v);
    Ok(ExitCode::SUCCESS)
}

/// `subscribe`: a channel's messages as NDJSON, live, as an agent on the WebSocket.
pub(super) async fn subscribe(
    cfg: &Config,
    channel: String,
    from: Option<u64>,
    t: Target,
) -> Result<ExitCode> {
    let c = Ctx::new(cfg, t);
    let url = format!(
        "{}/v1/spaces/{}/ws",
        c.ws.trim_end_matches('/'),
        enc(&c.space)
    );
    let (mut ws, _) =
        tokio_tungstenite::connect_async(&url)
            .await
            .map_err(|e| Error::WsUnreachable {
                url: url.clone(),
                source: Box::new(e),
            })?;
    let hello = Frame::Hello(Hello {
        space: c.space.clone(),
        name: Some("cli-subscribe".into()),
        token: c.token.clone(),
        ..Hello::default()
    });
    let sub = Frame::Subscribe {
        req: Some(1),
        channel: Some(channel),
        collection: None,
        from,
    };
    for f in [hello, sub] {
        ws.send(Message::Text(codec::encode_json(&f).into()))
            .await
            .map_err(|e| Error::WsSend {
                url: url.clone(),
                source: Box::new(e),
            })?;
    }
    while let Some(msg) = ws.next().await {
        let msg = msg.map_err(|e| Error::WsLost {
            url: url.clone(),
            source: Box::new(e),
        })?;
        let Message::Text(text) = msg else {
            if let Message::Close(f) = msg {
                return Err(Error::Closed {
                    reason: f.map(|f| f.reason.to_string()).unwrap_or_default(),
                });
            }
            continue;
        };
        // A frame this CLI cannot decode (a newer host's) is not for it: skip it.
        match codec::decode_json(text.as_bytes()) {
            Ok(Frame::Broadcast { message, offset }) => {
                let mut m = serde_json::to_value(&message).unwrap_or(Value::Null);
                if let Some(obj) = m.as_object_mut() {
                    obj.insert("offset".into(), offset.map_or(Value::Null, Value::from));
                }
                print(&m);
            }
            Ok(Frame::Error { code, message, .. }) => {
                return Err(Error::Rejected {
                    code: code.as_str().to_owned(),
                    message,
                })
            }
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `watch`: document changes as NDJSON, each once, in order, from `since` (default: now).
pub(super) async fn watch(
    cfg: &Config,
    since: Option<String>,
    interval: u64,
    t: Target,
) -> Result<ExitCode> {
    let c = Ctx::new(cfg, t);
    let mut cursor = match since {
        Some(s) => s,
        None => {
            // "From now": the host's current cursor for this space.
            let st = c.status().await?;
            st.space(&c.space)
                .map(|s| s.cursor.clone())
                .unwrap_or_default()
        }
    };
    eprintln!("watching space {} from cursor {cursor:?}", c.space);
    loop {
        let v = c
            .call(
                "GET",
                &c.path(&format!("changes?since={}", enc(&cursor))),
                None,
            )
            .await?;
        for ch in v["changes"].as_array().into_iter().flatten() {
            print(ch);
        }
        if let Some(next) = v["cursor"].as_str() {
            cursor = advance(&cursor, next);
        }
        if v["remaining"].as_u64().unwrap_or(0) == 0 {
            tokio::time::sleep(Duration::from_millis(interval.max(10))).await;
        }
    }
}

/// The cursor after a page of changes: everything `cursor` covered and everything `next`
/// does, so a poll never goes back to changes already printed (whatever the host's cursor
/// names, a merge of both is never behind either).
fn advance(cursor: &str, next: &str) -> String {
    match (
        bridge_core::api::parse_cursor(cursor),
        bridge_core::api::parse_cursor(next),
    ) {
        (Ok(mut a), Ok(b)) => {
            a.join(&b);
            bridge_core::api::format_cursor(&a)
        }
        _ => next.to_owned(),
    }
}
