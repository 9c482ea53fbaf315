//! Any-node request routing: the types, and the router with its table of requests
//! in flight and their deadlines.
//!
//! A request enters at any node. If that node is a replica for the key it is
//! delivered locally; otherwise it is forwarded to the first live replica with the
//! origin, its id and a hop limit. The replica's answer goes straight back to the
//! origin. The origin alone keeps state: a deadline, and which replicas it tried,
//! so that it can fail over once to the next replica before giving up.

use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use alloc::collections::VecDeque;

use rand_core::RngCore;

use crate::config::Config;
use crate::event::Event;
use crate::hash::{Map, SeededState, Set};
use crate::membership::{Address, NodeId, Status};
use crate::outbox::Outbox;
use crate::placement::Topology;
use crate::time::Instant;
use crate::wire::{ForwardedRequest, ForwardedResponse, Message, encode_message};
use alloc::string::String;

/// Identifies a request on the node that issued it (and, for
/// [`Event::Request`], on the node that must answer it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One node of a replica set, with its liveness and its topology state as this node
/// sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica<A> {
    /// The replica's current process: its address and generation.
    pub id: NodeId<A>,
    /// The replica's stable name.
    pub name: String,
    /// Its liveness: a dead natural replica is still a replica (placement follows
    /// topology, not liveness), but requests go to live ones.
    pub state: Status,
    /// Its topology state (Normal or Leaving for a natural replica, Joining or Normal
    /// for a pending one).
    pub topology: Topology,
}

/// The replicas of a key: its natural replicas in ring order (the owner first), and
/// while members join or leave, the pending replicas that will take the range over.
/// A store writes to both while data streams (Cassandra's pending ranges).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSet<A> {
    /// The key's token (Cassandra's Murmur3Partitioner token).
    pub token: i64,
    /// The natural replicas, owner first; empty if the ring is.
    pub replicas: Vec<Replica<A>>,
    /// Replicas the range is moving to, not natural replicas yet.
    pub pending: Vec<Replica<A>>,
}

/// Why [`Node::handle_request`](crate::Node::handle_request) refused a request.
/// A refused request leaves no trace in the node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The ring is empty: no node announced tokens yet.
    NoReplica,
    /// The key has natural replicas, but none of them is alive. The request is never
    /// sent to a node that is not a replica.
    Unavailable,
    /// `max_requests_in_flight` requests are already tracked.
    TooManyInFlight,
    /// Key and payload do not fit in one datagram.
    TooLarge {
        /// Key plus payload length.
        len: usize,
        /// The most that fits.
        max: usize,
    },
    /// The node has left the cluster.
    Left,
    /// [`Node::handle_request_to`](crate::Node::handle_request_to): the node named is
    /// neither a natural nor a pending replica of the key (as this node sees the ring).
    NotAReplica,
    /// [`Node::handle_request_to`](crate::Node::handle_request_to): the replica named
    /// is not alive (or not at the life named).
    ReplicaDown,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NoReplica => f.write_str("no node owns the key yet (the ring is empty)"),
            RequestError::Unavailable => f.write_str("every replica of the key is down"),
            RequestError::TooManyInFlight => f.write_str("too many requests in flight"),
            RequestError::TooLarge { len, max } => {
                write!(
                    f,
                    "key and payload of {len} bytes exceed one datagram ({max})"
                )
            }
            RequestError::Left => f.write_str("the node has left the cluster"),
            RequestError::NotAReplica => f.write_str("that node is no replica of the key"),
            RequestError::ReplicaDown => f.write_str("that replica is not alive"),
        }
    }
}

impl core::error::Error for RequestError {}

/// Why [`Node::respond`](crate::Node::respond) refused an answer. Nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RespondError {
    /// No such request awaits an answer (already answered, or expired).
    UnknownRequest,
    /// The payload does not fit in one datagram.
    TooLarge {
        /// Payload length.
        len: usize,
        /// The most that fits.
        max: usize,
    },
}

impl fmt::Display for RespondError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespondError::UnknownRequest => f.write_str("no such request awaits an answer"),
            RespondError::TooLarge { len, max } => {
                write!(f, "payload of {len} bytes exceeds one datagram ({max})")
            }
        }
    }
}

impl core::error::Error for RespondError {}

