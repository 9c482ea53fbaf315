//! The node's figures, recorded through the [`metrics`] facade for whatever recorder
//! the program installs (`grapevine node --metrics ADDR` installs a Prometheus
//! exporter). Without a recorder every handle here is a no-op.
//!
//! The figures come from the core's [`Stats`] (counters, recorded as the increase
//! since the last flush), its gauges (rumour queue depth, local health), the member
//! table (on membership events only: a scan), and the request events (latency from
//! [`Command::Request`](crate::Command::Request) to its response or failure). Every
//! series carries a `node` label with the node's address, so the nodes of one
//! process (the demo, tests) stay apart.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `grapevine_members` | gauge | `state`: alive, suspect, dead, left |
//! | `grapevine_packets_in_total`, `grapevine_packets_out_total` | counter | |
//! | `grapevine_bytes_in_total`, `grapevine_bytes_out_total` | counter | |
//! | `grapevine_packets_dropped_total` | counter | `reason`: truncated, oversized, bad_magic, unsupported_version, foreign_cluster, unauthenticated, malformed, from_self, replayed |
//! | `grapevine_probes_total`, `grapevine_indirect_probes_total`, `grapevine_nacks_total` | counter | |
//! | `grapevine_suspicions_total`, `grapevine_refutations_total`, `grapevine_deaths_total` | counter | |
//! | `grapevine_rumour_queue_depth`, `grapevine_local_health` | gauge | |
//! | `grapevine_requests_total` | counter | `path`: local, forwarded, failed_over, duplicate |
//! | `grapevine_request_duration_seconds` | histogram | `outcome`: answered, failed |
//! | `grapevine_*_total` for the hardening counters, syncs, deltas, dropped responses and events, socket and save errors | counter | |

use std::collections::HashMap;

use grapevine::{RequestId, Stats, Status};
use metrics::{Counter, Gauge, Histogram, Unit};

use crate::{CoreNode, Event};

/// One core counter: its metric, and how to read it from [`Stats`].
struct StatCounter {
    counter: Counter,
    read: fn(&Stats) -> u64,
}

/// The driver's own counters, read at each flush.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DriverCounts {
    pub events_dropped: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    pub persist_errors: u64,
}

/// The handles of every series of one node, and what was last recorded.
pub(crate) struct Metrics {
    stats: Vec<StatCounter>,
    last: Stats,
    driver: [Counter; 4],
    last_driver: DriverCounts,
    members: [Gauge; 4],
    rumours: Gauge,
    health: Gauge,
    answered: Histogram,
    failed: Histogram,
    /// When each request in flight was accepted. Bounded: the core ends every request
    /// it accepts with a response or a failure, and tracks at most
    /// `max_requests_in_flight` of them; `cap` guards against a leak all the same.
    started: HashMap<RequestId, grapevine::Instant>,
    cap: usize,
    /// Whether the members gauges were ever set (a lone node sees no membership event).
    members_set: bool,
}

/// A core counter's metric name, its labels besides `node`, and how to read it.
type StatSpec = (
    &'static str,
    &'static [(&'static str, &'static str)],
    fn(&Stats) -> u64,
);

/// The core counters, by metric name and labels.
const STATS: &[StatSpec] = &[
    ("grapevine_packets_in_total", &[], |s| s.packets_in),
    ("grapevine_packets_out_total", &[], |s| s.packets_out),
    ("grapevine_bytes_in_total", &[], |s| s.bytes_in),
    ("grapevine_bytes_out_total", &[], |s| s.bytes_out),
    (DROPPED, &[("reason", "truncated")], |s| s.drops.truncated),
    (DROPPED, &[("reason", "oversized")], |s| s.drops.oversized),
    (DROPPED, &[("reason", "bad_magic")], |s| s.drops.bad_magic),
    (DROPPED, &[("reason", "unsupported_version")], |s| {
        s.drops.unsupported_version
    }),
    (DROPPED, &[("reason", "foreign_cluster")], |s| {
        s.drops.foreign_cluster
    }),
    (DROPPED, &[("reason", "unauthenticated")], |s| {
        s.drops.unauthenticated
    }),
    (DROPPED, &[("reason", "malformed")], |s| s.drops.malformed),
    (DROPPED, &[("reason", "from_self")], |s| s.drops.from_self),
    (DROPPED, &[("reason", "replayed")], |s| s.drops.replayed),
    ("grapevine_probes_total", &[], |s| s.probes),
    ("grapevine_indirect_probes_total", &[], |s| {
        s.indirect_probes
    }),
    ("grapevine_nacks_total", &[], |s| s.nacks),
    ("grapevine_suspicions_total", &[], |s| s.suspicions),
    ("grapevine_refutations_total", &[], |s| s.refutations),
    ("grapevine_deaths_total", &[], |s| s.deaths),
    ("grapevine_members_refused_total", &[], |s| {
        s.members_refused
    }),
    ("grapevine_claims_refused_total", &[], |s| s.claims_refused),
    ("grapevine_members_evicted_total", &[], |s| {
        s.members_evicted
    }),
    ("grapevine_rumours_evicted_total", &[], |s| {
        s.rumours_evicted
    }),
    ("grapevine_rumours_quieted_total", &[], |s| {
        s.rumours_quieted
    }),
    ("grapevine_syncs_total", &[], |s| s.syncs),
    ("grapevine_state_refused_total", &[], |s| s.state_refused),
    ("grapevine_deltas_applied_total", &[], |s| s.deltas_applied),
    (REQUESTS, &[("path", "local")], |s| s.requests_local),
    (REQUESTS, &[("path", "forwarded")], |s| s.requests_forwarded),
    (REQUESTS, &[("path", "failed_over")], |s| {
        s.requests_failed_over
    }),
    (REQUESTS, &[("path", "duplicate")], |s| s.requests_duplicate),
    ("grapevine_responses_dropped_total", &[], |s| {
        s.responses_dropped
    }),
];

