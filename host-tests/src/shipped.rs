//! The shipped Envoy configs as the tests load them: the very files under
//! `envoy/`, with only addresses, ports, paths and pins substituted. Every
//! substitution must find its text (`replace_exact`), so a shipped file that
//! drifts from this list fails the tests instead of being silently untested.

use crate::envoy::{read_envoy_file, replace_exact, workspace_root};
use anyhow::{bail, Result};
use std::net::SocketAddr;
use std::path::PathBuf;

/// What the shipped plugin configuration expects of links and clients.
pub const KEY_ENV: &str = "MKSGATE_KEY_2026_11";
pub const KID: &str = "2026-11";
pub const AUDIENCE: &str = "console.example.com";
pub const ISSUER: &str = "portal.example.com";
pub const ORIGIN: &str = "https://portal.example.com";
pub const LISTENER: &str = "console_gateway";
pub const CLUSTER_HEADER: &str = "x-mksgate-cluster";
/// The ESXi hosts named in static-clusters.yaml, and their clusters.
pub const STATIC_HOSTS: [(&str, &str); 2] = [
    ("vesxi01.sec.lab", "esxi_vesxi01"),
    ("vesxi02.sec.lab", "esxi_vesxi02"),
];
/// The suffix and cluster named in dynamic.yaml.
pub const DYNAMIC_SUFFIX: &str = ".esxi.example.com";
pub const DYNAMIC_CLUSTER: &str = "esxi_dynamic";

/// File names the configs point at inside Envoy's temporary directory
/// (write them with `EnvoyOpts::files`).
pub const GATEWAY_CERT_FILE: &str = "gateway.crt";
pub const GATEWAY_KEY_FILE: &str = "gateway.key";
pub const ESXI_CA_FILE: &str = "esxi-ca.pem";

/// The shipped module, as `make build` / `scripts/build-module.sh` leave it.
pub fn module_path() -> Result<PathBuf> {
    let path = workspace_root().join("target/wasm32-wasip1/release/mksgate_filter.wasm");
    if !path.is_file() {
        bail!(
            "no shipped module at {}: run `make build` (or scripts/build-module.sh) first",
            path.display()
        );
    }
    Ok(path)
}

/// An ESXi host of static-clusters.yaml as a test runs it.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// SHA-256 of its certificate, hex.
    pub pin: String,
}

fn common(text: &str) -> Result<String> {
    let module = module_path()?;
    replace_exact(
        text,
        &[
            (
                "port_value: 443 }   # CHANGE",
                "port_value: 0 }".to_string(),
            ),
            (
                "address: 127.0.0.1, port_value: 9901",
                "address: 127.0.0.1, port_value: 0".to_string(),
            ),
            (
                "/etc/mksgate/tls/gateway.crt",
                format!("@TMPDIR@/{GATEWAY_CERT_FILE}"),
            ),
            (
                "/etc/mksgate/tls/gateway.key",
                format!("@TMPDIR@/{GATEWAY_KEY_FILE}"),
            ),
            (
                "/etc/mksgate/mksgate_filter.wasm",
                module.to_string_lossy().into_owned(),
            ),
        ],
    )
}

/// `envoy/static-clusters.yaml` with its two ESXi hosts at `esxi`.
pub fn static_clusters(esxi: &[Upstream; 2]) -> Result<String> {
    let text = common(&read_envoy_file("static-clusters.yaml")?)?;
    replace_exact(
        &text,
        &[
            (
                "socket_address: { address: 10.0.0.11, port_value: 443 }",
                format!(
                    "socket_address: {{ address: {}, port_value: {} }}",
                    esxi[0].addr.ip(),
                    esxi[0].addr.port()
                ),
            ),
            (
                "1111111111111111111111111111111111111111111111111111111111111111",
                esxi[0].pin.clone(),
            ),
            (
                "socket_address: { address: 10.0.0.12, port_value: 443 }",
                format!(
                    "socket_address: {{ address: {}, port_value: {} }}",
                    esxi[1].addr.ip(),
                    esxi[1].addr.port()
                ),
            ),
            (
                "2222222222222222222222222222222222222222222222222222222222222222",
                esxi[1].pin.clone(),
            ),
        ],
    )
}

/// `envoy/dynamic.yaml` with its DNS server at `dns` (the ESXi CA goes in
/// `ESXI_CA_FILE`).
pub fn dynamic(dns: SocketAddr) -> Result<String> {
    let text = common(&read_envoy_file("dynamic.yaml")?)?;
    replace_exact(
        &text,
        &[
            (
                "socket_address: { address: 10.0.0.53, port_value: 53 }",
                format!(
                    "socket_address: {{ address: {}, port_value: {} }}",
                    dns.ip(),
                    dns.port()
                ),
            ),
            (
                "/etc/mksgate/tls/esxi-ca.pem",
                format!("@TMPDIR@/{ESXI_CA_FILE}"),
            ),
        ],
    )
}

/// The long timers the shipped configs set for console sessions.
pub const SHIPPED_IDLE_TIMEOUT: &str = "3600s";

/// Shortens the console idle timers (HCM `stream_idle_timeout`, connection
/// `idle_timeout`, route `idle_timeout`) so a test can watch them work;
/// fails unless the shipped values are the long ones.
pub fn with_idle_timeout(yaml: &str, timeout: &str) -> Result<String> {
    replace_exact(
        yaml,
        &[
            (
                format!("stream_idle_timeout: {SHIPPED_IDLE_TIMEOUT}"),
                format!("stream_idle_timeout: {timeout}"),
            ),
            (
                format!("  idle_timeout: {SHIPPED_IDLE_TIMEOUT}"),
                format!("  idle_timeout: {timeout}"),
            ),
        ],
    )
}
