//! The host calls mksgate makes per admitted handshake, made with no logic
//! around them (benchmark system 4H). The plugin configuration is a list of
//! call names, each optionally `*N`, e.g. the shipped path:
//!
//! `headers now header*4 shared route counter property*6`
//!
//! * `headers`  the request header map, as one buffer (`abi::request_headers`)
//! * `address`  `source.address` (mksgate reads it only for a link bound to
//!   a network, or with the decision line on)
//! * `now`      the clock
//! * `header`   a request-header write; mksgate's four are
//!   `x-envoy-original-path`, `:path`, `:authority` and the cluster header.
//!   These write `x-envoy-original-path`, `:authority` and the cluster
//!   header as mksgate does, and an `x-mksgate-calls` header in place of
//!   `:path` (the do-nothing filter's route matches on the path it came with)
//! * `shared`   a shared-data read and a compare-and-swap write (the
//!   one-time-link claim; of one 16-byte value, where mksgate's bucket holds
//!   the live links that hash to it)
//! * `route`    `clear_route_cache` (Envoy picks the route again)
//! * `counter`  one counter increment
//! * `property` a filter-state write (mksgate's audit: the decision and five
//!   fields on a shipped link)
//!
//! Bench-only: values are ASCII and the SDK's wrappers are fine here.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, MetricType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Headers,
    Address,
    Now,
    Header,
    Shared,
    Route,
    Counter,
    Property,
}

const NAMES: [(&str, Call); 8] = [
    ("headers", Call::Headers),
    ("address", Call::Address),
    ("now", Call::Now),
    ("header", Call::Header),
    ("shared", Call::Shared),
    ("route", Call::Route),
    ("counter", Call::Counter),
    ("property", Call::Property),
];

/// Header writes in mksgate's order (the fourth stands in for `:path`).
const HEADERS: [(&str, &str); 4] = [
    ("x-envoy-original-path", "/console"),
    (
        "x-mksgate-calls",
        "/ticket/b0000000000000000000000000000000",
    ),
    (":authority", "vesxi01.sec.lab"),
    ("x-mksgate-cluster", "esxi_vesxi01"),
];

/// Filter-state writes as mksgate's audit names them, with values of the
/// shipped link's lengths.
const PROPERTIES: [(&str, &str); 6] = [
    ("mksgate_decision", "admitted"),
    ("mksgate_kid", "2026-11"),
    ("mksgate_jti", "j0000000000000000000000000000000"),
    ("mksgate_host", "vesxi01.sec.lab"),
    ("mksgate_sub", "bench"),
    ("mksgate_ticket_sha256", "0123456789ab"),
];

#[derive(Debug, Default)]
pub struct Plan {
    calls: Vec<(Call, u32)>,
    /// The counter `counter` increments, defined at configure time.
    counter: Option<u32>,
}

impl Plan {
    pub fn parse(text: &str) -> Result<Plan, String> {
        let mut calls = Vec::new();
        for word in text.split_whitespace() {
            let (name, times) = match word.split_once('*') {
                Some((name, n)) => (
                    name,
                    n.parse().map_err(|_| format!("bad count in {word:?}"))?,
                ),
                None => (word, 1),
            };
            let call = NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c)
                .ok_or_else(|| format!("unknown call {name:?}"))?;
            calls.push((call, times));
        }
        Ok(Plan {
            calls,
            counter: None,
        })
    }

    /// Defines the counter, if the plan increments one (a host call, so
    /// once at configure time, as mksgate defines its counters).
    pub fn define_counter(&mut self) {
        if self.calls.iter().any(|(call, _)| *call == Call::Counter) {
            self.counter = hostcalls::define_metric(MetricType::Counter, "noop.calls").ok();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls, in order, each its number of times.
    pub fn run(&self) {
        for &(call, times) in &self.calls {
            for i in 0..times as usize {
                self.make(call, i);
            }
        }
    }

    fn make(&self, call: Call, i: usize) {
        match call {
            Call::Headers => drop(request_headers()),
            Call::Address => drop(hostcalls::get_property(vec!["source", "address"])),
            Call::Now => drop(hostcalls::get_current_time()),
            Call::Header => {
                let (name, value) = HEADERS[i % HEADERS.len()];
                let _ = hostcalls::set_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    name,
                    Some(value.as_bytes()),
                );
            }
            Call::Shared => {
                if let Ok((_, cas)) = hostcalls::get_shared_data("noop.calls") {
                    let _ = hostcalls::set_shared_data("noop.calls", Some(&[7u8; 16]), cas);
                }
            }
            Call::Route => {
                let _ = hostcalls::call_foreign_function("clear_route_cache", None);
            }
            Call::Counter => {
                if let Some(id) = self.counter {
                    let _ = hostcalls::increment_metric(id, 1);
                }
            }
            Call::Property => {
                let (name, value) = PROPERTIES[i % PROPERTIES.len()];
                let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
            }
        }
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// The header map as one buffer, as mksgate reads it (the SDK's reader
/// would also split it into a `String` per name and value).
fn request_headers() -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: out-pointers valid for the call; the buffer becomes ours.
    let status = unsafe { proxy_get_header_map_pairs(0, &mut data, &mut size) };
    if status != 0 || data.is_null() {
        return None;
    }
    // SAFETY: the host allocated `size` bytes at `data` with this module's
    // allocator (`proxy_on_memory_allocate`) and hands them over.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shipped_path_and_refuses_unknown_calls() {
        let plan = Plan::parse("headers now header*4 shared route counter property*6").unwrap();
        assert_eq!(plan.calls.len(), 7);
        assert_eq!(plan.calls[2], (Call::Header, 4));
        assert!(Plan::parse("address*20").is_ok());
        assert!(Plan::parse("").unwrap().is_empty());
        assert!(Plan::parse("headers*x").is_err());
        assert!(Plan::parse("verify").is_err());
    }
}
