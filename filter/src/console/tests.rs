//! The shim on a mock host: every call it makes is recorded, and the tests
//! read like what Envoy would see.

mod etcd;

use super::*;
use crate::header_map::{serialize, HeaderMap};
use mksgate_core::etcd::{Call as EtcdCall, Failure};
use mksgate_core::jws::{self, Alg, Key};
use mksgate_core::replay::tests_support::EnvoyLikeStore;
use mksgate_core::request::LOGGED_PATH_HEADER;
use mksgate_core::revocation::{Subject, View};
use std::cell::RefCell;

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-mksgate";

fn config() -> Config {
    config_with(serde_json::json!({}))
}

/// The tests' config with `extra`'s top-level fields set over it.
fn config_with(extra: serde_json::Value) -> Config {
    let mut json = serde_json::json!({
        "keys": [{"kid": "k1", "alg": "HS256", "secret_base64url": jws::encode_secret(SECRET)}],
        "allowed_origins": ["https://portal.example.com"],
        "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}}
    });
    for (key, value) in extra.as_object().unwrap() {
        json[key] = value.clone();
    }
    let env = |name: &str| (name == "ETCD_PASSWORD").then(|| "pw".to_string());
    Config::parse(json.to_string().as_bytes(), &env).unwrap()
}

fn link(jti: &str) -> String {
    let key = Key::new(Some("k1".into()), Alg::HS256, SECRET).unwrap();
    let claims = serde_json::json!({
        "exp": NOW + 60, "iat": NOW, "jti": jti, "host": "vesxi01.sec.lab", "ticket": "tk-1"
    });
    format!(
        "/console?token={}",
        jws::sign(&key, claims.to_string().as_bytes())
    )
}

/// A `Next` by name (a waiting request holds the claim, which has no
/// equality).
fn kind(next: Next) -> &'static str {
    match next {
        Next::Continue => "continue",
        Next::Stop => "stop",
        Next::Wait(_) => "wait",
    }
}

/// One call the shim made.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Set(String, Option<Vec<u8>>),
    ClearRouteCache,
    Reply(u32, Option<String>),
    Count(Code),
    Decision(Code),
    Audit(Vec<(&'static str, String)>),
    Info(String),
    Error(String),
    Dispatch(&'static str, String),
    /// The `authorization` header of the last call dispatched.
    Authorization(Option<String>),
    Resume,
    StoreOutcome(Outcome),
    StoreAbandoned,
    StoreResent,
    Watch(Option<mksgate_core::lifetime::Close>),
    ClientAddress,
}

#[derive(Default)]
struct Mock {
    headers: Option<Vec<u8>>,
    calls: RefCell<Vec<Call>>,
    store: EnvoyLikeStore,
    etcd_token: RefCell<Option<std::rc::Rc<str>>>,
    refuse_header_writes: bool,
    refuse_dispatch: bool,
    now_ms: std::cell::Cell<i64>,
}

impl Mock {
    fn with(headers: &[(&[u8], &[u8])]) -> Mock {
        Mock {
            headers: Some(serialize(headers)),
            ..Mock::default()
        }
    }

    fn upgrade(path: &str, extra: &[(&[u8], &[u8])]) -> Mock {
        let mut h: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"GET"),
            (b":path", path.as_bytes()),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"origin", b"https://portal.example.com"),
        ];
        for (name, value) in extra {
            match h.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value,
                None => h.push((name, value)),
            }
        }
        Mock::with(&h)
    }

    fn run(&self) -> Next {
        self.calls.borrow_mut().clear();
        on_request_headers(self, Some(&config()))
    }

    /// The calls that act on the request (reads of the address apart).
    fn calls(&self) -> Vec<Call> {
        let calls = self.calls.borrow();
        calls
            .iter()
            .filter(|c| **c != Call::ClientAddress)
            .cloned()
            .collect()
    }

    fn asked_address(&self) -> bool {
        self.calls.borrow().contains(&Call::ClientAddress)
    }

    fn replied(&self) -> Option<(u32, Option<String>)> {
        self.calls().into_iter().find_map(|c| match c {
            Call::Reply(status, decision) => Some((status, decision)),
            _ => None,
        })
    }

    /// The header writes that route or rewrite the request (the path for
    /// logs, set on every console request, is `logged_path`).
    fn sets(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Set(name, value) if name != LOGGED_PATH_HEADER => Some((name, value)),
                _ => None,
            })
            .collect()
    }

    fn logged_path(&self) -> Option<Vec<u8>> {
        self.calls().into_iter().find_map(|c| match c {
            Call::Set(name, Some(value)) if name == LOGGED_PATH_HEADER => Some(value),
            _ => None,
        })
    }

    fn info(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Info(line) => Some(line),
                _ => None,
            })
            .collect()
    }
}

