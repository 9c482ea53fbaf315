//! # Grapevine
//!
//! A sans-IO gossip protocol core for clusters of equal nodes: SWIM membership with
//! Lifeguard, per-node versioned state spread by rumours and a bounded anti-entropy
//! exchange, a token ring built from that state, and any-node request routing.
//!
//! The core does no I/O: datagrams, time and requests go in through
//! `Node::handle_*`, and datagrams, events and the next deadline come out through
//! [`Node::poll_transmit`], [`Node::poll_event`] and [`Node::poll_timeout`]. It reads
//! no clock and no ambient randomness, so the same inputs give the same outputs.
//!
//! # Its siblings
//!
//! Most programs do not drive a [`Node`] by hand. The sibling crates do it on real
//! sockets: `grapevine-std` (a thread on a blocking UDP socket), `grapevine-tokio`
//! and `grapevine-smol` (one task each), around the shared glue of
//! `grapevine-driver` (options, the one client `Handle`, event subscriptions,
//! metrics). `grapevine-sim` drives thousands of cores in virtual time over a
//! seeded network, and `grapevine-cli` is the `grapevine` binary.
//!
//! # Who serves a request
//!
//! [`Node::handle_request`] accepts a request for a key at any node. If that node is
//! one of the key's natural replicas, its own application serves it (locally, as
//! [`Event::Request`]). Otherwise the request goes to the first live natural replica
//! in ring order (an alive one before a suspect one), whose application serves it;
//! if that one does not answer in time, it fails over once to the next live natural
//! replica. It is never sent to a node that is not a natural replica: with none
//! alive it fails with [`RequestError::Unavailable`].
//!
//! # Example: two nodes by hand
//!
//! Two nodes whose addresses are plain numbers, with datagrams carried in memory. The
//! drain rule: after any input, take every datagram and event out, then sleep until
//! [`Node::poll_timeout`] and call [`Node::handle_timeout`].
//!
//! ```
//! use grapevine::{Config, Event, Instant, Node, NodeId};
//! use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
//!
//! type Core = Node<u32, ChaCha8Rng>;
//!
//! /// Runs the nodes (node `i` has address `i + 1`) until `until`, carrying every
//! /// datagram at once, and collects the events.
//! fn run(nodes: &mut [Core], now: &mut Instant, until: Instant, events: &mut Vec<Event<u32>>) {
//!     while *now < until {
//!         loop {
//!             let mut in_flight = Vec::new();
//!             for node in nodes.iter_mut() {
//!                 let from = node.id().addr;
//!                 while let Some(t) = node.poll_transmit() {
//!                     in_flight.push((from, t));
//!                 }
//!                 events.extend(std::iter::from_fn(|| node.poll_event()));
//!             }
//!             if in_flight.is_empty() {
//!                 break;
//!             }
//!             for (from, t) in in_flight {
//!                 let to = &mut nodes[t.dest as usize - 1];
//!                 to.handle_packet(*now, from, &t.payload).expect("a well-formed datagram");
//!             }
//!         }
//!         // Sleep until the soonest deadline, then let the due timers fire.
//!         *now = nodes.iter().filter_map(Node::poll_timeout).min().unwrap_or(until);
//!         for node in nodes.iter_mut() {
//!             node.handle_timeout(*now);
//!         }
//!     }
//! }
//!
//! let config = Config::lan("example");
//! let rng = |seed| ChaCha8Rng::seed_from_u64(seed);
//! let mut nodes = [
//!     Core::new(config.clone(), NodeId::new(1, 1), rng(1)).unwrap(),
//!     Core::new(config, NodeId::new(2, 1), rng(2)).unwrap(),
//! ];
//! let (mut now, mut events) = (Instant::ZERO, Vec::new());
//! nodes[0].join(now, []); // the first node starts the cluster
//! nodes[1].join(now, [1]); // the second joins through it
//! run(&mut nodes, &mut now, Instant::from_secs(3), &mut events);
//! assert!(events.contains(&Event::MemberJoined(NodeId::new(2, 1))));
//! assert_eq!((nodes[0].live_members(), nodes[1].live_members()), (1, 1));
//!
//! // Node 2 writes a key of its own state; gossip brings it to node 1.
//! nodes[1].set(now, "greeting", b"hello").unwrap();
//! let later = now + grapevine::Duration::from_secs(2);
//! run(&mut nodes, &mut now, later, &mut events);
//! assert_eq!(nodes[0].get(&2, "greeting"), Some(&b"hello"[..]));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

extern crate alloc;

mod anti_entropy;
mod chunked;
pub mod config;
mod dissemination;
pub mod dump;
pub mod event;
mod failure_detector;
pub mod hash;
pub mod keyring;
pub mod membership;
pub mod node;
mod outbox;
pub mod placement;
pub mod routing;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod time;
mod transfer;
pub mod wire;
// The `arbitrary` derives name `::std`; the fuzzing helpers need it too.
#[cfg(feature = "arbitrary")]
extern crate std;
#[cfg(feature = "arbitrary")]
pub mod fuzzing;

pub use config::{Config, ConfigError};
pub use core::time::Duration;
pub use dump::Dump;
pub use event::Event;
pub use keyring::{Key, Keyring, KeyringError};
pub use membership::{Address, MemberClaim, MemberInfo, NodeId, Status};
pub use node::{Node, Transmit};
pub use placement::{
    LocalPlacement, Location, Owner, PlacementRecord, RemoveError, Replication, RestoreError,
    Topology,
};
pub use placement::{Ring, Token, token_for};
pub use routing::{Replica, ReplicaSet, RequestError, RequestFailure, RequestId, RespondError};
pub use snapshot::SnapshotError;
pub use state::StateError;
pub use stats::{Drops, Stats};
pub use time::Instant;
pub use wire::PacketError;

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>() {}

    #[test]
    fn node_is_send_and_event_is_small() {
        is_send::<Node<u32, rand_chacha::ChaCha8Rng>>();
        // Events are moved through queues and channels; keep them a few words.
        assert!(core::mem::size_of::<Event<core::net::SocketAddr>>() <= 96);
    }
}
