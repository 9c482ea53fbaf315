//! Any-node request routing: the types, and the table of requests in flight.
//!
//! A request enters at any node. If that node is a replica for the key it is
//! delivered locally; otherwise it is forwarded to the first live replica with the
//! origin, its id and a hop limit. The replica's answer goes straight back to the
//! origin. The origin alone keeps state: a deadline, and which replicas it tried,
//! so that it can fail over once to the next replica before giving up.

use alloc::vec::Vec;
use core::fmt;

use alloc::collections::VecDeque;

use crate::hash::{Map, SeededState, Set};
use crate::membership::{MemberState, NodeId};
use crate::time::Instant;

/// Identifies a request on the node that issued it (and, for
/// [`Event::Request`](crate::Event::Request), on the node that must answer it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One node of a replica set, with its liveness as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica<A> {
    /// The replica.
    pub id: NodeId<A>,
    /// Its state ([`MemberState::Alive`] or [`MemberState::Suspect`]; the ring holds no others).
    pub state: MemberState,
}

/// The replicas of a key: the owner first, then the next distinct nodes clockwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSet<A> {
    /// The key's token (Cassandra's Murmur3Partitioner token).
    pub token: i64,
    /// Up to `replication_factor` replicas, owner first; empty if the ring is.
    pub replicas: Vec<Replica<A>>,
}

/// Why [`Node::handle_request`](crate::Node::handle_request) refused a request.
/// A refused request leaves no trace in the node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The ring is empty: no node announced tokens yet.
    NoReplica,
    /// `max_requests_in_flight` requests are already tracked.
    TooManyInFlight,
    /// Key and payload do not fit in one datagram.
    TooLarge {
        /// Key plus payload length.
        len: usize,
        /// The most that fits.
        max: usize,
    },
    /// The node has left the cluster.
    Left,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NoReplica => f.write_str("no node owns the key yet (the ring is empty)"),
            RequestError::TooManyInFlight => f.write_str("too many requests in flight"),
            RequestError::TooLarge { len, max } => {
                write!(
                    f,
                    "key and payload of {len} bytes exceed one datagram ({max})"
                )
            }
            RequestError::Left => f.write_str("the node has left the cluster"),
        }
    }
}

impl core::error::Error for RequestError {}

/// Why [`Node::respond`](crate::Node::respond) refused an answer. Nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RespondError {
    /// No such request awaits an answer (already answered, or expired).
    UnknownRequest,
    /// The payload does not fit in one datagram.
    TooLarge {
        /// Payload length.
        len: usize,
        /// The most that fits.
        max: usize,
    },
}

impl fmt::Display for RespondError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespondError::UnknownRequest => f.write_str("no such request awaits an answer"),
            RespondError::TooLarge { len, max } => {
                write!(f, "payload of {len} bytes exceeds one datagram ({max})")
            }
        }
    }
}

impl core::error::Error for RespondError {}

/// Why a request failed, in [`Event::RequestFailed`](crate::Event::RequestFailed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestFailure {
    /// Neither the first replica nor the one failed over to answered in time.
    Timeout,
    /// No live replica was left to try.
    NoReplica,
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestFailure::Timeout => "timed out",
            RequestFailure::NoReplica => "no live replica",
        })
    }
}

/// A request this node issued and forwarded.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing<A> {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub target: A,
    pub tried: u8,
    pub deadline: Instant,
}

/// A request delivered here, awaiting the application's answer.
#[derive(Clone, Debug)]
pub(crate) struct Incoming<A> {
    /// The origin and its id, or `None` when the request was issued here.
    pub origin: Option<(NodeId<A>, u64)>,
    pub deadline: Instant,
}

#[derive(Debug)]
pub(crate) struct Requests<A> {
    pub next_id: u64,
    pub outgoing: Map<u64, Outgoing<A>>,
    pub incoming: Map<u64, Incoming<A>>,
    /// Forwarded requests recently delivered here, oldest first: a replayed or
    /// duplicated datagram must not reach the application twice.
    seen: Set<(NodeId<A>, u64)>,
    seen_order: VecDeque<(NodeId<A>, u64)>,
}

impl<A: crate::Address> Requests<A> {
    pub fn new(hasher: SeededState) -> Self {
        Requests {
            next_id: 1,
            outgoing: Map::with_hasher(hasher),
            incoming: Map::with_hasher(hasher),
            seen: Set::with_hasher(hasher),
            seen_order: VecDeque::new(),
        }
    }

    /// Records a forwarded request; false if it was seen among the last `window`.
    pub fn first_sighting(&mut self, origin: &NodeId<A>, id: u64, window: usize) -> bool {
        let key = (origin.clone(), id);
        if self.seen.contains(&key) {
            return false;
        }
        if self.seen_order.len() >= window {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(key.clone());
        self.seen_order.push_back(key);
        true
    }

    pub fn in_flight(&self) -> usize {
        self.outgoing.len() + self.incoming.len()
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let a = self.outgoing.values().map(|o| o.deadline).min();
        let b = self.incoming.values().map(|i| i.deadline).min();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
