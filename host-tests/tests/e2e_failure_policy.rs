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

/// What a VM reload does to consoles already open (issue 24, event 3): ten
/// WebSocket consoles opened through the module's VM (one worker), then
/// that VM traps and Envoy replaces it under `FAIL_RELOAD`. The module
/// exports no body callbacks, yet proxy-wasm-cpp-host checks the VM's
/// failure before it looks for the export (`CHECK_FAIL_HTTP` at the top of
/// `ContextBase::onRequestBody`/`onResponseBody`): the next frame of every
/// console of the failed VM fails that stream. So every console on the
/// worker ends (the client sees a reset), new consoles open through the new
/// VM, and Envoy keeps running. Measured and asserted as such: a trap costs
/// the open consoles of its worker, which is why mksgate must never trap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_reload_ends_the_consoles_of_the_failed_vm_and_envoy_serves_on() {
    use mksgate_host_tests::client::{connect, verify_session, ClientOpts};
    use mksgate_host_tests::loopback;
    use mksgate_host_tests::standin::{Standin, StandinConfig};
    use mksgate_testkit::template::{replace_exact, MinimalWasm};
    mksgate_host_tests::bounded(90, async {
        let esxi = Standin::start(
            StandinConfig::new("vesxi01.sec.lab", loopback(1))
                .plain()
                .any_ticket(),
        )
        .await
        .unwrap();
        let module = mksgate_testkit::paths::test_module("trap").unwrap();
        let yaml = MinimalWasm {
            failure_policy: "FAIL_RELOAD",
            direct_status: 418,
            direct_body: "",
            ws_upstream: Some(esxi.port()),
            ..MinimalWasm::new(&module, "trap")
        }
        .render();
        let yaml = replace_exact(&yaml, &[("match: { prefix: /ws }", "match: { prefix: /ticket/ }")])
            .unwrap();
        let envoy = Envoy::start(&yaml, EnvoyOpts::default()).await.unwrap();
        let addr = envoy.listener_addr("http").await.unwrap();
        let wire = WireTarget::plain(addr);
        let opts = ClientOpts::new().header("x-pass", "1");
        let open = |i: usize| {
            let opts = opts.clone();
            async move {
                let url = format!("ws://127.0.0.1:{}/ticket/console-{i}", addr.port());
                connect(&url, &opts).await.unwrap().session().unwrap()
            }
        };
        let mut consoles = Vec::new();
        for i in 0..10 {
            let mut s = open(i).await;
            verify_session(&mut s, 2).await.unwrap();
            consoles.push(s);
        }
        let vms = envoy.stat("wasm.envoy.wasm.runtime.v8.created").await.unwrap();
        assert_eq!(get(&wire, "x-trap: 1\r\n").await, 503);
        let run = Run { envoy, wire };
        let (reloaded, _) = until_served(&run).await;
        let stats = run.envoy.stats().await.unwrap();
        assert_eq!(stats.get("wasm.trap.vm_reload_success"), Some(&1));
        assert!(stats["wasm.envoy.wasm.runtime.v8.created"] > vms);
        // Each console's next frame (the stand-in pushes every 50 ms) meets
        // the failed VM.
        let mut cut = 0;
        let mut ends = Vec::new();
        for s in &mut consoles {
            if verify_session(s, 1).await.is_err() {
                cut += 1;
            }
            ends.push(s.wait_end(Duration::from_secs(5)).await.unwrap());
        }
        let mut fresh = open(99).await;
        let carried = verify_session(&mut fresh, 5).await.unwrap().echoed;
        println!(
            "FAIL_RELOAD with 10 consoles open on the worker: VM replaced {reloaded:?} after the trap; \
             {cut} of 10 consoles cut at their next frame ({:?}); a new console opened through the new VM \
             and carried {carried} frames",
            ends.first()
        );
        assert_eq!(cut, 10, "{ends:?}");
        assert_eq!(carried, 5);
        fresh.close(Duration::from_secs(5)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut envoy = run.envoy;
        assert!(envoy.is_running(), "Envoy ended with the old VM's consoles");
        assert_eq!(get(&run.wire, "").await, 200);
    })
    .await;
}
