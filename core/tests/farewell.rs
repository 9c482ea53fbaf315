//! A member's farewell heard from the member itself is echoed back to it, so that a
//! late farewell (sent before the member rejoined) or a forged one is answered at once
//! by the member's current claim instead of leaving it gone in our view for good.

mod common;

use std::net::SocketAddr;

use common::{TestNode, addr, run, settle};
use grapevine::hash::cluster_id;
use grapevine::wire::{BodyBuilder, HEADER_LEN, Header, MemberClaim, Message};
use grapevine::{Instant, NodeId, Status};

fn node(i: u8) -> TestNode {
    common::node("farewell", i, None)
}

fn status_of(n: &TestNode, who: SocketAddr) -> Option<(Status, u64)> {
    n.members()
        .find(|m| m.id.addr == who)
        .map(|m| (m.state, m.incarnation))
}

#[test]
fn a_farewell_the_member_did_not_mean_is_refuted_at_once() {
    let mut nodes = vec![node(1), node(2)];
    nodes[0].join(Instant::ZERO, []);
    nodes[1].join(Instant::ZERO, [addr(1)]);
    run(&mut nodes, Instant::ZERO, Instant::from_secs(10));
    assert_eq!(status_of(&nodes[0], addr(2)), Some((Status::Alive, 0)));

    // A farewell in node 2's name, from node 2's address, at its current incarnation:
    // what a late datagram from before a rejoin looks like (or a forged one).
    let b = NodeId::new(addr(2), 1);
    let mut body = BodyBuilder::new(&b, 1400 - HEADER_LEN);
    let farewell = MemberClaim {
        id: b.clone(),
        incarnation: 0,
        status: Status::Left,
    };
    assert!(body.push(&Message::Member(farewell.clone())));
    let mut data = Vec::new();
    Header {
        flags: 0,
        cluster_id: cluster_id("farewell"),
    }
    .write(&mut data);
    data.extend_from_slice(&body.finish());

    let now = Instant::from_secs(10);
    while nodes[0].poll_transmit().is_some() {}
    nodes[0]
        .handle_packet(now, addr(2), &data)
        .expect("well formed");
    assert_eq!(
        status_of(&nodes[0], addr(2)).map(|(s, _)| s),
        Some(Status::Left),
        "node 1 takes the farewell"
    );
    // The echo: the farewell goes back to where it came from.
    let mut echoed = false;
    let mut held = Vec::new();
    while let Some(t) = nodes[0].poll_transmit() {
        if t.dest == addr(2) {
            let (_, msgs) =
                grapevine::wire::decode_body::<SocketAddr>(&t.payload[HEADER_LEN..]).expect("ours");
            echoed |= msgs.contains(&Message::Member(farewell.clone()));
        }
        held.push(t);
    }
    assert!(echoed, "the farewell is echoed to the member");
    for t in held {
        if t.dest == addr(2) {
            let _ = nodes[1].handle_packet(now, addr(1), &t.payload);
        }
    }
    // Node 2 never left: it refutes, and node 1 holds it alive again at once.
    settle(&mut nodes, now);
    assert_eq!(
        status_of(&nodes[0], addr(2)),
        Some((Status::Alive, 1)),
        "node 2's refutation reached node 1"
    );
    run(&mut nodes, now, Instant::from_secs(40));
    assert_eq!(
        status_of(&nodes[0], addr(2)).map(|(s, _)| s),
        Some(Status::Alive)
    );
}

#[test]
fn a_real_leaver_ignores_the_echo() {
    let mut nodes = vec![node(1), node(2)];
    nodes[0].join(Instant::ZERO, []);
    nodes[1].join(Instant::ZERO, [addr(1)]);
    run(&mut nodes, Instant::ZERO, Instant::from_secs(10));
    nodes[1].leave(Instant::from_secs(10));
    run(&mut nodes, Instant::from_secs(10), Instant::from_secs(60));
    assert_eq!(
        status_of(&nodes[0], addr(2)).map(|(s, _)| s),
        Some(Status::Left),
        "the leaver stays left"
    );
    assert_eq!(nodes[1].incarnation(), 0, "the echo raised nothing");
}
