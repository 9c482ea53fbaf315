//! Resource bounds under a flood (issue 8): packets that claim a million distinct
//! nodes, state deltas for random owners and keys, ping-reqs, forwarded requests,
//! suspicions and churn, all from random addresses, cannot grow a node beyond its
//! configured bounds (`max_members`, `max_rumours`, `max_requests_in_flight`,
//! `max_state_bytes`).
//!
//! Memory held is measured by a counting global allocator (live heap bytes of the
//! whole test binary; the tests take a lock so that only one allocates at a time),
//! sampled after every datagram once the flood's own temporaries are dropped.
//! The figures are printed: `cargo test -p grapevine --test bounds -- --nocapture`.
//!
//! Three tests are ignored until the core bounds what they flood (see their reasons);
//! run them with `-- --include-ignored`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use cap::Cap;
use grapevine::hash::cluster_id;
use grapevine::wire::{
    BodyBuilder, ForwardedRequest, HEADER_LEN, Header, MemberClaim, Message, StateDelta,
};
use grapevine::{Config, Duration, Event, Instant, Node, NodeId, Status};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// The allocator under these tests: mimalloc, counted. mimalloc gives freed pages back
/// to the OS soon after they empty, so resident memory can shrink after a flood
/// (glibc's malloc keeps freed chunks in the middle of its heap until asked to trim).
type System = mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: Cap<System> = Cap::new(mimalloc::MiMalloc, usize::MAX);

/// A point from which live heap bytes are counted.
struct Region {
    start: usize,
}

impl Region {
    fn new(alloc: &Cap<System>) -> Region {
        Region {
            start: alloc.allocated(),
        }
    }
}

/// One measuring test at a time: the allocator counts the whole process.
static SERIAL: Mutex<()> = Mutex::new(());

type Addr = SocketAddr;
type TestNode = Node<Addr, ChaCha8Rng>;

/// Live heap bytes of the process since `region` was opened.
fn held(region: &Region) -> isize {
    GLOBAL.allocated() as isize - region.start as isize
}

fn random_addr(rng: &mut ChaCha8Rng) -> Addr {
    let ip = Ipv4Addr::from(0x0a00_0000 | (rng.next_u32() & 0x00ff_ffff));
    SocketAddr::new(ip.into(), 1024 + (rng.next_u32() % 60_000) as u16)
}

/// The `i`-th of a million distinct addresses.
fn distinct_addr(i: u32) -> Addr {
    SocketAddr::new(Ipv4Addr::from(0x0b00_0000 | i).into(), 7946)
}

fn config() -> Config {
    let mut c = Config::lan("bounds");
    c.max_members = 1000;
    // Let unconfirmed members fill the whole table: these tests measure memory with
    // the table full (the default share, 25%, holds forged identities to a quarter).
    c.unconfirmed_share = 100;
    c.max_rumours = 512;
    c.max_requests_in_flight = 64;
    c.max_value_size = 256;
    c.max_state_bytes = 2048;
    c
}

/// What one member may legitimately cost: its entry, roster and tree slots, and its
/// state at five times its byte budget (keys and values of a few dozen bytes cost
/// about four times their size once map nodes and allocations are counted).
fn per_member_bound(c: &Config) -> isize {
    (5 * c.max_state_bytes + 2048) as isize
}

/// What the node may legitimately hold at these bounds: every member at
/// [`per_member_bound`], every rumour and every request at datagram size, and 1 MiB of
/// fixed structures.
fn memory_bound(c: &Config) -> isize {
    let per_member = per_member_bound(c) as usize;
    let rumours = c.max_rumours * c.max_datagram_size;
    let requests = c.max_requests_in_flight * 2 * c.max_datagram_size;
    (c.max_members * per_member + rumours + requests + (1 << 20)) as isize
}

struct Flood<'a> {
    node: TestNode,
    rng: ChaCha8Rng,
    now: Instant,
    cid: u64,
    budget: usize,
    region: &'a Region,
    baseline: isize,
    peak: isize,
    packets: u64,
    messages: u64,
    requests_seen: u64,
    /// The last ping the node sent to each address (pinged members can be confirmed).
    pings: std::collections::HashMap<Addr, u32>,
}

