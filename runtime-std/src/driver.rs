//! The pieces every Grapevine runtime shares: the clock mapping, options, errors,
//! the command enum, the snapshot types and the [`Driver`] that applies them to a
//! [`grapevine::Node`].
//!
//! A runtime is a short loop around a [`Driver`]:
//!
//! 1. wait until a datagram arrives, a command arrives, or [`Driver::deadline`] passes;
//! 2. hand what happened to [`Driver::handle_datagram`] or [`Driver::handle_command`],
//!    then call [`Driver::handle_timeout`];
//! 3. call [`Driver::flush`], which sends every transmit and delivers every event
//!    (the core's drain rule);
//! 4. stop when [`Driver::is_done`].
//!
//! Nothing here makes a protocol decision: the driver only moves bytes, commands,
//! events and time between the outside world and the core.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grapevine::{
    Config, ConfigError, MemberState, RequestError, RequestId, RespondError, StateError, Stats,
};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

/// A core event with socket addresses.
pub type Event = grapevine::Event<SocketAddr>;
/// A node identity with a socket address.
pub type NodeId = grapevine::NodeId<SocketAddr>;
/// The core node every runtime drives.
pub type CoreNode = grapevine::Node<SocketAddr, ChaCha8Rng>;

/// The size of the buffer a runtime receives datagrams into: the largest UDP payload.
pub const RECV_BUFFER_SIZE: usize = 65_535;

/// Maps the runtime's monotonic clock ([`std::time::Instant`]) to the core's
/// [`grapevine::Instant`], counted from the moment the clock was created.
///
/// This is the only place a Grapevine runtime reads the clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose origin ([`grapevine::Instant::ZERO`]) is now.
    #[allow(clippy::disallowed_methods, reason = "the runtime owns the clock")]
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// The current time on the core's clock.
    #[allow(clippy::disallowed_methods, reason = "the runtime owns the clock")]
    pub fn now(&self) -> grapevine::Instant {
        self.to_core(std::time::Instant::now())
    }

    /// Converts a runtime instant to the core's clock (instants before the origin map to zero).
    pub fn to_core(&self, t: std::time::Instant) -> grapevine::Instant {
        let nanos = t.saturating_duration_since(self.origin).as_nanos();
        grapevine::Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Converts a core instant to the runtime's clock, or `None` if it is too far
    /// in the future to represent (treat that as "never").
    pub fn to_std(&self, t: grapevine::Instant) -> Option<std::time::Instant> {
        self.origin.checked_add(Duration::from_nanos(t.as_nanos()))
    }

    /// A fresh generation for a node identity: wall-clock microseconds since the
    /// Unix epoch, so a restarted process at the same address is a new life.
    #[allow(clippy::disallowed_methods, reason = "the runtime owns the clock")]
    pub fn generation() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// Everything needed to start a node: where to bind, whom to join, and the protocol config.
///
/// ```
/// use grapevine_std::Options;
/// let options = Options::new("127.0.0.1:0".parse().unwrap())
///     .seed("127.0.0.1:7946".parse().unwrap())
///     .cluster_name("demo");
/// assert_eq!(options.seeds.len(), 1);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// The UDP address to bind. Port 0 picks an ephemeral port; the node's identity
    /// uses the address actually bound.
    pub bind: SocketAddr,
    /// Addresses to join at start. Empty for the first node of a cluster.
    pub seeds: Vec<SocketAddr>,
    /// The protocol configuration (default: [`Config::lan`] with cluster name `grapevine`).
    pub config: Config,
    /// The identity's generation; `None` (the default) takes [`Clock::generation`].
    pub generation: Option<u64>,
    /// The seed of the node's RNG; `None` (the default) draws one from the OS.
    pub rng_seed: Option<u64>,
    /// How long a node keeps running after a graceful [`Command::Leave`], so that its
    /// "left" rumour spreads; `None` (the default) uses two gossip intervals.
    pub leave_timeout: Option<Duration>,
    /// How many undelivered events each subscriber may hold before new events are
    /// dropped for it (and counted in [`StatsSnapshot::events_dropped`]). Default 4096.
    pub event_capacity: usize,
}

