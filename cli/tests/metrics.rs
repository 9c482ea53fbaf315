//! `grapevine node --metrics ADDR` end to end: three real node processes on loopback,
//! the first serving Prometheus text over HTTP. The test scrapes it with a plain HTTP
//! GET and checks that the series exist and move: the members gauge reaches the
//! cluster size, packets in grow between scrapes, probes are counted, and a node's
//! leave shows as a member in state `left`. Every wait polls under a deadline.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_grapevine");
const DEADLINE: Duration = Duration::from_secs(30);

/// A `grapevine node` child process, killed on drop.
struct NodeProcess {
    child: Child,
    addr: String,
}

impl NodeProcess {
    fn start(extra: &[&str]) -> NodeProcess {
        let mut child = Command::new(BIN)
            .args([
                "node",
                "--bind",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--profile",
                "fast",
                "--cluster",
                "metrics-test",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start grapevine node");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        stderr.read_line(&mut line).expect("a first log line");
        assert!(
            line.contains("node started"),
            "unexpected first line: {line}"
        );
        let start = line.find("node=").expect("node=") + "node=".len();
        let addr = line[start..].split_whitespace().next().unwrap().to_owned();
        // Keep draining the child's logs so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        NodeProcess { child, addr }
    }

    /// Stops the node as Ctrl-C does (SIGINT): it leaves gracefully.
    fn interrupt(&mut self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the exporter binds it itself).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// One scrape: `series{labels} -> value`, comments left out; `None` if the
/// endpoint does not answer (yet).
fn scrape(addr: SocketAddr) -> Option<HashMap<String, f64>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    Some(
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect(),
    )
}

/// The value of `name` with `labels` (besides `node`), 0 if absent.
fn value(scraped: &HashMap<String, f64>, node: &str, name: &str, labels: &str) -> f64 {
    let labels = if labels.is_empty() {
        format!("node=\"{node}\"")
    } else {
        format!("node=\"{node}\",{labels}")
    };
    scraped
        .get(&format!("{name}{{{labels}}}"))
        .copied()
        .unwrap_or(0.0)
}

/// Scrapes until `done` holds on a scrape, and returns that scrape.
fn scrape_until(
    addr: SocketAddr,
    what: &str,
    mut done: impl FnMut(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Some(scraped) = scrape(addr) {
            if done(&scraped) {
                return scraped;
            }
            last = Some(scraped);
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}; last scrape: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prometheus_scrape_shows_the_cluster_and_its_counters_move() {
    let metrics = free_port();
    let seed = NodeProcess::start(&["--metrics", &metrics.to_string()]);
    let node = seed.addr.clone();
    let mut others: Vec<NodeProcess> = (0..2)
        .map(|_| NodeProcess::start(&["--seed", &seed.addr]))
        .collect();

    let first = scrape_until(metrics, "3 alive members", |s| {
        value(s, &node, "grapevine_members", "state=\"alive\"") == 3.0
    });
    let packets_in = value(&first, &node, "grapevine_packets_in_total", "");
    assert!(packets_in > 0.0, "{first:?}");
    for series in [
        "grapevine_bytes_in_total",
        "grapevine_packets_out_total",
        "grapevine_bytes_out_total",
    ] {
        assert!(
            value(&first, &node, series, "") > 0.0,
            "{series}: {first:?}"
        );
    }
    assert!(
        first.contains_key(&format!(
            "grapevine_packets_dropped_total{{node=\"{node}\",reason=\"foreign_cluster\"}}"
        )),
        "drops are broken down by reason: {first:?}"
    );
    assert!(
        first.contains_key(&format!("grapevine_rumour_queue_depth{{node=\"{node}\"}}")),
        "{first:?}"
    );
    assert_eq!(value(&first, &node, "grapevine_local_health", ""), 0.0);

    // The counters move: packets keep arriving and probes keep going out.
    let probes = value(&first, &node, "grapevine_probes_total", "");
    scrape_until(metrics, "packets in and probes to grow", |s| {
        value(s, &node, "grapevine_packets_in_total", "") > packets_in
            && value(s, &node, "grapevine_probes_total", "") > probes
    });

    // A node that leaves shows as left, and the alive gauge follows.
    others[0].interrupt();
    let after = scrape_until(metrics, "one member left", |s| {
        value(s, &node, "grapevine_members", "state=\"left\"") == 1.0
    });
    assert_eq!(
        value(&after, &node, "grapevine_members", "state=\"alive\""),
        2.0,
        "{after:?}"
    );
    assert_eq!(value(&after, &node, "grapevine_deaths_total", ""), 0.0);
}

#[test]
fn a_metrics_address_in_use_is_a_clean_failure() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["node", "--bind", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--metrics", &addr])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run grapevine");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("error: --metrics") && line.contains(&addr),
        "{stderr}"
    );
}
