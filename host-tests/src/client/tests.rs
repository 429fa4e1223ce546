use super::*;

#[test]
fn urls_parse() {
    let u = parse_url("wss://vesxi01.sec.lab:8443/ticket/abc?x=1").unwrap();
    assert!(u.tls);
    assert_eq!(
        (u.host.as_str(), u.port, u.path.as_str()),
        ("vesxi01.sec.lab", 8443, "/ticket/abc?x=1")
    );
    assert_eq!(u.authority, "vesxi01.sec.lab:8443");
    let u = parse_url("ws://127.0.0.1").unwrap();
    assert_eq!((u.port, u.path.as_str(), u.tls), (80, "/", false));
    let u = parse_url("wss://[::1]/x").unwrap();
    assert_eq!((u.host.as_str(), u.port), ("::1", 443));
    assert!(parse_url("ftp://x/").is_err());
}

#[test]
fn client_frames_are_deterministic_and_sized() {
    for i in 0..(FRAME_SIZES.len() as u64 * 4) {
        let a = client_frame(i);
        assert_eq!(a, client_frame(i));
        let want = FRAME_SIZES[(i as usize) % FRAME_SIZES.len()];
        assert!(a.len() >= want, "frame {i}: {} < {want}", a.len());
        assert_eq!(a.is_text(), i % 4 == 3);
    }
    assert_ne!(client_frame(0), client_frame(FRAME_SIZES.len() as u64));
}
