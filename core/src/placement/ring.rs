//! The token ring: replica placement over the tokens each node claims.
//!
//! Each node claims a handful of tokens; a key belongs to the node holding the first
//! token at or after the key's token, walking clockwise, and its further replicas are
//! the next distinct nodes on the walk.
//!
//! Nodes may carry a [`Location`] (datacenter and rack): with
//! [`Replication::PerDatacenter`] the replicas follow Cassandra's
//! `NetworkTopologyStrategy`, a replica count per datacenter spread over distinct
//! racks first ([`Ring::replicas_for`]).
//!
//! Everything here is a pure function of its inputs: every node that sees the same
//! claims builds the same [`Ring`], and the same [`Ring::digest`].

use alloc::string::String;
use alloc::vec::Vec;
use core::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use super::murmur::token_for;
use crate::hash::StableHasher;

/// Where a node sits: its datacenter and its rack within it, as Cassandra's snitch
/// reports them. Racks are named per datacenter: `rack1` in `dc1` and `rack1` in
/// `dc2` are different racks.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Location {
    /// The datacenter's name.
    pub datacenter: String,
    /// The rack's name, within the datacenter.
    pub rack: String,
}

/// The default location, by reference: the fallback where an index finds no location
/// (never, as the tables are built), instead of a panic.
pub(super) static NOWHERE: Location = Location {
    datacenter: String::new(),
    rack: String::new(),
};

impl Default for Location {
    /// `dc1` / `rack1`, Cassandra's defaults, where every node of a [`Ring::new`] sits.
    fn default() -> Self {
        Location {
            datacenter: String::from(DEFAULT_DC),
            rack: String::from(DEFAULT_RACK),
        }
    }
}

const DEFAULT_DC: &str = "dc1";
const DEFAULT_RACK: &str = "rack1";

impl Location {
    /// The location `datacenter` / `rack`.
    pub fn new(datacenter: impl Into<String>, rack: impl Into<String>) -> Self {
        Location {
            datacenter: datacenter.into(),
            rack: rack.into(),
        }
    }

    fn is_default(&self) -> bool {
        self.datacenter == DEFAULT_DC && self.rack == DEFAULT_RACK
    }
}

/// How many replicas a key has, and where: Cassandra's `SimpleStrategy` or
/// `NetworkTopologyStrategy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Replication {
    /// `rf` distinct nodes clockwise from the key's token, locations ignored: the
    /// same as [`Ring::replicas`].
    Simple(usize),
    /// A replica count per datacenter, spread over that datacenter's racks (see
    /// [`Ring::replicas_for`]). A datacenter with no node on the ring gets no
    /// replica; one listed twice takes its last count, as in a map.
    PerDatacenter(Vec<(String, usize)>),
}

impl Replication {
    /// The number of replicas asked for, summed over datacenters (a datacenter
    /// listed twice counted once, with its last count). A ring with fewer nodes
    /// than asked for returns fewer.
    pub fn total(&self) -> usize {
        match self {
            Replication::Simple(rf) => *rf,
            Replication::PerDatacenter(dcs) => dcs
                .iter()
                .enumerate()
                .filter(|&(i, (dc, _))| dcs.iter().skip(i + 1).all(|(later, _)| later != dc))
                .map(|(_, (_, rf))| *rf)
                .sum(),
        }
    }

    /// The replica count of datacenter `dc`: its last entry, or 0 if unlisted
    /// (any datacenter's is `rf` under [`Replication::Simple`]).
    pub(super) fn count_in(&self, dc: &str) -> usize {
        match self {
            Replication::Simple(rf) => *rf,
            Replication::PerDatacenter(dcs) => dcs
                .iter()
                .rev()
                .find(|(d, _)| d == dc)
                .map_or(0, |(_, rf)| *rf),
        }
    }
}

