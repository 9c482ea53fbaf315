//! Paced and quieted news (issue 14): a member's arrival rests between sends and
//! retires once peers echo it, so a mass join sends each arrival far fewer times than
//! its budget allows, and the cluster still converges as fast.
//!
//! Replay a failure with
//! `GRAPEVINE_SEED=<seed> cargo test -p grapevine-sim --test paced_news -- --nocapture`.

use core::time::Duration;

use grapevine::Config;
use grapevine_sim::{EventLog, NetConfig, SeedGuard, SimBuilder, seed_from_env};

#[test]
fn a_mass_join_sends_each_arrival_well_under_its_budget() {
    let seed = seed_from_env(5);
    let _guard = SeedGuard(seed);
    let n = 300;
    let mut cfg = Config::lan("sim");
    cfg.vnodes = 0;
    let mut sim = SimBuilder::new(seed)
        .nodes(n)
        .config(cfg)
        .net(NetConfig::default())
        .event_log(EventLog::Off)
        .digest(false)
        .join_stagger(Duration::from_millis(1))
        .check_interval(Duration::from_millis(100))
        .build();
    sim.enable_census();
    sim.join_all_via(0);
    // Every node counts all 300 alive within 5 s (about 2 s on the seeds tried): a
    // quieted arrival that missed a node is repaired by anti-entropy within a round.
    sim.expect_within(Duration::from_secs(5), "membership converges", |s| {
        s.converged()
    });
    sim.run_for(Duration::from_secs(20));
    let census = sim.census().expect("census on");
    let claims = census.kinds.get("Member").map_or(0, |t| t.count);
    let per_pair = claims as f64 / (n * n) as f64;
    let quieted: u64 = (0..n).map(|i| sim.node(i).stats().rumours_quieted).sum();
    println!(
        "seed {seed}: {per_pair:.2} membership claims per member per node, {quieted} arrivals quieted"
    );
    // The budget is 4·⌈log10(301)⌉ = 12 sends. Without pacing and echoes this join
    // sends 13.4 claims per member per node (seeds 5 and 6: every arrival's whole
    // budget, and the joins themselves); with them about 6.6.
    assert!(
        per_pair < 8.0,
        "seed {seed}: {per_pair:.2} claims per member per node, budget 12"
    );
    assert!(
        quieted as f64 > 0.3 * (n * n) as f64,
        "seed {seed}: only {quieted} arrivals quieted of about {}",
        n * n
    );
}
