//! BENCHMARKS.md and the plot, from a run's JSON (`bench/results/latest.json`).
//! `Report` holds the run and its accessors; each section of the markdown is
//! one file (`targets.rs`, `method.rs`, `handshakes.rs`, `streams.rs`,
//! `memory.rs`, `data_path.rs`, `ratios.rs`), the plot is `plot.rs`, the
//! statistics `stats.rs`.

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::results::{Results, Sample};

/// The thresholds.
const T_HANDSHAKE_VS_NOOP: f64 = 1.05;
const T_STREAM_VS_ENVOY: f64 = 1.02;
const T_MODULE_BYTES: u64 = 300_000;

/// The systems a run compares, by their ids in the results: a misspelt
/// name fails to compile instead of printing "n/a".
const MK: &str = "mksgate";
const MK_RAW: &str = "mksgate-raw";
const ENVOY: &str = "envoy";
const NOOP: &str = "noop";
const NOOP_RAW: &str = "noop-raw";
const HAPROXY: &str = "haproxy";
const DIRECT: &str = "direct";
/// The handshake budget's group (plaintext, access logs on): compared only
/// with each other.
const MK_DECLOG: &str = "mksgate-declog";
const MK_REUSABLE: &str = "mksgate-reusable";
const NOOP_LOG: &str = "noop-log";
const NOOP_TOKEN_LOG: &str = "noop-token-log";
const NOOP_CALLS_LOG: &str = "noop-calls-log";
const MK_LOG: &str = "mksgate-log";
const BUDGET: [&str; 6] = [
    NOOP_LOG,
    NOOP_TOKEN_LOG,
    NOOP_CALLS_LOG,
    MK_REUSABLE,
    MK_LOG,
    MK_DECLOG,
];
/// The systems as deployed (TLS both sides, access logs): a group of their
/// own, compared only with each other.
const HAPROXY_TLS: &str = "haproxy-tls";
const ENVOY_TLS: &str = "envoy-tls";
const NOOP_TLS: &str = "noop-tls";
const MK_TLS: &str = "mksgate-tls";
const DEPLOYED: [&str; 4] = [HAPROXY_TLS, ENVOY_TLS, NOOP_TLS, MK_TLS];

/// The mksgate system a ratio for `id` divides: the one of its group.
fn mk_for(id: &str) -> &'static str {
    if DEPLOYED.contains(&id) {
        MK_TLS
    } else if BUDGET.contains(&id) {
        MK_LOG
    } else {
        MK
    }
}

/// The scenarios a run measures (`Sample::scenario`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Handshake,
    HandshakePaced,
    Frames,
    FramesMax,
    Bulk,
    BulkMax,
    Idle,
}

impl Scenario {
    const fn as_str(self) -> &'static str {
        match self {
            Scenario::Handshake => "handshake",
            Scenario::HandshakePaced => "handshake-paced",
            Scenario::Frames => "frames",
            Scenario::FramesMax => "frames-max",
            Scenario::Bulk => "bulk",
            Scenario::BulkMax => "bulk-max",
            Scenario::Idle => "idle",
        }
    }
}

/// A per-sample figure (CPU per op, rate, ...).
type Metric = fn(&Sample) -> Option<f64>;

struct Report<'a> {
    r: &'a Results,
}

mod data_path;
mod deployed;
mod handshakes;
mod memory;
mod method;
mod plot;
mod ratios;
pub mod scale;
pub mod soak;
mod stats;
mod streams;
mod targets;

use stats::*;

