//! Property tests over the same ground as the cargo-fuzz targets in
//! `fuzz/` (token, config, decide), bounded to run in the normal suite.
//! The invariants are the fuzzers' own: `fuzz/src/oracle.rs`, included here.
//!
//! - arbitrary text never panics `jws::verify`/`peek_kid`, and whatever
//!   verifies is byte-identical to a re-signature (only signed tokens pass);
//!   fuzz-chosen headers signed with a real key verify exactly when the
//!   contract says they should;
//! - arbitrary and JSON-shaped configs never panic `Config::parse`, every
//!   error names its field and none echoes a secret from the environment;
//! - arbitrary request facts with signed tokens over arbitrary claims are
//!   admitted only by the contract (lifetime, audience, issuer, jti, target,
//!   allowlist, origin, client), with a clean path and authority;
//! - every valid (host, port, ticket, ttl, jti) link is admitted with the
//!   exact rewritten path, authority and cluster, in both target forms;
//! - hostile host texts never route outside the allowlist.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../fuzz/src/oracle.rs"]
mod oracle;

use oracle::HOSTILE;

use mksgate_core::code::Code;
use mksgate_core::config::Config;
use mksgate_core::decision::{decide, Decision};
use mksgate_core::jws::{self, Alg, Key, KeySet, Scratch};
use mksgate_core::request::{HeaderValue, RequestFacts};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

#[allow(dead_code)] // the fuzz targets use the rest
#[path = "../../fuzz/src/fixtures.rs"]
mod fixtures;

use fixtures::{key_1, key_2, FOREIGN, NOW, SECRET_2};

const AUDIENCE: &str = "console.example.com";
const ISSUER: &str = "portal.example.com";
const PORTAL: &str = "https://portal.example.com";
const CLIENT: &str = "192.0.2.10:55000";

fn foreign_key() -> Key {
    Key::new(Some("k1".into()), Alg::HS256, FOREIGN).unwrap()
}

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| KeySet::new(vec![key_1(), key_2()]))
}

/// The fuzz targets' strict config (`fuzz/src/fixtures.rs`).
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(fixtures::strict_config)
}

/// 512 cases each; failures are shrunk and printed, not persisted (the
/// minimal input goes into core/tests/regressions.rs by hand).
fn cases() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(512)
    }
}

// ---------------------------------------------------------------------
// Tokens.

fn sample_token() -> String {
    jws::sign(
        &key_1(),
        json!({"exp": NOW + 60, "jti": "j", "host": "vesxi01.sec.lab", "ticket": "t"})
            .to_string()
            .as_bytes(),
    )
}

/// Text near a token: base64url-ish segments, dots, and edits of a real one.
fn token_like() -> impl Strategy<Value = String> {
    let edits = (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        "\\PC{0,4}",
    )
        .prop_map(|(from, to, insert)| {
            let token = sample_token();
            let (mut a, mut b) = (from.index(token.len() + 1), to.index(token.len() + 1));
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            format!("{}{insert}{}", &token[..a], &token[b..])
        });
    prop_oneof![
        "\\PC{0,300}",
        "[A-Za-z0-9_=+/.-]{0,300}",
        "[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,100}",
        vec(any::<u8>(), 0..400).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        edits,
        "[A-Za-z0-9_-]{4090,4100}",
    ]
}

/// A JOSE header built from fuzz-chosen members.
#[derive(Debug, Clone)]
struct HeaderSpec {
    alg: Option<String>,
    kid: Option<Value>,
    typ: Option<Value>,
    crit: Option<Value>,
}

