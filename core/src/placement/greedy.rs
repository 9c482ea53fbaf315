//! The greedy engine behind [`allocator`](super::allocator): a doubly linked ring of
//! tokens with each owner's running shares, and a lazily re-evaluated priority queue
//! of range splits (Cassandra 4.0's replication-aware allocation).

use alloc::vec::Vec;

use super::ring::{Ring, SPACE, Token, clockwise, frac};

/// Sentinel link for the allocator's ring list.
const NIL: usize = usize::MAX;

/// Weight of range-size evenness against share balance in the split score. Without
/// it the greedy happily leaves slivers that hurt balance at `rf > 1` later on; much
/// more and it stops steering load away from overloaded nodes. Tuned by measurement
/// (0.25 to 2 all pass; 0.5 was best at N = 10, 100 and 1,000).
const LAMBDA: f64 = 0.5;
/// Joiners allocating together are admitted in batches of at most the ring's node
/// count so far over this (at least one): the ring grows by a quarter per batch.
/// Tuned by measurement, 1,000 joiners onto one node over three seeds: all at once
/// gives max/mean from 1.07 to 80 depending on the seed, doubling (2) up to 1.11,
/// 4 and 8 about 1.06 to 1.08; 4 is the faster of the two.
const BATCH_DIV: usize = 4;
/// [`LAMBDA`] when several nodes join at once: 0.5 and 1.5 balance alike at rf 1
/// and 3, and 1.5 slightly better with racks as groups. 0.2 is much worse.
const LAMBDA_MANY: f64 = 1.5;
/// Weight of the `rf` share deviations (divided by `rf`, to compare like with like)
/// against the `rf = 1` deviations.
const W_RF: f64 = 1.0;
/// Fresh evaluations per token before the lazy greedy settles for the best seen.
/// 16 and 64 balance equally well in the tests.
/// Unbounded, one token could re-evaluate thousands of stale candidates.
const LAZY_BUDGET: usize = 16;

/// A token on the allocator's doubly linked ring; its range is `(prev.pos, pos]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tok {
    pub(super) pos: Token,
    pub(super) owner: usize,
    pub(super) prev: usize,
    pub(super) next: usize,
    /// Current `rf` span of this token, as a fraction of the ring (cached).
    pub(super) span: f64,
}

/// A queued candidate: splitting the range of `tok` improves the score by `gain`.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    gain: f64,
    tok: usize,
}

// The queue compares candidates on every sift step: inlined, a comparison is a few
// instructions instead of a call (it was 15% of a wave's allocation).
impl PartialEq for Candidate {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    #[inline]
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        // Ties go to the lower index, so the choice does not depend on heap internals.
        self.gain
            .total_cmp(&other.gain)
            .then_with(|| other.tok.cmp(&self.tok))
    }
}

/// Children per node of the candidate queue's heap: with four, a pop sifts down
/// half as many levels, and the four children share a cache line or two.
const ARITY: usize = 4;

/// The candidate queue: a max-heap ([`ARITY`]-ary) holding at most one candidate per token,
/// indexed by token so that re-queueing a token replaces its candidate in place and
/// a token can be dropped from it.
///
/// It replaces a `BinaryHeap` with a version per token, where re-queueing pushed a
/// second entry and left the first to be skipped when popped: in a large wave those
/// stale entries outnumbered the live ones several times over, and every pop sifted
/// through them. The live candidates come out in the same order: `Candidate`'s order
/// is total and a token has at most one live candidate, so which one is the greatest
/// depends only on the set of them, not on how a heap holds them.
#[derive(Default)]
struct Queue {
    heap: Vec<Candidate>,
    /// Where each token's candidate is in `heap`, or `NIL`.
    at: Vec<usize>,
}

impl Queue {
    fn clear(&mut self) {
        for c in &self.heap {
            if let Some(a) = self.at.get_mut(c.tok) {
                *a = NIL;
            }
        }
        self.heap.clear();
    }

    fn peek(&self) -> Option<&Candidate> {
        self.heap.first()
    }