const DROPPED: &str = "grapevine_packets_dropped_total";
const REQUESTS: &str = "grapevine_requests_total";
const MEMBERS: &str = "grapevine_members";
const DURATION: &str = "grapevine_request_duration_seconds";

impl Metrics {
    /// Registers the series of the node at `node` with the recorder installed now.
    pub fn new(node: String, max_requests: usize) -> Self {
        describe();
        let label = |extra: &[(&str, &str)]| {
            let mut labels = vec![("node".to_owned(), node.clone())];
            labels.extend(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            labels
        };
        let stats = STATS
            .iter()
            .map(|&(name, extra, read)| StatCounter {
                counter: metrics::counter!(name, &label(extra)),
                read,
            })
            .collect();
        let driver = [
            "grapevine_events_dropped_total",
            "grapevine_send_errors_total",
            "grapevine_recv_errors_total",
            "grapevine_persist_errors_total",
        ]
        .map(|name| metrics::counter!(name, &label(&[])));
        let members = ["alive", "suspect", "dead", "left"]
            .map(|state| metrics::gauge!(MEMBERS, &label(&[("state", state)])));
        Metrics {
            stats,
            last: Stats::default(),
            driver,
            last_driver: DriverCounts::default(),
            members,
            rumours: metrics::gauge!("grapevine_rumour_queue_depth", &label(&[])),
            health: metrics::gauge!("grapevine_local_health", &label(&[])),
            answered: metrics::histogram!(DURATION, &label(&[("outcome", "answered")])),
            failed: metrics::histogram!(DURATION, &label(&[("outcome", "failed")])),
            started: HashMap::new(),
            cap: max_requests.max(1) * 2,
            members_set: false,
        }
    }

    /// A request was accepted at `now`.
    pub fn request_started(&mut self, id: RequestId, now: grapevine::Instant) {
        if self.started.len() >= self.cap {
            // Only a broken promise of the core gets here: forget the oldest half.
            let mut times: Vec<grapevine::Instant> = self.started.values().copied().collect();
            times.sort_unstable();
            let median = times[times.len() / 2];
            self.started.retain(|_, t| *t > median);
        }
        self.started.insert(id, now);
    }

    /// Records what `event` ends (a request), before the event goes to subscribers.
    /// Returns whether it changed a member's liveness.
    pub fn on_event(&mut self, event: &Event, now: grapevine::Instant) -> bool {
        match event {
            Event::Response { id, .. } => {
                if let Some(t) = self.started.remove(id) {
                    self.answered.record((now - t).as_secs_f64());
                }
                false
            }
            Event::RequestFailed { id, .. } => {
                if let Some(t) = self.started.remove(id) {
                    self.failed.record((now - t).as_secs_f64());
                }
                false
            }
            Event::MemberJoined(_)
            | Event::MemberSuspect(_)
            | Event::MemberRecovered(_)
            | Event::MemberDied(_)
            | Event::MemberLeft(_) => true,
            _ => false,
        }
    }

    /// Records the counters' increase since the last call and the gauges; the member
    /// table is scanned the first time and then only when `members_changed`.
    pub fn record(&mut self, node: &CoreNode, driver: DriverCounts, members_changed: bool) {
        let stats = node.stats();
        for s in &self.stats {
            let (now, before) = ((s.read)(stats), (s.read)(&self.last));
            if now > before {
                s.counter.increment(now - before);
            }
        }
        self.last = *stats;
        let counts = [
            (driver.events_dropped, self.last_driver.events_dropped),
            (driver.send_errors, self.last_driver.send_errors),
            (driver.recv_errors, self.last_driver.recv_errors),
            (driver.persist_errors, self.last_driver.persist_errors),
        ];
        for (counter, (now, before)) in self.driver.iter().zip(counts) {
            if now > before {
                counter.increment(now - before);
            }
        }
        self.last_driver = driver;
        self.rumours.set(node.rumours_queued() as f64);
        self.health.set(f64::from(node.health()));
        if members_changed || !self.members_set {
            self.members_set = true;
            let mut by_state = [0u32; 4];
            for m in node.members() {
                by_state[match m.state {
                    Status::Alive => 0,
                    Status::Suspect => 1,
                    Status::Dead => 2,
                    Status::Left => 3,
                }] += 1;
            }
            for (gauge, n) in self.members.iter().zip(by_state) {
                gauge.set(f64::from(n));
            }
        }
    }
}

/// Tells the recorder what each series means (once per process is enough; again is
/// harmless).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        MEMBERS,
        Unit::Count,
        "Members this node knows (itself included), by state."
    );
    describe_counter!(
        "grapevine_packets_in_total",
        Unit::Count,
        "Datagrams received."
    );
    describe_counter!(
        "grapevine_packets_out_total",
        Unit::Count,
        "Datagrams sent."
    );
    describe_counter!(
        "grapevine_bytes_in_total",
        Unit::Bytes,
        "Bytes of datagrams received."
    );
    describe_counter!(
        "grapevine_bytes_out_total",
        Unit::Bytes,
        "Bytes of datagrams sent."
    );
    describe_counter!(
        DROPPED,
        Unit::Count,
        "Datagrams dropped, by reason (a wrong cluster name or key shows here)."
    );
    describe_counter!(
        "grapevine_probes_total",
        Unit::Count,
        "Direct probes (pings) sent."
    );
    describe_counter!(
        "grapevine_indirect_probes_total",
        Unit::Count,
        "Indirect probe requests (ping-req) sent."
    );
    describe_counter!(
        "grapevine_suspicions_total",
        Unit::Count,
        "Members this node began to suspect."
    );
    describe_counter!(
        "grapevine_refutations_total",
        Unit::Count,
        "Times this node refuted a suspicion of itself."
    );
    describe_counter!(
        "grapevine_deaths_total",
        Unit::Count,
        "Members this node declared dead."
    );
    describe_gauge!(
        "grapevine_rumour_queue_depth",
        Unit::Count,
        "Rumours not yet sent their retransmit budget."
    );
    describe_gauge!(
        "grapevine_local_health",
        Unit::Count,
        "Lifeguard's local health multiplier: 0 when healthy."
    );
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests by path: delivered here, forwarded, failed over, duplicates dropped."
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Time from accepting a request to its response or failure."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn counters_record_the_increase_and_requests_their_latency() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let options = crate::Options::new("127.0.0.1:0".parse().unwrap());
            let mut driver = crate::Driver::new(
                &options,
                "127.0.0.1:9".parse().unwrap(),
                crate::Clock::new(),
            )
            .unwrap();
            let mut metrics = Metrics::new("n1".into(), 4);
            metrics.record(driver.node(), DriverCounts::default(), false);
            // Garbage is dropped and counted by the core.
            driver.handle_datagram("127.0.0.1:10".parse().unwrap(), b"junk");
            metrics.record(driver.node(), DriverCounts::default(), false);
            let t0 = grapevine::Instant::from_secs(1);
            metrics.request_started(RequestId(7), t0);
            let answered = Event::Response {
                id: RequestId(7),
                from: driver.id().clone(),
                payload: Vec::new(),
            };
            metrics.on_event(&answered, t0 + std::time::Duration::from_millis(250));
        });
        let values: HashMap<String, DebugValue> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().labels().any(|l| l.value() == "n1"))
            .map(|(key, _, _, value)| {
                let labels: Vec<String> = key
                    .key()
                    .labels()
                    .filter(|l| l.key() != "node")
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                (format!("{}{labels:?}", key.key().name()), value)
            })
            .collect();
        let get = |name: &str| {
            values
                .get(name)
                .unwrap_or_else(|| panic!("{name}: {values:?}"))
        };
        assert_eq!(get("grapevine_packets_in_total[]"), &DebugValue::Counter(1));
        let dropped: u64 = values
            .iter()
            .filter(|(k, _)| k.starts_with(DROPPED))
            .map(|(_, v)| match v {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum();
        assert_eq!(dropped, 1, "one drop, under its reason");
        assert_eq!(
            get("grapevine_members[\"state=alive\"]"),
            &DebugValue::Gauge(1.0.into())
        );
        let DebugValue::Histogram(latencies) =
            get("grapevine_request_duration_seconds[\"outcome=answered\"]")
        else {
            panic!("a histogram")
        };
        assert_eq!(latencies.len(), 1);
        assert!((latencies[0].into_inner() - 0.25).abs() < 1e-9);
    }
}
