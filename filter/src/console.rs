//! One console request, over a `Host` seam: gather the facts, ask core,
//! apply the answer. `http.rs` implements `Host` with Envoy's host calls;
//! the tests below implement it with a recording mock, so what the shim
//! does with each decision is proven natively too.

use crate::header_map::HeaderMap;
use mksgate_core::etcd::{Answer, Call, Claim, EtcdStore, Failure, Outcome, Step};
use mksgate_core::lifetime::Close;
use mksgate_core::replay::SharedStore;
use mksgate_core::request::{ClientLookup, LOGGED_PATH_HEADER};
use mksgate_core::revocation::{Subject, View};
use mksgate_core::{
    decide, log_line, Audit, Code, Commit, Config, Decision, Deferred, Pending, ReplayStore,
    RequestFacts, Rewrite,
};
use std::rc::Rc;

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
    /// The decision's outputs: counter, access-log fields, log line.
    fn count(&self, code: Code);
    /// The code and the audit in filter state, for the access log.
    fn record_decision(&self, code: Code, audit: &Audit);
    fn log_info(&self, line: &str);
    fn log_error(&self, line: &str);
    /// Where one-time links are recorded (the local table).
    fn store(&self) -> &dyn SharedStore;
    /// Milliseconds since the epoch (0 if the host cannot tell).
    fn now_ms(&self) -> i64;
    /// Sends `call` to etcd (`POST`, JSON) through `store.cluster`; the
    /// answer comes back to `on_store_answer`.
    fn dispatch(&self, store: &EtcdStore, call: &Call) -> Result<(), HostRefused>;
    /// Lets the paused request go on.
    fn resume(&self);
    /// The store's outcome for one link and how long it took.
    fn store_outcome(&self, outcome: Outcome, elapsed_ms: i64);
    /// A stream ended while etcd was asked about its link.
    fn store_abandoned(&self);
    /// A call to etcd is sent again: its connection could not be made.
    fn store_resent(&self);
    /// An admitted console: into the worker's table of open consoles, to
    /// be ended at `close` (the root's tick) or when a revocation names
    /// its `subject`.
    fn watch(&self, close: Option<Close>, subject: Subject);
    /// Hands the worker's revocation view and the time in milliseconds to
    /// `read` (`None` when there is none to hand).
    fn with_revocations<R>(&self, read: impl FnOnce(Option<(&View, i64)>) -> R) -> R;
    /// The worker's etcd token, if it has one (etcd's access control).
    fn etcd_token(&self) -> Option<Rc<str>>;
    /// etcd refused `token`: the worker drops it (if it still holds it)
    /// and its root context logs in again.
    fn drop_etcd_token(&self, token: &str);
}

/// What the proxy does with the request next.
#[derive(Debug)]
pub enum Next {
    Continue,
    /// A local reply was sent (or the stream is refused).
    Stop,
    /// Paused while etcd records the link: hand the answer of the call in
    /// flight to `on_store_answer`.
    Wait(Box<Waiting>),
}

/// An admitted request waiting for etcd.
#[derive(Debug)]
pub struct Waiting {
    pending: Pending,
    claim: Claim,
    started_ms: i64,
    client: Option<String>,
}

