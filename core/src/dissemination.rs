//! The rumour queue: every change is piggybacked on outgoing packets until it has
//! been sent `retransmit_mult · ⌈log10(n + 1)⌉` times (memberlist's rule).
//!
//! Rumours are encoded once when queued, so packing a datagram only copies bytes.
//! Each rumour has a [`Class`], and a packet takes the classes in order: claims about
//! this node (its refutations, its own placement record), then other members'
//! refutations passed on, then topology (membership and placement records), then
//! application state. Under pressure the lower classes
//! wait, never the higher: a flood of state writes cannot delay a refutation past its
//! suspicion timeout (state is repaired by anti-entropy anyway). Placement shares
//! membership's class rather than waiting behind it: joiners allocate tokens jointly
//! from the Joining records they hold, and records held back behind a mass join's
//! membership wave left a 100-node join at max/mean 1.168 at RF 3 instead of 1.082. Within a class the least-sent rumours go first, and among
//! equals the newest, so fresh news is never starved by old news (memberlist's
//! TransmitLimitedQueue order). A full queue evicts from the lowest class first.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::hash::SeededState;
use crate::time::Instant;
use crate::wire::BodyBuilder;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::hash::BuildHasher;
use core::time::Duration;
use hashbrown::HashTable;

/// What a rumour is about: a newer rumour about the same subject replaces the older one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Subject<A> {
    Member(A),
    /// One key of one owner's state. Boxed: the largest variant sets the size of every
    /// queued rumour's subject, and a mass join queues thousands of members' arrivals
    /// on every node (64 bytes a subject with a socket address inline, 40 boxed). It
    /// hashes and encodes as the two fields did.
    State(Box<(A, String)>),
    Placement(String),
    /// One segment of the ring agreement's bit set.
    Agreement(u16),
}

impl<A> Subject<A> {
    /// The subject of `owner`'s state key `key`.
    pub fn state(owner: A, key: String) -> Self {
        Subject::State(Box::new((owner, key)))
    }
}

/// A rumour's priority for room in a packet, highest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Class {
    /// A claim about this node: its refutation of a suspicion, its own liveness, its
    /// own placement record.
    Own = 0,
    /// Another member's refutation, passed on: an `Alive` claim at a raised
    /// incarnation. Every holder of the suspicion it answers declares the member dead
    /// if it misses it, while a missed suspicion costs nothing, so under heavy loss
    /// (when suspicions and refutations outnumber the room in packets) refutations go
    /// before suspicions, verdicts and placement news.
    Refutation = 1,
    /// Claims about other members, and their placement records.
    Topology = 2,
    /// Application (and reserved) state.
    State = 3,
}

/// How many times a rumour is sent: its share of the retransmit limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Budget {
    /// The whole limit: news whose loss costs a verdict (suspicions, deaths,
    /// refutations, departures) or that nothing else repairs in time.
    Full,
    /// A member's arrival: [`arrival_share`], 12 sends instead of 20 at 10,000
    /// members. Every node passes on every arrival, so a mass join is N arrivals
    /// forwarded by N nodes, and the last sends of a budget mostly tell nodes what they
    /// know already. The few nodes it misses are repaired by anti-entropy, and a missed
    /// arrival costs no verdict (the member is simply learned a round later). Paced
    /// and quieted by echoes, as [`Budget::News`].
    Arrival,
    /// News that anti-entropy repairs and whose loss costs no verdict (a placement
    /// record's new version, announced by name and rank): the whole limit, but paced
    /// (it rests between sends, see [`Rumours::fill`]) and retired early once peers
    /// echo it (see [`Rumours::echo`]).
    News,
    /// News that spreads at full speed but retires once peers echo it: a ring
    /// agreement's bit set. Its spreading is what the agreement waits for, so it does
    /// not rest between sends; once peers send back the very bits we hold, the set
    /// is known around us and the rest of the budget would only repeat it (the
    /// once-a-round pull repairs a node it missed).
    Quieted,
}

/// Echoes that retire an arrival before its budget is spent: see [`Rumours::echo`].
pub(crate) const ECHOES_TO_RETIRE: u8 = 3;

/// The limits a queue's rumours are sent under, by [`Budget`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// [`retransmit_limit`].
    pub full: u32,
    /// [`arrival_share`].
    pub arrival: u32,
}

impl Limits {
    /// Both limits for a `mult` and a cluster of `n`.
    pub fn new(mult: u32, n: usize) -> Self {
        let full = retransmit_limit(mult, n);
        Limits {
            full,
            arrival: arrival_share(mult, full),
        }
    }

