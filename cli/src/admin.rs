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
//! | `status`     | `{"node", "name", "ready", "ring_digest", "replication_factor", "members": [{"status", "name", "addr", "state", "topology", "datacenter", "rack", "tokens", "owns", "replica_share"}]}` |
//! | `members`    | `{"node": ADDR, "members": [{"name", "addr", "generation", "state", "incarnation", "last_heard_ms", "local"}]}` |
//! | `ring`       | `{"node", "name", "ring_digest", "replication_factor", "owners": [{"name", "addr", "state", "topology", "datacenter", "rack", "tokens", "primary", "replica"}], "tokens": [{"token", "owner"}]}` |
//! | `stats`      | `{"node", "name", "uptime_ms", "members_live", "members_known", "ring_digest", "packets_in", ..., "drops", "drops_by_reason": {..}, "health", "rumours_queued", "requests_local", "requests_forwarded", "requests_failed_over", "max_request_bytes", ...}` |
//! | `route KEY`  | `{"key", "token", "ring_digest", "replicas": [{"name", "addr", "generation", "state", "topology"}], "pending": [...]}` |
//! | `removenode NAME` | `{"removed": NAME}` |
//! | `decommission` | `{"decommissioned": NAME}`, once the node is Left (then it stops) |
//! | `dump`       | the node's inner state: see `grapevine_driver::dump::dump_json` |
//!
//! Requests that carry keys and values (`set`, `get`, `keys`, `delete`, `request`,
//! `put`, and the store's reads and replica writes) are one line of JSON with the
//! protocol version, `{"v": 1, "op": "set", "key": "k", "value": "v"}`: see
//! [`crate::ops`]. A node refuses a version it does not speak.
//!
//! The admin interface is unauthenticated: anyone who reaches it can read and write
//! state, remove nodes and decommission this one. Bind it (`--admin`) to an address
//! only trusted clients and the other nodes reach.
//!
//! `ring_digest` is the same value in `status`, `ring`, `stats` and `route` (the
//! core's `ring_digest()`), as 16 hex digits; a token's `owner` is a member's name;
//! `owns`/`primary` and `replica_share`/`replica` are fractions of the key space
//! (0 to 1). A refused or unknown request gets `{"error": "..."}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Sender;
use std::thread;
use std::time::Duration;

use grapevine_driver::{RingSnapshot, Status, Topology};

use serde_json::{Value, json};

use crate::runtime::Node;
use crate::store::Store;
use crate::{CliResult, cli_error};

/// The version of the admin protocol's JSON requests this build speaks.
pub const VERSION: u8 = 1;

/// The default admin port is the node's UDP port plus this.
pub const PORT_OFFSET: u16 = 1000;

/// How long the admin interface and its clients wait for one read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a client waits for a decommission's answer.
pub const DECOMMISSION_TIMEOUT: Duration = Duration::from_secs(120);

/// Binds the admin listener and serves it on a background thread. Returns the bound
/// address. After a decommission, `stop` tells the process to exit.
pub fn serve(
    addr: SocketAddr,
    node: Node,
    store: Store,
    stop: Sender<()>,
) -> CliResult<SocketAddr> {
    let listener =
        TcpListener::bind(addr).map_err(|e| cli_error!("cannot bind admin TCP {addr}: {e}"))?;
    let local = listener.local_addr()?;
    thread::Builder::new().name("admin".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    // One thread per connection: a decommission may take a while.
                    let (node, store, stop) = (node.clone(), store.clone(), stop.clone());
                    let _ = thread::Builder::new()
                        .name("admin-conn".into())
                        .spawn(move || {
                            if let Err(e) = handle(stream, &node, &store, &stop) {
                                tracing::debug!(error = %e, "admin connection failed");
                            }
                        });
                }
                Err(e) => tracing::debug!(error = %e, "admin accept failed"),
            }
        }
    })?;
    Ok(local)
}

