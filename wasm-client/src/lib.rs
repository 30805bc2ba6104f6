//! # wasm-client — Sacred Bridge in the browser
//!
//! The browser is one more host of the same [`bridge_core::Engine`]: it persists every
//! [`bridge_core::PersistBatch`] into IndexedDB in one transaction, reports it persisted, and
//! moves frames over a WebSocket as a `peer` speaking the binary encoding. All sync logic —
//! merge, policies, acks gated on durability, resume by vector — stays in the core; this
//! crate only does IO and turns engine events into JavaScript callbacks.
//!
//! ```js
//! import init, { open } from "./pkg/wasm_client.js";
//! await init();
//! const db = await open({ url: "ws://127.0.0.1:3333", space: "team", token, name: "tab" });
//! await db.put("notes", "n1", { title: "hello" }); // resolves once stored in IndexedDB
//! db.subscribe("notes", (doc) => console.log(doc.id, doc.value));
//! db.onStatus((s) => console.log(s.online, s.pending, s.lastCloudAck));
//! ```
//!
//! Modules:
//! - [`status`]: what "pending" and "synced" mean, as plain arithmetic (tested natively);
//! - [`retention`]: which stored messages a channel's retention drops;
//! - [`tabs`]: several tabs on one store — one leads, the others forward to it;
//! - [`scratch`]: the engine's durable layer — documents read ahead from IndexedDB, and the
//!   reads it could not answer;
//! - `store` (wasm32): the IndexedDB store — replica id, metadata at open, reads for the
//!   engine, one transaction per flush;
//! - `client` (wasm32): the `open()` handle and its verbs (`client/mod.rs`), with a module
//!   per concern — TypeScript declarations, the pump that persists, releases and sends, the
//!   WebSocket link with jittered backoff and heartbeat, the leader and follower tab roles;
//! - `js` (wasm32): the few browser globals used directly (timers, crypto, Web Locks).
#![forbid(unsafe_code)]

pub mod retention;
pub mod scratch;
pub mod status;
pub mod tabs;

#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
pub mod store;

#[cfg(target_arch = "wasm32")]
pub use client::{open, Bridge};
