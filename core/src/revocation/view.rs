//! One worker's view of the revocations: which ids are revoked, and how
//! fresh that is. The root context polls (`poll`) and hands the answers back
//! (`on_answer`); this decides the calls and reads the answers, and never
//! touches the network or the clock.
//!
//! Each poll is one `POST /v3/kv/range` over the prefix, keys only, asking
//! for keys changed since the last revision seen (`min_mod_revision`). A
//! range's `count` is etcd's number of keys under the prefix whatever the
//! filter, so a count lower than expected means keys went (a lease ended,
//! a revocation lifted) and the next tick reads everything again. The first
//! read, and every read after a failure, is a full one. A long answer comes
//! in pages of `PAGE_KEYS`, all at the first page's revision (a compaction
//! between pages fails the read; the next one starts over).

use super::{short_id_of_key, RevocationSource, Subject};
use crate::etcd::{failure_detail, is_token_refusal, Answer, Call};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use std::collections::HashSet;

pub const RANGE_PATH: &str = "/v3/kv/range";
/// Keys per page: about 150 bytes each in etcd's answer, well under the
/// 64 KiB an answer may have.
pub const PAGE_KEYS: u32 = 256;
/// Pages per read: more revocations than this (about 256,000) fail the
/// read rather than page on for ever.
const MAX_PAGES: u32 = 1000;

/// What the view says about a new link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Clear,
    /// Its `sub`, `tenant` or `jti` is revoked: `revoked`.
    Revoked,
    /// The view is older than `max_stale_ms` (or there is none yet):
    /// `revocation_unavailable`.
    Unavailable,
}

/// How an answer left the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Another page: send this.
    Send(Call),
    /// The view is current as of the read's start. `added`: revocations
    /// that were not in the view before (live consoles are to be checked).
    Done { added: bool },
    /// The read failed; the view keeps its age. The detail is etcd's or
    /// Envoy's words, never a key. `refused_token`: the token etcd
    /// refused, which the worker drops if it still holds it.
    Failed {
        detail: String,
        refused_token: Option<String>,
    },
}

#[derive(Debug, Default)]
pub struct View {
    revoked: HashSet<u64>,
    /// etcd's count of keys under the prefix at `revision`.
    count: i64,
    /// The revision the view reflects; 0 before the first read.
    revision: i64,
    /// The start of the last read that completed.
    fresh_as_of_ms: Option<i64>,
    full_read_needed: bool,
    read: Option<Read>,
    last_started_ms: Option<i64>,
}

#[derive(Debug)]
struct Read {
    started_ms: i64,
    /// Keys changed after this revision; `None`: every key.
    since: Option<i64>,
    /// The revision of the first page, which later pages read at.
    revision: Option<i64>,
    next_key: Vec<u8>,
    found: Vec<u64>,
    /// Keys created after `since` (an incremental read's new keys).
    created: i64,
    count: i64,
    pages: u32,
    token: Option<String>,
}

impl View {
    /// A new link's verdict at `now_ms`.
    pub fn verdict(&self, subject: &Subject, now_ms: i64, max_stale_ms: u32) -> Verdict {
        match self.age_ms(now_ms) {
            Some(age) if age <= i64::from(max_stale_ms) => {
                if subject.matches(&self.revoked) {
                    Verdict::Revoked
                } else {
                    Verdict::Clear
                }
            }
            _ => Verdict::Unavailable,
        }
    }

    /// Whether a live console's subject is revoked (whatever the age: a
    /// stale view never closes or keeps a console by itself).
    pub fn is_revoked(&self, subject: &Subject) -> bool {
        subject.matches(&self.revoked)
    }

    /// How old the view is; `None` before the first read completed.
    pub fn age_ms(&self, now_ms: i64) -> Option<i64> {
        self.fresh_as_of_ms.map(|at| (now_ms - at).max(0))
    }

    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// From the tick: the read to start now, if one is due (`poll_ms`
    /// after the last, at once when keys went). A read whose answer never
    /// came is given up after its timeout.
    pub fn poll(
        &mut self,
        source: &RevocationSource,
        now_ms: i64,
        token: Option<&str>,
    ) -> Option<Call> {
        if let Some(read) = &self.read {
            if now_ms - read.started_ms <= i64::from(source.timeout_ms) + 1000 {
                return None;
            }
            self.read = None;
        }
        let due = self.full_read_needed
            || self.revision == 0
            || self
                .last_started_ms
                .is_none_or(|at| now_ms - at >= i64::from(source.poll_ms));
        if !due {
            return None;
        }
        let since = (self.revision > 0 && !self.full_read_needed).then_some(self.revision);
        let read = Read {
            started_ms: now_ms,
            since,
            revision: None,
            next_key: source.key_prefix.as_bytes().to_vec(),
            found: Vec::new(),
            created: 0,
            count: 0,
            pages: 0,
            token: token.map(str::to_string),
        };
        let call = read.call(source);
        self.last_started_ms = Some(now_ms);
        self.read = Some(read);
        Some(call)
    }

