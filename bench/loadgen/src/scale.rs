//! `mksgate-loadgen scale` (`make bench-scale`, issue 24): how many open
//! consoles one gateway holds, and what each one costs, for the four
//! systems as deployed (TLS from the client, TLS to a TLS ESXi stand-in,
//! the shipped access log, 2 Envoy workers; HAProxy with its deployed
//! config), side by side in one run.
//!
//! For each level N and each system, against a freshly started proxy:
//! open N consoles (`BENCH_SCALE_PARALLEL` handshakes in flight, each from
//! its own 127.1.x.y source address), hold them for `BENCH_SCALE_HOLD_S`
//! while each sends one small frame every `BENCH_SCALE_FRAME_S` (first at a
//! random offset) and checks its echo, check every console once more, close
//! them all, and read the proxy's RSS, CPU, descriptors, per-worker
//! connection counters and (mksgate) the VMs' linear memory before, with
//! and after. The connection limits are raised for the run (Envoy's
//! overload-manager limit, HAProxy's `maxconn`); nothing else changes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use futures_util::SinkExt;
use mksgate_core::jws::{self, Alg, Key};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::procs::{cpu_ns, http_get, raise_nofile, rss_kb};
use crate::scenario::{close, next_echo, open_from, Counter, Target, Ws, KID};
use crate::suite::{
    all_systems, env_list, env_u64, patched, settings_from_env, start, Ctx, Kind, Paths, Standin,
};

/// The systems measured, as deployed.
const SYSTEMS: [&str; 4] = ["haproxy-tls", "envoy-tls", "noop-tls", "mksgate-tls"];
pub const ENVOY_LIMIT: &[(&str, &str)] = &[(
    "max_active_downstream_connections: 20000",
    "max_active_downstream_connections: 200000",
)];
const HAPROXY_LIMIT: &[(&str, &str)] = &[("maxconn 8000", "maxconn 9990")];
const FRAME: &[u8] = b"console-frame-16";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScaleSettings {
    pub levels: Vec<u32>,
    pub systems: Vec<String>,
    pub hold_s: u64,
    pub frame_every_s: u64,
    pub parallel: u32,
    pub nofile: u64,
}

/// One system at one level.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScaleRow {
    pub system: String,
    pub label: String,
    pub consoles: u32,
    pub opened: u64,
    pub open_errors: BTreeMap<String, u64>,
    pub open_s: f64,
    pub rss_before_kb: Option<u64>,
    pub rss_open_kb: Option<u64>,
    pub rss_closed_kb: Option<u64>,
    pub kb_per_console: Option<f64>,
    /// Proxy CPU over the hold, in % of one core.
    pub cpu_pct: Option<f64>,
    pub frames_sent: u64,
    pub frames_echoed: u64,
    /// Consoles whose frame was not echoed (they count as cut).
    pub consoles_cut: u64,
    /// Consoles that echoed the last check before the close.
    pub alive_at_end: u64,
    pub fds_open: Option<u64>,
    /// Envoy: `downstream_cx_active` per worker of the console listener.
    pub per_worker: Vec<u64>,
    /// mksgate: every VM's linear memory together (`mksgate.vm_memory_bytes`).
    pub vm_memory_before: Option<u64>,
    pub vm_memory_open: Option<u64>,
    pub vm_memory_closed: Option<u64>,
    /// Envoy: `/memory` allocated bytes before and with the consoles open.
    #[serde(default)]
    pub heap_allocated_before: Option<u64>,
    pub heap_allocated_open: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScaleRun {
    pub started_utc: String,
    pub git_commit: String,
    pub settings: Option<ScaleSettings>,
    pub rows: Vec<ScaleRow>,
    pub wall_s: f64,
}

/// Console `i`'s own client address: 127.1.0.1 onwards, 200 per /24.
pub fn source(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        1,
        (i / 200 % 256) as u8,
        (i % 200 + 1) as u8,
    ))
}