fn header_spec() -> impl Strategy<Value = HeaderSpec> {
    let alg = prop::option::weighted(
        0.95,
        prop_oneof![
            4 => Just("HS256".to_string()),
            1 => Just("HS512".to_string()),
            1 => Just("HS384".to_string()),
            1 => Just("none".to_string()),
            1 => Just("hs256".to_string()),
            1 => Just("RS256".to_string()),
            1 => "\\PC{0,8}",
        ],
    );
    let kid = prop::option::weighted(
        0.8,
        prop_oneof![
            4 => Just(json!("k1")),
            1 => Just(json!("k2")),
            1 => Just(json!("K1")),
            1 => Just(json!("k1 ")),
            1 => Just(Value::Null),
            1 => any::<i32>().prop_map(|n| json!(n)),
            1 => "\\PC{0,8}".prop_map(|s| json!(s)),
        ],
    );
    let typ = prop::option::weighted(
        0.5,
        prop_oneof![
            3 => Just(json!("JWT")),
            1 => Just(json!("jwt")),
            1 => Just(json!("JOSE")),
            1 => Just(Value::Null),
            1 => Just(json!(1)),
        ],
    );
    let crit = prop::option::weighted(
        0.1,
        prop_oneof![Just(json!(["exp"])), Just(json!([])), Just(Value::Null)],
    );
    (alg, kid, typ, crit).prop_map(|(alg, kid, typ, crit)| HeaderSpec {
        alg,
        kid,
        typ,
        crit,
    })
}

impl HeaderSpec {
    fn json(&self) -> String {
        let mut h = Map::new();
        if let Some(a) = &self.alg {
            h.insert("alg".into(), json!(a));
        }
        for (name, value) in [("kid", &self.kid), ("typ", &self.typ), ("crit", &self.crit)] {
            if let Some(v) = value {
                h.insert(name.into(), v.clone());
            }
        }
        Value::Object(h).to_string()
    }

