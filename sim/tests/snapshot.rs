//! Snapshots (issue 16): a node rebuilt with `Node::from_snapshot` from a running
//! node's `Node::snapshot`, fed the same inputs as the original from then on, puts out
//! the same transmits, events and deadlines, byte for byte.
//!
//! A [`Shadow`] tap holds the restored node: the simulator tells it every input it
//! hands the original, and after each drain it compares the shadow's outputs with the
//! original's. Snapshots are taken at several points of one run: after the joins,
//! during a suspicion, with rumours queued, with a large value in transfer and with
//! requests in flight; on several seeds, on a lossy network.
//!
//! Each test prints its seed; replay with
//! `GRAPEVINE_SEED=<seed> cargo test -p grapevine-sim --test snapshot`.

use core::time::Duration;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use grapevine::{Event, Instant, SnapshotError};
use grapevine_sim::{NetConfig, SeedGuard, Sim, SimBuilder, SimNode, Tap, seed_from_env};

/// What a shadow saw.
#[derive(Debug, Default)]
struct Report {
    /// Drains compared.
    turns: u64,
    transmits: u64,
    events: u64,
    /// The first difference, if any.
    mismatch: Option<String>,
}

/// A node restored from a snapshot of the tapped node, fed the tapped node's inputs.
struct Shadow {
    node: SimNode,
    report: Rc<RefCell<Report>>,
}

impl Shadow {
    fn differ(&self, what: String) {
        let mut report = self.report.borrow_mut();
        if report.mismatch.is_none() {
            report.mismatch = Some(format!("after {} drains: {what}", report.turns));
        }
    }
}

impl Tap for Shadow {
    fn packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let _ = self.node.handle_packet(now, from, data);
    }
    fn timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
    }
    fn join(&mut self, now: Instant, seeds: &[SocketAddr]) {
        self.node.join(now, seeds.iter().copied());
    }
    fn set(&mut self, now: Instant, key: &str, value: &[u8]) {
        let _ = self.node.set(now, key, value);
    }
    fn opaque(&mut self, _now: Instant) {
        self.differ("an input the shadow cannot see".into());
    }
    fn drained(
        &mut self,
        transmits: &[(SocketAddr, Vec<u8>)],
        events: &[Event<SocketAddr>],
        deadline: Option<Instant>,
    ) {
        let mut mine = Vec::new();
        while let Some(t) = self.node.poll_transmit() {
            mine.push((t.dest, t.payload));
        }
        let mut my_events = Vec::new();
        while let Some(e) = self.node.poll_event() {
            my_events.push(e);
        }
        if mine != transmits {
            self.differ(format!(
                "transmits differ: {} from the original, {} from the restored node",
                transmits.len(),
                mine.len()
            ));
        }
        if my_events != events {
            self.differ(format!(
                "events differ: {events:?} from the original, {my_events:?} from the restored node"
            ));
        }
        if self.node.poll_timeout() != deadline {
            self.differ(format!(
                "deadlines differ: {deadline:?} from the original, {:?} from the restored node",
                self.node.poll_timeout()
            ));
        }
        let mut report = self.report.borrow_mut();
        report.turns += 1;
        report.transmits += transmits.len() as u64;
        report.events += events.len() as u64;
    }
}

const N: usize = 10;
/// The node snapshotted.
const X: usize = 2;

/// Snapshots node `X` now, installs a shadow restored from it, runs `run` and checks
/// that the shadow matched the original all along.
fn shadowed(sim: &mut Sim, point: &str, run: impl FnOnce(&mut Sim)) {
    let bytes = sim.node(X).snapshot().expect("drained between steps");
    let node = SimNode::from_snapshot(&bytes, None).expect("restores");
    let report = Rc::new(RefCell::new(Report::default()));
    sim.set_tap(
        X,
        Box::new(Shadow {
            node,
            report: report.clone(),
        }),
    );
    run(sim);
    sim.take_tap();
    let report = report.borrow();
    if let Some(mismatch) = &report.mismatch {
        panic!(
            "seed {}: snapshot {point} ({} bytes): {mismatch}",
            sim.seed(),
            bytes.len()
        );
    }
    assert!(
        report.turns > 10 && report.transmits > 10,
        "seed {}: snapshot {point}: too little compared: {report:?}",
        sim.seed()
    );
    println!(
        "seed {}: snapshot {point}: {} bytes; {} drains, {} transmits, {} events identical",
        sim.seed(),
        bytes.len(),
        report.turns,
        report.transmits,
        report.events
    );
}

