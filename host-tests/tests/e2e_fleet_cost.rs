//! What the etcd store costs a handshake as deployed (issue 28): the
//! shipped `envoy/fleet.yaml` and module (one gateway, 2 workers), a
//! 3-member etcd cluster with TLS, client certificates, access control, and
//! each member's writes synced to its data directory on disk (etcd's
//! default). The same fleet file with `replay_store` taken out (the local
//! table) is the baseline, started the same way. At light load (one client,
//! paced) and at 16 clients: each handshake's latency (TLS connect to the
//! 101 or refusal), p50 and p99, and next to it etcd's own transaction in
//! the same run: the filter's create-unless-exists transaction with a lease,
//! sent by a plain client straight to the leader (plain HTTP on the test
//! listener: no TLS, no Envoy). Revocation is off in both runs (its cost is
//! system 5r's in `make bench`).
//!
//! `MKSGATE_FLEET_COST_N` handshakes per load (120 in `make test`;
//! `make bench-fleet` runs 1,000). The figures are printed as a table; the
//! test asserts only that every link was admitted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use mksgate_host_tests::bounded;
use mksgate_host_tests::fleet::{Fleet, WITHOUT_REVOCATION};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn n() -> usize {
    std::env::var("MKSGATE_FLEET_COST_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120)
}

/// p50 and p99 in milliseconds.
fn p50_p99(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99))
}

/// Handshake latencies (ms) of `n` fresh links through gateway 0, from
/// `clients` clients at once, each paced `pause` apart.
async fn handshakes(
    fleet: &Arc<Fleet>,
    n: usize,
    clients: usize,
    pause: Duration,
    base: usize,
) -> Vec<f64> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let fleet = fleet.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (c..n).step_by(clients) {
                let path = fleet.valid_path(base + i, 60).unwrap();
                let t = Instant::now();
                let r = fleet.fire(0, &path).await;
                out.push(t.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(r.status, 101, "link {i}: {r:?}");
                tokio::time::sleep(pause).await;
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// etcd's own latency (ms) for the filter's transaction shape, `n` times
/// from one plain client, straight to the leader.
fn etcd_txns(fleet: &Fleet, n: usize) -> Vec<f64> {
    let leader = fleet.etcd.leader().unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let lease = fleet
            .etcd
            .post(leader, "/v3/lease/grant", r#"{"TTL": 120}"#)
            .unwrap();
        let id = lease["ID"].as_str().unwrap().to_string();
        let key = STANDARD.encode(format!("/mksgate-cost/{}-{i}", std::process::id()));
        let body = format!(
            r#"{{"compare":[{{"key":"{key}","target":"CREATE","create_revision":"0"}}],"success":[{{"request_put":{{"key":"{key}","value":"{}","lease":"{id}"}}}}]}}"#,
            STANDARD.encode("1")
        );
        let t = Instant::now();
        let r = fleet.etcd.post(leader, "/v3/kv/txn", &body).unwrap();
        out.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r["succeeded"], true, "{r}");
    }
    out
}

/// The shipped fleet file's store, taken out: the local table.
const LOCAL_TABLE: (&str, &str) = (
    r#"                      "replay_store": {
                        "etcd": {"cluster": "mksgate_etcd", "authority": "etcd", "timeout_ms": 1500,
                                 "auth": {"user": "mksgate", "password_env": "MKSGATE_ETCD_PASSWORD"}}
                      },
"#,
    "",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_store_costs_a_handshake_about_etcds_own_transaction() {
    let n = n();
    bounded(120 + n as u64 / 4, async move {
        let mut rows = Vec::new();
        for (name, store) in [("etcd store", true), ("local table", false)] {
            // Revocation off in both: its per-handshake cost is system 5r's
            // in `make bench`, and without the store's login its reads
            // would be refused by etcd's access control.
            let edits: &[(&str, &str)] = if store {
                &[WITHOUT_REVOCATION]
            } else {
                &[WITHOUT_REVOCATION, LOCAL_TABLE]
            };
            let fleet = Arc::new(Fleet::start_as_deployed(1, 2, edits).await.unwrap());
            // Warm: TLS sessions, etcd's leader, the gateway's login.
            handshakes(&fleet, 20, 1, Duration::ZERO, 1_000_000).await;
            let mut light = handshakes(&fleet, n, 1, Duration::from_millis(20), 0).await;
            let mut busy = handshakes(&fleet, n, 16, Duration::ZERO, 100_000).await;
            let mut txn = tokio::task::block_in_place(|| etcd_txns(&fleet, n.min(300)));
            rows.push((name, p50_p99(&mut light), p50_p99(&mut busy), p50_p99(&mut txn)));
        }
        println!("{n} handshakes per load; etcd 3.4, 3 members, fsync on, TLS + client certificates + access control; one gateway, 2 workers");
        println!("| store | 1 client p50 / p99 ms | 16 clients p50 / p99 ms | etcd txn (plain client, same run) p50 / p99 ms |");
        for (name, a, b, t) in &rows {
            println!("| {name} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} |", a.0, a.1, b.0, b.1, t.0, t.1);
        }
    })
    .await;
}
