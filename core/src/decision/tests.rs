//! One test per row of the decision table, plus property tests.

mod revocation;

use super::*;
use crate::jws::{sign, sign_with_header, Alg, Key};
#[cfg(not(target_arch = "wasm32"))]
use proptest::prelude::*;
use serde_json::{json, Value};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-mksgate";

fn key() -> Key {
    Key::new(Some("k1".into()), Alg::HS256, SECRET).unwrap()
}

fn config_with(extra: Value) -> Config {
    let mut c = json!({
        "keys": [{"kid": "k1", "alg": "HS256", "secret_base64url": crate::jws::encode_secret(SECRET)}],
        "upstreams": {
            "hosts": {"vesxi01.sec.lab": "esxi_vesxi01", "10.0.0.9": "esxi_ip"},
            "host_suffixes": {".esxi.example.com": "esxi_dynamic"}
        }
    });
    if let (Some(base), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    Config::parse(c.to_string().as_bytes(), &|_| None).unwrap()
}

fn config() -> Config {
    config_with(json!({}))
}

fn claims() -> Value {
    json!({"exp": NOW + 60, "iat": NOW, "jti": "j-1", "host": "vesxi01.sec.lab", "ticket": "52-ab.cd_ef~9"})
}

fn link(claims: &Value) -> String {
    format!(
        "/console?token={}",
        sign(&key(), claims.to_string().as_bytes())
    )
}

struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    client: Option<&'static str>,
}

impl Req {
    fn ws(path: String) -> Req {
        Req {
            method: "GET",
            path,
            headers: vec![
                ("upgrade", "websocket".into()),
                ("connection", "Upgrade".into()),
            ],
            client: Some("192.0.2.10:55000"),
        }
    }
    fn header(mut self, name: &'static str, value: &str) -> Req {
        self.headers.push((name, value.into()));
        self
    }
    fn decide<'c>(&self, config: &'c Config, now: i64) -> Decision<'c> {
        let mut pairs: Vec<(&str, &str)> = vec![(":method", self.method), (":path", &self.path)];
        pairs.extend(self.headers.iter().map(|(n, v)| (*n, v.as_str())));
        let facts = RequestFacts::from_headers(pairs, self.client);
        decide(config, &facts, now)
    }
}

fn code_of(config: &Config, req: &Req) -> Code {
    req.decide(config, NOW).code().expect("a console path")
}

