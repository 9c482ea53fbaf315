//! Scenario results, the markdown tables and the infection-curve plot.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{log_base, quantile};

/// One update spread through the cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UpdateResult {
    /// Seconds from the write until the last node had it; `None` if some never did.
    pub reach_all_s: Option<f64>,
    /// Nodes (other than the origin) that got it.
    pub reached: usize,
    /// Nodes (other than the origin) that were up.
    pub of: usize,
    /// Sorted arrival times in seconds after the write (down-sampled to ≤ 400 points).
    pub arrivals: Vec<f64>,
}

/// One crashed node and the verdicts about it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CrashResult {
    /// Seconds from the crash to the first "dead" verdict.
    pub first_s: Option<f64>,
    /// Seconds from the crash until every running node had a verdict; `None` if not all did.
    pub all_s: Option<f64>,
    /// Verdicts seen.
    pub verdicts: usize,
    /// Running nodes.
    pub expected: usize,
}

/// The main scenario of one protocol at one size.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MainResult {
    /// `grapevine` or `foca`.
    pub system: String,
    /// Cluster size.
    pub n: usize,
    /// The config, as `Debug`.
    pub config: String,
    /// Virtual time between two consecutive joins, in ms.
    pub join_stagger_ms: f64,
    /// Seconds from the last join until every node saw every node; `None`: not within the deadline.
    pub join_s: Option<f64>,
    /// Seconds from the last join until traffic settled (the join's rumours ran out).
    pub quiet_after_s: Option<f64>,
    /// Traffic had already settled when the measurement began: `quiet_after_s` is an
    /// upper bound.
    pub quiet_by_then: bool,
    /// Bytes each node sent, on average, from the start until traffic settled.
    pub join_bytes_per_node: f64,
    /// Wall-clock seconds to simulate the first 60 virtual seconds (joins included).
    pub wall_first_60s: Option<f64>,
    /// Length of the idle measurement window, in virtual seconds.
    pub idle_window_s: f64,
    /// Bytes sent per node per second while idle.
    pub idle_bytes_per_node_s: f64,
    /// Packets sent per node per second while idle.
    pub idle_packets_per_node_s: f64,
    /// Dissemination, one entry per update.
    pub updates: Vec<UpdateResult>,
    /// Crash detection, one entry per crash.
    pub crashes: Vec<CrashResult>,
    /// "Dead" verdicts about up nodes during the whole run (no loss).
    pub false_deaths: u64,
    /// Wall-clock seconds of the whole run.
    pub wall_s: f64,
    /// Virtual seconds simulated.
    pub sim_s: f64,
    /// Peak resident set size of the process (VmHWM), bytes.
    pub peak_rss: u64,
    /// Anything worth a footnote.
    pub notes: Vec<String>,
    /// Protocol counters at the end of the run.
    pub counters: Vec<(String, u64)>,
}

/// False verdicts under loss.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LossResult {
    /// `grapevine` or `foca`.
    pub system: String,
    /// Cluster size.
    pub n: usize,
    /// Loss probability of every link.
    pub loss: f64,
    /// Virtual minutes under loss.
    pub minutes: f64,
    /// "Dead" verdicts about nodes that were up.
    pub false_deaths: u64,
    /// "Suspect" verdicts about nodes that were up (if reported).
    pub false_suspects: Option<u64>,
    /// Whether membership was converged at the end.
    pub converged_at_end: bool,
    /// Virtual seconds simulated in all (joining and settling included).
    pub sim_s: f64,
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// Peak RSS, bytes.
    pub peak_rss: u64,
    /// Protocol counters at the end of the run.
    pub counters: Vec<(String, u64)>,
}

/// Everything one invocation of the runner measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Main scenarios.
    pub main: Vec<MainResult>,
    /// Loss scenarios.
    pub loss: Vec<LossResult>,
    /// Runs that failed (system, n, what).
    pub failures: Vec<String>,
    /// Runs skipped because they would not fit in memory.
    #[serde(default)]
    pub skipped: Vec<String>,
}

