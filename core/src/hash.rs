//! Deterministic hashing.
//!
//! Two things need hashes in the core: maps (whose iteration order must be the same
//! on every run with the same seed) and digests that different nodes compare (which
//! must be the same on every node). Neither may depend on process-level randomness.

use core::hash::{BuildHasher, Hash, Hasher};

/// 64-bit FNV-1a, finished with a SplitMix64 avalanche so that nearby inputs spread.
/// Used for digests that nodes compare with each other: it has no seed.
#[derive(Clone, Copy, Debug)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // One multiply-xor round per word keeps integer-heavy digests cheap.
        self.0 = mix64(self.0 ^ n).wrapping_mul(0x0100_0000_01b3);
    }
}

/// SplitMix64's finaliser: a bijective avalanche on 64 bits.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stable hash of a value: identical on every node of the same build.
pub fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = StableHasher::default();
    value.hash(&mut h);
    h.finish()
}

/// The cluster id carried in every header: the stable hash of the cluster name.
pub fn cluster_id(name: &str) -> u64 {
    let mut h = StableHasher::default();
    h.write(name.as_bytes());
    h.finish()
}

/// A map hasher seeded from the node's injected RNG: deterministic for a given seed,
/// unpredictable to a remote sender who would like to collide our buckets.
#[derive(Clone, Copy, Debug)]
pub struct SeededState(pub u64);

impl BuildHasher for SeededState {
    type Hasher = StableHasher;
    fn build_hasher(&self) -> StableHasher {
        StableHasher(mix64(self.0 ^ 0xcbf2_9ce4_8422_2325))
    }
}

/// The hash map used throughout the core.
pub type Map<K, V> = hashbrown::HashMap<K, V, SeededState>;
/// The hash set used throughout the core.
pub type Set<K> = hashbrown::HashSet<K, SeededState>;
