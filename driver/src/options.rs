//! What a node starts with ([`Options`]) and what can go wrong ([`RuntimeError`]).

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use grapevine::{Config, ConfigError, RequestError, RespondError, StateError};

/// Everything needed to start a node: where to bind, whom to join, and the protocol config.
///
/// ```
/// use grapevine_driver::Options;
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
    /// The identity's generation; `None` (the default) takes [`Clock::generation`](crate::Clock::generation).
    pub generation: Option<u64>,
    /// The seed of the node's RNG; `None` (the default) draws one from the OS.
    pub rng_seed: Option<u64>,
    /// How long a node keeps running after a graceful [`Command::Leave`](crate::Command::Leave), so that its
    /// "left" rumour spreads; `None` (the default) uses two gossip intervals.
    pub leave_timeout: Option<Duration>,
    /// How many undelivered events each subscriber may hold before new events are
    /// dropped for it (and counted in [`StatsSnapshot::events_dropped`](crate::StatsSnapshot::events_dropped)). Default 4096.
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
