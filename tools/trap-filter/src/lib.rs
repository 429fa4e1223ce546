//! A test-only proxy-wasm HTTP filter that traps when asked to, so a test can
//! measure what Envoy does after a VM trap under each `failure_policy`
//! (never shipped; `host-tests/tests/e2e_failure_policy.rs` drives it).
//!
//! Per request, by header:
//! - `x-trap: 1`: trap (`unreachable`, as a panic under `panic = "abort"` is);
//! - `x-record: <key>`: write `<key>` into shared data, answer 201;
//! - `x-read: <key>`: answer 200 if `<key>` is in shared data, 404 if not;
//! - `x-write-empty: <key>`: write an empty value under `<key>`, read it
//!   back, answer 204 if the host returned no value with a CAS, 200 if an
//!   empty value with a CAS, 500 otherwise (what `replay::init` relies on);
//! - `x-pass: 1`: let the request on to its route (a console: a test opens
//!   WebSocket consoles through this VM, then traps it);
//! - anything else: answer 200 (the VM ran).
//!
//! Every answer carries `x-trap-filter: 1`, so a request that reached the
//! route instead (a policy failing open) is told apart.
//!
//! Built like mksgate (same SDK, profile and post-processing:
//! `scripts/build-module.sh trap`).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TrapRoot) });
}}

struct TrapRoot;

impl Context for TrapRoot {}

impl RootContext for TrapRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TrapStream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct TrapStream;

impl Context for TrapStream {}

fn header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(proxy_wasm::types::MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn answer(status: u32) -> Action {
    let _ = hostcalls::send_http_response(status, vec![("x-trap-filter", "1")], None);
    Action::Pause
}

impl HttpContext for TrapStream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if header("x-trap").is_some() {
            std::process::abort();
        }
        if header("x-pass").is_some() {
            return Action::Continue;
        }
        if let Some(key) = header("x-record") {
            let key = String::from_utf8_lossy(&key).into_owned();
            let _ = hostcalls::set_shared_data(&key, Some(b"1"), None);
            return answer(201);
        }
        if let Some(key) = header("x-write-empty") {
            let key = String::from_utf8_lossy(&key).into_owned();
            let _ = hostcalls::set_shared_data(&key, Some(b""), None);
            return answer(match hostcalls::get_shared_data(&key) {
                Ok((None, Some(_))) => 204,
                Ok((Some(v), Some(_))) if v.is_empty() => 200,
                _ => 500,
            });
        }
        if let Some(key) = header("x-read") {
            let key = String::from_utf8_lossy(&key).into_owned();
            let present = matches!(hostcalls::get_shared_data(&key), Ok((Some(_), _)));
            return answer(if present { 200 } else { 404 });
        }
        answer(200)
    }
}