/// The topology derived from the owners' locations, as small integers for the
/// replica walk: built once per ring. An owner's rack is its place (the index of
/// its location among the ring's distinct locations, sorted: see `Ring::place_of`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Topology {
    /// Distinct datacenter names, sorted.
    dcs: Vec<String>,
    /// Per owner id, the index of its datacenter in `dcs`.
    dc_of: Vec<u32>,
    /// Per datacenter, how many distinct racks and owners it has.
    racks_in: Vec<usize>,
    nodes_in: Vec<usize>,
    /// Number of distinct `(dc, rack)` pairs.
    racks: usize,
}

impl Topology {
    /// From the distinct locations (sorted) and each owner's index among them.
    fn new(places: &[Location], place_of: &[u32]) -> Self {
        let mut dcs: Vec<String> = Vec::new();
        let mut racks_in: Vec<usize> = Vec::new();
        let mut dc_of_place = Vec::with_capacity(places.len());
        for l in places {
            if dcs.last() != Some(&l.datacenter) {
                dcs.push(l.datacenter.clone());
                racks_in.push(0);
            }
            if let Some(r) = racks_in.last_mut() {
                *r += 1;
            }
            dc_of_place.push(dcs.len().saturating_sub(1) as u32);
        }
        let mut nodes_in = alloc::vec![0; dcs.len()];
        let dc_of: Vec<u32> = place_of
            .iter()
            .map(|&p| dc_of_place.get(p as usize).copied().unwrap_or(0))
            .collect();
        for &dc in &dc_of {
            if let Some(n) = nodes_in.get_mut(dc as usize) {
                *n += 1;
            }
        }
        Topology {
            dcs,
            dc_of,
            racks_in,
            nodes_in,
            racks: places.len(),
        }
    }
}

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
    // Converting a u128 to f64 is a software routine; below 2^64 (all but the whole
    // ring) the u64 conversion is the same correctly rounded value, in hardware.
    let float = match u64::try_from(units) {
        Ok(u) => u as f64,
        Err(_) => units as f64,
    };
    float / SPACE as f64
}

/// The consistent-hashing ring every node builds from the same membership.
///
/// Entries are kept sorted by token, with one owner per token. When two nodes claim
/// the same token, the smaller node (by `Ord`) keeps it and the other simply has one
/// token fewer; this rule looks only at the claims, not at their order, so every node
/// resolves the conflict the same way without talking to anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring<N> {
    /// The tokens, sorted, unique (an entry is a token and its owner id).
    tokens: Vec<Token>,
    /// For each entry, the index of its owner among the distinct owners sorted by
    /// `Ord`: the replica walk and the shares compare small integers instead of `N`.
    ids: Vec<u32>,
    /// The distinct owners sorted by `Ord`, each once (not once per token): the owner
    /// id is the index here.
    owners: Vec<N>,
    /// Number of distinct owners.
    nodes: usize,
    /// The owners' distinct locations, sorted (a cluster has a few: each is held
    /// once, not once per owner).
    places: Vec<Location>,
    /// Per owner id, the index of its location in `places`.
    place_of: Vec<u32>,
    topology: Topology,
}

impl<N> Default for Ring<N> {
    fn default() -> Self {
        Ring {
            tokens: Vec::new(),
            ids: Vec::new(),
            owners: Vec::new(),
            nodes: 0,
            places: Vec::new(),
            place_of: Vec::new(),
            topology: Topology::default(),
        }
    }
}

impl<N: Clone + Ord> Ring<N> {
    /// Builds the ring from each node's claimed tokens.
    ///
    /// The result depends only on the set of `(node, token)` claims: the input order,
    /// repeated entries for one node and repeated tokens do not matter. A node whose
    /// every token is taken by smaller nodes, or which claims none, is not in the ring.
    ///
    /// Every node sits at the default [`Location`]; see [`Ring::new_located`].
    pub fn new(entries: impl IntoIterator<Item = (N, Vec<Token>)>) -> Ring<N> {
        Ring::build(
            entries
                .into_iter()
                .map(|(node, tokens)| (node, tokens, None)),
        )
    }

