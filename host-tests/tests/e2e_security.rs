//! Threats from SECURITY.md that need real Envoy and had no test elsewhere:
//! Envoy's own header limits and request-smuggling shapes (refused before
//! the filter, so a link sent with them is not even spent), slow clients
//! (`request_headers_timeout`), the downstream connection limit, hostile
//! host claims through the whole gateway, cross-site WebSocket hijacking
//! attempts, and where tokens can and cannot end up in logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, upstream_request, Gateway, GatewayOpts, A, B, GATEWAY_NAME, T};
use mksgate_host_tests::client::{verify_session, ClientOpts, Outcome};
use mksgate_host_tests::envoy::{read_envoy_file, replace_exact};
use mksgate_host_tests::shipped;
use mksgate_host_tests::tls::{client_config, Trust};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `opts` + the link and expects Envoy itself to answer `status`
/// (no `x-mksgate-decision`: the filter never ran), with no upstream
/// activity.
async fn envoy_refuses(gw: &Gateway, path: &str, opts: &ClientOpts, status: u16, what: &str) {
    let before = gw.upstream_activity();
    let r = gw
        .connect_with(path, opts)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}"))
        .refusal()
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert_eq!(
        (r.status, r.header("x-mksgate-decision")),
        (status, None),
        "{what}: {:?}",
        r.body_text()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        gw.upstream_activity(),
        before,
        "{what}: reached an upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_header_limits_refuse_before_the_filter() {
    bounded(90, async {
        let gw = Gateway::start().await.unwrap();
        // The shipped limits these cases exceed.
        assert!(gw.yaml.contains("max_request_headers_kb: 16"));
        assert!(gw.yaml.contains("max_headers_count: 64"));

        // Over 16 KiB of headers: one big one, or a long request line.
        let big = gw.new_link(A, json!({}));
        let opts = gw.opts().header("X-Pad", &"a".repeat(17 * 1024));
        envoy_refuses(&gw, &big.path, &opts, 431, "17 KiB header").await;
        let long = gw.new_link(A, json!({}));
        let long_path = format!("{}&pad={}", long.path, "b".repeat(17 * 1024));
        envoy_refuses(&gw, &long_path, &gw.opts(), 431, "17 KiB request line").await;
        // More than 64 headers.
        let many = gw.new_link(B, json!({}));
        let mut opts = gw.opts();
        for i in 0..70 {
            opts = opts.header(&format!("X-H{i}"), "v");
        }
        envoy_refuses(&gw, &many.path, &opts, 431, "70 headers").await;

        // The filter never saw them: no decision was counted, and the same
        // links are admitted afterwards (they were not spent).
        let counts = gw.decision_counts().await.unwrap();
        assert_eq!(counts.values().sum::<u64>(), 0, "{counts:?}");
        for link in [&big, &long, &many] {
            let mut s = gw.expect_admitted(&link.path, &[]).await;
            verify_session(&mut s, 2).await.unwrap();
        }
        let stats = gw.stats().await.unwrap();
        println!(
            "431s: {:?}",
            stats.get("http.mksgate.downstream_rq_4xx").copied()
        );
        gw.wait_decision_counts(&[("admitted".to_string(), 3)].into(), T)
            .await
            .unwrap();
        gw.assert_no_leaks();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_or_normalized_before_esxi() {
    bounded(120, async {
        let gw = Gateway::start().await.unwrap();
        let cluster_b = "esxi_vesxi02";

        // Refused by Envoy before the filter: the link is not spent.
        let cases: Vec<(&str, ClientOpts, u16)> = vec![
            // A second `Upgrade` (same value, or another protocol): Envoy
            // answers 403 itself, so no reading of "the first one" can
            // disagree with another.
            (
                "Upgrade twice",
                gw.opts().header("Upgrade", "websocket"),
                403,
            ),
            ("Upgrade list", gw.opts().header("Upgrade", "h2c"), 403),
            // Content-Length and Transfer-Encoding together.
            (
                "CL + TE",
                gw.opts()
                    .header("Content-Length", "5")
                    .header("Transfer-Encoding", "chunked"),
                400,
            ),
            // The cluster header spelled with underscores (some proxies
            // fold `_` into `-`): `headers_with_underscores_action: REJECT_REQUEST`.
            (
                "underscore cluster header",
                gw.opts().header("x_mksgate_cluster", cluster_b),
                400,
            ),
            ("NUL in a header", gw.opts().header("X-A", "a\u{0}b"), 400),
        ];
        let mut unspent = Vec::new();
        for (what, opts, status) in cases {
            let link = gw.new_link(A, json!({}));
            envoy_refuses(&gw, &link.path, &opts, status, what).await;
            unspent.push(link);
        }
        // Paths: escaped slashes are refused; dot segments are resolved
        // before routing, so `/console/../ticket/<t>` is `/ticket/<t>`,
        // outside the console prefix: Envoy's 404, never ESXi.
        let ticket_b = gw.b().issue_ticket();
        gw.remember(&ticket_b);
        let link = gw.new_link(A, json!({}));
        let q = link.path.trim_start_matches("/console");
        envoy_refuses(
            &gw,
            &format!("/console%2F..%2Fticket%2F{ticket_b}{q}"),
            &gw.opts(),
            400,
            "escaped slashes",
        )
        .await;
        for path in [
            format!("/console/../ticket/{ticket_b}{q}"),
            format!("/console/%2e%2e/ticket/{ticket_b}{q}"),
            format!("/console;x{q}"),
            format!("/Console{q}"),
        ] {
            let opts = gw.opts().header("x-mksgate-cluster", cluster_b);
            envoy_refuses(&gw, &path, &opts, 404, &path).await;
        }
        unspent.push(link);
        assert_eq!(
            gw.b().ticket_state(&ticket_b),
            Some(mksgate_host_tests::standin::TicketState::Issued)
        );
        let counts = gw.decision_counts().await.unwrap();
        assert_eq!(counts.values().sum::<u64>(), 0, "{counts:?}");
        for link in &unspent {
            drop(gw.expect_admitted(&link.path, &[]).await);
        }

        // Accepted by Envoy, but harmless: what reaches ESXi is one clean
        // request. A second `Host`: the filter rewrites `:authority`, so
        // ESXi sees exactly one Host, its own name.
        let link = gw.new_link(A, json!({}));
        drop(
            gw.expect_admitted(&link.path, &[("Host", "evil.example.com")])
                .await,
        );
        let r = upstream_request(&gw, A, &link.ticket).await;
        let hosts: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
            .collect();
        assert_eq!(hosts.len(), 1, "{:?}", r.headers);
        assert_eq!(r.host.as_deref(), Some(A));
        // A folded (obs-fold) header is unfolded into one line; nothing
        // after the fold becomes a header of its own upstream.
        let link = gw.new_link(A, json!({}));
        let folded = format!("a\r\n x-mksgate-cluster: {cluster_b}");
        drop(gw.expect_admitted(&link.path, &[("X-Note", &folded)]).await);
        let r = upstream_request(&gw, A, &link.ticket).await;
        assert!(
            r.headers
                .iter()
                .all(|(n, _)| !n.eq_ignore_ascii_case(shipped::CLUSTER_HEADER)),
            "{:?}",
            r.headers
        );
        let note = r.header("x-note").unwrap_or_default();
        assert!(!note.contains('\n') && !note.contains('\r'), "{note:?}");
        // A fold that continues `Origin` makes it another origin: refused.
        let link = gw.new_link(A, json!({}));
        let opts = gw.bare_opts().wmks_protocols().header(
            "Origin",
            &format!("{}\r\n .evil.example.com", shipped::ORIGIN),
        );
        gw.expect_refused_with(&link.path, &opts, 403, "origin_not_allowed")
            .await;
        assert!(gw.b().requests().is_empty() && gw.b().handshakes().is_empty());

        let want = [
            ("admitted".to_string(), unspent.len() as u64 + 2),
            ("origin_not_allowed".to_string(), 1),
        ]
        .into();
        gw.wait_decision_counts(&want, T).await.unwrap();
        gw.assert_no_leaks();
    })
    .await;
}

/// A TLS connection to the gateway listener, trusting only the test CA.
async fn tls_to_gateway(gw: &Gateway) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let cfg = client_config(&Trust::Roots(vec![gw.ca.cert_der()]), true).unwrap();
    let name = rustls::pki_types::ServerName::try_from(GATEWAY_NAME).unwrap();
    tokio::time::timeout(
        T,
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_by_the_request_headers_timeout() {
    bounded(60, async {
        let gw = Gateway::start().await.unwrap();
        assert!(gw.yaml.contains("request_headers_timeout: 10s"));
        let link = gw.new_link(A, json!({}));
        let mut s = tls_to_gateway(&gw).await;
        // Slowloris: the request head, one header line a second, never
        // finished. Each line resets no timer: the whole head is due in 10 s.
        let t0 = Instant::now();
        s.write_all(format!("GET {} HTTP/1.1\r\nHost: {GATEWAY_NAME}\r\n", link.path).as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let mut i = 0;
        let ended = loop {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) => break "eof".to_string(),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break format!("error: {e}"),
                },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    assert!(t0.elapsed() < Duration::from_secs(20), "never cut");
                    i += 1;
                    if s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).await.is_err() {
                        break "write failed".to_string();
                    }
                }
            }
        };
        let took = t0.elapsed();
        let text = String::from_utf8_lossy(&got).to_string();
        println!(
            "slow client cut after {took:.1?} ({ended}), {i} header lines sent: {:?}",
            text.lines().next()
        );
        assert!(
            took >= Duration::from_millis(9_500) && took < Duration::from_secs(14),
            "cut after {took:?}, want the 10 s request_headers_timeout"
        );
        assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
        assert!(!text.contains("x-mksgate-decision"));
        assert_eq!(
            gw.envoy
                .stat("http.mksgate.downstream_rq_header_timeout")
                .await
                .unwrap(),
            1
        );
        assert_eq!(gw.upstream_activity(), (0, 0));
        // The filter never saw it: the link is still good.
        let counts = gw.decision_counts().await.unwrap();
        assert_eq!(counts.values().sum::<u64>(), 0, "{counts:?}");
        drop(gw.expect_admitted(&link.path, &[]).await);
    })
    .await;
}

