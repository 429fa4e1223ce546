//! Enough WebMKS for VMware's HTML console (wmks 2.1.0) in front of a plain
//! VNC server (QEMU's): the client-to-server RFB stream is split into
//! messages and VMware's client messages (type 127) are translated into
//! standard RFB or QEMU messages, or dropped. Everything else, and the whole
//! server-to-client stream, passes byte for byte.
//!
//! wmks assumes a VMware server whenever the server opens with the VNC
//! version handshake (`_assumeServerIsVMware`), and then sends every key as
//! a VMware scan-code event, which QEMU does not know: it closes the
//! connection on the first one. What wmks 2.1.0 sends (read from
//! `dist/wmks.js` of `opennebula-wmks` 2.1.4), each `[127][subtype][u16
//! length of the whole message]...`:
//!
//! | subtype | wmks name | here |
//! |---|---|---|
//! | 0 | `msgVMWKeyEvent` (scan code, down) | QEMU extended key event (XT keycode) |
//! | 2 | `msgVMWPointerEvent2` (absolute x, y, buttons; `sendRelativeMouseEvent`) | standard PointerEvent |
//! | 6 | `msgVMWKeyEvent2` (Unicode or JS key code) | standard KeyEvent for Unicode; raw codes dropped |
//! | 3 | client capabilities | dropped |
//! | 4 | update acknowledgement | dropped |
//! | 5 | resolution request | dropped |
//! | 7 | audio acknowledgement | dropped |
//! | 11 | update-cache info | dropped |
//! | 12 | session close | dropped |
//! | 15 | stream-state request | dropped |
//!
//! wmks only sends 3, 4, 5, 7, 11 and 15 after the server announced
//! VMware capabilities, which QEMU never does; they are dropped if they
//! come. The handshake is read as RFB 3.3, 3.7 or 3.8 with security None or
//! VNC authentication (the client's 16-byte response passes through).

use std::collections::BTreeMap;

/// VMware's client message type.
const VMW_CLIENT_MESSAGE: u8 = 127;
/// QEMU's client message type and its extended key event.
const QEMU_CLIENT_MESSAGE: u8 = 255;
const QEMU_EXT_KEY_EVENT: u8 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `RFB 003.00x\n` from the client.
    Version,
    /// The security type the client picked (3.7 and 3.8).
    SecurityChoice,
    /// The client's VNC-authentication response.
    VncAuth,
    /// ClientInit (shared flag).
    ClientInit,
    /// Normal client messages.
    Messages,
    /// A message this filter cannot frame: everything from here passes.
    Passthrough,
}

/// The client-to-server half of a bridged session.
#[derive(Debug)]
pub struct WebmksFilter {
    phase: Phase,
    pending: Vec<u8>,
    /// VMware client messages seen, by subtype.
    pub vmware_messages: BTreeMap<u8, u64>,
    /// VMware messages turned into standard or QEMU ones.
    pub translated: u64,
}

impl Default for WebmksFilter {
    fn default() -> Self {
        WebmksFilter {
            phase: Phase::Version,
            pending: Vec::new(),
            vmware_messages: BTreeMap::new(),
            translated: 0,
        }
    }
}

impl WebmksFilter {
    /// Feeds client bytes; appends to `out` what the VNC server gets.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.phase == Phase::Passthrough {
            out.extend_from_slice(input);
            return;
        }
        self.pending.extend_from_slice(input);
        let mut at = 0;
        loop {
            let len = match frame(self.phase, &self.pending[at..]) {
                Frame::Len(n) => n,
                Frame::Incomplete => break,
                Frame::Unknown => {
                    self.phase = Phase::Passthrough;
                    break;
                }
            };
            let msg = &self.pending[at..at + len];
            match self.phase {
                Phase::Version => {
                    let minor: u32 = std::str::from_utf8(&msg[8..11])
                        .ok()
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(8);
                    out.extend_from_slice(msg);
                    self.phase = if minor >= 7 {
                        Phase::SecurityChoice
                    } else {
                        Phase::ClientInit
                    };
                }
                Phase::SecurityChoice => {
                    out.extend_from_slice(msg);
                    self.phase = if msg[0] == 2 {
                        Phase::VncAuth
                    } else {
                        Phase::ClientInit
                    };
                }
                Phase::VncAuth => {
                    out.extend_from_slice(msg);
                    self.phase = Phase::ClientInit;
                }
                Phase::ClientInit => {
                    out.extend_from_slice(msg);
                    self.phase = Phase::Messages;
                }
                Phase::Messages if msg[0] == VMW_CLIENT_MESSAGE => {
                    let msg = msg.to_vec();
                    self.vmware(&msg, out);
                }
                Phase::Messages | Phase::Passthrough => out.extend_from_slice(msg),
            }
            at += len;
        }
        if self.phase == Phase::Passthrough {
            out.extend_from_slice(&self.pending[at..]);
            self.pending.clear();
        } else {
            self.pending.drain(..at);
        }
    }
}

