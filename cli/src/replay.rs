//! `grapevine node --record DIR` (its flags) and `grapevine replay DIR`: re-run a
//! node's core from its flight log and check every output against the log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use grapevine_driver::record::{Entry, LogReader};
use grapevine_driver::replay::{Replay, Step, format_time};
use grapevine_driver::{Options, RecordOptions};

use crate::node::parse_duration;
use crate::output::outln;
use crate::{CliResult, cli_error, dump, usage_error};

/// The flight recorder's flags on `grapevine node`.
#[derive(Debug, Args, Clone)]
pub struct RecordArgs {
    /// Record every input of the node's core into a flight log in DIR, for
    /// `grapevine replay` (an older log there moves to DIR/previous).
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// The most the flight log keeps, in MiB: older segments are deleted beyond it
    /// (each segment opens with a snapshot of the node, so replay starts from the
    /// oldest one kept).
    #[arg(long, value_name = "MIB", default_value_t = 64, requires = "record")]
    record_max_mib: u64,
    /// Also record keyring changes with their keys, so replay can open sealed
    /// datagrams. The log then holds the cluster's keys: protect it as them.
    #[arg(long, requires = "record")]
    record_keys: bool,
}

impl RecordArgs {
    /// Adds the recorder to `options`, if asked.
    pub fn apply(&self, options: Options) -> CliResult<Options> {
        let Some(dir) = &self.record else {
            return Ok(options);
        };
        if self.record_max_mib == 0 {
            return Err(usage_error!("--record-max-mib must be at least 1"));
        }
        let max = self.record_max_mib.saturating_mul(1 << 20);
        Ok(options.record(
            RecordOptions::new(dir)
                .max_bytes(max)
                .segment_bytes((max / 8).max(1 << 20))
                .keys(self.record_keys),
        ))
    }
}

/// Arguments of `grapevine replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The flight log's directory (`grapevine node --record DIR`).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Stop at this time, counted from the start of the log (e.g. 30s, 1500ms).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    until: Option<Duration>,
    /// Print each event as the replayed node raises it.
    #[arg(long)]
    events: bool,
    /// Print the node's state at this time, counted from the start of the log.
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    dump_at: Option<Duration>,
    /// With --dump-at: print the state as JSON instead of tables.
    #[arg(long, requires = "dump_at")]
    json: bool,
    /// Only read the log and check every record's framing and checksum (works on a
    /// log whose start has rotated away).
    #[arg(long, conflicts_with_all = ["until", "events", "dump_at"])]
    check: bool,
}

/// Runs `grapevine replay`.
pub fn run(args: ReplayArgs) -> CliResult<ExitCode> {
    let reader = LogReader::open(&args.dir).map_err(|e| cli_error!("{e}"))?;
    let segments = reader.segments().len();
    if args.check {
        let mut records = 0u64;
        let mut first = None;
        for record in reader {
            let (number, _) = record.map_err(|e| cli_error!("{e}"))?;
            first.get_or_insert(number);
            records += 1;
        }
        outln!(
            "{}: {records} records in {segments} segments, from record #{}: all intact",
            args.dir.display(),
            first.unwrap_or(0)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut replay = Replay::new();
    let mut origin = 0u64;
    let mut dumped = false;
    let since = |nanos: u64, origin: u64| nanos.saturating_sub(origin);
    let until = args.until.map(duration_nanos);
    let dump_at = args.dump_at.map(duration_nanos);
    let mut stopped_at = None;
    for record in reader {
        let (number, entry) = record.map_err(|e| cli_error!("{e}"))?;
        match &entry {
            Entry::Start(start) => origin = start.now,
            // A log whose start rotated away begins at a snapshot: times still count
            // from the node's start.
            Entry::Snapshot(snapshot) if replay.node().is_none() => origin = snapshot.started,
            _ => {}
        }
        if let Some(now) = entry.now() {
            let t = since(now, origin);
            if let (Some(at), false) = (dump_at, dumped)
                && t > at
            {
                // The state after the last input at or before TIME.
                match replay.node() {
                    Some(node) => dump::print_replayed(node, replay.now(), args.json)?,
                    None if matches!(entry, Entry::Snapshot(_)) => {
                        return Err(cli_error!(
                            "{}: the log begins at +{} (its start rotated away): there is \
                             no state at +{} to dump",
                            args.dir.display(),
                            format_time(t),
                            format_time(at)
                        ));
                    }
                    None => {}
                }
                dumped = true;
            }
            if until.is_some_and(|u| t > u) {
                stopped_at = Some(number);
                break;
            }
        }
        match replay.step(number, &entry) {
            Ok(Step::Matched { events }) if args.events => {
                for event in events {
                    outln!("+{}  {event:?}", format_time(since(replay.now(), origin)));
                }
            }
            Ok(_) => {}
            Err(e) => return Err(cli_error!("{}: {e}", args.dir.display())),
        }
    }
    if let (Some(_), false) = (dump_at, dumped)
        && let Some(node) = replay.node()
    {
        dump::print_replayed(node, replay.now(), args.json)?;
    }
    let summary = format!(
        "replayed {} inputs up to +{}, {} output checks matched byte for byte",
        replay.inputs(),
        format_time(since(replay.now(), origin)),
        replay.checked()
    );
    let summary = match replay.began_at() {
        0 => summary,
        record => format!(
            "{summary} (from the snapshot at record #{record}; the log's start rotated away)"
        ),
    };
    let summary = match stopped_at {
        Some(record) => format!("{summary} (stopped at record #{record}, --until)"),
        None => summary,
    };
    if dump_at.is_some() && !args.json || args.events {
        eprintln!("{summary}");
    } else if !args.json {
        outln!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
