//! The placement part: every member's [`PlacementRecord`] by name, the ring built
//! from them, this node's own record and its way through Joining → Normal →
//! Leaving → Left, and the cluster's agreement on the ring.
//!
//! Liveness never enters here except to answer "who can serve this key now": the
//! ring is a function of the records alone, so a crash, a restart or a slow node
//! changes neither the ring nor its digest.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, Ref, RefCell};
use core::marker::PhantomData;
use serde::{Deserialize, Serialize};

use rand_core::RngCore;

use super::agreement::{Agreement, Merged};
use super::allocator::{ALLOCATION_RF, allocate_located_upto, random_tokens};
use super::murmur::token_for;
use super::ring::{Location, NOWHERE, Replication, Ring, Token};
use super::topology::{
    LocalPlacement, MAX_NAME_LEN, PlacementRecord, Rank, RemoveError, RestoreError, Topology,
};
use crate::config::Config;
use crate::event::Event;
use core::hash::BuildHasher;

use hashbrown::HashTable;

use crate::chunked::Chunked;
use crate::hash::{SeededState, mix64, stable_hash};
use crate::membership::{Address, Membership, NodeId, Status};
use crate::routing::{Replica, ReplicaSet};
use crate::wire::Message;

/// Gossip rounds a joiner's proposed tokens stay pending before it turns Normal, and a
/// leaver stays Leaving before it turns Left: time for the news to reach everyone (and,
/// for a store, to stream), as Cassandra's ring delay.
pub const RING_DELAY_ROUNDS: u32 = 3;

/// Rounds a joiner waits, at least, before allocating: it first learns the ring.
const LEARN_ROUNDS: u32 = 3;

/// Rounds a wave-mate's pending tokens hold a joiner back at most, once the ring has
/// moved under them (see `Placement::ring_moved_under`): a pending joiner turns
/// Normal [`RING_DELAY_ROUNDS`] after it allocated, and its news spreads in a few
/// rounds more.
const PENDING_PATIENCE: u32 = RING_DELAY_ROUNDS + 2;

/// Most joiners that allocate together onto a small ring: a mass join proceeds in
/// waves (the first Joining members by name), each against the ring the previous ones
/// left. Later waves may be up to [`WAVE_GROWTH`] times the ring they join, so a
/// thousand joiners take two waves instead of sixteen.
///
/// 128 rather than 64: a cluster of up to 129 nodes started at once joins in one wave
/// instead of two, a ring delay and a spread sooner. Over 40 seeds of a 100-node mass
/// join, agreed after 15.5 s (median) instead of 21.8, with max/mean at RF 3 at most
/// 1.073 instead of 1.162 (one seed above 1.09: a second wave of 35 onto the first 65
/// balanced worse than one wave of 99); at 1,024 nodes it changes little (two waves,
/// 128 then 895).
pub const JOIN_WAVE: usize = 128;

/// How many times the ring it joins a wave may be, once the ring holds more than
/// [`JOIN_WAVE`] / 31 members: a wave at most 32-folds the ring. The allocator admits
/// a wave's joiners in batches of a quarter of the ring so far, so a large wave
/// balances as well as several small ones, and every wave saved is a ring delay and
/// two spreads: a 1,024-node mass join goes in two waves (64, then 960, when the first
/// wave was 64) and falls idle about 40 s after the joins, against five waves (64, 65,
/// 130, 260, 505) and 60 s
/// when a wave at most doubled the ring, and sixteen waves and 119 s with fixed waves
/// of 64. The room above 15 (which would do for 64 and then 960) is for a first wave
/// that some joiners had to leave (they start over when a wave-mate's record reached
/// them late): with 15, a first wave of 53 held the next to 795 and a thousand
/// joiners took four waves. The price is CPU: every joiner of a wave computes the
/// wave's joint allocation up to its own batch.
pub const WAVE_GROWTH: usize = 31;

/// The most joiners one wave may hold onto a ring of `on_ring` members: the one rule
/// behind both the waves ([`Placement::wave`]) and their count ([`join_waves`]).
fn wave_size(on_ring: usize) -> usize {
    JOIN_WAVE.max(on_ring.saturating_mul(WAVE_GROWTH))
}

/// How many waves `joiners` take to join a datacenter whose ring holds `on_ring`
/// members, if every wave joins whole (see [`JOIN_WAVE`]): for bounds and estimates.
pub fn join_waves(joiners: usize, on_ring: usize) -> usize {
    let (mut left, mut ring, mut waves) = (joiners, on_ring, 0);
    while left > 0 {
        let wave = left.min(wave_size(ring));
        left -= wave;
        ring += wave;
        waves += 1;
    }
    waves
}

/// Who owns a token on the ring: a member's name with the epoch of its tokens,
/// ordered by epoch first, so that when two members claim one token the one that took
/// it first keeps it, on every node alike.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    epoch: u64,
    name: String,
}

/// A SplitMix64 stream: the seeded RNG of a joint allocation, so that every joiner
/// that sees the same ring and the same joiners computes the same tokens.
struct SplitMix(u64);

impl RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// What became of a record that arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// It outranked what we held: kept, and to be passed on.
    News,
    /// We held it or better already.
    Stale,
    /// Malformed, or it would take tokens or ranges it has no right to.
    Refused,
}

/// What a gossip round of the placement part calls for.
#[derive(Debug)]
pub(crate) struct RoundOutcome<A> {
    /// Our record changed: spread it.
    pub publish: Option<PlacementRecord<A>>,
    /// We finished leaving: announce it to the membership layer.
    pub left: bool,
}

/// A record as this node holds it: the fields of a [`PlacementRecord`] with its name
/// and its address (in its wire form) side by side in the table's byte [`Arena`], its
/// tokens in the table's token [`Arena`], and its location as an index into the
/// table's distinct [`Locations`] (nearly every member shares one of a few). Its
/// contribution to the ring digest is computed again when it is replaced, from what
/// it holds ([`ring_contribution`]). 40 bytes, whatever the address type: with a
/// `SocketAddr` the record held 80 (the address alone took 32, where its wire form
/// takes 7 for IPv4), and before the arenas 176.
#[derive(Clone, Debug)]
struct Held {
    generation: u64,
    version: u64,
    epoch: u64,
    /// Where the tokens start in the token arena.
    tokens_at: u32,
    /// Where the name, and right after it the address, start in the byte arena.
    ident_at: u32,
    tokens_len: u16,
    /// The location's index in [`Locations`] (at most [`MAX_LOCATIONS`] of them).
    location: u16,
    name_len: u8,
    addr_len: u8,
    status: Topology,
}

impl Held {
    fn tokens(&self) -> Span {
        Span {
            at: self.tokens_at,
            len: usize::from(self.tokens_len),
        }
    }

    fn ident(&self) -> Span {
        Span {
            at: self.ident_at,
            len: usize::from(self.name_len) + usize::from(self.addr_len),
        }
    }
}

/// A record's contribution to the ring digest while it is on the ring: the hash of
/// what places it on the ring (`str` and `[Token]` hash as `String` and `Vec` do).
fn ring_contribution(name: &str, epoch: u64, location: &Location, tokens: &[Token]) -> u64 {
    stable_hash(&(name, epoch, location, tokens))
}

/// Where one item sits in an [`Arena`]: its first element's position, and its length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    at: u32,
    len: usize,
}

/// Tokens per block of the token arena (8 KiB): a record holds at most
/// 4 × 256 (the most vnodes) tokens, checked on receipt, so one always fits.
const TOKEN_BLOCK: usize = 1024;

/// Bytes per block of the byte arena: a name (at most [`MAX_NAME_LEN`]) and an
/// address (at most [`MAX_ADDR_BYTES`]) always fit.
const BYTE_BLOCK: usize = 4096;

/// The longest address wire form a record may have (its length is held in a byte).
/// An address type whose postcard form is longer cannot hold a placement record:
/// such records are refused on receipt.
pub(crate) const MAX_ADDR_BYTES: usize = 255;

/// Most distinct locations the table holds (their index is held in two bytes): a
/// record at one more is refused on receipt.
const MAX_LOCATIONS: usize = u16::MAX as usize;

/// Items of `T` (the held records' tokens; their names and addresses), back to back
/// in blocks of `BLOCK` elements: an item costs its elements, without an allocation
/// of its own whose header and place among a burst's short-lived allocations cost
/// about as much again in resident memory, and is found by a 4-byte position
/// (`block × BLOCK + offset`: an item never straddles two blocks). The first block
/// grows to `BLOCK` as a `Vec` does (a table of one record, our own, takes little).
///
/// An item that is replaced is left behind as garbage; once the garbage outgrows the
/// live elements (and a block), the table copies every record's items into a new
/// arena ([`Records::compact`]), so an arena holds at most about twice its live
/// elements.
#[derive(Debug)]
struct Arena<T, const BLOCK: usize> {
    blocks: Vec<Vec<T>>,
    live: usize,
    garbage: usize,
}

impl<T, const BLOCK: usize> Default for Arena<T, BLOCK> {
    fn default() -> Self {
        Arena {
            blocks: Vec::new(),
            live: 0,
            garbage: 0,
        }
    }
}

impl<T: Copy, const BLOCK: usize> Arena<T, BLOCK> {
    fn get(&self, span: Span) -> &[T] {
        let (block, offset) = (span.at as usize / BLOCK, span.at as usize % BLOCK);
        self.blocks
            .get(block)
            .and_then(|b| b.get(offset..offset + span.len))
            .unwrap_or(&[])
    }

    /// Appends `items`, cut to `BLOCK` (longer ones come only from a snapshot of
    /// another build; receipt checks the bounds).
    fn push(&mut self, items: &[T]) -> Span {
        let items = &items[..items.len().min(BLOCK)];
        let len = items.len();
        if len == 0 {
            return Span::default();
        }
        if self.blocks.last().is_none_or(|b| b.len() + len > BLOCK) {
            self.blocks.push(Vec::new());
        }
        let block = self.blocks.len() - 1;
        let b = &mut self.blocks[block];
        if b.len() + len > b.capacity() {
            // Doubling up to a whole block, never past it.
            let room = (b.capacity() * 2).clamp(b.len() + len, BLOCK);
            b.reserve_exact(room - b.len());
        }
        let offset = b.len();
        b.extend_from_slice(items);
        self.live += len;
        Span {
            at: u32::try_from(block * BLOCK + offset).unwrap_or(u32::MAX),
            len,
        }
    }

    /// The item at `span` is no longer held.
    fn free(&mut self, span: Span) {
        self.live = self.live.saturating_sub(span.len);
        self.garbage += span.len;
    }

    /// Whether the garbage outgrew the live elements (and a block).
    fn wants_compaction(&self) -> bool {
        self.garbage > self.live.max(BLOCK)
    }
}

/// A record's name and address as the byte arena holds them, written into `out`:
/// the name's bytes, then the address's wire form (postcard). Returns the length of
/// each; the address's is 0 (it cannot be read back) if its wire form is longer than
/// [`MAX_ADDR_BYTES`], which receipt refuses ([`fits`]).
fn ident_bytes<A: Address>(
    name: &str,
    addr: &A,
    out: &mut [u8; MAX_NAME_LEN + MAX_ADDR_BYTES],
) -> (u8, u8) {
    // A longer name (only from a snapshot of another build: receipt checks it) is
    // cut at a character boundary.
    let mut len = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(len) {
        len -= 1;
    }
    let (head, tail) = out.split_at_mut(len);
    head.copy_from_slice(&name.as_bytes()[..len]);
    let addr_len = postcard::to_slice(addr, &mut tail[..MAX_ADDR_BYTES]).map_or(0, |a| a.len());
    (len as u8, addr_len as u8)
}

/// Whether `addr`'s wire form fits a held record (see [`MAX_ADDR_BYTES`]).
fn fits<A: Address>(addr: &A) -> bool {
    let mut buf = [0u8; MAX_ADDR_BYTES];
    postcard::to_slice(addr, &mut buf).is_ok()
}

/// A record as the table holds it, read like a [`PlacementRecord`] (its fields through
/// methods of the same names); [`to_record`](Self::to_record) makes one.
#[derive(Debug)]
pub(crate) struct RecordRef<'a, A> {
    held: &'a Held,
    /// The name's bytes: read as a `str` only when asked for (a scan over the table
    /// that looks at statuses or tokens never pays for the check).
    name: &'a [u8],
    /// The address's wire form.
    addr: &'a [u8],
    tokens: &'a [Token],
    location: &'a Location,
    kind: PhantomData<fn() -> A>,
}

impl<A> Clone for RecordRef<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for RecordRef<'_, A> {}

impl<'a, A: Address> RecordRef<'a, A> {
    /// The member's stable name.
    pub fn name(self) -> &'a str {
        // Written from a `str`, cut at a character boundary: always valid.
        core::str::from_utf8(self.name).unwrap_or("")
    }

    /// Where the member was last announced to receive datagrams (decoded from its
    /// wire form; `None` only if the table was handed one it cannot read back).
    pub fn addr(self) -> Option<A> {
        postcard::from_bytes(self.addr).ok()
    }

    /// The process life that wrote the record.
    pub fn generation(self) -> u64 {
        self.held.generation
    }

    /// The generation at which the tokens were allocated.
    pub fn epoch(self) -> u64 {
        self.held.epoch
    }

    /// Joining, Normal, Leaving, Left or Removed.
    pub fn status(self) -> Topology {
        self.held.status
    }

    /// Datacenter and rack.
    pub fn location(self) -> &'a Location {
        self.location
    }

    /// The member's tokens, sorted.
    pub fn tokens(self) -> &'a [Token] {
        self.tokens
    }

    /// The record's rank (see [`PlacementRecord::rank`]).
    pub fn rank(self) -> Rank {
        (
            self.held.epoch,
            self.held.status == Topology::Removed,
            self.held.generation,
            self.held.version,
        )
    }

    /// The record, as gossiped (`None` as [`addr`](Self::addr)).
    pub fn to_record(self) -> Option<PlacementRecord<A>> {
        Some(PlacementRecord {
            name: self.name().into(),
            addr: self.addr()?,
            generation: self.held.generation,
            version: self.held.version,
            epoch: self.held.epoch,
            status: self.held.status,
            location: self.location.clone(),
            tokens: self.tokens.to_vec(),
        })
    }
}

