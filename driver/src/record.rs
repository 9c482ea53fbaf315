//! The flight recorder: every input the core receives, written to a bounded log that
//! `grapevine replay` re-runs byte for byte.
//!
//! The core is deterministic: the same seed, config and inputs give the same
//! transmits, events and deadlines. So a node's run is its start (config, identity,
//! RNG seed, restored placement) plus its inputs, and the log holds exactly that, with
//! a digest of the outputs after each turn of the runtime's loop, so a replay can tell
//! where it first departs from what the node really did.
//!
//! # Format (version 2)
//!
//! A log is a directory of segments, `00000001.gvr`, `00000002.gvr`, ..., each a
//! 32-byte header followed by records.
//!
//! | bytes | header field |
//! |---|---|
//! | 0..8 | magic `GVFLIGHT` |
//! | 8..10 | format version, u16 little-endian (2; version 1 is still read) |
//! | 10..12 | flags, u16 LE: bit 0 set when the log holds key material (`--record-keys`) |
//! | 12..20 | segment number, u64 LE, from 1 |
//! | 20..28 | number of the segment's first record, u64 LE, from 0 across the log |
//! | 28..32 | CRC-32 (IEEE) of bytes 0..28 |
//!
//! Each record is a u32 LE payload length, a u32 LE CRC-32 of the payload, then the
//! payload: one [`Entry`] in postcard. The first record of a log is [`Entry::Start`];
//! then inputs ([`Entry::Packet`], [`Entry::Timeout`], commands) in the order the core
//! received them, each followed, once the runtime drains the core, by
//! [`Entry::Outputs`]: how many transmits and events came out, the next deadline, and
//! a 64-bit digest of all of them (each transmit's destination and bytes, each event).
//! Times are the core's [`grapevine::Instant`] in nanoseconds.
//!
//! Every segment after the first opens with an [`Entry::Snapshot`] (new in version
//! 2): the node's whole state ([`grapevine::Node::snapshot`]: every part, the RNG,
//! the timers; no key material) taken at a turn boundary, after the outputs of the
//! turn before were drained and their `Outputs` record written, with the keyring then
//! installed (keys redacted unless recorded) and the time of the log's start. A
//! segment is closed at the first turn boundary after it holds
//! [`RecordOptions::segment_bytes`] of records past its snapshot; the recorder says so
//! ([`Recorder::wants_snapshot`]) and the driver, which owns the node, supplies the
//! snapshot ([`Recorder::write_snapshot`]). A writer that supplies none (the
//! simulator's tap) gets segments closed at twice the size without one. Version 1
//! differs only in having no snapshots: its logs read and replay as before.
//!
//! # What it holds, and what it does not
//!
//! - Datagrams as they were on the wire: sealed, if a keyring is installed.
//! - No key material unless [`RecordOptions::keys`] is set (`--record-keys`): keyring
//!   changes are then logged with their keys, and replay can open sealed datagrams.
//!   Without it, a keyring change is logged without its keys and replay stops there
//!   with a message that says so. Recording the plaintext after opening instead would
//!   need a hook inside the core's `handle_packet` and would not replay the replay
//!   window nor the drops, which are part of what the node did; the ciphertext does.
//! - Values written with `set` and request payloads, as given: the log is as sensitive
//!   as the node's state. Its snapshots hold that state whole (every owner's values
//!   the node holds), but never key material: the keyring beside a snapshot is
//!   recorded under the same rule as keyring changes.
//!
//! # Bounded, and re-runnable from any segment
//!
//! The oldest segments are deleted while the log exceeds [`RecordOptions::max_bytes`]
//! (room is kept for a segment as long as the longest so far). Replay begins at the
//! log's first record: the node's start if it is still there, else the snapshot that
//! opens the oldest segment kept; it restores the node from it and re-runs the rest,
//! matching every `Outputs` digest byte for byte (`--until`, `--events` and
//! `--dump-at` still count time from the node's start, which the snapshot carries).
//! Without `--record-keys`, a snapshot of a node with a keyring holds no keys and
//! replay stops there, saying so, as it does at a keyring change. A snapshot costs
//! its size once per segment: size the segments well above it (a node that knows
//! 1,000 members snapshots into about 430 KB in under a millisecond; see
//! docs/BENCHMARKS.md).
//!
//! # Cost on the node's thread
//!
//! Records are encoded straight into one 64 KiB batch, framed and checksummed in
//! place, and written with one system call per batch or per flush (the driver's: at
//! most every 100 ms). The per-datagram records (`Packet` and `Outputs`) are encoded
//! by hand, without building an `Entry`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use grapevine::{Config, Keyring, KeyringError, LocalPlacement};
use serde::{Deserialize, Serialize};

use crate::{Event, NodeId};

/// The format version this build writes.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version this build still reads (version 1 has no snapshots;
/// its records are read as they are).
pub const OLDEST_FORMAT_VERSION: u16 = 1;
/// The first bytes of every segment.
pub const MAGIC: [u8; 8] = *b"GVFLIGHT";
/// The size of a segment's header.
pub const HEADER_LEN: usize = 32;
/// Header flag: the log holds key material.
pub const FLAG_KEYS: u16 = 1;
/// The file extension of a segment.
pub const SEGMENT_EXTENSION: &str = "gvr";
/// The position of [`Entry::Packet`] among `Entry`'s variants (postcard's tag).
const PACKET_VARIANT: u8 = 1;

/// The largest record a reader accepts: larger than any value or datagram a node
/// takes, so a corrupt length cannot make the reader allocate gigabytes.
pub const MAX_RECORD_LEN: usize = 64 << 20;

/// Where and how much to record ([`Options::record`](crate::Options::record)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordOptions {
    /// The log's directory (created if missing). An older log found there is moved to
    /// `DIR/previous/` (replacing the one before), so a restart keeps the crashed
    /// run's log.
    pub dir: PathBuf,
    /// Most bytes the log keeps; the oldest segments are deleted beyond it
    /// (default 64 MiB).
    pub max_bytes: u64,
    /// Size at which a segment is closed and the next begins (default 8 MiB, at most
    /// `max_bytes / 2`).
    pub segment_bytes: u64,
    /// Record key material with keyring changes, so replay can open sealed datagrams.
    pub keys: bool,
}

impl RecordOptions {
    /// Record into `dir`, 64 MiB kept, no key material.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RecordOptions {
            dir: dir.into(),
            max_bytes: 64 << 20,
            segment_bytes: 8 << 20,
            keys: false,
        }
    }

    /// Keeps at most `bytes` of log.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Closes segments at `bytes`.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Records key material (see [`RecordOptions::keys`](RecordOptions#structfield.keys)).
    pub fn keys(mut self, keys: bool) -> Self {
        self.keys = keys;
        self
    }

    fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(self.max_bytes / 2).max(4096)
    }
}

