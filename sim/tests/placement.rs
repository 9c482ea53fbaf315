//! Topology-based placement (issue 12), end to end on the simulated network: a crash,
//! a restart or an address change moves no key; `remove_node`, a join and a
//! decommission move exactly the keys they should, about as many as ideal; pending
//! replicas are listed while ranges move; racks and datacenters shape the replica
//! sets; and what one topology change costs in bytes.
//!
//! Every bound is derived from the protocol parameters (see the helpers), and every
//! test prints its seed and its figures. Replay with
//! `GRAPEVINE_SEED=<seed> cargo test -p grapevine-sim --test placement -- <name> --nocapture`.
//! The 1,000-node variants are ignored in debug builds:
//! `cargo test --release -p grapevine-sim --test placement -- --ignored --nocapture`.

use core::time::Duration;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant as WallClock;

use grapevine::placement::RING_DELAY_ROUNDS;
use grapevine::{
    Config, Event, Location, PlacementRecord, Replication, RequestError, RequestFailure, RequestId,
    Ring, Status, Token, Topology, token_for,
};
use grapevine_sim::{EventLog, NetConfig, SeedGuard, Sim, SimBuilder, node_addr, seed_from_env};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

// ----- bounds derived from the protocol parameters -----

/// Rounds a joiner waits, at least, before it allocates tokens (`LEARN_ROUNDS` in
/// `core/src/placement/table.rs`, private there).
const LEARN_ROUNDS: u32 = 3;

/// Gossip rounds for news to reach all `n` nodes: ⌈log2 n⌉ in expectation for
/// push-pull gossip (Karp et al.), doubled, plus 5 rounds of slack.
fn spread_rounds(n: usize) -> u32 {
    2 * (n.max(2) as f64).log2().ceil() as u32 + 5
}

/// One round: the slower of a gossip and a probe period.
fn round(cfg: &Config) -> Duration {
    cfg.gossip_interval.max(cfg.probe_interval)
}

fn spread_time(cfg: &Config, n: usize) -> Duration {
    round(cfg) * spread_rounds(n)
}

/// One node's way from `join` to Normal: learn the ring for `LEARN_ROUNDS` rounds and
/// one more for the joiners to hold still, allocate, stay pending `RING_DELAY_ROUNDS`
/// rounds. Twice, for one clash and a fresh allocation.
fn placement_rounds(cfg: &Config) -> Duration {
    cfg.gossip_interval * (2 * (LEARN_ROUNDS + 2 + RING_DELAY_ROUNDS))
}

/// From a complete ring to `RingAgreed` everywhere: a node sets its bit in the
/// agreement once its ring held still for 2 rounds, the bits spread, and a node checks
/// agreement on its next round.
fn agreement_bound(cfg: &Config, n: usize) -> Duration {
    cfg.gossip_interval * 3 + spread_time(cfg, n) + cfg.gossip_interval
}

/// From the first join to every node Normal and ready: the join window, the joins
/// spreading, each node's placement rounds, its tokens spreading, then agreement.
fn settle_bound(sim: &Sim) -> Duration {
    let cfg = sim.config();
    let n = sim.len();
    // A mass join proceeds in waves, one after the other (the first node founds the ring).
    let waves =
        u32::try_from(grapevine::placement::join_waves(n.saturating_sub(1), 1)).unwrap_or(u32::MAX);
    sim.join_window()
        + spread_time(cfg, n) * 2
        + placement_rounds(cfg) * waves
        + agreement_bound(cfg, n)
}

/// Lifeguard's longest suspicion timeout (log10 floored at 1).
fn suspicion_max(cfg: &Config, n: usize) -> Duration {
    let scale = (n as f64).log10().max(1.0);
    cfg.probe_interval
        .mul_f64(f64::from(cfg.suspicion_max_mult * cfg.suspicion_mult) * scale)
}

/// Crash → every live node has declared it dead: some prober picks it within 10
/// periods (e^−10), the longest suspicion, then the death spreads.
fn crash_bound(cfg: &Config, n: usize) -> Duration {
    cfg.probe_interval * 10 + cfg.probe_timeout * 2 + suspicion_max(cfg, n) + spread_time(cfg, n)
}

// ----- helpers -----

type Names = Vec<String>;
/// A ring owner as the core orders them: epoch first, then name.
type Owner = (u64, String);

fn random_keys(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6b65_7973);
    (0..count)
        .map(|_| {
            let mut key = vec![0u8; 1 + (rng.next_u32() % 32) as usize];
            rng.fill_bytes(&mut key);
            key
        })
        .collect()
}

fn pick(rng: &mut ChaCha8Rng, among: &[usize]) -> usize {
    among[(rng.next_u64() % among.len() as u64) as usize]
}

fn build(seed: u64, n: usize, cfg: Config, log: EventLog, stagger: Duration) -> Sim {
    SimBuilder::new(seed)
        .nodes(n)
        .config(cfg)
        .net(NetConfig::default())
        .event_log(log)
        .join_stagger(stagger)
        .check_interval(Duration::from_millis(50))
        .build()
}

/// Every up node is Normal and ready (the cluster agreed on its ring), membership
/// converged, every up node holds the same digest, and the ring has `on_ring` members.
fn settled(sim: &Sim, on_ring: usize) -> bool {
    let live = sim.live_indices();
    sim.converged()
        && sim.rings_agree()
        && live.iter().all(|&v| {
            let n = sim.node(v);
            n.topology_state() == Topology::Normal && n.is_ready()
        })
        && sim.node(live[0]).ring().nodes() == on_ring
}

