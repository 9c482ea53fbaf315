//! The token ring: replica placement over the tokens each node claims.
//!
//! Each node claims a handful of tokens; a key belongs to the node holding the first
//! token at or after the key's token, walking clockwise, and its further replicas are
//! the next distinct nodes on the walk.
//!
//! Everything here is a pure function of its inputs: every node that sees the same
//! claims builds the same [`Ring`], and the same [`Ring::digest`].

use alloc::vec::Vec;
use core::hash::{Hash, Hasher};

use super::murmur::token_for;
use crate::hash::StableHasher;

/// A position on the ring, ordered as a signed integer, as Cassandra orders its
/// `LongToken`s, so that token ranges read the same as in `nodetool ring`.
pub type Token = i64;

/// The size of the whole token space, 2^64, for exact range arithmetic.
pub(super) const SPACE: u128 = 1 << 64;

/// Token `to` minus token `from`, clockwise, in `1..=2^64`: a range `(from, to]`
/// whose ends coincide is the whole ring (a ring of one token).
pub(super) fn clockwise(from: Token, to: Token) -> u128 {
    match (to as u64).wrapping_sub(from as u64) {
        0 => SPACE,
        d => u128::from(d),
    }
}

/// Fraction of the ring covered by `units` of 2^-64.
pub(super) fn frac(units: u128) -> f64 {
    units as f64 / SPACE as f64
}

/// The consistent-hashing ring every node builds from the same membership.
///
/// Entries are kept sorted by token, with one owner per token. When two nodes claim
/// the same token, the smaller node (by `Ord`) keeps it and the other simply has one
/// token fewer; this rule looks only at the claims, not at their order, so every node
/// resolves the conflict the same way without talking to anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring<N> {
    /// `(token, owner)`, sorted by token, tokens unique.
    entries: Vec<(Token, N)>,
    /// For each entry, the index of its owner among the distinct owners sorted by
    /// `Ord`: the replica walk and the shares compare small integers instead of `N`.
    ids: Vec<usize>,
    /// Number of distinct owners.
    nodes: usize,
}

impl<N> Default for Ring<N> {
    fn default() -> Self {
        Ring {
            entries: Vec::new(),
            ids: Vec::new(),
            nodes: 0,
        }
    }
}

impl<N: Clone + Ord> Ring<N> {
    /// Builds the ring from each node's claimed tokens.
    ///
    /// The result depends only on the set of `(node, token)` claims: the input order,
    /// repeated entries for one node and repeated tokens do not matter. A node whose
    /// every token is taken by smaller nodes, or which claims none, is not in the ring.
    pub fn new(entries: impl IntoIterator<Item = (N, Vec<Token>)>) -> Ring<N> {
        let mut claims: Vec<(Token, N)> = Vec::new();
        for (node, tokens) in entries {
            claims.extend(tokens.into_iter().map(|t| (t, node.clone())));
        }
        // Sorting by (token, node) puts the smallest claimant first; dedup keeps it.
        claims.sort_unstable();
        claims.dedup_by(|later, first| later.0 == first.0);

        let mut owners: Vec<&N> = claims.iter().map(|(_, n)| n).collect();
        owners.sort_unstable();
        owners.dedup();
        let ids = claims
            .iter()
            .map(|(_, n)| owners.binary_search(&n).unwrap_or(0))
            .collect();
        let nodes = owners.len();
        Ring {
            entries: claims,
            ids,
            nodes,
        }
    }
}

impl<N> Ring<N> {
    /// Number of tokens on the ring (after duplicate claims were resolved).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no node holds a token: every key then has no replica.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of distinct nodes holding at least one token.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The `(token, owner)` pairs in ring order, the same list [`Ring::digest`] covers.
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = (Token, &N)> + DoubleEndedIterator {
        self.entries.iter().map(|(t, n)| (*t, n))
    }

