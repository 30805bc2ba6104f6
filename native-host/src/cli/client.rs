//! Where the host is and how to ask it: the `--space` / `--api` / `--ws` / `--token` flags
//! every client command takes, resolved against the configuration into a [`Ctx`] that sends
//! requests and turns error answers into messages.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::http_client::request;
use bridge_core::status::HostStatus;
use serde_json::Value;

/// Where the host is and who we are.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// Space (default CLOUD_PROJECT_ID, else `default`)
    #[arg(long, short = 's')]
    space: Option<String>,
    /// HTTP API base URL (default http://127.0.0.1:LOCAL_API_PORT)
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// WebSocket base URL (default ws://127.0.0.1:LOCAL_WS_PORT)
    #[arg(long, value_name = "URL")]
    ws: Option<String>,
    /// Access token (else BRIDGE_TOKEN from the environment or .env; needed by cloud hosts)
    #[arg(long)]
    token: Option<String>,
}

/// A client command's host and identity, resolved from its [`Target`] and the configuration.
pub(super) struct Ctx {
    pub(super) api: String,
    pub(super) ws: String,
    pub(super) space: String,
    pub(super) token: Option<String>,
}

impl Ctx {
    pub(super) fn new(cfg: &Config, t: Target) -> Ctx {
        let host = if cfg.listen.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            cfg.listen.to_string()
        };
        Ctx {
            api: t
                .api
                .unwrap_or_else(|| format!("http://{host}:{}", cfg.api_port)),
            ws: t
                .ws
                .unwrap_or_else(|| format!("ws://{host}:{}", cfg.ws_port)),
            space: t.space.unwrap_or_else(|| cfg.default_space.clone()),
            token: t.token.or_else(|| cfg.token.clone()),
        }
    }

    pub(super) fn path(&self, rest: &str) -> String {
        format!("/v1/spaces/{}/{rest}", enc(&self.space))
    }

    /// Sends a request; prints nothing; errors become a message.
    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value> {
        let (status, bytes) = request(&self.api, method, path, body, self.token.as_deref()).await?;
        let v: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if status >= 400 {
            let msg = v["error"]["message"].as_str().unwrap_or("request failed");
            let code = v["error"]["code"].as_str().unwrap_or("error");
            return Err(Error::Refused {
                message: msg.to_owned(),
                code: code.to_owned(),
                status,
            });
        }
        Ok(v)
    }

    /// `GET /v1/status`, typed: a document this CLI cannot read is an error, not zeros.
    pub(super) async fn status(&self) -> Result<HostStatus> {
        let v = self.call("GET", "/v1/status", None).await?;
        serde_json::from_value(v).map_err(|source| Error::UnreadableStatus {
            api: self.api.clone(),
            source,
        })
    }
}

/// What a path segment escapes: all but unreserved characters and `:`.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

/// Percent-encodes a path segment.
pub(super) fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}
