//! The flight recorder's cost on the runtime's hot path, on a node that knows 1,000
//! members: one runtime step per datagram, as `grapevine-driver` does it.
//!
//! - `record/off/*`: `handle_packet`, drain `poll_event` and `poll_transmit`,
//!   `poll_timeout` (the `poll_cycle` of `node.rs`).
//! - `record/on/*`: the same step with the recorder: the datagram written as a record,
//!   the outputs hashed into the output digest, the `Outputs` record written; the
//!   buffer is handed to the OS every 256 datagrams (the driver: at most every
//!   100 ms, and whenever its 64 KiB fill), into segments of 8 MiB rotated at
//!   64 MiB in a temporary directory.
//!
//! Throughput is reported in datagrams per second.
//!
//! `snapshot/{take,restore}/{100,1000}`: the snapshot that opens each segment after
//! the first, for a node that knows 100 or 1,000 members (each on the ring, each with
//! a key of state); its size is printed.
//!
//! With `GRAPEVINE_BENCH_CLOCK=thread-cpu`, each batch is timed by the benchmark
//! thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`, system calls included) instead
//! of the wall clock: on a machine shared with other work
//! (a fuzzer on every core), wall time mostly measures how often the thread was
//! preempted, CPU time what the step costs.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant as Wall};

use criterion::{Criterion, Throughput, criterion_group};
use grapevine::NodeId;
use grapevine::wire::Message;
use grapevine_benches::fixtures::{Fixture, id, packet, state};
use grapevine_driver::RecordOptions;
use grapevine_driver::record::{OutputDigest, Recorder, Start};

const MEMBERS: usize = 1000;
const CHUNK: u64 = 256;

fn datagram(fresh_state: bool, k: u64) -> (SocketAddr, Vec<u8>) {
    let from = 1 + (k % MEMBERS as u64) as usize;
    let about = 1 + ((k + 1) % MEMBERS as u64) as usize;
    let msg: Message<SocketAddr> = if fresh_state {
        state(about, k / MEMBERS as u64 + 1)
    } else {
        Message::Ping { seq: k as u32 }
    };
    (id(from).addr, packet(&id(from), &[msg]))
}

