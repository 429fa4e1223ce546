//! What a decision leaves in the log: who, what, where; never the token or
//! the ticket (only a short hash of the ticket, to correlate with ESXi logs).

use crate::claims::Claims;
use crate::code::Code;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Longest claim value copied into a log line.
const MAX_LOGGED: usize = 128;

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
}

impl Audit {
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
}
