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
