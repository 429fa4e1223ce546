//! Tenant-scoped keys in real Envoy, through the shipped static layout with
//! two portal keys: tenant A's key (`scope.hosts: [A]`, `tenants:
//! [tenant-a]`) and tenant B's (`[B]`, `[tenant-b]`). Each key opens its own
//! tenant's host and gets `key_scope` (403) for the other's host, for the
//! other tenant, and for a link without `tenant`; refused links reach no
//! stand-in and are not spent; the counter and the access log (kid and the
//! failed part, never the token) match.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    bounded, merge, parsed_plugin_json, random_hex, with_plugin_json, Gateway, GatewayOpts, A, B, T,
};
use mksgate_core::jws::{self, Alg, Key};
use mksgate_host_tests::client::verify_session;
use mksgate_host_tests::shipped;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const KID_B: &str = "portal-b";
const SECRET_B: &[u8] = b"tenant-b-portal-secret-0123456789abcdef-0123456789";

/// The shipped plugin configuration with the two scoped keys: A's is the
/// shipped key (its secret from the shipped env var), B's inline.
fn two_tenant_plugin(yaml: String) -> anyhow::Result<String> {
    let mut plugin = parsed_plugin_json(&yaml)?;
    plugin["keys"] = json!([
        {"kid": shipped::KID, "alg": "HS256", "secret_env": shipped::KEY_ENV,
         "scope": {"hosts": [A], "tenants": ["tenant-a"]}},
        {"kid": KID_B, "alg": "HS256", "secret_base64url": jws::encode_secret(SECRET_B),
         "scope": {"hosts": [B], "tenants": ["tenant-b"]}}
    ]);
    with_plugin_json(&yaml, &plugin)
}

