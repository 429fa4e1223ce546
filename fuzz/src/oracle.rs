//! Invariants of mksgate-core, written independently of its code paths so
//! they can judge it. Shared by the cargo-fuzz targets (`fuzz/`) and the
//! proptest suite (`core/tests/properties.rs`, which includes this file with
//! `#[path]`), so both check exactly the same things.
//!
//! Every check returns `Err(why)` instead of panicking; the caller panics
//! (libFuzzer records a crash, proptest shrinks the case).
//!
//! The decision oracle assumes the config's `ticket_path` is the default
//! `/ticket/{ticket}` (true for every config the fuzzers and tests use).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mksgate_core::config::Config;
use mksgate_core::decision::Decision;
use mksgate_core::jws::{self, KeySet, Scratch};
use mksgate_core::request::{HeaderValue, RequestFacts};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `jws::verify` and `jws::peek_kid` on arbitrary text: no panic, and a
/// token that verifies is byte for byte what signing its own header and
/// payload with the selected key gives, so only genuinely signed tokens pass
/// (no alternative encodings, padding, trailing bits or extra segments).
pub fn check_token(keys: &KeySet, token: &str) -> Result<(), String> {
    if let Some(kid) = jws::peek_kid(token) {
        // Unverified input reaches logs as printable ASCII only: at most 64
        // characters of the kid, each one or one `\u{..}` escape.
        if !kid.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(format!("peek_kid returned non-printable {kid:?}"));
        }
        if kid.len() > 64 * "\\u{10ffff}".len() {
            return Err(format!("peek_kid returned {} bytes", kid.len()));
        }
    }
    let mut scratch = Scratch::new();
    let Ok(verified) = jws::verify(keys, token, &mut scratch) else {
        return Ok(());
    };
    resigns_identically(verified.key, token, verified.payload)
}

fn resigns_identically(key: &jws::Key, token: &str, payload: &[u8]) -> Result<(), String> {
    let header_b64 = token.split('.').next().unwrap_or_default();
    let header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|e| format!("verified token's header is not base64url: {e}"))?;
    let resigned = jws::sign_with_header(key, &header, payload);
    if resigned != token {
        return Err(format!(
            "verified token differs from its re-signature:\n  given   {token:.200}\n  resigned {resigned:.200}"
        ));
    }
    // The header as JSON. serde skips ignored members without checking
    // their UTF-8, so read it lossily; a header that still does not parse
    // (a lone surrogate escape in an ignored member) was signed by the key
    // holder all the same, and is left to the identity check above.
    if let Some(Value::Object(h)) = json_lossy(&header) {
        if h.get("alg").and_then(Value::as_str) != Some(key.alg().name()) {
            return Err(format!(
                "verified under {:?} but header is {h:?}",
                key.alg()
            ));
        }
        // `null` members read as absent (serde's Option), which is harmless.
        if h.get("crit").is_some_and(|c| !c.is_null()) {
            return Err("verified a token with a crit header".into());
        }
        if let Some(typ) = h.get("typ").filter(|t| !t.is_null()) {
            if !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT")) {
                return Err(format!("verified a token with typ {typ}"));
            }
        }
    }
    Ok(())
}

/// JSON read with invalid UTF-8 replaced, as serde's borrowed parse of a
/// struct tolerates it in members it ignores.
fn json_lossy(bytes: &[u8]) -> Option<Value> {
    serde_json::from_str(&String::from_utf8_lossy(bytes)).ok()
}

/// `Config::parse` on arbitrary bytes: no panic (the caller's job: this runs
/// it), every error's text names its field, and no error text carries any of
/// `secrets` (texts the env lookup hands out) unless the input itself
/// carries that text (a field name may legitimately be echoed).
pub fn check_config(
    json: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &[&str],
) -> Result<(), String> {
    let result = Config::parse(json, env);
    let error = match result {
        Ok(config) => return check_parsed_config(&config),
        Err(e) => e,
    };
    let shown = error.to_string();
    if error.field.is_empty() || !shown.contains(&error.field) {
        return Err(format!("error without its field: {shown:?}"));
    }
    if shown.contains('\n') || shown.contains('\r') {
        return Err(format!("multi-line error: {shown:?}"));
    }
    let input = String::from_utf8_lossy(json);
    for secret in secrets {
        // Any 12-character window of a secret in the message, which the
        // input did not itself contain, is a leak.
        let chars: Vec<char> = secret.chars().collect();
        for window in chars.windows(12.min(chars.len())) {
            let piece: String = window.iter().collect();
            if shown.contains(&piece) && !input.contains(&piece) {
                return Err(format!(
                    "error text leaks secret material {piece:?}: {shown:?}"
                ));
            }
        }
    }
    Ok(())
}

