//! `keys`: the HMAC keys links are signed with.

use super::fields::{as_object, printable, refuse_unknown, ConfigError};
use super::upstreams::Upstreams;
use crate::jws::{decode_secret, Alg, Key, KeyError, KeySet};
use crate::scope::KeyScope;
use crate::target::{parse_host, valid_suffix};
use serde_json::Value;

const KEY_FIELDS: &[&str] = &["kid", "alg", "secret_env", "secret_base64url", "scope"];
const SCOPE_FIELDS: &[&str] = &["hosts", "host_suffixes", "tenants"];
/// Longest `tenant` a scope may list (the audit keeps 128 characters).
const MAX_TENANT_LEN: usize = 128;

/// The configured keys and, in the same order, each key's scope.
pub(super) struct ParsedKeys {
    pub keys: KeySet,
    pub scopes: Vec<Option<KeyScope>>,
}

pub(super) fn parse_keys(
    value: Option<&Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ParsedKeys, ConfigError> {
    let Some(value) = value else {
        return Err(ConfigError::new("keys", "is required"));
    };
    let Some(entries) = value.as_array() else {
        return Err(ConfigError::new("keys", "must be an array of keys"));
    };
    if entries.is_empty() {
        return Err(ConfigError::new("keys", "must list at least one key"));
    }
    let mut keys = Vec::with_capacity(entries.len());
    let mut scopes = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("keys[{i}]");
        let map = as_object(entry, &at)?;
        refuse_unknown(map, KEY_FIELDS, &at)?;
        scopes.push(match map.get("scope") {
            None => None,
            Some(scope) => Some(parse_scope(scope, &format!("{at}.scope"))?),
        });
        let kid = match map.get("kid") {
            None => None,
            Some(Value::String(s)) if crate::jws::valid_kid(s) => Some(s.clone()),
            Some(_) => {
                return Err(ConfigError::new(
                    format!("{at}.kid"),
                    "must be 1 to 64 printable ASCII characters",
                ))
            }
        };
        if entries.len() > 1 && kid.is_none() {
            return Err(ConfigError::new(
                format!("{at}.kid"),
                "is required when more than one key is configured",
            ));
        }
        if let Some(kid) = &kid {
            if keys.iter().any(|k: &Key| k.kid() == Some(kid.as_str())) {
                return Err(ConfigError::new(
                    format!("{at}.kid"),
                    "duplicates an earlier key's kid",
                ));
            }
        }
        let alg = match map.get("alg") {
            None => {
                return Err(ConfigError::new(
                    format!("{at}.alg"),
                    "is required (HS256, HS384 or HS512)",
                ))
            }
            Some(Value::String(s)) => Alg::parse(s).ok_or_else(|| {
                ConfigError::new(
                    format!("{at}.alg"),
                    "must be HS256, HS384 or HS512 (HMAC only)",
                )
            })?,
            Some(_) => return Err(ConfigError::new(format!("{at}.alg"), "must be a string")),
        };
        let (secret_field, encoded) = match (map.get("secret_env"), map.get("secret_base64url")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    at,
                    "set exactly one of secret_env and secret_base64url",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(at, "needs secret_env or secret_base64url"))
            }
            (Some(Value::String(name)), None) => {
                let field = format!("{at}.secret_env");
                let looked_up = env(name).ok_or_else(|| {
                    ConfigError::new(
                        &field,
                        format!(
                            "environment variable {} is not set in the VM",
                            printable(name)
                        ),
                    )
                })?;
                (field, looked_up)
            }
            (None, Some(Value::String(text))) => (format!("{at}.secret_base64url"), text.clone()),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    format!("{at}.secret_env"),
                    "must be a string",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    format!("{at}.secret_base64url"),
                    "must be a string",
                ))
            }
        };
        let secret = decode_secret(&encoded)
            .ok_or_else(|| ConfigError::new(&secret_field, "is not base64url"))?;
        let key = Key::new(kid, alg, &secret).map_err(|KeyError::TooShort { min }| {
            ConfigError::new(
                &secret_field,
                format!(
                    "secret is {} bytes; {} needs at least {min}",
                    secret.len(),
                    alg.name()
                ),
            )
        })?;
        keys.push(key);
    }
    Ok(ParsedKeys {
        keys: KeySet::new(keys),
        scopes,
    })
}

