//! One HTTP stream in Envoy: `console::on_request_headers` over Envoy's
//! host calls. Nothing else happens per request; the configuration was
//! compiled at `on_configure`. Every host call is an `abi` one: nothing a
//! client sends can make this panic.

use crate::abi;
use crate::console::{self, Host, HostRefused, Next};
use crate::header_map::HeaderMap;
use crate::host::EnvoySharedData;
use crate::root::Ready;
use mksgate_core::replay::SharedStore;
use mksgate_core::Code;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// Filter-state key (Envoy prefixes `wasm.`) holding the reason code, for
/// access logs: `%FILTER_STATE(wasm.mksgate_decision:PLAIN)%`.
const DECISION_PROPERTY: &str = "mksgate_decision";

pub struct Console {
    ready: Option<Rc<Ready>>,
}

impl Console {
    pub fn new(ready: Option<Rc<Ready>>) -> Console {
        Console { ready }
    }
}

impl Context for Console {}

impl HttpContext for Console {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let host = Envoy {
            ready: self.ready.as_deref(),
        };
        let config = self.ready.as_deref().map(|r| &r.config);
        match console::on_request_headers(&host, config) {
            Next::Continue => Action::Continue,
            Next::Stop => Action::Pause,
        }
    }
}

/// `console::Host` on Envoy's host calls.
struct Envoy<'r> {
    ready: Option<&'r Ready>,
}

impl Host for Envoy<'_> {
    fn request_headers(&self) -> Option<HeaderMap> {
        abi::request_headers().ok()
    }

    fn client_address(&self) -> Option<String> {
        let raw = abi::get_property(&["source", "address"]).ok()??;
        String::from_utf8(raw).ok()
    }

    fn now(&self) -> i64 {
        abi::now_seconds()
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> Result<(), HostRefused> {
        abi::set_request_header(name, value).map_err(|_| HostRefused)
    }

    /// Envoy may have picked the route before this filter ran (any filter
    /// that reads per-route config does); ask it to pick again so the route
    /// sees the headers as this filter left them. Only fails on a host
    /// without the function, where routes are never cached across filters.
    fn clear_route_cache(&self) {
        let _ = abi::call_foreign("clear_route_cache");
    }

    fn reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostRefused> {
        abi::send_local_response(status, headers, body).map_err(|_| HostRefused)
    }

    fn count(&self, code: Code) {
        if let Some(ready) = self.ready {
            ready.metrics.count(code);
        }
    }

    fn record_decision(&self, code: Code) {
        let _ = abi::set_property(&[DECISION_PROPERTY], code.as_str().as_bytes());
    }

    fn log_info(&self, line: &str) {
        log::info!("{line}");
    }

    fn log_error(&self, line: &str) {
        log::error!("{line}");
    }

    fn store(&self) -> &dyn SharedStore {
        &EnvoySharedData
    }
}
