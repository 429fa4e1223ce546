//! The mksgate proxy-wasm filter: gathers request facts, asks
//! `mksgate_core::decide`, and applies the answer. All logic lives in core.
//! Every host call goes through `abi` (see `HOSTCALLS.md` for why, and for
//! what is left of the SDK).

mod abi;
mod console;
mod header_map;
mod host;
mod http;
mod lifetime;
mod login;
mod metrics;
mod ready;
mod revocation;
mod root;

static LOGGER: abi::HostLogger = abi::HostLogger;

proxy_wasm::main! {{
    // Not `proxy_wasm::set_log_level`: its logger unwraps the host's status.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    // `panic = "abort"` ends the VM on a panic (the failure policy then
    // applies); the hook makes sure the reason reaches Envoy's log first.
    std::panic::set_hook(Box::new(|info| {
        abi::log(5, &format!("mksgate: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
