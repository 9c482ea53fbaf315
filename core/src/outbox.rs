//! The outbox the node lends to its parts: the RNG, the rumour queue, the framing of
//! datagrams (sealing included) and the queues of transmits and events.
//!
//! A part that must send (a probe, a nack, a page of state) calls [`Outbox::send`]
//! at the moment the protocol step happens, so rumours piggyback on exactly the
//! datagrams they would ride on if the part owned the socket, and the RNG is drawn
//! from in program order. That is what keeps a node's output a pure function of its
//! inputs and its seed.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;
use serde::{Deserialize, Serialize};

use rand_core::RngCore;

use crate::config::Config;
use crate::dissemination::{Budget, Class, Limits, Rumours, Subject, retransmit_limit};
use crate::event::Event;
use crate::hash::{Map, SeededState, cluster_id};
use crate::keyring::{Keyring, SEAL_OVERHEAD};
use crate::membership::{Address, NodeId};
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::{
    BodyBuilder, FLAG_SEALED, HEADER_LEN, Header, Message, PacketError, decode_body,
};

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit<A> {
    /// Where to send it.
    pub dest: A,
    /// The datagram, never longer than `max_datagram_size`.
    pub payload: Vec<u8>,
}

/// A uniform draw in `0..n` (0 when `n` is 0).
pub(crate) fn below(rng: &mut impl RngCore, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (rng.next_u64() % n as u64) as usize
    }
}

/// A uniform draw in `0..d`, so that timers started together do not fire together.
pub(crate) fn jitter(rng: &mut impl RngCore, d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(rng.next_u64() % nanos)
}

/// Sealed datagrams remembered per sender for replay detection: a sliding window of
/// this many sequence numbers below the highest seen (IPsec's anti-replay window).
pub const REPLAY_WINDOW: u64 = 64;

/// The furthest a sealed datagram's sequence number may run ahead of its sender's
/// window and still move it.
const MAX_SEQ_JUMP: u64 = 1 << 16;

/// One sender's replay window: the life it belongs to, the highest sequence number
/// seen, and which of the `REPLAY_WINDOW` below it were seen.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Window {
    generation: u64,
    highest: u64,
    seen: u64,
}

impl Window {
    /// Records `seq`; false if it was seen already or is too old to tell.
    fn admit(&mut self, generation: u64, seq: u64) -> bool {
        if generation < self.generation {
            return false;
        }
        if generation > self.generation {
            *self = Window {
                generation,
                highest: seq,
                seen: 1,
            };
            return true;
        }
        if seq > self.highest.saturating_add(MAX_SEQ_JUMP) {
            // Far ahead of anything this sender sent: a forgery by a key holder meant to
            // make its real datagrams look old. Accept it, but do not move the window.
            return true;
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            } | 1;
            self.highest = seq;
            return true;
        }
        let age = self.highest - seq;
        if age >= REPLAY_WINDOW || self.seen & (1 << age) != 0 {
            return false;
        }
        self.seen |= 1 << age;
        true
    }
}

impl Window {
    fn new(generation: u64, seq: u64) -> Self {
        Window {
            generation,
            highest: seq,
            seen: 1,
        }
    }
}

/// A sender's replay windows: one for its *proven* life (the generation that last
/// answered our probe at its address) and one for the newest other life seen.
///
/// A single window that any newer generation resets could be poisoned: one sealed
/// datagram from a key holder naming the sender at a huge generation would make every
/// real datagram of the sender "an older life", refused forever, and the sender could
/// never be heard again. So a newer generation gets its own window beside the proven
/// one, and only an answered probe ([`SenderWindows::prove`]) makes it the proven
/// one; older generations than the proven life are refused. While no life is proven
/// (or while a forger keeps announcing lives), unproven generations share one slot,
/// so their replays may pass: the cost of a forgery is weaker replay protection for
/// an unproven life, never a silenced sender.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct SenderWindows {
    proven: Option<Window>,
    newest: Option<Window>,
}

impl SenderWindows {
    /// Records a sealed datagram of `generation` numbered `seq`; false for a replay or
    /// a datagram of a life older than the proven one.
    fn admit(&mut self, generation: u64, seq: u64) -> bool {
        if let Some(p) = self.proven.as_mut() {
            if generation < p.generation {
                return false;
            }
            if generation == p.generation {
                return p.admit(generation, seq);
            }
        }
        match self.newest.as_mut() {
            Some(w) if w.generation == generation => w.admit(generation, seq),
            _ => {
                self.newest = Some(Window::new(generation, seq));
                true
            }
        }
    }

