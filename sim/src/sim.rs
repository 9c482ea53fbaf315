//! The Grapevine driver: N [`grapevine::Node`]s on one simulated [`Network`].

use core::fmt;
use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use grapevine::{
    Config, Event, Instant, LocalPlacement, Location, MemberInfo, Node, NodeId, Status,
};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::census::Census;
use crate::net::{Delivery, NetConfig, NetStats, Network, derive_seed};

/// The node type the simulator runs.
pub type SimNode = Node<SocketAddr, ChaCha8Rng>;

/// The UDP port every simulated node listens on.
pub const SIM_PORT: u16 = 7946;

/// The address of node `i`: `127.x.y.z:7946`, where `x.y.z` spells `i + 1` in base 256
/// (so node 0 is `127.0.0.1`). Supports up to 2^24 − 1 nodes.
///
/// ```
/// use grapevine_sim::{node_addr, node_index};
/// assert_eq!(node_addr(0).to_string(), "127.0.0.1:7946");
/// assert_eq!(node_addr(256).to_string(), "127.0.1.1:7946");
/// assert_eq!(node_index(&node_addr(70_000)), Some(70_000));
/// ```
pub fn node_addr(i: usize) -> SocketAddr {
    let v = u32::try_from(i + 1)
        .ok()
        .filter(|v| *v < 1 << 24)
        .expect("node index out of range");
    let [_, x, y, z] = v.to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, x, y, z)), SIM_PORT)
}

/// The index of the node at `addr`, if `addr` is a simulator address (see [`node_addr`]).
/// Whether such a node exists is for the caller to check.
pub fn node_index(addr: &SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(a) if a.port() == SIM_PORT => {
            let [h, x, y, z] = a.ip().octets();
            let v = u32::from_be_bytes([0, x, y, z]);
            (h == 127 && v > 0).then(|| v as usize - 1)
        }
        _ => None,
    }
}

/// Reads the seed from the `GRAPEVINE_SEED` environment variable (decimal, or hex with
/// `0x`), or returns `default`. Tests use it so that a failure can be replayed:
/// `GRAPEVINE_SEED=1234 cargo test -p grapevine-sim`.
///
/// # Panics
/// If the variable is set but is not a number.
pub fn seed_from_env(default: u64) -> u64 {
    match std::env::var("GRAPEVINE_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("GRAPEVINE_SEED={s:?} is not a u64: {e}"))
        }
        Err(_) => default,
    }
}

/// Prints the seed if the thread panics while it is alive: create one at the top of a
/// test, so that even a panic inside the core tells which seed to replay.
///
/// ```
/// let _guard = grapevine_sim::SeedGuard(42);
/// ```
#[derive(Debug)]
pub struct SeedGuard(pub u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("seed = {0} (rerun with GRAPEVINE_SEED={0})", self.0);
        }
    }
}

/// Seconds since the origin, for messages.
pub fn secs(t: Instant) -> f64 {
    t.as_nanos() as f64 / 1e9
}

/// Where a simulated node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Running and a member of the cluster.
    Up,
    /// Called [`Sim::leave`] and still running (spreading its departure).
    Left,
    /// Left and then shut down with [`Sim::stop`].
    Stopped,
    /// Crashed with [`Sim::crash`]: no goodbye.
    Crashed,
}

impl NodeStatus {
    /// Whether the node still runs (receives packets and timers).
    pub fn is_running(self) -> bool {
        matches!(self, NodeStatus::Up | NodeStatus::Left)
    }
}

/// Which events go into the [event log](Sim::events). Counters are kept in every mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventLog {
    /// Log nothing (big runs).
    Off,
    /// Log membership events only (`Member*`).
    Membership,
    /// Log everything.
    All,
}

/// One logged event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// When the node emitted it.
    pub at: Instant,
    /// The index of the node that emitted it.
    pub node: usize,
    /// The event.
    pub event: Event<SocketAddr>,
}

/// Counts of the events every node emitted, kept whatever the [`EventLog`] mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// `MemberJoined`.
    pub joined: u64,
    /// `MemberSuspect`.
    pub suspect: u64,
    /// `MemberRecovered`.
    pub recovered: u64,
    /// `MemberDied`.
    pub died: u64,
    /// `MemberLeft`.
    pub left: u64,
    /// `StateChanged`.
    pub state_changed: u64,
    /// `Request`.
    pub requests: u64,
    /// `Response`.
    pub responses: u64,
    /// `RequestFailed`.
    pub requests_failed: u64,
    /// `RingAgreed`.
    pub ring_agreed: u64,
    /// Any other event.
    pub other: u64,
    /// `MemberSuspect` about a node that, at that instant, was [`NodeStatus::Up`] with
    /// the suspected generation.
    pub false_suspects: u64,
    /// `MemberDied` about a node that, at that instant, was [`NodeStatus::Up`] with the
    /// declared generation: a false death.
    pub false_deaths: u64,
}

