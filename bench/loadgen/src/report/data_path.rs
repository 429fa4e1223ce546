//! BENCHMARKS.md: Off the data path: the raw modules against the shipped ones.

use std::fmt::Write;

use super::stats::*;
use super::*;

impl Report<'_> {
    pub(super) fn section_data_path(&self, w: &mut String) {
        if self.has(MK_RAW) || self.has(NOOP_RAW) {
            let _ = writeln!(w, "## Off the data path: before and after\n");
            let _ = writeln!(
                w,
                "The raw modules are cargo's output, which exports every proxy-wasm callback (the SDK's), so Envoy calls into the VM for every data chunk in each direction; the shipped modules export only what the filter uses (tools/wasm-post). Same Envoy, same config.\n"
            );
            let _ = writeln!(
                w,
                "| pair | CPU per frame, raw ÷ shipped | CPU per GB bulk, raw ÷ shipped | CPU per handshake, raw ÷ shipped |\n|---|---:|---:|---:|"
            );
            for (raw, shipped) in [(MK_RAW, MK), (NOOP_RAW, NOOP)] {
                if !self.has(raw) || !self.has(shipped) {
                    continue;
                }
                let (f, fc) =
                    self.ratio_cycles(raw, shipped, Scenario::Frames, None, Self::cpu_per_op);
                let (b, bc) =
                    self.ratio_cycles(raw, shipped, Scenario::Bulk, None, Self::cpu_per_gb);
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
    }
}
