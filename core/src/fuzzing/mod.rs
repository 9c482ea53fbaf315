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
//! - after `handle_timeout(now)`, the next deadline is later than `now` (no busy loop);
//! - memory stays bounded: members ≤ `max_members` + 1, unconfirmed members within
//!   `unconfirmed_share`, state held for at most a table's worth of owners (every one
//!   of the 256 fuzz addresses is looked at), placement records ≤ [`max_records`];
//! - ring ownership: the tokens of a member a node has seen established (Normal, on
//!   the ring) are held by no other on-ring name while it stays on the ring;
//! - liveness: after the inputs, the network runs healthy for a quiet period derived
//!   from the config (a probe of every member, the longest suspicion, `dead_retention`,
//!   ten gossip rounds); then every node that is up (joined, not leaving, not crashed)
//!   is alive in the view of every other up node it was linked to (one holding the
//!   other's current life as live when the period began, transitively);
//! - in a keyed setup, a node's own datagram is refused only as `Replayed`, and only
//!   when that is explained: it was duplicated, its sender restarted since, a forged
//!   datagram in its sender's name moved the window, or it fell behind the window.
#![allow(clippy::panic, missing_docs)]

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;

use arbitrary::Arbitrary;
use rand_core::RngCore;
use serde::Serialize;

use crate::Duration;
use crate::config::Config;
use crate::event::Event;
use crate::hash::{cluster_id, mix64};
use crate::keyring::{Key, Keyring, SEAL_OVERHEAD};
use crate::membership::{MemberInfo, NodeId, Status};
use crate::node::Node;
use crate::placement::{PlacementRecord, Token, Topology};
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
    feed_checked(node, now, from, data, true)
}

/// [`feed`], with the "a rejection changes nothing" comparison only when
/// `may_be_refused`: a datagram the caller knows must be accepted (a node's own output
/// on an unkeyed network; the caller panics on a refusal) needs no snapshot before it,
/// and the snapshot of a whole node per datagram was a large share of a healthy
/// stretch's cost.
fn feed_checked<A: crate::Address, R: RngCore>(
    node: &mut Node<A, R>,
    now: Instant,
    from: A,
    data: &[u8],
    may_be_refused: bool,
) -> Result<(), PacketError> {
    let before = may_be_refused.then(|| snapshot(node));
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
            if let Some(before) = before {
                assert_eq!(
                    snapshot(node),
                    before,
                    "a rejected datagram ({e:?}) changed the node"
                );
            }
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
    // Joining raises events of its own (the node's placement): drain them too, so
    // that "a rejected datagram caused an event" means what it says.
    drain(&mut node, &me, config.max_datagram_size);
    while node.poll_event().is_some() {}
    let now = Instant::from_millis(1);
    let _ = feed(&mut node, now, from, data);
    drain(&mut node, &me, config.max_datagram_size);
    while node.poll_event().is_some() {}
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

mod world;
pub use world::*;