/// The distinct locations of the held records, each once with the number of records
/// at it, and a `HashTable` of their indices hashed with the node's seeded hasher. A
/// location no record holds any more is dropped and its index reused, so records that
/// keep moving (or forge locations) cannot grow it past the number of records.
#[derive(Debug, Default)]
struct Locations {
    /// Each location with its number of records (0: a free index).
    list: Vec<(Location, u32)>,
    free: Vec<u32>,
    index: HashTable<u32>,
}

impl Locations {
    fn get(&self, ix: u16) -> &Location {
        self.list.get(usize::from(ix)).map_or(&NOWHERE, |(l, _)| l)
    }

    /// Whether `location` is held, or there is room for one more.
    fn has_room_for(&self, seed: u64, location: &Location) -> bool {
        self.list.len() < MAX_LOCATIONS || !self.free.is_empty() || {
            let list = &self.list;
            let hash = SeededState(seed).hash_one(location);
            self.index
                .find(hash, |&i| {
                    list.get(i as usize).is_some_and(|(l, _)| l == location)
                })
                .is_some()
        }
    }

    /// The index of `location`, counted once more; [`NOWHERE`]'s past
    /// [`MAX_LOCATIONS`] (receipt refuses such records: see
    /// [`has_room_for`](Self::has_room_for)).
    fn intern(&mut self, seed: u64, location: &Location) -> u16 {
        let hash = SeededState(seed).hash_one(location);
        let list = &self.list;
        if let Some(&ix) = self.index.find(hash, |&i| {
            list.get(i as usize).is_some_and(|(l, _)| l == location)
        }) {
            if let Some((_, users)) = self.list.get_mut(ix as usize) {
                *users += 1;
            }
            return ix as u16;
        }
        if self.free.is_empty() && self.list.len() >= MAX_LOCATIONS {
            return u16::MAX;
        }
        let ix = match self.free.pop() {
            Some(ix) => {
                if let Some(slot) = self.list.get_mut(ix as usize) {
                    *slot = (location.clone(), 1);
                }
                ix
            }
            None => {
                self.list.push((location.clone(), 1));
                (self.list.len() - 1) as u32
            }
        };
        let list = &self.list;
        self.index.insert_unique(hash, ix, |&i| {
            list.get(i as usize)
                .map_or(0, |(l, _)| SeededState(seed).hash_one(l))
        });
        ix as u16
    }

    /// `ix` is counted once less; dropped when no record holds it.
    fn release(&mut self, seed: u64, ix: u16) {
        let ix = u32::from(ix);
        let Some((location, users)) = self.list.get_mut(ix as usize) else {
            return;
        };
        *users = users.saturating_sub(1);
        if *users > 0 {
            return;
        }
        let hash = SeededState(seed).hash_one(&*location);
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == ix) {
            entry.remove();
        }
        *location = Location {
            datacenter: String::new(),
            rack: String::new(),
        };
        self.free.push(ix);
    }
}

/// A record's place in the table: records are never removed (a departed member's
/// record stays as a tombstone, and the table is bounded by `max_records`), so the
/// index of a name never changes. The anti-entropy summary keys records by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecordIx(u32);

impl RecordIx {
    /// The record's position, for indexing a part's per-record `Vec`.
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// Every record by name: the records in a [`Chunked`] vector, and a `HashTable` of
/// their indices hashed through the name with the node's seeded hasher, filled
/// exactly as the `Map<String, PlacementRecord>` it replaces, so it iterates in the
/// same order (about 5 bytes per bucket instead of a name and a record).
///
/// A snapshot holds each record whole, as it did before records were held compact
/// (see [`Held`]), so the snapshot format is unchanged.
#[derive(Debug, Deserialize)]
#[serde(bound = "A: Address", from = "RecordsRepr<A>")]
struct Records<A> {
    seed: u64,
    held: Chunked<Held>,
    /// Written as the records' indices in iteration order, and rebuilt from it.
    index: HashTable<u32>,
    /// The records' names, each followed by its record's address in wire form.
    idents: Arena<u8, BYTE_BLOCK>,
    /// The records' tokens.
    tokens: Arena<Token, TOKEN_BLOCK>,
    /// The records' distinct locations.
    locations: Locations,
    /// Records on the ring (with a contribution).
    on_ring: usize,
    /// The tokens of the records on the ring, as a Bloom filter.
    ring_tokens: TokenFilter,
    /// The address type the records hold in wire form.
    kind: PhantomData<fn() -> A>,
}

/// A held record as a snapshot holds it (and held it before records were compact).
/// The contribution is written as it was, and computed again on reading.
#[derive(Serialize, Deserialize)]
#[serde(bound = "A: Address")]
struct HeldRepr<A> {
    record: PlacementRecord<A>,
    contribution: Option<u64>,
}

/// The held records of a table, written as [`HeldRepr`]s.
struct HeldSeq<'a, A>(&'a Records<A>);

impl<A: Address> Serialize for HeldSeq<'_, A> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let t = self.0;
        // With its length first: postcard cannot write a sequence of unknown length.
        let mut seq = s.serialize_seq(Some(t.held.len()))?;
        for h in t.held.iter() {
            // Every held address was written from an `A` (receipt refuses the ones
            // that do not fit), so it reads back.
            let Some(record) = t.view(h).to_record() else {
                return Err(serde::ser::Error::custom(
                    "a held address does not read back",
                ));
            };
            seq.serialize_element(&HeldRepr {
                record,
                contribution: t.contribution(h),
            })?;
        }
        seq.end()
    }
}

/// The index of a table, written in iteration order.
struct IndexOrder<'a>(&'a HashTable<u32>);

impl Serialize for IndexOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::snapshot::index_order(self.0, s)
    }
}

impl<A: Address> Serialize for Records<A> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Records", 3)?;
        st.serialize_field("seed", &self.seed)?;
        st.serialize_field("held", &HeldSeq(self))?;
        st.serialize_field("index", &IndexOrder(&self.index))?;
        st.end()
    }
}

/// A Bloom filter over the tokens of the records on the ring. The check that no other
/// member on the ring holds one of a record's tokens scans the whole table only when
/// the filter says one may, so a mass join costs O(tokens) per record instead of
/// O(members × tokens), O(N³) over the cluster. Tokens that leave the ring stay in
/// the filter (a false positive costs a scan, never a wrong answer) until it is
/// rebuilt, when more tokens have gone in than it was sized for. Its hashes are keyed
/// by the node's seed, so forged tokens cannot aim at its bits.
#[derive(Debug, Default)]
struct TokenFilter {
    bits: Vec<u64>,
    /// Tokens inserted since the last rebuild, and how many it was sized for.
    inserted: usize,
    room: usize,
}

/// Filter bits per token it has room for, and hashes per token: about 0.26 % false
/// positives per token when full (4 % of 16-token records then scan the table), and
/// fewer before. Six hashes where four would do at 16 bits: the same false positives
/// in 13 bits, and the filter is a tenth of a member's memory.
const FILTER_BITS_PER_TOKEN: usize = 13;
const FILTER_HASHES: u64 = 6;

/// A rebuilt filter has room for a quarter as many tokens again as the ring holds:
/// rebuilt after every quarter of growth (each rebuild O(tokens), so a join still
/// costs O(tokens) in all), and about 16 bits per token right after.
const FILTER_SLACK: usize = 4;

impl TokenFilter {
    /// An empty filter with room for `room` tokens (at least 256).
    fn with_room(room: usize) -> TokenFilter {
        let room = room.max(256);
        TokenFilter {
            bits: alloc::vec![0; (room * FILTER_BITS_PER_TOKEN).div_ceil(64)],
            inserted: 0,
            room,
        }
    }

    /// The bit positions of `token` in a filter of `len` words.
    fn positions(len: usize, seed: u64, token: Token) -> impl Iterator<Item = usize> {
        let h = mix64(token as u64 ^ seed);
        let (h1, h2) = (h & 0xffff_ffff, (h >> 32) | 1);
        let m = ((len * 64) as u64).max(1);
        (0..FILTER_HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    fn insert(&mut self, seed: u64, token: Token) {
        for p in Self::positions(self.bits.len(), seed, token) {
            if let Some(w) = self.bits.get_mut(p / 64) {
                *w |= 1 << (p % 64);
            }
        }
        self.inserted += 1;
    }

    /// Whether `token` may be in the filter (it surely is not when false).
    fn may_hold(&self, seed: u64, token: Token) -> bool {
        Self::positions(self.bits.len(), seed, token).all(|p| {
            self.bits
                .get(p / 64)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        })
    }
}

/// [`Records`] as a snapshot holds it.
#[derive(Deserialize)]
#[serde(bound = "A: Address")]
struct RecordsRepr<A> {
    seed: u64,
    held: Vec<HeldRepr<A>>,
    index: Vec<u32>,
}

impl<A: Address> From<RecordsRepr<A>> for Records<A> {
    fn from(r: RecordsRepr<A>) -> Self {
        let mut t = Records {
            seed: r.seed,
            held: Chunked::default(),
            index: HashTable::with_capacity(r.index.len()),
            idents: Arena::default(),
            tokens: Arena::default(),
            locations: Locations::default(),
            on_ring: 0,
            ring_tokens: TokenFilter::default(),
            kind: PhantomData,
        };
        for h in r.held {
            let (ident, name_len, addr_len) = t.push_ident(&h.record.name, &h.record.addr);
            let tokens = t.tokens.push(&h.record.tokens);
            let held = t.hold(h.record, (ident, name_len, addr_len), tokens);
            t.held.push(held);
        }
        t.on_ring = t.held.iter().filter(|h| h.status.is_on_ring()).count();
        t.rebuild_filter();
        for ix in r.index {
            if let Some(name) = t.held.get(ix).map(|h| String::from(t.name_of(h))) {
                t.index_insert(&name, ix);
            }
        }
        t
    }
}

impl<A: Address> Records<A> {
    fn new(hasher: SeededState) -> Self {
        Records {
            seed: hasher.0,
            held: Chunked::default(),
            index: HashTable::new(),
            idents: Arena::default(),
            tokens: Arena::default(),
            locations: Locations::default(),
            on_ring: 0,
            ring_tokens: TokenFilter::with_room(0),
            kind: PhantomData,
        }
    }

    /// Whether the table can hold `record`: its address's wire form fits, and its
    /// location is held or there is room for one more.
    fn can_hold(&self, record: &PlacementRecord<A>) -> bool {
        fits(&record.addr) && self.locations.has_room_for(self.seed, &record.location)
    }

    /// Writes a name and an address into the byte arena: where they start, and
    /// their lengths.
    fn push_ident(&mut self, name: &str, addr: &A) -> (u32, u8, u8) {
        let mut buf = [0u8; MAX_NAME_LEN + MAX_ADDR_BYTES];
        let (name_len, addr_len) = ident_bytes(name, addr, &mut buf);
        let len = usize::from(name_len) + usize::from(addr_len);
        (self.idents.push(&buf[..len]).at, name_len, addr_len)
    }

    /// `record` in its held form, its name and address at `ident` (see
    /// [`push_ident`](Self::push_ident)), its tokens at `tokens`, its location
    /// interned.
    fn hold(&mut self, record: PlacementRecord<A>, ident: (u32, u8, u8), tokens: Span) -> Held {
        Held {
            location: self.locations.intern(self.seed, &record.location),
            ident_at: ident.0,
            name_len: ident.1,
            addr_len: ident.2,
            tokens_at: tokens.at,
            tokens_len: u16::try_from(tokens.len).unwrap_or(u16::MAX),
            generation: record.generation,
            version: record.version,
            epoch: record.epoch,
            status: record.status,
        }
    }

    /// The name of `h`, as bytes.
    fn name_bytes<'a>(idents: &'a Arena<u8, BYTE_BLOCK>, h: &Held) -> &'a [u8] {
        let ident = idents.get(h.ident());
        ident.get(..usize::from(h.name_len)).unwrap_or(ident)
    }

    /// The name of `h` (it was a `str` when written, and is cut at a boundary).
    fn name_of(&self, h: &Held) -> &str {
        core::str::from_utf8(Self::name_bytes(&self.idents, h)).unwrap_or("")
    }

    /// The held record `h`, with its name, address and location.
    fn view<'a>(&'a self, h: &'a Held) -> RecordRef<'a, A> {
        let ident = self.idents.get(h.ident());
        let (name, addr) = ident.split_at(usize::from(h.name_len).min(ident.len()));
        RecordRef {
            held: h,
            name,
            addr,
            tokens: self.tokens.get(h.tokens()),
            location: self.locations.get(h.location),
            kind: PhantomData,
        }
    }

    /// Copies every record's items into new arenas, leaving the garbage behind.
    fn compact(&mut self) {
        let (mut idents, mut tokens) = (Arena::default(), Arena::default());
        for ix in 0..self.held.len() as u32 {
            let Some((ident, tokens_at)) = self.held.get(ix).map(|h| {
                (
                    idents.push(self.idents.get(h.ident())).at,
                    tokens.push(self.tokens.get(h.tokens())).at,
                )
            }) else {
                continue;
            };
            if let Some(h) = self.held.get_mut(ix) {
                h.ident_at = ident;
                h.tokens_at = tokens_at;
            }
        }
        self.idents = idents;
        self.tokens = tokens;
    }

