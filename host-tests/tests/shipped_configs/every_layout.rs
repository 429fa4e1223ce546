//! Rules every shipped layout keeps, Envoy's and Kubernetes' alike: the
//! failure policy, no trusted client, the audit in the access log, and the
//! same handshake limits.

use super::*;

/// Every shipped Envoy layout replaces a trapped VM instead of refusing
/// everything until a restart (measured in `e2e_failure_policy.rs`).
#[test]
fn every_shipped_layout_reloads_a_trapped_vm() {
    for file in [
        "static-clusters.yaml",
        "dynamic.yaml",
        "rotation/listeners.yaml",
    ] {
        let text = mksgate_host_tests::envoy::read_envoy_file(file).unwrap();
        let policies: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("failure_policy:"))
            .map(str::trim)
            .collect();
        assert_eq!(policies, ["FAIL_RELOAD"], "{file}");
    }
}

/// Every shipped layout treats no client as internal, with a list that
/// cannot be empty (an empty one means Envoy's default list, which makes
/// loopback and private clients internal: measured in
/// `e2e_client_control.rs`), and sets ESXi's X-Forwarded-For itself.
#[test]
fn every_shipped_layout_trusts_no_client_and_sets_the_forwarded_address() {
    for file in [
        "static-clusters.yaml",
        "dynamic.yaml",
        "rotation/listeners.yaml",
    ] {
        let text = mksgate_host_tests::envoy::read_envoy_file(file).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("internal_address_config:"))
            .collect();
        assert_eq!(
            lines,
            ["internal_address_config: { cidr_ranges: [{ address_prefix: 255.255.255.255, prefix_len: 32 }] }"],
            "{file}"
        );
        assert!(
            text.contains("request_headers_to_remove: [x-mksgate-cluster, x-forwarded-for, x-real-ip, forwarded]")
                && text.contains(r#"- header: { key: x-forwarded-for, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }"#),
            "{file}"
        );
    }
}

/// Every shipped access log writes the filter's whole audit (core's list of
/// filter-state keys, one copy of the rule), Envoy's WebSocket-session
/// fields, and a line when a tunnel is up; none writes a path, a query or a
/// header but X-Request-ID.
#[test]
fn every_access_log_carries_the_audit_and_the_tunnel_line() {
    use mksgate_core::audit::{AUDIT_PROPERTIES, DECISION_PROPERTY, END_PROPERTY};
    let check = |what: &str, format: &Value| {
        let text = serde_json::to_string(format).unwrap();
        for key in AUDIT_PROPERTIES
            .iter()
            .chain([&DECISION_PROPERTY, &END_PROPERTY])
        {
            let field = format!("%FILTER_STATE(wasm.{key}:PLAIN)%");
            assert!(text.contains(&field), "{what}: no {field}");
        }
        for field in [
            "%ACCESS_LOG_TYPE%",
            "%DURATION%",
            "%BYTES_RECEIVED%",
            "%BYTES_SENT%",
            "%RESPONSE_FLAGS%",
            "%UPSTREAM_HOST%",
            "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
            "%CONNECTION_TERMINATION_DETAILS%",
            "%REQ(X-REQUEST-ID)%",
        ] {
            assert!(text.contains(field), "{what}: no {field}");
        }
        let reqs = text.matches("%REQ(").count();
        assert_eq!(reqs, 1, "{what}: only X-Request-ID of the request");
        assert!(!text.contains("PATH") && !text.contains("%RESP("), "{what}");
    };
    for file in [
        "static-clusters.yaml",
        "dynamic.yaml",
        "fleet.yaml",
        "rotation/listeners.yaml",
    ] {
        let text = read_envoy_file(file).unwrap();
        assert!(
            text.contains(
                "access_log_options: { flush_log_on_tunnel_successfully_established: true }"
            ),
            "{file}"
        );
        let listener = if file.starts_with("rotation/") {
            yaml(file)["resources"][0].clone()
        } else {
            static_listener(file)
        };
        let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
        check(
            file,
            &hcm["access_log"][0]["typed_config"]["log_format"]["json_format"],
        );
    }
    let docs = yaml_docs("istio/access-log.yaml");
    check(
        "istio/access-log.yaml",
        &docs[0]["spec"]["meshConfig"]["extensionProviders"][0]["envoyFileAccessLog"]["logFormat"]
            ["labels"],
    );
}

/// The handshake limits: in every Envoy layout the first two HTTP filters
/// are the per-client and the gateway-wide local rate limits, set for every
/// request (no route overrides them, so a client-sent x-mksgate-cluster
/// cannot pick another route's bucket); the Istio kit's EnvoyFilter inserts
/// the very same two, in the same order, ahead of the WasmPlugin.
#[test]
fn handshake_limits_are_the_same_in_every_kit() {
    let limits = |listener: &Value| -> Vec<Value> {
        let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
        let filters = hcm["http_filters"].as_array().unwrap();
        assert_eq!(filters[2]["name"], "envoy.filters.http.wasm");
        let text = serde_json::to_string(&hcm["route_config"]).unwrap();
        assert!(
            !text.contains("local_ratelimit"),
            "a route overrides the limits"
        );
        filters[..2].to_vec()
    };
    let envoy = limits(&static_listener("static-clusters.yaml"));
    assert_eq!(envoy, limits(&static_listener("dynamic.yaml")));
    assert_eq!(
        envoy[0]["typed_config"]["stat_prefix"],
        "console_client_handshakes"
    );
    assert_eq!(
        envoy[1]["typed_config"]["stat_prefix"],
        "console_handshakes"
    );
    for f in &envoy {
        assert_eq!(f["name"], "envoy.filters.http.local_ratelimit");
    }

    let patches = &yaml_docs("istio/handshake-limits.yaml")[0]["spec"]["configPatches"];
    let patches = patches.as_array().unwrap();
    assert_eq!(patches.len(), 2);
    for p in patches {
        assert_eq!(p["applyTo"], "HTTP_FILTER");
        assert_eq!(p["match"]["context"], "GATEWAY");
        assert_eq!(p["patch"]["operation"], "INSERT_FIRST");
    }
    // INSERT_FIRST twice: the later patch ends up in front.
    let istio: Vec<Value> = patches
        .iter()
        .rev()
        .map(|p| p["patch"]["value"].clone())
        .collect();
    assert_eq!(
        istio, envoy,
        "envoy/istio/handshake-limits.yaml differs from envoy/static-clusters.yaml's limits"
    );
}
