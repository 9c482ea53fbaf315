//! Key hashing: Cassandra's `Murmur3Partitioner`, bit for bit.
//!
//! Keys hash to a signed 64-bit [`Token`] with exactly the function Cassandra's
//! `Murmur3Partitioner` uses, so a token we compute can be checked against
//! `SELECT token(k)` on a real cluster.

use super::ring::Token;

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

/// MurmurHash3 x64 128-bit, exactly as in Austin Appleby's reference `MurmurHash3.cpp`
/// (and Python's `mmh3.hash64`), returning `(h1, h2)`.
///
/// This is the textbook function. Cassandra's token differs from it for some inputs
/// (see [`token_for`]); keeping both lets tests pin each one to its own published
/// vectors.
pub fn murmur3_x64_128(data: &[u8], seed: u64) -> (u64, u64) {
    murmur3(data, seed, false)
}

/// The token Cassandra's `Murmur3Partitioner` gives the partition-key bytes `key`.
///
/// Three details make it differ from plain `murmur3_x64_128(key, 0).0 as i64`, all
/// copied so that our placement agrees with Cassandra's for the same bytes:
/// - Cassandra's Java port widens the trailing (`len % 16`) bytes through Java's
///   signed `byte`, so a tail byte ≥ 0x80 is sign-extended before it is mixed in.
/// - `i64::MIN` is Cassandra's reserved minimum token, so a hash landing there is
///   moved to `i64::MAX`.
/// - The empty key maps to that minimum token, `i64::MIN`.
///
/// For an `int` partition key the bytes are its 4-byte big-endian encoding; for
/// `text`, its UTF-8 bytes.
pub fn token_for(key: &[u8]) -> Token {
    if key.is_empty() {
        return Token::MIN;
    }
    let (h1, _) = murmur3(key, 0, true);
    normalize(h1 as i64)
}

/// Cassandra never hands out its minimum token for a key, so neither do we.
pub(super) fn normalize(token: Token) -> Token {
    if token == Token::MIN {
        Token::MAX
    } else {
        token
    }
}

