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
const STANDIN_ADDR: &str = "127.0.0.2";
/// A second ESXi host in every routing table (nothing listens there).
const STANDIN2_ADDR: &str = "127.0.0.3";

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &[u32]) -> Vec<u32> {
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

/// Files the run needs.
pub struct Paths {
    pub root: PathBuf,
    pub work: PathBuf,
    pub envoy: PathBuf,
    pub haproxy: PathBuf,
    pub standin: PathBuf,
    pub wasm_dir: PathBuf,
}

impl Paths {
    pub fn discover(root: &Path) -> Result<Paths> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let envoy = std::env::var_os("ENVOY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".tools/envoy/envoy/_bin/envoy"));
        let haproxy = std::env::var_os("HAPROXY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"));
        let p = Paths {
            root: root.to_path_buf(),
            work: target.join("bench"),
            envoy,
            haproxy,
            standin: std::env::var_os("ESXI_STANDIN_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| target.join("release/esxi-standin")),
            wasm_dir: target.join("mksgate"),
        };
        for (what, f) in [
            ("Envoy (scripts/setup.sh)", &p.envoy),
            (
                "esxi-standin (cargo build --release -p mksgate-host-tests --bin esxi-standin)",
                &p.standin,
            ),
        ] {
            if !f.is_file() {
                bail!("{what} not found at {}", f.display());
            }
        }
        std::fs::create_dir_all(&p.work)?;
        Ok(p)
    }

    pub fn module(&self, file: &str) -> PathBuf {
        self.wasm_dir.join(file)
    }
}

#[derive(Clone, Debug)]
pub enum Kind {
    Direct,
    Haproxy {
        template: &'static str,
        /// Literal replacements in the rendered config, as for Envoy.
        patches: &'static [(&'static str, &'static str)],
    },
    Envoy {
        template: &'static str,
        module: Option<&'static str>,
        mksgate: bool,
        /// Envoy `--log-level`.
        log_level: &'static str,
        /// Literal replacements in the rendered config (diagnostics), each
        /// of which must find its text.
        patches: &'static [(&'static str, &'static str)],
        /// Start a single-member etcd for this system (the fleet store).
        etcd: bool,
    },
}

/// Where the fleet-store diagnostic's etcd listens (plain HTTP, like every
/// other hop in the benchmark).
pub const ETCD_ADDR: &str = "127.0.0.41";
pub const ETCD_PORT: u16 = 23790;
const ETCD_PEER_PORT: u16 = 23800;

/// System 4H's plan: the host calls of an admitted handshake, as mksgate
/// makes them at the shipped settings (bench/noop-filter/src/calls.rs).
const NOOP_CALLS_PLAN: &str = "headers now header*4 shared route counter property*6";

/// Puts system 4H's plan, or with `BENCH_NOOP_CALLS` another one (a
/// diagnostic: e.g. `"property*20"` prices one kind of call), into the
/// do-nothing filter's plugin configuration.
fn noop_calls_patch() -> &'static [(&'static str, &'static str)] {
    const ANCHOR: &str = "                root_id: noop\n";
    let plan = std::env::var("BENCH_NOOP_CALLS").unwrap_or_else(|_| NOOP_CALLS_PLAN.into());
    let to = format!(
        "{ANCHOR}                configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n                  value: \"{plan}\"\n"
    );
    Box::leak(Box::new([(ANCHOR, &*Box::leak(to.into_boxed_str()))]))
}

/// The do-nothing filter making only mksgate's six audit filter-state
/// writes (system 4Ta).
const AUDIT_ONLY_PATCH: &[(&str, &str)] = &[(
    "                root_id: noop\n",
    "                root_id: noop\n                configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n                  value: \"property*6\"\n",
)];

/// `kind` with `with` applied to its rendered config.
pub fn patched(mut kind: Kind, with: &'static [(&'static str, &'static str)]) -> Kind {
    if let Kind::Envoy { patches, .. } | Kind::Haproxy { patches, .. } = &mut kind {
        *patches = with;
    }
    kind
}

