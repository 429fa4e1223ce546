//! The load scenarios of a run: which ones it plans, and each one measured
//! slice by slice across a group of systems.

use super::*;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Scenario {
    Handshake(u32),
    /// Fixed handshake rate, all proxies at once.
    HandshakePaced,
    /// Paced (the same offered load for every system) or as fast as it goes.
    Frames {
        paced: bool,
    },
    Bulk {
        paced: bool,
    },
}

pub(crate) fn describe(s: &Sample) -> String {
    let rate = if s.wall_s > 0.0 {
        s.ops as f64 / s.wall_s
    } else {
        0.0
    };
    let cpu = s
        .proxy_cpu_s
        .map(|c| {
            if s.ops > 0 {
                format!("{:.1} us/op", c / s.ops as f64 * 1e6)
            } else {
                "-".into()
            }
        })
        .unwrap_or_else(|| "-".into());
    let errs: u64 = s.errors.values().sum();
    match s.scenario.as_str() {
        "idle" => format!(
            "{} sessions, rss {:?} -> {:?} kB, errors {errs}",
            s.ops, s.rss_before_kb, s.rss_kb
        ),
        _ => format!(
            "{rate:.0}/s, {:.0} MB/s, p50 {:?} us, proxy {cpu} (proxy {:.2}s, standin {:.2}s, loadgen {:.2}s of {:.2}s), errors {errs}",
            s.bytes as f64 / s.wall_s.max(1e-9) / 1e6,
            s.lat_p50_us,
            s.proxy_cpu_s.unwrap_or(0.0),
            s.standin_cpu_s.unwrap_or(0.0),
            s.loadgen_cpu_s,
            s.wall_s
        ),
    }
}

/// `hs_rate`: the paced handshake scenario's rate for this system's group.
pub(crate) async fn pool_for(
    ctx: &Ctx,
    sc: Scenario,
    run: &Running,
    counter: Arc<Counter>,
    hs_rate: f64,
) -> Pool {
    let set = &ctx.settings;
    let t = run.target.clone();
    match sc {
        Scenario::Handshake(c) => Pool::handshakes(t, counter, c, None),
        Scenario::HandshakePaced => {
            Pool::handshakes(t, counter, set.hs_paced_clients, Some(hs_rate))
        }
        Scenario::Frames { paced } => {
            Pool::frames(
                t,
                counter,
                set.frames_sessions,
                set.frames_bytes as usize,
                paced.then_some(set.frames_rate),
            )
            .await
        }
        Scenario::Bulk { paced } => {
            Pool::bulk(
                t,
                counter,
                set.bulk_sessions,
                set.bulk_bytes as usize,
                set.bulk_window,
                paced.then_some(set.bulk_rate_mb * 1e6),
            )
            .await
        }
    }
}

