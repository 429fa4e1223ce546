//! Tenant-scoped keys in the CLI: `sign --config` refuses a link outside
//! its key's scope (core's rule), and `check-config` warns, or with
//! `--strict` fails, when scoped and unscoped keys are mixed.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{assert_one_line_error, run, run_with, scratch, write, Run};
use serde_json::json;

const KEY_A: &str = "dGVuYW50LWEtc2VjcmV0LXRlbmFudC1hLXNlY3JldC0wMTIzNDU";
const KEY_B: &str = "dGVuYW50LWItc2VjcmV0LXRlbmFudC1iLXNlY3JldC0wMTIzNDU";

fn two_tenants(scope_b: bool) -> serde_json::Value {
    let mut b = json!({"kid": "portal-b", "alg": "HS256", "secret_env": "KEY_B"});
    if scope_b {
        b["scope"] = json!({"host_suffixes": [".tenant-b.lab"], "tenants": ["tenant-b"]});
    }
    json!({
        "keys": [
            {"kid": "portal-a", "alg": "HS256", "secret_env": "KEY_A",
             "scope": {"hosts": ["esxi-a1.lab"], "host_suffixes": [".tenant-a.lab"], "tenants": ["tenant-a"]}},
            b
        ],
        "upstreams": {"hosts": {"esxi-a1.lab": "esxi_a1"}, "host_suffixes": {".lab": "esxi_dynamic"}}
    })
}

fn sign_a(config: &str, host: &str, tenant: Option<&str>) -> Run {
    let mut args = vec![
        "sign",
        "--config",
        config,
        "--kid",
        "portal-a",
        "--key-env",
        "KEY_A",
        "--host",
        host,
        "--ticket",
        "t-1",
        "--gateway",
        "gw.lab",
    ];
    if let Some(t) = tenant {
        args.extend(["--tenant", t]);
    }
    run_with(&args, &[("KEY_A", KEY_A), ("KEY_B", KEY_B)], &[])
}

#[test]
fn sign_refuses_links_outside_the_keys_scope() {
    let dir = scratch("scope-sign");
    let config = write(&dir, "plugin.json", &two_tenants(true).to_string());
    let ok = sign_a(&config, "esxi7.tenant-a.lab", Some("tenant-a"));
    assert_eq!(ok.status, 0, "{}", ok.stderr);
    assert!(ok.stdout.starts_with("wss://gw.lab/console?token="));

    let other_host = sign_a(&config, "esxi7.tenant-b.lab", Some("tenant-a"));
    assert_one_line_error(
        &other_host,
        1,
        "host esxi7.tenant-b.lab is outside the scope of key portal-a",
    );
    let look_alike = sign_a(&config, "esxi7.xtenant-a.lab", Some("tenant-a"));
    assert_one_line_error(&look_alike, 1, "outside the scope of key portal-a");
    let other_tenant = sign_a(&config, "esxi-a1.lab", Some("tenant-b"));
    assert_one_line_error(&other_tenant, 1, "tenant tenant-b is outside the scope");
    let no_tenant = sign_a(&config, "esxi-a1.lab", None);
    assert_one_line_error(
        &no_tenant,
        1,
        "a link without --tenant is outside the scope",
    );
    // No token was printed for a refused link.
    assert!(other_host.stdout.is_empty() && no_tenant.stdout.is_empty());

    // A kid the config does not have.
    let unknown = run_with(
        &[
            "sign",
            "--config",
            &config,
            "--kid",
            "portal-z",
            "--key-env",
            "KEY_A",
            "--host",
            "esxi-a1.lab",
            "--ticket",
            "t-1",
            "--gateway",
            "gw.lab",
        ],
        &[("KEY_A", KEY_A)],
        &[],
    );
    assert_one_line_error(&unknown, 1, "no key there is selected by --kid portal-z");
}

#[test]
fn check_config_warns_on_mixed_keys_and_strict_fails() {
    let dir = scratch("scope-check");
    let env = [("KEY_A", KEY_A), ("KEY_B", KEY_B)];
    let scoped = write(&dir, "scoped.json", &two_tenants(true).to_string());
    let r = run_with(&["check-config", "--strict", &scoped], &env, &[]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("keys[0] (kid portal-a, HS256)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("tenants tenant-a"), "{}", r.stdout);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);

    let mixed = write(&dir, "mixed.json", &two_tenants(false).to_string());
    let warn = run_with(&["check-config", &mixed], &env, &[]);
    assert_eq!(warn.status, 0, "{}", warn.stderr);
    assert!(
        warn.stderr.contains("warning: ")
            && warn
                .stderr
                .contains("keys[1] (kid portal-b) can open every tenant's hosts"),
        "{}",
        warn.stderr
    );
    let strict = run_with(&["check-config", "--strict", &mixed], &env, &[]);
    assert_eq!(strict.status, 1, "{}", strict.stderr);

    // A scope wider than upstreams is an error naming the field.
    let mut wide = two_tenants(true);
    wide["keys"][1]["scope"]["host_suffixes"] = json!([".example.com"]);
    let wide = write(&dir, "wide.json", &wide.to_string());
    let refused = run(&["check-config", &wide]);
    assert_one_line_error(&refused, 1, "keys[1].scope.host_suffixes[0]");
}
