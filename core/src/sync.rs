//! The anti-entropy summary: a fixed two-level hash tree over the live members.
//!
//! Each live member contributes `h(address, generation, incarnation, state hash)`
//! to one of 256 buckets chosen by its address; a bucket's hash is the XOR of its
//! members', a group's the XOR of its 16 buckets', and the root the XOR of all.
//! XOR makes every update O(1), and two nodes with the same view have the same root
//! whatever order they learned it in. An idle exchange is one root (a few bytes);
//! only differing groups and buckets are descended, so the cost of a repair follows
//! the size of the difference, not the size of the cluster.

use crate::hash::{Map, SeededState, mix64, stable_hash};
use crate::wire::SYNC_FANOUT;

/// Buckets (leaves) of the tree.
pub const BUCKETS: usize = SYNC_FANOUT * SYNC_FANOUT;

/// The bucket an address falls in: the same on every node.
pub fn bucket_of<A: core::hash::Hash>(addr: &A) -> usize {
    (stable_hash(addr) % BUCKETS as u64) as usize
}

/// What one member contributes to the tree.
pub fn entry_hash<A: core::hash::Hash>(
    addr: &A,
    generation: u64,
    incarnation: u64,
    state_hash: u64,
) -> u64 {
    mix64(stable_hash(&(addr, generation, incarnation)) ^ mix64(state_hash))
}

#[derive(Debug)]
pub(crate) struct SyncTree<A> {
    pub buckets: [u64; BUCKETS],
    pub groups: [u64; SYNC_FANOUT],
    pub root: u64,
    entries: Map<A, u64>,
    /// Members by bucket, so a digest lists a bucket without scanning every member.
    pub members: [alloc::vec::Vec<A>; BUCKETS],
}

impl<A: crate::Address> SyncTree<A> {
    pub fn new(hasher: SeededState) -> Self {
        SyncTree {
            buckets: [0; BUCKETS],
            groups: [0; SYNC_FANOUT],
            root: 0,
            entries: Map::with_hasher(hasher),
            members: core::array::from_fn(|_| alloc::vec::Vec::new()),
        }
    }

    /// Sets (or with `None`, removes) a member's contribution.
    pub fn set(&mut self, addr: &A, hash: Option<u64>) {
        let old = match hash {
            Some(h) => self.entries.insert(addr.clone(), h),
            None => self.entries.remove(addr),
        };
        if old == hash {
            return;
        }
        let b = bucket_of(addr);
        let delta = old.unwrap_or(0) ^ hash.unwrap_or(0);
        self.buckets[b] ^= delta;
        self.groups[b / SYNC_FANOUT] ^= delta;
        self.root ^= delta;
        match (old, hash) {
            (None, Some(_)) => self.members[b].push(addr.clone()),
            (Some(_), None) => self.members[b].retain(|a| a != addr),
            _ => {}
        }
    }

    /// The hashes of the children of node `index` at `depth` (0 = root, 1 = group).
    pub fn children(&self, depth: u8, index: u16) -> Option<&[u64]> {
        match depth {
            0 if index == 0 => Some(&self.groups[..]),
            1 if usize::from(index) < SYNC_FANOUT => {
                let start = usize::from(index) * SYNC_FANOUT;
                Some(&self.buckets[start..start + SYNC_FANOUT])
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_updates_does_not_matter() {
        let mut a: SyncTree<u32> = SyncTree::new(SeededState(1));
        let mut b: SyncTree<u32> = SyncTree::new(SeededState(2));
        for i in 0..100 {
            a.set(&i, Some(entry_hash(&i, 1, 0, 0)));
        }
        for i in (0..100).rev() {
            b.set(&i, Some(entry_hash(&i, 1, 0, 7)));
            b.set(&i, Some(entry_hash(&i, 1, 0, 0)));
        }
        assert_eq!(a.root, b.root);
        assert_eq!(a.buckets, b.buckets);
        a.set(&5, None);
        assert_ne!(a.root, b.root);
        let g = bucket_of(&5u32) / SYNC_FANOUT;
        assert_ne!(a.groups[g], b.groups[g]);
        a.set(&5, Some(entry_hash(&5, 1, 0, 0)));
        assert_eq!(a.root, b.root);
        assert_eq!(a.members.iter().map(|m| m.len()).sum::<usize>(), 100);
    }
}
