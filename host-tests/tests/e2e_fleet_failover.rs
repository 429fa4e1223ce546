//! The fleet's failover window against etcd's own election (issue 28): two
//! Envoys with the shipped `envoy/fleet.yaml` and module, a 3-member etcd
//! cluster (TLS, client certificates, access control), links fired at a
//! steady pace while the leader is killed, `MKSGATE_FAILOVER_KILLS` times
//! (2 in `make test`; `make failover` runs 5).
//!
//! Per kill: the election, measured from etcd itself (the time from the
//! kill until a live member's status names a new leader, polled every
//! 10 ms), and the window in which links were refused with
//! `replay_unavailable` (from the first refused link's send to the last
//! one's). Each link is fired at both gateways at once: never admitted
//! twice. Goal: the window no longer than the election + 0.5 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_host_tests::bounded;
use mksgate_host_tests::fleet::Fleet;
use mksgate_host_tests::wire::WireReply;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A link fired at both gateways: when it was sent and what each answered.
struct Shot {
    sent: Instant,
    replies: [WireReply; 2],
}

fn kills() -> usize {
    std::env::var("MKSGATE_FAILOVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// Fires a fresh link at both gateways every `every` until `until`.
async fn fire_until(fleet: Arc<Fleet>, first: usize, every: Duration, until: Instant) -> Vec<Shot> {
    let shots = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut i = first;
    while Instant::now() < until {
        let path = fleet.valid_path(i, 60).unwrap();
        let (fleet, shots) = (fleet.clone(), shots.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let (a, b) = tokio::join!(fleet.fire(0, &path), fleet.fire(1, &path));
            shots.lock().unwrap().push(Shot {
                sent,
                replies: [a, b],
            });
        }));
        i += 1;
        tokio::time::sleep(every).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut out = std::mem::take(&mut *shots.lock().unwrap());
    out.sort_by_key(|s| s.sent);
    out
}

fn unavailable(s: &Shot) -> bool {
    s.replies
        .iter()
        .any(|r| r.decision.as_deref() == Some("replay_unavailable"))
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_unavailable_lasts_no_longer_than_the_election() {
    let kills = kills();
    bounded(60 + 25 * kills as u64, async move {
        let fleet = Arc::new(Fleet::start(2, 1).await.unwrap());
        let mut windows = Vec::new();
        let mut elections = Vec::new();
        let mut first = 0;
        for k in 0..kills {
            let leader = fleet.etcd.leader().unwrap();
            let t0 = Instant::now();
            let firing = tokio::spawn(fire_until(
                fleet.clone(),
                first,
                Duration::from_millis(20),
                t0 + Duration::from_secs(5),
            ));
            first += 1000;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let killed = Instant::now();
            fleet.etcd.kill(leader);
            let etcd = fleet.clone();
            let elected = tokio::task::spawn_blocking(move || loop {
                if let Ok(new) = etcd.etcd.leader() {
                    return (Instant::now(), new);
                }
                assert!(killed.elapsed() < Duration::from_secs(15), "no new leader");
                std::thread::sleep(Duration::from_millis(10));
            })
            .await
            .unwrap();
            let election = elected.0 - killed;
            let shots = firing.await.unwrap();
            for (i, s) in shots.iter().enumerate() {
                let admitted = s.replies.iter().filter(|r| r.status == 101).count();
                assert!(admitted <= 1, "kill {k}, link {i} admitted twice");
                for r in s.replies.iter().filter(|r| r.status != 101) {
                    let d = r.decision.as_deref();
                    assert!(
                        d == Some("replayed") || d == Some("replay_unavailable"),
                        "kill {k}, link {i}: {:?}",
                        s.replies
                    );
                }
            }
            let refused: Vec<&Shot> = shots.iter().filter(|s| unavailable(s)).collect();
            let window = match (refused.first(), refused.last()) {
                (Some(a), Some(b)) => b.sent - a.sent,
                _ => Duration::ZERO,
            };
            let from_kill = refused
                .first()
                .map(|a| a.sent.saturating_duration_since(killed));
            println!(
                "kill {k}: leader m{leader} killed, m{} elected after {election:.3?}; {} of {} links refused replay_unavailable over {window:.3?} (first sent {:?} after the kill)",
                elected.1,
                refused.len(),
                shots.len(),
                from_kill
            );
            // Every link sent well after the election is admitted.
            for s in shots.iter().filter(|s| s.sent > elected.0 + Duration::from_secs(2)) {
                assert_eq!(
                    s.replies.iter().filter(|r| r.status == 101).count(),
                    1,
                    "kill {k}: a link sent 2 s after the election: {:?}",
                    s.replies
                );
            }
            windows.push(window.as_secs_f64());
            elections.push(election.as_secs_f64());
            let restart = fleet.clone();
            tokio::task::spawn_blocking(move || {
                restart.etcd.restart(leader).unwrap();
                restart.etcd.wait_ready(Duration::from_secs(20)).unwrap();
            })
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let over: Vec<f64> = windows
            .iter()
            .zip(&elections)
            .map(|(w, e)| w - e)
            .collect();
        println!(
            "{kills} leader kills: election p50 {:.3} s max {:.3} s; replay_unavailable window p50 {:.3} s max {:.3} s; window minus election max {:.3} s",
            percentile(&elections, 0.5),
            percentile(&elections, 1.0),
            percentile(&windows, 0.5),
            percentile(&windows, 1.0),
            percentile(&over, 1.0),
        );
        for (k, (w, e)) in windows.iter().zip(&elections).enumerate() {
            assert!(
                *w <= e + 0.5,
                "kill {k}: replay_unavailable for {w:.3} s, the election took {e:.3} s"
            );
        }
    })
    .await;
}
