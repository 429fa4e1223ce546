//! Bridging a session to a real console backend (a VNC server).

use super::*;

/// A connected bridge target.
pub(super) trait Backend: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Backend for T {}

pub(super) async fn connect_backend(target: &BridgeTarget) -> Result<Box<dyn Backend>> {
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

pub(super) async fn run_bridge(
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

/// Small helper so the control API can serialize different types through
/// one closure.
pub(super) mod erased {
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        }
    }
}
