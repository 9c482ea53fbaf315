//! The token ring: key hashing, replica placement and token allocation.
//!
//! Keys hash to a signed 64-bit [`Token`] with exactly the function Cassandra's
//! `Murmur3Partitioner` uses, so a token we compute can be checked against
//! `SELECT token(k)` on a real cluster. Each node claims a handful of tokens; a key
//! belongs to the node holding the first token at or after the key's token, walking
//! clockwise, and its further replicas are the next distinct nodes on the walk.
//!
//! Everything here is a pure function of its inputs: every node that sees the same
//! membership builds the same [`Ring`], and the same [`Ring::digest`].

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::hash::{Hash, Hasher};

use crate::hash::StableHasher;

/// A position on the ring, ordered as a signed integer, as Cassandra orders its
/// `LongToken`s, so that token ranges read the same as in `nodetool ring`.
pub type Token = i64;

/// The size of the whole token space, 2^64, for exact range arithmetic.
const SPACE: u128 = 1 << 64;

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

/// MurmurHash3 x64 128-bit, exactly as in Austin Appleby's reference `MurmurHash3.cpp`
/// (and Python's `mmh3.hash64`), returning `(h1, h2)`.
///
/// This is the textbook function. Cassandra's token differs from it for some inputs
/// (see [`token_for`]); keeping both lets tests pin each one to its own published
/// vectors.
pub fn murmur3_x64_128(data: &[u8], seed: u64) -> (u64, u64) {
    murmur3(data, seed, false)
}

/// The token Cassandra's `Murmur3Partitioner` gives the partition-key bytes `key`.
///
/// Three details make it differ from plain `murmur3_x64_128(key, 0).0 as i64`, all
/// copied so that our placement agrees with Cassandra's for the same bytes:
/// - Cassandra's Java port widens the trailing (`len % 16`) bytes through Java's
///   signed `byte`, so a tail byte ≥ 0x80 is sign-extended before it is mixed in.
/// - `i64::MIN` is Cassandra's reserved minimum token, so a hash landing there is
///   moved to `i64::MAX`.
/// - The empty key maps to that minimum token, `i64::MIN`.
///
/// For an `int` partition key the bytes are its 4-byte big-endian encoding; for
/// `text`, its UTF-8 bytes.
pub fn token_for(key: &[u8]) -> Token {
    if key.is_empty() {
        return Token::MIN;
    }
    let (h1, _) = murmur3(key, 0, true);
    normalize(h1 as i64)
}

/// Cassandra never hands out its minimum token for a key, so neither do we.
fn normalize(token: Token) -> Token {
    if token == Token::MIN {
        Token::MAX
    } else {
        token
    }
}

