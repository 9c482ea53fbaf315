//! The joint token allocation of a join wave, which every joiner of the wave
//! computes for itself (up to its own batch) from the same picture.
//!
//! - `allocate_wave/960_onto_64`: 960 joiners onto a 64-node ring (grown one join at
//!   a time, as a cluster's ring is), 16 tokens each, rf 3: the second wave of a
//!   1,024-node mass join, the case that dominates `simulate --nodes 1024`.
//! - `allocate_wave/200_onto_800`: 200 joiners onto 800 nodes of random tokens.
//! - `allocate_one/onto_800`: a single joiner onto the same 800 nodes.
//!
//! Each iteration is a whole allocation (`allocate_tokens_many`), from a freshly
//! seeded RNG, so every iteration does the same work.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use grapevine::placement::{Ring, allocate_tokens, allocate_tokens_many, random_tokens};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

const TOKENS: usize = 16;
const RF: usize = 3;

/// `n` nodes joining one at a time, each allocating against those before it.
fn grown(n: u32) -> Ring<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(64);
    let mut claims: Vec<(u32, Vec<i64>)> = Vec::new();
    for id in 0..n {
        let ring = Ring::new(claims.iter().cloned());
        claims.push((id, allocate_tokens(&ring, TOKENS, &mut rng)));
    }
    Ring::new(claims)
}

/// `n` nodes of random tokens.
fn random(n: u32) -> Ring<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(800);
    Ring::new((0..n).map(|id| (id, random_tokens(TOKENS, &mut rng))))
}

fn allocate(c: &mut Criterion) {
    let mut g = c.benchmark_group("allocate_wave");
    g.sample_size(10);
    for (name, ring, joiners) in [
        ("960_onto_64", grown(64), 960),
        ("200_onto_800", random(800), 200),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut rng = ChaCha8Rng::seed_from_u64(1);
                allocate_tokens_many(black_box(&ring), joiners, TOKENS, RF, &mut rng)
            })
        });
    }
    g.finish();

    let ring = random(800);
    let mut g = c.benchmark_group("allocate_one");
    g.bench_function("onto_800", |b| {
        b.iter(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            allocate_tokens(black_box(&ring), TOKENS, &mut rng)
        })
    });
    g.finish();
}

criterion_group!(benches, allocate);
criterion_main!(benches);