    /// The same limit for every budget (tests).
    #[cfg(test)]
    fn all(limit: u32) -> Self {
        Limits {
            full: limit,
            arrival: limit,
        }
    }
}

impl Budget {
    /// The number of sends this budget allows.
    fn of(self, limits: Limits) -> u32 {
        match self {
            Budget::Full | Budget::News | Budget::Quieted => limits.full,
            Budget::Arrival => limits.arrival,
        }
    }

    /// Whether the rumour rests between sends: news a node misses is repaired by
    /// anti-entropy and costs no verdict.
    fn paced(self) -> bool {
        matches!(self, Budget::Arrival | Budget::News)
    }

    /// Whether the rumour retires on echoes (see [`Rumours::echo`]).
    fn quieted(self) -> bool {
        matches!(self, Budget::Arrival | Budget::News | Budget::Quieted)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rumour<A> {
    subject: Subject<A>,
    /// Boxed rather than a `Vec`: the encoder's spare capacity is not kept.
    bytes: Box<[u8]>,
    class: Class,
    budget: Budget,
    transmits: u32,
    /// How many times a peer told us this very news since we queued it (see
    /// [`Rumours::echo`]); in the struct's padding.
    echoes: u8,
    /// Its place in the order of arrival: among equals the newest goes first.
    seq: u64,
}

impl<A> Rumour<A> {
    fn order(&self, slot: u32) -> Order {
        (self.class, self.transmits, order_key(self.seq, slot))
    }
}

/// The key a rumour is ordered by: (class, transmits, newest first ‖ slot), so
/// iterating ascending yields the highest class, then the least sent, then the newest.
/// The last part is the arrival number, reversed, in the high 40 bits, and the slot in
/// the low 24: arrival numbers are unique, so the slot never decides the order, and
/// the key leads straight to the rumour.
type Order = (Class, u32, u64);

/// Bits of an [`Order`] key that hold the slot: a queue holds at most 2²⁴ rumours.
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// Arrival numbers wrap after 2⁴⁰ rumours (decades at a thousand a second); a wrap
/// only puts the rumours queued just before it behind those queued after.
const SEQ_MASK: u64 = (1 << (64 - SLOT_BITS)) - 1;

fn order_key(seq: u64, slot: u32) -> u64 {
    ((SEQ_MASK - (seq & SEQ_MASK)) << SLOT_BITS) | (u64::from(slot) & SLOT_MASK)
}

fn slot_of(key: u64) -> u32 {
    (key & SLOT_MASK) as u32
}

/// A bounded queue of encoded rumours ordered by class, then (transmits, newest first).
///
/// The rumours sit in slots (a free list reuses them), found by subject through a
/// `HashTable` of slot numbers hashed through the subject, and ordered by `order`,
/// whose keys name their slot: each rumour's subject is held once, and a rumour costs
/// about half of what two hash maps keyed by id and by subject did (a mass join keeps
/// a member table's worth of rumours queued on every node).
#[derive(Debug, Serialize, Deserialize)]
#[serde(
    bound = "A: crate::Address",
    from = "RumoursRepr<A>",
    into = "RumoursRepr<A>"
)]
pub(crate) struct Rumours<A> {
    slots: Vec<Option<Rumour<A>>>,
    free: Vec<u32>,
    by_subject: HashTable<u32>,
    hasher: SeededState,
    /// The rumours ready to be sent: a paced rumour leaves it while it rests.
    order: BTreeSet<Order>,
    /// Paced rumours resting after a send, by the time they are ready again: (ready
    /// at, slot, arrival number). The rest is the same for all, so the times only
    /// grow. A rumour rests at most once at a time (it is sent only when ready), so
    /// its arrival number names its entry; an entry whose slot no longer holds that
    /// rumour (replaced, retired, evicted) is skipped.
    resting: VecDeque<(Instant, u32, u64)>,
    /// How long a paced rumour rests after each send.
    rest: Duration,
    next_seq: u64,
    capacity: usize,
}

/// [`Rumours`] as a snapshot holds it: the rumours in order, without slots.
#[derive(Serialize, Deserialize)]
#[serde(bound = "A: crate::Address")]
struct RumoursRepr<A> {
    rumours: Vec<Rumour<A>>,
    /// The resting rumours with when each is ready, in that order.
    resting: Vec<(Instant, Rumour<A>)>,
    rest: Duration,
    hasher: u64,
    next_seq: u64,
    capacity: usize,
}

impl<A: crate::Address> From<RumoursRepr<A>> for Rumours<A> {
    fn from(r: RumoursRepr<A>) -> Self {
        let mut q = Rumours::new(r.capacity, SeededState(r.hasher), r.rest);
        q.next_seq = r.next_seq;
        for rumour in r.rumours {
            q.insert(rumour);
        }
        for (at, rumour) in r.resting {
            q.insert_resting(at, rumour);
        }
        q
    }
}

