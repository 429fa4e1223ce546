//! The stand-in's wire vocabulary: subprotocols, frame tags, and the
//! verifiable push frames (deterministic bytes a client can check).

use super::*;

/// Subprotocols the VMware HTML console offers, in its order.
pub const WMKS_PROTOCOLS: [&str; 3] = ["binary", "vmware-vvc", "uint8utf8"];
/// Tag byte of frames the stand-in pushes on its own.
pub const TAG_PUSH: u8 = b'P';
/// Tag byte of echoed frames.
pub const TAG_ECHO: u8 = b'E';
/// Bytes before the payload of a push frame (tag + u64 sequence number).
pub const PUSH_HEADER_LEN: usize = 9;
/// Seed mixed into the sequence number for push payloads.
pub const PUSH_SEED: u64 = 0x5055_5348_0000_0000;

/// splitmix64 step.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic pseudo-random bytes (splitmix64 seeded with `seed`,
/// little-endian words).
pub fn pattern_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = seed;
    while out.len() < len {
        out.extend_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The push frame with sequence number `seq` and `payload_len` payload bytes.
pub fn push_frame(seq: u64, payload_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(PUSH_HEADER_LEN + payload_len);
    f.push(TAG_PUSH);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&pattern_bytes(seq ^ PUSH_SEED, payload_len));
    f
}

/// Check that `frame` is a well-formed push frame and return its sequence
/// number; every payload byte is compared with what [`push_frame`] makes.
pub fn check_push_frame(frame: &[u8]) -> Result<u64> {
    if frame.len() < PUSH_HEADER_LEN || frame[0] != TAG_PUSH {
        bail!(
            "not a push frame ({} bytes, first byte {:?})",
            frame.len(),
            frame.first()
        );
    }
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&frame[1..PUSH_HEADER_LEN]);
    let seq = u64::from_be_bytes(seq_bytes);
    let expected = push_frame(seq, frame.len() - PUSH_HEADER_LEN);
    if let Some(pos) = expected.iter().zip(frame).position(|(a, b)| a != b) {
        bail!("push frame {seq}: byte {pos} differs");
    }
    Ok(seq)
}
