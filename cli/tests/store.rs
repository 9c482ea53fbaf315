//! The CLI cluster as a sharded store end to end, on real sockets: 5 `grapevine node`
//! processes at RF 3, 1,000 puts through random nodes, SIGKILL one node, and every
//! one of 1,000 gets through random surviving nodes returns the value put.
//!
//! The gets start right after the kill, before the cluster has declared the node
//! dead, so some reads are forwarded to the killed replica and fail over to the next.
//! Every wait polls a condition under a deadline; there are no fixed sleeps.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::{cluster, success};
use serde_json::Value;

const NODES: usize = 5;
const KEYS: usize = 1000;

/// A small seeded generator (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

#[test]
fn a_five_node_store_survives_a_sigkill() {
    let seed = 0x5eed_0015;
    eprintln!("seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut nodes = cluster(NODES);

    let started = Instant::now();
    for i in 0..KEYS {
        let node = &nodes[rng.below(NODES)];
        let (key, value) = (format!("key-{i}"), format!("value-{i}-{seed:x}"));
        let out = node.run("--via", &["put", &key, &value, "--json"]);
        let reply: Value = serde_json::from_str(&success("put", &out)).unwrap();
        // A put reaches every live natural replica: all 3 while all 5 nodes live.
        assert_eq!(
            reply["written"], 3,
            "put {key} through {}: {reply}",
            node.name
        );
    }
    eprintln!(
        "{KEYS} puts through random nodes in {:?}",
        started.elapsed()
    );

    let victim = rng.below(NODES);
    let victim_name = nodes[victim].name.clone();
    nodes[victim].kill();
    eprintln!("SIGKILLed {victim_name}");
    let survivors: Vec<_> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n)
        .collect();

    let started = Instant::now();
    let mut paths: BTreeMap<String, usize> = BTreeMap::new();
    let mut correct = 0;
    for _ in 0..KEYS {
        let i = rng.below(KEYS);
        let node = survivors[rng.below(survivors.len())];
        let out = node.run("--via", &["get", &format!("key-{i}"), "--json"]);
        let reply: Value = serde_json::from_str(&success("get", &out)).unwrap();
        assert_ne!(
            reply["served_by"]["name"],
            victim_name.as_str(),
            "a killed node answered: {reply}"
        );
        if reply["value"] == format!("value-{i}-{seed:x}").as_str() {
            correct += 1;
        }
        *paths
            .entry(reply["path"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    eprintln!(
        "{correct} of {KEYS} gets through random survivors returned the value put, in {:?}; paths {paths:?}",
        started.elapsed()
    );
    assert_eq!(correct, KEYS);
    // At RF 3 of 5, a get entering at a replica is served there, and one entering
    // elsewhere is forwarded: 1,000 random entries see both.
    assert!(paths.get("local").is_some_and(|n| *n > 0), "{paths:?}");
    assert!(paths.get("forwarded").is_some_and(|n| *n > 0), "{paths:?}");
}
