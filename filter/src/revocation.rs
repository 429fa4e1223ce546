//! The worker's revocation reads, from the root context: one range
//! request per `poll_ms` (core's `View` decides what to ask and reads the
//! answers). When a read brings revocations the view did not have, every
//! open console of this worker that they name is closed (`lifetime`).
//! A failed read keeps the view; it is counted and logged with etcd's or
//! Envoy's words, never with a key. Every worker reads for itself: a
//! gateway with W workers sends W reads per `poll_ms`.

use crate::abi;
use crate::host;
use crate::lifetime;
use crate::ready::Ready;
use mksgate_core::etcd::Call;
use mksgate_core::revocation::ReadOutcome;

#[derive(Debug, Default)]
pub struct Poller {
    /// The token of the read's call in flight.
    in_flight: Option<u32>,
    /// Whether the view's staleness was logged (once per stale spell).
    stale_logged: bool,
}

impl Poller {
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight == Some(token)
    }

    pub fn on_tick(&mut self, ready: &Ready) {
        let Some(source) = &ready.config.revocation else {
            return;
        };
        let now = abi::now_millis();
        if let Ok(token) = ready.revocation_token() {
            let call = ready
                .revocations
                .borrow_mut()
                .poll(source, now, token.as_deref());
            if let Some(call) = call {
                self.send(ready, &call);
            }
        }
        let age = ready.revocations.borrow().age_ms(now);
        ready.metrics.revocation_view_age(age.unwrap_or(0));
        let stale = age.is_none_or(|a| a > i64::from(source.max_stale_ms));
        if stale && !self.stale_logged && age.is_some() {
            log::error!(
                r#"{{"mksgate":"revocation","outcome":"stale","detail":"no read for {} ms: new links are refused (revocation_unavailable)"}}"#,
                age.unwrap_or(0)
            );
        }
        if !stale && self.stale_logged {
            log::info!(r#"{{"mksgate":"revocation","outcome":"fresh"}}"#);
        }
        self.stale_logged = stale && age.is_some();
    }

    fn send(&mut self, ready: &Ready, call: &Call) {
        let Some(source) = &ready.config.revocation else {
            return;
        };
        self.in_flight = host::dispatch_to(&source.cluster, &source.authority, call);
        if self.in_flight.is_none() {
            ready.revocations.borrow_mut().abandon();
            ready.metrics.revocation_read(false);
            log::error!(
                r#"{{"mksgate":"revocation","outcome":"error","detail":"Envoy refused the call (cluster {})"}}"#,
                source.cluster
            );
        }
    }

    pub fn on_answer(&mut self, ready: &Ready, body_size: usize, root_id: u32) {
        self.in_flight = None;
        let Some(source) = &ready.config.revocation else {
            return;
        };
        let outcome = host::with_etcd_answer(body_size, |answer| {
            ready.revocations.borrow_mut().on_answer(source, answer)
        });
        match outcome {
            ReadOutcome::Send(call) => self.send(ready, &call),
            ReadOutcome::Done { added } => {
                ready.metrics.revocation_read(true);
                if added {
                    let view = ready.revocations.borrow();
                    let mut open = ready.open.borrow_mut();
                    lifetime::end_consoles(&mut open, Some(&view), &ready.metrics, root_id);
                }
            }
            ReadOutcome::Failed {
                detail,
                refused_token,
            } => {
                ready.metrics.revocation_read(false);
                if let Some(refused) = refused_token {
                    // The root's login replaces it within a tick.
                    let mut kept = ready.etcd_token.borrow_mut();
                    if kept.as_deref() == Some(refused.as_str()) {
                        *kept = None;
                    }
                }
                log::error!(r#"{{"mksgate":"revocation","outcome":"error","detail":"{detail}"}}"#);
            }
        }
    }
}