    /// The contribution of `h` to the ring digest, while it is on the ring.
    fn contribution(&self, h: &Held) -> Option<u64> {
        h.status.is_on_ring().then(|| {
            ring_contribution(
                self.name_of(h),
                h.epoch,
                self.locations.get(h.location),
                self.tokens.get(h.tokens()),
            )
        })
    }

    /// The record at `ix`.
    fn at(&self, ix: u32) -> Option<RecordRef<'_, A>> {
        self.held.get(ix).map(|h| self.view(h))
    }

    /// Refills the token filter from the records on the ring, with room for a
    /// [`FILTER_SLACK`]th as many again.
    fn rebuild_filter(&mut self) {
        let on_ring = || self.held.iter().filter(|h| h.status.is_on_ring());
        let tokens: usize = on_ring().map(|h| usize::from(h.tokens_len)).sum();
        let mut filter = TokenFilter::with_room(tokens + tokens / FILTER_SLACK);
        for h in on_ring() {
            for &t in self.tokens.get(h.tokens()) {
                filter.insert(self.seed, t);
            }
        }
        self.ring_tokens = filter;
    }

    /// Whether a record on the ring may hold one of `tokens` (surely none when false).
    fn ring_may_hold(&self, tokens: &[Token]) -> bool {
        tokens
            .iter()
            .any(|&t| self.ring_tokens.may_hold(self.seed, t))
    }

    fn hash(seed: u64, name: &str) -> u64 {
        SeededState(seed).hash_one(name)
    }

    fn find(&self, name: &str) -> Option<u32> {
        let (held, idents) = (&self.held, &self.idents);
        self.index
            .find(Self::hash(self.seed, name), |&ix| {
                held.get(ix)
                    .is_some_and(|h| Self::name_bytes(idents, h) == name.as_bytes())
            })
            .copied()
    }

    fn get(&self, name: &str) -> Option<RecordRef<'_, A>> {
        self.find(name).and_then(|ix| self.at(ix))
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    /// Every record, in the index's order (the order of the map it replaces).
    fn values(&self) -> impl Iterator<Item = RecordRef<'_, A>> + '_ {
        self.index.iter().filter_map(|&ix| self.at(ix))
    }

    fn index_insert(&mut self, name: &str, ix: u32) {
        let (seed, held, idents) = (self.seed, &self.held, &self.idents);
        let name_at = |i: u32| {
            held.get(i)
                .and_then(|h| core::str::from_utf8(Self::name_bytes(idents, h)).ok())
        };
        self.index
            .entry(
                Self::hash(seed, name),
                |&i| name_at(i) == Some(name),
                |&i| name_at(i).map_or(0, |n| Self::hash(seed, n)),
            )
            .insert(ix);
    }

    /// Whether `name`'s record is on the ring (it contributes to the digest).
    fn is_on_ring(&self, name: &str) -> bool {
        self.find(name)
            .and_then(|ix| self.held.get(ix))
            .is_some_and(|h| h.status.is_on_ring())
    }

    /// The names of the records on the ring, in no particular order.
    fn on_ring_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.held
            .iter()
            .filter(|h| h.status.is_on_ring())
            .map(|h| self.name_of(h))
    }

    /// Puts `record` in (replacing any record of its name) with its contribution;
    /// returns the contribution it replaced.
    fn store(&mut self, record: PlacementRecord<A>, contribution: Option<u64>) -> Option<u64> {
        // The status decides whether a held record contributes: the placement part
        // gives a contribution exactly to the records on the ring.
        debug_assert_eq!(contribution.is_some(), record.status.is_on_ring());
        let found = self.find(&record.name);
        // A record replaces its name's in place and keeps its name's and address's
        // bytes when the address is the same, and its tokens' when they are the same
        // (a new version, Joining to Normal).
        let old = found.and_then(|ix| self.held.get(ix));
        let (old_ident, old_tokens) = (old.map(Held::ident), old.map(Held::tokens));
        let mut buf = [0u8; MAX_NAME_LEN + MAX_ADDR_BYTES];
        let (name_len, addr_len) = ident_bytes(&record.name, &record.addr, &mut buf);
        let ident = &buf[..usize::from(name_len) + usize::from(addr_len)];
        let same_ident = old_ident.filter(|&at| self.idents.get(at) == ident);
        let ident = match same_ident {
            Some(at) => at.at,
            None => self.idents.push(ident).at,
        };
        let same_tokens = old_tokens.filter(|&at| *self.tokens.get(at) == *record.tokens);
        let tokens = match same_tokens {
            Some(at) => at,
            None => self.tokens.push(&record.tokens),
        };
        if contribution.is_some() {
            if self.ring_tokens.inserted + record.tokens.len() > self.ring_tokens.room {
                // Rebuilt before this record goes in; it is added below.
                self.rebuild_filter();
            }
            for &t in &record.tokens {
                self.ring_tokens.insert(self.seed, t);
            }
        }
        let held = self.hold(record, (ident, name_len, addr_len), tokens);
        self.on_ring += usize::from(contribution.is_some());
        match found {
            Some(ix) => {
                let old = self.held.get_mut(ix).map(|h| core::mem::replace(h, held));
                let old = old.and_then(|h| {
                    // Before its location is released (and maybe dropped).
                    let contribution = self.contribution(&h);
                    self.locations.release(self.seed, h.location);
                    if same_ident.is_none() {
                        self.idents.free(h.ident());
                    }
                    if same_tokens.is_none() {
                        self.tokens.free(h.tokens());
                    }
                    contribution
                });
                self.on_ring -= usize::from(old.is_some());
                if self.idents.wants_compaction() || self.tokens.wants_compaction() {
                    self.compact();
                }
                old
            }
            None => {
                let ix = self.held.push(held);
                let name = String::from(self.held.get(ix).map_or("", |h| self.name_of(h)));
                self.index_insert(&name, ix);
                None
            }
        }
    }
}

/// The placement part: see the [module docs](self).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "A: crate::Address")]
pub(crate) struct Placement<A> {
    records: Records<A>,
    /// Our own record (also in `records` once we started).
    mine: PlacementRecord<A>,
    started: bool,
    /// Natural replicas: the members on the ring.
    #[serde(skip)]
    ring: RefCell<Ring<Owner>>,
    /// What the ring becomes once the pending joins and leaves complete, if any.
    #[serde(skip)]
    future: RefCell<Option<Ring<Owner>>>,
    #[serde(skip, default = "dirty")]
    ring_dirty: Cell<bool>,
    /// XOR of `h(name, epoch, location, tokens)` over the ring's members: the ring
    /// digest, kept up to date in O(1) per change.
    ring_hash: u64,
    /// The digest last seen at a round, and for how many rounds it has held still.
    stable: (u64, u32),
    /// Which ring members hold which digest (see [`super::agreement`]).
    agreement: Agreement,
    agreed: Option<u64>,
    /// Rounds since we started waiting to allocate, and the joiners and ring we saw
    /// at the last round (allocation waits until they hold still).
    waited: u32,
    seen: u64,
    ready: bool,
    /// Rounds left before a pending join turns Normal or a leave turns Left.
    countdown: u32,
    /// While our tokens are pending: the picture we allocated with (see
    /// [`missed_a_wave_mate`](Self::missed_a_wave_mate)). Not kept in a snapshot: a
    /// restored joiner only skips that check.
    #[serde(skip)]
    allocated_with: Picture,
    /// Whether we started over for a missed wave-mate in this life: at most once, so
    /// that joiners who keep arriving cannot hold a wave back.
    #[serde(skip)]
    started_over: bool,
    /// The ring digest when we first saw each pending member of our wave, by the
    /// hash of its name, while it is (see [`ring_moved_under`](Self::ring_moved_under)).
    /// With the digest, the value of `waited` then.
    #[serde(skip)]
    pending_seen: BTreeMap<u64, (u64, u32)>,
    vnodes: usize,
    replication: Replication,
    max_records: usize,
    /// Records asked for in this round and the last, by the name's hash, with the rank
    /// asked: news of one change comes from several peers at once, and one answer is
    /// enough. An ask that went unanswered is made again after two rounds.
    #[serde(skip)]
    asked: [BTreeMap<u64, Rank>; 2],
    /// Records the datagram being handled may still ask its source for: the answer
    /// is at most two datagrams, and what does not fit is dropped at the source (an
    /// ask past it, remembered, would not be made again for two rounds; news from
    /// other peers asks for the rest sooner).
    #[serde(skip)]
    asks_left: usize,
}

/// Most records one datagram's news may ask its source for: about what the answer,
/// at most two datagrams, carries of records with 16 tokens (about 200 B each).
const MAX_ASKS_PER_DATAGRAM: usize = 12;

/// Most records asked for in one round that are remembered (a flood of news about
/// new names cannot grow the memory; asks past it are made without remembering).
const MAX_ASKED_PER_ROUND: usize = 4_096;

/// What a joiner allocated against, kept while its tokens are pending.
#[derive(Clone, Debug, Default)]
struct Picture {
    /// Its wave's names, sorted.
    wave: Vec<String>,
    /// Whether the wave was cut at its size (more members were Joining): then only
    /// names before its last one belong in it.
    cut: bool,
    /// The hashes of the names on the ring it allocated against, sorted.
    base: Vec<u64>,
}

/// A restored table rebuilds its rings before first use.
fn dirty() -> Cell<bool> {
    Cell::new(true)
}

impl<A: Address> Placement<A> {
    pub fn new(config: &Config, me: &NodeId<A>, hasher: SeededState) -> Self {
        let name = alloc::format!("{:016x}", stable_hash(&me.addr));
        Placement {
            records: Records::new(hasher),
            mine: PlacementRecord {
                name,
                addr: me.addr.clone(),
                generation: me.generation,
                version: 0,
                epoch: 0,
                status: Topology::Joining,
                location: Location::default(),
                tokens: Vec::new(),
            },
            started: false,
            ring: RefCell::new(Ring::default()),
            future: RefCell::new(None),
            ring_dirty: Cell::new(false),
            ring_hash: 0,
            stable: (0, 0),
            agreement: Agreement::default(),
            agreed: None,
            waited: 0,
            seen: 0,
            ready: false,
            countdown: 0,
            allocated_with: Picture::default(),
            started_over: false,
            pending_seen: BTreeMap::new(),
            vnodes: config.vnodes,
            replication: config.replication(),
            max_records: 2 * (config.max_members + 1),
            asked: Default::default(),
            asks_left: 0,
        }
    }

    // ----- our own record -----------------------------------------------------------

    /// Our name.
    pub fn name(&self) -> &str {
        &self.mine.name
    }

    /// What to save across restarts.
    pub fn local(&self) -> LocalPlacement {
        LocalPlacement {
            name: self.mine.name.clone(),
            location: self.mine.location.clone(),
            tokens: self.mine.tokens.clone(),
            epoch: self.mine.epoch,
            status: self.started.then_some(self.mine.status),
        }
    }

    /// Takes what a previous life saved (before we start).
    pub fn restore(&mut self, saved: LocalPlacement) -> Result<(), RestoreError> {
        if self.started {
            return Err(RestoreError::AlreadyStarted);
        }
        if saved.name.is_empty() || saved.name.len() > MAX_NAME_LEN {
            return Err(RestoreError::BadName);
        }
        if saved.location.datacenter.len() > MAX_NAME_LEN
            || saved.location.rack.len() > MAX_NAME_LEN
        {
            return Err(RestoreError::BadName);
        }
        let sorted = saved.tokens.windows(2).all(|w| w[0] < w[1]);
        if !sorted || saved.tokens.len() > self.vnodes.max(1) * 4 {
            return Err(RestoreError::BadTokens);
        }
        let gone = saved.status.is_some_and(Topology::is_gone);
        self.mine.name = saved.name;
        self.mine.location = saved.location;
        if !gone && !saved.tokens.is_empty() && saved.epoch > 0 {
            self.mine.tokens = saved.tokens;
            self.mine.epoch = saved.epoch;
        }
        Ok(())
    }

    /// We joined: announce our record. With saved tokens we take them back at once (a
    /// restart moves nothing); the first node of a cluster takes random tokens; any
    /// other node waits to learn the ring, then allocates.
    pub fn start(&mut self, rng: &mut impl RngCore, first: bool) -> Option<PlacementRecord<A>> {
        if self.started && !self.mine.status.is_gone() {
            return None;
        }
        self.started = true;
        if self.vnodes == 0 {
            return None;
        }
        if !self.mine.tokens.is_empty() {
            self.mine.status = Topology::Normal;
        } else if first {
            self.mine.tokens = random_tokens(self.vnodes, rng);
            self.mine.epoch = self.mine.generation.max(1);
            self.mine.status = Topology::Normal;
        } else {
            self.mine.status = Topology::Joining;
            self.waited = 0;
            self.ready = false;
        }
        Some(self.publish())
    }

    /// Decommission: Leaving now, Left after the ring delay. Returns our new record,
    /// or `None` when we hold no ranges (then we may go at once).
    pub fn leave(&mut self) -> Option<PlacementRecord<A>> {
        if !self.started || self.vnodes == 0 {
            return None;
        }
        match self.mine.status {
            Topology::Normal => {
                self.mine.status = Topology::Leaving;
                self.countdown = RING_DELAY_ROUNDS;
            }
            Topology::Joining => {
                self.mine.status = Topology::Left;
                self.mine.tokens.clear();
            }
            _ => return None,
        }
        Some(self.publish())
    }

    /// Whether we are still on our way out (Leaving).
    pub fn is_leaving(&self) -> bool {
        self.mine.status == Topology::Leaving
    }

