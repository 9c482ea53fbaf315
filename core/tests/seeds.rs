//! `Node::set_seeds`: a runtime re-resolves seeds given as host names and hands the
//! addresses to the core, which announces itself to them at once while it is alone,
//! and not while it has live members.

use std::net::SocketAddr;

use grapevine::{Config, Instant, Node, NodeId};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

fn node(i: u8) -> Node<SocketAddr, ChaCha8Rng> {
    Node::new(
        Config::lan("seeds"),
        NodeId::new(addr(i), 1),
        ChaCha8Rng::seed_from_u64(u64::from(i)),
    )
    .expect("config")
}

fn destinations(n: &mut Node<SocketAddr, ChaCha8Rng>) -> Vec<SocketAddr> {
    let mut dests = Vec::new();
    while let Some(t) = n.poll_transmit() {
        dests.push(t.dest);
    }
    dests
}

#[test]
fn new_seeds_are_contacted_at_once_while_alone() {
    let mut joiner = node(1);
    let now = Instant::from_secs(1);
    joiner.join(now, [addr(9)]);
    assert!(destinations(&mut joiner).contains(&addr(9)));
    // The name now resolves to 2 (and to this node itself, which is left out).
    joiner.set_seeds(now, [addr(2), addr(1)]);
    assert_eq!(
        destinations(&mut joiner),
        vec![addr(2)],
        "only the new seed, at once"
    );

    // Once 2 has answered, new seeds are kept for later but not contacted.
    let mut seed = node(2);
    seed.join(now, []);
    while seed.poll_transmit().is_some() {}
    joiner.set_seeds(now, [addr(2)]);
    for t in std::iter::from_fn(|| joiner.poll_transmit()) {
        let _ = seed.handle_packet(now, addr(1), &t.payload);
    }
    for t in std::iter::from_fn(|| seed.poll_transmit()) {
        let _ = joiner.handle_packet(now, addr(2), &t.payload);
    }
    assert_eq!(joiner.live_members(), 1, "joined 2");
    joiner.set_seeds(now, [addr(3)]);
    assert!(
        !destinations(&mut joiner).contains(&addr(3)),
        "not alone: no announcement"
    );
}

#[test]
fn set_seeds_does_nothing_before_join() {
    let mut idle = node(1);
    idle.set_seeds(Instant::ZERO, [addr(2)]);
    assert!(idle.poll_transmit().is_none());
    assert_eq!(idle.poll_timeout(), None, "still idle");
}
