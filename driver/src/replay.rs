//! Replay: re-runs a core node from its flight log and checks its outputs against the
//! recorded digests, byte for byte.
//!
//! [`Replay::step`] takes the log's records one by one: [`Entry::Start`] builds the
//! node exactly as the driver did (config, identity, seeded RNG, restored placement),
//! or, in a log whose first segments rotated away, the [`Entry::Snapshot`] that opens
//! its oldest segment restores the node as it was at that turn boundary; each input is
//! then handed to the core as it was, and each [`Entry::Outputs`] drains the core and
//! compares what came out with what the node put out when it ran. Snapshots met once
//! the node runs are skipped: the output digests are the check.

use std::fmt;

use grapevine::{Instant, RequestId};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::record::{Entry, OutputDigest, Outputs, SnapshotRecord, Start, apply_keyring};
use crate::{CoreNode, Event, NodeId};

/// Why a replay stopped before the end of the log.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplayError {
    /// The log begins neither with the node's start nor with a snapshot (its first
    /// segments rotated away, and the writer supplied no snapshot).
    NoStart {
        /// The log's first record.
        first_record: u64,
    },
    /// The snapshot replay would begin at does not restore.
    Snapshot {
        /// The record.
        record: u64,
        /// Why.
        error: grapevine::SnapshotError,
    },
    /// The snapshot replay would begin at holds a keyring recorded without its keys.
    SnapshotKeysNotRecorded {
        /// The record.
        record: u64,
    },
    /// The recorded config cannot be rebuilt by this build.
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A keyring change was recorded without its keys (no `--record-keys`).
    KeysNotRecorded {
        /// The record.
        record: u64,
    },
    /// The replayed outputs differ from the recorded ones.
    Diverged {
        /// The `Outputs` record that does not match.
        record: u64,
        /// The last input before it: its number, time (ns) and description.
        input: Option<(u64, u64, String)>,
        /// What the node put out when it ran.
        recorded: Outputs,
        /// What the replay put out.
        replayed: Outputs,
    },
    /// A record that is not valid where it stands (a second start, an input before
    /// the start).
    Unexpected {
        /// The record.
        record: u64,
        /// What it is.
        what: String,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::NoStart { first_record } => write!(
                f,
                "the log starts at record #{first_record}, after the node's start (its first \
                 segments rotated away), and not at a snapshot: it cannot be re-run; `--check` \
                 still verifies it"
            ),
            ReplayError::Snapshot { record, error } => {
                write!(
                    f,
                    "record #{record}: the snapshot does not restore: {error}"
                )
            }
            ReplayError::SnapshotKeysNotRecorded { record } => write!(
                f,
                "record #{record} is a snapshot of a node with a keyring, recorded without its \
                 keys (the node ran without --record-keys): sealed datagrams cannot be opened \
                 from here"
            ),
            ReplayError::Config { reason } => write!(f, "the recorded config: {reason}"),
            ReplayError::KeysNotRecorded { record } => write!(
                f,
                "record #{record} is a keyring change recorded without its keys (the node ran \
                 without --record-keys): sealed datagrams cannot be opened from here"
            ),
            ReplayError::Diverged {
                record,
                input,
                recorded,
                replayed,
            } => {
                write!(f, "diverged at record #{record}")?;
                if let Some((n, now, what)) = input {
                    write!(f, ", after input #{n} ({what} at {})", format_time(*now))?;
                }
                write!(
                    f,
                    ": recorded {} transmits, {} events, deadline {}, digest {:016x}; replayed {} \
                     transmits, {} events, deadline {}, digest {:016x}",
                    recorded.transmits,
                    recorded.events,
                    format_deadline(recorded.deadline),
                    recorded.digest,
                    replayed.transmits,
                    replayed.events,
                    format_deadline(replayed.deadline),
                    replayed.digest
                )
            }
            ReplayError::Unexpected { record, what } => {
                write!(f, "record #{record}: unexpected {what}")
            }
        }
    }
}

impl std::error::Error for ReplayError {}

/// A core time in seconds with microseconds: `12.000345s`.
pub fn format_time(nanos: u64) -> String {
    format!(
        "{}.{:06}s",
        nanos / 1_000_000_000,
        (nanos % 1_000_000_000) / 1000
    )
}

fn format_deadline(deadline: Option<u64>) -> String {
    deadline.map_or_else(|| "none".into(), format_time)
}

/// What one record did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// The node was built.
    Started,
    /// An input was handed to the core.
    Input,
    /// The outputs matched; here are the events among them, in order.
    Matched {
        /// The events drained.
        events: Vec<Event>,
    },
}

/// A core node re-run from its log.
#[derive(Debug, Default)]
pub struct Replay {
    node: Option<CoreNode>,
    start: Option<Start>,
    started: u64,
    began_at: u64,
    last_input: Option<(u64, u64, String)>,
    now: u64,
    inputs: u64,
    checked: u64,
}

impl Replay {
    /// A replay waiting for its start record.
    pub fn new() -> Self {
        Replay::default()
    }

    /// The node, once started.
    pub fn node(&self) -> Option<&CoreNode> {
        self.node.as_ref()
    }

    /// How the node started, when the log still holds its start record.
    pub fn start(&self) -> Option<&Start> {
        self.start.as_ref()
    }

