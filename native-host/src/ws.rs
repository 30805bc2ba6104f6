//! WebSocket transport: moves frames between sockets and the hub, nothing else.
//!
//! Path `/v1/spaces/{space}/ws` (or `/` for the default space). Text messages are JSON frames
//! ([`codec::decode_json`]); anything that does not decode is handed to the engine as a decode
//! error, which answers with an `error` frame and keeps an agent's session. Binary messages
//! use the compact binary codec; each connection is answered in the encoding of the last
//! frame it sent that decoded (a frame that does not decode changes nothing).

use crate::hub::{Input, Output};
use crate::in_queue;
use crate::out_queue::{self, Budget};
use bridge_core::frame::MAX_FRAME_BYTES;
use bridge_core::{codec, ErrorCode, Frame, SessionId};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

/// Messages up to this size reach the codec (which answers `too_large` above
/// [`MAX_FRAME_BYTES`] and keeps an agent's session); a larger one is answered with a
/// `too_large` error and a close with 1009, since the socket cannot skip the rest of it.
pub const MAX_WS_MESSAGE: usize = 16 * MAX_FRAME_BYTES;

/// How a connection's read side ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The peer closed, the socket failed, or the hub let go.
    Normally,
    /// The peer sent something the socket cannot read past (a message over
    /// [`MAX_WS_MESSAGE`], a text message that is not UTF-8); it was answered with an
    /// `error` frame and a close. Part of the message may still be unread.
    Refused,
}

/// Close code for a text message that is not UTF-8 (RFC 6455, 1007 "invalid frame
/// payload data").
pub const CLOSE_INVALID_DATA: u16 = 1007;

pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
}

/// The space a WebSocket path names, `None` when the path is not a WebSocket endpoint.
pub fn space_of_path(path: &str, default_space: &str) -> Option<String> {
    let p = path.trim_end_matches('/');
    if p.is_empty() || p == "/ws" {
        return Some(default_space.to_owned());
    }
    let rest = p.strip_prefix("/v1/spaces/")?;
    let space = rest.strip_suffix("/ws")?;
    let space = bridge_core::api::percent_decode(space);
    (!space.is_empty() && !space.contains('/')).then_some(space)
}

pub async fn serve(
    listener: TcpListener,
    hub: mpsc::Sender<Input>,
    default_space: Arc<str>,
    budget: Arc<Budget>,
    in_budget: Arc<in_queue::Budget>,
) {
    crate::http::accept_loop(listener, |stream| {
        tokio::spawn(accept(
            stream,
            hub.clone(),
            default_space.clone(),
            budget.clone(),
            in_budget.connection(),
        ));
    })
    .await
}

async fn accept(
    stream: TcpStream,
    hub: mpsc::Sender<Input>,
    default_space: Arc<str>,
    budget: Arc<Budget>,
    inbound: in_queue::Queue,
) {
    let mut space = None;
    // The handshake callback's error type is tungstenite's, large or not.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match space_of_path(req.uri().path(), &default_space) {
            Some(s) => {
                space = Some(s);
                Ok(resp)
            }
            None => {
                let mut e =
                    ErrorResponse::new(Some("no WebSocket here; use /v1/spaces/{space}/ws".into()));
                *e.status_mut() = StatusCode::NOT_FOUND;
                Err(e)
            }
        }
    };
    let ws =
        match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config()))
            .await
        {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket handshake failed");
                return;
            }
        };
    let Some(space) = space else { return };
    let (out_tx, out_rx) = out_queue::channel(&budget);
    // Weak: the hub's sender alone keeps the writer going (dropping it closes the socket).
    let refuse = out_tx.downgrade();
    let (session_tx, session_rx) = oneshot::channel();
    if hub
        .send(Input::Accept {
            space: space.clone(),
            out: out_tx,
            session: session_tx,
        })
        .await
        .is_err()
    {
        return;
    }
    // The space's engine numbers the session. When the space could not be opened there is
    // none (0 names no session): the hub has queued an error and a close, which `run` sends.
    let session: SessionId = session_rx.await.unwrap_or(0);
    tracing::debug!(session, %space, "connection accepted");
    let queues = Queues {
        out: out_rx,
        inbound,
    };
    let lingering = run(ws, queues, &hub, &space, session, false, &refuse).await;
    let _ = hub.send(Input::Closed { space, session }).await;
    if let Some(mut ws) = lingering {
        // After a refusal: read and drop what the client is still sending. Closing a socket
        // with unread data resets it, and the reset can destroy the close frame before the
        // client reads it.
        linger(ws.get_mut()).await;
    }
}

