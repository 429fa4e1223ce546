//! What a decision leaves in the log: who, what, where; never the token or
//! the ticket (only a short hash of the ticket, to correlate with ESXi logs).

use crate::claims::Claims;
use crate::code::Code;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Longest claim value copied into a log line.
const MAX_LOGGED: usize = 128;

/// Filter-state key (Envoy prefixes `wasm.`) of the decision's code, for the
/// access log: `%FILTER_STATE(wasm.mksgate_decision:PLAIN)%`.
pub const DECISION_PROPERTY: &str = "mksgate_decision";

/// Filter-state key of why the filter ended a console (`console_exp`,
/// `max_console`), set when it ends it; absent when the client or ESXi
/// ended it. The access log's end line prints it.
pub const END_PROPERTY: &str = "mksgate_end";

/// Filter-state keys of the audit's fields, in [`Audit::properties`] order;
/// a field the decision did not learn is not set (the access log shows
/// `null`). The cluster is Envoy's own `%UPSTREAM_CLUSTER%`, the one the
/// filter picked, and the client `%DOWNSTREAM_REMOTE_ADDRESS%`.
pub const AUDIT_PROPERTIES: [&str; 8] = [
    "mksgate_kid",
    "mksgate_jti",
    "mksgate_host",
    "mksgate_sub",
    "mksgate_tenant",
    "mksgate_ticket_sha256",
    "mksgate_malformed_header",
    "mksgate_key_scope",
];

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// First 12 hex digits of SHA-256 of the ticket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_sha256: Option<String>,
    /// For `malformed_request`: which header was not UTF-8 (its name only;
    /// its bytes are never logged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malformed_header: Option<&'static str>,
    /// For `key_scope`: the part of the key's scope the link fell outside
    /// of (`host` or `tenant`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_scope: Option<&'static str>,
}

impl Audit {
    /// The fields this audit has, as (filter-state key, value).
    pub fn properties(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let values = [
            self.kid.as_deref(),
            self.jti.as_deref(),
            self.host.as_deref(),
            self.sub.as_deref(),
            self.tenant.as_deref(),
            self.ticket_sha256.as_deref(),
            self.malformed_header,
            self.key_scope,
        ];
        AUDIT_PROPERTIES
            .into_iter()
            .zip(values)
            .filter_map(|(key, value)| Some((key, value?)))
    }

    /// Copies the loggable claims of a token whose signature checked out.
    pub(crate) fn record_claims(&mut self, claims: &Claims<'_>) {
        let short = |v: &Option<std::borrow::Cow<'_, str>>| {
            v.as_deref()
                .map(|s| s.chars().take(MAX_LOGGED).collect::<String>())
        };
        self.jti = short(&claims.jti);
        self.sub = short(&claims.sub);
        self.tenant = short(&claims.tenant);
    }
}

pub fn ticket_hash(ticket: &str) -> String {
    let digest = Sha256::digest(ticket.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
struct Line<'a> {
    mksgate: &'static str,
    code: &'static str,
    status: u32,
    #[serde(flatten)]
    audit: &'a Audit,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
}

/// One JSON object per console decision, on one line.
pub fn log_line(code: Code, audit: &Audit, client: Option<&str>) -> String {
    let line = Line {
        mksgate: "decision",
        code: code.as_str(),
        status: code.status(),
        audit,
        client,
    };
    serde_json::to_string(&line)
        .unwrap_or_else(|_| format!(r#"{{"mksgate":"decision","code":"{code}"}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn line_shape() {
        let audit = Audit {
            kid: Some("k1".into()),
            sub: Some("alice\n\"x\"".into()),
            ticket_sha256: Some(ticket_hash("secret-ticket")),
            ..Audit::default()
        };
        let line = log_line(Code::Expired, &audit, Some("127.0.0.1:5"));
        assert!(!line.contains('\n'));
        assert!(!line.contains("secret-ticket"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["code"], "expired");
        assert_eq!(v["status"], 403);
        assert_eq!(v["sub"], "alice\n\"x\"");
        assert_eq!(v["ticket_sha256"].as_str().unwrap().len(), 12);
        assert!(v.get("jti").is_none());
    }

    #[test]
    fn properties_are_the_fields_present() {
        let audit = Audit {
            kid: Some("k1".into()),
            host: Some("vesxi01.sec.lab".into()),
            ticket_sha256: Some(ticket_hash("secret-ticket")),
            ..Audit::default()
        };
        let got: Vec<(&str, &str)> = audit.properties().collect();
        assert_eq!(
            got,
            [
                ("mksgate_kid", "k1"),
                ("mksgate_host", "vesxi01.sec.lab"),
                (
                    "mksgate_ticket_sha256",
                    audit.ticket_sha256.as_deref().unwrap()
                ),
            ]
        );
        assert_eq!(Audit::default().properties().count(), 0);
        // Every key is a plain filter-state name, distinct from the others.
        let mut keys = AUDIT_PROPERTIES.to_vec();
        keys.push(DECISION_PROPERTY);
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), AUDIT_PROPERTIES.len() + 1);
        assert!(keys.iter().all(|k| k
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')));
    }
}
