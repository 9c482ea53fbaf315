//! `grapevine simulate`: the deterministic simulator from the command line.
//!
//! N cores on one seeded, virtual network (`grapevine-sim`): they join through node 0,
//! node 0 writes a key once membership has converged, nodes crash and partitions come
//! and go on a schedule. It prints a summary (convergence, the write's spread, each
//! crash's detection, false suspicions and deaths, bytes per node), writes an SVG of
//! the curves, and can record one node's flight log, which `grapevine replay` and
//! `replay --dump-at` read like a real node's.
//!
//! Schedules: `--crash I@T` crashes node I (0-based; node 0 is the seed) at virtual
//! time T; `--partition 0-9,20/10-19@30s..60s` splits the listed groups of node
//! ranges (nodes listed nowhere form one more group) from 30 s and heals at 60 s (an
//! end left out: never heals).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant as Wall};

use clap::Args;
use grapevine::{Event, Instant};
use grapevine_driver::RecordOptions;
use grapevine_driver::record::{self, Entry, OutputDigest, Recorder};
use grapevine_sim::{EventLog, NetConfig, NodeStatus, SimBuilder, Tap, node_addr};

use crate::node::parse_duration;
use crate::output::outln;
use crate::{CliResult, Profile, cli_error, usage_error};

/// Virtual time between two samples of the curves.
const SAMPLE: Duration = Duration::from_millis(100);
/// The key node 0 writes once membership has converged.
const WRITE_KEY: &str = "simulate.write";

/// Arguments of `grapevine simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// The seed: the same seed and options give the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability that a datagram is lost: 0.05 or 5%.
    #[arg(long, default_value = "0", value_parser = parse_loss)]
    loss: f64,
    /// Mean one-way latency (jitter: half of it).
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    latency: Duration,
    /// Crash node I at virtual time T: `I@T`, e.g. `1@60s` (repeat for more).
    #[arg(long = "crash", value_name = "I@T", value_parser = parse_crash)]
    crashes: Vec<Crash>,
    /// Split the nodes into groups from T1 until T2: `0-49/50-99@30s..60s` (groups of
    /// node ranges separated by `/` or a quoted `|`, ranges by `,`; nodes listed
    /// nowhere form one more group; `@T1..` never heals). Repeatable.
    #[arg(long = "partition", value_name = "GROUPS@T1..T2", value_parser = parse_partition)]
    partitions: Vec<Partition>,
    /// Virtual time to simulate.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Protocol timing preset.
    #[arg(long, value_enum, default_value_t = Profile::Lan)]
    profile: Profile,
    /// Ring tokens per node instead of the preset's 16; 0 runs membership and state
    /// only (no ring), the lightest large simulation.
    #[arg(long, value_name = "N")]
    vnodes: Option<usize>,
    /// Where to write the SVG of the curves.
    #[arg(long, value_name = "FILE", default_value = "simulate.svg")]
    svg: PathBuf,
    /// Record one node's flight log into DIR (see --record-node), for
    /// `grapevine replay` and `replay --dump-at`.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// The node whose inputs --record logs.
    #[arg(long, value_name = "I", default_value_t = 0, requires = "record")]
    record_node: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Count every datagram by message kind and print where the bytes went (each
    /// datagram is decoded once more: slower).
    #[arg(long)]
    census: bool,
}

/// A crash on the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    node: usize,
    at: Duration,
}

/// A partition on the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    groups: Vec<Vec<usize>>,
    from: Duration,
    until: Option<Duration>,
}

fn parse_loss(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let p: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid loss {text:?} (e.g. 0.05 or 5%)"))?;
    let p = p / scale;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!(
            "loss {text:?} is not between 0 and 1 (0% and 100%)"
        ))
    }
}

fn parse_crash(text: &str) -> Result<Crash, String> {
    let (node, at) = text
        .split_once('@')
        .ok_or_else(|| format!("invalid crash {text:?} (expected I@T, e.g. 1@60s)"))?;
    Ok(Crash {
        node: node
            .trim()
            .parse()
            .map_err(|_| format!("invalid node index {node:?} in {text:?}"))?,
        at: parse_duration(at)?,
    })
}