/// A connection's two queues: what the hub sends it, and its share of the inbound budget.
pub struct Queues {
    pub out: out_queue::Receiver,
    pub inbound: in_queue::Queue,
}

/// How long a connection we closed waits for the other side's close before it is dropped.
pub const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the close of a connection that fell behind may wait for the socket to take it
/// (behind what the socket already holds). Its queue is dropped at once; only the socket's
/// own buffers wait, so a client that paused for a moment still reads why it was closed.
pub const BEHIND_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Moves frames both ways until the connection ends: the other side closed it or it broke,
/// or we closed it (the hub sent [`Output::Close`], or let go) and the other side did not
/// answer the close within [`CLOSE_GRACE`] (a frozen or vanished peer never does).
///
/// When the read side refused input it cannot read past ([`read_loop`]), the error and the
/// close are let out first and the connection is handed back, so that an accepted socket
/// can drain what the client is still sending.
pub async fn run<S>(
    ws: S,
    queues: Queues,
    hub: &mpsc::Sender<Input>,
    space: &str,
    session: SessionId,
    binary: bool,
    refuse: &out_queue::WeakSender,
) -> Option<S>
where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Send
        + Unpin
        + 'static,
{
    let Queues {
        out: out_rx,
        inbound,
    } = queues;
    let (sink, stream) = ws.split();
    let binary = Arc::new(AtomicBool::new(binary));
    let mut writer = tokio::spawn(write_loop(sink, out_rx, binary.clone()));
    let read = read_loop(stream, &inbound, hub, space, session, &binary, refuse);
    tokio::pin!(read);
    let (ended, stream) = tokio::select! {
        r = &mut read => r,
        _ = async {
            let _ = (&mut writer).await;
            tokio::time::sleep(CLOSE_GRACE).await;
        } => return None,
    };
    if ended == Ended::Refused {
        // The writer sends the error and the close (each bounded by CLOSE_GRACE), then ends.
        if let Ok(Ok(sink)) = tokio::time::timeout(CLOSE_GRACE * 3, &mut writer).await {
            return stream.reunite(sink).ok();
        }
    }
    writer.abort();
    None
}

/// Reads frames and hands them to the hub until the socket ends; gives the stream back.
/// Each frame's bytes are reserved in `inbound` first: while the connection (or every
/// connection together) has more read than the hub has handled, this waits, and the socket
/// is not read (TCP slows the client down).
///
/// Input the socket cannot read past is answered here, on `out` (the connection's output
/// queue), with an `error` frame and a close: a message over [`MAX_WS_MESSAGE`] with
/// `too_large` and 1009, a text message that is not UTF-8 with `malformed` and 1007. Neither
/// tells the client to reconnect and send it again.
pub async fn read_loop<S>(
    mut stream: S,
    inbound: &in_queue::Queue,
    hub: &mpsc::Sender<Input>,
    space: &str,
    session: SessionId,
    binary: &AtomicBool,
    out: &out_queue::WeakSender,
) -> (Ended, S)
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    while let Some(msg) = stream.next().await {
        let bytes = match &msg {
            Ok(Message::Text(t)) => t.as_bytes(),
            Ok(Message::Binary(b)) => &b[..],
            _ => &[][..],
        };
        let (decoded, is_binary) = match &msg {
            Ok(Message::Text(_)) => (codec::decode_json(bytes), false),
            Ok(Message::Binary(_)) => (codec::decode_binary(bytes), true),
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(session, error = %e, "connection ended");
                let refusal = match e {
                    tungstenite::Error::Capacity(_) => Some((
                        bridge_core::Error::TooLarge {
                            size: MAX_WS_MESSAGE + 1,
                            max: MAX_FRAME_BYTES,
                        },
                        ErrorCode::TooLarge.close_code(),
                    )),
                    tungstenite::Error::Utf8(why) => Some((
                        bridge_core::Error::Malformed(format!(
                            "a text message must be UTF-8 ({why}); send binary frames as binary messages"
                        )),
                        CLOSE_INVALID_DATA,
                    )),
                    _ => None,
                };
                let Some((error, code)) = refusal else { break };
                if let Some(out) = out.upgrade() {
                    let _ = out.send(Output::Frame(Frame::error(None, &error)));
                    let _ = out.send(Output::Close {
                        code,
                        reason: error.to_string(),
                    });
                }
                return (Ended::Refused, stream);
            }
        };
        crate::hub::WS_BYTES_IN.inc_by(bytes.len() as u64);
        let input = match decoded {
            Ok(frame) => {
                binary.store(is_binary, Ordering::Relaxed);
                let permit = inbound.reserve(bytes.len()).await;
                Input::Frame {
                    space: space.to_owned(),
                    session,
                    frame,
                    permit,
                }
            }
            Err(error) => Input::DecodeError {
                space: space.to_owned(),
                session,
                req: codec::request_id(bytes, is_binary),
                error,
            },
        };
        if hub.send(input).await.is_err() {
            break;
        }
    }
    (Ended::Normally, stream)
}

