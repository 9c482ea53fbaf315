//! Plain-data snapshots of a node, as answers to a handle's questions.

use std::net::SocketAddr;
use std::time::Duration;

use grapevine::{Stats, Status};

use crate::NodeId;

/// One member as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// Address and generation.
    pub id: NodeId,
    /// The member's stable name, if its placement record is known at this address.
    pub name: Option<String>,
    /// Alive, suspect, dead or left.
    pub state: Status,
    /// The member's incarnation number (bumped when it refutes a suspicion).
    pub incarnation: u64,
    /// How long ago this node last received a valid datagram from the member's
    /// address; `None` if never (or for the local node itself).
    pub last_heard: Option<Duration>,
    /// How long ago this node's view of the member last changed (state or incarnation).
    pub since: Duration,
    /// Whether this is the node being asked.
    pub local: bool,
}

impl Member {
    /// The member's address.
    pub fn addr(&self) -> SocketAddr {
        self.id.addr
    }
}

/// The node's counters plus the runtime's own.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// The core's counters.
    pub core: Stats,
    /// Time since the runtime started.
    pub uptime: Duration,
    /// Members (including this node) in state alive or suspect.
    pub members_live: usize,
    /// Every known member, tombstones included.
    pub members_known: usize,
    /// The node's current ring digest.
    pub ring_digest: u64,
    /// Events dropped because a subscriber's queue was full.
    pub events_dropped: u64,
    /// Datagrams the socket refused to send.
    pub send_errors: u64,
    /// Errors from the socket's receive.
    pub recv_errors: u64,
    /// Placement changes that could not be saved to the data directory.
    pub persist_errors: u64,
    /// Source addresses the runtime holds something about (members' last-heard
    /// times and the sources of the current drop summary): bounded by the member
    /// table, whatever the number of addresses that send to the node.
    pub tracked_sources: usize,
    /// Lifeguard's local health multiplier ([`grapevine::Node::health`]): 0 when
    /// this node answers and hears answers in time; higher when it misses nacks or
    /// has to refute suspicions of itself, which stretches its probe timeouts.
    pub health: u32,
    /// Rumours waiting to be piggybacked ([`grapevine::Node::rumours_queued`]).
    pub rumours_queued: usize,
    /// The largest key plus payload a request (or payload a response) may carry
    /// ([`grapevine::Node::max_request_bytes`]).
    pub max_request_bytes: usize,
}

/// One key of a node's state ([`Handle::keys`](crate::Handle::keys)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateEntry {
    /// The key.
    pub key: String,
    /// Its version: raised by every write of its owner.
    pub version: u64,
    /// Its value.
    pub value: Vec<u8>,
}

/// One replica of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteReplica {
    /// The replica's current process (address and generation).
    pub id: NodeId,
    /// The replica's stable name.
    pub name: String,
    /// Its liveness as the asking node sees it: a dead natural replica is still a
    /// replica, but requests go to live ones.
    pub state: Status,
    /// Its topology state.
    pub topology: grapevine::Topology,
}

impl From<grapevine::Replica<SocketAddr>> for RouteReplica {
    fn from(r: grapevine::Replica<SocketAddr>) -> Self {
        RouteReplica {
            id: r.id,
            name: r.name,
            state: r.state,
            topology: r.topology,
        }
    }
}

/// Where a key routes, as a node sees the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// The key.
    pub key: Vec<u8>,
    /// The key's token on the ring.
    pub token: i64,
    /// The natural replicas in ring order, owner first.
    pub replicas: Vec<RouteReplica>,
    /// Replicas the key's range is moving to while members join or leave.
    pub pending: Vec<RouteReplica>,
    /// The ring digest of the asking node.
    pub ring_digest: u64,
}

impl Route {
    /// The key's owner: the first natural replica in ring order, alive or not.
    ///
    /// It is not always the node that serves a request for the key: a request is
    /// served by the node it enters if that node is a natural replica (locally, by
    /// its application), else by the first *live* natural replica (an alive one
    /// before a suspect one; the owner when it is alive), then, once, by the next
    /// live one if that does not answer in time.
    pub fn owner(&self) -> Option<&NodeId> {
        self.replicas.first().map(|r| &r.id)
    }
}

/// One node's part of the token ring.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Ownership {
    /// The member's stable name.
    pub name: String,
    /// Its last announced address.
    pub addr: SocketAddr,
    /// Its liveness as the asking node sees it.
    pub state: Status,
    /// Its topology state (Joining, Normal, Leaving, Left, Removed).
    pub topology: grapevine::Topology,
    /// Its datacenter.
    pub datacenter: String,
    /// Its rack.
    pub rack: String,
    /// How many tokens it holds on the ring.
    pub tokens: usize,
    /// The fraction of all keys it owns (is the first replica of), 0 to 1.
    pub primary: f64,
    /// The fraction of all keys it holds a replica of, 0 to 1.
    pub replica: f64,
}

/// The token ring as one node sees it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RingSnapshot {
    /// The asking node's name.
    pub name: String,
    /// Whether the asking node is ready ([`Handle::ready`](crate::Handle::ready)).
    pub ready: bool,
    /// The ring digest (the same as in the stats): equal on nodes that agree.
    pub digest: u64,
    /// The configured replication factor.
    pub replication_factor: usize,
    /// Every `(token, owner name)` in ring order.
    pub tokens: Vec<(i64, String)>,
    /// Every member with a placement record, by name (Left and Removed ones
    /// included), with its share of the key space, exact (range arithmetic, no sampling).
    pub ownership: Vec<Ownership>,
}
