//! Protocol parameters, with documented defaults and validation.
//!
//! Defaults follow HashiCorp memberlist's LAN profile for failure detection and
//! Cassandra for the ring; each field says where its default comes from.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::placement::Replication;
use core::fmt;
use core::time::Duration;

/// The largest `max_value_size` a config may set: 16 MiB. A value is fetched in
/// chunks and held whole while it is reassembled, so the bound is on memory per
/// transfer, not on datagrams.
pub const MAX_VALUE_SIZE: usize = 16 << 20;

/// Everything a [`Node`](crate::Node) can be tuned with. Plain data: clone it to
/// stamp out many nodes, and call [`Config::validate`] (the node does) before use.
///
/// ```
/// let mut config = grapevine::Config::lan("orders");
/// config.gossip_fanout = 4;
/// assert!(config.validate().is_err(), "never more than three peers per round");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Config {
    /// Name of the cluster. Its hash is carried in every packet header, and packets
    /// from another cluster are dropped (as Cassandra does with the cluster name).
    pub cluster_name: String,
    /// Time between two failure-detector probes (memberlist LAN: 1 s). Scaled by the
    /// local health multiplier.
    pub probe_interval: Duration,
    /// Time to wait for a direct ack before asking others to probe
    /// (memberlist LAN: 500 ms). Scaled by the local health multiplier.
    pub probe_timeout: Duration,
    /// Members asked to probe a silent target on our behalf (SWIM k; memberlist: 3, at most 3).
    pub indirect_probes: usize,
    /// Time between two gossip rounds and two anti-entropy exchanges (the seed: 1 s).
    pub gossip_interval: Duration,
    /// Live members a gossip round pushes rumours to (the seed: 3, and never more than 3).
    pub gossip_fanout: usize,
    /// Retransmit budget multiplier λ: a rumour is sent λ·⌈log10(n + 1)⌉ times (memberlist: 4).
    pub retransmit_mult: u32,
    /// Lifeguard's minimum suspicion timeout is `suspicion_mult · log10(n) · probe_interval`
    /// (memberlist and foca: 4; the LAN preset: 3, because a death verdict nobody else
    /// suspected is only a suspicion here, see ARCHITECTURE.md "Gray failures", and
    /// with it 3 keeps 0 false deaths at 10 % loss while detecting crashes faster than
    /// foca: docs/BENCHMARKS.md).
    pub suspicion_mult: u32,
    /// The maximum suspicion timeout is `suspicion_max_mult` times the minimum (memberlist: 6).
    pub suspicion_max_mult: u32,
    /// Ceiling of the local health multiplier (Lifeguard; memberlist: 8).
    pub awareness_max: u32,
    /// Largest datagram the node ever emits, in bytes, sealed overhead included
    /// (memberlist's UDPBufferSize: 1,400, inside a 1,500-byte MTU).
    pub max_datagram_size: usize,
    /// How long dead and left members are kept as tombstones, so stale rumours cannot
    /// resurrect them (memberlist keeps them 30 s; we keep them longer because the
    /// tombstone is what lets a healed partition find the other side again).
    pub dead_retention: Duration,
    /// How long a deleted key's tombstone is kept before it is collected
    /// (chitchat's grace period; Cassandra's gc_grace). A peer away for longer gets a reset.
    pub tombstone_grace: Duration,
    /// Tokens each node announces on the ring (Cassandra 4.0 num_tokens: 16). Zero makes
    /// a member that owns no ranges (membership only: a client, or a pure SWIM cluster).
    pub vnodes: usize,
    /// Distinct nodes in a replica set (Cassandra's usual RF: 3), racks and
    /// datacenters ignored (SimpleStrategy). Used when `datacenter_replication` is empty.
    pub replication_factor: usize,
    /// Replicas per datacenter, distinct racks first within each (Cassandra's
    /// NetworkTopologyStrategy), e.g. `[("dc1", 3), ("dc2", 2)]`. Empty: SimpleStrategy
    /// with `replication_factor`.
    pub datacenter_replication: Vec<(String, usize)>,
    /// How long a forwarded request may wait for its response before failing over.
    pub request_timeout: Duration,
    /// Forwarding hops a request may take before it is refused (guards against loops
    /// while two nodes disagree on the ring).
    pub request_max_hops: u8,
    /// Most members (alive, suspect and tombstones) a node keeps. Claims about new
    /// members beyond it are dropped and counted.
    pub max_members: usize,
    /// The share of `max_members`, in percent, that members not yet confirmed (they
    /// have not answered one of our probes at their address) may hold. Newcomers
    /// beyond it evict unconfirmed members in turn, so forged identities can neither
    /// fill the table nor keep a real newcomer out. Keep it above the cluster size.
    pub unconfirmed_share: u8,
    /// Most rumours queued for piggybacking; the oldest, most-sent ones are evicted first.
    pub max_rumours: usize,
    /// Most requests this node tracks at once (originated plus forwarded).
    pub max_requests_in_flight: usize,
    /// Largest value accepted by [`Node::set`](crate::Node::set), in bytes. Values
    /// up to [`INLINE_VALUE_MAX`](crate::state::INLINE_VALUE_MAX) travel inside their
    /// rumour; longer ones are announced by a stub and fetched in datagram-sized
    /// chunks, and become visible to readers only once whole. At most
    /// [`MAX_VALUE_SIZE`].
    pub max_value_size: usize,
    /// Largest total of key and value bytes kept for one node's state.
    pub max_state_bytes: usize,
    /// Most bytes of state this node holds for all owners together (entries with their
    /// overhead, plus a fixed overhead per owner). Writes from others beyond it are
    /// refused and counted (`Stats::state_refused`); anti-entropy brings them once
    /// room frees up. Only confirmed, live owners' state is accepted at all.
    pub max_total_state_bytes: usize,
}