fn parse_partition(text: &str) -> Result<Partition, String> {
    let bad = || format!("invalid partition {text:?} (expected e.g. 0-49/50-99@30s..60s)");
    let (groups, times) = text.split_once('@').ok_or_else(bad)?;
    let (from, until) = times.split_once("..").ok_or_else(bad)?;
    let mut parsed = Vec::new();
    for group in groups.split(['/', '|']) {
        let mut members = Vec::new();
        for range in group.split(',') {
            let range = range.trim();
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let a: usize = a.trim().parse().map_err(|_| bad())?;
            let b: usize = b.trim().parse().map_err(|_| bad())?;
            if a > b {
                return Err(format!("range {range:?} in {text:?} runs backwards"));
            }
            members.extend(a..=b);
        }
        parsed.push(members);
    }
    if parsed.len() < 2 && parsed.iter().map(Vec::len).sum::<usize>() == 0 {
        return Err(bad());
    }
    let from = parse_duration(from)?;
    let until = match until.trim() {
        "" => None,
        t => Some(parse_duration(t)?),
    };
    if until.is_some_and(|u| u <= from) {
        return Err(format!("partition {text:?} heals before it starts"));
    }
    Ok(Partition {
        groups: parsed,
        from,
        until,
    })
}

/// What happens at a scheduled time.
#[derive(Debug)]
enum Action {
    Crash(usize),
    Partition(Vec<Vec<usize>>),
    Heal,
}

/// What the recording tap shares with the run: errors and opaque inputs.
#[derive(Debug, Default)]
struct TapStatus {
    error: Option<String>,
    records: u64,
}

/// A [`Tap`] that writes the flight-recorder format, exactly as the driver does:
/// each input as a record, then after each drain an `Outputs` record whose digest
/// hashes the events, then the transmits, then the deadline.
struct RecorderTap {
    recorder: Recorder,
    pending: bool,
    status: Rc<RefCell<TapStatus>>,
}

impl RecorderTap {
    fn write(&mut self, entry: &Entry) {
        if self.status.borrow().error.is_some() {
            return;
        }
        match self.recorder.write(entry) {
            Ok(()) => self.status.borrow_mut().records += 1,
            Err(e) => self.status.borrow_mut().error = Some(e.to_string()),
        }
    }

    fn input(&mut self, entry: Entry) {
        self.pending = true;
        self.write(&entry);
    }
}

impl Tap for RecorderTap {
    fn packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.pending = true;
        if self.status.borrow().error.is_some() {
            return;
        }
        match self.recorder.write_packet(now.as_nanos(), from, data) {
            Ok(()) => self.status.borrow_mut().records += 1,
            Err(e) => self.status.borrow_mut().error = Some(e.to_string()),
        }
    }

    fn timeout(&mut self, now: Instant) {
        self.input(Entry::Timeout {
            now: now.as_nanos(),
        });
    }

    fn join(&mut self, now: Instant, seeds: &[SocketAddr]) {
        self.input(Entry::Join {
            now: now.as_nanos(),
            seeds: seeds.to_vec(),
        });
    }

    fn set(&mut self, now: Instant, key: &str, value: &[u8]) {
        self.input(Entry::Set {
            now: now.as_nanos(),
            key: key.to_owned(),
            value: value.to_vec(),
        });
    }

    fn opaque(&mut self, _now: Instant) {
        self.status.borrow_mut().error =
            Some("an input the recorder cannot see reached the node".into());
    }

    fn drained(
        &mut self,
        transmits: &[(SocketAddr, Vec<u8>)],
        events: &[Event<SocketAddr>],
        deadline: Option<Instant>,
    ) {
        if !std::mem::take(&mut self.pending) {
            return;
        }
        let mut digest = OutputDigest::default();
        for e in events {
            digest.event(e);
        }
        for (dest, payload) in transmits {
            digest.transmit(*dest, payload);
        }
        self.write(&Entry::Outputs(digest.finish(deadline)));
    }
}

impl Drop for RecorderTap {
    fn drop(&mut self) {
        if let Err(e) = self.recorder.flush() {
            self.status.borrow_mut().error = Some(e.to_string());
        }
    }
}

/// One crash's detection, as the run saw it.
#[derive(Debug)]
struct Detection {
    node: usize,
    at: Instant,
    generation: u64,
    /// Observer → time it first suspected / declared the node dead.
    suspected: HashMap<usize, Instant>,
    died: HashMap<usize, Instant>,
    /// (time, fraction of up nodes that declared it dead).
    curve: Vec<(f64, f64)>,
}

fn secs(t: Instant) -> f64 {
    t.as_nanos() as f64 / 1e9
}

