//! Cluster scenarios for Grapevine and foca on the same simulated network.
//!
//! ```text
//! cargo run --release -p grapevine-benches --bin scenarios -- --nodes 16,128,1024
//! cargo run --release -p grapevine-benches --bin scenarios -- --quick
//! ```
//!
//! Every (protocol, size) pair runs in a child process of its own, so that its wall
//! time and peak memory (`VmHWM`) are its own. The parent prints markdown tables,
//! writes `infection-N<n>.svg` plots and a JSON file of every figure into `--out`.

use core::time::Duration;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant as Wall;

use clap::{Parser, ValueEnum};
use grapevine::Instant;
use grapevine_benches::foca_driver::{self, FocaCluster};
use grapevine_benches::gv::{self, GvCluster};
use grapevine_benches::report::{
    CrashResult, LossResult, MainResult, Report, UpdateResult, downsample,
};
use grapevine_benches::{Cluster, peak_rss_bytes, secs};
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// The system allocator, counted: `--node-memory` reports live heap bytes too.
#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum System {
    Grapevine,
    Foca,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Grapevine => "grapevine",
            System::Foca => "foca",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Child {
    Main,
    Loss,
}

/// Runs the cluster scenarios and prints the tables.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    /// Cluster sizes (default 16,128,1024; with --quick, 16). Sizes whose simulation
    /// would not fit in the memory available are skipped (10,000 needs ~55 GB for
    /// Grapevine with its ring, ~21 GB for foca).
    #[arg(long, value_delimiter = ',')]
    nodes: Option<Vec<usize>>,
    /// Protocols to run.
    #[arg(long, value_delimiter = ',', default_values = ["grapevine", "foca"])]
    systems: Vec<System>,
    /// Tiny sizes and short durations: checks that everything runs, not the figures.
    #[arg(long)]
    quick: bool,
    /// Seed of every simulation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Updates spread per run (default 10; 5 at N ≥ 5,000; 2 with --quick).
    #[arg(long)]
    updates: Option<usize>,
    /// Crashes per run (default 3; 1 with --quick).
    #[arg(long)]
    crashes: Option<usize>,
    /// Loss probabilities of the false-death runs.
    #[arg(long, value_delimiter = ',', default_values_t = [0.1, 0.3])]
    loss: Vec<f64>,
    /// Simulated minutes of each loss run (default: 60 up to N = 128, 10 up to 1,024,
    /// 2 above; 1 with --quick).
    #[arg(long)]
    loss_minutes: Option<f64>,
    /// Skip the loss runs.
    #[arg(long)]
    no_loss: bool,
    /// Virtual milliseconds between two joins.
    #[arg(long, default_value_t = 1.0)]
    join_stagger_ms: f64,
    /// Experiment: Grapevine's `suspicion_mult` instead of the LAN preset's 3.
    #[arg(long)]
    gv_suspicion_mult: Option<u32>,
    /// Where the SVG plots, the JSON figures and the markdown tables go.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// Instead of the scenarios: the memory of one Grapevine node that knows this many
    /// members (each with ring tokens), measured over several such nodes.
    #[arg(long)]
    node_memory: Option<usize>,
    /// Instead of running anything: merge these JSON reports (from earlier runs) and
    /// print the tables and write the plots and the merged JSON into --out.
    #[arg(long, value_delimiter = ',')]
    from_json: Option<Vec<PathBuf>>,
    /// Instead of the scenarios: join a Grapevine cluster of --n nodes and print its
    /// traffic and state churn every 10 simulated seconds for this many seconds.
    #[arg(long)]
    timeline: Option<u64>,
    /// Internal: run one scenario in this process and print its JSON result.
    #[arg(long, hide = true)]
    child: Option<Child>,
    /// Internal: the child's protocol.
    #[arg(long, hide = true)]
    system: Option<System>,
    /// Internal: the child's size.
    #[arg(long, hide = true)]
    n: Option<usize>,
    /// Internal: the child's loss probability.
    #[arg(long, hide = true)]
    p: Option<f64>,
}

