//! The Istio kit (`envoy/istio/`) turned into an Envoy config the way
//! istiod builds one for an ingress gateway, for the parts the kit uses:
//! the Gateway's TLS server, one virtual host named after the
//! VirtualService's hosts (`domains: [host, host:*]`), a route per
//! VirtualService `http` entry (header match, `outbound|<port>||<host>`
//! cluster, `rewrite.authority` as `host_rewrite_literal`, request header
//! removal, direct responses), the EnvoyFilter's patches inserted first in
//! the HTTP filters, the WasmPlugin as a wasm filter delivered by ECDS with
//! `vmConfig.env` as host environment keys, a cluster per ServiceEntry with
//! its DestinationRule's TLS, the connection manager istiod builds
//! (`listener_builder.go`: codec AUTO, `normalize_path`, escaped slashes
//! kept, no stream idle timeout) with `hardening.yaml` merged into it, and
//! two access logs: Istio's default format and the kit's
//! (`access-log.yaml`). No istiod runs here, so
//! this is a model of istiod's output, not istiod's output; the point it
//! proves is the one that broke: a named virtual host.

use crate::envoy::read_envoy_file;
use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// Files the config names inside Envoy's temporary directory.
pub const GATEWAY_CERT_FILE: &str = "istio-gateway.crt";
pub const GATEWAY_KEY_FILE: &str = "istio-gateway.key";
pub const ESXI_CA_FILE: &str = "istio-esxi-ca.pem";
/// The wasm filter's config, delivered by ECDS as istiod delivers a
/// WasmPlugin (here from a watched file, there over ADS).
pub const ECDS_FILE: &str = "istio-ecds.yaml";
/// The access log in Istio's default format, and the kit's.
pub const DEFAULT_ACCESS_LOG: &str = "istio-default-access.log";
pub const KIT_ACCESS_LOG: &str = "mksgate-access.log";

/// Istio's default access-log format (`EnvoyTextLogFormat` in
/// pilot/pkg/model/telemetry_logging.go), which writes the path.
pub const ISTIO_DEFAULT_FORMAT: &str = r#"[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%"#;

/// The Envoy config and the ECDS file to write as `ECDS_FILE`.
pub struct IstioShape {
    pub bootstrap: String,
    pub ecds: String,
}

fn docs(rel: &str) -> Result<Vec<Value>> {
    let text = read_envoy_file(rel)?;
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).with_context(|| format!("envoy/{rel}")))
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect()
}

/// An EnvoyFilter MERGE as istiod applies it (proto merge): messages merge
/// field by field, repeated fields append, anything else is replaced.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (Value::Array(a), Value::Array(b)) => a.extend(b.iter().cloned()),
        (slot, v) => *slot = v.clone(),
    }
}

fn kind<'d>(docs: &'d [Value], kind: &str) -> Result<&'d Value> {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .ok_or_else(|| anyhow!("no {kind}"))
}

/// `outbound|<port>||<host>`, Istio's name for a ServiceEntry port's cluster.
pub fn cluster_name(host: &str, port: u64) -> String {
    format!("outbound|{port}||{host}")
}

/// One VirtualService `http` entry as istiod's route.
fn route(http: &Value) -> Result<Value> {
    let mut route = json!({ "name": http["name"], "match": { "prefix": "/" } });
    if let Some(headers) = http["match"][0]["headers"].as_object() {
        let matchers: Vec<Value> = headers
            .iter()
            .map(|(name, m)| json!({"name": name, "string_match": {"exact": m["exact"]}}))
            .collect();
        route["match"]["headers"] = Value::Array(matchers);
    }
    if let Some(direct) = http.get("directResponse") {
        route["direct_response"] = json!({
            "status": direct["status"],
            "body": {"inline_string": direct["body"]["string"]}
        });
        return Ok(route);
    }
    let dest = &http["route"][0]["destination"];
    let host = dest["host"].as_str().context("route destination host")?;
    let port = dest["port"]["number"]
        .as_u64()
        .context("route destination port")?;
    let mut action = json!({ "cluster": cluster_name(host, port) });
    if let Some(t) = http["timeout"].as_str() {
        action["timeout"] = json!(t);
    }
    if let Some(a) = http["rewrite"]["authority"].as_str() {
        action["host_rewrite_literal"] = json!(a);
    }
    // Istio turns on WebSocket upgrades per route.
    action["upgrade_configs"] = json!([{"upgrade_type": "websocket"}]);
    route["route"] = action;
    if let Some(remove) = http["headers"]["request"]["remove"].as_array() {
        route["request_headers_to_remove"] = Value::Array(remove.clone());
    }
    Ok(route)
}