    /// The life `generation` answered a probe at the sender's address: its window
    /// becomes the proven one.
    fn prove(&mut self, generation: u64) {
        if self.proven.is_some_and(|p| p.generation >= generation) {
            return;
        }
        // Without a window of that life yet (no sealed datagram of it seen), the next
        // answered probe proves it.
        if let Some(w) = self.newest.filter(|w| w.generation == generation) {
            self.proven = Some(w);
            self.newest = None;
        }
    }
}

/// What every part may use to act on the world: see the [module docs](self).
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "A: Address, R: Serialize",
    deserialize = "A: Address, R: serde::de::DeserializeOwned"
))]
pub(crate) struct Outbox<A, R> {
    rng: R,
    rumours: Rumours<A>,
    #[serde(skip)]
    transmits: VecDeque<Transmit<A>>,
    #[serde(skip)]
    events: VecDeque<Event<A>>,
    stats: Stats,
    #[serde(skip)]
    keyring: Option<Keyring>,
    cluster_id: u64,
    me: A,
    /// Our identity, encoded once: it opens every datagram we send.
    me_encoded: Vec<u8>,
    max_datagram_size: usize,
    retransmit_mult: u32,
    /// Live members plus ourselves: sets how often a rumour is retransmitted.
    cluster_size: usize,
    /// The sequence number of the next sealed datagram; it rides in the first 8 bytes
    /// of the AEAD nonce, so it is authenticated and costs nothing on the wire.
    seal_seq: u64,
    /// Replay windows of the senders of sealed datagrams, at most `max_windows`.
    #[serde(with = "crate::snapshot::map")]
    windows: Map<A, SenderWindows>,
    max_windows: usize,
    /// The time of the input being handled (see [`Outbox::set_clock`]).
    #[serde(skip)]
    now: Instant,
}

/// How long paced news (an arrival, a record's version) rests between two sends (see
/// [`Rumours::fill`]): a sixteenth of the gossip interval, 62.5 ms in the LAN profile.
/// A node at rest sends a datagram about every 200 ms (its probe, the acks of others'
/// probes, its gossip), so this holds back only bursts: a mass join's acks of
/// admission pings come every few milliseconds. An eighth slowed each join wave's
/// spread (a 1,024-node join went idle 10 s later) for no fewer bytes.
fn arrival_rest(config: &Config) -> Duration {
    config.gossip_interval / 16
}

impl<A: Address, R: RngCore> Outbox<A, R> {
    pub fn new(config: &Config, me: &NodeId<A>, rng: R, hasher: SeededState) -> Self {
        Outbox {
            rng,
            rumours: Rumours::new(config.max_rumours, hasher, arrival_rest(config)),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            keyring: None,
            cluster_id: cluster_id(&config.cluster_name),
            me: me.addr.clone(),
            me_encoded: postcard::to_allocvec(me).unwrap_or_default(),
            max_datagram_size: config.max_datagram_size,
            retransmit_mult: config.retransmit_mult,
            cluster_size: 1,
            seal_seq: 0,
            windows: Map::with_hasher(hasher),
            max_windows: config.max_members,
            now: Instant::ZERO,
        }
    }

    /// Our own address.
    pub fn me(&self) -> &A {
        &self.me
    }

    pub fn rng(&mut self) -> &mut R {
        &mut self.rng
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The counters, for the part that counts.
    pub fn count(&mut self) -> &mut Stats {
        &mut self.stats
    }

    pub fn event(&mut self, event: Event<A>) {
        self.events.push_back(event);
    }

    /// Tells the outbox how many nodes are live (ourselves included).
    pub fn set_cluster_size(&mut self, n: usize) {
        self.cluster_size = n;
    }

    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.keyring.as_mut()
    }

    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    pub fn set_keyring(&mut self, keyring: Option<Keyring>) {
        self.keyring = keyring;
    }

    // ----- rumours ------------------------------------------------------------------

    /// The rumour queue by class and the current retransmit limit, for dumps.
    pub fn rumour_dump(&self) -> (Vec<crate::dump::RumourClassDump>, u32) {
        (
            self.rumours.dump(),
            crate::dissemination::retransmit_limit(self.retransmit_mult, self.cluster_size),
        )
    }

    pub fn has_rumours(&self) -> bool {
        !self.rumours.is_empty()
    }

