//! The small sharded key-value store each CLI node carries: an example of how a store
//! embeds Grapevine, not a database.
//!
//! What Grapevine gives the store, and what the store adds:
//!
//! - **Where a key lives**: [`Handle::route`](grapevine_driver::Handle::route) names
//!   the key's natural replicas in ring order and whether each is alive, as the
//!   entry node sees the ring.
//! - **Writes** (`grapevine put KEY VALUE --via NODE`): the entry node sends the value
//!   to every live natural replica, and to the pending replicas a range is moving to
//!   while a member joins or leaves, each by a request addressed to that replica
//!   ([`Handle::request_to`](grapevine_driver::Handle::request_to): Cassandra's
//!   coordinator writing to each replica). The put succeeds when at least one replica
//!   took the value, and says how many did.
//! - **Reads** (`grapevine get KEY --via NODE`): a routed Grapevine request
//!   ([`Handle::request`](grapevine_driver::Handle::request)). The entry node serves it
//!   itself when it is a replica; otherwise Grapevine forwards it to the first live
//!   replica and fails over once to the next. So after a replica is killed, every key
//!   it held is still read from a live one.
//!
//! What it leaves out, being an example: values live in memory only; a write is
//! not versioned, so concurrent puts of one key may leave replicas disagreeing; a
//! replica that was down during a put is not repaired; and when ranges move, keys
//! already written are not streamed to their new replicas.
//!
//! A request payload that starts with [`STORE_TAG`] is a store operation; any other
//! payload (`grapevine request`) is answered with `served by ADDR`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use grapevine::RequestFailure;
use grapevine_driver::{Event, NodeId, RequestId, Status};
use serde_json::{Value, json};

use crate::runtime::Node;
use crate::{CliResult, cli_error};

/// The first byte of a request payload that is a store operation. Text payloads
/// (what `grapevine request` sends) never start with it.
pub const STORE_TAG: u8 = 0;

/// Store operation: read a key (request payload `[STORE_TAG, GET]`).
const GET: u8 = b'G';
/// Store operation: a replica write (request payload `[STORE_TAG, PUT, value...]`).
const PUT: u8 = b'P';
/// Store answer: the replica stored the value.
const STORED: u8 = b'S';
/// Store answer: the replica refused the value (over its limit).
const REFUSED: u8 = b'R';
/// Store answer: the value follows.
const FOUND: u8 = b'F';
/// Store answer: this replica holds no value for the key.
const MISSING: u8 = b'M';

/// How many answers to requests may wait for a client that gave up: the oldest go
/// first, so an answer arriving after its deadline costs bounded memory.
const UNCLAIMED_OUTCOMES: usize = 1024;

/// One node's store: its share of the keys, and the answers to the requests this
/// node sent, waiting for the admin connections that sent them.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    values: Mutex<HashMap<String, Vec<u8>>>,
    outcomes: Mutex<Outcomes>,
    arrived: Condvar,
    /// The node's `max_value_size`: a value the node would not gossip is not stored either.
    max_value_size: usize,
}

/// Answers to this node's requests, by id, oldest first.
#[derive(Debug, Default)]
struct Outcomes {
    by_id: HashMap<RequestId, Outcome>,
    order: VecDeque<RequestId>,
}

/// How a request ended: the node that answered and its payload, or why none did.
pub type Outcome = Result<(NodeId, Vec<u8>), RequestFailure>;

/// Which path a routed request took, as the entry node's route showed it just
/// before the request was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The entry node is a natural replica and served the request itself.
    Local,
    /// Forwarded to the first live natural replica, which answered.
    Forwarded,
    /// The first live replica did not answer in time; the next one did.
    Failover,
}

impl Path {
    /// The word the admin protocol and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Local => "local",
            Path::Forwarded => "forwarded",
            Path::Failover => "failover",
        }
    }
}

/// A routed request's answer, as the entry node saw it.
#[derive(Clone, Debug)]
pub struct Routed {
    /// The node that answered.
    pub served_by: NodeId,
    /// Its name, if the entry node knows it.
    pub served_by_name: Option<String>,
    /// How the request got there.
    pub path: Path,
    /// From the request entering the node to the answer arriving.
    pub latency: Duration,
    /// The answer.
    pub payload: Vec<u8>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: keep serving.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// An empty store for a node whose config has `max_value_size`.
    pub fn new(max_value_size: usize) -> Store {
        Store {
            inner: Arc::new(Inner {
                values: Mutex::new(HashMap::new()),
                outcomes: Mutex::new(Outcomes::default()),
                arrived: Condvar::new(),
                max_value_size,
            }),
        }
    }

