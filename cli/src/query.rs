//! `grapevine status`, `members`, `ring`, `stats`, `removenode` and `decommission`:
//! ask a running node through its admin interface.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::{CliResult, admin, default_admin, resolve};

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

/// Arguments of `grapevine members`, `ring`, `stats` and `decommission`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The node's UDP address; its admin interface is at port + 1000 unless --admin says otherwise.
    #[arg(long, value_name = "ADDR")]
    node: String,
    /// The node's admin address, if it was started with --admin.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Print the node's JSON reply instead of a table.
    #[arg(long)]
    json: bool,
}

fn admin_addr(args: &QueryArgs) -> CliResult<SocketAddr> {
    match args.admin {
        Some(addr) => Ok(addr),
        None => default_admin(resolve(&args.node)?),
    }
}

fn print_json(value: &Value) -> CliResult<ExitCode> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
    Ok(ExitCode::SUCCESS)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("?")
}

fn number(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::Number(n)) => n.to_string(),
        _ => "-".to_owned(),
    }
}

/// `grapevine members`: a table of address, state, incarnation, generation, last heard.
pub fn members(args: QueryArgs) -> CliResult<ExitCode> {
    let reply = admin::query(admin_addr(&args)?, "members")?;
    if args.json {
        return print_json(&reply);
    }
    let empty = Vec::new();
    let members = reply
        .get("members")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    println!(
        "{:<24} {:<18} {:<8} {:>11} {:>18} {:>12}",
        "ADDRESS", "NAME", "STATE", "INCARNATION", "GENERATION", "LAST HEARD"
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
        println!(
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
    println!(
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
    println!("Status=Up/Down  State=Normal/Joining/Leaving/left(X)/Removed");
    println!(
        "{:<3} {:<18} {:<22} {:<8} {:<6} {:>6} {:>7} {:>9}",
        "--", "NAME", "ADDRESS", "RACK", "DC", "TOKENS", "OWNS", "RF SHARE"
    );
    for m in members {
        println!(
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
                        println!("{:<22} {v}", format!("{key}.{sub}"));
                    }
                }
                _ => {
                    let value = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned);
                    println!("{key:<22} {value}");
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
    println!(
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
    println!(
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
    println!(
        "ring digest {} as seen by {} ({}): {} tokens, {} owners, replication factor {}",
        text(&reply, "ring_digest"),
        text(&reply, "name"),
        text(&reply, "node"),
        tokens.len(),
        owners.len(),
        number(&reply, "replication_factor"),
    );
    println!(
        "{:<18} {:<22} {:<8} {:<8} {:>7} {:>8} {:>9}",
        "OWNER", "ADDRESS", "STATE", "TOPOLOGY", "TOKENS", "OWNS", "REPLICAS"
    );
    for o in owners {
        println!(
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
