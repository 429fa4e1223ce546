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

mod bridge;
mod config;
mod control;
mod protocol;
mod records;
mod server;
mod session;
#[cfg(test)]
mod tests;
pub mod webmks;

use self::bridge::*;
pub use self::config::*;
pub use self::control::ControlServer;
use self::control::*;
pub use self::protocol::*;
pub use self::records::*;
use self::server::*;
use self::session::*;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Copy, Debug)]
pub(super) enum SessionCmd {
    Close(u16),
    Reset,
}

pub(super) struct Shared {
    pub(super) cfg: StandinConfig,
    pub(super) cert: CertKey,
    pub(super) server_tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) local: SocketAddr,
    pub(super) tickets: Mutex<HashMap<String, TicketState>>,
    pub(super) requests: Mutex<RequestLog>,
    pub(super) handshakes: Mutex<Vec<RecordedHandshake>>,
    pub(super) fault: watch::Sender<Fault>,
    /// What the accept loop has actually done: `true` = listening.
    pub(super) listening: watch::Sender<bool>,
    pub(super) cmds: broadcast::Sender<SessionCmd>,
    pub(super) active: AtomicUsize,
    pub(super) conns: AtomicU64,
}

/// The request log; `base` is the id of `items[0]`.
#[derive(Default)]
pub(super) struct RequestLog {
    pub(super) base: u64,
    pub(super) items: Vec<RecordedRequest>,
}

/// Ends every task of a stand-in when the last handle is dropped.
pub(super) struct Guard {
    pub(super) _shutdown: watch::Sender<()>,
    pub(super) accept: JoinHandle<()>,
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
    pub(super) shared: Arc<Shared>,
    pub(super) _guard: Arc<Guard>,
}

impl std::fmt::Debug for Standin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standin")
            .field("name", &self.shared.cfg.name)
            .field("addr", &self.shared.local)
            .finish_non_exhaustive()
    }
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
