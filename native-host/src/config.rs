//! Effective configuration: command-line flags, then the process environment, then `.env` in
//! the working directory, then defaults. Every value remembers where it came from, so
//! `sacred-bridge env` can say why the host behaves as it does.

use bridge_core::Policy;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env,
    DotEnv,
    /// Derived from another key (e.g. the mode from `NODE_ENV`).
    From(&'static str, &'static str),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env => f.write_str("environment"),
            Source::DotEnv => f.write_str(".env"),
            Source::From(key, src) => write!(f, "{key} ({src})"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value that is not accepted, with the accepted ones. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{key}={value:?} is not valid; {accepted}")]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub accepted: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Local,
    Cloud,
    Hybrid,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Cloud => "cloud",
            Mode::Hybrid => "hybrid",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    Realtime,
    Periodic,
    Manual,
    Event,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Realtime => "realtime",
            SyncMode::Periodic => "periodic",
            SyncMode::Manual => "manual",
            SyncMode::Event => "event",
        }
    }
}

/// Flags that override the environment, already parsed by clap.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub mode: Option<Mode>,
    pub listen: Option<IpAddr>,
    pub ws_port: Option<u16>,
    pub api_port: Option<u16>,
    pub db: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub listen: IpAddr,
    pub ws_port: u16,
    pub api_port: u16,
    pub db_path: PathBuf,
    pub cloud_ws_url: Option<String>,
    /// The cloud's HTTP API: `status` and `monitor` show the cloud's side from it.
    pub cloud_api_url: Option<String>,
    /// Hybrid: a file of tokens for the upstream links, one a line, each naming its space.
    pub cloud_tokens_file: Option<PathBuf>,
    /// The default space (`CLOUD_PROJECT_ID`).
    pub default_space: String,
    pub sync_mode: SyncMode,
    pub sync_interval_ms: u64,
    /// `SYNC_COLLECTIONS`: the collection patterns a hybrid host replicates from its cloud
    /// (`None`: the whole space).
    pub sync_collections: Option<Vec<String>>,
    /// `SYNC_COLLECTIONS_SPACES`: the patterns of named spaces, in place of
    /// `SYNC_COLLECTIONS` for those.
    pub sync_collections_by_space: BTreeMap<String, Vec<String>>,
    /// `SYNC_MODE=event` triggers: collections whose durable writes push upstream.
    pub event_collections: BTreeSet<String>,
    /// `SYNC_MODE=event` triggers: channels whose messages push upstream.
    pub event_channels: BTreeSet<String>,
    pub conflict_strategy: Policy,
    /// A connection that has not finished its handshake this long after it opened is closed.
    pub hello_timeout_ms: u64,
    /// Peer links: the dialing side pings after this long without hearing from the other;
    /// a peer session silent for three of these is closed. 0 = off.
    pub heartbeat_ms: u64,
    /// `CACHE_MB`: mebibytes of document states each open space keeps in memory; the rest
    /// stays in the database until it is read.
    pub cache_mb: u64,
    /// `OUT_QUEUE_MB`: mebibytes a connection's outbound queue may hold before the
    /// connection is closed for falling behind (1013).
    pub out_queue_mb: u64,
    /// `OUT_QUEUE_TOTAL_MB`: mebibytes every connection's outbound queue may hold together.
    pub out_queue_total_mb: u64,
    /// `IN_QUEUE_MB`: mebibytes of frames a connection may have read that the hub has not
    /// handled yet; over it the connection's socket is not read until the hub catches up
    /// (never closed for it).
    pub in_queue_mb: u64,
    /// `IN_QUEUE_TOTAL_MB`: the same over every connection together.
    pub in_queue_total_mb: u64,
    /// `COLLECT_TOMBSTONES`: remove documents deleted everywhere once their deletion is
    /// below the stable horizon (off by default; see docs/protocol.md, "Collection").
    pub collect_tombstones: bool,
    /// `REPLICA_EXPIRY_MS`: a peer that dialed this host and has been gone this long no
    /// longer holds the stable horizon back (0, the default: never).
    pub replica_expiry_ms: u64,
    pub secret: Option<String>,
    /// `BRIDGE_TOKEN`: the token the CLI and `mcp` present (unless `--token`), and a hybrid
    /// host's upstream token for the space it names.
    pub token: Option<String>,
    /// `METRICS_TOKEN`: the bearer token `/metrics` requires. Unset, `/metrics` is open in
    /// local and hybrid mode (the API listens on 127.0.0.1) and refused in cloud mode (it
    /// names every space).
    pub metrics_token: Option<String>,
    /// Each key with its shown value and source, in display order.
    pub report: Vec<(&'static str, String, Source)>,
}

