//! `grapevine node`: run one node until interrupted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use clap::Args;
use grapevine_driver::{Event, Options, Printable};

use crate::app::App;
use crate::runtime::{self, Node};
use crate::store::Store;
use crate::{
    CliResult, ClusterArgs, admin, cli_error, default_admin, loopback, metrics, resolve,
    usage_error, web,
};

/// Arguments of `grapevine node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The UDP address to bind; other nodes reach this node at this address, so use
    /// a concrete IP (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    bind: String,
    /// A node to join, `IP:PORT` or `HOST:PORT` (repeat for more). The node keeps
    /// trying its seeds, with backoff up to 30 s, until one answers; a host name is
    /// resolved again on every attempt and every 30 s afterwards, so it may be a DNS
    /// name whose addresses change (a Kubernetes headless service). Without seeds this
    /// node starts a new cluster.
    #[arg(long = "seed", value_name = "ADDR")]
    seeds: Vec<String>,
    /// Seal every datagram with the keys in FILE: one key per line (32 bytes in base64
    /// or hex), the first being primary; blank and `#` lines are ignored. The file
    /// must not be readable by group or others (chmod 600). Every node of the cluster
    /// needs a key in common; rotate keys with `grapevine keys`.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// The TCP address of the admin interface [default: loopback, the bind port +
    /// 1000]. Protocol: connect, send one line (`status`, `members`, `ring`,
    /// `stats`, `route KEY`, `removenode NAME`, `decommission`, or a JSON request
    /// such as `{"v":1,"op":"get","key":"k"}`), read one JSON document.
    /// Unauthenticated, hence loopback by default: expose it only where operators
    /// alone reach it (other nodes never need it).
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// The node's stable name (host ID). With --data-dir: used the first time
    /// (default: 16 random hex digits) and must match the saved one afterwards.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Where the node keeps its name, location and tokens (`placement.json`), so a
    /// restart takes back exactly its ranges. Created if missing.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The node's datacenter [default: dc1].
    #[arg(long, value_name = "DC")]
    dc: Option<String>,
    /// The node's rack [default: rack1].
    #[arg(long, value_name = "RACK")]
    rack: Option<String>,
    /// Serve the node's metrics in Prometheus text format over HTTP at this address
    /// (e.g. 127.0.0.1:9464; scrape http://ADDR/metrics). Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Serve a web view of the live cluster at this address: members and their
    /// states, the ring, the rumour queue and events as they happen. A bare port
    /// (`--http 8080`) or no value binds loopback (no value: the bind port + 2000).
    /// Read-only, but unauthenticated: expose it only where operators alone reach it.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
    http: Option<String>,
    /// Give up (exit 1) when no seed has answered within DURATION (e.g. 30s, 500ms).
    /// Without it the node keeps trying until it joins.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    join_timeout: Option<Duration>,
    /// How often seeds given as host names are resolved again once the node has
    /// joined, so that a node left alone later finds the seeds' current addresses.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    seed_refresh: Duration,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    record: crate::replay::RecordArgs,
}

