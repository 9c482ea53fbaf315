//! The rumour queue: every change is piggybacked on outgoing packets until it has
//! been sent `retransmit_mult · ⌈log10(n + 1)⌉` times (memberlist's rule).
//!
//! Rumours are encoded once when queued, so packing a datagram only copies bytes.
//! Each rumour has a [`Class`], and a packet takes the classes in order: claims about
//! this node (its refutations, its own placement record), then topology (membership
//! and placement records), then application state. Under pressure the lower classes
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

use crate::hash::{Map, SeededState};
use crate::wire::BodyBuilder;

/// What a rumour is about: a newer rumour about the same subject replaces the older one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Subject<A> {
    Member(A),
    State(A, String),
    Placement(String),
    /// One segment of the ring agreement's bit set.
    Agreement(u16),
}

/// A rumour's priority for room in a packet, highest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Class {
    /// A claim about this node: its refutation of a suspicion, its own liveness, its
    /// own placement record.
    Own = 0,
    /// Claims about other members, and their placement records.
    Topology = 1,
    /// Application (and reserved) state.
    State = 2,
}

#[derive(Debug, Serialize, Deserialize)]
struct Rumour<A> {
    subject: Subject<A>,
    bytes: Vec<u8>,
    class: Class,
    transmits: u32,
}

/// The key a rumour is ordered by: (class, transmits, u64::MAX - id), so iterating
/// ascending yields the highest class, then the least sent, then the newest.
type Order = (Class, u32, u64);

/// A bounded queue of encoded rumours ordered by class, then (transmits, newest first).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "A: crate::Address")]
pub(crate) struct Rumours<A> {
    #[serde(with = "crate::snapshot::map")]
    rumours: Map<u64, Rumour<A>>,
    #[serde(with = "crate::snapshot::map")]
    by_subject: Map<Subject<A>, u64>,
    order: BTreeSet<Order>,
    next_id: u64,
    capacity: usize,
}