/// `cfg` with every replacement applied; an error names the one whose text
/// is not there.
fn apply_patches(
    mut cfg: String,
    patches: &[(&str, &str)],
    id: &str,
    template: &str,
) -> Result<String> {
    for (from, to) in patches {
        if !cfg.contains(from) {
            bail!("{id}: {from:?} not found in {template}");
        }
        cfg = cfg.replace(from, to);
    }
    Ok(cfg)
}

/// The etcd store in the plugin configuration (system 5e).
const ETCD_STORE_PATCH: (&str, &str) = (
    "\"one_time_links\": true,",
    "\"one_time_links\": true, \"replay_store\": {\"etcd\": {\"cluster\": \"mksgate_etcd\", \"authority\": \"etcd\"}},",
);
/// Revocation read from etcd, as envoy/fleet.yaml ships it (system 5r).
const REVOCATION_PATCH: (&str, &str) = (
    "\"one_time_links\": true,",
    "\"one_time_links\": true, \"revocation\": {\"etcd\": {\"cluster\": \"mksgate_etcd\", \"authority\": \"etcd\", \"poll_ms\": 1000, \"timeout_ms\": 1500, \"max_stale_ms\": 30000}},",
);
/// System 5r's patches; and with TLS and the access log, the scale bench's
/// `mksgate-tls-rev`.
pub const REVOCATION_PATCHES: &[(&str, &str)] = &[REVOCATION_PATCH, ETCD_CLUSTER_PATCH];
/// And the cluster it names.
const ETCD_CLUSTER_PATCH: (&str, &str) = (
    "\n  clusters:\n",
    "\n  clusters:\n  - name: mksgate_etcd\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: mksgate_etcd\n      endpoints:\n      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.41, port_value: 23790 } } }\n",
);

#[derive(Clone, Debug)]
pub struct System {
    pub id: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    /// Diagnostic variants run in the handshake scenarios only.
    pub handshake_only: bool,
    /// TLS from the client and to ESXi (`deployed`); these systems are
    /// measured as a group of their own, against the TLS stand-in.
    pub tls: bool,
    /// The proxy's access log on, at its shipped format.
    pub access_log: bool,
    /// The handshake budget's group (issue 15): measured in the paced
    /// handshake scenario only, together, at `budget_rate`.
    pub budget: bool,
    /// A path-routed system sent `&token=<a signed link>` as well, so its
    /// request is as long as mksgate's.
    pub token_in_path: bool,
}

/// A system measured like the others: every scenario, plaintext, no
/// access log.
fn system(id: &'static str, label: &'static str, description: &'static str, kind: Kind) -> System {
    System {
        id,
        label,
        description,
        kind,
        handshake_only: false,
        tls: false,
        access_log: false,
        budget: false,
        token_in_path: false,
    }
}

/// A member of the budget group: handshakes only, the shipped access log.
fn budget(sys: System) -> System {
    System {
        handshake_only: true,
        access_log: true,
        budget: true,
        ..sys
    }
}

/// Envoy from `template` at `--log-level info`, no patches, no etcd.
fn envoy(template: &'static str, module: Option<&'static str>, mksgate: bool) -> Kind {
    Kind::Envoy {
        template,
        module,
        mksgate,
        log_level: "info",
        patches: &[],
        etcd: false,
    }
}