fn handle(stream: TcpStream, node: &Node, store: &Store, stop: &Sender<()>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    // Room for a JSON request carrying a key and the largest value, escaped.
    let limit = 4096 + 8 * u64::try_from(store.max_value_size()).unwrap_or(u64::MAX / 16);
    BufReader::new(&stream).take(limit).read_line(&mut line)?;
    let reply = if !line.ends_with('\n') && line.len() as u64 >= limit {
        json!({ "error": format!(
            "request longer than {limit} bytes: values are at most {} bytes (max_value_size)",
            store.max_value_size()
        ) })
    } else if line.trim_start().starts_with('{') {
        crate::ops::answer(line.trim(), node, store)
            .unwrap_or_else(|e| json!({ "error": e.to_string() }))
    } else if line.trim() == "decommission" {
        tracing::info!("decommissioning: handing this node's ranges to the others");
        let reply = match node.decommission().wait() {
            Ok(()) => json!({ "decommissioned": node.name() }),
            Err(e) => json!({ "error": format!("decommission: {e}") }),
        };
        let _ = stop.send(());
        reply
    } else {
        answer(line.trim(), node).unwrap_or_else(|e| json!({ "error": e.to_string() }))
    };
    let mut stream = stream;
    writeln!(stream, "{reply}")?;
    stream.flush()
}

/// Answers one admin request.
pub fn answer(request: &str, node: &Node) -> CliResult<Value> {
    let (command, arg) = request.split_once(' ').unwrap_or((request, ""));
    match command {
        "status" => status_json(node),
        "members" => Ok(json!({
            "node": node.local_addr().to_string(),
            "members": members_json(node)?,
        })),
        "ring" => ring_json(node),
        "stats" => stats_json(node),
        "route" => route_json(node, arg.as_bytes()),
        "dump" => Ok(node.dump().wait()?),
        "removenode" if arg.trim().is_empty() => Err(cli_error!("removenode needs a NAME")),
        "removenode" => {
            let name = arg.trim();
            node.remove_node(name)
                .wait()
                .map_err(|e| cli_error!("cannot remove {name:?}: {e}"))?;
            tracing::info!(member = %name, "removed by an operator: its ranges move");
            Ok(json!({ "removed": name }))
        }
        other => Err(cli_error!(
            "unknown admin request {other:?} (expected status, members, ring, stats, route KEY, removenode NAME, dump, decommission or a JSON request)"
        )),
    }
}

/// A member's two-letter state, as `nodetool status` shows it: `U`p or `D`own, then
/// `N`ormal, `J`oining, `L`eaving, left (`X`) or `R`emoved.
pub fn two_letters(state: Status, topology: Topology) -> String {
    let up = if matches!(state, Status::Alive | Status::Suspect) {
        'U'
    } else {
        'D'
    };
    let t = match topology {
        Topology::Normal => 'N',
        Topology::Joining => 'J',
        Topology::Leaving => 'L',
        Topology::Left => 'X',
        Topology::Removed => 'R',
    };
    format!("{up}{t}")
}

fn digest(ring: &RingSnapshot) -> String {
    format!("{:016x}", ring.digest)
}

fn status_json(node: &Node) -> CliResult<Value> {
    let ring = node.ring().wait()?;
    let members: Vec<Value> = ring
        .ownership
        .iter()
        .map(|o| {
            json!({
                "status": two_letters(o.state, o.topology),
                "name": o.name,
                "addr": o.addr.to_string(),
                "state": o.state.to_string(),
                "topology": o.topology.to_string(),
                "datacenter": o.datacenter,
                "rack": o.rack,
                "tokens": o.tokens,
                "owns": o.primary,
                "replica_share": o.replica,
            })
        })
        .collect();
    Ok(json!({
        "node": node.local_addr().to_string(),
        "name": ring.name,
        "ready": ring.ready,
        "ring_digest": digest(&ring),
        "replication_factor": ring.replication_factor,
        "members": members,
    }))
}