/// The protocol configuration, field by field, as the log stores it.
///
/// `debug` holds the `Debug` text of the whole [`Config`]: replay rebuilds the config
/// from the fields and refuses the log if its `Debug` text differs, so a field added
/// to `Config` but not here cannot go unnoticed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigRecord {
    /// [`Config::cluster_name`](grapevine::Config::cluster_name).
    pub cluster_name: String,
    /// [`Config::probe_interval`](grapevine::Config::probe_interval).
    pub probe_interval: Duration,
    /// [`Config::probe_timeout`](grapevine::Config::probe_timeout).
    pub probe_timeout: Duration,
    /// [`Config::indirect_probes`](grapevine::Config::indirect_probes).
    pub indirect_probes: u64,
    /// [`Config::gossip_interval`](grapevine::Config::gossip_interval).
    pub gossip_interval: Duration,
    /// [`Config::gossip_fanout`](grapevine::Config::gossip_fanout).
    pub gossip_fanout: u64,
    /// [`Config::retransmit_mult`](grapevine::Config::retransmit_mult).
    pub retransmit_mult: u32,
    /// [`Config::suspicion_mult`](grapevine::Config::suspicion_mult).
    pub suspicion_mult: u32,
    /// [`Config::suspicion_max_mult`](grapevine::Config::suspicion_max_mult).
    pub suspicion_max_mult: u32,
    /// [`Config::awareness_max`](grapevine::Config::awareness_max).
    pub awareness_max: u32,
    /// [`Config::max_datagram_size`](grapevine::Config::max_datagram_size).
    pub max_datagram_size: u64,
    /// [`Config::dead_retention`](grapevine::Config::dead_retention).
    pub dead_retention: Duration,
    /// [`Config::tombstone_grace`](grapevine::Config::tombstone_grace).
    pub tombstone_grace: Duration,
    /// [`Config::vnodes`](grapevine::Config::vnodes).
    pub vnodes: u64,
    /// [`Config::replication_factor`](grapevine::Config::replication_factor).
    pub replication_factor: u64,
    /// [`Config::datacenter_replication`](grapevine::Config::datacenter_replication).
    pub datacenter_replication: Vec<(String, u64)>,
    /// [`Config::request_timeout`](grapevine::Config::request_timeout).
    pub request_timeout: Duration,
    /// [`Config::request_max_hops`](grapevine::Config::request_max_hops).
    pub request_max_hops: u8,
    /// [`Config::max_members`](grapevine::Config::max_members).
    pub max_members: u64,
    /// [`Config::unconfirmed_share`](grapevine::Config::unconfirmed_share).
    pub unconfirmed_share: u8,
    /// [`Config::max_rumours`](grapevine::Config::max_rumours).
    pub max_rumours: u64,
    /// [`Config::max_requests_in_flight`](grapevine::Config::max_requests_in_flight).
    pub max_requests_in_flight: u64,
    /// [`Config::max_value_size`](grapevine::Config::max_value_size).
    pub max_value_size: u64,
    /// [`Config::max_state_bytes`](grapevine::Config::max_state_bytes).
    pub max_state_bytes: u64,
    /// [`Config::max_total_state_bytes`](grapevine::Config::max_total_state_bytes).
    pub max_total_state_bytes: u64,
    /// The `Debug` text of the whole config, to check the rebuilt one against.
    pub debug: String,
}

impl From<&Config> for ConfigRecord {
    fn from(c: &Config) -> Self {
        ConfigRecord {
            cluster_name: c.cluster_name.clone(),
            probe_interval: c.probe_interval,
            probe_timeout: c.probe_timeout,
            indirect_probes: c.indirect_probes as u64,
            gossip_interval: c.gossip_interval,
            gossip_fanout: c.gossip_fanout as u64,
            retransmit_mult: c.retransmit_mult,
            suspicion_mult: c.suspicion_mult,
            suspicion_max_mult: c.suspicion_max_mult,
            awareness_max: c.awareness_max,
            max_datagram_size: c.max_datagram_size as u64,
            dead_retention: c.dead_retention,
            tombstone_grace: c.tombstone_grace,
            vnodes: c.vnodes as u64,
            replication_factor: c.replication_factor as u64,
            datacenter_replication: c
                .datacenter_replication
                .iter()
                .map(|(dc, n)| (dc.clone(), *n as u64))
                .collect(),
            request_timeout: c.request_timeout,
            request_max_hops: c.request_max_hops,
            max_members: c.max_members as u64,
            unconfirmed_share: c.unconfirmed_share,
            max_rumours: c.max_rumours as u64,
            max_requests_in_flight: c.max_requests_in_flight as u64,
            max_value_size: c.max_value_size as u64,
            max_state_bytes: c.max_state_bytes as u64,
            max_total_state_bytes: c.max_total_state_bytes as u64,
            debug: format!("{c:?}"),
        }
    }
}

impl ConfigRecord {
    /// The config again, or `None` when the rebuilt config's `Debug` text differs
    /// from the recorded one (a field this build does not know, or a value out of
    /// this platform's range).
    pub fn to_config(&self) -> Option<Config> {
        let size = |v: u64| usize::try_from(v).ok();
        let mut c = Config::lan(self.cluster_name.clone());
        c.probe_interval = self.probe_interval;
        c.probe_timeout = self.probe_timeout;
        c.indirect_probes = size(self.indirect_probes)?;
        c.gossip_interval = self.gossip_interval;
        c.gossip_fanout = size(self.gossip_fanout)?;
        c.retransmit_mult = self.retransmit_mult;
        c.suspicion_mult = self.suspicion_mult;
        c.suspicion_max_mult = self.suspicion_max_mult;
        c.awareness_max = self.awareness_max;
        c.max_datagram_size = size(self.max_datagram_size)?;
        c.dead_retention = self.dead_retention;
        c.tombstone_grace = self.tombstone_grace;
        c.vnodes = size(self.vnodes)?;
        c.replication_factor = size(self.replication_factor)?;
        c.datacenter_replication = self
            .datacenter_replication
            .iter()
            .map(|(dc, n)| Some((dc.clone(), size(*n)?)))
            .collect::<Option<_>>()?;
        c.request_timeout = self.request_timeout;
        c.request_max_hops = self.request_max_hops;
        c.max_members = size(self.max_members)?;
        c.unconfirmed_share = self.unconfirmed_share;
        c.max_rumours = size(self.max_rumours)?;
        c.max_requests_in_flight = size(self.max_requests_in_flight)?;
        c.max_value_size = size(self.max_value_size)?;
        c.max_state_bytes = size(self.max_state_bytes)?;
        c.max_total_state_bytes = size(self.max_total_state_bytes)?;
        (format!("{c:?}") == self.debug).then_some(c)
    }
}

/// A 256-bit cluster key, or only its place when key material is not recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRecord {
    /// The key itself (`--record-keys`).
    Key([u8; 32]),
    /// A key was there; its bytes were not recorded.
    Redacted,
}

impl KeyRecord {
    fn new(key: &grapevine::Key, keys: bool) -> Self {
        if keys {
            KeyRecord::Key(*key)
        } else {
            KeyRecord::Redacted
        }
    }
}

/// A change to the node's keyring, as the driver applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringChange {
    /// Replace the keyring: these keys, the first primary; empty removes the keyring
    /// (datagrams go unsealed).
    Replace(Vec<grapevine::Key>),
    /// Install a key that may open (not seal) datagrams.
    Install(grapevine::Key),
    /// Make an installed key the primary.
    Use(grapevine::Key),
    /// Remove an installed key that is not the primary.
    Remove(grapevine::Key),
}

