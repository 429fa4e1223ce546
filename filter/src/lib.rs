//! The mksgate proxy-wasm filter: gathers request facts, asks
//! `mksgate_core::decide`, and applies the answer. All logic lives in core.

mod host;
mod http;
mod metrics;
mod root;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // `panic = "abort"` ends the VM on a panic (Envoy then fails closed);
    // the hook makes sure the reason reaches Envoy's log first.
    std::panic::set_hook(Box::new(|info| {
        log::error!("mksgate: panic: {info}");
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
