//! Placement: where data belongs. Key hashing ([`murmur`]), the token ring
//! ([`ring`]), token allocation for joiners ([`allocator`]), and this node's view of
//! every member's tokens and of the cluster's agreement on them ([`Placement`]).

pub mod allocator;
pub mod murmur;
pub mod ring;

pub use allocator::{ALLOCATION_RF, allocate_tokens, allocate_tokens_for_rf, random_tokens};
pub use murmur::{murmur3_x64_128, token_for};
pub use ring::{Ring, Token};
