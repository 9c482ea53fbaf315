//! Anti-entropy, the repair path: a fixed two-level hash tree over the live members,
//! the round timer, and the descent that compares two trees.
//!
//! Each live member contributes `h(address, generation, incarnation, state hash)`
//! to one of 256 buckets chosen by its address; a bucket's hash is the XOR of its
//! members', a group's the XOR of its 16 buckets', and the root the XOR of all.
//! XOR makes every update O(1), and two nodes with the same view have the same root
//! whatever order they learned it in. An idle exchange is one root (a few bytes);
//! only differing groups and buckets are descended, so the cost of a repair follows
//! the size of the difference, not the size of the cluster.

use alloc::vec::Vec;
use core::marker::PhantomData;
use core::time::Duration;
use serde::{Deserialize, Serialize};

use rand_core::RngCore;

use crate::config::Config;
use crate::hash::{mix64, stable_hash};
use crate::membership::{MemberIx, Membership};
use crate::outbox::{below, jitter};
use crate::placement::{Rank, RecordIx};
use crate::state::Store;
use crate::time::Instant;
use crate::wire::{DigestEntry, Message, encode_message};
use alloc::string::String;

/// Children per node of the tree: 16 groups of 16 buckets.
pub const SYNC_FANOUT: usize = 16;
/// Most packets one anti-entropy message may cause in reply: keeps a repair's cost
/// per round flat whatever the size of the difference, and bounds amplification.
pub(crate) const SYNC_REPLY_PACKETS: usize = 2;
/// Most differing groups descended per exchange.
const SYNC_GROUPS_PER_ROUND: usize = 4;

/// Buckets (leaves) of the tree.
pub const BUCKETS: usize = SYNC_FANOUT * SYNC_FANOUT;

/// The bucket an address falls in: the same on every node.
pub fn bucket_of<A: core::hash::Hash + ?Sized>(addr: &A) -> usize {
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

/// What one node believes about `addr` (a member, or itself), for a digest.
pub(crate) fn digest_entry<A: crate::Address>(
    members: &Membership<A>,
    store: &Store<A>,
    addr: &A,
) -> Option<DigestEntry<A>> {
    let (claim, generation) = if addr == &members.me().addr {
        (members.own_claim(), members.me().generation)
    } else {
        let m = members.get(addr)?;
        (m.claim(), m.id.generation)
    };
    let (state_hash, watermark) = store.summary(addr, generation);
    Some(DigestEntry {
        claim,
        state_hash,
        watermark,
    })
}

/// What `addr` (a member, or ourselves) contributes to the summary tree: `None` for
/// members that are not live, and for ourselves once we left (peers drop us too).
pub(crate) fn summary_entry<A: crate::Address>(
    members: &Membership<A>,
    store: &Store<A>,
    addr: &A,
) -> Option<u64> {
    let me = members.me();
    if *addr == me.addr {
        if members.has_left() {
            return None;
        }
        let st = store.hash_of(addr, me.generation);
        return Some(entry_hash(addr, me.generation, members.incarnation(), st));
    }
    // Unconfirmed members stay out of the summary: we do not pass on identities we
    // could not verify.
    members
        .get(addr)
        .filter(|m| m.status.is_live() && m.confirmed)
        .map(|m| {
            let st = store.hash_of(addr, m.id.generation);
            entry_hash(addr, m.id.generation, m.incarnation, st)
        })
}

/// A list per bucket, the lists back to back in one `Vec` with the end of each: 1 KiB
/// and the elements, where an array of `BUCKETS` `Vec`s took 6 KiB in the node, an
/// allocation per bucket and their spare room (a node of 1,000 members held two such
/// arrays: 15 bytes per member). Adding or removing an element moves the lists after
/// its bucket, O(elements), a memmove of 40 kB at 10,000 members, on a membership or
/// placement change only. A snapshot writes it as the array of lists it replaces.
#[derive(Debug)]
struct BucketLists<T> {
    items: Vec<T>,
    /// Where each bucket's list ends in `items` (it starts where the previous ends).
    ends: [u32; BUCKETS],
}

impl<T: Copy + PartialEq> BucketLists<T> {
    fn new() -> Self {
        BucketLists {
            items: Vec::new(),
            ends: [0; BUCKETS],
        }
    }

    fn range(&self, bucket: usize) -> core::ops::Range<usize> {
        let start = match bucket.checked_sub(1) {
            Some(b) => self.ends.get(b).map_or(0, |&e| e as usize),
            None => 0,
        };
        let end = self.ends.get(bucket).map_or(start, |&e| e as usize);
        start..end.max(start)
    }

    /// The list of `bucket`, in the order its elements entered it.
    fn get(&self, bucket: usize) -> &[T] {
        self.items.get(self.range(bucket)).unwrap_or(&[])
    }

    /// Appends `x` to the list of `bucket`.
    fn push(&mut self, bucket: usize, x: T) {
        if bucket >= BUCKETS {
            return;
        }
        let at = self.range(bucket).end;
        self.items.insert(at, x);
        for e in &mut self.ends[bucket..] {
            *e += 1;
        }
    }

    /// Removes `x` from the list of `bucket` (the others keep their order).
    fn remove(&mut self, bucket: usize, x: T) {
        // A list holds an element at most once (it is pushed only when not listed).
        let range = self.range(bucket);
        let start = range.start;
        if let Some(i) = self
            .items
            .get(range)
            .and_then(|list| list.iter().position(|&y| y == x))
        {
            self.items.remove(start + i);
            for e in &mut self.ends[bucket..] {
                *e -= 1;
            }
        }
    }
}

impl<T: Serialize + Copy + PartialEq> Serialize for BucketLists<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((0..BUCKETS).map(|b| self.get(b)))
    }
}

