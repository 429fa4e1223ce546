//! Revocation across a fleet, in real Envoy with the shipped
//! `envoy/fleet.yaml` and module and a real 3-member etcd (TLS, client
//! certificates, access control on): `mksgate revoke` writes one key, and
//! every gateway closes the live consoles it names within `poll_ms` + 1 s
//! and refuses its new links (`revoked`) until the revocation's lease ends.
//! With etcd gone, open consoles stay, and new links are refused
//! (`revocation_unavailable`) once the view is older than `max_stale_ms`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::StreamExt;
use mksgate_host_tests::bounded;
use mksgate_host_tests::client::{verify_session, Session};
use mksgate_host_tests::fleet::Fleet;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// One fleet at a time (fixed etcd addresses).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The shipped `poll_ms`.
const POLL: Duration = Duration::from_millis(1000);

async fn open_all(fleet: &Fleet, claims: &[serde_json::Value]) -> Vec<Session> {
    let mut sessions = Vec::new();
    for (i, c) in claims.iter().enumerate() {
        let path = fleet.path_with(i, 60, c).unwrap();
        let mut s = fleet.open(i % fleet.gateways.len(), &path).await.unwrap();
        assert_eq!(verify_session(&mut s, 1).await.unwrap().echoed, 1);
        sessions.push(s);
    }
    sessions
}

/// Waits for every session to end, all at once; how long after `t0` each
/// did, sorted.
async fn ended(sessions: &mut [Session], t0: Instant) -> Vec<Duration> {
    let waits = sessions.iter_mut().map(|s| async move {
        // The moment the end is seen (a close frame, EOF or a reset), not
        // after the close handshake `wait_end` also waits for.
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), s.ws.next()).await;
            match next.expect("the console was not closed") {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return t0.elapsed(),
                Some(Ok(_)) => {}
            }
        }
    });
    let mut times = futures_util::future::join_all(waits).await;
    times.sort();
    times
}

async fn still_open(sessions: &mut [Session]) {
    for s in sessions.iter_mut() {
        assert_eq!(verify_session(s, 2).await.unwrap().echoed, 2);
    }
}

fn esxi_sessions(fleet: &Fleet) -> usize {
    fleet.standins.iter().map(|s| s.active_sessions()).sum()
}

/// Envoy's default HCM `delayed_close_timeout`, which the shipped files keep.
const DELAYED_CLOSE: Duration = Duration::from_secs(1);

/// When (after `t0`) the stand-ins held only `n` sessions.
async fn esxi_down_to(fleet: &Fleet, n: usize, t0: Instant) -> Duration {
    while esxi_sessions(fleet) > n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "ESXi kept its side open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t0.elapsed()
}

