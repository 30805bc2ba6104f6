//! # bridge-core — the sans-IO heart of Sacred Bridge
//!
//! Everything that decides what a replica holds, shows and says lives here, and nothing here
//! touches the world: no sockets, no files, no threads, no clock, no randomness, and no hash
//! map order in anything that is sent or compared. Time comes in as `now_ms`, replica ids come
//! in from the host, and everything that must happen comes out as values that the host polls:
//! frames to send ([`Engine::poll_transmit`]), batches to persist ([`Engine::poll_persist`]),
//! and events to show ([`Engine::poll_event`]). The same code runs in the native host, in the
//! Durable Object and in the browser (wasm32, with no imports from `env`).
//!
//! The pieces, bottom up:
//! - [`clock`]: hybrid logical clock with a skew bound;
//! - [`vv`]: version vectors;
//! - `field` (public as [`policy::Field`]): a document's body, each field stamped by the
//!   write that last changed it;
//! - [`doc`]: a document as a multi-value register with dotted version vectors;
//! - [`policy`]: the five conflict policies;
//! - [`replica`]: one space at one store: documents, live-dot index, delta extraction;
//! - [`message`]: channel messages, retention, presence;
//! - [`frame`] and [`codec`]: the protocol and its JSON and binary encodings;
//! - [`request`]: the one request type every transport decodes into (agent verbs, HTTP,
//!   forwarded tab calls), its reply, and idempotency keys;
//! - [`limits`]: what a write or a message may hold, checked before anything is stored;
//! - [`engine`]: sessions, acks gated on persistence, the sync state machine;
//! - [`auth`]: rights, and HMAC tokens (feature `tokens`); [`backoff`]: reconnect pacing;
//! - `api` (feature `http`): the HTTP API as values, shared by the native host and the
//!   edge worker;
//! - `schema` (feature `sql`): the SQLite schema and statements both stores run;
//! - [`status`]: the native host's status document (`GET /v1/status`) as types.
//!
//! Servers build with the default features (`tokens`, `http`, `sql`); the browser package
//! builds with none of them, so it links no HTTP routing, token verification or SQL.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "http")]
pub mod api;
pub mod auth;
pub mod backoff;
pub mod clock;
pub mod codec;
pub mod doc;
pub mod engine;
pub mod error;
mod field;
pub mod frame;
pub mod ids;
pub mod limits;
pub mod message;
pub mod policy;
pub mod replica;
pub mod request;
#[cfg(feature = "sql")]
pub mod schema;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod status;
#[cfg(any(test, feature = "sim"))]
pub mod testing;
mod vec_map;
pub mod vv;

pub use clock::{Hlc, Stamp};
pub use doc::{DocState, Sibling, WriteOp};
pub use engine::{DocEvents, Engine, EngineConfig, Event, Output, SessionSnapshot, Transmit};
pub use error::{check_name, Error, ErrorCode, Result};
pub use frame::{Frame, PROTOCOL_VERSION};
pub use ids::{DocKey, Dot, ReplicaId, SessionId, Tier};
pub use message::{Message, MessageId};
pub use policy::Policy;
pub use replica::PersistBatch;
pub use replica::Replica;
pub use request::{Answer, Reply, Request};
pub use vv::VersionVector;