impl Flood<'_> {
    /// Drains the node (dropping what it sends) and fires its timers when due.
    fn settle(&mut self) {
        loop {
            while let Some(t) = self.node.poll_transmit() {
                if let Ok((_, msgs)) =
                    grapevine::wire::decode_body::<Addr>(&t.payload[HEADER_LEN..])
                {
                    for m in msgs {
                        // Only members the tests confirm later; bounded, since the test
                        // harness's memory is counted too.
                        if let Message::Ping { seq } = m {
                            if self.pings.len() < 2048 || self.pings.contains_key(&t.dest) {
                                self.pings.insert(t.dest, seq);
                            }
                        }
                    }
                }
            }
            while let Some(e) = self.node.poll_event() {
                if matches!(e, Event::Request { .. }) {
                    self.requests_seen += 1;
                }
            }
            match self.node.poll_timeout() {
                Some(t) if t <= self.now => self.node.handle_timeout(self.now),
                _ => break,
            }
        }
        let h = held(self.region) - self.baseline;
        self.peak = self.peak.max(h);
    }

    /// Packs `messages` into datagrams from random senders (fresh addresses and
    /// generations) and hands them to the node, `dt` apart.
    fn send(&mut self, messages: impl IntoIterator<Item = Message<Addr>>, dt: Duration) {
        self.send_from(None, messages, dt);
    }

    /// [`send`](Self::send), every datagram from `from` (a random new identity per
    /// datagram when `None`).
    fn send_from(
        &mut self,
        from: Option<&NodeId<Addr>>,
        messages: impl IntoIterator<Item = Message<Addr>>,
        dt: Duration,
    ) {
        let mut pending: Option<Message<Addr>> = None;
        let mut messages = messages.into_iter();
        loop {
            let sender = match from {
                Some(id) => id.clone(),
                None => NodeId::new(random_addr(&mut self.rng), self.rng.next_u64() >> 16),
            };
            let mut body = BodyBuilder::new(&sender, self.budget);
            let mut count = 0;
            while let Some(m) = pending.take().or_else(|| messages.next()) {
                if !body.push(&m) {
                    pending = Some(m);
                    break;
                }
                count += 1;
            }
            if count == 0 {
                assert!(pending.is_none(), "a flood message larger than a datagram");
                break;
            }
            let mut data = Vec::with_capacity(HEADER_LEN + self.budget);
            Header {
                flags: 0,
                cluster_id: self.cid,
            }
            .write(&mut data);
            data.extend_from_slice(&body.finish());
            self.now = self.now + dt;
            let result = self.node.handle_packet(self.now, sender.addr, &data);
            assert_eq!(result, Ok(()), "a well-formed flood datagram was refused");
            drop(data);
            self.packets += 1;
            self.messages += count;
            self.settle();
        }
    }

    fn report(&self, phase: &str) {
        let members = self.node.members().count();
        let now = held(self.region) - self.baseline;
        println!(
            "{phase:<28} packets {:>7}  messages {:>8}  members {members:>5}  held {:>8.1} KiB  peak {:>8.1} KiB",
            self.packets,
            self.messages,
            now as f64 / 1024.0,
            self.peak as f64 / 1024.0,
        );
    }

    /// Answers the node's last ping to `member` as the member would: the node then
    /// holds it confirmed (and accepts its state).
    fn confirm(&mut self, member: &NodeId<Addr>) {
        let seq = *self
            .pings
            .get(&member.addr)
            .expect("the node pinged the member");
        self.send_from(Some(member), [Message::Ack { seq }], STEP);
        self.settle();
    }

    fn members(&self) -> Vec<NodeId<Addr>> {
        self.node
            .members()
            .skip(1)
            .filter(|m| m.state.is_live())
            .map(|m| m.id)
            .collect()
    }

    fn check_counts(&self, c: &Config) {
        let members: Vec<_> = self.node.members().collect();
        assert!(
            members.len() <= c.max_members + 1,
            "{} members held",
            members.len()
        );
        for m in &members {
            let bytes: usize = self
                .node
                .keys(&m.id.addr)
                .map(|(k, _, v)| k.len() + v.len())
                .sum();
            assert!(
                bytes <= c.max_state_bytes,
                "{bytes} bytes of state held for {:?}",
                m.id
            );
        }
    }
}