/// Parses `1500ms`, `5s` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (expected e.g. 5s or 500ms)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?} (use ms, s or m)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Runs the node until Ctrl-C or SIGTERM, then leaves gracefully.
pub fn run(args: NodeArgs) -> CliResult<ExitCode> {
    let bind = resolve(&args.bind)?;
    if bind.ip().is_unspecified() {
        return Err(usage_error!(
            "--bind {}: use a concrete IP, since other nodes reach this node at the address it binds",
            args.bind
        ));
    }
    let mut seeds = Vec::new();
    let mut seed_hosts = Vec::new();
    for seed in &args.seeds {
        match parse_seed(seed)? {
            Seed::Addr(addr) => seeds.push(addr),
            Seed::Host(host) => seed_hosts.push(host),
        }
    }
    let keyring = match &args.key_file {
        Some(path) => {
            Some(grapevine_driver::keys::read_key_file(path).map_err(|e| cli_error!("{e}"))?)
        }
        None => None,
    };
    // The admin interface is unauthenticated (it sets state, installs keys, removes
    // nodes), so by default it listens on loopback only, whatever `--bind` says.
    let admin_addr = match &args.admin {
        Some(addr) => resolve(addr)?,
        None => loopback(default_admin(bind)?),
    };
    let (stop_tx, stop_rx) = mpsc::channel();
    let signal = stop_tx.clone();
    ctrlc::set_handler(move || {
        let _ = signal.send(());
    })
    .map_err(|e| cli_error!("cannot install the signal handler: {e}"))?;
    let config = args.cluster.profile.config(&args.cluster.cluster);
    let config_max_value = config.max_value_size;
    let mut options = Options::new(bind).config(config).seeds(seeds);
    options.seed_hosts = seed_hosts;
    let retry = grapevine_driver::JoinRetry::default();
    options = options.join_retry(grapevine_driver::JoinRetry::new(
        retry.initial,
        retry.max,
        args.seed_refresh,
    ));
    if let Some(keyring) = keyring {
        options = options.keyring(keyring);
    }
    if let Some(name) = &args.name {
        if name.is_empty() || name.len() > grapevine::placement::MAX_NAME_LEN {
            return Err(usage_error!(
                "--name {name:?}: names are 1 to {} bytes",
                grapevine::placement::MAX_NAME_LEN
            ));
        }
        options = options.name(name.clone());
    }
    if args.dc.is_some() || args.rack.is_some() {
        let default = grapevine_driver::Location::default();
        options = options.location(
            args.dc.clone().unwrap_or(default.datacenter),
            args.rack.clone().unwrap_or(default.rack),
        );
    }
    if let Some(dir) = &args.data_dir {
        options = options.data_dir(dir.clone());
    }
    let options = args.record.apply(options)?;
    // Before the node starts: the driver registers its series with the recorder
    // installed when it is created.
    let metrics_addr = args.metrics.as_deref().map(resolve).transpose()?;
    if let Some(addr) = metrics_addr {
        metrics::serve(addr)?;
    }
    let http_addr = args
        .http
        .as_deref()
        .map(|a| http_addr(a, bind))
        .transpose()?;
    let store = Store::new(config_max_value);
    let node = runtime::spawn(args.cluster.runtime, options)?;
    let admin_addr = admin::serve(admin_addr, node.clone(), store.clone(), stop_tx.clone())?;
    let http_addr = http_addr
        .map(|addr| web::serve(addr, node.clone()))
        .transpose()?;
    tracing::info!(
        node = %node.local_addr(),
        admin = %admin_addr,
        name = %node.name(),
        runtime = %args.cluster.runtime,
        cluster = %args.cluster.cluster,
        "node started"
    );
    if let Some(addr) = metrics_addr {
        tracing::info!("metrics served at http://{addr}/metrics");
    }
    if let Some(addr) = http_addr {
        tracing::info!("web view served at http://{addr}/");
    }
    let names = node.clone();
    let mut known: HashMap<SocketAddr, String> = HashMap::new();
    let app = App::with_store(&node, store, move |event| {
        log_event(event, &names, &mut known)
    });

    // With --join-timeout, a watcher stops the process when the node has not joined
    // in time; otherwise the node keeps trying (the driver logs each attempt).
    let gave_up = Arc::new(AtomicBool::new(false));
    if let Some(timeout) = args.join_timeout {
        let (joined, stop, gave_up) = (node.joined(), stop_tx.clone(), gave_up.clone());
        std::thread::Builder::new()
            .name("join-timeout".into())
            .spawn(move || {
                if joined.wait_timeout(timeout).is_none() {
                    gave_up.store(true, Ordering::SeqCst);
                    let _ = stop.send(());
                }
            })?;
    }

    let _ = stop_rx.recv();
    if gave_up.load(Ordering::SeqCst) {
        let _ = node.clone().abort().wait();
        app.stop();
        return Err(cli_error!(
            "cannot join: no seed answered within {} ({}); check that a seed runs, and that --cluster and the keys match its own",
            humantime(args.join_timeout.unwrap_or_default()),
            args.seeds.join(", ")
        ));
    }
    tracing::info!("stopping (this node keeps its ranges)");
    node.shutdown().wait()?;
    app.stop();
    Ok(ExitCode::SUCCESS)
}

/// Where `--http` listens: an address, a bare port on loopback, or (no value)
/// loopback at the node's port + [`WEB_PORT_OFFSET`]. Loopback by default because
/// the view is unauthenticated and names every member.
fn http_addr(text: &str, bind: SocketAddr) -> CliResult<SocketAddr> {
    if text.is_empty() {
        let port = match bind.port() {
            0 => 0,
            p => p.checked_add(WEB_PORT_OFFSET).ok_or_else(|| {
                usage_error!("node port {p} + {WEB_PORT_OFFSET} is not a port: give --http ADDR")
            })?,
        };
        return Ok(loopback(SocketAddr::new(bind.ip(), port)));
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(loopback(SocketAddr::new(bind.ip(), port)));
    }
    resolve(text)
}

/// `--http` without a value listens at the node's port plus this (the admin
/// interface takes + 1000).
pub const WEB_PORT_OFFSET: u16 = 2000;

/// A `--seed`: an address, or a host name to resolve on every attempt.
#[derive(Debug, PartialEq, Eq)]
enum Seed {
    Addr(SocketAddr),
    Host(String),
}