    /// Whether we are a Normal member and the cluster agrees on the ring we hold.
    pub fn is_ready(&self) -> bool {
        (self.vnodes == 0 || self.mine.status == Topology::Normal)
            && self.agreed == Some(self.ring_hash)
    }

    /// Our topology state.
    pub fn status(&self) -> Topology {
        self.mine.status
    }

    fn publish(&mut self) -> PlacementRecord<A> {
        self.mine.version += 1;
        let mine = self.mine.clone();
        self.store(mine.clone());
        mine
    }

    /// A peer's view equals ours: we know the ring, so we may allocate at the next round.
    pub fn peer_in_sync(&mut self) {
        self.ready = true;
    }

    // ----- records ------------------------------------------------------------------

    /// A record arrived. Returns whether it was news (to pass it on), refused (counted),
    /// or stale, and our own new record if it told us that we were removed.
    ///
    /// Besides rank, three rules protect the ring from forged records: a member on the
    /// ring keeps its tokens until it leaves or is removed (a record giving it other
    /// tokens is refused); no record may claim a token held by another member on the
    /// ring (the incumbent keeps it, on every node alike); and a removal of a member
    /// this node sees alive is refused (an operator removes only dead members).
    pub fn on_record(
        &mut self,
        record: PlacementRecord<A>,
        is_live: &dyn Fn(&A) -> bool,
        out: &mut dyn FnMut(Event<A>),
    ) -> (Received, Option<PlacementRecord<A>>) {
        if !record.is_valid(self.vnodes.max(1) * 4) {
            return (Received::Refused, None);
        }
        if record.name == self.mine.name {
            // Only we write our record; an operator's removal of a previous life's
            // tokens is the one exception, and then we come back as a new member with
            // new tokens. A removal of this very life (we are alive) is refused.
            let removes_us = record.status == Topology::Removed
                && self.mine.epoch > 0
                && record.epoch >= self.mine.epoch
                && record.generation < self.mine.generation;
            if !removes_us || !self.started {
                return (Received::Stale, None);
            }
            self.store(record);
            self.mine.tokens.clear();
            self.mine.epoch = 0;
            self.mine.status = Topology::Joining;
            self.waited = 0;
            self.ready = false;
            out(Event::PlacementChanged(Box::new(self.local())));
            // Our new record (no tokens, epoch 0) ranks below the removal elsewhere,
            // so peers keep showing the removal until we take new tokens.
            return (Received::News, Some(self.publish()));
        }
        let old = self.records.get(&record.name);
        if old.is_some_and(|r| r.rank() >= record.rank()) {
            return (Received::Stale, None);
        }
        // The table holds at most twice a full member table: a flood of new names
        // cannot grow it without bound (names of real members, gone ones included,
        // fit with room to spare).
        if old.is_none() && self.records.len() >= self.max_records {
            return (Received::Refused, None);
        }
        if !self.records.can_hold(&record) {
            return (Received::Refused, None);
        }
        if let Some(old) = old.filter(|r| r.status().is_on_ring()) {
            let keeps_tokens = record.epoch == old.epoch() && *record.tokens == *old.tokens();
            let departs = matches!(record.status, Topology::Left | Topology::Removed);
            if !keeps_tokens && !departs {
                return (Received::Refused, None);
            }
            if record.status == Topology::Removed && old.addr().is_some_and(|a| is_live(&a)) {
                return (Received::Refused, None);
            }
        }
        if !record.tokens.is_empty() && self.held_by_another(&record) {
            return (Received::Refused, None);
        }
        let before = self.records.get(&record.name).map(|r| r.status());
        if before != Some(record.status) {
            out(Event::Topology {
                name: record.name.clone(),
                status: record.status,
            });
        }
        self.store(record);
        (Received::News, None)
    }

    /// Whether one of `record`'s tokens belongs to another member on the ring.
    fn held_by_another(&self, record: &PlacementRecord<A>) -> bool {
        if !self.records.ring_may_hold(&record.tokens) {
            return false;
        }
        let theirs: BTreeSet<Token> = record.tokens.iter().copied().collect();
        self.records.values().any(|r| {
            r.name() != record.name
                && r.status().is_on_ring()
                && r.tokens().iter().any(|t| theirs.contains(t))
        })
    }

    /// Stores a record and updates the ring's inputs.
    fn store(&mut self, record: PlacementRecord<A>) {
        let contribution = record.status.is_on_ring().then(|| {
            ring_contribution(&record.name, record.epoch, &record.location, &record.tokens)
        });
        let old = self.records.store(record, contribution);
        if old != contribution {
            self.ring_hash ^= old.unwrap_or(0) ^ contribution.unwrap_or(0);
        }
        self.ring_dirty.set(true);
    }