fn flood<'a>(region: &'a Region, c: &Config, seed: u64) -> Flood<'a> {
    let me = NodeId::new(SocketAddr::from(([192, 0, 2, 1], 7946)), 1);
    let mut node = Node::new(c.clone(), me, ChaCha8Rng::seed_from_u64(seed)).unwrap();
    node.join(Instant::ZERO, []);
    let mut f = Flood {
        node,
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0x600d_f100d),
        now: Instant::ZERO,
        cid: cluster_id(&c.cluster_name),
        budget: c.max_datagram_size - HEADER_LEN,
        region,
        baseline: 0,
        peak: 0,
        packets: 0,
        messages: 0,
        requests_seen: 0,
        pings: std::collections::HashMap::new(),
    };
    f.settle();
    f.baseline = held(region);
    f.peak = 0;
    f
}

fn alive(i: u32) -> Message<Addr> {
    Message::Member(MemberClaim {
        id: NodeId::new(distinct_addr(i), 1),
        incarnation: 0,
        status: Status::Alive,
    })
}

const STEP: Duration = Duration::from_millis(1);

/// A node whose member table is full (max_members distinct members).
fn full_node<'a>(region: &'a Region, c: &Config, seed: u64) -> Flood<'a> {
    let mut f = flood(region, c, seed);
    f.send((0..c.max_members as u32).map(alive), STEP);
    assert_eq!(f.node.members().count(), c.max_members + 1);
    f.report("table filled");
    f
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_flood_of_claims_deltas_pingreqs_requests_and_suspicions_stays_bounded() {
    let _serial = lock();
    let c = config();
    let bound = memory_bound(&c);
    let region = Region::new(&GLOBAL);
    let mut f = flood(&region, &c, 8);

    // 1. A million distinct nodes claim to be alive, ~120 claims per datagram, each
    // datagram from a random address.
    f.send((0..2_000u32).map(alive), STEP);
    f.report("2k alive claims");
    f.send((2_000..1_000_000u32).map(alive), STEP);
    f.report("1M alive claims");
    f.check_counts(&c);
    assert!(
        f.node.stats().members_refused + f.node.stats().members_evicted > 0,
        "claims beyond max_members are refused or evict an unconfirmed member, and are counted"
    );
    assert_eq!(
        f.node.members().count(),
        c.max_members + 1,
        "the member table fills up to max_members"
    );

    // 2. State deltas for random owners (admitted or not) and random keys.
    let pool = f.members();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let deltas = (0..200_000u64).map(move |v| {
        let owner = if rng.next_u32() % 2 == 0 {
            pool[(rng.next_u32() as usize) % pool.len()].clone()
        } else {
            NodeId::new(random_addr(&mut rng), 1)
        };
        let value = (rng.next_u32() % 4 != 0).then(|| vec![0xab; (rng.next_u32() % 64) as usize]);
        Message::State(StateDelta {
            owner,
            key: format!("k{}", rng.next_u32()),
            version: v + 1,
            value,
        })
    });
    f.send(deltas, STEP);
    f.report("200k random deltas");
    f.check_counts(&c);

    // 3. Ping-reqs for random targets: relays are capped, each costs one ping.
    f.send(
        (0..100_000u32).map(|i| Message::PingReq {
            seq: i,
            target: NodeId::new(distinct_addr(i), 1),
        }),
        Duration::ZERO,
    );
    f.report("100k ping-reqs");

    // 4. Forwarded requests for random keys, all at one instant: at most
    // max_requests_in_flight are delivered.
    f.requests_seen = 0;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let requests = (0..100_000u64).map(move |id| {
        Message::Request(ForwardedRequest {
            origin: NodeId::new(random_addr(&mut rng), 1),
            id,
            hops: 3,
            key: rng.next_u64().to_le_bytes().to_vec(),
            payload: vec![7; 32],
        })
    });
    f.send(requests, Duration::ZERO);
    f.report("100k forwarded requests");
    assert!(
        f.requests_seen <= c.max_requests_in_flight as u64,
        "{} requests delivered at once, max_requests_in_flight is {}",
        f.requests_seen,
        c.max_requests_in_flight
    );

    // 5. Suspicions of every member by random accusers.
    let owners = f.members();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let suspicions = (0..100_000usize).map(move |i| Message::Suspect {
        id: owners[i % owners.len()].clone(),
        incarnation: 0,
        accuser: random_addr(&mut rng),
    });
    f.send(suspicions, STEP);
    f.report("100k suspicions");
    f.check_counts(&c);

    // Let every timer run out: suspicions, relays, requests, gossip.
    for _ in 0..120 {
        f.now = f.now + Duration::from_secs(1);
        f.settle();
    }
    f.report("after 2 min idle");
    f.check_counts(&c);
    println!(
        "memory held: {:.1} KiB now, {:.1} KiB peak (bound {:.1} KiB) after {} datagrams / {} messages",
        (held(&region) - f.baseline) as f64 / 1024.0,
        f.peak as f64 / 1024.0,
        bound as f64 / 1024.0,
        f.packets,
        f.messages
    );
    assert!(
        f.peak <= bound,
        "peak memory held {} B exceeds the bound {} B",
        f.peak,
        bound
    );
}

