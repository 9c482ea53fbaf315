//! The flight recorder on a real UDP cluster: three nodes record their inputs, go
//! through a key rotation, a state write and a crash, and each node's log replays to
//! the same outputs, byte for byte.

use std::path::{Path, PathBuf};
use std::time::Duration;

use grapevine_driver::record::{Entry, LogReader};
use grapevine_driver::replay::{Replay, ReplayError, Step};
use grapevine_driver::test_support::{TempDir, fast_config, wait_until};
use grapevine_driver::{Handle, Options, RecordOptions, Status};

const CLUSTER: &str = "runtime-std-record";

fn spawn(
    dir: &Path,
    seeds: &[std::net::SocketAddr],
    key: Option<grapevine_driver::Key>,
    keys: bool,
    rng_seed: u64,
) -> Handle {
    let mut options = Options::new("127.0.0.1:0".parse().unwrap())
        .config(fast_config(CLUSTER))
        .seeds(seeds.iter().copied())
        .rng_seed(rng_seed)
        .record(RecordOptions::new(dir).keys(keys));
    if let Some(key) = key {
        options = options.keyring(grapevine_driver::Keyring::new(key));
    }
    grapevine_std::spawn(options).unwrap()
}

fn status_of(observer: &Handle, addr: std::net::SocketAddr) -> Option<Status> {
    observer
        .members()
        .wait()
        .unwrap()
        .iter()
        .find(|m| m.id.addr == addr)
        .map(|m| m.state)
}

/// What a replay of one log found.
#[derive(Debug, Default)]
struct Replayed {
    inputs: u64,
    checked: u64,
    packets: u64,
    keyring_changes: u64,
    sets: u64,
    events: usize,
}

/// Replays the log in `dir`; with `tamper`, the datagram of that packet (counted
/// from 0) has its last byte flipped first.
fn replay(dir: &Path, tamper: Option<u64>) -> Result<Replayed, String> {
    let mut replay = Replay::new();
    let mut found = Replayed::default();
    for record in LogReader::open(dir).map_err(|e| e.to_string())? {
        let (number, mut entry) = record.map_err(|e| e.to_string())?;
        if let Entry::Packet { data, .. } = &mut entry
            && tamper == Some(found.packets)
            && let Some(last) = data.last_mut()
        {
            *last ^= 1;
        }
        match &entry {
            Entry::Packet { .. } => found.packets += 1,
            Entry::Keyring(_) => found.keyring_changes += 1,
            Entry::Set { .. } => found.sets += 1,
            _ => {}
        }
        match replay.step(number, &entry) {
            Ok(Step::Matched { events }) => found.events += events.len(),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    found.inputs = replay.inputs();
    found.checked = replay.checked();
    Ok(found)
}

#[test]
fn a_recorded_cluster_replays_byte_for_byte_through_rotation_write_and_crash() {
    let root = TempDir::new("record-cluster");
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.0.join(format!("n{i}"))).collect();
    let old = [1u8; 32];
    let new = [2u8; 32];
    let first = spawn(&dirs[0], &[], Some(old), true, 11);
    let seeds = [first.local_addr()];
    let nodes = [
        first.clone(),
        spawn(&dirs[1], &seeds, Some(old), true, 12),
        spawn(&dirs[2], &seeds, Some(old), true, 13),
    ];
    let addrs: Vec<_> = nodes.iter().map(Handle::local_addr).collect();
    wait_until("three members alive everywhere", || {
        nodes.iter().all(|n| {
            addrs
                .iter()
                .all(|a| status_of(n, *a) == Some(Status::Alive))
        })
    });

    // Key rotation, memberlist's way: install everywhere, use everywhere, remove.
    for step in 0..3 {
        for n in &nodes {
            match step {
                0 => n.install_key(new),
                1 => n.use_key(new),
                _ => n.remove_key(old),
            }
            .wait()
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        matches!(
            nodes[0].remove_key(new).wait(),
            Err(grapevine_driver::RuntimeError::Keyring(_))
        ),
        "the primary cannot be removed"
    );

    // A state write, seen by another node (so datagrams are sealed and opened).
    nodes[0].set("colour", b"green").wait().unwrap();
    wait_until("node 1 reads node 0's write", || {
        nodes[1].get(addrs[0], "colour").wait().unwrap().as_deref() == Some(&b"green"[..])
    });

    // A crash: node 2 stops without a word, and the others declare it dead.
    let [n0, n1, n2] = nodes;
    n2.abort().wait().unwrap();
    wait_until("nodes 0 and 1 declare node 2 dead", || {
        [&n0, &n1]
            .iter()
            .all(|n| status_of(n, addrs[2]) == Some(Status::Dead))
    });
    drop(first);
    n0.shutdown().wait().unwrap();
    n1.shutdown().wait().unwrap();

    for (i, dir) in dirs.iter().enumerate() {
        let found = replay(dir, None).unwrap_or_else(|e| panic!("node {i}: {e}"));
        println!("node {i}: {found:?}");
        assert!(found.packets > 5, "node {i} received datagrams: {found:?}");
        // The starting keyring, three steps of the rotation, and on node 0 the
        // refused removal too.
        let changes = if i == 0 { 5 } else { 4 };
        assert_eq!(found.keyring_changes, changes, "node {i}: {found:?}");
        assert!(found.checked > 10, "node {i}: outputs checked: {found:?}");
        assert!(found.events > 0, "node {i}: {found:?}");
    }
    assert_eq!(replay(&dirs[0], None).unwrap().sets, 1);
    // A datagram changed in the log (its tag no longer opens): the replay says where.
    let error = replay(&dirs[0], Some(3)).expect_err("a changed datagram diverges");
    assert!(
        error.contains("diverged at record") && error.contains("packet from"),
        "{error}"
    );
}

#[test]
fn without_record_keys_replay_stops_at_the_starting_keyring() {
    let root = TempDir::new("record-nokeys");
    let node = spawn(&root.0, &[], Some([9u8; 32]), false, 5);
    node.set("k", b"v").wait().unwrap();
    node.install_key([8u8; 32]).wait().unwrap();
    node.shutdown().wait().unwrap();
    let log = std::fs::read(root.0.join("00000001.gvr")).unwrap();
    assert!(
        !log.windows(32).any(|w| w == [9u8; 32] || w == [8u8; 32]),
        "no key material in the log"
    );
    let mut replay = Replay::new();
    let mut stopped = None;
    for record in LogReader::open(&root.0).unwrap() {
        let (number, entry) = record.unwrap();
        if let Err(e) = replay.step(number, &entry) {
            stopped = Some(e);
            break;
        }
    }
    let error = stopped.expect("replay stops");
    assert!(
        matches!(error, ReplayError::KeysNotRecorded { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("--record-keys"), "{error}");
}
