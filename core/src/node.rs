//! The node: the state machine that ties membership, failure detection,
//! dissemination, state, the ring and routing together.
//!
//! # Driving a node
//! Inputs go in through [`Node::join`], [`Node::handle_packet`],
//! [`Node::handle_timeout`], [`Node::set`], [`Node::handle_request`] and the rest,
//! each taking the current time. After **any** input, drain the outputs:
//! [`Node::poll_transmit`] until `None`, [`Node::poll_event`] until `None`, then
//! sleep until [`Node::poll_timeout`] (or until a datagram arrives) and call
//! [`Node::handle_timeout`]. Calling `handle_timeout` early or twice is harmless.
//!
//! ```
//! use grapevine::{Config, Instant, Node, NodeId};
//! use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
//!
//! let mut a = Node::new(Config::lan("demo"), NodeId::new(1u32, 1), ChaCha8Rng::seed_from_u64(1)).unwrap();
//! let mut b = Node::new(Config::lan("demo"), NodeId::new(2u32, 1), ChaCha8Rng::seed_from_u64(2)).unwrap();
//! let now = Instant::ZERO;
//! a.join(now, []);
//! b.join(now, [1]);
//! // A toy network: deliver everything instantly until both are quiet.
//! let mut now = now;
//! for _ in 0..50 {
//!     while let Some(t) = b.poll_transmit() { a.handle_packet(now, 2, &t.payload).unwrap(); }
//!     while let Some(t) = a.poll_transmit() { b.handle_packet(now, 1, &t.payload).unwrap(); }
//!     now = a.poll_timeout().unwrap().min(b.poll_timeout().unwrap());
//!     a.handle_timeout(now);
//!     b.handle_timeout(now);
//! }
//! assert_eq!(a.members().count(), 2);
//! assert_eq!(b.members().count(), 2);
//! ```

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, Ref, RefCell};
use core::time::Duration;

use rand_core::RngCore;

use crate::config::{Config, ConfigError};
use crate::dissemination::{Rumours, Subject, retransmit_limit};
use crate::event::Event;
use crate::failure_detector::{Detector, Probe, Relay, Suspicion, node_scale};
use crate::hash::{Map, SeededState, cluster_id, stable_hash};
use crate::keyring::{Keyring, SEAL_OVERHEAD};
use crate::membership::{Address, Change, MemberInfo, Members, NodeId, Status, supersedes};
use crate::placement::{Ring, Token, allocate_tokens, random_tokens, token_for};
use crate::routing::{
    Incoming, Outgoing, Replica, ReplicaSet, RequestError, RequestFailure, RequestId, Requests,
    RespondError,
};
use crate::state::{MAX_KEY_LEN, Merge, RESERVED_PREFIX, StateError, Store};
use crate::stats::Stats;
use crate::sync::{BUCKETS, SyncTree, bucket_of, entry_hash};
use crate::time::Instant;
use crate::wire::{
    BodyBuilder, DigestEntry, FLAG_SEALED, ForwardedRequest, ForwardedResponse, HEADER_LEN, Header,
    MemberClaim, Message, PacketError, SYNC_FANOUT, StateDelta, StatePage, decode_body,
    encode_message,
};

/// The state key carrying a node's ring tokens.
pub const TOKENS_KEY: &str = "gv.tokens";
/// The state key carrying a node's ring digest, for agreement.
pub const RING_KEY: &str = "gv.ring";

/// Most packets one anti-entropy message may cause in reply: keeps a repair's cost
/// per round flat whatever the size of the difference, and bounds amplification.
const SYNC_REPLY_PACKETS: usize = 2;
/// Most differing groups descended per exchange.
const SYNC_GROUPS_PER_ROUND: usize = 4;
/// Most ping-reqs served at once; more are dropped (they would only amplify a flood).
const MAX_RELAYS: usize = 64;

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit<A> {
    /// Where to send it.
    pub dest: A,
    /// The datagram, never longer than `max_datagram_size`.
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Active,
    Left,
}

/// A list with O(1) insert, remove and uniform random choice.
#[derive(Debug)]
struct Roster<A> {
    list: Vec<A>,
    pos: Map<A, usize>,
}

impl<A: Address> Roster<A> {
    fn new(h: SeededState) -> Self {
        Roster {
            list: Vec::new(),
            pos: Map::with_hasher(h),
        }
    }
    fn insert(&mut self, a: &A) -> bool {
        if self.pos.contains_key(a) {
            return false;
        }
        self.pos.insert(a.clone(), self.list.len());
        self.list.push(a.clone());
        true
    }
    fn remove(&mut self, a: &A) {
        if let Some(i) = self.pos.remove(a) {
            self.list.swap_remove(i);
            if let Some(moved) = self.list.get(i) {
                self.pos.insert(moved.clone(), i);
            }
        }
    }
    fn len(&self) -> usize {
        self.list.len()
    }
}

fn below(rng: &mut impl RngCore, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (rng.next_u64() % n as u64) as usize
    }
}

fn jitter(rng: &mut impl RngCore, d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(rng.next_u64() % nanos)
}

/// A Grapevine node: one member of one cluster, as a pure state machine.
///
/// `A` is the address type (usually `std::net::SocketAddr`), `R` the injected RNG:
/// the same seed and the same inputs give the same outputs, byte for byte.
/// See the [module docs](crate::node) for the drain rule.
pub struct Node<A: Address, R: RngCore> {
    config: Config,
    cluster_id: u64,
    me: NodeId<A>,
    /// `me`, encoded once: it opens every datagram we send.
    me_encoded: Vec<u8>,
    incarnation: u64,
    phase: Phase,
    seeds: Vec<A>,
    rng: R,
    members: Members<A>,
    live: Roster<A>,
    dead: Roster<A>,
    detector: Detector<A>,
    rumours: Rumours<A>,
    store: Store<A>,
    tree: SyncTree<A>,
    /// The ring, rebuilt lazily from `tokens` when `ring_dirty` says it is stale: a join
    /// storm changes the inputs many times a second, and only routing needs the result.
    ring: RefCell<Ring<A>>,
    ring_dirty: Cell<bool>,
    /// Parsed `gv.tokens` of every member that announced some.
    tokens: Map<A, Vec<Token>>,
    /// Each ring participant's contribution to `ring_hash`.
    ring_inputs: Map<A, u64>,
    /// XOR of `h(address, tokens)` over the ring's participants: the ring digest, kept
    /// up to date in O(1) per change, since the ring is a function of exactly these.
    ring_hash: u64,
    ring_seen: (u64, u32),
    agreement_dirty: bool,
    agreed: Option<u64>,
    tokens_at: Option<Instant>,
    requests: Requests<A>,
    next_gossip: Option<Instant>,
    deadline: Option<Instant>,
    transmits: VecDeque<Transmit<A>>,
    events: VecDeque<Event<A>>,
    stats: Stats,
    keyring: Option<Keyring>,
}

impl<A: Address, R: RngCore> core::fmt::Debug for Node<A, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.me)
            .field("incarnation", &self.incarnation)
            .field("members", &self.members.map.len())
            .finish_non_exhaustive()
    }
}

