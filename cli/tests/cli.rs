//! The `grapevine` binary end to end: the demo, node + admin queries, and bad input.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_grapevine");

fn grapevine(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run grapevine")
}

/// Asserts a clean usage error: exit code 2, one error line on stderr, no panic.
fn assert_usage_error(args: &[&str], expect: &str) {
    assert_error(args, 2, expect);
}

/// Asserts a clean failure at run time: exit code 1, one error line, no panic.
fn assert_failure(args: &[&str], expect: &str) {
    assert_error(args, 1, expect);
}

/// Asserts a clean failure with exit code `code`, one error line on stderr, no panic.
fn assert_error(args: &[&str], code: i32, expect: &str) {
    let out = grapevine(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?} exited {:?}: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        errors.len(),
        1,
        "{args:?} should print one error line: {stderr}"
    );
    assert_eq!(
        stderr.lines().last(),
        errors.first().copied(),
        "{args:?}: {stderr}"
    );
    assert!(
        errors[0].contains(expect),
        "{args:?}: expected {expect:?} in {stderr}"
    );
}

fn demo(runtime: &str) {
    let out = grapevine(&["demo", "--nodes", "5", "--runtime", runtime]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    for needle in [
        "converged: every node sees 5/5 alive",
        "ring agreed",
        "served by",
        "stopping n5",
        "failed over to",
        "declared n5 dead",
        "detected: every survivor sees n5 dead",
        "the crash moved no data",
        "served by a live replica while n5 is down",
        "removenode n5",
        "n5 removed: its 16 tokens left the ring",
        "now served by their new owners",
        "its crash moved 0 tokens, removenode moved 16",
        "summary: 5 nodes",
    ] {
        assert!(
            stdout.contains(needle),
            "demo output lacks {needle:?}:\n{stdout}"
        );
    }
    println!("{stdout}");
}

#[test]
fn demo_std() {
    demo("std");
}

#[cfg(feature = "tokio")]
#[test]
fn demo_tokio() {
    demo("tokio");
}

#[cfg(feature = "smol")]
#[test]
fn demo_smol() {
    demo("smol");
}

#[test]
fn bad_bind_address() {
    assert_usage_error(&["node", "--bind", "notanaddr"], "notanaddr");
}

#[test]
fn unspecified_bind_address() {
    assert_usage_error(&["node", "--bind", "0.0.0.0:7946"], "concrete IP");
}

#[test]
fn unknown_runtime() {
    assert_usage_error(
        &["node", "--bind", "127.0.0.1:0", "--runtime", "bogus"],
        "bogus",
    );
}

#[test]
fn removenode_needs_a_name() {
    assert_usage_error(&["removenode", "--node", "127.0.0.1:1"], "NAME");
}

#[test]
fn unknown_subcommand() {
    assert_usage_error(&["frobnicate"], "frobnicate");
}

#[test]
fn port_in_use() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_failure(&["node", "--bind", &addr], "in use");
}

#[test]
fn unreachable_seed() {
    // Port 9 (discard) on loopback: nothing answers.
    assert_failure(
        &[
            "node",
            "--bind",
            "127.0.0.1:0",
            "--seed",
            "127.0.0.1:9",
            "--join-timeout",
            "1s",
        ],
        "no seed answered",
    );
}

#[test]
fn unresolvable_seed() {
    // A host name is resolved again on every attempt (it may appear later), so only
    // --join-timeout ends the wait: a failure at run time.
    assert_failure(
        &[
            "node",
            "--bind",
            "127.0.0.1:0",
            "--seed",
            "no-such-host.invalid:7946",
            "--join-timeout",
            "1s",
        ],
        "no-such-host.invalid",
    );
}

#[test]
fn malformed_seed() {
    assert_usage_error(
        &["node", "--bind", "127.0.0.1:0", "--seed", "nohost"],
        "nohost",
    );
}

#[test]
fn no_node_to_query() {
    // Nothing listens on the admin port of 127.0.0.1:1 (port 1001).
    assert_failure(&["members", "--node", "127.0.0.1:1"], "cannot reach");
    assert_failure(&["status", "--node", "127.0.0.1:1"], "cannot reach");
    assert_failure(
        &["removenode", "someone", "--node", "127.0.0.1:1"],
        "cannot reach",
    );
}

/// A `grapevine node` child process, killed on drop.
struct NodeProcess {
    child: Child,
    addr: String,
    admin: String,
}

impl NodeProcess {
    fn start(seed: Option<&str>) -> NodeProcess {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "node",
            "--bind",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--profile",
            "fast",
        ]);
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
        // The first log line says where the node and its admin interface listen.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(
            line.contains("node started"),
            "unexpected first line: {line}"
        );
        let field = |name: &str| {
            let start = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
            line[start..].split_whitespace().next().unwrap().to_owned()
        };
        let (addr, admin) = (field("node"), field("admin"));
        // Keep draining the child's logs so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        NodeProcess { child, addr, admin }
    }

    fn query(&self, what: &str) -> String {
        let out = grapevine(&[what, "--node", &self.addr, "--admin", &self.admin]);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn query_json(&self, what: &str) -> serde_json::Value {
        let out = grapevine(&[what, "--node", &self.addr, "--admin", &self.admin, "--json"]);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON reply")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn node_answers_members_and_ring_queries() {
    let first = NodeProcess::start(None);
    let second = NodeProcess::start(Some(&first.addr));
    let clock = grapevine_driver::Clock::new();
    let start = clock.now();
    loop {
        let reply = first.query_json("members");
        let members = reply["members"].as_array().unwrap();
        let alive = members.iter().filter(|m| m["state"] == "alive").count();
        if alive == 2 {
            break;
        }
        assert!(
            clock.now() - start < Duration::from_secs(20),
            "no convergence: {reply}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let table = first.query("members");
    assert!(table.starts_with("ADDRESS"), "{table}");
    assert!(table.contains(&second.addr), "{table}");
    assert!(table.contains("(self)"), "{table}");
    loop {
        let ring = second.query_json("ring");
        if ring["owners"].as_array().unwrap().len() == 2 {
            assert!(!ring["tokens"].as_array().unwrap().is_empty());
            break;
        }
        assert!(
            clock.now() - start < Duration::from_secs(20),
            "no ring: {ring}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let table = second.query("ring");
    assert!(
        table.contains("OWNER") && table.contains(&first.addr),
        "{table}"
    );
}
