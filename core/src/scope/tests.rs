//! Key scopes: the rule, its config, and its place in the decision.

use super::*;
use crate::code::Code;
use crate::config::Config;
use crate::decision::{decide, Decision};
use crate::jws::{encode_secret, sign, Alg, Key};
use crate::request::RequestFacts;
use crate::target::parse_host;
#[cfg(not(target_arch = "wasm32"))]
use proptest::prelude::*;
use serde_json::{json, Value};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: i64 = 1_800_000_000;
const SECRET_A: &[u8] = b"tenant-a-secret-tenant-a-secret-0123456789";
const SECRET_B: &[u8] = b"tenant-b-secret-tenant-b-secret-0123456789";

fn host(text: &str) -> Host {
    parse_host(text).unwrap()
}

fn tenant_a() -> KeyScope {
    KeyScope {
        hosts: vec![host("esxi-a1.lab"), host("10.0.0.7")],
        host_suffixes: vec![".tenant-a.lab".into()],
        tenants: Some(vec!["tenant-a".into()]),
    }
}

#[test]
fn hosts_and_suffixes() {
    let s = tenant_a();
    let t = Some("tenant-a");
    assert_eq!(s.check(&host("esxi-a1.lab"), t), Ok(()));
    assert_eq!(s.check(&host("10.0.0.7"), t), Ok(()));
    assert_eq!(s.check(&host("esxi1.tenant-a.lab"), t), Ok(()));
    assert_eq!(s.check(&host("x.y.tenant-a.lab"), t), Ok(()));
    for outside in [
        "xtenant-a.lab",
        "esxi1.xtenant-a.lab",
        "tenant-a.lab",
        "esxi-a2.lab",
        "esxi1.tenant-b.lab",
        "esxi1.tenant-a.lab.evil",
        "10.0.0.8",
    ] {
        assert_eq!(
            s.check(&host(outside), t),
            Err(ScopePart::Host),
            "{outside}"
        );
    }
}

#[test]
fn hosts_are_compared_canonical() {
    let s = tenant_a();
    // The parser canonicalises what links carry (case, IPv6 spelling) and
    // refuses a trailing dot outright (`bad_target`, before any scope).
    assert_eq!(s.check(&host("ESXI-A1.LAB"), Some("tenant-a")), Ok(()));
    assert_eq!(
        s.check(&host("esxi1.Tenant-A.lab"), Some("tenant-a")),
        Ok(())
    );
    assert_eq!(parse_host("esxi1.tenant-a.lab."), None);
    let v6 = KeyScope {
        hosts: vec![host("2001:db8::7")],
        ..KeyScope::default()
    };
    assert_eq!(v6.check(&host("[2001:DB8:0::7]"), None), Ok(()));
    assert_eq!(v6.check(&host("2001:db8::8"), None), Err(ScopePart::Host));
}

#[test]
fn suffixes_never_match_ip_literals() {
    let s = KeyScope {
        host_suffixes: vec![".0.0.7".into()],
        ..KeyScope::default()
    };
    assert_eq!(s.check(&host("10.0.0.7"), None), Err(ScopePart::Host));
}

#[test]
fn tenants_are_exact_and_required() {
    let s = KeyScope {
        tenants: Some(vec!["tenant-a".into()]),
        ..KeyScope::default()
    };
    let any = host("esxi1.tenant-b.lab");
    assert_eq!(s.check(&any, Some("tenant-a")), Ok(()));
    for other in [
        None,
        Some("Tenant-A"),
        Some("tenant-a "),
        Some(""),
        Some("tenant-b"),
    ] {
        assert_eq!(s.check(&any, other), Err(ScopePart::Tenant), "{other:?}");
    }
}

#[test]
fn the_host_is_checked_before_the_tenant() {
    assert_eq!(
        tenant_a().check(&host("esxi1.tenant-b.lab"), Some("tenant-b")),
        Err(ScopePart::Host)
    );
}

#[cfg(not(target_arch = "wasm32"))]
proptest! {
    /// A name is under a suffix exactly when it ends with it at a label
    /// boundary with at least one label before it.
    #[test]
    fn suffix_rule_is_a_label_boundary(label in "[a-z0-9]{1,8}", glue in "[a-z0-9.-]{0,3}") {
        let s = KeyScope { host_suffixes: vec![".tenant-a.lab".into()], ..KeyScope::default() };
        let name = format!("{label}{glue}tenant-a.lab");
        let Some(h) = parse_host(&name) else { return Ok(()) };
        let expect = glue.ends_with('.') && !glue.starts_with('.');
        let canonical = h.canonical();
        let boundary = canonical.ends_with(".tenant-a.lab") && canonical.len() > ".tenant-a.lab".len();
        prop_assert_eq!(s.check(&h, None).is_ok(), boundary);
        if expect { prop_assert!(boundary); }
    }
}

// The config.

