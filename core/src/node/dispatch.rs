//! The node's dispatch: each message to the part that owns it, each membership
//! change to every part it concerns, and the gossip round across the parts.

use alloc::vec::Vec;

use rand_core::RngCore;

use super::Node;
use crate::anti_entropy::{BUCKETS, bucket_of, digest_entry, summary_entry};
use crate::dissemination::{Budget, Class, Subject};
use crate::event::Event;
use crate::membership::{
    Address, Applied, Change, Compared, MemberClaim, MemberIx, Membership, NodeId, Refutation,
    Status,
};
use crate::placement::{AgreementReceipt, Received};
use crate::time::Instant;
use crate::transfer;
use crate::wire::{DigestEntry, Message, encode_message};

/// Probe periods an unconfirmed member may stay unconfirmed before it is forgotten.
const UNCONFIRMED_ROUNDS: u32 = 30;
/// Unconfirmed members pinged again per gossip round (their first ping may be lost).
const READMISSIONS_PER_ROUND: usize = 8;

impl<A: Address, R: RngCore> Node<A, R> {
    // ----- dispatch -----------------------------------------------------------------

    pub(super) fn on_message(
        &mut self,
        now: Instant,
        sender: &NodeId<A>,
        direct: bool,
        msg: Message<A>,
        reply: &mut Vec<Vec<u8>>,
    ) {
        match msg {
            Message::Ping { seq } => self.detector.on_ping(seq, reply),
            Message::Ack { seq } => {
                // A direct ack confirms the life that sent it, and only that one: an
                // ack from the same address under another generation does not vouch
                // for a life someone else claimed.
                if let Some(addr) = self.detector.on_ack(&sender.addr, seq, &mut self.out) {
                    if addr == sender.addr
                        && self.members.get(&addr).is_some_and(|m| m.id == *sender)
                    {
                        self.out.prove_sender(&addr, sender.generation);
                        self.confirmed(&addr);
                    }
                }
            }
            Message::PingReq { seq, target } => {
                self.detector
                    .on_ping_req(now, sender, seq, target, reply, &mut self.out)
            }
            Message::Nack { seq } => self.detector.on_nack(seq, &mut self.out),
            Message::Member(claim) if claim.id.addr == self.members.me().addr => {
                self.accused(&claim, reply);
            }
            Message::Member(claim) => {
                // The verdict of the one member whose accusation is all our suspicion
                // rests on adds nothing to it: our own timer decides (see
                // `apply_claim_from` for a verdict about a member we never suspected).
                if claim.status == Status::Dead
                    && self.members.get(&claim.id.addr).is_some_and(|m| {
                        m.id == claim.id
                            && m.status == Status::Suspect
                            && m.incarnation == claim.incarnation
                    })
                    && self.detector.rests_on(&claim.id.addr, &sender.addr)
                {
                    return;
                }
                // The sender accuses: of a suspicion, or of a death (which may be taken as
                // a suspicion, see `apply_claim_from`).
                let accuser = matches!(claim.status, Status::Suspect | Status::Dead)
                    .then(|| sender.addr.clone());
                let echo = Membership::farewell_echo(&claim, sender, direct);
                if let Some(newer) = self.members.correction(&claim) {
                    reply.push(encode_message(&Message::Member(newer)));
                    return;
                }
                self.apply_claim(now, claim, accuser);
                if let Some(farewell) = echo {
                    reply.push(encode_message(&Message::Member(farewell)));
                }
            }
            Message::Suspect {
                id,
                incarnation,
                accuser,
            } => {
                let status = Status::Suspect;
                let claim = MemberClaim {
                    id,
                    incarnation,
                    status,
                };
                if claim.id.addr == self.members.me().addr {
                    self.accused(&claim, reply);
                } else if let Some(newer) = self.members.correction(&claim) {
                    reply.push(encode_message(&Message::Member(newer)));
                } else {
                    self.apply_claim(now, claim, Some(accuser));
                }
            }
            Message::State(delta) => {
                if !self.members.is_live_owner(&delta.owner) {
                    return;
                }
                let owner = delta.owner.addr.clone();
                if self.store.apply_delta(now, delta, &mut self.out) {
                    self.refresh_tree(&owner);
                }
            }
            Message::SyncRoot { root } => {
                if self.gossip.on_root(root, reply) {
                    self.placement.peer_in_sync();
                }
            }
            Message::SyncLevel {
                depth,
                index,
                hashes,
            } => {
                let budget = self.out.body_budget().saturating_sub(64);
                let (members, store, gossip) = (&self.members, &self.store, &self.gossip);
                let placement = &self.placement;
                let digest = |bucket: usize| {
                    let entry = |ix| {
                        let a = members.addr_of(ix)?;
                        digest_entry(members, store, a)
                    };
                    let record = |ix| {
                        let r = placement.record_at(ix)?;
                        Some((r.name().into(), r.rank()))
                    };
                    gossip.digest_message(bucket, budget, entry, record)
                };
                gossip.on_level(depth, index, &hashes, self.out.rng(), reply, digest);
            }
            Message::SyncDigest {
                bucket,
                complete,
                entries,
                placements,
            } => {
                self.on_sync_digest(now, sender, bucket, complete, entries, reply);
                self.on_placement_digest(bucket, complete, &placements, reply);
            }
            Message::SyncRequest { owner, after } => {
                self.store
                    .pages(&sender.addr, &owner, after, reply, &mut self.out)
            }
            Message::StatePage(page) => {
                if !self.members.is_live_owner(&page.owner) || page.upto < page.after {
                    return;
                }
                let owner = page.owner.addr.clone();
                self.store.apply_page(now, page, &mut self.out);
                self.refresh_tree(&owner);
            }
            Message::Request(req) => {
                let route = |k: &[u8]| self.placement.route(k, &self.members);
                self.router
                    .on_forwarded(now, req, &route, self.members.me(), &mut self.out);
            }
            Message::Response(resp) => self.router.on_response(sender, resp, &mut self.out),
            Message::Placement(record) => self.on_record(record),
            Message::StateStub(stub) => {
                if !self.members.is_live_owner(&stub.owner) || !self.store.lacks(&stub) {
                    return;
                }
                // Fetch from whoever sent the stub (it holds the value) if it has
                // proven its address; else from the owner, which is confirmed. Nothing
                // goes to an address named only inside a body.
                let source = if direct && self.members.is_live_owner(sender) {
                    sender.addr.clone()
                } else {
                    stub.owner.addr.clone()
                };
                let budget = self.out.body_budget();
                self.transfers
                    .offer(now, &source, stub, budget, &mut self.out);
            }
            Message::ValueWant(want) => {
                // A want is small and its answer is not: only a confirmed, live member
                // speaking from its own address is served (no reflection, no
                // amplification towards a third party).
                if !direct || !self.members.is_live_owner(sender) {
                    return;
                }
                if let Some(value) = self.store.value_at(&want.owner, &want.key, want.version) {
                    let chunks = transfer::serve(&want, value, self.out.body_budget());
                    let count = chunks.len();
                    self.out.send(sender.addr.clone(), &chunks, count);
                }
            }
            Message::ValueChunk(chunk) => {
                let Some(delta) = self
                    .transfers
                    .on_chunk(now, &sender.addr, chunk, &mut self.out)
                else {
                    return;
                };
                if !self.members.is_live_owner(&delta.owner) {
                    return;
                }
                let owner = delta.owner.addr.clone();
                if self.store.apply_delta(now, delta, &mut self.out) {
                    self.refresh_tree(&owner);
                }
            }
            Message::Agreement {
                digest,
                segment,
                bits,
            } => match self.placement.on_agreement(digest, segment, &bits) {
                AgreementReceipt::Taken => {}
                // The peer holds what we spread: it quiets our spreading.
                AgreementReceipt::Same => self.out.echo(&Subject::Agreement(segment)),
                AgreementReceipt::Refused => self.out.count().claims_refused += 1,
                // Only to a sender that speaks from its own address (no reflection).
                AgreementReceipt::Behind(ours) if direct => reply.push(encode_message(&ours)),
                AgreementReceipt::Behind(_) => {}
            },
            Message::PlacementNews { name, rank, status } => {
                // Most news a node hears it holds already: the teller knows it too,
                // which quiets our own telling (see `Rumours::echo`).
                if self.placement.holds(&name, rank) {
                    self.out.echo(&Subject::Placement(name));
                    return;
                }
                // A change of status only (Normal after the ring delay, Leaving, Left)
                // we write ourselves from the record we hold: the tokens are those we
                // have, and a record is pulled once per node per allocation, not per
                // change. It goes through the same checks as a record received.
                if let Some(record) = self.placement.derive(&name, rank, status) {
                    self.on_record(record);
                    return;
                }
                // Asked of the datagram's source only: it holds that rank (it spreads
                // only what it holds), and nothing goes to an address named in a body.
                if direct && self.placement.want(&name, rank) {
                    reply.push(encode_message(&Message::<A>::PlacementWant { name }));
                }
            }
            Message::PlacementWant { name } => {
                if let Some(record) = self.placement.record(&name).and_then(|r| r.to_record()) {
                    reply.push(encode_message(&Message::Placement(record)));
                }
            }
        }
    }

