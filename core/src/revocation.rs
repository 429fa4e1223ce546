//! Revocation across a fleet: a portal (or `mksgate revoke`) writes one
//! etcd key per revoked `sub`, `tenant` or `jti`, with a lease for how long
//! it stands; every gateway reads them (`view`) and closes the live consoles
//! that match and refuses new links that match (`revoked`).
//!
//! The key format, for any etcd client:
//! `<key_prefix><kind>/<hex>`, where `<kind>` is `sub`, `tenant` or `jti`
//! and `<hex>` is the first 16 bytes, in lower-case hex, of SHA-256 over
//! `mksgate.revoked.v1`, then the kind and then the value, each preceded
//! by its length as 8 big-endian bytes. The key never holds the raw value.
//! The value is free text for people (the CLI writes
//! `{"reason":...,"until":...}`); gateways read keys only.

mod view;

pub use view::{ReadOutcome, Verdict, View, PAGE_KEYS};

use sha2::{Digest, Sha256};

pub const DEFAULT_KEY_PREFIX: &str = "/mksgate/revoked/";
pub const DEFAULT_POLL_MS: u32 = 1000;
pub const MIN_POLL_MS: u32 = 200;
pub const MAX_POLL_MS: u32 = 60_000;
pub const DEFAULT_MAX_STALE_MS: u32 = 30_000;
pub const MAX_MAX_STALE_MS: u32 = 3_600_000;

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sub,
    Tenant,
    Jti,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Sub, Kind::Tenant, Kind::Jti];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sub => "sub",
            Kind::Tenant => "tenant",
            Kind::Jti => "jti",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// SHA-256 of a revocation's kind and value (length-prefixed, so no two
/// pairs share an input).
pub fn id(kind: Kind, value: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"mksgate.revoked.v1");
    for part in [kind.as_str(), value] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

/// The etcd key of a revocation under `prefix`.
pub fn key(prefix: &str, kind: Kind, value: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + 7 + 32);
    key.push_str(prefix);
    key.push_str(kind.as_str());
    key.push('/');
    for b in &id(kind, value)[..16] {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    key
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The part of a key after `prefix`, read back into what a gateway keeps:
/// the first 8 bytes of the id. `None` for a key not in the format (a
/// stray key under the prefix is ignored, never a failure).
pub fn short_id_of_key(rest: &[u8]) -> Option<u64> {
    let slash = rest.iter().position(|b| *b == b'/')?;
    let kind = std::str::from_utf8(&rest[..slash]).ok()?;
    Kind::parse(kind)?;
    let hex = &rest[slash + 1..];
    if hex.len() != 32 {
        return None;
    }
    let mut value: u64 = 0;
    for (i, b) in hex.iter().enumerate() {
        let digit = u64::from(match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        });
        if i < 16 {
            value = (value << 4) | digit;
        }
    }
    Some(nonzero(value))
}

/// 0 means "no such claim" in a `Subject`: an id that is 0 becomes 1.
fn nonzero(value: u64) -> u64 {
    value.max(1)
}

fn short_id(kind: Kind, value: &str) -> u64 {
    let id = id(kind, value);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&id[..8]);
    nonzero(u64::from_be_bytes(bytes))
}

/// Who an admitted console belongs to, as the revocations name them: the
/// first 8 bytes of the ids of its `sub`, `tenant` and `jti` (0 for a
/// claim the link does not have). 24 bytes per open console; two different
/// values share 8 bytes with odds of one in 2^64 per pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subject {
    ids: [u64; 3],
}

impl Subject {
    pub fn of(sub: Option<&str>, tenant: Option<&str>, jti: Option<&str>) -> Subject {
        let one = |kind, value: Option<&str>| value.map_or(0, |v| short_id(kind, v));
        Subject {
            ids: [
                one(Kind::Sub, sub),
                one(Kind::Tenant, tenant),
                one(Kind::Jti, jti),
            ],
        }
    }

    /// Whether any of its ids is in `revoked`.
    pub fn matches(&self, revoked: &std::collections::HashSet<u64>) -> bool {
        self.ids.iter().any(|id| *id != 0 && revoked.contains(id))
    }
}

/// The compiled `revocation.etcd` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSource {
    pub cluster: String,
    pub authority: String,
    pub key_prefix: String,
    pub poll_ms: u32,
    pub timeout_ms: u32,
    pub max_stale_ms: u32,
}

/// A view that has read a given set of revocations, for tests and the
/// stage benchmark (the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
pub mod tests_support {
    use super::{key, Kind, ReadOutcome, RevocationSource, View};
    use crate::etcd::Answer;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    /// The view of a worker whose first read, at `now_ms`, found `revoked`.
    pub fn view_of(source: &RevocationSource, revoked: &[(Kind, &str)], now_ms: i64) -> View {
        let kvs: Vec<String> = revoked
            .iter()
            .map(|(kind, value)| {
                let key = STANDARD.encode(key(&source.key_prefix, *kind, value));
                format!(r#"{{"key":"{key}","create_revision":"2"}}"#)
            })
            .collect();
        let body = format!(
            r#"{{"header":{{"revision":"9"}},"kvs":[{}],"count":"{}"}}"#,
            kvs.join(","),
            kvs.len()
        );
        let mut view = View::default();
        if view.poll(source, now_ms, None).is_some() {
            let answer = Answer::Response {
                status: 200,
                body: body.as_bytes(),
            };
            let done = view.on_answer(source, answer);
            debug_assert!(matches!(done, ReadOutcome::Done { .. }));
        }
        view
    }
}

#[cfg(test)]
mod tests;
