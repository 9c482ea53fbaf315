//! Token allocation: where a joining node should put its tokens.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;

use super::murmur::normalize;
use super::ring::{Ring, SPACE, Token, clockwise, frac};

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

/// The replication factor whose balance [`allocate_tokens`] optimises besides
/// `rf = 1`: the protocol's default.
pub const ALLOCATION_RF: usize = 3;

/// Chooses `count` tokens for a node about to join `ring`, so that every node, the
/// new one included, ends up with a near-equal share both of primary ownership
/// (`rf = 1`) and of replicas at [`ALLOCATION_RF`].
///
/// Same as [`allocate_tokens_for_rf`] with `rf = ALLOCATION_RF`.
pub fn allocate_tokens<N>(
    ring: &Ring<N>,
    count: usize,
    rng: &mut impl rand_core::RngCore,
) -> Vec<Token> {
    allocate_tokens_for_rf(ring, count, ALLOCATION_RF, rng)
}

/// Chooses `count` tokens for a node about to join `ring`, balancing ownership at
/// `rf = 1` and replica shares at `rf` together.
///
/// An empty ring has nothing to balance against, so it gets [`random_tokens`].
/// Otherwise each token splits an existing range, as in Cassandra 4.0's
/// replication-aware allocator: greedily, each new token goes where it most reduces
/// the squared deviation of every node's share from the mean, at `rf = 1` and at
/// `rf`, plus a small penalty for uneven range sizes. The split point inside the
/// range is solved for, not halved: a node's share is affine in the split offset,
/// so the best offset of each range has a closed form.
///
/// Cost, with T = `ring.len()`: every range is screened with the cheap `rf = 1`
/// score in O(T); the best quarter get the full score (a walk over O(rf²)
/// neighbours) and go into a priority queue that is re-evaluated lazily, at most
/// [`LAZY_BUDGET`] evaluations per token. About O(T log T + count · rf²) in all:
/// 1,000 nodes × 16 tokens take a few milliseconds per join.
///
/// The result depends on `rng` only through a small jitter of each split point, so two
/// nodes that allocate against the same ring at the same time still get distinct
/// tokens. Fewer than `count` tokens come back only when no range is wide enough to
/// split. `rf = 0` is treated as 1.
pub fn allocate_tokens_for_rf<N>(
    ring: &Ring<N>,
    count: usize,
    rf: usize,
    rng: &mut impl rand_core::RngCore,
) -> Vec<Token> {
    if ring.is_empty() {
        return random_tokens(count, rng);
    }
    // Beyond the node count every node holds everything: the rf term is constant.
    Allocator::new(ring, rf.clamp(1, ring.nodes() + 1)).allocate(count, rng)
}

/// Sentinel link for the allocator's ring list.
const NIL: usize = usize::MAX;

/// Weight of range-size evenness against share balance in the split score. Without
/// it the greedy happily leaves slivers that hurt balance at `rf > 1` later on; much
/// more and it stops steering load away from overloaded nodes. Tuned by measurement
/// (0.25 to 2 all pass; 0.5 was best at N = 10, 100 and 1,000).
const LAMBDA: f64 = 0.5;
/// Weight of the `rf` share deviations (divided by `rf`, to compare like with like)
/// against the `rf = 1` deviations.
const W_RF: f64 = 1.0;
/// Fresh evaluations per token before the lazy greedy settles for the best seen.
/// 16 and 64 balance equally well in the tests.
/// Unbounded, one token could re-evaluate thousands of stale candidates.
const LAZY_BUDGET: usize = 16;

/// A token on the allocator's doubly linked ring; its range is `(prev.pos, pos]`.
#[derive(Clone, Copy, Debug)]
struct Tok {
    pos: Token,
    owner: usize,
    prev: usize,
    next: usize,
    /// Bumped whenever a queued evaluation of this range goes stale.
    version: u32,
    /// Current `rf` span of this token, as a fraction of the ring (cached).
    span: f64,
}

/// A queued candidate: splitting the range of `tok` improves the score by `gain`.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    gain: f64,
    tok: usize,
    version: u32,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        // Ties go to the lower index, so the choice does not depend on heap internals.
        self.gain
            .total_cmp(&other.gain)
            .then_with(|| other.tok.cmp(&self.tok))
    }
}

/// An owner's share change as an affine function of the split offset `x`.
#[derive(Clone, Copy, Debug)]
struct Delta {
    owner: usize,
    constant: f64,
    slope: f64,
}

