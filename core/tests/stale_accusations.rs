//! An accusation that a member has refuted already is answered with the refutation.
//!
//! Under heavy loss a node can miss a member's refutation while it still holds the
//! suspicion (or spreads it, or holds the death verdict). Its timer then runs out on a
//! live member unless someone tells it. Every node that holds the newer claim answers
//! a stale accusation with it, in the reply to the datagram that carried it.

mod common;

use std::net::SocketAddr;

use common::{TestNode, addr, run, settle, unsealed};
use grapevine::wire::{BodyBuilder, HEADER_LEN, MemberClaim, Message};
use grapevine::{Event, Instant, NodeId, Status};

const CLUSTER: &str = "stale";

fn status_of(n: &TestNode, who: SocketAddr) -> Option<(Status, u64)> {
    n.members()
        .find(|m| m.id.addr == who)
        .map(|m| (m.state, m.incarnation))
}

/// A datagram from node `from` carrying `msgs`.
fn datagram(from: u8, msgs: &[Message<SocketAddr>]) -> Vec<u8> {
    let sender = NodeId::new(addr(from), 1);
    let mut body = BodyBuilder::new(&sender, 1400 - HEADER_LEN);
    for m in msgs {
        assert!(body.push(m));
    }
    unsealed(CLUSTER, body)
}

/// What `node` sent to `to`, decoded.
fn sent_to(node: &mut TestNode, to: SocketAddr) -> Vec<Message<SocketAddr>> {
    let mut msgs = Vec::new();
    while let Some(t) = node.poll_transmit() {
        if t.dest == to {
            let (_, m) = grapevine::wire::decode_body::<SocketAddr>(&t.payload[HEADER_LEN..])
                .expect("our own datagram decodes");
            msgs.extend(m);
        }
    }
    msgs
}

/// Three nodes; node 2 has refuted a suspicion once (incarnation 1), and node 1 knows.
fn cluster() -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = (1..=3).map(|i| common::node(CLUSTER, i, None)).collect();
    nodes[0].join(Instant::ZERO, []);
    nodes[1].join(Instant::ZERO, [addr(1)]);
    nodes[2].join(Instant::ZERO, [addr(1)]);
    run(&mut nodes, Instant::ZERO, Instant::from_secs(10));
    let accusation = Message::Suspect {
        id: NodeId::new(addr(2), 1),
        incarnation: 0,
        accuser: addr(3),
    };
    let now = Instant::from_secs(10);
    nodes[1]
        .handle_packet(now, addr(3), &datagram(3, &[accusation]))
        .expect("well formed");
    run(&mut nodes, now, Instant::from_secs(15));
    assert_eq!(status_of(&nodes[0], addr(2)), Some((Status::Alive, 1)));
    nodes
}

#[test]
fn a_stale_suspicion_or_verdict_is_answered_with_the_refutation() {
    let mut nodes = cluster();
    let now = Instant::from_secs(15);
    settle(&mut nodes, now);
    let stale = [
        Message::Suspect {
            id: NodeId::new(addr(2), 1),
            incarnation: 0,
            accuser: addr(3),
        },
        Message::Member(MemberClaim {
            id: NodeId::new(addr(2), 1),
            incarnation: 0,
            status: Status::Dead,
        }),
    ];
    for msg in stale {
        nodes[0]
            .handle_packet(now, addr(3), &datagram(3, std::slice::from_ref(&msg)))
            .expect("well formed");
        let refutation = Message::Member(MemberClaim {
            id: NodeId::new(addr(2), 1),
            incarnation: 1,
            status: Status::Alive,
        });
        assert!(
            sent_to(&mut nodes[0], addr(3)).contains(&refutation),
            "{msg:?} is answered with the refutation"
        );
        assert_eq!(status_of(&nodes[0], addr(2)), Some((Status::Alive, 1)));
        while let Some(e) = nodes[0].poll_event() {
            assert!(
                !matches!(e, Event::MemberSuspect(_) | Event::MemberDied(_)),
                "a stale accusation changes nothing: {e:?}"
            );
        }
    }
}

#[test]
fn a_current_accusation_is_taken_not_answered() {
    let mut nodes = cluster();
    let now = Instant::from_secs(15);
    settle(&mut nodes, now);
    let current = Message::Suspect {
        id: NodeId::new(addr(2), 1),
        incarnation: 1,
        accuser: addr(3),
    };
    nodes[0]
        .handle_packet(now, addr(3), &datagram(3, &[current]))
        .expect("well formed");
    assert_eq!(status_of(&nodes[0], addr(2)), Some((Status::Suspect, 1)));
    let answered = sent_to(&mut nodes[0], addr(3)).into_iter().any(
        |m| matches!(m, Message::Member(c) if c.id.addr == addr(2) && c.status == Status::Alive),
    );
    assert!(!answered, "nothing newer to answer with");
}
