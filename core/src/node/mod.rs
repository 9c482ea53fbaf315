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

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Ref;

use rand_core::RngCore;

use crate::anti_entropy::{AntiEntropy, SYNC_REPLY_PACKETS};
use crate::config::{Config, ConfigError};
use crate::dissemination::Subject;
use crate::event::Event;
use crate::failure_detector::Detector;
use crate::hash::{Map, SeededState};
use crate::keyring::Keyring;
use crate::membership::{Address, Lifecycle, MemberInfo, Membership, NodeId};
use crate::outbox::Outbox;
pub use crate::outbox::Transmit;
use crate::placement::{
    LocalPlacement, Owner, Placement, PlacementRecord, RecordRef, RemoveError, RestoreError, Ring,
    Token, Topology,
};
use crate::routing::{ReplicaSet, RequestError, RequestId, RespondError, Router};
use crate::state::{StateError, Store, check_app_key};
use crate::stats::Stats;
use crate::time::Instant;
use crate::transfer::Transfers;

mod dispatch;
mod snapshot;
use crate::wire::{Message, PacketError, encode_message};

/// A Grapevine node: one member of one cluster, as a pure state machine.
///
/// `A` is the address type (usually `std::net::SocketAddr`), `R` the injected RNG:
/// the same seed and the same inputs give the same outputs, byte for byte.
/// See the [module docs](crate::node) for the drain rule.
///
/// The node holds the public API and dispatches: each message goes to the part that
/// owns it (`Membership`, `Detector`, `AntiEntropy`, `Store`, `Placement`,
/// `Router`: private parts, see ARCHITECTURE.md), each part reports its own
/// deadline, and every part acts on the world through the one `Outbox` the node
/// lends it.
pub struct Node<A: Address, R: RngCore> {
    config: Config,
    members: Membership<A>,
    detector: Detector<A>,
    gossip: AntiEntropy<A>,
    store: Store<A>,
    placement: Placement<A>,
    router: Router<A>,
    transfers: Transfers<A>,
    out: Outbox<A, R>,
    deadline: Option<Instant>,
}

