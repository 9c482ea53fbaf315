//! Who is in the cluster: identities, member states, and the SWIM precedence rules
//! that decide which of two claims about a member wins.

use core::fmt;
use core::hash::Hash;

use serde::{Deserialize, Serialize};

use alloc::vec::Vec;
use rand_core::RngCore;

use core::hash::BuildHasher;

use hashbrown::HashTable;

use crate::chunked::Chunked;
use crate::hash::SeededState;
use crate::outbox::below;
use crate::time::Instant;

/// What the core needs of an address type. Blanket-implemented; `SocketAddr` is the usual one,
/// and a custom network stack can bring its own.
pub trait Address:
    Clone + Eq + Ord + Hash + fmt::Debug + Serialize + serde::de::DeserializeOwned + Send + 'static
{
}
impl<T> Address for T where
    T: Clone
        + Eq
        + Ord
        + Hash
        + fmt::Debug
        + Serialize
        + serde::de::DeserializeOwned
        + Send
        + 'static
{
}

/// A node's identity: its address and the generation of the process behind it.
///
/// A process picks its generation when it starts (wall-clock time, as Cassandra's
/// `HeartBeatState.generation`), so a restart at the same address is a new life that
/// supersedes the old one instead of being refuted as stale.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct NodeId<A> {
    /// Where the node receives datagrams.
    pub addr: A,
    /// Which life of the process at `addr` this is; higher is newer.
    pub generation: u64,
}

impl<A> NodeId<A> {
    /// A node identity.
    pub fn new(addr: A, generation: u64) -> Self {
        NodeId { addr, generation }
    }
}

/// A claim's status, as carried on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Status {
    /// Answering probes.
    Alive,
    /// Missed a probe; will be declared dead unless it refutes in time.
    Suspect,
    /// Declared dead.
    Dead,
    /// Left gracefully.
    Left,
}

/// A claim about one member's life: the unit that membership gossip carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct MemberClaim<A> {
    /// Who the claim is about.
    pub id: NodeId<A>,
    /// The incarnation the claim is made at.
    pub incarnation: u64,
    /// What is claimed.
    pub status: Status,
}

impl Status {
    /// Whether the member takes part in probing, gossip and the ring.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Alive | Status::Suspect)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Alive => "alive",
            Status::Suspect => "suspect",
            Status::Dead => "dead",
            Status::Left => "left",
        })
    }
}

/// A member as reported by [`Node::members`](crate::Node::members).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo<A> {
    /// Identity.
    pub id: NodeId<A>,
    /// Current state.
    pub state: Status,
    /// The incarnation that state was claimed at.
    pub incarnation: u64,
    /// When this node last changed its view of the member.
    pub since: Instant,
}

/// One entry of the member table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Member<A> {
    pub id: NodeId<A>,
    pub incarnation: u64,
    pub status: Status,
    pub since: Instant,
    /// This life answered one of our probes at its address: a blind spoofer never
    /// can. Until then the member is admitted on trust, and held to a share of the
    /// table from which it is evicted first.
    pub confirmed: bool,
    /// Where the member is in the live, dead and unconfirmed rosters (`NOT_IN`
    /// when absent), kept by the table: in what would be the entry's padding.
    pos: [u32; 3],
}

impl<A: Clone> Member<A> {
    pub fn rank(&self) -> (u64, u64, Status) {
        (self.id.generation, self.incarnation, self.status)
    }

    pub fn claim(&self) -> MemberClaim<A> {
        MemberClaim {
            id: self.id.clone(),
            incarnation: self.incarnation,
            status: self.status,
        }
    }
}

/// What applying a claim changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing: the claim was stale or already known.
    None,
    /// Only the incarnation moved; the status is the same.
    Refreshed,
    /// A member (or a new life of it) appeared.
    Joined,
    /// Alive became suspect.
    Suspected,
    /// Suspect or dead became alive.
    Recovered,
    /// Became dead.
    Died,
    /// Left.
    Left,
}

/// Decides whether `claim` supersedes what we hold (`current`), by SWIM's rules:
/// generations first (a new life wins outright), then incarnations, and at equal
/// incarnation Left > Dead > Suspect > Alive. Only the member itself raises its
/// incarnation, so a claim of alive at a higher incarnation is proof of life even
/// after a death verdict: that is how a healed partition refutes its way back.
pub(crate) fn supersedes(claim: (u64, u64, Status), current: (u64, u64, Status)) -> bool {
    (claim.0, claim.1, rank(claim.2)) > (current.0, current.1, rank(current.2))
}

impl<A> MemberClaim<A> {
    /// Whether the claim refutes a suspicion: alive at a raised incarnation (only the
    /// member raises its own). A holder of the suspicion that misses it declares a
    /// live member dead, so it is passed on before other topology news.
    pub(crate) fn is_refutation(&self) -> bool {
        self.status == Status::Alive && self.incarnation > 0
    }

    /// The claim's order key: (generation, incarnation, status).
    pub(crate) fn rank(&self) -> (u64, u64, Status) {
        (self.id.generation, self.incarnation, self.status)
    }
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Alive => 0,
        Status::Suspect => 1,
        Status::Dead => 2,
        Status::Left => 3,
    }
}

/// The most a claim may raise a known member's incarnation at once. A member raises
/// its own incarnation by one per refutation, so honest gaps are tiny; the bound keeps
/// a forged claim from pushing a member to `u64::MAX`, where it could never refute
/// again (memberlist #358): saturating it takes 2^48 accepted forgeries.
pub const MAX_INCARNATION_JUMP: u64 = 1 << 16;

/// The most a claim may raise a known member's generation at once. Generations are a
/// start time (the runtimes use microseconds since 1970, tests a counter), so a
/// restart moves them by little: 2^40 µs is 12.7 days, far beyond `dead_retention`,
/// after which the member is forgotten anyway. Saturating a member at `u64::MAX`
/// takes 2^24 accepted forgeries, each of which a new life must then confirm.
pub const MAX_GENERATION_JUMP: u64 = 1 << 40;

/// Where this node is in its own life: before `join`, in the cluster, or gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Lifecycle {
    Idle,
    Active,
    Left,
}

/// A member's place in this node's member table: its slot, interned once per node.
/// Parts that keep something per member key it by this index rather than by the
/// member's address (4 bytes instead of an address and a hash-map bucket). A slot is
/// freed when its member is forgotten and may be reused by a later newcomer, so a part
/// drops what it keeps under an index when the node tells it the member was forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct MemberIx(u32);

impl MemberIx {
    /// This node itself, which has no slot: parts that keep something for every
    /// member and for this node too (the summary tree) keep this node's apart.
    pub const ME: MemberIx = MemberIx(u32::MAX);
    /// No member: what a part leaves where it held a slot that was freed.
    pub const NONE: MemberIx = MemberIx(u32::MAX - 1);

    /// The slot's position, for indexing a part's per-member `Vec`.
    pub fn get(self) -> usize {
        self.0 as usize
    }

    /// An index made up by a test (parts are tested without a member table).
    #[cfg(test)]
    pub fn test(ix: u32) -> MemberIx {
        MemberIx(ix)
    }
}

/// The rosters, each a list with O(1) insert, remove and uniform random choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Roster {
    /// Alive or suspect.
    Live = 0,
    /// Dead or gone.
    Dead = 1,
    /// Not confirmed yet (see [`Member::confirmed`]).
    Unconfirmed = 2,
}

