//! The ECDS half of the rotation suite: the wasm filter's config delivered
//! by extension config discovery, the listener static.

const VMS_CREATED: &str = "wasm.envoy.wasm.runtime.v8.created";

use super::*;
use mksgate_host_tests::envoy::EnvoyOpts;
use mksgate_host_tests::loopback;
use mksgate_host_tests::shipped::{self, Upstream};
use mksgate_testkit::paths;
use std::net::SocketAddr;

/// The alternative the drain measurement above points to: the wasm filter's
/// config delivered by ECDS (extension config discovery) from a watched
/// file, the listener itself static. The config is envoy/static-clusters.yaml
/// with only the wasm filter's `typed_config` moved, unchanged, into the
/// ECDS file. A filter config update creates no new listener version, so
/// nothing is drained: a console opened before two updates (add B, drop A)
/// is still carrying bytes well past `--drain-time-s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecds_rotation_never_drains_open_sessions() {
    const DRAIN_S: u64 = 2;
    bounded(120, async {
        let key_a = random_bytes::<32>();
        let key_b = random_bytes::<32>();
        let cert = CertKey::self_signed(&[GATEWAY]).unwrap();
        let s1 = Standin::start(StandinConfig::new(STATIC_HOSTS[0].0, loopback(2)))
            .await
            .unwrap();
        let s2 = Standin::start(StandinConfig::new(STATIC_HOSTS[1].0, loopback(3)))
            .await
            .unwrap();
        let etc = RotationDir::new(&cert).unwrap();
        let esxi = [
            Upstream {
                addr: s1.local_addr(),
                pin: s1.cert_sha256_hex(),
            },
            Upstream {
                addr: s2.local_addr(),
                pin: s2.cert_sha256_hex(),
            },
        ];
        let full = shipped::static_clusters(&esxi).unwrap();
        let start = full
            .find("          - name: envoy.filters.http.wasm\n")
            .unwrap();
        let end = full.find("          - name: envoy.filters.http.router").unwrap();
        let block = &full[start..end];
        let at = "            typed_config:\n";
        let typed: String = block[block.find(at).unwrap() + at.len()..]
            .lines()
            .map(|l| format!("    {}\n", l.get(14..).unwrap_or("")))
            .collect();
        let ecds_path = etc.path().join("mksgate-filter.yaml");
        let bootstrap = format!(
            "node: {{ id: gw, cluster: mksgate }}\n{}",
            full.replace(
                block,
                &format!(
                    r#"          - name: mksgate
            config_discovery:
              config_source:
                resource_api_version: V3
                path_config_source:
                  path: {}
                  watched_directory: {{ path: {} }}
              type_urls: ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]
"#,
                    ecds_path.display(),
                    etc.path().display()
                ),
            )
        );
        let ecds = format!(
            "version_info: \"1\"\nresources:\n- \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  name: mksgate\n  typed_config:\n{typed}"
        );
        std::fs::write(&ecds_path, &ecds).unwrap();
        let envoy = Envoy::start(
            &bootstrap,
            EnvoyOpts {
                env: vec![(KEY_ENV.to_string(), encode_secret(&key_a))],
                extra_args: vec!["--drain-time-s".into(), DRAIN_S.to_string()],
                files: vec![
                    (
                        shipped::GATEWAY_CERT_FILE.into(),
                        cert.chain_pem().into_bytes(),
                    ),
                    (
                        shipped::GATEWAY_KEY_FILE.into(),
                        cert.key_pem.clone().into_bytes(),
                    ),
                ],
                ready_timeout: Duration::from_secs(40),
                ..EnvoyOpts::default()
            },
        )
        .await
        .unwrap();
        let gw = SocketAddr::new(loopback(1), envoy.port_for(LISTENER).await.unwrap());
        let opts = ClientOpts::new()
            .connect_to(gw)
            .pin(cert.cert_der.clone())
            .header("Origin", ORIGIN)
            .wmks_protocols();
        let link = |secret: &[u8], kid: &str| {
            let t = s1.issue_ticket();
            format!(
                "wss://{GATEWAY}/console?token={}",
                mint(secret, kid, s1.name(), &t)
            )
        };
        let first = connect(&link(&key_a, KID), &opts)
            .await
            .unwrap()
            .session()
            .unwrap();
        let streaming = keep_streaming(first);
        streaming.assert_flowing(4, T).await;
        // A console with a lifetime, opened before the updates: the table of
        // open consoles must still end it on time after them.
        let t = s1.issue_ticket();
        let mut timed_claims = link::shipped_claims(s1.name(), &t);
        let timed_exp = link::now() + 6;
        timed_claims["console_exp"] = timed_exp.into();
        let timed_link = format!(
            "wss://{GATEWAY}/console?token={}",
            link::sign_with(&key_a, KID, &timed_claims).unwrap()
        );
        let mut timed = connect(&timed_link, &opts).await.unwrap().session().unwrap();
        verify_session(&mut timed, 2).await.unwrap();

        let replace = |text: &str| {
            let tmp = etc.path().join(".mksgate-filter.yaml.new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &ecds_path).unwrap();
        };
        let wait_status = |secret: Vec<u8>, kid: &'static str, want: u16| {
            let (envoy, opts, link) = (&envoy, &opts, &link);
            async move {
                let since = Instant::now();
                loop {
                    let o = connect(&link(&secret, kid), opts).await.unwrap();
                    if o.status() == want {
                        return since.elapsed();
                    }
                    assert!(
                        since.elapsed() < Duration::from_secs(15),
                        "kid {kid}: still {} ; log:\n{}",
                        o.status(),
                        envoy.log_tail(30)
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };

        // Add B (secret in the ECDS file's vm_config), then drop A.
        let with_both = replace_exact(
            &ecds,
            &[
                ("version_info: \"1\"".to_string(), "version_info: \"2\"".to_string()),
                (
                    format!("host_env_keys: [{KEY_ENV}]"),
                    format!(
                        "host_env_keys: [{KEY_ENV}]\n          key_values: {{ {NEW_KEY_ENV}: \"{}\" }}",
                        encode_secret(&key_b)
                    ),
                ),
                (
                    OLD_KEY_ENTRY.to_string(),
                    format!(
                        "{OLD_KEY_ENTRY}, {{\"kid\": \"{NEW_KID}\", \"alg\": \"HS256\", \"secret_env\": \"{NEW_KEY_ENV}\"}}"
                    ),
                ),
            ],
        )
        .unwrap();
        replace(&with_both);
        let took = wait_status(key_b.to_vec(), NEW_KID, 101).await;
        eprintln!("ecds: key B admitted {took:?} after the file was replaced");
        assert_eq!(connect(&link(&key_a, KID), &opts).await.unwrap().status(), 101);
        let only_b = replace_exact(
            &with_both,
            &[
                ("version_info: \"2\"".to_string(), "version_info: \"3\"".to_string()),
                (format!("{OLD_KEY_ENTRY}, "), String::new()),
            ],
        )
        .unwrap();
        replace(&only_b);
        let updated = Instant::now();
        let took = wait_status(key_a.to_vec(), KID, 403).await;
        eprintln!("ecds: key A refused {took:?} after the file was replaced");
        assert_eq!(
            connect(&link(&key_b, NEW_KID), &opts).await.unwrap().status(),
            101
        );

        // A module upgrade with consoles open: a new build of the module
        // (cargo's unprocessed output, different code) under a new vm_id,
        // as Istio delivers a WasmPlugin whose image changed. New links get
        // a new VM; the consoles opened on the old one keep it.
        let vms_before = envoy.stat(VMS_CREATED).await.unwrap();
        let shipped_module = paths::shipped_module().unwrap();
        let new_build = paths::module("mksgate_filter.raw.wasm").unwrap();
        let upgraded = replace_exact(
            &only_b,
            &[
                ("version_info: \"3\"".to_string(), "version_info: \"4\"".to_string()),
                ("vm_id: mksgate\n".to_string(), "vm_id: mksgate-v2\n".to_string()),
                (
                    shipped_module.to_string_lossy().into_owned(),
                    new_build.to_string_lossy().into_owned(),
                ),
            ],
        )
        .unwrap();
        replace(&upgraded);
        let since = Instant::now();
        while envoy.stat(VMS_CREATED).await.unwrap() == vms_before {
            assert!(since.elapsed() < Duration::from_secs(15), "{}", envoy.log_tail(30));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = wait_status(key_b.to_vec(), NEW_KID, 101).await;
        eprintln!(
            "ecds: module upgrade (new build, vm_id mksgate-v2): {} new VMs, admitting {:?} after the file was replaced",
            envoy.stat(VMS_CREATED).await.unwrap() - vms_before,
            since.elapsed().max(took)
        );
        streaming.assert_flowing(4, T).await;

        // The console with a lifetime ends at its console_exp, after both
        // updates (its client sees it up to Envoy's 1 s delayed close later).
        timed.wait_end(Duration::from_secs(15)).await.unwrap();
        let late = link::now() - timed_exp;
        eprintln!("ecds: the console_exp console opened before both updates ended {late} s after its console_exp");
        assert!((0..=3).contains(&late), "{late} s");
        let ended = envoy.stats().await.unwrap();
        assert_eq!(ended.get("wasmcustom.mksgate.console_end.console_exp"), Some(&1));

        // Well past the drain time: the first console is still intact.
        tokio::time::sleep(Duration::from_secs(DRAIN_S * 2 + 1)).await;
        streaming.assert_flowing(8, T).await;
        let mut first = streaming.finish().await;
        verify_session(&mut first, 11).await.unwrap();
        eprintln!(
            "ecds: the console opened before both updates is intact {:?} after the last one",
            updated.elapsed()
        );
        first.close(T).await.unwrap();
        let stats = envoy.stats().await.unwrap();
        let stat = |k: &str| stats.get(k).copied().unwrap_or(0);
        assert_eq!(
            stat("extension_config_discovery.http_filter.mksgate.update_success"),
            4
        );
        assert_eq!(
            stat("extension_config_discovery.http_filter.mksgate.update_rejected"),
            0
        );
        assert_eq!(stat("listener_manager.listener_modified"), 0);
        assert_eq!(stat("listener_manager.total_filter_chains_draining"), 0);
    })
    .await;
}