impl Options {
    /// Options for a node bound to `bind`, with no seeds and [`Config::lan`].
    pub fn new(bind: SocketAddr) -> Self {
        Options {
            bind,
            seeds: Vec::new(),
            config: Config::lan("grapevine"),
            generation: None,
            rng_seed: None,
            leave_timeout: None,
            event_capacity: 4096,
        }
    }

    /// Adds one seed to join at start.
    pub fn seed(mut self, seed: SocketAddr) -> Self {
        self.seeds.push(seed);
        self
    }

    /// Adds seeds to join at start.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds.extend(seeds);
        self
    }

    /// Replaces the protocol configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the cluster name in the configuration.
    pub fn cluster_name(mut self, name: impl Into<String>) -> Self {
        self.config.cluster_name = name.into();
        self
    }

    /// Fixes the identity's generation (tests; a runtime normally takes the wall clock).
    pub fn generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// Fixes the seed of the node's RNG (reproducible runs).
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Sets how long a graceful leave keeps the node running.
    pub fn leave_timeout(mut self, timeout: Duration) -> Self {
        self.leave_timeout = Some(timeout);
        self
    }

    /// Sets how many events each subscriber may hold.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Checks the configuration, then binds a blocking UDP socket to [`Options::bind`].
    pub fn bind_socket(&self) -> Result<UdpSocket, RuntimeError> {
        self.config.validate().map_err(RuntimeError::Config)?;
        UdpSocket::bind(self.bind).map_err(|source| RuntimeError::Bind {
            addr: self.bind,
            source,
        })
    }
}

/// What can go wrong in a runtime.
#[derive(Debug)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The UDP socket could not be bound (address in use, not local, no permission).
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// Another I/O error while starting the runtime.
    Io(io::Error),
    /// The configuration is invalid; nothing was started.
    Config(ConfigError),
    /// The core refused a state change; the node's state is unchanged.
    State(StateError),
    /// The core refused a request; nothing was sent.
    Request(RequestError),
    /// The core refused a response; nothing was sent.
    Respond(RespondError),
    /// The node has stopped (after a leave or an abort): the command was not applied.
    Stopped,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Bind { addr, source } => write!(f, "cannot bind UDP {addr}: {source}"),
            RuntimeError::Io(e) => write!(f, "I/O error: {e}"),
            RuntimeError::Config(e) => write!(f, "invalid configuration: {e}"),
            RuntimeError::State(e) => write!(f, "state change refused: {e}"),
            RuntimeError::Request(e) => write!(f, "request refused: {e}"),
            RuntimeError::Respond(e) => write!(f, "response refused: {e}"),
            RuntimeError::Stopped => f.write_str("the node has stopped"),
        }
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RuntimeError::Bind { source, .. } => Some(source),
            RuntimeError::Io(e) => Some(e),
            RuntimeError::Config(e) => Some(e),
            RuntimeError::State(e) => Some(e),
            RuntimeError::Request(e) => Some(e),
            RuntimeError::Respond(e) => Some(e),
            RuntimeError::Stopped => None,
        }
    }
}

impl From<io::Error> for RuntimeError {
    fn from(e: io::Error) -> Self {
        RuntimeError::Io(e)
    }
}

/// Why waiting for an event with a timeout returned no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing arrived in time; the node is still running.
    Timeout,
    /// The node has stopped: no event will ever arrive.
    Closed,
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvTimeoutError::Timeout => "timed out waiting for an event",
            RecvTimeoutError::Closed => "the node has stopped",
        })
    }
}

impl std::error::Error for RecvTimeoutError {}

/// A one-shot reply: how the driver answers a command, whatever channel the runtime uses.
pub struct Reply<T>(Box<dyn FnOnce(T) + Send>);

