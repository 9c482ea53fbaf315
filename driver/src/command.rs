//! What a handle sends to the loop that owns the node, and how answers and events come back.

use std::fmt;
use std::net::SocketAddr;

use grapevine::RequestId;

use crate::{
    Event, EventFilter, KeyChange, KeysSnapshot, Member, NodeId, RingSnapshot, Route, RuntimeError,
    StateEntry, StatsSnapshot,
};

/// A one-shot reply: how the driver answers a command, whatever channel the runtime uses.
pub struct Reply<T>(Box<dyn FnOnce(T) + Send>);

impl<T> Reply<T> {
    /// A reply that calls `f` with the answer (typically sending it on a one-shot channel).
    pub fn new(f: impl FnOnce(T) + Send + 'static) -> Self {
        Reply(Box::new(f))
    }

    /// Answers.
    pub fn send(self, value: T) {
        (self.0)(value)
    }
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply")
    }
}

/// What a subscriber did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The subscriber has it.
    Delivered,
    /// The subscriber's queue is full: this event is dropped for it and counted.
    Full,
    /// The subscriber is gone: forget it.
    Closed,
}

/// Where a subscriber's events go (typically a bounded channel's `try_send`).
pub struct EventSink {
    deliver: Box<dyn FnMut(&Event) -> Delivery + Send>,
    filter: Option<EventFilter>,
}

impl EventSink {
    /// A sink that hands every event to `f`, the reserved `gv.` keys' changes
    /// included (see [`EventSink::filtered`]).
    pub fn new(f: impl FnMut(&Event) -> Delivery + Send + 'static) -> Self {
        EventSink {
            deliver: Box::new(f),
            filter: None,
        }
    }

    /// Hands this sink only the events that pass `filter`.
    pub fn filtered(mut self, filter: EventFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Hands `event` to the subscriber; an event the filter leaves out counts as
    /// delivered (nothing was dropped).
    pub(crate) fn deliver(&mut self, event: &Event) -> Delivery {
        if self.filter.as_ref().is_some_and(|f| !f.matches(event)) {
            return Delivery::Delivered;
        }
        (self.deliver)(event)
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventSink")
    }
}

/// A command from a handle to the loop that owns the node.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Join more seeds (the node already joined [`Options::seeds`](crate::Options::seeds) at start).
    Join(Vec<SocketAddr>),
    /// Set a key in this node's state.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Whether the core accepted it.
        reply: Reply<Result<(), RuntimeError>>,
    },
    /// Delete a key from this node's state.
    Delete {
        /// The key.
        key: String,
        /// Whether the core accepted it.
        reply: Reply<Result<(), RuntimeError>>,
    },
    /// Read a key of some node's state, as this node knows it.
    Get {
        /// The node that owns the key.
        node: SocketAddr,
        /// The key.
        key: String,
        /// The value, if known.
        reply: Reply<Option<Vec<u8>>>,
    },
    /// List the live keys of some node's state, as this node knows it.
    Keys {
        /// The node that owns the state.
        node: SocketAddr,
        /// Each key with its version and value, sorted by key.
        reply: Reply<Vec<StateEntry>>,
    },
    /// Send a client request for `key`; the answer arrives as [`grapevine::Event::Response`]
    /// (or [`grapevine::Event::RequestFailed`]) on the event subscribers.
    Request {
        /// The key that picks the owner.
        key: Vec<u8>,
        /// The application's payload.
        payload: Vec<u8>,
        /// The request's id, or why the core refused it.
        reply: Reply<Result<RequestId, RuntimeError>>,
    },
    /// Send a request to one chosen replica of `key` (natural or pending), without
    /// fail-over: see [`grapevine::Node::handle_request_to`].
    RequestTo {
        /// The key.
        key: Vec<u8>,
        /// The replica, as [`crate::Handle::route`] names it.
        to: NodeId,
        /// The application payload.
        payload: Vec<u8>,
        /// The id the answer will carry.
        reply: Reply<Result<RequestId, RuntimeError>>,
    },
    /// Answer a [`grapevine::Event::Request`].
    Respond {
        /// The id from the event.
        id: RequestId,
        /// The application's payload.
        payload: Vec<u8>,
        /// Whether the core accepted it.
        reply: Reply<Result<(), RuntimeError>>,
    },
    /// List every known member.
    Members(Reply<Vec<Member>>),
    /// Read the counters.
    Stats(Reply<StatsSnapshot>),
    /// The token ring as this node sees it.
    Ring(Reply<RingSnapshot>),
    /// Where a key routes.
    Route {
        /// The key.
        key: Vec<u8>,
        /// The replica set and ring digest.
        reply: Reply<Route>,
    },
    /// Add an event subscriber. The first subscriber also receives the events raised
    /// before it subscribed (up to [`Options::event_capacity`](crate::Options::event_capacity) of them).
    Subscribe(EventSink),
    /// Stop gracefully, keeping this node's ranges ([`Node::shutdown`](grapevine::Node::shutdown)):
    /// spread "left" so peers do not suspect it, keep running until the news is
    /// spread (at most the [leave timeout](crate::Options::leave_timeout)), then stop. Its tokens stay on the ring; a restart with its data directory takes
    /// them back.
    Shutdown,
    /// Decommission ([`Node::leave`](grapevine::Node::leave)): hand this node's ranges
    /// to the others, then stop. Answered once the node reports Left, or with
    /// [`RuntimeError::Timeout`] after [`Options::decommission_timeout`](crate::Options::decommission_timeout)
    /// (the node keeps leaving).
    Decommission(Reply<Result<(), RuntimeError>>),
    /// Remove a dead member's placement by name ([`Node::remove_node`](grapevine::Node::remove_node)).
    RemoveNode {
        /// The member's name.
        name: String,
        /// Whether the core accepted it.
        reply: Reply<Result<(), RuntimeError>>,
    },
    /// The node's inner state as JSON ([`dump::dump_json`](crate::dump::dump_json)).
    Dump(Reply<serde_json::Value>),
    /// Answer once this node is Normal and every live member holds the same ring
    /// ([`Node::is_ready`](grapevine::Node::is_ready)); at once if it already is.
    Ready(Reply<Result<(), RuntimeError>>),
    /// Answer once this node has joined: it has a live member, or it has no seed (the
    /// first node of its cluster). At once if it already has.
    Joined(Reply<Result<(), RuntimeError>>),
    /// List the installed encryption keys, after applying `change` if there is one.
    /// Refused with [`RuntimeError::NotEncrypted`] on a node without a keyring.
    Keyring {
        /// The change to make first.
        change: Option<KeyChange>,
        /// The keys now installed, by fingerprint, or why the change was refused.
        reply: Reply<Result<KeysSnapshot, RuntimeError>>,
    },
    /// Stop at once without leaving: peers will detect this node as failed.
    Abort,
    /// Answer once the loop has ended (when the [`Driver`](crate::Driver) is dropped):
    /// `Ok`, or an error if the loop ended in a panic. A reply that is dropped
    /// unanswered (the loop ended before reading this command) means the same as `Ok`.
    WhenStopped(Reply<Result<(), RuntimeError>>),
}
