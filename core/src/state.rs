//! Per-node versioned key/value state.
//!
//! Each node owns a map that only it writes; every write takes the next value of
//! the owner's version counter. Merge is max-version-wins per (owner, generation,
//! key), which is idempotent, commutative and associative. A newer generation of
//! the owner replaces its whole state: a restarted process starts a new history.
//!
//! Three numbers per owner make anti-entropy cheap and exact:
//! - `hash`: XOR of `h(key, version)` over live keys, so two nodes holding the same
//!   content agree without listing it. Tombstones are left out of it, so collecting
//!   one changes nothing that peers compare.
//! - `watermark`: every write of the owner up to this version is held (or superseded).
//!   Anti-entropy asks for keys above it; rumours may deliver keys above it early.
//! - `gc_floor`: the highest version of a tombstone collected here. A peer whose
//!   watermark is below it may hold keys deleted since, so it gets a reset page.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::hash::{Map, SeededState, StableHasher, mix64};
use crate::time::Instant;
use core::hash::Hasher;

/// Keys with this prefix belong to the protocol (`gv.tokens`, `gv.ring`).
pub const RESERVED_PREFIX: &str = "gv.";
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// One value in a node's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The owner's version counter at the write.
    pub version: u64,
    /// The value, or `None` for a tombstone awaiting collection.
    pub value: Option<Vec<u8>>,
}

/// Why a write was refused. A refused write changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// Keys starting with `gv.` belong to the protocol.
    Reserved,
    /// The key is empty or longer than [`MAX_KEY_LEN`].
    BadKey,
    /// The value is larger than `max_value_size`.
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The write would take this node's state over `max_state_bytes`.
    StateFull,
    /// The node has left the cluster.
    Left,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Reserved => {
                write!(f, "keys starting with {RESERVED_PREFIX:?} are reserved")
            }
            StateError::BadKey => write!(f, "keys must be 1 to {MAX_KEY_LEN} bytes"),
            StateError::ValueTooLarge { len, max } => {
                write!(f, "value of {len} bytes exceeds max_value_size ({max})")
            }
            StateError::StateFull => f.write_str("the write would exceed max_state_bytes"),
            StateError::Left => f.write_str("the node has left the cluster"),
        }
    }
}

impl core::error::Error for StateError {}

/// Everything one node holds about one owner's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OwnerState {
    pub generation: u64,
    pub entries: BTreeMap<String, Entry>,
    pub hash: u64,
    pub max_version: u64,
    pub watermark: u64,
    pub gc_floor: u64,
    pub bytes: usize,
}

/// What a merge did to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Merge {
    /// The key changed to the incoming version.
    Applied,
    /// We already held this version or a newer one (or had collected it).
    Stale,
    /// Applying it would exceed the owner's byte budget.
    Full,
}

pub(crate) fn key_hash(key: &str, version: u64) -> u64 {
    let mut h = StableHasher::default();
    h.write(key.as_bytes());
    mix64(h.finish() ^ mix64(version))
}

/// What one entry costs beyond its key and value bytes (map node, version, lengths):
/// charged so that many tiny keys cannot hold far more memory than the budget says.
pub const ENTRY_OVERHEAD: usize = 48;

fn entry_bytes(key: &str, value: &Option<Vec<u8>>) -> usize {
    ENTRY_OVERHEAD + key.len() + value.as_ref().map_or(0, Vec::len)
}

impl OwnerState {
    pub fn new(generation: u64) -> Self {
        OwnerState {
            generation,
            ..Default::default()
        }
    }

    /// Max-version-wins merge of one key.
    pub fn merge(
        &mut self,
        key: &str,
        version: u64,
        value: Option<Vec<u8>>,
        max_bytes: usize,
    ) -> Merge {
        let old = self.entries.get(key);
        match old {
            Some(e) if e.version >= version => return Merge::Stale,
            // Below the watermark and absent: we held it once and a delete collected it.
            None if version <= self.watermark => return Merge::Stale,
            _ => {}
        }
        let old_bytes = old.map_or(0, |e| entry_bytes(key, &e.value));
        let new_bytes = entry_bytes(key, &value);
        if self.bytes - old_bytes + new_bytes > max_bytes {
            return Merge::Full;
        }
        if let Some(e) = old {
            if e.value.is_some() {
                self.hash ^= key_hash(key, e.version);
            }
        }
        if value.is_some() {
            self.hash ^= key_hash(key, version);
        }
        self.bytes = self.bytes - old_bytes + new_bytes;
        self.max_version = self.max_version.max(version);
        self.entries
            .insert(String::from(key), Entry { version, value });
        Merge::Applied
    }

