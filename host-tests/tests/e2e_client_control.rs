//! Nothing a client sends controls Envoy itself: with the shipped
//! `use_remote_address: true`, loopback and private-range clients must not
//! count as internal, so Envoy's `x-envoy-*` request controls from them are
//! ignored (the 15 s bound on ESXi's 101 holds, no retries are added), and
//! the `X-Forwarded-For` that reaches ESXi carries the real client address
//! only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{bounded, upstream_request, Gateway, A, B};
use mksgate_host_tests::standin::Fault;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_timeout_and_retry_headers_have_no_effect() {
    bounded(90, async {
        let gw = Gateway::start().await.unwrap();
        gw.a().set_fault(Fault::NeverAnswerUpgrade).await.unwrap();
        // Shorten and lift the route's 15 s upgrade bound, at once.
        let controls = [
            ("x-envoy-upstream-rq-timeout-ms", "1000"),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "500"),
            ("x-envoy-expected-rq-timeout-ms", "1000"),
        ];
        let lift = [("x-envoy-upstream-rq-timeout-ms", "600000")];
        let short = gw.new_link(A, json!({}));
        let long = gw.new_link(A, json!({}));
        let opts = |extra: &[(&str, &str)]| {
            extra
                .iter()
                .fold(gw.opts().timeout(Duration::from_secs(40)), |o, (n, v)| {
                    o.header(n, v)
                })
        };
        let (shortened, lifted) = (opts(&controls), opts(&lift));
        let t0 = Instant::now();
        let (a, b) = tokio::join!(
            gw.connect_with(&short.path, &shortened),
            gw.connect_with(&long.path, &lifted),
        );
        let waited = t0.elapsed();
        for (what, outcome) in [("shortened", a), ("lifted", b)] {
            let r = outcome.unwrap().refusal().unwrap();
            assert_eq!(r.status, 504, "{what}: {}", r.body_text());
        }
        println!("never-answering ESXi with client timeout headers: 504 after {waited:.1?}");
        assert!(
            waited >= Duration::from_secs(14) && waited < Duration::from_secs(20),
            "the route's 15 s bound must hold, got {waited:?}"
        );
        // Envoy tells ESXi its own expected timeout (15000); nothing the
        // client wrote gets through.
        let up = upstream_request(&gw, A, &short.ticket).await;
        for (name, value) in controls {
            assert_ne!(
                up.header(name),
                Some(value),
                "the client's {name} reached ESXi"
            );
        }

        // Retries: ESXi B down, the client asks for five retries on
        // connect failure; Envoy makes none.
        gw.b().set_fault(Fault::Down).await.unwrap();
        let link = gw.new_link(B, json!({}));
        let retry = [
            (
                "x-envoy-retry-on",
                "connect-failure,reset,5xx,retriable-status-codes",
            ),
            ("x-envoy-max-retries", "5"),
            ("x-envoy-retriable-status-codes", "503"),
        ];
        let r = gw
            .connect_with(&link.path, &opts(&retry))
            .await
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!(r.status, 503, "{}", r.body_text());
        let stats = gw.stats().await.unwrap();
        let retries = stats
            .get("cluster.esxi_vesxi02.upstream_rq_retry")
            .copied()
            .unwrap_or(0);
        println!("ESXi down with client retry headers: 503, {retries} retries");
        assert_eq!(retries, 0, "a client added retries");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esxi_sees_the_real_client_address_only() {
    bounded(60, async {
        let gw = Gateway::start().await.unwrap();
        let link = gw.new_link(A, json!({}));
        let forged = [
            ("X-Forwarded-For", "203.0.113.66"),
            ("X-Real-IP", "203.0.113.66"),
            ("X-Envoy-External-Address", "203.0.113.66"),
            ("Forwarded", "for=203.0.113.66"),
        ];
        let opts = forged.iter().fold(gw.opts(), |o, (n, v)| o.header(n, v));
        let s = gw.connect_with(&link.path, &opts).await.unwrap();
        drop(s.session().unwrap());
        let up = upstream_request(&gw, A, &link.ticket).await;
        let seen: Vec<(&str, Option<&str>)> = [
            "x-forwarded-for",
            "x-real-ip",
            "x-envoy-external-address",
            "forwarded",
        ]
        .iter()
        .map(|n| (*n, up.header(n)))
        .collect();
        println!("what ESXi saw of the client's address headers: {seen:?}");
        for (name, value) in &seen {
            assert!(
                !value.is_some_and(|v| v.contains("203.0.113.66")),
                "{name}: {value:?} lets the client choose the address ESXi logs"
            );
        }
        assert_eq!(up.header("x-forwarded-for"), Some("127.0.0.1"));
    })
    .await;
}

/// The access log's `request_id` is Envoy's, not one a client chose (a
/// client could otherwise write anything into the audit, a link included),
/// and it is the one ESXi is sent, so the two logs can be joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_in_the_audit_is_envoys_own() {
    bounded(60, async {
        let gw = Gateway::start().await.unwrap();
        let link = gw.new_link(A, json!({}));
        let chosen = "client-chosen-request-id-0001";
        let opts = gw.opts().header("X-Request-ID", chosen);
        let s = gw.connect_with(&link.path, &opts).await.unwrap();
        drop(s.session().unwrap());
        let up = upstream_request(&gw, A, &link.ticket).await;
        let sent = up.header("x-request-id").expect("a request ID to ESXi");
        assert_ne!(sent, chosen);
        let records = gw.decision_records(1, common::T).await.unwrap();
        assert_eq!(records[0]["request_id"], sent, "{}", records[0]);
        assert!(!gw.access_log().contains(chosen));
    })
    .await;
}