    /// Any datagram proves its sender exists: a stranger or a new life of a known
    /// member is admitted as alive at incarnation 0. That cannot undo a verdict about
    /// a known life, since incarnation 0 never supersedes it.
    ///
    /// Returns whether the sender's address was a member before (of any status).
    pub(super) fn heard_from(
        &mut self,
        now: Instant,
        sender: &NodeId<A>,
        reply: &mut Vec<Vec<u8>>,
    ) -> bool {
        let known = self.members.get(&sender.addr).map(|m| m.id.generation);
        if known.is_none_or(|g| g < sender.generation) {
            let claim = MemberClaim {
                id: sender.clone(),
                incarnation: 0,
                status: Status::Alive,
            };
            self.apply_claim_from(now, claim, None, Some(reply));
        }
        known.is_some()
    }

    // ----- membership changes, fanned out to the parts ------------------------------

    pub(super) fn queue_member_rumour(&mut self, claim: MemberClaim<A>) {
        self.queue_claim(claim, Budget::Full);
    }

    /// A member's arrival (a new member, or a new life of one) is passed on with a
    /// smaller budget in a large cluster: see [`Budget::Arrival`].
    fn queue_arrival_rumour(&mut self, claim: MemberClaim<A>) {
        self.queue_claim(claim, Budget::Arrival);
    }