/// Handles the request headers of one stream. `config` is `None` when the
/// plugin was never configured (Envoy does not create streams then; if it
/// ever did, refuse).
pub fn on_request_headers<H: Host>(host: &H, config: Option<&Config>) -> Next {
    let Some(config) = config else {
        return refuse(host, true, Code::Unconfigured, &Audit::default(), None);
    };
    let cluster_header = config.upstreams.cluster_header.as_str();
    let log = config.log_decisions;
    // The address is a host call: read up front only for the decision
    // line; otherwise core asks for it when a link is bound to a network.
    let client = if log { host.client_address() } else { None };
    let lookup = Lookup(host);
    // A host call the decision depends on was refused: never forward.
    let gateway_error = || {
        refuse(
            host,
            log,
            Code::GatewayError,
            &Audit::default(),
            client.as_deref(),
        )
    };
    // Headers as bytes: a value that is not UTF-8 is a fact for core to
    // judge, not a reason to trap. A map the host serialized wrongly cannot
    // be judged at all: core refuses it on every path.
    let headers = host.request_headers();
    let mut facts = match &headers {
        Some(map) => {
            RequestFacts::from_header_bytes(map.pairs(), cluster_header, client.as_deref())
        }
        None => RequestFacts::unreadable(client.as_deref()),
    };
    if !log {
        facts.client_lookup = Some(&lookup);
    }
    // The client's cluster header goes before anything else is decided,
    // whatever the decision (core says so for pass-through, and the other
    // outcomes either answer locally or overwrite it); the route may have
    // been picked with it, so pick again.
    if facts.cluster_header_sent {
        if host.set_request_header(cluster_header, None).is_err() {
            // Left in place it would pick the admitted route: refuse.
            return gateway_error();
        }
        host.clear_route_cache();
    }
    let now = host.now();
    let decision = if config.revocation.is_some() {
        host.with_revocations(|view| {
            // The facts for this call only: the view is borrowed for it.
            let mut facts = facts;
            facts.revocations = view;
            decide(config, &facts, now)
        })
    } else {
        decide(config, &facts, now)
    };
    if !matches!(decision, Decision::PassThrough { .. }) {
        // A console request: logs that print the path get it without the
        // query (the token) and, after admission, instead of the ticket. A
        // refusal stands without it; an admission is not forwarded without
        // it (gateway_error, like any rewrite the host refuses).
        let logged = facts.path_without_query().as_bytes();
        let set = host.set_request_header(LOGGED_PATH_HEADER, Some(logged));
        if set.is_err() && matches!(decision, Decision::Admit(_)) {
            return gateway_error();
        }
    }
    match decision {
        Decision::PassThrough { .. } => Next::Continue,
        Decision::Refuse(refusal) => {
            refuse(host, log, refusal.code, &refusal.audit, client.as_deref())
        }
        Decision::Admit(admission) => match &config.replay_store {
            ReplayStore::Local => {
                let commit = admission.commit(host.store(), now);
                apply(host, config, commit, client.as_deref())
            }
            // Only a request that passed every other check reaches etcd.
            ReplayStore::Etcd(store) => match admission.defer() {
                Deferred::Apply(rewrite) => {
                    apply(host, config, Commit::Apply(rewrite), client.as_deref())
                }
                Deferred::Wait(pending) => {
                    let started_ms = host.now_ms();
                    let token = host.etcd_token();
                    let (claim, step) =
                        store.claim(pending.one_time(), started_ms, token.as_deref());
                    let waiting = Box::new(Waiting {
                        pending,
                        claim,
                        started_ms,
                        client,
                    });
                    match step {
                        Step::Send(call) => send(host, config, store, waiting, &call),
                        Step::Done(outcome) => {
                            // Only without a token: the worker has not
                            // logged in to etcd (yet).
                            host.log_error(&format!(
                                r#"{{"mksgate":"replay_store","outcome":"{}","detail":"not logged in to etcd"}}"#,
                                outcome.as_str()
                            ));
                            settle(host, config, waiting, outcome)
                        }
                    }
                }
            },
        },
    }
}

/// `source.address` from the host, when core asks for it.
struct Lookup<'h, H>(&'h H);

impl<H> std::fmt::Debug for Lookup<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lookup(host)")
    }
}

impl<H: Host> ClientLookup for Lookup<'_, H> {
    fn client_ip(&self) -> Option<std::net::IpAddr> {
        mksgate_core::decision::client_ip(&self.0.client_address()?)
    }
}

/// The stream of `waiting` ended (the client left) before etcd answered:
/// Envoy cancels the call, so no outcome will come. Counted and logged,
/// never with the key or the link. The link may still have been recorded
/// (the call may have reached etcd): it is then spent, never admitted.
pub fn on_stream_gone<H: Host>(host: &H, waiting: Box<Waiting>) {
    host.store_abandoned();
    host.log_info(&format!(
        r#"{{"mksgate":"replay_store","outcome":"abandoned","elapsed_ms":{}}}"#,
        host.now_ms().saturating_sub(waiting.started_ms)
    ));
}