    /// Queues `c`, replacing the token's candidate if it has one.
    fn set(&mut self, c: Candidate) {
        if self.at.len() <= c.tok {
            self.at.resize(c.tok + 1, NIL);
        }
        match self
            .heap
            .get_mut(self.at.get(c.tok).copied().unwrap_or(NIL))
        {
            Some(slot) => {
                let (old, k) = (*slot, self.at.get(c.tok).copied().unwrap_or(NIL));
                *slot = c;
                if c > old {
                    self.up(k);
                } else {
                    self.down(k);
                }
            }
            None => {
                self.heap.push(c);
                self.up(self.heap.len() - 1);
            }
        }
    }

    /// Drops the candidate of `tok`, if queued.
    fn remove(&mut self, tok: usize) {
        let Some(a) = self.at.get_mut(tok) else {
            return;
        };
        let k = core::mem::replace(a, NIL);
        if k >= self.heap.len() {
            return;
        }
        let Some(last) = self.heap.pop() else {
            return;
        };
        if k < self.heap.len() {
            // The last candidate fills the hole, then moves whichever way it must.
            if let Some(slot) = self.heap.get_mut(k) {
                *slot = last;
            }
            if let Some(a) = self.at.get_mut(last.tok) {
                *a = k;
            }
            self.up(k);
            self.down(k);
        }
    }

    fn pop(&mut self) -> Option<Candidate> {
        let top = *self.heap.first()?;
        self.remove(top.tok);
        Some(top)
    }

    /// Places `heap[k]` right by moving it towards the root.
    fn up(&mut self, mut k: usize) {
        let Some(&c) = self.heap.get(k) else {
            return;
        };
        while k > 0 {
            let parent = (k - 1) / ARITY;
            let Some(&p) = self.heap.get(parent) else {
                break;
            };
            if c <= p {
                break;
            }
            self.put(k, p);
            k = parent;
        }
        self.put(k, c);
    }

    /// Places `heap[k]` right by moving it towards the leaves.
    fn down(&mut self, mut k: usize) {
        let Some(&c) = self.heap.get(k) else {
            return;
        };
        loop {
            let first = ARITY * k + 1;
            let Some(&l) = self.heap.get(first) else {
                break;
            };
            let (mut child, mut big) = (first, l);
            for j in first + 1..first + ARITY {
                match self.heap.get(j) {
                    Some(&r) if r > big => (child, big) = (j, r),
                    Some(_) => {}
                    None => break,
                }
            }
            if c >= big {
                break;
            }
            self.put(k, big);
            k = child;
        }
        self.put(k, c);
    }

    fn put(&mut self, k: usize, c: Candidate) {
        if let Some(slot) = self.heap.get_mut(k) {
            *slot = c;
        }
        if let Some(a) = self.at.get_mut(c.tok) {
            *a = k;
        }
    }
}

/// A provisional token of `joiner` at `base`, between `p` and `i` (`p` is `i`'s
/// predecessor), under the index `v` no token has yet.
struct Provisional {
    v: usize,
    i: usize,
    p: usize,
    base: Token,
    joiner: usize,
}

/// An owner's share change as an affine function of the split offset `x`.
#[derive(Clone, Copy, Debug)]
struct Delta {
    owner: usize,
    constant: f64,
    slope: f64,
}

pub(super) struct Allocator {
    pub(super) toks: Vec<Tok>,
    /// `rf = 1` share per owner; the joining nodes are `first_new..`.
    pub(super) load1: Vec<f64>,
    /// `rf` share per owner.
    pub(super) load_rf: Vec<f64>,
    rf: usize,
    /// Owner id of the first joiner (the ring's node count).
    pub(super) first_new: usize,
    /// Tokens placed so far by each joiner.
    pub(super) placed: Vec<usize>,
    /// The joiners (indices into `placed`) allocating now; those before are done,
    /// those after not yet admitted (see [`Allocator::allocate`]).
    batch: (usize, usize),
    /// Indices in `toks` of each joiner's tokens, when there are several joiners.
    mine: Vec<Vec<usize>>,
    /// The replication group of each owner (its rack), or empty when every owner is
    /// its own group: replicas go to the first `rf` distinct groups clockwise.
    groups: Vec<usize>,
    /// Weight of range evenness: [`LAMBDA`] or [`LAMBDA_MANY`].
    lambda: f64,
    /// Scratch buffers reused across evaluations.
    seen: Vec<usize>,
    window: Vec<usize>,
    deltas: Vec<Delta>,
    /// The candidate queue of the batch (see [`Allocator::queue`]).
    queue: Queue,
    /// Scratch buffers reused across turns (see [`Allocator::turn`]).
    held: Vec<Candidate>,
    own: Vec<Candidate>,
    around: Vec<usize>,
}

