//! Fair share under attack, in real Envoy with the shipped static layout
//! (2 workers, TLS): one abusive client address cannot lock the other users
//! out. Twenty users, each on its own address, open a console every second
//! with a valid link while
//! - nothing else happens (the baseline),
//! - one address floods forged-link handshakes at 20 times its limit,
//! - the flood is spread over more addresses than Envoy keeps buckets for,
//! - one address opens TLS connections as fast as it can.
//!
//! Every legitimate console must be admitted each time; the latencies are
//! printed side by side (SECURITY.md, T10, quotes a run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, raise_fd_limit, Gateway, GatewayOpts, A, B};
use mksgate_core::jws::{self, Alg, Key};
use mksgate_host_tests::clients::{tcp_connect, user_address};
use mksgate_host_tests::envoy::replace_exact;
use mksgate_host_tests::percentile;
use mksgate_host_tests::shipped;
use mksgate_host_tests::vm_health::Pacer;
use serde_json::json;

/// The legitimate users, one console a second each.
const USERS: usize = 20;
/// The shipped per-client limit (envoy/static-clusters.yaml).
const CLIENT_BURST: u64 = 40;
const CLIENT_PER_SEC: u64 = 20;
/// The flood: 20 times the per-client rate.
const FLOOD_PER_SEC: u32 = 20 * CLIENT_PER_SEC as u32;
/// Address groups (`127.<group>.x.y`).
const USER_GROUP: u8 = 4;
const FLOOD_GROUP: u8 = 5;

#[derive(Default)]
struct UsersReport {
    admitted: usize,
    refused: Vec<String>,
    latencies: Vec<Duration>,
}

impl UsersReport {
    fn line(&mut self, what: &str) -> String {
        self.latencies.sort();
        let p = |q: f64| percentile(&self.latencies, q);
        format!(
            "{what}: {} consoles admitted, {} refused; handshake p50 {:.1?} p99 {:.1?} max {:.1?}",
            self.admitted,
            self.refused.len(),
            p(0.5),
            p(0.99),
            p(1.0)
        )
    }
}

/// The twenty users, for `secs` seconds.
async fn users(gw: Arc<Gateway>, secs: u64) -> UsersReport {
    let tasks: Vec<_> = (0..USERS)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move {
                // Spread the users over the second.
                tokio::time::sleep(Duration::from_millis(1000 * i as u64 / USERS as u64)).await;
                let opts = gw.opts().source(user_address(USER_GROUP, i));
                let mut pacer = Pacer::new(1);
                let mut report = UsersReport::default();
                for _ in 0..secs {
                    pacer.pace().await;
                    let link = gw.new_link(if i % 2 == 0 { A } else { B }, json!({}));
                    let t0 = Instant::now();
                    match gw.connect_with(&link.path, &opts).await {
                        Ok(outcome) => match outcome.session() {
                            Ok(session) => {
                                report.latencies.push(t0.elapsed());
                                report.admitted += 1;
                                drop(session);
                            }
                            Err(e) => report.refused.push(format!("{e:#}")),
                        },
                        Err(e) => report.refused.push(format!("{e:#}")),
                    }
                }
                report
            })
        })
        .collect();
    let mut all = UsersReport::default();
    for t in tasks {
        let r = t.await.unwrap();
        all.admitted += r.admitted;
        all.refused.extend(r.refused);
        all.latencies.extend(r.latencies);
    }
    all
}

