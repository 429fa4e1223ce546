//! Unit tests of the stand-in's push frames and tickets.

use super::*;

#[test]
fn push_frames_roundtrip() {
    for (seq, len) in [(0u64, 0usize), (1, 1), (7, 64), (123456, 1000)] {
        let f = push_frame(seq, len);
        assert_eq!(f.len(), PUSH_HEADER_LEN + len);
        assert_eq!(check_push_frame(&f).unwrap(), seq);
    }
    let mut bad = push_frame(5, 10);
    bad[12] ^= 1;
    assert!(check_push_frame(&bad).is_err());
}

#[test]
fn tickets_look_right() {
    let t = random_ticket();
    assert_eq!(t.len(), 32);
    assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_ne!(t, random_ticket());
}

#[test]
fn fault_names_parse() {
    for f in [
        Fault::None,
        Fault::Down,
        Fault::ResetMidSession,
        Fault::NeverAnswerUpgrade,
    ] {
        assert_eq!(f.as_str().parse::<Fault>().unwrap(), f);
    }
    assert!("bogus".parse::<Fault>().is_err());
}
