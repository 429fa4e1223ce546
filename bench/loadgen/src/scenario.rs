//! The load: WebSocket handshakes, console-like echo traffic, bulk frames,
//! and idle open sessions, against one target. Every scenario has a warm-up
//! and a measured window; CPU of the proxy (and of the stand-in and of this
//! process) is read from /proc exactly at the window's edges.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mksgate_core::jws::{self, Alg, Key};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::procs::{cpu_ns, rss_kb, self_cpu_ns};
use crate::results::Sample;

/// The ESXi host every benchmark link names.
pub const ESXI_HOST: &str = "vesxi01.sec.lab";
/// What the shipped plugin configuration expects (the testkit's one copy).
pub use mksgate_testkit::link::{AUDIENCE, ISSUER, KID, ORIGIN};
/// The subprotocols the VMware HTML console offers.
pub const WMKS_PROTOCOLS: &str = "binary, vmware-vvc, uint8utf8";

/// Bound on any single handshake or session step.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
mod client;
pub use client::*;

/// Processes whose CPU is read at the window's edges.
#[derive(Clone, Copy, Debug, Default)]
pub struct Probe {
    pub proxy: Option<i32>,
    pub standin: Option<i32>,
}

#[derive(Clone, Copy, Debug)]
struct Snap {
    proxy: Option<u64>,
    standin: Option<u64>,
    me: u64,
    at: Instant,
}

impl Probe {
    fn snap(&self) -> Snap {
        Snap {
            proxy: self.proxy.and_then(cpu_ns),
            standin: self.standin.and_then(cpu_ns),
            me: self_cpu_ns(),
            at: Instant::now(),
        }
    }
}

/// Fill a sample's window fields from two snapshots.
fn window(sample: &mut Sample, a: Snap, b: Snap) {
    let d = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / 1e9),
        _ => None,
    };
    sample.wall_s = b.at.duration_since(a.at).as_secs_f64();
    sample.proxy_cpu_s = d(a.proxy, b.proxy);
    sample.standin_cpu_s = d(a.standin, b.standin);
    sample.loadgen_cpu_s = b.me.saturating_sub(a.me) as f64 / 1e9;
}

const PAUSE: u8 = 0;
const RUN: u8 = 1;
const STOP: u8 = 2;

/// What the workers of a pool have done since the last slice.
#[derive(Default)]
struct Acc {
    ops: u64,
    bytes: u64,
    lat_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

impl Acc {
    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

type Shared = Arc<std::sync::Mutex<Acc>>;

fn acc(shared: &Shared) -> std::sync::MutexGuard<'_, Acc> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx.min(sorted.len() - 1)).map(|v| *v as f64)
}

/// One measured slice of a pool's work.
#[derive(Clone, Debug, Default)]
pub struct Slice {
    pub sample: Sample,
    /// Every latency of the slice, sorted (for pooled percentiles).
    pub lat_us: Vec<u32>,
}

/// Workers driving load at one target, started paused. [`Pool::slice`]
/// lets them run for a while, then pauses them and waits until each has
/// finished what it had in flight, so a slice's CPU window holds exactly
/// the work its count says. Pools of different systems can be sliced in
/// turn (interleaved), so machine-load drift hits every system alike.
pub struct Pool {
    scenario: String,
    concurrency: u32,
    frame_bytes: Option<u64>,
    ctrl: tokio::sync::watch::Sender<u8>,
    idle: Arc<AtomicUsize>,
    workers: usize,
    shared: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Failures while the pool was being set up (sessions that did not open).
    setup_errors: BTreeMap<String, u64>,
    /// Paced pools: the offered rate (ops/s, all workers together).
    offered: Option<f64>,
}

/// The worker side of the pause/run protocol.
struct Gate {
    rx: tokio::sync::watch::Receiver<u8>,
    idle: Arc<AtomicUsize>,
}

impl Gate {
    /// Returns false on STOP. While paused, counts itself idle.
    async fn proceed(&mut self) -> bool {
        let p = *self.rx.borrow_and_update();
        match p {
            RUN => true,
            STOP => false,
            _ => {
                self.idle.fetch_add(1, Ordering::SeqCst);
                let r = self.rx.wait_for(|p| *p != PAUSE).await.map(|p| *p);
                self.idle.fetch_sub(1, Ordering::SeqCst);
                matches!(r, Ok(RUN))
            }
        }
    }

    fn running(&self) -> bool {
        *self.rx.borrow() == RUN
    }

