//! `sacred-bridge`: the native host of Sacred Bridge and the command line that talks to it.
//!
//! The host is thin: [`store`] persists what the engines cut, [`ws`] and [`http`] move frames
//! and requests, [`hub`] drives every space's `bridge_core::Engine` on one thread, and
//! `bridge_core::api` translates HTTP requests to engine calls without knowing about any
//! transport (the edge worker uses the same module).

mod cli;
mod clock;
mod config;
mod error;
mod http;
mod http_client;
mod hub;
mod in_queue;
mod mcp;
mod monitor;
mod ops;
mod out_queue;
mod progress;
mod serve;
mod store;
mod upstream;
mod web;
mod ws;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sacred-bridge",
    version,
    about = "Offline-first sync bridge: local and cloud documents, messages and conflicts",
    after_help = "Examples:\n  sacred-bridge serve\n  sacred-bridge put notes n1 '{\"title\":\"hello\"}'\n  sacred-bridge subscribe chat"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Flags that override the environment and `.env`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigFlags {
    /// Else BRIDGE_MODE, else NODE_ENV, else local
    #[arg(long)]
    mode: Option<config::Mode>,
    /// Address to bind both listeners on (default 127.0.0.1)
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::IpAddr>,
    /// WebSocket port (else LOCAL_WS_PORT, default 3333)
    #[arg(long, value_name = "PORT")]
    ws_port: Option<u16>,
    /// HTTP API port (else LOCAL_API_PORT, default 3001)
    #[arg(long, value_name = "PORT")]
    api_port: Option<u16>,
    /// SQLite database file (else LOCAL_DB_PATH)
    #[arg(long, value_name = "FILE")]
    db: Option<std::path::PathBuf>,
}

impl ConfigFlags {
    fn overrides(&self) -> config::Overrides {
        config::Overrides {
            mode: self.mode,
            listen: self.listen,
            ws_port: self.ws_port,
            api_port: self.api_port,
            db: self.db.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the bridge: WebSocket + HTTP listeners on an embedded SQLite database.
    #[command(after_help = "Example:\n  sacred-bridge serve --mode local --api-port 3001")]
    Serve(ConfigFlags),
    /// Print the effective configuration and where each value came from.
    #[command(after_help = "Example:\n  BRIDGE_MODE=cloud sacred-bridge env")]
    Env(ConfigFlags),
    /// Mint an access token (HMAC-SHA256 with BRIDGE_SECRET).
    #[command(subcommand)]
    Token(cli::tokens::TokenCmd),
    /// MCP server on stdin/stdout for AI agents (Claude Code, Claude Desktop, Gemini CLI),
    /// connected to a running host as an agent named after the MCP client.
    #[command(
        after_help = "Examples:\n  claude mcp add sacred-bridge -- sacred-bridge mcp --space team\n  BRIDGE_TOKEN=... sacred-bridge mcp --space team --ws ws://cloud.example:3333 --api http://cloud.example:3001"
    )]
    Mcp(mcp::McpArgs),
    #[command(flatten)]
    Client(cli::ClientCmd),
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn resolve(flags: &ConfigFlags) -> Result<config::Config, error::Error> {
    let dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    Ok(config::Config::resolve(&flags.overrides(), &dir)?)
}

/// Runs the command; every error comes back here, to be printed and turned into the exit
/// code (`Error::exit_code`).
fn run(cmd: Cmd) -> Result<ExitCode, error::Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(error::Error::Runtime)?;
    match cmd {
        Cmd::Serve(flags) => {
            let cfg = resolve(&flags)?;
            rt.block_on(serve::run(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Env(flags) => {
            print!("{}", resolve(&flags)?.render());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token(t) => cli::tokens::token(&resolve(&ConfigFlags::default())?, t),
        Cmd::Mcp(a) => {
            let cfg = resolve(&ConfigFlags::default())?;
            rt.block_on(mcp::run_stdio(&cfg, a))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Client(c) => {
            let cfg = resolve(&ConfigFlags::default())?;
            rt.block_on(cli::run(&cfg, c))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    run(cli.cmd).unwrap_or_else(|e| e.report())
}