    /// The record of `name`, as we hold it.
    pub fn record(&self, name: &str) -> Option<RecordRef<'_, A>> {
        self.records.get(name)
    }

    /// The index of `name`'s record, if we hold one.
    pub fn index_of(&self, name: &str) -> Option<RecordIx> {
        self.records.find(name).map(RecordIx)
    }

    /// The record at `ix`.
    pub fn record_at(&self, ix: RecordIx) -> Option<RecordRef<'_, A>> {
        self.records.at(ix.0)
    }

    /// The rank of `name`'s record, if we hold one.
    pub fn rank_of(&self, name: &str) -> Option<Rank> {
        self.records.get(name).map(RecordRef::rank)
    }

    /// Whether to ask the sender of news of `name`'s record at `rank` for it: we
    /// [lack](Self::lacks) it, have not asked for it (or better) in this round or the
    /// last, and this datagram's answer has room left. Remembers the ask.
    pub fn want(&mut self, name: &str, rank: Rank) -> bool {
        if self.asks_left == 0 || !self.lacks(name, rank) {
            return false;
        }
        let key = Records::<A>::hash(self.records.seed, name);
        if self
            .asked
            .iter()
            .any(|a| a.get(&key).is_some_and(|r| *r >= rank))
        {
            return false;
        }
        if self.asked[0].len() < MAX_ASKED_PER_ROUND {
            self.asked[0].insert(key, rank);
        }
        self.asks_left -= 1;
        true
    }

    /// The record that news of `name` at `rank` and `status` tells, when we can write
    /// it from the record we hold: the same writer's life and the same tokens' epoch,
    /// and a change of status that keeps the tokens (Joining with tokens → Normal,
    /// → Leaving) in the very next version, or clears them (→ Left) in any later one.
    /// A member's address and location are those of its life, and its tokens change
    /// only by a new allocation, which is a version of its own: the epoch alone does
    /// not tell (it is the writer's generation, so a joiner that started over and
    /// allocated again has the same epoch and other tokens). A removal (written by an
    /// operator) and an allocation are pulled.
    ///
    /// At N = 1,024 a mass join's Normal records were a third of the records pulled
    /// (about 140 kB per node, each record about 130 B with 16 tokens).
    pub fn derive(&self, name: &str, rank: Rank, status: Topology) -> Option<PlacementRecord<A>> {
        let held = self.records.get(name)?;
        let (epoch, removed, generation, version) = rank;
        let (held_epoch, held_removed, held_generation, held_version) = held.rank();
        let next = held_version.checked_add(1) == Some(version);
        if removed
            || held_removed
            || (held_epoch, held_generation) != (epoch, generation)
            || held_version >= version
            || (!next && status != Topology::Left)
        {
            return None;
        }
        let has_tokens = !held.tokens().is_empty();
        let derivable = match (held.status(), status) {
            (Topology::Joining, Topology::Normal) => has_tokens,
            (Topology::Joining | Topology::Normal, Topology::Leaving) => has_tokens,
            (Topology::Joining | Topology::Normal | Topology::Leaving, Topology::Left) => true,
            _ => false,
        };
        if !derivable {
            return None;
        }
        let mut record = held.to_record()?;
        record.status = status;
        record.version = version;
        if status == Topology::Left {
            record.tokens.clear();
        }
        Some(record)
    }

    /// A datagram begins: its news may ask for at most [`MAX_ASKS_PER_DATAGRAM`] records
    /// (see [`want`](Self::want)).
    pub fn new_datagram(&mut self) {
        self.asks_left = MAX_ASKS_PER_DATAGRAM;
    }

    /// Whether we hold `name`'s record at exactly `rank` (news of it is an echo).
    pub fn holds(&self, name: &str, rank: Rank) -> bool {
        self.rank_of(name) == Some(rank)
    }

    /// Whether news of `name`'s record at `rank` is worth asking for: a name a record
    /// can have, and a rank above ours.
    pub fn lacks(&self, name: &str, rank: Rank) -> bool {
        !name.is_empty()
            && name.len() <= super::MAX_NAME_LEN
            && self.rank_of(name).is_none_or(|ours| ours < rank)
    }

    /// Every record we hold, tombstones (Left, Removed) included.
    pub fn records(&self) -> impl Iterator<Item = RecordRef<'_, A>> + '_ {
        self.records.values()
    }

    /// What the anti-entropy summary holds for `name`.
    pub fn leaf_hash(&self, name: &str) -> Option<u64> {
        self.records
            .get(name)
            .map(|r| stable_hash(&(name, r.rank())))
    }

    /// An operator removes a dead member: its tokens leave the ring on every node.
    pub fn remove(
        &mut self,
        name: &str,
        members: &Membership<A>,
    ) -> Result<PlacementRecord<A>, RemoveError> {
        if name == self.mine.name {
            return Err(RemoveError::IsSelf);
        }
        let record = self.records.get(name).ok_or(RemoveError::Unknown)?;
        if record.status().is_gone() {
            return Err(RemoveError::AlreadyGone);
        }
        if record
            .addr()
            .is_some_and(|a| liveness(members, &a, &self.mine.addr).is_live())
        {
            return Err(RemoveError::NotDead);
        }
        let removal = PlacementRecord {
            status: Topology::Removed,
            tokens: Vec::new(),
            ..record.to_record().ok_or(RemoveError::Unknown)?
        };
        self.store(removal.clone());
        Ok(removal)
    }

    // ----- the round ----------------------------------------------------------------

    /// Once per gossip round: allocate when the ring and the other joiners have held
    /// still, check a proposal for clashes, and count down to Normal or Left.
    pub fn round(&mut self, out: &mut dyn FnMut(Event<A>)) -> RoundOutcome<A> {
        let mut outcome = RoundOutcome {
            publish: None,
            left: false,
        };
        self.asked.swap(0, 1);
        self.asked[0].clear();
        if !self.started || self.vnodes == 0 {
            return outcome;
        }
        match (self.mine.status, self.mine.tokens.is_empty()) {
            (Topology::Joining, true) => {
                self.waited = self.waited.saturating_add(1);
                let wave = self.wave();
                let my_turn = wave.contains(&self.mine.name.as_str());
                // The picture we would allocate against: the wave and the ring. The
                // ring digest stands for the base (it is kept as records change, where
                // hashing the base took O(tokens) every round of every waiting
                // joiner); with several datacenters a change in another one only
                // makes us wait a round more.
                let seen = stable_hash(&(&wave, self.ring_hash));
                let pending = self.pending_in(&wave);
                let still = seen == self.seen;
                self.seen = seen;
                let overtaken = self.ring_moved_under(&pending);
                let settled = still && my_turn && (self.waited > LEARN_ROUNDS || self.ready);
                // Overtaken only by our own doubt if the allocation our picture gives
                // our pending wave-mates is, for most of them, the one they took.
                let checked = if settled && overtaken {
                    self.pending_took_our_picture()
                } else {
                    None
                };
                if settled && (!overtaken || checked.is_some()) {
                    self.allocate(checked);
                    self.countdown = RING_DELAY_ROUNDS;
                    outcome.publish = Some(self.publish());
                    out(Event::PlacementChanged(Box::new(self.local())));
                }
            }
            (Topology::Joining, false) => {
                let missed = !self.started_over && self.missed_a_wave_mate();
                if missed || self.clashes() {
                    // Someone with a better claim holds one of our tokens, or we
                    // allocated without a wave-mate's record: start over.
                    self.started_over |= missed;
                    self.mine.tokens.clear();
                    self.mine.epoch = 0;
                    self.waited = 0;
                    self.allocated_with = Picture::default();
                    // `waited` counts again from 0: first sightings are counted anew.
                    self.pending_seen.clear();
                    outcome.publish = Some(self.publish());
                    // The tokens saved at the allocation are no longer ours.
                    out(Event::PlacementChanged(Box::new(self.local())));
                } else if self.countdown <= 1 {
                    self.allocated_with = Picture::default();
                    self.mine.status = Topology::Normal;
                    outcome.publish = Some(self.publish());
                    out(Event::PlacementChanged(Box::new(self.local())));
                } else {
                    self.countdown -= 1;
                }
            }
            (Topology::Leaving, _) => {
                if self.countdown <= 1 {
                    self.mine.status = Topology::Left;
                    self.mine.tokens.clear();
                    outcome.publish = Some(self.publish());
                    outcome.left = true;
                    out(Event::PlacementChanged(Box::new(self.local())));
                } else {
                    self.countdown -= 1;
                }
            }
            _ => {}
        }
        outcome
    }

    /// The wave we allocate with: the first `max(JOIN_WAVE, WAVE_GROWTH · R)` Joining
    /// members of our datacenter by name (with or without tokens yet), for the `R`
    /// members on its ring. They allocate together; the next ones once those turned
    /// Normal. Allocation waits until the wave and the ring it allocates against hold
    /// still for a round.
    ///
    /// Waves keep a wave's picture still while its members allocate, and each
    /// joiner's work in proportion to the ring it joins: the allocator admits a wave
    /// in batches of a quarter of the ring so far anyway, so a wave many times the
    /// ring balances as well as several small ones, and each wave costs a ring delay
    /// and two spreads (see [`WAVE_GROWTH`] for what each size cost at 1,024 nodes).
    /// The first wave stays small: it allocates while the membership claims of the
    /// mass join are still spreading.
    fn wave(&self) -> Vec<&str> {
        self.wave_and_cut().0
    }

    /// [`wave`](Self::wave), and whether it was cut at the wave's size (more members
    /// were Joining).
    fn wave_and_cut(&self) -> (Vec<&str>, bool) {
        let dc = &self.mine.location.datacenter;
        let mut on_ring = 0usize;
        let mut names: Vec<&str> = Vec::new();
        for r in self.records.values() {
            if r.location().datacenter != *dc {
                continue;
            }
            if r.status() == Topology::Joining {
                names.push(r.name());
            } else if r.status().is_on_ring() {
                on_ring += 1;
            }
        }
        let size = wave_size(on_ring);
        // The first `size` by name, without sorting them all (hundreds wait at once
        // in a mass join, and each asks every round).
        let cut = names.len() > size;
        if cut {
            names.select_nth_unstable(size);
            names.truncate(size);
        }
        names.sort_unstable();
        (names, cut)
    }

    /// Whether the ring changed since we first saw a member of our wave pending
    /// (`pending`: the hashes of their names, sorted). Then one of its wave-mates
    /// turned Normal before it, which freed its place in the wave for the next name
    /// by order; that name's picture (the rest of the wave, itself, and a ring with
    /// the early one on it) is no wave-mate's, and its tokens would split the ranges
    /// the wave took (a 100-node mass join ended at max/mean 1.15–1.18 at RF 3 on
    /// two seeds of thirty, against 1.05–1.09). We allocate only against the ring
    /// our pending wave-mates allocated against, or once none is pending (the next
    /// wave).
    ///
    /// A member pending for [`PENDING_PATIENCE`] of our rounds no longer holds us
    /// back: one that crashed while pending would otherwise block every later joiner
    /// whose wave it falls in.
    fn ring_moved_under(&mut self, pending: &[u64]) -> bool {
        let (ring, now) = (self.ring_hash, self.waited);
        self.pending_seen
            .retain(|k, _| pending.binary_search(k).is_ok());
        let mut moved = false;
        for &k in pending {
            let (seen, since) = *self.pending_seen.entry(k).or_insert((ring, now));
            moved |= seen != ring && now.saturating_sub(since) < PENDING_PATIENCE;
        }
        moved
    }

    /// The other members of `wave` that hold pending tokens: their place in the wave,
    /// their name and their tokens.
    fn pending_mates<'w>(
        &'w self,
        wave: &'w [&'w str],
    ) -> impl Iterator<Item = (usize, &'w str, &'w [Token])> + 'w {
        wave.iter()
            .enumerate()
            .filter(move |(_, n)| **n != self.mine.name)
            .filter_map(move |(k, n)| {
                let r = self.records.get(n)?;
                (r.status() == Topology::Joining && !r.tokens().is_empty())
                    .then(|| (k, *n, r.tokens()))
            })
    }

    /// The hashes of the names of the other members of `wave` that hold pending
    /// tokens, sorted.
    fn pending_in(&self, wave: &[&str]) -> Vec<u64> {
        let mut pending: Vec<u64> = self
            .pending_mates(wave)
            .map(|(_, n, _)| Records::<A>::hash(self.records.seed, n))
            .collect();
        pending.sort_unstable();
        pending
    }

    /// Whether a member that belongs in the wave we allocated with was not in it: its
    /// record reached us only after we allocated (by then it may be Normal already:
    /// any member that was neither in our wave nor on the ring we allocated against). Our wave-mates that held it computed
    /// the wave's allocation with it, and our tokens from another picture would split
    /// the ranges they took (a 100-node mass join ended at max/mean 1.15–1.18 at RF 3
    /// on two seeds of thirty, against 1.05–1.09). Noticed within the ring delay, we
    /// start over and join the next wave. A member that began to join after we
    /// allocated looks the same, so we start over at most once.
    fn missed_a_wave_mate(&self) -> bool {
        let Picture { wave, cut, base } = &self.allocated_with;
        let Some(last) = wave.last() else {
            return false;
        };
        let dc = &self.mine.location.datacenter;
        let seed = self.records.seed;
        self.records.values().any(|r| {
            (r.status() == Topology::Joining || r.status().is_on_ring())
                && r.location().datacenter == *dc
                && (!cut || r.name() < last.as_str())
                && wave.binary_search_by(|n| n.as_str().cmp(r.name())).is_err()
                && base
                    .binary_search(&Records::<A>::hash(seed, r.name()))
                    .is_err()
        })
    }

    /// The tokens a wave allocates against: the members on the ring in our datacenter.
    fn base(&self) -> impl Iterator<Item = RecordRef<'_, A>> + '_ {
        let dc = &self.mine.location.datacenter;
        self.records
            .values()
            .filter(move |r| r.location().datacenter == *dc && r.status().is_on_ring())
    }

    fn base_hash(&self) -> u64 {
        // `str` and `[Token]` hash as the record's `String` and `Vec` did.
        self.base()
            .fold(0, |h, r| h ^ stable_hash(&(r.name(), r.tokens())))
    }

    /// Joint allocation: our wave of joiners, in name order, against the base ring,
    /// with an RNG seeded from both. Joiners that see the same picture compute the same
    /// tokens, so they neither collide nor unbalance each other (as if they had joined
    /// one at a time); we take our share. Joiners that saw different pictures may
    /// clash: [`clashes`](Self::clashes) settles that.
    ///
    /// `computed` is the joint allocation of this wave, when
    /// [`pending_took_our_picture`](Self::pending_took_our_picture) has just computed it
    /// up to our batch or beyond.
    fn allocate(&mut self, computed: Option<Vec<Vec<Token>>>) {
        let (joiners, cut) = self.wave_and_cut();
        let seed = self.records.seed;
        let mut on_ring: Vec<u64> = self
            .base()
            .map(|r| Records::<A>::hash(seed, r.name()))
            .collect();
        on_ring.sort_unstable();
        let allocated_with = Picture {
            wave: joiners.iter().map(|n| String::from(*n)).collect(),
            cut,
            base: on_ring,
        };
        let me = joiners
            .iter()
            .position(|n| *n == self.mine.name)
            .unwrap_or(0);
        let mut all = computed.unwrap_or_else(|| self.joint_allocation(&joiners, me));
        let tokens = if me < all.len() {
            all.swap_remove(me)
        } else {
            Vec::new()
        };
        self.mine.tokens = tokens;
        self.mine.epoch = self.mine.generation.max(1);
        self.allocated_with = allocated_with;
    }

    /// Whether most of our pending wave-mates allocated against the picture we see
    /// now (our wave, and the ring), though the ring moved since we first saw some of
    /// them pending (see [`ring_moved_under`](Self::ring_moved_under)): the joint
    /// allocation our picture gives them is the tokens they hold. Its RNG is seeded
    /// from the whole picture, so a match means the same picture and a mismatch
    /// another; we join the picture that more of them took (those that took another
    /// are at odds with the rest of the wave whatever we do). The ring moves under a
    /// joiner when the last members of the previous wave turn Normal while its
    /// wave-mates allocate; without this check such a joiner sat out its wave and
    /// joined once the whole wave was Normal, a ring delay and an agreement later
    /// (seed 1, N = 1,024: seven joiners allocated at 22–24 s, the rest of their wave
    /// at 13–15 s; with it, one, which had started over).
    ///
    /// The wave-mates compared are those in the joint allocation's batches up to our
    /// own (or up to the first pending one, if that is later): our tokens need those
    /// batches anyway, and the allocation is returned for us to take our share. Up to
    /// the first pending mate alone, one early mate that took another picture (it saw
    /// the previous wave's last member still pending) outvoted the rest of the wave
    /// for good: seed 1, N = 1,024, a joiner of the second wave waited out the whole
    /// wave and allocated alone at 24 s, which held the ring's agreement to 36 s.
    fn pending_took_our_picture(&self) -> Option<Vec<Vec<Token>>> {
        let wave = self.wave();
        let me = wave.iter().position(|n| *n == self.mine.name)?;
        let pending: Vec<(usize, &[Token])> = self
            .pending_mates(&wave)
            .map(|(k, _, tokens)| (k, tokens))
            .collect();
        let &(first, _) = pending.first()?;
        let all = self.joint_allocation(&wave, me.max(first));
        let (mut same, mut other) = (0usize, 0usize);
        for (k, held) in pending {
            let Some(ours) = all.get(k).filter(|t| !t.is_empty()) else {
                continue;
            };
            // Both are sorted: a record's tokens are, and so is an allocation's.
            if ours.as_slice() == held {
                same += 1;
            } else {
                other += 1;
            }
        }
        (same > other).then_some(all)
    }

    /// The joint allocation of `joiners` (a wave, by name) against the base ring, with
    /// an RNG seeded from both, computed up to the batch of joiner `upto` (later
    /// joiners get no tokens).
    fn joint_allocation(&self, joiners: &[&str], upto: usize) -> Vec<Vec<Token>> {
        let dc = self.mine.location.datacenter.clone();
        let base = Ring::new_located(
            self.base()
                .map(|r| (owner_of(r), r.tokens().to_vec(), r.location().clone())),
        );
        let seed = stable_hash(&(&joiners, self.base_hash()));
        let mut rng = SplitMix(seed);
        let rf = replicas_in(&self.replication, &dc).clamp(1, 2 * ALLOCATION_RF);
        let locations: Vec<Location> = joiners
            .iter()
            .map(|n| {
                self.records
                    .get(n)
                    .map_or_else(|| self.mine.location.clone(), |r| r.location().clone())
            })
            .collect();
        let replication = match &self.replication {
            Replication::Simple(_) => Replication::Simple(rf),
            Replication::PerDatacenter(_) => Replication::PerDatacenter(alloc::vec![(dc, rf)]),
        };
        allocate_located_upto(&base, &locations, self.vnodes, &replication, upto, &mut rng)
    }

    /// Whether a token we propose is held by a better claim: a member on the ring, or
    /// a joiner that took it in an earlier epoch or with a smaller name.
    fn clashes(&self) -> bool {
        let mine: BTreeSet<Token> = self.mine.tokens.iter().copied().collect();
        let key = (self.mine.epoch, self.mine.name.as_str());
        self.records.values().any(|r| {
            r.name() != self.mine.name
                && (r.status().is_on_ring()
                    || (r.status() == Topology::Joining && (r.epoch(), r.name()) < key))
                && r.tokens().iter().any(|t| mine.contains(t))
        })
    }

    // ----- the ring -----------------------------------------------------------------

    fn rebuild(&self) {
        if !self.ring_dirty.get() {
            return;
        }
        let (Ok(mut ring), Ok(mut future)) =
            (self.ring.try_borrow_mut(), self.future.try_borrow_mut())
        else {
            return;
        };
        *ring = Ring::new_located(
            self.records
                .values()
                .filter(|r| r.status().is_on_ring())
                .map(|r| (owner_of(r), r.tokens().to_vec(), r.location().clone())),
        );
        let moving = self.records.values().any(|r| {
            r.status() == Topology::Leaving
                || (r.status() == Topology::Joining && !r.tokens().is_empty())
        });
        *future = moving.then(|| {
            Ring::new_located(
                self.records
                    .values()
                    .filter(|r| {
                        r.status() == Topology::Normal
                            || (r.status() == Topology::Joining && !r.tokens().is_empty())
                    })
                    .map(|r| (owner_of(r), r.tokens().to_vec(), r.location().clone())),
            )
        });
        self.ring_dirty.set(false);
    }

    /// The ring of natural replicas, as this node sees it.
    pub fn ring(&self) -> Ref<'_, Ring<Owner>> {
        self.rebuild();
        self.ring.borrow()
    }

    /// The ring digest: a function of placement alone (name, epoch, location and
    /// tokens of every member on the ring). Two nodes with the same digest build the
    /// same ring.
    pub fn digest(&self) -> u64 {
        self.ring_hash
    }

    /// The tokens `name` holds, as this node sees it.
    pub fn tokens_of(&self, name: &str) -> Vec<Token> {
        self.records
            .get(name)
            .map(|r| r.tokens().to_vec())
            .unwrap_or_default()
    }

    /// The natural replicas of `key` with their liveness, and the pending replicas of
    /// its range while members join or leave.
    pub fn route(&self, key: &[u8], members: &Membership<A>) -> ReplicaSet<A> {
        let token = token_for(key);
        self.rebuild();
        let replica = |o: &Owner| {
            let r = self.records.get(&o.name)?;
            let addr = r.addr()?;
            Some(Replica {
                state: liveness(members, &addr, &self.mine.addr),
                id: NodeId::new(addr, r.generation()),
                name: r.name().into(),
                topology: r.status(),
            })
        };
        let ring = self.ring.borrow();
        let replicas: Vec<Replica<A>> = ring
            .replicas_for(token, &self.replication)
            .into_iter()
            .filter_map(replica)
            .collect();
        let pending = match self.future.borrow().as_ref() {
            Some(future) => future
                .replicas_for(token, &self.replication)
                .into_iter()
                .filter(|o| !replicas.iter().any(|r| r.name == o.name))
                .filter_map(replica)
                .collect(),
            None => Vec::new(),
        };
        ReplicaSet {
            token,
            replicas,
            pending,
        }
    }

    // ----- agreement ----------------------------------------------------------------

    /// Once per round: when our digest has held still for two rounds and the
    /// agreement is about another, the agreement starts over about ours (our own bit
    /// set); then the segments that learned bits since the last round, to spread, and
    /// `RingAgreed` when every live member on the ring holds our digest.
    pub fn agreement_round(&mut self, members: &Membership<A>) -> AgreementRound<A> {
        let mut round = AgreementRound {
            spread: Vec::new(),
            pull: None,
            agreed: None,
        };
        if !self.has_agreement() {
            return round;
        }
        let digest = self.ring_hash;
        if self.stable.0 != digest {
            self.stable = (digest, 0);
            return round;
        }
        self.stable.1 = self.stable.1.saturating_add(1);
        if self.stable.1 >= 2 && self.agreement.digest() != Some(digest) {
            self.start_agreement();
        }
        for segment in self.agreement.take_dirty() {
            if let Some((digest, segment, bits)) = self.agreement.segment(segment) {
                round.spread.push((
                    segment,
                    Message::Agreement {
                        digest,
                        segment,
                        bits,
                    },
                ));
            }
        }
        if self.agreement.digest() != Some(digest) || self.agreed == Some(digest) {
            return round;
        }
        // Not agreed yet: the first live member on the ring whose bit we lack.
        let me = &self.mine.addr;
        let missing = self.records.on_ring_names().find(|name| {
            !self.agreement.holds(name)
                && self
                    .records
                    .get(name)
                    .and_then(RecordRef::addr)
                    .is_some_and(|a| liveness(members, &a, me).is_live())
        });
        match missing.and_then(|name| self.agreement.segment_of(name)) {
            None => {
                self.agreed = Some(digest);
                round.agreed = Some(Event::RingAgreed { digest });
            }
            Some(segment) => {
                round.pull = self
                    .agreement
                    .segment(segment)
                    .map(|(digest, segment, bits)| Message::Agreement {
                        digest,
                        segment,
                        bits,
                    });
            }
        }
        round
    }

    /// Whether we take part in agreements: we place tokens, and a ring exists.
    fn has_agreement(&self) -> bool {
        self.vnodes != 0 && self.records.on_ring != 0
    }

    /// Starts the agreement over about our ring digest, with our own bit set if we
    /// are on that ring.
    fn start_agreement(&mut self) {
        let mine = self
            .records
            .is_on_ring(&self.mine.name)
            .then_some(self.mine.name.as_str());
        self.agreement
            .reset(self.ring_hash, self.records.on_ring_names(), mine);
    }

    /// A peer's agreement segment: merged if it is about our digest. A peer that lacks
    /// bits we hold gets our (merged) segment back.
    ///
    /// A segment about the digest we hold starts our agreement about it at once, even
    /// if our digest has not held still for two rounds: some node's did, on the same
    /// ring (the first to start; the others joined on a segment, as we do). Otherwise
    /// the last node to learn the final ring would hold everyone's agreement back by
    /// those two rounds (its bit is the last one missing), and then by one more, as
    /// its segment would go out only with its next round; this way its bit goes back
    /// to the peer in the reply.
    pub fn on_agreement(&mut self, digest: u64, segment: u16, bits: &[u8]) -> AgreementReceipt<A> {
        if digest == self.ring_hash
            && self.agreement.digest() != Some(digest)
            && self.has_agreement()
        {
            self.start_agreement();
        }
        match self.agreement.merge(digest, segment, bits) {
            Merged::Taken {
                learned: false,
                ahead: false,
            } => AgreementReceipt::Same,
            Merged::Other | Merged::Taken { ahead: false, .. } => AgreementReceipt::Taken,
            Merged::Refused => AgreementReceipt::Refused,
            Merged::Taken { ahead: true, .. } => match self.agreement.segment(segment) {
                Some((digest, segment, bits)) => AgreementReceipt::Behind(Message::Agreement {
                    digest,
                    segment,
                    bits,
                }),
                None => AgreementReceipt::Taken,
            },
        }
    }
}