impl<A: crate::Address> From<Rumours<A>> for RumoursRepr<A> {
    fn from(mut q: Rumours<A>) -> Self {
        let order = core::mem::take(&mut q.order);
        let rumours = order
            .iter()
            .filter_map(|&(_, _, k)| q.slots.get_mut(slot_of(k) as usize)?.take())
            .collect();
        let resting = core::mem::take(&mut q.resting)
            .into_iter()
            .filter_map(|(at, slot, seq)| {
                let cell = q.slots.get_mut(slot as usize)?;
                let current = cell.as_ref().is_some_and(|r| r.seq == seq);
                Some((at, current.then(|| cell.take())??))
            })
            .collect();
        RumoursRepr {
            rumours,
            resting,
            rest: q.rest,
            hasher: q.hasher.0,
            next_seq: q.next_seq,
            capacity: q.capacity,
        }
    }
}

impl<A: crate::Address> Clone for Rumours<A> {
    fn clone(&self) -> Self {
        let mut q = Rumours::new(self.capacity, self.hasher, self.rest);
        q.next_seq = self.next_seq;
        for &(_, _, k) in &self.order {
            if let Some(r) = self.get(slot_of(k)) {
                q.insert(r.clone());
            }
        }
        for &(at, slot, seq) in &self.resting {
            if let Some(r) = self.resting_at(slot, seq) {
                q.insert_resting(at, r.clone());
            }
        }
        q
    }
}

impl<A: crate::Address> Rumours<A> {
    /// A queue of at most `capacity` rumours; a paced rumour rests `rest` after each
    /// send.
    pub fn new(capacity: usize, hasher: SeededState, rest: Duration) -> Self {
        Rumours {
            slots: Vec::new(),
            free: Vec::new(),
            by_subject: HashTable::new(),
            hasher,
            order: BTreeSet::new(),
            resting: VecDeque::new(),
            rest,
            next_seq: 0,
            // The slot must fit in an order key.
            capacity: capacity.min(SLOT_MASK as usize),
        }
    }

    pub fn len(&self) -> usize {
        self.by_subject.len()
    }

    fn get(&self, slot: u32) -> Option<&Rumour<A>> {
        self.slots.get(slot as usize)?.as_ref()
    }

    fn find(&self, subject: &Subject<A>) -> Option<u32> {
        let slots = &self.slots;
        self.by_subject
            .find(self.hasher.hash_one(subject), |&s| {
                slots
                    .get(s as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|r| r.subject == *subject)
            })
            .copied()
    }

    /// Whether a rumour about `subject` is still being spread.
    pub fn contains(&self, subject: &Subject<A>) -> bool {
        self.find(subject).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.by_subject.is_empty()
    }

    /// The queue by class, highest first, for [`Node::dump`](crate::Node::dump).
    pub fn dump(&self) -> Vec<crate::dump::RumourClassDump> {
        let mut classes: Vec<crate::dump::RumourClassDump> =
            ["own", "refutation", "topology", "state"]
                .into_iter()
                .map(|class| crate::dump::RumourClassDump {
                    class,
                    queued: 0,
                    bytes: 0,
                    transmits: Vec::new(),
                })
                .collect();
        for r in self.slots.iter().flatten() {
            let c = &mut classes[r.class as usize];
            c.queued += 1;
            c.bytes += r.bytes.len();
            match c.transmits.binary_search_by_key(&r.transmits, |(t, _)| *t) {
                Ok(i) => c.transmits[i].1 += 1,
                Err(i) => c.transmits.insert(i, (r.transmits, 1)),
            }
        }
        classes
    }

    /// Puts a rumour in a slot, in the order and in the index; returns the slot.
    fn insert(&mut self, rumour: Rumour<A>) -> u32 {
        let hash = self.hasher.hash_one(&rumour.subject);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.order.insert(rumour.order(slot));
        if let Some(cell) = self.slots.get_mut(slot as usize) {
            *cell = Some(rumour);
        }
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_subject.insert_unique(hash, slot, |&s| {
            slots
                .get(s as usize)
                .and_then(Option::as_ref)
                .map_or(0, |r| hasher.hash_one(&r.subject))
        });
        slot
    }

    /// Puts a resting rumour in a slot, in the index and at the back of the resting
    /// line (not in the order: it is not ready).
    fn insert_resting(&mut self, at: Instant, rumour: Rumour<A>) {
        let seq = rumour.seq;
        let slot = self.insert(rumour);
        if let Some(key) = self.get(slot).map(|r| r.order(slot)) {
            self.order.remove(&key);
        }
        self.resting.push_back((at, slot, seq));
    }

