//! Grapevine on tokio.
//!
//! [`spawn`] binds a [`tokio::net::UdpSocket`] and starts one task that owns the
//! node's [`Driver`]. The task selects over the socket, `sleep_until` the core's
//! next deadline and a command channel, and drains the core's outputs after each
//! wake-up.
//!
//! Its siblings are `grapevine-std` and `grapevine-smol`. None of the three depends
//! on another: what they share (options, errors, commands, snapshots, the driver and
//! the [`Handle`] itself) lives in `grapevine-driver`, re-exported here. A request's
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
//! # Example
//!
//! Start a node, join a seed and print membership events:
//!
//! ```
//! use std::time::Duration;
//! use grapevine_tokio::{Event, Options};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), grapevine_tokio::RuntimeError> {
//! let local = "127.0.0.1:0".parse().unwrap();
//! // A seed to join (normally another process).
//! let seed = grapevine_tokio::spawn(Options::new(local))?;
//!
//! let node = grapevine_tokio::spawn(Options::new(local).seed(seed.local_addr()))?;
//! let events = node.events();
//! while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
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
//! println!("{} members", node.members().await?.len());
//! node.shutdown().await?;
//! seed.shutdown().await?;
//! # Ok(())
//! # }
//! ```

use grapevine_driver::{Clock, Command, Driver, RECV_BUFFER_SIZE};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub use grapevine_driver::{
    Config, Event, Events, Handle, JoinRetry, Key, Keyring, KeysSnapshot, Location, Member, NodeId,
    Options, Ownership, Pending, PlacementStore, RecvTimeoutError, RequestId, Resolver,
    RingSnapshot, Route, RouteReplica, RuntimeError, StatsSnapshot, Status, Topology,
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
