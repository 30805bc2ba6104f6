//! HTTP transport (hyper, HTTP/1.1): reads the request and its bounded body, hands it to
//! [`bridge_core::api`] and the hub, writes the answer. (The client side is
//! [`crate::http_client`].)

use crate::hub::Input;
use bridge_core::api::{self, ApiError, ApiRequest, ApiResponse, Route};
use bridge_core::{DocKey, Error, ErrorCode, Request as CoreRequest};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Accepts connections forever, handing each (with `TCP_NODELAY`) to `on_conn`.
pub async fn accept_loop(listener: TcpListener, mut on_conn: impl FnMut(TcpStream)) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                on_conn(stream);
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

pub async fn serve(listener: TcpListener, hub: mpsc::Sender<Input>, mcp: crate::mcp::HttpService) {
    accept_loop(listener, |stream| {
        let hub = hub.clone();
        let mcp = mcp.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (hub, mcp) = (hub.clone(), mcp.clone());
                async move {
                    // `/mcp`: MCP over Streamable HTTP (src/mcp), everything else the API.
                    if crate::mcp::is_mcp_path(req.uri().path()) {
                        let resp = mcp.handle(req).await;
                        return Ok::<_, Infallible>(
                            resp.map(|b| BodyExt::boxed(b.map_err(|never| match never {}))),
                        );
                    }
                    handle(req, hub).await
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        });
    })
    .await
}

/// Every answer's body: whole, or streamed (an export); a streamed body that fails part way
/// ends with an error, so the client sees a cut transfer rather than a short export.
type Body = BoxBody<Bytes, std::io::Error>;

fn respond(r: ApiResponse) -> Response<Body> {
    let body = Full::new(Bytes::from(r.body)).map_err(|never| match never {});
    let mut resp = Response::new(BodyExt::boxed(body));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(r.content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

async fn ask(
    hub: &mpsc::Sender<Input>,
    make: impl FnOnce(oneshot::Sender<ApiResponse>) -> Input,
) -> ApiResponse {
    let (tx, rx) = oneshot::channel();
    if hub.send(make(tx)).await.is_err() {
        return ApiError::new(ErrorCode::Internal, "the host is stopping").response();
    }
    rx.await.unwrap_or_else(|_| {
        ApiError::new(ErrorCode::Internal, "the request was dropped; retry").response()
    })
}

/// An export of more than one page: the first page at once, then each next page asked of
/// the hub as the client reads, so neither the hub nor this connection holds the space.
fn export_stream(
    hub: mpsc::Sender<Input>,
    space: String,
    token: Option<String>,
    first: ApiResponse,
) -> Response<Body> {
    let content_type = first.content_type;
    let head = futures_util::stream::once(std::future::ready(Ok(hyper::body::Frame::data(
        Bytes::from(first.body),
    ))));
    let state = (hub, space, token, first.next);
    let rest = futures_util::stream::unfold(Some(state), |state| async move {
        let (hub, space, token, next) = state?;
        let after: DocKey = next?;
        let page = ask(&hub, |reply| Input::Api {
            space: space.clone(),
            request: CoreRequest::Export { after: Some(after) },
            token: token.clone(),
            reply,
        })
        .await;
        if page.status != 200 {
            let why = String::from_utf8_lossy(&page.body).into_owned();
            tracing::warn!(%space, %why, "export stopped part way");
            return Some((Err(std::io::Error::other(why)), None));
        }
        let chunk = Ok(hyper::body::Frame::data(Bytes::from(page.body)));
        Some((chunk, Some((hub, space, token, page.next))))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(head.chain(rest))));
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

async fn handle(
    req: Request<Incoming>,
    hub: mpsc::Sender<Input>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let body = match Limited::new(req.into_body(), api::MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let err = if e.is::<http_body_util::LengthLimitError>() {
                Error::TooLarge {
                    size: api::MAX_BODY_BYTES + 1,
                    max: api::MAX_BODY_BYTES,
                }
                .into()
            } else {
                ApiError::new(
                    ErrorCode::Malformed,
                    format!("the body could not be read: {e}"),
                )
            };
            return Ok(respond(err.response()));
        }
    };
    if method == "GET" {
        if let Some(resp) = crate::web::get(&path, token.as_deref()).await {
            return Ok(resp.map(|b| BodyExt::boxed(b.map_err(|never| match never {}))));
        }
    }
    let route = api::parse(&ApiRequest {
        method: &method,
        path: &path,
        query: query.as_deref(),
        body: &body,
    });
    let resp = match route {
        Err(e) => e.response(),
        Ok(Route::Health) => ApiResponse::json(200, &serde_json::json!({"ok": true})),
        Ok(Route::Metrics) => ask(&hub, |reply| Input::Metrics { token, reply }).await,
        Ok(Route::Status) => ask(&hub, |reply| Input::Status { token, reply }).await,
        Ok(Route::Sync { push, pull }) => {
            ask(&hub, |reply| Input::Sync {
                push,
                pull,
                token,
                reply: Some(reply),
            })
            .await
        }
        Ok(Route::Space { space, request }) => {
            let export = matches!(request, CoreRequest::Export { .. });
            let first = ask(&hub, |reply| Input::Api {
                space: space.clone(),
                request,
                token: token.clone(),
                reply,
            })
            .await;
            if export && first.status == 200 && first.next.is_some() {
                return Ok(export_stream(hub, space, token, first));
            }
            first
        }
    };
    Ok(respond(resp))
}
