//! `mksgate check-config` on every platform kit a user is given: the Envoy
//! layouts, Istio's WasmPlugins and Envoy Gateway's EnvoyExtensionPolicy
//! all read and pass; a cluster name the Envoy file does not define (a
//! typo that would send every console to a 503) is an error naming the
//! field.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{assert_one_line_error, run, run_with, scratch, write, Run};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// 32 bytes, base64url.
const SECRET32: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ";

fn check(rel: &str) -> Run {
    run(&["check-config", &format!("{ROOT}/envoy/{rel}")])
}

#[test]
fn every_kit_with_a_plugin_configuration_passes() {
    for (rel, label) in [
        ("static-clusters.yaml", "wasm plugin mksgate"),
        ("dynamic.yaml", "wasm plugin mksgate"),
        ("fleet.yaml", "wasm plugin mksgate"),
        ("rotation/listeners.yaml", "wasm plugin mksgate"),
        ("istio/wasmplugin.yaml", "WasmPlugin istio-ingress/mksgate"),
        (
            "istio/wasmplugin-two-tenants.yaml",
            "WasmPlugin istio-ingress/mksgate",
        ),
        (
            "gateway-api/envoy-gateway.yaml",
            "EnvoyExtensionPolicy mksgate/mksgate spec.wasm[0]",
        ),
        (
            "gateway-api/envoy-gateway-two-tenants.yaml",
            "EnvoyExtensionPolicy mksgate/mksgate spec.wasm[0]",
        ),
    ] {
        let r = check(rel);
        assert_eq!(r.status, 0, "{rel}: {}", r.stderr);
        assert!(
            r.stdout.contains(label) && r.stdout.contains("valid:"),
            "{rel}: {}",
            r.stdout
        );
    }
}

#[test]
fn envoy_gateway_hands_the_secret_through_host_keys() {
    // hostKeys lists the env var: set here, it is checked for real.
    let r = run_with(
        &[
            "check-config",
            "--strict-env",
            &format!("{ROOT}/envoy/gateway-api/envoy-gateway.yaml"),
        ],
        &[("MKSGATE_KEY_2026_11", SECRET32)],
        &[],
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.stdout.contains("(set here; checked)"), "{}", r.stdout);
    // Dropped from hostKeys, it is not handed to the VM: an error.
    let text =
        std::fs::read_to_string(format!("{ROOT}/envoy/gateway-api/envoy-gateway.yaml")).unwrap();
    let edited = text.replace("hostKeys: [MKSGATE_KEY_2026_11]", "hostKeys: []");
    assert_ne!(edited, text);
    let dir = scratch("kits-eg");
    let file = write(&dir, "eg.yaml", &edited);
    let r = run(&["check-config", &file]);
    assert_one_line_error(&r, 1, "keys[0].secret_env");
}

#[test]
fn a_misspelled_cluster_name_is_an_error() {
    let text = std::fs::read_to_string(format!("{ROOT}/envoy/static-clusters.yaml")).unwrap();
    let typo = text.replacen(
        "vesxi01.sec.lab\": \"esxi_vesxi01\"",
        "vesxi01.sec.lab\": \"esxi_vesxi0l\"",
        1,
    );
    assert_ne!(
        typo, text,
        "the shipped upstreams changed; update this test"
    );
    let dir = scratch("kits-typo");
    let file = write(&dir, "typo.yaml", &typo);
    let r = run(&["check-config", &file]);
    assert_one_line_error(
        &r,
        1,
        "upstreams.hosts.\"vesxi01.sec.lab\": cluster esxi_vesxi0l is not defined",
    );
}
