//! The sizing tables of `make bench-scale` (bench/results/scale.md, which
//! BENCHMARKS.md includes).

use std::fmt::Write;

use crate::scale::{ScaleRow, ScaleRun};

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

fn mib(v: Option<u64>) -> String {
    opt(v.map(|b| b as f64 / 1024.0), 1)
}

fn vm(v: Option<u64>) -> String {
    v.map_or("—".into(), |b| format!("{:.2}", b as f64 / 1048576.0))
}

fn errors(r: &ScaleRow) -> String {
    if r.open_errors.is_empty() {
        "0".into()
    } else {
        r.open_errors
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// kB per console of `r` minus that of the do-nothing filter at the same
/// level.
fn over_noop(run: &ScaleRun, r: &ScaleRow) -> String {
    let noop = run
        .rows
        .iter()
        .find(|o| o.system == "noop-tls" && o.consoles == r.consoles);
    match (r.kb_per_console, noop.and_then(|o| o.kb_per_console)) {
        (Some(a), Some(b)) if r.system != "noop-tls" && r.system.contains("mksgate") => {
            format!("{:+.2}", a - b)
        }
        _ => "".into(),
    }
}

pub fn markdown(run: &ScaleRun) -> String {
    let mut md = String::new();
    let s = run.settings.clone();
    let _ = writeln!(
        md,
        "## Sizing: open consoles per gateway (`make bench-scale`, issue 24)\n"
    );
    if let Some(s) = &s {
        let _ = writeln!(
            md,
            "Run {} at `{}`, {:.0} s. As deployed: TLS 1.3 from the client, TLS to the TLS ESXi stand-in, the shipped access log, Envoy `--concurrency 2` (HAProxy: its deployed config, `nbthread 1`), the proxy pinned to CPU 0 and the clients and stand-in to CPU 1. Connection limits raised for the run (Envoy's overload-manager limit to 200,000; HAProxy's `maxconn` to 9,990, as many as 20,000 descriptors allow it; the bench configs' circuit breakers are 100,000); open-files limit {}. {} handshakes in flight while opening, each console from its own 127.1.x.y address; each sends a {}-byte frame every {} s (the first at a spread offset) and checks its echo, for a hold of {} s, then once more before the close. RSS per console = (RSS after the hold - RSS before) / consoles opened.\n",
            run.started_utc,
            run.git_commit,
            run.wall_s,
            s.nofile,
            s.parallel,
            16,
            s.frame_every_s,
            s.hold_s,
        );
    }
    let _ = writeln!(
        md,
        "| system | consoles | opened | open errors | time to open, s | cut | alive at the end | RSS before → open → closed, MiB | kB per console | over noop, kB | proxy CPU while held, % of a core | fds | per worker | wasm VMs' memory before → open → closed, MiB | Envoy heap allocated, MiB | heap per console, kB |\n|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|---:|---:|"
    );
    for r in &run.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} → {} → {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.consoles,
            r.opened,
            errors(r),
            r.open_s,
            r.consoles_cut,
            r.alive_at_end,
            mib(r.rss_before_kb),
            mib(r.rss_open_kb),
            mib(r.rss_closed_kb),
            opt(r.kb_per_console, 2),
            over_noop(run, r),
            opt(r.cpu_pct, 2),
            r.fds_open.map_or("—".into(), |v| v.to_string()),
            if r.per_worker.is_empty() {
                "—".into()
            } else {
                format!("{:?}", r.per_worker)
            },
            if r.vm_memory_open.is_some() {
                format!(
                    "{} → {} → {}",
                    vm(r.vm_memory_before),
                    vm(r.vm_memory_open),
                    vm(r.vm_memory_closed)
                )
            } else {
                "—".into()
            },
            vm(r.heap_allocated_open),
            match (r.heap_allocated_before, r.heap_allocated_open) {
                (Some(a), Some(b)) if r.opened > 0 => {
                    format!("{:.2}", (b as f64 - a as f64) / 1024.0 / r.opened as f64)
                }
                _ => "—".into(),
            },
        );
    }
    md
}