fn start(f: &Fixture) -> Start {
    let id: NodeId<SocketAddr> = f.node.id().clone();
    Start {
        config: f.node.config().into(),
        addr: id.addr,
        generation: id.generation,
        rng_seed: 1,
        placement: None,
        now: f.now.as_nanos(),
        wall_micros: 0,
    }
}

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("grapevine-bench-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// What a batch is timed by.
#[derive(Clone, Copy)]
enum Clock {
    Wall,
    ThreadCpu,
}

impl Clock {
    fn from_env() -> Clock {
        match std::env::var("GRAPEVINE_BENCH_CLOCK").as_deref() {
            Ok("thread-cpu") => Clock::ThreadCpu,
            _ => Clock::Wall,
        }
    }

    /// A reading, in nanoseconds from an arbitrary origin.
    fn now(self, wall: Wall) -> u64 {
        match self {
            Clock::Wall => u64::try_from(wall.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Clock::ThreadCpu => {
                let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
                (t.tv_sec as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(t.tv_nsec as u64)
            }
        }
    }
}

fn run(
    f: &mut Fixture,
    recorder: &mut Option<Recorder>,
    fresh_state: bool,
    next: &mut u64,
    iters: u64,
) -> Duration {
    let clock = Clock::from_env();
    let origin = Wall::now();
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let batch: Vec<(SocketAddr, Vec<u8>)> =
            (0..n).map(|i| datagram(fresh_state, *next + i)).collect();
        *next += n;
        let now = f.now;
        let started = clock.now(origin);
        for (from, data) in &batch {
            match recorder {
                None => {
                    let _ = f.node.handle_packet(now, *from, black_box(data));
                    while let Some(e) = f.node.poll_event() {
                        black_box(e);
                    }
                    while let Some(t) = f.node.poll_transmit() {
                        black_box(t);
                    }
                    black_box(f.node.poll_timeout());
                }
                Some(rec) => {
                    rec.write_packet(now.as_nanos(), *from, data)
                        .expect("record");
                    let _ = f.node.handle_packet(now, *from, black_box(data));
                    let mut digest = OutputDigest::default();
                    while let Some(e) = f.node.poll_event() {
                        digest.event(&e);
                        black_box(e);
                    }
                    while let Some(t) = f.node.poll_transmit() {
                        digest.transmit(t.dest, &t.payload);
                        black_box(t);
                    }
                    let outputs = digest.finish(f.node.poll_timeout());
                    rec.write_outputs(&outputs).expect("record");
                }
            }
        }
        // The driver hands the buffer to the OS at most every 100 ms; once per 256
        // datagrams is more often than that at any rate this node reaches.
        if let Some(rec) = recorder {
            rec.flush().expect("flush");
        }
        total += Duration::from_nanos(clock.now(origin).saturating_sub(started));
        left -= n;
    }
    total
}

fn record(c: &mut Criterion) {
    let dir = dir();
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    for (name, fresh_state) in [("ping", false), ("rumour_state_fresh", true)] {
        for on in [false, true] {
            let mut f = Fixture::new(MEMBERS, false);
            let mut recorder = on.then(|| {
                let options = RecordOptions::new(dir.join(name))
                    .max_bytes(64 << 20)
                    .segment_bytes(8 << 20);
                Recorder::create(options, start(&f)).expect("recorder")
            });
            let mut next = 0u64;
            let label = format!("{}/{name}", if on { "on" } else { "off" });
            g.bench_function(label, |b| {
                b.iter_custom(|iters| run(&mut f, &mut recorder, fresh_state, &mut next, iters))
            });
        }
    }
    g.finish();
    let _ = std::fs::remove_dir_all(dir);
}

/// A node's snapshot, which opens every segment of the log after the first: its size
/// and the time to take and restore it, for a node that knows 100 and 1,000 members,
/// each on the ring (16 tokens) and with one key of state.
fn snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot");
    for members in [100, 1000] {
        let mut f = Fixture::new(members, true);
        for i in 1..=members {
            let (from, data) = (id(i).addr, packet(&id(i), &[state(i, 1)]));
            let _ = f.node.handle_packet(f.now, from, &data);
            f.drain();
        }
        let bytes = f.node.snapshot().expect("drained");
        println!("snapshot/{members}: {} bytes", bytes.len());
        g.bench_function(format!("take/{members}"), |b| {
            b.iter(|| black_box(f.node.snapshot().expect("drained")))
        });
        g.bench_function(format!("restore/{members}"), |b| {
            b.iter(|| {
                black_box(
                    grapevine_benches::fixtures::BenchNode::from_snapshot(&bytes, None)
                        .expect("restores"),
                )
            })
        });
    }
    g.finish();
}

/// Recording's cost measured in pairs: rounds of 20,000 datagrams without and with
/// the recorder, alternating, each timed by the thread's CPU clock; prints the
/// medians and the median of the per-round differences. On a machine whose cores
/// are shared (a fuzzer), neighbouring rounds see the same conditions, so their
/// difference is steadier than two separate criterion runs.
/// Run: `GRAPEVINE_RECORD_PAIRED=1 cargo bench -p grapevine-benches --bench record`.
fn paired() {
    const ROUND: u64 = 20_000;
    const ROUNDS: usize = 40;
    let dir = dir();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (name, fresh_state) in [("ping", false), ("rumour_state_fresh", true)] {
        let mut off = Fixture::new(MEMBERS, false);
        let mut on = Fixture::new(MEMBERS, false);
        let options = RecordOptions::new(dir.join(name))
            .max_bytes(64 << 20)
            .segment_bytes(8 << 20);
        let mut recorder = Some(Recorder::create(options, start(&on)).expect("recorder"));
        let mut none = None;
        let (mut next_off, mut next_on) = (0u64, 0u64);
        let (mut offs, mut ons, mut costs) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..=ROUNDS {
            let a = run(&mut off, &mut none, fresh_state, &mut next_off, ROUND);
            let b = run(&mut on, &mut recorder, fresh_state, &mut next_on, ROUND);
            if round == 0 {
                continue; // warm-up
            }
            let (a, b) = (
                a.as_nanos() as f64 / ROUND as f64,
                b.as_nanos() as f64 / ROUND as f64,
            );
            offs.push(a);
            ons.push(b);
            costs.push(b - a);
        }
        println!(
            "paired/{name}: off {:.0} ns, on {:.0} ns, recording costs {:.0} ns per datagram \
             (medians of {ROUNDS} rounds of {ROUND})",
            median(&mut offs),
            median(&mut ons),
            median(&mut costs)
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, record, snapshot);

fn main() {
    if std::env::var_os("GRAPEVINE_RECORD_PAIRED").is_some() {
        paired();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