/// Marks a slot that is not in a roster.
const NOT_IN: u32 = u32::MAX;

/// One slot of the member table: the member, which holds its position in each
/// roster.
type Slot<A> = Member<A>;

/// The member table: members in reusable slots, an index from address to slot, and
/// the rosters as lists of slots (each slot knows its position in each roster).
///
/// The index is a `HashTable` of slot numbers hashed through the slot's address with
/// the node's seeded hasher: about 5 bytes per bucket where a `Map<A, Member<A>>`
/// held the address twice and the member in every bucket. It is filled and emptied
/// exactly as the map it replaces would be, so it iterates in the same order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "A: crate::Address", from = "TableRepr<A>")]
struct Table<A> {
    seed: u64,
    /// Allocated a chunk at a time (see [`Chunked`]).
    slots: Chunked<Option<Slot<A>>>,
    /// Free slots, reused last freed first.
    free: Vec<u32>,
    /// Written as the slots in iteration order, and rebuilt from it.
    #[serde(serialize_with = "crate::snapshot::index_order")]
    index: HashTable<u32>,
    rosters: [Vec<u32>; 3],
}

/// [`Table`] as a snapshot holds it.
#[derive(Deserialize)]
#[serde(bound = "A: crate::Address")]
struct TableRepr<A> {
    seed: u64,
    slots: Chunked<Option<Slot<A>>>,
    free: Vec<u32>,
    index: Vec<u32>,
    rosters: [Vec<u32>; 3],
}

impl<A: crate::Address> From<TableRepr<A>> for Table<A> {
    fn from(r: TableRepr<A>) -> Self {
        let mut t = Table {
            seed: r.seed,
            slots: r.slots,
            free: r.free,
            index: HashTable::with_capacity(r.index.len()),
            rosters: r.rosters,
        };
        // As the map it replaces was restored: its entries in their order, into a
        // table sized for them. Only slots that hold a member are indexed.
        for ix in r.index {
            if let Some(addr) = t.slot(ix).map(|s| s.id.addr.clone()) {
                t.index_insert(&addr, ix);
            }
        }
        t
    }
}

impl<A: crate::Address> Table<A> {
    fn new(hasher: SeededState) -> Self {
        Table {
            seed: hasher.0,
            slots: Chunked::default(),
            free: Vec::new(),
            index: HashTable::new(),
            rosters: [Vec::new(), Vec::new(), Vec::new()],
        }
    }

    fn hash(seed: u64, addr: &A) -> u64 {
        SeededState(seed).hash_one(addr)
    }

    fn slot(&self, ix: u32) -> Option<&Slot<A>> {
        self.slots.get(ix).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, ix: u32) -> Option<&mut Slot<A>> {
        self.slots.get_mut(ix).and_then(Option::as_mut)
    }

    fn find(&self, addr: &A) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(Self::hash(self.seed, addr), |&ix| {
                slots
                    .get(ix)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.id.addr == *addr)
            })
            .copied()
    }

    fn get(&self, addr: &A) -> Option<&Member<A>> {
        self.find(addr).and_then(|ix| self.slot(ix))
    }

    fn get_mut(&mut self, addr: &A) -> Option<&mut Member<A>> {
        let ix = self.find(addr)?;
        self.slot_mut(ix)
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn index_insert(&mut self, addr: &A, ix: u32) {
        let (seed, slots) = (self.seed, &self.slots);
        let slot_addr = |i: u32| slots.get(i).and_then(Option::as_ref).map(|s| &s.id.addr);
        self.index
            .entry(
                Self::hash(seed, addr),
                |&i| slot_addr(i) == Some(addr),
                |&i| slot_addr(i).map_or(0, |a| Self::hash(seed, a)),
            )
            .insert(ix);
    }

    /// Puts a member not in the table yet into a free slot.
    fn insert(&mut self, member: Member<A>) -> u32 {
        let addr = member.id.addr.clone();
        let slot = Member {
            pos: [NOT_IN; 3],
            ..member
        };
        let ix = match self.free.pop() {
            Some(ix) => {
                if let Some(s) = self.slots.get_mut(ix) {
                    *s = Some(slot);
                }
                ix
            }
            None => self.slots.push(Some(slot)),
        };
        self.index_insert(&addr, ix);
        ix
    }

    /// Takes the member at `addr` out of the table and every roster; returns the
    /// slot it held, now free.
    fn remove(&mut self, addr: &A) -> Option<u32> {
        let ix = self.find(addr)?;
        for roster in [Roster::Live, Roster::Dead, Roster::Unconfirmed] {
            self.roster_remove(roster, ix);
        }
        let slots = &self.slots;
        if let Ok(entry) = self.index.find_entry(Self::hash(self.seed, addr), |&i| {
            slots
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.id.addr == *addr)
        }) {
            entry.remove();
        }
        if let Some(s) = self.slots.get_mut(ix) {
            *s = None;
        }
        self.free.push(ix);
        Some(ix)
    }

    fn roster(&self, roster: Roster) -> &[u32] {
        &self.rosters[roster as usize]
    }

    fn in_roster(&self, roster: Roster, addr: &A) -> bool {
        self.find(addr)
            .and_then(|ix| self.slot(ix))
            .is_some_and(|s| s.pos[roster as usize] != NOT_IN)
    }

    /// The address at position `i` of `roster`.
    fn at(&self, roster: Roster, i: usize) -> Option<&A> {
        let ix = *self.rosters[roster as usize].get(i)?;
        self.slot(ix).map(|s| &s.id.addr)
    }

    fn roster_addrs(&self, roster: Roster) -> impl Iterator<Item = &Member<A>> + '_ {
        self.rosters[roster as usize]
            .iter()
            .filter_map(|&ix| self.slot(ix))
    }

    /// Adds the member at `addr` to `roster`; false if it was there or is unknown.
    fn roster_insert(&mut self, roster: Roster, addr: &A) -> bool {
        let r = roster as usize;
        let Some(ix) = self.find(addr) else {
            return false;
        };
        let len = self.rosters[r].len() as u32;
        let Some(slot) = self.slot_mut(ix) else {
            return false;
        };
        if slot.pos[r] != NOT_IN {
            return false;
        }
        slot.pos[r] = len;
        self.rosters[r].push(ix);
        true
    }

    fn roster_remove_addr(&mut self, roster: Roster, addr: &A) {
        if let Some(ix) = self.find(addr) {
            self.roster_remove(roster, ix);
        }
    }

    fn roster_remove(&mut self, roster: Roster, ix: u32) {
        let r = roster as usize;
        let Some(slot) = self.slot_mut(ix) else {
            return;
        };
        let i = core::mem::replace(&mut slot.pos[r], NOT_IN);
        if i == NOT_IN {
            return;
        }
        let list = &mut self.rosters[r];
        if (i as usize) < list.len() {
            list.swap_remove(i as usize);
        }
        if let Some(&moved) = list.get(i as usize) {
            if let Some(s) = self.slot_mut(moved) {
                s.pos[r] = i;
            }
        }
    }

    fn roster_len(&self, roster: Roster) -> usize {
        self.rosters[roster as usize].len()
    }
}