    /// The read just started could not be sent: the next tick tries again,
    /// with a full read.
    pub fn abandon(&mut self) {
        self.read = None;
        self.full_read_needed = true;
    }

    /// etcd's answer to the read in flight.
    pub fn on_answer(&mut self, source: &RevocationSource, answer: Answer<'_>) -> ReadOutcome {
        let Some(mut read) = self.read.take() else {
            return failed("no read in flight".to_string(), None);
        };
        let page = match answer {
            Answer::Response { status: 200, body } => parse_page(body, &source.key_prefix),
            Answer::Response { status, body } if is_token_refusal(status, body) => {
                self.full_read_needed = true;
                return failed(failure_detail(&answer), read.token);
            }
            _ => None,
        };
        let Some(page) = page else {
            self.full_read_needed = true;
            return failed(failure_detail(&answer), None);
        };
        if read.revision.is_none() {
            read.revision = Some(page.revision);
            read.count = page.count;
        }
        if let Some(since) = read.since {
            read.created += page.created_after(since);
        }
        read.found.extend(page.ids);
        read.pages += 1;
        if let Some(last) = page.last_key.filter(|_| page.more) {
            if read.pages >= MAX_PAGES {
                self.full_read_needed = true;
                return failed("more revocations than a read may page".to_string(), None);
            }
            read.next_key = last;
            read.next_key.push(0);
            let call = read.call(source);
            self.read = Some(read);
            return ReadOutcome::Send(call);
        }
        let added = read.found.iter().any(|id| !self.revoked.contains(id));
        match read.since {
            None => {
                self.revoked = read.found.into_iter().collect();
                self.full_read_needed = false;
            }
            Some(_) => {
                // Keys that went leave no trace in a filtered range: only
                // the count tells, and then everything is read again.
                self.full_read_needed = read.count != self.count + read.created;
                self.revoked.extend(read.found);
            }
        }
        self.count = read.count;
        self.revision = read.revision.unwrap_or(self.revision);
        self.fresh_as_of_ms = Some(read.started_ms);
        ReadOutcome::Done { added }
    }
}

fn failed(detail: String, refused_token: Option<String>) -> ReadOutcome {
    ReadOutcome::Failed {
        detail,
        refused_token,
    }
}

impl Read {
    fn call(&self, source: &RevocationSource) -> Call {
        let mut end = source.key_prefix.as_bytes().to_vec();
        // The prefix is printable ASCII (never 0xff): its range ends at
        // the prefix with its last byte one higher.
        if let Some(last) = end.last_mut() {
            *last = last.saturating_add(1);
        }
        let mut body = format!(
            r#"{{"key":"{}","range_end":"{}","keys_only":true,"limit":"{}""#,
            STANDARD.encode(&self.next_key),
            STANDARD.encode(&end),
            PAGE_KEYS
        );
        if let Some(revision) = self.revision {
            body.push_str(&format!(r#","revision":"{revision}""#));
        }
        if let Some(since) = self.since {
            body.push_str(&format!(r#","min_mod_revision":"{}""#, since + 1));
        }
        body.push('}');
        Call {
            path: RANGE_PATH,
            body,
            timeout_ms: source.timeout_ms,
            authorization: self.token.clone(),
        }
    }
}

struct Page {
    revision: i64,
    count: i64,
    more: bool,
    ids: Vec<u64>,
    /// Each key's create revision.
    created: Vec<i64>,
    last_key: Option<Vec<u8>>,
}

impl Page {
    fn created_after(&self, since: i64) -> i64 {
        self.created.iter().filter(|at| **at > since).count() as i64
    }
}

/// proto3 JSON: int64 values are strings, and zero values are left out.
fn int(value: Option<&Value>) -> Option<i64> {
    match value {
        None => Some(0),
        Some(Value::String(s)) => s.parse().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        Some(_) => None,
    }
}

fn parse_page(body: &[u8], prefix: &str) -> Option<Page> {
    let root: Value = serde_json::from_slice(body).ok()?;
    let root = root.as_object()?;
    if root.contains_key("error") {
        return None;
    }
    let revision = int(root.get("header")?.as_object()?.get("revision"))?;
    if revision <= 0 {
        return None;
    }
    let count = int(root.get("count"))?;
    let more = match root.get("more") {
        None => false,
        Some(v) => v.as_bool()?,
    };
    let kvs = match root.get("kvs") {
        None => &[][..],
        Some(v) => v.as_array()?.as_slice(),
    };
    let mut page = Page {
        revision,
        count,
        more,
        ids: Vec::with_capacity(kvs.len()),
        created: Vec::with_capacity(kvs.len()),
        last_key: None,
    };
    for kv in kvs {
        let kv = kv.as_object()?;
        let key = STANDARD.decode(kv.get("key")?.as_str()?).ok()?;
        page.created.push(int(kv.get("create_revision"))?);
        if let Some(id) = key
            .strip_prefix(prefix.as_bytes())
            .and_then(short_id_of_key)
        {
            page.ids.push(id);
        }
        page.last_key = Some(key);
    }
    Some(page)
}
