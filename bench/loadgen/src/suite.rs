//! The whole benchmark in one run: one ESXi stand-in, every system in front
//! of it, every scenario, scenario by scenario (all systems one after the
//! other, so the figures compared are taken minutes apart at most), each
//! against a freshly started proxy. Then Envoy's memory per worker VM and
//! its start-up time with and without the modules.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mksgate_core::jws::{self, Alg, Key};

use crate::procs::{
    clock_ticks, command_line, cpus_allowed, free_port, http_get, log_tail, pinned, raise_nofile,
    render, rss_kb, Proc,
};
use crate::results::{
    LoadTime, Meta, ModuleInfo, Pinning, Results, RunConfig, Sample, SystemInfo, VmMemory,
};
use crate::scenario::{self, merge, Counter, Mode, Pool, Probe, Slice, Target, ESXI_HOST, KID};

/// CPU the proxy runs on; the load generator and the stand-in get the other.
pub const PROXY_CPU: &str = "0";
pub const LOAD_CPU: &str = "1";
use mksgate_testkit::link::KEY_ENV;

// The run's parts, one concern each: the systems and how each is started,
// what the run records about itself, the load scenarios, and the memory and
// start-up measurements.
mod memory;
mod meta;
mod scenarios;
mod start;
mod systems;
use memory::*;
pub use meta::*;
use scenarios::*;
pub use start::*;
pub use systems::*;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

pub fn env_list(name: &str, default: &[u32]) -> Vec<u32> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .split([',', ' '])
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        _ => default.to_vec(),
    }
}

/// Everything a full run does, in order (`BENCH_SCENARIOS` picks a subset).
pub const ALL_SCENARIOS: [&str; 9] = [
    "handshake",
    "handshake-paced",
    "frames",
    "frames-max",
    "bulk",
    "bulk-max",
    "idle",
    "vm-memory",
    "load-time",
];

/// Durations and sizes; `BENCH_QUICK=1` shrinks everything, each `BENCH_*`
/// variable overrides one value (see scripts/bench.sh).
pub fn settings_from_env() -> RunConfig {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let q = |full: f64, quick_v: f64| if quick { quick_v } else { full };
    RunConfig {
        cycles: env_u64("BENCH_CYCLES", if quick { 2 } else { 4 }) as u32,
        stream_cycles: env_u64("BENCH_STREAM_CYCLES", if quick { 2 } else { 10 }) as u32,
        window_s: env_f64("BENCH_WINDOW_S", q(3.0, 0.8)),
        slice_s: env_f64("BENCH_SLICE_S", q(2.0, 0.6)),
        handshake_slice_s: env_f64("BENCH_HS_SLICE_S", q(1.5, 0.6)),
        warmup_s: env_f64("BENCH_WARMUP_S", q(1.0, 0.3)),
        handshake_levels: env_list("BENCH_LEVELS", &[1, 16, 64]),
        frames_sessions: env_u64("BENCH_FRAMES_SESSIONS", 16) as u32,
        frames_bytes: env_u64("BENCH_FRAMES_BYTES", 64),
        bulk_sessions: env_u64("BENCH_BULK_SESSIONS", 4) as u32,
        bulk_bytes: env_u64("BENCH_BULK_BYTES", 1 << 20),
        bulk_window: env_u64("BENCH_BULK_WINDOW", 4) as u32,
        frames_rate: env_f64("BENCH_FRAMES_RATE", 2000.0),
        hs_rate: env_f64("BENCH_HS_RATE", 80.0),
        hs_paced_clients: env_u64("BENCH_HS_PACED_CLIENTS", 8) as u32,
        budget_rate: env_f64("BENCH_BUDGET_RATE", 120.0),
        budget_windows: env_u64("BENCH_BUDGET_WINDOWS", if quick { 3 } else { 20 }) as u32,
        bulk_rate_mb: env_f64("BENCH_BULK_RATE_MB", 100.0),
        scenarios: match std::env::var("BENCH_SCENARIOS") {
            Ok(v) if !v.trim().is_empty() => v
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            _ => ALL_SCENARIOS.iter().map(|s| s.to_string()).collect(),
        },
        idle_sessions: env_u64("BENCH_IDLE_SESSIONS", if quick { 200 } else { 1000 }) as u32,
        link_ttl_s: env_u64("BENCH_LINK_TTL_S", 60),
        load_time_reps: env_u64("BENCH_LOAD_REPS", if quick { 2 } else { 5 }) as u32,
        vm_memory_concurrency: env_list("BENCH_VM_CONCURRENCY", &[1, 2, 4, 8]),
        proxy_cpu: PROXY_CPU.into(),
        loadgen_cpu: LOAD_CPU.into(),
        tls: "none: plaintext ws from client to proxy and from proxy to the stand-in".into(),
    }
}

