//! The two-tenant examples of the Istio and Envoy Gateway kits: each
//! plugin configuration is the filter's own (parsed by core), every key is
//! scoped (no mix, which `check-config --strict` refuses), the tenants'
//! hosts do not overlap, every `secret_env` is handed to the VM, and apart
//! from `keys` each is the same as its kit's one-tenant configuration, so
//! the examples cannot drift. Their schemas are checked with the rest of
//! the kits in shipped_configs.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_core::jws::encode_secret;
use mksgate_core::Config;
use serde_json::Value;

fn docs(rel: &str) -> Vec<Value> {
    mksgate_host_tests::shipped::yaml_docs(rel).unwrap()
}

fn by_kind(rel: &str, kind: &str) -> Value {
    docs(rel)
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in envoy/{rel}"))
}

/// Parses with core, every secret a dummy; checks the scopes.
fn check_scoped(plugin: &Value, handed_to_vm: &[&str]) {
    let secret = encode_secret(&[7; 32]);
    let config = Config::parse(plugin.to_string().as_bytes(), &|name| {
        handed_to_vm.contains(&name).then(|| secret.clone())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.keys.len(), 2);
    assert!(config.key_scopes.iter().all(Option::is_some));
    assert!(!config.mixes_scoped_and_unscoped_keys());
    let a = config.key_scopes[0].as_ref().unwrap();
    let b = config.key_scopes[1].as_ref().unwrap();
    assert!(
        a.hosts.iter().all(|h| !b.hosts.contains(h)),
        "tenants share a host"
    );
    assert_ne!(a.tenants, b.tenants);
}

fn without_keys(plugin: &Value) -> Value {
    let mut p = plugin.clone();
    p.as_object_mut().unwrap().remove("keys");
    p
}

#[test]
fn istio_two_tenant_example() {
    let two = by_kind("istio/wasmplugin-two-tenants.yaml", "WasmPlugin");
    let one = by_kind("istio/wasmplugin.yaml", "WasmPlugin");
    let env: Vec<&str> = two["spec"]["vmConfig"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["valueFrom"], "HOST");
            e["name"].as_str().unwrap()
        })
        .collect();
    check_scoped(&two["spec"]["pluginConfig"], &env);
    assert_eq!(
        without_keys(&two["spec"]["pluginConfig"]),
        without_keys(&one["spec"]["pluginConfig"])
    );
    for field in ["selector", "phase", "failStrategy", "url"] {
        assert_eq!(two["spec"][field], one["spec"][field], "{field}");
    }
}

#[test]
fn envoy_gateway_two_tenant_example() {
    let two = by_kind(
        "gateway-api/envoy-gateway-two-tenants.yaml",
        "EnvoyExtensionPolicy",
    );
    let one = by_kind("gateway-api/envoy-gateway.yaml", "EnvoyExtensionPolicy");
    let wasm = &two["spec"]["wasm"][0];
    let env: Vec<&str> = wasm["env"]["hostKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    check_scoped(&wasm["config"], &env);
    let base = &one["spec"]["wasm"][0];
    assert_eq!(without_keys(&wasm["config"]), without_keys(&base["config"]));
    assert_eq!(two["spec"]["targetRefs"], one["spec"]["targetRefs"]);
    assert_eq!(wasm["code"], base["code"]);
}
