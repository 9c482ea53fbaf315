//! `grapevine`: run a Grapevine node, query a running node, or run a local demo cluster.
//!
//! ```text
//! grapevine node --bind 127.0.0.1:7946 [--seed ADDR|HOST:PORT]... [--join-timeout 30s]
//!                [--seed-refresh 30s] [--key-file FILE] [--name NAME] [--data-dir DIR]
//!                [--dc DC] [--rack RACK] [--runtime std|tokio|smol] [--cluster NAME]
//!                [--metrics ADDR] [--http [ADDR|PORT]]
//! grapevine status --node 127.0.0.1:7946 [--all] [--json]
//! grapevine members --node 127.0.0.1:7946 [--status alive|suspect|dead|left]... [--all] [--json]
//! grapevine ring --node 127.0.0.1:7946 [--json]
//! grapevine stats --node 127.0.0.1:7946 [--json]
//! grapevine removenode NAME --node 127.0.0.1:7946 [--json]
//! grapevine decommission --node 127.0.0.1:7946 [--json]
//! grapevine set KEY VALUE --node 127.0.0.1:7946 [--json]
//! grapevine get KEY --node 127.0.0.1:7946 [--of NAME|ADDR] [--json]
//! grapevine delete KEY --node 127.0.0.1:7946 [--json]
//! grapevine state --node 127.0.0.1:7946 [--of NAME|ADDR] [--all] [--json]
//! grapevine request KEY PAYLOAD --via 127.0.0.1:7946 [--json]
//! grapevine put KEY VALUE --via 127.0.0.1:7946 [--json]
//! grapevine get KEY --via 127.0.0.1:7946 [--json]
//! grapevine keys list|install KEY|use KEY|remove KEY --node 127.0.0.1:7946 [--json]
//! grapevine dump 127.0.0.1:7946 [--json]
//! grapevine replay DIR [--until TIME] [--events] [--dump-at TIME [--json]] [--check]
//! grapevine simulate [--nodes 100] [--seed 1] [--loss 5%] [--latency 1ms] [--crash I@T]...
//!                    [--partition 0-49/50-99@T1..T2]... [--duration 60s] [--svg FILE]
//!                    [--record DIR [--record-node I]] [--json]
//! grapevine web --replay DIR [--http 127.0.0.1:8080] [--every 250ms]
//! grapevine demo [--nodes 5]
//! ```
//!
//! Every address may be a host name (`localhost:7946`). `--node` names the node
//! whose own state or view is shown; `--via` names the node a request or a store
//! read or write enters the cluster through (any node). The querying commands take
//! `--admin ADDR` when the node's admin interface is not at its port + 1000 (on
//! loopback by default: it is unauthenticated).
//!
//! Every error is one line on stderr. Bad usage (unknown options, malformed or
//! unresolvable addresses, a malformed KEY argument) exits 2; a failure at run time
//! (a port in use, no seed answering within `--join-timeout`, a refused data
//! directory or key file, a node that cannot be reached, a refused `removenode` or
//! key change, a demo that does not reach its goals, a value over the node's limit,
//! an unknown `--of` node, a missing key, a failed request) exits 1. When stdout is
//! closed (`grapevine ring | head -1`) a command stops quietly with exit code 0 (see
//! [`output`]).
//! `node` serves the admin protocol described in [`admin`], and with `--http` the
//! web view described in [`web`].

/// mimalloc returns freed pages to the OS soon after they empty, so a node's resident
/// memory follows the state it holds: after a flood's owners are forgotten it shrinks
/// (glibc's malloc keeps freed chunks in the middle of its heap). See the RSS test in
/// core/tests/bounds.rs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod app;
mod demo;
mod dump;
mod keys;
mod metrics;
mod node;
mod ops;
mod output;
mod query;
mod replay;
mod runtime;
mod simulate;
mod store;
mod verbs;
mod web;

use std::fmt;
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use grapevine::Config;

