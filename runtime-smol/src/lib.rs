//! Grapevine on smol.
//!
//! [`spawn`] binds an `Async<UdpSocket>` and starts one task on smol's global
//! executor that owns the node's [`Driver`]. The task races
//! the socket, a [`Timer`] at the core's next deadline and a command channel, and
//! drains the core's outputs after each wake-up.
//!
//! Its siblings are `grapevine-std` and `grapevine-tokio`. None of the three depends
//! on another: what they share (options, errors, commands, snapshots, the driver and
//! the [`Handle`] itself) lives in `grapevine-driver`, re-exported here. A request's
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
//! # Example
//!
//! Start a node, join a seed and print membership events:
//!
//! ```
//! use std::time::Duration;
//! use grapevine_smol::{Event, Options};
//! use smol::future::FutureExt;
//!
//! # fn main() -> Result<(), grapevine_smol::RuntimeError> {
//! smol::block_on(async {
//!     let local = "127.0.0.1:0".parse().unwrap();
//!     // A seed to join (normally another process).
//!     let seed = grapevine_smol::spawn(Options::new(local))?;
//!
//!     let node = grapevine_smol::spawn(Options::new(local).seed(seed.local_addr()))?;
//!     let events = node.events();
//!     let timeout = || async {
//!         smol::Timer::after(Duration::from_secs(5)).await;
//!         None
//!     };
//!     while let Some(event) = events.recv().or(timeout()).await {
//!         match event {
//!             Event::MemberJoined(id) => {
//!                 println!("{} joined", id.addr);
//!                 break;
//!             }
//!             Event::MemberDied(id) => println!("{} died", id.addr),
//!             Event::MemberLeft(id) => println!("{} left", id.addr),
//!             _ => {}
//!         }
//!     }
//!     println!("{} members", node.members().await?.len());
//!     node.shutdown().await?;
//!     seed.shutdown().await
//! })
//! # }
//! ```

use std::io;
use std::net::{SocketAddr, UdpSocket};

use grapevine_driver::{Clock, Command, Driver, RECV_BUFFER_SIZE};
use smol::channel::{self, Receiver};
use smol::future::FutureExt;
use smol::{Async, Timer};

pub use grapevine_driver::{
    Config, Event, Events, Handle, JoinRetry, Key, Keyring, KeysSnapshot, Location, Member, NodeId,
    Options, Ownership, Pending, PlacementStore, RecvTimeoutError, RequestId, Resolver,
    RingSnapshot, Route, RouteReplica, RuntimeError, StatsSnapshot, Status, Topology,
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
