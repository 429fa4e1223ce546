//! Routing through the shipped config in real Envoy: a link reaches the host
//! it names and no other; editing a link or its query string, or sending the
//! cluster header, cannot steer a request elsewhere; and what reaches the
//! ESXi stand-in is exactly `/ticket/<ticket>` with the host's name as Host
//! and SNI, no token, no cluster header, the subprotocols intact.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    bounded, short, token_payload, upstream_request, with_payload, Gateway, Link, A, B, T,
};
use mksgate_host_tests::client::verify_session;
use mksgate_host_tests::shipped;
use mksgate_host_tests::standin::{RecordedRequest, WMKS_PROTOCOLS};
use serde_json::json;

/// Checks the request the stand-in `host` recorded for `link`: exactly
/// `/ticket/<ticket>`, Host `authority`, SNI `host`, a 101, and nothing of
/// the token or the cluster header anywhere in it.
fn assert_clean_upstream(r: &RecordedRequest, link: &Link, host: &str, authority: &str) {
    assert_eq!(r.path, format!("/ticket/{}", link.ticket), "path upstream");
    assert_eq!(r.host.as_deref(), Some(authority), "Host upstream");
    assert_eq!(r.sni.as_deref(), Some(host), "SNI upstream");
    assert!(r.tls);
    assert_eq!(r.method, "GET");
    assert_eq!(r.status, Some(101));
    assert!(r.ticket_accepted);
    assert!(!r.path.contains('?'), "query string upstream: {}", r.path);
    let sig = link.token.rsplit('.').next().unwrap();
    for (name, value) in &r.headers {
        let n = name.to_ascii_lowercase();
        assert_ne!(n, shipped::CLUSTER_HEADER, "cluster header upstream");
        assert!(!n.contains("token"), "header {name} upstream");
        assert!(
            !value.contains(&link.token) && !value.contains(sig) && !value.contains("token="),
            "token in upstream header {name}: {}",
            short(value)
        );
    }
    assert!(!r.path.contains(sig));
    assert_eq!(r.header("origin"), Some(shipped::ORIGIN), "Origin passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_reach_their_host_only() {
    bounded(90, async {
        let gw = Gateway::start().await.unwrap();

        // A link for A reaches A, and B sees nothing; and the other way round.
        for (host, other) in [(A, B), (B, A)] {
            let before = (
                gw.standin(other).requests().len(),
                gw.standin(other).handshakes().len(),
            );
            let link = gw.new_link(host, json!({}));
            let mut s = gw.expect_admitted(&link.path, &[]).await;
            verify_session(&mut s, 4).await.unwrap();
            s.close(T).await.unwrap();
            let r = upstream_request(&gw, host, &link.ticket).await;
            assert_clean_upstream(&r, &link, host, host);
            assert_eq!(gw.standin(host).requests().len(), 1);
            let after = (
                gw.standin(other).requests().len(),
                gw.standin(other).handshakes().len(),
            );
            assert_eq!(after, before, "{other} saw traffic for {host}");
        }

        // Editing any claim of a valid link for A (payload re-encoded, not
        // re-signed) is a bad signature; nothing reaches either host.
        let ticket_b = gw.b().issue_ticket();
        gw.remember(&ticket_b);
        let base = gw.new_link(A, json!({}));
        let claims = token_payload(&base.token);
        assert_eq!(claims, base.claims);
        let edits = [
            json!({"host": B}),
            json!({"host": B, "ticket": ticket_b}),
            json!({"ticket": ticket_b}),
            json!({"host": null, "ticket": null, "url": format!("wss://{B}/ticket/{ticket_b}")}),
            json!({"port": 8443}),
            json!({"exp": claims["exp"].as_i64().unwrap() + 1}),
            json!({"jti": "another-jti"}),
            json!({"aud": "console.example.com "}),
            json!({"sub": "mallory"}),
            json!({"extra": 1}),
        ];
        for edit in edits {
            let forged = with_payload(&base.token, &common::merge(&claims, &edit));
            gw.expect_refused(&Gateway::path_for(&forged), &[], 403, "bad_signature")
                .await;
        }
        // The same claims with whitespace added (same meaning, other bytes).
        let spaced = format!(
            "{}.{}.{}",
            base.token.split('.').next().unwrap(),
            mksgate_core::jws::encode_secret(
                serde_json::to_string_pretty(&claims).unwrap().as_bytes()
            ),
            base.token.rsplit('.').next().unwrap()
        );
        gw.expect_refused(&Gateway::path_for(&spaced), &[], 403, "bad_signature")
            .await;
        // The untouched link still works (the forgeries used nothing up).
        drop(gw.expect_admitted(&base.path, &[]).await);
        upstream_request(&gw, A, &base.ticket).await;

        // Query-string tricks around a valid link for A: it still reaches A
        // (and only A), and no query reaches the upstream.
        let tricks: [fn(&str) -> String; 4] = [
            |p| format!("{p}&host={B}"),
            |p| format!("{p}&cluster=esxi_vesxi02&x-mksgate-cluster=esxi_vesxi02"),
            |p| format!("{p}&url=wss://{B}/ticket/x&ticket=x"),
            |p| p.replacen("/console?", &format!("/console?host={B}&"), 1),
        ];
        let b_before = (gw.b().requests().len(), gw.b().handshakes().len());
        for trick in tricks {
            let link = gw.new_link(A, json!({}));
            let path = trick(&link.path);
            let s = gw.expect_admitted(&path, &[]).await;
            drop(s);
            let r = upstream_request(&gw, A, &link.ticket).await;
            assert_clean_upstream(&r, &link, A, A);
        }
        // The host as a path below the prefix: refused, and the link is
        // still good at the prefix itself.
        let link = gw.new_link(A, json!({}));
        let below = link
            .path
            .replacen("/console?", &format!("/console/{B}?"), 1);
        gw.expect_refused(&below, &[], 400, "malformed_request")
            .await;
        drop(gw.expect_admitted(&link.path, &[]).await);
        // A fragment in the request target: Envoy refuses it itself (400
        // `path_normalization_failed`), before the filter.
        let link = gw.new_link(A, json!({}));
        let r = gw
            .connect(&format!("{}#host={B}", link.path), &[])
            .await
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!((r.status, r.header("x-mksgate-decision")), (400, None));
        // A link for A carrying B's ticket goes to A (which does not know
        // it: 404 from the stand-in), never to B.
        let link = gw.new_link(A, json!({ "ticket": ticket_b }));
        let r = gw
            .connect(&link.path, &[])
            .await
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (404, "unknown ticket\n")
        );
        assert_eq!(gw.requests_for(A, &ticket_b).len(), 1);
        assert_eq!(
            (gw.b().requests().len(), gw.b().handshakes().len()),
            b_before
        );
        assert_eq!(
            gw.b().ticket_state(&ticket_b),
            Some(mksgate_host_tests::standin::TicketState::Issued)
        );
        gw.assert_no_leaks();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cluster_header_never_steers() {
    bounded(90, async {
        let gw = Gateway::start().await.unwrap();
        let spellings = [
            ("x-mksgate-cluster", "esxi_vesxi02"),
            ("X-Mksgate-Cluster", "esxi_vesxi02"),
            ("x-mksgate-cluster", "esxi_vesxi01"),
        ];

        // A valid link for A plus a client cluster header naming B: reaches
        // A, and the header does not reach the upstream.
        for (name, value) in spellings {
            let link = gw.new_link(A, json!({}));
            let s = gw.expect_admitted(&link.path, &[(name, value)]).await;
            drop(s);
            let r = upstream_request(&gw, A, &link.ticket).await;
            assert_clean_upstream(&r, &link, A, A);
        }
        // Two copies of the header.
        let link = gw.new_link(A, json!({}));
        let two = [
            ("x-mksgate-cluster", "esxi_vesxi02"),
            ("x-mksgate-cluster", "esxi_vesxi02"),
        ];
        drop(gw.expect_admitted(&link.path, &two).await);
        assert_clean_upstream(&upstream_request(&gw, A, &link.ticket).await, &link, A, A);
        assert!(gw.b().requests().is_empty() && gw.b().handshakes().is_empty());

        // No token, an empty one, a bad one, a forged one: refused by the
        // filter as without the header; nothing reaches B.
        let hdr = [("x-mksgate-cluster", "esxi_vesxi02")];
        gw.expect_refused("/console", &hdr, 401, "missing_token")
            .await;
        gw.expect_refused("/console?token=", &hdr, 401, "missing_token")
            .await;
        gw.expect_refused("/console?token=x.y.z", &hdr, 400, "malformed_token")
            .await;
        let base = gw.new_link(A, json!({}));
        let forged = with_payload(
            &base.token,
            &common::merge(&token_payload(&base.token), &json!({"host": B})),
        );
        gw.expect_refused(&Gateway::path_for(&forged), &hdr, 403, "bad_signature")
            .await;
        // A plain GET with the header on a console path.
        let opts = gw.opts().plain_get().header(hdr[0].0, hdr[0].1);
        gw.expect_refused_with(&base.path, &opts, 426, "not_websocket")
            .await;

        // Outside the console path the filter passes the request on with
        // the header removed, so the admitted route never matches: Envoy's
        // 404, no decision, and no upstream request, WebSocket or not.
        let ticket_b = gw.b().issue_ticket();
        gw.remember(&ticket_b);
        let before = gw.upstream_activity();
        let paths = [
            format!("/ticket/{ticket_b}"),
            format!("/ticket/{ticket_b}?token={}", base.token),
            "/".to_string(),
            "/consoles".to_string(),
            "/sdk".to_string(),
        ];
        for path in &paths {
            for opts in [gw.opts(), gw.opts().plain_get()] {
                let opts = opts.header(hdr[0].0, hdr[0].1);
                let r = gw
                    .connect_with(path, &opts)
                    .await
                    .unwrap()
                    .refusal()
                    .unwrap();
                assert_eq!(
                    (
                        r.status,
                        r.body_text().as_str(),
                        r.header("x-mksgate-decision")
                    ),
                    (404, "not_found\n", None),
                    "{path}"
                );
            }
        }
        assert_eq!(
            gw.upstream_activity(),
            before,
            "a passed-through request reached ESXi"
        );
        assert_eq!(
            gw.b().ticket_state(&ticket_b),
            Some(mksgate_host_tests::standin::TicketState::Issued)
        );

        // None of that was a console decision except the ones above.
        let counts = gw.decision_counts().await.unwrap();
        assert_eq!(counts["admitted"], 4);
        assert_eq!(counts["missing_token"], 2);
        assert_eq!(counts["malformed_token"], 1);
        assert_eq!(counts["bad_signature"], 1);
        assert_eq!(counts["not_websocket"], 1);
        assert_eq!(counts.values().sum::<u64>(), 9, "{counts:?}");
        gw.assert_no_leaks();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_reaches_the_upstream() {
    bounded(90, async {
        let gw = Gateway::start().await.unwrap();

        // The full wmks offer passes unchanged; ESXi picks `binary`.
        let link = gw.new_link(A, json!({}));
        let s = gw.expect_admitted(&link.path, &[]).await;
        assert_eq!(s.subprotocol.as_deref(), Some("binary"));
        s.close(T).await.unwrap();
        let r = upstream_request(&gw, A, &link.ticket).await;
        assert_clean_upstream(&r, &link, A, A);
        assert_eq!(r.offered_protocols, WMKS_PROTOCOLS.to_vec());
        assert_eq!(r.subprotocol.as_deref(), Some("binary"));
        assert!(r.header("sec-websocket-key").is_some());
        assert_eq!(r.header("sec-websocket-version"), Some("13"));

        // Each subprotocol alone, on each host, reaches ESXi and comes back.
        for host in [A, B] {
            for p in WMKS_PROTOCOLS {
                let link = gw.new_link(host, json!({}));
                let opts = gw.bare_opts().header("Origin", shipped::ORIGIN).protocols(&[p]);
                let mut s = gw.connect_with(&link.path, &opts).await.unwrap().session().unwrap();
                assert_eq!(s.subprotocol.as_deref(), Some(p));
                assert_eq!(s.response.header("sec-websocket-protocol"), Some(p));
                verify_session(&mut s, 4).await.unwrap();
                drop(s);
                let r = upstream_request(&gw, host, &link.ticket).await;
                assert_clean_upstream(&r, &link, host, host);
                assert_eq!(r.offered_protocols, vec![p]);
                assert_eq!(r.subprotocol.as_deref(), Some(p));
            }
        }

        // A `port` claim changes only `:authority`: the static cluster
        // connects to its configured endpoint whatever the port says.
        for (port, authority) in [
            (json!(8443), format!("{A}:8443")),
            (json!("9443"), format!("{A}:9443")),
            (json!(443), A.to_string()),
        ] {
            let link = gw.new_link(A, json!({ "port": port }));
            drop(gw.expect_admitted(&link.path, &[]).await);
            let r = upstream_request(&gw, A, &link.ticket).await;
            assert_clean_upstream(&r, &link, A, &authority);
        }

        // The `url` claim form (as vSphere returns it) routes too.
        for (host, url_authority, authority) in [
            (B, B.to_string(), B.to_string()),
            (A, format!("{A}:443"), A.to_string()),
            (B, format!("{}:9443", B.to_uppercase()), format!("{B}:9443")),
        ] {
            let ticket = gw.standin(host).issue_ticket();
            gw.remember(&ticket);
            let link = gw.new_link(
                host,
                json!({"host": null, "ticket": null, "url": format!("wss://{url_authority}/ticket/{ticket}")}),
            );
            let link = Link { ticket, ..link };
            drop(gw.expect_admitted(&link.path, &[]).await);
            let r = upstream_request(&gw, host, &link.ticket).await;
            assert_clean_upstream(&r, &link, host, &authority);
        }

        // An upper-case host claim routes to the lower-case allowlisted host,
        // with the canonical name as Host.
        for claimed in ["VESXI02.SEC.LAB", "Vesxi02.Sec.Lab"] {
            let link = gw.new_link(B, json!({ "host": claimed }));
            drop(gw.expect_admitted(&link.path, &[]).await);
            let r = upstream_request(&gw, B, &link.ticket).await;
            assert_clean_upstream(&r, &link, B, B);
        }

        // Every request either stand-in saw came through the filter.
        for s in &gw.esxi {
            for r in s.requests() {
                assert!(r.path.starts_with("/ticket/") && !r.path.contains('?'), "{r:?}");
                assert_eq!(r.sni.as_deref(), Some(s.name()));
            }
        }
        gw.assert_no_leaks();
    })
    .await;
}