impl<A: Address, R: RngCore> Node<A, R> {
    /// A node that knows no one yet. Call [`Node::join`] to start it.
    pub fn new(config: Config, id: NodeId<A>, mut rng: R) -> Result<Self, ConfigError> {
        config.validate()?;
        let hasher = SeededState(rng.next_u64());
        let mut node = Node {
            cluster_id: cluster_id(&config.cluster_name),
            me_encoded: postcard::to_allocvec(&id).unwrap_or_default(),
            me: id,
            incarnation: 0,
            phase: Phase::Idle,
            seeds: Vec::new(),
            members: Members::new(hasher),
            live: Roster::new(hasher),
            dead: Roster::new(hasher),
            detector: Detector::new(config.awareness_max, hasher, rng.next_u32()),
            rumours: Rumours::new(config.max_rumours, hasher),
            store: Store::new(hasher),
            tree: SyncTree::new(hasher),
            ring: RefCell::new(Ring::default()),
            ring_dirty: Cell::new(false),
            tokens: Map::with_hasher(hasher),
            ring_inputs: Map::with_hasher(hasher),
            ring_hash: 0,
            ring_seen: (0, 0),
            agreement_dirty: false,
            agreed: None,
            tokens_at: None,
            requests: Requests::new(hasher),
            next_gossip: None,
            deadline: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            keyring: None,
            rng,
            config,
        };
        let (addr, generation) = (node.me.addr.clone(), node.me.generation);
        node.store.owner_mut(&addr, generation);
        node.refresh_tree(&addr);
        Ok(node)
    }

    /// This node's identity.
    pub fn id(&self) -> &NodeId<A> {
        &self.me
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters since the node was created.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// This node's incarnation (raised each time it refutes a suspicion of itself).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Lifeguard's local health multiplier: 0 when healthy, up to `awareness_max`.
    pub fn health(&self) -> u32 {
        self.detector.health
    }

    /// Installs (or with `None`, removes) the keyring that seals and opens datagrams.
    /// With a keyring, unsealed datagrams are refused.
    pub fn set_keyring(&mut self, keyring: Option<Keyring>) {
        self.keyring = keyring;
    }

    /// The keyring, to rotate keys in place.
    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.keyring.as_mut()
    }