/// Run everything; returns the results (also written to `out`).
pub async fn run(root: &Path, out: &Path) -> Result<Results> {
    let t0 = Instant::now();
    let settings = settings_from_env();
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let paths = Paths::discover(root)?;
    let nofile = raise_nofile();
    let mut res = Results {
        meta: meta(root, &paths, quick),
        config: settings.clone(),
        modules: module_info(&paths),
        ..Results::default()
    };
    if nofile < u64::from(settings.idle_sessions) * 3 {
        res.problems.push(format!(
            "open-files limit {nofile} is low for {} idle sessions",
            settings.idle_sessions
        ));
    }
    let systems = selected_systems();
    res.systems = systems.iter().map(system_info).collect();

    let standin = Standin::start(&paths, None)?;
    let me = std::process::id() as i32;
    res.pinning.push(Pinning {
        process: "mksgate-loadgen (load generator)".into(),
        cpus_allowed: cpus_allowed(me),
    });
    res.pinning.push(Pinning {
        process: "esxi-standin".into(),
        cpus_allowed: cpus_allowed(standin.pid()),
    });
    let secret = random_secret()?;
    let key = Key::new(Some(KID.into()), Alg::HS256, &secret)
        .map_err(|e| anyhow!("signing key: {e:?}"))?;
    // The deployed systems' TLS stand-in and certificates, only if one runs.
    let needs_deployed = systems.iter().any(|s| s.tls || s.access_log);
    let tls_standin = if needs_deployed {
        let cert = paths.work.join("standin-tls.crt");
        let standin = Standin::start(&paths, Some(&cert))?;
        res.pinning.push(Pinning {
            process: "esxi-standin (TLS)".into(),
            cpus_allowed: cpus_allowed(standin.pid()),
        });
        let deployed = crate::deployed::Deployed::new(root, &paths.work, standin.addr, &cert)?;
        Some((standin, deployed))
    } else {
        None
    };
    let (tls_standin, deployed) = tls_standin.unzip();
    let ctx = Ctx {
        paths,
        settings: settings.clone(),
        key,
        key_env_value: jws::encode_secret(&secret),
        standin_addr: standin.addr,
        deployed,
    };
    let counter = Arc::new(Counter::default());

    let mut pinned_seen = std::collections::BTreeSet::new();
    let want = |name: &str| settings.scenarios.iter().any(|s| s == name);
    let scenarios = planned_scenarios(&settings);
    // The plaintext systems, then the deployed (TLS) ones as a group of
    // their own: paced runs load every system of a group at once on the
    // proxy CPU, and the TLS ones against their own stand-in.
    // The budget's systems are a third group, in the paced handshake
    // scenario only: few systems at a higher rate, for a finer figure.
    let (deployed_systems, rest): (Vec<System>, Vec<System>) =
        systems.iter().cloned().partition(|s| s.tls);
    let (budget_systems, plain): (Vec<System>, Vec<System>) =
        rest.into_iter().partition(|s| s.budget);
    for sc in scenarios {
        for (group, standin_pid, budget) in [
            (&plain, standin.pid(), false),
            (
                &deployed_systems,
                tls_standin.as_ref().map_or(standin.pid(), |s| s.pid()),
                false,
            ),
            (&budget_systems, standin.pid(), true),
        ] {
            if group.is_empty() || (budget && !matches!(sc, Scenario::HandshakePaced)) {
                continue;
            }
            sliced(
                &ctx,
                group,
                sc,
                standin_pid,
                &counter,
                &mut res,
                &mut pinned_seen,
            )
            .await;
        }
    }

    if want("idle") {
        measure_idle(&ctx, &plain, standin.pid(), &counter, &mut res).await;
    }
    if want("vm-memory") {
        measure_vm_memory(&ctx, &plain, &counter, &mut res).await;
    }
    if want("load-time") {
        measure_load_time(&ctx, &plain, &mut res);
    }

    drop(tls_standin);
    drop(standin);
    res.meta.loadavg_end = read_trim("/proc/loadavg");
    res.meta.wall_seconds = t0.elapsed().as_secs_f64();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&res)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(res)
}

