//! Authenticated encryption of datagram bodies, with keys that rotate without downtime.
//!
//! The primary key seals; every installed key may open. Rotation is memberlist's:
//! install the new key on every node, make it primary everywhere, then remove the
//! old one. At every step each node can open what every other node seals.
//!
//! The cipher is XChaCha20-Poly1305: its 24-byte nonce is drawn from the node's
//! injected RNG, and at that size random nonces do not collide in practice. The
//! packet header is the associated data, so a sealed body cannot be moved under
//! another cluster's header.

use alloc::vec::Vec;
use core::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

/// Bytes a sealed body adds: the nonce and the tag.
pub const SEAL_OVERHEAD: usize = 24 + 16;

/// A 256-bit cluster key.
pub type Key = [u8; 32];

/// The installed keys; the first is the primary.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(Key, XChaCha20Poly1305)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Why a keyring operation was refused. A refused operation changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringError {
    /// The key is not installed.
    UnknownKey,
    /// The primary key cannot be removed; make another key primary first.
    RemovePrimary,
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::UnknownKey => f.write_str("key is not installed"),
            KeyringError::RemovePrimary => f.write_str("cannot remove the primary key"),
        }
    }
}

impl core::error::Error for KeyringError {}

impl Keyring {
    /// A keyring holding one key, which is primary.
    pub fn new(primary: Key) -> Self {
        Keyring {
            keys: alloc::vec![(primary, XChaCha20Poly1305::new(&primary.into()))],
        }
    }

    /// Installs a key for opening (does nothing if it is installed already).
    pub fn install(&mut self, key: Key) {
        if !self.keys.iter().any(|(k, _)| *k == key) {
            self.keys.push((key, XChaCha20Poly1305::new(&key.into())));
        }
    }

    /// Makes an installed key the primary.
    pub fn use_key(&mut self, key: &Key) -> Result<(), KeyringError> {
        let pos = self
            .keys
            .iter()
            .position(|(k, _)| k == key)
            .ok_or(KeyringError::UnknownKey)?;
        self.keys.swap(0, pos);
        Ok(())
    }

    /// Removes a key that is not the primary.
    pub fn remove(&mut self, key: &Key) -> Result<(), KeyringError> {
        let pos = self
            .keys
            .iter()
            .position(|(k, _)| k == key)
            .ok_or(KeyringError::UnknownKey)?;
        if pos == 0 {
            return Err(KeyringError::RemovePrimary);
        }
        self.keys.remove(pos);
        Ok(())
    }

    /// The installed keys, the primary first. For an operator's listing: show a
    /// fingerprint of each, never the key itself.
    pub fn keys(&self) -> impl Iterator<Item = &Key> + '_ {
        self.keys.iter().map(|(k, _)| k)
    }

    /// The number of installed keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a keyring holds at least its primary.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seals `body` in place after the header already in `out`: appends nonce,
    /// ciphertext and tag, authenticating `out[..aad_len]`.
    pub fn seal(&self, out: &mut Vec<u8>, aad_len: usize, body: &[u8], nonce: [u8; 24]) {
        let (_, cipher) = &self.keys[0];
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(body);
        let (aad, rest) = out.split_at_mut(start);
        let aad = &aad[..aad_len];
        // Encryption only fails for bodies over 256 GiB.
        if let Ok(tag) = cipher.encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, rest) {
            out.extend_from_slice(&tag);
        }
    }

    /// Opens a sealed body (`nonce ‖ ciphertext ‖ tag`) under header `aad`,
    /// trying every installed key. `None` if no key opens it.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD {
            return None;
        }
        let (nonce, rest) = sealed.split_at(24);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        let nonce = XNonce::from_slice(nonce);
        let tag = Tag::from_slice(tag);
        for (_, cipher) in &self.keys {
            let mut buf = ct.to_vec();
            if cipher
                .decrypt_in_place_detached(nonce, aad, &mut buf, tag)
                .is_ok()
            {
                return Some(buf);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_rotate() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let a = Keyring::new(k1);
        let mut out = b"HDR".to_vec();
        a.seal(&mut out, 3, b"hello", [7; 24]);
        assert_eq!(out.len(), 3 + 5 + SEAL_OVERHEAD);
        let mut b = Keyring::new(k2);
        assert_eq!(b.open(b"HDR", &out[3..]), None);
        b.install(k1);
        assert_eq!(b.open(b"HDR", &out[3..]).as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            b.open(b"HDX", &out[3..]),
            None,
            "the header is authenticated"
        );
        let mut tampered = out.clone();
        tampered[5] ^= 1;
        assert_eq!(b.open(b"HDR", &tampered[3..]), None);
        assert_eq!(b.remove(&k2), Err(KeyringError::RemovePrimary));
        b.use_key(&k1).unwrap();
        b.remove(&k2).unwrap();
        assert_eq!(b.len(), 1);
    }
}
