//! The tools an MCP client sees: names, descriptions and JSON schemas, written so that a model
//! can use them with no other documentation. Argument checking helpers for `server.rs`.

use super::link::BridgeError;
use serde_json::{json, Map, Value};

const NAME: &str = "1 to 256 bytes, no control characters; names starting with `_` are reserved";

fn name_arg(what: &str) -> Value {
    json!({"type": "string", "minLength": 1, "description": format!("{what} ({NAME}).")})
}

fn object(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

/// Every tool, as the `tools/list` answer's `tools` array.
pub fn list() -> Value {
    let coll = name_arg("Collection name, e.g. `notes`");
    let id = name_arg("Document id within the collection, e.g. `n1`");
    let read_only = json!({"readOnlyHint": true, "openWorldHint": false});
    let write = json!({"readOnlyHint": false, "destructiveHint": false, "openWorldHint": false});
    json!([
        {
            "name": "get",
            "title": "Get a document",
            "description": "Read one document of the shared space. Returns {doc: {collection, id, value, stamp, conflict}}: `value` is the JSON object, or null when the document does not exist or was deleted; `stamp` is when it was written (wall ms, counter, replica); `conflict` is true when a `manual` collection holds an open conflict on it (see conflicts_show). Sees every write the bridge has accepted.",
            "inputSchema": object(json!({"collection": coll, "id": id}), &["collection", "id"]),
            "annotations": read_only,
        },
        {
            "name": "put",
            "title": "Replace a document",
            "description": "Create or replace a whole document with a JSON object (null fields are kept as values). Returns {ok, dot} only once the bridge has stored the write durably; it then syncs to every replica, local and cloud. Needs write rights. A document must be a JSON object under 256 KiB, nesting at most 64 levels.",
            "inputSchema": object(json!({"collection": coll, "id": id, "value": {"type": "object", "description": "The new document, a JSON object, e.g. {\"title\": \"hi\", \"done\": false}."}}), &["collection", "id", "value"]),
            "annotations": write,
        },
        {
            "name": "patch",
            "title": "Patch a document",
            "description": "Change some top-level fields of a document (JSON merge patch): fields given replace the old ones, a field set to null is removed, other fields stay. Creates the document if it does not exist. Returns {ok, dot} once durable. Needs write rights. Prefer patch over put when several agents edit different fields of one document: under the `merge` policy concurrent patches to different fields are all kept.",
            "inputSchema": object(json!({"collection": coll, "id": id, "value": {"type": "object", "description": "The fields to change, e.g. {\"done\": true, \"draft\": null}."}}), &["collection", "id", "value"]),
            "annotations": write,
        },
        {
            "name": "delete",
            "title": "Delete a document",
            "description": "Delete a document (a tombstone that replicates, so the document does not come back on other replicas). Returns {ok, dot} once durable. Needs write rights.",
            "inputSchema": object(json!({"collection": coll, "id": id}), &["collection", "id"]),
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false},
        },
        {
            "name": "list",
            "title": "List documents (paged)",
            "description": "List the documents of a collection in id order, one page at a time. Returns {docs: [{collection, id, value, conflict}], next}; when `next` is present, call again with after = next for the following page. Deleted documents are not listed.",
            "inputSchema": object(json!({
                "collection": coll,
                "after": {"type": "string", "description": "Start after this document id (the `next` of the previous page). Omit for the first page."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100, "description": "Documents per page, 1 to 1000."},
            }), &["collection"]),
            "annotations": read_only,
        },
        {
            "name": "send",
            "title": "Send a message on a channel",
            "description": "Publish a JSON message on a channel. Every subscriber of the channel, on this bridge and on every bridge linked to it (local and cloud), receives it once; other agents read it with read_messages. The sender does not receive its own message. Returns {ok} once stored durably. Needs write rights. The payload is any JSON value under 256 KiB.",
            "inputSchema": object(json!({
                "channel": name_arg("Channel name, e.g. `ops`"),
                "payload": {"description": "The message: any JSON value, e.g. {\"text\": \"build done\"}."},
            }), &["channel", "payload"]),
            "annotations": write,
        },
        {
            "name": "read_messages",
            "title": "Read messages of a channel",
            "description": "Read the messages of a channel with an offset greater than `after`, oldest first. Returns {messages: [{offset, payload, origin, seq, stamp}], next}: pass next as `after` in the following call to get only newer messages. On the first call for a channel the bridge replays the messages it retains (the last 100 unless configured otherwise) after `after`; from then on new messages are collected as they arrive. With wait_seconds > 0 and nothing new yet, waits up to that long for the next message. Your own messages are not returned. Offsets are this bridge's: start with after = 0.",
            "inputSchema": object(json!({
                "channel": name_arg("Channel name, e.g. `ops`"),
                "after": {"type": "integer", "minimum": 0, "default": 0, "description": "Return only messages with a larger offset: 0 for everything retained, else the `next` of the previous call."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100, "description": "At most this many messages."},
                "wait_seconds": {"type": "number", "minimum": 0, "maximum": 60, "default": 0, "description": "When there is nothing new, wait up to this many seconds (at most 60) for the next message."},
            }), &["channel"]),
            "annotations": read_only,
        },
        {
            "name": "conflicts_list",
            "title": "List open conflicts",
            "description": "List the open conflicts of `manual` collections (all collections, or one). Each conflict has collection, id, sides (the concurrent writes: dot, tier local/cloud, stamp, value), fields (the top-level fields that differ) and shown (the side the document shows meanwhile). Resolve one with conflicts_resolve.",
            "inputSchema": object(json!({"collection": {"type": "string", "description": "Only this collection. Omit for all."}}), &[]),
            "annotations": read_only,
        },
        {
            "name": "conflicts_show",
            "title": "Show one conflict",
            "description": "Show the open conflict of one document: each side (who wrote it: replica and tier; when: stamp; what: value, null for a delete) and the fields that differ. Fails with not_found when the document has no open conflict.",
            "inputSchema": object(json!({"collection": coll, "id": id}), &["collection", "id"]),
            "annotations": read_only,
        },
        {
            "name": "conflicts_resolve",
            "title": "Resolve a conflict",
            "description": "Resolve the open conflict of a document with the value to keep (a JSON object, e.g. one side's value or a merge of them; null deletes the document). The resolution is a write that has seen every side, so it ends the conflict on every replica once synced. Returns {ok, dot} once durable. Needs write rights. Fails with not_found when there is no open conflict.",
            "inputSchema": object(json!({"collection": coll, "id": id, "value": {"type": ["object", "null"], "description": "The document to keep, or null to delete it."}}), &["collection", "id", "value"]),
            "annotations": write,
        },
        {
            "name": "set_policy",
            "title": "Set a collection's conflict policy",
            "description": "Set how a collection resolves concurrent writes (replicated to every replica): lww = the newest write wins, whole document; cloud_wins / local_wins = the write made on that side wins ties; merge = field by field, each top-level field takes its newest value; manual = show the newest provisionally and keep an open conflict until someone resolves it. Needs admin rights.",
            "inputSchema": object(json!({"collection": coll, "policy": {"type": "string", "enum": ["lww", "last_write_wins", "cloud_wins", "local_wins", "merge", "manual"], "description": "The policy."}}), &["collection", "policy"]),
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false},
        },
        {
            "name": "status",
            "title": "Bridge status",
            "description": "Status of the bridge this session is connected to: {local: {...}} with stored counts, spaces, sessions, peers, open conflicts and, on a hybrid bridge, the upstream link to the cloud (state connected/connecting/not_linked with the reason, pending uploads, lag, last sync). With a cloud API configured, the cloud's status too, under `cloud`. Also {session: {space, name, rights, replica, tier}}: who you are on the bridge.",
            "inputSchema": object(json!({}), &[]),
            "annotations": read_only,
        },
        {
            "name": "presence",
            "title": "Who is connected",
            "description": "Everyone connected to this bridge and to the bridges linked to it (local and cloud): agents (including MCP clients, under their client name), browsers and peers. Returns {entries: [{name, kind, tier (local/cloud), node, session, since (ms)}]}.",
            "inputSchema": object(json!({}), &[]),
            "annotations": read_only,
        },
    ])
}

