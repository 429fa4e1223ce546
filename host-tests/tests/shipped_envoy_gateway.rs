//! The Envoy Gateway kit's timers are the Envoy kit's, field by field, in
//! Envoy Gateway's own API names: each name is checked against the API
//! type Envoy Gateway publishes (@kubernetes-models/envoy-gateway, the
//! package the schema check uses), and each value against
//! envoy/static-clusters.yaml. The kit once set `idleTimeout: 3600s` where
//! consoles need the stream idle timeout, and Envoy Gateway's 5-minute
//! default then cut every idle console.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_testkit::paths::workspace_root;
use mksgate_testkit::template::read_envoy_file;
use serde_json::Value;

fn docs(rel: &str) -> Vec<Value> {
    mksgate_host_tests::shipped::yaml_docs(rel).unwrap()
}

/// The fields an Envoy Gateway API type declares (its `.d.ts`).
fn api_fields(type_name: &str) -> Vec<String> {
    let path = workspace_root().join(format!(
        "tools/crd-check/node_modules/@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1/{type_name}.d.ts"
    ));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} (installed by scripts/setup.sh): {e}", path.display()));
    text.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('"')?
                .split_once("\"?:")
                .map(|(f, _)| f.to_string())
        })
        .collect()
}

/// The HTTP connection manager of the Envoy kit's listener.
fn envoy_hcm() -> Value {
    let doc: Value = serde_yaml_ng::from_str(
        &read_envoy_file("static-clusters.yaml")
            .unwrap()
            .replace("@TMPDIR@", "/tmp"),
    )
    .unwrap();
    doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        .clone()
}

#[test]
fn client_timeouts_are_the_envoy_kits_in_envoy_gateways_names() {
    let ctp = docs("gateway-api/envoy-gateway.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ClientTrafficPolicy")
        .unwrap();
    let http = &ctp["spec"]["timeouts"]["http"];
    let limit = &ctp["spec"]["connection"]["connectionLimit"];
    let hcm = envoy_hcm();
    let common = &hcm["common_http_protocol_options"];
    for (value, field, api_type, envoy) in [
        (
            &http["streamIdleTimeout"],
            "streamIdleTimeout",
            "HTTPClientTimeout",
            &hcm["stream_idle_timeout"],
        ),
        (
            &http["idleTimeout"],
            "idleTimeout",
            "HTTPClientTimeout",
            &common["idle_timeout"],
        ),
        (
            &http["requestReceivedTimeout"],
            "requestReceivedTimeout",
            "HTTPClientTimeout",
            &hcm["request_headers_timeout"],
        ),
        (
            &limit["maxConnectionDuration"],
            "maxConnectionDuration",
            "ConnectionLimit",
            &common["max_connection_duration"],
        ),
    ] {
        assert!(
            api_fields(api_type).iter().any(|f| f == field),
            "{api_type} has no field {field}: {:?}",
            api_fields(api_type)
        );
        assert!(envoy.is_string(), "the Envoy kit sets no value for {field}");
        assert_eq!(value, envoy, "{field}");
    }
    // The stream idle timeout is the one that keeps idle consoles: it must
    // be the long one, never Envoy Gateway's 5-minute default.
    assert_eq!(http["streamIdleTimeout"], "3600s");
    // Every field the kit sets under timeouts.http is one the type has.
    let known = api_fields("HTTPClientTimeout");
    for field in http.as_object().unwrap().keys() {
        assert!(
            known.contains(field),
            "timeouts.http.{field} is not an Envoy Gateway field"
        );
    }
}

/// The route side: BackendTrafficPolicy's request timeout bounds the wait
/// for ESXi's 101 as the Envoy kit's route `timeout` does.
#[test]
fn backend_timeout_is_the_envoy_kits_route_timeout() {
    let btp = docs("gateway-api/envoy-gateway.yaml")
        .into_iter()
        .find(|d| d["kind"] == "BackendTrafficPolicy")
        .unwrap();
    let http = &btp["spec"]["timeout"]["http"];
    let known = api_fields("HTTPTimeout");
    for field in http.as_object().unwrap().keys() {
        assert!(
            known.contains(field),
            "timeout.http.{field} is not an Envoy Gateway field"
        );
    }
    let hcm = envoy_hcm();
    let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"];
    assert_eq!(http["requestTimeout"], route["timeout"]);
    assert_eq!(http["requestTimeout"], "15s");
}

#[test]
fn the_kit_says_how_to_enable_backends() {
    let text = read_envoy_file("gateway-api/envoy-gateway.yaml").unwrap();
    let uses_backend = docs("gateway-api/envoy-gateway.yaml")
        .iter()
        .any(|d| d["kind"] == "Backend");
    assert!(uses_backend);
    assert!(
        text.contains("enableBackend: true"),
        "kind: Backend needs extensionApis.enableBackend"
    );
}