impl<'de, T: Deserialize<'de> + Copy + PartialEq> Deserialize<'de> for BucketLists<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lists: [Vec<T>; BUCKETS] = crate::snapshot::array::deserialize(d)?;
        let mut out = BucketLists::new();
        out.items.reserve_exact(lists.iter().map(Vec::len).sum());
        let mut end = 0u32;
        for (b, list) in lists.into_iter().enumerate() {
            end = end.saturating_add(u32::try_from(list.len()).unwrap_or(u32::MAX));
            out.items.extend(list);
            out.ends[b] = end;
        }
        Ok(out)
    }
}

/// The anti-entropy part: the summary tree and the round timer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "A: crate::Address")]
pub(crate) struct AntiEntropy<A> {
    #[serde(with = "crate::snapshot::array")]
    buckets: [u64; BUCKETS],
    groups: [u64; SYNC_FANOUT],
    root: u64,
    /// Each member's contribution, by its index in the member table: meaningful
    /// while the member is listed in its bucket (a slot freed and reused is forgotten
    /// first: `set(.., None)`).
    entries: Vec<u64>,
    /// Our own contribution.
    own: Option<u64>,
    /// Members (by index, ourselves as [`MemberIx::ME`]) by bucket, in the order they
    /// entered it, so a digest lists a bucket without scanning every member.
    members: BucketLists<MemberIx>,
    /// Placement records, by their index in the placement table: leaves of the same
    /// tree, so that one exchange repairs membership, state and placement alike. A
    /// record's contribution is meaningful while it is listed in its bucket.
    records: Vec<u64>,
    /// Records (by index) by bucket, in the order they entered it.
    names: BucketLists<RecordIx>,
    next_round: Option<Instant>,
    interval: Duration,
    /// The address type the tree's messages carry (members are held by index).
    #[serde(skip)]
    addr: PhantomData<fn() -> A>,
}

impl<A: crate::Address> AntiEntropy<A> {
    pub fn new(config: &Config) -> Self {
        AntiEntropy {
            buckets: [0; BUCKETS],
            groups: [0; SYNC_FANOUT],
            root: 0,
            entries: Vec::new(),
            own: None,
            members: BucketLists::new(),
            records: Vec::new(),
            names: BucketLists::new(),
            next_round: None,
            interval: config.gossip_interval,
            addr: PhantomData,
        }
    }

    // ----- the round ----------------------------------------------------------------

    /// Starts the gossip rounds, at a random point of the first interval.
    pub fn start(&mut self, now: Instant, rng: &mut impl RngCore) {
        self.next_round = Some(now + jitter(rng, self.interval));
    }