/// The tool arguments, with typed accessors that fail as the bridge would: `malformed` and a
/// message naming the argument.
pub struct Args<'a>(pub &'a Map<String, Value>);

impl Args<'_> {
    pub fn str(&self, key: &str) -> Result<String, BridgeError> {
        match self.0.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(BridgeError::new(
                "malformed",
                format!("argument `{key}` must be a string, got {other}"),
            )),
            None => Err(BridgeError::new(
                "malformed",
                format!("argument `{key}` is required (a string)"),
            )),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<String>, BridgeError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.str(key).map(Some),
        }
    }

    /// Any JSON value (null included), required.
    pub fn value(&self, key: &str) -> Result<Value, BridgeError> {
        self.0
            .get(key)
            .cloned()
            .ok_or_else(|| BridgeError::new("malformed", format!("argument `{key}` is required")))
    }

    /// A non-negative integer in `lo..=hi`, or `default` when absent.
    pub fn uint(&self, key: &str, default: u64, lo: u64, hi: u64) -> Result<u64, BridgeError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(BridgeError::new(
                    "bad_request",
                    format!("argument `{key}` must be an integer from {lo} to {hi}, got {v}"),
                )),
            },
        }
    }

    /// Seconds in `0..=max`, 0 when absent.
    pub fn seconds(&self, key: &str, max: f64) -> Result<f64, BridgeError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(0.0),
            Some(v) => match v.as_f64() {
                Some(n) if (0.0..=max).contains(&n) => Ok(n),
                _ => Err(BridgeError::new(
                    "bad_request",
                    format!(
                        "argument `{key}` must be a number of seconds from 0 to {max}, got {v}"
                    ),
                )),
            },
        }
    }
}
