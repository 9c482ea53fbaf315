//! Large values (issue 15): a value longer than one datagram travels as a small stub
//! (the rumour) and its bytes are fetched in chunks from a node that holds it. It
//! reaches every node under loss, and no reader ever sees part of it: after every
//! simulation step, each node holds the key absent, at the previous value, or at the
//! new value, byte for byte.
//!
//! Each test prints its seed; replay with
//! `GRAPEVINE_SEED=<seed> cargo test -p grapevine-sim --test large_values -- <name>`.
//! The N = 128 figure for docs/BENCHMARKS.md:
//! `cargo test --release -p grapevine-sim --test large_values -- --ignored --nocapture`.

use core::time::Duration;
use std::collections::BTreeMap;

use grapevine::Config;
use grapevine_sim::{EventLog, NetConfig, SeedGuard, Sim, SimBuilder, seed_from_env};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

const KEY: &str = "blob";

/// `len` pseudo-random bytes: two values from different seeds differ almost everywhere,
/// so a value stitched from both is caught.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// The key as node `v` holds it for `owner`: (version, value).
fn held(sim: &Sim, v: usize, owner: usize) -> Option<(u64, &[u8])> {
    sim.node(v)
        .keys(&sim.addr(owner))
        .find(|(k, _, _)| *k == KEY)
        .map(|(_, version, value)| (version, value))
}

fn holds(sim: &Sim, owner: usize, version: u64) -> usize {
    sim.live_indices()
        .into_iter()
        .filter(|&v| held(sim, v, owner).is_some_and(|(ver, _)| ver == version))
        .count()
}

fn sent_bytes(sim: &Sim) -> u64 {
    sim.net_totals().sent_bytes
}

/// Installs the no-torn-read check: every node's copy of the key is one of the values
/// written (by version), whole. A copy is compared in full only when its version,
/// address or length changed since it was last checked, so the check can run after
/// every step.
fn watch_for_torn_values(sim: &mut Sim, owner: usize, written: &BTreeMap<u64, Vec<u8>>) {
    let written = written.clone();
    let mut checked: BTreeMap<usize, (u64, usize, usize)> = BTreeMap::new();
    sim.set_invariant(Box::new(move |s: &Sim| {
        for v in s.live_indices() {
            let Some((version, value)) = held(s, v, owner) else {
                continue;
            };
            let seen = (version, value.as_ptr() as usize, value.len());
            if checked.get(&v) == Some(&seen) {
                continue;
            }
            match written.get(&version) {
                Some(w) if w[..] == *value => {}
                Some(w) => {
                    let first = w.iter().zip(value).position(|(a, b)| a != b);
                    return Err(format!(
                        "node {v} holds version {version} of {KEY:?} torn: {} of {} bytes, \
                         first difference at {first:?}",
                        value.len(),
                        w.len()
                    ));
                }
                None if version <= 2 => {} // the ring keys' versions, before the first write
                None => return Err(format!("node {v} holds an unknown version {version}")),
            }
            checked.insert(v, seen);
        }
        Ok(())
    }));
    sim.set_invariant_every(1);
}