    /// Each token with the index of its owner among the distinct owners (sorted by
    /// `Ord`), in ring order: what the allocator works on.
    pub(super) fn owned_tokens(&self) -> impl Iterator<Item = (Token, usize)> + '_ {
        self.entries
            .iter()
            .zip(&self.ids)
            .map(|(&(t, _), &id)| (t, id))
    }

    /// Index of the first entry at or after `token`, wrapping past the end to 0.
    fn successor(&self, token: Token) -> usize {
        let i = self.entries.partition_point(|(t, _)| *t < token);
        if i == self.entries.len() { 0 } else { i }
    }

    /// The node holding the first token at or after `token`: the primary replica.
    pub fn owner(&self, token: Token) -> Option<&N> {
        self.entries.get(self.successor(token)).map(|(_, n)| n)
    }

    /// Indices into `entries` of the replicas of `token`, first the owner, then the
    /// next distinct nodes clockwise; at most `rf`, fewer when the ring is smaller.
    fn replica_entries(&self, token: Token, rf: usize, out: &mut Vec<usize>) {
        out.clear();
        let want = rf.min(self.nodes);
        if want == 0 {
            return;
        }
        let start = self.successor(token);
        let len = self.entries.len();
        let mut seen: Vec<usize> = Vec::with_capacity(want);
        for step in 0..len {
            let i = (start + step) % len;
            let id = self.ids.get(i).copied().unwrap_or(usize::MAX);
            if !seen.contains(&id) {
                seen.push(id);
                out.push(i);
                if out.len() == want {
                    break;
                }
            }
        }
    }

    /// The replicas of `token`: the owner of the first token ≥ `token` (wrapping
    /// around), followed by the next distinct nodes clockwise, `rf` in all, or every
    /// node when the ring has fewer than `rf`.
    pub fn replicas(&self, token: Token, rf: usize) -> Vec<&N> {
        let mut idx = Vec::new();
        self.replica_entries(token, rf, &mut idx);
        idx.into_iter()
            .filter_map(|i| self.entries.get(i).map(|(_, n)| n))
            .collect()
    }

    /// The replicas of a key's bytes, hashed with [`token_for`].
    pub fn replicas_for_key(&self, key: &[u8], rf: usize) -> Vec<&N> {
        self.replicas(token_for(key), rf)
    }

    /// Replica load per owner id, in units of 2^-64 of the ring, counting each range
    /// once for each of its replicas.
    ///
    /// Computed per token rather than per range: a token's node replicates every range
    /// from its token back to its own previous token or to the token of the `rf`-th
    /// distinct other node, whichever comes first (its "span"). That is the same sum
    /// as walking each range's replicas, in O(T · rf) without allocating per range.
    pub(super) fn loads(&self, rf: usize) -> Vec<u128> {
        let mut loads = alloc::vec![0u128; self.nodes];
        if rf == 0 {
            return loads;
        }
        let len = self.entries.len();
        let mut seen: Vec<usize> = Vec::with_capacity(rf.min(self.nodes));
        for (q, (&own, &(end, _))) in self.ids.iter().zip(&self.entries).enumerate() {
            seen.clear();
            let mut span = SPACE;
            for back in 1..len {
                let s = (q + len - back) % len;
                let (Some(&o), Some(&(start, _))) = (self.ids.get(s), self.entries.get(s)) else {
                    break;
                };
                let stop = o == own || {
                    if !seen.contains(&o) {
                        seen.push(o);
                    }
                    seen.len() >= rf
                };
                if stop {
                    span = clockwise(start, end);
                    break;
                }
            }
            if let Some(l) = loads.get_mut(own) {
                *l += span;
            }
        }
        loads
    }

    /// Largest replica share divided by the mean share, for replication factor `rf`:
    /// 1.0 is perfect balance, and the most loaded node stores `max_over_mean` times
    /// its fair share of data.
    ///
    /// Returns 1.0 when there is nothing to balance (an empty ring, or `rf == 0`).
    pub fn max_over_mean(&self, rf: usize) -> f64 {
        let loads = self.loads(rf);
        let total: u128 = loads.iter().sum();
        let max = loads.iter().copied().max().unwrap_or(0);
        if total == 0 {
            return 1.0;
        }
        (max as f64) * (loads.len() as f64) / (total as f64)
    }
}

