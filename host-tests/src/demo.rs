//! `make demo`: the gateway with a live console on localhost.
//!
//! [`Demo::start`] brings up, all on loopback:
//!
//! * the console servers: a QEMU VM ([`qemu`]) when `qemu-system-x86_64` is
//!   installed, else the built-in RFB test pattern ([`rfb`]); the second host
//!   always shows the test pattern;
//! * two ESXi stand-ins (`vesxi01.sec.lab`, `vesxi02.sec.lab`) serving
//!   `wss://<host>/ticket/<t>` with single-use tickets, SNI and TLS exactly as
//!   in the other tests, bridging each session to its console server
//!   ([`crate::standin::SessionMode::Bridge`]);
//! * Envoy with the shipped `envoy/static-clusters.yaml`
//!   ([`crate::shipped::static_clusters`]), a gateway certificate from a CA
//!   made for the run, and a random HS256 secret in `MKSGATE_KEY_2026_11`;
//!   the only changes beyond the test substitutions: the listener binds
//!   127.0.0.1 and `allowed_origins` is the demo page's origin;
//! * a small web server ([`web`]) with the demo page (noVNC), `/link` (a
//!   fresh signed link) and `/decisions` (the gateway's decision log lines).

pub mod fleet;
pub mod lifecycle;
mod links;
pub mod qemu;
pub mod rfb;
pub mod web;
pub use links::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use mksgate_core::jws::{self, Alg, Key};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::envoy::{replace_exact, workspace_root, Envoy, EnvoyOpts};
use crate::shipped::{self, Upstream};
use crate::standin::{BridgeTarget, Standin, StandinConfig};
use crate::tls::{CertKey, TestCa};

/// Lifetime of the links the demo signs: the shipped cap (`max_ttl_seconds`),
/// so a person has time to open the page.
pub const LINK_TTL_SECONDS: u64 = 300;
/// Where the gateway listens (the shipped file says 0.0.0.0:443).
pub const GATEWAY_IP: &str = "127.0.0.1";

/// Which console server to put behind the first ESXi host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsoleChoice {
    /// QEMU if installed, else the test pattern.
    #[default]
    Auto,
    /// QEMU or fail.
    Qemu,
    /// The built-in test pattern.
    Pattern,
}

impl std::str::FromStr for ConsoleChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<ConsoleChoice> {
        Ok(match s {
            "auto" => ConsoleChoice::Auto,
            "qemu" => ConsoleChoice::Qemu,
            "pattern" => ConsoleChoice::Pattern,
            other => bail!("unknown console {other:?} (auto, qemu or pattern)"),
        })
    }
}

/// How to run the demo.
#[derive(Clone, Debug)]
pub struct DemoOpts {
    /// Console server for `vesxi01.sec.lab`.
    pub console: ConsoleChoice,
    /// Port of the demo page (0 picks a free one).
    pub web_port: u16,
    /// Where the CA, the VM disk and sockets go.
    pub work_dir: PathBuf,
    /// Envoy's `--log-level`.
    pub envoy_log_level: String,
    /// The WebSocket subprotocols the ESXi stand-ins accept, in their
    /// order of preference among those a client offers (default: the
    /// three wmks offers). `uint8utf8` alone models VMware Cloud
    /// Director's legacy console proxy.
    pub protocols: Option<Vec<String>>,
}

impl Default for DemoOpts {
    fn default() -> Self {
        DemoOpts {
            console: ConsoleChoice::Auto,
            web_port: 0,
            work_dir: workspace_root().join("target/mksgate-demo"),
            envoy_log_level: "info".into(),
            protocols: None,
        }
    }
}

/// One ESXi host of the demo and the console behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleInfo {
    /// ESXi host name (the link's `host` claim).
    pub host: String,
    /// Envoy cluster.
    pub cluster: String,
    /// The stand-in's address.
    pub standin: String,
    /// `qemu` or `pattern`.
    pub kind: String,
    /// What exactly runs there.
    pub detail: String,
    /// Why the test pattern was used instead of QEMU, if it was.
    pub fallback_reason: Option<String>,
}