impl<'a> Report<'a> {
    fn ids(&self) -> Vec<&'a str> {
        self.r.systems.iter().map(|s| s.id.as_str()).collect()
    }

    fn label(&self, id: &str) -> String {
        self.r
            .systems
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.label.clone())
            .unwrap_or_else(|| id.to_string())
    }

    fn has(&self, id: &str) -> bool {
        self.r.systems.iter().any(|s| s.id == id)
    }

    fn total(&self, id: &str, scenario: Scenario, conc: Option<u32>) -> Option<&'a Sample> {
        self.r.samples.iter().find(|s| {
            s.system == id
                && s.scenario == scenario.as_str()
                && s.round == 0
                && conc.is_none_or(|c| s.concurrency == c)
        })
    }

    fn cycles(&self, id: &str, scenario: Scenario, conc: Option<u32>) -> Vec<&'a Sample> {
        let mut v: Vec<&Sample> = self
            .r
            .samples
            .iter()
            .filter(|s| {
                s.system == id
                    && s.scenario == scenario.as_str()
                    && s.round > 0
                    && conc.is_none_or(|c| s.concurrency == c)
            })
            .collect();
        v.sort_by_key(|s| s.round);
        v
    }

    fn levels(&self) -> Vec<u32> {
        self.r.config.handshake_levels.clone()
    }

    fn rate(s: &Sample) -> Option<f64> {
        (s.wall_s > 0.0).then(|| s.ops as f64 / s.wall_s)
    }

    /// Proxy CPU seconds per op.
    fn cpu_per_op(s: &Sample) -> Option<f64> {
        match (s.proxy_cpu_s, s.ops) {
            (Some(c), n) if n > 0 => Some(c / n as f64),
            _ => None,
        }
    }

    fn cpu_per_gb(s: &Sample) -> Option<f64> {
        match (s.proxy_cpu_s, s.bytes) {
            (Some(c), b) if b > 0 => Some(c / (b as f64 / 1e9)),
            _ => None,
        }
    }

    /// Proxy CPU µs per handshake over every level (sum of CPU / sum of
    /// handshakes), and the same per cycle.
    fn hs_cpu_us(&self, id: &str) -> (Option<f64>, Vec<f64>) {
        let mut cpu = 0.0;
        let mut ops = 0u64;
        let mut any = false;
        for c in self.levels() {
            if let Some(s) = self.total(id, Scenario::Handshake, Some(c)) {
                if let Some(p) = s.proxy_cpu_s {
                    cpu += p;
                    ops += s.ops;
                    any = true;
                }
            }
        }
        let total = (any && ops > 0).then(|| cpu / ops as f64 * 1e6);
        let ncycles = self.r.config.cycles as usize;
        let mut per_cycle = Vec::new();
        for i in 1..=ncycles {
            let mut cpu = 0.0;
            let mut ops = 0u64;
            for c in self.levels() {
                for s in self.cycles(id, Scenario::Handshake, Some(c)) {
                    if s.round as usize == i {
                        cpu += s.proxy_cpu_s.unwrap_or(f64::NAN);
                        ops += s.ops;
                    }
                }
            }
            if ops > 0 {
                per_cycle.push(cpu / ops as f64 * 1e6);
            }
        }
        (total, per_cycle)
    }

    /// Ratio a/b of a per-op metric, overall and per cycle.
    fn ratio_cycles(
        &self,
        a: &str,
        b: &str,
        scenario: Scenario,
        conc: Option<u32>,
        metric: fn(&Sample) -> Option<f64>,
    ) -> (Option<f64>, Vec<f64>) {
        let total = match (
            self.total(a, scenario, conc).and_then(metric),
            self.total(b, scenario, conc).and_then(metric),
        ) {
            (Some(x), Some(y)) if y > 0.0 => Some(x / y),
            _ => None,
        };
        let ca = self.cycles(a, scenario, conc);
        let cb = self.cycles(b, scenario, conc);
        let per: Vec<f64> = ca
            .iter()
            .filter_map(|x| {
                let y = cb.iter().find(|y| y.round == x.round)?;
                Some(metric(x)? / metric(y)?)
            })
            .collect();
        (total, per)
    }

    fn hs_ratio(&self, a: &str, b: &str) -> (Option<f64>, Vec<f64>) {
        let (ta, ca) = self.hs_cpu_us(a);
        let (tb, cb) = self.hs_cpu_us(b);
        let total = match (ta, tb) {
            (Some(x), Some(y)) if y > 0.0 => Some(x / y),
            _ => None,
        };
        let per = ca.iter().zip(cb.iter()).map(|(x, y)| x / y).collect();
        (total, per)
    }

    fn frame_us(s: &Sample) -> Option<f64> {
        Self::cpu_per_op(s).map(|c| c / 2.0 * 1e6)
    }

    fn module_bytes(&self, name: &str) -> Option<u64> {
        self.r
            .modules
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.bytes)
    }

    /// Mean RSS over the repetitions at this --concurrency.
    fn vm_rss(&self, id: &str, c: u32) -> Option<u64> {
        let v: Vec<u64> = self
            .r
            .vm_memory
            .iter()
            .filter(|v| v.system == id && v.concurrency == c)
            .map(|v| v.rss_kb)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<u64>() / v.len() as u64)
    }

    /// kB of RSS each extra worker adds: least-squares slope of RSS over
    /// every --concurrency measured.
    fn per_worker_kb(&self, id: &str) -> Option<f64> {
        let pts: Vec<(f64, f64)> = self
            .r
            .vm_memory
            .iter()
            .filter(|v| v.system == id)
            .map(|v| (f64::from(v.concurrency), v.rss_kb as f64))
            .collect();
        if pts.len() < 2 {
            return None;
        }
        let n = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        (sxx > 0.0).then(|| sxy / sxx)
    }

    fn load_ms(&self, id: &str) -> Option<f64> {
        self.r
            .load_time
            .iter()
            .find(|l| l.system == id)
            .and_then(|l| median(&l.ready_ms))
    }

    fn idle(&self, id: &str) -> Option<&'a Sample> {
        self.r
            .samples
            .iter()
            .find(|s| s.system == id && s.scenario == Scenario::Idle.as_str())
    }

    fn idle_kb_per_session(&self, id: &str) -> Option<f64> {
        let s = self.idle(id)?;
        let n = s.sessions_open? as f64;
        Some((s.rss_kb? as f64 - s.rss_before_kb? as f64) / n.max(1.0))
    }

    fn markdown(&self, svg_rel: &str, analysis: Option<String>) -> String {
        let r = self.r;
        let m = &r.meta;
        let mut o = String::new();
        let w = &mut o;
        let _ = writeln!(w, "# Benchmarks\n");
        let _ = writeln!(
            w,
            "<!-- Generated by `mksgate-loadgen report` from bench/results/latest.json. Edit bench/loadgen/src/report.rs or bench/ANALYSIS.md, not this file. -->\n"
        );
        let _ = writeln!(
            w,
            "**Regenerate:** `make bench` (= `scripts/bench.sh`: builds the modules, the stand-in and the load generator, installs HAProxy if missing, runs every system, then writes `bench/results/latest.json`, this file and `{svg_rel}`). `BENCH_QUICK=1 scripts/bench.sh` is a short smoke run; its numbers are not for the record. The report alone: `cargo run --release -p mksgate-loadgen -- report`.\n"
        );
        if m.quick {
            let _ = writeln!(
                w,
                "> **QUICK MODE RUN** — short slices; the numbers below are a smoke test, not the record.\n"
            );
        }
        let _ = writeln!(
            w,
            "**This run:** {} · {:.1} min wall for the suite · commit `{}`{} · {} · {} CPUs · {:.0} GiB · {} · load average at start `{}`, at end `{}` (a shared machine: other people's builds were running, which is why only ratios within this one run are the figure of merit) · {} · {} · {}.\n",
            m.started_utc,
            m.wall_seconds / 60.0,
            m.git_commit,
            if m.git_dirty { " + uncommitted changes" } else { "" },
            m.cpu_model,
            m.cpus,
            m.mem_total_kb as f64 / 1024.0 / 1024.0,
            m.kernel,
            m.loadavg_start,
            m.loadavg_end,
            m.envoy_version,
            m.haproxy_version,
            m.rustc_version
        );
        let _ = writeln!(w, "![benchmark plot]({svg_rel})\n");

        self.section_targets(w);
        self.section_deployed(w);
        self.section_budget(w);
        self.section_method(w);
        self.section_handshakes(w);
        self.section_streams(w);
        self.section_memory(w);
        self.section_data_path(w);
        self.section_ratios(w);
        if !r.problems.is_empty() {
            let _ = writeln!(w, "## Problems during the run\n");
            for p in &r.problems {
                let _ = writeln!(w, "* {}", p.replace('\n', " "));
            }
            let _ = writeln!(w);
        }
        if let Some(a) = analysis {
            let _ = writeln!(w, "{}", a.trim_end());
            let _ = writeln!(w);
        }
        let _ = writeln!(
            w,
            "## Raw data\n\n`bench/results/latest.json`: every slice of every system (`round` = cycle, 0 = all cycles merged), the configuration, the machine, pinning as read from /proc, module exports, VM memory and start-up times. Logs of the last run: `target/bench/`."
        );
        o
    }
}