/// Why a request failed, in [`Event::RequestFailed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestFailure {
    /// Neither the first replica nor the one failed over to answered in time.
    Timeout,
    /// No live natural replica was left to try.
    Unavailable,
    /// This node left the cluster before the answer came.
    Left,
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestFailure::Timeout => "timed out",
            RequestFailure::Unavailable => "no live replica",
            RequestFailure::Left => "the node left",
        })
    }
}

/// A request this node issued and forwarded.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Outgoing<A> {
    key: Vec<u8>,
    payload: Vec<u8>,
    target: A,
    /// The replicas tried so far, `target` last.
    tried: Vec<A>,
    deadline: Instant,
    /// Sent to one chosen replica ([`Router::request_to`]): no fail-over.
    direct: bool,
}

/// `hops` of a request sent to one chosen replica: delivered there if it is a natural
/// or pending replica of the key, never passed on.
const DIRECT: u8 = 0;

/// A request delivered here, awaiting the application's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Incoming<A> {
    /// The origin and its id, or `None` when the request was issued here.
    origin: Option<(NodeId<A>, u64)>,
    deadline: Instant,
}

/// How the router asks where a key lives: the node answers from its ring and its
/// view of who is alive.
pub(crate) type RouteFn<'a, A> = &'a dyn Fn(&[u8]) -> ReplicaSet<A>;

/// The router: requests issued here and forwarded, requests delivered here awaiting
/// an answer, and the window of forwarded requests already delivered.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "A: crate::Address")]
pub(crate) struct Router<A> {
    next_id: u64,
    #[serde(with = "crate::snapshot::map")]
    outgoing: Map<u64, Outgoing<A>>,
    #[serde(with = "crate::snapshot::map")]
    incoming: Map<u64, Incoming<A>>,
    /// Forwarded requests recently delivered here, oldest first: a replayed or
    /// duplicated datagram must not reach the application twice.
    #[serde(with = "crate::snapshot::set")]
    seen: Set<(NodeId<A>, u64)>,
    seen_order: VecDeque<(NodeId<A>, u64)>,
    request_timeout: core::time::Duration,
    max_hops: u8,
    max_in_flight: usize,
}

impl<A: Address> Router<A> {
    pub fn new(config: &Config, hasher: SeededState) -> Self {
        Router {
            next_id: 1,
            outgoing: Map::with_hasher(hasher),
            incoming: Map::with_hasher(hasher),
            seen: Set::with_hasher(hasher),
            seen_order: VecDeque::new(),
            request_timeout: config.request_timeout,
            max_hops: config.request_max_hops,
            max_in_flight: config.max_requests_in_flight,
        }
    }

    /// The largest key plus payload a request may carry.
    pub fn max_request_bytes<R>(out: &Outbox<A, R>) -> usize
    where
        R: RngCore,
    {
        // Room for the sender id, the origin id, the request id and varint lengths.
        out.body_budget().saturating_sub(128)
    }

    /// Requests in flight, by id, for dumps.
    pub fn dump(&self) -> Vec<crate::dump::RequestDump<A>> {
        let mut out: Vec<crate::dump::RequestDump<A>> = self
            .outgoing
            .iter()
            .map(|(id, o)| crate::dump::RequestDump::Outgoing {
                id: *id,
                target: o.target.clone(),
                tried: o.tried.len(),
                deadline: o.deadline,
            })
            .chain(
                self.incoming
                    .iter()
                    .map(|(id, i)| crate::dump::RequestDump::Incoming {
                        id: *id,
                        origin: i.origin.as_ref().map(|(o, _)| o.addr.clone()),
                        deadline: i.deadline,
                    }),
            )
            .collect();
        out.sort_by_key(|r| match r {
            crate::dump::RequestDump::Outgoing { id, .. }
            | crate::dump::RequestDump::Incoming { id, .. } => *id,
        });
        out
    }