fn with(claims_patch: Value) -> Value {
    let mut c = claims();
    for (k, v) in claims_patch.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

#[test]
fn admitted_rewrites_path_authority_and_cluster() {
    let cfg = config();
    let Decision::Admit(a) = Req::ws(link(&claims())).decide(&cfg, NOW) else {
        panic!("not admitted")
    };
    assert_eq!(a.cluster, "esxi_vesxi01");
    assert_eq!(a.path, "/ticket/52-ab.cd_ef~9");
    assert_eq!(a.authority, "vesxi01.sec.lab");
    assert_eq!(
        a.one_time,
        Some(OneTime::new(Some("k1"), None, "j-1".into(), NOW + 60 + 30))
    );
    assert_eq!(a.audit.kid.as_deref(), Some("k1"));
    assert_eq!(a.audit.host.as_deref(), Some("vesxi01.sec.lab"));
    assert_eq!(a.audit.ticket_sha256.as_ref().map(String::len), Some(12));
}

#[test]
fn url_form_port_and_suffix() {
    let cfg = config();
    let c = with(
        json!({"host": null, "ticket": null, "url": "wss://Host7.ESXi.example.com:8443/ticket/tk1"}),
    );
    let Decision::Admit(a) = Req::ws(link(&c)).decide(&cfg, NOW) else {
        panic!()
    };
    assert_eq!(
        (a.cluster, a.path.as_str(), a.authority.as_str()),
        ("esxi_dynamic", "/ticket/tk1", "host7.esxi.example.com:8443")
    );
    let c = with(json!({"host": "10.0.0.9", "port": 9443}));
    let Decision::Admit(a) = Req::ws(link(&c)).decide(&cfg, NOW) else {
        panic!()
    };
    assert_eq!(
        (a.cluster, a.authority.as_str()),
        ("esxi_ip", "10.0.0.9:9443")
    );
}

#[test]
fn outside_prefix_passes_through() {
    let cfg = config();
    for path in ["/", "/consoles", "/healthz?token=x", "/ticket/abc"] {
        assert!(
            matches!(
                Req::ws(path.into()).decide(&cfg, NOW),
                Decision::PassThrough { .. }
            ),
            "{path}"
        );
    }
}

/// Below the prefix is still a console request (never passed through), but
/// only the prefix itself, with or without one `/`, is a console link: a
/// deeper path is refused before the token is read, so the link stays
/// unspent and nothing of the path reaches ESXi.
#[test]
fn row_sub_path() {
    let cfg = config();
    let path = link(&claims());
    let query = path.trim_start_matches("/console");
    for ok in [format!("/console{query}"), format!("/console/{query}")] {
        assert_eq!(code_of(&cfg, &Req::ws(ok)), Code::Admitted);
    }
    for deeper in [
        "/console/x",
        "/console/vesxi02.sec.lab",
        "/console//",
        "/console/../ticket/t",
    ] {
        let Decision::Refuse(r) = Req::ws(format!("{deeper}{query}")).decide(&cfg, NOW) else {
            panic!("{deeper}: not refused")
        };
        assert_eq!(
            (r.code, r.audit.malformed_header, r.audit.kid),
            (Code::MalformedRequest, Some(":path"), None),
            "{deeper}"
        );
    }
    assert!(matches!(
        Req::ws(format!("/consoles{query}")).decide(&cfg, NOW),
        Decision::PassThrough { .. }
    ));
}

/// A header the decision reads, holding bytes that are not UTF-8 (Envoy
/// passes 0x80-0xFF through): refused under the prefix, passed elsewhere.
#[test]
fn row_malformed_request() {
    let cfg = config();
    let path = link(&claims());
    let decide_bytes = |headers: &[(&[u8], &[u8])]| {
        let facts = RequestFacts::from_header_bytes(
            headers.iter().copied(),
            &cfg.upstreams.cluster_header,
            Some("192.0.2.10:55000"),
        );
        decide(&cfg, &facts, NOW)
    };
    let base: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":path", path.as_bytes()),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
    ];
    assert_eq!(decide_bytes(&base).code(), Some(Code::Admitted));
    for (name, header) in [
        (&b"origin"[..], "origin"),
        (b"upgrade", "upgrade"),
        (b"connection", "connection"),
        (b"x-mksgate-cluster", crate::request::CLUSTER_HEADER),
    ] {
        let mut h = base.clone();
        h.push((name, b"\xe9"));
        let Decision::Refuse(r) = decide_bytes(&h) else {
            panic!("{header}: not refused")
        };
        assert_eq!(
            (r.code, r.audit.malformed_header),
            (Code::MalformedRequest, Some(header))
        );
    }
    assert_eq!(Code::MalformedRequest.status(), 400);
    // Other headers' bytes are never read.
    let mut h = base.clone();
    h.push((b"cookie", b"a=Espa\xf1a"));
    h.push((b"user-agent", b"\xa1\xb1"));
    assert_eq!(decide_bytes(&h).code(), Some(Code::Admitted));
    // A non-UTF-8 path under the prefix is refused; elsewhere it passes.
    let bad_path = format!("{path}\u{0}").into_bytes();
    let mut bad_path = bad_path;
    bad_path.pop();
    bad_path.push(0xff);
    let mut h = base.clone();
    h[1] = (b":path", &bad_path);
    assert_eq!(decide_bytes(&h).code(), Some(Code::MalformedRequest));
    for outside in [&b"/healthz\xff"[..], b"/\xff/console", b"/consol\xe9"] {
        let mut h = base.clone();
        h[1] = (b":path", outside);
        assert!(matches!(decide_bytes(&h), Decision::PassThrough { .. }));
    }
    // Headers the host could not serialize: refused, whatever the path.
    let facts = RequestFacts::unreadable(None);
    assert_eq!(
        decide(&cfg, &facts, NOW).code(),
        Some(Code::MalformedRequest)
    );
    assert!(facts.cluster_header_sent);
    // Outside the prefix a bad Origin is left alone too.
    let mut h = base.clone();
    h[1] = (b":path", b"/healthz");
    h.push((b"origin", b"\xe9"));
    assert!(matches!(decide_bytes(&h), Decision::PassThrough { .. }));
}

