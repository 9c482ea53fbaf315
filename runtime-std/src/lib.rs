//! Grapevine on a blocking [`std::net::UdpSocket`], driven by one thread.
//!
//! [`spawn`] binds the socket, starts a thread that owns the [`grapevine_driver::Driver`]
//! (and through it the core node) and returns a [`Handle`]. The thread's loop is the
//! whole runtime: it blocks in `recv_from` with the socket's read timeout set from the
//! core's next deadline, hands each datagram or expired timer to the driver, and drains
//! the core's outputs. Commands from the handle travel on a channel and wake the loop
//! with an empty local datagram.
//!
//! Its siblings are `grapevine-tokio` and `grapevine-smol`. None of the three depends
//! on another: what they share (options, errors, commands, snapshots, the driver and
//! the [`Handle`] itself) lives in `grapevine-driver`, re-exported here. On this
//! runtime, call [`Pending::wait`] on a request's answer (async code may `.await` it).
//!
//! # Identity, placement and readiness
//!
//! Give a node [`Options::data_dir`] (and optionally [`Options::name`] and
//! [`Options::location`]) and it keeps its name and tokens in `placement.json` there:
//! a restart takes back exactly its tokens and moves no data, and a directory of
//! another cluster or a corrupt file is refused at `spawn`. Right after `spawn` the
//! node is still joining: wait for [`Handle::ready`] before sending requests.
//! [`Handle::shutdown`] stops it keeping its ranges; [`Handle::decommission`] hands
//! them over first; [`Handle::remove_node`] removes a dead member by name.
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
//! println!("{} members", node.members().wait()?.len());
//! node.shutdown().wait()?;
//! seed.shutdown().wait()?;
//! # Ok(())
//! # }
//! ```

mod runtime;

pub use grapevine_driver::{
    Clock, Config, Event, Events, Handle, JoinRetry, Key, Keyring, KeysSnapshot, Location, Member,
    NodeId, Options, Ownership, Pending, PlacementStore, RecvTimeoutError, RequestId, Resolver,
    RingSnapshot, Route, RouteReplica, RuntimeError, StatsSnapshot, Status, Topology,
};
pub use runtime::spawn;