    fn in_flight(&self) -> usize {
        self.outgoing.len() + self.incoming.len()
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A client request entering here: delivered locally if we are a replica, else
    /// forwarded to the first live replica.
    pub fn request<R: RngCore>(
        &mut self,
        now: Instant,
        key: &[u8],
        payload: Vec<u8>,
        route: RouteFn<'_, A>,
        me: &NodeId<A>,
        out: &mut Outbox<A, R>,
    ) -> Result<RequestId, RequestError> {
        self.check_room(key, &payload, out)?;
        let set = route(key);
        if set.replicas.is_empty() {
            return Err(RequestError::NoReplica);
        }
        let id = self.next_id();
        if set.replicas.iter().any(|r| r.id == *me) {
            self.deliver_locally(now, id, None, key.to_vec(), payload, out);
        } else {
            let Some(target) = first_live(&set, &[]) else {
                return Err(RequestError::Unavailable);
            };
            self.send_tracked(now, target, id, key, payload, false, me, out);
        }
        Ok(RequestId(id))
    }

    /// Refuses what cannot be tracked or sent: a key and payload larger than a
    /// datagram, or a full request table.
    fn check_room<R: RngCore>(
        &self,
        key: &[u8],
        payload: &[u8],
        out: &Outbox<A, R>,
    ) -> Result<(), RequestError> {
        let len = key.len() + payload.len();
        let max = Self::max_request_bytes(out);
        if len > max {
            return Err(RequestError::TooLarge { len, max });
        }
        if self.in_flight() >= self.max_in_flight {
            return Err(RequestError::TooManyInFlight);
        }
        Ok(())
    }

    /// Sends request `id` to `target` and tracks it until its answer or deadline; a
    /// `direct` one is for that replica alone (no hops, no fail-over).
    #[allow(clippy::too_many_arguments)]
    fn send_tracked<R: RngCore>(
        &mut self,
        now: Instant,
        target: A,
        id: u64,
        key: &[u8],
        payload: Vec<u8>,
        direct: bool,
        me: &NodeId<A>,
        out: &mut Outbox<A, R>,
    ) {
        let hops = if direct { DIRECT } else { self.max_hops };
        self.forward(
            target.clone(),
            id,
            hops,
            key.to_vec(),
            payload.clone(),
            me,
            out,
        );
        self.outgoing.insert(
            id,
            Outgoing {
                key: key.to_vec(),
                payload,
                tried: alloc::vec![target.clone()],
                target,
                deadline: now + self.request_timeout,
                direct,
            },
        );
    }

    /// A request for one chosen replica of `key` (a natural or a pending one): a store
    /// writing every replica, or streaming a range to a joiner, addresses each itself.
    /// No fail-over: if that replica does not answer, the request fails.
    #[allow(clippy::too_many_arguments)]
    pub fn request_to<R: RngCore>(
        &mut self,
        now: Instant,
        key: &[u8],
        to: &NodeId<A>,
        payload: Vec<u8>,
        route: RouteFn<'_, A>,
        me: &NodeId<A>,
        out: &mut Outbox<A, R>,
    ) -> Result<RequestId, RequestError> {
        self.check_room(key, &payload, out)?;
        let set = route(key);
        let Some(replica) = set
            .replicas
            .iter()
            .chain(&set.pending)
            .find(|r| r.id.addr == to.addr)
        else {
            return Err(RequestError::NotAReplica);
        };
        if replica.id != *to || !replica.state.is_live() {
            return Err(RequestError::ReplicaDown);
        }
        let id = self.next_id();
        if *to == *me {
            self.deliver_locally(now, id, None, key.to_vec(), payload, out);
        } else {
            self.send_tracked(now, to.addr.clone(), id, key, payload, true, me, out);
        }
        Ok(RequestId(id))
    }

    /// The application's answer to a request delivered here.
    pub fn respond<R: RngCore>(
        &mut self,
        id: RequestId,
        payload: Vec<u8>,
        me: &NodeId<A>,
        out: &mut Outbox<A, R>,
    ) -> Result<(), RespondError> {
        let max = Self::max_request_bytes(out);
        if payload.len() > max {
            return Err(RespondError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let incoming = self
            .incoming
            .remove(&id.0)
            .ok_or(RespondError::UnknownRequest)?;
        match incoming.origin {
            None => out.event(Event::Response {
                id,
                from: me.clone(),
                payload,
            }),
            Some((origin, origin_id)) => {
                let msg = encode_message(&Message::<A>::Response(ForwardedResponse {
                    id: origin_id,
                    payload,
                }));
                out.send(origin.addr, &[msg], 1);
            }
        }
        Ok(())
    }

    fn deliver_locally<R: RngCore>(
        &mut self,
        now: Instant,
        id: u64,
        origin: Option<(NodeId<A>, u64)>,
        key: Vec<u8>,
        payload: Vec<u8>,
        out: &mut Outbox<A, R>,
    ) {
        let deadline = now + self.request_timeout.saturating_mul(2);
        self.incoming.insert(id, Incoming { origin, deadline });
        out.count().requests_local += 1;
        out.event(Event::Request {
            id: RequestId(id),
            key,
            payload,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn forward<R: RngCore>(
        &mut self,
        to: A,
        id: u64,
        hops: u8,
        key: Vec<u8>,
        payload: Vec<u8>,
        me: &NodeId<A>,
        out: &mut Outbox<A, R>,
    ) {
        let req = ForwardedRequest {
            origin: me.clone(),
            id,
            hops,
            key,
            payload,
        };
        out.count().requests_forwarded += 1;
        out.send(to, &[encode_message(&Message::Request(req))], 1);
    }

    /// A request forwarded to us: delivered if we are a replica (once), else passed on
    /// while hops remain.
    pub fn on_forwarded<R: RngCore>(
        &mut self,
        now: Instant,
        req: ForwardedRequest<A>,
        route: RouteFn<'_, A>,
        me: &NodeId<A>,
        out: &mut Outbox<A, R>,
    ) {
        let set = route(&req.key);
        // A direct request may be for a pending replica (a range moving here).
        let pending = req.hops == DIRECT && set.pending.iter().any(|r| r.id == *me);
        if set.replicas.iter().any(|r| r.id == *me) || pending {
            if !self.first_sighting(&req.origin, req.id) {
                out.count().requests_duplicate += 1;
                return;
            }
            if self.in_flight() < self.max_in_flight {
                let id = self.next_id();
                let origin = Some((req.origin, req.id));
                self.deliver_locally(now, id, origin, req.key, req.payload, out);
            }
        } else if req.hops > 1 {
            if let Some(next) = first_live(&set, core::slice::from_ref(&req.origin.addr)) {
                let fwd = ForwardedRequest {
                    hops: req.hops - 1,
                    ..req
                };
                out.count().requests_forwarded += 1;
                out.send(next, &[encode_message(&Message::Request(fwd))], 1);
            }
        }
    }

    /// Records a forwarded request; false if it was seen among the last
    /// `max_requests_in_flight`.
    fn first_sighting(&mut self, origin: &NodeId<A>, id: u64) -> bool {
        let key = (origin.clone(), id);
        if self.seen.contains(&key) {
            return false;
        }
        if self.seen_order.len() >= self.max_in_flight {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(key.clone());
        self.seen_order.push_back(key);
        true
    }

    /// A replica's answer to a request we forwarded.
    pub fn on_response<R: RngCore>(
        &mut self,
        sender: &NodeId<A>,
        resp: ForwardedResponse,
        out: &mut Outbox<A, R>,
    ) {
        match self.outgoing.remove(&resp.id) {
            Some(_) => out.event(Event::Response {
                id: RequestId(resp.id),
                from: sender.clone(),
                payload: resp.payload,
            }),
            None => out.count().responses_dropped += 1,
        }
    }

    /// A member died or left: the requests waiting on it fail over now.
    pub fn target_lost<R: RngCore>(
        &mut self,
        now: Instant,
        addr: &A,
        route: RouteFn<'_, A>,
        me: &NodeId<A>,
        out: &mut Outbox<A, R>,
    ) {
        let mut failed: Vec<u64> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.target == *addr)
            .map(|(id, _)| *id)
            .collect();
        // By id: the map's order is not kept by a snapshot (see `abandon`).
        failed.sort_unstable();
        for id in failed {
            if self.outgoing.get(&id).is_some_and(|o| o.direct) {
                // Sent to that replica alone: nobody else may take it.
                self.outgoing.remove(&id);
                out.event(Event::RequestFailed {
                    id: RequestId(id),
                    reason: RequestFailure::Unavailable,
                });
                continue;
            }
            self.fail_over(now, id, route, me, out);
        }
    }

    /// Tries the next live replica once, then gives up.
    fn fail_over<R: RngCore>(
        &mut self,
        now: Instant,
        id: u64,
        route: RouteFn<'_, A>,
        me: &NodeId<A>,
        out: &mut Outbox<A, R>,
    ) {
        let Some(o) = self.outgoing.remove(&id) else {
            return;
        };
        if o.direct || o.tried.len() >= 2 {
            out.event(Event::RequestFailed {
                id: RequestId(id),
                reason: RequestFailure::Timeout,
            });
            return;
        }
        let set = route(&o.key);
        if set.replicas.iter().any(|r| r.id == *me) {
            // The ring moved and we are a replica now: serve it here.
            self.deliver_locally(now, id, None, o.key, o.payload, out);
            return;
        }
        let Some(next) = first_live(&set, &o.tried) else {
            out.event(Event::RequestFailed {
                id: RequestId(id),
                reason: RequestFailure::Unavailable,
            });
            return;
        };
        out.count().requests_failed_over += 1;
        let hops = self.max_hops;
        self.forward(
            next.clone(),
            id,
            hops,
            o.key.clone(),
            o.payload.clone(),
            me,
            out,
        );
        let deadline = now + self.request_timeout;
        let mut tried = o.tried;
        tried.push(next.clone());
        self.outgoing.insert(
            id,
            Outgoing {
                target: next,
                tried,
                deadline,
                ..o
            },
        );
    }

    /// We left: every request issued here fails.
    pub fn abandon<R: RngCore>(&mut self, out: &mut Outbox<A, R>) {
        // By id, not in the map's order: a map rebuilt from a snapshot may iterate
        // differently, and the events are outputs.
        let mut ids: Vec<u64> = self.outgoing.drain().map(|(id, _)| id).collect();
        ids.sort_unstable();
        for id in ids {
            out.event(Event::RequestFailed {
                id: RequestId(id),
                reason: RequestFailure::Left,
            });
        }
    }

    /// Fails over the requests whose replica did not answer in time, and forgets the
    /// requests delivered here that the application did not answer in time.
    pub fn handle_timeout<R: RngCore>(
        &mut self,
        now: Instant,
        route: RouteFn<'_, A>,
        me: &NodeId<A>,
        out: &mut Outbox<A, R>,
    ) {
        let mut due: Vec<u64> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        // By id: the map's order is not kept by a snapshot (see `abandon`).
        due.sort_unstable();
        for id in due {
            self.fail_over(now, id, route, me, out);
        }
        self.incoming.retain(|_, i| i.deadline > now);
    }

    /// The router's next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.outgoing.values().map(|o| o.deadline).min();
        let b = self.incoming.values().map(|i| i.deadline).min();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The first live natural replica (alive before suspect), never one in `except`.
fn first_live<A: Address>(set: &ReplicaSet<A>, except: &[A]) -> Option<A> {
    let candidates = || set.replicas.iter().filter(|r| !except.contains(&r.id.addr));
    candidates()
        .find(|r| r.state == Status::Alive)
        .or_else(|| candidates().find(|r| r.state == Status::Suspect))
        .map(|r| r.id.addr.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::testing::{events, outbox, sent};
    use alloc::vec;
    use core::time::Duration;

    const ME: u32 = 1;

    fn me() -> NodeId<u32> {
        NodeId::new(ME, 1)
    }

    fn router() -> Router<u32> {
        Router::new(&Config::lan("t"), SeededState(1))
    }

    fn set(replicas: &[(u32, Status)]) -> ReplicaSet<u32> {
        ReplicaSet {
            token: 0,
            replicas: replicas
                .iter()
                .map(|&(a, state)| Replica {
                    id: NodeId::new(a, 1),
                    name: alloc::format!("n{a}"),
                    state,
                    topology: Topology::Normal,
                })
                .collect(),
            pending: Vec::new(),
        }
    }

    /// The one forwarded request in `sent`: its destination and content.
    fn forwarded(sent: &[(u32, Vec<Message<u32>>)]) -> (u32, ForwardedRequest<u32>) {
        assert_eq!(sent.len(), 1, "exactly one datagram: {sent:?}");
        match &sent[0].1[..] {
            [Message::Request(req)] => (sent[0].0, req.clone()),
            other => panic!("expected a forwarded request, got {other:?}"),
        }
    }

    #[test]
    fn timed_out_request_fails_over_once_then_fails_with_timeout() {
        let timeout = Config::lan("t").request_timeout;
        let replicas = set(&[(2, Status::Alive), (3, Status::Alive), (4, Status::Alive)]);
        let route = |_: &[u8]| replicas.clone();
        let mut r = router();
        let mut out = outbox(ME);
        let t0 = Instant::ZERO;
        let id = r
            .request(t0, b"k", b"p".to_vec(), &route, &me(), &mut out)
            .expect("accepted");
        let (to, req) = forwarded(&sent(&mut out));
        assert_eq!(to, 2, "the first live replica");
        assert_eq!(
            (req.origin, req.id, req.key, req.payload),
            (me(), id.0, b"k".to_vec(), b"p".to_vec())
        );
        assert_eq!(r.poll_timeout(), Some(t0 + timeout));

        r.handle_timeout(
            t0 + timeout - Duration::from_nanos(1),
            &route,
            &me(),
            &mut out,
        );
        assert!(
            sent(&mut out).is_empty() && events(&mut out).is_empty(),
            "not yet"
        );

        let t1 = t0 + timeout;
        r.handle_timeout(t1, &route, &me(), &mut out);
        let (to, req) = forwarded(&sent(&mut out));
        assert_eq!(to, 3, "failed over to the next live replica");
        assert_eq!(req.id, id.0, "under the same id");
        assert!(events(&mut out).is_empty());
        assert_eq!(out.stats().requests_failed_over, 1);
        assert_eq!(r.poll_timeout(), Some(t1 + timeout));

        r.handle_timeout(t1 + timeout, &route, &me(), &mut out);
        assert!(
            sent(&mut out).is_empty(),
            "no second fail-over (4 is never tried)"
        );
        assert_eq!(
            events(&mut out),
            vec![Event::RequestFailed {
                id,
                reason: RequestFailure::Timeout
            }]
        );
        assert_eq!(out.stats().requests_failed_over, 1);
        assert_eq!(r.poll_timeout(), None, "forgotten");

        // A late answer is dropped, not reported.
        r.on_response(
            &NodeId::new(3, 1),
            ForwardedResponse {
                id: id.0,
                payload: vec![],
            },
            &mut out,
        );
        assert!(events(&mut out).is_empty());
        assert_eq!(out.stats().responses_dropped, 1);
    }

    #[test]
    fn timed_out_request_with_no_other_live_replica_fails_with_no_replica() {
        let timeout = Config::lan("t").request_timeout;
        // The other replica is dead: it stays a replica (placement follows topology),
        // but the router never tries it, nor any node that is not a replica.
        let replicas = set(&[(2, Status::Alive), (3, Status::Dead)]);
        let route = |_: &[u8]| replicas.clone();
        let mut r = router();
        let mut out = outbox(ME);
        let id = r
            .request(Instant::ZERO, b"k", vec![], &route, &me(), &mut out)
            .expect("accepted");
        assert_eq!(forwarded(&sent(&mut out)).0, 2);
        r.handle_timeout(Instant::ZERO + timeout, &route, &me(), &mut out);
        assert!(sent(&mut out).is_empty());
        assert_eq!(
            events(&mut out),
            vec![Event::RequestFailed {
                id,
                reason: RequestFailure::Unavailable
            }]
        );
        assert_eq!(out.stats().requests_failed_over, 0);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn suspect_replica_is_tried_after_the_alive_ones() {
        let replicas = set(&[(2, Status::Suspect), (3, Status::Alive)]);
        let route = |_: &[u8]| replicas.clone();
        let mut r = router();
        let mut out = outbox(ME);
        r.request(Instant::ZERO, b"k", vec![], &route, &me(), &mut out)
            .expect("accepted");
        assert_eq!(forwarded(&sent(&mut out)).0, 3);
        // ... and is failed over to when the alive one times out.
        r.handle_timeout(
            Instant::ZERO + Config::lan("t").request_timeout,
            &route,
            &me(),
            &mut out,
        );
        assert_eq!(forwarded(&sent(&mut out)).0, 2);
    }

    #[test]
    fn lost_target_fails_over_at_once() {
        let replicas = set(&[(2, Status::Alive), (3, Status::Alive)]);
        let route = |_: &[u8]| replicas.clone();
        let mut r = router();
        let mut out = outbox(ME);
        let id = r
            .request(Instant::ZERO, b"k", vec![], &route, &me(), &mut out)
            .expect("accepted");
        let _ = sent(&mut out);
        r.target_lost(Instant::ZERO, &3, &route, &me(), &mut out);
        assert!(sent(&mut out).is_empty(), "no request waits on 3");
        let now = Instant::from_millis(10);
        r.target_lost(now, &2, &route, &me(), &mut out);
        assert_eq!(forwarded(&sent(&mut out)).0, 3);
        assert_eq!(
            r.poll_timeout(),
            Some(now + Config::lan("t").request_timeout)
        );
        // The replica failed over to answers.
        r.on_response(
            &NodeId::new(3, 1),
            ForwardedResponse {
                id: id.0,
                payload: vec![9],
            },
            &mut out,
        );
        assert_eq!(
            events(&mut out),
            vec![Event::Response {
                id,
                from: NodeId::new(3, 1),
                payload: vec![9]
            }]
        );
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn request_refused_without_a_live_replica() {
        let mut r = router();
        let mut out = outbox(ME);
        let empty = |_: &[u8]| set(&[]);
        assert_eq!(
            r.request(Instant::ZERO, b"k", vec![], &empty, &me(), &mut out),
            Err(RequestError::NoReplica)
        );
        let dead = |_: &[u8]| set(&[(2, Status::Dead), (3, Status::Left)]);
        assert_eq!(
            r.request(Instant::ZERO, b"k", vec![], &dead, &me(), &mut out),
            Err(RequestError::Unavailable)
        );
        assert!(sent(&mut out).is_empty());
        assert_eq!(r.poll_timeout(), None, "a refused request leaves no trace");
        let max = Router::max_request_bytes(&out);
        assert_eq!(
            r.request(Instant::ZERO, b"k", vec![0; max], &empty, &me(), &mut out),
            Err(RequestError::TooLarge { len: max + 1, max })
        );
    }

    #[test]
    fn a_request_to_one_replica_goes_there_only_and_never_fails_over() {
        let timeout = Config::lan("t").request_timeout;
        let mut replicas = set(&[(2, Status::Alive), (3, Status::Alive), (4, Status::Dead)]);
        replicas.pending = set(&[(5, Status::Alive)]).replicas;
        let route = |_: &[u8]| replicas.clone();
        let mut r = router();
        let mut out = outbox(ME);
        let t0 = Instant::ZERO;
        // Not a replica, a dead one, a stale life: refused, nothing sent.
        for (to, err) in [
            (NodeId::new(9, 1), RequestError::NotAReplica),
            (NodeId::new(4, 1), RequestError::ReplicaDown),
            (NodeId::new(3, 7), RequestError::ReplicaDown),
        ] {
            let got = r.request_to(t0, b"k", &to, b"p".to_vec(), &route, &me(), &mut out);
            assert_eq!(got, Err(err), "{to:?}");
        }
        assert!(sent(&mut out).is_empty());
        // The second natural replica, then the pending one: each gets it directly.
        for to in [3, 5] {
            let id = r
                .request_to(
                    t0,
                    b"k",
                    &NodeId::new(to, 1),
                    b"p".to_vec(),
                    &route,
                    &me(),
                    &mut out,
                )
                .expect("a live replica");
            let (dest, req) = forwarded(&sent(&mut out));
            assert_eq!((dest, req.hops, req.id), (to, DIRECT, id.0));
        }
        // No answer: each fails, and nothing goes to another replica.
        r.handle_timeout(t0 + timeout, &route, &me(), &mut out);
        assert!(sent(&mut out).is_empty(), "no fail-over");
        let failed = events(&mut out);
        assert_eq!(failed.len(), 2);
        assert!(failed.iter().all(|e| matches!(
            e,
            Event::RequestFailed {
                reason: RequestFailure::Timeout,
                ..
            }
        )));
        assert_eq!(out.stats().requests_failed_over, 0);

        // The pending replica delivers a direct request for a key it is taking over,
        // but not a routed one (that goes to a natural replica).
        let mut pending = router();
        let mut out = outbox(5);
        let req = ForwardedRequest {
            origin: me(),
            id: 7,
            hops: DIRECT,
            key: b"k".to_vec(),
            payload: b"p".to_vec(),
        };
        let five = NodeId::new(5, 1);
        pending.on_forwarded(t0, req.clone(), &route, &five, &mut out);
        assert_eq!(out.stats().requests_local, 1);
        let routed = ForwardedRequest {
            hops: 1,
            id: 8,
            ..req
        };
        pending.on_forwarded(t0, routed, &route, &five, &mut out);
        assert_eq!(
            out.stats().requests_local,
            1,
            "a routed request is not delivered"
        );
    }

    #[test]
    fn duplicate_forwarded_request_is_delivered_once() {
        let replicas = set(&[(ME, Status::Alive), (3, Status::Alive)]);
        let route = |_: &[u8]| replicas.clone();
        let mut r = router();
        let mut out = outbox(ME);
        let origin = NodeId::new(2, 1);
        let req = ForwardedRequest {
            origin: origin.clone(),
            id: 41,
            hops: 3,
            key: b"k".to_vec(),
            payload: b"p".to_vec(),
        };
        r.on_forwarded(Instant::ZERO, req.clone(), &route, &me(), &mut out);
        r.on_forwarded(Instant::ZERO, req.clone(), &route, &me(), &mut out);
        let delivered = events(&mut out);
        assert_eq!(delivered.len(), 1, "delivered once: {delivered:?}");
        let Event::Request {
            id,
            ref key,
            ref payload,
        } = delivered[0]
        else {
            panic!("expected a request event");
        };
        assert_eq!((key.as_slice(), payload.as_slice()), (&b"k"[..], &b"p"[..]));
        assert_eq!(out.stats().requests_duplicate, 1);
        assert_eq!(out.stats().requests_local, 1);

        // The same id from another origin is another request.
        let other = ForwardedRequest {
            origin: NodeId::new(3, 1),
            ..req.clone()
        };
        r.on_forwarded(Instant::ZERO, other, &route, &me(), &mut out);
        assert_eq!(events(&mut out).len(), 1);

        // The answer goes back to the origin under the origin's id, once.
        r.respond(id, b"r".to_vec(), &me(), &mut out)
            .expect("awaited");
        let answers = sent(&mut out);
        assert_eq!(
            answers,
            vec![(
                2,
                vec![Message::Response(ForwardedResponse {
                    id: 41,
                    payload: b"r".to_vec()
                })]
            )]
        );
        assert_eq!(
            r.respond(id, vec![], &me(), &mut out),
            Err(RespondError::UnknownRequest)
        );
        // A replay after the answer is still a duplicate.
        r.on_forwarded(Instant::ZERO, req, &route, &me(), &mut out);
        assert!(events(&mut out).is_empty());
        assert_eq!(out.stats().requests_duplicate, 2);
    }

    #[test]
    fn forwarded_request_for_someone_else_is_passed_on_while_hops_remain() {
        let replicas = set(&[(2, Status::Alive), (3, Status::Alive)]);
        let route = |_: &[u8]| replicas.clone();
        let mut r = router();
        let mut out = outbox(ME);
        let req = ForwardedRequest {
            origin: NodeId::new(2, 1),
            id: 7,
            hops: 2,
            key: b"k".to_vec(),
            payload: vec![],
        };
        r.on_forwarded(Instant::ZERO, req.clone(), &route, &me(), &mut out);
        let (to, passed) = forwarded(&sent(&mut out));
        assert_eq!(to, 3, "never back to the origin");
        assert_eq!(passed.hops, 1);
        r.on_forwarded(Instant::ZERO, passed, &route, &me(), &mut out);
        assert!(sent(&mut out).is_empty(), "out of hops");
        assert!(events(&mut out).is_empty());
    }

    #[test]
    fn request_for_a_local_key_is_delivered_here_and_answered_as_an_event() {
        let replicas = set(&[(2, Status::Alive), (ME, Status::Alive)]);
        let route = |_: &[u8]| replicas.clone();
        let mut r = router();
        let mut out = outbox(ME);
        let id = r
            .request(Instant::ZERO, b"k", b"p".to_vec(), &route, &me(), &mut out)
            .expect("accepted");
        assert!(sent(&mut out).is_empty(), "not forwarded");
        assert_eq!(
            events(&mut out),
            vec![Event::Request {
                id,
                key: b"k".to_vec(),
                payload: b"p".to_vec()
            }]
        );
        r.respond(id, b"r".to_vec(), &me(), &mut out)
            .expect("awaited");
        assert_eq!(
            events(&mut out),
            vec![Event::Response {
                id,
                from: me(),
                payload: b"r".to_vec()
            }]
        );
    }

    #[test]
    fn unanswered_local_request_expires_after_twice_the_timeout() {
        let timeout = Config::lan("t").request_timeout;
        let replicas = set(&[(ME, Status::Alive)]);
        let route = |_: &[u8]| replicas.clone();
        let mut r = router();
        let mut out = outbox(ME);
        let id = r
            .request(Instant::ZERO, b"k", vec![], &route, &me(), &mut out)
            .expect("accepted");
        assert_eq!(r.poll_timeout(), Some(Instant::ZERO + timeout * 2));
        r.handle_timeout(Instant::ZERO + timeout * 2, &route, &me(), &mut out);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(
            r.respond(id, vec![], &me(), &mut out),
            Err(RespondError::UnknownRequest)
        );
    }
}
