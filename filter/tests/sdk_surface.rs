//! Backs `filter/HOSTCALLS.md`: the shim reaches the host only through
//! `src/abi.rs`. The SDK's own wrappers (`proxy_wasm::hostcalls::*` and the
//! `Context`/`HttpContext`/`RootContext` helper methods built on them)
//! unwrap UTF-8 or `panic!` on a status they did not expect, so none of
//! them may appear in the filter's sources.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

/// The SDK trait methods that call a host function (proxy-wasm 0.2.5,
/// `traits.rs`): each unwraps a `Result` or a `String::from_utf8`.
const SDK_HOST_METHODS: &[&str] = &[
    "get_current_time",
    "get_property",
    "set_property",
    "get_shared_data",
    "set_shared_data",
    "register_shared_queue",
    "resolve_shared_queue",
    "dequeue_shared_queue",
    "enqueue_shared_queue",
    "dispatch_http_call",
    "get_http_call_response_headers",
    "get_http_call_response_header",
    "get_http_call_response_body",
    "dispatch_grpc_call",
    "get_grpc_call_response_body",
    "get_http_request_headers",
    "get_http_request_header",
    "set_http_request_header",
    "set_http_request_headers",
    "add_http_request_header",
    "get_http_request_body",
    "get_http_response_headers",
    "get_http_response_header",
    "set_http_response_header",
    "send_http_response",
    "resume_http_request",
    "reset_http_request",
    "get_plugin_configuration",
    "get_vm_configuration",
    "set_tick_period",
    "call_foreign_function",
    "done",
];

fn sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // Code only: comments may name what the code must not call.
            let text = std::fs::read_to_string(&path).unwrap();
            let code: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            out.push((name, code.join("\n")));
        }
    }
    assert!(out.len() >= 6, "found only {out:?}");
    out
}

/// The one SDK host helper allowed, in `abi.rs` only: it registers the
/// call's token with the SDK's dispatcher, which no raw import can do
/// (`HOSTCALLS.md`, "HTTP calls").
const DISPATCH: &str = "proxy_wasm::hostcalls::dispatch_http_call(";

#[test]
fn no_sdk_host_call_outside_abi() {
    for (name, text) in sources() {
        let allowed = if name == "abi.rs" { 1 } else { 0 };
        assert_eq!(
            text.matches(DISPATCH).count(),
            allowed,
            "{name}: dispatch_http_call belongs in abi.rs, once"
        );
        assert!(
            !text.replace(DISPATCH, "").contains("hostcalls"),
            "{name} uses proxy_wasm::hostcalls; go through abi.rs"
        );
        for method in SDK_HOST_METHODS {
            assert!(
                !text.contains(&format!("self.{method}(")),
                "{name} calls the SDK's {method}; go through abi.rs"
            );
        }
        assert!(
            !text.contains("proxy_wasm::set_log_level"),
            "{name}: the SDK's logger unwraps the host's status"
        );
    }
}

/// The SDK items the shim may name: traits it implements, the action and
/// context types, and the entry-point macros.
#[test]
fn only_the_sdk_traits_and_entry_points_are_used() {
    let allowed = [
        "proxy_wasm::traits::{Context, HttpContext}",
        "proxy_wasm::traits::{Context, HttpContext, RootContext}",
        "proxy_wasm::types::Action",
        "proxy_wasm::types::ContextType",
        "proxy_wasm::main!",
        "proxy_wasm::set_root_context",
        "proxy_wasm::traits::RootContext",
        DISPATCH,
    ];
    for (name, text) in sources() {
        for (at, _) in text.match_indices("proxy_wasm::") {
            let rest = &text[at..];
            assert!(
                allowed.iter().any(|a| rest.starts_with(a)),
                "{name} uses {}",
                rest.lines().next().unwrap()
            );
        }
    }
}