    /// Builds the ring from each node's claimed tokens and its location.
    ///
    /// Tokens are resolved exactly as by [`Ring::new`]. A node given different
    /// locations in different entries sits at the smallest of them (by `Ord`), so the
    /// result still depends only on the set of entries, not on their order.
    pub fn new_located(entries: impl IntoIterator<Item = (N, Vec<Token>, Location)>) -> Ring<N> {
        Ring::build(
            entries
                .into_iter()
                .map(|(node, tokens, location)| (node, tokens, Some(location))),
        )
    }

    fn build(entries: impl IntoIterator<Item = (N, Vec<Token>, Option<Location>)>) -> Ring<N> {
        let mut claims: Vec<(Token, N)> = Vec::new();
        let mut located: Vec<(N, Location)> = Vec::new();
        for (node, tokens, location) in entries {
            claims.extend(tokens.into_iter().map(|t| (t, node.clone())));
            if let Some(l) = location {
                located.push((node, l));
            }
        }
        // Sorting by (token, node) puts the smallest claimant first; dedup keeps it.
        claims.sort_unstable();
        claims.dedup_by(|later, first| later.0 == first.0);
        // Likewise the smallest location of each node comes first.
        located.sort_unstable();
        located.dedup_by(|later, first| later.0 == first.0);

        let mut owners: Vec<&N> = claims.iter().map(|(_, n)| n).collect();
        owners.sort_unstable();
        owners.dedup();
        let nodes = owners.len();
        let ids = claims
            .iter()
            .map(|(_, n)| owners.binary_search(&n).unwrap_or(0) as u32)
            .collect();
        let nowhere = Location::default();
        let location_of = |n: &N| {
            located
                .binary_search_by(|(m, _)| m.cmp(n))
                .ok()
                .and_then(|i| located.get(i))
                .map_or(&nowhere, |(_, l)| l)
        };
        let mut places: Vec<&Location> = owners.iter().map(|n| location_of(n)).collect();
        places.sort_unstable();
        places.dedup();
        let place_of: Vec<u32> = owners
            .iter()
            .map(|n| places.binary_search(&location_of(n)).unwrap_or(0) as u32)
            .collect();
        let places: Vec<Location> = places.into_iter().cloned().collect();
        let topology = Topology::new(&places, &place_of);
        let owners = owners.into_iter().cloned().collect();
        Ring {
            // Collected from a borrow: collecting `claims.into_iter()` in place would keep
            // its buffer, sized for a token and an owner per entry.
            tokens: claims.iter().map(|(t, _)| *t).collect(),
            ids,
            owners,
            nodes,
            places,
            place_of,
            topology,
        }
    }

    /// The owner id of `node`, if it holds a token.
    fn id_of(&self, node: &N) -> Option<usize> {
        // Owner ids are ranks by `Ord`.
        self.owners.binary_search(node).ok()
    }

    /// Where `node` sits, if it holds a token on the ring.
    pub fn location(&self, node: &N) -> Option<&Location> {
        self.id_of(node).and_then(|id| self.location_at(id))
    }

    /// The location of owner `id`.
    fn location_at(&self, id: usize) -> Option<&Location> {
        let place = self.place_of.get(id)?;
        self.places.get(*place as usize)
    }

    /// The sub-ring of the nodes in datacenter `dc`, with their tokens and
    /// locations: what a per-datacenter allocation balances against. Empty when no
    /// node of the ring is in `dc`.
    pub fn in_datacenter(&self, dc: &str) -> Ring<N> {
        let mut tokens: Vec<Vec<Token>> = alloc::vec![Vec::new(); self.nodes];
        for (&t, &id) in self.tokens.iter().zip(&self.ids) {
            let id = id as usize;
            if self.location_at(id).is_some_and(|l| l.datacenter == dc) {
                if let Some(v) = tokens.get_mut(id) {
                    v.push(t);
                }
            }
        }
        Ring::new_located(
            tokens
                .into_iter()
                .zip(&self.owners)
                .zip(self.owner_locations())
                .filter(|((t, _), _)| !t.is_empty())
                .map(|((t, n), l)| (n.clone(), t, l.clone())),
        )
    }
}

