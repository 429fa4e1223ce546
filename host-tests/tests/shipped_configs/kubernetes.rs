//! The Kubernetes kits (Istio, the Gateway API and Envoy Gateway): they parse
//! as the resources they claim to be, pass their CRD schemas, and agree
//! with the Envoy kit and with each other.

use super::*;

pub(crate) fn kinds(docs: &[Value]) -> Vec<(String, String)> {
    docs.iter()
        .map(|d| {
            (
                d["apiVersion"].as_str().unwrap_or("").to_string(),
                d["kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub(crate) fn pair(api: &str, kind: &str) -> (String, String) {
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
pub(crate) fn crd_check(docs: &[Value]) -> (bool, String) {
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
