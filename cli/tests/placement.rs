//! Placement across restarts and removals, with real `grapevine node` processes on
//! loopback, each keeping its identity in its own `--data-dir`:
//!
//! - a node killed with SIGKILL and restarted with the same data directory takes
//!   back exactly its tokens, and the ring (token -> owner name) is the same before,
//!   during and after (0 keys moved);
//! - `grapevine removenode` refuses a live, unknown or self node (exit 1), and for a
//!   dead node moves exactly its tokens off the ring (exit 0).
//!
//! Every wait polls a condition under a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_grapevine");
const DEADLINE: Duration = Duration::from_secs(30);

fn grapevine(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run grapevine")
}

/// Polls `done` every 50 ms until it holds; panics with `what` after [`DEADLINE`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
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

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "grapevine-cli-{tag}-{}-{}",
            std::process::id(),
            grapevine_driver::Clock::generation()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `grapevine node` child process with a name and a data directory, killed on drop.
struct NodeProcess {
    child: Child,
    name: String,
    addr: String,
    admin: String,
}

impl NodeProcess {
    fn start(cluster: &str, name: &str, data_dir: &Path, seed: Option<&str>) -> NodeProcess {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "node",
            "--bind",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--profile",
            "fast",
            "--cluster",
            cluster,
            "--name",
            name,
            "--rack",
            "r1",
            "--dc",
            "dc1",
            "--data-dir",
        ]);
        cmd.arg(data_dir);
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
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(
            line.contains("node started"),
            "unexpected first line: {line}"
        );
        let field = |key: &str| {
            let start = line.find(&format!(" {key}=")).unwrap() + key.len() + 2;
            line[start..].split_whitespace().next().unwrap().to_owned()
        };
        let (addr, admin) = (field("node"), field("admin"));
        assert_eq!(field("name"), name, "{line}");
        std::thread::spawn(move || for _ in stderr.lines() {});
        NodeProcess {
            child,
            name: name.to_owned(),
            addr,
            admin,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--node", &self.addr, "--admin", &self.admin]);
        grapevine(&all)
    }

    fn json(&self, what: &str) -> Value {
        let out = self.run(&[what, "--json"]);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON reply")
    }

    /// SIGKILL: no goodbye, no final save.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ring as `grapevine ring --json` shows it: digest and token -> owner name.
