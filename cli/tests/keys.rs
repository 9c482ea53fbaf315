//! Encryption end to end on real sockets: key files refused as documented, nodes with
//! no key in common never join (and the seed says why), and a key rotation across a
//! live 3-process cluster with no false suspicion.

mod procs;

use grapevine_driver::keys::{encode_key, fingerprint};
use procs::{NodeProcess, TempDir, assert_error, grapevine, logs, wait_for};

const K1: [u8; 32] = [0x11; 32];
const K2: [u8; 32] = [0x22; 32];

fn node_args<'a>(key_file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--bind",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--profile",
        "fast",
        "--key-file",
        key_file,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_missing_key_file_is_refused() {
    let out = grapevine(
        None,
        &[
            "node",
            "--bind",
            "127.0.0.1:0",
            "--key-file",
            "/nonexistent/grapevine.keys",
        ],
    );
    assert_error(&out, 1, "cannot read key file /nonexistent/grapevine.keys");
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = TempDir::new("keys-open");
    for mode in [0o644, 0o640, 0o604] {
        let file = dir.file("keys", &encode_key(&K1), mode);
        let out = grapevine(
            None,
            &["node", "--bind", "127.0.0.1:0", "--key-file", &file],
        );
        assert_error(&out, 1, "readable by group or others");
    }
}

#[test]
fn a_malformed_key_is_refused_without_echoing_it() {
    let dir = TempDir::new("keys-bad");
    let secret = "dGhpcyBpcyBub3QgYSAzMi1ieXRlIGtleQ==";
    let file = dir.file(
        "keys",
        &format!("# keys\n{}\n{secret}\n", encode_key(&K1)),
        0o600,
    );
    let out = grapevine(
        None,
        &["node", "--bind", "127.0.0.1:0", "--key-file", &file],
    );
    let stderr = assert_error(&out, 1, "line 3: not a key");
    assert!(
        !stderr.contains(secret),
        "the key text is never printed: {stderr}"
    );
    let empty = dir.file("empty", "# nothing yet\n", 0o600);
    let out = grapevine(
        None,
        &["node", "--bind", "127.0.0.1:0", "--key-file", &empty],
    );
    assert_error(&out, 1, "holds no key");
    // A malformed KEY argument is bad usage.
    let out = grapevine(
        None,
        &["keys", "install", "not-a-key", "--node", "127.0.0.1:1"],
    );
    assert_error(&out, 2, "KEY: not a key");
}

#[test]
fn nodes_without_a_key_in_common_do_not_join_and_the_seed_says_why() {
    let dir = TempDir::new("keys-unknown");
    let k1 = dir.file("k1", &encode_key(&K1), 0o600);
    let k2 = dir.file("k2", &encode_key(&K2), 0o600);
    let seed = NodeProcess::start("seed", None, &node_args(&k1, &[]));
    // Same cluster, another key: the seed drops every datagram unopened.
    let out = grapevine(
        None,
        &[
            &["node"],
            &node_args(&k2, &["--seed", &seed.addr, "--join-timeout", "2s"])[..],
        ]
        .concat(),
    );
    let stderr = assert_error(&out, 1, "cannot join: no seed answered within 2s");
    assert!(
        stderr.contains("not joined yet"),
        "the joiner warns while it tries: {stderr}"
    );
    wait_for(
        "the seed's WARN about datagrams it could not open",
        || seed.logged(&["WARN", "unauthenticated", "from 127.0.0.1:"]),
        || seed.log(),
    );
    // And a node of another cluster: dropped as foreign, and said so.
    let out = grapevine(
        None,
        &[
            &["node"],
            &node_args(
                &k1,
                &[
                    "--seed",
                    &seed.addr,
                    "--join-timeout",
                    "1s",
                    "--cluster",
                    "other",
                ],
            )[..],
        ]
        .concat(),
    );
    assert_error(&out, 1, "cannot join");
    wait_for(
        "the seed's WARN about another cluster's datagrams",
        || seed.logged(&["WARN", "foreign_cluster"]),
        || seed.log(),
    );
    assert_eq!(seed.alive().len(), 1, "nobody joined the seed");
    let stats = seed.json(&["stats"]);
    assert!(
        stats["drops_by_reason"]["unauthenticated"].as_u64() > Some(0),
        "{stats}"
    );
    assert!(
        stats["drops_by_reason"]["foreign_cluster"].as_u64() > Some(0),
        "{stats}"
    );
    assert!(
        !seed.log().contains(&encode_key(&K1)),
        "key material is never logged"
    );
}

