//! BENCHMARKS.md and the plot, from a run's JSON (`bench/results/latest.json`).

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::results::{Results, Sample};
use crate::svg::{self, Panel, Series};

/// The thresholds.
const T_HANDSHAKE_VS_NOOP: f64 = 1.05;
const T_STREAM_VS_ENVOY: f64 = 1.02;
const T_MODULE_BYTES: u64 = 300_000;

const MK: &str = "mksgate";

/// A per-sample figure (CPU per op, rate, ...).
type Metric = fn(&Sample) -> Option<f64>;

struct Report<'a> {
    r: &'a Results,
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "—".into(),
    }
}

fn fmt_ratio(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "—".into(),
    }
}

fn range(vals: &[f64]) -> Option<(f64, f64)> {
    let mut it = vals.iter().copied().filter(|v| v.is_finite());
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
}

/// Mean and standard error of the mean.
fn mean_se(vals: &[f64]) -> Option<(f64, f64)> {
    let v: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return Some((mean, f64::NAN));
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, (var / n).sqrt()))
}

/// "cycles 0.97–1.03, mean 1.00 ± 0.01" (± one standard error).
fn fmt_range(vals: &[f64]) -> String {
    match (range(vals), mean_se(vals)) {
        (Some((lo, hi)), Some((m, se))) if se.is_finite() => {
            format!("{lo:.3}–{hi:.3}, mean {m:.3} ± {se:.3}")
        }
        (Some((lo, hi)), _) => format!("{lo:.3}–{hi:.3}"),
        _ => "—".into(),
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn errors_text(s: &Sample) -> String {
    if s.errors.is_empty() {
        "0".into()
    } else {
        s.errors
            .iter()
            .map(|(k, v)| format!("{v}× {k}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// MET / MISSED for "ratio ≤ threshold", saying when the per-window mean
/// ± 2 standard errors straddles the threshold (the run cannot tell).
fn judge(total: Option<f64>, per: &[f64], threshold: f64) -> String {
    let Some(t) = total else {
        return verdict(None).into();
    };
    let ok = t <= threshold;
    let close = mean_se(per)
        .filter(|(_, se)| se.is_finite())
        .is_some_and(|(m, se)| (m - 2.0 * se) <= threshold && threshold <= (m + 2.0 * se));
    match (ok, close) {
        (true, false) => "**MET**".into(),
        (false, false) => "**MISSED**".into(),
        (true, true) => "**MET**, within noise (mean ± 2 SE spans the threshold)".into(),
        (false, true) => "**MISSED**, within noise (mean ± 2 SE spans the threshold)".into(),
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**MET**",
        Some(false) => "**MISSED**",
        None => "not measured",
    }
}

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

    fn total(&self, id: &str, scenario: &str, conc: Option<u32>) -> Option<&'a Sample> {
        self.r.samples.iter().find(|s| {
            s.system == id
                && s.scenario == scenario
                && s.round == 0
                && conc.is_none_or(|c| s.concurrency == c)
        })
    }

    fn cycles(&self, id: &str, scenario: &str, conc: Option<u32>) -> Vec<&'a Sample> {
        let mut v: Vec<&Sample> = self
            .r
            .samples
            .iter()
            .filter(|s| {
                s.system == id
                    && s.scenario == scenario
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
            if let Some(s) = self.total(id, "handshake", Some(c)) {
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
                for s in self.cycles(id, "handshake", Some(c)) {
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
        scenario: &str,
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
            .find(|s| s.system == id && s.scenario == "idle")
    }

    fn idle_kb_per_session(&self, id: &str) -> Option<f64> {
        let s = self.idle(id)?;
        let n = s.sessions_open? as f64;
        Some((s.rss_kb? as f64 - s.rss_before_kb? as f64) / n.max(1.0))
    }

    fn svg(&self) -> String {
        let ids: Vec<&str> = self
            .ids()
            .into_iter()
            .filter(|id| {
                self.total(id, "frames", None).is_some()
                    || self.total(id, "frames-max", None).is_some()
                    || *id == "direct"
            })
            .collect();
        let proxies: Vec<&str> = ids.iter().copied().filter(|i| *i != "direct").collect();
        let palette = |id: &str| -> String {
            match id {
                "direct" => "#9e9e9e",
                "haproxy" => "#2e7d32",
                "envoy" => "#1565c0",
                "noop" => "#64b5f6",
                "noop-raw" => "#90caf9",
                "mksgate" => "#e65100",
                "mksgate-raw" => "#ffb74d",
                _ => "#8d6e63",
            }
            .to_string()
        };
        let level_colors = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"];
        let hs_series: Vec<Series> = self
            .levels()
            .iter()
            .enumerate()
            .map(|(i, c)| Series {
                name: format!("{c} client{}", if *c == 1 { "" } else { "s" }),
                color: level_colors[i % level_colors.len()].to_string(),
                bars: ids
                    .iter()
                    .map(|id| {
                        self.total(id, "handshake", Some(*c))
                            .and_then(Self::rate)
                            .map(|v| (v, None))
                    })
                    .collect(),
            })
            .collect();
        let single = |title: &str,
                      sys: &[&str],
                      f: &dyn Fn(&str) -> svg::Bar,
                      vf: fn(f64) -> String| Panel {
            title: title.to_string(),
            categories: sys.iter().map(|i| self.label(i)).collect(),
            series: vec![Series {
                name: String::new(),
                color: "#555".into(),
                bars: sys.iter().map(|i| f(i)).collect(),
            }],
            category_colors: Some(sys.iter().map(|i| palette(i)).collect()),
            value_format: vf,
            ymin: None,
            refs: Vec::new(),
        };
        let f0: fn(f64) -> String = |v| format!("{v:.0}");
        let f1: fn(f64) -> String = |v| format!("{v:.1}");
        let f2: fn(f64) -> String = |v| format!("{v:.2}");
        let f3: fn(f64) -> String = |v| format!("{v:.2}");
        let us = |s: &Sample| Self::cpu_per_op(s).map(|c| c * 1e6);
        // mksgate ÷ X at the same load: total ratio, whisker ± 2 standard
        // errors of the per-window ratios.
        let ratio_bar =
            |other: &str, a: &str, sc: &str, m: fn(&Sample) -> Option<f64>| -> svg::Bar {
                let (t, per) = self.ratio_cycles(a, other, sc, None, m);
                let t = t?;
                let wh = mean_se(&per)
                    .filter(|(_, se)| se.is_finite())
                    .map(|(_, se)| (t - 2.0 * se, t + 2.0 * se));
                Some((t, wh))
            };
        let ratio_scen: [(&str, &str, Metric); 3] = [
            ("per handshake", "handshake-paced", Self::cpu_per_op),
            ("per console frame", "frames", Self::cpu_per_op),
            ("per GB bulk", "bulk", Self::cpu_per_gb),
        ];
        let ratio_series: Vec<Series> = [
            ("mksgate ÷ Envoy", MK, "envoy", "#1565c0"),
            ("mksgate ÷ Envoy+noop", MK, "noop", "#64b5f6"),
            ("raw ÷ shipped mksgate", "mksgate-raw", MK, "#ffb74d"),
        ]
        .iter()
        .map(|(name, a, b, color)| Series {
            name: name.to_string(),
            color: color.to_string(),
            bars: ratio_scen
                .iter()
                .map(|(_, sc, m)| ratio_bar(b, a, sc, *m))
                .collect(),
        })
        .collect();
        let panels = vec![
            Panel {
                title: "Handshakes/s, as fast as it goes".into(),
                categories: ids.iter().map(|i| self.label(i)).collect(),
                series: hs_series,
                category_colors: None,
                value_format: f0,
                ymin: None,
                refs: Vec::new(),
            },
            Panel {
                title: "Proxy CPU ratio at the same load (±2 SE)".into(),
                categories: ratio_scen.iter().map(|(n, _, _)| n.to_string()).collect(),
                series: ratio_series,
                category_colors: None,
                value_format: f3,
                ymin: Some(0.8),
                refs: vec![
                    (1.0, "1.00".into()),
                    (T_STREAM_VS_ENVOY, "target 1.02".into()),
                    (T_HANDSHAKE_VS_NOOP, "target 1.05".into()),
                ],
            },
            single(
                "Proxy CPU µs per handshake, same load",
                &proxies,
                &|id| {
                    self.total(id, "handshake-paced", None)
                        .and_then(us)
                        .map(|v| (v, None))
                },
                f0,
            ),
            single(
                "Proxy CPU µs per console frame, same load",
                &proxies,
                &|id| {
                    self.total(id, "frames", None)
                        .and_then(Self::frame_us)
                        .map(|v| (v, None))
                },
                f1,
            ),
            single(
                "Proxy CPU s per GB, bulk, same load",
                &proxies,
                &|id| {
                    self.total(id, "bulk", None)
                        .and_then(Self::cpu_per_gb)
                        .map(|v| (v, None))
                },
                f2,
            ),
            single(
                "Console round trips/s, as fast as it goes",
                &ids,
                &|id| {
                    self.total(id, "frames-max", None)
                        .and_then(Self::rate)
                        .map(|v| (v, None))
                },
                f0,
            ),
            single(
                "Bulk MB/s (both ways), as fast as it goes",
                &ids,
                &|id| {
                    self.total(id, "bulk-max", None)
                        .filter(|s| s.wall_s > 0.0)
                        .map(|s| (s.bytes as f64 / s.wall_s / 1e6, None))
                },
                f0,
            ),
            Panel {
                title: format!(
                    "Proxy RSS MB, idle and with {} sessions",
                    self.r.config.idle_sessions
                ),
                categories: proxies.iter().map(|i| self.label(i)).collect(),
                series: vec![
                    Series {
                        name: "idle".into(),
                        color: "#bdbdbd".into(),
                        bars: proxies
                            .iter()
                            .map(|i| {
                                self.idle(i)
                                    .and_then(|s| s.rss_before_kb)
                                    .map(|k| (k as f64 / 1024.0, None))
                            })
                            .collect(),
                    },
                    Series {
                        name: "with sessions".into(),
                        color: "#6a1b9a".into(),
                        bars: proxies
                            .iter()
                            .map(|i| {
                                self.idle(i)
                                    .and_then(|s| s.rss_kb)
                                    .map(|k| (k as f64 / 1024.0, None))
                            })
                            .collect(),
                    },
                ],
                category_colors: None,
                value_format: f0,
                ymin: None,
                refs: Vec::new(),
            },
        ];
        let m = &self.r.meta;
        svg::render(
            "mksgate benchmark: one run, proxy pinned to CPU 0, load generator + stand-in on CPU 1",
            &format!(
                "{} · {} · {} CPUs · plaintext ws · same load = all proxies at once, {} windows · as fast as it goes = one at a time, {} cycles{}",
                m.started_utc,
                m.cpu_model,
                m.cpus,
                self.r.config.stream_cycles,
                self.r.config.cycles,
                if m.quick { " · QUICK MODE" } else { "" }
            ),
            &panels,
            2,
        )
    }

    fn markdown(&self, svg_rel: &str, analysis: Option<String>) -> String {
        let r = self.r;
        let m = &r.meta;
        let c = &r.config;
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

        // ---------------------------------------------------------- targets
        let (sat_noop, sat_noop_c) = self.hs_ratio(MK, "noop");
        let (sat_envoy, _) = self.hs_ratio(MK, "envoy");
        let paced = self.total(MK, "handshake-paced", None).is_some();
        let hs_us = |id: &str| -> Option<f64> {
            if paced {
                self.total(id, "handshake-paced", None)
                    .and_then(Self::cpu_per_op)
                    .map(|c| c * 1e6)
            } else {
                self.hs_cpu_us(id).0
            }
        };
        let (hs_noop, hs_noop_c) = if paced {
            self.ratio_cycles(MK, "noop", "handshake-paced", None, Self::cpu_per_op)
        } else {
            (sat_noop, sat_noop_c.clone())
        };
        let (hs_envoy, hs_envoy_c) = if paced {
            self.ratio_cycles(MK, "envoy", "handshake-paced", None, Self::cpu_per_op)
        } else {
            self.hs_ratio(MK, "envoy")
        };
        let (fr_envoy, fr_envoy_c) =
            self.ratio_cycles(MK, "envoy", "frames", None, Self::cpu_per_op);
        let (bk_envoy, bk_envoy_c) = self.ratio_cycles(MK, "envoy", "bulk", None, Self::cpu_per_gb);
        let shipped = self.module_bytes("mksgate_filter.wasm");
        let mk_worker = self.per_worker_kb(MK);
        let envoy_worker = self.per_worker_kb("envoy");
        let vm_add = match (mk_worker, envoy_worker) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        let load_add = match (self.load_ms(MK), self.load_ms("envoy")) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        let _ = writeln!(w, "## Targets (issue 5)\n");
        let _ = writeln!(
            w,
            "Ratios are mksgate ÷ the other system from the totals of the run; after each, the same ratio window by window (cycle by cycle for the one-at-a-time runs): range, mean ± one standard error. That spread is this machine's noise; a verdict says so when mean ± 2 SE straddles the threshold.\n"
        );
        let _ = writeln!(w, "| target | measured | result |\n|---|---|---|");
        let _ = writeln!(
            w,
            "| Proxy CPU per handshake within 5% of the do-nothing proxy-wasm filter built the same way (≤ {T_HANDSHAKE_VS_NOOP:.2}×) | **{}×** the do-nothing filter ({}: {}); {} vs {} µs per handshake. Ratio to Envoy without any filter: **{}×** ({}). At saturation, one system at a time, all levels: {}× the do-nothing filter, {}× Envoy | {} |",
            fmt_ratio(hs_noop),
            if paced { "same load, windows" } else { "cycles" },
            fmt_range(&hs_noop_c),
            fmt(hs_us(MK), 0),
            fmt(hs_us("noop"), 0),
            fmt_ratio(hs_envoy),
            fmt_range(&hs_envoy_c),
            fmt_ratio(sat_noop),
            fmt_ratio(sat_envoy),
            judge(hs_noop, &hs_noop_c, T_HANDSHAKE_VS_NOOP)
        );
        let _ = writeln!(
            w,
            "| Console stream: proxy CPU per frame within 2% of Envoy without any filter (≤ {T_STREAM_VS_ENVOY:.2}×) | **{}×** (same load, windows {}); {} vs {} µs per {}-byte frame | {} |",
            fmt_ratio(fr_envoy),
            fmt_range(&fr_envoy_c),
            fmt(self.total(MK, "frames", None).and_then(Self::frame_us), 2),
            fmt(self.total("envoy", "frames", None).and_then(Self::frame_us), 2),
            c.frames_bytes,
            judge(fr_envoy, &fr_envoy_c, T_STREAM_VS_ENVOY)
        );
        let _ = writeln!(
            w,
            "| Bulk: proxy CPU per GB within 2% of Envoy without any filter (≤ {T_STREAM_VS_ENVOY:.2}×) | **{}×** (same load, windows {}); {} vs {} CPU s per GB | {} |",
            fmt_ratio(bk_envoy),
            fmt_range(&bk_envoy_c),
            fmt(self.total(MK, "bulk", None).and_then(Self::cpu_per_gb), 3),
            fmt(self.total("envoy", "bulk", None).and_then(Self::cpu_per_gb), 3),
            judge(bk_envoy, &bk_envoy_c, T_STREAM_VS_ENVOY)
        );
        let mut hs_parts = Vec::new();
        let mut hs_ok: Option<bool> = None;
        for lv in self.levels() {
            let (x, per) = self.ratio_cycles(MK, "haproxy", "handshake", Some(lv), Self::rate);
            hs_parts.push(format!(
                "{lv}: **{}×** (cycles {}; {} vs {}/s)",
                fmt_ratio(x),
                fmt_range(&per),
                fmt(
                    self.total(MK, "handshake", Some(lv)).and_then(Self::rate),
                    0
                ),
                fmt(
                    self.total("haproxy", "handshake", Some(lv))
                        .and_then(Self::rate),
                    0
                )
            ));
            if let Some(x) = x {
                hs_ok = Some(hs_ok.unwrap_or(true) && x >= 1.0);
            }
        }
        let _ = writeln!(
            w,
            "| Handshakes per second at least HAProxy's in the same run (≥ 1.00× at every level) | clients {} | {} |",
            hs_parts.join("; "),
            verdict(hs_ok)
        );
        let _ = writeln!(
            w,
            "| Module size under 300 KB | shipped `mksgate_filter.wasm`: **{} bytes** ({} KiB); cargo's raw output {} bytes | {} |",
            shipped.map(|b| b.to_string()).unwrap_or_else(|| "—".into()),
            fmt(shipped.map(|b| b as f64 / 1024.0), 1),
            self.module_bytes("mksgate_filter.raw.wasm")
                .map(|b| b.to_string())
                .unwrap_or_else(|| "—".into()),
            verdict(shipped.map(|b| b < T_MODULE_BYTES))
        );
        let _ = writeln!(
            w,
            "| State the memory each worker's VM adds | **{} kB** per worker over Envoy without a filter (Envoy + mksgate grows {} kB per extra worker, Envoy alone {} kB; RSS after handshakes through every worker, least squares over `--concurrency` {:?}) | stated |",
            fmt(vm_add, 0),
            fmt(mk_worker, 0),
            fmt(envoy_worker, 0),
            c.vm_memory_concurrency
        );
        let _ = writeln!(
            w,
            "| State how long V8 takes to load the module | **{} ms** more from start to `/ready` LIVE than Envoy without a filter (median of {}: {} vs {} ms; the do-nothing module: {} ms) | stated |\n",
            fmt(load_add, 0),
            c.load_time_reps,
            fmt(self.load_ms(MK), 0),
            fmt(self.load_ms("envoy"), 0),
            fmt(
                match (self.load_ms("noop"), self.load_ms("envoy")) {
                    (Some(a), Some(b)) => Some(a - b),
                    _ => None,
                },
                0
            )
        );

        // ------------------------------------------------------ method
        let _ = writeln!(w, "## How it was measured\n");
        let _ = writeln!(w, "| system | what |\n|---|---|");
        for s in &r.systems {
            let _ = writeln!(w, "| {} | {} |", s.label, s.description);
        }
        let _ = writeln!(w);
        let pin: Vec<String> = r
            .pinning
            .iter()
            .map(|p| format!("{}: CPU {}", p.process, p.cpus_allowed))
            .collect();
        let _ = writeln!(
            w,
            "* **One ESXi stand-in for every system:** `esxi-standin --plain --push-interval-ms 0 --any-ticket --no-request-log` (host-tests): plain `ws://`, accepts any `/ticket/<t>` without using it up (so handshake loops need no ticket round trip), keeps no request log, pushes nothing, echoes every client frame (tag byte `E` + payload).\n\
* **Pinning:** every proxy runs under `taskset -c {}` (Envoy `--concurrency 1`, HAProxy `nbthread 1`); the load generator (one tokio thread) and the stand-in under `taskset -c {}`. Read back from `/proc/<pid>/status` `Cpus_allowed_list` during the run: {}.\n\
* **TLS: none, on either side.** The figure of merit is the proxy's own work; TLS would add the same handshake and record cost to every proxy and dilute every ratio toward 1. Plaintext is the hardest case for the ratio targets. Production runs TLS on both sides (envoy/static-clusters.yaml).\n\
* **Same for every proxy, all left out on purpose:** TLS, Envoy's handshake rate limit (the shipped 100/s would be the figure measured), access logs, and Envoy's default circuit breakers (raised so 1,000 sessions fit). Kept as shipped: the HCM settings, timeouts, 64 KiB connection buffer limit, and mksgate's own decision log line (info level, Envoy `--log-path`), which is part of its work.\n\
* **Two ways of sharing CPU 0, both within one run.** *One at a time* (handshakes and the \"as fast as it goes\" stream runs): for each scenario all systems are started fresh (so the one-time-link table starts empty), each gets one {:.1} s warm-up slice, then {} cycles in which every system in turn gets one slice ({:.1} s for handshakes, {:.1} s otherwise) with the load to itself, in table order on odd cycles and reversed on even ones. *All at once* (the CPU figures of the targets: per handshake, per frame, per GB): every proxy is started fresh and loaded at the same time with the same fixed offered load, far below what any of them can carry, and all are measured over the same {} windows of {:.1} s, so machine noise (other tenants, cache, steal) hits them alike and cancels in the ratios. The clients are recreated every window in an order that rotates by one: whichever system's client tasks are spawned first in the (single-threaded) load generator was measured up to 35% cheaper per handshake, so each system leads equally often. Either way a slice or window ends by pausing the clients and waiting for everything in flight, so its count and its CPU cover the same work. The direct system is left out of the all-at-once runs (it has no proxy CPU).\n\
* **CPU** is the proxy process's CPU time over the slice, all threads: {}. It holds whether or not the load generator is the bottleneck. It includes kernel work done in the proxy's context (loopback TCP), about the same for every proxy. \"CPU 1 busy\" is the load generator's plus the stand-in's CPU over the slice: near 100% means CPU 1, not the proxy, limited the rate.\n\
* **Handshake:** paced at {:.0}/s per system (all proxies at once) for the CPU target, and as fast as {:?} concurrent clients go (one system at a time) for rates and latency. Each is a TCP connect, `GET` with `Upgrade: websocket`, `Origin: {}`, `Sec-WebSocket-Protocol: {}`, wait for the `101`, send a close frame, wait for the close reply, drop the socket. Latency is connect to `101`. Direct, HAProxy and Envoy without mksgate get `/ticket/<fresh>?host=vesxi01.sec.lab`; mksgate gets `/console?token=<JWS>`, signed per handshake with `mksgate_core::jws` (HS256, kid 2026-11, the shipped claims: host, ticket, iat, exp = now + {} s, fresh jti, aud, iss, sub), one-time links on.\n\
* **Console stream:** {} sessions, each sends a {}-byte binary frame and waits for its echo before sending the next, so each frame is its own read at the proxy in each direction; paced at {:.0} round trips/s per system for the CPU figures. CPU per frame = CPU ÷ (2 × round trips). Per GB counts payload both ways.\n\
* **Bulk:** {} sessions sending {}-byte frames, at most {} in flight per session, echoed; paced at {:.0} MB/s per system (both directions) for the CPU figure. MB/s and per GB count payload both ways.\n\
* **Memory:** {} sessions opened and left idle (pings answered), proxy VmRSS before and with them (`/proc/<pid>/status`). Per-worker VM memory: Envoy RSS at `--concurrency` {:?} after 1 s of handshakes (so every worker's VM has served requests) and 1 s idle, with and without the module; the slope is a least-squares fit. Load time: spawn to admin `/ready` = LIVE, {} times per configuration, median.\n",
            c.proxy_cpu,
            c.loadgen_cpu,
            pin.join("; "),
            c.warmup_s,
            c.cycles,
            c.handshake_slice_s,
            c.slice_s,
            c.stream_cycles,
            c.window_s,
            if m.cpu_source.is_empty() {
                format!("utime + stime from `/proc/<pid>/stat` ({} ticks/s)", m.clock_ticks_per_s)
            } else {
                format!("`{}`", m.cpu_source)
            },
            c.hs_rate,
            c.handshake_levels,
            crate::scenario::ORIGIN,
            crate::scenario::WMKS_PROTOCOLS,
            c.link_ttl_s,
            c.frames_sessions,
            c.frames_bytes,
            c.frames_rate,
            c.bulk_sessions,
            c.bulk_bytes,
            c.bulk_window,
            c.bulk_rate_mb,
            c.idle_sessions,
            c.vm_memory_concurrency,
            c.load_time_reps,
        );

        // ---------------------------------------------------- handshakes
        let _ = writeln!(w, "## Handshakes\n");
        let _ = writeln!(
            w,
            "**As fast as it goes, one system at a time**, at each concurrency level: rate, latency and CPU per handshake at saturation.\n"
        );
        let lv = self.levels();
        let mut head = String::from("| system |");
        let mut sep = String::from("|---|");
        for l in &lv {
            let _ = write!(head, " hs/s @{l} |");
            sep.push_str("---:|");
        }
        for l in &lv {
            let _ = write!(head, " p50 / p99 ms @{l} |");
            sep.push_str("---:|");
        }
        for l in &lv {
            let _ = write!(head, " proxy CPU s / 10k @{l} |");
            sep.push_str("---:|");
        }
        head.push_str(" proxy CPU s / 10k, all | proxy busy / CPU 1 busy @max | errors |");
        sep.push_str("---:|---:|---|");
        let _ = writeln!(w, "{head}\n{sep}");
        for id in self.ids() {
            if self.total(id, "handshake", None).is_none() {
                continue;
            }
            let mut row = format!("| {} |", self.label(id));
            for l in &lv {
                let _ = write!(
                    row,
                    " {} |",
                    fmt(
                        self.total(id, "handshake", Some(*l)).and_then(Self::rate),
                        0
                    )
                );
            }
            for l in &lv {
                let s = self.total(id, "handshake", Some(*l));
                let _ = write!(
                    row,
                    " {} / {} |",
                    fmt(s.and_then(|s| s.lat_p50_us).map(|v| v / 1e3), 2),
                    fmt(s.and_then(|s| s.lat_p99_us).map(|v| v / 1e3), 2)
                );
            }
            for l in &lv {
                let _ = write!(
                    row,
                    " {} |",
                    fmt(
                        self.total(id, "handshake", Some(*l))
                            .and_then(Self::cpu_per_op)
                            .map(|v| v * 1e4),
                        2
                    )
                );
            }
            let max = lv.iter().max().copied();
            let s = max.and_then(|l| self.total(id, "handshake", Some(l)));
            let busy = s.map(|s| {
                format!(
                    "{} / {}",
                    fmt(s.proxy_cpu_s.map(|p| p / s.wall_s * 100.0), 0) + "%",
                    fmt(
                        Some((s.loadgen_cpu_s + s.standin_cpu_s.unwrap_or(0.0)) / s.wall_s * 100.0),
                        0
                    ) + "%"
                )
            });
            let errs: Vec<String> = lv
                .iter()
                .filter_map(|l| self.total(id, "handshake", Some(*l)))
                .filter(|s| !s.errors.is_empty())
                .map(|s| format!("@{}: {}", s.concurrency, errors_text(s)))
                .collect();
            let _ = writeln!(
                row,
                " {} | {} | {} |",
                fmt(self.hs_cpu_us(id).0.map(|v| v / 100.0), 2),
                busy.unwrap_or_else(|| "—".into()),
                if errs.is_empty() {
                    "0".into()
                } else {
                    errs.join("; ")
                }
            );
            w.push_str(&row);
        }
        let _ = writeln!(w);

        if self.total(MK, "handshake-paced", None).is_some() {
            let _ = writeln!(
                w,
                "**Same offered load, all proxies at once** ({:.0} handshakes/s per system from {} clients; {} windows of {:.1} s): the CPU figure of the target.\n",
                c.hs_rate, c.hs_paced_clients, c.stream_cycles, c.window_s
            );
            let _ = writeln!(
                w,
                "| system | handshakes/s achieved | p50 / p99 ms | proxy CPU µs per handshake | mksgate ÷ this, by window | errors |\n|---|---:|---:|---:|---|---|"
            );
            for id in self.ids() {
                let Some(s) = self.total(id, "handshake-paced", None) else {
                    continue;
                };
                let (_, per) = self.ratio_cycles(MK, id, "handshake-paced", None, Self::cpu_per_op);
                let _ = writeln!(
                    w,
                    "| {} | {} | {} / {} | {} | {} | {} |",
                    self.label(id),
                    fmt(Self::rate(s), 0),
                    fmt(s.lat_p50_us.map(|v| v / 1e3), 2),
                    fmt(s.lat_p99_us.map(|v| v / 1e3), 2),
                    fmt(Self::cpu_per_op(s).map(|v| v * 1e6), 1),
                    if id == MK {
                        "—".into()
                    } else {
                        fmt_range(&per)
                    },
                    errors_text(s)
                );
            }
            let _ = writeln!(w);
        }

        // ------------------------------------------------------ stream
        let busy = |s: &Sample| {
            format!(
                "{}% / {}%",
                fmt(s.proxy_cpu_s.map(|p| p / s.wall_s * 100.0), 0),
                fmt(
                    Some((s.loadgen_cpu_s + s.standin_cpu_s.unwrap_or(0.0)) / s.wall_s * 100.0),
                    0
                )
            )
        };
        let _ = writeln!(
            w,
            "## Console stream ({}-byte frames, one at a time per session, echoed; {} sessions)\n",
            c.frames_bytes, c.frames_sessions
        );
        let _ = writeln!(
            w,
            "**Same offered load, all proxies at once** ({:.0} round trips/s per system; {} windows of {:.1} s): the CPU figures of the targets. \"CPU 1 busy\" is shared by all systems here.\n",
            c.frames_rate, c.stream_cycles, c.window_s
        );
        let _ = writeln!(
            w,
            "| system | round trips/s achieved | RTT p50 / p99 µs | proxy CPU µs per frame | proxy CPU s per GB | mksgate ÷ this, CPU per frame, by window | errors |\n|---|---:|---:|---:|---:|---|---|"
        );
        for id in self.ids() {
            let Some(s) = self.total(id, "frames", None) else {
                continue;
            };
            let (_, per) = self.ratio_cycles(MK, id, "frames", None, Self::cpu_per_op);
            let _ = writeln!(
                w,
                "| {} | {} | {} / {} | {} | {} | {} | {} |",
                self.label(id),
                fmt(Self::rate(s), 0),
                fmt(s.lat_p50_us, 0),
                fmt(s.lat_p99_us, 0),
                fmt(Self::frame_us(s), 2),
                fmt(Self::cpu_per_gb(s), 1),
                if id == MK {
                    "—".into()
                } else {
                    fmt_range(&per)
                },
                errors_text(s)
            );
        }
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "**As fast as it goes, one system at a time** (interleaved slices): the most round trips/s each system carries here.\n"
        );
        let _ = writeln!(
            w,
            "| system | round trips/s | RTT p50 / p99 µs | proxy CPU µs per frame | proxy busy / CPU 1 busy | errors |\n|---|---:|---:|---:|---:|---|"
        );
        for id in self.ids() {
            let Some(s) = self.total(id, "frames-max", None) else {
                continue;
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} / {} | {} | {} | {} |",
                self.label(id),
                fmt(Self::rate(s), 0),
                fmt(s.lat_p50_us, 0),
                fmt(s.lat_p99_us, 0),
                fmt(Self::frame_us(s), 2),
                busy(s),
                errors_text(s)
            );
        }
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "## Bulk ({} sessions, frames of {} bytes, at most {} in flight per session, echoed)\n",
            c.bulk_sessions, c.bulk_bytes, c.bulk_window
        );
        let _ = writeln!(
            w,
            "**Same offered load, all proxies at once** ({:.0} MB/s per system, both directions; {} windows of {:.1} s): the CPU figure of the target.\n",
            c.bulk_rate_mb, c.stream_cycles, c.window_s
        );
        let _ = writeln!(
            w,
            "| system | MB/s achieved | proxy CPU s per GB | mksgate ÷ this, CPU per GB, by window | errors |\n|---|---:|---:|---|---|"
        );
        for id in self.ids() {
            let Some(s) = self.total(id, "bulk", None) else {
                continue;
            };
            let (_, per) = self.ratio_cycles(MK, id, "bulk", None, Self::cpu_per_gb);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} |",
                self.label(id),
                fmt(Some(s.bytes as f64 / s.wall_s.max(1e-9) / 1e6), 0),
                fmt(Self::cpu_per_gb(s), 3),
                if id == MK {
                    "—".into()
                } else {
                    fmt_range(&per)
                },
                errors_text(s)
            );
        }
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "**As fast as it goes, one system at a time** (interleaved slices): throughput.\n"
        );
        let _ = writeln!(
            w,
            "| system | MB/s (both directions) | proxy CPU s per GB | proxy busy / CPU 1 busy | errors |\n|---|---:|---:|---:|---|"
        );
        for id in self.ids() {
            let Some(s) = self.total(id, "bulk-max", None) else {
                continue;
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} |",
                self.label(id),
                fmt(Some(s.bytes as f64 / s.wall_s.max(1e-9) / 1e6), 0),
                fmt(Self::cpu_per_gb(s), 3),
                busy(s),
                errors_text(s)
            );
        }
        let _ = writeln!(w);

        // ------------------------------------------------------ memory
        let _ = writeln!(w, "## Memory and start-up\n");
        let _ = writeln!(
            w,
            "| system | RSS idle, MB | RSS with {} idle sessions, MB | kB per session | sessions open | errors |\n|---|---:|---:|---:|---:|---|",
            c.idle_sessions
        );
        for id in self.ids() {
            let Some(s) = self.idle(id) else { continue };
            if s.rss_kb.is_none() {
                continue;
            }
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} |",
                self.label(id),
                fmt(s.rss_before_kb.map(|k| k as f64 / 1024.0), 1),
                fmt(s.rss_kb.map(|k| k as f64 / 1024.0), 1),
                fmt(self.idle_kb_per_session(id), 1),
                s.sessions_open.unwrap_or(0),
                errors_text(s)
            );
        }
        let _ = writeln!(w);
        if !r.vm_memory.is_empty() {
            let cs = &c.vm_memory_concurrency;
            let mut head = String::from("| Envoy RSS after serving, kB (mean of runs) |");
            let mut sep = String::from("|---|");
            for cc in cs {
                let _ = write!(head, " `--concurrency {cc}` |");
                sep.push_str("---:|");
            }
            head.push_str(" per extra worker | V8 VMs alive |");
            sep.push_str("---:|---|");
            let _ = writeln!(w, "{head}\n{sep}");
            for id in ["envoy", "noop", MK] {
                if !r.vm_memory.iter().any(|v| v.system == id) {
                    continue;
                }
                let mut row = format!("| {} |", self.label(id));
                for cc in cs {
                    let _ = write!(
                        row,
                        " {} |",
                        self.vm_rss(id, *cc)
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "—".into())
                    );
                }
                let vms: Vec<String> = cs
                    .iter()
                    .filter_map(|cc| {
                        r.vm_memory
                            .iter()
                            .find(|v| v.system == id && v.concurrency == *cc)
                            .and_then(|v| v.v8_active_vms)
                            .map(|n| format!("{n} @{cc}"))
                    })
                    .collect();
                let _ = writeln!(
                    row,
                    " {} | {} |",
                    fmt(self.per_worker_kb(id), 0),
                    if vms.is_empty() {
                        "—".into()
                    } else {
                        vms.join(", ")
                    }
                );
                w.push_str(&row);
            }
            let _ = writeln!(w);
        }
        if !r.load_time.is_empty() {
            let _ = writeln!(
                w,
                "| Envoy start to `/ready` LIVE | median ms | runs, ms |\n|---|---:|---|"
            );
            for l in &r.load_time {
                let _ = writeln!(
                    w,
                    "| {} | {} | {} |",
                    self.label(&l.system),
                    fmt(median(&l.ready_ms), 0),
                    l.ready_ms
                        .iter()
                        .map(|v| format!("{v:.0}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let _ = writeln!(w);
        }
        let _ = writeln!(
            w,
            "| module | bytes | `proxy_on_*` exports |\n|---|---:|---|"
        );
        for md in &r.modules {
            let _ = writeln!(
                w,
                "| `{}` | {} | {} |",
                md.path,
                md.bytes,
                md.proxy_exports.join(", ")
            );
        }
        let _ = writeln!(w);

        // ------------------------------------------- off the data path
        if self.has("mksgate-raw") || self.has("noop-raw") {
            let _ = writeln!(w, "## Off the data path: before and after\n");
            let _ = writeln!(
                w,
                "The raw modules are cargo's output, which exports every proxy-wasm callback (the SDK's), so Envoy calls into the VM for every data chunk in each direction; the shipped modules export only what the filter uses (tools/wasm-post). Same Envoy, same config.\n"
            );
            let _ = writeln!(
                w,
                "| pair | CPU per frame, raw ÷ shipped | CPU per GB bulk, raw ÷ shipped | CPU per handshake, raw ÷ shipped |\n|---|---:|---:|---:|"
            );
            for (raw, shipped) in [("mksgate-raw", MK), ("noop-raw", "noop")] {
                if !self.has(raw) || !self.has(shipped) {
                    continue;
                }
                let (f, fc) = self.ratio_cycles(raw, shipped, "frames", None, Self::cpu_per_op);
                let (b, bc) = self.ratio_cycles(raw, shipped, "bulk", None, Self::cpu_per_gb);
                let (h, hc) = self.hs_ratio(raw, shipped);
                let _ = writeln!(
                    w,
                    "| {} vs {} | {} (cycles {}) | {} (cycles {}) | {} (cycles {}) |",
                    self.label(raw),
                    self.label(shipped),
                    fmt_ratio(f),
                    fmt_range(&fc),
                    fmt_ratio(b),
                    fmt_range(&bc),
                    fmt_ratio(h),
                    fmt_range(&hc)
                );
            }
            let _ = writeln!(w);
        }

        // ------------------------------------------------------ ratios
        let _ = writeln!(w, "## Ratios of mksgate to each other system\n");
        let others: Vec<&str> = self.ids().into_iter().filter(|i| *i != MK).collect();
        let mut head = String::from("| mksgate ÷ |");
        let mut sep = String::from("|---|");
        for o in &others {
            let _ = write!(head, " {} |", self.label(o));
            sep.push_str("---:|");
        }
        let _ = writeln!(w, "{head}\n{sep}");
        let mut row = |name: String, f: &dyn Fn(&str) -> Option<f64>| {
            let mut line = format!("| {name} |");
            for o in &others {
                let _ = write!(line, " {} |", fmt_ratio(f(o)));
            }
            let _ = writeln!(w, "{line}");
        };
        for l in self.levels() {
            row(format!("handshakes/s @{l} (higher is better)"), &|o| {
                self.ratio_cycles(MK, o, "handshake", Some(l), Self::rate).0
            });
        }
        row("proxy CPU per handshake, same load".into(), &|o| {
            self.ratio_cycles(MK, o, "handshake-paced", None, Self::cpu_per_op)
                .0
        });
        row(
            "proxy CPU per handshake, saturated, all levels".into(),
            &|o| self.hs_ratio(MK, o).0,
        );
        for l in self.levels() {
            row(format!("handshake p50 latency @{l}"), &|o| {
                self.ratio_cycles(MK, o, "handshake", Some(l), |s| s.lat_p50_us)
                    .0
            });
        }
        row("proxy CPU per console frame, same load".into(), &|o| {
            self.ratio_cycles(MK, o, "frames", None, Self::cpu_per_op).0
        });
        row(
            "console round trips/s, as fast as it goes (higher is better)".into(),
            &|o| self.ratio_cycles(MK, o, "frames-max", None, Self::rate).0,
        );
        row("proxy CPU per GB, bulk, same load".into(), &|o| {
            self.ratio_cycles(MK, o, "bulk", None, Self::cpu_per_gb).0
        });
        row(
            "bulk MB/s, as fast as it goes (higher is better)".into(),
            &|o| {
                self.ratio_cycles(MK, o, "bulk-max", None, |s| {
                    (s.wall_s > 0.0).then(|| s.bytes as f64 / s.wall_s)
                })
                .0
            },
        );
        row(
            format!("RSS with {} idle sessions", c.idle_sessions),
            &|o| {
                let a = self.idle(MK)?.rss_kb? as f64;
                let b = self.idle(o)?.rss_kb? as f64;
                Some(a / b)
            },
        );
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "A \"—\" means the figure does not apply (the direct system has no proxy process to measure).\n"
        );

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
    std::fs::write(md, rep.markdown(&svg_rel, analysis))
        .with_context(|| format!("writing {}", md.display()))?;
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
