//! The host status document (`GET /v1/status`) as types.
//!
//! The native host builds a [`HostStatus`] and serves it as JSON; the CLI (`status`, `sync`,
//! `watch`, `agents`, `backup`), `monitor` and the MCP `status` tool read it back into the same
//! types. A key renamed on one side is then a decode error on the other, never a silent zero.
//! The JSON is documented in docs/protocol.md (section 9) and native-host/README.md, and the
//! web inspector's monitor view reads it too, so field names and shapes are the wire format:
//! `null` stays `null` (no field here is skipped when empty, except the host details a token
//! does not see).
//!
//! Cursors (`cursor`, `acked`) are the `replica:counter,...` strings of the HTTP API
//! (`api::format_cursor`, feature `http`), as a client passes them back as `since`.

use crate::message::PresenceEntry;
use crate::{Policy, ReplicaId, SessionId, Tier};
use serde::{Deserialize, Serialize};

/// `GET /v1/status`: the host and every space it shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Seconds since the host started.
    pub uptime_s: u64,
    /// What only a caller who sees the whole host gets (no secret, i.e. local mode): absent
    /// when a token limits the answer to the spaces it opens.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostDetails>,
    /// The host's tier: `local` in local and hybrid mode, `cloud` in cloud mode.
    pub tier: Tier,
    /// The host's clock (ms since the epoch) when it answered; ages are against it.
    pub now_ms: u64,
    /// Every space the caller may see.
    pub spaces: Vec<SpaceStatus>,
}

/// The database's totals and where the host lives: not shown to a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDetails {
    /// Row counts of the whole database.
    pub stored: Stored,
    /// The database file (backup and restore find it here).
    pub db: String,
    /// The host's process id.
    pub pid: u32,
    /// When any peer last acknowledged a push (ms since the epoch, 0 = never).
    pub last_peer_ack_ms: u64,
}

/// Rows in the database, all spaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Spaces stored.
    pub spaces: u64,
    /// Documents stored, tombstones included.
    pub docs: u64,
    /// Retained channel messages stored.
    pub messages: u64,
}

/// One space at this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceStatus {
    /// The space's name.
    pub space: String,
    /// This store's replica of the space.
    pub replica: ReplicaId,
    /// This store's tier.
    pub tier: Tier,
    /// Documents, tombstones included.
    pub docs: u64,
    /// The space's version vector as a cursor (`replica:counter,...`).
    pub cursor: String,
    /// Sessions attached to the space here (agents and peers, handshake done or not).
    pub sessions: u64,
    /// Open conflicts in the space's `manual` collections.
    pub open_conflicts: u64,
    /// Bytes of document states this host keeps in memory for the space (the core's own
    /// accounting; the database holds every document).
    #[serde(default)]
    pub cache_bytes: u64,
    /// The most [`SpaceStatus::cache_bytes`] may reach (`CACHE_MB`).
    #[serde(default)]
    pub cache_budget: u64,
    /// The space's stable horizon as this store has adopted it, as a cursor
    /// (`replica:counter,...`; empty when none): every write below it has reached every
    /// replica the space tracks (docs/protocol.md, "The stable horizon").
    #[serde(default)]
    pub horizon: String,
    /// Peers in this store's horizon table: every peer that ever dialed it for this space.
    #[serde(default)]
    pub tracked_peers: u64,
    /// Whether this store collects tombstones (`COLLECT_TOMBSTONES`), and how many deleted
    /// documents it has collected since it started.
    #[serde(default)]
    pub collects: bool,
    /// See [`SpaceStatus::collects`].
    #[serde(default)]
    pub collected: u64,
    /// The space's replicated default policy (`_config/space`): the one that applies.
    pub default_policy: Policy,
    /// This host's `CONFLICT_STRATEGY`, which only seeds new spaces.
    pub conflict_strategy: Policy,
    /// `default_policy` and `conflict_strategy` differ (another store seeded the space first):
    /// shown so an operator is not surprised by the policy that applies.
    pub default_policy_mismatch: bool,
    /// Who is connected, here and through peers.
    pub presence: Vec<PresenceEntry>,
    /// Peer sessions on this host (the upstream link among them, marked `upstream`).
    pub peers: Vec<PeerSession>,
    /// The upstream link to the cloud (hybrid mode); `null` elsewhere.
    pub upstream: Option<UpstreamLink>,
}

impl HostStatus {
    /// The space named `name`, if the host shows it.
    pub fn space(&self, name: &str) -> Option<&SpaceStatus> {
        self.spaces.iter().find(|s| s.space == name)
    }
}

/// A peer session: another replica syncing with this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSession {
    /// The engine's session id of the link on this host.
    pub session: SessionId,
    /// The link this host dialled to the cloud.
    pub upstream: bool,
    /// The peer's replica id.
    pub replica: ReplicaId,
    /// The peer's tier.
    pub tier: Tier,
    /// Our own writes the peer has not acknowledged yet.
    pub pending: u64,
    /// Changes we hold that the peer has not persisted, as far as we know.
    pub lag: u64,
    /// What the peer has persisted of ours, as a cursor.
    pub acked: String,
    /// The handshake is done.
    pub open: bool,
}