    /// The rumour resting in `slot` under this entry of the resting line, if the
    /// entry is still current (its rumour was not replaced, retired or evicted).
    fn resting_at(&self, slot: u32, seq: u64) -> Option<&Rumour<A>> {
        self.get(slot).filter(|r| r.seq == seq)
    }

    /// Puts the rumours whose rest is over back in the order.
    fn wake(&mut self, now: Instant) {
        while let Some(&(at, slot, seq)) = self.resting.front() {
            if at > now {
                break;
            }
            self.resting.pop_front();
            if let Some(r) = self.resting_at(slot, seq) {
                let key = r.order(slot);
                self.order.insert(key);
            }
        }
    }

    /// Takes the rumour out of `slot` (out of the order and the index too).
    fn take(&mut self, slot: u32) -> Option<Rumour<A>> {
        let rumour = self.slots.get_mut(slot as usize)?.take()?;
        self.order.remove(&rumour.order(slot));
        let hash = self.hasher.hash_one(&rumour.subject);
        if let Ok(entry) = self.by_subject.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        self.free.push(slot);
        Some(rumour)
    }

    /// Queues an encoded rumour of `class` with the whole budget, replacing any older
    /// rumour about the same subject. Returns whether a rumour had to be evicted to
    /// make room.
    pub fn push(&mut self, subject: Subject<A>, class: Class, bytes: Vec<u8>) -> bool {
        self.push_with(subject, class, Budget::Full, bytes)
    }

