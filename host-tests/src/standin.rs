//! A stand-in for an ESXi host's WebMKS endpoint (`wss://<host>/ticket/<t>`).
//!
//! As far as a gateway can tell it behaves like ESXi:
//!
//! * serves `wss://` with a certificate for its host name (self-signed unless
//!   one is supplied, e.g. issued by a [`crate::tls::TestCa`]), on its own
//!   loopback address; plain `ws://` on request ([`StandinConfig::plain`]);
//! * requires the TLS SNI to equal its host name: a wrong or missing SNI fails
//!   the handshake (the TCP connection is closed right after the ClientHello)
//!   or, with [`SniMismatch::Http421`], gets `421 Misdirected Request`;
//! * serves only `GET /ticket/<ticket>` WebSocket upgrades for tickets it
//!   issued ([`Standin::issue_ticket`]); each ticket works once:
//!
//!   | request                                   | answer |
//!   |-------------------------------------------|--------|
//!   | path not `/ticket/<t>`                    | 404 `not found\n` |
//!   | ticket never issued                       | 404 `unknown ticket\n` |
//!   | ticket already used                       | 503 `ticket already used\n` |
//!   | valid ticket, not a WebSocket upgrade     | 400 `websocket upgrade required\n` (ticket not consumed) |
//!   | valid ticket, WebSocket upgrade           | 101, ticket consumed |
//!
//!   Error answers carry `connection: close` and the connection is closed.
//!   A query string after the ticket is ignored.
//! * negotiates `Sec-WebSocket-Protocol`: the first protocol the client
//!   offers (in the client's order) that it supports (`binary`,
//!   `vmware-vvc`, `uint8utf8` by default) is echoed; none if none matches.
//!
//! # Session framing
//!
//! Every data message the stand-in sends starts with a one-byte tag:
//!
//! * **push** (binary, tag `b'P'`): `P`, then the sequence number as a u64
//!   big-endian (0, 1, 2, ... per session), then [`StandinConfig::push_bytes`]
//!   bytes of [`pattern_bytes`]`(seq ^ PUSH_SEED, len)`. Sent every
//!   [`StandinConfig::push_interval`] (never if `None`). Build or check one
//!   with [`push_frame`] / [`check_push_frame`].
//! * **echo** (tag `b'E'`): for every binary message the client sends, a
//!   binary message `E` + the client's payload; for every text message, a text
//!   message `"E"` + the client's text. Echoes keep the client's order.
//!
//! Pings are answered with pongs; a client close is answered with a close.
//!
//! # Bridge sessions ([`SessionMode::Bridge`])
//!
//! Instead of the framing above, an admitted session can be a
//! WebSocket-to-TCP bridge (what websockify does in front of a VNC server):
//! the stand-in connects to a [`BridgeTarget`] before it answers (`502
//! console backend unreachable\n` if it cannot, ticket not used up), then
//! writes every binary message's payload to it and sends whatever it reads
//! back as binary messages. Tickets, SNI and TLS behave exactly as above.
//! Used by the demo to put a real RFB server (QEMU's VNC) behind
//! `/ticket/<t>`.
//!
//! # Faults ([`Fault`], settable at run time)
//!
//! * `Down`: the listener is closed (connections are refused with RST).
//!   Sessions already running are left alone (use
//!   [`Standin::reset_sessions`] to kill them). Setting another fault or
//!   `None` listens again on the same address and port.
//! * `ResetMidSession`: new sessions get the 101, receive
//!   [`StandinConfig::reset_after_frames`] push frames (immediately if
//!   pushing is off), then the TCP connection is reset (SO_LINGER 0).
//! * `NeverAnswerUpgrade`: TLS is accepted and the request is read and
//!   recorded (status `None`), but nothing is ever answered.
//!
//! Everything is recorded: [`Standin::handshakes`] (TLS ClientHellos with
//! their SNI) and [`Standin::requests`] (HTTP requests with headers, ticket
//! outcome, status, negotiated protocol and per-session counters).
//!
//! [`Standin::serve_control`] exposes the same operations over a plain HTTP
//! control API (see the crate README), used by the `esxi-standin` binary.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::io::{header_value, read_head, simple_response, MaybeTls};
use crate::tls::CertKey;