/// One scenario, every system: fresh processes for all, then a warm-up
/// slice each, then `cycles` cycles of one slice per system.
pub(crate) async fn sliced(
    ctx: &Ctx,
    systems: &[System],
    sc: Scenario,
    standin_pid: i32,
    counter: &Arc<Counter>,
    res: &mut Results,
    pinned_seen: &mut std::collections::BTreeSet<&'static str>,
) {
    let set = &ctx.settings;
    // A group is all budget systems or none.
    let budget = systems.iter().any(|s| s.budget);
    let hs_rate = if budget { set.budget_rate } else { set.hs_rate };
    // Paced stream scenarios load every proxy at once, each with the same
    // offered load, and measure them over the same windows: noise from the
    // machine then hits all of them alike. (The direct system has no proxy
    // CPU to measure and would only load CPU 1 more.)
    let concurrent = matches!(
        sc,
        Scenario::HandshakePaced
            | Scenario::Frames { paced: true }
            | Scenario::Bulk { paced: true }
    );
    let handshakes = matches!(sc, Scenario::Handshake(_) | Scenario::HandshakePaced);
    let chosen: Vec<&System> = systems
        .iter()
        .filter(|s| {
            (!s.handshake_only || handshakes) && !(concurrent && matches!(s.kind, Kind::Direct))
        })
        .collect();
    // Start every process first, then set up the clients. Diagnostics of
    // the benchmark itself: BENCH_START_REVERSE=1 starts them in reverse.
    let mut start_order: Vec<usize> = (0..chosen.len()).collect();
    if std::env::var("BENCH_START_REVERSE").is_ok_and(|v| v == "1") {
        start_order.reverse();
    }
    let mut started: Vec<Option<Running>> = chosen.iter().map(|_| None).collect();
    for i in start_order {
        let sys = chosen[i];
        match start(ctx, sys, 1) {
            Ok(r) => started[i] = Some(r),
            Err(e) => {
                let msg = format!("{sc:?} {}: start failed: {e:#}", sys.id);
                eprintln!("bench: {msg}");
                res.problems.push(msg);
            }
        }
    }
    let mut live: Vec<(&System, Running, Option<Pool>)> = Vec::new();
    for (sys, run) in chosen.into_iter().zip(started) {
        let Some(run) = run else { continue };
        if let Some(pid) = run.pid() {
            if pinned_seen.insert(sys.id) {
                res.pinning.push(Pinning {
                    process: format!("{} (proxy)", sys.label),
                    cpus_allowed: cpus_allowed(pid),
                });
            }
        }
        let pool = pool_for(ctx, sc, &run, counter.clone(), hs_rate).await;
        live.push((sys, run, Some(pool)));
    }
    let probe = |run: &Running| Probe {
        proxy: run.pid(),
        standin: Some(standin_pid),
    };
    let warm = Duration::from_secs_f64(set.warmup_s);
    if concurrent {
        futures_util::future::join_all(
            live.iter()
                .filter_map(|(_, run, pool)| pool.as_ref().map(|p| p.slice(warm, probe(run)))),
        )
        .await;
    } else {
        for (_, run, pool) in &live {
            if let Some(pool) = pool {
                let _ = pool.slice(warm, probe(run)).await;
            }
        }
    }
    let mut slices: Vec<Vec<Slice>> = live.iter().map(|_| Vec::new()).collect();
    // Sessions that failed to open, over every pool a system had.
    let mut setup_errors: Vec<std::collections::BTreeMap<String, u64>> =
        live.iter().map(|_| Default::default()).collect();
    let (cycles, slice_s) = match sc {
        Scenario::HandshakePaced if budget => (set.budget_windows, set.window_s),
        Scenario::Handshake(_) => (set.cycles, set.handshake_slice_s),
        Scenario::HandshakePaced
        | Scenario::Frames { paced: true }
        | Scenario::Bulk { paced: true } => (set.stream_cycles, set.window_s),
        _ => (set.cycles, set.slice_s),
    };
    for cycle in 1..=cycles.max(1) {
        if concurrent {
            // Fresh clients every window, created in an order that rotates
            // by one each window: the system whose client tasks were
            // spawned first gets a systematic advantage (seen: up to 35%
            // less CPU per handshake), so each one leads equally often.
            let mut order: Vec<usize> = (0..live.len()).collect();
            order.rotate_left((cycle as usize - 1) % live.len().max(1));
            for (i, entry) in live.iter_mut().enumerate() {
                if let Some(p) = entry.2.take() {
                    for (k, v) in p.setup_errors() {
                        *setup_errors[i].entry(k.clone()).or_default() += v;
                    }
                    p.stop().await;
                }
            }
            for &i in &order {
                let pool = pool_for(ctx, sc, &live[i].1, counter.clone(), hs_rate).await;
                live[i].2 = Some(pool);
            }
            let got = futures_util::future::join_all(order.iter().filter_map(|&i| {
                let (_, run, pool) = &live[i];
                pool.as_ref()
                    .map(|p| p.slice(Duration::from_secs_f64(slice_s), probe(run)))
            }))
            .await;
            for (i, mut sl) in order.into_iter().zip(got) {
                let sys = live[i].0;
                sl.sample.system = sys.id.into();
                sl.sample.round = cycle;
                eprintln!(
                    "bench: {:<10} c={:<3} cycle {cycle} {:<12} {}",
                    sl.sample.scenario,
                    sl.sample.concurrency,
                    sys.id,
                    describe(&sl.sample)
                );
                slices[i].push(sl);
            }
            continue;
        }
        let mut order: Vec<usize> = (0..live.len()).collect();
        if cycle % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let (sys, run, pool) = &live[i];
            let Some(pool) = pool else { continue };
            let mut sl = pool
                .slice(Duration::from_secs_f64(slice_s), probe(run))
                .await;
            sl.sample.system = sys.id.into();
            sl.sample.round = cycle;
            eprintln!(
                "bench: {:<9} c={:<3} cycle {cycle} {:<12} {}",
                sl.sample.scenario,
                sl.sample.concurrency,
                sys.id,
                describe(&sl.sample)
            );
            slices[i].push(sl);
        }
    }
    for (((sys, run, pool), sl), mut errs) in live.into_iter().zip(slices).zip(setup_errors) {
        let mut total = merge(&sl);
        total.system = sys.id.into();
        total.round = 0;
        if let Some(p) = &pool {
            for (k, v) in p.setup_errors() {
                *errs.entry(k.clone()).or_default() += v;
            }
        }
        for (k, v) in errs {
            *total.errors.entry(format!("setup: {k}")).or_default() += v;
        }
        if let Some(pid) = run.pid() {
            total.rss_kb = rss_kb(pid);
        }
        res.samples.extend(sl.into_iter().map(|s| s.sample));
        res.samples.push(total);
        if let Some(p) = pool {
            p.stop().await;
        }
        drop(run);
    }
}

/// The sliced scenarios `settings.scenarios` asks for, in running order.
pub(crate) fn planned_scenarios(settings: &RunConfig) -> Vec<Scenario> {
    let want = |name: &str| settings.scenarios.iter().any(|s| s == name);
    let mut scenarios: Vec<Scenario> = Vec::new();
    if want("handshake") {
        scenarios.extend(
            settings
                .handshake_levels
                .iter()
                .map(|c| Scenario::Handshake(*c)),
        );
    }
    if want("handshake-paced") {
        scenarios.push(Scenario::HandshakePaced);
    }
    for (name, sc) in [
        ("frames", Scenario::Frames { paced: true }),
        ("frames-max", Scenario::Frames { paced: false }),
        ("bulk", Scenario::Bulk { paced: true }),
        ("bulk-max", Scenario::Bulk { paced: false }),
    ] {
        if want(name) {
            scenarios.push(sc);
        }
    }
    scenarios
}