/// What applying a claim about someone else did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Applied<A> {
    pub change: Change,
    /// The member just entered the live roster (it was not live before).
    pub entered_live: bool,
    /// A new member was turned away because the table is full.
    pub refused: bool,
    /// The claim moved a member further than the bounds allow, and was ignored.
    pub implausible: bool,
    /// An unconfirmed member evicted to make room for this one, and the slot it
    /// held (which the newcomer may hold now: every part forgets it first).
    pub evicted: Option<(A, MemberIx)>,
    /// The claim is the very one we hold (same life, incarnation and status): its
    /// sender knows what we know, which quiets our rumour of it (see
    /// [`Budget::Arrival`](crate::dissemination::Budget::Arrival)).
    pub echo: bool,
}

/// What a claim about ourselves calls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refutation {
    /// Not an accusation of this life: nothing to do.
    Ignore,
    /// An accusation older than our incarnation: repeat our current claim.
    Repeat,
    /// We raised our incarnation above the accusation: spread the new claim.
    Raised,
}

/// How a peer's claim about a member compares with ours (anti-entropy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Compared<A> {
    /// The same claim about ourselves: nothing to do.
    Same,
    /// A different claim about ourselves: refute it if needed and tell them ours.
    AboutMe,
    /// Ours supersedes theirs: tell them.
    OursNewer(MemberClaim<A>),
    /// Theirs may be news: apply it.
    TheirsNewer,
}

/// Membership: this node's own life and incarnation, and the table of every other
/// member it knows with the live and dead rosters kept beside it.
///
/// It applies claims by SWIM's precedence ([`supersedes`]) and says what changed;
/// the node turns each change into the other parts' work (timers, the ring, the
/// anti-entropy summary, events and rumours).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "A: crate::Address")]
pub(crate) struct Membership<A> {
    me: NodeId<A>,
    incarnation: u64,
    lifecycle: Lifecycle,
    seeds: Vec<A>,
    /// Every other member, with the live, dead and unconfirmed rosters.
    table: Table<A>,
    /// Where eviction among the unconfirmed members goes next.
    evict_at: usize,
    ping_at: usize,
    max_members: usize,
    max_unconfirmed: usize,
    /// When we last called `join`: an unconfirmed member's time to answer starts no
    /// earlier, because before it we send nothing (no admission ping), so silence
    /// proves nothing yet.
    joined_at: Instant,
}

impl<A: crate::Address> Membership<A> {
    /// A membership with the default unconfirmed share (tests).
    #[cfg(test)]
    pub fn new(me: NodeId<A>, max_members: usize, hasher: SeededState) -> Self {
        Self::with_unconfirmed_share(me, max_members, 25, hasher)
    }

    /// A membership whose unconfirmed members may fill at most `share` percent of
    /// the table.
    pub fn with_unconfirmed_share(
        me: NodeId<A>,
        max_members: usize,
        share: u8,
        hasher: SeededState,
    ) -> Self {
        Membership {
            me,
            incarnation: 0,
            lifecycle: Lifecycle::Idle,
            seeds: Vec::new(),
            table: Table::new(hasher),
            evict_at: 0,
            ping_at: 0,
            max_members,
            max_unconfirmed: (max_members * usize::from(share.min(100)) / 100).max(1),
            joined_at: Instant::ZERO,
        }
    }

    // ----- ourselves ----------------------------------------------------------------