/// Subprotocols the VMware HTML console offers, in its order.
pub const WMKS_PROTOCOLS: [&str; 3] = ["binary", "vmware-vvc", "uint8utf8"];
/// Tag byte of frames the stand-in pushes on its own.
pub const TAG_PUSH: u8 = b'P';
/// Tag byte of echoed frames.
pub const TAG_ECHO: u8 = b'E';
/// Bytes before the payload of a push frame (tag + u64 sequence number).
pub const PUSH_HEADER_LEN: usize = 9;
/// Seed mixed into the sequence number for push payloads.
pub const PUSH_SEED: u64 = 0x5055_5348_0000_0000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// splitmix64 step.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic pseudo-random bytes (splitmix64 seeded with `seed`,
/// little-endian words).
pub fn pattern_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = seed;
    while out.len() < len {
        out.extend_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The push frame with sequence number `seq` and `payload_len` payload bytes.
pub fn push_frame(seq: u64, payload_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(PUSH_HEADER_LEN + payload_len);
    f.push(TAG_PUSH);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&pattern_bytes(seq ^ PUSH_SEED, payload_len));
    f
}

/// Check that `frame` is a well-formed push frame and return its sequence
/// number; every payload byte is compared with what [`push_frame`] makes.
pub fn check_push_frame(frame: &[u8]) -> Result<u64> {
    if frame.len() < PUSH_HEADER_LEN || frame[0] != TAG_PUSH {
        bail!(
            "not a push frame ({} bytes, first byte {:?})",
            frame.len(),
            frame.first()
        );
    }
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&frame[1..PUSH_HEADER_LEN]);
    let seq = u64::from_be_bytes(seq_bytes);
    let expected = push_frame(seq, frame.len() - PUSH_HEADER_LEN);
    if let Some(pos) = expected.iter().zip(frame).position(|(a, b)| a != b) {
        bail!("push frame {seq}: byte {pos} differs");
    }
    Ok(seq)
}

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

/// One TLS ClientHello the stand-in saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedHandshake {
    /// Peer address.
    pub peer: String,
    /// SNI sent by the client, if any.
    pub sni: Option<String>,
    /// ALPN protocols offered.
    pub alpn: Vec<String>,
    /// Whether the SNI matched the stand-in's name.
    pub sni_ok: bool,
    /// Whether the TLS handshake completed.
    pub completed: bool,
    /// Why it did not complete.
    pub error: Option<String>,
}

/// One HTTP request the stand-in received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Request number on this stand-in (0-based; keeps counting across
    /// [`Standin::clear_log`]).
    pub id: u64,
    /// Peer address.
    pub peer: String,
    /// Came over TLS.
    pub tls: bool,
    /// SNI of the TLS connection.
    pub sni: Option<String>,
    /// Method.
    pub method: String,
    /// Request target as sent (path and query).
    pub path: String,
    /// `Host` header.
    pub host: Option<String>,
    /// All headers, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Subprotocols the client offered, in order.
    pub offered_protocols: Vec<String>,
    /// Subprotocol chosen, if any.
    pub subprotocol: Option<String>,
    /// Ticket from the path, if the path was `/ticket/<t>`.
    pub ticket: Option<String>,
    /// Whether the ticket was valid and consumed by this request.
    pub ticket_accepted: bool,
    /// Status answered; `None` if never answered.
    pub status: Option<u16>,
    /// Push frames sent in this session.
    pub frames_pushed: u64,
    /// Client data frames echoed in this session.
    pub frames_echoed: u64,
    /// Client payload bytes received in this session.
    pub bytes_from_client: u64,
    /// How the session (or unanswered request) ended; `None` while running.
    pub end: Option<String>,
}

impl RecordedRequest {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

/// State of a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TicketState {
    /// Issued, not used yet.
    Issued,
    /// Used by a WebSocket session.
    Used,
}

/// What the binary prints when ready and the control API's `GET /info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandinInfo {
    /// Host name.
    pub name: String,
    /// Listen address.
    pub addr: String,
    /// Listen port.
    pub port: u16,
    /// Control API port (0 if none).
    pub control_port: u16,
    /// `wss` or `ws`.
    pub scheme: String,
    /// SHA-256 of the certificate, lowercase hex.
    pub cert_sha256: String,
    /// SHA-256 of the certificate, uppercase hex with colons.
    pub cert_sha256_colon: String,
    /// Where the certificate PEM was written, if asked.
    pub cert_pem_path: Option<String>,
}

#[derive(Clone, Copy, Debug)]
enum SessionCmd {
    Close(u16),
    Reset,
}

struct Shared {
    cfg: StandinConfig,
    cert: CertKey,
    server_tls: Option<Arc<rustls::ServerConfig>>,
    local: SocketAddr,
    tickets: Mutex<HashMap<String, TicketState>>,
    requests: Mutex<RequestLog>,
    handshakes: Mutex<Vec<RecordedHandshake>>,
    fault: watch::Sender<Fault>,
    /// What the accept loop has actually done: `true` = listening.
    listening: watch::Sender<bool>,
    cmds: broadcast::Sender<SessionCmd>,
    active: AtomicUsize,
    conns: AtomicU64,
}

