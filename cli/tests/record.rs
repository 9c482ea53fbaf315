//! `grapevine node --record`, `grapevine replay` and `grapevine dump`, end to end:
//! two node processes record, one is killed (SIGKILL), both logs replay byte for
//! byte, the live dump and the replayed dump show the same view, and a damaged log
//! is a one-line error naming the first bad record.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_grapevine");
const DEADLINE: Duration = Duration::from_secs(20);

fn grapevine(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run grapevine")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "grapevine-cli-record-{tag}-{}-{}",
        std::process::id(),
        grapevine_driver::Clock::generation()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A recording `grapevine node` child process, killed on drop.
struct Recording {
    child: Child,
    addr: String,
    admin: String,
}

impl Recording {
    fn start(dir: &Path, seed: Option<&str>) -> Recording {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "node",
            "--bind",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--profile",
            "fast",
            "--record",
        ])
        .arg(dir);
        if let Some(seed) = seed {
            cmd.args(["--seed", seed]);
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start grapevine node");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut addr = None;
        let mut line = String::new();
        while addr.is_none() {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "node exited");
            if line.contains("node started") {
                let field = |name: &str| {
                    let start = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
                    line[start..].split_whitespace().next().unwrap().to_owned()
                };
                addr = Some((field("node"), field("admin")));
            }
        }
        std::thread::spawn(move || for _ in stderr.lines() {});
        let (addr, admin) = addr.unwrap();
        Recording { child, addr, admin }
    }

    fn dump(&self) -> serde_json::Value {
        let out = grapevine(&["dump", &self.addr, "--admin", &self.admin, "--json"]);
        assert!(
            out.status.success(),
            "dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON dump")
    }

    fn states(&self) -> Vec<String> {
        self.dump()["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["state"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let clock = grapevine_driver::Clock::new();
    let start = clock.now();
    while !done() {
        assert!(
            clock.now() - start < DEADLINE,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// Exit code 1, one `error:` line naming `expect`, no panic.
fn assert_failure(args: &[&str], expect: &str) {
    let out = grapevine(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].starts_with("error:") && lines[0].contains(expect),
        "{expect:?} in {stderr}"
    );
}

#[test]
fn recorded_nodes_replay_and_dump_the_same_view() {
    let root = temp_dir("pair");
    let (dir_a, dir_b) = (root.join("a"), root.join("b"));
    let a = Recording::start(&dir_a, None);
    let b = Recording::start(&dir_b, Some(&a.addr));
    wait_until("two alive members", || {
        a.states().iter().filter(|s| *s == "alive").count() == 2
    });
    let live = a.dump();
    for field in [
        "members",
        "health",
        "rumours",
        "sync_root",
        "ring",
        "records",
        "requests",
    ] {
        assert!(live.get(field).is_some(), "{field} in {live}");
    }
    let table = grapevine(&["dump", &a.addr, "--admin", &a.admin]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("MEMBER") && table.contains("RUMOURS") && table.contains(&b.addr),
        "{table}"
    );

    // A crash: b is killed outright; a declares it dead.
    let mut b = b;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    wait_until("b declared dead", || a.states().iter().any(|s| s == "dead"));
    // a stops gracefully (SIGINT), which hands the rest of its log to the OS; a
    // SIGKILL would lose at most its last 100 ms, as b's log does.
    let mut a = a;
    let interrupted = Command::new("kill")
        .args(["-INT", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    assert!(a.child.wait().unwrap().success(), "a stops cleanly");

    for dir in [&dir_a, &dir_b] {
        let out = grapevine(&["replay", dir.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "replay {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("matched byte for byte"), "{stdout}");
    }
    // The replayed dump is the same view as the live one.
    let out = grapevine(&[
        "replay",
        dir_a.to_str().unwrap(),
        "--dump-at",
        "1s",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(keys(&replayed), keys(&live));
    assert_eq!(replayed["node"], live["node"]);
    assert_eq!(
        keys(&replayed["members"][0]),
        keys(&live["members"][0]),
        "member fields"
    );
    // --events prints the detection.
    let out = grapevine(&["replay", dir_a.to_str().unwrap(), "--events"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("MemberDied"), "{stdout}");
    // --until stops early.
    let out = grapevine(&["replay", dir_a.to_str().unwrap(), "--until", "200ms"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--until"), "{stdout}");

    // Damage: a flipped byte in the middle of the log, then a truncated segment.
    let segment = dir_a.join("00000001.gvr");
    let good = std::fs::read(&segment).unwrap();
    let mut flipped = good.clone();
    let middle = good.len() / 2;
    flipped[middle] ^= 0x5a;
    std::fs::write(&segment, &flipped).unwrap();
    let dir = dir_a.to_str().unwrap();
    assert_failure(&["replay", dir], "record #");
    assert_failure(&["replay", dir, "--check"], "record #");
    std::fs::write(&segment, &good[..good.len() - 3]).unwrap();
    assert_failure(&["replay", dir], "truncated");
    std::fs::write(&segment, &good[..10]).unwrap();
    assert_failure(&["replay", dir], "header");
    assert_failure(&["replay", root.join("none").to_str().unwrap()], "none");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn replay_usage_errors_exit_2() {
    let out = grapevine(&["replay", "/tmp", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let out = grapevine(&["node", "--bind", "127.0.0.1:0", "--record-keys"]);
    assert_eq!(out.status.code(), Some(2), "--record-keys needs --record");
}

#[test]
fn a_simulated_run_writes_its_summary_svg_and_a_log_that_replays() {
    let root = temp_dir("simulate");
    let svg = root.join("curves.svg");
    let log = root.join("n2");
    let out = grapevine(&[
        "simulate",
        "--nodes",
        "12",
        "--seed",
        "7",
        "--loss",
        "2%",
        "--crash",
        "5@10s",
        "--partition",
        "0-5/6-11@15s..18s",
        "--duration",
        "30s",
        "--svg",
        svg.to_str().unwrap(),
        "--record",
        log.to_str().unwrap(),
        "--record-node",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert!(summary["converged_s"].as_f64().is_some(), "{summary}");
    assert!(summary["write_all_s"].as_f64().is_some(), "{summary}");
    let crash = &summary["detections"][0];
    assert_eq!(crash["node"], 5);
    assert_eq!(crash["declared_by"], crash["observers"], "{summary}");
    assert!(summary["sent_bytes_per_node"].as_f64().unwrap() > 0.0);
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(
        picture.starts_with("<svg") && picture.contains("detection"),
        "SVG"
    );
    // The same tools read a simulated node's log.
    let out = grapevine(&["replay", log.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("matched byte for byte"));
    let out = grapevine(&[
        "replay",
        log.to_str().unwrap(),
        "--dump-at",
        "12s",
        "--json",
    ]);
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dump JSON");
    assert_eq!(dump["name"], "n2");
    // The same seed gives the same run.
    let again = grapevine(&[
        "simulate",
        "--nodes",
        "12",
        "--seed",
        "7",
        "--loss",
        "2%",
        "--crash",
        "5@10s",
        "--partition",
        "0-5/6-11@15s..18s",
        "--duration",
        "30s",
        "--svg",
        svg.to_str().unwrap(),
        "--json",
    ]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(again["steps"], summary["steps"]);
    assert_eq!(again["detections"], summary["detections"]);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn simulate_usage_errors_exit_2() {
    for args in [
        &["simulate", "--nodes", "5", "--crash", "9@1s"][..],
        &["simulate", "--partition", "0-4"][..],
        &["simulate", "--loss", "120%"][..],
        &["simulate", "--vnodes", "300"][..],
    ] {
        let out = grapevine(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{args:?}"
        );
    }
}

#[test]
fn a_log_whose_start_rotated_away_replays_from_its_snapshot() {
    use grapevine_driver::record::LogReader;
    use grapevine_driver::{Options, RecordOptions};

    // Fast rounds, so the log fills in a second or two.
    let fast_config = |name: &str| {
        let mut config = grapevine::Config::lan(name);
        config.probe_interval = Duration::from_millis(200);
        config.probe_timeout = Duration::from_millis(100);
        config.gossip_interval = Duration::from_millis(200);
        config
    };
    let dir = temp_dir("rotated");
    let spawn = |dir: Option<&Path>, seeds: &[std::net::SocketAddr], seed: u64| {
        let mut options = Options::new("127.0.0.1:0".parse().unwrap())
            .config(fast_config("cli-record-rotated"))
            .seeds(seeds.iter().copied())
            .rng_seed(seed);
        if let Some(dir) = dir {
            options = options.record(
                RecordOptions::new(dir)
                    .max_bytes(64 << 10)
                    .segment_bytes(8 << 10),
            );
        }
        grapevine_std::spawn(options).unwrap()
    };
    let a = spawn(Some(&dir), &[], 31);
    let b = spawn(None, &[a.local_addr()], 32);
    let mut i = 0u32;
    wait_until("the log's start rotated away", || {
        for _ in 0..5 {
            b.set(&format!("k{}", i % 8), &[i as u8; 150])
                .wait()
                .unwrap();
            i += 1;
        }
        LogReader::open(&dir).unwrap().first_record() > 300
    });
    a.shutdown().wait().unwrap();
    b.shutdown().wait().unwrap();

    let path = dir.to_str().unwrap();
    let out = grapevine(&["replay", path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("matched byte for byte")
            && stdout.contains("from the snapshot at record #"),
        "{stdout}"
    );
    // Times count from the node's start: the snapshot's time is well past zero.
    let reader = LogReader::open(&dir).unwrap();
    let first = reader.into_iter().next().unwrap().unwrap().1;
    let grapevine_driver::record::Entry::Snapshot(snapshot) = first else {
        panic!("the log begins at a snapshot: {first:?}");
    };
    let from = Duration::from_nanos(snapshot.now - snapshot.started);
    let millis = |d: Duration| format!("{}ms", d.as_millis());
    // --events and --until from there; --dump-at within the log shows the state.
    let until = millis(from + Duration::from_millis(500));
    let out = grapevine(&["replay", path, "--events", "--until", &until]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--until"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = millis(from + Duration::from_millis(200));
    let out = grapevine(&["replay", path, "--dump-at", &at, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        dumped["members"].as_array().is_some_and(|m| m.len() == 2),
        "{dumped}"
    );
    // Before the log begins there is nothing to dump: one clear line.
    assert_failure(&["replay", path, "--dump-at", "0ms"], "rotated away");
    let _ = std::fs::remove_dir_all(dir);
}
