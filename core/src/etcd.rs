//! One-time links across a fleet of gateways, recorded in etcd through its
//! JSON gateway (`POST /v3/kv/txn`, `/v3/lease/grant`). This is the protocol
//! only: the bodies to send, what each answer means, and the lease windows.
//! The filter sends the calls and hands the answers back; nothing here
//! touches the network or the clock.
//!
//! A link is recorded with one transaction, "create the key if it was never
//! created": etcd applies it once, linearizably, whichever gateway asks and
//! whatever leader answers, so exactly one request per link sees "created".
//! Records carry a lease, one per time window rather than one per link, and
//! etcd deletes them when it expires; a record's lease never expires before
//! its link's `exp + clock_skew_seconds`.

mod auth;

use crate::one_time::OneTime;
pub use crate::one_time::{Failure, Outcome};
pub use auth::{
    is_token_refusal, valid_password, valid_user, EtcdAuth, AUTHENTICATE_PATH, REFRESH_SECONDS,
};

/// The token in etcd's answer to an authenticate call, if it is one.
pub fn token_in(answer: Answer<'_>) -> Option<String> {
    match answer {
        Answer::Response { status, body } => auth::token_of(status, body),
        Answer::NoResponse { .. } => None,
    }
}
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const TXN_PATH: &str = "/v3/kv/txn";
pub const GRANT_PATH: &str = "/v3/lease/grant";
/// An answer longer than this is not one of etcd's to these calls.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub const DEFAULT_KEY_PREFIX: &str = "/mksgate/links/";
pub const DEFAULT_TIMEOUT_MS: u32 = 1500;
pub const MAX_TIMEOUT_MS: u32 = 10_000;
pub const MAX_KEY_PREFIX_LEN: usize = 128;

/// The compiled `replay_store.etcd` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdStore {
    /// The Envoy cluster of the etcd members' client URLs.
    pub cluster: String,
    /// `:authority` of the calls.
    pub authority: String,
    pub key_prefix: String,
    /// The whole budget for one link's record, all calls together.
    pub timeout_ms: u32,
    /// Length of a lease window (the links' longest lifetime).
    window_seconds: i64,
    /// Extra lease lifetime for gateways whose clocks differ.
    skew_seconds: i64,
    /// The top half of every lease id: this prefix's and window length's.
    lease_tag: i64,
    /// etcd's access control, when it is on.
    auth: Option<EtcdAuth>,
}

