//! One HTTP stream: gather facts, decide, apply. Nothing else happens per
//! request; the configuration was compiled at `on_configure`. Every host
//! call is an `abi` one: nothing a client sends can make this panic.

use crate::abi;
use crate::host::EnvoySharedData;
use crate::root::Ready;
use mksgate_core::{decide, log_line, replay, Audit, Code, Decision, RequestFacts};
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

    fn refuse(&self, ready: &Ready, code: Code, audit: &Audit, client: Option<&str>) -> Action {
        self.finish(ready, code, audit, client);
        let body = format!("{}\n", code.as_str());
        let headers = [
            ("content-type", "text/plain; charset=utf-8"),
            ("cache-control", "no-store"),
            ("x-mksgate-decision", code.as_str()),
        ];
        if abi::send_local_response(code.status(), &headers, body.as_bytes()).is_err() {
            log::error!("mksgate: the host refused the local reply for {code}");
        }
        Action::Pause
    }

    /// The three outputs of every console decision: counter, log line,
    /// access-log field.
    fn finish(&self, ready: &Ready, code: Code, audit: &Audit, client: Option<&str>) {
        ready.metrics.count(code);
        log::info!("{}", log_line(code, audit, client));
        let _ = abi::set_property(&[DECISION_PROPERTY], code.as_str().as_bytes());
    }
}

impl Context for Console {}

impl HttpContext for Console {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(ready) = self.ready.clone() else {
            let body = b"mksgate_unconfigured\n";
            let _ = abi::send_local_response(503, &[("content-type", "text/plain")], body);
            return Action::Pause;
        };
        let config = &ready.config;
        let cluster_header = config.upstreams.cluster_header.as_str();
        let client = abi::get_property(&["source", "address"])
            .ok()
            .flatten()
            .and_then(|raw| String::from_utf8(raw).ok());
        // Headers as bytes: a value that is not UTF-8 is a fact for core to
        // judge, not a reason to trap. A map the host serialized wrongly
        // cannot be judged at all: core refuses it on every path.
        let headers = abi::request_headers().ok();
        let facts = match &headers {
            Some(map) => {
                RequestFacts::from_header_bytes(map.pairs(), cluster_header, client.as_deref())
            }
            None => RequestFacts::unreadable(client.as_deref()),
        };
        // A client never steers routing: whatever it sent under the cluster
        // header goes, on every path, before anything else is decided.
        // The route may already have been picked with it, so pick again.
        if facts.cluster_header_sent {
            if abi::set_request_header(cluster_header, None).is_err() {
                // Left in place it would pick the admitted route: refuse.
                let audit = Audit::default();
                return self.refuse(&ready, Code::GatewayError, &audit, client.as_deref());
            }
            clear_route_cache();
        }
        let now = abi::now_seconds();
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
                let rewritten = abi::set_request_header(":path", Some(admission.path.as_bytes()))
                    .and_then(|()| {
                        abi::set_request_header(":authority", Some(admission.authority.as_bytes()))
                    })
                    .and_then(|()| {
                        abi::set_request_header(cluster_header, Some(admission.cluster.as_bytes()))
                    });
                if rewritten.is_err() {
                    // Never forward a half-rewritten request (it would carry
                    // the token upstream); the link is spent, as for any
                    // admission that ESXi then fails.
                    return self.refuse(
                        &ready,
                        Code::GatewayError,
                        &admission.audit,
                        client.as_deref(),
                    );
                }
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
    let _ = abi::call_foreign("clear_route_cache");
}