    /// Owner versions are consecutive, so the watermark can move past every version we
    /// hold that directly follows it, however that version arrived. A version that was
    /// overwritten before it reached us leaves a gap that only anti-entropy closes.
    pub fn advance_watermark(&mut self) {
        if self.max_version <= self.watermark {
            return;
        }
        let mut above: Vec<u64> = self
            .entries
            .values()
            .map(|e| e.version)
            .filter(|&v| v > self.watermark)
            .collect();
        above.sort_unstable();
        for v in above {
            if v != self.watermark + 1 {
                break;
            }
            self.watermark = v;
        }
    }

    /// Drops a tombstone if it is still the current entry for `key` at `version`.
    pub fn collect(&mut self, key: &str, version: u64) -> bool {
        match self.entries.get(key) {
            Some(Entry {
                version: v,
                value: None,
            }) if *v == version => {
                self.entries.remove(key);
                self.bytes -= entry_bytes(key, &None);
                self.gc_floor = self.gc_floor.max(version);
                true
            }
            _ => false,
        }
    }

    /// Keys in `(after, upto]` absent from a reset page are gone at the sender; drop them.
    pub fn reset_range(
        &mut self,
        after: u64,
        upto: u64,
        keep: &[(String, u64, Option<Vec<u8>>)],
    ) -> Vec<String> {
        let doomed: Vec<String> = self
            .entries
            .iter()
            .filter(|(k, e)| {
                e.version > after && e.version <= upto && !keep.iter().any(|(kk, _, _)| kk == *k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            if let Some(e) = self.entries.remove(k) {
                if e.value.is_some() {
                    self.hash ^= key_hash(k, e.version);
                }
                self.bytes -= entry_bytes(k, &e.value);
            }
        }
        doomed
    }

    /// Entries with a version above `after`, ascending by version.
    pub fn since(&self, after: u64) -> Vec<(&String, &Entry)> {
        let mut out: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.version > after)
            .collect();
        out.sort_by_key(|(_, e)| e.version);
        out
    }
}

/// Every owner's state as this node holds it, itself included, plus the queue of
/// tombstones awaiting collection.
#[derive(Debug)]
pub(crate) struct Store<A> {
    pub owners: Map<A, OwnerState>,
    /// (due, owner, generation, key, version), in due order because `now` only grows.
    pub tombstones: VecDeque<(Instant, A, u64, String, u64)>,
    /// Queue length after the last compaction.
    compacted: usize,
}

impl<A: crate::Address> Store<A> {
    pub fn new(hasher: SeededState) -> Self {
        Store {
            owners: Map::with_hasher(hasher),
            tombstones: VecDeque::new(),
            compacted: 0,
        }
    }

    /// The state of `owner` at `generation`, replacing an older life's.
    /// `None` if we hold a newer life already.
    pub fn owner_mut(&mut self, owner: &A, generation: u64) -> Option<&mut OwnerState> {
        let st = self
            .owners
            .entry(owner.clone())
            .or_insert_with(|| OwnerState::new(generation));
        if st.generation < generation {
            *st = OwnerState::new(generation);
        }
        (st.generation == generation).then_some(st)
    }

    /// Queues a tombstone for collection at `due`. Overwritten and re-deleted keys leave
    /// stale entries behind; the queue is compacted when it doubles, so it stays within
    /// twice the tombstones actually held.
    pub fn queue_tombstone(
        &mut self,
        due: Instant,
        owner: A,
        generation: u64,
        key: String,
        version: u64,
    ) {
        self.tombstones
            .push_back((due, owner, generation, key, version));
        if self.tombstones.len() >= 256 && self.tombstones.len() >= 2 * self.compacted {
            let owners = &self.owners;
            self.tombstones.retain(|(_, a, g, k, v)| {
                owners.get(a).is_some_and(|s| {
                    s.generation == *g
                        && s.entries
                            .get(k)
                            .is_some_and(|e| e.version == *v && e.value.is_none())
                })
            });
            self.compacted = self.tombstones.len();
        }
    }

