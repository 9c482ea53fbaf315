//! The ring and any-node request routing (issue 5), end to end on the simulated
//! network: every node computes the same replicas for every key and agrees on the ring
//! digest; a request entering anywhere reaches a replica and its answer returns to the
//! origin; a crashed owner is failed over; late answers are dropped and counted; limits
//! are enforced.
//!
//! Each test prints its seed on failure; replay with
//! `GRAPEVINE_SEED=<seed> cargo test -p grapevine-sim --test routing -- <name>`.

use core::time::Duration;
use std::collections::BTreeSet;
use std::net::SocketAddr;

use grapevine::{
    Config, Event, Instant, NodeId, RequestError, RequestFailure, RequestId, RespondError, Status,
    token_for,
};
use grapevine_sim::{EventLog, NetConfig, SeedGuard, Sim, SimBuilder, seed_from_env};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

// ----- bounds derived from the protocol parameters -----

/// Gossip rounds for news to reach all `n` nodes: ⌈log2 n⌉ rounds in expectation for
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

/// From `join_all_via` to a complete ring everywhere: the join window, the joins
/// spreading, tokens chosen 3 gossip intervals after a node joins, the tokens
/// spreading, then the rebuild (at most every gossip_interval / 4).
fn ring_bound(sim: &Sim) -> Duration {
    let cfg = sim.config();
    sim.join_window()
        + spread_time(cfg, sim.len()) * 2
        + cfg.gossip_interval * 3
        + cfg.gossip_interval / 4
}

/// From a complete ring to `RingAgreed` everywhere: a node sets its bit in the
/// agreement once its ring has held still for 2 gossip rounds, the bits spread, and a
/// node checks agreement on its next gossip tick.
fn agreement_bound(cfg: &Config, n: usize) -> Duration {
    cfg.gossip_interval * 3 + spread_time(cfg, n) + cfg.gossip_interval
}

/// One forwarded request's round trip on an idle LAN: origin → replica → origin, with
/// the simulator's 1 ms ± 0.5 ms per hop, plus generous slack.
const ROUND_TRIP: Duration = Duration::from_millis(20);

// ----- helpers -----

fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

fn random_key(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut key = vec![0u8; 1 + below(rng, 32)];
    rng.fill_bytes(&mut key);
    key
}

/// Membership converged, and every live node's ring holds every live node, identically.
fn ring_ready(sim: &Sim) -> bool {
    let live = sim.live_indices();
    sim.converged() && sim.rings_agree() && sim.node(live[0]).ring().nodes() == live.len()
}