impl Args {
    fn sizes(&self) -> Vec<usize> {
        self.nodes.clone().unwrap_or_else(|| {
            if self.quick {
                vec![16]
            } else {
                vec![16, 128, 1024]
            }
        })
    }
    fn updates(&self, n: usize) -> usize {
        self.updates.unwrap_or(if self.quick {
            2
        } else if n >= 5000 {
            5
        } else {
            10
        })
    }
    fn crashes(&self) -> usize {
        self.crashes.unwrap_or(if self.quick { 1 } else { 3 })
    }
    fn loss_minutes(&self, n: usize) -> f64 {
        self.loss_minutes.unwrap_or(if self.quick {
            1.0
        } else if n <= 128 {
            60.0
        } else if n <= 1024 {
            10.0
        } else {
            2.0
        })
    }
    /// Grapevine's config: `Config::lan`, with any override from the command line.
    fn gv_config(&self) -> grapevine::Config {
        let mut c = gv::config();
        if let Some(m) = self.gv_suspicion_mult {
            c.suspicion_mult = m;
        }
        c
    }
    fn stagger(&self) -> Duration {
        Duration::from_secs_f64(self.join_stagger_ms.max(0.0) / 1000.0)
    }
}

fn main() {
    let args = Args::parse();
    if let Some(members) = args.node_memory {
        node_memory(members);
        return;
    }
    if let Some(secs) = args.timeline {
        timeline(&args, secs);
        return;
    }
    if let Some(files) = &args.from_json {
        let mut report = Report::default();
        for f in files {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let r: Report =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            report.main.extend(r.main);
            report.loss.extend(r.loss);
            report.failures.extend(r.failures);
            report.skipped.extend(r.skipped);
        }
        finish(&args, &report, Wall::now());
        return;
    }
    match args.child {
        Some(kind) => child(&args, kind),
        None => parent(&args),
    }
}

// ----- parent -------------------------------------------------------------------------

fn parent(args: &Args) {
    let exe = std::env::current_exe().expect("current exe");
    let mut report = Report::default();
    let started = Wall::now();
    let mut jobs: Vec<(Child, System, usize, Option<f64>)> = Vec::new();
    for &n in &args.sizes() {
        for &sys in &args.systems {
            jobs.push((Child::Main, sys, n, None));
        }
    }
    if !args.no_loss {
        for &n in &args.sizes() {
            for &p in &args.loss {
                for &sys in &args.systems {
                    jobs.push((Child::Loss, sys, n, Some(p)));
                }
            }
        }
    }
    for (k, (kind, sys, n, p)) in jobs.iter().enumerate() {
        // Every node knows every member: the simulation holds N² entries (Grapevine,
        // 16 tokens each: 804 MiB peak at N = 1,024, 8.5 GiB at 4,096, about 530 B per
        // member pair; with some room for the scenario's own bookkeeping).
        let need = n
            * n
            * match sys {
                System::Grapevine => 800,
                System::Foca => 220,
            };
        // Leave half of what is free to everyone else on the machine.
        let have = mem_available() / 2;
        if need > have {
            let msg = format!(
                "{} N={n} {kind:?}: skipped, needs about {:.1} GB and only {:.1} GB may be used (half of what is available)",
                sys.name(),
                need as f64 / 1e9,
                have as f64 / 1e9
            );
            eprintln!("[{}/{}] {msg}", k + 1, jobs.len());
            report.skipped.push(msg);
            continue;
        }
        eprintln!(
            "[{}/{}] {} N={n} {:?}{} ({:.0} s so far)",
            k + 1,
            jobs.len(),
            sys.name(),
            kind,
            p.map_or(String::new(), |p| format!(" loss={p}")),
            started.elapsed().as_secs_f64()
        );
        let mut cmd = Command::new(&exe);
        cmd.arg("--child")
            .arg(match kind {
                Child::Main => "main",
                Child::Loss => "loss",
            })
            .arg("--system")
            .arg(sys.name())
            .arg("--n")
            .arg(n.to_string())
            .arg("--seed")
            .arg(args.seed.to_string())
            .arg("--join-stagger-ms")
            .arg(args.join_stagger_ms.to_string());
        if args.quick {
            cmd.arg("--quick");
        }
        if let Some(u) = args.updates {
            cmd.arg("--updates").arg(u.to_string());
        }
        if let Some(c) = args.crashes {
            cmd.arg("--crashes").arg(c.to_string());
        }
        if let Some(m) = args.loss_minutes {
            cmd.arg("--loss-minutes").arg(m.to_string());
        }
        if let Some(m) = args.gv_suspicion_mult {
            cmd.arg("--gv-suspicion-mult").arg(m.to_string());
        }
        if let Some(p) = p {
            cmd.arg("--p").arg(p.to_string());
        }
        let out = cmd.stderr(Stdio::inherit()).stdout(Stdio::piped()).output();
        let line = out.as_ref().ok().and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("RESULT ").map(str::to_owned))
        });
        let what = format!(
            "{} N={n} {kind:?}{}",
            sys.name(),
            p.map_or(String::new(), |p| format!(" loss={p}"))
        );
        match (kind, line) {
            (Child::Main, Some(l)) => match serde_json::from_str::<MainResult>(&l) {
                Ok(r) => report.main.push(r),
                Err(e) => report.failures.push(format!("{what}: bad result: {e}")),
            },
            (Child::Loss, Some(l)) => match serde_json::from_str::<LossResult>(&l) {
                Ok(r) => report.loss.push(r),
                Err(e) => report.failures.push(format!("{what}: bad result: {e}")),
            },
            (_, None) => {
                let status = out
                    .map(|o| o.status.to_string())
                    .unwrap_or_else(|e| e.to_string());
                report
                    .failures
                    .push(format!("{what}: no result ({status})"));
            }
        }
    }

    finish(args, &report, started);
    if !report.failures.is_empty() {
        std::process::exit(2);
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes (unbounded where it cannot be read).
fn mem_available() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<usize>().ok())
        })
        .map_or(usize::MAX, |kib| kib.saturating_mul(1024))
}