async fn gauge(fleet: &Fleet, name: &str) -> u64 {
    let mut sum = 0;
    for g in &fleet.gateways {
        sum += g.stats().await.unwrap().get(name).copied().unwrap_or(0);
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_sub_ends_its_consoles_on_every_gateway_until_the_lease_ends() {
    bounded(180, async {
        let _serial = SERIAL.lock().await;
        let fleet = Fleet::start(2, 1).await.unwrap();
        let alice: Vec<_> = (0..10).map(|_| json!({"sub": "alice"})).collect();
        let bob: Vec<_> = (0..10).map(|_| json!({"sub": "bob"})).collect();
        let mut alices = open_all(&fleet, &alice).await;
        let mut bobs = open_all(&fleet, &bob).await;
        assert_eq!(esxi_sessions(&fleet), 20);
        assert_eq!(gauge(&fleet, "wasmcustom.mksgate.consoles_open").await, 20);

        let (status, out) = fleet
            .revoke(&["--sub", "alice", "--ttl", "6", "--reason", "offboarded"])
            .unwrap();
        assert_eq!(status, 0, "{out}");
        assert!(!out.contains("alice"), "the value never shows: {out}");
        let t0 = Instant::now();
        let (times, esxi) = tokio::join!(ended(&mut alices, t0), esxi_down_to(&fleet, 10, t0));
        println!(
            "revoke --sub: 10 consoles on 2 gateways closed: ESXi's side {esxi:.2?}, the clients' p50 {:.2?}, max {:.2?} after the write",
            times[times.len() / 2],
            times[times.len() - 1]
        );
        assert!(esxi <= POLL + Duration::from_secs(1), "{esxi:?}");
        // The client's side ends up to the HCM's delayed_close_timeout
        // (Envoy's default, 1 s) later: Envoy waits that long for the
        // client to close first.
        assert!(times[times.len() - 1] <= POLL + DELAYED_CLOSE + Duration::from_secs(1), "{times:?}");
        still_open(&mut bobs).await;
        // New links for alice are refused on both gateways, before they are spent.
        for g in 0..2 {
            let path = fleet.path_with(g, 60, &json!({"sub": "alice"})).unwrap();
            let r = fleet.fire(g, &path).await;
            assert_eq!((r.status, r.decision.as_deref()), (403, Some("revoked")), "gateway {g}");
        }
        let ends = fleet.fleet_counters("console_end").await.unwrap();
        assert_eq!(ends.get("revoked"), Some(&10), "{ends:?}");
        let decisions = fleet.fleet_counters("decision").await.unwrap();
        assert_eq!(decisions.get("revoked"), Some(&2));
        assert_eq!(gauge(&fleet, "wasmcustom.mksgate.consoles_open").await, 10);
        let (status, list) = fleet.revoke(&["--list"]).unwrap();
        assert_eq!(status, 0, "{list}");
        assert!(list.contains("sub/") && list.contains("offboarded") && list.contains("1 revocation(s)"), "{list}");
        assert!(!list.contains("alice"), "{list}");

        // The lease ends (6 s): alice is admitted again.
        let mut back = None;
        for _ in 0..100 {
            let path = fleet.path_with(0, 60, &json!({"sub": "alice"})).unwrap();
            if fleet.fire(0, &path).await.status == 101 {
                back = Some(t0.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let back = back.expect("alice was never admitted again");
        println!("the revocation's lease (6 s) ended: alice admitted again {back:.1?} after the write");
        assert!(back >= Duration::from_secs(5), "{back:?}");
        still_open(&mut bobs).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_and_jti_revocations_on_every_worker_and_lifting_one() {
    bounded(180, async {
        let _serial = SERIAL.lock().await;
        // One gateway, two workers: every worker closes its own consoles.
        let fleet = Fleet::start(1, 2).await.unwrap();
        let red: Vec<_> = (0..4).map(|_| json!({"tenant": "t-red"})).collect();
        let blue: Vec<_> = (0..4).map(|_| json!({"tenant": "t-blue"})).collect();
        let mut reds = open_all(&fleet, &red).await;
        let mut blues = open_all(&fleet, &blue).await;
        let (status, out) = fleet.revoke(&["--tenant", "t-red"]).unwrap();
        assert_eq!(status, 0, "{out}");
        let t0 = Instant::now();
        let (times, esxi) = tokio::join!(ended(&mut reds, t0), esxi_down_to(&fleet, 4, t0));
        println!("revoke --tenant: 4 consoles on 2 workers closed: ESXi's side {esxi:.2?}, the clients' max {:.2?}", times[3]);
        assert!(esxi <= POLL + Duration::from_secs(1), "{esxi:?}");
        assert!(times[3] <= POLL + DELAYED_CLOSE + Duration::from_secs(1), "{times:?}");
        still_open(&mut blues).await;

        // A jti revoked before its first use is refused, and not spent:
        // lifted, the same link is admitted.
        let path = fleet
            .path_with(0, 60, &json!({"jti": "j-burnt", "tenant": "t-blue"}))
            .unwrap();
        let (status, out) = fleet.revoke(&["--jti", "j-burnt"]).unwrap();
        assert_eq!(status, 0, "{out}");
        tokio::time::sleep(POLL + Duration::from_millis(500)).await;
        let r = fleet.fire(0, &path).await;
        assert_eq!((r.status, r.decision.as_deref()), (403, Some("revoked")));
        let (status, out) = fleet.revoke(&["--delete", "--jti", "j-burnt"]).unwrap();
        assert_eq!(status, 0, "{out}");
        assert!(out.contains("lifted jti/"), "{out}");
        // Lifting is a deleted key: the next read sees the count fall and
        // reads everything again.
        tokio::time::sleep(POLL + Duration::from_millis(500)).await;
        assert_eq!(
            fleet.fire(0, &path).await.status,
            101,
            "the link was not spent"
        );
        assert_eq!(
            fleet.fire(0, &path).await.decision.as_deref(),
            Some("replayed")
        );

        let (status, out) = fleet
            .revoke(&["--delete", "--jti", "never-revoked"])
            .unwrap();
        assert_eq!(status, 1, "{out}");
        assert!(out.contains("no revocation"), "{out}");
        let (status, out) = fleet.revoke(&["--sub", "a", "--tenant", "b"]).unwrap();
        assert_eq!(status, 2, "one of them: {out}");
        let ends = fleet.counters(0, "console_end").await.unwrap();
        assert_eq!(ends.get("revoked"), Some(&4));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_gone_consoles_stay_and_new_links_wait_for_a_fresh_view() {
    bounded(180, async {
        let _serial = SERIAL.lock().await;
        let stale_ms = 3000;
        let fleet = Fleet::start_with(
            1,
            1,
            &[(r#""max_stale_ms": 30000"#, &format!(r#""max_stale_ms": {stale_ms}"#))],
        )
        .await
        .unwrap();
        let mut open = open_all(&fleet, &[json!({}), json!({})]).await;
        for i in 0..3 {
            fleet.etcd.kill(i);
        }
        let down = Instant::now();
        // Within max_stale_ms the view stands: links fail at the store.
        let path = fleet.valid_path(0, 60).unwrap();
        assert_eq!(fleet.fire(0, &path).await.decision.as_deref(), Some("replay_unavailable"));
        tokio::time::sleep(Duration::from_millis(stale_ms + 1000).saturating_sub(down.elapsed())).await;
        let path = fleet.valid_path(1, 60).unwrap();
        let r = fleet.fire(0, &path).await;
        assert_eq!((r.status, r.decision.as_deref()), (503, Some("revocation_unavailable")));
        still_open(&mut open).await;
        let reads = fleet.counters(0, "revocation.read").await.unwrap();
        assert!(reads.get("error").copied().unwrap_or(0) >= 2, "{reads:?}");
        assert!(fleet.gateways[0].log().contains(r#""outcome":"stale""#));

        for i in 0..3 {
            fleet.etcd.restart(i).unwrap();
        }
        let etcd = &fleet.etcd;
        tokio::task::block_in_place(|| etcd.wait_ready(Duration::from_secs(30))).unwrap();
        let t0 = Instant::now();
        let mut admitted = None;
        for i in 0..100 {
            let path = fleet.valid_path(10 + i, 60).unwrap();
            if fleet.fire(0, &path).await.status == 101 {
                admitted = Some(t0.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let after = admitted.expect("no admission after etcd came back");
        println!("etcd down {:.1?}: 2 consoles stayed open; admitted again {after:.1?} after etcd was ready", down.elapsed());
        still_open(&mut open).await;
    })
    .await;
}
