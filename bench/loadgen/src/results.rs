//! What a run writes (`bench/results/latest.json`) and the report reads.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    pub meta: Meta,
    pub config: RunConfig,
    pub systems: Vec<SystemInfo>,
    /// One per (scenario, system, round).
    pub samples: Vec<Sample>,
    pub modules: Vec<ModuleInfo>,
    /// Idle Envoy RSS at several `--concurrency` values, per filter.
    pub vm_memory: Vec<VmMemory>,
    /// Envoy start to `/ready` = LIVE, per filter.
    pub load_time: Vec<LoadTime>,
    /// Which CPUs each process was allowed to run on, as read from /proc.
    pub pinning: Vec<Pinning>,
    /// Anything that went wrong but did not stop the run.
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    pub started_utc: String,
    pub wall_seconds: f64,
    pub git_commit: String,
    pub git_dirty: bool,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub mem_total_kb: u64,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub envoy_version: String,
    pub haproxy_version: String,
    pub rustc_version: String,
    pub clock_ticks_per_s: u64,
    /// CPU read from /proc/<pid>/task/*/schedstat (ns) rather than
    /// /proc/<pid>/stat ticks.
    #[serde(default)]
    pub cpu_source: String,
    pub quick: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunConfig {
    /// Measured cycles per scenario; each cycle gives every system one
    /// slice, in table order on odd cycles and reversed on even ones.
    pub cycles: u32,
    /// Length of one slice.
    pub slice_s: f64,
    /// One warm-up slice per system before the cycles.
    pub warmup_s: f64,
    pub handshake_levels: Vec<u32>,
    pub frames_sessions: u32,
    pub frames_bytes: u64,
    pub bulk_sessions: u32,
    pub bulk_bytes: u64,
    pub bulk_window: u32,
    /// Paced handshakes: handshakes per second offered to every system (all
    /// proxies at once), by this many clients.
    #[serde(default)]
    pub hs_rate: f64,
    #[serde(default)]
    pub hs_paced_clients: u32,
    /// Paced console traffic: round trips per second offered to every
    /// system (all proxies loaded at once, measured over the same windows).
    #[serde(default)]
    pub frames_rate: f64,
    /// Paced bulk: payload MB/s (both directions) offered to every system.
    #[serde(default)]
    pub bulk_rate_mb: f64,
    /// Windows for the paced stream scenarios (the 2% targets), all
    /// proxies at once.
    #[serde(default)]
    pub stream_cycles: u32,
    /// Length of one such window.
    #[serde(default)]
    pub window_s: f64,
    /// Slice length for the handshake scenarios.
    #[serde(default)]
    pub handshake_slice_s: f64,
    /// Scenarios run (handshake levels, frames, frames-max, bulk, bulk-max, idle).
    #[serde(default)]
    pub scenarios: Vec<String>,
    /// The handshake budget's group (issue 15): handshakes per second per
    /// system and windows, its systems all at once.
    #[serde(default)]
    pub budget_rate: f64,
    #[serde(default)]
    pub budget_windows: u32,
    pub idle_sessions: u32,
    pub link_ttl_s: u64,
    pub load_time_reps: u32,
    pub vm_memory_concurrency: Vec<u32>,
    pub proxy_cpu: String,
    pub loadgen_cpu: String,
    pub tls: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SystemInfo {
    pub id: String,
    pub label: String,
    pub description: String,
    pub config: Option<String>,
    pub module: Option<String>,
}

/// One measured window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    pub system: String,
    /// `handshake`, `frames`, `bulk` or `idle`.
    pub scenario: String,
    /// Cycle number (1, 2, ...); 0 = all cycles of this system merged.
    pub round: u32,
    /// Concurrent clients (handshake) or open sessions (the others).
    pub concurrency: u32,
    /// Length of the measured window.
    pub wall_s: f64,
    /// Handshakes completed, or frames echoed (round trips).
    pub ops: u64,
    /// WebSocket payload bytes that crossed the proxy, both directions.
    pub bytes: u64,
    /// Failures by kind, over warm-up and window.
    pub errors: BTreeMap<String, u64>,
    /// Handshake latency (connect to 101), or echo round trip.
    pub lat_p50_us: Option<f64>,
    pub lat_p99_us: Option<f64>,
    /// CPU seconds of the proxy process (all threads) in the window.
    pub proxy_cpu_s: Option<f64>,
    pub standin_cpu_s: Option<f64>,
    pub loadgen_cpu_s: f64,
    /// Payload bytes per frame sent by the client.
    pub frame_bytes: Option<u64>,
    /// Paced scenarios: offered round trips (frames) or frames (bulk) per
    /// second, all sessions together.
    #[serde(default)]
    pub offered_rate: Option<f64>,
    /// Idle: proxy VmRSS before the sessions were opened, and with them.
    pub rss_before_kb: Option<u64>,
    pub rss_kb: Option<u64>,
    /// Idle: sessions that were open when RSS was read.
    pub sessions_open: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModuleInfo {
    pub name: String,
    pub path: String,
    pub bytes: u64,
    /// Exports whose name starts with `proxy_on_`.
    pub proxy_exports: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VmMemory {
    pub system: String,
    pub concurrency: u32,
    pub rss_kb: u64,
    /// `wasm.envoy.wasm.runtime.v8.active` from the admin stats (VMs alive).
    pub v8_active_vms: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadTime {
    pub system: String,
    /// Milliseconds from spawning Envoy to `/ready` = LIVE, one per repetition.
    pub ready_ms: Vec<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Pinning {
    pub process: String,
    pub cpus_allowed: String,
}
