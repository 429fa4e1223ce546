//! Each shipped Envoy layout (`static-clusters.yaml`, `dynamic.yaml`, the
//! rotation pair) running in real Envoy with the shipped module, in front of
//! ESXi stand-ins, behind one interface: for checks that must hold for every
//! layout an operator can deploy (hostile bytes, the wire fuzzer).

use crate::dns::DnsServer;
use crate::envoy::{Envoy, EnvoyOpts};
use crate::shipped::{self, RotationDir, Upstream};
use crate::standin::{Standin, StandinConfig};
use crate::tls::{CertKey, TestCa, Trust};
use crate::wire::WireTarget;
use crate::{link, loopback};
use anyhow::{Context, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The gateway's name (certificate, SNI, `Host`) in every layout.
pub const GATEWAY_NAME: &str = "console.example.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Static,
    Dynamic,
    Rotation,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Static => "static-clusters.yaml",
            Layout::Dynamic => "dynamic.yaml",
            Layout::Rotation => "rotation/",
        }
    }
}

/// A shipped layout, running. Dropping it stops Envoy and the stand-ins.
pub struct ShippedGateway {
    pub layout: Layout,
    pub envoy: Envoy,
    /// Where clients connect (TLS, SNI `GATEWAY_NAME`).
    pub addr: SocketAddr,
    pub cert: CertKey,
    /// The signing secret Envoy has under `shipped::KEY_ENV`.
    pub secret: Vec<u8>,
    /// The ESXi stand-ins (two).
    pub standins: Vec<Standin>,
    /// Per stand-in: the host and, for the dynamic layout, the port a link
    /// names.
    targets: Vec<(String, Option<u16>)>,
    /// The dynamic layout's DNS server and the CA its ESXi certificates
    /// chain to (the "VMCA" the config trusts).
    pub dns: Option<DnsServer>,
    pub esxi_ca: Option<TestCa>,
    /// The rotation layout's `/etc/mksgate` and the listener file as
    /// started (for a test that replaces it, as an operator would).
    pub rotation: Option<(RotationDir, String)>,
}

/// How to start a layout; `Default` is one worker and a fresh secret.
#[derive(Debug, Clone, Default)]
pub struct StartOpts {
    /// Worker threads (`--concurrency`); 0 means 1.
    pub concurrency: u32,
    /// The signing secret; a fresh random one when `None`.
    pub secret: Option<Vec<u8>>,
    /// More Envoy command-line arguments.
    pub extra_args: Vec<String>,
}

impl ShippedGateway {
    /// Starts `layout` with `concurrency` workers.
    pub async fn start(layout: Layout, concurrency: u32) -> Result<ShippedGateway> {
        let opts = StartOpts {
            concurrency,
            ..StartOpts::default()
        };
        ShippedGateway::start_with(layout, opts).await
    }

