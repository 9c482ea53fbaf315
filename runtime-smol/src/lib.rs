//! Grapevine on smol.
//!
//! [`spawn`] binds an `Async<UdpSocket>` and starts one task on smol's global
//! executor that owns the node's [`Driver`]. The task races
//! the socket, a [`Timer`] at the core's next deadline and a command channel, and
//! drains the core's outputs after each wake-up.
//!
//! Its siblings are `grapevine-std` and `grapevine-tokio`, over the sans-IO core
//! `grapevine` (whose front page drives a node by hand). None of the three depends
//! on another: what they share (options, errors, commands, snapshots, event filters,
//! metrics, the driver and the [`Handle`] itself) lives in [`grapevine_driver`],
//! re-exported here. A request's
//! answer is a [`Pending`] future: `.await` it (or `.wait()` for it outside async code).
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
//! application (a task that answers [`Event::Request`]).
//!
//! ```
//! use std::future::Future;
//! use std::time::Duration;
//! use grapevine_smol::{Config, Event, Handle, Options, RuntimeError};
//! use smol::Timer;
//! use smol::future::FutureExt;
//!
//! /// `f`, or a panic after ten seconds.
//! async fn in_time<T>(what: &str, f: impl Future<Output = T>) -> T {
//!     let late = async {
//!         Timer::after(Duration::from_secs(10)).await;
//!         None
//!     };
//!     async { Some(f.await) }.or(late).await.unwrap_or_else(|| panic!("{what} late"))
//! }
//!
//! # fn main() -> Result<(), RuntimeError> {
//! # smol::block_on(async {
//! let mut config = Config::lan("example");
//! config.probe_interval = Duration::from_millis(100);
//! config.probe_timeout = Duration::from_millis(50);
//! config.gossip_interval = Duration::from_millis(50);
//! config.replication_factor = 1;
//! let options = Options::new("127.0.0.1:0".parse().unwrap()).config(config);
//! let first = grapevine_smol::spawn(options.clone())?;
//! let nodes: Vec<Handle> = vec![
//!     first.clone(),
//!     grapevine_smol::spawn(options.clone().seed(first.local_addr()))?,
//!     grapevine_smol::spawn(options.seed(first.local_addr()))?,
//! ];
//! // Each node's application answers the requests it is given.
//! for node in &nodes {
//!     let (node, requests) = (node.clone(), node.events());
//!     smol::spawn(async move {
//!         while let Some(event) = requests.recv().await {
//!             if let Event::Request { id, .. } = event {
//!                 let answer = format!("served by {}", node.local_addr());
//!                 let _ = node.respond(id, answer.into_bytes()).await;
//!             }
//!         }
//!     })
//!     .detach();
//! }
//! for node in &nodes {
//!     in_time("ready", node.ready()).await?;
//! }
//!
//! // Each node writes only its own state; every node reads everyone's.
//! nodes[0].set("greeting", b"hello").await?;
//! let read = async {
//!     while nodes[2].get(first.local_addr(), "greeting").await?.is_none() {
//!         Timer::after(Duration::from_millis(10)).await;
//!     }
//!     Ok::<_, RuntimeError>(())
//! };
//! in_time("the key", read).await?;
//!
//! // A request for a key, sent through a node that does not hold it: it is
//! // forwarded to the key's first live natural replica.
//! let mut key = Vec::new();
//! for i in 0.. {
//!     key = format!("user/{i}").into_bytes();
//!     if nodes[1].route(&key).await?.owner() != Some(nodes[1].id()) {
//!         break;
//!     }
//! }
//! let answers = nodes[1].events();
//! let id = nodes[1].request(&key, b"ping".to_vec()).await?;
//! let answer = async {
//!     loop {
//!         match answers.recv().await {
//!             Some(Event::Response { id: got, from, payload }) if got == id => {
//!                 println!("{}", String::from_utf8_lossy(&payload));
//!                 break from;
//!             }
//!             Some(_) => {}
//!             None => panic!("the node stopped"),
//!         }
//!     }
//! };
//! let served_by = in_time("the answer", answer).await;
//! assert_eq!(Some(&served_by), nodes[1].route(&key).await?.owner());
//!
//! // Each shutdown returns once its leave is spread.
//! for node in nodes {
//!     node.shutdown().await?;
//! }
//! # Ok(())
//! # })
//! # }
//! ```

use std::io;
use std::net::{SocketAddr, UdpSocket};

use grapevine_driver::{Clock, Command, Driver, RECV_BUFFER_SIZE};
use smol::channel::{self, Receiver};
use smol::future::FutureExt;
use smol::{Async, Timer};

pub use grapevine_driver::{
    Config, Event, EventFilter, Events, Handle, JoinRetry, Key, Keyring, KeysSnapshot, Location,
    Member, NodeId, Options, Ownership, Pending, PlacementStore, RecvTimeoutError, RequestId,
    Resolver, RingSnapshot, Route, RouteReplica, RuntimeError, StatsSnapshot, Status, Topology,
};

/// Binds the socket, starts the node's task on smol's global executor and joins
/// `options.seeds`.
///
/// Returns once the socket is bound, so a bad address or a port in use is an error here.
pub fn spawn(options: Options) -> Result<Handle, RuntimeError> {
    let std_socket = options.bind_socket()?;
    let local_addr = std_socket.local_addr()?;
    let socket = Async::new(std_socket)?;
    let driver = Driver::new(&options, local_addr, Clock::new())?;
    let (commands, rx) = channel::unbounded();
    let handle = Handle::new(&driver, move |command| {
        commands
            .try_send(command)
            .map_err(|_| RuntimeError::Stopped)
    });
    smol::spawn(run(driver, rx, socket)).detach();
    Ok(handle)
}

enum Wake {
    Datagram(io::Result<(usize, SocketAddr)>),
    Command(Option<Command>),
    Deadline,
}

/// The task. The socket is the last parameter, so it is closed before the driver is
/// dropped and answers whoever waits for the node to stop.
async fn run(mut driver: Driver, commands: Receiver<Command>, socket: Async<UdpSocket>) {
    let mut buf = vec![0u8; RECV_BUFFER_SIZE];
    let mut open = true;
    loop {
        driver.handle_timeout();
        driver.flush(|dest, payload| socket.get_ref().send_to(payload, dest).map(drop));
        if driver.is_done() {
            break;
        }
        let mut timer = match driver.deadline() {
            Some(at) => Timer::at(at),
            None => Timer::never(),
        };
        let datagram = async { Wake::Datagram(socket.recv_from(&mut buf).await) };
        let command = async {
            if open {
                Wake::Command(commands.recv().await.ok())
            } else {
                std::future::pending().await
            }
        };
        let deadline = async {
            (&mut timer).await;
            Wake::Deadline
        };
        let wake = datagram.or(command).or(deadline).await;
        match wake {
            Wake::Datagram(Ok((len, from))) => driver.handle_datagram(from, &buf[..len]),
            Wake::Datagram(Err(error)) => driver.handle_recv_error(&error),
            Wake::Command(Some(command)) => driver.handle_command(command),
            Wake::Command(None) => {
                open = false;
                driver.handle_commands_closed();
            }
            Wake::Deadline => {}
        }
    }
    tracing::debug!(node = %driver.id().addr, "node stopped");
}
