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

/// A connected WebSocket session.
#[derive(Debug)]
pub struct Session {
    /// The stream (use directly for custom traffic; see also the helpers).
    pub ws: WebSocketStream<MaybeTls>,
    /// The 101 response.
    pub response: HttpResponse,
    /// `Sec-WebSocket-Protocol` of the response.
    pub subprotocol: Option<String>,
    /// Sequence number the next push frame must carry.
    pub next_push: u64,
    /// Frames sent by [`verify_session`] so far (numbers the next frame).
    pub sent: u64,
    /// Push frames seen (and checked) so far.
    pub pushes_seen: u64,
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// A close frame (code) was received.
    Closed(Option<u16>),
    /// The stream ended without a close frame.
    Eof,
    /// A transport error, e.g. connection reset.
    Error(String),
}

/// What [`verify_session`] checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Frames sent and echoed back intact.
    pub echoed: u64,
    /// Client payload bytes sent (all echoed).
    pub bytes_sent: u64,
    /// Push frames received and checked during the run.
    pub pushes: u64,
    /// Push payload bytes received during the run.
    pub push_bytes: u64,
}

/// Payload sizes [`verify_session`] cycles through (WebSocket length-field
/// boundaries 125/126/127, 64 KiB boundaries, a few others).
pub const FRAME_SIZES: [usize; 11] = [1, 125, 126, 127, 1000, 4096, 65535, 65536, 100_000, 17, 0];

/// The `i`-th frame [`verify_session`] sends: every 4th one (i % 4 == 3) is
/// text, the others binary; sizes cycle through [`FRAME_SIZES`].
pub fn client_frame(i: u64) -> Message {
    let size = FRAME_SIZES[(i as usize) % FRAME_SIZES.len()];
    if i % 4 == 3 {
        let mut s = format!("frame {i}:");
        let letters = pattern_bytes(i ^ CLIENT_SEED, size);
        s.extend(letters.iter().map(|b| (b'a' + b % 26) as char));
        s.truncate(size.max(s.find(':').map_or(0, |p| p + 1)));
        Message::text(s)
    } else {
        let mut b = i.to_be_bytes().to_vec();
        b.extend_from_slice(&pattern_bytes(i ^ CLIENT_SEED, size));
        b.truncate(size.max(8));
        Message::binary(b)
    }
}

fn expected_echo(m: &Message) -> Option<Message> {
    match m {
        Message::Binary(b) => {
            let mut v = Vec::with_capacity(b.len() + 1);
            v.push(TAG_ECHO);
            v.extend_from_slice(b);
            Some(Message::binary(v))
        }
        Message::Text(t) => Some(Message::text(format!("E{}", t.as_str()))),
        _ => None,
    }
}

fn describe(m: &Message) -> String {
    match m {
        Message::Binary(b) => format!(
            "binary({} bytes, first {:?})",
            b.len(),
            b.first().map(|c| *c as char)
        ),
        Message::Text(t) => format!(
            "text({} bytes, {:?}...)",
            t.len(),
            t.chars().take(16).collect::<String>()
        ),
        other => format!("{other:?}"),
    }
}

impl Session {
    /// Send one message.
    pub async fn send(&mut self, m: Message) -> Result<()> {
        self.ws.send(m).await.context("sending WebSocket message")
    }

    /// Next message (`None` at the end of the stream). Push frames are
    /// checked byte for byte and their sequence must continue
    /// [`Self::next_push`]; they are returned too.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Option<Message>> {
        let m = tokio::time::timeout(timeout, self.ws.next())
            .await
            .map_err(|_| anyhow!("no WebSocket message within {timeout:?}"))?;
        match m {
            None => Ok(None),
            Some(Err(e)) => Err(anyhow!("WebSocket error: {e}")),
            Some(Ok(m)) => {
                self.track_push(&m)?;
                Ok(Some(m))
            }
        }
    }

    fn track_push(&mut self, m: &Message) -> Result<bool> {
        if let Message::Binary(b) = m {
            if b.first() == Some(&TAG_PUSH) {
                let seq = check_push_frame(b)?;
                if seq != self.next_push {
                    bail!("push frame {seq} arrived, expected {}", self.next_push);
                }
                self.next_push += 1;
                self.pushes_seen += 1;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Read until `n` push frames have arrived (each checked); anything
    /// else but ping/pong is an error. Returns the last sequence number.
    pub async fn expect_pushes(&mut self, n: u64, timeout: Duration) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        let target = self.pushes_seen + n;
        while self.pushes_seen < target {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await? {
                None => bail!(
                    "stream ended after {} of {n} push frames",
                    n - (target - self.pushes_seen)
                ),
                Some(Message::Ping(_) | Message::Pong(_)) => {}
                Some(Message::Binary(b)) if b.first() == Some(&TAG_PUSH) => {}
                Some(other) => bail!("expected a push frame, got {}", describe(&other)),
            }
        }
        Ok(self.next_push.saturating_sub(1))
    }

    /// Assert that nothing but ping/pong arrives for `dur`.
    pub async fn expect_silence(&mut self, dur: Duration) -> Result<()> {
        match tokio::time::timeout(dur, self.ws.next()).await {
            Err(_) => Ok(()),
            Ok(None) => bail!("stream ended while expecting silence"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => Ok(()),
            Ok(Some(Ok(m))) => bail!("expected silence, got {}", describe(&m)),
            Ok(Some(Err(e))) => bail!("expected silence, got error {e}"),
        }
    }

    /// Read (checking pushes, ignoring echoes) until the session ends.
    pub async fn wait_end(&mut self, timeout: Duration) -> Result<SessionEnd> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = tokio::time::timeout(left, self.ws.next())
                .await
                .map_err(|_| anyhow!("session did not end within {timeout:?}"))?;
            match m {
                None => return Ok(SessionEnd::Eof),
                Some(Err(e)) => return Ok(SessionEnd::Error(e.to_string())),
                Some(Ok(Message::Close(f))) => {
                    let code = f.map(|f| u16::from(f.code));
                    // Let tungstenite send the close reply.
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.next()).await;
                    return Ok(SessionEnd::Closed(code));
                }
                Some(Ok(m)) => {
                    self.track_push(&m)?;
                }
            }
        }
    }

    /// Send a normal close and wait (bounded) for the peer's close.
    pub async fn close(mut self, timeout: Duration) -> Result<()> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        tokio::time::timeout(timeout, async {
            self.ws.close(Some(frame)).await.context("sending close")?;
            while let Some(m) = self.ws.next().await {
                if m.is_err() {
                    break;
                }
            }
            Ok::<(), anyhow::Error>(())
        })
        .await
        .map_err(|_| anyhow!("close not answered within {timeout:?}"))?
    }
}