impl<T> Reply<T> {
    /// A reply that calls `f` with the answer (typically sending it on a one-shot channel).
    pub fn new(f: impl FnOnce(T) + Send + 'static) -> Self {
        Reply(Box::new(f))
    }

    /// Answers.
    pub fn send(self, value: T) {
        (self.0)(value)
    }
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply")
    }
}

/// What a subscriber did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The subscriber has it.
    Delivered,
    /// The subscriber's queue is full: this event is dropped for it and counted.
    Full,
    /// The subscriber is gone: forget it.
    Closed,
}

/// Where a subscriber's events go (typically a bounded channel's `try_send`).
pub struct EventSink(Box<dyn FnMut(&Event) -> Delivery + Send>);

impl EventSink {
    /// A sink that hands each event to `f`.
    pub fn new(f: impl FnMut(&Event) -> Delivery + Send + 'static) -> Self {
        EventSink(Box::new(f))
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventSink")
    }
}

/// A command from a handle to the loop that owns the node.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Join more seeds (the node already joined [`Options::seeds`] at start).
    Join(Vec<SocketAddr>),
    /// Set a key in this node's state.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Whether the core accepted it.
        reply: Reply<Result<(), RuntimeError>>,
    },
    /// Delete a key from this node's state.
    Delete {
        /// The key.
        key: String,
        /// Whether the core accepted it.
        reply: Reply<Result<(), RuntimeError>>,
    },
    /// Read a key of some node's state, as this node knows it.
    Get {
        /// The node that owns the key.
        node: SocketAddr,
        /// The key.
        key: String,
        /// The value, if known.
        reply: Reply<Option<Vec<u8>>>,
    },
    /// Send a client request for `key`; the answer arrives as [`grapevine::Event::Response`]
    /// (or [`grapevine::Event::RequestFailed`]) on the event subscribers.
    Request {
        /// The key that picks the owner.
        key: Vec<u8>,
        /// The application's payload.
        payload: Vec<u8>,
        /// The request's id, or why the core refused it.
        reply: Reply<Result<RequestId, RuntimeError>>,
    },
    /// Answer a [`grapevine::Event::Request`].
    Respond {
        /// The id from the event.
        id: RequestId,
        /// The application's payload.
        payload: Vec<u8>,
        /// Whether the core accepted it.
        reply: Reply<Result<(), RuntimeError>>,
    },
    /// List every known member.
    Members(Reply<Vec<Member>>),
    /// Read the counters.
    Stats(Reply<StatsSnapshot>),
    /// The token ring as this node sees it.
    Ring(Reply<RingSnapshot>),
    /// Where a key routes.
    Route {
        /// The key.
        key: Vec<u8>,
        /// The replica set and ring digest.
        reply: Reply<Route>,
    },
    /// Add an event subscriber. The first subscriber also receives the events raised
    /// before it subscribed (up to [`Options::event_capacity`] of them).
    Subscribe(EventSink),
    /// Leave gracefully: spread "left", keep running for the leave timeout, then stop.
    Leave,
    /// Stop at once without leaving: peers will detect this node as failed.
    Abort,
}

/// One member as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// Address and generation.
    pub id: NodeId,
    /// Alive, suspect, dead or left.
    pub state: MemberState,
    /// The member's incarnation number (bumped when it refutes a suspicion).
    pub incarnation: u64,
    /// How long ago this node last received a valid datagram from the member's
    /// address; `None` if never (or for the local node itself).
    pub last_heard: Option<Duration>,
    /// How long ago this node's view of the member last changed (state or incarnation).
    pub since: Duration,
    /// Whether this is the node being asked.
    pub local: bool,
}

impl Member {
    /// The member's address.
    pub fn addr(&self) -> SocketAddr {
        self.id.addr
    }
}