/// The request log; `base` is the id of `items[0]`.
#[derive(Default)]
struct RequestLog {
    base: u64,
    items: Vec<RecordedRequest>,
}

/// Ends every task of a stand-in when the last handle is dropped.
struct Guard {
    _shutdown: watch::Sender<()>,
    accept: JoinHandle<()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A running stand-in. Cheap to clone; everything stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Standin {
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for Standin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standin")
            .field("name", &self.shared.cfg.name)
            .field("addr", &self.shared.local)
            .finish_non_exhaustive()
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

impl Standin {
    /// Bind and start serving.
    pub async fn start(cfg: StandinConfig) -> Result<Standin> {
        let cert = match &cfg.cert {
            Some(c) => c.clone(),
            None => CertKey::self_signed(&[&cfg.name])?,
        };
        // Only the leaf is sent (a test CA is a root, which servers don't send).
        let server_tls = if cfg.tls {
            Some(Arc::new(cert.server_config()?))
        } else {
            None
        };
        let listener = bind(SocketAddr::new(cfg.addr, cfg.port)).with_context(|| {
            format!("binding stand-in {} on {}:{}", cfg.name, cfg.addr, cfg.port)
        })?;
        let local = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let (cmds, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            cfg,
            cert,
            server_tls,
            local,
            tickets: Mutex::new(HashMap::new()),
            requests: Mutex::new(RequestLog::default()),
            handshakes: Mutex::new(Vec::new()),
            fault: watch::Sender::new(Fault::None),
            listening: watch::Sender::new(true),
            cmds,
            active: AtomicUsize::new(0),
            conns: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(shared.clone(), listener, shutdown_rx.clone()));
        Ok(Standin {
            shared,
            _guard: Arc::new(Guard {
                _shutdown: shutdown_tx,
                accept,
            }),
        })
    }

    /// Host name.
    pub fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &StandinConfig {
        &self.shared.cfg
    }

    /// Bound address (with the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Bound IP.
    pub fn ip(&self) -> IpAddr {
        self.shared.local.ip()
    }

    /// Bound port.
    pub fn port(&self) -> u16 {
        self.shared.local.port()
    }

    /// Serves TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.cfg.tls
    }

    /// `wss` or `ws`.
    pub fn scheme(&self) -> &'static str {
        if self.shared.cfg.tls {
            "wss"
        } else {
            "ws"
        }
    }

    /// `wss://<name>:<port>/ticket/<ticket>` (connect to [`Self::local_addr`]).
    pub fn url(&self, ticket: &str) -> String {
        format!(
            "{}://{}:{}/ticket/{ticket}",
            self.scheme(),
            self.name(),
            self.port()
        )
    }

    /// The certificate (served only if TLS).
    pub fn cert(&self) -> &CertKey {
        &self.shared.cert
    }

    /// Certificate DER.
    pub fn cert_der(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.shared.cert.cert_der.clone()
    }

    /// Certificate PEM.
    pub fn cert_pem(&self) -> String {
        self.shared.cert.cert_pem.clone()
    }

    /// Certificate SHA-256, lowercase hex, no colons.
    pub fn cert_sha256_hex(&self) -> String {
        self.shared.cert.sha256_hex()
    }

    /// Certificate SHA-256, uppercase hex with colons.
    pub fn cert_sha256_colon(&self) -> String {
        self.shared.cert.sha256_colon()
    }

    /// Issue a fresh random ticket (32 characters of `[A-Za-z0-9]`).
    pub fn issue_ticket(&self) -> String {
        let t = random_ticket();
        self.issue_ticket_with(&t);
        t
    }

    /// Issue a ticket with a chosen value (re-issuing makes it usable again).
    pub fn issue_ticket_with(&self, ticket: &str) {
        lock(&self.shared.tickets).insert(ticket.to_string(), TicketState::Issued);
    }

    /// State of a ticket (`None` if never issued).
    pub fn ticket_state(&self, ticket: &str) -> Option<TicketState> {
        lock(&self.shared.tickets).get(ticket).copied()
    }

