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
//! Runtimes for std, tokio and smol live in sibling crates.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

extern crate alloc;

mod anti_entropy;
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
    LocalPlacement, Location, Owner, PlacementRecord, RING_KEY, RemoveError, Replication,
    RestoreError, Topology,
};
pub use placement::{Ring, Token, token_for};
pub use routing::{Replica, ReplicaSet, RequestError, RequestFailure, RequestId, RespondError};
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