impl Host for Mock {
    fn request_headers(&self) -> Option<HeaderMap> {
        HeaderMap::parse(self.headers.clone()?)
    }
    fn client_address(&self) -> Option<String> {
        self.calls.borrow_mut().push(Call::ClientAddress);
        Some("192.0.2.10:55000".into())
    }
    fn now(&self) -> i64 {
        NOW
    }
    fn set_request_header(&self, name: &str, value: Option<&[u8]>) -> Result<(), HostRefused> {
        self.calls
            .borrow_mut()
            .push(Call::Set(name.into(), value.map(<[u8]>::to_vec)));
        if self.refuse_header_writes {
            Err(HostRefused)
        } else {
            Ok(())
        }
    }
    fn clear_route_cache(&self) {
        self.calls.borrow_mut().push(Call::ClearRouteCache);
    }
    fn reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostRefused> {
        let decision = headers
            .iter()
            .find(|(n, _)| *n == "x-mksgate-decision")
            .map(|(_, v)| v.to_string());
        if let Some(code) = &decision {
            assert_eq!(body, format!("{code}\n").as_bytes());
        }
        self.calls.borrow_mut().push(Call::Reply(status, decision));
        Ok(())
    }
    fn count(&self, code: Code) {
        self.calls.borrow_mut().push(Call::Count(code));
    }
    fn record_decision(&self, code: Code, audit: &Audit) {
        let fields = audit
            .properties()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        let mut calls = self.calls.borrow_mut();
        calls.push(Call::Decision(code));
        calls.push(Call::Audit(fields));
    }
    fn log_info(&self, line: &str) {
        self.calls.borrow_mut().push(Call::Info(line.into()));
    }
    fn log_error(&self, line: &str) {
        self.calls.borrow_mut().push(Call::Error(line.into()));
    }
    fn store(&self) -> &dyn SharedStore {
        &self.store
    }
    fn now_ms(&self) -> i64 {
        NOW * 1000 + self.now_ms.get()
    }
    fn dispatch(&self, store: &EtcdStore, call: &EtcdCall) -> Result<(), HostRefused> {
        assert_eq!(
            (store.cluster.as_str(), store.authority.as_str()),
            ("mksgate_etcd", "etcd")
        );
        self.calls
            .borrow_mut()
            .push(Call::Dispatch(call.path, call.body.clone()));
        if call.authorization.is_some() || call.path == mksgate_core::etcd::AUTHENTICATE_PATH {
            self.calls
                .borrow_mut()
                .push(Call::Authorization(call.authorization.clone()));
        }
        if self.refuse_dispatch {
            Err(HostRefused)
        } else {
            Ok(())
        }
    }
    fn resume(&self) {
        self.calls.borrow_mut().push(Call::Resume);
    }
    fn store_outcome(&self, outcome: Outcome, _elapsed_ms: i64) {
        self.calls.borrow_mut().push(Call::StoreOutcome(outcome));
    }
    fn store_abandoned(&self) {
        self.calls.borrow_mut().push(Call::StoreAbandoned);
    }
    fn store_resent(&self) {
        self.calls.borrow_mut().push(Call::StoreResent);
    }
    fn watch(&self, close: Option<mksgate_core::lifetime::Close>, _subject: Subject) {
        self.calls.borrow_mut().push(Call::Watch(close));
    }
    fn with_revocations<R>(&self, read: impl FnOnce(Option<(&View, i64)>) -> R) -> R {
        read(None)
    }
    fn etcd_token(&self) -> Option<std::rc::Rc<str>> {
        self.etcd_token.borrow().clone()
    }
    fn drop_etcd_token(&self, token: &str) {
        let mut kept = self.etcd_token.borrow_mut();
        if kept.as_deref() == Some(token) {
            *kept = None;
        }
    }
}