fn ready_cluster(seed: u64, n: usize, cfg: Config) -> Sim {
    let mut sim = SimBuilder::new(seed)
        .nodes(n)
        .config(cfg)
        .net(NetConfig::default())
        .event_log(EventLog::All)
        .check_interval(Duration::from_millis(50))
        .build();
    sim.join_all_via(0);
    let bound = ring_bound(&sim);
    let took = sim.expect_within(bound, "join and complete ring", ring_ready);
    println!(
        "seed {}: {n} nodes joined with a complete ring after {:.3} s (bound {:.1} s)",
        sim.seed(),
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
    sim
}

fn replica_ids(sim: &Sim, v: usize, key: &[u8]) -> Vec<NodeId<SocketAddr>> {
    sim.node(v)
        .route(key)
        .replicas
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn index_of(sim: &Sim, id: &NodeId<SocketAddr>) -> usize {
    sim.index_of(&id.addr)
        .unwrap_or_else(|| sim.fail(format_args!("{id:?} is no node")))
}

/// A key whose replicas (as `origin` sees them) do not include `origin`, so that a
/// request for it must be forwarded.
fn remote_key(sim: &Sim, rng: &mut ChaCha8Rng, origin: usize) -> (Vec<u8>, Vec<usize>) {
    loop {
        let key = random_key(rng);
        let replicas: Vec<usize> = replica_ids(sim, origin, &key)
            .iter()
            .map(|id| index_of(sim, id))
            .collect();
        if !replicas.contains(&origin) {
            return (key, replicas);
        }
    }
}

/// An `Event::Request` some node emitted.
#[derive(Clone, Debug)]
struct Delivered {
    node: usize,
    id: RequestId,
    key: Vec<u8>,
    payload: Vec<u8>,
    at: Instant,
}

/// An `Event::Response` or `Event::RequestFailed` an origin emitted.
#[derive(Clone, Debug)]
enum Outcome {
    Response {
        from: NodeId<SocketAddr>,
        payload: Vec<u8>,
        at: Instant,
    },
    Failed {
        reason: RequestFailure,
        at: Instant,
    },
}

/// Plays the application on every node: watches the event log for requests delivered
/// and outcomes at origins, and answers deliveries as told.
#[derive(Default)]
struct Harness {
    scanned: usize,
    delivered: Vec<Delivered>,
    /// (origin node, its request id, outcome)
    outcomes: Vec<(usize, RequestId, Outcome)>,
}

impl Harness {
    /// Takes in the events logged since the last call; returns the new deliveries.
    fn pump(&mut self, sim: &Sim) -> Vec<Delivered> {
        let mut new = Vec::new();
        for e in &sim.events()[self.scanned..] {
            match &e.event {
                Event::Request { id, key, payload } => new.push(Delivered {
                    node: e.node,
                    id: *id,
                    key: key.clone(),
                    payload: payload.clone(),
                    at: e.at,
                }),
                Event::Response { id, from, payload } => self.outcomes.push((
                    e.node,
                    *id,
                    Outcome::Response {
                        from: from.clone(),
                        payload: payload.clone(),
                        at: e.at,
                    },
                )),
                Event::RequestFailed { id, reason } => self.outcomes.push((
                    e.node,
                    *id,
                    Outcome::Failed {
                        reason: *reason,
                        at: e.at,
                    },
                )),
                _ => {}
            }
        }
        self.scanned = sim.events().len();
        self.delivered.extend(new.iter().cloned());
        new
    }

    fn outcomes_of(&self, origin: usize, id: RequestId) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|(o, i, _)| *o == origin && *i == id)
            .map(|(_, _, out)| out)
            .collect()
    }

    fn deliveries_of(&self, payload: &[u8]) -> Vec<&Delivered> {
        self.delivered
            .iter()
            .filter(|d| d.payload == payload)
            .collect()
    }

    /// Runs the simulation 1 ms at a time for at most `within`, answering each new
    /// delivery with `answer(delivery)` (if `Some`) on the node it was delivered to,
    /// until `origin` has an outcome for `id`. Returns that outcome.
    fn run(
        &mut self,
        sim: &mut Sim,
        origin: usize,
        id: RequestId,
        within: Duration,
        mut answer: impl FnMut(&Delivered) -> Option<Vec<u8>>,
    ) -> Option<Outcome> {
        let deadline = sim.now() + within;
        loop {
            for d in self.pump(sim) {
                if let Some(reply) = answer(&d) {
                    let r = sim.with_node(d.node, |n, now| n.respond(now, d.id, reply));
                    sim.check(r.is_ok(), || {
                        format!("node {} could not answer {:?}: {r:?}", d.node, d.id)
                    });
                }
            }
            if let Some(out) = self.outcomes_of(origin, id).first() {
                return Some((*out).clone());
            }
            if sim.now() >= deadline {
                return None;
            }
            let t = (sim.now() + Duration::from_millis(1)).min(deadline);
            sim.run_until(t);
        }
    }
}

fn echo(d: &Delivered) -> Option<Vec<u8>> {
    Some([b"re:".as_slice(), &d.payload].concat())
}

fn request(sim: &mut Sim, origin: usize, key: &[u8], payload: &[u8]) -> RequestId {
    let r = sim.with_node(origin, |n, now| {
        n.handle_request(now, key, payload.to_vec())
    });
    r.unwrap_or_else(|e| sim.fail(format_args!("node {origin} refused a request: {e}")))
}

// ----- ring agreement -----

