//! `sacred-bridge serve`: open the store, start the hub thread, bind the listeners.

use crate::config::{Config, Mode, SyncMode};
use crate::error::{Error, Result};
use crate::hub::{Hub, HubConfig, Input, MetricsAccess};
use crate::store::Store;
use bridge_core::Tier;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Inputs queued for the hub before connections feel back-pressure.
const HUB_QUEUE: usize = 16_384;

pub async fn run(cfg: Config) -> Result<()> {
    let secret = cfg.secret.clone().map(String::into_bytes);
    if cfg.mode == Mode::Cloud && secret.is_none() {
        return Err(Error::CloudNeedsSecret);
    }
    if cfg.mode == Mode::Hybrid && cfg.cloud_ws_url.is_none() {
        return Err(Error::HybridNeedsUrl);
    }
    let tier = match cfg.mode {
        Mode::Cloud => Tier::Cloud,
        Mode::Local | Mode::Hybrid => Tier::Local,
    };
    // Every connection's outbound queue counts against these (the upstream links' too).
    let out_queues = crate::out_queue::Budget::new(
        usize::try_from(cfg.out_queue_mb << 20).unwrap_or(usize::MAX),
        usize::try_from(cfg.out_queue_total_mb << 20).unwrap_or(usize::MAX),
    );
    // Every connection's inbound frames count against these until the hub handled them.
    let in_queues = crate::in_queue::Budget::new(
        usize::try_from(cfg.in_queue_mb << 20).unwrap_or(usize::MAX),
        usize::try_from(cfg.in_queue_total_mb << 20).unwrap_or(usize::MAX),
    );
    // Hybrid: one upstream link per space served, each with a token for that space.
    let links = match (cfg.mode, &cfg.cloud_ws_url) {
        (Mode::Hybrid, Some(url)) => {
            let tokens = crate::upstream::Tokens::load(
                cfg.cloud_tokens_file.as_deref(),
                cfg.token.as_deref(),
                secret.clone(),
            )?;
            let (tx, rx) = mpsc::unbounded_channel::<String>();
            let link_cfg = crate::upstream::LinkConfig {
                url: url.clone(),
                tokens,
                // Periodic, manual and event links push only when asked (tick, trigger or
                // `POST /v1/sync`).
                manual: matches!(
                    cfg.sync_mode,
                    SyncMode::Manual | SyncMode::Periodic | SyncMode::Event
                ),
                // A dial gets as long as a handshake has (`HELLO_TIMEOUT_MS`).
                dial_timeout: Duration::from_millis(cfg.hello_timeout_ms),
                out_queues: out_queues.clone(),
                in_queues: in_queues.clone(),
            };
            Some((tx, rx, link_cfg))
        }
        _ => None,
    };
    let store = Store::open(&cfg.db_path).map_err(|source| Error::OpenStore {
        path: cfg.db_path.clone(),
        source,
    })?;
    let hub = Hub::new(
        HubConfig {
            tier,
            secret,
            default_policy: cfg.conflict_strategy,
            metrics: match (&cfg.metrics_token, cfg.mode) {
                (Some(t), _) => MetricsAccess::Token(t.clone()),
                (None, Mode::Cloud) => MetricsAccess::Off,
                (None, Mode::Local | Mode::Hybrid) => MetricsAccess::Open,
            },
            name: format!("sacred-bridge-{}", cfg.mode.as_str()),
            db_path: std::fs::canonicalize(&cfg.db_path)
                .unwrap_or_else(|_| cfg.db_path.clone())
                .display()
                .to_string(),
            // Triggers matter only with SYNC_MODE=event (other modes push on their own terms).
            event_collections: if cfg.sync_mode == SyncMode::Event {
                cfg.event_collections.clone()
            } else {
                Default::default()
            },
            event_channels: if cfg.sync_mode == SyncMode::Event {
                cfg.event_channels.clone()
            } else {
                Default::default()
            },
            link_spaces: links.as_ref().map(|(tx, _, _)| tx.clone()),
            hello_timeout_ms: cfg.hello_timeout_ms,
            heartbeat_ms: cfg.heartbeat_ms,
            cache_bytes: usize::try_from(cfg.cache_mb << 20).unwrap_or(usize::MAX),
            collect: cfg.collect_tombstones,
            expiry_ms: (cfg.replica_expiry_ms > 0).then_some(cfg.replica_expiry_ms),
            collections: cfg.sync_collections.clone(),
            space_collections: cfg.sync_collections_by_space.clone(),
            out_queues: out_queues.clone(),
            in_queues: in_queues.clone(),
        },
        store,
    )
    .map_err(|source| Error::LoadStore {
        path: cfg.db_path.clone(),
        source,
    })?;

    let ws_addr = SocketAddr::new(cfg.listen, cfg.ws_port);
    let api_addr = SocketAddr::new(cfg.listen, cfg.api_port);
    let ws = TcpListener::bind(ws_addr)
        .await
        .map_err(|source| Error::Listen {
            what: "WebSockets",
            addr: ws_addr,
            var: "LOCAL_WS_PORT",
            source,
        })?;
    let api = TcpListener::bind(api_addr)
        .await
        .map_err(|source| Error::Listen {
            what: "HTTP",
            addr: api_addr,
            var: "LOCAL_API_PORT",
            source,
        })?;
    // Port 0 asks the system for a free port: from here on, everything (the `listening:`
    // line, the pid file, the inspector's `host.json`, `/mcp`'s dial) uses the bound ones.
    let ws_addr = ws.local_addr().unwrap_or(ws_addr);
    let api_addr = api.local_addr().unwrap_or(api_addr);
    let cfg = Config {
        ws_port: ws_addr.port(),
        api_port: api_addr.port(),
        ..cfg
    };

    let (tx, rx) = mpsc::channel::<Input>(HUB_QUEUE);
    let sync_every = (cfg.mode == Mode::Hybrid && cfg.sync_mode == SyncMode::Periodic)
        .then(|| Duration::from_millis(cfg.sync_interval_ms));
    let hub_thread = std::thread::Builder::new()
        .name("hub".into())
        .spawn(move || hub.run(rx, sync_every))
        .map_err(Error::HubThread)?;

    tracing::info!(
        mode = cfg.mode.as_str(),
        ws = %ws_addr,
        api = %api_addr,
        db = %cfg.db_path.display(),
        "sacred-bridge serving"
    );
    // `restore` refuses to replace a database a live host is serving.
    let pid_file = crate::ops::HostPidFile::create(&cfg.db_path, &api_addr);
    // One line on stdout that scripts can wait for.
    println!(
        "sacred-bridge {} listening: ws://{ws_addr} http://{api_addr}",
        cfg.mode.as_str()
    );

    let default_space: Arc<str> = Arc::from(cfg.default_space.as_str());
    tokio::spawn(crate::ws::serve(
        ws,
        tx.clone(),
        default_space,
        out_queues,
        in_queues,
    ));
    crate::web::configure(crate::web::HostInfo {
        ws_port: cfg.ws_port,
        mode: cfg.mode.as_str(),
        cloud_api: cfg.cloud_api_url.clone(),
        secret_set: cfg.secret.is_some(),
        cloud_token: cfg.token.clone(),
    });
    let mcp = crate::mcp::http_service(&cfg);
    tokio::spawn(crate::http::serve(api, tx.clone(), mcp));
    if let Some((spaces, rx, link_cfg)) = links {
        // The default space is linked from the start, even before anything opens it; the
        // hub announces every other space it serves.
        let _ = spaces.send(cfg.default_space.clone());
        tokio::spawn(crate::upstream::manage(link_cfg, tx.clone(), rx));
    }
    drop(tx);

    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stopping");
    // Everything acknowledged is already committed; nothing to flush.
    drop(pid_file);
    drop(hub_thread);
    Ok(())
}
