//! Wrong decisions and bad diagnostics found by the fuzzers in `fuzz/` and
//! the properties in `tests/properties.rs`, each reduced to its input and
//! kept to guard its fix. (Both below were fixed in 2fe842c; the fuzz seed
//! corpus holds the same inputs: `decide/token-shape-empty-then-signed`,
//! `config/unknown-root-field-empty-name`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Like the unit tests, these also run compiled to wasm32 under Node.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use mksgate_core::code::Code;
use mksgate_core::config::Config;
use mksgate_core::decision::decide;
use mksgate_core::jws::{self, Alg, Key};
use mksgate_core::request::{token_param, HeaderValue, RequestFacts, TokenParam};
use serde_json::json;

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"fuzz-secret-one-0123456789abcdef-0123456";

fn config() -> Config {
    let text = json!({
        "keys": [{"kid": "k1", "alg": "HS256", "secret_base64url": jws::encode_secret(SECRET)}],
        "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}}
    });
    Config::parse(text.to_string().as_bytes(), &|_| None).unwrap()
}

fn valid_token() -> String {
    let key = Key::new(Some("k1".into()), Alg::HS256, SECRET).unwrap();
    let claims = json!({"exp": NOW + 60, "jti": "j-1", "host": "vesxi01.sec.lab", "ticket": "t"});
    jws::sign(&key, claims.to_string().as_bytes())
}

fn code_for(path: &str) -> Option<Code> {
    let facts = RequestFacts {
        method: "GET",
        path,
        upgrade: HeaderValue::One("websocket"),
        connection_upgrade: true,
        origin: HeaderValue::Absent,
        client: Some("192.0.2.10:5000"),
        ..Default::default()
    };
    decide(&config(), &facts, NOW).code()
}

/// Found by the `decide` fuzz target (TokenChoice::EmptyThenSigned).
/// `?token=&token=<valid>` was admitted while `?token=<valid>&token=` was
/// refused as `malformed_token`: `token_param` ignored an empty occurrence
/// only when it came first. The README counts a token given twice as
/// malformed; a reader that takes the first value (a WAF, a log pipeline, an
/// older gateway) sees an empty token where mksgate admitted one.
#[test]
fn token_param_given_twice_is_malformed_whichever_is_empty() {
    let token = valid_token();
    assert_eq!(
        code_for(&format!("/console?token={token}")),
        Some(Code::Admitted)
    );
    assert_eq!(
        code_for(&format!("/console?token={token}&token=")),
        Some(Code::MalformedToken)
    );
    assert_eq!(
        code_for(&format!("/console?token=&token={token}")),
        Some(Code::MalformedToken),
        "an empty token parameter before the real one must not be skipped"
    );
    assert_eq!(
        token_param("/c?token=&token=a", "token"),
        TokenParam::Repeated
    );
    assert_eq!(token_param("/c?token", "token"), TokenParam::Missing);
}

/// Found by the `config` fuzz target: an unknown root member whose name is
/// empty gave field "" and the message ": unknown field (known: ...)",
/// which names no field.
#[test]
fn unknown_field_with_an_empty_name_is_still_named() {
    let text = json!({
        "": 1,
        "keys": [{"alg": "HS256", "secret_base64url": jws::encode_secret(SECRET)}],
        "upstreams": {"hosts": {"vesxi01.sec.lab": "c"}}
    });
    let error = Config::parse(text.to_string().as_bytes(), &|_| None).unwrap_err();
    assert!(!error.field.is_empty(), "unnamed field: {error}");
    assert!(!error.to_string().starts_with(':'), "{error}");
}