/// The node's counters plus the runtime's own.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// The core's counters.
    pub core: Stats,
    /// Time since the runtime started.
    pub uptime: Duration,
    /// Members (including this node) in state alive or suspect.
    pub members_live: usize,
    /// Every known member, tombstones included.
    pub members_known: usize,
    /// The node's current ring digest.
    pub ring_digest: u64,
    /// Events dropped because a subscriber's queue was full.
    pub events_dropped: u64,
    /// Datagrams the socket refused to send.
    pub send_errors: u64,
    /// Errors from the socket's receive.
    pub recv_errors: u64,
}

/// One replica of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteReplica {
    /// The replica's identity.
    pub id: NodeId,
    /// Its state as the asking node sees it (alive or suspect: the ring holds no others).
    pub state: MemberState,
}

/// Where a key routes, as a node sees the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// The key.
    pub key: Vec<u8>,
    /// The key's token on the ring.
    pub token: i64,
    /// The replicas in ring order, owner first.
    pub replicas: Vec<RouteReplica>,
    /// The ring digest of the asking node.
    pub ring_digest: u64,
}

impl Route {
    /// The key's owner: the first replica, which serves requests for the key
    /// unless it fails to answer (then the next one does).
    pub fn owner(&self) -> Option<&NodeId> {
        self.replicas.first().map(|r| &r.id)
    }
}

/// One node's part of the token ring.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Ownership {
    /// The node's address.
    pub addr: SocketAddr,
    /// How many tokens it holds on the ring.
    pub tokens: usize,
    /// The fraction of all keys it owns (is the first replica of), 0 to 1.
    pub primary: f64,
    /// The fraction of all keys it holds a replica of, 0 to 1.
    pub replica: f64,
}

/// The token ring as one node sees it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RingSnapshot {
    /// The ring digest: equal on nodes that agree.
    pub digest: u64,
    /// The configured replication factor.
    pub replication_factor: usize,
    /// Every `(token, owner)` in ring order.
    pub tokens: Vec<(i64, SocketAddr)>,
    /// Each node's share of the key space, exact (range arithmetic, no sampling).
    pub ownership: Vec<Ownership>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Leaving { until: grapevine::Instant },
    Done,
}

/// A [`CoreNode`] plus the bookkeeping a runtime needs: subscribers, counters, leave.
pub struct Driver {
    node: CoreNode,
    clock: Clock,
    started: grapevine::Instant,
    sinks: Vec<EventSink>,
    /// Events raised before the first subscriber arrived, for it; `None` afterwards.
    backlog: Option<VecDeque<Event>>,
    event_capacity: usize,
    last_heard: HashMap<SocketAddr, grapevine::Instant>,
    leave_timeout: Duration,
    phase: Phase,
    events_dropped: u64,
    send_errors: u64,
    recv_errors: u64,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("id", self.node.id())
            .field("phase", &self.phase)
            .field("subscribers", &self.sinks.len())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Creates the core node for a socket bound at `local_addr` and joins `options.seeds`.
    ///
    /// `local_addr` should be the socket's actual address; an unspecified IP
    /// (`0.0.0.0` or `::`) is kept as is, so bind to a concrete address when peers
    /// must reach this node by the address it announces.
    pub fn new(
        options: &Options,
        local_addr: SocketAddr,
        clock: Clock,
    ) -> Result<Self, RuntimeError> {
        let generation = options.generation.unwrap_or_else(Clock::generation);
        let seed = options
            .rng_seed
            .unwrap_or_else(|| random_seed(generation, local_addr));
        let id = NodeId {
            addr: local_addr,
            generation,
        };
        let node = CoreNode::new(options.config.clone(), id, ChaCha8Rng::seed_from_u64(seed))
            .map_err(RuntimeError::Config)?;
        let leave_timeout = options
            .leave_timeout
            .unwrap_or(options.config.gossip_interval * 2);
        let now = clock.now();
        let mut driver = Driver {
            node,
            clock,
            started: now,
            sinks: Vec::new(),
            backlog: Some(VecDeque::new()),
            event_capacity: options.event_capacity.max(1),
            last_heard: HashMap::new(),
            leave_timeout,
            phase: Phase::Running,
            events_dropped: 0,
            send_errors: 0,
            recv_errors: 0,
        };
        let seeds: Vec<SocketAddr> = options
            .seeds
            .iter()
            .copied()
            .filter(|s| *s != local_addr)
            .collect();
        driver.node.join(now, seeds);
        Ok(driver)
    }

