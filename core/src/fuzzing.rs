//! What the fuzz targets in `fuzz/` need (feature `arbitrary`): a deterministic RNG,
//! a packet builder that gets past the header and the decoder, and two harnesses that
//! drive nodes and check their invariants after every input. Each fuzz target is one
//! call to [`decode`] or [`run`]; a crash they find can be replayed with the same call.
//!
//! The invariants checked here (a panic names the one that broke):
//! - input off the wire never panics, and a datagram that is rejected changes nothing
//!   observable: members, incarnation, state, deadline and every counter except
//!   `packets_in`, `bytes_in` and exactly one drop counter; no transmit, no event;
//! - a node's incarnation never goes down within one life, it always lists itself
//!   first (alive, or left after [`Node::leave`](crate::Node::leave)) and nowhere else,
//!   and it never emits an event about itself;
//! - `packets_out`/`bytes_out` equal what was drained, every transmit fits in
//!   `max_datagram_size` and is never addressed to the sender itself;
//! - a datagram one node emits is accepted by the node it is addressed to;
//! - members stay within `max_members`, each remote owner's state within
//!   `max_state_bytes`, and the node's own keys are exactly what it wrote;
//! - after `handle_timeout(now)`, the next deadline is later than `now` (no busy loop).
#![allow(clippy::panic, missing_docs)]

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;

use arbitrary::Arbitrary;
use rand_core::RngCore;
use serde::Serialize;

use crate::config::Config;
use crate::event::Event;
use crate::hash::{cluster_id, mix64};
use crate::keyring::{Keyring, SEAL_OVERHEAD};
use crate::membership::{MemberInfo, NodeId, Status};
use crate::node::Node;
use crate::routing::RequestId;
use crate::stats::{Drops, Stats};
use crate::time::Instant;
use crate::wire::{
    BodyBuilder, FLAG_SEALED, HEADER_LEN, Header, Message, PacketError, decode_body,
};

/// A tiny deterministic RNG (SplitMix64), so fuzz targets need no RNG crate.
#[derive(Clone, Debug)]
pub struct FuzzRng(pub u64);

impl RngCore for FuzzRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Encodes a datagram the way a node of cluster `cluster_id` would: the header, then
/// `sender` and as many of `messages` as fit in `max_len` (the rest are skipped),
/// sealed with the primary key of `keyring` if one is given.
pub fn encode_packet<A: Serialize>(
    cluster_id: u64,
    keyring: Option<&Keyring>,
    nonce: [u8; 24],
    sender: &NodeId<A>,
    messages: &[Message<A>],
    max_len: usize,
) -> Vec<u8> {
    let seal = if keyring.is_some() { SEAL_OVERHEAD } else { 0 };
    let mut body = BodyBuilder::new(sender, max_len.saturating_sub(HEADER_LEN + seal));
    for m in messages {
        body.push(m);
    }
    let body = body.finish();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + seal);
    Header {
        flags: if keyring.is_some() { FLAG_SEALED } else { 0 },
        cluster_id,
    }
    .write(&mut out);
    match keyring {
        Some(ring) => ring.seal(&mut out, HEADER_LEN, &body, nonce),
        None => out.extend_from_slice(&body),
    }
    out
}

/// Everything about a node that a caller can see, for "nothing changed" checks.
#[derive(Clone, Debug, PartialEq)]
struct Snapshot<A> {
    members: Vec<MemberInfo<A>>,
    incarnation: u64,
    health: u32,
    stats: Stats,
    deadline: Option<Instant>,
    sync_root: u64,
    ring: u64,
    states: Vec<(A, Option<u64>)>,
}

fn snapshot<A: crate::Address, R: RngCore>(node: &Node<A, R>) -> Snapshot<A> {
    let members: Vec<MemberInfo<A>> = node.members().collect();
    let mut stats = *node.stats();
    stats.packets_in = 0;
    stats.bytes_in = 0;
    stats.drops = Drops::default();
    let states = members
        .iter()
        .map(|m| (m.id.addr.clone(), node.state_hash(&m.id.addr)))
        .collect();
    Snapshot {
        members,
        incarnation: node.incarnation(),
        health: node.health(),
        stats,
        deadline: node.poll_timeout(),
        sync_root: node.sync_root(),
        ring: node.ring_digest(),
        states,
    }
}