impl Config {
    /// The LAN profile: memberlist's LAN timings, Cassandra's ring defaults.
    pub fn lan(cluster_name: impl Into<String>) -> Self {
        Config {
            cluster_name: cluster_name.into(),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_probes: 3,
            gossip_interval: Duration::from_secs(1),
            gossip_fanout: 3,
            retransmit_mult: 4,
            suspicion_mult: 3,
            suspicion_max_mult: 6,
            awareness_max: 8,
            max_datagram_size: 1400,
            dead_retention: Duration::from_secs(3600),
            tombstone_grace: Duration::from_secs(3600),
            vnodes: 16,
            replication_factor: 3,
            datacenter_replication: Vec::new(),
            request_timeout: Duration::from_secs(1),
            request_max_hops: 3,
            max_members: 65_536,
            unconfirmed_share: 25,
            max_rumours: 4096,
            max_requests_in_flight: 4096,
            max_value_size: 64 * 1024,
            max_state_bytes: 1024 * 1024,
            max_total_state_bytes: 64 * 1024 * 1024,
        }
    }

    /// The WAN profile: slower probes and longer timeouts (memberlist's WAN timings).
    pub fn wan(cluster_name: impl Into<String>) -> Self {
        Config {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            gossip_interval: Duration::from_millis(1500),
            suspicion_mult: 6,
            request_timeout: Duration::from_secs(5),
            ..Config::lan(cluster_name)
        }
    }

    /// The replication strategy these settings describe.
    pub fn replication(&self) -> Replication {
        if self.datacenter_replication.is_empty() {
            Replication::Simple(self.replication_factor)
        } else {
            Replication::PerDatacenter(self.datacenter_replication.clone())
        }
    }