#[test]
fn tiny_keys_cannot_grow_one_owner_beyond_its_state_budget() {
    let _serial = lock();
    let c = config();
    let region = Region::new(&GLOBAL);
    let mut f = full_node(&region, &c, 9);
    let owner = f.members()[0].clone();
    f.confirm(&owner);
    // A busy node's rumour queue is full: fill it with another owner's writes first, so
    // that the figure below is the owner's state and not the queue's first 41 entries
    // (the queue is bounded by max_rumours on its own).
    for other in f.members()[1..=c.max_rumours / 20].to_vec() {
        f.confirm(&other);
        f.send_from(
            Some(&other),
            (1..=24u64).map(|v| {
                Message::State(StateDelta {
                    owner: other.clone(),
                    key: format!("w{v}"),
                    version: v,
                    value: Some(Vec::new()),
                })
            }),
            STEP,
        );
    }
    f.settle();
    let before = held(&region);
    // Every one- and two-character key, with an empty value: each charges 1-2 bytes.
    let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    let keys: Vec<String> = alphabet
        .iter()
        .map(|a| a.to_string())
        .chain(
            alphabet
                .iter()
                .flat_map(|a| alphabet.iter().map(move |b| format!("{a}{b}"))),
        )
        .collect();
    let n = keys.len() as u64;
    // From the owner itself, so that the figure is the owner's state alone (datagrams
    // from new identities would also churn the member table, which other tests bound).
    f.send_from(
        Some(&owner),
        keys.into_iter().zip(1..=n).map(|(key, version)| {
            Message::State(StateDelta {
                owner: owner.clone(),
                key,
                version,
                value: Some(Vec::new()),
            })
        }),
        STEP,
    );
    f.check_counts(&c);
    let held_keys = f.node.keys(&owner.addr).count();
    assert!(held_keys > 0, "the owner's state was accepted at all");
    let grew = held(&region) - before;
    f.report("tiny keys for one owner");
    println!(
        "one owner: {held_keys} keys, {grew} B held for a {} B budget ({:.0}x)",
        c.max_state_bytes,
        grew as f64 / c.max_state_bytes as f64
    );
    assert!(
        grew <= per_member_bound(&c),
        "one owner's state holds {grew} B, bound {} B",
        per_member_bound(&c)
    );
}

#[test]
fn overwriting_and_deleting_hot_keys_stays_bounded() {
    let _serial = lock();
    let c = config();
    let region = Region::new(&GLOBAL);
    let mut f = full_node(&region, &c, 10);
    let targets: Vec<NodeId<Addr>> = f.members().into_iter().take(10).collect();
    let before = held(&region);
    f.send(
        (0..300_000u64).map(move |i| {
            let owner = targets[(i % 10) as usize].clone();
            let value = (i % 2 == 0).then(|| vec![1; 8]);
            Message::State(StateDelta {
                owner,
                key: format!("hot{}", i % 3),
                version: 1 + i,
                value,
            })
        }),
        STEP,
    );
    f.check_counts(&c);
    f.report("300k overwrites/deletes");
    let grew = held(&region) - before;
    // Ten owners, three keys each: nothing here may cost more than ten states.
    let bound = 10 * per_member_bound(&c);
    println!("10 owners x 3 hot keys, 150k deletes: {grew} B held (bound {bound} B)");
    assert!(
        grew <= bound,
        "hot keys grew the node by {grew} B, bound {bound} B"
    );
}

