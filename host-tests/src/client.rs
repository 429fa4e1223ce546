//! A WebSocket client for tests: connects to `ws://` or `wss://` URLs
//! (directly or through a gateway) with full control over where it
//! connects, the SNI, the `Host` header, extra headers and offered
//! subprotocols, and reports refusals (status, headers, body) as data.
//!
//! ```no_run
//! # async fn demo(standin: &mksgate_host_tests::standin::Standin) -> anyhow::Result<()> {
//! use mksgate_host_tests::client::{connect, verify_session, ClientOpts};
//! let ticket = standin.issue_ticket();
//! let opts = ClientOpts::new()
//!     .connect_to(standin.local_addr())
//!     .pin(standin.cert_der())
//!     .wmks_protocols();
//! let mut session = connect(&standin.url(&ticket), &opts).await?.session()?;
//! assert_eq!(session.subprotocol.as_deref(), Some("binary"));
//! verify_session(&mut session, 10).await?;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::io::{parse_response_head, read_body, read_head, HttpResponse, MaybeTls};
use crate::standin::{check_push_frame, pattern_bytes, TAG_ECHO, TAG_PUSH, WMKS_PROTOCOLS};
use crate::tls::Trust;

/// Seed for client frame payloads.
pub const CLIENT_SEED: u64 = 0x434C_4945_4E54_0000;
mod session;
pub use session::*;

/// What SNI to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Sni {
    /// The URL's host (none if it is an IP address).
    #[default]
    Auto,
    /// This name.
    Name(String),
    /// No SNI extension at all.
    Omit,
}

/// Connection options.
#[derive(Clone, Debug)]
pub struct ClientOpts {
    /// How to trust the server certificate (default: accept any).
    pub trust: Trust,
    /// Connect to this address instead of resolving the URL's host.
    pub connect_to: Option<SocketAddr>,
    /// Connect from this address (a simulated user's; see [`crate::clients`]).
    pub source: Option<std::net::IpAddr>,
    /// `Host` header (default: the URL's authority).
    pub host: Option<String>,
    /// SNI.
    pub sni: Sni,
    /// Extra request headers, in order (e.g. `Origin`).
    pub headers: Vec<(String, String)>,
    /// Offered subprotocols (one `Sec-WebSocket-Protocol` header, in order).
    pub protocols: Vec<String>,
    /// Send the WebSocket upgrade headers (default true). With `false` a
    /// plain GET is sent and any answer comes back as [`Outcome::Refused`].
    pub websocket: bool,
    /// Bound on connect + TLS + request + response head. Default 10 s.
    pub timeout: Duration,
}

impl Default for ClientOpts {
    fn default() -> Self {
        ClientOpts {
            trust: Trust::InsecureAny,
            connect_to: None,
            source: None,
            host: None,
            sni: Sni::Auto,
            headers: Vec::new(),
            protocols: Vec::new(),
            websocket: true,
            timeout: Duration::from_secs(10),
        }
    }
}

impl ClientOpts {
    /// Defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set the trust policy.
    pub fn trust(mut self, t: Trust) -> Self {
        self.trust = t;
        self
    }
    /// Trust exactly this certificate.
    pub fn pin(mut self, cert: CertificateDer<'static>) -> Self {
        self.trust = Trust::Pinned(vec![cert]);
        self
    }
    /// Connect to this address.
    pub fn connect_to(mut self, addr: SocketAddr) -> Self {
        self.connect_to = Some(addr);
        self
    }
    /// Connect from this address.
    pub fn source(mut self, ip: std::net::IpAddr) -> Self {
        self.source = Some(ip);
        self
    }
    /// Set the `Host` header.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }
    /// Send this SNI.
    pub fn sni(mut self, name: &str) -> Self {
        self.sni = Sni::Name(name.to_string());
        self
    }
    /// Send no SNI.
    pub fn no_sni(mut self) -> Self {
        self.sni = Sni::Omit;
        self
    }
    /// Add a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    /// Offer these subprotocols.
    pub fn protocols(mut self, p: &[&str]) -> Self {
        self.protocols = p.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Offer what the VMware HTML console offers
    /// (`binary, vmware-vvc, uint8utf8`).
    pub fn wmks_protocols(self) -> Self {
        self.protocols(&WMKS_PROTOCOLS)
    }
    /// Send a plain GET (no upgrade headers).
    pub fn plain_get(mut self) -> Self {
        self.websocket = false;
        self
    }
    /// Set the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
}

/// A parsed `ws://` / `wss://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    /// TLS (`wss`/`https`).
    pub tls: bool,
    /// Host without brackets.
    pub host: String,
    /// Port (default 80/443).
    pub port: u16,
    /// Path and query (default `/`).
    pub path: String,
    /// Authority as written (`host[:port]`), for the Host header.
    pub authority: String,
}

