//! One console request, over a `Host` seam: gather the facts, ask core,
//! apply the answer. `http.rs` implements `Host` with Envoy's host calls;
//! the tests below implement it with a recording mock, so what the shim
//! does with each decision is proven natively too.

use crate::header_map::HeaderMap;
use mksgate_core::replay::SharedStore;
use mksgate_core::{decide, log_line, Audit, Code, Commit, Config, Decision, RequestFacts};

/// The host refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRefused;

/// What the shim needs from the proxy, per request.
pub trait Host {
    /// The request's headers as bytes; `None` if the host could not hand
    /// them over in its own format.
    fn request_headers(&self) -> Option<HeaderMap>;
    /// `source.address` (`ip:port`).
    fn client_address(&self) -> Option<String>;
    /// Seconds since the epoch.
    fn now(&self) -> i64;
    /// Replaces a request header, or removes it with `None`.
    fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> Result<(), HostRefused>;
    /// Has the proxy pick the route again.
    fn clear_route_cache(&self);
    /// Answers locally.
    fn reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostRefused>;
    /// The decision's three outputs: counter, access-log field, log line.
    fn count(&self, code: Code);
    fn record_decision(&self, code: Code);
    fn log_info(&self, line: &str);
    fn log_error(&self, line: &str);
    /// Where one-time links are recorded.
    fn store(&self) -> &dyn SharedStore;
}

/// What the proxy does with the request next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// A local reply was sent (or the stream is refused).
    Stop,
}

/// Handles the request headers of one stream. `config` is `None` when the
/// plugin was never configured (Envoy does not create streams then; if it
/// ever did, refuse).
pub fn on_request_headers<H: Host>(host: &H, config: Option<&Config>) -> Next {
    let Some(config) = config else {
        return refuse(host, Code::Unconfigured, &Audit::default(), None);
    };
    let cluster_header = config.upstreams.cluster_header.as_str();
    let client = host.client_address();
    // Headers as bytes: a value that is not UTF-8 is a fact for core to
    // judge, not a reason to trap. A map the host serialized wrongly cannot
    // be judged at all: core refuses it on every path.
    let headers = host.request_headers();
    let facts = match &headers {
        Some(map) => {
            RequestFacts::from_header_bytes(map.pairs(), cluster_header, client.as_deref())
        }
        None => RequestFacts::unreadable(client.as_deref()),
    };
    // The client's cluster header goes before anything else is decided,
    // whatever the decision (core says so for pass-through, and the other
    // outcomes either answer locally or overwrite it); the route may have
    // been picked with it, so pick again.
    if facts.cluster_header_sent {
        if host.set_request_header(cluster_header, None).is_err() {
            // Left in place it would pick the admitted route: refuse.
            return refuse(
                host,
                Code::GatewayError,
                &Audit::default(),
                client.as_deref(),
            );
        }
        host.clear_route_cache();
    }
    let now = host.now();
    match decide(config, &facts, now) {
        Decision::PassThrough { .. } => Next::Continue,
        Decision::Refuse(refusal) => refuse(host, refusal.code, &refusal.audit, client.as_deref()),
        Decision::Admit(admission) => match admission.commit(host.store(), now) {
            Commit::Refuse(refusal) => {
                refuse(host, refusal.code, &refusal.audit, client.as_deref())
            }
            Commit::Apply(rewrite) => {
                let applied = host
                    .set_request_header(":path", Some(rewrite.path.as_bytes()))
                    .and_then(|()| {
                        host.set_request_header(":authority", Some(rewrite.authority.as_bytes()))
                    })
                    .and_then(|()| {
                        host.set_request_header(cluster_header, Some(rewrite.cluster.as_bytes()))
                    });
                if applied.is_err() {
                    // Never forward a half-rewritten request (it would carry
                    // the token upstream); the link is spent, as for any
                    // admission that ESXi then fails.
                    return refuse(host, Code::GatewayError, &rewrite.audit, client.as_deref());
                }
                host.clear_route_cache();
                finish(host, Code::Admitted, &rewrite.audit, client.as_deref());
                Next::Continue
            }
        },
    }
}

fn finish<H: Host>(host: &H, code: Code, audit: &Audit, client: Option<&str>) {
    host.count(code);
    host.record_decision(code);
    host.log_info(&log_line(code, audit, client));
}

fn refuse<H: Host>(host: &H, code: Code, audit: &Audit, client: Option<&str>) -> Next {
    finish(host, code, audit, client);
    let body = format!("{}\n", code.as_str());
    let headers = [
        ("content-type", "text/plain; charset=utf-8"),
        ("cache-control", "no-store"),
        ("x-mksgate-decision", code.as_str()),
    ];
    if host
        .reply(code.status(), &headers, body.as_bytes())
        .is_err()
    {
        host.log_error(&format!(
            "mksgate: the host refused the local reply for {code}"
        ));
    }
    Next::Stop
}

#[cfg(test)]
mod tests;
