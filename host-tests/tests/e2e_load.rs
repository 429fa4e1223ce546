//! Load through the shipped config in real Envoy (2 workers): 500 console
//! sessions open at the same time, each with its own link and ticket, every
//! byte checked both ways; and one link fired 50 times at once, which must
//! be admitted exactly once (the one-time table is shared by the workers).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mksgate_host_tests::vm_health::worker_connections;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, raise_fd_limit, Gateway, GatewayOpts, A, B};
use mksgate_host_tests::client::{verify_session_with, Outcome};
use mksgate_host_tests::clients;
use mksgate_host_tests::envoy::replace_exact;
use mksgate_host_tests::percentile;
use serde_json::json;
use std::collections::BTreeMap;
use tokio::sync::Barrier;

const SESSIONS: usize = 500;
/// Frames each session sends and gets echoed (sizes 1 to 4096 bytes,
/// binary and text; see `client::FRAME_SIZES`).
const FRAMES: u64 = 6;
/// Every `BIG_EVERY`-th session sends the whole size cycle instead (up to
/// 100,000-byte frames, across the 64 KiB boundaries).
const BIG_EVERY: usize = 50;
const BIG_FRAMES: u64 = 11;

fn frames_for(i: usize) -> u64 {
    if i % BIG_EVERY == 0 {
        BIG_FRAMES
    } else {
        FRAMES
    }
}
/// Open sessions in waves, from many users (each its own address, under the
/// per-client limit) and under the gateway-wide 1,000/s, as a browser fleet
/// would.
const WAVE: usize = 90;
const WAVE_EVERY: Duration = Duration::from_secs(1);

