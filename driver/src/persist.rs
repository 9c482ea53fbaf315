//! A node's identity and placement on disk: `placement.json` in its data directory.
//!
//! The core reports every change of this node's placement as
//! [`Event::PlacementChanged`](grapevine::Event::PlacementChanged); the driver saves
//! it here before it sends the datagrams that announce it, and hands it back to
//! [`Node::restore`](grapevine::Node::restore) on the next start, so a restarted
//! node keeps its name and reclaims exactly its tokens (a restart moves no data).
//!
//! # Format
//!
//! One JSON document:
//!
//! ```json
//! {
//!   "checksum": "9c1b7e1f0d2a4c33",
//!   "placement": {
//!     "format": 1,
//!     "cluster": "grapevine",
//!     "name": "3f9a0c2e71d4b865",
//!     "datacenter": "dc1",
//!     "rack": "rack1",
//!     "epoch": 1718000000000000,
//!     "status": "Normal",
//!     "tokens": [-9101234567890123456, -4500000000000000000]
//!   }
//! }
//! ```
//!
//! - `checksum` is FNV-1a 64 (16 lowercase hex digits) of the compact serialization
//!   of `placement` with its fields in the order shown;
//! - `status` is `null` before the node first started, else one of `Joining`,
//!   `Normal`, `Leaving`, `Left`, `Removed`;
//! - `epoch` is the generation at which the tokens were allocated (0: none yet).
//!
//! The file is replaced atomically: written to `placement.json.tmp`, fsynced,
//! renamed over `placement.json`, and the directory fsynced. A file that does not
//! parse or whose checksum does not match is refused ([`RuntimeError::CorruptPlacement`]),
//! as is one written for another cluster ([`RuntimeError::ForeignDataDir`]): neither is
//! ever overwritten.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use grapevine::{LocalPlacement, Location, Topology};
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// The file a node's placement is kept in, inside its data directory.
pub const PLACEMENT_FILE: &str = "placement.json";

/// The version of the file's format.
const FORMAT: u32 = 1;

/// The `placement` object of the file, fields in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    format: u32,
    cluster: String,
    name: String,
    datacenter: String,
    rack: String,
    epoch: u64,
    status: Option<Topology>,
    tokens: Vec<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File1 {
    checksum: String,
    placement: Saved,
}

/// FNV-1a, 64 bits: a checksum against torn or hand-edited files, not an adversary.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn checksum(saved: &Saved) -> String {
    let body = serde_json::to_vec(saved).unwrap_or_default();
    format!("{:016x}", fnv1a(&body))
}

/// The lock file in a data directory: held (an OS advisory lock) for as long as a
/// node runs from the directory.
pub const LOCK_FILE: &str = "lock";

/// A node's data directory and the cluster it belongs to.
#[derive(Debug, Clone)]
pub struct PlacementStore {
    dir: PathBuf,
    cluster: String,
    /// The locked lock file, once [`PlacementStore::lock`] succeeded; the lock goes
    /// with the last clone.
    lock: Option<std::sync::Arc<File>>,
}

impl PlacementStore {
    /// The store in `dir` for a node of `cluster`. Touches nothing yet.
    pub fn new(dir: impl Into<PathBuf>, cluster: impl Into<String>) -> Self {
        PlacementStore {
            dir: dir.into(),
            cluster: cluster.into(),
            lock: None,
        }
    }

    /// Takes the directory for this process (creating it if needed): fails with
    /// [`RuntimeError::DataDirInUse`] while another process holds it, so that two
    /// nodes never run under one name with one set of tokens. The OS releases the
    /// lock when the process exits, however it exits.
    pub fn lock(&mut self) -> Result<(), RuntimeError> {
        let io_error = |source| RuntimeError::DataDir {
            path: self.dir.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(io_error)?;
        let path = self.dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| RuntimeError::DataDir {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {
                self.lock = Some(std::sync::Arc::new(file));
                Ok(())
            }
            Err(fs::TryLockError::WouldBlock) => Err(RuntimeError::DataDirInUse { path }),
            Err(fs::TryLockError::Error(source)) => Err(RuntimeError::DataDir { path, source }),
        }
    }

    /// The placement file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(PLACEMENT_FILE)
    }