/// A keyring change as the log holds it: [`KeyringChange`] with each key recorded or
/// redacted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyringRecord {
    /// [`KeyringChange::Replace`].
    Replace(Vec<KeyRecord>),
    /// [`KeyringChange::Install`].
    Install(KeyRecord),
    /// [`KeyringChange::Use`].
    Use(KeyRecord),
    /// [`KeyringChange::Remove`].
    Remove(KeyRecord),
}

impl KeyringRecord {
    /// The log's form of `change`, with or without the key bytes.
    pub fn new(change: &KeyringChange, keys: bool) -> Self {
        match change {
            KeyringChange::Replace(ks) => {
                KeyringRecord::Replace(ks.iter().map(|k| KeyRecord::new(k, keys)).collect())
            }
            KeyringChange::Install(k) => KeyringRecord::Install(KeyRecord::new(k, keys)),
            KeyringChange::Use(k) => KeyringRecord::Use(KeyRecord::new(k, keys)),
            KeyringChange::Remove(k) => KeyringRecord::Remove(KeyRecord::new(k, keys)),
        }
    }

    /// The change itself, or `None` if a key was redacted.
    pub fn to_change(&self) -> Option<KeyringChange> {
        let key = |k: &KeyRecord| match k {
            KeyRecord::Key(k) => Some(*k),
            KeyRecord::Redacted => None,
        };
        Some(match self {
            KeyringRecord::Replace(ks) => {
                KeyringChange::Replace(ks.iter().map(key).collect::<Option<_>>()?)
            }
            KeyringRecord::Install(k) => KeyringChange::Install(key(k)?),
            KeyringRecord::Use(k) => KeyringChange::Use(key(k)?),
            KeyringRecord::Remove(k) => KeyringChange::Remove(key(k)?),
        })
    }
}

/// How the node started: everything, besides its inputs, that its outputs depend on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Start {
    /// The protocol configuration.
    pub config: ConfigRecord,
    /// The node's address.
    pub addr: SocketAddr,
    /// The node's generation.
    pub generation: u64,
    /// The seed of the node's `ChaCha8Rng`.
    pub rng_seed: u64,
    /// The placement handed to `Node::restore` before the first input, if any.
    pub placement: Option<LocalPlacement>,
    /// The core's clock when the log started, in nanoseconds.
    pub now: u64,
    /// Wall-clock time when the log started, in microseconds since 1970 (for people).
    pub wall_micros: u64,
}

/// The node's state at a turn boundary ([`Entry::Snapshot`]): what replay restores
/// when the log no longer holds the node's start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The core's clock when it was taken, in nanoseconds.
    pub now: u64,
    /// The core's clock at the log's start record, in nanoseconds: times stay counted
    /// from the node's start (`--until`, `--dump-at`) whichever record replay begins at.
    pub started: u64,
    /// Wall-clock time when it was taken, in microseconds since 1970 (for people).
    pub wall_micros: u64,
    /// [`grapevine::Node::snapshot`]'s bytes: every part, the RNG and the timers, no keys.
    pub node: Vec<u8>,
    /// The keyring installed then, primary first (`None`: no keyring), each key
    /// recorded or redacted as keyring changes are.
    pub keyring: Option<Vec<KeyRecord>>,
}

impl SnapshotRecord {
    /// A snapshot record of `node` (already drained) at core time `now`, for a log that
    /// started at `started`; key bytes only if `keys`.
    pub fn new(
        node: &crate::CoreNode,
        now: grapevine::Instant,
        started: u64,
        keys: bool,
    ) -> Result<Self, grapevine::SnapshotError> {
        Ok(SnapshotRecord {
            now: now.as_nanos(),
            started,
            wall_micros: wall_micros(),
            node: node.snapshot()?,
            keyring: node
                .keyring()
                .map(|k| k.keys().map(|key| KeyRecord::new(key, keys)).collect()),
        })
    }

    /// The keyring to restore with (`None` without one), or [`RedactedKeys`] when its
    /// keys were not recorded.
    pub fn to_keyring(&self) -> Result<Option<Keyring>, RedactedKeys> {
        let Some(keys) = &self.keyring else {
            return Ok(None);
        };
        let mut keys = keys.iter().map(|k| match k {
            KeyRecord::Key(key) => Ok(*key),
            KeyRecord::Redacted => Err(RedactedKeys),
        });
        let Some(primary) = keys.next() else {
            return Ok(None);
        };
        let mut keyring = Keyring::new(primary?);
        for key in keys {
            keyring.install(key?);
        }
        Ok(Some(keyring))
    }
}