impl MainResult {
    /// Median and p99 (nearest rank) of the reach-all times, over updates that reached all.
    pub fn reach_all(&self) -> (Option<f64>, Option<f64>) {
        let v: Vec<f64> = self.updates.iter().filter_map(|u| u.reach_all_s).collect();
        (quantile(&v, 0.5), quantile(&v, 0.99))
    }

    /// Median over crashes of the first and the last verdict.
    pub fn crash_detection(&self) -> (Option<f64>, Option<f64>) {
        let first: Vec<f64> = self.crashes.iter().filter_map(|c| c.first_s).collect();
        let all: Vec<f64> = self.crashes.iter().filter_map(|c| c.all_s).collect();
        (quantile(&first, 0.5), quantile(&all, 0.5))
    }

    /// Median and maximum over crashes of the time until every node had a verdict
    /// (`None` for the maximum if some crash was never detected by all).
    pub fn crash_all_cell(&self) -> String {
        let all: Vec<f64> = self.crashes.iter().filter_map(|c| c.all_s).collect();
        let med = quantile(&all, 0.5);
        if self.crashes.len() <= 1 {
            return opt(med, 1);
        }
        let max = if all.len() == self.crashes.len() {
            quantile(&all, 1.0)
        } else {
            None
        };
        format!(
            "{} (max {})",
            opt(med, 1),
            max.map_or_else(|| "never".to_string(), |m| format!("{m:.1}"))
        )
    }

    /// The update whose reach-all time is the median one (or the first).
    pub fn median_update(&self) -> Option<&UpdateResult> {
        let mut ok: Vec<&UpdateResult> = self
            .updates
            .iter()
            .filter(|u| u.reach_all_s.is_some())
            .collect();
        ok.sort_by(|a, b| {
            a.reach_all_s
                .unwrap_or(0.0)
                .total_cmp(&b.reach_all_s.unwrap_or(0.0))
        });
        ok.get(ok.len().saturating_sub(1) / 2)
            .copied()
            .or(self.updates.first())
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "—".to_string(), |x| format!("{x:.prec$}"))
}

fn mb(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / (1024.0 * 1024.0))
}

/// Down-samples sorted values to at most `max` points, keeping the last.
pub fn downsample(sorted: &[f64], max: usize) -> Vec<f64> {
    if sorted.len() <= max {
        return sorted.to_vec();
    }
    let mut out: Vec<f64> = (0..max)
        .map(|k| sorted[k * (sorted.len() - 1) / (max - 1)])
        .collect();
    out.dedup_by(|a, b| a == b);
    out
}

/// Mean-field fraction of informed nodes after each round (index 0 = one node).
/// `push` is the push fanout; `pull` whether each node also pulls from one random peer.
pub fn theory_curve(n: usize, push: f64, pull: bool, rounds: usize) -> Vec<f64> {
    let mut x = 1.0 / n as f64;
    let mut out = vec![x];
    for _ in 0..rounds {
        let u = 1.0 - x;
        let stays = (-push * x).exp() * if pull { u } else { 1.0 };
        x = 1.0 - u * stays;
        out.push(x);
    }
    out
}

/// Rounds until the mean-field curve passes `1 - 1/(2N)` (everyone, in expectation).
pub fn theory_rounds(n: usize, push: f64, pull: bool) -> usize {
    let c = theory_curve(n, push, pull, 200);
    c.iter()
        .position(|&x| x >= 1.0 - 0.5 / n as f64)
        .unwrap_or(200)
}

impl Report {
    fn main_for(&self, system: &str, n: usize) -> Option<&MainResult> {
        self.main.iter().find(|m| m.system == system && m.n == n)
    }

    fn sizes(&self) -> Vec<usize> {
        let mut ns: Vec<usize> = self
            .main
            .iter()
            .map(|m| m.n)
            .chain(self.loss.iter().map(|l| l.n))
            .collect();
        ns.sort_unstable();
        ns.dedup();
        ns
    }