#[test]
fn row_not_websocket() {
    let cfg = config();
    let mut r = Req::ws(link(&claims()));
    r.headers.clear();
    assert_eq!(code_of(&cfg, &r), Code::NotWebsocket);
    let mut post = Req::ws(link(&claims()));
    post.method = "POST";
    assert_eq!(code_of(&cfg, &post), Code::NotWebsocket);
    assert_eq!(Code::NotWebsocket.status(), 426);
}

#[test]
fn row_missing_token() {
    let cfg = config();
    assert_eq!(
        code_of(&cfg, &Req::ws("/console".into())),
        Code::MissingToken
    );
    assert_eq!(
        code_of(&cfg, &Req::ws("/console?tok=1".into())),
        Code::MissingToken
    );
    assert_eq!(Code::MissingToken.status(), 401);
}

#[test]
fn row_malformed_token() {
    let cfg = config();
    let token = sign(&key(), claims().to_string().as_bytes());
    for path in [
        format!("/console?token={token}&token={token}"),
        format!("/console?token={}", "a".repeat(4097)),
        "/console?token=not-a-jws".to_string(),
        format!("/console?token={}", token.replace('.', "%2E")),
    ] {
        assert_eq!(
            code_of(&cfg, &Req::ws(path.clone())),
            Code::MalformedToken,
            "{path:.80}"
        );
    }
    // Signed but not the contract: no exp, no jti, claims not an object.
    for bad in [
        with(json!({"exp": null})),
        with(json!({"jti": null})),
        with(json!({"jti": "x".repeat(129)})),
    ] {
        assert_eq!(
            code_of(&cfg, &Req::ws(link(&bad))),
            Code::MalformedToken,
            "{bad}"
        );
    }
    let array = format!("/console?token={}", sign(&key(), b"[1,2]"));
    assert_eq!(code_of(&cfg, &Req::ws(array)), Code::MalformedToken);
    assert_eq!(Code::MalformedToken.status(), 400);
}

#[test]
fn row_bad_signature() {
    let cfg = config();
    let other = Key::new(
        Some("k1".into()),
        Alg::HS256,
        b"another-secret-another-secret-another",
    )
    .unwrap();
    let forged = format!(
        "/console?token={}",
        sign(&other, claims().to_string().as_bytes())
    );
    assert_eq!(code_of(&cfg, &Req::ws(forged)), Code::BadSignature);
    let unknown_kid = Key::new(Some("k2".into()), Alg::HS256, SECRET).unwrap();
    let p = format!(
        "/console?token={}",
        sign(&unknown_kid, claims().to_string().as_bytes())
    );
    assert_eq!(code_of(&cfg, &Req::ws(p)), Code::BadSignature);
    let wrong_alg = sign_with_header(
        &key(),
        br#"{"alg":"HS512","kid":"k1"}"#,
        claims().to_string().as_bytes(),
    );
    assert_eq!(
        code_of(&cfg, &Req::ws(format!("/console?token={wrong_alg}"))),
        Code::BadSignature
    );
    let refusal = Req::ws(format!("/console?token={wrong_alg}")).decide(&cfg, NOW);
    let Decision::Refuse(r) = refusal else {
        panic!()
    };
    assert_eq!(r.audit.kid.as_deref(), Some("k1"), "kid labels the refusal");
    assert_eq!(r.audit.jti, None, "unverified claims are not logged");
}