    /// Whether signing with k1 must verify against {k1 HS256, k2 HS512}:
    /// alg exactly HS256, kid exactly k1, typ absent/null or JWT in any
    /// case, crit absent (null counts as absent).
    fn verifies_with_k1(&self) -> bool {
        self.alg.as_deref() == Some("HS256")
            && self.kid == Some(json!("k1"))
            && match &self.typ {
                None | Some(Value::Null) => true,
                Some(Value::String(t)) => t.eq_ignore_ascii_case("JWT"),
                Some(_) => false,
            }
            && matches!(self.crit, None | Some(Value::Null))
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn arbitrary_tokens_never_panic_and_only_signed_ones_verify(token in token_like()) {
        if let Err(why) = oracle::check_token(keys(), &token) {
            panic!("{why}");
        }
    }

    #[test]
    fn signed_headers_verify_exactly_by_the_contract(
        header in header_spec(),
        claims in vec(any::<u8>(), 1..64),
        forged in prop::bool::weighted(0.1),
    ) {
        let key = if forged { foreign_key() } else { key_1() };
        let token = jws::sign_with_header(&key, header.json().as_bytes(), &claims);
        if let Err(why) = oracle::check_token(keys(), &token) {
            panic!("{why}");
        }
        let mut scratch = Scratch::new();
        let result = jws::verify(keys(), &token, &mut scratch);
        prop_assert_eq!(
            result.is_ok(),
            !forged && header.verifies_with_k1(),
            "header {}", header.json()
        );
        if let Ok(v) = result {
            prop_assert_eq!(v.payload, &claims[..]);
            prop_assert_eq!(v.key.kid(), Some("k1"));
        }
    }
}

// ---------------------------------------------------------------------
// Config.

const ENV_GOOD: &str = "R09PRC1zZWNyZXQtZnV6ei1lbnYtMDEyMzQ1Njc4OWFiY2RlZi1HT09ELUdPT0Q";
const ENV_SHORT: &str = "U0hPUlQtc2VjcmV0LWZ1enotZW52";
const ENV_BAD: &str = "NOT*BASE64*secret+fuzz/env=value!";

fn env(name: &str) -> Option<String> {
    match name {
        "MKSGATE_KEY" => Some(ENV_GOOD.to_string()),
        "MKSGATE_SHORT" => Some(ENV_SHORT.to_string()),
        "MKSGATE_BAD" => Some(ENV_BAD.to_string()),
        _ => None,
    }
}

const FIELD_NAMES: &[&str] = &[
    "keys",
    "kid",
    "alg",
    "secret_env",
    "secret_base64url",
    "path_prefix",
    "token_param",
    "audience",
    "issuer",
    "clock_skew_seconds",
    "max_ttl_seconds",
    "one_time_links",
    "allowed_origins",
    "upstreams",
    "cluster_header",
    "hosts",
    "host_suffixes",
    "ticket_path",
    "",
];

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0i64..400).prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        "\\PC{0,24}".prop_map(Value::String),
        prop::sample::select(vec![
            "HS256",
            "HS512",
            "none",
            "MKSGATE_KEY",
            "MKSGATE_SHORT",
            "MKSGATE_BAD",
            "UNSET_VAR",
            "/console",
            "/ticket/{ticket}",
            "vesxi01.sec.lab",
            ".esxi.example.com",
            "https://portal.example.com",
            "x-mksgate-cluster",
            "esxi_cluster",
        ])
        .prop_map(|s| json!(s)),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                4 => prop::sample::select(FIELD_NAMES).prop_map(str::to_string),
                1 => "\\PC{0,12}",
            ];
            prop_oneof![
                vec(inner.clone(), 0..5).prop_map(Value::Array),
                btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

fn good_config() -> Value {
    json!({
        "keys": [
            {"kid": "k1", "alg": "HS256", "secret_env": "MKSGATE_KEY"},
            {"kid": "k2", "alg": "HS512", "secret_base64url": jws::encode_secret(SECRET_2)}
        ],
        "audience": AUDIENCE,
        "allowed_origins": [PORTAL],
        "upstreams": {
            "hosts": {"vesxi01.sec.lab": "esxi_vesxi01"},
            "host_suffixes": {".esxi.example.com": "esxi_dynamic"}
        }
    })
}

/// The good config with one member (at any depth) replaced or added.
fn edited_config() -> impl Strategy<Value = Value> {
    let path = vec(
        prop_oneof![
            3 => prop::sample::select(FIELD_NAMES).prop_map(str::to_string),
            1 => (0usize..3).prop_map(|i| i.to_string()),
        ],
        1..4,
    );
    (path, json_value()).prop_map(|(path, value)| {
        let mut config = good_config();
        let mut at = &mut config;
        for (i, step) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let next = match at {
                Value::Array(items) => match step.parse::<usize>() {
                    Ok(n) if n < items.len() => &mut items[n],
                    _ => break,
                },
                Value::Object(map) if last => {
                    map.insert(step.clone(), value.clone());
                    break;
                }
                Value::Object(map) => map.entry(step.clone()).or_insert(Value::Null),
                _ => break,
            };
            at = next;
        }
        config
    })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn config_parse_never_panics_and_never_echoes_secrets(
        text in prop_oneof![
            2 => edited_config().prop_map(|v| v.to_string().into_bytes()),
            1 => json_value().prop_map(|v| v.to_string().into_bytes()),
            1 => vec(any::<u8>(), 0..200),
            1 => (edited_config(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
                let t = v.to_string().into_bytes();
                t[..cut.index(t.len() + 1)].to_vec()
            }),
        ]
    ) {
        if let Err(why) = oracle::check_config(&text, &env, &[ENV_GOOD, ENV_SHORT, ENV_BAD]) {
            panic!("{why}\n  config: {}", String::from_utf8_lossy(&text));
        }
    }
}

