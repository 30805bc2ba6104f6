//! Hybrid mode: the links from this host up to the cloud (`CLOUD_WS_URL`), one per space the
//! host serves.
//!
//! The hub announces every space it opens (restored from the database at start, or opened
//! later by a local client); [`manage`] gives each one a link if it has a token for it, and
//! otherwise tells the hub why not, so `status` shows the space as not linked with the reason.
//! The engine does the syncing (`connect` sends our `hello` with our vector, so a reconnect
//! resumes where the cloud left off); [`run`] only dials, moves frames, and redials with
//! capped, jittered exponential backoff.

use crate::error::Error;
use crate::hub::{Input, LinkNote};
use crate::out_queue::{self, Budget};
use crate::ws::ws_config;
use bridge_core::auth::{self, Claims, Rights};
use bridge_core::backoff::Backoff;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
/// A link that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

/// Where each space's upstream link gets its token. A token names one space, so a link
/// presents a token for its own space only.
pub struct Tokens {
    /// Tokens given explicitly, by the space their claims name: `CLOUD_TOKENS_FILE` (later
    /// lines win), which wins over `BRIDGE_TOKEN`.
    given: BTreeMap<String, (String, Claims)>,
    /// `BRIDGE_SECRET`: an admin token is minted for a space with no given token.
    secret: Option<Vec<u8>>,
}

