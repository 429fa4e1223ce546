//! BENCHMARKS.md: the systems as deployed (TLS on both sides, access logs
//! on) and the handshake budget (issue 15): where mksgate's CPU per
//! handshake goes, from diagnostic systems measured over the same windows.

use std::fmt::Write;

use super::stats::*;
use super::*;

/// The budget: mksgate's proxy CPU per handshake over the do-nothing filter
/// at the shipped log settings, plaintext.
const T_BUDGET_US: f64 = 50.0;

/// A difference in µs per handshake: the run's total and per window.
type Extra = (Option<f64>, Vec<f64>);

impl Report<'_> {
    /// µs of proxy CPU per handshake `a` takes over `b` in the paced run
    /// (same windows, so per-window differences pair up).
    fn extra_us(&self, a: &str, b: &str) -> Extra {
        let us = |id: &str| {
            self.total(id, Scenario::HandshakePaced, None)
                .and_then(Self::cpu_per_op)
                .map(|c| c * 1e6)
        };
        let total = match (us(a), us(b)) {
            (Some(x), Some(y)) => Some(x - y),
            _ => None,
        };
        let cb = self.cycles(b, Scenario::HandshakePaced, None);
        let per = self
            .cycles(a, Scenario::HandshakePaced, None)
            .iter()
            .filter_map(|x| {
                let y = cb.iter().find(|y| y.round == x.round)?;
                Some((Self::cpu_per_op(x)? - Self::cpu_per_op(y)?) * 1e6)
            })
            .collect();
        (total, per)
    }

    pub(super) fn section_deployed(&self, w: &mut String) {
        if !self.has(MK_TLS) {
            return;
        }
        let _ = writeln!(
            w,
            "## As deployed: TLS on both sides, access logs on (issue 15)\n"
        );
        let _ = writeln!(
            w,
            "Systems 2T-5T: TLS 1.3 from the client (ECDSA P-256 certificate from a CA made for the run, ALPN http/1.1), TLS to a TLS ESXi stand-in with SNI (Envoy pins its certificate as envoy/static-clusters.yaml does; HAProxy's recipe checks none), and each proxy's access log on at its shipped format (Envoy: envoy/static-clusters.yaml's JSON log with the audit and a line when the tunnel is up; HAProxy: one JSON line per session, bench/configs/haproxy-deployed.cfg), written to a file. They are a group of their own: started, loaded and measured together as the plaintext systems are, against their own stand-in; ratios are within the group. The handshake limits are off here too.\n"
        );
        let lv = self.levels();
        let mut head = String::from("| system |");
        let mut sep = String::from("|---|");
        for l in &lv {
            let _ = write!(head, " hs/s @{l} | p50 / p99 ms @{l} |");
            sep.push_str("---:|---:|");
        }
        head.push_str(" proxy CPU µs / handshake, same load | µs / frame, same load | CPU s / GB, same load |");
        sep.push_str("---:|---:|---:|");
        let _ = writeln!(w, "{head}\n{sep}");
        for id in DEPLOYED {
            let mut row = format!("| {} |", self.label(id));
            for l in &lv {
                let s = self.total(id, Scenario::Handshake, Some(*l));
                let _ = write!(
                    row,
                    " {} | {} / {} |",
                    fmt(s.and_then(Self::rate), 0),
                    fmt(s.and_then(|s| s.lat_p50_us).map(|v| v / 1e3), 2),
                    fmt(s.and_then(|s| s.lat_p99_us).map(|v| v / 1e3), 2)
                );
            }
            let _ = writeln!(
                w,
                "{row} {} | {} | {} |",
                fmt(
                    self.total(id, Scenario::HandshakePaced, None)
                        .and_then(Self::cpu_per_op)
                        .map(|v| v * 1e6),
                    1
                ),
                fmt(
                    self.total(id, Scenario::Frames, None)
                        .and_then(Self::frame_us),
                    2
                ),
                fmt(
                    self.total(id, Scenario::Bulk, None)
                        .and_then(Self::cpu_per_gb),
                    3
                )
            );
        }
        let _ = writeln!(w);

        let _ = writeln!(
            w,
            "**Goals**\n\n| goal | measured | result |\n|---|---|---|"
        );
        let mut parts = Vec::new();
        let mut ok: Option<bool> = None;
        for l in &lv {
            let (x, per) = self.ratio_cycles(
                MK_TLS,
                HAPROXY_TLS,
                Scenario::Handshake,
                Some(*l),
                Self::rate,
            );
            parts.push(format!(
                "{l}: **{}×** (cycles {})",
                fmt_ratio(x),
                fmt_range(&per)
            ));
            if let Some(x) = x {
                ok = Some(ok.unwrap_or(true) && x >= 1.0);
            }
        }
        let _ = writeln!(
            w,
            "| With TLS, handshakes per second at least HAProxy's at every level (5T ÷ 2T ≥ 1.00×) | clients {} | {} |",
            parts.join("; "),
            verdict(ok)
        );
        let streams: [(&str, Scenario, Metric); 2] = [
            ("console frame", Scenario::Frames, Self::cpu_per_op),
            ("GB", Scenario::Bulk, Self::cpu_per_gb),
        ];
        for (per, scenario, metric) in streams {
            let (x, per_window) = self.ratio_cycles(MK_TLS, NOOP_TLS, scenario, None, metric);
            let _ = writeln!(
                w,
                "| CPU per {per} within 2% of the do-nothing filter (5T ÷ 4T ≤ {T_STREAM_VS_ENVOY:.2}×) | **{}×** (windows {}) | {} |",
                fmt_ratio(x),
                fmt_range(&per_window),
                judge(x, &per_window, T_STREAM_VS_ENVOY)
            );
        }
        let (budget, budget_c) = self.extra_us(MK_LOG, NOOP_LOG);
        let _ = writeln!(
            w,
            "| Handshake budget: mksgate adds at most {T_BUDGET_US:.0} µs of proxy CPU per handshake over the do-nothing filter, shipped log settings, plaintext (5L − 4L) | **{} µs** (windows: {}) | {} |\n",
            fmt(budget, 0),
            fmt_us_range(&budget_c),
            judge(budget, &budget_c, T_BUDGET_US)
        );

        let _ = writeln!(
            w,
            "**Where mksgate's handshake CPU goes** (µs of proxy CPU per handshake, same load, same windows; each row is the difference of two systems measured together, windows: range, mean ± 1 SE). The rows that are differences of differences carry both errors.\n"
        );
        let _ = writeln!(
            w,
            "| part | how | µs per handshake | windows |\n|---|---|---:|---|"
        );
        let rows: [(&str, &str, Extra); 6] = [
            (
                "all of it, shipped log settings",
                "5L − 4L",
                self.extra_us(MK_LOG, NOOP_LOG),
            ),
            ("all of it, no access log", "5 − 4", self.extra_us(MK, NOOP)),
            (
                "the one-time-link claim (shared-data read and compare-and-swap)",
                "5 − 5d",
                self.extra_us(MK, MK_REUSABLE),
            ),
            (
                "the rest: header map, verify (HMAC), claims, x-envoy-original-path, path / authority / cluster-header rewrites, route re-pick, counter, filter state",
                "5d − 4",
                self.extra_us(MK_REUSABLE, NOOP),
            ),
            (
                "the decision line when `log_decisions` is on (off as shipped)",
                "5c − 5",
                self.extra_us(MK_DECLOG, MK),
            ),
            (
                "with TLS on both sides",
                "5T − 4T",
                self.extra_us(MK_TLS, NOOP_TLS),
            ),
        ];
        for (part, how, (total, per)) in rows {
            let _ = writeln!(
                w,
                "| {part} | {how} | {} | {} |",
                fmt(total, 0),
                fmt_us_range(&per)
            );
        }
        let (log_mk, _) = self.extra_us(MK_LOG, MK);
        let (log_noop, _) = self.extra_us(NOOP_LOG, NOOP);
        let _ = writeln!(
            w,
            "| the audit's fields in the access log (what the log costs mksgate beyond what it costs the do-nothing filter) | (5L − 5) − (4L − 4) | {} | — |\n",
            fmt(
                match (log_mk, log_noop) {
                    (Some(a), Some(b)) => Some(a - b),
                    _ => None,
                },
                0
            )
        );
    }
}

/// "−12–40, mean 14 ± 5" for µs differences.
fn fmt_us_range(vals: &[f64]) -> String {
    match (range(vals), mean_se(vals)) {
        (Some((lo, hi)), Some((m, se))) if se.is_finite() => {
            format!("{lo:.0} to {hi:.0}, mean {m:.0} ± {se:.0}")
        }
        (Some((lo, hi)), _) => format!("{lo:.0} to {hi:.0}"),
        _ => "—".into(),
    }
}
