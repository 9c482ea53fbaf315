//! The node's inner state as JSON: the one view `grapevine dump` (live, through the
//! admin port) and `grapevine replay --dump-at` (from a flight log) both print.

use grapevine::dump::RequestDump;
use serde_json::{Value, json};

use crate::CoreNode;

/// Milliseconds from `now` to `at` (negative when `at` is past).
fn ms_from(now: grapevine::Instant, at: grapevine::Instant) -> f64 {
    (at.as_nanos() as f64 - now.as_nanos() as f64) / 1e6
}

/// The node's state at `now` (the core's clock) as JSON. Deadlines are given in
/// milliseconds from `now` (`*_in_ms`), past changes in milliseconds ago (`*_ago_ms`);
/// digests are 16 hex digits.
///
/// ```text
/// {"node", "name", "generation", "incarnation", "now_ns", "placement": {...},
///  "health": {"multiplier", "max"}, "sync_root", "ring": {"digest", "tokens", "ready"},
///  "members": [{"addr", "name", "generation", "incarnation", "state", "topology",
///               "confirmed", "since_ago_ms", "local",
///               "suspicion": {"deadline_in_ms", "confirmations", "expected"} | null}],
///  "rumours": {"retransmit_limit", "classes": [{"class", "queued", "bytes",
///              "transmits": [{"sent", "rumours"}]}]},
///  "records": [{"name", "addr", "status", "datacenter", "rack", "epoch", "tokens"}],
///  "requests": [{"id", "kind": "outgoing"|"incoming", "target"|"origin", "tried",
///                "deadline_in_ms"}],
///  "value_transfers": {"fetching", "serving"}}
/// ```
pub fn dump_json(node: &CoreNode, now: grapevine::Instant) -> Value {
    let d = node.dump();
    let members: Vec<Value> = d
        .members
        .iter()
        .map(|m| {
            json!({
                "addr": m.id.addr.to_string(),
                "name": m.name,
                "generation": m.id.generation,
                "incarnation": m.incarnation,
                "state": m.status.to_string(),
                "topology": m.topology.map(|t| t.to_string()),
                "confirmed": m.confirmed,
                "since_ago_ms": if m.local { Value::Null } else { json!(-ms_from(now, m.since)) },
                "local": m.local,
                "suspicion": m.suspicion.map(|s| json!({
                    "deadline_in_ms": ms_from(now, s.deadline),
                    "started_ago_ms": -ms_from(now, s.start),
                    "confirmations": s.confirmations,
                    "expected": s.expected,
                })),
            })
        })
        .collect();
    let classes: Vec<Value> = d
        .rumours
        .iter()
        .map(|c| {
            json!({
                "class": c.class,
                "queued": c.queued,
                "bytes": c.bytes,
                "transmits": c.transmits.iter().map(|(sent, n)| json!({"sent": sent, "rumours": n})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let records: Vec<Value> = d
        .records
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "addr": r.addr.to_string(),
                "status": r.status.to_string(),
                "datacenter": r.location.datacenter,
                "rack": r.location.rack,
                "epoch": r.epoch,
                "tokens": r.tokens,
            })
        })
        .collect();
    let requests: Vec<Value> = d
        .requests
        .iter()
        .map(|r| match r {
            RequestDump::Outgoing {
                id,
                target,
                tried,
                deadline,
            } => json!({
                "id": id, "kind": "outgoing", "target": target.to_string(), "tried": tried,
                "deadline_in_ms": ms_from(now, *deadline),
            }),
            RequestDump::Incoming {
                id,
                origin,
                deadline,
            } => json!({
                "id": id, "kind": "incoming", "origin": origin.map(|o| o.to_string()),
                "deadline_in_ms": ms_from(now, *deadline),
            }),
            _ => json!({}),
        })
        .collect();
    json!({
        "node": d.id.addr.to_string(),
        "name": d.placement.name,
        "generation": d.id.generation,
        "incarnation": d.incarnation,
        "now_ns": now.as_nanos(),
        "placement": {
            "status": d.placement.status.map(|s| s.to_string()),
            "datacenter": d.placement.location.datacenter,
            "rack": d.placement.location.rack,
            "epoch": d.placement.epoch,
            "tokens": d.placement.tokens.len(),
        },
        "health": {"multiplier": d.health.0, "max": d.health.1},
        "sync_root": format!("{:016x}", d.sync_root),
        "ring": {"digest": format!("{:016x}", d.ring_digest), "tokens": d.ring_tokens, "ready": d.ready},
        "members": members,
        "rumours": {"retransmit_limit": d.retransmit_limit, "classes": classes},
        "records": records,
        "requests": requests,
        "value_transfers": {"fetching": d.value_transfers.0, "serving": d.value_transfers.1},
    })
}