/// Reads what the gateway answers on `s` for up to 3 s (or until it closes).
async fn read_answer(s: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    out
}

/// A second request pipelined behind an admitted upgrade, framed as its
/// body by `Transfer-Encoding: chunked` or `Content-Length`, or simply sent
/// along: Envoy passes those bytes on only as the upgraded stream's data,
/// so ESXi never serves them as a request (the smuggled ticket stays
/// unused), and the link's own ticket is used exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pipelined_behind_an_upgrade_are_not_served_by_esxi() {
    bounded(60, async {
        let gw = Gateway::start_with(GatewayOpts {
            push: None,
            ..GatewayOpts::default()
        })
        .await
        .unwrap();
        for framing in ["chunked", "content-length", "none"] {
            let other = gw.a().issue_ticket();
            gw.remember(&other);
            let link = gw.new_link(A, json!({}));
            let smuggled = format!(
                "GET /ticket/{other} HTTP/1.1\r\nHost: {A}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            );
            let (extra, body) = match framing {
                "chunked" => (
                    "Transfer-Encoding: chunked\r\n".to_string(),
                    format!("0\r\n\r\n{smuggled}"),
                ),
                "content-length" => (format!("Content-Length: {}\r\n", smuggled.len()), smuggled),
                _ => (String::new(), smuggled),
            };
            let head = format!(
                "GET {} HTTP/1.1\r\nHost: {GATEWAY_NAME}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nOrigin: {}\r\n{extra}\r\n",
                link.path,
                shipped::ORIGIN
            );
            let mut s = tls_to_gateway(&gw).await;
            s.write_all(format!("{head}{body}").as_bytes())
                .await
                .unwrap();
            let answer = read_answer(&mut s).await;
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 101"), "{framing}: {text:?}");
            assert_eq!(
                text.matches("HTTP/1.1 ").count(),
                1,
                "{framing}: a second response came back: {text:?}"
            );
            drop(s);
            let r = upstream_request(&gw, A, &link.ticket).await;
            assert_eq!(r.status, Some(101), "{framing}");
            assert_eq!(gw.requests_for(A, &link.ticket).len(), 1, "{framing}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                gw.requests_for(A, &other).is_empty(),
                "{framing}: smuggled request served"
            );
            assert_eq!(
                gw.a().ticket_state(&other),
                Some(mksgate_host_tests::standin::TicketState::Issued),
                "{framing}"
            );
            println!("{framing}: the upgraded session ended {:?}", r.end);
        }
        assert!(gw.b().requests().is_empty());
        gw.wait_decision_counts(&[("admitted".to_string(), 3)].into(), T)
            .await
            .unwrap();
    })
    .await;
}