/// The key prefix rule: 1 to 128 printable ASCII characters, starting
/// with `/`.
pub fn valid_key_prefix(prefix: &str) -> bool {
    prefix.starts_with('/')
        && prefix.len() <= MAX_KEY_PREFIX_LEN
        && prefix.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl EtcdStore {
    /// `window_seconds` is the longest link lifetime (`max_ttl_seconds`),
    /// `skew_seconds` the configured clock skew.
    pub fn new(
        cluster: String,
        authority: String,
        key_prefix: String,
        timeout_ms: u32,
        window_seconds: i64,
        skew_seconds: i64,
    ) -> EtcdStore {
        let window_seconds = window_seconds.max(1);
        let mut hash = Sha256::new();
        hash.update(key_prefix.as_bytes());
        hash.update(window_seconds.to_be_bytes());
        let digest = hash.finalize();
        let top = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        // 31 bits, never 0: every id is a positive int64 (0 means "no lease").
        let lease_tag = i64::from((top & 0x7fff_ffff) | 1);
        EtcdStore {
            cluster,
            authority,
            key_prefix,
            timeout_ms,
            window_seconds,
            skew_seconds: skew_seconds.max(0),
            lease_tag,
            auth: None,
        }
    }

    /// The store, authenticating as `auth`'s user.
    pub fn with_auth(mut self, auth: Option<EtcdAuth>) -> EtcdStore {
        self.auth = auth;
        self
    }

    pub fn auth(&self) -> Option<&EtcdAuth> {
        self.auth.as_ref()
    }

    /// A call that logs in, for the gateway's own token refresh (the root
    /// context's, outside any link's claim); `None` without access control.
    pub fn authenticate_call(&self) -> Option<Call> {
        self.auth.as_ref().map(|auth| Call {
            path: AUTHENTICATE_PATH,
            body: auth.body().to_string(),
            timeout_ms: self.timeout_ms,
            authorization: None,
        })
    }

    /// The etcd key of a link: the prefix and the first 128 bits of its
    /// record id (SHA-256 of kid, tenant and jti: fixed length, no client
    /// bytes in etcd).
    pub fn key(&self, record: &[u8; 32]) -> String {
        let mut key = String::with_capacity(self.key_prefix.len() + 32);
        key.push_str(&self.key_prefix);
        for b in &record[..16] {
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        key
    }

    /// The lease a record remembered until `until` goes on, granted `now`.
    /// The window is the one `until` falls in; the lease lives to its end
    /// plus the skew, so a gateway whose clock is up to the skew ahead of
    /// the one that granted it still sees it outlive every record on it.
    pub fn lease_for(&self, until: i64, now: i64) -> Lease {
        let window = until.div_euclid(self.window_seconds);
        let end = (window + 1).saturating_mul(self.window_seconds);
        Lease {
            id: (self.lease_tag << 32) | (window & 0xffff_ffff),
            ttl: (end - now).max(0) + self.skew_seconds + 1,
        }
    }

    /// Starts recording `one_time` at `now_ms` (milliseconds since the
    /// epoch): the claim to keep, and the first step (a call to send). With
    /// etcd's access control on, `token` is the worker's token (its root
    /// context logs in: `REFRESH_SECONDS`); with none yet, the claim is done
    /// at once, `replay_unavailable`, without a call: claims never log in
    /// themselves, so a crowd of them cannot flood etcd with logins.
    pub fn claim(&self, one_time: &OneTime, now_ms: i64, token: Option<&str>) -> (Claim, Step) {
        let key = STANDARD.encode(self.key(&one_time.record));
        let value = STANDARD.encode(one_time.remember_until.to_string());
        let lease = self.lease_for(one_time.remember_until, now_ms.div_euclid(1000));
        let token = self.auth.as_ref().and(token).map(str::to_string);
        let claim = Claim {
            key,
            value,
            lease,
            deadline_ms: now_ms.saturating_add(i64::from(self.timeout_ms)),
            stage: Stage::Record,
            token,
            token_refused: false,
            resent: 0,
            last_was_resend: false,
        };
        let step = if self.auth.is_some() && claim.token.is_none() {
            Step::Done(Outcome::Unavailable(Failure::Error))
        } else {
            Step::Send(claim.txn(now_ms, claim.token.clone()))
        };
        (claim, step)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub ttl: i64,
}

/// One POST to etcd's JSON gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct Call {
    pub path: &'static str,
    /// The JSON body (for an authenticate call, it holds the password).
    pub body: String,
    /// What is left of the claim's budget.
    pub timeout_ms: u32,
    /// The `Authorization` header (etcd's token), with access control on.
    pub authorization: Option<String>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = self.path == AUTHENTICATE_PATH;
        f.debug_struct("Call")
            .field("path", &self.path)
            .field("body", if secret { &"<redacted>" } else { &self.body })
            .field("timeout_ms", &self.timeout_ms)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What came back for a call.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    Response {
        status: u16,
        body: &'a [u8],
    },
    /// No HTTP answer: the call timed out, was reset, or the connection
    /// failed. `timed_out` when the budget ran out.
    NoResponse {
        timed_out: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Send(Call),
    Done(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The transaction, with the window's lease assumed to exist.
    Record,
    /// The lease did not exist: granting it.
    Grant,
    /// The transaction again, after the grant.
    RecordAfterGrant,
}

/// One link being recorded: a transaction, and if the window's lease does
/// not exist yet, a grant and the transaction once more. No call is ever
/// repeated after an answer that might mean it was applied.
#[derive(Clone)]
pub struct Claim {
    key: String,
    value: String,
    lease: Lease,
    deadline_ms: i64,
    stage: Stage,
    /// The token the calls carry (etcd's access control).
    token: Option<String>,
    /// etcd refused the token: the worker must log in again.
    token_refused: bool,
    /// Calls sent again because their connection could not be made.
    resent: u8,
    /// Whether the step just returned sends a call again.
    last_was_resend: bool,
}

/// How many times one claim sends a call again after its connection could
/// not be made (a member down that Envoy's health check has not yet
/// marked): with round robin the next try goes to the next member, and a
/// connection to a dead member fails at once, so a few tries cost little.
pub const MAX_RESENDS: u8 = 4;

/// Whether an answer is Envoy's own, saying the call's connection could
/// not be made (refused, failed, or timed out while connecting): the call
/// never reached etcd, so sending it again cannot apply it twice. A reset
/// after the connection was made (`connection termination`, a timeout, a
/// 5xx of etcd's) may have reached etcd and is never a reason to resend.
pub fn never_sent(status: u16, body: &[u8]) -> bool {
    const LOCAL_REPLY: &[u8] =
        b"upstream connect error or disconnect/reset before headers. reset reason: ";
    if status != 503 {
        return false;
    }
    let Some(reason) = body.strip_prefix(LOCAL_REPLY) else {
        return false;
    };
    [
        &b"remote connection failure"[..],
        b"local connection failure",
        b"connection timeout",
    ]
    .iter()
    .any(|r| reason.starts_with(r))
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("stage", &self.stage)
            .field("deadline_ms", &self.deadline_ms)
            .finish_non_exhaustive()
    }
}

impl Claim {
    /// What to do with `answer`, received at `now_ms`.
    pub fn on_answer(&mut self, answer: Answer<'_>, now_ms: i64) -> Step {
        let (status, body) = match answer {
            Answer::NoResponse { timed_out } => {
                let failure = if timed_out || now_ms >= self.deadline_ms {
                    Failure::Timeout
                } else {
                    Failure::Error
                };
                return Step::Done(Outcome::Unavailable(failure));
            }
            Answer::Response { status, body } => (status, body),
        };
        self.last_was_resend = false;
        if never_sent(status, body) && self.resent < MAX_RESENDS && now_ms < self.deadline_ms {
            self.resent += 1;
            self.last_was_resend = true;
            return Step::Send(match self.stage {
                Stage::Grant => self.grant(now_ms),
                Stage::Record | Stage::RecordAfterGrant => self.txn(now_ms, self.token.clone()),
            });
        }
        // Envoy answers a call that ran out of time with its own 504; etcd
        // says 504 for a deadline it ran out of.
        if status == 504 {
            return Step::Done(Outcome::Unavailable(Failure::Timeout));
        }
        if auth::is_token_refusal(status, body) {
            // Refused before anything was applied, but not sent again: the
            // worker logs in anew (its root context), not each claim.
            self.token_refused = true;
            return Step::Done(Outcome::Unavailable(Failure::Error));
        }
        let next = match self.stage {
            Stage::Record | Stage::RecordAfterGrant => match txn_answer(status, body) {
                TxnAnswer::Created => return Step::Done(Outcome::Recorded),
                TxnAnswer::Existed => return Step::Done(Outcome::Replayed),
                // Nothing was written: safe to grant and try again, once.
                TxnAnswer::LeaseNotFound if self.stage == Stage::Record => Stage::Grant,
                TxnAnswer::LeaseNotFound | TxnAnswer::Other => {
                    return Step::Done(Outcome::Unavailable(Failure::Error))
                }
            },
            Stage::Grant => match grant_answer(status, body) {
                // Granted now, or by another gateway (or worker) first.
                GrantAnswer::Granted | GrantAnswer::AlreadyExists => Stage::RecordAfterGrant,
                GrantAnswer::Other => return Step::Done(Outcome::Unavailable(Failure::Error)),
            },
        };
        if now_ms >= self.deadline_ms {
            return Step::Done(Outcome::Unavailable(Failure::Timeout));
        }
        self.stage = next;
        Step::Send(match next {
            Stage::Grant => self.grant(now_ms),
            Stage::Record | Stage::RecordAfterGrant => self.txn(now_ms, self.token.clone()),
        })
    }

    /// Whether the step `on_answer` just returned sends the same call again
    /// (its connection could not be made: `never_sent`).
    pub fn last_was_resend(&self) -> bool {
        self.last_was_resend
    }

    /// The token this claim's calls carry.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether etcd refused this claim's token (then the worker's token
    /// is to be dropped, if it is still this one).
    pub fn token_refused(&self) -> bool {
        self.token_refused
    }

    fn remaining_ms(&self, now_ms: i64) -> u32 {
        u32::try_from((self.deadline_ms - now_ms).clamp(1, i64::from(MAX_TIMEOUT_MS))).unwrap_or(1)
    }

    fn txn(&self, now_ms: i64, token: Option<String>) -> Call {
        // Create the key only if it was never created (create_revision 0);
        // proto3 JSON: int64 values are strings.
        let body = format!(
            concat!(
                r#"{{"compare":[{{"key":"{k}","result":"EQUAL","target":"CREATE","create_revision":"0"}}],"#,
                r#""success":[{{"request_put":{{"key":"{k}","value":"{v}","lease":"{l}"}}}}]}}"#
            ),
            k = self.key,
            v = self.value,
            l = self.lease.id
        );
        Call {
            path: TXN_PATH,
            body,
            timeout_ms: self.remaining_ms(now_ms),
            authorization: token,
        }
    }

    fn grant(&self, now_ms: i64) -> Call {
        Call {
            path: GRANT_PATH,
            body: format!(r#"{{"ID":"{}","TTL":"{}"}}"#, self.lease.id, self.lease.ttl),
            timeout_ms: self.remaining_ms(now_ms),
            authorization: self.token.clone(),
        }
    }
}

/// What an answer that is not a success says, for the operator's log:
/// the status and etcd's (or Envoy's) error text, printable ASCII without
/// quotes or backslashes, and short. etcd's errors never carry a key or a value.
pub fn failure_detail(answer: &Answer<'_>) -> String {
    match answer {
        Answer::NoResponse { timed_out } => {
            format!("no answer{}", if *timed_out { " (timed out)" } else { "" })
        }
        Answer::Response { status, body } => {
            let text = object(body)
                .and_then(|m| m.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| {
                    if (200..300).contains(status) {
                        // A success's body may hold a token: never logged.
                        "unexpected answer".to_string()
                    } else {
                        String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned()
                    }
                });
            let text: String = text
                .chars()
                .take(160)
                // Safe inside a JSON string as it is: no quote, no backslash.
                .map(|c| {
                    if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            format!("status {status}: {text}")
        }
    }
}

enum TxnAnswer {
    Created,
    Existed,
    LeaseNotFound,
    Other,
}

enum GrantAnswer {
    Granted,
    AlreadyExists,
    Other,
}

/// A body as a JSON object, if it is one (and not oversized).
fn object(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    if body.len() > MAX_ANSWER_BYTES {
        return None;
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// etcd's error answers: `{"error":..,"message":..,"code":<gRPC code>}`.
fn error_is(map: &serde_json::Map<String, Value>, code: i64, message: &str) -> bool {
    map.get("code").and_then(Value::as_i64) == Some(code)
        && map.get("error").and_then(Value::as_str) == Some(message)
}

fn txn_answer(status: u16, body: &[u8]) -> TxnAnswer {
    let Some(map) = object(body) else {
        return TxnAnswer::Other;
    };
    match status {
        // A transaction answer always has a header; `succeeded` is left
        // out when false (proto3 JSON omits defaults).
        200 if map.get("header").is_some_and(Value::is_object) => match map.get("succeeded") {
            Some(Value::Bool(true)) => TxnAnswer::Created,
            None | Some(Value::Bool(false)) => TxnAnswer::Existed,
            Some(_) => TxnAnswer::Other,
        },
        404 if error_is(&map, 5, "etcdserver: requested lease not found") => {
            TxnAnswer::LeaseNotFound
        }
        _ => TxnAnswer::Other,
    }
}

fn grant_answer(status: u16, body: &[u8]) -> GrantAnswer {
    let Some(map) = object(body) else {
        return GrantAnswer::Other;
    };
    match status {
        200 if map.get("header").is_some_and(Value::is_object) && map.get("ID").is_some() => {
            GrantAnswer::Granted
        }
        412 if error_is(&map, 9, "etcdserver: lease already exists") => GrantAnswer::AlreadyExists,
        _ => GrantAnswer::Other,
    }
}

#[cfg(test)]
mod tests;
