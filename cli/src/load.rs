//! Finds mksgate plugin configurations in a file: plain JSON (or YAML), an
//! Envoy bootstrap or listener (every `envoy.filters.http.wasm` filter), or
//! Istio `WasmPlugin` manifests; multi-document YAML included. Each is then
//! parsed with `mksgate_core::Config::parse`, the filter's own code.

use crate::util::{fail, Outcome};
use mksgate_core::jws::encode_secret;
use mksgate_core::{Config, ConfigError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

const WASM_FILTER_TYPE: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "google.protobuf.StringValue";

/// How the VM gets its environment, which decides where `secret_env` is
/// looked up.
#[derive(Debug, Clone)]
pub enum VmEnv {
    /// A bare plugin configuration: this process's environment.
    Process,
    /// Envoy's `vm_config.environment_variables`.
    Envoy {
        host_env_keys: Vec<String>,
        key_values: BTreeMap<String, String>,
    },
    /// Istio's `spec.vmConfig.env`.
    Istio {
        host: Vec<String>,
        inline: BTreeMap<String, String>,
    },
}

/// One plugin configuration found in a file.
#[derive(Debug)]
pub struct Found {
    /// Where it is, for messages: `doc 2: WasmPlugin istio-system/mksgate`.
    pub label: String,
    /// The configuration as the filter would receive it, or why it cannot
    /// be extracted (a field path and a reason).
    pub body: Result<(String, VmEnv), (String, String)>,
    /// The clusters the same document defines (`static_resources.clusters`
    /// of an Envoy bootstrap), to check the plugin's cluster names against;
    /// `None` where the file does not hold them (a listener file, Istio,
    /// Envoy Gateway, bare plugin JSON).
    pub clusters: Option<Vec<String>>,
}

/// Reads `path` and lists every plugin configuration in it.
pub fn find(path: &Path) -> Outcome<Vec<Found>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    // A JSON file is passed through byte for byte, as the filter gets it.
    if let Ok(doc) = serde_json::from_str::<Value>(&text) {
        if is_plugin_config(&doc) {
            return Ok(vec![Found {
                label: String::new(),
                body: Ok((text, VmEnv::Process)),
                clusters: None,
            }]);
        }
        let found = classify(&doc, "");
        return nonempty(found, path);
    }
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let mut value = serde_yaml_ng::Value::deserialize(de).map_err(|e| {
            fail(format!(
                "{}: document {}: not valid YAML or JSON: {e}",
                path.display(),
                i + 1
            ))
        })?;
        value
            .apply_merge()
            .map_err(|e| fail(format!("{}: document {}: {e}", path.display(), i + 1)))?;
        let json = yaml_to_json(value)
            .map_err(|e| fail(format!("{}: document {}: {e}", path.display(), i + 1)))?;
        docs.push(json);
    }
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let several = docs.len() > 1;
    let mut found = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let prefix = if several {
            format!("doc {}: ", i + 1)
        } else {
            String::new()
        };
        if is_plugin_config(doc) {
            found.push(Found {
                label: prefix.trim_end_matches(": ").to_string(),
                body: Ok((doc.to_string(), VmEnv::Process)),
                clusters: None,
            });
        } else {
            found.extend(classify(doc, &prefix));
        }
    }
    nonempty(found, path)
}

fn nonempty(found: Vec<Found>, path: &Path) -> Outcome<Vec<Found>> {
    if found.is_empty() {
        Err(fail(format!(
            "{}: no mksgate plugin configuration found (expected plugin JSON, an Envoy config with an envoy.filters.http.wasm filter, or an Istio WasmPlugin)",
            path.display()
        )))
    } else {
        Ok(found)
    }
}

/// A bare plugin configuration: an object with `keys` or `upstreams` that
/// is neither a Kubernetes object nor an Envoy bootstrap.
fn is_plugin_config(doc: &Value) -> bool {
    doc.as_object().is_some_and(|m| {
        (m.contains_key("keys") || m.contains_key("upstreams"))
            && !m.contains_key("kind")
            && !m.contains_key("static_resources")
    })
}

