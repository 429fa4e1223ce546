//! BENCHMARKS.md: mksgate divided by each other system, scenario by scenario.

use std::fmt::Write;

use super::stats::*;
use super::*;

impl Report<'_> {
    pub(super) fn section_ratios(&self, w: &mut String) {
        let c = &self.r.config;
        let _ = writeln!(w, "## Ratios of mksgate to each other system\n");
        // The plaintext systems; the deployed ones have their own section.
        let others: Vec<&str> = self
            .ids()
            .into_iter()
            .filter(|i| *i != MK && !DEPLOYED.contains(i) && !BUDGET.contains(i))
            .collect();
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
                self.ratio_cycles(MK, o, Scenario::Handshake, Some(l), Self::rate)
                    .0
            });
        }
        row("proxy CPU per handshake, same load".into(), &|o| {
            self.ratio_cycles(MK, o, Scenario::HandshakePaced, None, Self::cpu_per_op)
                .0
        });
        row(
            "proxy CPU per handshake, saturated, all levels".into(),
            &|o| self.hs_ratio(MK, o).0,
        );
        for l in self.levels() {
            row(format!("handshake p50 latency @{l}"), &|o| {
                self.ratio_cycles(MK, o, Scenario::Handshake, Some(l), |s| s.lat_p50_us)
                    .0
            });
        }
        row("proxy CPU per console frame, same load".into(), &|o| {
            self.ratio_cycles(MK, o, Scenario::Frames, None, Self::cpu_per_op)
                .0
        });
        row(
            "console round trips/s, as fast as it goes (higher is better)".into(),
            &|o| {
                self.ratio_cycles(MK, o, Scenario::FramesMax, None, Self::rate)
                    .0
            },
        );
        row("proxy CPU per GB, bulk, same load".into(), &|o| {
            self.ratio_cycles(MK, o, Scenario::Bulk, None, Self::cpu_per_gb)
                .0
        });
        row(
            "bulk MB/s, as fast as it goes (higher is better)".into(),
            &|o| {
                self.ratio_cycles(MK, o, Scenario::BulkMax, None, |s| {
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
    }
}
