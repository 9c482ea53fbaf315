//! What the node tells its application: membership changes, state changes, requests.

use alloc::string::String;
use alloc::vec::Vec;

use alloc::boxed::Box;

use crate::membership::NodeId;
use crate::placement::{LocalPlacement, Topology};
use crate::routing::{RequestFailure, RequestId};

/// One thing that happened inside the node, drained with [`Node::poll_event`](crate::Node::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<A> {
    /// A member was heard of for the first time, or a new life (generation) of it.
    MemberJoined(NodeId<A>),
    /// A member stopped answering probes and is suspected.
    MemberSuspect(NodeId<A>),
    /// A suspected or dead member refuted and is alive again.
    MemberRecovered(NodeId<A>),
    /// A member was declared dead.
    MemberDied(NodeId<A>),
    /// A member left gracefully.
    MemberLeft(NodeId<A>),
    /// A key in some node's state changed (`value` is `None` when it was deleted).
    StateChanged {
        /// The node that owns the key.
        node: NodeId<A>,
        /// The key.
        key: String,
        /// The new value, or `None` for a delete.
        value: Option<Vec<u8>>,
    },
    /// A client request for a key this node is a replica of. Answer it with
    /// [`Node::respond`](crate::Node::respond).
    Request {
        /// Identifies the request to [`Node::respond`](crate::Node::respond).
        id: RequestId,
        /// The key the request is for.
        key: Vec<u8>,
        /// The application's payload.
        payload: Vec<u8>,
    },
    /// The response to a request this node accepted with
    /// [`Node::handle_request`](crate::Node::handle_request).
    Response {
        /// The id `handle_request` returned.
        id: RequestId,
        /// The node that answered.
        from: NodeId<A>,
        /// The application's payload.
        payload: Vec<u8>,
    },
    /// A request this node accepted could not be answered.
    RequestFailed {
        /// The id `handle_request` returned.
        id: RequestId,
        /// Why.
        reason: RequestFailure,
    },
    /// Every live member now reports the same ring digest as this node (schema agreement).
    RingAgreed {
        /// The digest they agree on.
        digest: u64,
    },
    /// Another member's topology state changed (it appeared, turned Normal, started
    /// leaving, left or was removed): ranges are moving or have moved.
    Topology {
        /// The member's name.
        name: String,
        /// Its new state.
        status: Topology,
    },
    /// This node's own placement changed (tokens taken, Normal, Left, or removed by an
    /// operator and rejoining as new): save it, and hand it to
    /// [`Node::restore`](crate::Node::restore) on the next start.
    PlacementChanged(Box<LocalPlacement>),
}