/// Prints the memory of one node that knows `members` members, with and without
/// their ring tokens: the per-node cost that a simulation pays N times.
///
/// Resident memory is the marginal cost of a node: before each batch of copies, one
/// warm-up node of the same kind is built and kept (not counted), so the code pages,
/// allocator arenas and buffers the first node of a kind touches for the whole process
/// fall outside the difference of resident sizes. Every node stays alive until the end
/// (a dropped batch's free pages would otherwise be refilled by the next one without
/// showing in its resident size). The live heap bytes follow (counted by the allocator),
/// and with tokens, the heap once each node's ring is built (on first use, by the first
/// `route`: the fixture routes nothing).
fn node_memory(members: usize) {
    use grapevine_benches::fixtures::Fixture;
    let copies = (20_000 / members.max(1)).clamp(2, 20);
    let per_member = |bytes: usize| bytes as f64 / copies as f64 / members.max(1) as f64;
    let mut heap = Vec::new();
    let mut kept = Vec::new();
    println!(
        "resident memory added per node, after one warm-up node of the same kind \
         (built first, kept, not counted); {copies} nodes of {members} members each:"
    );
    for tokens in [false, true] {
        let warm_up = Fixture::new(members, tokens);
        let before = grapevine_benches::rss_bytes();
        let heap_before = ALLOC.allocated();
        let nodes: Vec<Fixture> = (0..copies).map(|_| Fixture::new(members, tokens)).collect();
        let after = grapevine_benches::rss_bytes();
        heap.push(per_member(ALLOC.allocated().saturating_sub(heap_before)));
        let per = after.saturating_sub(before) as f64 / copies as f64;
        println!(
            "{members} members, tokens {}: {:.0} KiB per node ({:.0} B per member), ring {} tokens",
            if tokens { "yes" } else { "no" },
            per / 1024.0,
            per / members.max(1) as f64,
            nodes[0].node.ring().len(),
        );
        if tokens {
            for f in &nodes {
                let _ = f.node.ring().len();
            }
            heap.push(per_member(ALLOC.allocated().saturating_sub(heap_before)));
        }
        kept.push(warm_up);
        kept.extend(nodes);
    }
    println!(
        "  live heap per member: tokens no {:.0} B, tokens yes {:.0} B, with the ring built {:.0} B",
        heap[0], heap[1], heap[2]
    );
    drop(kept);
}

