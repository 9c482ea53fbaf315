//! Joining like serf and chitchat: keep trying the seeds until the node joins, and
//! resolve seeds given as host names again on every attempt and periodically
//! afterwards, so a seed list can be a DNS name whose addresses change (a Kubernetes
//! headless service).
//!
//! The core announces itself to its seeds every gossip round while it has no live
//! member (one small datagram per seed). What the driver adds here is the part that
//! needs I/O or policy: the attempts, paced by capped exponential backoff
//! ([`JoinRetry`]); the host-name lookups, which block, so they run on a resolver
//! thread of their own and never in the node's loop (a slow DNS server must not
//! delay acks and get this node suspected); handing the resolved addresses to the
//! core with [`Node::set_seeds`](grapevine::Node::set_seeds); and a WARN line per
//! attempt while the node is alone.
//!
//! A node whose seeds are all host names starts (joins in the core) once a lookup
//! gives an address. If the only address is its own, it is the first node, as a
//! Cassandra seed that lists itself.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

use grapevine::Instant;

/// How often a node tries its seeds: `initial` after the first attempt, doubling up to
/// `max` while it has not joined; every `refresh` once it has (re-resolving host
/// names, so the seed list stays current for a later partition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JoinRetry {
    /// The delay after the first attempt (default 1 s).
    pub initial: Duration,
    /// The longest delay between two attempts while not joined (default 30 s,
    /// serf's `retry_interval`).
    pub max: Duration,
    /// The delay between two re-resolutions once joined (default 30 s).
    pub refresh: Duration,
}

impl Default for JoinRetry {
    fn default() -> Self {
        JoinRetry {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            refresh: Duration::from_secs(30),
        }
    }
}

impl JoinRetry {
    /// A schedule with these delays (`initial` and `max` at least 1 ms).
    pub fn new(initial: Duration, max: Duration, refresh: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        JoinRetry {
            initial,
            max: max.max(initial),
            refresh: refresh.max(Duration::from_millis(1)),
        }
    }

    /// The delay after attempt number `attempt` (0 for the first) while not joined.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.initial
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// A lookup of `host:port`.
type Lookup = dyn Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// Resolves a seed written `host:port` to addresses. Blocking: the driver calls it
/// on its resolver thread only.
#[derive(Clone)]
pub struct Resolver(Arc<Lookup>);

impl Resolver {
    /// The system's resolver (`getaddrinfo`, which reads `/etc/hosts` and DNS).
    pub fn system() -> Self {
        Resolver::new(|host: &str| Ok(host.to_socket_addrs()?.collect()))
    }

    /// A resolver that calls `f` (tests, or a custom discovery).
    pub fn new(f: impl Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static) -> Self {
        Resolver(Arc::new(f))
    }