    /// How many times a rumour is sent before it retires, at the current cluster size.
    pub fn retransmit_limit(&self) -> u32 {
        retransmit_limit(self.retransmit_mult, self.cluster_size)
    }

    /// Rumours queued that have not spent their retransmit budget yet.
    pub fn rumours_queued(&self) -> usize {
        self.rumours.len()
    }

    /// Whether the rumour about `subject` is still queued (not yet sent its budget).
    pub fn is_rumouring(&self, subject: &Subject<A>) -> bool {
        self.rumours.contains(subject)
    }

    /// The time of the input being handled: every input sets it before any part acts,
    /// so that packing a datagram knows which rumours have rested enough.
    pub fn set_clock(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// A peer sent us the news we pass on about `subject` (see [`Rumours::echo`]).
    pub fn echo(&mut self, subject: &Subject<A>) {
        if self.rumours.echo(subject) {
            self.stats.rumours_quieted += 1;
        }
    }

    /// Queues a rumour, counting an eviction if the queue was full.
    pub fn rumour(&mut self, subject: Subject<A>, bytes: Vec<u8>) {
        let class = self.class_of(&subject);
        self.queue(subject, class, Budget::Full, bytes);
    }

    /// [`rumour`](Self::rumour) with a `budget` (a member's arrival has a smaller
    /// one in a large cluster: see [`Budget::Arrival`]); `refutation` when the claim
    /// is another member's refutation (see [`Class::Refutation`]).
    pub fn member_rumour(
        &mut self,
        subject: Subject<A>,
        budget: Budget,
        refutation: bool,
        bytes: Vec<u8>,
    ) {
        let class = match self.class_of(&subject) {
            Class::Topology if refutation => Class::Refutation,
            class => class,
        };
        self.queue(subject, class, budget, bytes);
    }

    /// [`rumour`](Self::rumour) for news that anti-entropy repairs and whose loss
    /// costs no verdict: paced, and quieted by echoes (see [`Budget::News`]).
    pub fn news_rumour(&mut self, subject: Subject<A>, bytes: Vec<u8>) {
        let class = self.class_of(&subject);
        self.queue(subject, class, Budget::News, bytes);
    }

    /// [`rumour`](Self::rumour) for news that spreads at full speed but retires once
    /// peers echo it (see [`Budget::Quieted`]).
    pub fn quieted_rumour(&mut self, subject: Subject<A>, bytes: Vec<u8>) {
        let class = self.class_of(&subject);
        self.queue(subject, class, Budget::Quieted, bytes);
    }

    /// [`rumour`](Self::rumour) in a class the caller knows better (our own placement
    /// record is a claim about this node).
    pub fn rumour_as(&mut self, subject: Subject<A>, class: Class, bytes: Vec<u8>) {
        self.queue(subject, class, Budget::Full, bytes);
    }

    /// Queues a rumour of `class` with `budget`, counting an eviction if the queue
    /// was full.
    fn queue(&mut self, subject: Subject<A>, class: Class, budget: Budget, bytes: Vec<u8>) {
        if self.rumours.push_with(subject, class, budget, bytes) {
            self.stats.rumours_evicted += 1;
        }
    }

    /// Queues a rumour about our own state: the queue's bound applies, but evicting
    /// for our own write is not a sign of a flood, so it is not counted.
    pub fn own_rumour(&mut self, subject: Subject<A>, bytes: Vec<u8>) {
        let class = self.class_of(&subject);
        self.rumours.push(subject, class, bytes);
    }

    /// A rumour's priority for room in a packet: our own claims first (a refutation
    /// must beat its suspicion timeout), then topology (membership, placement), then
    /// state.
    fn class_of(&self, subject: &Subject<A>) -> Class {
        match subject {
            Subject::Member(a) if *a == self.me => Class::Own,
            Subject::Member(_) => Class::Topology,
            Subject::Placement(_) | Subject::Agreement(_) => Class::Topology,
            Subject::State(..) => Class::State,
        }
    }

    pub fn forget_rumour(&mut self, subject: &Subject<A>) {
        self.rumours.remove_subject(subject);
    }

    // ----- framing ------------------------------------------------------------------

    /// Room for messages in one datagram's body.
    pub fn body_budget(&self) -> usize {
        let seal = if self.keyring.is_some() {
            SEAL_OVERHEAD
        } else {
            0
        };
        self.max_datagram_size - HEADER_LEN - seal
    }

    /// Checks, opens and decodes a datagram. A sealed datagram whose sequence number
    /// its sender's replay window has seen already is refused as `Replayed`.
    pub fn open(&mut self, data: &[u8]) -> Result<(NodeId<A>, Vec<Message<A>>), PacketError> {
        if data.len() > self.max_datagram_size {
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
                let (sender, messages) = decode_body::<A>(&plain)?;
                if sender.addr == self.me {
                    return Err(PacketError::FromSelf);
                }
                let seq = body
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_le_bytes);
                self.admit(&sender, seq)?;
                (sender, messages)
            }
            _ => return Err(PacketError::Unauthenticated),
        };
        if sender.addr == self.me {
            return Err(PacketError::FromSelf);
        }
        Ok((sender, messages))
    }

    /// Checks a sealed datagram's sequence number against its sender's windows.
    fn admit(&mut self, sender: &NodeId<A>, seq: u64) -> Result<(), PacketError> {
        if let Some(w) = self.windows.get_mut(&sender.addr) {
            return if w.admit(sender.generation, seq) {
                Ok(())
            } else {
                Err(PacketError::Replayed)
            };
        }
        // A full table tracks no new sender: windows are for members, and the table
        // is as large as the member table.
        if self.windows.len() < self.max_windows {
            let mut w = SenderWindows::default();
            w.admit(sender.generation, seq);
            self.windows.insert(sender.addr.clone(), w);
        }
        Ok(())
    }

    /// The member at `addr` answered our probe there under `generation`: that life's
    /// replay window is the proven one (see [`SenderWindows`]).
    pub fn prove_sender(&mut self, addr: &A, generation: u64) {
        if let Some(w) = self.windows.get_mut(addr) {
            w.prove(generation);
        }
    }

    /// Forgets a sender's replay window (the member was forgotten).
    pub fn forget_sender(&mut self, addr: &A) {
        self.windows.remove(addr);
    }

    /// Sends encoded messages to `to` in at most `max_packets` datagrams, filling the
    /// room left in each with rumours. Messages that do not fit are dropped: every
    /// caller is a protocol step that will be retried by a later round.
    pub fn send(&mut self, to: A, messages: &[Vec<u8>], max_packets: usize) {
        self.send_limited(to, messages, max_packets, usize::MAX);
    }

    /// [`send`](Self::send), in at most `max_bytes` on the wire: the reply to a source
    /// that has not proven its address is held to a few times what it sent, so a
    /// spoofed datagram cannot turn us into an amplifier (QUIC's 3× rule).
    pub fn send_limited(
        &mut self,
        to: A,
        messages: &[Vec<u8>],
        max_packets: usize,
        max_bytes: usize,
    ) {
        self.send_with(to, messages, max_packets, max_bytes, true);
    }

    /// `messages` in one datagram, with no rumours: for an address that has not proven
    /// itself. A forged claim can name anyone's address, and every node that hears it
    /// pings that address once, then a few times more: with rumours each ping would be
    /// a full datagram, a reflection of a few dozen bytes of claims into kilobytes.
    pub fn send_bare(&mut self, to: A, messages: &[Vec<u8>]) {
        self.send_with(to, messages, 1, usize::MAX, false);
    }

    fn send_with(
        &mut self,
        to: A,
        messages: &[Vec<u8>],
        max_packets: usize,
        max_bytes: usize,
        rumours: bool,
    ) {
        if to == self.me {
            return;
        }
        let seal = if self.keyring.is_some() {
            SEAL_OVERHEAD
        } else {
            0
        };
        let mut left = max_bytes;
        let limits = Limits::new(self.retransmit_mult, self.cluster_size);
        let mut rest = messages;
        for _ in 0..max_packets.max(1) {
            let budget = self
                .body_budget()
                .min(left.saturating_sub(HEADER_LEN + seal));
            if budget <= self.me_encoded.len() + 2 {
                return;
            }
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
            if rumours {
                self.rumours.fill(&mut body, limits, self.now);
            }
            if body.is_empty() {
                return;
            }
            let body = body.finish();
            left = left.saturating_sub(HEADER_LEN + seal + body.len());
            self.emit(to.clone(), body);
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
                // Nonce = sequence number ‖ 16 random bytes: unique per key as long as
                // the random part is, and the sequence lets peers drop replays.
                let mut nonce = [0u8; 24];
                nonce[..8].copy_from_slice(&self.seal_seq.to_le_bytes());
                self.seal_seq = self.seal_seq.wrapping_add(1);
                self.rng.fill_bytes(&mut nonce[8..]);
                ring.seal(&mut payload, HEADER_LEN, &body, nonce);
            }
            None => payload.extend_from_slice(&body),
        }
        debug_assert!(payload.len() <= self.max_datagram_size);
        self.transmits.push_back(Transmit { dest, payload });
    }

    // ----- the node's outputs -------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit<A>> {
        let t = self.transmits.pop_front()?;
        self.stats.packets_out += 1;
        self.stats.bytes_out += t.payload.len() as u64;
        Some(t)
    }

    pub fn poll_event(&mut self) -> Option<Event<A>> {
        self.events.pop_front()
    }

    /// Whether every transmit and event has been drained (a snapshot holds neither).
    pub fn is_drained(&self) -> bool {
        self.transmits.is_empty() && self.events.is_empty()
    }

    /// Counts a datagram received, before it is opened.
    pub fn received(&mut self, len: usize) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += len as u64;
    }
}

