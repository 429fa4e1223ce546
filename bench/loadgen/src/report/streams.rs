//! BENCHMARKS.md: The console stream and bulk scenarios.

use std::fmt::Write;

use super::stats::*;
use super::*;

impl Report<'_> {
    pub(super) fn section_streams(&self, w: &mut String) {
        let c = &self.r.config;
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
            let Some(s) = self.total(id, Scenario::Frames, None) else {
                continue;
            };
            let (_, per) =
                self.ratio_cycles(mk_for(id), id, Scenario::Frames, None, Self::cpu_per_op);
            let _ = writeln!(
                w,
                "| {} | {} | {} / {} | {} | {} | {} | {} |",
                self.label(id),
                fmt(Self::rate(s), 0),
                fmt(s.lat_p50_us, 0),
                fmt(s.lat_p99_us, 0),
                fmt(Self::frame_us(s), 2),
                fmt(Self::cpu_per_gb(s), 1),
                if id == mk_for(id) {
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
            let Some(s) = self.total(id, Scenario::FramesMax, None) else {
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
            let Some(s) = self.total(id, Scenario::Bulk, None) else {
                continue;
            };
            let (_, per) =
                self.ratio_cycles(mk_for(id), id, Scenario::Bulk, None, Self::cpu_per_gb);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} |",
                self.label(id),
                fmt(Some(s.bytes as f64 / s.wall_s.max(1e-9) / 1e6), 0),
                fmt(Self::cpu_per_gb(s), 3),
                if id == mk_for(id) {
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
            let Some(s) = self.total(id, Scenario::BulkMax, None) else {
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
    }
}
