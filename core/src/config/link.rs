//! The link's shape at the gateway: `path_prefix`, `token_param`,
//! `allowed_origins`, and the `ticket_path` the request is rewritten to.

use super::fields::ConfigError;
use crate::target::parse_host;
use serde_json::Value;

/// `ticket_path` split around its one `{ticket}`.
#[derive(Debug, Clone)]
pub struct TicketPath {
    before: String,
    after: String,
}

impl TicketPath {
    pub fn render(&self, ticket: &str) -> String {
        let mut path = String::with_capacity(self.before.len() + ticket.len() + self.after.len());
        path.push_str(&self.before);
        path.push_str(ticket);
        path.push_str(&self.after);
        path
    }
}

/// The `token_param` rule: 1 to 64 of `A-Z a-z 0-9 _ - .`.
pub fn check_token_param(param: &str) -> Result<(), ConfigError> {
    let ok = !param.is_empty()
        && param.len() <= 64
        && param
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "token_param",
            "must be 1 to 64 of A-Z a-z 0-9 _ - .",
        ))
    }
}

/// The `path_prefix` rule.
pub fn check_path_prefix(prefix: &str) -> Result<(), ConfigError> {
    let ok = prefix.len() >= 2
        && prefix.len() <= 256
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && !prefix.contains("//")
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "path_prefix",
            "must start with /, not end with /, and use only A-Z a-z 0-9 / - . _ ~",
        ))
    }
}

pub(super) fn parse_origins(value: Option<&Value>) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let entries = value.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
        ConfigError::new(
            "allowed_origins",
            "must be a non-empty array (leave it out to skip the check)",
        )
    })?;
    let mut origins = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        match entry.as_str() {
            Some(origin) if valid_origin(origin) => origins.push(origin.to_ascii_lowercase()),
            _ => return Err(ConfigError::new(
                format!("allowed_origins[{i}]"),
                "must be an origin like https://portal.example.com (scheme://host[:port], no path)",
            )),
        }
    }
    Ok(Some(origins))
}

/// `http(s)://host[:port]`, the form browsers send in `Origin`.
pub fn valid_origin(origin: &str) -> bool {
    let lower = origin.to_ascii_lowercase();
    let Some(authority) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return false;
    };
    match crate::target::split_authority(authority) {
        // A bare IPv6 literal is not an origin; it needs brackets.
        Some((host, _)) => {
            parse_host(host).is_some() && (!host.contains(':') || host.starts_with('['))
        }
        None => false,
    }
}

pub(super) fn parse_ticket_path(template: &str) -> Result<TicketPath, ConfigError> {
    let reason = "must start with / and contain {ticket} exactly once, with only A-Z a-z 0-9 / - . _ ~ around it";
    let Some((before, after)) = template.split_once("{ticket}") else {
        return Err(ConfigError::new("ticket_path", reason));
    };
    let path_safe = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'))
    };
    if !before.starts_with('/')
        || after.contains("{ticket}")
        || !path_safe(before)
        || !path_safe(after)
    {
        return Err(ConfigError::new("ticket_path", reason));
    }
    Ok(TicketPath {
        before: before.to_string(),
        after: after.to_string(),
    })
}
