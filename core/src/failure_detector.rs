//! SWIM failure detection with Lifeguard's refinements.
//!
//! This module keeps the detector's timers and counters; the node decides what to
//! send. One probe is in flight at a time: a direct ping, then after
//! `probe_timeout` a ping-req through up to `indirect_probes` members, and at the
//! end of the period a suspicion if nothing answered. Lifeguard adds three things:
//! nacks from the helpers (so a missing nack counts against *us*), a local health
//! multiplier that slows our probing while we seem to be the slow one, and a
//! suspicion timeout that starts long and shrinks as independent accusers agree.

use alloc::vec::Vec;
use core::time::Duration;

use crate::hash::{Map, SeededState};
use crate::membership::NodeId;
use crate::time::Instant;

/// The probe in flight.
#[derive(Clone, Debug)]
pub(crate) struct Probe<A> {
    pub target: NodeId<A>,
    pub seq: u32,
    pub indirect_at: Instant,
    pub indirect_sent: bool,
    pub acked: bool,
    pub expected_nacks: u32,
    pub nacks: u32,
    /// The members asked to probe the target for us.
    pub helpers: Vec<A>,
}

/// A ping-req we are serving for someone else.
#[derive(Clone, Debug)]
pub(crate) struct Relay<A> {
    pub seq: u32,
    /// The member we pinged on the origin's behalf; only its ack is relayed.
    pub target: A,
    pub origin: A,
    pub origin_seq: u32,
    pub nack_at: Instant,
}

/// A running suspicion of one member.
#[derive(Clone, Debug)]
pub(crate) struct Suspicion<A> {
    pub generation: u64,
    pub incarnation: u64,
    pub start: Instant,
    pub accusers: Vec<A>,
    pub expected: u32,
    pub min: Duration,
    pub max: Duration,
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
    pub fn timeout(&self) -> Duration {
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

    pub fn deadline(&self) -> Instant {
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

#[derive(Debug)]
pub(crate) struct Detector<A> {
    pub next_probe: Option<Instant>,
    pub order: Vec<A>,
    pub pos: usize,
    pub probe: Option<Probe<A>>,
    pub relays: Vec<Relay<A>>,
    pub suspicions: Map<A, Suspicion<A>>,
    next_suspicion: Option<Instant>,
    pub seq: u32,
    /// Lifeguard's local health multiplier.
    pub health: u32,
    pub health_max: u32,
}

impl<A: crate::Address> Detector<A> {
    /// `first_seq` comes from the RNG, so a new life does not reuse the sequence
    /// numbers of the previous one (a late ack from the old life would match).
    pub fn new(health_max: u32, hasher: SeededState, first_seq: u32) -> Self {
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
            health_max,
        }
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Multiplies a base interval by the local health multiplier plus one.
    pub fn scaled(&self, base: Duration) -> Duration {
        base.saturating_mul(self.health + 1)
    }

    pub fn health_up(&mut self, by: u32) {
        self.health = (self.health + by).min(self.health_max);
    }

    pub fn health_down(&mut self) {
        self.health = self.health.saturating_sub(1);
    }

    pub fn suspect(&mut self, addr: A, s: Suspicion<A>) {
        self.suspicions.insert(addr, s);
        self.next_suspicion = None;
    }

    pub fn clear_suspicion(&mut self, addr: &A) {
        if self.suspicions.remove(addr).is_some() {
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

    /// Earliest suspicion deadline (cached until the set changes).
    pub fn suspicion_deadline(&mut self) -> Option<Instant> {
        if self.next_suspicion.is_none() {
            self.next_suspicion = self.suspicions.values().map(Suspicion::deadline).min();
        }
        self.next_suspicion
    }

    /// Suspicions whose deadline has passed.
    pub fn expired(&mut self, now: Instant) -> Vec<(A, u64, u64)> {
        let due: Vec<(A, u64, u64)> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline() <= now)
            .map(|(a, s)| (a.clone(), s.generation, s.incarnation))
            .collect();
        for (a, _, _) in &due {
            self.suspicions.remove(a);
        }
        if !due.is_empty() {
            self.next_suspicion = None;
        }
        due
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