/// Hands `data` to `node` and checks the accounting of the result; on rejection, that
/// nothing else changed. Returns the result for the caller's own checks.
fn feed<A: crate::Address, R: RngCore>(
    node: &mut Node<A, R>,
    now: Instant,
    from: A,
    data: &[u8],
) -> Result<(), PacketError> {
    let before = snapshot(node);
    let stats = *node.stats();
    let result = node.handle_packet(now, from, data);
    let after = node.stats();
    assert_eq!(
        after.packets_in,
        stats.packets_in + 1,
        "packets_in counts every datagram"
    );
    assert_eq!(
        after.bytes_in,
        stats.bytes_in + data.len() as u64,
        "bytes_in counts every byte"
    );
    match &result {
        Ok(()) => assert_eq!(
            after.drops, stats.drops,
            "an accepted datagram counts no drop"
        ),
        Err(e) => {
            let mut expected = stats.drops;
            expected.count(e);
            assert_eq!(
                after.drops, expected,
                "a rejected datagram ({e:?}) counts exactly one drop"
            );
            assert_eq!(
                snapshot(node),
                before,
                "a rejected datagram ({e:?}) changed the node"
            );
            assert!(
                node.poll_transmit().is_none(),
                "a rejected datagram ({e:?}) caused a transmit"
            );
            assert!(
                node.poll_event().is_none(),
                "a rejected datagram ({e:?}) caused an event"
            );
        }
    }
    result
}

/// The `decode` target: `data` through the header and body decoders and into a fresh
/// node, both as it is and behind a valid header. Never panics unless an invariant broke.
pub fn decode(data: &[u8]) {
    let config = Config::lan("fuzz");
    let cid = cluster_id(&config.cluster_name);

    // The header: accepted only when it is exactly ours, and it round-trips.
    if let Ok(h) = Header::read(data, cid) {
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(
            &out[..],
            &data[..HEADER_LEN],
            "a header that reads writes back the same"
        );
    }

    // The body, alone and after a header: decoding is total, and what decodes
    // re-encodes to something that decodes to the same thing.
    for body in [data, data.get(HEADER_LEN..).unwrap_or_default()] {
        if let Ok((sender, messages)) = decode_body::<SocketAddr>(body) {
            let mut b = BodyBuilder::new(&sender, usize::MAX / 2);
            for m in &messages {
                assert!(b.push(m), "a decoded message re-encodes");
            }
            let again = decode_body::<SocketAddr>(&b.finish());
            assert_eq!(
                again,
                Ok((sender, messages)),
                "decode(encode(decode(x))) == decode(x)"
            );
        }
    }

    // A node: joined (so that every message has a handler that does something), fed
    // the bytes raw and behind a valid plain header.
    let me: SocketAddr = SocketAddr::from(([10, 0, 0, 1], 7946));
    let from: SocketAddr = SocketAddr::from(([10, 0, 0, 2], 7946));
    let Ok(mut node) = Node::new(config.clone(), NodeId::new(me, 1), FuzzRng(7)) else {
        panic!("the fuzz config is valid");
    };
    node.join(Instant::ZERO, [from]);
    drain(&mut node, &me, config.max_datagram_size);
    let now = Instant::from_millis(1);
    let _ = feed(&mut node, now, from, data);
    drain(&mut node, &me, config.max_datagram_size);
    let mut framed = Vec::with_capacity(HEADER_LEN + data.len());
    Header {
        flags: 0,
        cluster_id: cid,
    }
    .write(&mut framed);
    framed.extend_from_slice(data);
    let _ = feed(&mut node, now, from, &framed);
    drain(&mut node, &me, config.max_datagram_size);
}

/// Drains a node's outputs, checking the transmits; returns them.
fn drain<A: crate::Address, R: RngCore>(
    node: &mut Node<A, R>,
    me: &A,
    max: usize,
) -> Vec<(A, Vec<u8>)> {
    let stats = *node.stats();
    let mut out = Vec::new();
    let mut bytes = 0u64;
    while let Some(t) = node.poll_transmit() {
        assert!(
            t.payload.len() <= max,
            "a transmit of {} bytes exceeds max_datagram_size {max}",
            t.payload.len()
        );
        assert!(t.dest != *me, "a node sent a datagram to itself");
        bytes += t.payload.len() as u64;
        out.push((t.dest, t.payload));
    }
    let after = node.stats();
    assert_eq!(
        after.packets_out,
        stats.packets_out + out.len() as u64,
        "packets_out equals transmits drained"
    );
    assert_eq!(
        after.bytes_out,
        stats.bytes_out + bytes,
        "bytes_out equals bytes drained"
    );
    out
}

/// The fuzz network's addresses: small, so that arbitrary claims often name real nodes.
pub type FuzzAddr = u8;

