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
#[path = "shipped_configs/every_layout.rs"]
mod every_layout;
#[path = "shipped_configs/kubernetes.rs"]
mod kubernetes;

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