fn classify(doc: &Value, prefix: &str) -> Vec<Found> {
    match doc.get("kind").and_then(Value::as_str) {
        Some("WasmPlugin") => return vec![istio(doc, prefix)],
        Some("EnvoyExtensionPolicy") => return envoy_gateway(doc, prefix),
        _ => {}
    }
    let mut found = Vec::new();
    walk_envoy(doc, String::new(), prefix, &mut found);
    let clusters = doc
        .get("static_resources")
        .and_then(|r| r.get("clusters"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
    for f in &mut found {
        f.clusters.clone_from(&clusters);
    }
    found
}

fn istio(doc: &Value, prefix: &str) -> Found {
    let meta = doc.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let label = match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{prefix}WasmPlugin {ns}/{name}"),
        None => format!("{prefix}WasmPlugin {name}"),
    };
    let spec = doc.get("spec");
    let body = match spec.and_then(|s| s.get("pluginConfig")) {
        None => Err((
            "spec.pluginConfig".into(),
            "is missing (the plugin configuration goes there)".into(),
        )),
        Some(Value::Object(cfg)) => {
            let env = spec
                .and_then(|s| s.get("vmConfig"))
                .and_then(|v| v.get("env"))
                .and_then(Value::as_array);
            let mut host = Vec::new();
            let mut inline = BTreeMap::new();
            for var in env.into_iter().flatten() {
                let Some(name) = var.get("name").and_then(Value::as_str) else {
                    continue;
                };
                match var.get("valueFrom").and_then(Value::as_str) {
                    Some("HOST") => host.push(name.to_string()),
                    _ => {
                        let value = var.get("value").and_then(Value::as_str).unwrap_or("");
                        inline.insert(name.to_string(), value.to_string());
                    }
                }
            }
            Ok((
                Value::Object(cfg.clone()).to_string(),
                VmEnv::Istio { host, inline },
            ))
        }
        Some(_) => Err((
            "spec.pluginConfig".into(),
            "must be an object (the plugin configuration as YAML)".into(),
        )),
    };
    Found {
        label,
        body,
        clusters: None,
    }
}

/// Envoy Gateway's `EnvoyExtensionPolicy`: each `spec.wasm[i].config` is a
/// plugin configuration, and `spec.wasm[i].env.hostKeys` the variables the
/// VM gets from the proxy's environment (Envoy's `host_env_keys`).
fn envoy_gateway(doc: &Value, prefix: &str) -> Vec<Found> {
    let meta = doc.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let policy = match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{prefix}EnvoyExtensionPolicy {ns}/{name}"),
        None => format!("{prefix}EnvoyExtensionPolicy {name}"),
    };
    let Some(wasm) = doc
        .get("spec")
        .and_then(|s| s.get("wasm"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    wasm.iter()
        .enumerate()
        .map(|(i, entry)| {
            let label = match entry.get("name").and_then(Value::as_str) {
                Some(n) => format!("{policy} spec.wasm[{i}] ({n})"),
                None => format!("{policy} spec.wasm[{i}]"),
            };
            let host_env_keys = strings(entry.get("env").and_then(|e| e.get("hostKeys")));
            let body = match entry.get("config") {
                Some(Value::Object(cfg)) => Ok((
                    Value::Object(cfg.clone()).to_string(),
                    VmEnv::Envoy {
                        host_env_keys,
                        key_values: BTreeMap::new(),
                    },
                )),
                None => Err((
                    format!("spec.wasm[{i}].config"),
                    "is missing (the plugin configuration goes there)".into(),
                )),
                Some(_) => Err((
                    format!("spec.wasm[{i}].config"),
                    "must be an object (the plugin configuration as YAML)".into(),
                )),
            };
            Found {
                label,
                body,
                clusters: None,
            }
        })
        .collect()
}

/// A JSON array's strings (other items skipped); empty when absent.
fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn type_is(value: &Value, type_name: &str) -> bool {
    value
        .get("@type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.rsplit('/').next() == Some(type_name))
}

fn walk_envoy(value: &Value, path: String, prefix: &str, found: &mut Vec<Found>) {
    match value {
        Value::Object(map) => {
            if type_is(value, WASM_FILTER_TYPE) {
                found.push(envoy_wasm(map, &path, prefix));
                return;
            }
            // xds.type.v3.TypedStruct / udpa.type.v1.TypedStruct wrapping one.
            let wrapped = map
                .get("type_url")
                .and_then(Value::as_str)
                .is_some_and(|t| t.rsplit('/').next() == Some(WASM_FILTER_TYPE));
            if wrapped {
                if let Some(Value::Object(inner)) = map.get("value") {
                    found.push(envoy_wasm(inner, &format!("{path}.value"), prefix));
                    return;
                }
            }
            for (key, child) in map {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk_envoy(child, sub, prefix, found);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk_envoy(child, format!("{path}[{i}]"), prefix, found);
            }
        }
        _ => {}
    }
}

fn envoy_wasm(wasm: &Map<String, Value>, path: &str, prefix: &str) -> Found {
    let config = wasm.get("config");
    let name = config
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let label = match name {
        Some(n) => format!("{prefix}{path} (wasm plugin {n})"),
        None => format!("{prefix}{path} (wasm plugin)"),
    };
    let env_vars = config
        .and_then(|c| c.get("vm_config"))
        .and_then(|v| v.get("environment_variables"));
    let host_env_keys = strings(env_vars.and_then(|e| e.get("host_env_keys")));
    let key_values = env_vars
        .and_then(|e| e.get("key_values"))
        .and_then(Value::as_object)
        .map(|kv| {
            kv.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let body = match config.and_then(|c| c.get("configuration")) {
        None => Err((
            "config.configuration".into(),
            "is missing (the filter needs its plugin configuration)".into(),
        )),
        Some(any) if type_is(any, STRING_VALUE_TYPE) => {
            let text = any.get("value").and_then(Value::as_str).unwrap_or("");
            Ok((
                text.to_string(),
                VmEnv::Envoy {
                    host_env_keys,
                    key_values,
                },
            ))
        }
        Some(_) => Err((
            "config.configuration".into(),
            "must be a google.protobuf.StringValue whose value is the plugin JSON".into(),
        )),
    };
    Found {
        label,
        body,
        clusters: None,
    }
}

fn yaml_to_json(value: serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{f} has no JSON form"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_string(),
                    _ => return Err("a mapping key is not a scalar".into()),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

/// Where a `secret_env` value came from while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvStatus {
    /// Set in this process (and handed to the VM, where that applies).
    SetHere,
    /// Written in the VM configuration itself.
    Inline,
    /// Handed to the VM from the host, but unset here: a dummy secret was
    /// used to check the rest.
    UnsetHere,
    /// Not handed to the VM at all: the filter will not see it.
    NotPassed,
}

/// The one plugin configuration in `path` (or its `index`-th), parsed by
/// the filter's code; every problem is one error naming the file and field.
/// For `inspect` (real secrets: `EnvMode::Strict`) and `sign --config`
/// (only the scopes matter: `EnvMode::ShapeOnly`).
pub fn one_config(path: &Path, index: Option<usize>, mode: EnvMode) -> Outcome<Config> {
    let found = find(path)?;
    let item = match (index, found.len()) {
        (Some(i), n) => found.get(i).ok_or_else(|| {
            fail(format!(
                "--config-index {i}: {} holds {n} plugin configuration(s)",
                path.display()
            ))
        })?,
        (None, 1) => found
            .first()
            .ok_or_else(|| fail("no plugin configuration"))?,
        (None, n) => {
            return Err(fail(format!(
                "{} holds {n} plugin configurations; choose one with --config-index (0 to {})",
                path.display(),
                n - 1
            )))
        }
    };
    let label = if item.label.is_empty() {
        String::new()
    } else {
        format!("{}: ", item.label)
    };
    let (json, vm) = item
        .body
        .as_ref()
        .map_err(|(field, reason)| fail(format!("{}: {label}{field}: {reason}", path.display())))?;
    parse(json, vm, mode).map(|p| p.config).map_err(|e| {
        fail(format!(
            "{}: {label}{}: {}",
            path.display(),
            e.field,
            crate::util::one_line(&e.reason)
        ))
    })
}

/// Whether unset host variables are an error (`--strict-env`, `inspect`)
/// or replaced by a dummy secret to check the shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvMode {
    ShapeOnly,
    Strict,
}

/// A parsed configuration and how each `secret_env` was resolved.
pub struct Parsed {
    pub config: Config,
    pub env: Vec<(String, EnvStatus)>,
}

/// Parses with the filter's own code. Errors keep the filter's field name
/// and reason; only reasons about environment variables are reworded to
/// say what is wrong here.
pub fn parse(json: &str, vm: &VmEnv, mode: EnvMode) -> Result<Parsed, ConfigError> {
    let seen: RefCell<Vec<(String, EnvStatus)>> = RefCell::new(Vec::new());
    let lookup = |name: &str| -> Option<String> {
        let (value, status) = resolve(vm, name, mode);
        seen.borrow_mut().push((name.to_string(), status));
        value
    };
    let result = Config::parse(json.as_bytes(), &lookup);
    let seen = seen.into_inner();
    match result {
        Ok(config) => Ok(Parsed { config, env: seen }),
        Err(mut error) => {
            if error.field.ends_with(".secret_env") || error.field.ends_with(".password_env") {
                if let Some((name, status)) = seen.last() {
                    if let Some(reason) = env_reason(vm, name, status) {
                        error.reason = reason;
                    }
                }
            }
            Err(error)
        }
    }
}

fn env_reason(vm: &VmEnv, name: &str, status: &EnvStatus) -> Option<String> {
    match status {
        EnvStatus::NotPassed => Some(match vm {
            VmEnv::Envoy { .. } => format!(
                "environment variable {name} is not handed to the VM: list it in vm_config.environment_variables.host_env_keys"
            ),
            VmEnv::Istio { .. } => format!(
                "environment variable {name} is not handed to the VM: add it to spec.vmConfig.env (valueFrom: HOST)"
            ),
            VmEnv::Process => format!("environment variable {name} is not set"),
        }),
        EnvStatus::UnsetHere => Some(format!(
            "environment variable {name} is not set here (needed for the real secret)"
        )),
        EnvStatus::SetHere | EnvStatus::Inline => None,
    }
}

/// A secret that satisfies every alg's length, for shape-only checks.
fn dummy_secret() -> String {
    encode_secret(&[0x5a; 64])
}

fn resolve(vm: &VmEnv, name: &str, mode: EnvMode) -> (Option<String>, EnvStatus) {
    let from_host = || match std::env::var(name) {
        Ok(value) => (Some(value), EnvStatus::SetHere),
        Err(_) => match mode {
            EnvMode::ShapeOnly => (Some(dummy_secret()), EnvStatus::UnsetHere),
            EnvMode::Strict => (None, EnvStatus::UnsetHere),
        },
    };
    match vm {
        VmEnv::Process => from_host(),
        VmEnv::Envoy {
            host_env_keys,
            key_values,
        } => {
            if let Some(value) = key_values.get(name) {
                (Some(value.clone()), EnvStatus::Inline)
            } else if host_env_keys.iter().any(|k| k == name) {
                from_host()
            } else {
                (None, EnvStatus::NotPassed)
            }
        }
        VmEnv::Istio { host, inline } => {
            if let Some(value) = inline.get(name) {
                (Some(value.clone()), EnvStatus::Inline)
            } else if host.iter().any(|k| k == name) {
                from_host()
            } else {
                (None, EnvStatus::NotPassed)
            }
        }
    }
}

#[cfg(test)]
mod tests;