/// How the nodes of a [`Scenario`] are configured.
#[derive(Arbitrary, Clone, Debug)]
pub struct Setup {
    /// Nodes in the network, 1 to 3 (addresses 1, 2, 3).
    pub nodes: u8,
    /// Seal every datagram with a shared key.
    pub keyed: bool,
    /// Use the smallest datagram size the config allows (512 bytes).
    pub small_datagrams: bool,
    /// Ring tokens per node, 0 to 4.
    pub vnodes: u8,
    /// Seed of every node's RNG.
    pub seed: u64,
}

/// One input of a [`Scenario`]. `node` fields pick a node modulo the node count.
#[derive(Arbitrary, Clone, Debug)]
pub enum Input {
    /// Arbitrary bytes to a node.
    Raw {
        node: u8,
        from: FuzzAddr,
        data: Vec<u8>,
    },
    /// Arbitrary messages from an arbitrary sender, with a valid header (sealed in a
    /// keyed setup unless `unsealed`), so that they reach the protocol.
    Packet {
        node: u8,
        from: FuzzAddr,
        sender: NodeId<FuzzAddr>,
        messages: Vec<Message<FuzzAddr>>,
        unsealed: bool,
    },
    /// Delivers the in-flight datagram `pick` (modulo the count); `keep` duplicates it.
    Deliver { pick: u8, keep: bool },
    /// Delivers everything in flight, in order.
    Flush,
    /// Loses the in-flight datagram `pick`.
    Lose { pick: u8 },
    /// Time passes by `millis`; every node's timers fire.
    Tick { millis: u16 },
    /// The clock jumps to the earliest deadline; that node's timers fire.
    Wake,
    /// `set` on a node.
    Set {
        node: u8,
        key: String,
        value: Vec<u8>,
    },
    /// `delete` on a node.
    Delete { node: u8, key: String },
    /// `handle_request` on a node.
    Request {
        node: u8,
        key: Vec<u8>,
        payload: Vec<u8>,
    },
    /// `respond` to the request `pick` a node received (or to an unknown id).
    Respond {
        node: u8,
        pick: u8,
        payload: Vec<u8>,
    },
    /// `join` through the given addresses.
    Join { node: u8, seeds: Vec<FuzzAddr> },
    /// `leave`.
    Leave { node: u8 },
    /// A node restarts as a new generation (a fresh `Node`), not yet joined.
    Restart { node: u8 },
}

/// The `node` target's input: a setup and a sequence of inputs.
#[derive(Arbitrary, Clone, Debug)]
pub struct Scenario {
    /// How the nodes are configured.
    pub setup: Setup,
    /// What happens to them.
    pub inputs: Vec<Input>,
}

const KEY: [u8; 32] = [0x5a; 32];
const MAX_IN_FLIGHT: usize = 256;

/// The config every fuzzed node gets: small bounds, so that they are reached.
pub fn fuzz_config(setup: &Setup) -> Config {
    let mut c = Config::lan("fuzz");
    c.max_datagram_size = if setup.small_datagrams { 512 } else { 1400 };
    c.vnodes = usize::from(setup.vnodes % 5);
    c.replication_factor = 2;
    c.max_members = 16;
    c.max_rumours = 32;
    c.max_requests_in_flight = 8;
    c.max_value_size = 200;
    c.max_state_bytes = 1024;
    c.dead_retention = crate::Duration::from_secs(30);
    c.tombstone_grace = crate::Duration::from_secs(20);
    c
}

struct Slot {
    node: Node<FuzzAddr, FuzzRng>,
    generation: u64,
    incarnation: u64,
    joined: bool,
    left: bool,
    /// What this node wrote (keys outside `gv.`), as the owner sees it.
    model: BTreeMap<String, Vec<u8>>,
    /// Requests delivered here, for `respond`.
    requests: Vec<RequestId>,
}

struct World {
    config: Config,
    keyring: Option<Keyring>,
    slots: Vec<Slot>,
    now: Instant,
    /// In flight: (from, to, payload).
    wire: Vec<(FuzzAddr, FuzzAddr, Vec<u8>)>,
    nonce: u64,
    seed: u64,
}

fn addr_of(i: usize) -> FuzzAddr {
    i as FuzzAddr + 1
}

impl World {
    fn new_node(&self, i: usize, generation: u64) -> Node<FuzzAddr, FuzzRng> {
        let rng = FuzzRng(self.seed ^ mix64(i as u64 + (generation << 8)));
        let Ok(mut node) = Node::new(
            self.config.clone(),
            NodeId::new(addr_of(i), generation),
            rng,
        ) else {
            panic!("the fuzz config is valid");
        };
        node.set_keyring(self.keyring.clone());
        node
    }

