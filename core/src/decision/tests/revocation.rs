//! The revocation rows: `revoked` and `revocation_unavailable`, decided
//! last, before the link is claimed.

use super::*;
use crate::revocation::{self, Kind, View};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn revoking() -> Config {
    config_with(json!({"revocation": {"etcd": {"cluster": "mksgate_etcd"}}}))
}

/// A view that has read `revoked` (kind, value) at `now_ms`.
fn view_of(config: &Config, revoked: &[(Kind, &str)], now_ms: i64) -> View {
    revocation::tests_support::view_of(config.revocation.as_ref().unwrap(), revoked, now_ms)
}

fn decide_with<'c>(
    config: &'c Config,
    claims: &Value,
    view: Option<&View>,
    now_ms: i64,
) -> Decision<'c> {
    let req = Req::ws(link(claims));
    let mut pairs: Vec<(&str, &str)> = vec![(":method", req.method), (":path", &req.path)];
    pairs.extend(req.headers.iter().map(|(n, v)| (*n, v.as_str())));
    let mut facts = RequestFacts::from_headers(pairs, req.client);
    facts.revocations = view.map(|v| (v, now_ms));
    decide(config, &facts, NOW)
}

#[test]
fn row_revoked_by_sub_tenant_or_jti() {
    let cfg = revoking();
    let now_ms = NOW * 1000;
    let view = view_of(
        &cfg,
        &[
            (Kind::Sub, "alice"),
            (Kind::Tenant, "t-gone"),
            (Kind::Jti, "j-burnt"),
        ],
        now_ms,
    );
    for (patch, code) in [
        (json!({"sub": "alice"}), Code::Revoked),
        (json!({"sub": "bob", "tenant": "t-gone"}), Code::Revoked),
        (json!({"jti": "j-burnt"}), Code::Revoked),
        (json!({"sub": "bob", "tenant": "t-1"}), Code::Admitted),
        // The kinds do not mix: a tenant named like a revoked sub is clear.
        (json!({"tenant": "alice"}), Code::Admitted),
    ] {
        let got = decide_with(&cfg, &with(patch.clone()), Some(&view), now_ms + 10);
        assert_eq!(got.code(), Some(code), "{patch}");
    }
    assert_eq!(Code::Revoked.status(), 403);
    // A bad link is refused for what it is, not judged against revocations.
    let expired = with(json!({"sub": "alice", "exp": NOW - 100, "iat": NOW - 160}));
    assert_eq!(
        decide_with(&cfg, &expired, Some(&view), now_ms).code(),
        Some(Code::Expired)
    );
    // The admission carries its subject, for the table of live consoles.
    let Decision::Admit(admission) =
        decide_with(&cfg, &with(json!({"sub": "bob"})), Some(&view), now_ms)
    else {
        panic!("admitted")
    };
    let store = crate::replay::tests_support::EnvoyLikeStore::default();
    let Commit::Apply(rewrite) = admission.commit(&store, NOW) else {
        panic!("applied")
    };
    assert_eq!(
        rewrite.subject,
        revocation::Subject::of(Some("bob"), None, Some("j-1"))
    );
}

#[test]
fn row_revocation_unavailable_without_a_fresh_view() {
    let cfg = revoking();
    let now_ms = NOW * 1000;
    let view = view_of(&cfg, &[], now_ms);
    let stale = now_ms + i64::from(revocation::DEFAULT_MAX_STALE_MS) + 1;
    assert_eq!(
        decide_with(&cfg, &claims(), Some(&view), stale).code(),
        Some(Code::RevocationUnavailable)
    );
    assert_eq!(
        decide_with(&cfg, &claims(), Some(&View::default()), now_ms).code(),
        Some(Code::RevocationUnavailable)
    );
    assert_eq!(
        decide_with(&cfg, &claims(), None, now_ms).code(),
        Some(Code::RevocationUnavailable)
    );
    assert_eq!(Code::RevocationUnavailable.status(), 503);
    // Without `revocation` configured, nothing is looked up.
    assert_eq!(
        decide_with(&config(), &claims(), None, now_ms).code(),
        Some(Code::Admitted)
    );
}

#[test]
fn the_revocation_section_is_checked_field_by_field() {
    let source = revoking().revocation.unwrap();
    assert_eq!(source.key_prefix, "/mksgate/revoked/");
    assert_eq!(
        (source.poll_ms, source.timeout_ms, source.max_stale_ms),
        (1000, 1500, 30_000)
    );
    for (section, field) in [
        (json!({}), "revocation.etcd"),
        (json!({"etcd": {}}), "revocation.etcd.cluster"),
        (
            json!({"etcd": {"cluster": "c", "poll_ms": 100}}),
            "revocation.etcd.poll_ms",
        ),
        (
            json!({"etcd": {"cluster": "c", "poll_ms": 5000, "max_stale_ms": 4000}}),
            "revocation.etcd.max_stale_ms",
        ),
        (
            json!({"etcd": {"cluster": "c", "key_prefix": "no-slash"}}),
            "revocation.etcd.key_prefix",
        ),
        (
            json!({"etcd": {"cluster": "c", "timeout_ms": 0}}),
            "revocation.etcd.timeout_ms",
        ),
        (
            json!({"etcd": {"cluster": "c", "auth": {}}}),
            "revocation.etcd.auth",
        ),
        (json!({"redis": {}}), "revocation.redis"),
    ] {
        let mut c = json!({
            "keys": [{"kid": "k1", "alg": "HS256", "secret_base64url": crate::jws::encode_secret(SECRET)}],
            "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}}
        });
        c["revocation"] = section.clone();
        let e = Config::parse(c.to_string().as_bytes(), &|_| None).unwrap_err();
        assert_eq!(e.field, field, "{section}");
    }
}