/// What the next unit of the client's stream is.
enum Frame {
    /// Its length.
    Len(usize),
    /// Not all of it yet.
    Incomplete,
    /// A message this filter does not know the length of.
    Unknown,
}

/// The next whole unit in `buf`, in `phase`.
fn frame(phase: Phase, buf: &[u8]) -> Frame {
    let have = |n: usize| {
        if buf.len() >= n {
            Frame::Len(n)
        } else {
            Frame::Incomplete
        }
    };
    match phase {
        Phase::Version => have(12),
        Phase::SecurityChoice | Phase::ClientInit => have(1),
        Phase::VncAuth => have(16),
        Phase::Passthrough => Frame::Unknown,
        Phase::Messages => {
            let Some(&kind) = buf.first() else {
                return Frame::Incomplete;
            };
            // The bytes needed to read the length, then the length.
            let (head, len): (usize, fn(&[u8]) -> usize) = match kind {
                0 => (1, |_| 20), // SetPixelFormat
                2 => (4, |b| 4 + 4 * usize::from(u16::from_be_bytes([b[2], b[3]]))), // SetEncodings
                3 => (1, |_| 10), // FramebufferUpdateRequest
                4 => (1, |_| 8),  // KeyEvent
                5 => (1, |_| 6),  // PointerEvent
                // ClientCutText; a negative length is the extended-clipboard
                // form (noVNC sends it), with |length| bytes.
                6 => (8, |b| {
                    8 + i32::from_be_bytes([b[4], b[5], b[6], b[7]]).unsigned_abs() as usize
                }),
                150 => (1, |_| 10),                    // EnableContinuousUpdates
                248 => (9, |b| 9 + usize::from(b[8])), // ClientFence
                VMW_CLIENT_MESSAGE => (4, |b| usize::from(u16::from_be_bytes([b[2], b[3]])).max(4)),
                QEMU_CLIENT_MESSAGE => match buf.get(1) {
                    None => return Frame::Incomplete,
                    Some(&QEMU_EXT_KEY_EVENT) => (2, |_| 12),
                    // Audio: enable/disable 4 bytes, set format 10.
                    Some(1) => (4, |b| {
                        if u16::from_be_bytes([b[2], b[3]]) == 2 {
                            10
                        } else {
                            4
                        }
                    }),
                    Some(_) => return Frame::Unknown,
                },
                _ => return Frame::Unknown,
            };
            if buf.len() < head {
                return Frame::Incomplete;
            }
            have(len(buf))
        }
    }
}

impl WebmksFilter {
    fn vmware(&mut self, msg: &[u8], out: &mut Vec<u8>) {
        let subtype = msg.get(1).copied().unwrap_or(0);
        *self.vmware_messages.entry(subtype).or_insert(0) += 1;
        match (subtype, msg.len()) {
            // Scan-code key event: [127][0][0 8][u16 scan code][u8 down][0].
            (0, 8) => {
                let scan = u16::from_be_bytes([msg[4], msg[5]]);
                out.extend_from_slice(&qemu_key_event(scan, msg[6] != 0));
                self.translated += 1;
            }
            // Pointer: [127][2][0 19][0][u32 x][u32 y][u32 buttons][0][0].
            (2, 19) => {
                let word =
                    |i: usize| u32::from_be_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
                let (x, y, buttons) = (word(5), word(9), word(13));
                out.push(5);
                out.push(buttons as u8);
                out.extend_from_slice(&(x.min(0xffff) as u16).to_be_bytes());
                out.extend_from_slice(&(y.min(0xffff) as u16).to_be_bytes());
                self.translated += 1;
            }
            // Unicode key event: [127][6][0 10][u32 code][u8 down][u8 unicode].
            (6, 10) if msg[9] != 0 => {
                let code = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
                let keysym = if code < 0x100 {
                    code
                } else {
                    0x0100_0000 | code
                };
                out.push(4);
                out.push(u8::from(msg[8] != 0));
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&keysym.to_be_bytes());
                self.translated += 1;
            }
            _ => {}
        }
    }
}

/// QEMU's extended key event for a VMware scan code: the XT code, with the
/// high bit for keys that come after an 0xE0 prefix (VMware marks them
/// with 0x100). The keysym is left 0: QEMU uses the keycode when it runs
/// without a `-k` layout, as the demo's does.
fn qemu_key_event(scan: u16, down: bool) -> [u8; 12] {
    let code = u32::from(scan & 0x7f) | if scan & 0x100 != 0 { 0x80 } else { 0 };
    let mut m = [0u8; 12];
    m[0] = QEMU_CLIENT_MESSAGE;
    m[1] = QEMU_EXT_KEY_EVENT;
    m[2..4].copy_from_slice(&u16::from(down).to_be_bytes());
    m[8..12].copy_from_slice(&code.to_be_bytes());
    m
}

