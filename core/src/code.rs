//! Reason codes: the one vocabulary shared by replies, log lines and metrics.

/// Why a console request was admitted or refused. `as_str` is the wire name
/// used in the reply body, the log line, the access-log field and the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Admitted,
    /// A header the decision reads (`:path`, `:method`, `upgrade`,
    /// `connection`, `origin`, the cluster header) is not UTF-8.
    MalformedRequest,
    NotWebsocket,
    MissingToken,
    MalformedToken,
    BadSignature,
    Expired,
    NotYetValid,
    TtlTooLong,
    /// The link's `console_exp` is already past: the console would close
    /// at once.
    ConsoleExpired,
    WrongAudience,
    WrongIssuer,
    BadTarget,
    HostNotAllowed,
    /// The link verified with a scoped key, but names a host or tenant
    /// outside that key's scope (`keys[i].scope`).
    KeyScope,
    OriginNotAllowed,
    ClientNotAllowed,
    Replayed,
    /// Every slot of the link's replay bucket holds a live link: refusing is
    /// the only way to keep the one-time promise with bounded memory.
    ReplayTableFull,
    /// The shared replay table could not be read or written (host error or
    /// persistent write contention).
    ReplayUnavailable,
    /// The link's `sub`, `tenant` or `jti` is revoked (`revocation`).
    Revoked,
    /// The gateway's view of the revocations is older than
    /// `revocation.etcd.max_stale_ms` (etcd could not be read): a revoked
    /// link cannot be told apart, so none is admitted.
    RevocationUnavailable,
    /// The plugin was never configured, yet a stream reached it (Envoy does
    /// not do that; if it ever did, the request is refused).
    Unconfigured,
    /// The host refused a header change the filter must make (removing the
    /// client's cluster header, or an admission's rewrite); the request is
    /// refused rather than forwarded half-done.
    GatewayError,
}

impl Code {
    pub const ALL: [Code; 24] = [
        Code::Admitted,
        Code::MalformedRequest,
        Code::NotWebsocket,
        Code::MissingToken,
        Code::MalformedToken,
        Code::BadSignature,
        Code::Expired,
        Code::NotYetValid,
        Code::TtlTooLong,
        Code::ConsoleExpired,
        Code::WrongAudience,
        Code::WrongIssuer,
        Code::BadTarget,
        Code::HostNotAllowed,
        Code::KeyScope,
        Code::OriginNotAllowed,
        Code::ClientNotAllowed,
        Code::Replayed,
        Code::ReplayTableFull,
        Code::ReplayUnavailable,
        Code::Revoked,
        Code::RevocationUnavailable,
        Code::Unconfigured,
        Code::GatewayError,
    ];

    /// Its position in `Code::ALL` (the declaration order), for tables
    /// indexed by code such as the filter's metric ids.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Admitted => "admitted",
            Code::MalformedRequest => "malformed_request",
            Code::NotWebsocket => "not_websocket",
            Code::MissingToken => "missing_token",
            Code::MalformedToken => "malformed_token",
            Code::BadSignature => "bad_signature",
            Code::Expired => "expired",
            Code::NotYetValid => "not_yet_valid",
            Code::TtlTooLong => "ttl_too_long",
            Code::ConsoleExpired => "console_expired",
            Code::WrongAudience => "wrong_audience",
            Code::WrongIssuer => "wrong_issuer",
            Code::BadTarget => "bad_target",
            Code::HostNotAllowed => "host_not_allowed",
            Code::KeyScope => "key_scope",
            Code::OriginNotAllowed => "origin_not_allowed",
            Code::ClientNotAllowed => "client_not_allowed",
            Code::Replayed => "replayed",
            Code::ReplayTableFull => "replay_table_full",
            Code::ReplayUnavailable => "replay_unavailable",
            Code::Revoked => "revoked",
            Code::RevocationUnavailable => "revocation_unavailable",
            Code::Unconfigured => "mksgate_unconfigured",
            Code::GatewayError => "gateway_error",
        }
    }

    /// The HTTP status of the local reply for a refusal (101 comes from the
    /// upstream for an admission, so `Admitted` has none of its own).
    pub fn status(self) -> u32 {
        match self {
            Code::Admitted => 101,
            Code::NotWebsocket => 426,
            Code::MissingToken => 401,
            Code::MalformedRequest | Code::MalformedToken | Code::BadTarget => 400,
            Code::ReplayTableFull
            | Code::ReplayUnavailable
            | Code::RevocationUnavailable
            | Code::Unconfigured
            | Code::GatewayError => 503,
            Code::BadSignature
            | Code::Expired
            | Code::NotYetValid
            | Code::TtlTooLong
            | Code::ConsoleExpired
            | Code::WrongAudience
            | Code::WrongIssuer
            | Code::HostNotAllowed
            | Code::KeyScope
            | Code::OriginNotAllowed
            | Code::ClientNotAllowed
            | Code::Replayed
            | Code::Revoked => 403,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn all_is_in_index_order() {
        for (i, code) in Code::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{code}");
        }
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "duplicate {name}");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
