//! The one link minter of the tests, demo and benchmarks, and the shipped
//! contract's constants (what `envoy/*.yaml`'s plugin configuration expects
//! of links and clients), signed with `core::jws`.

use anyhow::{anyhow, Result};
use mksgate_core::jws::{self, Alg, Key};
use serde_json::{json, Value};

/// The signing key's id and environment variable in the shipped configs.
pub const KID: &str = "2026-11";
pub const KEY_ENV: &str = "MKSGATE_KEY_2026_11";
/// `audience`, `issuer` and `allowed_origins` of the shipped configs.
pub const AUDIENCE: &str = "console.example.com";
pub const ISSUER: &str = "portal.example.com";
pub const ORIGIN: &str = "https://portal.example.com";

/// Claims `base` with `overrides` set at the top level; an override of
/// `null` removes the claim.
pub fn merge(base: &Value, overrides: &Value) -> Value {
    let mut out = base.clone();
    if let (Some(map), Some(over)) = (out.as_object_mut(), overrides.as_object()) {
        for (k, v) in over {
            if v.is_null() {
                map.remove(k);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `n` random bytes (the kernel's; a test needs them unpredictable, not
/// more).
pub fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut out = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut out);
    }
    out
}

/// 16 random bytes as hex: a fresh `jti`.
pub fn fresh_jti() -> String {
    random_bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The claims the shipped config admits for `host` and `ticket`: audience,
/// issuer, a 60 s lifetime from now and a fresh `jti`.
pub fn shipped_claims(host: &str, ticket: &str) -> Value {
    let t = now();
    json!({
        "host": host, "ticket": ticket, "aud": AUDIENCE, "iss": ISSUER,
        "iat": t, "exp": t + 60, "jti": fresh_jti(),
    })
}

/// Signs `claims` with HS256 under `kid`.
pub fn sign_with(secret: &[u8], kid: &str, claims: &Value) -> Result<String> {
    let key = Key::new(Some(kid.to_string()), Alg::HS256, secret)
        .map_err(|e| anyhow!("building the key: {e:?}"))?;
    Ok(jws::sign(&key, claims.to_string().as_bytes()))
}

/// A token for `host`/`ticket` as the portal mints it for the shipped
/// config (kid `shipped::KID`).
pub fn mint(secret: &[u8], host: &str, ticket: &str) -> Result<String> {
    sign_with(secret, KID, &shipped_claims(host, ticket))
}

/// The console path (`/console?token=...`) for a token.
pub fn console_path(token: &str) -> String {
    format!("/console?token={token}")
}