    fn pick(&self, node: u8) -> usize {
        usize::from(node) % self.slots.len()
    }

    /// Drains node `i` and checks its invariants.
    fn settle(&mut self, i: usize) {
        let me = addr_of(i);
        let max = self.config.max_datagram_size;
        let slot = &mut self.slots[i];
        for (dest, payload) in drain(&mut slot.node, &me, max) {
            if self.wire.len() >= MAX_IN_FLIGHT {
                self.wire.remove(0);
            }
            self.wire.push((me, dest, payload));
        }
        while let Some(e) = slot.node.poll_event() {
            let about = match &e {
                Event::MemberJoined(id)
                | Event::MemberSuspect(id)
                | Event::MemberRecovered(id)
                | Event::MemberDied(id)
                | Event::MemberLeft(id) => Some(id),
                Event::StateChanged { node, .. } => Some(node),
                Event::Request { id, .. } => {
                    if slot.requests.len() < 64 {
                        slot.requests.push(*id);
                    }
                    None
                }
                _ => None,
            };
            if let Some(id) = about {
                assert!(
                    id.addr != me,
                    "node {me} emitted an event about itself: {e:?}"
                );
            }
        }
        check(slot, &self.config);
    }

    fn settle_all(&mut self) {
        for i in 0..self.slots.len() {
            self.settle(i);
        }
    }

    fn deliver(&mut self, k: usize) {
        let (from, to, payload) = self.wire.remove(k);
        let Some(i) = (1..=self.slots.len())
            .find(|&a| a as FuzzAddr == to)
            .map(|a| a - 1)
        else {
            return; // addressed to no node: lost
        };
        let now = self.now;
        let result = feed(&mut self.slots[i].node, now, from, &payload);
        if let Err(e) = result {
            // Our own output must always be accepted by its destination.
            panic!("node {to} rejected a datagram that node {from} emitted: {e:?}");
        }
        self.settle(i);
    }

    fn timeout(&mut self, i: usize) {
        let now = self.now;
        self.slots[i].node.handle_timeout(now);
        let next = self.slots[i].node.poll_timeout();
        assert!(
            next.is_none_or(|t| t > now),
            "after handle_timeout({now:?}) the deadline is {next:?}: a busy loop"
        );
        self.settle(i);
    }

    fn step(&mut self, input: Input) {
        match input {
            Input::Raw { node, from, data } => {
                let i = self.pick(node);
                let _ = feed(&mut self.slots[i].node, self.now, from, &data);
                self.settle(i);
            }
            Input::Packet {
                node,
                from,
                sender,
                messages,
                unsealed,
            } => {
                let i = self.pick(node);
                self.nonce += 1;
                let mut nonce = [0u8; 24];
                nonce[..8].copy_from_slice(&self.nonce.to_le_bytes());
                let ring = self.keyring.as_ref().filter(|_| !unsealed);
                let cid = cluster_id(&self.config.cluster_name);
                let data = encode_packet(
                    cid,
                    ring,
                    nonce,
                    &sender,
                    &messages,
                    self.config.max_datagram_size,
                );
                let result = feed(&mut self.slots[i].node, self.now, from, &data);
                if self.keyring.is_some() == ring.is_some() && sender.addr != addr_of(i) {
                    assert_eq!(result, Ok(()), "a well-formed datagram was refused");
                }
                self.settle(i);
            }
            Input::Deliver { pick, keep } => {
                if !self.wire.is_empty() {
                    let k = usize::from(pick) % self.wire.len();
                    if keep {
                        let copy = self.wire[k].clone();
                        self.wire.push(copy);
                    }
                    self.deliver(k);
                }
            }
            Input::Flush => {
                for _ in 0..self.wire.len() {
                    self.deliver(0);
                }
            }
            Input::Lose { pick } => {
                if !self.wire.is_empty() {
                    let k = usize::from(pick) % self.wire.len();
                    self.wire.remove(k);
                }
            }
            Input::Tick { millis } => {
                self.now = self.now + crate::Duration::from_millis(u64::from(millis));
                for i in 0..self.slots.len() {
                    self.timeout(i);
                }
            }
            Input::Wake => {
                let next = (0..self.slots.len())
                    .filter_map(|i| self.slots[i].node.poll_timeout().map(|t| (t, i)))
                    .min();
                if let Some((t, i)) = next {
                    self.now = self.now.max(t);
                    self.timeout(i);
                }
            }
            Input::Set { node, key, value } => {
                let i = self.pick(node);
                let now = self.now;
                let slot = &mut self.slots[i];
                if slot.node.set(now, &key, &value).is_ok() {
                    slot.model.insert(key, value);
                }
                self.settle(i);
            }
            Input::Delete { node, key } => {
                let i = self.pick(node);
                let now = self.now;
                let slot = &mut self.slots[i];
                if slot.node.delete(now, &key).is_ok() {
                    slot.model.remove(&key);
                }
                self.settle(i);
            }
            Input::Request { node, key, payload } => {
                let i = self.pick(node);
                let _ = self.slots[i].node.handle_request(self.now, &key, payload);
                self.settle(i);
            }
            Input::Respond {
                node,
                pick,
                payload,
            } => {
                let i = self.pick(node);
                let slot = &mut self.slots[i];
                let id = if slot.requests.is_empty() {
                    RequestId(u64::from(pick))
                } else {
                    slot.requests
                        .swap_remove(usize::from(pick) % slot.requests.len())
                };
                let _ = slot.node.respond(self.now, id, payload);
                self.settle(i);
            }
            Input::Join { node, seeds } => {
                let i = self.pick(node);
                self.slots[i].node.join(self.now, seeds);
                self.slots[i].joined = true;
                self.slots[i].left = false;
                self.settle(i);
            }
            Input::Leave { node } => {
                let i = self.pick(node);
                let slot = &mut self.slots[i];
                slot.node.leave(self.now);
                slot.left |= slot.joined;
                self.settle(i);
            }
            Input::Restart { node } => {
                let i = self.pick(node);
                let generation = self.slots[i].generation + 1;
                let fresh = self.new_node(i, generation);
                self.slots[i] = Slot {
                    node: fresh,
                    generation,
                    incarnation: 0,
                    joined: false,
                    left: false,
                    model: BTreeMap::new(),
                    requests: Vec::new(),
                };
                self.settle(i);
            }
        }
    }
}