#[test]
fn env_secrets_never_appear_in_errors() {
    for name in ["MKSGATE_SHORT", "MKSGATE_BAD"] {
        for alg in ["HS256", "HS384", "HS512"] {
            let text = json!({"keys": [{"alg": alg, "secret_env": name}], "upstreams": {"hosts": {"a.lab": "c"}}});
            let error = Config::parse(text.to_string().as_bytes(), &env).unwrap_err();
            let shown = error.to_string();
            assert!(shown.starts_with("keys[0].secret_env: "), "{shown}");
            for secret in [ENV_GOOD, ENV_SHORT, ENV_BAD] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }
}

// ---------------------------------------------------------------------
// Decisions.

const LISTED: &[(&str, &str)] = &[
    ("vesxi01.sec.lab", "esxi_vesxi01"),
    ("10.0.0.9", "esxi_ip"),
    ("2001:db8::7", "esxi_v6"),
];

/// The request around a token, owned; `facts()` borrows it as Envoy would.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    upgrade: Hv,
    connection_upgrade: bool,
    origin: Hv,
    client: Option<String>,
}

#[derive(Debug, Clone)]
enum Hv {
    Absent,
    One(String),
    Repeated,
}

impl Hv {
    fn get(&self) -> HeaderValue<'_> {
        match self {
            Hv::Absent => HeaderValue::Absent,
            Hv::One(v) => HeaderValue::One(v),
            Hv::Repeated => HeaderValue::Repeated,
        }
    }
}

impl Req {
    fn good(token: &str) -> Req {
        Req {
            method: "GET".into(),
            path: format!("/console?token={token}"),
            upgrade: Hv::One("websocket".into()),
            connection_upgrade: true,
            origin: Hv::One(PORTAL.into()),
            client: Some(CLIENT.into()),
        }
    }

    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            method: &self.method,
            path: &self.path,
            upgrade: self.upgrade.get(),
            connection_upgrade: self.connection_upgrade,
            origin: self.origin.get(),
            client: self.client.as_deref(),
            ..Default::default()
        }
    }

    fn decide(&self, now: i64) -> Decision<'static> {
        let facts = self.facts();
        let decision = decide(config(), &facts, now);
        if let Err(why) = oracle::check_decision(config(), &facts, now, &decision) {
            panic!("wrong decision: {why}\n  request: {self:?}\n  now: {now}");
        }
        decision
    }
}

/// A claim: absent, its good value, a value near a boundary, or any JSON.
fn claim(good: Value, near: BoxedStrategy<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        16 => Just(Some(good)),
        2 => near.prop_map(Some),
        1 => json_leaf().prop_map(Some),
    ]
}

fn date_near(base: i64) -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (-400i64..400).prop_map(move |d| json!(base + d)),
        1 => (-400.0f64..400.0).prop_map(move |d| json!(base as f64 + d)),
        1 => Just(json!(u64::MAX)),
        1 => Just(json!(i64::MIN)),
        1 => Just(json!(format!("{base}"))),
    ]
    .boxed()
}

fn host_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(LISTED).prop_map(|(h, _)| h.to_string()),
        3 => "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?".prop_map(|l| format!("{l}.esxi.example.com")),
        1 => "[a-z0-9]{1,8}".prop_map(|l| format!("{l}.lab.esxi.example.com")),
        3 => hostile_host(),
    ]
    .boxed()
}

fn ticket_text() -> BoxedStrategy<String> {
    prop_oneof![
        18 => "[A-Za-z0-9._~-]{1,40}",
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => "\\PC{0,20}",
        1 => "[A-Za-z0-9]{1,8}[/?#% ][A-Za-z0-9./]{0,8}",
    ]
    .boxed()
}

