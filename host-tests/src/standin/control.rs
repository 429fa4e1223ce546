//! The `esxi-standin` binary's HTTP control API.

use super::*;

/// A running control API; stops when dropped.
#[derive(Debug)]
pub struct ControlServer {
    pub(super) addr: SocketAddr,
    pub(super) task: JoinHandle<()>,
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

pub(super) async fn control_conn(
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
