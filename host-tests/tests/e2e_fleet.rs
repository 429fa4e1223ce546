//! One-time links across a fleet: two Envoys with the shipped
//! `envoy/fleet.yaml` and module, one real 3-member etcd cluster (TLS,
//! client certificates required), all on loopback. Exactly once holds
//! across gateways, through a leader failover, a loss of quorum and gateway
//! restarts; records leave etcd on their own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_host_tests::bounded;
use mksgate_host_tests::clients::MANY_USERS;
use mksgate_host_tests::fleet::{etcd_ips, Fleet};
use mksgate_host_tests::gateway::upgrade_head;
use mksgate_host_tests::tls::Trust;
use mksgate_host_tests::wire::{WireReply, WireTarget};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One fleet at a time: each is three etcd members and up to two Envoys,
/// and the timings measured here should be theirs, not their neighbours'.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fires each of `paths` `times` times at every gateway at once; the
/// answers per link.
async fn fire_all(fleet: &Arc<Fleet>, paths: &[String], times: usize) -> Vec<Vec<WireReply>> {
    let mut tasks = Vec::new();
    for path in paths {
        let (fleet, path) = (fleet.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let shots = (0..times).flat_map(|_| 0..fleet.gateways.len());
            let replies = futures_util::future::join_all(shots.map(|g| fleet.fire(g, &path)));
            replies.await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn tally(replies: &[Vec<WireReply>]) -> BTreeMap<String, u64> {
    let mut t = BTreeMap::new();
    for r in replies.iter().flatten() {
        let key = match (&r.decision, r.status) {
            (Some(d), _) => d.clone(),
            (None, 101) => "admitted".into(),
            (None, s) => format!("status {s}"),
        };
        *t.entry(key).or_insert(0) += 1;
    }
    t
}

fn upgraded(replies: &[WireReply]) -> usize {
    replies.iter().filter(|r| r.status == 101).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_is_admitted_once_across_the_fleet() {
    bounded(240, async {
        let _serial = SERIAL.lock().await;
        let fleet = Arc::new(Fleet::start(2, 1).await.unwrap());
        const LINKS: usize = 200;
        const TIMES: usize = 3;
        let t0 = Instant::now();
        let mut all = Vec::new();
        for batch in 0..LINKS / 20 {
            let paths: Vec<String> = (0..20)
                .map(|i| fleet.valid_path(batch * 20 + i, 60).unwrap())
                .collect();
            all.extend(fire_all(&fleet, &paths, TIMES).await);
        }
        let took = t0.elapsed();
        let t = tally(&all);
        println!(
            "{LINKS} links x {TIMES} x 2 gateways at once, in {took:.1?}: {t:?}; etcd keys: {}",
            fleet.etcd.count("/mksgate/links/").unwrap()
        );
        for g in 0..2 {
            let log = fleet.gateways[g].log();
            let mut details: BTreeMap<&str, usize> = BTreeMap::new();
            for line in log
                .lines()
                .filter(|l| l.contains(r#""mksgate":"replay_store""#))
            {
                let d = line.split(r#""detail":"#).nth(1).unwrap_or(line);
                *details.entry(d).or_default() += 1;
            }
            println!("gateway {g} store failures: {details:?}");
        }
        for (i, replies) in all.iter().enumerate() {
            assert_eq!(upgraded(replies), 1, "link {i}: {replies:?}");
            for r in replies.iter().filter(|r| r.status != 101) {
                assert_eq!(
                    r.decision.as_deref(),
                    Some("replayed"),
                    "link {i}: {replies:?}"
                );
            }
        }
        let decisions = fleet.fleet_counters("decision").await.unwrap();
        let store = fleet.fleet_counters("replay_store").await.unwrap();
        let others = (LINKS * (TIMES * 2 - 1)) as u64;
        assert_eq!(decisions["admitted"], LINKS as u64);
        assert_eq!(decisions["replayed"], others);
        assert_eq!(store["recorded"], LINKS as u64);
        assert_eq!(store["replayed"], others);
        assert_eq!(store["timeout"] + store["error"], 0, "{store:?}");
        // Both gateways admitted some.
        for g in 0..2 {
            assert!(fleet.counters(g, "decision").await.unwrap()["admitted"] > 0);
        }
        assert_eq!(fleet.etcd.count("/mksgate/links/").unwrap(), LINKS as u64);
        // The latency histogram is on /stats.
        // The latency histogram is on /stats once Envoy has flushed its
        // histograms (every 5 s by default).
        let mut hist = String::new();
        for _ in 0..40 {
            hist = fleet.gateways[0]
                .admin_get("/stats?filter=replay_store.latency_ms")
                .await
                .unwrap()
                .body_text();
            if hist.contains("P50") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("{}", hist.trim());
        assert!(hist.contains("P50"), "{hist}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_failover_never_admits_a_link_twice() {
    bounded(240, async {
        let _serial = SERIAL.lock().await;
        let fleet = Arc::new(Fleet::start(2, 1).await.unwrap());
        const ROUNDS: usize = 40;
        let mut all: Vec<(Duration, Vec<WireReply>)> = Vec::new();
        let t0 = Instant::now();
        let mut killed = None;
        for round in 0..ROUNDS {
            if round == 10 {
                // Kill the leader while links are being used.
                let leader = fleet.etcd.leader().unwrap();
                fleet.etcd.kill(leader);
                killed = Some((leader, t0.elapsed()));
            }
            let paths: Vec<String> = (0..5)
                .map(|i| fleet.valid_path(round * 5 + i, 60).unwrap())
                .collect();
            let at = t0.elapsed();
            for replies in fire_all(&fleet, &paths, 2).await {
                all.push((at, replies));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (leader, killed_at) = killed.unwrap();
        let timeline: Vec<String> = all
            .chunks(5)
            .map(|round| {
                let bad = round
                    .iter()
                    .flat_map(|(_, r)| r)
                    .filter(|x| x.decision.as_deref() == Some("replay_unavailable"))
                    .count();
                format!("{:.1}s:{bad}", round[0].0.as_secs_f64())
            })
            .collect();
        println!("replay_unavailable per round of 20 shots: {timeline:?}");
        println!(
            "store outcomes: {:?}",
            fleet.fleet_counters("replay_store").await.unwrap()
        );
        let mut details = BTreeMap::new();
        for g in &fleet.gateways {
            for line in g
                .log()
                .lines()
                .filter(|l| l.contains(r#""mksgate":"replay_store""#))
            {
                let detail = line
                    .split(r#""detail":"#)
                    .nth(1)
                    .unwrap_or(line)
                    .to_string();
                *details.entry(detail).or_insert(0) += 1;
            }
        }
        println!("replay store failures logged: {details:?}");
        let replies: Vec<Vec<WireReply>> = all.iter().map(|(_, r)| r.clone()).collect();
        let unavailable: Vec<Duration> = all
            .iter()
            .filter(|(_, r)| {
                r.iter()
                    .any(|x| x.decision.as_deref() == Some("replay_unavailable"))
            })
            .map(|(at, _)| *at)
            .collect();
        let window = match (unavailable.first(), unavailable.last()) {
            (Some(a), Some(b)) => format!("from {a:.1?} to {b:.1?}"),
            _ => "never".into(),
        };
        println!(
            "leader m{leader} killed at {killed_at:.1?}; answers {:?}; replay_unavailable {window}; new leader m{}",
            tally(&replies),
            fleet.etcd.leader().unwrap()
        );
        for (i, r) in replies.iter().enumerate() {
            assert!(upgraded(r) <= 1, "link {i} admitted twice: {r:?}");
            for x in r.iter().filter(|x| x.status != 101) {
                let d = x.decision.as_deref();
                assert!(
                    d == Some("replayed") || d == Some("replay_unavailable"),
                    "link {i}: {r:?}"
                );
            }
        }
        // Only around the election: none before the kill, and the last
        // rounds (seconds after it) admit every link.
        assert!(unavailable.iter().all(|at| *at >= killed_at), "{window}");
        let last = unavailable.last().copied().unwrap_or(killed_at);
        assert!(
            last < killed_at + Duration::from_secs(6),
            "replay_unavailable {window}, the leader was killed at {killed_at:.1?}"
        );
        for (_, r) in all.iter().rev().take(10) {
            assert_eq!(upgraded(r), 1, "after the election: {r:?}");
        }
        let decisions = fleet.fleet_counters("decision").await.unwrap();
        let admitted = replies.iter().map(|r| upgraded(r) as u64).sum::<u64>();
        assert_eq!(decisions["admitted"], admitted);
    })
    .await;
}

/// A member that cannot be reached (killed, and not yet marked down by
/// Envoy's health check) costs no link: a call whose connection could not
/// be made never reached etcd, so the filter sends it again, to the next
/// member, within the same budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_cannot_be_reached_costs_no_link() {
    bounded(120, async {
        let _serial = SERIAL.lock().await;
        let fleet = Arc::new(Fleet::start(2, 1).await.unwrap());
        let leader = fleet.etcd.leader().unwrap();
        let follower = (leader + 1) % 3;
        fleet.etcd.kill(follower);
        let t0 = Instant::now();
        let mut statuses = BTreeMap::new();
        for i in 0..40 {
            let path = fleet.valid_path(i, 60).unwrap();
            let r = fleet.fire(i % 2, &path).await;
            *statuses
                .entry(r.decision.clone().unwrap_or_else(|| r.status.to_string()))
                .or_insert(0) += 1;
        }
        let store = fleet.fleet_counters("replay_store").await.unwrap();
        println!(
            "follower m{follower} killed: 40 links in {:.2?}: {statuses:?}; store {store:?}",
            t0.elapsed()
        );
        assert_eq!(statuses.get("101"), Some(&40), "{statuses:?}");
        assert!(
            store["resent"] >= 1,
            "no call met the dead member: {store:?}"
        );
        assert_eq!(store["recorded"], 40);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_every_link_is_refused_in_time_and_service_returns() {
    bounded(180, async {
        let _serial = SERIAL.lock().await;
        let fleet = Arc::new(Fleet::start(2, 1).await.unwrap());
        fleet.etcd.kill(0);
        fleet.etcd.kill(1);
        let mut slowest = Duration::ZERO;
        for i in 0..10 {
            let path = fleet.valid_path(i, 60).unwrap();
            let t0 = Instant::now();
            let r = fleet.fire(i % 2, &path).await;
            slowest = slowest.max(t0.elapsed());
            assert_eq!(r.status, 503, "{r:?}");
            assert_eq!(r.decision.as_deref(), Some("replay_unavailable"));
        }
        println!("2 of 3 members down: 10 of 10 links replay_unavailable, slowest {slowest:.2?}");
        // The budget is 1.5 s; TLS and the request add a little.
        assert!(slowest < Duration::from_millis(2500), "{slowest:?}");
        let decisions = fleet.fleet_counters("decision").await.unwrap();
        assert_eq!(decisions["admitted"], 0);
        let store = fleet.fleet_counters("replay_store").await.unwrap();
        assert_eq!(store["timeout"] + store["error"], 10, "{store:?}");
        // Back: the members restart, and the same Envoys admit again.
        fleet.etcd.restart(0).unwrap();
        fleet.etcd.restart(1).unwrap();
        let etcd = &fleet.etcd;
        tokio::task::block_in_place(|| etcd.wait_ready(Duration::from_secs(30))).unwrap();
        let t0 = Instant::now();
        let mut admitted = None;
        for i in 0..100 {
            let path = fleet.valid_path(100 + i, 60).unwrap();
            if fleet.fire(i % 2, &path).await.status == 101 {
                admitted = Some(t0.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let after = admitted.expect("no admission after quorum came back");
        println!("quorum back: first admission {after:.1?} after etcd was ready");
        for g in 0..2 {
            let path = fleet.valid_path(g, 60).unwrap();
            assert_eq!(fleet.fire(g, &path).await.status, 101, "gateway {g}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_gateways_still_refuse_links_used_before() {
    bounded(180, async {
        let _serial = SERIAL.lock().await;
        let mut fleet = Fleet::start(2, 1).await.unwrap();
        let paths: Vec<String> = (0..10).map(|i| fleet.valid_path(i, 60).unwrap()).collect();
        for (i, path) in paths.iter().enumerate() {
            assert_eq!(fleet.fire(i % 2, path).await.status, 101);
        }
        fleet.restart_gateway(0).await.unwrap();
        fleet.restart_gateway(1).await.unwrap();
        for (i, path) in paths.iter().enumerate() {
            for g in 0..2 {
                let r = fleet.fire(g, path).await;
                assert_eq!(r.decision.as_deref(), Some("replayed"), "link {i} at {g}");
            }
        }
        let fresh = fleet.valid_path(99, 60).unwrap();
        assert_eq!(fleet.fire(0, &fresh).await.status, 101);

        // Records are per key and tenant in etcd too: two tenants' links
        // with the same jti are two links, each used once fleet-wide.
        let jti = format!("shared-{}", mksgate_host_tests::link::fresh_jti());
        for tenant in ["tenant-a", "tenant-b"] {
            let path = fleet
                .path_with(0, 60, &serde_json::json!({"tenant": tenant, "jti": jti}))
                .unwrap();
            assert_eq!(fleet.fire(0, &path).await.status, 101, "{tenant}");
            let again = fleet.fire(1, &path).await;
            assert_eq!(again.decision.as_deref(), Some("replayed"), "{tenant}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_leave_etcd_when_their_lease_ends() {
    bounded(120, async {
        let _serial = SERIAL.lock().await;
        // Links of at most 4 s and a 1 s skew: records may go after 5 s
        // and must be gone a window (4 s) and the skew later.
        let fleet = Fleet::start_with(
            1,
            1,
            &[(
                r#""max_ttl_seconds": 300,"#,
                r#""max_ttl_seconds": 4, "clock_skew_seconds": 1,"#,
            )],
        )
        .await
        .unwrap();
        let t0 = Instant::now();
        for i in 0..20 {
            let path = fleet.valid_path(i, 3).unwrap();
            assert_eq!(fleet.fire(0, &path).await.status, 101);
        }
        let keys = fleet.etcd.count("/mksgate/links/").unwrap();
        let leases = fleet.etcd.leases().unwrap();
        assert_eq!(keys, 20);
        assert!(!leases.is_empty() && leases.len() <= 3, "{leases:?}");
        let mut gone = None;
        while t0.elapsed() < Duration::from_secs(40) {
            let etcd = &fleet.etcd;
            let (k, l) = tokio::task::block_in_place(|| {
                let k = etcd.count("/mksgate/links/");
                let l = etcd.leases();
                match (k, l) {
                    (Ok(k), Ok(l)) => (k, l),
                    (k, l) => panic!("reading etcd: {k:?} {l:?}\n{}", etcd.log_tails()),
                }
            });
            if k == 0 && l.is_empty() {
                gone = Some(t0.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let gone = gone.expect("records still in etcd after 40 s");
        println!(
            "20 links of 3 s on {} lease(s): all records and leases gone from etcd {gone:.1?} after the first use",
            leases.len()
        );
        assert!(gone >= Duration::from_secs(4), "gone too early: {gone:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_while_etcd_is_asked_reaches_no_upstream() {
    bounded(120, async {
        let _serial = SERIAL.lock().await;
        let fleet = Arc::new(Fleet::start(1, 1).await.unwrap());
        fleet.etcd.freeze(true);
        // 20 clients give up (drop the connection) after 300 ms, while the
        // filter waits for the frozen etcd.
        const GONE: u64 = 20;
        let mut tasks = Vec::new();
        for i in 0..GONE as usize {
            let fleet = fleet.clone();
            tasks.push(tokio::spawn(async move {
                let path = fleet.valid_path(i, 60).unwrap();
                let mut wire = fleet.wire(0).unwrap().from(MANY_USERS.next());
                wire.timeout = Duration::from_millis(300);
                wire.send(&upgrade_head(path.as_bytes(), &[]))
                    .await
                    .is_err()
            }));
        }
        for task in tasks {
            assert!(
                task.await.unwrap(),
                "a client got an answer from a frozen etcd"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        fleet.etcd.freeze(false);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let upstream = fleet.upstream_requests();
        assert_eq!(upstream, 0, "a request reached ESXi");
        let decisions = fleet.fleet_counters("decision").await.unwrap();
        let store = fleet.fleet_counters("replay_store").await.unwrap();
        println!("clients gone while etcd was asked: decisions {decisions:?}, store {store:?}");
        assert_eq!(decisions["admitted"], 0);
        // Each abandoned call is counted (and nothing else is: Envoy
        // cancelled the calls, so no outcome came back).
        assert_eq!(store["abandoned"], GONE, "{store:?}");
        assert_eq!(store["recorded"] + store["timeout"] + store["error"], 0);
        let abandoned = r#""outcome":"abandoned""#;
        let log = fleet.gateways[0]
            .wait_log(Duration::from_secs(10), |l| {
                l.matches(abandoned).count() as u64 >= GONE
            })
            .await;
        let lines = log.matches(abandoned).count();
        assert_eq!(lines as u64, GONE, "one log line per abandoned call");
        // The VM is fine and the next link gets in.
        let stats = fleet.gateways[0].stats().await.unwrap();
        assert_eq!(
            stats
                .get("wasm.mksgate.vm_reload_success")
                .copied()
                .unwrap_or(0),
            0
        );
        let next = fleet.valid_path(99, 60).unwrap();
        assert_eq!(fleet.fire(0, &next).await.status, 101);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_refuses_a_client_without_a_certificate() {
    bounded(60, async {
        let _serial = SERIAL.lock().await;
        let fleet = Fleet::start(1, 1).await.unwrap();
        let tls = fleet.etcd.tls.as_ref().unwrap();
        let member = fleet.etcd.client_addrs()[0];
        let wire = WireTarget::tls(
            member,
            &Trust::Roots(vec![tls.ca.cert_der()]),
            &etcd_ips()[0].to_string(),
        )
        .unwrap();
        let reply = wire
            .send(b"GET /health HTTP/1.1\r\nHost: etcd\r\n\r\n")
            .await;
        println!("without a client certificate: {reply:?}");
        assert!(
            reply.as_ref().map_or(true, |r| r.status != 200),
            "etcd answered a client without a certificate: {reply:?}"
        );
        // Envoy, with the shipped cluster's client certificate, gets through.
        let path = fleet.valid_path(0, 60).unwrap();
        assert_eq!(fleet.fire(0, &path).await.status, 101);
    })
    .await;
}

/// An etcd whose certificate comes from the right CA but names another
/// server (any holder of a certificate from that CA): the shipped cluster
/// refuses the handshake, so links are `replay_unavailable`, never admitted
/// on its word. The same members named rightly admit (every other test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_certificate_with_another_name_is_refused() {
    bounded(90, async {
        let _serial = SERIAL.lock().await;
        let fleet = Fleet::start_with_etcd_named("impostor.example.com")
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
        assert_eq!(upstream, 0, "a request reached ESXi");
        let stats = fleet.gateways[0].stats().await.unwrap();
        let san_failures = stats
            .get("cluster.mksgate_etcd.ssl.fail_verify_san")
            .copied()
            .unwrap_or(0);
        println!("impostor etcd: ssl.fail_verify_san = {san_failures}");
        assert!(san_failures > 0, "Envoy did not check the name");
    })
    .await;
}