/// Prints the tables; writes the JSON, the markdown and (unless quick) the plots.
fn finish(args: &Args, report: &Report, started: Wall) {
    let md = report.markdown();
    println!("{md}");
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("cannot create {}: {e}", args.out.display());
        std::process::exit(1);
    }
    let suffix = if args.quick { "-quick" } else { "" };
    let json_path = args.out.join(format!("scenarios{suffix}.json"));
    let md_path = args.out.join(format!("scenarios{suffix}.md"));
    let write = |path: &PathBuf, data: &str| {
        if let Err(e) = std::fs::write(path, data) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    };
    write(
        &json_path,
        &serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    write(&md_path, &md);
    if args.quick {
        eprintln!(
            "quick mode: figures written to {} (no plot)",
            json_path.display()
        );
    } else {
        match report.plot(&args.out) {
            Ok(paths) => {
                for p in paths {
                    eprintln!("wrote {}", p.display());
                }
            }
            Err(e) => eprintln!("plot failed: {e}"),
        }
    }
    eprintln!(
        "wrote {} and {} in {:.0} s",
        json_path.display(),
        md_path.display(),
        started.elapsed().as_secs_f64()
    );
}

/// Traffic of a joining cluster, window by window (Grapevine: also state churn).
fn timeline(args: &Args, seconds: u64) {
    let n = args.n.unwrap_or(1024).max(2);
    match args.system.unwrap_or(System::Grapevine) {
        System::Grapevine => {
            let stats = |c: &GvCluster| {
                let mut t = [0u64; 3];
                for node in c.sim().nodes() {
                    let s = node.stats();
                    t[0] += s.deltas_applied;
                    t[1] += s.rumours_evicted;
                    t[2] += s.syncs;
                }
                t
            };
            let c = GvCluster::new(args.seed, n, args.gv_config());
            timeline_of(
                c,
                args,
                seconds,
                "deltas applied | rumours evicted | syncs",
                stats,
            );
        }
        System::Foca => {
            let c = FocaCluster::new(args.seed, n, foca_driver::config(n));
            timeline_of(c, args, seconds, "", |_| [0u64; 3]);
        }
    }
}

fn timeline_of<C: Cluster>(
    mut c: C,
    args: &Args,
    seconds: u64,
    extra: &str,
    stats: impl Fn(&C) -> [u64; 3],
) {
    let n = c.len();
    c.join_all(args.stagger());
    println!(
        "t (s) | bytes/node/s | packets/node/s | B/packet | {extra} (per node per s) | converged"
    );
    let window = Duration::from_secs(10);
    let mut prev = (c.net_totals(), stats(&c));
    while c.now() < Instant::from_secs(seconds) {
        let t = c.now() + window;
        c.run_until(t);
        let now = (c.net_totals(), stats(&c));
        let node_s = n as f64 * window.as_secs_f64();
        let pk = now.0.sent_packets - prev.0.sent_packets;
        let by = now.0.sent_bytes - prev.0.sent_bytes;
        let per: Vec<String> = (0..3)
            .map(|k| format!("{:.2}", (now.1[k] - prev.1[k]) as f64 / node_s))
            .collect();
        println!(
            "{:5.0} | {:8.0} | {:5.2} | {:5.0} | {} | {}",
            secs(c.now()),
            by as f64 / node_s,
            pk as f64 / node_s,
            by as f64 / pk.max(1) as f64,
            per.join(" | "),
            c.converged(),
        );
        prev = now;
    }
}

// ----- child --------------------------------------------------------------------------

fn child(args: &Args, kind: Child) {
    let sys = args.system.unwrap_or(System::Grapevine);
    let n = args.n.unwrap_or(16).max(2);
    let json = match kind {
        Child::Main => {
            let r = match sys {
                System::Grapevine => {
                    let config = args.gv_config();
                    let desc = format!("{config:?}");
                    let wall = Wall::now();
                    let c = GvCluster::new(args.seed, n, config);
                    run_main(args, c, desc, wall)
                }
                System::Foca => {
                    let config = foca_driver::config(n);
                    let desc = format!("{config:?}");
                    let wall = Wall::now();
                    let c = FocaCluster::new(args.seed, n, config);
                    run_main(args, c, desc, wall)
                }
            };
            serde_json::to_string(&r)
        }
        Child::Loss => {
            let p = args.p.unwrap_or(0.1);
            let r = match sys {
                System::Grapevine => {
                    run_loss(args, GvCluster::new(args.seed, n, args.gv_config()), p)
                }
                System::Foca => run_loss(
                    args,
                    FocaCluster::new(args.seed, n, foca_driver::config(n)),
                    p,
                ),
            };
            serde_json::to_string(&r)
        }
    };
    let json = json.expect("results serialise");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "RESULT {json}");
}

