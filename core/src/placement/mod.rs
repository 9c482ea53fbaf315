//! Placement: where data belongs. Key hashing ([`murmur`]), the token ring
//! ([`ring`]), token allocation for joiners ([`allocator`]), and this node's view of
//! every member's tokens and of the cluster's agreement on them ([`Placement`]).

pub mod allocator;
pub mod murmur;
pub mod ring;

pub use allocator::{ALLOCATION_RF, allocate_tokens, allocate_tokens_for_rf, random_tokens};
pub use murmur::{murmur3_x64_128, token_for};
pub use ring::{Ring, Token};

use alloc::vec::Vec;
use core::cell::{Cell, Ref, RefCell};

use rand_core::RngCore;

use crate::config::Config;
use crate::event::Event;
use crate::hash::{Map, SeededState, stable_hash};
use crate::membership::{Address, Membership, Status};
use crate::routing::{Replica, ReplicaSet};
use crate::time::Instant;

/// The state key carrying a node's ring tokens.
pub const TOKENS_KEY: &str = "gv.tokens";
/// The state key carrying a node's ring digest, for agreement.
pub const RING_KEY: &str = "gv.ring";

/// This node's view of placement: the tokens every member announced, the ring built
/// from the members on it, its digest, and whether the cluster agrees on it.
///
/// The ring is rebuilt lazily (when routing asks) because a join storm changes its
/// inputs many times a second; its digest is kept up to date in O(1) per change as
/// the XOR of `h(address, tokens)` over the members on the ring.
#[derive(Debug)]
pub(crate) struct Placement<A> {
    ring: RefCell<Ring<A>>,
    ring_dirty: Cell<bool>,
    /// Parsed `gv.tokens` of every member that announced some.
    tokens: Map<A, Vec<Token>>,
    /// Each ring participant's contribution to `ring_hash`.
    ring_inputs: Map<A, u64>,
    ring_hash: u64,
    /// The digest last seen at a round, and for how many rounds it has held still.
    stable: (u64, u32),
    agreement_dirty: bool,
    agreed: Option<u64>,
    /// When to choose our tokens, if we have none yet.
    tokens_at: Option<Instant>,
    vnodes: usize,
    replication_factor: usize,
}

impl<A: Address> Placement<A> {
    pub fn new(config: &Config, hasher: SeededState) -> Self {
        Placement {
            ring: RefCell::new(Ring::default()),
            ring_dirty: Cell::new(false),
            tokens: Map::with_hasher(hasher),
            ring_inputs: Map::with_hasher(hasher),
            ring_hash: 0,
            stable: (0, 0),
            agreement_dirty: false,
            agreed: None,
            tokens_at: None,
            vnodes: config.vnodes,
            replication_factor: config.replication_factor,
        }
    }

    // ----- the ring -----------------------------------------------------------------

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

    /// The ring digest: two nodes with the same digest build the same ring.
    pub fn digest(&self) -> u64 {
        self.ring_hash
    }

    /// The tokens `node` announced, as this node holds them.
    pub fn tokens_of(&self, node: &A) -> Vec<Token> {
        self.tokens.get(node).cloned().unwrap_or_default()
    }

    /// The replicas of `key`, each with its liveness as `members` sees it.
    pub fn route(&self, key: &[u8], members: &Membership<A>) -> ReplicaSet<A> {
        let token = token_for(key);
        let replicas = self
            .ring()
            .replicas(token, self.replication_factor)
            .into_iter()
            .filter_map(|addr| {
                if *addr == members.me().addr {
                    return Some(Replica {
                        id: members.me().clone(),
                        state: Status::Alive,
                    });
                }
                let m = members.get(addr)?;
                Some(Replica {
                    id: m.id.clone(),
                    state: m.status,
                })
            })
            .collect();
        ReplicaSet { token, replicas }
    }

    // ----- inputs -------------------------------------------------------------------

