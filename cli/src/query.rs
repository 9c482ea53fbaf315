//! `grapevine status`, `members`, `ring`, `stats`, `removenode` and `decommission`:
//! ask a running node through its admin interface.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::output::outln;
use crate::{CliResult, admin, cli_error, default_admin, loopback, resolve_all};

/// Arguments of `grapevine status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    query: QueryArgs,
    /// Also show members that left or were removed.
    #[arg(long)]
    all: bool,
}

/// Arguments of `grapevine removenode`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The dead node's name (see `grapevine status`).
    #[arg(value_name = "NAME")]
    name: String,
    #[command(flatten)]
    query: QueryArgs,
}

/// Arguments of `grapevine members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    #[command(flatten)]
    query: QueryArgs,
    /// Show only members in these states (repeat, or separate with commas).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STATE")]
    status: Vec<MemberState>,
    /// Also show members that left (kept as tombstones for an hour, so that a stale
    /// rumour cannot revive them); hidden by default.
    #[arg(long)]
    all: bool,
}

/// A member's liveness, as `grapevine members --status` filters it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed probes, not yet declared dead.
    Suspect,
    /// Declared dead (crashed or partitioned away).
    Dead,
    /// Left gracefully.
    Left,
}

impl MemberState {
    fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        }
    }
}

/// Arguments of `grapevine ring`, `stats`, `decommission`, and the node part of the
/// key-value commands.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The node's UDP address (IP or host name); its admin interface is at port +
    /// 1000 unless --admin says otherwise.
    #[arg(long, value_name = "ADDR")]
    pub node: String,
    /// The node's admin address, if it was started with --admin.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Print the node's JSON reply instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn admin_addr(args: &QueryArgs) -> CliResult<SocketAddr> {
    admin_for(&args.node, args.admin.as_deref())
}

/// The admin address of the node at `node` (`admin` when given, else its port +
/// 1000: at the node's address if it was started with `--admin` there, else on
/// loopback, where a node's admin interface listens by default). A host name may name
/// several addresses (`localhost`: `::1` and `127.0.0.1`); the first that accepts a
/// connection is the one.
pub fn admin_for(node: &str, admin: Option<&str>) -> CliResult<SocketAddr> {
    let candidates = match admin {
        Some(admin) => resolve_all(admin)?,
        None => {
            let mut candidates = Vec::new();
            for addr in resolve_all(node)? {
                for candidate in [default_admin(addr)?, loopback(default_admin(addr)?)] {
                    if !candidates.contains(&candidate) {
                        candidates.push(candidate);
                    }
                }
            }
            candidates
        }
    };
    if let [only] = candidates.as_slice() {
        return Ok(*only);
    }
    candidates
        .iter()
        .copied()
        .find(|addr| {
            std::net::TcpStream::connect_timeout(addr, std::time::Duration::from_secs(1)).is_ok()
        })
        .ok_or_else(|| {
            let list: Vec<String> = candidates.iter().map(ToString::to_string).collect();
            cli_error!(
                "cannot reach the admin interface at any of {} (is `grapevine node` running there?)",
                list.join(", ")
            )
        })
}

/// Prints a JSON reply, pretty.
pub fn print_json(value: &Value) -> CliResult<ExitCode> {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// The string at `key`, or `?`.
pub fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("?")
}

fn number(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::Number(n)) => n.to_string(),
        _ => "-".to_owned(),
    }
}

