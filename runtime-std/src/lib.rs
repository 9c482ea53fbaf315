//! Grapevine on a blocking [`std::net::UdpSocket`], driven by one thread.
//!
//! [`spawn`] binds the socket, starts a thread that owns the [`grapevine::Node`] and
//! returns a [`Handle`]. The thread's loop is the whole runtime: it blocks in
//! `recv_from` with the socket's read timeout set from the core's next deadline,
//! hands each datagram or expired timer to the core, and drains the core's outputs
//! (see [`driver::Driver`]). Commands from the handle travel on a channel and wake
//! the loop with an empty local datagram.
//!
//! The [`driver`] module is shared with `grapevine-tokio` and `grapevine-smol`: the
//! clock mapping, [`Options`], [`RuntimeError`], the [`Command`] enum, the
//! [`Member`]/[`StatsSnapshot`]/[`Route`] snapshots and the [`Driver`] live here, so
//! the three runtimes have one API shape and no protocol code of their own.
//!
//! # Example
//!
//! Start a node, join a seed and print membership events:
//!
//! ```
//! use std::time::Duration;
//! use grapevine_std::{Event, Options};
//!
//! # fn main() -> Result<(), grapevine_std::RuntimeError> {
//! let local = "127.0.0.1:0".parse().unwrap();
//! // A seed to join (normally another process).
//! let seed = grapevine_std::spawn(Options::new(local))?;
//!
//! let node = grapevine_std::spawn(Options::new(local).seed(seed.local_addr()))?;
//! let events = node.events();
//! while let Ok(event) = events.recv_timeout(Duration::from_secs(5)) {
//!     match event {
//!         Event::MemberJoined(id) => {
//!             println!("{} joined", id.addr);
//!             break;
//!         }
//!         Event::MemberDied(id) => println!("{} died", id.addr),
//!         Event::MemberLeft(id) => println!("{} left", id.addr),
//!         _ => {}
//!     }
//! }
//! println!("{} members", node.members()?.len());
//! node.shutdown()?;
//! seed.shutdown()?;
//! # Ok(())
//! # }
//! ```

pub mod driver;
mod runtime;

pub use driver::{
    Clock, Command, Delivery, Driver, Event, EventSink, Member, NodeId, Options, Ownership,
    RECV_BUFFER_SIZE, RecvTimeoutError, Reply, RingSnapshot, Route, RouteReplica, RuntimeError,
    StatsSnapshot,
};
pub use grapevine::{Config, MemberState, RequestId};
pub use runtime::{Events, Handle, spawn};

/// The async handle's request methods, shared by `grapevine-tokio` and `grapevine-smol`
/// so that the two expose one API and neither copies the other. Each expands inside an
/// `impl Handle` that provides `fn send(&self, Command)`, `async fn call(...)` over its
/// own reply channel, and `inner.id`.
#[doc(hidden)]
#[macro_export]
macro_rules! async_handle_methods {
    () => {
        /// The node's identity (its bound address and generation).
        pub fn id(&self) -> &$crate::NodeId {
            &self.inner.id
        }

        /// The node's bound UDP address.
        pub fn local_addr(&self) -> ::std::net::SocketAddr {
            self.inner.id.addr
        }

        /// Joins more seeds.
        pub fn join(
            &self,
            seeds: impl IntoIterator<Item = ::std::net::SocketAddr>,
        ) -> Result<(), $crate::RuntimeError> {
            self.send($crate::Command::Join(seeds.into_iter().collect()))
        }

        /// Sets `key` in this node's state; gossip spreads it.
        pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), $crate::RuntimeError> {
            self.call(|reply| $crate::Command::Set {
                key: key.to_owned(),
                value: value.to_vec(),
                reply,
            })
            .await?
        }

        /// Deletes `key` from this node's state.
        pub async fn delete(&self, key: &str) -> Result<(), $crate::RuntimeError> {
            self.call(|reply| $crate::Command::Delete {
                key: key.to_owned(),
                reply,
            })
            .await?
        }

        /// Reads `key` of the node at `node`, as this node knows it.
        pub async fn get(
            &self,
            node: ::std::net::SocketAddr,
            key: &str,
        ) -> Result<Option<Vec<u8>>, $crate::RuntimeError> {
            self.call(|reply| $crate::Command::Get {
                node,
                key: key.to_owned(),
                reply,
            })
            .await
        }

        /// Sends a client request for `key` through this node. The answer arrives on the
        /// event subscribers as [`Event::Response`] (or [`Event::RequestFailed`]) with the
        /// returned id.
        pub async fn request(
            &self,
            key: &[u8],
            payload: Vec<u8>,
        ) -> Result<$crate::RequestId, $crate::RuntimeError> {
            self.call(|reply| $crate::Command::Request {
                key: key.to_vec(),
                payload,
                reply,
            })
            .await?
        }

        /// Answers an [`Event::Request`] this node received.
        pub async fn respond(
            &self,
            id: $crate::RequestId,
            payload: Vec<u8>,
        ) -> Result<(), $crate::RuntimeError> {
            self.call(|reply| $crate::Command::Respond { id, payload, reply })
                .await?
        }

        /// Every member this node knows, itself and tombstones included.
        pub async fn members(&self) -> Result<Vec<$crate::Member>, $crate::RuntimeError> {
            self.call($crate::Command::Members).await
        }

        /// The node's counters.
        pub async fn stats(&self) -> Result<$crate::StatsSnapshot, $crate::RuntimeError> {
            self.call($crate::Command::Stats).await
        }

        /// The token ring as this node sees it: tokens and each node's exact share.
        pub async fn ring(&self) -> Result<$crate::RingSnapshot, $crate::RuntimeError> {
            self.call($crate::Command::Ring).await
        }

        /// Where `key` routes, as this node sees the ring.
        pub async fn route(&self, key: &[u8]) -> Result<$crate::Route, $crate::RuntimeError> {
            self.call(|reply| $crate::Command::Route {
                key: key.to_vec(),
                reply,
            })
            .await
        }
    };
}
