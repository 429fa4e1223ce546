//! Proves the harness itself works, without the mksgate filter: stand-ins
//! directly, the stand-in binary, Envoy routing WebSockets to stand-ins by
//! `cluster_header` with pinned upstream certificates, and Envoy's dynamic
//! forward proxy resolving stand-in names through the DNS responder.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_host_tests::bounded;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use mksgate_host_tests::client::{
    connect, verify_session, verify_session_with, ClientOpts, SessionEnd,
};
use mksgate_host_tests::dns::DnsServer;
use mksgate_host_tests::envoy::{render, Envoy, EnvoyOpts};
use mksgate_host_tests::io::http_request;
use mksgate_host_tests::loopback;
use mksgate_host_tests::standin::{Fault, SniMismatch, Standin, StandinConfig, StandinInfo};
use mksgate_host_tests::tls::{CertKey, TestCa, Trust};

const H1: &str = "vesxi01.sec.lab";
const H2: &str = "vesxi02.sec.lab";
const T: Duration = Duration::from_secs(5);

fn direct(s: &Standin) -> ClientOpts {
    ClientOpts::new()
        .connect_to(s.local_addr())
        .pin(s.cert_der())
        .wmks_protocols()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standins_direct_tickets_subprotocols_and_bytes() {
    bounded(60, async {
        let s1 = Standin::start(StandinConfig::new(H1, loopback(2)))
            .await
            .unwrap();
        let s2 = Standin::start(StandinConfig::new(H2, loopback(3)))
            .await
            .unwrap();
        assert_eq!(s1.ip(), loopback(2));
        assert_eq!(s2.ip(), loopback(3));
        assert_ne!(s1.cert_sha256_hex(), s2.cert_sha256_hex());

        for s in [&s1, &s2] {
            let ticket = s.issue_ticket();
            assert_eq!(ticket.len(), 32);
            let url = s.url(&ticket);
            let mut sess = connect(&url, &direct(s)).await.unwrap().session().unwrap();
            assert_eq!(sess.subprotocol.as_deref(), Some("binary"));
            let rep = verify_session(&mut sess, 12).await.unwrap();
            assert_eq!(rep.echoed, 12);
            // Pushes keep coming (50 ms default) and are checked byte for byte.
            sess.expect_pushes(3, T).await.unwrap();
            // Pipelined too.
            let rep = verify_session_with(&mut sess, 8, 4, T).await.unwrap();
            assert_eq!(rep.echoed, 8);
            sess.close(T).await.unwrap();

            // Second use of the ticket: 503, like ESXi.
            let r = connect(&url, &direct(s)).await.unwrap().refusal().unwrap();
            assert_eq!(r.status, 503);
            assert_eq!(r.body_text(), "ticket already used\n");
            // Unknown ticket and other paths: 404.
            let r = connect(&s.url("nope"), &direct(s))
                .await
                .unwrap()
                .refusal()
                .unwrap();
            assert_eq!(
                (r.status, r.body_text().as_str()),
                (404, "unknown ticket\n")
            );
            let other = format!("wss://{}:{}/sdk", s.name(), s.port());
            let r = connect(&other, &direct(s))
                .await
                .unwrap()
                .refusal()
                .unwrap();
            assert_eq!((r.status, r.body_text().as_str()), (404, "not found\n"));
            // A plain GET on a valid ticket is refused without using it up.
            let t2 = s.issue_ticket();
            let r = connect(&s.url(&t2), &direct(s).plain_get())
                .await
                .unwrap()
                .refusal()
                .unwrap();
            assert_eq!(r.status, 400);
            connect(&s.url(&t2), &direct(s))
                .await
                .unwrap()
                .session()
                .unwrap();

            let reqs = s.wait_for_requests(6, T).await.unwrap();
            let first = &reqs[0];
            assert_eq!(first.sni.as_deref(), Some(s.name()));
            assert_eq!(
                first.host.as_deref(),
                Some(format!("{}:{}", s.name(), s.port()).as_str())
            );
            assert_eq!(first.status, Some(101));
            assert!(first.ticket_accepted);
            assert_eq!(first.ticket.as_deref(), Some(ticket.as_str()));
            assert_eq!(
                first.offered_protocols,
                vec!["binary", "vmware-vvc", "uint8utf8"]
            );
            assert_eq!(first.subprotocol.as_deref(), Some("binary"));
            assert_eq!(first.frames_echoed, 20);
            assert!(first.header("sec-websocket-key").is_some());
            let statuses: Vec<_> = reqs.iter().map(|r| r.status).collect();
            assert_eq!(
                statuses,
                vec![
                    Some(101),
                    Some(503),
                    Some(404),
                    Some(404),
                    Some(400),
                    Some(101)
                ]
            );
            assert!(!reqs[1].ticket_accepted);
        }
        // Each stand-in saw only its own traffic.
        assert!(s1.requests().iter().all(|r| r.sni.as_deref() == Some(H1)));
        assert!(s2.requests().iter().all(|r| r.sni.as_deref() == Some(H2)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_sni_must_match() {
    bounded(30, async {
        let s = Standin::start(StandinConfig::new(H1, loopback(2)))
            .await
            .unwrap();
        let t = s.issue_ticket();
        // Wrong SNI: the handshake fails.
        let err = connect(&s.url(&t), &direct(&s).sni(H2)).await.unwrap_err();
        assert!(format!("{err:#}").contains("TLS handshake"), "{err:#}");
        // No SNI at all: fails too.
        connect(&s.url(&t), &direct(&s).no_sni()).await.unwrap_err();
        let hs = s.handshakes();
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[0].sni.as_deref(), Some(H2));
        assert!(!hs[0].sni_ok && !hs[0].completed);
        assert_eq!(hs[1].sni, None);
        assert!(s.requests().is_empty());
        // The ticket was not used up.
        connect(&s.url(&t), &direct(&s))
            .await
            .unwrap()
            .session()
            .unwrap();
        assert!(s.handshakes()[2].completed);

        // 421 mode.
        let s421 =
            Standin::start(StandinConfig::new(H1, loopback(2)).sni_mismatch(SniMismatch::Http421))
                .await
                .unwrap();
        let t = s421.issue_ticket();
        let r = connect(&s421.url(&t), &direct(&s421).sni("other.sec.lab"))
            .await
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!(r.status, 421);
        assert_eq!(s421.requests()[0].sni.as_deref(), Some("other.sec.lab"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_subprotocol_negotiation() {
    bounded(30, async {
        let s = Standin::start(StandinConfig::new(H1, loopback(2)).no_push())
            .await
            .unwrap();
        let cases: [(&[&str], Option<&str>); 5] = [
            (&["binary", "vmware-vvc", "uint8utf8"], Some("binary")),
            (&["uint8utf8", "binary"], Some("uint8utf8")),
            (&["foo", "vmware-vvc", "binary"], Some("vmware-vvc")),
            (&["foo"], None),
            (&[], None),
        ];
        for (offer, want) in cases {
            let t = s.issue_ticket();
            let sess = connect(&s.url(&t), &direct(&s).protocols(offer))
                .await
                .unwrap()
                .session()
                .unwrap();
            assert_eq!(sess.subprotocol.as_deref(), want, "offer {offer:?}");
            assert_eq!(sess.response.header("sec-websocket-protocol"), want);
            sess.close(T).await.unwrap();
        }
        let reqs = s.requests();
        assert_eq!(reqs[1].offered_protocols, vec!["uint8utf8", "binary"]);
        assert_eq!(reqs[3].subprotocol, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_faults() {
    bounded(60, async {
        let s = Standin::start(
            StandinConfig::new(H1, loopback(2)).push(Duration::from_millis(20), 100),
        )
        .await
        .unwrap();

        // Down: connections are refused; back up on the same port.
        s.set_fault(Fault::Down).await.unwrap();
        let err = tokio::net::TcpStream::connect(s.local_addr())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        s.set_fault(Fault::None).await.unwrap();
        let t = s.issue_ticket();
        let mut live = connect(&s.url(&t), &direct(&s))
            .await
            .unwrap()
            .session()
            .unwrap();
        verify_session(&mut live, 3).await.unwrap();

        // ResetMidSession: 3 pushes, then a TCP reset.
        s.set_fault(Fault::ResetMidSession).await.unwrap();
        let t = s.issue_ticket();
        let mut sess = connect(&s.url(&t), &direct(&s))
            .await
            .unwrap()
            .session()
            .unwrap();
        sess.expect_pushes(3, T).await.unwrap();
        match sess.wait_end(T).await.unwrap() {
            SessionEnd::Error(e) => assert!(e.to_lowercase().contains("reset"), "{e}"),
            other => panic!("expected a reset, got {other:?}"),
        }
        // Sessions started before the fault are untouched.
        verify_session(&mut live, 2).await.unwrap();

        // NeverAnswerUpgrade: request read and recorded, no answer.
        s.set_fault(Fault::NeverAnswerUpgrade).await.unwrap();
        let t = s.issue_ticket();
        let n_before = s.requests().len();
        let err = connect(&s.url(&t), &direct(&s).timeout(Duration::from_millis(700)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err:#}");
        let reqs = s.wait_for_requests(n_before + 1, T).await.unwrap();
        assert_eq!(reqs[n_before].status, None);
        assert_eq!(reqs[n_before].ticket.as_deref(), Some(t.as_str()));

        // reset_sessions / close_sessions act on running sessions.
        s.set_fault(Fault::None).await.unwrap();
        s.reset_sessions();
        assert!(matches!(
            live.wait_end(T).await.unwrap(),
            SessionEnd::Error(_)
        ));
        let t = s.issue_ticket();
        let mut sess = connect(&s.url(&t), &direct(&s))
            .await
            .unwrap()
            .session()
            .unwrap();
        sess.expect_pushes(1, T).await.unwrap();
        s.close_sessions(4001);
        assert_eq!(
            sess.wait_end(T).await.unwrap(),
            SessionEnd::Closed(Some(4001))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_plain_ws_idle() {
    bounded(30, async {
        let s = Standin::start(StandinConfig::new(H1, loopback(4)).plain().no_push())
            .await
            .unwrap();
        let t = s.issue_ticket_with_check();
        assert!(s.url(&t).starts_with("ws://"));
        let mut sess = connect(
            &s.url(&t),
            &ClientOpts::new()
                .connect_to(s.local_addr())
                .wmks_protocols(),
        )
        .await
        .unwrap()
        .session()
        .unwrap();
        sess.expect_silence(Duration::from_millis(300))
            .await
            .unwrap();
        let rep = verify_session(&mut sess, 11).await.unwrap();
        assert_eq!((rep.echoed, rep.pushes), (11, 0));
        assert!(!s.requests()[0].tls);
    })
    .await;
}

/// Small extension used above: issue a chosen ticket and check its state.
trait IssueChosen {
    fn issue_ticket_with_check(&self) -> String;
}
impl IssueChosen for Standin {
    fn issue_ticket_with_check(&self) -> String {
        let t = "52e8b7a0b1c3d4e5f60718293a4b5c6d".to_string();
        self.issue_ticket_with(&t);
        assert_eq!(
            self.ticket_state(&t),
            Some(mksgate_host_tests::standin::TicketState::Issued)
        );
        t
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_binary_and_control_api() {
    bounded(60, async {
        let dir = std::env::temp_dir().join(format!("mksgate-standin-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("cert.pem");
        let mut child = Command::new(env!("CARGO_BIN_EXE_esxi-standin"))
            .args([
                "--name",
                H2,
                "--addr",
                "127.0.0.3",
                "--push-interval-ms",
                "30",
                "--push-bytes",
                "200",
            ])
            .arg("--cert-out")
            .arg(&pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut l = String::new();
            BufReader::new(stdout).read_line(&mut l).map(|_| l)
        })
        .await
        .unwrap()
        .unwrap();
        let info: StandinInfo =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert_eq!(info.name, H2);
        assert_eq!(info.addr, "127.0.0.3");
        assert_eq!(info.scheme, "wss");
        let pem_text = std::fs::read_to_string(&pem).unwrap();
        assert!(pem_text.starts_with("-----BEGIN CERTIFICATE-----"));
        let control = SocketAddr::from(([127, 0, 0, 1], info.control_port));

        let r = http_request(control, "POST", "/tickets", b"", T)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let ticket = r.body_text();
        assert_eq!(ticket.len(), 32);
        let r = http_request(control, "POST", "/tickets", b"chosen-ticket", T)
            .await
            .unwrap();
        assert_eq!(r.body_text(), "chosen-ticket");

        let addr = SocketAddr::new(loopback(3), info.port);
        let url = format!("wss://{H2}:{}/ticket/{ticket}", info.port);
        // Trust by fingerprint only: check the printed hash matches the cert served.
        let opts = ClientOpts::new()
            .connect_to(addr)
            .wmks_protocols()
            .trust(Trust::InsecureAny);
        let mut sess = connect(&url, &opts).await.unwrap().session().unwrap();
        let rep = verify_session(&mut sess, 5).await.unwrap();
        assert_eq!(rep.echoed, 5);
        sess.expect_pushes(2, T).await.unwrap();
        sess.close(T).await.unwrap();

        let r = http_request(control, "GET", "/requests", b"", T)
            .await
            .unwrap();
        let reqs: Vec<mksgate_host_tests::standin::RecordedRequest> =
            serde_json::from_slice(&r.body).unwrap();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].status, Some(101));
        assert_eq!(reqs[0].sni.as_deref(), Some(H2));
        let r = http_request(control, "GET", "/handshakes", b"", T)
            .await
            .unwrap();
        assert!(r.body_text().contains(H2));

        let r = http_request(control, "POST", "/fault/down", b"", T)
            .await
            .unwrap();
        assert_eq!((r.status, r.body_text().as_str()), (200, "down"));
        tokio::net::TcpStream::connect(addr).await.unwrap_err();
        let r = http_request(control, "POST", "/fault/bogus", b"", T)
            .await
            .unwrap();
        assert_eq!(r.status, 400);
        let r = http_request(control, "POST", "/fault/none", b"", T)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let url2 = format!("wss://{H2}:{}/ticket/chosen-ticket", info.port);
        let sess = connect(&url2, &opts).await.unwrap().session().unwrap();
        // The fingerprint printed is the one of the certificate served.
        let der = match sess.ws.get_ref() {
            mksgate_host_tests::io::MaybeTls::Tls(t) => {
                t.get_ref().1.peer_certificates().unwrap()[0].clone()
            }
            _ => unreachable!(),
        };
        assert_eq!(mksgate_host_tests::tls::sha256_hex(&der), info.cert_sha256);
        assert_eq!(
            mksgate_host_tests::tls::sha256_colon(&der),
            info.cert_sha256_colon
        );
        drop(sess);

        // Closing stdin ends the process.
        let mut stdin = child.stdin.take().unwrap();
        stdin.flush().unwrap();
        drop(stdin);
        let deadline = std::time::Instant::now() + T;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("esxi-standin did not exit after stdin closed");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "{status}");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

// ---------------------------------------------------------------- Envoy

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Listener `gw` (TLS, certificate for gw.sec.lab), routing on
/// `x-mksgate-cluster`, one TLS cluster per stand-in pinned by certificate
/// hash; `extra_clusters` is appended verbatim.
fn cluster_header_config(gw: &CertKey, clusters: &[(&str, &Standin, String)]) -> String {
    let mut cl = String::new();
    for (name, s, hash) in clusters {
        cl.push_str(
            &render(
                r#"
  - name: ${NAME}
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: ${NAME}
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: ${ADDR}, port_value: ${PORT}}}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: ${SNI}
        common_tls_context:
          validation_context:
            verify_certificate_hash: ["${HASH}"]
"#,
                &[
                    ("NAME", name.to_string()),
                    ("ADDR", s.ip().to_string()),
                    ("PORT", s.port().to_string()),
                    ("SNI", s.name().to_string()),
                    ("HASH", hash.clone()),
                ],
            )
            .unwrap(),
        );
    }
    render(
        r#"
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: gw
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: {inline_string: ${GW_CERT}}
              private_key: {inline_string: ${GW_KEY}}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gw
          upgrade_configs: [{upgrade_type: websocket}]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster_header: x-mksgate-cluster, timeout: 0s}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:${CLUSTERS}
"#,
        &[
            ("GW_CERT", yaml_str(&gw.chain_pem())),
            ("GW_KEY", yaml_str(&gw.key_pem)),
            ("CLUSTERS", cl),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_routes_websockets_by_cluster_header() {
    bounded(90, async {
        let ca = TestCa::new("mksgate test gateway CA").unwrap();
        let gw = ca.issue(&["gw.sec.lab"]).unwrap();
        let s1 = Standin::start(StandinConfig::new(H1, loopback(2)))
            .await
            .unwrap();
        let s2 = Standin::start(
            StandinConfig::new(H2, loopback(3)).push(Duration::from_millis(10), 3000),
        )
        .await
        .unwrap();
        let other = CertKey::self_signed(&[H1]).unwrap();
        // Both hash spellings Envoy accepts, and one wrong pin.
        let cfg = cluster_header_config(
            &gw,
            &[
                ("vesxi01", &s1, s1.cert_sha256_colon()),
                ("vesxi02", &s2, s2.cert_sha256_hex()),
                ("badpin", &s1, other.sha256_hex()),
            ],
        );
        Envoy::validate(&cfg).unwrap();
        let envoy = Envoy::start(&cfg, EnvoyOpts::default()).await.unwrap();
        let gw_addr = envoy.listener_addr("gw").await.unwrap();
        let through = |cluster: &str| {
            ClientOpts::new()
                .connect_to(gw_addr)
                .trust(Trust::Roots(vec![ca.cert_der()]))
                .sni("gw.sec.lab")
                .header("x-mksgate-cluster", cluster)
                .header("Origin", "https://gw.sec.lab")
                .protocols(&["uint8utf8", "binary"])
        };

        for (cluster, s) in [("vesxi01", &s1), ("vesxi02", &s2)] {
            let t = s.issue_ticket();
            let url = format!("wss://gw.sec.lab:{}/ticket/{t}", gw_addr.port());
            let mut sess = connect(&url, &through(cluster))
                .await
                .unwrap()
                .session()
                .unwrap();
            assert_eq!(sess.subprotocol.as_deref(), Some("uint8utf8"));
            let rep = verify_session(&mut sess, 22).await.unwrap();
            assert_eq!(rep.echoed, 22);
            let rep = verify_session_with(&mut sess, 11, 4, T).await.unwrap();
            assert_eq!(rep.echoed, 11);
            sess.expect_pushes(5, T).await.unwrap();
            sess.close(T).await.unwrap();

            let reqs = s.wait_for_requests(1, T).await.unwrap();
            let r = &reqs[0];
            assert_eq!(
                r.sni.as_deref(),
                Some(s.name()),
                "Envoy sent the configured SNI"
            );
            assert_eq!(r.ticket.as_deref(), Some(t.as_str()));
            assert_eq!(r.status, Some(101));
            assert_eq!(r.subprotocol.as_deref(), Some("uint8utf8"));
            assert_eq!(r.offered_protocols, vec!["uint8utf8", "binary"]);
            assert_eq!(r.header("origin"), Some("https://gw.sec.lab"));
            assert_eq!(r.header("x-mksgate-cluster"), Some(cluster));
            // Envoy passes the client's Host through unless told otherwise.
            assert_eq!(
                r.host.as_deref(),
                Some(format!("gw.sec.lab:{}", gw_addr.port()).as_str())
            );

            // Ticket reuse through Envoy: ESXi's 503 reaches the client.
            let r = connect(&url, &through(cluster))
                .await
                .unwrap()
                .refusal()
                .unwrap();
            assert_eq!(r.status, 503);
            assert_eq!(r.body_text(), "ticket already used\n");
        }
        // The other stand-in saw nothing of the first one's traffic.
        assert!(s1.requests().iter().all(|r| r.sni.as_deref() == Some(H1)));
        assert!(s2.requests().iter().all(|r| r.sni.as_deref() == Some(H2)));

        // A wrong pin: Envoy refuses the upstream, the client gets 503.
        let t = s1.issue_ticket();
        let n = s1.requests().len();
        let url = format!("wss://gw.sec.lab:{}/ticket/{t}", gw_addr.port());
        let r = connect(&url, &through("badpin"))
            .await
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!(r.status, 503, "{}", r.body_text());
        assert!(
            r.body_text().starts_with("upstream connect error"),
            "{}",
            r.body_text()
        );
        assert_eq!(s1.requests().len(), n, "no request reached the stand-in");
        assert!(
            envoy
                .stat("cluster.badpin.ssl.fail_verify_cert_hash")
                .await
                .unwrap()
                >= 1
        );

        // The stand-in resetting mid-session: the client sees the end.
        s1.set_fault(Fault::ResetMidSession).await.unwrap();
        let t = s1.issue_ticket();
        let url = format!("wss://gw.sec.lab:{}/ticket/{t}", gw_addr.port());
        let mut sess = connect(&url, &through("vesxi01"))
            .await
            .unwrap()
            .session()
            .unwrap();
        sess.expect_pushes(3, T).await.unwrap();
        let end = sess.wait_end(T).await.unwrap();
        // Envoy turns the upstream RST into an abrupt downstream close (no
        // close frame); tungstenite reports "Connection reset without
        // closing handshake".
        assert!(
            matches!(end, SessionEnd::Error(_) | SessionEnd::Eof),
            "{end:?}"
        );
        s1.set_fault(Fault::None).await.unwrap();

        let stats = envoy.stats().await.unwrap();
        assert!(stats["cluster.vesxi01.upstream_cx_total"] >= 2);
        assert!(stats["cluster.vesxi02.upstream_cx_total"] >= 2);
        assert!(envoy.log().contains("starting main dispatch loop"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_dynamic_forward_proxy_resolves_standins_via_dns() {
    bounded(90, async {
        let ca = TestCa::new("mksgate test ESXi CA").unwrap();
        let s1 = Standin::start(StandinConfig::new(H1, loopback(2)).cert(ca.issue(&[H1]).unwrap()))
            .await
            .unwrap();
        let s2 = Standin::start(StandinConfig::new(H2, loopback(3)).cert(ca.issue(&[H2]).unwrap()))
            .await
            .unwrap();
        let dns = DnsServer::start([(H1, Ipv4Addr::new(127, 0, 0, 2)), (H2, Ipv4Addr::new(127, 0, 0, 3))])
            .await
            .unwrap();
        let cfg = render(
            r#"
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: gw
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gw
          upgrade_configs: [{upgrade_type: websocket}]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: dfp, timeout: 0s}
          http_filters:
          - name: envoy.filters.http.dynamic_forward_proxy
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig
              dns_cache_config: &dns_cache
                name: esxi_hosts
                dns_lookup_family: V4_ONLY
                typed_dns_resolver_config:
                  name: envoy.network.dns_resolver.cares
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
                    resolvers: [{socket_address: {address: 127.0.0.1, port_value: ${DNS_PORT}}}]
                    dns_resolver_options: {no_default_search_domain: true}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: dfp
    connect_timeout: 2s
    lb_policy: CLUSTER_PROVIDED
    cluster_type:
      name: envoy.clusters.dynamic_forward_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig
        dns_cache_config: *dns_cache
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        upstream_http_protocol_options: {auto_sni: true, auto_san_validation: true}
        explicit_http_config: {http_protocol_options: {}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          validation_context:
            trusted_ca: {inline_string: ${CA}}
"#,
            &[("DNS_PORT", dns.port().to_string()), ("CA", yaml_str(&ca.cert_pem()))],
        )
        .unwrap();
        Envoy::validate(&cfg).unwrap();
        let envoy = Envoy::start(&cfg, EnvoyOpts::default()).await.unwrap();
        let gw = envoy.listener_addr("gw").await.unwrap();

        for s in [&s1, &s2] {
            let t = s.issue_ticket();
            // The DFP routes on the Host header: host name and stand-in port.
            let host = format!("{}:{}", s.name(), s.port());
            let url = format!("ws://{host}/ticket/{t}");
            let opts = ClientOpts::new().connect_to(gw).wmks_protocols();
            let mut sess = connect(&url, &opts).await.unwrap().session().unwrap();
            assert_eq!(sess.subprotocol.as_deref(), Some("binary"));
            verify_session(&mut sess, 11).await.unwrap();
            sess.close(T).await.unwrap();
            let r = &s.wait_for_requests(1, T).await.unwrap()[0];
            assert_eq!(r.sni.as_deref(), Some(s.name()), "auto_sni sends the host without port");
            assert_eq!(r.host.as_deref(), Some(host.as_str()));
        }
        let qs = dns.queries();
        assert!(qs.iter().any(|q| q.name == H1 && q.qtype == 1), "{qs:?}");
        assert!(qs.iter().any(|q| q.name == H2 && q.qtype == 1), "{qs:?}");

        // A name the DNS does not know: Envoy answers with an error, no stand-in is hit.
        let opts = ClientOpts::new().connect_to(gw).wmks_protocols();
        let r = connect("ws://vesxi99.sec.lab:443/ticket/x", &opts).await.unwrap().refusal().unwrap();
        assert!(r.status >= 500, "{} {}", r.status, r.body_text());
        assert_eq!((r.status, r.body_text().as_str()), (503, "DNS resolution failure"));
        assert!(dns.queries().iter().any(|q| q.name == "vesxi99.sec.lab"));

        // A name that resolves to a stand-in of another name: Envoy sends
        // SNI impostor.sec.lab, which the stand-in refuses.
        dns.insert("impostor.sec.lab", Ipv4Addr::new(127, 0, 0, 2));
        let url = format!("ws://impostor.sec.lab:{}/ticket/x", s1.port());
        let n = s1.requests().len();
        let r = connect(&url, &opts).await.unwrap().refusal().unwrap();
        assert_eq!(r.status, 503, "{}", r.body_text());
        assert_eq!(s1.requests().len(), n);
        assert!(s1.handshakes().iter().any(|h| h.sni.as_deref() == Some("impostor.sec.lab") && !h.sni_ok));

        // auto_san_validation: a host that accepts the SNI but presents a
        // (CA-valid) certificate for another name is refused by Envoy.
        let wrong = Standin::start(StandinConfig::new("vesxi03.sec.lab", loopback(5)).cert(ca.issue(&[H1]).unwrap()))
            .await
            .unwrap();
        dns.insert("vesxi03.sec.lab", Ipv4Addr::new(127, 0, 0, 5));
        let t = wrong.issue_ticket();
        let url = format!("ws://vesxi03.sec.lab:{}/ticket/{t}", wrong.port());
        let r = connect(&url, &opts).await.unwrap().refusal().unwrap();
        assert_eq!(r.status, 503, "{}", r.body_text());
        assert!(wrong.requests().is_empty());
        let hs = wrong.handshakes();
        assert!(hs.iter().all(|h| h.sni_ok), "{hs:?}");
        assert!(envoy.stat("cluster.dfp.ssl.fail_verify_san").await.unwrap() >= 1);
    })
    .await;
}

#[test]
fn envoy_validate_rejects_bad_config() {
    let err =
        Envoy::validate("static_resources: {clusters: [{name: x, type: BOGUS}]}").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("validate failed"), "{msg}");
}
