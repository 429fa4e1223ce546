//! envoy/dynamic.yaml end to end: the filter's suffix allowlist in front of
//! Envoy's dynamic forward proxy, with the harness DNS responder as the
//! estate's DNS and two ESXi stand-ins whose certificates come from one CA
//! (the "VMCA" the shipped config trusts).
//!
//! * links for hosts under `.esxi.example.com` (with the stand-in's port)
//!   are admitted and reach that host, with its name as SNI and Host;
//! * hosts outside the suffix are refused `host_not_allowed` before Envoy
//!   ever asks DNS about them;
//! * an allowed name DNS does not know gets Envoy's 503;
//! * an upstream whose certificate is for another name, or does not chain
//!   to the CA, gets a 503 and never sees the request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::time::Duration;

use mksgate_host_tests::bounded;
use mksgate_host_tests::client::{connect, verify_session, ClientOpts, Outcome};
use mksgate_host_tests::dns::DnsServer;
use mksgate_host_tests::gateway::{Layout, ShippedGateway};
use mksgate_host_tests::io::HttpResponse;
use mksgate_host_tests::loopback;
use mksgate_host_tests::shipped::{DYNAMIC_CLUSTER, ORIGIN};
use mksgate_host_tests::standin::{Standin, StandinConfig};
use mksgate_host_tests::tls::TestCa;

const T: Duration = Duration::from_secs(10);
const GATEWAY: &str = "console.example.com";
const ESX_A: &str = "esx-a.esxi.example.com";
const ESX_B: &str = "esx-b.esxi.example.com";

/// The shipped dynamic layout, with its two stand-ins at hand.
struct Gateway {
    shipped: ShippedGateway,
    a: Standin,
    b: Standin,
}

impl std::ops::Deref for Gateway {
    type Target = ShippedGateway;
    fn deref(&self) -> &ShippedGateway {
        &self.shipped
    }
}

async fn start() -> Gateway {
    let shipped = ShippedGateway::start(Layout::Dynamic, 1).await.unwrap();
    let (a, b) = (shipped.standins[0].clone(), shipped.standins[1].clone());
    assert_eq!((a.name(), b.name()), (ESX_A, ESX_B));
    Gateway { shipped, a, b }
}

impl Gateway {
    fn dns(&self) -> &DnsServer {
        self.shipped.dns.as_ref().unwrap()
    }

    fn ca(&self) -> &TestCa {
        self.shipped.esxi_ca.as_ref().unwrap()
    }

    fn link(&self, host: &str, port: u16, ticket: &str) -> String {
        let path = self.path_for(host, Some(port), ticket).unwrap();
        format!("wss://{GATEWAY}{path}")
    }

    async fn open(&self, host: &str, port: u16, ticket: &str) -> Outcome {
        let opts = ClientOpts::new()
            .connect_to(self.addr)
            .pin(self.cert.cert_der.clone())
            .header("Origin", ORIGIN)
            .wmks_protocols()
            .timeout(Duration::from_secs(20));
        connect(&self.link(host, port, ticket), &opts)
            .await
            .unwrap()
    }

    async fn refused(&self, host: &str, port: u16) -> HttpResponse {
        self.open(host, port, "52e8b7a0b1c3d4e5f60718293a4b5c6d")
            .await
            .refusal()
            .unwrap()
    }

