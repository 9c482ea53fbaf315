//! What the key-value verbs' tests share: `grapevine` node processes on loopback, a
//! command runner that checks the documented exit codes, and polling under a deadline.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_grapevine");

/// How long any wait for the cluster may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `grapevine ARGS`.
pub fn grapevine(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run grapevine")
}

/// Polls `done` every 50 ms until it holds; panics with `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let clock = grapevine_driver::Clock::new();
    let start = clock.now();
    while !done() {
        assert!(
            clock.now() - start < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that `out` failed with exit code `code` and exactly one line on stderr,
/// an `error: ...` line containing `expect`, and no panic.
pub fn assert_error(what: &str, out: &Output, code: i32, expect: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what} exited {:?}: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what} should print one line: {stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(expect),
        "{what}: expected an error line with {expect:?}, got {stderr}"
    );
    assert!(out.stdout.is_empty(), "{what} printed to stdout on failure");
}

/// Asserts that `out` succeeded and returns its stdout.
pub fn success(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `grapevine node` child process (fast timers, admin on an ephemeral port),
/// killed on drop.
pub struct NodeProcess {
    child: Child,
    /// Its name.
    pub name: String,
    /// Its UDP address, `IP:port`.
    pub addr: String,
    /// Its admin address, `IP:port`.
    pub admin: String,
}

impl NodeProcess {
    /// Starts a node called `name` bound to `bind` (e.g. `127.0.0.1:0`), joining
    /// `seed` if given, with `extra` arguments.
    pub fn start(name: &str, bind: &str, seed: Option<&str>, extra: &[&str]) -> NodeProcess {
        let mut cmd = Command::new(BIN);
        cmd.args(["node", "--bind", bind, "--profile", "fast", "--name", name]);
        if !extra.contains(&"--admin") {
            cmd.args(["--admin", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--cluster") {
            // One cluster per test (libtest names each test's thread after it): tests
            // run at once, and a port one test's killed node freed may be taken by
            // another test's node, which must not merge the two clusters.
            let test = std::thread::current()
                .name()
                .unwrap_or("test")
                .replace("::", "-");
            cmd.args(["--cluster", &format!("{test}-{}", std::process::id())]);
        }
        cmd.args(extra);
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
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        stderr
            .read_line(&mut line)
            .expect("read the first log line");
        assert!(
            line.contains("node started"),
            "unexpected first line: {line}"
        );
        let field = |key: &str| {
            let start = line.find(&format!(" {key}=")).expect(key) + key.len() + 2;
            line[start..]
                .split_whitespace()
                .next()
                .expect(key)
                .to_owned()
        };
        let (addr, admin) = (field("node"), field("admin"));
        // Keep draining the child's logs so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        NodeProcess {
            child,
            name: name.to_owned(),
            addr,
            admin,
        }
    }

    /// Runs `grapevine ARGS --node|--via ADDR --admin ADMIN` (`flag` says which).
    pub fn run(&self, flag: &str, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([flag, &self.addr, "--admin", &self.admin]);
        grapevine(&all)
    }

    /// `grapevine WHAT --node .. --json`, which must succeed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run("--node", &all);
        serde_json::from_str(&success(&format!("{args:?}"), &out)).expect("JSON reply")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no goodbye.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `n` nodes (`n1`..) seeded by the first, and waits until every one is
/// ready on one ring with `n` normal members.
pub fn cluster(n: usize) -> Vec<NodeProcess> {
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for i in 1..=n {
        let seed = nodes.first().map(|f| f.addr.clone());
        nodes.push(NodeProcess::start(
            &format!("n{i}"),
            "127.0.0.1:0",
            seed.as_deref(),
            &[],
        ));
    }
    wait_until("every node ready on one ring", || {
        let statuses: Vec<Value> = nodes.iter().map(|n| n.json(&["status"])).collect();
        let digests: BTreeSet<&str> = statuses
            .iter()
            .map(|s| s["ring_digest"].as_str().unwrap_or("?"))
            .collect();
        digests.len() == 1
            && statuses.iter().all(|s| {
                s["ready"] == true
                    && s["members"]
                        .as_array()
                        .is_some_and(|m| m.iter().filter(|m| m["status"] == "UN").count() == n)
            })
    });
    nodes
}
