//! A small blocking client for etcd's JSON gateway (`POST /v3/...`), over
//! plain TCP or TLS with an optional client certificate: what
//! `mksgate revoke` needs, and nothing more. Several endpoints are tried in
//! order until one answers.

use crate::util::{fail, Outcome};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Longest answer read: etcd's to a range of every revocation is far less.
const MAX_ANSWER_BYTES: usize = 16 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
}

pub struct TlsFiles<'a> {
    pub cacert: Option<&'a str>,
    pub cert: Option<&'a str>,
    pub key: Option<&'a str>,
    /// The name the members' certificate must carry (default: the URL's host).
    pub server_name: Option<&'a str>,
}

pub struct Etcd {
    endpoints: Vec<Endpoint>,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: Option<String>,
    token: Option<String>,
}

fn parse_endpoint(url: &str) -> Outcome<Endpoint> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(fail(format!(
            "--etcd: {url:?} must start with https:// or http://"
        )));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => return Err(fail(format!("--etcd: {url:?} has a bad port"))),
        },
        _ => (rest, 2379),
    };
    if host.is_empty() || rest.contains('/') {
        return Err(fail(format!(
            "--etcd: {url:?} must be scheme://host[:port]"
        )));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Endpoint {
        tls,
        host: host.to_string(),
        port,
    })
}

fn tls_config(files: &TlsFiles<'_>) -> Outcome<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let Some(cacert) = files.cacert else {
        return Err(fail("--cacert is required for an https:// endpoint"));
    };
    let certs = CertificateDer::pem_file_iter(cacert)
        .map_err(|e| fail(format!("--cacert {cacert}: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| fail(format!("--cacert {cacert}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("--cacert {cacert}: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match (files.cert, files.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain: Result<Vec<_>, _> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| fail(format!("--cert {cert}: {e}")))?
                .collect();
            let chain = chain.map_err(|e| fail(format!("--cert {cert}: {e}")))?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| fail(format!("--key {key}: {e}")))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| fail(format!("--cert/--key: {e}")))
        }
        _ => Err(fail("--cert and --key go together")),
    }
}

impl Etcd {
    /// `urls`: comma-separated `https://host:port` (or `http://`).
    pub fn new(urls: &str, files: &TlsFiles<'_>) -> Outcome<Etcd> {
        let endpoints: Vec<Endpoint> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(parse_endpoint)
            .collect::<Outcome<_>>()?;
        if endpoints.is_empty() {
            return Err(fail("--etcd: no endpoint given"));
        }
        let tls = if endpoints.iter().any(|e| e.tls) {
            Some(Arc::new(tls_config(files)?))
        } else {
            None
        };
        Ok(Etcd {
            endpoints,
            tls,
            server_name: files.server_name.map(str::to_string),
            token: None,
        })
    }

    /// Logs in (etcd's access control): later calls carry the token.
    pub fn authenticate(&mut self, user: &str, password: &str) -> Outcome<()> {
        let body = serde_json::json!({"name": user, "password": password}).to_string();
        let answer = self.post("/v3/auth/authenticate", &body)?;
        match answer.get("token").and_then(serde_json::Value::as_str) {
            Some(token) => {
                self.token = Some(token.to_string());
                Ok(())
            }
            None => Err(fail(format!(
                "etcd refused the login of user {user:?}: {}",
                error_text(&answer)
            ))),
        }
    }

    /// One call: the first endpoint that answers decides. An answer with
    /// etcd's `error` is a failure carrying etcd's words.
    pub fn post(&self, path: &str, body: &str) -> Outcome<serde_json::Value> {
        let mut last = String::new();
        for endpoint in &self.endpoints {
            match self.post_to(endpoint, path, body) {
                Ok((status, text)) => {
                    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|_| {
                        fail(format!(
                            "etcd at {}:{} answered {status} with no JSON",
                            endpoint.host, endpoint.port
                        ))
                    })?;
                    if value.get("error").is_some() || !(200..300).contains(&status) {
                        return Err(fail(format!("etcd: {}", error_text(&value))));
                    }
                    return Ok(value);
                }
                Err(e) => last = format!("{}:{}: {e}", endpoint.host, endpoint.port),
            }
        }
        Err(fail(format!("no etcd endpoint answered (last: {last})")))
    }

    fn post_to(&self, e: &Endpoint, path: &str, body: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let addr: SocketAddr = (e.host.as_str(), e.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        tcp.set_write_timeout(Some(TIMEOUT))?;
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            e.host,
            e.port,
            body.len()
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: {token}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        let raw = match (&self.tls, e.tls) {
            (Some(config), true) => {
                let name = self.server_name.clone().unwrap_or_else(|| e.host.clone());
                let name = ServerName::try_from(name)
                    .map_err(|_| std::io::Error::other("--server-name is not a DNS name or IP"))?;
                let conn = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(std::io::Error::other)?;
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                stream.write_all(head.as_bytes())?;
                read_all(&mut stream)?
            }
            _ => {
                let mut tcp = tcp;
                tcp.write_all(head.as_bytes())?;
                read_all(&mut tcp)?
            }
        };
        parse_response(&raw)
    }
}

/// Reads until the peer closes (a TLS peer that closes without
/// close_notify ends the answer too).
fn read_all(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_ANSWER_BYTES {
                    return Err(std::io::Error::other("answer too long"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let bad = || std::io::Error::other("not an HTTP answer");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad())?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let chunked = lines.any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = &raw[end + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| bad())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad())?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        let chunk = rest.get(..size).ok_or_else(bad)?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or_else(bad)?;
    }
    Ok((status, out))
}

/// etcd's error text from an answer, printable and short.
pub fn error_text(answer: &serde_json::Value) -> String {
    let text = answer
        .get("error")
        .or_else(|| answer.get("message"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("an unexpected answer");
    crate::util::one_line(text)
}
