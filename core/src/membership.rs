//! Who is in the cluster: identities, member states, and the SWIM precedence rules
//! that decide which of two claims about a member wins.

use core::fmt;
use core::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::hash::Map;
use crate::time::Instant;
use crate::wire::MemberClaim;

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

/// A member's state as this node sees it.
pub type MemberState = Status;

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
    pub state: MemberState,
    /// The incarnation that state was claimed at.
    pub incarnation: u64,
    /// When this node last changed its view of the member.
    pub since: Instant,
}

/// One entry of the member table.
#[derive(Clone, Debug)]
pub(crate) struct Member<A> {
    pub id: NodeId<A>,
    pub incarnation: u64,
    pub status: Status,
    pub since: Instant,
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

/// The member table: every member this node knows, itself excluded, keyed by address.
#[derive(Debug)]
pub(crate) struct Members<A> {
    pub map: Map<A, Member<A>>,
}

impl<A: crate::Address> Members<A> {
    pub fn new(hasher: crate::hash::SeededState) -> Self {
        Members {
            map: Map::with_hasher(hasher),
        }
    }

    /// Applies a claim about someone else. Returns what changed; the caller turns it
    /// into events, timers and rumours. `room` says whether a new member may be added.
    pub fn apply(&mut self, claim: &MemberClaim<A>, now: Instant, room: bool) -> Change {
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
                    },
                );
                Change::Joined
            }
            Some(m) => {
                if !supersedes(claim.rank(), m.rank()) {
                    return Change::None;
                }
                let new_life = claim.id.generation != m.id.generation;
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
        let mut m = Members::new(crate::hash::SeededState(1));
        assert_eq!(
            m.apply(&claim(1, 0, Dead), Instant::ZERO, true),
            Change::None
        );
        assert_eq!(
            m.apply(&claim(1, 0, Suspect), Instant::ZERO, true),
            Change::None
        );
        assert_eq!(
            m.apply(&claim(1, 0, Alive), Instant::ZERO, false),
            Change::None
        );
        assert_eq!(
            m.apply(&claim(1, 0, Alive), Instant::ZERO, true),
            Change::Joined
        );
        assert_eq!(
            m.apply(&claim(1, 0, Suspect), Instant::ZERO, true),
            Change::Suspected
        );
        assert_eq!(
            m.apply(&claim(1, 1, Alive), Instant::ZERO, true),
            Change::Recovered
        );
        assert_eq!(
            m.apply(&claim(2, 0, Alive), Instant::ZERO, true),
            Change::Joined
        );
    }
}
