//! A little network for the core's integration tests: nodes on loopback addresses,
//! run on a lossless, instant network by polling each one in turn.

// Each test file uses the part it needs.
#![allow(dead_code)]

use std::net::SocketAddr;

use grapevine::hash::cluster_id;
use grapevine::wire::{BodyBuilder, Header};
use grapevine::{Config, Instant, Keyring, Node, NodeId};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// The node type the tests drive.
pub type TestNode = Node<SocketAddr, ChaCha8Rng>;

/// A datagram delivered: `(from, to, bytes)`.
pub type Delivered = (SocketAddr, SocketAddr, Vec<u8>);

/// The address of node `i`.
pub fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

/// Node `i` of `cluster`, seeded by `i`, sealing with `key` if given.
pub fn node(cluster: &str, i: u8, key: Option<[u8; 32]>) -> TestNode {
    let mut n = Node::new(
        Config::lan(cluster),
        NodeId::new(addr(i), 1),
        ChaCha8Rng::seed_from_u64(u64::from(i)),
    )
    .expect("config");
    if let Some(k) = key {
        n.set_keyring(Some(Keyring::new(k)));
    }
    n
}

/// An unsealed datagram of `cluster` carrying `body`.
pub fn unsealed(cluster: &str, body: BodyBuilder) -> Vec<u8> {
    let mut data = Vec::new();
    Header {
        flags: 0,
        cluster_id: cluster_id(cluster),
    }
    .write(&mut data);
    data.extend_from_slice(&body.finish());
    data
}

/// Delivers everything the nodes send, at `now`, until nobody sends; events are
/// dropped. Returns what was delivered (or sent to an address no node has).
pub fn settle(nodes: &mut [TestNode], now: Instant) -> Vec<Delivered> {
    let mut log = Vec::new();
    let mut moved = true;
    while moved {
        moved = false;
        for i in 0..nodes.len() {
            while let Some(t) = nodes[i].poll_transmit() {
                moved = true;
                let from = nodes[i].id().addr;
                if let Some(j) = nodes.iter().position(|n| n.id().addr == t.dest) {
                    let _ = nodes[j].handle_packet(now, from, &t.payload);
                }
                log.push((from, t.dest, t.payload));
            }
            while nodes[i].poll_event().is_some() {}
        }
    }
    log
}

/// Runs the nodes from `from` until `until`, firing each timer when it is due.
/// Returns every datagram delivered.
pub fn run(nodes: &mut [TestNode], from: Instant, until: Instant) -> Vec<Delivered> {
    let mut log = Vec::new();
    let mut now = from;
    loop {
        log.extend(settle(nodes, now));
        let Some(next) = nodes.iter().filter_map(|n| n.poll_timeout()).min() else {
            return log;
        };
        if next > until {
            return log;
        }
        now = next;
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
    }
}
