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
