//! The host calls this filter makes, declared against the proxy-wasm ABI
//! directly instead of through the SDK's `hostcalls` wrappers.
//!
//! Why: the SDK's wrappers `panic!` on any status they did not expect and
//! unwrap UTF-8 on header maps and values; with `panic = "abort"` either one
//! traps the VM, and the worker then refuses every request until Envoy
//! restarts (see `HOSTCALLS.md`). Here every status is a plain `u32`
//! (an unknown one cannot be undefined behaviour, as an out-of-range
//! `Status` enum would be) and every call returns a `Result` or nothing;
//! no function in this file can panic.

use crate::header_map::{self, HeaderMap};
use std::ptr::{null, null_mut};

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

const MAP_HTTP_REQUEST_HEADERS: u32 = 0;
const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
const METRIC_COUNTER: u32 = 0;
const METRIC_GAUGE: u32 = 1;
const METRIC_HISTOGRAM: u32 = 2;
const STREAM_REQUEST: u32 = 0;

/// A host status other than the ones a call expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

/// Takes ownership of a buffer the host filled through the SDK's exported
/// allocator (`proxy_on_memory_allocate`: a boxed slice of exactly `size`
/// bytes), or nothing for a null pointer.
///
/// # Safety
/// `data` is null, or came from the host with `size` as its length.
unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        // SAFETY: per the ABI the host allocated `size` bytes at `data`
        // with the module's own allocator and hands them over.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}

/// One log line at `level` (proxy-wasm: 0 trace .. 5 critical). A failed log
/// call is dropped: logging must never change a decision.
pub fn log(level: u32, message: &str) {
    // SAFETY: a valid pointer/length pair for the duration of the call.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Seconds since the epoch; 0 if the host cannot tell (every token then
/// looks not yet valid or long expired: fails closed).
pub fn now_seconds() -> i64 {
    let mut nanos: u64 = 0;
    // SAFETY: `nanos` outlives the call.
    match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
        OK => i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX),
        _ => 0,
    }
}

/// Calls the root context's `on_tick` every `period_ms`; false if the host
/// refused.
pub fn set_tick_period_ms(period_ms: u32) -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_set_tick_period_milliseconds(period_ms) == OK }
}

/// Makes `context_id` the context later host calls act on (a stream, from
/// the root's tick); false if the host refused (the stream is gone).
pub fn set_effective_context(context_id: u32) -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_set_effective_context(context_id) == OK }
}

/// Resets the effective context's HTTP stream (Envoy defers the reset to
/// after this VM call): both its connections end.
pub fn close_request_stream() -> bool {
    const STREAM_TYPE_REQUEST: u32 = 0;
    // SAFETY: no pointers.
    unsafe { proxy_close_stream(STREAM_TYPE_REQUEST) == OK }
}

/// Milliseconds since the epoch; 0 if the host cannot tell (a store call's
/// budget then looks spent: fails closed).
pub fn now_millis() -> i64 {
    let mut nanos: u64 = 0;
    // SAFETY: `nanos` outlives the call.
    match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
        OK => i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX),
        _ => 0,
    }
}

/// An HTTP call to `cluster`: `POST path` with a JSON `body`. Its answer
/// arrives in `on_http_call_response` of the calling stream's context.
///
/// This is the one SDK host helper the shim uses: it registers the call's
/// token with the SDK's dispatcher, which routes the answer to the stream
/// (without that the dispatcher's `expect("invalid token_id")` traps).
/// Its own `panic!` is on a status other than Ok, BadArgument and
/// InternalFailure, the only three Envoy's `httpCall` returns
/// (`HOSTCALLS.md`).
pub fn dispatch_post(
    cluster: &str,
    authority: &str,
    path: &str,
    body: &[u8],
    timeout_ms: u32,
    authorization: Option<&str>,
) -> Result<u32, HostStatus> {
    let mut headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/json"),
    ];
    if let Some(token) = authorization {
        headers.push(("authorization", token));
    }
    proxy_wasm::hostcalls::dispatch_http_call(
        cluster,
        headers,
        Some(body),
        Vec::new(),
        std::time::Duration::from_millis(u64::from(timeout_ms)),
    )
    .map_err(|status| HostStatus(status as u32))
}