/// For the single-scenario subcommands.
pub fn target_from_args(addr: SocketAddr, key_env: Option<&str>, ttl_s: u64) -> Result<Target> {
    let mode = match key_env {
        None => Mode::Path,
        Some(var) => {
            let v = std::env::var(var).with_context(|| format!("${var} not set"))?;
            let secret = jws::decode_secret(&v).ok_or_else(|| anyhow!("${var}: not base64url"))?;
            let key = Key::new(Some(KID.into()), Alg::HS256, &secret)
                .map_err(|e| anyhow!("${var}: {e:?}"))?;
            Mode::Mksgate {
                key: Box::new(key),
                ttl_s,
            }
        }
    };
    Ok(Target::new(addr, mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_exports_are_listed() {
        // (module (func) (export "proxy_on_x" (func 0)) (export "memory" ...))
        // built by hand: magic, version, type, function, export sections.
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type: () -> ()
        m.extend_from_slice(&[3, 2, 1, 0]); // function 0 has type 0
        let mut exports = vec![2u8];
        for name in ["proxy_on_x", "other"] {
            exports.push(name.len() as u8);
            exports.extend_from_slice(name.as_bytes());
            exports.extend_from_slice(&[0, 0]); // func 0
        }
        m.push(7);
        m.push(exports.len() as u8);
        m.extend_from_slice(&exports);
        m.extend_from_slice(&[10, 4, 1, 2, 0, 0x0b]); // code: empty body
        assert_eq!(proxy_exports(&m), vec!["proxy_on_x".to_string()]);
        assert!(proxy_exports(b"not wasm").is_empty());
    }

    #[test]
    fn every_system_config_renders() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for sys in all_systems() {
            let (file, module) = match sys.kind {
                Kind::Direct => continue,
                Kind::Haproxy { template, .. } => (template, None),
                Kind::Envoy {
                    template, module, ..
                } => (template, module),
            };
            let text = std::fs::read_to_string(root.join("bench/configs").join(file)).unwrap();
            let mut vars = vec![
                ("LISTEN_PORT", "1".to_string()),
                ("ADMIN_PORT", "2".to_string()),
                ("UPSTREAM_ADDR", "127.0.0.2".to_string()),
                ("UPSTREAM2_ADDR", "127.0.0.3".to_string()),
                ("UPSTREAM_PORT", "3".to_string()),
                ("GATEWAY_PEM", "/gw.pem".to_string()),
            ];
            if module.is_some() {
                vars.push(("MODULE", "/x.wasm".to_string()));
            }
            let out = render(&text, &vars).unwrap();
            if let Kind::Envoy { patches, .. } = sys.kind {
                for (from, _) in patches {
                    assert!(out.contains(from), "{}: patch target missing", sys.id);
                }
                use crate::deployed::{ACCESS_LOG_ANCHOR, CLUSTER_ANCHOR, LISTENER_ANCHOR};
                for anchor in [LISTENER_ANCHOR, CLUSTER_ANCHOR, ACCESS_LOG_ANCHOR] {
                    assert_eq!(out.matches(anchor).count(), 1, "{}: {anchor:?}", sys.id);
                }
            }
        }
    }
}