impl<A: crate::Address> Rumours<A> {
    pub fn new(capacity: usize, hasher: SeededState) -> Self {
        Rumours {
            rumours: Map::with_hasher(hasher),
            by_subject: Map::with_hasher(hasher),
            order: BTreeSet::new(),
            next_id: 0,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.rumours.len()
    }

    /// Whether a rumour about `subject` is still being spread.
    pub fn contains(&self, subject: &Subject<A>) -> bool {
        self.by_subject.contains_key(subject)
    }

    pub fn is_empty(&self) -> bool {
        self.rumours.is_empty()
    }

    /// The queue by class, highest first, for [`Node::dump`](crate::Node::dump).
    pub fn dump(&self) -> Vec<crate::dump::RumourClassDump> {
        let mut classes: Vec<crate::dump::RumourClassDump> = ["own", "topology", "state"]
            .into_iter()
            .map(|class| crate::dump::RumourClassDump {
                class,
                queued: 0,
                bytes: 0,
                transmits: Vec::new(),
            })
            .collect();
        for r in self.rumours.values() {
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

    /// Queues an encoded rumour of `class`, replacing any older rumour about the same
    /// subject. Returns whether a rumour had to be evicted to make room.
    pub fn push(&mut self, subject: Subject<A>, class: Class, bytes: Vec<u8>) -> bool {
        if let Some(old) = self.by_subject.remove(&subject) {
            self.remove(old);
        }
        let mut evicted = false;
        if self.rumours.len() >= self.capacity {
            // Evict from the lowest class the most-sent, oldest rumour: it has done
            // most of its work, and its class matters least.
            if let Some(&(c, t, k)) = self.order.iter().next_back() {
                let id = u64::MAX - k;
                self.order.remove(&(c, t, k));
                if let Some(r) = self.rumours.remove(&id) {
                    self.by_subject.remove(&r.subject);
                }
                evicted = true;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.order.insert((class, 0, u64::MAX - id));
        self.by_subject.insert(subject.clone(), id);
        self.rumours.insert(
            id,
            Rumour {
                subject,
                bytes,
                class,
                transmits: 0,
            },
        );
        evicted
    }

    /// Drops the queued rumour about `subject`, if any.
    pub fn remove_subject(&mut self, subject: &Subject<A>) {
        if let Some(id) = self.by_subject.remove(subject) {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(r) = self.rumours.remove(&id) {
            self.order.remove(&(r.class, r.transmits, u64::MAX - id));
        }
    }

    /// Gives back the buckets a burst left behind: a hash map never shrinks by
    /// itself, and a mass join's wave of rumours (one per member) would otherwise hold
    /// a member table's worth of buckets for good. The maps are only looked up (the
    /// queue's order is `order`), so their layout reaches no output.
    fn trim(&mut self) {
        let (len, cap) = (self.rumours.len(), self.rumours.capacity());
        if cap > 64 && len * 4 <= cap {
            self.rumours.shrink_to(len * 2);
            self.by_subject.shrink_to(len * 2);
        }
    }

    /// Fills `body` with as many rumours as fit, least-sent first, counting one
    /// transmission for each; rumours that reach `limit` are retired.
    pub fn fill(&mut self, body: &mut BodyBuilder, limit: u32) -> usize {
        let mut sent: Vec<Order> = Vec::new();
        // A nearly full body would otherwise scan the whole queue for a rumour small
        // enough; a few misses in a row mean it is as full as it usefully gets.
        let mut misses = 0;
        for &(c, t, k) in self.order.iter() {
            if body.remaining() < 4 || misses >= 8 {
                break;
            }
            let id = u64::MAX - k;
            if let Some(r) = self.rumours.get(&id) {
                if body.push_encoded(&r.bytes) {
                    sent.push((c, t, k));
                    misses = 0;
                } else {
                    misses += 1;
                }
            }
        }
        for &(c, t, k) in &sent {
            self.order.remove(&(c, t, k));
            let id = u64::MAX - k;
            let retire = match self.rumours.get_mut(&id) {
                Some(r) => {
                    r.transmits = t + 1;
                    r.transmits >= limit
                }
                None => false,
            };
            if retire {
                if let Some(r) = self.rumours.remove(&id) {
                    self.by_subject.remove(&r.subject);
                }
            } else {
                self.order.insert((c, t + 1, k));
            }
        }
        self.trim();
        sent.len()
    }
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
    fn least_sent_first_and_retired_at_limit() {
        let mut q: Rumours<u32> = Rumours::new(8, SeededState(0));
        q.push(Subject::Member(1), Class::Topology, alloc::vec![1; 10]);
        q.push(Subject::Member(2), Class::Topology, alloc::vec![2; 10]);
        let me = NodeId::new(0u32, 0);
        // Room for one rumour only: the newest goes first.
        let mut b = BodyBuilder::new(&me, 4 + 12);
        assert_eq!(q.fill(&mut b, 2), 1);
        assert!(b.finish().ends_with(&[2; 10]));
        // Now rumour 1 is the least sent.
        let mut b = BodyBuilder::new(&me, 4 + 12);
        q.fill(&mut b, 2);
        assert!(b.finish().ends_with(&[1; 10]));
        let mut b = BodyBuilder::new(&me, 1000);
        assert_eq!(q.fill(&mut b, 2), 2);
        assert!(q.is_empty(), "both reached the limit of 2");
    }

    #[test]
    fn newer_rumour_replaces_older_and_capacity_is_bounded() {
        let mut q: Rumours<u32> = Rumours::new(2, SeededState(0));
        q.push(Subject::Member(1), Class::Topology, alloc::vec![1]);
        q.push(Subject::Member(1), Class::Topology, alloc::vec![9]);
        assert_eq!(q.len(), 1);
        q.push(Subject::Member(2), Class::Topology, alloc::vec![2]);
        assert!(q.push(Subject::Member(3), Class::Topology, alloc::vec![3]));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_refutation_goes_first_however_much_state_is_queued() {
        let mut q: Rumours<u32> = Rumours::new(64, SeededState(0));
        for k in 0..60u32 {
            q.push(
                Subject::State(k, String::from("k")),
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
        assert_eq!(q.fill(&mut b, 100), 2);
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
            Subject::State(99, String::from("k")),
            Class::State,
            alloc::vec![4; 20],
        );
        let mut b = BodyBuilder::new(&me, 4 + 22);
        q.fill(&mut b, 100);
        assert!(
            b.finish().ends_with(&[0; 20]),
            "own claim again, least sent of its class"
        );
        // A full queue evicts state, not membership.
        for k in 100..200u32 {
            q.push(
                Subject::State(k, String::from("k")),
                Class::State,
                alloc::vec![5; 20],
            );
        }
        assert!(q.by_subject.contains_key(&Subject::Member(7)));
        assert!(q.by_subject.contains_key(&Subject::Member(0)));
        assert!(
            q.by_subject
                .contains_key(&Subject::Placement(String::from("n")))
        );
    }
}
