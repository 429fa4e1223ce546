//! Every config file shipped under `envoy/` is loaded by a test:
//!
//! * each Envoy YAML passes `envoy --mode validate` with only its
//!   `/etc/mksgate` paths substituted (the module, certificates and the
//!   rotation layout's listener file exist there), the rotation listener
//!   file also as a static listener of its bootstrap (validate mode does not
//!   read LDS files);
//! * a new file or directory under `envoy/` that no test knows fails
//!   `every_shipped_file_is_covered`;
//! * the rotation layout cannot drift from `static-clusters.yaml`: same
//!   listener except the signing keys and their environment, same
//!   admin/stats/limits/clusters;
//! * the Istio YAMLs parse, with the kinds and API versions expected, and
//!   agree with each other (hosts, cluster names, key variables) and with
//!   the Envoy configs' plugin configuration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mksgate_core::jws::encode_secret;
use mksgate_host_tests::envoy::{read_envoy_file, workspace_root, Envoy};
use mksgate_host_tests::shipped::{self, KEY_ENV};
use mksgate_host_tests::tls::{CertKey, TestCa};
use serde_json::{json, Value};

/// The Envoy configs (paths relative to `envoy/`) and the Istio files.
const ENVOY_CONFIGS: [&str; 5] = [
    "static-clusters.yaml",
    "dynamic.yaml",
    "fleet.yaml",
    "rotation/bootstrap.yaml",
    "rotation/listeners.yaml",
];
const ISTIO_FILES: [&str; 10] = [
    "access-log.yaml",
    "esxi-hosts.yaml",
    "etcd.yaml",
    "gateway-env-patch.yaml",
    "gateway.yaml",
    "handshake-limits.yaml",
    "hardening.yaml",
    "secret.yaml",
    "wasmplugin.yaml",
    "wasmplugin-two-tenants.yaml",
];

const GATEWAY_API_FILES: [&str; 3] = [
    "envoy-gateway.yaml",
    "envoy-gateway-two-tenants.yaml",
    "istio.yaml",
];

