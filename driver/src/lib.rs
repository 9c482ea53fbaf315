//! What the Grapevine runtimes share, in a crate that is not itself a runtime.
//!
//! The runtimes are siblings: `grapevine-std` (a thread on a blocking
//! `std::net::UdpSocket`), `grapevine-tokio` and `grapevine-smol` (one task each).
//! None depends on another; each depends on this crate and adds only its event loop
//! and its command channel. Here live:
//!
//! - [`Clock`]: the runtime's monotonic clock mapped to [`grapevine::Instant`];
//! - [`Options`] and [`RuntimeError`];
//! - [`keys`]: cluster keys as text and in key files, and their fingerprints;
//! - [`join`]: retrying the seeds with backoff, and re-resolving seeds given as host
//!   names off the loop;
//! - [`PlacementStore`]: the node's name, location and tokens in its data
//!   directory (`placement.json`), saved on every change and restored at start;
//! - [`Command`], with [`Reply`] and [`EventSink`]: what a handle asks of the loop;
//! - the snapshots a handle gets back: [`Member`], [`StatsSnapshot`], [`Route`],
//!   [`RingSnapshot`];
//! - the [`Driver`]: a [`grapevine::Node`] plus subscribers, counters and the leave
//!   timer, which a runtime's loop feeds with datagrams, commands and time;
//! - [`Handle`], the one client type every runtime returns from `spawn`: each request
//!   returns a [`Pending`] answer that async code `.await`s and threads `.wait()` for,
//!   and [`Handle::events`] returns [`Events`], read the same two ways;
//! - [`EventFilter`]: what a subscription sees ([`Handle::subscribe`]): the
//!   application's keys only unless it asks for the reserved `gv.` ones, the keys
//!   under a prefix, or members' liveness;
//! - metrics: the [`Driver`] records the node's figures through the
//!   [`metrics`](https://docs.rs/metrics) facade for whatever recorder the program
//!   installs (members by state, packets and bytes, drops by reason, probes,
//!   suspicions, deaths, rumour queue depth, local health, requests and their
//!   latency; every series labelled `node`); `grapevine node --metrics ADDR` serves
//!   them to Prometheus. Install the recorder before the node starts;
//! - [`Printable`]: keys and values made readable for logs.
//!
//! - the flight recorder ([`record`]) and its [`replay`]: every input the core
//!   receives, logged so that a run can be re-run byte for byte.
//!
//! Nothing here makes a protocol decision: the core does that.
//!
//! # Example
//!
//! A runtime cut down to its bones: a channel for commands, a driver, one turn of the
//! loop by hand.
//!
//! ```
//! use std::sync::mpsc;
//! use grapevine_driver::{Clock, Driver, Handle, Options, RuntimeError};
//!
//! # fn main() -> Result<(), RuntimeError> {
//! let options = Options::new("127.0.0.1:0".parse().unwrap());
//! let socket = options.bind_socket()?;
//! let mut driver = Driver::new(&options, socket.local_addr()?, Clock::new())?;
//! let (commands, inbox) = mpsc::channel();
//! let handle = Handle::new(&driver, move |command| {
//!     commands.send(command).map_err(|_| RuntimeError::Stopped)
//! });
//!
//! let members = handle.members(); // sent now, answered by the loop
//! // One turn of the loop: apply commands, fire due timers, drain the core.
//! while let Ok(command) = inbox.try_recv() {
//!     driver.handle_command(command);
//! }
//! driver.handle_timeout();
//! driver.flush(|dest, payload| socket.send_to(payload, dest).map(drop));
//!
//! let members = members.wait()?;
//! assert_eq!(members.len(), 1);
//! assert!(members[0].local);
//! # Ok(())
//! # }
//! ```

mod clock;
mod command;
mod driver;
pub mod dump;
mod filter;
mod handle;
pub mod join;
pub mod keys;
mod metrics;
mod options;
mod persist;
mod printable;
pub mod record;
pub mod replay;
mod snapshot;
mod sync;
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod test_support;

use std::net::SocketAddr;

pub use clock::Clock;
pub use command::{Command, Delivery, EventSink, Reply};
pub use driver::{Driver, ring_snapshot};
pub use filter::EventFilter;
pub use grapevine::{Config, Key, Keyring, LocalPlacement, Location, RequestId, Status, Topology};
pub use handle::{Events, Handle, Pending, Recv};
pub use join::{JoinRetry, Resolver};
pub use keys::{KeyChange, KeysSnapshot};
pub use options::{Options, RecvTimeoutError, RuntimeError};
pub use persist::{PLACEMENT_FILE, PlacementStore};
pub use printable::Printable;
pub use record::{KeyringChange, RecordOptions};
pub use snapshot::{
    Member, Ownership, RingSnapshot, Route, RouteReplica, StateEntry, StatsSnapshot,
};

/// A core event with socket addresses.
pub type Event = grapevine::Event<SocketAddr>;
/// A node identity with a socket address.
pub type NodeId = grapevine::NodeId<SocketAddr>;
/// The core node every runtime drives.
pub type CoreNode = grapevine::Node<SocketAddr, rand_chacha::ChaCha8Rng>;

/// The size of the buffer a runtime receives datagrams into: the largest UDP payload.
pub const RECV_BUFFER_SIZE: usize = 65_535;