/// Everything the demo prints (`--json` prints exactly this).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoInfo {
    /// `wss://127.0.0.1:<port>/console`.
    pub gateway: String,
    /// The gateway's listener address.
    pub gateway_addr: String,
    /// Envoy's admin address (`http://127.0.0.1:<port>`).
    pub admin: String,
    /// The demo page without a link.
    pub page: String,
    /// The demo page's origin (what `allowed_origins` was set to).
    pub origin: String,
    /// A signed link for the first host.
    pub link: String,
    /// The demo page opening that link.
    pub page_url: String,
    /// The consoles, first host first.
    pub consoles: Vec<ConsoleInfo>,
    /// The CA that issued the gateway certificate (PEM file).
    pub ca_pem: String,
    /// base64 SHA-256 of the gateway certificate's public key, for
    /// Chromium's `--ignore-certificate-errors-spki-list`.
    pub gateway_spki_sha256: String,
    /// Envoy's access log (its stdout): a JSON line per decision, with
    /// the audit.
    pub access_log: String,
    /// Whether noVNC was found (the page needs it).
    pub novnc: bool,
    /// What the demo changed in the shipped config, besides addresses, ports,
    /// paths and pins.
    pub config_changes: Vec<String>,
}

/// A freshly signed link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLink {
    /// `wss://127.0.0.1:<port>/console?token=<jws>`.
    pub link: String,
    /// The demo page opening it.
    pub page_url: String,
    /// The ESXi host it opens.
    pub host: String,
    /// `exp`, Unix seconds.
    pub exp: u64,
    /// `jti`.
    pub jti: String,
}

/// What the web server needs.
pub(crate) struct State {
    key: Key,
    standins: Vec<Standin>,
    gateway: SocketAddr,
    page: String,
    access_log: PathBuf,
    www: PathBuf,
    novnc: PathBuf,
    wmks: PathBuf,
}

impl State {
    fn sign(&self, host: &str) -> Result<SignedLink> {
        let standin = self
            .standins
            .iter()
            .find(|s| s.name() == host)
            .ok_or_else(|| anyhow!("unknown host {host:?}"))?;
        let ticket = standin.issue_ticket();
        let mut claims = crate::link::shipped_claims(host, &ticket);
        let exp = u64::try_from(crate::link::now()).unwrap_or(0) + LINK_TTL_SECONDS;
        claims["exp"] = exp.into();
        claims["sub"] = "demo".into();
        let jti = claims["jti"].as_str().unwrap_or_default().to_string();
        let token = jws::sign(&self.key, claims.to_string().as_bytes());
        let link = format!("wss://{}/console?token={token}", self.gateway);
        Ok(SignedLink {
            page_url: page_url(&self.page, &link),
            link,
            host: host.to_string(),
            exp,
            jti,
        })
    }
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow!("the system RNG failed"))?;
    Ok(b)
}

/// The noVNC package vendored by `scripts/setup-browser.sh`.
pub fn novnc_dir() -> PathBuf {
    workspace_root().join("demo/node_modules/@novnc/novnc")
}

/// VMware's HTML console, wmks 2.1.0 (npm `opennebula-wmks` 2.1.4,
/// Apache-2.0): one ES module, jQuery bundled.
pub fn wmks_dir() -> PathBuf {
    workspace_root().join("demo/node_modules/opennebula-wmks/dist")
}

/// The demo page's files.
pub fn www_dir() -> PathBuf {
    workspace_root().join("demo/www")
}

/// The running demo. Dropping it stops everything it started.
pub struct Demo {
    info: DemoInfo,
    state: Arc<State>,
    web: JoinHandle<()>,
    // Field order is drop order: Envoy first, then the stand-ins and the
    // console servers behind them.
    envoy: Option<Envoy>,
    _standins: Vec<Standin>,
    _pattern: rfb::PatternServer,
    qemu: Option<qemu::Qemu>,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.web.abort();
    }
}

