//! Runs the built `mksgate` binary, command by command.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_core::jws::{decode_secret, Alg};
use mksgate_core::Config;
use serde_json::{json, Value};
mod common;
use common::{assert_one_line_error, run, run_with, scratch, write, Run};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
use mksgate_testkit::link::KEY_ENV;
/// 32 bytes, base64url: what the shipped example's env var would hold.
const SECRET32: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ";
const NOW: i64 = 1_795_000_000;
const TICKET: &str = "52bd9e3f-aa1c-ticket";

fn keygen_json(alg: &str) -> Value {
    let r = run(&["keygen", "--alg", alg, "--kid", "2026-11", "--json"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// The plugin configuration used by the sign/inspect tests.
fn plugin_config(dir: &Path) -> String {
    let cfg = json!({
        "keys": [{"kid": "2026-11", "alg": "HS256", "secret_env": KEY_ENV}],
        "audience": "console.example.com",
        "allowed_origins": ["https://portal.example.com"],
        "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01", "10.0.0.12": "esxi_ip"}},
    });
    write(dir, "plugin.json", &format!("{cfg:#}"))
}

fn sign(extra: &[&str], secret: &str) -> Run {
    let mut args = vec![
        "sign",
        "--gateway",
        "console.example.com",
        "--key-env",
        KEY_ENV,
        "--kid",
        "2026-11",
        "--aud",
        "console.example.com",
        "--now",
        "1795000000",
    ];
    args.extend_from_slice(extra);
    run_with(&args, &[(KEY_ENV, secret)], &[])
}

// ---------------------------------------------------------------- keygen

#[test]
fn keygen_secret_is_accepted_by_the_filter_config() {
    for (alg, len) in [("HS256", 32), ("HS384", 48), ("HS512", 64)] {
        let out = keygen_json(alg);
        let secret = out["secret"].as_str().unwrap();
        assert!(!secret.contains('='), "no padding");
        assert_eq!(decode_secret(secret).unwrap().len(), len, "{alg}");
        assert_eq!(out["env_line"], format!("{KEY_ENV}={secret}"));
        assert_eq!(out["env_name"], KEY_ENV);

        // As secret_base64url...
        let cfg = json!({
            "keys": [{"kid": "2026-11", "alg": alg, "secret_base64url": secret}],
            "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}},
        });
        let parsed = Config::parse(cfg.to_string().as_bytes(), &|_| None).unwrap();
        assert_eq!(
            parsed.keys.iter().next().unwrap().alg(),
            Alg::parse(alg).unwrap()
        );

        // ...and the printed keys[] entry, by secret_env.
        let cfg = json!({
            "keys": [out["key_entry"].clone()],
            "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}},
        });
        let env = |name: &str| (name == KEY_ENV).then(|| secret.to_string());
        Config::parse(cfg.to_string().as_bytes(), &env).unwrap();

        // The Kubernetes Secret is YAML carrying the same value.
        let k8s: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(out["kubernetes_secret"].as_str().unwrap()).unwrap();
        assert_eq!(k8s["kind"].as_str(), Some("Secret"));
        assert_eq!(k8s["metadata"]["name"].as_str(), Some("mksgate-keys"));
        assert_eq!(k8s["metadata"]["namespace"].as_str(), Some("istio-ingress"));
        assert_eq!(k8s["stringData"][KEY_ENV].as_str(), Some(secret));
        let proxy_env: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(out["istio_proxy_env"].as_str().unwrap()).unwrap();
        assert_eq!(
            proxy_env["envFrom"][0]["secretRef"]["name"].as_str(),
            Some("mksgate-keys")
        );
        let vm: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(out["wasm_plugin_vm_config"].as_str().unwrap()).unwrap();
        assert_eq!(vm["vmConfig"]["env"][0]["valueFrom"].as_str(), Some("HOST"));
    }
    assert_ne!(
        keygen_json("HS256")["secret"],
        keygen_json("HS256")["secret"]
    );
}

#[test]
fn keygen_text_has_every_snippet() {
    let r = run(&["keygen", "--kid", "k-7", "--env-name", "MKSGATE_KEY_TEST"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("MKSGATE_KEY_TEST="))
        .expect("env line");
    let secret = line.trim_start_matches("MKSGATE_KEY_TEST=");
    assert_eq!(decode_secret(secret).unwrap().len(), 32);
    assert!(r
        .stdout
        .contains(r#"{"alg":"HS256","kid":"k-7","secret_env":"MKSGATE_KEY_TEST"}"#));
    assert!(r.stdout.contains("kind: Secret"));
    assert!(r.stdout.contains("valueFrom: HOST"));
    // Default env name follows the kid.
    let r = run(&["keygen", "--kid", "2027-01", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["env_name"], "MKSGATE_KEY_2027_01");
    assert_one_line_error(&run(&["keygen", "--env-name", "lower"]), 1, "--env-name");
    assert_one_line_error(&run(&["keygen", "--alg", "RS256"]), 2, "RS256");
}

// ---------------------------------------------------------------- sign + inspect

#[test]
fn sign_then_inspect_with_key_and_config_admits() {
    let dir = scratch("admit");
    let cfg = plugin_config(&dir);
    let url = format!("wss://vesxi01.sec.lab/ticket/{TICKET}");
    let r = sign(&["--url", &url, "--json", "--sub", "alice"], SECRET32);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    let token = out["token"].as_str().unwrap();
    assert_eq!(
        out["link"].as_str().unwrap(),
        format!("wss://console.example.com/console?token={token}")
    );
    assert_eq!(
        out["header"],
        json!({"alg": "HS256", "typ": "JWT", "kid": "2026-11"})
    );
    let claims = &out["claims"];
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 60);
    assert_eq!(claims["url"], url.as_str());
    assert_eq!(claims["aud"], "console.example.com");
    assert_eq!(claims["sub"], "alice");
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(jti.len(), 36);
    assert_eq!(jti.chars().filter(|c| c.is_ascii_hexdigit()).count(), 32);
    assert!(!r.stdout.contains(SECRET32) && !r.stderr.contains(SECRET32));

    let link = out["link"].as_str().unwrap();
    let r = run_with(
        &[
            "inspect",
            link,
            "--key-env",
            KEY_ENV,
            "--config",
            &cfg,
            "--now",
            "1795000005",
            "--origin",
            "https://portal.example.com",
        ],
        &[(KEY_ENV, SECRET32)],
        &[],
    );
    assert_eq!(r.status, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("\"kid\": \"2026-11\""), "{}", r.stdout);
    assert!(r.stdout.contains("signature: verifies"), "{}", r.stdout);
    assert!(r.stdout.contains("decision: admitted"), "{}", r.stdout);
    assert!(r.stdout.contains("cluster: esxi_vesxi01"), "{}", r.stdout);
    assert!(
        r.stdout.contains("authority: vesxi01.sec.lab\n"),
        "{}",
        r.stdout
    );
    let hash = mksgate_core::audit::ticket_hash(TICKET);
    assert!(
        r.stdout
            .contains(&format!("path: /ticket/<ticket sha256:{hash}>")),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains(TICKET),
        "ticket must be masked: {}",
        r.stdout
    );
    assert!(!r.stdout.contains(SECRET32) && !r.stderr.contains(SECRET32));

    // --show-ticket shows it; the bare token works too.
    let r = run_with(
        &[
            "inspect",
            token,
            "--config",
            &cfg,
            "--now",
            "1795000005",
            "--origin",
            "https://portal.example.com",
            "--show-ticket",
        ],
        &[(KEY_ENV, SECRET32)],
        &[],
    );
    assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("path: /ticket/{TICKET}\n")),
        "{}",
        r.stdout
    );
}

#[test]
fn host_ticket_port_target_and_refusals() {
    let dir = scratch("refuse");
    let cfg = plugin_config(&dir);
    let r = sign(
        &[
            "--host",
            "10.0.0.12",
            "--ticket",
            TICKET,
            "--port",
            "8443",
            "--ip",
            "192.0.2.0/24",
        ],
        SECRET32,
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    let link = r.stdout.trim().to_string();
    let inspect = |extra: &[&str]| {
        let mut args = vec![
            "inspect",
            link.as_str(),
            "--config",
            &cfg,
            "--origin",
            "https://portal.example.com",
        ];
        args.extend_from_slice(extra);
        run_with(&args, &[(KEY_ENV, SECRET32)], &[])
    };
    let ok = inspect(&["--now", "1795000001", "--client", "192.0.2.9:5555"]);
    assert_eq!(ok.status, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("cluster: esxi_ip"), "{}", ok.stdout);
    assert!(
        ok.stdout.contains("authority: 10.0.0.12:8443"),
        "{}",
        ok.stdout
    );

    for (extra, code) in [
        (
            vec!["--now", "1795000001", "--client", "198.51.100.1:5555"],
            "client_not_allowed",
        ),
        (
            vec!["--now", "1795009999", "--client", "192.0.2.9:5555"],
            "expired",
        ),
    ] {
        let r = inspect(&extra);
        assert_eq!(r.status, 3, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains(&format!("decision: refused: {code}")),
            "{}",
            r.stdout
        );
    }
    // A key other than the config's.
    let other = keygen_json("HS256");
    let r = sign(
        &["--host", "vesxi01.sec.lab", "--ticket", TICKET],
        other["secret"].as_str().unwrap(),
    );
    let r = run_with(
        &[
            "inspect",
            r.stdout.trim(),
            "--config",
            &cfg,
            "--now",
            "1795000001",
            "--origin",
            "https://portal.example.com",
        ],
        &[(KEY_ENV, SECRET32)],
        &[],
    );
    assert_eq!(r.status, 3);
    assert!(
        r.stdout
            .contains("decision: refused: bad_signature (HTTP 403)"),
        "{}",
        r.stdout
    );
}

#[test]
fn tampered_token_is_refused_with_bad_signature() {
    let dir = scratch("tamper");
    let cfg = plugin_config(&dir);
    let r = sign(
        &["--host", "vesxi01.sec.lab", "--ticket", TICKET, "--json"],
        SECRET32,
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    let token = out["token"].as_str().unwrap();
    // Point the link at another host by rewriting the payload, keeping the
    // signature: still well-formed, no longer authentic.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut claims = out["claims"].clone();
    claims["host"] = json!("10.0.0.12");
    parts[1] = mksgate_core::jws::encode_secret(claims.to_string().as_bytes());
    let forged = parts.join(".");
    let link = format!("wss://console.example.com/console?token={forged}");

    let r = run_with(
        &[
            "inspect",
            &link,
            "--config",
            &cfg,
            "--now",
            "1795000001",
            "--origin",
            "https://portal.example.com",
        ],
        &[(KEY_ENV, SECRET32)],
        &[],
    );
    assert_eq!(r.status, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("decision: refused: bad_signature (HTTP 403)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("\"code\":\"bad_signature\""),
        "{}",
        r.stdout
    );

    // With the key alone: the signature check says so, exit 3 as well.
    let r = run_with(
        &["inspect", &link, "--key-env", KEY_ENV],
        &[(KEY_ENV, SECRET32)],
        &[],
    );
    assert_eq!(r.status, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("does NOT verify"), "{}", r.stdout);
    // Decoding alone (no key, no config) shows the claims and exits 0.
    let r = run(&["inspect", &forged]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"host\": \"10.0.0.12\""), "{}", r.stdout);
    assert!(r.stdout.contains("<ticket sha256:"), "{}", r.stdout);
    // A signature that is not even base64url JSON parts.
    // Garbage is a link the filter refuses (malformed_token): exit 3, as
    // cli/README.md says for every refusal.
    assert_one_line_error(&run(&["inspect", "not-a-token"]), 3, "not a JWS");
}

#[test]
fn sign_refuses_bad_input_with_one_line() {
    let bad: &[(&[&str], &str)] = &[
        (&["--url", "wss://esx.lab/ticket/a/b"], "--url"),
        (&["--url", "https://esx.lab/ticket/a"], "--url"),
        (&["--url", "wss://user@esx.lab/ticket/a"], "--url"),
        (&["--host", "esx_1.lab", "--ticket", "a"], "--host"),
        (&["--host", "esx.lab:443", "--ticket", "a"], "--host"),
        (&["--host", "esx.lab", "--ticket", "a/../b"], "--ticket"),
        (&["--host", "esx.lab", "--ticket", ".."], "--ticket"),
        (
            &["--host", "esx.lab", "--ticket", "a", "--port", "70000"],
            "--port",
        ),
        (
            &["--host", "esx.lab", "--ticket", "a", "--ip", "10.0.0.1/8"],
            "--ip",
        ),
        (
            &["--host", "esx.lab", "--ticket", "a", "--origin", "portal"],
            "--origin",
        ),
        (
            &["--host", "esx.lab", "--ticket", "a", "--ttl", "0"],
            "--ttl",
        ),
        (
            &[
                "--host",
                "esx.lab",
                "--ticket",
                "a",
                "--path-prefix",
                "console",
            ],
            "--path-prefix",
        ),
    ];
    for (args, needle) in bad {
        let r = sign(args, SECRET32);
        assert_one_line_error(&r, 1, needle);
        assert!(r.stdout.is_empty(), "nothing signed: {}", r.stdout);
    }
    // Usage errors: one line too, status 2.
    assert_one_line_error(&sign(&["--host", "esx.lab"], SECRET32), 2, "--ticket");
    assert_one_line_error(
        &sign(
            &["--url", "wss://esx.lab/ticket/a", "--host", "esx.lab"],
            SECRET32,
        ),
        2,
        "cannot be used with",
    );
    // Key problems never echo the key.
    let r = sign(&["--host", "esx.lab", "--ticket", "a"], "c2hvcnQ");
    assert_one_line_error(&r, 1, "5 bytes; HS256 needs at least 32");
    let r = run(&[
        "sign",
        "--host",
        "esx.lab",
        "--ticket",
        "a",
        "--gateway",
        "gw.lab",
        "--key",
        "not*base64",
    ]);
    assert_one_line_error(&r, 1, "not base64url");
    assert!(r.stderr.contains("warning: --key puts the secret"));
    assert!(!r.stderr.contains("not*base64"));
    let r = run(&[
        "sign",
        "--host",
        "esx.lab",
        "--ticket",
        "a",
        "--gateway",
        "gw.lab",
    ]);
    assert_one_line_error(&r, 1, "sign needs a key");
}

/// `--jti` follows the filter's rule (core's `valid_jti`), not a stricter
/// one of its own: a jti the filter admits can be signed, one it refuses
/// cannot.
#[test]
fn sign_jti_follows_the_filters_rule() {
    let url = format!("wss://vesxi01.sec.lab/ticket/{TICKET}");
    for jti in ["order 42 / caf\u{e9}", &"j".repeat(128)] {
        let r = sign(&["--url", &url, "--json", "--jti", jti], SECRET32);
        assert_eq!(r.status, 0, "{jti:?}: {}", r.stderr);
        let out: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(out["claims"]["jti"], jti);
        assert!(mksgate_core::decision::valid_jti(jti));
    }
    for jti in ["", &"j".repeat(129)] {
        let r = sign(&["--url", &url, "--jti", jti], SECRET32);
        assert_one_line_error(&r, 1, "--jti must be 1 to 128 bytes");
        assert!(!mksgate_core::decision::valid_jti(jti));
    }
}

#[test]
fn sign_with_key_file_and_options() {
    let dir = scratch("keyfile");
    let key = write(&dir, "key", &format!("# comment\n{KEY_ENV}={SECRET32}\n"));
    let r = run(&[
        "sign",
        "--host",
        "Vesxi01.Sec.Lab",
        "--ticket",
        "t1",
        "--gateway",
        "https://Console.Example.com:8443/",
        "--key-file",
        &key,
        "--path-prefix",
        "/mks",
        "--token-param",
        "t",
        "--ttl",
        "120",
        "--nbf-in",
        "5",
        "--jti",
        "fixed-jti",
        "--iss",
        "portal",
        "--tenant",
        "acme",
        "--origin",
        "https://portal.example.com",
        "--now",
        "100",
        "--json",
    ]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(out["link"]
        .as_str()
        .unwrap()
        .starts_with("wss://console.example.com:8443/mks?t=ey"));
    assert_eq!(
        out["claims"],
        json!({"host": "vesxi01.sec.lab", "ticket": "t1", "iat": 100, "exp": 220, "nbf": 105,
               "jti": "fixed-jti", "iss": "portal", "tenant": "acme", "origin": "https://portal.example.com"})
    );
    assert_eq!(out["header"], json!({"alg": "HS256", "typ": "JWT"}));
}

// ---------------------------------------------------------------- check-config

fn shipped() -> String {
    format!("{ROOT}/envoy/static-clusters.yaml")
}

#[test]
fn check_config_accepts_the_shipped_envoy_yaml() {
    let r = run(&["check-config", &shipped()]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stdout.lines().all(|l| l.starts_with("ok: ")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("(wasm plugin mksgate): valid: 1 key(s), 2 host(s)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("secret from env MKSGATE_KEY_2026_11 (not set here; checked shape only)"),
        "{}",
        r.stdout
    );
    let r = run_with(&["check-config", &shipped()], &[(KEY_ENV, SECRET32)], &[]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.stdout.contains("(set here; checked)"), "{}", r.stdout);
    assert!(!r.stdout.contains(SECRET32));
    // A real but short secret in the environment is caught.
    let r = run_with(&["check-config", &shipped()], &[(KEY_ENV, "c2hvcnQ")], &[]);
    assert_one_line_error(&r, 1, "keys[0].secret_env: secret is 5 bytes");
    let r = run(&["check-config", "--strict-env", &shipped()]);
    assert_one_line_error(&r, 1, "MKSGATE_KEY_2026_11 is not set here");
}

#[test]
fn check_config_refuses_bad_plugin_json_naming_the_field() {
    let dir = scratch("badjson");
    let good_key = json!({"kid": "a", "alg": "HS256", "secret_base64url": SECRET32});
    let cases = [
        (
            json!({"keys": [good_key], "upstreams": {"hosts": {"a.lab": "c"}, "host_map": {}}}),
            "upstreams.host_map: unknown field",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64url": "c2hvcnQ"}], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys[0].secret_base64url: secret is 5 bytes; HS256 needs at least 32",
        ),
        (
            json!({"keys": [], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys: must list at least one key",
        ),
    ];
    for (i, (cfg, needle)) in cases.iter().enumerate() {
        let file = write(&dir, &format!("c{i}.json"), &cfg.to_string());
        let r = run(&["check-config", &file]);
        assert_one_line_error(&r, 1, &format!("{file}: {needle}"));
    }
    let ok = write(
        &dir,
        "ok.json",
        &json!({"keys": [good_key], "upstreams": {"hosts": {"a.lab": "c"}}}).to_string(),
    );
    let r = run(&["check-config", &ok]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("keys[0] (kid a, HS256): secret inline"),
        "{}",
        r.stdout
    );
    let nothing = write(&dir, "none.yaml", "apiVersion: v1\nkind: ConfigMap\n");
    assert_one_line_error(
        &run(&["check-config", &nothing]),
        1,
        "no mksgate plugin configuration",
    );
    let broken = write(&dir, "broken.yaml", "a: [\n");
    assert_one_line_error(&run(&["check-config", &broken]), 1, "not valid YAML");
}

#[test]
fn check_config_reads_envoy_yaml_filters_and_their_env() {
    // The shipped file with its plugin config broken, and its env list cut.
    let dir = scratch("envoy");
    let text = std::fs::read_to_string(shipped()).unwrap();
    let broken = text.replace("\"max_ttl_seconds\": 300", "\"max_ttl_seconds\": 0");
    assert_ne!(broken, text, "the shipped file changed shape");
    let file = write(&dir, "broken.yaml", &broken);
    let r = run(&["check-config", &file]);
    assert_one_line_error(
        &r,
        1,
        "(wasm plugin mksgate): max_ttl_seconds: must be an integer from 1 to 86400",
    );

    let unlisted = text.replace("host_env_keys: [MKSGATE_KEY_2026_11]", "host_env_keys: []");
    assert_ne!(unlisted, text, "the shipped file changed shape");
    let file = write(&dir, "unlisted.yaml", &unlisted);
    let r = run_with(&["check-config", &file], &[(KEY_ENV, SECRET32)], &[]);
    assert_one_line_error(
        &r,
        1,
        "keys[0].secret_env: environment variable MKSGATE_KEY_2026_11 is not handed to the VM",
    );
}

const ISTIO: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: istio-ingress
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: mksgate
  namespace: istio-ingress
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  url: oci://registry.example.com/mksgate:0.1.0
  phase: AUTHN
  failStrategy: FAIL_CLOSE
  vmConfig:
    env:
    - name: MKSGATE_KEY_2026_11
      valueFrom: HOST
  pluginConfig:
    keys:
    - kid: "2026-11"
      alg: HS256
      secret_env: MKSGATE_KEY_2026_11
    audience: console.example.com
    max_ttl_seconds: 120
    upstreams:
      cluster_header: x-mksgate-cluster
      hosts:
        vesxi01.sec.lab: esxi_vesxi01
      host_suffixes:
        .esxi.example.com: esxi_dynamic
---
"#;

#[test]
fn check_config_reads_istio_wasm_plugins() {
    let dir = scratch("istio");
    let file = write(&dir, "istio.yaml", ISTIO);
    let r = run(&["check-config", &file]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("doc 2: WasmPlugin istio-ingress/mksgate: valid: 1 key(s), 1 host(s), 1 host suffix(es)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("max_ttl_seconds 120"), "{}", r.stdout);
    assert!(
        r.stdout.contains("not set here; checked shape only"),
        "{}",
        r.stdout
    );

    // Inline env values are what the VM gets.
    let inline = ISTIO.replace("      valueFrom: HOST", "      value: c2hvcnQ");
    let file = write(&dir, "inline.yaml", &inline);
    assert_one_line_error(
        &run(&["check-config", &file]),
        1,
        "keys[0].secret_env: secret is 5 bytes",
    );
    // Not handed to the VM at all.
    let missing = ISTIO.replace(
        "    - name: MKSGATE_KEY_2026_11\n      valueFrom: HOST\n",
        "    - name: OTHER\n      valueFrom: HOST\n",
    );
    assert_ne!(missing, ISTIO);
    let file = write(&dir, "missing.yaml", &missing);
    assert_one_line_error(
        &run(&["check-config", &file]),
        1,
        "add it to spec.vmConfig.env",
    );
    // An unknown field inside pluginConfig.
    let bad = ISTIO.replace("    audience:", "    audiences:");
    let file = write(&dir, "bad.yaml", &bad);
    assert_one_line_error(
        &run(&["check-config", &file]),
        1,
        "WasmPlugin istio-ingress/mksgate: audiences: unknown field",
    );

    // inspect reads the same file, with the real secret from the env.
    let r = sign(&["--host", "vesxi01.sec.lab", "--ticket", TICKET], SECRET32);
    let r = run_with(
        &[
            "inspect",
            r.stdout.trim(),
            "--config",
            &dir.join("istio.yaml").to_string_lossy(),
            "--now",
            "1795000001",
        ],
        &[(KEY_ENV, SECRET32)],
        &[],
    );
    assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("cluster: esxi_vesxi01"), "{}", r.stdout);
    // Two plugins in one file: inspect asks which.
    let two = format!(
        "{ISTIO}{}",
        ISTIO.replace("name: mksgate\n", "name: other\n")
    );
    let file = write(&dir, "two.yaml", &two);
    let r = sign(&["--host", "vesxi01.sec.lab", "--ticket", TICKET], SECRET32);
    let link = r.stdout.trim().to_string();
    let r = run_with(
        &["inspect", &link, "--config", &file],
        &[(KEY_ENV, SECRET32)],
        &[],
    );
    assert_one_line_error(
        &r,
        1,
        "holds 2 plugin configurations; choose one with --config-index",
    );
    let r = run_with(
        &[
            "inspect",
            &link,
            "--config",
            &file,
            "--config-index",
            "1",
            "--now",
            "1795000001",
        ],
        &[(KEY_ENV, SECRET32)],
        &[],
    );
    assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
    // ...and needs it.
    let r = sign(&["--host", "vesxi01.sec.lab", "--ticket", TICKET], SECRET32);
    let r = run(&[
        "inspect",
        r.stdout.trim(),
        "--config",
        &dir.join("istio.yaml").to_string_lossy(),
    ]);
    assert_one_line_error(&r, 1, "MKSGATE_KEY_2026_11 is not set here");
}

// ---------------------------------------------------------------- envoy-config

const PIN_COLONS: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

fn inventory(ca: &str) -> String {
    format!(
        "# ESXi hosts\n\
         - name: vesxi01.sec.lab\n  address: 10.0.0.11\n  sha256: \"{PIN_COLONS}\"\n\
         - name: VESXI-02.sec.lab\n  address: 10.0.0.12\n  port: 8443\n  trusted_ca: {ca}\n\
         - name: vesxi-02.sec-lab\n  address: 10.0.0.13\n  sha256: \"{}\"\n  trusted_ca: {ca}\n\
         - name: \"2001:db8::7\"\n  address: \"2001:db8::7\"\n  sha256: \"{}\"\n",
        "1".repeat(64),
        "2".repeat(64)
    )
}

#[test]
fn envoy_config_writes_clusters_and_upstreams() {
    let dir = scratch("envoycfg");
    let inv = write(&dir, "hosts.yaml", &inventory("/etc/mksgate/vmca.pem"));
    let r = run(&["envoy-config", "--inventory", &inv]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&r.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{}", r.stdout);
    let clusters = docs[0]["clusters"].as_sequence().unwrap();
    let names: Vec<&str> = clusters
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "esxi_vesxi01_sec_lab",
            "esxi_vesxi_02_sec_lab",
            "esxi_vesxi_02_sec_lab_2",
            "esxi_2001_db8__7"
        ]
    );
    let c0 = &clusters[0];
    assert_eq!(c0["type"].as_str(), Some("STATIC"));
    assert_eq!(c0["connect_timeout"].as_str(), Some("5s"));
    let sa = &c0["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"];
    assert_eq!(sa["address"].as_str(), Some("10.0.0.11"));
    assert_eq!(sa["port_value"].as_u64(), Some(443));
    let tls = &c0["transport_socket"]["typed_config"];
    assert_eq!(tls["sni"].as_str(), Some("vesxi01.sec.lab"));
    assert_eq!(
        tls["common_tls_context"]["validation_context"]["verify_certificate_hash"][0].as_str(),
        Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
    );
    let c1 = &clusters[1];
    assert_eq!(
        c1["transport_socket"]["typed_config"]["sni"].as_str(),
        Some("vesxi-02.sec.lab")
    );
    let vc1 = &c1["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"];
    assert_eq!(
        vc1["trusted_ca"]["filename"].as_str(),
        Some("/etc/mksgate/vmca.pem")
    );
    assert_eq!(
        vc1["match_typed_subject_alt_names"][0]["matcher"]["exact"].as_str(),
        Some("vesxi-02.sec.lab")
    );
    let c3 = &clusters[3];
    assert!(
        c3["transport_socket"]["typed_config"]["sni"].is_null(),
        "no SNI for an IP literal"
    );

    let ups: Value = serde_json::from_str(&serde_json::to_string(&docs[1]).unwrap()).unwrap();
    assert_eq!(
        ups,
        json!({"cluster_header": "x-mksgate-cluster", "hosts": {
            "vesxi01.sec.lab": "esxi_vesxi01_sec_lab",
            "vesxi-02.sec.lab": "esxi_vesxi_02_sec_lab",
            "vesxi-02.sec-lab": "esxi_vesxi_02_sec_lab_2",
            "2001:db8::7": "esxi_2001_db8__7"}})
    );
    let cfg = json!({"keys": [{"alg": "HS256", "secret_base64url": SECRET32}], "upstreams": ups});
    let parsed = Config::parse(cfg.to_string().as_bytes(), &|_| None).unwrap();
    assert_eq!(parsed.upstreams.hosts.len(), 4);

    // Files instead of stdout; the upstreams file is plain JSON.
    let clusters_file = dir.join("clusters.yaml");
    let ups_file = dir.join("upstreams.json");
    let r = run(&[
        "envoy-config",
        "--inventory",
        &inv,
        "--cluster-prefix",
        "esx-",
        "--out-clusters",
        clusters_file.to_str().unwrap(),
        "--out-upstreams",
        ups_file.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let ups: Value = serde_json::from_str(&std::fs::read_to_string(&ups_file).unwrap()).unwrap();
    assert_eq!(ups["hosts"]["vesxi01.sec.lab"], "esx_vesxi01_sec_lab");
    assert!(std::fs::read_to_string(&clusters_file)
        .unwrap()
        .contains("- name: esx_vesxi01_sec_lab\n"));
}

#[test]
fn envoy_config_refuses_bad_inventories() {
    let dir = scratch("badinv");
    let pin = "1".repeat(64);
    let cases: Vec<(String, &str)> = vec![
        (format!("- {{name: a.lab, address: 10.0.0.1, sha256: '{pin}'}}\n- {{name: A.LAB, address: 10.0.0.2, sha256: '{pin}'}}\n"), "[1] (A.LAB): name: a.lab is listed twice"),
        (format!("- {{name: a_b.lab, address: 10.0.0.1, sha256: '{pin}'}}\n"), "[0] (a_b.lab): name:"),
        (format!("- {{name: a.lab, address: 'esx.lab:443', sha256: '{pin}'}}\n"), "address: must be an IP address or a DNS name"),
        (format!("- {{name: a.lab, address: 10.0.0.1, port: 0, sha256: '{pin}'}}\n"), "port: must be 1 to 65535"),
        ("- {name: a.lab, address: 10.0.0.1, sha256: 'abc'}\n".into(), "sha256: must be 64 hex digits"),
        (format!("- {{name: a.lab, address: 10.0.0.1, sha256: {pin}}}\n"), "sha256: must be a string"),
        (format!("- {{name: a.lab, address: 10.0.0.1, sha256: '{pin}', pin: x}}\n"), "unknown field `pin`"),
        ("- {name: a.lab, address: 10.0.0.1}\n".into(), "needs sha256 (certificate pin) or trusted_ca"),
        ("[]\n".into(), "lists no hosts"),
        ("name: a.lab\n".into(), "must be a list of hosts"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let inv = write(&dir, &format!("inv{i}.yaml"), text);
        let r = run(&["envoy-config", "--inventory", &inv]);
        assert_one_line_error(&r, 1, needle);
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    // --allow-unverified: accepted, loudly.
    let inv = write(
        &dir,
        "unverified.yaml",
        "- {name: a.lab, address: 10.0.0.1}\n",
    );
    let r = run(&["envoy-config", "--inventory", &inv, "--allow-unverified"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("warning: a.lab: its certificate will NOT be verified"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("# WARNING: --allow-unverified"),
        "{}",
        r.stdout
    );
}

fn envoy_binary() -> PathBuf {
    let envoy = Path::new(ROOT).join(".tools/envoy/envoy/_bin/envoy");
    if !envoy.exists() {
        let status = Command::new("bash")
            .arg(Path::new(ROOT).join("scripts/setup.sh"))
            .status();
        assert!(
            envoy.exists(),
            "Envoy is needed for this test and is not at {} (scripts/setup.sh: {status:?}); run scripts/setup.sh",
            envoy.display()
        );
    }
    envoy
}

fn filter_wasm() -> PathBuf {
    let wasm = Path::new(ROOT).join("target/mksgate/mksgate_filter.wasm");
    if !wasm.exists() {
        let status = Command::new("bash")
            .args(["scripts/build-module.sh", "mksgate"])
            .current_dir(ROOT)
            .status();
        assert!(
            wasm.exists(),
            "the shipped module is needed and could not be built ({status:?}): scripts/build-module.sh mksgate"
        );
    }
    wasm
}

/// Replaces the `clusters:` block under `static_resources` with `generated`
/// (a top-level `clusters:` document), indented to fit.
fn splice_clusters(shipped: &str, generated: &str) -> String {
    let lines: Vec<&str> = shipped.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "  clusters:")
        .expect("static_resources.clusters in the shipped file");
    let mut end = start + 1;
    while end < lines.len() {
        let l = lines[end];
        if l.is_empty() || l.starts_with("   ") || l.starts_with("  -") || l.starts_with("  #") {
            end += 1;
        } else {
            break;
        }
    }
    let mut out: Vec<String> = lines[..start].iter().map(|l| l.to_string()).collect();
    out.extend(generated.lines().map(|l| {
        if l.is_empty() {
            String::new()
        } else {
            format!("  {l}")
        }
    }));
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    out.join("\n") + "\n"
}

#[test]
fn envoy_config_clusters_pass_envoy_validate() {
    let envoy = envoy_binary();
    let wasm = filter_wasm();
    let dir = scratch("validate");
    let cert = rcgen::generate_simple_self_signed(vec!["console.example.com".to_string()]).unwrap();
    let crt = write(&dir, "gateway.crt", &cert.cert.pem());
    let key = write(&dir, "gateway.key", &cert.signing_key.serialize_pem());
    let inv = write(&dir, "hosts.yaml", &inventory(&crt));
    let clusters_file = dir.join("clusters.yaml");
    let r = run(&[
        "envoy-config",
        "--inventory",
        &inv,
        "--out-clusters",
        clusters_file.to_str().unwrap(),
        "--out-upstreams",
        dir.join("u.json").to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let generated = std::fs::read_to_string(&clusters_file).unwrap();

    let shipped_text = std::fs::read_to_string(shipped()).unwrap();
    let mut bootstrap = splice_clusters(&shipped_text, &generated);
    for (from, to) in [
        ("/etc/mksgate/tls/gateway.crt", crt.as_str()),
        ("/etc/mksgate/tls/gateway.key", key.as_str()),
        ("/etc/mksgate/mksgate_filter.wasm", wasm.to_str().unwrap()),
    ] {
        assert!(
            bootstrap.contains(from),
            "the shipped file no longer names {from}"
        );
        bootstrap = bootstrap.replace(from, to);
    }
    assert!(
        !bootstrap.contains("esxi_vesxi01\n"),
        "old clusters left in place"
    );
    for name in [
        "esxi_vesxi01_sec_lab",
        "esxi_vesxi_02_sec_lab_2",
        "esxi_2001_db8__7",
    ] {
        assert!(
            bootstrap.contains(&format!("  - name: {name}\n")),
            "{name} not spliced in"
        );
    }
    let path = write(&dir, "bootstrap.yaml", &bootstrap);
    let out = Command::new(&envoy)
        .args(["--mode", "validate", "-c", &path, "--log-level", "warn"])
        .env(KEY_ENV, SECRET32)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "envoy --mode validate refused {path}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The same generated file with a broken pin is refused: the check bites.
    let broken = bootstrap.replace(&"1".repeat(64), "11");
    let path = write(&dir, "broken.yaml", &broken);
    let out = Command::new(&envoy)
        .args(["--mode", "validate", "-c", &path, "--log-level", "warn"])
        .env(KEY_ENV, SECRET32)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken pin must not validate");
}

// ---------------------------------------------------------------- usage

#[test]
fn usage_errors_are_one_line_and_help_works() {
    assert_one_line_error(&run(&["frobnicate"]), 2, "unrecognized subcommand");
    assert_one_line_error(&run(&["sign", "--bogus"]), 2, "--bogus");
    for cmd in ["keygen", "sign", "inspect", "check-config", "envoy-config"] {
        let r = run(&[cmd, "--help"]);
        assert_eq!(r.status, 0, "{cmd}");
        assert!(r.stdout.contains("Usage: mksgate"), "{cmd}: {}", r.stdout);
    }
}

/// Every plugin configuration we ship passes the same checks the filter
/// runs: the Istio WasmPlugin's pluginConfig and both Envoy files.
#[test]
fn check_config_accepts_every_shipped_plugin_config() {
    for file in [
        "envoy/istio/wasmplugin.yaml",
        "envoy/static-clusters.yaml",
        "envoy/dynamic.yaml",
    ] {
        let path = format!("{ROOT}/{file}");
        let r = run_with(&["check-config", &path], &[(KEY_ENV, SECRET32)], &[]);
        assert_eq!(r.status, 0, "{file}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("ok:"), "{file}: {}", r.stdout);
    }
}