/// Opens a TCP connection that never starts TLS and a TLS connection that
/// never sends a byte of a request; returns when Envoy closed each (or
/// `None` if it had not after `wait`).
async fn silent_connections(gw: &Gateway, wait: Duration) -> (Option<Duration>, Option<Duration>) {
    let mut raw = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = tls_to_gateway(gw).await;
    let t0 = Instant::now();
    let (mut raw_closed, mut tls_closed) = (None, None);
    let (mut b1, mut b2) = ([0u8; 64], [0u8; 64]);
    while t0.elapsed() < wait && (raw_closed.is_none() || tls_closed.is_none()) {
        tokio::select! {
            _ = raw.read(&mut b1), if raw_closed.is_none() => raw_closed = Some(t0.elapsed()),
            _ = tls.read(&mut b2), if tls_closed.is_none() => tls_closed = Some(t0.elapsed()),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    (raw_closed, tls_closed)
}

/// OPEN ISSUE (fails with the shipped config): `request_headers_timeout`
/// starts at the first byte of the request head, so a client that connects
/// and stays silent (no TLS ClientHello, or TLS and then nothing) is not a
/// "slow client" to Envoy: it holds its slot until the connection
/// `idle_timeout`. Against the 20,000-connection limit, 20,000 silent
/// sockets would lock every console out, without a link, for as long as that
/// timer. Silent connections must go as fast as slow ones do: the shipped
/// listeners set `transport_socket_connect_timeout: 10s` on the filter chain
/// and `common_http_protocol_options.idle_timeout: 10s` (it applies only
/// while a connection has no request, so open consoles are unaffected; their
/// stream and route idle timers stay at 1 h).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_cut_like_slow_clients() {
    bounded(60, async {
        let gw = Gateway::start().await.unwrap();
        let (raw, tls) = silent_connections(&gw, Duration::from_secs(16)).await;
        println!("shipped config: silent TCP closed after {raw:?}, silent TLS after {tls:?}");
        assert!(
            raw.is_some() && tls.is_some(),
            "silent connections still open after 16 s (TCP without TLS: {raw:?}, TLS \
             without a request: {tls:?}); each holds one of the 20,000 connection slots for \
             the 3600 s connection idle_timeout"
        );
    })
    .await;
}

/// With the shipped timers, silent connections go within about 10 s while an
/// open console that is idle for longer than that is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_cut_while_idle_consoles_stay() {
    bounded(60, async {
        // The shipped timers as they are (the fix this test first proposed
        // is now in envoy/*.yaml).
        let gw = Gateway::start_with(GatewayOpts {
            push: None,
            ..GatewayOpts::default()
        })
        .await
        .unwrap();
        let link = gw.new_link(A, json!({}));
        let mut console = gw.expect_admitted(&link.path, &[]).await;
        verify_session(&mut console, 2).await.unwrap();
        let (raw, tls) = silent_connections(&gw, Duration::from_secs(16)).await;
        println!("shipped timers: silent TCP closed after {raw:?}, silent TLS after {tls:?}");
        for (what, closed) in [("TCP without TLS", raw), ("TLS without a request", tls)] {
            let closed = closed.unwrap_or_else(|| panic!("{what} still open after 16 s"));
            assert!(
                closed >= Duration::from_secs(9) && closed < Duration::from_secs(14),
                "{what} closed after {closed:?}"
            );
        }
        // The console sent nothing for over 16 s, and still works.
        console
            .expect_silence(Duration::from_millis(100))
            .await
            .unwrap();
        let rep = verify_session(&mut console, 4).await.unwrap();
        assert_eq!(rep.echoed, 4);
        console.close(T).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_sheds_connections_over_it() {
    const LIMIT: usize = 4;
    bounded(90, async {
        let shipped_line = "max_active_downstream_connections: 20000";
        assert!(read_envoy_file("static-clusters.yaml")
            .unwrap()
            .contains(shipped_line));
        // The shipped 20,000 lowered to 4 (the mechanism is the same).
        let gw = Gateway::start_with_yaml_edit(GatewayOpts::default(), |y| {
            replace_exact(
                &y,
                &[(
                    shipped_line,
                    format!("max_active_downstream_connections: {LIMIT}").as_str(),
                )],
            )
        })
        .await
        .unwrap();
        let mut open = Vec::new();
        for i in 0..LIMIT {
            let host = if i % 2 == 0 { A } else { B };
            let link = gw.new_link(host, json!({}));
            open.push(gw.expect_admitted(&link.path, &[]).await);
        }
        // One more: Envoy accepts and closes it at once (no TLS, no HTTP),
        // so the link in it is never seen, let alone spent.
        let extra = gw.new_link(A, json!({}));
        let before = gw.upstream_activity();
        let opts = gw.opts().timeout(T);
        let err = gw.connect_with(&extra.path, &opts).await.unwrap_err();
        println!("connection over the limit: {err:#}");
        assert!(format!("{err:#}").contains("TLS handshake"), "{err:#}");
        assert_eq!(gw.upstream_activity(), before);
        let overflow = gw
            .envoy
            .stat("listener.0.0.0.0_0.downstream_global_cx_overflow")
            .await
            .unwrap();
        assert_eq!(overflow, 1);
        // The consoles already open are untouched.
        for s in &mut open {
            verify_session(s, 2).await.unwrap();
        }
        // One closes; the link refused at the door now gets in.
        open.pop().unwrap().close(T).await.unwrap();
        let deadline = Instant::now() + T;
        let s = loop {
            match gw.connect_with(&extra.path, &opts).await {
                Ok(Outcome::Upgraded(s)) => break s,
                Ok(Outcome::Refused(r)) => panic!("{} {:?}", r.status, r.body_text()),
                Err(e) => {
                    // Envoy counts the closed connection down a moment later.
                    assert!(Instant::now() < deadline, "{e:#}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        drop(s);
        let counts = gw.decision_counts().await.unwrap();
        assert_eq!(counts["admitted"], LIMIT as u64 + 1, "{counts:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_host_claims_never_reach_an_upstream() {
    bounded(120, async {
        let gw = Gateway::start().await.unwrap();
        let bad = ("bad_target", 400);
        let not_allowed = ("host_not_allowed", 403);
        let host_claims: Vec<(String, (&str, u16))> = vec![
            (format!("user@{A}"), bad),
            (format!("{A}@evil.example.com"), bad),
            (format!("{A}#.evil.example.com"), bad),
            (format!("{A}%00"), bad),
            ("vesxi01%2esec.lab".into(), bad),
            (format!("{A}:443"), bad),
            (format!("{A}:8443"), bad),
            (format!("{A}."), bad),
            (format!("{A}.."), bad),
            (format!("[{A}]"), bad),
            (format!("{A}/x"), bad),
            (format!("{A}\\x"), bad),
            (format!("{A} "), bad),
            ("v\u{0435}sxi01.sec.lab".into(), bad), // Cyrillic "е"
            ("vesxi01.sec.lab\u{3002}".into(), bad), // ideographic full stop
            ("127.1".into(), bad),
            ("2130706433".into(), bad),
            ("0x7f000002".into(), not_allowed),
            ("fe80::1%25eth0".into(), bad),
            ("[::1".into(), bad),
            ("127.0.0.2".into(), not_allowed),
            ("[::1]".into(), not_allowed),
            ("::ffff:127.0.0.2".into(), not_allowed),
            ("[::ffff:127.0.0.2]".into(), not_allowed),
            ("169.254.169.254".into(), not_allowed),
            ("localhost".into(), not_allowed),
            (
                format!("{}.evil.example.com", A.to_uppercase()),
                not_allowed,
            ),
            ("VESXI03.SEC.LAB".into(), not_allowed),
        ];
        let mut checked = 0;
        for (host, (code, status)) in &host_claims {
            let link = gw.new_link(A, json!({ "host": host }));
            gw.expect_refused(&link.path, &[], *status, code).await;
            checked += 1;
        }
        let url_claims: Vec<(String, (&str, u16))> = vec![
            (format!("wss://evil.example.com@{A}/ticket/t1"), bad),
            (format!("wss://{A}@evil.example.com/ticket/t1"), bad),
            (format!("wss://{A}#@evil.example.com/ticket/t1"), bad),
            (format!("wss://{A}%2f@evil.example.com/ticket/t1"), bad),
            (format!("wss://{A}./ticket/t1"), bad),
            (format!("wss://{A}:0/ticket/t1"), bad),
            (format!("wss://{A}:+443/ticket/t1"), bad),
            (format!("wss://{A}/ticket/t1/../../admin"), bad),
            (format!("wss://{A}/ticket/t1?x=1"), bad),
            (format!("https://{A}/ticket/t1"), bad),
            ("wss://[::1]:443/ticket/t1".into(), not_allowed),
            ("wss://127.0.0.2/ticket/t1".into(), not_allowed),
            ("wss://[::ffff:7f00:2]/ticket/t1".into(), not_allowed),
        ];
        for (url, (code, status)) in &url_claims {
            let link = gw.new_link(A, json!({"host": null, "ticket": null, "url": url}));
            gw.expect_refused(&link.path, &[], *status, code).await;
            checked += 1;
        }
        assert_eq!(gw.upstream_activity(), (0, 0));
        // Mixed case of a listed host is that host (and only that host).
        for (claimed, host) in [("VESXI01.SEC.LAB", A), ("Vesxi02.Sec.Lab", B)] {
            let link = gw.new_link(host, json!({ "host": claimed }));
            drop(gw.expect_admitted(&link.path, &[]).await);
            let r = upstream_request(&gw, host, &link.ticket).await;
            assert_eq!(
                (r.host.as_deref(), r.sni.as_deref()),
                (Some(host), Some(host))
            );
        }
        assert_eq!(gw.a().requests().len(), 1);
        assert_eq!(gw.b().requests().len(), 1);
        println!("{checked} hostile host claims refused; no upstream saw any");
        gw.assert_no_leaks();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_origins_are_refused_and_leave_the_link_unspent() {
    bounded(90, async {
        let gw = Gateway::start().await.unwrap();
        let link = gw.new_link(A, json!({}));
        let origins = [
            "https://evil.example.com",
            "null",
            "http://portal.example.com",
            "https://portal.example.com:8443",
            "https://portal.example.com.evil.com",
            "https://evil-portal.example.com",
            "https://portal.example.com/",
            "https://portal.example.com@evil.com",
            "",
        ];
        for origin in origins {
            let opts = gw.bare_opts().wmks_protocols().header("Origin", origin);
            gw.expect_refused_with(&link.path, &opts, 403, "origin_not_allowed")
                .await;
        }
        // No Origin at all (a non-browser client) is refused too.
        let opts = gw.bare_opts().wmks_protocols();
        gw.expect_refused_with(&link.path, &opts, 403, "origin_not_allowed")
            .await;
        // None of that spent the link: the portal's own page still opens it.
        let mut s = gw.expect_admitted(&link.path, &[]).await;
        verify_session(&mut s, 2).await.unwrap();
        // A link bound to the portal's origin by the `origin` claim is
        // refused from a page the allowlist would accept but the claim not.
        let bound = gw.new_link(A, json!({"origin": "https://other.example.com"}));
        gw.expect_refused(&bound.path, &[], 403, "origin_not_allowed")
            .await;
        let want = [
            ("admitted".to_string(), 1),
            ("origin_not_allowed".to_string(), origins.len() as u64 + 2),
        ]
        .into();
        gw.wait_decision_counts(&want, T).await.unwrap();
    })
    .await;
}

#[test]
fn shipped_access_logs_name_no_path_query_or_referer() {
    for file in [
        "static-clusters.yaml",
        "dynamic.yaml",
        "fleet.yaml",
        "rotation/listeners.yaml",
    ] {
        let yaml = read_envoy_file(file).unwrap();
        let start = yaml.find("access_log:").unwrap();
        let end = start + yaml[start..].find("route_config").unwrap();
        let block = &yaml[start..end];
        let operators: Vec<&str> = block
            .split('"')
            .filter(|s| s.starts_with('%') && s.ends_with('%'))
            .collect();
        assert!(operators.len() >= 5, "{file}: {operators:?}");
        // The one request field: X-Request-ID, which Envoy sets itself for
        // every client (e2e_client_control.rs shows a client's is replaced).
        // The filter's own fields are core's audit keys, whose values the
        // filter chose (audit.rs: never a token, a ticket or header bytes).
        let audit_keys: Vec<String> = mksgate_core::audit::AUDIT_PROPERTIES
            .iter()
            .chain([
                &mksgate_core::audit::DECISION_PROPERTY,
                &mksgate_core::audit::END_PROPERTY,
            ])
            .map(|k| format!("%FILTER_STATE(wasm.{k}:PLAIN)%"))
            .collect();
        for op in operators
            .iter()
            .filter(|op| **op != "%REQ(X-REQUEST-ID)%" && !audit_keys.iter().any(|k| k == *op))
        {
            let upper = op.to_ascii_uppercase();
            for banned in ["PATH", "REQ(", "QUERY", "REFERER", "URI", "HEADER"] {
                assert!(
                    !upper.contains(banned),
                    "{file}: access log field {op} could carry the token"
                );
            }
        }
        assert!(
            operators.contains(&"%FILTER_STATE(wasm.mksgate_decision:PLAIN)%"),
            "{file}: {operators:?}"
        );
    }
}

/// Residual risk, made concrete: Envoy's `http` debug logging prints request
/// headers, `:path` and so the token with them. The shipped log level is
/// `info`; this is why SECURITY.md says to keep it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_http_logging_would_write_tokens_to_the_log() {
    bounded(60, async {
        let gw = Gateway::start_with(GatewayOpts {
            component_log_level: Some("http:debug".into()),
            ..GatewayOpts::default()
        })
        .await
        .unwrap();
        let link = gw.new_link(A, json!({}));
        drop(gw.expect_admitted(&link.path, &[]).await);
        let deadline = Instant::now() + T;
        while !gw.envoy_log().contains(&link.token) {
            assert!(
                Instant::now() < deadline,
                "http:debug no longer logs :path; SECURITY.md can relax its advice"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The access log stays clean whatever the log level.
        assert!(!gw.access_log().contains(&link.token));
    })
    .await;
}

/// Istio's default access-log format (`%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`
/// and friends, as istiod configures it when access logging is on) in place
/// of the shipped one: it would write the signed link of a refused request
/// and the ticket of an admitted one. This is why the Istio kit ships
/// `envoy/istio/access-log.yaml`, whose format is the shipped Envoy one
/// (`shipped_configs.rs::istio_access_log_is_the_envoy_kits_format`), which
/// every other test here shows to hold neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istios_default_access_log_format_logs_neither_links_nor_tickets() {
    const ISTIO_DEFAULT: &str = mksgate_host_tests::istio_shape::ISTIO_DEFAULT_FORMAT;
    bounded(60, async {
        // Istio's default format prints %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%:
        // the token of a refused link and /ticket/<ticket> of an admitted
        // one, unless the filter sets x-envoy-original-path (it does, on
        // every console request).
        let edit = |yaml: String| {
            let start = yaml.find("                json_format:\n").unwrap();
            let end = start + yaml[start..].find("          route_config:").unwrap();
            let istio = format!(
                "                text_format_source:\n                  inline_string: {}\n",
                serde_json::to_string(&format!("{ISTIO_DEFAULT}\n")).unwrap()
            );
            Ok(format!("{}{istio}{}", &yaml[..start], &yaml[end..]))
        };
        let gw = Gateway::start_with_yaml_edit(GatewayOpts::default(), edit)
            .await
            .unwrap();
        let refused = gw.new_link(A, json!({"exp": common::now() - 100}));
        gw.expect_refused(&refused.path, &[], 403, "expired").await;
        let admitted = gw.new_link(A, json!({}));
        let mut s = gw.expect_admitted(&admitted.path, &[]).await;
        verify_session(&mut s, 1).await.unwrap();
        s.close(T).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let log = loop {
            let log = gw.access_log();
            if log.matches("\"GET /console HTTP/1.1\"").count() >= 3 || Instant::now() > deadline {
                break log;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!("Istio's default access-log format:\n{log}");
        // The refusal once; the console when its tunnel is up and when it
        // ends (the shipped `flush_log_on_tunnel_successfully_established`).
        assert_eq!(
            log.matches("\"GET /console HTTP/1.1\"").count(),
            3,
            "both requests logged with the path for logs:\n{log}"
        );
        let sig = refused.token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(sig) && !log.contains("token="),
            "a link is logged:\n{log}"
        );
        assert!(
            !log.contains(&admitted.ticket) && !log.contains("/ticket/"),
            "a ticket is logged:\n{log}"
        );
    })
    .await;
}