    /// The node's `max_value_size`: the largest value it gossips in its state.
    pub fn max_value_size(&self) -> usize {
        self.inner.max_value_size
    }

    /// The largest value this store takes: the node's `max_value_size`, and what a
    /// response carries in one datagram (a read returns the value as one).
    pub fn max_value(&self, node: &Node) -> CliResult<usize> {
        let response = node.stats().wait()?.max_request_bytes;
        Ok(self.inner.max_value_size.min(response.saturating_sub(2)))
    }

    /// Writes `value` to this node's own share (a replica write).
    pub fn write_local(&self, node: &Node, key: &str, value: &[u8]) -> CliResult {
        let max = self.max_value(node)?;
        if value.len() > max {
            return Err(cli_error!(
                "value of {} bytes exceeds the store's limit of {max} bytes",
                value.len()
            ));
        }
        lock(&self.inner.values).insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    /// The answer to a request delivered to this node: a store read, or for any
    /// other payload `served by ADDR`.
    pub fn serve(&self, node: &Node, key: &[u8], payload: &[u8]) -> Vec<u8> {
        if let [STORE_TAG, PUT, value @ ..] = payload {
            let key = String::from_utf8_lossy(key);
            return match self.write_local(node, &key, value) {
                Ok(()) => vec![STORE_TAG, STORED],
                Err(_) => vec![STORE_TAG, REFUSED],
            };
        }
        if payload != [STORE_TAG, GET] {
            return crate::app::answer(node);
        }
        let key = String::from_utf8_lossy(key);
        match lock(&self.inner.values).get(key.as_ref()) {
            Some(value) => {
                let mut answer = Vec::with_capacity(value.len() + 2);
                answer.extend_from_slice(&[STORE_TAG, FOUND]);
                answer.extend_from_slice(value);
                answer
            }
            None => vec![STORE_TAG, MISSING],
        }
    }

    /// Takes the answers to this node's requests from its events; returns the other
    /// events.
    pub fn on_event(&self, event: Event) -> Option<Event> {
        let (id, outcome) = match event {
            Event::Response { id, from, payload } => (id, Ok((from, payload))),
            Event::RequestFailed { id, reason } => (id, Err(reason)),
            other => return Some(other),
        };
        let mut outcomes = lock(&self.inner.outcomes);
        if outcomes.order.len() >= UNCLAIMED_OUTCOMES
            && let Some(oldest) = outcomes.order.pop_front()
        {
            outcomes.by_id.remove(&oldest);
        }
        outcomes.by_id.insert(id, outcome);
        outcomes.order.push_back(id);
        self.inner.arrived.notify_all();
        None
    }

    /// Waits up to `timeout` for the answer to request `id`.
    fn wait(&self, id: RequestId, timeout: Duration) -> Option<Outcome> {
        let deadline = Instant::now() + timeout;
        let mut outcomes = lock(&self.inner.outcomes);
        loop {
            if let Some(outcome) = outcomes.by_id.remove(&id) {
                outcomes.order.retain(|o| *o != id);
                return Some(outcome);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            outcomes = self
                .inner
                .arrived
                .wait_timeout(outcomes, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Sends a request for `key` through `node` and waits for its answer: who served
    /// it, by which path, and how fast.
    pub fn request(&self, node: &Node, key: &[u8], payload: Vec<u8>) -> CliResult<Routed> {
        let route = node.route(key).wait()?;
        // The core's rule: served here if this node is a natural replica, else by the
        // first live one (alive before suspect), else by the next after a timeout.
        let local = route.replicas.iter().any(|r| r.id == *node.id());
        let first = route
            .replicas
            .iter()
            .find(|r| r.state == Status::Alive)
            .or_else(|| route.replicas.iter().find(|r| r.state == Status::Suspect))
            .map(|r| r.id.clone());
        let started = Instant::now();
        let id = node
            .request(key, payload)
            .wait()
            .map_err(|e| cli_error!("request refused: {e}"))?;
        // Two replicas may each take up to the request timeout; leave room for both.
        let (served_by, payload) = self
            .wait(id, REQUEST_WAIT)
            .ok_or_else(|| cli_error!("no answer within {REQUEST_WAIT:?}"))?
            .map_err(|reason| cli_error!("request failed: {reason}"))?;
        let latency = started.elapsed();
        let path = if local {
            Path::Local
        } else if first.as_ref() == Some(&served_by) {
            Path::Forwarded
        } else {
            Path::Failover
        };
        let served_by_name = route
            .replicas
            .iter()
            .find(|r| r.id == served_by)
            .map(|r| r.name.clone());
        Ok(Routed {
            served_by,
            served_by_name,
            path,
            latency,
            payload,
        })
    }

    /// A read through `node`: the value of `key` from the first live replica, or
    /// `None` if it holds none.
    pub fn get(&self, node: &Node, key: &str) -> CliResult<(Routed, Option<Vec<u8>>)> {
        let routed = self.request(node, key.as_bytes(), vec![STORE_TAG, GET])?;
        let value = match routed.payload.as_slice() {
            [STORE_TAG, FOUND, value @ ..] => Some(value.to_vec()),
            [STORE_TAG, MISSING] => None,
            _ => {
                return Err(cli_error!(
                    "{} answered with something other than a store value (is it a grapevine node?)",
                    routed.served_by.addr
                ));
            }
        };
        Ok((routed, value))
    }

    /// A write through `node`: `value` goes to every live natural replica of `key`.
    /// Returns one JSON line per replica (written or why not); fails if none took it.
    pub fn put(&self, node: &Node, key: &str, value: &[u8]) -> CliResult<Vec<Value>> {
        // A replica write carries the key beside the value in one request datagram.
        let max = self.max_value(node)?.saturating_sub(key.len());
        if value.len() > max {
            return Err(cli_error!(
                "value of {} bytes exceeds the store's limit of {max} bytes",
                value.len()
            ));
        }
        let route = node.route(key.as_bytes()).wait()?;
        if route.replicas.is_empty() {
            return Err(cli_error!(
                "the ring is empty: no replica for {key:?} yet (is the node ready?)"
            ));
        }
        // Pending replicas (a range moving while a member joins or leaves) take the
        // write too, so the new owner has it once the move completes. Every replica
        // gets its request at once; then the answers are collected.
        let mut payload = Vec::with_capacity(value.len() + 2);
        payload.extend_from_slice(&[STORE_TAG, PUT]);
        payload.extend_from_slice(value);
        let mut sent = Vec::new();
        for (i, replica) in route.replicas.iter().chain(&route.pending).enumerate() {
            let pending = i >= route.replicas.len();
            let result = if !replica.state.is_live() {
                Err(cli_error!("{}", replica.state))
            } else if replica.id == *node.id() {
                self.write_local(node, key, value).map(|()| None)
            } else {
                node.request_to(key.as_bytes(), replica.id.clone(), payload.clone())
                    .wait()
                    .map(Some)
                    .map_err(|e| cli_error!("refused: {e}"))
            };
            sent.push((replica, pending, result));
        }
        let mut replicas = Vec::new();
        let mut written = 0;
        for (replica, pending, result) in sent {
            let result = match result {
                Ok(Some(id)) => match self.wait(id, REQUEST_WAIT) {
                    Some(Ok((_, answer))) if answer == [STORE_TAG, STORED] => Ok(()),
                    Some(Ok(_)) => Err(cli_error!("the replica refused the value")),
                    Some(Err(reason)) => Err(cli_error!("{reason}")),
                    None => Err(cli_error!("no answer within {REQUEST_WAIT:?}")),
                },
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            written += usize::from(result.is_ok());
            let mut line = json!({
                "name": replica.name,
                "addr": replica.id.addr.to_string(),
                "pending": pending,
                "written": result.is_ok(),
            });
            if let Err(e) = result {
                line["error"] = json!(e.to_string());
            }
            replicas.push(line);
        }
        if written == 0 {
            return Err(cli_error!(
                "no replica of {key:?} took the value ({} natural replicas, none live or reachable)",
                route.replicas.len()
            ));
        }
        Ok(replicas)
    }
}

/// How long a routed request may take: the request timeout twice (first replica,
/// then the one failed over to), with room to spare for a slow machine.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
