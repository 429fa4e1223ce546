//! The one-time-link types every part shares: what a claim records
//! (`OneTime`) and how a remote store's claim ended (`Outcome`). A module of
//! its own, depending on nothing above it, so the decision, the local
//! table (`replay`) and the etcd store (`etcd`) meet here instead of
//! importing each other.

/// What a one-time claim records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTime {
    pub jti: String,
    /// Until when the `jti` must be remembered: `exp` + clock skew.
    pub remember_until: i64,
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
