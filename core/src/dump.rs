//! A read-only picture of a node's inner state, for operators: [`Node::dump`](crate::Node::dump).
//!
//! The parts keep their fields private; each lends what the picture needs through a
//! small accessor, and the node puts it together here. Nothing in it is an input to
//! anything: taking a dump changes nothing and draws nothing from the RNG.

use alloc::string::String;
use alloc::vec::Vec;

use crate::membership::{NodeId, Status};
use crate::placement::{LocalPlacement, Location, Topology};
use crate::time::Instant;

/// What [`Node::dump`](crate::Node::dump) returns.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Dump<A> {
    /// This node's identity.
    pub id: NodeId<A>,
    /// This node's incarnation.
    pub incarnation: u64,
    /// This node's own placement: name, location, tokens, epoch, status.
    pub placement: LocalPlacement,
    /// Lifeguard's local health multiplier (0 is healthy) and its ceiling.
    pub health: (u32, u32),
    /// Every member, this node first, tombstones included.
    pub members: Vec<MemberDump<A>>,
    /// The rumour queue by class.
    pub rumours: Vec<RumourClassDump>,
    /// How many times a rumour is sent before it retires, at the current cluster size.
    pub retransmit_limit: u32,
    /// The anti-entropy summary root.
    pub sync_root: u64,
    /// The ring digest (equal on nodes that hold the same ring).
    pub ring_digest: u64,
    /// Tokens on the natural ring.
    pub ring_tokens: usize,
    /// Whether this node is Normal and every live member published the same ring.
    pub ready: bool,
    /// Every placement record this node holds, by name.
    pub records: Vec<RecordDump<A>>,
    /// Requests in flight: issued or forwarded here, and delivered here.
    pub requests: Vec<RequestDump<A>>,
    /// Large values being fetched and served: (fetching, serving).
    pub value_transfers: (usize, usize),
}

/// One member as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberDump<A> {
    /// Its address and generation.
    pub id: NodeId<A>,
    /// Its name, from the placement records (the highest-ranked at its address).
    pub name: Option<String>,
    /// The incarnation its status was claimed at.
    pub incarnation: u64,
    /// Alive, suspect, dead or left.
    pub status: Status,
    /// Its topology state, from its placement record.
    pub topology: Option<Topology>,
    /// Whether it answered one of our probes at its address (this node: always).
    pub confirmed: bool,
    /// When this node last changed its view of it.
    pub since: Instant,
    /// If suspect: when the suspicion runs out and how many members confirmed it.
    pub suspicion: Option<SuspicionDump>,
    /// Whether this is the node itself.
    pub local: bool,
}

/// A suspicion in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SuspicionDump {
    /// When it started.
    pub start: Instant,
    /// When the member is declared dead unless it refutes (Lifeguard: shrinks with
    /// each independent confirmation).
    pub deadline: Instant,
    /// Independent confirmations beyond the first accuser.
    pub confirmations: usize,
    /// Confirmations after which the timeout is at its minimum.
    pub expected: u32,
}

/// One class of rumours in the queue (a packet takes them in this order).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RumourClassDump {
    /// `own` (this node's refutations and placement), `refutation` (others'
    /// refutations, passed on), `topology` (others' membership and placement records)
    /// or `state` (key/value writes).
    pub class: &'static str,
    /// Rumours queued.
    pub queued: usize,
    /// Encoded bytes queued.
    pub bytes: usize,
    /// How many rumours have been sent how many times: `(transmits, rumours)`,
    /// ascending.
    pub transmits: Vec<(u32, usize)>,
}

/// One placement record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordDump<A> {
    /// The member's name.
    pub name: String,
    /// Its address.
    pub addr: A,
    /// Its topology state.
    pub status: Topology,
    /// Its datacenter and rack.
    pub location: Location,
    /// The epoch of its tokens.
    pub epoch: u64,
    /// How many tokens it holds.
    pub tokens: usize,
}

/// A request in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestDump<A> {
    /// Issued or forwarded by this node, waiting for the response.
    Outgoing {
        /// Its id here.
        id: u64,
        /// The replica it was sent to.
        target: A,
        /// Replicas tried so far, the target included.
        tried: usize,
        /// When it fails over (or fails).
        deadline: Instant,
    },
    /// Delivered here, waiting for the application's answer.
    Incoming {
        /// Its id here.
        id: u64,
        /// The node that issued it, if not this one.
        origin: Option<A>,
        /// When it is dropped unanswered.
        deadline: Instant,
    },
}