pub const DEFAULT_DB_PATH: &str = "local/databases/sacred-bridge.db";

/// Raw lookups: process environment first, then the `.env` file.
struct Lookup {
    dotenv: BTreeMap<String, String>,
}

impl Lookup {
    fn load(dir: &Path) -> Result<Self, ConfigError> {
        let mut dotenv = BTreeMap::new();
        let path = dir.join(".env");
        if path.exists() {
            let iter = dotenvy::from_path_iter(&path).map_err(|e| ConfigError {
                key: ".env".into(),
                value: path.display().to_string(),
                accepted: format!("the file could not be read: {e}"),
            })?;
            for item in iter {
                let (k, v) = item.map_err(|e| ConfigError {
                    key: ".env".into(),
                    value: path.display().to_string(),
                    accepted: format!("expected KEY=VALUE lines: {e}"),
                })?;
                dotenv.insert(k, v);
            }
        }
        Ok(Lookup { dotenv })
    }

    fn get(&self, key: &str) -> Option<(String, Source)> {
        match std::env::var(key) {
            Ok(v) if !v.is_empty() => return Some((v, Source::Env)),
            _ => {}
        }
        self.dotenv
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| (v.clone(), Source::DotEnv))
    }
}

fn bad(key: &str, value: &str, accepted: &str) -> ConfigError {
    ConfigError {
        key: key.into(),
        value: value.into(),
        accepted: accepted.into(),
    }
}

/// A value of a clap `ValueEnum` from the environment, refused with the accepted values.
fn parse_enum<T: clap::ValueEnum>(key: &str, v: &str) -> Result<T, ConfigError> {
    T::from_str(v, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|x| x.to_possible_value())
            .map(|p| p.get_name().to_owned())
            .collect();
        bad(key, v, &format!("accepted values: {}", names.join(", ")))
    })
}

fn parse_port(key: &str, v: &str) -> Result<u16, ConfigError> {
    v.parse::<u16>()
        .map_err(|_| bad(key, v, "expected a TCP port number, 0 to 65535"))
}