    /// If a round is due, schedules the next one and says so.
    pub fn round_due(&mut self, now: Instant) -> bool {
        if self.next_round.is_some_and(|t| t <= now) {
            self.next_round = Some(now + self.interval);
            return true;
        }
        false
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_round
    }

    // ----- the tree -----------------------------------------------------------------

    /// The summary root: equal on two nodes that hold the same view.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The message that opens an exchange.
    pub fn root_message(&self) -> Vec<u8> {
        encode_message(&Message::<A>::SyncRoot { root: self.root })
    }

    /// The members in `bucket`, by index.
    pub fn bucket(&self, bucket: usize) -> &[MemberIx] {
        self.members.get(bucket)
    }

    /// Sets (or with `None`, removes) the contribution of the member at `addr`, whose
    /// index is `ix` ([`MemberIx::ME`] for ourselves).
    pub fn set(&mut self, addr: &A, ix: MemberIx, hash: Option<u64>) {
        let b = bucket_of(addr);
        let old = if ix == MemberIx::ME {
            core::mem::replace(&mut self.own, hash)
        } else {
            let listed = self.members.get(b).contains(&ix);
            let slot = ix.get();
            if hash.is_some() && self.entries.len() <= slot {
                self.entries.resize(slot + 1, 0);
            }
            let old = listed.then(|| self.entries.get(slot).copied()).flatten();
            if let (Some(h), Some(e)) = (hash, self.entries.get_mut(slot)) {
                *e = h;
            }
            old
        };
        if old == hash {
            return;
        }
        let delta = old.unwrap_or(0) ^ hash.unwrap_or(0);
        self.buckets[b] ^= delta;
        self.groups[b / SYNC_FANOUT] ^= delta;
        self.root ^= delta;
        match (old, hash) {
            (None, Some(_)) => self.members.push(b, ix),
            (Some(_), None) => self.members.remove(b, ix),
            _ => {}
        }
    }

    /// The placement records in `bucket`, by index.
    pub fn names(&self, bucket: usize) -> &[RecordIx] {
        self.names.get(bucket)
    }

    /// Sets (or with `None`, removes) the contribution of the placement record of
    /// `name`, whose index is `ix`.
    pub fn set_record(&mut self, name: &str, ix: RecordIx, hash: Option<u64>) {
        let b = bucket_of(name);
        let slot = ix.get();
        if hash.is_some() && self.records.len() <= slot {
            self.records.resize(slot + 1, 0);
        }
        let listed = self.names.get(b).contains(&ix);
        let old = listed.then(|| self.records.get(slot).copied()).flatten();
        if let (Some(h), Some(e)) = (hash, self.records.get_mut(slot)) {
            *e = h;
        }
        if old == hash {
            return;
        }
        let delta = old.unwrap_or(0) ^ hash.unwrap_or(0);
        self.buckets[b] ^= delta;
        self.groups[b / SYNC_FANOUT] ^= delta;
        self.root ^= delta;
        match (old, hash) {
            (None, Some(_)) => self.names.push(b, ix),
            (Some(_), None) => self.names.remove(b, ix),
            _ => {}
        }
    }

    /// The hashes of the children of node `index` at `depth` (0 = root, 1 = group).
    fn children(&self, depth: u8, index: u16) -> Option<&[u64]> {
        match depth {
            0 if index == 0 => Some(&self.groups[..]),
            1 if usize::from(index) < SYNC_FANOUT => {
                let start = usize::from(index) * SYNC_FANOUT;
                Some(&self.buckets[start..start + SYNC_FANOUT])
            }
            _ => None,
        }
    }

    // ----- the descent --------------------------------------------------------------

    /// A peer's root. Returns true when the views are equal; otherwise replies with
    /// our groups.
    pub fn on_root(&self, root: u64, reply: &mut Vec<Vec<u8>>) -> bool {
        if root == self.root {
            return true;
        }
        reply.push(encode_message(&Message::<A>::SyncLevel {
            depth: 0,
            index: 0,
            hashes: self.groups.to_vec(),
        }));
        false
    }

