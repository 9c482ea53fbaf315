//! The blocking runtime: one thread, one `std::net::UdpSocket`, read timeouts from the core.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use grapevine::RequestId;

use crate::driver::{
    Clock, Command, Delivery, Driver, Event, EventSink, Member, NodeId, Options, RECV_BUFFER_SIZE,
    RecvTimeoutError, Reply, RingSnapshot, Route, RuntimeError, StatsSnapshot, wake_target,
};

/// The longest the loop blocks in one receive, as a safety net: commands wake it
/// at once through a local datagram.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Binds the socket, starts the node's thread and joins `options.seeds`.
///
/// Returns once the socket is bound, so a bad address or a port in use is an
/// error here, not later.
pub fn spawn(options: Options) -> Result<Handle, RuntimeError> {
    let socket = options.bind_socket()?;
    let local_addr = socket.local_addr()?;
    let driver = Driver::new(&options, local_addr, Clock::new())?;
    let id = driver.id().clone();
    // Commands wake the blocked receive with an empty datagram from this socket.
    let waker = UdpSocket::bind(SocketAddr::new(wake_target(local_addr).ip(), 0))?;
    let waker_addr = waker.local_addr()?;
    let (commands, rx) = mpsc::channel();
    let thread = thread::Builder::new()
        .name(format!("grapevine {local_addr}"))
        .spawn(move || run(driver, socket, rx, waker_addr))?;
    Ok(Handle {
        inner: Arc::new(Inner {
            commands,
            waker,
            wake_target: wake_target(local_addr),
            id,
            event_capacity: options.event_capacity,
            thread: Mutex::new(Some(thread)),
        }),
    })
}

fn run(mut driver: Driver, socket: UdpSocket, commands: Receiver<Command>, waker: SocketAddr) {
    let mut buf = vec![0u8; RECV_BUFFER_SIZE];
    let mut open = true;
    loop {
        while open {
            match commands.try_recv() {
                Ok(command) => driver.handle_command(command),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    driver.handle_commands_closed();
                }
            }
        }
        driver.handle_timeout();
        driver.flush(|dest, payload| socket.send_to(payload, dest).map(drop));
        if driver.is_done() {
            break;
        }
        let wait = driver.time_to_deadline().unwrap_or(MAX_WAIT);
        // A zero read timeout is an error: wait at least a millisecond.
        let wait = wait.clamp(Duration::from_millis(1), MAX_WAIT);
        if let Err(error) = socket.set_read_timeout(Some(wait)) {
            driver.handle_recv_error(&error);
        }
        match socket.recv_from(&mut buf) {
            Ok((0, from)) if from == waker => {}
            Ok((len, from)) => driver.handle_datagram(from, &buf[..len]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(error) => driver.handle_recv_error(&error),
        }
    }
    tracing::debug!(node = %driver.id().addr, "node stopped");
}

struct Inner {
    commands: Sender<Command>,
    waker: UdpSocket,
    wake_target: SocketAddr,
    id: NodeId,
    event_capacity: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A handle to a running node. Cheap to clone; when every clone is dropped the node
/// leaves gracefully and stops in the background.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.inner.id)
            .finish()
    }
}

