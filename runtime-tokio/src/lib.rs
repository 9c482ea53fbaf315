//! Grapevine on tokio.
//!
//! [`spawn`] binds a [`tokio::net::UdpSocket`] and starts one task that owns the
//! [`grapevine::Node`]. The task selects over the socket, `sleep_until` the core's
//! next deadline and a command channel, and drains the core's outputs after each
//! wake-up. Everything else (clock mapping, options, errors, commands, snapshots,
//! the [`Driver`]) is shared with `grapevine-std`, so the API is the same as
//! [`grapevine_std`]'s with `async` methods.
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
//! let mut events = node.events();
//! while let Ok(event) = events.recv_timeout(Duration::from_secs(5)).await {
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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use grapevine_std::driver::RECV_BUFFER_SIZE;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use grapevine::{Config, MemberState, RequestId};
pub use grapevine_std::{
    Clock, Command, Driver, Event, Member, NodeId, Options, Ownership, RecvTimeoutError,
    RingSnapshot, Route, RouteReplica, RuntimeError, StatsSnapshot,
};
use grapevine_std::{Delivery, EventSink, Reply};

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
    let id = driver.id().clone();
    let (commands, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(driver, socket, sender, rx));
    Ok(Handle {
        inner: Arc::new(Inner {
            commands,
            id,
            event_capacity: options.event_capacity,
            task: Mutex::new(Some(task)),
        }),
    })
}

async fn run(
    mut driver: Driver,
    socket: UdpSocket,
    sender: std::net::UdpSocket,
    mut commands: mpsc::UnboundedReceiver<Command>,
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

#[derive(Debug)]
struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    id: NodeId,
    event_capacity: usize,
    task: Mutex<Option<JoinHandle<()>>>,
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
            .send(command)
            .map_err(|_| RuntimeError::Stopped)
    }

    async fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(Reply::new(move |value| {
            let _ = tx.send(value);
        })))?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    grapevine_std::async_handle_methods!();

    /// Subscribes to the node's events from now on; the first subscriber also gets
    /// the events raised since the node started, so nothing is missed between
    /// [`spawn`] and the first call. Each subscriber has its own bounded queue
    /// ([`Options::event_capacity`]); when it is full, new events are dropped for
    /// that subscriber and counted in [`StatsSnapshot::events_dropped`].
    pub fn events(&self) -> Events {
        let (tx, rx) = mpsc::channel(self.inner.event_capacity);
        let sink = EventSink::new(move |event: &Event| match tx.try_send(event.clone()) {
            Ok(()) => Delivery::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
        });
        // If the node has stopped the receiver just ends at once.
        let _ = self.send(Command::Subscribe(sink));
        Events { rx }
    }

    /// Leaves gracefully (peers see "left", not "dead"), keeps running for the leave
    /// timeout so the rumour spreads, and waits for the task to end.
    pub async fn shutdown(self) -> Result<(), RuntimeError> {
        let _ = self.send(Command::Leave);
        self.join_task().await
    }

    /// Stops at once without leaving, as if the process crashed: peers detect the
    /// node as failed. Waits for the task to end.
    pub async fn abort(self) -> Result<(), RuntimeError> {
        let _ = self.send(Command::Abort);
        self.join_task().await
    }

    async fn join_task(self) -> Result<(), RuntimeError> {
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match task {
            Some(task) => task
                .await
                .map_err(|e| RuntimeError::Io(std::io::Error::other(e))),
            None => Ok(()),
        }
    }
}

/// A subscription to a node's events, from [`Handle::events`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event, waiting at most `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(RecvTimeoutError::Closed),
            Err(_) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// The next event, blocking the thread (for use outside the runtime's threads).
    pub fn blocking_recv(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }
}