fn claims_strategy(now: i64) -> BoxedStrategy<Value> {
    let lifetime = (
        claim(json!(now + 60), date_near(now)),
        claim(json!(now), date_near(now)),
        claim(json!(now - 5), date_near(now)),
    );
    let identity = (
        claim(
            json!(AUDIENCE),
            prop_oneof![
                Just(json!([AUDIENCE, "other"])),
                Just(json!(["other", 7, AUDIENCE])),
                Just(json!(AUDIENCE.to_uppercase())),
                Just(json!([])),
            ]
            .boxed(),
        ),
        claim(
            json!(ISSUER),
            Just(json!("portal.example.com.evil")).boxed(),
        ),
        claim(
            json!("jti-1"),
            prop_oneof![
                Just(json!("")),
                Just(json!("j".repeat(129))),
                Just(json!("j".repeat(128)))
            ]
            .boxed(),
        ),
    );
    let target = (
        0..8u8,
        host_text(),
        prop::option::of(prop_oneof![
            4 => (1u32..=65535).prop_map(|p| json!(p)),
            1 => Just(json!(0)),
            1 => Just(json!(65536)),
            1 => "[0-9]{1,6}".prop_map(|p| json!(p)),
            1 => json_leaf(),
        ]),
        ticket_text(),
    )
        .prop_map(|(form, host, port, ticket)| match form {
            // Host form.
            0..=3 => {
                let mut t = json!({"host": host, "ticket": ticket});
                if let Some(p) = port {
                    t["port"] = p;
                }
                t
            }
            // URL form (bare IPv6 bracketed, as a URL needs).
            4..=6 => {
                let h = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host
                };
                let p = port
                    .map(|p| match p {
                        Value::Number(n) => format!(":{n}"),
                        Value::String(s) => format!(":{s}"),
                        _ => String::new(),
                    })
                    .unwrap_or_default();
                json!({"url": format!("wss://{h}{p}/ticket/{ticket}")})
            }
            // Both forms, or a bare url string.
            _ => json!({"url": format!("wss://{host}/ticket/{ticket}"), "host": host}),
        });
    let bindings = (
        claim(
            json!("192.0.2.10"),
            prop_oneof![
                Just(json!("192.0.2.0/24")),
                Just(json!("192.0.2.1/24")),
                Just(json!("198.51.100.0/24")),
                Just(json!("::ffff:192.0.2.10")),
                Just(json!("0.0.0.0/0")),
                Just(json!("::/0")),
            ]
            .boxed(),
        ),
        claim(
            json!(PORTAL),
            prop_oneof![
                Just(json!("https://portal.example.com.evil.com")),
                Just(json!("HTTPS://PORTAL.EXAMPLE.COM")),
                Just(json!("http://localhost:8080")),
            ]
            .boxed(),
        ),
    );
    (lifetime, identity, target, bindings)
        .prop_map(|((exp, iat, nbf), (aud, iss, jti), target, (ip, origin))| {
            let mut c = target;
            for (name, value) in [
                ("exp", exp),
                ("iat", iat),
                ("nbf", nbf),
                ("aud", aud),
                ("iss", iss),
                ("jti", jti),
                ("ip", ip),
                ("origin", origin),
            ] {
                if let Some(v) = value {
                    c[name] = v;
                }
            }
            c
        })
        .boxed()
}

