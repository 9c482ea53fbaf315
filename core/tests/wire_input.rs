//! Whatever arrives off the wire, a node does not panic, and a datagram it refuses
//! changes nothing but the drop counters.

use grapevine::{Config, Instant, Node, NodeId, PacketError};
use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

type TestNode = Node<u32, ChaCha8Rng>;

fn node(addr: u32, cluster: &str) -> TestNode {
    let mut n = Node::new(
        Config::lan(cluster),
        NodeId::new(addr, 1),
        ChaCha8Rng::seed_from_u64(addr as u64),
    )
    .expect("valid config");
    n.join(Instant::ZERO, if addr == 1 { vec![] } else { vec![1] });
    n
}

/// Two nodes that know each other, and a datagram node 2 really sent to node 1.
fn pair() -> (TestNode, TestNode, Vec<u8>) {
    let mut a = node(1, "c");
    let mut b = node(2, "c");
    let mut sample = Vec::new();
    let mut now = Instant::ZERO;
    for _ in 0..20 {
        while let Some(t) = b.poll_transmit() {
            sample = t.payload.clone();
            a.handle_packet(now, 2, &t.payload).expect("valid datagram");
        }
        while let Some(t) = a.poll_transmit() {
            b.handle_packet(now, 1, &t.payload).expect("valid datagram");
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        now = a
            .poll_timeout()
            .expect("joined")
            .min(b.poll_timeout().expect("joined"));
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    while a.poll_transmit().is_some() {}
    while a.poll_event().is_some() {}
    (a, b, sample)
}

/// Everything observable about a node except the counters a drop may move.
fn observe(n: &TestNode) -> String {
    let mut s = *n.stats();
    s.packets_in = 0;
    s.bytes_in = 0;
    s.drops = Default::default();
    let members: Vec<_> = n
        .members()
        .map(|m| (m.id, m.state, m.incarnation))
        .collect();
    format!(
        "{members:?} {s:?} {:x} {:?} {:?}",
        n.sync_root(),
        n.poll_timeout(),
        n.keys(&2).collect::<Vec<_>>()
    )
}

fn assert_refused_without_change(n: &mut TestNode, bytes: &[u8]) -> Result<(), TestCaseError> {
    let before = observe(n);
    let drops = n.stats().drops.total();
    // A random input that happens to be well formed is ordinary input.
    if n.handle_packet(Instant::from_secs(30), 2, bytes).is_err() {
        prop_assert_eq!(observe(n), before, "a refused datagram changed the node");
        prop_assert_eq!(
            n.stats().drops.total(),
            drops + 1,
            "every refusal is counted once"
        );
        prop_assert!(n.poll_transmit().is_none());
        prop_assert!(n.poll_event().is_none());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1600)) {
        let (mut a, _, _) = pair();
        assert_refused_without_change(&mut a, &bytes)?;
    }

    #[test]
    fn truncated_datagrams(cut in 0usize..10_000) {
        let (mut a, _, sample) = pair();
        let cut = cut % sample.len();
        let before = observe(&a);
        let r = a.handle_packet(Instant::from_secs(30), 2, &sample[..cut]);
        prop_assert!(r.is_err(), "a truncated datagram was accepted");
        prop_assert_eq!(observe(&a), before);
    }

    #[test]
    fn oversized_datagrams(extra in 1usize..4000, fill in any::<u8>()) {
        let (mut a, _, mut sample) = pair();
        sample.resize(1400 + extra, fill);
        let r = a.handle_packet(Instant::from_secs(30), 2, &sample);
        prop_assert_eq!(r.clone(), Err(PacketError::Oversized { len: 1400 + extra }));
        assert_refused_without_change(&mut a, &sample)?;
        prop_assert!(a.stats().drops.oversized >= 1);
    }

    #[test]
    fn flipped_bits_never_panic(at in 0usize..10_000, bit in 0u8..8) {
        let (mut a, _, mut sample) = pair();
        let at = at % sample.len();
        sample[at] ^= 1 << bit;
        let _ = a.handle_packet(Instant::from_secs(30), 2, &sample);
    }
}

#[test]
fn foreign_cluster_datagrams_are_refused_and_counted() {
    let (mut a, _, _) = pair();
    let mut stranger = node(3, "another-cluster");
    stranger.join(Instant::ZERO, [1]);
    let mut seen = 0;
    while let Some(t) = stranger.poll_transmit() {
        let before = observe(&a);
        assert_eq!(
            a.handle_packet(Instant::from_secs(1), 3, &t.payload),
            Err(PacketError::ForeignCluster)
        );
        assert_eq!(observe(&a), before);
        seen += 1;
    }
    assert!(seen > 0, "the stranger sent nothing to refuse");
    assert_eq!(a.stats().drops.foreign_cluster, seen);
}