impl Demo {
    /// Start everything; returns when the gateway is LIVE.
    pub async fn start(opts: DemoOpts) -> Result<Demo> {
        let dir = &opts.work_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let loopback = |n| SocketAddr::new(crate::loopback(n), 0);

        // Console servers.
        let pattern = rfb::PatternServer::start(loopback(1)).await?;
        let pattern_detail = format!(
            "built-in RFB 3.8 test pattern, {}x{}, on {}",
            rfb::WIDTH,
            rfb::HEIGHT,
            pattern.addr()
        );
        let (qemu, fallback_reason) = match opts.console {
            ConsoleChoice::Pattern => (None, Some("--console pattern was asked for".to_string())),
            choice => match qemu::find_qemu() {
                None if choice == ConsoleChoice::Qemu => {
                    bail!("qemu-system-x86_64 not found: run scripts/setup-browser.sh")
                }
                None => (
                    None,
                    Some(
                        "qemu-system-x86_64 is not installed (scripts/setup-browser.sh installs it)"
                            .to_string(),
                    ),
                ),
                Some(bin) => match qemu::Qemu::start(&bin, dir).await {
                    Ok(q) => (Some(q), None),
                    Err(e) if choice == ConsoleChoice::Auto => {
                        (None, Some(format!("QEMU did not start: {e:#}")))
                    }
                    Err(e) => return Err(e),
                },
            },
        };

        // ESXi stand-ins bridging to them.
        let [(h1, c1), (h2, c2)] = shipped::STATIC_HOSTS;
        let with_protocols = |mut cfg: StandinConfig| {
            if let Some(p) = &opts.protocols {
                cfg.protocols = p.clone();
            }
            cfg
        };
        let first_target = match &qemu {
            Some(q) => BridgeTarget::Unix(q.socket().to_path_buf()),
            None => BridgeTarget::Tcp(pattern.addr()),
        };
        let s1 = Standin::start(with_protocols(
            StandinConfig::new(h1, crate::loopback(2)).bridge(first_target),
        ))
        .await?;
        let s2 = Standin::start(with_protocols(
            StandinConfig::new(h2, crate::loopback(3)).bridge(BridgeTarget::Tcp(pattern.addr())),
        ))
        .await?;
        let consoles = vec![
            ConsoleInfo {
                host: h1.into(),
                cluster: c1.into(),
                standin: s1.local_addr().to_string(),
                kind: if qemu.is_some() { "qemu" } else { "pattern" }.into(),
                detail: match &qemu {
                    Some(q) => format!(
                        "QEMU VM (pid {}, {}, TCG, SeaBIOS + a boot sector that echoes keys), VNC on unix:{}",
                        q.pid(),
                        q.version(),
                        q.socket().display()
                    ),
                    None => pattern_detail.clone(),
                },
                fallback_reason: fallback_reason.clone(),
            },
            ConsoleInfo {
                host: h2.into(),
                cluster: c2.into(),
                standin: s2.local_addr().to_string(),
                kind: "pattern".into(),
                detail: pattern_detail,
                fallback_reason: None,
            },
        ];

        // The page's origin must be known before Envoy's config is written.
        let web_listener = TcpListener::bind((GATEWAY_IP, opts.web_port))
            .await
            .with_context(|| format!("binding the demo page on {GATEWAY_IP}:{}", opts.web_port))?;
        let web_addr = web_listener.local_addr()?;
        let origin = format!("http://{web_addr}");
        let origin_localhost = format!("http://localhost:{}", web_addr.port());
        let page = format!("{origin}/");

        // Gateway certificate from a CA made for this run.
        let ca = TestCa::new("mksgate demo CA (this run only)")?;
        let gw_cert = ca.issue(&[GATEWAY_IP, "localhost"])?;
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca.cert_pem())?;
        std::fs::write(dir.join("gateway.crt"), gw_cert.chain_pem())?;
        let spki = spki_sha256_base64(&gw_cert)?;

