//! The admin protocol's JSON requests (version [`admin::VERSION`]): state reads and
//! writes, routed requests and the example store. A request is one line holding a
//! JSON object with `"v"` (the protocol version) and `"op"`; the reply is one JSON
//! document, or `{"error": "..."}`.
//!
//! | `op` | fields | reply |
//! |------|--------|-------|
//! | `set` | `key`, `value` | `{"node", "key", "bytes"}`: set in this node's own state |
//! | `delete` | `key` | `{"node", "key", "deleted": true}` |
//! | `get` | `key`, `of`? | `{"node", "owner": {"name", "addr"}, "key", "value"}` (`value` is `null` when missing) |
//! | `keys` | `of`? | `{"node", "owner": {"name", "addr"}, "keys": [{"key", "version", "bytes", "value"}]}` |
//! | `request` | `key`, `payload` | `{"key", "served_by": {"name", "addr"}, "path", "latency_us", "response"}` |
//! | `put` | `key`, `value` | `{"key", "bytes", "written", "replicas": [{"name", "addr", "pending", "written", "error"?}]}`: natural replicas in ring order, then pending ones |
//! | `store-get` | `key` | `{"key", "found", "value", "served_by": {"name", "addr"}, "path", "latency_us"}` |
//! | `keyring` | `action` (`list`, `install`, `use`, `remove`), `key` (base64, but for `list`) | `{"node", "primary", "keys"}`: key fingerprints, the primary first (see [`crate::keys`]); never the keys |
//!
//! `of` names the node whose state is read, as this node holds it: a member's name
//! or its `IP:port`; without it, this node's own state. `path` is `local`,
//! `forwarded` or `failover` (see [`crate::store::Path`]). Values are UTF-8 text; a
//! stored value that is not (a reserved `gv.` key's, say) is shown as
//! `hex:` followed by its bytes in hex.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::runtime::Node;
use crate::store::{Routed, Store};
use crate::{CliResult, admin, cli_error};

/// Answers one JSON admin request.
pub fn answer(line: &str, node: &Node, store: &Store) -> CliResult<Value> {
    let request: Value =
        serde_json::from_str(line).map_err(|e| cli_error!("bad JSON request: {e}"))?;
    let version = request.get("v").and_then(Value::as_u64);
    if version != Some(u64::from(admin::VERSION)) {
        return Err(cli_error!(
            "admin protocol version {} is not supported (this node speaks {})",
            version.map_or_else(|| "missing".to_owned(), |v| v.to_string()),
            admin::VERSION
        ));
    }
    let field = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| cli_error!("the request needs a string {name:?}"))
    };
    let op = field("op")?;
    let here = node.local_addr().to_string();
    match op {
        "set" => {
            let (key, value) = (field("key")?, field("value")?);
            node.set(key, value.as_bytes())
                .wait()
                .map_err(|e| cli_error!("cannot set {key:?}: {e}"))?;
            Ok(json!({ "node": here, "key": key, "bytes": value.len() }))
        }
        "delete" => {
            let key = field("key")?;
            node.delete(key)
                .wait()
                .map_err(|e| cli_error!("cannot delete {key:?}: {e}"))?;
            Ok(json!({ "node": here, "key": key, "deleted": true }))
        }
        "get" => {
            let key = field("key")?;
            let (name, addr) = owner(node, request.get("of"))?;
            let value = node.get(addr, key).wait()?;
            Ok(json!({
                "node": here,
                "owner": { "name": name, "addr": addr.to_string() },
                "key": key,
                "value": value.as_deref().map(text),
            }))
        }
        "keys" => {
            let (name, addr) = owner(node, request.get("of"))?;
            let keys: Vec<Value> = node
                .keys(addr)
                .wait()?
                .iter()
                .map(|e| {
                    json!({
                        "key": e.key,
                        "version": e.version,
                        "bytes": e.value.len(),
                        "value": text(&e.value),
                    })
                })
                .collect();
            Ok(json!({
                "node": here,
                "owner": { "name": name, "addr": addr.to_string() },
                "keys": keys,
            }))
        }
        "request" => {
            let (key, payload) = (field("key")?, field("payload")?);
            let routed = store.request(node, key.as_bytes(), payload.as_bytes().to_vec())?;
            let mut reply = routed_json(&routed);
            reply["key"] = json!(key);
            reply["response"] = json!(text(&routed.payload));
            Ok(reply)
        }
        "put" => {
            let (key, value) = (field("key")?, field("value")?);
            let replicas = store.put(node, key, value.as_bytes())?;
            let written = replicas.iter().filter(|r| r["written"] == true).count();
            Ok(json!({
                "key": key,
                "bytes": value.len(),
                "written": written,
                "replicas": replicas,
            }))
        }
        "store-get" => {
            let key = field("key")?;
            let (routed, value) = store.get(node, key)?;
            let mut reply = routed_json(&routed);
            reply["key"] = json!(key);
            reply["found"] = json!(value.is_some());
            reply["value"] = json!(value.as_deref().map(text));
            Ok(reply)
        }
        "keyring" => crate::keys::answer(
            field("action")?,
            request.get("key").and_then(Value::as_str),
            node,
        ),
        other => Err(cli_error!(
            "unknown op {other:?} (expected set, delete, get, keys, request, put, store-get or keyring)"
        )),
    }
}

/// Who answered a routed request, how, and how fast.
fn routed_json(routed: &Routed) -> Value {
    json!({
        "served_by": {
            "name": routed.served_by_name,
            "addr": routed.served_by.addr.to_string(),
        },
        "path": routed.path.as_str(),
        "latency_us": u64::try_from(routed.latency.as_micros()).unwrap_or(u64::MAX),
    })
}

/// A value as text: itself if it is UTF-8, else `hex:` and its bytes in hex.
fn text(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            let mut hex = String::with_capacity(4 + 2 * value.len());
            hex.push_str("hex:");
            for b in value {
                hex.push_str(&format!("{b:02x}"));
            }
            hex
        }
    }
}

/// The node named by `of` (a member's name or `IP:port`), or this node.
fn owner(node: &Node, of: Option<&Value>) -> CliResult<(Option<String>, SocketAddr)> {
    let Some(of) = of.and_then(Value::as_str) else {
        return Ok((Some(node.name().to_owned()), node.local_addr()));
    };
    let members = node.members().wait()?;
    if let Some(m) = members.iter().find(|m| m.name.as_deref() == Some(of)) {
        return Ok((m.name.clone(), m.id.addr));
    }
    if let Ok(addr) = of.parse::<SocketAddr>()
        && let Some(m) = members.iter().find(|m| m.id.addr == addr)
    {
        return Ok((m.name.clone(), addr));
    }
    Err(cli_error!(
        "unknown node {of:?}: no member by that name or address"
    ))
}
