//! Snapshots: a node's whole deterministic state as bytes, and back.
//!
//! [`Node::snapshot`](crate::Node::snapshot) writes every part (membership, failure
//! detector, rumour queue and outbox, anti-entropy, store, transfers, placement,
//! routing, counters, the RNG, every timer) and
//! [`Node::from_snapshot`](crate::Node::from_snapshot) rebuilds a node that, fed the
//! same inputs, puts out the same transmits, events and deadlines, byte for byte.
//! That is what lets a flight log start at a snapshot instead of the node's start.
//!
//! # Format
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `GVSN` |
//! | 4..6 | snapshot version, u16 little-endian ([`SNAPSHOT_VERSION`]) |
//! | 6..14 | [`stable_hash`](crate::hash::stable_hash)-style 64-bit check of the body, u64 LE |
//! | 14.. | body: the parts in postcard |
//!
//! # What it leaves out
//!
//! - The keyring: key material never enters a snapshot; the caller hands the keyring
//!   to `from_snapshot` (a flight log records it beside the snapshot only with
//!   `--record-keys`).
//! - Pending outputs: a snapshot is taken after the outputs have been drained (the
//!   drain rule), and refuses otherwise ([`SnapshotError::OutputsPending`]).
//! - Caches rebuilt on demand (the ring and the future ring).
//!
//! # Hash maps
//!
//! A map is written as its hasher's seed and its entries; the rebuilt map may
//! iterate in another order than the original, whose layout depends on its history.
//! So no output of the core may depend on a map's iteration order: each such use takes
//! a minimum, an `any`, an XOR, or sorts first (the snapshot tests check the outputs
//! of restored nodes against the originals byte for byte).
//!
//! A snapshot is trusted input, like a config: its check catches damage (a flipped
//! bit, a cut), not a forger, and a well-formed snapshot of nonsense can make a node
//! misbehave.

use alloc::vec::Vec;
use core::fmt;
use core::hash::Hash;

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Serialize, Serializer};

use crate::hash::{Map, SeededState, Set, StableHasher};

/// The first bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"GVSN";
/// The snapshot format this build writes and reads (9: a queued rumour keeps its echoes
/// and when it may be sent again, and the queue its resting line; 8: placement news carries the
/// record's status, so queued news of version 7 would not decode; 7: a rumour class for other
/// members' refutations passed on, and the failure detector's record of its last
/// probes answered; 6: each queued rumour keeps its budget, a member's arrival having
/// a smaller one; 5: the failure detector keeps an admission-cookie key instead of a
/// table of admission pings in flight).
pub const SNAPSHOT_VERSION: u16 = 9;
/// Magic, version and check.
pub(crate) const SNAPSHOT_HEADER_LEN: usize = 14;

/// Why a snapshot could not be taken or restored. A refused restore builds nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Transmits or events are waiting to be drained: take the snapshot after the
    /// drain, so that it and the outputs already taken line up.
    OutputsPending,
    /// Shorter than its header, or the body ends early.
    Truncated,
    /// Not a Grapevine snapshot (wrong magic).
    BadMagic,
    /// A snapshot version this build does not read.
    UnsupportedVersion(u16),
    /// The body does not match its check: the bytes were damaged.
    Corrupt,
    /// The body does not decode (or has bytes left over).
    Malformed,
    /// The config inside the snapshot does not validate.
    Config(crate::ConfigError),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::OutputsPending => {
                f.write_str("outputs are waiting to be drained; snapshot after the drain")
            }
            SnapshotError::Truncated => f.write_str("the snapshot is cut short"),
            SnapshotError::BadMagic => f.write_str("not a Grapevine snapshot (wrong magic)"),
            SnapshotError::UnsupportedVersion(v) => write!(
                f,
                "snapshot version {v}; this build reads version {SNAPSHOT_VERSION}"
            ),
            SnapshotError::Corrupt => f.write_str("the snapshot fails its check (damaged)"),
            SnapshotError::Malformed => f.write_str("the snapshot's body does not decode"),
            SnapshotError::Config(e) => write!(f, "the snapshot's config: {e}"),
        }
    }
}

