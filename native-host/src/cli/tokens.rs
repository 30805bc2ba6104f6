//! `token create`: mint an access token from `BRIDGE_SECRET`, offline (no host involved).

use crate::config::Config;
use crate::error::{Error, Result};
use bridge_core::auth::{self, Claims, Rights};
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Mint a token for one space.
    #[command(
        after_help = "Examples:\n  BRIDGE_SECRET=... sacred-bridge token create --space team --rights write --ttl 7d\n  BRIDGE_SECRET=... sacred-bridge token create --space team --collections 'notes/*:write,audit:read'"
    )]
    Create {
        #[arg(long)]
        space: String,
        /// Rights in the space; with --collections, on what is not a collection's documents
        /// (channels, presence, `_config`). Default: write, or read with --collections
        #[arg(long, value_enum)]
        rights: Option<RightsArg>,
        /// Rights per collection pattern: `pattern:right,...`, a pattern being a collection
        /// name or a prefix ending in `*`. Collections no pattern matches are closed
        #[arg(long, value_name = "PATTERNS")]
        collections: Option<String>,
        /// Lifetime: seconds, or a duration: 30s, 15m, 12h, 7d, 1w, 1h30m
        #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = ttl_arg)]
        ttl: u64,
    },
}

/// `--ttl` for clap: the lifetime in ms.
fn ttl_arg(s: &str) -> std::result::Result<u64, String> {
    parse_ttl(s).ok_or_else(|| {
        "expected seconds or a duration such as 30s, 15m, 12h, 7d, 1w or 1h30m".to_owned()
    })
}

/// `--rights`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RightsArg {
    Read,
    Write,
    Admin,
}

impl From<RightsArg> for Rights {
    fn from(r: RightsArg) -> Rights {
        match r {
            RightsArg::Read => Rights::Read,
            RightsArg::Write => Rights::Write,
            RightsArg::Admin => Rights::Admin,
        }
    }
}

/// A token's lifetime in ms: `humantime` durations (`30s`, `15m`, `12h`, `7d`, `1w`,
/// `1h 30m`), or a bare number of seconds.
pub fn parse_ttl(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok()?.checked_mul(1000);
    }
    u64::try_from(humantime::parse_duration(s).ok()?.as_millis()).ok()
}

pub fn token(cfg: &Config, cmd: TokenCmd) -> Result<ExitCode> {
    let TokenCmd::Create {
        space,
        rights,
        collections,
        ttl,
    } = cmd;
    let secret = cfg.secret.as_ref().ok_or(Error::NoSecret)?;
    bridge_core::check_name("space", &space, false).map_err(Error::BadName)?;
    let collections = match collections {
        Some(text) => Some(auth::parse_collections(&text).map_err(Error::BadName)?),
        None => None,
    };
    let rights = match (rights, &collections) {
        (Some(r), _) => r.into(),
        (None, Some(_)) => Rights::Read,
        (None, None) => Rights::Write,
    };
    let claims = Claims {
        space,
        rights,
        exp: crate::clock::now_ms().saturating_add(ttl),
        collections,
    };
    println!("{}", auth::mint(secret.as_bytes(), &claims));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Some(90_000));
        assert_eq!(parse_ttl("15m"), Some(900_000));
        assert_eq!(parse_ttl("7d"), Some(604_800_000));
        assert_eq!(parse_ttl("1w"), Some(604_800_000));
        assert_eq!(parse_ttl("1h 30m"), Some(5_400_000));
        assert_eq!(parse_ttl("1h30m"), Some(5_400_000));
        assert_eq!(parse_ttl("1x"), None);
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl(""), None);
    }
}