    /// Resolves `host:port`.
    pub fn resolve(&self, host: &str) -> io::Result<Vec<SocketAddr>> {
        (self.0)(host)
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::system()
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

/// The answers of one round of lookups, host by host.
type Lookups = Vec<(String, io::Result<Vec<SocketAddr>>)>;

/// The resolver thread: takes a list of hosts, answers with their lookups. It ends
/// when the driver drops its sender.
struct ResolverThread {
    ask: Sender<Vec<String>>,
    answers: Receiver<Lookups>,
}

impl ResolverThread {
    fn spawn(resolver: Resolver) -> io::Result<Self> {
        let (ask, questions) = mpsc::channel::<Vec<String>>();
        let (answer, answers) = mpsc::channel();
        std::thread::Builder::new()
            .name("grapevine-resolver".into())
            .spawn(move || {
                for hosts in questions {
                    let lookups: Lookups = hosts
                        .into_iter()
                        .map(|h| {
                            let r = resolver.resolve(&h);
                            (h, r)
                        })
                        .collect();
                    if answer.send(lookups).is_err() {
                        return;
                    }
                }
            })?;
        Ok(ResolverThread { ask, answers })
    }
}

/// What [`SeedJoin::poll`] asks of the driver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JoinStep {
    /// Nothing to do.
    Idle,
    /// Start the core with these seeds (the first lookup that gave an address).
    Start(Vec<SocketAddr>),
    /// The seeds changed: hand them to the core.
    Update(Vec<SocketAddr>),
}

/// The seeds, their last lookups, and the attempt schedule.
pub(crate) struct SeedJoin {
    local: SocketAddr,
    literal: Vec<SocketAddr>,
    hosts: Vec<String>,
    /// The last successful lookup of each host.
    resolved: BTreeMap<String, Vec<SocketAddr>>,
    resolver: Resolver,
    thread: Option<ResolverThread>,
    in_flight: bool,
    retry: JoinRetry,
    attempt: u32,
    next: Instant,
    /// Whether the core has joined (`Node::join`).
    started: bool,
    /// Whether the node had joined at the last attempt: losing every member then
    /// makes the next attempt due at once, not a refresh period later.
    last_joined: bool,
}

/// How often the loop checks for a lookup's answer while one is under way.
const LOOKUP_POLL: Duration = Duration::from_millis(20);

impl SeedJoin {
    pub(crate) fn new(
        local: SocketAddr,
        literal: Vec<SocketAddr>,
        hosts: Vec<String>,
        resolver: Resolver,
        retry: JoinRetry,
        now: Instant,
    ) -> Self {
        SeedJoin {
            local,
            literal,
            hosts,
            resolved: BTreeMap::new(),
            resolver,
            thread: None,
            in_flight: false,
            retry,
            attempt: 0,
            next: now,
            started: false,
            last_joined: false,
        }
    }

    /// Whether the core can join at once: there is no host to look up first, or some
    /// seed is another node's address already (this node's own does not count: with
    /// only it, joining now would make this node the first of a new cluster before
    /// the hosts had a chance to resolve).
    pub(crate) fn can_start_now(&self) -> bool {
        self.hosts.is_empty() || self.literal.iter().any(|a| *a != self.local)
    }

    /// The core has joined with [`SeedJoin::seeds`].
    pub(crate) fn started(&mut self, now: Instant) {
        self.started = true;
        if self.hosts.is_empty() {
            // Nothing to look up: the first attempt was the join itself.
            self.attempt = 1;
            self.next = now + self.retry.initial;
        }
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started
    }

    /// Adds seeds given later ([`Command::Join`](crate::Command::Join)).
    pub(crate) fn add(&mut self, seeds: &[SocketAddr]) {
        for s in seeds {
            if !self.literal.contains(s) {
                self.literal.push(*s);
            }
        }
    }

    /// Whether every seed known is this node's own address (or there is none): a
    /// started node is then the first of its cluster. No allocation: the loop asks
    /// on every turn.
    pub(crate) fn only_self(&self) -> bool {
        self.literal
            .iter()
            .chain(self.resolved.values().flatten())
            .all(|a| *a == self.local)
    }

    /// Whether the node has seeds at all (a node without is the first of its cluster).
    pub(crate) fn has_seeds(&self) -> bool {
        !self.literal.is_empty() || !self.hosts.is_empty()
    }

    /// Every seed address: the literal ones and the last lookups, this node's own
    /// address left out.
    pub(crate) fn seeds(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self.literal.clone();
        for addrs in self.resolved.values() {
            for a in addrs {
                if !all.contains(a) {
                    all.push(*a);
                }
            }
        }
        all.retain(|a| *a != self.local);
        all
    }

    /// The seeds as given, with what each host resolved to, for a log line.
    pub(crate) fn describe(&self) -> String {
        let mut parts: Vec<String> = self.literal.iter().map(ToString::to_string).collect();
        for host in &self.hosts {
            match self.resolved.get(host) {
                Some(addrs) => {
                    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                    parts.push(format!("{host} → {}", list.join(" ")));
                }
                None => parts.push(format!("{host} (unresolved)")),
            }
        }
        parts.join(", ")
    }

    /// When the loop must wake for the next attempt or to collect a lookup.
    pub(crate) fn deadline(&self, now: Instant) -> Option<Instant> {
        if self.in_flight {
            Some(now + LOOKUP_POLL)
        } else if self.has_seeds() {
            Some(self.next)
        } else {
            None
        }
    }

