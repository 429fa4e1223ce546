//! How a stand-in behaves: faults, SNI handling, session modes, bridges.

use super::*;

/// Run-time fault modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Normal operation.
    #[default]
    None,
    /// Not listening: connections are refused.
    Down,
    /// Accept the upgrade, push a few frames, then reset the TCP connection.
    ResetMidSession,
    /// Accept TLS, read the request, never answer.
    NeverAnswerUpgrade,
}

impl Fault {
    /// The name used by the control API (`none`, `down`,
    /// `reset-mid-session`, `never-answer-upgrade`).
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Down => "down",
            Fault::ResetMidSession => "reset-mid-session",
            Fault::NeverAnswerUpgrade => "never-answer-upgrade",
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Fault> {
        Ok(match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "none" => Fault::None,
            "down" => Fault::Down,
            "reset-mid-session" | "resetmidsession" => Fault::ResetMidSession,
            "never-answer-upgrade" | "neveranswerupgrade" => Fault::NeverAnswerUpgrade,
            other => bail!("unknown fault mode {other:?}"),
        })
    }
}

/// What to do when the TLS SNI is not the stand-in's name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SniMismatch {
    /// Close the connection after the ClientHello (handshake fails).
    #[default]
    FailHandshake,
    /// Complete the handshake and answer every request with 421.
    Http421,
}

/// Where a bridge session's bytes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgeTarget {
    /// A TCP address (e.g. a VNC server on `127.0.0.1:5901`).
    Tcp(SocketAddr),
    /// A Unix socket (e.g. QEMU's `-vnc unix:PATH`).
    Unix(PathBuf),
}

impl std::fmt::Display for BridgeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BridgeTarget::Tcp(a) => write!(f, "tcp:{a}"),
            BridgeTarget::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What an admitted WebSocket session does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SessionMode {
    /// Push frames and echoes (see the module docs).
    #[default]
    Echo,
    /// A WebSocket-to-TCP bridge to this target: binary message payloads
    /// go to it, its bytes come back as binary messages (text messages are
    /// refused with close code 1003). `frames_echoed` / `bytes_from_client`
    /// count what went to the target, `frames_pushed` the messages sent
    /// back. Faults other than `Down` and `NeverAnswerUpgrade` do not apply.
    Bridge(BridgeTarget),
}

/// How to run a stand-in.
#[derive(Clone, Debug)]
pub struct StandinConfig {
    /// Host name: certificate name and required SNI (e.g. `vesxi01.sec.lab`).
    pub name: String,
    /// Loopback address to listen on (127.0.0.2, 127.0.0.3, ...).
    pub addr: IpAddr,
    /// Port; 0 picks one.
    pub port: u16,
    /// Serve `wss://` (true) or plain `ws://` (false).
    pub tls: bool,
    /// Push a frame this often; `None` pushes nothing (idle console).
    pub push_interval: Option<Duration>,
    /// Payload bytes per push frame (after the 9-byte header).
    pub push_bytes: usize,
    /// Push frames sent before the reset in [`Fault::ResetMidSession`].
    pub reset_after_frames: u64,
    /// Behaviour on a wrong or missing SNI.
    pub sni_mismatch: SniMismatch,
    /// Supported subprotocols.
    pub protocols: Vec<String>,
    /// Certificate to serve; `None` generates a self-signed one for `name`.
    pub cert: Option<CertKey>,
    /// What an admitted session does (default: push/echo framing).
    pub session: SessionMode,
    /// Benchmarks only (`--any-ticket`): every non-empty `/ticket/<t>` is
    /// treated as issued and is never used up, so a handshake loop needs no
    /// ticket round trip. Default `false` (tickets as ESXi).
    pub any_ticket: bool,
    /// Record requests and TLS handshakes (`requests()`, `handshakes()`).
    /// Default `true`; benchmarks turn it off (`--no-request-log`) so the
    /// stand-in's memory stays flat over millions of handshakes. Request ids
    /// keep counting either way.
    pub record: bool,
}

impl StandinConfig {
    /// Defaults: ephemeral port, TLS, a 64-byte push every 50 ms, reset after
    /// 3 frames, handshake failure on SNI mismatch, the three wmks protocols,
    /// a self-signed certificate.
    pub fn new(name: &str, addr: IpAddr) -> StandinConfig {
        StandinConfig {
            name: name.to_string(),
            addr,
            port: 0,
            tls: true,
            push_interval: Some(Duration::from_millis(50)),
            push_bytes: 64,
            reset_after_frames: 3,
            sni_mismatch: SniMismatch::FailHandshake,
            protocols: WMKS_PROTOCOLS.iter().map(|s| s.to_string()).collect(),
            cert: None,
            session: SessionMode::Echo,
            any_ticket: false,
            record: true,
        }
    }

    /// Listen on this port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Serve plain `ws://`.
    pub fn plain(mut self) -> Self {
        self.tls = false;
        self
    }

    /// Push `bytes` of payload every `interval`.
    pub fn push(mut self, interval: Duration, bytes: usize) -> Self {
        self.push_interval = Some(interval);
        self.push_bytes = bytes;
        self
    }

    /// Push nothing (idle console).
    pub fn no_push(mut self) -> Self {
        self.push_interval = None;
        self
    }

    /// Serve this certificate.
    pub fn cert(mut self, cert: CertKey) -> Self {
        self.cert = Some(cert);
        self
    }

    /// Behaviour on SNI mismatch.
    pub fn sni_mismatch(mut self, m: SniMismatch) -> Self {
        self.sni_mismatch = m;
        self
    }

    /// Benchmarks: accept every `/ticket/<t>`, never use one up.
    pub fn any_ticket(mut self) -> Self {
        self.any_ticket = true;
        self
    }

    /// Benchmarks: record no requests or TLS handshakes.
    pub fn no_record(mut self) -> Self {
        self.record = false;
        self
    }

    /// Bridge admitted sessions to `target` instead of push/echo.
    pub fn bridge(mut self, target: BridgeTarget) -> Self {
        self.session = SessionMode::Bridge(target);
        self
    }
}
