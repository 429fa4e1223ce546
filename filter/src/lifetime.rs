//! The worker's table of consoles the filter will end (a `console_exp`
//! claim or `max_console_seconds`): one entry per open console that has a
//! close, added when its admission is applied and removed when its stream
//! ends, however it ends (`on_done`). The root context's tick ends those
//! whose time has come: it makes the stream's context the effective one,
//! records why in filter state (`mksgate_end`, for the access log's end
//! line) and closes the stream, which Envoy resets after the VM call, so
//! the client's and ESXi's connections both end. Never on the 101 itself:
//! the tick runs outside any stream callback.

use crate::abi;
use crate::ready::Ready;
use mksgate_core::audit::END_PROPERTY;
use mksgate_core::lifetime::Close;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct OpenConsoles {
    by_context: HashMap<u32, Close>,
}

impl OpenConsoles {
    pub fn watch(&mut self, context_id: u32, close: Close) {
        self.by_context.insert(context_id, close);
    }

    pub fn forget(&mut self, context_id: u32) {
        self.by_context.remove(&context_id);
    }

    /// The consoles due at `now` (seconds), taken out of the table in one
    /// pass.
    fn take_due(&mut self, now: i64) -> Vec<(u32, Close)> {
        let mut due = Vec::new();
        self.by_context.retain(|id, close| {
            let keep = close.at > now;
            if !keep {
                due.push((*id, *close));
            }
            keep
        });
        due
    }
}

/// From the root context's tick: ends every console that is due, then
/// hands the effective context back to the root (`root_id`).
pub fn end_due(ready: &Ready, root_id: u32) {
    let due = ready.open.borrow_mut().take_due(abi::now_seconds());
    if due.is_empty() {
        return;
    }
    for (context_id, close) in due {
        if !abi::set_effective_context(context_id) {
            continue; // the stream has just gone
        }
        let reason = close.reason.as_str();
        let _ = abi::set_property(&[END_PROPERTY], reason.as_bytes());
        if abi::close_request_stream() {
            ready.metrics.console_ended(close.reason);
        }
    }
    let _ = abi::set_effective_context(root_id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mksgate_core::lifetime::EndReason;

    #[test]
    fn due_consoles_leave_the_table_and_ended_streams_are_forgotten() {
        let close = |at| Close {
            at,
            reason: EndReason::MaxConsole,
        };
        let mut open = OpenConsoles::default();
        open.watch(7, close(100));
        open.watch(8, close(200));
        open.watch(9, close(100));
        open.forget(9); // its stream ended first
        assert!(open.take_due(99).is_empty());
        assert_eq!(open.take_due(150), vec![(7, close(100))]);
        assert!(open.take_due(150).is_empty(), "taken once");
        open.forget(8);
        assert!(open.by_context.is_empty());
    }
}