/// A progress bar over virtual seconds.
fn bar(label: String, total_s: f64) -> ProgressBar {
    let pb = ProgressBar::new(total_s.max(1.0) as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} sim s {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(label);
    pb
}

/// Runs `c` until `cond` holds (checked every `every`) or until `deadline`; returns
/// whether it held. Records the wall time at which virtual time passed 60 s.
fn run_until_cond<C: Cluster>(
    c: &mut C,
    deadline: Instant,
    every: Duration,
    pb: &ProgressBar,
    mark: &mut Mark,
    mut cond: impl FnMut(&C) -> bool,
) -> bool {
    loop {
        if cond(c) {
            return true;
        }
        if c.now() >= deadline {
            return false;
        }
        let t = (c.now() + every).min(deadline);
        c.run_until(t);
        mark.check(c.now());
        pb.set_position(secs(c.now()) as u64);
    }
}

fn run_for<C: Cluster>(c: &mut C, d: Duration, pb: &ProgressBar, mark: &mut Mark) {
    let end = c.now() + d;
    run_until_cond(c, end, Duration::from_secs(1), pb, mark, |_| false);
}

/// Remembers the wall time at which virtual time first reached 60 s.
struct Mark {
    start: Wall,
    at_60: Option<f64>,
}

impl Mark {
    fn check(&mut self, now: Instant) {
        if self.at_60.is_none() && now >= Instant::from_secs(60) {
            self.at_60 = Some(self.start.elapsed().as_secs_f64());
        }
    }
}

/// Runs until `cap` in windows of the protocol's [`Cluster::quiet_window`] and returns
/// when traffic settled, and the total bytes sent by then: the end of the last window
/// whose rate was not within 10 % (or 10 bytes per node per second) of the final level
/// (the mean of the last three windows). Rumour queues drain at a flat, full-packet
/// rate before they empty, so a plateau is not the end: only the final level is.
/// (foca's windows are 30 s: its periodic announce fires every 30 s on every node at
/// nearly the same phase; Grapevine's are 10 s, its periodic traffic being per round.)
fn settle<C: Cluster>(
    c: &mut C,
    cap: Instant,
    pb: &ProgressBar,
    mark: &mut Mark,
) -> (Instant, u64) {
    let step = c.quiet_window();
    let node_s = c.live_count().max(1) as f64 * step.as_secs_f64();
    let start = (c.now(), c.net_totals().sent_bytes);
    // (end of window, bytes per node per second, total bytes sent at its end)
    let mut windows: Vec<(Instant, f64, u64)> = Vec::new();
    while c.now() < cap || windows.len() < 3 {
        let before = c.net_totals().sent_bytes;
        run_for(c, step, pb, mark);
        let total = c.net_totals().sent_bytes;
        windows.push((c.now(), (total - before) as f64 / node_s, total));
    }
    let tail = &windows[windows.len() - 3..];
    let level = tail.iter().map(|w| w.1).sum::<f64>() / 3.0;
    let near = |r: f64| (r - level).abs() <= (0.1 * level).max(10.0);
    match windows.iter().rposition(|w| !near(w.1)) {
        Some(k) => (windows[k].0, windows[k].2),
        None => start,
    }
}

fn run_main<C: Cluster>(args: &Args, mut c: C, config: String, wall: Wall) -> MainResult {
    let n = c.len();
    let quick = args.quick;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5ce7a);
    let stagger = args.stagger();
    let join_window = stagger * u32::try_from(n).unwrap_or(u32::MAX);
    let updates = args.updates(n);
    let crashes = args.crashes();
    let planned = if quick { 100.0 } else { 660.0 } + updates as f64 * 10.0 + crashes as f64 * 40.0;
    let pb = bar(format!("{} N={n}", c.name()), planned);
    let mut mark = Mark {
        start: wall,
        at_60: None,
    };
    let mut r = MainResult {
        system: c.name().into(),
        n,
        config,
        join_stagger_ms: args.join_stagger_ms,
        ..MainResult::default()
    };

    // 1. Join: everyone through node 0, one every `stagger`.
    pb.set_message("joining");
    c.join_all(stagger);
    let last_join = c.now() + join_window;
    let deadline = last_join + Duration::from_secs(if quick { 60 } else { 300 });
    let joined = run_until_cond(
        &mut c,
        deadline,
        Duration::from_millis(100),
        &pb,
        &mut mark,
        |c| c.now() >= last_join && c.converged(),
    );
    if joined {
        r.join_s = Some(secs(c.now()) - secs(last_join));
    } else {
        let (min, mean) = c.view_sizes();
        r.notes.push(format!(
            "membership not converged {:.0} s after the last join: nodes see {min} (least) and {mean:.1} (mean) of the other {} members",
            secs(deadline) - secs(last_join),
            n - 1
        ));
    }
    eprintln!(
        "  {} N={n}: join {:?} s (t = {:.1} s, wall {:.1} s)",
        c.name(),
        r.join_s,
        secs(c.now()),
        wall.elapsed().as_secs_f64()
    );

    // 2. Settle: from the join's convergence, window by window until t = 600 s, and
    //    find when the join's traffic fell to the final level (see `settle`).
    pb.set_message("settling");
    let settle_to = c.now();
    let cap = Instant::from_secs(if quick { 90 } else { 600 });
    let (settled, bytes_then) = settle(&mut c, cap, &pb, &mut mark);
    r.wall_first_60s = mark.at_60;
    if settled + Duration::from_secs(90) > c.now() {
        r.notes.push(format!(
            "traffic still changing at t = {:.0} s",
            secs(c.now())
        ));
    }
    r.quiet_after_s = Some(secs(settled) - secs(last_join));
    r.quiet_by_then = settled == settle_to;
    r.join_bytes_per_node = bytes_then as f64 / n as f64;

    // 3. Idle traffic.
    pb.set_message("idle traffic");
    let window = Duration::from_secs(if quick { 10 } else { 60 });
    let before = c.net_totals();
    run_for(&mut c, window, &pb, &mut mark);
    let after = c.net_totals();
    let node_s = c.live_count() as f64 * window.as_secs_f64();
    r.idle_window_s = window.as_secs_f64();
    r.idle_bytes_per_node_s = (after.sent_bytes - before.sent_bytes) as f64 / node_s;
    r.idle_packets_per_node_s = (after.sent_packets - before.sent_packets) as f64 / node_s;

    // 4. Dissemination: one update at a time, from a random node.
    for k in 0..updates {
        pb.set_message(format!("update {}/{updates}", k + 1));
        let up: Vec<usize> = (0..n).filter(|&i| c.is_up(i)).collect();
        let origin = up[(rng.next_u64() % up.len() as u64) as usize];
        let start = c.now();
        let Some(handle) = c.start_update(origin, 1000 + k as u64) else {
            r.notes.push("no update mechanism".into());
            break;
        };
        let expected = c.live_count() - 1;
        let deadline = start + Duration::from_secs(120);
        let all = run_until_cond(
            &mut c,
            deadline,
            Duration::from_millis(50),
            &pb,
            &mut mark,
            |c| c.update_arrivals(handle).len() >= expected,
        );
        let mut times: Vec<f64> = c
            .update_arrivals(handle)
            .iter()
            .map(|&t| secs(t) - secs(start))
            .collect();
        times.sort_by(f64::total_cmp);
        r.updates.push(UpdateResult {
            reach_all_s: if all { times.last().copied() } else { None },
            reached: times.len(),
            of: expected,
            arrivals: downsample(&times, 400),
        });
        c.clear_logs();
        run_for(&mut c, Duration::from_secs(2), &pb, &mut mark);
    }
    let (m, p) = r.reach_all();
    eprintln!(
        "  {} N={n}: update reaches all: median {m:?} s, p99 {p:?} s",
        c.name()
    );

    // 5. Crash detection.
    for k in 0..crashes {
        pb.set_message(format!("crash {}/{crashes}", k + 1));
        let up: Vec<usize> = (1..n).filter(|&i| c.is_up(i)).collect();
        if up.is_empty() {
            break;
        }
        let victim = up[(rng.next_u64() % up.len() as u64) as usize];
        let start = c.now();
        c.crash(victim);
        let expected = c.live_count();
        let deadline = start + Duration::from_secs(if quick { 120 } else { 300 });
        let all = run_until_cond(
            &mut c,
            deadline,
            Duration::from_millis(100),
            &pb,
            &mut mark,
            |c| c.death_verdicts(victim).len() >= expected,
        );
        let mut times: Vec<f64> = c
            .death_verdicts(victim)
            .iter()
            .map(|&t| secs(t) - secs(start))
            .collect();
        times.sort_by(f64::total_cmp);
        r.crashes.push(CrashResult {
            first_s: times.first().copied(),
            all_s: if all { times.last().copied() } else { None },
            verdicts: times.len(),
            expected,
        });
        c.clear_logs();
        run_for(&mut c, Duration::from_secs(5), &pb, &mut mark);
    }
    let (first, all) = r.crash_detection();
    eprintln!(
        "  {} N={n}: crash detection: first {first:?} s, all {all:?} s",
        c.name()
    );

    r.false_deaths = c.false_deaths();
    r.counters = c
        .counters()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    r.sim_s = secs(c.now());
    r.wall_s = wall.elapsed().as_secs_f64();
    r.peak_rss = peak_rss_bytes();
    pb.finish_and_clear();
    eprintln!(
        "  {} N={n}: {:.0} simulated s in {:.1} wall s, peak RSS {:.0} MiB",
        c.name(),
        r.sim_s,
        r.wall_s,
        r.peak_rss as f64 / 1048576.0
    );
    r
}