impl Handle {
    fn send(&self, command: Command) -> Result<(), RuntimeError> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| RuntimeError::Stopped)?;
        // A lost wake-up only delays the command until the next timer.
        let _ = self.inner.waker.send_to(&[], self.inner.wake_target);
        Ok(())
    }

    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, RuntimeError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(make(Reply::new(move |value| {
            let _ = tx.send(value);
        })))?;
        rx.recv().map_err(|_| RuntimeError::Stopped)
    }

    /// The node's identity (its bound address and generation).
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }

    /// The node's bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.id.addr
    }

    /// Joins more seeds.
    pub fn join(&self, seeds: impl IntoIterator<Item = SocketAddr>) -> Result<(), RuntimeError> {
        self.send(Command::Join(seeds.into_iter().collect()))
    }

    /// Sets `key` in this node's state; gossip spreads it.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), RuntimeError> {
        self.call(|reply| Command::Set {
            key: key.to_owned(),
            value: value.to_vec(),
            reply,
        })?
    }

    /// Deletes `key` from this node's state.
    pub fn delete(&self, key: &str) -> Result<(), RuntimeError> {
        self.call(|reply| Command::Delete {
            key: key.to_owned(),
            reply,
        })?
    }

    /// Reads `key` of the node at `node`, as this node knows it.
    pub fn get(&self, node: SocketAddr, key: &str) -> Result<Option<Vec<u8>>, RuntimeError> {
        self.call(|reply| Command::Get {
            node,
            key: key.to_owned(),
            reply,
        })
    }

    /// Sends a client request for `key` through this node. The answer arrives on the
    /// event subscribers as [`Event::Response`] (or [`Event::RequestFailed`]) with the
    /// returned id.
    pub fn request(&self, key: &[u8], payload: Vec<u8>) -> Result<RequestId, RuntimeError> {
        self.call(|reply| Command::Request {
            key: key.to_vec(),
            payload,
            reply,
        })?
    }

    /// Answers an [`Event::Request`] this node received.
    pub fn respond(&self, id: RequestId, payload: Vec<u8>) -> Result<(), RuntimeError> {
        self.call(|reply| Command::Respond { id, payload, reply })?
    }

    /// Every member this node knows, itself and tombstones included.
    pub fn members(&self) -> Result<Vec<Member>, RuntimeError> {
        self.call(Command::Members)
    }

    /// The node's counters.
    pub fn stats(&self) -> Result<StatsSnapshot, RuntimeError> {
        self.call(Command::Stats)
    }

    /// The token ring as this node sees it: tokens and each node's exact share.
    pub fn ring(&self) -> Result<RingSnapshot, RuntimeError> {
        self.call(Command::Ring)
    }

    /// Where `key` routes, as this node sees the ring.
    pub fn route(&self, key: &[u8]) -> Result<Route, RuntimeError> {
        self.call(|reply| Command::Route {
            key: key.to_vec(),
            reply,
        })
    }

    /// Subscribes to the node's events from now on; the first subscriber also gets
    /// the events raised since the node started, so nothing is missed between
    /// [`spawn`] and the first call. Each subscriber has its own bounded queue
    /// ([`Options::event_capacity`]); when it is full, new events are dropped for
    /// that subscriber and counted in [`StatsSnapshot::events_dropped`].
    pub fn events(&self) -> Events {
        let (tx, rx) = mpsc::sync_channel(self.inner.event_capacity);
        let sink = EventSink::new(move |event: &Event| deliver(&tx, event));
        // If the node has stopped the receiver just ends at once.
        let _ = self.send(Command::Subscribe(sink));
        Events { rx }
    }

    /// Leaves gracefully (peers see "left", not "dead"), keeps running for the leave
    /// timeout so the rumour spreads, and waits for the thread to end.
    pub fn shutdown(self) -> Result<(), RuntimeError> {
        let _ = self.send(Command::Leave);
        self.join_thread()
    }

    /// Stops at once without leaving, as if the process crashed: peers detect the
    /// node as failed. Waits for the thread to end.
    pub fn abort(self) -> Result<(), RuntimeError> {
        let _ = self.send(Command::Abort);
        self.join_thread()
    }

    fn join_thread(self) -> Result<(), RuntimeError> {
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match thread {
            Some(thread) => thread
                .join()
                .map_err(|_| RuntimeError::Io(io::Error::other("the node's thread panicked"))),
            None => Ok(()),
        }
    }
}

fn deliver(tx: &SyncSender<Event>, event: &Event) -> Delivery {
    match tx.try_send(event.clone()) {
        Ok(()) => Delivery::Delivered,
        Err(TrySendError::Full(_)) => Delivery::Full,
        Err(TrySendError::Disconnected(_)) => Delivery::Closed,
    }
}

/// A subscription to a node's events, from [`Handle::events`].
#[derive(Debug)]
pub struct Events {
    rx: Receiver<Event>,
}

impl Events {
    /// The next event, blocking; `None` once the node has stopped.
    pub fn recv(&self) -> Option<Event> {
        self.rx.recv().ok()
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => RecvTimeoutError::Timeout,
            mpsc::RecvTimeoutError::Disconnected => RecvTimeoutError::Closed,
        })
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl Iterator for Events {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}
