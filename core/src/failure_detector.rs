//! SWIM failure detection with Lifeguard's refinements: the probe round, indirect
//! probes, acks and nacks, the ping-reqs we relay for others, suspicion timers and
//! local health.
//!
//! One probe is in flight at a time: a direct ping, then after `probe_timeout` a
//! ping-req through up to `indirect_probes` members (and a second direct ping), and
//! at the end of the period a suspicion if nothing answered. Lifeguard adds three
//! things: nacks from the helpers (so a missing nack counts against *us*), a local
//! health multiplier that slows our probing while we seem to be the slow one, and a
//! suspicion timeout that starts long and shrinks as independent accusers agree.
//!
//! The detector owns its timers ([`Detector::poll_timeout`]) and sends its own
//! probes through the outbox; what it concludes about a member (suspect, dead) it
//! returns as a claim for the node to apply, since a verdict touches every part.

use alloc::vec::Vec;
use core::time::Duration;
use serde::{Deserialize, Serialize};

use rand_core::RngCore;

use crate::config::Config;
use crate::hash::{Map, SeededState};
use crate::membership::{MemberClaim, MemberIx, Membership, NodeId, Status};
use crate::outbox::{Outbox, below, jitter};
use crate::time::Instant;
use crate::wire::{Message, encode_message};

/// Most ping-reqs served at once; more are dropped (they would only amplify a flood).
const MAX_RELAYS: usize = 64;

/// The probes [`Detector::is_cut_off`] looks back on.
const REACH_WINDOW: u8 = 16;

/// At most this many of the last [`REACH_WINDOW`] probes answered: we are cut off.
/// With indirect probes through three helpers, a probe fails about one time in nine
/// at 30 % loss on every link and one time in four at 40 %, but four times in five
/// for a node that loses 80 % of its own datagrams.
const CUT_OFF_ANSWERS: u32 = 5;

/// The probe in flight.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Probe<A> {
    target: NodeId<A>,
    seq: u32,
    indirect_at: Instant,
    indirect_sent: bool,
    acked: bool,
    expected_nacks: u32,
    nacks: u32,
    /// The members asked to probe the target for us.
    helpers: Vec<A>,
}

/// A ping-req we are serving for someone else.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Relay<A> {
    seq: u32,
    /// The member we pinged on the origin's behalf; only its ack is relayed.
    target: A,
    origin: A,
    origin_seq: u32,
    nack_at: Instant,
}

/// A running suspicion of one member.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Suspicion<A> {
    generation: u64,
    incarnation: u64,
    start: Instant,
    accusers: Vec<A>,
    expected: u32,
    min: Duration,
    max: Duration,
    /// When to tell the suspect again (half the minimum timeout in, then every
    /// minimum timeout), while the accusation stands: see
    /// [`Detector::retell_suspicions`].
    retell_at: Option<Instant>,
}

/// ln(x) for x in 1..=17, the only arguments Lifeguard's formula needs here
/// (confirmations + 1 and expected + 1, both at most indirect_probes + 1 ≤ 4 by
/// config, with headroom). `core` has no logarithm without a libm.
const LN: [f64; 18] = [
    0.0,
    0.0,
    core::f64::consts::LN_2,
    1.098_612,
    1.386_294,
    1.609_438,
    1.791_759,
    1.945_910,
    2.079_442,
    2.197_225,
    core::f64::consts::LN_10,
    2.397_895,
    2.484_907,
    2.564_949,
    2.639_057,
    2.708_050,
    2.772_589,
    2.833_213,
];

impl<A> Suspicion<A> {
    /// Lifeguard: `max(min, max − (max − min) · ln(C + 1) / ln(K + 1))`.
    fn timeout(&self) -> Duration {
        let k = self.expected.min(16) as usize;
        if k == 0 {
            return self.min;
        }
        let c = self.accusers.len().saturating_sub(1).min(k);
        let frac = LN[c + 1] / LN[k + 1];
        let span = self.max.saturating_sub(self.min).as_secs_f64();
        let t = self.max.as_secs_f64() - span * frac;
        Duration::from_secs_f64(t.max(self.min.as_secs_f64()))
    }

    fn deadline(&self) -> Instant {
        self.start + self.timeout()
    }

    /// The suspicion's next timer: the retelling, then the deadline.
    fn next_due(&self) -> Instant {
        let deadline = self.deadline();
        self.retell_at.map_or(deadline, |r| r.min(deadline))
    }
}

/// log10(max(n, 1)) floored at 1, as memberlist's suspicion scale, without libm:
/// log2 from the bit length plus a linear mantissa correction.
pub(crate) fn node_scale(n: usize) -> f64 {
    let n = n.max(1) as u64;
    let bits = 63 - n.leading_zeros();
    let frac = (n as f64) / ((1u64 << bits) as f64) - 1.0;
    let log2 = bits as f64 + frac; // within 0.09 of log2(n)
    (log2 * core::f64::consts::LOG10_2).max(1.0)
}

/// The failure detector: see the [module docs](self).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "A: crate::Address")]
pub(crate) struct Detector<A> {
    next_probe: Option<Instant>,
    /// This pass's probe order (a shuffle of the live members, by index) and our
    /// place in it. A member forgotten during the pass leaves [`MemberIx::NONE`].
    order: Vec<MemberIx>,
    pos: usize,
    probe: Option<Probe<A>>,
    relays: Vec<Relay<A>>,
    /// The SipHash key of admission cookies (see [`Detector::admit`]).
    admission_key: [u64; 2],
    #[serde(with = "crate::snapshot::map")]
    suspicions: Map<A, Suspicion<A>>,
    /// Earliest suspicion deadline, cached until the set changes.
    next_suspicion: Option<Instant>,
    seq: u32,
    /// Lifeguard's local health multiplier.
    health: u32,
    health_max: u32,
    /// Whether each of our last probes of confirmed members was answered (directly
    /// or through a helper), newest in bit 0: see [`Detector::is_cut_off`].
    answered: u16,
    /// How many probes `answered` holds, up to [`REACH_WINDOW`].
    probes_seen: u8,
    /// We were cut off and reach the cluster again; taken by
    /// [`Detector::take_reconnected`].
    reconnected: bool,
    probe_interval: Duration,
    probe_timeout: Duration,
    indirect_probes: usize,
    suspicion_mult: u32,
    suspicion_max_mult: u32,
}