    /// The node's identity.
    pub fn id(&self) -> &NodeId {
        self.node.id()
    }

    /// The core node, read-only.
    pub fn node(&self) -> &CoreNode {
        &self.node
    }

    /// The clock the driver reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Hands a received datagram to the core. Malformed packets are counted by the
    /// core and only logged here, at trace level.
    pub fn handle_datagram(&mut self, from: SocketAddr, data: &[u8]) {
        if self.phase == Phase::Done {
            return;
        }
        let now = self.clock.now();
        match self.node.handle_packet(now, from, data) {
            Ok(()) => {
                self.last_heard.insert(from, now);
            }
            Err(e) => tracing::trace!(%from, len = data.len(), error = %e, "dropped datagram"),
        }
    }

    /// Counts and logs an error from the socket's receive.
    pub fn handle_recv_error(&mut self, error: &io::Error) {
        self.recv_errors += 1;
        tracing::debug!(%error, "UDP receive failed");
    }

    /// Lets the core's timers fire if any is due, and ends a graceful leave whose time is up.
    pub fn handle_timeout(&mut self) {
        let now = self.clock.now();
        match self.phase {
            Phase::Done => return,
            Phase::Leaving { until } if now >= until => {
                self.phase = Phase::Done;
                return;
            }
            _ => {}
        }
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
    }

    /// Applies one command from a handle.
    pub fn handle_command(&mut self, command: Command) {
        let now = self.clock.now();
        let running = self.phase == Phase::Running;
        match command {
            Command::Join(seeds) => {
                if running {
                    self.node.join(now, seeds);
                }
            }
            Command::Set { key, value, reply } => reply.send(if running {
                self.node
                    .set(now, &key, &value)
                    .map_err(RuntimeError::State)
            } else {
                Err(RuntimeError::Stopped)
            }),
            Command::Delete { key, reply } => reply.send(if running {
                self.node.delete(now, &key).map_err(RuntimeError::State)
            } else {
                Err(RuntimeError::Stopped)
            }),
            Command::Get { node, key, reply } => {
                reply.send(self.node.get(&node, &key).map(<[u8]>::to_vec))
            }
            Command::Request {
                key,
                payload,
                reply,
            } => reply.send(if running {
                self.node
                    .handle_request(now, &key, payload)
                    .map_err(RuntimeError::Request)
            } else {
                Err(RuntimeError::Stopped)
            }),
            Command::Respond { id, payload, reply } => reply.send(if running {
                self.node
                    .respond(now, id, payload)
                    .map_err(RuntimeError::Respond)
            } else {
                Err(RuntimeError::Stopped)
            }),
            Command::Members(reply) => reply.send(self.members()),
            Command::Stats(reply) => reply.send(self.stats()),
            Command::Ring(reply) => reply.send(self.ring()),
            Command::Route { key, reply } => reply.send(self.route(key)),
            Command::Subscribe(sink) => self.subscribe(sink),
            Command::Leave => self.leave(),
            Command::Abort => self.phase = Phase::Done,
        }
    }

    fn subscribe(&mut self, mut sink: EventSink) {
        if let Some(backlog) = self.backlog.take() {
            for event in &backlog {
                match (sink.0)(event) {
                    Delivery::Delivered => {}
                    Delivery::Full => self.events_dropped += 1,
                    Delivery::Closed => return,
                }
            }
        }
        self.sinks.push(sink);
    }

    /// Every handle is gone: leave gracefully, then stop.
    pub fn handle_commands_closed(&mut self) {
        self.leave();
    }

    fn leave(&mut self) {
        if self.phase == Phase::Running {
            let now = self.clock.now();
            self.node.leave(now);
            self.phase = Phase::Leaving {
                until: now + self.leave_timeout,
            };
        }
    }