/// The systems, in table order.
pub fn all_systems() -> Vec<System> {
    vec![
        system(
            "direct",
            "1 direct",
            "the client talks to the stand-in itself (the limit)",
            Kind::Direct,
        ),
        system(
            "haproxy",
            "2 HAProxy",
            "HAProxy, WebMKS jump-host recipe: backend = `host` query parameter, no authentication (bench/configs/haproxy.cfg)",
            Kind::Haproxy {
                template: "haproxy.cfg",
                patches: &[],
            },
        ),
        system(
            "envoy",
            "3 Envoy",
            "Envoy, route on the `host` query parameter, no wasm filter (bench/configs/envoy-no-filter.yaml)",
            envoy("envoy-no-filter.yaml", None, false),
        ),
        system(
            "noop",
            "4 Envoy+noop",
            "as 3, plus the do-nothing proxy-wasm filter, shipped build (bench/configs/envoy-noop.yaml, mksgate_noop_filter.wasm)",
            envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
        ),
        system(
            "noop-raw",
            "4b Envoy+noop raw",
            "as 4 with cargo's raw module, which still exports the body callbacks (mksgate_noop_filter.raw.wasm)",
            envoy("envoy-noop.yaml", Some("mksgate_noop_filter.raw.wasm"), false),
        ),
        system(
            "mksgate",
            "5 Envoy+mksgate",
            "Envoy with mksgate as shipped: signed one-time links, cluster_header routing (bench/configs/envoy-mksgate.yaml, mksgate_filter.wasm)",
            envoy("envoy-mksgate.yaml", Some("mksgate_filter.wasm"), true),
        ),
        system(
            "mksgate-raw",
            "5b Envoy+mksgate raw",
            "as 5 with cargo's raw module, which still exports the body callbacks (mksgate_filter.raw.wasm): the before of 'off the data path'",
            envoy("envoy-mksgate.yaml", Some("mksgate_filter.raw.wasm"), true),
        ),
        System {
            handshake_only: true,
            ..system(
                "mksgate-etcd",
                "5e mksgate, etcd store (diag.)",
                "diagnostic, handshakes only: as 5 with one-time links recorded in etcd (`replay_store.etcd`, envoy/fleet.yaml's store) instead of the local table: a single-member etcd 3.4 on the load generator's CPU, plain HTTP; etcd's own CPU is not in the proxy's figures",
                Kind::Envoy {
                    template: "envoy-mksgate.yaml",
                    module: Some("mksgate_filter.wasm"),
                    mksgate: true,
                    log_level: "info",
                    patches: &[ETCD_STORE_PATCH, ETCD_CLUSTER_PATCH],
                    etcd: true,
                },
            )
        },
        System {
            handshake_only: true,
            ..system(
                "mksgate-rev",
                "5r mksgate, revocation (diag.)",
                "diagnostic, handshakes only: as 5 with revocation on (`revocation.etcd`, envoy/fleet.yaml's block: each worker reads the revocations from etcd every second, and every handshake is checked against them); a single-member etcd 3.4 on the load generator's CPU, plain HTTP, holding no revocation",
                Kind::Envoy {
                    template: "envoy-mksgate.yaml",
                    module: Some("mksgate_filter.wasm"),
                    mksgate: true,
                    log_level: "info",
                    patches: REVOCATION_PATCHES,
                    etcd: true,
                },
            )
        },
        budget(system(
            "noop-log",
            "4L Envoy+noop, access log (budget)",
            "the handshake budget's group: as 4 with the shipped access log (envoy/static-clusters.yaml's format, a line when the tunnel is up and one at the end) on Envoy's stdout",
            envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
        )),
        System {
            token_in_path: true,
            ..budget(system(
                "noop-token-log",
                "4P noop, token in the request (budget)",
                "as 4L with `&token=<a signed link>` after `?host=`, so the request Envoy parses (and forwards) is as long as mksgate's",
                envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
            ))
        },
        System {
            token_in_path: true,
            ..budget(system(
                "noop-calls-log",
                "4H noop, mksgate's host calls (budget)",
                "as 4P, with the do-nothing filter making the host calls mksgate makes on an admitted handshake and nothing else (bench/noop-filter/src/calls.rs): header map, clock, four header writes, shared-data read and compare-and-swap, route re-pick, counter, six filter-state writes",
                patched(
                    envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
                    noop_calls_patch(),
                ),
            ))
        },
        budget(system(
            "mksgate-reusable",
            "5d mksgate, no one-time (budget)",
            "as 5L with `one_time_links: false`, so no replay-table read and compare-and-swap write per handshake",
            patched(
                envoy("envoy-mksgate.yaml", Some("mksgate_filter.wasm"), true),
                &[("\"one_time_links\": true", "\"one_time_links\": false")],
            ),
        )),
        budget(system(
            "mksgate-log",
            "5L mksgate, access log (budget)",
            "as 5 with the shipped access log, which writes the audit from filter state: mksgate at its shipped log settings",
            envoy("envoy-mksgate.yaml", Some("mksgate_filter.wasm"), true),
        )),
        budget(system(
            "mksgate-declog",
            "5c mksgate, decision lines (budget)",
            "as 5L with `log_decisions: true`, so each decision is also formatted as a JSON line in the VM and written to Envoy's log (the shipped layouts have it off)",
            patched(
                envoy("envoy-mksgate.yaml", Some("mksgate_filter.wasm"), true),
                &[("\"log_decisions\": false", "\"log_decisions\": true")],
            ),
        )),
        System {
            tls: true,
            access_log: true,
            ..system(
                "haproxy-tls",
                "2T HAProxy, TLS + log",
                "as deployed: as 2 with TLS 1.3 at the bind, TLS to ESXi (SNI, no certificate check, as the recipe) and its access log on (bench/configs/haproxy-deployed.cfg)",
                Kind::Haproxy {
                    template: "haproxy-deployed.cfg",
                    patches: &[],
                },
            )
        },
        System {
            tls: true,
            access_log: true,
            ..system(
                "envoy-tls",
                "3T Envoy, TLS + log",
                "as deployed: as 3 with TLS 1.3 on the listener, TLS to ESXi with the shipped certificate pin, and the shipped access log",
                envoy("envoy-no-filter.yaml", None, false),
            )
        },
        System {
            tls: true,
            access_log: true,
            ..system(
                "noop-tls",
                "4T Envoy+noop, TLS + log",
                "as deployed: as 4 with TLS on both sides and the shipped access log",
                envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
            )
        },
        System {
            tls: true,
            access_log: true,
            handshake_only: true,
            ..system(
                "noop-tls-audit",
                "4Ta Envoy+noop, TLS + log, six filter-state writes (scale only)",
                "as 4T with the do-nothing filter writing the six filter-state values mksgate's audit writes on an admitted console (bench/noop-filter/src/calls.rs, plan `property*6`) and nothing else: measured by `make bench-scale` only, to price what the audit holds per open console",
                patched(
                    envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
                    AUDIT_ONLY_PATCH,
                ),
            )
        },
        System {
            tls: true,
            access_log: true,
            handshake_only: true,
            ..system(
                "mksgate-tls-rev",
                "5Tr Envoy+mksgate, TLS + log, revocation (scale only)",
                "as 5T with revocation on (system 5r's block and etcd): measured by `make bench-scale` only, where its CPU with no console and with consoles open is the cost of polling",
                Kind::Envoy {
                    template: "envoy-mksgate.yaml",
                    module: Some("mksgate_filter.wasm"),
                    mksgate: true,
                    log_level: "info",
                    patches: REVOCATION_PATCHES,
                    etcd: true,
                },
            )
        },
        System {
            tls: true,
            access_log: true,
            ..system(
                "mksgate-tls",
                "5T Envoy+mksgate, TLS + log",
                "as deployed: as 5 with TLS on both sides and the shipped access log (the audit in it): envoy/static-clusters.yaml but for the handshake limits",
                envoy("envoy-mksgate.yaml", Some("mksgate_filter.wasm"), true),
            )
        },
    ]
}

