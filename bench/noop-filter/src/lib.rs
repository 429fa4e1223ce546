//! The do-nothing proxy-wasm HTTP filter: a root context and an HTTP context
//! that take every default, so every callback continues. Built with the same
//! SDK, release profile and post-processing (`scripts/build-module.sh noop`)
//! as mksgate, it is the floor a benchmark compares mksgate against.
//!
//! With a plugin configuration it makes host calls and nothing else: the
//! calls mksgate makes on an admitted handshake (`calls.rs`), so the
//! benchmark can tell what those calls cost Envoy from what mksgate's own
//! code costs (system 4H). Without one (systems 4, 4L) it does nothing.

mod calls;

use calls::Plan;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot { plan: None }) });
}}

struct NoopRoot {
    plan: Option<Rc<Plan>>,
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = self.get_plugin_configuration().unwrap_or_default();
        match Plan::parse(&String::from_utf8_lossy(&text)) {
            Ok(mut plan) => {
                plan.define_counter();
                self.plan = (!plan.is_empty()).then(|| Rc::new(plan));
                true
            }
            Err(error) => {
                let _ = proxy_wasm::hostcalls::log(
                    proxy_wasm::types::LogLevel::Error,
                    &format!("noop: configuration: {error}"),
                );
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopStream {
            plan: self.plan.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct NoopStream {
    plan: Option<Rc<Plan>>,
}

impl Context for NoopStream {}

impl HttpContext for NoopStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(plan) = &self.plan {
            plan.run();
        }
        Action::Continue
    }
}