/// The per-node invariants (see the module docs).
fn check(slot: &mut Slot, config: &Config) {
    let node = &slot.node;
    let me = node.id().clone();
    assert_eq!(me.generation, slot.generation);
    let inc = node.incarnation();
    assert!(
        inc >= slot.incarnation,
        "incarnation went down from {} to {inc}",
        slot.incarnation
    );
    slot.incarnation = inc;

    let mut members = node.members();
    let Some(first) = members.next() else {
        panic!("members() is empty: it must list the node itself first")
    };
    assert_eq!(first.id, me, "members() lists the node itself first");
    assert_eq!(first.incarnation, inc);
    let expected = if slot.left {
        Status::Left
    } else {
        Status::Alive
    };
    assert_eq!(
        first.state, expected,
        "the node believes itself {:?}",
        first.state
    );
    let mut count = 1;
    for m in members {
        count += 1;
        assert!(
            m.id.addr != me.addr,
            "the node holds itself as a member: {m:?}"
        );
        let bytes: usize = node
            .keys(&m.id.addr)
            .map(|(k, _, v)| k.len() + v.len())
            .sum();
        assert!(
            bytes <= config.max_state_bytes,
            "{bytes} bytes of state held for {:?}",
            m.id
        );
    }
    assert!(
        count <= config.max_members + 1,
        "{count} members held, max_members is {}",
        config.max_members
    );

    let own: BTreeMap<String, Vec<u8>> = node
        .keys(&me.addr)
        .filter(|(k, _, _)| !k.starts_with(crate::state::RESERVED_PREFIX))
        .map(|(k, _, v)| (String::from(k), v.to_vec()))
        .collect();
    assert_eq!(own, slot.model, "the node's own state is not what it wrote");
    for (k, v) in &slot.model {
        assert_eq!(node.get(&me.addr, k), Some(&v[..]));
    }
}

/// The `node` target: runs a scenario on up to three nodes, checking every invariant
/// after every input.
pub fn run(scenario: Scenario) {
    let setup = scenario.setup;
    let config = fuzz_config(&setup);
    let mut world = World {
        keyring: setup.keyed.then(|| Keyring::new(KEY)),
        config,
        slots: Vec::new(),
        now: Instant::ZERO,
        wire: Vec::new(),
        nonce: 0,
        seed: setup.seed,
    };
    for i in 0..usize::from(setup.nodes % 3) + 1 {
        let node = world.new_node(i, 1);
        world.slots.push(Slot {
            node,
            generation: 1,
            incarnation: 0,
            joined: false,
            left: false,
            model: BTreeMap::new(),
            requests: Vec::new(),
        });
    }
    world.settle_all();
    for input in scenario.inputs {
        world.step(input);
    }
}