fn two_tenants() -> Value {
    json!({
        "keys": [
            {"kid": "portal-a", "alg": "HS256", "secret_base64url": encode_secret(SECRET_A),
             "scope": {"hosts": ["esxi-a1.lab"], "host_suffixes": [".tenant-a.lab"], "tenants": ["tenant-a"]}},
            {"kid": "portal-b", "alg": "HS256", "secret_base64url": encode_secret(SECRET_B),
             "scope": {"host_suffixes": [".tenant-b.lab"], "tenants": ["tenant-b"]}}
        ],
        "upstreams": {
            "hosts": {"esxi-a1.lab": "esxi_a1", "esxi-shared.lab": "esxi_shared"},
            "host_suffixes": {".lab": "esxi_dynamic"}
        }
    })
}

fn parse(v: &Value) -> Result<Config, crate::config::ConfigError> {
    Config::parse(v.to_string().as_bytes(), &|_| None)
}

fn error_field(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = two_tenants();
    edit(&mut v);
    parse(&v).expect_err("should be refused").field
}

#[test]
fn config_compiles_each_keys_scope() {
    let c = parse(&two_tenants()).unwrap();
    assert_eq!(c.key_scopes.len(), 2);
    let a = c.key_scopes[0].as_ref().unwrap();
    assert_eq!(a.hosts, vec![host("esxi-a1.lab")]);
    assert_eq!(a.host_suffixes, vec![".tenant-a.lab".to_string()]);
    assert_eq!(a.tenants, Some(vec!["tenant-a".to_string()]));
    let b = c.key_scopes[1].as_ref().unwrap();
    assert!(b.hosts.is_empty());
    assert!(!c.mixes_scoped_and_unscoped_keys());
    let first = c.keys.iter().next().unwrap();
    assert_eq!(c.scope_of(first), Some(a));
}

#[test]
fn config_errors_name_the_field() {
    assert_eq!(
        error_field(|v| v["keys"][1]["scope"] = json!({})),
        "keys[1].scope"
    );
    assert_eq!(
        error_field(|v| v["keys"][0]["scope"]["hosts"] = json!([])),
        "keys[0].scope.hosts"
    );
    assert_eq!(
        error_field(|v| v["keys"][0]["scope"]["tenants"] = json!([])),
        "keys[0].scope.tenants"
    );
    assert_eq!(
        error_field(
            |v| v["keys"][1]["scope"]["host_suffixes"] = json!([".tenant-b.lab", ".tenant-b.lab"])
        ),
        "keys[1].scope.host_suffixes[1]"
    );
    assert_eq!(
        error_field(|v| v["keys"][0]["scope"]["hosts"] = json!(["esxi-a1.lab", "esxi-a1.lab"])),
        "keys[0].scope.hosts[1]"
    );
    assert_eq!(
        error_field(|v| v["keys"][0]["scope"]["tenants"] = json!(["a", "b", "a"])),
        "keys[0].scope.tenants[2]"
    );
    assert_eq!(
        error_field(|v| v["keys"][0]["scope"]["hosts"] = json!(["ESXI-A1.lab"])),
        "keys[0].scope.hosts[0]"
    );
    assert_eq!(
        error_field(|v| v["keys"][0]["scope"]["hosts"] = json!(["esxi-a1.lab."])),
        "keys[0].scope.hosts[0]"
    );
    assert_eq!(
        error_field(|v| v["keys"][0]["scope"]["host_suffixes"] = json!(["tenant-a.lab"])),
        "keys[0].scope.host_suffixes[0]"
    );
    assert_eq!(
        error_field(|v| v["keys"][0]["scope"]["tenants"] = json!([7])),
        "keys[0].scope.tenants[0]"
    );
    assert_eq!(
        error_field(|v| v["keys"][0]["scope"]["sites"] = json!(["x"])),
        "keys[0].scope.sites"
    );
    assert_eq!(
        error_field(|v| v["keys"][0]["scope"] = json!(["esxi-a1.lab"])),
        "keys[0].scope"
    );
    // A scope only narrows: a host or suffix upstreams does not allow.
    let narrow = |v: &mut Value| {
        let _ = v["keys"][0].as_object_mut().unwrap().remove("scope");
        v["upstreams"] = json!({"hosts": {"esxi-a1.lab": "esxi_a1"}, "host_suffixes": {".tenant-b.lab": "esxi_b"}});
    };
    assert_eq!(
        error_field(|v| {
            narrow(v);
            v["keys"][0]["scope"] = json!({"hosts": ["esxi-a1.lab", "esxi-a2.lab"]});
        }),
        "keys[0].scope.hosts[1]"
    );
    assert_eq!(
        error_field(|v| {
            narrow(v);
            v["keys"][1]["scope"] = json!({"host_suffixes": [".b.lab"]});
        }),
        "keys[1].scope.host_suffixes[0]"
    );
    // At or under an upstream suffix is narrowing.
    let mut v = two_tenants();
    narrow(&mut v);
    v["keys"][1]["scope"] = json!({"host_suffixes": [".tenant-b.lab", ".eu.tenant-b.lab"]});
    assert!(parse(&v).is_ok());
}