    /// Snapshot of the request log.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).items.clone()
    }

    /// Snapshot of the TLS handshake log.
    pub fn handshakes(&self) -> Vec<RecordedHandshake> {
        lock(&self.shared.handshakes).clone()
    }

    /// Empty both logs. Request ids keep counting (running sessions keep
    /// updating their own entry only if it is still in the log).
    pub fn clear_log(&self) {
        lock(&self.shared.handshakes).clear();
        let mut log = lock(&self.shared.requests);
        log.base += log.items.len() as u64;
        log.items.clear();
    }

    /// Wait until at least `n` requests were recorded and return them.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedRequest>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let reqs = self.requests();
            if reqs.len() >= n {
                return Ok(reqs);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "stand-in {}: {} requests recorded after {timeout:?}, wanted {n}",
                    self.name(),
                    reqs.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Current fault mode.
    pub fn fault(&self) -> Fault {
        *self.shared.fault.borrow()
    }

    /// Set the fault mode. Returns once the listener state matches (closed
    /// for `Down`, listening otherwise).
    pub async fn set_fault(&self, fault: Fault) -> Result<()> {
        self.shared.fault.send_replace(fault);
        let want = fault != Fault::Down;
        let mut rx = self.shared.listening.subscribe();
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|l| *l == want))
            .await
            .map_err(|_| {
                anyhow!(
                    "stand-in {}: listener did not follow fault {fault:?}",
                    self.name()
                )
            })?
            .map_err(|_| anyhow!("stand-in {} stopped", self.name()))?;
        Ok(())
    }

    /// Number of WebSocket sessions running.
    pub fn active_sessions(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Number of TCP connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.conns.load(Ordering::SeqCst)
    }

    /// Send a close frame with `code` on every running session.
    pub fn close_sessions(&self, code: u16) {
        let _ = self.shared.cmds.send(SessionCmd::Close(code));
    }

    /// Reset (TCP RST) every running session.
    pub fn reset_sessions(&self) {
        let _ = self.shared.cmds.send(SessionCmd::Reset);
    }

    /// Description (as printed by the binary).
    pub fn info(&self, control_port: u16, cert_pem_path: Option<String>) -> StandinInfo {
        StandinInfo {
            name: self.name().to_string(),
            addr: self.ip().to_string(),
            port: self.port(),
            control_port,
            scheme: self.scheme().to_string(),
            cert_sha256: self.cert_sha256_hex(),
            cert_sha256_colon: self.cert_sha256_colon(),
            cert_pem_path,
        }
    }

    /// Serve the control API on `addr` (port 0 picks one).
    pub async fn serve_control(
        &self,
        addr: SocketAddr,
        cert_pem_path: Option<String>,
    ) -> Result<ControlServer> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding control API on {addr}"))?;
        let local = listener.local_addr()?;
        let standin = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let st = standin.clone();
                let path = cert_pem_path.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(30),
                        control_conn(st, sock, local.port(), path),
                    )
                    .await;
                });
            }
        });
        Ok(ControlServer { addr: local, task })
    }
}