    fn queue_claim(&mut self, claim: MemberClaim<A>, budget: Budget) {
        let subject = Subject::Member(claim.id.addr.clone());
        // An arrival is news of a member, not an answer to a suspicion.
        let refutation = budget == Budget::Full && claim.is_refutation();
        self.out.member_rumour(
            subject,
            budget,
            refutation,
            encode_message(&Message::Member(claim)),
        );
    }

    pub(super) fn queue_suspect_rumour(&mut self, claim: &MemberClaim<A>, accuser: A) {
        let msg = Message::Suspect {
            id: claim.id.clone(),
            incarnation: claim.incarnation,
            accuser,
        };
        let subject = Subject::Member(claim.id.addr.clone());
        self.out.rumour(subject, encode_message(&msg));
    }

    /// Applies a claim: membership decides what changed, and each part hears of it.
    pub(super) fn apply_claim(&mut self, now: Instant, claim: MemberClaim<A>, accuser: Option<A>) {
        self.apply_claim_from(now, claim, accuser, None);
    }

    /// [`apply_claim`](Self::apply_claim); `reply` (the reply to the datagram) when
    /// the member itself sent it (its own datagram, from its own address): such a
    /// claim is passed on at once, as SWIM's join, even before the member answers its
    /// admission ping, and that ping rides in the reply.
    fn apply_claim_from(
        &mut self,
        now: Instant,
        claim: MemberClaim<A>,
        accuser: Option<A>,
        reply: Option<&mut Vec<Vec<u8>>>,
    ) {
        let direct = reply.is_some();
        if claim.id.addr == self.members.me().addr {
            self.claim_about_me(&claim);
            return;
        }
        // One node's death verdict alone does not kill a member: see
        // `Membership::as_received` (ARCHITECTURE.md, "Gray failures").
        let (claim, verdict_unseen) = self.members.as_received(claim);
        let Applied {
            change,
            entered_live,
            refused,
            implausible,
            evicted,
            echo,
        } = self.members.apply_from(&claim, now, direct);
        if let Some((gone, ix)) = evicted {
            self.forget_member(&gone, ix);
        }
        if refused {
            self.out.count().members_refused += 1;
        }
        if implausible {
            self.out.count().claims_refused += 1;
        }
        let n = self.members.live_len() + 1;
        self.out.set_cluster_size(n);
        let addr = claim.id.addr.clone();
        match change {
            Change::None => {
                if echo {
                    self.out.echo(&Subject::Member(addr.clone()));
                }
                // The same suspicion from another accuser shortens the timeout.
                if let (Status::Suspect, Some(acc)) = (claim.status, accuser) {
                    if self.detector.confirm(&addr, claim.incarnation, acc.clone()) {
                        self.queue_suspect_rumour(&claim, acc);
                    }
                }
                return;
            }
            Change::Refreshed => {}
            Change::Joined | Change::Recovered => {
                self.detector.forget(&addr);
                if change == Change::Joined {
                    // An older life's state goes; the new life's arrives with its first
                    // key. Its placement is kept: it is the same member by name.
                    self.store.new_life(&claim.id);
                    self.transfers.forget_owner(&claim.id.addr);
                }
                if entered_live {
                    let live = self.members.live_len();
                    if let Some(ix) = self.members.index_of(&addr) {
                        self.detector.member_live(ix, live, self.out.rng());
                    }
                }
                if change == Change::Joined {
                    self.out.event(Event::MemberJoined(claim.id.clone()));
                } else {
                    self.out.event(Event::MemberRecovered(claim.id.clone()));
                }
                // A life first heard of as suspect is suspected here too, with a timer.
                if claim.status == Status::Suspect {
                    self.detector.suspect(now, &claim, accuser.clone(), n);
                    self.out.event(Event::MemberSuspect(claim.id.clone()));
                }
            }
            Change::Suspected => {
                self.out.count().suspicions += 1;
                self.detector.suspect(now, &claim, accuser.clone(), n);
                if verdict_unseen {
                    self.detector.hasten(&addr);
                }
                self.out.event(Event::MemberSuspect(claim.id.clone()));
            }
            Change::Died | Change::Left => {
                self.detector.forget(&addr);
                let route = |k: &[u8]| self.placement.route(k, &self.members);
                self.router
                    .target_lost(now, &addr, &route, self.members.me(), &mut self.out);
                if change == Change::Died {
                    self.out.count().deaths += 1;
                    self.out.event(Event::MemberDied(claim.id.clone()));
                } else {
                    self.out.event(Event::MemberLeft(claim.id.clone()));
                }
            }
        }
        self.refresh_tree(&addr);
        if !self.members.is_confirmed(&addr) {
            // An identity we could not verify is pinged; it is passed on only if it
            // reached us itself, else once it answers.
            if entered_live && claim.status == Status::Alive {
                match reply {
                    Some(reply) => reply.push(self.detector.admission_ping(&addr)),
                    None => self.detector.admit(&addr, &mut self.out),
                }
            }
            if !direct {
                return;
            }
        }
        match (claim.status, accuser) {
            (Status::Suspect, Some(acc)) => self.queue_suspect_rumour(&claim, acc),
            (Status::Alive, _) if change == Change::Joined => self.queue_arrival_rumour(claim),
            _ => self.queue_member_rumour(claim),
        }
    }