impl<N> Ring<N> {
    /// Number of tokens on the ring (after duplicate claims were resolved).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when no node holds a token: every key then has no replica.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of distinct nodes holding at least one token.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The `(token, owner)` pairs in ring order, the same list [`Ring::digest`] covers.
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = (Token, &N)> + DoubleEndedIterator {
        // Every id indexes `owners` (built so), as every entry held its owner.
        self.tokens
            .iter()
            .zip(&self.ids)
            .map(|(t, &id)| (*t, &self.owners[id as usize]))
    }

    /// The owner of entry `i`.
    fn owner_at(&self, i: usize) -> Option<&N> {
        self.ids.get(i).and_then(|&id| self.owners.get(id as usize))
    }

    /// Each token with the index of its owner among the distinct owners (sorted by
    /// `Ord`), in ring order: what the allocator works on.
    pub(super) fn owned_tokens(&self) -> impl Iterator<Item = (Token, usize)> + '_ {
        self.tokens
            .iter()
            .zip(&self.ids)
            .map(|(&t, &id)| (t, id as usize))
    }

    /// Each owner's location, by owner id (see [`Ring::owned_tokens`]).
    pub(super) fn owner_locations(&self) -> impl Iterator<Item = &Location> + '_ {
        let nowhere = &NOWHERE;
        self.place_of
            .iter()
            .map(move |&p| self.places.get(p as usize).unwrap_or(nowhere))
    }

    /// Index of the first entry at or after `token`, wrapping past the end to 0.
    fn successor(&self, token: Token) -> usize {
        let i = self.tokens.partition_point(|t| *t < token);
        if i == self.tokens.len() { 0 } else { i }
    }

    /// The node holding the first token at or after `token`: the primary replica.
    pub fn owner(&self, token: Token) -> Option<&N> {
        self.owner_at(self.successor(token))
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
        let len = self.tokens.len();
        let mut seen: Vec<usize> = Vec::with_capacity(want);
        for step in 0..len {
            let i = (start + step) % len;
            let id = self.ids.get(i).map_or(usize::MAX, |&id| id as usize);
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
        idx.into_iter().filter_map(|i| self.owner_at(i)).collect()
    }

    /// The replicas of a key's bytes, hashed with [`token_for`].
    pub fn replicas_for_key(&self, key: &[u8], rf: usize) -> Vec<&N> {
        self.replicas(token_for(key), rf)
    }

    /// The natural replicas of `token` under `replication`, in the order they were
    /// chosen walking clockwise from `token`: the first is the first node chosen
    /// after the token.
    ///
    /// [`Replication::Simple`] is exactly [`Ring::replicas`]. With
    /// [`Replication::PerDatacenter`] each datacenter gets `min(count, its nodes)`
    /// replicas by Cassandra's `NetworkTopologyStrategy` rule: walking clockwise,
    /// a node of that datacenter is taken if its rack has no replica yet; a node
    /// of an already used rack is set aside, in walk order, until every rack of the
    /// datacenter present on the ring has a replica, at which point the set-aside
    /// nodes are taken first (up to the count) and then any node met afterwards.
    /// (Cassandra 4.0 reorders the same choice: it yields the same set of replicas.)
    pub fn replicas_for(&self, token: Token, replication: &Replication) -> Vec<&N> {
        let mut idx = Vec::new();
        match replication {
            Replication::Simple(rf) => self.replica_entries(token, *rf, &mut idx),
            Replication::PerDatacenter(_) => {
                self.located_replica_entries(token, replication, &mut idx);
            }
        }
        idx.into_iter().filter_map(|i| self.owner_at(i)).collect()
    }

    /// Indices into `entries` of the `PerDatacenter` replicas of `token`, in the
    /// order chosen (see [`Ring::replicas_for`]).
    fn located_replica_entries(
        &self,
        token: Token,
        replication: &Replication,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        let topo = &self.topology;
        // How many replicas each datacenter still needs.
        let mut need: Vec<usize> = topo
            .dcs
            .iter()
            .zip(&topo.nodes_in)
            .map(|(dc, &n)| replication.count_in(dc).min(n))
            .collect();
        let total: usize = need.iter().sum();
        if total == 0 {
            return;
        }
        let mut rack_used = alloc::vec![false; topo.racks];
        let mut racks_left: Vec<usize> = topo.racks_in.clone();
        // Nodes met in an already used rack: (datacenter, entry index), walk order.
        let mut skipped: Vec<(usize, usize)> = Vec::new();
        let start = self.successor(token);
        let len = self.tokens.len();
        let id_at = |i: usize| self.ids.get(i).map_or(usize::MAX, |&id| id as usize);
        let mut take = |i: usize, dc: usize, out: &mut Vec<usize>| {
            let id = id_at(i);
            let fresh = need.get(dc).is_some_and(|&n| n > 0) && out.iter().all(|&j| id_at(j) != id);
            if fresh {
                out.push(i);
                if let Some(n) = need.get_mut(dc) {
                    *n -= 1;
                }
            }
            fresh
        };
        for step in 0..len {
            let i = (start + step) % len;
            let id = id_at(i);
            let dc = topo.dc_of.get(id).map_or(0, |&d| d as usize);
            let rl = racks_left.get(dc).copied().unwrap_or(0);
            if rl == 0 {
                take(i, dc, out);
            } else {
                let rack = self.place_of.get(id).map_or(0, |&p| p as usize);
                match rack_used.get(rack) {
                    Some(true) => skipped.push((dc, i)),
                    Some(false) if take(i, dc, out) => {
                        if let Some(used) = rack_used.get_mut(rack) {
                            *used = true;
                        }
                        if let Some(r) = racks_left.get_mut(dc) {
                            *r -= 1;
                        }
                        if rl == 1 {
                            // Every rack is used: take the set-aside nodes now.
                            for &(d, j) in skipped.iter().filter(|(d, _)| *d == dc) {
                                take(j, d, out);
                            }
                            skipped.retain(|&(d, _)| d != dc);
                        }
                    }
                    _ => {}
                }
            }
            if out.len() == total {
                break;
            }
        }
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
        let len = self.tokens.len();
        let mut seen: Vec<u32> = Vec::with_capacity(rf.min(self.nodes));
        for (q, (&own, &end)) in self.ids.iter().zip(&self.tokens).enumerate() {
            seen.clear();
            let mut span = SPACE;
            for back in 1..len {
                let s = (q + len - back) % len;
                let (Some(&o), Some(&start)) = (self.ids.get(s), self.tokens.get(s)) else {
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
            if let Some(l) = loads.get_mut(own as usize) {
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

    /// [`Ring::max_over_mean`] under any [`Replication`]: for
    /// [`Replication::PerDatacenter`], each datacenter's nodes are compared with
    /// their own mean (the datacenter's replicas over its nodes) and the worst
    /// datacenter is returned.
    ///
    /// Computed by walking every range's replicas: O(T · walk), meant for tests and
    /// tools, not for a hot path. 1.0 when there is nothing to balance.
    pub fn max_over_mean_for(&self, replication: &Replication) -> f64 {
        let Replication::PerDatacenter(_) = replication else {
            return self.max_over_mean(replication.total());
        };
        let mut loads = alloc::vec![0u128; self.nodes];
        let mut idx = Vec::new();
        let len = self.tokens.len();
        for i in 0..len {
            let (Some(&start), Some(&end)) =
                (self.tokens.get((i + len - 1) % len), self.tokens.get(i))
            else {
                continue;
            };
            self.located_replica_entries(end, replication, &mut idx);
            for &j in &idx {
                if let Some(l) = self.ids.get(j).and_then(|&id| loads.get_mut(id as usize)) {
                    *l += clockwise(start, end);
                }
            }
        }
        let topo = &self.topology;
        let mut worst = 1.0f64;
        for dc in 0..topo.dcs.len() {
            let in_dc = || {
                loads
                    .iter()
                    .zip(&topo.dc_of)
                    .filter(move |&(_, &d)| d as usize == dc)
                    .map(|(&l, _)| l)
            };
            let total: u128 = in_dc().sum();
            let max = in_dc().max().unwrap_or(0);
            let n = topo.nodes_in.get(dc).copied().unwrap_or(0);
            if total > 0 {
                worst = worst.max((max as f64) * (n as f64) / (total as f64));
            }
        }
        worst
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
        // Owner ids are ranks in the sorted list of owners.
        self.owners
            .iter()
            .zip(self.loads(rf))
            .map(|(n, l)| (n.clone(), frac(l)))
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
    ///
    /// Locations other than the default are covered too (a ring of default
    /// locations, as [`Ring::new`] builds, digests as it did before locations).
    pub fn digest(&self) -> u64 {
        let mut h = StableHasher::default();
        h.write_u64(self.tokens.len() as u64);
        for (t, n) in self.tokens() {
            h.write_u64(t as u64);
            n.hash(&mut h);
        }
        for (id, l) in self.owner_locations().enumerate() {
            if !l.is_default() {
                h.write_u64(id as u64);
                h.write(l.datacenter.as_bytes());
                h.write_u8(0xff);
                h.write(l.rack.as_bytes());
                h.write_u8(0xff);
            }
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
            let (start, end) = (ring.tokens[(i + len - 1) % len], ring.tokens[i]);
            ring.replica_entries(end, rf, &mut idx);
            for &j in &idx {
                loads[ring.ids[j] as usize] += clockwise(start, end);
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
        fn simple_replication_is_replicas(claims in small_claims(), token in any::<i64>(), rf in 0usize..10) {
            let ring = Ring::new(claims);
            prop_assert_eq!(ring.replicas_for(token, &Replication::Simple(rf)), ring.replicas(token, rf));
            prop_assert_eq!(ring.max_over_mean_for(&Replication::Simple(rf)), ring.max_over_mean(rf));
            // One datacenter with one rack: the same walk.
            let per = Replication::PerDatacenter(vec![("dc1".into(), rf)]);
            prop_assert_eq!(ring.replicas_for(token, &per), ring.replicas(token, rf));
        }

        #[test]
        fn located_replicas_are_distinct_and_complete(
            claims in small_claims(),
            racks in prop::collection::vec((0u8..2, 0u8..3), 8),
            token in any::<i64>(),
            rf1 in 0usize..5,
            rf2 in 0usize..5,
        ) {
            let ring = Ring::new_located(claims.into_iter().map(|(n, t)| {
                let (dc, rack) = racks[usize::from(n)];
                (n, t, Location::new(alloc::format!("dc{dc}"), alloc::format!("r{rack}")))
            }));
            let rep = Replication::PerDatacenter(vec![("dc0".into(), rf1), ("dc1".into(), rf2)]);
            let reps = ring.replicas_for(token, &rep);
            for (dc, rf) in [("dc0", rf1), ("dc1", rf2)] {
                let sub = ring.in_datacenter(dc);
                let in_dc: Vec<_> = reps.iter().filter(|n| ring.location(n).unwrap().datacenter == dc).collect();
                prop_assert_eq!(in_dc.len(), rf.min(sub.nodes()));
                let mut distinct = in_dc.clone();
                distinct.sort();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), in_dc.len());
                // As many distinct racks as possible.
                let mut used: Vec<_> = in_dc.iter().map(|n| &ring.location(n).unwrap().rack).collect();
                used.sort();
                used.dedup();
                let mut all: Vec<_> = sub.tokens().map(|(_, n)| &sub.location(n).unwrap().rack).collect();
                all.sort();
                all.dedup();
                prop_assert_eq!(used.len(), rf.min(all.len()).min(in_dc.len()));
            }
            if let Some(first) = reps.first() {
                let first_dc = &ring.location(first).unwrap().datacenter;
                let wanted = |n: &&u8| { let d = &ring.location(n).unwrap().datacenter; (d == "dc0" && rf1 > 0) || (d == "dc1" && rf2 > 0) };
                // The first replica is the first node met of a datacenter that wants any.
                let met = ring.replicas(token, ring.nodes()).into_iter().find(wanted);
                prop_assert_eq!(Some(*first), met, "{}", first_dc);
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

        #[test]
        fn joint_allocation_never_collides(claims in small_claims(), joiners in 0usize..5, count in 0usize..12, seed in any::<u64>()) {
            let ring = Ring::new(claims);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let many = crate::placement::allocator::allocate_tokens_many(&ring, joiners, count, 3, &mut rng);
            prop_assert_eq!(many.len(), joiners);
            let mut all: Vec<Token> = ring.tokens().map(|(t, _)| t).collect();
            for tokens in &many {
                prop_assert!(tokens.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(!tokens.contains(&Token::MIN));
                all.extend(tokens);
            }
            let n = all.len();
            all.sort_unstable();
            all.dedup();
            prop_assert_eq!(all.len(), n);
        }
    }

    // ---------------------------------------------------------------- topology

    /// Nodes `dc{d}-r{r}-n{i}` for every datacenter, rack and index, 16 random
    /// tokens each, at their location.
    fn located_ring(dcs: &[&str], racks: usize, per_rack: usize, seed: u64) -> Ring<String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut entries = Vec::new();
        for dc in dcs {
            for r in 0..racks {
                for i in 0..per_rack {
                    let tokens = crate::placement::random_tokens(16, &mut rng);
                    let name = alloc::format!("{dc}-r{r}-n{i}");
                    entries.push((name, tokens, Location::new(*dc, alloc::format!("r{r}"))));
                }
            }
        }
        Ring::new_located(entries)
    }

    #[test]
    fn three_replicas_on_three_racks() {
        let ring = located_ring(&["dc1"], 3, 3, 1);
        let rep = Replication::PerDatacenter(vec![("dc1".into(), 3)]);
        assert_eq!(rep.total(), 3);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..10_000 {
            let token = rng.next_u64() as i64;
            let reps = ring.replicas_for(token, &rep);
            assert_eq!(reps.len(), 3);
            let mut racks: Vec<_> = reps
                .iter()
                .map(|n| &ring.location(n).unwrap().rack)
                .collect();
            racks.sort();
            racks.dedup();
            assert_eq!(racks.len(), 3, "token {token}: {reps:?}");
            // The first replica is the first node met: its rack is new by definition.
            assert_eq!(reps[0], ring.owner(token).unwrap());
        }
    }

    #[test]
    fn two_replicas_per_datacenter_on_distinct_racks() {
        let ring = located_ring(&["dc1", "dc2"], 2, 2, 3);
        let rep = Replication::PerDatacenter(vec![("dc1".into(), 2), ("dc2".into(), 2)]);
        assert_eq!(rep.total(), 4);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for _ in 0..10_000 {
            let token = rng.next_u64() as i64;
            let reps = ring.replicas_for(token, &rep);
            assert_eq!(reps.len(), 4);
            for dc in ["dc1", "dc2"] {
                let mut racks: Vec<_> = reps
                    .iter()
                    .map(|n| ring.location(n).unwrap())
                    .filter(|l| l.datacenter == dc)
                    .map(|l| &l.rack)
                    .collect();
                assert_eq!(racks.len(), 2, "token {token} {dc}: {reps:?}");
                racks.dedup();
                assert_eq!(racks.len(), 2, "token {token} {dc}: {reps:?}");
            }
        }
        let dc2 = ring.in_datacenter("dc2");
        assert_eq!(dc2.nodes(), 4);
        assert_eq!(dc2.len(), 64);
        assert!(
            dc2.tokens()
                .all(|(t, n)| ring.owner(t) == Some(n) && n.starts_with("dc2"))
        );
        assert_eq!(
            dc2.location(&"dc2-r1-n0".into()),
            Some(&Location::new("dc2", "r1"))
        );
        assert!(ring.in_datacenter("dc3").is_empty());
        // Both datacenters' nodes hold about half their datacenter's data twice over.
        let mom = ring.max_over_mean_for(&rep);
        assert!((1.0..2.0).contains(&mom), "{mom}");
    }

    /// Hand-made walks: racks first, set-aside nodes once every rack is used, in
    /// walk order; the count capped by the datacenter's nodes; unlisted datacenters
    /// get nothing.
    #[test]
    fn network_topology_walk() {
        let l = |dc: &str, r: &str| Location::new(dc, r);
        let ring = Ring::new_located([
            ("a", vec![10], l("dc1", "r1")),
            ("b", vec![20], l("dc1", "r1")),
            ("x", vec![25], l("dc2", "r1")),
            ("c", vec![30], l("dc1", "r1")),
            ("d", vec![40], l("dc1", "r2")),
            ("e", vec![50], l("dc1", "r3")),
        ]);
        let per = |v: &[(&str, usize)]| {
            Replication::PerDatacenter(v.iter().map(|(d, n)| ((*d).into(), *n)).collect())
        };
        // a (r1), skip b and c, d (r2), e (r3): all racks used, then b.
        assert_eq!(
            ring.replicas_for(0, &per(&[("dc1", 4)])),
            vec![&"a", &"d", &"e", &"b"]
        );
        assert_eq!(ring.replicas_for(0, &per(&[("dc1", 2)])), vec![&"a", &"d"]);
        // From 45: e (r3), a (r1), skip b and c, d (r2).
        assert_eq!(
            ring.replicas_for(45, &per(&[("dc1", 3)])),
            vec![&"e", &"a", &"d"]
        );
        // From 35 every rack is used by the third: b is then taken as met.
        assert_eq!(
            ring.replicas_for(35, &per(&[("dc1", 4), ("dc2", 1)])),
            vec![&"d", &"e", &"a", &"b", &"x"]
        );
        // From 0, x is chosen when met, b only once e completes dc1's racks.
        assert_eq!(
            ring.replicas_for(0, &per(&[("dc1", 4), ("dc2", 1)])),
            vec![&"a", &"x", &"d", &"e", &"b"]
        );
        assert_eq!(ring.replicas_for(0, &per(&[("dc1", 9)])).len(), 5);
        assert_eq!(
            ring.replicas_for(0, &per(&[("dc9", 3)])),
            Vec::<&&str>::new()
        );
        assert_eq!(ring.replicas_for(0, &per(&[("dc2", 3)])), vec![&"x"]);
        // The last count of a datacenter listed twice wins.
        assert_eq!(per(&[("dc1", 1), ("dc2", 1), ("dc1", 2)]).total(), 3);
        assert_eq!(
            ring.replicas_for(0, &per(&[("dc1", 1), ("dc1", 2)])).len(),
            2
        );
        assert_eq!(ring.location(&"x"), Some(&l("dc2", "r1")));
        assert_eq!(ring.location(&"zz"), None);
        // Locations count in equality and in the digest; default ones do not change it.
        let plain = Ring::new([("a", vec![1]), ("b", vec![2])]);
        let default = Ring::new_located([
            ("a", vec![1], Location::default()),
            ("b", vec![2], l("dc1", "rack1")),
        ]);
        assert_eq!(plain, default);
        assert_eq!(plain.digest(), default.digest());
        let moved = Ring::new_located([
            ("a", vec![1], l("dc1", "r2")),
            ("b", vec![2], Location::default()),
        ]);
        assert_ne!(plain, moved);
        assert_ne!(plain.digest(), moved.digest());
        // Two locations for one node: the smaller wins, whatever the order.
        let twice = Ring::new_located([
            ("a", vec![1], l("dc2", "r1")),
            ("a", vec![3], l("dc1", "r9")),
        ]);
        assert_eq!(twice.location(&"a"), Some(&l("dc1", "r9")));
    }

    #[test]
    fn digest_tracks_content() {
        let a = ring_of(&[("a", &[1, 2]), ("b", &[3])]);
        assert_eq!(a.digest(), ring_of(&[("b", &[3]), ("a", &[2, 1])]).digest());
        assert_ne!(a.digest(), ring_of(&[("a", &[1, 2]), ("b", &[4])]).digest());
        assert_ne!(a.digest(), ring_of(&[("a", &[1]), ("b", &[2, 3])]).digest());
    }
}