impl Tokens {
    /// Reads `BRIDGE_TOKEN` and the tokens file (one token per line; empty lines and lines
    /// starting with `#` are skipped). Each token's space is read from its claims.
    pub fn load(
        file: Option<&Path>,
        bridge_token: Option<&str>,
        secret: Option<Vec<u8>>,
    ) -> Result<Tokens, Error> {
        let mut given = BTreeMap::new();
        if let Some(t) = bridge_token.map(str::trim).filter(|t| !t.is_empty()) {
            let c = auth::peek(t).map_err(|_| Error::BadBridgeToken)?;
            given.insert(c.space.clone(), (t.to_owned(), c));
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::TokensFileUnread {
                path: path.to_owned(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let c = auth::peek(line).map_err(|_| Error::BadTokenLine {
                    path: path.to_owned(),
                    line: i + 1,
                })?;
                given.insert(c.space.clone(), (line.to_owned(), c));
            }
        }
        Ok(Tokens { given, secret })
    }

    /// The token for `space`'s link at `now` (ms), or why the space cannot be linked.
    pub fn for_space(&self, space: &str, now: u64) -> Result<String, String> {
        if let Some((token, c)) = self.given.get(space) {
            if c.rights < Rights::Admin {
                return Err(format!(
                    "the token for `{space}` has `{}` rights; the upstream link relays other replicas' writes and needs an `admin` token (`sacred-bridge token create --space {space} --rights admin`)",
                    c.rights.as_str()
                ));
            }
            if c.collections.is_some() {
                return Err(format!(
                    "the token for `{space}` is scoped to collections; the upstream link relays the writes of local replicas and needs an admin token without --collections (SYNC_COLLECTIONS chooses what comes down)"
                ));
            }
            if c.exp <= now {
                return Err(format!(
                    "the token for `{space}` expired ({} ms since the epoch); put a new one in CLOUD_TOKENS_FILE and restart",
                    c.exp
                ));
            }
            return Ok(token.clone());
        }
        if let Some(secret) = &self.secret {
            // Valid for a day; a new one is minted on every dial.
            let claims = Claims {
                space: space.to_owned(),
                rights: Rights::Admin,
                exp: now + 24 * 3600 * 1000,
                collections: None,
            };
            return Ok(auth::mint(secret, &claims));
        }
        Err(format!(
            "no token for `{space}`: add an admin token for it to CLOUD_TOKENS_FILE (`sacred-bridge token create --space {space} --rights admin`, signed with the cloud's secret), or give this host the cloud's BRIDGE_SECRET"
        ))
    }
}

/// What every link shares.
pub struct LinkConfig {
    /// The cloud's WebSocket base URL.
    pub url: String,
    pub tokens: Tokens,
    /// Links push only when asked (SYNC_MODE manual / periodic / event).
    pub manual: bool,
    /// How long a dial may take (a frozen cloud accepts TCP but never answers the upgrade).
    pub dial_timeout: Duration,
    /// The outbound queues' bounds, which the links share with every other connection.
    pub out_queues: Arc<Budget>,
    /// The inbound bounds (`IN_QUEUE_MB`, `IN_QUEUE_TOTAL_MB`), shared the same way.
    pub in_queues: Arc<crate::in_queue::Budget>,
}

/// Links each space announced on `spaces` (once), or reports to the hub why it cannot.
pub async fn manage(
    cfg: LinkConfig,
    hub: mpsc::Sender<Input>,
    mut spaces: mpsc::UnboundedReceiver<String>,
) {
    let cfg = Arc::new(cfg);
    let mut seen = BTreeSet::new();
    while let Some(space) = spaces.recv().await {
        if !seen.insert(space.clone()) {
            continue;
        }
        match cfg.tokens.for_space(&space, crate::clock::now_ms()) {
            Ok(_) => {
                tokio::spawn(run(cfg.clone(), space, hub.clone()));
            }
            Err(reason) => {
                tracing::warn!(%space, %reason, "space not linked upstream");
                let note = Input::Link {
                    space,
                    note: LinkNote::NotLinked(reason),
                };
                if hub.send(note).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A random number for the backoff's jitter.
fn random() -> u64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        // No OS randomness: the time still spreads a fleet's retries apart.
        Err(_) => crate::clock::now_ms(),
    }
}

/// Keeps `space`'s link up until the hub is gone, or until it has no valid token any more.
pub async fn run(cfg: Arc<LinkConfig>, space: String, hub: mpsc::Sender<Input>) {
    let target = format!("{}/v1/spaces/{}/ws", cfg.url.trim_end_matches('/'), space);
    let dial_timeout = cfg.dial_timeout;
    let mut backoff = Backoff::default(); // 250 ms doubling to 30 s, equal jitter
    loop {
        let token = match cfg.tokens.for_space(&space, crate::clock::now_ms()) {
            Ok(t) => t,
            Err(reason) => {
                tracing::warn!(%space, %reason, "upstream link stopped");
                let _ = hub
                    .send(Input::Link {
                        space,
                        note: LinkNote::NotLinked(reason),
                    })
                    .await;
                return;
            }
        };
        let started = Instant::now();
        // Bounded: a frozen cloud still completes TCP handshakes (its kernel does) but never
        // answers the WebSocket upgrade.
        let dial = tokio::time::timeout(
            dial_timeout,
            tokio_tungstenite::connect_async_with_config(&target, Some(ws_config()), true),
        );
        match dial.await {
            Ok(Ok((ws, _))) => {
                tracing::info!(%target, "upstream link up");
                let (out_tx, out_rx) = out_queue::channel(&cfg.out_queues);
                let refuse = out_tx.downgrade();
                let (session_tx, session_rx) = tokio::sync::oneshot::channel();
                let connect = Input::Connect {
                    space: space.clone(),
                    token: Some(token),
                    out: out_tx,
                    manual: cfg.manual,
                    session: session_tx,
                };
                if hub.send(connect).await.is_err() {
                    return;
                }
                // The space's engine numbers the session (0: the space could not be opened,
                // and the link ends at once).
                let session = session_rx.await.unwrap_or(0);
                // Peers speak the compact binary encoding. The link ends when the cloud closes
                // it or breaks, or when the engine closes it (e.g. nothing heard for three
                // heartbeats: `HEARTBEAT_MS`).
                let queues = crate::ws::Queues {
                    out: out_rx,
                    inbound: cfg.in_queues.connection(),
                };
                crate::ws::run(ws, queues, &hub, &space, session, true, &refuse).await;
                if hub
                    .send(Input::Closed {
                        space: space.clone(),
                        session,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                tracing::warn!(%target, "upstream link down");
            }
            Ok(Err(e)) => {
                tracing::warn!(%target, error = %e, "upstream unreachable");
                let note = Input::Link {
                    space: space.clone(),
                    note: LinkNote::Unreachable(format!("cannot reach {target}: {e}")),
                };
                if hub.send(note).await.is_err() {
                    return;
                }
            }
            Err(_) => {
                tracing::warn!(%target, ?dial_timeout, "upstream did not answer the upgrade in time");
                let note = Input::Link {
                    space: space.clone(),
                    note: LinkNote::Unreachable(format!(
                        "{target} did not answer the WebSocket upgrade within {} ms",
                        dial_timeout.as_millis()
                    )),
                };
                if hub.send(note).await.is_err() {
                    return;
                }
            }
        }
        if started.elapsed() >= STABLE {
            backoff.reset();
        }
        let wait = Duration::from_millis(backoff.next_delay(random()));
        tracing::debug!(?wait, "redialling upstream");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(space: &str, rights: Rights, exp: u64) -> String {
        let c = Claims {
            space: space.into(),
            rights,
            exp,
            collections: None,
        };
        auth::mint(b"cloud-secret", &c)
    }

    #[test]
    fn each_space_gets_its_own_token_or_a_reason() {
        let dir = std::env::temp_dir().join(format!("sb-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("tokens");
        let team = token("team", Rights::Admin, 10_000);
        std::fs::write(
            &file,
            format!(
                "# tokens\n\n{}\n  {team}  \n{}\n",
                token("team", Rights::Admin, 1),
                token("ro", Rights::Write, 10_000)
            ),
        )
        .expect("write tokens");
        let proj = token("proj", Rights::Admin, 10_000);
        let scoped = auth::mint(
            b"cloud-secret",
            &Claims {
                space: "part".into(),
                rights: Rights::Admin,
                exp: 10_000,
                collections: auth::parse_collections("notes:admin").ok(),
            },
        );
        let text = std::fs::read_to_string(&file).expect("read tokens");
        std::fs::write(&file, format!("{text}{scoped}\n")).expect("write tokens");
        let t = Tokens::load(Some(&file), Some(&proj), None).expect("valid");
        assert!(t
            .for_space("part", 5)
            .is_err_and(|r| r.contains("scoped to collections")));
        assert_eq!(t.for_space("proj", 5), Ok(proj.clone()));
        // A later line wins.
        assert_eq!(t.for_space("team", 5), Ok(team));
        assert!(t.for_space("ro", 5).is_err_and(|r| r.contains("admin")));
        assert!(t
            .for_space("team", 10_000)
            .is_err_and(|r| r.contains("expired")));
        assert!(t
            .for_space("other", 5)
            .is_err_and(|r| r.contains("no token") && r.contains("CLOUD_TOKENS_FILE")));
        // With the cloud's secret, a space with no given token gets a minted one for itself.
        let t = Tokens::load(None, None, Some(b"cloud-secret".to_vec())).expect("valid");
        let minted = t.for_space("other", 5).expect("minted");
        assert_eq!(
            auth::verify(b"cloud-secret", &minted, "other", 6),
            Ok(auth::Grant::ADMIN)
        );
        assert!(auth::verify(b"cloud-secret", &minted, "team", 6).is_err());
        // A line that is not a token is refused with its number.
        std::fs::write(&file, "sb1.zz.00\n").expect("write tokens");
        let e = Tokens::load(Some(&file), None, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("line 1"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
