//! Has the module's VM survived? What a test checks after sending Envoy
//! something hostile: Envoy's wasm counters (`wasm.*`: VMs created, and per
//! plugin `vm_reload`, `vm_reload_backoff`, `vm_reload_success`,
//! `vm_reload_failure`) are unchanged, the log holds no trap or panic, and a
//! fresh valid link is admitted on every worker.
//!
//! Under `FAIL_CLOSED` a trap changes no counter at all (measured in
//! `e2e_failure_policy.rs`), which is why the log and the per-worker
//! admission are checked too.

use crate::envoy::Envoy;
use crate::gateway::{upgrade_head, ShippedGateway};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::time::Duration;

/// What a VM failure leaves in Envoy's log (a panic hook line, V8's trap
/// report, or a failed callback).
pub const FAILURE_MARKS: [&str; 3] = ["panic", "RuntimeError", "Function: proxy_on"];

/// Envoy's wasm counters and the log length at one moment.
#[derive(Debug, Clone)]
pub struct VmHealth {
    wasm: BTreeMap<String, u64>,
    log_len: usize,
}

async fn wasm_stats(envoy: &Envoy) -> Result<BTreeMap<String, u64>> {
    Ok(envoy
        .stats()
        .await?
        .into_iter()
        .filter(|(k, _)| k.starts_with("wasm.") && !k.starts_with("wasm.remote_load"))
        .collect())
}

impl VmHealth {
    pub async fn snapshot(envoy: &Envoy) -> Result<VmHealth> {
        Ok(VmHealth {
            wasm: wasm_stats(envoy).await?,
            log_len: envoy.log().len(),
        })
    }

    /// Fails, saying what changed, if any wasm counter moved or the log
    /// gained a failure mark since the snapshot.
    pub async fn check(&self, envoy: &Envoy, what: &str) -> Result<()> {
        let now = wasm_stats(envoy).await?;
        if now != self.wasm {
            let changed: Vec<String> = now
                .iter()
                .filter(|(k, v)| self.wasm.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}: {:?} -> {v}", self.wasm.get(k)))
                .collect();
            bail!("{what}: Envoy's wasm counters moved: {changed:?}");
        }
        let log = envoy.log();
        let fresh = log.get(self.log_len..).unwrap_or_default();
        if let Some(line) = fresh
            .lines()
            .find(|l| FAILURE_MARKS.iter().any(|m| l.contains(m)))
        {
            bail!("{what}: Envoy logged a VM failure: {line}");
        }
        Ok(())
    }
}

/// Per-worker connection counts of the (one) client listener. Envoy names
/// its stats by the configured address, so `port_value: 0` shows as `_0`:
/// every listener but admin's is taken.
pub async fn worker_connections(envoy: &Envoy) -> Result<BTreeMap<String, u64>> {
    Ok(envoy
        .stats()
        .await?
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("listener.")
                && !k.starts_with("listener.admin.")
                && k.contains(".worker_")
                && k.ends_with(".downstream_cx_total")
        })
        .collect())
}

/// Sends fresh valid links, each on a new connection, until every one of
/// `workers` workers has served at least one; each must be admitted (101).
/// Returns how many links it took.
pub async fn admit_on_every_worker(gw: &ShippedGateway, workers: usize) -> Result<usize> {
    let wire = gw.wire()?;
    let before = worker_connections(&gw.envoy).await?;
    if before.len() != workers {
        bail!("expected {workers} worker counters, found {before:?}");
    }
    for attempt in 1..=64 {
        let path = gw.valid_path(attempt)?;
        let reply = wire
            .from(crate::clients::MANY_USERS.next())
            .send(&upgrade_head(path.as_bytes(), &[]))
            .await?;
        if reply.status != 101 {
            bail!("a valid link got {reply:?} (attempt {attempt}), not 101");
        }
        let now = worker_connections(&gw.envoy).await?;
        if now
            .iter()
            .all(|(k, v)| before.get(k).is_some_and(|b| v > b))
        {
            return Ok(attempt);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("64 connections never reached every worker")
}

/// Spaces requests out to `per_second`, so a test stays well under the
/// shipped gateway-wide handshake limit (1000/s) and every request reaches
/// the filter instead of Envoy's 429 (spread the requests over
/// [`crate::clients::MANY_USERS`] for the per-client one).
pub struct Pacer {
    interval: Duration,
    next: tokio::time::Instant,
}

impl Pacer {
    pub fn new(per_second: u32) -> Pacer {
        Pacer {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: tokio::time::Instant::now(),
        }
    }

    pub async fn pace(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = tokio::time::Instant::now() + self.interval;
    }
}
