//! One blocking HTTP/1.1 request (`Connection: close`, read to EOF, chunked
//! bodies decoded): for Envoy's admin API and plain test listeners.

use anyhow::{anyhow, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    pub body: String,
}

/// `method path` to `addr`, with `body`; bounded by `timeout` per read and
/// write.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<Response> {
    request_with(addr, method, path, &[], body, timeout)
}

/// As `request`, with extra request headers.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    // One write: a server that answers from the head alone (a direct
    // response) and closes would otherwise find the body unread and reset
    // the connection before the client reads the answer.
    let mut request = head.into_bytes();
    request.extend_from_slice(body.as_bytes());
    stream.write_all(&request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&String::from_utf8_lossy(&raw))
        .ok_or_else(|| anyhow!("no HTTP response from {addr}{path}"))
}

/// `GET path`, 5 s bound.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response> {
    request(addr, "GET", path, "", Duration::from_secs(5))
}

fn parse(text: &str) -> Option<Response> {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Some(Response {
        status,
        head: head.to_string(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    })
}

/// A chunked body's data; stops at the last chunk or at anything that does
/// not parse.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, after)) = rest.split_once("\r\n") {
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            break;
        };
        let Some(chunk) = after.get(..size) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.push_str(chunk);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nLIVE").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "LIVE"));
        let r = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab\r\n\r\n3;x=1\r\ncde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "ab\r\ncde");
        assert!(parse("garbage").is_none());
        // A truncated chunk ends the body instead of panicking.
        let r = parse("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nff\r\nab").unwrap();
        assert_eq!(r.body, "");
    }
}