#[test]
fn members_dying_and_coming_back_stays_bounded() {
    let _serial = lock();
    let c = config();
    let region = Region::new(&GLOBAL);
    let mut f = full_node(&region, &c, 11);
    let hot: Vec<Addr> = f.members().into_iter().take(100).map(|m| m.addr).collect();
    let before = held(&region);
    f.send(
        (0..200_000u64).flat_map(move |i| {
            let id = NodeId::new(hot[(i % 100) as usize], 10 + i);
            [
                Message::Member(MemberClaim {
                    id: id.clone(),
                    incarnation: 0,
                    status: Status::Alive,
                }),
                Message::Member(MemberClaim {
                    id,
                    incarnation: 0,
                    status: Status::Dead,
                }),
            ]
        }),
        STEP,
    );
    f.check_counts(&c);
    f.report("200k deaths and rebirths");
    let grew = held(&region) - before;
    // The same 100 members: at most their entries and tombstones.
    let bound = 100 * per_member_bound(&c);
    println!("100 members x 2,000 lives: {grew} B held (bound {bound} B)");
    assert!(
        grew <= bound,
        "churn grew the node by {grew} B, bound {bound} B"
    );
}

/// State for forged owners is refused outright (they never answer a ping), and the
/// state of real, confirmed owners together stays within `max_total_state_bytes`,
/// counted in real heap bytes.
#[test]
fn state_for_many_owners_stays_within_the_node_wide_budget() {
    let _serial = lock();
    let mut c = config();
    c.max_state_bytes = 2048;
    c.max_total_state_bytes = 64 * 1024;
    let region = Region::new(&GLOBAL);
    let mut f = full_node(&region, &c, 11);
    let owners: Vec<NodeId<Addr>> = f.members()[..200].to_vec();
    // A flood of writes for owners that never answered a ping: nothing is kept.
    let forged = f.members()[200..400].to_vec();
    for o in &forged {
        f.send_from(
            Some(o),
            (1..=20u64).map(|v| {
                Message::State(StateDelta {
                    owner: o.clone(),
                    key: format!("k{v}"),
                    version: v,
                    value: Some(vec![7; 64]),
                })
            }),
            STEP,
        );
    }
    assert_eq!(
        forged
            .iter()
            .map(|o| f.node.keys(&o.addr).count())
            .sum::<usize>(),
        0,
        "state of unconfirmed owners is refused"
    );
    for o in &owners {
        f.confirm(o);
    }
    let before = held(&region);
    let held_before = f.node.state_bytes_held();
    for o in &owners {
        f.send_from(
            Some(o),
            (1..=30u64).map(|v| {
                Message::State(StateDelta {
                    owner: o.clone(),
                    key: format!("k{v}"),
                    version: v,
                    value: Some(vec![7; 64]),
                })
            }),
            STEP,
        );
    }
    let charged = f.node.state_bytes_held();
    let grew = held(&region) - before;
    let refused = f.node.stats().state_refused;
    f.report("state for 200 owners");
    println!(
        "200 confirmed owners × 30 keys: {charged} B charged (budget {} B), heap grew {grew} B \
         ({:.2}x the budget), {refused} writes refused",
        c.max_total_state_bytes,
        grew as f64 / c.max_total_state_bytes as f64
    );
    assert!(charged <= c.max_total_state_bytes, "{charged} B charged");
    assert!(refused > 0, "the budget was reached");
    assert!(charged > held_before, "state was accepted");
    // Heap held: the state itself plus the rumours it queued (bounded by max_rumours).
    let rumours = c.max_rumours * 256;
    assert!(
        grew as f64 <= 1.5 * c.max_total_state_bytes as f64 + rumours as f64,
        "heap grew {grew} B for a {} B budget",
        c.max_total_state_bytes
    );
}

/// Resident memory of this process in bytes (Linux: `/proc/self/statm`, in pages).
#[cfg(target_os = "linux")]
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages in /proc/self/statm");
    pages * 4096
}