struct Allocator {
    toks: Vec<Tok>,
    /// `rf = 1` share per owner; the joining node is `new_id`.
    load1: Vec<f64>,
    /// `rf` share per owner.
    load_rf: Vec<f64>,
    rf: usize,
    new_id: usize,
    /// Scratch buffers reused across evaluations.
    seen: Vec<usize>,
    window: Vec<usize>,
    deltas: Vec<Delta>,
}

impl Allocator {
    fn new<N>(ring: &Ring<N>, rf: usize) -> Self {
        let len = ring.len();
        let toks = ring
            .owned_tokens()
            .enumerate()
            .map(|(i, (pos, owner))| Tok {
                pos,
                owner,
                prev: (i + len - 1) % len,
                next: (i + 1) % len,
                version: 0,
                span: 0.0,
            })
            .collect();
        let mut load1: Vec<f64> = ring.loads(1).into_iter().map(frac).collect();
        load1.push(0.0);
        let mut a = Allocator {
            toks,
            load_rf: alloc::vec![0.0; load1.len()],
            load1,
            rf,
            new_id: ring.nodes(),
            seen: Vec::new(),
            window: Vec::new(),
            deltas: Vec::new(),
        };
        if rf > 1 {
            // A node's `rf` share is the sum of its tokens' spans (see `Ring::loads`).
            for q in 0..a.toks.len() {
                let (span, _) = a.span(q, NIL, 0);
                if let Some(t) = a.toks.get_mut(q) {
                    t.span = span;
                    if let Some(l) = a.load_rf.get_mut(t.owner) {
                        *l += span;
                    }
                }
            }
        }
        a
    }

    fn tok(&self, i: usize) -> Tok {
        self.toks.get(i).copied().unwrap_or(Tok {
            pos: 0,
            owner: NIL,
            prev: NIL,
            next: NIL,
            version: 0,
            span: 0.0,
        })
    }

    /// Where the `rf` span of token `q` starts: walking back, the first token of the
    /// same owner, or the token whose owner is the `rf`-th distinct other owner.
    /// Returns `q` itself when the walk comes all the way round.
    fn span_start(&mut self, q: usize) -> usize {
        let own = self.tok(q).owner;
        self.seen.clear();
        let mut s = self.tok(q).prev;
        for _ in 0..self.toks.len() {
            if s == q || s == NIL {
                break;
            }
            let t = self.tok(s);
            if t.owner == own {
                return s;
            }
            if !self.seen.contains(&t.owner) {
                self.seen.push(t.owner);
                if self.seen.len() >= self.rf {
                    return s;
                }
            }
            s = t.prev;
        }
        q
    }

    /// The `rf` span of `q` as `constant + slope · x`, where the token `v` (or
    /// none, when `v == NIL`) sits at `base + x`.
    fn span(&mut self, q: usize, v: usize, base: Token) -> (f64, f64) {
        let s = self.span_start(q);
        if s == q {
            return (1.0, 0.0);
        }
        let pos = |t: usize| if t == v { base } else { self.tok(t).pos };
        let c = frac(u128::from((pos(q) as u64).wrapping_sub(pos(s) as u64)));
        let slope = f64::from(u8::from(q == v)) - f64::from(u8::from(s == v));
        (c, slope)
    }

    /// Fills `deltas` with how each owner's `rf` share changes if the joining node
    /// puts a token `x` past the start of `i`'s range. Leaves the ring unchanged.
    fn structure(&mut self, i: usize) {
        self.deltas.clear();
        // Tokens at and after `i` whose backward walk would meet the new token.
        self.window.clear();
        self.seen.clear();
        let mut q = i;
        for _ in 0..self.toks.len() {
            self.window.push(q);
            let o = self.tok(q).owner;
            if !self.seen.contains(&o) {
                self.seen.push(o);
            }
            if self.seen.len() >= self.rf {
                break;
            }
            q = self.tok(q).next;
            if q == i || q == NIL {
                break;
            }
        }
        let p = self.tok(i).prev;
        let base = self.tok(p).pos;
        let window = core::mem::take(&mut self.window);
        for &q in &window {
            let t = self.tok(q);
            self.add_delta(t.owner, -t.span, 0.0);
        }
        // Link a provisional token, measure, unlink.
        let v = self.toks.len();
        self.toks.push(Tok {
            pos: base,
            owner: self.new_id,
            prev: p,
            next: i,
            version: 0,
            span: 0.0,
        });
        self.link(v);
        for &q in window.iter().chain(core::iter::once(&v)) {
            let (c, slope) = self.span(q, v, base);
            self.add_delta(self.tok(q).owner, c, slope);
        }
        self.unlink(v);
        self.toks.pop();
        self.window = window;
    }