/// Read `input`, write `md` and `svg`. `bench/ANALYSIS.md`, if present, is
/// appended to the markdown as written.
pub fn write(root: &Path, input: &Path, md: &Path, svg_path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let res: Results =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", input.display()))?;
    let rep = Report { r: &res };
    if let Some(dir) = svg_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(svg_path, rep.svg())
        .with_context(|| format!("writing {}", svg_path.display()))?;
    let md_dir = md.parent().unwrap_or(root);
    let svg_rel = pathdiff(svg_path, md_dir);
    // The hand-written analysis is about a full run; a quick run's report
    // leaves it out.
    let analysis = if res.meta.quick {
        None
    } else {
        std::fs::read_to_string(root.join("bench/ANALYSIS.md")).ok()
    };
    // The sizing tables of the last `make bench-scale`, if one ran.
    let mut markdown = rep.markdown(&svg_rel, analysis);
    // And of the last `make soak-long`.
    for part in ["bench/results/scale.md", "bench/results/soak.md"] {
        if let Ok(text) = std::fs::read_to_string(root.join(part)) {
            markdown.push('\n');
            markdown.push_str(&text);
        }
    }
    std::fs::write(md, markdown).with_context(|| format!("writing {}", md.display()))?;
    eprintln!("report: wrote {} and {}", md.display(), svg_path.display());
    Ok(())
}

