//! BENCHMARKS.md: VM memory and start-up.

use std::fmt::Write;

use super::stats::*;
use super::*;

impl Report<'_> {
    pub(super) fn section_memory(&self, w: &mut String) {
        let r = self.r;
        let c = &self.r.config;
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
            for id in [ENVOY, NOOP, MK] {
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
    }
}