/// What [`Placement::agreement_round`] asks of the node.
pub(crate) struct AgreementRound<A> {
    /// Segments of our agreement to spread as rumours, by segment index.
    pub spread: Vec<(u16, Message<A>)>,
    /// Until we agree: our segment with the first missing bit, for one live member
    /// (it answers with its own if it holds bits we lack).
    pub pull: Option<Message<A>>,
    /// `RingAgreed`, when it is reached.
    pub agreed: Option<Event<A>>,
}

/// What a peer's agreement segment did.
pub(crate) enum AgreementReceipt<A> {
    /// Merged, or about another digest.
    Taken,
    /// About our digest, and the very bits we hold in that segment: an echo of our
    /// own spreading of it (see `Rumours::echo`).
    Same,
    /// Malformed for our digest: dropped, counted.
    Refused,
    /// The peer lacks bits we hold: send it this, our segment.
    Behind(Message<A>),
}

/// The ring owner of a record.
fn owner_of<A: Address>(r: RecordRef<'_, A>) -> Owner {
    Owner {
        epoch: r.epoch(),
        name: r.name().into(),
    }
}

/// A record holder's liveness: ourselves are alive; anyone else as membership sees the
/// process at its address, and dead if membership does not know it.
fn liveness<A: Address>(members: &Membership<A>, addr: &A, me: &A) -> Status {
    if addr == me {
        return Status::Alive;
    }
    members.get(addr).map_or(Status::Dead, |m| m.status)
}

