//! A huge answer from a store member (broken, or an impostor holding the
//! CA's certificate and name) is dropped as it arrives: `envoy/fleet.yaml`
//! bounds Envoy's buffer for an HTTP call's answer to the filter's own
//! 64 KiB (`http.async_response_buffer_limit`), where Envoy's default lets
//! it buffer 32 MiB per call. Measured side by side: Envoy's heap after
//! answers of 50 MiB, shipped and with Envoy's default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_host_tests::bounded;
use mksgate_host_tests::clients::MANY_USERS;
use mksgate_host_tests::etcd::SERVER_NAME;
use mksgate_host_tests::fleet::Fleet;
use mksgate_host_tests::gateway::upgrade_head;
use mksgate_host_tests::wire::WireReply;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HUGE: usize = 50 * 1024 * 1024;
const LINKS: usize = 4;
const SHIPPED: &str = "http.async_response_buffer_limit: 65536";
const ENVOY_DEFAULT: &str = "http.async_response_buffer_limit: 33554432";

/// A member that answers `/health` and logins as etcd would, and every
/// other call with a 50 MiB body.
async fn serve_huge(addr: SocketAddr, tls: rustls::ServerConfig) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let small = |body: &str| {
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
                    };
                    if head.starts_with("GET /health") {
                        let _ = s.write_all(small(r#"{"health":"true"}"#).as_bytes()).await;
                    } else if head.contains("/v3/auth/authenticate") {
                        let _ = s
                            .write_all(small(r#"{"header":{},"token":"fake.1"}"#).as_bytes())
                            .await;
                    } else {
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {HUGE}\r\n\r\n");
                        if s.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b' '; 1024 * 1024];
                        for _ in 0..HUGE / chunk.len() {
                            if s.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}

async fn fire(fleet: &Fleet, path: &str) -> WireReply {
    let mut wire = fleet.wire(0).unwrap().from(MANY_USERS.next());
    wire.timeout = Duration::from_secs(10);
    wire.send(&upgrade_head(path.as_bytes(), &[]))
        .await
        .unwrap_or(WireReply {
            status: 0,
            decision: None,
        })
}

/// Envoy's heap (`/memory`): (allocated, heap size), in MB.
async fn heap(fleet: &Fleet) -> (f64, f64) {
    let v: serde_json::Value = serde_json::from_str(
        &fleet.gateways[0]
            .admin_get("/memory")
            .await
            .unwrap()
            .body_text(),
    )
    .unwrap();
    let mb = |k: &str| v[k].as_str().unwrap_or("0").parse::<f64>().unwrap_or(0.0) / 1e6;
    (mb("allocated"), mb("heap_size"))
}

/// One gateway whose etcd members are replaced, once it has logged in, by
/// members that answer with 50 MiB; what its heap does over `LINKS` links.
async fn run(runtime_line: &str) -> Measured {
    let fleet = Fleet::start_with(1, 1, &[(SHIPPED, runtime_line)])
        .await
        .unwrap();
    let members = fleet.etcd.client_addrs();
    let tls = fleet.etcd.tls.as_ref().unwrap();
    let mut names: Vec<String> = members.iter().map(|a| a.ip().to_string()).collect();
    names.push(SERVER_NAME.to_string());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let cert = tls.ca.issue(&names).unwrap();
    for i in 0..members.len() {
        fleet.etcd.kill(i);
    }
    let mut fakes = Vec::new();
    for addr in &members {
        fakes.push(serve_huge(*addr, cert.server_config().unwrap()).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // health checks see them up
    let before = heap(&fleet).await;
    let mut slowest = Duration::ZERO;
    for i in 0..LINKS {
        let path = fleet.valid_path(i, 60).unwrap();
        let t0 = Instant::now();
        let r = fire(&fleet, &path).await;
        slowest = slowest.max(t0.elapsed());
        assert_eq!(
            (r.status, r.decision.as_deref()),
            (503, Some("replay_unavailable")),
            "link {i}"
        );
    }
    let after = heap(&fleet).await;
    for f in fakes {
        f.abort();
    }
    Measured {
        before,
        after,
        slowest,
    }
}

#[derive(Debug)]
struct Measured {
    /// (allocated, heap size) in MB, before and after the answers.
    before: (f64, f64),
    after: (f64, f64),
    slowest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_store_answer_is_dropped_before_envoy_buffers_it() {
    bounded(240, async {
        let shipped = run(SHIPPED).await;
        let default = run(ENVOY_DEFAULT).await;
        let line = |name: &str, m: &Measured| {
            println!(
                "{name}: {LINKS} answers of 50 MiB: heap size {:.1} -> {:.1} MB (allocated {:.1} -> {:.1} MB), slowest refusal {:.2?}",
                m.before.1, m.after.1, m.before.0, m.after.0, m.slowest
            )
        };
        line("shipped (64 KiB)", &shipped);
        line("Envoy's default (32 MiB)", &default);
        let grew = |m: &Measured| m.after.1 - m.before.1;
        assert!(grew(&shipped) < 8.0, "the shipped bound let the heap grow: {shipped:?}");
        assert!(shipped.slowest < Duration::from_secs(3), "{shipped:?}");
    })
    .await;
}