    fn add_delta(&mut self, owner: usize, constant: f64, slope: f64) {
        if let Some(d) = self.deltas.iter_mut().find(|d| d.owner == owner) {
            d.constant += constant;
            d.slope += slope;
        } else {
            self.deltas.push(Delta {
                owner,
                constant,
                slope,
            });
        }
    }

    fn link(&mut self, v: usize) {
        let t = self.tok(v);
        if let Some(p) = self.toks.get_mut(t.prev) {
            p.next = v;
        }
        if let Some(n) = self.toks.get_mut(t.next) {
            n.prev = v;
        }
    }

    fn unlink(&mut self, v: usize) {
        let t = self.tok(v);
        if let Some(p) = self.toks.get_mut(t.prev) {
            p.next = t.next;
        }
        if let Some(n) = self.toks.get_mut(t.next) {
            n.prev = t.prev;
        }
    }

    /// Best split offset (fraction of the ring) in `i`'s range and its score gain,
    /// given that `placed` of `count` tokens are already placed.
    fn evaluate(
        &mut self,
        i: usize,
        placed: usize,
        count: usize,
        full: bool,
    ) -> Option<(f64, f64)> {
        let t = self.tok(i);
        if t.owner == self.new_id || t.owner == NIL {
            return None;
        }
        let size = clockwise(self.tok(t.prev).pos, t.pos);
        if size < 2 {
            return None;
        }
        let r = frac(size);
        let n_after = (self.new_id + 1) as f64;
        let mean1 = 1.0 / n_after;
        let mean_rf = (self.rf as f64).min(n_after) / n_after;
        // The joining node is judged against its pro-rata target after this token.
        let progress = (placed + 1) as f64 / count.max(1) as f64;
        let ideal = mean1 / count.max(1) as f64;

        // Score change is a·x² + 2b·x + c; accumulate a and b, then c at the optimum.
        let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
        let mut term = |w: f64, dev: f64, constant: f64, slope: f64| {
            let d = dev + constant;
            a += w * slope * slope;
            b += w * d * slope;
            c += w * (d * d - dev * dev);
        };
        let x_dev = self.load1.get(self.new_id).copied().unwrap_or(0.0) - mean1 * progress;
        let o_dev = self.load1.get(t.owner).copied().unwrap_or(0.0) - mean1;
        term(1.0, o_dev, 0.0, -1.0);
        term(1.0, x_dev, 0.0, 1.0);
        if self.rf > 1 && full {
            self.structure(i);
            let w = W_RF / (self.rf * self.rf) as f64;
            for d in &self.deltas {
                let target = if d.owner == self.new_id {
                    mean_rf * progress
                } else {
                    mean_rf
                };
                let dev = self.load_rf.get(d.owner).copied().unwrap_or(0.0) - target;
                term(w, dev, d.constant, d.slope);
            }
        }
        // Range evenness: λ[(x−τ)² + (r−x−τ)² − (r−τ)²] = λ(2x² − 2rx + τ²).
        a += 2.0 * LAMBDA;
        b -= LAMBDA * r;
        c += LAMBDA * ideal * ideal;
        let x = if a > 0.0 {
            (-b / a).clamp(0.0, r)
        } else {
            r / 2.0
        };
        let score = a * x * x + 2.0 * b * x + c;
        Some((-score, x))
    }

    fn push(
        &mut self,
        heap: &mut BinaryHeap<Candidate>,
        i: usize,
        placed: usize,
        count: usize,
        full: bool,
    ) {
        let Some(t) = self.toks.get_mut(i) else {
            return;
        };
        t.version = t.version.wrapping_add(1);
        let version = t.version;
        if let Some((gain, _)) = self.evaluate(i, placed, count, full) {
            heap.push(Candidate {
                gain,
                tok: i,
                version,
            });
        }
    }

