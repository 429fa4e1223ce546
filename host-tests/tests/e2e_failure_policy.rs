//! What Envoy 1.40 does after a VM trap, under each `failure_policy`,
//! measured with the test-only module that traps on demand
//! (`tools/trap-filter`): which requests fail, whether the worker recovers,
//! and whether shared data (where mksgate keeps its one-time-link table)
//! survives. The shipped configs' choice (`FAIL_RELOAD`) rests on this.
//!
//! The route behind the filter answers 418: a request that gets it passed
//! the filter unchecked (a policy failing open), which must never happen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use mksgate_host_tests::envoy::{Envoy, EnvoyOpts};
use mksgate_host_tests::shipped::trap_module_config;
use mksgate_host_tests::wire::WireTarget;

async fn get(wire: &WireTarget, header: &str) -> u16 {
    let head = format!("GET / HTTP/1.1\r\nHost: t\r\n{header}\r\n");
    wire.send(head.as_bytes()).await.map_or(0, |r| r.status)
}

struct Run {
    envoy: Envoy,
    wire: WireTarget,
}

async fn start(policy: &str) -> Run {
    let envoy = Envoy::start(&trap_module_config(policy).unwrap(), EnvoyOpts::default())
        .await
        .unwrap();
    let wire = WireTarget::plain(envoy.listener_addr("http").await.unwrap());
    Run { envoy, wire }
}

/// Statuses of `n` plain requests 100 ms apart.
async fn poll(run: &Run, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(&run.wire, "").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

/// Polls every 50 ms (bounded) until a request is served by the filter
/// again; how long it took and every status seen.
async fn until_served(run: &Run) -> (Duration, Vec<u16>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let s = get(&run.wire, "").await;
        seen.push(s);
        if s == 200 {
            return (start.elapsed(), seen);
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `replay::init` relies on: Envoy hands an empty shared-data value
/// back as no value at all, with its CAS (so "no CAS" is the only sign of a
/// bucket that does not exist).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_returns_an_empty_shared_value_as_none_with_a_cas() {
    let run = start("FAIL_CLOSED").await;
    assert_eq!(get(&run.wire, "x-write-empty: bucket-0\r\n").await, 204);
    assert_eq!(get(&run.wire, "x-read: never-written\r\n").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_everything_after_one_trap() {
    let run = start("FAIL_CLOSED").await;
    assert_eq!(get(&run.wire, "x-record: link-1\r\n").await, 201);
    assert_eq!(get(&run.wire, "x-read: link-1\r\n").await, 200);
    assert_eq!(get(&run.wire, "x-trap: 1\r\n").await, 503);
    let after = poll(&run, 20).await;
    let read = get(&run.wire, "x-read: link-1\r\n").await;
    let stats = run.envoy.stats().await.unwrap();
    println!("FAIL_CLOSED: after one trap, 2 s of requests: {after:?}; shared-data read: {read}");
    assert!(after.iter().all(|s| *s == 503), "{after:?}");
    assert_eq!(read, 503, "the worker cannot even be asked");
    // No counter tells: only the log and the 503s show it.
    assert_eq!(stats.get("wasm.trap.vm_reload_success"), Some(&0));
    assert!(run
        .envoy
        .log()
        .contains("Function: proxy_on_request_headers failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_reload_recovers_keeps_shared_data_and_never_fails_open() {
    let run = start("FAIL_RELOAD").await;
    assert_eq!(get(&run.wire, "x-record: link-1\r\n").await, 201);
    assert_eq!(get(&run.wire, "x-trap: 1\r\n").await, 503);
    // One trap: a later request gets a fresh VM (at once, unless the last
    // reload or start was under a second ago: Envoy backs off).
    let (first, first_during) = until_served(&run).await;
    // Shared data outlived the VM: the one-time-link table would too.
    assert_eq!(get(&run.wire, "x-read: link-1\r\n").await, 200);
    let stats = run.envoy.stats().await.unwrap();
    assert_eq!(stats.get("wasm.trap.vm_reload_success"), Some(&1));

    // A burst of traps: Envoy backs off reloading and refuses meanwhile.
    let mut burst = Vec::new();
    for _ in 0..4 {
        burst.push(get(&run.wire, "x-trap: 1\r\n").await);
    }
    let (recovered, during) = until_served(&run).await;
    assert_eq!(get(&run.wire, "x-read: link-1\r\n").await, 200);
    let stats = run.envoy.stats().await.unwrap();
    println!(
        "FAIL_RELOAD: one trap: served again after {first:?} ({first_during:?}); burst of 4 traps {burst:?}, then {during:?} until recovery after {recovered:?}; reload counters: success {:?}, backoff {:?}, failure {:?}",
        stats.get("wasm.trap.vm_reload_success"),
        stats.get("wasm.trap.vm_reload_backoff"),
        stats.get("wasm.trap.vm_reload_failure"),
    );
    assert!(burst.iter().all(|s| *s == 503), "{burst:?}");
    for polled in [&first_during, &during] {
        assert!(polled.iter().all(|s| *s == 503 || *s == 200), "{polled:?}");
    }
    assert!(!burst.contains(&418), "failed open");
    assert!(stats
        .get("wasm.trap.vm_reload_backoff")
        .is_some_and(|n| *n > 0));
}
