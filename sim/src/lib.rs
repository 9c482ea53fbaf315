//! A deterministic simulator for the Grapevine gossip core.
//!
//! Many [`grapevine::Node`]s run on one seeded, faulty, simulated network with a
//! virtual clock that jumps straight to the next packet or deadline (quinn-proto's
//! `Pair::step`, scaled to N nodes). Nothing reads a real clock or an unseeded RNG,
//! so a run is a pure function of its seed: a failing test prints `seed = N` and
//! `GRAPEVINE_SEED=N` replays it.
//!
//! - [`net`]: the network model and event queue, generic over payload and timer
//!   types (so another protocol can run on the same network).
//! - [`sim`]: the Grapevine driver, [`Sim`], with crash, restart, leave, partition,
//!   event logs, counters, convergence checks and an invariant hook.
//!
//! It drives the same core that the sibling runtimes (`grapevine-std`,
//! `grapevine-tokio`, `grapevine-smol`) drive on real sockets, and the benchmarks
//! (`grapevine-benches`) run foca on the same network model.
//!
//! ```
//! use core::time::Duration;
//! use grapevine::{Config, Instant};
//! use grapevine_sim::{NetConfig, Sim};
//!
//! let mut sim = Sim::new(7, 10, Config::lan("demo"), NetConfig::default().with_loss(0.05));
//! sim.join_all_via(0);
//! sim.expect_within(Duration::from_secs(30), "join", |s| s.converged());
//! sim.crash(3);
//! sim.run_for(Duration::from_secs(60));
//! assert_eq!(sim.false_deaths(), 0);
//! ```

#![forbid(unsafe_code)]

pub mod census;
pub mod net;
pub mod sim;

pub use census::{Census, Tally};
pub use net::{Delivery, NetConfig, NetStats, Network};
pub use sim::{
    EventCounts, EventLog, Invariant, LogEntry, NodeStatus, SIM_PORT, SeedGuard, Sim, SimBuilder,
    SimNode, Tap, Timeout, node_addr, node_index, secs, seed_from_env,
};
