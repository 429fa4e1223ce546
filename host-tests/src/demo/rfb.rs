//! A small RFB (VNC) server that draws a test pattern: the demo's console
//! when QEMU is not installed, and the console of the second ESXi host.
//!
//! RFB 3.8 (3.3 and 3.7 clients are served too), security type None, raw
//! encoding only, in whatever true-colour pixel format the client asks for
//! (noVNC asks for 32 bpp little-endian). The picture is 640x400: a title
//! bar reading `MKSGATE TEST PATTERN`, eight colour bars, a grey ramp, and a
//! strip with a block that moves twice a second, so a viewer can see the
//! console is live. Key and pointer events are read and ignored.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Framebuffer size.
pub const WIDTH: u16 = 640;
pub const HEIGHT: u16 = 400;
/// The desktop name sent in ServerInit.
pub const DESKTOP_NAME: &str = "mksgate demo test pattern";
/// How often the live strip moves.
pub const TICK: Duration = Duration::from_millis(500);

const TITLE: &str = "MKSGATE TEST PATTERN";
const TITLE_H: u16 = 40;
const BARS_END: u16 = 280;
const RAMP_END: u16 = 340;
const BLOCK_W: u16 = 40;

/// A running test-pattern server; stops (with its sessions) when dropped.
#[derive(Debug)]
pub struct PatternServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PatternServer {
    /// Listen on `addr` (port 0 picks one).
    pub async fn start(addr: SocketAddr) -> Result<PatternServer> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the RFB test-pattern server on {addr}"))?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    r = listener.accept() => match r {
                        Ok((sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            sessions.spawn(async move {
                                let _ = serve(sock).await;
                            });
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Ok(PatternServer { addr, task })
    }

    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PatternServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A true-colour pixel format (RFB `PIXEL_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
    pub depth: u8,
    pub big_endian: bool,
    pub true_colour: bool,
    pub red_max: u16,
    pub green_max: u16,
    pub blue_max: u16,
    pub red_shift: u8,
    pub green_shift: u8,
    pub blue_shift: u8,
}

impl PixelFormat {
    /// What the server offers: 32 bpp, depth 24, little-endian, 0x00RRGGBB.
    pub const SERVER: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    /// The 16 bytes of the wire form.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = u8::from(self.big_endian);
        b[3] = u8::from(self.true_colour);
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// Parse the wire form.
    pub fn from_bytes(b: &[u8; 16]) -> PixelFormat {
        PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        }
    }

    fn check(self) -> Result<()> {
        if !self.true_colour {
            bail!("colour-map pixel formats are not supported");
        }
        if !matches!(self.bits_per_pixel, 8 | 16 | 32) {
            bail!("{} bits per pixel is not supported", self.bits_per_pixel);
        }
        Ok(())
    }

    /// Append one pixel of colour `rgb` in this format.
    pub fn put(self, rgb: [u8; 3], out: &mut Vec<u8>) {
        let scale = |v: u8, max: u16| u32::from(v) * u32::from(max) / 255;
        let value = (scale(rgb[0], self.red_max) << self.red_shift)
            | (scale(rgb[1], self.green_max) << self.green_shift)
            | (scale(rgb[2], self.blue_max) << self.blue_shift);
        match (self.bits_per_pixel, self.big_endian) {
            (8, _) => out.push(value as u8),
            (16, false) => out.extend_from_slice(&(value as u16).to_le_bytes()),
            (16, true) => out.extend_from_slice(&(value as u16).to_be_bytes()),
            (_, false) => out.extend_from_slice(&value.to_le_bytes()),
            (_, true) => out.extend_from_slice(&value.to_be_bytes()),
        }
    }
}

/// 5x7 glyphs for the title (bit 4 is the leftmost column).
fn glyph(c: char) -> [u8; 7] {
    match c {
        'M' => [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'S' => [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e],
        'G' => [0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f],
        'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'T' => [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'E' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f],
        'P' => [0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10],
        'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        'N' => [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11],
        _ => [0; 7],
    }
}

/// The colour of pixel (x, y) at animation step `tick`.
pub fn pattern_rgb(x: u16, y: u16, tick: u64) -> [u8; 3] {
    if y < TITLE_H {
        // 3x scaled glyphs, 6 columns (18 px) per character, from (12, 10).
        let (gx, gy) = (x.wrapping_sub(12), y.wrapping_sub(10));
        if gx < 18 * TITLE.len() as u16 && gy < 21 {
            let c = TITLE.chars().nth(usize::from(gx / 18)).unwrap_or(' ');
            let (col, row) = ((gx % 18) / 3, gy / 3);
            if col < 5 && glyph(c)[usize::from(row)] & (0x10 >> col) != 0 {
                return [255, 255, 255];
            }
        }
        return [32, 36, 48];
    }
    if y < BARS_END {
        const BARS: [[u8; 3]; 8] = [
            [191, 191, 191],
            [191, 191, 0],
            [0, 191, 191],
            [0, 191, 0],
            [191, 0, 191],
            [191, 0, 0],
            [0, 0, 191],
            [16, 16, 16],
        ];
        return BARS[usize::from(x / (WIDTH / 8)).min(7)];
    }
    if y < RAMP_END {
        let v = (u32::from(x) * 255 / u32::from(WIDTH - 1)) as u8;
        return [v, v, v];
    }
    let slots = u64::from(WIDTH / BLOCK_W);
    let at = (tick % slots) as u16 * BLOCK_W;
    if x >= at && x < at + BLOCK_W {
        [255, 160, 0]
    } else {
        [24, 24, 24]
    }
}

/// A FramebufferUpdate message with one raw rectangle.
pub fn update_message(pf: PixelFormat, x: u16, y: u16, w: u16, h: u16, tick: u64) -> Vec<u8> {
    let bytes = usize::from(pf.bits_per_pixel / 8);
    let mut out = Vec::with_capacity(16 + usize::from(w) * usize::from(h) * bytes);
    out.extend_from_slice(&[0, 0, 0, 1]);
    for v in [x, y, w, h] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&0i32.to_be_bytes()); // raw
    for py in y..y + h {
        for px in x..x + w {
            pf.put(pattern_rgb(px, py, tick), &mut out);
        }
    }
    out
}

/// Serve one RFB client.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> Result<()> {
    s.write_all(b"RFB 003.008\n").await?;
    let mut version = [0u8; 12];
    s.read_exact(&mut version).await?;
    let minor = match &version {
        b"RFB 003.003\n" => 3,
        b"RFB 003.007\n" => 7,
        v if v.starts_with(b"RFB 003.") => 8,
        _ => bail!("not an RFB client"),
    };
    if minor == 3 {
        // The server picks the security type: None.
        s.write_all(&1u32.to_be_bytes()).await?;
    } else {
        s.write_all(&[1, 1]).await?; // one type: None
        let mut chosen = [0u8; 1];
        s.read_exact(&mut chosen).await?;
        if chosen[0] != 1 {
            if minor == 8 {
                let reason = b"only security type None is offered";
                s.write_all(&1u32.to_be_bytes()).await?;
                s.write_all(&(reason.len() as u32).to_be_bytes()).await?;
                s.write_all(reason).await?;
            }
            bail!("client chose security type {}", chosen[0]);
        }
        if minor == 8 {
            s.write_all(&0u32.to_be_bytes()).await?; // SecurityResult OK
        }
    }
    let mut shared = [0u8; 1];
    s.read_exact(&mut shared).await?; // ClientInit
    let mut init = Vec::new();
    init.extend_from_slice(&WIDTH.to_be_bytes());
    init.extend_from_slice(&HEIGHT.to_be_bytes());
    init.extend_from_slice(&PixelFormat::SERVER.to_bytes());
    init.extend_from_slice(&(DESKTOP_NAME.len() as u32).to_be_bytes());
    init.extend_from_slice(DESKTOP_NAME.as_bytes());
    s.write_all(&init).await?;

    let mut pf = PixelFormat::SERVER;
    let start = tokio::time::Instant::now();
    let mut last_tick = None;
    loop {
        let mut kind = [0u8; 1];
        if s.read_exact(&mut kind).await.is_err() {
            return Ok(()); // client went away
        }
        match kind[0] {
            0 => {
                let mut b = [0u8; 19];
                s.read_exact(&mut b).await?;
                let mut raw = [0u8; 16];
                raw.copy_from_slice(&b[3..]);
                let want = PixelFormat::from_bytes(&raw);
                want.check()?;
                pf = want;
            }
            2 => {
                let mut b = [0u8; 3];
                s.read_exact(&mut b).await?;
                let n = usize::from(u16::from_be_bytes([b[1], b[2]]));
                let mut encodings = vec![0u8; n * 4];
                s.read_exact(&mut encodings).await?;
            }
            3 => {
                let mut b = [0u8; 9];
                s.read_exact(&mut b).await?;
                let incremental = b[0] != 0;
                let tick_of = |t: tokio::time::Instant| {
                    (t.duration_since(start).as_millis() / TICK.as_millis()) as u64
                };
                if incremental && last_tick.is_some() {
                    // Only the live strip changes: send it at the next tick.
                    let now = tick_of(tokio::time::Instant::now());
                    let next = now.max(last_tick.unwrap_or(0)) + 1;
                    tokio::time::sleep_until(start + TICK * next as u32).await;
                    s.write_all(&update_message(
                        pf,
                        0,
                        RAMP_END,
                        WIDTH,
                        HEIGHT - RAMP_END,
                        next,
                    ))
                    .await?;
                    last_tick = Some(next);
                } else {
                    let now = tick_of(tokio::time::Instant::now());
                    s.write_all(&update_message(pf, 0, 0, WIDTH, HEIGHT, now))
                        .await?;
                    last_tick = Some(now);
                }
            }
            4 => {
                let mut b = [0u8; 7];
                s.read_exact(&mut b).await?;
            }
            5 => {
                let mut b = [0u8; 5];
                s.read_exact(&mut b).await?;
            }
            6 => {
                let mut b = [0u8; 7];
                s.read_exact(&mut b).await?;
                let n = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
                if n > 1 << 20 {
                    bail!("cut text of {n} bytes");
                }
                let mut text = vec![0u8; n as usize];
                s.read_exact(&mut text).await?;
            }
            other => bail!("unsupported client message type {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use tokio::net::TcpStream;

    #[test]
    fn pixel_formats_round_trip_and_encode() {
        let pf = PixelFormat::SERVER;
        assert_eq!(PixelFormat::from_bytes(&pf.to_bytes()), pf);
        let mut out = Vec::new();
        pf.put([0x12, 0x34, 0x56], &mut out);
        assert_eq!(out, [0x56, 0x34, 0x12, 0x00]);
        // noVNC's format: red at shift 0.
        let novnc = PixelFormat {
            red_shift: 0,
            blue_shift: 16,
            ..pf
        };
        out.clear();
        novnc.put([0x12, 0x34, 0x56], &mut out);
        assert_eq!(out, [0x12, 0x34, 0x56, 0x00]);
        let rgb565 = PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
            ..pf
        };
        out.clear();
        rgb565.put([255, 0, 255], &mut out);
        assert_eq!(out, [0xf8, 0x1f]);
    }

    #[test]
    fn pattern_has_title_text_bars_and_a_moving_block() {
        let colours: BTreeSet<[u8; 3]> = (0..HEIGHT)
            .flat_map(|y| (0..WIDTH).map(move |x| pattern_rgb(x, y, 0)))
            .collect();
        assert!(colours.len() > 20, "{} colours", colours.len());
        // Some title pixels are white (text), most are not.
        let white = (0..TITLE_H)
            .flat_map(|y| (0..WIDTH).map(move |x| pattern_rgb(x, y, 0)))
            .filter(|c| *c == [255, 255, 255])
            .count();
        assert!(white > 500 && white < 10_000, "{white}");
        assert_ne!(pattern_rgb(0, HEIGHT - 1, 0), pattern_rgb(0, HEIGHT - 1, 1));
    }

    async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        s.read_exact(&mut b).await.unwrap();
        b
    }

    #[tokio::test]
    async fn speaks_rfb_3_8_and_draws_full_then_incremental_frames() {
        let server = PatternServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        assert_eq!(read_n(&mut s, 12).await, b"RFB 003.008\n");
        s.write_all(b"RFB 003.008\n").await.unwrap();
        assert_eq!(read_n(&mut s, 2).await, [1, 1]);
        s.write_all(&[1]).await.unwrap();
        assert_eq!(read_n(&mut s, 4).await, [0, 0, 0, 0]);
        s.write_all(&[1]).await.unwrap();
        let init = read_n(&mut s, 24).await;
        assert_eq!(u16::from_be_bytes([init[0], init[1]]), WIDTH);
        assert_eq!(u16::from_be_bytes([init[2], init[3]]), HEIGHT);
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
        assert_eq!(read_n(&mut s, name_len).await, DESKTOP_NAME.as_bytes());
        // SetPixelFormat (noVNC's), SetEncodings (raw), full update request.
        let novnc = PixelFormat {
            red_shift: 0,
            blue_shift: 16,
            ..PixelFormat::SERVER
        };
        let mut msg = vec![0, 0, 0, 0];
        msg.extend_from_slice(&novnc.to_bytes());
        msg.extend_from_slice(&[2, 0, 0, 1, 0, 0, 0, 0]);
        msg.extend_from_slice(&[3, 0, 0, 0, 0, 0]);
        msg.extend_from_slice(&WIDTH.to_be_bytes());
        msg.extend_from_slice(&HEIGHT.to_be_bytes());
        s.write_all(&msg).await.unwrap();
        let head = read_n(&mut s, 16).await;
        assert_eq!(&head[..4], &[0, 0, 0, 1]);
        let pixels = read_n(&mut s, usize::from(WIDTH) * usize::from(HEIGHT) * 4).await;
        let distinct: BTreeSet<&[u8]> = pixels.chunks(4).collect();
        assert!(distinct.len() > 20);
        // Red bar (sixth of eight) in noVNC's byte order.
        let at = (150 * usize::from(WIDTH) + 5 * 80 + 10) * 4;
        assert_eq!(&pixels[at..at + 4], &[191, 0, 0, 0]);
        // An incremental request gets the live strip at the next tick.
        let mut req = vec![3, 1, 0, 0, 0, 0];
        req.extend_from_slice(&WIDTH.to_be_bytes());
        req.extend_from_slice(&HEIGHT.to_be_bytes());
        s.write_all(&req).await.unwrap();
        let head = tokio::time::timeout(Duration::from_secs(3), read_n(&mut s, 16))
            .await
            .unwrap();
        assert_eq!(u16::from_be_bytes([head[6], head[7]]), RAMP_END);
    }
}
