//! Cluster keys as text and in files: how an operator hands keys to a node, and how a
//! key is shown without revealing it.
//!
//! A key is 32 bytes, written in standard base64 (44 characters, `=` padding
//! optional; `head -c 32 /dev/urandom | base64`) or in hex (64 digits).
//!
//! A **key file** holds one key per line, the first being the primary (the one that
//! seals; every key opens). Blank lines and lines starting with `#` are ignored.
//! [`read_key_file`] refuses a file that does not exist, that group or others may
//! read (as ssh does for a private key: `chmod 600 FILE`), that holds no key, or whose
//! line is not a key. Its errors name the file and the line, never the text found.
//!
//! A key is shown only by its [`fingerprint`]: the first 8 bytes of its SHA-256, in
//! hex. [`Keyring`]'s `Debug` prints only how many keys it holds.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use grapevine::{Key, Keyring};
use sha2::{Digest, Sha256};

/// Why a text is not a key. It never holds the text itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyParseError {
    /// Neither 64 hex digits nor base64.
    NotBase64OrHex,
    /// Decodes, but not to 32 bytes.
    WrongLength(usize),
}

impl fmt::Display for KeyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyParseError::NotBase64OrHex => f.write_str(
                "not a key: expected 32 bytes in base64 (44 characters) or hex (64 digits)",
            ),
            KeyParseError::WrongLength(n) => {
                write!(f, "not a key: it decodes to {n} bytes, a key is 32")
            }
        }
    }
}

impl std::error::Error for KeyParseError {}

/// Parses a key written in base64 or hex (surrounding whitespace ignored).
pub fn parse_key(text: &str) -> Result<Key, KeyParseError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| KeyParseError::NotBase64OrHex)?
    } else {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        engine
            .decode(text)
            .map_err(|_| KeyParseError::NotBase64OrHex)?
    };
    Key::try_from(bytes.as_slice()).map_err(|_| KeyParseError::WrongLength(bytes.len()))
}

/// A key in standard base64, the form [`parse_key`] reads and key files hold.
pub fn encode_key(key: &Key) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A key's fingerprint: the first 8 bytes of its SHA-256, as 16 hex digits. It
/// names a key in listings and logs without revealing it.
pub fn fingerprint(key: &Key) -> String {
    let digest = Sha256::digest(key);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a key file was refused. Nothing was started; no key material is included.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file cannot be opened or read (missing, no permission).
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Group or others may read the file.
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not a key.
    BadKey {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        error: KeyParseError,
    },
    /// The file holds no key.
    Empty {
        /// The file.
        path: PathBuf,
    },
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Read { path, source } => {
                write!(f, "cannot read key file {}: {source}", path.display())
            }
            KeyFileError::TooOpen { path, mode } => write!(
                f,
                "key file {} is readable by group or others (mode {:04o}); refusing it: run chmod 600 on it",
                path.display(),
                mode & 0o7777
            ),
            KeyFileError::BadKey { path, line, error } => {
                write!(f, "key file {} line {line}: {error}", path.display())
            }
            KeyFileError::Empty { path } => write!(
                f,
                "key file {} holds no key (one base64 or hex key per line, the first is primary)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyFileError::Read { source, .. } => Some(source),
            KeyFileError::BadKey { error, .. } => Some(error),
            KeyFileError::TooOpen { .. } | KeyFileError::Empty { .. } => None,
        }
    }
}

