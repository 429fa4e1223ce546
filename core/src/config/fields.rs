//! The config's error type and the field readers every section uses: each
//! error names its field, and none echoes a value (it might be a secret).

use serde_json::{Map, Value};

/// A configuration refused, with the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub(super) fn new(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

pub(super) fn as_object<'v>(
    value: &'v Value,
    field: &str,
) -> Result<&'v Map<String, Value>, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| ConfigError::new(field, "must be a JSON object"))
}

pub(super) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

pub(super) fn refuse_unknown(
    map: &Map<String, Value>,
    known: &[&str],
    prefix: &str,
) -> Result<(), ConfigError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ConfigError::new(
            join(prefix, &field_name(unknown)),
            format!("unknown field (known: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// Field names come from the operator's file, not a secret, but may hold
/// anything; keep log lines single-line and short.
/// An unknown key as a field name: plain when it looks like one, quoted
/// otherwise, so even `""` or `"a.b"` shows up unambiguously.
pub(super) fn field_name(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        printable(key)
    } else {
        format!("\"{}\"", printable(key))
    }
}

pub(super) fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub(super) fn opt_bool(
    map: &Map<String, Value>,
    field: &str,
    default: bool,
) -> Result<bool, ConfigError> {
    match map.get(field) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ConfigError::new(field, "must be true or false")),
    }
}

pub(super) fn opt_str<'v>(
    map: &'v Map<String, Value>,
    field: &str,
) -> Result<Option<&'v str>, ConfigError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ConfigError::new(field, "must be a string")),
    }
}

pub(super) fn non_empty(value: Option<&str>, field: &str) -> Result<Option<String>, ConfigError> {
    match value {
        Some("") => Err(ConfigError::new(
            field,
            "must not be empty (leave it out to skip the check)",
        )),
        other => Ok(other.map(str::to_string)),
    }
}

pub(super) fn opt_int(
    map: &Map<String, Value>,
    field: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ConfigError> {
    match map.get(field) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ConfigError::new(
                field,
                format!("must be an integer from {min} to {max}"),
            )),
        },
    }
}