fn run_loss<C: Cluster>(args: &Args, mut c: C, p: f64) -> LossResult {
    let wall = Wall::now();
    let n = c.len();
    let minutes = args.loss_minutes(n);
    let stagger = args.stagger();
    let join_window = stagger * u32::try_from(n).unwrap_or(u32::MAX);
    let pb = bar(
        format!("{} N={n} loss={p}", c.name()),
        if args.quick { 90.0 } else { 600.0 } + minutes * 60.0,
    );
    let mut mark = Mark {
        start: wall,
        at_60: None,
    };
    pb.set_message("joining (no loss)");
    c.join_all(stagger);
    let last_join = c.now() + join_window;
    let deadline = last_join + Duration::from_secs(300);
    run_until_cond(
        &mut c,
        deadline,
        Duration::from_millis(100),
        &pb,
        &mut mark,
        |c| c.now() >= last_join && c.converged(),
    );
    let settle_to = Instant::from_secs(60).max(c.now() + Duration::from_secs(10));
    let d = settle_to - c.now();
    run_for(&mut c, d, &pb, &mut mark);
    let cap = Instant::from_secs(if args.quick { 90 } else { 600 });
    let _ = settle(&mut c, cap, &pb, &mut mark);
    let fd0 = c.false_deaths();
    let fs0 = c.false_suspects();
    pb.set_message(format!("{:.0}% loss", p * 100.0));
    c.set_loss(p);
    run_for(
        &mut c,
        Duration::from_secs_f64(minutes * 60.0),
        &pb,
        &mut mark,
    );
    let r = LossResult {
        system: c.name().into(),
        n,
        loss: p,
        minutes,
        false_deaths: c.false_deaths() - fd0,
        false_suspects: c.false_suspects().zip(fs0).map(|(a, b)| a - b),
        converged_at_end: c.converged(),
        sim_s: secs(c.now()),
        wall_s: wall.elapsed().as_secs_f64(),
        peak_rss: peak_rss_bytes(),
        counters: c
            .counters()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    };
    pb.finish_and_clear();
    eprintln!(
        "  {} N={n} loss {p}: {} false deaths, {:?} false suspicions over {minutes} min ({:.1} wall s)",
        r.system, r.false_deaths, r.false_suspects, r.wall_s
    );
    r
}