#[test]
fn hundred_nodes_agree_on_every_route() {
    let seed = seed_from_env(51);
    let _guard = SeedGuard(seed);
    let n = 100;
    let cfg = Config::lan("sim");
    let mut sim = ready_cluster(seed, n, cfg.clone());
    let digest = sim.node(0).ring_digest();

    // Every node announces RingAgreed with the digest they all hold.
    let bound = agreement_bound(&cfg, n);
    let last_agreed = |s: &Sim, v: usize| {
        s.events_of(v)
            .filter_map(|e| match e.event {
                Event::RingAgreed { digest } => Some(digest),
                _ => None,
            })
            .last()
    };
    let started = sim.now();
    let res = sim.run_until_cond(sim.now() + bound, |s| {
        (0..n).all(|v| last_agreed(s, v) == Some(digest))
    });
    println!(
        "seed {seed}: RingAgreed everywhere {:.3} s after the ring was complete (bound {:.1} s)",
        (sim.now() - started).as_secs_f64(),
        bound.as_secs_f64()
    );
    if res.is_err() {
        let missing: Vec<(usize, Option<u64>)> = (0..n)
            .map(|v| (v, last_agreed(&sim, v)))
            .filter(|(_, d)| *d != Some(digest))
            .collect();
        sim.fail(format_args!(
            "{} of {n} nodes have not announced RingAgreed {{ digest: {digest:#x} }} within {:.1} s; \
             (node, last digest announced): {:?}",
            missing.len(),
            bound.as_secs_f64(),
            &missing[..missing.len().min(10)]
        ));
    }
    sim.check(
        sim.rings_agree() && sim.node(0).ring_digest() == digest,
        || "the ring moved".into(),
    );
    let agreed = sim.counts().ring_agreed;

    // 10,000 random keys: every node gives the same replicas, in the same order.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7269_6e67);
    let rf = cfg.replication_factor;
    let mut owners = BTreeSet::new();
    for _ in 0..10_000 {
        let key = random_key(&mut rng);
        let reference = sim.node(0).route(&key);
        sim.check(reference.token == token_for(&key), || {
            format!("route({key:?}).token is not token_for")
        });
        let ids: Vec<_> = reference.replicas.iter().map(|r| r.id.clone()).collect();
        let distinct: BTreeSet<_> = ids.iter().map(|id| &id.addr).collect();
        sim.check(ids.len() == rf && distinct.len() == rf, || {
            format!("route({key:?}) = {ids:?}: want {rf} distinct replicas")
        });
        sim.check(
            reference.replicas.iter().all(|r| r.state == Status::Alive),
            || format!("route({key:?}) has a replica that is not alive: {reference:?}"),
        );
        for (r, owner) in reference
            .replicas
            .iter()
            .zip(sim.node(0).ring().replicas(reference.token, rf))
        {
            sim.check(r.name == owner.name(), || {
                format!("route({key:?}) disagrees with ring().replicas")
            });
        }
        owners.insert(ids[0].addr);
        for v in 1..n {
            let theirs = replica_ids(&sim, v, &key);
            sim.check(theirs == ids, || {
                format!("node {v} routes {key:?} to {theirs:?}, node 0 to {ids:?}")
            });
        }
    }
    let balance = sim.node(0).ring().max_over_mean(rf);
    println!(
        "seed {seed}: {n} nodes agree on ring digest {digest:#018x} ({} tokens), {agreed} RingAgreed events; \
         10,000 keys route identically on every node, owned by {} distinct nodes; max/mean load (RF {rf}) {balance:.3}",
        sim.node(0).ring().len(),
        owners.len()
    );
}

// ----- requests -----

#[test]
fn request_reaches_a_replica_and_the_response_returns() {
    let seed = seed_from_env(52);
    let _guard = SeedGuard(seed);
    let n = 30;
    let cfg = Config::lan("sim");
    let mut sim = ready_cluster(seed, n, cfg.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7265_7173);
    let mut h = Harness::default();
    let (mut local, mut forwarded) = (0, 0);
    for r in 0..60 {
        let origin = below(&mut rng, n);
        // Half the keys are forwarded for sure; the other half are random.
        let (key, replicas) = if r % 2 == 0 {
            remote_key(&sim, &mut rng, origin)
        } else {
            let key = random_key(&mut rng);
            let reps = replica_ids(&sim, origin, &key)
                .iter()
                .map(|id| index_of(&sim, id))
                .collect();
            (key, reps)
        };
        let payload = format!("request {r}").into_bytes();
        let start = sim.now();
        let id = request(&mut sim, origin, &key, &payload);
        let out = h.run(&mut sim, origin, id, cfg.request_timeout, echo);
        let Some(Outcome::Response {
            from,
            payload: answer,
            at,
        }) = out
        else {
            sim.fail(format_args!(
                "request {r} ({id:?} from node {origin}): {out:?} instead of a response"
            ));
        };
        let deliveries = h.deliveries_of(&payload);
        sim.check(deliveries.len() == 1, || {
            format!("request {r} was delivered {} times", deliveries.len())
        });
        let d = deliveries[0].clone();
        sim.check(d.key == key, || {
            format!("request {r} was delivered with another key")
        });
        sim.check(replicas.contains(&d.node), || {
            format!(
                "request {r} for {key:?} was delivered on node {}, not a replica {replicas:?}",
                d.node
            )
        });
        // Delivered here if the origin is a replica, else on the first live replica: the owner.
        let want = if replicas.contains(&origin) {
            origin
        } else {
            replicas[0]
        };
        sim.check(d.node == want, || {
            format!(
                "request {r} was delivered on node {}, want node {want}",
                d.node
            )
        });
        sim.check(from == sim.id(d.node), || {
            format!(
                "request {r}: response from {from:?}, answered by node {}",
                d.node
            )
        });
        sim.check(answer == [b"re:".as_slice(), &payload].concat(), || {
            format!("request {r}: wrong payload")
        });
        if d.node == origin {
            local += 1;
        } else {
            forwarded += 1;
            sim.check(at - start <= ROUND_TRIP, || {
                format!("request {r} took {:?} on an idle LAN", at - start)
            });
        }
    }
    let failed = sim.counts().requests_failed;
    sim.check(failed == 0, || format!("{failed} requests failed"));
    println!(
        "seed {seed}: 60 requests answered ({local} delivered at the origin, {forwarded} forwarded)"
    );
}