/// Parses a `--seed`: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`. Only its form is
/// checked here (a usage error); whether the host resolves is the driver's business,
/// attempt after attempt.
fn parse_seed(text: &str) -> CliResult<Seed> {
    if let Ok(addr) = text.parse() {
        return Ok(Seed::Addr(addr));
    }
    let bad = || usage_error!("--seed {text:?}: expected IP:PORT or HOST:PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid {
        return Err(bad());
    }
    Ok(Seed::Host(text.to_owned()))
}

/// `1.5s`, `500ms`: a duration as a person writes it.
fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The name of the member at `addr`: from `known`, refreshed from the node's
/// members when missing.
fn name_of(addr: SocketAddr, node: &Node, known: &mut HashMap<SocketAddr, String>) -> String {
    if !known.contains_key(&addr)
        && let Ok(members) = node.members().wait()
    {
        for m in members {
            if let Some(name) = m.name {
                known.insert(m.id.addr, name);
            }
        }
    }
    known.get(&addr).cloned().unwrap_or_else(|| "?".to_owned())
}

/// Logs one event of the node: the one place a node's events are logged (the driver
/// logs none, so each appears once), keys and values made readable by [`Printable`].
fn log_event(event: Event, node: &Node, known: &mut HashMap<SocketAddr, String>) {
    let mut name = |addr| name_of(addr, node, known);
    match event {
        Event::MemberJoined(id) => {
            tracing::info!(member = %id.addr, name = %name(id.addr), generation = id.generation, "member joined")
        }
        Event::MemberSuspect(id) => {
            tracing::warn!(member = %id.addr, name = %name(id.addr), "member suspect")
        }
        Event::MemberRecovered(id) => {
            tracing::info!(member = %id.addr, name = %name(id.addr), "member recovered")
        }
        Event::MemberDied(id) => {
            tracing::warn!(member = %id.addr, name = %name(id.addr), "member died")
        }
        Event::MemberLeft(id) => {
            tracing::info!(member = %id.addr, name = %name(id.addr), "member left")
        }
        Event::Topology { name, status } => {
            tracing::info!(member = %name, %status, "member topology changed")
        }
        Event::PlacementChanged(placement) => tracing::info!(
            status = ?placement.status,
            tokens = placement.tokens.len(),
            "this node's placement changed"
        ),
        Event::RingAgreed { digest } => {
            tracing::info!(digest = format_args!("{digest:016x}"), "ring agreed")
        }
        Event::RequestFailed { id, reason } => tracing::warn!(%id, %reason, "request failed"),
        Event::StateChanged { node, key, value } => match value {
            Some(value) => tracing::debug!(
                node = %node.addr,
                key = %Printable(key.as_bytes()),
                value = %Printable(&value),
                "key set"
            ),
            None => {
                tracing::debug!(node = %node.addr, key = %Printable(key.as_bytes()), "key deleted")
            }
        },
        Event::Response { id, from, payload } => {
            tracing::trace!(%id, from = %from.addr, payload = %Printable(&payload), "response")
        }
        other => tracing::trace!(event = ?other, "event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
        assert_eq!(humantime(Duration::from_millis(1500)), "1.5s");
        assert_eq!(humantime(Duration::from_secs(5)), "5s");
    }

    #[test]
    fn http_binds_loopback_by_default() {
        let bind: SocketAddr = "10.0.0.1:7946".parse().unwrap();
        assert_eq!(
            http_addr("", bind).unwrap(),
            "127.0.0.1:9946".parse().unwrap()
        );
        assert_eq!(
            http_addr("8080", bind).unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            http_addr("10.0.0.1:8080", bind).unwrap(),
            "10.0.0.1:8080".parse().unwrap()
        );
        assert!(http_addr("", "10.0.0.1:65000".parse().unwrap()).is_err());
    }

    #[test]
    fn seeds_are_addresses_or_host_names() {
        assert_eq!(
            parse_seed("10.0.0.1:7946").unwrap(),
            Seed::Addr("10.0.0.1:7946".parse().unwrap())
        );
        assert_eq!(
            parse_seed("[::1]:7946").unwrap(),
            Seed::Addr("[::1]:7946".parse().unwrap())
        );
        assert_eq!(
            parse_seed("grapevine.default.svc.cluster.local:7946").unwrap(),
            Seed::Host("grapevine.default.svc.cluster.local:7946".into())
        );
        for bad in [
            "nohost",
            ":7946",
            "host:",
            "host:99999",
            "a b:1",
            "host:port",
        ] {
            assert!(parse_seed(bad).is_err(), "{bad}");
        }
    }
}