    fn allocate(mut self, count: usize, rng: &mut impl rand_core::RngCore) -> Vec<Token> {
        // Screen every range with the cheap `rf = 1` score and queue only the best
        // quarter for full evaluation: the rest would rarely win, and the full score
        // is what dominates the cost.
        let mut screened: Vec<(f64, usize)> = (0..self.toks.len())
            .filter_map(|i| self.evaluate(i, 0, count, false).map(|(g, _)| (g, i)))
            .collect();
        let keep = (self.toks.len() / 4).max(count.saturating_mul(8));
        if screened.len() > keep {
            screened.select_nth_unstable_by(keep, |a, b| b.0.total_cmp(&a.0));
            screened.truncate(keep);
        }
        let mut heap = BinaryHeap::with_capacity(screened.len());
        for (_, i) in screened {
            self.push(&mut heap, i, 0, count, true);
        }
        let mut out = Vec::with_capacity(count.min(1 << 16));
        'tokens: while out.len() < count {
            let placed = out.len();
            // Lazy greedy: queued gains may be stale. Re-evaluate from the top until the
            // best fresh gain beats every stale one left, or `LAZY_BUDGET` were tried.
            let mut best: Option<(Candidate, f64)> = None;
            let mut held: Vec<Candidate> = Vec::new();
            while held.len() < LAZY_BUDGET {
                let settled =
                    best.is_some_and(|(b, _)| heap.peek().is_some_and(|next| b.gain >= next.gain));
                if settled {
                    break;
                }
                let Some(top) = heap.pop() else {
                    break;
                };
                if self.tok(top.tok).version != top.version {
                    continue;
                }
                let Some((gain, x)) = self.evaluate(top.tok, placed, count, true) else {
                    continue;
                };
                let fresh = Candidate { gain, ..top };
                held.push(fresh);
                if best.is_none_or(|(b, _)| fresh > b) {
                    best = Some((fresh, x));
                }
            }
            let Some((chosen, x)) = best else {
                break 'tokens;
            };
            heap.extend(held.into_iter().filter(|c| c.tok != chosen.tok));
            let i = chosen.tok;
            if let Some(token) = self.split(i, x, rng) {
                out.push(token);
                // Re-queue the ranges whose evaluation the new token changed.
                let v = self.toks.len() - 1;
                let mut around = Vec::with_capacity(2 * self.rf + 2);
                let (mut back, mut fwd) = (v, v);
                for _ in 0..=self.rf {
                    back = self.tok(back).prev;
                    fwd = self.tok(fwd).next;
                    around.push(back);
                    around.push(fwd);
                }
                around.sort_unstable();
                around.dedup();
                for j in around {
                    self.push(&mut heap, j, placed + 1, count, true);
                }
            } else if let Some(t) = self.toks.get_mut(i) {
                // Unsplittable after all; drop it from the queue.
                t.version = t.version.wrapping_add(1);
            }
        }
        out.sort_unstable();
        out
    }

    /// Puts the joining node's token about `x` into `i`'s range and updates shares.
    fn split(&mut self, i: usize, x: f64, rng: &mut impl rand_core::RngCore) -> Option<Token> {
        let t = self.tok(i);
        let base = self.tok(t.prev).pos;
        let size = clockwise(base, t.pos);
        if size < 2 {
            return None;
        }
        // Move 2% of the way towards a random point of the range: negligible for
        // balance, yet two joiners choosing the same split (even one at a range end,
        // where a multiplicative jitter would be clamped away) get different tokens.
        let r = frac(size);
        let u = f64::from(rng.next_u32()) / f64::from(u32::MAX);
        let x = x + 0.02 * (u * r - x);
        let mut offset = ((x * SPACE as f64) as u128).clamp(1, size - 1);
        if (base as u64).wrapping_add(offset as u64) as Token == Token::MIN {
            // Keep Cassandra's reserved minimum token free.
            offset = if offset + 1 < size {
                offset + 1
            } else {
                offset - 1
            };
            if offset == 0 {
                return None;
            }
        }
        let token = (base as u64).wrapping_add(offset as u64) as Token;
        let x = frac(offset);
        if self.rf > 1 {
            self.structure(i);
            for d in &self.deltas {
                if let Some(l) = self.load_rf.get_mut(d.owner) {
                    *l += d.constant + d.slope * x;
                }
            }
        }
        if let Some(l) = self.load1.get_mut(t.owner) {
            *l -= x;
        }
        if let Some(l) = self.load1.get_mut(self.new_id) {
            *l += x;
        }
        let v = self.toks.len();
        self.toks.push(Tok {
            pos: token,
            owner: self.new_id,
            prev: t.prev,
            next: i,
            version: 0,
            span: 0.0,
        });
        self.link(v);
        if self.rf > 1 {
            // `structure` left the affected tokens in `window`; refresh their spans.
            let window = core::mem::take(&mut self.window);
            for &q in window.iter().chain(core::iter::once(&v)) {
                let (span, _) = self.span(q, NIL, 0);
                if let Some(t) = self.toks.get_mut(q) {
                    t.span = span;
                }
            }
            self.window = window;
        }
        Some(token)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::format;
    use alloc::vec;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};
    use std::println;

    fn ring_of(claims: &[(&'static str, &[Token])]) -> Ring<&'static str> {
        Ring::new(claims.iter().map(|(n, t)| (*n, t.to_vec())))
    }

    // ---------------------------------------------------------------- allocation

    /// Always the same number: the worst RNG there is.
    struct Stuck;
    impl RngCore for Stuck {
        fn next_u32(&mut self) -> u32 {
            7
        }
        fn next_u64(&mut self) -> u64 {
            7
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(7);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(7);
            Ok(())
        }
    }

    #[test]
    fn random_tokens_are_distinct_even_with_a_stuck_rng() {
        let t = random_tokens(100, &mut Stuck);
        assert_eq!(t, (7..107).collect::<Vec<_>>());
        let t = random_tokens(1000, &mut ChaCha8Rng::seed_from_u64(3));
        assert!(t.windows(2).all(|w| w[0] < w[1]) && t.len() == 1000);
        // An empty ring has nothing to split: allocation falls back to random.
        let empty: Ring<u8> = Ring::default();
        assert_eq!(allocate_tokens(&empty, 5, &mut Stuck).len(), 5);
        let one = ring_of(&[("a", &[0])]);
        let t = allocate_tokens(&one, 16, &mut Stuck);
        assert_eq!(t.len(), 16);
        assert!(!t.contains(&0));
    }

    /// The allocator's incremental spans and shares must equal a from-scratch
    /// computation on the ring it has built so far.
    #[test]
    fn allocator_bookkeeping_stays_exact() {
        for (n, rf) in [(1u32, 3usize), (3, 3), (12, 3), (12, 2), (30, 5)] {
            let ring = Ring::new(grow(n, 4, false, u64::from(n)));
            let mut a = Allocator::new(&ring, rf);
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            for k in 0..12 {
                let i = rng.next_u32() as usize % a.toks.len();
                if a.tok(i).owner == a.new_id {
                    continue;
                }
                let Some((_, x)) = a.evaluate(i, k, 12, true) else {
                    continue;
                };
                a.split(i, x, &mut rng);
            }
            let rebuilt = Ring::new(a.toks.iter().map(|t| (t.owner, vec![t.pos])));
            let exact1: Vec<f64> = rebuilt.loads(1).into_iter().map(frac).collect();
            let exact_rf: Vec<f64> = rebuilt.loads(rf).into_iter().map(frac).collect();
            for o in 0..exact1.len() {
                assert!(
                    (a.load1[o] - exact1[o]).abs() < 1e-12,
                    "n {n} rf {rf} owner {o}"
                );
                assert!(
                    (a.load_rf[o] - exact_rf[o]).abs() < 1e-12,
                    "n {n} rf {rf} owner {o}"
                );
            }
        }
    }

    #[test]
    fn concurrent_joiners_get_distinct_tokens() {
        for n in [1, 2, 5, 20, 100] {
            let ring = Ring::new(grow(n, 16, true, 9));
            let a = allocate_tokens(&ring, 16, &mut ChaCha8Rng::seed_from_u64(1));
            let b = allocate_tokens(&ring, 16, &mut ChaCha8Rng::seed_from_u64(2));
            assert!(a.iter().all(|t| !b.contains(t)), "n {n}");
        }
    }

    /// Joins nodes `0..n` one at a time, each allocating `vnodes` tokens against the
    /// ring of those before it (or drawing random ones), and returns the claims.
    fn grow(n: u32, vnodes: usize, allocate: bool, seed: u64) -> Vec<(u32, Vec<Token>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut claims: Vec<(u32, Vec<Token>)> = Vec::new();
        let mut ring: Ring<u32> = Ring::default();
        for id in 0..n {
            let tokens = if allocate {
                allocate_tokens(&ring, vnodes, &mut rng)
            } else {
                random_tokens(vnodes, &mut rng)
            };
            claims.push((id, tokens));
            if allocate {
                ring = Ring::new(claims.iter().cloned());
            }
        }
        claims
    }

    /// The acceptance bar: with 16 tokens per node joining one at a time, max/mean
    /// share stays within 1.15 at rf 1 and 3. Random tokens are printed beside it.
    #[allow(clippy::disallowed_methods)] // wall time of the test itself, not the core's
    fn check_balance(n: u32) {
        let started = std::time::Instant::now();
        let allocated = Ring::new(grow(n, 16, true, 7));
        let elapsed = started.elapsed();
        let random = Ring::new(grow(n, 16, false, 7));
        let (a1, a3) = (allocated.max_over_mean(1), allocated.max_over_mean(3));
        let (r1, r3) = (random.max_over_mean(1), random.max_over_mean(3));
        println!(
            "N={n:>4} 16 tokens: allocated rf1 {a1:.3} rf3 {a3:.3} | random rf1 {r1:.3} rf3 {r3:.3} | {n} joins in {elapsed:.2?}"
        );
        assert!(a1 <= 1.15, "N={n} rf1 {a1}");
        assert!(a3 <= 1.15, "N={n} rf3 {a3}");
    }

    #[test]
    fn balance_n10() {
        check_balance(10);
    }

    #[test]
    fn balance_n100() {
        check_balance(100);
    }

    #[test]
    fn balance_n1000() {
        check_balance(1000);
    }

    /// Keys whose primary (`rf = 1`) or replica set (`rf = 3`) differs between rings,
    /// over a fixed sample of keys.
    fn moved(before: &Ring<u32>, after: &Ring<u32>, keys: &[Vec<u8>], rf: usize) -> Vec<usize> {
        (0..keys.len())
            .filter(|&i| {
                before.replicas_for_key(&keys[i], rf) != after.replicas_for_key(&keys[i], rf)
            })
            .collect()
    }

    /// One node joining takes about 1/N of the keys, all of them to itself; one
    /// leaving gives away only its own keys, about 1/N. The bounds are ±50% of 1/N:
    /// with max/mean ≤ 1.15 (and min/mean ≥ ~0.85) any node's share lies well inside.
    #[test]
    fn join_and_leave_move_about_one_nth() {
        let keys: Vec<Vec<u8>> = (0..100_000)
            .map(|i| format!("key-{i}").into_bytes())
            .collect();
        for n in [10u32, 100] {
            let mut claims = grow(n, 16, true, 11);
            let before = Ring::new(claims.clone());
            let mut rng = ChaCha8Rng::seed_from_u64(99);
            claims.push((n, allocate_tokens(&before, 16, &mut rng)));
            let after = Ring::new(claims.clone());
            let moved1 = moved(&before, &after, &keys, 1);
            assert!(
                moved1
                    .iter()
                    .all(|&i| after.replicas_for_key(&keys[i], 1) == vec![&n])
            );
            let frac = moved1.len() as f64 / keys.len() as f64;
            let ideal = 1.0 / f64::from(n + 1);
            let moved3 = moved(&before, &after, &keys, 3).len() as f64 / keys.len() as f64;
            println!(
                "join at N={n}: {frac:.4} of keys change primary (1/(N+1) = {ideal:.4}); {moved3:.4} change an rf=3 replica"
            );
            assert!(
                (0.5 * ideal..=1.5 * ideal).contains(&frac),
                "join N={n}: {frac}"
            );

            let gone = n / 3;
            claims.retain(|(id, _)| *id != gone);
            let left = Ring::new(claims);
            let moved1 = moved(&after, &left, &keys, 1);
            assert!(
                moved1
                    .iter()
                    .all(|&i| after.replicas_for_key(&keys[i], 1) == vec![&gone])
            );
            let frac = moved1.len() as f64 / keys.len() as f64;
            let ideal = 1.0 / f64::from(n + 1);
            println!(
                "leave at N={}: {frac:.4} of keys change primary (1/N = {ideal:.4})",
                n + 1
            );
            assert!(
                (0.5 * ideal..=1.5 * ideal).contains(&frac),
                "leave N={n}: {frac}"
            );
        }
    }

    /// Throughput of routing, printed only (it depends on the machine and profile).
    #[test]
    #[allow(clippy::disallowed_methods)] // wall time of the test itself, not the core's
    fn replicas_for_key_throughput() {
        let ring = Ring::new(grow(1000, 16, false, 5));
        let keys: Vec<Vec<u8>> = (0..200_000)
            .map(|i| format!("user:{i}").into_bytes())
            .collect();
        let started = std::time::Instant::now();
        let mut check = 0usize;
        for k in &keys {
            check += ring.replicas_for_key(k, 3).len();
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(check, 3 * keys.len());
        println!(
            "replicas_for_key(rf=3) at N=1000 x 16 tokens: {:.2} M keys/s",
            keys.len() as f64 / secs / 1e6
        );
    }
}
