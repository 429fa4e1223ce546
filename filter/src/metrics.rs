//! One counter per reason code, defined once per VM at configure time.
//!
//! Envoy names them `wasmcustom.mksgate.decision.<code>` in `/stats`; the
//! shipped bootstrap's `stats_tags` turns `<code>` into a `code` label for
//! Prometheus.

use crate::abi;
use mksgate_core::Code;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Metric ids, indexed like `Code::ALL`; `None` if the host refused one.
    ids: Vec<Option<u32>>,
}

impl Metrics {
    pub fn define() -> Metrics {
        let ids = Code::ALL
            .iter()
            .map(|code| abi::define_counter(&format!("mksgate.decision.{}", code.as_str())).ok())
            .collect();
        Metrics { ids }
    }

    pub fn count(&self, code: Code) {
        if let Some(Some(id)) = self.ids.get(code.index()) {
            abi::increment(*id);
        }
    }
}