    /// The tables, as markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let ns = self.sizes();
        let cell = |sys: &str, n: usize, f: &dyn Fn(&MainResult) -> String| {
            self.main_for(sys, n).map_or_else(|| "—".to_string(), f)
        };

        let _ = writeln!(
            s,
            "### Membership, failure detection and idle cost (grapevine / foca)\n"
        );
        let _ = writeln!(
            s,
            "| N | join → all see all (s) | join → traffic settled (s) | bytes sent per node until then (kB) | crash → first verdict (s), median | crash → all verdicts (s), median (max) | idle bytes/node/s | idle packets/node/s | false deaths, no loss |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for &n in &ns {
            let pair = |f: &dyn Fn(&MainResult) -> String| {
                format!("{} / {}", cell("grapevine", n, f), cell("foca", n, f))
            };
            let _ = writeln!(
                s,
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
                pair(&|m| m
                    .join_s
                    .map_or_else(|| "never".to_string(), |v| format!("{v:.2}"))),
                pair(&|m| {
                    let v = opt(m.quiet_after_s, 0);
                    if m.quiet_by_then {
                        format!("≤ {v}")
                    } else {
                        v
                    }
                }),
                pair(&|m| format!("{:.0}", m.join_bytes_per_node / 1000.0)),
                pair(&|m| opt(m.crash_detection().0, 2)),
                pair(&|m| m.crash_all_cell()),
                pair(&|m| format!("{:.0}", m.idle_bytes_per_node_s)),
                pair(&|m| format!("{:.2}", m.idle_packets_per_node_s)),
                pair(&|m| m.false_deaths.to_string()),
            );
        }

        let _ = writeln!(s, "\n### Dissemination of one update to every node\n");
        let _ = writeln!(
            s,
            "| N | updates reaching all within 120 s (grapevine / foca) | grapevine median (s) | grapevine p99 (s) | grapevine median (rounds of 1 s) | log3 N | log4 N | log4 N + 3 | push-pull theory (rounds) | foca median (s) | foca p99 (s) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for &n in &ns {
            let g = self.main_for("grapevine", n);
            let f = self.main_for("foca", n);
            let (gm, gp) = g.map_or((None, None), MainResult::reach_all);
            let (fm, fp) = f.map_or((None, None), MainResult::reach_all);
            let rounds = g.and_then(|g| {
                let interval = gossip_interval_s(&g.config);
                gm.map(|m| m / interval)
            });
            let nf = n as f64;
            let reached = |m: Option<&MainResult>| {
                m.map_or("—".to_string(), |m| {
                    let ok = m.updates.iter().filter(|u| u.reach_all_s.is_some()).count();
                    format!("{ok}/{}", m.updates.len())
                })
            };
            let updates = format!("{} / {}", reached(g), reached(f));
            let _ = writeln!(
                s,
                "| {n} | {updates} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
                opt(gm, 2),
                opt(gp, 2),
                opt(rounds, 1),
                log_base(nf, 3.0),
                log_base(nf, 4.0),
                log_base(nf, 4.0) + 3.0,
                theory_rounds(n, 1.0, true),
                opt(fm, 2),
                opt(fp, 2),
            );
        }

