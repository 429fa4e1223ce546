//! One test per row of the decision table, plus property tests.

mod commit;
mod lifetime;
mod properties;
mod request;
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
