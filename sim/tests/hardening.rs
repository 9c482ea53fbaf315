//! Hardening (issue 13), end to end: forged membership claims cannot keep a live,
//! reachable node dead, whatever incarnation or generation they name, with or without
//! a keyring (a key holder can forge too), and a forged placement record cannot take
//! an established member's tokens.
//!
//! Each test prints its seed on failure; replay with
//! `GRAPEVINE_SEED=<seed> cargo test -p grapevine-sim --test hardening -- <name>`.

use core::time::Duration;
use std::net::SocketAddr;

use grapevine::hash::cluster_id;
use grapevine::wire::{BodyBuilder, FLAG_SEALED, HEADER_LEN, Header, MemberClaim, Message};
use grapevine::{
    Config, Event, Key, Keyring, Location, NodeId, PlacementRecord, Status, Topology, token_for,
};
use grapevine_sim::{EventLog, NetConfig, SeedGuard, Sim, SimBuilder, seed_from_env};

const K1: Key = [0x11; 32];

/// A datagram built with the real wire types, sealed with `key` if given.
fn craft(
    cluster: &str,
    key: Option<&Key>,
    sender: &NodeId<SocketAddr>,
    messages: &[Message<SocketAddr>],
) -> Vec<u8> {
    let mut body = BodyBuilder::new(sender, 1400 - HEADER_LEN - 40);
    for m in messages {
        assert!(body.push(m));
    }
    let body = body.finish();
    let mut out = Vec::new();
    Header {
        flags: if key.is_some() { FLAG_SEALED } else { 0 },
        cluster_id: cluster_id(cluster),
    }
    .write(&mut out);
    match key {
        Some(k) => Keyring::new(*k).seal(&mut out, HEADER_LEN, &body, [9; 24]),
        None => out.extend_from_slice(&body),
    }
    out
}

/// A converged cluster of `n` nodes, every node holding `key` if given.
fn cluster(seed: u64, n: usize, key: Option<Key>) -> Sim {
    let mut sim = SimBuilder::new(seed)
        .nodes(n)
        .net(NetConfig::default())
        .event_log(EventLog::Membership)
        .build();
    if let Some(k) = key {
        for i in 0..n {
            sim.with_node(i, |node, _| node.set_keyring(Some(Keyring::new(k))));
        }
    }
    sim.join_all_via(0);
    sim.expect_converged(Duration::from_secs(60), "cluster joining");
    sim
}

/// Lifeguard's longest suspicion timeout for `n` nodes, plus a few probe periods to
/// spread the refutation: the bound for a slandered node to be alive everywhere again.
fn recovery_bound(cfg: &Config, n: usize) -> Duration {
    let scale = (n as f64).log10().max(1.0);
    cfg.probe_interval
        .mul_f64(f64::from(cfg.suspicion_max_mult * cfg.suspicion_mult) * scale)
        + cfg.probe_interval * 10
}

/// Forges `claims` about node `victim` from node `forger`'s identity to every other
/// node, then checks that the victim is alive in every view within the bound and that
/// no node declared it dead afterwards.
fn slander(default_seed: u64, key: Option<Key>, claims: &[MemberClaim<SocketAddr>]) {
    let seed = seed_from_env(default_seed);
    let _guard = SeedGuard(seed);
    let n = 6;
    let mut sim = cluster(seed, n, key);
    let (victim, forger) = (1, 2);
    let cluster = sim.config().cluster_name.clone();
    let messages: Vec<Message<SocketAddr>> = claims.iter().cloned().map(Message::Member).collect();
    let data = craft(&cluster, key.as_ref(), &sim.id(forger), &messages);
    sim.clear_events();
    for target in (0..n).filter(|&i| i != forger) {
        let from = sim.addr(forger);
        let r = sim.with_node(target, |node, now| node.handle_packet(now, from, &data));
        sim.check(r.is_ok(), || {
            format!("node {target} refused the datagram: {r:?}")
        });
    }
    let bound = recovery_bound(sim.config(), n);
    let victim_id = sim.id(victim);
    let took = sim.expect_within(bound, "the slandered node alive everywhere", |s| {
        (0..n)
            .filter(|&v| v != victim)
            .all(|v| s.state_seen(v, victim) == Some(Status::Alive))
    });
    // And it stays alive: nothing the forgery left behind kills it later.
    sim.run_for(bound);
    let died = sim
        .events()
        .iter()
        .filter(|e| matches!(&e.event, Event::MemberDied(id) if *id == victim_id))
        .count();
    sim.check(died == 0, || {
        format!("the victim was declared dead {died} times after the forgery")
    });
    sim.check(
        (0..n)
            .filter(|&v| v != victim)
            .all(|v| sim.state_seen(v, victim) == Some(Status::Alive)),
        || "the victim is not alive in every view".into(),
    );
    let refused: u64 = sim.nodes().map(|n| n.stats().claims_refused).sum();
    println!(
        "seed {seed}: keyring {}: victim alive everywhere after {:.3} s (bound {:.1} s); \
         {refused} claims refused as implausible; victim incarnation {}",
        key.is_some(),
        took.as_secs_f64(),
        bound.as_secs_f64(),
        sim.node(victim).incarnation()
    );
}

