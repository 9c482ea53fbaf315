//! Who is in the cluster: identities, member states, and the SWIM precedence rules
//! that decide which of two claims about a member wins.

use core::fmt;
use core::hash::Hash;

use serde::{Deserialize, Serialize};

use alloc::vec::Vec;
use rand_core::RngCore;

use crate::hash::{Map, SeededState};
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

/// A list with O(1) insert, remove and uniform random choice.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "A: crate::Address")]
struct Roster<A> {
    list: Vec<A>,
    #[serde(with = "crate::snapshot::map")]
    pos: Map<A, usize>,
}

impl<A: crate::Address> Roster<A> {
    fn new(h: SeededState) -> Self {
        Roster {
            list: Vec::new(),
            pos: Map::with_hasher(h),
        }
    }
    fn insert(&mut self, a: &A) -> bool {
        if self.pos.contains_key(a) {
            return false;
        }
        self.pos.insert(a.clone(), self.list.len());
        self.list.push(a.clone());
        true
    }
    fn remove(&mut self, a: &A) {
        if let Some(i) = self.pos.remove(a) {
            self.list.swap_remove(i);
            if let Some(moved) = self.list.get(i) {
                self.pos.insert(moved.clone(), i);
            }
        }
    }
    fn len(&self) -> usize {
        self.list.len()
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
    /// An unconfirmed member evicted to make room for this one.
    pub evicted: Option<A>,
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
    #[serde(with = "crate::snapshot::map")]
    map: Map<A, Member<A>>,
    live: Roster<A>,
    dead: Roster<A>,
    /// Members not confirmed yet (see [`Member::confirmed`]), and where eviction
    /// among them goes next.
    unconfirmed: Roster<A>,
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
            map: Map::with_hasher(hasher),
            live: Roster::new(hasher),
            dead: Roster::new(hasher),
            unconfirmed: Roster::new(hasher),
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
            && self.map.get(&claim.id.addr).is_some_and(|m| {
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

    /// Applies a claim about someone else and keeps the rosters in step.
    pub fn apply(&mut self, claim: &MemberClaim<A>, now: Instant) -> Applied<A> {
        let known_before = self.map.contains_key(&claim.id.addr);
        let implausible = self.implausible(claim);
        // A newcomer enters unconfirmed: when unconfirmed members hold their whole share
        // (or the table is full), the next one in turn makes room, so a flood of forged
        // identities can neither fill the table nor keep a real newcomer out.
        let mut evicted = None;
        let newcomer = !known_before && !implausible && claim.status == Status::Alive;
        if newcomer
            && (self.unconfirmed.len() >= self.max_unconfirmed
                || self.map.len() >= self.max_members)
        {
            evicted = self.evict_unconfirmed();
        }
        // A full table with no unconfirmed member to give way: the longest-dead member
        // does. A tombstone only guards against stale rumours about a life that is
        // over; a newcomer may be real (a table full of members that went silent must
        // not lock real members out for `dead_retention`; found by the fuzzer).
        if newcomer && evicted.is_none() && self.map.len() >= self.max_members {
            evicted = self.evict_longest_dead();
        }
        let room = self.map.len() < self.max_members;
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
                self.dead.remove(addr);
                entered_live = self.live.insert(addr);
            }
            Change::Died | Change::Left => {
                self.live.remove(addr);
                self.dead.insert(addr);
            }
            Change::None | Change::Refreshed | Change::Suspected => {}
        }
        // A member can turn unconfirmed without being a newcomer (a known address at a
        // new generation, or a first claim that is not `Alive`): it takes its turn in
        // the share too, so the share holds whatever the claim.
        if self.map.get(addr).is_some_and(|m| !m.confirmed)
            && !self.unconfirmed.pos.contains_key(addr)
        {
            if self.unconfirmed.len() >= self.max_unconfirmed && evicted.is_none() {
                evicted = self.evict_unconfirmed();
            }
            self.unconfirmed.insert(addr);
        }
        Applied {
            change,
            entered_live,
            refused,
            implausible,
            evicted,
        }
    }

    /// Evicts the next unconfirmed member in turn; returns it.
    fn evict_unconfirmed(&mut self) -> Option<A> {
        let n = self.unconfirmed.len();
        if n == 0 {
            return None;
        }
        let victim = self.unconfirmed.list[self.evict_at % n].clone();
        self.evict_at = self.evict_at.wrapping_add(1);
        self.forget(&victim);
        Some(victim)
    }

    /// Evicts the member dead for the longest time, if any; returns it.
    fn evict_longest_dead(&mut self) -> Option<A> {
        let victim = self
            .dead
            .list
            .iter()
            .filter_map(|a| self.map.get(a).map(|m| (m.since, a)))
            .min_by(|x, y| x.0.cmp(&y.0))
            .map(|(_, a)| a.clone())?;
        self.forget(&victim);
        Some(victim)
    }

    /// Removes a member from the table and every roster.
    fn forget(&mut self, addr: &A) {
        self.map.remove(addr);
        self.live.remove(addr);
        self.dead.remove(addr);
        self.unconfirmed.remove(addr);
    }

    /// The member at `addr` answered a probe at its address: it is confirmed.
    pub fn confirm(&mut self, addr: &A) {
        if let Some(m) = self.map.get_mut(addr) {
            m.confirmed = true;
            self.unconfirmed.remove(addr);
        }
    }

    /// Whether the member at `addr` is confirmed.
    pub fn is_confirmed(&self, addr: &A) -> bool {
        self.map.get(addr).is_some_and(|m| m.confirmed)
    }

    /// Members not confirmed yet.
    pub fn unconfirmed_len(&self) -> usize {
        self.unconfirmed.len()
    }

    /// Up to `k` live unconfirmed members, in turn, to ping again.
    pub fn next_unconfirmed(&mut self, k: usize) -> Vec<A> {
        let n = self.unconfirmed.len();
        let mut out = Vec::new();
        for i in 0..n.min(k) {
            let a = &self.unconfirmed.list[(self.ping_at + i) % n];
            if self.map.get(a).is_some_and(|m| m.status.is_live()) {
                out.push(a.clone());
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
    pub fn expire_unconfirmed(&mut self, now: Instant, ttl: core::time::Duration) -> Vec<A> {
        let start = self.joined_at;
        let expired: Vec<A> = self
            .unconfirmed
            .list
            .iter()
            .filter(|a| {
                self.map
                    .get(*a)
                    .is_some_and(|m| m.since.max(start) + ttl <= now)
            })
            .cloned()
            .collect();
        for addr in &expired {
            self.forget(addr);
        }
        expired
    }

    /// Whether a claim about a known member moves it further than the member itself
    /// ever would: an incarnation or a generation raised beyond the bounds, or a new
    /// life that arrives already suspect, dead or gone (a new life is proven only by
    /// an alive claim). Such claims are ignored, whoever sends them, so no forged
    /// packet can leave a member where its own refutation cannot outrank it.
    fn implausible(&self, claim: &MemberClaim<A>) -> bool {
        let Some(m) = self.map.get(&claim.id.addr) else {
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
        match self.map.get_mut(&claim.id.addr) {
            None => {
                // Unknown members enter only through proof of life: a death or a suspicion of
                // someone we never knew adds nothing but a tombstone to keep, and lets a
                // flood of forged claims grow our memory.
                if claim.status != Status::Alive || !room {
                    return Change::None;
                }
                self.map.insert(
                    claim.id.addr.clone(),
                    Member {
                        id: claim.id.clone(),
                        incarnation: claim.incarnation,
                        status: Status::Alive,
                        since: now,
                        confirmed: false,
                    },
                );
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
        self.map.get(addr)
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
        match self.map.get(&theirs.id.addr) {
            Some(m) if supersedes(m.rank(), theirs.rank()) => Compared::OursNewer(m.claim()),
            _ => Compared::TheirsNewer,
        }
    }

    /// Every member, ourselves excluded.
    pub fn iter(&self) -> impl Iterator<Item = &Member<A>> + '_ {
        self.map.values()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Members alive or suspect, ourselves excluded.
    pub fn live(&self) -> &[A] {
        &self.live.list
    }

    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    pub fn is_live(&self, addr: &A) -> bool {
        self.live.pos.contains_key(addr)
    }

    /// Whether `owner` is a live, confirmed member at that generation (never
    /// ourselves): the only owners whose state we accept, so forged identities
    /// cannot make us hold state for them.
    pub fn is_live_owner(&self, owner: &NodeId<A>) -> bool {
        owner.addr != self.me.addr
            && self.map.get(&owner.addr).is_some_and(|m| {
                m.id.generation == owner.generation && m.status.is_live() && m.confirmed
            })
    }

    /// Up to `k` distinct random live members, never `except`, never an unconfirmed
    /// one (we send nothing but an admission ping to an address that has not proven
    /// itself).
    pub fn pick_live(&self, rng: &mut impl RngCore, k: usize, except: Option<&A>) -> Vec<A> {
        let n = self.live.len();
        let mut out: Vec<A> = Vec::with_capacity(k);
        let eligible = |a: &A| Some(a) != except && !self.unconfirmed.pos.contains_key(a);
        if n <= k + 1 {
            out.extend(self.live.list.iter().filter(|a| eligible(a)).cloned());
            out.truncate(k);
            return out;
        }
        let mut tries = 0;
        while out.len() < k && tries < 8 * k {
            tries += 1;
            let a = &self.live.list[below(rng, n)];
            if eligible(a) && !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// Now and then a dead member (Cassandra: probability dead / (live + 1)), so that
    /// the two sides of a healed partition find each other without help.
    pub fn pick_dead(&self, rng: &mut impl RngCore) -> Option<A> {
        let (dead, live) = (self.dead.len(), self.live.len());
        if dead > 0 && below(rng, live + 1) < dead {
            return Some(self.dead.list[below(rng, dead)].clone());
        }
        None
    }

    /// Forgets the members dead or gone for longer than `retention`; returns them.
    /// The dead roster is bounded by `max_members`, and a scan per round costs less
    /// than a queue that grows with every death.
    pub fn expire_dead(&mut self, now: Instant, retention: core::time::Duration) -> Vec<A> {
        let expired: Vec<A> = self
            .dead
            .list
            .iter()
            .filter(|a| self.map.get(*a).is_some_and(|m| m.since + retention <= now))
            .cloned()
            .collect();
        for addr in &expired {
            self.forget(addr);
        }
        expired
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
        }
    }

    fn refused_as_implausible() -> Applied<u32> {
        Applied {
            change: Change::None,
            entered_live: false,
            refused: false,
            implausible: true,
            evicted: None,
        }
    }

    /// The live and dead rosters hold exactly the live and the gone members, each
    /// once, with their positions right.
    fn assert_rosters(m: &Membership<u32>) {
        assert_eq!(m.live.len() + m.dead.len(), m.map.len());
        for (addr, member) in &m.map {
            assert_eq!(m.is_live(addr), member.status.is_live(), "{addr}");
            assert_eq!(
                m.dead.pos.contains_key(addr),
                !member.status.is_live(),
                "{addr}"
            );
        }
        for roster in [&m.live, &m.dead] {
            assert_eq!(roster.list.len(), roster.pos.len());
            for (i, a) in roster.list.iter().enumerate() {
                assert_eq!(roster.pos.get(a), Some(&i));
            }
        }
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
                got.evicted.is_none_or(|e| e >= 100),
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
        assert!(got.evicted.is_some_and(|e| e >= 2_000), "{:?}", got.evicted);
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
            (about(1, 1, 0, Alive), applied(Change::None, false, false)),
            (
                about(1, 1, 1, Alive),
                applied(Change::Refreshed, false, false),
            ),
            (
                about(1, 1, 1, Suspect),
                applied(Change::Suspected, false, false),
            ),
            (about(1, 1, 1, Suspect), applied(Change::None, false, false)),
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
        assert_eq!(m.live(), &[1]);
    }

    /// A full table of confirmed members, some dead, and no unconfirmed one: a
    /// newcomer takes the place of the longest-dead member instead of being refused.
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
        let applied = m.apply(&about(9, 1, 0, Alive), Instant::from_secs(10));
        assert_eq!(applied.evicted, Some(3), "the longest dead gives way");
        assert!(!applied.refused);
        assert!(m.get(&9).is_some() && m.get(&3).is_none() && m.get(&2).is_some());
        // No dead member left to give way: the next newcomer is refused.
        m.confirm(&9);
        m.apply(&about(2, 1, 1, Alive), Instant::from_secs(11));
        let applied = m.apply(&about(8, 1, 0, Alive), Instant::from_secs(12));
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
        assert_eq!(m.expire_unconfirmed(Instant::from_secs(130), ttl), [1]);
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
        assert_eq!(m.expire_dead(t + retention, retention), alloc::vec![1]);
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
