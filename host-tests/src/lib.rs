//! Host-side test harness for mksgate.
//!
//! * [`access_log`]: the shipped JSON access log read back (tunnel and end
//!   lines, one record per decision).
//! * [`standin`]: an ESXi WebMKS endpoint stand-in (`wss://host/ticket/<t>`),
//!   in-process or as the `esxi-standin` binary with an HTTP control API.
//! * [`dns`]: a tiny UDP DNS responder for Envoy's c-ares resolver.
//! * [`envoy`]: start/validate Envoy, read its admin API, render config
//!   templates from `<workspace>/envoy/`.
//! * [`client`]: a WebSocket client with control over SNI, Host, headers and
//!   subprotocols, and byte-exact session verification.
//! * [`tls`]: test certificates (self-signed or from a test CA) and rustls
//!   configs.
//! * [`clients`]: many client addresses from one machine (per-client limits).
//! * [`io`]: plain/TLS stream and minimal HTTP/1.1 helpers.
//! * [`demo`]: `make demo` (the gateway with a live console in a browser).
//!
//! See `host-tests/README.md` for the stand-in's wire protocol.

pub mod access_log;
pub mod client;
pub mod clients;
pub mod demo;
pub mod dns;
pub mod envoy;
pub mod etcd;
pub mod fleet;
pub mod gateway;
pub mod hostile;
pub mod io;
pub mod istio_shape;
pub mod prometheus;
pub mod run;
pub mod shipped;
pub mod standin;
pub mod tls;
pub mod vm_health;
pub mod wire;
pub mod wire_fuzz;

/// The one link minter (in the testkit), here too for the tests' sake.
pub use mksgate_testkit::link;

/// Runs a test body under a time bound: a test that exceeds it fails
/// (panics) instead of hanging the suite. The one copy every test file uses.
#[allow(clippy::panic)] // failing the test is the point
pub async fn bounded<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(std::time::Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test exceeded its bound of {secs} s"));
}

/// The `p`-quantile (0.0 to 1.0) of `sorted`, nearest rank; zero when
/// empty. The one copy the tests' latency reports use.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    let last = sorted.len().saturating_sub(1);
    let i = (last as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// The loopback address `127.0.0.<n>` (every 127/8 address works on Linux
/// without configuration).
pub fn loopback(n: u8) -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n))
}