fn ring(node: &NodeProcess) -> (String, BTreeMap<i64, String>) {
    let ring = node.json("ring");
    let tokens = ring["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["token"].as_i64().unwrap(),
                t["owner"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (ring["ring_digest"].as_str().unwrap().to_owned(), tokens)
}

fn tokens_of(ring: &BTreeMap<i64, String>, name: &str) -> BTreeSet<i64> {
    ring.iter()
        .filter(|(_, owner)| *owner == name)
        .map(|(t, _)| *t)
        .collect()
}

/// `grapevine status --json` (with `--all` when asked): name -> two-letter status.
fn status(node: &NodeProcess, all: bool) -> BTreeMap<String, String> {
    let mut args = vec!["status", "--json"];
    if all {
        args.push("--all");
    }
    let out = node.run(&args);
    assert!(out.status.success());
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    reply["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn is_ready(node: &NodeProcess) -> bool {
    node.json("status")["ready"] == Value::Bool(true)
}

/// Starts `n` named nodes in `root`/NAME and waits until every one is ready and
/// they all hold the same ring with `n` normal members.
fn cluster(cluster: &str, root: &Path, n: usize) -> Vec<NodeProcess> {
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for i in 0..n {
        let name = format!("node-{}", (b'a' + i as u8) as char);
        let seed = nodes.first().map(|f| f.addr.clone());
        nodes.push(NodeProcess::start(
            cluster,
            &name,
            &root.join(&name),
            seed.as_deref(),
        ));
    }
    wait_until("every node to be ready on one ring", || {
        let digests: BTreeSet<String> = nodes.iter().map(|n| ring(n).0).collect();
        digests.len() == 1
            && nodes.iter().all(|node| {
                is_ready(node) && status(node, false).values().filter(|s| *s == "UN").count() == n
            })
    });
    nodes
}

#[test]
fn a_restart_with_its_data_dir_moves_nothing() {
    let root = TempDir::new("restart");
    let name = format!("restart-{}", std::process::id());
    let mut nodes = cluster(&name, &root.0, 4);
    let (digest, before) = ring(&nodes[0]);
    assert_eq!(
        nodes[0].json("stats")["ring_digest"].as_str(),
        Some(digest.as_str()),
        "`ring` and `stats` show the same digest"
    );
    let victim = nodes.pop().unwrap();
    let victim_name = victim.name.clone();
    let victim_tokens = tokens_of(&before, &victim_name);
    assert_eq!(victim_tokens.len(), 16);
    let saved = std::fs::read_to_string(root.0.join(&victim_name).join("placement.json")).unwrap();
    assert!(saved.contains("\"Normal\""), "{saved}");

    victim.kill();
    wait_until("the survivors to see the killed node down (DN)", || {
        nodes
            .iter()
            .all(|n| status(n, false).get(&victim_name).map(String::as_str) == Some("DN"))
    });
    let during = ring(&nodes[0]);
    assert_eq!(
        during,
        (digest.clone(), before.clone()),
        "a crash moved tokens"
    );
    let table = String::from_utf8(nodes[0].run(&["status"]).stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("DN") && l.contains(&victim_name)),
        "{table}"
    );

    // Restart with the same data dir (at a new port): the same name, the same tokens.
    let restarted = NodeProcess::start(
        &name,
        &victim_name,
        &root.0.join(&victim_name),
        Some(&nodes[0].addr),
    );
    wait_until("the restarted node to be ready and seen up (UN)", || {
        is_ready(&restarted)
            && nodes
                .iter()
                .all(|n| status(n, false).get(&victim_name).map(String::as_str) == Some("UN"))
    });
    let (digest_after, after) = ring(&nodes[0]);
    assert_eq!(
        tokens_of(&after, &victim_name),
        victim_tokens,
        "the restarted node holds exactly its old tokens"
    );
    assert_eq!(after, before, "tokens -> owner names changed: keys moved");
    assert_eq!(digest_after, digest);
    assert_eq!(ring(&restarted), (digest, before));
}

#[test]
fn removenode_moves_exactly_the_dead_nodes_tokens() {
    let root = TempDir::new("remove");
    let name = format!("remove-{}", std::process::id());
    let mut nodes = cluster(&name, &root.0, 4);
    let (digest, before) = ring(&nodes[0]);

    let refused = |node: &NodeProcess, who: &str, why: &str| {
        let out = node.run(&["removenode", who]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "removenode {who}: {stderr}");
        assert!(stderr.contains(why), "removenode {who}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    };
    refused(&nodes[0], "node-b", "not dead");
    refused(&nodes[0], "node-a", "itself");
    refused(&nodes[0], "nobody", "no member by that name");

    let victim = nodes.pop().unwrap();
    let victim_name = victim.name.clone();
    let victim_tokens = tokens_of(&before, &victim_name);
    victim.kill();
    wait_until("the survivors to see the killed node down (DN)", || {
        nodes
            .iter()
            .all(|n| status(n, false).get(&victim_name).map(String::as_str) == Some("DN"))
    });
    assert_eq!(ring(&nodes[1]), (digest.clone(), before.clone()));

    let out = nodes[1].run(&["removenode", &victim_name]);
    assert!(
        out.status.success(),
        "removenode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: BTreeMap<i64, String> = before
        .iter()
        .filter(|(_, owner)| **owner != victim_name)
        .map(|(t, o)| (*t, o.clone()))
        .collect();
    assert_eq!(before.len() - expected.len(), victim_tokens.len());
    wait_until(
        "the dead node's tokens, and only they, to leave every ring",
        || nodes.iter().all(|n| ring(n).1 == expected),
    );
    let (digest_after, _) = ring(&nodes[0]);
    assert_ne!(digest_after, digest);
    for node in &nodes {
        assert_eq!(ring(node).0, digest_after);
        assert!(!status(node, false).contains_key(&victim_name));
    }
    wait_until("the removed node to show as DR with --all", || {
        status(&nodes[0], true)
            .get(&victim_name)
            .map(String::as_str)
            == Some("DR")
    });
    refused(&nodes[0], &victim_name, "already");
}
