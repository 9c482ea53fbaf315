//! Joining like serf and chitchat, on real sockets: a node keeps trying its seed until
//! the seed starts, and a seed given as a host name is resolved again on every attempt
//! and periodically afterwards, so the name may move to another address.

mod procs;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use procs::{NodeProcess, logs, wait_for};

/// A UDP port free right now on 127.0.0.1 (the seed binds it later).
fn free_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

#[test]
fn a_joiner_joins_a_seed_that_starts_5_s_after_it() {
    let seed_addr = format!("127.0.0.1:{}", free_port());
    let joiner = NodeProcess::start(
        "joiner",
        None,
        &[
            "--bind",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--profile",
            "fast",
            "--seed",
            &seed_addr,
        ],
    );
    let clock = grapevine_driver::Clock::new();
    let started = clock.now();
    // The joiner tries, fails, and says so while it waits.
    wait_for(
        "the joiner's first failed attempt",
        || joiner.logged(&["WARN", "not joined yet", &seed_addr]),
        || joiner.log(),
    );
    // The scenario itself, not a synchronisation: the seed is 5 s late.
    let late = Duration::from_secs(5).saturating_sub(clock.now() - started);
    std::thread::sleep(late);
    let seed = NodeProcess::start(
        "seed",
        None,
        &[
            "--bind",
            &seed_addr,
            "--admin",
            "127.0.0.1:0",
            "--profile",
            "fast",
        ],
    );
    let joined = wait_for(
        "joiner and seed to see each other alive",
        || joiner.alive().len() == 2 && seed.alive().len() == 2,
        || logs(&[&joiner, &seed]),
    );
    eprintln!(
        "seed started {:?} after the joiner; joined {joined:?} after the seed started",
        clock.now() - started - joined
    );
    // Retries back off: 1 s, 2 s, 4 s... so at most 3 warnings in the first 5 s.
    let warnings = joiner.log().matches("not joined yet").count();
    assert!(
        (1..=4).contains(&warnings),
        "{warnings} warnings:\n{}",
        joiner.log()
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

fn have_ip() -> bool {
    Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with loopback up and its own `/etc/hosts`: `ip netns exec`
/// bind-mounts `/etc/netns/NAME/hosts` over `/etc/hosts` for the processes it starts,
/// so they resolve names through a file this test rewrites, and the machine's own
/// `/etc/hosts` is never touched. Removed on drop.
struct Namespace {
    name: String,
    etc: std::path::PathBuf,
}

impl Namespace {
    fn new() -> Namespace {
        let name = format!("gvdns{}", std::process::id());
        let etc = std::path::Path::new("/etc/netns").join(&name);
        std::fs::create_dir_all(&etc).expect("create /etc/netns/NAME");
        std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").expect("write hosts");
        ip(&["netns", "add", &name]);
        let ns = Namespace { name, etc };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Points `host` at `ip`. Written in place (same inode): the bind mount in each
    /// running process follows the file's inode, not its name.
    fn resolve(&self, host: &str, ip: &str) {
        std::fs::write(
            self.etc.join("hosts"),
            format!("127.0.0.1 localhost\n{ip} {host}\n"),
        )
        .expect("rewrite hosts");
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

#[test]
fn a_seed_given_as_a_host_name_is_resolved_again_when_it_moves() {
    if !is_root() {
        eprintln!("SKIPPED DNS seed test: needs root to create a network namespace");
        return;
    }
    if !have_ip() {
        eprintln!("SKIPPED DNS seed test: the `ip` command (iproute2) is missing");
        return;
    }
    let ns = Namespace::new();
    let netns = Some(ns.name.as_str());
    const HOST: &str = "seeds.grapevine.test";
    // Nothing listens at the first address the name resolves to.
    ns.resolve(HOST, "127.0.0.9");
    let node = |label: &str, ip: &str, extra: &[&str]| {
        let bind = format!("{ip}:7946");
        let admin = format!("{ip}:8946");
        let args = [
            &[
                "--bind",
                &bind,
                "--admin",
                &admin,
                "--profile",
                "fast",
                "--seed-refresh",
                "1s",
            ][..],
            extra,
        ]
        .concat();
        NodeProcess::start(label, netns, &args)
    };
    // Two one-node clusters, a and b, at two addresses.
    let mut a = node("a", "127.0.0.2", &[]);
    let b = node("b", "127.0.0.3", &[]);
    let seed = format!("{HOST}:7946");
    let joiner = node("joiner", "127.0.0.4", &["--seed", &seed]);

    // 1. The name resolves to nobody: the joiner keeps trying.
    wait_for(
        "the joiner to resolve the name and fail an attempt",
        || {
            joiner.logged(&["seed resolved", "127.0.0.9:7946"])
                && joiner.logged(&["WARN", "not joined yet"])
        },
        || joiner.log(),
    );
    // 2. The name now resolves to a: the next attempt finds it.
    ns.resolve(HOST, "127.0.0.2");
    let took = wait_for(
        "the joiner to join a through the re-resolved name",
        || joiner.alive().contains(&a.addr) && a.alive().contains(&joiner.addr),
        || logs(&[&joiner, &a]),
    );
    eprintln!("joined a {took:?} after the name moved to it");
    // 3. Once joined, the name is still re-resolved (every second here): it moves to b.
    ns.resolve(HOST, "127.0.0.3");
    wait_for(
        "the joiner's periodic re-resolution to see b",
        || joiner.logged(&["seed resolved", "127.0.0.3:7946"]),
        || joiner.log(),
    );
    assert!(
        !joiner.alive().contains(&b.addr),
        "b is not reached while a answers"
    );
    // 4. a crashes: the joiner, alone, turns to the seed's current address.
    a.kill();
    let took = wait_for(
        "the joiner to join b after a died",
        || joiner.alive().contains(&b.addr) && b.alive().contains(&joiner.addr),
        || logs(&[&joiner, &b]),
    );
    eprintln!("joined b {took:?} after a was killed");
}
