//! `sacred-bridge mcp`: the bridge as an MCP server (tools and resources for AI agents), over
//! stdio for clients that launch it (Claude Code, Claude Desktop, Gemini CLI), and over
//! Streamable HTTP at `/mcp` on the API port of a running host.
//!
//! Each MCP session is an ordinary agent session of the host ([`link`]): a WebSocket speaking
//! the JSON frames of docs/protocol.md, named after the MCP client. Rights, durability on ack,
//! presence and change notifications are the host's, checked in one place.

mod link;
mod server;
mod tools;
pub(crate) mod uri;

use crate::config::Config;
use crate::error::Error;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use server::{Bridge, Options};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `sacred-bridge mcp` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct McpArgs {
    /// Space (default CLOUD_PROJECT_ID, else `default`)
    #[arg(long, short = 's')]
    space: Option<String>,
    /// The host's WebSocket base URL (default ws://127.0.0.1:LOCAL_WS_PORT)
    #[arg(long, value_name = "URL")]
    ws: Option<String>,
    /// The host's HTTP API base URL, for `status` and `resources/list` (default http://127.0.0.1:LOCAL_API_PORT)
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// Access token (else BRIDGE_TOKEN from the environment or .env; needed by cloud hosts)
    #[arg(long)]
    token: Option<String>,
    /// The cloud's HTTP API, for the cloud side of `status` (default CLOUD_API_URL)
    #[arg(long, value_name = "URL")]
    cloud_api: Option<String>,
    /// Token for the cloud API (default: --token)
    #[arg(long, value_name = "TOKEN")]
    cloud_token: Option<String>,
}

/// The address to dial for a listener bound to `ip`.
fn dial(ip: IpAddr, port: u16) -> SocketAddr {
    let ip = if ip.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        ip
    };
    SocketAddr::new(ip, port)
}

/// Serves MCP on stdin/stdout until the client closes stdin.
pub async fn run_stdio(cfg: &Config, a: McpArgs) -> Result<(), Error> {
    let opts = Options {
        ws: a
            .ws
            .unwrap_or_else(|| format!("ws://{}", dial(cfg.listen, cfg.ws_port))),
        api: a
            .api
            .unwrap_or_else(|| format!("http://{}", dial(cfg.listen, cfg.api_port))),
        space: a.space.unwrap_or_else(|| cfg.default_space.clone()),
        token: a.token.or_else(|| cfg.token.clone()),
        cloud_api: a.cloud_api.or_else(|| cfg.cloud_api_url.clone()),
        cloud_token: a.cloud_token,
        http: false,
    };
    let running = rmcp::serve_server(Bridge::new(Arc::new(opts)), rmcp::transport::stdio())
        .await
        .map_err(|e| Error::McpStart(Box::new(e)))?;
    running.waiting().await.map_err(Error::McpSession)?;
    Ok(())
}

/// The Streamable HTTP MCP endpoint a host serves at `/mcp` (see `http.rs`).
pub type HttpService = StreamableHttpService<Bridge, LocalSessionManager>;

/// Is this request for the MCP endpoint?
pub fn is_mcp_path(path: &str) -> bool {
    path == "/mcp" || path == "/mcp/"
}

/// `/mcp` for a host listening on `listen` with these ports: each MCP session is an agent
/// session on the host's own WebSocket port, with the request's bearer token, in the space
/// of `?space=` (default: the host's default space).
pub fn http_service(cfg: &Config) -> HttpService {
    let listen = cfg.listen;
    let opts = Arc::new(Options {
        ws: format!("ws://{}", dial(listen, cfg.ws_port)),
        api: format!("http://{}", dial(listen, cfg.api_port)),
        space: cfg.default_space.clone(),
        token: None,
        cloud_api: cfg.cloud_api_url.clone(),
        cloud_token: None,
        http: true,
    });
    let mut config = StreamableHttpServerConfig::default();
    if !listen.is_loopback() {
        // Reached by other hosts' names: the Host check against DNS rebinding is for loopback
        // servers; a host listening on the network authenticates with tokens instead.
        config = config.disable_allowed_hosts();
    }
    StreamableHttpService::new(
        move || Ok(Bridge::new(opts.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
