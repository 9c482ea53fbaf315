//! Per-node versioned key/value state.
//!
//! Each node owns a map that only it writes; every write takes the next value of
//! the owner's version counter. Merge is max-version-wins per (owner, generation,
//! key), which is idempotent, commutative and associative. A newer generation of
//! the owner replaces its whole state: a restarted process starts a new history.
//!
//! Three numbers per owner make anti-entropy cheap and exact:
//! - `hash`: XOR of `h(key, version)` over live keys, so two nodes holding the same
//!   content agree without listing it. Tombstones are left out of it, so collecting
//!   one changes nothing that peers compare.
//! - `watermark`: every write of the owner up to this version is held (or superseded).
//!   Anti-entropy asks for keys above it; rumours may deliver keys above it early.
//! - `gc_floor`: the highest version of a tombstone collected here. A peer whose
//!   watermark is below it may hold keys deleted since, so it gets a reset page.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use alloc::string::ToString;
use core::hash::Hasher;

use rand_core::RngCore;

use crate::anti_entropy::SYNC_REPLY_PACKETS;
use crate::config::Config;
use crate::dissemination::Subject;
use crate::event::Event;
use crate::hash::{Map, SeededState, StableHasher, mix64};
use crate::membership::{Address, NodeId};
use crate::outbox::Outbox;
use crate::time::Instant;
use crate::wire::{
    DigestEntry, Message, StateDelta, StatePage, StateStub, encode_message, value_hash,
};

/// Keys with this prefix belong to the protocol: applications cannot write them.
pub const RESERVED_PREFIX: &str = "gv.";
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// Checks a key the application writes: not reserved, 1 to [`MAX_KEY_LEN`] bytes.
pub(crate) fn check_app_key(key: &str) -> Result<(), StateError> {
    if key.starts_with(RESERVED_PREFIX) {
        return Err(StateError::Reserved);
    }
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(StateError::BadKey);
    }
    Ok(())
}

/// One value in a node's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The owner's version counter at the write.
    pub version: u64,
    /// The value, or `None` for a tombstone awaiting collection.
    pub value: Option<Vec<u8>>,
}

/// Why a write was refused. A refused write changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// Keys starting with `gv.` belong to the protocol.
    Reserved,
    /// The key is empty or longer than [`MAX_KEY_LEN`].
    BadKey,
    /// The value is larger than `max_value_size`.
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The write would take this node's state over `max_state_bytes`.
    StateFull,
    /// The node has left the cluster.
    Left,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Reserved => {
                write!(f, "keys starting with {RESERVED_PREFIX:?} are reserved")
            }
            StateError::BadKey => write!(f, "keys must be 1 to {MAX_KEY_LEN} bytes"),
            StateError::ValueTooLarge { len, max } => {
                write!(f, "value of {len} bytes exceeds max_value_size ({max})")
            }
            StateError::StateFull => f.write_str("the write would exceed max_state_bytes"),
            StateError::Left => f.write_str("the node has left the cluster"),
        }
    }
}

impl core::error::Error for StateError {}

/// Everything one node holds about one owner's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OwnerState {
    pub generation: u64,
    pub entries: BTreeMap<String, Entry>,
    pub hash: u64,
    pub max_version: u64,
    pub watermark: u64,
    pub gc_floor: u64,
    pub bytes: usize,
}

/// What a merge did to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Merge {
    /// The key changed to the incoming version.
    Applied,
    /// We already held this version or a newer one (or had collected it).
    Stale,
    /// Applying it would exceed the owner's byte budget.
    Full,
}

pub(crate) fn key_hash(key: &str, version: u64) -> u64 {
    let mut h = StableHasher::default();
    h.write(key.as_bytes());
    mix64(h.finish() ^ mix64(version))
}

/// What one entry costs beyond its key and value bytes (map node, version, lengths):
/// charged so that many tiny keys cannot hold far more memory than the budget says.
/// Measured: a key's and a value's heap blocks with their allocator headers, and the
/// entry's share of a B-tree node, come to about 100 bytes beyond the raw bytes.
pub const ENTRY_OVERHEAD: usize = 112;

/// The stub that announces a large value.
fn stub_of<A: Clone>(owner: &NodeId<A>, key: &str, version: u64, value: &[u8]) -> StateStub<A> {
    StateStub {
        owner: owner.clone(),
        key: String::from(key),
        version,
        len: u32::try_from(value.len()).unwrap_or(u32::MAX),
        hash: value_hash(value),
    }
}

fn entry_bytes(key: &str, value: &Option<Vec<u8>>) -> usize {
    ENTRY_OVERHEAD + key.len() + value.as_ref().map_or(0, Vec::len)
}

impl OwnerState {
    pub fn new(generation: u64) -> Self {
        OwnerState {
            generation,
            ..Default::default()
        }
    }

    /// Whether `version` of `key` is newer than what we hold: above the version we
    /// have, or, absent, above the watermark (below it and absent: we held it once and
    /// a delete collected it).
    pub fn is_news(&self, key: &str, version: u64) -> bool {
        match self.entries.get(key) {
            Some(e) => e.version < version,
            None => version > self.watermark,
        }
    }