/// `uint8utf8` (VMware Cloud Director's legacy mode): each WebSocket text
/// character carries one byte (U+0000 to U+00FF). `None` if a character
/// is outside that range.
pub fn uint8utf8_decode(text: &str) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// Bytes as `uint8utf8` text.
pub fn uint8utf8_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(*b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter that has seen the client's handshake, and an empty output.
    fn past_handshake() -> (WebmksFilter, Vec<u8>) {
        let mut f = WebmksFilter::default();
        let mut out = Vec::new();
        f.feed(&handshake(), &mut out);
        out.clear();
        (f, out)
    }

    fn handshake() -> Vec<u8> {
        let mut h = b"RFB 003.008\n".to_vec();
        h.push(1); // security None
        h.push(1); // ClientInit, shared
        h
    }

    #[test]
    fn standard_rfb_passes_byte_for_byte_in_any_split() {
        let mut stream = handshake();
        stream.extend_from_slice(&[2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21]); // SetEncodings
        stream.extend_from_slice(&[3, 0, 0, 0, 0, 0, 2, 128, 1, 144]); // FBUpdateRequest
        stream.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0, 0x61]); // KeyEvent 'a'
        stream.extend_from_slice(&[5, 1, 0, 10, 0, 20]); // PointerEvent
        stream.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']); // ClientCutText
                                                                         // Extended clipboard (noVNC): length -8, then 8 bytes.
        stream.extend_from_slice(&[
            6, 0, 0, 0, 0xff, 0xff, 0xff, 0xf8, 0x1f, 0, 0, 1, 0, 0, 0, 0,
        ]);
        stream.extend_from_slice(&[4, 0, 0, 0, 0, 0, 0, 0x61]); // KeyEvent 'a' up
        for split in 1..stream.len() {
            let mut f = WebmksFilter::default();
            let mut out = Vec::new();
            f.feed(&stream[..split], &mut out);
            f.feed(&stream[split..], &mut out);
            assert_eq!(out, stream, "split at {split}");
            assert!(f.vmware_messages.is_empty());
        }
    }

    #[test]
    fn vmware_keys_become_qemu_key_events_and_the_rest_is_dropped() {
        let (mut f, mut out) = past_handshake();
        // 'a' down (scan code 0x1e), Delete up (0x153: E0 53), caps (3).
        f.feed(&[127, 0, 0, 8, 0, 0x1e, 1, 0], &mut out);
        f.feed(&[127, 0, 0, 8, 0x01, 0x53, 0, 0], &mut out);
        f.feed(&[127, 3, 0, 8, 0, 0, 0, 1], &mut out);
        f.feed(&[3, 1, 0, 0, 0, 0, 0, 8, 0, 8], &mut out);
        assert_eq!(
            out,
            [
                &[255, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x1e][..],
                &[255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd3],
                &[3, 1, 0, 0, 0, 0, 0, 8, 0, 8],
            ]
            .concat()
        );
        assert_eq!(f.vmware_messages, BTreeMap::from([(0, 2), (3, 1)]));
        assert_eq!(f.translated, 2);
    }

    #[test]
    fn vmware_pointer_and_unicode_keys_become_standard_events() {
        let (mut f, mut out) = past_handshake();
        let mut ptr = vec![127, 2, 0, 19, 0];
        for v in [300u32, 200, 1] {
            ptr.extend_from_slice(&v.to_be_bytes());
        }
        ptr.extend_from_slice(&[0, 0]);
        f.feed(&ptr, &mut out);
        f.feed(&[127, 6, 0, 10, 0, 0, 0x20, 0xac, 1, 1], &mut out); // € down
        assert_eq!(
            out,
            [
                &[5, 1, 0x01, 0x2c, 0, 200][..],
                &[4, 1, 0, 0, 0x01, 0, 0x20, 0xac],
            ]
            .concat()
        );
    }

    #[test]
    fn an_unknown_message_switches_to_pass_through() {
        let (mut f, mut out) = past_handshake();
        f.feed(&[200, 1, 2, 3, 127, 0, 0, 8], &mut out);
        assert_eq!(out, [200, 1, 2, 3, 127, 0, 0, 8]);
    }

    #[test]
    fn uint8utf8_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let text = uint8utf8_encode(&all);
        assert_eq!(uint8utf8_decode(&text).unwrap(), all);
        assert_eq!(uint8utf8_decode("\u{100}"), None);
    }
}