fn members_json(node: &Node) -> CliResult<Value> {
    let mut members = node.members().wait()?;
    members.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(members
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
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
    Ok(ring_value(&node.ring().wait()?, node.local_addr()))
}

/// The `ring` reply for `ring`, the view of the node at `addr` (also the ring of a
/// replayed node, for `grapevine web --replay`).
pub fn ring_value(ring: &RingSnapshot, addr: impl std::fmt::Display) -> Value {
    let owners: Vec<Value> = ring
        .ownership
        .iter()
        .filter(|o| !o.topology.is_gone())
        .map(|o| {
            json!({
                "name": o.name,
                "addr": o.addr.to_string(),
                "state": o.state.to_string(),
                "topology": o.topology.to_string(),
                "datacenter": o.datacenter,
                "rack": o.rack,
                "tokens": o.tokens,
                "primary": o.primary,
                "replica": o.replica,
            })
        })
        .collect();
    let tokens: Vec<Value> = ring
        .tokens
        .iter()
        .map(|(token, name)| json!({ "token": token, "owner": name }))
        .collect();
    json!({
        "node": addr.to_string(),
        "name": ring.name,
        "ring_digest": digest(ring),
        "replication_factor": ring.replication_factor,
        "owners": owners,
        "tokens": tokens,
    })
}

fn stats_json(node: &Node) -> CliResult<Value> {
    let s = node.stats().wait()?;
    Ok(json!({
        "node": node.local_addr().to_string(),
        "name": node.name(),
        "uptime_ms": u64::try_from(s.uptime.as_millis()).unwrap_or(u64::MAX),
        "members_live": s.members_live,
        "members_known": s.members_known,
        "ring_digest": format!("{:016x}", s.ring_digest),
        "packets_in": s.core.packets_in,
        "bytes_in": s.core.bytes_in,
        "packets_out": s.core.packets_out,
        "bytes_out": s.core.bytes_out,
        "drops": s.core.drops.total(),
        "drops_by_reason": {
            "truncated": s.core.drops.truncated,
            "oversized": s.core.drops.oversized,
            "bad_magic": s.core.drops.bad_magic,
            "unsupported_version": s.core.drops.unsupported_version,
            "foreign_cluster": s.core.drops.foreign_cluster,
            "unauthenticated": s.core.drops.unauthenticated,
            "malformed": s.core.drops.malformed,
            "from_self": s.core.drops.from_self,
            "replayed": s.core.drops.replayed,
        },
        "claims_refused": s.core.claims_refused,
        "members_refused": s.core.members_refused,
        "members_evicted": s.core.members_evicted,
        "state_refused": s.core.state_refused,
        "rumours_evicted": s.core.rumours_evicted,
        "rumours_quieted": s.core.rumours_quieted,
        "probes": s.core.probes,
        "indirect_probes": s.core.indirect_probes,
        "nacks": s.core.nacks,
        "suspicions": s.core.suspicions,
        "refutations": s.core.refutations,
        "deaths": s.core.deaths,
        "syncs": s.core.syncs,
        "deltas_applied": s.core.deltas_applied,
        "requests_local": s.core.requests_local,
        "requests_forwarded": s.core.requests_forwarded,
        "requests_failed_over": s.core.requests_failed_over,
        "requests_duplicate": s.core.requests_duplicate,
        "responses_dropped": s.core.responses_dropped,
        "health": s.health,
        "rumours_queued": s.rumours_queued,
        "max_request_bytes": s.max_request_bytes,
        "events_dropped": s.events_dropped,
        "send_errors": s.send_errors,
        "recv_errors": s.recv_errors,
        "persist_errors": s.persist_errors,
    }))
}

fn route_json(node: &Node, key: &[u8]) -> CliResult<Value> {
    let route = node.route(key).wait()?;
    let replicas = |list: &[grapevine_driver::RouteReplica]| {
        list.iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "addr": r.id.addr.to_string(),
                    "generation": r.id.generation,
                    "state": r.state.to_string(),
                    "topology": r.topology.to_string(),
                })
            })
            .collect::<Vec<_>>()
    };
    Ok(json!({
        "key": String::from_utf8_lossy(&route.key),
        "token": route.token,
        "ring_digest": format!("{:016x}", route.ring_digest),
        "replicas": replicas(&route.replicas),
        "pending": replicas(&route.pending),
    }))
}

/// Sends one admin request to `admin` and returns the reply (an `{"error"}` reply is an error).
pub fn query(admin: SocketAddr, request: &str) -> CliResult<Value> {
    query_within(admin, request, IO_TIMEOUT)
}

/// [`query`], waiting at most `timeout` for the reply.
pub fn query_within(admin: SocketAddr, request: &str, timeout: Duration) -> CliResult<Value> {
    let unreachable = |e: std::io::Error| {
        cli_error!(
            "cannot reach the admin interface at {admin}: {e} (is `grapevine node` running there?)"
        )
    };
    let mut stream = TcpStream::connect_timeout(&admin, IO_TIMEOUT).map_err(unreachable)?;
    stream.set_read_timeout(Some(timeout))?;
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