    /// The drain rule: hands every pending transmit to `send`, then every pending
    /// event to the subscribers. Send errors are counted and logged, never fatal
    /// (UDP is lossy anyway; a full socket buffer is a drop).
    pub fn flush(&mut self, mut send: impl FnMut(SocketAddr, &[u8]) -> io::Result<()>) {
        while let Some(transmit) = self.node.poll_transmit() {
            if self.phase == Phase::Done {
                continue;
            }
            if let Err(error) = send(transmit.dest, &transmit.payload) {
                self.send_errors += 1;
                tracing::debug!(dest = %transmit.dest, %error, "UDP send failed");
            }
        }
        while let Some(event) = self.node.poll_event() {
            log_event(&event);
            if let Some(backlog) = &mut self.backlog {
                if backlog.len() < self.event_capacity {
                    backlog.push_back(event);
                } else {
                    self.events_dropped += 1;
                }
                continue;
            }
            let mut dropped = 0;
            self.sinks.retain_mut(|sink| match (sink.0)(&event) {
                Delivery::Delivered => true,
                Delivery::Full => {
                    dropped += 1;
                    true
                }
                Delivery::Closed => false,
            });
            self.events_dropped += dropped;
        }
    }

    /// When the loop must wake up even if nothing arrives: the core's next timer, or
    /// the end of a graceful leave. `None` means "only on input".
    pub fn deadline(&self) -> Option<std::time::Instant> {
        let core = self.node.poll_timeout();
        let at = match self.phase {
            Phase::Done => return Some(self.clock.origin),
            Phase::Leaving { until } => Some(core.map_or(until, |t| t.min(until))),
            Phase::Running => core,
        };
        at.and_then(|t| self.clock.to_std(t))
    }

    /// How long until [`Driver::deadline`], from now; `None` means "only on input".
    pub fn time_to_deadline(&self) -> Option<Duration> {
        let core = self.node.poll_timeout();
        let at = match self.phase {
            Phase::Done => return Some(Duration::ZERO),
            Phase::Leaving { until } => Some(core.map_or(until, |t| t.min(until))),
            Phase::Running => core,
        };
        at.map(|t| t - self.clock.now())
    }

    /// Whether the loop should exit (after an abort, or once a graceful leave is over).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// A snapshot of every known member.
    pub fn members(&self) -> Vec<Member> {
        let now = self.clock.now();
        let local = self.node.id().clone();
        self.node
            .members()
            .map(|m| {
                let is_local = m.id == local;
                Member {
                    since: now - m.since,
                    last_heard: if is_local {
                        None
                    } else {
                        self.last_heard.get(&m.id.addr).map(|t| now - *t)
                    },
                    local: is_local,
                    id: m.id,
                    state: m.state,
                    incarnation: m.incarnation,
                }
            })
            .collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        let mut members_live = 0;
        let mut members_known = 0;
        for m in self.node.members() {
            members_known += 1;
            if matches!(m.state, MemberState::Alive | MemberState::Suspect) {
                members_live += 1;
            }
        }
        StatsSnapshot {
            core: *self.node.stats(),
            uptime: self.clock.now() - self.started,
            members_live,
            members_known,
            ring_digest: self.node.ring_digest(),
            events_dropped: self.events_dropped,
            send_errors: self.send_errors,
            recv_errors: self.recv_errors,
        }
    }

    /// The token ring.
    pub fn ring(&self) -> RingSnapshot {
        let ring = self.node.ring();
        let rf = self.node.config().replication_factor;
        let tokens: Vec<(i64, SocketAddr)> = ring.tokens().map(|(t, n)| (t, *n)).collect();
        let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
        for (_, addr) in &tokens {
            *counts.entry(*addr).or_default() += 1;
        }
        let replica: HashMap<SocketAddr, f64> = ring.ownership(rf).into_iter().collect();
        let ownership = ring
            .ownership(1)
            .into_iter()
            .map(|(addr, primary)| Ownership {
                addr,
                tokens: counts.get(&addr).copied().unwrap_or(0),
                primary,
                replica: replica.get(&addr).copied().unwrap_or(0.0),
            })
            .collect();
        RingSnapshot {
            digest: ring.digest(),
            replication_factor: rf,
            tokens,
            ownership,
        }
    }