/// Reads a key file (see the [module docs](self)) into a keyring whose primary is the
/// first key.
pub fn read_key_file(path: impl AsRef<Path>) -> Result<Keyring, KeyFileError> {
    let path = path.as_ref();
    let read = |source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(read)?.permissions().mode();
        if mode & 0o044 != 0 {
            return Err(KeyFileError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let text = io::read_to_string(file).map_err(read)?;
    let mut keyring: Option<Keyring> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = parse_key(line).map_err(|error| KeyFileError::BadKey {
            path: path.to_owned(),
            line: i + 1,
            error,
        })?;
        match &mut keyring {
            Some(ring) => ring.install(key),
            None => keyring = Some(Keyring::new(key)),
        }
    }
    keyring.ok_or_else(|| KeyFileError::Empty {
        path: path.to_owned(),
    })
}

/// A change to a running node's keyring, for [`Handle`](crate::Handle)'s key verbs.
/// Its `Debug` shows the key's fingerprint only.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyChange {
    /// Install a key for opening (nothing changes if it is installed already).
    Install(Key),
    /// Make an installed key the primary: this node seals with it from now on.
    Use(Key),
    /// Remove an installed key that is not the primary.
    Remove(Key),
}

impl fmt::Debug for KeyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, key) = match self {
            KeyChange::Install(k) => ("Install", k),
            KeyChange::Use(k) => ("Use", k),
            KeyChange::Remove(k) => ("Remove", k),
        };
        write!(f, "{verb}({})", fingerprint(key))
    }
}

/// A node's installed keys, by [`fingerprint`], the primary first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeysSnapshot {
    /// The fingerprints of the installed keys; the first is the primary's.
    pub fingerprints: Vec<String>,
}

impl KeysSnapshot {
    /// The snapshot of `keyring`.
    pub fn of(keyring: &Keyring) -> Self {
        KeysSnapshot {
            fingerprints: keyring.keys().map(fingerprint).collect(),
        }
    }

    /// The primary key's fingerprint.
    pub fn primary(&self) -> Option<&str> {
        self.fingerprints.first().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn keys_parse_from_base64_and_hex() {
        let key = [7u8; 32];
        let b64 = encode_key(&key);
        assert_eq!(b64.len(), 44);
        assert_eq!(parse_key(&b64), Ok(key));
        assert_eq!(
            parse_key(b64.trim_end_matches('=')),
            Ok(key),
            "padding optional"
        );
        assert_eq!(parse_key(&"07".repeat(32)), Ok(key));
        assert_eq!(parse_key("not a key"), Err(KeyParseError::NotBase64OrHex));
        assert_eq!(parse_key("AAAA"), Err(KeyParseError::WrongLength(3)));
        assert_eq!(fingerprint(&key).len(), 16);
        assert_ne!(fingerprint(&key), fingerprint(&[8u8; 32]));
        assert!(!format!("{:?}", KeyChange::Use(key)).contains(&b64));
    }

    fn file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        f
    }

    #[test]
    fn key_files_are_read_and_refused_as_documented() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let text = format!("# cluster keys\n{}\n\n{}\n", encode_key(&k1), hex(&k2));
        let ring = read_key_file(file(&text, 0o600).path()).unwrap();
        assert_eq!(
            KeysSnapshot::of(&ring).fingerprints,
            vec![fingerprint(&k1), fingerprint(&k2)],
            "the first key is primary"
        );
        let err = read_key_file(file(&text, 0o644).path()).unwrap_err();
        assert!(matches!(err, KeyFileError::TooOpen { .. }), "{err}");
        assert!(err.to_string().contains("0644"), "{err}");
        let err = read_key_file(file("# none\n", 0o600).path()).unwrap_err();
        assert!(matches!(err, KeyFileError::Empty { .. }), "{err}");
        let secret = "c2VjcmV0IGJ1dCBub3QgYSBrZXk=";
        let err = read_key_file(file(&format!("{}\n{secret}\n", encode_key(&k1)), 0o600).path())
            .unwrap_err();
        assert!(matches!(err, KeyFileError::BadKey { line: 2, .. }), "{err}");
        assert!(
            !err.to_string().contains(secret),
            "never echo the text: {err}"
        );
        let err = read_key_file("/nonexistent/grapevine.keys").unwrap_err();
        assert!(matches!(err, KeyFileError::Read { .. }), "{err}");
    }

    fn hex(key: &Key) -> String {
        key.iter().map(|b| format!("{b:02x}")).collect()
    }
}
