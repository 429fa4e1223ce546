//! The plugin configuration: parsed once at `on_configure`, validated fully,
//! and compiled into a ready structure (keyed MACs, normalised allowlists,
//! the ticket path split around `{ticket}`).
//!
//! The JSON is walked by hand rather than through derived structs so that
//! every error names its field (`upstreams.hosts."esx 1"`, `keys[1].kid`) and
//! no error message can echo a value, which might be a secret.

use crate::etcd::{self, EtcdStore};
use crate::jws::{decode_secret, Alg, Key, KeyError, KeySet};
use crate::target::{parse_host, valid_suffix};
use serde_json::{Map, Value};
use std::collections::HashMap;

pub const DEFAULT_PATH_PREFIX: &str = "/console";
pub const DEFAULT_TOKEN_PARAM: &str = "token";
pub const DEFAULT_CLUSTER_HEADER: &str = "x-mksgate-cluster";
pub const DEFAULT_TICKET_PATH: &str = "/ticket/{ticket}";
pub const DEFAULT_CLOCK_SKEW_SECONDS: i64 = 30;
pub const DEFAULT_MAX_TTL_SECONDS: i64 = 300;
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;
pub const MAX_MAX_TTL_SECONDS: i64 = 86_400;

/// A configuration refused, with the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
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
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            .map(|(_, cluster)| cluster.as_str())
    }
}

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

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub keys: KeySet,
    pub path_prefix: String,
    pub token_param: String,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub clock_skew_seconds: i64,
    pub max_ttl_seconds: i64,
    pub one_time_links: bool,
    /// Lower-cased serialized origins; `None` means the Origin is not checked
    /// (beyond the `origin` claim).
    pub allowed_origins: Option<Vec<String>>,
    pub upstreams: Upstreams,
    pub ticket_path: TicketPath,
    /// Where one-time links are recorded (while `one_time_links` is on).
    pub replay_store: ReplayStore,
    /// Whether each decision is also written as a JSON line to Envoy's log
    /// (the access log always gets the audit from filter state).
    pub log_decisions: bool,
}

/// Where one-time links are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStore {
    /// Envoy's shared data: one gateway process.
    Local,
    /// etcd, shared by a fleet of gateways.
    Etcd(EtcdStore),
}

const ROOT_FIELDS: &[&str] = &[
    "keys",
    "path_prefix",
    "token_param",
    "audience",
    "issuer",
    "clock_skew_seconds",
    "max_ttl_seconds",
    "one_time_links",
    "allowed_origins",
    "upstreams",
    "ticket_path",
    "replay_store",
    "log_decisions",
];
const KEY_FIELDS: &[&str] = &["kid", "alg", "secret_env", "secret_base64url"];
const UPSTREAM_FIELDS: &[&str] = &[
    "cluster_header",
    "hosts",
    "host_suffixes",
    "rewrite_authority",
];
const REPLAY_STORE_FIELDS: &[&str] = &["etcd"];
const ETCD_FIELDS: &[&str] = &["cluster", "authority", "key_prefix", "timeout_ms"];

impl Config {
    /// Parses and validates the plugin configuration. `env` looks up the
    /// VM's environment for `secret_env` (the filter passes `std::env::var`;
    /// `core` itself never touches the environment).
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let root: Value = serde_json::from_slice(json).map_err(|e| {
            // Syntax errors only (no type checks happen here), so the message
            // carries a position, never a value.
            ConfigError::new("(config)", format!("not valid JSON: {e}"))
        })?;
        let root = as_object(&root, "(config)")?;
        refuse_unknown(root, ROOT_FIELDS, "")?;