fn yaml(rel: &str) -> Value {
    let text = read_envoy_file(rel).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("envoy/{rel}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    shipped::yaml_docs(rel).unwrap()
}

/// `/etc/mksgate` with what the shipped configs point at; removed on drop.
struct Etc(PathBuf);

impl Etc {
    fn new() -> Etc {
        let dir = std::env::temp_dir().join(format!(
            "mksgate-shipped-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        let gw = CertKey::self_signed(&["console.example.com"]).unwrap();
        std::fs::write(dir.join("tls/gateway.crt"), gw.chain_pem()).unwrap();
        std::fs::write(dir.join("tls/gateway.key"), &gw.key_pem).unwrap();
        let ca = TestCa::new("mksgate test VMCA").unwrap();
        std::fs::write(dir.join("tls/esxi-ca.pem"), ca.cert_pem()).unwrap();
        std::fs::create_dir_all(dir.join("etcd")).unwrap();
        let client = ca.issue(&["mksgate-gateway"]).unwrap();
        std::fs::write(dir.join("etcd/client.crt"), client.chain_pem()).unwrap();
        std::fs::write(dir.join("etcd/client.key"), &client.key_pem).unwrap();
        std::fs::write(dir.join("etcd/ca.crt"), ca.cert_pem()).unwrap();
        std::fs::copy(
            shipped::module_path().unwrap(),
            dir.join("mksgate_filter.wasm"),
        )
        .unwrap();
        let etc = Etc(dir);
        std::fs::write(
            etc.0.join("listeners.yaml"),
            etc.paths(&read_envoy_file("rotation/listeners.yaml").unwrap()),
        )
        .unwrap();
        etc
    }

    /// The only substitution: `/etc/mksgate` -> this directory.
    fn paths(&self, text: &str) -> String {
        assert!(text.contains("/etc/mksgate/"));
        text.replace("/etc/mksgate", &self.0.to_string_lossy())
    }
}

impl Drop for Etc {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The VM's environment the shipped layouts name: the key, and the fleet
/// layout's etcd password.
fn key_env() -> Vec<(String, String)> {
    vec![
        (KEY_ENV.to_string(), encode_secret(&[7u8; 32])),
        (
            mksgate_host_tests::shipped::ETCD_PASSWORD_ENV.to_string(),
            "etcd-password".to_string(),
        ),
    ]
}

fn validate(name: &str, config: &str) {
    match Envoy::validate_with_env(config, &key_env()) {
        Ok(out) => assert!(out.contains("OK"), "{name}: {out}"),
        Err(e) => panic!("{name}: {e:#}"),
    }
}

#[test]
fn static_clusters_yaml_validates() {
    let etc = Etc::new();
    validate(
        "static-clusters.yaml",
        &etc.paths(&read_envoy_file("static-clusters.yaml").unwrap()),
    );
}

#[test]
fn fleet_yaml_validates() {
    let etc = Etc::new();
    validate(
        "fleet.yaml",
        &etc.paths(&read_envoy_file("fleet.yaml").unwrap()),
    );
}

/// The fleet layout is the static one plus the etcd store: the
/// `replay_store` block of the plugin configuration and the `mksgate_etcd`
/// cluster, nothing else.
#[test]
fn fleet_is_static_clusters_but_for_the_etcd_store() {
    let mut fleet = yaml("fleet.yaml");
    let stat = yaml("static-clusters.yaml");
    let clusters = fleet["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap();
    let etcd = clusters.pop().unwrap();
    assert_eq!(etcd["name"], "mksgate_etcd");
    let tls = &etcd["transport_socket"]["typed_config"]["common_tls_context"];
    assert!(
        tls["tls_certificates"][0]["certificate_chain"].is_object(),
        "a client certificate"
    );
    assert!(
        tls["validation_context"]["trusted_ca"].is_object(),
        "etcd's CA"
    );
    // The members' name is checked, not just their CA (the test etcd's
    // certificates carry this name: host-tests/src/etcd.rs).
    assert_eq!(
        tls["validation_context"]["match_typed_subject_alt_names"],
        serde_json::json!([{"san_type": "DNS", "matcher": {"exact": mksgate_host_tests::etcd::SERVER_NAME}}])
    );
    assert_eq!(
        etcd["transport_socket"]["typed_config"]["sni"],
        mksgate_host_tests::etcd::SERVER_NAME
    );
    assert_eq!(
        etcd["health_checks"][0]["http_health_check"]["path"],
        "/health"
    );
    let mut listener = fleet["static_resources"]["listeners"][0].clone();
    let raw = wasm_filter_mut(&mut listener)["config"]["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let mut plugin: Value = serde_json::from_str(&raw).unwrap();
    let store = plugin
        .as_object_mut()
        .unwrap()
        .remove("replay_store")
        .unwrap();
    assert_eq!(store["etcd"]["cluster"], "mksgate_etcd");
    // Revocations are read from the same etcd (README, "Ending consoles").
    let revocation = plugin
        .as_object_mut()
        .unwrap()
        .remove("revocation")
        .unwrap();
    assert_eq!(revocation["etcd"]["cluster"], "mksgate_etcd");
    // The plugin config as the static layout has it, otherwise.
    let mut static_listener = stat["static_resources"]["listeners"][0].clone();
    let static_raw = wasm_filter_mut(&mut static_listener)["config"]["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let static_plugin: Value = serde_json::from_str(&static_raw).unwrap();
    assert_eq!(plugin, static_plugin);
    wasm_filter_mut(&mut listener)["config"]["configuration"]["value"] = Value::Null;
    wasm_filter_mut(&mut static_listener)["config"]["configuration"]["value"] = Value::Null;
    // The VM is also handed the etcd user's password.
    let env = &mut wasm_filter_mut(&mut listener)["config"]["vm_config"]["environment_variables"]
        ["host_env_keys"];
    assert_eq!(
        env.as_array_mut().unwrap().pop().unwrap(),
        mksgate_host_tests::shipped::ETCD_PASSWORD_ENV
    );
    assert_eq!(
        store["etcd"]["auth"]["password_env"],
        mksgate_host_tests::shipped::ETCD_PASSWORD_ENV
    );
    assert_eq!(
        store["etcd"]["auth"]["user"],
        mksgate_host_tests::etcd::GATEWAY_USER
    );
    assert_eq!(listener, static_listener);
    fleet["static_resources"]["listeners"][0] = Value::Null;
    // etcd's answers are bounded before Envoy buffers them.
    let runtime = fleet
        .as_object_mut()
        .unwrap()
        .remove("layered_runtime")
        .unwrap();
    assert_eq!(
        runtime["layers"][0]["static_layer"]["http.async_response_buffer_limit"],
        mksgate_core::etcd::MAX_ANSWER_BYTES as u64
    );
    assert_eq!(etcd["per_connection_buffer_limit_bytes"], 65536);
    // The store's counters get their outcome as a label, like the codes.
    let tags = fleet["stats_config"]["stats_tags"].as_array_mut().unwrap();
    let outcome = tags.pop().unwrap();
    assert_eq!(outcome["tag_name"], "outcome", "{outcome}");
    let mut stat = stat;
    stat["static_resources"]["listeners"][0] = Value::Null;
    assert_eq!(
        fleet, stat,
        "envoy/fleet.yaml drifted from envoy/static-clusters.yaml beyond the etcd store"
    );
}

#[test]
fn dynamic_yaml_validates() {
    let etc = Etc::new();
    validate(
        "dynamic.yaml",
        &etc.paths(&read_envoy_file("dynamic.yaml").unwrap()),
    );
}

#[test]
fn rotation_bootstrap_validates_with_its_listener_file() {
    let etc = Etc::new();
    let bootstrap = etc.paths(&read_envoy_file("rotation/bootstrap.yaml").unwrap());
    validate("rotation/bootstrap.yaml", &bootstrap);

    // Validate mode does not read the LDS file, so the listener file's
    // contents are validated as a static listener of the same bootstrap.
    let mut boot: Value = serde_yaml_ng::from_str(&bootstrap).unwrap();
    let listeners: Value =
        serde_yaml_ng::from_str(&etc.paths(&read_envoy_file("rotation/listeners.yaml").unwrap()))
            .unwrap();
    let resources: Vec<Value> = listeners["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(
                r["@type"],
                "type.googleapis.com/envoy.config.listener.v3.Listener"
            );
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("@type");
            r
        })
        .collect();
    assert_eq!(resources.len(), 1);
    boot.as_object_mut().unwrap().remove("dynamic_resources");
    boot["static_resources"]["listeners"] = Value::Array(resources);
    validate(
        "rotation/listeners.yaml (as a static listener)",
        &serde_json::to_string_pretty(&boot).unwrap(),
    );

    // A listener file the filter refuses is caught by the same check, so
    // the one above is not vacuous.
    let mut broken = boot.clone();
    let wasm = wasm_filter_mut(&mut broken["static_resources"]["listeners"][0]);
    let value = wasm["config"]["configuration"]["value"].as_str().unwrap();
    wasm["config"]["configuration"]["value"] =
        Value::String(value.replace("\"path_prefix\"", "\"path_prefx\""));
    let err =
        Envoy::validate_with_env(&serde_json::to_string(&broken).unwrap(), &key_env()).unwrap_err();
    assert!(format!("{err:#}").contains("path_prefx"), "{err:#}");
}

/// Lists `envoy/`: every file must be one the tests load, every directory
/// one they know. A new config without a test fails here.
#[test]
fn every_shipped_file_is_covered() {
    let root = workspace_root().join("envoy");
    let mut found = BTreeSet::new();
    fn walk(dir: &Path, rel: &str, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &rel, out);
            } else {
                out.insert(rel);
            }
        }
    }
    walk(&root, "", &mut found);
    let known: BTreeSet<String> = ENVOY_CONFIGS
        .iter()
        .map(|s| s.to_string())
        .chain(ISTIO_FILES.iter().map(|f| format!("istio/{f}")))
        .chain(GATEWAY_API_FILES.iter().map(|f| format!("gateway-api/{f}")))
        .collect();
    let untested: Vec<_> = found.difference(&known).collect();
    let missing: Vec<_> = known.difference(&found).collect();
    assert!(
        untested.is_empty(),
        "files under envoy/ that no test loads: {untested:?} (add them to \
         host-tests/tests/shipped_configs.rs)"
    );
    assert!(missing.is_empty(), "expected files gone: {missing:?}");
    // Every Envoy config above is loaded by `envoy --mode validate` in this
    // file; static-clusters and dynamic also end to end (shipped.rs), the
    // rotation layout in e2e_rotation.rs.
    for rel in ENVOY_CONFIGS {
        assert!(rel.ends_with(".yaml"));
        yaml(rel);
    }
}

/// The `envoy.filters.http.wasm` filter's `typed_config` in a listener.
fn wasm_filter_mut(listener: &mut Value) -> &mut Value {
    let chains = listener["filter_chains"].as_array_mut().unwrap();
    assert_eq!(chains.len(), 1);
    let hcm = &mut chains[0]["filters"][0]["typed_config"];
    hcm["http_filters"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .map(|f| &mut f["typed_config"])
        .expect("no wasm filter")
}

/// The listener without the signing keys and their environment; returns
/// it and the removed parts (environment, keys).
fn without_keys(mut listener: Value) -> (Value, Value, Value) {
    let wasm = wasm_filter_mut(&mut listener);
    let config = &mut wasm["config"];
    let env = config["vm_config"]
        .as_object_mut()
        .unwrap()
        .remove("environment_variables")
        .expect("no environment_variables");
    let raw = config["configuration"]["value"].as_str().unwrap();
    let mut plugin: Value = serde_json::from_str(raw).unwrap();
    let keys = plugin.as_object_mut().unwrap().remove("keys").unwrap();
    config["configuration"]["value"] = plugin;
    (listener, env, keys)
}

fn static_listener(rel: &str) -> Value {
    let v = yaml(rel);
    let listeners = v["static_resources"]["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 1);
    listeners[0].clone()
}

#[test]
fn rotation_listener_is_the_static_listener_but_for_keys() {
    let file = yaml("rotation/listeners.yaml");
    assert!(file["version_info"].is_string());
    let resources = file["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 1, "one listener");
    let mut rotation = resources[0].clone();
    assert_eq!(
        rotation.as_object_mut().unwrap().remove("@type").unwrap(),
        "type.googleapis.com/envoy.config.listener.v3.Listener"
    );
    let (rotation, rot_env, rot_keys) = without_keys(rotation);
    let (static_, st_env, st_keys) = without_keys(static_listener("static-clusters.yaml"));
    assert_eq!(
        rotation, static_,
        "envoy/rotation/listeners.yaml's listener drifted from the one in \
         envoy/static-clusters.yaml (only the keys and their environment may differ)"
    );
    // The keys are a list of secret_env entries, each variable provided.
    for (env, keys) in [(&rot_env, &rot_keys), (&st_env, &st_keys)] {
        let mut provided: BTreeSet<&str> = env["host_env_keys"]
            .as_array()
            .map(|a| a.iter().map(|k| k.as_str().unwrap()).collect())
            .unwrap_or_default();
        if let Some(kv) = env["key_values"].as_object() {
            provided.extend(kv.keys().map(String::as_str));
        }
        for key in keys.as_array().unwrap() {
            let var = key["secret_env"]
                .as_str()
                .expect("keys come from secret_env");
            assert!(provided.contains(var), "{var} not provided by {env}");
        }
    }
    // As shipped (before any rotation) they are the same.
    assert_eq!((rot_env, rot_keys), (st_env, st_keys));
}

#[test]
fn rotation_bootstrap_is_static_clusters_but_for_the_listener() {
    let mut boot = yaml("rotation/bootstrap.yaml");
    let mut stat = yaml("static-clusters.yaml");
    let lds = &boot["dynamic_resources"]["lds_config"];
    assert_eq!(lds["resource_api_version"], "V3");
    assert_eq!(
        lds["path_config_source"]["path"],
        "/etc/mksgate/listeners.yaml"
    );
    assert_eq!(
        lds["path_config_source"]["watched_directory"]["path"],
        "/etc/mksgate"
    );
    assert!(boot["node"]["id"].is_string() && boot["node"]["cluster"].is_string());
    for key in ["node", "dynamic_resources"] {
        boot.as_object_mut().unwrap().remove(key);
    }
    stat["static_resources"]
        .as_object_mut()
        .unwrap()
        .remove("listeners")
        .unwrap();
    assert_eq!(
        boot, stat,
        "envoy/rotation/bootstrap.yaml drifted from envoy/static-clusters.yaml \
         (admin, stats, overload manager and clusters must be the same)"
    );
}

// ---------------------------------------------------------------- Istio

fn kinds(docs: &[Value]) -> Vec<(String, String)> {
    docs.iter()
        .map(|d| {
            (
                d["apiVersion"].as_str().unwrap_or("").to_string(),
                d["kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn pair(api: &str, kind: &str) -> (String, String) {
    (api.to_string(), kind.to_string())
}

#[test]
fn istio_yamls_parse_with_expected_kinds() {
    let net = "networking.istio.io/v1";
    let se_dr = [pair(net, "ServiceEntry"), pair(net, "DestinationRule")];
    let hosts = yaml_docs("istio/esxi-hosts.yaml");
    let k = kinds(&hosts);
    assert!(!k.is_empty() && k.len() % 2 == 0, "{k:?}");
    for chunk in k.chunks(2) {
        assert_eq!(chunk, se_dr);
    }
    assert_eq!(
        kinds(&yaml_docs("istio/gateway.yaml")),
        vec![pair(net, "Gateway"), pair(net, "VirtualService")]
    );
    assert_eq!(
        kinds(&yaml_docs("istio/secret.yaml")),
        vec![pair("v1", "Secret")]
    );
    assert_eq!(
        kinds(&yaml_docs("istio/wasmplugin.yaml")),
        vec![pair("extensions.istio.io/v1alpha1", "WasmPlugin")]
    );
    assert_eq!(
        kinds(&yaml_docs("istio/access-log.yaml")),
        vec![
            pair("install.istio.io/v1alpha1", "IstioOperator"),
            pair("telemetry.istio.io/v1", "Telemetry")
        ]
    );
    assert_eq!(
        kinds(&yaml_docs("istio/etcd.yaml")),
        vec![pair(net, "ServiceEntry"), pair(net, "DestinationRule")]
    );
    assert_eq!(
        kinds(&yaml_docs("istio/handshake-limits.yaml")),
        vec![pair("networking.istio.io/v1alpha3", "EnvoyFilter")]
    );
    assert_eq!(
        kinds(&yaml_docs("istio/hardening.yaml")),
        vec![pair("networking.istio.io/v1alpha3", "EnvoyFilter")]
    );
    // A strategic-merge patch for the gateway Deployment, not a resource.
    let patch = yaml_docs("istio/gateway-env-patch.yaml");
    assert_eq!(patch.len(), 1);
    assert!(patch[0].get("kind").is_none());
    let containers = patch[0]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers[0]["name"], "istio-proxy");
    let secret = &yaml_docs("istio/secret.yaml")[0];
    assert_eq!(
        containers[0]["envFrom"][0]["secretRef"]["name"],
        secret["metadata"]["name"]
    );
    for d in hosts
        .iter()
        .chain(&yaml_docs("istio/gateway.yaml"))
        .chain(&yaml_docs("istio/wasmplugin.yaml"))
        .chain(&yaml_docs("istio/handshake-limits.yaml"))
        .chain(&yaml_docs("istio/hardening.yaml"))
        .chain(&yaml_docs("istio/etcd.yaml"))
        .chain([secret])
    {
        assert!(d["metadata"]["name"].is_string(), "{d}");
        assert_eq!(d["metadata"]["namespace"], "istio-ingress", "{d}");
    }
}

/// The Istio files agree with each other: the WasmPlugin's keys come from
/// variables the Secret provides; each host of `upstreams.hosts` has a
/// ServiceEntry, a DestinationRule with SNI = host, and a VirtualService
/// route matching the cluster name the filter will set.
#[test]
fn istio_files_agree_with_each_other() {
    let plugin = &yaml_docs("istio/wasmplugin.yaml")[0];
    let spec = &plugin["spec"];
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["failStrategy"], "FAIL_RELOAD");
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"));
    assert_eq!(spec["sha256"].as_str().unwrap().len(), 64);
    let env: BTreeSet<&str> = spec["vmConfig"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["valueFrom"], "HOST");
            e["name"].as_str().unwrap()
        })
        .collect();
    let secret = &yaml_docs("istio/secret.yaml")[0];
    let in_secret: BTreeSet<&str> = secret["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let config = &spec["pluginConfig"];
    for key in config["keys"].as_array().unwrap() {
        let var = key["secret_env"].as_str().unwrap();
        assert!(env.contains(var), "{var} not in vmConfig.env");
        assert!(in_secret.contains(var), "{var} not in the Secret");
    }

    let hosts = yaml_docs("istio/esxi-hosts.yaml");
    let gateway = yaml_docs("istio/gateway.yaml");
    let header = config["upstreams"]["cluster_header"].as_str().unwrap();
    let routes = gateway[1]["spec"]["http"].as_array().unwrap();
    let map = config["upstreams"]["hosts"].as_object().unwrap();
    assert!(!map.is_empty());
    for (host, cluster) in map {
        let cluster = cluster.as_str().unwrap();
        assert_eq!(cluster, format!("outbound|443||{host}"));
        assert!(
            hosts
                .iter()
                .any(|d| d["kind"] == "ServiceEntry" && d["spec"]["hosts"][0] == host.as_str()),
            "no ServiceEntry for {host}"
        );
        assert!(
            hosts.iter().any(|d| d["kind"] == "DestinationRule"
                && d["spec"]["host"] == host.as_str()
                && d["spec"]["trafficPolicy"]["tls"]["sni"] == host.as_str()),
            "no DestinationRule with SNI for {host}"
        );
        // The route sets the ESXi host as the authority (the filter does not
        // under Istio) and removes the cluster header before ESXi.
        assert!(
            routes.iter().any(|r| {
                r["match"][0]["headers"][header]["exact"] == cluster
                    && r["rewrite"]["authority"] == host.as_str()
                    && r["headers"]["request"]["remove"][0] == header
            }),
            "the route for {host} must rewrite the authority and drop {header}"
        );
        assert!(
            routes.iter().any(|r| {
                r["match"][0]["headers"][header]["exact"] == cluster
                    && r["route"][0]["destination"]["host"] == host.as_str()
            }),
            "no VirtualService route for {cluster}"
        );
    }
    assert_eq!(
        gateway[1]["spec"]["gateways"][0],
        gateway[0]["metadata"]["name"]
    );
}

/// The WasmPlugin's pluginConfig is the Envoy configs' plugin JSON (keys,
/// audience, issuer, origins, limits) except for the upstream map, which
/// names Istio's clusters.
#[test]
fn istio_plugin_config_matches_the_envoy_one() {
    let plugin = &yaml_docs("istio/wasmplugin.yaml")[0];
    let mut istio = plugin["spec"]["pluginConfig"].clone();
    let mut listener = static_listener("static-clusters.yaml");
    let raw = wasm_filter_mut(&mut listener)["config"]["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let mut envoy: Value = serde_json::from_str(&raw).unwrap();
    let envoy_hosts = envoy["upstreams"]
        .as_object_mut()
        .unwrap()
        .remove("hosts")
        .unwrap();
    let istio_hosts = istio["upstreams"]
        .as_object_mut()
        .unwrap()
        .remove("hosts")
        .unwrap();
    // Istio's virtual hosts are named: the route rewrites the authority.
    let rewrite = istio["upstreams"]
        .as_object_mut()
        .unwrap()
        .remove("rewrite_authority");
    assert_eq!(rewrite, Some(Value::Bool(false)));
    let names = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&envoy_hosts), names(&istio_hosts));
    assert_eq!(
        istio, envoy,
        "envoy/istio/wasmplugin.yaml's pluginConfig differs from the plugin JSON of \
         envoy/static-clusters.yaml (beyond the upstream cluster names)"
    );
}

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

/// The Istio kit's access-log format is the Envoy kit's JSON access log,
/// field for field, and the Telemetry resource turns on that provider for
/// the gateway.
#[test]
fn istio_access_log_is_the_envoy_kits_format() {
    let docs = yaml_docs("istio/access-log.yaml");
    let provider = &docs[0]["spec"]["meshConfig"]["extensionProviders"][0];
    let labels = &provider["envoyFileAccessLog"]["logFormat"]["labels"];
    let envoy = yaml("static-clusters.yaml");
    let hcm = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let json_format = &hcm["access_log"][0]["typed_config"]["log_format"]["json_format"];
    assert!(json_format.is_object(), "{hcm}");
    assert_eq!(labels, json_format);
    let telemetry = &docs[1]["spec"];
    assert_eq!(
        telemetry["accessLogging"][0]["providers"][0]["name"],
        provider["name"]
    );
    assert_eq!(
        telemetry["selector"]["matchLabels"]["istio"],
        "ingressgateway"
    );
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

/// The Istio kit's hardening EnvoyFilter merges into the gateway's
/// connection manager exactly the Envoy kit's values for each field it
/// sets, and sets every hardening field the Envoy kit has; the
/// VirtualService and the Gateway API rules bound the wait for ESXi's 101
/// as the Envoy kit's admitted route does.
#[test]
fn istio_hardening_is_the_envoy_kits() {
    let envoy = static_listener("static-clusters.yaml");
    let hcm = &envoy["filter_chains"][0]["filters"][0]["typed_config"];
    let patches = &yaml_docs("istio/hardening.yaml")[0]["spec"]["configPatches"];
    let patches = patches.as_array().unwrap();
    assert_eq!(patches.len(), 1);
    let p = &patches[0];
    assert_eq!(
        (
            &p["applyTo"],
            &p["match"]["context"],
            &p["patch"]["operation"]
        ),
        (&json!("NETWORK_FILTER"), &json!("GATEWAY"), &json!("MERGE"))
    );
    let patch = p["patch"]["value"]["typed_config"].as_object().unwrap();
    assert_eq!(patch["@type"], hcm["@type"]);
    let fields = [
        "internal_address_config",
        "normalize_path",
        "merge_slashes",
        "path_with_escaped_slashes_action",
        "max_request_headers_kb",
        "request_headers_timeout",
        "stream_idle_timeout",
        "access_log_options",
        "common_http_protocol_options",
    ];
    let mut names: Vec<&str> = patch
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "@type")
        .collect();
    names.sort_unstable();
    let mut want = fields.to_vec();
    want.sort_unstable();
    assert_eq!(names, want);
    for f in fields {
        assert_eq!(
            patch[f], hcm[f],
            "hardening.yaml {f} differs from the Envoy kit's"
        );
    }
    let admitted = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
    assert_eq!(admitted["name"], "console_admitted");
    let timeout = admitted["route"]["timeout"].as_str().unwrap();
    let vs = &yaml_docs("istio/gateway.yaml")[1]["spec"]["http"];
    let routed: Vec<&Value> = vs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("route").is_some())
        .collect();
    assert!(!routed.is_empty());
    for r in routed {
        assert_eq!(r["timeout"], timeout, "{r}");
    }
    let route = &yaml_docs("gateway-api/istio.yaml")[1]["spec"]["rules"];
    for r in route.as_array().unwrap() {
        assert_eq!(r["timeouts"]["request"], timeout, "{r}");
    }
}

/// The Istio etcd kit: the cluster name it tells the user to put in the
/// WasmPlugin is the one Istio builds for its ServiceEntry, that name is a
/// valid `replay_store.etcd.cluster`, and the gateway presents a client
/// certificate.
#[test]
fn istio_etcd_kit_names_the_cluster_istio_builds() {
    let text = read_envoy_file("istio/etcd.yaml").unwrap();
    let docs = yaml_docs("istio/etcd.yaml");
    let host = docs[0]["spec"]["hosts"][0].as_str().unwrap();
    let port = docs[0]["spec"]["ports"][0]["number"].as_u64().unwrap();
    assert_eq!(docs[0]["spec"]["ports"][0]["protocol"], "HTTP");
    let cluster = format!("outbound|{port}||{host}");
    assert!(
        text.contains(&format!(r#"cluster: "{cluster}""#)),
        "{cluster}"
    );
    assert!(text.contains(&format!("authority: {host}")));
    assert_eq!(docs[1]["spec"]["host"], host);
    assert_eq!(docs[1]["spec"]["trafficPolicy"]["tls"]["mode"], "MUTUAL");
    assert_eq!(
        docs[1]["spec"]["trafficPolicy"]["tls"]["subjectAltNames"],
        serde_json::json!([host]),
        "the members' name is checked"
    );
    assert_eq!(docs[1]["spec"]["trafficPolicy"]["tls"]["sni"], host);
    // The pluginConfig it describes parses, with the shipped plugin config.
    let plugin = &yaml_docs("istio/wasmplugin.yaml")[0]["spec"]["pluginConfig"];
    let mut config = plugin.clone();
    config["replay_store"] = serde_json::json!({"etcd": {"cluster": cluster, "authority": host}});
    config["keys"] = serde_json::json!([{"kid": "k", "alg": "HS256", "secret_base64url": encode_secret(&[7u8; 32])}]);
    let parsed = mksgate_core::Config::parse(config.to_string().as_bytes(), &|_| None).unwrap();
    assert!(matches!(
        parsed.replay_store,
        mksgate_core::ReplayStore::Etcd(_)
    ));
}

/// Runs tools/crd-check on `docs`; (exit success, its report).
fn crd_check(docs: &[Value]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("mksgate-crd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("docs-{}.json", docs.len()));
    std::fs::write(&file, serde_json::to_vec(docs).unwrap()).unwrap();
    let script = workspace_root().join("tools/crd-check/check.mjs");
    let out = std::process::Command::new("node")
        .arg(&script)
        .arg(&file)
        .output()
        .expect("node (installed by scripts/setup.sh)");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), report)
}

/// Every Kubernetes resource of the kits passes its schema: the Secret
/// Kubernetes' own (kubernetes-models 5.1.0), the rest their project's CRD
/// schema (@kubernetes-models/istio 3.0.1, gateway-api 2.0.0,
/// envoy-gateway 2.0.0): what `kubectl apply` would check first. The
/// Deployment patch is a strategic-merge fragment, not a resource.
#[test]
fn kubernetes_resources_pass_their_crd_schemas() {
    let docs: Vec<Value> = ISTIO_FILES
        .iter()
        .map(|f| format!("istio/{f}"))
        .chain(GATEWAY_API_FILES.iter().map(|f| format!("gateway-api/{f}")))
        .flat_map(|f| yaml_docs(&f))
        .filter(|d| d.get("kind").is_some())
        .collect();
    assert!(docs.len() >= 28, "{}", docs.len());
    let (ok, report) = crd_check(&docs);
    println!("{report}");
    assert!(ok, "{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        docs.len()
    );
    // The checker can fail: the WasmPlugin as it was (an unquoted digest
    // is a YAML number).
    let mut plugin = yaml_docs("istio/wasmplugin.yaml")[0].clone();
    plugin["spec"]["sha256"] = serde_json::json!(0);
    let (ok, report) = crd_check(&[plugin]);
    assert!(!ok && report.contains("sha256 must be string"), "{report}");
}

/// The Gateway API kits route like the Istio kit: per ESXi host a rule on
/// the label the filter writes, that sets the host as the authority and
/// drops the header, to a backend with TLS to that host; the plugin
/// configuration is the Envoy kit's (but for the labels and
/// `rewrite_authority: false`); the limits are the Envoy kit's numbers, and
/// Envoy Gateway runs the wasm filter after them.
#[test]
fn gateway_api_kits_agree_with_the_envoy_kit() {
    let mut listener = static_listener("static-clusters.yaml");
    let raw = wasm_filter_mut(&mut listener)["config"]["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let envoy: Value = serde_json::from_str(&raw).unwrap();
    let same_but_hosts = |config: &Value| {
        let mut c = config.clone();
        let up = c["upstreams"].as_object_mut().unwrap();
        assert_eq!(up.remove("rewrite_authority"), Some(Value::Bool(false)));
        let hosts = up.remove("hosts").unwrap();
        let mut e = envoy.clone();
        e["upstreams"].as_object_mut().unwrap().remove("hosts");
        assert_eq!(c, e, "plugin config differs from the Envoy kit's");
        hosts
    };
    let rule_for = |route: &Value, label: &str| -> Value {
        route["spec"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["matches"][0]["headers"][0]["value"] == label)
            .cloned()
            .unwrap_or_else(|| panic!("no rule for {label}"))
    };
    let check_rule = |rule: &Value, host: &str| {
        let m = &rule["matches"][0]["headers"][0];
        assert_eq!(m["name"], shipped::CLUSTER_HEADER);
        assert_eq!(m["type"], "Exact");
        let filters = rule["filters"].as_array().unwrap();
        assert!(
            filters.iter().any(|f| f["urlRewrite"]["hostname"] == host),
            "{rule}"
        );
        assert!(
            filters
                .iter()
                .any(|f| f["requestHeaderModifier"]["remove"][0] == shipped::CLUSTER_HEADER),
            "{rule}"
        );
    };

    // Istio with the Gateway API.
    let istio = yaml_docs("gateway-api/istio.yaml");
    let gateway = &istio[0];
    let plugin = istio.iter().find(|d| d["kind"] == "WasmPlugin").unwrap();
    assert_eq!(
        plugin["spec"]["targetRefs"][0]["name"],
        gateway["metadata"]["name"]
    );
    assert_eq!(plugin["spec"]["targetRefs"][0]["kind"], "Gateway");
    let hosts = same_but_hosts(&plugin["spec"]["pluginConfig"]);
    let route = istio.iter().find(|d| d["kind"] == "HTTPRoute").unwrap();
    for (host, label) in hosts.as_object().unwrap() {
        let label = label.as_str().unwrap();
        assert_eq!(label, format!("outbound|443||{host}"));
        let rule = rule_for(route, label);
        check_rule(&rule, host);
        assert_eq!(rule["backendRefs"][0]["kind"], "Hostname");
        assert_eq!(rule["backendRefs"][0]["name"], host.as_str());
    }
    // The rest of the plugin spec is the Istio kit's.
    let mut with_selector = yaml_docs("istio/wasmplugin.yaml")[0]["spec"].clone();
    let mut with_refs = plugin["spec"].clone();
    with_selector.as_object_mut().unwrap().remove("selector");
    with_refs.as_object_mut().unwrap().remove("targetRefs");
    assert_eq!(with_refs, with_selector);

    // Envoy Gateway.
    let eg = yaml_docs("gateway-api/envoy-gateway.yaml");
    let find = |kind: &str| eg.iter().find(|d| d["kind"] == kind).unwrap();
    let order = &find("EnvoyProxy")["spec"]["filterOrder"][0];
    assert_eq!(order["name"], "envoy.filters.http.wasm");
    assert_eq!(order["after"], "envoy.filters.http.local_ratelimit");
    let policy = find("EnvoyExtensionPolicy");
    assert_eq!(policy["spec"]["wasm"][0]["failOpen"], false);
    assert_eq!(policy["spec"]["wasm"][0]["code"]["type"], "Image");
    // No access log with the audit in this kit: the decision lines stay on.
    let mut config = policy["spec"]["wasm"][0]["config"].clone();
    assert_eq!(config["log_decisions"], true);
    config["log_decisions"] = Value::Bool(false);
    let hosts = same_but_hosts(&config);
    let route = find("HTTPRoute");
    for (host, label) in hosts.as_object().unwrap() {
        let rule = rule_for(route, label.as_str().unwrap());
        check_rule(&rule, host);
        let backend = rule["backendRefs"][0]["name"].as_str().unwrap();
        assert!(eg.iter().any(|d| d["kind"] == "Backend"
            && d["metadata"]["name"] == backend
            && d["spec"]["endpoints"][0]["fqdn"]["hostname"] == host.as_str()));
        assert!(eg.iter().any(|d| d["kind"] == "BackendTLSPolicy"
            && d["spec"]["targetRefs"][0]["name"] == backend
            && d["spec"]["validation"]["hostname"] == host.as_str()));
    }
    // The Envoy kit's numbers: 20/s per client, 1,000/s for the gateway.
    let rules = &find("BackendTrafficPolicy")["spec"]["rateLimit"]["local"]["rules"];
    assert_eq!(
        rules[0]["clientSelectors"][0]["sourceCIDR"]["type"],
        "Distinct"
    );
    assert_eq!(rules[0]["limit"]["requests"], 20);
    assert_eq!(rules[1]["limit"]["requests"], 1000);
}