    /// Where `key` routes.
    pub fn route(&self, key: Vec<u8>) -> Route {
        let set = self.node.route(&key);
        Route {
            token: set.token,
            replicas: set
                .replicas
                .into_iter()
                .map(|r| RouteReplica {
                    id: r.id,
                    state: r.state,
                })
                .collect(),
            ring_digest: self.node.ring_digest(),
            key,
        }
    }
}

fn log_event(event: &Event) {
    match event {
        Event::MemberJoined(id) => {
            tracing::debug!(member = %id.addr, generation = id.generation, "member joined")
        }
        Event::MemberSuspect(id) => tracing::debug!(member = %id.addr, "member suspect"),
        Event::MemberRecovered(id) => tracing::debug!(member = %id.addr, "member recovered"),
        Event::MemberDied(id) => tracing::debug!(member = %id.addr, "member died"),
        Event::MemberLeft(id) => tracing::debug!(member = %id.addr, "member left"),
        other => tracing::trace!(event = ?other, "event"),
    }
}

/// A seed for the node's RNG drawn from the OS (through the standard library's
/// randomly keyed hasher), mixed with the identity.
fn random_seed(generation: u64, addr: SocketAddr) -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    generation.hash(&mut hasher);
    addr.hash(&mut hasher);
    hasher.finish()
}