/// Runs `grapevine simulate`.
pub fn run(args: SimulateArgs) -> CliResult<ExitCode> {
    let n = args.nodes;
    if n < 2 {
        return Err(usage_error!("--nodes {n}: simulate at least 2 nodes"));
    }
    for c in &args.crashes {
        if c.node >= n {
            return Err(usage_error!(
                "--crash {}@…: there are only nodes 0 to {}",
                c.node,
                n - 1
            ));
        }
    }
    for p in &args.partitions {
        if let Some(&i) = p.groups.iter().flatten().find(|&&i| i >= n) {
            return Err(usage_error!(
                "--partition: node {i} does not exist (0 to {})",
                n - 1
            ));
        }
    }
    if args.record.is_some() && args.record_node >= n {
        return Err(usage_error!(
            "--record-node {}: there are only nodes 0 to {}",
            args.record_node,
            n - 1
        ));
    }
    let mut config = args.profile.config("simulate");
    if let Some(vnodes) = args.vnodes {
        config.vnodes = vnodes;
    }
    if let Err(e) = config.validate() {
        return Err(usage_error!("--vnodes {}: {e}", config.vnodes));
    }
    let net = NetConfig::lan()
        .with_latency(args.latency, args.latency / 2)
        .with_loss(args.loss);
    let mut sim = SimBuilder::new(args.seed)
        .nodes(n)
        .config(config.clone())
        .net(net)
        .event_log(EventLog::Membership)
        .digest(false)
        .build();
    if args.census {
        sim.enable_census();
    }

    let tap_status = Rc::new(RefCell::new(TapStatus::default()));
    if let Some(dir) = &args.record {
        let i = args.record_node;
        let id = sim.id(i);
        let start = record::start_record(
            &config,
            &id,
            sim.rng_seed(i),
            Some(sim.saved_placement(i).clone()),
            sim.now(),
        );
        let recorder = Recorder::create(RecordOptions::new(dir).max_bytes(u64::MAX / 4), start)
            .map_err(|e| cli_error!("cannot record into {}: {e}", dir.display()))?;
        sim.set_tap(
            i,
            Box::new(RecorderTap {
                recorder,
                pending: false,
                status: tap_status.clone(),
            }),
        );
    }

    let mut schedule: Vec<(Duration, Action)> = Vec::new();
    for c in &args.crashes {
        schedule.push((c.at, Action::Crash(c.node)));
    }
    for p in &args.partitions {
        schedule.push((p.from, Action::Partition(p.groups.clone())));
        if let Some(until) = p.until {
            schedule.push((until, Action::Heal));
        }
    }
    schedule.sort_by_key(|(t, _)| *t);
    let mut schedule = schedule.into_iter().peekable();

    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(args.duration.as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} virtual {msg} [{bar:40}] {percent}% (eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });

    let wall = Wall::now();
    let end = Instant::ZERO + args.duration;
    sim.join_all_via(0);
    let mut membership: Vec<(f64, f64)> = Vec::new();
    let mut infection: Vec<(f64, f64)> = Vec::new();
    let mut converged_at: Option<Instant> = None;
    let mut write_at: Option<Instant> = None;
    let mut write_done: Option<Instant> = None;
    let mut write_half: Option<Instant> = None;
    let mut detections: Vec<Detection> = Vec::new();
    let mut next_sample = Instant::ZERO;
    loop {
        let now = sim.now();
        // Scheduled actions due now.
        while schedule
            .peek()
            .is_some_and(|(t, _)| Instant::ZERO + *t <= now)
        {
            let Some((_, action)) = schedule.next() else {
                break;
            };
            match action {
                Action::Crash(i) => {
                    if sim.status(i).is_running() {
                        detections.push(Detection {
                            node: i,
                            at: now,
                            generation: sim.generation(i),
                            suspected: HashMap::new(),
                            died: HashMap::new(),
                            curve: Vec::new(),
                        });
                        sim.crash(i);
                    }
                }
                Action::Partition(groups) => sim.partition(&groups),
                Action::Heal => sim.heal(),
            }
        }
        // Membership events: who suspected and declared each crashed node dead.
        for entry in sim.events() {
            for d in &mut detections {
                match &entry.event {
                    Event::MemberSuspect(id)
                        if id.addr == node_addr(d.node) && id.generation == d.generation =>
                    {
                        d.suspected.entry(entry.node).or_insert(entry.at);
                    }
                    Event::MemberDied(id)
                        if id.addr == node_addr(d.node) && id.generation == d.generation =>
                    {
                        d.died.entry(entry.node).or_insert(entry.at);
                    }
                    _ => {}
                }
            }
        }
        sim.clear_events();
        if now >= next_sample {
            next_sample = now + SAMPLE;
            let up: Vec<usize> = (0..n)
                .filter(|&i| sim.status(i) == NodeStatus::Up)
                .collect();
            let total = up.len().max(1) as f64;
            let seen: f64 = up
                .iter()
                .map(|&i| (sim.node(i).live_members() + 1).min(n) as f64 / n as f64)
                .sum::<f64>()
                / total;
            membership.push((secs(now), seen));
            let all_see_all = up
                .iter()
                .all(|&i| sim.node(i).live_members() + 1 >= up.len());
            if converged_at.is_none() && all_see_all && up.len() == n {
                converged_at = Some(now);
            }
            if write_at.is_none() && converged_at.is_some() && sim.status(0).is_running() {
                sim.set(0, WRITE_KEY, b"1")
                    .map_err(|e| cli_error!("node 0 refused the write: {e}"))?;
                write_at = Some(now);
            }
            if write_at.is_some() && write_done.is_none() {
                let writer = node_addr(0);
                let holding = up
                    .iter()
                    .filter(|&&i| sim.node(i).get(&writer, WRITE_KEY).is_some())
                    .count() as f64;
                infection.push((secs(now), holding / total));
                if write_half.is_none() && holding * 2.0 >= total {
                    write_half = Some(now);
                }
                if holding >= total {
                    write_done = Some(now);
                }
            }
            for d in &mut detections {
                let died = up.iter().filter(|i| d.died.contains_key(i)).count() as f64;
                d.curve.push((secs(now), died / total));
            }
            if let Some(bar) = &progress {
                bar.set_position((now - Instant::ZERO).as_millis() as u64);
                bar.set_message(format!("{:.1}s", secs(now)));
            }
        }
        if now >= end {
            break;
        }
        let next_action = schedule
            .peek()
            .map(|(t, _)| Instant::ZERO + *t)
            .unwrap_or(end);
        sim.run_until(next_sample.min(next_action).min(end));
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    drop(sim.take_tap());
    let wall = wall.elapsed();

    // The summary.
    let totals = sim.net_totals();
    let virtual_secs = args.duration.as_secs_f64();
    let up_count = (0..n).filter(|&i| sim.status(i) == NodeStatus::Up).count();
    let mut lines = vec![format!(
        "simulated {n} nodes for {virtual_secs:.1} s virtual (seed {}, loss {:.1}%, latency {:?}) in {:.1} s wall, {} steps",
        args.seed,
        args.loss * 100.0,
        args.latency,
        wall.as_secs_f64(),
        sim.steps()
    )];
    lines.push(match converged_at {
        Some(t) => format!(
            "membership converged at {:.1} s: every node counts all {n} alive",
            secs(t)
        ),
        None => "membership never converged (every node counting all nodes alive)".into(),
    });
    lines.push(match (write_at, write_half, write_done) {
        (Some(w), half, Some(done)) => format!(
            "node 0's write at {:.1} s reached half the nodes in {:.1} s, all in {:.1} s",
            secs(w),
            half.map_or(0.0, |h| secs(h) - secs(w)),
            secs(done) - secs(w)
        ),
        (Some(w), _, None) => format!(
            "node 0's write at {:.1} s had not reached every node by the end",
            secs(w)
        ),
        _ => "no write (membership did not converge first)".into(),
    });
    let mut detection_json = Vec::new();
    for d in &detections {
        let observers = up_count.max(1);
        let first_suspect = d.suspected.values().min().map(|t| secs(*t) - secs(d.at));
        let first_dead = d.died.values().min().map(|t| secs(*t) - secs(d.at));
        let all_dead = (d.died.len() >= observers)
            .then(|| d.died.values().max().map(|t| secs(*t) - secs(d.at)))
            .flatten();
        let fmt = |v: Option<f64>| v.map_or("never".into(), |s| format!("+{s:.1} s"));
        lines.push(format!(
            "crash of node {} at {:.1} s: first suspicion {}, first death {}, declared dead by {}/{observers} live nodes{}",
            d.node,
            secs(d.at),
            fmt(first_suspect),
            fmt(first_dead),
            d.died.len().min(observers),
            all_dead.map_or(String::new(), |s| format!(" (all by +{s:.1} s)"))
        ));
        detection_json.push(serde_json::json!({
            "node": d.node, "at_s": secs(d.at), "first_suspicion_s": first_suspect,
            "first_death_s": first_dead, "all_dead_s": all_dead,
            "declared_by": d.died.len(), "observers": observers,
        }));
    }
    lines.push(format!(
        "false suspicions {}, false deaths {}",
        sim.false_suspects(),
        sim.false_deaths()
    ));
    let per_node_sent = totals.sent_bytes as f64 / n as f64;
    let per_node_received = totals.received_bytes as f64 / n as f64;
    lines.push(format!(
        "bytes per node: sent {} ({}/s), received {} ({}/s); {} datagrams lost, {} cut by partitions",
        bytes(per_node_sent),
        bytes(per_node_sent / virtual_secs.max(1e-9)),
        bytes(per_node_received),
        bytes(per_node_received / virtual_secs.max(1e-9)),
        totals.lost,
        totals.partitioned
    ));
    plot(&args.svg, n, &membership, &infection, &detections)
        .map_err(|e| cli_error!("cannot write {}: {e}", args.svg.display()))?;
    lines.push(format!("curves: {}", args.svg.display()));
    if let Some(census) = sim.census() {
        lines.push(format!("where the bytes went (all nodes):\n{census}"));
    }
    let status = tap_status.borrow();
    if let Some(dir) = &args.record {
        if let Some(error) = &status.error {
            return Err(cli_error!(
                "the flight log of node {} in {} is incomplete: {error}",
                args.record_node,
                dir.display()
            ));
        }
        lines.push(format!(
            "flight log of node {}: {} ({} records; grapevine replay {} --dump-at TIME)",
            args.record_node,
            dir.display(),
            status.records,
            dir.display()
        ));
    }
    if args.json {
        let summary = serde_json::json!({
            "nodes": n, "seed": args.seed, "loss": args.loss,
            "latency_ms": args.latency.as_secs_f64() * 1e3, "duration_s": virtual_secs,
            "wall_s": wall.as_secs_f64(), "steps": sim.steps(),
            "converged_s": converged_at.map(secs),
            "write_s": write_at.map(secs), "write_all_s": write_done.map(secs),
            "detections": detection_json,
            "false_suspicions": sim.false_suspects(), "false_deaths": sim.false_deaths(),
            "sent_bytes_per_node": per_node_sent, "received_bytes_per_node": per_node_received,
            "svg": args.svg.display().to_string(),
            "census": sim.census().map(|c| c.kinds.iter().map(|(k, t)| {
                (k.to_string(), serde_json::json!({"sent": t.count, "bytes": t.bytes}))
            }).collect::<serde_json::Map<_, _>>()),
            "record": args.record.as_ref().map(|d| d.display().to_string()),
        });
        outln!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        for line in lines {
            outln!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bytes(b: f64) -> String {
    if b >= (1 << 20) as f64 {
        format!("{:.2} MiB", b / (1 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// The curves: membership (mean fraction of nodes each node counts alive), the write's
/// infection, and each crash's detection, against virtual time.
fn plot(
    path: &Path,
    n: usize,
    membership: &[(f64, f64)],
    infection: &[(f64, f64)],
    detections: &[Detection],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let tmax = membership.last().map_or(1.0, |p| p.0).max(1.0);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("grapevine simulate, N = {n}: infection and detection"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..tmax * 1.01, 0.0..1.02)?;
    chart
        .configure_mesh()
        .x_desc("virtual seconds")
        .y_desc("fraction of nodes")
        .draw()?;
    chart
        .draw_series(LineSeries::new(membership.to_vec(), BLUE.stroke_width(2)))?
        .label("membership: share of nodes each node counts alive")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    if !infection.is_empty() {
        let green = RGBColor(0, 140, 0);
        chart
            .draw_series(LineSeries::new(infection.to_vec(), green.stroke_width(2)))?
            .label("infection: nodes holding node 0's write")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], green.stroke_width(2))
            });
    }
    for d in detections {
        let label = format!("detection: nodes that declared node {} dead", d.node);
        chart
            .draw_series(LineSeries::new(d.curve.clone(), RED.stroke_width(2)))?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse() {
        assert_eq!(
            parse_crash("1@60s"),
            Ok(Crash {
                node: 1,
                at: Duration::from_secs(60)
            })
        );
        assert!(parse_crash("1").is_err());
        assert!(parse_crash("x@5s").is_err());
        let p = parse_partition("0-2,5/3-4@30s..1m").unwrap();
        assert_eq!(parse_partition("0-2,5|3-4@30s..1m").unwrap(), p);
        assert_eq!(p.groups, vec![vec![0, 1, 2, 5], vec![3, 4]]);
        assert_eq!(p.from, Duration::from_secs(30));
        assert_eq!(p.until, Some(Duration::from_secs(60)));
        assert_eq!(parse_partition("0-4@10s..").unwrap().until, None);
        assert!(parse_partition("0-4|5-9@30s..20s").is_err());
        assert!(parse_partition("4-0|5@1s..2s").is_err());
        assert!(parse_partition("0-4|5-9").is_err());
        assert_eq!(parse_loss("5%"), Ok(0.05));
        assert_eq!(parse_loss("0.1"), Ok(0.1));
        assert!(parse_loss("150%").is_err());
    }
}
