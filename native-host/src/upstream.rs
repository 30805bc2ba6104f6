//! Hybrid mode: the link from this host up to the cloud (`CLOUD_WS_URL`), one per space.
//!
//! The engine does the syncing (`connect` sends our `hello` with our vector, so a reconnect
//! resumes where the cloud left off); this module only dials, moves frames, and redials with
//! capped, jittered exponential backoff.

use crate::hub::{Input, OUTPUT_QUEUE};
use crate::ws::{next_session, read_loop, write_loop, ws_config, Ended};
use bridge_core::auth::{self, Claims, Rights};
use bridge_core::backoff::Backoff;
use futures_util::StreamExt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
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
    hub: mpsc::Sender<Input>,
) {
    let target = format!("{}/v1/spaces/{}/ws", url.trim_end_matches('/'), space);
    let mut backoff = Backoff::default(); // 250 ms doubling to 30 s, equal jitter
    loop {
        let started = Instant::now();
        match tokio_tungstenite::connect_async_with_config(&target, Some(ws_config()), true).await {
            Ok((ws, _)) => {
                tracing::info!(%target, "upstream link up");
                let session = next_session();
                let (out_tx, out_rx) = mpsc::channel(OUTPUT_QUEUE);
                let refuse = out_tx.downgrade();
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
                let (sink, stream) = ws.split();
                // Peers speak the compact binary encoding.
                let binary = Arc::new(AtomicBool::new(true));
                let mut writer = tokio::spawn(write_loop(sink, out_rx, binary.clone()));
                let (ended, _) = read_loop(stream, &hub, &space, session, &binary, &refuse).await;
                if ended == Ended::Refused {
                    // Give the error and the close a moment to leave.
                    let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
                }
                writer.abort();
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
            Err(e) => tracing::warn!(%target, error = %e, "upstream unreachable"),
        }
        if started.elapsed() >= STABLE {
            backoff.reset();
        }
        let wait = Duration::from_millis(backoff.next_delay(random()));
        tracing::debug!(?wait, "redialling upstream");
        tokio::time::sleep(wait).await;
    }
}