fn token_for(claims: &Value, variant: u8) -> String {
    let bytes = claims.to_string();
    match variant % 16 {
        0..=11 => jws::sign(&key_1(), bytes.as_bytes()),
        12 | 13 => jws::sign(&key_2(), bytes.as_bytes()),
        14 => jws::sign(&foreign_key(), bytes.as_bytes()),
        _ => jws::sign_with_header(&key_1(), br#"{"alg":"HS256"}"#, bytes.as_bytes()),
    }
}

fn request_strategy() -> BoxedStrategy<(Value, u8, Req, i64)> {
    let now = prop_oneof![
        4 => Just(NOW),
        1 => (-400i64..400).prop_map(|d| NOW + d),
        1 => any::<i64>(),
    ];
    now.prop_flat_map(|now| {
        let req = (
            prop_oneof![24 => Just("GET".to_string()), 1 => Just("POST".to_string()), 1 => "[A-Za-z]{0,6}"],
            prop_oneof![
                24 => Just("/console".to_string()),
                1 => Just("/console/".to_string()),
                1 => Just("/consolex".to_string()),
                1 => "/[a-z/]{0,12}",
            ],
            prop_oneof![
                24 => Just(0u8), // ?token=T
                1 => Just(1u8),  // ?token=T&token=T
                1 => Just(2u8),  // ?x=1&token=T#frag
                1 => Just(3u8),  // ?tokens=T
                1 => Just(4u8),  // ?token=T&token=
                1 => Just(5u8),  // ?token=&token=T
            ],
            prop_oneof![
                24 => Just(Hv::One("websocket".into())),
                1 => Just(Hv::One(" WebSocket ".into())),
                1 => Just(Hv::Absent),
                1 => Just(Hv::Repeated),
                1 => "\\PC{0,10}".prop_map(Hv::One),
            ],
            prop::bool::weighted(0.97),
            prop_oneof![
                24 => Just(Hv::One(PORTAL.into())),
                1 => Just(Hv::One("http://localhost:8080".into())),
                1 => Just(Hv::One("https://PORTAL.example.com".into())),
                1 => Just(Hv::Absent),
                1 => Just(Hv::Repeated),
                1 => "\\PC{0,30}".prop_map(Hv::One),
            ],
            prop_oneof![
                18 => Just(Some(CLIENT.to_string())),
                1 => Just(Some("[::ffff:192.0.2.10]:1".to_string())),
                1 => Just(Some("192.0.2.10".to_string())),
                1 => Just(Some("[2001:db8::1]:443".to_string())),
                1 => Just(None),
                1 => "\\PC{0,20}".prop_map(Some),
            ],
        );
        (claims_strategy(now), any::<u8>(), req.boxed(), Just(now))
    })
    .prop_map(|(claims, variant, (method, path, query, upgrade, connection_upgrade, origin, client), now)| {
        let token = token_for(&claims, variant);
        let query = match query {
            0 => format!("token={token}"),
            1 => format!("token={token}&token={token}"),
            2 => format!("x=1&token={token}#frag"),
            3 => format!("tokens={token}"),
            4 => format!("token={token}&token="),
            _ => format!("token=&token={token}"),
        };
        let req = Req {
            method,
            path: format!("{path}?{query}"),
            upgrade,
            connection_upgrade,
            origin,
            client,
        };
        (claims, variant, req, now)
    })
    .boxed()
}

/// Runs `request_strategy` through the oracle, counting the decisions so
/// the generator provably reaches admissions and most refusals (a generator
/// that only produced refusals would make the oracle vacuous).
#[test]
fn decide_admits_only_by_the_contract() {
    use proptest::test_runner::TestRunner;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    let seen: RefCell<BTreeMap<&'static str, usize>> = RefCell::default();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 2048,
        ..cases()
    });
    runner
        .run(&request_strategy(), |(claims, variant, req, now)| {
            let decision = req.decide(now);
            // Beyond the oracle: a forged link is never admitted.
            if variant % 16 == 14 {
                prop_assert!(
                    !matches!(decision, Decision::Admit(_)),
                    "forged admitted: {}",
                    claims
                );
            }
            let code = decision.code().map_or("pass_through", Code::as_str);
            *seen.borrow_mut().entry(code).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner();
    eprintln!("decisions reached: {seen:?}");
    assert!(seen.get("admitted").copied().unwrap_or(0) >= 30, "{seen:?}");
    assert!(seen.len() >= 12, "{seen:?}");
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn arbitrary_paths_and_clients_never_panic(
        path in "\\PC{0,200}",
        client in prop::option::of("\\PC{0,40}"),
        now in any::<i64>(),
    ) {
        let req = Req {
            path: format!("/console?{path}"),
            client,
            ..Req::good("x")
        };
        req.decide(now);
        let req = Req { path, ..req };
        req.decide(now);
    }
}

// ---------------------------------------------------------------------
// Round trip: every valid link is admitted, exactly rewritten.

#[derive(Debug, Clone)]
enum ValidHost {
    Listed(usize),
    Suffix(String, bool),
}

fn valid_host() -> impl Strategy<Value = ValidHost> {
    prop_oneof![
        (0..LISTED.len()).prop_map(ValidHost::Listed),
        (
            "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,2}",
            any::<bool>()
        )
            .prop_map(|(l, nested)| ValidHost::Suffix(l, nested)),
    ]
}

impl ValidHost {
    /// (claim text, canonical host, cluster)
    fn parts(&self, upper: bool) -> (String, String, &'static str) {
        let (text, canonical, cluster) = match self {
            ValidHost::Listed(i) => (
                LISTED[*i].0.to_string(),
                LISTED[*i].0.to_string(),
                LISTED[*i].1,
            ),
            ValidHost::Suffix(label, nested) => {
                let (suffix, cluster) = if *nested {
                    ("lab.esxi.example.com", "esxi_lab")
                } else {
                    ("esxi.example.com", "esxi_dynamic")
                };
                let name = format!("{label}.{suffix}");
                (name.clone(), name, cluster)
            }
        };
        let text = if upper { text.to_uppercase() } else { text };
        (text, canonical, cluster)
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn every_valid_link_is_admitted_exactly(
        host in valid_host(),
        upper in any::<bool>(),
        port in prop::option::of(1u16..),
        port_as_string in any::<bool>(),
        ticket in "[A-Za-z0-9._~-]{1,64}|[A-Za-z0-9]{256}",
        ttl in 1i64..=300,
        age in 0i64..=30,
        jti in "[ -~]{1,128}",
        url_form in any::<bool>(),
        k2 in any::<bool>(),
    ) {
        prop_assume!(ticket != "." && ticket != "..");
        let (text, canonical, cluster) = host.parts(upper);
        let mut claims = json!({
            "exp": NOW + ttl, "iat": NOW - age.min(300 - ttl).max(0), "nbf": NOW,
            "jti": jti, "aud": [AUDIENCE], "iss": ISSUER, "origin": PORTAL, "ip": "192.0.2.0/24",
        });
        if url_form {
            let h = if text.contains(':') { format!("[{text}]") } else { text.clone() };
            let p = port.map(|p| format!(":{p}")).unwrap_or_default();
            claims["url"] = json!(format!("wss://{h}{p}/ticket/{ticket}"));
        } else {
            claims["host"] = json!(text);
            claims["ticket"] = json!(ticket);
            if let Some(p) = port {
                claims["port"] = if port_as_string { json!(p.to_string()) } else { json!(p) };
            }
        }
        let key = if k2 { key_2() } else { key_1() };
        let token = jws::sign(&key, claims.to_string().as_bytes());
        let Decision::Admit(a) = Req::good(&token).decide(NOW) else {
            panic!("refused: {claims}");
        };
        let host_part = if canonical.contains(':') { format!("[{canonical}]") } else { canonical };
        let authority = match port {
            Some(p) if p != 443 => format!("{host_part}:{p}"),
            _ => host_part,
        };
        prop_assert_eq!(a.path(), format!("/ticket/{ticket}"));
        prop_assert_eq!(a.authority(), authority);
        prop_assert_eq!(a.cluster(), cluster);
        let one = a.one_time().cloned().expect("one-time links are on");
        prop_assert_eq!(one.jti, jti);
        prop_assert_eq!(one.remember_until, NOW + ttl + 30);
    }
}

// ---------------------------------------------------------------------
// Hostile hosts.

fn hostile_host() -> BoxedStrategy<String> {
    let base = prop::sample::select(vec![
        "vesxi01.sec.lab",
        "10.0.0.9",
        "2001:db8::7",
        "x.esxi.example.com",
        "esxi.example.com",
    ]);
    let insert = prop::sample::select(vec![
        "@",
        "#",
        "%",
        "%2e",
        ":443",
        ":8443",
        ".",
        "..",
        "[",
        "]",
        "/",
        "\\",
        "?",
        " ",
        "\t",
        "\n",
        "\u{0}",
        "_",
        "-",
        "evil.com.",
        ".evil.com",
        "evil-",
        "\u{e9}",
        "\u{212a}",
        "\u{ff0e}",
        "\u{3002}",
        "\u{200b}",
    ]);
    prop_oneof![
        3 => prop::sample::select(HOSTILE).prop_map(str::to_string),
        3 => (base.clone(), insert, any::<prop::sample::Index>()).prop_map(|(b, ins, at)| {
            let chars: Vec<char> = b.chars().collect();
            let at = at.index(chars.len() + 1);
            let mut s: String = chars[..at].iter().collect();
            s.push_str(ins);
            s.extend(&chars[at..]);
            s
        }),
        1 => (base, any::<prop::sample::Index>()).prop_map(|(b, at)| {
            // Mixed case: one character upper-cased.
            b.char_indices()
                .map(|(i, c)| if i == at.index(b.len()) { c.to_ascii_uppercase() } else { c })
                .collect()
        }),
        2 => "[a-zA-Z0-9.:@#%\\[\\]_-]{1,30}",
        1 => "\\PC{1,30}",
    ]
    .boxed()
}

/// What the allowlist may route `text` to, read independently: the
/// lower-cased text (brackets dropped for IPv6) when it is one of the
/// listed hosts or a DNS name under a suffix.
fn may_route(text: &str) -> Option<&'static str> {
    let (canonical, is_ip) = oracle::canonical_host(text)?;
    if let Some((_, c)) = LISTED.iter().find(|(h, _)| *h == canonical) {
        return Some(c);
    }
    if is_ip {
        return None;
    }
    if canonical.len() > ".lab.esxi.example.com".len()
        && canonical.ends_with(".lab.esxi.example.com")
    {
        Some("esxi_lab")
    } else if canonical.len() > ".esxi.example.com".len()
        && canonical.ends_with(".esxi.example.com")
    {
        Some("esxi_dynamic")
    } else {
        None
    }
}

fn decide_host(claim_target: Value) -> Decision<'static> {
    let mut claims = json!({"exp": NOW + 60, "jti": "j", "aud": AUDIENCE, "iss": ISSUER});
    for (k, v) in claim_target.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let token = jws::sign(&key_1(), claims.to_string().as_bytes());
    Req::good(&token).decide(NOW)
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn hostile_hosts_never_route_outside_the_allowlist(host in hostile_host(), url_form in any::<bool>()) {
        let target = if url_form {
            json!({"url": format!("wss://{host}/ticket/t")})
        } else {
            json!({"host": host, "ticket": "t"})
        };
        let decision = decide_host(target);
        if let Decision::Admit(a) = &decision {
            let host_part = a.authority().rsplit_once(':')
                .filter(|(h, p)| !h.is_empty() && !p.contains(']') && (!h.contains(':') || h.ends_with(']')))
                .map_or(a.authority(), |(h, _)| h);
            prop_assert_eq!(may_route(host_part), Some(a.cluster()), "{:?} -> {:?}", host, a.authority());
            prop_assert!(
                !host.contains(['@', '#', '%', '/', '\\', '?', ' ', '\t', '\n', '\r', '\0', '_']) && !host.ends_with('.'),
                "{:?} admitted as {:?}", host, a.authority()
            );
        }
    }
}

#[test]
fn listed_hostile_hosts_are_refused() {
    // Inside a URL an explicit port is the URL's own syntax, not part of the
    // host: those three are valid WebMKS URLs for listed hosts.
    let url_ports = [
        "vesxi01.sec.lab:443",
        "vesxi01.sec.lab:8443",
        "10.0.0.9:443",
        "[2001:db8::7]:443",
    ];
    for host in HOSTILE {
        let mut targets = vec![json!({"host": host, "ticket": "t"})];
        if !url_ports.contains(host) {
            targets.push(json!({"url": format!("wss://{host}/ticket/t")}));
        }
        for target in targets {
            let decision = decide_host(target.clone());
            assert!(
                matches!(
                    decision.code(),
                    Some(Code::BadTarget | Code::HostNotAllowed)
                ),
                "{target}: {:?}",
                decision.code()
            );
        }
    }
}