/// A running control API; stops when dropped.
#[derive(Debug)]
pub struct ControlServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_ticket() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut buf = [0u8; 64];
        if ring::rand::SecureRandom::fill(&rng, &mut buf).is_err() {
            // Fall back to something unique if the OS RNG fails (it won't).
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0) as u64;
            buf.copy_from_slice(&pattern_bytes(n, 64));
        }
        for b in buf {
            // 248 = 4 * 62: rejection sampling keeps the distribution uniform.
            if b < 248 && out.len() < 32 {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

async fn accept_loop(shared: Arc<Shared>, first: TcpListener, mut shutdown: watch::Receiver<()>) {
    let mut fault_rx = shared.fault.subscribe();
    let mut listener = Some(first);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => {
                // Not listening: wait until the fault is not Down, then rebind.
                shared.listening.send_replace(false);
                if *fault_rx.borrow_and_update() == Fault::Down {
                    tokio::select! {
                        r = fault_rx.changed() => if r.is_err() { return },
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
                match bind(shared.local) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!(
                            "stand-in {}: rebind {} failed: {e}",
                            shared.cfg.name, shared.local
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
        };
        if *fault_rx.borrow_and_update() == Fault::Down {
            drop(l);
            continue;
        }
        shared.listening.send_replace(true);
        loop {
            tokio::select! {
                r = l.accept() => {
                    if let Ok((sock, peer)) = r {
                        shared.conns.fetch_add(1, Ordering::SeqCst);
                        let sh = shared.clone();
                        let sd = shutdown.clone();
                        tokio::spawn(async move {
                            let mut sd2 = sd.clone();
                            tokio::select! {
                                _ = handle_conn(sh, sock, peer, sd) => {}
                                _ = sd2.changed() => {}
                            }
                        });
                    }
                }
                r = fault_rx.changed() => {
                    if r.is_err() { return; }
                    if *fault_rx.borrow_and_update() == Fault::Down {
                        break;
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
        drop(l);
    }
}

async fn handle_conn(
    shared: Arc<Shared>,
    sock: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<()>,
) {
    let _ = sock.set_nodelay(true);
    let mut sni = None;
    let mut sni_ok = true;
    let io = match &shared.server_tls {
        None => MaybeTls::Plain(sock),
        Some(cfg) => {
            let acceptor =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), sock);
            let start = match tokio::time::timeout(Duration::from_secs(10), acceptor).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    push_handshake(
                        &shared,
                        RecordedHandshake {
                            peer: peer.to_string(),
                            sni: None,
                            alpn: vec![],
                            sni_ok: false,
                            completed: false,
                            error: Some(format!("bad ClientHello: {e}")),
                        },
                    );
                    return;
                }
                Err(_) => return,
            };
            let hello = start.client_hello();
            sni = hello.server_name().map(str::to_string);
            let alpn: Vec<String> = hello
                .alpn()
                .map(|it| {
                    it.map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            sni_ok = sni
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(&shared.cfg.name));
            let mut rec = RecordedHandshake {
                peer: peer.to_string(),
                sni: sni.clone(),
                alpn,
                sni_ok,
                completed: false,
                error: None,
            };
            if !sni_ok && shared.cfg.sni_mismatch == SniMismatch::FailHandshake {
                rec.error = Some(format!(
                    "SNI {:?} is not {:?}: handshake refused",
                    sni, shared.cfg.name
                ));
                push_handshake(&shared, rec);
                return; // dropping the socket closes the connection
            }
            match tokio::time::timeout(Duration::from_secs(10), start.into_stream(cfg.clone()))
                .await
            {
                Ok(Ok(tls)) => {
                    rec.completed = true;
                    push_handshake(&shared, rec);
                    MaybeTls::Tls(Box::new(tokio_rustls::TlsStream::Server(tls)))
                }
                Ok(Err(e)) => {
                    rec.error = Some(format!("TLS handshake failed: {e}"));
                    push_handshake(&shared, rec);
                    return;
                }
                Err(_) => {
                    rec.error = Some("TLS handshake timed out".into());
                    push_handshake(&shared, rec);
                    return;
                }
            }
        }
    };
    let _ = serve_request(shared, io, peer, sni, sni_ok, shutdown).await;
}

fn push_handshake(shared: &Shared, rec: RecordedHandshake) {
    if shared.cfg.record {
        lock(&shared.handshakes).push(rec);
    }
}

fn update<F: FnOnce(&mut RecordedRequest)>(shared: &Shared, id: u64, f: F) {
    let mut log = lock(&shared.requests);
    if let Some(i) = id.checked_sub(log.base) {
        if let Some(r) = log.items.get_mut(i as usize) {
            f(r);
        }
    }
}

async fn respond(
    shared: &Shared,
    id: u64,
    mut io: MaybeTls,
    status: u16,
    body: &str,
) -> Result<()> {
    update(shared, id, |r| {
        r.status = Some(status);
        r.end = Some(format!("answered {status}"));
    });
    io.write_all(&simple_response(status, "text/plain", body.as_bytes()))
        .await?;
    io.flush().await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), io.shutdown()).await;
    Ok(())
}

fn is_upgrade(method: &str, headers: &[(String, String)]) -> bool {
    let has_token = |name: &str, token: &str| {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    method == "GET"
        && has_token("upgrade", "websocket")
        && has_token("connection", "upgrade")
        && header_value(headers, "sec-websocket-key").is_some()
        && header_value(headers, "sec-websocket-version").map(str::trim) == Some("13")
}

async fn serve_request(
    shared: Arc<Shared>,
    io: MaybeTls,
    peer: SocketAddr,
    sni: Option<String>,
    sni_ok: bool,
    mut shutdown: watch::Receiver<()>,
) -> Result<()> {
    let mut reader = BufReader::new(io);
    let head = match tokio::time::timeout(Duration::from_secs(30), read_head(&mut reader)).await {
        Ok(Ok(Some(h))) => h,
        _ => return Ok(()),
    };
    let mut hdrs = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut hdrs);
    let parsed = req.parse(&head);
    let method = req.method.unwrap_or("").to_string();
    let path = req.path.unwrap_or("").to_string();
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let offered: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|(_, v)| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let ticket = path
        .strip_prefix("/ticket/")
        .map(|t| t.split(['?', '#']).next().unwrap_or("").to_string());
    let buffered = reader.buffer().to_vec();
    let io = reader.into_inner();
    let id = {
        let mut log = lock(&shared.requests);
        let id = log.base + log.items.len() as u64;
        if !shared.cfg.record {
            // Not recorded: the id is used up all the same, so `update`
            // finds nothing to change.
            log.base += 1;
        } else {
            log.items.push(RecordedRequest {
                id,
                peer: peer.to_string(),
                tls: shared.server_tls.is_some(),
                sni,
                method: method.clone(),
                path: path.clone(),
                host: header_value(&headers, "host").map(str::to_string),
                headers: headers.clone(),
                offered_protocols: offered.clone(),
                subprotocol: None,
                ticket: ticket.clone(),
                ticket_accepted: false,
                status: None,
                frames_pushed: 0,
                frames_echoed: 0,
                bytes_from_client: 0,
                end: None,
            });
        }
        id
    };
    if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
        return respond(&shared, id, io, 400, "bad request\n").await;
    }

    let fault = *shared.fault.borrow();
    if fault == Fault::NeverAnswerUpgrade {
        // Read (and discard) until the peer goes away; never answer.
        let mut io = io;
        let mut buf = vec![0u8; 4096];
        let mut cmds = shared.cmds.subscribe();
        let end = loop {
            tokio::select! {
                r = io.read(&mut buf) => match r {
                    Ok(0) => break "peer closed (never answered)".to_string(),
                    Ok(_) => {}
                    Err(e) => break format!("peer error (never answered): {e}"),
                },
                c = cmds.recv() => if let Ok(SessionCmd::Reset) = c {
                    let _ = io.set_reset_on_close();
                    break "reset (never answered)".to_string();
                },
                _ = shutdown.changed() => break "stand-in stopped".to_string(),
            }
        };
        update(&shared, id, |r| r.end = Some(end));
        return Ok(());
    }

    if !sni_ok {
        return respond(&shared, id, io, 421, "misdirected request\n").await;
    }
    let Some(ticket) = ticket else {
        return respond(&shared, id, io, 404, "not found\n").await;
    };
    let state = if shared.cfg.any_ticket && !ticket.is_empty() {
        Some(TicketState::Issued)
    } else {
        lock(&shared.tickets).get(&ticket).copied()
    };
    match state {
        None => return respond(&shared, id, io, 404, "unknown ticket\n").await,
        Some(TicketState::Used) => {
            return respond(&shared, id, io, 503, "ticket already used\n").await
        }
        Some(TicketState::Issued) => {}
    }
    if !is_upgrade(&method, &headers) {
        return respond(&shared, id, io, 400, "websocket upgrade required\n").await;
    }
    let backend = match &shared.cfg.session {
        SessionMode::Echo => None,
        SessionMode::Bridge(target) => match connect_backend(target).await {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("stand-in {}: {e:#}", shared.cfg.name);
                return respond(&shared, id, io, 502, "console backend unreachable\n").await;
            }
        },
    };
    let consumed = shared.cfg.any_ticket
        || match lock(&shared.tickets).get_mut(&ticket) {
            Some(s @ TicketState::Issued) => {
                *s = TicketState::Used;
                true
            }
            _ => false,
        };
    if !consumed {
        // Another connection used it between the check and now.
        return respond(&shared, id, io, 503, "ticket already used\n").await;
    }
    let chosen = offered
        .iter()
        .find(|p| shared.cfg.protocols.iter().any(|s| s == *p))
        .cloned();
    let key = header_value(&headers, "sec-websocket-key")
        .unwrap_or("")
        .trim();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n"
    );
    if let Some(p) = &chosen {
        resp.push_str(&format!("sec-websocket-protocol: {p}\r\n"));
    }
    resp.push_str("\r\n");
    update(&shared, id, |r| {
        r.status = Some(101);
        r.ticket_accepted = true;
        r.subprotocol = chosen.clone();
    });
    let mut io = io;
    io.write_all(resp.as_bytes()).await?;
    io.flush().await?;

    shared.active.fetch_add(1, Ordering::SeqCst);
    let ws = WebSocketStream::from_partially_read(io, buffered, Role::Server, None).await;
    let end = match backend {
        None => run_session(&shared, id, ws, fault, &mut shutdown).await,
        Some(b) => run_bridge(&shared, id, ws, b, &mut shutdown).await,
    };
    shared.active.fetch_sub(1, Ordering::SeqCst);
    update(&shared, id, |r| r.end = Some(end));
    Ok(())
}