/// The address a local wake-up datagram should be sent to: the socket's own
/// address, with an unspecified IP replaced by loopback.
pub fn wake_target(local_addr: SocketAddr) -> SocketAddr {
    let ip = match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local_addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn driver(options: Options) -> Driver {
        Driver::new(&options, "127.0.0.1:9".parse().unwrap(), Clock::new()).unwrap()
    }

    fn ask<T: Send + 'static>(driver: &mut Driver, make: impl FnOnce(Reply<T>) -> Command) -> T {
        let (tx, rx) = mpsc::channel();
        driver.handle_command(make(Reply::new(move |v| tx.send(v).unwrap())));
        rx.try_recv().expect("the driver answers at once")
    }

    #[test]
    fn clock_round_trips() {
        let clock = Clock::new();
        let now = clock.now();
        let std_now = clock.to_std(now).unwrap();
        assert_eq!(clock.to_core(std_now), now);
        assert!(
            Clock::generation() > 1_600_000_000_000_000,
            "microseconds since 1970"
        );
    }

    #[test]
    fn invalid_config_is_refused() {
        let mut options = Options::new("127.0.0.1:0".parse().unwrap());
        options.config.gossip_fanout = 0;
        assert!(matches!(
            options.bind_socket(),
            Err(RuntimeError::Config(_))
        ));
        let err = Driver::new(&options, "127.0.0.1:9".parse().unwrap(), Clock::new()).unwrap_err();
        assert!(matches!(err, RuntimeError::Config(_)), "{err}");
    }

    #[test]
    fn members_include_the_local_node() {
        let mut d = driver(Options::new("127.0.0.1:0".parse().unwrap()).generation(7));
        let members = ask(&mut d, Command::Members);
        assert_eq!(members.len(), 1);
        assert!(members[0].local);
        assert_eq!(members[0].id.generation, 7);
        assert_eq!(members[0].last_heard, None);
        let stats = ask(&mut d, Command::Stats);
        assert_eq!((stats.members_live, stats.members_known), (1, 1));
    }

    #[test]
    fn leave_then_stop() {
        let mut d =
            driver(Options::new("127.0.0.1:0".parse().unwrap()).leave_timeout(Duration::ZERO));
        d.handle_command(Command::Leave);
        assert!(!d.is_done(), "a leave drains before it stops");
        let set = ask(&mut d, |reply| Command::Set {
            key: "k".into(),
            value: b"v".to_vec(),
            reply,
        });
        assert!(matches!(set, Err(RuntimeError::Stopped)));
        d.handle_timeout();
        assert!(d.is_done());
        assert_eq!(d.time_to_deadline(), Some(Duration::ZERO));
    }

    #[test]
    fn abort_stops_at_once_and_sends_nothing_more() {
        let mut d = driver(
            Options::new("127.0.0.1:0".parse().unwrap()).seed("127.0.0.1:10".parse().unwrap()),
        );
        d.handle_command(Command::Abort);
        assert!(d.is_done());
        let mut sent = 0;
        d.flush(|_, _| {
            sent += 1;
            Ok(())
        });
        assert_eq!(sent, 0);
    }

    #[test]
    fn send_errors_are_counted() {
        let mut d = driver(
            Options::new("127.0.0.1:0".parse().unwrap()).seed("127.0.0.1:10".parse().unwrap()),
        );
        // Joining a seed queues datagrams; a failing socket only counts them.
        d.flush(|_, _| Err(io::Error::other("unreachable")));
        assert!(ask(&mut d, Command::Stats).send_errors > 0);
    }

    #[test]
    fn the_first_subscriber_gets_the_backlog() {
        // A lone first node soon owns the whole ring, and then a request is delivered locally.
        let mut config = Config::lan("test");
        config.gossip_interval = Duration::from_millis(5);
        config.probe_interval = Duration::from_millis(10);
        config.probe_timeout = Duration::from_millis(5);
        let mut d = driver(Options::new("127.0.0.1:0".parse().unwrap()).config(config));
        let mut tries = 0;
        let id = loop {
            let request = ask(&mut d, |reply| Command::Request {
                key: b"k".to_vec(),
                payload: b"p".to_vec(),
                reply,
            });
            match request {
                Ok(id) => break id,
                Err(e) => assert!(tries < 400, "no ring after 2 s: {e}"),
            }
            tries += 1;
            std::thread::sleep(Duration::from_millis(5));
            d.handle_timeout();
            d.flush(|_, _| Ok(()));
        };
        d.flush(|_, _| Ok(()));
        let subscribe = |d: &mut Driver| {
            let (tx, rx) = mpsc::channel();
            d.handle_command(Command::Subscribe(EventSink::new(move |e: &Event| {
                tx.send(e.clone())
                    .map_or(Delivery::Closed, |()| Delivery::Delivered)
            })));
            rx
        };
        let first = subscribe(&mut d);
        let second = subscribe(&mut d);
        let backlog: Vec<Event> = first.try_iter().collect();
        assert!(
            backlog
                .iter()
                .any(|e| matches!(e, Event::Request { id: got, .. } if *got == id)),
            "{backlog:?}"
        );
        assert_eq!(
            second.try_iter().count(),
            0,
            "only the first subscriber gets the backlog"
        );
        // From now on both get everything.
        ask(&mut d, |reply| Command::Respond {
            id,
            payload: b"r".to_vec(),
            reply,
        })
        .unwrap();
        d.flush(|_, _| Ok(()));
        assert!(
            first
                .try_iter()
                .any(|e| matches!(e, Event::Response { .. }))
        );
        assert!(
            second
                .try_iter()
                .any(|e| matches!(e, Event::Response { .. }))
        );
    }

    #[test]
    fn wake_target_replaces_unspecified_ips() {
        assert_eq!(
            wake_target("0.0.0.0:5".parse().unwrap()),
            "127.0.0.1:5".parse().unwrap()
        );
        assert_eq!(
            wake_target("[::]:5".parse().unwrap()),
            "[::1]:5".parse().unwrap()
        );
        assert_eq!(
            wake_target("10.0.0.1:5".parse().unwrap()),
            "10.0.0.1:5".parse().unwrap()
        );
    }
}
