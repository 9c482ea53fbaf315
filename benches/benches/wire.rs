//! Encode and decode cost of each wire message type.
//!
//! `encode` is `encode_message` (what the core does when it queues a message);
//! `decode` is `decode_body` of a body holding that one message behind the sender's
//! identity (what `handle_packet` does before acting on it).

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use grapevine::wire::{
    BodyBuilder, DigestEntry, ForwardedRequest, ForwardedResponse, MemberClaim, Message,
    StateDelta, StatePage, decode_body, encode_message,
};
use grapevine::{NodeId, Status};
use grapevine_benches::fixtures::id;

fn claim(i: usize) -> MemberClaim<SocketAddr> {
    MemberClaim {
        id: id(i),
        incarnation: 3,
        status: Status::Alive,
    }
}

/// One representative instance of every message type, with realistic sizes.
fn messages() -> Vec<(&'static str, Message<SocketAddr>)> {
    vec![
        ("ping", Message::Ping { seq: 123_456 }),
        ("ack", Message::Ack { seq: 123_456 }),
        (
            "ping_req",
            Message::PingReq {
                seq: 123_456,
                target: id(42),
            },
        ),
        ("nack", Message::Nack { seq: 123_456 }),
        ("member", Message::Member(claim(42))),
        (
            "suspect",
            Message::Suspect {
                id: id(42),
                incarnation: 3,
                accuser: id(7).addr,
            },
        ),
        (
            "state_16B",
            Message::State(StateDelta {
                owner: id(42),
                key: "load".into(),
                version: 17,
                value: Some(vec![7; 16]),
            }),
        ),
        (
            "sync_root",
            Message::SyncRoot {
                root: 0x1234_5678_9abc_def0,
            },
        ),
        (
            "sync_level_16",
            Message::SyncLevel {
                depth: 1,
                index: 3,
                hashes: (0..16u64)
                    .map(|h| h.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                    .collect(),
            },
        ),
        (
            "sync_digest_20",
            Message::SyncDigest {
                bucket: 9,
                complete: true,
                entries: (0..20)
                    .map(|i| DigestEntry {
                        claim: claim(i),
                        state_hash: 0xdead_beef_u64 * i as u64,
                        watermark: 40,
                    })
                    .collect(),
                placements: Vec::new(),
            },
        ),
        (
            "sync_request",
            Message::SyncRequest {
                owner: id(42),
                after: 12,
            },
        ),
        (
            "state_page_10",
            Message::StatePage(StatePage {
                owner: id(42),
                after: 0,
                upto: 10,
                reset: false,
                floor: 0,
                entries: (0..10u64)
                    .map(|v| (format!("key-{v}"), v + 1, Some(vec![1; 16])))
                    .collect(),
            }),
        ),
        (
            "request_32B",
            Message::Request(ForwardedRequest {
                origin: id(1),
                id: 99,
                hops: 3,
                key: b"user:1234".to_vec(),
                payload: vec![2; 32],
            }),
        ),
        (
            "response_32B",
            Message::Response(ForwardedResponse {
                id: 99,
                payload: vec![3; 32],
            }),
        ),
    ]
}

fn body_of(sender: &NodeId<SocketAddr>, msg: &Message<SocketAddr>) -> Vec<u8> {
    let mut b = BodyBuilder::new(sender, 1400);
    assert!(b.push(msg));
    b.finish()
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    for (name, msg) in messages() {
        g.bench_function(name, |b| b.iter(|| encode_message(black_box(&msg))));
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let sender = id(1);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for (name, msg) in messages() {
        let body = body_of(&sender, &msg);
        // Sanity: the body decodes back to the message.
        let (s, m) = decode_body::<SocketAddr>(&body).expect("decodes");
        assert_eq!((s, m), (sender.clone(), vec![msg.clone()]));
        g.bench_function(name, |b| {
            b.iter(|| decode_body::<SocketAddr>(black_box(&body)))
        });
    }
    g.finish();
}

fn sizes(_: &mut Criterion) {
    // Not a timing: the encoded size of each message, printed once for the docs.
    if std::env::var_os("GRAPEVINE_BENCH_SIZES").is_some() {
        for (name, msg) in messages() {
            println!("size {name}: {} B", encode_message(&msg).len());
        }
    }
}

criterion_group!(benches, encode, decode, sizes);
criterion_main!(benches);