async fn run_session(
    shared: &Shared,
    id: u64,
    mut ws: WebSocketStream<MaybeTls>,
    fault: Fault,
    shutdown: &mut watch::Receiver<()>,
) -> String {
    let cfg = &shared.cfg;
    let mut cmds = shared.cmds.subscribe();
    let mut seq: u64 = 0;
    let push_every = cfg.push_interval.unwrap_or(Duration::from_secs(3600));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + push_every, push_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pushing = cfg.push_interval.is_some();
    let resetting = fault == Fault::ResetMidSession;

    let reset = |ws: WebSocketStream<MaybeTls>| {
        let _ = ws.get_ref().set_reset_on_close();
        drop(ws);
    };

    if resetting && !pushing {
        for _ in 0..cfg.reset_after_frames {
            if ws
                .send(Message::binary(push_frame(seq, cfg.push_bytes)))
                .await
                .is_err()
            {
                return "send failed before reset".into();
            }
            seq += 1;
            update(shared, id, |r| r.frames_pushed = seq);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        reset(ws);
        return format!("reset by fault after {seq} frames");
    }

    let mut closing = false;
    loop {
        tokio::select! {
            msg = ws.next() => {
                match msg {
                    None => return if closing { "closed by stand-in".into() } else { "peer went away".into() },
                    Some(Err(e)) => return format!("error: {e}"),
                    Some(Ok(Message::Binary(b))) => {
                        let n = b.len() as u64;
                        let mut out = Vec::with_capacity(b.len() + 1);
                        out.push(TAG_ECHO);
                        out.extend_from_slice(&b);
                        if let Err(e) = ws.send(Message::binary(out)).await {
                            return format!("echo failed: {e}");
                        }
                        update(shared, id, |r| { r.frames_echoed += 1; r.bytes_from_client += n; });
                    }
                    Some(Ok(Message::Text(t))) => {
                        let n = t.len() as u64;
                        let out = format!("E{}", t.as_str());
                        if let Err(e) = ws.send(Message::text(out)).await {
                            return format!("echo failed: {e}");
                        }
                        update(shared, id, |r| { r.frames_echoed += 1; r.bytes_from_client += n; });
                    }
                    Some(Ok(Message::Close(f))) => {
                        // tungstenite queues the close reply; drain until the end.
                        let code = f.map(|f| u16::from(f.code));
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            while let Some(Ok(_)) = ws.next().await {}
                        }).await;
                        return if closing {
                            format!("closed by stand-in (peer answered {code:?})")
                        } else {
                            format!("closed by peer ({code:?})")
                        };
                    }
                    Some(Ok(_)) => {} // ping/pong (pongs are automatic)
                }
            }
            _ = tick.tick(), if pushing && !closing => {
                if let Err(e) = ws.send(Message::binary(push_frame(seq, cfg.push_bytes))).await {
                    return format!("push failed: {e}");
                }
                seq += 1;
                update(shared, id, |r| r.frames_pushed = seq);
                if resetting && seq >= cfg.reset_after_frames {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    reset(ws);
                    return format!("reset by fault after {seq} frames");
                }
            }
            c = cmds.recv() => match c {
                Ok(SessionCmd::Reset) => {
                    reset(ws);
                    return "reset by reset_sessions".into();
                }
                Ok(SessionCmd::Close(code)) if !closing => {
                    closing = true;
                    let frame = CloseFrame { code: CloseCode::from(code), reason: "".into() };
                    if ws.close(Some(frame)).await.is_err() {
                        return "close failed".into();
                    }
                }
                _ => {}
            },
            _ = shutdown.changed() => return "stand-in stopped".into(),
        }
    }
}

