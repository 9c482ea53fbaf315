//! The [`Driver`]: a [`grapevine::Node`] plus the bookkeeping a runtime needs.
//!
//! A runtime is a short loop around a [`Driver`]:
//!
//! 1. wait until a datagram arrives, a command arrives, or [`Driver::deadline`] passes;
//! 2. hand what happened to [`Driver::handle_datagram`] or [`Driver::handle_command`],
//!    then call [`Driver::handle_timeout`];
//! 3. call [`Driver::flush`], which sends every transmit and delivers every event
//!    (the core's drain rule);
//! 4. stop when [`Driver::is_done`], and drop the driver last: dropping it answers
//!    [`Command::WhenStopped`].
//!
//! Nothing here makes a protocol decision: the driver only moves bytes, commands,
//! events and time between the outside world and the core.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use grapevine::{LocalPlacement, Status, Topology};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::join::{JoinStep, SeedJoin};
use crate::metrics::{DriverCounts, Metrics};
use crate::persist::{self, PlacementStore};
use crate::record::{self, Entry, KeyringChange, KeyringRecord, OutputDigest, Recorder};
use crate::{
    Clock, Command, CoreNode, Delivery, Event, EventSink, KeyChange, KeysSnapshot, Member, NodeId,
    Options, Ownership, Reply, RingSnapshot, Route, RouteReplica, RuntimeError, StateEntry,
    StatsSnapshot,
};