impl Allocator {
    pub(super) fn new<N>(ring: &Ring<N>, rf: usize, joiners: usize, groups: Vec<usize>) -> Self {
        let len = ring.len();
        let toks = ring
            .owned_tokens()
            .enumerate()
            .map(|(i, (pos, owner))| Tok {
                pos,
                owner,
                prev: (i + len - 1) % len,
                next: (i + 1) % len,
                span: 0.0,
            })
            .collect();
        let mut load1: Vec<f64> = ring.loads(1).into_iter().map(frac).collect();
        load1.resize(ring.nodes() + joiners, 0.0);
        let mut a = Allocator {
            toks,
            load_rf: alloc::vec![0.0; load1.len()],
            load1,
            rf,
            first_new: ring.nodes(),
            placed: alloc::vec![0; joiners],
            batch: (0, joiners.min(1)),
            mine: alloc::vec![Vec::new(); if joiners > 1 { joiners } else { 0 }],
            groups,
            lambda: if joiners > 1 { LAMBDA_MANY } else { LAMBDA },
            seen: Vec::new(),
            window: Vec::new(),
            deltas: Vec::new(),
            queue: Queue::default(),
            held: Vec::new(),
            own: Vec::new(),
            around: Vec::new(),
        };
        if rf > 1 {
            // A node's `rf` share is the sum of its tokens' spans (see `Ring::loads`).
            for q in 0..a.toks.len() {
                let span = a.span(q);
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

    /// The replication group of `owner`.
    fn group(&self, owner: usize) -> usize {
        self.groups.get(owner).copied().unwrap_or(owner)
    }

    fn tok(&self, i: usize) -> Tok {
        self.toks.get(i).copied().unwrap_or(Tok {
            pos: 0,
            owner: NIL,
            prev: NIL,
            next: NIL,
            span: 0.0,
        })
    }

    /// Where the `rf` span of token `q` starts: walking back, the first token of the
    /// same owner, or the token whose owner is the `rf`-th distinct other owner.
    /// Returns `q` itself when the walk comes all the way round.
    fn span_start(&mut self, q: usize) -> usize {
        let own = self.group(self.tok(q).owner);
        self.seen.clear();
        let mut s = self.tok(q).prev;
        for _ in 0..self.toks.len() {
            if s == q || s == NIL {
                break;
            }
            let t = self.tok(s);
            let g = self.group(t.owner);
            if g == own {
                return s;
            }
            if !self.seen.contains(&g) {
                self.seen.push(g);
                if self.seen.len() >= self.rf {
                    return s;
                }
            }
            s = t.prev;
        }
        q
    }

    /// The `rf` span of `q`, as a fraction of the ring.
    fn span(&mut self, q: usize) -> f64 {
        let s = self.span_start(q);
        if s == q {
            return 1.0;
        }
        frac(u128::from(
            (self.tok(q).pos as u64).wrapping_sub(self.tok(s).pos as u64),
        ))
    }

    /// Fills `deltas` with how each owner's `rf` share changes if `joiner` puts a
    /// token `x` past the start of `i`'s range. Leaves the ring unchanged.
    fn structure(&mut self, i: usize, joiner: usize) {
        self.deltas.clear();
        // Tokens at and after `i` whose backward walk would meet the new token.
        self.window.clear();
        self.seen.clear();
        let mut q = i;
        for _ in 0..self.toks.len() {
            self.window.push(q);
            let o = self.group(self.tok(q).owner);
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
        // The spans with a provisional token `v` of `joiner` at `base`, between `p`
        // and `i`: measured by walking as if it were linked there, so that an
        // evaluation only reads the ring (it used to link and unlink a token each
        // time). The same walks as `span` on the linked ring, so the same spans.
        let v = self.toks.len();
        let provisional = Provisional {
            v,
            i,
            p,
            base,
            joiner,
        };
        for &q in &window {
            let (c, slope) = self.provisional_span(q, self.tok(q).owner, &provisional);
            self.add_delta(self.tok(q).owner, c, slope);
        }
        let (c, slope) = self.provisional_span(v, joiner, &provisional);
        self.add_delta(joiner, c, slope);
        self.window = window;
    }

    /// The span of `q` (owned by `owner`) as `constant + slope · x`, where `at`'s
    /// provisional token sits at `base + x`: [`Allocator::span`] on the ring with it
    /// linked in, which it is not: the walk steps from `i` to the provisional token
    /// and from that to `p`.
    fn provisional_span(&mut self, q: usize, owner: usize, at: &Provisional) -> (f64, f64) {
        let prev = |s: usize, toks: &[Tok]| {
            if s == at.i {
                at.v
            } else if s == at.v {
                at.p
            } else {
                toks.get(s).map_or(NIL, |t| t.prev)
            }
        };
        let own = self.group(owner);
        self.seen.clear();
        // The walk of `span_start`, over one token more than the ring holds.
        let mut start = q;
        let mut s = prev(q, &self.toks);
        for _ in 0..=self.toks.len() {
            if s == q || s == NIL {
                break;
            }
            let g = if s == at.v {
                self.group(at.joiner)
            } else {
                self.group(self.toks.get(s).map_or(NIL, |t| t.owner))
            };
            if g == own {
                start = s;
                break;
            }
            if !self.seen.contains(&g) {
                self.seen.push(g);
                if self.seen.len() >= self.rf {
                    start = s;
                    break;
                }
            }
            s = prev(s, &self.toks);
        }
        if start == q {
            return (1.0, 0.0);
        }
        let pos = |t: usize| {
            if t == at.v {
                at.base
            } else {
                self.toks.get(t).map_or(0, |t| t.pos)
            }
        };
        let c = frac(u128::from((pos(q) as u64).wrapping_sub(pos(start) as u64)));
        let slope = f64::from(u8::from(q == at.v)) - f64::from(u8::from(start == at.v));
        (c, slope)
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

    /// How many tokens `owner` has placed, if it is a joiner.
    fn placed_by(&self, owner: usize) -> Option<usize> {
        owner
            .checked_sub(self.first_new)
            .and_then(|k| self.placed.get(k).copied())
    }

    /// What `owner`'s share should be, given `mean` for a full node: a joiner's is in
    /// proportion to the tokens it has placed, of `count`.
    fn target(&self, owner: usize, mean: f64, count: usize) -> f64 {
        match self.placed_by(owner) {
            Some(p) => mean * p as f64 / count.max(1) as f64,
            None => mean,
        }
    }

    /// Best split offset (fraction of the ring) in `i`'s range for `joiner`'s next
    /// token, of `count`, and its score gain. `neutral` judges the joiner as if
    /// exactly on its pro-rata target before this token, whatever its actual share.
    pub(super) fn evaluate(
        &mut self,
        i: usize,
        joiner: usize,
        count: usize,
        full: bool,
        neutral: bool,
    ) -> Option<(f64, f64)> {
        let t = self.tok(i);
        if t.owner == joiner || t.owner == NIL {
            return None;
        }
        let placed = self.placed_by(joiner).unwrap_or(0);
        let size = clockwise(self.tok(t.prev).pos, t.pos);
        if size < 2 {
            return None;
        }
        let r = frac(size);
        let n_after = (self.first_new + self.batch.1) as f64;
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
        let x_dev = if neutral {
            -ideal
        } else {
            self.load1.get(joiner).copied().unwrap_or(0.0) - mean1 * progress
        };
        let o_dev =
            self.load1.get(t.owner).copied().unwrap_or(0.0) - self.target(t.owner, mean1, count);
        term(1.0, o_dev, 0.0, -1.0);
        term(1.0, x_dev, 0.0, 1.0);
        if self.rf > 1 && full {
            self.structure(i, joiner);
            let w = W_RF / (self.rf * self.rf) as f64;
            for d in &self.deltas {
                let dev = if d.owner != joiner {
                    self.load_rf.get(d.owner).copied().unwrap_or(0.0)
                        - self.target(d.owner, mean_rf, count)
                } else if neutral {
                    -mean_rf / count.max(1) as f64
                } else {
                    self.load_rf.get(d.owner).copied().unwrap_or(0.0) - mean_rf * progress
                };
                term(w, dev, d.constant, d.slope);
            }
        }
        // Range evenness: λ[(x−τ)² + (r−x−τ)² − (r−τ)²] = λ(2x² − 2rx + τ²).
        a += 2.0 * self.lambda;
        b -= self.lambda * r;
        c += self.lambda * ideal * ideal;
        let x = if a > 0.0 {
            (-b / a).clamp(0.0, r)
        } else {
            r / 2.0
        };
        let score = a * x * x + 2.0 * b * x + c;
        Some((-score, x))
    }

    /// (Re-)queues the range of `i`, evaluated for `joiner`, or drops it from the
    /// queue when it cannot be split.
    fn push(&mut self, i: usize, joiner: usize, count: usize, full: bool) {
        // With several joiners a queued gain must not depend on which joiner it was
        // computed for (one far over its target would bury the range): queue the
        // gain for an on-target joiner; the actual one re-evaluates when popping.
        let neutral = self.placed.len() > 1;
        match self.evaluate(i, joiner, count, full, neutral) {
            Some((gain, _)) => self.queue.set(Candidate { gain, tok: i }),
            None => self.queue.remove(i),
        }
    }

    /// `count` tokens for each joiner, the joiners of a batch taking turns token by
    /// token.
    ///
    /// Joiners are admitted in batches of a quarter of the ring's node count so far
    /// ([`BATCH_DIV`]), and the means the shares are judged against are those of the
    /// nodes admitted so far. Judged against the final mean from the start, a
    /// thousand joiners onto one node begin so far from balance that they carve out
    /// clusters of adjacent oversized ranges, which the `rf` term then forbids
    /// anyone to split: splitting one would hand the new token a huge `rf` span.
    /// One joiner is a single batch, exactly the single-joiner allocation.
    /// Allocates `count` tokens to each joiner, batch by batch, and stops after the
    /// batch that holds joiner `last`: a batch's tokens depend only on the batches
    /// before it, so joiner `last` gets the tokens a full allocation gives it, and
    /// the joiners of later batches get none.
    pub(super) fn allocate(
        mut self,
        count: usize,
        last: usize,
        rng: &mut impl rand_core::RngCore,
    ) -> Vec<Vec<Token>> {
        let joiners = self.placed.len();
        let mut out = alloc::vec![Vec::with_capacity(count.min(1 << 16)); joiners];
        let mut lo = 0;
        while lo < joiners && lo <= last {
            let hi = lo + ((self.first_new + lo) / BATCH_DIV).clamp(1, joiners - lo);
            self.batch = (lo, hi);
            self.requeue(count);
            for _ in 0..count {
                for k in lo..hi {
                    if let Some(token) = self.turn(self.first_new + k, count, rng) {
                        if let Some(tokens) = out.get_mut(k) {
                            tokens.push(token);
                        }
                    }
                }
            }
            lo = hi;
        }
        for tokens in &mut out {
            tokens.sort_unstable();
        }
        out
    }

    /// Refills the candidate queue for the batch's first joiner.
    fn requeue(&mut self, count: usize) {
        let first = self.first_new + self.batch.0;
        let size = self.batch.1 - self.batch.0;
        // Screen every range with the cheap `rf = 1` score and queue only the best
        // quarter for full evaluation: the rest would rarely win, and the full score
        // is what dominates the cost.
        let mut screened: Vec<(f64, usize)> = (0..self.toks.len())
            .filter_map(|i| {
                self.evaluate(i, first, count, false, false)
                    .map(|(g, _)| (g, i))
            })
            .collect();
        let keep = (self.toks.len() / 4).max(count.saturating_mul(size).saturating_mul(8));
        if screened.len() > keep {
            screened.select_nth_unstable_by(keep, |a, b| b.0.total_cmp(&a.0));
            screened.truncate(keep);
        }
        self.queue.clear();
        for (_, i) in screened {
            self.push(i, first, count, true);
        }
    }

    /// Places one token for `joiner`, or none when no range can be split.
    fn turn(
        &mut self,
        joiner: usize,
        count: usize,
        rng: &mut impl rand_core::RngCore,
    ) -> Option<Token> {
        let (lo, hi) = self.batch;
        let size = hi - lo;
        loop {
            // Lazy greedy: queued gains may be stale. Re-evaluate from the top until the
            // best fresh gain beats every stale one left, or `LAZY_BUDGET` were tried.
            let mut best: Option<(Candidate, f64)> = None;
            let mut held = core::mem::take(&mut self.held);
            held.clear();
            // The joiner's own ranges, queued for the others: set aside, not dropped.
            let mut own = core::mem::take(&mut self.own);
            own.clear();
            while held.len() < LAZY_BUDGET {
                let settled = best.is_some_and(|(b, _)| {
                    self.queue.peek().is_some_and(|next| b.gain >= next.gain)
                });
                if settled {
                    break;
                }
                let Some(top) = self.queue.pop() else {
                    break;
                };
                if self.tok(top.tok).owner == joiner {
                    own.push(top);
                    continue;
                }
                let Some((gain, x)) = self.evaluate(top.tok, joiner, count, true, false) else {
                    continue;
                };
                let fresh = Candidate { gain, ..top };
                held.push(fresh);
                if best.is_none_or(|(b, _)| fresh > b) {
                    best = Some((fresh, x));
                }
            }
            for c in own.drain(..) {
                self.queue.set(c);
            }
            self.own = own;
            let Some((chosen, x)) = best else {
                self.held = held;
                return None;
            };
            for c in held.drain(..).filter(|c| c.tok != chosen.tok) {
                self.queue.set(c);
            }
            self.held = held;
            let i = chosen.tok;
            if let Some(token) = self.split(i, joiner, x, rng) {
                if let Some(p) = joiner
                    .checked_sub(self.first_new)
                    .and_then(|k| self.placed.get_mut(k))
                {
                    *p += 1;
                }
                // Re-queue the ranges whose evaluation the new token changed, for the
                // joiner whose turn is next (or the one after, for that one's own).
                let k = joiner - self.first_new - lo;
                let next = self.first_new + lo + (k + 1) % size;
                let after = self.first_new + lo + (k + 2) % size;
                let v = self.toks.len() - 1;
                let mut around = core::mem::take(&mut self.around);
                around.clear();
                let (mut back, mut fwd) = (v, v);
                for _ in 0..=self.rf {
                    back = self.tok(back).prev;
                    fwd = self.tok(fwd).next;
                    around.push(back);
                    around.push(fwd);
                }
                if let Some(mine) = self.mine.get_mut(joiner - self.first_new) {
                    // The joiner's share grew, so splitting any of its ranges (its new
                    // one included) may now gain more than queued: queued gains must
                    // stay upper bounds for the lazy greedy, so requeue them all.
                    mine.push(v);
                    around.extend_from_slice(mine);
                }
                around.sort_unstable();
                around.dedup();
                for &j in &around {
                    let who = if self.tok(j).owner == next && size > 1 {
                        after
                    } else {
                        next
                    };
                    self.push(j, who, count, true);
                }
                self.around = around;
                return Some(token);
            }
            // Unsplittable after all: popped and not queued again, so out of the queue.
        }
    }

    /// Puts `joiner`'s token about `x` into `i`'s range and updates shares.
    pub(super) fn split(
        &mut self,
        i: usize,
        joiner: usize,
        x: f64,
        rng: &mut impl rand_core::RngCore,
    ) -> Option<Token> {
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
            self.structure(i, joiner);
            for d in &self.deltas {
                if let Some(l) = self.load_rf.get_mut(d.owner) {
                    *l += d.constant + d.slope * x;
                }
            }
        }
        if let Some(l) = self.load1.get_mut(t.owner) {
            *l -= x;
        }
        if let Some(l) = self.load1.get_mut(joiner) {
            *l += x;
        }
        let v = self.toks.len();
        self.toks.push(Tok {
            pos: token,
            owner: joiner,
            prev: t.prev,
            next: i,
            span: 0.0,
        });
        self.link(v);
        if self.rf > 1 {
            // `structure` left the affected tokens in `window`; refresh their spans.
            let window = core::mem::take(&mut self.window);
            for &q in window.iter().chain(core::iter::once(&v)) {
                let span = self.span(q);
                if let Some(t) = self.toks.get_mut(q) {
                    t.span = span;
                }
            }
            self.window = window;
        }
        Some(token)
    }
}
