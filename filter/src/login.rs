//! The worker's own etcd login, with etcd's access control on: the root
//! context logs in from its tick, once at start and every
//! `REFRESH_SECONDS` after, so claims find a fresh token instead of each
//! logging in (etcd checks a password with bcrypt, about 90 ms of its CPU
//! per login here: a crowd of claims logging in at once starved a 3-member
//! cluster into elections). A claim that finds no token is
//! `replay_unavailable`; one whose token etcd refuses drops it, and the next
//! tick logs in again. A config push keeps the token when the login is
//! the same.

use crate::abi;
use crate::host;
use crate::ready::Ready;
use mksgate_core::etcd::{self, REFRESH_SECONDS};
use mksgate_core::ReplayStore;
use std::rc::Rc;

/// How often the root context looks at the token: a dropped or missing
/// token is replaced within this (plus etcd's answer).
pub const TICK_MS: u32 = 200;

#[derive(Debug, Default)]
pub struct Login {
    /// The login in flight: its call's token and when it was sent.
    in_flight: Option<(u32, i64)>,
    /// When the last login succeeded.
    last_ok_ms: Option<i64>,
}

impl Login {
    /// Whether `ready` needs logins (etcd's access control is configured).
    pub fn needed(ready: &Ready) -> bool {
        matches!(&ready.config.replay_store, ReplayStore::Etcd(s) if s.auth().is_some())
    }

    /// Carries the worker's token from the `old` configuration to `new`
    /// when both log in to the same etcd as the same user; false when
    /// there is nothing to carry (the login starts afresh).
    pub fn carry(old: &Ready, new: &Ready) -> bool {
        let same = match (&old.config.replay_store, &new.config.replay_store) {
            (ReplayStore::Etcd(a), ReplayStore::Etcd(b)) => {
                a.auth().is_some()
                    && a.auth() == b.auth()
                    && a.cluster == b.cluster
                    && a.authority == b.authority
            }
            _ => false,
        };
        let token = old.etcd_token.borrow().clone();
        match token {
            Some(token) if same => {
                *new.etcd_token.borrow_mut() = Some(token);
                true
            }
            _ => false,
        }
    }

    pub fn on_tick(&mut self, ready: &Ready) {
        let ReplayStore::Etcd(store) = &ready.config.replay_store else {
            return;
        };
        let Some(call) = store.authenticate_call() else {
            return;
        };
        let now = abi::now_millis();
        if let Some((_, since)) = self.in_flight {
            // Envoy answers every call by its timeout; this only guards
            // against an answer that never comes.
            if now - since < i64::from(store.timeout_ms) + i64::from(TICK_MS) {
                return;
            }
        }
        let fresh = ready.etcd_token.borrow().is_some()
            && self
                .last_ok_ms
                .is_some_and(|ok| now - ok < REFRESH_SECONDS * 1000);
        if fresh {
            return;
        }
        if let Some(token) = host::dispatch_to(&store.cluster, &store.authority, &call) {
            self.in_flight = Some((token, now));
        } else {
            ready.metrics.etcd_login(false);
            log::error!(
                r#"{{"mksgate":"etcd_auth","outcome":"error","detail":"Envoy refused the call (cluster {})"}}"#,
                store.cluster
            );
        }
    }

    /// Whether the call answered under `token` is this login's.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.is_some_and(|(t, _)| t == token)
    }

    pub fn on_answer(&mut self, ready: &Ready, body_size: usize) {
        self.in_flight = None;
        let token = host::with_etcd_answer(body_size, |answer| {
            let token = etcd::token_in(answer);
            if token.is_none() {
                // etcd's or Envoy's words, never the body of a success
                // (it would hold a token) and never the password.
                log::error!(
                    r#"{{"mksgate":"etcd_auth","outcome":"error","detail":"{}"}}"#,
                    etcd::failure_detail(&answer)
                );
            }
            token
        });
        ready.metrics.etcd_login(token.is_some());
        if let Some(token) = token {
            *ready.etcd_token.borrow_mut() = Some(Rc::from(token));
            self.last_ok_ms = Some(abi::now_millis());
        }
    }
}