        let keys = parse_keys(root.get("keys"), env)?;
        let path_prefix = opt_str(root, "path_prefix")?.unwrap_or(DEFAULT_PATH_PREFIX);
        check_path_prefix(path_prefix)?;
        let token_param = opt_str(root, "token_param")?.unwrap_or(DEFAULT_TOKEN_PARAM);
        check_token_param(token_param)?;
        let audience = non_empty(opt_str(root, "audience")?, "audience")?;
        let issuer = non_empty(opt_str(root, "issuer")?, "issuer")?;
        let clock_skew_seconds = opt_int(root, "clock_skew_seconds", 0, MAX_CLOCK_SKEW_SECONDS)?
            .unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
        let max_ttl_seconds = opt_int(root, "max_ttl_seconds", 1, MAX_MAX_TTL_SECONDS)?
            .unwrap_or(DEFAULT_MAX_TTL_SECONDS);
        let one_time_links = opt_bool(root, "one_time_links", true)?;
        let log_decisions = opt_bool(root, "log_decisions", true)?;
        let allowed_origins = parse_origins(root.get("allowed_origins"))?;
        let upstreams = parse_upstreams(root.get("upstreams"))?;
        let ticket_path =
            parse_ticket_path(opt_str(root, "ticket_path")?.unwrap_or(DEFAULT_TICKET_PATH))?;
        let replay_store = parse_replay_store(
            root.get("replay_store"),
            one_time_links,
            max_ttl_seconds,
            clock_skew_seconds,
        )?;

        Ok(Config {
            keys,
            path_prefix: path_prefix.to_string(),
            token_param: token_param.to_string(),
            audience,
            issuer,
            clock_skew_seconds,
            max_ttl_seconds,
            one_time_links,
            allowed_origins,
            upstreams,
            ticket_path,
            replay_store,
            log_decisions,
        })
    }

    /// Whether `path` (the part before `?`) is a console path: the prefix
    /// itself or anything below it.
    pub fn is_console_path(&self, path: &str) -> bool {
        match path.strip_prefix(self.path_prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

fn as_object<'v>(value: &'v Value, field: &str) -> Result<&'v Map<String, Value>, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| ConfigError::new(field, "must be a JSON object"))
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn refuse_unknown(
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
fn field_name(key: &str) -> String {
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

fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn opt_bool(map: &Map<String, Value>, field: &str, default: bool) -> Result<bool, ConfigError> {
    match map.get(field) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ConfigError::new(field, "must be true or false")),
    }
}

fn opt_str<'v>(map: &'v Map<String, Value>, field: &str) -> Result<Option<&'v str>, ConfigError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ConfigError::new(field, "must be a string")),
    }
}

fn non_empty(value: Option<&str>, field: &str) -> Result<Option<String>, ConfigError> {
    match value {
        Some("") => Err(ConfigError::new(
            field,
            "must not be empty (leave it out to skip the check)",
        )),
        other => Ok(other.map(str::to_string)),
    }
}

fn opt_int(
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

fn parse_replay_store(
    value: Option<&Value>,
    one_time_links: bool,
    max_ttl_seconds: i64,
    clock_skew_seconds: i64,
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
        None => etcd::DEFAULT_KEY_PREFIX.to_string(),
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
    Ok(ReplayStore::Etcd(EtcdStore::new(
        cluster,
        authority,
        key_prefix,
        timeout_ms,
        max_ttl_seconds,
        clock_skew_seconds,
    )))
}

fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn parse_keys(
    value: Option<&Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<KeySet, ConfigError> {
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
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("keys[{i}]");
        let map = as_object(entry, &at)?;
        refuse_unknown(map, KEY_FIELDS, &at)?;
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
    Ok(KeySet::new(keys))
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

fn parse_origins(value: Option<&Value>) -> Result<Option<Vec<String>>, ConfigError> {
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

fn parse_upstreams(value: Option<&Value>) -> Result<Upstreams, ConfigError> {
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

fn cluster_name(value: &Value, field: &str) -> Result<String, ConfigError> {
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

fn parse_ticket_path(template: &str) -> Result<TicketPath, ConfigError> {
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

#[cfg(test)]
mod tests;
