//! Values too large for one datagram: announced by a [`StateStub`] (owner, key,
//! version, length, hash), then pulled chunk by chunk from a node that holds them,
//! reassembled here, checked against the stub's hash, and only then handed to the
//! store whole. A reader never sees part of a value: until the last chunk arrives the
//! store still holds the previous version.
//!
//! Why pull and not push: a rumour is forwarded λ·log N times by every node, so a
//! 64 KiB value pushed as rumours would cost every node megabytes. The stub is the
//! rumour (a few dozen bytes); the bytes cross each link about once, on demand.
//!
//! Bounds: at most [`MAX_TRANSFERS`] values are in flight at once, each at most
//! `max_value_size` bytes, and a transfer that makes no progress for [`MAX_TRIES`]
//! retries is dropped with its partial bytes. Chunks are accepted only for a transfer
//! in flight, at the index and length it expects; a value whose bytes do not match
//! the stub's hash is discarded and counted. A dropped transfer is not lost: the
//! store still lacks the version, so anti-entropy sends the stub again.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use rand_core::RngCore;

use crate::membership::{Address, NodeId};
use crate::outbox::Outbox;
use crate::time::Instant;
use crate::wire::{
    MAX_CHUNKS_PER_WANT, Message, StateDelta, StateStub, ValueChunk, ValueWant, encode_message,
    value_hash,
};
use core::time::Duration;

/// Large values fetched at once; further stubs wait for anti-entropy to offer them again.
pub(crate) const MAX_TRANSFERS: usize = 4;
/// Retries without a new chunk before a transfer is dropped.
pub(crate) const MAX_TRIES: u8 = 4;
/// Room a chunk message needs beside its data: tag, owner, key length, version, index.
const CHUNK_OVERHEAD: usize = 96;
/// The smallest chunk worth asking for.
const MIN_CHUNK: usize = 64;

/// The chunk size a node asks for: as much of a datagram body as a chunk of `key`
/// can fill.
pub(crate) fn chunk_size(body_budget: usize, key: &str) -> usize {
    body_budget
        .saturating_sub(CHUNK_OVERHEAD + key.len())
        .clamp(MIN_CHUNK, usize::from(u16::MAX))
}

/// One value being fetched.
#[derive(Debug, Serialize, Deserialize)]
struct Transfer<A> {
    stub: StateStub<A>,
    /// Whom we ask: the node that announced it to us (it holds it), or the owner.
    source: A,
    chunk: usize,
    data: Vec<u8>,
    have: Vec<bool>,
    missing: usize,
    /// Chunks asked for in the current window and not arrived yet.
    outstanding: usize,
    deadline: Instant,
    tries: u8,
}

impl<A: Address> Transfer<A> {
    fn chunks(&self) -> usize {
        self.have.len()
    }

    /// The next window of missing chunks.
    fn window(&self) -> Vec<u32> {
        (0..self.chunks())
            .filter(|&i| !self.have[i])
            .take(MAX_CHUNKS_PER_WANT)
            .map(|i| i as u32)
            .collect()
    }

    fn want(&self) -> Vec<u8> {
        encode_message(&Message::ValueWant(ValueWant {
            owner: self.stub.owner.clone(),
            key: self.stub.key.clone(),
            version: self.stub.version,
            chunk: self.chunk as u16,
            indices: self.window(),
        }))
    }

    fn same_value(&self, owner: &NodeId<A>, key: &str, version: u64) -> bool {
        self.stub.owner == *owner && self.stub.key == key && self.stub.version == version
    }
}

/// The large values this node is fetching, with their retry timer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Transfers<A> {
    active: Vec<Transfer<A>>,
    retry: Duration,
    max_value_size: usize,
}

impl<A: Address> Transfers<A> {
    /// `retry`: how long to wait for a window of chunks before asking again.
    pub fn new(retry: Duration, max_value_size: usize) -> Self {
        Transfers {
            active: Vec::new(),
            retry,
            max_value_size,
        }
    }

    /// Values being fetched.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Bytes held for values being fetched.
    pub fn bytes(&self) -> usize {
        self.active.iter().map(|t| t.data.len()).sum()
    }

    /// A stub from `from` for a version the store lacks: starts fetching it from `from`
    /// (or keeps fetching it if already under way). A newer version of the same key
    /// replaces an older one in flight.
    pub fn offer<R: RngCore>(
        &mut self,
        now: Instant,
        from: &A,
        stub: StateStub<A>,
        body_budget: usize,
        out: &mut Outbox<A, R>,
    ) {
        let len = stub.len as usize;
        if len == 0 || len > self.max_value_size {
            return;
        }
        if let Some(i) = self
            .active
            .iter()
            .position(|t| t.stub.owner == stub.owner && t.stub.key == stub.key)
        {
            let t = &self.active[i];
            if t.stub.version > stub.version
                || (t.stub.version == stub.version && t.stub.hash == stub.hash)
            {
                return; // under way, or already superseded
            }
            self.active.swap_remove(i);
        }
        if self.active.len() >= MAX_TRANSFERS {
            out.count().transfers_refused += 1;
            return;
        }
        let chunk = chunk_size(body_budget, &stub.key);
        let chunks = len.div_ceil(chunk);
        let t = Transfer {
            stub,
            source: from.clone(),
            chunk,
            data: alloc::vec![0; len],
            have: alloc::vec![false; chunks],
            missing: chunks,
            outstanding: chunks.min(MAX_CHUNKS_PER_WANT),
            deadline: now + self.retry,
            tries: 0,
        };
        let want = t.want();
        out.send(t.source.clone(), &[want], 1);
        out.count().transfers_started += 1;
        self.active.push(t);
    }