#[test]
fn mixing_scoped_and_unscoped_keys_is_reported() {
    let mut v = two_tenants();
    let _ = v["keys"][1].as_object_mut().unwrap().remove("scope");
    assert!(parse(&v).unwrap().mixes_scoped_and_unscoped_keys());
}

// The decision.

fn link(secret: &[u8], kid: &str, claims: Value) -> String {
    let key = Key::new(Some(kid.into()), Alg::HS256, secret).unwrap();
    format!(
        "/console?token={}",
        sign(&key, claims.to_string().as_bytes())
    )
}

fn claims(host: &str, tenant: Option<&str>) -> Value {
    let mut c = json!({"exp": NOW + 60, "iat": NOW, "jti": "j-1", "host": host, "ticket": "52-ab"});
    if let Some(t) = tenant {
        c["tenant"] = json!(t);
    }
    c
}

fn decide_path(
    config: &Config,
    path: &str,
) -> (Option<Code>, Option<&'static str>, Option<String>) {
    let facts = RequestFacts::from_headers(
        vec![
            (":method", "GET"),
            (":path", path),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
        ],
        Some("192.0.2.10:5"),
    );
    match decide(config, &facts, NOW) {
        Decision::Refuse(r) => (Some(r.code), r.audit.key_scope, r.audit.kid),
        Decision::Admit(a) => (
            Some(Code::Admitted),
            a.audit().key_scope,
            a.audit().kid.clone(),
        ),
        Decision::PassThrough { .. } => (None, None, None),
    }
}

#[test]
fn each_key_opens_only_its_tenant() {
    let c = parse(&two_tenants()).unwrap();
    let a = |host: &str, tenant: Option<&str>| {
        decide_path(&c, &link(SECRET_A, "portal-a", claims(host, tenant)))
    };
    let b = |host: &str, tenant: Option<&str>| {
        decide_path(&c, &link(SECRET_B, "portal-b", claims(host, tenant)))
    };
    let admitted = (Some(Code::Admitted), None, Some("portal-a".to_string()));
    assert_eq!(a("esxi-a1.lab", Some("tenant-a")), admitted);
    assert_eq!(a("esxi7.tenant-a.lab", Some("tenant-a")), admitted);
    let refused = |part| {
        (
            Some(Code::KeyScope),
            Some(part),
            Some("portal-a".to_string()),
        )
    };
    assert_eq!(a("esxi7.tenant-b.lab", Some("tenant-a")), refused("host"));
    assert_eq!(a("esxi-shared.lab", Some("tenant-a")), refused("host"));
    assert_eq!(a("esxi-a1.lab", Some("tenant-b")), refused("tenant"));
    assert_eq!(a("esxi-a1.lab", None), refused("tenant"));
    // The mirror.
    assert_eq!(
        b("esxi7.tenant-b.lab", Some("tenant-b")).0,
        Some(Code::Admitted)
    );
    assert_eq!(
        b("esxi-a1.lab", Some("tenant-b")),
        (
            Some(Code::KeyScope),
            Some("host"),
            Some("portal-b".to_string())
        )
    );
    assert_eq!(
        b("esxi7.tenant-b.lab", Some("tenant-a")),
        (
            Some(Code::KeyScope),
            Some("tenant"),
            Some("portal-b".to_string())
        )
    );
    // A host no upstream allows is still host_not_allowed, not key_scope.
    assert_eq!(
        a("esxi.other", Some("tenant-a")).0,
        Some(Code::HostNotAllowed)
    );
    assert_eq!(Code::KeyScope.status(), 403);
    assert_eq!(Code::KeyScope.as_str(), "key_scope");
}

#[test]
fn a_bad_signature_is_judged_before_the_scope() {
    let c = parse(&two_tenants()).unwrap();
    // Signed with B's secret under A's kid: the signature fails first.
    let forged = link(
        SECRET_B,
        "portal-a",
        claims("esxi7.tenant-b.lab", Some("tenant-b")),
    );
    assert_eq!(decide_path(&c, &forged).0, Some(Code::BadSignature));
}

#[test]
fn a_single_scoped_key_without_kid_is_scoped() {
    let v = json!({
        "keys": [{"alg": "HS256", "secret_base64url": encode_secret(SECRET_A),
                  "scope": {"tenants": ["tenant-a"]}}],
        "upstreams": {"host_suffixes": {".lab": "esxi_dynamic"}}
    });
    let c = parse(&v).unwrap();
    let key = Key::new(None, Alg::HS256, SECRET_A).unwrap();
    let path = |t: Option<&str>| {
        format!(
            "/console?token={}",
            sign(&key, claims("x.lab", t).to_string().as_bytes())
        )
    };
    assert_eq!(
        decide_path(&c, &path(Some("tenant-a"))).0,
        Some(Code::Admitted)
    );
    assert_eq!(decide_path(&c, &path(Some("tenant-b"))).1, Some("tenant"));
}
