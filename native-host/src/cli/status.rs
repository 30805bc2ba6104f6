//! `status`, `monitor` and `agents`: the host's status document (and the cloud's, with a
//! cloud API) as JSON, as a screen redrawn every second, and as a table of who is connected.

use super::client::{Ctx, Target};
use super::print;
use crate::config::Config;
use crate::error::Result;
use bridge_core::status::HostStatus;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// The cloud side, for `status` and `monitor`.
#[derive(clap::Args, Debug, Clone)]
pub struct CloudTarget {
    /// The cloud's HTTP API base URL (default CLOUD_API_URL; unset: the local side only)
    #[arg(long, value_name = "URL")]
    cloud_api: Option<String>,
    /// Token for the cloud (default: --token / BRIDGE_TOKEN)
    #[arg(long, value_name = "TOKEN")]
    cloud_token: Option<String>,
}

/// The cloud's side of `status` and `monitor`: its status, or why it could not be read.
pub enum CloudStatus {
    Read { api: String, status: HostStatus },
    Unreachable { api: String, error: String },
}

impl CloudStatus {
    /// As `status` prints it: the cloud's status with its `api`, or `{"api", "error"}`.
    fn to_json(&self) -> Value {
        match self {
            CloudStatus::Read { api, status } => {
                let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("api".into(), Value::from(api.as_str()));
                }
                v
            }
            CloudStatus::Unreachable { api, error } => json!({"api": api, "error": error}),
        }
    }
}

impl CloudTarget {
    /// The cloud's status, `None` without a cloud API.
    async fn status(&self, cfg: &Config, local: &Ctx) -> Option<CloudStatus> {
        let api = self
            .cloud_api
            .clone()
            .or_else(|| cfg.cloud_api_url.clone())?;
        let token = self.cloud_token.clone().or_else(|| local.token.clone());
        let c = Ctx {
            api: api.clone(),
            ws: String::new(),
            space: local.space.clone(),
            token,
        };
        Some(match c.status().await {
            Ok(status) => CloudStatus::Read { api, status },
            Err(e) => CloudStatus::Unreachable {
                api,
                error: e.to_string(),
            },
        })
    }
}

/// `status`: the host's status as pretty JSON, the cloud's under `cloud`.
pub(super) async fn status(cfg: &Config, t: Target, cloud: CloudTarget) -> Result<ExitCode> {
    let c = Ctx::new(cfg, t);
    let mut v = serde_json::to_value(c.status().await?).unwrap_or(Value::Null);
    if let (Some(cs), Some(o)) = (cloud.status(cfg, &c).await, v.as_object_mut()) {
        o.insert("cloud".into(), cs.to_json());
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// `monitor`: the status as a screen, redrawn every `interval` ms (printed once with `once`).
pub(super) async fn monitor(
    cfg: &Config,
    t: Target,
    cloud: CloudTarget,
    once: bool,
    interval: u64,
) -> Result<ExitCode> {
    let c = Ctx::new(cfg, t);
    loop {
        let st = c.status().await?;
        let mut screen = crate::monitor::render(&st, &c.api);
        if let Some(cs) = cloud.status(cfg, &c).await {
            screen.push_str(&crate::monitor::render_cloud(&cs));
        }
        if !once {
            screen.push_str("(refreshing; Ctrl-C to stop)\n");
        }
        if once {
            print!("{screen}");
            return Ok(ExitCode::SUCCESS);
        }
        // Home, draw, clear what is left of the old screen.
        print!("\x1b[H{}\x1b[J", screen.replace('\n', "\x1b[K\n"));
        let _ = std::io::Write::flush(&mut std::io::stdout());
        tokio::time::sleep(Duration::from_millis(interval.max(100))).await;
    }
}

/// `agents`: who is connected, here and on the other side of the links.
pub(super) async fn agents(cfg: &Config, t: Target, json: bool) -> Result<ExitCode> {
    let c = Ctx::new(cfg, t);
    let v = c.call("GET", &c.path("presence"), None).await?;
    let agents = v["agents"].as_array().cloned().unwrap_or_default();
    if json {
        for a in &agents {
            print(a);
        }
    } else {
        let st = c.status().await?;
        let here = st
            .space(&c.space)
            .map(|s| s.replica.to_string())
            .unwrap_or_default();
        print!(
            "{}",
            crate::monitor::agents_table(&agents, &here, st.now_ms)
        );
    }
    Ok(ExitCode::SUCCESS)
}