    /// A worker that gives up counts as idle for good.
    fn retire(self) {
        self.idle.fetch_add(1, Ordering::SeqCst);
    }
}

impl Pool {
    fn new(scenario: &str, concurrency: u32, frame_bytes: Option<u64>) -> Pool {
        let (ctrl, _) = tokio::sync::watch::channel(PAUSE);
        Pool {
            scenario: scenario.to_string(),
            offered: None,
            concurrency,
            frame_bytes,
            ctrl,
            idle: Arc::new(AtomicUsize::new(0)),
            workers: 0,
            shared: Shared::default(),
            tasks: Vec::new(),
            setup_errors: BTreeMap::new(),
        }
    }

    fn gate(&mut self) -> Gate {
        self.workers += 1;
        Gate {
            rx: self.ctrl.subscribe(),
            idle: self.idle.clone(),
        }
    }

    async fn all_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.idle.load(Ordering::SeqCst) < self.workers {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }

    /// `concurrency` clients, each in a loop: connect, upgrade, close.
    /// `ops` = handshakes; latency = connect to 101. With `rate`
    /// (handshakes per second, all clients together) each client starts
    /// its handshakes on a fixed schedule.
    pub fn handshakes(
        target: Arc<Target>,
        counter: Arc<Counter>,
        concurrency: u32,
        rate: Option<f64>,
    ) -> Pool {
        let name = if rate.is_some() {
            "handshake-paced"
        } else {
            "handshake"
        };
        let mut pool = Pool::new(name, concurrency, None);
        pool.offered = rate;
        let interval = pace(rate, concurrency);
        for _ in 0..concurrency {
            let mut gate = pool.gate();
            let (target, counter, shared) = (target.clone(), counter.clone(), pool.shared.clone());
            let mut pacer = Pacer::new(interval);
            pool.tasks.push(tokio::spawn(async move {
                while gate.proceed().await {
                    pacer.wait().await;
                    let t0 = Instant::now();
                    match open(&target, counter.next()).await {
                        Ok(ws) => {
                            let lat = t0.elapsed();
                            close(ws).await;
                            let mut a = acc(&shared);
                            a.ops += 1;
                            a.lat_us.push(lat.as_micros().min(u32::MAX as u128) as u32);
                        }
                        Err(kind) => {
                            acc(&shared).error(kind);
                            // Do not spin on a refusing target.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
            }));
        }
        pool
    }

    /// Console-like traffic: `sessions` sessions, each sending one small
    /// binary frame and waiting for its echo before the next, so every frame
    /// is its own read (chunk) at the proxy in each direction. `ops` = round
    /// trips; latency = round trip. With `rate` (round trips per second, all
    /// sessions together) each session sends on a fixed schedule, so every
    /// system gets the same offered load; without, as fast as echoes come.
    pub async fn frames(
        target: Arc<Target>,
        counter: Arc<Counter>,
        sessions: u32,
        size: usize,
        rate: Option<f64>,
    ) -> Pool {
        let name = if rate.is_some() {
            "frames"
        } else {
            "frames-max"
        };
        let mut pool = Pool::new(name, sessions, Some(size as u64));
        pool.offered = rate;
        let interval = pace(rate, sessions);
        let (opened, errors) = open_many(&target, &counter, sessions, 16).await;
        pool.setup_errors = errors;
        let payload = Bytes::from(vec![0x5au8; size]);
        for mut ws in opened {
            let mut gate = pool.gate();
            let (shared, payload) = (pool.shared.clone(), payload.clone());
            let mut pacer = Pacer::new(interval);
            pool.tasks.push(tokio::spawn(async move {
                while gate.proceed().await {
                    pacer.wait().await;
                    let t0 = Instant::now();
                    let step = async {
                        ws.send(Message::Binary(payload.clone()))
                            .await
                            .map_err(|e| anyhow!("send: {}", short(&e.to_string())))?;
                        next_echo(&mut ws, payload.len()).await
                    };
                    let r = tokio::time::timeout(STEP_TIMEOUT, step).await;
                    let mut a = acc(&shared);
                    match r {
                        Ok(Ok(())) => {
                            a.ops += 1;
                            a.bytes += (2 * payload.len() + 1) as u64;
                            a.lat_us
                                .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                        Ok(Err(e)) => {
                            a.error(short(&e.to_string()));
                            break;
                        }
                        Err(_) => {
                            a.error("timeout".into());
                            break;
                        }
                    }
                }
                gate.retire();
            }));
        }
        pool
    }

    /// Bulk: `sessions` sessions, each keeping `window` frames of `size`
    /// bytes in flight while running (sent while earlier ones are still
    /// being echoed); on pause a session stops sending and waits for its
    /// echoes. `ops` = frames echoed; `bytes` counts both directions.
    /// With `rate` (payload bytes per second, both directions, all sessions
    /// together) each session sends its frames on a fixed schedule (still at
    /// most `window` in flight), so every system gets the same offered load;
    /// without, as fast as the window allows.
    pub async fn bulk(
        target: Arc<Target>,
        counter: Arc<Counter>,
        sessions: u32,
        size: usize,
        window_frames: u32,
        rate: Option<f64>,
    ) -> Pool {
        let name = if rate.is_some() { "bulk" } else { "bulk-max" };
        let mut pool = Pool::new(name, sessions, Some(size as u64));
        // Offered frames per second (each frame crosses twice).
        let frame_rate = rate.map(|r| r / (2.0 * size as f64));
        pool.offered = frame_rate;
        let interval = pace(frame_rate, sessions);
        let (opened, errors) = open_many(&target, &counter, sessions, 16).await;
        pool.setup_errors = errors;
        let payload = Bytes::from(vec![0xa5u8; size]);
        for ws in opened {
            let (mut sink, mut stream) = ws.split();
            let sem = Arc::new(Semaphore::new(window_frames.max(1) as usize));
            let in_flight = Arc::new(AtomicUsize::new(0));
            let echoed = Arc::new(tokio::sync::Notify::new());
            let (sem_r, in_flight_r, echoed_r, shared) = (
                sem.clone(),
                in_flight.clone(),
                echoed.clone(),
                pool.shared.clone(),
            );
            let reader = tokio::spawn(async move {
                loop {
                    match next_echo(&mut stream, size).await {
                        Ok(()) => {
                            in_flight_r.fetch_sub(1, Ordering::SeqCst);
                            sem_r.add_permits(1);
                            {
                                let mut a = acc(&shared);
                                a.ops += 1;
                                a.bytes += (2 * size + 1) as u64;
                            }
                            echoed_r.notify_one();
                        }
                        Err(e) => {
                            acc(&shared).error(short(&e.to_string()));
                            sem_r.close();
                            echoed_r.notify_one();
                            return;
                        }
                    }
                }
            });
            let mut gate = pool.gate();
            let (payload, shared) = (payload.clone(), pool.shared.clone());
            let mut pacer = Pacer::new(interval);
            pool.tasks.push(tokio::spawn(async move {
                'outer: loop {
                    if !gate.running() {
                        // Drain what is in flight before counting as paused.
                        let deadline = Instant::now() + STEP_TIMEOUT;
                        while in_flight.load(Ordering::SeqCst) > 0 {
                            if sem.is_closed() || Instant::now() > deadline {
                                acc(&shared).error("echoes not drained".into());
                                break 'outer;
                            }
                            let _ =
                                tokio::time::timeout(Duration::from_millis(50), echoed.notified())
                                    .await;
                        }
                    }
                    if !gate.proceed().await {
                        break;
                    }
                    pacer.wait().await;
                    let Ok(permit) = sem.clone().acquire_owned().await else {
                        break;
                    };
                    if !gate.running() {
                        continue; // the permit goes back
                    }
                    permit.forget();
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    if sink.send(Message::Binary(payload.clone())).await.is_err() {
                        acc(&shared).error("send failed".into());
                        break;
                    }
                }
                reader.abort();
                gate.retire();
            }));
        }
        pool
    }

    /// Let the workers run for `dur`, pause them, wait until they are done
    /// with what they had in flight; CPU is read at both edges.
    pub async fn slice(&self, dur: Duration, probe: Probe) -> Slice {
        let mut sample = Sample {
            scenario: self.scenario.clone(),
            concurrency: self.concurrency,
            frame_bytes: self.frame_bytes,
            offered_rate: self.offered,
            ..Sample::default()
        };
        if !self.all_idle(STEP_TIMEOUT).await {
            acc(&self.shared).error("workers not idle before slice".into());
        }
        *acc(&self.shared) = Acc::default();
        let a = probe.snap();
        self.ctrl.send_replace(RUN);
        tokio::time::sleep(dur).await;
        self.ctrl.send_replace(PAUSE);
        let drained = self.all_idle(STEP_TIMEOUT + Duration::from_secs(5)).await;
        let b = probe.snap();
        window(&mut sample, a, b);
        let mut got = std::mem::take(&mut *acc(&self.shared));
        if !drained {
            got.error("workers did not pause".into());
        }
        got.lat_us.sort_unstable();
        sample.ops = got.ops;
        sample.bytes = got.bytes;
        sample.lat_p50_us = percentile(&got.lat_us, 0.50);
        sample.lat_p99_us = percentile(&got.lat_us, 0.99);
        sample.errors = got.errors;
        Slice {
            sample,
            lat_us: got.lat_us,
        }
    }

    /// Failures while opening the pool's sessions.
    pub fn setup_errors(&self) -> &BTreeMap<String, u64> {
        &self.setup_errors
    }

    /// End every worker (sessions are dropped).
    pub async fn stop(self) {
        self.ctrl.send_replace(STOP);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// Per-worker send interval for a total `rate` (ops/s) over `workers`.
fn pace(rate: Option<f64>, workers: u32) -> Option<Duration> {
    let r = rate.filter(|r| *r > 0.0)?;
    Some(Duration::from_secs_f64(f64::from(workers.max(1)) / r))
}

/// A fixed send schedule. After a pause it starts again from now (no burst
/// to catch up), and a worker that falls behind does not burst either.
struct Pacer {
    every: Option<Duration>,
    next: Option<tokio::time::Instant>,
}

impl Pacer {
    fn new(every: Option<Duration>) -> Pacer {
        Pacer { every, next: None }
    }

    async fn wait(&mut self) {
        let Some(every) = self.every else { return };
        let now = tokio::time::Instant::now();
        let at = match self.next {
            // Stale (after a pause, or too far behind): start from now,
            // with a random-ish phase so workers do not move in lockstep.
            Some(t) if t + every >= now => t,
            _ => now + every.mul_f64(phase()),
        };
        tokio::time::sleep_until(at).await;
        self.next = Some(at + every);
    }
}

/// A cheap pseudo-random fraction in [0, 1).
fn phase() -> f64 {
    static SEED: std::sync::atomic::AtomicU64 =
        std::sync::atomic::AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Several slices of one pool merged: sums, and percentiles over every
/// latency of every slice.
pub fn merge(slices: &[Slice]) -> Sample {
    let mut out = Sample::default();
    let mut lat: Vec<u32> = Vec::new();
    let cpu = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) => x,
        (None, y) => y,
    };
    for (i, s) in slices.iter().enumerate() {
        let m = &s.sample;
        if i == 0 {
            out.scenario = m.scenario.clone();
            out.concurrency = m.concurrency;
            out.frame_bytes = m.frame_bytes;
            out.offered_rate = m.offered_rate;
        }
        out.wall_s += m.wall_s;
        out.ops += m.ops;
        out.bytes += m.bytes;
        out.proxy_cpu_s = cpu(out.proxy_cpu_s, m.proxy_cpu_s);
        out.standin_cpu_s = cpu(out.standin_cpu_s, m.standin_cpu_s);
        out.loadgen_cpu_s += m.loadgen_cpu_s;
        for (k, v) in &m.errors {
            *out.errors.entry(k.clone()).or_default() += v;
        }
        lat.extend_from_slice(&s.lat_us);
    }
    lat.sort_unstable();
    out.lat_p50_us = percentile(&lat, 0.50);
    out.lat_p99_us = percentile(&lat, 0.99);
    out
}

/// Open `sessions` sessions (16 handshakes at a time) and keep them idle;
/// proxy VmRSS before and with them, after `settle`. `ops` = sessions open.
pub async fn idle(
    target: Arc<Target>,
    counter: Arc<Counter>,
    sessions: u32,
    settle: Duration,
    probe: Probe,
) -> Sample {
    let mut sample = Sample {
        scenario: "idle".into(),
        concurrency: sessions,
        ..Sample::default()
    };
    sample.rss_before_kb = probe.proxy.and_then(rss_kb);
    let (mut open_ws, errors) = open_many(&target, &counter, sessions, 16).await;
    tokio::time::sleep(settle).await;
    // Count the sessions still open: every one answers a ping.
    let mut alive = 0u64;
    for ws in open_ws.iter_mut() {
        let ok = tokio::time::timeout(Duration::from_secs(2), async {
            ws.send(Message::Ping(Bytes::from_static(b"p")))
                .await
                .ok()?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Pong(_))) => return Some(()),
                    Some(Ok(_)) => {}
                    _ => return None,
                }
            }
        })
        .await;
        if matches!(ok, Ok(Some(()))) {
            alive += 1;
        }
    }
    let a = probe.snap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sample.rss_kb = probe.proxy.and_then(rss_kb);
    let b = probe.snap();
    window(&mut sample, a, b);
    sample.sessions_open = Some(alive);
    sample.ops = alive;
    sample.errors = errors;
    drop(open_ws);
    sample
}