#[test]
fn request_fails_over_when_the_owner_crashed() {
    let seed = seed_from_env(53);
    let _guard = SeedGuard(seed);
    let n = 30;
    let cfg = Config::lan("sim");
    let mut sim = ready_cluster(seed, n, cfg.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6661_696c);
    let origin = below(&mut rng, n);
    let (key, replicas) = remote_key(&sim, &mut rng, origin);
    // Crash the owner; the request goes out at once, long before anyone can detect it.
    sim.crash(replicas[0]);
    let failed_over = sim.node(origin).stats().requests_failed_over;
    let start = sim.now();
    let payload = b"after the owner crashed".to_vec();
    let id = request(&mut sim, origin, &key, &payload);
    let mut h = Harness::default();
    // The origin waits request_timeout for the owner, then tries the next replica once.
    let within = cfg.request_timeout + ROUND_TRIP * 2;
    let out = h.run(&mut sim, origin, id, within, echo);
    let Some(Outcome::Response { from, at, .. }) = out else {
        sim.fail(format_args!(
            "{id:?} from node {origin} with owner {} crashed: {out:?}",
            replicas[0]
        ));
    };
    let took = at - start;
    println!(
        "seed {seed}: owner node {} crashed; answered by node {} after {:.3} s (request_timeout {:.1} s)",
        replicas[0],
        index_of(&sim, &from),
        took.as_secs_f64(),
        cfg.request_timeout.as_secs_f64()
    );
    sim.check(from == sim.id(replicas[1]), || {
        format!(
            "answered by {from:?}, want the next replica node {}",
            replicas[1]
        )
    });
    sim.check(took >= cfg.request_timeout, || {
        format!("answered after {took:?}, before the owner's timeout")
    });
    let delivered = h.deliveries_of(&payload);
    sim.check(
        delivered.len() == 1 && delivered[0].node == replicas[1],
        || format!("deliveries: {delivered:?}"),
    );
    let waited = delivered[0].at - start;
    sim.check(waited >= cfg.request_timeout, || {
        format!("the next replica got the request after {waited:?}, before the owner's timeout")
    });
    let now_failed_over = sim.node(origin).stats().requests_failed_over;
    sim.check(now_failed_over == failed_over + 1, || {
        format!("requests_failed_over went {failed_over} → {now_failed_over}")
    });
}

