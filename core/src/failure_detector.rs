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

use rand_core::RngCore;

use crate::config::Config;
use crate::hash::{Map, SeededState};
use crate::membership::{MemberClaim, Membership, NodeId, Status};
use crate::outbox::{Outbox, below, jitter};
use crate::time::Instant;
use crate::wire::{Message, encode_message};

/// Most ping-reqs served at once; more are dropped (they would only amplify a flood).
const MAX_RELAYS: usize = 64;

/// The probe in flight.
#[derive(Clone, Debug)]
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
#[derive(Clone, Debug)]
struct Relay<A> {
    seq: u32,
    /// The member we pinged on the origin's behalf; only its ack is relayed.
    target: A,
    origin: A,
    origin_seq: u32,
    nack_at: Instant,
}

/// A running suspicion of one member.
#[derive(Clone, Debug)]
struct Suspicion<A> {
    generation: u64,
    incarnation: u64,
    start: Instant,
    accusers: Vec<A>,
    expected: u32,
    min: Duration,
    max: Duration,
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
#[derive(Debug)]
pub(crate) struct Detector<A> {
    next_probe: Option<Instant>,
    /// This pass's probe order (a shuffle of the live members) and our place in it.
    order: Vec<A>,
    pos: usize,
    probe: Option<Probe<A>>,
    relays: Vec<Relay<A>>,
    suspicions: Map<A, Suspicion<A>>,
    /// Earliest suspicion deadline, cached until the set changes.
    next_suspicion: Option<Instant>,
    seq: u32,
    /// Lifeguard's local health multiplier.
    health: u32,
    health_max: u32,
    probe_interval: Duration,
    probe_timeout: Duration,
    indirect_probes: usize,
    suspicion_mult: u32,
    suspicion_max_mult: u32,
}

impl<A: crate::Address> Detector<A> {
    /// `first_seq` comes from the RNG, so a new life does not reuse the sequence
    /// numbers of the previous one (a late ack from the old life would match).
    pub fn new(config: &Config, hasher: SeededState, first_seq: u32) -> Self {
        Detector {
            next_probe: None,
            order: Vec::new(),
            pos: 0,
            probe: None,
            relays: Vec::new(),
            suspicions: Map::with_hasher(hasher),
            next_suspicion: None,
            seq: first_seq,
            health: 0,
            health_max: config.awareness_max,
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

    /// We had to refute a suspicion of ourselves: we may be the slow one.
    pub fn refuted(&mut self) {
        self.health_up(1);
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Multiplies a base interval by the local health multiplier plus one.
    fn scaled(&self, base: Duration) -> Duration {
        base.saturating_mul(self.health + 1)
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
    pub fn member_live(&mut self, addr: &A, live: usize, rng: &mut impl RngCore) {
        if self.order.len() > 2 * live + 16 {
            // Members that died and came back left stale slots: start a fresh pass.
            self.order.clear();
            self.pos = 0;
        }
        let start = self.pos.min(self.order.len());
        let at = start + below(rng, self.order.len() - start + 1);
        self.order.insert(at, addr.clone());
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
        if p.acked {
            self.health_down();
            return None;
        }
        let missed = if p.expected_nacks == 0 {
            1
        } else {
            p.expected_nacks.saturating_sub(p.nacks)
        };
        self.health_up(missed);
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
                let a = self.order[self.pos].clone();
                self.pos += 1;
                if members.is_live(&a) {
                    return Some(a);
                }
            }
            let mut order = members.live().to_vec();
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
        self.expired(now)
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
    /// An ack for a ping we relayed goes back to whoever asked us.
    pub fn on_ack<R: RngCore>(&mut self, from: &A, seq: u32, out: &mut Outbox<A, R>) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
            if p.target.addr == *from || p.helpers.contains(from) {
                p.acked = true;
            }
            return;
        }
        if let Some(i) = self
            .relays
            .iter()
            .position(|r| r.seq == seq && r.target == *from)
        {
            let r = self.relays.swap_remove(i);
            let ack = encode_message(&Message::<A>::Ack { seq: r.origin_seq });
            out.send(r.origin, &[ack], 1);
        }
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
        };
        self.suspicions.insert(claim.id.addr.clone(), suspicion);
        self.next_suspicion = None;
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
        let due: Vec<MemberClaim<A>> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline() <= now)
            .map(|(a, s)| MemberClaim {
                id: NodeId::new(a.clone(), s.generation),
                incarnation: s.incarnation,
                status: Status::Dead,
            })
            .collect();
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
            self.next_suspicion = self.suspicions.values().map(Suspicion::deadline).min();
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
}
