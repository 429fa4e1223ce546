//! The sweep and the property tests: every changed byte refused, round
//! trips, and arbitrary input never panics.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The deterministic twin of the property test below, so the same promise
/// is also checked compiled to wasm: every byte of a token, changed to each
/// of a few other values, is refused.
#[test]
fn every_changed_byte_is_refused_sweep() {
    let cfg = config();
    let token = sign(&key(), claims().to_string().as_bytes());
    let original = token.as_bytes();
    for i in 0..original.len() {
        for replacement in [b'A', b'g', b'0', b'-', b'_', b'.', b'=', b'~'] {
            if original[i] == replacement {
                continue;
            }
            let mut bytes = original.to_vec();
            bytes[i] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            let code = code_of(&cfg, &Req::ws(format!("/console?token={changed}")));
            assert_ne!(
                code,
                Code::Admitted,
                "byte {i} -> {} admitted",
                replacement as char
            );
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_then_decide_round_trips(
        ticket in "[A-Za-z0-9._~-]{1,64}",
        host in "[a-z][a-z0-9-]{0,20}[a-z0-9]",
        port in 1u16..,
        ttl in 1i64..300,
        jti in "[A-Za-z0-9-]{1,40}",
    ) {
        prop_assume!(ticket != "." && ticket != "..");
        let cfg = config();
        let c = json!({"exp": NOW + ttl, "jti": jti, "host": format!("{host}.esxi.example.com"), "port": port, "ticket": ticket});
        let Decision::Admit(a) = Req::ws(link(&c)).decide(&cfg, NOW) else { panic!("refused {c}") };
        prop_assert_eq!(a.path, format!("/ticket/{ticket}"));
        prop_assert_eq!(a.cluster, "esxi_dynamic");
    }

    #[test]
    fn any_changed_byte_is_refused(index in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let cfg = config();
        let token = sign(&key(), claims().to_string().as_bytes());
        let mut bytes = token.into_bytes();
        let i = index.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        // Keep it a valid query string; the bytes that cannot be are refused
        // before any decoding.
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        let code = code_of(&cfg, &Req::ws(format!("/console?token={changed}")));
        prop_assert_ne!(code, Code::Admitted, "changed byte {} admitted", i);
    }

    #[test]
    fn decide_never_panics_on_arbitrary_paths(path in "\\PC{0,300}", client in proptest::option::of("\\PC{0,40}")) {
        let cfg = config();
        let full = format!("/console?{path}");
        let facts = RequestFacts {
            method: "GET",
            path: &full,
            upgrade: crate::request::HeaderValue::One("websocket"),
            connection_upgrade: true,
            origin: crate::request::HeaderValue::Absent,
            client: client.as_deref(),
            ..Default::default()
        };
        let _ = decide(&cfg, &facts, NOW);
    }
}