#[test]
fn request_fails_when_every_replica_crashed() {
    let seed = seed_from_env(54);
    let _guard = SeedGuard(seed);
    let n = 30;
    let cfg = Config::lan("sim");
    let mut sim = ready_cluster(seed, n, cfg.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x616c_6c21);
    let origin = below(&mut rng, n);
    let (key, replicas) = remote_key(&sim, &mut rng, origin);
    for &r in &replicas {
        sim.crash(r);
    }
    let start = sim.now();
    let payload = b"nobody home".to_vec();
    let id = request(&mut sim, origin, &key, &payload);
    let mut h = Harness::default();
    // Two attempts of request_timeout each (the owner, then the next replica), then failure.
    let within = cfg.request_timeout * 2 + ROUND_TRIP;
    let out = h.run(&mut sim, origin, id, within, echo);
    let Some(Outcome::Failed { reason, at }) = out else {
        sim.fail(format_args!(
            "{id:?} with replicas {replicas:?} all crashed: {out:?}"
        ));
    };
    let took = at - start;
    println!(
        "seed {seed}: replicas {replicas:?} crashed; RequestFailed {{ {reason:?} }} after {:.3} s",
        took.as_secs_f64()
    );
    sim.check(reason == RequestFailure::Timeout, || {
        format!("failed with {reason:?}, want Timeout")
    });
    sim.check(took >= cfg.request_timeout * 2, || {
        format!("failed after {took:?}, before two timeouts")
    });
    sim.check(h.deliveries_of(&payload).is_empty(), || {
        "a crashed replica got the request".into()
    });
    // Exactly one outcome, even after the cluster notices the crashes.
    sim.run_for(cfg.request_timeout * 3);
    h.pump(&sim);
    let outs = h.outcomes_of(origin, id).len();
    sim.check(outs == 1, || format!("{outs} outcomes for one request"));
}

#[test]
fn late_and_duplicate_responses_are_dropped_and_counted() {
    let seed = seed_from_env(55);
    let _guard = SeedGuard(seed);
    let n = 30;
    let cfg = Config::lan("sim");
    let mut sim = ready_cluster(seed, n, cfg.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6c61_7465);
    let origin = below(&mut rng, n);
    let (key, replicas) = remote_key(&sim, &mut rng, origin);
    let payload = b"slow owner".to_vec();
    let id = request(&mut sim, origin, &key, &payload);
    let mut h = Harness::default();
    // The owner sits on the request; the origin fails over after request_timeout and
    // the next replica answers at once.
    let owner = replicas[0];
    let out = h.run(
        &mut sim,
        origin,
        id,
        cfg.request_timeout + ROUND_TRIP * 2,
        |d| (d.node != owner).then(|| b"from the second replica".to_vec()),
    );
    let Some(Outcome::Response { from, .. }) = out else {
        sim.fail(format_args!(
            "{id:?}: {out:?} instead of the second replica's response"
        ));
    };
    sim.check(from == sim.id(replicas[1]), || {
        format!("answered by {from:?}")
    });
    let held = h
        .deliveries_of(&payload)
        .into_iter()
        .find(|d| d.node == owner)
        .cloned();
    let Some(held) = held else {
        sim.fail("the owner never got the request")
    };

    // Now the owner answers, late: the origin drops the answer and counts it.
    let dropped = sim.node(origin).stats().responses_dropped;
    let r = sim.with_node(owner, |n, now| n.respond(now, held.id, b"late".to_vec()));
    sim.check(r.is_ok(), || format!("the owner's late respond: {r:?}"));
    sim.run_for(ROUND_TRIP);
    h.pump(&sim);
    let now_dropped = sim.node(origin).stats().responses_dropped;
    sim.check(now_dropped == dropped + 1, || {
        format!("responses_dropped went {dropped} → {now_dropped}")
    });
    let outs = h.outcomes_of(origin, id).len();
    sim.check(outs == 1, || format!("{outs} outcomes for one request"));
    // Answering twice is refused where the answer is given.
    let again = sim.with_node(owner, |n, now| n.respond(now, held.id, b"again".to_vec()));
    sim.check(again == Err(RespondError::UnknownRequest), || {
        format!("second respond: {again:?}")
    });

    // A delivered request nobody answers expires on the replica (after twice the
    // request_timeout): answering it then is refused.
    let (key, _) = remote_key(&sim, &mut rng, origin);
    let id = request(&mut sim, origin, &key, b"ignored");
    let out = h.run(
        &mut sim,
        origin,
        id,
        cfg.request_timeout * 2 + ROUND_TRIP,
        |_| None,
    );
    sim.check(
        matches!(
            out,
            Some(Outcome::Failed {
                reason: RequestFailure::Timeout,
                ..
            })
        ),
        || format!("an unanswered request ended in {out:?}"),
    );
    sim.run_for(cfg.request_timeout * 2);
    let ignored: Vec<Delivered> = h.deliveries_of(b"ignored").into_iter().cloned().collect();
    sim.check(ignored.len() == 2, || {
        format!(
            "the unanswered request was delivered {} times",
            ignored.len()
        )
    });
    for d in &ignored {
        let r = sim.with_node(d.node, |n, now| n.respond(now, d.id, b"too late".to_vec()));
        sim.check(r == Err(RespondError::UnknownRequest), || {
            format!("respond after expiry: {r:?}")
        });
    }
    println!(
        "seed {seed}: late answer dropped (responses_dropped = {}); expired requests refused",
        sim.node(origin).stats().responses_dropped
    );
}

