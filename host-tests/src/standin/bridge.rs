//! Bridging a session to a real console backend (a VNC server): the
//! client's RFB goes through [`WebmksFilter`] (VMware's messages made
//! standard), the server's passes as it is; with the `uint8utf8`
//! subprotocol each text character carries one byte, both ways, after
//! VMware Cloud Director's console-proxy handshake (the proxy sends
//! `connect info vmx\n`, the client answers with the VM's `.vmx` path;
//! wmks 2.1.0 runs `uint8utf8` only after it).

use super::webmks::{uint8utf8_decode, uint8utf8_encode, WebmksFilter};
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

/// What Cloud Director's console proxy sends first in `uint8utf8` mode.
const VCD_VMX_REQUEST: &str = "connect info vmx\n";

pub(super) async fn run_bridge(
    shared: &Shared,
    id: u64,
    mut ws: WebSocketStream<MaybeTls>,
    backend: Box<dyn Backend>,
    legacy: bool,
    shutdown: &mut watch::Receiver<()>,
) -> String {
    let (mut from_backend, mut to_backend) = tokio::io::split(backend);
    let mut cmds = shared.cmds.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    let mut closing = false;
    let mut filter = WebmksFilter::default();
    let mut to_server = Vec::with_capacity(64 * 1024);
    // Legacy (Cloud Director) sessions: the VNC server is not read until
    // the client has named its VM.
    let mut awaiting_vmx = legacy;
    if legacy && ws.send(Message::text(VCD_VMX_REQUEST)).await.is_err() {
        return "send failed: vmx request".into();
    }
    loop {
        // The client's bytes of one frame, if it carried any.
        let mut client_bytes: Option<Vec<u8>> = None;
        tokio::select! {
            msg = ws.next() => match msg {
                None => return if closing { "closed by stand-in".into() } else { "peer went away".into() },
                Some(Err(e)) => return format!("error: {e}"),
                Some(Ok(Message::Binary(b))) => client_bytes = Some(b.to_vec()),
                Some(Ok(Message::Text(t))) if legacy => match uint8utf8_decode(t.as_str()) {
                    Some(b) => client_bytes = Some(b),
                    None if !closing => {
                        closing = true;
                        let frame = CloseFrame { code: CloseCode::Invalid, reason: "uint8utf8: a character above U+00FF".into() };
                        if ws.close(Some(frame)).await.is_err() {
                            return "close failed".into();
                        }
                    }
                    None => {}
                },
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
            r = from_backend.read(&mut buf), if !closing && !awaiting_vmx => match r {
                Ok(0) | Err(_) => {
                    closing = true;
                    let frame = CloseFrame { code: CloseCode::Away, reason: "console backend closed".into() };
                    if ws.close(Some(frame)).await.is_err() {
                        return "backend closed; close failed".into();
                    }
                }
                Ok(n) => {
                    let msg = if legacy {
                        Message::text(uint8utf8_encode(&buf[..n]))
                    } else {
                        Message::binary(buf[..n].to_vec())
                    };
                    if let Err(e) = ws.send(msg).await {
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
        if let (true, Some(b)) = (awaiting_vmx, &client_bytes) {
            awaiting_vmx = false;
            let path = String::from_utf8_lossy(b).trim_end().to_string();
            update(shared, id, |r| r.vmx_path = Some(path));
            continue;
        }
        if let Some(b) = client_bytes {
            to_server.clear();
            filter.feed(&b, &mut to_server);
            if let Err(e) = to_backend.write_all(&to_server).await {
                let _ = ws.close(None).await;
                return format!("backend write failed: {e}");
            }
            let n = b.len() as u64;
            let (seen, translated) = (filter.vmware_messages.clone(), filter.translated);
            update(shared, id, |r| {
                r.frames_echoed += 1;
                r.bytes_from_client += n;
                r.vmware_messages = seen;
                r.vmware_translated = translated;
            });
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