/// After a refusal: reads and drops what the client still sends, until it closes, stays
/// quiet for a moment, or too much has passed, so that the close frame reaches it first.
async fn linger(tcp: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    let mut budget = 4 * MAX_WS_MESSAGE;
    while budget > 0 {
        match tokio::time::timeout(std::time::Duration::from_millis(500), tcp.read(&mut buf)).await
        {
            Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
            _ => return,
        }
    }
}

/// Writes what the hub sends, batching whatever is queued into one flush, until the hub
/// closes the connection or lets go of it, or its queue falls behind (see [`out_queue`]).
pub async fn write_loop<S>(mut sink: S, mut rx: out_queue::Receiver, binary: Arc<AtomicBool>) -> S
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let behind = rx.fell_behind();
    // A write that waits on a socket nobody reads is abandoned when the queue falls behind:
    // only whole messages reach the socket, so the close can still follow them.
    let ended = tokio::select! {
        biased;
        _ = behind => Written::FellBehind,
        w = write_queued(&mut sink, &mut rx, &binary) => w,
    };
    // What is still queued is dropped now, not when the socket goes.
    drop(rx);
    match ended {
        Written::Failed | Written::Closed => return sink,
        Written::FellBehind => {
            tracing::debug!("connection fell behind; closing it with 1013");
        }
        // The hub let go of this connection (the host is stopping).
        Written::HubGone => {}
    }
    let close = Message::Close(Some(CloseFrame {
        code: CloseCode::Again,
        reason: "the connection fell behind; reconnect".into(),
    }));
    // Bounded: a peer that reads nothing must not hold the connection.
    let _ = tokio::time::timeout(BEHIND_GRACE, sink.send(close)).await;
    sink
}

/// How [`write_queued`] ended.
enum Written {
    /// The socket failed.
    Failed,
    /// The hub's close went out (or its time ran out).
    Closed,
    /// The hub let go of the connection.
    HubGone,
    /// The queue fell behind (only [`write_loop`] sees this).
    FellBehind,
}

async fn write_queued<S>(sink: &mut S, rx: &mut out_queue::Receiver, binary: &AtomicBool) -> Written
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(queued) = next.take() {
            match queued.output() {
                Output::Frame(f) => {
                    if sink
                        .feed(encode(f, binary.load(Ordering::Relaxed)))
                        .await
                        .is_err()
                    {
                        return Written::Failed;
                    }
                }
                Output::Close { code, reason } => {
                    // Bounded: a peer that reads nothing must not hold the connection.
                    let _ =
                        tokio::time::timeout(CLOSE_GRACE, sink.send(close_message(*code, reason)))
                            .await;
                    return Written::Closed;
                }
            }
            // The socket holds the message now: its bytes leave the queue's count.
            drop(queued);
            next = rx.try_recv();
        }
        if sink.flush().await.is_err() {
            return Written::Failed;
        }
    }
    Written::HubGone
}

fn encode(f: &Frame, binary: bool) -> Message {
    let m = if binary {
        Message::Binary(codec::encode_binary(f).into())
    } else {
        Message::Text(codec::encode_json(f).into())
    };
    crate::hub::WS_BYTES_OUT.inc_by(m.len() as u64);
    m
}

fn close_message(code: u16, reason: &str) -> Message {
    // A close reason is at most 123 bytes.
    let mut r = String::new();
    for c in reason.chars() {
        if r.len() + c.len_utf8() > 123 {
            break;
        }
        r.push(c);
    }
    Message::Close(Some(CloseFrame {
        // From the core's mapping (ErrorCode::close_code), shared with the edge worker.
        code: CloseCode::from(code),
        reason: r.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(space_of_path("/", "d").as_deref(), Some("d"));
        assert_eq!(
            space_of_path("/v1/spaces/team/ws", "d").as_deref(),
            Some("team")
        );
        assert_eq!(space_of_path("/v1/spaces/a/b/ws", "d"), None);
        assert_eq!(space_of_path("/other", "d"), None);
    }
}