impl Config {
    /// Resolves the configuration from `overrides`, the environment and `dir/.env`.
    pub fn resolve(overrides: &Overrides, dir: &Path) -> Result<Config, ConfigError> {
        let l = Lookup::load(dir)?;
        let mut report = Vec::new();

        let (mode, src) = if let Some(m) = overrides.mode {
            (m, Source::Flag("--mode"))
        } else if let Some((v, s)) = l.get("BRIDGE_MODE") {
            (parse_enum("BRIDGE_MODE", &v)?, s)
        } else if let Some((v, s)) = l.get("NODE_ENV") {
            let m = match v.as_str() {
                "development" => Mode::Local,
                "production" => Mode::Cloud,
                "hybrid" => Mode::Hybrid,
                _ => {
                    return Err(bad(
                        "NODE_ENV",
                        &v,
                        "accepted values: development (local), production (cloud), hybrid",
                    ))
                }
            };
            let s = match s {
                Source::Env => Source::From("NODE_ENV", "environment"),
                _ => Source::From("NODE_ENV", ".env"),
            };
            (m, s)
        } else {
            (Mode::Local, Source::Default)
        };
        report.push(("BRIDGE_MODE", mode.as_str().to_owned(), src));

        let (listen, src) = match overrides.listen {
            Some(a) => (a, Source::Flag("--listen")),
            None => (IpAddr::from([127, 0, 0, 1]), Source::Default),
        };
        report.push(("LISTEN", listen.to_string(), src));

        let mut port = |flag: Option<u16>, flag_name, key, default: u16| {
            let (p, s) = match (flag, l.get(key)) {
                (Some(p), _) => (p, Source::Flag(flag_name)),
                (None, Some((v, s))) => (parse_port(key, &v)?, s),
                (None, None) => (default, Source::Default),
            };
            report.push((key, p.to_string(), s));
            Ok::<u16, ConfigError>(p)
        };
        let ws_port = port(overrides.ws_port, "--ws-port", "LOCAL_WS_PORT", 3333)?;
        let api_port = port(overrides.api_port, "--api-port", "LOCAL_API_PORT", 3001)?;

        let (db_path, src) = match (&overrides.db, l.get("LOCAL_DB_PATH")) {
            (Some(p), _) => (p.clone(), Source::Flag("--db")),
            (None, Some((v, s))) => (PathBuf::from(v), s),
            (None, None) => (PathBuf::from(DEFAULT_DB_PATH), Source::Default),
        };
        report.push(("LOCAL_DB_PATH", db_path.display().to_string(), src));

        let mut url = |key: &'static str| -> Result<Option<String>, ConfigError> {
            match l.get(key) {
                Some((v, s)) => {
                    let ok = if key == "CLOUD_WS_URL" {
                        v.starts_with("ws://") || v.starts_with("wss://")
                    } else {
                        v.starts_with("http://") || v.starts_with("https://")
                    };
                    if !ok {
                        let scheme = if key == "CLOUD_WS_URL" {
                            "expected a ws:// or wss:// URL"
                        } else {
                            "expected an http:// or https:// URL"
                        };
                        return Err(bad(key, &v, scheme));
                    }
                    report.push((key, v.clone(), s));
                    Ok(Some(v))
                }
                None => {
                    report.push((key, "(unset)".into(), Source::Default));
                    Ok(None)
                }
            }
        };
        let cloud_ws_url = url("CLOUD_WS_URL")?;
        let cloud_api_url = url("CLOUD_API_URL")?;

        let cloud_tokens_file = match l.get("CLOUD_TOKENS_FILE") {
            Some((v, s)) => {
                report.push(("CLOUD_TOKENS_FILE", v.clone(), s));
                Some(PathBuf::from(v))
            }
            None => {
                report.push(("CLOUD_TOKENS_FILE", "(unset)".into(), Source::Default));
                None
            }
        };

        let (space, src) = l
            .get("CLOUD_PROJECT_ID")
            .unwrap_or_else(|| ("default".into(), Source::Default));
        if bridge_core::check_name("space", &space, false).is_err() {
            return Err(bad(
                "CLOUD_PROJECT_ID",
                &space,
                "expected a space name: 1 to 256 bytes, no control characters, not starting with `_`",
            ));
        }
        report.push(("CLOUD_PROJECT_ID", space.clone(), src));

        let (sync_mode, src) = match l.get("SYNC_MODE") {
            Some((v, s)) => (parse_enum("SYNC_MODE", &v)?, s),
            None => (SyncMode::Realtime, Source::Default),
        };
        report.push(("SYNC_MODE", sync_mode.as_str().into(), src));

        let (sync_interval_ms, src) = match l.get("SYNC_INTERVAL") {
            Some((v, s)) => match v.parse::<u64>() {
                Ok(n) if n > 0 => (n, s),
                _ => {
                    return Err(bad(
                        "SYNC_INTERVAL",
                        &v,
                        "expected a whole number of milliseconds greater than 0",
                    ))
                }
            },
            None => (300_000, Source::Default),
        };
        report.push(("SYNC_INTERVAL", sync_interval_ms.to_string(), src));