/// A connected bridge target.
trait Backend: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Backend for T {}

async fn connect_backend(target: &BridgeTarget) -> Result<Box<dyn Backend>> {
    let connect = async {
        Ok::<Box<dyn Backend>, std::io::Error>(match target {
            BridgeTarget::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            BridgeTarget::Unix(p) => Box::new(UnixStream::connect(p).await?),
        })
    };
    tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| anyhow!("connecting to {target}: timed out"))?
        .with_context(|| format!("connecting to {target}"))
}

async fn run_bridge(
    shared: &Shared,
    id: u64,
    mut ws: WebSocketStream<MaybeTls>,
    backend: Box<dyn Backend>,
    shutdown: &mut watch::Receiver<()>,
) -> String {
    let (mut from_backend, mut to_backend) = tokio::io::split(backend);
    let mut cmds = shared.cmds.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    let mut closing = false;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                None => return if closing { "closed by stand-in".into() } else { "peer went away".into() },
                Some(Err(e)) => return format!("error: {e}"),
                Some(Ok(Message::Binary(b))) => {
                    if let Err(e) = to_backend.write_all(&b).await {
                        let _ = ws.close(None).await;
                        return format!("backend write failed: {e}");
                    }
                    let n = b.len() as u64;
                    update(shared, id, |r| { r.frames_echoed += 1; r.bytes_from_client += n; });
                }
                Some(Ok(Message::Text(_))) if !closing => {
                    closing = true;
                    let frame = CloseFrame { code: CloseCode::Unsupported, reason: "binary only".into() };
                    if ws.close(Some(frame)).await.is_err() {
                        return "close failed".into();
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    let code = f.map(|f| u16::from(f.code));
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(Ok(_)) = ws.next().await {}
                    }).await;
                    return if closing {
                        format!("closed by stand-in (peer answered {code:?})")
                    } else {
                        format!("closed by peer ({code:?})")
                    };
                }
                Some(Ok(_)) => {}
            },
            r = from_backend.read(&mut buf), if !closing => match r {
                Ok(0) | Err(_) => {
                    closing = true;
                    let frame = CloseFrame { code: CloseCode::Away, reason: "console backend closed".into() };
                    if ws.close(Some(frame)).await.is_err() {
                        return "backend closed; close failed".into();
                    }
                }
                Ok(n) => {
                    if let Err(e) = ws.send(Message::binary(buf[..n].to_vec())).await {
                        return format!("send failed: {e}");
                    }
                    update(shared, id, |r| r.frames_pushed += 1);
                }
            },
            c = cmds.recv() => match c {
                Ok(SessionCmd::Reset) => {
                    let _ = ws.get_ref().set_reset_on_close();
                    return "reset by reset_sessions".into();
                }
                Ok(SessionCmd::Close(code)) if !closing => {
                    closing = true;
                    let frame = CloseFrame { code: CloseCode::from(code), reason: "".into() };
                    if ws.close(Some(frame)).await.is_err() {
                        return "close failed".into();
                    }
                }
                _ => {}
            },
            _ = shutdown.changed() => return "stand-in stopped".into(),
        }
    }
}

