//! `make demo-fleet` (issue 28): two gateways with the shipped fleet file
//! and module, a 3-member etcd cluster, and the page. A fresh link opened
//! on one gateway carries frames, and the same link on the other gateway is
//! refused as `replayed`, both ways round; headless Chromium
//! (`demo/tests/fleet-page.mjs`) presses the page's button and reads what
//! the page shows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_host_tests::bounded;
use mksgate_host_tests::demo::fleet::FleetDemo;
use mksgate_host_tests::envoy::workspace_root;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_link_is_admitted_by_one_gateway_and_replayed_on_the_other() {
    bounded(180, async {
        let demo = FleetDemo::start(0).await.unwrap();
        let info = demo.info();
        println!("{}", demo.describe());
        assert_eq!(info.gateways.len(), 2);
        assert_eq!(info.etcd.len(), 3);
        for first in [0, 1] {
            let a = demo.attempt(first).await.unwrap();
            println!("attempt, gateway {} first: {a:?}", first + 1);
            assert_eq!(
                (a.first.gateway, a.first.status, a.first.decision.as_deref()),
                (first, 101, Some("admitted"))
            );
            assert_eq!(a.first.frames, 3);
            assert_eq!(
                (
                    a.second.gateway,
                    a.second.status,
                    a.second.decision.as_deref()
                ),
                (1 - first, 403, Some("replayed"))
            );
        }
        // The page, in a real browser.
        let shots = workspace_root().join("target/browser");
        std::fs::create_dir_all(&shots).unwrap();
        let shot = shots.join("demo-fleet.png");
        let out = tokio::task::spawn_blocking({
            let (url, shot) = (info.page.clone(), shot.clone());
            move || {
                Command::new("node")
                    .current_dir(workspace_root().join("demo"))
                    .arg("tests/fleet-page.mjs")
                    .args(["--url", &url, "--first", "1", "--screenshot"])
                    .arg(&shot)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        println!("page: {text}");
        let report: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "fleet-page.mjs: {e}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["first"], "admitted", "{report}");
        assert_eq!(report["second"], "replayed", "{report}");
        assert!(
            report["firstText"].as_str().unwrap().contains("gateway 2"),
            "{report}"
        );
        demo.stop();
    })
    .await;
}
