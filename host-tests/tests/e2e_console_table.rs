//! The worker's table of open consoles leaves nothing behind: 1,000
//! consoles through one gateway of the shipped fleet layout (2 workers),
//! ended in every way a console ends (a revocation, the client's close,
//! the client's connection dropped, ESXi's close, ESXi's connection reset;
//! the filter's own ends, `console_exp` and `max_console_seconds`, are
//! `e2e_console_lifetime.rs`'s. Envoy's idle timeout is not among them: the
//! stand-ins push frames, as ESXi does, so an open console is never idle);
//! after each, `mksgate.consoles_open` (moved by every insert and removal
//! of the table) is back to 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_host_tests::bounded;
use mksgate_host_tests::client::{verify_session, Session};
use mksgate_host_tests::fleet::Fleet;
use serde_json::json;
use std::time::{Duration, Instant};

const EACH_WAY: usize = 200;

/// Opens `n` consoles on stand-in `standin` with `claims`, 25 at a time.
async fn open(fleet: &Fleet, n: usize, standin: usize, claims: serde_json::Value) -> Vec<Session> {
    let mut sessions = Vec::with_capacity(n);
    while sessions.len() < n {
        let batch = (n - sessions.len()).min(25);
        let opening = (0..batch).map(|_| {
            let path = fleet.path_with(standin, 60, &claims).unwrap();
            async move {
                let mut s = fleet.open(0, &path).await.unwrap();
                assert_eq!(verify_session(&mut s, 1).await.unwrap().echoed, 1);
                s
            }
        });
        sessions.extend(futures_util::future::join_all(opening).await);
    }
    sessions
}

async fn open_consoles(fleet: &Fleet) -> u64 {
    let stats = fleet.gateways[0].stats().await.unwrap();
    stats
        .get("wasmcustom.mksgate.consoles_open")
        .copied()
        .unwrap_or(u64::MAX)
}

/// Waits until the gateway counts `n` open consoles.
async fn wait_open(fleet: &Fleet, n: u64, within: Duration, how: &str) -> Duration {
    let t0 = Instant::now();
    loop {
        let now = open_consoles(fleet).await;
        if now == n {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "{how}: {now} consoles still in the table, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_is_empty_after_1000_consoles_end_in_every_way() {
    bounded(300, async {
        let fleet = Fleet::start(1, 2).await.unwrap();
        let n = EACH_WAY as u64;
        let mut report = Vec::new();

        let t_open = Instant::now();
        let revoked = open(&fleet, EACH_WAY, 0, json!({"sub": "leaver"})).await;
        println!("opening {EACH_WAY} consoles took {:.1?}", t_open.elapsed());
        wait_open(&fleet, n, Duration::from_secs(5), "opened").await;
        let (status, out) = fleet.revoke(&["--sub", "leaver", "--ttl", "60"]).unwrap();
        assert_eq!(status, 0, "{out}");
        report.push((
            "revoked",
            wait_open(&fleet, 0, Duration::from_secs(5), "revoked").await,
        ));
        drop(revoked);

        let closing = open(&fleet, EACH_WAY, 0, json!({})).await;
        let closes = closing.into_iter().map(|s| s.close(Duration::from_secs(2)));
        for closed in futures_util::future::join_all(closes).await {
            closed.unwrap();
        }
        report.push((
            "client close",
            wait_open(&fleet, 0, Duration::from_secs(5), "client close").await,
        ));

        let dropped = open(&fleet, EACH_WAY, 1, json!({})).await;
        drop(dropped); // the client's TCP connections end without a close frame
        report.push((
            "client gone",
            wait_open(&fleet, 0, Duration::from_secs(5), "client gone").await,
        ));

        let mut by_esxi = open(&fleet, EACH_WAY, 1, json!({})).await;
        fleet.standins[1].close_sessions(1000);
        // The clients answer ESXi's close frame, as a browser does.
        let answering = by_esxi
            .iter_mut()
            .map(|s| s.wait_end(Duration::from_secs(10)));
        for end in futures_util::future::join_all(answering).await {
            end.unwrap();
        }
        report.push((
            "ESXi close",
            wait_open(&fleet, 0, Duration::from_secs(5), "ESXi close").await,
        ));

        let _reset = open(&fleet, EACH_WAY, 0, json!({})).await;
        fleet.standins[0].reset_sessions();
        report.push((
            "ESXi reset",
            wait_open(&fleet, 0, Duration::from_secs(5), "ESXi reset").await,
        ));

        println!("5 x {EACH_WAY} consoles; the table empty after each way, in: {report:?}");
        let ends = fleet.counters(0, "console_end").await.unwrap();
        assert_eq!(ends.get("revoked"), Some(&n), "{ends:?}");
        let decisions = fleet.counters(0, "decision").await.unwrap();
        assert_eq!(decisions.get("admitted"), Some(&(5 * n)));
    })
    .await;
}