        // Partial replication: the collections a hybrid host replicates from its cloud.
        let sync_collections = match l.get("SYNC_COLLECTIONS") {
            None => {
                report.push((
                    "SYNC_COLLECTIONS",
                    "(unset: the whole space)".into(),
                    Source::Default,
                ));
                None
            }
            Some((v, s)) => {
                let patterns: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                let checked =
                    bridge_core::auth::check_patterns(patterns.iter().map(String::as_str));
                if patterns.is_empty() || checked.is_err() {
                    return Err(bad(
                        "SYNC_COLLECTIONS",
                        &v,
                        "expected a comma-separated list of collection patterns: a name, or a prefix ending in `*` (not starting with `_`)",
                    ));
                }
                if mode != Mode::Hybrid {
                    return Err(bad(
                        "SYNC_COLLECTIONS",
                        &v,
                        "only a hybrid host replicates from a cloud: set BRIDGE_MODE=hybrid, or unset SYNC_COLLECTIONS",
                    ));
                }
                report.push(("SYNC_COLLECTIONS", patterns.join(","), s));
                Some(patterns)
            }
        };
        // Per space: `team=notes/*,todo; ops=audit`.
        let mut sync_collections_by_space = BTreeMap::new();
        if let Some((v, s)) = l.get("SYNC_COLLECTIONS_SPACES") {
            let why = "expected `space=pattern,pattern; space=pattern`: a space name, `=`, then collection patterns (a name, or a prefix ending in `*`, not starting with `_`)";
            for entry in v.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                let Some((space, list)) = entry.split_once('=') else {
                    return Err(bad("SYNC_COLLECTIONS_SPACES", &v, why));
                };
                let patterns: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                let space = space.trim();
                if patterns.is_empty()
                    || bridge_core::check_name("space", space, false).is_err()
                    || bridge_core::auth::check_patterns(patterns.iter().map(String::as_str))
                        .is_err()
                {
                    return Err(bad("SYNC_COLLECTIONS_SPACES", &v, why));
                }
                sync_collections_by_space.insert(space.to_owned(), patterns);
            }
            if mode != Mode::Hybrid {
                return Err(bad(
                    "SYNC_COLLECTIONS_SPACES",
                    &v,
                    "only a hybrid host replicates from a cloud: set BRIDGE_MODE=hybrid, or unset SYNC_COLLECTIONS_SPACES",
                ));
            }
            report.push(("SYNC_COLLECTIONS_SPACES", v.clone(), s));
        }
        let mut list = |key: &'static str,
                        what: &'static str|
         -> Result<BTreeSet<String>, ConfigError> {
            let Some((v, s)) = l.get(key) else {
                report.push((key, "(unset)".into(), Source::Default));
                return Ok(BTreeSet::new());
            };
            let mut set = BTreeSet::new();
            for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if bridge_core::check_name(what, name, false).is_err() {
                    return Err(bad(
                        key,
                        &v,
                        &format!("expected a comma-separated list of {what} names (1 to 256 bytes, no control characters, not starting with `_`); {name:?} is not one"),
                    ));
                }
                set.insert(name.to_owned());
            }
            let shown: Vec<&str> = set.iter().map(String::as_str).collect();
            report.push((key, shown.join(","), s));
            Ok(set)
        };
        let event_collections = list("SYNC_EVENT_COLLECTIONS", "collection")?;
        let event_channels = list("SYNC_EVENT_CHANNELS", "channel")?;
        if sync_mode == SyncMode::Event && event_collections.is_empty() && event_channels.is_empty()
        {
            return Err(bad(
                "SYNC_MODE",
                "event",
                "event mode pushes only when a trigger fires: set SYNC_EVENT_COLLECTIONS and/or SYNC_EVENT_CHANNELS (comma-separated names)",
            ));
        }

        let (conflict_strategy, src) = match l.get("CONFLICT_STRATEGY") {
            Some((v, s)) => (
                v.parse::<Policy>().map_err(|_| {
                    bad(
                        "CONFLICT_STRATEGY",
                        &v,
                        "accepted values: lww, last_write_wins, cloud_wins, local_wins, merge, manual",
                    )
                })?,
                s,
            ),
            None => (Policy::Lww, Source::Default),
        };
        report.push(("CONFLICT_STRATEGY", conflict_strategy.as_str().into(), src));

        let mut millis =
            |key: &'static str, default: u64, zero_ok: bool| -> Result<u64, ConfigError> {
                let (n, s) = match l.get(key) {
                    Some((v, s)) => match v.parse::<u64>() {
                        Ok(n) if n > 0 || zero_ok => (n, s),
                        _ => {
                            let accepted = if zero_ok {
                                "expected a whole number of milliseconds (0 turns it off)"
                            } else {
                                "expected a whole number of milliseconds greater than 0"
                            };
                            return Err(bad(key, &v, accepted));
                        }
                    },
                    None => (default, Source::Default),
                };
                report.push((key, n.to_string(), s));
                Ok(n)
            };
        let hello_timeout_ms = millis(
            "HELLO_TIMEOUT_MS",
            bridge_core::engine::DEFAULT_HELLO_TIMEOUT_MS,
            false,
        )?;
        let heartbeat_ms = millis(
            "HEARTBEAT_MS",
            bridge_core::engine::DEFAULT_HEARTBEAT_MS,
            true,
        )?;
        let replica_expiry_ms = millis("REPLICA_EXPIRY_MS", 0, true)?;

        let default_cache_mb = (bridge_core::engine::DEFAULT_CACHE_BYTES >> 20) as u64;
        let (cache_mb, src) = match l.get("CACHE_MB") {
            Some((v, s)) => match v.parse::<u64>() {
                Ok(n) if (1..=1 << 20).contains(&n) => (n, s),
                _ => {
                    return Err(bad(
                        "CACHE_MB",
                        &v,
                        "expected a whole number of mebibytes from 1 to 1048576",
                    ))
                }
            },
            None => (default_cache_mb, Source::Default),
        };
        report.push(("CACHE_MB", cache_mb.to_string(), src));

        let mut mebibytes = |key: &'static str, default: u64| -> Result<u64, ConfigError> {
            let (n, s) = match l.get(key) {
                Some((v, s)) => match v.parse::<u64>() {
                    Ok(n) if (1..=1 << 20).contains(&n) => (n, s),
                    _ => {
                        return Err(bad(
                            key,
                            &v,
                            "expected a whole number of mebibytes from 1 to 1048576",
                        ))
                    }
                },
                None => (default, Source::Default),
            };
            report.push((key, n.to_string(), s));
            Ok(n)
        };
        let out_queue_mb = mebibytes("OUT_QUEUE_MB", crate::out_queue::DEFAULT_PER_CONNECTION_MB)?;
        let out_queue_total_mb =
            mebibytes("OUT_QUEUE_TOTAL_MB", crate::out_queue::DEFAULT_TOTAL_MB)?;
        let in_queue_mb = mebibytes("IN_QUEUE_MB", crate::in_queue::DEFAULT_PER_CONNECTION_MB)?;
        let in_queue_total_mb = mebibytes("IN_QUEUE_TOTAL_MB", crate::in_queue::DEFAULT_TOTAL_MB)?;

        let (collect_tombstones, src) = match l.get("COLLECT_TOMBSTONES") {
            Some((v, s)) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => (true, s),
                "0" | "false" | "no" | "off" => (false, s),
                _ => {
                    return Err(bad(
                        "COLLECT_TOMBSTONES",
                        &v,
                        "expected 1, true, yes or on (or 0, false, no, off)",
                    ))
                }
            },
            None => (false, Source::Default),
        };
        report.push(("COLLECT_TOMBSTONES", collect_tombstones.to_string(), src));

        let secret = l.get("BRIDGE_SECRET");
        match &secret {
            Some((v, s)) => report.push((
                "BRIDGE_SECRET",
                format!("(set, {} bytes)", v.len()),
                s.clone(),
            )),
            None => report.push(("BRIDGE_SECRET", "(unset)".into(), Source::Default)),
        }

        let token = l.get("BRIDGE_TOKEN");
        match &token {
            Some((v, s)) => report.push((
                "BRIDGE_TOKEN",
                format!("(set, {} bytes)", v.len()),
                s.clone(),
            )),
            None => report.push(("BRIDGE_TOKEN", "(unset)".into(), Source::Default)),
        }

        let metrics_token = l.get("METRICS_TOKEN");
        match &metrics_token {
            Some((v, s)) => report.push((
                "METRICS_TOKEN",
                format!("(set, {} bytes)", v.len()),
                s.clone(),
            )),
            None => report.push((
                "METRICS_TOKEN",
                if mode == Mode::Cloud {
                    "(unset: /metrics is refused in cloud mode)".into()
                } else {
                    "(unset: /metrics is open)".into()
                },
                Source::Default,
            )),
        }

        Ok(Config {
            mode,
            listen,
            ws_port,
            api_port,
            db_path,
            cloud_ws_url,
            cloud_api_url,
            cloud_tokens_file,
            default_space: space,
            sync_mode,
            sync_interval_ms,
            sync_collections,
            sync_collections_by_space,
            event_collections,
            event_channels,
            conflict_strategy,
            hello_timeout_ms,
            heartbeat_ms,
            cache_mb,
            out_queue_mb,
            out_queue_total_mb,
            in_queue_mb,
            in_queue_total_mb,
            collect_tombstones,
            replica_expiry_ms,
            secret: secret.map(|(v, _)| v),
            token: token.map(|(v, _)| v),
            metrics_token: metrics_token.map(|(v, _)| v).filter(|v| !v.is_empty()),
            report,
        })
    }

    /// The `sacred-bridge env` table.
    pub fn render(&self) -> String {
        let w = self
            .report
            .iter()
            .map(|(k, _, _)| k.len())
            .max()
            .unwrap_or(0);
        let vw = self
            .report
            .iter()
            .map(|(_, v, _)| v.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v, s) in &self.report {
            out.push_str(&format!("{k:<w$}  {v:<vw$}  {s}\n"));
        }
        out.push_str(&format!(
            "\nCONFLICT_STRATEGY={} seeds the default policy of spaces this host creates; a space\nthat exists already keeps its replicated default (the cloud's wins; `status` shows it).\n",
            self.conflict_strategy.as_str()
        ));
        out.push_str(match self.sync_mode {
            SyncMode::Realtime => "\nSYNC_MODE=realtime: hybrid pushes every durable change upstream at once.\n",
            SyncMode::Periodic => "\nSYNC_MODE=periodic: hybrid pushes every SYNC_INTERVAL ms (and on `sacred-bridge sync`).\n",
            SyncMode::Manual => "\nSYNC_MODE=manual: hybrid pushes only on `sacred-bridge sync` or POST /v1/sync.\n",
            SyncMode::Event => "\nSYNC_MODE=event: hybrid pushes when a durable write lands in a collection of\nSYNC_EVENT_COLLECTIONS or a message is stored on a channel of SYNC_EVENT_CHANNELS\n(comma lists), and on `sacred-bridge sync`. Messages themselves always flow.\n",
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_is_read_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join(".env"),
            "LOCAL_API_PORT=4001\nSYNC_INTERVAL=1000\nBRIDGE_MODE=hybrid\nBRIDGE_TOKEN=sb1.secret\n",
        )
        .expect("write .env");
        let o = Overrides {
            mode: Some(Mode::Cloud),
            ..Overrides::default()
        };
        let c = Config::resolve(&o, &dir).expect("valid");
        assert_eq!(c.mode, Mode::Cloud);
        assert_eq!(c.api_port, 4001);
        assert_eq!(c.sync_interval_ms, 1000);
        let src = |key: &str| {
            c.report
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|(_, _, s)| s.clone())
        };
        assert_eq!(src("LOCAL_API_PORT"), Some(Source::DotEnv));
        assert_eq!(src("BRIDGE_MODE"), Some(Source::Flag("--mode")));
        // `.env` reaches BRIDGE_TOKEN too, and `env` shows it masked.
        assert_eq!(c.token.as_deref(), Some("sb1.secret"));
        assert_eq!(src("BRIDGE_TOKEN"), Some(Source::DotEnv));
        assert!(c.render().contains("(set, 10 bytes)") && !c.render().contains("sb1.secret"));
        std::fs::write(dir.join(".env"), "CONFLICT_STRATEGY=newest\n").expect("write .env");
        let e = Config::resolve(&Overrides::default(), &dir).expect_err("invalid");
        assert_eq!(e.key, "CONFLICT_STRATEGY");
        assert!(e.to_string().contains("cloud_wins"));
        std::fs::write(dir.join(".env"), "SYNC_MODE=soon\n").expect("write .env");
        let e = Config::resolve(&Overrides::default(), &dir).expect_err("invalid");
        assert!(
            e.to_string()
                .ends_with("accepted values: realtime, periodic, manual, event"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sync_collections_are_patterns_for_a_hybrid_host() {
        let dir = std::env::temp_dir().join(format!("sb-config-sc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let hybrid = Overrides {
            mode: Some(Mode::Hybrid),
            ..Overrides::default()
        };
        std::fs::write(dir.join(".env"), "SYNC_COLLECTIONS=\"notes/*, audit\"\n").expect("write");
        let c = Config::resolve(&hybrid, &dir).expect("valid");
        assert_eq!(
            c.sync_collections,
            Some(vec!["notes/*".to_string(), "audit".to_string()])
        );
        let e = Config::resolve(&Overrides::default(), &dir).expect_err("local mode");
        assert_eq!(e.key, "SYNC_COLLECTIONS");
        assert!(e.to_string().contains("hybrid"), "{e}");
        for bad in ["SYNC_COLLECTIONS=_config\n", "SYNC_COLLECTIONS=,\n"] {
            std::fs::write(dir.join(".env"), bad).expect("write");
            let e = Config::resolve(&hybrid, &dir).expect_err("bad pattern");
            assert_eq!(e.key, "SYNC_COLLECTIONS", "{bad}");
        }
        std::fs::write(dir.join(".env"), "").expect("write");
        assert_eq!(
            Config::resolve(&hybrid, &dir)
                .expect("valid")
                .sync_collections,
            None
        );
        // Per space.
        std::fs::write(
            dir.join(".env"),
            "SYNC_COLLECTIONS_SPACES=\"team=notes/*, todo; ops=audit\"\n",
        )
        .expect("write");
        let c = Config::resolve(&hybrid, &dir).expect("valid");
        assert_eq!(
            c.sync_collections_by_space.get("team"),
            Some(&vec!["notes/*".to_string(), "todo".to_string()])
        );
        assert_eq!(
            c.sync_collections_by_space.get("ops"),
            Some(&vec!["audit".to_string()])
        );
        for bad in [
            "SYNC_COLLECTIONS_SPACES=team\n",
            "SYNC_COLLECTIONS_SPACES=team=\n",
            "SYNC_COLLECTIONS_SPACES=team=_config\n",
            "SYNC_COLLECTIONS_SPACES==notes\n",
        ] {
            std::fs::write(dir.join(".env"), bad).expect("write");
            let e = Config::resolve(&hybrid, &dir).expect_err("bad entry");
            assert_eq!(e.key, "SYNC_COLLECTIONS_SPACES", "{bad}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn event_mode_needs_triggers() {
        let dir = std::env::temp_dir().join(format!("sb-config-ev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join(".env"), "SYNC_MODE=event\n").expect("write .env");
        let e = Config::resolve(&Overrides::default(), &dir).expect_err("no triggers");
        assert!(e.to_string().contains("SYNC_EVENT_COLLECTIONS"), "{e}");
        std::fs::write(
            dir.join(".env"),
            "SYNC_MODE=event\nSYNC_EVENT_COLLECTIONS=\"orders, tasks\"\nSYNC_EVENT_CHANNELS=alerts\n",
        )
        .expect("write .env");
        let c = Config::resolve(&Overrides::default(), &dir).expect("valid");
        assert_eq!(c.event_collections.len(), 2);
        assert!(c.event_channels.contains("alerts"));
        assert!(c.render().contains("SYNC_EVENT_CHANNELS"));
        std::fs::write(
            dir.join(".env"),
            "SYNC_MODE=event\nSYNC_EVENT_CHANNELS=_bad\n",
        )
        .expect("write .env");
        let e = Config::resolve(&Overrides::default(), &dir).expect_err("bad name");
        assert_eq!(e.key, "SYNC_EVENT_CHANNELS");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn liveness_settings() {
        let dir = std::env::temp_dir().join(format!("sb-config-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join(".env"), "").expect("write .env");
        let c = Config::resolve(&Overrides::default(), &dir).expect("valid");
        assert_eq!(c.hello_timeout_ms, 10_000);
        assert_eq!(c.heartbeat_ms, 15_000);
        assert!(c.render().contains("HEARTBEAT_MS"));
        std::fs::write(
            dir.join(".env"),
            "HELLO_TIMEOUT_MS=500
HEARTBEAT_MS=0
",
        )
        .expect("write .env");
        let c = Config::resolve(&Overrides::default(), &dir).expect("valid");
        assert_eq!((c.hello_timeout_ms, c.heartbeat_ms), (500, 0));
        std::fs::write(
            dir.join(".env"),
            "HELLO_TIMEOUT_MS=0
",
        )
        .expect("write .env");
        let e = Config::resolve(&Overrides::default(), &dir).expect_err("zero");
        assert_eq!(e.key, "HELLO_TIMEOUT_MS");
        std::fs::write(
            dir.join(".env"),
            "HEARTBEAT_MS=soon
",
        )
        .expect("write .env");
        let e = Config::resolve(&Overrides::default(), &dir).expect_err("not a number");
        assert_eq!(e.key, "HEARTBEAT_MS");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn outbound_queue_bounds() {
        let dir = std::env::temp_dir().join(format!("sb-config-outq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join(".env"), "").expect("write .env");
        let c = Config::resolve(&Overrides::default(), &dir).expect("valid");
        assert_eq!((c.out_queue_mb, c.out_queue_total_mb), (8, 256));
        assert_eq!((c.in_queue_mb, c.in_queue_total_mb), (8, 64));
        assert!(c.render().contains("IN_QUEUE_MB") && c.render().contains("IN_QUEUE_TOTAL_MB"));
        assert!(c.render().contains("OUT_QUEUE_MB") && c.render().contains("OUT_QUEUE_TOTAL_MB"));
        std::fs::write(dir.join(".env"), "OUT_QUEUE_MB=1\nOUT_QUEUE_TOTAL_MB=64\n")
            .expect("write .env");
        let c = Config::resolve(&Overrides::default(), &dir).expect("valid");
        assert_eq!((c.out_queue_mb, c.out_queue_total_mb), (1, 64));
        for bad in ["OUT_QUEUE_MB=0\n", "OUT_QUEUE_TOTAL_MB=lots\n"] {
            std::fs::write(dir.join(".env"), bad).expect("write .env");
            let e = Config::resolve(&Overrides::default(), &dir).expect_err("invalid");
            assert!(bad.starts_with(&e.key), "{e}");
            assert!(e.to_string().contains("mebibytes"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
