//! Benchmarks and scenario reports for Grapevine, side by side with foca.
//!
//! - `benches/wire.rs` and `benches/node.rs`: criterion micro-benchmarks of the wire
//!   codec, of [`grapevine::Node::handle_packet`] on a node that knows 1,000 members,
//!   of a full poll cycle, and of [`grapevine::Node::route`] on a 1,000-node ring.
//! - `src/bin/scenarios.rs`: cluster scenarios (join, dissemination, crash detection,
//!   false deaths under loss, idle traffic, simulator cost) run on the simulator's
//!   network model for Grapevine ([`gv::GvCluster`]) and for foca
//!   ([`foca_driver::FocaCluster`]) alike, through the [`Cluster`] trait.
//!
//! See `docs/BENCHMARKS.md` for the commands and the figures.

use grapevine::Instant;
use grapevine_sim::NetStats;

pub mod fixtures;
pub mod foca_driver;
pub mod gv;
pub mod report;

/// What the scenario runner needs from a simulated cluster, whatever the protocol.
///
/// Node indices are `0..len()`; time is the simulator's virtual clock.
pub trait Cluster {
    /// The protocol's name, for the tables.
    fn name(&self) -> &'static str;
    /// Number of nodes (crashed ones included).
    fn len(&self) -> usize;
    /// `true` when there are no nodes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The virtual clock.
    fn now(&self) -> Instant;
    /// Processes every packet and timer due at or before `t`, then sets the clock to `t`.
    fn run_until(&mut self, t: Instant);
    /// Node 0 starts the cluster now; node `i > 0` joins through node 0 at `now + i · stagger`.
    fn join_all(&mut self, stagger: core::time::Duration);
    /// Whether every running node sees every other running node as alive (or suspect).
    fn converged(&self) -> bool;
    /// The smallest and the mean number of other members running nodes see as alive
    /// (or suspect): how far from converged a cluster is.
    fn view_sizes(&self) -> (usize, f64);
    /// Traffic counters summed over every node.
    fn net_totals(&self) -> NetStats;
    /// Whether node `i` runs.
    fn is_up(&self, i: usize) -> bool;
    /// Number of running nodes.
    fn live_count(&self) -> usize {
        (0..self.len()).filter(|&i| self.is_up(i)).count()
    }
    /// Starts spreading one small update from node `origin`; returns a handle, or
    /// `None` when the protocol has no way to spread application data.
    fn start_update(&mut self, origin: usize, seq: u64) -> Option<u64>;
    /// When each node other than the origin learned update `handle` (unordered).
    fn update_arrivals(&self, handle: u64) -> Vec<Instant>;
    /// Crashes node `i` (no goodbye) and starts recording verdicts about it.
    fn crash(&mut self, i: usize);
    /// When each node declared the crashed node `i` dead (unordered).
    fn death_verdicts(&self, i: usize) -> Vec<Instant>;
    /// Stops recording per-event logs (updates, verdicts) to save memory.
    fn clear_logs(&mut self);
    /// Sets the loss probability of every link.
    fn set_loss(&mut self, loss: f64);
    /// "Dead" verdicts so far about nodes that were up (with that identity) at the time.
    fn false_deaths(&self) -> u64;
    /// "Suspect" verdicts so far about nodes that were up, if the protocol reports them.
    fn false_suspects(&self) -> Option<u64>;
    /// Protocol-specific counters (events, notifications, errors), for the JSON output.
    fn counters(&self) -> Vec<(&'static str, u64)>;
    /// The window over which traffic is averaged to judge whether it has settled: at
    /// least the protocol's longest periodic exchange, so that a settled protocol reads
    /// flat window to window. 30 s unless a protocol says otherwise (foca announces
    /// every 30 s).
    fn quiet_window(&self) -> core::time::Duration {
        core::time::Duration::from_secs(30)
    }
}

/// Peak resident set size of this process, in bytes (`VmHWM` from `/proc/self/status`),
/// or 0 where that file does not exist.
pub fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// Current resident set size of this process, in bytes (`VmRSS`).
pub fn rss_bytes() -> u64 {
    status_kib("VmRSS:") * 1024
}

fn status_kib(field: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `log_base(n)`.
pub fn log_base(n: f64, base: f64) -> f64 {
    n.ln() / base.ln()
}

/// The `q`-quantile (nearest rank, `q` in `[0, 1]`) of `values`; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// The minimum and the mean of `values` (`(0, 0.0)` when empty).
pub fn min_mean(values: &[usize]) -> (usize, f64) {
    let min = values.iter().copied().min().unwrap_or(0);
    let mean = values.iter().sum::<usize>() as f64 / values.len().max(1) as f64;
    (min, mean)
}

/// Seconds since the origin.
pub fn secs(t: Instant) -> f64 {
    t.as_nanos() as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 0.99), Some(5.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert!((log_base(1000.0, 10.0) - 3.0).abs() < 1e-9);
    }
}
