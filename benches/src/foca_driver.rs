//! foca 2 on the same simulated network as Grapevine.
//!
//! Each node is a [`foca::Foca`] with [`foca::PostcardCodec`] and `Config::new_lan(N)`.
//! Its [`foca::Runtime`] callbacks go straight into the simulator's generic
//! [`Network`]: `send_to` becomes [`Network::send`] (same latency, jitter and loss
//! model as Grapevine's runs), `submit_after` becomes [`Network::schedule`], and
//! notifications are counted here. Identities renew themselves when declared down
//! (foca's recommended auto-rejoin), so a false "down" costs a rejoin, not a node.
//!
//! Updates spread as foca custom broadcasts: 8 bytes, piggybacked on foca's own
//! messages `max_transmissions` times, the closest foca has to a key/value write.

use core::cell::RefCell;
use core::num::NonZeroU32;
use core::time::Duration;
use std::collections::HashMap;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;

use foca::{
    BroadcastHandler, Foca, Identity, Invalidates, Notification, PostcardCodec, Runtime, Timer,
};
use grapevine::Instant;
use grapevine_sim::net::derive_seed;
use grapevine_sim::{Delivery, NetConfig, NetStats, Network, node_addr, node_index};
use rand10::SeedableRng;
use rand10::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::Cluster;

/// A foca identity that can rejoin after being declared down: an address and a
/// generation that [`Identity::renew`] bumps (foca's `identity_golf` example).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FId {
    /// The simulator address (see [`grapevine_sim::node_addr`]).
    pub addr: SocketAddr,
    /// Bumped by each renewal.
    pub generation: u16,
}

impl Identity for FId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(FId {
            addr: self.addr,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// The foca config the scenarios use for `n` nodes: `Config::new_lan(n)`, unchanged.
pub fn config(n: usize) -> foca::Config {
    let n = NonZeroU32::new(u32::try_from(n.max(1)).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
    foca::Config::new_lan(n)
}

/// Who learned which update when; shared by every node's broadcast handler.
#[derive(Debug, Default)]
struct Recorder {
    now: Instant,
    /// Update id → (node, time) of each node that learned it.
    arrivals: HashMap<u64, Vec<(usize, Instant)>>,
}

/// The key of a custom broadcast: the update's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateKey(u64);

impl Invalidates for UpdateKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// A custom broadcast that is not 8 bytes long.
#[derive(Debug)]
pub struct BadBroadcast;

impl core::fmt::Display for BadBroadcast {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("custom broadcast is not 8 bytes")
    }
}

impl core::error::Error for BadBroadcast {}

/// Keeps each update once and records when this node first saw it.
#[derive(Debug)]
pub struct Handler {
    node: usize,
    seen: HashSet<u64>,
    recorder: Rc<RefCell<Recorder>>,
}

impl BroadcastHandler<FId> for Handler {
    type Key = UpdateKey;
    type Error = BadBroadcast;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&FId>,
    ) -> Result<Option<UpdateKey>, BadBroadcast> {
        let bytes: [u8; 8] = data.try_into().map_err(|_| BadBroadcast)?;
        let id = u64::from_le_bytes(bytes);
        if !self.seen.insert(id) {
            return Ok(None);
        }
        let mut r = self.recorder.borrow_mut();
        let now = r.now;
        r.arrivals.entry(id).or_default().push((self.node, now));
        Ok(Some(UpdateKey(id)))
    }
}

type FocaNode = Foca<FId, PostcardCodec, SmallRng, Handler>;

/// What the network's timer queue carries for a foca node.
#[derive(Debug)]
enum Wake {
    Foca(Timer<FId>),
    /// Announce to the seed (node 0; node 1 for node 0). With `retry`, only while the
    /// node knows no active member, and again `RETRY` later until it does.
    Announce {
        retry: bool,
    },
}

/// How often an idle foca node re-announces itself to the seed.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Meta {
    id: FId,
    up: bool,
}

/// Counters and logs kept from foca's notifications.
#[derive(Debug, Default)]
struct Log {
    /// Crashed node → times at which nodes declared it down.
    verdicts: HashMap<usize, Vec<Instant>>,
    /// Nodes whose verdicts are being recorded.
    watched: HashSet<usize>,
    false_deaths: u64,
    member_up: u64,
    member_down: u64,
    rejoins: u64,
    defunct: u64,
    idle: u64,
    errors: u64,
}

