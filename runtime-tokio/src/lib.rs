//! Grapevine on tokio.
//!
//! [`spawn`] binds a [`tokio::net::UdpSocket`] and starts one task that owns the
//! node's [`Driver`]. The task selects over the socket, `sleep_until` the core's
//! next deadline and a command channel, and drains the core's outputs after each
//! wake-up.
//!
//! Its siblings are `grapevine-std` and `grapevine-smol`, over the sans-IO core
//! `grapevine` (whose front page drives a node by hand). None of the three depends
//! on another: what they share (options, errors, commands, snapshots, event filters,
//! metrics, the driver and the [`Handle`] itself) lives in [`grapevine_driver`],
//! re-exported here. A request's
//! answer is a [`Pending`] future: `.await` it (or `.wait()` for it outside the
//! runtime's threads).
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
//! use std::time::Duration;
//! use grapevine_tokio::{Config, Event, Handle, Options, RuntimeError};
//! use tokio::time::{sleep, timeout};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), RuntimeError> {
//! const LIMIT: Duration = Duration::from_secs(10);
//! let mut config = Config::lan("example");
//! config.probe_interval = Duration::from_millis(100);
//! config.probe_timeout = Duration::from_millis(50);
//! config.gossip_interval = Duration::from_millis(50);
//! config.replication_factor = 1;
//! let options = Options::new("127.0.0.1:0".parse().unwrap()).config(config);
//! let first = grapevine_tokio::spawn(options.clone())?;
//! let nodes: Vec<Handle> = vec![
//!     first.clone(),
//!     grapevine_tokio::spawn(options.clone().seed(first.local_addr()))?,
//!     grapevine_tokio::spawn(options.seed(first.local_addr()))?,
//! ];
//! // Each node's application answers the requests it is given.
//! for node in &nodes {
//!     let (node, requests) = (node.clone(), node.events());
//!     tokio::spawn(async move {
//!         while let Some(event) = requests.recv().await {
//!             if let Event::Request { id, .. } = event {
//!                 let answer = format!("served by {}", node.local_addr());
//!                 let _ = node.respond(id, answer.into_bytes()).await;
//!             }
//!         }
//!     });
//! }
//! for node in &nodes {
//!     timeout(LIMIT, node.ready()).await.expect("ready in time")?;
//! }
//!
//! // Each node writes only its own state; every node reads everyone's.
//! nodes[0].set("greeting", b"hello").await?;
//! let read = async {
//!     while nodes[2].get(first.local_addr(), "greeting").await?.is_none() {
//!         sleep(Duration::from_millis(10)).await;
//!     }
//!     Ok::<_, RuntimeError>(())
//! };
//! timeout(LIMIT, read).await.expect("gossip brings the key")?;
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
//! let served_by = timeout(LIMIT, answer).await.expect("an answer");
//! assert_eq!(Some(&served_by), nodes[1].route(&key).await?.owner());
//!
//! // Each shutdown returns once its leave is spread.
//! for node in nodes {
//!     node.shutdown().await?;
//! }
//! # Ok(())
//! # }
//! ```

use grapevine_driver::{Clock, Command, Driver, RECV_BUFFER_SIZE};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub use grapevine_driver::{
    Config, Event, EventFilter, Events, Handle, JoinRetry, Key, Keyring, KeysSnapshot, Location,
    Member, NodeId, Options, Ownership, Pending, PlacementStore, RecvTimeoutError, RequestId,
    Resolver, RingSnapshot, Route, RouteReplica, RuntimeError, StatsSnapshot, Status, Topology,
};

/// Binds the socket, starts the node's task and joins `options.seeds`.
///
/// Returns once the socket is bound, so a bad address or a port in use is an error
/// here. Must be called from within a Tokio runtime (like [`tokio::spawn`]).
pub fn spawn(options: Options) -> Result<Handle, RuntimeError> {
    let std_socket = options.bind_socket()?;
    std_socket.set_nonblocking(true)?;
    let local_addr = std_socket.local_addr()?;
    // Sends go straight to the (non-blocking) socket: a datagram the kernel cannot
    // queue is dropped and counted, as UDP would anyway, and no send ever waits for
    // the reactor to report writability.
    let sender = std_socket.try_clone()?;
    let socket = UdpSocket::from_std(std_socket)?;
    let driver = Driver::new(&options, local_addr, Clock::new())?;
    let (commands, rx) = mpsc::unbounded_channel();
    let handle = Handle::new(&driver, move |command| {
        commands.send(command).map_err(|_| RuntimeError::Stopped)
    });
    tokio::spawn(run(driver, rx, sender, socket));
    Ok(handle)
}

/// The task. The sockets are the last parameters, so they are closed before the
/// driver is dropped and answers whoever waits for the node to stop.
async fn run(
    mut driver: Driver,
    mut commands: mpsc::UnboundedReceiver<Command>,
    sender: std::net::UdpSocket,
    socket: UdpSocket,
) {
    let mut buf = vec![0u8; RECV_BUFFER_SIZE];
    let mut open = true;
    loop {
        driver.handle_timeout();
        driver.flush(|dest, payload| sender.send_to(payload, dest).map(drop));
        if driver.is_done() {
            break;
        }
        let deadline = driver.deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => driver.handle_datagram(from, &buf[..len]),
                Err(error) => driver.handle_recv_error(&error),
            },
            command = commands.recv(), if open => match command {
                Some(command) => driver.handle_command(command),
                None => {
                    open = false;
                    driver.handle_commands_closed();
                }
            },
            () = sleep_until(deadline) => {}
        }
    }
    tracing::debug!(node = %driver.id().addr, "node stopped");
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
