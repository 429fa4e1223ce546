//! Arbitrary bytes as the plugin configuration. `Config::parse` never
//! panics; every error's text names its field, is one line, and never
//! carries the secret texts the environment lookup hands out; a config that
//! parses has keys, an allowlist of canonical hosts and valid suffixes, and
//! values in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mksgate_fuzz::oracle;

/// What the VM environment holds: one valid secret, one too short, one
/// that is not base64url. Distinctive texts, so a leak is unmistakable.
const GOOD: &str = "R09PRC1zZWNyZXQtZnV6ei1lbnYtMDEyMzQ1Njc4OWFiY2RlZi1HT09ELUdPT0Q";
const SHORT: &str = "U0hPUlQtc2VjcmV0LWZ1enotZW52";
const NOT_B64: &str = "NOT*BASE64*secret+fuzz/env=value!";

fn env(name: &str) -> Option<String> {
    match name {
        "MKSGATE_KEY" => Some(GOOD.to_string()),
        "MKSGATE_SHORT" => Some(SHORT.to_string()),
        "MKSGATE_BAD" => Some(NOT_B64.to_string()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Err(why) = oracle::check_config(data, &env, &[GOOD, SHORT, NOT_B64]) {
        panic!("{why}");
    }
});
