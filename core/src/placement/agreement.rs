//! Ring agreement: which members of the ring hold the same ring digest as this node,
//! as a bit set that gossip merges, so that one topology change costs each node a few
//! small messages rather than one message per member.
//!
//! When a node's ring digest has held still (see `Placement::agreement_round`), or
//! when a peer's segment about the digest it holds arrives first (see
//! `Placement::on_agreement`), it starts an agreement about that digest: one bit per
//! member on that ring, in the order of their names' stable hashes (every node
//! holding the same digest holds the same ring, so the same order), its own bit
//! set. Bit sets about the same digest merge
//! by OR; a node spreads a segment of its set as a rumour whenever it learned bits in
//! it, and answers a peer that lacks bits it holds with its own (push-pull), so a late
//! node catches up in one exchange. Rumours alone can miss a node (its last news went
//! out while it was still on another digest, and nobody has news since), so a node
//! that has not reached agreement also sends, once per round, the segment with its
//! first missing bit to one live member: anti-entropy for the set, which stops once
//! it agrees. `RingAgreed` fires when every live member on the ring has its bit set.
//!
//! This replaces publishing the digest as each node's state (`gv.ring`), which made
//! every join cost every node one state page per member: O(N) bytes per node per
//! event. A set is at most [`SEGMENT`] / 8 = 128 bytes per segment, spread about
//! λ·log N times while it grows.

use alloc::vec;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::hash::stable_hash;

/// Members per segment of the bit set: one message carries one segment (128 bytes of
/// bits), so it fits the smallest datagram beside a packet's other messages.
pub(crate) const SEGMENT: usize = 1024;

/// What merging a peer's segment did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Merged {
    /// About another digest: nothing changed.
    Other,
    /// Malformed for our digest (wrong length, or a segment we do not have).
    Refused,
    /// Merged: whether we learned bits (the segment will be spread at the next round),
    /// and whether we hold bits they lack (they are behind: answer them).
    Taken { learned: bool, ahead: bool },
}

/// The bit set of one ring digest (see the [module docs](self)).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Agreement {
    /// The digest the bits are about: ours when it last held still, or when a peer's
    /// segment about it arrived first.
    digest: Option<u64>,
    /// The stable hashes of the ring members' names at `digest`, sorted: bit `i` is
    /// the member whose name hashes to `order[i]`.
    order: Vec<u64>,
    bits: Vec<u8>,
    /// Segments that learned bits since they were last spread, sorted.
    dirty: Vec<u16>,
}

/// The hash a name's bit is ordered by.
fn name_hash(name: &str) -> u64 {
    stable_hash(&name)
}

impl Agreement {
    /// The digest the bits are about, if any.
    pub fn digest(&self) -> Option<u64> {
        self.digest
    }

