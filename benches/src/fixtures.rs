//! Fixtures for the micro-benchmarks: a node that knows many members, and the
//! datagrams those members would send it.

use std::net::SocketAddr;

use grapevine::hash::cluster_id;
use grapevine::wire::{
    BodyBuilder, HEADER_LEN, Header, MemberClaim, Message, StateDelta, decode_body,
};
use grapevine::{
    Config, Duration, Instant, Location, Node, NodeId, PlacementRecord, Status, Topology,
};
use grapevine_sim::node_addr;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

/// The cluster name every fixture uses.
pub const CLUSTER: &str = "bench";

/// The node type the benchmarks drive.
pub type BenchNode = Node<SocketAddr, ChaCha8Rng>;

/// The identity of fixture member `i` (0 is the node under test).
pub fn id(i: usize) -> NodeId<SocketAddr> {
    NodeId::new(node_addr(i), 1)
}

/// A complete datagram (header and body) from `sender` carrying `messages`.
pub fn packet(sender: &NodeId<SocketAddr>, messages: &[Message<SocketAddr>]) -> Vec<u8> {
    let mut body = BodyBuilder::new(sender, 1400 - HEADER_LEN);
    for m in messages {
        assert!(body.push(m), "fixture message does not fit in a datagram");
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.remaining());
    Header {
        flags: 0,
        cluster_id: cluster_id(CLUSTER),
    }
    .write(&mut out);
    out.extend_from_slice(&body.finish());
    out
}

/// An `Alive` claim about member `i` at `incarnation`.
pub fn alive(i: usize, incarnation: u64) -> Message<SocketAddr> {
    Message::Member(MemberClaim {
        id: id(i),
        incarnation,
        status: Status::Alive,
    })
}

/// A 16-byte state write of member `owner`'s key `"k"` at `version`.
pub fn state(owner: usize, version: u64) -> Message<SocketAddr> {
    Message::State(StateDelta {
        owner: id(owner),
        key: "k".into(),
        version,
        value: Some(vec![7; 16]),
    })
}

/// A node (member 0) that knows `members` others, each alive, with an empty rumour
/// queue: the steady state of a converged cluster, as seen by one node.
#[derive(Debug)]
pub struct Fixture {
    /// The node under test.
    pub node: BenchNode,
    /// Its clock.
    pub now: Instant,
    /// Number of other members it knows.
    pub members: usize,
}

impl Fixture {
    /// Builds the node, admits `members` members (each sends it one datagram), and,
    /// with `tokens`, gives each of them 16 random ring tokens (as gossip would).
    /// Then lets virtual time run, answering the node's pings on the members' behalf,
    /// until every rumour has retired.
    pub fn new(members: usize, tokens: bool) -> Fixture {
        let node = Node::new(Config::lan(CLUSTER), id(0), ChaCha8Rng::seed_from_u64(1))
            .expect("valid config");
        let mut f = Fixture {
            node,
            now: Instant::ZERO,
            members,
        };
        f.node.join(f.now, []);
        f.drain();
        for i in 1..=members {
            let pkt = packet(&id(i), &[alive(i, 0)]);
            f.node
                .handle_packet(f.now, id(i).addr, &pkt)
                .expect("admit member");
            f.drain();
        }
        if tokens {
            let mut rng = ChaCha8Rng::seed_from_u64(2);
            let vnodes = f.node.config().vnodes;
            for i in 1..=members {
                let toks = grapevine::placement::random_tokens(vnodes, &mut rng);
                let msg = Message::Placement(PlacementRecord {
                    name: format!("member-{i}"),
                    addr: id(i).addr,
                    generation: id(i).generation,
                    version: 1,
                    epoch: id(i).generation.max(1),
                    status: Topology::Normal,
                    location: Location::default(),
                    tokens: toks,
                });
                let pkt = packet(&id(i), &[msg]);
                f.node
                    .handle_packet(f.now, id(i).addr, &pkt)
                    .expect("tokens");
                f.drain();
            }
        }
        f.settle();
        assert_eq!(
            f.node.live_members(),
            members,
            "every fixture member stays alive"
        );
        f
    }

    /// Drains the node's outputs, answering pings as their targets would.
    pub fn drain(&mut self) {
        let mut acks = Vec::new();
        while let Some(t) = self.node.poll_transmit() {
            let Ok((_, msgs)) = decode_body::<SocketAddr>(&t.payload[HEADER_LEN..]) else {
                continue;
            };
            for m in msgs {
                if let (Message::Ping { seq }, Some(i)) = (m, grapevine_sim::node_index(&t.dest)) {
                    acks.push((i, seq));
                }
            }
        }
        while self.node.poll_event().is_some() {}
        for (i, seq) in acks {
            let pkt = packet(&id(i), &[Message::Ack { seq }]);
            let _ = self.node.handle_packet(self.now, id(i).addr, &pkt);
            while self.node.poll_transmit().is_some() {}
            while self.node.poll_event().is_some() {}
        }
    }

    /// Runs the node's timers for up to ten virtual minutes, until a fresh ping's
    /// reply carries no rumour (the queue is empty).
    pub fn settle(&mut self) {
        let limit = self.now + Duration::from_secs(600);
        while self.now < limit {
            let next = self
                .node
                .poll_timeout()
                .unwrap_or(self.now + Duration::from_secs(1));
            self.now = next.max(self.now);
            self.node.handle_timeout(self.now);
            self.drain();
            if self.quiet() {
                break;
            }
        }
    }

    /// Whether a ping now gets a bare ack (no rumour piggybacked).
    fn quiet(&mut self) -> bool {
        let pkt = packet(&id(1), &[Message::Ping { seq: 0 }]);
        let _ = self.node.handle_packet(self.now, id(1).addr, &pkt);
        let mut quiet = true;
        while let Some(t) = self.node.poll_transmit() {
            if let Ok((_, msgs)) = decode_body::<SocketAddr>(&t.payload[HEADER_LEN..]) {
                quiet &= msgs.len() == 1;
            }
        }
        while self.node.poll_event().is_some() {}
        quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_ring_holds_every_member() {
        let f = Fixture::new(50, true);
        assert_eq!(f.node.ring().nodes(), 51);
        assert_eq!(f.node.route(b"key").replicas.len(), 3);
        let toks = f.node.tokens_of("member-7");
        assert_eq!(toks.len(), 16);
    }
}
