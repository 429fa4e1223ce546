//! What a gateway's shutdown does to open consoles, as Istio's agent shuts
//! a gateway down on SIGTERM: `POST /drain_listeners?graceful`, then, after
//! `terminationDrainDuration`, the end of Envoy. With the shipped static
//! layout and a short `--drain-time-s`: during and after the drain the open
//! consoles carry frames (an upgraded stream has no later response for
//! Envoy's drain to close it on) and new clients are refused once the
//! listeners close; when Envoy ends (SIGTERM), every console ends at once
//! and the client sees the connection go, not a hang.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{bounded, Gateway, GatewayOpts, A, B};
use mksgate_host_tests::client::verify_session;
use serde_json::json;
use std::time::{Duration, Instant};

const DRAIN_S: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_drain_keeps_open_consoles_and_the_end_of_envoy_ends_them() {
    bounded(90, async {
        let mut gw = Gateway::start_with(GatewayOpts {
            concurrency: 2,
            extra_args: vec!["--drain-time-s".into(), DRAIN_S.to_string()],
            ..GatewayOpts::default()
        })
        .await
        .unwrap();
        let mut consoles = Vec::new();
        for i in 0..6 {
            let link = gw.new_link(if i % 2 == 0 { A } else { B }, json!({}));
            let mut s = gw.expect_admitted(&link.path, &[]).await;
            verify_session(&mut s, 2).await.unwrap();
            consoles.push(s);
        }
        let r = gw.envoy.admin_post("/drain_listeners?graceful").await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let drained = Instant::now();
        tokio::time::sleep(Duration::from_secs(DRAIN_S + 1)).await;
        for s in &mut consoles {
            assert_eq!(verify_session(s, 3).await.unwrap().echoed, 3);
        }
        // The listeners are closed now: a new client is not served.
        let link = gw.new_link(A, json!({}));
        let refused = gw.connect(&link.path, &[]).await;
        assert!(refused.is_err(), "a new console after the drain: {:?}", refused.map(|o| o.status()));
        println!(
            "graceful drain ({DRAIN_S} s): 6 of 6 consoles still carried frames {:.1?} after it began; new clients refused",
            drained.elapsed()
        );

        // The end of Envoy (what the agent does after terminationDrainDuration).
        let stopped = Instant::now();
        tokio::task::block_in_place(|| gw.envoy.stop(Duration::from_secs(5)));
        let mut ends = Vec::new();
        for s in &mut consoles {
            ends.push(s.wait_end(Duration::from_secs(5)).await.unwrap());
        }
        let took = stopped.elapsed();
        println!("SIGTERM: 6 of 6 consoles ended within {took:.2?}: {ends:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let t = Instant::now();
        while gw.standin(A).active_sessions() + gw.standin(B).active_sessions() > 0 {
            assert!(t.elapsed() < Duration::from_secs(3), "ESXi kept its side open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