    /// A chunk: stored if a transfer expects it. Returns the whole value once every
    /// chunk has arrived and its hash matches the stub.
    pub fn on_chunk<R: RngCore>(
        &mut self,
        now: Instant,
        from: &A,
        chunk: ValueChunk<A>,
        out: &mut Outbox<A, R>,
    ) -> Option<StateDelta<A>> {
        let i = self
            .active
            .iter()
            .position(|t| t.same_value(&chunk.owner, &chunk.key, chunk.version))?;
        let t = &mut self.active[i];
        if t.source != *from {
            return None;
        }
        let index = chunk.index as usize;
        let start = index.checked_mul(t.chunk)?;
        let end = start.saturating_add(t.chunk).min(t.data.len());
        if index >= t.chunks() || t.have[index] || chunk.data.len() != end - start {
            return None;
        }
        t.data[start..end].copy_from_slice(&chunk.data);
        t.have[index] = true;
        t.missing -= 1;
        t.outstanding = t.outstanding.saturating_sub(1);
        t.tries = 0;
        if t.missing == 0 {
            let t = self.active.swap_remove(i);
            if value_hash(&t.data) != t.stub.hash {
                out.count().transfers_corrupt += 1;
                return None;
            }
            out.count().transfers_completed += 1;
            return Some(StateDelta {
                owner: t.stub.owner,
                key: t.stub.key,
                version: t.stub.version,
                value: Some(t.data),
            });
        }
        if t.outstanding == 0 {
            // The window arrived: ask for the next one at once.
            let want = t.want();
            t.outstanding = t.missing.min(MAX_CHUNKS_PER_WANT);
            t.deadline = now + self.retry;
            out.send(t.source.clone(), &[want], 1);
        }
        None
    }

    /// Forgets the transfers of `owner`'s current life (it died, left or restarted).
    pub fn forget_owner(&mut self, owner: &A) {
        self.active.retain(|t| t.stub.owner.addr != *owner);
    }

    /// When a window is due to be asked for again.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active.iter().map(|t| t.deadline).min()
    }

    /// Asks again for what is missing where a window is overdue; drops transfers that
    /// made no progress for [`MAX_TRIES`] retries. `fallback` names another node to
    /// ask (the owner, if it is alive) once the source has failed twice.
    pub fn on_timeout<R: RngCore>(
        &mut self,
        now: Instant,
        fallback: &dyn Fn(&NodeId<A>) -> Option<A>,
        out: &mut Outbox<A, R>,
    ) {
        let before = self.active.len();
        self.active
            .retain(|t| t.deadline > now || t.tries < MAX_TRIES);
        let dropped = before - self.active.len();
        out.count().transfers_expired += dropped as u64;
        for t in self.active.iter_mut().filter(|t| t.deadline <= now) {
            t.tries += 1;
            if t.tries == 2 {
                if let Some(other) = fallback(&t.stub.owner) {
                    t.source = other;
                }
            }
            t.outstanding = t.missing.min(MAX_CHUNKS_PER_WANT);
            t.deadline = now + self.retry;
            let want = t.want();
            out.send(t.source.clone(), &[want], 1);
        }
    }
}

/// The chunks of `value` a [`ValueWant`] asks for, encoded, at most
/// [`MAX_CHUNKS_PER_WANT`] of them, each fitting a datagram of `body_budget`.
pub(crate) fn serve<A: Address>(
    want: &ValueWant<A>,
    value: &[u8],
    body_budget: usize,
) -> Vec<Vec<u8>> {
    let chunk = usize::from(want.chunk);
    if chunk < MIN_CHUNK || chunk + CHUNK_OVERHEAD + want.key.len() > body_budget {
        return Vec::new();
    }
    let mut seen: Vec<u32> = Vec::new();
    let mut out = Vec::new();
    for &index in want.indices.iter().take(MAX_CHUNKS_PER_WANT) {
        if seen.contains(&index) {
            continue;
        }
        seen.push(index);
        let Some(start) = (index as usize).checked_mul(chunk) else {
            continue;
        };
        if start >= value.len() {
            continue;
        }
        let end = start.saturating_add(chunk).min(value.len());
        out.push(encode_message(&Message::ValueChunk(ValueChunk {
            owner: want.owner.clone(),
            key: String::from(want.key.as_str()),
            version: want.version,
            index,
            data: value[start..end].to_vec(),
        })));
    }
    out
}
