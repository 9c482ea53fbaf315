//! Topology: who holds which tokens, in which state of joining or leaving, separate
//! from whether the holder is alive right now.
//!
//! Each member's placement is one [`PlacementRecord`], keyed by the member's stable
//! **name** (its host ID), not by its address: the same name at a new address, or in
//! a new process life, is the same member with the same tokens. Only the member
//! itself writes its record, with one exception: an operator's `removenode` writes a
//! `Removed` record for a dead member from any node.
//!
//! Records are ordered by [`PlacementRecord::rank`] = `(epoch, removed, generation,
//! version)`, and every node keeps the highest rank it has seen per name, so the
//! table is a last-writer-wins map that converges whatever order records arrive in:
//! - `epoch` is the generation at which the tokens were allocated. It changes only
//!   when a member takes new tokens, which a member that was removed (or left) must
//!   do to come back: its old records can never outrank the removal.
//! - `removed` makes an operator's removal outrank anything the member wrote under
//!   the same tokens, even from a later process life.
//! - `(generation, version)` order the member's own writes.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use super::ring::{Location, Token};

/// Longest node name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Where a member stands in the ring's life cycle (Cassandra's `STATUS`), separate
/// from its liveness: a dead `Normal` member keeps its ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Topology {
    /// Taking tokens (none yet, or proposed): a pending replica of the ranges it will
    /// take, not yet a natural one.
    Joining,
    /// On the ring: a natural replica of its ranges.
    Normal,
    /// Decommissioning: still a natural replica; the nodes that will take its ranges
    /// are pending replicas meanwhile.
    Leaving,
    /// Decommissioned: its ranges moved to the other members.
    Left,
    /// Removed by an operator while dead: its ranges moved to the other members.
    Removed,
}

impl Topology {
    /// Whether the member is a natural replica of the ranges its tokens cover.
    pub fn is_on_ring(self) -> bool {
        matches!(self, Topology::Normal | Topology::Leaving)
    }

    /// Whether the member is gone from the ring for good (its record is a tombstone).
    pub fn is_gone(self) -> bool {
        matches!(self, Topology::Left | Topology::Removed)
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Topology::Joining => "joining",
            Topology::Normal => "normal",
            Topology::Leaving => "leaving",
            Topology::Left => "left",
            Topology::Removed => "removed",
        })
    }
}

/// One member's placement, as gossiped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PlacementRecord<A> {
    /// The member's stable name.
    pub name: String,
    /// Where the member was last announced to receive datagrams.
    pub addr: A,
    /// The process life that wrote this record.
    pub generation: u64,
    /// The writer's counter within that life.
    pub version: u64,
    /// The generation at which `tokens` were allocated (0: none yet).
    pub epoch: u64,
    /// Joining, Normal, Leaving, Left or Removed.
    pub status: Topology,
    /// Datacenter and rack.
    pub location: Location,
    /// The member's tokens, sorted (empty while it waits to allocate, and once gone).
    pub tokens: Vec<Token>,
}

/// The order of records about one name: the higher rank wins.
pub type Rank = (u64, bool, u64, u64);

impl<A> PlacementRecord<A> {
    /// `(epoch, removed, generation, version)`: see the [module docs](self).
    pub fn rank(&self) -> Rank {
        (
            self.epoch,
            self.status == Topology::Removed,
            self.generation,
            self.version,
        )
    }

    /// Whether the record is well formed: a name of 1 to [`MAX_NAME_LEN`] bytes,
    /// sorted distinct tokens (at most `max_tokens`), and tokens only with an epoch.
    /// Records that are not are dropped on receipt.
    pub fn is_valid(&self, max_tokens: usize) -> bool {
        !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self.location.datacenter.len() <= MAX_NAME_LEN
            && self.location.rack.len() <= MAX_NAME_LEN
            && self.tokens.len() <= max_tokens
            && self.tokens.windows(2).all(|w| w[0] < w[1])
            && (self.tokens.is_empty() || self.epoch > 0)
            && (!self.status.is_on_ring() || !self.tokens.is_empty())
    }
}

