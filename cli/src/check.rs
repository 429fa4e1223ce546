//! `mksgate check-config`: validate plugin configurations with the filter's
//! own parser.

use crate::load::{self, EnvMode, EnvStatus, Parsed};
use crate::util::{one_line, Outcome};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

/// Validate mksgate plugin configurations with the filter's own parser.
///
/// FILE is plugin JSON, an Envoy bootstrap or listener YAML/JSON (every
/// envoy.filters.http.wasm filter's StringValue `configuration` is
/// checked), or Istio WasmPlugin YAML (`spec.pluginConfig`); multi-document
/// YAML is fine. A `secret_env` variable that is not set here is replaced
/// by a dummy secret and reported (unless --strict-env); one that the
/// Envoy or Istio config does not hand to the VM is an error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to check.
    file: PathBuf,
    /// Treat a secret_env variable that is not set in this environment as
    /// an error (default: check the rest with a dummy secret).
    #[arg(long)]
    strict_env: bool,
    /// Treat warnings as errors (for example scoped and unscoped keys mixed
    /// in one configuration).
    #[arg(long)]
    strict: bool,
}

pub fn run(args: &Args) -> Outcome<ExitCode> {
    let file = args.file.display().to_string();
    let mode = if args.strict_env {
        EnvMode::Strict
    } else {
        EnvMode::ShapeOnly
    };
    let found = load::find(&args.file)?;
    let mut errors = 0;
    let mut warnings = 0;
    for item in &found {
        match &item.body {
            Err((field, reason)) => {
                errors += 1;
                eprintln!("error: {file}: {}{field}: {reason}", at(&item.label));
            }
            Ok((json, vm)) => match load::parse(json, vm, mode) {
                Ok(parsed) => match unknown_cluster(&parsed, item.clusters.as_deref()) {
                    Some((field, cluster)) => {
                        errors += 1;
                        eprintln!(
                            "error: {file}: {}{field}: cluster {cluster} is not defined in this file's static_resources.clusters (a typo routes every console to 503)",
                            at(&item.label)
                        );
                    }
                    None => {
                        for line in describe(&parsed, json) {
                            crate::outln!("ok: {file}: {}{line}", at(&item.label));
                        }
                        for line in warnings_of(&parsed) {
                            warnings += 1;
                            eprintln!("warning: {file}: {}{line}", at(&item.label));
                        }
                    }
                },
                Err(e) => {
                    errors += 1;
                    eprintln!(
                        "error: {file}: {}{}: {}",
                        at(&item.label),
                        e.field,
                        one_line(&e.reason)
                    );
                }
            },
        }
    }
    // Each refusal was reported on its own line above.
    Ok(if errors > 0 || (args.strict && warnings > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The first upstream whose cluster the file does not define, when the
/// file defines clusters: (its field, the cluster name).
fn unknown_cluster(parsed: &Parsed, clusters: Option<&[String]>) -> Option<(String, String)> {
    let clusters = clusters?;
    let up = &parsed.config.upstreams;
    let mut hosts: Vec<(&String, &String)> = up.hosts.iter().collect();
    hosts.sort();
    let named = hosts
        .into_iter()
        .map(|(h, c)| (format!("upstreams.hosts.\"{h}\""), c))
        .chain(
            up.host_suffixes
                .iter()
                .map(|(s, c)| (format!("upstreams.host_suffixes.\"{s}\""), c)),
        );
    for (field, cluster) in named {
        if !clusters.iter().any(|c| c == cluster) {
            return Some((field, cluster.clone()));
        }
    }
    None
}

/// What is valid but weakens the configuration.
fn warnings_of(parsed: &Parsed) -> Vec<String> {
    let c = &parsed.config;
    let mut lines = Vec::new();
    if c.mixes_scoped_and_unscoped_keys() {
        let unscoped: Vec<String> = c
            .keys
            .iter()
            .zip(&c.key_scopes)
            .enumerate()
            .filter(|(_, (_, scope))| scope.is_none())
            .map(|(i, (key, _))| format!("keys[{i}] (kid {})", key.kid().unwrap_or("none")))
            .collect();
        lines.push(format!(
            "keys: scoped and unscoped keys are mixed; {} can open every tenant's hosts, which undoes the scopes (give every key a scope)",
            unscoped.join(", ")
        ));
    }
    lines
}

/// `label: `, or nothing for a file that is one bare plugin configuration.
fn at(label: &str) -> String {
    if label.is_empty() {
        String::new()
    } else {
        format!("{label}: ")
    }
}

/// What was checked, one line each: a summary, then one line per key.
fn describe(parsed: &Parsed, json: &str) -> Vec<String> {
    let c = &parsed.config;
    let mut lines = vec![format!(
        "valid: {} key(s), {} host(s), {} host suffix(es), path_prefix {}, token_param {}, max_ttl_seconds {}, one_time_links {}{}{}",
        c.keys.len(),
        c.upstreams.hosts.len(),
        c.upstreams.host_suffixes.len(),
        c.path_prefix,
        c.token_param,
        c.max_ttl_seconds,
        c.one_time_links,
        c.audience.as_ref().map(|a| format!(", audience {a}")).unwrap_or_default(),
        c.issuer.as_ref().map(|i| format!(", issuer {i}")).unwrap_or_default(),
    )];
    let raw: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let entries = raw.get("keys").and_then(Value::as_array);
    for (i, key) in c.keys.iter().enumerate() {
        let entry = entries.and_then(|e| e.get(i));
        let source = match entry
            .and_then(|e| e.get("secret_env"))
            .and_then(Value::as_str)
        {
            Some(name) => {
                let status = parsed
                    .env
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, s)| s.clone());
                match status {
                    Some(EnvStatus::SetHere) => {
                        format!("secret from env {name} (set here; checked)")
                    }
                    Some(EnvStatus::Inline) => {
                        format!("secret from env {name} (value inline in the VM config; checked)")
                    }
                    _ => format!("secret from env {name} (not set here; checked shape only)"),
                }
            }
            None => "secret inline (secret_base64url; checked)".to_string(),
        };
        let scope = match c.key_scopes.get(i).and_then(Option::as_ref) {
            None => String::new(),
            Some(s) => format!(
                "; scope: {} host(s), {} suffix(es), tenants {}",
                s.hosts.len(),
                s.host_suffixes.len(),
                s.tenants
                    .as_ref()
                    .map_or("any".to_string(), |t| t.join(","))
            ),
        };
        lines.push(format!(
            "keys[{i}] (kid {}, {}): {source}{scope}",
            key.kid().unwrap_or("none"),
            key.alg().name()
        ));
    }
    lines
}
