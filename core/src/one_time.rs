//! The one-time-link types every part shares: what a claim records
//! (`OneTime`) and how a remote store's claim ended (`Outcome`). A module of
//! its own, depending on nothing above it, so the decision, the local
//! table (`replay`) and the etcd store (`etcd`) meet here instead of
//! importing each other.

use sha2::{Digest, Sha256};

/// What a one-time claim records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTime {
    pub jti: String,
    /// Whose link it is: SHA-256 of the signing key's `kid`, the `tenant`
    /// claim and the `jti` ([`record_id`]). Both stores key the record by
    /// this, so one tenant's `jti` never spends another's.
    pub record: [u8; 32],
    /// Until when the `jti` must be remembered: `exp` + clock skew.
    pub remember_until: i64,
}

impl OneTime {
    pub fn new(
        kid: Option<&str>,
        tenant: Option<&str>,
        jti: String,
        remember_until: i64,
    ) -> OneTime {
        OneTime {
            record: record_id(kid, tenant, &jti),
            jti,
            remember_until,
        }
    }
}

/// The identity of a one-time record: SHA-256 over a version tag and the
/// `kid`, `tenant` and `jti`, each length-prefixed (so no two different
/// triples share an input). An absent `kid` or `tenant` hashes as empty.
pub fn record_id(kid: Option<&str>, tenant: Option<&str>, jti: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"mksgate.one_time.v2");
    for part in [kid.unwrap_or_default(), tenant.unwrap_or_default(), jti] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

/// How a claim ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not recorded before: recorded now. Admit.
    Recorded,
    /// Recorded before: the link was used. `403 replayed`.
    Replayed,
    /// Anything else. `503 replay_unavailable`, never admitted.
    Unavailable(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within `timeout_ms`.
    Timeout,
    /// An answer that is not the expected one: an etcd error (no leader,
    /// a lease problem), an HTTP error, an unparseable body, a reset.
    Error,
}

impl Outcome {
    /// The counter name's last part: `mksgate.replay_store.<this>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Recorded => "recorded",
            Outcome::Replayed => "replayed",
            Outcome::Unavailable(Failure::Timeout) => "timeout",
            Outcome::Unavailable(Failure::Error) => "error",
        }
    }

    pub const ALL: [Outcome; 4] = [
        Outcome::Recorded,
        Outcome::Replayed,
        Outcome::Unavailable(Failure::Timeout),
        Outcome::Unavailable(Failure::Error),
    ];
}
