//! One HTTP stream: gather facts, decide, apply. Nothing else happens per
//! request; the configuration was compiled at `on_configure`.

use crate::host::EnvoySharedData;
use crate::root::Ready;
use mksgate_core::{decide, log_line, replay, Audit, Code, Decision, RequestFacts};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

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

    fn now(&self) -> i64 {
        match self.get_current_time().duration_since(UNIX_EPOCH) {
            Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
            Err(_) => 0,
        }
    }

    fn client_address(&self) -> Option<String> {
        let raw = self.get_property(vec!["source", "address"])?;
        String::from_utf8(raw).ok()
    }

    fn refuse(&self, ready: &Ready, code: Code, audit: &Audit, client: Option<&str>) -> Action {
        self.finish(ready, code, audit, client);
        let body = format!("{}\n", code.as_str());
        self.send_http_response(
            code.status(),
            vec![
                ("content-type", "text/plain; charset=utf-8"),
                ("cache-control", "no-store"),
                ("x-mksgate-decision", code.as_str()),
            ],
            Some(body.as_bytes()),
        );
        Action::Pause
    }

    /// The three outputs of every console decision: counter, log line,
    /// access-log field.
    fn finish(&self, ready: &Ready, code: Code, audit: &Audit, client: Option<&str>) {
        ready.metrics.count(code);
        log::info!("{}", log_line(code, audit, client));
        self.set_property(vec![DECISION_PROPERTY], Some(code.as_str().as_bytes()));
    }
}

impl Context for Console {}

impl HttpContext for Console {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(ready) = self.ready.clone() else {
            self.send_http_response(
                503,
                vec![("content-type", "text/plain")],
                Some(b"mksgate_unconfigured\n"),
            );
            return Action::Pause;
        };
        let config = &ready.config;
        let cluster_header = config.upstreams.cluster_header.as_str();
        let headers = self.get_http_request_headers();
        // A client never steers routing: whatever it sent under the cluster
        // header goes, on every path, before anything else is decided.
        // The route may already have been picked with it, so pick again.
        if headers.iter().any(|(name, _)| name == cluster_header) {
            self.set_http_request_header(cluster_header, None);
            clear_route_cache();
        }
        let client = self.client_address();
        let facts = RequestFacts::from_headers(
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            client.as_deref(),
        );
        let now = self.now();
        match decide(config, &facts, now) {
            Decision::PassThrough => Action::Continue,
            Decision::Refuse(refusal) => {
                self.refuse(&ready, refusal.code, &refusal.audit, client.as_deref())
            }
            Decision::Admit(admission) => {
                if let Some(one_time) = &admission.one_time {
                    if let Err(code) = replay::claim(&EnvoySharedData, one_time, now) {
                        return self.refuse(&ready, code, &admission.audit, client.as_deref());
                    }
                }
                self.set_http_request_header(":path", Some(&admission.path));
                self.set_http_request_header(":authority", Some(&admission.authority));
                self.set_http_request_header(cluster_header, Some(admission.cluster));
                clear_route_cache();
                self.finish(&ready, Code::Admitted, &admission.audit, client.as_deref());
                Action::Continue
            }
        }
    }
}

/// Envoy may have picked the route before this filter ran (any filter that
/// reads per-route config does); ask it to pick again so the route sees the
/// headers as this filter left them.
fn clear_route_cache() {
    // Only fails on a host without the function, where routes are never
    // cached across filters; nothing to do then.
    let _ = proxy_wasm::hostcalls::call_foreign_function("clear_route_cache", None);
}
