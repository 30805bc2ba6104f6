//! The browser package against the edge relay: wrangler's dev server runs the Durable Object, and
//! wasm-client/e2e/edge.mjs drives two headless Chromium profiles through it (offline edits
//! converging under `merge`, a message crossing).
//!
//! Needs the wasm-client package (scripts/build-wasm-client.sh), Chromium and playwright-core
//! besides the edge bundle, so plain `cargo test` skips it; scripts/test.sh runs it in the
//! `e2e-browser` step: `cargo test -p tests --test edge_browser -- --ignored`.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use tests::edge::{repo_root, serial, Edge};
use tests::{mint_token, TempDir};

const SECRET: &str = "edge-browser-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the wasm-client package, Chromium and the edge bundle (scripts/test.sh)"]
async fn two_browsers_converge_through_the_edge_relay() {
    let _one_at_a_time = serial().await;
    let dir = TempDir::new("edge-browser");
    let edge = Edge::start(&dir.0.join("state"), SECRET);
    let token = mint_token(&dir.0, SECRET, "team", "admin", "1h");
    let status = Command::new("node")
        .arg("wasm-client/e2e/edge.mjs")
        .current_dir(repo_root())
        .env("EDGE_URL", format!("ws://127.0.0.1:{}", edge.port))
        .env("EDGE_TOKEN", token)
        .env("TMPDIR", &dir.0)
        .status()
        .unwrap();
    assert!(status.success(), "edge.mjs failed:\n{}", edge.log());
}
