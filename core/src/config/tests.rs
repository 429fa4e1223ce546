use super::*;
use serde_json::json;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NTY3ODkw"; // 45 bytes

fn no_env(_: &str) -> Option<String> {
    None
}

fn minimal() -> serde_json::Value {
    json!({
        "keys": [{"kid": "k1", "alg": "HS256", "secret_base64url": SECRET}],
        "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}}
    })
}

fn parse(v: &serde_json::Value) -> Result<Config, ConfigError> {
    Config::parse(v.to_string().as_bytes(), &no_env)
}

fn error_of(v: serde_json::Value) -> ConfigError {
    parse(&v).expect_err("config should be refused")
}

#[test]
fn defaults() {
    let c = parse(&minimal()).unwrap();
    assert_eq!(c.path_prefix, "/console");
    assert_eq!(c.token_param, "token");
    assert_eq!(c.clock_skew_seconds, 30);
    assert_eq!(c.max_ttl_seconds, 300);
    assert!(c.one_time_links);
    assert_eq!(c.audience, None);
    assert_eq!(c.issuer, None);
    assert_eq!(c.allowed_origins, None);
    assert_eq!(c.upstreams.cluster_header, "x-mksgate-cluster");
    assert_eq!(c.ticket_path.render("abc"), "/ticket/abc");
}

#[test]
fn issue_example_parses() {
    let env = |name: &str| (name == "MKSGATE_KEY_2026_11").then(|| SECRET.to_string());
    let text = json!({
      "keys": [
        {"kid": "2026-11", "alg": "HS256", "secret_env": "MKSGATE_KEY_2026_11"},
        {"kid": "2026-10", "alg": "HS256", "secret_base64url": SECRET}
      ],
      "path_prefix": "/console",
      "token_param": "token",
      "audience": "console.example.com",
      "issuer": "portal.example.com",
      "clock_skew_seconds": 30,
      "max_ttl_seconds": 300,
      "one_time_links": true,
      "allowed_origins": ["https://portal.example.com"],
      "upstreams": {
        "cluster_header": "x-mksgate-cluster",
        "hosts": {"vesxi01.sec.lab": "esxi_vesxi01"},
        "host_suffixes": {".esxi.example.com": "esxi_dynamic"}
      },
      "ticket_path": "/ticket/{ticket}"
    });
    let c = Config::parse(text.to_string().as_bytes(), &env).unwrap();
    assert_eq!(c.keys.len(), 2);
    assert_eq!(c.audience.as_deref(), Some("console.example.com"));
}

