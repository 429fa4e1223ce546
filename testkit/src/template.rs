//! Config text for tests and benchmarks: the shipped files read as they
//! are, exact replacements that fail when the text they patch drifts, and
//! `${NAME}` templates.

use crate::paths::workspace_root;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Read `<workspace>/envoy/<rel>` as is.
pub fn read_envoy_file(rel: &str) -> Result<String> {
    let path = workspace_root().join("envoy").join(rel);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Replace literal strings (for configs without placeholders, such as the
/// shipped ones): every `from` must occur at least once, so a test notices
/// when the file it patches changes under it. Replacements apply in order,
/// each on the result of the previous one.
pub fn replace_exact<F: AsRef<str>, T: AsRef<str>>(text: &str, pairs: &[(F, T)]) -> Result<String> {
    let mut out = text.to_string();
    let mut missing = Vec::new();
    for (from, to) in pairs {
        let from = from.as_ref();
        if from.is_empty() || !out.contains(from) {
            missing.push(format!("{from:?}"));
            continue;
        }
        out = out.replace(from, to.as_ref());
    }
    if !missing.is_empty() {
        bail!("strings to replace not found: {}", missing.join(", "));
    }
    Ok(out)
}

/// Substitute `${NAME}` placeholders (NAME of `A-Z 0-9 _`) from `vars`;
/// fail if any is left or unterminated, listing them. Other `${` text
/// (a comment saying `${...}`) stays. Values are not re-scanned.
pub fn render<K: AsRef<str>, V: AsRef<str>>(template: &str, vars: &[(K, V)]) -> Result<String> {
    let map: BTreeMap<&str, &str> = vars.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    let mut out = String::with_capacity(template.len());
    let mut missing = BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        let name = &after[..len];
        if name.is_empty() {
            out.push_str("${");
            rest = after;
            continue;
        }
        if !after[len..].starts_with('}') {
            missing.insert(format!("(unterminated) {name}"));
            out.push_str("${");
            rest = after;
            continue;
        }
        match map.get(name) {
            Some(v) => out.push_str(v),
            None => {
                missing.insert(name.to_string());
                out.push_str(&rest[start..start + 2 + len + 1]);
            }
        }
        rest = &after[len + 1..];
    }
    out.push_str(rest);
    if !missing.is_empty() {
        bail!(
            "template placeholders left unsubstituted: {}",
            missing
                .into_iter()
                .map(|m| format!("${{{m}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}

/// Read `<workspace>/envoy/<rel>` and [`render`] it.
pub fn render_file<K: AsRef<str>, V: AsRef<str>>(rel: &str, vars: &[(K, V)]) -> Result<String> {
    let text = read_envoy_file(rel)?;
    render(&text, vars).with_context(|| format!("rendering envoy/{rel}"))
}

/// The smallest Envoy bootstrap that runs a module as an HTTP filter: admin
/// and one plaintext listener on ephemeral ports, the wasm filter, and a
/// route that answers `direct_status` with `direct_body` itself (plus, with
/// `ws_upstream`, a `/ws` route to an upstream on 127.0.0.1). For tests of
/// a module's behaviour in Envoy (exports, failure policies), not of the
/// shipped configs.
#[derive(Debug, Clone)]
pub struct MinimalWasm<'a> {
    pub module: &'a std::path::Path,
    /// `name`, `root_id` and `vm_id`.
    pub vm: &'a str,
    pub failure_policy: &'a str,
    /// The plugin configuration (a StringValue), if any.
    pub plugin_config: Option<&'a str>,
    pub direct_status: u16,
    pub direct_body: &'a str,
    pub ws_upstream: Option<u16>,
}

impl<'a> MinimalWasm<'a> {
    /// `FAIL_CLOSED`, no plugin configuration, `200 routed`, no upstream.
    pub fn new(module: &'a std::path::Path, vm: &'a str) -> MinimalWasm<'a> {
        MinimalWasm {
            module,
            vm,
            failure_policy: "FAIL_CLOSED",
            plugin_config: None,
            direct_status: 200,
            direct_body: "routed\n",
            ws_upstream: None,
        }
    }

    pub fn render(&self) -> String {
        let (ws_route, clusters) = match self.ws_upstream {
            Some(port) => (
                "              - match: { prefix: /ws }\n                route: { cluster: up, timeout: 10s }\n"
                    .to_string(),
                format!(
                    r#"  clusters:
  - name: up
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#
                ),
            ),
            None => (String::new(), String::new()),
        };
        let configuration = match self.plugin_config {
            Some(plugin) => format!(
                "                configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n                  value: '{}'\n",
                plugin.replace('\'', "''")
            ),
            None => String::new(),
        };
        let body = serde_json::to_string(self.direct_body).unwrap_or_default();
        format!(
            r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          codec_type: HTTP1
          upgrade_configs: [{{ upgrade_type: websocket }}]
          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{ws_route}              - match: {{ prefix: / }}
                direct_response: {{ status: {status}, body: {{ inline_string: {body} }} }}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {vm}
                root_id: {vm}
                failure_policy: {policy}
                vm_config:
                  vm_id: {vm}
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{module}" }} }}
{configuration}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{clusters}"#,
            module = self.module.display(),
            vm = self.vm,
            policy = self.failure_policy,
            status = self.direct_status,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_substitutes_and_rejects_leftovers() {
        let out = render("a: ${A}\nb: ${B_2} ${A}", &[("A", "1"), ("B_2", "two")]).unwrap();
        assert_eq!(out, "a: 1\nb: two 1");
        let err = render("a: ${A} ${C}", &[("A", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("${C}"), "{err}");
        let err = render("a: ${A", &[("A", "1")]).unwrap_err().to_string();
        assert!(err.contains("unterminated"), "{err}");
        // Values are not re-scanned, and a comment's `${...}` stays.
        assert_eq!(render("${A}", &[("A", "${B}")]).unwrap(), "${B}");
        let t = "port ${PORT} # ${...} stays\nmodule ${MODULE}";
        let out = render(t, &[("PORT", "80"), ("MODULE", "/m.wasm")]).unwrap();
        assert_eq!(out, "port 80 # ${...} stays\nmodule /m.wasm");
    }

    #[test]
    fn replace_exact_requires_every_string() {
        let out = replace_exact(
            "port_value: 443 # x",
            &[("port_value: 443", "port_value: 0")],
        )
        .unwrap();
        assert_eq!(out, "port_value: 0 # x");
        let err = replace_exact("abc", &[("a", "b"), ("zzz", "y")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("zzz") && !err.contains("\"a\""), "{err}");
    }
}