/// Per-worker downstream connection counters of the console listener.
async fn per_worker_connections(gw: &Gateway) -> Vec<(String, u64)> {
    worker_connections(&gw.envoy)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_sessions_bytes_intact() {
    bounded(150, async {
        let fds = raise_fd_limit(8192);
        assert!(fds >= 4 * SESSIONS as u64, "open-file limit {fds} too low");
        let gw = Arc::new(
            Gateway::start_with(GatewayOpts {
                concurrency: 2,
                push: Some((Duration::from_millis(500), 48)),
                ..GatewayOpts::default()
            })
            .await
            .unwrap(),
        );
        let links: Vec<_> = (0..SESSIONS)
            .map(|i| gw.new_link(if i % 2 == 0 { A } else { B }, serde_json::json!({})))
            .collect();

        let all_open = Arc::new(Barrier::new(SESSIONS + 1));
        let all_checked = Arc::new(Barrier::new(SESSIONS + 1));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for (i, link) in links.into_iter().enumerate() {
            let gw = gw.clone();
            let (all_open, all_checked) = (all_open.clone(), all_checked.clone());
            let start_at = t0 + WAVE_EVERY * (i / WAVE) as u32;
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(start_at.into()).await;
                let begun = Instant::now();
                let outcome = gw.connect_as_user(&link.path).await;
                let handshake = begun.elapsed();
                // Every task reaches both barriers, whatever happened.
                all_open.wait().await;
                let result = match outcome {
                    Ok(Outcome::Upgraded(mut s)) => {
                        match verify_session_with(&mut s, frames_for(i), 2, Duration::from_secs(30))
                            .await
                        {
                            Ok(rep) => Ok((handshake, rep, s)),
                            Err(e) => Err(format!("session {i}: {e:#}")),
                        }
                    }
                    Ok(Outcome::Refused(r)) => Err(format!(
                        "session {i}: refused {} {:?}",
                        r.status,
                        r.body_text()
                    )),
                    Err(e) => Err(format!("session {i}: {e:#}")),
                };
                // Sessions stay open until every one has been checked.
                all_checked.wait().await;
                result.map(|(h, rep, s)| (h, rep, s.pushes_seen, s))
            }));
        }

        all_open.wait().await;
        let opened = t0.elapsed();
        let live_at_open = gw.a().active_sessions() + gw.b().active_sessions();
        let t1 = Instant::now();
        all_checked.wait().await;
        let checking = t1.elapsed();
        let live_after_check = gw.a().active_sessions() + gw.b().active_sessions();

        let mut errors = Vec::new();
        let mut handshakes = Vec::new();
        let (mut echoed, mut bytes, mut pushes) = (0u64, 0u64, 0u64);
        let mut sessions = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok((h, rep, p, s)) => {
                    handshakes.push(h);
                    echoed += rep.echoed;
                    bytes += rep.bytes_sent;
                    pushes += p;
                    sessions.push(s);
                }
                Err(e) => errors.push(e),
            }
        }
        assert!(
            errors.is_empty(),
            "{} of {SESSIONS} sessions failed; first: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        assert_eq!(
            live_at_open, SESSIONS,
            "sessions open at once on the stand-ins"
        );
        assert_eq!(
            live_after_check, SESSIONS,
            "all still open after the checks"
        );
        let want_echoed: u64 = (0..SESSIONS).map(frames_for).sum();
        assert_eq!(echoed, want_echoed);
        drop(sessions);

        // Each stand-in got its half, each ticket once, each with a 101.
        for s in &gw.esxi {
            let reqs = s.requests();
            assert_eq!(reqs.len(), SESSIONS / 2, "{}", s.name());
            assert!(reqs
                .iter()
                .all(|r| r.status == Some(101) && r.ticket_accepted));
            assert!(reqs.iter().all(|r| r.frames_echoed >= FRAMES));
        }
        let upstream_echoed: u64 = gw
            .esxi
            .iter()
            .flat_map(|s| s.requests())
            .map(|r| r.frames_echoed)
            .sum();
        assert_eq!(upstream_echoed, want_echoed);
        let counts = gw.decision_counts().await.unwrap();
        assert_eq!(counts["admitted"], SESSIONS as u64, "{counts:?}");
        assert_eq!(counts.values().sum::<u64>(), SESSIONS as u64, "{counts:?}");
        let stats = gw.stats().await.unwrap();
        assert_eq!(
            stats
                .get("console_handshakes.http_local_rate_limit.rate_limited")
                .copied()
                .unwrap_or(0),
            0
        );
        let workers = per_worker_connections(&gw).await;
        assert_eq!(workers.len(), 2, "{workers:?}");
        assert!(workers.iter().all(|(_, n)| *n > 0), "{workers:?}");

        handshakes.sort();
        println!(
            "{SESSIONS} sessions (Envoy --concurrency 2): all open after {opened:.2?} \
             (waves of {WAVE}/{WAVE_EVERY:?}); handshake p50 {:.1?} p99 {:.1?} max {:.1?}; \
             {echoed} frames / {bytes} bytes echoed intact and {pushes} push frames checked \
             in {checking:.2?}; per worker: {workers:?}",
            percentile(&handshakes, 0.5),
            percentile(&handshakes, 0.99),
            handshakes.last().copied().unwrap_or_default(),
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_link_fired_fifty_times_at_once_is_admitted_once() {
    bounded(90, async {
        raise_fd_limit(4096);
        // With the decision lines on (`log_decisions: true`, off in the
        // shipped layouts), which say which worker's VM decided.
        let gw = Arc::new(
            Gateway::start_with_yaml_edit(
                GatewayOpts {
                    concurrency: 2,
                    ..GatewayOpts::default()
                },
                |y| {
                    replace_exact(
                        &y,
                        &[(
                            r#""log_decisions": false,"#.to_string(),
                            r#""log_decisions": true,"#.to_string(),
                        )],
                    )
                },
            )
            .await
            .unwrap(),
        );
        const ROUNDS: usize = 3;
        const FIRES: usize = 50;
        for round in 0..ROUNDS {
            let host = if round % 2 == 0 { A } else { B };
            let link = gw.new_link(host, serde_json::json!({}));
            let barrier = Arc::new(Barrier::new(FIRES));
            let t0 = Instant::now();
            let tasks: Vec<_> = (0..FIRES)
                .map(|_| {
                    let (gw, barrier, path) = (gw.clone(), barrier.clone(), link.path.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        gw.connect_as_user(&path).await
                    })
                })
                .collect();
            let mut admitted = Vec::new();
            let mut replayed = 0;
            let mut other = Vec::new();
            for t in tasks {
                match t.await.unwrap().unwrap() {
                    Outcome::Upgraded(s) => admitted.push(s),
                    Outcome::Refused(r)
                        if r.status == 403
                            && r.body_text() == "replayed\n"
                            && r.header("x-mksgate-decision") == Some("replayed") =>
                    {
                        replayed += 1
                    }
                    Outcome::Refused(r) => other.push((r.status, r.body_text())),
                }
            }
            let took = t0.elapsed();
            assert!(other.is_empty(), "round {round}: unexpected answers {other:?}");
            assert_eq!(admitted.len(), 1, "round {round}: exactly one 101");
            assert_eq!(replayed, FIRES - 1, "round {round}");
            let reqs = gw.requests_for(host, &link.ticket);
            assert_eq!(reqs.len(), 1, "round {round}: one upstream request");
            assert_eq!(reqs[0].status, Some(101));
            println!("round {round}: {FIRES} simultaneous uses of one link -> 1 x 101, {replayed} x replayed in {took:.1?}");
        }
        let counts = gw.decision_counts().await.unwrap();
        assert_eq!(counts["admitted"], ROUNDS as u64);
        assert_eq!(counts["replayed"], (ROUNDS * (FIRES - 1)) as u64);
        // Both workers took connections, so both VMs decided, through the
        // one shared replay table.
        let workers = per_worker_connections(&gw).await;
        println!("connections per worker: {workers:?}");
        assert_eq!(workers.len(), 2, "{workers:?}");
        assert!(workers.iter().all(|(_, n)| *n > 0), "{workers:?}");
        // Each VM logged decisions: the log lines come from two threads.
        let log = gw.envoy_log();
        let mut threads: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(r#"{"mksgate":"decision""#))
            .filter_map(|l| l.split("][").nth(1))
            .collect();
        threads.sort();
        threads.dedup();
        assert!(threads.len() >= 2, "decisions from threads {threads:?}");
    })
    .await;
}

/// Fires `flood` handshakes with no link at once, from one client address
/// (`many_users: false`) or each from its own; returns (reached the filter,
/// got 429, seconds taken).
async fn flood(gw: &Arc<Gateway>, flood: usize, many_users: bool) -> (u64, u64, u64) {
    let barrier = Arc::new(Barrier::new(flood));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..flood)
        .map(|_| {
            let (gw, barrier) = (gw.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let outcome = if many_users {
                    gw.connect_as_user("/console").await
                } else {
                    gw.connect("/console", &[]).await
                };
                let r = outcome.unwrap().refusal().unwrap();
                (r.status, r.header("x-mksgate-decision").map(str::to_string))
            })
        })
        .collect();
    let (mut limited, mut decided) = (0u64, 0u64);
    for t in tasks {
        match t.await.unwrap() {
            (429, None) => limited += 1,
            (401, Some(code)) if code == "missing_token" => decided += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let took = t0.elapsed();
    println!(
        "{flood} handshakes ({}) in {took:.2?}: {decided} reached the filter, {limited} rate-limited (429)",
        if many_users { "many users" } else { "one client" }
    );
    // Rate-limited requests got no decision: the filter never saw them.
    let counts = gw.decision_counts().await.unwrap();
    assert_eq!(counts["missing_token"], decided);
    assert_eq!(counts.values().sum::<u64>(), decided);
    assert_eq!(gw.upstream_activity(), (0, 0));
    (decided, limited, took.as_secs() + 1)
}

fn rate_limited(stats: &BTreeMap<String, u64>, prefix: &str) -> u64 {
    let name = format!("{prefix}.http_local_rate_limit.rate_limited");
    stats.get(&name).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_handshake_flood_is_shed_at_its_own_bucket() {
    bounded(90, async {
        raise_fd_limit(4096);
        let gw = Arc::new(Gateway::start().await.unwrap());
        // The shipped per-client bucket: 40 tokens, 20 more per second.
        let (decided, limited, secs) = flood(&gw, 500, false).await;
        let allowed = 40 + 20 * secs;
        assert!(decided <= allowed, "{decided} > {allowed}");
        assert!(limited >= 500 - allowed, "only {limited} rate-limited");
        let stats = gw.stats().await.unwrap();
        assert_eq!(rate_limited(&stats, "console_client_handshakes"), limited);
        assert_eq!(rate_limited(&stats, "console_handshakes"), 0);
        // Another client is not affected.
        let link = gw.link(json!({}));
        let other = gw.opts().source(clients::user_address(9, 1));
        let outcome = gw.connect_with(&link, &other).await.unwrap();
        assert!(outcome.session().is_ok(), "another client's console");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_floods_are_shed_at_the_gateway_bucket() {
    bounded(90, async {
        raise_fd_limit(4096);
        // The gateway-wide bucket lowered from 1000 to 100 (a test-sized
        // number), so 500 distinct clients, each within its own bucket,
        // overflow it.
        let gw = Gateway::start_with_yaml_edit(GatewayOpts::default(), |y| {
            replace_exact(
                &y,
                &[(
                    "token_bucket: { max_tokens: 1000, tokens_per_fill: 1000, fill_interval: 1s }",
                    "token_bucket: { max_tokens: 100, tokens_per_fill: 100, fill_interval: 1s }",
                )],
            )
        })
        .await
        .unwrap();
        let gw = Arc::new(gw);
        let (decided, limited, secs) = flood(&gw, 500, true).await;
        let allowed = 100 + 100 * secs;
        assert!(decided <= allowed, "{decided} > {allowed}");
        assert!(
            limited >= 500u64.saturating_sub(allowed),
            "only {limited} rate-limited"
        );
        assert!(limited > 0 || secs > 3, "nothing rate-limited");
        let stats = gw.stats().await.unwrap();
        assert_eq!(rate_limited(&stats, "console_client_handshakes"), 0);
        assert_eq!(rate_limited(&stats, "console_handshakes"), limited);
    })
    .await;
}