async fn control_conn(
    standin: Standin,
    sock: TcpStream,
    control_port: u16,
    pem_path: Option<String>,
) -> Result<()> {
    let mut reader = BufReader::new(sock);
    let Some(head) = read_head(&mut reader).await? else {
        return Ok(());
    };
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hdrs);
    req.parse(&head)?;
    let method = req.method.unwrap_or("").to_string();
    let path = req.path.unwrap_or("").to_string();
    let len: usize = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(1 << 20)];
    reader.read_exact(&mut body).await?;
    let body = String::from_utf8_lossy(&body).trim().to_string();

    let json = |v: &dyn erased::Json| (200, "application/json", v.to_json());
    let (status, ctype, out): (u16, &str, String) = match (method.as_str(), path.as_str()) {
        ("GET", "/info") => json(&standin.info(control_port, pem_path)),
        ("POST", "/tickets") => {
            if body.is_empty() {
                (200, "text/plain", standin.issue_ticket())
            } else {
                standin.issue_ticket_with(&body);
                (200, "text/plain", body.clone())
            }
        }
        ("GET", "/requests") => json(&standin.requests()),
        ("GET", "/handshakes") => json(&standin.handshakes()),
        ("GET", "/fault") => (200, "text/plain", standin.fault().as_str().to_string()),
        ("GET", "/sessions") => (200, "text/plain", standin.active_sessions().to_string()),
        ("POST", "/clear") => {
            standin.clear_log();
            (204, "text/plain", String::new())
        }
        ("POST", "/reset-sessions") => {
            standin.reset_sessions();
            (204, "text/plain", String::new())
        }
        ("POST", "/close-sessions") => {
            let code = body.parse().unwrap_or(1000);
            standin.close_sessions(code);
            (204, "text/plain", String::new())
        }
        ("POST", p) if p.starts_with("/fault/") => match p["/fault/".len()..].parse::<Fault>() {
            Ok(f) => match standin.set_fault(f).await {
                Ok(()) => (200, "text/plain", f.as_str().to_string()),
                Err(e) => (500, "text/plain", format!("{e:#}\n")),
            },
            Err(e) => (400, "text/plain", format!("{e}\n")),
        },
        (
            _,
            "/info" | "/tickets" | "/requests" | "/handshakes" | "/fault" | "/sessions" | "/clear",
        ) => (405, "text/plain", "method not allowed\n".to_string()),
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let mut sock = reader.into_inner();
    sock.write_all(&simple_response(status, ctype, out.as_bytes()))
        .await?;
    sock.shutdown().await?;
    Ok(())
}

/// Small helper so the control API can serialize different types through
/// one closure.
mod erased {
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_frames_roundtrip() {
        for (seq, len) in [(0u64, 0usize), (1, 1), (7, 64), (123456, 1000)] {
            let f = push_frame(seq, len);
            assert_eq!(f.len(), PUSH_HEADER_LEN + len);
            assert_eq!(check_push_frame(&f).unwrap(), seq);
        }
        let mut bad = push_frame(5, 10);
        bad[12] ^= 1;
        assert!(check_push_frame(&bad).is_err());
    }

    #[test]
    fn tickets_look_right() {
        let t = random_ticket();
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(t, random_ticket());
    }

    #[test]
    fn fault_names_parse() {
        for f in [
            Fault::None,
            Fault::Down,
            Fault::ResetMidSession,
            Fault::NeverAnswerUpgrade,
        ] {
            assert_eq!(f.as_str().parse::<Fault>().unwrap(), f);
        }
        assert!("bogus".parse::<Fault>().is_err());
    }
}