        if !self.loss.is_empty() {
            let _ = writeln!(
                s,
                "\n### False \"dead\" verdicts under random loss (no node is down)\n"
            );
            let _ = writeln!(
                s,
                "| N | loss | simulated minutes | grapevine false deaths | grapevine false suspicions | foca false deaths | converged at the end (grapevine / foca) |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|");
            let mut keys: Vec<(usize, u64)> = self
                .loss
                .iter()
                .map(|l| (l.n, (l.loss * 1000.0) as u64))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            for (n, permille) in keys {
                let find = |sys: &str| {
                    self.loss.iter().find(|l| {
                        l.system == sys && l.n == n && (l.loss * 1000.0) as u64 == permille
                    })
                };
                let g = find("grapevine");
                let f = find("foca");
                let minutes = g.or(f).map_or(0.0, |l| l.minutes);
                let yes = |l: Option<&LossResult>| {
                    l.map_or("—", |l| if l.converged_at_end { "yes" } else { "no" })
                };
                let _ = writeln!(
                    s,
                    "| {n} | {}% | {minutes:.0} | {} | {} | {} | {} / {} |",
                    permille / 10,
                    g.map_or("—".into(), |l| l.false_deaths.to_string()),
                    g.and_then(|l| l.false_suspects)
                        .map_or("—".into(), |v| v.to_string()),
                    f.map_or("—".into(), |l| l.false_deaths.to_string()),
                    yes(g),
                    yes(f),
                );
            }
        }

