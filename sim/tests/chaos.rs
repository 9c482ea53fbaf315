//! Chaos (issue 8): 40 nodes for 10 simulated minutes under random partitions, churn
//! (10% of the nodes restart with a new generation each minute), loss up to 30%,
//! duplication and reordering, with random writes and deletes on random nodes. Then the
//! faults stop (heal, no loss) and, within a few simulated minutes, every live node
//! must hold:
//! - the same membership view: every live node's current generation alive, nothing
//!   else alive (the simulator's `converged` and `views_agree`);
//! - the same state for every live node: keys, versions, values and content hash equal
//!   to the owner's own;
//! - every write of a node's current life: the last value it wrote for each key (or
//!   its deletion), everywhere.
//!
//! Seeded: a failure prints its seed and which nodes disagree about what; replay with
//! `GRAPEVINE_SEED=<seed> cargo test -p grapevine-sim --test chaos -- --nocapture`.

use core::time::Duration;
use std::collections::BTreeMap;

use grapevine::Config;
use grapevine_sim::{EventLog, NetConfig, SeedGuard, Sim, SimBuilder, secs, seed_from_env};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

const NODES: usize = 40;
const CHAOS: Duration = Duration::from_secs(600);
const EPOCH: Duration = Duration::from_secs(10);
const KEYS: u32 = 8;

/// What each node wrote in its current life: key → last value (`None`: deleted).
type Writes = Vec<BTreeMap<String, Option<Vec<u8>>>>;

fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The first live (viewer, owner) pair whose view of the owner's state differs from
/// the owner's own, described.
fn state_divergence(sim: &Sim) -> Option<String> {
    let live = sim.live_indices();
    for &j in &live {
        let addr = sim.addr(j);
        let truth: Vec<(String, u64, Vec<u8>)> = sim
            .node(j)
            .keys(&addr)
            .map(|(k, v, b)| (k.to_owned(), v, b.to_vec()))
            .collect();
        let truth_hash = sim.node(j).state_hash(&addr);
        for &i in &live {
            let seen: Vec<(String, u64, Vec<u8>)> = sim
                .node(i)
                .keys(&addr)
                .map(|(k, v, b)| (k.to_owned(), v, b.to_vec()))
                .collect();
            let hash = sim.node(i).state_hash(&addr);
            // Holding no state for an owner is holding its empty state (a new life
            // that has written nothing yet): the anti-entropy summaries agree.
            if seen != truth || hash.unwrap_or(0) != truth_hash.unwrap_or(0) {
                let missing: Vec<_> = truth
                    .iter()
                    .filter(|t| !seen.contains(t))
                    .map(|t| (&t.0, t.1))
                    .collect();
                let extra: Vec<_> = seen
                    .iter()
                    .filter(|s| !truth.contains(s))
                    .map(|s| (&s.0, s.1))
                    .collect();
                return Some(format!(
                    "node {i} holds node {j} (gen {})'s state with hash {hash:?}, the owner {truth_hash:?}: \
                     lacks {missing:?}, has extra {extra:?}",
                    sim.generation(j)
                ));
            }
        }
    }
    None
}

/// The first write of a live node's current life that some live node does not hold.
fn lost_write(sim: &Sim, writes: &Writes) -> Option<String> {
    let live = sim.live_indices();
    for &j in &live {
        for (key, value) in &writes[j] {
            for &i in &live {
                let held = sim.node(i).get(&sim.addr(j), key);
                if held != value.as_deref() {
                    return Some(format!(
                        "node {i} holds {held:?} for node {j}'s key {key:?}, which node {j} last set to {value:?}"
                    ));
                }
            }
        }
    }
    None
}

fn membership_divergence(sim: &Sim) -> Option<String> {
    if let Some(why) = sim.first_divergence() {
        return Some(why);
    }
    if !sim.views_agree() {
        let live = sim.live_indices();
        let first = sim.live_view(live[0]);
        let other = live.iter().find(|&&v| sim.live_view(v) != first).copied();
        return Some(format!(
            "live views differ: node {} vs node {other:?}",
            live[0]
        ));
    }
    None
}

fn divergence(sim: &Sim, writes: &Writes) -> Option<String> {
    membership_divergence(sim)
        .or_else(|| state_divergence(sim))
        .or_else(|| lost_write(sim, writes))
}