#[test]
fn a_latin1_cookie_next_to_a_valid_link_is_admitted_and_rewritten() {
    let mock = Mock::upgrade(
        &link("j-1"),
        &[(b"cookie", b"a=Espa\xf1a"), (b"user-agent", b"\xa1\xb1")],
    );
    assert_eq!(kind(mock.run()), "continue");
    assert_eq!(
        mock.sets(),
        [
            (":path".into(), Some(b"/ticket/tk-1".to_vec())),
            (":authority".into(), Some(b"vesxi01.sec.lab".to_vec())),
            ("x-mksgate-cluster".into(), Some(b"esxi_vesxi01".to_vec())),
        ]
    );
    let calls = mock.calls();
    assert!(calls.contains(&Call::ClearRouteCache));
    assert!(calls.contains(&Call::Count(Code::Admitted)));
    assert!(calls.contains(&Call::Decision(Code::Admitted)));
    assert!(mock.info()[0].contains(r#""code":"admitted""#));
    assert_eq!(mock.replied(), None);
    // The audit goes to filter state for the access log: no token, no ticket.
    let audit = calls.iter().find_map(|c| match c {
        Call::Audit(fields) => Some(fields.clone()),
        _ => None,
    });
    let audit = audit.unwrap();
    let keys: Vec<&str> = audit.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "mksgate_kid",
            "mksgate_jti",
            "mksgate_host",
            "mksgate_ticket_sha256"
        ]
    );
    assert_eq!(audit[1].1, "j-1");
    assert!(audit.iter().all(|(_, v)| !v.contains("tk-1")));
}

#[test]
fn log_decisions_off_keeps_the_audit_and_drops_the_log_line() {
    let config = config_with(serde_json::json!({"log_decisions": false}));
    for path in [link("j-q"), "/console?token=x.y.z".to_string()] {
        let mock = Mock::upgrade(&path, &[]);
        let _ = on_request_headers(&mock, Some(&config));
        let calls = mock.calls();
        assert!(mock.info().is_empty(), "{calls:?}");
        assert!(
            calls.iter().any(|c| matches!(c, Call::Decision(_))),
            "{calls:?}"
        );
        assert!(
            calls.iter().any(|c| matches!(c, Call::Audit(_))),
            "{calls:?}"
        );
    }
}

/// With the decision line off (as shipped) the address is a host call made
/// only for a link bound to a network, and such a link is still judged.
#[test]
fn the_client_address_is_read_only_when_a_link_binds_it() {
    let config = config_with(serde_json::json!({"log_decisions": false}));
    let key = Key::new(Some("k1".into()), Alg::HS256, SECRET).unwrap();
    let bound = |jti: &str, ip: &str| {
        let claims = serde_json::json!({
            "exp": NOW + 60, "iat": NOW, "jti": jti, "host": "vesxi01.sec.lab",
            "ticket": "tk-1", "ip": ip
        });
        format!(
            "/console?token={}",
            jws::sign(&key, claims.to_string().as_bytes())
        )
    };
    let asked = Mock::asked_address;
    for path in [link("j-a1"), "/console?token=x.y.z".into(), "/other".into()] {
        let mock = Mock::upgrade(&path, &[]);
        let _ = on_request_headers(&mock, Some(&config));
        assert!(!asked(&mock), "{path}: {:?}", mock.calls());
    }
    let inside = Mock::upgrade(&bound("j-a2", "192.0.2.0/24"), &[]);
    assert_eq!(kind(on_request_headers(&inside, Some(&config))), "continue");
    assert!(asked(&inside));
    let outside = Mock::upgrade(&bound("j-a3", "198.51.100.0/24"), &[]);
    assert_eq!(kind(on_request_headers(&outside, Some(&config))), "stop");
    assert_eq!(
        outside.replied(),
        Some((403, Some("client_not_allowed".into())))
    );
    // With the line on, it is read for every request (the line prints it).
    let logging = config_with(serde_json::json!({"log_decisions": true}));
    let mock = Mock::upgrade(&link("j-a4"), &[]);
    let _ = on_request_headers(&mock, Some(&logging));
    assert!(asked(&mock));
}

#[test]
fn the_second_use_of_a_link_is_replayed() {
    let mock = Mock::upgrade(&link("j-2"), &[]);
    assert_eq!(kind(mock.run()), "continue");
    assert_eq!(kind(mock.run()), "stop");
    assert_eq!(mock.replied(), Some((403, Some("replayed".into()))));
    assert!(mock.sets().is_empty(), "a refused request is not rewritten");
    assert!(mock.calls().contains(&Call::Count(Code::Replayed)));
}