/// The answer to an HTTP call: its `:status` (`None` when there is none,
/// as after a timeout or reset) and up to `max_body` bytes of its body
/// (`None` when it is longer, or the host cannot hand it over).
pub fn http_call_response(body_size: usize, max_body: usize) -> (Option<u16>, Option<Vec<u8>>) {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as for `request_headers`.
    let status =
        unsafe { proxy_get_header_map_pairs(MAP_HTTP_CALL_RESPONSE_HEADERS, &mut data, &mut size) };
    let code = if status == OK {
        // SAFETY: the host returned `data`/`size` for this call.
        let bytes = unsafe { owned(data, size) }.unwrap_or_default();
        HeaderMap::parse(bytes).and_then(|map| {
            let value = map.pairs().find(|(name, _)| *name == b":status")?.1;
            std::str::from_utf8(value).ok()?.parse().ok()
        })
    } else {
        None
    };
    if body_size > max_body {
        return (code, None);
    }
    let (mut data, mut size): (*mut u8, usize) = (null_mut(), 0);
    // SAFETY: as for `request_headers`.
    let status = unsafe {
        proxy_get_buffer_bytes(
            BUFFER_HTTP_CALL_RESPONSE_BODY,
            0,
            body_size,
            &mut data,
            &mut size,
        )
    };
    let body = match status {
        // SAFETY: the host returned `data`/`size` for this call.
        OK => Some(unsafe { owned(data, size) }.unwrap_or_default()),
        NOT_FOUND => Some(Vec::new()),
        _ => None,
    };
    (code, body.filter(|b| b.len() <= max_body))
}

/// Lets a paused request go on; a failure is dropped (the stream is gone).
pub fn resume_request() {
    // SAFETY: a plain value.
    let _ = unsafe { proxy_continue_stream(STREAM_REQUEST) };
}

/// The plugin configuration; `Ok(None)` when none was given.
pub fn plugin_configuration() -> Result<Option<Vec<u8>>, HostStatus> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as for `request_headers`.
    let status = unsafe {
        proxy_get_buffer_bytes(
            BUFFER_PLUGIN_CONFIGURATION,
            0,
            usize::MAX,
            &mut data,
            &mut size,
        )
    };
    match status {
        // SAFETY: the host returned `data`/`size` for this call.
        OK => Ok(unsafe { owned(data, size) }),
        NOT_FOUND => Ok(None),
        other => Err(HostStatus(other)),
    }
}

/// The request's headers, pseudo-headers included, as raw bytes.
pub fn request_headers() -> Result<HeaderMap, HostStatus> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: out-pointers valid for the call; the buffer becomes ours.
    let status =
        unsafe { proxy_get_header_map_pairs(MAP_HTTP_REQUEST_HEADERS, &mut data, &mut size) };
    if status != OK {
        return Err(HostStatus(status));
    }
    // SAFETY: the host returned `data`/`size` for this call.
    let bytes = unsafe { owned(data, size) }.unwrap_or_default();
    HeaderMap::parse(bytes).ok_or(HostStatus(OK))
}

/// Sets (replaces) a request header, or removes it with `None`.
pub fn set_request_header(name: &str, value: Option<&[u8]>) -> Result<(), HostStatus> {
    // SAFETY: valid pointer/length pairs for the duration of the call.
    let status = unsafe {
        match value {
            Some(value) => proxy_replace_header_map_value(
                MAP_HTTP_REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            ),
            None => {
                proxy_remove_header_map_value(MAP_HTTP_REQUEST_HEADERS, name.as_ptr(), name.len())
            }
        }
    };
    match status {
        OK => Ok(()),
        other => Err(HostStatus(other)),
    }
}

/// proxy-wasm property paths are their segments joined by NUL (no
/// trailing one: Envoy then finds no such property).
fn property_path(segments: &[&str]) -> Vec<u8> {
    let mut path = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            path.push(0);
        }
        path.extend_from_slice(segment.as_bytes());
    }
    path
}

/// A property's raw value; `Ok(None)` when the host has none.
pub fn get_property(segments: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
    let path = property_path(segments);
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as for `request_headers`.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match status {
        // SAFETY: the host returned `data`/`size` for this call.
        OK => Ok(unsafe { owned(data, size) }),
        NOT_FOUND => Ok(None),
        other => Err(HostStatus(other)),
    }
}