    /// A state key of `addr` changed: `gv.tokens` moves it on the ring, `gv.ring` may
    /// change agreement. `on_ring` says whether `addr` may be on the ring at all.
    pub fn key_changed(&mut self, addr: &A, key: &str, value: Option<&[u8]>, on_ring: bool) {
        if key == TOKENS_KEY {
            let parsed = value.and_then(|b| postcard::from_bytes::<Vec<Token>>(b).ok());
            match parsed {
                Some(t) if !t.is_empty() => self.tokens.insert(addr.clone(), t),
                _ => self.tokens.remove(addr),
            };
            self.member_changed(addr, on_ring);
        }
        if key == RING_KEY {
            self.agreement_dirty = true;
        }
    }

    /// Recomputes whether and how `addr` is on the ring.
    pub fn member_changed(&mut self, addr: &A, on_ring: bool) {
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

    /// Forgets `addr`'s tokens (a new life, or a forgotten member). The caller
    /// follows with [`member_changed`](Self::member_changed) if it may be on the ring.
    pub fn forget(&mut self, addr: &A) {
        self.tokens.remove(addr);
    }

    // ----- our own tokens -----------------------------------------------------------

    /// We joined: with no tokens yet, choose them now if we are the first node, or
    /// after a few rounds of learning the ring. Returns true to choose now.
    pub fn on_join(
        &mut self,
        now: Instant,
        has_tokens: bool,
        first: bool,
        round: core::time::Duration,
    ) -> bool {
        if self.vnodes == 0 || has_tokens {
            return false;
        }
        if first {
            return true;
        }
        self.tokens_at = Some(now + round.saturating_mul(3));
        false
    }

    /// A peer's view equals ours: we know the ring, so choose tokens at the next round.
    pub fn peer_in_sync(&mut self, now: Instant) {
        if self.tokens_at.is_some() {
            self.tokens_at = Some(now);
        }
    }

    /// Whether it is time to choose our tokens.
    pub fn tokens_due(&self, now: Instant) -> bool {
        self.tokens_at.is_some_and(|t| t <= now)
    }

    /// Chooses our tokens against the ring we know; returns them encoded for
    /// `gv.tokens`.
    pub fn choose_tokens(&mut self, rng: &mut impl RngCore) -> Vec<u8> {
        self.tokens_at = None;
        let ring = self.ring().clone();
        let tokens = if ring.is_empty() {
            random_tokens(self.vnodes, rng)
        } else {
            allocate_tokens(&ring, self.vnodes, rng)
        };
        postcard::to_allocvec(&tokens).unwrap_or_default()
    }

    // ----- agreement ----------------------------------------------------------------

    /// Once per round: the digest to publish in `gv.ring`, once it has held still for
    /// two rounds (so that a join storm does not turn every ring change into a rumour
    /// from every node) and differs from what we published.
    pub fn digest_to_publish(&mut self, published: Option<&[u8]>) -> Option<[u8; 8]> {
        if self.vnodes == 0 || self.ring_inputs.is_empty() {
            return None;
        }
        let digest = self.ring_hash;
        if self.stable.0 != digest {
            self.stable = (digest, 0);
            return None;
        }
        self.stable.1 = self.stable.1.saturating_add(1);
        let bytes = digest.to_le_bytes();
        (self.stable.1 >= 2 && published != Some(&bytes[..])).then_some(bytes)
    }

    /// Once per round, if anything changed: `RingAgreed` when every live member
    /// published the digest we published and hold.
    pub fn check_agreement<'a>(
        &mut self,
        mine: Option<&[u8]>,
        mut theirs: impl Iterator<Item = Option<&'a [u8]>>,
    ) -> Option<Event<A>> {
        if !self.agreement_dirty {
            return None;
        }
        self.agreement_dirty = false;
        let mine = mine?;
        let all = theirs.all(|t| t == Some(mine));
        let digest = u64::from_le_bytes(mine.try_into().unwrap_or([0; 8]));
        if all && self.agreed != Some(digest) && digest == self.ring_hash {
            self.agreed = Some(digest);
            return Some(Event::RingAgreed { digest });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{MemberClaim, NodeId};
    use alloc::vec;

    fn placement() -> Placement<u32> {
        Placement::new(&Config::lan("t"), SeededState(1))
    }

    fn encoded(tokens: &[Token]) -> Vec<u8> {
        postcard::to_allocvec(tokens).expect("encodes")
    }

    fn announce(p: &mut Placement<u32>, addr: u32, tokens: &[Token]) {
        p.key_changed(&addr, TOKENS_KEY, Some(&encoded(tokens)), true);
    }

    const TOKENS: [(u32, [Token; 2]); 3] =
        [(1, [-9_000, 100]), (2, [-5_000, 4_000]), (3, [0, 7_000])];

    #[test]
    fn digest_does_not_depend_on_the_order_tokens_were_learned_in() {
        let mut a = placement();
        for (addr, t) in TOKENS {
            announce(&mut a, addr, &t);
        }
        let mut b = placement();
        // Another order, with a superseded announcement and a member that went away.
        announce(&mut b, 3, &[1, 2, 3]);
        announce(&mut b, 9, &[55]);
        for (addr, t) in TOKENS.iter().rev() {
            announce(&mut b, *addr, t);
        }
        b.key_changed(&9, TOKENS_KEY, None, true);
        assert_ne!(a.digest(), 0);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(*a.ring(), *b.ring());
        assert_eq!(a.ring().nodes(), 3);
        assert_eq!(b.tokens_of(&3), vec![0, 7_000]);
        assert!(b.tokens_of(&9).is_empty());
        // A different view has a different digest.
        announce(&mut b, 3, &[0, 7_001]);
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn member_not_on_ring_leaves_it_and_comes_back() {
        let mut p = placement();
        for (addr, t) in TOKENS {
            announce(&mut p, addr, &t);
        }
        let full = p.digest();
        assert!(p.ring().tokens().any(|(_, n)| *n == 2));

        p.member_changed(&2, false);
        assert_ne!(p.digest(), full);
        assert_eq!(p.ring().nodes(), 2);
        assert!(p.ring().tokens().all(|(_, n)| *n != 2), "2 left the ring");
        assert_eq!(p.tokens_of(&2), vec![-5_000, 4_000], "its tokens are kept");
        p.member_changed(&2, false);
        assert_eq!(p.ring().nodes(), 2, "idempotent");

        // Tokens learned while off the ring do not put it back.
        announce_off(&mut p, 2, &[-5_000, 4_000]);
        assert_eq!(p.ring().nodes(), 2);

        p.member_changed(&2, true);
        assert_eq!(p.digest(), full);
        assert_eq!(p.ring().nodes(), 3);

        // Forgotten tokens: off the ring for good, even if it is live.
        p.forget(&2);
        p.member_changed(&2, true);
        assert_eq!(p.ring().nodes(), 2);
    }

    fn announce_off(p: &mut Placement<u32>, addr: u32, tokens: &[Token]) {
        p.key_changed(&addr, TOKENS_KEY, Some(&encoded(tokens)), false);
    }

    #[test]
    fn malformed_or_empty_tokens_take_a_member_off_the_ring() {
        let mut p = placement();
        announce(&mut p, 1, &[5]);
        p.key_changed(&1, TOKENS_KEY, Some(&[0xff, 0xff]), true);
        assert_eq!(p.digest(), 0);
        assert!(p.ring().is_empty());
        announce(&mut p, 1, &[5]);
        announce(&mut p, 1, &[]);
        assert_eq!(p.digest(), 0);
        assert!(p.ring().is_empty());
    }

    #[test]
    fn ring_agreed_fires_once() {
        let mut p = placement();
        for (addr, t) in TOKENS {
            announce(&mut p, addr, &t);
        }
        let mine = p.digest().to_le_bytes();
        let other = (p.digest() ^ 1).to_le_bytes();

        // Not everyone published ours yet.
        let theirs = [Some(&mine[..]), Some(&other[..]), None];
        assert_eq!(p.check_agreement(Some(&mine), theirs.into_iter()), None);
        // Nothing changed since: not even looked at.
        let all = [Some(&mine[..]); 3];
        assert_eq!(p.check_agreement(Some(&mine), all.into_iter()), None);

        // A member published the digest: everyone agrees.
        p.key_changed(&2, RING_KEY, Some(&mine), true);
        assert_eq!(
            p.check_agreement(Some(&mine), all.into_iter()),
            Some(Event::RingAgreed { digest: p.digest() })
        );
        // Once for that digest.
        p.key_changed(&3, RING_KEY, Some(&mine), true);
        assert_eq!(p.check_agreement(Some(&mine), all.into_iter()), None);

        // A new ring, agreed again: a new event.
        announce(&mut p, 4, &[42]);
        let next = p.digest().to_le_bytes();
        let all = [Some(&next[..]); 4];
        assert_eq!(
            p.check_agreement(Some(&next), all.into_iter()),
            Some(Event::RingAgreed { digest: p.digest() })
        );
    }

    #[test]
    fn no_agreement_on_a_digest_we_do_not_hold_or_did_not_publish() {
        let mut p = placement();
        announce(&mut p, 1, &[5]);
        let stale = (p.digest() ^ 1).to_le_bytes();
        let all = [Some(&stale[..]); 2];
        assert_eq!(p.check_agreement(Some(&stale), all.into_iter()), None);
        p.key_changed(&1, RING_KEY, None, true);
        assert_eq!(p.check_agreement(None, core::iter::empty()), None);
    }

    #[test]
    fn digest_is_published_after_holding_still_two_rounds() {
        let mut p = placement();
        assert_eq!(p.digest_to_publish(None), None, "no ring");
        announce(&mut p, 1, &[5]);
        let d = p.digest().to_le_bytes();
        assert_eq!(p.digest_to_publish(None), None, "new");
        assert_eq!(p.digest_to_publish(None), None, "one round still");
        assert_eq!(p.digest_to_publish(None), Some(d), "two rounds still");
        assert_eq!(p.digest_to_publish(Some(&d)), None, "already published");
        announce(&mut p, 2, &[6]);
        assert_eq!(p.digest_to_publish(Some(&d)), None, "moved: start again");
    }

    #[test]
    fn route_reports_each_replicas_liveness() {
        let mut members = Membership::new(NodeId::new(1, 1), 16, SeededState(1));
        members.join(core::iter::empty());
        for a in [2, 3] {
            members.apply(
                &MemberClaim {
                    id: NodeId::new(a, 1),
                    incarnation: 0,
                    status: Status::Alive,
                },
                Instant::ZERO,
            );
        }
        members.apply(
            &MemberClaim {
                id: NodeId::new(3, 1),
                incarnation: 0,
                status: Status::Suspect,
            },
            Instant::ZERO,
        );
        let mut p = placement();
        assert!(p.route(b"k", &members).replicas.is_empty(), "empty ring");
        for (addr, t) in TOKENS {
            announce(&mut p, addr, &t);
        }
        let set = p.route(b"k", &members);
        assert_eq!(set.token, token_for(b"k"));
        assert_eq!(set.replicas.len(), 3);
        for r in &set.replicas {
            let expected = if r.id.addr == 3 {
                Status::Suspect
            } else {
                Status::Alive
            };
            assert_eq!(r.state, expected, "{r:?}");
        }
        assert!(
            set.replicas.iter().any(|r| r.id == NodeId::new(1, 1)),
            "ourselves"
        );
    }

    #[test]
    fn tokens_are_chosen_at_once_by_the_first_node_else_after_three_rounds() {
        let round = core::time::Duration::from_secs(1);
        let mut p = placement();
        assert!(p.on_join(Instant::ZERO, false, true, round));
        assert!(!p.on_join(Instant::ZERO, true, false, round), "has tokens");
        assert!(!p.on_join(Instant::ZERO, false, false, round));
        assert!(!p.tokens_due(Instant::ZERO + round * 3 - core::time::Duration::from_nanos(1)));
        assert!(p.tokens_due(Instant::ZERO + round * 3));
        p.peer_in_sync(Instant::from_secs(1));
        assert!(p.tokens_due(Instant::from_secs(1)), "in sync: choose now");
        let mut rng =
            <rand_chacha::ChaCha8Rng as rand_chacha::rand_core::SeedableRng>::seed_from_u64(1);
        let bytes = p.choose_tokens(&mut rng);
        let tokens: Vec<Token> = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(tokens.len(), Config::lan("t").vnodes);
        assert!(!p.tokens_due(Instant::MAX), "chosen");
    }
}