/// Handles etcd's answer to the call in flight for `waiting`.
pub fn on_store_answer<H: Host>(
    host: &H,
    config: &Config,
    mut waiting: Box<Waiting>,
    answer: Answer<'_>,
) -> Next {
    let ReplayStore::Etcd(store) = &config.replay_store else {
        // Only an etcd store sends calls; anything else is the host's bug.
        return settle(host, config, waiting, Outcome::Unavailable(Failure::Error));
    };
    match waiting.claim.on_answer(answer, host.now_ms()) {
        Step::Send(call) => {
            if waiting.claim.last_was_resend() {
                host.store_resent();
            }
            send(host, config, store, waiting, &call)
        }
        Step::Done(outcome) => {
            if let Some(token) = waiting
                .claim
                .token()
                .filter(|_| waiting.claim.token_refused())
            {
                host.drop_etcd_token(token);
            }
            if let Outcome::Unavailable(_) = outcome {
                // What etcd said, for the operator; never the key or link.
                host.log_error(&format!(
                    r#"{{"mksgate":"replay_store","outcome":"{}","detail":"{}"}}"#,
                    outcome.as_str(),
                    mksgate_core::etcd::failure_detail(&answer)
                ));
            }
            settle(host, config, waiting, outcome)
        }
    }
}

fn send<H: Host>(
    host: &H,
    config: &Config,
    store: &EtcdStore,
    waiting: Box<Waiting>,
    call: &Call,
) -> Next {
    match host.dispatch(store, call) {
        Ok(()) => Next::Wait(waiting),
        Err(HostRefused) => settle(host, config, waiting, Outcome::Unavailable(Failure::Error)),
    }
}

/// The store's outcome decides. Only a call's answer can admit, and the
/// request is paused then: resume it.
fn settle<H: Host>(host: &H, config: &Config, waiting: Box<Waiting>, outcome: Outcome) -> Next {
    host.store_outcome(outcome, host.now_ms() - waiting.started_ms);
    let Waiting {
        pending, client, ..
    } = *waiting;
    let next = apply(host, config, pending.settle(outcome), client.as_deref());
    if matches!(next, Next::Continue) {
        host.resume();
    }
    next
}

/// Applies a committed admission (or its refusal).
fn apply<H: Host>(host: &H, config: &Config, commit: Commit<'_>, client: Option<&str>) -> Next {
    let cluster_header = config.upstreams.cluster_header.as_str();
    let log = config.log_decisions;
    let rewrite: Rewrite<'_> = match commit {
        Commit::Refuse(refusal) => return refuse(host, log, refusal.code, &refusal.audit, client),
        Commit::Apply(rewrite) => rewrite,
    };
    let applied = host
        .set_request_header(":path", Some(rewrite.path.as_bytes()))
        .and_then(|()| match rewrite.set_authority {
            true => host.set_request_header(":authority", Some(rewrite.authority.as_bytes())),
            false => Ok(()),
        })
        .and_then(|()| host.set_request_header(cluster_header, Some(rewrite.cluster.as_bytes())));
    if applied.is_err() {
        // Never forward a half-rewritten request (it would carry the token
        // upstream); the link is spent, as for any admission that ESXi then
        // fails.
        return refuse(host, log, Code::GatewayError, &rewrite.audit, client);
    }
    host.clear_route_cache();
    finish(host, log, Code::Admitted, &rewrite.audit, client);
    host.watch(rewrite.close, rewrite.subject);
    Next::Continue
}

/// The decision's outputs: the counter, the audit in filter state (the
/// access log's fields), and the log line when `log_decisions` is on.
fn finish<H: Host>(host: &H, log: bool, code: Code, audit: &Audit, client: Option<&str>) {
    host.count(code);
    host.record_decision(code, audit);
    if log {
        host.log_info(&log_line(code, audit, client));
    }
}

fn refuse<H: Host>(host: &H, log: bool, code: Code, audit: &Audit, client: Option<&str>) -> Next {
    finish(host, log, code, audit, client);
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
