//! The measurements that are not load: proxy memory with idle sessions, per
//! worker VM, and the start-up time.

use super::*;

pub(crate) fn envoy_stat(admin: SocketAddr, name: &str) -> Option<u64> {
    let (_, body) = http_get(
        admin,
        "/stats?filter=wasm.envoy.wasm.runtime",
        Duration::from_secs(2),
    )
    .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Proxy memory with idle sessions: each system fresh, one at a time.
pub(crate) async fn measure_idle(
    ctx: &Ctx,
    systems: &[System],
    standin_pid: i32,
    counter: &Arc<Counter>,
    res: &mut Results,
) {
    for sys in systems.iter().filter(|s| !s.handshake_only) {
        let run = match start(ctx, sys, 1) {
            Ok(r) => r,
            Err(e) => {
                res.problems
                    .push(format!("idle {}: start failed: {e:#}", sys.id));
                continue;
            }
        };
        let probe = Probe {
            proxy: run.pid(),
            standin: Some(standin_pid),
        };
        let mut sample = scenario::idle(
            run.target.clone(),
            counter.clone(),
            ctx.settings.idle_sessions,
            Duration::from_secs(1),
            probe,
        )
        .await;
        sample.system = sys.id.into();
        eprintln!("bench: idle      {:<12} {}", sys.id, describe(&sample));
        res.samples.push(sample);
        drop(run);
    }
}

/// Memory each worker's VM adds: RSS at several --concurrency values,
/// after handshakes through every worker (so each VM has served requests),
/// then idle for a second.
pub(crate) async fn measure_vm_memory(
    ctx: &Ctx,
    systems: &[System],
    counter: &Arc<Counter>,
    res: &mut Results,
) {
    for sys in systems
        .iter()
        .filter(|s| matches!(s.id, "envoy" | "noop" | "mksgate"))
    {
        let mut order: Vec<u32> = ctx.settings.vm_memory_concurrency.clone();
        let mut rev = order.clone();
        rev.reverse();
        order.extend(rev);
        for c in order {
            match start(ctx, sys, c) {
                Ok(run) => {
                    let pool = Pool::handshakes(run.target.clone(), counter.clone(), 16, None);
                    let probe = Probe {
                        proxy: run.pid(),
                        standin: None,
                    };
                    let served = pool.slice(Duration::from_millis(600), probe).await;
                    pool.stop().await;
                    if served.sample.ops < u64::from(c) * 20 {
                        res.problems.push(format!(
                            "vm-memory {} c={c}: only {} handshakes served",
                            sys.id, served.sample.ops
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    let rss = run.pid().and_then(rss_kb).unwrap_or(0);
                    let vms = run
                        .admin
                        .and_then(|a| envoy_stat(a, "wasm.envoy.wasm.runtime.v8.active"));
                    eprintln!(
                        "bench: vm-memory {:<8} concurrency {c}: {rss} kB, v8 VMs {vms:?}",
                        sys.id
                    );
                    res.vm_memory.push(VmMemory {
                        system: sys.id.into(),
                        concurrency: c,
                        rss_kb: rss,
                        v8_active_vms: vms,
                    });
                }
                Err(e) => res
                    .problems
                    .push(format!("vm-memory {} c={c}: {e:#}", sys.id)),
            }
        }
    }
}

/// Start-up to LIVE, with and without a module (V8 compiles it on start).
pub(crate) fn measure_load_time(ctx: &Ctx, systems: &[System], res: &mut Results) {
    let lt_systems: Vec<&System> = systems
        .iter()
        .filter(|s| matches!(s.kind, Kind::Envoy { .. }) && !s.handshake_only)
        .collect();
    let mut load: Vec<LoadTime> = lt_systems
        .iter()
        .map(|s| LoadTime {
            system: s.id.into(),
            ready_ms: Vec::new(),
        })
        .collect();
    let reps = ctx.settings.load_time_reps;
    for _ in 0..reps {
        for (i, sys) in lt_systems.iter().enumerate() {
            let t = Instant::now();
            match start(ctx, sys, 1) {
                Ok(run) => {
                    load[i].ready_ms.push(t.elapsed().as_secs_f64() * 1e3);
                    drop(run);
                }
                Err(e) => res.problems.push(format!("load-time {}: {e:#}", sys.id)),
            }
        }
    }
    for l in &load {
        eprintln!(
            "bench: start-to-LIVE {:<12} {:?} ms",
            l.system,
            l.ready_ms.iter().map(|v| v.round()).collect::<Vec<_>>()
        );
    }
    if reps > 0 {
        res.load_time = load;
    }
}