fn claim(id: NodeId<SocketAddr>, incarnation: u64, status: Status) -> MemberClaim<SocketAddr> {
    MemberClaim {
        id,
        incarnation,
        status,
    }
}

#[test]
fn a_dead_claim_at_the_last_incarnation_cannot_evict() {
    for key in [None, Some(K1)] {
        let victim = NodeId::new(grapevine_sim::node_addr(1), 1);
        slander(61, key, &[claim(victim.clone(), u64::MAX, Status::Dead)]);
        slander(62, key, &[claim(victim, u64::MAX, Status::Suspect)]);
    }
}

#[test]
fn a_dead_claim_under_the_last_generation_cannot_evict() {
    for key in [None, Some(K1)] {
        let addr = grapevine_sim::node_addr(1);
        slander(
            63,
            key,
            &[claim(NodeId::new(addr, u64::MAX), 0, Status::Dead)],
        );
        slander(
            64,
            key,
            &[
                claim(NodeId::new(addr, u64::MAX), 0, Status::Alive),
                claim(NodeId::new(addr, u64::MAX), 1, Status::Dead),
            ],
        );
    }
}

/// One datagram from a new identity announcing copies of every member's tokens: no key
/// changes owner on any node.
#[test]
fn a_copy_of_the_members_tokens_takes_no_range() {
    let seed = seed_from_env(65);
    let _guard = SeedGuard(seed);
    let n = 4;
    let mut sim = cluster(seed, n, None);
    sim.expect_within(
        Duration::from_secs(60),
        "every node Normal and agreed",
        |s| s.rings_agree() && (0..n).all(|i| s.node(i).topology_state() == Topology::Normal),
    );
    let keys: Vec<Vec<u8>> = (0..2_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let owners = |s: &Sim, v: usize| -> Vec<String> {
        keys.iter()
            .map(|k| s.node(v).route(k).replicas[0].name.clone())
            .collect()
    };
    let before: Vec<Vec<String>> = (0..n).map(|v| owners(&sim, v)).collect();
    let all_tokens: Vec<i64> = {
        let mut t: Vec<i64> = sim
            .node(0)
            .topology()
            .flat_map(|r| r.tokens.clone())
            .collect();
        t.sort_unstable();
        t.dedup();
        t
    };
    let thief = NodeId::new("127.0.9.9:7946".parse().expect("addr"), 1);
    let cluster = sim.config().cluster_name.clone();
    for chunk in all_tokens.chunks(40) {
        // The smallest name and the smallest epoch: it would win any tie-break.
        let record = PlacementRecord {
            name: "a".into(),
            addr: thief.addr,
            generation: u64::MAX,
            version: u64::MAX,
            epoch: 1,
            status: Topology::Normal,
            location: Location::default(),
            tokens: chunk.to_vec(),
        };
        let data = craft(&cluster, None, &thief, &[Message::Placement(record)]);
        for v in 0..n {
            let r = sim.with_node(v, |node, now| node.handle_packet(now, thief.addr, &data));
            sim.check(r.is_ok(), || {
                format!("node {v} refused the datagram: {r:?}")
            });
        }
    }
    sim.run_for(Duration::from_secs(60));
    for (v, was) in before.iter().enumerate() {
        let after = owners(&sim, v);
        let moved = after.iter().zip(was).filter(|(a, b)| a != b).count();
        sim.check(moved == 0, || {
            format!(
                "node {v}: {moved} of {} keys changed owner to the thief",
                keys.len()
            )
        });
    }
    println!(
        "seed {seed}: {} forged copies of {} tokens: 0 of {} keys changed owner on {n} nodes \
         (token of key 0: {})",
        all_tokens.len().div_ceil(40),
        all_tokens.len(),
        keys.len(),
        token_for(&keys[0])
    );
}

/// Time from crashing node `victim` until every other running node declared it dead.
fn detection(sim: &mut Sim, victim: usize, within: Duration) {
    sim.crash(victim);
    let n = sim.len();
    sim.expect_within(within, "the crash detected everywhere", |s| {
        (0..n)
            .filter(|&v| v != victim && s.status(v).is_running())
            .all(|v| matches!(s.state_seen(v, victim), Some(Status::Dead) | None))
    });
}

/// After a flood of a million forged identities at one node, a real crash is still
/// detected within twice the clean-cluster time, and a new real node joins through
/// the flooded node.
#[test]
fn a_flood_of_forged_identities_starves_neither_detection_nor_joins() {
    let seed = seed_from_env(66);
    let _guard = SeedGuard(seed);
    let n = 10;
    let mut cfg = Config::lan("sim");
    cfg.max_members = 2_000;
    let build = |cfg: &Config| {
        let mut sim = SimBuilder::new(seed)
            .nodes(n)
            .config(cfg.clone())
            .event_log(EventLog::Membership)
            .build();
        sim.join_all_via(0);
        sim.expect_converged(Duration::from_secs(60), "cluster joining");
        sim
    };
    let bound = Duration::from_secs(120);

    let mut clean = build(&cfg);
    let start = clean.now();
    detection(&mut clean, 5, bound);
    let clean_took = clean.now() - start;

    let mut sim = build(&cfg);
    let cluster = sim.config().cluster_name.clone();
    let forger = NodeId::new("10.9.9.9:7946".parse().expect("addr"), 1);
    let mut sent = 0u32;
    while sent < 1_000_000 {
        let claims: Vec<Message<SocketAddr>> = (sent..sent + 40)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(0x0b00_0000 | i);
                Message::Member(claim(
                    NodeId::new(SocketAddr::new(ip.into(), 7946), 1),
                    0,
                    Status::Alive,
                ))
            })
            .collect();
        sent += 40;
        let data = craft(&cluster, None, &forger, &claims);
        let r = sim.with_node(0, |node, now| node.handle_packet(now, forger.addr, &data));
        sim.check(r.is_ok(), || format!("flood datagram refused: {r:?}"));
    }
    let held = sim.node(0).members().count();
    let unconfirmed = sim.node(0).unconfirmed_members();
    let evicted = sim.node(0).stats().members_evicted;
    sim.check(held <= cfg.max_members + 1, || {
        format!("{held} members held")
    });
    let start = sim.now();
    detection(&mut sim, 5, bound);
    let flooded_took = sim.now() - start;
    sim.check(flooded_took <= clean_took * 2, || {
        format!(
            "crash detected in {:.1} s after the flood, {:.1} s clean",
            flooded_took.as_secs_f64(),
            clean_took.as_secs_f64()
        )
    });
    // A new real node joins through the flooded node and is listed everywhere.
    let newcomer = sim.add_node();
    sim.join(newcomer, &[0]);
    let id = sim.id(newcomer);
    sim.expect_within(
        Duration::from_secs(60),
        "the newcomer listed everywhere",
        |s| {
            (0..s.len())
                .filter(|&v| v != newcomer && s.status(v).is_running())
                .all(|v| {
                    s.node(v)
                        .members()
                        .any(|m| m.id == id && m.state == Status::Alive)
                })
        },
    );
    println!(
        "seed {seed}: 1,000,000 forged identities at node 0: {held} members held ({unconfirmed} \
         unconfirmed, {evicted} evicted); crash detected everywhere in {:.1} s (clean {:.1} s); \
         a new node joined through the flooded node",
        flooded_took.as_secs_f64(),
        clean_took.as_secs_f64()
    );
}
