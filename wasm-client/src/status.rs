//! Sync status as the UI shows it: online, syncing, pending, last cloud acknowledgement.
//!
//! "Pending" counts this replica's own writes that no **cloud** replica has acknowledged as
//! persisted; "synced" is `pending == 0`. Our writes are numbered by our entry of the version
//! vector (one dot per write, gap-free), so the count is a subtraction: our latest counter
//! minus the highest counter a cloud peer is known to hold — from an `ack` of ours, or from
//! the vector in its `welcome` after a reconnect (when nothing had to be pushed again, no
//! `ack` comes).

use serde::Serialize;

/// What the browser shows about its link and its unsynced writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// A WebSocket to the server is open and the handshake is done.
    pub online: bool,
    /// Changes are travelling either way (own writes unacknowledged, or a catch-up incoming).
    pub syncing: bool,
    /// Own writes not yet acknowledged by a cloud replica.
    pub pending: u64,
    /// When a cloud replica last acknowledged our writes (ms since the epoch), if ever.
    pub last_cloud_ack: Option<u64>,
    /// The tier of the replica at the other end of the link, once known.
    pub peer_tier: Option<&'static str>,
    /// This store's replica id (16 hex digits).
    pub replica: String,
    /// Documents still to come in an incoming catch-up.
    pub incoming: u64,
    /// The last error that stopped persistence or the link, if any.
    pub error: Option<String>,
    /// The collection patterns the store holds (`None`: the whole space).
    pub collections: Option<Vec<String>>,
    /// The patterns a change under way will hold.
    pub replicating: Option<Vec<String>>,
    /// Patterns no longer held whose documents are still being dropped.
    pub forgetting: Vec<String>,
}

/// The counters behind [`SyncStatus::pending`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloudProgress {
    /// The highest own write counter a cloud replica holds durably.
    pub acked: u64,
}

impl CloudProgress {
    /// A cloud replica told us (ack or welcome) it holds our writes up to `counter`.
    /// Returns whether this moved us forward.
    pub fn observe(&mut self, counter: u64) -> bool {
        if counter > self.acked {
            self.acked = counter;
            true
        } else {
            false
        }
    }

    /// Own writes not yet held by a cloud replica, given our latest own counter.
    pub fn pending(&self, own_latest: u64) -> u64 {
        own_latest.saturating_sub(self.acked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_counts_own_writes_above_the_cloud_mark() {
        let mut p = CloudProgress::default();
        assert_eq!(p.pending(5), 5);
        assert!(p.observe(3));
        assert_eq!(p.pending(5), 2);
        assert!(!p.observe(2), "an older ack never moves the mark back");
        assert_eq!(p.acked, 3);
        assert!(p.observe(5));
        assert_eq!(p.pending(5), 0);
        // a restore that lost nothing but reports a lower latest never underflows
        assert_eq!(p.pending(4), 0);
    }

    #[test]
    fn status_serializes_in_camel_case_for_js() {
        let s = SyncStatus {
            last_cloud_ack: Some(7),
            ..SyncStatus::default()
        };
        let v = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(v["lastCloudAck"], 7);
        assert_eq!(v["online"], false);
    }
}
