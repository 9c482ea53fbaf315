//! Lifeguard's buddy system for any datagram: a node that suspects a member answers
//! the member's own datagram with the suspicion, and the member's refutation comes
//! straight back, whatever the rumour queues are doing.

mod common;

use std::net::SocketAddr;

use common::{TestNode, addr};
use grapevine::wire::{BodyBuilder, HEADER_LEN, MemberClaim, Message, decode_body};
use grapevine::{Instant, Status};

fn node(i: u8) -> TestNode {
    common::node("buddy", i, None)
}

/// Node `n`'s view of the member at `a`.
fn status_of(n: &TestNode, a: SocketAddr) -> (Status, u64) {
    let m = n.members().find(|m| m.id.addr == a).expect("a member");
    (m.state, m.incarnation)
}

/// Every message in the transmits of `n` to `dest` (others are dropped).
fn sent_to(n: &mut TestNode, dest: SocketAddr) -> Vec<(Vec<u8>, Vec<Message<SocketAddr>>)> {
    let mut out = Vec::new();
    while let Some(t) = n.poll_transmit() {
        if t.dest == dest {
            let (_, msgs) = decode_body::<SocketAddr>(&t.payload[HEADER_LEN..]).expect("ours");
            out.push((t.payload, msgs));
        }
    }
    out
}

#[test]
fn a_suspect_that_speaks_to_us_hears_of_it_and_refutes_at_once() {
    let mut nodes = vec![node(1), node(2), node(3)];
    nodes[0].join(Instant::ZERO, []);
    nodes[1].join(Instant::ZERO, [addr(1)]);
    nodes[2].join(Instant::ZERO, [addr(1)]);
    common::run(&mut nodes, Instant::ZERO, Instant::from_secs(10));
    let now = Instant::from_secs(10);
    let (status, incarnation) = status_of(&nodes[0], addr(2));
    assert_eq!(status, Status::Alive);

    // Node 3 tells node 1 that node 2 is suspect.
    let two = nodes[1].id().clone();
    let mut body = BodyBuilder::new(nodes[2].id(), 1400 - HEADER_LEN);
    assert!(body.push(&Message::Suspect {
        id: two.clone(),
        incarnation,
        accuser: addr(3),
    }));
    nodes[0]
        .handle_packet(now, addr(3), &common::unsealed("buddy", body))
        .expect("well formed");
    assert_eq!(status_of(&nodes[0], addr(2)).0, Status::Suspect);
    for n in nodes.iter_mut() {
        while n.poll_transmit().is_some() {}
    }

    // Node 2 says anything at all to node 1, from its own address: the answer
    // carries the suspicion.
    let mut body = BodyBuilder::new(&two, 1400 - HEADER_LEN);
    assert!(body.push(&Message::<SocketAddr>::Ack { seq: 7 }));
    nodes[0]
        .handle_packet(now, addr(2), &common::unsealed("buddy", body))
        .expect("well formed");
    let answers = sent_to(&mut nodes[0], addr(2));
    let told = answers.iter().find(|(_, msgs)| {
        msgs.iter().any(|m| {
            matches!(m, Message::Member(MemberClaim { id, status: Status::Suspect, .. }) if *id == two)
        })
    });
    let (payload, _) = told.expect("the answer tells node 2 it is suspected");

    // Node 2 refutes in its answer, and node 1 takes it.
    let payload = payload.clone();
    nodes[1]
        .handle_packet(now, addr(1), &payload)
        .expect("ours");
    let refutations = sent_to(&mut nodes[1], addr(1));
    assert!(!refutations.is_empty(), "node 2 answers node 1");
    for (p, _) in &refutations {
        nodes[0].handle_packet(now, addr(2), p).expect("ours");
    }
    let (status, refuted) = status_of(&nodes[0], addr(2));
    assert_eq!(status, Status::Alive, "the refutation arrived");
    assert!(refuted > incarnation);

    // A member we do not suspect draws no such answer.
    while nodes[0].poll_transmit().is_some() {}
    let mut body = BodyBuilder::new(&two, 1400 - HEADER_LEN);
    assert!(body.push(&Message::<SocketAddr>::Ack { seq: 8 }));
    nodes[0]
        .handle_packet(now, addr(2), &common::unsealed("buddy", body))
        .expect("well formed");
    assert!(
        sent_to(&mut nodes[0], addr(2)).is_empty(),
        "nothing to tell"
    );
}