pub fn stat_lines(admin: SocketAddr, filter: &str) -> Vec<(String, u64)> {
    let Ok((_, body)) = http_get(
        admin,
        &format!("/stats?filter={filter}"),
        Duration::from_secs(5),
    ) else {
        return Vec::new();
    };
    body.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

pub fn vm_memory(admin: Option<SocketAddr>) -> Option<u64> {
    let admin = admin?;
    stat_lines(admin, "mksgate.vm_memory_bytes$")
        .first()
        .map(|(_, v)| *v)
}

pub fn heap_allocated(admin: Option<SocketAddr>) -> Option<u64> {
    let (_, body) = http_get(admin?, "/memory", Duration::from_secs(5)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["allocated"].as_str()?.parse().ok()
}

fn fds(pid: Option<i32>) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{}/fd", pid?)).ok()?;
    Some(dir.count() as u64)
}

/// What the consoles of a run did.
#[derive(Default)]
pub struct Tally {
    pub opened: AtomicU64,
    pub failed: AtomicU64,
    pub sent: AtomicU64,
    pub echoed: AtomicU64,
    pub cut: AtomicU64,
    pub alive_at_end: AtomicU64,
}

/// One frame and its echo.
async fn round_trip(ws: &mut Ws, tally: &Tally) -> bool {
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let ok = tokio::time::timeout(Duration::from_secs(20), async {
        ws.send(Message::Binary(Bytes::from_static(FRAME)))
            .await
            .ok()?;
        next_echo(ws, FRAME.len()).await.ok()
    })
    .await;
    let ok = matches!(ok, Ok(Some(())));
    if ok {
        tally.echoed.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// What a console needs besides its number: where, how often, when to
/// stop, and where to count.
#[derive(Clone)]
pub struct Life {
    pub target: Arc<Target>,
    /// Handshakes in flight at once.
    pub gate: Arc<Semaphore>,
    /// One frame (and its echo) this often.
    pub every: Duration,
    pub tally: Arc<Tally>,
    /// Why consoles failed to open, by kind.
    pub errors: Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
}

/// Console number `n`'s life, from client address `source(i)`: open, a
/// frame every `life.every` until `stop`, a last check, a close.
pub async fn console(life: Life, n: u64, i: u32, mut stop: watch::Receiver<bool>) {
    let Life {
        target,
        gate,
        every,
        tally,
        errors,
    } = life;
    let opened = {
        let _permit = gate.acquire().await;
        open_from(&target, n, Some(source(i))).await
    };
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(kind) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut e) = errors.lock() {
                *e.entry(kind).or_default() += 1;
            }
            return;
        }
    };
    tally.opened.fetch_add(1, Ordering::Relaxed);
    // Spread the frames: the first at a random point of the period.
    let mut next = Instant::now() + every.mul_f64(f64::from(i % 997) / 997.0);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(next.into()) => {
                if !round_trip(&mut ws, &tally).await {
                    tally.cut.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                next += every;
            }
        }
    }
    if round_trip(&mut ws, &tally).await {
        tally.alive_at_end.fetch_add(1, Ordering::Relaxed);
    } else {
        tally.cut.fetch_add(1, Ordering::Relaxed);
    }
    close(ws).await;
}

