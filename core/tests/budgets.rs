//! Retransmit budgets (issue 14): in a cluster of 1,000 or more, a member's arrival is
//! passed on fewer times than memberlist's `mult · ⌈log10(n + 1)⌉` (a mass join is N
//! arrivals forwarded by N nodes), while news whose loss costs a verdict keeps the
//! whole budget.

mod common;

use std::net::SocketAddr;

use common::{TestNode, addr};
use grapevine::wire::{BodyBuilder, HEADER_LEN, MemberClaim, Message, decode_body, encode_message};
use grapevine::{Duration, Instant, NodeId, Status};

/// Member `i` of the crowd the node under test learns, on an address of its own.
fn member(i: u32) -> SocketAddr {
    let [_, a, b, c] = (i + 1).to_be_bytes();
    SocketAddr::from(([10, a, b, c], 7946))
}

/// A datagram from `from` (its own sender, generation 1) carrying `msg`.
fn datagram(from: SocketAddr, msg: &Message<SocketAddr>) -> Vec<u8> {
    let mut body = BodyBuilder::new(&NodeId::new(from, 1), 1400 - HEADER_LEN);
    assert!(body.push(msg));
    common::unsealed("budget", body)
}

/// Runs `node` from `now` for `secs` seconds, its timers fired every 100 ms, every
/// ping to a crowd member answered by that member (so the crowd stays confirmed and
/// alive). Returns the datagrams it sent that carry `watched`, and the end time.
fn run(node: &mut TestNode, mut now: Instant, secs: u64, watched: &[u8]) -> (usize, Instant) {
    let mut carrying = 0;
    for _ in 0..secs * 10 {
        let mut answers = Vec::new();
        while let Some(t) = node.poll_transmit() {
            if !watched.is_empty() && t.payload.windows(watched.len()).any(|w| w == watched) {
                carrying += 1;
            }
            let Some(body) = t.payload.get(HEADER_LEN..) else {
                continue;
            };
            let Ok((_, messages)) = decode_body::<SocketAddr>(body) else {
                continue;
            };
            for m in messages {
                if let Message::Ping { seq } = m {
                    answers.push((t.dest, Message::Ack { seq }));
                }
            }
        }
        for (from, ack) in answers {
            let data = datagram(from, &ack);
            node.handle_packet(now, from, &data)
                .expect("an ack is accepted");
        }
        now = now + Duration::from_millis(100);
        node.handle_timeout(now);
    }
    (carrying, now)
}

/// An `Alive` claim about `addr`'s life at `incarnation`, encoded as a rumour is.
fn alive(addr: SocketAddr, incarnation: u64) -> (MemberClaim<SocketAddr>, Vec<u8>) {
    let claim = MemberClaim {
        id: NodeId::new(addr, 1),
        incarnation,
        status: Status::Alive,
    };
    let encoded = encode_message(&Message::Member(claim.clone()));
    (claim, encoded)
}

#[test]
fn in_a_cluster_of_a_thousand_an_arrival_goes_12_times_and_a_refutation_16() {
    let mut node = common::node("budget", 1, None);
    let mut now = Instant::ZERO;
    node.join(now, []);
    // 1,100 members speak to the node themselves, and answer its pings.
    let crowd = 1_100;
    for i in 0..crowd {
        let (claim, _) = alive(member(i), 0);
        let data = datagram(member(i), &Message::Member(claim));
        node.handle_packet(now, member(i), &data)
            .expect("a member's own claim is accepted");
    }
    // Their arrivals spend their budgets.
    (_, now) = run(&mut node, now, 60, &[]);
    assert_eq!(node.live_members(), crowd as usize, "the crowd is live");
    assert_eq!(node.unconfirmed_members(), 0, "and confirmed");

    // ⌈log10(1,102)⌉ = 4 decades: memberlist's limit is 16; an arrival gets
    // max(⌈4 / 2⌉, 3) = 3 decades, 12 sends.
    let newcomer = addr(200);
    let (claim, encoded) = alive(newcomer, 0);
    node.handle_packet(now, newcomer, &datagram(newcomer, &Message::Member(claim)))
        .expect("the newcomer's own claim is accepted");
    let (arrival, at) = run(&mut node, now, 60, &encoded);
    now = at;

    // A member's refutation (its incarnation raised) keeps the whole budget.
    let refuting = member(7);
    let (claim, encoded) = alive(refuting, 1);
    node.handle_packet(now, refuting, &datagram(refuting, &Message::Member(claim)))
        .expect("the refutation is accepted");
    let (refutation, _) = run(&mut node, now, 60, &encoded);
    println!(
        "with {} members, the node passed an arrival on {arrival} times and a refutation \
         {refutation} times",
        node.live_members()
    );
    assert_eq!(arrival, 12, "an arrival's budget at 1,102 members");
    assert_eq!(refutation, 16, "memberlist's limit at 1,102 members");
}
