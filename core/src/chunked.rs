//! A vector that grows a fixed-size chunk at a time, after a first chunk that grows
//! like a `Vec`: the per-member tables (the member slots, the placement records)
//! grow without copying themselves into a buffer twice as large, which would leave
//! up to half of it empty and the old one behind in the allocator at every doubling.

use alloc::vec::Vec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Elements per allocation.
const CHUNK: usize = 128;

/// A vector of `T` in chunks of [`CHUNK`] elements, indexed by `u32`.
#[derive(Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked { chunks: Vec::new() }
    }
}

impl<T> Chunked<T> {
    pub fn get(&self, ix: u32) -> Option<&T> {
        let ix = ix as usize;
        self.chunks.get(ix / CHUNK)?.get(ix % CHUNK)
    }

    pub fn get_mut(&mut self, ix: u32) -> Option<&mut T> {
        let ix = ix as usize;
        self.chunks.get_mut(ix / CHUNK)?.get_mut(ix % CHUNK)
    }

    /// Appends `value`; returns its index.
    pub fn push(&mut self, value: T) -> u32 {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            // The first chunk grows as a `Vec` does (a table of one record, our own,
            // takes room for a few), the later ones are allocated whole.
            let room = if self.chunks.is_empty() { 0 } else { CHUNK };
            self.chunks.push(Vec::with_capacity(room));
        }
        let last = self.chunks.len() - 1;
        let chunk = &mut self.chunks[last];
        chunk.push(value);
        (last * CHUNK + chunk.len() - 1) as u32
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// Every element, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    /// Elements the allocated chunks hold room for.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }
}

impl<T: Serialize> Serialize for Chunked<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // With its length first: postcard cannot write a sequence of unknown length.
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for value in self.iter() {
            seq.serialize_element(value)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Chunked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let flat: Vec<T> = Deserialize::deserialize(d)?;
        let mut out = Chunked::default();
        for value in flat {
            out.push(value);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_run_across_chunks() {
        let mut c = Chunked::default();
        for i in 0..300u32 {
            assert_eq!(c.push(i * 2), i);
        }
        assert_eq!(c.len(), 300);
        assert_eq!(c.capacity(), 3 * CHUNK);
        assert_eq!(c.get(129), Some(&258));
        assert_eq!(c.get(300), None);
        if let Some(v) = c.get_mut(299) {
            *v = 1;
        }
        assert_eq!(c.iter().copied().last(), Some(1));
        let bytes = postcard::to_allocvec(&c).unwrap();
        let back: Chunked<u32> = postcard::from_bytes(&bytes).unwrap();
        assert!(back.iter().eq(c.iter()));
    }
}