/// Joins `sim`'s nodes through node 0 and waits until the ring is settled.
fn settle(sim: &mut Sim, what: &str) -> Duration {
    let n = sim.len();
    sim.join_all_via(0);
    let bound = settle_bound(sim);
    let took = sim.expect_within(bound, what, |s| settled(s, n));
    println!(
        "seed {}: {n} nodes joined, Normal and agreed after {:.3} s (bound {:.1} s)",
        sim.seed(),
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
    took
}

fn cluster(seed: u64, n: usize, cfg: Config, log: EventLog) -> Sim {
    let mut sim = build(seed, n, cfg, log, Duration::from_millis(2));
    settle(&mut sim, "join, Normal and ring agreement");
    sim
}

/// The natural replicas of every key as node `v` routes them, by name, in order.
fn naturals(sim: &Sim, v: usize, keys: &[Vec<u8>]) -> Vec<Names> {
    let node = sim.node(v);
    keys.iter()
        .map(|k| node.route(k).replicas.into_iter().map(|r| r.name).collect())
        .collect()
}

/// Keys whose natural replicas differ between two routings.
fn moved(a: &[Names], b: &[Names]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

fn record(sim: &Sim, v: usize, name: &str) -> Option<PlacementRecord<SocketAddr>> {
    sim.node(v).topology().find(|r| r.name == name)
}

fn status_of(sim: &Sim, v: usize, name: &str) -> Option<Topology> {
    record(sim, v, name).map(|r| r.status)
}

/// Whether every up node other than `x` sees `x`'s current life as dead (or gone).
fn dead_everywhere(sim: &Sim, x: usize) -> bool {
    sim.live_indices()
        .into_iter()
        .filter(|&v| v != x)
        .all(|v| !matches!(sim.state_seen(v, x), Some(Status::Alive | Status::Suspect)))
}

fn crash_and_wait(sim: &mut Sim, x: usize) -> Duration {
    sim.crash(x);
    let n = sim.len();
    let bound = crash_bound(sim.config(), n);
    let took = sim.expect_within(bound, &format!("node {x} dead everywhere"), |s| {
        dead_everywhere(s, x)
    });
    println!(
        "seed {}: crash of node {x} ({}) declared by every survivor after {:.3} s (bound {:.1} s)",
        sim.seed(),
        sim.node(x).name(),
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
    took
}

/// The ring of the records `keep` selects, owners ordered as the core orders them.
fn ring_of(
    records: impl Iterator<Item = PlacementRecord<SocketAddr>>,
    keep: impl Fn(&PlacementRecord<SocketAddr>) -> bool,
) -> Ring<Owner> {
    Ring::new_located(records.filter(|r| keep(r)).map(|r| {
        (
            (r.epoch, r.name.clone()),
            r.tokens.clone(),
            r.location.clone(),
        )
    }))
}

/// Node `v`'s natural ring, rebuilt from its records: the members on the ring.
fn natural_ring(sim: &Sim, v: usize) -> Ring<Owner> {
    ring_of(sim.node(v).topology(), |r| r.status.is_on_ring())
}

/// Node `v`'s future ring, rebuilt from its records: what the ring becomes once the
/// pending joins and leaves complete (Normal members and joiners with tokens).
fn future_ring(sim: &Sim, v: usize) -> Ring<Owner> {
    ring_of(sim.node(v).topology(), |r| {
        r.status == Topology::Normal || (r.status == Topology::Joining && !r.tokens.is_empty())
    })
}

fn names_for(ring: &Ring<Owner>, token: Token, rep: &Replication) -> Names {
    ring.replicas_for(token, rep)
        .into_iter()
        .map(|o| o.1.clone())
        .collect()
}

/// The elementary ranges `(start, end]` of the union of both rings' tokens, with
/// their length as a fraction of the token space: every key in one range has the
/// same replicas on both rings.
fn ranges(a: &Ring<Owner>, b: &Ring<Owner>) -> Vec<(Token, f64)> {
    let mut bounds: Vec<Token> = a.tokens().chain(b.tokens()).map(|(t, _)| t).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let len = bounds.len();
    (0..len)
        .map(|i| {
            let end = bounds[i];
            let start = bounds[(i + len - 1) % len];
            let span = (end as u64).wrapping_sub(start as u64);
            let span = if len == 1 { u64::MAX } else { span };
            (end, span as f64 / 2f64.powi(64))
        })
        .collect()
}

/// The exact fraction of the token space whose replicas differ between two rings.
fn changed_share(a: &Ring<Owner>, b: &Ring<Owner>, rep: &Replication) -> f64 {
    ranges(a, b)
        .into_iter()
        .filter(|&(end, _)| names_for(a, end, rep) != names_for(b, end, rep))
        .map(|(_, share)| share)
        .sum()
}

/// A 4σ binomial sampling tolerance on a fraction `p` estimated from `k` keys.
fn four_sigma(p: f64, k: usize) -> f64 {
    4.0 * (p * (1.0 - p) / k as f64).sqrt()
}

// ----- 1. a crash moves nothing; all replicas dead is Unavailable -----

#[test]
fn crash_moves_no_key_and_dead_replica_sets_are_unavailable() {
    let seed = seed_from_env(1201);
    let _guard = SeedGuard(seed);
    let n = 20;
    let mut sim = cluster(seed, n, Config::lan("sim"), EventLog::All);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys = random_keys(seed, 10_000);
    let digest = sim.node(0).ring_digest();
    let before = naturals(&sim, 0, &keys);
    for v in 1..n {
        let d = moved(&before, &naturals(&sim, v, &keys));
        sim.check(d == 0, || {
            format!("settled, node {v} routes {d} keys unlike node 0")
        });
    }
    let index: BTreeMap<String, usize> =
        (0..n).map(|i| (sim.node(i).name().to_owned(), i)).collect();

    let all: Vec<usize> = (1..n).collect();
    let first = pick(&mut rng, &all);
    crash_and_wait(&mut sim, first);
    let mut changed = 0;
    for v in sim.live_indices() {
        changed += moved(&before, &naturals(&sim, v, &keys));
        sim.check(sim.node(v).ring_digest() == digest, || {
            format!("node {v}'s ring digest changed after a crash")
        });
    }
    println!(
        "seed {seed}: after the crash of {}: {changed} of {} key routings changed natural replicas on {} survivors; digest unchanged",
        sim.node(first).name(),
        keys.len(),
        sim.live_count()
    );
    sim.check(changed == 0, || {
        format!("a crash changed natural replicas of {changed} key routings")
    });

    // Crash the other two natural replicas of a key the first one served.
    let victim_name = sim.node(first).name().to_owned();
    let shared = before
        .iter()
        .find(|set| set.contains(&victim_name) && !set.contains(&sim.node(0).name().to_owned()))
        .unwrap_or_else(|| sim.fail("no key held by the first victim"))
        .clone();
    let others: Vec<usize> = shared
        .iter()
        .filter(|nm| **nm != victim_name)
        .map(|nm| index[nm])
        .collect();
    for &x in &others {
        sim.crash(x);
    }
    let bound = crash_bound(sim.config(), n);
    let took = sim.expect_within(bound, "two more crashes dead everywhere", |s| {
        others.iter().all(|&x| dead_everywhere(s, x))
    });
    let dead: BTreeSet<String> = shared.iter().cloned().collect();
    println!(
        "seed {seed}: crashed {:?} too, dead everywhere after {:.3} s (bound {:.1} s)",
        shared,
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
    for v in sim.live_indices() {
        let d = moved(&before, &naturals(&sim, v, &keys));
        sim.check(d == 0 && sim.node(v).ring_digest() == digest, || {
            format!("after three crashes node {v} routes {d} keys differently or changed digest")
        });
    }
    let unavailable: Vec<usize> = (0..keys.len())
        .filter(|&k| before[k].iter().all(|nm| dead.contains(nm)))
        .collect();
    let available: Vec<usize> = (0..keys.len())
        .filter(|&k| before[k].iter().any(|nm| !dead.contains(nm)))
        .collect();
    sim.check(!unavailable.is_empty(), || {
        "no key lost every replica".into()
    });

    // Requests: every unavailable key from a few origins, and 300 available ones.
    let live = sim.live_indices();
    let mark = sim.events().len();
    let mut issued: BTreeMap<Vec<u8>, (usize, RequestId, usize)> = BTreeMap::new();
    let mut refused = 0usize;
    let mut pending_unavailable: Vec<(usize, RequestId)> = Vec::new();
    for (j, &k) in unavailable.iter().enumerate().take(50) {
        let origin = live[j % live.len()];
        let payload = format!("dead-{j}").into_bytes();
        match sim.with_node(origin, |node, now| {
            node.handle_request(now, &keys[k], payload)
        }) {
            Err(RequestError::Unavailable) => refused += 1,
            Ok(id) => pending_unavailable.push((origin, id)),
            Err(e) => sim.fail(format_args!(
                "request for an all-dead key from node {origin}: {e:?}"
            )),
        }
    }
    for (j, &k) in available.iter().step_by(available.len() / 300).enumerate() {
        let origin = pick(&mut rng, &live);
        let payload = format!("live-{j}").into_bytes();
        match sim.with_node(origin, |node, now| {
            node.handle_request(now, &keys[k], payload.clone())
        }) {
            Ok(id) => {
                issued.insert(payload, (origin, id, k));
            }
            Err(e) => sim.fail(format_args!(
                "request for key {k} (replicas {:?}) from node {origin}: {e:?}",
                before[k]
            )),
        }
    }
    // Serve every delivery until each issued request is answered or failed.
    let deadline = sim.now() + sim.config().request_timeout * 3;
    let mut cursor = mark;
    let mut deliveries = 0usize;
    loop {
        let new: Vec<(usize, RequestId, Vec<u8>, Vec<u8>)> = sim.events()[cursor..]
            .iter()
            .filter_map(|e| match &e.event {
                Event::Request { id, key, payload } => {
                    Some((e.node, *id, key.clone(), payload.clone()))
                }
                _ => None,
            })
            .collect();
        cursor = sim.events().len();
        for (node, id, key, payload) in new {
            deliveries += 1;
            let name = sim.node(node).name().to_owned();
            let k = issued.get(&payload).map(|x| x.2);
            sim.check(k.is_some(), || {
                format!(
                    "node {node} got a request that should never have been sent: {:?}",
                    String::from_utf8_lossy(&payload)
                )
            });
            let k = k.unwrap_or_default();
            sim.check(keys[k] == key && before[k].contains(&name), || {
                format!(
                    "request {:?} for key {k} delivered to {name}, not a natural replica {:?}",
                    String::from_utf8_lossy(&payload),
                    before[k]
                )
            });
            sim.check(!dead.contains(&name), || {
                format!("request delivered to crashed node {name}")
            });
            let _ = sim.with_node(node, |n, now| n.respond(now, id, payload));
        }
        let finished = |s: &Sim| {
            issued.values().all(|&(origin, id, _)| {
                s.events_of(origin).any(|e| {
                    matches!(&e.event, Event::Response { id: r, .. } | Event::RequestFailed { id: r, .. } if *r == id)
                })
            })
        };
        if (finished(&sim) && sim.now() > deadline - sim.config().request_timeout)
            || sim.now() >= deadline
        {
            break;
        }
        sim.run_for(Duration::from_millis(5));
    }
    let events = &sim.events()[mark..];
    let mut answered = 0usize;
    for (payload, &(origin, id, k)) in &issued {
        let outcome = events.iter().find(|e| {
            e.node == origin
                && matches!(&e.event, Event::Response { id: r, .. } | Event::RequestFailed { id: r, .. } if *r == id)
        });
        match outcome.map(|e| &e.event) {
            Some(Event::Response { from, .. }) => {
                let name = &sim
                    .index_of(&from.addr)
                    .map(|i| sim.node(i).name().to_owned())
                    .unwrap_or_default();
                sim.check(before[k].contains(name) && !dead.contains(name), || {
                    format!("answer to {payload:?} from {name}, not a live natural replica")
                });
                answered += 1;
            }
            other => sim.fail(format_args!(
                "request {:?} for key {k} with live replicas {:?}: {other:?}",
                String::from_utf8_lossy(payload),
                before[k]
            )),
        }
    }
    for &(origin, id) in &pending_unavailable {
        let failed = events.iter().any(|e| {
            e.node == origin
                && matches!(&e.event, Event::RequestFailed { id: r, reason: RequestFailure::Unavailable } if *r == id)
        });
        sim.check(failed, || {
            format!("request {id:?} for an all-dead key was accepted and did not fail Unavailable")
        });
    }
    println!(
        "seed {seed}: {} of {} keys lost all 3 replicas; {} requests for them: {refused} refused Unavailable, {} failed Unavailable; {} requests for keys with a live replica: {answered} answered by a live natural replica ({deliveries} deliveries, none to a non-replica)",
        unavailable.len(),
        keys.len(),
        unavailable.len().min(50),
        pending_unavailable.len(),
        issued.len()
    );
}

// ----- 2. a restart takes back the same tokens -----

#[test]
fn restart_keeps_tokens_and_moves_no_key() {
    let seed = seed_from_env(1202);
    let _guard = SeedGuard(seed);
    let n = 20;
    let mut sim = cluster(seed, n, Config::lan("sim"), EventLog::Membership);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys = random_keys(seed, 10_000);
    let digest = sim.node(0).ring_digest();
    let before = naturals(&sim, 0, &keys);
    let all: Vec<usize> = (1..n).collect();
    let x = pick(&mut rng, &all);
    let name = sim.node(x).name().to_owned();
    let saved = sim.saved_placement(x).clone();
    let tokens = sim.node(0).tokens_of(&name);
    sim.check(saved.tokens == tokens && !tokens.is_empty(), || {
        format!("node {x}'s saved tokens differ from what node 0 holds")
    });
    crash_and_wait(&mut sim, x);
    sim.restart(x, 2, &[0]);
    let bound = spread_time(sim.config(), n) + agreement_bound(sim.config(), n);
    let took = sim.expect_within(bound, "restarted node back, Normal and agreed", |s| {
        settled(s, n)
    });
    for v in 0..n {
        let t = sim.node(v).tokens_of(&name);
        sim.check(t == saved.tokens, || {
            format!("node {v} holds other tokens for the restarted {name}")
        });
        let d = moved(&before, &naturals(&sim, v, &keys));
        sim.check(d == 0, || {
            format!("node {v}: {d} keys moved after a restart")
        });
        sim.check(sim.node(v).ring_digest() == digest, || {
            format!("node {v}'s digest changed after a restart")
        });
    }
    sim.check(sim.saved_placement(x).tokens == saved.tokens, || {
        "the restarted node saved other tokens".into()
    });
    println!(
        "seed {seed}: node {x} ({name}) restarted with generation 2 and its {} saved tokens (epoch {}): back and agreed after {:.3} s (bound {:.1} s); 0 of {} keys moved on {n} nodes; digest {digest:016x} unchanged",
        saved.tokens.len(),
        saved.epoch,
        took.as_secs_f64(),
        bound.as_secs_f64(),
        keys.len()
    );
}

// ----- 3. removenode -----

#[test]
fn remove_node_moves_exactly_its_keys() {
    let seed = seed_from_env(1203);
    let _guard = SeedGuard(seed);
    let n = 20;
    let cfg = Config::lan("sim");
    let rep = cfg.replication();
    let rf = rep.total();
    let mut sim = cluster(seed, n, cfg, EventLog::Membership);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys = random_keys(seed, 10_000);
    let before = naturals(&sim, 0, &keys);
    let ring_before = natural_ring(&sim, 0);
    let all: Vec<usize> = (1..n).collect();
    let x = pick(&mut rng, &all);
    let name = sim.node(x).name().to_owned();
    let old_tokens: BTreeSet<Token> = sim.node(0).tokens_of(&name).into_iter().collect();
    crash_and_wait(&mut sim, x);
    let survivors = sim.live_indices();
    let operator = pick(&mut rng, &survivors);
    let r = sim.with_node(operator, |node, now| node.remove_node(now, &name));
    sim.check(r.is_ok(), || {
        format!("remove_node({name}) on node {operator}: {r:?}")
    });
    let bound = spread_time(sim.config(), n) + agreement_bound(sim.config(), n);
    let took = sim.expect_within(bound, "removal everywhere and agreed", |s| {
        survivors
            .iter()
            .all(|&v| status_of(s, v, &name) == Some(Topology::Removed))
            && settled(s, n - 1)
    });
    let after = naturals(&sim, survivors[0], &keys);
    for &v in &survivors[1..] {
        let d = moved(&after, &naturals(&sim, v, &keys));
        sim.check(d == 0, || {
            format!(
                "after the removal node {v} routes {d} keys unlike node {}",
                survivors[0]
            )
        });
    }
    // Exactly the keys that named it change, and in each only it is replaced.
    let mut per_position = vec![0usize; rf];
    for (k, (b, a)) in before.iter().zip(&after).enumerate() {
        match b.iter().position(|nm| *nm == name) {
            None => sim.check(a == b, || {
                format!("key {k} did not name {name} but moved: {b:?} → {a:?}")
            }),
            Some(p) => {
                per_position[p] += 1;
                let kept: Names = b.iter().filter(|nm| **nm != name).cloned().collect();
                let new: Names = a.iter().filter(|nm| !b.contains(nm)).cloned().collect();
                let rest: Names = a.iter().filter(|nm| b.contains(nm)).cloned().collect();
                sim.check(new.len() == 1 && rest == kept && !a.contains(&name), || {
                    format!("key {k}: {b:?} → {a:?} is not the removed node replaced by one other")
                });
            }
        }
    }
    // Each position's share: the removed node's exact share of the token space at that
    // position (from the ring), within 4σ of sampling; about 1/N.
    let ideal = 1.0 / n as f64;
    let mut exact = vec![0.0f64; rf];
    for (end, share) in ranges(&ring_before, &ring_before) {
        if let Some(p) = names_for(&ring_before, end, &rep)
            .iter()
            .position(|nm| *nm == name)
        {
            exact[p] += share;
        }
    }
    let spread = ring_before.max_over_mean(1);
    let mut figures = Vec::new();
    for p in 0..rf {
        let f = per_position[p] as f64 / keys.len() as f64;
        let tol = four_sigma(exact[p], keys.len());
        figures.push(format!(
            "position {p}: {f:.4} (ring share {:.4}, 1/N = {ideal:.4})",
            exact[p]
        ));
        sim.check((f - exact[p]).abs() <= tol, || {
            format!(
                "position {p}: {f:.4} of keys changed, the ring gives {:.4} ± {tol:.4}",
                exact[p]
            )
        });
        // The ring's balance bounds any node's share at one position.
        sim.check(
            exact[p] <= ideal * ring_before.max_over_mean(rf) * rf as f64,
            || format!("position {p}: share {:.4} far above 1/N", exact[p]),
        );
    }
    println!(
        "seed {seed}: remove_node({name}) on node {operator}: Removed everywhere and agreed after {:.3} s (bound {:.1} s); {} of {} keys changed, each only the removed node replaced; per replica position {}; ring max/mean rf1 {spread:.3}",
        took.as_secs_f64(),
        bound.as_secs_f64(),
        per_position.iter().sum::<usize>(),
        keys.len(),
        figures.join(", ")
    );

    // The removed node comes back with its old saved placement: a new member.
    let saved = sim.saved_placement(x).clone();
    sim.check(
        saved.tokens.iter().copied().collect::<BTreeSet<_>>() == old_tokens,
        || "the removed node's saved placement lost its tokens".into(),
    );
    let old_check = old_tokens.clone();
    let own_window: RefCell<(Option<f64>, Option<f64>, bool)> = RefCell::new((None, None, false));
    sim.restart(x, 2, &[operator]);
    // Its old tokens never reappear on any other node's ring.
    sim.set_invariant(Box::new(move |s: &Sim| {
        for v in s.live_indices() {
            if v == x {
                continue;
            }
            if let Some((t, o)) = s
                .node(v)
                .ring()
                .tokens()
                .find(|(t, _)| old_check.contains(t))
            {
                return Err(format!(
                    "node {v}'s ring holds old token {t} of the removed node ({o})"
                ));
            }
        }
        Ok(())
    }));
    sim.set_invariant_every(64);
    let bound = spread_time(sim.config(), n) * 2
        + placement_rounds(sim.config())
        + agreement_bound(sim.config(), n);
    let took = sim.expect_within(bound, "removed node rejoins as a new member", |s| {
        // Watch the restarted node's own ring for its old tokens meanwhile.
        // It must not call itself ready while it does.
        let holds_old = s
            .node(x)
            .ring()
            .tokens()
            .any(|(t, _)| old_tokens.contains(&t));
        let mut w = own_window.borrow_mut();
        let t = grapevine_sim::secs(s.now());
        if holds_old {
            w.0.get_or_insert(t);
            w.1 = Some(t);
            if s.node(x).is_ready() {
                w.2 = true;
            }
        }
        settled(s, n)
    });
    sim.run_invariant();
    sim.clear_invariant();
    let new_tokens = sim.node(x).placement().tokens;
    let new_epoch = sim.node(x).placement().epoch;
    let reused = new_tokens.iter().filter(|t| old_tokens.contains(t)).count();
    sim.check(!new_tokens.is_empty() && reused == 0, || {
        format!("the rejoined node took {reused} of its old tokens back")
    });
    for v in sim.live_indices() {
        let r = record(&sim, v, &name);
        sim.check(
            r.as_ref().is_some_and(|r| {
                r.status == Topology::Normal && r.tokens == new_tokens && r.epoch == new_epoch
            }),
            || format!("node {v} holds {r:?} for the rejoined {name}"),
        );
        let old_on_ring = sim
            .node(v)
            .ring()
            .tokens()
            .filter(|(t, _)| old_tokens.contains(t))
            .count();
        sim.check(old_on_ring == 0, || {
            format!("node {v}'s ring holds {old_on_ring} old tokens")
        });
    }
    let w = own_window.borrow();
    sim.check(!w.2, || {
        "the restarted node was ready while its own ring held its removed tokens".into()
    });
    println!(
        "seed {seed}: the removed {name} restarted with its old placement (epoch {}): rejoined as a new member, Normal and agreed after {:.3} s (bound {:.1} s), with {} new tokens at epoch {new_epoch} (first {:?}), {reused} old ones; old tokens on no other node's ring; on its own ring {}",
        saved.epoch,
        took.as_secs_f64(),
        bound.as_secs_f64(),
        new_tokens.len(),
        &new_tokens[..3.min(new_tokens.len())],
        match *w {
            (Some(a), Some(b), _) =>
                format!("from t = {a:.2} s to {b:.2} s (before it learned of the removal)"),
            _ => "never".into(),
        }
    );
}

// ----- 4. one join and one decommission at N = 100 -----

/// What node `v` routes while `subject` joins or leaves, against the rings rebuilt
/// from `v`'s records: natural replicas as the natural ring, pending = future replicas
/// not natural. Returns how many keys list `subject` (joining) or anyone (leaving)
/// as pending.
fn check_pending(
    sim: &Sim,
    v: usize,
    keys: &[Vec<u8>],
    subject: &str,
    leaving: bool,
) -> Result<usize, String> {
    let rep = sim.config().replication();
    let natural = natural_ring(sim, v);
    let future = future_ring(sim, v);
    let node = sim.node(v);
    let mut listed = 0;
    for (k, key) in keys.iter().enumerate() {
        let set = node.route(key);
        let nat: Names = set.replicas.iter().map(|r| r.name.clone()).collect();
        let pend: Names = set.pending.iter().map(|r| r.name.clone()).collect();
        let want_nat = names_for(&natural, set.token, &rep);
        let fut = names_for(&future, set.token, &rep);
        let want_pend: Names = fut.iter().filter(|n| !nat.contains(n)).cloned().collect();
        if nat != want_nat || pend != want_pend {
            return Err(format!(
                "node {v}, key {k}: natural {nat:?} pending {pend:?}, the records give natural {want_nat:?} pending {want_pend:?}"
            ));
        }
        if leaving {
            let holds = nat.iter().any(|n| n == subject);
            if holds == pend.is_empty() || pend.iter().any(|n| n == subject) {
                return Err(format!(
                    "node {v}, key {k}: leaving {subject} natural: {holds}, pending {pend:?}"
                ));
            }
            listed += usize::from(holds);
        } else {
            let is_pending = pend.iter().any(|n| n == subject);
            if is_pending != fut.iter().any(|n| n == subject)
                || nat.iter().any(|n| n == subject)
                || pend.iter().any(|n| n != subject)
            {
                return Err(format!(
                    "node {v}, key {k}: joining {subject}: natural {nat:?} pending {pend:?} future {fut:?}"
                ));
            }
            listed += usize::from(is_pending);
        }
    }
    Ok(listed)
}

/// Runs until every up node sees `subject` in `done`, checking each node's pending
/// replicas (once) while it sees `subject` in `during`. Returns the nodes checked and
/// the keys the first check listed.
fn watch_pending(
    sim: &mut Sim,
    keys: &[Vec<u8>],
    subject: &str,
    during: impl Fn(&PlacementRecord<SocketAddr>) -> bool,
    done: Topology,
    within: Duration,
    what: &str,
) -> (usize, usize, Duration) {
    let leaving = done == Topology::Left;
    let checked: RefCell<BTreeSet<usize>> = RefCell::new(BTreeSet::new());
    let listed: RefCell<Option<usize>> = RefCell::new(None);
    let failure: RefCell<Option<String>> = RefCell::new(None);
    let took = sim.expect_within(within, what, |s| {
        for v in s.live_indices() {
            if checked.borrow().contains(&v) || !record(s, v, subject).is_some_and(|r| during(&r)) {
                continue;
            }
            checked.borrow_mut().insert(v);
            match check_pending(s, v, keys, subject, leaving) {
                Ok(l) => {
                    listed.borrow_mut().get_or_insert(l);
                }
                Err(e) => {
                    failure.borrow_mut().get_or_insert(e);
                    return true;
                }
            }
        }
        s.live_indices()
            .iter()
            .all(|&v| status_of(s, v, subject) == Some(done))
    });
    if let Some(e) = failure.into_inner() {
        sim.fail(e);
    }
    let checked = checked.into_inner().len();
    (checked, listed.into_inner().unwrap_or(0), took)
}

#[test]
fn join_and_leave_at_100_move_about_the_ideal_share() {
    let seed = seed_from_env(1204);
    let _guard = SeedGuard(seed);
    let n = 100;
    let cfg = Config::lan("sim");
    let rep = cfg.replication();
    let rf = rep.total() as f64;
    let mut sim = cluster(seed, n, cfg, EventLog::Off);
    let keys = random_keys(seed, 10_000);
    let before = naturals(&sim, 0, &keys);
    let ring0 = natural_ring(&sim, 0);

    // Join one node.
    let j = sim.add_node();
    let jname = sim.node(j).name().to_owned();
    sim.join(j, &[0]);
    let bound = spread_time(sim.config(), n + 1) * 2 + placement_rounds(sim.config());
    let (checked, listed, took) = watch_pending(
        &mut sim,
        &keys,
        &jname,
        |r| r.status == Topology::Joining && !r.tokens.is_empty(),
        Topology::Normal,
        bound,
        "joiner Normal everywhere",
    );
    let future = future_ring(&sim, j);
    sim.check(checked > 0, || {
        "no node was seen with the joiner pending".into()
    });
    let bound = agreement_bound(sim.config(), n + 1);
    sim.expect_within(bound, "agreement after the join", |s| settled(s, n + 1));
    let after = naturals(&sim, 0, &keys);
    for v in sim.live_indices() {
        let d = moved(&after, &naturals(&sim, v, &keys));
        let pending = keys
            .iter()
            .filter(|k| !sim.node(v).route(k).pending.is_empty())
            .count();
        sim.check(d == 0 && pending == 0, || {
            format!(
                "after the join node {v}: {d} keys unlike node 0, {pending} with pending replicas"
            )
        });
    }
    let ring1 = natural_ring(&sim, 0);
    for (k, key) in keys.iter().enumerate() {
        let want = names_for(&future, token_for(key), &rep);
        sim.check(after[k] == want, || {
            format!(
                "key {k}: natural {:?} after the join, predicted {want:?}",
                after[k]
            )
        });
    }
    let ideal = rf / (n + 1) as f64;
    let sampled = moved(&before, &after) as f64 / keys.len() as f64;
    let exact = changed_share(&ring0, &ring1, &rep);
    println!(
        "seed {seed}: join of {jname} at N = {n}: pending on {checked} nodes' views (the first listed it for {listed} of {} keys, exactly its future keys), Normal everywhere after {:.3} s; keys whose natural replica set changed: sampled {sampled:.4}, exact (token space) {exact:.4}, ideal RF/(N+1) = {ideal:.4} (exact/ideal {:.4})",
        keys.len(),
        took.as_secs_f64(),
        exact / ideal
    );
    // A lone joiner's 16 tokens take between 0.81 and 1.04 of its share over 200 rings
    // of this shape (median 0.99; `a_lone_joiner_takes_about_its_share` in the
    // allocator): the greedy splits ranges one token at a time and the last ones can
    // leave it short. Random tokens would spread ±25 %.
    sim.check((0.80..=1.10).contains(&(exact / ideal)), || {
        format!(
            "join moved {exact:.4} of the token space, ideal {ideal:.4}: outside 0.80–1.10 of it"
        )
    });
    sim.check(
        (sampled - ideal).abs() <= 0.10 * ideal + four_sigma(ideal, keys.len()),
        || format!("join moved {sampled:.4} of the keys, ideal {ideal:.4}"),
    );

    // Decommission one node.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let all: Vec<usize> = (1..n).collect();
    let l = pick(&mut rng, &all);
    let lname = sim.node(l).name().to_owned();
    sim.leave(l);
    let bound = spread_time(sim.config(), n + 1) * 2
        + sim.config().gossip_interval * (RING_DELAY_ROUNDS + 2);
    let (checked, listed, took) = watch_pending(
        &mut sim,
        &keys,
        &lname,
        |r| r.status == Topology::Leaving,
        Topology::Left,
        bound,
        "leaver Left everywhere",
    );
    sim.check(checked > 0, || {
        "no node was seen with the leaver Leaving".into()
    });
    let bound = crash_bound(sim.config(), n + 1) + agreement_bound(sim.config(), n);
    sim.expect_within(bound, "agreement after the leave", |s| settled(s, n));
    let left = naturals(&sim, 0, &keys);
    for v in sim.live_indices() {
        let d = moved(&left, &naturals(&sim, v, &keys));
        let pending = keys
            .iter()
            .filter(|k| !sim.node(v).route(k).pending.is_empty())
            .count();
        sim.check(d == 0 && pending == 0, || {
            format!(
                "after the leave node {v}: {d} keys unlike node 0, {pending} with pending replicas"
            )
        });
        sim.check(status_of(&sim, v, &lname) == Some(Topology::Left), || {
            format!("node {v} does not see {lname} Left")
        });
    }
    for (k, (a, b)) in after.iter().zip(&left).enumerate() {
        let holds = a.contains(&lname);
        sim.check(holds == (a != b) && !b.contains(&lname), || {
            format!("key {k}: {a:?} → {b:?} across the leave of {lname}")
        });
    }
    let ring2 = natural_ring(&sim, 0);
    let ideal = rf / (n + 1) as f64;
    let sampled = moved(&after, &left) as f64 / keys.len() as f64;
    let exact = changed_share(&ring1, &ring2, &rep);
    println!(
        "seed {seed}: decommission of {lname} at N = {}: Leaving seen by {checked} nodes (the first listed new holders pending for {listed} of {} keys, exactly the keys it held), Left everywhere after {:.3} s; keys whose natural replica set changed: sampled {sampled:.4}, exact {exact:.4}, ideal RF/N = {ideal:.4} (exact/ideal {:.4})",
        n + 1,
        keys.len(),
        took.as_secs_f64(),
        exact / ideal
    );
    sim.check((exact / ideal - 1.0).abs() <= 0.10, || {
        format!("leave moved {exact:.4} of the token space, ideal {ideal:.4}: more than 10% off")
    });
    sim.check(
        (sampled - ideal).abs() <= 0.10 * ideal + four_sigma(ideal, keys.len()),
        || format!("leave moved {sampled:.4} of the keys, ideal {ideal:.4}"),
    );
}

// ----- 5. mass join -----

/// `n` nodes join through node 0, `stagger` apart, all within one second.
fn mass_join(seed: u64, n: usize, stagger: Duration) {
    let _guard = SeedGuard(seed);
    let wall = WallClock::now();
    let mut sim = SimBuilder::new(seed)
        .nodes(n)
        .net(NetConfig::default())
        .event_log(EventLog::Off)
        .digest(false)
        .join_stagger(stagger)
        .check_interval(Duration::from_millis(250))
        .build();
    sim.check(sim.join_window() <= Duration::from_secs(1), || {
        "the joins do not fit in one second".into()
    });
    let took = settle(&mut sim, "mass join: Normal and ring agreement");
    let mut tokens: BTreeMap<Token, usize> = BTreeMap::new();
    let mut records = 0;
    for r in sim.node(0).topology() {
        records += 1;
        for &t in &r.tokens {
            *tokens.entry(t).or_default() += 1;
        }
    }
    let duplicates = tokens.values().filter(|&&c| c > 1).count();
    let ring = sim.node(0).ring();
    let mom3 = ring.max_over_mean(3);
    let mom1 = ring.max_over_mean(1);
    let total = ring.len();
    drop(ring);
    println!(
        "seed {seed}: mass join of {n} nodes ({} ms apart): agreed after {:.1} s of virtual time ({:.1} s wall); {records} records, {total} tokens on the ring, {duplicates} duplicates; max/mean {mom3:.3} at rf 3, {mom1:.3} at rf 1",
        stagger.as_millis(),
        took.as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
    sim.check(duplicates == 0 && total == 16 * n, || {
        format!("{duplicates} duplicate tokens, {total} on the ring")
    });
    sim.check(mom3 <= 1.10, || {
        format!("max/mean at rf 3 is {mom3:.3} > 1.10")
    });
}

#[test]
fn mass_join_100_balanced_without_duplicates() {
    mass_join(seed_from_env(1205), 100, Duration::from_millis(10));
}

#[test]
#[ignore = "1,000 nodes: run in release mode"]
fn mass_join_1000_balanced_without_duplicates() {
    mass_join(seed_from_env(1205), 1000, Duration::from_millis(1));
}

// ----- 6. racks and datacenters -----

fn located_cluster(seed: u64, dcs: &[(&str, usize)], locations: &[Location]) -> Sim {
    let mut cfg = Config::lan("sim");
    cfg.datacenter_replication = dcs.iter().map(|(d, n)| ((*d).to_owned(), *n)).collect();
    let mut sim = build(
        seed,
        locations.len(),
        cfg,
        EventLog::Membership,
        Duration::from_millis(2),
    );
    for (i, l) in locations.iter().enumerate() {
        sim.set_location(i, l.clone());
    }
    settle(&mut sim, "located cluster: Normal and agreed");
    sim
}

/// Each key's replicas as node 0 routes them, with the location its records give.
fn located_replicas(sim: &Sim, keys: &[Vec<u8>]) -> Vec<Vec<(String, Location)>> {
    let loc: BTreeMap<String, Location> = sim
        .node(0)
        .topology()
        .map(|r| (r.name.clone(), r.location.clone()))
        .collect();
    keys.iter()
        .map(|k| {
            sim.node(0)
                .route(k)
                .replicas
                .into_iter()
                .map(|r| {
                    let l = loc[&r.name].clone();
                    (r.name, l)
                })
                .collect()
        })
        .collect()
}

#[test]
fn racks_and_datacenters_shape_replica_sets() {
    let seed = seed_from_env(1206);
    let _guard = SeedGuard(seed);
    let keys = random_keys(seed, 10_000);

    let racks: Vec<Location> = (0..9)
        .map(|i| Location::new("dc1", format!("rack{}", i % 3)))
        .collect();
    let sim = located_cluster(seed, &[("dc1", 3)], &racks);
    for v in 1..sim.len() {
        sim.check(
            moved(&naturals(&sim, 0, &keys), &naturals(&sim, v, &keys)) == 0,
            || format!("node {v} routes unlike node 0"),
        );
    }
    for (k, set) in located_replicas(&sim, &keys).iter().enumerate() {
        let distinct: BTreeSet<&str> = set.iter().map(|(_, l)| l.rack.as_str()).collect();
        sim.check(set.len() == 3 && distinct.len() == 3, || {
            format!("key {k}: replicas {set:?} do not span 3 racks")
        });
    }
    println!(
        "seed {seed}: 3 racks × 3 nodes, [(dc1, 3)]: all {} keys have 3 replicas on 3 racks",
        keys.len()
    );

    let dcs: Vec<Location> = (0..8)
        .map(|i| Location::new(format!("dc{}", 1 + i / 4), format!("rack{}", (i / 2) % 2)))
        .collect();
    let sim = located_cluster(seed + 1, &[("dc1", 2), ("dc2", 2)], &dcs);
    for v in 1..sim.len() {
        sim.check(
            moved(&naturals(&sim, 0, &keys), &naturals(&sim, v, &keys)) == 0,
            || format!("node {v} routes unlike node 0"),
        );
    }
    for (k, set) in located_replicas(&sim, &keys).iter().enumerate() {
        for dc in ["dc1", "dc2"] {
            let here: Vec<&Location> = set
                .iter()
                .map(|(_, l)| l)
                .filter(|l| l.datacenter == dc)
                .collect();
            let racks: BTreeSet<&str> = here.iter().map(|l| l.rack.as_str()).collect();
            sim.check(here.len() == 2 && racks.len() == 2, || {
                format!("key {k}: replicas {set:?} are not 2 in {dc} on 2 racks")
            });
        }
    }
    println!(
        "seed {}: 2 DCs × 2 racks × 2 nodes, [(dc1, 2), (dc2, 2)]: all {} keys have exactly 2 replicas in each DC, on 2 racks",
        seed + 1,
        keys.len()
    );
}

// ----- 7. an address change -----

#[test]
fn address_change_keeps_tokens_and_moves_no_key() {
    let seed = seed_from_env(1207);
    let _guard = SeedGuard(seed);
    let n = 20;
    let mut sim = cluster(seed, n, Config::lan("sim"), EventLog::Membership);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys = random_keys(seed, 10_000);
    let digest = sim.node(0).ring_digest();
    let before = naturals(&sim, 0, &keys);
    let all: Vec<usize> = (1..n).collect();
    let x = pick(&mut rng, &all);
    let name = sim.node(x).name().to_owned();
    let tokens = sim.node(0).tokens_of(&name);
    let j = sim.restart_elsewhere(x, 2, &[0]);
    let addr = node_addr(j);
    sim.check(sim.node(j).name() == name, || {
        "the moved node has another name".into()
    });
    let bound = spread_time(sim.config(), n);
    let took = sim.expect_within(bound, "new address in every record", |s| {
        s.live_indices()
            .iter()
            .all(|&v| record(s, v, &name).is_some_and(|r| r.addr == addr && r.generation == 2))
    });
    let bound2 = crash_bound(sim.config(), n) + agreement_bound(sim.config(), n);
    let settled_after = sim.expect_within(bound2, "converged after the move", |s| settled(s, n));
    for v in sim.live_indices() {
        sim.check(sim.node(v).tokens_of(&name) == tokens, || {
            format!("node {v} holds other tokens for the moved {name}")
        });
        sim.check(sim.node(v).ring_digest() == digest, || {
            format!("node {v}'s digest changed after an address change")
        });
        let d = moved(&before, &naturals(&sim, v, &keys));
        sim.check(d == 0, || {
            format!("node {v}: {d} keys moved after an address change")
        });
        for key in keys.iter().take(2_000) {
            let set = sim.node(v).route(key);
            if let Some(r) = set.replicas.iter().find(|r| r.name == name) {
                sim.check(r.id.addr == addr && r.state == Status::Alive, || {
                    format!("node {v} routes {name} to {:?} ({:?})", r.id, r.state)
                });
            }
        }
    }
    println!(
        "seed {seed}: node {x} ({name}) moved to {addr} (generation 2): every record shows the new address after {:.3} s (bound {:.1} s), converged after {:.3} s more; its {} tokens kept; 0 of {} keys moved; digest unchanged",
        took.as_secs_f64(),
        bound.as_secs_f64(),
        settled_after.as_secs_f64(),
        tokens.len(),
        keys.len()
    );
}

// ----- 8. the cost of one topology change -----

/// Bytes sent by every node during each of the next `secs` seconds.
fn per_second(sim: &mut Sim, secs: u32) -> Vec<u64> {
    let mut out = Vec::with_capacity(secs as usize);
    let mut last = sim.net_totals().sent_bytes;
    for _ in 0..secs {
        sim.run_for(Duration::from_secs(1));
        let now = sim.net_totals().sent_bytes;
        out.push(now - last);
        last = now;
    }
    out
}

/// From the event until traffic is back to the idle rate: the end of the last
/// one-second window more than 10 % (or 10 B/node/s) above idle, once 20 windows in a
/// row were idle. Returns (seconds, bytes sent per node, excess over idle per node).
/// Bytes one change costs: from the change until `done` holds and then traffic has been
/// within 10 % of idle for 20 one-second windows. Windows before `done` always count as
/// busy, so a change whose agreement trickles in below the threshold is still charged
/// for all of it.
fn cost_of(
    sim: &mut Sim,
    idle_per_node: f64,
    nodes: usize,
    change: &mut dyn FnMut(&mut Sim),
    done: &dyn Fn(&Sim) -> bool,
) -> (u32, f64, f64) {
    change(sim);
    let limit = idle_per_node * 1.10 + 10.0;
    let mut windows: Vec<u64> = Vec::new();
    let mut quiet = 0;
    while quiet < 20 && windows.len() < 900 {
        let w = per_second(sim, 1)[0];
        windows.push(w);
        if w as f64 / nodes as f64 > limit || !done(sim) {
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    let busy = windows.len() - quiet;
    let sent: u64 = windows[..busy].iter().sum();
    let per_node = sent as f64 / nodes as f64;
    let excess = per_node - idle_per_node * busy as f64;
    (busy as u32, per_node, excess)
}

fn cost_of_one_change(seed: u64, n: usize) {
    let _guard = SeedGuard(seed);
    let wall = WallClock::now();
    let mut sim = SimBuilder::new(seed)
        .nodes(n)
        .net(NetConfig::default())
        .event_log(EventLog::Off)
        .digest(false)
        .check_interval(Duration::from_millis(250))
        .build();
    settle(&mut sim, "cluster for the cost of one change");
    // Let the join storm's rumours run out, then measure idle. At N = 1,024 the storm
    // outlasts any fixed drain derived from the spread time, so drain until 10 seconds
    // in a row carry no more than an idle cluster's probes, gossip and sync roots
    // (about 86 B/node/s at every N measured; 200 is the threshold).
    let cfg = sim.config().clone();
    sim.run_for(spread_time(&cfg, n) * 4);
    let mut calm = 0;
    let mut drained = 0;
    while calm < 10 {
        let w = per_second(&mut sim, 1)[0];
        drained += 1;
        calm = if w / n as u64 <= 200 { calm + 1 } else { 0 };
        sim.check(drained < 1800, || {
            format!("traffic still above 200 B/node/s 1,800 s after the join ({w} B/s)")
        });
    }
    let idle = per_second(&mut sim, 30);
    let idle_per_node = idle.iter().sum::<u64>() as f64 / 30.0 / n as f64;

    let mut joiner = None;
    let joiner_slot = n;
    let (join_s, join_bytes, join_excess) = cost_of(
        &mut sim,
        idle_per_node,
        n + 1,
        &mut |s| {
            let j = s.add_node();
            s.join(j, &[0]);
            joiner = Some(j);
        },
        &|s| s.node(joiner_slot).topology_state() == Topology::Normal && settled(s, n + 1),
    );
    let j = joiner.unwrap_or_default();
    assert_eq!(j, joiner_slot, "the joiner takes the next slot");
    sim.check(
        sim.node(j).topology_state() == Topology::Normal && settled(&sim, n + 1),
        || "the joiner did not settle while traffic was measured".into(),
    );
    let idle2 = per_second(&mut sim, 30);
    let idle2_per_node = idle2.iter().sum::<u64>() as f64 / 30.0 / (n + 1) as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let all: Vec<usize> = (1..n).collect();
    let x = pick(&mut rng, &all);
    let (crash_s, crash_bytes, crash_excess) =
        cost_of(&mut sim, idle2_per_node, n, &mut |s| s.crash(x), &|s| {
            dead_everywhere(s, x)
        });
    sim.check(dead_everywhere(&sim, x), || {
        "the crash was not declared everywhere while traffic was measured".into()
    });
    println!(
        "seed {seed}: N = {n}: join traffic calm {drained} s after the drain; idle {idle_per_node:.0} B/node/s; one join: {join_s} s until idle, {join_bytes:.0} B sent per node ({join_excess:.0} B above idle); one crash: {crash_s} s until idle, {crash_bytes:.0} B sent per node ({crash_excess:.0} B above idle); wall {:.1} s",
        wall.elapsed().as_secs_f64()
    );
}

#[test]
fn cost_of_one_change_128() {
    cost_of_one_change(seed_from_env(1208), 128);
}

#[test]
#[ignore = "1,024 nodes: run in release mode"]
fn cost_of_one_change_1024() {
    cost_of_one_change(seed_from_env(1208), 1024);
}

/// Ring agreement is reached, and on every node, on 100 seeds of 5 nodes joining at
/// once with the demo's fast timers (gossip every 200 ms). Rumours alone missed a node
/// on 3 seeds in 300 (its last news went out while it still held another digest, and
/// nobody had news after), which `grapevine demo` showed as "did not agree on the ring
/// within 30s"; a node that has not agreed now pulls, once per round.
#[test]
fn ring_agreement_is_reached_on_every_node_on_100_seeds() {
    let first = seed_from_env(0);
    for seed in first..first + 100 {
        let _guard = SeedGuard(seed);
        let mut c = Config::lan("agree");
        c.probe_interval = Duration::from_millis(200);
        c.probe_timeout = Duration::from_millis(100);
        c.gossip_interval = Duration::from_millis(200);
        let mut sim = SimBuilder::new(seed)
            .nodes(5)
            .config(c)
            .event_log(EventLog::Off)
            .join_stagger(Duration::ZERO)
            .build();
        sim.join_all_via(0);
        sim.expect_within(
            Duration::from_secs(30),
            "every node ready on one ring",
            |s| {
                let d = s.node(0).ring_digest();
                (0..5).all(|i| {
                    let n = s.node(i);
                    n.is_ready() && n.ring_digest() == d && n.ring().nodes() == 5
                })
            },
        );
    }
}
