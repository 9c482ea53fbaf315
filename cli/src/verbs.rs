//! `grapevine set`, `get`, `delete`, `state`, `request` and `put`: read and write a
//! running node's gossip state, send routed requests, and use the cluster's store,
//! through the admin protocol's JSON requests ([`crate::ops`]).
//!
//! Two flags name the node a command talks to, and they mean different things:
//!
//! - `--node ADDR`: the node whose own gossip state is written (`set`, `delete`), or
//!   whose view is read (`get`, `state`; add `--of NAME|ADDR` to read another
//!   member's state as this node holds it).
//! - `--via ADDR`: any node, through which a request (`request`) or a store
//!   operation (`put`, `get --via`) enters the cluster and is routed to the key's
//!   replicas.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::output::outln;
use crate::query::{QueryArgs, admin_for, print_json, text};
use crate::{CliResult, admin, cli_error, resolve};

/// How long a client waits for a routed request's answer: the node itself waits
/// up to 10 s for two replicas.
const ROUTED_TIMEOUT: Duration = Duration::from_secs(15);

/// Arguments of `grapevine set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The key (keys starting with `gv.` are reserved).
    key: String,
    /// The value, as text; at most the node's `max_value_size` bytes.
    value: String,
    #[command(flatten)]
    query: QueryArgs,
}

/// Arguments of `grapevine delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The key.
    key: String,
    #[command(flatten)]
    query: QueryArgs,
}

/// Arguments of `grapevine state`.
#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(flatten)]
    query: QueryArgs,
    /// Whose state: a member's name or address [default: the node's own].
    #[arg(long, value_name = "NAME|ADDR")]
    of: Option<String>,
    /// Also list keys under the reserved `gv.` prefix (the protocol keeps none there
    /// today; a newer peer might).
    #[arg(long)]
    all: bool,
}

/// Arguments of `grapevine get`: a gossip-state read with `--node`, or a store read
/// with `--via`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key.
    key: String,
    /// Read the key from this node's gossip state (or, with --of, from another
    /// member's state as this node holds it).
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "via",
        conflicts_with = "via"
    )]
    node: Option<String>,
    /// Whose state to read with --node: a member's name or address [default: the node's own].
    #[arg(long, value_name = "NAME|ADDR", conflicts_with = "via")]
    of: Option<String>,
    /// Read the key from the cluster's store, entering through this node (any node):
    /// the first live replica answers.
    #[arg(long, value_name = "ADDR")]
    via: Option<String>,
    /// The admin address of the --node or --via node, if it was started with --admin.
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Print the node's JSON reply.
    #[arg(long)]
    json: bool,
}

/// Arguments of the commands that enter the cluster through a node (`request`, `put`).
#[derive(Debug, Args)]
pub struct ViaArgs {
    /// The node the command enters through: any node.
    #[arg(long, value_name = "ADDR")]
    via: String,
    /// Its admin address, if it was started with --admin.
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Print the node's JSON reply.
    #[arg(long)]
    json: bool,
}

/// Arguments of `grapevine request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The key: it picks the replicas that serve the request.
    key: String,
    /// The payload, as text.
    payload: String,
    #[command(flatten)]
    via: ViaArgs,
}

/// Arguments of `grapevine put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key.
    key: String,
    /// The value, as text.
    value: String,
    #[command(flatten)]
    via: ViaArgs,
}

/// Sends a JSON admin request of version [`admin::VERSION`].
fn ask(admin_addr: SocketAddr, mut request: Value, timeout: Duration) -> CliResult<Value> {
    request["v"] = json!(admin::VERSION);
    admin::query_within(admin_addr, &request.to_string(), timeout)
}

/// `--of` as the node understands it: a member's name as given, or an address
/// resolved here (so host names work).
fn owner(of: Option<&str>) -> CliResult<Value> {
    Ok(match of {
        None => Value::Null,
        Some(addr) if addr.contains(':') => json!(resolve(addr)?.to_string()),
        Some(name) => json!(name),
    })
}

/// A node or owner as `NAME (ADDR)`, or `ADDR` without a name.
fn who(value: &Value) -> String {
    match value.get("name").and_then(Value::as_str) {
        Some(name) => format!("{name} ({})", text(value, "addr")),
        None => text(value, "addr").to_owned(),
    }
}

/// `grapevine set KEY VALUE --node ADDR`.
pub fn set(args: SetArgs) -> CliResult<ExitCode> {
    let admin = admin_for(&args.query.node, args.query.admin.as_deref())?;
    let reply = ask(
        admin,
        json!({ "op": "set", "key": args.key, "value": args.value }),
        admin::IO_TIMEOUT,
    )?;
    if args.query.json {
        return print_json(&reply);
    }
    outln!(
        "set {:?} ({} bytes) in the state of {}; gossip spreads it",
        args.key,
        args.value.len(),
        text(&reply, "node")
    );
    Ok(ExitCode::SUCCESS)
}

