//! The admin protocol: how `grapevine members` and `grapevine ring` talk to a running
//! `grapevine node`.
//!
//! A node listens on TCP at its admin address: `--admin ADDR`, or by default the
//! node's own IP with its UDP port plus [`PORT_OFFSET`] (1000). A client connects,
//! sends one line of text and reads one JSON document; then the node closes the
//! connection. It works with `nc`: `echo members | nc 127.0.0.1 8946`.
//!
//! | request      | reply |
//! |--------------|-------|
//! | `members`    | `{"node": ADDR, "members": [{"addr", "generation", "state", "incarnation", "last_heard_ms", "local"}]}` |
//! | `ring`       | `{"node", "ring_digest", "replication_factor", "owners": [{"addr", "tokens", "primary", "replica"}], "tokens": [{"token", "owner"}]}` |
//! | `stats`      | `{"node", "uptime_ms", "members_live", "members_known", "ring_digest", "packets_in", ...}` |
//! | `route KEY`  | `{"key", "token", "replicas": [{"addr", "generation", "state"}]}` |
//!
//! An unknown request gets `{"error": "..."}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::runtime::Node;
use crate::{CliResult, cli_error};

/// The default admin port is the node's UDP port plus this.
pub const PORT_OFFSET: u16 = 1000;

const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Binds the admin listener and serves it on a background thread. Returns the bound address.
pub fn serve(addr: SocketAddr, node: Node) -> CliResult<SocketAddr> {
    let listener =
        TcpListener::bind(addr).map_err(|e| cli_error!("cannot bind admin TCP {addr}: {e}"))?;
    let local = listener.local_addr()?;
    thread::Builder::new().name("admin".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    if let Err(e) = handle(stream, &node) {
                        tracing::debug!(error = %e, "admin connection failed");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "admin accept failed"),
            }
        }
    })?;
    Ok(local)
}

fn handle(stream: TcpStream, node: &Node) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(&stream).take(4096).read_line(&mut line)?;
    let reply = answer(line.trim(), node).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let mut stream = stream;
    writeln!(stream, "{reply}")?;
    stream.flush()
}

/// Answers one admin request.
pub fn answer(request: &str, node: &Node) -> CliResult<Value> {
    let (command, arg) = request.split_once(' ').unwrap_or((request, ""));
    match command {
        "members" => Ok(json!({
            "node": node.local_addr().to_string(),
            "members": members_json(node)?,
        })),
        "ring" => ring_json(node),
        "stats" => stats_json(node),
        "route" => route_json(node, arg.as_bytes()),
        other => Err(cli_error!(
            "unknown admin request {other:?} (expected members, ring, stats or route KEY)"
        )),
    }
}

fn members_json(node: &Node) -> CliResult<Value> {
    let mut members = node.members().wait()?;
    members.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(members
        .iter()
        .map(|m| {
            json!({
                "addr": m.id.addr.to_string(),
                "generation": m.id.generation,
                "state": m.state.to_string(),
                "incarnation": m.incarnation,
                "last_heard_ms": m.last_heard.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "local": m.local,
            })
        })
        .collect())
}

fn ring_json(node: &Node) -> CliResult<Value> {
    let ring = node.ring().wait()?;
    let owners: Vec<Value> = ring
        .ownership
        .iter()
        .map(|o| {
            json!({
                "addr": o.addr.to_string(),
                "tokens": o.tokens,
                "primary": o.primary,
                "replica": o.replica,
            })
        })
        .collect();
    let tokens: Vec<Value> = ring
        .tokens
        .iter()
        .map(|(token, addr)| json!({ "token": token, "owner": addr.to_string() }))
        .collect();
    Ok(json!({
        "node": node.local_addr().to_string(),
        "ring_digest": format!("{:016x}", ring.digest),
        "replication_factor": ring.replication_factor,
        "owners": owners,
        "tokens": tokens,
    }))
}

fn stats_json(node: &Node) -> CliResult<Value> {
    let s = node.stats().wait()?;
    Ok(json!({
        "node": node.local_addr().to_string(),
        "uptime_ms": u64::try_from(s.uptime.as_millis()).unwrap_or(u64::MAX),
        "members_live": s.members_live,
        "members_known": s.members_known,
        "ring_digest": format!("{:016x}", s.ring_digest),
        "packets_in": s.core.packets_in,
        "bytes_in": s.core.bytes_in,
        "packets_out": s.core.packets_out,
        "bytes_out": s.core.bytes_out,
        "drops": s.core.drops.total(),
        "probes": s.core.probes,
        "suspicions": s.core.suspicions,
        "deaths": s.core.deaths,
        "requests_local": s.core.requests_local,
        "requests_forwarded": s.core.requests_forwarded,
        "requests_failed_over": s.core.requests_failed_over,
        "events_dropped": s.events_dropped,
        "send_errors": s.send_errors,
    }))
}

fn route_json(node: &Node, key: &[u8]) -> CliResult<Value> {
    let route = node.route(key).wait()?;
    Ok(json!({
        "key": String::from_utf8_lossy(&route.key),
        "token": route.token,
        "replicas": route.replicas.iter().map(|r| json!({
            "addr": r.id.addr.to_string(),
            "generation": r.id.generation,
            "state": r.state.to_string(),
        })).collect::<Vec<_>>(),
    }))
}

/// Sends one admin request to `admin` and returns the reply (an `{"error"}` reply is an error).
pub fn query(admin: SocketAddr, request: &str) -> CliResult<Value> {
    let unreachable = |e: std::io::Error| {
        cli_error!(
            "cannot reach the admin interface at {admin}: {e} (is `grapevine node` running there?)"
        )
    };
    let mut stream = TcpStream::connect_timeout(&admin, IO_TIMEOUT).map_err(unreachable)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    writeln!(stream, "{request}").map_err(unreachable)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(unreachable)?;
    let value: Value = serde_json::from_str(&reply)
        .map_err(|e| cli_error!("bad reply from the admin interface at {admin}: {e}"))?;
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(cli_error!("{admin}: {error}"));
    }
    Ok(value)
}