    pub fn me(&self) -> &NodeId<A> {
        &self.me
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    pub fn is_active(&self) -> bool {
        self.lifecycle == Lifecycle::Active
    }

    pub fn has_left(&self) -> bool {
        self.lifecycle == Lifecycle::Left
    }

    /// Enters the cluster through `seeds` at `now`; a node that left comes back at a
    /// higher incarnation, so its "alive" beats its own "left".
    pub fn join(&mut self, now: Instant, seeds: impl IntoIterator<Item = A>) {
        if self.lifecycle == Lifecycle::Left {
            self.incarnation += 1;
        }
        self.lifecycle = Lifecycle::Active;
        self.joined_at = now;
        self.seeds = seeds.into_iter().filter(|s| *s != self.me.addr).collect();
    }

    /// Raises our incarnation, unasked: we were cut off from the cluster (see
    /// `Detector::is_cut_off`) and reach it again, so our alive claim must beat
    /// whatever verdict it reached meanwhile. False if we are not in the cluster.
    pub fn speak_up(&mut self) -> bool {
        if self.lifecycle != Lifecycle::Active {
            return false;
        }
        self.incarnation = self.incarnation.saturating_add(1);
        true
    }

    /// Marks this node as gone; false if it was not in the cluster.
    pub fn leave(&mut self) -> bool {
        if self.lifecycle != Lifecycle::Active {
            return false;
        }
        self.lifecycle = Lifecycle::Left;
        true
    }

    pub fn seeds(&self) -> &[A] {
        &self.seeds
    }

    /// Replaces the seeds (re-resolved by the runtime), without rejoining.
    pub fn set_seeds(&mut self, seeds: impl IntoIterator<Item = A>) {
        self.seeds = seeds.into_iter().filter(|s| *s != self.me.addr).collect();
    }

    /// Our own claim, as we spread it.
    pub fn own_claim(&self) -> MemberClaim<A> {
        let status = if self.lifecycle == Lifecycle::Left {
            Status::Left
        } else {
            Status::Alive
        };
        MemberClaim {
            id: self.me.clone(),
            incarnation: self.incarnation,
            status,
        }
    }

    /// What to answer a member's farewell heard from the member itself (its own
    /// datagram, from its own address): the farewell, echoed back. It can be a late
    /// datagram from before the member rejoined (the same life at a higher
    /// incarnation), or a forgery: the echo is then a stale accusation, which the
    /// member answers at once with its current claim. Without it, two such members can
    /// each hold the other as gone for good, since nobody gossips to a member it holds
    /// as left but by chance. A real leaver gets one small datagram from each peer it
    /// tells, and ignores it ([`refute`](Self::refute) does).
    pub fn farewell_echo(
        claim: &MemberClaim<A>,
        sender: &NodeId<A>,
        direct: bool,
    ) -> Option<MemberClaim<A>> {
        (claim.status == Status::Left && direct && claim.id == *sender).then(|| claim.clone())
    }

    /// A claim about ourselves arrived. Only we raise our incarnation, so alive at a
    /// higher one beats any accusation everywhere.
    pub fn refute(&mut self, claim: &MemberClaim<A>) -> Refutation {
        let accusation = matches!(claim.status, Status::Suspect | Status::Dead | Status::Left);
        if claim.id.generation != self.me.generation
            || !accusation
            || self.lifecycle != Lifecycle::Active
        {
            return Refutation::Ignore;
        }
        if claim.incarnation < self.incarnation {
            // A stale accusation: our refutation missed whoever still spreads it.
            return Refutation::Repeat;
        }
        if claim.incarnation > self.incarnation.saturating_add(MAX_INCARNATION_JUMP) {
            // No peer accepts an accusation this far ahead of us (see `implausible`):
            // it is forged, and raising ourselves to it is what would saturate us.
            return Refutation::Repeat;
        }
        self.incarnation = claim.incarnation.saturating_add(1);
        Refutation::Raised
    }

    // ----- the others ---------------------------------------------------------------

    /// How a claim from a peer is taken here, and whether it was a death verdict we
    /// had no part in. A death verdict about a member we hold alive and have never
    /// suspected is taken as a suspicion (to run for the minimum timeout): the member
    /// hears of it and can refute it first, so one node's verdict alone (a gray node,
    /// whose own probes fail) cannot kill a healthy member everywhere, as SWIM's rule
    /// would let it. A real crash is suspected by everyone before the first verdict
    /// arrives, so this only delays the rare member that missed the suspicion.
    pub fn as_received(&self, claim: MemberClaim<A>) -> (MemberClaim<A>, bool) {
        let unseen = claim.status == Status::Dead
            && self.table.get(&claim.id.addr).is_some_and(|m| {
                m.id == claim.id && m.status == Status::Alive && claim.incarnation >= m.incarnation
            });
        if unseen {
            let claim = MemberClaim {
                status: Status::Suspect,
                ..claim
            };
            (claim, true)
        } else {
            (claim, false)
        }
    }

    /// Applies a second-hand claim about someone else (see [`Membership::apply_from`]).
    #[cfg(test)]
    pub fn apply(&mut self, claim: &MemberClaim<A>, now: Instant) -> Applied<A> {
        self.apply_from(claim, now, false)
    }

    /// Applies a claim about someone else and keeps the rosters in step; `direct`
    /// when the member itself sent it from its own address.
    pub fn apply_from(&mut self, claim: &MemberClaim<A>, now: Instant, direct: bool) -> Applied<A> {
        // Most claims a node receives are news it has already (a mass join sends each
        // member's claim to every node about 4·log10 N times): one lookup settles
        // them. A claim that does not supersede ours is never implausible and changes
        // nothing, unless the member still has to take its turn among the unconfirmed.
        if let Some(m) = self.table.get(&claim.id.addr).filter(|m| {
            !supersedes(claim.rank(), m.rank())
                && (m.confirmed || m.pos[Roster::Unconfirmed as usize] != NOT_IN)
        }) {
            return Applied {
                change: Change::None,
                entered_live: false,
                refused: false,
                implausible: false,
                evicted: None,
                echo: claim.rank() == m.rank(),
            };
        }
        let known_before = self.table.find(&claim.id.addr).is_some();
        let implausible = self.implausible(claim);
        // A newcomer enters unconfirmed: when unconfirmed members hold their whole share
        // (or the table is full), the next one in turn makes room, so a flood of forged
        // identities can neither fill the table nor keep a real newcomer out.
        let mut evicted = None;
        let newcomer = !known_before && !implausible && claim.status == Status::Alive;
        if newcomer
            && (self.table.roster_len(Roster::Unconfirmed) >= self.max_unconfirmed
                || self.table.len() >= self.max_members)
        {
            evicted = self.evict_unconfirmed();
        }
        // A full table with no unconfirmed member to give way: the longest-dead member
        // does, for a newcomer that spoke to us itself. A tombstone only guards against
        // stale rumours about a life that is over; a newcomer may be real (a table full
        // of members that went silent must not lock real members out for
        // `dead_retention`; found by the fuzzer). A second-hand identity may be a
        // ghost, and the member just declared dead may be a live one we lost touch
        // with: evicting it for a rumour dropped the last trace of a real member, which
        // then neither side probed again (found by the fuzzer too).
        if newcomer && direct && evicted.is_none() && self.table.len() >= self.max_members {
            evicted = self.evict_longest_dead();
        }
        let room = self.table.len() < self.max_members;
        let change = if implausible {
            Change::None
        } else {
            self.apply_to_table(claim, now, room)
        };
        let refused =
            !known_before && change == Change::None && claim.status == Status::Alive && !room;
        let addr = &claim.id.addr;
        let mut entered_live = false;
        match change {
            Change::Joined | Change::Recovered => {
                self.table.roster_remove_addr(Roster::Dead, addr);
                entered_live = self.table.roster_insert(Roster::Live, addr);
            }
            Change::Died | Change::Left => {
                self.table.roster_remove_addr(Roster::Live, addr);
                self.table.roster_insert(Roster::Dead, addr);
            }
            Change::None | Change::Refreshed | Change::Suspected => {}
        }
        // A member can turn unconfirmed without being a newcomer (a known address at a
        // new generation, or a first claim that is not `Alive`): it takes its turn in
        // the share too, so the share holds whatever the claim.
        if self.table.get(addr).is_some_and(|m| !m.confirmed)
            && !self.table.in_roster(Roster::Unconfirmed, addr)
        {
            if self.table.roster_len(Roster::Unconfirmed) >= self.max_unconfirmed
                && evicted.is_none()
            {
                evicted = self.evict_unconfirmed();
            }
            self.table.roster_insert(Roster::Unconfirmed, addr);
        }
        Applied {
            change,
            entered_live,
            refused,
            implausible,
            evicted,
            echo: false,
        }
    }

    /// Evicts the next unconfirmed member in turn; returns it.
    fn evict_unconfirmed(&mut self) -> Option<(A, MemberIx)> {
        let n = self.table.roster_len(Roster::Unconfirmed);
        if n == 0 {
            return None;
        }
        let victim = self
            .table
            .at(Roster::Unconfirmed, self.evict_at % n)?
            .clone();
        self.evict_at = self.evict_at.wrapping_add(1);
        let ix = self.forget(&victim)?;
        Some((victim, ix))
    }

    /// Evicts the member dead for the longest time, if any; returns it.
    fn evict_longest_dead(&mut self) -> Option<(A, MemberIx)> {
        let victim = self
            .table
            .roster_addrs(Roster::Dead)
            .map(|m| (m.since, &m.id.addr))
            .min_by(|x, y| x.0.cmp(&y.0))
            .map(|(_, a)| a.clone())?;
        let ix = self.forget(&victim)?;
        Some((victim, ix))
    }

    /// Removes a member from the table and every roster; returns the slot it held.
    fn forget(&mut self, addr: &A) -> Option<MemberIx> {
        self.table.remove(addr).map(MemberIx)
    }

    /// The member at `addr` answered a probe at its address: it is confirmed.
    pub fn confirm(&mut self, addr: &A) {
        if let Some(m) = self.table.get_mut(addr) {
            m.confirmed = true;
            self.table.roster_remove_addr(Roster::Unconfirmed, addr);
        }
    }

    /// Whether the member at `addr` is confirmed.
    pub fn is_confirmed(&self, addr: &A) -> bool {
        self.table.get(addr).is_some_and(|m| m.confirmed)
    }

    /// Members not confirmed yet.
    pub fn unconfirmed_len(&self) -> usize {
        self.table.roster_len(Roster::Unconfirmed)
    }

    /// Up to `k` live unconfirmed members, in turn, to ping again.
    pub fn next_unconfirmed(&mut self, k: usize) -> Vec<A> {
        let n = self.table.roster_len(Roster::Unconfirmed);
        let mut out = Vec::new();
        for i in 0..n.min(k) {
            let ix = self.table.roster(Roster::Unconfirmed)[(self.ping_at + i) % n];
            if let Some(m) = self.table.slot(ix) {
                if m.status.is_live() {
                    out.push(m.id.addr.clone());
                }
            }
        }
        self.ping_at = self.ping_at.wrapping_add(n.min(k));
        out
    }

    /// Forgets the members that stayed unconfirmed for `ttl`: their admission ping
    /// went unanswered (a forged identity never answers), so the table shrinks back
    /// once a flood stops. A real member dropped this way is learned again from its
    /// peers and pinged again. The time counts from when the member was learned or
    /// from our last `join`, whichever is later: members learned before we joined
    /// (a restarted node hears from its old peers before it joins) were never pinged,
    /// and forgetting them at the first round would cut a node off from the only
    /// members it knows.
    pub fn expire_unconfirmed(
        &mut self,
        now: Instant,
        ttl: core::time::Duration,
    ) -> Vec<(A, MemberIx)> {
        let start = self.joined_at;
        let expired: Vec<A> = self
            .table
            .roster_addrs(Roster::Unconfirmed)
            .filter(|m| m.since.max(start) + ttl <= now)
            .map(|m| m.id.addr.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|addr| self.forget(&addr).map(|ix| (addr, ix)))
            .collect()
    }

    /// Whether a claim about a known member moves it further than the member itself
    /// ever would: an incarnation or a generation raised beyond the bounds, or a new
    /// life that arrives already suspect, dead or gone (a new life is proven only by
    /// an alive claim). Such claims are ignored, whoever sends them, so no forged
    /// packet can leave a member where its own refutation cannot outrank it.
    fn implausible(&self, claim: &MemberClaim<A>) -> bool {
        let Some(m) = self.table.get(&claim.id.addr) else {
            return false;
        };
        let (known_gen, claim_gen) = (m.id.generation, claim.id.generation);
        if claim_gen > known_gen {
            return claim.status != Status::Alive
                || claim_gen - known_gen > MAX_GENERATION_JUMP
                || claim.incarnation > MAX_INCARNATION_JUMP;
        }
        claim_gen == known_gen
            && claim.incarnation > m.incarnation.saturating_add(MAX_INCARNATION_JUMP)
    }

    fn apply_to_table(&mut self, claim: &MemberClaim<A>, now: Instant, room: bool) -> Change {
        match self.table.get_mut(&claim.id.addr) {
            None => {
                // Unknown members enter only through proof of life: a death or a suspicion of
                // someone we never knew adds nothing but a tombstone to keep, and lets a
                // flood of forged claims grow our memory.
                if claim.status != Status::Alive || !room {
                    return Change::None;
                }
                self.table.insert(Member {
                    id: claim.id.clone(),
                    incarnation: claim.incarnation,
                    status: Status::Alive,
                    since: now,
                    confirmed: false,
                    pos: [NOT_IN; 3],
                });
                Change::Joined
            }
            Some(m) => {
                if !supersedes(claim.rank(), m.rank()) {
                    return Change::None;
                }
                let new_life = claim.id.generation != m.id.generation;
                if new_life {
                    m.confirmed = false;
                }
                let was = m.status;
                m.id.generation = claim.id.generation;
                m.incarnation = claim.incarnation;
                m.status = claim.status;
                if was != claim.status || new_life {
                    m.since = now;
                }
                match (was, claim.status) {
                    _ if new_life && claim.status.is_live() => Change::Joined,
                    (Status::Alive, Status::Alive) | (Status::Suspect, Status::Suspect) => {
                        Change::Refreshed
                    }
                    (Status::Dead, Status::Dead) | (Status::Left, Status::Left) => {
                        Change::Refreshed
                    }
                    (Status::Suspect, Status::Alive) => Change::Recovered,
                    (Status::Dead | Status::Left, Status::Alive) => Change::Recovered,
                    (Status::Dead | Status::Left, Status::Suspect) => Change::Recovered,
                    (Status::Alive, Status::Suspect) => Change::Suspected,
                    (_, Status::Dead) => Change::Died,
                    (_, Status::Left) => Change::Left,
                }
            }
        }
    }

    pub fn get(&self, addr: &A) -> Option<&Member<A>> {
        self.table.get(addr)
    }

    /// Our claim that answers a stale accusation: when `claim` accuses a member
    /// (suspect or dead) whose refutation we hold already (alive, at a higher
    /// incarnation of the same life, or a newer life), the sender missed it. Its
    /// suspicion will run out unless someone tells it, and the member's own
    /// rumour has usually spent its budget by then.
    pub fn correction(&self, claim: &MemberClaim<A>) -> Option<MemberClaim<A>> {
        if !matches!(claim.status, Status::Suspect | Status::Dead) {
            return None;
        }
        let m = self.table.get(&claim.id.addr)?;
        (m.status == Status::Alive
            && (m.id.generation, m.incarnation) > (claim.id.generation, claim.incarnation))
            .then(|| m.claim())
    }

    /// The index of the member at `addr`, or [`MemberIx::ME`] for our own address.
    pub fn index_of(&self, addr: &A) -> Option<MemberIx> {
        if *addr == self.me.addr {
            return Some(MemberIx::ME);
        }
        self.table.find(addr).map(MemberIx)
    }

    /// The address of the member at `ix` (ours for [`MemberIx::ME`]).
    pub fn addr_of(&self, ix: MemberIx) -> Option<&A> {
        if ix == MemberIx::ME {
            return Some(&self.me.addr);
        }
        self.table.slot(ix.0).map(|s| &s.id.addr)
    }

    /// Compares a peer's claim with what we hold: the newer claim wins on both sides.
    pub fn compare(&self, theirs: &MemberClaim<A>) -> Compared<A> {
        if theirs.id.addr == self.me.addr {
            return if *theirs == self.own_claim() {
                Compared::Same
            } else {
                Compared::AboutMe
            };
        }
        match self.table.get(&theirs.id.addr) {
            Some(m) if supersedes(m.rank(), theirs.rank()) => Compared::OursNewer(m.claim()),
            _ => Compared::TheirsNewer,
        }
    }

    /// Every member, ourselves excluded.
    pub fn iter(&self) -> impl Iterator<Item = &Member<A>> + '_ {
        self.table
            .index
            .iter()
            .filter_map(|&ix| self.table.slot(ix))
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Members alive or suspect, ourselves excluded, in roster order.
    #[cfg(test)]
    pub fn live(&self) -> impl Iterator<Item = &A> + '_ {
        self.table.roster_addrs(Roster::Live).map(|m| &m.id.addr)
    }