/// Little-endian load of up to eight bytes; total on every length, so no input panics.
fn le_u64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The one body behind both variants; `java_tail` selects Cassandra's sign extension.
fn murmur3(data: &[u8], seed: u64, java_tail: bool) -> (u64, u64) {
    let mut h1 = seed;
    let mut h2 = seed;
    let blocks = data.chunks_exact(16);
    let tail = blocks.remainder();
    for block in blocks {
        let (lo, hi) = block.split_at(8);
        let k1 = le_u64(lo).wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        let k2 = le_u64(hi).wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }

    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, &b) in tail.iter().enumerate() {
        let v = if java_tail {
            // Java's `(long) byte` sign-extends; the high bits survive the shift.
            i64::from(b as i8) as u64
        } else {
            u64::from(b)
        };
        if i < 8 {
            k1 ^= v << (8 * i);
        } else {
            k2 ^= v << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }

    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::vec::Vec;

    // ---------------------------------------------------------------- hashing

    /// Reference MurmurHash3 x64-128 vectors, `(h1, h2)`, generated with Python
    /// `mmh3.hash64(data, seed, signed=False)` (mmh3 5.3.1, a binding of Appleby's
    /// reference C++). The fox vector is also the widely published one:
    /// `6c1b07bc7bbc4be347939ac4a93c437a` as little-endian bytes.
    #[test]
    fn murmur3_reference_vectors() {
        let cases: &[(&[u8], u64, u64, u64)] = &[
            (b"", 0, 0, 0),
            (b"a", 0, 0x8555_5565_f659_7889, 0xe6b5_3a48_510e_895a),
            (b"hello", 0, 0xcbd8_a7b3_41bd_9b02, 0x5b1e_906a_48ae_1d19),
            (b"hello", 42, 0xc4b8_b3c9_60af_6f08, 0x2334_b875_b0ef_bc7a),
            (
                b"hello, world",
                0,
                0x342f_ac62_3a5e_bc8e,
                0x4cdc_bc07_9642_414d,
            ),
            (
                b"The quick brown fox jumps over the lazy dog",
                0,
                0xe34b_bc7b_bc07_1b6c,
                0x7a43_3ca9_c49a_9347,
            ),
            (
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
                0,
                0xaf8b_4e33_fb20_6352,
                0x73fd_b038_3892_c275,
            ),
        ];
        for &(data, seed, h1, h2) in cases {
            assert_eq!(
                murmur3_x64_128(data, seed),
                (h1, h2),
                "{data:?} seed {seed}"
            );
        }
        let block: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            murmur3_x64_128(&block, 0),
            (0x4449_24b5_9190_3f30, 0xab90_6456_762f_e845)
        );
        let two_blocks: Vec<u8> = (0u8..31).collect();
        assert_eq!(
            murmur3_x64_128(&two_blocks, 0),
            (0x053d_d3e1_a32c_d094, 0x9ee5_9aef_b400_5490)
        );
        let high_tail: Vec<u8> = (0x80u8..0x8f).collect();
        assert_eq!(
            murmur3_x64_128(&high_tail, 0),
            (0xbb93_7a52_5247_04b9, 0xc1a4_0099_b8dc_e921)
        );
    }

    /// `SELECT token(k)` values published for `int` partition keys 1..=20 in
    /// apache/cassandra-dtest `replication_test.py` (`murmur3_hashes`); key 1 is also
    /// asserted by cqlsh's own test (`SELECT token(num) ... -4069959284402364209`).
    /// An `int` key's bytes are its 4-byte big-endian encoding.
    #[test]
    fn token_matches_cassandra_int_keys() {
        let published: [(i32, i64); 20] = [
            (1, -4069959284402364209),
            (2, -3248873570005575792),
            (3, 9010454139840013625),
            (4, -2729420104000364805),
            (5, -7509452495886106294),
            (6, 2705480034054113608),
            (7, 1634052884888577606),
            (8, -3799847372828181882),
            (9, 3728482343045213994),
            (10, -6715243485458697746),
            (11, -4156302194539278891),
            (12, 8582886034424406875),
            (13, -5034495173465742853),
            (14, 4279681877540623768),
            (15, -1191135763843456182),
            (16, -5477287129830487822),
            (17, 5467144456125416399),
            (18, -2695747960476065067),
            (19, -3974532302236993209),
            (20, 1388667306199997068),
        ];
        for (k, token) in published {
            assert_eq!(token_for(&k.to_be_bytes()), token, "int key {k}");
        }
    }

    /// Text keys from scylladb/scylla-rust-driver's `test_murmur3_partitioner`, a
    /// driver that must route exactly as Cassandra does. "kremówki" has the UTF-8
    /// bytes 0xC3 0xB3 in its 9-byte tail, so it only matches with Java's
    /// sign-extension; plain murmur3 (mmh3) gives 5170069825885792609 for it.
    #[test]
    fn token_matches_cassandra_text_keys_and_sign_extension() {
        for (key, token) in [
            ("test", -6017608668500074083),
            ("xd", 4507812186440344727),
            ("primary_key", -1632642444691073360),
            ("kremówki", 4354931215268080151),
        ] {
            assert_eq!(token_for(key.as_bytes()), token, "{key}");
        }
        assert_eq!(
            murmur3_x64_128("kremówki".as_bytes(), 0).0 as i64,
            5170069825885792609
        );
    }

    #[test]
    fn quirks_differ_from_plain_murmur_only_where_expected() {
        // High bytes in full 16-byte blocks are read unsigned by both.
        let blocks = [0xffu8; 32];
        assert_eq!(token_for(&blocks), murmur3_x64_128(&blocks, 0).0 as i64);
        // Tail bytes below 0x80 extend the same either way.
        assert_eq!(token_for(b"hello"), murmur3_x64_128(b"hello", 0).0 as i64);
        // A tail byte >= 0x80 is where Cassandra's port departs.
        for key in [&b"\x80"[..], b"abc\xff", &[0x41; 17][..]] {
            let mut k = key.to_vec();
            let plain = murmur3_x64_128(&k, 0).0 as i64;
            if k.last().is_some_and(|&b| b < 0x80) {
                assert_eq!(token_for(&k), plain);
                k.push(0x90);
            }
            assert_ne!(token_for(&k), murmur3_x64_128(&k, 0).0 as i64, "{k:?}");
        }
        assert_eq!(token_for(b""), Token::MIN);
        assert_eq!(normalize(Token::MIN), Token::MAX);
        assert_eq!(normalize(-1), -1);
    }
}
