//! Rumour priorities (issue 14): a packet carries claims about its sender first, then
//! membership, then placement, then state. Under heavy loss and a steady storm of
//! state writes, refutations still go out at once, so no live node is declared dead.
//!
//! Replay a failure with
//! `GRAPEVINE_SEED=<seed> cargo test -p grapevine-sim --test priorities -- --nocapture`.

use core::time::Duration;

use grapevine::Config;
use grapevine_sim::{EventLog, NetConfig, SeedGuard, SimBuilder, seed_from_env};

/// `n` nodes at `loss`; every node writes a 200-byte value every `every` (rotating over
/// 16 keys) for `secs` seconds. Returns (false deaths, false suspicions, refutations,
/// rumours evicted), summed over the nodes.
fn storm(seed: u64, n: usize, loss: f64, every: Duration, secs: u64) -> (u64, u64, u64, u64) {
    let _guard = SeedGuard(seed);
    let mut cfg = Config::lan("sim");
    cfg.vnodes = 0;
    let mut sim = SimBuilder::new(seed)
        .nodes(n)
        .config(cfg)
        .net(NetConfig::default())
        .event_log(EventLog::Membership)
        .check_interval(Duration::from_millis(100))
        .build();
    sim.join_all_via(0);
    sim.expect_within(Duration::from_secs(60), "membership converges", |s| {
        s.converged()
    });
    sim.set_net_config(NetConfig {
        loss,
        ..NetConfig::default()
    });
    let deaths0 = sim.false_deaths();
    let suspects0 = sim.false_suspects();
    let ticks = secs * 1000 / every.as_millis() as u64;
    let value = [7u8; 200];
    for tick in 0..ticks {
        for i in 0..n {
            let key = format!("k{}", (tick as usize + i) % 16);
            sim.with_node(i, |node, now| node.set(now, &key, &value))
                .expect("a write is accepted");
        }
        sim.run_for(every);
    }
    let (refutations, evicted) = (0..n).fold((0, 0), |(r, e), i| {
        let s = sim.node(i).stats();
        (r + s.refutations, e + s.rumours_evicted)
    });
    (
        sim.false_deaths() - deaths0,
        sim.false_suspects() - suspects0,
        refutations,
        evicted,
    )
}

#[test]
fn at_20_percent_loss_a_state_storm_never_starves_refutations() {
    let seed = seed_from_env(1401);
    let n = 32;
    // 32 nodes × 10 writes/s: far more state rumours than packets have room for.
    let (deaths, suspects, refutations, evicted) =
        storm(seed, n, 0.20, Duration::from_millis(100), 120);
    println!(
        "seed {seed}: N = {n}, 20 % loss, 10 writes/s/node for 120 s: {deaths} false deaths, \
         {suspects} false suspicions, {refutations} refutations, {evicted} rumours evicted"
    );
    assert!(
        suspects > 0,
        "seed {seed}: no suspicion at all: the test did not exercise refutation"
    );
    assert_eq!(deaths, 0, "seed {seed}: live nodes were declared dead");
}
