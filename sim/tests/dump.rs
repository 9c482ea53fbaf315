//! `Node::dump`: the read-only picture shows what the node holds: a suspicion with its
//! deadline and confirmations, queued rumours by class, the ring, requests in flight,
//! and taking it changes nothing (the run's transmit digest is the same with and
//! without dumps).

use core::time::Duration;

use grapevine::Status;
use grapevine::dump::{MemberDump, RequestDump};
use grapevine_sim::{NetConfig, Sim, node_addr, secs};

fn cluster(seed: u64) -> Sim {
    let mut sim = Sim::new(seed, 6, grapevine::Config::lan("dump"), NetConfig::lan());
    sim.join_all_via(0);
    sim.expect_within(Duration::from_secs(60), "converged and ready", |s| {
        s.converged() && (0..6).all(|i| s.node(i).is_ready())
    });
    sim
}

fn member(
    dump: &grapevine::Dump<std::net::SocketAddr>,
    i: usize,
) -> &MemberDump<std::net::SocketAddr> {
    dump.members
        .iter()
        .find(|m| m.id.addr == node_addr(i))
        .expect("member in the dump")
}

#[test]
fn a_dump_shows_suspicion_rumours_ring_and_requests() {
    let mut sim = cluster(1);
    let dump = sim.node(0).dump();
    assert!(dump.members[0].local && dump.members[0].name.as_deref() == Some("n0"));
    assert_eq!(dump.members.len(), 6);
    assert!(
        dump.members
            .iter()
            .all(|m| m.status == Status::Alive && m.confirmed)
    );
    assert_eq!(dump.ring_digest, sim.node(0).ring_digest());
    assert_eq!(dump.ring_tokens, 6 * 16);
    assert_eq!(dump.records.len(), 6);
    assert!(dump.ready);
    assert_eq!(dump.sync_root, sim.node(0).sync_root());

    // A write queues a state rumour.
    sim.set(0, "colour", b"green").unwrap();
    let dump = sim.node(0).dump();
    let state = dump.rumours.iter().find(|c| c.class == "state").unwrap();
    assert_eq!(state.queued, 1, "{:?}", dump.rumours);
    assert_eq!(state.transmits, vec![(0, 1)]);
    assert!(dump.retransmit_limit >= 4);

    // A crash: node 0 suspects node 5, with a deadline ahead and its confirmations.
    sim.crash(5);
    sim.expect_within(Duration::from_secs(30), "node 0 suspects node 5", |s| {
        member(&s.node(0).dump(), 5).status == Status::Suspect
    });
    let now = sim.now();
    let dump = sim.node(0).dump();
    let suspect = member(&dump, 5);
    let suspicion = suspect.suspicion.expect("a suspicion in progress");
    assert!(
        suspicion.deadline > now && suspicion.start <= now,
        "deadline {} at {}",
        secs(suspicion.deadline),
        secs(now)
    );
    assert!(suspicion.confirmations <= suspicion.expected as usize);
    let member_rumours = dump.rumours.iter().find(|c| c.class == "topology").unwrap();
    assert!(member_rumours.queued >= 1, "the suspicion is gossiped");

    // A request to a key node 0 does not hold is in flight at node 0 until answered.
    let key = (0..10_000u32)
        .map(|k| format!("k{k}").into_bytes())
        .find(|k| {
            let set = sim.node(0).route(k);
            set.replicas.iter().all(|r| r.id.addr != node_addr(0))
                && set
                    .replicas
                    .first()
                    .is_some_and(|r| r.id.addr != node_addr(5))
        })
        .expect("a key node 0 does not replicate");
    sim.with_node(0, |n, now| n.handle_request(now, &key, b"q".to_vec()))
        .unwrap();
    let dump = sim.node(0).dump();
    assert!(
        dump.requests
            .iter()
            .any(|r| matches!(r, RequestDump::Outgoing { tried: 1, .. })),
        "{:?}",
        dump.requests
    );
}

#[test]
fn taking_dumps_changes_nothing() {
    let run = |dumps: bool| {
        let mut sim = cluster(3);
        sim.crash(2);
        for _ in 0..200 {
            sim.run_for(Duration::from_millis(100));
            if dumps {
                for i in [0, 1, 3, 4, 5] {
                    let _ = sim.node(i).dump();
                }
            }
        }
        sim.transmit_digest()
    };
    assert_eq!(run(false), run(true));
}
