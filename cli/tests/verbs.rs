//! The key-value verbs end to end, with `grapevine node` processes on loopback:
//! `set`, `get`, `delete` and `state` on a node's gossip state, `request`, `put` and
//! `get --via` through any node, `stats`, `members --status`, host names, bad input
//! (values over the node's limit, unknown nodes, usage errors) and a closed stdout.
//! Every wait polls a condition under a deadline.

mod common;

use std::process::{Command, Stdio};

use common::{NodeProcess, assert_error, cluster, grapevine, success, wait_until};
use serde_json::Value;

/// The value limit of the nodes under test: their config's (`--profile fast` is
/// `Config::lan` with faster timers), whatever the default is raised to.
fn max_value_size() -> usize {
    grapevine::Config::lan("grapevine").max_value_size
}

#[test]
fn gossip_state_verbs() {
    let nodes = cluster(3);
    let (a, b) = (&nodes[0], &nodes[1]);

    let out = a.run("--node", &["set", "color", "blue"]);
    assert!(success("set", &out).contains("color"));
    // B learns A's key by gossip.
    wait_until("b to hold a's color", || {
        let out = b.run("--node", &["get", "color", "--of", &a.name]);
        out.status.success() && String::from_utf8_lossy(&out.stdout) == "blue\n"
    });
    // --of takes an address as well as a name, and the reply says whose state it is.
    let reply = b.json(&["get", "color", "--of", &a.addr]);
    assert_eq!(reply["value"], "blue");
    assert_eq!(reply["owner"]["name"], a.name.as_str());
    assert_eq!(reply["node"], b.addr.as_str());

    // `state` lists the application's keys; reserved ones only with --all (the core
    // keeps none in state, so both list the same keys).
    let state = b.json(&["state", "--of", &a.name]);
    let keys: Vec<&str> = state["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"color"), "{state}");
    assert!(keys.iter().all(|k| !k.starts_with("gv.")), "{state}");
    let all = b.json(&["state", "--of", &a.name, "--all"]);
    assert_eq!(all["keys"], state["keys"], "{all}");
    let table = success("state", &a.run("--node", &["state"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("color") && l.ends_with("blue")),
        "{table}"
    );

    // A delete spreads too; then the read fails with exit 1.
    success("delete", &a.run("--node", &["delete", "color"]));
    wait_until("b to see the delete", || {
        b.run("--node", &["get", "color", "--of", &a.name])
            .status
            .code()
            == Some(1)
    });
    let out = b.run("--node", &["get", "color", "--of", &a.name]);
    assert_error("get of a deleted key", &out, 1, "no key \"color\"");

    // A value over the node's limit is refused by the node: exit 1, one line.
    let limit = max_value_size();
    let too_big = "x".repeat(limit + 1);
    let out = a.run("--node", &["set", "big", &too_big]);
    assert_error("set over the limit", &out, 1, "exceeds max_value_size");
    let at_limit = "y".repeat(limit);
    success(
        "set at the limit",
        &a.run("--node", &["set", "big", &at_limit]),
    );
    assert_eq!(a.json(&["get", "big"])["value"], at_limit.as_str());

    // Reserved keys, unknown nodes, usage errors.
    let out = a.run("--node", &["set", "gv.tokens", "x"]);
    assert_error("set of a reserved key", &out, 1, "reserved");
    let out = a.run("--node", &["get", "color", "--of", "nobody"]);
    assert_error(
        "get --of an unknown node",
        &out,
        1,
        "unknown node \"nobody\"",
    );
    let out = a.run("--node", &["state", "--of", "127.0.0.1:1"]);
    assert_error("state --of an unknown address", &out, 1, "unknown node");
    let out = grapevine(&["set", "k", "--node", &a.addr]);
    assert_error("set without a value", &out, 2, "VALUE");
    let out = grapevine(&["get", "k"]);
    assert_error("get without --node or --via", &out, 2, "--node");
    let out = grapevine(&["get", "k", "--node", &a.addr, "--via", &b.addr]);
    assert_error("get with --node and --via", &out, 2, "cannot be used with");
    let out = grapevine(&["get", "k", "--via", &a.addr, "--of", "n1"]);
    assert_error("get --via with --of", &out, 2, "cannot be used with");
    let out = grapevine(&["set", "k", "v", "--node", "no-such-host.invalid:7946"]);
    assert_error(
        "set on an unresolvable node",
        &out,
        2,
        "no-such-host.invalid",
    );
    // Nothing listens on the admin port of 127.0.0.1:1 (port 1001).
    for args in [
        &["set", "k", "v", "--node", "127.0.0.1:1"][..],
        &["get", "k", "--node", "127.0.0.1:1"],
        &["delete", "k", "--node", "127.0.0.1:1"],
        &["state", "--node", "127.0.0.1:1"],
        &["request", "k", "p", "--via", "127.0.0.1:1"],
        &["put", "k", "v", "--via", "127.0.0.1:1"],
        &["get", "k", "--via", "127.0.0.1:1"],
    ] {
        assert_error(&format!("{args:?}"), &grapevine(args), 1, "cannot reach");
    }
}

#[test]
fn requests_and_the_store_through_any_node() {
    let nodes = cluster(3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    // Put through one node, get through each of the others.
    let put = a.run("--via", &["put", "fruit", "apple", "--json"]);
    let put: Value = serde_json::from_str(&success("put", &put)).unwrap();
    // RF 3 on 3 nodes: every node is a live natural replica, and each took the value.
    assert_eq!(put["written"], 3, "{put}");
    for node in [b, c] {
        let out = node.run("--via", &["get", "fruit"]);
        assert_eq!(success("get --via", &out), "apple\n");
        let reply: Value = serde_json::from_str(&success(
            "get --via",
            &node.run("--via", &["get", "fruit", "--json"]),
        ))
        .unwrap();
        assert_eq!(reply["found"], true);
        // Every node is a replica, so it serves the read itself.
        assert_eq!(reply["path"], "local", "{reply}");
        assert_eq!(reply["served_by"]["addr"], node.addr.as_str());
    }
    let out = b.run("--via", &["get", "vegetable"]);
    assert_error(
        "get of a missing key",
        &out,
        1,
        "no value for \"vegetable\"",
    );

    // A routed request says who served it, how, and how fast.
    let out = c.run("--via", &["request", "fruit", "hello", "--json"]);
    let reply: Value = serde_json::from_str(&success("request", &out)).unwrap();
    assert_eq!(reply["served_by"]["addr"], c.addr.as_str(), "{reply}");
    assert_eq!(reply["served_by"]["name"], c.name.as_str(), "{reply}");
    assert_eq!(reply["path"], "local");
    assert_eq!(reply["response"], format!("served by {}", c.addr));
    assert!(reply["latency_us"].as_u64().is_some(), "{reply}");
    let line = success("request", &c.run("--via", &["request", "fruit", "hello"]));
    assert!(
        line.starts_with(&format!("served by {} ({}), local, in ", c.name, c.addr)),
        "{line}"
    );

    // The store's limit is the node's max_value_size, or less if a value would not
    // fit one request datagram beside its key (the node's stats say how much fits).
    let stats = a.json(&["stats"]);
    let response = stats["max_request_bytes"].as_u64().unwrap() as usize;
    let limit = max_value_size().min(response - 2) - "big".len();
    let out = a.run("--via", &["put", "big", &"x".repeat(limit + 1)]);
    assert_error("put over the limit", &out, 1, "exceeds the store's limit");
    let out = a.run("--via", &["put", "big", &"x".repeat(max_value_size() + 1)]);
    assert_error(
        "put over max_value_size",
        &out,
        1,
        "exceeds the store's limit",
    );
    success(
        "put at the limit",
        &a.run("--via", &["put", "big", &"z".repeat(limit)]),
    );
    assert_eq!(
        success("get at the limit", &b.run("--via", &["get", "big"])).trim_end(),
        "z".repeat(limit)
    );
    let out = grapevine(&["put", "k", "v"]);
    assert_error("put without --via", &out, 2, "--via");
    let out = grapevine(&["request", "k", "--via", &a.addr]);
    assert_error("request without a payload", &out, 2, "PAYLOAD");

    // stats: drops by reason, rumour queue depth, local health, request counters.
    let stats = c.json(&["stats"]);
    for key in [
        "health",
        "rumours_queued",
        "requests_local",
        "requests_forwarded",
        "requests_failed_over",
    ] {
        assert!(stats[key].is_u64(), "stats lacks {key}: {stats}");
    }
    assert!(
        stats["drops_by_reason"]["foreign_cluster"].is_u64(),
        "{stats}"
    );
    assert!(stats["requests_local"].as_u64().unwrap() >= 4, "{stats}");
    let table = success("stats", &c.run("--node", &["stats"]));
    assert!(table.lines().any(|l| l.starts_with("health ")), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("rumours_queued ")),
        "{table}"
    );
}

/// Every command that prints ends quietly (exit 0, nothing on stderr) when its
/// stdout is closed before it writes, as in `grapevine ring | head -1`.
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let a = NodeProcess::start("solo", "127.0.0.1:0", None, &[]);
    wait_until("the node to be ready", || {
        a.json(&["status"])["ready"] == true
    });
    success("set", &a.run("--node", &["set", "k", "v"]));
    success("put", &a.run("--via", &["put", "k", "v"]));
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("--node", vec!["status"]),
        ("--node", vec!["members"]),
        ("--node", vec!["ring"]),
        ("--node", vec!["stats"]),
        ("--node", vec!["ring", "--json"]),
        ("--node", vec!["state"]),
        ("--node", vec!["get", "k"]),
        ("--node", vec!["set", "k", "w"]),
        ("--node", vec!["delete", "k"]),
        ("--via", vec!["request", "k", "p"]),
        ("--via", vec!["put", "k", "v"]),
        ("--via", vec!["get", "k"]),
    ];
    for (flag, args) in commands {
        let mut cmd = Command::new(common::BIN);
        cmd.args(&args)
            .args([flag, &a.addr, "--admin", &a.admin])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // Close the read end before the command has its answer to print.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} with a closed stdout: {stderr}"
        );
        assert!(stderr.is_empty(), "{args:?} with a closed stdout: {stderr}");
    }
}

