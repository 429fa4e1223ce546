//! The operations kit (deploy/observability) against a real Prometheus
//! scraping real Envoy: the shipped rules and scrape relabelling unchanged,
//! only `for:` (3 s) and the intervals (1 s) shortened. Four Envoys are
//! scraped at once: the fleet layout with a real 3-member etcd (tagged
//! names; its gateway-wide handshake limit lowered to 30/s so a burst can
//! exceed it), the static layout with its stats_tags removed (the untagged
//! names Istio and Envoy Gateway export, which the relabelling must
//! normalise), the test-only trap module under FAIL_RELOAD, and the
//! rotation layout. Each phase gets a fresh Prometheus, so the rules' rate
//! windows see only that phase:
//! 1. normal: admissions on both gateways; no alert active, no rule in
//!    error, and every dashboard query returns series with its labels;
//! 2. a portal signing with an unknown kid, then a flood of tampered links
//!    from one address, then a burst from many addresses over the
//!    gateway-wide limit;
//! 3. the trap module trapping (reloads, then backoff);
//! 4. a listener pushed with its key's env var missing;
//! 5. etcd stopped while links arrive.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{bounded, Gateway, GatewayOpts, A};
use mksgate_host_tests::clients::MANY_USERS;
use mksgate_host_tests::envoy::{Envoy, EnvoyOpts};
use mksgate_host_tests::fleet::Fleet;
use mksgate_host_tests::gateway::upgrade_head;
use mksgate_host_tests::link;
use mksgate_host_tests::prometheus::Prometheus;
use mksgate_host_tests::shipped::{self, trap_module_config, RotationDir};
use mksgate_host_tests::wire::WireTarget;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(45);

/// The shipped static layout's stats_tags, which Istio's and Envoy
/// Gateway's bootstraps do not have.
const STATS_TAGS: &str = "stats_config:
  stats_tags:
  # wasmcustom.mksgate.decision.<code>  ->  mksgate_decision{code=\"<code>\"}
  - tag_name: code
    regex: '^wasmcustom\\.mksgate\\.decision(\\.(\\w+))$'
";

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn fire(fleet: &Fleet, path: &str, many: bool) -> u16 {
    let wire = fleet.wire(0).unwrap();
    let wire = if many {
        wire.from(MANY_USERS.next())
    } else {
        wire
    };
    wire.send(&upgrade_head(path.as_bytes(), &[]))
        .await
        .map_or(0, |r| r.status)
}

/// A link the fleet's gateway refuses as bad_signature: signed by a key it
/// does not have, under a kid it does not know.
fn unknown_kid_path(fleet: &Fleet, i: usize) -> String {
    let (host, _) = shipped::STATIC_HOSTS[i % 2];
    let claims = link::shipped_claims(host, &fleet.standins[i % 2].issue_ticket());
    let token = link::sign_with(&link::random_bytes(32), "2026-99", &claims).unwrap();
    link::console_path(&token)
}

/// The dashboard's queries and the label each panel's legend names.
fn dashboard_queries() -> Vec<(String, Option<String>)> {
    let path = mksgate_testkit::paths::workspace_root()
        .join("deploy/observability/grafana-dashboard.json");
    let dash: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().to_string();
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            let label = legend
                .strip_prefix("{{")
                .and_then(|l| l.split_once("}}"))
                .map(|(l, _)| l.to_string());
            out.push((expr, label));
        }
    }
    out
}