    /// Max-version-wins merge of one key.
    pub fn merge(
        &mut self,
        key: &str,
        version: u64,
        value: Option<Vec<u8>>,
        max_bytes: usize,
    ) -> Merge {
        if !self.is_news(key, version) {
            return Merge::Stale;
        }
        let old = self.entries.get(key);
        let old_bytes = old.map_or(0, |e| entry_bytes(key, &e.value));
        let new_bytes = entry_bytes(key, &value);
        if self.bytes - old_bytes + new_bytes > max_bytes {
            return Merge::Full;
        }
        if let Some(e) = old {
            if e.value.is_some() {
                self.hash ^= key_hash(key, e.version);
            }
        }
        if value.is_some() {
            self.hash ^= key_hash(key, version);
        }
        self.bytes = self.bytes - old_bytes + new_bytes;
        self.max_version = self.max_version.max(version);
        self.entries
            .insert(String::from(key), Entry { version, value });
        Merge::Applied
    }

    /// Owner versions are consecutive, so the watermark can move past every version we
    /// hold that directly follows it, however that version arrived. A version that was
    /// overwritten before it reached us leaves a gap that only anti-entropy closes.
    pub fn advance_watermark(&mut self) {
        if self.max_version <= self.watermark {
            return;
        }
        let mut above: Vec<u64> = self
            .entries
            .values()
            .map(|e| e.version)
            .filter(|&v| v > self.watermark)
            .collect();
        above.sort_unstable();
        for v in above {
            if v != self.watermark + 1 {
                break;
            }
            self.watermark = v;
        }
    }

    /// Drops a tombstone if it is still the current entry for `key` at `version`.
    pub fn collect(&mut self, key: &str, version: u64) -> bool {
        match self.entries.get(key) {
            Some(Entry {
                version: v,
                value: None,
            }) if *v == version => {
                self.entries.remove(key);
                self.bytes -= entry_bytes(key, &None);
                self.gc_floor = self.gc_floor.max(version);
                true
            }
            _ => false,
        }
    }

    /// Keys in `(after, upto]` absent from a reset page are gone at the sender; drop them.
    pub fn reset_range(
        &mut self,
        after: u64,
        upto: u64,
        keep: &[(String, u64, Option<Vec<u8>>)],
    ) -> Vec<String> {
        let doomed: Vec<String> = self
            .entries
            .iter()
            .filter(|(k, e)| {
                e.version > after && e.version <= upto && !keep.iter().any(|(kk, _, _)| kk == *k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            if let Some(e) = self.entries.remove(k) {
                if e.value.is_some() {
                    self.hash ^= key_hash(k, e.version);
                }
                self.bytes -= entry_bytes(k, &e.value);
            }
        }
        doomed
    }

    /// Entries with a version above `after`, ascending by version.
    pub fn since(&self, after: u64) -> Vec<(&String, &Entry)> {
        let mut out: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.version > after)
            .collect();
        out.sort_by_key(|(_, e)| e.version);
        out
    }
}

/// A deleted key awaiting collection: due once the grace has passed, and only if we
/// hold every write of its owner up to it by then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tombstone<A> {
    due: Instant,
    owner: A,
    generation: u64,
    key: String,
    version: u64,
}

/// Every owner's state as this node holds it, itself included, plus the queue of
/// tombstones awaiting collection: writes, merges, pages for anti-entropy, and
/// tombstone collection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "A: crate::Address")]
pub(crate) struct Store<A> {
    #[serde(with = "crate::snapshot::map")]
    owners: Map<A, OwnerState>,
    /// In due order, because `now` only grows.
    tombstones: VecDeque<Tombstone<A>>,
    /// Queue length after the last compaction.
    compacted: usize,
    max_state_bytes: usize,
    tombstone_grace: core::time::Duration,
    /// Bytes charged for every owner's state (entries with their overhead, plus
    /// [`OWNER_OVERHEAD`] per owner), and the most the state of others may take.
    held: usize,
    max_total: usize,
    /// Values longer than this travel as a [`StateStub`] and are fetched in chunks.
    inline_max: usize,
}

/// The longest value that travels inline, in its rumour or anti-entropy page; longer
/// values are announced by a stub and fetched in chunks (see `transfer.rs`). Smaller
/// datagrams lower it: a value must fit one datagram beside its headers.
pub const INLINE_VALUE_MAX: usize = 1024;

/// What holding one owner's state costs beyond its entries (the map slot, the
/// counters): charged so that a flood of tiny owners is bounded too.
pub const OWNER_OVERHEAD: usize = 192;

/// Moves the charge `held` from an owner's `before` bytes to its `after` bytes.
fn recharge(held: &mut usize, before: usize, after: usize) {
    *held = held.saturating_sub(before).saturating_add(after);
}

impl<A: Address> Store<A> {
    pub fn new(config: &Config, hasher: SeededState) -> Self {
        Store {
            owners: Map::with_hasher(hasher),
            tombstones: VecDeque::new(),
            compacted: 0,
            max_state_bytes: config.max_state_bytes,
            tombstone_grace: config.tombstone_grace,
            held: 0,
            max_total: config.max_total_state_bytes,
            inline_max: INLINE_VALUE_MAX.min(config.max_datagram_size.saturating_sub(256)),
        }
    }