/// `grapevine delete KEY --node ADDR`.
pub fn delete(args: DeleteArgs) -> CliResult<ExitCode> {
    let admin = admin_for(&args.query.node, args.query.admin.as_deref())?;
    let reply = ask(
        admin,
        json!({ "op": "delete", "key": args.key }),
        admin::IO_TIMEOUT,
    )?;
    if args.query.json {
        return print_json(&reply);
    }
    outln!(
        "deleted {:?} from the state of {}",
        args.key,
        text(&reply, "node")
    );
    Ok(ExitCode::SUCCESS)
}

/// `grapevine state --node ADDR [--of NAME|ADDR] [--all]`: a node's keys, versions
/// and values.
pub fn state(args: StateArgs) -> CliResult<ExitCode> {
    let admin = admin_for(&args.query.node, args.query.admin.as_deref())?;
    let mut reply = ask(
        admin,
        json!({ "op": "keys", "of": owner(args.of.as_deref())? }),
        admin::IO_TIMEOUT,
    )?;
    if !args.all
        && let Some(keys) = reply.get_mut("keys").and_then(Value::as_array_mut)
    {
        keys.retain(|k| !text(k, "key").starts_with(grapevine::state::RESERVED_PREFIX));
    }
    if args.query.json {
        return print_json(&reply);
    }
    let owner = reply.get("owner").cloned().unwrap_or(Value::Null);
    outln!(
        "state of {} as {} holds it",
        who(&owner),
        text(&reply, "node")
    );
    outln!("{:<24} {:>8} {:>6}  VALUE", "KEY", "VERSION", "BYTES");
    for k in reply
        .get("keys")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        outln!(
            "{:<24} {:>8} {:>6}  {}",
            text(k, "key"),
            k.get("version").and_then(Value::as_u64).unwrap_or(0),
            k.get("bytes").and_then(Value::as_u64).unwrap_or(0),
            text(k, "value")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `grapevine get KEY --node ADDR [--of ..]` or `grapevine get KEY --via ADDR`.
pub fn get(args: GetArgs) -> CliResult<ExitCode> {
    let (reply, value) = match (&args.node, &args.via) {
        (Some(node), _) => {
            let admin = admin_for(node, args.admin.as_deref())?;
            let reply = ask(
                admin,
                json!({ "op": "get", "key": args.key, "of": owner(args.of.as_deref())? }),
                admin::IO_TIMEOUT,
            )?;
            if reply["value"].is_null() {
                let owner = reply.get("owner").cloned().unwrap_or(Value::Null);
                return Err(cli_error!(
                    "no key {:?} in the state of {} as {} holds it",
                    args.key,
                    who(&owner),
                    text(&reply, "node")
                ));
            }
            let value = text(&reply, "value").to_owned();
            (reply, value)
        }
        (None, Some(via)) => {
            let admin = admin_for(via, args.admin.as_deref())?;
            let reply = ask(
                admin,
                json!({ "op": "store-get", "key": args.key }),
                ROUTED_TIMEOUT,
            )?;
            if reply["found"] != true {
                return Err(cli_error!(
                    "no value for {:?} (asked {}, {})",
                    args.key,
                    who(&reply["served_by"]),
                    text(&reply, "path")
                ));
            }
            let value = text(&reply, "value").to_owned();
            (reply, value)
        }
        (None, None) => return Err(crate::usage_error!("get needs --node or --via")),
    };
    if args.json {
        return print_json(&reply);
    }
    outln!("{value}");
    Ok(ExitCode::SUCCESS)
}

/// Milliseconds from the reply's `latency_us`.
fn millis(reply: &Value) -> f64 {
    reply.get("latency_us").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0
}

/// `grapevine request KEY PAYLOAD --via ADDR`.
pub fn request(args: RequestArgs) -> CliResult<ExitCode> {
    let admin = admin_for(&args.via.via, args.via.admin.as_deref())?;
    let reply = ask(
        admin,
        json!({ "op": "request", "key": args.key, "payload": args.payload }),
        ROUTED_TIMEOUT,
    )?;
    if args.via.json {
        return print_json(&reply);
    }
    outln!(
        "served by {}, {}, in {:.2} ms: {}",
        who(&reply["served_by"]),
        text(&reply, "path"),
        millis(&reply),
        text(&reply, "response")
    );
    Ok(ExitCode::SUCCESS)
}

/// `grapevine put KEY VALUE --via ADDR`.
pub fn put(args: PutArgs) -> CliResult<ExitCode> {
    let admin = admin_for(&args.via.via, args.via.admin.as_deref())?;
    let reply = ask(
        admin,
        json!({ "op": "put", "key": args.key, "value": args.value }),
        ROUTED_TIMEOUT,
    )?;
    if args.via.json {
        return print_json(&reply);
    }
    let replicas = reply
        .get("replicas")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let written: Vec<String> = replicas
        .iter()
        .filter(|r| r["written"] == true)
        .map(who)
        .collect();
    outln!(
        "put {:?} ({} bytes) on {} of {} replicas: {}",
        args.key,
        args.value.len(),
        written.len(),
        replicas.len(),
        written.join(", ")
    );
    for r in replicas.iter().filter(|r| r["written"] != true) {
        outln!("  not on {}: {}", who(r), text(r, "error"));
    }
    Ok(ExitCode::SUCCESS)
}