async fn no_alert_for(prom: &Prometheus, settle: Duration) {
    tokio::time::sleep(settle).await;
    let alerts = blocking(|| prom.alerts()).unwrap();
    assert!(alerts.is_empty(), "alerts in the normal phase: {alerts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_in_their_phase_and_the_dashboard_has_data() {
    bounded(420, async {
        let limit = "token_bucket: { max_tokens: 1000, tokens_per_fill: 1000, fill_interval: 1s }";
        let lowered = "token_bucket: { max_tokens: 30, tokens_per_fill: 30, fill_interval: 1s }";
        let fleet = Arc::new(Fleet::start_with(1, 1, &[(limit, lowered)]).await.unwrap());
        let untagged = Gateway::start_with_yaml_edit(GatewayOpts::default(), |yaml| {
            anyhow::ensure!(
                yaml.contains(STATS_TAGS),
                "the static layout's stats_tags changed"
            );
            Ok(yaml.replacen(STATS_TAGS, "", 1))
        })
        .await
        .unwrap();
        let trap = Envoy::start(
            &trap_module_config("FAIL_RELOAD").unwrap(),
            EnvoyOpts::default(),
        )
        .await
        .unwrap();
        let trap_wire = WireTarget::plain(trap.listener_addr("http").await.unwrap());
        let etc = RotationDir::new(&fleet.cert).unwrap();
        etc.replace_listeners(&shipped::rotation_listeners(etc.path()).unwrap())
            .unwrap();
        let esxi = [0, 1].map(|i| shipped::Upstream {
            addr: fleet.standins[i].local_addr(),
            pin: fleet.standins[i].cert_sha256_hex(),
        });
        let rotation = Envoy::start(
            &shipped::rotation_bootstrap(etc.path(), &esxi).unwrap(),
            EnvoyOpts {
                env: vec![(
                    shipped::KEY_ENV.into(),
                    mksgate_core::jws::encode_secret(&link::random_bytes(32)),
                )],
                ..EnvoyOpts::default()
            },
        )
        .await
        .unwrap();
        let targets: Vec<SocketAddr> = vec![
            fleet.gateways[0].admin_addr(),
            untagged.envoy.admin_addr(),
            trap.admin_addr(),
            rotation.admin_addr(),
        ];
        let start = |what: &str| {
            let p = blocking(|| Prometheus::start(&targets, "3s")).unwrap();
            println!("phase {what}: prometheus at {}", p.addr);
            p
        };

        // 1. Normal.
        let mut prom = start("normal");
        for i in 0..24 {
            assert_eq!(
                fire(&fleet, &fleet.valid_path(i, 60).unwrap(), true).await,
                101
            );
            let s = untagged
                .expect_admitted(&untagged.new_link(A, json!({})).path, &[])
                .await;
            drop(s);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        no_alert_for(&prom, Duration::from_secs(5)).await;
        assert_eq!(
            blocking(|| prom.rule_errors()).unwrap(),
            Vec::<String>::new()
        );
        // The untagged gateway's counters came out tagged.
        let untagged_instance = untagged.envoy.admin_addr().to_string();
        let relabelled = blocking(|| {
            prom.query(&format!(
                "mksgate_decision{{code=\"admitted\",instance=\"{untagged_instance}\"}}"
            ))
        })
        .unwrap();
        assert_eq!(relabelled.len(), 1, "{relabelled:?}");
        assert!(relabelled[0].1 >= 24.0, "{relabelled:?}");
        let raw = blocking(|| prom.query("{__name__=~\"mksgate_decision_.+\"}")).unwrap();
        assert!(
            raw.is_empty(),
            "untagged names left after relabelling: {raw:?}"
        );
        let mut ran = 0;
        for (expr, label) in dashboard_queries() {
            if expr.starts_with("ALERTS") {
                continue; // no alert is active now; checked in the flood phase
            }
            let series = blocking(|| prom.query(&expr)).unwrap();
            assert!(
                !series.is_empty(),
                "dashboard query {expr} returned nothing"
            );
            if let Some(label) = &label {
                for (metric, _) in &series {
                    assert!(
                        metric.get(label).is_some(),
                        "{expr}: a series without {label}: {metric}"
                    );
                }
            }
            println!("dashboard: {expr}: {} series", series.len());
            ran += 1;
        }
        let codes = blocking(|| prom.query("mksgate:decisions:rate1m")).unwrap();
        assert!(
            codes
                .iter()
                .any(|(m, v)| m["code"] == "admitted" && *v > 0.0),
            "{codes:?}"
        );
        prom.stop();

        // 2. A portal on an unknown kid, a flood, a burst.
        let prom = start("signatures");
        for i in 0..30 {
            assert_eq!(
                fire(&fleet, &fleet.valid_path(1000 + i, 60).unwrap(), true).await,
                101
            );
            if i % 2 == 0 {
                assert_eq!(fire(&fleet, &unknown_kid_path(&fleet, i), true).await, 403);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let state = blocking(|| prom.wait_alert("MksgateSigningKeyMismatch", WAIT)).unwrap();
        println!("MksgateSigningKeyMismatch: {state} (unknown-kid links next to good ones)");
        drop(prom);
        // A fresh Prometheus: the flood's rate is then the flood's alone.
        let prom = start("flood");
        // Six addresses, each as fast as it can (under its own 20/s limit),
        // until the alert shows or 45 s pass.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flooders: Vec<_> = (0..6)
            .map(|k| {
                let (fleet, stop, source) = (fleet.clone(), stop.clone(), MANY_USERS.next());
                tokio::spawn(async move {
                    let wire = fleet.wire(0).unwrap().from(source);
                    let mut sent = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 2000 {
                        let path = fleet.valid_path(20_000 + k * 10_000 + sent, 60).unwrap();
                        let tampered = format!("{path}x");
                        let _ = wire.send(&upgrade_head(tampered.as_bytes(), &[])).await;
                        sent += 1;
                    }
                    sent
                })
            })
            .collect();
        let state = blocking(|| prom.wait_alert("MksgateTokenFlood", WAIT));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut sent = 0;
        for f in flooders {
            sent += f.await.unwrap();
        }
        let state = state.unwrap_or_else(|e| {
            let rates = blocking(|| prom.query("mksgate:decisions:rate1m > 0"));
            panic!("{e:#}; {sent} sent; decisions/s: {rates:?}")
        });
        println!("MksgateTokenFlood: {state} (tampered links from six addresses)");
        let alerts_panel = blocking(|| prom.query("ALERTS{alertname=~\"Mksgate.*\"}")).unwrap();
        assert!(
            alerts_panel
                .iter()
                .all(|(m, _)| m.get("alertname").is_some())
                && !alerts_panel.is_empty()
        );
        let fleet2 = fleet.clone();
        let shots = (0..150).map(|i| {
            let fleet = fleet2.clone();
            async move { fire(&fleet, &fleet.valid_path(5000 + i, 60).unwrap(), true).await }
        });
        let statuses = futures_util::future::join_all(shots).await;
        let shed = statuses.iter().filter(|s| **s == 429).count();
        assert!(shed > 0, "no handshake shed: {statuses:?}");
        let state = blocking(|| prom.wait_alert("MksgateHandshakesShed", WAIT)).unwrap();
        println!("MksgateHandshakesShed: {state} ({shed} of 150 shed)");
        drop(prom);

        // 3. The trap module traps: reloads, then backoff.
        let prom = start("vm");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let send = |h: &'static str| {
            let w = &trap_wire;
            async move {
                w.send(format!("GET / HTTP/1.1\r\nHost: t\r\n{h}\r\n").as_bytes())
                    .await
                    .map_or(0, |r| r.status)
            }
        };
        assert_eq!(send("x-trap: 1\r\n").await, 503);
        // The VM is replaced when the next request comes.
        for _ in 0..20 {
            if send("").await == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let state = blocking(|| prom.wait_alert("MksgateVmReloaded", WAIT)).unwrap();
        println!("MksgateVmReloaded: {state}");
        for _ in 0..10 {
            send("x-trap: 1\r\n").await;
            send("").await;
        }
        let state = blocking(|| prom.wait_alert("MksgateVmReloadFailing", WAIT)).unwrap();
        println!("MksgateVmReloadFailing: {state} (traps in quick succession)");
        drop(prom);

        // 4. A listener whose key env var is missing.
        let prom = start("config");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let good = shipped::rotation_listeners(etc.path()).unwrap();
        let bad = good.replacen(shipped::KEY_ENV, "MKSGATE_KEY_NOT_SET", 1);
        assert_ne!(bad, good);
        etc.replace_listeners(&bad).unwrap();
        rotation
            .wait_stat(
                "listener_manager.lds.update_rejected",
                |v| v >= 1,
                Duration::from_secs(15),
            )
            .await
            .unwrap();
        let state = blocking(|| prom.wait_alert("MksgateConfigRejected", WAIT)).unwrap();
        println!("MksgateConfigRejected: {state}");
        drop(prom);

        // 5. etcd stopped while links arrive.
        let prom = start("store");
        for i in 0..3 {
            fleet.etcd.kill(i);
        }
        for i in 0..20 {
            assert_eq!(
                fire(&fleet, &fleet.valid_path(8000 + i, 60).unwrap(), true).await,
                503
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for alert in ["MksgateReplayStoreUnavailable", "MksgateAdmissionsStopped"] {
            let state = blocking(|| prom.wait_alert(alert, WAIT)).unwrap();
            println!("{alert}: {state} (etcd stopped)");
        }
        println!("dashboard queries run: {}", ran + 1);
    })
    .await;
}

/// Istio keeps only the stats its inclusion list names: the gateway patch
/// must add every prefix the rules read that Istio's required list
/// (istio/istio pkg/bootstrap/config.go: cluster_manager, listener_manager,
/// server, cluster.xds-grpc, wasm) does not already cover.
#[test]
fn the_istio_kit_exports_every_stat_the_rules_read() {
    let patch = shipped::yaml_docs("istio/gateway-env-patch.yaml").unwrap();
    let config = patch[0]["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"]
        .as_str()
        .expect("the proxy.istio.io/config annotation");
    let config: Value = serde_yaml_ng::from_str(config).unwrap();
    let prefixes: Vec<&str> = config["proxyStatsMatcher"]["inclusionPrefixes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The Envoy stat names behind the rules' Prometheus names.
    for stat in [
        "wasmcustom.mksgate.decision.admitted",
        "wasmcustom.mksgate.replay_store.timeout",
        "console_handshakes.http_local_rate_limit.rate_limited",
        "console_client_handshakes.http_local_rate_limit.rate_limited",
    ] {
        assert!(
            prefixes.iter().any(|p| stat.starts_with(p)),
            "{stat} is not exported by the Istio kit: {prefixes:?}"
        );
    }
}