/// `path` relative to `base` when it lies below it, else as given.
fn pathdiff(path: &Path, base: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (p, b) = (abs(path), abs(base));
    p.strip_prefix(&b)
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report is a pure function of the run: rendering the committed
    /// `bench/results/latest.json` gives the committed BENCHMARKS.md and
    /// plot, byte for byte (so a change to the report code that changes its
    /// output shows here, not only at the next `make bench`).
    #[test]
    fn the_committed_run_renders_the_committed_report() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::env::temp_dir().join(format!("mksgate-report-{}", std::process::id()));
        let svg = out.join("bench/results/benchmarks.svg");
        std::fs::create_dir_all(svg.parent().unwrap()).unwrap();
        let md = out.join("BENCHMARKS.md");
        write(&root, &root.join("bench/results/latest.json"), &md, &svg).unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert!(
            read(&md) == read(&root.join("BENCHMARKS.md")),
            "BENCHMARKS.md differs"
        );
        assert!(
            read(&svg) == read(&root.join("bench/results/benchmarks.svg")),
            "the plot differs"
        );
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let (m, se) = mean_se(&[1.0, 1.0, 1.0, 1.0]).unwrap();
        assert_eq!((m, se), (1.0, 0.0));
        assert_eq!(range(&[2.0, 1.0, 3.0]), Some((1.0, 3.0)));
    }

    #[test]
    fn verdicts_say_when_noise_decides() {
        assert_eq!(judge(Some(1.01), &[1.0, 1.01, 1.0, 1.01], 1.02), "**MET**");
        assert_eq!(judge(Some(1.10), &[1.1, 1.1, 1.1, 1.1], 1.02), "**MISSED**");
        assert!(judge(Some(1.03), &[0.98, 1.08, 0.99, 1.07], 1.02).contains("within noise"));
    }
}