/// Parse `ws://host[:port]/path`, `wss://...` (also `http`/`https`).
pub fn parse_url(url: &str) -> Result<WsUrl> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("no scheme in {url:?}"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "wss" | "https" => true,
        "ws" | "http" => false,
        s => bail!("unsupported scheme {s:?}"),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| anyhow!("bad IPv6 authority {authority:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().context("bad port")?,
            None => default_port,
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().with_context(|| format!("bad port in {url:?}"))?,
            ),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() {
        bail!("no host in {url:?}");
    }
    Ok(WsUrl {
        tls,
        host,
        port,
        path,
        authority: authority.to_string(),
    })
}

/// What a connection attempt got.
#[derive(Debug)]
pub enum Outcome {
    /// 101: a WebSocket session.
    Upgraded(Box<Session>),
    /// Any other answer (status, headers, body).
    Refused(HttpResponse),
}

impl Outcome {
    /// The session, or an error describing the refusal.
    pub fn session(self) -> Result<Session> {
        match self {
            Outcome::Upgraded(s) => Ok(*s),
            Outcome::Refused(r) => bail!(
                "expected a WebSocket upgrade, got {} {:?}",
                r.status,
                r.body_text()
            ),
        }
    }

    /// The refusal, or an error if the upgrade succeeded.
    pub fn refusal(self) -> Result<HttpResponse> {
        match self {
            Outcome::Refused(r) => Ok(r),
            Outcome::Upgraded(s) => bail!(
                "expected a refusal, got a WebSocket upgrade (subprotocol {:?})",
                s.subprotocol
            ),
        }
    }

    /// Status code (101 for an upgrade).
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Upgraded(s) => s.response.status,
            Outcome::Refused(r) => r.status,
        }
    }
}

/// Connect and try the upgrade.
pub async fn connect(url: &str, opts: &ClientOpts) -> Result<Outcome> {
    tokio::time::timeout(opts.timeout, connect_inner(url, opts))
        .await
        .map_err(|_| anyhow!("connecting to {url} timed out after {:?}", opts.timeout))?
}

async fn connect_inner(url: &str, opts: &ClientOpts) -> Result<Outcome> {
    let u = parse_url(url)?;
    let tcp = match (opts.connect_to, opts.source) {
        (Some(a), source) => crate::clients::tcp_connect(a, source)
            .await
            .with_context(|| format!("TCP connect to {a} from {source:?}"))?,
        (None, None) => TcpStream::connect((u.host.as_str(), u.port))
            .await
            .with_context(|| format!("TCP connect to {}:{}", u.host, u.port))?,
        (None, Some(_)) => bail!("a source address needs connect_to"),
    };
    tcp.set_nodelay(true)?;
    let io = if u.tls {
        let (name, enable_sni) = match &opts.sni {
            Sni::Auto => (u.host.clone(), true),
            Sni::Name(n) => (n.clone(), true),
            Sni::Omit => (u.host.clone(), false),
        };
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| anyhow!("bad server name {name:?}: {e}"))?;
        let cfg = crate::tls::client_config(&opts.trust, enable_sni)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(server_name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {url} (SNI {:?})", opts.sni))?;
        MaybeTls::Tls(Box::new(tokio_rustls::TlsStream::Client(tls)))
    } else {
        MaybeTls::Plain(tcp)
    };

    let host = opts.host.clone().unwrap_or_else(|| u.authority.clone());
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let mut req = format!("GET {} HTTP/1.1\r\nHost: {host}\r\n", u.path);
    if opts.websocket {
        req.push_str(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        ));
        if !opts.protocols.is_empty() {
            req.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                opts.protocols.join(", ")
            ));
        }
    }
    for (k, v) in &opts.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut io = io;
    io.write_all(req.as_bytes())
        .await
        .context("sending request")?;
    io.flush().await?;

    let mut reader = BufReader::new(io);
    let head = read_head(&mut reader)
        .await
        .context("reading response head")?
        .ok_or_else(|| anyhow!("connection closed before any response to {url}"))?;
    let mut resp = parse_response_head(&head)?;
    if resp.status != 101 || !opts.websocket {
        resp.body = read_body(&mut reader, &resp, 16 * 1024 * 1024)
            .await
            .context("reading response body")?;
        return Ok(Outcome::Refused(resp));
    }
    let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    match resp.header("sec-websocket-accept") {
        Some(a) if a.trim() == expected => {}
        other => bail!("bad Sec-WebSocket-Accept {other:?}, expected {expected:?}"),
    }
    let subprotocol = resp
        .header("sec-websocket-protocol")
        .map(|s| s.trim().to_string());
    let buffered = reader.buffer().to_vec();
    let io = reader.into_inner();
    let ws = WebSocketStream::from_partially_read(io, buffered, Role::Client, None).await;
    Ok(Outcome::Upgraded(Box::new(Session {
        ws,
        response: resp,
        subprotocol,
        next_push: 0,
        sent: 0,
        pushes_seen: 0,
    })))
}

#[cfg(test)]
mod tests;
