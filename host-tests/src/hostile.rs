//! The hostile-bytes matrix: every byte a client can put in a request head
//! that is not plain printable ASCII, in every place the filter could meet
//! it, on console and other paths. Each case carries what the README's
//! decision table promises for it.

use crate::gateway::{upgrade_head, ShippedGateway};
use crate::wire::WireReply;
use anyhow::Result;

/// 0x80-0xFF (obs-text, which Envoy lets through in values), every control
/// byte but CR and LF (those end a line: the fuzzer covers them), DEL and
/// NUL. Envoy itself refuses some of these; which ones is part of what the
/// test reports.
pub fn hostile_bytes() -> Vec<u8> {
    (0u8..=0xff)
        .filter(|b| !(0x20..0x7f).contains(b) && *b != b'\r' && *b != b'\n')
        .collect()
}

/// Where the byte goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// In the value of a header the decision reads (it replaces the
    /// default one).
    ReadHeader(&'static str),
    /// In the value of a header the filter never reads.
    OtherHeader(&'static str),
    /// In the query, after a valid token.
    Query,
    /// Inside the token.
    Token,
    /// In a header's name.
    HeaderName,
}

impl Place {
    pub const ALL: [Place; 10] = [
        Place::ReadHeader("origin"),
        Place::ReadHeader("upgrade"),
        Place::ReadHeader("connection"),
        Place::ReadHeader("x-mksgate-cluster"),
        Place::OtherHeader("x-a"),
        Place::OtherHeader("cookie"),
        Place::OtherHeader("user-agent"),
        Place::Query,
        Place::Token,
        Place::HeaderName,
    ];
}

/// One request of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub place: Place,
    pub byte: u8,
    /// Under `/console` (with a fresh valid link), or on `/healthz`.
    pub console: bool,
}

/// What came back, as the table below sorts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seen {
    /// 101: the link was admitted and ESXi answered.
    Admitted,
    /// The filter refused, with this code.
    Refused(String),
    /// Envoy answered itself (its codec, a route), with no decision.
    Envoy(u16),
    /// The connection ended with no answer.
    Dropped,
}

impl Seen {
    pub fn of(reply: &WireReply) -> Seen {
        match (reply.status, &reply.decision) {
            (0, _) => Seen::Dropped,
            (101, None) => Seen::Admitted,
            (_, Some(code)) => Seen::Refused(code.clone()),
            (status, None) => Seen::Envoy(status),
        }
    }
}

fn spliced(value: &[u8], byte: u8) -> Vec<u8> {
    let mid = value.len() / 2;
    let mut out = value[..mid].to_vec();
    out.push(byte);
    out.extend_from_slice(&value[mid..]);
    out
}

fn default_value(header: &str) -> &'static [u8] {
    match header {
        "origin" => crate::shipped::ORIGIN.as_bytes(),
        "upgrade" => b"websocket",
        "connection" => b"Upgrade",
        "x-mksgate-cluster" => b"esxi_vesxi02",
        "cookie" => b"a=Espana",
        "user-agent" => b"Mozilla/5.0",
        _ => b"value",
    }
}

/// The request head for `case`, with a fresh valid link when it is a
/// console case.
pub fn request(gw: &ShippedGateway, case: &Case, index: usize) -> Result<Vec<u8>> {
    let path = if case.console {
        gw.valid_path(index)?
    } else {
        "/healthz?q=1".to_string()
    };
    let b = case.byte;
    let mut path = path.into_bytes();
    let mut name = Vec::new();
    let mut value = Vec::new();
    match case.place {
        Place::ReadHeader(h) | Place::OtherHeader(h) => {
            name = h.as_bytes().to_vec();
            value = spliced(default_value(h), b);
        }
        Place::Query => {
            path.extend_from_slice(b"&x=");
            path.push(b);
        }
        Place::Token => {
            let at = path.iter().position(|c| *c == b'=').map_or(0, |p| p + 20);
            path.insert(at.min(path.len()), b);
        }
        Place::HeaderName => {
            name = spliced(b"x-name", b);
            value = b"v".to_vec();
        }
    }
    let extra: Vec<(&[u8], &[u8])> = if name.is_empty() {
        Vec::new()
    } else {
        vec![(&name[..], &value[..])]
    };
    Ok(upgrade_head(&path, &extra))
}

/// Checks `seen` against the README's promise for `case`; `Err` says why
/// not. Whatever the case, Envoy may refuse a byte itself (a 4xx with no
/// decision: its codec), but nothing may end without an answer, and no 5xx
/// may come without a decision (that is what a failed VM gives).
pub fn judge(case: &Case, seen: &Seen) -> std::result::Result<(), String> {
    let obs_text = case.byte >= 0x80;
    let refused_as = |codes: &[&str]| match seen {
        Seen::Envoy(status) => (400..500).contains(status),
        Seen::Refused(code) => codes.contains(&code.as_str()),
        _ => false,
    };
    let ok = match seen {
        Seen::Dropped => false,
        Seen::Envoy(status) if *status >= 500 => false,
        Seen::Envoy(status) if case.console && *status < 400 => false,
        _ if !case.console => matches!(seen, Seen::Envoy(_)),
        // Another header's bytes are never read: the link is admitted.
        _ if obs_text && matches!(case.place, Place::OtherHeader(_)) => *seen == Seen::Admitted,
        // Envoy drops a `Connection` it cannot parse before any filter
        // runs (measured): what is left is no upgrade at all.
        _ if obs_text && case.place == Place::ReadHeader("connection") => {
            refused_as(&["malformed_request", "not_websocket"])
        }
        // A header the decision reads, or the path: refused, by name.
        _ if obs_text => refused_as(&["malformed_request"]),
        // Control bytes: any decision (a tab is valid text), never a crash.
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{case:?} (byte {:#04x}) -> {seen:?}", case.byte))
    }
}

/// Every case: each place times each byte, on console paths, and on a
/// non-console path for the places that exist there.
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for place in Place::ALL {
        for byte in hostile_bytes() {
            out.push(Case {
                place,
                byte,
                console: true,
            });
            if place != Place::Token {
                out.push(Case {
                    place,
                    byte,
                    console: false,
                });
            }
        }
    }
    out
}
