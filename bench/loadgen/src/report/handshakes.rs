//! BENCHMARKS.md: Handshakes per second and CPU per handshake, by concurrency.

use std::fmt::Write;

use super::stats::*;
use super::*;

impl Report<'_> {
    /// A paced handshake total's cells: rate achieved, p50 / p99 ms, proxy
    /// CPU µs per handshake.
    pub(super) fn paced_cells(s: &Sample) -> String {
        format!(
            "{} | {} / {} | {}",
            fmt(Self::rate(s), 0),
            fmt(s.lat_p50_us.map(|v| v / 1e3), 2),
            fmt(s.lat_p99_us.map(|v| v / 1e3), 2),
            fmt(Self::cpu_per_op(s).map(|v| v * 1e6), 1)
        )
    }

    pub(super) fn section_handshakes(&self, w: &mut String) {
        let c = &self.r.config;
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
            if self.total(id, Scenario::Handshake, None).is_none() {
                continue;
            }
            let mut row = format!("| {} |", self.label(id));
            for l in &lv {
                let _ = write!(
                    row,
                    " {} |",
                    fmt(
                        self.total(id, Scenario::Handshake, Some(*l))
                            .and_then(Self::rate),
                        0
                    )
                );
            }
            for l in &lv {
                let s = self.total(id, Scenario::Handshake, Some(*l));
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
                        self.total(id, Scenario::Handshake, Some(*l))
                            .and_then(Self::cpu_per_op)
                            .map(|v| v * 1e4),
                        2
                    )
                );
            }
            let max = lv.iter().max().copied();
            let s = max.and_then(|l| self.total(id, Scenario::Handshake, Some(l)));
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
                .filter_map(|l| self.total(id, Scenario::Handshake, Some(*l)))
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

        if self.total(MK, Scenario::HandshakePaced, None).is_some() {
            let _ = writeln!(
                w,
                "**Same offered load, all proxies at once** ({:.0} handshakes/s per system from {} clients; {} windows of {:.1} s): the CPU figure of the target.\n",
                c.hs_rate, c.hs_paced_clients, c.stream_cycles, c.window_s
            );
            let _ = writeln!(
                w,
                "| system | handshakes/s achieved | p50 / p99 ms | proxy CPU µs per handshake | mksgate ÷ this, by window | errors |\n|---|---:|---:|---:|---|---|"
            );
            // The budget's group has a table of its own (deployed.rs).
            for id in self.ids().into_iter().filter(|id| !BUDGET.contains(id)) {
                let Some(s) = self.total(id, Scenario::HandshakePaced, None) else {
                    continue;
                };
                let (_, per) = self.ratio_cycles(
                    mk_for(id),
                    id,
                    Scenario::HandshakePaced,
                    None,
                    Self::cpu_per_op,
                );
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} |",
                    self.label(id),
                    Self::paced_cells(s),
                    if id == mk_for(id) {
                        "—".into()
                    } else {
                        fmt_range(&per)
                    },
                    errors_text(s)
                );
            }
            let _ = writeln!(w);
        }
    }
}