    /// The saved placement, `None` if the directory holds none yet.
    pub fn load(&self) -> Result<Option<LocalPlacement>, RuntimeError> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RuntimeError::DataDir { path, source }),
        };
        let corrupt = |reason: String| RuntimeError::CorruptPlacement {
            path: path.clone(),
            reason,
        };
        let file: File1 = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        let expected = checksum(&file.placement);
        if file.checksum != expected {
            return Err(corrupt(format!(
                "checksum {} does not match its content ({expected})",
                file.checksum
            )));
        }
        let saved = file.placement;
        if saved.format != FORMAT {
            return Err(corrupt(format!(
                "format {} is not supported (expected {FORMAT})",
                saved.format
            )));
        }
        if saved.cluster != self.cluster {
            return Err(RuntimeError::ForeignDataDir {
                path,
                found: saved.cluster,
                expected: self.cluster.clone(),
            });
        }
        Ok(Some(LocalPlacement {
            name: saved.name,
            location: Location::new(saved.datacenter, saved.rack),
            tokens: saved.tokens,
            epoch: saved.epoch,
            status: saved.status,
        }))
    }

    /// Saves `placement` atomically and durably (temp file, fsync, rename, fsync of
    /// the directory), creating the directory if needed.
    pub fn save(&self, placement: &LocalPlacement) -> Result<(), RuntimeError> {
        let io_error = |source| RuntimeError::DataDir {
            path: self.dir.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(io_error)?;
        let placement = Saved {
            format: FORMAT,
            cluster: self.cluster.clone(),
            name: placement.name.clone(),
            datacenter: placement.location.datacenter.clone(),
            rack: placement.location.rack.clone(),
            epoch: placement.epoch,
            status: placement.status,
            tokens: placement.tokens.clone(),
        };
        let file = File1 {
            checksum: checksum(&placement),
            placement,
        };
        let mut text = serde_json::to_vec_pretty(&file).map_err(|e| io_error(e.into()))?;
        text.push(b'\n');
        let tmp = self.dir.join(format!("{PLACEMENT_FILE}.tmp"));
        write_synced(&tmp, &text).map_err(io_error)?;
        fs::rename(&tmp, self.path()).map_err(io_error)?;
        sync_dir(&self.dir).map_err(io_error)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename in `dir` durable. Directories cannot be opened for syncing on
/// every platform; where they cannot, the rename is as durable as the OS makes it.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(d) => match d.sync_all() {
            Ok(()) => Ok(()),
            // Windows and some filesystems refuse to sync a directory handle.
            Err(e) if cfg!(not(unix)) || e.kind() == io::ErrorKind::InvalidInput => Ok(()),
            Err(e) => Err(e),
        },
        Err(_) if cfg!(not(unix)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A fresh node name: 16 hex digits from the OS's random source.
pub fn random_name() -> Result<String, RuntimeError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| RuntimeError::Io(io::Error::other(format!("OS random source: {e}"))))?;
    Ok(format!("{:016x}", u64::from_le_bytes(bytes)))
}

/// What a node starts with: the saved placement, checked against what the operator
/// asked for, or a new one (saved at once, so the name is chosen only once).
pub fn open(
    store: &PlacementStore,
    name: Option<&str>,
    location: Option<&Location>,
) -> Result<LocalPlacement, RuntimeError> {
    if let Some(saved) = store.load()? {
        if let Some(given) = name.filter(|n| *n != saved.name) {
            return Err(RuntimeError::NameMismatch {
                path: store.path(),
                saved: saved.name,
                given: given.to_owned(),
            });
        }
        if let Some(given) = location.filter(|l| **l != saved.location) {
            return Err(RuntimeError::LocationMismatch {
                path: store.path(),
                saved: format!("{}/{}", saved.location.datacenter, saved.location.rack),
                given: format!("{}/{}", given.datacenter, given.rack),
            });
        }
        return Ok(saved);
    }
    let placement = LocalPlacement {
        name: match name {
            Some(n) => n.to_owned(),
            None => random_name()?,
        },
        location: location.cloned().unwrap_or_default(),
        tokens: Vec::new(),
        epoch: 0,
        status: None,
    };
    store.save(&placement)?;
    Ok(placement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement() -> LocalPlacement {
        LocalPlacement {
            name: "node-a".into(),
            location: Location::new("dc2", "r7"),
            tokens: vec![i64::MIN, -5, 0, 42, i64::MAX],
            epoch: 1_718_000_000_000_000,
            status: Some(Topology::Normal),
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlacementStore::new(dir.path().join("sub"), "c1");
        assert_eq!(store.load().unwrap(), None);
        store.save(&placement()).unwrap();
        assert_eq!(store.load().unwrap(), Some(placement()));
        assert!(!dir.path().join("sub/placement.json.tmp").exists());
    }

    #[test]
    fn corrupt_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlacementStore::new(dir.path(), "c1");
        store.save(&placement()).unwrap();
        let err = PlacementStore::new(dir.path(), "c2").load().unwrap_err();
        assert!(matches!(err, RuntimeError::ForeignDataDir { .. }), "{err}");
        assert!(err.to_string().contains("cluster \"c1\""), "{err}");

        let text = fs::read_to_string(store.path()).unwrap();
        fs::write(store.path(), text.replace("node-a", "node-b")).unwrap();
        let err = store.load().unwrap_err();
        assert!(
            matches!(err, RuntimeError::CorruptPlacement { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("checksum"), "{err}");

        fs::write(store.path(), &text[..text.len() / 2]).unwrap();
        let err = store.load().unwrap_err();
        assert!(
            matches!(err, RuntimeError::CorruptPlacement { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_data_dir_is_used_by_one_node_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = PlacementStore::new(dir.path().join("d"), "c1");
        first.lock().unwrap();
        let mut second = PlacementStore::new(dir.path().join("d"), "c1");
        let err = second.lock().unwrap_err();
        assert!(matches!(err, RuntimeError::DataDirInUse { .. }), "{err:?}");
        assert!(
            err.to_string().contains("in use by another running node"),
            "{err}"
        );
        drop(first);
        second.lock().expect("free once the first node is gone");
    }

    #[test]
    fn a_name_is_chosen_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlacementStore::new(dir.path(), "c1");
        let first = open(&store, None, None).unwrap();
        assert_eq!(first.name.len(), 16);
        assert_eq!(open(&store, None, None).unwrap().name, first.name);
        assert_eq!(open(&store, Some(&first.name), None).unwrap(), first);
        let err = open(&store, Some("other"), None).unwrap_err();
        assert!(matches!(err, RuntimeError::NameMismatch { .. }), "{err}");
        let err = open(&store, None, Some(&Location::new("dc9", "r1"))).unwrap_err();
        assert!(
            matches!(err, RuntimeError::LocationMismatch { .. }),
            "{err}"
        );
        assert_ne!(random_name().unwrap(), random_name().unwrap());
    }
}