/// The [`Runtime`] of node `me` for one call into foca.
struct Rt<'a> {
    me: usize,
    net: &'a mut Network<Vec<u8>, Wake>,
    meta: &'a mut [Meta],
    log: &'a mut Log,
}

impl Runtime<FId> for Rt<'_> {
    fn notify(&mut self, notification: Notification<'_, FId>) {
        match notification {
            Notification::MemberUp(_) => self.log.member_up += 1,
            Notification::MemberDown(id) => {
                self.log.member_down += 1;
                if let Some(j) = node_index(&id.addr).filter(|&j| j < self.meta.len()) {
                    // Any "down" about the address of a running process is false, whatever
                    // the identity's generation: once a falsely downed node renews itself,
                    // the others still declare its previous identity down (as Grapevine's
                    // nodes declare the one identity dead), and that is the false death
                    // spreading, not a verdict about a gone process.
                    if self.meta[j].up {
                        self.log.false_deaths += 1;
                    }
                    if self.log.watched.contains(&j) {
                        let now = self.net.now();
                        self.log.verdicts.entry(j).or_default().push(now);
                    }
                }
            }
            Notification::Rejoin(id) => {
                self.log.rejoins += 1;
                self.meta[self.me].id = id.clone();
            }
            Notification::Defunct => self.log.defunct += 1,
            Notification::Idle => {
                // foca stops probing when it knows no active member; like Grapevine
                // (which re-contacts its seeds on its own), re-announce to the seed.
                self.log.idle += 1;
                let at = self.net.now() + Duration::from_secs(1);
                self.net
                    .schedule(self.me, at, Wake::Announce { retry: true });
            }
            _ => {}
        }
    }

    fn send_to(&mut self, to: FId, data: &[u8]) {
        match node_index(&to.addr).filter(|&j| j < self.meta.len()) {
            Some(j) => self.net.send(self.me, j, data.to_vec()),
            None => self.net.unroutable(self.me, &data.to_vec()),
        }
    }

    fn submit_after(&mut self, event: Timer<FId>, after: Duration) {
        let at = self.net.now() + after;
        self.net.schedule(self.me, at, Wake::Foca(event));
    }
}

/// `n` foca nodes on a simulated LAN (1 ms ± 0.5 ms, no loss), none joined yet.
pub struct FocaCluster {
    net: Network<Vec<u8>, Wake>,
    nodes: Vec<FocaNode>,
    meta: Vec<Meta>,
    log: Log,
    recorder: Rc<RefCell<Recorder>>,
    net_config: NetConfig,
}