    /// The core time of the log's start, in nanoseconds (also known from a snapshot).
    pub fn started(&self) -> u64 {
        self.started
    }

    /// The record replay began at: 0 from the node's start, else its snapshot's.
    pub fn began_at(&self) -> u64 {
        self.began_at
    }

    /// The core's time at the last input, in nanoseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Inputs handed to the core so far.
    pub fn inputs(&self) -> u64 {
        self.inputs
    }

    /// `Outputs` records checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// Applies one record of the log.
    pub fn step(&mut self, record: u64, entry: &Entry) -> Result<Step, ReplayError> {
        if let Entry::Start(start) = entry {
            if self.node.is_some() {
                return Err(ReplayError::Unexpected {
                    record,
                    what: "second start record".into(),
                });
            }
            let config = start
                .config
                .to_config()
                .ok_or_else(|| ReplayError::Config {
                    reason: "it does not rebuild identically in this build (another version?)"
                        .into(),
                })?;
            let id = NodeId {
                addr: start.addr,
                generation: start.generation,
            };
            let mut node = CoreNode::new(config, id, ChaCha8Rng::seed_from_u64(start.rng_seed))
                .map_err(|e| ReplayError::Config {
                    reason: e.to_string(),
                })?;
            if let Some(placement) = &start.placement {
                node.restore(placement.clone())
                    .map_err(|e| ReplayError::Config {
                        reason: format!("its placement is refused: {e}"),
                    })?;
            }
            self.now = start.now;
            self.started = start.now;
            self.node = Some(node);
            self.start = Some((**start).clone());
            return Ok(Step::Started);
        }
        if let Entry::Snapshot(snapshot) = entry {
            if self.node.is_none() {
                self.restore(record, snapshot)?;
                return Ok(Step::Started);
            }
            return Ok(Step::Input);
        }
        let Some(node) = self.node.as_mut() else {
            return Err(if record == 0 {
                ReplayError::Unexpected {
                    record,
                    what: entry.describe(),
                }
            } else {
                ReplayError::NoStart {
                    first_record: record,
                }
            });
        };
        if let Some(now) = entry.now() {
            self.now = now;
            self.last_input = Some((record, now, entry.describe()));
        }
        let at = Instant::from_nanos(self.now);
        // Results are ignored: a refused command changed nothing when it ran, and
        // changes nothing now; the outputs check says whether both agree.
        match entry {
            Entry::Start(_) | Entry::Snapshot(_) => {}
            Entry::Packet { from, data, .. } => {
                let _ = node.handle_packet(at, *from, data);
            }
            Entry::Timeout { .. } => node.handle_timeout(at),
            Entry::Join { seeds, .. } => node.join(at, seeds.iter().copied()),
            Entry::Leave { .. } => node.leave(at),
            Entry::Shutdown { .. } => node.shutdown(at),
            Entry::RemoveNode { name, .. } => {
                let _ = node.remove_node(at, name);
            }
            Entry::Set { key, value, .. } => {
                let _ = node.set(at, key, value);
            }
            Entry::Delete { key, .. } => {
                let _ = node.delete(at, key);
            }
            Entry::Request { key, payload, .. } => {
                let _ = node.handle_request(at, key, payload.clone());
            }
            Entry::Respond { id, payload, .. } => {
                let _ = node.respond(at, RequestId(*id), payload.clone());
            }
            Entry::SetSeeds { seeds, .. } => node.set_seeds(at, seeds.iter().copied()),
            Entry::RequestTo {
                key,
                to,
                generation,
                payload,
                ..
            } => {
                let to = NodeId {
                    addr: *to,
                    generation: *generation,
                };
                let _ = node.handle_request_to(at, key, &to, payload.clone());
            }
            Entry::Keyring(change) => {
                let change = change
                    .to_change()
                    .ok_or(ReplayError::KeysNotRecorded { record })?;
                let _ = apply_keyring(node, &change);
                self.last_input = Some((record, self.now, entry.describe()));
            }
            Entry::Outputs(recorded) => {
                let mut digest = OutputDigest::default();
                let mut events = Vec::new();
                while let Some(event) = node.poll_event() {
                    digest.event(&event);
                    events.push(event);
                }
                while let Some(t) = node.poll_transmit() {
                    digest.transmit(t.dest, &t.payload);
                }
                let replayed = digest.finish(node.poll_timeout());
                if replayed != *recorded {
                    return Err(ReplayError::Diverged {
                        record,
                        input: self.last_input.clone(),
                        recorded: *recorded,
                        replayed,
                    });
                }
                self.checked += 1;
                return Ok(Step::Matched { events });
            }
        }
        self.inputs += 1;
        Ok(Step::Input)
    }

    /// Begins from a snapshot: the node as it was at that turn boundary.
    fn restore(&mut self, record: u64, snapshot: &SnapshotRecord) -> Result<(), ReplayError> {
        let keyring = snapshot
            .to_keyring()
            .map_err(|_| ReplayError::SnapshotKeysNotRecorded { record })?;
        let node = CoreNode::from_snapshot(&snapshot.node, keyring)
            .map_err(|error| ReplayError::Snapshot { record, error })?;
        self.now = snapshot.now;
        self.started = snapshot.started;
        self.began_at = record;
        self.node = Some(node);
        Ok(())
    }
}
