//! `grapevine members` and `grapevine ring`: ask a running node through its admin interface.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::{CliResult, admin, default_admin, resolve};

/// Arguments of `grapevine members` and `grapevine ring`.
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
        "{:<24} {:<8} {:>11} {:>18} {:>12}",
        "ADDRESS", "STATE", "INCARNATION", "GENERATION", "LAST HEARD"
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
            "{:<24} {:<8} {:>11} {:>18} {:>12}",
            text(m, "addr"),
            text(m, "state"),
            number(m, "incarnation"),
            number(m, "generation"),
            heard
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `grapevine ring`: each node's tokens and share of the key space (use `--json`
/// for the token list itself).
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
        "ring digest {} as seen by {}: {} tokens, {} owners, replication factor {}",
        text(&reply, "ring_digest"),
        text(&reply, "node"),
        tokens.len(),
        owners.len(),
        number(&reply, "replication_factor"),
    );
    println!(
        "{:<24} {:>7} {:>8} {:>9}",
        "OWNER", "TOKENS", "OWNS", "REPLICAS"
    );
    for o in owners {
        let share = |key: &str| o.get(key).and_then(Value::as_f64).unwrap_or(0.0) * 100.0;
        println!(
            "{:<24} {:>7} {:>7.1}% {:>8.1}%",
            text(o, "addr"),
            number(o, "tokens"),
            share("primary"),
            share("replica"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
