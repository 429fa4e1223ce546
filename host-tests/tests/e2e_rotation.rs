//! Key rotation without a restart, in real Envoy on the shipped
//! rotation-ready layout (`envoy/rotation/bootstrap.yaml` +
//! `envoy/rotation/listeners.yaml`): Envoy reads the console listener (and
//! with it the plugin configuration and its keys) from a watched file, the
//! test replaces that file atomically the way an operator would (write a
//! temporary file in the directory, rename it over `listeners.yaml`), first
//! adding key B next to key A, then dropping A.
//!
//! The new key's secret arrives as a VM environment variable from the
//! listener file (`vm_config.environment_variables.key_values`), named by
//! `secret_env` in the plugin JSON: Envoy's process environment is fixed at
//! start, so `host_env_keys` cannot carry a key added later.
//!
//! The directory the configs live in (`/etc/mksgate` in the shipped files)
//! is a per-test directory holding the listener file, the gateway
//! certificate and a copy of the module; only it, the ports and the ESXi
//! addresses and pins are substituted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_host_tests::bounded;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mksgate_core::jws::encode_secret;
use mksgate_host_tests::client::{
    connect, verify_session, verify_session_with, ClientOpts, Outcome, Session, SessionEnd,
};
use mksgate_host_tests::envoy::{replace_exact, Envoy};
use mksgate_host_tests::gateway::{Layout, ShippedGateway, StartOpts};
use mksgate_host_tests::link;
use mksgate_host_tests::shipped::{RotationDir, KEY_ENV, KID, LISTENER, ORIGIN, STATIC_HOSTS};
use mksgate_host_tests::standin::{Standin, StandinConfig};
use mksgate_host_tests::tls::CertKey;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[path = "e2e_rotation/ecds.rs"]
mod ecds;

const T: Duration = Duration::from_secs(10);
const GATEWAY: &str = "console.example.com";
/// The key added during the rotation, as an operator would name it.
const NEW_KID: &str = "2026-12";
const NEW_KEY_ENV: &str = "MKSGATE_KEY_2026_12";

fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut b).unwrap();
    b
}

/// A link's token as the portal mints it for the shipped config.
fn mint(secret: &[u8], kid: &str, host: &str, ticket: &str) -> String {
    link::sign_with(secret, kid, &link::shipped_claims(host, ticket)).unwrap()
}

const OLD_KEY_ENTRY: &str =
    r#"{"kid": "2026-11", "alg": "HS256", "secret_env": "MKSGATE_KEY_2026_11"}"#;
const KEY_VALUES_TEMPLATE: &str = "                  # key_values:\n                  #   MKSGATE_KEY_2026_12: \"<output of mksgate keygen>\"\n";

/// Step 1 of the rotation, as the shipped file's comments describe it:
/// uncomment `key_values` with the new secret and add the key next to the
/// old one.
fn add_new_key(listeners: &str, new_secret: &[u8], version: &str) -> String {
    replace_exact(
        listeners,
        &[
            (
                KEY_VALUES_TEMPLATE.to_string(),
                format!(
                    "                  key_values:\n                    {NEW_KEY_ENV}: \"{}\"\n",
                    encode_secret(new_secret)
                ),
            ),
            (
                OLD_KEY_ENTRY.to_string(),
                format!(
                    "{OLD_KEY_ENTRY},\n                      {{\"kid\": \"{NEW_KID}\", \"alg\": \"HS256\", \"secret_env\": \"{NEW_KEY_ENV}\"}}"
                ),
            ),
            (
                "version_info: \"2026-11\"".to_string(),
                format!("version_info: \"{version}\""),
            ),
        ],
    )
    .unwrap()
}

/// Step 3: drop the old key and its variable.
fn drop_old_key(listeners_with_both: &str, version: &str) -> String {
    replace_exact(
        listeners_with_both,
        &[
            (
                format!("{OLD_KEY_ENTRY},\n                      "),
                String::new(),
            ),
            (
                format!("                  host_env_keys: [{KEY_ENV}]\n"),
                String::new(),
            ),
            (
                "version_info: \"2026-12-a\"".to_string(),
                format!("version_info: \"{version}\""),
            ),
        ],
    )
    .unwrap()
}