/// What a config that parsed must satisfy.
fn check_parsed_config(config: &Config) -> Result<(), String> {
    if config.keys.is_empty() {
        return Err("config without keys accepted".into());
    }
    if config.upstreams.hosts.is_empty() && config.upstreams.host_suffixes.is_empty() {
        return Err("config without upstreams accepted".into());
    }
    for host in config.upstreams.hosts.keys() {
        let canonical = canonical_host(host)
            .ok_or_else(|| format!("allowlisted host {host:?} is not a valid host"))?;
        if canonical.0 != *host {
            return Err(format!("allowlisted host {host:?} is not canonical"));
        }
    }
    for (suffix, _) in &config.upstreams.host_suffixes {
        let ok = suffix.strip_prefix('.').is_some_and(
            |rest| matches!(canonical_host(rest), Some((name, false)) if name == rest),
        );
        if !ok {
            return Err(format!("suffix {suffix:?} accepted"));
        }
    }
    let p = &config.path_prefix;
    if !p.starts_with('/') || p.ends_with('/') || p.contains('?') || p.contains('%') {
        return Err(format!("path_prefix {p:?} accepted"));
    }
    if !(0..=300).contains(&config.clock_skew_seconds)
        || !(1..=86_400).contains(&config.max_ttl_seconds)
    {
        return Err("skew or ttl out of range accepted".into());
    }
    Ok(())
}

/// Whether `path` (query stripped) is under `prefix`: the prefix itself or
/// below it.
pub fn is_console_path(prefix: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The single non-empty value of `name` in the query, or why not.
fn the_token<'p>(path: &'p str, name: &str) -> Result<&'p str, String> {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let query = query.split('#').next().unwrap_or_default();
    let values: Vec<&str> = query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
        .collect();
    match values.as_slice() {
        [one] if !one.is_empty() => Ok(one),
        _ => Err(format!("admitted with token parameter values {values:?}")),
    }
}

/// NumericDate as RFC 7519 and the README read it: integers (u64 beyond
/// i64 saturating), floats floored; `null` is absent.
fn date(claims: &Value, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if n.as_u64().is_some() {
                Ok(Some(i64::MAX))
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if !f.is_finite() {
                    return Err(format!("admitted with {name} = {n}"));
                }
                Ok(Some(f.floor() as i64))
            }
        }
        Some(other) => Err(format!("admitted with non-numeric {name} = {other}")),
    }
}

fn str_claim<'v>(claims: &'v Value, name: &str) -> Result<Option<&'v str>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("admitted with non-string {name} = {other}")),
    }
}

/// A host text as the allowlist must see it: (canonical form, is an IP).
/// DNS names: labels of 1 to 63 of a-z 0-9 -, not starting or ending in -,
/// at most 253 in all, last label not all digits; lower-cased. IPs: dotted
/// quad v4, v6 bare or bracketed.
pub fn canonical_host(text: &str) -> Option<(String, bool)> {
    if text.is_empty() || text.len() > 253 {
        return None;
    }
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| (v6.to_string(), true));
    }
    if text.contains(':') {
        return text
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| (v6.to_string(), true));
    }
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Some((v4.to_string(), true));
    }
    let lower = text.to_ascii_lowercase();
    let labels: Vec<&str> = lower.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !labels.iter().all(label_ok) {
        return None;
    }
    if labels.last()?.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((lower, false))
}

/// RFC 3986 unreserved only, 1 to 256, not `.` or `..`.
pub fn is_safe_ticket(ticket: &str) -> bool {
    !ticket.is_empty()
        && ticket.len() <= 256
        && ticket != "."
        && ticket != ".."
        && ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn port_of(raw: &Value) -> Result<u16, String> {
    let port = match raw {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s)
            if !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse::<u16>().ok()
        }
        _ => None,
    };
    port.filter(|p| *p != 0)
        .ok_or_else(|| format!("admitted with port claim {raw}"))
}