/// A snapshot's keyring was recorded without its keys (no `--record-keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedactedKeys;

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Entry {
    /// How the node started (the log's first record).
    Start(Box<Start>),
    /// A datagram, as received: its source and its bytes.
    Packet {
        /// The core's clock, in nanoseconds.
        now: u64,
        /// The source address.
        from: SocketAddr,
        /// The bytes, as on the wire.
        data: Vec<u8>,
    },
    /// `handle_timeout(now)`.
    Timeout {
        /// The core's clock, in nanoseconds.
        now: u64,
    },
    /// `join(now, seeds)`.
    Join {
        /// The core's clock, in nanoseconds.
        now: u64,
        /// The seeds.
        seeds: Vec<SocketAddr>,
    },
    /// `leave(now)` (a decommission).
    Leave {
        /// The core's clock, in nanoseconds.
        now: u64,
    },
    /// `shutdown(now)` (a stop keeping the ranges).
    Shutdown {
        /// The core's clock, in nanoseconds.
        now: u64,
    },
    /// `remove_node(now, name)`.
    RemoveNode {
        /// The core's clock, in nanoseconds.
        now: u64,
        /// The removed member's name.
        name: String,
    },
    /// `set(now, key, value)`.
    Set {
        /// The core's clock, in nanoseconds.
        now: u64,
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// `delete(now, key)`.
    Delete {
        /// The core's clock, in nanoseconds.
        now: u64,
        /// The key.
        key: String,
    },
    /// `handle_request(now, key, payload)`.
    Request {
        /// The core's clock, in nanoseconds.
        now: u64,
        /// The key.
        key: Vec<u8>,
        /// The payload.
        payload: Vec<u8>,
    },
    /// `respond(now, id, payload)`.
    Respond {
        /// The core's clock, in nanoseconds.
        now: u64,
        /// The request's id.
        id: u64,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A keyring change (takes no time).
    Keyring(KeyringRecord),
    /// What the core put out since the previous `Outputs` record, once drained.
    Outputs(Outputs),
    // New variants go last: postcard names a variant by its position.
    /// `set_seeds(now, seeds)`: the seeds' addresses looked up again.
    SetSeeds {
        /// The core's clock, in nanoseconds.
        now: u64,
        /// The seeds.
        seeds: Vec<SocketAddr>,
    },
    /// `handle_request_to(now, key, to, payload)`.
    RequestTo {
        /// The core's clock, in nanoseconds.
        now: u64,
        /// The key.
        key: Vec<u8>,
        /// The chosen replica's address.
        to: SocketAddr,
        /// The chosen replica's generation.
        generation: u64,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The node's whole state at a turn boundary (format version 2): the first record
    /// of every segment after the first, so a log whose older segments rotated away
    /// can still be re-run from here.
    Snapshot(Box<SnapshotRecord>),
}

impl Entry {
    /// The core's clock at this input, if it is an input with a time.
    pub fn now(&self) -> Option<u64> {
        match self {
            Entry::Packet { now, .. }
            | Entry::Timeout { now }
            | Entry::Join { now, .. }
            | Entry::Leave { now }
            | Entry::Shutdown { now }
            | Entry::RemoveNode { now, .. }
            | Entry::Set { now, .. }
            | Entry::Delete { now, .. }
            | Entry::Request { now, .. }
            | Entry::Respond { now, .. }
            | Entry::SetSeeds { now, .. }
            | Entry::RequestTo { now, .. } => Some(*now),
            Entry::Start(start) => Some(start.now),
            Entry::Snapshot(snapshot) => Some(snapshot.now),
            Entry::Keyring(_) | Entry::Outputs(_) => None,
        }
    }

    /// A short description for messages: `packet from 10.0.0.2:7946 (312 bytes)`.
    pub fn describe(&self) -> String {
        match self {
            Entry::Start(s) => format!("start of {} (seed {})", s.addr, s.rng_seed),
            Entry::Packet { from, data, .. } => {
                format!("packet from {from} ({} bytes)", data.len())
            }
            Entry::Timeout { .. } => "timeout".into(),
            Entry::Join { seeds, .. } => format!("join {seeds:?}"),
            Entry::Leave { .. } => "leave".into(),
            Entry::Shutdown { .. } => "shutdown".into(),
            Entry::RemoveNode { name, .. } => format!("removenode {name}"),
            Entry::Set { key, value, .. } => format!("set {key:?} ({} bytes)", value.len()),
            Entry::Delete { key, .. } => format!("delete {key:?}"),
            Entry::Request { payload, .. } => format!("request ({} bytes)", payload.len()),
            Entry::Respond { id, .. } => format!("respond #{id}"),
            Entry::SetSeeds { seeds, .. } => format!("set_seeds {seeds:?}"),
            Entry::RequestTo { to, payload, .. } => {
                format!("request to {to} ({} bytes)", payload.len())
            }
            Entry::Keyring(k) => format!("keyring {k:?}"),
            Entry::Snapshot(snapshot) => format!(
                "snapshot of the node ({} bytes{})",
                snapshot.node.len(),
                match &snapshot.keyring {
                    None => "",
                    Some(keys) if keys.contains(&KeyRecord::Redacted) => ", keys not recorded",
                    Some(_) => ", with its keys",
                }
            ),
            Entry::Outputs(o) => format!(
                "outputs: {} transmits, {} events, digest {:016x}",
                o.transmits, o.events, o.digest
            ),
        }
    }
}

/// What the core put out after some inputs: counts, next deadline, digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outputs {
    /// Datagrams drained.
    pub transmits: u32,
    /// Events drained.
    pub events: u32,
    /// `poll_timeout()` after the drain, in nanoseconds.
    pub deadline: Option<u64>,
    /// The [`OutputDigest`] of the transmits, events and deadline.
    pub digest: u64,
}

/// A 64-bit digest of a node's outputs, stable across builds and platforms (unlike
/// `std`'s hashers): each transmit's destination and bytes, each event (state,
/// request and response events field by field, the others by their `Debug` text),
/// the deadline. It tells outputs apart; it is no defence against forgery.
#[derive(Clone, Debug)]
pub struct OutputDigest {
    state: u64,
    outputs: Outputs,
}

impl Default for OutputDigest {
    fn default() -> Self {
        OutputDigest {
            state: 0xcbf2_9ce4_8422_2325,
            outputs: Outputs::default(),
        }
    }
}

impl OutputDigest {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn word(&mut self, w: u64) {
        self.state = (self.state.rotate_left(23) ^ w).wrapping_mul(Self::K);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(last));
    }

    fn addr(&mut self, addr: &SocketAddr) {
        match addr {
            SocketAddr::V4(a) => {
                self.word(4);
                self.word(u64::from(a.ip().to_bits()));
            }
            SocketAddr::V6(a) => {
                let bits = a.ip().to_bits();
                self.word(6);
                self.word(bits as u64);
                self.word((bits >> 64) as u64);
            }
        }
        self.word(u64::from(addr.port()));
    }

    fn id(&mut self, id: &NodeId) {
        self.addr(&id.addr);
        self.word(id.generation);
    }

    /// Adds a datagram.
    pub fn transmit(&mut self, dest: SocketAddr, payload: &[u8]) {
        self.word(1);
        self.addr(&dest);
        self.bytes(payload);
        self.outputs.transmits = self.outputs.transmits.saturating_add(1);
    }

    /// Adds an event (its `Debug` text, streamed into the digest without allocating).
    pub fn event(&mut self, event: &Event) {
        self.outputs.events = self.outputs.events.saturating_add(1);
        // The events that carry bytes, and come by the thousand, field by field:
        // formatting a value's bytes would cost more than handling the datagram.
        match event {
            Event::StateChanged { node, key, value } => {
                self.word(20);
                self.id(node);
                self.bytes(key.as_bytes());
                match value {
                    Some(v) => self.bytes(v),
                    None => self.word(u64::MAX),
                }
                return;
            }
            Event::Request { id, key, payload } => {
                self.word(21);
                self.word(id.0);
                self.bytes(key);
                self.bytes(payload);
                return;
            }
            Event::Response { id, from, payload } => {
                self.word(22);
                self.word(id.0);
                self.id(from);
                self.bytes(payload);
                return;
            }
            _ => {}
        }
        self.word(2);
        let mut stream = DigestStream {
            digest: self,
            pending: [0; 8],
            len: 0,
            total: 0,
        };
        let _ = std::fmt::Write::write_fmt(&mut stream, format_args!("{event:?}"));
        stream.finish();
    }

    /// Adds the deadline and returns the record.
    pub fn finish(mut self, deadline: Option<grapevine::Instant>) -> Outputs {
        let deadline = deadline.map(grapevine::Instant::as_nanos);
        self.word(3);
        self.word(deadline.unwrap_or(u64::MAX));
        let mut h = self.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        Outputs {
            deadline,
            digest: h,
            ..self.outputs
        }
    }
}

/// Feeds text into an [`OutputDigest`] eight bytes at a time, whatever pieces the
/// formatter writes it in.
struct DigestStream<'a> {
    digest: &'a mut OutputDigest,
    pending: [u8; 8],
    len: usize,
    total: u64,
}

impl std::fmt::Write for DigestStream<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.total += text.len() as u64;
        for &b in text.as_bytes() {
            self.pending[self.len] = b;
            self.len += 1;
            if self.len == 8 {
                self.digest.word(u64::from_le_bytes(self.pending));
                self.len = 0;
            }
        }
        Ok(())
    }
}

impl DigestStream<'_> {
    fn finish(mut self) {
        self.pending[self.len..].fill(0);
        self.digest.word(u64::from_le_bytes(self.pending));
        self.digest.word(self.total);
    }
}

/// CRC-32 (IEEE 802.3, reflected: the one zlib and PNG use).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn segment_name(number: u64) -> String {
    format!("{number:08}.{SEGMENT_EXTENSION}")
}

