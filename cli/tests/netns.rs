//! A cluster of `grapevine node` processes, each in its own network namespace with
//! its own address (10.77.0.N/24), joined by a bridge in a hub namespace. Every
//! interface and address lives inside namespaces this test creates and deletes, so
//! no traffic touches the host's own network.
//!
//! Needs root and iproute2's `ip`; without them it prints why and passes as skipped.
//! CI runs it as root.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_grapevine");
const NODES: usize = 4;
const PORT: u16 = 7946;
const DEADLINE: Duration = Duration::from_secs(20);

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

/// The namespaces and node processes of one test run; all removed on drop, even
/// when the test fails.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Option<Child>>,
    logs: std::path::PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let prefix = format!("gvt{}", std::process::id());
        let logs = std::env::temp_dir().join(format!("{prefix}-logs"));
        let _ = std::fs::create_dir_all(&logs);
        Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            logs,
        }
    }

    fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    fn add_ns(&mut self, name: String) {
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
    }

    /// A hub namespace with a bridge, and one namespace per node wired to it.
    fn build(&mut self) {
        let hub = self.hub();
        self.add_ns(hub.clone());
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for i in 1..=NODES {
            let ns = self.ns(i);
            self.add_ns(ns.clone());
            let port = format!("p{i}");
            // Created inside the node's namespace, its peer straight in the hub.
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &hub,
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.0.{i}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &port, "up"]);
        }
    }

    fn addr(i: usize) -> String {
        format!("10.77.0.{i}:{PORT}")
    }

    fn start_node(&mut self, i: usize) {
        let ns = self.ns(i);
        let bind = Lab::addr(i);
        let mut args = vec![
            "netns",
            "exec",
            &ns,
            BIN,
            "node",
            "--bind",
            &bind,
            "--profile",
            "fast",
            "--cluster",
            "netns",
        ];
        let seed = Lab::addr(1);
        if i != 1 {
            args.extend(["--seed", &seed]);
        }
        let log = std::fs::File::create(self.logs.join(format!("node{i}.log"))).expect("log file");
        let child = Command::new("ip")
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a node");
        self.children.push(Some(child));
    }

    fn stop_node(&mut self, i: usize) {
        if let Some(mut child) = self.children[i - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `grapevine members --json`, run inside node `i`'s namespace.
    fn members(&self, i: usize) -> Option<Vec<(String, String)>> {
        let ns = self.ns(i);
        let node = Lab::addr(i);
        let out = Command::new("ip")
            .args([
                "netns", "exec", &ns, BIN, "members", "--node", &node, "--json",
            ])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(
            reply["members"]
                .as_array()?
                .iter()
                .map(|m| {
                    (
                        m["addr"].as_str().unwrap_or_default().to_owned(),
                        m["state"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        )
    }

    fn wait(&self, what: &str, mut done: impl FnMut(&Lab) -> bool) -> Duration {
        let clock = grapevine_driver::Clock::new();
        let start = clock.now();
        loop {
            if done(self) {
                return clock.now() - start;
            }
            if clock.now() - start > DEADLINE {
                let mut logs = String::new();
                for i in 1..=NODES {
                    let text = std::fs::read_to_string(self.logs.join(format!("node{i}.log")))
                        .unwrap_or_default();
                    logs.push_str(&format!("--- node {i}\n{text}"));
                }
                panic!("timed out after {DEADLINE:?} waiting for {what}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace deletes its interfaces (and the veth peers with them).
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.logs);
    }
}

#[test]
fn nodes_in_separate_namespaces_converge_and_detect_a_failure() {
    if !is_root() {
        eprintln!("SKIPPED netns test: needs root to create network namespaces");
        return;
    }
    if !have_ip() {
        eprintln!("SKIPPED netns test: the `ip` command (iproute2) is missing");
        return;
    }
    let mut lab = Lab::new();
    lab.build();
    for i in 1..=NODES {
        lab.start_node(i);
    }

    let converged = lab.wait("every node to see all nodes alive", |lab| {
        (1..=NODES).all(|i| {
            lab.members(i)
                .is_some_and(|m| m.len() == NODES && m.iter().all(|(_, state)| state == "alive"))
        })
    });
    eprintln!("{NODES} namespaces converged in {converged:?}");

    // The admin interface listens on loopback by default: node 1's is reachable from
    // its own namespace (above), not from node 2's over the veth.
    let remote_admin = format!("10.77.0.1:{}", PORT + 1000);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(2),
            BIN,
            "members",
            "--node",
            &Lab::addr(1),
            "--admin",
            &remote_admin,
        ])
        .output()
        .expect("run grapevine");
    assert_eq!(
        out.status.code(),
        Some(1),
        "node 1's admin interface answered from another host: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    lab.stop_node(NODES);
    let victim = Lab::addr(NODES);
    let detected = lab.wait("the others to declare the stopped node dead", |lab| {
        (1..NODES).all(|i| {
            lab.members(i).is_some_and(|m| {
                m.iter()
                    .any(|(addr, state)| *addr == victim && state == "dead")
            })
        })
    });
    eprintln!("stopped node declared dead in {detected:?} (includes query latency)");
}
