//! The web inspector, embedded in the binary: the page (`wasm-client/inspector/`) and the
//! browser package it runs on (`wasm-client/dist/`, the size-optimised build that
//! `scripts/build-wasm-client.sh` commits there) are compiled in with `include_bytes!`, so
//! `http://<api>/` works from the binary alone, whatever the working directory.
//!
//! Besides the files, two small answers only the serving host can give the page:
//! `/inspector/host.json` (the WebSocket port to dial, the mode, whether a cloud API is known)
//! and `/inspector/cloud/status` (the cloud's own `GET /v1/status`, fetched by this host, for
//! the monitor view's cloud side: a page cannot read another origin without CORS).

use bridge_core::api::ApiError;
use bridge_core::ErrorCode;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;
use std::sync::OnceLock;
use std::time::Duration;

/// What the page needs to know about the host that served it. Set once by `serve` before
/// the HTTP listener starts (a process runs one host); the CLI never serves pages.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub ws_port: u16,
    pub mode: &'static str,
    /// `CLOUD_API_URL`: the monitor shows the cloud's status from it.
    pub cloud_api: Option<String>,
    /// Whether this host requires tokens (`BRIDGE_SECRET` set).
    pub secret_set: bool,
    /// `BRIDGE_TOKEN`, presented to the cloud when the page sends no token and this host
    /// requires none (as `sacred-bridge status` does).
    pub cloud_token: Option<String>,
}

static HOST: OnceLock<HostInfo> = OnceLock::new();

/// Records the serving host's settings for the page (first call wins).
pub fn configure(info: HostInfo) {
    let _ = HOST.set(info);
}

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr, $file:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../", $file)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("/", HTML, "wasm-client/inspector/index.html"),
    asset!("/index.html", HTML, "wasm-client/inspector/index.html"),
    asset!(
        "/inspector/inspector.js",
        JS,
        "wasm-client/inspector/inspector.js"
    ),
    asset!(
        "/inspector/monitor.js",
        JS,
        "wasm-client/inspector/monitor.js"
    ),
    asset!(
        "/inspector/inspector.css",
        "text/css; charset=utf-8",
        "wasm-client/inspector/inspector.css"
    ),
    asset!("/pkg/wasm_client.js", JS, "wasm-client/dist/wasm_client.js"),
    asset!(
        "/pkg/wasm_client_bg.wasm",
        "application/wasm",
        "wasm-client/dist/wasm_client_bg.wasm"
    ),
];

fn reply(status: u16, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    // Revalidate every load: a new binary must never run an old page against a new package.
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn error(e: ApiError) -> Response<Full<Bytes>> {
    let r = e.response();
    reply(r.status, r.content_type, Bytes::from(r.body))
}

/// The answer to `GET path` when it is one of the inspector's, else `None` (the API handles
/// it). `token` is the request's bearer token.
pub async fn get(path: &str, token: Option<&str>) -> Option<Response<Full<Bytes>>> {
    if let Some(a) = ASSETS.iter().find(|a| a.path == path) {
        return Some(reply(200, a.content_type, Bytes::from_static(a.body)));
    }
    match path {
        "/inspector/host.json" => Some(host_json()),
        "/inspector/cloud/status" => Some(cloud_status(token).await),
        p if p.starts_with("/inspector/") || p.starts_with("/pkg/") => Some(error(
            ApiError::not_found(format!("{p}: the inspector has no such file")),
        )),
        _ => None,
    }
}

fn host_json() -> Response<Full<Bytes>> {
    let Some(h) = HOST.get() else {
        return error(ApiError::new(
            ErrorCode::Internal,
            "the host's settings are not known yet; retry",
        ));
    };
    let body = serde_json::json!({
        "ws_port": h.ws_port,
        "mode": h.mode,
        "cloud_api": h.cloud_api,
    });
    reply(200, "application/json", Bytes::from(body.to_string()))
}

/// How long the cloud may take to answer its status before the monitor says it is unreachable.
const CLOUD_TIMEOUT: Duration = Duration::from_secs(3);

/// The cloud's `GET /v1/status`, as the cloud answered it. A host that requires tokens
/// forwards only the page's own token (the cloud decides what it opens); one that requires
/// none presents the page's token or else `BRIDGE_TOKEN`, as `sacred-bridge status` would.
async fn cloud_status(token: Option<&str>) -> Response<Full<Bytes>> {
    let Some(h) = HOST.get() else {
        return host_json();
    };
    let Some(api) = h.cloud_api.as_deref() else {
        return error(ApiError::not_found(
            "this host knows no cloud API (set CLOUD_API_URL to show the cloud's side)",
        ));
    };
    let token = match (token, h.secret_set) {
        (Some(t), _) => Some(t),
        (None, true) => {
            return error(ApiError::new(
                ErrorCode::Unauthorized,
                "this host requires a token: send `Authorization: Bearer <token>`",
            ))
        }
        (None, false) => h.cloud_token.as_deref(),
    };
    let call = crate::http_client::request(api, "GET", "/v1/status", None, token);
    match tokio::time::timeout(CLOUD_TIMEOUT, call).await {
        Ok(Ok((status, body))) => reply(status, "application/json", body),
        Ok(Err(e)) => error(ApiError::new(
            ErrorCode::Timeout,
            format!("the cloud is unreachable: {e}"),
        )),
        Err(_) => error(ApiError::new(
            ErrorCode::Timeout,
            format!(
                "the cloud at {api} did not answer within {} s",
                CLOUD_TIMEOUT.as_secs()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_the_package_are_embedded() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.path);
        }
        let wasm = ASSETS
            .iter()
            .find(|a| a.path == "/pkg/wasm_client_bg.wasm")
            .map(|a| a.body);
        assert_eq!(wasm.map(|b| &b[..4]), Some(&b"\0asm"[..]));
    }
}