/// Command-line interface of the `grapevine` binary.
#[derive(Debug, Parser)]
#[command(
    name = "grapevine",
    version,
    about = "Grapevine gossip cluster: run a node, inspect one, or run a local demo."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a node until interrupted (Ctrl-C or SIGTERM stop it gracefully, keeping
    /// its ranges).
    Node(node::NodeArgs),
    /// Print the cluster as a node sees it, like `nodetool status`: state, name,
    /// address, rack, datacenter, tokens and shares.
    Status(query::StatusArgs),
    /// Print the members a node knows (those that left only with --all).
    Members(query::MembersArgs),
    /// Print a node's token ring: who owns which share of the keys.
    Ring(query::QueryArgs),
    /// Print a node's counters.
    Stats(query::QueryArgs),
    /// Remove a dead node from the ring by name, through any live node: its ranges
    /// move to the others.
    Removenode(query::RemoveArgs),
    /// Decommission a node: hand its ranges to the others, then stop it.
    Decommission(query::QueryArgs),
    /// Set a key in a node's own gossip state (`--node`).
    Set(verbs::SetArgs),
    /// Read a key: from a node's gossip state (`--node`, `--of`), or from the
    /// cluster's store through any node (`--via`).
    Get(verbs::GetArgs),
    /// Delete a key from a node's own gossip state.
    Delete(verbs::DeleteArgs),
    /// List the keys of a node's gossip state (`--of` another node's, as it holds them).
    State(verbs::StateArgs),
    /// Send a request for a key through any node; print who served it, by which
    /// path (local, forwarded, failover) and how fast.
    Request(verbs::RequestArgs),
    /// Write a value to the cluster's store through any node: it goes to every live
    /// replica of the key.
    Put(verbs::PutArgs),
    /// List or rotate a running node's encryption keys (install, use, remove).
    Keys(keys::KeysArgs),
    /// Print a running node's inner state: members with suspicions, local health,
    /// rumour queue, sync root, ring and placement, requests in flight.
    Dump(dump::DumpArgs),
    /// Re-run a node's core from its flight log (`node --record DIR`) and check
    /// every output against the log, byte for byte.
    Replay(replay::ReplayArgs),
    /// Run the deterministic simulator: N nodes on a virtual network with loss,
    /// latency, crashes and partitions; print a summary and write an SVG.
    Simulate(simulate::SimulateArgs),
    /// Serve the web view on a flight log (`node --record`, `simulate --record`):
    /// the page scrubs through the node's state over time.
    Web(web::WebArgs),
    /// Start a cluster in this process on 127.0.0.1, route requests, stop a node
    /// and show its detection and the fail-over.
    Demo(demo::DemoArgs),
}

/// Which runtime drives a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RuntimeKind {
    /// One thread on a blocking std::net::UdpSocket.
    Std,
    /// A tokio task (feature `tokio`).
    Tokio,
    /// A smol task (feature `smol`).
    Smol,
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeKind::Std => "std",
            RuntimeKind::Tokio => "tokio",
            RuntimeKind::Smol => "smol",
        })
    }
}

/// Protocol timing presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Profile {
    /// `Config::lan`: probe every 1 s, gossip every 1 s.
    Lan,
    /// `Config::wan`: probe every 5 s, gossip every 1.5 s.
    Wan,
    /// Fast timers for demos and tests: probe and gossip every 200 ms.
    Fast,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Lan => "lan",
            Profile::Wan => "wan",
            Profile::Fast => "fast",
        })
    }
}

impl Profile {
    fn config(self, cluster: &str) -> Config {
        match self {
            Profile::Lan => Config::lan(cluster),
            Profile::Wan => Config::wan(cluster),
            Profile::Fast => {
                let mut config = Config::lan(cluster);
                config.probe_interval = Duration::from_millis(200);
                config.probe_timeout = Duration::from_millis(100);
                config.gossip_interval = Duration::from_millis(200);
                config.request_timeout = Duration::from_millis(300);
                config
            }
        }
    }
}

/// Options shared by commands that start nodes.
#[derive(Debug, Args, Clone)]
struct ClusterArgs {
    /// The runtime that drives the node(s).
    #[arg(long, value_enum, default_value_t = RuntimeKind::Std)]
    runtime: RuntimeKind,
    /// The cluster name: nodes of different clusters ignore each other.
    #[arg(long, default_value = "grapevine")]
    cluster: String,
    /// Protocol timing preset.
    #[arg(long, value_enum, default_value_t = Profile::Lan)]
    profile: Profile,
}