impl<A: crate::Address> Detector<A> {
    /// `first_seq` and `admission_key` come from the RNG, so a new life does not
    /// reuse the sequence numbers or cookies of the previous one (a late ack from the
    /// old life would match).
    pub fn new(
        config: &Config,
        hasher: SeededState,
        first_seq: u32,
        admission_key: [u64; 2],
    ) -> Self {
        Detector {
            next_probe: None,
            order: Vec::new(),
            pos: 0,
            probe: None,
            relays: Vec::new(),
            admission_key,
            suspicions: Map::with_hasher(hasher),
            next_suspicion: None,
            seq: first_seq,
            health: 0,
            health_max: config.awareness_max,
            answered: 0,
            probes_seen: 0,
            reconnected: false,
            probe_interval: config.probe_interval,
            probe_timeout: config.probe_timeout,
            indirect_probes: config.indirect_probes,
            suspicion_mult: config.suspicion_mult,
            suspicion_max_mult: config.suspicion_max_mult,
        }
    }

    // ----- lifecycle and health -----------------------------------------------------

    /// Starts probing, at a random point of the first period.
    pub fn start(&mut self, now: Instant, rng: &mut impl RngCore) {
        self.next_probe = Some(now + jitter(rng, self.probe_interval));
    }

    /// Stops probing (we left).
    pub fn stop(&mut self) {
        self.next_probe = None;
        self.probe = None;
    }

    /// Lifeguard's local health multiplier: 0 when healthy, up to `awareness_max`.
    pub fn health(&self) -> u32 {
        self.health
    }

    /// The ceiling of the local health multiplier.
    pub fn health_max(&self) -> u32 {
        self.health_max
    }

    /// The suspicion of `addr` in progress, if any, for dumps.
    pub fn suspicion(&self, addr: &A) -> Option<crate::dump::SuspicionDump> {
        self.suspicions
            .get(addr)
            .map(|s| crate::dump::SuspicionDump {
                start: s.start,
                deadline: s.deadline(),
                confirmations: s.accusers.len().saturating_sub(1),
                expected: s.expected,
            })
    }

