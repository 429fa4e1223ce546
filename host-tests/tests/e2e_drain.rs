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
use mksgate_host_tests::envoy::{replace_exact, Envoy, EnvoyOpts};
use mksgate_host_tests::shipped;
use serde_json::json;
use std::time::{Duration, Instant};

const DRAIN_S: u64 = 2;

/// Six consoles, three on each ESXi host, each carrying frames.
async fn open_six(gw: &Gateway) -> Vec<mksgate_host_tests::client::Session> {
    let mut consoles = Vec::new();
    for i in 0..6 {
        let link = gw.new_link(if i % 2 == 0 { A } else { B }, json!({}));
        let mut s = gw.expect_admitted(&link.path, &[]).await;
        verify_session(&mut s, 2).await.unwrap();
        consoles.push(s);
    }
    consoles
}

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
        let mut consoles = open_six(&gw).await;
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

/// Envoy's hot restart (`--restart-epoch 1`, a new process of the same base
/// id, as an Envoy upgrade outside Kubernetes does it): the new process
/// takes the listening socket and admits new links at once; the consoles on
/// the old process keep carrying frames through its drain, until the new
/// one ends it after `--parent-shutdown-time-s`; then every one of them
/// ends at once, and the client sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_restart_keeps_consoles_until_the_parent_shuts_down() {
    const SHUTDOWN_S: u64 = 4;
    bounded(90, async {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base_id = mksgate_testkit::envoy::unique_base_id();
        let listen = |yaml: String| {
            replace_exact(
                &yaml,
                &[(
                    "address: 0.0.0.0, port_value: 0 }",
                    format!("address: 127.0.0.1, port_value: {port} }}"),
                )],
            )
        };
        let gw = Gateway::start_with_yaml_edit(
            GatewayOpts {
                concurrency: 2,
                hot_restart: Some((base_id, 0)),
                ..GatewayOpts::default()
            },
            listen,
        )
        .await
        .unwrap();
        let mut consoles = open_six(&gw).await;
        let restarted = Instant::now();
        let child = Envoy::start(
            &gw.yaml,
            EnvoyOpts {
                concurrency: 2,
                files: vec![
                    (
                        shipped::GATEWAY_CERT_FILE.to_string(),
                        gw.gateway_cert.chain_pem().into_bytes(),
                    ),
                    (
                        shipped::GATEWAY_KEY_FILE.to_string(),
                        gw.gateway_cert.key_pem.clone().into_bytes(),
                    ),
                ],
                env: vec![(shipped::KEY_ENV.to_string(), gw.secret_b64.clone())],
                extra_args: vec![
                    "--drain-time-s".into(),
                    "2".into(),
                    "--parent-shutdown-time-s".into(),
                    SHUTDOWN_S.to_string(),
                ],
                hot_restart: Some((base_id, 1)),
                ..EnvoyOpts::default()
            },
        )
        .await
        .unwrap();
        let live = restarted.elapsed();
        assert_eq!(child.stat("server.hot_restart_epoch").await.unwrap(), 1);
        // New links go to the new process (the same port).
        let link = gw.new_link(A, json!({}));
        let mut fresh = gw.expect_admitted(&link.path, &[]).await;
        verify_session(&mut fresh, 2).await.unwrap();
        assert!(child.stat("wasmcustom.mksgate.decision.admitted").await.unwrap() >= 1);
        // The old process's consoles carry frames through its drain.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut frames = 0;
        for s in &mut consoles {
            frames += verify_session(s, 3).await.unwrap().echoed;
        }
        let carried_at = restarted.elapsed();
        assert_eq!(frames, 18);
        let mut ends = Vec::new();
        for s in &mut consoles {
            ends.push(s.wait_end(Duration::from_secs(SHUTDOWN_S + 6)).await.unwrap());
        }
        let ended = restarted.elapsed();
        println!(
            "hot restart (--parent-shutdown-time-s {SHUTDOWN_S}): new process LIVE after {live:.2?}, \
             admitting at once; 6 of 6 old consoles carried {frames} frames at {carried_at:.1?}, \
             then ended at {ended:.2?}: {ends:?}; the new process's console still carries frames"
        );
        assert!(
            ended >= Duration::from_secs(SHUTDOWN_S - 1) && ended < Duration::from_secs(SHUTDOWN_S + 5),
            "{ended:?}"
        );
        verify_session(&mut fresh, 3).await.unwrap();
    })
    .await;
}