    /// A member answered a ping at its address: it is confirmed, enters the summary
    /// and the probe rounds, and its claim spreads.
    fn confirmed(&mut self, addr: &A) {
        if self.members.is_confirmed(addr) {
            return;
        }
        self.members.confirm(addr);
        self.refresh_tree(addr);
        // A member turns unconfirmed only as a newcomer or a new life: this is its
        // arrival, unless a verdict came first (then the verdict is the news).
        if let Some(m) = self.members.get(addr) {
            let claim = m.claim();
            if claim.status == Status::Alive {
                self.queue_arrival_rumour(claim);
            } else {
                self.queue_member_rumour(claim);
            }
        }
    }

    /// A claim about ourselves: refute an accusation of this life. Returns whether it
    /// was one (our refutation is then due to whoever sent it, too).
    pub(super) fn claim_about_me(&mut self, claim: &MemberClaim<A>) -> bool {
        // Cut off from the cluster, we let the accusation stand (see
        // `Detector::is_cut_off`); we speak up again once we reach it.
        if self.detector.is_cut_off() {
            return false;
        }
        match self.members.refute(claim) {
            Refutation::Ignore => false,
            // Our refutation missed whoever still spreads it: send it round again
            // rather than wait for anti-entropy to repair it.
            Refutation::Repeat => {
                self.queue_member_rumour(self.members.own_claim());
                true
            }
            // Having to refute also means we may be the slow one (Lifeguard).
            Refutation::Raised => {
                self.out.count().refutations += 1;
                self.detector.refuted();
                let me = self.members.me().addr.clone();
                self.refresh_tree(&me);
                self.queue_member_rumour(self.members.own_claim());
                true
            }
        }
    }

