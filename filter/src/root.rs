//! The root context: parse and compile the plugin configuration once, define
//! metrics, create the replay table; hand each HTTP stream an `Rc` of it
//! (one VM per worker thread, so nothing here crosses threads).

use crate::abi;
use crate::host::EnvoySharedData;
use crate::http::Console;
use crate::login::{self, Login};
use crate::metrics::Metrics;
use crate::ready::Ready;
use crate::revocation::Poller;
use mksgate_core::{replay, Config, ReplayStore};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

pub struct Root {
    id: u32,
    ready: Option<Rc<Ready>>,
    login: Login,
    revocation: Poller,
    /// What this VM has added to `mksgate.vm_memory_bytes`.
    vm_memory_reported: u64,
}

impl Root {
    pub fn new(id: u32) -> Root {
        Root {
            id,
            ready: None,
            login: Login::default(),
            revocation: Poller::default(),
            vm_memory_reported: 0,
        }
    }
}

impl Context for Root {
    /// The answers to the root's own calls, its etcd login and its
    /// revocation reads (in the Rust SDK, a call made from the root context
    /// is answered here).
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(ready) = &self.ready else {
            return;
        };
        if self.login.owns(token_id) {
            self.login.on_answer(ready, body_size);
        } else if self.revocation.owns(token_id) {
            self.revocation.on_answer(ready, body_size, self.id);
        }
    }
}

/// The proxy-wasm ABI this module is built for: it exports
/// `proxy_abi_version_0_2_1` (proxy-wasm 0.2.5), and Envoy loads a module
/// only if it offers the ABI the module exports, so a running module is on
/// this one. The ABI has no host call that names the versions it offers.
pub const PROXY_WASM_ABI: &str = "0.2.1";

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Ok(Some(raw)) = abi::plugin_configuration() else {
            log::error!("mksgate: config refused: (config): no plugin configuration given");
            return false;
        };
        let env = |name: &str| std::env::var(name).ok();
        let config = match Config::parse(&raw, &env) {
            Ok(config) => config,
            Err(error) => {
                // ConfigError never carries a value, only the field and why.
                log::error!("mksgate: config refused: {error}");
                return false;
            }
        };
        let etcd = matches!(config.replay_store, ReplayStore::Etcd(_));
        if config.one_time_links && !etcd && replay::init(&EnvoySharedData).is_err() {
            log::error!(
                "mksgate: config refused: one_time_links: the host's shared data is unavailable"
            );
            return false;
        }
        // Once per VM, so once per worker: which build runs, on which ABI
        // (README, "Supported versions").
        log::info!(
            "mksgate: configured: {} key(s), {} host(s), {} suffix(es), one_time_links={}, replay_store={}, version {}, abi proxy-wasm {}",
            config.keys.len(),
            config.upstreams.hosts.len(),
            config.upstreams.host_suffixes.len(),
            config.one_time_links,
            if etcd { "etcd" } else { "local" },
            env!("CARGO_PKG_VERSION"),
            PROXY_WASM_ABI,
        );
        let revocation = config.revocation.is_some();
        let ready = Ready::new(
            config,
            Metrics::define(etcd, revocation),
            self.ready.as_deref(),
        );
        let same_view = self
            .ready
            .as_ref()
            .is_some_and(|old| Rc::ptr_eq(&old.revocations, &ready.revocations));
        if !same_view {
            self.revocation = Poller::default();
        }
        // The tick ends consoles whose time has come and, with etcd's
        // access control, keeps the worker logged in.
        if !abi::set_tick_period_ms(login::TICK_MS) {
            log::error!(
                "mksgate: no tick from the host: consoles are not ended at their console_exp or max_console_seconds, and no etcd login happens"
            );
        }
        let carried = self
            .ready
            .as_ref()
            .is_some_and(|old| Login::carry(old, &ready));
        if !carried {
            self.login = Login::default();
        }
        self.ready = Some(Rc::new(ready));
        true
    }

    fn on_tick(&mut self) {
        if let Some(ready) = &self.ready {
            let mut open = ready.open.borrow_mut();
            crate::lifetime::end_consoles(&mut open, None, &ready.metrics, self.id);
            drop(open);
            if Login::needed(ready) {
                self.login.on_tick(ready);
            }
            self.revocation.on_tick(ready);
            ready.metrics.report_vm_memory(&mut self.vm_memory_reported);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy creates no streams for a refused config, so `ready` is set;
        // if it ever is not, the stream refuses with 503 (fail closed).
        Some(Box::new(Console::new(context_id, self.ready.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
