//! [`Node::snapshot`] and [`Node::from_snapshot`]: see [`crate::snapshot`].

use alloc::vec::Vec;

use rand_core::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Node;
use crate::anti_entropy::AntiEntropy;
use crate::config::Config;
use crate::failure_detector::Detector;
use crate::keyring::Keyring;
use crate::membership::{Address, Membership};
use crate::outbox::Outbox;
use crate::placement::Placement;
use crate::routing::Router;
use crate::snapshot::{SNAPSHOT_HEADER_LEN, SnapshotError, open, seal};
use crate::state::Store;
use crate::time::Instant;
use crate::transfer::Transfers;

/// The node's parts, borrowed, in the order the snapshot holds them.
#[derive(Serialize)]
#[serde(bound = "A: Address, R: Serialize")]
struct PartsRef<'a, A, R> {
    config: &'a Config,
    members: &'a Membership<A>,
    detector: &'a Detector<A>,
    gossip: &'a AntiEntropy<A>,
    store: &'a Store<A>,
    placement: &'a Placement<A>,
    router: &'a Router<A>,
    transfers: &'a Transfers<A>,
    out: &'a Outbox<A, R>,
    deadline: Option<Instant>,
}

/// The node's parts, owned: [`PartsRef`] read back.
#[derive(Deserialize)]
#[serde(bound = "A: Address, R: DeserializeOwned")]
struct Parts<A, R> {
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

impl<A: Address, R: RngCore + Serialize + DeserializeOwned> Node<A, R> {
    /// The node's whole deterministic state as bytes: every part, the counters, the
    /// RNG and every timer, without key material (see [`crate::snapshot`] for the
    /// format). [`Node::from_snapshot`] rebuilds a node that, fed the same inputs,
    /// puts out the same transmits, events and deadlines as this one, byte for byte.
    ///
    /// Take it after draining the outputs (the drain rule): with transmits or events
    /// pending it fails with [`SnapshotError::OutputsPending`]. Taking it changes
    /// nothing.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        if !self.out.is_drained() {
            return Err(SnapshotError::OutputsPending);
        }
        let parts = PartsRef {
            config: &self.config,
            members: &self.members,
            detector: &self.detector,
            gossip: &self.gossip,
            store: &self.store,
            placement: &self.placement,
            router: &self.router,
            transfers: &self.transfers,
            out: &self.out,
            deadline: self.deadline,
        };
        let mut bytes = Vec::with_capacity(4096);
        bytes.resize(SNAPSHOT_HEADER_LEN, 0);
        // Encoding into a `Vec` fails only if a part's `Serialize` does, and none
        // fails; the error is still a value, not a panic.
        let bytes = postcard::to_extend(&parts, bytes).map_err(|_| SnapshotError::Malformed)?;
        Ok(seal(bytes))
    }

    /// Rebuilds a node from [`Node::snapshot`]'s bytes, with `keyring` installed (a
    /// snapshot holds no keys: pass the keyring the node had, or `None`).
    ///
    /// Damaged bytes give a [`SnapshotError`], never a panic: the frame's check
    /// catches a flipped bit or a cut, and a body that does not decode, or leaves
    /// bytes over, is [`SnapshotError::Malformed`].
    pub fn from_snapshot(bytes: &[u8], keyring: Option<Keyring>) -> Result<Self, SnapshotError> {
        let body = open(bytes)?;
        let (parts, rest) =
            postcard::take_from_bytes::<Parts<A, R>>(body).map_err(|e| match e {
                postcard::Error::DeserializeUnexpectedEnd => SnapshotError::Truncated,
                _ => SnapshotError::Malformed,
            })?;
        if !rest.is_empty() {
            return Err(SnapshotError::Malformed);
        }
        parts.config.validate().map_err(SnapshotError::Config)?;
        let mut node = Node {
            config: parts.config,
            members: parts.members,
            detector: parts.detector,
            gossip: parts.gossip,
            store: parts.store,
            placement: parts.placement,
            router: parts.router,
            transfers: parts.transfers,
            out: parts.out,
            deadline: parts.deadline,
        };
        node.out.set_keyring(keyring);
        Ok(node)
    }
}