    /// We were cut off from the cluster and reach it again: our alive claim, at a
    /// raised incarnation, answers whatever verdict the cluster reached meanwhile.
    pub(super) fn reconnected(&mut self) {
        if self.members.speak_up() {
            let me = self.members.me().addr.clone();
            self.refresh_tree(&me);
            self.queue_member_rumour(self.members.own_claim());
        }
    }

    /// An accusation of this life arrived in a datagram: refute it, and answer the
    /// sender with the refutation at once. The rumour reaches our members, but the
    /// accuser may not be one of them (our table can be full), and it is the one whose
    /// suspicion runs out.
    fn accused(&mut self, claim: &MemberClaim<A>, reply: &mut Vec<Vec<u8>>) {
        if self.claim_about_me(claim) {
            reply.push(encode_message(&Message::Member(self.members.own_claim())));
        }
    }

    /// Recomputes a member's (or our own) contribution to the anti-entropy summary.
    pub(super) fn refresh_tree(&mut self, addr: &A) {
        // An address outside the table has no contribution: a member's is removed
        // when it is forgotten.
        let Some(ix) = self.members.index_of(addr) else {
            return;
        };
        let hash = summary_entry(&self.members, &self.store, addr);
        self.gossip.set(addr, ix, hash);
    }

    /// A member left the table without a verdict (evicted unconfirmed): every part
    /// forgets it, before its slot `ix` is used again.
    fn forget_member(&mut self, addr: &A, ix: MemberIx) {
        self.detector.forget(addr);
        self.detector.forget_slot(ix);
        self.store.forget(addr);
        self.transfers.forget_owner(addr);
        self.out.forget_sender(addr);
        self.gossip.set(addr, ix, None);
        self.out.count().members_evicted += 1;
    }

    // ----- the gossip round ---------------------------------------------------------

    /// Pings the next few unconfirmed members again (their first ping may have been
    /// lost, or sent before we joined).
    pub(super) fn readmit(&mut self) {
        for addr in self.members.next_unconfirmed(READMISSIONS_PER_ROUND) {
            self.detector.admit(&addr, &mut self.out);
        }
    }