/// An error for the user: printed as one line; exit code 2 for bad usage, 1 for a
/// failure at run time.
#[derive(Debug)]
struct CliError {
    message: String,
    usage: bool,
}

impl CliError {
    /// A failure at run time (exit code 1).
    fn failure(message: String) -> Self {
        CliError {
            message,
            usage: false,
        }
    }

    /// Bad usage (exit code 2).
    fn usage(message: String) -> Self {
        CliError {
            message,
            usage: true,
        }
    }

    fn exit_code(&self) -> ExitCode {
        ExitCode::from(if self.usage { 2 } else { 1 })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<grapevine_driver::RuntimeError> for CliError {
    fn from(e: grapevine_driver::RuntimeError) -> Self {
        match e {
            grapevine_driver::RuntimeError::Config(_) => CliError::usage(e.to_string()),
            e => CliError::failure(e.to_string()),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::failure(e.to_string())
    }
}

/// Result of a command.
type CliResult<T = ()> = Result<T, CliError>;

/// Builds a run-time [`CliError`] (exit code 1) from format arguments.
macro_rules! cli_error {
    ($($arg:tt)*) => { $crate::CliError::failure(format!($($arg)*)) };
}
pub(crate) use cli_error;

/// Builds a usage [`CliError`] (exit code 2) from format arguments.
macro_rules! usage_error {
    ($($arg:tt)*) => { $crate::CliError::usage(format!($($arg)*)) };
}
pub(crate) use usage_error;

/// Resolves `host:port` (or `ip:port`) to one socket address: the first the
/// resolver gives.
fn resolve(text: &str) -> CliResult<SocketAddr> {
    resolve_all(text).map(|addrs| addrs[0])
}

/// Resolves `host:port` (or `ip:port`) to every address it names, in the resolver's
/// order (never empty): `localhost` may name `::1` and `127.0.0.1`, and a client
/// tries each until one answers.
fn resolve_all(text: &str) -> CliResult<Vec<SocketAddr>> {
    if let Ok(addr) = text.parse() {
        return Ok(vec![addr]);
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| usage_error!("cannot resolve address {text:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(usage_error!("address {text:?} resolves to nothing"));
    }
    Ok(addrs)
}

/// `addr` moved to the loopback address of its family (where a node's admin interface
/// listens unless `--admin` says otherwise).
fn loopback(addr: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = if addr.is_ipv4() {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        std::net::Ipv6Addr::LOCALHOST.into()
    };
    SocketAddr::new(ip, addr.port())
}

/// The admin address that goes with a node address: its port plus 1000 (port 0 stays 0).
fn default_admin(node: SocketAddr) -> CliResult<SocketAddr> {
    let port = match node.port() {
        0 => 0,
        p => p.checked_add(admin::PORT_OFFSET).ok_or_else(|| {
            usage_error!(
                "node port {p} + {} is not a port: pass --admin",
                admin::PORT_OFFSET
            )
        })?,
    };
    Ok(SocketAddr::new(node.ip(), port))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: the error and its hints (possible values...), not the usage block.
            let text = e.render().to_string();
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .collect();
            eprintln!("{} (see --help)", line.join(" "));
            return ExitCode::from(2);
        }
    };
    init_tracing();
    let result = match cli.command {
        Cmd::Node(args) => node::run(args),
        Cmd::Status(args) => query::status(args),
        Cmd::Members(args) => query::members(args),
        Cmd::Ring(args) => query::ring(args),
        Cmd::Stats(args) => query::stats(args),
        Cmd::Removenode(args) => query::removenode(args),
        Cmd::Decommission(args) => query::decommission(args),
        Cmd::Set(args) => verbs::set(args),
        Cmd::Get(args) => verbs::get(args),
        Cmd::Delete(args) => verbs::delete(args),
        Cmd::State(args) => verbs::state(args),
        Cmd::Request(args) => verbs::request(args),
        Cmd::Put(args) => verbs::put(args),
        Cmd::Keys(args) => keys::run(args),
        Cmd::Demo(args) => demo::run(args),
        Cmd::Dump(args) => dump::run(args),
        Cmd::Replay(args) => replay::run(args),
        Cmd::Simulate(args) => simulate::run(args),
        Cmd::Web(args) => web::run_replay(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
