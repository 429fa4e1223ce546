//! A WebMKS session after the 101: pushes, echoes, closes and resets.

use super::*;

pub(super) async fn run_session(
    shared: &Shared,
    id: u64,
    mut ws: WebSocketStream<MaybeTls>,
    fault: Fault,
    shutdown: &mut watch::Receiver<()>,
) -> String {
    let cfg = &shared.cfg;
    let mut cmds = shared.cmds.subscribe();
    let mut seq: u64 = 0;
    let push_every = cfg.push_interval.unwrap_or(Duration::from_secs(3600));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + push_every, push_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pushing = cfg.push_interval.is_some();
    let resetting = fault == Fault::ResetMidSession;

    let reset = |ws: WebSocketStream<MaybeTls>| {
        let _ = ws.get_ref().set_reset_on_close();
        drop(ws);
    };

    if resetting && !pushing {
        for _ in 0..cfg.reset_after_frames {
            if ws
                .send(Message::binary(push_frame(seq, cfg.push_bytes)))
                .await
                .is_err()
            {
                return "send failed before reset".into();
            }
            seq += 1;
            update(shared, id, |r| r.frames_pushed = seq);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        reset(ws);
        return format!("reset by fault after {seq} frames");
    }

    let mut closing = false;
    loop {
        tokio::select! {
            msg = ws.next() => {
                match msg {
                    None => return if closing { "closed by stand-in".into() } else { "peer went away".into() },
                    Some(Err(e)) => return format!("error: {e}"),
                    Some(Ok(Message::Binary(b))) => {
                        let n = b.len() as u64;
                        let mut out = Vec::with_capacity(b.len() + 1);
                        out.push(TAG_ECHO);
                        out.extend_from_slice(&b);
                        if let Err(e) = ws.send(Message::binary(out)).await {
                            return format!("echo failed: {e}");
                        }
                        update(shared, id, |r| { r.frames_echoed += 1; r.bytes_from_client += n; });
                    }
                    Some(Ok(Message::Text(t))) => {
                        let n = t.len() as u64;
                        let out = format!("E{}", t.as_str());
                        if let Err(e) = ws.send(Message::text(out)).await {
                            return format!("echo failed: {e}");
                        }
                        update(shared, id, |r| { r.frames_echoed += 1; r.bytes_from_client += n; });
                    }
                    Some(Ok(Message::Close(f))) => {
                        // tungstenite queues the close reply; drain until the end.
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
                    Some(Ok(_)) => {} // ping/pong (pongs are automatic)
                }
            }
            _ = tick.tick(), if pushing && !closing => {
                if let Err(e) = ws.send(Message::binary(push_frame(seq, cfg.push_bytes))).await {
                    return format!("push failed: {e}");
                }
                seq += 1;
                update(shared, id, |r| r.frames_pushed = seq);
                if resetting && seq >= cfg.reset_after_frames {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    reset(ws);
                    return format!("reset by fault after {seq} frames");
                }
            }
            c = cmds.recv() => match c {
                Ok(SessionCmd::Reset) => {
                    reset(ws);
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