    pub(super) fn gossip_round(&mut self, now: Instant) {
        let ttl = self
            .config
            .probe_interval
            .saturating_mul(UNCONFIRMED_ROUNDS);
        for (addr, ix) in self.members.expire_unconfirmed(now, ttl) {
            self.forget_member(&addr, ix);
        }
        self.readmit();
        for (addr, ix) in self.members.expire_dead(now, self.config.dead_retention) {
            // A dead member is out of the summary already; its slot may be reused.
            self.gossip.set(&addr, ix, None);
            self.store.forget(&addr);
            self.transfers.forget_owner(&addr);
            self.detector.forget(&addr);
            self.detector.forget_slot(ix);
            self.out.forget_sender(&addr);
        }
        self.store.collect_tombstones(now);
        let out = &mut self.out;
        let outcome = self.placement.round(&mut |e| out.event(e));
        if let Some(record) = outcome.publish {
            self.spread_record(record);
        }
        if outcome.left {
            self.shutdown(now);
        }
        let fanout = self.config.gossip_fanout;
        if self.members.has_left() {
            // Only finish spreading the news of our leaving.
            for addr in self.members.pick_live(self.out.rng(), fanout, None) {
                self.out.send(addr, &[], 1);
            }
            return;
        }
        let round = self.placement.agreement_round(&self.members);
        // Spread at full speed, and quieted once peers hold the same bits: a segment
        // that misses a node costs no verdict, and the pull below repairs it.
        for (segment, message) in round.spread {
            self.out
                .quieted_rumour(Subject::Agreement(segment), encode_message(&message));
        }
        if let Some(pull) = round.pull {
            if let Some(peer) = self.members.pick_live(self.out.rng(), 1, None).pop() {
                self.out.send(peer, &[encode_message(&pull)], 1);
            }
        }
        if let Some(agreed) = round.agreed {
            self.out.event(agreed);
        }
        // Fast path: push pending rumours to a few members.
        if self.out.has_rumours() {
            for addr in self.members.pick_live(self.out.rng(), fanout, None) {
                if !self.out.has_rumours() {
                    break;
                }
                self.out.send(addr, &[], 1);
            }
        }
        // Repair path: one summary exchange with one live member.
        let root = self.gossip.root_message();
        if let Some(peer) = self.members.pick_live(self.out.rng(), 1, None).pop() {
            self.out.count().syncs += 1;
            self.out.send(peer, core::slice::from_ref(&root), 1);
        }
        if let Some(target) = self.members.pick_dead(self.out.rng()) {
            let alive = encode_message(&Message::Member(self.members.own_claim()));
            self.out.send(target, &[alive, root], 1);
        }
        if self.members.live_len() == 0 {
            self.contact_seeds();
        }
    }

    pub(super) fn contact_seeds(&mut self) {
        if !self.members.is_active() {
            return;
        }
        let alive = encode_message(&Message::Member(self.members.own_claim()));
        let root = self.gossip.root_message();
        for seed in self.members.seeds().to_vec() {
            self.out.send(seed, &[alive.clone(), root.clone()], 1);
        }
    }

    // ----- placement records --------------------------------------------------------

    /// Spreads a record we wrote (ours, or a removal) and updates its summary leaf.
    pub(super) fn spread_record(&mut self, record: crate::placement::PlacementRecord<A>) {
        self.refresh_record(&record.name);
        // Our own record is a claim about this node: a joiner's proposed tokens must
        // reach the others before they allocate their own (joint allocation).
        let class = if record.name == self.name() {
            Class::Own
        } else {
            Class::Topology
        };
        let subject = Subject::Placement(record.name.clone());
        self.out
            .rumour_as(subject, class, encode_message(&Message::Placement(record)));
    }

    /// Recomputes a placement record's contribution to the anti-entropy summary.
    fn refresh_record(&mut self, name: &str) {
        // Records are never removed: one we do not hold has no contribution.
        if let Some(ix) = self.placement.index_of(name) {
            let leaf = self.placement.leaf_hash(name);
            self.gossip.set_record(name, ix, leaf);
        }
    }