/// A link signed with tenant B's key: `host`'s fresh ticket, the shipped
/// claims, `overrides` merged in.
fn link_b(gw: &Gateway, host: &str, overrides: Value) -> String {
    let ticket = gw.standin(host).issue_ticket();
    gw.remember(&ticket);
    let claims = merge(&gw.standard_claims(host, &ticket), &overrides);
    let key = Key::new(Some(KID_B.into()), Alg::HS256, SECRET_B).unwrap();
    let token = jws::sign(&key, claims.to_string().as_bytes());
    gw.remember(&token);
    Gateway::path_for(&token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenants_key_opens_only_its_own_hosts() {
    bounded(90, async {
        let gw = Gateway::start_with_yaml_edit(GatewayOpts::default(), two_tenant_plugin)
            .await
            .unwrap();
        let a = |tenant: &str| json!({"tenant": tenant});
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        let mut count = |code: &str| *want.entry(code.to_string()).or_insert(0) += 1;

        // A's key opens A for tenant-a; B's key opens B for tenant-b.
        let mut sa = gw
            .expect_admitted(&gw.new_link(A, a("tenant-a")).path, &[])
            .await;
        count("admitted");
        assert_eq!(verify_session(&mut sa, 3).await.unwrap().echoed, 3);
        let mut sb = gw
            .expect_admitted(&link_b(&gw, B, a("tenant-b")), &[])
            .await;
        count("admitted");
        assert_eq!(verify_session(&mut sb, 3).await.unwrap().echoed, 3);

        // Outside the scope: the other tenant's host, the other tenant, no
        // tenant at all; the same for B's key.
        for path in [
            gw.new_link(B, a("tenant-a")).path,
            gw.new_link(A, a("tenant-b")).path,
            gw.new_link(A, json!({"tenant": null})).path,
            link_b(&gw, A, a("tenant-b")),
            link_b(&gw, B, a("tenant-a")),
            link_b(&gw, B, json!({"tenant": null})),
        ] {
            gw.expect_refused(&path, &[], 403, "key_scope").await;
            count("key_scope");
        }

        // A refused link is not spent: the same jti, refused under A's key
        // for B's host, is then admitted when B's key signs it for B.
        let jti = format!("shared-{}", random_hex(8));
        let outside = gw.new_link(B, json!({"tenant": "tenant-a", "jti": jti}));
        gw.expect_refused(&outside.path, &[], 403, "key_scope")
            .await;
        count("key_scope");
        let inside = link_b(&gw, B, json!({"tenant": "tenant-b", "jti": jti}));
        let sc = gw.expect_admitted(&inside, &[]).await;
        count("admitted");
        // ...and only once.
        gw.expect_refused(&inside, &[], 403, "replayed").await;
        count("replayed");
        // One-time records are per key and tenant: tenant-a's link with
        // the jti tenant-b has just spent is a link of its own (it was
        // `replayed` when records were keyed by jti alone), used once too.
        let same_jti = gw.new_link(A, json!({"tenant": "tenant-a", "jti": jti}));
        let sd = gw.expect_admitted(&same_jti.path, &[]).await;
        count("admitted");
        gw.expect_refused(&same_jti.path, &[], 403, "replayed")
            .await;
        count("replayed");

        gw.wait_decision_counts(&want, T).await.unwrap();

        // The access log: each key_scope line names the kid and the part
        // of the scope that failed; admissions carry no key_scope.
        // End lines are written when streams end: close the consoles.
        drop((sa, sb, sc, sd));
        let is_refusal = |l: &Value| l["decision"] == "key_scope";
        let is_admission = |l: &Value| l["decision"] == "admitted";
        let lines = gw
            .wait_access_log(
                |l| {
                    l.iter().filter(|x| is_refusal(x)).count() == 7
                        && l.iter().filter(|x| is_admission(x)).count() == 4
                },
                T,
            )
            .await
            .unwrap();
        let refused: Vec<(&str, &str)> = lines
            .iter()
            .filter(|l| is_refusal(l))
            .map(|l| (l["kid"].as_str().unwrap(), l["key_scope"].as_str().unwrap()))
            .collect();
        let kid_a = shipped::KID;
        assert_eq!(
            refused,
            [
                (kid_a, "host"),
                (kid_a, "tenant"),
                (kid_a, "tenant"),
                (KID_B, "host"),
                (KID_B, "tenant"),
                (KID_B, "tenant"),
                (kid_a, "host"),
            ]
        );
        let admitted = lines
            .iter()
            .find(|l| is_admission(l))
            .expect("an admitted end line");
        assert!(admitted["key_scope"].is_null(), "{admitted}");
        let one_refused = lines.iter().find(|l| is_refusal(l)).unwrap();
        check_versions(&gw).await;
        // For the closing note: one line of each, as Envoy wrote them.
        eprintln!("access log, refused: {one_refused}");
        eprintln!("access log, admitted: {admitted}");
        gw.assert_no_leaks();
    })
    .await;
}

/// The module says which build and ABI run, once per VM (a worker's and
/// the main thread's); and under the version matrix
/// (scripts/test-envoy-versions.sh sets MKSGATE_EXPECT_ENVOY), the Envoy
/// that ran is the one the matrix row names.
async fn check_versions(gw: &Gateway) {
    let line = format!(
        "version {}, abi proxy-wasm 0.2.1",
        env!("CARGO_PKG_VERSION")
    );
    let log = gw.envoy_log();
    assert!(
        log.lines()
            .filter(|l| l.contains("mksgate: configured:") && l.contains(&line))
            .count()
            >= 1,
        "no configure line with {line:?}"
    );
    let info = gw
        .envoy
        .admin_get("/server_info")
        .await
        .unwrap()
        .body_text();
    let info: Value = serde_json::from_str(&info).unwrap();
    let running = info["version"].as_str().unwrap_or_default().to_string();
    eprintln!("envoy: {running}");
    if let Ok(want) = std::env::var("MKSGATE_EXPECT_ENVOY") {
        assert!(
            running.contains(&format!("/{want}/")),
            "{running} is not Envoy {want}"
        );
    }
}