impl core::error::Error for SnapshotError {}

/// The check over a snapshot's body.
pub(crate) fn check(body: &[u8]) -> u64 {
    use core::hash::Hasher;
    let mut h = StableHasher::default();
    // Eight bytes at a time: a snapshot of a large node is megabytes.
    let mut chunks = body.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h.write_u64(u64::from_le_bytes(w));
    }
    h.write(chunks.remainder());
    h.write_u64(body.len() as u64);
    h.finish()
}

/// Frames a body: magic, version, check.
pub(crate) fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let check = check(&body[SNAPSHOT_HEADER_LEN..]);
    body[..4].copy_from_slice(&SNAPSHOT_MAGIC);
    body[4..6].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    body[6..14].copy_from_slice(&check.to_le_bytes());
    body
}

/// Checks the frame and returns the body.
pub(crate) fn open(bytes: &[u8]) -> Result<&[u8], SnapshotError> {
    let (Some(magic), Some(version), Some(sum)) =
        (bytes.get(..4), bytes.get(4..6), bytes.get(6..14))
    else {
        return Err(SnapshotError::Truncated);
    };
    if magic != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u16::from_le_bytes([version[0], version[1]]);
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(sum);
    let body = &bytes[SNAPSHOT_HEADER_LEN..];
    if check(body) != u64::from_le_bytes(word) {
        return Err(SnapshotError::Corrupt);
    }
    Ok(body)
}

/// A `HashTable` of indices (an index over a table of slots) as the indices in its
/// iteration order (`#[serde(serialize_with = ...)]`); the table rebuilds it by
/// inserting them in that order, as a restored [`Map`] is rebuilt.
pub(crate) fn index_order<S: Serializer>(
    index: &hashbrown::HashTable<u32>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(index.iter())
}

/// A [`Map`] as its hasher's seed and its entries (`#[serde(with = ...)]`).
pub(crate) mod map {
    use super::*;

    struct Entries<'a, K, V>(&'a Map<K, V>);

    impl<K: Serialize, V: Serialize> Serialize for Entries<'_, K, V> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter())
        }
    }

    pub fn serialize<K, V, S>(map: &Map<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize,
        V: Serialize,
        S: Serializer,
    {
        (map.hasher().0, Entries(map)).serialize(s)
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<Map<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let (seed, entries): (u64, Vec<(K, V)>) = Deserialize::deserialize(d)?;
        let mut map = Map::with_capacity_and_hasher(entries.len(), SeededState(seed));
        map.extend(entries);
        Ok(map)
    }
}

/// A [`Set`] as its hasher's seed and its elements (`#[serde(with = ...)]`).
pub(crate) mod set {
    use super::*;

    struct Elements<'a, K>(&'a Set<K>);

    impl<K: Serialize> Serialize for Elements<'_, K> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter())
        }
    }

    pub fn serialize<K: Serialize, S: Serializer>(set: &Set<K>, s: S) -> Result<S::Ok, S::Error> {
        (set.hasher().0, Elements(set)).serialize(s)
    }

    pub fn deserialize<'de, K, D>(d: D) -> Result<Set<K>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        D: Deserializer<'de>,
    {
        let (seed, elements): (u64, Vec<K>) = Deserialize::deserialize(d)?;
        let mut set = Set::with_capacity_and_hasher(elements.len(), SeededState(seed));
        set.extend(elements);
        Ok(set)
    }
}

/// An array longer than serde's 32 as a sequence (`#[serde(with = ...)]`).
pub(crate) mod array {
    use super::*;

    pub fn serialize<T: Serialize, S: Serializer, const N: usize>(
        array: &[T; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(array.iter())
    }

    pub fn deserialize<'de, T, D, const N: usize>(d: D) -> Result<[T; N], D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let items: Vec<T> = Deserialize::deserialize(d)?;
        let len = items.len();
        items
            .try_into()
            .map_err(|_| D::Error::invalid_length(len, &"the array's length"))
    }
}
