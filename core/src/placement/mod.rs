//! Placement: where data belongs. Key hashing ([`murmur`]), the token ring with racks
//! and datacenters ([`ring`]), token allocation for joiners ([`allocator`]), every
//! member's placement record and its topology state ([`topology`]), and this node's
//! view of them with the cluster's agreement on the ring (`table`).
//!
//! Placement follows topology, never liveness: a member's ranges change only when it
//! joins, decommissions (`leave`), or is removed by an operator (`remove_node`); a
//! crash, a restart or an address change moves nothing.

mod agreement;
pub mod allocator;
mod greedy;
pub mod murmur;
pub mod ring;
mod table;
pub mod topology;

pub use allocator::{
    ALLOCATION_RF, allocate_tokens, allocate_tokens_for_rf, allocate_tokens_located,
    allocate_tokens_many, random_tokens,
};
pub use murmur::{murmur3_x64_128, token_for};
pub use ring::{Location, Replication, Ring, Token};
pub(crate) use table::{AgreementReceipt, Placement, Received, RecordIx, RecordRef};
pub use table::{JOIN_WAVE, Owner, RING_DELAY_ROUNDS, WAVE_GROWTH, join_waves};
pub use topology::{
    LocalPlacement, MAX_NAME_LEN, PlacementRecord, Rank, RemoveError, RestoreError, Topology,
};
