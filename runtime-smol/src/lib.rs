//! Grapevine on smol.
//!
//! [`spawn`] binds an `Async<UdpSocket>` and starts one task on smol's global
//! executor that owns the [`grapevine::Node`]. The task races the socket, a
//! [`Timer`] at the core's next deadline and a command channel, and drains the
//! core's outputs after each wake-up. Everything else (clock mapping, options,
//! errors, commands, snapshots, the [`Driver`]) is shared with `grapevine-std`, so
//! the API is the same as [`grapevine_std`]'s with `async` methods.
//!
//! # Example
//!
//! Start a node, join a seed and print membership events:
//!
//! ```
//! use std::time::Duration;
//! use grapevine_smol::{Event, Options};
//!
//! # fn main() -> Result<(), grapevine_smol::RuntimeError> {
//! smol::block_on(async {
//!     let local = "127.0.0.1:0".parse().unwrap();
//!     // A seed to join (normally another process).
//!     let seed = grapevine_smol::spawn(Options::new(local))?;
//!
//!     let node = grapevine_smol::spawn(Options::new(local).seed(seed.local_addr()))?;
//!     let events = node.events();
//!     while let Ok(event) = events.recv_timeout(Duration::from_secs(5)).await {
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
use std::sync::Arc;
use std::time::Duration;

use grapevine_std::driver::RECV_BUFFER_SIZE;
use smol::channel::{self, Receiver, Sender, TrySendError};
use smol::future::FutureExt;
use smol::{Async, Timer};

pub use grapevine::{Config, MemberState, RequestId};
pub use grapevine_std::{
    Clock, Command, Driver, Event, Member, NodeId, Options, Ownership, RecvTimeoutError,
    RingSnapshot, Route, RouteReplica, RuntimeError, StatsSnapshot,
};
use grapevine_std::{Delivery, EventSink, Reply};

/// Binds the socket, starts the node's task on smol's global executor and joins
/// `options.seeds`.
///
/// Returns once the socket is bound, so a bad address or a port in use is an error here.
pub fn spawn(options: Options) -> Result<Handle, RuntimeError> {
    let std_socket = options.bind_socket()?;
    let local_addr = std_socket.local_addr()?;
    let socket = Async::new(std_socket)?;
    let driver = Driver::new(&options, local_addr, Clock::new())?;
    let id = driver.id().clone();
    let (commands, rx) = channel::unbounded();
    let (done_tx, done) = channel::bounded::<()>(1);
    smol::spawn(async move {
        run(driver, socket, rx).await;
        drop(done_tx);
    })
    .detach();
    Ok(Handle {
        inner: Arc::new(Inner {
            commands,
            id,
            event_capacity: options.event_capacity,
            done,
        }),
    })
}

enum Wake {
    Datagram(io::Result<(usize, SocketAddr)>),
    Command(Option<Command>),
    Deadline,
}

async fn run(mut driver: Driver, socket: Async<UdpSocket>, commands: Receiver<Command>) {
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

#[derive(Debug)]
struct Inner {
    commands: Sender<Command>,
    id: NodeId,
    event_capacity: usize,
    done: Receiver<()>,
}

/// A handle to a running node. Cheap to clone; when every clone is dropped the node
/// leaves gracefully and stops in the background.
#[derive(Clone, Debug)]
pub struct Handle {
    inner: Arc<Inner>,
}

impl Handle {
    fn send(&self, command: Command) -> Result<(), RuntimeError> {
        self.inner
            .commands
            .try_send(command)
            .map_err(|_| RuntimeError::Stopped)
    }

    async fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, RuntimeError> {
        let (tx, rx) = channel::bounded(1);
        self.send(make(Reply::new(move |value| {
            let _ = tx.try_send(value);
        })))?;
        rx.recv().await.map_err(|_| RuntimeError::Stopped)
    }

    grapevine_std::async_handle_methods!();

    /// Subscribes to the node's events from now on; the first subscriber also gets
    /// the events raised since the node started, so nothing is missed between
    /// [`spawn`] and the first call. Each subscriber has its own bounded queue
    /// ([`Options::event_capacity`]); when it is full, new events are dropped for
    /// that subscriber and counted in [`StatsSnapshot::events_dropped`].
    pub fn events(&self) -> Events {
        let (tx, rx) = channel::bounded(self.inner.event_capacity);
        let sink = EventSink::new(move |event: &Event| match tx.try_send(event.clone()) {
            Ok(()) => Delivery::Delivered,
            Err(TrySendError::Full(_)) => Delivery::Full,
            Err(TrySendError::Closed(_)) => Delivery::Closed,
        });
        // If the node has stopped the receiver just ends at once.
        let _ = self.send(Command::Subscribe(sink));
        Events { rx }
    }

    /// Leaves gracefully (peers see "left", not "dead"), keeps running for the leave
    /// timeout so the rumour spreads, and waits for the task to end.
    pub async fn shutdown(self) -> Result<(), RuntimeError> {
        let _ = self.send(Command::Leave);
        let _ = self.inner.done.recv().await;
        Ok(())
    }

    /// Stops at once without leaving, as if the process crashed: peers detect the
    /// node as failed. Waits for the task to end.
    pub async fn abort(self) -> Result<(), RuntimeError> {
        let _ = self.send(Command::Abort);
        let _ = self.inner.done.recv().await;
        Ok(())
    }
}

/// A subscription to a node's events, from [`Handle::events`].
#[derive(Debug)]
pub struct Events {
    rx: Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the node has stopped.
    pub async fn recv(&self) -> Option<Event> {
        self.rx.recv().await.ok()
    }

    /// The next event, waiting at most `timeout`.
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let timer = async {
            Timer::after(timeout).await;
            Err(RecvTimeoutError::Timeout)
        };
        async { self.rx.recv().await.map_err(|_| RecvTimeoutError::Closed) }
            .or(timer)
            .await
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// The next event, blocking the thread (for use outside async code).
    pub fn blocking_recv(&self) -> Option<Event> {
        self.rx.recv_blocking().ok()
    }
}
