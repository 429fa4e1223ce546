//! One counter per reason code, defined once per VM at configure time.
//!
//! Envoy names them `wasmcustom.mksgate.decision.<code>` in `/stats`; the
//! shipped bootstrap's `stats_tags` turns `<code>` into a `code` label for
//! Prometheus.

use crate::abi;
use mksgate_core::etcd::Outcome;
use mksgate_core::lifetime::EndReason;
use mksgate_core::Code;

/// This VM's linear memory in bytes (64 KiB wasm pages); 0 off wasm, where
/// the shim's native tests run.
pub fn vm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        (core::arch::wasm32::memory_size(0) as u64) * 65536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// Metric ids, indexed like `Code::ALL`; `None` if the host refused one.
    ids: Vec<Option<u32>>,
    /// With the etcd store: a counter per outcome (`Outcome::ALL`'s order)
    /// and the latency histogram.
    store: Vec<Option<u32>>,
    store_latency: Option<u32>,
    /// With the etcd store: streams gone while their call was in flight.
    store_abandoned: Option<u32>,
    /// With the etcd store: calls sent again (no connection was made).
    store_resent: Option<u32>,
    /// With the etcd store: the worker's own logins, succeeded and failed.
    etcd_login: [Option<u32>; 2],
    /// Consoles the filter ended, by `EndReason::ALL`.
    ended: [Option<u32>; 3],
    /// The gateway's open consoles (every worker moves the one gauge).
    open: Option<u32>,
    /// With `revocation`: reads that succeeded and failed, and the age of
    /// the view in milliseconds (set by whichever worker ticked last).
    revocation_reads: [Option<u32>; 2],
    revocation_age: Option<u32>,
    /// The linear memory of every VM of the plugin together, in bytes: each
    /// VM adds what its own grew by (`report_vm_memory`).
    vm_memory: Option<u32>,
}

impl Metrics {
    /// The decision counters, and with `etcd` the store's metrics:
    /// `mksgate.replay_store.<outcome>`, `.abandoned` and `.latency_ms`.
    pub fn define(etcd: bool, revocation: bool) -> Metrics {
        let ids = Code::ALL
            .iter()
            .map(|code| abi::define_counter(&format!("mksgate.decision.{}", code.as_str())).ok())
            .collect();
        let store_abandoned = if etcd {
            abi::define_counter("mksgate.replay_store.abandoned").ok()
        } else {
            None
        };
        let store_resent = if etcd {
            abi::define_counter("mksgate.replay_store.resent").ok()
        } else {
            None
        };
        let etcd_login = if etcd {
            ["ok", "error"].map(|o| abi::define_counter(&format!("mksgate.etcd_auth.{o}")).ok())
        } else {
            [None, None]
        };
        let (store, store_latency) = if etcd {
            let counters = Outcome::ALL
                .iter()
                .map(|o| abi::define_counter(&format!("mksgate.replay_store.{}", o.as_str())).ok())
                .collect();
            let latency = abi::define_histogram("mksgate.replay_store.latency_ms").ok();
            (counters, latency)
        } else {
            (Vec::new(), None)
        };
        Metrics {
            ids,
            store,
            store_latency,
            store_abandoned,
            store_resent,
            etcd_login,
            ended: EndReason::ALL
                .map(|r| abi::define_counter(&format!("mksgate.console_end.{}", r.as_str())).ok()),
            open: abi::define_gauge("mksgate.consoles_open").ok(),
            revocation_reads: if revocation {
                ["ok", "error"]
                    .map(|o| abi::define_counter(&format!("mksgate.revocation.read.{o}")).ok())
            } else {
                [None, None]
            },
            revocation_age: if revocation {
                abi::define_gauge("mksgate.revocation.view_age_ms").ok()
            } else {
                None
            },
            vm_memory: abi::define_gauge("mksgate.vm_memory_bytes").ok(),
        }
    }

    /// Moves the shared VM-memory gauge by what this VM's linear memory grew
    /// since `reported` (what this VM has added so far), and updates it. A
    /// wasm memory only grows; a VM that Envoy drops leaves its share in.
    pub fn report_vm_memory(&self, reported: &mut u64) {
        let now = vm_memory_bytes();
        if now != *reported {
            if let Some(id) = self.vm_memory {
                let delta = i64::try_from(now).unwrap_or(i64::MAX)
                    - i64::try_from(*reported).unwrap_or(i64::MAX);
                abi::add(id, delta);
            }
            *reported = now;
        }
    }

    pub fn console_ended(&self, reason: EndReason) {
        let i = EndReason::ALL.iter().position(|r| *r == reason);
        if let Some(Some(id)) = i.map(|i| self.ended[i]) {
            abi::increment(id);
        }
    }

    pub fn console_opened(&self) {
        if let Some(id) = self.open {
            abi::add(id, 1);
        }
    }

    pub fn console_closed(&self) {
        if let Some(id) = self.open {
            abi::add(id, -1);
        }
    }

    pub fn revocation_read(&self, ok: bool) {
        if let Some(id) = self.revocation_reads[usize::from(!ok)] {
            abi::increment(id);
        }
    }

    pub fn revocation_view_age(&self, age_ms: i64) {
        if let Some(id) = self.revocation_age {
            abi::record(id, u64::try_from(age_ms).unwrap_or(0));
        }
    }

    pub fn etcd_login(&self, ok: bool) {
        if let Some(id) = self.etcd_login[usize::from(!ok)] {
            abi::increment(id);
        }
    }

    pub fn store_resent(&self) {
        if let Some(id) = self.store_resent {
            abi::increment(id);
        }
    }

    pub fn store_abandoned(&self) {
        if let Some(id) = self.store_abandoned {
            abi::increment(id);
        }
    }

    pub fn store_outcome(&self, outcome: Outcome, elapsed_ms: i64) {
        let index = Outcome::ALL.iter().position(|o| *o == outcome);
        if let Some(Some(id)) = index.and_then(|i| self.store.get(i)) {
            abi::increment(*id);
        }
        if let Some(id) = self.store_latency {
            abi::record(id, u64::try_from(elapsed_ms).unwrap_or(0));
        }
    }

    pub fn count(&self, code: Code) {
        if let Some(Some(id)) = self.ids.get(code.index()) {
            abi::increment(*id);
        }
    }
}
