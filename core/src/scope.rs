//! Key scopes: what a link signed by one key may open. A service provider
//! gives each tenant's portal its own key; a key that leaks then opens only
//! that tenant's hosts. The one copy of the rule: the filter's decision and
//! `mksgate sign` both call [`KeyScope::check`].

use crate::target::{name_under_suffix, Host};

/// A key's scope, compiled from `keys[i].scope`. Every list that is set is
/// non-empty, free of duplicates, and (for hosts and suffixes) inside what
/// `upstreams` allows: a scope only narrows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyScope {
    /// Exact hosts, canonical. With `host_suffixes`, a target must match an
    /// entry of either; with neither set, any allowed host is in scope.
    pub hosts: Vec<Host>,
    /// DNS suffixes with their leading dot.
    pub host_suffixes: Vec<String>,
    /// When set, the link must carry `tenant`, equal to one entry (exact,
    /// case-sensitive).
    pub tenants: Option<Vec<String>>,
}

/// Which part of a key's scope a link fell outside of: the access log's
/// `mksgate_key_scope` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopePart {
    Host,
    Tenant,
}

impl ScopePart {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopePart::Host => "host",
            ScopePart::Tenant => "tenant",
        }
    }
}

impl KeyScope {
    /// Whether a link to `host` (canonical, as parsed from the link) with
    /// the `tenant` claim is inside this scope; the host is checked first.
    pub fn check(&self, host: &Host, tenant: Option<&str>) -> Result<(), ScopePart> {
        if !self.allows_host(host) {
            return Err(ScopePart::Host);
        }
        if let Some(tenants) = &self.tenants {
            let Some(tenant) = tenant else {
                return Err(ScopePart::Tenant);
            };
            if !tenants.iter().any(|t| t == tenant) {
                return Err(ScopePart::Tenant);
            }
        }
        Ok(())
    }

    fn allows_host(&self, host: &Host) -> bool {
        if self.hosts.is_empty() && self.host_suffixes.is_empty() {
            return true;
        }
        if self.hosts.contains(host) {
            return true;
        }
        match host {
            // Suffixes match DNS names only, as in `upstreams`.
            Host::Name(name) => self
                .host_suffixes
                .iter()
                .any(|suffix| name_under_suffix(name, suffix)),
            Host::Ip(_) => false,
        }
    }
}

#[cfg(test)]
mod tests;