/// The target the claims name: (host text as written, port, ticket).
fn claimed_target(claims: &Value) -> Result<(String, u16, String), String> {
    let present = |name: &str| !matches!(claims.get(name), None | Some(Value::Null));
    let (url, host, ticket, port) = (
        present("url"),
        present("host"),
        present("ticket"),
        present("port"),
    );
    if url && !host && !ticket && !port {
        let url = str_claim(claims, "url")?.unwrap_or_default();
        let scheme = url.get(..6).unwrap_or_default();
        if !scheme.eq_ignore_ascii_case("wss://") {
            return Err(format!("admitted url {url:?}"));
        }
        let rest = &url[6..];
        let slash = rest.find('/').ok_or("url without path")?;
        let (authority, path) = rest.split_at(slash);
        let ticket = path
            .strip_prefix("/ticket/")
            .ok_or_else(|| format!("admitted url path {path:?}"))?;
        if authority.contains('@') {
            return Err(format!("admitted url with userinfo {url:?}"));
        }
        let (host, port) = if authority.starts_with('[') {
            let close = authority.find(']').ok_or("unclosed bracket")?;
            let (h, after) = authority.split_at(close + 1);
            match after {
                "" => (h, 443),
                _ => {
                    let p = after.strip_prefix(':').ok_or("junk after ]")?;
                    (h, port_of(&Value::String(p.into()))?)
                }
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, port_of(&Value::String(p.into()))?),
                None => (authority, 443),
            }
        };
        Ok((host.to_string(), port, ticket.to_string()))
    } else if !url && host && ticket {
        let host = str_claim(claims, "host")?.unwrap_or_default();
        let ticket = str_claim(claims, "ticket")?.unwrap_or_default();
        let port = match claims.get("port") {
            None | Some(Value::Null) => 443,
            Some(raw) => port_of(raw)?,
        };
        Ok((host.to_string(), port, ticket.to_string()))
    } else {
        Err(format!(
            "admitted with target claims url={url} host={host} ticket={ticket} port={port}"
        ))
    }
}

fn cidr_contains(text: &str, client: IpAddr) -> Result<bool, String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("admitted with ip claim {text:?}"));
            }
            (a, Some(p.parse::<u32>().map_err(|e| e.to_string())?))
        }
        None => (text, None),
    };
    let network: IpAddr = addr
        .parse()
        .map_err(|_| format!("admitted with ip claim {text:?}"))?;
    // A block written IPv4-mapped (prefix >= 96) is an IPv4 block.
    let (network, prefix) = match network {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix.unwrap_or(128) >= 96 => {
            let p = prefix.unwrap_or(128);
            if p > 128 {
                return Err(format!("admitted with ip claim {text:?}"));
            }
            match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), Some(p - 96)),
                None => (network, prefix),
            }
        }
        _ => (network, prefix),
    };
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    Ok(match (network, client) {
        (IpAddr::V4(n), IpAddr::V4(c)) => {
            let p = prefix.unwrap_or(32);
            if p > 32 {
                return Err(format!("admitted with ip claim {text:?}"));
            }
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            if u32::from(n) & mask != u32::from(n) {
                return Err(format!("admitted with ip claim with host bits {text:?}"));
            }
            u32::from(c) & mask == u32::from(n)
        }
        (IpAddr::V6(n), IpAddr::V6(c)) => {
            let p = prefix.unwrap_or(128);
            if p > 128 {
                return Err(format!("admitted with ip claim {text:?}"));
            }
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            if u128::from(n) & mask != u128::from(n) {
                return Err(format!("admitted with ip claim with host bits {text:?}"));
            }
            u128::from(c) & mask == u128::from(n)
        }
        _ => false,
    })
}

fn client_ip(text: &str) -> Option<IpAddr> {
    text.parse::<SocketAddr>()
        .map(|sa| sa.ip())
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok())
}

