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

/// Replays the log in `dir` from wherever it begins; `damage` may change the first
/// record (a snapshot, in a rotated log) before it is applied.
fn replay_from_first(
    dir: &Path,
    damage: impl FnOnce(&mut Entry),
) -> Result<(Replay, Replayed), ReplayError> {
    let mut replay = Replay::new();
    let mut found = Replayed::default();
    let mut damage = Some(damage);
    for record in LogReader::open(dir).unwrap() {
        let (number, mut entry) = record.unwrap();
        if let Some(damage) = damage.take() {
            damage(&mut entry);
        }
        if let Entry::Packet { .. } = &entry {
            found.packets += 1;
        }
        if let Step::Matched { events } = replay.step(number, &entry)? {
            found.events += events.len();
        }
    }
    found.inputs = replay.inputs();
    found.checked = replay.checked();
    Ok((replay, found))
}

#[test]
fn a_rotated_log_replays_from_the_snapshot_that_opens_it() {
    let root = TempDir::new("record-rotated");
    let key = [5u8; 32];
    let small = |dir: &Path, keys: bool| {
        RecordOptions::new(dir)
            .max_bytes(96 << 10)
            .segment_bytes(8 << 10)
            .keys(keys)
    };
    let spawn_small = |dir: &Path, seeds: &[std::net::SocketAddr], keys: bool, seed: u64| {
        let options = Options::new("127.0.0.1:0".parse().unwrap())
            .config(fast_config(CLUSTER))
            .seeds(seeds.iter().copied())
            .rng_seed(seed)
            .keyring(grapevine_driver::Keyring::new(key))
            .record(small(dir, keys));
        grapevine_std::spawn(options).unwrap()
    };
    let with_keys = root.0.join("keys");
    let without_keys = root.0.join("nokeys");
    let a = spawn_small(&with_keys, &[], true, 21);
    let b = spawn_small(&without_keys, &[a.local_addr()], false, 22);
    wait_until("both members alive", || {
        status_of(&a, b.local_addr()) == Some(Status::Alive)
            && status_of(&b, a.local_addr()) == Some(Status::Alive)
    });
    // Writes (some large enough to travel in chunks) until both logs have rotated
    // their first segments away.
    let mut i = 0u32;
    wait_until("the first segments rotated away", || {
        for _ in 0..5 {
            let value = vec![i as u8; if i.is_multiple_of(7) { 2000 } else { 100 }];
            a.set(&format!("a{}", i % 8), &value).wait().unwrap();
            b.set(&format!("b{}", i % 8), &value).wait().unwrap();
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
        let rotated = |dir: &Path| {
            let log = LogReader::open(dir).unwrap();
            log.first_record() > 400 && log.segments().len() >= 3
        };
        rotated(&with_keys) && rotated(&without_keys)
    });
    a.shutdown().wait().unwrap();
    b.shutdown().wait().unwrap();

    // With its keys, the log re-runs from its oldest snapshot, byte for byte.
    let (replay, found) = replay_from_first(&with_keys, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    println!("from record #{}: {found:?}", replay.began_at());
    assert!(replay.began_at() > 0, "the log no longer holds the start");
    assert!(replay.start().is_none());
    assert!(found.packets > 5 && found.checked > 20, "{found:?}");
    let total: u64 = LogReader::open(&with_keys)
        .unwrap()
        .segments()
        .iter()
        .map(|s| std::fs::metadata(&s.path).unwrap().len())
        .sum();
    assert!(
        total <= 96 << 10,
        "the log stays within its bound: {total} bytes"
    );

    // A snapshot whose bytes are damaged (past the log's own checksum): a typed error
    // naming the record.
    let error = replay_from_first(&with_keys, |entry| {
        if let Entry::Snapshot(snapshot) = entry {
            let middle = snapshot.node.len() / 2;
            snapshot.node[middle] ^= 0x20;
        }
    })
    .expect_err("a damaged snapshot is refused");
    assert!(matches!(error, ReplayError::Snapshot { .. }), "{error}");
    let first = LogReader::open(&with_keys).unwrap().first_record();
    assert!(
        error.to_string().contains(&format!("record #{first}"))
            && error.to_string().contains("snapshot"),
        "{error}"
    );

    // A flipped byte in the snapshot record on disk: the reader names the record.
    let oldest = LogReader::open(&with_keys).unwrap().segments()[0]
        .path
        .clone();
    let mut bytes = std::fs::read(&oldest).unwrap();
    bytes[32 + 8 + 100] ^= 1;
    std::fs::write(&oldest, &bytes).unwrap();
    let error = LogReader::open(&with_keys)
        .unwrap()
        .find_map(Result::err)
        .expect("a damaged record is refused");
    assert!(
        error.to_string().contains(&format!("record #{first}"))
            && error.to_string().contains("checksum"),
        "{error}"
    );

    // Without its keys, the snapshot of a node with a keyring cannot be re-run.
    let error = replay_from_first(&without_keys, |_| {}).expect_err("no keys, no replay");
    assert!(
        matches!(error, ReplayError::SnapshotKeysNotRecorded { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("--record-keys"), "{error}");
}
