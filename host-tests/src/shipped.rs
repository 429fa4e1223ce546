//! The shipped Envoy configs as the tests load them: the very files under
//! `envoy/`, with only addresses, ports, paths and pins substituted. Every
//! substitution must find its text (`replace_exact`), so a shipped file that
//! drifts from this list fails the tests instead of being silently untested.

use crate::envoy::{read_envoy_file, replace_exact};
use anyhow::Result;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What the shipped plugin configuration expects of links and clients.
pub use mksgate_testkit::link::{AUDIENCE, ISSUER, KEY_ENV, KID, ORIGIN};
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

/// The shipped module, and a test-only one built next to it (`noop`,
/// `trap`), where `scripts/build-module.sh` leaves them (the testkit's).
pub use mksgate_testkit::paths::{shipped_module as module_path, test_module as test_module_path};

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
/// Every document of a shipped multi-document YAML file (`envoy/<rel>`), as
/// JSON values; empty documents left out.
pub fn yaml_docs(rel: &str) -> Result<Vec<serde_json::Value>> {
    use serde::Deserialize;
    let text = read_envoy_file(rel)?;
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).map_err(|e| anyhow::anyhow!("envoy/{rel}: {e}")))
        .filter(|v| !matches!(v, Ok(serde_json::Value::Null)))
        .collect()
}

pub fn static_clusters(esxi: &[Upstream; 2]) -> Result<String> {
    static_clusters_from(&read_envoy_file("static-clusters.yaml")?, esxi)
}

/// A file laid out as `static-clusters.yaml`, its two ESXi hosts at `esxi`.
fn static_clusters_from(text: &str, esxi: &[Upstream; 2]) -> Result<String> {
    let text = common(text)?;
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

/// Files `fleet.yaml` points at for Envoy's client certificate to etcd.
pub const ETCD_CLIENT_CERT_FILE: &str = "etcd-client.crt";
/// Where `envoy/fleet.yaml` hands the VM the gateways' etcd password.
pub const ETCD_PASSWORD_ENV: &str = "MKSGATE_ETCD_PASSWORD";
pub const ETCD_CLIENT_KEY_FILE: &str = "etcd-client.key";
pub const ETCD_CA_FILE: &str = "etcd-ca.crt";

/// `envoy/fleet.yaml` with its two ESXi hosts at `esxi` and its three etcd
/// members at `etcd` (the client certificate and CA go in the `ETCD_*`
/// files).
pub fn fleet(esxi: &[Upstream; 2], etcd: &[SocketAddr; 3]) -> Result<String> {
    let text = static_clusters_from(&read_envoy_file("fleet.yaml")?, esxi)?;
    let member = |i: usize| {
        (
            format!(
                "socket_address: {{ address: 10.0.1.1{}, port_value: 2379 }} }} }}   # CHANGE",
                i + 1
            ),
            format!(
                "socket_address: {{ address: {}, port_value: {} }} }} }}",
                etcd[i].ip(),
                etcd[i].port()
            ),
        )
    };
    replace_exact(
        &text,
        &[
            member(0),
            member(1),
            member(2),
            (
                "/etc/mksgate/etcd/client.crt }   # CHANGE".into(),
                format!("@TMPDIR@/{ETCD_CLIENT_CERT_FILE} }}"),
            ),
            (
                "/etc/mksgate/etcd/client.key }         # CHANGE".into(),
                format!("@TMPDIR@/{ETCD_CLIENT_KEY_FILE} }}"),
            ),
            (
                "/etc/mksgate/etcd/ca.crt }              # CHANGE".into(),
                format!("@TMPDIR@/{ETCD_CA_FILE} }}"),
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

/// The per-test stand-in for `/etc/mksgate` of the rotation layout: the
/// gateway certificate and a copy of the module; removed on drop unless the
/// test panicked (or MKSGATE_KEEP_TMP is set).
pub struct RotationDir(PathBuf);

impl RotationDir {
    pub fn new(gateway: &crate::tls::CertKey) -> Result<RotationDir> {
        let dir = std::env::temp_dir().join(format!(
            "mksgate-rotation-{}-{}",
            std::process::id(),
            crate::link::fresh_jti()
        ));
        std::fs::create_dir_all(dir.join("tls"))?;
        std::fs::write(dir.join("tls/gateway.crt"), gateway.chain_pem())?;
        std::fs::write(dir.join("tls/gateway.key"), &gateway.key_pem)?;
        std::fs::copy(module_path()?, dir.join("mksgate_filter.wasm"))?;
        Ok(RotationDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Replace `listeners.yaml` atomically, as Envoy's docs require for a
    /// watched directory: write a temporary file in the same directory,
    /// then rename it over the old one.
    pub fn replace_listeners(&self, text: &str) -> Result<()> {
        let tmp = self.0.join(".listeners.yaml.new");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.0.join("listeners.yaml"))?;
        Ok(())
    }
}

impl Drop for RotationDir {
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("MKSGATE_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `envoy/rotation/listeners.yaml` with `/etc/mksgate` at `etc` and the
/// listener on an ephemeral port.
pub fn rotation_listeners(etc: &Path) -> Result<String> {
    replace_exact(
        &read_envoy_file("rotation/listeners.yaml")?,
        &[
            (
                "port_value: 443 }   # CHANGE",
                "port_value: 0 }".to_string(),
            ),
            ("/etc/mksgate", etc.to_string_lossy().into_owned()),
        ],
    )
}

/// `envoy/rotation/bootstrap.yaml` with `/etc/mksgate` at `etc`, admin on
/// an ephemeral port and the two ESXi clusters at `esxi`.
pub fn rotation_bootstrap(etc: &Path, esxi: &[Upstream; 2]) -> Result<String> {
    let mut pairs = vec![
        (
            "/etc/mksgate".to_string(),
            etc.to_string_lossy().into_owned(),
        ),
        (
            "address: 127.0.0.1, port_value: 9901".to_string(),
            "address: 127.0.0.1, port_value: 0".to_string(),
        ),
    ];
    for (i, (addr, pin)) in [("10.0.0.11", "1".repeat(64)), ("10.0.0.12", "2".repeat(64))]
        .into_iter()
        .enumerate()
    {
        pairs.push((
            format!("socket_address: {{ address: {addr}, port_value: 443 }}"),
            format!(
                "socket_address: {{ address: {}, port_value: {} }}",
                esxi[i].addr.ip(),
                esxi[i].addr.port()
            ),
        ));
        pairs.push((pin, esxi[i].pin.clone()));
    }
    replace_exact(&read_envoy_file("rotation/bootstrap.yaml")?, &pairs)
}

/// A minimal plaintext Envoy with the trap module under `policy` in front
/// of a route that answers 418 (reaching it means the filter was skipped).
pub fn trap_module_config(policy: &str) -> Result<String> {
    let module = test_module_path("trap")?;
    Ok(mksgate_testkit::template::MinimalWasm {
        failure_policy: policy,
        direct_status: 418,
        direct_body: "",
        ..mksgate_testkit::template::MinimalWasm::new(&module, "trap")
    }
    .render())
}