/// What an admission hands the host, judged on its own: a path that is the
/// ticket path with an unreserved ticket, an authority that is an
/// allowlisted host (exact, or a DNS name under a suffix) and a port, with
/// nothing that could reach another host or path, and that host's cluster.
pub fn check_admission_shape(
    config: &Config,
    admission: &mksgate_core::decision::Admission<'_>,
) -> Result<(), String> {
    let ticket = admission
        .path()
        .strip_prefix("/ticket/")
        .ok_or_else(|| format!("path {:?}", admission.path()))?;
    if !is_safe_ticket(ticket) {
        return Err(format!("path {:?} with unsafe ticket", admission.path()));
    }
    let authority = admission.authority();
    if authority.is_empty()
        || authority.bytes().any(|b| {
            matches!(b, b'@' | b'/' | b'?' | b'#' | b'%' | b'\\')
                || b.is_ascii_whitespace()
                || b.is_ascii_uppercase()
                || !b.is_ascii_graphic()
        })
    {
        return Err(format!("unsafe authority {authority:?}"));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("authority {authority:?}"))?;
        (v6, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && !port.starts_with('0')
            && port.parse::<u16>().is_ok_and(|p| p != 443);
        if !ok {
            return Err(format!("authority {authority:?} with port {port:?}"));
        }
    }
    let (canonical, is_ip) =
        canonical_host(host).ok_or_else(|| format!("authority host {host:?} is not a host"))?;
    if canonical != host {
        return Err(format!("authority host {host:?} is not canonical"));
    }
    let cluster = match config.upstreams.hosts.get(host) {
        Some(c) => Some(c.as_str()),
        None if is_ip => None,
        None => config
            .upstreams
            .host_suffixes
            .iter()
            .filter(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .max_by_key(|(suffix, _)| suffix.len())
            .map(|(_, c)| c.as_str()),
    };
    match cluster {
        Some(c) if c == admission.cluster() => Ok(()),
        Some(c) => Err(format!(
            "cluster {:?} for {host:?}, want {c:?}",
            admission.cluster()
        )),
        None => Err(format!("admitted host {host:?} outside the allowlist")),
    }
}

/// The whole decision: `PassThrough` exactly off the console path, and an
/// `Admit` only when every rule of the contract holds for these facts at
/// `now`. Refusals are not judged here (which refusal code wins is the unit
/// tests' business), only that nothing is admitted that must not be.
pub fn check_decision(
    config: &Config,
    facts: &RequestFacts<'_>,
    now: i64,
    decision: &Decision<'_>,
) -> Result<(), String> {
    let console = is_console_path(&config.path_prefix, facts.path);
    match (console, decision) {
        (false, Decision::PassThrough { .. }) => return Ok(()),
        (false, _) => return Err(format!("decided a non-console path {:?}", facts.path)),
        (true, Decision::PassThrough { .. }) => {
            return Err(format!("passed through console path {:?}", facts.path))
        }
        (true, Decision::Refuse(_)) => return Ok(()),
        (true, Decision::Admit(_)) => {}
    }
    let Decision::Admit(admission) = decision else {
        return Ok(());
    };

    // The request: the prefix itself (one trailing `/` allowed), never a
    // path below it.
    let path_only = facts.path.split('?').next().unwrap_or_default();
    let below = path_only.strip_prefix(config.path_prefix.as_str());
    if !matches!(below, Some("" | "/")) {
        return Err(format!("admitted a path below the prefix: {path_only:?}"));
    }
    if facts.method != "GET" || !facts.connection_upgrade {
        return Err(format!(
            "admitted {:?} without Connection: upgrade",
            facts.method
        ));
    }
    if !matches!(facts.upgrade, HeaderValue::One(u) if u.trim().eq_ignore_ascii_case("websocket")) {
        return Err(format!("admitted with upgrade {:?}", facts.upgrade));
    }

    // The token: one, genuinely signed by a configured key.
    let token = the_token(facts.path, &config.token_param)?;
    let mut scratch = Scratch::new();
    let verified = jws::verify(&config.keys, token, &mut scratch)
        .map_err(|e| format!("admitted a token that does not verify: {e:?}"))?;
    resigns_identically(verified.key, token, verified.payload)?;
    check_admission_shape(config, admission)?;
    // The claims. A payload that is JSON only to serde's lenient struct
    // parse (a lone surrogate escape in an ignored member) can only come from
    // the key holder; the shape checks above still held for it.
    let Some(claims) = json_lossy(verified.payload) else {
        return Ok(());
    };
    if !claims.is_object() {
        return Err(format!("admitted claims that are not an object: {claims}"));
    }

    // Lifetime.
    let skew = config.clock_skew_seconds;
    let ttl = config.max_ttl_seconds;
    let exp = date(&claims, "exp")?.ok_or("admitted without exp")?;
    if now >= exp.saturating_add(skew) {
        return Err(format!("admitted expired: now {now} exp {exp} skew {skew}"));
    }
    if exp.saturating_sub(now) > ttl.saturating_add(skew) {
        return Err(format!("admitted exp {exp} too far after now {now}"));
    }
    if let Some(nbf) = date(&claims, "nbf")? {
        if now.saturating_add(skew) < nbf {
            return Err(format!("admitted before nbf {nbf} (now {now})"));
        }
    }
    if let Some(iat) = date(&claims, "iat")? {
        if iat > now.saturating_add(skew) {
            return Err(format!("admitted iat {iat} in the future (now {now})"));
        }
        if exp.saturating_sub(iat) > ttl {
            return Err(format!(
                "admitted exp - iat = {} > {ttl}",
                exp.saturating_sub(iat)
            ));
        }
    }

    // Audience, issuer.
    if let Some(wanted) = &config.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == wanted,
            Some(Value::Array(list)) => {
                list.iter().all(Value::is_string)
                    && list.iter().any(|a| a.as_str() == Some(wanted.as_str()))
            }
            _ => false,
        };
        if !ok {
            return Err(format!("admitted aud {:?}", claims.get("aud")));
        }
    }
    if let Some(wanted) = &config.issuer {
        if str_claim(&claims, "iss")? != Some(wanted.as_str()) {
            return Err(format!("admitted iss {:?}", claims.get("iss")));
        }
    }

    // A console already over is never admitted.
    if let Some(console_exp) = claims.get("console_exp").and_then(Value::as_f64) {
        if console_exp.floor() <= (now.saturating_sub(skew)) as f64 {
            return Err(format!(
                "admitted a console already over: console_exp {console_exp}"
            ));
        }
    }

    // One-time use.
    if config.one_time_links {
        let jti = str_claim(&claims, "jti")?.ok_or("admitted without jti")?;
        if jti.is_empty() || jti.len() > 128 {
            return Err(format!("admitted jti of {} bytes", jti.len()));
        }
        let one = admission.one_time().ok_or("no one_time on admission")?;
        if one.jti != jti || one.remember_until != exp.saturating_add(skew) {
            return Err(format!("one_time {one:?} for jti {jti:?} exp {exp}"));
        }
        // The record is this key's and this tenant's, never the jti's alone.
        let tenant = str_claim(&claims, "tenant")?;
        let record = mksgate_core::one_time::record_id(verified.key.kid(), tenant, jti);
        if one.record != record {
            return Err(format!(
                "one_time record not keyed by kid and tenant: {one:?}"
            ));
        }
    } else if admission.one_time().is_some() {
        return Err("one_time set with one_time_links off".into());
    }

    // Target: allowlisted host, clean authority, ticket-only path.
    let (host_text, port, ticket) = claimed_target(&claims)?;
    if !is_safe_ticket(&ticket) {
        return Err(format!("admitted ticket {ticket:?}"));
    }
    let expected_path = format!("/ticket/{ticket}");
    if admission.path() != expected_path {
        return Err(format!(
            "path {:?}, want {expected_path:?}",
            admission.path()
        ));
    }
    let (canonical, is_ip) =
        canonical_host(&host_text).ok_or_else(|| format!("admitted host {host_text:?}"))?;
    let expected_cluster = match config.upstreams.hosts.get(&canonical) {
        Some(cluster) => cluster.as_str(),
        None if is_ip => return Err(format!("admitted IP {canonical} not in hosts")),
        None => config
            .upstreams
            .host_suffixes
            .iter()
            .filter(|(suffix, _)| {
                canonical.len() > suffix.len() && canonical.ends_with(suffix.as_str())
            })
            .max_by_key(|(suffix, _)| suffix.len())
            .map(|(_, cluster)| cluster.as_str())
            .ok_or_else(|| format!("admitted host {canonical:?} outside the allowlist"))?,
    };
    if admission.cluster() != expected_cluster {
        return Err(format!(
            "cluster {:?} for {canonical:?}, want {expected_cluster:?}",
            admission.cluster()
        ));
    }

    // Key scope: a scoped key opens only its own hosts, and its own tenants.
    if let Some(scope) = config.scope_of(verified.key) {
        let narrowed = !scope.hosts.is_empty() || !scope.host_suffixes.is_empty();
        let listed = scope.hosts.iter().any(|h| h.canonical() == canonical);
        let under = !is_ip
            && scope
                .host_suffixes
                .iter()
                .any(|s| canonical.len() > s.len() && canonical.ends_with(s.as_str()));
        if narrowed && !listed && !under {
            return Err(format!("admitted {canonical:?} outside the key's scope"));
        }
        if let Some(tenants) = &scope.tenants {
            let tenant = str_claim(&claims, "tenant")?
                .ok_or("admitted a link without tenant under a tenant-scoped key")?;
            if !tenants.iter().any(|t| t == tenant) {
                return Err(format!(
                    "admitted tenant {tenant:?} outside the key's scope"
                ));
            }
        }
    }
    let host_part = if canonical.contains(':') {
        format!("[{canonical}]")
    } else {
        canonical.clone()
    };
    let expected_authority = if port == 443 {
        host_part
    } else {
        format!("{host_part}:{port}")
    };
    if admission.authority() != expected_authority {
        return Err(format!(
            "authority {:?}, want {expected_authority:?}",
            admission.authority()
        ));
    }
    if admission.authority().bytes().any(|b| {
        matches!(b, b'@' | b'/' | b'?' | b'#' | b'%' | b'\\')
            || b.is_ascii_whitespace()
            || b.is_ascii_uppercase()
            || !b.is_ascii_graphic()
    }) {
        return Err(format!("unsafe authority {:?}", admission.authority()));
    }

    // Origin.
    let claimed_origin = str_claim(&claims, "origin")?;
    if config.allowed_origins.is_some() || claimed_origin.is_some() {
        let HeaderValue::One(origin) = facts.origin else {
            return Err(format!("admitted with origin {:?}", facts.origin));
        };
        if let Some(allowed) = &config.allowed_origins {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
                return Err(format!("admitted origin {origin:?} not in config"));
            }
        }
        if let Some(claimed) = claimed_origin {
            if !claimed.eq_ignore_ascii_case(origin) {
                return Err(format!("admitted origin {origin:?}, claim {claimed:?}"));
            }
        }
    }

    // Client address.
    if let Some(ip) = str_claim(&claims, "ip")? {
        let client = facts
            .client
            .and_then(client_ip)
            .ok_or_else(|| format!("admitted client {:?} for ip claim", facts.client))?;
        if !cidr_contains(ip, client)? {
            return Err(format!("admitted client {client} outside {ip:?}"));
        }
    }
    Ok(())
}

