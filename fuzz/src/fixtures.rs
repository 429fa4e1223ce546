//! The fuzz targets' fixed keys and configs, shared with the proptest suite
//! (`core/tests/properties.rs` includes this file with `#[path]`, as it does
//! `oracle.rs`), so both judge the same configuration.

use mksgate_core::config::Config;
use mksgate_core::jws::{self, Alg, Key};
use serde_json::json;

/// The clock the structured inputs are relative to: 2027-01-15.
pub const NOW: i64 = 1_800_000_000;
/// 40 bytes: HS256 needs 32.
pub const SECRET_1: &[u8] = b"fuzz-secret-one-0123456789abcdef-0123456";
/// 64 bytes: HS512 needs 64.
pub const SECRET_2: &[u8] = b"fuzz-secret-two-0123456789abcdef-0123456789abcdef-0123456789abcd";
/// Never configured anywhere: a forger's key.
pub const FOREIGN: &[u8] = b"not-the-gateway-key-0123456789abcdef-0123456789abcdef-0123456789";

pub fn key_1() -> Key {
    Key::new(Some("k1".into()), Alg::HS256, SECRET_1).unwrap()
}

pub fn key_2() -> Key {
    Key::new(Some("k2".into()), Alg::HS512, SECRET_2).unwrap()
}

/// The strict config: two keys, audience, issuer, origins, one-time links,
/// exact hosts (name, IPv4, IPv6) and two nested suffixes.
pub fn strict_config_json() -> String {
    json!({
        "keys": [
            {"kid": "k1", "alg": "HS256", "secret_base64url": jws::encode_secret(SECRET_1)},
            {"kid": "k2", "alg": "HS512", "secret_base64url": jws::encode_secret(SECRET_2)}
        ],
        "audience": "console.example.com",
        "issuer": "portal.example.com",
        "allowed_origins": ["https://portal.example.com", "http://localhost:8080"],
        "upstreams": {
            "hosts": {
                "vesxi01.sec.lab": "esxi_vesxi01",
                "10.0.0.9": "esxi_ip",
                "2001:db8::7": "esxi_v6"
            },
            "host_suffixes": {
                ".esxi.example.com": "esxi_dynamic",
                ".lab.esxi.example.com": "esxi_lab"
            }
        }
    })
    .to_string()
}

/// The lenient config: one key without kid (so any kid selects it), no
/// audience/issuer/origin checks, no one-time links, no skew, long TTL.
pub fn lenient_config_json() -> String {
    json!({
        "keys": [{"alg": "HS256", "secret_base64url": jws::encode_secret(SECRET_1)}],
        "clock_skew_seconds": 0,
        "max_ttl_seconds": 86400,
        "one_time_links": false,
        "path_prefix": "/mks/console",
        "token_param": "t",
        "upstreams": {
            "hosts": {"vesxi01.sec.lab": "esxi_vesxi01"},
            "host_suffixes": {".esxi.example.com": "esxi_dynamic"}
        }
    })
    .to_string()
}

pub fn strict_config() -> Config {
    Config::parse(strict_config_json().as_bytes(), &|_| None).unwrap()
}

pub fn lenient_config() -> Config {
    Config::parse(lenient_config_json().as_bytes(), &|_| None).unwrap()
}
