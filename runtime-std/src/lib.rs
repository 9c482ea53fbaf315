//! Grapevine on a blocking [`std::net::UdpSocket`], driven by one thread.
//!
//! [`spawn`] binds the socket, starts a thread that owns the [`grapevine_driver::Driver`]
//! (and through it the core node) and returns a [`Handle`]. The thread's loop is the
//! whole runtime: it blocks in `recv_from` with the socket's read timeout set from the
//! core's next deadline, hands each datagram or expired timer to the driver, and drains
//! the core's outputs. Commands from the handle travel on a channel and wake the loop
//! with an empty local datagram.
//!
//! Its siblings are `grapevine-tokio` and `grapevine-smol`, over the sans-IO core
//! `grapevine` (whose front page drives a node by hand). None of the three depends
//! on another: what they share (options, errors, commands, snapshots, event filters,
//! metrics, the driver and the [`Handle`] itself) lives in [`grapevine_driver`],
//! re-exported here. On this
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
//! # Example: a 3-node cluster
//!
//! Three nodes on loopback (short timers, so it runs in a moment; use
//! [`Config::lan`] in production), a key set on one node and read on another, and a
//! request routed through a node that is not a replica. With a replication factor of
//! 1 each key has one natural replica: the request is served there, by that node's
//! application (a thread that answers [`Event::Request`]).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use grapevine_std::{Config, Event, Handle, Options};
//!
//! # fn main() -> Result<(), grapevine_std::RuntimeError> {
//! let mut config = Config::lan("example");
//! config.probe_interval = Duration::from_millis(100);
//! config.probe_timeout = Duration::from_millis(50);
//! config.gossip_interval = Duration::from_millis(50);
//! config.replication_factor = 1;
//! let options = Options::new("127.0.0.1:0".parse().unwrap()).config(config);
//! let first = grapevine_std::spawn(options.clone())?;
//! let nodes: Vec<Handle> = vec![
//!     first.clone(),
//!     grapevine_std::spawn(options.clone().seed(first.local_addr()))?,
//!     grapevine_std::spawn(options.seed(first.local_addr()))?,
//! ];
//! // Each node's application answers the requests it is given.
//! for node in &nodes {
//!     let (node, requests) = (node.clone(), node.events());
//!     std::thread::spawn(move || {
//!         for event in requests {
//!             if let Event::Request { id, .. } = event {
//!                 let answer = format!("served by {}", node.local_addr());
//!                 let _ = node.respond(id, answer.into_bytes()).wait();
//!             }
//!         }
//!     });
//! }
//! for node in &nodes {
//!     node.ready().wait_timeout(Duration::from_secs(10)).expect("ready in time")?;
//! }
//!
//! // Each node writes only its own state; every node reads everyone's.
//! nodes[0].set("greeting", b"hello").wait()?;
//! let deadline = Instant::now() + Duration::from_secs(10);
//! while nodes[2].get(first.local_addr(), "greeting").wait()?.is_none() {
//!     assert!(Instant::now() < deadline, "gossip brings the key");
//!     std::thread::sleep(Duration::from_millis(10));
//! }
//!
//! // A request for a key, sent through a node that does not hold it: it is
//! // forwarded to the key's first live natural replica.
//! let key = (0..)
//!     .map(|i| format!("user/{i}").into_bytes())
//!     .find(|key| {
//!         let route = nodes[1].route(key).wait().unwrap();
//!         route.owner() != Some(nodes[1].id())
//!     })
//!     .unwrap();
//! let answers = nodes[1].events();
//! let id = nodes[1].request(&key, b"ping".to_vec()).wait()?;
//! let served_by = loop {
//!     match answers.recv_timeout(Duration::from_secs(10)) {
//!         Ok(Event::Response { id: got, from, payload }) if got == id => {
//!             println!("{}", String::from_utf8_lossy(&payload));
//!             break from;
//!         }
//!         Ok(_) => {}
//!         Err(e) => panic!("no answer: {e}"),
//!     }
//! };
//! assert_eq!(Some(&served_by), nodes[1].route(&key).wait()?.owner());
//!
//! // Each shutdown returns once its leave is spread.
//! for node in nodes {
//!     node.shutdown().wait()?;
//! }
//! # Ok(())
//! # }
//! ```

mod runtime;

pub use grapevine_driver::{
    Clock, Config, Event, EventFilter, Events, Handle, JoinRetry, Key, Keyring, KeysSnapshot,
    Location, Member, NodeId, Options, Ownership, Pending, PlacementStore, RecvTimeoutError,
    RequestId, Resolver, RingSnapshot, Route, RouteReplica, RuntimeError, StatsSnapshot, Status,
    Topology,
};
pub use runtime::spawn;