/// Send `frames` numbered frames ([`client_frame`]) one at a time and check
/// that each comes back as an intact echo, while checking every push frame
/// that arrives in between (sequence and every byte). 10 s per frame.
pub async fn verify_session(s: &mut Session, frames: u64) -> Result<VerifyReport> {
    verify_session_with(s, frames, 1, Duration::from_secs(10)).await
}

/// Like [`verify_session`] with up to `window` frames in flight and a
/// per-message timeout.
pub async fn verify_session_with(
    s: &mut Session,
    frames: u64,
    window: usize,
    per_msg: Duration,
) -> Result<VerifyReport> {
    let window = window.max(1);
    let mut report = VerifyReport::default();
    let mut pending: VecDeque<(u64, Message)> = VecDeque::new();
    let end = s.sent + frames;
    while s.sent < end || !pending.is_empty() {
        if s.sent < end && pending.len() < window {
            let i = s.sent;
            let m = client_frame(i);
            report.bytes_sent += m.len() as u64;
            let echo = expected_echo(&m).ok_or_else(|| anyhow!("unexpected frame kind"))?;
            s.send(m)
                .await
                .with_context(|| format!("sending frame {i}"))?;
            s.sent += 1;
            pending.push_back((i, echo));
            continue;
        }
        let before = s.pushes_seen;
        let m = match s.recv(per_msg).await {
            Ok(Some(m)) => m,
            Ok(None) => bail!(
                "stream ended while waiting for echo of frame {:?}",
                pending.front().map(|p| p.0)
            ),
            Err(e) => {
                return Err(e.context(format!(
                    "waiting for echo of frame {:?}",
                    pending.front().map(|p| p.0)
                )))
            }
        };
        if s.pushes_seen > before {
            report.pushes += 1;
            report.push_bytes += (m.len() - crate::standin::PUSH_HEADER_LEN) as u64;
            continue;
        }
        match &m {
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(f) => bail!("peer closed ({f:?}) while echoes were pending"),
            _ => {}
        }
        let Some((i, want)) = pending.pop_front() else {
            bail!("unexpected message {}", describe(&m));
        };
        if m != want {
            let detail = first_diff(&m.clone().into_data(), &want.clone().into_data());
            bail!(
                "echo of frame {i} differs: got {}, want {} {detail}",
                describe(&m),
                describe(&want)
            );
        }
        report.echoed += 1;
    }
    Ok(report)
}

fn first_diff(got: &[u8], want: &[u8]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(p) => format!(
            "(first difference at byte {p}: got {:#04x}, want {:#04x})",
            got[p], want[p]
        ),
        None => format!("(lengths {} vs {})", got.len(), want.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = parse_url("wss://vesxi01.sec.lab:8443/ticket/abc?x=1").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("vesxi01.sec.lab", 8443, "/ticket/abc?x=1")
        );
        assert_eq!(u.authority, "vesxi01.sec.lab:8443");
        let u = parse_url("ws://127.0.0.1").unwrap();
        assert_eq!((u.port, u.path.as_str(), u.tls), (80, "/", false));
        let u = parse_url("wss://[::1]/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 443));
        assert!(parse_url("ftp://x/").is_err());
    }

    #[test]
    fn client_frames_are_deterministic_and_sized() {
        for i in 0..(FRAME_SIZES.len() as u64 * 4) {
            let a = client_frame(i);
            assert_eq!(a, client_frame(i));
            let want = FRAME_SIZES[(i as usize) % FRAME_SIZES.len()];
            assert!(a.len() >= want, "frame {i}: {} < {want}", a.len());
            assert_eq!(a.is_text(), i % 4 == 3);
        }
        assert_ne!(client_frame(0), client_frame(FRAME_SIZES.len() as u64));
    }
}