    /// We had to refute a suspicion of ourselves: we may be the slow one.
    pub fn refuted(&mut self) {
        self.health_up(1);
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// The sequence number of admission pings to `addr`: SipHash-2-4 (a PRF, the
    /// hash Linux's SYN cookies use) of the address under this life's secret key, so
    /// that a sender that cannot read our pings to `addr` cannot forge their ack,
    /// even knowing the cookies of the addresses it owns.
    fn admission_cookie(&self, addr: &A) -> u32 {
        // `SipHasher` is deprecated only as a `HashMap` hasher; SipHash-2-4 itself is
        // what we want here, and core has no other keyed PRF.
        #[allow(deprecated)]
        let mut h =
            core::hash::SipHasher::new_with_keys(self.admission_key[0], self.admission_key[1]);
        core::hash::Hash::hash(addr, &mut h);
        let x = core::hash::Hasher::finish(&h);
        (x ^ (x >> 32)) as u32
    }

    /// Multiplies a base interval by the local health multiplier plus one.
    fn scaled(&self, base: Duration) -> Duration {
        base.saturating_mul(self.health + 1)
    }

    /// Whether we are cut off from the cluster: at least [`REACH_WINDOW`] probes of
    /// confirmed members made, at most [`CUT_OFF_ANSWERS`] of the last ones answered,
    /// and not the last three. Such a node stops refuting accusations, so the cluster
    /// declares it dead, as Rapid removes a node its observers cannot reach: a request
    /// routed to it would almost always fail (ARCHITECTURE.md, "Gray failures"). Our
    /// own probes say it, not another node's word, so no other node can cut us off.
    pub fn is_cut_off(&self) -> bool {
        self.probes_seen >= REACH_WINDOW
            && self.answered.count_ones() <= CUT_OFF_ANSWERS
            && self.answered & 0b111 != 0b111
    }

    /// Whether we were cut off and have just reached the cluster again (three probes
    /// in a row answered): our alive claim should go out again. Clears the flag.
    pub fn take_reconnected(&mut self) -> bool {
        core::mem::take(&mut self.reconnected)
    }

    fn record_reach(&mut self, answered: bool) {
        let was = self.is_cut_off();
        self.answered = (self.answered << 1) | u16::from(answered);
        self.probes_seen = (self.probes_seen + 1).min(REACH_WINDOW);
        if was && !self.is_cut_off() {
            self.reconnected = true;
        }
    }

    fn health_up(&mut self, by: u32) {
        self.health = (self.health + by).min(self.health_max);
    }

    fn health_down(&mut self) {
        self.health = self.health.saturating_sub(1);
    }

    // ----- members coming and going -------------------------------------------------

    /// A member became live: it joins the rest of this probe pass at a random place
    /// (memberlist does the same), so a newcomer is probed within one pass.
    pub fn member_live(&mut self, ix: MemberIx, live: usize, rng: &mut impl RngCore) {
        if self.order.len() > 2 * live + 16 {
            // Members that died and came back left stale slots: start a fresh pass.
            self.order.clear();
            self.pos = 0;
        }
        // Inside-out Fisher-Yates: the newcomer takes a uniform place among the rest of
        // the pass and the member it displaces moves to the end, which leaves the rest
        // a uniform shuffle. Inserting shifted the pass, O(N) per newcomer: a node
        // that learns 10,000 members moved 200 MB.
        let start = self.pos.min(self.order.len());
        let at = start + below(rng, self.order.len() - start + 1);
        self.order.push(ix);
        let last = self.order.len() - 1;
        self.order.swap(at, last);
    }

    /// The member at `ix` was forgotten and its slot may be reused: its places in
    /// this pass are skipped, as its address would have been.
    pub fn forget_slot(&mut self, ix: MemberIx) {
        for o in &mut self.order {
            if *o == ix {
                *o = MemberIx::NONE;
            }
        }
    }

    /// Drops any suspicion of `addr` (it recovered, died, left or was forgotten).
    pub fn forget(&mut self, addr: &A) {
        if self.suspicions.remove(addr).is_some() {
            self.next_suspicion = None;
        }
    }

    // ----- the probe round ----------------------------------------------------------

    pub fn probe_due(&self, now: Instant) -> bool {
        self.next_probe.is_some_and(|t| t <= now)
    }

    /// Closes the previous probe: an ack means we are healthy, no ack means suspicion,
    /// and missing nacks mean the fault may be ours. Returns the suspicion to apply.
    pub fn close_probe(&mut self, members: &Membership<A>) -> Option<MemberClaim<A>> {
        let p = self.probe.take()?;
        if members.is_confirmed(&p.target.addr) {
            self.record_reach(p.acked);
        }
        if p.acked {
            self.health_down();
            return None;
        }
        let missed = if p.expected_nacks == 0 {
            1
        } else {
            p.expected_nacks.saturating_sub(p.nacks)
        };
        // A member that never proved its address may be a forgery: its silence says
        // nothing about our own health.
        if members.is_confirmed(&p.target.addr) {
            self.health_up(missed);
        }
        let m = members.get(&p.target.addr)?;
        (m.id.generation == p.target.generation && m.status.is_live()).then(|| MemberClaim {
            id: m.id.clone(),
            incarnation: m.incarnation,
            status: Status::Suspect,
        })
    }

    /// Opens the next probe: schedules the next period and pings the next member of
    /// the round-robin order.
    pub fn open_probe<R: RngCore>(
        &mut self,
        now: Instant,
        members: &Membership<A>,
        out: &mut Outbox<A, R>,
    ) {
        self.next_probe = Some(now + self.scaled(self.probe_interval));
        let Some(target) = self.next_probe_target(members, out.rng()) else {
            return;
        };
        let Some(m) = members.get(&target) else {
            return;
        };
        let seq = self.next_seq();
        self.probe = Some(Probe {
            helpers: Vec::new(),
            target: m.id.clone(),
            seq,
            indirect_at: now + self.scaled(self.probe_timeout),
            indirect_sent: false,
            acked: false,
            expected_nacks: 0,
            nacks: 0,
        });
        out.count().probes += 1;
        let mut msgs = alloc::vec![encode_message(&Message::<A>::Ping { seq })];
        if m.status == Status::Suspect {
            // Lifeguard's buddy system: tell a suspect directly, so it can refute now
            // rather than when the rumour happens to reach it.
            msgs.push(encode_message(&Message::Member(m.claim())));
        }
        out.send(target, &msgs, 1);
    }

    /// Round-robin over a shuffled list of live members, reshuffled after each pass,
    /// so every member is probed within two passes (SWIM §4.3).
    fn next_probe_target(&mut self, members: &Membership<A>, rng: &mut impl RngCore) -> Option<A> {
        for _ in 0..2 {
            while self.pos < self.order.len() {
                let ix = self.order[self.pos];
                self.pos += 1;
                let Some(a) = members.addr_of(ix) else {
                    continue;
                };
                // Unconfirmed members are not probed: their admission ping decides
                // them, so forged identities cannot dilute the probe rounds.
                if members.is_live(a) && members.is_confirmed(a) {
                    return Some(a.clone());
                }
            }
            let mut order: Vec<MemberIx> = members.live_ix().collect();
            for i in (1..order.len()).rev() {
                let j = below(rng, i + 1);
                order.swap(i, j);
            }
            self.order = order;
            self.pos = 0;
        }
        None
    }

    /// Fires the detector's other timers: the indirect round of the probe in flight,
    /// nacks for relays that got no ack, and suspicions that ran out. Returns the
    /// deaths to apply.
    pub fn handle_timeout<R: RngCore>(
        &mut self,
        now: Instant,
        members: &Membership<A>,
        out: &mut Outbox<A, R>,
    ) -> Vec<MemberClaim<A>> {
        if self
            .probe
            .as_ref()
            .is_some_and(|p| !p.acked && !p.indirect_sent && p.indirect_at <= now)
        {
            self.send_indirect_probes(members, out);
        }
        self.relay_timeouts(now, out);
        self.retell_suspicions(now, members, out);
        let verdicts = self.expired(now);
        // The verdict goes to the member too: if it is alive after all (every word
        // of the suspicion lost, or a slow node), it refutes at once instead of
        // waiting to be picked by the gossip to the dead, which a long table of
        // live members makes rare. A crashed member costs one datagram per holder.
        for v in &verdicts {
            if members.is_confirmed(&v.id.addr) {
                out.send(
                    v.id.addr.clone(),
                    &[encode_message(&Message::Member(v.clone()))],
                    1,
                );
            }
        }
        verdicts
    }

    /// Every node that holds a suspicion tells the suspect, half the minimum timeout
    /// in and then once every minimum timeout until the suspicion ends. The
    /// accuser's word at the start (`tell_suspect`) can be lost, a slow node's next
    /// probe of the suspect can come after the deadline, and the rumour can spend its
    /// transmissions on members that never pass it on (a table full of silent
    /// members): without this, two live nodes that suspect each other can both run
    /// out of time without either hearing the accusation, and declare a live member
    /// dead. The fuzzer found that twice; the second time a single retelling fell in
    /// the same stretch of loss as the first word. A suspicion with its
    /// confirmations lasts the minimum (one retelling); one without lasts up to
    /// `suspicion_max_mult` minimums (that many). One small datagram each, to an
    /// address that is a confirmed member.
    fn retell_suspicions<R: RngCore>(
        &mut self,
        now: Instant,
        members: &Membership<A>,
        out: &mut Outbox<A, R>,
    ) {
        let mut due: Vec<A> = Vec::new();
        for (addr, s) in self.suspicions.iter_mut() {
            if s.retell_at.is_some_and(|r| r <= now) {
                s.retell_at = Some(now + s.min);
                due.push(addr.clone());
            }
        }
        if due.is_empty() {
            return;
        }
        // In address order, not the map's: the datagrams are outputs.
        due.sort_unstable();
        self.next_suspicion = None;
        for addr in due {
            let Some(m) = members.get(&addr) else {
                continue;
            };
            if m.status == Status::Suspect && members.is_confirmed(&addr) {
                let msg = encode_message(&Message::Member(m.claim()));
                out.send(addr, &[msg], 1);
            }
        }
    }

    fn send_indirect_probes<R: RngCore>(
        &mut self,
        members: &Membership<A>,
        out: &mut Outbox<A, R>,
    ) {
        let Some(p) = self.probe.as_mut() else {
            return;
        };
        p.indirect_sent = true;
        let (seq, target) = (p.seq, p.target.clone());
        let helpers = members.pick_live(out.rng(), self.indirect_probes, Some(&target.addr));
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = helpers.len() as u32;
            p.helpers = helpers.clone();
        }
        // A second direct ping next to the indirect ones: memberlist's TCP fallback in
        // spirit. One lost datagram on the direct path no longer costs a suspicion.
        let again = encode_message(&Message::<A>::Ping { seq });
        out.send(target.addr.clone(), &[again], 1);
        let msg = encode_message(&Message::PingReq { seq, target });
        for h in helpers {
            out.count().indirect_probes += 1;
            out.send(h, core::slice::from_ref(&msg), 1);
        }
    }

