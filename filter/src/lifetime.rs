//! The worker's table of open consoles: one entry per admitted console,
//! added when its admission is applied and removed when its stream ends,
//! however it ends (`on_done`). An entry is its close (a `console_exp`
//! claim or `max_console_seconds`) and its subject (as revocations name
//! it): 48 bytes, plus the map's own slack (`open_consoles_cost_at_most_128_bytes_each`).
//!
//! The root context's tick ends those whose time has come, and those a new
//! revocation names: it makes the stream's context the effective one,
//! records why in filter state (`mksgate_end`, for the access log's end
//! line) and closes the stream, which Envoy resets after the VM call, so
//! the client's and ESXi's connections both end. Never on the 101 itself:
//! the tick runs outside any stream callback.
//!
//! The table outlives a configuration push (the root hands it to the next
//! `Ready`), so consoles opened before a push are still ended.

use crate::abi;
use crate::metrics::Metrics;
use mksgate_core::audit::END_PROPERTY;
use mksgate_core::lifetime::{Close, EndReason};
use mksgate_core::revocation::{Subject, View};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    close: Option<Close>,
    subject: Subject,
}

#[derive(Debug, Default)]
pub struct OpenConsoles {
    by_context: HashMap<u32, Entry>,
}

impl OpenConsoles {
    /// A console admitted on stream `context_id`.
    pub fn watch(&mut self, context_id: u32, close: Option<Close>, subject: Subject) -> bool {
        self.by_context
            .insert(context_id, Entry { close, subject })
            .is_none()
    }

    /// The stream ended; true if it was an open console.
    pub fn forget(&mut self, context_id: u32) -> bool {
        self.by_context.remove(&context_id).is_some()
    }

    /// The consoles to end at `now` (seconds): those due, and with
    /// `revoked` those it names; taken out of the table in one pass.
    fn take_ending(&mut self, now: i64, revoked: Option<&View>) -> Vec<(u32, EndReason)> {
        let mut ending = Vec::new();
        self.by_context.retain(|id, entry| {
            let reason = match entry.close {
                Some(close) if close.at <= now => Some(close.reason),
                _ if revoked.is_some_and(|view| view.is_revoked(&entry.subject)) => {
                    Some(EndReason::Revoked)
                }
                _ => None,
            };
            if let Some(reason) = reason {
                ending.push((*id, reason));
            }
            reason.is_none()
        });
        ending
    }

    /// Whether any console is due at `now`: the tick's cheap check.
    fn any_due(&self, now: i64) -> bool {
        self.by_context
            .values()
            .any(|e| e.close.is_some_and(|c| c.at <= now))
    }
}

/// From the root context's tick: ends every console that is due, and with
/// `revoked` (a read just brought new revocations) every console it names;
/// then hands the effective context back to the root (`root_id`).
pub fn end_consoles(
    open: &mut OpenConsoles,
    revoked: Option<&View>,
    metrics: &Metrics,
    root_id: u32,
) {
    let now = abi::now_seconds();
    if revoked.is_none() && !open.any_due(now) {
        return;
    }
    let ending = open.take_ending(now, revoked);
    if ending.is_empty() {
        return;
    }
    for (context_id, reason) in ending {
        metrics.console_closed();
        if !abi::set_effective_context(context_id) {
            continue; // the stream has just gone
        }
        let _ = abi::set_property(&[END_PROPERTY], reason.as_str().as_bytes());
        if abi::close_request_stream() {
            metrics.console_ended(reason);
        }
    }
    let _ = abi::set_effective_context(root_id);
}

#[cfg(test)]
mod tests;
