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
        let _ = writeln!(w);
    }

    /// The handshake budget (issue 15): its own group of systems, all at
    /// the shipped log settings, measured together; each part is the
    /// difference of two of them over the same windows.
    pub(super) fn section_budget(&self, w: &mut String) {
        // Any of the group (scripts/bench-calls.sh runs two of it).
        if !BUDGET.iter().any(|id| self.has(id)) {
            return;
        }
        let mk = self.total(MK_LOG, Scenario::HandshakePaced, None);
        let c = &self.r.config;
        let _ = writeln!(
            w,
            "## The handshake budget (issue 15)\n\nA group of its own: plaintext, every system with the shipped access log, {:.0} handshakes/s per system from {} clients, all at once, {} windows of {:.1} s. Each row below is the difference of two systems over the same windows (range, mean ± 1 SE).\n",
            c.budget_rate, c.hs_paced_clients, c.budget_windows, c.window_s
        );
        let _ = writeln!(
            w,
            "| system | handshakes/s achieved | p50 / p99 ms | proxy CPU µs per handshake | errors |\n|---|---:|---:|---:|---|"
        );
        for id in BUDGET {
            let Some(s) = self.total(id, Scenario::HandshakePaced, None) else {
                continue;
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} |",
                self.label(id),
                Self::paced_cells(s),
                errors_text(s)
            );
        }
        let _ = writeln!(w);
        let (budget, budget_c) = self.extra_us(MK_LOG, NOOP_LOG);
        let _ = writeln!(
            w,
            "| goal | measured | result |\n|---|---|---|\n| Handshake budget: mksgate adds at most {T_BUDGET_US:.0} µs of proxy CPU per handshake over the do-nothing filter, shipped log settings, plaintext (5L − 4L) | **{} µs** (windows: {}); {} vs {} µs | {} |\n",
            fmt(budget, 0),
            fmt_us_range(&budget_c),
            fmt(mk.and_then(Self::cpu_per_op).map(|v| v * 1e6), 0),
            fmt(
                self.total(NOOP_LOG, Scenario::HandshakePaced, None)
                    .and_then(Self::cpu_per_op)
                    .map(|v| v * 1e6),
                0
            ),
            judge(budget, &budget_c, T_BUDGET_US)
        );
        let _ = writeln!(
            w,
            "**Where it goes** (µs of proxy CPU per handshake):\n\n| part | how | µs per handshake | windows |\n|---|---|---:|---|"
        );
        let rows: [(&str, &str, Extra); 6] = [
            ("all of it", "5L − 4L", (budget, budget_c)),
            (
                "a request as long as mksgate's (the token in it), through the do-nothing filter",
                "4P − 4L",
                self.extra_us(NOOP_TOKEN_LOG, NOOP_LOG),
            ),
            (
                "mksgate's host calls, made with no logic: what they cost Envoy (the route re-pick included)",
                "4H − 4P",
                self.extra_us(NOOP_CALLS_LOG, NOOP_TOKEN_LOG),
            ),
            (
                "mksgate's own code in the VM: verify (HMAC), claims, the one-time-link table's logic, the audit",
                "5L − 4H",
                self.extra_us(MK_LOG, NOOP_CALLS_LOG),
            ),
            (
                "the one-time-link claim, its host calls and logic",
                "5L − 5d",
                self.extra_us(MK_LOG, MK_REUSABLE),
            ),
            (
                "the decision line when `log_decisions` is on (off as shipped)",
                "5c − 5L",
                self.extra_us(MK_DECLOG, MK_LOG),
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
        let (tls, tls_c) = self.extra_us(MK_TLS, NOOP_TLS);
        let (plain, plain_c) = self.extra_us(MK, NOOP);
        let _ = writeln!(
            w,
            "\nFor comparison, the other groups (their own loads): mksgate over the do-nothing filter is {} µs with no access log (5 − 4, plaintext group; windows {}) and {} µs with TLS on both sides (5T − 4T; windows {}).\n",
            fmt(plain, 0),
            fmt_us_range(&plain_c),
            fmt(tls, 0),
            fmt_us_range(&tls_c)
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