/// The shipped rotation layout, with the stand-in links go to, its
/// `/etc/mksgate` and the listener file as started.
struct Gateway {
    shipped: ShippedGateway,
    esxi: Standin,
}

impl std::ops::Deref for Gateway {
    type Target = ShippedGateway;
    fn deref(&self) -> &ShippedGateway {
        &self.shipped
    }
}

async fn start_gateway(key_a: &[u8], extra_args: &[&str]) -> Gateway {
    let opts = StartOpts {
        secret: Some(key_a.to_vec()),
        extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        ..StartOpts::default()
    };
    let shipped = ShippedGateway::start_with(Layout::Rotation, opts)
        .await
        .unwrap();
    let esxi = shipped.standins[0].clone();
    assert_eq!(esxi.name(), STATIC_HOSTS[0].0);
    Gateway { shipped, esxi }
}

impl Gateway {
    fn etc(&self) -> &RotationDir {
        &self.shipped.rotation.as_ref().unwrap().0
    }

    fn listeners(&self) -> &str {
        &self.shipped.rotation.as_ref().unwrap().1
    }
}

impl Gateway {
    fn opts(&self) -> ClientOpts {
        ClientOpts::new()
            .connect_to(self.addr)
            .pin(self.cert.cert_der.clone())
            .header("Origin", ORIGIN)
            .wmks_protocols()
            .timeout(T)
    }

    /// One link signed with (`secret`, `kid`) for a fresh ticket.
    async fn try_link(&self, secret: &[u8], kid: &str) -> Result<Outcome> {
        let ticket = self.esxi.issue_ticket();
        let token = mint(secret, kid, self.esxi.name(), &ticket);
        connect(
            &format!("wss://{GATEWAY}/console?token={token}"),
            &self.opts(),
        )
        .await
    }

    /// A link with this key is admitted and carries bytes both ways.
    async fn admitted(&self, secret: &[u8], kid: &str) -> Result<()> {
        let mut s = self.try_link(secret, kid).await?.session()?;
        verify_session(&mut s, 6).await?;
        s.expect_pushes(2, T).await?;
        s.close(T).await
    }

