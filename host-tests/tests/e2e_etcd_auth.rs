//! etcd's access control as shipped: `deploy/etcd/setup-auth.sh` (run with
//! etcdctl) turns it on with the role `mksgate`, and `envoy/fleet.yaml`'s
//! gateways log in as its user. The role records links; a client without
//! it (any other holder of a certificate from the CA) can neither read,
//! delete nor revoke them; a wrong login refuses links without admitting
//! any; tokens etcd forgets in a restart are replaced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mksgate_host_tests::bounded;
use mksgate_host_tests::etcd::GATEWAY_USER;
use mksgate_host_tests::fleet::{Fleet, WITHOUT_REVOCATION};
use std::time::{Duration, Instant};

/// One fleet at a time (fixed etcd addresses).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// POST `body` to etcd member 0 as `token` (none: no Authorization).
fn as_client(fleet: &Fleet, token: Option<&str>, path: &str, body: &str) -> (u16, String) {
    let addr = fleet.etcd.inspect_addrs()[0];
    let headers: Vec<(&str, &str)> = token
        .map(|t| vec![("authorization", t)])
        .unwrap_or_default();
    let r = mksgate_testkit::http::request_with(
        addr,
        "POST",
        path,
        &headers,
        body,
        Duration::from_secs(3),
    )
    .unwrap();
    (r.status, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_role_records_links_and_nobody_else_can_touch_them() {
    bounded(120, async {
        let _serial = SERIAL.lock().await;
        let fleet = Fleet::start(2, 1).await.unwrap();
        let path = fleet.valid_path(0, 60).unwrap();
        let first = fleet.fire(0, &path).await;
        assert_eq!(first.status, 101, "{}", fleet.gateways[0].log_tail(40));
        let again = fleet.fire(1, &path).await;
        assert_eq!(again.decision.as_deref(), Some("replayed"));
        let logins = fleet.fleet_counters("etcd_auth").await.unwrap();
        println!("logins: {logins:?}");
        assert!(logins["ok"] >= 2 && logins["error"] == 0, "{logins:?}");

        // A user without the role, as root creates it.
        fleet
            .etcd
            .post_any(
                "/v3/auth/user/add",
                r#"{"name":"intruder","password":"intruder-pw"}"#,
            )
            .unwrap();
        let intruder = fleet
            .etcd
            .authenticate(0, "intruder", "intruder-pw")
            .unwrap();
        let prefix = STANDARD.encode("/mksgate/links/");
        let end = STANDARD.encode("/mksgate/links0");
        let range = format!(r#"{{"key":"{prefix}","range_end":"{end}"}}"#);
        let leases = fleet.etcd.leases().unwrap();
        assert!(!leases.is_empty(), "a window lease holds the record");
        let revoke = format!(r#"{{"ID":"{}"}}"#, leases[0]);
        for (who, token) in [("no token", None), ("intruder", Some(intruder.as_str()))] {
            for (what, path, body) in [
                ("read", "/v3/kv/range", range.as_str()),
                ("delete", "/v3/kv/deleterange", range.as_str()),
                ("revoke the lease of", "/v3/lease/revoke", revoke.as_str()),
            ] {
                let (status, text) = as_client(&fleet, token, path, body);
                println!("{who}: {what} the records: {status} {text}");
                assert!(
                    status == 400 || status == 403,
                    "{who} could {what} the records: {status} {text}"
                );
            }
        }
        // The gateways' own user may not write outside its prefix.
        let gateway = fleet
            .etcd
            .authenticate(0, GATEWAY_USER, &fleet.etcd_password)
            .unwrap();
        let other = format!(
            r#"{{"key":"{}","value":"eA=="}}"#,
            STANDARD.encode("/other/key")
        );
        let (status, text) = as_client(&fleet, Some(&gateway), "/v3/kv/put", &other);
        assert_eq!(status, 403, "{text}");
        // The record is still there, and the link still refused.
        assert_eq!(fleet.etcd.count("/mksgate/links/").unwrap(), 1);
        let third = fleet.fire(0, &path).await;
        assert_eq!(third.decision.as_deref(), Some("replayed"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_login_refuses_every_link_and_says_so_without_the_password() {
    bounded(90, async {
        let _serial = SERIAL.lock().await;
        // Without revocations, whose reads would fail too and refuse first
        // (`revocation_unavailable`): this is the store's refusal.
        let fleet = Fleet::start_with(
            1,
            1,
            &[
                (r#""user": "mksgate""#, r#""user": "nobody""#),
                WITHOUT_REVOCATION,
            ],
        )
        .await
        .unwrap();
        for (i, r) in fleet.fire_fresh(0, 5).await.unwrap().iter().enumerate() {
            assert_eq!(
                (r.status, r.decision.as_deref()),
                (503, Some("replay_unavailable")),
                "link {i}"
            );
        }
        let upstream = fleet.upstream_requests();
        assert_eq!(upstream, 0);
        let logins = fleet.counters(0, "etcd_auth").await.unwrap();
        assert!(logins["error"] >= 1 && logins["ok"] == 0, "{logins:?}");
        let log = fleet.gateways[0]
            .wait_log(Duration::from_secs(10), |l| {
                l.contains("invalid user ID or password") && l.contains("not logged in to etcd")
            })
            .await;
        assert!(
            log.contains("etcdserver: authentication failed, invalid user ID or password"),
            "the refusal is logged"
        );
        assert!(log.contains("not logged in to etcd"));
        assert!(
            !log.contains(&fleet.etcd_password),
            "the password reached the log"
        );
    })
    .await;
}

/// A token etcd no longer takes (a simple token idle past
/// `--auth-token-ttl`, here 3 s, or a JWT past its expiry): the claim that
/// finds out is `replay_unavailable` (never admitted, never sent again), the
/// worker drops the token and logs in on its next tick, and links are
/// admitted again within a fraction of a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_etcd_refuses_is_replaced_by_a_new_login() {
    bounded(120, async {
        let _serial = SERIAL.lock().await;
        let fleet = Fleet::start_with_etcd_token_ttl(3).await.unwrap();
        let path = fleet.valid_path(0, 60).unwrap();
        assert_eq!(fleet.fire(0, &path).await.status, 101);
        let before = fleet.counters(0, "etcd_auth").await.unwrap()["ok"];
        // Idle past the token's life in etcd (the gateway refreshes every
        // 60 s, so it still holds it).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t0 = Instant::now();
        let mut refused = 0;
        let mut back = None;
        for i in 1..100 {
            let path = fleet.valid_path(i, 60).unwrap();
            let r = fleet.fire(0, &path).await;
            if r.status == 101 {
                back = Some(t0.elapsed());
                break;
            }
            assert_eq!(r.decision.as_deref(), Some("replay_unavailable"), "{r:?}");
            refused += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let back = back.expect("no admission after the token ended");
        let logins = fleet.counters(0, "etcd_auth").await.unwrap();
        println!(
            "token ended in etcd: {refused} link(s) replay_unavailable, admitted again after {back:.2?}; logins {before} -> {}",
            logins["ok"]
        );
        assert!(refused >= 1, "etcd took an ended token");
        assert!(back < Duration::from_secs(2), "{back:?}");
        assert!(logins["ok"] > before, "the worker logged in again: {logins:?}");
        let log = fleet.gateways[0]
            .wait_log(Duration::from_secs(10), |l| l.contains("invalid auth token"))
            .await;
        assert!(log.contains("etcdserver: invalid auth token"), "the refusal is logged");
        // The link used before is still spent.
        assert_eq!(fleet.fire(0, &path).await.decision.as_deref(), Some("replayed"));
    })
    .await;
}