    /// Whether [`SeedJoin::poll`] has anything to do now (cheap: the loop asks on
    /// every turn).
    pub(crate) fn wants_poll(&self, now: Instant, joined: bool) -> bool {
        self.in_flight || (self.has_seeds() && (now >= self.next || (self.last_joined && !joined)))
    }

    /// Collects a finished lookup and starts the next attempt when it is due.
    /// `joined`: whether the node has a live member now.
    pub(crate) fn poll(&mut self, now: Instant, joined: bool) -> JoinStep {
        let mut step = JoinStep::Idle;
        if let Some(lookups) = self.take_answers() {
            step = self.apply(lookups, joined);
        }
        if self.last_joined && !joined {
            // Alone again (a partition, or every member gone): start over at once.
            self.attempt = 0;
            self.next = now;
        }
        if !self.in_flight && now >= self.next && self.has_seeds() {
            let delay = if joined {
                self.attempt = 0;
                self.retry.refresh
            } else {
                let delay = self.retry.delay(self.attempt);
                if self.attempt > 0 {
                    tracing::warn!(
                        seeds = %self.describe(),
                        retry_in = ?delay,
                        "not joined yet: no seed answered. If the seeds run, check that --cluster and the keys match theirs (a node drops datagrams of another cluster or key without answering)"
                    );
                }
                self.attempt = self.attempt.saturating_add(1);
                delay
            };
            self.next = now + delay;
            self.last_joined = joined;
            self.lookup();
        }
        step
    }

    fn lookup(&mut self) {
        if self.hosts.is_empty() {
            return;
        }
        if self.thread.is_none() {
            match ResolverThread::spawn(self.resolver.clone()) {
                Ok(t) => self.thread = Some(t),
                Err(error) => {
                    tracing::warn!(%error, "cannot start the seed resolver thread");
                    return;
                }
            }
        }
        if let Some(t) = &self.thread {
            self.in_flight = t.ask.send(self.hosts.clone()).is_ok();
        }
    }

    fn take_answers(&mut self) -> Option<Lookups> {
        if !self.in_flight {
            return None;
        }
        let t = self.thread.as_ref()?;
        match t.answers.try_recv() {
            Ok(lookups) => {
                self.in_flight = false;
                Some(lookups)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.in_flight = false;
                self.thread = None;
                None
            }
        }
    }

    fn apply(&mut self, lookups: Lookups, joined: bool) -> JoinStep {
        let before = self.seeds();
        for (host, result) in lookups {
            match result {
                Ok(mut addrs) if addrs.iter().any(|a| a.is_ipv4() == self.local.is_ipv4()) => {
                    // Only addresses the node's socket can send to: `localhost` also
                    // resolves to `::1`, which an IPv4 socket cannot reach.
                    addrs.retain(|a| a.is_ipv4() == self.local.is_ipv4());
                    addrs.sort();
                    addrs.dedup();
                    if self.resolved.get(&host) != Some(&addrs) {
                        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                        tracing::info!(seed = %host, addrs = %list.join(" "), "seed resolved");
                        self.resolved.insert(host, addrs);
                    }
                }
                Ok(_) => {
                    let error = "resolves to no address of this node's IP family";
                    if joined {
                        tracing::debug!(seed = %host, error, "cannot resolve seed");
                    } else {
                        tracing::warn!(seed = %host, error, "cannot resolve seed");
                    }
                }
                // A failed lookup keeps the last addresses: DNS hiccups do not empty
                // the seed list.
                Err(error) => {
                    if joined {
                        tracing::debug!(seed = %host, %error, "cannot resolve seed");
                    } else {
                        tracing::warn!(seed = %host, %error, "cannot resolve seed");
                    }
                }
            }
        }
        if !self.started {
            if self.resolved.is_empty() {
                JoinStep::Idle
            } else {
                JoinStep::Start(self.seeds())
            }
        } else if self.seeds() != before {
            JoinStep::Update(self.seeds())
        } else {
            JoinStep::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let r = JoinRetry::new(
            Duration::from_millis(500),
            Duration::from_secs(5),
            Duration::from_secs(30),
        );
        let delays: Vec<u64> = (0..8).map(|a| r.delay(a).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000]);
        assert_eq!(r.delay(u32::MAX), Duration::from_secs(5));
    }