#[test]
fn row_expired_with_skew() {
    let cfg = config();
    let c = with(json!({"exp": NOW - 31, "iat": NOW - 100}));
    assert_eq!(code_of(&cfg, &Req::ws(link(&c))), Code::Expired);
    let within_skew = with(json!({"exp": NOW - 29, "iat": NOW - 100}));
    assert_eq!(code_of(&cfg, &Req::ws(link(&within_skew))), Code::Admitted);
    let boundary = with(json!({"exp": NOW - 30, "iat": NOW - 100}));
    assert_eq!(code_of(&cfg, &Req::ws(link(&boundary))), Code::Expired);
}

#[test]
fn row_not_yet_valid() {
    let cfg = config();
    assert_eq!(
        code_of(&cfg, &Req::ws(link(&with(json!({"nbf": NOW + 31}))))),
        Code::NotYetValid
    );
    assert_eq!(
        code_of(&cfg, &Req::ws(link(&with(json!({"nbf": NOW + 29}))))),
        Code::Admitted
    );
    assert_eq!(
        code_of(&cfg, &Req::ws(link(&with(json!({"iat": NOW + 31}))))),
        Code::NotYetValid
    );
}

#[test]
fn row_ttl_too_long() {
    let cfg = config();
    assert_eq!(
        code_of(
            &cfg,
            &Req::ws(link(&with(json!({"exp": NOW + 7 * 86400, "iat": null}))))
        ),
        Code::TtlTooLong
    );
    assert_eq!(
        code_of(
            &cfg,
            &Req::ws(link(&with(json!({"exp": NOW + 301, "iat": NOW - 10}))))
        ),
        Code::TtlTooLong
    );
    assert_eq!(
        code_of(
            &cfg,
            &Req::ws(link(&with(json!({"exp": NOW + 300, "iat": NOW}))))
        ),
        Code::Admitted
    );
    assert_eq!(
        code_of(
            &cfg,
            &Req::ws(link(&with(json!({"exp": 1e300, "iat": null}))))
        ),
        Code::TtlTooLong
    );
}

#[test]
fn rows_audience_and_issuer() {
    let cfg =
        config_with(json!({"audience": "console.example.com", "issuer": "portal.example.com"}));
    let good = with(json!({"aud": ["x", "console.example.com"], "iss": "portal.example.com"}));
    assert_eq!(code_of(&cfg, &Req::ws(link(&good))), Code::Admitted);
    let single = with(json!({"aud": "console.example.com", "iss": "portal.example.com"}));
    assert_eq!(code_of(&cfg, &Req::ws(link(&single))), Code::Admitted);
    for bad in [
        with(json!({"aud": "other", "iss": "portal.example.com"})),
        with(json!({"iss": "portal.example.com"})),
    ] {
        assert_eq!(code_of(&cfg, &Req::ws(link(&bad))), Code::WrongAudience);
    }
    let iss = with(json!({"aud": "console.example.com", "iss": "evil"}));
    assert_eq!(code_of(&cfg, &Req::ws(link(&iss))), Code::WrongIssuer);
    let no_iss = with(json!({"aud": "console.example.com"}));
    assert_eq!(code_of(&cfg, &Req::ws(link(&no_iss))), Code::WrongIssuer);
    // Unset audience/issuer: not checked.
    assert_eq!(
        code_of(
            &config(),
            &Req::ws(link(&with(json!({"aud": "any", "iss": "any"}))))
        ),
        Code::Admitted
    );
}