    pub fn get(&self, owner: &A) -> Option<&OwnerState> {
        self.owners.get(owner)
    }

    /// The content hash of `owner`'s state if we hold that generation, else 0.
    pub fn hash_of(&self, owner: &A, generation: u64) -> u64 {
        self.owners
            .get(owner)
            .filter(|s| s.generation == generation)
            .map_or(0, |s| s.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    type Delta = (u8, u64, Option<u8>);

    fn apply_all(deltas: &[Delta]) -> OwnerState {
        let mut s = OwnerState::new(1);
        for (k, v, val) in deltas {
            let key = alloc::format!("k{k}");
            s.merge(&key, *v, val.map(|b| vec![b]), usize::MAX);
        }
        s
    }

    fn unique_versions(deltas: Vec<Delta>) -> Vec<Delta> {
        // One owner never writes two values at one version.
        let mut seen = alloc::collections::BTreeMap::new();
        deltas
            .into_iter()
            .filter(|(k, v, val)| *seen.entry(*v).or_insert((*k, *val)) == (*k, *val))
            .collect()
    }

    proptest! {
        #[test]
        fn merge_is_order_independent(deltas in prop::collection::vec((0u8..6, 1u64..40, prop::option::of(any::<u8>())), 0..40), seed in any::<u64>()) {
            let deltas = unique_versions(deltas);
            let mut shuffled = deltas.clone();
            // A seeded Fisher-Yates: any order of the same deltas gives the same store.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(apply_all(&deltas), apply_all(&shuffled));
        }

        #[test]
        fn merge_is_idempotent(deltas in prop::collection::vec((0u8..6, 1u64..40, prop::option::of(any::<u8>())), 0..40)) {
            let deltas = unique_versions(deltas);
            let mut twice = deltas.clone();
            twice.extend(deltas.iter().cloned());
            prop_assert_eq!(apply_all(&deltas), apply_all(&twice));
        }

        #[test]
        fn merge_is_associative(a in prop::collection::vec((0u8..6, 1u64..40, prop::option::of(any::<u8>())), 0..20),
                                b in prop::collection::vec((0u8..6, 1u64..40, prop::option::of(any::<u8>())), 0..20),
                                c in prop::collection::vec((0u8..6, 1u64..40, prop::option::of(any::<u8>())), 0..20)) {
            let all = unique_versions([a, b, c].concat());
            let (a, rest) = all.split_at(all.len() / 3);
            let (b, c) = rest.split_at(rest.len() / 2);
            // (a ⊔ b) ⊔ c == a ⊔ (b ⊔ c): merging a store's entries into another is applying them.
            let ab_c: Vec<Delta> = [a, b, c].concat();
            let a_bc: Vec<Delta> = [b, c, a].concat();
            prop_assert_eq!(apply_all(&ab_c), apply_all(&a_bc));
        }
    }

    #[test]
    fn hash_tracks_content_not_history() {
        let mut a = OwnerState::new(1);
        a.merge("x", 1, Some(vec![1]), usize::MAX);
        a.merge("x", 3, Some(vec![3]), usize::MAX);
        let mut b = OwnerState::new(1);
        b.merge("x", 3, Some(vec![3]), usize::MAX);
        assert_eq!(a.hash, b.hash);
        a.merge("y", 4, None, usize::MAX);
        assert_eq!(a.hash, b.hash, "tombstones are not hashed");
        assert!(a.collect("y", 4));
        assert_eq!(a.gc_floor, 4);
    }

    #[test]
    fn byte_budget_refuses_without_change() {
        let mut s = OwnerState::new(1);
        let budget = ENTRY_OVERHEAD + 11;
        assert_eq!(s.merge("k", 1, Some(vec![0; 10]), budget), Merge::Applied);
        let before = s.clone();
        assert_eq!(s.merge("j", 2, Some(vec![0; 10]), budget), Merge::Full);
        assert_eq!(s, before);
    }
}
