//! `grapevine keys list|install|use|remove`: rotate the keys of a running node
//! through its admin interface (serf's `keys` command, one node at a time).
//!
//! A rotation without downtime installs the new key on every node, then uses it on
//! every node, then removes the old key from every node: at each step every node can
//! open what every other node seals. A key is given in base64 or hex (`-` reads it from
//! standard input, which keeps it out of the process list) and shown only by its
//! fingerprint (the first 8 bytes of its SHA-256). The admin request is the JSON op
//! `keyring` (see [`crate::ops`]): `{"v": 1, "op": "keyring", "action": "install",
//! "key": BASE64}`, answered with `{"node", "primary", "keys"}` (fingerprints, the
//! primary first).

use std::fmt;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use grapevine_driver::keys::{encode_key, fingerprint, parse_key};
use grapevine_driver::{Key, KeysSnapshot};
use serde_json::{Value, json};

use crate::output::outln;
use crate::query::{QueryArgs, admin_for};
use crate::runtime::Node;
use crate::{CliResult, admin, cli_error, usage_error};

/// Arguments of `grapevine keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// List the node's keys by fingerprint, the primary first.
    List(QueryArgs),
    /// Install a key: the node opens datagrams sealed with it, and still seals with
    /// its primary.
    Install(KeyArgs),
    /// Make an installed key the primary: the node seals with it from now on.
    Use(KeyArgs),
    /// Remove an installed key that is not the primary.
    Remove(KeyArgs),
}

#[derive(Debug, Args)]
struct KeyArgs {
    /// The key: 32 bytes in base64 or hex, or `-` to read it from standard input.
    #[arg(value_name = "KEY")]
    key: KeyText,
    #[command(flatten)]
    target: QueryArgs,
}

/// A key as typed; its `Debug` never shows it.
#[derive(Clone)]
struct KeyText(String);

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyText(..)")
    }
}

impl From<String> for KeyText {
    fn from(text: String) -> Self {
        KeyText(text)
    }
}

impl KeyText {
    fn key(&self) -> CliResult<Key> {
        let text = if self.0 == "-" {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| cli_error!("cannot read the key from standard input: {e}"))?;
            line
        } else {
            self.0.clone()
        };
        parse_key(&text).map_err(|e| usage_error!("KEY: {e}"))
    }
}

/// `grapevine keys ...`.
pub fn run(args: KeysArgs) -> CliResult<ExitCode> {
    let (verb, key, target) = match &args.action {
        KeysAction::List(target) => ("list", None, target),
        KeysAction::Install(a) => ("install", Some(a.key.key()?), &a.target),
        KeysAction::Use(a) => ("use", Some(a.key.key()?), &a.target),
        KeysAction::Remove(a) => ("remove", Some(a.key.key()?), &a.target),
    };
    let admin_addr = admin_for(&target.node, target.admin.as_deref())?;
    let mut request = json!({ "v": admin::VERSION, "op": "keyring", "action": verb });
    if let Some(key) = &key {
        request["key"] = json!(encode_key(key));
    }
    let reply = admin::query(admin_addr, &request.to_string())?;
    if target.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_else(|_| reply.to_string())
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(key) = &key {
        let done = match verb {
            "install" => "installed",
            "use" => "now primary:",
            _ => "removed",
        };
        outln!("{done} {}", fingerprint(key));
    }
    let primary = reply.get("primary").and_then(Value::as_str).unwrap_or("");
    for fp in reply
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        outln!("{fp}{}", if fp == primary { "  primary" } else { "" });
    }
    Ok(ExitCode::SUCCESS)
}

/// Answers the admin op `keyring`: `action` with `key` (base64 or hex) for a change.
/// The reply names keys by fingerprint only; an error never repeats the key.
pub fn answer(verb: &str, key: Option<&str>, node: &Node) -> CliResult<Value> {
    let key = || {
        let text = key.ok_or_else(|| cli_error!("keyring {verb} needs a \"key\""))?;
        parse_key(text).map_err(|e| cli_error!("keyring {verb}: {e}"))
    };
    let keys = match verb {
        "list" => node.keyring().wait(),
        "install" => node.install_key(key()?).wait(),
        "use" => node.use_key(key()?).wait(),
        "remove" => node.remove_key(key()?).wait(),
        other => {
            return Err(cli_error!(
                "unknown keyring action {other:?} (expected list, install, use or remove)"
            ));
        }
    }
    .map_err(|e| cli_error!("keyring {verb}: {e}"))?;
    Ok(keys_json(node, &keys))
}

fn keys_json(node: &Node, keys: &KeysSnapshot) -> Value {
    json!({
        "node": node.local_addr().to_string(),
        "primary": keys.primary(),
        "keys": keys.fingerprints,
    })
}