#[test]
fn row_bad_target() {
    let cfg = config();
    for patch in [
        json!({"ticket": "../admin"}),
        json!({"ticket": "a/b"}),
        json!({"ticket": "a?x=1"}),
        json!({"ticket": ""}),
        json!({"ticket": "x".repeat(257)}),
        json!({"ticket": 5}),
        json!({"ticket": null}),
        json!({"host": "vesxi01.sec.lab."}),
        json!({"host": "user@vesxi01.sec.lab"}),
        json!({"host": "vesxi01.sec.lab:443"}),
        json!({"host": "vesxi01.sec.lab#x"}),
        json!({"host": "vesxi01%2esec.lab"}),
        json!({"host": ["vesxi01.sec.lab"]}),
        json!({"host": null}),
        json!({"port": 0}),
        json!({"port": 65536}),
        json!({"port": "44x"}),
        json!({"port": -1}),
        json!({"url": "wss://vesxi01.sec.lab/ticket/abc"}),
    ] {
        assert_eq!(
            code_of(&cfg, &Req::ws(link(&with(patch.clone())))),
            Code::BadTarget,
            "{patch}"
        );
    }
    let url_and_port = with(
        json!({"host": null, "ticket": null, "url": "wss://vesxi01.sec.lab/ticket/a", "port": 1}),
    );
    assert_eq!(
        code_of(&cfg, &Req::ws(link(&url_and_port))),
        Code::BadTarget
    );
}

#[test]
fn row_host_not_allowed() {
    let cfg = config();
    for host in [
        "vesxi02.sec.lab",
        "esxi.example.com",
        "evil.com",
        "10.0.0.10",
        "127.0.0.1",
        "esxi.example.com.evil.com",
        "VESXI01.sec.lab.evil",
    ] {
        assert_eq!(
            code_of(&cfg, &Req::ws(link(&with(json!({"host": host}))))),
            Code::HostNotAllowed,
            "{host}"
        );
    }
    // Case is folded, so the allowlist still matches.
    assert_eq!(
        code_of(
            &cfg,
            &Req::ws(link(&with(json!({"host": "VESXI01.Sec.Lab"}))))
        ),
        Code::Admitted
    );
}

#[test]
fn row_origin_not_allowed() {
    let cfg = config_with(json!({"allowed_origins": ["https://portal.example.com"]}));
    let ok = Req::ws(link(&claims())).header("origin", "https://Portal.example.com");
    assert_eq!(code_of(&cfg, &ok), Code::Admitted);
    for req in [
        Req::ws(link(&claims())),
        Req::ws(link(&claims())).header("origin", "https://evil.example.com"),
        Req::ws(link(&claims()))
            .header("origin", "https://portal.example.com")
            .header("origin", "https://evil.example.com"),
        Req::ws(link(&claims())).header("origin", "null"),
    ] {
        assert_eq!(code_of(&cfg, &req), Code::OriginNotAllowed);
    }
    // The origin claim binds the link to one origin, with or without config.
    let bound = with(json!({"origin": "https://a.example.com"}));
    let open = config();
    assert_eq!(
        code_of(
            &open,
            &Req::ws(link(&bound)).header("origin", "https://a.example.com")
        ),
        Code::Admitted
    );
    assert_eq!(
        code_of(
            &open,
            &Req::ws(link(&bound)).header("origin", "https://b.example.com")
        ),
        Code::OriginNotAllowed
    );
    assert_eq!(
        code_of(&open, &Req::ws(link(&bound))),
        Code::OriginNotAllowed
    );
    // No origin checks configured and no claim: not checked.
    assert_eq!(
        code_of(
            &open,
            &Req::ws(link(&claims())).header("origin", "https://anything")
        ),
        Code::Admitted
    );
}