    fn wait_step(join: &mut SeedJoin, now: Instant, joined: bool) -> JoinStep {
        for _ in 0..500 {
            let step = join.poll(now, joined);
            if step != JoinStep::Idle {
                return step;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        JoinStep::Idle
    }

    #[test]
    fn hosts_are_resolved_off_the_loop_and_again_on_every_attempt() {
        let local: SocketAddr = "10.0.0.9:7946".parse().unwrap();
        let answer = Arc::new(Mutex::new(Err::<Vec<SocketAddr>, _>(
            io::ErrorKind::NotFound,
        )));
        let calls = Arc::new(Mutex::new(0));
        let (a, c) = (answer.clone(), calls.clone());
        let resolver = Resolver::new(move |host| {
            assert_eq!(host, "seeds.example:7946");
            *c.lock().unwrap() += 1;
            a.lock().unwrap().clone().map_err(io::Error::from)
        });
        let retry = JoinRetry::new(
            Duration::from_secs(1),
            Duration::from_secs(4),
            Duration::from_secs(30),
        );
        let t0 = Instant::from_secs(100);
        let mut join = SeedJoin::new(
            local,
            vec![],
            vec!["seeds.example:7946".into()],
            resolver,
            retry,
            t0,
        );
        assert!(!join.can_start_now(), "only a host: wait for its lookup");
        join.add(&[local]);
        assert!(!join.can_start_now(), "its own address does not count");
        // Attempt 1 at t0: the lookup fails, the node does not start.
        assert_eq!(join.poll(t0, false), JoinStep::Idle);
        assert_eq!(wait_step(&mut join, t0, false), JoinStep::Idle);
        assert_eq!(join.deadline(t0), Some(t0 + Duration::from_secs(1)));
        // Attempt 2 at t0 + 1 s: it resolves, to itself and one other node.
        *answer.lock().unwrap() = Ok(vec![local, "10.0.0.1:7946".parse().unwrap()]);
        let t1 = t0 + Duration::from_secs(1);
        let step = wait_step(&mut join, t1, false);
        assert_eq!(
            step,
            JoinStep::Start(vec!["10.0.0.1:7946".parse().unwrap()])
        );
        join.started(t1);
        assert_eq!(
            join.deadline(t1),
            Some(t1 + Duration::from_secs(2)),
            "backoff doubles"
        );
        // Joined: the next lookup is a refresh, and a new address updates the core.
        *answer.lock().unwrap() = Ok(vec!["10.0.0.2:7946".parse().unwrap()]);
        let t2 = t1 + Duration::from_secs(2);
        let step = wait_step(&mut join, t2, true);
        assert_eq!(
            step,
            JoinStep::Update(vec!["10.0.0.2:7946".parse().unwrap()])
        );
        assert_eq!(join.deadline(t2), Some(t2 + Duration::from_secs(30)));
        assert_eq!(*calls.lock().unwrap(), 3);
        // A failed lookup keeps the last addresses.
        *answer.lock().unwrap() = Err(io::ErrorKind::TimedOut);
        let t3 = t2 + Duration::from_secs(30);
        assert_eq!(wait_step(&mut join, t3, true), JoinStep::Idle);
        assert_eq!(
            join.seeds(),
            vec!["10.0.0.2:7946".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn a_host_that_resolves_only_to_this_node_makes_it_the_first() {
        let local: SocketAddr = "10.0.0.9:7946".parse().unwrap();
        let resolver = Resolver::new(move |_| Ok(vec![local]));
        let t0 = Instant::from_secs(1);
        let mut join = SeedJoin::new(
            local,
            vec![],
            vec!["me:7946".into()],
            resolver,
            JoinRetry::default(),
            t0,
        );
        assert_eq!(wait_step(&mut join, t0, false), JoinStep::Start(vec![]));
    }
}
