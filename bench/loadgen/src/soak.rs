//! `mksgate-loadgen soak` (`make soak-long`, issue 24): a gateway's long
//! life at a steady population of open consoles with churn. Envoy + mksgate
//! as deployed (TLS both sides, the shipped access log, 2 workers) holds
//! `BENCH_SOAK_CONSOLES` consoles, each sending a frame every
//! `BENCH_SOAK_FRAME_S`; `BENCH_SOAK_CHURN` times a second one console
//! closes and a new one opens, and `BENCH_SOAK_REFUSED` times a second a
//! link the gateway must refuse is sent (expired, forged, or a replay of a
//! link already used, in turn). Every `BENCH_SOAK_SAMPLE_S` it samples
//! Envoy's heap (`/memory`), RSS, the VMs' linear memory, the open-console
//! gauge and the decision counters. At the end the counters must equal
//! what the load generator saw, and (with `BENCH_SOAK_CHECK=1`) heap, RSS
//! and VM memory must stay within 5% after the warm-up
//! (`BENCH_SOAK_WARM_S`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Semaphore};

use crate::procs::{raise_nofile, rss_kb};
use crate::scale::{
    console, decision_counters, deployed_ctx, heap_allocated, source, stat_lines, vm_memory, Life,
    Tally, ENVOY_LIMIT,
};
use crate::scenario::{open_as, Variant};
use crate::suite::{all_systems, env_u64, patched, start};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SoakSample {
    pub at_s: f64,
    pub consoles_open: u64,
    pub heap_allocated: Option<u64>,
    pub heap_size: Option<u64>,
    pub rss_kb: Option<u64>,
    pub vm_memory: Option<u64>,
    /// `wasmcustom.mksgate.consoles_open`.
    pub gauge_open: Option<u64>,
    /// `wasmcustom.mksgate.decision.<code>`.
    pub decisions: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SoakRun {
    pub started_utc: String,
    pub secs: u64,
    pub consoles: u32,
    pub churn_per_s: f64,
    pub refused_per_s: f64,
    pub frame_every_s: u64,
    pub warm_s: u64,
    pub samples: Vec<SoakSample>,
    /// What the load generator sent and saw.
    pub opened: u64,
    pub open_failed: u64,
    pub frames_sent: u64,
    pub frames_echoed: u64,
    pub consoles_cut: u64,
    pub refused_sent: BTreeMap<String, u64>,
    pub refused_seen: BTreeMap<String, u64>,
    /// Over the samples after the warm-up: (max - min) / min, in %.
    pub spread_pct: BTreeMap<String, f64>,
    /// Goals missed; empty when the run passed.
    pub problems: Vec<String>,
}

fn memory_field(admin: Option<std::net::SocketAddr>, field: &str) -> Option<u64> {
    let (_, body) = crate::procs::http_get(admin?, "/memory", Duration::from_secs(5)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v[field].as_str()?.parse().ok()
}

/// How a link sent to be refused was answered: its kind when the gateway
/// said 403, else the kind with what happened instead.
fn tally_refusal(seen: &mut BTreeMap<String, u64>, kind: &str, err: Option<String>) {
    let key = match err.as_deref() {
        Some("status 403") => kind.to_string(),
        Some(other) => format!("{kind}: {other}"),
        None => format!("{kind}: admitted"),
    };
    *seen.entry(key).or_default() += 1;
}

fn spread(values: impl Iterator<Item = Option<u64>>) -> Option<f64> {
    let v: Vec<u64> = values.flatten().collect();
    let (min, max) = (*v.iter().min()?, *v.iter().max()?);
    (min > 0).then(|| (max - min) as f64 / min as f64 * 100.0)
}

/// Run the soak; writes `out` (JSON) as it goes and returns the run.
pub async fn run(root: &Path, out: &Path) -> Result<SoakRun> {
    raise_nofile();
    let consoles = env_u64("BENCH_SOAK_CONSOLES", 2000) as u32;
    let secs = env_u64("BENCH_SOAK_SECS", 1800);
    let churn = env_u64("BENCH_SOAK_CHURN", 50) as f64;
    let refused_rate = env_u64("BENCH_SOAK_REFUSED", 5) as f64;
    let frame_every = Duration::from_secs(env_u64("BENCH_SOAK_FRAME_S", 10));
    let sample_every = Duration::from_secs(env_u64("BENCH_SOAK_SAMPLE_S", 30));
    let warm_s = env_u64("BENCH_SOAK_WARM_S", 300);
    let (ctx, standin) = deployed_ctx(root)?;
    let mut sys = all_systems()
        .into_iter()
        .find(|s| s.id == "mksgate-tls")
        .ok_or_else(|| anyhow!("no mksgate-tls system"))?;
    sys.kind = patched(sys.kind, ENVOY_LIMIT);
    let running = start(&ctx, &sys, 2)?;
    let (pid, admin) = (running.pid(), running.admin);
    let tally = Arc::new(Tally::default());
    let life = Life {
        target: running.target.clone(),
        gate: Arc::new(Semaphore::new(64)),
        every: frame_every,
        tally: tally.clone(),
        errors: Arc::new(std::sync::Mutex::new(BTreeMap::new())),
    };
    let mut run = SoakRun {
        started_utc: crate::suite::utc_now(),
        secs,
        consoles,
        churn_per_s: churn,
        refused_per_s: refused_rate,
        frame_every_s: frame_every.as_secs(),
        warm_s,
        ..SoakRun::default()
    };
    // The population: per slot, its stop switch and task.
    let mut next_n: u64 = 0;
    let mut slots = Vec::with_capacity(consoles as usize);
    for i in 0..consoles {
        let (stop, rx) = watch::channel(false);
        slots.push((stop, tokio::spawn(console(life.clone(), next_n, i, rx))));
        next_n += 1;
    }
    // The population first; refused links and churn start once it is open.
    let opening = Instant::now();
    while tally.opened.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed)
        < u64::from(consoles)
    {
        if opening.elapsed() > Duration::from_secs(300) {
            bail!("soak: the first {consoles} consoles did not open within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "soak: {consoles} consoles open after {:.1?}",
        opening.elapsed()
    );
    let t0 = Instant::now();
    let mut next_sample = t0;
    let mut next_churn = t0;
    let mut next_refused = t0;
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut refused_turn = 0u64;
    let mut refusals = tokio::task::JoinSet::new();
    let kinds = ["expired", "bad_signature", "replayed"];
    while t0.elapsed() < Duration::from_secs(secs) {
        let now = Instant::now();
        if now >= next_sample {
            let decisions = decision_counters(admin);
            let sample = SoakSample {
                at_s: t0.elapsed().as_secs_f64(),
                consoles_open: tally.opened.load(Ordering::Relaxed)
                    - tally.cut.load(Ordering::Relaxed)
                    - tally.alive_at_end.load(Ordering::Relaxed),
                heap_allocated: heap_allocated(admin),
                heap_size: memory_field(admin, "heap_size"),
                rss_kb: pid.and_then(rss_kb),
                vm_memory: vm_memory(admin),
                gauge_open: admin.and_then(|a| {
                    stat_lines(a, r"^wasmcustom\.mksgate\.consoles_open$")
                        .first()
                        .map(|(_, v)| *v)
                }),
                decisions,
            };
            eprintln!(
                "soak {:>5.0} s: {} open (gauge {:?}), heap {:?}, rss {:?} kB, vm {:?}, decisions {:?}",
                sample.at_s,
                sample.consoles_open,
                sample.gauge_open,
                sample.heap_allocated,
                sample.rss_kb,
                sample.vm_memory,
                sample.decisions
            );
            run.samples.push(sample);
            std::fs::write(out, serde_json::to_string_pretty(&run)?)?;
            next_sample += sample_every;
        }
        if now >= next_churn && churn > 0.0 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let i = (rng % u64::from(consoles)) as usize;
            let (stop, rx) = watch::channel(false);
            let (old_stop, _old) = std::mem::replace(
                &mut slots[i],
                (
                    stop,
                    tokio::spawn(console(life.clone(), next_n, i as u32, rx)),
                ),
            );
            let _ = old_stop.send(true);
            next_n += 1;
            next_churn += Duration::from_secs_f64(1.0 / churn);
        }
        if now >= next_refused && refused_rate > 0.0 {
            let kind = kinds[(refused_turn % 3) as usize];
            refused_turn += 1;
            *run.refused_sent.entry(kind.to_string()).or_default() += 1;
            let (variant, n) = match kind {
                "expired" => (Variant::Expired, 1_000_000_000 + refused_turn),
                "bad_signature" => (Variant::Forged, 1_000_000_000 + refused_turn),
                // A link used about 10 s ago (churn opens `churn` a second),
                // or one of the first population's: recorded, not expired.
                _ => (
                    Variant::Valid,
                    next_n.saturating_sub((churn * 10.0) as u64 + 1),
                ),
            };
            let target = running.target.clone();
            refusals.spawn(async move {
                let r = open_as(
                    &target,
                    n,
                    Some(source(60_000 + (n % 1000) as u32)),
                    variant,
                )
                .await;
                (kind, r.err())
            });
            next_refused += Duration::from_secs_f64(1.0 / refused_rate);
        }
        while let Some(Ok((kind, err))) = refusals.try_join_next() {
            tally_refusal(&mut run.refused_seen, kind, err);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while let Some(Ok((kind, err))) = refusals.join_next().await {
        tally_refusal(&mut run.refused_seen, kind, err);
    }
    for (stop, task) in slots {
        let _ = stop.send(true);
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let final_decisions = decision_counters(admin);
    run.opened = tally.opened.load(Ordering::Relaxed);
    run.open_failed = tally.failed.load(Ordering::Relaxed);
    run.frames_sent = tally.sent.load(Ordering::Relaxed);
    run.frames_echoed = tally.echoed.load(Ordering::Relaxed);
    run.consoles_cut = tally.cut.load(Ordering::Relaxed);
    let after_warm = || run.samples.iter().filter(|s| s.at_s >= warm_s as f64);
    for (name, v) in [
        (
            "heap allocated",
            spread(after_warm().map(|s| s.heap_allocated)),
        ),
        ("heap size", spread(after_warm().map(|s| s.heap_size))),
        ("rss", spread(after_warm().map(|s| s.rss_kb))),
        ("vm memory", spread(after_warm().map(|s| s.vm_memory))),
    ] {
        if let Some(v) = v {
            run.spread_pct.insert(name.to_string(), v);
        }
    }
    drop(running);
    drop(standin);
    eprintln!(
        "soak: opened {} ({} failed), cut {}, frames {}/{} echoed, refused sent {:?} seen {:?}, final decisions {:?}, spread after warm-up {:?}",
        run.opened,
        run.open_failed,
        run.consoles_cut,
        run.frames_echoed,
        run.frames_sent,
        run.refused_sent,
        run.refused_seen,
        final_decisions,
        run.spread_pct
    );
    // The counters add up to what the load generator saw.
    let mut problems = Vec::new();
    let want = |code: &str, n: u64| (code.to_string(), n);
    for (code, n) in [
        want("admitted", run.opened),
        want(
            "expired",
            run.refused_sent.get("expired").copied().unwrap_or(0),
        ),
        want(
            "bad_signature",
            run.refused_sent.get("bad_signature").copied().unwrap_or(0),
        ),
        want(
            "replayed",
            run.refused_sent.get("replayed").copied().unwrap_or(0),
        ),
    ] {
        let got = final_decisions.get(&code).copied().unwrap_or(0);
        if got != n {
            problems.push(format!(
                "decision.{code}: Envoy counted {got}, the load generator {n}"
            ));
        }
    }
    if run.refused_seen != run.refused_sent {
        problems.push(format!(
            "refusals: sent {:?}, answered {:?}",
            run.refused_sent, run.refused_seen
        ));
    }
    if run.open_failed > 0 || run.consoles_cut > 0 || run.frames_echoed < run.frames_sent {
        problems.push(format!(
            "{} consoles failed to open, {} cut, {} of {} frames echoed",
            run.open_failed, run.consoles_cut, run.frames_echoed, run.frames_sent
        ));
    }
    if std::env::var("BENCH_SOAK_CHECK").is_ok_and(|v| v == "1") {
        for (name, v) in &run.spread_pct {
            if *v > 5.0 && name != "heap size" {
                problems.push(format!("{name} moved {v:.1}% after the warm-up"));
            }
        }
    }
    run.problems = problems;
    std::fs::write(out, serde_json::to_string_pretty(&run)?)?;
    Ok(run)
}