/// [`Sim::run_until_cond`] reached its deadline before the condition held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    /// The simulation's seed.
    pub seed: u64,
    /// The virtual time when it gave up.
    pub at: Instant,
    /// Steps taken since the simulation began.
    pub steps: u64,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed = {}: condition still false at t = {:.3} s after {} steps",
            self.seed,
            secs(self.at),
            self.steps
        )
    }
}

impl std::error::Error for Timeout {}

/// A check run after every k steps; an `Err` stops the simulation with a panic.
pub type Invariant = Box<dyn FnMut(&Sim) -> Result<(), String>>;

/// What the simulator's timer queue carries for a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// The node's `poll_timeout` deadline.
    Timeout,
    /// A join scheduled by [`Sim::join_all_via`], through the given node (itself: no seeds).
    Join(usize),
}

struct Slot {
    node: SimNode,
    generation: u64,
    status: NodeStatus,
    /// The time of this node's queued `Wake::Timeout` entry, if any; others are stale.
    timer_at: Option<Instant>,
    /// Lives so far (restarts + 1); mixed into the RNG seed.
    lives: u64,
    packet_errors: u64,
    /// What the node last asked to be saved ([`Event::PlacementChanged`]): its "data
    /// directory", handed back to the core at a restart.
    saved: LocalPlacement,
}

/// Watches one node's inputs and outputs (a flight recorder, for instance): install it
/// with [`Sim::set_tap`] before the node joins. The simulator calls it for every input
/// it hands the core itself (packets, timer wake-ups, joins), then, after each drain,
/// with every transmit and event and the new deadline. Inputs fed through
/// [`Sim::with_node`] closures are opaque to it: [`Tap::opaque`] says one happened.
/// A restart of the node is a new life it does not follow.
pub trait Tap {
    /// `handle_packet(now, from, data)` is about to be called.
    fn packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]);
    /// `handle_timeout(now)` is about to be called.
    fn timeout(&mut self, now: Instant);
    /// `join(now, seeds)` is about to be called.
    fn join(&mut self, now: Instant, seeds: &[SocketAddr]);
    /// `set(now, key, value)` is about to be called ([`Sim::set`]).
    fn set(&mut self, now: Instant, key: &str, value: &[u8]);
    /// A [`Sim::with_node`] closure is about to run: an input the tap cannot see.
    fn opaque(&mut self, now: Instant);
    /// The drain after an input: every transmit and event, in the order the node
    /// put them out, and the next deadline.
    fn drained(
        &mut self,
        transmits: &[(SocketAddr, Vec<u8>)],
        events: &[Event<SocketAddr>],
        deadline: Option<Instant>,
    );
}

/// Builds a [`Sim`]. Every setting has a default; only the seed is required.
///
/// ```no_run
/// use grapevine_sim::{NetConfig, SimBuilder};
/// let mut sim = SimBuilder::new(42).nodes(10).net(NetConfig::default().with_loss(0.01)).build();
/// sim.join_all_via(0);
/// ```
#[derive(Clone, Debug)]
pub struct SimBuilder {
    seed: u64,
    nodes: usize,
    config: Config,
    net: NetConfig,
    generation: u64,
    event_log: EventLog,
    digest: bool,
    join_stagger: Duration,
    check_interval: Duration,
    invariant_every: u64,
    livelock_limit: Option<u64>,
}

impl SimBuilder {
    /// Defaults: no nodes, `Config::lan("sim")`, `NetConfig::lan()`, generation 1,
    /// the full event log, the digest on, joins staggered by 2 ms, conditions checked
    /// every 10 ms of virtual time, invariants after every step.
    pub fn new(seed: u64) -> Self {
        SimBuilder {
            seed,
            nodes: 0,
            config: Config::lan("sim"),
            net: NetConfig::lan(),
            generation: 1,
            event_log: EventLog::All,
            digest: true,
            join_stagger: Duration::from_millis(2),
            check_interval: Duration::from_millis(10),
            invariant_every: 1,
            livelock_limit: None,
        }
    }
    /// Number of nodes created up front (none of them joined yet).
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    /// The protocol config every node gets.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    /// The default link behaviour.
    pub fn net(mut self, net: NetConfig) -> Self {
        self.net = net;
        self
    }
    /// The generation of the nodes created up front.
    pub fn generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }
    /// What goes into the event log.
    pub fn event_log(mut self, mode: EventLog) -> Self {
        self.event_log = mode;
        self
    }
    /// Whether to keep the [transmit digest](Sim::transmit_digest) (costs a pass over each payload).
    pub fn digest(mut self, on: bool) -> Self {
        self.digest = on;
        self
    }
    /// Virtual time between two consecutive joins of [`Sim::join_all_via`].
    pub fn join_stagger(mut self, d: Duration) -> Self {
        self.join_stagger = d;
        self
    }
    /// Virtual time between two checks of a [`Sim::run_until_cond`] condition.
    pub fn check_interval(mut self, d: Duration) -> Self {
        self.check_interval = d;
        self
    }
    /// Run the invariant (if any) after every `k` steps.
    pub fn invariant_every(mut self, k: u64) -> Self {
        self.invariant_every = k.max(1);
        self
    }
    /// Panic when more than `limit` consecutive steps happen at one virtual instant
    /// (default `1_000_000 + 100 · nodes`).
    pub fn livelock_limit(mut self, limit: u64) -> Self {
        self.livelock_limit = Some(limit);
        self
    }
    /// Creates the simulation.
    ///
    /// # Panics
    /// If the config does not validate (the message carries the seed).
    pub fn build(self) -> Sim {
        let mut net = Network::new(self.seed, self.net);
        net.set_digest_enabled(self.digest);
        let mut sim = Sim {
            seed: self.seed,
            config: self.config,
            net,
            slots: Vec::with_capacity(self.nodes),
            event_log: self.event_log,
            events: Vec::new(),
            counts: EventCounts::default(),
            steps: 0,
            same_instant: 0,
            last_step_at: Instant::ZERO,
            livelock_limit: self.livelock_limit,
            invariant: None,
            invariant_every: self.invariant_every,
            check_interval: self.check_interval,
            join_stagger: self.join_stagger,
            tap: None,
            tapped_input: false,
            census: None,
        };
        for _ in 0..self.nodes {
            sim.add_node_with_generation(self.generation);
        }
        sim
    }
}

