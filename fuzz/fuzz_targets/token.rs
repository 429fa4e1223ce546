//! Arbitrary bytes as a token against a fixed key set (two keys, HS256 and
//! HS512). `jws::verify` and `jws::peek_kid` never panic, and a token that
//! verifies is byte-identical to re-signing its own header and payload with
//! the key that verified it: only genuinely signed tokens pass.
//!
//! The committed seeds are valid tokens, so mutations start from signed
//! ones; and when the input starts with `!`, the rest is split into header
//! and claims JSON and signed with k1, so the checks past the MAC (alg, kid,
//! crit, typ) see fuzz-chosen headers too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mksgate_core::jws::{self, KeySet, Scratch};
use mksgate_fuzz::{key_1, key_2, oracle};
use std::sync::OnceLock;

static KEYS: OnceLock<KeySet> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let keys = KEYS.get_or_init(|| KeySet::new(vec![key_1(), key_2()]));
    if let Some(rest) = data.strip_prefix(b"!") {
        // Header and claims separated by the first 0xff byte.
        let split = rest.iter().position(|b| *b == 0xff).unwrap_or(rest.len());
        let (header, claims) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
        let token = jws::sign_with_header(&key_1(), header, claims);
        if let Err(why) = oracle::check_token(keys, &token) {
            panic!("{why}");
        }
        let mut scratch = Scratch::new();
        if let Ok(v) = jws::verify(keys, &token, &mut scratch) {
            assert_eq!(v.payload, claims, "payload changed in transit");
            assert_eq!(v.key.kid(), Some("k1"), "verified under another key");
        }
        return;
    }
    let token = String::from_utf8_lossy(data);
    if let Err(why) = oracle::check_token(keys, &token) {
        panic!("{why}");
    }
});