    /// The message that spreads `delta`: the delta itself, or a stub when the value is
    /// too large to travel inline.
    pub fn announce(&self, delta: &StateDelta<A>) -> Vec<u8> {
        match &delta.value {
            Some(v) if v.len() > self.inline_max => encode_message(&Message::StateStub(stub_of(
                &delta.owner,
                &delta.key,
                delta.version,
                v,
            ))),
            _ => encode_message(&Message::State(delta.clone())),
        }
    }

    /// Whether `stub` names a version this node would take: newer than what it holds
    /// of that key, of the owner's life it holds, and not one it already collected.
    pub fn lacks(&self, stub: &StateStub<A>) -> bool {
        if stub.key.is_empty() || stub.key.len() > MAX_KEY_LEN {
            return false;
        }
        match self.owners.get(&stub.owner.addr) {
            None => true,
            Some(st) if st.generation != stub.owner.generation => {
                st.generation < stub.owner.generation
            }
            Some(st) => st.is_news(&stub.key, stub.version),
        }
    }

    /// The value of `owner`'s `key` if this node holds exactly `version` of it.
    pub fn value_at(&self, owner: &NodeId<A>, key: &str, version: u64) -> Option<&[u8]> {
        let st = self
            .owners
            .get(&owner.addr)
            .filter(|s| s.generation == owner.generation)?;
        st.entries
            .get(key)
            .filter(|e| e.version == version)?
            .value
            .as_deref()
    }

    // ----- reading ------------------------------------------------------------------

    pub fn get(&self, owner: &A) -> Option<&OwnerState> {
        self.owners.get(owner)
    }