/// `grapevine keys VERB [KEY]` against `node`; the reply's key fingerprints.
fn keys(node: &NodeProcess, verb: &str, key: Option<&[u8; 32]>) -> (String, Vec<String>) {
    let encoded = key.map(encode_key);
    let mut what = vec!["keys", verb];
    what.extend(encoded.as_deref());
    let reply = node.json(&what);
    let fps = reply["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    (
        reply["primary"].as_str().unwrap_or_default().to_owned(),
        fps,
    )
}

fn counter(node: &NodeProcess, name: &str) -> u64 {
    node.json(&["stats"])[name].as_u64().expect(name)
}

#[test]
fn keys_rotate_on_a_live_three_process_cluster_without_false_suspicion() {
    let dir = TempDir::new("keys-rotate");
    let k1 = dir.file("k1", &encode_key(&K1), 0o600);
    let n1 = NodeProcess::start("n1", None, &node_args(&k1, &[]));
    let seed = n1.addr.clone();
    let n2 = NodeProcess::start("n2", None, &node_args(&k1, &["--seed", &seed]));
    let n3 = NodeProcess::start("n3", None, &node_args(&k1, &["--seed", &seed]));
    let nodes = [&n1, &n2, &n3];
    let converged = wait_for(
        "every node to see 3 alive",
        || nodes.iter().all(|n| n.alive().len() == 3),
        || logs(&nodes),
    );
    eprintln!("3 encrypted nodes converged in {converged:?}");
    let (f1, f2) = (fingerprint(&K1), fingerprint(&K2));
    for n in nodes {
        assert_eq!(
            keys(n, "list", None),
            (f1.clone(), vec![f1.clone()]),
            "{}",
            n.label
        );
    }

    // memberlist's rotation: install everywhere, use everywhere, remove everywhere.
    for n in nodes {
        assert_eq!(
            keys(n, "install", Some(&K2)),
            (f1.clone(), vec![f1.clone(), f2.clone()])
        );
    }
    for n in nodes {
        assert_eq!(
            keys(n, "use", Some(&K2)),
            (f2.clone(), vec![f2.clone(), f1.clone()])
        );
    }
    // A refused change changes nothing: the primary cannot be removed.
    let out = grapevine(
        None,
        &[
            "keys",
            "remove",
            &encode_key(&K2),
            "--node",
            &n1.addr,
            "--admin",
            &n1.admin,
        ],
    );
    assert_error(&out, 1, "cannot remove the primary key");
    for n in nodes {
        assert_eq!(keys(n, "remove", Some(&K1)), (f2.clone(), vec![f2.clone()]));
    }

    // The cluster keeps running on the new key: wait until every node has probed 15
    // more times (3 s of the fast profile), then nobody may ever have been suspected,
    // and no datagram failed to open.
    let probes: Vec<u64> = nodes.iter().map(|n| counter(n, "probes")).collect();
    wait_for(
        "15 more probes on every node after the rotation",
        || {
            nodes
                .iter()
                .zip(&probes)
                .all(|(n, p)| counter(n, "probes") >= p + 15)
        },
        || logs(&nodes),
    );
    for n in nodes {
        let stats = n.json(&["stats"]);
        assert_eq!(stats["suspicions"], 0, "{}: {stats}", n.label);
        assert_eq!(
            stats["drops_by_reason"]["unauthenticated"], 0,
            "{}: {stats}",
            n.label
        );
        assert_eq!(n.alive().len(), 3, "{}", n.label);
        let members = n.json(&["members"]);
        assert!(
            members["members"]
                .as_array()
                .expect("members")
                .iter()
                .all(|m| m["incarnation"] == 0),
            "nobody had to refute a suspicion: {members}"
        );
        assert!(
            !n.log().contains(&encode_key(&K2)),
            "key material is never logged"
        );
    }

    // The old key is really gone: a node that holds only it cannot join.
    let out = grapevine(
        None,
        &[
            &["node"],
            &node_args(&k1, &["--seed", &seed, "--join-timeout", "2s"])[..],
        ]
        .concat(),
    );
    assert_error(&out, 1, "cannot join");
}