#[test]
fn row_client_not_allowed() {
    let cfg = config();
    assert_eq!(
        code_of(&cfg, &Req::ws(link(&with(json!({"ip": "192.0.2.0/24"}))))),
        Code::Admitted
    );
    assert_eq!(
        code_of(&cfg, &Req::ws(link(&with(json!({"ip": "192.0.2.10"}))))),
        Code::Admitted
    );
    assert_eq!(
        code_of(
            &cfg,
            &Req::ws(link(&with(json!({"ip": "198.51.100.0/24"}))))
        ),
        Code::ClientNotAllowed
    );
    let mut no_client = Req::ws(link(&with(json!({"ip": "192.0.2.10"}))));
    no_client.client = None;
    assert_eq!(code_of(&cfg, &no_client), Code::ClientNotAllowed);
    assert_eq!(
        code_of(&cfg, &Req::ws(link(&with(json!({"ip": "not-an-ip"}))))),
        Code::MalformedToken
    );
    let mut v6 = Req::ws(link(&with(json!({"ip": "2001:db8::/32"}))));
    v6.client = Some("[2001:db8::5]:4000");
    assert_eq!(code_of(&cfg, &v6), Code::Admitted);
}

#[test]
fn row_replayed_is_decided_with_the_store() {
    // An admission is applied only through `commit`, which claims the jti:
    // the second use of the same link is refused there.
    let cfg = config();
    let store = crate::replay::tests_support::EnvoyLikeStore::default();
    let path = link(&claims());
    let Decision::Admit(first) = Req::ws(path.clone()).decide(&cfg, NOW) else {
        panic!()
    };
    let Commit::Apply(rewrite) = first.commit(&store, NOW) else {
        panic!("the first use was refused")
    };
    assert_eq!(
        (
            rewrite.cluster.as_ref(),
            rewrite.path.as_str(),
            rewrite.authority.as_str()
        ),
        ("esxi_vesxi01", "/ticket/52-ab.cd_ef~9", "vesxi01.sec.lab")
    );
    assert_eq!(rewrite.audit.jti.as_deref(), Some("j-1"));
    let Decision::Admit(again) = Req::ws(path).decide(&cfg, NOW) else {
        panic!()
    };
    let audit = again.audit().clone();
    let Commit::Refuse(refusal) = again.commit(&store, NOW) else {
        panic!("the second use was admitted")
    };
    assert_eq!((refusal.code, refusal.audit), (Code::Replayed, audit));
    assert_eq!(Code::Replayed.status(), 403);
    // With one-time links off, no jti is needed, none is handed out, and
    // commit touches no store.
    let off = config_with(json!({"one_time_links": false}));
    let Decision::Admit(a) = Req::ws(link(&with(json!({"jti": null})))).decide(&off, NOW) else {
        panic!()
    };
    assert_eq!(a.one_time(), None);
    struct NoStore;
    impl crate::replay::SharedStore for NoStore {
        fn get(
            &self,
            _: &str,
        ) -> Result<(Option<Vec<u8>>, Option<u32>), crate::replay::StoreUnavailable> {
            panic!("commit asked the store with one-time links off")
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), crate::replay::SetError> {
            panic!("commit wrote the store with one-time links off")
        }
    }
    assert!(matches!(a.commit(&NoStore, NOW), Commit::Apply(_)));
}

/// A client never steers routing: outside the prefix the decision says to
/// strip the client's cluster header whenever one was sent.
#[test]
fn pass_through_says_whether_to_strip_the_cluster_header() {
    let cfg = config();
    let decide_with = |headers: &[(&[u8], &[u8])]| {
        let facts = RequestFacts::from_header_bytes(
            headers.iter().copied(),
            &cfg.upstreams.cluster_header,
            None,
        );
        match decide(&cfg, &facts, NOW) {
            Decision::PassThrough {
                strip_cluster_header,
            } => strip_cluster_header,
            other => panic!("{other:?}"),
        }
    };
    assert!(!decide_with(&[(b":path", b"/healthz")]));
    for value in [&b"esxi_vesxi01"[..], b"", b"\xff"] {
        assert!(decide_with(&[
            (b":path", b"/healthz"),
            (b"x-mksgate-cluster", value)
        ]));
    }
}