    /// The indices of the live members (alive or suspect, ourselves excluded), in
    /// roster order.
    pub fn live_ix(&self) -> impl Iterator<Item = MemberIx> + '_ {
        self.table
            .roster(Roster::Live)
            .iter()
            .map(|&ix| MemberIx(ix))
    }

    pub fn live_len(&self) -> usize {
        self.table.roster_len(Roster::Live)
    }

    pub fn is_live(&self, addr: &A) -> bool {
        self.table.in_roster(Roster::Live, addr)
    }

    /// Whether `owner` is a live, confirmed member at that generation (never
    /// ourselves): the only owners whose state we accept, so forged identities
    /// cannot make us hold state for them.
    pub fn is_live_owner(&self, owner: &NodeId<A>) -> bool {
        owner.addr != self.me.addr
            && self.table.get(&owner.addr).is_some_and(|m| {
                m.id.generation == owner.generation && m.status.is_live() && m.confirmed
            })
    }

    /// Up to `k` distinct random live members, never `except`, never an unconfirmed
    /// one (we send nothing but an admission ping to an address that has not proven
    /// itself).
    pub fn pick_live(&self, rng: &mut impl RngCore, k: usize, except: Option<&A>) -> Vec<A> {
        let n = self.table.roster_len(Roster::Live);
        let mut out: Vec<A> = Vec::with_capacity(k);
        let live = self.table.roster(Roster::Live);
        let eligible = |ix: u32| {
            self.table
                .slot(ix)
                .filter(|s| {
                    Some(&s.id.addr) != except && s.pos[Roster::Unconfirmed as usize] == NOT_IN
                })
                .map(|s| &s.id.addr)
        };
        if n <= k + 1 {
            out.extend(live.iter().filter_map(|&ix| eligible(ix)).cloned());
            out.truncate(k);
            return out;
        }
        let mut tries = 0;
        while out.len() < k && tries < 8 * k {
            tries += 1;
            if let Some(a) = eligible(live[below(rng, n)]) {
                if !out.contains(a) {
                    out.push(a.clone());
                }
            }
        }
        out
    }

    /// Now and then a dead member (Cassandra: probability dead / (live + 1)), so that
    /// the two sides of a healed partition find each other without help.
    pub fn pick_dead(&self, rng: &mut impl RngCore) -> Option<A> {
        let (dead, live) = (
            self.table.roster_len(Roster::Dead),
            self.table.roster_len(Roster::Live),
        );
        if dead > 0 && below(rng, live + 1) < dead {
            return self.table.at(Roster::Dead, below(rng, dead)).cloned();
        }
        None
    }

    /// Forgets the members dead or gone for longer than `retention`; returns them.
    /// The dead roster is bounded by `max_members`, and a scan per round costs less
    /// than a queue that grows with every death.
    pub fn expire_dead(
        &mut self,
        now: Instant,
        retention: core::time::Duration,
    ) -> Vec<(A, MemberIx)> {
        let expired: Vec<A> = self
            .table
            .roster_addrs(Roster::Dead)
            .filter(|m| m.since + retention <= now)
            .map(|m| m.id.addr.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|addr| self.forget(&addr).map(|ix| (addr, ix)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(generation: u64, incarnation: u64, status: Status) -> Member<u32> {
        Member {
            id: NodeId::new(1, generation),
            incarnation,
            status,
            since: Instant::ZERO,
            confirmed: false,
            pos: [NOT_IN; 3],
        }
    }
    fn claim(generation: u64, incarnation: u64, status: Status) -> MemberClaim<u32> {
        MemberClaim {
            id: NodeId::new(1, generation),
            incarnation,
            status,
        }
    }

    fn supersedes_t(c: &MemberClaim<u32>, m: &Member<u32>) -> bool {
        supersedes(c.rank(), m.rank())
    }

    #[test]
    fn precedence_follows_swim() {
        use Status::*;
        assert!(supersedes_t(&claim(1, 0, Suspect), &member(1, 0, Alive)));
        assert!(!supersedes_t(&claim(1, 0, Alive), &member(1, 0, Suspect)));
        assert!(supersedes_t(&claim(1, 1, Alive), &member(1, 0, Suspect)));
        assert!(supersedes_t(&claim(1, 1, Alive), &member(1, 0, Dead)));
        assert!(supersedes_t(&claim(1, 0, Dead), &member(1, 0, Suspect)));
        assert!(supersedes_t(&claim(1, 0, Left), &member(1, 0, Dead)));
        assert!(
            !supersedes_t(&claim(1, 5, Alive), &member(2, 0, Dead)),
            "an old life never wins"
        );
        assert!(
            supersedes_t(&claim(2, 0, Alive), &member(1, 9, Alive)),
            "a new life always wins"
        );
    }

    #[test]
    fn unknown_members_enter_only_alive() {
        use Status::*;
        let mut m = Membership::new(NodeId::new(0, 1), 16, crate::hash::SeededState(1));
        assert_eq!(
            m.apply_to_table(&claim(1, 0, Dead), Instant::ZERO, true),
            Change::None
        );
        assert_eq!(
            m.apply_to_table(&claim(1, 0, Suspect), Instant::ZERO, true),
            Change::None
        );
        assert_eq!(
            m.apply_to_table(&claim(1, 0, Alive), Instant::ZERO, false),
            Change::None
        );
        assert_eq!(
            m.apply_to_table(&claim(1, 0, Alive), Instant::ZERO, true),
            Change::Joined
        );
        assert_eq!(
            m.apply_to_table(&claim(1, 0, Suspect), Instant::ZERO, true),
            Change::Suspected
        );
        assert_eq!(
            m.apply_to_table(&claim(1, 1, Alive), Instant::ZERO, true),
            Change::Recovered
        );
        assert_eq!(
            m.apply_to_table(&claim(2, 0, Alive), Instant::ZERO, true),
            Change::Joined
        );
    }

    // ----- the part's verbs ---------------------------------------------------------

    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;

    fn about(addr: u32, generation: u64, incarnation: u64, status: Status) -> MemberClaim<u32> {
        MemberClaim {
            id: NodeId::new(addr, generation),
            incarnation,
            status,
        }
    }

    fn applied(change: Change, entered_live: bool, refused: bool) -> Applied<u32> {
        Applied {
            change,
            entered_live,
            refused,
            implausible: false,
            evicted: None,
            echo: false,
        }
    }

    fn echoed() -> Applied<u32> {
        Applied {
            echo: true,
            ..applied(Change::None, false, false)
        }
    }

    fn refused_as_implausible() -> Applied<u32> {
        Applied {
            change: Change::None,
            entered_live: false,
            refused: false,
            implausible: true,
            evicted: None,
            echo: false,
        }
    }

    /// The live and dead rosters hold exactly the live and the gone members, each
    /// once, with their positions right.
    fn assert_rosters(m: &Membership<u32>) {
        let t = &m.table;
        assert_eq!(
            t.roster_len(Roster::Live) + t.roster_len(Roster::Dead),
            t.len()
        );
        for member in m.iter() {
            let addr = &member.id.addr;
            assert_eq!(m.is_live(addr), member.status.is_live(), "{addr}");
            assert_eq!(
                t.in_roster(Roster::Dead, addr),
                !member.status.is_live(),
                "{addr}"
            );
        }
        for roster in [Roster::Live, Roster::Dead, Roster::Unconfirmed] {
            let r = roster as usize;
            let in_it = t.slots.iter().flatten().filter(|s| s.pos[r] != NOT_IN);
            assert_eq!(in_it.count(), t.roster(roster).len());
            for (i, &ix) in t.roster(roster).iter().enumerate() {
                assert_eq!(t.slot(ix).map(|s| s.pos[r]), Some(i as u32));
            }
        }
        assert_eq!(t.slots.iter().flatten().count(), t.len());
        assert_eq!(t.slots.iter().count(), t.len() + t.free.len());
    }

    /// A table of `max` members whose unconfirmed members may fill all of it.
    fn table(max: usize) -> Membership<u32> {
        let mut m = Membership::with_unconfirmed_share(
            NodeId::new(0, 1),
            max,
            100,
            crate::hash::SeededState(1),
        );
        m.join(Instant::ZERO, [0, 9]);
        m
    }

    #[test]
    fn unconfirmed_newcomers_take_turns_and_confirmed_members_stay() {
        use Status::*;
        // 8 members, at most 2 unconfirmed.
        let mut m = Membership::with_unconfirmed_share(
            NodeId::new(0, 1),
            8,
            25,
            crate::hash::SeededState(1),
        );
        let t = Instant::ZERO;
        for a in [1, 2] {
            m.apply(&about(a, 1, 0, Alive), t);
            m.confirm(&a);
        }
        assert!(m.is_confirmed(&1) && m.is_confirmed(&2));
        // A flood of strangers: each beyond the share evicts the next unconfirmed one.
        let mut evicted = 0;
        for a in 100..1_100 {
            let got = m.apply(&about(a, 1, 0, Alive), t);
            assert_eq!(got.change, Change::Joined, "{a}");
            evicted += usize::from(got.evicted.is_some());
            assert!(
                got.evicted.is_none_or(|e| e.0 >= 100),
                "a confirmed member was evicted"
            );
            assert_eq!(m.unconfirmed_len().min(2), m.unconfirmed_len());
            assert_rosters(&m);
        }
        assert_eq!(evicted, 998);
        assert_eq!(m.len(), 4);
        // A real newcomer still gets in, and once confirmed it stays.
        m.apply(&about(7, 1, 0, Alive), t);
        m.confirm(&7);
        for a in 2_000..2_100 {
            m.apply(&about(a, 1, 0, Alive), t);
        }
        assert!(m.is_confirmed(&7) && m.get(&7).is_some());
        // A new life is not confirmed by the old one's probes, and it takes its turn in
        // the share like a newcomer: the share still holds (the fuzzer found it did not).
        assert_eq!(m.unconfirmed_len(), 2);
        let got = m.apply(&about(7, 2, 0, Alive), t);
        assert!(!m.is_confirmed(&7));
        assert!(
            got.evicted.as_ref().is_some_and(|e| e.0 >= 2_000),
            "{:?}",
            got.evicted
        );
        assert_eq!(m.unconfirmed_len(), 2);
        assert_rosters(&m);
        // So does a stranger first heard of as suspect or dead.
        for (a, status) in [(3_000, Suspect), (3_001, Dead), (3_002, Suspect)] {
            m.apply(&about(a, 1, 0, status), t);
            assert!(m.unconfirmed_len() <= 2, "{a} {status:?}");
            assert_rosters(&m);
        }
        assert!(m.is_confirmed(&1) && m.is_confirmed(&2));
    }

    #[test]
    fn apply_reports_each_change_and_keeps_rosters_in_step() {
        use Status::*;
        let mut m = table(16);
        let t = Instant::from_secs(1);
        let steps = [
            (about(1, 1, 0, Alive), applied(Change::Joined, true, false)),
            // The very claim we hold: an echo, nothing else.
            (about(1, 1, 0, Alive), echoed()),
            (
                about(1, 1, 1, Alive),
                applied(Change::Refreshed, false, false),
            ),
            (
                about(1, 1, 1, Suspect),
                applied(Change::Suspected, false, false),
            ),
            (about(1, 1, 1, Suspect), echoed()),
            (about(1, 1, 1, Alive), applied(Change::None, false, false)),
            (
                about(1, 1, 2, Alive),
                applied(Change::Recovered, false, false),
            ),
            (about(1, 1, 2, Dead), applied(Change::Died, false, false)),
            (about(1, 1, 2, Suspect), applied(Change::None, false, false)),
            (
                about(1, 1, 3, Dead),
                applied(Change::Refreshed, false, false),
            ),
            (
                about(1, 1, 4, Alive),
                applied(Change::Recovered, true, false),
            ),
            (about(1, 1, 4, Left), applied(Change::Left, false, false)),
            (
                about(1, 1, 5, Suspect),
                applied(Change::Recovered, true, false),
            ),
            (about(1, 1, 5, Dead), applied(Change::Died, false, false)),
            (about(1, 2, 0, Alive), applied(Change::Joined, true, false)),
            (about(1, 1, 9, Alive), applied(Change::None, false, false)),
            // A new life is proven only by an alive claim: one that arrives dead or
            // suspect is refused (a forged claim must not evict a live member).
            (about(1, 3, 0, Dead), refused_as_implausible()),
            (about(1, 4, 0, Suspect), refused_as_implausible()),
            // Nor may a claim jump a generation or an incarnation beyond the bounds.
            (about(1, u64::MAX, 0, Alive), refused_as_implausible()),
            (about(1, 2, u64::MAX, Dead), refused_as_implausible()),
            (
                about(1, 2, 3, Suspect),
                applied(Change::Suspected, false, false),
            ),
            (about(2, 1, 0, Dead), applied(Change::None, false, false)),
            (about(3, 1, 0, Suspect), applied(Change::None, false, false)),
        ];
        for (i, (claim, expected)) in steps.iter().enumerate() {
            assert_eq!(m.apply(claim, t), *expected, "step {i}: {claim:?}");
            assert_rosters(&m);
        }
        assert_eq!(m.len(), 1, "claims of death about strangers add nothing");
        let one = m.get(&1).expect("known");
        assert_eq!(one.rank(), (2, 3, Suspect));
        assert_eq!(m.live().collect::<Vec<_>>(), [&1]);
    }

    /// A full table of confirmed members, some dead, and no unconfirmed one: a
    /// newcomer that speaks for itself takes the place of the longest-dead member
    /// instead of being refused; a newcomer heard of second-hand does not.
    #[test]
    fn a_full_table_makes_room_from_the_longest_dead() {
        use Status::*;
        let mut m = Membership::with_unconfirmed_share(NodeId::new(0, 1), 3, 34, SeededState(1));
        for a in 1..=3 {
            m.apply(&about(a, 1, 0, Alive), Instant::from_secs(1));
            m.confirm(&a);
        }
        m.apply(&about(2, 1, 0, Dead), Instant::from_secs(5));
        m.apply(&about(3, 1, 0, Dead), Instant::from_secs(3));
        // A second-hand newcomer does not take a member's place, even a dead one's.
        let applied = m.apply(&about(9, 1, 0, Alive), Instant::from_secs(10));
        assert!(applied.refused && applied.evicted.is_none(), "{applied:?}");
        let applied = m.apply_from(&about(9, 1, 0, Alive), Instant::from_secs(10), true);
        assert_eq!(
            applied.evicted.map(|e| e.0),
            Some(3),
            "the longest dead gives way"
        );
        assert!(!applied.refused);
        assert!(m.get(&9).is_some() && m.get(&3).is_none() && m.get(&2).is_some());
        // No dead member left to give way: the next newcomer is refused.
        m.confirm(&9);
        m.apply(&about(2, 1, 1, Alive), Instant::from_secs(11));
        let applied = m.apply_from(&about(8, 1, 0, Alive), Instant::from_secs(12), true);
        assert!(applied.refused, "{applied:?}");
    }

    /// Members learned before `join` were never pinged: their time to answer starts
    /// at `join`, so the first round after a late join does not forget them.
    #[test]
    fn unconfirmed_time_to_answer_starts_at_join() {
        use Status::*;
        let mut m = table(16);
        m.apply(&about(1, 1, 0, Alive), Instant::from_secs(1));
        assert_eq!(m.unconfirmed_len(), 1);
        let ttl = core::time::Duration::from_secs(30);
        m.join(Instant::from_secs(100), []);
        assert!(
            m.expire_unconfirmed(Instant::from_secs(101), ttl)
                .is_empty()
        );
        assert!(
            m.expire_unconfirmed(Instant::from_secs(129), ttl)
                .is_empty()
        );
        let expired = m.expire_unconfirmed(Instant::from_secs(130), ttl);
        assert_eq!(expired.iter().map(|e| e.0).collect::<Vec<_>>(), [1]);
        assert_eq!(m.unconfirmed_len(), 0);
    }

    #[test]
    fn since_moves_only_when_the_status_or_life_changes() {
        use Status::*;
        let mut m = table(16);
        m.apply(&about(1, 1, 0, Alive), Instant::from_secs(1));
        m.apply(&about(1, 1, 1, Alive), Instant::from_secs(2));
        assert_eq!(m.get(&1).map(|x| x.since), Some(Instant::from_secs(1)));
        m.apply(&about(1, 1, 1, Suspect), Instant::from_secs(3));
        assert_eq!(m.get(&1).map(|x| x.since), Some(Instant::from_secs(3)));
        m.apply(&about(1, 2, 0, Alive), Instant::from_secs(4));
        assert_eq!(m.get(&1).map(|x| x.since), Some(Instant::from_secs(4)));
    }

    #[test]
    fn full_table_refuses_new_members_only() {
        use Status::*;
        let mut m = table(2);
        let t = Instant::ZERO;
        assert_eq!(
            m.apply(&about(1, 1, 0, Alive), t),
            applied(Change::Joined, true, false)
        );
        assert_eq!(
            m.apply(&about(2, 1, 0, Alive), t),
            applied(Change::Joined, true, false)
        );
        // Confirmed members are never evicted for newcomers.
        m.confirm(&1);
        m.confirm(&2);
        assert_eq!(
            m.apply(&about(3, 1, 0, Alive), t),
            applied(Change::None, false, true)
        );
        assert_eq!(m.get(&3).map(|x| x.rank()), None);
        assert_eq!(m.len(), 2);
        // Only a proof of life is refused: an accusation of a stranger never enters.
        assert_eq!(
            m.apply(&about(3, 1, 0, Suspect), t),
            applied(Change::None, false, false)
        );
        // Known members still change, dead ones included.
        assert_eq!(
            m.apply(&about(2, 1, 0, Dead), t),
            applied(Change::Died, false, false)
        );
        assert_eq!(
            m.apply(&about(2, 2, 0, Alive), t),
            applied(Change::Joined, true, false)
        );
        assert_rosters(&m);
        // Room again once a dead member expires.
        m.apply(&about(1, 1, 0, Dead), t);
        let retention = core::time::Duration::from_secs(60);
        assert!(
            m.expire_dead(
                t + retention - core::time::Duration::from_nanos(1),
                retention
            )
            .is_empty()
        );
        let expired = m.expire_dead(t + retention, retention);
        assert_eq!(expired.iter().map(|e| e.0).collect::<Vec<_>>(), [1]);
        assert_rosters(&m);
        assert_eq!(
            m.apply(&about(3, 1, 0, Alive), t),
            applied(Change::Joined, true, false)
        );
    }

    #[test]
    fn refute_ignores_repeats_or_raises() {
        use Status::*;
        let mut m = Membership::new(NodeId::new(0, 5), 16, crate::hash::SeededState(1));
        // Not in the cluster yet: nothing to refute.
        assert_eq!(m.refute(&about(0, 5, 0, Suspect)), Refutation::Ignore);
        m.join(Instant::ZERO, []);
        assert_eq!(
            m.refute(&about(0, 5, 0, Alive)),
            Refutation::Ignore,
            "not an accusation"
        );
        assert_eq!(
            m.refute(&about(0, 4, 9, Dead)),
            Refutation::Ignore,
            "an older life"
        );
        assert_eq!(
            m.refute(&about(0, 6, 0, Dead)),
            Refutation::Ignore,
            "another life"
        );
        assert_eq!(m.incarnation(), 0);

        assert_eq!(m.refute(&about(0, 5, 0, Suspect)), Refutation::Raised);
        assert_eq!(m.incarnation(), 1);
        assert_eq!(
            m.refute(&about(0, 5, 0, Suspect)),
            Refutation::Repeat,
            "stale accusation"
        );
        assert_eq!(m.incarnation(), 1);
        assert_eq!(m.refute(&about(0, 5, 1, Dead)), Refutation::Raised);
        assert_eq!(m.incarnation(), 2);
        assert_eq!(
            m.refute(&about(0, 5, 7, Left)),
            Refutation::Raised,
            "jumps past it"
        );
        assert_eq!(m.incarnation(), 8);
        assert_eq!(m.own_claim(), about(0, 5, 8, Alive));

        // Our own claim beats every accusation refuted so far.
        for accusation in [
            about(0, 5, 0, Suspect),
            about(0, 5, 1, Dead),
            about(0, 5, 7, Left),
        ] {
            assert!(supersedes(m.own_claim().rank(), accusation.rank()));
        }

        assert!(m.leave());
        assert_eq!(
            m.refute(&about(0, 5, 8, Dead)),
            Refutation::Ignore,
            "we left"
        );
        assert_eq!(m.own_claim(), about(0, 5, 8, Left));
        m.join(Instant::ZERO, []);
        assert_eq!(
            m.own_claim(),
            about(0, 5, 9, Alive),
            "back above our own leaving"
        );
    }

    #[test]
    fn compare_says_whose_claim_is_newer() {
        use Status::*;
        let mut m = table(16);
        m.apply(&about(1, 1, 2, Alive), Instant::ZERO);
        assert_eq!(m.compare(&m.own_claim()), Compared::Same);
        assert_eq!(m.compare(&about(0, 1, 0, Suspect)), Compared::AboutMe);
        assert_eq!(
            m.compare(&about(1, 1, 1, Dead)),
            Compared::OursNewer(about(1, 1, 2, Alive))
        );
        assert_eq!(
            m.compare(&about(1, 1, 2, Alive)),
            Compared::TheirsNewer,
            "equal"
        );
        assert_eq!(m.compare(&about(1, 1, 2, Suspect)), Compared::TheirsNewer);
        assert_eq!(
            m.compare(&about(5, 1, 0, Dead)),
            Compared::TheirsNewer,
            "unknown"
        );
    }

    #[test]
    fn pick_live_is_distinct_live_and_never_the_exception() {
        use Status::*;
        let mut m = table(64);
        for a in 1..=20 {
            m.apply(&about(a, 1, 0, Alive), Instant::ZERO);
            m.confirm(&a);
        }
        for a in 11..=20 {
            m.apply(&about(a, 1, 0, Dead), Instant::ZERO);
        }
        // An unconfirmed live member is never picked.
        m.apply(&about(30, 1, 0, Alive), Instant::ZERO);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let picked = m.pick_live(&mut rng, 3, Some(&4));
            assert_eq!(picked.len(), 3);
            for (i, a) in picked.iter().enumerate() {
                assert!((1..=10).contains(a) && *a != 4, "{a}");
                assert!(!picked[..i].contains(a), "distinct");
            }
        }
        // Fewer live members than asked for: all of them but the exception.
        let mut few = table(8);
        for a in [1, 2, 3] {
            few.apply(&about(a, 1, 0, Alive), Instant::ZERO);
            few.confirm(&a);
        }
        few.apply(&about(4, 1, 0, Alive), Instant::ZERO);
        let mut picked = few.pick_live(&mut rng, 3, Some(&2));
        picked.sort_unstable();
        assert_eq!(picked, alloc::vec![1, 3]);
        assert!(table(8).pick_live(&mut rng, 3, None).is_empty());
    }

    #[test]
    fn join_drops_ourselves_from_the_seeds() {
        let m = table(8);
        assert_eq!(m.seeds(), &[9]);
        assert!(m.is_active());
        assert!(!m.is_live_owner(&NodeId::new(0, 1)), "never ourselves");
    }
}