/// Helpers for the parts' unit tests: an outbox, and its transmits decoded.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;

    /// An outbox for the node at `me` (generation 1), with a seeded RNG.
    pub(crate) fn outbox(me: u32) -> Outbox<u32, ChaCha8Rng> {
        Outbox::new(
            &Config::lan("t"),
            &NodeId::new(me, 1),
            ChaCha8Rng::seed_from_u64(1),
            SeededState(1),
        )
    }

    /// Drains the outbox's transmits, each decoded into its destination and messages.
    pub(crate) fn sent<R: RngCore>(out: &mut Outbox<u32, R>) -> Vec<(u32, Vec<Message<u32>>)> {
        let mut all = Vec::new();
        while let Some(t) = out.poll_transmit() {
            let (sender, messages) =
                decode_body::<u32>(&t.payload[HEADER_LEN..]).expect("a datagram we framed");
            assert_eq!(sender.addr, *out.me());
            all.push((t.dest, messages));
        }
        all
    }

    /// Drains the outbox's events.
    pub(crate) fn events<R: RngCore>(out: &mut Outbox<u32, R>) -> Vec<Event<u32>> {
        core::iter::from_fn(|| out.poll_event()).collect()
    }

    /// Decodes the messages a part put in a reply.
    pub(crate) fn decoded(reply: &[Vec<u8>]) -> Vec<Message<u32>> {
        reply
            .iter()
            .map(|m| postcard::from_bytes(m).expect("a message we encoded"))
            .collect()
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    #[test]
    fn the_window_drops_replays_and_old_datagrams() {
        let mut w = Window {
            generation: 1,
            highest: 10,
            seen: 1,
        };
        assert!(!w.admit(1, 10), "the same sequence twice");
        assert!(w.admit(1, 9));
        assert!(!w.admit(1, 9));
        assert!(w.admit(1, 100));
        assert!(w.admit(1, 99), "late but inside the window");
        assert!(!w.admit(1, 100 - REPLAY_WINDOW), "older than the window");
        assert!(!w.admit(0, 100), "an older life");
        assert!(w.admit(2, 0), "a new life starts a new window");
        assert!(!w.admit(2, 0));
        // A forged jump far ahead is accepted once but moves nothing.
        assert!(w.admit(2, u64::MAX));
        assert!(w.admit(2, 1), "the sender's real datagrams still pass");
    }

    /// A key holder's datagram at a huge generation does not silence the sender's
    /// proven life; a real new life is proven by an answered probe.
    #[test]
    fn a_forged_generation_does_not_silence_the_proven_life() {
        let mut w = SenderWindows::default();
        assert!(w.admit(5, 1));
        w.prove(5);
        assert!(w.admit(5, 2));
        assert!(
            w.admit(u64::MAX, 1),
            "forged: accepted once, in its own slot"
        );
        assert!(w.admit(5, 3), "the proven life still passes");
        assert!(!w.admit(5, 3), "and its replays are still refused");
        assert!(!w.admit(4, 100), "an older life than the proven one");
        // The real node restarts at generation 6: heard, then proven by a probe.
        assert!(w.admit(6, 1));
        assert!(!w.admit(6, 1), "a replay of the unproven life, in its slot");
        w.prove(6);
        assert!(w.admit(6, 2));
        assert!(
            !w.admit(5, 4),
            "the previous life is over once the new one is proven"
        );
        // Proving an older or unknown life changes nothing.
        w.prove(5);
        w.prove(9);
        assert!(w.admit(6, 3));
        assert!(!w.admit(6, 3));
    }
}
