//! The load generator as a console client: the request it sends for each
//! system (a path-routed `?host=` or a signed link, valid or one the
//! gateway must refuse), opening a session (plain or TLS, from a chosen
//! address), the echo of a frame, and the close.

use super::*;

/// How a client reaches the console.
#[derive(Clone)]
pub enum Mode {
    /// `ws://<addr>/ticket/<ticket>?host=<esxi>`: the stand-in directly, or
    /// a proxy routing on the `host` query parameter (HAProxy recipe).
    Path,
    /// `ws://<addr>/console?token=<link>`: a link signed like a portal
    /// would (shipped claims shape, fresh ticket and `jti` every time).
    Mksgate { key: Box<Key>, ttl_s: u64 },
    /// `Path` with `&token=<link>` appended: a path-routed request as long
    /// as mksgate's (the budget's system 4P).
    PathWithToken { key: Box<Key>, ttl_s: u64 },
}

/// TLS from the client, as a browser opens `wss://`: TLS 1.3, ALPN
/// `http/1.1`, the gateway's name as SNI, its certificate checked against
/// the run's CA.
#[derive(Clone)]
pub struct ClientTls {
    pub connector: tokio_rustls::TlsConnector,
    pub name: rustls::pki_types::ServerName<'static>,
}

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub tls: Option<ClientTls>,
    nonce: u64,
}

impl Target {
    /// `self` reached over TLS.
    pub fn with_tls(mut self, tls: ClientTls) -> Target {
        self.tls = Some(tls);
        self
    }

    pub fn new(addr: SocketAddr, mode: Mode) -> Target {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            & 0x0fff_ffff_ffff_ffff;
        Target {
            addr,
            mode,
            tls: None,
            nonce,
        }
    }

    /// A link signed like a portal would (shipped claims shape, fresh
    /// ticket and `jti` every time).
    fn link(&self, key: &Key, ttl_s: u64, ticket: &str, n: u64) -> String {
        self.link_as(key, ttl_s, ticket, n, Variant::Valid)
    }

    /// [`Target::link`], or a link the gateway must refuse (`variant`).
    fn link_as(&self, key: &Key, ttl_s: u64, ticket: &str, n: u64, variant: Variant) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // Expired: issued 3 minutes ago for 1 (the skew is 30 s).
        let iat = if variant == Variant::Expired {
            now - 180
        } else {
            now
        };
        let exp = if variant == Variant::Expired {
            now - 120
        } else {
            now + ttl_s
        };
        let claims = serde_json::json!({
            "host": ESXI_HOST,
            "ticket": ticket,
            "iat": iat,
            "exp": exp,
            "jti": format!("j{:015x}{:016x}", self.nonce, n),
            "aud": AUDIENCE,
            "iss": ISSUER,
            "sub": "bench",
        });
        match variant {
            Variant::Forged => match Key::new(
                Some(KID.into()),
                Alg::HS256,
                b"not the gateway's key: another portal's, 48 bytes",
            ) {
                Ok(other) => jws::sign(&other, claims.to_string().as_bytes()),
                Err(_) => String::new(),
            },
            _ => jws::sign(key, claims.to_string().as_bytes()),
        }
    }

    /// The upgrade request for handshake number `n` (unique ticket and jti),
    /// with a link of `variant` (mksgate targets; other modes ignore it).
    /// Number `n` again is the same `jti`: a replay.
    pub fn request_as(&self, n: u64, variant: Variant) -> Result<Request> {
        let ticket = format!("b{:015x}{:016x}", self.nonce, n);
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let uri = match &self.mode {
            Mode::Path => format!("{scheme}://{}/ticket/{ticket}?host={ESXI_HOST}", self.addr),
            Mode::Mksgate { key, ttl_s } => {
                let token = self.link_as(key, *ttl_s, &ticket, n, variant);
                format!("{scheme}://{}/console?token={token}", self.addr)
            }
            Mode::PathWithToken { key, ttl_s } => {
                let token = self.link(key, *ttl_s, &ticket, n);
                format!(
                    "{scheme}://{}/ticket/{ticket}?host={ESXI_HOST}&token={token}",
                    self.addr
                )
            }
        };
        let mut req = uri.into_client_request()?;
        let h = req.headers_mut();
        h.insert("origin", HeaderValue::from_static(ORIGIN));
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(WMKS_PROTOCOLS),
        );
        Ok(req)
    }
}