async fn measure(
    ctx: &Ctx,
    sys: &crate::suite::System,
    n: u32,
    s: &ScaleSettings,
) -> Result<ScaleRow> {
    let running = start(ctx, sys, 2)?;
    let pid = running.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut row = ScaleRow {
        system: sys.id.to_string(),
        label: sys.label.to_string(),
        consoles: n,
        rss_before_kb: pid.and_then(rss_kb),
        vm_memory_before: vm_memory(running.admin),
        heap_allocated_before: heap_allocated(running.admin),
        ..ScaleRow::default()
    };
    let counter = Arc::new(Counter::default());
    let tally = Arc::new(Tally::default());
    let errors = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let gate = Arc::new(Semaphore::new(s.parallel as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let every = Duration::from_secs(s.frame_every_s);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    let life = Life {
        target: running.target.clone(),
        gate,
        every,
        tally: tally.clone(),
        errors: errors.clone(),
    };
    for i in 0..n {
        tasks.push(tokio::spawn(console(
            life.clone(),
            counter.next(),
            i,
            stop_rx.clone(),
        )));
    }
    let open_deadline = t0 + Duration::from_secs(600);
    while tally.opened.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < u64::from(n)
        && Instant::now() < open_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    row.open_s = t0.elapsed().as_secs_f64();
    row.opened = tally.opened.load(Ordering::Relaxed);
    let cpu_a = pid.and_then(cpu_ns);
    let hold_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(s.hold_s)).await;
    let cpu_b = pid.and_then(cpu_ns);
    if let (Some(a), Some(b)) = (cpu_a, cpu_b) {
        row.cpu_pct = Some((b - a) as f64 / 1e9 / hold_start.elapsed().as_secs_f64() * 100.0);
    }
    row.rss_open_kb = pid.and_then(rss_kb);
    row.fds_open = fds(pid);
    row.vm_memory_open = vm_memory(running.admin);
    row.heap_allocated_open = heap_allocated(running.admin);
    if let Some(admin) = running.admin {
        let mut workers: Vec<(String, u64)> = stat_lines(
            admin,
            r"^listener\.127\.0\.0\.1_[0-9]+\.worker_[0-9]+\.downstream_cx_active$",
        );
        workers.sort();
        row.per_worker = workers.into_iter().map(|(_, v)| v).collect();
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    row.rss_closed_kb = pid.and_then(rss_kb);
    row.vm_memory_closed = vm_memory(running.admin);
    row.frames_sent = tally.sent.load(Ordering::Relaxed);
    row.frames_echoed = tally.echoed.load(Ordering::Relaxed);
    row.consoles_cut = tally.cut.load(Ordering::Relaxed);
    row.alive_at_end = tally.alive_at_end.load(Ordering::Relaxed);
    row.open_errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
    if let (Some(a), Some(b)) = (row.rss_before_kb, row.rss_open_kb) {
        if row.opened > 0 {
            row.kb_per_console = Some((b as f64 - a as f64) / row.opened as f64);
        }
    }
    drop(running);
    Ok(row)
}

/// What a run of the deployed systems needs: the TLS stand-in (kept alive
/// by the caller), the TLS material, and a fresh signing key.
pub fn deployed_ctx(root: &Path) -> Result<(Ctx, Standin)> {
    let paths = Paths::discover(root)?;
    let cert = paths.work.join("standin-tls.crt");
    let standin = Standin::start(&paths, Some(&cert))?;
    let deployed = crate::deployed::Deployed::new(root, &paths.work, standin.addr, &cert)?;
    let mut secret = vec![0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
    let key = Key::new(Some(KID.into()), Alg::HS256, &secret)
        .map_err(|e| anyhow!("signing key: {e:?}"))?;
    let ctx = Ctx {
        paths,
        settings: settings_from_env(),
        key,
        key_env_value: jws::encode_secret(&secret),
        standin_addr: standin.addr,
        deployed: Some(deployed),
    };
    Ok((ctx, standin))
}

/// Every `wasmcustom.mksgate.decision.<code>` counter above 0, by code.
pub fn decision_counters(admin: Option<SocketAddr>) -> BTreeMap<String, u64> {
    admin
        .map(|a| {
            stat_lines(a, r"^wasmcustom\.mksgate\.decision\.")
                .into_iter()
                .map(|(k, v)| (k.rsplit('.').next().unwrap_or("").to_string(), v))
                .filter(|(_, v)| *v > 0)
                .collect()
        })
        .unwrap_or_default()
}

/// Run every level for every system; writes `out` (JSON) and returns it.
pub async fn run(root: &Path, out: &Path) -> Result<ScaleRun> {
    let t0 = Instant::now();
    let nofile = raise_nofile();
    let settings = ScaleSettings {
        levels: env_list("BENCH_SCALE_LEVELS", &[1000, 5000, 9500]),
        systems: match std::env::var("BENCH_SCALE_SYSTEMS") {
            Ok(v) if !v.trim().is_empty() => v.split(',').map(|s| s.trim().to_string()).collect(),
            _ => SYSTEMS.iter().map(|s| s.to_string()).collect(),
        },
        hold_s: env_u64("BENCH_SCALE_HOLD_S", 35),
        frame_every_s: env_u64("BENCH_SCALE_FRAME_S", 30),
        parallel: env_u64("BENCH_SCALE_PARALLEL", 64) as u32,
        nofile,
    };
    let max = settings.levels.iter().copied().max().unwrap_or(0);
    if nofile < u64::from(max) * 2 + 1000 {
        eprintln!("scale: open-files limit {nofile} is low for {max} consoles");
    }
    let (ctx, standin) = deployed_ctx(root)?;
    let systems: Vec<_> = all_systems()
        .into_iter()
        .filter(|s| settings.systems.iter().any(|w| w == s.id))
        .map(|mut s| {
            let (limit, own) = match &s.kind {
                Kind::Haproxy { patches, .. } => (HAPROXY_LIMIT, *patches),
                Kind::Envoy { patches, .. } => (ENVOY_LIMIT, *patches),
                Kind::Direct => (&[][..], &[][..]),
            };
            let all: Vec<(&'static str, &'static str)> = own.iter().chain(limit).copied().collect();
            s.kind = patched(s.kind, Box::leak(all.into_boxed_slice()));
            s
        })
        .collect();
    let mut run = ScaleRun {
        started_utc: crate::suite::utc_now(),
        git_commit: crate::procs::command_line(
            "git",
            &[
                "-C",
                &root.to_string_lossy(),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        ),
        settings: Some(settings.clone()),
        ..ScaleRun::default()
    };
    for &n in &settings.levels {
        for sys in &systems {
            eprintln!("scale: {} with {n} consoles", sys.label);
            let row = measure(&ctx, sys, n, &settings).await?;
            eprintln!(
                "scale: {} n={n}: opened {} in {:.1} s ({:?}), cut {}, alive at end {}, {:.1} kB/console, cpu {:.2}%, workers {:?}, vm {:?} -> {:?} -> {:?}",
                sys.label,
                row.opened,
                row.open_s,
                row.open_errors,
                row.consoles_cut,
                row.alive_at_end,
                row.kb_per_console.unwrap_or(0.0),
                row.cpu_pct.unwrap_or(0.0),
                row.per_worker,
                row.vm_memory_before,
                row.vm_memory_open,
                row.vm_memory_closed
            );
            run.rows.push(row);
            run.wall_s = t0.elapsed().as_secs_f64();
            std::fs::write(out, serde_json::to_string_pretty(&run)?)?;
        }
    }
    drop(standin);
    if std::env::var("BENCH_SCALE_CHECK").is_ok_and(|v| v == "1") {
        for r in &run.rows {
            if r.opened < u64::from(r.consoles)
                || r.consoles_cut > 0
                || r.alive_at_end < r.opened
                || r.frames_echoed < r.frames_sent
            {
                bail!(
                    "{} with {} consoles: opened {} ({:?}), cut {}, alive at the end {}, frames {} of {} echoed",
                    r.label,
                    r.consoles,
                    r.opened,
                    r.open_errors,
                    r.consoles_cut,
                    r.alive_at_end,
                    r.frames_echoed,
                    r.frames_sent
                );
            }
        }
    }
    Ok(run)
}