/// Sets a property (a filter-state value for access logs).
pub fn set_property(segments: &[&str], value: &[u8]) -> Result<(), HostStatus> {
    let path = property_path(segments);
    // SAFETY: valid pointer/length pairs for the duration of the call.
    let status =
        unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
    match status {
        OK => Ok(()),
        other => Err(HostStatus(other)),
    }
}

/// Shared data: the value (Envoy gives an empty one as a null pointer, so
/// `None` with a CAS) and the CAS token (0, "no key", as `None`).
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostStatus> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: as for `request_headers`.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        // SAFETY: the host returned `data`/`size` for this call.
        OK => Ok((unsafe { owned(data, size) }, (cas != 0).then_some(cas))),
        NOT_FOUND => Ok((None, None)),
        other => Err(HostStatus(other)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedSetError {
    CasMismatch,
    Other(HostStatus),
}

/// Writes shared data; with `Some(cas)` only if the key is unchanged.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
    // SAFETY: valid pointer/length pairs for the duration of the call.
    let status = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    };
    match status {
        OK => Ok(()),
        CAS_MISMATCH => Err(SharedSetError::CasMismatch),
        other => Err(SharedSetError::Other(HostStatus(other))),
    }
}

/// Answers the request locally with `status`, `headers` and `body`.
pub fn send_local_response(
    status: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), HostStatus> {
    let headers = header_map::serialize(headers);
    // SAFETY: valid pointer/length pairs for the duration of the call.
    let result = unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    match result {
        OK => Ok(()),
        other => Err(HostStatus(other)),
    }
}

/// Defines a counter; its id.
pub fn define_counter(name: &str) -> Result<u32, HostStatus> {
    define_metric(METRIC_COUNTER, name)
}

/// Defines a histogram; its id.
pub fn define_histogram(name: &str) -> Result<u32, HostStatus> {
    define_metric(METRIC_HISTOGRAM, name)
}

/// Defines a gauge; its id. Every worker's VM names the same stat, so a
/// gauge moved by `add` is the gateway's total.
pub fn define_gauge(name: &str) -> Result<u32, HostStatus> {
    define_metric(METRIC_GAUGE, name)
}

fn define_metric(kind: u32, name: &str) -> Result<u32, HostStatus> {
    let mut id: u32 = 0;
    // SAFETY: valid pointer/length pair and out-pointer for the call.
    match unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) } {
        OK => Ok(id),
        other => Err(HostStatus(other)),
    }
}

/// Moves a gauge by `offset`; a failure is dropped.
pub fn add(id: u32, offset: i64) {
    // SAFETY: plain values.
    let _ = unsafe { proxy_increment_metric(id, offset) };
}

/// Records one histogram value, or sets a gauge; a failure is dropped.
pub fn record(id: u32, value: u64) {
    // SAFETY: plain values.
    let _ = unsafe { proxy_record_metric(id, value) };
}

/// Adds one to a counter; a failure is dropped (a metric never changes a
/// decision).
pub fn increment(id: u32) {
    // SAFETY: plain values.
    let _ = unsafe { proxy_increment_metric(id, 1) };
}

/// Calls a host extension by name with no arguments, dropping its result.
pub fn call_foreign(name: &str) -> Result<(), HostStatus> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as for `request_headers`; the result buffer is freed below.
    let status = unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), null(), 0, &mut data, &mut size)
    };
    // SAFETY: the host returned `data`/`size` for this call (or null).
    drop(unsafe { owned(data, size) });
    match status {
        OK => Ok(()),
        other => Err(HostStatus(other)),
    }
}

/// The `log` crate's messages, through `log` above (the SDK's logger unwraps
/// the host's status).
pub struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the SDK's `serialize_property_path` and Envoy expect them.
    #[test]
    fn property_paths_are_nul_joined() {
        assert_eq!(property_path(&["source", "address"]), b"source\0address");
        assert_eq!(property_path(&["mksgate_decision"]), b"mksgate_decision");
        assert_eq!(property_path(&["", "x"]), b"\0x");
    }
}
