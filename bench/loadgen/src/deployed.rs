//! The systems "as deployed": TLS 1.3 from the client (the gateway's
//! certificate from a CA made for the run), TLS to a second ESXi stand-in
//! (Envoy pins its certificate as the shipped clusters do; HAProxy's recipe
//! verifies nothing), and every proxy's access log on at its shipped
//! format (Envoy: the one in envoy/static-clusters.yaml, read from there;
//! HAProxy: bench/configs/haproxy-deployed.cfg).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use mksgate_host_tests::tls::{self, TestCa, Trust};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::scenario::{ClientTls, ESXI_HOST};

/// The name the gateway's certificate is for; the client's SNI.
pub const GATEWAY_NAME: &str = "console.example.com";
/// Where the TLS stand-in listens.
pub const TLS_STANDIN_ADDR: &str = "127.0.0.4";

/// Where the patches below go in every bench Envoy template.
pub const LISTENER_ANCHOR: &str = "    filter_chains:\n    - filters:\n";
pub const CLUSTER_ANCHOR: &str = "    load_assignment:\n      cluster_name: esxi_vesxi01\n";
pub const ACCESS_LOG_ANCHOR: &str = "          - upgrade_type: websocket\n";

/// What the deployed systems share for a run.
pub struct Deployed {
    pub gateway_crt: PathBuf,
    pub gateway_key: PathBuf,
    /// Certificate chain and key in one file, as HAProxy's `crt` wants.
    pub gateway_pem: PathBuf,
    pub client: ClientTls,
    /// The TLS stand-in and the SHA-256 (hex) of its certificate.
    pub standin: SocketAddr,
    pub standin_pin: String,
    /// The shipped access log (`access_log_options` and `access_log` of
    /// the connection manager), indented for the bench templates.
    pub access_log: String,
}

impl Deployed {
    /// Writes the gateway's certificate under `work`; `standin_cert` is the
    /// PEM file the TLS stand-in wrote.
    pub fn new(
        root: &Path,
        work: &Path,
        standin: SocketAddr,
        standin_cert: &Path,
    ) -> Result<Deployed> {
        let ca = TestCa::new("mksgate bench CA")?;
        let cert = ca.issue(&[GATEWAY_NAME])?;
        let gateway_crt = work.join("gateway.crt");
        let gateway_key = work.join("gateway.key");
        let gateway_pem = work.join("gateway.pem");
        std::fs::write(&gateway_crt, cert.chain_pem())?;
        std::fs::write(&gateway_key, &cert.key_pem)?;
        std::fs::write(
            &gateway_pem,
            format!("{}{}", cert.chain_pem(), cert.key_pem),
        )?;
        let mut config = tls::client_config(&Trust::Roots(vec![ca.cert_der()]), true)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = ClientTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name: ServerName::try_from(GATEWAY_NAME)?.to_owned(),
        };
        let der = CertificateDer::from_pem_file(standin_cert)
            .map_err(|e| anyhow!("{}: {e:?}", standin_cert.display()))?;
        let shipped = std::fs::read_to_string(root.join("envoy/static-clusters.yaml"))?;
        Ok(Deployed {
            gateway_crt,
            gateway_key,
            gateway_pem,
            client,
            standin,
            standin_pin: tls::sha256_hex(&der),
            access_log: shipped_access_log(&shipped)?,
        })
    }

    /// The replacements that turn a bench Envoy template into its deployed
    /// form: TLS on the listener, TLS with the pin on the first ESXi
    /// cluster (the one every link names).
    pub fn envoy_tls_patches(&self) -> Vec<(String, String)> {
        let listener = format!(
            "    filter_chains:
    - transport_socket_connect_timeout: 10s
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_params: {{ tls_minimum_protocol_version: TLSv1_3 }}
            alpn_protocols: [\"http/1.1\"]
            tls_certificates:
            - certificate_chain: {{ filename: {} }}
              private_key: {{ filename: {} }}
      filters:
",
            self.gateway_crt.display(),
            self.gateway_key.display()
        );
        let anchor = CLUSTER_ANCHOR;
        let cluster = format!(
            "    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {ESXI_HOST}
        common_tls_context:
          validation_context:
            verify_certificate_hash: [\"{}\"]
{anchor}",
            self.standin_pin
        );
        vec![(LISTENER_ANCHOR.into(), listener), (anchor.into(), cluster)]
    }

    /// The replacement that adds the shipped access log to a bench Envoy
    /// template's connection manager.
    pub fn envoy_access_log_patch(&self) -> (String, String) {
        let anchor = ACCESS_LOG_ANCHOR;
        (anchor.into(), format!("{anchor}{}", self.access_log))
    }
}

/// `access_log_options` through the access log of the shipped listener, up
/// to `route_config`; fails if the shipped file changes shape.
fn shipped_access_log(shipped: &str) -> Result<String> {
    let start = shipped
        .find("          access_log_options:")
        .context("envoy/static-clusters.yaml: no access_log_options")?;
    let end = shipped[start..]
        .find("          route_config:")
        .context("envoy/static-clusters.yaml: no route_config after the access log")?;
    Ok(shipped[start..start + end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_access_log_is_found() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let shipped = std::fs::read_to_string(root.join("envoy/static-clusters.yaml")).unwrap();
        let log = shipped_access_log(&shipped).unwrap();
        assert!(log.contains("flush_log_on_tunnel_successfully_established: true"));
        assert!(log.contains("%FILTER_STATE(wasm.mksgate_jti:PLAIN)%"));
        assert!(!log.contains("route_config"));
    }
}