    /// Checks every field against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::*;
        if self.probe_interval.is_zero() {
            return Err(ZeroInterval("probe_interval"));
        }
        if self.gossip_interval.is_zero() {
            return Err(ZeroInterval("gossip_interval"));
        }
        if self.probe_timeout.is_zero() || self.probe_timeout >= self.probe_interval {
            return Err(ProbeTimeout);
        }
        if self.request_timeout.is_zero() {
            return Err(ZeroInterval("request_timeout"));
        }
        if self.gossip_fanout == 0 || self.gossip_fanout > 3 {
            return Err(OutOfRange {
                field: "gossip_fanout",
                min: 1,
                max: 3,
            });
        }
        if self.indirect_probes > 3 {
            return Err(OutOfRange {
                field: "indirect_probes",
                min: 0,
                max: 3,
            });
        }
        let ranges: [(&'static str, u64, u64, u64); 10] = [
            ("retransmit_mult", self.retransmit_mult as u64, 1, 64),
            ("suspicion_mult", self.suspicion_mult as u64, 1, 64),
            ("suspicion_max_mult", self.suspicion_max_mult as u64, 1, 64),
            ("awareness_max", self.awareness_max as u64, 0, 64),
            (
                "max_datagram_size",
                self.max_datagram_size as u64,
                512,
                65_000,
            ),
            ("vnodes", self.vnodes as u64, 0, 256),
            ("replication_factor", self.replication_factor as u64, 1, 16),
            ("request_max_hops", self.request_max_hops as u64, 1, 16),
            ("max_members", self.max_members as u64, 2, 1 << 24),
            (
                "unconfirmed_share",
                u64::from(self.unconfirmed_share),
                1,
                100,
            ),
        ];
        for (field, value, min, max) in ranges {
            if value < min || value > max {
                return Err(OutOfRange { field, min, max });
            }
        }
        if self
            .datacenter_replication
            .iter()
            .any(|(dc, n)| dc.is_empty() || dc.len() > 64 || *n > 16)
        {
            return Err(OutOfRange {
                field: "datacenter_replication",
                min: 0,
                max: 16,
            });
        }
        if self.max_rumours == 0 || self.max_requests_in_flight == 0 {
            return Err(OutOfRange {
                field: "max_rumours/max_requests_in_flight",
                min: 1,
                max: u64::MAX,
            });
        }
        if self.max_value_size == 0 || self.max_value_size > MAX_VALUE_SIZE {
            return Err(OutOfRange {
                field: "max_value_size",
                min: 1,
                max: MAX_VALUE_SIZE as u64,
            });
        }
        if self.max_total_state_bytes < self.max_state_bytes {
            return Err(OutOfRange {
                field: "max_total_state_bytes",
                min: self.max_state_bytes as u64,
                max: u64::MAX,
            });
        }
        if self.max_state_bytes < self.max_value_size {
            return Err(OutOfRange {
                field: "max_state_bytes",
                min: self.max_value_size as u64,
                max: u64::MAX,
            });
        }
        Ok(())
    }
}

/// Why a [`Config`] was refused. Nothing is built from a refused config.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// An interval that must be positive is zero.
    ZeroInterval(&'static str),
    /// `probe_timeout` must be positive and shorter than `probe_interval`.
    ProbeTimeout,
    /// A field is outside its allowed range (inclusive).
    OutOfRange {
        /// The field's name.
        field: &'static str,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroInterval(field) => write!(f, "{field} must be greater than zero"),
            ConfigError::ProbeTimeout => {
                write!(
                    f,
                    "probe_timeout must be greater than zero and less than probe_interval"
                )
            }
            ConfigError::OutOfRange { field, min, max } => {
                write!(f, "{field} must be between {min} and {max}")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::lan("x").validate(), Ok(()));
        assert_eq!(Config::wan("x").validate(), Ok(()));
    }

    #[test]
    fn refuses_fanout_above_three() {
        let mut c = Config::lan("x");
        c.gossip_fanout = 4;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OutOfRange {
                field: "gossip_fanout",
                ..
            })
        ));
    }

    #[test]
    fn refuses_timeout_longer_than_interval() {
        let mut c = Config::lan("x");
        c.probe_timeout = c.probe_interval;
        assert_eq!(c.validate(), Err(ConfigError::ProbeTimeout));
    }
}
