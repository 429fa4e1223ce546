//! The rows about the request itself, before the token: sub-paths below
//! the prefix and headers that are not UTF-8 (`malformed_request`).

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Below the prefix is still a console request (never passed through), but
/// only the prefix itself, with or without one `/`, is a console link: a
/// deeper path is refused before the token is read, so the link stays
/// unspent and nothing of the path reaches ESXi.
#[test]
fn row_sub_path() {
    let cfg = config();
    let path = link(&claims());
    let query = path.trim_start_matches("/console");
    for ok in [format!("/console{query}"), format!("/console/{query}")] {
        assert_eq!(code_of(&cfg, &Req::ws(ok)), Code::Admitted);
    }
    for deeper in [
        "/console/x",
        "/console/vesxi02.sec.lab",
        "/console//",
        "/console/../ticket/t",
    ] {
        let Decision::Refuse(r) = Req::ws(format!("{deeper}{query}")).decide(&cfg, NOW) else {
            panic!("{deeper}: not refused")
        };
        assert_eq!(
            (r.code, r.audit.malformed_header, r.audit.kid),
            (Code::MalformedRequest, Some(":path"), None),
            "{deeper}"
        );
    }
    assert!(matches!(
        Req::ws(format!("/consoles{query}")).decide(&cfg, NOW),
        Decision::PassThrough { .. }
    ));
}

/// A header the decision reads, holding bytes that are not UTF-8 (Envoy
/// passes 0x80-0xFF through): refused under the prefix, passed elsewhere.
#[test]
fn row_malformed_request() {
    let cfg = config();
    let path = link(&claims());
    let decide_bytes = |headers: &[(&[u8], &[u8])]| {
        let facts = RequestFacts::from_header_bytes(
            headers.iter().copied(),
            &cfg.upstreams.cluster_header,
            Some("192.0.2.10:55000"),
        );
        decide(&cfg, &facts, NOW)
    };
    let base: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":path", path.as_bytes()),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
    ];
    assert_eq!(decide_bytes(&base).code(), Some(Code::Admitted));
    for (name, header) in [
        (&b"origin"[..], "origin"),
        (b"upgrade", "upgrade"),
        (b"connection", "connection"),
        (b"x-mksgate-cluster", crate::request::CLUSTER_HEADER),
    ] {
        let mut h = base.clone();
        h.push((name, b"\xe9"));
        let Decision::Refuse(r) = decide_bytes(&h) else {
            panic!("{header}: not refused")
        };
        assert_eq!(
            (r.code, r.audit.malformed_header),
            (Code::MalformedRequest, Some(header))
        );
    }
    assert_eq!(Code::MalformedRequest.status(), 400);
    // Other headers' bytes are never read.
    let mut h = base.clone();
    h.push((b"cookie", b"a=Espa\xf1a"));
    h.push((b"user-agent", b"\xa1\xb1"));
    assert_eq!(decide_bytes(&h).code(), Some(Code::Admitted));
    // A non-UTF-8 path under the prefix is refused; elsewhere it passes.
    let bad_path = format!("{path}\u{0}").into_bytes();
    let mut bad_path = bad_path;
    bad_path.pop();
    bad_path.push(0xff);
    let mut h = base.clone();
    h[1] = (b":path", &bad_path);
    assert_eq!(decide_bytes(&h).code(), Some(Code::MalformedRequest));
    for outside in [&b"/healthz\xff"[..], b"/\xff/console", b"/consol\xe9"] {
        let mut h = base.clone();
        h[1] = (b":path", outside);
        assert!(matches!(decide_bytes(&h), Decision::PassThrough { .. }));
    }
    // Headers the host could not serialize: refused, whatever the path.
    let facts = RequestFacts::unreadable(None);
    assert_eq!(
        decide(&cfg, &facts, NOW).code(),
        Some(Code::MalformedRequest)
    );
    assert!(facts.cluster_header_sent);
    // Outside the prefix a bad Origin is left alone too.
    let mut h = base.clone();
    h[1] = (b":path", b"/healthz");
    h.push((b"origin", b"\xe9"));
    assert!(matches!(decide_bytes(&h), Decision::PassThrough { .. }));
}