impl<A: Address, R: RngCore> core::fmt::Debug for Node<A, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("id", self.members.me())
            .field("incarnation", &self.members.incarnation())
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl<A: Address, R: RngCore> Node<A, R> {
    /// A node that knows no one yet. Call [`Node::join`] to start it.
    pub fn new(config: Config, id: NodeId<A>, mut rng: R) -> Result<Self, ConfigError> {
        config.validate()?;
        let hasher = SeededState(rng.next_u64());
        let first_seq = rng.next_u32();
        let admission_key = [rng.next_u64(), rng.next_u64()];
        let detector = Detector::new(&config, hasher, first_seq, admission_key);
        let mut node = Node {
            members: Membership::with_unconfirmed_share(
                id.clone(),
                config.max_members,
                config.unconfirmed_share,
                hasher,
            ),
            detector,
            gossip: AntiEntropy::new(&config),
            store: Store::new(&config, hasher),
            placement: Placement::new(&config, &id, hasher),
            router: Router::new(&config, hasher),
            transfers: Transfers::new(config.probe_timeout, config.max_value_size),
            out: Outbox::new(&config, &id, rng, hasher),
            deadline: None,
            config,
        };
        node.store.adopt(&id);
        node.refresh_tree(&id.addr);
        Ok(node)
    }

    /// This node's identity.
    pub fn id(&self) -> &NodeId<A> {
        self.members.me()
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters since the node was created.
    pub fn stats(&self) -> &Stats {
        self.out.stats()
    }

    /// This node's incarnation (raised each time it refutes a suspicion of itself).
    pub fn incarnation(&self) -> u64 {
        self.members.incarnation()
    }

    /// Lifeguard's local health multiplier: 0 when healthy, up to `awareness_max`.
    pub fn health(&self) -> u32 {
        self.detector.health()
    }

    /// Rumours waiting in the queue: changes that have not yet been piggybacked
    /// their `retransmit_mult · ⌈log10(n + 1)⌉` times (the rumour queue depth). A
    /// queue that stays deep means news arrives faster than datagrams carry it.
    pub fn rumours_queued(&self) -> usize {
        self.out.rumours_queued()
    }

    /// Whether this node's leave is spread: it has left ([`Node::shutdown`], or
    /// [`Node::leave`] once Left) and its "left" rumour has been sent its whole
    /// retransmit budget, or no live member is left to tell. False while the node is
    /// in the cluster. A runtime keeps driving a leaving node until this holds (under
    /// a time bound, since datagrams may be lost), then stops.
    pub fn is_leave_spread(&self) -> bool {
        self.members.has_left()
            && (self.members.live_len() == 0
                || !self
                    .out
                    .is_rumouring(&Subject::Member(self.members.me().addr.clone())))
    }

    /// The largest key plus payload a request may carry through
    /// [`handle_request`](Self::handle_request), and the largest payload a
    /// [`respond`](Self::respond) may carry: what fits one datagram with the current
    /// keyring.
    pub fn max_request_bytes(&self) -> usize {
        crate::routing::Router::<A>::max_request_bytes(&self.out)
    }

    /// Installs (or with `None`, removes) the keyring that seals and opens datagrams.
    /// With a keyring, unsealed datagrams are refused.
    pub fn set_keyring(&mut self, keyring: Option<Keyring>) {
        self.out.set_keyring(keyring);
    }

    /// The keyring installed, if any (a snapshot leaves it out: see
    /// [`Node::from_snapshot`]).
    pub fn keyring(&self) -> Option<&Keyring> {
        self.out.keyring()
    }

    /// The keyring, to rotate keys in place.
    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.out.keyring_mut()
    }

    /// Every member this node knows, itself first, tombstones included.
    pub fn members(&self) -> impl Iterator<Item = MemberInfo<A>> + '_ {
        let me = MemberInfo {
            id: self.members.me().clone(),
            state: self.members.own_claim().status,
            incarnation: self.members.incarnation(),
            since: Instant::ZERO,
        };
        core::iter::once(me).chain(self.members.iter().map(|m| MemberInfo {
            id: m.id.clone(),
            state: m.status,
            incarnation: m.incarnation,
            since: m.since,
        }))
    }

    /// Members currently alive or suspect, this node excluded.
    pub fn live_members(&self) -> usize {
        self.members.live_len()
    }

    /// Whether `addr` is a member this node knows (of any status).
    pub fn knows(&self, addr: &A) -> bool {
        self.members.get(addr).is_some()
    }

    /// Members known but not confirmed yet: they have not answered one of our probes
    /// at their address (see `Config::unconfirmed_share`).
    pub fn unconfirmed_members(&self) -> usize {
        self.members.unconfirmed_len()
    }

    /// The anti-entropy summary root: equal on two nodes that hold the same view.
    pub fn sync_root(&self) -> u64 {
        self.gossip.root()
    }

    /// Takes back what a previous life of this node saved (its name, location, and
    /// tokens): call it after [`Node::new`] and before [`Node::join`]. A node restored
    /// with tokens reclaims exactly those tokens when it joins.
    pub fn restore(&mut self, saved: LocalPlacement) -> Result<(), RestoreError> {
        if self.members.lifecycle() != Lifecycle::Idle {
            return Err(RestoreError::AlreadyStarted);
        }
        self.placement.restore(saved)
    }

    /// This node's stable name (host ID). Without [`Node::restore`] it is derived from
    /// the address, so a node that should survive an address change must be given one.
    pub fn name(&self) -> &str {
        self.placement.name()
    }

    /// This node's placement, as it should be saved.
    pub fn placement(&self) -> LocalPlacement {
        self.placement.local()
    }

    /// This node's topology state (Joining, Normal, Leaving, Left, Removed).
    pub fn topology_state(&self) -> Topology {
        self.placement.status()
    }

    /// Every placement record this node holds (Left and Removed ones included), for an
    /// operator's view such as `nodetool status`. The node holds records in a compact
    /// form, so each is made afresh (with its allocations) as the iterator yields it.
    pub fn topology(&self) -> impl Iterator<Item = PlacementRecord<A>> + '_ {
        self.placement.records().filter_map(RecordRef::to_record)
    }

    /// Whether this node is ready to serve: it is Normal (or holds no ranges by
    /// configuration) and every live member holds the same ring.
    pub fn is_ready(&self) -> bool {
        self.placement.is_ready()
    }

    /// A read-only picture of the node's inner state for operators: members with
    /// their suspicions, local health, the rumour queue by class, the sync root, the
    /// ring and placement records, and requests in flight. Taking it changes nothing.
    pub fn dump(&self) -> crate::dump::Dump<A> {
        use crate::dump::{Dump, MemberDump, RecordDump};
        let mut best: Map<A, RecordRef<'_, A>> = Map::with_hasher(SeededState(0));
        for r in self.placement.records() {
            let Some(addr) = r.addr() else {
                continue;
            };
            let slot = best.entry(addr).or_insert(r);
            if r.rank() > slot.rank() {
                *slot = r;
            }
        }
        let me = self.members.me().clone();
        let own = MemberDump {
            id: me.clone(),
            name: Some(self.name().into()),
            incarnation: self.members.incarnation(),
            status: self.members.own_claim().status,
            topology: Some(self.topology_state()),
            confirmed: true,
            since: Instant::ZERO,
            suspicion: None,
            local: true,
        };
        let others = self.members.iter().map(|m| {
            let record = best.get(&m.id.addr);
            MemberDump {
                id: m.id.clone(),
                name: record.map(|r| r.name().into()),
                incarnation: m.incarnation,
                status: m.status,
                topology: record.map(|r| r.status()),
                confirmed: m.confirmed,
                since: m.since,
                suspicion: self.detector.suspicion(&m.id.addr),
                local: false,
            }
        });
        let mut members: Vec<MemberDump<A>> = core::iter::once(own).chain(others).collect();
        members[1..].sort_by(|a, b| a.id.addr.cmp(&b.id.addr));
        let mut records: Vec<RecordDump<A>> = self
            .placement
            .records()
            .filter_map(|r| {
                Some(RecordDump {
                    name: r.name().into(),
                    addr: r.addr()?,
                    status: r.status(),
                    location: r.location().clone(),
                    epoch: r.epoch(),
                    tokens: r.tokens().len(),
                })
            })
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        let (rumours, retransmit_limit) = self.out.rumour_dump();
        Dump {
            id: me,
            incarnation: self.members.incarnation(),
            placement: self.placement(),
            health: (self.detector.health(), self.detector.health_max()),
            members,
            rumours,
            retransmit_limit,
            sync_root: self.gossip.root(),
            ring_digest: self.ring_digest(),
            ring_tokens: self.ring().tokens().count(),
            ready: self.is_ready(),
            records,
            requests: self.router.dump(),
            value_transfers: self.value_transfers(),
        }
    }

    // ----- inputs -------------------------------------------------------------------

    /// Starts the node and announces it to `seeds` (none for the first node).
    /// Calling it again after [`Node::leave`] rejoins with a higher incarnation.
    pub fn join(&mut self, now: Instant, seeds: impl IntoIterator<Item = A>) {
        self.out.set_clock(now);
        self.members.join(now, seeds);
        let me = self.members.me().clone();
        self.refresh_tree(&me.addr);
        self.queue_member_rumour(self.members.own_claim());
        self.detector.start(now, self.out.rng());
        self.gossip.start(now, self.out.rng());
        let first = self.members.seeds().is_empty();
        if let Some(record) = self.placement.start(self.out.rng(), first) {
            self.spread_record(record);
            let saved = self.placement.local();
            self.out
                .event(Event::PlacementChanged(alloc::boxed::Box::new(saved)));
        }
        self.contact_seeds();
        // Members heard of before joining (a restarted node hears from its old peers)
        // are unconfirmed: ping them now, as peers we can reach besides the seeds.
        self.readmit();
        self.after_input(now);
    }

    /// Replaces the seeds this node announces itself to while it has no live member
    /// (at once, and then every gossip round), without rejoining: a runtime calls it
    /// when it has re-resolved seeds given as host names. This node's own address is
    /// left out. Does nothing to a node that has not joined or has left.
    pub fn set_seeds(&mut self, now: Instant, seeds: impl IntoIterator<Item = A>) {
        self.out.set_clock(now);
        if !self.members.is_active() {
            return;
        }
        self.members.set_seeds(seeds);
        if self.members.live_len() == 0 {
            self.contact_seeds();
        }
        self.after_input(now);
    }

    /// Decommissions this node: it turns Leaving (the members that will take its
    /// ranges become pending replicas), then Left after [`RING_DELAY_ROUNDS`] gossip
    /// rounds, and then leaves the cluster as [`Node::shutdown`] does. A node that
    /// holds no ranges leaves at once. Keep driving the node (timers included) until
    /// [`Event::PlacementChanged`] reports `Left`, then a moment more so the news gets
    /// out.
    ///
    /// [`RING_DELAY_ROUNDS`]: crate::placement::RING_DELAY_ROUNDS
    pub fn leave(&mut self, now: Instant) {
        self.out.set_clock(now);
        if !self.members.is_active() {
            return;
        }
        if let Some(record) = self.placement.leave() {
            self.spread_record(record);
            if self.placement.is_leaving() {
                self.after_input(now);
                return;
            }
            let saved = self.placement.local();
            self.out
                .event(Event::PlacementChanged(alloc::boxed::Box::new(saved)));
        }
        self.shutdown(now);
    }

    /// Stops this node gracefully without giving up its ranges: spreads "left" so that
    /// no one suspects it, and stops probing. Its tokens stay on the ring (shown as
    /// down), so a restart with its saved placement moves no data. Keep driving the
    /// node until [`Node::is_leave_spread`] holds (at once unless the members to tell
    /// are unconfirmed), so the news gets out.
    pub fn shutdown(&mut self, now: Instant) {
        self.out.set_clock(now);
        if !self.members.leave() {
            return;
        }
        let me = self.members.me().addr.clone();
        self.refresh_tree(&me);
        self.detector.stop();
        let claim = self.members.own_claim();
        self.queue_member_rumour(claim.clone());
        // When the retransmit budget covers every live member, tell each directly
        // and spend the whole budget now (the queued rumour rides on each datagram, so
        // it retires): no one needs a relay, and the leave is spread at once. In a
        // larger cluster tell a few directly, and gossip rounds spend the rest of the
        // budget while those few relay it, as for any rumour.
        let encoded = encode_message(&Message::Member(claim));
        let budget = self.out.retransmit_limit() as usize;
        let (targets, sends) = if self.members.live_len() <= budget {
            let all = self.members.pick_live(self.out.rng(), budget, None);
            let sends = if all.is_empty() { 0 } else { budget };
            (all, sends)
        } else {
            let few = self
                .members
                .pick_live(self.out.rng(), self.config.gossip_fanout, None);
            let sends = few.len();
            (few, sends)
        };
        for addr in targets.iter().cycle().take(sends) {
            self.out
                .send(addr.clone(), core::slice::from_ref(&encoded), 1);
        }
        self.router.abandon(&mut self.out);
        self.after_input(now);
    }

    /// Removes a dead member's placement, from any node (Cassandra's `removenode`):
    /// its ranges move to the other members, the same way on every node. A live member
    /// is refused (it decommissions itself with [`Node::leave`]). If the removed node
    /// comes back with its old tokens, it is not taken back: it learns of the removal,
    /// drops its tokens and joins again as a new member.
    pub fn remove_node(&mut self, now: Instant, name: &str) -> Result<(), RemoveError> {
        self.out.set_clock(now);
        let record = self.placement.remove(name, &self.members)?;
        self.spread_record(record);
        self.after_input(now);
        Ok(())
    }

    /// Takes one datagram from `from`. On error the datagram is dropped and counted in
    /// [`Stats::drops`], and the node is otherwise unchanged.
    pub fn handle_packet(&mut self, now: Instant, from: A, data: &[u8]) -> Result<(), PacketError> {
        self.out.set_clock(now);
        self.out.received(data.len());
        let (sender, messages) = match self.out.open(data) {
            Ok(v) => v,
            Err(e) => {
                self.out.count().drops.count(&e);
                return Err(e);
            }
        };
        // Only a datagram that comes from the address it names admits a stranger: a
        // datagram naming a third party must not make us probe that third party. The
        // stranger's admission ping rides in our reply, if we have one to send.
        let mut reply: Vec<Vec<u8>> = Vec::new();
        // Only a sender speaking from its own address gets more than a reply-sized
        // answer (the chunks of a large value).
        let direct = sender.addr == from;
        // Whether the source was a member before this datagram (of any status: a
        // healed partition's other side is "dead" for a while), for the reply's
        // limit: asked before the datagram can admit it (as its own sender, or by a
        // claim about it in the body).
        let known_before = if direct {
            self.heard_from(now, &sender, &mut reply)
        } else {
            self.members.get(&from).is_some()
        };
        let after_admission = reply.len();
        self.placement.new_datagram();
        for msg in messages {
            self.on_message(now, &sender, direct, msg, &mut reply);
        }
        if reply.len() == after_admission {
            // Nothing to answer but the admission ping: it goes bare, as any ping
            // to an address that has not proven itself (`Outbox::send_bare`).
            if !reply.is_empty() {
                self.out.send_bare(from, &reply);
            }
        } else {
            // Replies go where the datagram came from. A source that was not a member
            // before this datagram gets at most three times what it sent (QUIC's
            // anti-amplification rule), so a spoofed source cannot make us an
            // amplifier.
            let limit = if known_before {
                usize::MAX
            } else {
                data.len().saturating_mul(3)
            };
            self.out
                .send_limited(from, &reply, SYNC_REPLY_PACKETS, limit);
        }
        self.after_input(now);
        Ok(())
    }

    /// Fires every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.set_clock(now);
        if self.members.lifecycle() == Lifecycle::Idle {
            return;
        }
        if self.detector.probe_due(now) {
            if let Some(claim) = self.detector.close_probe(&self.members) {
                let me = self.members.me().addr.clone();
                let suspect = claim.id.clone();
                self.apply_claim(now, claim, Some(me));
                self.detector
                    .tell_suspect(&suspect, &self.members, &mut self.out);
            }
            if self.detector.take_reconnected() {
                self.reconnected();
            }
            self.detector.open_probe(now, &self.members, &mut self.out);
        }
        for death in self
            .detector
            .handle_timeout(now, &self.members, &mut self.out)
        {
            self.apply_claim(now, death, None);
        }
        if self.gossip.round_due(now) {
            self.gossip_round(now);
        }
        let route = |k: &[u8]| self.placement.route(k, &self.members);
        self.router
            .handle_timeout(now, &route, self.members.me(), &mut self.out);
        if self.transfers.poll_timeout().is_some_and(|t| t <= now) {
            // After two silent retries, ask the owner itself if it is up.
            let members = &self.members;
            let owner_if_live =
                |owner: &NodeId<A>| members.is_live_owner(owner).then(|| owner.addr.clone());
            self.transfers
                .on_timeout(now, &owner_if_live, &mut self.out);
        }
        self.after_input(now);
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next datagram to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<A>> {
        self.out.poll_transmit()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event<A>> {
        self.out.poll_event()
    }

    /// When [`Node::handle_timeout`] should next be called; `None` before `join`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    // ----- state --------------------------------------------------------------------

    /// Writes `key = value` in this node's state and spreads it.
    pub fn set(&mut self, now: Instant, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.out.set_clock(now);
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
        self.out.set_clock(now);
        self.check_key(key)?;
        self.write(now, key, None)
    }

    /// A value of `node`'s state as this node holds it.
    pub fn get(&self, node: &A, key: &str) -> Option<&[u8]> {
        self.store.value(node, key)
    }

    /// The live keys of `node`'s state as this node holds it, with their versions.
    pub fn keys(&self, node: &A) -> impl Iterator<Item = (&str, u64, &[u8])> + '_ {
        self.store
            .get(node)
            .into_iter()
            .flat_map(|s| s.entries.iter())
            .filter_map(|(k, e)| Some((k.as_str(), e.version, e.value.as_deref()?)))
    }

    /// Bytes charged for all the state this node holds, its own included (entries with
    /// their overhead, plus a fixed overhead per owner): bounded by
    /// `Config::max_total_state_bytes` for others' state.
    pub fn state_bytes_held(&self) -> usize {
        self.store.held()
    }

    /// Large values this node is fetching in chunks, and the bytes it holds for them
    /// (bounded: a few values of at most `max_value_size` each).
    pub fn value_transfers(&self) -> (usize, usize) {
        (self.transfers.len(), self.transfers.bytes())
    }

    /// Every node whose state this node holds (itself included), in no particular
    /// order: the owners [`Node::keys`] and [`Node::state_hash`] answer for.
    pub fn state_owners(&self) -> impl Iterator<Item = &A> + '_ {
        self.store.owners()
    }

    /// The content hash of `node`'s state as this node holds it (equal on two nodes
    /// that hold the same keys at the same versions).
    pub fn state_hash(&self, node: &A) -> Option<u64> {
        self.store.get(node).map(|s| s.hash)
    }

    fn check_key(&self, key: &str) -> Result<(), StateError> {
        if self.members.has_left() {
            return Err(StateError::Left);
        }
        check_app_key(key)
    }

    fn write(&mut self, now: Instant, key: &str, value: Option<Vec<u8>>) -> Result<(), StateError> {
        let me = self.members.me().clone();
        let delta = self.store.write(now, &me, key, value)?;
        let subject = Subject::state(me.addr.clone(), String::from(key));
        self.out.own_rumour(subject, self.store.announce(&delta));
        self.refresh_tree(&me.addr);
        self.after_input(now);
        Ok(())
    }

    // ----- placement and routing ----------------------------------------------------

    /// The replicas of `key`: its natural replicas (the owner, then the next distinct
    /// nodes clockwise, racks and datacenters as configured), each with its liveness
    /// and topology state, and the pending replicas of its range while members join
    /// or leave. All nodes agree once gossip has converged; a crash changes only the
    /// liveness shown, never the replicas.
    pub fn route(&self, key: &[u8]) -> ReplicaSet<A> {
        self.placement.route(key, &self.members)
    }

    /// The ring of natural replicas as this node sees it, owners by name (rebuilt here
    /// if its inputs changed since).
    pub fn ring(&self) -> Ref<'_, Ring<Owner>> {
        self.placement.ring()
    }

    /// A digest of the ring as this node sees it: a function of placement alone (each
    /// on-ring member's name, epoch, location and tokens), so a crash or a restart
    /// does not change it. Two nodes with the same digest build the same ring.
    pub fn ring_digest(&self) -> u64 {
        self.placement.digest()
    }

    /// The tokens the member named `name` holds, as this node sees it.
    pub fn tokens_of(&self, name: &str) -> Vec<Token> {
        self.placement.tokens_of(name)
    }

    /// Accepts a client request for `key`. If this node is a natural replica the
    /// request is delivered here as [`Event::Request`] (this node's application serves
    /// it); otherwise it is forwarded to the first live natural replica, whose
    /// application serves it. It fails over once, only among natural replicas, and
    /// fails with `Unavailable` when none is alive. Either way the answer arrives as [`Event::Response`] (or
    /// [`Event::RequestFailed`]) with the returned id.
    pub fn handle_request(
        &mut self,
        now: Instant,
        key: &[u8],
        payload: Vec<u8>,
    ) -> Result<RequestId, RequestError> {
        self.out.set_clock(now);
        if !self.members.is_active() {
            return Err(RequestError::Left);
        }
        let route = |k: &[u8]| self.placement.route(k, &self.members);
        let id =
            self.router
                .request(now, key, payload, &route, self.members.me(), &mut self.out)?;
        self.after_input(now);
        Ok(id)
    }

    /// Sends a request to one chosen replica of `key`, natural or pending (see
    /// [`Node::route`]): how a store writes to every replica, or to the node a range is
    /// moving to while it joins. The replica gets it as [`Event::Request`] (whatever
    /// its own ring says, as long as it counts itself a natural or pending replica of
    /// the key); its answer comes back as [`Event::Response`]. Unlike
    /// [`Node::handle_request`] there is no fail-over: if that replica does not answer
    /// within `request_timeout`, [`Event::RequestFailed`] reports it.
    pub fn handle_request_to(
        &mut self,
        now: Instant,
        key: &[u8],
        to: &NodeId<A>,
        payload: Vec<u8>,
    ) -> Result<RequestId, RequestError> {
        self.out.set_clock(now);
        if !self.members.is_active() {
            return Err(RequestError::Left);
        }
        let route = |k: &[u8]| self.placement.route(k, &self.members);
        let me = self.members.me();
        let id = self
            .router
            .request_to(now, key, to, payload, &route, me, &mut self.out)?;
        self.after_input(now);
        Ok(id)
    }

    /// Answers a request delivered as [`Event::Request`].
    pub fn respond(
        &mut self,
        now: Instant,
        id: RequestId,
        payload: Vec<u8>,
    ) -> Result<(), RespondError> {
        self.out.set_clock(now);
        self.router
            .respond(id, payload, self.members.me(), &mut self.out)?;
        self.after_input(now);
        Ok(())
    }

    /// Runs after every input: the deadline is the soonest of the parts' deadlines.
    fn after_input(&mut self, _now: Instant) {
        self.deadline = if self.members.lifecycle() == Lifecycle::Idle {
            None
        } else {
            [
                self.detector.poll_timeout(),
                self.gossip.poll_timeout(),
                self.router.poll_timeout(),
                self.transfers.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min()
        };
    }
}
