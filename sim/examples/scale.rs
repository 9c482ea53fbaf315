//! How fast the simulator runs big clusters, and what they cost on the wire.
//!
//! ```text
//! cargo run --release -p grapevine-sim --example scale              # 1,000 and 10,000 nodes × 60 s
//! cargo run --release -p grapevine-sim --example scale -- 2000 120  # 2,000 nodes × 120 s
//! ```
//!
//! Nodes join through node 0, 1 ms apart, on a 1 ms ± 0.5 ms network without loss.
//! The event log and the transmit digest are off; counters stay on.

use core::time::Duration;
use std::time::Instant as WallClock;

use grapevine::Instant;
use grapevine_sim::{EventLog, NetConfig, SimBuilder, seed_from_env};

fn run(n: usize, secs: u64, seed: u64) {
    let start = WallClock::now();
    let mut sim = SimBuilder::new(seed)
        .nodes(n)
        .net(NetConfig::default())
        .event_log(EventLog::Off)
        .digest(false)
        .join_stagger(Duration::from_millis(1))
        .build();
    let built = start.elapsed();
    sim.join_all_via(0);
    // Progress every 10 simulated seconds: where the wall time goes (joining or steady state).
    let mut last = (WallClock::now(), 0u64);
    for t in (10..secs).step_by(10).chain([secs]) {
        sim.run_until(Instant::from_secs(t));
        let sent = sim.net_totals().sent_packets;
        eprintln!(
            "  t = {t:>4} s: {:>7.2} s wall for the last stretch, {:>9} packets in it",
            last.0.elapsed().as_secs_f64(),
            sent - last.1
        );
        last = (WallClock::now(), sent);
    }
    let wall = start.elapsed();
    let t = sim.net_totals();
    let node_secs = (n as u64 * secs) as f64;
    let check = WallClock::now();
    let converged = sim.converged();
    let check_wall = check.elapsed();
    let c = sim.counts();
    println!(
        "{n} nodes × {secs} s (seed {seed}): wall {:.2} s (build {:.2} s), {} steps ({:.2} M steps/s)\n  \
         packets sent {} ({:.2} per node per s), bytes sent {} ({:.0} B per node per s), \
         mean packet {:.0} B, dropped {}\n  \
         events: joined {}, suspect {}, died {} (false {}), converged at the end: {converged} \
         (check took {:.2} s){}",
        wall.as_secs_f64(),
        built.as_secs_f64(),
        sim.steps(),
        sim.steps() as f64 / wall.as_secs_f64() / 1e6,
        t.sent_packets,
        t.sent_packets as f64 / node_secs,
        t.sent_bytes,
        t.sent_bytes as f64 / node_secs,
        t.sent_bytes as f64 / t.sent_packets.max(1) as f64,
        t.dropped(),
        c.joined,
        c.suspect,
        c.died,
        c.false_deaths,
        check_wall.as_secs_f64(),
        if converged {
            String::new()
        } else {
            format!(
                "\n  first divergence: {}",
                sim.first_divergence().unwrap_or_default()
            )
        },
    );
    // Tearing down N nodes' state takes a while at 10,000 nodes and measures nothing.
    std::mem::forget(sim);
}

fn main() {
    let seed = seed_from_env(1);
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or_else(|e| panic!("argument {a:?}: {e}")))
        .collect();
    match args.as_slice() {
        [] => {
            run(1_000, 60, seed);
            run(10_000, 60, seed);
        }
        [n] => run(*n as usize, 60, seed),
        [n, secs, ..] => run(*n as usize, *secs, seed),
    }
}