    /// A record from a peer: kept if it outranks ours, and then passed on.
    fn on_record(&mut self, record: crate::placement::PlacementRecord<A>) {
        let name = record.name.clone();
        let out = &mut self.out;
        let members = &self.members;
        let is_live = |a: &A| members.get(a).is_some_and(|m| m.status.is_live());
        let (received, mine) = self
            .placement
            .on_record(record.clone(), &is_live, &mut |e| out.event(e));
        if received == Received::Refused {
            self.out.count().claims_refused += 1;
        }
        if received == Received::News {
            self.refresh_record(&name);
            if mine.is_none() {
                // Passed on as news, not as the record: each node pulls the record
                // once (from whoever told it) instead of every node forwarding its
                // tokens λ·log N times.
                let news = Message::<A>::PlacementNews {
                    rank: record.rank(),
                    status: record.status,
                    name: name.clone(),
                };
                self.out
                    .news_rumour(Subject::Placement(name), encode_message(&news));
            }
        }
        if let Some(mine) = mine {
            self.spread_record(mine);
        }
    }

    /// The placement half of a peer's digest: the higher rank wins on both sides.
    fn on_placement_digest(
        &mut self,
        bucket: u16,
        complete: bool,
        theirs: &[(alloc::string::String, crate::placement::Rank)],
        reply: &mut Vec<Vec<u8>>,
    ) {
        let bucket = usize::from(bucket);
        if bucket >= BUCKETS {
            return;
        }
        for (name, rank) in theirs {
            if bucket_of(name.as_str()) != bucket {
                continue;
            }
            match self.placement.record(name) {
                Some(r) if r.rank() > *rank => {
                    if let Some(record) = r.to_record() {
                        reply.push(encode_message(&Message::Placement(record)));
                    }
                }
                Some(r) if r.rank() == *rank => {}
                _ => reply.push(encode_message(&Message::<A>::PlacementWant {
                    name: name.clone(),
                })),
            }
        }
        if complete {
            for &ix in self.gossip.names(bucket) {
                let Some(r) = self.placement.record_at(ix) else {
                    continue;
                };
                if theirs.iter().any(|(n, _)| *n == r.name()) {
                    continue;
                }
                if let Some(record) = r.to_record() {
                    reply.push(encode_message(&Message::Placement(record)));
                }
            }
        }
    }

    // ----- anti-entropy digests -----------------------------------------------------

    /// A peer's digest of one bucket: for each member, the newer claim wins on both
    /// sides, then the state part compares content; live members they did not list
    /// are told to them.
    pub(super) fn on_sync_digest(
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
            match self.members.compare(&e.claim) {
                Compared::Same => {}
                Compared::OursNewer(ours) => reply.push(encode_message(&Message::Member(ours))),
                Compared::AboutMe => {
                    self.claim_about_me(&e.claim);
                    let own = self.members.own_claim();
                    reply.push(encode_message(&Message::Member(own)));
                }
                Compared::TheirsNewer => {
                    let accuser = (e.claim.status == Status::Suspect).then(|| sender.addr.clone());
                    self.apply_claim(now, e.claim.clone(), accuser);
                }
            }
            let Some(mine) = digest_entry(&self.members, &self.store, &addr) else {
                continue;
            };
            self.store
                .reconcile(&sender.addr, &mine, e, reply, &mut self.out);
        }
        if complete {
            let listed: Vec<&A> = entries.iter().map(|e| &e.claim.id.addr).collect();
            for addr in self
                .gossip
                .bucket(bucket)
                .iter()
                .filter_map(|&ix| self.members.addr_of(ix))
            {
                if listed.contains(&addr) || *addr == sender.addr {
                    continue;
                }
                if let Some(e) = digest_entry(&self.members, &self.store, addr) {
                    reply.push(encode_message(&Message::Member(e.claim)));
                }
            }
        }
    }
}