/// The Envoy config (JSON, which Envoy reads as YAML) for the kit, with the
/// ESXi hosts of `esxi-hosts.yaml` at `esxi` (host name, address) and the
/// WasmPlugin's `pluginConfig` passed through `edit` first.
pub fn envoy_config(
    esxi: &[(&str, SocketAddr)],
    module: &str,
    edit: impl FnOnce(&mut Value),
) -> Result<IstioShape> {
    let gateway = docs("istio/gateway.yaml")?;
    let vs = kind(&gateway, "VirtualService")?;
    let server = &kind(&gateway, "Gateway")?["spec"]["servers"][0];
    let plugin = kind(&docs("istio/wasmplugin.yaml")?, "WasmPlugin")?["spec"].clone();
    let limits = kind(&docs("istio/handshake-limits.yaml")?, "EnvoyFilter")?["spec"].clone();
    let hosts = docs("istio/esxi-hosts.yaml")?;
    let hardening = kind(&docs("istio/hardening.yaml")?, "EnvoyFilter")?["spec"].clone();

    let vhost_name = vs["spec"]["hosts"][0]
        .as_str()
        .context("VirtualService host")?;
    let routes: Vec<Value> = vs["spec"]["http"]
        .as_array()
        .context("VirtualService http")?
        .iter()
        .map(route)
        .collect::<Result<_>>()?;

    // An EnvoyFilter patch applies to the filter chains its match selects;
    // the kit's select the console's chain by SNI (istiod gives each
    // Gateway server its chain, matching the server's hosts), so a patch
    // for any other name would not reach the console at all.
    let sni_hosts = server["hosts"].as_array().context("Gateway server hosts")?;
    let check_scope = |patch: &Value, file: &str| -> Result<()> {
        let sni = &patch["match"]["listener"]["filterChain"]["sni"];
        if !sni_hosts.contains(sni) {
            return Err(anyhow!(
                "{file}: a patch matches filterChain.sni {sni}, not the Gateway server's hosts {sni_hosts:?}"
            ));
        }
        Ok(())
    };
    // EnvoyFilter: each INSERT_FIRST goes in front of what is there.
    let mut filters: Vec<Value> = Vec::new();
    for patch in limits["configPatches"]
        .as_array()
        .context("configPatches")?
    {
        check_scope(patch, "handshake-limits.yaml")?;
        filters.insert(0, patch["patch"]["value"].clone());
    }
    let mut config = plugin["pluginConfig"].clone();
    edit(&mut config);
    let env: Vec<Value> = plugin["vmConfig"]["env"]
        .as_array()
        .context("vmConfig.env")?
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    let failure_policy = match plugin["failStrategy"].as_str() {
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        Some("FAIL_OPEN") => "FAIL_OPEN",
        _ => "FAIL_CLOSED",
    };
    let wasm = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "istio-ingress.mksgate",
                "root_id": "mksgate",
                "failure_policy": failure_policy,
                "vm_config": {
                    "vm_id": "istio-ingress.mksgate",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": module}},
                    "environment_variables": {"host_env_keys": env}
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config.to_string()
                }
            }
    });
    // istiod names the filter after the WasmPlugin and serves it by ECDS.
    let wasm_name = "istio-ingress.mksgate";
    filters.push(json!({
        "name": wasm_name,
        "config_discovery": {
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": format!("@TMPDIR@/{ECDS_FILE}"),
                    "watched_directory": {"path": "@TMPDIR@"}
                }
            },
            "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]
        }
    }));
    let ecds = json!({
        "version_info": "1",
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": wasm_name,
            "typed_config": wasm
        }]
    });
    // The kit's access log (access-log.yaml's labels) next to Istio's default.
    let kit_log = kind(&docs("istio/access-log.yaml")?, "IstioOperator")?["spec"]["meshConfig"]
        ["extensionProviders"][0]["envoyFileAccessLog"]["logFormat"]["labels"]
        .clone();
    let access_log = json!([
        {"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": format!("@TMPDIR@/{DEFAULT_ACCESS_LOG}"),
            "log_format": {"text_format_source": {"inline_string": format!("{ISTIO_DEFAULT_FORMAT}\n")}}
        }},
        {"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": format!("@TMPDIR@/{KIT_ACCESS_LOG}"),
            "log_format": {"json_format": kit_log}
        }}
    ]);
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));

    let mut clusters = Vec::new();
    for se in hosts.iter().filter(|d| d["kind"] == "ServiceEntry") {
        let host = se["spec"]["hosts"][0]
            .as_str()
            .context("ServiceEntry host")?;
        let port = se["spec"]["ports"][0]["number"]
            .as_u64()
            .context("ServiceEntry port")?;
        let dr = hosts
            .iter()
            .find(|d| d["kind"] == "DestinationRule" && d["spec"]["host"] == host)
            .with_context(|| format!("no DestinationRule for {host}"))?;
        let addr = esxi
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, a)| *a)
            .with_context(|| format!("no stand-in for {host}"))?;
        let name = cluster_name(host, port);
        clusters.push(json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "10s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}}}}
            ]}]},
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": dr["spec"]["trafficPolicy"]["tls"]["sni"],
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": format!("@TMPDIR@/{ESXI_CA_FILE}")}
                }}
            }}
        }));
    }

    // The connection manager as istiod builds it for a gateway, then the
    // kit's MERGE patch.
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "outbound_0.0.0.0_443",
        "codec_type": "AUTO",
        "normalize_path": true,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "use_remote_address": true,
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "stream_idle_timeout": "0s",
        "access_log": access_log,
        "route_config": {
            "name": format!("https.443.{}.{}.istio-ingress",
                server["port"]["name"].as_str().unwrap_or("https"),
                kind(&gateway, "Gateway")?["metadata"]["name"].as_str().unwrap_or("gateway")),
            "virtual_hosts": [{
                "name": format!("{vhost_name}:443"),
                "domains": [vhost_name, format!("{vhost_name}:*")],
                "routes": routes
            }]
        },
        "http_filters": filters
    });
    for patch in hardening["configPatches"]
        .as_array()
        .context("hardening configPatches")?
    {
        check_scope(patch, "hardening.yaml")?;
        if patch["applyTo"] != "NETWORK_FILTER" || patch["patch"]["operation"] != "MERGE" {
            return Err(anyhow!(
                "hardening.yaml: only NETWORK_FILTER MERGE is modelled"
            ));
        }
        merge(&mut hcm, &patch["patch"]["value"]["typed_config"]);
    }

    let min_tls = match server["tls"]["minProtocolVersion"].as_str() {
        Some("TLSV1_3") => "TLSv1_3",
        _ => "TLSv1_2",
    };
    let bootstrap = json!({
        "node": {"id": "router~10.0.0.1~istio-ingressgateway.istio-ingress~istio-ingress.svc.cluster.local", "cluster": "istio-ingressgateway.istio-ingress"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": crate::shipped::LISTENER,
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 0}},
                // Istio reads SNI with the TLS inspector to pick the chain.
                "listener_filters": [{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
                }],
                "filter_chains": [{
                    "filter_chain_match": {"server_names": server["hosts"]},
                    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "common_tls_context": {
                            "tls_params": {"tls_minimum_protocol_version": min_tls},
                            "alpn_protocols": ["h2", "http/1.1"],
                            "tls_certificates": [{
                                "certificate_chain": {"filename": format!("@TMPDIR@/{GATEWAY_CERT_FILE}")},
                                "private_key": {"filename": format!("@TMPDIR@/{GATEWAY_KEY_FILE}")}
                            }]
                        }
                    }},
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": hcm
                    }]
                }]
            }],
            "clusters": clusters
        }
    });
    Ok(IstioShape {
        bootstrap: serde_json::to_string_pretty(&bootstrap)?,
        ecds: serde_json::to_string_pretty(&ecds)?,
    })
}
