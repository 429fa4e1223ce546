//! The lifetime rows: `console_expired`, and the close an admission carries.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A console's lifetime: a `console_exp` already past (beyond the skew) is
/// `console_expired` before the link is spent; otherwise the admission
/// carries its close, the earlier of `console_exp` and
/// `max_console_seconds` after now.
#[test]
fn row_console_expired_and_the_close_of_an_admission() {
    use crate::lifetime::{Close, EndReason};
    let cfg = config();
    let past = with(json!({"console_exp": NOW - 31}));
    assert_eq!(code_of(&cfg, &Req::ws(link(&past))), Code::ConsoleExpired);
    assert_eq!(Code::ConsoleExpired.status(), 403);
    let close_of = |cfg: &Config, claims: &Value| match Req::ws(link(claims)).decide(cfg, NOW) {
        Decision::Admit(a) => a.close(),
        other => panic!("{:?}", other.code()),
    };
    assert_eq!(close_of(&cfg, &claims()), None);
    let soon = with(json!({"console_exp": NOW + 3}));
    let by_link = Some(Close {
        at: NOW + 3,
        reason: EndReason::ConsoleExp,
    });
    assert_eq!(close_of(&cfg, &soon), by_link);
    // Within the skew, a console_exp just past still admits (and closes at once).
    assert!(close_of(&cfg, &with(json!({"console_exp": NOW - 29}))).is_some());
    let capped = config_with(json!({"max_console_seconds": 60}));
    assert_eq!(
        close_of(&capped, &claims()),
        Some(Close {
            at: NOW + 60,
            reason: EndReason::MaxConsole
        })
    );
    assert_eq!(close_of(&capped, &soon), by_link, "the earlier wins");
    for bad in [json!(0), json!(604_801), json!("60")] {
        let mut c = json!({
            "keys": [{"kid": "k1", "alg": "HS256", "secret_base64url": crate::jws::encode_secret(SECRET)}],
            "upstreams": {"hosts": {"vesxi01.sec.lab": "esxi_vesxi01"}}
        });
        c["max_console_seconds"] = bad;
        let e = Config::parse(c.to_string().as_bytes(), &|_| None).unwrap_err();
        assert_eq!(e.field, "max_console_seconds");
    }
}
