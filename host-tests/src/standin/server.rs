//! Accepting connections and answering requests like ESXi does.

use super::*;

pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

pub(super) fn random_ticket() -> String {
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

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    first: TcpListener,
    mut shutdown: watch::Receiver<()>,
) {
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

pub(super) async fn handle_conn(
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

pub(super) fn push_handshake(shared: &Shared, rec: RecordedHandshake) {
    if shared.cfg.record {
        lock(&shared.handshakes).push(rec);
    }
}

pub(super) fn update<F: FnOnce(&mut RecordedRequest)>(shared: &Shared, id: u64, f: F) {
    let mut log = lock(&shared.requests);
    if let Some(i) = id.checked_sub(log.base) {
        if let Some(r) = log.items.get_mut(i as usize) {
            f(r);
        }
    }
}

pub(super) async fn respond(
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

pub(super) fn is_upgrade(method: &str, headers: &[(String, String)]) -> bool {
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

pub(super) async fn serve_request(
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
                vmware_messages: Default::default(),
                vmware_translated: 0,
                vmx_path: None,
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
        Some(b) => {
            let legacy = chosen.as_deref() == Some("uint8utf8");
            run_bridge(&shared, id, ws, b, legacy, &mut shutdown).await
        }
    };
    shared.active.fetch_sub(1, Ordering::SeqCst);
    update(&shared, id, |r| r.end = Some(end));
    Ok(())
}