/// Set for the child process that runs [`state_flood_rss_child`] alone.
const RSS_CHILD: &str = "GRAPEVINE_BOUNDS_RSS_CHILD";

/// The state flood measured in resident memory, not only in heap bytes: the child
/// test runs in a fresh process (so no other test's freed memory hides or adds to
/// the figure), and this test checks what it reports.
#[cfg(target_os = "linux")]
#[test]
fn a_state_flood_keeps_resident_memory_within_one_and_a_half_budgets() {
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "state_flood_rss_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RSS_CHILD, "1")
        // Virtual time runs thousands of times faster than the wall clock here, so
        // mimalloc purges freed pages at once rather than after its usual 10 ms of
        // wall time, and commits arena memory as it is used (a stable baseline).
        .env("MIMALLOC_PURGE_DELAY", "0")
        .env("MIMALLOC_PURGE_DECOMMITS", "1")
        .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the child test failed");
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run: {stdout}"
    );
}

/// One node with a full table of 1,000 members: 300 confirmed owners each write 64
/// values of 1,000 B (19.2 MB offered against a 16 MiB budget) while the other 700,
/// never confirmed, send 89,600 writes. RSS may grow at most 1.5× the budget. Then
/// the owners fall silent; once they are dead and past `dead_retention`, RSS must have
/// given back at least half of what the flood took.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in its own process by a_state_flood_keeps_resident_memory_within_one_and_a_half_budgets"]
fn state_flood_rss_child() {
    if std::env::var_os(RSS_CHILD).is_none() {
        return;
    }
    let mut c = config();
    c.max_value_size = 1024;
    c.max_state_bytes = 64 * 1024;
    c.max_total_state_bytes = 16 << 20;
    c.dead_retention = Duration::from_secs(60);
    let region = Region::new(&GLOBAL);
    let mut f = full_node(&region, &c, 12);
    let members = f.members();
    let (owners, fakes) = members.split_at(300);
    for o in owners {
        f.confirm(o);
    }
    let rss_before = rss();
    let write = |o: &NodeId<Addr>, v: u64, len: usize| {
        Message::State(StateDelta {
            owner: o.clone(),
            key: format!("key-{v:04}"),
            version: v,
            value: Some(vec![(v % 251) as u8; len]),
        })
    };
    let mut rss_peak = rss_before;
    for round in 1..=64u64 {
        for o in owners {
            f.send_from(Some(o), [write(o, round, 1000)], STEP);
        }
        for o in fakes {
            f.send_from(Some(o), (0..2).map(|k| write(o, 2 * round + k, 200)), STEP);
        }
        rss_peak = rss_peak.max(rss());
    }
    let charged = f.node.state_bytes_held();
    let refused = f.node.stats().state_refused;
    let grew = rss_peak.saturating_sub(rss_before);
    let bound = c.max_total_state_bytes;
    println!(
        "seed 12: state flood: {charged} B charged (budget {bound} B), {refused} writes refused; \
         RSS {:.1} MiB before, peak {:.1} MiB: grew {:.1} MiB = {:.2}x the budget",
        rss_before as f64 / 1048576.0,
        rss_peak as f64 / 1048576.0,
        grew as f64 / 1048576.0,
        grew as f64 / bound as f64
    );
    assert!(
        charged <= bound,
        "{charged} B charged over a {bound} B budget"
    );
    assert!(refused > 0, "the flood reached the budget");
    assert!(
        charged > bound / 2,
        "the confirmed owners' state was accepted ({charged} B)"
    );
    assert!(
        grew as f64 <= 1.5 * bound as f64,
        "RSS grew {grew} B for a {bound} B budget"
    );

    // The flood stops; nobody answers any more. Every member is probed, suspected,
    // declared dead, and forgotten after dead_retention, its state with it.
    let mut quiet = 0u64;
    while f.node.state_bytes_held() > charged / 100 && quiet < 4 * 3600 * 10 {
        f.now = f.now + Duration::from_millis(100);
        f.settle();
        quiet += 1;
    }
    f.report("after the silence");
    let rss_after = rss();
    let gave_back = rss_peak.saturating_sub(rss_after);
    println!(
        "seed 12: after {:.0} s of silence: {} B charged, {} members; RSS {:.1} MiB: gave back {:.1} MiB of the {:.1} MiB the flood took",
        quiet as f64 / 10.0,
        f.node.state_bytes_held(),
        f.node.members().count(),
        rss_after as f64 / 1048576.0,
        gave_back as f64 / 1048576.0,
        grew as f64 / 1048576.0
    );
    assert!(
        f.node.state_bytes_held() <= charged / 100,
        "the silent owners' state was not forgotten"
    );
    assert!(
        gave_back * 2 >= grew,
        "RSS gave back {gave_back} B of the {grew} B the flood took"
    );
}

