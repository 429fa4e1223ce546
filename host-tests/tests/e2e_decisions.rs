//! Every decision code of the README's table, through the shipped config in
//! real Envoy, with the status, body and header the client sees; refusals
//! never reach an ESXi stand-in; afterwards the `/stats` counters, the
//! filter's log lines and the access log match exactly what the test did,
//! and no token, ticket or secret was ever logged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::{bounded, now, random_hex, Gateway, A, B, T};
use mksgate_core::jws::{self, Alg, Key};
use mksgate_host_tests::access_log;
use mksgate_host_tests::client::{verify_session, Session};
use mksgate_host_tests::shipped;
use serde_json::json;

/// Counts what the test asked for, per code.
#[derive(Default)]
struct Tally(BTreeMap<String, u64>);

impl Tally {
    fn add(&mut self, code: &str) {
        *self.0.entry(code.to_string()).or_insert(0) += 1;
    }
    fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

async fn refused(gw: &Gateway, tally: &mut Tally, path: &str, status: u16, code: &str) {
    gw.expect_refused(path, &[], status, code).await;
    tally.add(code);
}

async fn admitted(gw: &Gateway, tally: &mut Tally, path: &str) -> Session {
    let s = gw.expect_admitted(path, &[]).await;
    tally.add("admitted");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_code_through_envoy() {
    bounded(120, async {
        let started = Instant::now();
        let gw = Gateway::start().await.unwrap();
        let mut tally = Tally::default();
        let mut sessions = Vec::new();

        // --- admitted: 101 from the stand-in, bytes flow both ways.
        let link = gw.new_link(A, json!({}));
        let mut s = admitted(&gw, &mut tally, &link.path).await;
        assert_eq!(s.subprotocol.as_deref(), Some("binary"));
        assert_eq!(verify_session(&mut s, 5).await.unwrap().echoed, 5);
        sessions.push(s);
        // The same on B, with `aud` as an array and an `ip` claim the client
        // (127.0.0.1) is inside.
        let link_b = gw.new_link(
            B,
            json!({"aud": ["other.example.com", shipped::AUDIENCE], "ip": "127.0.0.0/8"}),
        );
        sessions.push(admitted(&gw, &mut tally, &link_b.path).await);

        // --- replayed: the same link again.
        refused(&gw, &mut tally, &link.path, 403, "replayed").await;
        refused(&gw, &mut tally, &link_b.path, 403, "replayed").await;

        // --- not_websocket: a plain GET with a valid link.
        let plain = gw.link(json!({}));
        let opts = gw.opts().plain_get();
        gw.expect_refused_with(&plain, &opts, 426, "not_websocket")
            .await;
        tally.add("not_websocket");
        // `Upgrade: websocket` without `Connection: upgrade`.
        let opts = gw.opts().plain_get().header("Upgrade", "websocket");
        gw.expect_refused_with(&gw.link(json!({})), &opts, 426, "not_websocket")
            .await;
        tally.add("not_websocket");
        // A second `Upgrade` header: Envoy itself refuses the upgrade
        // (403 `upgrade_failed`) before the filter runs, so no decision.
        let before = gw.upstream_activity();
        let opts = gw.opts().header("Upgrade", "h2c");
        let r = gw
            .connect_with(&gw.link(json!({})), &opts)
            .await
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!(r.status, 403, "{}", r.body_text());
        assert_eq!(r.header("x-mksgate-decision"), None);
        assert_eq!(gw.upstream_activity(), before);
        let envoy_own_refusals = 1;

        // --- missing_token: no query, an empty token, another parameter.
        for path in ["/console", "/console?token=", "/console?tok=abc"] {
            refused(&gw, &mut tally, path, 401, "missing_token").await;
        }

        // --- malformed_request: a valid link below the prefix is refused
        // before its token is read (nothing below the prefix reaches ESXi),
        // and stays unspent for the prefix itself, `/` or not.
        let link = gw.new_link(A, json!({}));
        let q = link.path.trim_start_matches("/console");
        // (`/console//` is not among them: the shipped `merge_slashes` makes
        // it `/console/` before the filter sees it.)
        for below in ["/console/x", "/console/vesxi02.sec.lab"] {
            refused(
                &gw,
                &mut tally,
                &format!("{below}{q}"),
                400,
                "malformed_request",
            )
            .await;
        }
        refused(&gw, &mut tally, "/console/x", 400, "malformed_request").await;
        sessions.push(admitted(&gw, &mut tally, &format!("/console/{q}")).await);

        // --- malformed_token.
        let twice = gw.new_link(A, json!({}));
        refused(
            &gw,
            &mut tally,
            &format!("{}&token={}", twice.path, twice.token),
            400,
            "malformed_token",
        )
        .await;
        // Validly signed but over 4096 bytes.
        let long = gw.link(json!({"sub": "x".repeat(3200)}));
        assert!(long.len() > 4096 + "/console?token=".len());
        refused(&gw, &mut tally, &long, 400, "malformed_token").await;
        for garbage in ["garbage", "a.b", "a.b.c.d", "eyJhbGciOiJIUzI1NiJ9.%7B%7D.x"] {
            refused(
                &gw,
                &mut tally,
                &Gateway::path_for(garbage),
                400,
                "malformed_token",
            )
            .await;
        }
        // Signed, but breaking the contract: no exp, no jti, aud not a string.
        for over in [
            json!({"exp": null}),
            json!({"jti": null}),
            json!({"aud": 7}),
            json!({"ip": ["127.0.0.1"]}),
        ] {
            refused(&gw, &mut tally, &gw.link(over), 400, "malformed_token").await;
        }

        // --- bad_signature.
        let claims = gw.standard_claims(A, &gw.a().issue_ticket());
        let other_key = Key::new(
            Some(shipped::KID.into()),
            Alg::HS256,
            &common::random_bytes(32),
        )
        .unwrap();
        let wrong_key = jws::sign(&other_key, claims.to_string().as_bytes());
        gw.remember(&wrong_key);
        let unknown_kid = gw.sign_with_header(
            &json!({"alg": "HS256", "typ": "JWT", "kid": "2025-01"}),
            &claims,
            Alg::HS256,
        );
        let alg_none = format!(
            "{}.{}.",
            jws::encode_secret(br#"{"alg":"none","typ":"JWT","kid":"2026-11"}"#),
            jws::encode_secret(claims.to_string().as_bytes())
        );
        // A real HS512 MAC with the right secret: the key is configured HS256.
        let hs512 = gw.sign_with_header(
            &json!({"alg": "HS512", "typ": "JWT", "kid": shipped::KID}),
            &claims,
            Alg::HS512,
        );
        let crit = gw.sign_with_header(
            &json!({"alg": "HS256", "kid": shipped::KID, "crit": ["exp"]}),
            &claims,
            Alg::HS256,
        );
        let good = gw.sign(&claims);
        let flipped = {
            let mut t = good.clone().into_bytes();
            let last = t.len() - 2;
            t[last] = if t[last] == b'A' { b'B' } else { b'A' };
            String::from_utf8(t).unwrap()
        };
        for token in [&wrong_key, &unknown_kid, &alg_none, &hs512, &crit, &flipped] {
            refused(
                &gw,
                &mut tally,
                &Gateway::path_for(token),
                403,
                "bad_signature",
            )
            .await;
        }

        // --- lifetime.
        let t = now();
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"iat": t - 200, "exp": t - 60})),
            403,
            "expired",
        )
        .await;
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"nbf": t + 120, "exp": t + 200})),
            403,
            "not_yet_valid",
        )
        .await;
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"iat": t + 120, "exp": t + 200})),
            403,
            "not_yet_valid",
        )
        .await;
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"exp": t + 400})),
            403,
            "ttl_too_long",
        )
        .await;
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"iat": null, "exp": t + 400})),
            403,
            "ttl_too_long",
        )
        .await;

        // --- audience and issuer.
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"aud": "other.example.com"})),
            403,
            "wrong_audience",
        )
        .await;
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"aud": null})),
            403,
            "wrong_audience",
        )
        .await;
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"iss": "evil.example.com"})),
            403,
            "wrong_issuer",
        )
        .await;

        // --- bad_target. Tickets are made unique so the leak check can
        // look for them (except "..", which cannot be).
        let slash = format!("{}/evil", random_hex(12));
        gw.remember(&slash);
        for over in [
            json!({ "ticket": slash }),
            json!({"ticket": ".."}),
            json!({"ticket": ""}),
            json!({"host": format!("user@{A}")}),
            json!({"host": format!("{A}.")}),
            json!({"host": format!("{A}:443")}),
            json!({"port": 0}),
            json!({"port": 70000}),
            json!({"url": format!("wss://{A}/ticket/{}", random_hex(16))}),
            json!({"host": null, "ticket": null, "url": format!("wss://{A}/ticket/a/b")}),
        ] {
            refused(&gw, &mut tally, &gw.link(over), 400, "bad_target").await;
        }

        // --- host_not_allowed: unknown names, and the stand-in's own IP.
        for host in [
            "vesxi03.sec.lab",
            "evil.com",
            "127.0.0.2",
            "VESXI01.sec.lab.evil.com",
        ] {
            refused(
                &gw,
                &mut tally,
                &gw.link(json!({ "host": host })),
                403,
                "host_not_allowed",
            )
            .await;
        }

        // --- origin_not_allowed: none, another, repeated, claim mismatch.
        let no_origin = gw.bare_opts().wmks_protocols();
        gw.expect_refused_with(&gw.link(json!({})), &no_origin, 403, "origin_not_allowed")
            .await;
        tally.add("origin_not_allowed");
        let evil = gw
            .bare_opts()
            .wmks_protocols()
            .header("Origin", "https://evil.example.com");
        gw.expect_refused_with(&gw.link(json!({})), &evil, 403, "origin_not_allowed")
            .await;
        tally.add("origin_not_allowed");
        let twice = gw.opts().header("Origin", shipped::ORIGIN);
        gw.expect_refused_with(&gw.link(json!({})), &twice, 403, "origin_not_allowed")
            .await;
        tally.add("origin_not_allowed");
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"origin": "https://other.example.com"})),
            403,
            "origin_not_allowed",
        )
        .await;

        // --- client_not_allowed.
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"ip": "10.9.9.9"})),
            403,
            "client_not_allowed",
        )
        .await;
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({"ip": "10.0.0.0/8"})),
            403,
            "client_not_allowed",
        )
        .await;

        // The client address is the TCP peer (`use_remote_address: true`):
        // a forged X-Forwarded-For does not get a link bound to 10.9.9.9 in.
        let link = gw.link(json!({"ip": "10.9.9.9"}));
        gw.expect_refused(
            &link,
            &[("X-Forwarded-For", "10.9.9.9"), ("X-Real-IP", "10.9.9.9")],
            403,
            "client_not_allowed",
        )
        .await;
        tally.add("client_not_allowed");

        // An origin claim equal to the request's Origin is admitted.
        let bound = gw.new_link(A, json!({"origin": shipped::ORIGIN}));
        sessions.push(admitted(&gw, &mut tally, &bound.path).await);

        // The admitted sessions are still intact; then close them so their
        // access-log lines are written.
        let mut first = sessions.remove(0);
        assert_eq!(verify_session(&mut first, 3).await.unwrap().echoed, 3);
        sessions.push(first);
        // One graceful close (close frames pass both ways), the others
        // just hang up.
        let mut sessions = sessions.into_iter();
        sessions.next().unwrap().close(T).await.unwrap();
        drop(sessions);

        // Upstreams saw exactly the admitted requests.
        let reqs: Vec<_> = gw
            .esxi
            .iter()
            .flat_map(|s| s.requests())
            .collect::<Vec<_>>();
        assert_eq!(reqs.len(), 4, "{reqs:#?}");
        assert!(reqs.iter().all(|r| r.status == Some(101)));

        // --- metrics: exactly what the test did.
        gw.wait_decision_counts(&tally.0, T).await.unwrap();
        let stats = gw.stats().await.unwrap();
        let listed: Vec<_> = stats
            .keys()
            .filter(|k| k.starts_with("wasmcustom.mksgate.decision."))
            .collect();
        println!("decision counters on /stats: {listed:?}");
        let prom = gw
            .envoy
            .admin_get("/stats/prometheus")
            .await
            .unwrap()
            .body_text();
        // With the shipped stats_tags, Prometheus sees one labelled family.
        for code in mksgate_core::Code::ALL {
            let want = tally.0.get(code.as_str()).copied().unwrap_or(0);
            let line = format!("mksgate_decision{{code=\"{}\"}} {want}", code.as_str());
            assert!(
                prom.lines().any(|l| l == line),
                "{line:?} not on /stats/prometheus"
            );
        }

        // --- the audit in the access log: one record per decision (the
        // tunnel line of a 101, the end line of anything else), same counts.
        let lines = gw
            .decision_records(tally.total() as usize, T)
            .await
            .unwrap();
        let mut logged = BTreeMap::new();
        for l in &lines {
            *logged
                .entry(l["code"].as_str().unwrap().to_string())
                .or_insert(0u64) += 1;
            assert!(l["status"].as_u64().is_some(), "{l}");
            assert!(l["request_id"].is_string(), "{l}");
        }
        assert_eq!(logged, tally.0, "decision records in the access log");
        // Claims are recorded only from verified tokens; admitted records
        // carry host, cluster, kid, jti, ticket hash and the client address.
        let adm = lines
            .iter()
            .find(|l| l["code"] == "admitted" && l["host"] == A)
            .unwrap();
        assert_eq!(adm["event"], access_log::TUNNEL_UP);
        assert_eq!(adm["cluster"], "esxi_vesxi01");
        assert_eq!(adm["kid"], shipped::KID);
        assert_eq!(adm["status"], 101);
        assert_eq!(adm["sub"], "e2e-user");
        assert!(adm["jti"].is_string(), "{adm}");
        assert_eq!(adm["ticket_sha256"].as_str().unwrap().len(), 12);
        assert!(adm["client"].as_str().unwrap().starts_with("127."));
        assert!(adm["upstream_host"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.2:"));
        let bad = lines.iter().find(|l| l["code"] == "bad_signature").unwrap();
        assert!(bad["jti"].is_null() && bad["sub"].is_null(), "{bad}");
        // The shipped layout writes no decision line to Envoy's log
        // (`log_decisions: false`): the access log is the audit.
        assert!(
            !gw.envoy_log().contains(r#"{"mksgate":"decision""#),
            "a decision line in Envoy's log"
        );

        // --- access log (Envoy's stdout): the decision field, same counts.
        let mut access = gw
            .access_log_decisions(tally.total() as usize + envoy_own_refusals, T)
            .await
            .unwrap();
        // Envoy's own `upgrade_failed` refusal has no decision (null).
        assert_eq!(access.remove("(not a string)"), Some(1), "{access:?}");
        assert_eq!(access, tally.0, "decisions in the access log");

        // --- nothing secret in any log.
        gw.assert_no_leaks();
        let all = format!("{}{}", gw.envoy_log(), gw.access_log());
        assert!(!all.contains("token="), "a query string was logged");
        assert!(!all.contains("/ticket/"), "an upstream path was logged");

        println!(
            "{} decisions checked in {:.1?}: {:?}",
            tally.total(),
            started.elapsed(),
            tally.0
        );
    })
    .await;
}