/// A deterministic simulation of Grapevine nodes on a seeded, faulty network, with a
/// virtual clock that jumps straight to the next packet or deadline.
///
/// Node `i` has address [`node_addr(i)`](node_addr), a generation, and an RNG derived from
/// the seed, `i`, its generation and its number of lives. After every input the
/// simulator applies the drain rule: every transmit goes into the network, every
/// event into the log and the counters, and the node's next deadline into the queue.
///
/// Every helper that fails panics with `seed = N: ...`; rerun with
/// `GRAPEVINE_SEED=N` (see [`seed_from_env`]).
pub struct Sim {
    seed: u64,
    config: Config,
    net: Network<Vec<u8>, Wake>,
    slots: Vec<Slot>,
    event_log: EventLog,
    events: Vec<LogEntry>,
    counts: EventCounts,
    steps: u64,
    same_instant: u64,
    last_step_at: Instant,
    livelock_limit: Option<u64>,
    invariant: Option<Invariant>,
    invariant_every: u64,
    check_interval: Duration,
    join_stagger: Duration,
    /// The node a [`Tap`] watches, and the tap.
    tap: Option<(usize, Box<dyn Tap>)>,
    /// A join is being fed through `with_node` on the tap's behalf (not opaque).
    tapped_input: bool,
    /// Every datagram sent, by message kind, once [`Sim::enable_census`] was called.
    census: Option<Census>,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &self.now())
            .field("nodes", &self.slots.len())
            .field("steps", &self.steps)
            .field("net", &self.net)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// `n` nodes with `config` on a network with `net`, none joined yet; see [`SimBuilder`]
    /// for the other defaults.
    pub fn new(seed: u64, n: usize, config: Config, net: NetConfig) -> Sim {
        SimBuilder::new(seed)
            .nodes(n)
            .config(config)
            .net(net)
            .build()
    }

    /// Panics with the seed, the virtual time and the step count in the message.
    #[track_caller]
    pub fn fail(&self, msg: impl fmt::Display) -> ! {
        panic!(
            "seed = {}: {msg} (t = {:.3} s, step {}; rerun with GRAPEVINE_SEED={})",
            self.seed,
            secs(self.now()),
            self.steps,
            self.seed
        )
    }

    /// [`fail`](Self::fail)s with `msg()` unless `cond` holds.
    #[track_caller]
    pub fn check(&self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            self.fail(msg());
        }
    }

    // ----- accessors -----

    /// The seed everything was derived from.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// The virtual clock.
    pub fn now(&self) -> Instant {
        self.net.now()
    }
    /// Steps taken (packets delivered plus timers fired).
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// Number of nodes ever created (crashed and stopped ones included).
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    /// `true` when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// The protocol config new nodes get.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// Node `i` (after a crash: its last state, frozen).
    pub fn node(&self, i: usize) -> &SimNode {
        &self.slots[i].node
    }
    /// Every node, by index.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = &SimNode> + '_ {
        self.slots.iter().map(|s| &s.node)
    }
    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        node_addr(i)
    }
    /// Node `i`'s current identity.
    pub fn id(&self, i: usize) -> NodeId<SocketAddr> {
        NodeId {
            addr: node_addr(i),
            generation: self.slots[i].generation,
        }
    }
    /// Node `i`'s current generation.
    pub fn generation(&self, i: usize) -> u64 {
        self.slots[i].generation
    }
    /// Node `i`'s status.
    pub fn status(&self, i: usize) -> NodeStatus {
        self.slots[i].status
    }
    /// Whether node `i` is [`NodeStatus::Up`].
    pub fn is_live(&self, i: usize) -> bool {
        self.slots[i].status == NodeStatus::Up
    }
    /// Indices of the nodes that are [`NodeStatus::Up`], ascending.
    pub fn live_indices(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.is_live(i)).collect()
    }
    /// Number of nodes that are [`NodeStatus::Up`].
    pub fn live_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.status == NodeStatus::Up)
            .count()
    }
    /// The index of the node at `addr`, if such a node exists.
    pub fn index_of(&self, addr: &SocketAddr) -> Option<usize> {
        node_index(addr).filter(|&i| i < self.slots.len())
    }
    /// Packets node `i` refused (`handle_packet` returned an error).
    pub fn packet_errors(&self, i: usize) -> u64 {
        self.slots[i].packet_errors
    }
    /// Node `i`'s traffic as the network saw it.
    pub fn net_stats(&self, i: usize) -> &NetStats {
        self.net.stats(i)
    }
    /// Everyone's traffic, summed.
    pub fn net_totals(&self) -> NetStats {
        self.net.totals()
    }
    /// The network (read-only: the fault model's settings, the queue length, ...).
    pub fn net(&self) -> &Network<Vec<u8>, impl Sized> {
        &self.net
    }
    /// The running FNV-1a digest of every packet sent so far: `(time, from, to, payload)`.
    /// Two runs with the same seed and inputs give the same digest.
    pub fn transmit_digest(&self) -> u64 {
        self.net.digest()
    }

    // ----- events -----

    /// The event log, in emission order.
    pub fn events(&self) -> &[LogEntry] {
        &self.events
    }
    /// The logged events node `i` emitted.
    pub fn events_of(&self, i: usize) -> impl Iterator<Item = &LogEntry> + '_ {
        self.events.iter().filter(move |e| e.node == i)
    }
    /// Empties the log (counters stay).
    pub fn clear_events(&mut self) {
        self.events.clear();
    }
    /// Changes what is logged from now on.
    pub fn set_event_log(&mut self, mode: EventLog) {
        self.event_log = mode;
    }
    /// Event counters since the start.
    pub fn counts(&self) -> &EventCounts {
        &self.counts
    }
    /// `MemberDied` events about nodes that were up with that generation (see [`EventCounts`]).
    pub fn false_deaths(&self) -> u64 {
        self.counts.false_deaths
    }
    /// `MemberSuspect` events about nodes that were up with that generation.
    pub fn false_suspects(&self) -> u64 {
        self.counts.false_suspects
    }

    // ----- settings -----

    /// Installs a check run after every k steps (see [`set_invariant_every`](Self::set_invariant_every));
    /// an `Err` panics with the seed and the step count.
    pub fn set_invariant(&mut self, check: Invariant) {
        self.invariant = Some(check);
    }
    /// Removes the invariant.
    pub fn clear_invariant(&mut self) {
        self.invariant = None;
    }
    /// Run the invariant after every `k` steps.
    pub fn set_invariant_every(&mut self, k: u64) {
        self.invariant_every = k.max(1);
    }
    /// Virtual time between two checks of a [`run_until_cond`](Self::run_until_cond) condition
    /// (zero: after every step).
    pub fn set_check_interval(&mut self, d: Duration) {
        self.check_interval = d;
    }
    /// Virtual time between two joins of [`join_all_via`](Self::join_all_via).
    pub fn set_join_stagger(&mut self, d: Duration) {
        self.join_stagger = d;
    }
    /// Replaces the default link behaviour.
    pub fn set_net_config(&mut self, net: NetConfig) {
        self.net.set_config(net);
    }
    /// Overrides (or with `None` restores) the directed link `from → to`.
    pub fn set_link(&mut self, from: usize, to: usize, config: Option<NetConfig>) {
        self.net.set_link(from, to, config);
    }
    /// Partitions the network into `groups` (nodes in no group form one more group).
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.net.partition(groups);
    }
    /// Removes every partition.
    pub fn heal(&mut self) {
        self.net.heal();
    }

    // ----- inputs -----

    fn rng_for(&self, i: usize, generation: u64, lives: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.rng_seed_for(i, generation, lives))
    }

    fn rng_seed_for(&self, i: usize, generation: u64, lives: u64) -> u64 {
        derive_seed(self.seed, ((i as u64) << 16) ^ lives, generation)
    }

    /// The seed of node `i`'s `ChaCha8Rng` in its current life: with its config,
    /// identity and saved placement, all a replay needs to rebuild it.
    pub fn rng_seed(&self, i: usize) -> u64 {
        let slot = &self.slots[i];
        self.rng_seed_for(i, slot.generation, slot.lives)
    }

    /// Counts every datagram sent from now on by message kind (see [`Census`]);
    /// starts the count again if one was running.
    pub fn enable_census(&mut self) {
        self.census = Some(Census::default());
    }

    /// The census since [`enable_census`](Self::enable_census), if one is running.
    pub fn census(&self) -> Option<&Census> {
        self.census.as_ref()
    }

    /// Watches node `i`'s inputs and outputs from now on (see [`Tap`]); replaces any
    /// earlier tap.
    pub fn set_tap(&mut self, i: usize, tap: Box<dyn Tap>) {
        self.tap = Some((i, tap));
    }

    /// Removes the tap and gives it back.
    pub fn take_tap(&mut self) -> Option<Box<dyn Tap>> {
        self.tap.take().map(|(_, tap)| tap)
    }

    fn tap_for(&mut self, i: usize) -> Option<&mut (dyn Tap + 'static)> {
        match &mut self.tap {
            Some((j, tap)) if *j == i => Some(tap.as_mut()),
            _ => None,
        }
    }

    fn make_node(&self, i: usize, generation: u64, lives: u64, saved: &LocalPlacement) -> SimNode {
        let id = NodeId {
            addr: node_addr(i),
            generation,
        };
        let mut node = Node::new(self.config.clone(), id, self.rng_for(i, generation, lives))
            .unwrap_or_else(|e| self.fail(format_args!("invalid grapevine::Config: {e}")));
        if let Err(e) = node.restore(saved.clone()) {
            self.fail(format_args!("node {i} refused its saved placement: {e}"));
        }
        node
    }

    /// The name node `i` is created with: `n{i}`.
    pub fn default_name(i: usize) -> String {
        format!("n{i}")
    }

    fn add_node_with_generation(&mut self, generation: u64) -> usize {
        let i = self.net.add_node();
        debug_assert_eq!(i, self.slots.len());
        let saved = LocalPlacement {
            name: Self::default_name(i),
            ..LocalPlacement::default()
        };
        let node = self.make_node(i, generation, 1, &saved);
        self.slots.push(Slot {
            node,
            generation,
            status: NodeStatus::Up,
            timer_at: None,
            lives: 1,
            packet_errors: 0,
            saved,
        });
        self.drain(i);
        i
    }

    /// Puts node `i` at `location` (datacenter, rack) before it joins: the slot's saved
    /// placement (its "data directory") takes the location and the node restores it,
    /// so later restarts keep it too. Fails if the node has already joined.
    pub fn set_location(&mut self, i: usize, location: Location) {
        let slot = &mut self.slots[i];
        slot.saved.location = location;
        let saved = slot.saved.clone();
        if let Err(e) = slot.node.restore(saved) {
            self.fail(format_args!("node {i} refused its location: {e}"));
        }
    }

    /// Adds a node (generation 1) that has not joined anyone yet; returns its index.
    /// Follow with [`join`](Self::join).
    pub fn add_node(&mut self) -> usize {
        self.add_node_with_generation(1)
    }

    /// Applies `f` to node `i` at the current time, then drains the node's outputs: the
    /// way to feed any input the simulator has no helper for (`set`, `handle_request`, ...).
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut SimNode, Instant) -> R) -> R {
        self.check(self.slots[i].status.is_running(), || {
            format!("node {i} is not running")
        });
        let now = self.now();
        if !std::mem::take(&mut self.tapped_input) {
            if let Some(tap) = self.tap_for(i) {
                tap.opaque(now);
            }
        }
        let r = f(&mut self.slots[i].node, now);
        self.drain(i);
        r
    }

    /// Node `i` writes `key` = `value` in its own state now (a [`Tap`] sees it).
    pub fn set(&mut self, i: usize, key: &str, value: &[u8]) -> Result<(), grapevine::StateError> {
        let now = self.now();
        if let Some(tap) = self.tap_for(i) {
            tap.set(now, key, value);
            self.tapped_input = true;
        }
        self.with_node(i, |n, now| n.set(now, key, value))
    }

    /// Node `i` joins through the nodes `seeds` now.
    pub fn join(&mut self, i: usize, seeds: &[usize]) {
        let addrs: Vec<SocketAddr> = seeds.iter().map(|&s| node_addr(s)).collect();
        let now = self.now();
        if let Some(tap) = self.tap_for(i) {
            tap.join(now, &addrs);
            self.tapped_input = true;
        }
        self.with_node(i, |n, now| n.join(now, addrs));
    }

    /// Node `seed` starts the cluster now (it joins with no seeds), and every other
    /// running node joins through it, one every join-stagger (default 2 ms) after it.
    pub fn join_all_via(&mut self, seed: usize) {
        self.join(seed, &[]);
        let now = self.now();
        let mut k = 0u32;
        for i in 0..self.slots.len() {
            if i != seed && self.slots[i].status == NodeStatus::Up {
                k += 1;
                self.net
                    .schedule(i, now + self.join_stagger * k, Wake::Join(seed));
            }
        }
    }

    /// The virtual time by which every join scheduled by `join_all_via` will have happened.
    pub fn join_window(&self) -> Duration {
        self.join_stagger * u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// Node `i` decommissions ([`Node::leave`]): Leaving, then Left after the ring
    /// delay, then it leaves the cluster. It keeps running (to spread its departure)
    /// until [`stop`](Self::stop).
    pub fn leave(&mut self, i: usize) {
        self.with_node(i, |n, now| n.leave(now));
        self.slots[i].status = NodeStatus::Left;
    }

    /// Node `i` stops gracefully ([`Node::shutdown`]) without giving up its ranges; it
    /// keeps running (to spread its departure) until [`stop`](Self::stop).
    pub fn shutdown(&mut self, i: usize) {
        self.with_node(i, |n, now| n.shutdown(now));
        self.slots[i].status = NodeStatus::Left;
    }

    /// Shuts down node `i` after it left: it stops sending and receiving.
    pub fn stop(&mut self, i: usize) {
        self.net.crash(i);
        let s = &mut self.slots[i];
        s.status = NodeStatus::Stopped;
        s.timer_at = None;
    }

    /// Crashes node `i`: it stops sending and receiving at once; its timers and its
    /// packets still in flight are dropped. Its last state stays readable with [`node`](Self::node).
    pub fn crash(&mut self, i: usize) {
        self.net.crash(i);
        let s = &mut self.slots[i];
        s.status = NodeStatus::Crashed;
        s.timer_at = None;
    }

    /// Restarts node `i` (crashing it first if it is running) as a new process at the same
    /// address: a new [`Node`] with `generation` and a fresh RNG, which joins through `seeds` now.
    pub fn restart(&mut self, i: usize, generation: u64, seeds: &[usize]) {
        if self.slots[i].status.is_running() {
            self.crash(i);
        }
        let lives = self.slots[i].lives + 1;
        let saved = self.slots[i].saved.clone();
        let node = self.make_node(i, generation, lives, &saved);
        self.net.revive(i);
        let s = &mut self.slots[i];
        s.node = node;
        s.generation = generation;
        s.lives = lives;
        s.status = NodeStatus::Up;
        s.timer_at = None;
        self.drain(i);
        self.join(i, seeds);
    }

    /// Crashes node `i` (if running) and starts its saved placement (its name and
    /// tokens, as a data directory moved to another host) as a new node at a new
    /// address, with `generation`, joining through `seeds`. Returns the new index.
    pub fn restart_elsewhere(&mut self, i: usize, generation: u64, seeds: &[usize]) -> usize {
        if self.slots[i].status.is_running() {
            self.crash(i);
        }
        let saved = self.slots[i].saved.clone();
        let j = self.net.add_node();
        debug_assert_eq!(j, self.slots.len());
        let node = self.make_node(j, generation, 1, &saved);
        self.slots.push(Slot {
            node,
            generation,
            status: NodeStatus::Up,
            timer_at: None,
            lives: 1,
            packet_errors: 0,
            saved,
        });
        self.drain(j);
        self.join(j, seeds);
        j
    }

    /// What node `i` last asked to be saved.
    pub fn saved_placement(&self, i: usize) -> &LocalPlacement {
        &self.slots[i].saved
    }

    // ----- the drain rule -----

    fn drain(&mut self, i: usize) {
        let now = self.net.now();
        let tapped = matches!(&self.tap, Some((j, _)) if *j == i);
        let mut transmits = Vec::new();
        let mut events = Vec::new();
        while let Some(t) = self.slots[i].node.poll_transmit() {
            if tapped {
                transmits.push((t.dest, t.payload.clone()));
            }
            if let Some(c) = &mut self.census {
                c.record(&t.payload);
            }
            match self.index_of(&t.dest) {
                Some(to) => self.net.send(i, to, t.payload),
                None => self.net.unroutable(i, &t.payload),
            }
        }
        while let Some(e) = self.slots[i].node.poll_event() {
            if let Event::PlacementChanged(saved) = &e {
                self.slots[i].saved = (**saved).clone();
            }
            if tapped {
                events.push(e.clone());
            }
            self.record(now, i, e);
        }
        if tapped {
            let deadline = self.slots[i].node.poll_timeout();
            if let Some(tap) = self.tap_for(i) {
                tap.drained(&transmits, &events, deadline);
            }
        }
        let slot = &mut self.slots[i];
        let next = slot.node.poll_timeout().map(|d| d.max(now));
        if next != slot.timer_at {
            slot.timer_at = next;
            if let Some(at) = next {
                self.net.schedule(i, at, Wake::Timeout);
            }
        }
    }

    /// Whether `id` is, right now, the identity of a node that is up.
    fn is_up_identity(&self, id: &NodeId<SocketAddr>) -> bool {
        self.index_of(&id.addr).is_some_and(|j| {
            let s = &self.slots[j];
            s.status == NodeStatus::Up && s.generation == id.generation
        })
    }

    fn record(&mut self, at: Instant, node: usize, event: Event<SocketAddr>) {
        let membership = match &event {
            Event::MemberJoined(_) => {
                self.counts.joined += 1;
                true
            }
            Event::MemberSuspect(id) => {
                self.counts.suspect += 1;
                if self.is_up_identity(id) {
                    self.counts.false_suspects += 1;
                }
                true
            }
            Event::MemberRecovered(_) => {
                self.counts.recovered += 1;
                true
            }
            Event::MemberDied(id) => {
                self.counts.died += 1;
                if self.is_up_identity(id) {
                    self.counts.false_deaths += 1;
                }
                true
            }
            Event::MemberLeft(_) => {
                self.counts.left += 1;
                true
            }
            Event::StateChanged { .. } => {
                self.counts.state_changed += 1;
                false
            }
            Event::Request { .. } => {
                self.counts.requests += 1;
                false
            }
            Event::Response { .. } => {
                self.counts.responses += 1;
                false
            }
            Event::RequestFailed { .. } => {
                self.counts.requests_failed += 1;
                false
            }
            Event::RingAgreed { .. } => {
                self.counts.ring_agreed += 1;
                false
            }
            _ => {
                self.counts.other += 1;
                false
            }
        };
        let keep = match self.event_log {
            EventLog::Off => false,
            EventLog::Membership => membership,
            EventLog::All => true,
        };
        if keep {
            self.events.push(LogEntry { at, node, event });
        }
    }

    // ----- running -----

    /// Processes the earliest pending packet or timer, if any is due at or before
    /// `limit`. Returns whether it did.
    fn step_until(&mut self, limit: Instant) -> bool {
        loop {
            let Some(delivery) = self.net.pop(limit) else {
                return false;
            };
            let now = self.net.now();
            match delivery {
                Delivery::Packet { from, to, payload } => {
                    if let Some(tap) = self.tap_for(to) {
                        tap.packet(now, node_addr(from), &payload);
                    }
                    let slot = &mut self.slots[to];
                    if slot
                        .node
                        .handle_packet(now, node_addr(from), &payload)
                        .is_err()
                    {
                        slot.packet_errors += 1;
                    }
                    self.drain(to);
                }
                Delivery::Timer {
                    node,
                    timer: Wake::Timeout,
                } => {
                    let slot = &mut self.slots[node];
                    if slot.timer_at != Some(now) {
                        continue; // stale: the deadline moved since this entry was queued
                    }
                    slot.timer_at = None;
                    if let Some(tap) = self.tap_for(node) {
                        tap.timeout(now);
                    }
                    let slot = &mut self.slots[node];
                    slot.node.handle_timeout(now);
                    self.drain(node);
                }
                Delivery::Timer {
                    node,
                    timer: Wake::Join(via),
                } => {
                    if self.slots[node].status != NodeStatus::Up {
                        continue;
                    }
                    let seeds: &[usize] = if via == node { &[] } else { &[via] };
                    self.join(node, seeds);
                }
            }
            self.after_step(now);
            return true;
        }
    }

    fn after_step(&mut self, now: Instant) {
        self.steps += 1;
        if now == self.last_step_at {
            self.same_instant += 1;
            let limit = self
                .livelock_limit
                .unwrap_or(1_000_000 + 100 * self.slots.len() as u64);
            if self.same_instant > limit {
                self.fail(format_args!(
                    "livelock: more than {limit} steps at one virtual instant"
                ));
            }
        } else {
            self.last_step_at = now;
            self.same_instant = 0;
        }
        if self.steps % self.invariant_every == 0 {
            self.run_invariant();
        }
    }

    /// Runs the invariant now (it also runs on its own every k steps).
    pub fn run_invariant(&mut self) {
        if let Some(mut check) = self.invariant.take() {
            let result = check(self);
            self.invariant = Some(check);
            if let Err(msg) = result {
                self.fail(format_args!("invariant violated: {msg}"));
            }
        }
    }

    /// Processes the earliest pending packet or timer, jumping the clock to it.
    /// Returns `false` when nothing is pending.
    pub fn step(&mut self) -> bool {
        self.step_until(Instant::MAX)
    }

    /// Processes everything due at or before `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: Instant) {
        while self.step_until(t) {}
        self.net.advance_to(t);
    }

    /// [`run_until`](Self::run_until) `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now() + d;
        self.run_until(t);
    }

    /// Runs until `cond` holds, checking it now and then at every check interval of
    /// virtual time (default 10 ms; zero: after every step), but not after `deadline`.
    /// Returns the (virtual) time at which it first held.
    pub fn run_until_cond(
        &mut self,
        deadline: Instant,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Result<Instant, Timeout> {
        loop {
            if cond(self) {
                return Ok(self.now());
            }
            if self.now() >= deadline {
                return Err(Timeout {
                    seed: self.seed,
                    at: self.now(),
                    steps: self.steps,
                });
            }
            if self.check_interval.is_zero() {
                if !self.step_until(deadline) {
                    self.net.advance_to(deadline);
                }
            } else {
                let t = (self.now() + self.check_interval).min(deadline);
                self.run_until(t);
            }
        }
    }

    /// Like [`run_until_cond`](Self::run_until_cond) with a deadline `within` from now,
    /// but [`fail`](Self::fail)s with `what` on timeout. Returns how long it took.
    #[track_caller]
    pub fn expect_within(
        &mut self,
        within: Duration,
        what: &str,
        cond: impl FnMut(&Sim) -> bool,
    ) -> Duration {
        let start = self.now();
        match self.run_until_cond(start + within, cond) {
            Ok(t) => t - start,
            Err(_) => self.fail(format_args!(
                "{what}: not within {:.3} s",
                within.as_secs_f64()
            )),
        }
    }

    /// Runs until [`converged`](Self::converged), for at most `within`;
    /// [`fail`](Self::fail)s with `what` and the first divergence on timeout.
    /// Returns how long it took.
    #[track_caller]
    pub fn expect_converged(&mut self, within: Duration, what: &str) -> Duration {
        let start = self.now();
        match self.run_until_cond(start + within, Sim::converged) {
            Ok(t) => t - start,
            Err(_) => {
                let why = self.first_divergence().unwrap_or_default();
                self.fail(format_args!(
                    "{what}: not converged within {:.3} s: {why}",
                    within.as_secs_f64()
                ))
            }
        }
    }

    /// Runs until `until`, [`fail`](Self::fail)ing if that takes more than `max_steps`
    /// steps (a livelock or an event storm). Returns the steps taken.
    #[track_caller]
    pub fn drive(&mut self, until: Instant, max_steps: u64) -> u64 {
        let start = self.steps;
        while self.step_until(until) {
            if self.steps - start > max_steps {
                self.fail(format_args!(
                    "drive: more than {max_steps} steps before t = {:.3} s",
                    secs(until)
                ));
            }
        }
        self.net.advance_to(until);
        self.steps - start
    }

    // ----- queries -----

    /// Whether member `m`, as seen by someone, is correct about the truth: the current
    /// life of a node that is up must be seen Alive or Suspect; anything else (an old
    /// generation, a crashed, left or stopped node, an unknown address) Dead or Left.
    fn view_is_right(&self, m: &MemberInfo<SocketAddr>) -> (bool, bool) {
        let live = self.is_up_identity(&m.id);
        let seen_live = matches!(m.state, Status::Alive | Status::Suspect);
        (live, live == seen_live)
    }

    /// Checks node `v`'s view (see [`converged`](Self::converged)); on disagreement,
    /// describes the first wrong entry.
    pub fn view_error(&self, v: usize) -> Option<String> {
        let mut live_seen = 0usize;
        for m in self.slots[v].node.members() {
            let (live, right) = self.view_is_right(&m);
            if !right {
                return Some(format!(
                    "node {v} sees {:?} gen {} as {:?} (truth: {})",
                    m.id.addr,
                    m.id.generation,
                    m.state,
                    if live { "up" } else { "not up" }
                ));
            }
            live_seen += usize::from(live);
        }
        let live = self.live_count();
        (live_seen != live).then(|| format!("node {v} sees {live_seen} of the {live} live nodes"))
    }

    /// Whether membership has converged: every [up](NodeStatus::Up) node sees every up
    /// node's current generation (itself included) as Alive or Suspect, and sees every
    /// other identity it knows (older generations, crashed, left, stopped nodes) as Dead
    /// or Left; absent is fine for those. O(N) per up node: call it every few ms of
    /// virtual time, not every step.
    pub fn converged(&self) -> bool {
        self.first_divergence().is_none()
    }

    /// Why [`converged`](Self::converged) is false, or `None` when it is true.
    pub fn first_divergence(&self) -> Option<String> {
        (0..self.slots.len())
            .filter(|&v| self.is_live(v))
            .find_map(|v| self.view_error(v))
    }

    /// The set of identities node `v` considers alive or suspect, sorted.
    pub fn live_view(&self, v: usize) -> Vec<NodeId<SocketAddr>> {
        let mut ids: Vec<_> = self.slots[v]
            .node
            .members()
            .filter(|m| matches!(m.state, Status::Alive | Status::Suspect))
            .map(|m| m.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether every up node considers the same set of identities alive or suspect (right
    /// or wrong: a weaker check than [`converged`](Self::converged)).
    pub fn views_agree(&self) -> bool {
        let mut live = (0..self.slots.len()).filter(|&v| self.is_live(v));
        let Some(first) = live.next() else {
            return true;
        };
        let reference = self.live_view(first);
        live.all(|v| self.live_view(v) == reference)
    }

    /// Whether every up node reports the same [`ring_digest`](grapevine::Node::ring_digest).
    pub fn rings_agree(&self) -> bool {
        let mut digests = self.slots.iter().filter(|s| s.status == NodeStatus::Up);
        let Some(first) = digests.next().map(|s| s.node.ring_digest()) else {
            return true;
        };
        digests.all(|s| s.node.ring_digest() == first)
    }

    /// How node `v` sees node `j`'s current generation, if it knows it.
    pub fn state_seen(&self, v: usize, j: usize) -> Option<Status> {
        let id = self.id(j);
        self.slots[v]
            .node
            .members()
            .find(|m| m.id == id)
            .map(|m| m.state)
    }
}
