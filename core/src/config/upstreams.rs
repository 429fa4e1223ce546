//! `upstreams`: which ESXi hosts a link may name, and the Envoy cluster of
//! each.

use super::fields::{as_object, printable, refuse_unknown, ConfigError};
use super::DEFAULT_CLUSTER_HEADER;
use crate::target::{parse_host, valid_suffix};
use serde_json::Value;
use std::collections::HashMap;

const UPSTREAM_FIELDS: &[&str] = &[
    "cluster_header",
    "hosts",
    "host_suffixes",
    "rewrite_authority",
];

/// Where requests for a host go.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// The header the route's `cluster_header` reads; the filter sets it on
    /// admission and strips any client-sent copy from every request.
    pub cluster_header: String,
    /// Exact host (canonical form) to cluster.
    pub hosts: HashMap<String, String>,
    /// Suffix (with its leading dot) to cluster, longest suffix first.
    pub host_suffixes: Vec<(String, String)>,
    /// Whether the filter sets `:authority` to the ESXi host (default).
    /// `false` leaves it to the route (Istio: the VirtualService's
    /// `rewrite.authority`), for gateways whose virtual hosts are named.
    pub rewrite_authority: bool,
}

impl Upstreams {
    /// The cluster for a canonical host: exact match first, then the longest
    /// suffix. Suffixes match DNS names only, never IP literals, and need at
    /// least one label before them.
    pub fn cluster_for(&self, host: &crate::target::Host) -> Option<&str> {
        let name = match host {
            // A parsed name is already canonical (lower case, no trailing
            // dot): look it up as it is.
            crate::target::Host::Name(name) => name,
            crate::target::Host::Ip(_) => {
                return self.hosts.get(&host.canonical()).map(String::as_str);
            }
        };
        if let Some(cluster) = self.hosts.get(name) {
            return Some(cluster);
        }
        self.host_suffixes
            .iter()
            .find(|(suffix, _)| crate::target::name_under_suffix(name, suffix))
            .map(|(_, cluster)| cluster.as_str())
    }
}

pub(super) fn parse_upstreams(value: Option<&Value>) -> Result<Upstreams, ConfigError> {
    let Some(value) = value else {
        return Err(ConfigError::new("upstreams", "is required"));
    };
    let map = as_object(value, "upstreams")?;
    refuse_unknown(map, UPSTREAM_FIELDS, "upstreams")?;
    let cluster_header = match map.get("cluster_header") {
        None => DEFAULT_CLUSTER_HEADER.to_string(),
        Some(Value::String(h)) if valid_header_name(h) => h.clone(),
        Some(_) => {
            return Err(ConfigError::new(
                "upstreams.cluster_header",
                "must be a lower-case header name (a-z 0-9 -), not a pseudo-header",
            ))
        }
    };
    let mut hosts = HashMap::new();
    if let Some(value) = map.get("hosts") {
        for (name, cluster) in as_object(value, "upstreams.hosts")? {
            let field = format!("upstreams.hosts.\"{}\"", printable(name));
            let host = parse_host(name).ok_or_else(|| {
                ConfigError::new(
                    &field,
                    "is not a host name or IP literal (lower case, no trailing dot, no port)",
                )
            })?;
            let canonical = host.canonical();
            if canonical != *name {
                return Err(ConfigError::new(
                    &field,
                    format!("write it in canonical form: {canonical}"),
                ));
            }
            hosts.insert(canonical, cluster_name(cluster, &field)?);
        }
    }
    let mut host_suffixes = Vec::new();
    if let Some(value) = map.get("host_suffixes") {
        for (suffix, cluster) in as_object(value, "upstreams.host_suffixes")? {
            let field = format!("upstreams.host_suffixes.\"{}\"", printable(suffix));
            if !valid_suffix(suffix) {
                return Err(ConfigError::new(
                    &field,
                    "must be a lower-case DNS suffix starting with a dot, like .esxi.example.com",
                ));
            }
            host_suffixes.push((suffix.clone(), cluster_name(cluster, &field)?));
        }
    }
    if hosts.is_empty() && host_suffixes.is_empty() {
        return Err(ConfigError::new(
            "upstreams",
            "needs at least one entry in hosts or host_suffixes",
        ));
    }
    host_suffixes.sort_unstable_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    let rewrite_authority = match map.get("rewrite_authority") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ConfigError::new(
                "upstreams.rewrite_authority",
                "must be true or false",
            ))
        }
    };
    if !rewrite_authority && !host_suffixes.is_empty() {
        // The dynamic forward proxy resolves the host from `:authority`.
        return Err(ConfigError::new(
            "upstreams.rewrite_authority",
            "must stay true with host_suffixes (the dynamic forward proxy resolves the :authority the filter sets)",
        ));
    }
    Ok(Upstreams {
        cluster_header,
        hosts,
        host_suffixes,
        rewrite_authority,
    })
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub(super) fn cluster_name(value: &Value, field: &str) -> Result<String, ConfigError> {
    match value.as_str() {
        Some(name)
            if !name.is_empty()
                && name.len() <= 255
                && name.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'|')
                }) =>
        {
            Ok(name.to_string())
        }
        // `|` for Istio's `outbound|443||host` cluster names.
        _ => Err(ConfigError::new(
            field,
            "must be an Envoy cluster name (A-Z a-z 0-9 _ - . : |)",
        )),
    }
}