#[test]
fn errors_name_the_field() {
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!({"upstreams": {"hosts": {"a.lab": "c"}}}), "keys"),
        (
            json!({"keys": [], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64url": "c2hvcnQ"}], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys[0].secret_base64url",
        ),
        (
            json!({"keys": [{"alg": "RS256", "secret_base64url": SECRET}], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys[0].alg",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64url": SECRET, "secret": "x"}], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys[0].secret",
        ),
        (
            json!({"keys": [{"secret_base64url": SECRET}], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys[0].alg",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_env": "NOPE"}], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys[0].secret_env",
        ),
        (
            json!({"keys": [{"alg": "HS256"}], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys[0]",
        ),
        (
            json!({"keys": [{"kid": "a", "alg": "HS256", "secret_base64url": SECRET}, {"alg": "HS256", "secret_base64url": SECRET}], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys[1].kid",
        ),
        (
            json!({"keys": [{"kid": "a", "alg": "HS256", "secret_base64url": SECRET}, {"kid": "a", "alg": "HS256", "secret_base64url": SECRET}], "upstreams": {"hosts": {"a.lab": "c"}}}),
            "keys[1].kid",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64url": SECRET}]}),
            "upstreams",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64url": SECRET}], "upstreams": {}}),
            "upstreams",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64url": SECRET}], "upstreams": {"hostz": {}}}),
            "upstreams.hostz",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64url": SECRET}], "upstreams": {"hosts": {"A.lab": "c"}}}),
            "upstreams.hosts.\"A.lab\"",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64url": SECRET}], "upstreams": {"hosts": {"a.lab": "bad cluster"}}}),
            "upstreams.hosts.\"a.lab\"",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64url": SECRET}], "upstreams": {"host_suffixes": {"esxi.lab": "c"}}}),
            "upstreams.host_suffixes.\"esxi.lab\"",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64url": SECRET}], "upstreams": {"cluster_header": ":authority", "hosts": {"a.lab": "c"}}}),
            "upstreams.cluster_header",
        ),
    ];
    for (config, field) in cases {
        let e = error_of(config.clone());
        assert_eq!(e.field, field, "{config} -> {e}");
    }
    let base = minimal();
    let with = |k: &str, v: serde_json::Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    for (field, value) in [
        ("path_prefix", json!("console")),
        ("path_prefix", json!("/console/")),
        ("path_prefix", json!("/")),
        ("path_prefix", json!(7)),
        ("token_param", json!("")),
        ("token_param", json!("a=b")),
        ("audience", json!("")),
        ("issuer", json!(1)),
        ("clock_skew_seconds", json!(-1)),
        ("clock_skew_seconds", json!(301)),
        ("clock_skew_seconds", json!(1.5)),
        ("max_ttl_seconds", json!(0)),
        ("max_ttl_seconds", json!(86401)),
        ("one_time_links", json!("yes")),
        ("log_decisions", json!(1)),
        ("allowed_origins", json!([])),
        ("allowed_origins", json!("https://a")),
        ("ticket_path", json!("/ticket/")),
        ("ticket_path", json!("/t/{ticket}/{ticket}")),
        ("ticket_path", json!("ticket/{ticket}")),
        ("ticket_path", json!("/ticket/{ticket}?x")),
        ("typo_field", json!(1)),
    ] {
        let e = error_of(with(field, value.clone()));
        let expect = if field == "allowed_origins"
            && value.is_array()
            && !value.as_array().unwrap().is_empty()
        {
            "allowed_origins[0]".to_string()
        } else {
            field.to_string()
        };
        assert_eq!(e.field, expect, "{field}={value} -> {e}");
    }
    let e = error_of(with(
        "allowed_origins",
        json!(["https://portal.example.com/"]),
    ));
    assert_eq!(e.field, "allowed_origins[0]");
}

#[test]
fn secrets_never_in_errors() {
    let secret = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"; // 24 bytes: too short
    let e = error_of(
        json!({"keys": [{"alg": "HS256", "secret_base64url": secret}], "upstreams": {"hosts": {"a.lab": "c"}}}),
    );
    assert!(!e.to_string().contains(secret));
    assert!(e.to_string().contains("24 bytes"), "{e}");
    let env = |_: &str| Some("bm90IGEgc2VjcmV0".to_string());
    let e = Config::parse(
        json!({"keys": [{"alg": "HS512", "secret_env": "K"}], "upstreams": {"hosts": {"a.lab": "c"}}}).to_string().as_bytes(),
        &env,
    )
    .unwrap_err();
    assert_eq!(e.field, "keys[0].secret_env");
    assert!(!e.to_string().contains("bm90IGEgc2VjcmV0"));
    let e = Config::parse(b"{\"keys\": [{\"secret_base64url\": \"TOPSECRET", &no_env).unwrap_err();
    assert!(!e.to_string().contains("TOPSECRET"), "{e}");
}

#[test]
fn origins_and_prefix_matching() {
    for ok in [
        "https://portal.example.com",
        "http://127.0.0.1:8080",
        "https://[::1]:8443",
        "HTTPS://Portal.Example.com",
    ] {
        assert!(valid_origin(ok), "{ok}");
    }
    for bad in [
        "https://portal.example.com/",
        "ftp://a",
        "https://",
        "https://a:0",
        "https://::1",
        "https://u@a",
        "null",
    ] {
        assert!(!valid_origin(bad), "{bad}");
    }
    let c = parse(&minimal()).unwrap();
    assert!(c.is_console_path("/console"));
    assert!(c.is_console_path("/console/vm-42"));
    assert!(!c.is_console_path("/consoles"));
    assert!(!c.is_console_path("/"));
    assert!(!c.is_console_path("/%63onsole"));
}

#[test]
fn istio_cluster_names_are_accepted() {
    let mut c = minimal();
    c["upstreams"]["hosts"] = json!({"vesxi01.sec.lab": "outbound|443||vesxi01.sec.lab"});
    let c = parse(&c).unwrap();
    let host = crate::target::parse_host("vesxi01.sec.lab").unwrap();
    assert_eq!(
        c.upstreams.cluster_for(&host),
        Some("outbound|443||vesxi01.sec.lab")
    );
}

#[test]
fn longest_suffix_wins_and_ips_never_match_suffixes() {
    let mut c = minimal();
    c["upstreams"]["host_suffixes"] = json!({".lab": "any_lab", ".sec.lab": "sec_lab"});
    c["upstreams"]["hosts"] = json!({"10.0.0.5": "by_ip"});
    let c = parse(&c).unwrap();
    let host = |s: &str| crate::target::parse_host(s).unwrap();
    assert_eq!(c.upstreams.cluster_for(&host("a.sec.lab")), Some("sec_lab"));
    assert_eq!(c.upstreams.cluster_for(&host("a.lab")), Some("any_lab"));
    assert_eq!(c.upstreams.cluster_for(&host("sec.lab")), Some("any_lab"));
    assert_eq!(c.upstreams.cluster_for(&host("10.0.0.5")), Some("by_ip"));
    assert_eq!(c.upstreams.cluster_for(&host("10.0.0.6")), None);
    assert_eq!(c.upstreams.cluster_for(&host("evil-lab")), None);
    assert_eq!(c.upstreams.cluster_for(&host("lab.evil")), None);
}

fn with_store(store: serde_json::Value) -> serde_json::Value {
    let mut v = minimal();
    v["replay_store"] = store;
    v
}

#[test]
fn replay_store_defaults_to_the_local_table() {
    assert_eq!(parse(&minimal()).unwrap().replay_store, ReplayStore::Local);
}

#[test]
fn replay_store_etcd_as_the_contract_gives_it() {
    let c = parse(&with_store(json!({"etcd": {
        "cluster": "mksgate_etcd",
        "authority": "etcd",
        "key_prefix": "/mksgate/links/",
        "timeout_ms": 1500
    }})))
    .unwrap();
    let ReplayStore::Etcd(store) = c.replay_store else {
        panic!("expected etcd");
    };
    assert_eq!(
        (store.cluster.as_str(), store.authority.as_str()),
        ("mksgate_etcd", "etcd")
    );
    assert_eq!(store.key_prefix, "/mksgate/links/");
    assert_eq!(store.timeout_ms, 1500);
    // Defaults: authority = cluster, the documented prefix and timeout.
    let c = parse(&with_store(
        json!({"etcd": {"cluster": "outbound|2379||etcd.db.svc"}}),
    ))
    .unwrap();
    let ReplayStore::Etcd(store) = c.replay_store else {
        panic!("expected etcd");
    };
    assert_eq!(store.authority, "outbound|2379||etcd.db.svc");
    assert_eq!(store.key_prefix, "/mksgate/links/");
    assert_eq!(store.timeout_ms, 1500);
}

#[test]
fn replay_store_errors_name_the_field() {
    let cases = [
        (json!({"etcd": {}}), "replay_store.etcd.cluster"),
        (
            json!({"etcd": {"cluster": ""}}),
            "replay_store.etcd.cluster",
        ),
        (json!({"etcd": {"cluster": 7}}), "replay_store.etcd.cluster"),
        (
            json!({"etcd": {"cluster": "c", "authority": "a b"}}),
            "replay_store.etcd.authority",
        ),
        (
            json!({"etcd": {"cluster": "c", "key_prefix": "links/"}}),
            "replay_store.etcd.key_prefix",
        ),
        (
            json!({"etcd": {"cluster": "c", "key_prefix": ""}}),
            "replay_store.etcd.key_prefix",
        ),
        (
            json!({"etcd": {"cluster": "c", "timeout_ms": 0}}),
            "replay_store.etcd.timeout_ms",
        ),
        (
            json!({"etcd": {"cluster": "c", "timeout_ms": 10001}}),
            "replay_store.etcd.timeout_ms",
        ),
        (
            json!({"etcd": {"cluster": "c", "timeout_ms": 1.5}}),
            "replay_store.etcd.timeout_ms",
        ),
        (
            json!({"etcd": {"cluster": "c", "timeout": 5}}),
            "replay_store.etcd.timeout",
        ),
        (json!({"redis": {}}), "replay_store.redis"),
        (json!({}), "replay_store.etcd"),
        (json!("etcd"), "replay_store"),
    ];
    for (store, field) in cases {
        let e = error_of(with_store(store.clone()));
        assert_eq!(e.field, field, "{store} -> {e}");
    }
    // A store with single use off is a mistake, not a silent downgrade.
    let mut v = with_store(json!({"etcd": {"cluster": "c"}}));
    v["one_time_links"] = json!(false);
    let e = error_of(v);
    assert_eq!(e.field, "replay_store");
    assert!(e.reason.contains("one_time_links"), "{e}");
}

/// etcd's access control: a user, and the VM environment variable that
/// holds its password; each error names its field, and no error or
/// `Debug` print carries the password.
#[test]
fn replay_store_etcd_auth_takes_its_password_from_the_environment() {
    let env = |name: &str| match name {
        "ETCD_PW" => Some("s3cr3t-pw".to_string()),
        "LONG_PW" => Some("x".repeat(257)),
        _ => None,
    };
    let with_auth = |auth: serde_json::Value| {
        with_store(json!({"etcd": {"cluster": "c", "auth": auth}})).to_string()
    };
    let good = with_auth(json!({"user": "mksgate", "password_env": "ETCD_PW"}));
    let c = Config::parse(good.as_bytes(), &env).unwrap();
    let ReplayStore::Etcd(store) = &c.replay_store else {
        panic!("expected etcd");
    };
    assert_eq!(store.auth().map(|a| a.user()), Some("mksgate"));
    assert!(!format!("{c:?}").contains("s3cr3t"));
    for (auth, field) in [
        (
            json!({"password_env": "ETCD_PW"}),
            "replay_store.etcd.auth.user",
        ),
        (
            json!({"user": "", "password_env": "ETCD_PW"}),
            "replay_store.etcd.auth.user",
        ),
        (
            json!({"user": "a b", "password_env": "ETCD_PW"}),
            "replay_store.etcd.auth.user",
        ),
        (json!({"user": "u"}), "replay_store.etcd.auth.password_env"),
        (
            json!({"user": "u", "password_env": "UNSET"}),
            "replay_store.etcd.auth.password_env",
        ),
        (
            json!({"user": "u", "password_env": "LONG_PW"}),
            "replay_store.etcd.auth.password_env",
        ),
        (
            json!({"user": "u", "password_env": 3}),
            "replay_store.etcd.auth.password_env",
        ),
        (
            json!({"user": "u", "password": "inline"}),
            "replay_store.etcd.auth.password",
        ),
        (json!("mksgate"), "replay_store.etcd.auth"),
    ] {
        let e = Config::parse(with_auth(auth.clone()).as_bytes(), &env).unwrap_err();
        assert_eq!(e.field, field, "{auth} -> {e}");
        assert!(
            !e.to_string().contains("s3cr3t") && !e.to_string().contains("xxxx"),
            "{e}"
        );
    }
}

#[test]
fn rewrite_authority_defaults_on_and_stays_on_with_suffixes() {
    assert!(parse(&minimal()).unwrap().upstreams.rewrite_authority);
    let mut v = minimal();
    v["upstreams"]["rewrite_authority"] = json!(false);
    assert!(!parse(&v).unwrap().upstreams.rewrite_authority);
    v["upstreams"]["rewrite_authority"] = json!("no");
    assert_eq!(error_of(v.clone()).field, "upstreams.rewrite_authority");
    v["upstreams"]["rewrite_authority"] = json!(false);
    v["upstreams"]["host_suffixes"] = json!({".esxi.example.com": "esxi_dynamic"});
    assert_eq!(error_of(v).field, "upstreams.rewrite_authority");
}
