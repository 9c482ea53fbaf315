//! The node's hot paths on a node that knows 1,000 members.
//!
//! - `handle_packet/*`: `handle_packet` alone (outputs are drained outside the
//!   timed region, every 256 packets), for small datagrams from the 1,000 members
//!   in turn: a ping; a rumour the node already knows; a fresh membership rumour;
//!   a fresh 16-byte state rumour.
//! - `poll_cycle/*`: the whole runtime step for one datagram: `handle_packet`, then
//!   drain `poll_transmit` and `poll_event`, then `poll_timeout`.
//! - `route`: `Node::route(key)` with 1,000 members of 16 vnodes each (plus the node).
//!
//! Throughput is reported in messages (datagrams) per second.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant as Wall};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use grapevine::wire::Message;
use grapevine_benches::fixtures::{Fixture, alive, id, packet, state};

const MEMBERS: usize = 1000;
/// Datagrams handled between two (untimed) drains.
const CHUNK: u64 = 256;

/// What each datagram carries; `k` counts datagrams, so fresh rumours stay fresh.
#[derive(Clone, Copy)]
enum Kind {
    Ping,
    KnownRumour,
    FreshMemberRumour,
    FreshStateRumour,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ping => "ping",
            Kind::KnownRumour => "rumour_known",
            Kind::FreshMemberRumour => "rumour_member_fresh",
            Kind::FreshStateRumour => "rumour_state_fresh",
        }
    }

    /// The `k`-th datagram: from member `1 + k % MEMBERS`, about another member.
    fn datagram(self, k: u64) -> (SocketAddr, Vec<u8>) {
        let from = 1 + (k % MEMBERS as u64) as usize;
        let about = 1 + ((k + 1) % MEMBERS as u64) as usize;
        let round = k / MEMBERS as u64;
        let msg: Message<SocketAddr> = match self {
            Kind::Ping => Message::Ping { seq: k as u32 },
            Kind::KnownRumour => alive(about, 0),
            Kind::FreshMemberRumour => alive(about, round + 1),
            Kind::FreshStateRumour => state(about, round + 1),
        };
        (id(from).addr, packet(&id(from), &[msg]))
    }
}

fn drain(f: &mut Fixture) {
    while f.node.poll_transmit().is_some() {}
    while f.node.poll_event().is_some() {}
}

/// Times `iters` datagrams of `kind`; `full` includes the drain and `poll_timeout`.
fn run(f: &mut Fixture, kind: Kind, next: &mut u64, iters: u64, full: bool) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let batch: Vec<(SocketAddr, Vec<u8>)> = (0..n).map(|i| kind.datagram(*next + i)).collect();
        *next += n;
        let now = f.now;
        let start = Wall::now();
        for (from, data) in &batch {
            let r = f.node.handle_packet(now, *from, black_box(data));
            debug_assert!(r.is_ok());
            if full {
                while let Some(t) = f.node.poll_transmit() {
                    black_box(t);
                }
                while let Some(e) = f.node.poll_event() {
                    black_box(e);
                }
                black_box(f.node.poll_timeout());
            }
        }
        total += start.elapsed();
        drain(f);
        left -= n;
    }
    total
}

fn handle_packet(c: &mut Criterion) {
    for (group, full) in [("handle_packet", false), ("poll_cycle", true)] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(1));
        for kind in [
            Kind::Ping,
            Kind::KnownRumour,
            Kind::FreshMemberRumour,
            Kind::FreshStateRumour,
        ] {
            let mut f = Fixture::new(MEMBERS, false);
            let mut next = 0u64;
            g.bench_function(kind.name(), |b| {
                b.iter_custom(|iters| run(&mut f, kind, &mut next, iters, full))
            });
        }
        g.finish();
    }
}

fn route(c: &mut Criterion) {
    let f = Fixture::new(MEMBERS, true);
    assert_eq!(
        f.node.ring().nodes(),
        MEMBERS + 1,
        "every member is on the ring"
    );
    assert_eq!(f.node.ring().len(), (MEMBERS + 1) * f.node.config().vnodes);
    let keys: Vec<Vec<u8>> = (0..1024u32)
        .map(|k| format!("user:{k:08}").into_bytes())
        .collect();
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(1));
    let mut k = 0usize;
    g.bench_function("n1000_vnodes16_rf3", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            f.node.route(black_box(&keys[k]))
        })
    });
    g.finish();
}

fn timeout(c: &mut Criterion) {
    // One gossip-and-probe tick of an idle node with 1,000 members.
    let mut g = c.benchmark_group("handle_timeout");
    let mut f = Fixture::new(MEMBERS, false);
    g.bench_function("idle_tick_n1000", |b| {
        b.iter_batched(
            || (),
            |()| {
                let next = f.node.poll_timeout().expect("joined");
                f.now = next.max(f.now);
                f.node.handle_timeout(f.now);
                f.drain();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, handle_packet, route, timeout);
criterion_main!(benches);