/// The stand-in, pinned to the load generator's CPU.
pub struct Standin {
    proc: Proc,
    pub addr: SocketAddr,
    _stdin: ChildStdin,
    _stdout: ChildStdout,
}

impl Standin {
    /// The plain stand-in, or with `cert_out` the TLS one at
    /// `deployed::TLS_STANDIN_ADDR`, which writes its certificate there.
    pub fn start(paths: &Paths, cert_out: Option<&Path>) -> Result<Standin> {
        let (addr, name) = match cert_out {
            None => (STANDIN_ADDR, "standin.log"),
            Some(_) => (crate::deployed::TLS_STANDIN_ADDR, "standin-tls.log"),
        };
        let log = paths.work.join(name);
        let err = std::fs::File::create(&log)?;
        let mut cmd = pinned(Some(LOAD_CPU), &paths.standin);
        cmd.args([
            "--name",
            ESXI_HOST,
            "--addr",
            addr,
            "--push-interval-ms",
            "0",
            "--any-ticket",
            "--no-request-log",
        ]);
        match cert_out {
            None => {
                cmd.arg("--plain");
            }
            Some(p) => {
                cmd.arg("--cert-out").arg(p);
            }
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err);
        let mut proc = Proc::spawn_raw("esxi-standin", cmd, &log)?;
        let stdin = proc
            .child_mut()
            .stdin
            .take()
            .ok_or_else(|| anyhow!("stand-in stdin"))?;
        let mut stdout = proc
            .child_mut()
            .stdout
            .take()
            .ok_or_else(|| anyhow!("stand-in stdout"))?;
        // The ready line (the stand-in prints one JSON line, then nothing).
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 4096 {
            match stdout.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                _ => bail!(
                    "stand-in exited before it was ready:\n{}",
                    log_tail(&log, 20)
                ),
            }
        }
        let info: serde_json::Value = serde_json::from_slice(&line)
            .with_context(|| format!("stand-in ready line {:?}", String::from_utf8_lossy(&line)))?;
        let port = info
            .get("port")
            .and_then(|p| p.as_u64())
            .ok_or_else(|| anyhow!("stand-in ready line without port"))?;
        let ip: IpAddr = addr.parse()?;
        Ok(Standin {
            addr: SocketAddr::new(ip, port as u16),
            proc,
            _stdin: stdin,
            _stdout: stdout,
        })
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }
}