    /// Every owner whose state is held, in no particular order.
    pub fn owners(&self) -> impl Iterator<Item = &A> + '_ {
        self.owners.keys()
    }

    /// One value of `owner`'s state.
    pub fn value(&self, owner: &A, key: &str) -> Option<&[u8]> {
        self.owners.get(owner)?.entries.get(key)?.value.as_deref()
    }

    /// The content hash of `owner`'s state if we hold that generation, else 0.
    pub fn hash_of(&self, owner: &A, generation: u64) -> u64 {
        self.owners
            .get(owner)
            .filter(|s| s.generation == generation)
            .map_or(0, |s| s.hash)
    }

    /// `(content hash, watermark)` of `owner`'s state at `generation`, zeros if we do
    /// not hold that life: what a digest entry carries.
    pub fn summary(&self, owner: &A, generation: u64) -> (u64, u64) {
        self.owners
            .get(owner)
            .filter(|s| s.generation == generation)
            .map_or((0, 0), |s| (s.hash, s.watermark))
    }

    // ----- owners coming and going --------------------------------------------------

    /// The state of `owner` at `generation`, replacing an older life's.
    /// `None` if we hold a newer life already.
    fn owner_mut(&mut self, owner: &A, generation: u64) -> Option<&mut OwnerState> {
        let held = &mut self.held;
        let st = self.owners.entry(owner.clone()).or_insert_with(|| {
            *held = held.saturating_add(OWNER_OVERHEAD);
            OwnerState::new(generation)
        });
        if st.generation < generation {
            recharge(held, st.bytes, 0);
            *st = OwnerState::new(generation);
        }
        (st.generation == generation).then_some(st)
    }

    /// Bytes charged for all the state held, ours included.
    pub fn held(&self) -> usize {
        self.held
    }

    fn remove_owner(&mut self, owner: &A) {
        if let Some(st) = self.owners.remove(owner) {
            recharge(&mut self.held, st.bytes + OWNER_OVERHEAD, 0);
        }
    }

    /// Our own (empty) state, so our summary entry exists before the first write.
    pub fn adopt(&mut self, me: &NodeId<A>) {
        self.owner_mut(&me.addr, me.generation);
    }

    /// A new life of `owner` appeared: an older life's state goes; the new life's
    /// arrives with its first key.
    pub fn new_life(&mut self, owner: &NodeId<A>) {
        if self
            .owners
            .get(&owner.addr)
            .is_some_and(|s| s.generation < owner.generation)
        {
            self.remove_owner(&owner.addr);
        }
    }

    /// Forgets everything about `owner` (its tombstone expired, or it was evicted).
    pub fn forget(&mut self, owner: &A) {
        self.remove_owner(owner);
    }

    // ----- writes and merges --------------------------------------------------------

    /// Writes one key of our own state at our next version; returns the delta to spread.
    pub fn write(
        &mut self,
        now: Instant,
        me: &NodeId<A>,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<StateDelta<A>, StateError> {
        let max_bytes = self.max_state_bytes;
        let Some(st) = self.owner_mut(&me.addr, me.generation) else {
            return Err(StateError::StateFull);
        };
        let version = st.max_version + 1;
        let before = st.bytes;
        match st.merge(key, version, value.clone(), max_bytes) {
            Merge::Applied => {}
            _ => return Err(StateError::StateFull),
        }
        st.watermark = st.max_version;
        let after = st.bytes;
        recharge(&mut self.held, before, after);
        if value.is_none() {
            let due = now + self.tombstone_grace;
            self.queue_tombstone(
                due,
                me.addr.clone(),
                me.generation,
                key.to_string(),
                version,
            );
        }
        Ok(StateDelta {
            owner: me.clone(),
            key: key.to_string(),
            version,
            value,
        })
    }

    /// A rumoured delta of a live owner: merged, and passed on if it was news.
    /// Returns whether it changed anything.
    pub fn apply_delta<R: RngCore>(
        &mut self,
        now: Instant,
        delta: StateDelta<A>,
        out: &mut Outbox<A, R>,
    ) -> bool {
        let applied = self.merge_one(
            now,
            &delta.owner,
            &delta.key,
            delta.version,
            delta.value.clone(),
            out,
        );
        if applied {
            let subject = Subject::state(delta.owner.addr.clone(), delta.key.clone());
            out.rumour(subject, self.announce(&delta));
        }
        applied
    }

    /// A page of a live owner's state from anti-entropy.
    pub fn apply_page<R: RngCore>(
        &mut self,
        now: Instant,
        page: StatePage<A>,
        out: &mut Outbox<A, R>,
    ) {
        let owner = page.owner.clone();
        if page.reset {
            if let Some(st) = self.owner_mut(&owner.addr, owner.generation) {
                let before = st.bytes;
                let dropped = st.reset_range(page.after, page.upto, &page.entries);
                let after = st.bytes;
                recharge(&mut self.held, before, after);
                for key in dropped {
                    note_key_changed(&owner, key, None, out);
                }
            }
        }
        for (key, version, value) in page.entries {
            self.merge_one(now, &owner, &key, version, value, out);
        }
        if let Some(st) = self.owner_mut(&owner.addr, owner.generation) {
            if page.after <= st.watermark {
                st.watermark = st.watermark.max(page.upto);
                // Through `upto` we now hold what the sender holds, deletions included:
                // pass its floor on, so peers behind it get reset by us too.
                st.gc_floor = st.gc_floor.max(page.floor.min(page.upto));
            }
        }
    }

    /// Merges one key of a remote owner; returns whether it changed.
    #[allow(clippy::too_many_arguments)]
    fn merge_one<R: RngCore>(
        &mut self,
        now: Instant,
        owner: &NodeId<A>,
        key: &str,
        version: u64,
        value: Option<Vec<u8>>,
        out: &mut Outbox<A, R>,
    ) -> bool {
        if !self.owners.contains_key(&owner.addr)
            && self.held.saturating_add(OWNER_OVERHEAD) > self.max_total
        {
            out.count().state_refused += 1;
            return false;
        }
        let max_bytes = self.max_state_bytes;
        let created = !self.owners.contains_key(&owner.addr);
        let room = self
            .max_total
            .saturating_sub(self.held + if created { OWNER_OVERHEAD } else { 0 });
        let Some(st) = self.owner_mut(&owner.addr, owner.generation) else {
            return false;
        };
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return false;
        }
        // The owner's own budget, and no more than the node-wide budget has left.
        let before = st.bytes;
        let limit = max_bytes.min(before.saturating_add(room));
        match st.merge(key, version, value.clone(), limit) {
            Merge::Applied => {}
            Merge::Full if limit < max_bytes => {
                out.count().state_refused += 1;
                return false;
            }
            _ => return false,
        }
        st.advance_watermark();
        let after = st.bytes;
        recharge(&mut self.held, before, after);
        // Whatever we had queued about this key is older than what we now hold.
        out.forget_rumour(&Subject::state(owner.addr.clone(), key.to_string()));
        out.count().deltas_applied += 1;
        if value.is_none() {
            let due = now + self.tombstone_grace;
            self.queue_tombstone(
                due,
                owner.addr.clone(),
                owner.generation,
                key.to_string(),
                version,
            );
        }
        note_key_changed(owner, key.to_string(), value, out);
        true
    }

    // ----- anti-entropy -------------------------------------------------------------

    /// Compares our digest entry for one member with a peer's: raises what we know we
    /// hold, asks for what we may lack, and sends what they may lack.
    pub fn reconcile<R: RngCore>(
        &mut self,
        sender: &A,
        mine: &DigestEntry<A>,
        theirs: &DigestEntry<A>,
        reply: &mut Vec<Vec<u8>>,
        out: &mut Outbox<A, R>,
    ) {
        let addr = &theirs.claim.id.addr;
        let me = addr == out.me();
        if mine.claim.id.generation != theirs.claim.id.generation || !mine.claim.status.is_live() {
            return;
        }
        if mine.state_hash == theirs.state_hash {
            // Same content, so we hold what they hold; but never trust a watermark past
            // the versions we actually have, nor one about our own state.
            // Only an owner whose state we hold: a fresh entry's watermark could not
            // rise (it holds no versions), and one entry per member whose state is
            // empty on both sides (every member's, until it writes) would cost a
            // node about 150 bytes per member for nothing.
            if !me {
                let generation = mine.claim.id.generation;
                if let Some(st) = self
                    .owners
                    .get_mut(addr)
                    .filter(|st| st.generation == generation)
                {
                    st.watermark = st.watermark.max(theirs.watermark.min(st.max_version));
                }
            }
            return;
        }
        if !me {
            reply.push(encode_message(&Message::SyncRequest {
                owner: theirs.claim.id.clone(),
                after: mine.watermark,
            }));
        }
        if addr != sender {
            self.pages(sender, &theirs.claim.id, theirs.watermark, reply, out);
        }
    }

    /// Pages of `owner`'s state above `after`, oldest first, each fitting one datagram.
    ///
    /// A requester whose watermark is below our collected-tombstone floor may hold keys
    /// deleted since: it gets a reset instead, the whole state from version 0, so that
    /// every key it holds and we do not is dropped. Resets are rare (a peer away for
    /// longer than the grace) and bounded by `max_state_bytes`, so they are sent at once
    /// rather than a page per round.
    pub fn pages<R: RngCore>(
        &self,
        to: &A,
        owner: &NodeId<A>,
        after: u64,
        reply: &mut Vec<Vec<u8>>,
        out: &mut Outbox<A, R>,
    ) {
        let Some(st) = self
            .owners
            .get(&owner.addr)
            .filter(|s| s.generation == owner.generation)
        else {
            return;
        };
        let reset = after < st.gc_floor;
        if !reset && st.watermark <= after && st.max_version <= after {
            return;
        }
        let after = if reset { 0 } else { after };
        let budget = out.body_budget().saturating_sub(96);
        let entries = st.since(after);
        let max_pages = if reset {
            usize::MAX
        } else {
            SYNC_REPLY_PACKETS
        };
        let mut pages = Vec::new();
        let mut from = after;
        let mut i = 0;
        let large = |e: &Entry| e.value.as_ref().is_some_and(|v| v.len() > self.inline_max);
        while pages.len() < max_pages {
            let mut page = Vec::new();
            let mut size = 0;
            // A large value ends the page just before it and travels as a stub: the
            // page must not claim a version its receiver will only have once fetched.
            let mut stub = None;
            while let Some((k, e)) = entries.get(i) {
                if large(e) {
                    stub = Some((*k, *e));
                    i += 1;
                    break;
                }
                let len = k.len() + e.value.as_ref().map_or(0, Vec::len) + 24;
                if size + len > budget && !page.is_empty() {
                    break;
                }
                size += len;
                page.push(((*k).clone(), e.version, e.value.clone()));
                i += 1;
            }
            let truncated = i < entries.len() || stub.is_some();
            let last = match stub {
                Some((_, e)) => e.version - 1,
                None => page.last().map_or(from, |p| p.1),
            };
            let upto = if truncated { last } else { u64::MAX }
                .min(st.watermark)
                .max(from);
            let msg = Message::StatePage(StatePage {
                owner: owner.clone(),
                after: from,
                upto,
                reset,
                floor: st.gc_floor,
                entries: page,
            });
            pages.push(encode_message(&msg));
            from = upto;
            if let Some((k, e)) = stub {
                if let Some(v) = &e.value {
                    pages.push(encode_message(&Message::StateStub(stub_of(
                        owner, k, e.version, v,
                    ))));
                }
                // The next page starts after the large value; the receiver's watermark
                // stays below it until the value has arrived.
                from = e.version;
            }
            if !truncated {
                break;
            }
        }
        if reset {
            let count = pages.len();
            out.send(to.clone(), &pages, count);
        } else {
            reply.extend(pages);
        }
    }

    // ----- tombstones ---------------------------------------------------------------

    /// Queues a tombstone for collection at `due`. Overwritten and re-deleted keys leave
    /// stale entries behind; the queue is compacted when it doubles, so it stays within
    /// twice the tombstones actually held.
    fn queue_tombstone(
        &mut self,
        due: Instant,
        owner: A,
        generation: u64,
        key: String,
        version: u64,
    ) {
        self.tombstones.push_back(Tombstone {
            due,
            owner,
            generation,
            key,
            version,
        });
        if self.tombstones.len() >= 256 && self.tombstones.len() >= 2 * self.compacted {
            let owners = &self.owners;
            self.tombstones.retain(|t| {
                owners.get(&t.owner).is_some_and(|s| {
                    s.generation == t.generation
                        && s.entries
                            .get(&t.key)
                            .is_some_and(|e| e.version == t.version && e.value.is_none())
                })
            });
            self.compacted = self.tombstones.len();
        }
    }

    /// Collects the tombstones that are due.
    pub fn collect_tombstones(&mut self, now: Instant) {
        while self.tombstones.front().is_some_and(|t| t.due <= now) {
            let Some(t) = self.tombstones.pop_front() else {
                break;
            };
            // A tombstone may go only once we hold every write up to it: otherwise an
            // older value still in flight (a queued rumour, a peer's page) would be
            // taken for news and the key would come back.
            let requeue = match self
                .owners
                .get_mut(&t.owner)
                .filter(|s| s.generation == t.generation)
            {
                Some(st) if st.watermark >= t.version => {
                    let before = st.bytes;
                    st.collect(&t.key, t.version);
                    let after = st.bytes;
                    recharge(&mut self.held, before, after);
                    false
                }
                Some(st) => st
                    .entries
                    .get(&t.key)
                    .is_some_and(|e| e.version == t.version && e.value.is_none()),
                None => false,
            };
            if requeue {
                let due = now + self.tombstone_grace;
                self.queue_tombstone(due, t.owner, t.generation, t.key, t.version);
            }
        }
    }
}