        // Envoy with the shipped config.
        let secret = random_bytes(32)?;
        let key = Key::new(Some(shipped::KID.into()), Alg::HS256, &secret)
            .map_err(|e| anyhow!("signing key: {e:?}"))?;
        let upstreams = [
            Upstream {
                addr: s1.local_addr(),
                pin: s1.cert_sha256_hex(),
            },
            Upstream {
                addr: s2.local_addr(),
                pin: s2.cert_sha256_hex(),
            },
        ];
        let shipped_origins = format!("\"allowed_origins\": [\"{}\"]", shipped::ORIGIN);
        let demo_origins = format!("\"allowed_origins\": [\"{origin}\", \"{origin_localhost}\"]");
        let yaml = replace_exact(
            &shipped::static_clusters(&upstreams)?,
            &[
                (
                    "socket_address: { address: 0.0.0.0, port_value: 0 }".to_string(),
                    format!("socket_address: {{ address: {GATEWAY_IP}, port_value: 0 }}"),
                ),
                (shipped_origins.clone(), demo_origins.clone()),
            ],
        )?;
        let envoy = Envoy::start(
            &yaml,
            EnvoyOpts {
                log_level: opts.envoy_log_level.clone(),
                env: vec![(shipped::KEY_ENV.into(), jws::encode_secret(&secret))],
                files: vec![
                    (
                        shipped::GATEWAY_CERT_FILE.into(),
                        gw_cert.chain_pem().into_bytes(),
                    ),
                    (
                        shipped::GATEWAY_KEY_FILE.into(),
                        gw_cert.key_pem.clone().into_bytes(),
                    ),
                ],
                ..EnvoyOpts::default()
            },
        )
        .await?;
        let gateway = envoy.listener_addr(shipped::LISTENER).await?;
        let access_log = envoy.dir().join("stdout-stderr.log");

        let state = Arc::new(State {
            key,
            standins: vec![s1.clone(), s2.clone()],
            gateway,
            page: page.clone(),
            access_log: access_log.clone(),
            www: www_dir(),
            novnc: novnc_dir(),
            wmks: wmks_dir(),
        });
        let web = tokio::spawn(web::serve(web_listener, state.clone()));
        let first = state.sign(h1)?;
        let info = DemoInfo {
            gateway: format!("wss://{gateway}/console"),
            gateway_addr: gateway.to_string(),
            admin: format!("http://{}", envoy.admin_addr()),
            page,
            origin: origin.clone(),
            link: first.link,
            page_url: first.page_url,
            consoles,
            ca_pem: ca_pem.display().to_string(),
            gateway_spki_sha256: spki,
            access_log: access_log.display().to_string(),
            novnc: state.novnc.join("core/rfb.js").is_file(),
            config_changes: vec![
                format!("allowed_origins: [\"{}\"] -> [\"{origin}\", \"{origin_localhost}\"] (the demo page's origin)", shipped::ORIGIN),
                format!("listener address 0.0.0.0 -> {GATEWAY_IP} (port 0: a free one)"),
                format!(
                    "signing key {} HS256: a random secret made for this run, in Envoy's environment as {}",
                    shipped::KID,
                    shipped::KEY_ENV
                ),
            ],
        };
        Ok(Demo {
            info,
            state,
            web,
            envoy: Some(envoy),
            _standins: vec![s1, s2],
            _pattern: pattern,
            qemu,
        })
    }

    /// What to print.
    pub fn info(&self) -> &DemoInfo {
        &self.info
    }

    /// A fresh signed link for `host`.
    pub fn sign(&self, host: &str) -> Result<SignedLink> {
        self.state.sign(host)
    }

    /// The running Envoy.
    pub fn envoy(&self) -> Option<&Envoy> {
        self.envoy.as_ref()
    }

    /// Stop everything now (also done by drop).
    pub fn stop(&mut self) {
        self.web.abort();
        self.envoy = None;
        if let Some(q) = self.qemu.as_mut() {
            q.stop();
        }
    }

    /// The work directory's CA file.
    pub fn ca_pem(&self) -> &Path {
        Path::new(&self.info.ca_pem)
    }

    /// A human-readable description of the running demo.
    pub fn describe(&self) -> String {
        describe(&self.info)
    }
}

#[cfg(test)]
mod tests;