/// Little-endian load of up to eight bytes; total on every length, so no input panics.
fn le_u64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The one body behind both variants; `java_tail` selects Cassandra's sign extension.
fn murmur3(data: &[u8], seed: u64, java_tail: bool) -> (u64, u64) {
    let mut h1 = seed;
    let mut h2 = seed;
    let blocks = data.chunks_exact(16);
    let tail = blocks.remainder();
    for block in blocks {
        let (lo, hi) = block.split_at(8);
        let k1 = le_u64(lo)
            .wrapping_mul(C1)
            .rotate_left(31)
            .wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        let k2 = le_u64(hi)
            .wrapping_mul(C2)
            .rotate_left(33)
            .wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }

    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, &b) in tail.iter().enumerate() {
        let v = if java_tail {
            // Java's `(long) byte` sign-extends; the high bits survive the shift.
            i64::from(b as i8) as u64
        } else {
            u64::from(b)
        };
        if i < 8 {
            k1 ^= v << (8 * i);
        } else {
            k2 ^= v << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }

    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

/// Token `to` minus token `from`, clockwise, in `1..=2^64`: a range `(from, to]`
/// whose ends coincide is the whole ring (a ring of one token).
fn clockwise(from: Token, to: Token) -> u128 {
    match (to as u64).wrapping_sub(from as u64) {
        0 => SPACE,
        d => u128::from(d),
    }
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

    /// For every range `(previous token, token]`, in ring order: its size and the
    /// owner ids of its replicas. Runs the replica walk once per range.
    fn range_replicas(&self, rf: usize, mut visit: impl FnMut(u128, &[usize])) {
        let len = self.entries.len();
        let want = rf.min(self.nodes);
        let mut idx = Vec::with_capacity(want);
        let mut owners = Vec::with_capacity(want);
        for i in 0..len {
            let (Some(&(start, _)), Some(&(end, _))) = (
                self.entries.get((i + len - 1) % len),
                self.entries.get(i),
            ) else {
                continue;
            };
            self.replica_entries(end, want, &mut idx);
            owners.clear();
            owners.extend(idx.iter().filter_map(|&j| self.ids.get(j).copied()));
            visit(clockwise(start, end), &owners);
        }
    }

    /// Replica load per owner id, in units of 2^-64 of the ring, counting each range
    /// once for each of its replicas.
    fn loads(&self, rf: usize) -> Vec<u128> {
        let mut loads = alloc::vec![0u128; self.nodes];
        self.range_replicas(rf, |size, owners| {
            for &o in owners {
                if let Some(l) = loads.get_mut(o) {
                    *l += size;
                }
            }
        });
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
        let loads = self.loads(rf);
        let mut out: Vec<(N, f64)> = Vec::with_capacity(self.nodes);
        let mut done = alloc::vec![false; self.nodes];
        // `ids` are ranks in the sorted owner list: emit in that order.
        let mut by_id: Vec<Option<&N>> = alloc::vec![None; self.nodes];
        for (&id, (_, n)) in self.ids.iter().zip(&self.entries) {
            if let (Some(slot), Some(d)) = (by_id.get_mut(id), done.get_mut(id)) {
                if !*d {
                    *slot = Some(n);
                    *d = true;
                }
            }
        }
        for (n, l) in by_id.into_iter().zip(loads) {
            if let Some(n) = n {
                out.push((n.clone(), l as f64 / SPACE as f64));
            }
        }
        out
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

/// `count` distinct uniformly random tokens, sorted, never `i64::MIN` (as Cassandra's
/// `getRandomToken`): the placement used when nothing is known about the ring yet.
///
/// Terminates for any RNG, even a constant one: a value already taken is replaced by
/// the next free token above it.
pub fn random_tokens(count: usize, rng: &mut impl rand_core::RngCore) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(count.min(1 << 16));
    let mut taken = alloc::collections::BTreeSet::new();
    while out.len() < count {
        let mut t = normalize(rng.next_u64() as i64);
        while !taken.insert(t) {
            t = normalize(t.wrapping_add(1));
        }
        out.push(t);
    }
    out.sort_unstable();
    out
}

/// Chooses `count` tokens for a node about to join `ring`, aiming to leave every
/// node, the new one included, with an equal share.
///
/// An empty ring has nothing to balance against, so it gets [`random_tokens`].
/// Otherwise each token splits an existing range, as Cassandra 4.0's allocator does,
/// but the split point is chosen, not halved: the new token takes from the owner
/// most above the new mean share, and its range is kept near the ideal range size
/// (the mean share divided by `count`). Keeping ranges even matters beyond `rf = 1`:
/// a node's share at a higher replication factor also sums its neighbours' ranges.
///
/// The result depends on `rng` only through a small jitter of each split point, so
/// two nodes that allocate against the same ring at the same moment still get
/// distinct tokens. It returns fewer than `count` tokens only when no range is wide
/// enough to split. Cost: O(count · T) after an O(T log T) setup, T = `ring.len()`.
pub fn allocate_tokens<N: Clone + Ord>(
    ring: &Ring<N>,
    count: usize,
    rng: &mut impl rand_core::RngCore,
) -> Vec<Token> {
    if ring.is_empty() {
        return random_tokens(count, rng);
    }
    Allocator::new(ring).allocate(count, rng)
}

/// One range of the ring during allocation, in absolute units of 2^-64.
#[derive(Clone, Copy, Debug)]
struct Span {
    /// Token the range starts after (exclusive).
    start: Token,
    /// Width in 1..=2^64.
    size: u128,
    /// Owner id; `new_id` is the joining node.
    owner: usize,
}

struct Allocator {
    spans: Vec<Span>,
    /// rf = 1 share per owner, as a fraction of the ring.
    loads: Vec<f64>,
    new_id: usize,
}

/// Weight of range-size evenness against owner balance in the split score.
const LAMBDA: f64 = 0.5;
/// Weight of keeping the new node's range near its per-token target.
const ALPHA: f64 = 1.0;

impl Allocator {
    fn new<N>(ring: &Ring<N>) -> Self {
        let len = ring.entries.len();
        let mut spans = Vec::with_capacity(len);
        let mut loads = alloc::vec![0.0; ring.nodes + 1];
        for i in 0..len {
            let (Some(&(start, _)), Some(&(end, _)), Some(&owner)) = (
                ring.entries.get((i + len - 1) % len),
                ring.entries.get(i),
                ring.ids.get(i),
            ) else {
                continue;
            };
            let size = clockwise(start, end);
            if let Some(l) = loads.get_mut(owner) {
                *l += size as f64 / SPACE as f64;
            }
            spans.push(Span { start, size, owner });
        }
        Allocator {
            spans,
            loads,
            new_id: ring.nodes,
        }
    }

    fn allocate(mut self, count: usize, rng: &mut impl rand_core::RngCore) -> Vec<Token> {
        let n_after = (self.new_id + 1) as f64;
        let mean = 1.0 / n_after;
        let ideal = mean / count.max(1) as f64;
        let mut out = Vec::with_capacity(count.min(1 << 16));
        for k in 0..count {
            let gained = self.loads.get(self.new_id).copied().unwrap_or(0.0);
            let want = ((mean - gained) / (count - k) as f64).max(0.0);
            let mut best: Option<(f64, usize, f64)> = None;
            for (i, s) in self.spans.iter().enumerate() {
                if s.owner == self.new_id || s.size < 2 {
                    continue;
                }
                let r = s.size as f64 / SPACE as f64;
                let over = self.loads.get(s.owner).copied().unwrap_or(0.0) - mean;
                let x = ((over + LAMBDA * r + ALPHA * want) / (1.0 + 2.0 * LAMBDA + ALPHA))
                    .clamp(0.0, r);
                let gain = over * over - (over - x) * (over - x)
                    + LAMBDA
                        * ((r - ideal) * (r - ideal)
                            - (x - ideal) * (x - ideal)
                            - (r - x - ideal) * (r - x - ideal))
                    - ALPHA * (x - want) * (x - want);
                if best.is_none_or(|(g, _, _)| gain > g) {
                    best = Some((gain, i, x));
                }
            }
            let Some((_, i, x)) = best else { break };
            let Some(span) = self.spans.get(i).copied() else {
                break;
            };
            // ±1% jitter: negligible for balance, enough to separate two joiners.
            let jitter = 1.0 + ((rng.next_u32() as f64 / u32::MAX as f64) - 0.5) * 0.02;
            let offset = ((x * jitter * SPACE as f64) as u128).clamp(1, span.size - 1);
            let mut token = ((span.start as u64).wrapping_add(offset as u64)) as Token;
            let mut offset = offset;
            if token == Token::MIN {
                // Keep Cassandra's reserved minimum free, as `random_tokens` does.
                if offset + 1 >= span.size {
                    offset -= 1;
                    token = token.wrapping_sub(1);
                } else {
                    offset += 1;
                    token = token.wrapping_add(1);
                }
                if offset == 0 {
                    continue;
                }
            }
            let moved = offset as f64 / SPACE as f64;
            if let Some(l) = self.loads.get_mut(span.owner) {
                *l -= moved;
            }
            if let Some(l) = self.loads.get_mut(self.new_id) {
                *l += moved;
            }
            if let Some(s) = self.spans.get_mut(i) {
                s.start = token;
                s.size -= offset;
            }
            self.spans.push(Span {
                start: span.start,
                size: offset,
                owner: self.new_id,
            });
            out.push(token);
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;
    use std::println;

    /// Joins nodes 0..n one at a time, each allocating `vnodes` tokens against the
    /// ring of the previous ones (or drawing random ones), and returns the claims.
    fn grow(n: usize, vnodes: usize, allocate: bool, seed: u64) -> Vec<(u32, Vec<Token>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut claims: Vec<(u32, Vec<Token>)> = Vec::new();
        let mut ring: Ring<u32> = Ring::default();
        for id in 0..n as u32 {
            let tokens = if allocate {
                allocate_tokens(&ring, vnodes, &mut rng)
            } else {
                random_tokens(vnodes, &mut rng)
            };
            claims.push((id, tokens));
            ring = Ring::new(claims.iter().cloned());
        }
        claims
    }

    #[test]
    fn balance_probe() {
        for &n in &[10usize, 100, 1000] {
            let claims = grow(n, 16, true, 7);
            let ring = Ring::new(claims);
            println!(
                "N={n}: alloc rf1 {:.3} rf3 {:.3}",
                ring.max_over_mean(1),
                ring.max_over_mean(3)
            );
        }
    }
}
