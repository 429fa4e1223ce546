//! Raw bytes on the wire: a request head exactly as given (any byte, in any
//! place), over TLS or plain TCP, and the status and decision of whatever
//! comes back. The WebSocket client (`client`) builds well-formed requests;
//! this is for the ones no well-behaved client would send.

use anyhow::{anyhow, Context, Result};
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where raw requests go: an address, and TLS (with SNI) or not.
#[derive(Clone)]
pub struct WireTarget {
    pub addr: SocketAddr,
    /// Connect from this address (a simulated user's), or the kernel's
    /// choice (127.0.0.1).
    pub source: Option<IpAddr>,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub timeout: Duration,
}

/// What came back for one raw request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireReply {
    /// The status, or 0 if the connection ended before a status line.
    pub status: u16,
    /// `x-mksgate-decision`, when the filter answered.
    pub decision: Option<String>,
}

impl WireTarget {
    pub fn plain(addr: SocketAddr) -> WireTarget {
        WireTarget {
            addr,
            source: None,
            tls: None,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn tls(addr: SocketAddr, trust: &crate::tls::Trust, sni: &str) -> Result<WireTarget> {
        let config = crate::tls::client_config(trust, true)?;
        let name = ServerName::try_from(sni.to_string())
            .map_err(|e| anyhow!("bad server name {sni:?}: {e}"))?;
        Ok(WireTarget {
            addr,
            source: None,
            tls: Some((Arc::new(config), name)),
            timeout: Duration::from_secs(10),
        })
    }

    /// The same target, reached from `source`.
    pub fn from(&self, source: IpAddr) -> WireTarget {
        WireTarget {
            source: Some(source),
            ..self.clone()
        }
    }

    /// Sends `head` (request line, headers and the blank line, as given) on
    /// a new connection and reads the response head.
    pub async fn send(&self, head: &[u8]) -> Result<WireReply> {
        tokio::time::timeout(self.timeout, self.send_inner(head))
            .await
            .map_err(|_| anyhow!("no response within {:?}", self.timeout))?
    }

    async fn send_inner(&self, head: &[u8]) -> Result<WireReply> {
        let tcp = crate::clients::tcp_connect(self.addr, self.source)
            .await
            .with_context(|| format!("connecting to {} from {:?}", self.addr, self.source))?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => exchange(tcp, head).await,
            Some((config, name)) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?;
                exchange(tls, head).await
            }
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, head: &[u8]) -> Result<WireReply> {
    // A refused write (Envoy closed early) still leaves its answer to read.
    let _ = io.write_all(head).await;
    let _ = io.flush().await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(parse_head(&buf))
}

fn parse_head(buf: &[u8]) -> WireReply {
    let text = String::from_utf8_lossy(buf);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let decision = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-mksgate-decision"))
        .map(|(_, value)| value.trim().to_string());
    WireReply { status, decision }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_and_decision() {
        let r = parse_head(
            b"HTTP/1.1 400 Bad Request\r\nx-mksgate-decision: malformed_request\r\n\r\nbody",
        );
        assert_eq!(
            (r.status, r.decision.as_deref()),
            (400, Some("malformed_request"))
        );
        assert_eq!(parse_head(b"").status, 0);
        assert_eq!(
            parse_head(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").decision,
            None
        );
    }
}
