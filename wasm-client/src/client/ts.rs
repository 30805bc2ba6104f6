//! The TypeScript declarations wasm-bindgen puts in the package's `.d.ts`: the shapes of
//! `open()`'s options and of what the verbs and callbacks hand to JavaScript.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `open()`. */
export interface OpenOptions {
  /** WebSocket base URL of a host (`ws://127.0.0.1:3333`) or a full `/v1/spaces/{space}/ws` URL. Without it the store works offline only. */
  url?: string;
  space: string;
  /** Token from `sacred-bridge token create` (cloud hosts require one). */
  token?: string;
  /** Display name in presence. */
  name?: string;
  /** IndexedDB database name; default `sacred-bridge/{space}`. */
  db?: string;
  /** Ping interval on the link (ms, default 15000); a link silent for three is redialled. */
  heartbeatMs?: number;
  /** Budget of the in-memory cache of document states, in bytes (default 33554432, 32 MiB). Documents live in IndexedDB; only this many bytes of them are kept in memory (`stats().cacheBytes`). */
  cacheBytes?: number;
  /** The collections this store replicates (patterns: a name, or a prefix ending in `*`); default: the whole space. Only their documents come down; writes to others still go up (their documents show the store's own writes only). Fixed when the store is created: opening it with other collections fails with `bad_request`. */
  collections?: string[];
}
export interface Stamp { wall: number; counter: number; replica: string }
export interface Dot { replica: string; counter: number }
export interface DocView {
  collection: string;
  id: string;
  /** `null` when deleted. */
  value: Record<string, unknown> | null;
  stamp?: Stamp;
  /** An open conflict (collections with policy `manual`). */
  conflict: boolean;
}
export interface ConflictSide { dot: Dot; tier: "local" | "cloud"; stamp: Stamp; value: Record<string, unknown> | null }
export interface Conflict { collection: string; id: string; shown: Dot; sides: ConflictSide[]; fields: string[] }
export interface Message { id: { origin: string; seq: number }; channel: string; payload: unknown; stamp: Stamp }
export interface PresenceEntry { node: string; session: number; name: string; kind: "agent" | "peer"; tier: "local" | "cloud"; since: number }
export interface Status {
  online: boolean;
  syncing: boolean;
  /** Own writes not yet acknowledged by a cloud replica ("synced" when 0). */
  pending: number;
  lastCloudAck: number | null;
  peerTier: "local" | "cloud" | null;
  replica: string;
  incoming: number;
  /** The last problem (`"forbidden: …"` when the host refuses our pushes, an unreachable host, records set aside); `null` once sync works again. */
  error: string | null;
  /** The collection patterns this store holds (`null`: the whole space). */
  collections: string[] | null;
  /** The patterns a change under way (`subscribeCollections`) will hold, else `null`. */
  replicating: string[] | null;
  /** Patterns no longer held whose documents are still being dropped. */
  forgetting: string[];
}
/** Stable error codes (docs/protocol.md), plus `closed` (the handle was closed) and, from `open()`, `busy`. */
export type ErrorCode = "bad_request" | "malformed" | "too_large" | "bad_policy" | "not_found" | "forbidden" | "unauthorized" | "internal" | "closed" | "busy" | string;
/** What every promise of this package rejects with, and what the synchronous calls (`messages`, `policy`, `status`, `stats`, …) throw: an `Error` with a `code`. Promise-returning calls never throw. */
export interface BridgeError extends Error { code: ErrorCode }
export type Policy = "lww" | "cloud_wins" | "local_wins" | "merge" | "manual";
"#;
