//! One HTTP stream in Envoy: `console::on_request_headers` over Envoy's
//! host calls. Nothing else happens per request; the configuration was
//! compiled at `on_configure`. Every host call is an `abi` one: nothing a
//! client sends can make this panic.

use crate::abi;
use crate::console::{self, Host, HostRefused, Next, Waiting};
use crate::header_map::HeaderMap;
use crate::host::{self, EnvoySharedData};
use crate::ready::Ready;
use mksgate_core::audit::DECISION_PROPERTY;
use mksgate_core::etcd::{Call, EtcdStore, Outcome};
use mksgate_core::lifetime::Close;
use mksgate_core::replay::SharedStore;
use mksgate_core::revocation::{Subject, View};
use mksgate_core::{Audit, Code};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct Console {
    id: u32,
    ready: Option<Rc<Ready>>,
    /// Set while etcd is asked about this request's link.
    waiting: Option<Box<Waiting>>,
}

impl Console {
    pub fn new(id: u32, ready: Option<Rc<Ready>>) -> Console {
        Console {
            id,
            ready,
            waiting: None,
        }
    }

    fn next(&mut self, next: Next) -> Action {
        match next {
            Next::Continue => Action::Continue,
            Next::Stop => Action::Pause,
            Next::Wait(waiting) => {
                self.waiting = Some(waiting);
                Action::Pause
            }
        }
    }
}

impl Context for Console {
    /// Envoy ends every stream context this way, a stream reset while
    /// paused included (the only teardown callback the module exports).
    fn on_done(&mut self) -> bool {
        self.end();
        true
    }

    /// etcd's answer. Envoy cancels a stream's calls when the stream goes,
    /// so this only runs while the request is still paused for it.
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let (Some(ready), Some(waiting)) = (self.ready.clone(), self.waiting.take()) else {
            return;
        };
        let host = Envoy {
            id: self.id,
            ready: Some(&ready),
        };
        let next = host::with_etcd_answer(body_size, |answer| {
            console::on_store_answer(&host, &ready.config, waiting, answer)
        });
        let _ = self.next(next);
    }
}

impl Console {
    /// The stream is ending: it leaves the table of consoles to end, and a
    /// call still in flight was abandoned.
    fn end(&mut self) {
        if let Some(ready) = &self.ready {
            if ready.open.borrow_mut().forget(self.id) {
                ready.metrics.console_closed();
            }
        }
        if let Some(waiting) = self.waiting.take() {
            let host = Envoy {
                id: self.id,
                ready: self.ready.as_deref(),
            };
            console::on_stream_gone(&host, waiting);
        }
    }
}

impl HttpContext for Console {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let host = Envoy {
            id: self.id,
            ready: self.ready.as_deref(),
        };
        let config = self.ready.as_deref().map(|r| &r.config);
        let next = console::on_request_headers(&host, config);
        self.next(next)
    }
}

/// `console::Host` on Envoy's host calls.
struct Envoy<'r> {
    /// The stream's context id.
    id: u32,
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

    /// One host call per field the audit has; a refused call costs that
    /// field in the access log, nothing else.
    fn record_decision(&self, code: Code, audit: &Audit) {
        let _ = abi::set_property(&[DECISION_PROPERTY], code.as_str().as_bytes());
        for (key, value) in audit.properties() {
            let _ = abi::set_property(&[key], value.as_bytes());
        }
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

    fn now_ms(&self) -> i64 {
        abi::now_millis()
    }

    fn dispatch(&self, store: &EtcdStore, call: &Call) -> Result<(), HostRefused> {
        if host::dispatch_to_etcd(store, call) {
            Ok(())
        } else {
            Err(HostRefused)
        }
    }

    fn resume(&self) {
        abi::resume_request();
    }

    fn store_outcome(&self, outcome: Outcome, elapsed_ms: i64) {
        if let Some(ready) = self.ready {
            ready.metrics.store_outcome(outcome, elapsed_ms);
        }
    }

    fn etcd_token(&self) -> Option<Rc<str>> {
        self.ready?.etcd_token.borrow().clone()
    }

    fn drop_etcd_token(&self, token: &str) {
        if let Some(ready) = self.ready {
            let mut kept = ready.etcd_token.borrow_mut();
            if kept.as_deref() == Some(token) {
                *kept = None;
            }
        }
    }

    fn watch(&self, close: Option<Close>, subject: Subject) {
        if let Some(ready) = self.ready {
            if ready.open.borrow_mut().watch(self.id, close, subject) {
                ready.metrics.console_opened();
            }
        }
    }

    fn with_revocations<R>(&self, read: impl FnOnce(Option<(&View, i64)>) -> R) -> R {
        match self.ready {
            Some(ready) => {
                let view = ready.revocations.borrow();
                read(Some((&view, abi::now_millis())))
            }
            None => read(None),
        }
    }

    fn store_abandoned(&self) {
        if let Some(ready) = self.ready {
            ready.metrics.store_abandoned();
        }
    }

    fn store_resent(&self) {
        if let Some(ready) = self.ready {
            ready.metrics.store_resent();
        }
    }
}