/// How often the flight log's buffer is handed to the OS, at most.
const RECORD_FLUSH: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Decommissioning: still serving while the core hands its ranges over; the
    /// waiters get a timeout at `until` (the node keeps leaving).
    Decommissioning {
        until: grapevine::Instant,
    },
    /// Stopping: draining so the news gets out, then done at `until`.
    Leaving {
        until: grapevine::Instant,
    },
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
    /// Dropped datagrams since the last WARN summary.
    drops: DropLog,
    leave_timeout: Duration,
    phase: Phase,
    events_dropped: u64,
    send_errors: u64,
    recv_errors: u64,
    /// Answered when the driver is dropped: the loop has ended.
    stop_waiters: Vec<Reply<Result<(), RuntimeError>>>,
    /// Answered once the node is ready.
    ready_waiters: Vec<Reply<Result<(), RuntimeError>>>,
    /// Answered once a decommission reports Left (or times out).
    decommission_waiters: Vec<Reply<Result<(), RuntimeError>>>,
    decommission_timeout: Duration,
    /// Where the node's placement is saved, if it has a data directory.
    store: Option<PlacementStore>,
    persist_errors: u64,
    /// The node's figures for the installed `metrics` recorder.
    metrics: Metrics,
    /// The seeds, their lookups and the attempt schedule.
    join: SeedJoin,
    /// Answered once the node has joined.
    joined_waiters: Vec<Reply<Result<(), RuntimeError>>>,
    /// The flight recorder, if [`Options::record`] is set; dropped after a write error.
    recorder: Option<Recorder>,
    /// Whether an input reached the core since the last drain (an `Outputs` record is due).
    recorded_input: bool,
    /// When the flight log's buffer was last handed to the OS.
    record_flushed: grapevine::Instant,
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
    /// Creates the core node for a socket bound at `local_addr`, gives it its saved
    /// (or new) identity and placement, and joins `options.seeds`.
    ///
    /// With [`Options::data_dir`], the placement saved there is loaded (or a new one
    /// is created and saved, with a name chosen once), checked against the cluster
    /// name, [`Options::name`] and [`Options::location`], and handed to
    /// [`Node::restore`](grapevine::Node::restore) before the node joins. A corrupt
    /// file, another cluster's directory, or a different name or location is an error
    /// and nothing starts.
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
        let mut node = CoreNode::new(options.config.clone(), id, ChaCha8Rng::seed_from_u64(seed))
            .map_err(RuntimeError::Config)?;
        // Before `join`, so that the first datagram is sealed already.
        node.set_keyring(options.keyring.clone());
        let store = match &options.data_dir {
            Some(dir) => {
                let mut store = PlacementStore::new(dir, options.config.cluster_name.clone());
                store.lock()?;
                Some(store)
            }
            None => None,
        };
        let saved = match &store {
            Some(store) => Some(persist::open(
                store,
                options.name.as_deref(),
                options.location.as_ref(),
            )?),
            None if options.name.is_some() || options.location.is_some() => Some(LocalPlacement {
                name: options
                    .name
                    .clone()
                    .unwrap_or_else(|| node.name().to_owned()),
                location: options.location.clone().unwrap_or_default(),
                ..LocalPlacement::default()
            }),
            None => None,
        };
        let restored = saved.clone();
        if let Some(saved) = saved {
            tracing::debug!(
                name = %saved.name,
                tokens = saved.tokens.len(),
                status = ?saved.status,
                "restoring placement"
            );
            node.restore(saved).map_err(RuntimeError::Restore)?;
        }
        let decommission_timeout = options
            .decommission_timeout
            .unwrap_or_else(|| (options.config.gossip_interval * 20).max(Duration::from_secs(10)));
        let leave_timeout = options
            .leave_timeout
            .unwrap_or(options.config.gossip_interval * 3);
        let now = clock.now();
        let recorder = match &options.record {
            Some(record) => {
                let start = record::start_record(&options.config, node.id(), seed, restored, now);
                let mut recorder = Recorder::create(record.clone(), start).map_err(|source| {
                    RuntimeError::DataDir {
                        path: record.dir.clone(),
                        source,
                    }
                })?;
                // The keyring the node started with: an input like any later change.
                if let Some(keyring) = &options.keyring {
                    let keys = keyring.keys().copied().collect();
                    let entry = Entry::Keyring(KeyringRecord::new(
                        &KeyringChange::Replace(keys),
                        record.keys,
                    ));
                    recorder
                        .write(&entry)
                        .map_err(|source| RuntimeError::DataDir {
                            path: record.dir.clone(),
                            source,
                        })?;
                }
                tracing::info!(dir = %record.dir.display(), seed, keys = record.keys, "recording inputs");
                Some(recorder)
            }
            None => None,
        };
        let mut driver = Driver {
            node,
            clock,
            started: now,
            sinks: Vec::new(),
            backlog: Some(VecDeque::new()),
            event_capacity: options.event_capacity.max(1),
            last_heard: HashMap::new(),
            drops: DropLog::default(),
            leave_timeout,
            phase: Phase::Running,
            events_dropped: 0,
            send_errors: 0,
            recv_errors: 0,
            stop_waiters: Vec::new(),
            ready_waiters: Vec::new(),
            decommission_waiters: Vec::new(),
            decommission_timeout,
            store,
            persist_errors: 0,
            metrics: Metrics::new(
                local_addr.to_string(),
                options.config.max_requests_in_flight,
            ),
            join: SeedJoin::new(
                local_addr,
                options.seeds.clone(),
                options.seed_hosts.clone(),
                options.resolver.clone(),
                options.join_retry,
                now,
            ),
            joined_waiters: Vec::new(),
            recorder,
            recorded_input: false,
            record_flushed: now,
        };
        // Seeds that are all host names wait for their first lookup (in
        // `handle_timeout`): joining without them would make this node the first of a
        // new cluster.
        if driver.join.can_start_now() {
            let seeds = driver.join.seeds();
            driver.record(|| Entry::Join {
                now: now.as_nanos(),
                seeds: seeds.clone(),
            });
            driver.node.join(now, seeds);
            driver.join.started(now);
        }
        Ok(driver)
    }

    /// The node's identity.
    pub fn id(&self) -> &NodeId {
        self.node.id()
    }

    /// The node's stable name.
    pub fn name(&self) -> &str {
        self.node.name()
    }

    /// The core node, read-only.
    pub fn node(&self) -> &CoreNode {
        &self.node
    }

    /// How many undelivered events each subscriber may hold ([`Options::event_capacity`]).
    pub fn event_capacity(&self) -> usize {
        self.event_capacity
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
        if let Some(recorder) = &mut self.recorder {
            self.recorded_input = true;
            if let Err(error) = recorder.write_packet(now.as_nanos(), from, data) {
                self.record_failed(&error);
            }
        }
        match self.node.handle_packet(now, from, data) {
            // Only members' addresses are remembered, and the table is pruned to them
            // when it outgrows them: a flood from many sources cannot grow it.
            Ok(()) if self.node.knows(&from) => {
                // Only a new source can grow the table: count the members (a scan) then
                // and only then, not on every datagram.
                let new_source = self.last_heard.insert(from, now).is_none();
                if new_source && self.last_heard.len() > 2 * self.node.members().count() + 64 {
                    let node = &self.node;
                    self.last_heard.retain(|a, _| node.knows(a));
                }
            }
            Ok(()) => {}
            Err(e) => {
                tracing::trace!(%from, len = data.len(), error = %e, "dropped datagram");
                self.drops.record(from, e.reason());
            }
        }
        if let Some(summary) = self.drops.summary(now) {
            tracing::warn!("{summary}");
        }
    }

    /// Counts and logs an error from the socket's receive.
    pub fn handle_recv_error(&mut self, error: &io::Error) {
        self.recv_errors += 1;
        tracing::debug!(%error, "UDP receive failed");
    }

    /// Lets the core's timers fire if any is due, ends a graceful leave whose time is
    /// up, and times out a decommission that has not finished.
    pub fn handle_timeout(&mut self) {
        let now = self.clock.now();
        match self.phase {
            Phase::Done => return,
            Phase::Leaving { until } if now >= until => {
                self.phase = Phase::Done;
                return;
            }
            Phase::Decommissioning { until } if now >= until => {
                self.phase = Phase::Running;
                for waiter in self.decommission_waiters.drain(..) {
                    waiter.send(Err(RuntimeError::Timeout));
                }
            }
            _ => {}
        }
        // Drops held back by the rate limit are reported once it allows, even when no
        // further datagram arrives to trigger it.
        if let Some(summary) = self.drops.summary(now) {
            tracing::warn!("{summary}");
        }
        // Joining is over once the node stops: a lookup answered while it leaves must
        // not start it.
        if self.phase == Phase::Running && self.join.wants_poll(now, self.is_joined()) {
            self.poll_join(now);
        }
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.record(|| Entry::Timeout {
                now: now.as_nanos(),
            });
            self.node.handle_timeout(now);
        }
    }

    /// Whether the node has joined: it has a live member, or no seed to contact.
    fn is_joined(&self) -> bool {
        self.join.is_started() && (self.node.live_members() > 0 || self.join.only_self())
    }

    /// Collects seed lookups and makes the join attempt that is due.
    fn poll_join(&mut self, now: grapevine::Instant) {
        let joined = self.is_joined();
        match self.join.poll(now, joined) {
            JoinStep::Start(seeds) => {
                tracing::debug!(seeds = seeds.len(), "joining");
                self.record(|| Entry::Join {
                    now: now.as_nanos(),
                    seeds: seeds.clone(),
                });
                self.node.join(now, seeds);
                self.join.started(now);
            }
            JoinStep::Update(seeds) => {
                self.record(|| Entry::SetSeeds {
                    now: now.as_nanos(),
                    seeds: seeds.clone(),
                });
                self.node.set_seeds(now, seeds);
            }
            JoinStep::Idle => {}
        }
    }

    /// Lists the keys, after applying `change`.
    fn change_keys(&mut self, change: Option<KeyChange>) -> Result<KeysSnapshot, RuntimeError> {
        if self.node.keyring_mut().is_none() {
            return Err(RuntimeError::NotEncrypted);
        }
        if let (Some(change), Some(recorder)) = (&change, &self.recorder) {
            let change = match change {
                KeyChange::Install(key) => KeyringChange::Install(*key),
                KeyChange::Use(key) => KeyringChange::Use(*key),
                KeyChange::Remove(key) => KeyringChange::Remove(*key),
            };
            let entry = Entry::Keyring(KeyringRecord::new(&change, recorder.keys()));
            self.record(|| entry);
        }
        let ring = self.node.keyring_mut().ok_or(RuntimeError::NotEncrypted)?;
        match &change {
            Some(KeyChange::Install(key)) => ring.install(*key),
            Some(KeyChange::Use(key)) => ring.use_key(key).map_err(RuntimeError::Keyring)?,
            Some(KeyChange::Remove(key)) => ring.remove(key).map_err(RuntimeError::Keyring)?,
            None => {}
        }
        let keys = KeysSnapshot::of(ring);
        if let Some(change) = change {
            // The change shows the key's fingerprint only.
            tracing::info!(
                ?change,
                primary = keys.primary().unwrap_or("-"),
                installed = keys.fingerprints.len(),
                "keyring changed"
            );
        }
        Ok(keys)
    }

    /// Applies one command from a handle.
    pub fn handle_command(&mut self, command: Command) {
        let now = self.clock.now();
        let running = matches!(self.phase, Phase::Running | Phase::Decommissioning { .. });
        match command {
            Command::Join(seeds) => {
                if running {
                    self.join.add(&seeds);
                    let seeds = self.join.seeds();
                    self.record(|| Entry::Join {
                        now: now.as_nanos(),
                        seeds: seeds.clone(),
                    });
                    self.node.join(now, seeds);
                    self.join.started(now);
                }
            }
            Command::Joined(reply) => {
                if !running {
                    reply.send(Err(RuntimeError::Stopped));
                } else if self.is_joined() {
                    reply.send(Ok(()));
                } else {
                    self.joined_waiters.push(reply);
                }
            }
            Command::Keyring { change, reply } => reply.send(self.change_keys(change)),
            Command::Set { key, value, reply } => reply.send(if running {
                self.record(|| Entry::Set {
                    now: now.as_nanos(),
                    key: key.clone(),
                    value: value.clone(),
                });
                self.node
                    .set(now, &key, &value)
                    .map_err(RuntimeError::State)
            } else {
                Err(RuntimeError::Stopped)
            }),
            Command::Delete { key, reply } => reply.send(if running {
                self.record(|| Entry::Delete {
                    now: now.as_nanos(),
                    key: key.clone(),
                });
                self.node.delete(now, &key).map_err(RuntimeError::State)
            } else {
                Err(RuntimeError::Stopped)
            }),
            Command::Get { node, key, reply } => {
                reply.send(self.node.get(&node, &key).map(<[u8]>::to_vec))
            }
            Command::Keys { node, reply } => {
                let mut entries: Vec<StateEntry> = self
                    .node
                    .keys(&node)
                    .map(|(key, version, value)| StateEntry {
                        key: key.to_owned(),
                        version,
                        value: value.to_vec(),
                    })
                    .collect();
                entries.sort_by(|a, b| a.key.cmp(&b.key));
                reply.send(entries)
            }
            Command::Request {
                key,
                payload,
                reply,
            } => reply.send(if running {
                self.record(|| Entry::Request {
                    now: now.as_nanos(),
                    key: key.clone(),
                    payload: payload.clone(),
                });
                let accepted = self.node.handle_request(now, &key, payload);
                if let Ok(id) = accepted {
                    self.metrics.request_started(id, now);
                }
                accepted.map_err(RuntimeError::Request)
            } else {
                Err(RuntimeError::Stopped)
            }),
            Command::RequestTo {
                key,
                to,
                payload,
                reply,
            } => reply.send(if running {
                self.record(|| Entry::RequestTo {
                    now: now.as_nanos(),
                    key: key.clone(),
                    to: to.addr,
                    generation: to.generation,
                    payload: payload.clone(),
                });
                self.node
                    .handle_request_to(now, &key, &to, payload)
                    .map_err(RuntimeError::Request)
            } else {
                Err(RuntimeError::Stopped)
            }),
            Command::Respond { id, payload, reply } => reply.send(if running {
                self.record(|| Entry::Respond {
                    now: now.as_nanos(),
                    id: id.0,
                    payload: payload.clone(),
                });
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
            Command::Shutdown => self.shutdown(),
            Command::Decommission(reply) => {
                if running {
                    self.decommission(reply);
                } else {
                    reply.send(Err(RuntimeError::Stopped));
                }
            }
            Command::RemoveNode { name, reply } => reply.send(if running {
                self.record(|| Entry::RemoveNode {
                    now: now.as_nanos(),
                    name: name.clone(),
                });
                self.node
                    .remove_node(now, &name)
                    .map_err(RuntimeError::Remove)
            } else {
                Err(RuntimeError::Stopped)
            }),
            Command::Dump(reply) => reply.send(crate::dump::dump_json(&self.node, now)),
            Command::Ready(reply) => {
                if !running {
                    reply.send(Err(RuntimeError::Stopped));
                } else if self.node.is_ready() {
                    reply.send(Ok(()));
                } else {
                    self.ready_waiters.push(reply);
                }
            }
            Command::Abort => self.phase = Phase::Done,
            Command::WhenStopped(reply) => self.stop_waiters.push(reply),
        }
    }

    fn subscribe(&mut self, mut sink: EventSink) {
        if let Some(backlog) = self.backlog.take() {
            for event in &backlog {
                match sink.deliver(event) {
                    Delivery::Delivered => {}
                    Delivery::Full => self.events_dropped += 1,
                    Delivery::Closed => return,
                }
            }
        }
        self.sinks.push(sink);
    }

    /// Every handle is gone: stop gracefully (keeping this node's ranges), then stop.
    pub fn handle_commands_closed(&mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if matches!(self.phase, Phase::Running | Phase::Decommissioning { .. }) {
            let now = self.clock.now();
            self.record(|| Entry::Shutdown {
                now: now.as_nanos(),
            });
            self.node.shutdown(now);
            self.stopping(now);
        }
    }

    /// Drain until the leave is spread ([`grapevine::Node::is_leave_spread`], checked
    /// in `flush` once the datagrams are out) or the leave timeout, then stop.
    fn stopping(&mut self, now: grapevine::Instant) {
        self.phase = Phase::Leaving {
            until: now + self.leave_timeout,
        };
        for waiter in self
            .ready_waiters
            .drain(..)
            .chain(self.joined_waiters.drain(..))
        {
            waiter.send(Err(RuntimeError::Stopped));
        }
    }

    fn decommission(&mut self, reply: Reply<Result<(), RuntimeError>>) {
        let now = self.clock.now();
        self.decommission_waiters.push(reply);
        if self.phase == Phase::Running {
            self.record(|| Entry::Leave {
                now: now.as_nanos(),
            });
            self.node.leave(now);
            self.phase = Phase::Decommissioning {
                until: now + self.decommission_timeout,
            };
        }
        // A node that held no ranges left at once; one that is Leaving reports Left
        // later (see `flush`).
        if self.node.topology_state() != Topology::Leaving {
            self.decommissioned(now);
        }
    }

    fn decommissioned(&mut self, now: grapevine::Instant) {
        for waiter in self.decommission_waiters.drain(..) {
            waiter.send(Ok(()));
        }
        if !matches!(self.phase, Phase::Leaving { .. } | Phase::Done) {
            self.stopping(now);
        }
    }

    /// Saves a changed placement; a failure is logged and counted (the node keeps
    /// running, but a restart may not find its tokens).
    fn persist(&mut self, placement: &LocalPlacement) {
        if let Some(store) = &self.store {
            match store.save(placement) {
                Ok(()) => tracing::debug!(
                    name = %placement.name,
                    tokens = placement.tokens.len(),
                    status = ?placement.status,
                    "placement saved"
                ),
                Err(error) => {
                    self.persist_errors += 1;
                    tracing::error!(%error, "cannot save the placement");
                }
            }
        }
    }

    /// The drain rule: saves a changed placement first (before the datagrams that
    /// announce it leave), then hands every pending transmit to `send`, then every
    /// pending event to the subscribers, and answers readiness and decommission
    /// waiters. Send errors are counted and logged, never fatal (UDP is lossy anyway;
    /// a full socket buffer is a drop).
    pub fn flush(&mut self, mut send: impl FnMut(SocketAddr, &[u8]) -> io::Result<()>) {
        let mut events = Vec::new();
        let mut left = false;
        let mut digest = self.recorded_input.then(OutputDigest::default);
        let mut members_changed = false;
        let now = self.clock.now();
        while let Some(event) = self.node.poll_event() {
            if let Some(digest) = &mut digest {
                digest.event(&event);
            }
            members_changed |= self.metrics.on_event(&event, now);
            if let Event::PlacementChanged(placement) = &event {
                self.persist(placement);
                left |= placement.status == Some(Topology::Left);
            }
            events.push(event);
        }
        if left {
            self.decommissioned(now);
        }
        while let Some(transmit) = self.node.poll_transmit() {
            if let Some(digest) = &mut digest {
                digest.transmit(transmit.dest, &transmit.payload);
            }
            if self.phase == Phase::Done {
                continue;
            }
            if let Err(error) = send(transmit.dest, &transmit.payload) {
                self.send_errors += 1;
                tracing::debug!(dest = %transmit.dest, %error, "UDP send failed");
            }
        }
        if let Some(digest) = digest {
            let outputs = digest.finish(self.node.poll_timeout());
            if let Some(recorder) = &mut self.recorder
                && let Err(error) = recorder.write_outputs(&outputs)
            {
                self.record_failed(&error);
            }
            self.recorded_input = false;
            self.snapshot_if_wanted(now);
            // Handing the buffer to the OS at most every RECORD_FLUSH keeps a busy
            // node at one write per 64 KiB or per period, not one per datagram; a
            // killed process loses at most that period's tail (the log stays valid).
            let now = self.clock.now();
            if now >= self.record_flushed + RECORD_FLUSH {
                self.record_flushed = now;
                if let Some(recorder) = &mut self.recorder
                    && let Err(error) = recorder.flush()
                {
                    self.record_failed(&error);
                }
            }
        }
        // The datagrams that tell the others are out: a leave that is spread is over.
        if matches!(self.phase, Phase::Leaving { .. }) && self.node.is_leave_spread() {
            self.phase = Phase::Done;
        }
        for event in events {
            if let Some(backlog) = &mut self.backlog {
                if backlog.len() < self.event_capacity {
                    backlog.push_back(event);
                } else {
                    self.events_dropped += 1;
                }
                continue;
            }
            let mut dropped = 0;
            self.sinks.retain_mut(|sink| match sink.deliver(&event) {
                Delivery::Delivered => true,
                Delivery::Full => {
                    dropped += 1;
                    true
                }
                Delivery::Closed => false,
            });
            self.events_dropped += dropped;
        }
        if !self.joined_waiters.is_empty() && self.is_joined() {
            for waiter in self.joined_waiters.drain(..) {
                waiter.send(Ok(()));
            }
        }
        if !self.ready_waiters.is_empty() && self.node.is_ready() {
            for waiter in self.ready_waiters.drain(..) {
                waiter.send(Ok(()));
            }
        }
        let counts = DriverCounts {
            events_dropped: self.events_dropped,
            send_errors: self.send_errors,
            recv_errors: self.recv_errors,
            persist_errors: self.persist_errors,
        };
        self.metrics.record(&self.node, counts, members_changed);
    }

    /// Appends a record to the flight log, if recording. `entry` is built only then.
    fn record(&mut self, entry: impl FnOnce() -> Entry) {
        if let Some(recorder) = &mut self.recorder {
            let entry = entry();
            self.recorded_input |= !matches!(entry, Entry::Outputs(_));
            if let Err(error) = recorder.write(&entry) {
                self.record_failed(&error);
            }
        }
    }

    /// Begins the flight log's next segment with a snapshot of the node, if the
    /// current one is full. Called at a turn boundary (the outputs drained and their
    /// record written), so the snapshot lines up with the recorded output digests.
    fn snapshot_if_wanted(&mut self, now: grapevine::Instant) {
        let Some(recorder) = &mut self.recorder else {
            return;
        };
        if !recorder.wants_snapshot() {
            return;
        }
        let written =
            record::SnapshotRecord::new(&self.node, now, recorder.started(), recorder.keys())
                .map_err(io::Error::other)
                .and_then(|snapshot| recorder.write_snapshot(snapshot));
        if let Err(error) = written {
            self.record_failed(&error);
        }
    }

    /// A write to the flight log failed: stop recording (the node runs on; a log with
    /// a hole in it could not be replayed anyway).
    fn record_failed(&mut self, error: &io::Error) {
        if let Some(recorder) = self.recorder.take() {
            tracing::error!(dir = %recorder.dir().display(), %error, "flight recorder stopped");
        }
    }

    /// Whether the flight recorder is running.
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// The name of the member at `addr`, if its placement record is known.
    pub fn name_of(&self, addr: SocketAddr) -> Option<String> {
        self.node
            .topology()
            .filter(|r| r.addr == addr)
            .max_by_key(|r| r.rank())
            .map(|r| r.name)
    }

    /// When the loop must wake up even if nothing arrives: the core's next timer, or
    /// the end of a graceful leave. `None` means "only on input".
    pub fn deadline(&self) -> Option<std::time::Instant> {
        let core = self.core_deadline();
        let at = match self.phase {
            Phase::Done => return Some(self.clock.origin),
            Phase::Leaving { until } | Phase::Decommissioning { until } => {
                Some(core.map_or(until, |t| t.min(until)))
            }
            Phase::Running => core,
        };
        at.and_then(|t| self.clock.to_std(t))
    }

    /// How long until [`Driver::deadline`], from now; `None` means "only on input".
    pub fn time_to_deadline(&self) -> Option<Duration> {
        let core = self.core_deadline();
        let at = match self.phase {
            Phase::Done => return Some(Duration::ZERO),
            Phase::Leaving { until } | Phase::Decommissioning { until } => {
                Some(core.map_or(until, |t| t.min(until)))
            }
            Phase::Running => core,
        };
        at.map(|t| t - self.clock.now())
    }

    /// The soonest of the core's timer and the next join attempt (or lookup check).
    fn core_deadline(&self) -> Option<grapevine::Instant> {
        let join = match self.phase {
            Phase::Running => self.join.deadline(self.clock.now()),
            _ => None,
        };
        [self.node.poll_timeout(), join, self.drops.due()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the loop should exit (after an abort, or once a graceful leave is over).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// A snapshot of every known member.
    pub fn members(&self) -> Vec<Member> {
        let now = self.clock.now();
        let local = self.node.id().clone();
        let names = self.names();
        self.node
            .members()
            .map(|m| {
                let is_local = m.id == local;
                Member {
                    name: names.get(&m.id.addr).cloned(),
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

    /// Address to name, from the placement records (the highest-ranked record per address).
    fn names(&self) -> HashMap<SocketAddr, String> {
        let mut best: HashMap<SocketAddr, grapevine::PlacementRecord<SocketAddr>> = HashMap::new();
        for r in self.node.topology() {
            match best.get(&r.addr) {
                Some(slot) if slot.rank() >= r.rank() => {}
                _ => {
                    best.insert(r.addr, r);
                }
            }
        }
        best.into_iter().map(|(a, r)| (a, r.name)).collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        let mut members_live = 0;
        let mut members_known = 0;
        for m in self.node.members() {
            members_known += 1;
            if matches!(m.state, Status::Alive | Status::Suspect) {
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
            persist_errors: self.persist_errors,
            tracked_sources: self.last_heard.len() + self.drops.sources.len(),
            health: self.node.health(),
            rumours_queued: self.node.rumours_queued(),
            max_request_bytes: self.node.max_request_bytes(),
        }
    }

    /// The token ring: the natural replicas' tokens by owner name, and each member's
    /// share, with its address, liveness and topology state.
    pub fn ring(&self) -> RingSnapshot {
        ring_snapshot(&self.node)
    }

    /// Where `key` routes.
    pub fn route(&self, key: Vec<u8>) -> Route {
        let set = self.node.route(&key);
        Route {
            token: set.token,
            replicas: set.replicas.into_iter().map(RouteReplica::from).collect(),
            pending: set.pending.into_iter().map(RouteReplica::from).collect(),
            ring_digest: self.node.ring_digest(),
            key,
        }
    }
}

/// Dropping the driver is the end of the loop: answer [`Command::WhenStopped`].
impl Drop for Driver {
    fn drop(&mut self) {
        // The log is complete before anyone hears the node has stopped.
        if let Some(recorder) = &mut self.recorder
            && let Err(error) = recorder.flush()
        {
            tracing::error!(%error, "cannot flush the flight log");
        }
        let panicked = std::thread::panicking();
        // Release the data directory's lock before saying the node has stopped: a
        // waiter may start the next node on the same directory at once.
        self.store = None;
        for waiter in self.stop_waiters.drain(..) {
            waiter.send(if panicked {
                Err(RuntimeError::Io(io::Error::other(
                    "the node's loop panicked",
                )))
            } else {
                Ok(())
            });
        }
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

/// The token ring of `node`, as [`Driver::ring`] reports it: also for a core that no
/// driver runs, such as one re-run from a flight log (`grapevine web --replay`).
pub fn ring_snapshot(node: &CoreNode) -> RingSnapshot {
    let ring = node.ring();
    let rf = node.config().replication_factor;
    let tokens: Vec<(i64, String)> = ring
        .tokens()
        .map(|(t, o)| (t, o.name().to_string()))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, name) in &tokens {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    let replica: HashMap<String, f64> = ring
        .ownership(rf)
        .into_iter()
        .map(|(o, share)| (o.name().to_string(), share))
        .collect();
    let primary: HashMap<String, f64> = ring
        .ownership(1)
        .into_iter()
        .map(|(o, share)| (o.name().to_string(), share))
        .collect();
    let members: HashMap<SocketAddr, grapevine::Status> =
        node.members().map(|m| (m.id.addr, m.state)).collect();
    let mut ownership: Vec<Ownership> = node
        .topology()
        .map(|r| Ownership {
            name: r.name.clone(),
            addr: r.addr,
            state: members
                .get(&r.addr)
                .copied()
                .unwrap_or(grapevine::Status::Dead),
            topology: r.status,
            datacenter: r.location.datacenter.clone(),
            rack: r.location.rack.clone(),
            tokens: counts.get(r.name.as_str()).copied().unwrap_or(0),
            primary: primary.get(&r.name).copied().unwrap_or(0.0),
            replica: replica.get(&r.name).copied().unwrap_or(0.0),
        })
        .collect();
    ownership.sort_by(|a, b| a.name.cmp(&b.name));
    RingSnapshot {
        name: node.name().to_owned(),
        ready: node.is_ready(),
        digest: node.ring_digest(),
        replication_factor: rf,
        tokens,
        ownership,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
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
    fn drops_are_summarised_at_most_once_a_period_and_stay_bounded() {
        let mut log = DropLog::default();
        let t0 = grapevine::Instant::from_secs(100);
        for i in 0..10_000u32 {
            let from = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946));
            log.record(
                from,
                if i % 4 == 0 {
                    "foreign_cluster"
                } else {
                    "unauthenticated"
                },
            );
        }
        assert_eq!(log.sources.len(), DropLog::SOURCES, "sources are bounded");
        let summary = log.summary(t0).expect("a summary");
        assert!(summary.contains("dropped 10000 datagrams"), "{summary}");
        assert!(summary.contains("foreign_cluster 2500"), "{summary}");
        assert!(summary.contains("unauthenticated 7500"), "{summary}");
        assert!(summary.contains("others"), "{summary}");
        log.record("10.0.0.1:1".parse().unwrap(), "replayed");
        assert_eq!(
            log.summary(t0 + Duration::from_secs(5)),
            None,
            "rate-limited"
        );
        assert_eq!(
            log.due(),
            Some(t0 + DropLog::PERIOD),
            "the loop wakes for it"
        );
        let later = log.summary(t0 + DropLog::PERIOD).expect("after the period");
        assert!(
            later.contains("replayed 1") && later.contains("10.0.0.1:1"),
            "{later}"
        );
        assert_eq!(log.summary(t0 + DropLog::PERIOD * 3), None, "nothing new");
        assert_eq!(log.due(), None);
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
    fn keys_list_a_nodes_state_sorted_and_stats_show_the_queue() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut d = driver(Options::new(addr));
        let before = ask(&mut d, Command::Stats);
        assert_eq!(before.health, 0);
        assert!(before.max_request_bytes > 0);
        for (key, value) in [("b", "2"), ("a", "1")] {
            let set = ask(&mut d, |reply| Command::Set {
                key: key.into(),
                value: value.as_bytes().to_vec(),
                reply,
            });
            assert!(set.is_ok(), "{set:?}");
        }
        let keys = ask(&mut d, |reply| Command::Keys { node: addr, reply });
        let app: Vec<(&str, &[u8])> = keys
            .iter()
            .filter(|e| !e.key.starts_with(grapevine::state::RESERVED_PREFIX))
            .map(|e| (e.key.as_str(), e.value.as_slice()))
            .collect();
        assert_eq!(app, [("a", &b"1"[..]), ("b", &b"2"[..])]);
        assert!(keys.windows(2).all(|w| w[0].key < w[1].key), "sorted");
        let other = ask(&mut d, |reply| Command::Keys {
            node: "127.0.0.1:10".parse().unwrap(),
            reply,
        });
        assert!(other.is_empty(), "an unknown node has no keys");
        // Each write is a rumour waiting to be piggybacked (no peer took it yet).
        let after = ask(&mut d, Command::Stats);
        assert!(
            after.rumours_queued >= before.rumours_queued + 2,
            "{} then {}",
            before.rumours_queued,
            after.rumours_queued
        );
    }

    #[test]
    fn leave_then_stop() {
        let mut d =
            driver(Options::new("127.0.0.1:0".parse().unwrap()).leave_timeout(Duration::ZERO));
        d.handle_command(Command::Shutdown);
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
}

/// Dropped datagrams by reason and by source, summarised at WARN at most once per
/// [`DropLog::PERIOD`], so a wrong `--cluster` or key is visible on both sides without
/// flooding the log. Bounded: at most [`DropLog::SOURCES`] sources are named.
#[derive(Debug, Default)]
struct DropLog {
    reasons: std::collections::BTreeMap<&'static str, u64>,
    sources: HashMap<SocketAddr, u64>,
    others: u64,
    last: Option<grapevine::Instant>,
}

impl DropLog {
    const PERIOD: Duration = Duration::from_secs(10);
    const SOURCES: usize = 16;

    fn record(&mut self, from: SocketAddr, reason: &'static str) {
        *self.reasons.entry(reason).or_default() += 1;
        if let Some(n) = self.sources.get_mut(&from) {
            *n += 1;
        } else if self.sources.len() < Self::SOURCES {
            self.sources.insert(from, 1);
        } else {
            self.others += 1;
        }
    }

    /// When the drops held back may be summarised, if any are.
    fn due(&self) -> Option<grapevine::Instant> {
        if self.reasons.is_empty() {
            None
        } else {
            Some(
                self.last
                    .map_or(grapevine::Instant::ZERO, |t| t + Self::PERIOD),
            )
        }
    }

    /// The summary to log now, if drops happened and the period has passed.
    fn summary(&mut self, now: grapevine::Instant) -> Option<String> {
        if self.reasons.is_empty() || self.last.is_some_and(|t| now < t + Self::PERIOD) {
            return None;
        }
        self.last = Some(now);
        let total: u64 = self.reasons.values().sum();
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let mut top: Vec<(SocketAddr, u64)> = self.sources.drain().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut sources: Vec<String> = top
            .iter()
            .take(5)
            .map(|(a, n)| format!("{a} ×{n}"))
            .collect();
        if self.others > 0 || top.len() > 5 {
            sources.push("others".into());
        }
        self.reasons.clear();
        self.others = 0;
        Some(format!(
            "dropped {total} datagrams ({}) from {}: check --cluster and the keys",
            reasons.join(", "),
            sources.join(", ")
        ))
    }
}