    fn relay_timeouts<R: RngCore>(&mut self, now: Instant, out: &mut Outbox<A, R>) {
        let mut i = 0;
        while i < self.relays.len() {
            if self.relays[i].nack_at <= now {
                let r = self.relays.swap_remove(i);
                let nack = encode_message(&Message::<A>::Nack { seq: r.origin_seq });
                out.send(r.origin, &[nack], 1);
            } else {
                i += 1;
            }
        }
    }

    // ----- messages -----------------------------------------------------------------

    /// A ping: answer with an ack in the reply.
    pub fn on_ping(&self, seq: u32, reply: &mut Vec<Vec<u8>>) {
        reply.push(encode_message(&Message::<A>::Ack { seq }));
    }

    /// An ack counts only from whom we asked: the target, or a helper relaying for it.
    /// An ack for a ping we relayed goes back to whoever asked us. Returns the member
    /// whose address the ack proves (it answered a ping we sent there, with a sequence
    /// number a blind spoofer cannot guess), to be confirmed.
    pub fn on_ack<R: RngCore>(&mut self, from: &A, seq: u32, out: &mut Outbox<A, R>) -> Option<A> {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
            if p.target.addr == *from || p.helpers.contains(from) {
                p.acked = true;
                return Some(p.target.addr.clone());
            }
            return None;
        }
        if seq == self.admission_cookie(from) {
            return Some(from.clone());
        }
        if let Some(i) = self
            .relays
            .iter()
            .position(|r| r.seq == seq && r.target == *from)
        {
            let r = self.relays.swap_remove(i);
            let ack = encode_message(&Message::<A>::Ack { seq: r.origin_seq });
            out.send(r.origin, &[ack], 1);
            return Some(r.target);
        }
        None
    }

    /// A newcomer reached us directly: ping it at once, so that it is confirmed (or
    /// not) within a round trip instead of when its turn in the probe order comes.
    ///
    /// The ping's sequence number is a cookie, a keyed hash of the address (as TCP's
    /// SYN cookies): its ack proves the address without any state kept while the ping
    /// is in flight. A table of pings in flight must be bounded, and a joiner that
    /// learns thousands of members at once overflowed it (1,024 entries): the
    /// members whose entries gave way stayed unconfirmed, were forgotten after
    /// `UNCONFIRMED_ROUNDS`, and a 10,000-node join never converged.
    pub fn admit<R: RngCore>(&mut self, addr: &A, out: &mut Outbox<A, R>) {
        out.send_bare(addr.clone(), &[self.admission_ping(addr)]);
    }

    /// The admission ping to `addr`, encoded: [`admit`](Self::admit) sends it on its
    /// own, and a reply to a newcomer that reached us itself carries it beside the
    /// reply's other messages (one datagram fewer per pair of members in a mass join).
    pub fn admission_ping(&self, addr: &A) -> Vec<u8> {
        encode_message(&Message::<A>::Ping {
            seq: self.admission_cookie(addr),
        })
    }

    /// A helper could not reach our target either: the fault is probably not ours.
    pub fn on_nack<R: RngCore>(&mut self, seq: u32, out: &mut Outbox<A, R>) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
            p.nacks += 1;
            out.count().nacks += 1;
        }
    }

    /// Someone asks us to probe `target` for them.
    pub fn on_ping_req<R: RngCore>(
        &mut self,
        now: Instant,
        sender: &NodeId<A>,
        seq: u32,
        target: NodeId<A>,
        reply: &mut Vec<Vec<u8>>,
        out: &mut Outbox<A, R>,
    ) {
        if target.addr == *out.me() {
            reply.push(encode_message(&Message::<A>::Ack { seq }));
            return;
        }
        if self.relays.len() >= MAX_RELAYS {
            return;
        }
        let my_seq = self.next_seq();
        // Answer with a nack a little before the requester's own deadline.
        let nack_at = now + self.probe_timeout.mul_f64(0.8);
        self.relays.push(Relay {
            seq: my_seq,
            target: target.addr.clone(),
            origin: sender.addr.clone(),
            origin_seq: seq,
            nack_at,
        });
        let ping = encode_message(&Message::<A>::Ping { seq: my_seq });
        out.send(target.addr, &[ping], 1);
    }

    // ----- suspicion ----------------------------------------------------------------

    /// Starts suspecting `claim`'s member in a cluster of `n` live nodes.
    pub fn suspect(&mut self, now: Instant, claim: &MemberClaim<A>, accuser: Option<A>, n: usize) {
        let min = self
            .probe_interval
            .mul_f64(f64::from(self.suspicion_mult) * node_scale(n));
        let max = min.saturating_mul(self.suspicion_max_mult);
        // Lifeguard's K: independent confirmations we may expect. With few members
        // there is no one left to confirm, so the minimum applies at once.
        let expected = (self.indirect_probes as u32).min(n.saturating_sub(2) as u32);
        let suspicion = Suspicion {
            generation: claim.id.generation,
            incarnation: claim.incarnation,
            start: now,
            accusers: accuser.into_iter().collect(),
            expected,
            min,
            max,
            retell_at: Some(now + min / 2),
        };
        self.suspicions.insert(claim.id.addr.clone(), suspicion);
        self.next_suspicion = None;
    }

    /// When the suspicion of `addr` runs out, if there is one.
    #[cfg(test)]
    fn deadline_of(&self, addr: &A) -> Option<Instant> {
        self.suspicions.get(addr).map(Suspicion::deadline)
    }

    /// Lifeguard's buddy system, at once rather than at our next probe of the suspect
    /// (which a slow or crowded node makes long): the suspect hears of the suspicion
    /// now and can answer it before it runs out.
    pub fn tell_suspect<R: RngCore>(
        &self,
        suspect: &NodeId<A>,
        members: &Membership<A>,
        out: &mut Outbox<A, R>,
    ) {
        if let Some(m) = members
            .get(&suspect.addr)
            .filter(|m| m.id == *suspect && m.status == Status::Suspect)
        {
            let msg = encode_message(&Message::Member(m.claim()));
            out.send(suspect.addr.clone(), &[msg], 1);
        }
    }

    /// Whether our suspicion of `addr` rests on `accuser`'s word alone.
    pub fn rests_on(&self, addr: &A, accuser: &A) -> bool {
        self.suspicions
            .get(addr)
            .is_some_and(|s| s.accusers.len() == 1 && s.accusers[0] == *accuser)
    }

    /// The suspicion of `addr` stands on another member's death verdict (see
    /// `Node::apply_claim_from`): it runs for the minimum timeout only, as if every
    /// confirmation had come.
    pub fn hasten(&mut self, addr: &A) {
        if let Some(s) = self.suspicions.get_mut(addr) {
            s.expected = 0;
            self.next_suspicion = None;
        }
    }

    /// Adds an independent accuser; returns whether it was new.
    pub fn confirm(&mut self, addr: &A, incarnation: u64, accuser: A) -> bool {
        match self.suspicions.get_mut(addr) {
            Some(s) if s.incarnation == incarnation && !s.accusers.contains(&accuser) => {
                if s.accusers.len() <= s.expected as usize {
                    s.accusers.push(accuser);
                    self.next_suspicion = None;
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    /// Suspicions whose deadline has passed, as death claims.
    fn expired(&mut self, now: Instant) -> Vec<MemberClaim<A>> {
        let mut due: Vec<MemberClaim<A>> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline() <= now)
            .map(|(a, s)| MemberClaim {
                id: NodeId::new(a.clone(), s.generation),
                incarnation: s.incarnation,
                status: Status::Dead,
            })
            .collect();
        // By address, not in the map's order: a map rebuilt from a snapshot may
        // iterate differently, and each death becomes events and rumours.
        due.sort_unstable_by(|a, b| a.id.addr.cmp(&b.id.addr));
        for c in &due {
            self.suspicions.remove(&c.id.addr);
        }
        if !due.is_empty() {
            self.next_suspicion = None;
        }
        due
    }

    /// The detector's next deadline: the next probe, the indirect round, a relay's
    /// nack or a suspicion running out.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.next_suspicion.is_none() {
            self.next_suspicion = self.suspicions.values().map(Suspicion::next_due).min();
        }
        let indirect = self
            .probe
            .as_ref()
            .filter(|p| !p.acked && !p.indirect_sent)
            .map(|p| p.indirect_at);
        let relay = self.relays.iter().map(|r| r.nack_at).min();
        [self.next_probe, indirect, relay, self.next_suspicion]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_timeout_shrinks_with_confirmations() {
        let mut s = Suspicion::<u32> {
            generation: 1,
            incarnation: 0,
            start: Instant::ZERO,
            accusers: alloc::vec![1],
            expected: 3,
            min: Duration::from_secs(8),
            max: Duration::from_secs(48),
            retell_at: None,
        };
        assert_eq!(s.timeout(), Duration::from_secs(48));
        s.accusers.push(2);
        let one = s.timeout();
        assert!(one < Duration::from_secs(48) && one > Duration::from_secs(8));
        s.accusers.extend([3, 4]);
        assert_eq!(s.timeout(), Duration::from_secs(8));
    }

    #[test]
    fn node_scale_is_log10() {
        assert_eq!(node_scale(1), 1.0);
        assert!((node_scale(100) - 2.0).abs() < 0.05);
        assert!((node_scale(1000) - 3.0).abs() < 0.05);
        assert!((node_scale(10_000) - 4.0).abs() < 0.05);
    }

    // ----- the part's verbs, without the simulator ----------------------------------

    use crate::hash::SeededState;
    use crate::outbox::testing::{outbox, sent};

    const ME: u32 = 1;

    #[test]
    fn a_node_whose_probes_go_unanswered_is_cut_off_until_three_in_a_row_are() {
        let mut d = detector();
        // Too few probes to tell: a newcomer, or a node with a short table.
        for _ in 0..REACH_WINDOW - 1 {
            d.record_reach(false);
        }
        assert!(!d.is_cut_off());
        d.record_reach(false);
        assert!(d.is_cut_off(), "16 probes, none answered");
        // One or two answers in a row do not reconnect it, however many came before.
        for answered in [true, false, true, true, false] {
            d.record_reach(answered);
            assert!(d.is_cut_off());
            assert!(!d.take_reconnected());
        }
        for _ in 0..3 {
            d.record_reach(true);
        }
        assert!(!d.is_cut_off(), "three in a row answered");
        assert!(d.take_reconnected());
        assert!(!d.take_reconnected(), "taken once");
        // A node that loses some probes, as everyone does at 30 % loss, is not cut off:
        // 6 of 16 answered, or more.
        let mut d = detector();
        for k in 0..64 {
            d.record_reach(k % 8 < 3);
            assert!(!d.is_cut_off(), "{k}: 6 of every 16 answered");
        }
    }

    fn detector() -> Detector<u32> {
        Detector::new(&Config::lan("t"), SeededState(1), 0, [1, 2])
    }

    /// Our membership, with `others` alive at generation 1, incarnation 0.
    fn members(others: &[u32]) -> Membership<u32> {
        let mut m = Membership::new(NodeId::new(ME, 1), 64, SeededState(1));
        m.join(Instant::ZERO, core::iter::empty());
        for &a in others {
            m.apply(&alive(a), Instant::ZERO);
            m.confirm(&a);
        }
        m
    }

    fn alive(addr: u32) -> MemberClaim<u32> {
        MemberClaim {
            id: NodeId::new(addr, 1),
            incarnation: 0,
            status: Status::Alive,
        }
    }

    fn suspect(addr: u32) -> MemberClaim<u32> {
        MemberClaim {
            status: Status::Suspect,
            ..alive(addr)
        }
    }

    /// Opens a probe at `now` and returns its target and sequence number, read from
    /// the ping it sent.
    fn open(
        d: &mut Detector<u32>,
        now: Instant,
        m: &Membership<u32>,
        out: &mut Outbox<u32, rand_chacha::ChaCha8Rng>,
    ) -> (u32, u32) {
        d.open_probe(now, m, out);
        let mut sent = sent(out);
        assert_eq!(sent.len(), 1, "one direct ping");
        let (to, msgs) = sent.remove(0);
        match msgs[..] {
            [Message::Ping { seq }] => (to, seq),
            _ => panic!("expected a lone ping, got {msgs:?}"),
        }
    }

    /// The shortest suspicion timeout among `n` members (the longest before any
    /// confirmation is `suspicion_max_mult` times it).
    fn min_timeout(n: usize) -> Duration {
        let config = Config::lan("t");
        config
            .probe_interval
            .mul_f64(f64::from(config.suspicion_mult) * node_scale(n))
    }

    /// The first deadline of a suspicion of 7 begun at 0 is its retelling, half the
    /// minimum in: fires it. 7 is not in the table it is given, so nothing is sent.
    fn pass_the_first_retelling(d: &mut Detector<u32>, min: Duration) {
        assert_eq!(
            d.poll_timeout(),
            Some(Instant::ZERO + min / 2),
            "first, the retelling"
        );
        let mut out = outbox(ME);
        assert!(
            d.handle_timeout(Instant::ZERO + min / 2, &members(&[]), &mut out)
                .is_empty()
        );
        assert!(sent(&mut out).is_empty());
    }

    #[test]
    fn suspicion_timeout_falls_with_each_confirmation_to_the_minimum_at_k() {
        let config = Config::lan("t");
        let n = 10;
        let mut d = detector();
        assert_eq!(d.poll_timeout(), None, "nothing started, nothing suspected");
        d.suspect(Instant::ZERO, &suspect(7), Some(2), n);
        let min = min_timeout(n);
        let max = min.saturating_mul(config.suspicion_max_mult);
        pass_the_first_retelling(&mut d, min);
        assert_eq!(
            d.poll_timeout(),
            Some(Instant::ZERO + min / 2 + min),
            "the next retelling"
        );
        assert_eq!(
            d.deadline_of(&7),
            Some(Instant::ZERO + max),
            "no confirmation yet"
        );
        // K = min(indirect_probes, n - 2) = 3 independent confirmations.
        let k = config.indirect_probes.min(n - 2);
        assert_eq!(k, 3);
        let mut last = max;
        for (i, accuser) in [3, 4, 5].into_iter().enumerate() {
            assert!(d.confirm(&7, 0, accuser), "confirmation {i} is new");
            let t = d.deadline_of(&7).expect("a suspicion runs") - Instant::ZERO;
            if i + 1 < k {
                assert!(t < last && t > min, "confirmation {i}: {t:?}");
            } else {
                assert_eq!(t, min, "K confirmations reach the minimum");
            }
            last = t;
        }
        // Beyond K, repeated, or at another incarnation: not counted.
        assert!(!d.confirm(&7, 0, 6));
        assert!(!d.confirm(&7, 0, 3));
        assert!(!d.confirm(&7, 1, 8));
        assert!(!d.confirm(&9, 0, 8), "no suspicion of 9");
        assert_eq!(d.deadline_of(&7), Some(Instant::ZERO + min));
        assert_eq!(
            d.poll_timeout(),
            Some(Instant::ZERO + min),
            "before the retelling"
        );
        // The suspicion runs out at the minimum: a death claim at its incarnation.
        let m = members(&[7]);
        let mut out = outbox(ME);
        let just_before = Instant::ZERO + min - Duration::from_nanos(1);
        assert!(d.handle_timeout(just_before, &m, &mut out).is_empty());
        let dead = d.handle_timeout(Instant::ZERO + min, &m, &mut out);
        assert_eq!(
            dead,
            alloc::vec![MemberClaim {
                id: NodeId::new(7, 1),
                incarnation: 0,
                status: Status::Dead,
            }]
        );
        assert_eq!(d.poll_timeout(), None, "the suspicion is gone");
        // The member is told its verdict, so that a live one refutes at once.
        let told = sent(&mut out);
        assert_eq!(told.len(), 1, "the verdict, to the member: {told:?}");
        assert_eq!(told[0].0, 7);
        assert!(told[0].1.contains(&Message::Member(dead[0].clone())));
    }

    #[test]
    fn suspicion_in_a_tiny_cluster_starts_at_the_minimum() {
        let mut d = detector();
        // Two nodes: no one is left to confirm, so K = 0.
        d.suspect(Instant::ZERO, &suspect(7), Some(ME), 2);
        let min = min_timeout(2);
        pass_the_first_retelling(&mut d, min);
        assert_eq!(d.poll_timeout(), Some(Instant::ZERO + min));
        assert!(!d.confirm(&7, 0, 3), "no confirmation expected");
        d.forget(&7);
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn relay_answers_the_origin_with_a_nack_when_its_ping_times_out() {
        let config = Config::lan("t");
        let mut d = detector();
        let m = members(&[2, 3]);
        let mut out = outbox(ME);
        let mut reply = Vec::new();
        let origin = NodeId::new(2, 1);
        d.on_ping_req(
            Instant::ZERO,
            &origin,
            77,
            NodeId::new(3, 1),
            &mut reply,
            &mut out,
        );
        assert!(reply.is_empty(), "a relay answers later, not in the reply");
        let pinged = sent(&mut out);
        assert_eq!(pinged.len(), 1);
        assert_eq!(pinged[0].0, 3, "the relay pings the target");
        assert!(matches!(pinged[0].1[..], [Message::Ping { .. }]));
        let nack_at = Instant::ZERO + config.probe_timeout.mul_f64(0.8);
        assert_eq!(d.poll_timeout(), Some(nack_at));
        assert!(
            nack_at < Instant::ZERO + config.probe_timeout,
            "before the origin's deadline"
        );

        assert!(
            d.handle_timeout(nack_at - Duration::from_nanos(1), &m, &mut out)
                .is_empty()
        );
        assert!(sent(&mut out).is_empty(), "not yet");
        assert!(d.handle_timeout(nack_at, &m, &mut out).is_empty());
        let nacks = sent(&mut out);
        assert_eq!(nacks.len(), 1);
        assert_eq!(nacks[0].0, 2, "sent to the origin");
        assert_eq!(
            nacks[0].1,
            alloc::vec![Message::Nack { seq: 77 }],
            "with its seq"
        );
        assert_eq!(d.poll_timeout(), None, "the relay is done");
        d.handle_timeout(nack_at + config.probe_timeout, &m, &mut out);
        assert!(sent(&mut out).is_empty(), "one nack only");
    }

    #[test]
    fn relay_passes_the_targets_ack_to_the_origin_and_no_nack_follows() {
        let config = Config::lan("t");
        let mut d = detector();
        let m = members(&[2, 3, 4]);
        let mut out = outbox(ME);
        let mut reply = Vec::new();
        d.on_ping_req(
            Instant::ZERO,
            &NodeId::new(2, 1),
            77,
            NodeId::new(3, 1),
            &mut reply,
            &mut out,
        );
        let Message::Ping { seq } = sent(&mut out)[0].1[0] else {
            panic!("expected a ping");
        };
        // An ack with the right seq from someone else is not the target's.
        d.on_ack(&4, seq, &mut out);
        assert!(sent(&mut out).is_empty());
        d.on_ack(&3, seq, &mut out);
        let acks = sent(&mut out);
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0].0, 2);
        assert_eq!(acks[0].1, alloc::vec![Message::Ack { seq: 77 }]);
        d.handle_timeout(Instant::ZERO + config.probe_timeout, &m, &mut out);
        assert!(sent(&mut out).is_empty(), "an answered relay sends no nack");
    }

    #[test]
    fn ping_req_about_ourselves_is_acked_in_the_reply() {
        let mut d = detector();
        let mut out = outbox(ME);
        let mut reply = Vec::new();
        d.on_ping_req(
            Instant::ZERO,
            &NodeId::new(2, 1),
            5,
            NodeId::new(ME, 1),
            &mut reply,
            &mut out,
        );
        assert_eq!(
            crate::outbox::testing::decoded(&reply),
            alloc::vec![Message::Ack { seq: 5 }]
        );
        assert!(sent(&mut out).is_empty());
        assert_eq!(d.poll_timeout(), None, "no relay kept");
    }

    #[test]
    fn ack_from_an_address_not_asked_does_not_count() {
        let m = members(&[2, 3]);
        let mut d = detector();
        let mut out = outbox(ME);
        let (target, seq) = open(&mut d, Instant::ZERO, &m, &mut out);
        let stranger = if target == 2 { 3 } else { 2 };
        d.on_ack(&stranger, seq, &mut out);
        d.on_ack(&9, seq, &mut out);
        let claim = d.close_probe(&m).expect("no ack counted: a suspicion");
        assert_eq!(claim.id, NodeId::new(target, 1));
        assert_eq!(claim.status, Status::Suspect);

        // The target's own ack, but for another seq, does not count either.
        let (target, seq) = open(&mut d, Instant::ZERO, &m, &mut out);
        d.on_ack(&target, seq.wrapping_add(1), &mut out);
        assert!(d.close_probe(&m).is_some());

        // The target's ack with the probe's seq does.
        let (target, seq) = open(&mut d, Instant::ZERO, &m, &mut out);
        d.on_ack(&target, seq, &mut out);
        assert_eq!(d.close_probe(&m), None);
    }

    #[test]
    fn every_admission_ping_is_answered_however_many_are_in_flight() {
        // A joiner learns thousands of members at once and pings them all before the
        // first ack is back. A table of pings in flight held 1,024, and the acks of
        // the rest proved nothing: those members stayed unconfirmed.
        const N: u32 = 5_000;
        let mut d = detector();
        let mut out = outbox(ME);
        for a in 2..2 + N {
            d.admit(&a, &mut out);
        }
        let pings: Vec<(u32, u32)> = sent(&mut out)
            .into_iter()
            .map(|(to, msgs)| match msgs.first() {
                Some(Message::Ping { seq }) => (to, *seq),
                other => panic!("an admission sends a ping first, not {other:?}"),
            })
            .collect();
        assert_eq!(pings.len(), N as usize);
        for &(to, seq) in &pings {
            assert_eq!(d.on_ack(&to, seq, &mut out), Some(to), "ack from {to}");
        }
        // An ack proves only the address its ping went to, with that ping's number.
        let (a, seq_a) = pings[0];
        let (b, seq_b) = pings[1];
        assert_eq!(d.on_ack(&b, seq_a, &mut out), None, "{a}'s cookie from {b}");
        assert_eq!(d.on_ack(&a, seq_a ^ 1, &mut out), None, "a wrong number");
        assert_eq!(
            d.on_ack(&9_999_999, seq_b, &mut out),
            None,
            "from a stranger"
        );
        // Another life's cookies differ.
        let other = Detector::<u32>::new(&Config::lan("t"), SeededState(1), 0, [3, 4]);
        let same = pings
            .iter()
            .filter(|(to, seq)| other.admission_cookie(to) == *seq)
            .count();
        assert!(same <= 2, "{same} of {N} cookies shared with another key");
    }

    #[test]
    fn newcomers_join_the_pass_under_way_and_each_member_is_probed_once_in_it() {
        let first: Vec<u32> = (2..12).collect();
        let mut m = members(&first);
        let mut d = detector();
        let mut out = outbox(ME);
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(open(&mut d, Instant::ZERO, &m, &mut out).0);
        }
        for a in 12..22u32 {
            m.apply(&alive(a), Instant::ZERO);
            m.confirm(&a);
            let ix = m.index_of(&a).expect("a member");
            d.member_live(ix, m.live_len(), out.rng());
        }
        for _ in 0..17 {
            seen.push(open(&mut d, Instant::ZERO, &m, &mut out).0);
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (2..22).collect::<Vec<u32>>(),
            "one pass probes each once"
        );
    }

    #[test]
    fn ack_relayed_by_a_helper_counts() {
        let config = Config::lan("t");
        let m = members(&[2, 3]);
        let mut d = detector();
        let mut out = outbox(ME);
        let (target, seq) = open(&mut d, Instant::ZERO, &m, &mut out);
        let helper = if target == 2 { 3 } else { 2 };
        let indirect_at = Instant::ZERO + config.probe_timeout;
        assert_eq!(
            d.poll_timeout(),
            Some(indirect_at),
            "the indirect round is next"
        );
        d.handle_timeout(indirect_at, &m, &mut out);
        let sent = sent(&mut out);
        assert_eq!(sent.len(), 2, "a second direct ping and one ping-req");
        assert_eq!(sent[0], (target, alloc::vec![Message::Ping { seq }]));
        assert_eq!(
            sent[1],
            (
                helper,
                alloc::vec![Message::PingReq {
                    seq,
                    target: NodeId::new(target, 1)
                }]
            )
        );
        assert_eq!(out.stats().indirect_probes, 1);
        d.on_ack(&helper, seq, &mut out);
        assert_eq!(d.close_probe(&m), None);
    }

    #[test]
    fn close_probe_without_ack_suspects_and_raises_health() {
        let m = members(&[2]);
        let mut d = detector();
        let mut out = outbox(ME);
        assert_eq!(d.close_probe(&m), None, "no probe in flight");
        assert_eq!(d.health(), 0);
        let (target, _) = open(&mut d, Instant::ZERO, &m, &mut out);
        assert_eq!(target, 2);
        assert_eq!(out.stats().probes, 1);
        assert_eq!(
            d.close_probe(&m),
            Some(MemberClaim {
                id: NodeId::new(2, 1),
                incarnation: 0,
                status: Status::Suspect,
            })
        );
        assert_eq!(d.health(), 1, "no helper to nack: the fault may be ours");
        assert_eq!(d.close_probe(&m), None, "closed once");

        // An acked probe lowers health again.
        let (target, seq) = open(&mut d, Instant::ZERO, &m, &mut out);
        d.on_ack(&target, seq, &mut out);
        assert_eq!(d.close_probe(&m), None);
        assert_eq!(d.health(), 0);
    }

    #[test]
    fn missing_nacks_raise_health_each() {
        let config = Config::lan("t");
        let m = members(&[2, 3, 4]);
        let mut d = detector();
        let mut out = outbox(ME);
        let (_, seq) = open(&mut d, Instant::ZERO, &m, &mut out);
        d.handle_timeout(Instant::ZERO + config.probe_timeout, &m, &mut out);
        let helpers = sent(&mut out).len() - 1;
        assert_eq!(helpers, 2, "every other live member helps");
        d.on_nack(seq, &mut out);
        d.on_nack(seq.wrapping_add(1), &mut out);
        assert_eq!(out.stats().nacks, 1, "a nack for another probe is ignored");
        assert!(d.close_probe(&m).is_some());
        assert_eq!(d.health(), 1, "one of two helpers did not nack");

        let (_, _) = open(&mut d, Instant::ZERO, &m, &mut out);
        // Lifeguard: with health 1 the probe timeout doubles.
        let indirect_at = Instant::ZERO + config.probe_timeout * 2;
        assert_eq!(d.poll_timeout(), Some(indirect_at));
        d.handle_timeout(indirect_at, &m, &mut out);
        assert_eq!(sent(&mut out).len(), 3);
        assert!(d.close_probe(&m).is_some());
        assert_eq!(d.health(), 3, "neither helper nacked");
    }

    #[test]
    fn no_suspicion_of_a_member_that_changed_meanwhile() {
        let mut m = members(&[2]);
        let mut d = detector();
        let mut out = outbox(ME);
        open(&mut d, Instant::ZERO, &m, &mut out);
        // It died (or restarted) while we probed: the claim would be stale.
        m.apply(
            &MemberClaim {
                status: Status::Dead,
                ..alive(2)
            },
            Instant::ZERO,
        );
        assert_eq!(d.close_probe(&m), None);
        assert_eq!(d.health(), 1, "the missed ack still counts against us");
    }

    #[test]
    fn a_suspect_target_is_told_of_the_suspicion_with_the_ping() {
        let mut m = members(&[2]);
        m.apply(&suspect(2), Instant::ZERO);
        let mut d = detector();
        let mut out = outbox(ME);
        d.open_probe(Instant::ZERO, &m, &mut out);
        let sent = sent(&mut out);
        assert_eq!(sent.len(), 1);
        assert!(matches!(
            sent[0].1[..],
            [Message::Ping { .. }, Message::Member(ref c)] if *c == suspect(2)
        ));
    }

    #[test]
    fn every_holder_retells_a_standing_suspicion_every_minimum_timeout() {
        let config = Config::lan("t");
        let n = 10;
        // The suspicion came second-hand (accuser 2): the accuser's own word to the
        // suspect may have been lost, so we tell it too.
        let mut m = members(&[2, 7]);
        m.apply(&suspect(7), Instant::ZERO);
        let mut d = detector();
        d.suspect(Instant::ZERO, &suspect(7), Some(2), n);
        let min = config
            .probe_interval
            .mul_f64(f64::from(config.suspicion_mult) * node_scale(n));
        let half = Instant::ZERO + min / 2;
        let mut out = outbox(ME);
        let early = half - Duration::from_nanos(1);
        assert!(d.handle_timeout(early, &m, &mut out).is_empty());
        assert!(sent(&mut out).is_empty(), "nothing before the retelling");
        assert!(d.handle_timeout(half, &m, &mut out).is_empty());
        let told = sent(&mut out);
        assert_eq!(told.len(), 1, "one datagram: {told:?}");
        assert_eq!(told[0].0, 7, "to the suspect");
        assert!(told[0].1.contains(&Message::Member(suspect(7))));
        // Not again until a minimum timeout later, then again.
        assert!(d.handle_timeout(half + min / 2, &m, &mut out).is_empty());
        assert!(sent(&mut out).is_empty(), "told once so far");
        assert!(d.handle_timeout(half + min, &m, &mut out).is_empty());
        let again = sent(&mut out);
        assert_eq!(again.len(), 1, "told again: {again:?}");
        assert_eq!(again[0].0, 7);
        // A suspicion that no longer stands is not retold.
        let mut m = members(&[7]);
        let mut d = detector();
        d.suspect(Instant::ZERO, &suspect(7), Some(2), n);
        m.apply(
            &MemberClaim {
                incarnation: 1,
                ..alive(7)
            },
            Instant::ZERO,
        );
        let _ = d.handle_timeout(half, &m, &mut out);
        assert!(
            sent(&mut out).is_empty(),
            "refuted meanwhile: {:?}",
            sent(&mut out)
        );
    }
}