/// What a node keeps across restarts, and hands back to the core when it starts
/// again: its name, its location, and its tokens with their epoch.
///
/// The core reports a changed value as
/// [`Event::PlacementChanged`](crate::Event::PlacementChanged); the runtime saves it
/// (atomically, durably) and passes it to [`Node::restore`](crate::Node::restore)
/// on the next start, so a restarted node reclaims exactly its tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPlacement {
    /// The node's stable name (host ID).
    pub name: String,
    /// Datacenter and rack.
    pub location: Location,
    /// The node's tokens; empty until it first allocates them.
    pub tokens: Vec<Token>,
    /// The generation at which the tokens were allocated (0: none yet).
    pub epoch: u64,
    /// The node's topology state when saved.
    pub status: Option<Topology>,
}

/// Why [`Node::restore`](crate::Node::restore) refused a saved placement. Nothing
/// changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreError {
    /// The node has already joined: restore before [`Node::join`](crate::Node::join).
    AlreadyStarted,
    /// The name is empty or longer than [`MAX_NAME_LEN`] bytes.
    BadName,
    /// The tokens are not sorted and distinct, or exceed the configured `vnodes`.
    BadTokens,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::AlreadyStarted => f.write_str("the node has already joined"),
            RestoreError::BadName => write!(f, "node names must be 1 to {MAX_NAME_LEN} bytes"),
            RestoreError::BadTokens => {
                f.write_str("saved tokens must be sorted, distinct and at most vnodes")
            }
        }
    }
}

impl core::error::Error for RestoreError {}

/// Why [`Node::remove_node`](crate::Node::remove_node) refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoveError {
    /// No member by that name holds placement.
    Unknown,
    /// The member is alive (or suspect): it must be dead to be removed; a live member
    /// decommissions itself with `leave`.
    NotDead,
    /// A node cannot remove itself; use `leave`.
    IsSelf,
    /// The member has already left or been removed.
    AlreadyGone,
}

impl fmt::Display for RemoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoveError::Unknown => "no member by that name holds placement",
            RemoveError::NotDead => "the member is not dead: only a dead member can be removed",
            RemoveError::IsSelf => "a node cannot remove itself: use leave",
            RemoveError::AlreadyGone => "the member has already left or been removed",
        })
    }
}

impl core::error::Error for RemoveError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64, status: Topology, generation: u64, version: u64) -> PlacementRecord<u32> {
        PlacementRecord {
            name: "a".into(),
            addr: 1,
            generation,
            version,
            epoch,
            status,
            location: Location::default(),
            tokens: alloc::vec![1, 2],
        }
    }

    #[test]
    fn removal_outranks_the_same_tokens_from_any_life() {
        let removed = record(5, Topology::Removed, 5, 3);
        assert!(removed.rank() > record(5, Topology::Normal, 9, 100).rank());
        // New tokens (a new epoch) come back as a new member.
        assert!(record(9, Topology::Joining, 9, 1).rank() > removed.rank());
        // Within one epoch, the owner's own writes are ordered by life then counter.
        assert!(
            record(5, Topology::Leaving, 6, 1).rank() > record(5, Topology::Normal, 5, 9).rank()
        );
    }

    #[test]
    fn validity() {
        assert!(record(5, Topology::Normal, 5, 1).is_valid(16));
        let mut r = record(5, Topology::Normal, 5, 1);
        r.tokens = alloc::vec![2, 1];
        assert!(!r.is_valid(16));
        r.tokens.clear();
        assert!(!r.is_valid(16), "on the ring without tokens");
        let mut r = record(0, Topology::Joining, 5, 1);
        assert!(!r.is_valid(16), "tokens without an epoch");
        r.tokens.clear();
        assert!(r.is_valid(16));
        r.name = "x".repeat(MAX_NAME_LEN + 1);
        assert!(!r.is_valid(16));
    }
}
