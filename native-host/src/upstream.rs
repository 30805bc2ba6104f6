//! Hybrid mode: the link from this host up to the cloud (`CLOUD_WS_URL`), one per space.
//!
//! The engine does the syncing (`connect` sends our `hello` with our vector, so a reconnect
//! resumes where the cloud left off); this module only dials, moves frames, and redials with
//! capped, jittered exponential backoff.

use crate::hub::{Input, OUTPUT_QUEUE};
use crate::ws::{next_session, ws_config};
use bridge_core::auth::{self, Claims, Rights};
use bridge_core::backoff::Backoff;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
/// A link that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

/// The token for the upstream `hello`: `token` if given, else one minted from the shared
/// secret (valid for a day; a new one is minted on every dial).
fn token_for(token: &Option<String>, secret: &Option<Vec<u8>>, space: &str) -> Option<String> {
    if token.is_some() {
        return token.clone();
    }
    let secret = secret.as_ref()?;
    let claims = Claims {
        space: space.to_owned(),
        rights: Rights::Admin,
        exp: crate::store::now_ms() + 24 * 3600 * 1000,
    };
    Some(auth::mint(secret, &claims))
}

/// A random number for the backoff's jitter.
fn random() -> u64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        // No OS randomness: the time still spreads a fleet's retries apart.
        Err(_) => crate::store::now_ms(),
    }
}

pub async fn run(
    url: String,
    space: String,
    token: Option<String>,
    secret: Option<Vec<u8>>,
    manual: bool,
    dial_timeout: Duration,
    hub: mpsc::Sender<Input>,
) {
    let target = format!("{}/v1/spaces/{}/ws", url.trim_end_matches('/'), space);
    let mut backoff = Backoff::default(); // 250 ms doubling to 30 s, equal jitter
    loop {
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
                let session = next_session();
                let (out_tx, out_rx) = mpsc::channel(OUTPUT_QUEUE);
                let connect = Input::Connect {
                    space: space.clone(),
                    session,
                    token: token_for(&token, &secret, &space),
                    out: out_tx,
                    manual,
                };
                if hub.send(connect).await.is_err() {
                    return;
                }
                // Peers speak the compact binary encoding. The link ends when the cloud closes
                // it or breaks, or when the engine closes it (e.g. nothing heard for three
                // heartbeats: `HEARTBEAT_MS`).
                crate::ws::run(ws, out_rx, &hub, &space, session, true).await;
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
            Ok(Err(e)) => tracing::warn!(%target, error = %e, "upstream unreachable"),
            Err(_) => {
                tracing::warn!(%target, ?dial_timeout, "upstream did not answer the upgrade in time")
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