    /// Polls (bounded) until a link signed with this key is admitted.
    async fn wait_admitted(&self, secret: &[u8], kid: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            match self.try_link(secret, kid).await.unwrap() {
                Outcome::Upgraded(mut s) => {
                    verify_session(&mut s, 6).await.unwrap();
                    s.close(T).await.unwrap();
                    return start.elapsed();
                }
                Outcome::Refused(r) => {
                    assert_eq!(
                        (r.status, r.header("x-mksgate-decision")),
                        (403, Some("bad_signature")),
                        "while waiting for kid {kid} to be accepted: {}",
                        r.body_text()
                    );
                }
            }
            assert!(
                start.elapsed() < within,
                "kid {kid} not accepted within {within:?} of the file replace; log:\n{}",
                self.envoy.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls (bounded) until a link signed with this key is refused with
    /// `bad_signature`.
    async fn wait_refused(&self, secret: &[u8], kid: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            match self.try_link(secret, kid).await.unwrap() {
                Outcome::Upgraded(s) => {
                    s.close(T).await.unwrap();
                }
                Outcome::Refused(r) => {
                    assert_eq!(
                        (r.status, r.header("x-mksgate-decision"), r.body_text()),
                        (403, Some("bad_signature"), "bad_signature\n".to_string())
                    );
                    return start.elapsed();
                }
            }
            assert!(
                start.elapsed() < within,
                "kid {kid} still accepted {within:?} after the file replace; log:\n{}",
                self.envoy.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A session kept streaming in the background: numbered frames echoed and
/// checked byte for byte, push frames checked, until told to stop.
struct Streaming {
    echoed: Arc<AtomicU64>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Session>>,
}

fn keep_streaming(mut s: Session) -> Streaming {
    let echoed = Arc::new(AtomicU64::new(0));
    let counter = echoed.clone();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let rep = verify_session_with(&mut s, 4, 2, T)
                .await
                .context("the open session stopped carrying bytes")?;
            counter.fetch_add(rep.echoed, Ordering::SeqCst);
            tokio::select! {
                _ = &mut stopped => return Ok(s),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });
    Streaming { echoed, stop, task }
}

impl Streaming {
    /// Asserts the session is still running and moved at least `frames`
    /// more frames within `within`.
    async fn assert_flowing(&self, frames: u64, within: Duration) {
        let start = self.echoed.load(Ordering::SeqCst);
        let deadline = Instant::now() + within;
        while self.echoed.load(Ordering::SeqCst) < start + frames {
            assert!(
                !self.task.is_finished(),
                "the session opened before the update ended"
            );
            assert!(
                Instant::now() < deadline,
                "the open session passed no bytes for {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Session {
        let _ = self.stop.send(());
        self.task
            .await
            .unwrap()
            .expect("the session opened before the updates failed")
    }
}

/// (`lds.update_success`, `lds.update_rejected` + `lds.update_failure`)
async fn lds_updates(envoy: &Envoy) -> (u64, u64) {
    let s = envoy.stats().await.unwrap();
    let get = |k: &str| s.get(k).copied().unwrap_or(0);
    (
        get("listener_manager.lds.update_success"),
        get("listener_manager.lds.update_rejected") + get("listener_manager.lds.update_failure"),
    )
}

async fn wait_lds_success(envoy: &Envoy, at_least: u64) {
    envoy
        .wait_stat(
            "listener_manager.lds.update_success",
            |v| v >= at_least,
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}; log:\n{}", envoy.log_tail(40)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_add_then_drop_a_key_without_restart() {
    bounded(180, async {
        let key_a = random_bytes::<32>();
        let key_b = random_bytes::<32>();
        let gw = start_gateway(&key_a, &[]).await;
        let pid = gw.envoy.pid();
        let (initial, bad) = lds_updates(&gw.envoy).await;
        assert_eq!((initial, bad), (1, 0), "the initial file load");

        // Before: A works, B is unknown.
        gw.admitted(&key_a, KID).await.unwrap();
        let r = gw
            .try_link(&key_b, NEW_KID)
            .await
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!(r.header("x-mksgate-decision"), Some("bad_signature"));

        // A console opened with key A, kept streaming throughout.
        let ticket = gw.esxi.issue_ticket();
        let used_token = mint(&key_a, KID, gw.esxi.name(), &ticket);
        let link = format!("wss://{GATEWAY}/console?token={used_token}");
        let mut first = connect(&link, &gw.opts()).await.unwrap().session().unwrap();
        verify_session(&mut first, 11).await.unwrap();
        let streaming = keep_streaming(first);
        streaming.assert_flowing(4, T).await;

        let vms_created = gw
            .envoy
            .stat("wasm.envoy.wasm.runtime.v8.created")
            .await
            .unwrap();
        // 1. Add key B (its secret in the listener file), replace atomically.
        let with_both = add_new_key(gw.listeners(), &key_b, "2026-12-a");
        gw.etc().replace_listeners(&with_both).unwrap();
        let took = gw
            .wait_admitted(&key_b, NEW_KID, Duration::from_secs(15))
            .await;
        eprintln!("rotation: key B admitted {took:?} after the file was replaced");
        wait_lds_success(&gw.envoy, initial + 1).await;
        assert_eq!(lds_updates(&gw.envoy).await, (initial + 1, 0));
        gw.admitted(&key_a, KID).await.unwrap();
        gw.admitted(&key_b, NEW_KID).await.unwrap();
        streaming.assert_flowing(8, T).await;
        // A changed VM environment means a fresh VM (the old one could not
        // see the new variable) ...
        assert!(
            gw.envoy
                .stat("wasm.envoy.wasm.runtime.v8.created")
                .await
                .unwrap()
                > vms_created
        );
        // As listeners.yaml warns: Envoy does not redact VM environment
        // values, so the new secret shows in the admin /config_dump.
        let dump = gw.envoy.admin_get("/config_dump").await.unwrap();
        assert!(dump.body_text().contains(&encode_secret(&key_b)));
        // ... and the one-time-link table outlived the update (the new VM
        // shares it: same vm_id).
        let r = connect(&link, &gw.opts()).await.unwrap().refusal().unwrap();
        assert_eq!(
            (r.status, r.header("x-mksgate-decision")),
            (403, Some("replayed"))
        );

        // 3. Drop key A, replace atomically again.
        let only_b = drop_old_key(&with_both, "2026-12-b");
        gw.etc().replace_listeners(&only_b).unwrap();
        let took = gw.wait_refused(&key_a, KID, Duration::from_secs(15)).await;
        eprintln!("rotation: key A refused {took:?} after the file was replaced");
        wait_lds_success(&gw.envoy, initial + 2).await;
        assert_eq!(lds_updates(&gw.envoy).await, (initial + 2, 0));
        gw.admitted(&key_b, NEW_KID).await.unwrap();
        let r = gw.try_link(&key_a, KID).await.unwrap().refusal().unwrap();
        assert_eq!(
            (
                r.status,
                r.header("x-mksgate-decision"),
                r.body_text().as_str()
            ),
            (403, Some("bad_signature"), "bad_signature\n")
        );

        // The console opened with key A before both updates is still open
        // and intact, byte for byte in both directions.
        streaming.assert_flowing(8, T).await;
        let mut first = streaming.finish().await;
        let rep = verify_session(&mut first, 11).await.unwrap();
        assert_eq!(rep.echoed, 11);
        first.expect_pushes(3, T).await.unwrap();
        let frames_sent = first.sent;
        first.close(T).await.unwrap();
        let rec = gw
            .esxi
            .requests()
            .into_iter()
            .find(|r| r.ticket.as_deref() == Some(ticket.as_str()))
            .unwrap();
        assert_eq!(rec.status, Some(101));
        assert_eq!(rec.frames_echoed, frames_sent);

        // No restart: same process, same listener socket (in-place update),
        // the listener was modified twice and none was refused.
        assert_eq!(gw.envoy.pid(), pid);
        assert_eq!(
            gw.envoy.listener_addr(LISTENER).await.unwrap().port(),
            gw.addr.port()
        );
        let stats = gw.envoy.stats().await.unwrap();
        let stat = |k: &str| stats.get(k).copied().unwrap_or(0);
        assert_eq!(stat("listener_manager.listener_modified"), 2);
        assert_eq!(stat("listener_manager.listener_in_place_updated"), 2);
        assert_eq!(stat("listener_manager.lds.update_rejected"), 0);
        assert!(stat("wasmcustom.mksgate.decision.replayed") >= 1);
        let log = gw.envoy.log();
        assert!(
            log.contains("mksgate: configured: 2 key(s)")
                && log.contains("mksgate: configured: 1 key(s)"),
            "{}",
            gw.envoy.log_tail(40)
        );
        assert!(
            !log.contains(&encode_secret(&key_b)),
            "a secret reached the log"
        );
    })
    .await;
}

/// A listener file the filter refuses (a short secret for the new key)
/// leaves the running config in force: Envoy counts the update as rejected,
/// logs the field, and both the old key and open sessions keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_a_bad_key_keeps_the_running_config() {
    bounded(120, async {
        let key_a = random_bytes::<32>();
        let gw = start_gateway(&key_a, &[]).await;
        let mut open = gw.try_link(&key_a, KID).await.unwrap().session().unwrap();
        verify_session(&mut open, 4).await.unwrap();

        let short = random_bytes::<24>();
        gw.etc()
            .replace_listeners(&add_new_key(gw.listeners(), &short, "2026-12-bad"))
            .unwrap();
        gw.envoy
            .wait_stat(
                "listener_manager.lds.update_rejected",
                |v| v >= 1,
                Duration::from_secs(15),
            )
            .await
            .unwrap_or_else(|e| panic!("{e:#}; log:\n{}", gw.envoy.log_tail(40)));
        let log = gw.envoy.log();
        assert!(
            log.contains("mksgate: config refused: keys[1].secret_env:"),
            "{}",
            gw.envoy.log_tail(40)
        );
        assert!(
            !log.contains(&encode_secret(&short)),
            "a secret reached the log"
        );
        gw.admitted(&key_a, KID).await.unwrap();
        // The new kid is still unknown (any secret: the update never applied).
        let other = random_bytes::<32>();
        let r = gw
            .try_link(&other, NEW_KID)
            .await
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!(r.header("x-mksgate-decision"), Some("bad_signature"));
        verify_session(&mut open, 4).await.unwrap();
        open.close(T).await.unwrap();
    })
    .await;
}

/// Measures what a listener update does to consoles opened before it:
/// Envoy drains the old listener version, so they are closed once
/// `--drain-time-s` has passed after the update. With 3 s here, the old
/// session ends about 3 s after the update while a session opened after
/// the update goes on. (The shipped default of 600 s means: a console older
/// than the update lives 10 more minutes; hence the layout's advice to
/// start Envoy with --drain-time-s as long as a console may last.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_sessions_survive_the_update_for_the_drain_time() {
    const DRAIN_S: u64 = 3;
    bounded(120, async {
        let key_a = random_bytes::<32>();
        let key_b = random_bytes::<32>();
        let drain = DRAIN_S.to_string();
        let gw = start_gateway(&key_a, &["--drain-time-s", &drain]).await;
        let mut old = gw.try_link(&key_a, KID).await.unwrap().session().unwrap();
        verify_session(&mut old, 4).await.unwrap();

        gw.etc()
            .replace_listeners(&add_new_key(gw.listeners(), &key_b, "2026-12-a"))
            .unwrap();
        let updated = Instant::now();
        wait_lds_success(&gw.envoy, 2).await;
        assert_eq!(
            gw.envoy
                .stat("listener_manager.total_filter_chains_draining")
                .await
                .unwrap(),
            1
        );
        let mut new = gw
            .try_link(&key_b, NEW_KID)
            .await
            .unwrap()
            .session()
            .unwrap();
        verify_session(&mut new, 4).await.unwrap();

        // The old session keeps passing bytes during the drain ...
        verify_session(&mut old, 4).await.unwrap();
        // ... and is closed when it ends.
        let end = old
            .wait_end(Duration::from_secs(DRAIN_S + 30))
            .await
            .unwrap();
        let lived = updated.elapsed();
        eprintln!(
            "rotation: with --drain-time-s {DRAIN_S}, a session opened before the update ended \
             {lived:?} after it ({end:?})"
        );
        // Cut at the transport (a reset), without a WebSocket close.
        assert!(
            matches!(end, SessionEnd::Eof | SessionEnd::Error(_)),
            "{end:?}"
        );
        assert!(
            lived >= Duration::from_millis(DRAIN_S * 1000 * 8 / 10),
            "closed after {lived:?}, before the drain time"
        );
        assert!(
            lived <= Duration::from_secs(DRAIN_S + 15),
            "closed after {lived:?}"
        );
        // The session opened under the new version is untouched.
        verify_session(&mut new, 4).await.unwrap();
        new.close(T).await.unwrap();
        // The old filter chain was draining until then, and is gone now.
        gw.envoy
            .wait_stat(
                "listener_manager.total_filter_chains_draining",
                |v| v == 0,
                T,
            )
            .await
            .unwrap();
    })
    .await;
}
