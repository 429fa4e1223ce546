//! BENCHMARKS.md: The targets, each measured and judged.

use std::fmt::Write;

use super::stats::*;
use super::*;

impl Report<'_> {
    pub(super) fn section_targets(&self, w: &mut String) {
        let c = &self.r.config;
        let (sat_noop, sat_noop_c) = self.hs_ratio(MK, NOOP);
        let (sat_envoy, _) = self.hs_ratio(MK, ENVOY);
        let paced = self.total(MK, Scenario::HandshakePaced, None).is_some();
        let hs_us = |id: &str| -> Option<f64> {
            if paced {
                self.total(id, Scenario::HandshakePaced, None)
                    .and_then(Self::cpu_per_op)
                    .map(|c| c * 1e6)
            } else {
                self.hs_cpu_us(id).0
            }
        };
        let (hs_noop, hs_noop_c) = if paced {
            self.ratio_cycles(MK, NOOP, Scenario::HandshakePaced, None, Self::cpu_per_op)
        } else {
            (sat_noop, sat_noop_c.clone())
        };
        let (hs_envoy, hs_envoy_c) = if paced {
            self.ratio_cycles(MK, ENVOY, Scenario::HandshakePaced, None, Self::cpu_per_op)
        } else {
            self.hs_ratio(MK, ENVOY)
        };
        let (fr_envoy, fr_envoy_c) =
            self.ratio_cycles(MK, ENVOY, Scenario::Frames, None, Self::cpu_per_op);
        let (bk_envoy, bk_envoy_c) =
            self.ratio_cycles(MK, ENVOY, Scenario::Bulk, None, Self::cpu_per_gb);
        let shipped = self.module_bytes("mksgate_filter.wasm");
        let mk_worker = self.per_worker_kb(MK);
        let envoy_worker = self.per_worker_kb(ENVOY);
        let vm_add = match (mk_worker, envoy_worker) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        let load_add = match (self.load_ms(MK), self.load_ms(ENVOY)) {
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
            fmt(hs_us(NOOP), 0),
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
            fmt(self.total(MK, Scenario::Frames, None).and_then(Self::frame_us), 2),
            fmt(self.total(ENVOY, Scenario::Frames, None).and_then(Self::frame_us), 2),
            c.frames_bytes,
            judge(fr_envoy, &fr_envoy_c, T_STREAM_VS_ENVOY)
        );
        let _ = writeln!(
            w,
            "| Bulk: proxy CPU per GB within 2% of Envoy without any filter (≤ {T_STREAM_VS_ENVOY:.2}×) | **{}×** (same load, windows {}); {} vs {} CPU s per GB | {} |",
            fmt_ratio(bk_envoy),
            fmt_range(&bk_envoy_c),
            fmt(self.total(MK, Scenario::Bulk, None).and_then(Self::cpu_per_gb), 3),
            fmt(self.total(ENVOY, Scenario::Bulk, None).and_then(Self::cpu_per_gb), 3),
            judge(bk_envoy, &bk_envoy_c, T_STREAM_VS_ENVOY)
        );
        let mut hs_parts = Vec::new();
        let mut hs_ok: Option<bool> = None;
        for lv in self.levels() {
            let (x, per) =
                self.ratio_cycles(MK, HAPROXY, Scenario::Handshake, Some(lv), Self::rate);
            hs_parts.push(format!(
                "{lv}: **{}×** (cycles {}; {} vs {}/s)",
                fmt_ratio(x),
                fmt_range(&per),
                fmt(
                    self.total(MK, Scenario::Handshake, Some(lv))
                        .and_then(Self::rate),
                    0
                ),
                fmt(
                    self.total(HAPROXY, Scenario::Handshake, Some(lv))
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
            fmt(self.load_ms(ENVOY), 0),
            fmt(
                match (self.load_ms(NOOP), self.load_ms(ENVOY)) {
                    (Some(a), Some(b)) => Some(a - b),
                    _ => None,
                },
                0
            )
        );
    }
}