    /// Starts `layout` as `start` says.
    pub async fn start_with(layout: Layout, start: StartOpts) -> Result<ShippedGateway> {
        let cert = CertKey::self_signed(&[GATEWAY_NAME])?;
        let secret = start
            .secret
            .clone()
            .unwrap_or_else(|| link::random_bytes(32));
        let mut opts = EnvoyOpts {
            concurrency: start.concurrency.max(1),
            extra_args: start.extra_args.clone(),
            env: vec![(
                shipped::KEY_ENV.to_string(),
                mksgate_core::jws::encode_secret(&secret),
            )],
            ready_timeout: Duration::from_secs(40),
            ..EnvoyOpts::default()
        };
        let tls_files = vec![
            (
                shipped::GATEWAY_CERT_FILE.to_string(),
                cert.chain_pem().into_bytes(),
            ),
            (
                shipped::GATEWAY_KEY_FILE.to_string(),
                cert.key_pem.clone().into_bytes(),
            ),
        ];
        let (yaml, standins, targets, dns, esxi_ca, rotation) = match layout {
            Layout::Static | Layout::Rotation => {
                let mut standins = Vec::new();
                for (i, (host, _)) in shipped::STATIC_HOSTS.iter().enumerate() {
                    let n = 2 + u8::try_from(i)?;
                    standins.push(Standin::start(StandinConfig::new(host, loopback(n))).await?);
                }
                let upstreams = [0, 1].map(|i: usize| Upstream {
                    addr: standins[i].local_addr(),
                    pin: standins[i].cert_sha256_hex(),
                });
                let targets = shipped::STATIC_HOSTS
                    .iter()
                    .map(|(h, _)| (h.to_string(), None))
                    .collect();
                if layout == Layout::Static {
                    opts.files = tls_files;
                    let yaml = shipped::static_clusters(&upstreams)?;
                    (yaml, standins, targets, None, None, None)
                } else {
                    let dir = RotationDir::new(&cert)?;
                    let listeners = shipped::rotation_listeners(dir.path())?;
                    std::fs::write(dir.path().join("listeners.yaml"), &listeners)?;
                    let yaml = shipped::rotation_bootstrap(dir.path(), &upstreams)?;
                    (yaml, standins, targets, None, None, Some((dir, listeners)))
                }
            }
            Layout::Dynamic => {
                let ca = TestCa::new("mksgate test VMCA")?;
                let names = ["esx-a.esxi.example.com", "esx-b.esxi.example.com"];
                let mut standins = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    let n = 4 + u8::try_from(i)?;
                    let cfg = StandinConfig::new(name, loopback(n)).cert(ca.issue(&[name])?);
                    standins.push(Standin::start(cfg).await?);
                }
                let dns = DnsServer::start([
                    (names[0], Ipv4Addr::new(127, 0, 0, 4)),
                    (names[1], Ipv4Addr::new(127, 0, 0, 5)),
                ])
                .await?;
                let targets = names
                    .iter()
                    .zip(&standins)
                    .map(|(n, s)| (n.to_string(), Some(s.local_addr().port())))
                    .collect();
                opts.files = tls_files;
                opts.files.push((
                    shipped::ESXI_CA_FILE.to_string(),
                    ca.cert_pem().into_bytes(),
                ));
                let yaml = shipped::dynamic(dns.addr())?;
                (yaml, standins, targets, Some(dns), Some(ca), None)
            }
        };
        let envoy = Envoy::start(&yaml, opts)
            .await
            .with_context(|| format!("starting {}", layout.name()))?;
        let port = envoy.port_for(shipped::LISTENER).await?;
        Ok(ShippedGateway {
            layout,
            envoy,
            addr: SocketAddr::new(loopback(1), port),
            cert,
            secret,
            standins,
            targets,
            dns,
            esxi_ca,
            rotation,
        })
    }

    /// A fresh, valid console path for stand-in `i`: a new ticket on it,
    /// signed as the portal would for this layout.
    pub fn valid_path(&self, i: usize) -> Result<String> {
        let standin = self
            .standins
            .get(i % self.standins.len().max(1))
            .context("no stand-in")?;
        let (host, port) = &self.targets[i % self.targets.len()];
        self.path_for(host, *port, &standin.issue_ticket())
    }

    /// A console path for `host` (with a `port` claim if given) and
    /// `ticket`, signed as the portal would.
    pub fn path_for(&self, host: &str, port: Option<u16>, ticket: &str) -> Result<String> {
        let mut claims = link::shipped_claims(host, ticket);
        if let Some(port) = port {
            claims["port"] = port.into();
        }
        let token = link::sign_with(&self.secret, shipped::KID, &claims)?;
        Ok(link::console_path(&token))
    }

    /// Raw requests to the listener, over TLS with the gateway's SNI.
    pub fn wire(&self) -> Result<WireTarget> {
        WireTarget::tls(
            self.addr,
            &Trust::Pinned(vec![self.cert.cert_der.clone()]),
            GATEWAY_NAME,
        )
    }
}

/// A WebSocket upgrade request head as wmks sends it, with `path` and
/// `extra` headers placed byte for byte. An `extra` header named `upgrade`,
/// `connection` or `origin` replaces the default one instead of repeating
/// it.
pub fn upgrade_head(path: &[u8], extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let defaults: [(&[u8], &[u8]); 3] = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Origin", shipped::ORIGIN.as_bytes()),
    ];
    let mut head = Vec::new();
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(path);
    head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    head.extend_from_slice(GATEWAY_NAME.as_bytes());
    head.extend_from_slice(b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
    head.extend_from_slice(b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n");
    let replaced = |name: &[u8]| extra.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let defaults = defaults.iter().filter(|(n, _)| !replaced(n));
    for (name, value) in defaults.chain(extra.iter()) {
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}