/// A signed link the gateway admits, or one it must refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Valid,
    /// Past `exp` (and the skew): `expired`.
    Expired,
    /// Signed with another key under the gateway's `kid`: `bad_signature`.
    Forged,
}

/// Handshake counter shared by every task of a run (unique tickets/jtis).
#[derive(Default)]
pub struct Counter(std::sync::atomic::AtomicU64);

impl Counter {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// A plain or TLS connection: one type for every system's sessions.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Connect and upgrade; the error is a short kind for the error table.
pub async fn open(target: &Target, n: u64) -> std::result::Result<Ws, String> {
    open_from(target, n, None).await
}

/// [`open`], from the local address `source` when given (a client of its
/// own on 127/8: the per-client limits and the port range then see many
/// clients).
pub async fn open_from(
    target: &Target,
    n: u64,
    source: Option<std::net::IpAddr>,
) -> std::result::Result<Ws, String> {
    open_as(target, n, source, Variant::Valid).await
}

/// [`open_from`] with a link of `variant`.
pub async fn open_as(
    target: &Target,
    n: u64,
    source: Option<std::net::IpAddr>,
    variant: Variant,
) -> std::result::Result<Ws, String> {
    let req = target
        .request_as(n, variant)
        .map_err(|e| format!("request: {e}"))?;
    let fut = async {
        let tcp = match source {
            None => TcpStream::connect(target.addr).await,
            Some(ip) => {
                async {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.bind(std::net::SocketAddr::new(ip, 0))?;
                    socket.connect(target.addr).await
                }
                .await
            }
        }
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &target.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(
                tls.connector
                    .connect(tls.name.clone(), tcp)
                    .await
                    .map_err(|e| format!("tls: {:?}", e.kind()))?,
            ),
        };
        match tokio_tungstenite::client_async(req, io).await {
            Ok((ws, _resp)) => Ok(ws),
            Err(WsError::Http(resp)) => Err(format!("status {}", resp.status().as_u16())),
            Err(WsError::Io(e)) => Err(format!("io: {:?}", e.kind())),
            Err(e) => Err(format!("ws: {}", short(&e.to_string()))),
        }
    };
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err("timeout".into()),
    }
}

pub(crate) fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Close handshake (send a close frame, wait for the reply), then drop the
/// socket, as a browser does. (Waiting for the server's FIN instead would
/// stall on Envoy, which holds a connection it closes for up to its
/// `delayed_close_timeout`, 1 s, waiting for the client's FIN.)
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(STEP_TIMEOUT, async {
        let _ = ws.close(None).await;
        while let Some(m) = ws.next().await {
            if matches!(m, Err(_) | Ok(Message::Close(_))) {
                break;
            }
        }
    })
    .await;
}

/// Open `n` sessions, `parallel` handshakes at a time.
pub(crate) async fn open_many(
    target: &Arc<Target>,
    counter: &Arc<Counter>,
    n: u32,
    parallel: u32,
) -> (Vec<Ws>, BTreeMap<String, u64>) {
    let mut sessions = Vec::with_capacity(n as usize);
    let mut errors = BTreeMap::new();
    let mut left = n;
    while left > 0 {
        let batch = left.min(parallel.max(1));
        left -= batch;
        let mut joins = Vec::new();
        for _ in 0..batch {
            let (t, c) = (target.clone(), counter.clone());
            joins.push(tokio::spawn(async move { open(&t, c.next()).await }));
        }
        for j in joins {
            match j.await {
                Ok(Ok(ws)) => sessions.push(ws),
                Ok(Err(kind)) => *errors.entry(kind).or_default() += 1,
                Err(_) => *errors.entry("task failed".to_string()).or_default() += 1,
            }
        }
    }
    (sessions, errors)
}

/// Wait for the next echo of a binary frame of `len` payload bytes.
pub async fn next_echo(
    ws: &mut (impl StreamExt<Item = Result<Message, WsError>> + Unpin),
    len: usize,
) -> Result<()> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                if b.len() != len + 1 || b.first() != Some(&b'E') {
                    bail!("bad echo ({} bytes)", b.len());
                }
                return Ok(());
            }
            Some(Ok(Message::Close(_))) | None => bail!("closed"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("ws: {}", short(&e.to_string())),
        }
    }
}