    /// Every member this node knows, itself first, tombstones included.
    pub fn members(&self) -> impl Iterator<Item = MemberInfo<A>> + '_ {
        let me = MemberInfo {
            id: self.me.clone(),
            state: match self.phase {
                Phase::Left => Status::Left,
                _ => Status::Alive,
            },
            incarnation: self.incarnation,
            since: Instant::ZERO,
        };
        core::iter::once(me).chain(self.members.map.values().map(|m| MemberInfo {
            id: m.id.clone(),
            state: m.status,
            incarnation: m.incarnation,
            since: m.since,
        }))
    }

    /// Members currently alive or suspect, this node excluded.
    pub fn live_members(&self) -> usize {
        self.live.len()
    }

    /// The anti-entropy summary root: equal on two nodes that hold the same view.
    pub fn sync_root(&self) -> u64 {
        self.tree.root
    }

    // ----- inputs -------------------------------------------------------------------

    /// Starts the node and announces it to `seeds` (none for the first node).
    /// Calling it again after [`Node::leave`] rejoins with a higher incarnation.
    pub fn join(&mut self, now: Instant, seeds: impl IntoIterator<Item = A>) {
        if self.phase == Phase::Left {
            self.incarnation += 1;
        }
        self.phase = Phase::Active;
        self.seeds = seeds.into_iter().filter(|s| *s != self.me.addr).collect();
        let me = self.me.addr.clone();
        self.refresh_tree(&me);
        self.ring_changed(&me);
        self.queue_member_rumour(self.own_claim());
        let probe_in = jitter(&mut self.rng, self.config.probe_interval);
        self.detector.next_probe = Some(now + probe_in);
        let gossip_in = jitter(&mut self.rng, self.config.gossip_interval);
        self.next_gossip = Some(now + gossip_in);
        if self.config.vnodes > 0
            && self
                .store
                .get(&me)
                .is_none_or(|s| !s.entries.contains_key(TOKENS_KEY))
        {
            if self.seeds.is_empty() {
                self.choose_tokens(now);
            } else {
                self.tokens_at = Some(now + self.config.gossip_interval.saturating_mul(3));
            }
        }
        self.contact_seeds();
        self.after_input(now);
    }

    /// Leaves gracefully: spreads "left" so that no one suspects this node, and
    /// stops probing. Keep draining outputs for a moment so the news gets out.
    pub fn leave(&mut self, now: Instant) {
        if self.phase != Phase::Active {
            return;
        }
        self.phase = Phase::Left;
        let me = self.me.addr.clone();
        self.refresh_tree(&me);
        self.ring_changed(&me);
        self.detector.next_probe = None;
        self.detector.probe = None;
        let claim = self.own_claim();
        self.queue_member_rumour(claim.clone());
        // Tell a few members directly rather than waiting for the next round.
        let encoded = encode_message(&Message::Member(claim));
        for addr in self.pick_live(self.config.gossip_fanout, None) {
            self.send(addr, core::slice::from_ref(&encoded), 1);
        }
        for (id, _) in self.requests.outgoing.drain() {
            self.events.push_back(Event::RequestFailed {
                id: RequestId(id),
                reason: RequestFailure::NoReplica,
            });
        }
        self.after_input(now);
    }

    /// Takes one datagram from `from`. On error the datagram is dropped and counted in
    /// [`Stats::drops`], and the node is otherwise unchanged.
    pub fn handle_packet(&mut self, now: Instant, from: A, data: &[u8]) -> Result<(), PacketError> {
        let _ = from;
        self.stats.packets_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let decoded = self.open(data);
        let (sender, messages) = match decoded {
            Ok(v) => v,
            Err(e) => {
                self.stats.drops.count(&e);
                return Err(e);
            }
        };
        self.heard_from(now, &sender);
        let mut reply: Vec<Vec<u8>> = Vec::new();
        for msg in messages {
            self.on_message(now, &sender, msg, &mut reply);
        }
        if !reply.is_empty() {
            self.send(sender.addr.clone(), &reply, SYNC_REPLY_PACKETS);
        }
        self.after_input(now);
        Ok(())
    }

    /// Fires every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Idle {
            return;
        }
        if self.detector.next_probe.is_some_and(|t| t <= now) {
            self.probe_tick(now);
        }
        if let Some(p) = &self.detector.probe {
            if !p.acked && !p.indirect_sent && p.indirect_at <= now {
                self.send_indirect_probes();
            }
        }
        self.relay_timeouts(now);
        for (addr, generation, incarnation) in self.detector.expired(now) {
            let id = NodeId::new(addr, generation);
            self.apply_claim(
                now,
                MemberClaim {
                    id,
                    incarnation,
                    status: Status::Dead,
                },
                None,
            );
        }
        if self.next_gossip.is_some_and(|t| t <= now) {
            self.gossip_tick(now);
        }
        self.request_timeouts(now);
        self.after_input(now);
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next datagram to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<A>> {
        let t = self.transmits.pop_front()?;
        self.stats.packets_out += 1;
        self.stats.bytes_out += t.payload.len() as u64;
        Some(t)
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event<A>> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called; `None` before `join`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    // ----- state --------------------------------------------------------------------

    /// Writes `key = value` in this node's state and spreads it.
    pub fn set(&mut self, now: Instant, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.check_key(key)?;
        if value.len() > self.config.max_value_size {
            return Err(StateError::ValueTooLarge {
                len: value.len(),
                max: self.config.max_value_size,
            });
        }
        self.write(now, key, Some(value.to_vec()))
    }

    /// Deletes `key` from this node's state (a tombstone, collected after `tombstone_grace`).
    pub fn delete(&mut self, now: Instant, key: &str) -> Result<(), StateError> {
        self.check_key(key)?;
        self.write(now, key, None)
    }

    /// A value of `node`'s state as this node holds it.
    pub fn get(&self, node: &A, key: &str) -> Option<&[u8]> {
        self.store.get(node)?.entries.get(key)?.value.as_deref()
    }

    /// The live keys of `node`'s state as this node holds it, with their versions.
    pub fn keys(&self, node: &A) -> impl Iterator<Item = (&str, u64, &[u8])> + '_ {
        self.store
            .get(node)
            .into_iter()
            .flat_map(|s| s.entries.iter())
            .filter_map(|(k, e)| Some((k.as_str(), e.version, e.value.as_deref()?)))
    }

    /// The content hash of `node`'s state as this node holds it (equal on two nodes
    /// that hold the same keys at the same versions).
    pub fn state_hash(&self, node: &A) -> Option<u64> {
        self.store.get(node).map(|s| s.hash)
    }

    fn check_key(&self, key: &str) -> Result<(), StateError> {
        if self.phase == Phase::Left {
            return Err(StateError::Left);
        }
        if key.starts_with(RESERVED_PREFIX) {
            return Err(StateError::Reserved);
        }
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(StateError::BadKey);
        }
        Ok(())
    }

    fn write(&mut self, now: Instant, key: &str, value: Option<Vec<u8>>) -> Result<(), StateError> {
        let me = self.me.clone();
        let max_bytes = self.config.max_state_bytes;
        let Some(st) = self.store.owner_mut(&me.addr, me.generation) else {
            return Err(StateError::StateFull);
        };
        let version = st.max_version + 1;
        match st.merge(key, version, value.clone(), max_bytes) {
            Merge::Applied => {}
            _ => return Err(StateError::StateFull),
        }
        st.watermark = st.max_version;
        if value.is_none() {
            self.store.queue_tombstone(
                now + self.config.tombstone_grace,
                me.addr.clone(),
                me.generation,
                key.to_string(),
                version,
            );
        }
        let delta = StateDelta {
            owner: me.clone(),
            key: key.to_string(),
            version,
            value,
        };
        self.rumours.push(
            Subject::State(me.addr.clone(), key.to_string()),
            encode_message(&Message::State(delta)),
        );
        self.refresh_tree(&me.addr);
        if key == TOKENS_KEY {
            self.tokens_changed(&me.addr);
        }
        if key == RING_KEY {
            self.agreement_dirty = true;
        }
        self.after_input(now);
        Ok(())
    }

    // ----- routing ------------------------------------------------------------------

    /// The replicas of `key`: the owner, then the next `replication_factor - 1`
    /// distinct nodes clockwise, each with its state. All nodes agree once gossip
    /// has converged.
    pub fn route(&self, key: &[u8]) -> ReplicaSet<A> {
        let token = token_for(key);
        self.replica_set(token)
    }

    fn replica_set(&self, token: Token) -> ReplicaSet<A> {
        let replicas = self
            .ring()
            .replicas(token, self.config.replication_factor)
            .into_iter()
            .filter_map(|addr| {
                if *addr == self.me.addr {
                    return Some(Replica {
                        id: self.me.clone(),
                        state: Status::Alive,
                    });
                }
                let m = self.members.get(addr)?;
                Some(Replica {
                    id: m.id.clone(),
                    state: m.status,
                })
            })
            .collect();
        ReplicaSet { token, replicas }
    }

    /// The ring as this node sees it (rebuilt here if its inputs changed since).
    pub fn ring(&self) -> Ref<'_, Ring<A>> {
        if self.ring_dirty.get() {
            if let Ok(mut ring) = self.ring.try_borrow_mut() {
                *ring = Ring::new(
                    self.ring_inputs
                        .keys()
                        .map(|a| (a.clone(), self.tokens_of(a))),
                );
                self.ring_dirty.set(false);
            }
        }
        self.ring.borrow()
    }

    /// A digest of the ring as this node sees it: the XOR of `h(address, tokens)` over
    /// the members on the ring. Two nodes with the same digest build the same ring.
    pub fn ring_digest(&self) -> u64 {
        self.ring_hash
    }

    /// The tokens `node` announced, as this node holds them.
    pub fn tokens_of(&self, node: &A) -> Vec<Token> {
        self.tokens.get(node).cloned().unwrap_or_default()
    }

    /// Re-reads `addr`'s `gv.tokens` after it changed.
    fn tokens_changed(&mut self, addr: &A) {
        let parsed = self
            .get(addr, TOKENS_KEY)
            .and_then(|b| postcard::from_bytes::<Vec<Token>>(b).ok());
        match parsed {
            Some(t) if !t.is_empty() => self.tokens.insert(addr.clone(), t),
            _ => self.tokens.remove(addr),
        };
        self.ring_changed(addr);
    }

    /// Recomputes whether and how `addr` is on the ring.
    fn ring_changed(&mut self, addr: &A) {
        let on_ring = if *addr == self.me.addr {
            self.phase == Phase::Active
        } else {
            self.members.get(addr).is_some_and(|m| m.status.is_live())
        };
        let contribution = self
            .tokens
            .get(addr)
            .filter(|_| on_ring)
            .map(|t| stable_hash(&(addr, t)));
        let old = match contribution {
            Some(c) => self.ring_inputs.insert(addr.clone(), c),
            None => self.ring_inputs.remove(addr),
        };
        if old != contribution {
            self.ring_hash ^= old.unwrap_or(0) ^ contribution.unwrap_or(0);
            self.ring_dirty.set(true);
            self.agreement_dirty = true;
        }
    }

    fn max_request_bytes(&self) -> usize {
        // Room for the sender id, the origin id, the request id and varint lengths.
        self.body_budget().saturating_sub(128)
    }

    /// Accepts a client request for `key`. If this node is a replica the request is
    /// delivered here as [`Event::Request`]; otherwise it is forwarded to the first
    /// live replica. Either way the answer arrives as [`Event::Response`] (or
    /// [`Event::RequestFailed`]) with the returned id.
    pub fn handle_request(
        &mut self,
        now: Instant,
        key: &[u8],
        payload: Vec<u8>,
    ) -> Result<RequestId, RequestError> {
        if self.phase != Phase::Active {
            return Err(RequestError::Left);
        }
        let len = key.len() + payload.len();
        let max = self.max_request_bytes();
        if len > max {
            return Err(RequestError::TooLarge { len, max });
        }
        if self.requests.in_flight() >= self.config.max_requests_in_flight {
            return Err(RequestError::TooManyInFlight);
        }
        let set = self.route(key);
        if set.replicas.is_empty() {
            return Err(RequestError::NoReplica);
        }
        let id = self.requests.next_id();
        if set.replicas.iter().any(|r| r.id == self.me) {
            self.deliver_locally(now, id, None, key.to_vec(), payload);
        } else {
            let Some(target) = first_live(&set, None) else {
                return Err(RequestError::NoReplica);
            };
            let deadline = now + self.config.request_timeout;
            self.forward(target.clone(), id, key.to_vec(), payload.clone());
            self.requests.outgoing.insert(
                id,
                Outgoing {
                    key: key.to_vec(),
                    payload,
                    target,
                    tried: 1,
                    deadline,
                },
            );
        }
        self.after_input(now);
        Ok(RequestId(id))
    }

    /// Answers a request delivered as [`Event::Request`].
    pub fn respond(
        &mut self,
        now: Instant,
        id: RequestId,
        payload: Vec<u8>,
    ) -> Result<(), RespondError> {
        let max = self.max_request_bytes();
        if payload.len() > max {
            return Err(RespondError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let incoming = self
            .requests
            .incoming
            .remove(&id.0)
            .ok_or(RespondError::UnknownRequest)?;
        match incoming.origin {
            None => self.events.push_back(Event::Response {
                id,
                from: self.me.clone(),
                payload,
            }),
            Some((origin, origin_id)) => {
                let msg = encode_message(&Message::<A>::Response(ForwardedResponse {
                    id: origin_id,
                    payload,
                }));
                self.send(origin.addr, &[msg], 1);
            }
        }
        self.after_input(now);
        Ok(())
    }

    fn deliver_locally(
        &mut self,
        now: Instant,
        id: u64,
        origin: Option<(NodeId<A>, u64)>,
        key: Vec<u8>,
        payload: Vec<u8>,
    ) {
        let deadline = now + self.config.request_timeout.saturating_mul(2);
        self.requests
            .incoming
            .insert(id, Incoming { origin, deadline });
        self.stats.requests_local += 1;
        self.events.push_back(Event::Request {
            id: RequestId(id),
            key,
            payload,
        });
    }

    fn forward(&mut self, to: A, id: u64, key: Vec<u8>, payload: Vec<u8>) {
        let req = ForwardedRequest {
            origin: self.me.clone(),
            id,
            hops: self.config.request_max_hops,
            key,
            payload,
        };
        self.stats.requests_forwarded += 1;
        self.send(to, &[encode_message(&Message::Request(req))], 1);
    }

    fn on_forwarded_request(&mut self, now: Instant, req: ForwardedRequest<A>) {
        let set = self.route(&req.key);
        if set.replicas.iter().any(|r| r.id == self.me) {
            let window = self.config.max_requests_in_flight;
            if !self.requests.first_sighting(&req.origin, req.id, window) {
                self.stats.requests_duplicate += 1;
                return;
            }
            if self.requests.in_flight() < self.config.max_requests_in_flight {
                let id = self.requests.next_id();
                self.deliver_locally(now, id, Some((req.origin, req.id)), req.key, req.payload);
            }
        } else if req.hops > 1 {
            if let Some(next) = first_live(&set, Some(&req.origin.addr)) {
                let fwd = ForwardedRequest {
                    hops: req.hops - 1,
                    ..req
                };
                self.stats.requests_forwarded += 1;
                self.send(next, &[encode_message(&Message::Request(fwd))], 1);
            }
        }
    }

    fn on_response(&mut self, sender: &NodeId<A>, resp: ForwardedResponse) {
        match self.requests.outgoing.remove(&resp.id) {
            Some(_) => self.events.push_back(Event::Response {
                id: RequestId(resp.id),
                from: sender.clone(),
                payload: resp.payload,
            }),
            None => self.stats.responses_dropped += 1,
        }
    }

    /// Tries the next live replica once, then gives up.
    fn fail_over(&mut self, now: Instant, id: u64) {
        let Some(out) = self.requests.outgoing.remove(&id) else {
            return;
        };
        if out.tried < 2 {
            let set = self.route(&out.key);
            if let Some(next) = first_live(&set, Some(&out.target)).filter(|a| *a != self.me.addr) {
                self.stats.requests_failed_over += 1;
                self.forward(next.clone(), id, out.key.clone(), out.payload.clone());
                let deadline = now + self.config.request_timeout;
                self.requests.outgoing.insert(
                    id,
                    Outgoing {
                        target: next,
                        tried: out.tried + 1,
                        deadline,
                        ..out
                    },
                );
                return;
            }
            self.events.push_back(Event::RequestFailed {
                id: RequestId(id),
                reason: RequestFailure::NoReplica,
            });
            return;
        }
        self.events.push_back(Event::RequestFailed {
            id: RequestId(id),
            reason: RequestFailure::Timeout,
        });
    }

    fn request_timeouts(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .requests
            .outgoing
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.fail_over(now, id);
        }
        self.requests.incoming.retain(|_, i| i.deadline > now);
    }

    // ----- packets ------------------------------------------------------------------

    fn body_budget(&self) -> usize {
        let seal = if self.keyring.is_some() {
            SEAL_OVERHEAD
        } else {
            0
        };
        self.config.max_datagram_size - HEADER_LEN - seal
    }

    fn open(&mut self, data: &[u8]) -> Result<(NodeId<A>, Vec<Message<A>>), PacketError> {
        if data.len() > self.config.max_datagram_size {
            return Err(PacketError::Oversized { len: data.len() });
        }
        let header = Header::read(data, self.cluster_id)?;
        let body = &data[HEADER_LEN..];
        let (sender, messages) = match (&self.keyring, header.flags & FLAG_SEALED != 0) {
            (None, false) => decode_body::<A>(body)?,
            (Some(ring), true) => {
                let plain = ring
                    .open(&data[..HEADER_LEN], body)
                    .ok_or(PacketError::Unauthenticated)?;
                decode_body::<A>(&plain)?
            }
            _ => return Err(PacketError::Unauthenticated),
        };
        if sender.addr == self.me.addr {
            return Err(PacketError::FromSelf);
        }
        Ok((sender, messages))
    }

    /// Sends encoded messages to `to` in at most `max_packets` datagrams, filling the
    /// room left in each with rumours. Messages that do not fit are dropped: every
    /// caller is a protocol step that will be retried by a later round.
    fn send(&mut self, to: A, messages: &[Vec<u8>], max_packets: usize) {
        if to == self.me.addr {
            return;
        }
        let budget = self.body_budget();
        let limit = retransmit_limit(self.config.retransmit_mult, self.live.len() + 1);
        let mut rest = messages;
        for _ in 0..max_packets.max(1) {
            let mut body = BodyBuilder::with_encoded_sender(&self.me_encoded, budget);
            while let Some((first, tail)) = rest.split_first() {
                if !body.push_encoded(first) {
                    if body.is_empty() {
                        // Larger than a datagram on its own: it can never be sent.
                        rest = tail;
                        continue;
                    }
                    break;
                }
                rest = tail;
            }
            self.rumours.fill(&mut body, limit);
            if body.is_empty() {
                return;
            }
            self.emit(to.clone(), body.finish());
            if rest.is_empty() {
                return;
            }
        }
    }

    fn emit(&mut self, dest: A, body: Vec<u8>) {
        let sealed = self.keyring.is_some();
        let mut payload =
            Vec::with_capacity(HEADER_LEN + body.len() + if sealed { SEAL_OVERHEAD } else { 0 });
        Header {
            flags: if sealed { FLAG_SEALED } else { 0 },
            cluster_id: self.cluster_id,
        }
        .write(&mut payload);
        match &self.keyring {
            Some(ring) => {
                let mut nonce = [0u8; 24];
                self.rng.fill_bytes(&mut nonce);
                ring.seal(&mut payload, HEADER_LEN, &body, nonce);
            }
            None => payload.extend_from_slice(&body),
        }
        debug_assert!(payload.len() <= self.config.max_datagram_size);
        self.transmits.push_back(Transmit { dest, payload });
    }

    fn on_message(
        &mut self,
        now: Instant,
        sender: &NodeId<A>,
        msg: Message<A>,
        reply: &mut Vec<Vec<u8>>,
    ) {
        match msg {
            Message::Ping { seq } => reply.push(encode_message(&Message::<A>::Ack { seq })),
            Message::Ack { seq } => self.on_ack(&sender.addr, seq),
            Message::PingReq { seq, target } => self.on_ping_req(now, sender, seq, target, reply),
            Message::Nack { seq } => {
                if let Some(p) = self.detector.probe.as_mut().filter(|p| p.seq == seq) {
                    p.nacks += 1;
                    self.stats.nacks += 1;
                }
            }
            Message::Member(claim) => {
                let accuser = (claim.status == Status::Suspect).then(|| sender.addr.clone());
                self.apply_claim(now, claim, accuser);
            }
            Message::Suspect {
                id,
                incarnation,
                accuser,
            } => {
                self.apply_claim(
                    now,
                    MemberClaim {
                        id,
                        incarnation,
                        status: Status::Suspect,
                    },
                    Some(accuser),
                );
            }
            Message::State(delta) => self.apply_delta(now, delta),
            Message::SyncRoot { root } => {
                if root != self.tree.root {
                    let hashes = self.tree.groups.to_vec();
                    reply.push(encode_message(&Message::<A>::SyncLevel {
                        depth: 0,
                        index: 0,
                        hashes,
                    }));
                } else if self.tokens_at.is_some() {
                    // Our view equals a peer's: we know the ring, so choose tokens now.
                    self.tokens_at = Some(now);
                }
            }
            Message::SyncLevel {
                depth,
                index,
                hashes,
            } => self.on_sync_level(depth, index, &hashes, reply),
            Message::SyncDigest {
                bucket,
                complete,
                entries,
            } => self.on_sync_digest(now, sender, bucket, complete, entries, reply),
            Message::SyncRequest { owner, after } => {
                self.state_pages(&sender.addr, &owner, after, reply)
            }
            Message::StatePage(page) => self.apply_page(now, page),
            Message::Request(req) => self.on_forwarded_request(now, req),
            Message::Response(resp) => self.on_response(sender, resp),
        }
    }

    /// Any datagram proves its sender exists: a stranger or a new life of a known
    /// member is admitted as alive at incarnation 0. That cannot undo a verdict about
    /// a known life, since incarnation 0 never supersedes it.
    fn heard_from(&mut self, now: Instant, sender: &NodeId<A>) {
        let known = self.members.get(&sender.addr).map(|m| m.id.generation);
        if known.is_none_or(|g| g < sender.generation) {
            let claim = MemberClaim {
                id: sender.clone(),
                incarnation: 0,
                status: Status::Alive,
            };
            self.apply_claim(now, claim, None);
        }
    }

    // ----- membership ---------------------------------------------------------------

    fn own_claim(&self) -> MemberClaim<A> {
        let status = if self.phase == Phase::Left {
            Status::Left
        } else {
            Status::Alive
        };
        MemberClaim {
            id: self.me.clone(),
            incarnation: self.incarnation,
            status,
        }
    }

    fn queue_member_rumour(&mut self, claim: MemberClaim<A>) {
        let subject = Subject::Member(claim.id.addr.clone());
        if self
            .rumours
            .push(subject, encode_message(&Message::Member(claim)))
        {
            self.stats.rumours_evicted += 1;
        }
    }

    fn apply_claim(&mut self, now: Instant, claim: MemberClaim<A>, accuser: Option<A>) {
        if claim.id.addr == self.me.addr {
            return self.claim_about_me(claim);
        }
        let room = self.members.map.len() < self.config.max_members;
        let known_before = self.members.get(&claim.id.addr).is_some();
        let change = self.members.apply(&claim, now, room);
        if !known_before && change == Change::None && claim.status == Status::Alive && !room {
            self.stats.members_refused += 1;
        }
        let addr = claim.id.addr.clone();
        match change {
            Change::None => {
                // The same suspicion from another accuser shortens the timeout.
                if claim.status == Status::Suspect {
                    if let Some(acc) = accuser {
                        if self.detector.confirm(&addr, claim.incarnation, acc.clone()) {
                            self.queue_suspect_rumour(&claim, acc);
                        }
                    }
                }
                return;
            }
            Change::Refreshed => {}
            Change::Joined => {
                self.detector.clear_suspicion(&addr);
                // An older life's state goes; the new life's arrives with its first key.
                if self
                    .store
                    .get(&addr)
                    .is_some_and(|s| s.generation < claim.id.generation)
                {
                    self.store.owners.remove(&addr);
                }
                // A new life starts with no tokens: its old ones went with its old state.
                self.tokens.remove(&addr);
                self.became_live(&addr);
                self.events.push_back(Event::MemberJoined(claim.id.clone()));
            }
            Change::Recovered => {
                self.detector.clear_suspicion(&addr);
                self.became_live(&addr);
                self.events
                    .push_back(Event::MemberRecovered(claim.id.clone()));
                if claim.status == Status::Suspect {
                    self.start_suspicion(now, &claim, accuser.clone());
                    self.events
                        .push_back(Event::MemberSuspect(claim.id.clone()));
                }
            }
            Change::Suspected => {
                self.stats.suspicions += 1;
                self.start_suspicion(now, &claim, accuser.clone());
                self.events
                    .push_back(Event::MemberSuspect(claim.id.clone()));
            }
            Change::Died | Change::Left => {
                self.detector.clear_suspicion(&addr);
                self.live.remove(&addr);
                self.dead.insert(&addr);
                self.ring_changed(&addr);
                let failed: Vec<u64> = self
                    .requests
                    .outgoing
                    .iter()
                    .filter(|(_, o)| o.target == addr)
                    .map(|(id, _)| *id)
                    .collect();
                for id in failed {
                    self.fail_over(now, id);
                }
                if change == Change::Died {
                    self.stats.deaths += 1;
                    self.events.push_back(Event::MemberDied(claim.id.clone()));
                } else {
                    self.events.push_back(Event::MemberLeft(claim.id.clone()));
                }
            }
        }
        self.refresh_tree(&addr);
        match (claim.status, accuser) {
            (Status::Suspect, Some(acc)) => self.queue_suspect_rumour(&claim, acc),
            _ => self.queue_member_rumour(claim),
        }
    }

    fn queue_suspect_rumour(&mut self, claim: &MemberClaim<A>, accuser: A) {
        let msg = Message::Suspect {
            id: claim.id.clone(),
            incarnation: claim.incarnation,
            accuser,
        };
        if self
            .rumours
            .push(Subject::Member(claim.id.addr.clone()), encode_message(&msg))
        {
            self.stats.rumours_evicted += 1;
        }
    }

    fn became_live(&mut self, addr: &A) {
        self.dead.remove(addr);
        if self.live.insert(addr) {
            // Insert at a random place in the rest of this probe pass (memberlist does
            // the same), so a newcomer is probed within one pass.
            if self.detector.order.len() > 2 * self.live.len() + 16 {
                // Members that died and came back left stale slots: start a fresh pass.
                self.detector.order.clear();
                self.detector.pos = 0;
            }
            let start = self.detector.pos.min(self.detector.order.len());
            let at = start + below(&mut self.rng, self.detector.order.len() - start + 1);
            self.detector.order.insert(at, addr.clone());
        }
        self.ring_changed(addr);
    }

    fn start_suspicion(&mut self, now: Instant, claim: &MemberClaim<A>, accuser: Option<A>) {
        let n = self.live.len() + 1;
        let min = self
            .config
            .probe_interval
            .mul_f64(f64::from(self.config.suspicion_mult) * node_scale(n));
        let max = min.saturating_mul(self.config.suspicion_max_mult);
        // Lifeguard's K: independent confirmations we may expect. With few members
        // there is no one left to confirm, so the minimum applies at once.
        let expected = (self.config.indirect_probes as u32).min(n.saturating_sub(2) as u32);
        let suspicion = Suspicion {
            generation: claim.id.generation,
            incarnation: claim.incarnation,
            start: now,
            accusers: accuser.into_iter().collect(),
            expected,
            min,
            max,
        };
        self.detector.suspect(claim.id.addr.clone(), suspicion);
    }

    fn claim_about_me(&mut self, claim: MemberClaim<A>) {
        let accusation = matches!(claim.status, Status::Suspect | Status::Dead | Status::Left);
        if claim.id.generation != self.me.generation || !accusation || self.phase != Phase::Active {
            return;
        }
        if claim.incarnation < self.incarnation {
            // A stale accusation: our refutation missed whoever still spreads it. Send
            // the refutation round again rather than wait for anti-entropy to repair it.
            self.queue_member_rumour(self.own_claim());
            return;
        }
        // Refute: only we raise our incarnation, so alive at a higher one beats the claim
        // everywhere. Having to refute also means we may be the slow one (Lifeguard).
        self.incarnation = claim.incarnation.saturating_add(1);
        self.stats.refutations += 1;
        self.detector.health_up(1);
        let me = self.me.addr.clone();
        self.refresh_tree(&me);
        self.queue_member_rumour(self.own_claim());
    }

    /// Recomputes a member's contribution to the anti-entropy summary.
    fn refresh_tree(&mut self, addr: &A) {
        let hash = if *addr == self.me.addr {
            if self.phase == Phase::Left {
                // Peers drop a member that left from their trees; so do we.
                self.tree.set(addr, None);
                return;
            }
            let st = self.store.hash_of(addr, self.me.generation);
            Some(entry_hash(addr, self.me.generation, self.incarnation, st))
        } else {
            self.members
                .get(addr)
                .filter(|m| m.status.is_live())
                .map(|m| {
                    entry_hash(
                        addr,
                        m.id.generation,
                        m.incarnation,
                        self.store.hash_of(addr, m.id.generation),
                    )
                })
        };
        self.tree.set(addr, hash);
    }

    // ----- failure detection --------------------------------------------------------

    fn probe_tick(&mut self, now: Instant) {
        // Close the previous probe: no ack means suspicion, and missing nacks mean
        // the fault may be ours.
        if let Some(p) = self.detector.probe.take() {
            if p.acked {
                self.detector.health_down();
            } else {
                let missed = if p.expected_nacks == 0 {
                    1
                } else {
                    p.expected_nacks.saturating_sub(p.nacks)
                };
                self.detector.health_up(missed);
                if let Some(m) = self.members.get(&p.target.addr) {
                    if m.id.generation == p.target.generation && m.status.is_live() {
                        let claim = MemberClaim {
                            id: m.id.clone(),
                            incarnation: m.incarnation,
                            status: Status::Suspect,
                        };
                        let me = self.me.addr.clone();
                        self.apply_claim(now, claim, Some(me));
                    }
                }
            }
        }
        self.detector.next_probe = Some(now + self.detector.scaled(self.config.probe_interval));
        let Some(target) = self.next_probe_target() else {
            return;
        };
        let Some(m) = self.members.get(&target) else {
            return;
        };
        let seq = self.detector.next_seq();
        self.detector.probe = Some(Probe {
            helpers: Vec::new(),
            target: m.id.clone(),
            seq,
            indirect_at: now + self.detector.scaled(self.config.probe_timeout),
            indirect_sent: false,
            acked: false,
            expected_nacks: 0,
            nacks: 0,
        });
        self.stats.probes += 1;
        let mut msgs = alloc::vec![encode_message(&Message::<A>::Ping { seq })];
        if let Some(m) = self
            .members
            .get(&target)
            .filter(|m| m.status == Status::Suspect)
        {
            // Lifeguard's buddy system: tell a suspect directly, so it can refute now
            // rather than when the rumour happens to reach it.
            msgs.push(encode_message(&Message::Member(m.claim())));
        }
        self.send(target, &msgs, 1);
    }

    /// Round-robin over a shuffled list of live members, reshuffled after each pass,
    /// so every member is probed within two passes (SWIM §4.3).
    fn next_probe_target(&mut self) -> Option<A> {
        for _ in 0..2 {
            while self.detector.pos < self.detector.order.len() {
                let a = self.detector.order[self.detector.pos].clone();
                self.detector.pos += 1;
                if self.live.pos.contains_key(&a) {
                    return Some(a);
                }
            }
            let mut order = self.live.list.clone();
            for i in (1..order.len()).rev() {
                let j = below(&mut self.rng, i + 1);
                order.swap(i, j);
            }
            self.detector.order = order;
            self.detector.pos = 0;
        }
        None
    }

    fn send_indirect_probes(&mut self) {
        let Some(p) = self.detector.probe.as_mut() else {
            return;
        };
        p.indirect_sent = true;
        let (seq, target) = (p.seq, p.target.clone());
        let helpers = self.pick_live(self.config.indirect_probes, Some(&target.addr));
        if let Some(p) = self.detector.probe.as_mut() {
            p.expected_nacks = helpers.len() as u32;
        }
        if let Some(p) = self.detector.probe.as_mut() {
            p.helpers = helpers.clone();
        }
        // A second direct ping next to the indirect ones: memberlist's TCP fallback in
        // spirit. One lost datagram on the direct path no longer costs a suspicion.
        let again = encode_message(&Message::<A>::Ping { seq });
        self.send(target.addr.clone(), &[again], 1);
        let msg = encode_message(&Message::PingReq { seq, target });
        for h in helpers {
            self.stats.indirect_probes += 1;
            self.send(h, core::slice::from_ref(&msg), 1);
        }
    }

    /// An ack counts only from whom we asked: the target, or a helper relaying for it.
    fn on_ack(&mut self, from: &A, seq: u32) {
        if let Some(p) = self.detector.probe.as_mut().filter(|p| p.seq == seq) {
            if p.target.addr == *from || p.helpers.contains(from) {
                p.acked = true;
            }
            return;
        }
        if let Some(i) = self
            .detector
            .relays
            .iter()
            .position(|r| r.seq == seq && r.target == *from)
        {
            let r = self.detector.relays.swap_remove(i);
            self.send(
                r.origin,
                &[encode_message(&Message::<A>::Ack { seq: r.origin_seq })],
                1,
            );
        }
    }

    fn on_ping_req(
        &mut self,
        now: Instant,
        sender: &NodeId<A>,
        seq: u32,
        target: NodeId<A>,
        reply: &mut Vec<Vec<u8>>,
    ) {
        if target.addr == self.me.addr {
            reply.push(encode_message(&Message::<A>::Ack { seq }));
            return;
        }
        if self.detector.relays.len() >= MAX_RELAYS {
            return;
        }
        let my_seq = self.detector.next_seq();
        // Answer with a nack a little before the requester's own deadline.
        let nack_at = now + self.config.probe_timeout.mul_f64(0.8);
        self.detector.relays.push(Relay {
            seq: my_seq,
            target: target.addr.clone(),
            origin: sender.addr.clone(),
            origin_seq: seq,
            nack_at,
        });
        self.send(
            target.addr,
            &[encode_message(&Message::<A>::Ping { seq: my_seq })],
            1,
        );
    }

    fn relay_timeouts(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.detector.relays.len() {
            if self.detector.relays[i].nack_at <= now {
                let r = self.detector.relays.swap_remove(i);
                self.send(
                    r.origin,
                    &[encode_message(&Message::<A>::Nack { seq: r.origin_seq })],
                    1,
                );
            } else {
                i += 1;
            }
        }
    }

    /// Up to `k` distinct random live members, never `except`.
    fn pick_live(&mut self, k: usize, except: Option<&A>) -> Vec<A> {
        let n = self.live.len();
        let mut out: Vec<A> = Vec::with_capacity(k);
        if n <= k + 1 {
            out.extend(
                self.live
                    .list
                    .iter()
                    .filter(|a| Some(*a) != except)
                    .cloned(),
            );
            out.truncate(k);
            return out;
        }
        let mut tries = 0;
        while out.len() < k && tries < 8 * k {
            tries += 1;
            let a = &self.live.list[below(&mut self.rng, n)];
            if Some(a) != except && !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    // ----- gossip and anti-entropy --------------------------------------------------

    fn gossip_tick(&mut self, now: Instant) {
        self.next_gossip = Some(now + self.config.gossip_interval);
        self.collect_garbage(now);
        if self.tokens_at.is_some_and(|t| t <= now) {
            self.choose_tokens(now);
        }
        if self.phase == Phase::Left {
            // Only finish spreading the news of our leaving.
            for addr in self.pick_live(self.config.gossip_fanout, None) {
                self.send(addr, &[], 1);
            }
            return;
        }
        self.publish_ring_digest(now);
        self.check_agreement();
        // Fast path: push pending rumours to a few members.
        if !self.rumours.is_empty() {
            for addr in self.pick_live(self.config.gossip_fanout, None) {
                if self.rumours.is_empty() {
                    break;
                }
                self.send(addr, &[], 1);
            }
        }
        // Repair path: one summary exchange with one live member.
        let root = encode_message(&Message::<A>::SyncRoot {
            root: self.tree.root,
        });
        if let Some(peer) = self.pick_live(1, None).pop() {
            self.stats.syncs += 1;
            self.send(peer, core::slice::from_ref(&root), 1);
        }
        // Now and then, a dead member (Cassandra: probability dead / (live + 1)), so
        // that the two sides of a healed partition find each other without help.
        let (dead, live) = (self.dead.len(), self.live.len());
        if dead > 0 && below(&mut self.rng, live + 1) < dead {
            let target = self.dead.list[below(&mut self.rng, dead)].clone();
            let alive = encode_message(&Message::Member(self.own_claim()));
            self.send(target, &[alive, root], 1);
        }
        if self.live.len() == 0 {
            self.contact_seeds();
        }
    }

    fn contact_seeds(&mut self) {
        if self.phase != Phase::Active {
            return;
        }
        let alive = encode_message(&Message::Member(self.own_claim()));
        let root = encode_message(&Message::<A>::SyncRoot {
            root: self.tree.root,
        });
        for seed in self.seeds.clone() {
            self.send(seed, &[alive.clone(), root.clone()], 1);
        }
    }

    fn on_sync_level(&mut self, depth: u8, index: u16, theirs: &[u64], reply: &mut Vec<Vec<u8>>) {
        let Some(mine) = self.tree.children(depth, index) else {
            return;
        };
        if theirs.len() != mine.len() {
            return;
        }
        let differing: Vec<usize> = (0..mine.len()).filter(|&i| mine[i] != theirs[i]).collect();
        if differing.is_empty() {
            return;
        }
        // Start at a random differing child so that repeated rounds cover them all.
        let start = below(&mut self.rng, differing.len());
        let picks = differing.iter().cycle().skip(start).take(differing.len());
        match depth {
            0 => {
                for &g in picks.take(SYNC_GROUPS_PER_ROUND) {
                    let hashes = self
                        .tree
                        .children(1, g as u16)
                        .map(<[u64]>::to_vec)
                        .unwrap_or_default();
                    reply.push(encode_message(&Message::<A>::SyncLevel {
                        depth: 1,
                        index: g as u16,
                        hashes,
                    }));
                }
            }
            _ => {
                for &b in picks {
                    let bucket = usize::from(index) * SYNC_FANOUT + b;
                    reply.push(self.digest_message(bucket));
                }
            }
        }
    }

    fn digest_entry(&self, addr: &A) -> Option<DigestEntry<A>> {
        let (claim, generation) = if *addr == self.me.addr {
            (self.own_claim(), self.me.generation)
        } else {
            let m = self.members.get(addr)?;
            (m.claim(), m.id.generation)
        };
        let st = self.store.get(addr).filter(|s| s.generation == generation);
        Some(DigestEntry {
            claim,
            state_hash: st.map_or(0, |s| s.hash),
            watermark: st.map_or(0, |s| s.watermark),
        })
    }

    fn digest_message(&self, bucket: usize) -> Vec<u8> {
        // Fit the digest in one datagram with room for the packet's framing.
        let budget = self.body_budget().saturating_sub(64);
        let mut entries = Vec::new();
        let mut size = 0;
        let mut complete = true;
        for addr in &self.tree.members[bucket] {
            let Some(e) = self.digest_entry(addr) else {
                continue;
            };
            let len = postcard::experimental::serialized_size(&e).unwrap_or(usize::MAX);
            if size + len > budget {
                complete = false;
                break;
            }
            size += len;
            entries.push(e);
        }
        encode_message(&Message::SyncDigest {
            bucket: bucket as u16,
            complete,
            entries,
        })
    }

    fn on_sync_digest(
        &mut self,
        now: Instant,
        sender: &NodeId<A>,
        bucket: u16,
        complete: bool,
        entries: Vec<DigestEntry<A>>,
        reply: &mut Vec<Vec<u8>>,
    ) {
        let bucket = usize::from(bucket);
        if bucket >= BUCKETS {
            return;
        }
        for e in &entries {
            let addr = e.claim.id.addr.clone();
            if bucket_of(&addr) != bucket {
                continue;
            }
            // Membership: the newer claim wins on both sides.
            if addr == self.me.addr {
                if e.claim != self.own_claim() {
                    self.claim_about_me(e.claim.clone());
                    reply.push(encode_message(&Message::Member(self.own_claim())));
                }
            } else {
                match self.members.get(&addr) {
                    Some(m) if supersedes(m.rank(), e.claim.rank()) => {
                        reply.push(encode_message(&Message::Member(m.claim())));
                    }
                    _ => {
                        let accuser =
                            (e.claim.status == Status::Suspect).then(|| sender.addr.clone());
                        self.apply_claim(now, e.claim.clone(), accuser);
                    }
                }
            }
            // State: compare content; ask for what we may lack, send what they may lack.
            let Some(mine) = self.digest_entry(&addr) else {
                continue;
            };
            if mine.claim.id.generation != e.claim.id.generation || !mine.claim.status.is_live() {
                continue;
            }
            if mine.state_hash == e.state_hash {
                // Same content, so we hold what they hold; but never trust a watermark past
                // the versions we actually have, nor one about our own state.
                if addr != self.me.addr {
                    if let Some(st) = self.store.owner_mut(&addr, mine.claim.id.generation) {
                        st.watermark = st.watermark.max(e.watermark.min(st.max_version));
                    }
                }
                continue;
            }
            if addr != self.me.addr {
                let owner = e.claim.id.clone();
                reply.push(encode_message(&Message::SyncRequest {
                    owner,
                    after: mine.watermark,
                }));
            }
            if addr != sender.addr {
                self.state_pages(&sender.addr, &e.claim.id, e.watermark, reply);
            }
        }
        if complete {
            // Live members they did not list: tell them.
            let listed: Vec<&A> = entries.iter().map(|e| &e.claim.id.addr).collect();
            let missing: Vec<A> = self.tree.members[bucket]
                .iter()
                .filter(|a| !listed.contains(a) && **a != sender.addr)
                .cloned()
                .collect();
            for addr in missing {
                if let Some(e) = self.digest_entry(&addr) {
                    reply.push(encode_message(&Message::Member(e.claim)));
                }
            }
        }
    }

    /// Pages of `owner`'s state above `after`, oldest first, each fitting one datagram.
    ///
    /// A requester whose watermark is below our collected-tombstone floor may hold keys
    /// deleted since: it gets a reset instead, the whole state from version 0, so that
    /// every key it holds and we do not is dropped. Resets are rare (a peer away for
    /// longer than the grace) and bounded by `max_state_bytes`, so they are sent at once
    /// rather than a page per round.
    fn state_pages(&mut self, to: &A, owner: &NodeId<A>, after: u64, reply: &mut Vec<Vec<u8>>) {
        let Some(st) = self
            .store
            .get(&owner.addr)
            .filter(|s| s.generation == owner.generation)
        else {
            return;
        };
        let reset = after < st.gc_floor;
        if !reset && st.watermark <= after && st.max_version <= after {
            return;
        }
        let after = if reset { 0 } else { after };
        let budget = self.body_budget().saturating_sub(96);
        let entries = st.since(after);
        let max_pages = if reset {
            usize::MAX
        } else {
            SYNC_REPLY_PACKETS
        };
        let mut pages = Vec::new();
        let mut from = after;
        let mut i = 0;
        while pages.len() < max_pages {
            let mut page = Vec::new();
            let mut size = 0;
            while let Some((k, e)) = entries.get(i) {
                let len = k.len() + e.value.as_ref().map_or(0, Vec::len) + 24;
                if size + len > budget && !page.is_empty() {
                    break;
                }
                size += len;
                page.push(((*k).clone(), e.version, e.value.clone()));
                i += 1;
            }
            let truncated = i < entries.len();
            let last = page.last().map_or(from, |p| p.1);
            let upto = if truncated { last } else { u64::MAX }
                .min(st.watermark)
                .max(from);
            let msg = Message::StatePage(StatePage {
                owner: owner.clone(),
                after: from,
                upto,
                reset,
                floor: st.gc_floor,
                entries: page,
            });
            pages.push(encode_message(&msg));
            from = upto;
            if !truncated {
                break;
            }
        }
        if reset {
            let count = pages.len();
            self.send(to.clone(), &pages, count);
        } else {
            reply.extend(pages);
        }
    }

    fn owner_is_live(&self, owner: &NodeId<A>) -> bool {
        owner.addr != self.me.addr
            && self
                .members
                .get(&owner.addr)
                .is_some_and(|m| m.id.generation == owner.generation && m.status.is_live())
    }

    fn apply_delta(&mut self, now: Instant, delta: StateDelta<A>) {
        if !self.owner_is_live(&delta.owner) {
            return;
        }
        let applied = self.merge_one(
            now,
            &delta.owner,
            &delta.key,
            delta.version,
            delta.value.clone(),
        );
        if applied {
            let subject = Subject::State(delta.owner.addr.clone(), delta.key.clone());
            if self
                .rumours
                .push(subject, encode_message(&Message::State(delta.clone())))
            {
                self.stats.rumours_evicted += 1;
            }
            self.refresh_tree(&delta.owner.addr);
        }
    }

    fn apply_page(&mut self, now: Instant, page: StatePage<A>) {
        if !self.owner_is_live(&page.owner) || page.upto < page.after {
            return;
        }
        let owner = page.owner.clone();
        if page.reset {
            if let Some(st) = self.store.owner_mut(&owner.addr, owner.generation) {
                for key in st.reset_range(page.after, page.upto, &page.entries) {
                    self.note_key_changed(&owner, key, None);
                }
            }
        }
        for (key, version, value) in page.entries {
            self.merge_one(now, &owner, &key, version, value);
        }
        if let Some(st) = self.store.owner_mut(&owner.addr, owner.generation) {
            if page.after <= st.watermark {
                st.watermark = st.watermark.max(page.upto);
                // Through `upto` we now hold what the sender holds, deletions included:
                // pass its floor on, so peers behind it get reset by us too.
                st.gc_floor = st.gc_floor.max(page.floor.min(page.upto));
            }
        }
        self.refresh_tree(&owner.addr);
    }

    /// Merges one key of a remote owner; returns whether it changed.
    fn merge_one(
        &mut self,
        now: Instant,
        owner: &NodeId<A>,
        key: &str,
        version: u64,
        value: Option<Vec<u8>>,
    ) -> bool {
        let max_bytes = self.config.max_state_bytes;
        let Some(st) = self.store.owner_mut(&owner.addr, owner.generation) else {
            return false;
        };
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return false;
        }
        match st.merge(key, version, value.clone(), max_bytes) {
            Merge::Applied => {}
            _ => return false,
        }
        st.advance_watermark();
        // Whatever we had queued about this key is older than what we now hold.
        self.rumours
            .remove_subject(&Subject::State(owner.addr.clone(), key.to_string()));
        self.stats.deltas_applied += 1;
        if value.is_none() {
            let due = now + self.config.tombstone_grace;
            self.store.queue_tombstone(
                due,
                owner.addr.clone(),
                owner.generation,
                key.to_string(),
                version,
            );
        }
        self.note_key_changed(owner, key.to_string(), value);
        true
    }

    fn note_key_changed(&mut self, owner: &NodeId<A>, key: String, value: Option<Vec<u8>>) {
        if key == TOKENS_KEY {
            self.tokens_changed(&owner.addr);
        }
        if key == RING_KEY {
            self.agreement_dirty = true;
        }
        self.events.push_back(Event::StateChanged {
            node: owner.clone(),
            key,
            value,
        });
    }

    fn collect_garbage(&mut self, now: Instant) {
        // Tombstoned members: the dead roster is bounded by max_members, and a scan per
        // round costs less than a queue that grows with every death.
        let retention = self.config.dead_retention;
        let expired: Vec<A> = self
            .dead
            .list
            .iter()
            .filter(|a| {
                self.members
                    .get(a)
                    .is_some_and(|m| m.since + retention <= now)
            })
            .cloned()
            .collect();
        for addr in expired {
            self.members.map.remove(&addr);
            self.tokens.remove(&addr);
            self.dead.remove(&addr);
            self.store.owners.remove(&addr);
            self.detector.clear_suspicion(&addr);
        }
        while self.store.tombstones.front().is_some_and(|t| t.0 <= now) {
            let Some((_, addr, generation, key, version)) = self.store.tombstones.pop_front()
            else {
                break;
            };
            // A tombstone may go only once we hold every write up to it: otherwise an
            // older value still in flight (a queued rumour, a peer's page) would be
            // taken for news and the key would come back.
            let requeue = match self
                .store
                .owners
                .get_mut(&addr)
                .filter(|s| s.generation == generation)
            {
                Some(st) if st.watermark >= version => {
                    st.collect(&key, version);
                    false
                }
                Some(st) => st
                    .entries
                    .get(&key)
                    .is_some_and(|e| e.version == version && e.value.is_none()),
                None => false,
            };
            if requeue {
                let due = now + self.config.tombstone_grace;
                self.store
                    .queue_tombstone(due, addr, generation, key, version);
            }
        }
    }

    // ----- ring ---------------------------------------------------------------------

    fn choose_tokens(&mut self, now: Instant) {
        self.tokens_at = None;
        let ring = self.ring().clone();
        let tokens = if ring.is_empty() {
            random_tokens(self.config.vnodes, &mut self.rng)
        } else {
            allocate_tokens(&ring, self.config.vnodes, &mut self.rng)
        };
        let bytes = postcard::to_allocvec(&tokens).unwrap_or_default();
        let _ = self.write(now, TOKENS_KEY, Some(bytes));
    }

    /// Publishes our ring digest once it has held still for two rounds, so that a
    /// join storm does not turn every ring change into a rumour from every node.
    fn publish_ring_digest(&mut self, now: Instant) {
        if self.config.vnodes == 0 || self.phase != Phase::Active || self.ring_inputs.is_empty() {
            return;
        }
        let digest = self.ring_hash;
        if self.ring_seen.0 != digest {
            self.ring_seen = (digest, 0);
            return;
        }
        self.ring_seen.1 = self.ring_seen.1.saturating_add(1);
        let published = self.get(&self.me.addr, RING_KEY).map(<[u8]>::to_vec);
        if self.ring_seen.1 >= 2 && published.as_deref() != Some(&digest.to_le_bytes()[..]) {
            let _ = self.write(now, RING_KEY, Some(digest.to_le_bytes().to_vec()));
        }
    }

    fn check_agreement(&mut self) {
        if !self.agreement_dirty {
            return;
        }
        self.agreement_dirty = false;
        let Some(mine) = self.get(&self.me.addr, RING_KEY).map(<[u8]>::to_vec) else {
            return;
        };
        let all = self
            .live
            .list
            .iter()
            .all(|a| self.get(a, RING_KEY) == Some(&mine[..]));
        let digest = u64::from_le_bytes(mine.as_slice().try_into().unwrap_or([0; 8]));
        if all && self.agreed != Some(digest) && digest == self.ring_hash {
            self.agreed = Some(digest);
            self.events.push_back(Event::RingAgreed { digest });
        }
    }

    // ----- bookkeeping --------------------------------------------------------------

    /// Runs after every input: recomputes the deadline.
    fn after_input(&mut self, _now: Instant) {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |d: Instant| d.min(t)));
            }
        };
        if self.phase != Phase::Idle {
            consider(self.detector.next_probe);
            consider(
                self.detector
                    .probe
                    .as_ref()
                    .filter(|p| !p.acked && !p.indirect_sent)
                    .map(|p| p.indirect_at),
            );
            consider(self.detector.relays.iter().map(|r| r.nack_at).min());
            consider(self.detector.suspicion_deadline());
            consider(self.next_gossip);
            consider(self.requests.next_deadline());
        }
        self.deadline = d;
    }
}

fn first_live<A: Address>(set: &ReplicaSet<A>, except: Option<&A>) -> Option<A> {
    let candidates = || set.replicas.iter().filter(|r| Some(&r.id.addr) != except);
    candidates()
        .find(|r| r.state == Status::Alive)
        .or_else(|| candidates().find(|r| r.state == Status::Suspect))
        .map(|r| r.id.addr.clone())
}