fn parse_scope(value: &Value, at: &str) -> Result<KeyScope, ConfigError> {
    let map = as_object(value, at)?;
    refuse_unknown(map, SCOPE_FIELDS, at)?;
    if map.is_empty() {
        return Err(ConfigError::new(
            at,
            "must set hosts, host_suffixes or tenants (leave scope out for an unscoped key)",
        ));
    }
    let mut scope = KeyScope::default();
    if let Some(value) = map.get("hosts") {
        let field = format!("{at}.hosts");
        for (j, entry) in non_empty_list(value, &field)?.iter().enumerate() {
            let field = format!("{field}[{j}]");
            let name = entry.as_str().unwrap_or("");
            let host = parse_host(name).filter(|h| h.canonical() == name).ok_or_else(|| {
                ConfigError::new(
                    &field,
                    "must be a host name or IP literal in canonical form (lower case, no trailing dot, no port), as in upstreams.hosts",
                )
            })?;
            if scope.hosts.contains(&host) {
                return Err(ConfigError::new(&field, "duplicates an earlier entry"));
            }
            scope.hosts.push(host);
        }
    }
    if let Some(value) = map.get("host_suffixes") {
        let field = format!("{at}.host_suffixes");
        for (j, entry) in non_empty_list(value, &field)?.iter().enumerate() {
            let field = format!("{field}[{j}]");
            let suffix = entry.as_str().filter(|s| valid_suffix(s)).ok_or_else(|| {
                ConfigError::new(
                    &field,
                    "must be a lower-case DNS suffix starting with a dot, like .tenant-a.example.com",
                )
            })?;
            if scope.host_suffixes.iter().any(|s| s == suffix) {
                return Err(ConfigError::new(&field, "duplicates an earlier entry"));
            }
            scope.host_suffixes.push(suffix.to_string());
        }
    }
    if let Some(value) = map.get("tenants") {
        let field = format!("{at}.tenants");
        let mut tenants: Vec<String> = Vec::new();
        for (j, entry) in non_empty_list(value, &field)?.iter().enumerate() {
            let field = format!("{field}[{j}]");
            let tenant = entry
                .as_str()
                .filter(|t| !t.is_empty() && t.len() <= MAX_TENANT_LEN)
                .ok_or_else(|| {
                    ConfigError::new(
                        &field,
                        format!("must be a string of 1 to {MAX_TENANT_LEN} bytes"),
                    )
                })?;
            if tenants.iter().any(|t| t == tenant) {
                return Err(ConfigError::new(&field, "duplicates an earlier entry"));
            }
            tenants.push(tenant.to_string());
        }
        scope.tenants = Some(tenants);
    }
    Ok(scope)
}

fn non_empty_list<'v>(value: &'v Value, field: &str) -> Result<&'v Vec<Value>, ConfigError> {
    value.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
        ConfigError::new(
            field,
            "must be a non-empty array (leave it out to not narrow by it)",
        )
    })
}

/// A scope may only narrow: each of its hosts must be one `upstreams`
/// routes, and each suffix must lie at or under an upstream suffix.
pub(super) fn check_scopes_narrow(
    scopes: &[Option<KeyScope>],
    upstreams: &Upstreams,
) -> Result<(), ConfigError> {
    let reason = "is not allowed by upstreams (a scope may only narrow what upstreams allows)";
    for (i, scope) in scopes.iter().enumerate() {
        let Some(scope) = scope else { continue };
        for (j, host) in scope.hosts.iter().enumerate() {
            if upstreams.cluster_for(host).is_none() {
                return Err(ConfigError::new(
                    format!("keys[{i}].scope.hosts[{j}]"),
                    reason,
                ));
            }
        }
        for (j, suffix) in scope.host_suffixes.iter().enumerate() {
            let inside = upstreams.host_suffixes.iter().any(|(allowed, _)| {
                suffix == allowed || crate::target::name_under_suffix(suffix, allowed)
            });
            if !inside {
                return Err(ConfigError::new(
                    format!("keys[{i}].scope.host_suffixes[{j}]"),
                    reason,
                ));
            }
        }
    }
    Ok(())
}
