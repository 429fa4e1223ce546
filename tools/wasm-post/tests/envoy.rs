//! The shipped modules still load, configure and run request headers in the
//! real Envoy (V8), with the callbacks they no longer export simply skipped.
//! Needs `scripts/setup.sh` (Envoy) and `scripts/build-module.sh all`.

#![cfg(test)]

mod common;

use common::{
    config, config_with_upstream, echo_upgrade_upstream, module, shipped, upgrade_and_echo, Envoy,
};
use std::collections::BTreeMap;

/// 32 bytes, base64url.
const SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";

fn mksgate_config() -> String {
    format!(
        r#"{{"keys":[{{"alg":"HS256","secret_base64url":"{SECRET}"}}],"upstreams":{{"hosts":{{"a.lab":"c"}}}}}}"#
    )
}

/// V8 VMs Envoy created for the module (the base VM and its clones), after
/// checking there is at least one.
fn vms_created(envoy: &Envoy) -> u64 {
    let created = envoy
        .stat("wasm.envoy.wasm.runtime.v8.created")
        .unwrap_or(0);
    assert!(created >= 1, "no V8 VM created: {:?}", envoy.stats("wasm"));
    created
}

#[test]
fn shipped_mksgate_loads_configures_and_runs_request_headers() {
    let module = shipped("mksgate_filter");
    let mut envoy = Envoy::start(&config(&module, "mksgate", &mksgate_config()));

    let log = envoy.log_containing("mksgate: configured");
    assert!(
        log.contains("mksgate: configured"),
        "no configure line in:\n{log}"
    );
    let created = vms_created(&envoy);

    // A console path without an upgrade: the filter answers itself.
    let r = envoy.request("GET", "/console", "");
    assert_eq!(r.status, 426, "{r:?}");
    assert_eq!(r.body, "not_websocket\n");
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("x-mksgate-decision: not_websocket"),
        "{r:?}"
    );

    // Anything else passes through to the route. The POST has a body
    // (request-body callback, not exported) and every response has headers
    // and a body (response callbacks, not exported): Envoy skips them.
    for (method, path, body) in [("GET", "/healthz", ""), ("POST", "/other", "some body")] {
        let r = envoy.request(method, path, body);
        assert_eq!(r.status, 200, "{method} {path}: {r:?}");
        assert_eq!(r.body, "routed\n");
    }
    // No VM was replaced (a failed VM would be).
    assert_eq!(vms_created(&envoy), created, "{:?}", envoy.stats("wasm"));
    let log = envoy.log_containing("mksgate: configured");
    for bad in ["panic", "Wasm VM failed", "missing", "wasm log error"] {
        assert!(!log.contains(bad), "{bad:?} in Envoy's log:\n{log}");
    }
}

#[test]
fn shipped_noop_loads_and_continues() {
    let module = shipped("mksgate_noop_filter");
    let mut envoy = Envoy::start(&config(&module, "noop", ""));
    let created = vms_created(&envoy);
    for (method, path, body) in [("GET", "/console", ""), ("POST", "/x", "data")] {
        let r = envoy.request(method, path, body);
        assert_eq!(r.status, 200, "{method} {path}: {r:?}");
        assert_eq!(r.body, "routed\n");
    }
    assert_eq!(vms_created(&envoy), created, "{:?}", envoy.stats("wasm"));
    let log = envoy.log();
    for bad in ["panic", "Wasm VM failed", "missing"] {
        assert!(!log.contains(bad), "{bad:?} in Envoy's log:\n{log}");
    }
}

/// How often Envoy calls each callback, from the host's own trace lines
/// (`[host->vm] proxy_on_...`), for one WebSocket session that carries
/// `chunks` messages each way.
fn callbacks_called(module: &std::path::Path, chunks: usize) -> BTreeMap<String, usize> {
    let upstream = echo_upgrade_upstream();
    let mut envoy = Envoy::start_with(
        &config_with_upstream(module, "mksgate", &mksgate_config(), Some(upstream)),
        &["--component-log-level", "wasm:trace"],
    );
    upgrade_and_echo(envoy.listener, chunks);
    // The stream's last callback is proxy_on_delete; wait for it.
    let log = envoy.log_containing("[host->vm] proxy_on_delete");
    envoy.request("GET", "/", ""); // Envoy still serves.
    let mut called = BTreeMap::new();
    for call in log.lines().filter_map(|l| l.split("[host->vm] ").nth(1)) {
        let name = call.split('(').next().unwrap_or(call).to_string();
        *called.entry(name).or_insert(0) += 1;
    }
    called
}

#[test]
fn envoy_no_longer_calls_the_removed_callbacks_per_chunk() {
    const CHUNKS: usize = 5;
    let (raw, _) = module("mksgate_filter.raw.wasm");
    let before = callbacks_called(&raw, CHUNKS);
    let after = callbacks_called(&shipped("mksgate_filter"), CHUNKS);
    println!("calls into cargo's module: {before:?}");
    println!("calls into the shipped module: {after:?}");
    let count = |map: &BTreeMap<String, usize>, name: &str| map.get(name).copied().unwrap_or(0);
    for name in ["proxy_on_request_body", "proxy_on_response_body"] {
        assert!(count(&before, name) >= CHUNKS, "raw: {name}: {before:?}");
        assert_eq!(count(&after, name), 0, "shipped: {name}: {after:?}");
    }
    for name in ["proxy_on_response_headers", "proxy_on_log"] {
        assert!(count(&before, name) >= 1, "raw: {name}: {before:?}");
        assert_eq!(count(&after, name), 0, "shipped: {name}: {after:?}");
    }
    for name in [
        "proxy_on_context_create",
        "proxy_on_configure",
        "proxy_on_request_headers",
        "proxy_on_done",
        "proxy_on_delete",
    ] {
        assert!(
            count(&after, name) >= 1,
            "shipped: {name} not called: {after:?}"
        );
    }
}
