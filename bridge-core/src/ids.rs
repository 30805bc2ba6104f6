//! Identities: replicas, their tier, sessions and their kind, and the dots that name single
//! writes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable identity of one store (a browser profile, a native database, a Durable Object).
///
/// Hosts draw it at random once and keep it with the data. On the wire and in JSON it is
/// a 16-digit lower-case hex string so that languages without 64-bit integers keep it exact.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReplicaId(pub u64);

impl ReplicaId {
    /// A fresh id from 8 random bytes the host drew (the core has no randomness). Zero is
    /// not an id (it stands for "not yet known" in configurations), so it maps to 1.
    pub fn from_random(bytes: [u8; 8]) -> Self {
        ReplicaId(u64::from_le_bytes(bytes).max(1))
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for ReplicaId {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 {
            return Err(crate::Error::BadReplicaId(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(ReplicaId)
            .map_err(|_| crate::Error::BadReplicaId(s.to_owned()))
    }
}

impl Serialize for ReplicaId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReplicaId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which world a replica lives in. Policies `cloud_wins` / `local_wins` break ties by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// A store on a device: a native host, a browser.
    Local,
    /// A store in the cloud: a cloud-mode host, the edge worker's Durable Object.
    Cloud,
}

impl Tier {
    /// The tier's wire name (`"local"` / `"cloud"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Local => "local",
            Tier::Cloud => "cloud",
        }
    }
}

/// One write, named by the replica that made it and that replica's write counter.
/// Counters are per replica and per space, gap-free, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The replica that made the write.
    pub replica: ReplicaId,
    /// Its write counter there: 1 for the replica's first write in the space.
    pub counter: u64,
}

impl Dot {
    /// The dot `(replica, counter)`.
    pub fn new(replica: ReplicaId, counter: u64) -> Self {
        Dot { replica, counter }
    }
}

/// A document's address inside a space.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DocKey {
    /// The collection (a name: 1 to 256 bytes, no control characters).
    pub collection: String,
    /// The document id inside the collection (a name, as above).
    pub id: String,
}

impl DocKey {
    /// The key of document `id` in `collection` (not checked: see [`crate::check_name`]).
    pub fn new(collection: impl Into<String>, id: impl Into<String>) -> Self {
        DocKey {
            collection: collection.into(),
            id: id.into(),
        }
    }
}

/// A connection, numbered by the engine ([`crate::Engine::accept`], [`crate::Engine::connect`]).
pub type SessionId = u64;

/// What is on the other end of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// A program using the agent verbs; holds no replica.
    #[default]
    Agent,
    /// A replica that syncs documents with `push`.
    Peer,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn random_bytes_make_a_nonzero_id_that_round_trips_as_hex() {
        assert_eq!(ReplicaId::from_random([0; 8]), ReplicaId(1));
        let id = ReplicaId::from_random([0xab, 0, 0, 0, 0, 0, 0, 0x01]);
        assert_eq!(id.0, 0x0100_0000_0000_00ab);
        assert_eq!(id.to_string().parse::<ReplicaId>(), Ok(id));
        assert!(
            "".parse::<ReplicaId>().is_err() && "12345678901234567".parse::<ReplicaId>().is_err()
        );
    }
}