impl Owner {
    /// The owner's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The generation at which the owner took its tokens.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl core::fmt::Display for Owner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The replica count of datacenter `dc` under `replication`.
fn replicas_in(replication: &Replication, dc: &str) -> usize {
    match replication {
        Replication::Simple(rf) => *rf,
        Replication::PerDatacenter(dcs) => dcs.iter().find(|(d, _)| d == dc).map_or(0, |(_, n)| *n),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::membership::MemberClaim;
    use crate::time::Instant;
    use alloc::vec;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn config() -> Config {
        Config::lan("t")
    }

    fn placement(addr: u32, name: &str) -> Placement<u32> {
        let mut p = Placement::new(&config(), &NodeId::new(addr, 10), SeededState(1));
        p.restore(LocalPlacement {
            name: name.into(),
            ..LocalPlacement::default()
        })
        .expect("restore");
        p
    }

    fn record(name: &str, addr: u32, status: Topology, tokens: Vec<Token>) -> PlacementRecord<u32> {
        PlacementRecord {
            name: name.into(),
            addr,
            generation: 5,
            version: 1,
            epoch: if tokens.is_empty() { 0 } else { 5 },
            status,
            location: Location::default(),
            tokens,
        }
    }

    fn members(alive: &[u32], dead: &[u32]) -> Membership<u32> {
        let mut m = Membership::new(NodeId::new(1, 10), 64, SeededState(1));
        for &a in alive.iter().chain(dead) {
            let claim = MemberClaim {
                id: NodeId::new(a, 5),
                incarnation: 0,
                status: Status::Alive,
            };
            m.apply(&claim, Instant::ZERO);
        }
        for &a in dead {
            let claim = MemberClaim {
                id: NodeId::new(a, 5),
                incarnation: 0,
                status: Status::Dead,
            };
            m.apply(&claim, Instant::ZERO);
        }
        m
    }

    fn feed(p: &mut Placement<u32>, r: PlacementRecord<u32>) -> (bool, Vec<Event<u32>>) {
        let mut events = Vec::new();
        let (news, _) = p.on_record(r, &|_| false, &mut |e| events.push(e));
        (news == Received::News, events)
    }

    #[test]
    fn digest_is_a_function_of_placement_only() {
        let records = [
            record("a", 2, Topology::Normal, vec![10, 20]),
            record("b", 3, Topology::Normal, vec![30]),
            record("c", 4, Topology::Joining, vec![]),
        ];
        let mut x = placement(1, "x");
        let mut y = placement(1, "x");
        for r in records.iter().cloned() {
            feed(&mut x, r);
        }
        for r in records.iter().rev().cloned() {
            feed(&mut y, r);
        }
        assert_eq!(x.digest(), y.digest());
        // A new life at a new address (a restart elsewhere) changes nothing on the ring.
        let mut moved = record("a", 9, Topology::Normal, vec![10, 20]);
        moved.generation = 6;
        let before = x.digest();
        assert!(feed(&mut x, moved).0);
        assert_eq!(x.digest(), before);
        assert_eq!(x.record("a").and_then(RecordRef::addr), Some(9));
        // A joiner is not on the ring; a new Normal member is.
        feed(&mut x, record("d", 5, Topology::Normal, vec![40]));
        assert_ne!(x.digest(), before);
    }

    #[test]
    fn the_ring_belongs_to_its_established_owners() {
        let mut p = placement(1, "x");
        feed(&mut p, record("b", 3, Topology::Normal, vec![30, 31]));
        let digest = p.digest();
        let mut events = Vec::new();
        let alive = |_: &u32| true;
        // Another name copying b's tokens, whatever its rank or name: refused.
        let mut thief = record("a", 9, Topology::Normal, vec![31, 99]);
        thief.epoch = 1;
        thief.generation = u64::MAX;
        let (got, _) = p.on_record(thief.clone(), &alive, &mut |e| events.push(e));
        assert_eq!(got, Received::Refused);
        thief.status = Topology::Joining;
        let (got, _) = p.on_record(thief, &alive, &mut |e| events.push(e));
        assert_eq!(got, Received::Refused, "not even as a pending replica");
        // b's own name with other tokens while b is on the ring: refused.
        let mut swap = record("b", 3, Topology::Normal, vec![50]);
        swap.epoch = 99;
        let (got, _) = p.on_record(swap, &alive, &mut |e| events.push(e));
        assert_eq!(got, Received::Refused);
        // A removal of b while this node sees b alive: refused.
        let mut removal = record("b", 3, Topology::Removed, vec![]);
        removal.epoch = 5;
        let (got, _) = p.on_record(removal.clone(), &alive, &mut |e| events.push(e));
        assert_eq!(got, Received::Refused);
        assert_eq!(p.digest(), digest);
        assert!(events.is_empty());
        // Once b is dead, the removal stands.
        let (got, _) = p.on_record(removal, &|_| false, &mut |e| events.push(e));
        assert_eq!(got, Received::News);
        assert_ne!(p.digest(), digest);
    }

    #[test]
    fn records_are_held_compact_and_read_back_whole() {
        let mut p = placement(1, "x");
        let at = |dc: &str, rack: &str| Location {
            datacenter: dc.into(),
            rack: rack.into(),
        };
        let mut sent = Vec::new();
        for m in 0..300u32 {
            let mut r = record(
                &alloc::format!("member-{m}"),
                2 + m,
                Topology::Normal,
                vec![i64::from(m) * 10],
            );
            r.location = at(["dc1", "dc2"][m as usize % 2], "rack1");
            assert!(feed(&mut p, r.clone()).0);
            sent.push(r);
        }
        // dc1/rack1 and dc2/rack1 (this node has not started: its own record is not
        // held).
        assert_eq!(p.records.locations.index.len(), 2);
        // Member 1 moves to a rack of its own, then back: the rack is dropped again.
        let mut moved = sent[1].clone();
        (moved.location, moved.version) = (at("dc2", "rack9"), 2);
        assert!(feed(&mut p, moved.clone()).0);
        assert_eq!(p.records.locations.index.len(), 3);
        (moved.location, moved.version) = (at("dc2", "rack1"), 3);
        assert!(feed(&mut p, moved.clone()).0);
        assert_eq!(p.records.locations.index.len(), 2);
        sent[1] = moved;
        // The digest is what the records were hashed to as they arrived.
        let mut digest = 0;
        for r in &sent {
            digest ^= stable_hash(&(&r.name, r.epoch, &r.location, &r.tokens));
        }
        assert!(p.record("x").is_none());
        assert_eq!(p.digest(), digest);
        // Each record reads back as it came, before and after a snapshot.
        let check = |p: &Placement<u32>| {
            for r in &sent {
                assert_eq!(
                    p.record(&r.name).and_then(RecordRef::to_record).as_ref(),
                    Some(r)
                );
            }
        };
        check(&p);
        let bytes = postcard::to_allocvec(&p.records).expect("serialize");
        p.records = postcard::from_bytes(&bytes).expect("deserialize");
        check(&p);
        // Replacing a record at the same address keeps its name's and address's
        // bytes: nothing is written twice.
        let bytes = |p: &Placement<u32>| p.records.idents.blocks.iter().map(Vec::len).sum();
        let before: usize = bytes(&p);
        let mut again = sent[7].clone();
        again.version = 9;
        assert!(feed(&mut p, again.clone()).0);
        assert_eq!(bytes(&p), before);
        assert_eq!(p.records.idents.garbage, 0);
        // A new address is written anew, and the old bytes are garbage.
        again.version = 10;
        again.addr = 70_000;
        assert!(feed(&mut p, again.clone()).0);
        assert!(bytes(&p) > before);
        assert!(p.records.idents.garbage > 0);
        assert_eq!(
            p.record(&again.name).and_then(RecordRef::to_record),
            Some(again)
        );
    }

    #[test]
    fn a_record_whose_address_cannot_be_held_is_refused() {
        let mut p: Placement<String> =
            Placement::new(&config(), &NodeId::new("me".into(), 10), SeededState(1));
        let long = PlacementRecord {
            name: "far".into(),
            addr: "a".repeat(MAX_ADDR_BYTES),
            generation: 5,
            version: 1,
            epoch: 0,
            status: Topology::Joining,
            location: Location::default(),
            tokens: Vec::new(),
        };
        let (received, _) = p.on_record(long.clone(), &|_| false, &mut |_| {});
        assert_eq!(received, Received::Refused);
        assert!(p.record("far").is_none());
        // Two bytes shorter (its length prefix takes two) fits, and reads back.
        let fits = PlacementRecord {
            addr: "a".repeat(MAX_ADDR_BYTES - 2),
            ..long
        };
        let (received, _) = p.on_record(fits.clone(), &|_| false, &mut |_| {});
        assert_eq!(received, Received::News);
        assert_eq!(p.record("far").and_then(RecordRef::to_record), Some(fits));
    }

    #[test]
    fn tokens_left_behind_are_compacted_away() {
        let mut p = placement(1, "x");
        let mut sent: Vec<PlacementRecord<u32>> = (0..50i64)
            .map(|m| {
                let tokens = (0..16).map(|k| m * 1_000 + k).collect();
                record(
                    &alloc::format!("m{m}"),
                    2 + m as u32,
                    Topology::Joining,
                    tokens,
                )
            })
            .collect();
        for r in &sent {
            assert!(feed(&mut p, r.clone()).0);
        }
        // Each joiner takes other tokens again and again (a new epoch each time).
        for round in 1..40i64 {
            for (m, r) in sent.iter_mut().enumerate() {
                let m = m as i64;
                r.tokens = (0..16).map(|k| 1_000_000 * round + m * 1_000 + k).collect();
                (r.epoch, r.generation) = (5 + round as u64, 5 + round as u64);
                assert!(feed(&mut p, r.clone()).0);
            }
            let arena = &p.records.tokens;
            assert_eq!(arena.live, 50 * 16);
            assert!(arena.garbage <= arena.live.max(TOKEN_BLOCK), "compacted");
        }
        // The same tokens again (Joining to Normal) keep their place.
        let before = p.records.tokens.garbage;
        for r in &mut sent {
            (r.status, r.version) = (Topology::Normal, 2);
            assert!(feed(&mut p, r.clone()).0);
        }
        assert_eq!(p.records.tokens.garbage, before);
        for r in &sent {
            assert_eq!(
                p.record(&r.name).and_then(RecordRef::to_record).as_ref(),
                Some(r)
            );
        }
    }

    #[test]
    fn a_copied_token_is_refused_after_the_filter_grows_and_after_a_restore() {
        let mut p = placement(1, "x");
        // 100 members of 16 tokens: the filter is rebuilt several times on the way.
        for m in 0..100i64 {
            let tokens = (0..16).map(|k| m * 1_000 + k).collect();
            let name = alloc::format!("m{m}");
            assert!(
                feed(
                    &mut p,
                    record(&name, 2 + m as u32, Topology::Normal, tokens)
                )
                .0
            );
        }
        let thief = |token| record("thief", 999, Topology::Normal, vec![-1, token]);
        for held in [0, 15, 57_003, 99_015] {
            assert!(!feed(&mut p, thief(held)).0, "token {held} was taken");
        }
        // A token nobody holds is free; a departed member's tokens are free again.
        assert!(feed(&mut p, record("free", 500, Topology::Normal, vec![-7])).0);
        let mut left = record("m3", 5, Topology::Left, vec![]);
        (left.epoch, left.version) = (5, 2);
        assert!(feed(&mut p, left).0);
        assert!(feed(&mut p, record("heir", 501, Topology::Normal, vec![3_004])).0);
        // The filter is not in a snapshot; a restored table refuses a copy as well.
        let bytes = postcard::to_allocvec(&p.records).expect("serialize");
        let restored: Records<u32> = postcard::from_bytes(&bytes).expect("deserialize");
        p.records = restored;
        assert!(!feed(&mut p, thief(42_007)).0);
        assert!(!feed(&mut p, thief(3_004)).0, "the heir's token");
        assert!(feed(&mut p, record("next", 502, Topology::Normal, vec![3_005])).0);
    }

    #[test]
    fn a_record_is_asked_for_once_however_many_peers_tell_of_it() {
        let mut p = placement(1, "x");
        let rank = record("a", 2, Topology::Joining, vec![]).rank();
        let higher = (rank.0, rank.1, rank.2, rank.3 + 1);
        assert!(!p.want("a", rank), "no datagram, no ask");
        p.new_datagram();
        assert!(p.want("a", rank));
        assert!(!p.want("a", rank), "asked already this round");
        p.round(&mut |_| {});
        assert!(!p.want("a", rank), "nor the last");
        assert!(p.want("a", higher), "a newer rank is asked for");
        p.round(&mut |_| {});
        p.round(&mut |_| {});
        assert!(p.want("a", rank), "unanswered for two rounds: asked again");
        feed(&mut p, record("a", 2, Topology::Joining, vec![]));
        p.round(&mut |_| {});
        p.round(&mut |_| {});
        assert!(!p.want("a", rank), "held");
        assert!(!p.want("", rank), "not a name");
        // One datagram asks for at most what its answer carries.
        p.new_datagram();
        let asked = (0..20)
            .filter(|k| p.want(&alloc::format!("m{k}"), rank))
            .count();
        assert_eq!(asked, MAX_ASKS_PER_DATAGRAM);
        p.new_datagram();
        assert!(p.want("m19", rank), "the next datagram asks for the rest");
    }

    #[test]
    fn older_records_are_ignored_and_status_changes_are_told() {
        let mut p = placement(1, "x");
        let (news, events) = feed(&mut p, record("a", 2, Topology::Joining, vec![]));
        assert!(news);
        assert_eq!(
            events,
            vec![Event::Topology {
                name: "a".into(),
                status: Topology::Joining
            }]
        );
        let mut normal = record("a", 2, Topology::Normal, vec![7]);
        normal.version = 3;
        assert!(feed(&mut p, normal.clone()).0);
        assert!(!feed(&mut p, normal).0, "the same record twice is no news");
        let stale = record("a", 2, Topology::Joining, vec![]);
        assert!(!feed(&mut p, stale).0);
        assert_eq!(p.record("a").map(|r| r.status()), Some(Topology::Normal));
        let mut bad = record("b", 2, Topology::Normal, vec![]);
        bad.version = 9;
        assert!(
            !feed(&mut p, bad).0,
            "on the ring without tokens is malformed"
        );
    }

    #[test]
    fn a_dead_replica_stays_a_replica_and_removal_moves_it() {
        let mut p = placement(1, "x");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        p.start(&mut rng, true);
        for (name, addr, t) in [("a", 2, 1_000), ("b", 3, 2_000), ("c", 4, 3_000)] {
            feed(&mut p, record(name, addr, Topology::Normal, vec![t]));
        }
        let m = members(&[2, 4], &[3]);
        let key = b"some key";
        let before = p.route(key, &m);
        assert_eq!(before.replicas.len(), 3);
        let b = before.replicas.iter().find(|r| r.name == "b");
        assert!(b.is_none() || b.is_some_and(|r| r.state == Status::Dead));
        // Removal: refused for ourselves, the living and strangers.
        assert_eq!(p.remove("x", &m), Err(RemoveError::IsSelf));
        assert_eq!(p.remove("a", &m), Err(RemoveError::NotDead));
        assert_eq!(p.remove("zz", &m), Err(RemoveError::Unknown));
        let digest = p.digest();
        let removal = p.remove("b", &m).expect("b is dead");
        assert_eq!(removal.status, Topology::Removed);
        assert!(removal.rank() > record("b", 3, Topology::Normal, vec![2_000]).rank());
        assert_ne!(p.digest(), digest);
        assert!(p.ring().tokens().all(|(_, o)| o.name() != "b"));
        assert_eq!(p.remove("b", &m), Err(RemoveError::AlreadyGone));
        // The member's old life cannot bring the tokens back, even from a later life.
        let mut back = record("b", 3, Topology::Normal, vec![2_000]);
        back.generation = 50;
        assert!(!feed(&mut p, back).0);
    }

    /// A Normal member `name` at `addr` with `tokens`, started, holding `others`.
    fn on_ring(
        addr: u32,
        name: &str,
        tokens: Vec<Token>,
        others: &[PlacementRecord<u32>],
    ) -> Placement<u32> {
        let mut p = placement(addr, name);
        p.restore(LocalPlacement {
            name: name.into(),
            tokens,
            epoch: 5,
            ..LocalPlacement::default()
        })
        .expect("restore");
        p.start(&mut ChaCha8Rng::seed_from_u64(1), false)
            .expect("announces");
        for r in others {
            feed(&mut p, r.clone());
        }
        p
    }

    #[test]
    fn a_segment_about_our_digest_starts_our_agreement_at_once() {
        let mut x_rec = record("x", 1, Topology::Normal, vec![100, 200]);
        x_rec.generation = 10;
        let mut y_rec = record("y", 2, Topology::Normal, vec![300, 400]);
        y_rec.generation = 10;
        let a = record("a", 3, Topology::Normal, vec![500]);
        let mut x = on_ring(1, "x", vec![100, 200], &[y_rec.clone(), a.clone()]);
        let mut y = on_ring(2, "y", vec![300, 400], &[x_rec, a]);
        assert_eq!(x.digest(), y.digest(), "the same ring");
        let m = members(&[2, 3], &[]);
        // x's digest held still for two rounds: its agreement starts, its own bit set.
        let mut spread = Vec::new();
        for _ in 0..3 {
            spread.extend(x.agreement_round(&m).spread);
        }
        let Some((
            _,
            Message::Agreement {
                digest,
                segment,
                bits,
            },
        )) = spread.pop()
        else {
            panic!("x spreads its segment once its digest held still");
        };
        assert_eq!(digest, x.digest());
        // y learned the same ring only now (no round since): the segment starts its
        // agreement at once, and y, which holds its own bit that x lacks, answers.
        match y.on_agreement(digest, segment, &bits) {
            AgreementReceipt::Behind(Message::Agreement {
                digest: d,
                bits: theirs,
                ..
            }) => {
                assert_eq!(d, digest);
                assert_eq!(
                    theirs.iter().map(|b| b.count_ones()).sum::<u32>(),
                    2,
                    "x's bit and y's"
                );
            }
            _ => panic!("y joins the agreement and answers with its own bit"),
        }
        assert!(y.agreement.holds("x") && y.agreement.holds("y"));
        // A segment about another digest starts nothing.
        let mut z = on_ring(4, "z", vec![600], &[]);
        assert!(matches!(
            z.on_agreement(digest, segment, &bits),
            AgreementReceipt::Taken
        ));
        assert_eq!(z.agreement.digest(), None);
    }

    #[test]
    fn a_removed_node_comes_back_as_new() {
        let mut p = placement(1, "x");
        p.restore(LocalPlacement {
            name: "x".into(),
            tokens: vec![5, 6],
            epoch: 7,
            ..LocalPlacement::default()
        })
        .expect("restore");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let start = p.start(&mut rng, false).expect("announces");
        assert_eq!(
            (start.status, start.tokens.clone()),
            (Topology::Normal, vec![5, 6])
        );
        let mut removal = record("x", 1, Topology::Removed, vec![]);
        removal.epoch = 7;
        let mut events = Vec::new();
        let (_, mine) = p.on_record(removal, &|_| false, &mut |e| events.push(e));
        let mine = mine.expect("we announce our new life");
        assert_eq!(
            (mine.status, mine.tokens.len(), mine.epoch),
            (Topology::Joining, 0, 0)
        );
        assert!(matches!(&events[..], [Event::PlacementChanged(l)] if l.tokens.is_empty()));
    }

    #[test]
    fn waves_grow_with_the_ring_they_join() {
        assert_eq!(join_waves(0, 5), 0);
        assert_eq!(join_waves(128, 0), 1);
        assert_eq!(join_waves(129, 0), 2);
        // 1 + 1,023: 128, then the other 895 (up to 31 × 129).
        assert_eq!(join_waves(1023, 1), 2);
        // 1 + 4,095: 128, then the other 3,967 (up to 31 × 129 = 3,999).
        assert_eq!(join_waves(4095, 1), 2);
        // 1 + 5,000: 128, 3,999, then the other 873.
        assert_eq!(join_waves(5000, 1), 3);
        assert_eq!(join_waves(30, 100), 1);
        assert_eq!(join_waves(1000, 1000), 1);
    }

    #[test]
    fn joiner_learns_allocates_then_turns_normal() {
        let mut seed = placement(1, "seed");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let first = seed.start(&mut rng, true).expect("first node");
        assert_eq!(first.status, Topology::Normal);
        assert_eq!(first.tokens.len(), config().vnodes);

        let mut j = placement(2, "j");
        let joining = j.start(&mut rng, false).expect("joins");
        assert_eq!(
            (joining.status, joining.tokens.len()),
            (Topology::Joining, 0)
        );
        feed(&mut j, first);
        let mut events = Vec::new();
        let mut rounds = 0;
        let proposal = loop {
            rounds += 1;
            assert!(rounds < 10, "never allocated");
            if let Some(r) = j.round(&mut |e| events.push(e)).publish {
                break r;
            }
        };
        assert!(rounds > LEARN_ROUNDS, "allocated after {rounds} rounds");
        assert_eq!(proposal.status, Topology::Joining);
        assert_eq!(proposal.tokens.len(), config().vnodes);
        let mut rounds = 0;
        let normal = loop {
            rounds += 1;
            if let Some(r) = j.round(&mut |e| events.push(e)).publish {
                break r;
            }
        };
        assert_eq!(rounds, RING_DELAY_ROUNDS as usize);
        assert_eq!(
            (normal.status, normal.tokens),
            (Topology::Normal, proposal.tokens)
        );
    }

    /// A wave-mate that turned Normal before the others frees its place in the wave
    /// for the next name; that joiner waits until the rest of the wave is Normal
    /// (or [`PENDING_PATIENCE`] rounds) instead of allocating against a ring the
    /// wave did not allocate against.
    #[test]
    fn a_joiner_does_not_slip_into_a_wave_whose_ring_moved() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seed = placement(1, "a-seed");
        let first = seed.start(&mut rng, true).expect("first node");
        let mut j = placement(9, "z");
        j.start(&mut rng, false).expect("joins");
        feed(&mut j, first.clone());
        // A full wave of 64 pending joiners (they allocated), all sorting before "z".
        let names: Vec<String> = (0..JOIN_WAVE).map(|i| alloc::format!("m{i:02}")).collect();
        for (i, name) in names.iter().enumerate() {
            let token = i64::try_from(i).expect("small") * 1_000_003 + 17;
            feed(
                &mut j,
                record(name, 100 + i as u32, Topology::Joining, alloc::vec![token]),
            );
        }
        // Round 1: not in the wave; its members are first seen pending.
        assert!(
            j.round(&mut |_| {}).publish.is_none(),
            "not in the wave yet"
        );
        // The first wave-mate turns Normal: "z" is now 64th among the Joining. From
        // round 4 on it has learned the ring (`LEARN_ROUNDS`) and its picture holds
        // still; only its pending wave-mates hold it back, until `PENDING_PATIENCE`
        // rounds after it first saw them.
        let mut early = record(&names[0], 100, Topology::Normal, alloc::vec![17]);
        early.version = 2;
        feed(&mut j, early);
        for round in 2..=PENDING_PATIENCE {
            assert!(
                j.round(&mut |_| {}).publish.is_none(),
                "allocated in round {round} against a ring that moved under the wave"
            );
        }
        // The rest stay pending (as if crashed): patience runs out, and it allocates.
        let proposal = (0..3).find_map(|_| j.round(&mut |_| {}).publish);
        assert!(
            proposal.is_some_and(|r| !r.tokens.is_empty()),
            "held back for good"
        );
    }

    /// The first node's record, and the previous wave's last member ("b-last"), pending
    /// and then Normal with the same tokens.
    fn seed_and_last_of_a_wave(
        rng: &mut ChaCha8Rng,
    ) -> (
        PlacementRecord<u32>,
        PlacementRecord<u32>,
        PlacementRecord<u32>,
    ) {
        let mut seed = placement(1, "a-seed");
        let first = seed.start(rng, true).expect("first node");
        let last_tokens = alloc::vec![-4_000_000_000_000_000_000, 3_000_000_000_000_000_000];
        let last_pending = record("b-last", 2, Topology::Joining, last_tokens.clone());
        let mut last_normal = record("b-last", 2, Topology::Normal, last_tokens);
        last_normal.version = 2;
        (first, last_pending, last_normal)
    }

    /// Feeds `j` the previous wave's last member turned Normal (the ring moves under
    /// its pending wave-mates) and checks that it allocates within two rounds, not
    /// after `PENDING_PATIENCE`, taking a full share; returns its tokens.
    fn allocates_once_the_ring_moved(
        j: &mut Placement<u32>,
        last_normal: PlacementRecord<u32>,
    ) -> BTreeSet<Token> {
        feed(j, last_normal);
        let rounds = (1..PENDING_PATIENCE)
            .find(|_| j.round(&mut |_| {}).publish.is_some())
            .expect("allocated before its patience ran out");
        assert!(rounds <= 2, "allocated after {rounds} rounds");
        let mine: BTreeSet<Token> = j.local().tokens.into_iter().collect();
        assert_eq!(mine.len(), 16, "its share of the wave");
        mine
    }

    /// The ring moves under a pending wave-mate when the last member of the previous
    /// wave turns Normal; a joiner whose picture then gives that wave-mate the very
    /// tokens it took allocates at once, instead of waiting out `PENDING_PATIENCE`.
    #[test]
    fn a_joiner_whose_picture_the_pending_took_does_not_wait() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (first, last_pending, last_normal) = seed_and_last_of_a_wave(&mut rng);
        let mut j = placement(9, "w3");
        let j_record = j.start(&mut rng, false).expect("joins");
        let mut w1 = placement(7, "w1");
        let w1_record = w1.start(&mut rng, false).expect("joins");
        let mut w2 = placement(8, "w2");
        let w2_record = w2.start(&mut rng, false).expect("joins");
        // w1 saw the previous wave Normal, and allocated against that ring.
        for r in [&first, &last_normal, &w2_record, &j_record] {
            feed(&mut w1, r.clone());
        }
        let w1_pending = (0..10)
            .find_map(|_| w1.round(&mut |_| {}).publish)
            .expect("w1 allocates");
        assert!(!w1_pending.tokens.is_empty());
        // j saw w1 pending while "b-last" was still pending, learned the ring, then
        // heard "b-last" turn Normal: the ring moved under w1.
        for r in [&first, &last_pending, &w1_record, &w2_record] {
            feed(&mut j, r.clone());
        }
        for _ in 0..LEARN_ROUNDS {
            assert!(
                j.round(&mut |_| {}).publish.is_none(),
                "still learning the ring"
            );
            feed(&mut j, w1_pending.clone());
        }
        let mine = allocates_once_the_ring_moved(&mut j, last_normal);
        assert!(
            w1_pending.tokens.iter().all(|t| !mine.contains(t)),
            "no clash"
        );
    }