fn run_seed(seed: u64) {
    let _guard = SeedGuard(seed);
    let mut sim = SimBuilder::new(seed)
        .nodes(N)
        .net(NetConfig::lan().with_loss(0.03))
        .build();
    sim.join_all_via(0);

    // After the joins, while the ring settles.
    sim.run_for(Duration::from_secs(2));
    shadowed(&mut sim, "during the joins", |sim| {
        sim.run_for(Duration::from_secs(8))
    });

    // A crash: the snapshot holds the suspicion; the shadow declares the death.
    sim.crash(5);
    sim.run_for(sim.config().probe_interval * 3);
    shadowed(&mut sim, "during a suspicion", |sim| {
        sim.run_for(Duration::from_secs(10))
    });

    // Rumours queued: writes here and elsewhere just before the snapshot.
    for i in 0..20 {
        sim.set(X, &format!("k{i}"), format!("v{i}").as_bytes())
            .unwrap();
        sim.set(1, &format!("o{i}"), &[i as u8; 40]).unwrap();
    }
    shadowed(&mut sim, "with rumours queued", |sim| {
        for i in 0..10 {
            sim.set(X, &format!("k{i}"), b"again").unwrap();
            sim.run_for(Duration::from_millis(300));
        }
        sim.run_for(Duration::from_secs(2));
    });

    // A large value in transfer: the snapshot holds the partial bytes.
    let blob: Vec<u8> = (0..40_000u32)
        .map(|i| (i * 7 + seed as u32) as u8)
        .collect();
    sim.set(1, "blob", &blob).unwrap();
    let limit = sim.now() + Duration::from_secs(5);
    while sim.node(X).value_transfers().0 == 0 && sim.now() < limit {
        sim.step();
    }
    assert!(
        sim.node(X).value_transfers().0 > 0,
        "seed {seed}: no transfer started at node {X}"
    );
    shadowed(&mut sim, "with a value in transfer", |sim| {
        sim.run_for(Duration::from_secs(4))
    });
    let held = sim
        .node(X)
        .keys(&sim.addr(1))
        .find(|(k, _, _)| *k == "blob")
        .map(|(_, _, v)| v.to_vec());
    assert_eq!(
        held.as_deref(),
        Some(&blob[..]),
        "seed {seed}: the value arrived"
    );

    // Requests in flight (no application answers them: they time out and fail over).
    for i in 0..12u8 {
        sim.with_node(X, |node, now| {
            let _ = node.handle_request(now, &[b'r', i], vec![i; 30]);
        });
    }
    shadowed(&mut sim, "with requests in flight", |sim| {
        sim.run_for(sim.config().request_timeout * 3 + Duration::from_secs(3))
    });
}

#[test]
fn a_restored_node_puts_out_what_the_original_does_byte_for_byte() {
    let first = seed_from_env(1);
    for seed in first..first + 8 {
        run_seed(seed);
    }
}

#[test]
fn a_damaged_snapshot_is_a_typed_error_never_a_panic() {
    let seed = seed_from_env(7);
    let _guard = SeedGuard(seed);
    let mut sim = SimBuilder::new(seed).nodes(6).build();
    sim.join_all_via(0);
    sim.run_for(Duration::from_secs(5));
    sim.set(X, "k", b"v").unwrap();
    let bytes = sim.node(X).snapshot().unwrap();
    assert!(SimNode::from_snapshot(&bytes, None).is_ok());
    // Cut anywhere: truncated or failing its check.
    let step = (bytes.len() / 300).max(1);
    for len in (0..bytes.len()).step_by(step) {
        let err = SimNode::from_snapshot(&bytes[..len], None).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Truncated | SnapshotError::Corrupt),
            "cut at {len}: {err:?}"
        );
    }
    // A flipped bit anywhere.
    for at in (0..bytes.len()).step_by(step) {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        assert!(
            SimNode::from_snapshot(&damaged, None).is_err(),
            "flipped bit at {at}"
        );
    }
    assert_eq!(
        SimNode::from_snapshot(b"GVSN\x09\x00", None).unwrap_err(),
        SnapshotError::Truncated
    );
    // A version this build does not read (the next one).
    let next = grapevine::snapshot::SNAPSHOT_VERSION + 1;
    let mut newer = bytes.clone();
    newer[4..6].copy_from_slice(&next.to_le_bytes());
    assert_eq!(
        SimNode::from_snapshot(&newer, None).unwrap_err(),
        SnapshotError::UnsupportedVersion(next)
    );
    // Pending outputs refuse a snapshot.
    sim.with_node(X, |node, now| {
        let _ = node.handle_request(now, b"k2", vec![1; 10]);
        assert_eq!(node.snapshot().unwrap_err(), SnapshotError::OutputsPending);
    });
}