    /// Starts over about `digest`, the ring of `names`; sets our own bit if `mine` is
    /// on that ring.
    pub fn reset<'a>(
        &mut self,
        digest: u64,
        names: impl Iterator<Item = &'a str>,
        mine: Option<&str>,
    ) {
        self.digest = Some(digest);
        self.order.clear();
        self.order.extend(names.map(name_hash));
        self.order.sort_unstable();
        self.order.dedup();
        self.bits = vec![0; self.order.len().div_ceil(8)];
        self.dirty.clear();
        if let Some(i) = mine.and_then(|m| self.index(m)) {
            self.bits[i / 8] |= 1 << (i % 8);
            self.dirty.push((i / SEGMENT) as u16);
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.order.binary_search(&name_hash(name)).ok()
    }

    /// Whether the member named `name` holds our digest.
    pub fn holds(&self, name: &str) -> bool {
        self.index(name)
            .is_some_and(|i| self.bits[i / 8] & (1 << (i % 8)) != 0)
    }

    /// The byte range of segment `segment` in `bits`.
    fn range(&self, segment: u16) -> Option<core::ops::Range<usize>> {
        let start = usize::from(segment) * SEGMENT / 8;
        (start < self.bits.len() || (start == 0 && self.bits.is_empty()))
            .then(|| start..(start + SEGMENT / 8).min(self.bits.len()))
    }

    /// Segment `segment` of our set: `(digest, segment, bits)`.
    pub fn segment(&self, segment: u16) -> Option<(u64, u16, Vec<u8>)> {
        let digest = self.digest?;
        let range = self.range(segment)?;
        Some((digest, segment, self.bits[range].to_vec()))
    }

    /// The segments that learned bits since the last call, to spread.
    pub fn take_dirty(&mut self) -> Vec<u16> {
        core::mem::take(&mut self.dirty)
    }

    /// Merges a peer's segment about `digest`.
    pub fn merge(&mut self, digest: u64, segment: u16, theirs: &[u8]) -> Merged {
        if self.digest != Some(digest) {
            return Merged::Other;
        }
        let Some(range) = self.range(segment) else {
            return Merged::Refused;
        };
        if theirs.len() != range.len() {
            return Merged::Refused;
        }
        // Bits past the last member of the last byte are not members: ignore them.
        let members = self.order.len();
        let mut learned = false;
        let mut ahead = false;
        for (k, (ours, &t)) in self.bits[range.clone()].iter_mut().zip(theirs).enumerate() {
            let first = (range.start + k) * 8;
            let valid = if members >= first + 8 {
                0xff
            } else {
                (1u8 << (members - first)) - 1
            };
            let t = t & valid;
            learned |= t & !*ours != 0;
            ahead |= *ours & !t != 0;
            *ours |= t;
        }
        if learned {
            if let Err(i) = self.dirty.binary_search(&segment) {
                self.dirty.insert(i, segment);
            }
        }
        Merged::Taken { learned, ahead }
    }

    /// The segment holding the bit of the member named `name`.
    pub fn segment_of(&self, name: &str) -> Option<u16> {
        self.index(name).map(|i| (i / SEGMENT) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    fn agreement(names: &[String], me: usize) -> Agreement {
        let mut a = Agreement::default();
        a.reset(7, names.iter().map(String::as_str), Some(&names[me]));
        a
    }

    #[test]
    fn sets_merge_until_every_member_holds_the_digest() {
        let n = names(10);
        let mut sets: Vec<Agreement> = (0..10).map(|i| agreement(&n, i)).collect();
        // Everyone tells the next one, repeatedly: the union reaches everyone.
        for _ in 0..10 {
            for i in 0..10 {
                let (d, s, bits) = sets[i].segment(0).unwrap();
                let _ = sets[(i + 1) % 10].merge(d, s, &bits);
            }
        }
        for set in &sets {
            assert!(n.iter().all(|name| set.holds(name)));
        }
    }

    #[test]
    fn a_peer_behind_is_told_and_other_digests_change_nothing() {
        let n = names(3);
        let mut a = agreement(&n, 0);
        let b = agreement(&n, 1);
        let (d, s, bits) = b.segment(0).unwrap();
        assert_eq!(
            a.merge(d, s, &bits),
            Merged::Taken {
                learned: true,
                ahead: true
            }
        );
        // b knows only itself; a knows both: b is behind.
        assert_eq!(
            a.merge(d, s, &bits),
            Merged::Taken {
                learned: false,
                ahead: true
            }
        );
        assert_eq!(a.merge(d + 1, s, &bits), Merged::Other);
        assert_eq!(a.merge(d, s, &[]), Merged::Refused);
        assert_eq!(a.merge(d, 1, &bits), Merged::Refused);
        assert!(a.holds(&n[0]) && a.holds(&n[1]) && !a.holds(&n[2]));
    }

    #[test]
    fn bits_past_the_last_member_are_ignored() {
        let n = names(3);
        let mut a = agreement(&n, 0);
        assert_eq!(
            a.merge(7, 0, &[0b1111_1000]),
            Merged::Taken {
                learned: false,
                ahead: true
            }
        );
        let (_, _, bits) = a.segment(0).unwrap();
        assert_eq!(bits[0].count_ones(), 1);
    }

    #[test]
    fn large_rings_split_into_segments() {
        let n = names(2 * SEGMENT + 5);
        let a = agreement(&n, 2 * SEGMENT + 4);
        assert_eq!(a.segment(0).unwrap().2.len(), SEGMENT / 8);
        assert_eq!(a.segment(2).unwrap().2.len(), 1);
        assert!(a.segment(3).is_none());
        assert_eq!(a.dirty.len(), 1);
    }
}