/// Runs one chaos simulation; returns the time it took to converge after the faults stopped.
fn chaos(seed: u64) -> Duration {
    let _guard = SeedGuard(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc4a05);
    let base =
        NetConfig::default().with_latency(Duration::from_millis(2), Duration::from_millis(2));
    let mut sim = SimBuilder::new(seed)
        .nodes(NODES)
        .config(Config::lan("chaos"))
        .net(base)
        .event_log(EventLog::Off)
        .digest(false)
        .check_interval(Duration::from_millis(500))
        .build();
    sim.join_all_via(0);
    sim.expect_converged(Duration::from_secs(60), "joining");

    let mut writes: Writes = vec![BTreeMap::new(); NODES];
    let (mut partitions, mut restarts, mut written) = (0u32, 0u32, 0u32);
    let start = sim.now();
    let mut epoch = 0u32;
    while sim.now() < start + CHAOS {
        // The network for this epoch: loss up to 30%, some duplication, jitter (reordering).
        let loss = 0.3 * unit(&mut rng);
        let duplicate = 0.05 * unit(&mut rng);
        sim.set_net_config(base.with_loss(loss).with_duplicate(duplicate));
        // Partitions come and go.
        if sim.net().is_partitioned() {
            if unit(&mut rng) < 0.5 {
                sim.heal();
            }
        } else if unit(&mut rng) < 0.25 {
            let k = 2 + below(&mut rng, 2);
            let mut groups = vec![Vec::new(); k];
            for i in 0..NODES {
                groups[below(&mut rng, k)].push(i);
            }
            sim.partition(&groups);
            partitions += 1;
        }
        // Churn: each minute, 10% of the nodes restart as a new generation.
        if epoch % 6 == 5 {
            for _ in 0..NODES / 10 {
                let live = sim.live_indices();
                let i = live[below(&mut rng, live.len())];
                let via = live[below(&mut rng, live.len())];
                let seeds: Vec<usize> = if via == i { Vec::new() } else { vec![via] };
                sim.restart(i, sim.generation(i) + 1, &seeds);
                writes[i].clear();
                restarts += 1;
            }
        }
        // Writes on random nodes through the epoch.
        for _ in 0..10 {
            sim.run_for(EPOCH / 10);
            let live = sim.live_indices();
            let i = live[below(&mut rng, live.len())];
            let key = format!("k{}", rng.next_u32() % KEYS);
            if unit(&mut rng) < 0.1 {
                sim.with_node(i, |n, now| n.delete(now, &key))
                    .unwrap_or_else(|e| sim.fail(e));
                writes[i].insert(key, None);
            } else {
                let value = format!("{seed}/{epoch}/{written}").into_bytes();
                sim.with_node(i, |n, now| n.set(now, &key, &value))
                    .unwrap_or_else(|e| sim.fail(e));
                writes[i].insert(key, Some(value));
            }
            written += 1;
        }
        epoch += 1;
    }

    // The faults stop.
    sim.heal();
    sim.set_net_config(base);
    let calm = sim.now();
    let within = Duration::from_secs(300);
    let result = sim.run_until_cond(calm + within, |s| divergence(s, &writes).is_none());
    let deaths = sim.counts().died;
    match result {
        Ok(t) => {
            let took = t - calm;
            println!(
                "seed {seed}: {NODES} nodes, {} min of chaos: {partitions} partitions, {restarts} restarts, \
                 {written} writes, {deaths} deaths ({} false), {} steps, {} datagrams ({} lost, {} duplicated); \
                 converged {:.1} s after the faults stopped",
                CHAOS.as_secs() / 60,
                sim.false_deaths(),
                sim.steps(),
                sim.net_totals().sent_packets,
                sim.net_totals().lost,
                sim.net_totals().duplicated,
                took.as_secs_f64()
            );
            took
        }
        Err(_) => {
            let membership = membership_divergence(&sim);
            let state = state_divergence(&sim);
            let lost = lost_write(&sim, &writes);
            sim.fail(format_args!(
                "not converged {:.0} s after the faults stopped at t = {:.1} s \
                 ({partitions} partitions, {restarts} restarts, {written} writes):\n  membership: {}\n  state: {}\n  writes: {}",
                within.as_secs_f64(),
                secs(calm),
                membership.as_deref().unwrap_or("agrees"),
                state.as_deref().unwrap_or("agrees"),
                lost.as_deref().unwrap_or("all held"),
            ))
        }
    }
}

#[test]
fn chaos_seed_1() {
    chaos(seed_from_env(1));
}

#[test]
fn chaos_seed_2() {
    chaos(seed_from_env(2));
}

#[test]
fn chaos_seed_3() {
    chaos(seed_from_env(3));
}

#[test]
fn chaos_seed_4() {
    chaos(seed_from_env(4));
}

#[test]
fn chaos_seed_5() {
    chaos(seed_from_env(5));
}