/// `grapevine members`: a table of address, state, incarnation, generation, last
/// heard; members that left are hidden unless `--all` or `--status left`.
pub fn members(args: MembersArgs) -> CliResult<ExitCode> {
    let mut reply = admin::query(admin_addr(&args.query)?, "members")?;
    if let Some(members) = reply.get_mut("members").and_then(Value::as_array_mut) {
        members.retain(|m| {
            let state = text(m, "state");
            if args.status.is_empty() {
                args.all || state != MemberState::Left.as_str()
            } else {
                args.status.iter().any(|s| s.as_str() == state)
            }
        });
    }
    if args.query.json {
        return print_json(&reply);
    }
    let empty = Vec::new();
    let members = reply
        .get("members")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    outln!(
        "{:<24} {:<18} {:<8} {:>11} {:>18} {:>12}",
        "ADDRESS",
        "NAME",
        "STATE",
        "INCARNATION",
        "GENERATION",
        "LAST HEARD"
    );
    for m in members {
        let local = m.get("local").and_then(Value::as_bool).unwrap_or(false);
        let heard = if local {
            "(self)".to_owned()
        } else {
            match m.get("last_heard_ms").and_then(Value::as_u64) {
                Some(ms) => format!("{:.1}s ago", ms as f64 / 1000.0),
                None => "never".to_owned(),
            }
        };
        outln!(
            "{:<24} {:<18} {:<8} {:>11} {:>18} {:>12}",
            text(m, "addr"),
            m.get("name").and_then(Value::as_str).unwrap_or("-"),
            text(m, "state"),
            number(m, "incarnation"),
            number(m, "generation"),
            heard
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn share(value: &Value, key: &str) -> f64 {
    value.get(key).and_then(Value::as_f64).unwrap_or(0.0) * 100.0
}

/// `grapevine status`: a `nodetool status`-style table, sorted by name.
pub fn status(args: StatusArgs) -> CliResult<ExitCode> {
    let mut reply = admin::query(admin_addr(&args.query)?, "status")?;
    if let Some(members) = reply.get_mut("members").and_then(Value::as_array_mut) {
        if !args.all {
            members.retain(|m| !matches!(text(m, "topology"), "left" | "removed"));
        }
        members.sort_by(|a, b| text(a, "name").cmp(text(b, "name")));
    }
    if args.query.json {
        return print_json(&reply);
    }
    let empty = Vec::new();
    let members = reply
        .get("members")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    outln!(
        "ring digest {} as seen by {} ({}), {}; replication factor {}",
        text(&reply, "ring_digest"),
        text(&reply, "name"),
        text(&reply, "node"),
        if reply.get("ready").and_then(Value::as_bool) == Some(true) {
            "ready"
        } else {
            "not ready"
        },
        number(&reply, "replication_factor"),
    );
    outln!("Status=Up/Down  State=Normal/Joining/Leaving/left(X)/Removed");
    outln!(
        "{:<3} {:<18} {:<22} {:<8} {:<6} {:>6} {:>7} {:>9}",
        "--",
        "NAME",
        "ADDRESS",
        "RACK",
        "DC",
        "TOKENS",
        "OWNS",
        "RF SHARE"
    );
    for m in members {
        outln!(
            "{:<3} {:<18} {:<22} {:<8} {:<6} {:>6} {:>6.1}% {:>8.1}%",
            text(m, "status"),
            text(m, "name"),
            text(m, "addr"),
            text(m, "rack"),
            text(m, "datacenter"),
            number(m, "tokens"),
            share(m, "owns"),
            share(m, "replica_share"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `grapevine stats`: the node's counters.
pub fn stats(args: QueryArgs) -> CliResult<ExitCode> {
    let reply = admin::query(admin_addr(&args)?, "stats")?;
    if args.json {
        return print_json(&reply);
    }
    if let Value::Object(map) = &reply {
        for (key, value) in map {
            match value {
                // Nested counters (drops by reason) print one per line.
                Value::Object(inner) => {
                    for (sub, v) in inner {
                        outln!("{:<34} {v}", format!("{key}.{sub}"));
                    }
                }
                _ => {
                    let value = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned);
                    outln!("{key:<34} {value}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `grapevine removenode NAME`: exit 0 once the node accepted the removal, 1 with
/// the reason when it refused (not dead, unknown, itself, already gone).
pub fn removenode(args: RemoveArgs) -> CliResult<ExitCode> {
    let admin = admin_addr(&args.query)?;
    let reply = admin::query(admin, &format!("removenode {}", args.name))?;
    if args.query.json {
        return print_json(&reply);
    }
    outln!(
        "removed {}: its ranges move to the other nodes",
        text(&reply, "removed")
    );
    Ok(ExitCode::SUCCESS)
}

/// `grapevine decommission`: the node hands its ranges over, then stops.
pub fn decommission(args: QueryArgs) -> CliResult<ExitCode> {
    let admin = admin_addr(&args)?;
    let reply = admin::query_within(admin, "decommission", admin::DECOMMISSION_TIMEOUT)?;
    if args.json {
        return print_json(&reply);
    }
    outln!(
        "decommissioned {}: its ranges moved to the other nodes, and it stopped",
        text(&reply, "decommissioned")
    );
    Ok(ExitCode::SUCCESS)
}

/// `grapevine ring`: each member's state, tokens and share of the key space (use
/// `--json` for the token list itself).
pub fn ring(args: QueryArgs) -> CliResult<ExitCode> {
    let reply = admin::query(admin_addr(&args)?, "ring")?;
    if args.json {
        return print_json(&reply);
    }
    let empty = Vec::new();
    let owners = reply
        .get("owners")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let tokens = reply
        .get("tokens")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    outln!(
        "ring digest {} as seen by {} ({}): {} tokens, {} owners, replication factor {}",
        text(&reply, "ring_digest"),
        text(&reply, "name"),
        text(&reply, "node"),
        tokens.len(),
        owners.len(),
        number(&reply, "replication_factor"),
    );
    outln!(
        "{:<18} {:<22} {:<8} {:<8} {:>7} {:>8} {:>9}",
        "OWNER",
        "ADDRESS",
        "STATE",
        "TOPOLOGY",
        "TOKENS",
        "OWNS",
        "REPLICAS"
    );
    for o in owners {
        outln!(
            "{:<18} {:<22} {:<8} {:<8} {:>7} {:>7.1}% {:>8.1}%",
            text(o, "name"),
            text(o, "addr"),
            text(o, "state"),
            text(o, "topology"),
            number(o, "tokens"),
            share(o, "primary"),
            share(o, "replica"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