    /// A peer's hashes for the children of one tree node: replies with the next level
    /// down for the children that differ, or with digests of the differing buckets.
    pub fn on_level(
        &self,
        depth: u8,
        index: u16,
        theirs: &[u64],
        rng: &mut impl RngCore,
        reply: &mut Vec<Vec<u8>>,
        mut digest: impl FnMut(usize) -> Vec<u8>,
    ) {
        let Some(mine) = self.children(depth, index) else {
            return;
        };
        if theirs.len() != mine.len() {
            return;
        }
        let differing: Vec<usize> = (0..mine.len()).filter(|&i| mine[i] != theirs[i]).collect();
        if differing.is_empty() {
            return;
        }
        // Start at a random differing child so that repeated rounds cover them all.
        let start = below(rng, differing.len());
        let picks = differing.iter().cycle().skip(start).take(differing.len());
        match depth {
            0 => {
                for &g in picks.take(SYNC_GROUPS_PER_ROUND) {
                    let hashes = self
                        .children(1, g as u16)
                        .map(<[u64]>::to_vec)
                        .unwrap_or_default();
                    reply.push(encode_message(&Message::<A>::SyncLevel {
                        depth: 1,
                        index: g as u16,
                        hashes,
                    }));
                }
            }
            _ => {
                for &b in picks {
                    reply.push(digest(usize::from(index) * SYNC_FANOUT + b));
                }
            }
        }
    }

