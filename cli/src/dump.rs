//! `grapevine dump NODE`: a running node's inner state, through its admin port; the
//! same view `grapevine replay --dump-at` prints from a flight log.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use grapevine_driver::CoreNode;
use serde_json::Value;

use crate::{CliResult, admin, default_admin, resolve};

/// Arguments of `grapevine dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The node's UDP address; its admin interface is at port + 1000 unless --admin
    /// says otherwise.
    #[arg(value_name = "NODE")]
    node: String,
    /// The node's admin address, if it was started with --admin.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Print the JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

/// Runs `grapevine dump`.
pub fn run(args: DumpArgs) -> CliResult<ExitCode> {
    let admin_addr = match args.admin {
        Some(addr) => addr,
        None => default_admin(resolve(&args.node)?)?,
    };
    let reply = admin::query(admin_addr, "dump")?;
    print(&reply, args.json);
    Ok(ExitCode::SUCCESS)
}

/// Prints the state of a replayed node at `now_ns`.
pub fn print_replayed(node: &CoreNode, now_ns: u64, json: bool) -> CliResult {
    let value = grapevine_driver::dump::dump_json(node, grapevine::Instant::from_nanos(now_ns));
    print(&value, json);
    Ok(())
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn n(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(x)) => match x.as_f64() {
            Some(f) if x.is_f64() => format!("{f:.0}"),
            _ => x.to_string(),
        },
        _ => "-".into(),
    }
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Prints a dump document as JSON or as tables.
pub fn print(v: &Value, json: bool) {
    let mut out = String::new();
    write_to(&mut out, v, json);
    // A closed pipe (`| head`) ends the command quietly, as every command does.
    if let Err(e) = std::io::stdout().lock().write_all(out.as_bytes()) {
        crate::output::write_failed(e);
    }
}

fn write_to(out: &mut String, v: &Value, json: bool) {
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        );
        return;
    }
    let health = &v["health"];
    let ring = &v["ring"];
    let placement = &v["placement"];
    let _ = writeln!(
        out,
        "node {} ({}), generation {}, incarnation {}, {} in {}/{}, {} tokens",
        s(v, "name"),
        s(v, "node"),
        n(v, "generation"),
        n(v, "incarnation"),
        s(placement, "status"),
        s(placement, "datacenter"),
        s(placement, "rack"),
        n(placement, "tokens"),
    );
    let _ = writeln!(
        out,
        "local health {}/{}   sync root {}   ring digest {} ({} tokens, {})",
        n(health, "multiplier"),
        n(health, "max"),
        s(v, "sync_root"),
        s(ring, "digest"),
        n(ring, "tokens"),
        if ring.get("ready").and_then(Value::as_bool) == Some(true) {
            "ready"
        } else {
            "not ready"
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<22} {:<18} {:>18} {:>6} {:<7} {:<8} {:>5} {:>10}  SUSPICION",
        "MEMBER", "NAME", "GENERATION", "INC", "STATE", "TOPOLOGY", "CONF", "SINCE"
    );
    for m in list(v, "members") {
        let since = match m.get("since_ago_ms").and_then(Value::as_f64) {
            Some(ms) => format!("{:.1}s ago", ms / 1000.0),
            None => "(self)".into(),
        };
        let suspicion = match m.get("suspicion") {
            Some(sp) if sp.is_object() => format!(
                "dead in {:.0} ms, {}/{} confirmations",
                sp.get("deadline_in_ms")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0),
                n(sp, "confirmations"),
                n(sp, "expected")
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<22} {:<18} {:>18} {:>6} {:<7} {:<8} {:>5} {:>10}  {}",
            s(m, "addr"),
            s(m, "name"),
            n(m, "generation"),
            n(m, "incarnation"),
            s(m, "state"),
            s(m, "topology"),
            if m.get("confirmed").and_then(Value::as_bool) == Some(true) {
                "yes"
            } else {
                "no"
            },
            since,
            suspicion
        );
    }
    let rumours = &v["rumours"];
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<10} {:>7} {:>8}  TRANSMITS (sent×rumours; retired at {})",
        "RUMOURS",
        "QUEUED",
        "BYTES",
        n(rumours, "retransmit_limit")
    );
    for c in list(rumours, "classes") {
        let transmits: Vec<String> = list(c, "transmits")
            .iter()
            .map(|t| format!("{}×{}", n(t, "sent"), n(t, "rumours")))
            .collect();
        let _ = writeln!(
            out,
            "{:<10} {:>7} {:>8}  {}",
            s(c, "class"),
            n(c, "queued"),
            n(c, "bytes"),
            transmits.join(" ")
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<18} {:<22} {:<9} {:<6} {:<8} {:>8} {:>7}",
        "RECORD", "ADDRESS", "STATUS", "DC", "RACK", "EPOCH", "TOKENS"
    );
    for r in list(v, "records") {
        let _ = writeln!(
            out,
            "{:<18} {:<22} {:<9} {:<6} {:<8} {:>8} {:>7}",
            s(r, "name"),
            s(r, "addr"),
            s(r, "status"),
            s(r, "datacenter"),
            s(r, "rack"),
            n(r, "epoch"),
            n(r, "tokens")
        );
    }
    let requests = list(v, "requests");
    let _ = writeln!(out);
    if requests.is_empty() {
        let _ = writeln!(out, "requests in flight: none");
    } else {
        let _ = writeln!(
            out,
            "{:<8} {:<9} {:<22} {:>6} {:>12}",
            "REQUEST", "KIND", "PEER", "TRIED", "DEADLINE"
        );
        for r in requests {
            let peer = match s(r, "kind") {
                "outgoing" => s(r, "target"),
                _ => r.get("origin").and_then(Value::as_str).unwrap_or("(here)"),
            };
            let _ = writeln!(
                out,
                "{:<8} {:<9} {:<22} {:>6} {:>9} ms",
                n(r, "id"),
                s(r, "kind"),
                peer,
                n(r, "tried"),
                n(r, "deadline_in_ms")
            );
        }
    }
    let transfers = &v["value_transfers"];
    let _ = writeln!(
        out,
        "value transfers: {} fetching, {} serving",
        n(transfers, "fetching"),
        n(transfers, "serving")
    );
}
