//! One HTTP/1.1 request to a host, over hyper's client connection: what the CLI's commands,
//! the MCP `status` tool and the inspector's cloud-status proxy (`web.rs`) send. Only
//! `http://` URLs; an answer of any status is returned, for the caller to read.

use crate::error::{Error, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One HTTP/1.1 request to `base` (`http://host:port`): the status and the body.
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> Result<(u16, Bytes)> {
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| Error::NotHttp {
            base: base.to_owned(),
        })?
        .trim_end_matches('/');
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|source| Error::Unreachable {
            base: base.to_owned(),
            source,
        })?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| Error::Handshake {
            base: base.to_owned(),
            source,
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority);
    if let Some(t) = token {
        b = b.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if body.is_some() {
        b = b.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = b
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(Error::BadRequest)?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|source| Error::RequestFailed {
            base: base.to_owned(),
            source,
        })?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|source| Error::AnswerUnread {
            base: base.to_owned(),
            source,
        })?
        .to_bytes();
    Ok((status, body))
}
