//! Grapevine on the simulator: a thin [`Cluster`] adapter over [`grapevine_sim::Sim`].

use core::time::Duration;

use grapevine::{Config, Event, Instant};
use grapevine_sim::{EventLog, NetConfig, NetStats, Sim, SimBuilder};

use crate::Cluster;

/// The state key the dissemination scenario writes.
pub const UPDATE_KEY: &str = "bench.update";

/// The Grapevine config the scenarios use: the LAN profile, unchanged.
pub fn config() -> Config {
    Config::lan("bench")
}

/// `n` Grapevine nodes on a simulated LAN (1 ms ± 0.5 ms, no loss), none joined yet.
#[derive(Debug)]
pub struct GvCluster {
    sim: Sim,
    net: NetConfig,
    /// The node the current update came from, and its identity.
    update_origin: Option<usize>,
}

impl GvCluster {
    /// Builds the cluster; the event log starts off (joins would log N² events).
    pub fn new(seed: u64, n: usize, config: Config) -> Self {
        let net = NetConfig::lan();
        let sim = SimBuilder::new(seed)
            .nodes(n)
            .config(config)
            .net(net)
            .event_log(EventLog::Off)
            .digest(false)
            .check_interval(Duration::from_millis(100))
            .build();
        GvCluster {
            sim,
            net,
            update_origin: None,
        }
    }

    /// The simulator, for anything the trait does not cover.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }
}

impl Cluster for GvCluster {
    fn name(&self) -> &'static str {
        "grapevine"
    }
    fn len(&self) -> usize {
        self.sim.len()
    }
    fn now(&self) -> Instant {
        self.sim.now()
    }
    fn run_until(&mut self, t: Instant) {
        self.sim.run_until(t);
    }
    fn join_all(&mut self, stagger: Duration) {
        self.sim.set_join_stagger(stagger);
        self.sim.join_all_via(0);
    }
    fn converged(&self) -> bool {
        // O(N): with no crash, a node that counts N - 1 live members knows everyone
        // (`Sim::converged` checks every entry and is O(N²)).
        let live = self.sim.live_count();
        (0..self.sim.len())
            .filter(|&i| self.sim.is_live(i))
            .all(|i| self.sim.node(i).live_members() + 1 == live)
    }
    fn view_sizes(&self) -> (usize, f64) {
        let sizes: Vec<usize> = (0..self.sim.len())
            .filter(|&i| self.sim.is_live(i))
            .map(|i| self.sim.node(i).live_members())
            .collect();
        crate::min_mean(&sizes)
    }
    fn net_totals(&self) -> NetStats {
        self.sim.net_totals()
    }
    fn is_up(&self, i: usize) -> bool {
        self.sim.is_live(i)
    }
    fn live_count(&self) -> usize {
        self.sim.live_count()
    }
    fn start_update(&mut self, origin: usize, seq: u64) -> Option<u64> {
        self.sim.set_event_log(EventLog::All);
        self.sim.clear_events();
        self.update_origin = Some(origin);
        let value = seq.to_le_bytes();
        self.sim
            .with_node(origin, |node, now| node.set(now, UPDATE_KEY, &value))
            .ok()?;
        Some(seq)
    }
    fn update_arrivals(&self, handle: u64) -> Vec<Instant> {
        let Some(origin) = self.update_origin else {
            return Vec::new();
        };
        let id = self.sim.id(origin);
        let want = handle.to_le_bytes();
        self.sim
            .events()
            .iter()
            .filter(|e| match &e.event {
                Event::StateChanged { node, key, value } => {
                    *node == id && key == UPDATE_KEY && value.as_deref() == Some(&want[..])
                }
                _ => false,
            })
            .map(|e| e.at)
            .collect()
    }
    fn crash(&mut self, i: usize) {
        self.sim.set_event_log(EventLog::Membership);
        self.sim.clear_events();
        self.sim.crash(i);
    }
    fn death_verdicts(&self, i: usize) -> Vec<Instant> {
        let id = self.sim.id(i);
        self.sim
            .events()
            .iter()
            .filter(|e| matches!(&e.event, Event::MemberDied(d) if *d == id))
            .map(|e| e.at)
            .collect()
    }
    fn clear_logs(&mut self) {
        self.sim.set_event_log(EventLog::Off);
        self.sim.clear_events();
    }
    fn set_loss(&mut self, loss: f64) {
        self.net = self.net.with_loss(loss);
        self.sim.set_net_config(self.net);
    }
    fn false_deaths(&self) -> u64 {
        self.sim.false_deaths()
    }
    fn false_suspects(&self) -> Option<u64> {
        Some(self.sim.false_suspects())
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = self.sim.counts();
        let errors = (0..self.sim.len()).map(|i| self.sim.packet_errors(i)).sum();
        vec![
            ("joined", c.joined),
            ("suspect", c.suspect),
            ("recovered", c.recovered),
            ("died", c.died),
            ("false_suspects", c.false_suspects),
            ("false_deaths", c.false_deaths),
            ("state_changed", c.state_changed),
            ("ring_agreed", c.ring_agreed),
            ("packet_errors", errors),
        ]
    }
    /// 10 s: Grapevine's periodic traffic (probes, gossip, anti-entropy) runs every
    /// round (1 s), so a settled cluster sends the same bytes in every 10 s window.
    fn quiet_window(&self) -> core::time::Duration {
        core::time::Duration::from_secs(10)
    }
}