        let _ = writeln!(s, "\n### Cost of the simulation itself\n");
        let _ = writeln!(
            s,
            "| N | system | wall time, first 60 simulated s (s) | wall time, whole run (s) | simulated s | simulated s per wall s | peak RSS (MiB) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for &n in &ns {
            for sys in ["grapevine", "foca"] {
                if let Some(m) = self.main_for(sys, n) {
                    let _ = writeln!(
                        s,
                        "| {n} | {sys} | {} | {:.1} | {:.0} | {:.1} | {} |",
                        opt(m.wall_first_60s, 1),
                        m.wall_s,
                        m.sim_s,
                        m.sim_s / m.wall_s.max(1e-9),
                        mb(m.peak_rss)
                    );
                }
            }
        }
        for l in &self.loss {
            // Older reports lack `sim_s`: the join and settle phase ran to t = 600 s.
            let sim_s = if l.sim_s > 0.0 {
                l.sim_s
            } else {
                600.0 + l.minutes * 60.0
            };
            let _ = writeln!(
                s,
                "| {} | {} ({}% loss, {:.0} min) | — | {:.1} | {:.0} | {:.1} | {} |",
                l.n,
                l.system,
                (l.loss * 100.0).round(),
                l.minutes,
                l.wall_s,
                sim_s,
                sim_s / l.wall_s.max(1e-9),
                mb(l.peak_rss)
            );
        }
        let notes: Vec<String> = self
            .main
            .iter()
            .flat_map(|m| {
                m.notes
                    .iter()
                    .map(move |x| format!("{} N={}: {x}", m.system, m.n))
            })
            .chain(self.failures.iter().cloned())
            .chain(self.skipped.iter().cloned())
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(s, "\nNotes:\n");
            for n in notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// Writes `infection-N<n>.svg` into `dir` for each size with a Grapevine or foca
    /// dissemination result; returns the paths written.
    pub fn plot(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
        let mut written = Vec::new();
        for n in self.sizes() {
            let g = self.main_for("grapevine", n);
            let f = self.main_for("foca", n);
            let gu = g.and_then(MainResult::median_update);
            let fu = f.and_then(MainResult::median_update);
            if gu.is_none() && fu.is_none() {
                continue;
            }
            let path = dir.join(format!("infection-N{n}.svg"));
            let interval = g.map_or(1.0, |g| gossip_interval_s(&g.config));
            plot_one(&path, n, gu, fu, interval).map_err(|e| format!("{}: {e}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Grapevine's gossip interval in seconds, read back from the config's `Debug` text.
fn gossip_interval_s(config: &str) -> f64 {
    // `gossip_interval: 1s` or `gossip_interval: 500ms`
    let Some(rest) = config.split("gossip_interval: ").nth(1) else {
        return 1.0;
    };
    let token: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    if let Some(ms) = token.strip_suffix("ms") {
        ms.parse::<f64>().map_or(1.0, |v| v / 1000.0)
    } else if let Some(s) = token.strip_suffix('s') {
        s.parse().unwrap_or(1.0)
    } else {
        1.0
    }
}

/// `(t, fraction informed)` points of one update in a cluster of `n`, origin included.
fn infection_points(u: &UpdateResult, n: usize) -> Vec<(f64, f64)> {
    let total = (u.of + 1).max(1) as f64;
    let mut pts = vec![(0.0, 1.0 / total)];
    let step = if u.arrivals.is_empty() {
        0.0
    } else {
        u.reached as f64 / u.arrivals.len() as f64
    };
    for (k, &t) in u.arrivals.iter().enumerate() {
        pts.push((t, (1.0 + (k + 1) as f64 * step) / total));
    }
    let _ = n;
    pts
}

fn plot_one(
    path: &Path,
    n: usize,
    g: Option<&UpdateResult>,
    f: Option<&UpdateResult>,
    interval: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let gp = g.map(|u| infection_points(u, n)).unwrap_or_default();
    let fp = f.map(|u| infection_points(u, n)).unwrap_or_default();
    let rounds = theory_rounds(n, 1.0, true).max(theory_rounds(n, 3.0, false)) + 2;
    let pull = theory_curve(n, 1.0, true, rounds);
    let push3 = theory_curve(n, 3.0, false, rounds);
    let tmax = gp
        .iter()
        .chain(fp.iter())
        .map(|p| p.0)
        .fold(rounds as f64 * interval, f64::max)
        .max(1.0);

    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Infection curve, N = {n}: one update, fraction of nodes that know it"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..tmax * 1.02, 0.0..1.02)?;
    chart
        .configure_mesh()
        .x_desc("seconds after the write")
        .y_desc("fraction of nodes")
        .draw()?;
    let step = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(pts.len() * 2);
        for w in pts.windows(2) {
            out.push(w[0]);
            out.push((w[1].0, w[0].1));
        }
        if let Some(&last) = pts.last() {
            out.push(last);
        }
        out
    };
    if !gp.is_empty() {
        chart
            .draw_series(LineSeries::new(step(&gp), BLUE.stroke_width(2)))?
            .label("grapevine (simulated)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    }
    if !fp.is_empty() {
        chart
            .draw_series(LineSeries::new(step(&fp), RED.stroke_width(2)))?
            .label("foca custom broadcast (simulated)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    let theory = |c: &[f64]| -> Vec<(f64, f64)> {
        c.iter()
            .enumerate()
            .map(|(r, &x)| (r as f64 * interval, x))
            .collect()
    };
    let grey = RGBColor(90, 90, 90);
    chart
        .draw_series(LineSeries::new(theory(&pull), grey.stroke_width(1)))?
        .label("theory: push-pull, 1 peer per round (≈ log3 N rounds)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1)));
    let green = RGBColor(0, 140, 0);
    chart
        .draw_series(LineSeries::new(theory(&push3), green.stroke_width(1)))?
        .label("theory: push to 3 peers per round (≈ log4 N rounds)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], green.stroke_width(1)));
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
    fn theory_matches_the_log_rules() {
        // Push-pull with one peer triples the informed set early on: log3 N rounds, plus
        // a short doubly-exponential tail (Karp et al.: log3 N + O(ln ln N)).
        let r = theory_rounds(10_000, 1.0, true);
        assert!((9..=13).contains(&r), "{r}");
        let c = theory_curve(1000, 3.0, false, 30);
        assert!(c.windows(2).all(|w| w[1] >= w[0]));
        assert!(*c.last().unwrap() > 0.999);
        assert_eq!(
            gossip_interval_s("Config { gossip_interval: 500ms, x: 1s }"),
            0.5
        );
        assert_eq!(gossip_interval_s("Config { gossip_interval: 1s }"), 1.0);
        assert_eq!(downsample(&[1.0, 2.0, 3.0], 10).len(), 3);
        assert_eq!(
            downsample(&(0..1000).map(f64::from).collect::<Vec<_>>(), 5),
            vec![0.0, 249.0, 499.0, 749.0, 999.0]
        );
    }
}