    /// A joiner whose ring moved under its pending wave-mates compares its picture with
    /// every pending mate up to its own batch: one early mate that took another
    /// picture (it allocated while the previous wave's last member was still pending)
    /// does not outvote the mates that took the picture the joiner sees.
    #[test]
    fn an_early_wave_mate_with_another_picture_does_not_outvote_the_wave() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let (first, last_pending, last_normal) = seed_and_last_of_a_wave(&mut rng);
        let mut wave: Vec<Placement<u32>> = ["w0", "w1", "w2", "w3"]
            .iter()
            .zip(10..)
            .map(|(name, addr)| placement(addr, name))
            .collect();
        let joining: Vec<PlacementRecord<u32>> = wave
            .iter_mut()
            .map(|p| p.start(&mut rng, false).expect("joins"))
            .collect();
        // w0 allocates while "b-last" is still pending in its view, w1 and w2 once it
        // is Normal: two pictures.
        let mut pending = Vec::new();
        for (k, previous) in [(0, &last_pending), (1, &last_normal), (2, &last_normal)] {
            let p = &mut wave[k];
            for r in [&first, previous] {
                feed(p, r.clone());
            }
            for (_, r) in joining.iter().enumerate().filter(|(i, _)| *i != k) {
                feed(p, r.clone());
            }
            let allocated = (0..10)
                .find_map(|_| p.round(&mut |_| {}).publish)
                .expect("allocates");
            assert!(!allocated.tokens.is_empty());
            pending.push(allocated);
        }
        // w3 saw them pending while "b-last" was pending, then heard it turn Normal.
        let j = &mut wave[3];
        for r in [&first, &last_pending] {
            feed(j, r.clone());
        }
        for r in &joining[..3] {
            feed(j, r.clone());
        }
        for _ in 0..LEARN_ROUNDS {
            assert!(j.round(&mut |_| {}).publish.is_none(), "still learning");
            for r in &pending {
                feed(j, r.clone());
            }
        }
        let mine = allocates_once_the_ring_moved(j, last_normal);
        for r in &pending[1..] {
            assert!(r.tokens.iter().all(|t| !mine.contains(t)), "no clash");
        }
    }

    /// A joiner that allocated without a wave-mate's record (it arrived late) starts
    /// over when it arrives, during the ring delay; once only, as a member that began
    /// to join after the allocation looks the same.
    #[test]
    fn a_joiner_that_missed_a_wave_mate_starts_over_once() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut seed = placement(1, "a-seed");
        let first = seed.start(&mut rng, true).expect("first node");
        let mut j = placement(9, "m5");
        j.start(&mut rng, false).expect("joins");
        feed(&mut j, first);
        for (i, name) in ["m1", "m2"].iter().enumerate() {
            feed(
                &mut j,
                record(name, 100 + i as u32, Topology::Joining, Vec::new()),
            );
        }
        let allocate = |j: &mut Placement<u32>| {
            (0..10)
                .find_map(|_| j.round(&mut |_| {}).publish)
                .expect("allocates")
        };
        assert!(!allocate(&mut j).tokens.is_empty());
        // m3 belongs in the wave (there was room for every joiner): start over.
        feed(&mut j, record("m3", 103, Topology::Joining, Vec::new()));
        let over = j.round(&mut |_| {}).publish.expect("starts over");
        assert!(over.tokens.is_empty() && over.epoch == 0, "{over:?}");
        assert!(!allocate(&mut j).tokens.is_empty());
        // m4 now: no second start over; the ring delay runs out and it turns Normal.
        feed(&mut j, record("m4", 104, Topology::Joining, Vec::new()));
        let normal = allocate(&mut j);
        assert_eq!(normal.status, Topology::Normal);
        assert!(!normal.tokens.is_empty());
    }

    /// News of a change of status only is written from the record held; anything
    /// else (another epoch or life, a removal, Normal without tokens) is pulled.
    #[test]
    fn a_change_of_status_is_derived_from_the_record_held() {
        let mut p = placement(1, "me");
        let mut joining = record("j", 7, Topology::Joining, alloc::vec![5, 9]);
        joining.version = 2;
        feed(&mut p, joining.clone());
        let rank = |r: &PlacementRecord<u32>, version: u64| (r.epoch, false, r.generation, version);
        let normal = p
            .derive("j", rank(&joining, 3), Topology::Normal)
            .expect("derived");
        let mut expected = joining.clone();
        expected.status = Topology::Normal;
        expected.version = 3;
        assert_eq!(normal, expected);
        let left = p
            .derive("j", rank(&joining, 5), Topology::Left)
            .expect("derived");
        assert!(left.tokens.is_empty() && left.status == Topology::Left);
        // A later version may hold other tokens at the same epoch (the joiner started
        // over and allocated again): pulled.
        assert!(p.derive("j", rank(&joining, 5), Topology::Normal).is_none());
        // Not derivable: the same or an older version, another epoch or life, a
        // removal, a status that needs other tokens.
        assert!(p.derive("j", rank(&joining, 2), Topology::Normal).is_none());
        assert!(p.derive("j", (6, false, 5, 3), Topology::Normal).is_none());
        assert!(p.derive("j", (5, false, 6, 3), Topology::Normal).is_none());
        assert!(p.derive("j", (5, true, 5, 3), Topology::Removed).is_none());
        assert!(
            p.derive("j", rank(&joining, 3), Topology::Joining)
                .is_none()
        );
        assert!(
            p.derive("nobody", (5, false, 5, 3), Topology::Normal)
                .is_none()
        );
        let bare = record("b", 8, Topology::Joining, Vec::new());
        feed(&mut p, bare.clone());
        assert!(p.derive("b", rank(&bare, 2), Topology::Normal).is_none());
        assert!(p.derive("b", rank(&bare, 2), Topology::Left).is_some());
    }

    #[test]
    fn a_joiner_that_loses_a_token_clash_starts_over() {
        let mut j = placement(2, "j");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        j.start(&mut rng, false);
        feed(&mut j, record("seed", 1, Topology::Normal, vec![100]));
        let proposal = loop {
            if let Some(r) = j.round(&mut |_| {}).publish {
                break r;
            }
        };
        // An earlier joiner (smaller epoch) proposed one of our tokens.
        let mut rival = record("a", 3, Topology::Joining, vec![proposal.tokens[0]]);
        rival.epoch = proposal.epoch - 1;
        feed(&mut j, rival);
        let again = j.round(&mut |_| {}).publish.expect("starts over");
        assert!(again.tokens.is_empty() && again.epoch == 0);
    }

    #[test]
    fn pending_replicas_while_joining_and_leaving() {
        let mut p = placement(1, "x");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        p.start(&mut rng, true);
        let m = members(&[2, 3, 4], &[]);
        for (name, addr, t) in [("a", 2, -3_000_000_000_000_000_000), ("b", 3, 0)] {
            feed(&mut p, record(name, addr, Topology::Normal, vec![t]));
        }
        let keys: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_le_bytes().to_vec()).collect();
        assert!(keys.iter().all(|k| p.route(k, &m).pending.is_empty()));
        feed(
            &mut p,
            record("c", 4, Topology::Joining, vec![3_000_000_000_000_000_000]),
        );
        let with_c = keys.iter().filter(|k| {
            let set = p.route(k, &m);
            set.pending
                .iter()
                .any(|r| r.name == "c" && r.topology == Topology::Joining)
                && set.replicas.iter().all(|r| r.name != "c")
        });
        assert!(with_c.count() > 0, "c is pending for the ranges it takes");
        let mut normal = record("c", 4, Topology::Normal, vec![3_000_000_000_000_000_000]);
        normal.version = 2;
        feed(&mut p, normal);
        assert!(keys.iter().all(|k| p.route(k, &m).pending.is_empty()));
        let mut leaving = record("c", 4, Topology::Leaving, vec![3_000_000_000_000_000_000]);
        leaving.version = 3;
        feed(&mut p, leaving);
        assert!(keys.iter().any(|k| !p.route(k, &m).pending.is_empty()));
        assert!(
            keys.iter()
                .all(|k| p.route(k, &m).pending.iter().all(|r| r.name != "c"))
        );
    }

    #[test]
    fn restore_is_checked() {
        let mut p = placement(1, "x");
        assert_eq!(
            p.restore(LocalPlacement::default()),
            Err(RestoreError::BadName)
        );
        assert_eq!(
            p.restore(LocalPlacement {
                name: "x".into(),
                tokens: vec![3, 2],
                epoch: 1,
                ..LocalPlacement::default()
            }),
            Err(RestoreError::BadTokens)
        );
        p.start(&mut ChaCha8Rng::seed_from_u64(1), true);
        assert_eq!(
            p.restore(LocalPlacement {
                name: "y".into(),
                ..LocalPlacement::default()
            }),
            Err(RestoreError::AlreadyStarted)
        );
    }
}