fn header(flags: u16, segment: u64, first_record: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&flags.to_le_bytes());
    h[12..20].copy_from_slice(&segment.to_le_bytes());
    h[20..28].copy_from_slice(&first_record.to_le_bytes());
    let crc = crc32(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The segments in `dir`, by number.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXTENSION) {
            continue;
        }
        if let Some(n) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        {
            segments.push((n, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// How many bytes of records are gathered before they are written (also written at
/// every [`Recorder::flush`]).
const BATCH_BYTES: usize = 64 << 10;
/// A segment that grows to this many times its size without a snapshot (a writer
/// that does not supply them) is closed anyway: the log stays bounded, though it can
/// then be re-run only from its start.
const SEGMENT_WITHOUT_SNAPSHOT: u64 = 2;
/// The position of [`Entry::Outputs`] among `Entry`'s variants (postcard's tag).
const OUTPUTS_VARIANT: u8 = 12;

/// Appends `value` as postcard's varint (LEB128).
fn varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Writes the log: records framed and checksummed, segments rotated.
///
/// Records are encoded straight into one batch buffer, framed and checksummed in
/// place, and the batch goes to the OS in one `write` once it holds 64 KiB or at
/// [`Recorder::flush`]: one copy of each record, no allocation per record. The two
/// records of the hot path, [`Entry::Packet`] and [`Entry::Outputs`], are encoded by
/// hand (the same bytes postcard writes; the tests check it). A writer thread was
/// tried and measured slower on a loaded two-core machine: the batches then cross
/// cores, and the thread competes with the node's for the CPU (docs/BENCHMARKS.md).
#[derive(Debug)]
pub struct Recorder {
    options: RecordOptions,
    /// Records not yet written, framed and checksummed.
    batch: Vec<u8>,
    segments: SegmentWriter,
    /// Bytes of records since the current segment's snapshot (or its start).
    since_snapshot: u64,
    next_record: u64,
    /// The core time of the log's start record, in nanoseconds.
    started: u64,
}

impl Recorder {
    /// Starts a log in `options.dir` with its [`Entry::Start`] record. An older log
    /// there is moved to `previous/`.
    pub fn create(options: RecordOptions, start: Start) -> io::Result<Self> {
        fs::create_dir_all(&options.dir)?;
        let old = list_segments(&options.dir)?;
        if !old.is_empty() {
            let previous = options.dir.join("previous");
            if previous.exists() {
                fs::remove_dir_all(&previous)?;
            }
            fs::create_dir_all(&previous)?;
            for (_, path) in old {
                if let Some(name) = path.file_name() {
                    fs::rename(&path, previous.join(name))?;
                }
            }
        }
        let flags = if options.keys { FLAG_KEYS } else { 0 };
        let segments = SegmentWriter {
            dir: options.dir.clone(),
            flags,
            max_bytes: options.max_bytes,
            segment_bytes: options.effective_segment_bytes(),
            file: open_segment(&options.dir, flags, 1, 0)?,
            segment: 1,
            segment_len: HEADER_LEN as u64,
            closed: Default::default(),
        };
        let mut recorder = Recorder {
            options,
            batch: Vec::with_capacity(BATCH_BYTES + 4096),
            segments,
            since_snapshot: 0,
            next_record: 0,
            started: start.now,
        };
        recorder.write(&Entry::Start(Box::new(start)))?;
        recorder.flush()?;
        Ok(recorder)
    }

    /// Whether key material is recorded.
    pub fn keys(&self) -> bool {
        self.options.keys
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    /// The core time of the log's start record, in nanoseconds.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Whether the current segment is full and the next should begin: the writer of
    /// the log then supplies the node's snapshot at its next turn boundary
    /// ([`Recorder::write_snapshot`]), so the new segment can be re-run on its own.
    pub fn wants_snapshot(&self) -> bool {
        self.since_snapshot >= self.options.effective_segment_bytes()
    }

    /// Closes the current segment and begins the next with `snapshot` as its first
    /// record. Take the snapshot at a turn boundary: after the outputs were drained
    /// and their [`Entry::Outputs`] written.
    pub fn write_snapshot(&mut self, snapshot: SnapshotRecord) -> io::Result<()> {
        self.next_segment()?;
        self.write(&Entry::Snapshot(Box::new(snapshot)))?;
        // A segment holds `segment_bytes` of records after its snapshot, however
        // large the snapshot: one per segment keeps its cost amortised.
        self.since_snapshot = 0;
        Ok(())
    }

    /// Appends one record (buffered; [`Recorder::flush`] hands it to the OS).
    pub fn write(&mut self, entry: &Entry) -> io::Result<()> {
        let start = self.open_frame();
        let batch = std::mem::take(&mut self.batch);
        self.batch = match postcard::to_extend(entry, batch) {
            Ok(batch) => batch,
            Err(e) => return Err(io::Error::other(e)),
        };
        self.close_frame(start)
    }

    /// Appends an [`Entry::Packet`] without building an `Entry` (the hot path): the
    /// same bytes as `write(&Entry::Packet { .. })`.
    pub fn write_packet(&mut self, now: u64, from: SocketAddr, data: &[u8]) -> io::Result<()> {
        let start = self.open_frame();
        self.batch.push(PACKET_VARIANT);
        varint(&mut self.batch, now);
        // serde writes a socket address, to a binary format, as its variant, the
        // address's octets and the port.
        match from {
            SocketAddr::V4(a) => {
                self.batch.push(0);
                self.batch.extend_from_slice(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                self.batch.push(1);
                self.batch.extend_from_slice(&a.ip().octets());
            }
        }
        varint(&mut self.batch, u64::from(from.port()));
        varint(&mut self.batch, data.len() as u64);
        self.batch.extend_from_slice(data);
        self.close_frame(start)
    }

    /// Appends an [`Entry::Outputs`] (once per turn): the same bytes as
    /// `write(&Entry::Outputs(outputs))`.
    pub fn write_outputs(&mut self, outputs: &Outputs) -> io::Result<()> {
        let start = self.open_frame();
        self.batch.push(OUTPUTS_VARIANT);
        varint(&mut self.batch, u64::from(outputs.transmits));
        varint(&mut self.batch, u64::from(outputs.events));
        match outputs.deadline {
            Some(deadline) => {
                self.batch.push(1);
                varint(&mut self.batch, deadline);
            }
            None => self.batch.push(0),
        }
        varint(&mut self.batch, outputs.digest);
        self.close_frame(start)
    }

    /// Reserves a record's 8-byte frame header; returns where the record begins.
    fn open_frame(&mut self) -> usize {
        let start = self.batch.len();
        self.batch.extend_from_slice(&[0; 8]);
        start
    }

    /// The record at `start` has been encoded after its frame header: fills in its
    /// length and checksum, and writes the batch once full.
    fn close_frame(&mut self, start: usize) -> io::Result<()> {
        let len = self.batch.len() - start;
        let payload = len - 8;
        if payload > MAX_RECORD_LEN {
            self.batch.truncate(start);
            return Err(io::Error::other(format!(
                "a record of {payload} bytes exceeds the largest a reader accepts"
            )));
        }
        let crc = crc32(&self.batch[start + 8..]);
        self.batch[start..start + 4].copy_from_slice(&(payload as u32).to_le_bytes());
        self.batch[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.since_snapshot += len as u64;
        self.next_record += 1;
        if self.batch.len() >= BATCH_BYTES {
            self.flush()?;
        }
        if self.since_snapshot
            >= SEGMENT_WITHOUT_SNAPSHOT.saturating_mul(self.options.effective_segment_bytes())
        {
            self.next_segment()?;
        }
        Ok(())
    }

    fn next_segment(&mut self) -> io::Result<()> {
        self.flush()?;
        self.since_snapshot = 0;
        self.segments.rotate(self.next_record)
    }

    /// Hands the buffered records to the OS (they survive the process being killed).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let written = self.segments.write(&self.batch);
        self.batch.clear();
        // A snapshot's buffer is not kept: the batch returns to its usual size.
        if self.batch.capacity() > 4 * BATCH_BYTES {
            self.batch = Vec::with_capacity(BATCH_BYTES + 4096);
        }
        written
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

fn open_segment(dir: &Path, flags: u16, segment: u64, first_record: u64) -> io::Result<File> {
    let mut file = File::create(dir.join(segment_name(segment)))?;
    file.write_all(&header(flags, segment, first_record))?;
    Ok(file)
}

/// The segments on disk: the open one and the closed ones still kept.
#[derive(Debug)]
struct SegmentWriter {
    dir: PathBuf,
    flags: u16,
    max_bytes: u64,
    segment_bytes: u64,
    file: File,
    segment: u64,
    segment_len: u64,
    /// Closed segments still on disk: number and size.
    closed: std::collections::VecDeque<(u64, u64)>,
}

impl SegmentWriter {
    fn write(&mut self, records: &[u8]) -> io::Result<()> {
        self.file.write_all(records)?;
        self.segment_len += records.len() as u64;
        Ok(())
    }

    /// Closes the open segment, begins the next at record `first_record`, and deletes
    /// the oldest segments beyond the bound.
    fn rotate(&mut self, first_record: u64) -> io::Result<()> {
        self.closed.push_back((self.segment, self.segment_len));
        self.segment += 1;
        self.file = open_segment(&self.dir, self.flags, self.segment, first_record)?;
        self.segment_len = HEADER_LEN as u64;
        // Room for the segment just begun: as long as the longest so far (a segment
        // ends at the first turn boundary past `segment_bytes` of records after its
        // snapshot, or at twice that without a snapshot).
        let reserve = self
            .closed
            .iter()
            .map(|(_, len)| *len)
            .max()
            .unwrap_or(0)
            .max(self.segment_bytes);
        let mut total: u64 = self.closed.iter().map(|(_, len)| len).sum();
        while total + reserve > self.max_bytes {
            let Some((number, len)) = self.closed.pop_front() else {
                break;
            };
            fs::remove_file(self.dir.join(segment_name(number)))?;
            total -= len;
        }
        Ok(())
    }
}

/// Why a log cannot be read: always names the segment, and the record where it can.
#[derive(Debug)]
#[non_exhaustive]
pub enum LogError {
    /// The directory or a segment could not be read.
    Io {
        /// What was being read.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The directory holds no segment.
    Empty(PathBuf),
    /// A segment's header is not a version-1 flight log header.
    BadHeader {
        /// The segment.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Segments are missing between two that are present.
    Gap {
        /// The segment expected next.
        expected: u64,
        /// The segment found.
        found: u64,
    },
    /// A record is damaged: cut short, failing its checksum, or not decodable.
    BadRecord {
        /// The segment.
        path: PathBuf,
        /// The record's number across the log.
        record: u64,
        /// Its byte offset in the segment.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            LogError::Empty(dir) => write!(f, "{}: no flight log segment (*.gvr)", dir.display()),
            LogError::BadHeader { path, reason } => {
                write!(f, "{}: bad segment header: {reason}", path.display())
            }
            LogError::Gap { expected, found } => write!(
                f,
                "segment {} is missing (found {} next)",
                segment_name(*expected),
                segment_name(*found)
            ),
            LogError::BadRecord {
                path,
                record,
                offset,
                reason,
            } => write!(
                f,
                "{}: record #{record} at byte {offset}: {reason}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for LogError {}

/// A segment's header, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The file.
    pub path: PathBuf,
    /// Its number.
    pub number: u64,
    /// The number of its first record across the log.
    pub first_record: u64,
    /// Its flags ([`FLAG_KEYS`]).
    pub flags: u16,
}

/// Reads a log record by record, checking every header, length and checksum.
/// Nothing read from the log is trusted: a damaged log is an error naming the first
/// bad record, never a panic.
#[derive(Debug)]
pub struct LogReader {
    segments: Vec<SegmentInfo>,
    current: usize,
    data: Vec<u8>,
    pos: usize,
    record: u64,
    failed: bool,
}

impl LogReader {
    /// Opens the log in `dir`: lists its segments and checks their headers and
    /// numbering.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref();
        let io_error = |source| LogError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let listed = list_segments(dir).map_err(io_error)?;
        if listed.is_empty() {
            return Err(LogError::Empty(dir.to_path_buf()));
        }
        let mut segments = Vec::with_capacity(listed.len());
        for (number, path) in listed {
            let mut h = [0u8; HEADER_LEN];
            let read = File::open(&path).and_then(|mut f| f.read_exact(&mut h));
            if let Err(source) = read {
                if source.kind() == io::ErrorKind::UnexpectedEof {
                    return Err(LogError::BadHeader {
                        path,
                        reason: "shorter than its 32-byte header".into(),
                    });
                }
                return Err(LogError::Io { path, source });
            }
            let info = parse_header(&h, &path)?;
            if info.number != number {
                return Err(LogError::BadHeader {
                    path,
                    reason: format!("names segment {} in its header", info.number),
                });
            }
            if let Some(prev) = segments.last() {
                let prev: &SegmentInfo = prev;
                if number != prev.number + 1 {
                    return Err(LogError::Gap {
                        expected: prev.number + 1,
                        found: number,
                    });
                }
            }
            segments.push(info);
        }
        let record = segments.first().map_or(0, |s| s.first_record);
        Ok(LogReader {
            segments,
            current: 0,
            data: Vec::new(),
            pos: 0,
            record,
            failed: false,
        })
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    /// The number of the first record the log still holds (0 unless rotated).
    pub fn first_record(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.first_record)
    }

    /// Whether the log holds key material.
    pub fn has_keys(&self) -> bool {
        self.segments.iter().any(|s| s.flags & FLAG_KEYS != 0)
    }

    fn load(&mut self) -> Result<(), LogError> {
        let Some(info) = self.segments.get(self.current) else {
            return Ok(());
        };
        self.data = fs::read(&info.path).map_err(|source| LogError::Io {
            path: info.path.clone(),
            source,
        })?;
        self.pos = HEADER_LEN;
        if self.record != info.first_record {
            return Err(LogError::BadHeader {
                path: info.path.clone(),
                reason: format!(
                    "starts at record #{}, but the previous segment ended at #{}",
                    info.first_record, self.record
                ),
            });
        }
        Ok(())
    }

    /// The next record and its number, `None` at the end of the log.
    pub fn next_entry(&mut self) -> Option<Result<(u64, Entry), LogError>> {
        if self.failed {
            return None;
        }
        let result = self.read_next();
        if matches!(result, Some(Err(_))) {
            self.failed = true;
        }
        result
    }

    fn read_next(&mut self) -> Option<Result<(u64, Entry), LogError>> {
        loop {
            if self.data.is_empty() || self.pos >= self.data.len() {
                if !self.data.is_empty() {
                    self.current += 1;
                }
                if self.current >= self.segments.len() {
                    return None;
                }
                if let Err(e) = self.load() {
                    return Some(Err(e));
                }
                if self.pos >= self.data.len() {
                    // An empty segment (only its header): the next one, if any.
                    self.current += 1;
                    self.data.clear();
                    if self.current >= self.segments.len() {
                        return None;
                    }
                    continue;
                }
            }
            let path = &self.segments[self.current].path;
            let bad = |reason: String| LogError::BadRecord {
                path: path.clone(),
                record: self.record,
                offset: self.pos as u64,
                reason,
            };
            let rest = &self.data[self.pos..];
            if rest.len() < 8 {
                return Some(Err(bad(format!(
                    "truncated: {} bytes left, a record header needs 8",
                    rest.len()
                ))));
            }
            let mut word = [0u8; 4];
            word.copy_from_slice(&rest[..4]);
            let len = u32::from_le_bytes(word) as usize;
            word.copy_from_slice(&rest[4..8]);
            let crc = u32::from_le_bytes(word);
            if len > MAX_RECORD_LEN {
                return Some(Err(bad(format!(
                    "length {len} exceeds the largest record ({MAX_RECORD_LEN})"
                ))));
            }
            let Some(payload) = rest.get(8..8 + len) else {
                return Some(Err(bad(format!(
                    "truncated: needs {len} bytes, {} left",
                    rest.len() - 8
                ))));
            };
            if crc32(payload) != crc {
                return Some(Err(bad("checksum mismatch".into())));
            }
            let entry = match postcard::from_bytes::<Entry>(payload) {
                Ok(entry) => entry,
                Err(e) => return Some(Err(bad(format!("does not decode: {e}")))),
            };
            let number = self.record;
            self.pos += 8 + len;
            self.record += 1;
            return Some(Ok((number, entry)));
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<(u64, Entry), LogError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry()
    }
}

fn parse_header(h: &[u8; HEADER_LEN], path: &Path) -> Result<SegmentInfo, LogError> {
    let bad = |reason: String| LogError::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    if h[..8] != MAGIC {
        return Err(bad("not a Grapevine flight log (wrong magic)".into()));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&h[28..32]);
    if crc32(&h[..28]) != u32::from_le_bytes(crc) {
        return Err(bad("header checksum mismatch".into()));
    }
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let u64_at = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let version = u16_at(8);
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(bad(format!(
            "format version {version}; this build reads versions {OLDEST_FORMAT_VERSION} to \
             {FORMAT_VERSION}"
        )));
    }
    Ok(SegmentInfo {
        path: path.to_path_buf(),
        flags: u16_at(10),
        number: u64_at(12),
        first_record: u64_at(20),
    })
}

/// Builds the [`Start`] record for a node: its config, identity, RNG seed and the
/// placement it was restored with, at core time `now`.
pub fn start_record(
    config: &Config,
    id: &NodeId,
    rng_seed: u64,
    placement: Option<LocalPlacement>,
    now: grapevine::Instant,
) -> Start {
    Start {
        config: ConfigRecord::from(config),
        addr: id.addr,
        generation: id.generation,
        rng_seed,
        placement,
        now: now.as_nanos(),
        wall_micros: wall_micros(),
    }
}

/// Wall-clock time in microseconds since 1970, for people reading the log.
fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Applies a keyring change to a core node: the driver and replay share it, so a
/// replayed change does exactly what the recorded one did. `Install` on a node
/// without a keyring installs a keyring with that key as primary.
pub fn apply_keyring(
    node: &mut crate::CoreNode,
    change: &KeyringChange,
) -> Result<(), KeyringError> {
    match change {
        KeyringChange::Replace(keys) => {
            let mut keyring = keys.first().map(|k| Keyring::new(*k));
            if let Some(keyring) = &mut keyring {
                for k in &keys[1..] {
                    keyring.install(*k);
                }
            }
            node.set_keyring(keyring);
        }
        KeyringChange::Install(k) => match node.keyring_mut() {
            Some(keyring) => keyring.install(*k),
            None => node.set_keyring(Some(Keyring::new(*k))),
        },
        KeyringChange::Use(k) => node
            .keyring_mut()
            .ok_or(KeyringError::UnknownKey)?
            .use_key(k)?,
        KeyringChange::Remove(k) => node
            .keyring_mut()
            .ok_or(KeyringError::UnknownKey)?
            .remove(k)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Start {
        let config = Config::lan("rec");
        let id = NodeId {
            addr: "127.0.0.1:7946".parse().unwrap(),
            generation: 3,
        };
        start_record(&config, &id, 42, None, grapevine::Instant::from_secs(1))
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "grapevine-record-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn packet(i: u64) -> Entry {
        Entry::Packet {
            now: i * 1000,
            from: "127.0.0.1:7000".parse().unwrap(),
            data: vec![i as u8; 100],
        }
    }

    #[test]
    fn packets_and_outputs_written_by_hand_are_the_entries_bytes() {
        let dir = temp_dir("packet");
        let mut rec = Recorder::create(RecordOptions::new(&dir), start()).unwrap();
        let from: SocketAddr = "[::1]:7000".parse().unwrap();
        let v4: SocketAddr = "10.1.2.3:65535".parse().unwrap();
        rec.write_packet(77, from, &[1, 2, 3]).unwrap();
        rec.write(&Entry::Packet {
            now: 77,
            from,
            data: vec![1, 2, 3],
        })
        .unwrap();
        rec.write_packet(u64::MAX, v4, &[9; 300]).unwrap();
        rec.write(&Entry::Packet {
            now: u64::MAX,
            from: v4,
            data: vec![9; 300],
        })
        .unwrap();
        let outputs = [
            Outputs {
                transmits: 3,
                events: 200,
                deadline: Some(1 << 40),
                digest: u64::MAX - 5,
            },
            Outputs::default(),
        ];
        for o in &outputs {
            rec.write_outputs(o).unwrap();
            rec.write(&Entry::Outputs(*o)).unwrap();
        }
        rec.flush().unwrap();
        let entries: Vec<_> = LogReader::open(&dir).unwrap().map(Result::unwrap).collect();
        for pair in entries[1..].chunks(2) {
            assert_eq!(pair[0].1, pair[1].1);
        }
        // Byte for byte: walk the frames to the last two records.
        let bytes = fs::read(dir.join(segment_name(1))).unwrap();
        let mut frames = Vec::new();
        let mut pos = HEADER_LEN;
        while pos < bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            frames.push(&bytes[pos..pos + 8 + len]);
            pos += 8 + len;
        }
        assert_eq!(frames.len(), 9);
        for pair in frames[1..].chunks(2) {
            assert_eq!(pair[0], pair[1], "the same bytes");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn config_round_trips_and_a_changed_debug_text_is_refused() {
        let mut config = Config::wan("x");
        config.datacenter_replication = vec![("dc1".into(), 2)];
        let mut record = ConfigRecord::from(&config);
        assert_eq!(record.to_config(), Some(config));
        record.debug.push('!');
        assert_eq!(record.to_config(), None);
    }

    /// A stand-in for a node's snapshot: these tests exercise framing, not the core.
    fn snapshot(now: u64) -> SnapshotRecord {
        SnapshotRecord {
            now,
            started: 1,
            wall_micros: 0,
            node: vec![7; 300],
            keyring: None,
        }
    }

    /// Writes `entry`, first beginning a segment with a snapshot if one is wanted (as
    /// the driver does at each turn boundary).
    fn write_turn(rec: &mut Recorder, entry: &Entry) {
        if rec.wants_snapshot() {
            rec.write_snapshot(snapshot(entry.now().unwrap_or(0)))
                .unwrap();
        }
        rec.write(entry).unwrap();
    }

    #[test]
    fn records_read_back_in_order_across_segments() {
        let dir = temp_dir("order");
        let options = RecordOptions::new(&dir)
            .max_bytes(1 << 30)
            .segment_bytes(4096);
        let mut rec = Recorder::create(options, start()).unwrap();
        for i in 0..200 {
            write_turn(&mut rec, &packet(i));
        }
        rec.flush().unwrap();
        let reader = LogReader::open(&dir).unwrap();
        let segments = reader.segments().to_vec();
        assert!(segments.len() > 3, "{segments:?}");
        let entries: Vec<(u64, Entry)> = reader.map(Result::unwrap).collect();
        assert!(matches!(entries[0], (0, Entry::Start(_))));
        for (i, (n, _)) in entries.iter().enumerate() {
            assert_eq!(*n, i as u64);
        }
        // Every segment after the first opens with a snapshot.
        for segment in &segments[1..] {
            let (_, first) = &entries[segment.first_record as usize];
            assert!(matches!(first, Entry::Snapshot(_)), "{first:?}");
        }
        let packets: Vec<&Entry> = entries
            .iter()
            .map(|(_, e)| e)
            .filter(|e| matches!(e, Entry::Packet { .. }))
            .collect();
        assert_eq!(packets.len(), 200);
        for (i, e) in packets.into_iter().enumerate() {
            assert_eq!(*e, packet(i as u64));
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn without_snapshots_a_segment_ends_at_twice_its_size() {
        let dir = temp_dir("nosnap");
        let options = RecordOptions::new(&dir)
            .max_bytes(64 << 10)
            .segment_bytes(8 << 10);
        let mut rec = Recorder::create(options, start()).unwrap();
        for i in 0..5000 {
            rec.write(&packet(i)).unwrap();
        }
        rec.flush().unwrap();
        let sizes: Vec<u64> = list_segments(&dir)
            .unwrap()
            .iter()
            .map(|(_, p)| fs::metadata(p).unwrap().len())
            .collect();
        assert!(sizes.len() > 1, "{sizes:?}");
        assert!(sizes.iter().all(|&s| s <= (16 << 10) + 200), "{sizes:?}");
        assert!(sizes.iter().sum::<u64>() <= 64 << 10, "{sizes:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_keeps_the_log_bounded() {
        let dir = temp_dir("bounded");
        let options = RecordOptions::new(&dir)
            .max_bytes(64 << 10)
            .segment_bytes(8 << 10);
        let mut rec = Recorder::create(options, start()).unwrap();
        for i in 0..5000 {
            write_turn(&mut rec, &packet(i));
        }
        rec.flush().unwrap();
        let total: u64 = list_segments(&dir)
            .unwrap()
            .iter()
            .map(|(_, p)| fs::metadata(p).unwrap().len())
            .sum();
        assert!(total <= 64 << 10, "{total} bytes kept");
        let reader = LogReader::open(&dir).unwrap();
        let first = reader.first_record();
        assert!(first > 4000, "old records were dropped: starts at {first}");
        let entries: Vec<_> = reader.map(Result::unwrap).collect();
        assert_eq!(entries.first().map(|e| e.0), Some(first));
        assert!(
            matches!(entries.first(), Some((_, Entry::Snapshot(_)))),
            "the log now begins at a snapshot"
        );
        assert_eq!(
            entries.last().map(|e| &e.1),
            Some(&packet(4999)),
            "the last record is the last packet"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn damage_names_the_first_bad_record() {
        let dir = temp_dir("damage");
        let mut rec = Recorder::create(RecordOptions::new(&dir), start()).unwrap();
        for i in 0..10 {
            rec.write(&packet(i)).unwrap();
        }
        rec.flush().unwrap();
        drop(rec);
        let path = dir.join(segment_name(1));
        let good = fs::read(&path).unwrap();
        // Record lengths: find record 4's offset by reading.
        let mut offsets = Vec::new();
        let mut pos = HEADER_LEN;
        while pos < good.len() {
            offsets.push(pos);
            let len = u32::from_le_bytes(good[pos..pos + 4].try_into().unwrap()) as usize;
            pos += 8 + len;
        }
        // A flipped byte inside record #4's payload.
        let mut flipped = good.clone();
        flipped[offsets[4] + 20] ^= 0x40;
        fs::write(&path, &flipped).unwrap();
        let err = LogReader::open(&dir)
            .unwrap()
            .find_map(Result::err)
            .expect("an error");
        let text = err.to_string();
        assert!(
            text.contains("record #4") && text.contains("checksum"),
            "{text}"
        );
        // A truncated segment: record #7 is cut short.
        fs::write(&path, &good[..offsets[7] + 30]).unwrap();
        let mut reader = LogReader::open(&dir).unwrap();
        let read: Vec<_> = reader.by_ref().collect();
        assert_eq!(read.iter().filter(|r| r.is_ok()).count(), 7);
        let text = read.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(
            text.contains("record #7") && text.contains("truncated"),
            "{text}"
        );
        // A flipped byte in the header.
        let mut header = good.clone();
        header[13] ^= 1;
        fs::write(&path, &header).unwrap();
        let text = LogReader::open(&dir).unwrap_err().to_string();
        assert!(text.contains("header checksum"), "{text}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_version_1_log_still_reads_and_a_later_version_is_refused() {
        let dir = temp_dir("v1");
        let mut rec = Recorder::create(RecordOptions::new(&dir), start()).unwrap();
        rec.write(&packet(1)).unwrap();
        rec.flush().unwrap();
        drop(rec);
        let path = dir.join(segment_name(1));
        let bytes = fs::read(&path).unwrap();
        let with_version = |version: u16| {
            let mut b = bytes.clone();
            b[8..10].copy_from_slice(&version.to_le_bytes());
            let crc = crc32(&b[..28]);
            b[28..32].copy_from_slice(&crc.to_le_bytes());
            b
        };
        fs::write(&path, with_version(1)).unwrap();
        assert_eq!(LogReader::open(&dir).unwrap().count(), 2);
        fs::write(&path, with_version(FORMAT_VERSION + 1)).unwrap();
        let text = LogReader::open(&dir).unwrap_err().to_string();
        assert!(text.contains("format version 3"), "{text}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_new_log_moves_the_old_one_aside() {
        let dir = temp_dir("previous");
        let mut rec = Recorder::create(RecordOptions::new(&dir), start()).unwrap();
        rec.write(&packet(1)).unwrap();
        rec.flush().unwrap();
        drop(rec);
        let rec = Recorder::create(RecordOptions::new(&dir), start()).unwrap();
        drop(rec);
        assert_eq!(LogReader::open(&dir).unwrap().count(), 1);
        assert_eq!(LogReader::open(dir.join("previous")).unwrap().count(), 2);
        fs::remove_dir_all(dir).unwrap();
    }
}
