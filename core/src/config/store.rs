//! `replay_store`: where one-time links are recorded.

use super::fields::{as_object, refuse_unknown, ConfigError};
use crate::etcd::{self, EtcdAuth, EtcdStore};
use serde_json::Value;

const REPLAY_STORE_FIELDS: &[&str] = &["etcd"];
const ETCD_FIELDS: &[&str] = &["cluster", "authority", "key_prefix", "timeout_ms", "auth"];
const AUTH_FIELDS: &[&str] = &["user", "password_env"];

/// Where one-time links are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStore {
    /// Envoy's shared data: one gateway process.
    Local,
    /// etcd, shared by a fleet of gateways.
    Etcd(EtcdStore),
}

pub(super) fn parse_replay_store(
    value: Option<&Value>,
    one_time_links: bool,
    max_ttl_seconds: i64,
    clock_skew_seconds: i64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ReplayStore, ConfigError> {
    let Some(value) = value else {
        return Ok(ReplayStore::Local);
    };
    if !one_time_links {
        // A typo must not switch single use off while a store is configured.
        return Err(ConfigError::new(
            "replay_store",
            "is set while one_time_links is false (remove one of them)",
        ));
    }
    let map = as_object(value, "replay_store")?;
    refuse_unknown(map, REPLAY_STORE_FIELDS, "replay_store")?;
    let Some(etcd) = map.get("etcd") else {
        return Err(ConfigError::new("replay_store.etcd", "is required"));
    };
    let at = "replay_store.etcd";
    let map = as_object(etcd, at)?;
    refuse_unknown(map, ETCD_FIELDS, at)?;
    let field = |name: &str| format!("{at}.{name}");
    let EtcdTarget {
        cluster,
        authority,
        key_prefix,
        timeout_ms,
    } = parse_etcd_target(map, at, etcd::DEFAULT_KEY_PREFIX)?;
    let auth = match map.get("auth") {
        None => None,
        Some(value) => Some(parse_auth(value, &field("auth"), env)?),
    };
    Ok(ReplayStore::Etcd(
        EtcdStore::new(
            cluster,
            authority,
            key_prefix,
            timeout_ms,
            max_ttl_seconds,
            clock_skew_seconds,
        )
        .with_auth(auth),
    ))
}

/// `auth`: etcd's user for the gateways, and the VM environment variable
/// that holds its password (never the password itself in the config).
fn parse_auth(
    value: &Value,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EtcdAuth, ConfigError> {
    let map = as_object(value, at)?;
    refuse_unknown(map, AUTH_FIELDS, at)?;
    let user = match map.get("user") {
        None => return Err(ConfigError::new(format!("{at}.user"), "is required")),
        Some(Value::String(u)) if etcd::valid_user(u) => u,
        Some(_) => {
            return Err(ConfigError::new(
                format!("{at}.user"),
                "must be 1 to 64 printable ASCII characters without spaces",
            ))
        }
    };
    let field = format!("{at}.password_env");
    let name = match map.get("password_env") {
        None => return Err(ConfigError::new(field, "is required")),
        Some(Value::String(n)) if !n.is_empty() => n,
        Some(_) => {
            return Err(ConfigError::new(
                field,
                "must be an environment variable name",
            ))
        }
    };
    let Some(password) = env(name) else {
        return Err(ConfigError::new(
            field,
            format!("environment variable {name} is not set in the VM"),
        ));
    };
    if !etcd::valid_password(&password) {
        return Err(ConfigError::new(
            field,
            format!("environment variable {name} must hold 1 to 256 bytes"),
        ));
    }
    Ok(EtcdAuth::new(user, &password))
}

/// Where an etcd section points: the fields `replay_store.etcd` and
/// `revocation.etcd` share.
pub(super) struct EtcdTarget {
    pub cluster: String,
    pub authority: String,
    pub key_prefix: String,
    pub timeout_ms: u32,
}

pub(super) fn parse_etcd_target(
    map: &serde_json::Map<String, Value>,
    at: &str,
    default_prefix: &str,
) -> Result<EtcdTarget, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    let cluster = match map.get("cluster") {
        None => return Err(ConfigError::new(field("cluster"), "is required")),
        Some(Value::String(s)) if valid_cluster_name(s) => s.clone(),
        Some(_) => {
            return Err(ConfigError::new(
                field("cluster"),
                "must be an Envoy cluster name: 1 to 255 printable ASCII characters",
            ))
        }
    };
    let authority = match map.get("authority") {
        None => cluster.clone(),
        Some(Value::String(s)) if valid_cluster_name(s) && !s.contains(' ') => s.clone(),
        Some(_) => {
            return Err(ConfigError::new(
                field("authority"),
                "must be 1 to 255 printable ASCII characters without spaces",
            ))
        }
    };
    let key_prefix = match map.get("key_prefix") {
        None => default_prefix.to_string(),
        Some(Value::String(s)) if etcd::valid_key_prefix(s) => s.clone(),
        Some(_) => {
            return Err(ConfigError::new(
                field("key_prefix"),
                "must be 1 to 128 printable ASCII characters starting with /",
            ))
        }
    };
    let timeout_ms = match map.get("timeout_ms") {
        None => etcd::DEFAULT_TIMEOUT_MS,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if (1..=etcd::MAX_TIMEOUT_MS).contains(&n) => n,
            _ => {
                return Err(ConfigError::new(
                    field("timeout_ms"),
                    format!("must be an integer from 1 to {}", etcd::MAX_TIMEOUT_MS),
                ))
            }
        },
    };
    Ok(EtcdTarget {
        cluster,
        authority,
        key_prefix,
        timeout_ms,
    })
}

fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| (0x20..0x7f).contains(&b))
}
