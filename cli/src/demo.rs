//! `grapevine demo`: a local cluster in one process, end to end.
//!
//! 1. start `--nodes` nodes on 127.0.0.1 (ephemeral ports), all joining the first;
//! 2. show the members converging, and the time it took;
//! 3. send client requests for random keys to random nodes and show who served them;
//! 4. stop (crash) one node, send requests for keys it owned through nodes that must
//!    forward them, and show them failing over to the next replica;
//! 5. show the stopped node being detected (suspect, then dead), and the time it took;
//! 6. show that the crash moved nothing: the ring digest, its tokens and the keys'
//!    replicas are unchanged (the dead node stays a replica, shown down), and the
//!    same requests are served by a live replica;
//! 7. `removenode` the dead node: its ranges move (its tokens leave the ring, the
//!    digest changes, its keys get new owners), and the requests go to them;
//! 8. print a summary and exit 0 (or 1 if a step did not complete in time).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use clap::Args;
use grapevine_driver::{Clock, Event, Options, RequestId, Status};

use crate::app::App;
use crate::node::parse_duration;
use crate::output::outln;
use crate::runtime::{self, Node};
use crate::{CliResult, Profile, RuntimeKind, cli_error};

/// Arguments of `grapevine demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many nodes to start (3 to 64).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(3..=64))]
    nodes: u16,
    /// How many client requests to send before stopping a node.
    #[arg(long, default_value_t = 8)]
    requests: usize,
    /// The runtime that drives the nodes.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Std)]
    runtime: RuntimeKind,
    /// Protocol timing preset (`lan` shows the default config's timings).
    #[arg(long, value_enum, default_value_t = Profile::Fast)]
    profile: Profile,
    /// Seed for picking random nodes and keys (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// The most each step may take before the demo gives up.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    step_timeout: Duration,
}

/// A small xorshift generator: the demo's choices need no quality, only a printed seed.
struct Rand(u64);

impl Rand {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

enum Outcome {
    Answered { from: SocketAddr, after: Duration },
    Failed { reason: String, after: Duration },
}

struct Demo {
    nodes: Vec<Option<Node>>,
    apps: Vec<App>,
    events: Receiver<(usize, Event, grapevine::Instant)>,
    sent_at: HashMap<(usize, RequestId), grapevine::Instant>,
    outcomes: HashMap<(usize, RequestId), Outcome>,
    /// (node index, member address) -> when the node first suspected / declared dead.
    suspected: HashMap<(usize, SocketAddr), grapevine::Instant>,
    died: HashMap<(usize, SocketAddr), grapevine::Instant>,
    clock: Clock,
    t0: grapevine::Instant,
    step_timeout: Duration,
}

impl Demo {
    fn stamp(&self) -> String {
        format!("[{:>7.3}s]", (self.clock.now() - self.t0).as_secs_f64())
    }