#[test]
fn too_many_in_flight_and_too_large_are_refused() {
    let seed = seed_from_env(56);
    let _guard = SeedGuard(seed);
    let n = 10;
    let mut cfg = Config::lan("sim");
    cfg.max_requests_in_flight = 8;
    let mut sim = ready_cluster(seed, n, cfg.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6c69_6d69);
    let origin = below(&mut rng, n);

    // Fill the table without letting time pass: local deliveries and forwarded
    // requests both count.
    let mut ids = Vec::new();
    for i in 0..cfg.max_requests_in_flight {
        let key = random_key(&mut rng);
        ids.push(request(
            &mut sim,
            origin,
            &key,
            format!("fill {i}").as_bytes(),
        ));
    }
    let key = random_key(&mut rng);
    let r = sim.with_node(origin, |n, now| {
        n.handle_request(now, &key, b"one too many".to_vec())
    });
    sim.check(r == Err(RequestError::TooManyInFlight), || {
        format!("request {}: {r:?}", ids.len() + 1)
    });
    // Answer everything; then there is room again.
    let mut h = Harness::default();
    for &id in &ids {
        let out = h.run(&mut sim, origin, id, cfg.request_timeout, echo);
        sim.check(matches!(out, Some(Outcome::Response { .. })), || {
            format!("{id:?}: {out:?}")
        });
    }
    let r = sim.with_node(origin, |n, now| {
        n.handle_request(now, &key, b"room again".to_vec())
    });
    sim.check(r.is_ok(), || format!("after the table drained: {r:?}"));
    let out = h.run(
        &mut sim,
        origin,
        r.unwrap_or(RequestId(0)),
        cfg.request_timeout,
        echo,
    );
    sim.check(matches!(out, Some(Outcome::Response { .. })), || {
        format!("{out:?}")
    });

    // Too large: key and payload must fit one datagram.
    let (key, replicas) = remote_key(&sim, &mut rng, origin);
    let huge = vec![0xab; cfg.max_datagram_size];
    let r = sim.with_node(origin, |n, now| n.handle_request(now, &key, huge.clone()));
    let Err(RequestError::TooLarge { len, max }) = r else {
        sim.fail(format_args!("a {}-byte payload: {r:?}", huge.len()));
    };
    sim.check(
        len == key.len() + huge.len() && max < cfg.max_datagram_size,
        || format!("TooLarge {{ len: {len}, max: {max} }}"),
    );
    // The largest accepted request must really travel: forward it and answer it with
    // the largest accepted response.
    let biggest = vec![0xcd; max - key.len()];
    let id = request(&mut sim, origin, &key, &biggest);
    let out = h.run(&mut sim, origin, id, ROUND_TRIP, |_| None);
    sim.check(out.is_none(), || format!("{out:?} before any answer"));
    let delivered = h.deliveries_of(&biggest).first().map(|d| (*d).clone());
    let Some(d) = delivered else {
        sim.fail(format_args!(
            "a request of {max} bytes (the maximum accepted) never reached replica node {}",
            replicas[0]
        ));
    };
    let r = sim.with_node(d.node, |n, now| n.respond(now, d.id, vec![0xef; max + 1]));
    sim.check(
        matches!(r, Err(RespondError::TooLarge { len, max: m }) if len == max + 1 && m == max),
        || format!("respond with {} bytes: {r:?}", max + 1),
    );
    let r = sim.with_node(d.node, |n, now| n.respond(now, d.id, vec![0xef; max]));
    sim.check(r.is_ok(), || format!("respond with {max} bytes: {r:?}"));
    let out = h.run(&mut sim, origin, id, ROUND_TRIP, |_| None);
    let Some(Outcome::Response { payload, .. }) = out else {
        sim.fail(format_args!(
            "the {max}-byte response never arrived: {out:?}"
        ));
    };
    sim.check(payload.len() == max, || {
        format!("response of {} bytes, sent {max}", payload.len())
    });
    println!(
        "seed {seed}: {} in flight then TooManyInFlight; largest request and response: {max} bytes",
        ids.len()
    );
}
