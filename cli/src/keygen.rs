//! `mksgate keygen`: a fresh secret and the snippets that deliver it.

use crate::keys::{check_kid, AlgArg};
use crate::util::{fail, json_string, now, random_bytes, year_month, Outcome};
use mksgate_core::jws::encode_secret;
use std::process::ExitCode;

/// Print a fresh random HMAC secret and the snippets that deliver it.
///
/// Besides the secret: the environment line, the plugin configuration's
/// `keys[]` entry (by `secret_env`), and a Kubernetes Secret for an Istio
/// gateway.
///
/// This is the one command that prints a secret: send its output where the
/// secret should go, not to a shared terminal log.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// HMAC algorithm; the secret is as long as its hash output (32, 48 or
    /// 64 bytes).
    #[arg(long, value_enum, default_value = "HS256")]
    alg: AlgArg,
    /// Key id for the token header and the `keys[]` entry [default: the
    /// current month, like 2026-11].
    #[arg(long, value_name = "K")]
    kid: Option<String>,
    /// Environment variable that carries the secret [default: MKSGATE_KEY_
    /// plus the kid in upper case, like MKSGATE_KEY_2026_11].
    #[arg(long, value_name = "MKSGATE_KEY_...")]
    env_name: Option<String>,
    /// Name of the Kubernetes Secret holding the keys.
    #[arg(long, default_value = "mksgate-keys", value_name = "NAME")]
    secret_name: String,
    /// Namespace of the Secret (the gateway's).
    #[arg(long, default_value = "istio-ingress")]
    namespace: String,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Outcome<ExitCode> {
    let alg = args.alg.alg();
    let kid = match &args.kid {
        Some(kid) => kid.clone(),
        None => year_month(now(None)?),
    };
    check_kid(&kid)?;
    let env_name = match &args.env_name {
        Some(name) => name.clone(),
        None => default_env_name(&kid),
    };
    if !valid_env_name(&env_name) {
        return Err(fail(
            "--env-name must be A-Z, 0-9 and _, not starting with a digit (like MKSGATE_KEY_2026_11)",
        ));
    }
    let secret = encode_secret(&random_bytes(alg.min_secret_len())?);
    let entry = serde_json::json!({"kid": kid, "alg": alg.name(), "secret_env": env_name});
    if !valid_k8s_name(&args.secret_name) || !valid_k8s_name(&args.namespace) {
        return Err(fail(
            "--secret-name and --namespace must be DNS-1123 labels (a-z 0-9 -, at most 63)",
        ));
    }
    let (k8s_name, namespace) = (&args.secret_name, &args.namespace);
    let k8s_secret = format!(
        "# During a rotation, add this entry to the existing Secret and keep the\n\
         # old key until no live link uses it.\n\
         apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n  \
           name: {k8s_name}\n  \
           namespace: {namespace}\n\
         type: Opaque\n\
         stringData:\n  \
           {env_name}: {}\n",
        json_string(&secret)
    );
    let proxy_env = format!(
        "envFrom:\n\
         - secretRef:\n    \
             name: {k8s_name}\n"
    );
    let wasm_plugin_env = format!(
        "vmConfig:\n  \
           env:\n  \
           - name: {env_name}\n    \
             valueFrom: HOST\n"
    );

    if args.json {
        let out = serde_json::json!({
            "alg": alg.name(),
            "kid": kid,
            "env_name": env_name,
            "secret": secret,
            "env_line": format!("{env_name}={secret}"),
            "key_entry": entry,
            "kubernetes_secret": k8s_secret,
            "istio_proxy_env": proxy_env,
            "wasm_plugin_vm_config": wasm_plugin_env,
        });
        crate::outln!("{out:#}");
        return Ok(ExitCode::SUCCESS);
    }

    let bytes = alg.min_secret_len();
    crate::outln!(
        "# mksgate key {kid}: {bytes} random bytes for {}, base64url without padding.",
        alg.name()
    );
    crate::outln!("# Keep it secret: anyone holding it can mint console links.");
    crate::outln!();
    crate::outln!("# 1. Environment of Envoy (list the name in vm_config.environment_variables.host_env_keys):");
    crate::outln!("{env_name}={secret}");
    crate::outln!();
    crate::outln!("# 2. Plugin configuration, an entry of \"keys\":");
    crate::outln!("{entry}");
    crate::outln!();
    crate::outln!("# 3. Kubernetes: the Secret ...");
    crate::out!("{k8s_secret}");
    crate::outln!("# ... given to the istio-proxy container of the gateway Deployment:");
    for line in proxy_env.lines() {
        crate::outln!("#   {line}");
    }
    crate::outln!("# ... and handed to the VM by the WasmPlugin (spec):");
    for line in wasm_plugin_env.lines() {
        crate::outln!("#   {line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn default_env_name(kid: &str) -> String {
    let suffix: String = kid
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("MKSGATE_KEY_{suffix}")
}

fn valid_env_name(name: &str) -> bool {
    name.len() <= 128
        && name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A DNS-1123 label, as Secret names and namespaces are.
fn valid_k8s_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(default_env_name("2026-11"), "MKSGATE_KEY_2026_11");
        assert!(valid_env_name("MKSGATE_KEY_2026_11"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name("lower"));
        assert!(!valid_env_name(""));
        assert!(valid_k8s_name("mksgate-keys"));
        assert!(!valid_k8s_name("Mksgate"));
        assert!(!valid_k8s_name("-a"));
    }
}