/// Forged stubs and chunks of large values: only confirmed, live owners' stubs start
/// a transfer, at most a few transfers run at once (so the bytes held for partial
/// values stay within a few `max_value_size`), chunks that no transfer expects change
/// nothing, and partial values expire when their source stops answering.
#[test]
fn forged_large_value_stubs_and_chunks_stay_bounded_and_expire() {
    use grapevine::wire::{StateStub, ValueChunk};
    let _serial = lock();
    let mut c = config();
    c.max_value_size = 64 * 1024;
    c.max_state_bytes = 256 * 1024;
    c.max_total_state_bytes = 16 << 20;
    let region = Region::new(&GLOBAL);
    let mut f = full_node(&region, &c, 13);
    let members = f.members();
    let (owners, strangers) = members.split_at(100);
    let large = |o: &NodeId<Addr>, k: u64, len: u32| {
        Message::StateStub(StateStub {
            owner: o.clone(),
            key: format!("blob{k}"),
            version: k,
            len,
            hash: k,
        })
    };
    // Stubs of owners that never answered a ping: nothing starts.
    for o in &strangers[..200] {
        f.send_from(Some(o), [large(o, 1, 60_000)], STEP);
    }
    assert_eq!(
        f.node.value_transfers(),
        (0, 0),
        "unconfirmed owners' stubs"
    );
    for o in owners {
        f.confirm(o);
    }
    let before = held(&region);
    // 100 confirmed owners announce 64 KiB values (and lengths beyond the limit).
    for (i, o) in owners.iter().enumerate() {
        f.send_from(Some(o), [large(o, 1, 65_536), large(o, 2, u32::MAX)], STEP);
        let (count, bytes) = f.node.value_transfers();
        assert!(count <= 4, "{count} transfers after {i} owners");
        assert!(bytes <= 4 * c.max_value_size, "{bytes} B held");
    }
    let refused = f.node.stats().transfers_refused;
    assert!(
        refused >= 90,
        "{refused} stubs refused while transfers were full"
    );
    // Chunks nobody asked for, wrong lengths, wrong versions, indices out of range.
    for (i, o) in owners.iter().enumerate() {
        let i = i as u32;
        f.send_from(
            Some(o),
            (0..4u32).map(|k| {
                Message::ValueChunk(ValueChunk {
                    owner: o.clone(),
                    key: "blob1".into(),
                    version: u64::from(k % 2) + 1,
                    index: i * 7 + k * 1_000_000,
                    data: vec![k as u8; 1 + (i as usize * 13) % 1200],
                })
            }),
            STEP,
        );
    }
    let (count, bytes) = f.node.value_transfers();
    assert!(count <= 4 && bytes <= 4 * c.max_value_size);
    assert_eq!(f.node.stats().transfers_completed, 0);
    let grew = held(&region) - before;
    println!(
        "seed 13: 100 owners × 2 large stubs, 400 forged chunks: {count} transfers holding {bytes} B, \
         {refused} stubs refused; heap grew {grew} B"
    );
    // The sources never answer: within a few seconds every partial value is dropped.
    for _ in 0..100 {
        f.now = f.now + Duration::from_millis(100);
        f.settle();
    }
    assert_eq!(f.node.value_transfers(), (0, 0), "partial values expire");
    assert!(f.node.stats().transfers_expired >= 1);
    assert!(
        owners
            .iter()
            .all(|o| f.node.keys(&o.addr).all(|(k, _, _)| !k.starts_with("blob"))),
        "no partial value became visible"
    );
}