/// Forged-link handshakes (a valid link's shape, signed with another
/// secret: each one that reaches the filter costs an HMAC) at
/// `FLOOD_PER_SEC` for `secs` seconds, from `sources` in turn. Returns the
/// answers by status.
async fn flood(gw: Arc<Gateway>, sources: Vec<IpAddr>, secs: u64) -> BTreeMap<u16, u64> {
    let claims = gw.standard_claims(A, "forged-ticket");
    let other = Key::new(
        Some(shipped::KID.into()),
        Alg::HS256,
        &common::random_bytes(32),
    )
    .unwrap();
    let path = Gateway::path_for(&jws::sign(&other, claims.to_string().as_bytes()));
    const TASKS: usize = 16;
    let per_task = FLOOD_PER_SEC / TASKS as u32;
    let sources = Arc::new(sources);
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (gw, path, sources) = (gw.clone(), path.clone(), sources.clone());
            tokio::spawn(async move {
                let mut pacer = Pacer::new(per_task);
                let mut seen = BTreeMap::new();
                for n in 0..(per_task as u64 * secs) {
                    pacer.pace().await;
                    let source = sources[(n as usize * TASKS + t) % sources.len()];
                    let opts = gw.opts().source(source);
                    let status = match gw.connect_with(&path, &opts).await {
                        Ok(o) => o.refusal().map(|r| r.status).unwrap_or(101),
                        Err(_) => 0,
                    };
                    *seen.entry(status).or_insert(0u64) += 1;
                }
                seen
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for t in tasks {
        for (status, n) in t.await.unwrap() {
            *all.entry(status).or_insert(0) += n;
        }
    }
    all
}

fn counter(stats: &BTreeMap<String, u64>, name: &str) -> u64 {
    stats.get(name).copied().unwrap_or(0)
}

/// What the flood cost, from Envoy's own counters: (shed by the per-client
/// filter, shed by the gateway-wide one, forged links the filter verified).
async fn shed(gw: &Gateway) -> (u64, u64, u64) {
    let stats = gw.stats().await.unwrap();
    let counts = gw.decision_counts().await.unwrap();
    (
        counter(
            &stats,
            "console_client_handshakes.http_local_rate_limit.rate_limited",
        ),
        counter(
            &stats,
            "console_handshakes.http_local_rate_limit.rate_limited",
        ),
        counts.get("bad_signature").copied().unwrap_or(0),
    )
}

async fn start(edit: Option<(&'static str, &'static str)>) -> Arc<Gateway> {
    raise_fd_limit(8192);
    let opts = GatewayOpts {
        concurrency: 2,
        ..GatewayOpts::default()
    };
    let gw = Gateway::start_with_yaml_edit(opts, |y| match edit {
        Some(pair) => replace_exact(&y, &[pair]),
        None => Ok(y),
    })
    .await
    .unwrap();
    Arc::new(gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flooding_client_leaves_every_other_user_admitted() {
    bounded(150, async {
        let gw = start(None).await;
        let mut baseline = users(gw.clone(), 10).await;
        let baseline_line = baseline.line("no flood (10 s)");
        assert!(baseline.refused.is_empty(), "{:?}", baseline.refused);

        const SECS: u64 = 30;
        let flooder = vec![user_address(FLOOD_GROUP, 1)];
        let t0 = Instant::now();
        let (mut during, answers) =
            tokio::join!(users(gw.clone(), SECS), flood(gw.clone(), flooder, SECS));
        let took = t0.elapsed().as_secs() + 1;
        let (client_shed, gateway_shed, verified) = shed(&gw).await;
        println!("{baseline_line}");
        println!("{}", during.line("one address flooding at 400/s (30 s)"));
        println!(
            "flood answers by status {answers:?}; shed by the per-client limit: {client_shed}, \
             by the gateway-wide one: {gateway_shed}; forged links verified (HMAC): {verified}"
        );
        assert!(during.refused.is_empty(), "{:?}", during.refused);
        assert_eq!(during.admitted, USERS * SECS as usize);
        // Shed before any HMAC: every 429 is the per-client filter's, and only
        // what the flooder's own bucket let through reached the filter.
        let sent: u64 = answers.values().sum();
        assert_eq!(answers.get(&429).copied().unwrap_or(0), client_shed);
        assert_eq!(gateway_shed, 0);
        assert_eq!(answers.get(&403).copied().unwrap_or(0), verified);
        assert_eq!(client_shed + verified, sent, "{answers:?}");
        assert!(
            verified <= CLIENT_BURST + CLIENT_PER_SEC * took,
            "{verified} forged links reached the filter"
        );
        assert!(client_shed >= sent * 9 / 10, "{answers:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_over_more_addresses_than_envoy_keeps_reaches_the_gateway_bucket() {
    bounded(120, async {
        // Envoy's default cache (20 buckets) instead of the shipped 16384,
        // so that 60 flooding addresses outnumber it.
        let gw = start(Some((
            "max_dynamic_descriptors: 16384",
            "max_dynamic_descriptors: 20",
        )))
        .await;
        const SECS: u64 = 15;
        let flooders = (0..60).map(|i| user_address(FLOOD_GROUP, i)).collect();
        let (mut during, answers) =
            tokio::join!(users(gw.clone(), SECS), flood(gw.clone(), flooders, SECS));
        let (client_shed, gateway_shed, verified) = shed(&gw).await;
        println!(
            "{}",
            during.line("60 addresses flooding at 400/s in all, bucket cache 20 (15 s)")
        );
        println!(
            "flood answers by status {answers:?}; shed by the per-client limit: {client_shed}, \
             by the gateway-wide one: {gateway_shed}; forged links verified (HMAC): {verified}"
        );
        // Each flooding address is forgotten before it comes round again, so
        // it always starts with a full bucket: the per-client limit sheds
        // (almost) nothing and the flood costs an HMAC a request. The
        // gateway-wide 1000/s is above the flood, so the users still get in.
        assert!(during.refused.is_empty(), "{:?}", during.refused);
        assert_eq!(during.admitted, USERS * SECS as usize);
        let sent: u64 = answers.values().sum();
        assert!(verified >= sent * 9 / 10, "{answers:?}");
        assert_eq!(gateway_shed, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_flood_from_one_address_is_measured() {
    bounded(120, async {
        let gw = start(None).await;
        let mut baseline = users(gw.clone(), 8).await;
        let baseline_line = baseline.line("no flood (8 s)");
        assert!(baseline.refused.is_empty(), "{:?}", baseline.refused);

        // One address, 16 connections at a time, each a full TLS handshake
        // and then closed: no HTTP request, so no HTTP limit applies.
        const SECS: u64 = 15;
        let source = user_address(FLOOD_GROUP, 1);
        let deadline = Instant::now() + Duration::from_secs(SECS);
        let config = Arc::new(
            mksgate_host_tests::tls::client_config(
                &mksgate_host_tests::tls::Trust::Roots(vec![gw.ca.cert_der()]),
                true,
            )
            .unwrap(),
        );
        let flooders: Vec<_> = (0..16)
            .map(|_| {
                let (addr, config) = (gw.addr, config.clone());
                tokio::spawn(async move {
                    let mut done = 0u64;
                    let name = rustls::pki_types::ServerName::try_from(common::GATEWAY_NAME)
                        .unwrap()
                        .to_owned();
                    while Instant::now() < deadline {
                        let Ok(tcp) = tcp_connect(addr, Some(source)).await else {
                            continue;
                        };
                        let tls = tokio_rustls::TlsConnector::from(config.clone());
                        if tls.connect(name.clone(), tcp).await.is_ok() {
                            done += 1;
                        }
                    }
                    done
                })
            })
            .collect();
        let mut during = users(gw.clone(), SECS).await;
        let mut handshakes = 0;
        for f in flooders {
            handshakes += f.await.unwrap();
        }
        println!("{baseline_line}");
        println!(
            "{}",
            during.line(&format!(
                "one address opening TLS connections, 16 at a time: {handshakes} handshakes in \
                 {SECS} s ({}/s)",
                handshakes / SECS
            ))
        );
        assert!(during.refused.is_empty(), "{:?}", during.refused);
        assert_eq!(during.admitted, USERS * SECS as usize);
        assert!(handshakes > 0);
    })
    .await;
}