    fn name(&self, addr: SocketAddr) -> String {
        match self
            .nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.local_addr() == addr))
        {
            Some(i) => format!("n{} ({addr})", i + 1),
            None => addr.to_string(),
        }
    }

    /// Takes in the events the nodes reported, waiting at most `wait` for the first.
    fn pump(&mut self, wait: Duration) {
        let mut next = self.events.recv_timeout(wait).ok();
        while let Some((i, event, at)) = next {
            match event {
                Event::Response { id, from, .. } => {
                    let after = at - self.sent_at.get(&(i, id)).copied().unwrap_or(at);
                    self.outcomes.insert(
                        (i, id),
                        Outcome::Answered {
                            from: from.addr,
                            after,
                        },
                    );
                }
                Event::RequestFailed { id, reason } => {
                    let after = at - self.sent_at.get(&(i, id)).copied().unwrap_or(at);
                    let reason = reason.to_string();
                    self.outcomes
                        .insert((i, id), Outcome::Failed { reason, after });
                }
                Event::MemberSuspect(id) => {
                    self.suspected.entry((i, id.addr)).or_insert(at);
                }
                Event::MemberDied(id) => {
                    self.died.entry((i, id.addr)).or_insert(at);
                }
                _ => {}
            }
            next = self.events.try_recv().ok();
        }
    }

    /// Polls `done` (pumping events in between) until it holds or the step times out.
    fn wait_for(&mut self, mut done: impl FnMut(&mut Self) -> CliResult<bool>) -> CliResult<bool> {
        let deadline = self.clock.now() + self.step_timeout;
        loop {
            if done(self)? {
                return Ok(true);
            }
            if self.clock.now() >= deadline {
                return Ok(false);
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// Sends a request for `key` through node `via`.
    fn send(&mut self, via: usize, key: &str) -> CliResult<RequestId> {
        let node = self.nodes[via]
            .as_ref()
            .ok_or_else(|| cli_error!("node {via} is stopped"))?;
        let sent = self.clock.now();
        let id = node.request(key.as_bytes(), b"hello".to_vec()).wait()?;
        self.sent_at.insert((via, id), sent);
        Ok(id)
    }

    /// Waits for the outcome of request `id` sent through `via`.
    fn outcome(&mut self, via: usize, id: RequestId) -> CliResult<Option<Outcome>> {
        self.wait_for(|d| Ok(d.outcomes.contains_key(&(via, id))))?;
        Ok(self.outcomes.remove(&(via, id)))
    }

    /// Sends each probe key through its node and prints who served it; returns how
    /// many were answered.
    fn serve_probes(&mut self, probes: &[(String, usize)], sent: &mut usize) -> CliResult<usize> {
        let mut answered = 0;
        for (key, via) in probes {
            let id = self.send(*via, key)?;
            *sent += 1;
            let via_addr = self.nodes[*via].as_ref().map(Node::local_addr);
            let via_name = via_addr.map_or_else(String::new, |a| self.name(a));
            match self.outcome(*via, id)? {
                Some(Outcome::Answered { from, after }) => {
                    answered += 1;
                    outln!(
                        "  {key:<9} via {via_name:<24} -> served by {} in {:.1} ms",
                        self.name(from),
                        after.as_secs_f64() * 1000.0
                    );
                }
                Some(Outcome::Failed { reason, after }) => {
                    outln!(
                        "  {key:<9} via {via_name:<24} -> FAILED ({reason}) after {:.1} ms",
                        after.as_secs_f64() * 1000.0
                    );
                }
                None => outln!("  {key:<9} via {via_name:<24} -> no outcome in time"),
            }
        }
        Ok(answered)
    }

    fn alive_counts(&self, among: &[usize]) -> CliResult<Vec<usize>> {
        among
            .iter()
            .map(|&i| {
                let node = self.nodes[i]
                    .as_ref()
                    .ok_or_else(|| cli_error!("node {i} is stopped"))?;
                Ok(node
                    .members()
                    .wait()?
                    .iter()
                    .filter(|m| m.state == Status::Alive)
                    .count())
            })
            .collect()
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> CliResult<ExitCode> {
    let clock = Clock::new();
    let t0 = clock.now();
    let n = usize::from(args.nodes);
    let seed = args.seed.unwrap_or_else(Clock::generation);
    let mut rand = Rand(seed | 1);
    // A cluster name of its own per run: a port one demo freed and another process
    // took (two demos at once, a stray node) must not merge two clusters into one.
    let config = args
        .profile
        .config(&format!("demo-{seed:x}-{}", std::process::id()));
    outln!(
        "starting {n} nodes on 127.0.0.1 ({} runtime, {} profile: probe every {:?}, gossip every {:?}, request timeout {:?}; seed {seed})",
        args.runtime,
        args.profile,
        config.probe_interval,
        config.gossip_interval,
        config.request_timeout
    );

    let (events_tx, events) = mpsc::channel();
    let mut demo = Demo {
        nodes: Vec::with_capacity(n),
        apps: Vec::with_capacity(n),
        events,
        sent_at: HashMap::new(),
        outcomes: HashMap::new(),
        suspected: HashMap::new(),
        died: HashMap::new(),
        clock,
        t0,
        step_timeout: args.step_timeout,
    };
    let local: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut seed_addr = None;
    for i in 0..n {
        let mut options = Options::new(local)
            .config(config.clone())
            .name(format!("n{}", i + 1))
            .leave_timeout(config.gossip_interval);
        if let Some(addr) = seed_addr {
            options = options.seed(addr);
        }
        let node = runtime::spawn(args.runtime, options)?;
        seed_addr.get_or_insert(node.local_addr());
        let tx = events_tx.clone();
        let clock = demo.clock;
        demo.apps.push(App::start(&node, move |event| {
            let _ = tx.send((i, event, clock.now()));
        }));
        outln!("  n{} listening on {}", i + 1, node.local_addr());
        demo.nodes.push(Some(node));
    }

    // Convergence.
    let everyone: Vec<usize> = (0..n).collect();
    let start = demo.clock.now();
    let mut last = vec![0; n];
    let converged = demo.wait_for(|d| {
        let counts = d.alive_counts(&everyone)?;
        for (i, (&now, before)) in counts.iter().zip(last.iter_mut()).enumerate() {
            if now != *before {
                let node = d.nodes[i].as_ref().map(Node::local_addr);
                outln!(
                    "{} n{} ({}) sees {now}/{n} members alive",
                    d.stamp(),
                    i + 1,
                    node.map_or_else(String::new, |a| a.to_string())
                );
                *before = now;
            }
        }
        Ok(counts.iter().all(|&c| c == n))
    })?;
    let converge_time = demo.clock.now() - start;
    if !converged {
        outln!(
            "FAILED: the cluster did not converge within {:?}",
            args.step_timeout
        );
        return finish(demo, ExitCode::from(1));
    }
    outln!(
        "{} converged: every node sees {n}/{n} alive in {:.3} s",
        demo.stamp(),
        converge_time.as_secs_f64()
    );

    // Ring agreement: every node holds tokens and every node sees the same ring.
    let mut digest = 0;
    let agreed = demo.wait_for(|d| {
        let mut digests = Vec::with_capacity(n);
        for i in 0..n {
            let node = d.nodes[i]
                .as_ref()
                .ok_or_else(|| cli_error!("node {i} is stopped"))?;
            let ring = node.ring().wait()?;
            // Ready: Normal, and every live member holds the same ring.
            let normal = ring
                .ownership
                .iter()
                .filter(|o| o.topology == grapevine::Topology::Normal && o.tokens > 0)
                .count();
            if !ring.ready || normal != n {
                return Ok(false);
            }
            digests.push(ring.digest);
        }
        digest = digests[0];
        Ok(digests.iter().all(|d| *d == digest))
    })?;
    let ring_time = demo.clock.now() - start;
    if !agreed {
        outln!(
            "FAILED: the nodes did not agree on the ring within {:?}",
            args.step_timeout
        );
        return finish(demo, ExitCode::from(1));
    }
    outln!(
        "{} ring agreed: every node is ready (Normal, holds tokens) and sees ring digest {digest:016x} ({:.3} s after start)",
        demo.stamp(),
        ring_time.as_secs_f64()
    );
    if let Some(node) = demo.nodes[0].as_ref() {
        for o in node.ring().wait()?.ownership {
            outln!(
                "  {:<26} {:>3} tokens, owns {:>5.1}% of keys, replica of {:>5.1}%",
                demo.name(o.addr),
                o.tokens,
                o.primary * 100.0,
                o.replica * 100.0
            );
        }
    }

    // Requests to random nodes.
    outln!("\nclient requests (sent to random nodes, routed to the key's replicas):");
    let mut answered = 0;
    let mut sent = 0;
    let mut failed_over = 0;
    for r in 0..args.requests {
        let key = format!("user-{}", rand.below(1000));
        let via = rand.below(n);
        let route = demo.nodes[via]
            .as_ref()
            .map(|node| node.route(key.as_bytes()).wait())
            .transpose()?;
        let owner = route.as_ref().and_then(|r| r.owner().map(|o| o.addr));
        let id = demo.send(via, &key)?;
        sent += 1;
        let via_name = demo.name(demo.nodes[via].as_ref().map_or(local, Node::local_addr));
        match demo.outcome(via, id)? {
            Some(Outcome::Answered { from, after }) => {
                answered += 1;
                let role = if Some(from) == owner {
                    "owner"
                } else {
                    "replica"
                };
                outln!(
                    "  #{r:<2} {key:<9} via {via_name:<24} -> served by {} ({role}) in {:.1} ms",
                    demo.name(from),
                    after.as_secs_f64() * 1000.0
                );
            }
            Some(Outcome::Failed { reason, after }) => {
                outln!(
                    "  #{r:<2} {key:<9} via {via_name:<24} -> FAILED ({reason}) after {:.1} ms",
                    after.as_secs_f64() * 1000.0
                );
            }
            None => outln!("  #{r:<2} {key:<9} via {via_name:<24} -> no outcome in time"),
        }
    }

    // Pick a victim (not the seed) and keys it owns, with a non-replica node to send each through.
    let victim = n - 1;
    let victim_addr = demo.nodes[victim].as_ref().map_or(local, Node::local_addr);
    let mut probes: Vec<(String, usize)> = Vec::new();
    for k in 0..10_000 {
        if probes.len() == 3 {
            break;
        }
        let key = format!("user-{k}");
        let Some(node0) = demo.nodes[0].as_ref() else {
            break;
        };
        let route = node0.route(key.as_bytes()).wait()?;
        if route.owner().map(|o| o.addr) != Some(victim_addr) {
            continue;
        }
        let replicas: Vec<SocketAddr> = route.replicas.iter().map(|r| r.id.addr).collect();
        let via = (0..n - 1).find(|&i| {
            demo.nodes[i]
                .as_ref()
                .is_some_and(|node| !replicas.contains(&node.local_addr()))
                && probes.iter().all(|(_, v)| *v != i)
        });
        let via = via.or_else(|| {
            (0..n - 1).find(|&i| {
                demo.nodes[i]
                    .as_ref()
                    .is_some_and(|node| !replicas.contains(&node.local_addr()))
            })
        });
        if let Some(via) = via {
            probes.push((key, via));
        }
    }

    // What the ring and the probes' routes look like before the crash.
    let ring_before = demo.nodes[0]
        .as_ref()
        .ok_or_else(|| cli_error!("node 0 is stopped"))?
        .ring()
        .wait()?;
    let replica_names = |demo: &Demo, via: usize, key: &str| -> CliResult<Vec<String>> {
        let node = demo.nodes[via]
            .as_ref()
            .ok_or_else(|| cli_error!("node {via} is stopped"))?;
        Ok(node
            .route(key.as_bytes())
            .wait()?
            .replicas
            .into_iter()
            .map(|r| r.name)
            .collect())
    };
    let routes_before: Vec<Vec<String>> = probes
        .iter()
        .map(|(key, _)| replica_names(&demo, 0, key))
        .collect::<CliResult<_>>()?;
    let victim_name = format!("n{}", victim + 1);
    let victim_tokens = ring_before
        .tokens
        .iter()
        .filter(|(_, owner)| *owner == victim_name)
        .count();

    // Stop the victim without leaving, as if it crashed.
    outln!(
        "\n{} stopping n{} ({victim_addr}) without a goodbye",
        demo.stamp(),
        victim + 1
    );
    let killed_at = demo.clock.now();
    if let Some(node) = demo.nodes[victim].take() {
        node.abort().wait()?;
    }

    outln!(
        "requests for keys n{} owned, sent at once through nodes that must forward them:",
        victim + 1
    );
    let mut pending = Vec::new();
    for (key, via) in &probes {
        pending.push((key, *via, demo.send(*via, key)?));
        sent += 1;
    }
    let request_timeout = config.request_timeout;
    for (key, via, id) in pending {
        let via_name = demo.name(demo.nodes[via].as_ref().map_or(local, Node::local_addr));
        match demo.outcome(via, id)? {
            Some(Outcome::Answered { from, after }) => {
                answered += 1;
                let how = if after >= request_timeout {
                    failed_over += 1;
                    "no answer from the owner; failed over to"
                } else {
                    "owner already suspected; routed to"
                };
                outln!(
                    "  {key:<9} via {via_name:<24} -> {how} {} in {:.1} ms",
                    demo.name(from),
                    after.as_secs_f64() * 1000.0
                );
            }
            Some(Outcome::Failed { reason, after }) => {
                outln!(
                    "  {key:<9} via {via_name:<24} -> FAILED ({reason}) after {:.1} ms",
                    after.as_secs_f64() * 1000.0
                );
            }
            None => outln!("  {key:<9} via {via_name:<24} -> no outcome in time"),
        }
    }

    // Detection.
    let survivors: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let detected = demo.wait_for(|d| {
        for &i in &survivors {
            let node = d.nodes[i]
                .as_ref()
                .ok_or_else(|| cli_error!("node {i} is stopped"))?;
            let dead = node
                .members()
                .wait()?
                .iter()
                .any(|m| m.id.addr == victim_addr && matches!(m.state, Status::Dead));
            if !dead {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    demo.pump(Duration::from_millis(50));
    let detect_time = demo.clock.now() - killed_at;
    let first_suspect = survivors
        .iter()
        .filter_map(|&i| demo.suspected.get(&(i, victim_addr)))
        .min()
        .map(|t| *t - killed_at);
    let mut deaths: Vec<(usize, Duration)> = survivors
        .iter()
        .filter_map(|&i| {
            demo.died
                .get(&(i, victim_addr))
                .map(|t| (i, *t - killed_at))
        })
        .collect();
    deaths.sort_by_key(|(_, t)| *t);
    if let Some(t) = first_suspect {
        outln!(
            "  first suspicion of n{} after {:.3} s",
            victim + 1,
            t.as_secs_f64()
        );
    }
    for (i, t) in &deaths {
        outln!(
            "  n{} declared n{} dead after {:.3} s",
            i + 1,
            victim + 1,
            t.as_secs_f64()
        );
    }
    let detect_time = deaths.iter().map(|(_, t)| *t).max().unwrap_or(detect_time);
    if !detected {
        outln!(
            "FAILED: not every node declared n{} dead within {:?}",
            victim + 1,
            args.step_timeout
        );
        return finish(demo, ExitCode::from(1));
    }
    outln!(
        "{} detected: every survivor sees n{} dead {:.3} s after it stopped",
        demo.stamp(),
        victim + 1,
        detect_time.as_secs_f64()
    );

    // The crash moved nothing.
    let mut unchanged = true;
    for &i in &survivors {
        let node = demo.nodes[i]
            .as_ref()
            .ok_or_else(|| cli_error!("node {i} is stopped"))?;
        let ring = node.ring().wait()?;
        unchanged &= ring.digest == ring_before.digest && ring.tokens == ring_before.tokens;
        for ((key, _), before) in probes.iter().zip(&routes_before) {
            unchanged &= replica_names(&demo, i, key)? == *before;
        }
    }
    if !unchanged {
        outln!("FAILED: a crash changed the ring or the routes");
        return finish(demo, ExitCode::from(1));
    }
    outln!(
        "{} the crash moved no data: every survivor still sees ring digest {:016x}, the same {} tokens, and the same replicas for n{}'s keys (n{} stays their replica, shown down)",
        demo.stamp(),
        ring_before.digest,
        ring_before.tokens.len(),
        victim + 1,
        victim + 1,
    );
    outln!(
        "the same keys again, served by a live replica while n{} is down:",
        victim + 1
    );
    answered += demo.serve_probes(&probes, &mut sent)?;

    // removenode: the dead node's ranges move.
    let via = survivors[0];
    let via_node = demo.nodes[via]
        .as_ref()
        .ok_or_else(|| cli_error!("node {via} is stopped"))?
        .clone();
    outln!(
        "\n{} removenode {victim_name} through n{}",
        demo.stamp(),
        via + 1
    );
    let removed_at = demo.clock.now();
    via_node.remove_node(&victim_name).wait()?;
    let mut digest_after = 0;
    let mut tokens_after = Vec::new();
    let moved = demo.wait_for(|d| {
        let mut digests = BTreeSet::new();
        for &i in &survivors {
            let node = d.nodes[i]
                .as_ref()
                .ok_or_else(|| cli_error!("node {i} is stopped"))?;
            let ring = node.ring().wait()?;
            if ring.tokens.iter().any(|(_, owner)| *owner == victim_name) {
                return Ok(false);
            }
            digests.insert(ring.digest);
            digest_after = ring.digest;
            tokens_after = ring.tokens;
        }
        Ok(digests.len() == 1)
    })?;
    let remove_time = demo.clock.now() - removed_at;
    if !moved {
        outln!(
            "FAILED: {victim_name}'s tokens did not leave every ring within {:?}",
            args.step_timeout
        );
        return finish(demo, ExitCode::from(1));
    }
    let survivors_kept = ring_before
        .tokens
        .iter()
        .filter(|(_, owner)| *owner != victim_name)
        .all(|t| tokens_after.contains(t));
    outln!(
        "{} {victim_name} removed: its {victim_tokens} tokens left the ring of every survivor in {:.3} s ({}); ring digest {:016x} -> {digest_after:016x}",
        demo.stamp(),
        remove_time.as_secs_f64(),
        if survivors_kept {
            "every other token stays put"
        } else {
            "OTHER TOKENS MOVED TOO"
        },
        ring_before.digest,
    );
    for ((key, _), before) in probes.iter().zip(&routes_before) {
        let after = replica_names(&demo, via, key)?;
        outln!(
            "  {key:<9} replicas {} -> {}",
            before.join(","),
            after.join(",")
        );
    }
    outln!("the same keys again, now served by their new owners:");
    answered += demo.serve_probes(&probes, &mut sent)?;

    let wall = demo.clock.now() - t0;
    outln!(
        "\nsummary: {n} nodes ({} runtime, {} profile); converged in {:.3} s, ring agreed in {:.3} s; n{} detected dead in {:.3} s (first suspicion {}), its crash moved 0 tokens, removenode moved {victim_tokens} in {:.3} s; {answered}/{sent} requests answered, {failed_over} failed over; wall time {:.1} s",
        args.runtime,
        args.profile,
        converge_time.as_secs_f64(),
        ring_time.as_secs_f64(),
        victim + 1,
        detect_time.as_secs_f64(),
        first_suspect.map_or_else(|| "-".to_owned(), |t| format!("{:.3} s", t.as_secs_f64())),
        remove_time.as_secs_f64(),
        wall.as_secs_f64(),
    );
    let code = if answered == sent {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    finish(demo, code)
}

/// Stops every node (gracefully, in parallel: each leave is sent before any is
/// waited for) and every app thread.
fn finish(demo: Demo, code: ExitCode) -> CliResult<ExitCode> {
    let stops: Vec<_> = demo
        .nodes
        .into_iter()
        .flatten()
        .map(Node::shutdown)
        .collect();
    for stop in stops {
        if let Err(e) = stop.wait() {
            tracing::debug!(error = %e, "shutdown failed");
        }
    }
    for app in demo.apps {
        app.stop();
    }
    Ok(code)
}