/// The replay bucket a `jti` of the gateway's links (the shipped kid, the
/// test tenant) lands in: core's own rule.
fn bucket_of(jti: &str) -> u32 {
    mksgate_core::replay::bucket_of(Some(shipped::KID), Some(common::TENANT), jti)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_table_full_when_a_bucket_holds_only_live_links() {
    bounded(90, async {
        let gw = Gateway::start().await.unwrap();
        // 64 live links in one bucket fill it; the 65th is refused rather
        // than forgetting one of them.
        let slots = mksgate_core::replay::SLOTS_PER_BUCKET;
        let prefix = random_hex(4);
        let target = bucket_of(&format!("{prefix}-0"));
        let jtis: Vec<String> = (0u64..)
            .map(|n| format!("{prefix}-{n}"))
            .filter(|j| bucket_of(j) == target)
            .take(slots + 2)
            .collect();
        let mut tally = Tally::default();
        for (i, jti) in jtis[..slots].iter().enumerate() {
            let host = if i % 2 == 0 { A } else { B };
            let link = gw.new_link(host, json!({ "jti": jti }));
            // 64 consoles in a row: many users' (the per-client limit).
            drop(gw.expect_admitted_as_user(&link.path).await);
            tally.add("admitted");
        }
        for jti in &jtis[slots..] {
            refused(
                &gw,
                &mut tally,
                &gw.link(json!({ "jti": jti })),
                503,
                "replay_table_full",
            )
            .await;
        }
        // A link already in the full bucket is still a replay, not "full".
        refused(
            &gw,
            &mut tally,
            &gw.link(json!({ "jti": jtis[0] })),
            403,
            "replayed",
        )
        .await;
        // Other buckets are unaffected.
        let other = (0u64..)
            .map(|n| format!("{prefix}-other-{n}"))
            .find(|j| bucket_of(j) != target)
            .unwrap();
        drop(admitted(&gw, &mut tally, &gw.link(json!({ "jti": other }))).await);
        gw.wait_decision_counts(&tally.0, T).await.unwrap();
        let line = gw
            .decision_records(tally.total() as usize, T)
            .await
            .unwrap()
            .into_iter()
            .find(|l| l["code"] == "replay_table_full")
            .unwrap();
        assert_eq!(line["status"], 503);
        println!("{} links in bucket {target}; then {:?}", slots, tally.0);
    })
    .await;
}
