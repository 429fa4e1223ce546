//! The long soak's table (`make soak-long`: bench/results/soak.md, which
//! BENCHMARKS.md includes).

use std::fmt::Write;

use crate::soak::{SoakRun, SoakSample};

fn mib(v: Option<u64>) -> String {
    v.map_or("—".into(), |b| format!("{:.1}", b as f64 / 1048576.0))
}

fn row(md: &mut String, s: &SoakSample) {
    let total: u64 = s.decisions.values().sum();
    let _ = writeln!(
        md,
        "| {:.0} | {} | {} | {} | {} | {} | {} | {} |",
        s.at_s,
        s.consoles_open,
        s.gauge_open.map_or("—".into(), |v| v.to_string()),
        mib(s.heap_allocated),
        mib(s.heap_size),
        mib(s.rss_kb.map(|k| k * 1024)),
        mib(s.vm_memory),
        total
    );
}

pub fn markdown(run: &SoakRun) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Long life: {} minutes at {} open consoles (`make soak-long`, issue 24)\n",
        run.secs / 60,
        run.consoles
    );
    let _ = writeln!(
        md,
        "Run {}. Envoy + mksgate as deployed (TLS both sides, the shipped access log, 2 workers) held {} consoles, each sending a frame every {} s; {} a second closed and were replaced by new ones, and {} refused links a second were sent (expired, forged and replayed in turn). {} consoles opened in all ({} failed), {} cut; {} of {} frames echoed. Refused links sent {:?}, answered {:?}. {} Spread after the first {} s ((max - min) / min): {}.\n",
        run.started_utc,
        run.consoles,
        run.frame_every_s,
        run.churn_per_s,
        run.refused_per_s,
        run.opened,
        run.open_failed,
        run.consoles_cut,
        run.frames_echoed,
        run.frames_sent,
        run.refused_sent,
        run.refused_seen,
        if run.problems.is_empty() {
            "The decision counters equalled the load generator's tallies.".to_string()
        } else {
            format!("Goals missed: {}.", run.problems.join("; "))
        },
        run.warm_s,
        run.spread_pct
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}%"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        md,
        "| at, s | consoles open (load generator) | `mksgate.consoles_open` | Envoy heap allocated, MiB | heap size, MiB | RSS, MiB | wasm VMs' memory, MiB | decisions counted |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in &run.samples {
        row(&mut md, s);
    }
    md
}
