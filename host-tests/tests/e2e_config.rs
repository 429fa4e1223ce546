//! A bad plugin configuration makes Envoy refuse the config, with one log
//! line naming the field (`mksgate: config refused: <field>: <why>`) and
//! never the secret: checked with `envoy --mode validate` on the shipped
//! static-clusters.yaml with only its plugin JSON replaced, and once with a
//! real Envoy start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{plugin_json, random_bytes, shipped_static_for_validation, with_plugin_json};
use mksgate_core::jws::encode_secret;
use mksgate_host_tests::envoy::{Envoy, EnvoyOpts};
use mksgate_host_tests::shipped;
use mksgate_host_tests::tls::CertKey;
use serde_json::{json, Value};

/// The shipped config and its plugin JSON.
fn shipped() -> (String, Value) {
    let yaml = shipped_static_for_validation().unwrap();
    let (_, plugin) = plugin_json(&yaml).unwrap();
    (yaml, plugin)
}

/// `envoy --mode validate` on `yaml` with the gateway certificate and key
/// written to a temporary directory (validation loads them).
fn validate(yaml: &str, env: &[(String, String)]) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!(
        "mksgate-e2e-config-{}-{}",
        std::process::id(),
        common::random_hex(6)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = CertKey::self_signed(&[common::GATEWAY_NAME]).unwrap();
    std::fs::write(dir.join(shipped::GATEWAY_CERT_FILE), &cert.cert_pem).unwrap();
    std::fs::write(dir.join(shipped::GATEWAY_KEY_FILE), &cert.key_pem).unwrap();
    let cfg = yaml.replace("@TMPDIR@", &dir.to_string_lossy());
    let result = Envoy::validate_with_env(&cfg, env);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn env(value: &str) -> Vec<(String, String)> {
    vec![(shipped::KEY_ENV.to_string(), value.to_string())]
}

/// Validates `plugin` in the shipped config; asserts Envoy refuses it with
/// `mksgate: config refused: <field>` and that `secret` (if any) is not in
/// its output. Returns the refusal line.
fn refused(plugin: &Value, env: &[(String, String)], field: &str, secret: Option<&str>) -> String {
    let (yaml, _) = shipped();
    let cfg = with_plugin_json(&yaml, plugin).unwrap();
    let out = match validate(&cfg, env) {
        Ok(out) => panic!("Envoy accepted a bad plugin config ({field}):\n{out}"),
        Err(e) => format!("{e:#}"),
    };
    let wanted = format!("mksgate: config refused: {field}: ");
    let line = out
        .lines()
        .find(|l| l.contains(&wanted))
        .unwrap_or_else(|| panic!("no line with {wanted:?} in Envoy's output:\n{out}"))
        .to_string();
    assert_eq!(
        out.matches("mksgate: config refused:").count(),
        out.lines()
            .filter(|l| l.contains("mksgate: config refused:"))
            .count()
    );
    if let Some(secret) = secret {
        assert!(
            !out.contains(secret),
            "the secret is in Envoy's output:\n{out}"
        );
    }
    println!(
        "{field}: {}",
        &line[line.find("mksgate: config refused").unwrap()..]
    );
    line
}

#[test]
fn the_shipped_plugin_config_validates() {
    let (yaml, plugin) = shipped();
    // Round trip through the helper changes nothing that matters.
    let same = with_plugin_json(&yaml, &plugin).unwrap();
    let secret = encode_secret(&random_bytes(32));
    validate(&yaml, &env(&secret)).unwrap();
    let out = validate(&same, &env(&secret)).unwrap();
    assert!(!out.contains(&secret));
    assert_eq!(plugin["keys"][0]["secret_env"], shipped::KEY_ENV);
}

#[test]
fn short_secret_base64url_is_refused_without_logging_it() {
    let (_, mut plugin) = shipped();
    let short = encode_secret(&random_bytes(24));
    plugin["keys"][0] = json!({"kid": "2026-11", "alg": "HS256", "secret_base64url": short});
    let line = refused(&plugin, &[], "keys[0].secret_base64url", Some(&short));
    assert!(
        line.contains("secret is 24 bytes; HS256 needs at least 32"),
        "{line}"
    );
}

#[test]
fn short_secret_env_is_refused_without_logging_it() {
    let (_, plugin) = shipped();
    let short = encode_secret(&random_bytes(20));
    let line = refused(&plugin, &env(&short), "keys[0].secret_env", Some(&short));
    assert!(line.contains("secret is 20 bytes"), "{line}");
    // HS512 needs 64 bytes: a 48-byte secret is refused for it.
    let (_, mut plugin) = shipped();
    plugin["keys"][0]["alg"] = json!("HS512");
    let mid = encode_secret(&random_bytes(48));
    let line = refused(&plugin, &env(&mid), "keys[0].secret_env", Some(&mid));
    assert!(line.contains("HS512 needs at least 64"), "{line}");
}

#[test]
fn missing_secret_env_is_refused() {
    assert!(
        std::env::var_os(shipped::KEY_ENV).is_none(),
        "{} is set in the test's environment; Envoy would inherit it",
        shipped::KEY_ENV
    );
    let (_, plugin) = shipped();
    let line = refused(&plugin, &[], "keys[0].secret_env", None);
    assert!(line.contains("is not set"), "{line}");
    // Set in Envoy's environment but not passed to the VM (not in
    // host_env_keys): the same refusal.
    let (_, mut plugin) = shipped();
    plugin["keys"][0]["secret_env"] = json!("MKSGATE_KEY_NOT_PASSED");
    let secret = encode_secret(&random_bytes(32));
    let env = vec![("MKSGATE_KEY_NOT_PASSED".to_string(), secret.clone())];
    refused(&plugin, &env, "keys[0].secret_env", Some(&secret));
}

#[test]
fn unknown_field_in_upstreams_is_refused() {
    let secret = encode_secret(&random_bytes(32));
    let (_, mut plugin) = shipped();
    plugin["upstreams"]["host"] = json!({"vesxi03.sec.lab": "esxi_vesxi03"});
    let line = refused(&plugin, &env(&secret), "upstreams.host", Some(&secret));
    assert!(line.contains("unknown field"), "{line}");
    // Anywhere else too: a typo cannot switch a check off.
    let (_, mut plugin) = shipped();
    plugin["audiance"] = json!("console.example.com");
    refused(&plugin, &env(&secret), "audiance", Some(&secret));
    let (_, mut plugin) = shipped();
    plugin["keys"][0]["algorithm"] = json!("HS256");
    refused(&plugin, &env(&secret), "keys[0].algorithm", Some(&secret));
}

#[test]
fn empty_keys_and_other_field_errors_are_refused() {
    let secret = encode_secret(&random_bytes(32));
    let (_, mut plugin) = shipped();
    plugin["keys"] = json!([]);
    let line = refused(&plugin, &env(&secret), "keys", None);
    assert!(line.contains("at least one key"), "{line}");
    let cases: [(Value, &str); 5] = [
        (json!({"keys": null}), "keys"),
        (json!({"upstreams": {"hosts": {}}}), "upstreams"),
        (
            json!({"upstreams": {"hosts": {"VESXI01.sec.lab": "esxi_vesxi01"}}}),
            "upstreams.hosts.\"VESXI01.sec.lab\"",
        ),
        (json!({"max_ttl_seconds": 0}), "max_ttl_seconds"),
        (
            json!({"allowed_origins": ["portal.example.com"]}),
            "allowed_origins[0]",
        ),
    ];
    for (over, field) in cases {
        let (_, plugin) = shipped();
        let plugin = common::merge(&plugin, &over);
        // `keys: null` removes the field.
        refused(&plugin, &env(&secret), field, Some(&secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_start_fails_on_a_bad_plugin_config() {
    common::bounded(60, async {
        let (yaml, mut plugin) = shipped();
        let short = encode_secret(&random_bytes(16));
        plugin["keys"][0] = json!({"kid": "2026-11", "alg": "HS256", "secret_base64url": short});
        let cfg = with_plugin_json(&yaml, &plugin).unwrap();
        let gw_cert = CertKey::self_signed(&[common::GATEWAY_NAME]).unwrap();
        let err = Envoy::start(
            &cfg,
            EnvoyOpts {
                files: vec![
                    (
                        shipped::GATEWAY_CERT_FILE.into(),
                        gw_cert.cert_pem.clone().into_bytes(),
                    ),
                    (
                        shipped::GATEWAY_KEY_FILE.into(),
                        gw_cert.key_pem.clone().into_bytes(),
                    ),
                ],
                ready_timeout: std::time::Duration::from_secs(20),
                ..EnvoyOpts::default()
            },
        )
        .await
        .map(|_| ())
        .expect_err("Envoy started with a 16-byte secret");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("mksgate: config refused: keys[0].secret_base64url: secret is 16 bytes"),
            "{msg}"
        );
        assert!(!msg.contains(&short));
    })
    .await;
}