#[test]
fn custom_prefix_param_and_ticket_path() {
    let cfg = config_with(
        json!({"path_prefix": "/mks", "token_param": "t", "ticket_path": "/webmks/{ticket}/ws"}),
    );
    let token = sign(&key(), claims().to_string().as_bytes());
    let Decision::Admit(a) = Req::ws(format!("/mks/?a=1&t={token}")).decide(&cfg, NOW) else {
        panic!()
    };
    assert_eq!(a.path, "/webmks/52-ab.cd_ef~9/ws");
    assert!(matches!(
        Req::ws(format!("/console?token={token}")).decide(&cfg, NOW),
        Decision::PassThrough { .. }
    ));
}

/// The deterministic twin of the property test below, so the same promise
/// is also checked compiled to wasm: every byte of a token, changed to each
/// of a few other values, is refused.
#[test]
fn every_changed_byte_is_refused_sweep() {
    let cfg = config();
    let token = sign(&key(), claims().to_string().as_bytes());
    let original = token.as_bytes();
    for i in 0..original.len() {
        for replacement in [b'A', b'g', b'0', b'-', b'_', b'.', b'=', b'~'] {
            if original[i] == replacement {
                continue;
            }
            let mut bytes = original.to_vec();
            bytes[i] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            let code = code_of(&cfg, &Req::ws(format!("/console?token={changed}")));
            assert_ne!(
                code,
                Code::Admitted,
                "byte {i} -> {} admitted",
                replacement as char
            );
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_then_decide_round_trips(
        ticket in "[A-Za-z0-9._~-]{1,64}",
        host in "[a-z][a-z0-9-]{0,20}[a-z0-9]",
        port in 1u16..,
        ttl in 1i64..300,
        jti in "[A-Za-z0-9-]{1,40}",
    ) {
        prop_assume!(ticket != "." && ticket != "..");
        let cfg = config();
        let c = json!({"exp": NOW + ttl, "jti": jti, "host": format!("{host}.esxi.example.com"), "port": port, "ticket": ticket});
        let Decision::Admit(a) = Req::ws(link(&c)).decide(&cfg, NOW) else { panic!("refused {c}") };
        prop_assert_eq!(a.path, format!("/ticket/{ticket}"));
        prop_assert_eq!(a.cluster, "esxi_dynamic");
    }

    #[test]
    fn any_changed_byte_is_refused(index in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let cfg = config();
        let token = sign(&key(), claims().to_string().as_bytes());
        let mut bytes = token.into_bytes();
        let i = index.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        // Keep it a valid query string; the bytes that cannot be are refused
        // before any decoding.
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        let code = code_of(&cfg, &Req::ws(format!("/console?token={changed}")));
        prop_assert_ne!(code, Code::Admitted, "changed byte {} admitted", i);
    }

    #[test]
    fn decide_never_panics_on_arbitrary_paths(path in "\\PC{0,300}", client in proptest::option::of("\\PC{0,40}")) {
        let cfg = config();
        let full = format!("/console?{path}");
        let facts = RequestFacts {
            method: "GET",
            path: &full,
            upgrade: crate::request::HeaderValue::One("websocket"),
            connection_upgrade: true,
            origin: crate::request::HeaderValue::Absent,
            client: client.as_deref(),
            ..Default::default()
        };
        let _ = decide(&cfg, &facts, NOW);
    }
}

#[test]
fn a_deferred_admission_is_applied_only_when_the_store_recorded_it() {
    use crate::etcd::{Failure, Outcome};
    let c = config();
    let outcomes = [
        (Outcome::Recorded, None),
        (Outcome::Replayed, Some(Code::Replayed)),
        (
            Outcome::Unavailable(Failure::Timeout),
            Some(Code::ReplayUnavailable),
        ),
        (
            Outcome::Unavailable(Failure::Error),
            Some(Code::ReplayUnavailable),
        ),
    ];
    for (outcome, refused) in outcomes {
        let Decision::Admit(admission) = Req::ws(link(&claims())).decide(&c, NOW) else {
            panic!("not admitted");
        };
        let Deferred::Wait(pending) = admission.defer() else {
            panic!("one-time links are on");
        };
        assert_eq!(
            pending.one_time().remember_until,
            NOW + 60 + c.clock_skew_seconds
        );
        match (pending.settle(outcome), refused) {
            (Commit::Apply(rewrite), None) => {
                assert_eq!(rewrite.cluster, "esxi_vesxi01");
                assert!(rewrite.path.starts_with("/ticket/"));
            }
            (Commit::Refuse(refusal), Some(code)) => assert_eq!(refusal.code, code),
            (other, want) => panic!("{outcome:?}: {other:?}, wanted {want:?}"),
        }
    }
}

#[test]
fn without_rewrite_authority_the_rewrite_says_so_and_keeps_the_host() {
    let mut upstreams = json!({"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}});
    upstreams["rewrite_authority"] = json!(false);
    let c = config_with(json!({ "upstreams": upstreams }));
    let Decision::Admit(admission) = Req::ws(link(&claims())).decide(&c, NOW) else {
        panic!("not admitted");
    };
    let store = crate::replay::tests_support::EnvoyLikeStore::default();
    let Commit::Apply(rewrite) = admission.commit(&store, NOW) else {
        panic!("refused");
    };
    assert!(!rewrite.set_authority);
    assert_eq!(rewrite.authority, "vesxi01.sec.lab");
    assert!(config().upstreams.rewrite_authority);
}

/// A console's lifetime: a `console_exp` already past (beyond the skew) is
/// `console_expired` before the link is spent; otherwise the admission
/// carries its close, the earlier of `console_exp` and
/// `max_console_seconds` after now.
#[test]
fn row_console_expired_and_the_close_of_an_admission() {
    use crate::lifetime::{Close, EndReason};
    let cfg = config();
    let past = with(json!({"console_exp": NOW - 31}));
    assert_eq!(code_of(&cfg, &Req::ws(link(&past))), Code::ConsoleExpired);
    assert_eq!(Code::ConsoleExpired.status(), 403);
    let close_of = |cfg: &Config, claims: &Value| match Req::ws(link(claims)).decide(cfg, NOW) {
        Decision::Admit(a) => a.close(),
        other => panic!("{:?}", other.code()),
    };
    assert_eq!(close_of(&cfg, &claims()), None);
    let soon = with(json!({"console_exp": NOW + 3}));
    let by_link = Some(Close {
        at: NOW + 3,
        reason: EndReason::ConsoleExp,
    });
    assert_eq!(close_of(&cfg, &soon), by_link);
    // Within the skew, a console_exp just past still admits (and closes at once).
    assert!(close_of(&cfg, &with(json!({"console_exp": NOW - 29}))).is_some());
    let capped = config_with(json!({"max_console_seconds": 60}));
    assert_eq!(
        close_of(&capped, &claims()),
        Some(Close {
            at: NOW + 60,
            reason: EndReason::MaxConsole
        })
    );
    assert_eq!(close_of(&capped, &soon), by_link, "the earlier wins");
    for bad in [json!(0), json!(604_801), json!("60")] {
        let mut c = json!({
            "keys": [{"kid": "k1", "alg": "HS256", "secret_base64url": crate::jws::encode_secret(SECRET)}],
            "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}}
        });
        c["max_console_seconds"] = bad;
        let e = Config::parse(c.to_string().as_bytes(), &|_| None).unwrap_err();
        assert_eq!(e.field, "max_console_seconds");
    }
}
