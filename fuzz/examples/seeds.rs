//! Writes the committed seed corpus, fuzz/corpus/<target>/, from scratch:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! token: valid links under each key and every rejection shape. config: the
//! shipped example, the fixed configs, and one config per error class.
//! decide: structured inputs found by a seeded (deterministic) search over
//! sparse byte strings, kept per decision they reach, so every decision code
//! (admitted in each target form, and each refusal) has seeds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arbitrary::{Arbitrary, Unstructured};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mksgate_core::jws::{self, Alg, Key};
use mksgate_core::{decide, Decision};
use mksgate_fuzz::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn reset(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

fn token_seeds(dir: &Path) {
    let k1 = key_1();
    let k2 = key_2();
    let claims = json!({"exp": NOW + 60, "iat": NOW, "jti": "j-1", "host": "vesxi01.sec.lab", "ticket": "52-ab.cd_ef~9", "aud": "console.example.com", "iss": "portal.example.com"}).to_string();
    let url_claims =
        json!({"exp": NOW + 60, "jti": "j-2", "url": "wss://x.esxi.example.com:8443/ticket/abc"})
            .to_string();
    let good = jws::sign(&k1, claims.as_bytes());
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let b64 = |t: &str| URL_SAFE_NO_PAD.encode(t);
    let with_header =
        |header: &str| jws::sign_with_header(&k1, header.as_bytes(), claims.as_bytes());
    let seeds: Vec<(&str, String)> = vec![
        ("valid-k1-hs256", good.clone()),
        ("valid-k2-hs512", jws::sign(&k2, claims.as_bytes())),
        ("valid-k1-url", jws::sign(&k1, url_claims.as_bytes())),
        (
            "valid-typ-lowercase",
            with_header(r#"{"alg":"HS256","typ":"jwt","kid":"k1"}"#),
        ),
        ("valid-empty-claims", jws::sign(&k1, b"{}")),
        ("alg-none", with_header(r#"{"alg":"none","kid":"k1"}"#)),
        (
            "alg-none-unsigned",
            format!("{}.{p}.", b64(r#"{"alg":"none","kid":"k1"}"#)),
        ),
        (
            "alg-hs512-on-k1",
            with_header(r#"{"alg":"HS512","kid":"k1"}"#),
        ),
        ("alg-rs256", with_header(r#"{"alg":"RS256","kid":"k1"}"#)),
        (
            "alg-lowercase",
            with_header(r#"{"alg":"hs256","kid":"k1"}"#),
        ),
        ("kid-unknown", with_header(r#"{"alg":"HS256","kid":"k9"}"#)),
        ("kid-missing", with_header(r#"{"alg":"HS256"}"#)),
        ("kid-number", with_header(r#"{"alg":"HS256","kid":1}"#)),
        (
            "crit",
            with_header(r#"{"alg":"HS256","kid":"k1","crit":["exp"]}"#),
        ),
        (
            "typ-jose",
            with_header(r#"{"alg":"HS256","kid":"k1","typ":"JOSE"}"#),
        ),
        (
            "header-duplicate-alg",
            with_header(r#"{"alg":"none","alg":"HS256","kid":"k1"}"#),
        ),
        ("header-array", with_header(r#"["HS256"]"#)),
        ("header-not-json", with_header("HS256")),
        (
            "forged-mac",
            format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode([0u8; 32])),
        ),
        (
            "forged-foreign-key",
            jws::sign(
                &Key::new(Some("k1".into()), Alg::HS256, FOREIGN).unwrap(),
                claims.as_bytes(),
            ),
        ),
        ("sig-padded", format!("{good}=")),
        ("sig-truncated", good[..good.len() - 1].to_string()),
        (
            "sig-standard-b64",
            format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/")),
        ),
        ("payload-swapped", format!("{h}.{}.{s}", b64(&url_claims))),
        ("four-segments", format!("{good}.x")),
        ("two-segments", format!("{h}.{p}")),
        ("empty-header", format!(".{p}.{s}")),
        ("too-long", format!("{h}.{}.{s}", "A".repeat(4096))),
        ("whitespace", format!(" {good}")),
        // `!` mode: header JSON, 0xff, claims JSON; signed with k1 by the target.
        (
            "signed-mode-standard",
            "!".to_string() + r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"# + "\u{ff}" + &claims,
        ),
        (
            "signed-mode-none",
            "!".to_string() + r#"{"alg":"none","kid":"k1"}"# + "\u{ff}" + &claims,
        ),
        (
            "signed-mode-crit",
            "!".to_string() + r#"{"alg":"HS256","kid":"k1","crit":[]}"# + "\u{ff}{}",
        ),
    ];
    for (name, token) in seeds {
        // `\u{ff}` above is one char; the target splits on the byte 0xff.
        let bytes: Vec<u8> = if name.starts_with("signed-mode") {
            token
                .chars()
                .map(|c| if c == '\u{ff}' { 0xff } else { c as u8 })
                .collect()
        } else {
            token.into_bytes()
        };
        write(dir, name, &bytes);
    }
}

fn config_seeds(dir: &Path) {
    let secret = jws::encode_secret(SECRET_1);
    let base = || {
        json!({
            "keys": [{"kid": "k1", "alg": "HS256", "secret_base64url": secret}],
            "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}}
        })
    };
    let patch = |path: &[&str], value: serde_json::Value| {
        let mut c = base();
        let mut at = &mut c;
        for (i, p) in path.iter().enumerate() {
            if i + 1 == path.len() {
                at[*p] = value.clone();
            } else {
                at = &mut at[*p];
            }
        }
        c.to_string()
    };
    let readme = json!({
      "keys": [
        {"kid": "2026-11", "alg": "HS256", "secret_env": "MKSGATE_KEY"},
        {"kid": "2026-10", "alg": "HS256", "secret_base64url": secret}
      ],
      "path_prefix": "/console",
      "token_param": "token",
      "audience": "console.example.com",
      "issuer": "portal.example.com",
      "clock_skew_seconds": 30,
      "max_ttl_seconds": 300,
      "one_time_links": true,
      "allowed_origins": ["https://portal.example.com"],
      "upstreams": {
        "cluster_header": "x-mksgate-cluster",
        "hosts": {"vesxi01.sec.lab": "esxi_vesxi01"},
        "host_suffixes": {".esxi.example.com": "esxi_dynamic"}
      },
      "ticket_path": "/ticket/{ticket}"
    });
    let seeds: Vec<(&str, String)> = vec![
        ("ok-readme-example", readme.to_string()),
        ("ok-strict", strict_config_json()),
        ("ok-lenient", lenient_config_json()),
        ("ok-minimal", base().to_string()),
        (
            "ok-env-key",
            patch(
                &["keys"],
                json!([{"alg": "HS512", "secret_env": "MKSGATE_KEY"}]),
            ),
        ),
        (
            "env-short",
            patch(
                &["keys"],
                json!([{"alg": "HS256", "secret_env": "MKSGATE_SHORT"}]),
            ),
        ),
        (
            "env-not-base64",
            patch(
                &["keys"],
                json!([{"alg": "HS256", "secret_env": "MKSGATE_BAD"}]),
            ),
        ),
        (
            "env-unset",
            patch(&["keys"], json!([{"alg": "HS256", "secret_env": "NOPE"}])),
        ),
        (
            "env-and-inline",
            patch(
                &["keys"],
                json!([{"alg": "HS256", "secret_env": "MKSGATE_KEY", "secret_base64url": secret}]),
            ),
        ),
        ("key-no-secret", patch(&["keys"], json!([{"alg": "HS256"}]))),
        (
            "key-short-inline",
            patch(
                &["keys"],
                json!([{"alg": "HS256", "secret_base64url": "c2hvcnQ"}]),
            ),
        ),
        (
            "key-alg-none",
            patch(
                &["keys"],
                json!([{"alg": "none", "secret_base64url": secret}]),
            ),
        ),
        (
            "key-alg-missing",
            patch(&["keys"], json!([{"secret_base64url": secret}])),
        ),
        (
            "key-duplicate-kid",
            patch(
                &["keys"],
                json!([{"kid": "a", "alg": "HS256", "secret_base64url": secret}, {"kid": "a", "alg": "HS256", "secret_base64url": secret}]),
            ),
        ),
        (
            "key-two-without-kid",
            patch(
                &["keys"],
                json!([{"alg": "HS256", "secret_base64url": secret}, {"alg": "HS256", "secret_base64url": secret}]),
            ),
        ),
        (
            "key-unknown-field",
            patch(
                &["keys"],
                json!([{"alg": "HS256", "secret_base64url": secret, "secret": "x"}]),
            ),
        ),
        ("keys-empty", patch(&["keys"], json!([]))),
        ("keys-object", patch(&["keys"], json!({}))),
        (
            "unknown-root-field",
            patch(&["one_time_link"], json!(false)),
        ),
        ("unknown-root-field-empty-name", patch(&[""], json!(1))),
        (
            "path-prefix-trailing-slash",
            patch(&["path_prefix"], json!("/console/")),
        ),
        ("token-param-bad", patch(&["token_param"], json!("to ken"))),
        ("audience-empty", patch(&["audience"], json!(""))),
        ("skew-too-big", patch(&["clock_skew_seconds"], json!(301))),
        ("ttl-float", patch(&["max_ttl_seconds"], json!(1.5))),
        (
            "one-time-string",
            patch(&["one_time_links"], json!("false")),
        ),
        (
            "origins-with-path",
            patch(
                &["allowed_origins"],
                json!(["https://portal.example.com/x"]),
            ),
        ),
        ("origins-empty", patch(&["allowed_origins"], json!([]))),
        (
            "host-uppercase",
            patch(&["upstreams", "hosts"], json!({"VESXI01.sec.lab": "c"})),
        ),
        (
            "host-trailing-dot",
            patch(&["upstreams", "hosts"], json!({"vesxi01.sec.lab.": "c"})),
        ),
        (
            "host-with-port",
            patch(&["upstreams", "hosts"], json!({"vesxi01.sec.lab:443": "c"})),
        ),
        (
            "host-v6-noncanonical",
            patch(&["upstreams", "hosts"], json!({"2001:DB8:0::7": "c"})),
        ),
        (
            "host-bad-cluster",
            patch(&["upstreams", "hosts"], json!({"vesxi01.sec.lab": "a b"})),
        ),
        (
            "suffix-no-dot",
            patch(
                &["upstreams", "host_suffixes"],
                json!({"esxi.example.com": "c"}),
            ),
        ),
        (
            "suffix-uppercase",
            patch(
                &["upstreams", "host_suffixes"],
                json!({".ESXI.example.com": "c"}),
            ),
        ),
        ("upstreams-empty", patch(&["upstreams"], json!({}))),
        (
            "cluster-header-pseudo",
            patch(&["upstreams", "cluster_header"], json!(":authority")),
        ),
        (
            "ticket-path-twice",
            patch(&["ticket_path"], json!("/{ticket}/{ticket}")),
        ),
        (
            "ticket-path-query",
            patch(&["ticket_path"], json!("/ticket/{ticket}?x")),
        ),
        ("not-json", "{\"keys\": [".to_string()),
        ("array-root", "[]".to_string()),
    ];
    for (name, text) in seeds {
        write(dir, name, text.as_bytes());
    }
}

/// xorshift64*: deterministic, so the corpus is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn decide_seeds(dir: &Path) {
    let strict = strict_config();
    let lenient = lenient_config();
    let mut rng = Rng(0x6d6b_7367_6174_6521);
    let mut kept: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let per_class = 3;
    for _ in 0..400_000u32 {
        let len = (rng.next() % 96) as usize;
        // Mostly zeros (the good choice), a few random bytes: small steps
        // away from a valid request.
        let density = 1 + rng.next() % 8;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.next() % 16 < density {
                    rng.next() as u8
                } else {
                    0
                }
            })
            .collect();
        let Ok(input) = DecideInput::arbitrary(&mut Unstructured::new(&bytes)) else {
            continue;
        };
        let config = input.config(&strict, &lenient);
        let request = input.request();
        let facts = request.facts();
        let decision = decide(config, &facts, request.now);
        // The search doubles as a quick stable-toolchain run of the oracle.
        if let Err(why) = oracle::check_decision(config, &facts, request.now, &decision) {
            eprintln!("warning: wrong decision ({why}) for {input:?}");
        }
        if input.must_admit() && !matches!(decision, Decision::Admit(_)) {
            eprintln!(
                "warning: good input refused ({:?}): {input:?}",
                decision.code()
            );
        }
        let mut class = match &decision {
            Decision::PassThrough { .. } => "pass_through".to_string(),
            Decision::Refuse(r) => r.code.as_str().to_string(),
            Decision::Admit(a) => format!(
                "admitted-{}-{}",
                a.cluster(),
                if a.authority().contains(':') {
                    "port"
                } else {
                    "443"
                }
            ),
        };
        if input.lenient {
            class.push_str("-lenient");
        }
        let slot = kept.entry(class).or_default();
        if slot.len() < per_class && !slot.iter().any(|b| b.len() == bytes.len()) {
            slot.push(bytes);
        }
    }
    for (class, inputs) in &kept {
        for (i, bytes) in inputs.iter().enumerate() {
            write(dir, &format!("{class}-{i}"), bytes);
        }
    }
    let names: Vec<String> = kept
        .iter()
        .map(|(c, v)| format!("{c} x{}", v.len()))
        .collect();
    eprintln!("decide seeds: {}", names.join(", "));
}

/// One seed per query shape around the token (absent, empty, raw, twice,
/// empty-then-signed, signed-then-empty), each a single byte away from the
/// valid all-zero input, so everything but the shape is good: these are the
/// inputs where which of several `token=` values counts decides the outcome.
fn token_shape_seeds(dir: &Path) {
    let default_token = SignedToken::arbitrary(&mut Unstructured::new(&[])).unwrap();
    let mut found = std::collections::BTreeSet::new();
    for at in 0..64 {
        for value in 1..=255u8 {
            let mut bytes = vec![0u8; 64];
            bytes[at] = value;
            let Ok(input) = DecideInput::arbitrary(&mut Unstructured::new(&bytes)) else {
                continue;
            };
            let (shape, inner) = match &input.token {
                TokenChoice::Signed(_) => continue,
                TokenChoice::Absent => ("absent", &default_token),
                TokenChoice::Empty => ("empty", &default_token),
                TokenChoice::Raw(_) => ("raw", &default_token),
                TokenChoice::Twice(t) => ("twice", t),
                TokenChoice::EmptyThenSigned(t) => ("empty-then-signed", t),
                TokenChoice::SignedThenEmpty(t) => ("signed-then-empty", t),
            };
            let mut probe = input.clone();
            probe.token = TokenChoice::Signed(inner.clone());
            if probe.must_admit() && found.insert(shape) {
                write(dir, &format!("token-shape-{shape}"), &bytes);
            }
        }
    }
    eprintln!("decide token shapes: {found:?}");
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, make) in [
        ("token", token_seeds as fn(&Path)),
        ("config", config_seeds),
        ("decide", |dir: &Path| {
            decide_seeds(dir);
            token_shape_seeds(dir);
        }),
    ] {
        let dir = root.join(target);
        reset(&dir);
        make(&dir);
        let count = std::fs::read_dir(&dir).unwrap().count();
        eprintln!("{target}: {count} seeds in {}", dir.display());
    }
}