/// Host names work wherever addresses do: --bind, --admin, --seed, --node, --via.
#[test]
fn host_names_are_accepted_for_every_address() {
    let first = NodeProcess::start("h1", "localhost:0", None, &["--admin", "localhost:0"]);
    let port = |addr: &str| addr.rsplit(':').next().unwrap().to_owned();
    let seed = format!("localhost:{}", port(&first.addr));
    let second = NodeProcess::start("h2", "127.0.0.1:0", Some(&seed), &[]);
    let node = format!("localhost:{}", port(&first.addr));
    let admin = format!("localhost:{}", port(&first.admin));
    wait_until("both nodes alive, seen through localhost", || {
        let out = grapevine(&["members", "--node", &node, "--admin", &admin, "--json"]);
        out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout).unwrap()["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["state"] == "alive")
                .count()
                == 2
    });
    wait_until("both ready", || {
        [&first, &second]
            .iter()
            .all(|n| n.json(&["status"])["ready"] == true)
    });
    let out = grapevine(&["request", "k", "p", "--via", &node, "--admin", &admin]);
    assert!(success("request via localhost", &out).starts_with("served by "));
}

/// `members` hides nodes that left (tombstones kept for an hour) unless `--all`,
/// and `--status` picks states.
#[test]
fn members_hides_nodes_that_left() {
    let a = NodeProcess::start("m1", "127.0.0.1:0", None, &[]);
    let b = NodeProcess::start("m2", "127.0.0.1:0", Some(&a.addr), &[]);
    wait_until("both alive", || {
        a.json(&["members"])["members"].as_array().unwrap().len() == 2
    });
    // A graceful stop: b leaves.
    let pid = b.pid();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("a to see b left", || {
        a.json(&["members", "--all"])["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "m2" && m["state"] == "left")
    });
    let shown = a.json(&["members"]);
    let names: Vec<&str> = shown["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["m1"], "{shown}");
    let left = a.json(&["members", "--status", "left"]);
    assert_eq!(left["members"].as_array().unwrap().len(), 1, "{left}");
    let live = a.json(&["members", "--status", "alive,suspect"]);
    assert_eq!(live["members"].as_array().unwrap().len(), 1, "{live}");
    let out = grapevine(&["members", "--node", &a.addr, "--status", "gone"]);
    assert_error("members --status gone", &out, 2, "gone");
}