    /// [`push`](Self::push) with a `budget` of sends.
    pub fn push_with(
        &mut self,
        subject: Subject<A>,
        class: Class,
        budget: Budget,
        bytes: Vec<u8>,
    ) -> bool {
        if let Some(old) = self.find(&subject) {
            self.take(old);
        }
        let mut evicted = false;
        if self.len() >= self.capacity {
            // Evict from the lowest class the most-sent, oldest rumour: it has done
            // most of its work, and its class matters least.
            if let Some(&(_, _, k)) = self.order.iter().next_back() {
                self.take(slot_of(k));
                evicted = true;
            } else {
                // Every rumour rests: the one that rested longest goes.
                while let Some((_, slot, seq)) = self.resting.pop_front() {
                    if self.resting_at(slot, seq).is_some() {
                        self.take(slot);
                        evicted = true;
                        break;
                    }
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert(Rumour {
            subject,
            bytes: bytes.into_boxed_slice(),
            class,
            budget,
            transmits: 0,
            echoes: 0,
            seq,
        });
        evicted
    }

    /// A peer sent us the news we are passing on about `subject`: paced news (an
    /// arrival, a record's version) retires once [`ECHOES_TO_RETIRE`] peers did so. Returns whether it retired.
    ///
    /// Demers et al.'s rumour mongering with feedback, judged by the receiver: each
    /// echo is a peer that knows the news and is itself passing it on, so hearing it
    /// again means most nodes have it. In a mass join every node hears every arrival
    /// about as often as it sends it, and the sends after the first echoes mostly tell
    /// nodes what they know. The few nodes a quieted arrival misses learn it from
    /// anti-entropy a round later, and a missed arrival costs no verdict; news whose
    /// loss costs a verdict ([`Budget::Full`]) is never quieted.
    pub fn echo(&mut self, subject: &Subject<A>) -> bool {
        let Some(slot) = self.find(subject) else {
            return false;
        };
        let retire = match self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            Some(r) if r.budget.quieted() => {
                r.echoes = r.echoes.saturating_add(1);
                r.echoes >= ECHOES_TO_RETIRE
            }
            _ => false,
        };
        if retire {
            self.take(slot);
        }
        retire
    }

    /// Drops the queued rumour about `subject`, if any.
    pub fn remove_subject(&mut self, subject: &Subject<A>) {
        if let Some(slot) = self.find(subject) {
            self.take(slot);
        }
    }

    /// Gives back the memory a burst left behind: a mass join's wave of rumours (one
    /// per member) would otherwise hold a member table's worth of slots and buckets
    /// for good. The queue is rebuilt in order; slots and buckets reach no output.
    fn trim(&mut self) {
        let (len, cap) = (self.len(), self.slots.len());
        if cap > 64 && len * 4 <= cap {
            let order = core::mem::take(&mut self.order);
            let mut live: Vec<Rumour<A>> = Vec::with_capacity(len);
            for &(_, _, k) in &order {
                if let Some(r) = self
                    .slots
                    .get_mut(slot_of(k) as usize)
                    .and_then(Option::take)
                {
                    live.push(r);
                }
            }
            let mut resting: Vec<(Instant, Rumour<A>)> = Vec::new();
            for (at, slot, seq) in core::mem::take(&mut self.resting) {
                if self.resting_at(slot, seq).is_some() {
                    if let Some(r) = self.slots.get_mut(slot as usize).and_then(Option::take) {
                        resting.push((at, r));
                    }
                }
            }
            self.slots = Vec::with_capacity(len * 2);
            self.free = Vec::new();
            self.by_subject = HashTable::with_capacity(len * 2);
            for r in live {
                self.insert(r);
            }
            for (at, r) in resting {
                self.insert_resting(at, r);
            }
        }
    }

    /// Fills `body` with as many rumours as fit, least-sent first, counting one
    /// transmission for each; rumours that reach their budget's limit are retired.
    ///
    /// A paced rumour (see [`Budget::paced`]) then rests for the queue's
    /// rest before it is sent again. Unpaced, a mass join's admission pings and their
    /// acks carry each arrival on the next dozen datagrams, its whole budget spent in
    /// a fraction of a second, before any peer could echo it back. Resting spreads
    /// the sends over time, so echoes arrive between them and retire the arrival
    /// once most nodes have it. The first send is never delayed.
    pub fn fill(&mut self, body: &mut BodyBuilder, limits: Limits, now: Instant) -> usize {
        self.wake(now);
        let mut sent: Vec<Order> = Vec::new();
        // A nearly full body would otherwise scan the whole queue for a rumour small
        // enough; a few misses in a row mean it is as full as it usefully gets.
        let mut misses = 0;
        for &(c, t, k) in self.order.iter() {
            if body.remaining() < 4 || misses >= 8 {
                break;
            }
            if let Some(r) = self.get(slot_of(k)) {
                if body.push_encoded(&r.bytes) {
                    sent.push((c, t, k));
                    misses = 0;
                } else {
                    misses += 1;
                }
            }
        }
        let ready_at = now + self.rest;
        for &(c, t, k) in &sent {
            self.order.remove(&(c, t, k));
            let slot = slot_of(k);
            let rest = self.rest;
            let (retire, paced) = match self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
                Some(r) => {
                    r.transmits = t + 1;
                    let paced = (r.budget.paced() && !rest.is_zero()).then_some(r.seq);
                    (r.transmits >= r.budget.of(limits), paced)
                }
                None => (false, None),
            };
            if retire {
                self.take(slot);
            } else if let Some(seq) = paced {
                self.resting.push_back((ready_at, slot, seq));
            } else {
                self.order.insert((c, t + 1, k));
            }
        }
        self.trim();
        sent.len()
    }
}

/// [`arrival_share`] for a cluster of `n` (tests).
#[cfg(test)]
pub(crate) fn arrival_limit(mult: u32, n: usize) -> u32 {
    arrival_share(mult, retransmit_limit(mult, n))
}

/// The budget of a member's arrival: `mult · max(⌈d / 2⌉, 3)` for the
/// [`retransmit_limit`]'s `d = ⌈log10(n + 1)⌉`, never above that limit: the same as
/// any rumour up to 999 members, 12 sends instead of 16 at 1,000, and 12 instead of
/// 20 at 10,000. Half the decades is what keeps a large mass join's N² arrivals
/// affordable; below three the misses cost more than the sends save (at two decades
/// of 8 sends instead of 12, a 128-node join converged 0.1–0.5 s later on four
/// seeds, and a 1,024-node join 0.2–0.8 s later on three, for 5 % fewer bytes).
/// It takes the `full` limit already computed for the same `mult`: every datagram
/// computes both, and the decades are counted once.
fn arrival_share(mult: u32, full: u32) -> u32 {
    let decades = full / mult.max(1);
    mult.saturating_mul(decades.div_ceil(2).max(3)).min(full)
}

/// memberlist's retransmit limit: `mult · ⌈log10(n + 1)⌉`, at least `mult`.
pub(crate) fn retransmit_limit(mult: u32, n: usize) -> u32 {
    let x = (n as u64).saturating_add(1);
    let (mut ceil_log, mut pow) = (0u32, 1u64);
    while pow < x {
        pow = pow.saturating_mul(10);
        ceil_log += 1;
    }
    mult.saturating_mul(ceil_log.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::NodeId;

    #[test]
    fn retransmit_limit_matches_memberlist() {
        assert_eq!(retransmit_limit(4, 100), 12);
        assert_eq!(retransmit_limit(4, 1000), 16);
        assert_eq!(retransmit_limit(4, 10_000), 20);
        assert_eq!(retransmit_limit(4, 1), 4);
    }

    #[test]
    fn an_arrival_has_half_the_decades_but_at_least_three() {
        assert_eq!(arrival_limit(4, 5), 4, "the full limit (4)");
        assert_eq!(arrival_limit(4, 128), 12, "the full limit (12)");
        assert_eq!(arrival_limit(4, 1000), 12, "of 16");
        assert_eq!(arrival_limit(4, 10_000), 12, "of 20");
        assert_eq!(arrival_limit(4, 1_000_000), 16, "of 28");
        assert_eq!(arrival_limit(2, 1_000_000), 8, "of 14");
    }

    #[test]
    fn an_arrival_retires_at_its_limit_and_other_news_at_the_full_one() {
        let mut q: Rumours<u32> = Rumours::new(8, SeededState(0), Duration::ZERO);
        q.push_with(
            Subject::Member(1),
            Class::Topology,
            Budget::Arrival,
            alloc::vec![1; 4],
        );
        q.push(Subject::Member(2), Class::Topology, alloc::vec![2; 4]);
        let me = NodeId::new(0u32, 0);
        let limits = Limits {
            full: 4,
            arrival: 2,
        };
        let mut sent = Vec::new();
        while !q.is_empty() {
            let mut b = BodyBuilder::new(&me, 1000);
            let n = q.fill(&mut b, limits, Instant::ZERO);
            let body = b.finish();
            sent.push((n, body.windows(4).any(|w| w == [1; 4])));
        }
        assert_eq!(
            sent,
            [(2, true), (2, true), (1, false), (1, false)],
            "the arrival went twice, the other news four times"
        );
    }

    /// Which of the subjects `1..=9` a datagram filled at `now` carries.
    fn sent_at(q: &mut Rumours<u32>, now: Instant) -> Vec<u8> {
        let me = NodeId::new(0u32, 0);
        let mut b = BodyBuilder::new(&me, 1000);
        q.fill(&mut b, Limits::all(100), now);
        let body = b.finish();
        (1..=9u8)
            .filter(|&k| body.windows(4).any(|w| w == [k; 4]))
            .collect()
    }

    /// A queue resting `rest` that holds an arrival (subject 1), a record's news (2)
    /// and a rumour with the whole budget (3, as a suspicion).
    fn arrival_news_and_suspicion(rest: Duration) -> Rumours<u32> {
        let mut q: Rumours<u32> = Rumours::new(8, SeededState(0), rest);
        q.push_with(
            Subject::Member(1),
            Class::Topology,
            Budget::Arrival,
            alloc::vec![1; 4],
        );
        q.push_with(
            Subject::Placement("b".into()),
            Class::Topology,
            Budget::News,
            alloc::vec![2; 4],
        );
        q.push(Subject::Member(3), Class::Topology, alloc::vec![3; 4]);
        q
    }

    #[test]
    fn a_state_subject_is_boxed_but_encodes_as_its_two_fields() {
        // Variant 1, the owner 7 and the key "k" (length 1): the snapshot format of
        // version 9, written before the box, still reads.
        let bytes = postcard::to_allocvec(&Subject::state(7u32, String::from("k"))).unwrap();
        assert_eq!(bytes, [1, 7, 1, b'k']);
        assert!(core::mem::size_of::<Subject<core::net::SocketAddr>>() <= 40);
    }

    #[test]
    fn paced_news_rests_between_sends_and_other_rumours_do_not() {
        let rest = Duration::from_millis(125);
        let mut q = arrival_news_and_suspicion(rest);
        let t = Instant::from_secs(1);
        assert_eq!(
            sent_at(&mut q, t),
            [1, 2, 3],
            "the first send is never held back"
        );
        assert_eq!(sent_at(&mut q, t + Duration::from_millis(124)), [3]);
        assert_eq!(sent_at(&mut q, t + rest), [1, 2, 3], "rested: sent again");
        assert_eq!(q.len(), 3, "resting rumours are still queued");
        // A snapshot and a clone keep who rests until when.
        let mut restored: Rumours<u32> =
            postcard::from_bytes(&postcard::to_allocvec(&q).unwrap()).unwrap();
        let mut cloned = q.clone();
        for q in [&mut q, &mut restored, &mut cloned] {
            assert_eq!(sent_at(q, t + rest + Duration::from_millis(1)), [3]);
            assert_eq!(sent_at(q, t + rest * 2), [1, 2, 3]);
        }
    }

    #[test]
    fn echoes_retire_paced_news_but_never_a_full_rumour() {
        let mut q = arrival_news_and_suspicion(Duration::from_millis(100));
        let t = Instant::from_secs(1);
        assert_eq!(sent_at(&mut q, t), [1, 2, 3]);
        for _ in 1..ECHOES_TO_RETIRE {
            assert!(!q.echo(&Subject::Member(1)));
            assert!(!q.echo(&Subject::Placement("b".into())));
        }
        assert!(q.echo(&Subject::Member(1)), "retired while resting");
        assert!(q.echo(&Subject::Placement("b".into())));
        for _ in 0..10 {
            assert!(
                !q.echo(&Subject::Member(3)),
                "a suspicion or a verdict is never quieted"
            );
        }
        assert!(!q.echo(&Subject::Member(9)), "no such rumour");
        assert_eq!(q.len(), 1);
        assert_eq!(sent_at(&mut q, t + Duration::from_secs(1)), [3]);
    }

    #[test]
    fn a_quieted_rumour_never_rests_but_retires_on_echoes() {
        let mut q: Rumours<u32> = Rumours::new(8, SeededState(0), Duration::from_millis(125));
        q.push_with(
            Subject::Agreement(4),
            Class::Topology,
            Budget::Quieted,
            alloc::vec![4; 4],
        );
        let t = Instant::from_secs(1);
        assert_eq!(sent_at(&mut q, t), [4]);
        assert_eq!(
            sent_at(&mut q, t + Duration::from_millis(1)),
            [4],
            "spreads at full speed"
        );
        for _ in 1..ECHOES_TO_RETIRE {
            assert!(!q.echo(&Subject::Agreement(4)));
        }
        assert!(q.echo(&Subject::Agreement(4)), "retired by its echoes");
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_queue_of_resting_rumours_still_evicts_when_full() {
        let mut q: Rumours<u32> = Rumours::new(2, SeededState(0), Duration::from_secs(1));
        for k in 1..=2u8 {
            q.push_with(
                Subject::Member(u32::from(k)),
                Class::Topology,
                Budget::News,
                alloc::vec![k; 4],
            );
        }
        assert_eq!(sent_at(&mut q, Instant::ZERO), [1, 2]);
        assert!(q.push_with(
            Subject::Member(3),
            Class::Topology,
            Budget::News,
            alloc::vec![3; 4]
        ));
        assert_eq!(q.len(), 2, "the bound holds");
        assert_eq!(
            sent_at(&mut q, Instant::from_secs(1)),
            [1, 3],
            "the first in the resting line went"
        );
    }

    #[test]
    fn least_sent_first_and_retired_at_limit() {
        let mut q: Rumours<u32> = Rumours::new(8, SeededState(0), Duration::ZERO);
        q.push(Subject::Member(1), Class::Topology, alloc::vec![1; 10]);
        q.push(Subject::Member(2), Class::Topology, alloc::vec![2; 10]);
        let me = NodeId::new(0u32, 0);
        // Room for one rumour only: the newest goes first.
        let mut b = BodyBuilder::new(&me, 4 + 12);
        assert_eq!(q.fill(&mut b, Limits::all(2), Instant::ZERO), 1);
        assert!(b.finish().ends_with(&[2; 10]));
        // Now rumour 1 is the least sent.
        let mut b = BodyBuilder::new(&me, 4 + 12);
        q.fill(&mut b, Limits::all(2), Instant::ZERO);
        assert!(b.finish().ends_with(&[1; 10]));
        let mut b = BodyBuilder::new(&me, 1000);
        assert_eq!(q.fill(&mut b, Limits::all(2), Instant::ZERO), 2);
        assert!(q.is_empty(), "both reached the limit of 2");
    }

    /// What a full drain of the queue sends, in order.
    fn drain(q: &mut Rumours<u32>) -> Vec<Vec<u8>> {
        let me = NodeId::new(0u32, 0);
        let mut out = Vec::new();
        while !q.is_empty() {
            let mut b = BodyBuilder::new(&me, 4 + 6);
            assert_eq!(q.fill(&mut b, Limits::all(2), Instant::ZERO), 1);
            out.push(b.finish());
        }
        out
    }

    #[test]
    fn the_order_survives_slot_reuse_trimming_and_a_snapshot() {
        let fill = |q: &mut Rumours<u32>| {
            for k in 0..300u32 {
                let class = [Class::State, Class::Topology, Class::Own][(k % 3) as usize];
                q.push(
                    Subject::Member(k % 200),
                    class,
                    alloc::vec![(k % 251) as u8; 4],
                );
            }
        };
        let mut plain: Rumours<u32> = Rumours::new(1_000, SeededState(3), Duration::ZERO);
        fill(&mut plain);
        assert_eq!(plain.len(), 200, "100 subjects replaced");
        let expected = drain(&mut plain);
        assert_eq!(expected.len(), 400, "each sent twice");
        assert!(
            plain.slots.len() <= 64,
            "a drained queue gives its slots back"
        );
        // The same pushes after a burst that was drained (slots freed, reused,
        // trimmed) and through a snapshot send the same bytes in the same order.
        let mut used: Rumours<u32> = Rumours::new(1_000, SeededState(3), Duration::ZERO);
        for k in 0..500u32 {
            used.push(
                Subject::Member(10_000 + k),
                Class::Topology,
                alloc::vec![9; 4],
            );
        }
        drain(&mut used);
        used.next_seq = 0;
        fill(&mut used);
        let bytes = postcard::to_allocvec(&used).expect("serialize");
        let mut restored: Rumours<u32> = postcard::from_bytes(&bytes).expect("deserialize");
        assert_eq!(drain(&mut restored), expected);
        assert_eq!(drain(&mut used), expected);
    }

    #[test]
    fn newer_rumour_replaces_older_and_capacity_is_bounded() {
        let mut q: Rumours<u32> = Rumours::new(2, SeededState(0), Duration::ZERO);
        q.push(Subject::Member(1), Class::Topology, alloc::vec![1]);
        q.push(Subject::Member(1), Class::Topology, alloc::vec![9]);
        assert_eq!(q.len(), 1);
        q.push(Subject::Member(2), Class::Topology, alloc::vec![2]);
        assert!(q.push(Subject::Member(3), Class::Topology, alloc::vec![3]));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_passed_on_refutation_goes_before_fresher_suspicions() {
        let mut q: Rumours<u32> = Rumours::new(64, SeededState(0), Duration::ZERO);
        // Another member's refutation, already sent twice.
        q.push(Subject::Member(5), Class::Refutation, alloc::vec![5; 20]);
        let me = NodeId::new(0u32, 0);
        for _ in 0..2 {
            let mut b = BodyBuilder::new(&me, 4 + 22);
            assert_eq!(q.fill(&mut b, Limits::all(100), Instant::ZERO), 1);
        }
        // Then a flood of fresh suspicions and verdicts about others.
        for k in 10..40u32 {
            q.push(Subject::Member(k), Class::Topology, alloc::vec![1; 20]);
        }
        let mut b = BodyBuilder::new(&me, 4 + 22);
        assert_eq!(q.fill(&mut b, Limits::all(100), Instant::ZERO), 1);
        assert!(
            b.finish().windows(20).any(|w| w == [5; 20]),
            "the refutation rides first, however fresh the suspicions"
        );
    }

    #[test]
    fn a_refutation_goes_first_however_much_state_is_queued() {
        let mut q: Rumours<u32> = Rumours::new(64, SeededState(0), Duration::ZERO);
        for k in 0..60u32 {
            q.push(
                Subject::state(k, String::from("k")),
                Class::State,
                alloc::vec![3; 20],
            );
        }
        q.push(
            Subject::Placement(String::from("n")),
            Class::Topology,
            alloc::vec![2; 20],
        );
        q.push(Subject::Member(7), Class::Topology, alloc::vec![1; 20]);
        q.push(Subject::Member(0), Class::Own, alloc::vec![0; 20]);
        let me = NodeId::new(0u32, 0);
        // Room for two rumours: our own claim, then topology; state waits.
        let mut b = BodyBuilder::new(&me, 4 + 2 * 22);
        assert_eq!(q.fill(&mut b, Limits::all(100), Instant::ZERO), 2);
        let body = b.finish();
        assert!(
            body.windows(20).any(|w| w == [0; 20]),
            "the refutation went"
        );
        assert!(
            body.windows(20).any(|w| w == [1; 20] || w == [2; 20]),
            "then topology"
        );
        // Fresh state never overtakes a less-sent higher class.
        q.push(
            Subject::state(99, String::from("k")),
            Class::State,
            alloc::vec![4; 20],
        );
        let mut b = BodyBuilder::new(&me, 4 + 22);
        q.fill(&mut b, Limits::all(100), Instant::ZERO);
        assert!(
            b.finish().ends_with(&[0; 20]),
            "own claim again, least sent of its class"
        );
        // A full queue evicts state, not membership.
        for k in 100..200u32 {
            q.push(
                Subject::state(k, String::from("k")),
                Class::State,
                alloc::vec![5; 20],
            );
        }
        assert!(q.contains(&Subject::Member(7)));
        assert!(q.contains(&Subject::Member(0)));
        assert!(q.contains(&Subject::Placement(String::from("n"))));
    }
}