/// Host texts that must never route anywhere but where the allowlist says
/// (mostly: nowhere): look-alikes, userinfo, escapes, ports, brackets, zone
/// ids, trailing dots, numeric IP spellings. The `decide` fuzz target draws
/// its hostile hosts from here and the property tests check every one.
pub const HOSTILE: &[&str] = &[
    "vesxi01.sec.lab.",
    "VESXI01.SEC.LAB.",
    "vesxi01.sec.lab.evil.com",
    "evil-vesxi01.sec.lab",
    "evilvesxi01.sec.lab",
    "sec.lab",
    "esxi.example.com",
    ".esxi.example.com",
    "x.esxi.example.com.evil.com",
    "evil-esxi.example.com",
    "evilesxi.example.com",
    "x.esxi.example.com.",
    "x..esxi.example.com",
    "evil.com@vesxi01.sec.lab",
    "vesxi01.sec.lab@evil.com",
    "evil.com#.esxi.example.com",
    "evil.com/.esxi.example.com",
    "evil.com?.esxi.example.com",
    "evil.com%2f.esxi.example.com",
    "x%2eesxi.example.com",
    "vesxi01.sec.lab:443",
    "vesxi01.sec.lab:8443",
    "[vesxi01.sec.lab]",
    "[10.0.0.9]",
    "10.0.0.9:443",
    "2001:db8::7%eth0",
    "[2001:db8::7%25eth0]",
    "[2001:db8::7]:443",
    "[::ffff:10.0.0.9]",
    "::ffff:10.0.0.9",
    "10.0.0.09",
    "010.0.0.9",
    "10.0.9",
    "0x0a.0.0.9",
    "167772169",
    "x.esxi.example.com\u{0}.evil.com",
    "x.esxi.example.com evil.com",
    "x.esxi.example.com\t",
    "x.esxi.example.com\r\nhost: evil.com",
    "x.\u{0435}sxi.example.com",
    "x.esxi.example.\u{0441}om",
    "\u{212a}.esxi.example.com",
    "x.esxi.example.com\\evil.com",
    "x_y.esxi.example.com",
    "-x.esxi.example.com",
    "x-.esxi.example.com",
    "123.esxi.example.com.1",
    "localhost",
    "127.0.0.1",
    "::1",
    "[::1]",
    "169.254.169.254",
    "esxi.example.com.evil.com",
    "user:pass@x.esxi.example.com",
];