    fn queried(&self, name: &str) -> bool {
        self.dns().queries().iter().any(|q| q.name == name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_links_reach_the_named_host_with_its_sni_and_host() {
    bounded(120, async {
        let gw = start().await;
        for (s, other) in [(&gw.a, &gw.b), (&gw.b, &gw.a)] {
            let ticket = s.issue_ticket();
            let before = other.requests().len();
            let mut session = gw
                .open(s.name(), s.port(), &ticket)
                .await
                .session()
                .unwrap();
            assert_eq!(session.subprotocol.as_deref(), Some("binary"));
            let rep = verify_session(&mut session, 11).await.unwrap();
            assert_eq!(rep.echoed, 11);
            session.expect_pushes(3, T).await.unwrap();
            session.close(T).await.unwrap();
            let req = s
                .requests()
                .into_iter()
                .find(|r| r.ticket.as_deref() == Some(ticket.as_str()))
                .unwrap();
            assert_eq!(req.status, Some(101));
            assert_eq!(req.path, format!("/ticket/{ticket}"));
            assert_eq!(req.sni.as_deref(), Some(s.name()), "SNI is the host name");
            let host = format!("{}:{}", s.name(), s.port());
            assert_eq!(req.host.as_deref(), Some(host.as_str()));
            assert_eq!(req.header("origin"), Some(ORIGIN));
            assert_eq!(other.requests().len(), before, "the other host saw it");
            assert!(gw.queried(s.name()), "{:?}", gw.dns().queries());
        }
        let stats = gw.envoy.stats().await.unwrap();
        assert_eq!(stats["wasmcustom.mksgate.decision.admitted"], 2);
        assert!(
            stats[&format!("cluster.{DYNAMIC_CLUSTER}.upstream_cx_total")] >= 2,
            "{stats:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_outside_the_suffix_are_refused_without_a_dns_query() {
    bounded(120, async {
        let gw = start().await;
        let port = gw.a.port();
        for host in [
            "esxi.example.com",
            "evil.example.com",
            "esx-a.esxi.example.com.evil.com",
            "esx-a.esxi.example.co",
            "esx-aesxi.example.com",
            "127.0.0.4",
        ] {
            let r = gw.refused(host, port).await;
            assert_eq!(
                (r.status, r.header("x-mksgate-decision"), r.body_text()),
                (
                    403,
                    Some("host_not_allowed"),
                    "host_not_allowed\n".to_string()
                ),
                "{host}"
            );
        }
        // Give a (wrong) asynchronous lookup time to show up.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let queries = gw.dns().queries();
        assert!(
            queries.is_empty(),
            "refused hosts must never reach DNS: {queries:?}"
        );
        assert!(gw.a.requests().is_empty() && gw.a.handshakes().is_empty());
        assert_eq!(
            gw.envoy
                .stat("wasmcustom.mksgate.decision.host_not_allowed")
                .await
                .unwrap(),
            6
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_and_wrong_certificates_get_503() {
    bounded(120, async {
        let gw = start().await;

        // Allowed by the suffix, unknown to DNS: Envoy's 503.
        let unknown = "esx-zz.esxi.example.com";
        let r = gw.refused(unknown, 443).await;
        assert_eq!(r.status, 503, "{}", r.body_text());
        assert_eq!(r.header("x-mksgate-decision"), None, "Envoy's answer");
        assert!(gw.queried(unknown), "{:?}", gw.dns().queries());

        // A host under the suffix whose (CA-valid) certificate is for another
        // name: auto_san_validation refuses it, the request never arrives.
        let wrong_name = "esx-c.esxi.example.com";
        let c = Standin::start(
            StandinConfig::new(wrong_name, loopback(6)).cert(gw.ca().issue(&[ESX_A]).unwrap()),
        )
        .await
        .unwrap();
        gw.dns().insert(wrong_name, Ipv4Addr::new(127, 0, 0, 6));
        let r = gw.open(wrong_name, c.port(), &c.issue_ticket()).await;
        let r = r.refusal().unwrap();
        assert_eq!(r.status, 503, "{}", r.body_text());
        assert!(c.requests().is_empty(), "the request reached a wrong host");
        assert!(
            c.handshakes()
                .iter()
                .all(|h| h.sni.as_deref() == Some(wrong_name)),
            "{:?}",
            c.handshakes()
        );
        let san = format!("cluster.{DYNAMIC_CLUSTER}.ssl.fail_verify_san");
        assert!(gw.envoy.stat(&san).await.unwrap() >= 1);

        // The right name, but a certificate that does not chain to the CA.
        let rogue = "esx-d.esxi.example.com";
        let d = Standin::start(StandinConfig::new(rogue, loopback(7)))
            .await
            .unwrap();
        gw.dns().insert(rogue, Ipv4Addr::new(127, 0, 0, 7));
        let r = gw
            .open(rogue, d.port(), &d.issue_ticket())
            .await
            .refusal()
            .unwrap();
        assert_eq!(r.status, 503, "{}", r.body_text());
        assert!(d.requests().is_empty(), "the request reached a rogue host");
        let chain = format!("cluster.{DYNAMIC_CLUSTER}.ssl.fail_verify_error");
        assert!(gw.envoy.stat(&chain).await.unwrap() >= 1);

        // The filter admitted all three; Envoy refused upstream.
        assert_eq!(
            gw.envoy
                .stat("wasmcustom.mksgate.decision.admitted")
                .await
                .unwrap(),
            3
        );
        // And the good hosts still work.
        let t = gw.a.issue_ticket();
        let mut s = gw.open(ESX_A, gw.a.port(), &t).await.session().unwrap();
        verify_session(&mut s, 3).await.unwrap();
        s.close(T).await.unwrap();
    })
    .await;
}