/// A system started for one measurement.
pub struct Running {
    pub proc: Option<Proc>,
    pub target: Arc<Target>,
    pub admin: Option<SocketAddr>,
    /// A process the system needs (system 5e's etcd), killed when this is
    /// dropped.
    _etcd: Option<Proc>,
}

/// A fresh single-member etcd at `ETCD_ADDR`, pinned to the load
/// generator's CPU, its data under `work`.
fn start_etcd(work: &Path, n: u32) -> Result<Proc> {
    let dir = work.join(format!("etcd-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    let client = format!("http://{ETCD_ADDR}:{ETCD_PORT}");
    let peer = format!("http://{ETCD_ADDR}:{ETCD_PEER_PORT}");
    let mut cmd = pinned(Some(LOAD_CPU), Path::new("etcd"));
    cmd.arg("--name")
        .arg("bench")
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .arg("--initial-cluster")
        .arg(format!("bench={peer}"))
        .arg("--unsafe-no-fsync")
        .stdin(Stdio::null());
    let mut proc = Proc::spawn("etcd", cmd, &work.join(format!("etcd-{n}.log")))?;
    let addr = SocketAddr::new(ETCD_ADDR.parse()?, ETCD_PORT);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = mksgate_testkit::http::get(addr, "/health").is_ok_and(|r| r.status == 200);
        if ok {
            return Ok(proc);
        }
        proc.check_alive()?;
        if Instant::now() > deadline {
            bail!("etcd not healthy within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Running {
    pub fn pid(&self) -> Option<i32> {
        self.proc.as_ref().map(|p| p.pid())
    }
}

static STARTS: AtomicU32 = AtomicU32::new(0);

/// Shared by every start of a run.
pub struct Ctx {
    pub paths: Paths,
    pub settings: RunConfig,
    pub key: Key,
    pub key_env_value: String,
    pub standin_addr: SocketAddr,
    /// TLS material and the TLS stand-in, when a deployed system runs.
    pub deployed: Option<crate::deployed::Deployed>,
}

fn wait_port(addr: SocketAddr, proc: &mut Proc, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        proc.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} not listening on {addr} after {timeout:?}:\n{}",
                proc.name,
                log_tail(&proc.log, 25)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_envoy_ready(admin: SocketAddr, proc: &mut Proc, timeout: Duration) -> Result<()> {
    mksgate_testkit::envoy::wait_live(admin, proc, timeout)
}

/// The deployed systems' TLS material for `sys`: `None` for a plaintext
/// system; an error if `sys` wants TLS or its access log and the run has
/// none.
fn deployed_for<'c>(ctx: &'c Ctx, sys: &System) -> Result<Option<&'c crate::deployed::Deployed>> {
    if !(sys.tls || sys.access_log) {
        return Ok(None);
    }
    let d = ctx
        .deployed
        .as_ref()
        .ok_or_else(|| anyhow!("{}: no TLS material for the deployed systems", sys.id))?;
    Ok(sys.tls.then_some(d))
}

fn with_client_tls(target: Target, deployed: Option<&crate::deployed::Deployed>) -> Target {
    match deployed {
        Some(d) => target.with_tls(d.client.clone()),
        None => target,
    }
}

/// Start `sys` (fresh process) and wait until it serves.
pub fn start(ctx: &Ctx, sys: &System, concurrency: u32) -> Result<Running> {
    let n = STARTS.fetch_add(1, Ordering::SeqCst);
    let localhost: IpAddr = [127, 0, 0, 1].into();
    match &sys.kind {
        Kind::Direct => Ok(Running {
            proc: None,
            target: Arc::new(Target::new(ctx.standin_addr, Mode::Path)),
            admin: None,
            _etcd: None,
        }),
        Kind::Haproxy { template, patches } => {
            if !ctx.paths.haproxy.is_file() {
                bail!(
                    "HAProxy (apt-get install haproxy) not found at {}",
                    ctx.paths.haproxy.display()
                );
            }
            let deployed = deployed_for(ctx, sys)?;
            let upstream = deployed.map_or(ctx.standin_addr, |d| d.standin);
            let port = free_port()?;
            let text =
                std::fs::read_to_string(ctx.paths.root.join("bench/configs").join(template))?;
            let mut vars = vec![
                ("LISTEN_PORT", port.to_string()),
                ("UPSTREAM_ADDR", upstream.ip().to_string()),
                ("UPSTREAM2_ADDR", STANDIN2_ADDR.to_string()),
                ("UPSTREAM_PORT", upstream.port().to_string()),
            ];
            if let Some(d) = deployed {
                vars.push(("GATEWAY_PEM", d.gateway_pem.display().to_string()));
            }
            let cfg = apply_patches(render(&text, &vars)?, patches, sys.id, template)?;
            let cfg_path = ctx.paths.work.join(format!("haproxy-{}.cfg", sys.id));
            std::fs::write(&cfg_path, cfg)?;
            let mut cmd = pinned(Some(PROXY_CPU), &ctx.paths.haproxy);
            cmd.arg("-db").arg("-f").arg(&cfg_path).stdin(Stdio::null());
            let log = ctx.paths.work.join(format!("haproxy-{}.log", sys.id));
            let mut proc = Proc::spawn("haproxy", cmd, &log)?;
            let addr = SocketAddr::new(localhost, port);
            wait_port(addr, &mut proc, Duration::from_secs(15))?;
            Ok(Running {
                proc: Some(proc),
                target: Arc::new(with_client_tls(Target::new(addr, Mode::Path), deployed)),
                admin: None,
                _etcd: None,
            })
        }
        Kind::Envoy {
            template,
            module,
            mksgate,
            log_level,
            patches,
            etcd,
        } => {
            let etcd = if *etcd {
                Some(start_etcd(&ctx.paths.work, n)?)
            } else {
                None
            };
            let deployed = deployed_for(ctx, sys)?;
            let upstream = deployed.map_or(ctx.standin_addr, |d| d.standin);
            let port = free_port()?;
            let admin_port = free_port()?;
            let text =
                std::fs::read_to_string(ctx.paths.root.join("bench/configs").join(template))?;
            let mut vars = vec![
                ("LISTEN_PORT", port.to_string()),
                ("ADMIN_PORT", admin_port.to_string()),
                ("UPSTREAM_ADDR", upstream.ip().to_string()),
                ("UPSTREAM2_ADDR", STANDIN2_ADDR.to_string()),
                ("UPSTREAM_PORT", upstream.port().to_string()),
            ];
            if let Some(m) = module {
                let path = ctx.paths.module(m);
                if !path.is_file() {
                    bail!(
                        "module {} missing: run scripts/build-module.sh all",
                        path.display()
                    );
                }
                vars.push(("MODULE", path.to_string_lossy().into_owned()));
            }
            let mut cfg = render(&text, &vars)?;
            let mut all: Vec<(String, String)> = patches
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect();
            if let Some(d) = &ctx.deployed {
                if sys.tls {
                    all.extend(d.envoy_tls_patches());
                }
                if sys.access_log {
                    all.push(d.envoy_access_log_patch());
                }
            }
            for (from, to) in &all {
                if !cfg.contains(from.as_str()) {
                    bail!("{}: {from:?} not found in {template}", sys.id);
                }
                cfg = cfg.replace(from.as_str(), to);
            }
            let cfg_path = ctx.paths.work.join(format!("envoy-{}.yaml", sys.id));
            std::fs::write(&cfg_path, cfg)?;
            let mut cmd = pinned(Some(PROXY_CPU), &ctx.paths.envoy);
            let base_id = (std::process::id() % 40_000) * 100 + n % 100;
            cmd.arg("-c")
                .arg(&cfg_path)
                .arg("--concurrency")
                .arg(concurrency.to_string())
                .arg("--disable-hot-restart")
                .arg("--base-id")
                .arg(base_id.to_string())
                .arg("--log-level")
                .arg(log_level)
                .arg("--log-path")
                .arg(ctx.paths.work.join(format!("envoy-{}.log", sys.id)))
                .stdin(Stdio::null());
            if *mksgate {
                cmd.env(KEY_ENV, &ctx.key_env_value);
            }
            let out = ctx.paths.work.join(format!("envoy-{}.out", sys.id));
            // Envoy appends to --log-path: start each run's log afresh.
            let _ = std::fs::remove_file(ctx.paths.work.join(format!("envoy-{}.log", sys.id)));
            let mut proc = Proc::spawn(&format!("envoy ({})", sys.id), cmd, &out)?;
            // Errors go to --log-path; show that file's tail on failure.
            proc.log = ctx.paths.work.join(format!("envoy-{}.log", sys.id));
            let admin = SocketAddr::new(localhost, admin_port);
            wait_envoy_ready(admin, &mut proc, Duration::from_secs(30))?;
            let addr = SocketAddr::new(localhost, port);
            wait_port(addr, &mut proc, Duration::from_secs(10))?;
            let (key, ttl_s) = (Box::new(ctx.key.clone()), ctx.settings.link_ttl_s);
            let mode = match (*mksgate, sys.token_in_path) {
                (true, _) => Mode::Mksgate { key, ttl_s },
                (false, true) => Mode::PathWithToken { key, ttl_s },
                (false, false) => Mode::Path,
            };
            Ok(Running {
                proc: Some(proc),
                target: Arc::new(with_client_tls(Target::new(addr, mode), deployed)),
                admin: Some(admin),
                _etcd: etcd,
            })
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Scenario {
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

fn random_secret() -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

pub fn utc_now() -> String {
    command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn meta(root: &Path, paths: &Paths, quick: bool) -> Meta {
    let cpuinfo = read_trim("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "?".into());
    let mem_total_kb = read_trim("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let root_s = root.to_string_lossy().into_owned();
    let dirty = std::process::Command::new("git")
        .args(["-C", &root_s, "status", "--porcelain"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    Meta {
        started_utc: utc_now(),
        wall_seconds: 0.0,
        git_commit: command_line("git", &["-C", &root_s, "rev-parse", "--short", "HEAD"]),
        git_dirty: dirty,
        kernel: command_line("uname", &["-sr"]),
        cpu_model,
        // Online CPUs of the machine (not this process's affinity mask).
        // SAFETY: sysconf has no preconditions.
        cpus: usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(0),
        mem_total_kb,
        loadavg_start: read_trim("/proc/loadavg"),
        loadavg_end: String::new(),
        envoy_version: command_line(&paths.envoy.to_string_lossy(), &["--version"])
            .trim_start_matches(|c: char| c != ':')
            .trim_start_matches([':', ' '])
            .to_string(),
        haproxy_version: command_line(&paths.haproxy.to_string_lossy(), &["-v"]),
        rustc_version: command_line("rustc", &["-V"]),
        clock_ticks_per_s: clock_ticks(),
        cpu_source: if crate::procs::have_schedstat() {
            "/proc/<pid>/task/*/schedstat (run time, ns)".into()
        } else {
            "/proc/<pid>/stat utime+stime (clock ticks)".into()
        },
        quick,
    }
}

/// The `proxy_on_*` callbacks a module exports, sorted (read by
/// `tools/wasm-post`, the one wasm reader of the workspace); none if it does
/// not parse.
pub fn proxy_exports(bytes: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = mksgate_wasm_post::exports(bytes)
        .map(|exports| exports.into_iter().map(|e| e.name).collect())
        .unwrap_or_default();
    out.retain(|name| name.starts_with("proxy_on_"));
    out.sort();
    out
}

fn module_info(paths: &Paths) -> Vec<ModuleInfo> {
    [
        "mksgate_filter.wasm",
        "mksgate_filter.raw.wasm",
        "mksgate_noop_filter.wasm",
        "mksgate_noop_filter.raw.wasm",
    ]
    .iter()
    .filter_map(|name| {
        let path = paths.module(name);
        let bytes = std::fs::read(&path).ok()?;
        Some(ModuleInfo {
            name: name.to_string(),
            path: path
                .strip_prefix(&paths.root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned(),
            bytes: bytes.len() as u64,
            proxy_exports: proxy_exports(&bytes),
        })
    })
    .collect()
}

fn describe(s: &Sample) -> String {
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
async fn pool_for(
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
async fn sliced(
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

fn envoy_stat(admin: SocketAddr, name: &str) -> Option<u64> {
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

/// The systems to run: all, or those `BENCH_SYSTEMS` names; in reverse
/// order with `BENCH_REVERSE=1` (a diagnostic of the benchmark itself).
/// Systems `make bench` leaves out unless named (`make bench-scale` runs them).
const SCALE_ONLY: [&str; 2] = ["noop-tls-audit", "mksgate-tls-rev"];

fn selected_systems() -> Vec<System> {
    let wanted: Vec<String> = std::env::var("BENCH_SYSTEMS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            v.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut systems: Vec<System> = all_systems()
        .into_iter()
        .filter(|s| {
            if wanted.is_empty() {
                !SCALE_ONLY.contains(&s.id)
            } else {
                wanted.iter().any(|w| w == s.id)
            }
        })
        .collect();
    if std::env::var("BENCH_REVERSE").is_ok_and(|v| v == "1") {
        systems.reverse();
    }
    systems
}

/// What the results say about a system: its id, label, config and module.
fn system_info(s: &System) -> SystemInfo {
    let (config, module) = match &s.kind {
        Kind::Direct => (None, None),
        Kind::Haproxy { template, .. } => (Some(format!("bench/configs/{template}")), None),
        Kind::Envoy {
            template, module, ..
        } => (
            Some(format!("bench/configs/{template}")),
            module.map(str::to_string),
        ),
    };
    SystemInfo {
        id: s.id.into(),
        label: s.label.into(),
        description: s.description.into(),
        config,
        module,
    }
}

/// The sliced scenarios `settings.scenarios` asks for, in running order.
fn planned_scenarios(settings: &RunConfig) -> Vec<Scenario> {
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

/// Proxy memory with idle sessions: each system fresh, one at a time.
async fn measure_idle(
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
async fn measure_vm_memory(
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
fn measure_load_time(ctx: &Ctx, systems: &[System], res: &mut Results) {
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