#[test]
fn a_non_utf8_header_the_decision_reads_is_malformed_request() {
    for (name, header) in [
        (&b"origin"[..], "origin"),
        (b"upgrade", "upgrade"),
        (b"x-mksgate-cluster", "cluster header"),
    ] {
        let mock = Mock::upgrade(&link("j-3"), &[(name, b"\xe9")]);
        assert_eq!(kind(mock.run()), "stop", "{header}");
        assert_eq!(
            mock.replied(),
            Some((400, Some("malformed_request".into())))
        );
        let line = &mock.info()[0];
        assert!(
            line.contains(&format!(r#""malformed_header":"{header}""#)),
            "{line}"
        );
        assert!(mock
            .calls()
            .contains(&Call::Decision(Code::MalformedRequest)));
    }
}

#[test]
fn a_client_cluster_header_is_stripped_on_every_path() {
    let mock = Mock::with(&[
        (b":method", b"GET"),
        (b":path", b"/healthz"),
        (b"x-mksgate-cluster", b"esxi_vesxi01"),
    ]);
    assert_eq!(kind(mock.run()), "continue");
    assert_eq!(
        mock.calls(),
        [
            Call::Set("x-mksgate-cluster".into(), None),
            Call::ClearRouteCache
        ]
    );
    // Nothing at all happens to a plain request outside the prefix.
    let plain = Mock::with(&[
        (b":method", b"GET"),
        (b":path", b"/healthz"),
        (b"x", b"\xff"),
    ]);
    assert_eq!(kind(plain.run()), "continue");
    assert!(plain.calls().is_empty());
}

#[test]
fn a_refused_header_write_is_gateway_error_never_half_applied() {
    // The strip of a client's cluster header.
    let mut strip = Mock::with(&[(b":path", b"/healthz"), (b"x-mksgate-cluster", b"x")]);
    strip.refuse_header_writes = true;
    assert_eq!(kind(strip.run()), "stop");
    assert_eq!(strip.replied(), Some((503, Some("gateway_error".into()))));
    // The admission's rewrite: refused, and the request is not forwarded.
    let mut rewrite = Mock::upgrade(&link("j-4"), &[]);
    rewrite.refuse_header_writes = true;
    assert_eq!(kind(rewrite.run()), "stop");
    assert_eq!(rewrite.replied(), Some((503, Some("gateway_error".into()))));
    assert!(!rewrite.calls().contains(&Call::ClearRouteCache));
}

#[test]
fn headers_the_host_cannot_hand_over_are_refused_on_any_path() {
    let mock = Mock {
        headers: Some(vec![9, 0, 0, 0, 1]),
        ..Mock::default()
    };
    assert_eq!(kind(mock.run()), "stop");
    assert_eq!(
        mock.replied(),
        Some((400, Some("malformed_request".into())))
    );
    let none = Mock::default();
    assert_eq!(kind(none.run()), "stop", "no headers at all");
}

#[test]
fn an_unconfigured_stream_is_refused() {
    let mock = Mock::upgrade(&link("j-5"), &[]);
    assert_eq!(kind(on_request_headers(&mock, None)), "stop");
    assert_eq!(
        mock.replied(),
        Some((503, Some("mksgate_unconfigured".into())))
    );
    // Counted and logged like every other decision.
    assert!(mock.calls().contains(&Call::Count(Code::Unconfigured)));
    assert!(mock.info()[0].contains(r#""code":"mksgate_unconfigured""#));
}

#[test]
fn without_rewrite_authority_only_path_and_cluster_are_set() {
    let config = config_with(serde_json::json!({
        "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}, "rewrite_authority": false}
    }));
    let mock = Mock::upgrade(&link("j-istio"), &[]);
    mock.calls.borrow_mut().clear();
    assert_eq!(kind(on_request_headers(&mock, Some(&config))), "continue");
    let names: Vec<String> = mock.sets().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [":path", "x-mksgate-cluster"]);
}

#[test]
fn every_console_request_gets_its_path_for_logs_without_the_query() {
    // Admitted, refused, and outside the prefix.
    let admitted = Mock::upgrade(&link("j-log"), &[]);
    assert_eq!(kind(admitted.run()), "continue");
    assert_eq!(admitted.logged_path().as_deref(), Some(&b"/console"[..]));
    let refused = Mock::upgrade("/console?token=a.b.c", &[]);
    assert_eq!(kind(refused.run()), "stop");
    assert_eq!(refused.logged_path().as_deref(), Some(&b"/console"[..]));
    let pairs: [(&[u8], &[u8]); 2] = [(b":method", b"GET"), (b":path", b"/other?token=x")];
    let other = Mock::with(&pairs);
    assert_eq!(kind(other.run()), "continue");
    assert_eq!(other.logged_path(), None);
}
