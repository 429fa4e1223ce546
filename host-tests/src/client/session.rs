//! An open WebSocket session: sending, receiving, waiting for its end, and
//! checking that frames come back as the ESXi stand-in echoes them.

use super::*;

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

pub(crate) fn expected_echo(m: &Message) -> Option<Message> {
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

pub(crate) fn describe(m: &Message) -> String {
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

pub(crate) fn first_diff(got: &[u8], want: &[u8]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(p) => format!(
            "(first difference at byte {p}: got {:#04x}, want {:#04x})",
            got[p], want[p]
        ),
        None => format!("(lengths {} vs {})", got.len(), want.len()),
    }
}
