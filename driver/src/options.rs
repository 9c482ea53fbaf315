//! What a node starts with ([`Options`]) and what can go wrong ([`RuntimeError`]).

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use grapevine::{
    Config, ConfigError, Keyring, KeyringError, Location, RemoveError, RequestError, RespondError,
    RestoreError, StateError,
};

use crate::join::{JoinRetry, Resolver};

/// Everything needed to start a node: where to bind, whom to join, the protocol
/// config, and the node's identity: its name, location and data directory.
///
/// With a [`data_dir`](Options::data_dir), the node keeps its name, location and
/// tokens in `placement.json` there (see [`PlacementStore`](crate::PlacementStore)),
/// so a restart takes back exactly its tokens and moves no data. Without one, the
/// node's name is the one given (or derived from its address) and a restart joins
/// as a new member with new tokens.
///
/// ```
/// use grapevine_driver::Options;
/// let options = Options::new("127.0.0.1:0".parse().unwrap())
///     .seed("127.0.0.1:7946".parse().unwrap())
///     .cluster_name("demo")
///     .name("node-1")
///     .location("dc1", "rack2")
///     .data_dir("/var/lib/grapevine");
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
    /// The longest a node keeps running after a graceful [`Command::Shutdown`](crate::Command::Shutdown) or a decommission
    /// so that its "left" rumour spreads: it stops as soon as the rumour has been sent
    /// its retransmit budget ([`Node::is_leave_spread`](grapevine::Node::is_leave_spread)),
    /// at once in a cluster small enough to tell every member directly, and after
    /// this bound if datagrams cannot get out. `None` (the default) uses three gossip
    /// intervals.
    pub leave_timeout: Option<Duration>,
    /// How many undelivered events each subscriber may hold before new events are
    /// dropped for it (and counted in [`StatsSnapshot::events_dropped`](crate::StatsSnapshot::events_dropped)). Default 4096.
    pub event_capacity: usize,
    /// The node's stable name (host ID). With a data directory: used the first time
    /// (default: 16 random hex digits), and must match the saved name afterwards.
    pub name: Option<String>,
    /// The node's datacenter and rack (default `dc1` / `rack1`). With a data
    /// directory it must match the saved location.
    pub location: Option<Location>,
    /// Where the node keeps its identity and placement across restarts.
    pub data_dir: Option<PathBuf>,
    /// How long [`Handle::decommission`](crate::Handle::decommission) waits for the
    /// node to report Left; `None` (the default) uses 20 gossip intervals, at least 10 s.
    pub decommission_timeout: Option<Duration>,
    /// The keys that seal and open every datagram (`None`, the default: unencrypted).
    /// Every node of a cluster needs a key in common; see [`crate::keys`] for key
    /// files, and [`Handle::install_key`](crate::Handle::install_key) to rotate.
    pub keyring: Option<Keyring>,
    /// Seeds given as `host:port`, resolved on the driver's resolver thread on every
    /// join attempt and every [`JoinRetry::refresh`] afterwards (see [`crate::join`]).
    pub seed_hosts: Vec<String>,
    /// How often the node tries its seeds until it joins, and re-resolves
    /// [`Options::seed_hosts`] afterwards.
    pub join_retry: JoinRetry,
    /// How [`Options::seed_hosts`] are resolved (default: the system's resolver).
    pub resolver: Resolver,
    /// Record every input the core receives into a flight log (see
    /// [`record`](crate::record)); `None` (the default) records nothing.
    pub record: Option<crate::RecordOptions>,
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
            name: None,
            location: None,
            data_dir: None,
            decommission_timeout: None,
            keyring: None,
            seed_hosts: Vec::new(),
            join_retry: JoinRetry::default(),
            resolver: Resolver::system(),
            record: None,
        }
    }

    /// Records the node's inputs into a flight log (see [`record`](crate::record)).
    pub fn record(mut self, record: crate::RecordOptions) -> Self {
        self.record = Some(record);
        self
    }

    /// Seals and opens datagrams with `keyring` (its primary seals).
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Adds a seed given as `host:port`, resolved again on every join attempt and
    /// periodically afterwards (a DNS name whose addresses change).
    pub fn seed_host(mut self, host: impl Into<String>) -> Self {
        self.seed_hosts.push(host.into());
        self
    }

    /// Sets how often the node tries its seeds and re-resolves host names.
    pub fn join_retry(mut self, retry: JoinRetry) -> Self {
        self.join_retry = retry;
        self
    }

    /// Sets how seed host names are resolved.
    pub fn resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Sets the node's stable name (see [`Options::name`](Options#structfield.name)).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the node's datacenter and rack.
    pub fn location(mut self, datacenter: impl Into<String>, rack: impl Into<String>) -> Self {
        self.location = Some(Location::new(datacenter, rack));
        self
    }

    /// Keeps the node's identity and placement in `dir` (created if missing).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Sets how long a decommission may take before its answer is a timeout.
    pub fn decommission_timeout(mut self, timeout: Duration) -> Self {
        self.decommission_timeout = Some(timeout);
        self
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

    /// Sets the longest a graceful leave keeps the node running.
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
    /// The data directory (or its placement file) could not be created, read or written.
    DataDir {
        /// The directory or file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another running node holds the data directory (its lock file is locked): two
    /// processes must never share one identity and its tokens.
    DataDirInUse {
        /// The lock file.
        path: PathBuf,
    },
    /// The placement file does not parse, or its checksum does not match: it is left
    /// as it is, and the node does not start.
    CorruptPlacement {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory belongs to a node of another cluster.
    ForeignDataDir {
        /// The placement file.
        path: PathBuf,
        /// The cluster it was written for.
        found: String,
        /// This node's cluster.
        expected: String,
    },
    /// The name asked for differs from the one saved in the data directory.
    NameMismatch {
        /// The placement file.
        path: PathBuf,
        /// The saved name.
        saved: String,
        /// The name asked for.
        given: String,
    },
    /// The datacenter/rack asked for differs from the saved one: a node does not
    /// move racks with its tokens.
    LocationMismatch {
        /// The placement file.
        path: PathBuf,
        /// The saved `datacenter/rack`.
        saved: String,
        /// The `datacenter/rack` asked for.
        given: String,
    },
    /// The core refused the saved placement.
    Restore(RestoreError),
    /// The core refused to remove a node; nothing changed.
    Remove(RemoveError),
    /// The node did not finish in time (a decommission that has not reported Left).
    Timeout,
    /// A key operation on a node that runs unencrypted (no [`Options::keyring`]).
    NotEncrypted,
    /// The keyring refused a change; it is unchanged.
    Keyring(KeyringError),
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
            RuntimeError::DataDir { path, source } => {
                write!(f, "data directory {}: {source}", path.display())
            }
            RuntimeError::DataDirInUse { path } => write!(
                f,
                "data directory {} is in use by another running node (lock {} is held)",
                path.parent().unwrap_or(path).display(),
                path.display()
            ),
            RuntimeError::CorruptPlacement { path, reason } => write!(
                f,
                "{} is corrupt ({reason}); refusing to start (restore it, or remove it to join as a new node)",
                path.display()
            ),
            RuntimeError::ForeignDataDir {
                path,
                found,
                expected,
            } => write!(
                f,
                "{} belongs to cluster {found:?}, not {expected:?}; refusing to start",
                path.display()
            ),
            RuntimeError::NameMismatch { path, saved, given } => write!(
                f,
                "name {given:?} differs from {saved:?} saved in {}; refusing to start",
                path.display()
            ),
            RuntimeError::LocationMismatch { path, saved, given } => write!(
                f,
                "location {given} differs from {saved} saved in {}; refusing to start",
                path.display()
            ),
            RuntimeError::Restore(e) => write!(f, "saved placement refused: {e}"),
            RuntimeError::Remove(e) => write!(f, "removal refused: {e}"),
            RuntimeError::Timeout => f.write_str("timed out"),
            RuntimeError::NotEncrypted => {
                f.write_str("this node runs unencrypted (start it with a key file)")
            }
            RuntimeError::Keyring(e) => write!(f, "keyring change refused: {e}"),
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
            RuntimeError::DataDir { source, .. } => Some(source),
            RuntimeError::Restore(e) => Some(e),
            RuntimeError::Remove(e) => Some(e),
            RuntimeError::Keyring(e) => Some(e),
            RuntimeError::NotEncrypted
            | RuntimeError::Stopped
            | RuntimeError::DataDirInUse { .. }
            | RuntimeError::CorruptPlacement { .. }
            | RuntimeError::ForeignDataDir { .. }
            | RuntimeError::NameMismatch { .. }
            | RuntimeError::LocationMismatch { .. }
            | RuntimeError::Timeout => None,
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