impl core::fmt::Debug for FocaCluster {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FocaCluster")
            .field("net", &self.net)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl FocaCluster {
    /// Builds the cluster with `config` on every node.
    pub fn new(seed: u64, n: usize, config: foca::Config) -> Self {
        let net_config = NetConfig::lan();
        let mut net = Network::new(seed, net_config);
        net.set_digest_enabled(false);
        let recorder = Rc::new(RefCell::new(Recorder::default()));
        let mut nodes = Vec::with_capacity(n);
        let mut meta = Vec::with_capacity(n);
        for i in 0..n {
            let idx = net.add_node();
            debug_assert_eq!(idx, i);
            let id = FId {
                addr: node_addr(i),
                generation: 0,
            };
            let rng = SmallRng::seed_from_u64(derive_seed(seed, i as u64, 0x666f6361));
            let handler = Handler {
                node: i,
                seen: HashSet::new(),
                recorder: Rc::clone(&recorder),
            };
            nodes.push(Foca::with_custom_broadcast(
                id.clone(),
                config.clone(),
                rng,
                PostcardCodec,
                handler,
            ));
            meta.push(Meta { id, up: true });
        }
        FocaCluster {
            net,
            nodes,
            meta,
            log: Log::default(),
            recorder,
            net_config,
        }
    }

    fn log_counters(&self) -> Vec<(&'static str, u64)> {
        let l = &self.log;
        vec![
            ("member_up", l.member_up),
            ("member_down", l.member_down),
            ("rejoin", l.rejoins),
            ("defunct", l.defunct),
            ("idle", l.idle),
            ("errors", l.errors),
        ]
    }

    fn step_until(&mut self, limit: Instant) -> bool {
        let Some(delivery) = self.net.pop(limit) else {
            return false;
        };
        self.recorder.borrow_mut().now = self.net.now();
        let FocaCluster {
            net,
            nodes,
            meta,
            log,
            ..
        } = self;
        match delivery {
            Delivery::Packet { to, payload, .. } => {
                let rt = Rt {
                    me: to,
                    net,
                    meta,
                    log,
                };
                if nodes[to].handle_data(&payload, rt).is_err() {
                    log.errors += 1;
                }
            }
            Delivery::Timer {
                node,
                timer: Wake::Foca(timer),
            } => {
                let rt = Rt {
                    me: node,
                    net,
                    meta,
                    log,
                };
                if nodes[node].handle_timer(timer, rt).is_err() {
                    log.errors += 1;
                }
            }
            Delivery::Timer {
                node,
                timer: Wake::Announce { retry },
            } => {
                if retry && nodes[node].num_members() > 0 {
                    return true;
                }
                let seed = meta[usize::from(node == 0)].id.clone();
                if retry {
                    let at = net.now() + RETRY;
                    net.schedule(node, at, Wake::Announce { retry: true });
                }
                let rt = Rt {
                    me: node,
                    net,
                    meta,
                    log,
                };
                if nodes[node].announce(seed, rt).is_err() {
                    log.errors += 1;
                }
            }
        }
        true
    }
}

impl Cluster for FocaCluster {
    fn name(&self) -> &'static str {
        "foca"
    }
    fn len(&self) -> usize {
        self.nodes.len()
    }
    fn now(&self) -> Instant {
        self.net.now()
    }
    fn run_until(&mut self, t: Instant) {
        while self.step_until(t) {}
        self.net.advance_to(t);
    }
    fn join_all(&mut self, stagger: Duration) {
        let now = self.net.now();
        for i in 1..self.nodes.len() {
            self.net
                .schedule(i, now + stagger * i as u32, Wake::Announce { retry: false });
        }
    }
    fn converged(&self) -> bool {
        let live = self.live_count();
        (0..self.nodes.len())
            .filter(|&i| self.meta[i].up)
            .all(|i| self.nodes[i].num_members() + 1 == live)
    }
    fn view_sizes(&self) -> (usize, f64) {
        let sizes: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.meta[i].up)
            .map(|i| self.nodes[i].num_members())
            .collect();
        crate::min_mean(&sizes)
    }
    fn net_totals(&self) -> NetStats {
        self.net.totals()
    }
    fn is_up(&self, i: usize) -> bool {
        self.meta[i].up
    }
    fn start_update(&mut self, origin: usize, seq: u64) -> Option<u64> {
        self.recorder.borrow_mut().now = self.net.now();
        self.nodes[origin].add_broadcast(&seq.to_le_bytes()).ok()?;
        Some(seq)
    }
    fn update_arrivals(&self, handle: u64) -> Vec<Instant> {
        let r = self.recorder.borrow();
        let Some(all) = r.arrivals.get(&handle) else {
            return Vec::new();
        };
        // The first entry is the origin (add_broadcast runs the handler there too).
        all.iter().skip(1).map(|&(_, t)| t).collect()
    }
    fn crash(&mut self, i: usize) {
        self.net.crash(i);
        self.meta[i].up = false;
        self.log.watched.insert(i);
    }
    fn death_verdicts(&self, i: usize) -> Vec<Instant> {
        self.log.verdicts.get(&i).cloned().unwrap_or_default()
    }
    fn clear_logs(&mut self) {
        self.log.watched.clear();
        self.log.verdicts.clear();
        self.recorder.borrow_mut().arrivals.clear();
    }
    fn set_loss(&mut self, loss: f64) {
        self.net_config = self.net_config.with_loss(loss);
        self.net.set_config(self.net_config);
    }
    fn false_deaths(&self) -> u64 {
        self.log.false_deaths
    }
    fn false_suspects(&self) -> Option<u64> {
        // foca reports suspicion only with its unstable notifications.
        None
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.log_counters()
    }
}
