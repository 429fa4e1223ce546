//! The whole decision on structured input: method, path and query (with a
//! token that is often genuinely signed over fuzz-chosen claims, so every
//! branch past the signature is reachable), Upgrade/Connection/Origin
//! variants, client address and clock, against two fixed configs.
//!
//! Invariants (see `oracle::check_decision`): no panic; `PassThrough`
//! exactly off the console path; an `Admit` only for a genuinely signed
//! token whose lifetime, audience, issuer, jti, origin and client bindings
//! hold at that clock, for an allowlisted host (exact, or longest suffix),
//! with path `/ticket/<unreserved ticket>` and a clean authority; and an
//! input made only of good choices is admitted. The log line never carries
//! the token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mksgate_core::config::Config;
use mksgate_core::{decide, log_line, Decision};
use mksgate_fuzz::{lenient_config, oracle, strict_config, DecideInput};
use std::sync::OnceLock;

static CONFIGS: OnceLock<(Config, Config)> = OnceLock::new();

fuzz_target!(|input: DecideInput| {
    let (strict, lenient) = CONFIGS.get_or_init(|| (strict_config(), lenient_config()));
    let config = input.config(strict, lenient);
    let request = input.request();
    let facts = request.facts();
    let decision = decide(config, &facts, request.now);
    if let Err(why) = oracle::check_decision(config, &facts, request.now, &decision) {
        panic!(
            "wrong decision: {why}\n  path: {:?}\n  input: {input:?}",
            request.path
        );
    }
    if input.must_admit() && !matches!(decision, Decision::Admit(_)) {
        panic!(
            "good link refused: {:?}\n  path: {:?}\n  input: {input:?}",
            decision.code(),
            request.path
        );
    }
    let audit = match &decision {
        Decision::PassThrough { .. } => return,
        Decision::Refuse(r) => &r.audit,
        Decision::Admit(a) => a.audit(),
    };
    if let Some(code) = decision.code() {
        let line = log_line(code, audit, facts.client);
        assert!(!line.contains('\n'), "multi-line log: {line}");
        // The token parameter's values, whatever they hold (a kid peeked
        // from an unverified token is at most 64 characters of it; the
        // client address is logged as given, and the fuzzer may copy).
        let query = request
            .path
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default();
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                let echoed_client = facts.client.is_some_and(|c| c.contains(value));
                if name == config.token_param && value.len() > 64 && !echoed_client {
                    assert!(!line.contains(value), "token in log line: {line}");
                }
            }
        }
    }
});
