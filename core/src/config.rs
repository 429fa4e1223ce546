//! The plugin configuration: parsed once at `on_configure`, validated fully,
//! and compiled into a ready structure (keyed MACs, normalised allowlists,
//! the ticket path split around `{ticket}`).
//!
//! The JSON is walked by hand rather than through derived structs so that
//! every error names its field (`upstreams.hosts."esx 1"`, `keys[1].kid`) and
//! no error message can echo a value, which might be a secret.

mod fields;
mod keys;
mod link;
mod revocation;
mod store;
mod upstreams;

pub use fields::ConfigError;
pub use link::{check_path_prefix, check_token_param, valid_origin, TicketPath};
pub use store::ReplayStore;
pub use upstreams::Upstreams;

use crate::jws::{Key, KeySet};
use crate::revocation::RevocationSource;
use crate::scope::KeyScope;
use fields::{as_object, non_empty, opt_bool, opt_int, opt_str, refuse_unknown};
use serde_json::Value;

pub const DEFAULT_PATH_PREFIX: &str = "/console";
pub const DEFAULT_TOKEN_PARAM: &str = "token";
pub const DEFAULT_CLUSTER_HEADER: &str = "x-mksgate-cluster";
pub const DEFAULT_TICKET_PATH: &str = "/ticket/{ticket}";
pub const DEFAULT_CLOCK_SKEW_SECONDS: i64 = 30;
pub const DEFAULT_MAX_TTL_SECONDS: i64 = 300;
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;
pub const MAX_MAX_TTL_SECONDS: i64 = 86_400;
/// The longest `max_console_seconds`: a week.
pub const MAX_MAX_CONSOLE_SECONDS: i64 = 604_800;

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub keys: KeySet,
    /// Each key's scope, in the order of `keys`; `None` for an unscoped key.
    pub key_scopes: Vec<Option<KeyScope>>,
    pub path_prefix: String,
    pub token_param: String,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub clock_skew_seconds: i64,
    pub max_ttl_seconds: i64,
    /// Every console admitted is closed this long after its admission.
    pub max_console_seconds: Option<i64>,
    pub one_time_links: bool,
    /// Lower-cased serialized origins; `None` means the Origin is not checked
    /// (beyond the `origin` claim).
    pub allowed_origins: Option<Vec<String>>,
    pub upstreams: Upstreams,
    pub ticket_path: TicketPath,
    /// Where one-time links are recorded (while `one_time_links` is on).
    pub replay_store: ReplayStore,
    /// Where revocations are read, when they are on.
    pub revocation: Option<RevocationSource>,
    /// Whether each decision is also written as a JSON line to Envoy's log
    /// (the access log always gets the audit from filter state).
    pub log_decisions: bool,
}

const ROOT_FIELDS: &[&str] = &[
    "keys",
    "path_prefix",
    "token_param",
    "audience",
    "issuer",
    "clock_skew_seconds",
    "max_ttl_seconds",
    "max_console_seconds",
    "one_time_links",
    "allowed_origins",
    "upstreams",
    "ticket_path",
    "replay_store",
    "revocation",
    "log_decisions",
];
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

        let keys::ParsedKeys { keys, scopes } = keys::parse_keys(root.get("keys"), env)?;
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
        let max_console_seconds = opt_int(root, "max_console_seconds", 1, MAX_MAX_CONSOLE_SECONDS)?;
        let one_time_links = opt_bool(root, "one_time_links", true)?;
        let log_decisions = opt_bool(root, "log_decisions", true)?;
        let allowed_origins = link::parse_origins(root.get("allowed_origins"))?;
        let upstreams = upstreams::parse_upstreams(root.get("upstreams"))?;
        keys::check_scopes_narrow(&scopes, &upstreams)?;
        let ticket_path =
            link::parse_ticket_path(opt_str(root, "ticket_path")?.unwrap_or(DEFAULT_TICKET_PATH))?;
        let replay_store = store::parse_replay_store(
            root.get("replay_store"),
            one_time_links,
            max_ttl_seconds,
            clock_skew_seconds,
            env,
        )?;
        let revocation = revocation::parse_revocation(root.get("revocation"))?;

        Ok(Config {
            keys,
            key_scopes: scopes,
            path_prefix: path_prefix.to_string(),
            token_param: token_param.to_string(),
            audience,
            issuer,
            clock_skew_seconds,
            max_ttl_seconds,
            max_console_seconds,
            one_time_links,
            allowed_origins,
            upstreams,
            ticket_path,
            replay_store,
            revocation,
            log_decisions,
        })
    }

    /// The scope of `key`, one of `self.keys` (found by identity: no kid
    /// comparison, no allocation); `None` for an unscoped key.
    pub fn scope_of(&self, key: &Key) -> Option<&KeyScope> {
        self.keys
            .iter()
            .zip(&self.key_scopes)
            .find(|(k, _)| std::ptr::eq(*k, key))
            .and_then(|(_, scope)| scope.as_ref())
    }

    /// Whether scoped and unscoped keys are mixed: an unscoped key can open
    /// every tenant's hosts, which undoes the others' isolation.
    pub fn mixes_scoped_and_unscoped_keys(&self) -> bool {
        let scoped = self.key_scopes.iter().filter(|s| s.is_some()).count();
        scoped > 0 && scoped < self.key_scopes.len()
    }

    /// Whether `path` (the part before `?`) is a console path: the prefix
    /// itself or anything below it.
    pub fn is_console_path(&self, path: &str) -> bool {
        match path.strip_prefix(self.path_prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// The one path a console link may have: `path_prefix`, or with one
    /// trailing `/`. Anything deeper is under the prefix (so never passed
    /// through) but refused: no client sends it, and ESXi would see it in
    /// `x-envoy-original-path`.
    pub fn is_exact_console_path(&self, path: &str) -> bool {
        matches!(path.strip_prefix(self.path_prefix.as_str()), Some("" | "/"))
    }
}

#[cfg(test)]
mod tests;