/// Reports a changed key to the application.
fn note_key_changed<A: Address, R: RngCore>(
    owner: &NodeId<A>,
    key: String,
    value: Option<Vec<u8>>,
    out: &mut Outbox<A, R>,
) {
    out.event(Event::StateChanged {
        node: owner.clone(),
        key,
        value,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    type Delta = (u8, u64, Option<u8>);

    fn apply_all(deltas: &[Delta]) -> OwnerState {
        let mut s = OwnerState::new(1);
        for (k, v, val) in deltas {
            let key = alloc::format!("k{k}");
            s.merge(&key, *v, val.map(|b| vec![b]), usize::MAX);
        }
        s
    }

    fn unique_versions(deltas: Vec<Delta>) -> Vec<Delta> {
        // One owner never writes two values at one version.
        let mut seen = alloc::collections::BTreeMap::new();
        deltas
            .into_iter()
            .filter(|(k, v, val)| *seen.entry(*v).or_insert((*k, *val)) == (*k, *val))
            .collect()
    }

    proptest! {
        #[test]
        fn merge_is_order_independent(deltas in prop::collection::vec((0u8..6, 1u64..40, prop::option::of(any::<u8>())), 0..40), seed in any::<u64>()) {
            let deltas = unique_versions(deltas);
            let mut shuffled = deltas.clone();
            // A seeded Fisher-Yates: any order of the same deltas gives the same store.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(apply_all(&deltas), apply_all(&shuffled));
        }

        #[test]
        fn merge_is_idempotent(deltas in prop::collection::vec((0u8..6, 1u64..40, prop::option::of(any::<u8>())), 0..40)) {
            let deltas = unique_versions(deltas);
            let mut twice = deltas.clone();
            twice.extend(deltas.iter().cloned());
            prop_assert_eq!(apply_all(&deltas), apply_all(&twice));
        }

        #[test]
        fn merge_is_associative(a in prop::collection::vec((0u8..6, 1u64..40, prop::option::of(any::<u8>())), 0..20),
                                b in prop::collection::vec((0u8..6, 1u64..40, prop::option::of(any::<u8>())), 0..20),
                                c in prop::collection::vec((0u8..6, 1u64..40, prop::option::of(any::<u8>())), 0..20)) {
            let all = unique_versions([a, b, c].concat());
            let (a, rest) = all.split_at(all.len() / 3);
            let (b, c) = rest.split_at(rest.len() / 2);
            // (a ⊔ b) ⊔ c == a ⊔ (b ⊔ c): merging a store's entries into another is applying them.
            let ab_c: Vec<Delta> = [a, b, c].concat();
            let a_bc: Vec<Delta> = [b, c, a].concat();
            prop_assert_eq!(apply_all(&ab_c), apply_all(&a_bc));
        }
    }

    #[test]
    fn hash_tracks_content_not_history() {
        let mut a = OwnerState::new(1);
        a.merge("x", 1, Some(vec![1]), usize::MAX);
        a.merge("x", 3, Some(vec![3]), usize::MAX);
        let mut b = OwnerState::new(1);
        b.merge("x", 3, Some(vec![3]), usize::MAX);
        assert_eq!(a.hash, b.hash);
        a.merge("y", 4, None, usize::MAX);
        assert_eq!(a.hash, b.hash, "tombstones are not hashed");
        assert!(a.collect("y", 4));
        assert_eq!(a.gc_floor, 4);
    }

    #[test]
    fn byte_budget_refuses_without_change() {
        let mut s = OwnerState::new(1);
        let budget = ENTRY_OVERHEAD + 11;
        assert_eq!(s.merge("k", 1, Some(vec![0; 10]), budget), Merge::Applied);
        let before = s.clone();
        assert_eq!(s.merge("j", 2, Some(vec![0; 10]), budget), Merge::Full);
        assert_eq!(s, before);
    }

    // ----- the store's verbs, without the simulator ---------------------------------

    use crate::outbox::testing::{decoded, events, outbox, sent};
    use core::time::Duration;

    fn store() -> Store<u32> {
        Store::new(&Config::lan("t"), SeededState(1))
    }

    fn pages_of(reply: &[Vec<u8>]) -> Vec<StatePage<u32>> {
        decoded(reply)
            .into_iter()
            .map(|m| match m {
                Message::StatePage(p) => p,
                other => panic!("expected a page, got {other:?}"),
            })
            .collect()
    }

    fn delta(
        owner: &NodeId<u32>,
        key: &str,
        version: u64,
        value: Option<&[u8]>,
    ) -> StateDelta<u32> {
        StateDelta {
            owner: owner.clone(),
            key: key.to_string(),
            version,
            value: value.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn written_state_round_trips_through_pages() {
        let a_id = NodeId::new(1, 1);
        let mut a = store();
        let mut a_out = outbox(1);
        a.adopt(&a_id);
        let t = Instant::ZERO;
        let d = a.write(t, &a_id, "x", Some(vec![1])).expect("fits");
        assert_eq!(d, delta(&a_id, "x", 1, Some(&[1])));
        a.write(t, &a_id, "y", Some(vec![2])).expect("fits");
        a.write(t, &a_id, "x", Some(vec![3])).expect("fits");
        a.write(t, &a_id, "z", None).expect("fits");
        let held = a.get(&1).expect("ours").clone();
        assert_eq!((held.max_version, held.watermark), (4, 4));

        // b knows nothing of a's state: it asks from 0.
        let mut reply = Vec::new();
        a.pages(&2, &a_id, 0, &mut reply, &mut a_out);
        assert!(sent(&mut a_out).is_empty(), "pages go in the reply");
        let pages = pages_of(&reply);
        assert_eq!(pages.len(), 1);
        assert_eq!(
            (pages[0].after, pages[0].upto, pages[0].reset),
            (0, 4, false)
        );
        let versions: Vec<u64> = pages[0].entries.iter().map(|e| e.1).collect();
        assert_eq!(
            versions,
            vec![2, 3, 4],
            "ascending, overwritten versions gone"
        );

        let mut b = store();
        let mut b_out = outbox(2);
        for p in pages {
            b.apply_page(t, p, &mut b_out);
        }
        assert_eq!(
            b.get(&1),
            Some(&held),
            "the same content, hash and watermark"
        );
        assert_eq!(b.value(&1, "x"), Some(&[3][..]));
        assert_eq!(b.summary(&1, 1), a.summary(&1, 1));
        assert_eq!(events(&mut b_out).len(), 3, "one StateChanged per key");
        assert_eq!(b_out.stats().deltas_applied, 3);

        // Nothing new: no page.
        let mut reply = Vec::new();
        a.pages(&2, &a_id, 4, &mut reply, &mut a_out);
        assert!(reply.is_empty());

        // A later write travels alone.
        a.write(t, &a_id, "w", Some(vec![5])).expect("fits");
        a.pages(
            &2,
            &a_id,
            b.get(&1).map_or(0, |s| s.watermark),
            &mut reply,
            &mut a_out,
        );
        let pages = pages_of(&reply);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].entries, vec![("w".to_string(), 5, Some(vec![5]))]);
        b.apply_page(t, pages[0].clone(), &mut b_out);
        assert_eq!(b.get(&1), a.get(&1));
        // Applying a page twice changes nothing.
        b.apply_page(t, pages[0].clone(), &mut b_out);
        assert_eq!(b.get(&1), a.get(&1));
        assert_eq!(events(&mut b_out).len(), 1);
    }

    #[test]
    fn pages_of_another_life_are_not_sent() {
        let a_id = NodeId::new(1, 1);
        let mut a = store();
        let mut out = outbox(1);
        a.write(Instant::ZERO, &a_id, "x", Some(vec![1]))
            .expect("fits");
        let mut reply = Vec::new();
        a.pages(&2, &NodeId::new(1, 2), 0, &mut reply, &mut out);
        a.pages(&2, &NodeId::new(3, 1), 0, &mut reply, &mut out);
        assert!(reply.is_empty());
    }

    #[test]
    fn own_tombstone_is_collected_after_the_grace_only() {
        let grace = Config::lan("t").tombstone_grace;
        let me = NodeId::new(1, 1);
        let mut s = store();
        let t0 = Instant::from_secs(10);
        s.write(t0, &me, "k", Some(vec![1])).expect("fits");
        s.write(t0, &me, "k", None).expect("fits");
        let hash = s.hash_of(&1, 1);
        s.collect_tombstones(t0 + grace - Duration::from_nanos(1));
        assert!(
            s.get(&1).is_some_and(|st| st.entries.contains_key("k")),
            "within the grace"
        );
        s.collect_tombstones(t0 + grace);
        let st = s.get(&1).expect("ours");
        assert!(!st.entries.contains_key("k"), "collected at the grace");
        assert_eq!(st.gc_floor, 2);
        assert_eq!(
            s.hash_of(&1, 1),
            hash,
            "collecting changes nothing peers compare"
        );
    }

    #[test]
    fn rewritten_tombstone_is_not_collected() {
        let grace = Config::lan("t").tombstone_grace;
        let me = NodeId::new(1, 1);
        let mut s = store();
        s.write(Instant::ZERO, &me, "k", None).expect("fits");
        s.write(Instant::ZERO, &me, "k", Some(vec![1]))
            .expect("fits");
        s.collect_tombstones(Instant::ZERO + grace);
        assert_eq!(s.value(&1, "k"), Some(&[1][..]));
        assert_eq!(s.get(&1).map(|st| st.gc_floor), Some(0));
    }

    #[test]
    fn remote_tombstone_waits_for_the_watermark_to_cover_it() {
        let grace = Config::lan("t").tombstone_grace;
        let owner = NodeId::new(3, 1);
        let mut s = store();
        let mut out = outbox(1);
        let t0 = Instant::ZERO;
        assert!(s.apply_delta(t0, delta(&owner, "a", 1, Some(&[1])), &mut out));
        // Version 2 is still on its way; the delete (version 3) arrives first.
        assert!(s.apply_delta(t0, delta(&owner, "k", 3, None), &mut out));
        assert_eq!(s.get(&3).map(|st| st.watermark), Some(1));

        // Past the grace, but version 2 may still carry an older "k": kept.
        let t1 = t0 + grace;
        s.collect_tombstones(t1);
        assert!(s.get(&3).is_some_and(|st| st.entries.contains_key("k")));

        // Version 2 arrives: the watermark covers the tombstone now, but it was
        // requeued for another grace.
        assert!(s.apply_delta(t1, delta(&owner, "b", 2, Some(&[2])), &mut out));
        assert_eq!(s.get(&3).map(|st| st.watermark), Some(3));
        s.collect_tombstones(t1 + grace - Duration::from_nanos(1));
        assert!(s.get(&3).is_some_and(|st| st.entries.contains_key("k")));
        s.collect_tombstones(t1 + grace);
        let st = s.get(&3).expect("held");
        assert!(!st.entries.contains_key("k"), "collected once covered");
        assert_eq!(st.gc_floor, 3);

        // An older value of the collected key is not news.
        assert!(!s.apply_delta(t1 + grace, delta(&owner, "k", 2, Some(&[9])), &mut out));
        assert_eq!(s.value(&3, "k"), None);
    }

    #[test]
    fn peer_behind_the_collected_floor_gets_a_reset() {
        let grace = Config::lan("t").tombstone_grace;
        let a_id = NodeId::new(1, 1);
        let mut a = store();
        let mut a_out = outbox(1);
        let t0 = Instant::ZERO;
        a.write(t0, &a_id, "k", Some(vec![1])).expect("fits");
        a.write(t0, &a_id, "j", Some(vec![2])).expect("fits");
        // b holds versions 1 and 2.
        let mut b = store();
        let mut b_out = outbox(2);
        let mut reply = Vec::new();
        a.pages(&2, &a_id, 0, &mut reply, &mut a_out);
        for p in pages_of(&reply) {
            b.apply_page(t0, p, &mut b_out);
        }
        let _ = events(&mut b_out);
        // a deletes "k" and collects it; b never hears of the delete.
        a.write(t0, &a_id, "k", None).expect("fits");
        a.collect_tombstones(t0 + grace);
        assert_eq!(a.get(&1).map(|st| st.gc_floor), Some(3));

        let mut reply = Vec::new();
        a.pages(&2, &a_id, 2, &mut reply, &mut a_out);
        assert!(
            reply.is_empty(),
            "a reset is sent at once, not in the reply"
        );
        let sent = sent(&mut a_out);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 2);
        let Message::StatePage(page) = sent[0].1[0].clone() else {
            panic!("expected a page");
        };
        assert!(page.reset && page.after == 0);
        b.apply_page(t0 + grace, page, &mut b_out);
        assert_eq!(b.value(&1, "k"), None, "the deleted key is dropped");
        assert_eq!(b.value(&1, "j"), Some(&[2][..]));
        assert_eq!(b.summary(&1, 1), a.summary(&1, 1));
        assert_eq!(
            b.get(&1).map(|st| st.gc_floor),
            Some(3),
            "the floor is passed on"
        );
        assert!(events(&mut b_out).iter().any(|e| matches!(
            e,
            Event::StateChanged { key, value: None, .. } if key == "k"
        )));
    }

    #[test]
    fn reconcile_asks_for_what_we_lack_and_sends_what_they_lack() {
        let a_id = NodeId::new(1, 1);
        let mut a = store();
        let mut out = outbox(2);
        a.write(Instant::ZERO, &a_id, "x", Some(vec![1]))
            .expect("fits");
        let (hash, watermark) = a.summary(&1, 1);
        let entry = |state_hash, watermark| DigestEntry {
            claim: crate::membership::MemberClaim {
                id: a_id.clone(),
                incarnation: 0,
                status: crate::membership::Status::Alive,
            },
            state_hash,
            watermark,
        };
        // We (node 2) hold a's state; peer 3 holds none of it.
        let mut reply = Vec::new();
        a.reconcile(
            &3,
            &entry(hash, watermark),
            &entry(0, 0),
            &mut reply,
            &mut out,
        );
        let msgs = decoded(&reply);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(
            msgs[0],
            Message::SyncRequest {
                owner: a_id.clone(),
                after: watermark
            }
        );
        assert!(matches!(&msgs[1], Message::StatePage(p) if p.after == 0 && p.entries.len() == 1));
        // Same content: nothing to say.
        let mut reply = Vec::new();
        a.reconcile(
            &3,
            &entry(hash, watermark),
            &entry(hash, watermark),
            &mut reply,
            &mut out,
        );
        assert!(reply.is_empty());
    }

    #[test]
    fn empty_state_on_both_sides_holds_no_entry() {
        let mut a = store();
        let mut out = outbox(2);
        let held = a.held();
        // Members 4 to 99 have written nothing: their digest entries agree (empty on
        // both sides), and we hold nothing for them, nor charge anything.
        for owner in 4..100u32 {
            let entry = DigestEntry {
                claim: crate::membership::MemberClaim {
                    id: NodeId::new(owner, 1),
                    incarnation: 0,
                    status: crate::membership::Status::Alive,
                },
                state_hash: 0,
                watermark: 0,
            };
            let mut reply = Vec::new();
            a.reconcile(&3, &entry, &entry, &mut reply, &mut out);
            assert!(reply.is_empty());
            assert!(a.get(&owner).is_none(), "owner {owner}");
        }
        assert_eq!(a.held(), held);
        // A member whose state we hold still has its watermark raised.
        let id = NodeId::new(5, 1);
        a.write(Instant::ZERO, &id, "x", Some(vec![1]))
            .expect("fits");
        let (hash, _) = a.summary(&5, 1);
        let mut entry = DigestEntry {
            claim: crate::membership::MemberClaim {
                id,
                incarnation: 0,
                status: crate::membership::Status::Alive,
            },
            state_hash: hash,
            watermark: 0,
        };
        let mine = entry.clone();
        entry.watermark = 1;
        a.reconcile(&3, &mine, &entry, &mut Vec::new(), &mut out);
        assert_eq!(a.get(&5).map(|st| st.watermark), Some(1));
    }
}
