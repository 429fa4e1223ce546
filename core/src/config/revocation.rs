//! `revocation`: where the gateways read revoked `sub`s, `tenant`s and
//! `jti`s (etcd; the same cluster as `replay_store` or another).

use super::fields::{as_object, refuse_unknown, ConfigError};
use super::store::{parse_etcd_target, EtcdTarget};
use crate::revocation::{self, RevocationSource};
use serde_json::Value;

const REVOCATION_FIELDS: &[&str] = &["etcd"];
const ETCD_FIELDS: &[&str] = &[
    "cluster",
    "authority",
    "key_prefix",
    "poll_ms",
    "timeout_ms",
    "max_stale_ms",
];

pub(super) fn parse_revocation(
    value: Option<&Value>,
) -> Result<Option<RevocationSource>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let map = as_object(value, "revocation")?;
    refuse_unknown(map, REVOCATION_FIELDS, "revocation")?;
    let Some(etcd) = map.get("etcd") else {
        return Err(ConfigError::new("revocation.etcd", "is required"));
    };
    let at = "revocation.etcd";
    let map = as_object(etcd, at)?;
    refuse_unknown(map, ETCD_FIELDS, at)?;
    let EtcdTarget {
        cluster,
        authority,
        key_prefix,
        timeout_ms,
    } = parse_etcd_target(map, at, revocation::DEFAULT_KEY_PREFIX)?;
    let poll_ms = milliseconds(
        map,
        at,
        "poll_ms",
        revocation::MIN_POLL_MS,
        revocation::MAX_POLL_MS,
        revocation::DEFAULT_POLL_MS,
    )?;
    let max_stale_ms = milliseconds(
        map,
        at,
        "max_stale_ms",
        poll_ms,
        revocation::MAX_MAX_STALE_MS,
        revocation::DEFAULT_MAX_STALE_MS.max(poll_ms),
    )?;
    Ok(Some(RevocationSource {
        cluster,
        authority,
        key_prefix,
        poll_ms,
        timeout_ms,
        max_stale_ms,
    }))
}

fn milliseconds(
    map: &serde_json::Map<String, Value>,
    at: &str,
    name: &str,
    min: u32,
    max: u32,
    default: u32,
) -> Result<u32, ConfigError> {
    match map.get(name) {
        None => Ok(default),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::new(
                format!("{at}.{name}"),
                format!("must be an integer from {min} to {max}"),
            )),
        },
    }
}