    /// A digest of `bucket` fitting `budget` bytes: one entry per member in it, then
    /// the rank of each placement record in it.
    pub fn digest_message(
        &self,
        bucket: usize,
        budget: usize,
        entry_of: impl Fn(MemberIx) -> Option<DigestEntry<A>>,
        record_of: impl Fn(RecordIx) -> Option<(String, Rank)>,
    ) -> Vec<u8> {
        let mut entries = Vec::new();
        let mut size = 0;
        let mut complete = true;
        for &ix in self.bucket(bucket) {
            let Some(e) = entry_of(ix) else {
                continue;
            };
            let len = postcard::experimental::serialized_size(&e).unwrap_or(usize::MAX);
            if size + len > budget {
                complete = false;
                break;
            }
            size += len;
            entries.push(e);
        }
        let mut placements = Vec::new();
        for &ix in self.names(bucket) {
            if !complete {
                break;
            }
            let Some((name, rank)) = record_of(ix) else {
                continue;
            };
            let len = name.len() + 32;
            if size + len > budget {
                complete = false;
                break;
            }
            size += len;
            placements.push((name, rank));
        }
        encode_message(&Message::SyncDigest {
            bucket: bucket as u16,
            complete,
            entries,
            placements,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_lists_behave_as_the_array_of_vecs_they_replace() {
        let mut flat = BucketLists::new();
        let mut vecs: [Vec<u32>; BUCKETS] = core::array::from_fn(|_| Vec::new());
        for i in 0..2_000u32 {
            let b = (i as usize * 7) % BUCKETS;
            flat.push(b, i);
            vecs[b].push(i);
            if i % 3 == 0 {
                let (b, x) = ((i as usize / 2 * 7) % BUCKETS, i / 2);
                flat.remove(b, x);
                vecs[b].retain(|&y| y != x);
            }
        }
        flat.push(BUCKETS, 1);
        flat.remove(BUCKETS - 1, 99_999);
        for (b, v) in vecs.iter().enumerate() {
            assert_eq!(flat.get(b), v.as_slice());
        }
        assert!(flat.get(BUCKETS).is_empty());
        // The snapshot format is the array's.
        let bytes = postcard::to_allocvec(&flat).expect("serialize");
        #[derive(Serialize)]
        struct Old<'a> {
            #[serde(serialize_with = "crate::snapshot::array::serialize")]
            lists: &'a [Vec<u32>; BUCKETS],
        }
        let old = postcard::to_allocvec(&Old { lists: &vecs }).expect("serialize the array");
        assert_eq!(bytes, old);
        let back: BucketLists<u32> = postcard::from_bytes(&bytes).expect("deserialize");
        for (b, v) in vecs.iter().enumerate() {
            assert_eq!(back.get(b), v.as_slice());
        }
    }

    #[test]
    fn order_of_updates_does_not_matter() {
        let mut a: AntiEntropy<u32> = AntiEntropy::new(&Config::lan("t"));
        let mut b: AntiEntropy<u32> = AntiEntropy::new(&Config::lan("t"));
        for i in 0..100 {
            a.set(&i, MemberIx::test(i), Some(entry_hash(&i, 1, 0, 0)));
        }
        for i in (0..100).rev() {
            b.set(&i, MemberIx::test(i), Some(entry_hash(&i, 1, 0, 7)));
            b.set(&i, MemberIx::test(i), Some(entry_hash(&i, 1, 0, 0)));
        }
        assert_eq!(a.root, b.root);
        assert_eq!(a.buckets, b.buckets);
        a.set(&5, MemberIx::test(5), None);
        assert_ne!(a.root, b.root);
        let g = bucket_of(&5u32) / SYNC_FANOUT;
        assert_ne!(a.groups[g], b.groups[g]);
        a.set(&5, MemberIx::test(5), Some(entry_hash(&5, 1, 0, 0)));
        assert_eq!(a.root, b.root);
        assert_eq!(a.members.items.len(), 100);
    }

    // ----- the descent, without the simulator ---------------------------------------

    use crate::membership::{MemberClaim, NodeId, Status};
    use crate::outbox::testing::decoded;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;

    fn tree(members: impl IntoIterator<Item = (u32, u64)>) -> AntiEntropy<u32> {
        let mut t = AntiEntropy::new(&Config::lan("t"));
        for (a, state) in members {
            t.set(&a, MemberIx::test(a), Some(entry_hash(&a, 1, 0, state)));
        }
        t
    }

    /// In these tests a member's index is its address.
    fn entry(ix: MemberIx) -> Option<DigestEntry<u32>> {
        let addr = &(ix.get() as u32);
        Some(DigestEntry {
            claim: MemberClaim {
                id: NodeId::new(*addr, 1),
                incarnation: 0,
                status: Status::Alive,
            },
            state_hash: u64::from(*addr),
            watermark: 0,
        })
    }

    #[test]
    fn equal_roots_end_the_exchange() {
        let a = tree((0..50).map(|i| (i, 0)));
        let b = tree((0..50).rev().map(|i| (i, 0)));
        let mut reply = Vec::new();
        assert!(a.on_root(b.root(), &mut reply));
        assert!(reply.is_empty());
        assert_eq!(
            decoded(&[a.root_message()]),
            alloc::vec![Message::SyncRoot { root: a.root() }]
        );
    }

    #[test]
    fn descent_touches_only_the_differing_bucket() {
        const ODD: u32 = 7;
        let a = tree((0..200).map(|i| (i, 0)));
        let b = tree((0..200).map(|i| (i, u64::from(i == ODD))));
        let bucket = bucket_of(&ODD);
        let group = bucket / SYNC_FANOUT;
        let mut rng = ChaCha8Rng::seed_from_u64(1);

        // a opens; b differs and answers with its groups.
        let mut reply = Vec::new();
        assert!(!b.on_root(a.root(), &mut reply));
        let groups = match &decoded(&reply)[..] {
            [
                Message::SyncLevel {
                    depth: 0,
                    index: 0,
                    hashes,
                },
            ] => hashes.clone(),
            other => panic!("expected b's groups, got {other:?}"),
        };
        assert_eq!(groups.len(), SYNC_FANOUT);
        let differing: Vec<usize> = (0..SYNC_FANOUT)
            .filter(|&g| groups[g] != a.groups[g])
            .collect();
        assert_eq!(differing, alloc::vec![group]);

        // a names only the differing group, with its buckets.
        let mut reply = Vec::new();
        let mut asked = Vec::new();
        a.on_level(0, 0, &groups, &mut rng, &mut reply, |b| {
            asked.push(b);
            Vec::new()
        });
        assert!(asked.is_empty(), "no digest at depth 0");
        let buckets = match &decoded(&reply)[..] {
            [
                Message::SyncLevel {
                    depth: 1,
                    index,
                    hashes,
                },
            ] if usize::from(*index) == group => hashes.clone(),
            other => panic!("expected group {group} alone, got {other:?}"),
        };
        assert_eq!(buckets[..], a.buckets[group * SYNC_FANOUT..][..SYNC_FANOUT]);

        // b asks for a digest of only the differing bucket.
        let mut reply = Vec::new();
        let mut asked = Vec::new();
        let budget = 1200;
        b.on_level(1, group as u16, &buckets, &mut rng, &mut reply, |k| {
            asked.push(k);
            b.digest_message(k, budget, entry, |_| None)
        });
        assert_eq!(asked, alloc::vec![bucket]);
        match &decoded(&reply)[..] {
            [
                Message::SyncDigest {
                    bucket: k,
                    complete: true,
                    entries,
                    ..
                },
            ] => {
                assert_eq!(usize::from(*k), bucket);
                let mut listed: Vec<u32> = entries.iter().map(|e| e.claim.id.addr).collect();
                let mut expected: Vec<u32> =
                    b.bucket(bucket).iter().map(|ix| ix.get() as u32).collect();
                listed.sort_unstable();
                expected.sort_unstable();
                assert_eq!(listed, expected, "the bucket's members, and only them");
                assert!(listed.contains(&ODD));
            }
            other => panic!("expected one digest, got {other:?}"),
        }
    }

    #[test]
    fn descent_names_at_most_four_groups_per_round() {
        let a = tree((0..400).map(|i| (i, 0)));
        let b = tree((0..400).map(|i| (i, 1)));
        let differing = (0..SYNC_FANOUT)
            .filter(|&g| a.groups[g] != b.groups[g])
            .count();
        assert!(differing > SYNC_GROUPS_PER_ROUND);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut reply = Vec::new();
        a.on_level(0, 0, &b.groups, &mut rng, &mut reply, |_| unreachable!());
        assert_eq!(reply.len(), SYNC_GROUPS_PER_ROUND);
    }

    #[test]
    fn malformed_levels_are_ignored() {
        let a = tree((0..50).map(|i| (i, 0)));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut reply = Vec::new();
        let mut digest = |_| -> Vec<u8> { unreachable!() };
        a.on_level(0, 0, &[1, 2, 3], &mut rng, &mut reply, &mut digest);
        a.on_level(0, 1, &[0; SYNC_FANOUT], &mut rng, &mut reply, &mut digest);
        a.on_level(
            1,
            SYNC_FANOUT as u16,
            &[0; SYNC_FANOUT],
            &mut rng,
            &mut reply,
            &mut digest,
        );
        a.on_level(2, 0, &[0; SYNC_FANOUT], &mut rng, &mut reply, &mut digest);
        assert!(reply.is_empty());
    }

    #[test]
    fn digest_is_cut_short_by_the_budget() {
        // Every member in one bucket, more than fit.
        let members: Vec<u32> = (0..10_000).filter(|a| bucket_of(a) == 3).take(40).collect();
        let t = tree(members.iter().map(|&a| (a, 0)));
        assert_eq!(t.bucket(3).len(), 40);
        let one =
            postcard::experimental::serialized_size(&entry(MemberIx::test(members[0])).unwrap())
                .unwrap();
        match &decoded(&[t.digest_message(3, one * 5, entry, |_| None)])[..] {
            [
                Message::SyncDigest {
                    bucket: 3,
                    complete,
                    entries,
                    ..
                },
            ] => {
                assert!(!complete);
                assert!(!entries.is_empty() && entries.len() <= 5);
            }
            other => panic!("expected a digest, got {other:?}"),
        }
    }

    #[test]
    fn round_timer_fires_once_per_interval() {
        let interval = Config::lan("t").gossip_interval;
        let mut t = tree([]);
        assert!(!t.round_due(Instant::MAX), "not started");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        t.start(Instant::ZERO, &mut rng);
        let first = t.poll_timeout().expect("started");
        assert!(
            first < Instant::ZERO + interval,
            "jittered into the first interval"
        );
        assert!(t.round_due(first));
        assert!(!t.round_due(first), "once");
        assert_eq!(t.poll_timeout(), Some(first + interval));
    }
}