/// Whether a space's upstream link is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// The link's session is open (handshake done).
    Connected,
    /// Dialling, or between dials (the reason says why the last one failed).
    Connecting,
    /// The space has no usable token for the cloud and stays local (the reason says why).
    NotLinked,
}

/// What the hub knows of a space's upstream link, across reconnects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamLink {
    /// Connected, connecting or not linked.
    pub state: LinkState,
    /// Why the link is not up (`not_linked`, or the last failure while `connecting`).
    pub reason: Option<String>,
    /// The same as `state` being `connected`.
    pub up: bool,
    /// When the link last came up (ms since the epoch, 0 = never).
    pub up_since_ms: u64,
    /// When the cloud last confirmed holding everything we had sent (0 = never).
    pub last_sync_ms: u64,
    /// `now_ms - last_sync_ms` (ms), `null` when never synced.
    pub last_sync_age_ms: Option<u64>,
    /// Our writes the cloud has not acknowledged; while the link is down, counted against
    /// what it had acknowledged when it went down; `null` if it never came up.
    pub pending: Option<u64>,
    /// Changes we hold durably that the cloud has not persisted, as far as we know (counted the
    /// same way as `pending` while the link is down); `null` if it never came up.
    pub lag: Option<u64>,
    /// What the cloud has persisted of ours, as a cursor.
    pub acked: Option<String>,
    /// Progress of the current (or last) push, from [`crate::Event::SyncProgress`].
    pub push: PushProgress,
    /// Progress of the current (or last) catch-up, from [`crate::Event::PushReceived`].
    pub pull: PullProgress,
    /// Pushes started by an event trigger (`SYNC_MODE=event`).
    pub event_pushes: u64,
    /// The collection patterns this space replicates from the cloud (`SYNC_COLLECTIONS`);
    /// absent: the whole space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<String>>,
    /// The collections a change under way will replicate (`SYNC_COLLECTIONS` changed since
    /// the space was last synced; docs/protocol.md, section 5, "Changing what a replica
    /// holds"); absent when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicating: Option<Vec<String>>,
    /// Patterns no longer replicated whose documents are still being dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forgetting: Vec<String>,
}

/// The current (or last) push to the cloud.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushProgress {
    /// Documents sent so far.
    pub sent: u64,
    /// Documents still to send, as last reported.
    pub remaining: u64,
}

/// The current (or last) catch-up from the cloud.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// Documents received so far.
    pub received: u64,
    /// Documents the cloud said were still to come, as last reported.
    pub remaining: u64,
    /// When the last catch-up batch arrived (0 = never).
    pub last_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn space(upstream: Value) -> Value {
        json!({
            "space": "default",
            "replica": "00000000000000ab",
            "tier": "local",
            "docs": 3,
            "cursor": "00000000000000ab:3",
            "sessions": 2,
            "open_conflicts": 0,
            "cache_bytes": 2048,
            "cache_budget": 67108864,
            "horizon": "00000000000000ab:2",
            "tracked_peers": 1,
            "collects": true,
            "collected": 3,
            "default_policy": "lww",
            "conflict_strategy": "merge",
            "default_policy_mismatch": true,
            "presence": [{"node": "00000000000000ab", "session": 1, "name": "a", "kind": "agent", "tier": "local", "since": 5}],
            "peers": [{"session": 2, "upstream": true, "replica": "00000000000000cd", "tier": "cloud",
                       "pending": 0, "lag": 1, "acked": "00000000000000ab:3", "open": true}],
            "upstream": upstream,
        })
    }

    fn round_trip(v: &Value) -> HostStatus {
        let s: HostStatus = serde_json::from_value(v.clone()).expect("decodes");
        assert_eq!(serde_json::to_value(&s).expect("encodes"), *v);
        s
    }

    #[test]
    fn full_and_token_limited_documents_round_trip() {
        let link = json!({
            "state": "connecting", "reason": "refused", "up": false, "up_since_ms": 1,
            "last_sync_ms": 0, "last_sync_age_ms": null, "pending": null, "lag": null,
            "acked": null, "push": {"sent": 0, "remaining": 0},
            "pull": {"received": 0, "remaining": 0, "last_ms": 0}, "event_pushes": 0,
        });
        let full = json!({
            "uptime_s": 7, "tier": "local", "now_ms": 99, "db": "bridge.db", "pid": 42,
            "last_peer_ack_ms": 0, "stored": {"spaces": 1, "docs": 3, "messages": 0},
            "spaces": [space(link), space(Value::Null)],
        });
        let s = round_trip(&full);
        assert_eq!(s.host.as_ref().map(|h| h.pid), Some(42));
        let up = s.space("default").and_then(|sp| sp.upstream.as_ref());
        assert_eq!(up.map(|u| u.state), Some(LinkState::Connecting));
        let limited = json!({"uptime_s": 7, "tier": "cloud", "now_ms": 99, "spaces": []});
        assert_eq!(round_trip(&limited).host, None);
    }

    #[test]
    fn a_renamed_key_is_an_error_not_a_zero() {
        let bad = json!({"uptime": 7, "tier": "local", "now_ms": 99, "spaces": []});
        assert!(serde_json::from_value::<HostStatus>(bad).is_err());
    }
}
