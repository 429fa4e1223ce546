//! A lifetime per console, in real Envoy with the shipped static layout: a
//! link's `console_exp` and the config's `max_console_seconds` end an open
//! console on time, from the filter's root tick (set the stream's context
//! effective, record `mksgate_end`, close the stream), on the client's side
//! and on ESXi's; the access log's end line says why. A `console_exp`
//! already past is refused (`console_expired`) and spends nothing; consoles
//! without a lifetime stay open.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{bounded, now, parsed_plugin_json, with_plugin_json, Gateway, GatewayOpts, A, B, T};
use mksgate_host_tests::client::{verify_session, Session};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long after `opened` the client saw the console end, and how it did.
async fn ended_after(s: &mut Session, opened: Instant) -> (Duration, String) {
    let end = s.wait_end(Duration::from_secs(20)).await.unwrap();
    (opened.elapsed(), format!("{end:?}"))
}

/// Waits until `gw`'s stand-in for `host` holds `n` open sessions.
async fn wait_esxi_sessions(gw: &Gateway, host: &str, n: usize) -> Duration {
    let t0 = Instant::now();
    while gw.standin(host).active_sessions() != n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "ESXi kept its side open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_exp_ends_the_console_on_time_on_both_sides() {
    bounded(90, async {
        let gw = Gateway::start().await.unwrap();
        // Refused while already past (beyond the 30 s skew), and not spent.
        let past = gw.new_link(A, json!({"console_exp": now() - 60}));
        gw.expect_refused(&past.path, &[], 403, "console_expired").await;
        let t = now();
        let keep = gw.new_link(B, json!({}));
        let mut kept = gw.expect_admitted(&keep.path, &[]).await;
        let link = gw.new_link(A, json!({"console_exp": t + 3}));
        let opened = Instant::now();
        let mut s = gw.expect_admitted(&link.path, &[]).await;
        assert_eq!(verify_session(&mut s, 3).await.unwrap().echoed, 3);
        wait_esxi_sessions(&gw, A, 1).await;
        let (after, how) = ended_after(&mut s, opened).await;
        let esxi = wait_esxi_sessions(&gw, A, 0).await;
        println!("console_exp 3 s ahead: the client saw the end after {after:.2?} ({how}); ESXi's side ended {esxi:.2?} later");
        // `console_exp` is whole seconds (from `t`, up to 1 s before the
        // console opened); the tick runs every 200 ms.
        assert!(
            after >= Duration::from_secs(2) && after <= Duration::from_millis(4_500),
            "{after:?}"
        );
        // The console without a lifetime is still open and carries frames.
        assert_eq!(verify_session(&mut kept, 2).await.unwrap().echoed, 2);
        assert_eq!(gw.standin(B).active_sessions(), 1);
        drop(kept);
        let lines = gw
            .wait_access_log(|l| l.iter().filter(|x| x["event"] == "DownstreamEnd" && x["decision"] == "admitted").count() >= 2, T)
            .await
            .unwrap();
        let ends: Vec<(&str, Value)> = lines
            .iter()
            .filter(|l| l["event"] == "DownstreamEnd" && l["decision"] == "admitted")
            .map(|l| (l["host"].as_str().unwrap_or(""), l["end"].clone()))
            .collect();
        println!("end lines: {ends:?}");
        assert!(ends.contains(&(A, json!("console_exp"))), "{ends:?}");
        assert!(ends.contains(&(B, Value::Null)), "{ends:?}");
        let counts = gw.decision_counts().await.unwrap();
        assert_eq!(counts.get("console_expired"), Some(&1));
        let stats = gw.stats().await.unwrap();
        assert_eq!(stats.get("wasmcustom.mksgate.console_end.console_exp"), Some(&1));
        // The refused link was not spent.
        drop(
            gw.expect_admitted(&gw.new_link(A, json!({"jti": past.claims["jti"]})).path, &[])
                .await,
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_console_seconds_ends_every_console_after_its_admission() {
    bounded(90, async {
        let gw = Gateway::start_with_yaml_edit(GatewayOpts::default(), |yaml| {
            let mut plugin = parsed_plugin_json(&yaml)?;
            plugin["max_console_seconds"] = json!(3);
            with_plugin_json(&yaml, &plugin)
        })
        .await
        .unwrap();
        let mut consoles = Vec::new();
        for host in [A, B] {
            let link = gw.new_link(host, json!({}));
            consoles.push((Instant::now(), gw.expect_admitted(&link.path, &[]).await));
        }
        for (_, s) in &mut consoles {
            assert_eq!(verify_session(s, 2).await.unwrap().echoed, 2);
        }
        let mut times = Vec::new();
        for (opened, s) in &mut consoles {
            times.push(ended_after(s, *opened).await);
        }
        wait_esxi_sessions(&gw, A, 0).await;
        wait_esxi_sessions(&gw, B, 0).await;
        println!("max_console_seconds 3: the clients saw the ends after {times:?}");
        for (after, _) in &times {
            assert!(
                *after >= Duration::from_millis(2_500) && *after <= Duration::from_millis(4_500),
                "{after:?}"
            );
        }
        let stats = gw.stats().await.unwrap();
        assert_eq!(
            stats.get("wasmcustom.mksgate.console_end.max_console"),
            Some(&2)
        );
        let lines = gw
            .wait_access_log(
                |l| l.iter().filter(|x| x["end"] == "max_console").count() == 2,
                T,
            )
            .await
            .unwrap();
        assert_eq!(
            lines.iter().filter(|x| x["end"] == "max_console").count(),
            2
        );
    })
    .await;
}