/// A cluster of `n` with `loss`; node `writer` writes a `len`-byte value, then a second
/// one over it while the first may still be spreading. Returns the seconds and the
/// bytes sent per node until every node held the second value.
fn large_value_reaches_everyone(default_seed: u64, n: usize, loss: f64, len: usize) -> (f64, f64) {
    let seed = seed_from_env(default_seed);
    let _guard = SeedGuard(seed);
    let cfg = Config::lan("sim");
    assert!(len <= cfg.max_value_size);
    let net = NetConfig {
        loss,
        ..NetConfig::default()
    };
    let mut sim = SimBuilder::new(seed)
        .nodes(n)
        .config(cfg.clone())
        .net(net)
        .event_log(EventLog::Off)
        .check_interval(Duration::from_millis(50))
        .build();
    sim.join_all_via(0);
    sim.expect_within(Duration::from_secs(120), "membership converges", |s| {
        s.converged()
    });
    // Let the join's rumours run out, so that the figures are the value's.
    sim.run_for(Duration::from_secs(30));

    let writer = (ChaCha8Rng::seed_from_u64(seed).next_u64() % n as u64) as usize;
    let first = bytes(seed ^ 1, len);
    let second = bytes(seed ^ 2, len);
    sim.with_node(writer, |node, now| node.set(now, KEY, &first))
        .expect("the first value is accepted");
    let v1 = held(&sim, writer, writer).map_or(0, |(v, _)| v);
    let mut written = BTreeMap::new();
    written.insert(v1, first.clone());
    written.insert(v1 + 1, second.clone());
    watch_for_torn_values(&mut sim, writer, &written);

    // Half a second in, the second value overwrites the first everywhere it spreads.
    sim.run_for(Duration::from_millis(500));
    let bytes0 = sent_bytes(&sim);
    sim.with_node(writer, |node, now| node.set(now, KEY, &second))
        .expect("the second value is accepted");
    let t0 = sim.now();
    let bound = Duration::from_secs(60);
    let took = sim.expect_within(bound, "every node holds the second value", |s| {
        holds(s, writer, v1 + 1) == n
    });
    let per_node = (sent_bytes(&sim) - bytes0) as f64 / n as f64;
    let stats = sim.node(0).stats();
    println!(
        "seed {seed}: N = {n}, {:.0} % loss: a {len}-byte value reached every node in {:.2} s \
         (bound {:.0} s); {per_node:.0} B sent per node meanwhile ({:.1}x the value); \
         node 0: {} transfers started, {} completed, {} expired",
        loss * 100.0,
        took.as_secs_f64(),
        bound.as_secs_f64(),
        per_node / len as f64,
        stats.transfers_started,
        stats.transfers_completed,
        stats.transfers_expired
    );
    // Nothing is left half-fetched, and the bytes crossed each link about once: far
    // from the λ·log N copies per node that pushing the value as rumours would cost.
    sim.run_for(Duration::from_secs(10));
    for v in sim.live_indices() {
        let (count, held_bytes) = sim.node(v).value_transfers();
        sim.check(count == 0 && held_bytes == 0, || {
            format!("node {v} still holds {count} transfers ({held_bytes} B)")
        });
    }
    sim.check(per_node < 8.0 * len as f64, || {
        format!("{per_node:.0} B per node for one {len}-byte value")
    });
    sim.clear_invariant();
    let _ = t0;
    (took.as_secs_f64(), per_node)
}

#[test]
fn a_64_kib_value_reaches_50_nodes_under_10_percent_loss_never_torn() {
    large_value_reaches_everyone(1501, 50, 0.10, 64 * 1024);
}

#[test]
fn a_value_just_over_the_inline_limit_travels_in_chunks_too() {
    large_value_reaches_everyone(1502, 10, 0.0, grapevine::state::INLINE_VALUE_MAX + 1);
}

#[test]
#[ignore = "N = 128: run in release for docs/BENCHMARKS.md"]
fn a_64_kib_value_at_128_nodes() {
    large_value_reaches_everyone(1503, 128, 0.0, 64 * 1024);
}

/// A burst of large values from one writer: more than a node fetches at once (the rest
/// are refused and offered again by anti-entropy), under loss. Every node ends up with
/// every value, whole.
#[test]
fn a_burst_of_large_values_reaches_everyone() {
    let seed = seed_from_env(1504);
    let _guard = SeedGuard(seed);
    let n = 12;
    let mut sim = SimBuilder::new(seed)
        .nodes(n)
        .config(Config::lan("sim"))
        .net(NetConfig {
            loss: 0.05,
            ..NetConfig::default()
        })
        .event_log(EventLog::Off)
        .check_interval(Duration::from_millis(100))
        .build();
    sim.join_all_via(0);
    sim.expect_within(Duration::from_secs(60), "membership converges", |s| {
        s.converged()
    });
    let values: Vec<Vec<u8>> = (0..12u64).map(|k| bytes(seed ^ (k + 10), 60_000)).collect();
    for (k, v) in values.iter().enumerate() {
        sim.with_node(3, |node, now| node.set(now, &format!("blob{k}"), v))
            .expect("within the node's budget");
    }
    let owner = sim.addr(3);
    let took = sim.expect_within(
        Duration::from_secs(120),
        "every node holds every value",
        |s| {
            s.live_indices().into_iter().all(|v| {
                values.iter().enumerate().all(|(k, value)| {
                    s.node(v).get(&owner, &format!("blob{k}")) == Some(&value[..])
                })
            })
        },
    );
    let refused: u64 = (0..n).map(|i| sim.node(i).stats().transfers_refused).sum();
    println!(
        "seed {seed}: 12 values of 60,000 B from one writer reached {n} nodes at 5 % loss in {:.2} s; \
         {refused} stubs refused while transfers were full (offered again by anti-entropy)",
        took.as_secs_f64()
    );
}