impl<N: Clone> Ring<N> {
    /// Each node's share of the token space for replication factor `rf`: the
    /// fraction of all keys it stores a replica of, sorted by node.
    ///
    /// Shares are exact (range arithmetic over the 2^64 token space, no sampling).
    /// Each range counts once for each of its `min(rf, nodes)` replicas, so the shares
    /// sum to `min(rf, nodes)` and their mean is `min(rf, nodes) / nodes`: with
    /// `rf = 1` they are plain ownership fractions summing to 1.
    pub fn ownership(&self, rf: usize) -> Vec<(N, f64)> {
        // `ids` are ranks in the sorted list of owners, so indexing by id sorts.
        let mut by_id: Vec<Option<&N>> = alloc::vec![None; self.nodes];
        for (&id, (_, n)) in self.ids.iter().zip(&self.entries) {
            if let Some(slot @ None) = by_id.get_mut(id) {
                *slot = Some(n);
            }
        }
        by_id
            .into_iter()
            .zip(self.loads(rf))
            .filter_map(|(n, l)| n.map(|n| (n.clone(), frac(l))))
            .collect()
    }
}

impl<N: Hash> Ring<N> {
    /// A hash of the ordered `(token, node)` list: two nodes with the same ring get
    /// the same digest, so equal digests everywhere mean the ring has converged.
    ///
    /// It is as portable as `N`'s `Hash` impl: tokens and the length are hashed as
    /// fixed-width integers, but a node type that hashes a `usize` (or an enum
    /// discriminant) hashes differently on 32- and 64-bit targets.
    pub fn digest(&self) -> u64 {
        let mut h = StableHasher::default();
        h.write_u64(self.entries.len() as u64);
        for (t, n) in &self.entries {
            h.write_u64(*t as u64);
            n.hash(&mut h);
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::placement::allocator::allocate_tokens;
    use alloc::vec;
    use proptest::prelude::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    // ---------------------------------------------------------------- ring

    fn ring_of(claims: &[(&'static str, &[Token])]) -> Ring<&'static str> {
        Ring::new(claims.iter().map(|(n, t)| (*n, t.to_vec())))
    }

    #[test]
    fn replicas_walk_clockwise_and_wrap() {
        let ring = ring_of(&[("a", &[10, 40]), ("b", &[20]), ("c", &[30])]);
        assert_eq!(ring.len(), 4);
        assert_eq!(ring.nodes(), 3);
        assert_eq!(ring.replicas(10, 3), vec![&"a", &"b", &"c"]);
        assert_eq!(ring.replicas(11, 3), vec![&"b", &"c", &"a"]);
        assert_eq!(ring.replicas(31, 2), vec![&"a", &"b"]);
        // Past the last token, the walk wraps to the first.
        assert_eq!(ring.replicas(41, 3), vec![&"a", &"b", &"c"]);
        assert_eq!(ring.replicas(Token::MAX, 1), vec![&"a"]);
        assert_eq!(ring.replicas(Token::MIN, 1), vec![&"a"]);
        // "a" appears twice on the walk from 31 but is counted once.
        assert_eq!(ring.replicas(25, 5), vec![&"c", &"a", &"b"]);
        assert_eq!(ring.replicas(25, 0), Vec::<&&str>::new());
        assert_eq!(ring.owner(35), Some(&"a"));
        let empty: Ring<&str> = Ring::default();
        assert!(empty.replicas(0, 3).is_empty() && empty.owner(0).is_none());
        assert_eq!(
            ring.replicas_for_key(&1i32.to_be_bytes(), 1),
            ring.replicas(-4069959284402364209, 1)
        );
    }

    #[test]
    fn duplicate_token_goes_to_smallest_node() {
        let ring = ring_of(&[("b", &[5, 7]), ("a", &[5]), ("c", &[7, 7])]);
        assert_eq!(
            ring.tokens().collect::<Vec<_>>(),
            vec![(5, &"a"), (7, &"b")]
        );
        // "c" lost its only token, so it is not part of the ring at all.
        assert_eq!(ring.nodes(), 2);
    }

    #[test]
    fn ownership_is_exact() {
        let q = 1i64 << 62; // a quarter of the ring
        let ring = ring_of(&[("a", &[0]), ("b", &[q]), ("c", &[Token::MIN]), ("d", &[-q])]);
        // "a" owns (-q, 0]: a quarter, as does everyone.
        for (_, share) in ring.ownership(1) {
            assert_eq!(share, 0.25);
        }
        for (_, share) in ring.ownership(3) {
            assert_eq!(share, 0.75);
        }
        assert_eq!(ring.max_over_mean(1), 1.0);
        let one = ring_of(&[("a", &[123])]);
        assert_eq!(one.ownership(3), vec![("a", 1.0)]);
        let names: Vec<_> = ring.ownership(1).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["a", "b", "c", "d"]);
        assert_eq!(Ring::<u8>::default().max_over_mean(3), 1.0);
        assert_eq!(ring.max_over_mean(0), 1.0);
    }

    /// The brute-force definition: walk each range's replicas and credit them.
    fn loads_by_walking<N>(ring: &Ring<N>, rf: usize) -> Vec<u128> {
        let mut loads = vec![0u128; ring.nodes()];
        let mut idx = Vec::new();
        let len = ring.len();
        for i in 0..len {
            let (start, end) = (ring.entries[(i + len - 1) % len].0, ring.entries[i].0);
            ring.replica_entries(end, rf, &mut idx);
            for &j in &idx {
                loads[ring.ids[j]] += clockwise(start, end);
            }
        }
        loads
    }

    fn small_claims() -> impl Strategy<Value = Vec<(u8, Vec<Token>)>> {
        // Few nodes and a coarse token grid, so collisions and same-node runs abound.
        prop::collection::vec(
            (
                0u8..8,
                prop::collection::vec((-8i64..8).prop_map(|t| t << 59), 0..5),
            ),
            0..10,
        )
    }

    proptest! {
        #[test]
        fn loads_match_replica_walk(claims in small_claims(), rf in 0usize..6) {
            let ring = Ring::new(claims);
            prop_assert_eq!(ring.loads(rf), loads_by_walking(&ring, rf));
            let total: f64 = ring.ownership(rf).iter().map(|(_, s)| s).sum();
            let expect = rf.min(ring.nodes()) as f64;
            prop_assert!((total - expect).abs() < 1e-9);
        }

        #[test]
        fn ring_ignores_claim_order(claims in small_claims(), seed in any::<u64>()) {
            let mut shuffled = claims.clone();
            // Fisher-Yates with a seeded RNG, also reversing each token list.
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.next_u32() as usize % (i + 1));
            }
            for (_, t) in &mut shuffled {
                t.reverse();
            }
            let (a, b) = (Ring::new(claims.clone()), Ring::new(shuffled));
            prop_assert_eq!(a.digest(), b.digest());
            prop_assert_eq!(&a, &b);
            // Each token went to the smallest node that claimed it.
            for (t, n) in a.tokens() {
                let min = claims.iter().filter(|(_, ts)| ts.contains(&t)).map(|(n, _)| n).min();
                prop_assert_eq!(Some(n), min);
            }
        }

        #[test]
        fn replicas_are_distinct_and_complete(claims in small_claims(), token in any::<i64>(), rf in 0usize..10) {
            let ring = Ring::new(claims);
            let reps = ring.replicas(token, rf);
            prop_assert_eq!(reps.len(), rf.min(ring.nodes()));
            let mut sorted = reps.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), reps.len());
            if rf > 0 {
                prop_assert_eq!(reps.first().copied(), ring.owner(token));
            }
        }

        #[test]
        fn allocation_never_collides(claims in small_claims(), count in 0usize..20, seed in any::<u64>()) {
            let ring = Ring::new(claims);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let tokens = allocate_tokens(&ring, count, &mut rng);
            prop_assert_eq!(tokens.len(), count);
            prop_assert!(tokens.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(tokens.iter().all(|t| *t != Token::MIN && ring.owner(*t).is_none_or(|_| ring.tokens().all(|(r, _)| r != *t))));
        }
    }

    #[test]
    fn digest_tracks_content() {
        let a = ring_of(&[("a", &[1, 2]), ("b", &[3])]);
        assert_eq!(a.digest(), ring_of(&[("b", &[3]), ("a", &[2, 1])]).digest());
        assert_ne!(a.digest(), ring_of(&[("a", &[1, 2]), ("b", &[4])]).digest());
        assert_ne!(a.digest(), ring_of(&[("a", &[1]), ("b", &[2, 3])]).digest());
    }
}
