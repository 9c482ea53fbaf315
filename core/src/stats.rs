//! Counters a node keeps about itself, for operators and tests.

use crate::wire::PacketError;
use serde::{Deserialize, Serialize};

/// Packets dropped, counted by reason. Every rejected input lands in exactly one field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Drops {
    /// Shorter than a header, or the body ended early.
    pub truncated: u64,
    /// Longer than `max_datagram_size`.
    pub oversized: u64,
    /// Not a Grapevine packet (wrong magic).
    pub bad_magic: u64,
    /// A protocol version this node does not speak.
    pub unsupported_version: u64,
    /// Another cluster's packet (cluster id mismatch).
    pub foreign_cluster: u64,
    /// Sealed with no key we hold, tampered with, or unsealed while we require keys.
    pub unauthenticated: u64,
    /// The body did not decode.
    pub malformed: u64,
    /// A packet claiming to come from this node's own identity.
    pub from_self: u64,
    /// A packet replayed inside the replay window.
    pub replayed: u64,
}

impl Drops {
    /// Counts one drop for `error`.
    pub fn count(&mut self, error: &PacketError) {
        let slot = match error {
            PacketError::Truncated => &mut self.truncated,
            PacketError::Oversized { .. } => &mut self.oversized,
            PacketError::BadMagic => &mut self.bad_magic,
            PacketError::UnsupportedVersion(_) => &mut self.unsupported_version,
            PacketError::ForeignCluster => &mut self.foreign_cluster,
            PacketError::Unauthenticated => &mut self.unauthenticated,
            PacketError::Malformed => &mut self.malformed,
            PacketError::FromSelf => &mut self.from_self,
            PacketError::Replayed => &mut self.replayed,
        };
        *slot += 1;
    }

    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        self.truncated
            + self.oversized
            + self.bad_magic
            + self.unsupported_version
            + self.foreign_cluster
            + self.unauthenticated
            + self.malformed
            + self.from_self
            + self.replayed
    }
}

/// Counters since the node was created. Read them with [`Node::stats`](crate::Node::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams handed to `handle_packet`.
    pub packets_in: u64,
    /// Bytes handed to `handle_packet`.
    pub bytes_in: u64,
    /// Datagrams returned by `poll_transmit`.
    pub packets_out: u64,
    /// Bytes returned by `poll_transmit`.
    pub bytes_out: u64,
    /// Dropped datagrams, by reason.
    pub drops: Drops,
    /// Direct probes (pings) sent.
    pub probes: u64,
    /// Indirect probe requests (ping-req) sent.
    pub indirect_probes: u64,
    /// Nacks received for our indirect probes.
    pub nacks: u64,
    /// Members this node began to suspect.
    pub suspicions: u64,
    /// Times this node refuted a claim that it was suspect or dead.
    pub refutations: u64,
    /// Members this node declared dead (from its own timeout or a rumour).
    pub deaths: u64,
    /// Claims about new members dropped because `max_members` was reached.
    pub members_refused: u64,
    /// Claims refused because they moved a member further than any real member moves
    /// itself: an incarnation or generation jump beyond the bound, or a new life that
    /// arrived dead or suspect (see ARCHITECTURE.md, "Trust and its limits").
    pub claims_refused: u64,
    /// Unconfirmed members evicted to make room for newcomers (a flood of forged
    /// identities shows here).
    pub members_evicted: u64,
    /// Rumours evicted from a full queue before their budget was spent.
    pub rumours_evicted: u64,
    /// Arrivals this node stopped passing on before their budget was spent, because
    /// peers told it the same news (they know it, and are passing it on).
    pub rumours_quieted: u64,
    /// Anti-entropy exchanges this node started.
    pub syncs: u64,
    /// Others' state entries refused because the node-wide `max_total_state_bytes`
    /// was reached.
    pub state_refused: u64,
    /// State entries applied from rumours or anti-entropy.
    pub deltas_applied: u64,
    /// Requests delivered locally.
    pub requests_local: u64,
    /// Requests forwarded to another node.
    pub requests_forwarded: u64,
    /// Requests that failed over to the next replica.
    pub requests_failed_over: u64,
    /// Forwarded requests dropped because they were already delivered here (a
    /// duplicated or replayed datagram).
    pub requests_duplicate: u64,
    /// Responses dropped because they were duplicates or came too late.
    pub responses_dropped: u64,
    /// Large values this node began to fetch in chunks.
    pub transfers_started: u64,
    /// Large values fetched whole and checked.
    pub transfers_completed: u64,
    /// Stubs not fetched because the most transfers were already under way
    /// (anti-entropy offers them again).
    pub transfers_refused: u64,
    /// Transfers dropped, partial bytes and all, after retries without progress.
    pub transfers_expired: u64,
    /// Values whose reassembled bytes did not match their stub's hash: discarded.
    pub transfers_corrupt: u64,
}
