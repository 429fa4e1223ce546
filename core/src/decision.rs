//! The admission decision: a plain function of the compiled config, the
//! request facts and the clock. The host gathers the facts and applies the
//! result. One-time use needs shared state, so an admission is applied only
//! through `Admission::commit`, which claims the link in the host's store
//! first: the claim cannot be forgotten.

use crate::audit::Audit;
use crate::claims::{self, Claims};
use crate::code::Code;
use crate::config::Config;
use crate::jws::{self, Scratch, TokenError, MAX_TOKEN_LEN};
use crate::lifetime::{self, Close};
pub use crate::one_time::{OneTime, Outcome};
use crate::replay::SharedStore;
use crate::request::{token_param, HeaderValue, RequestFacts, TokenParam};
use crate::revocation::{Subject, Verdict};
use crate::target::{self, Host, Target};
use std::borrow::Cow;
use std::net::IpAddr;

/// Longest `jti` accepted while one-time links are on.
pub const MAX_JTI_LEN: usize = 128;

/// The `jti` rule while one-time links are on: 1 to `MAX_JTI_LEN` bytes,
/// any characters (it is hashed, never routed or logged unescaped).
pub fn valid_jti(jti: &str) -> bool {
    !jti.is_empty() && jti.len() <= MAX_JTI_LEN
}

#[derive(Debug)]
pub enum Decision<'c> {
    /// Not a console path: forward untouched, except that the client's
    /// cluster header, when it sent one, must go (and the route be picked
    /// again): a client never steers routing.
    PassThrough {
        strip_cluster_header: bool,
    },
    Refuse(Refusal),
    Admit(Admission<'c>),
}

#[derive(Debug)]
pub struct Refusal {
    pub code: Code,
    pub audit: Audit,
}

/// An admitted request, not yet applied: `commit` claims its one-time link
/// and only then hands out the rewrite. The fields are readable (tests, the
/// CLI's `inspect`) but not movable out, so a host cannot apply an
/// admission without claiming it.
#[derive(Debug)]
pub struct Admission<'c> {
    cluster: &'c str,
    path: String,
    authority: String,
    set_authority: bool,
    one_time: Option<OneTime>,
    close: Option<Close>,
    subject: Subject,
    audit: Audit,
}

/// What the host applies to an admitted, committed request.
#[derive(Debug)]
pub struct Rewrite<'c> {
    /// The value of the cluster header (the route's cluster); owned once
    /// the admission has waited for a remote store.
    pub cluster: Cow<'c, str>,
    /// The new `:path`: `ticket_path` with the ticket, no query.
    pub path: String,
    /// The ESXi host, with `:port` unless 443: the new `:authority` when
    /// `set_authority`.
    pub authority: String,
    /// Whether the host sets `:authority` (`upstreams.rewrite_authority`);
    /// when not, the route rewrites it (the Istio kit), so the virtual host
    /// is picked again by the gateway's own name.
    pub set_authority: bool,
    /// When the filter ends the console, and why (`console_exp`,
    /// `max_console_seconds`); `None`: only the connection's own timeouts.
    pub close: Option<Close>,
    /// Whose console it is, as revocations name it (all zero without
    /// `revocation`).
    pub subject: Subject,
    pub audit: Audit,
}

impl<'c> Admission<'c> {
    pub fn cluster(&self) -> &'c str {
        self.cluster
    }

    /// The new `:path`: `ticket_path` with the ticket, no query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The new `:authority`: the ESXi host, with `:port` unless 443.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Set while one-time links are on: what `commit` records.
    pub fn one_time(&self) -> Option<&OneTime> {
        self.one_time.as_ref()
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// When the filter will end this console, if it will.
    pub fn close(&self) -> Option<Close> {
        self.close
    }

    /// Records the one-time link in `store` (if one-time links are on) and
    /// yields the rewrite; a link already recorded, a full bucket or a
    /// store failure is a refusal (`replayed`, `replay_table_full`,
    /// `replay_unavailable`) carrying the same audit.
    pub fn commit<S: SharedStore + ?Sized>(self, store: &S, now: i64) -> Commit<'c> {
        if let Some(one_time) = &self.one_time {
            if let Err(code) = crate::replay::claim(store, one_time, now) {
                return Commit::Refuse(Refusal {
                    code,
                    audit: self.audit,
                });
            }
        }
        Commit::Apply(Rewrite {
            cluster: Cow::Borrowed(self.cluster),
            path: self.path,
            authority: self.authority,
            set_authority: self.set_authority,
            close: self.close,
            subject: self.subject,
            audit: self.audit,
        })
    }

    /// For a remote store (etcd): the admission, owned, to wait for the
    /// store's answer; the rewrite itself when there is nothing to record
    /// (one-time links off).
    pub fn defer(self) -> Deferred<'c> {
        match self.one_time {
            Some(one_time) => Deferred::Wait(Pending {
                cluster: self.cluster.to_string(),
                path: self.path,
                authority: self.authority,
                set_authority: self.set_authority,
                one_time,
                close: self.close,
                subject: self.subject,
                audit: self.audit,
            }),
            None => Deferred::Apply(Rewrite {
                cluster: Cow::Borrowed(self.cluster),
                path: self.path,
                authority: self.authority,
                set_authority: self.set_authority,
                close: self.close,
                subject: self.subject,
                audit: self.audit,
            }),
        }
    }
}

/// What `Admission::defer` leaves the host to do.
#[derive(Debug)]
pub enum Deferred<'c> {
    /// Ask the store, then `Pending::settle` with its outcome.
    Wait(Pending),
    /// Nothing to record: apply.
    Apply(Rewrite<'c>),
}

/// An admission waiting for a remote store to record its link; only the
/// store's outcome turns it into a rewrite.
#[derive(Debug)]
pub struct Pending {
    cluster: String,
    path: String,
    authority: String,
    set_authority: bool,
    one_time: OneTime,
    close: Option<Close>,
    subject: Subject,
    audit: Audit,
}

impl Pending {
    /// What the store is asked to record.
    pub fn one_time(&self) -> &OneTime {
        &self.one_time
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The store's answer decides: recorded now admits; recorded before is
    /// `replayed`; anything else is `replay_unavailable`, never an
    /// admission.
    pub fn settle(self, outcome: Outcome) -> Commit<'static> {
        let code = match outcome {
            Outcome::Recorded => {
                return Commit::Apply(Rewrite {
                    cluster: Cow::Owned(self.cluster),
                    path: self.path,
                    authority: self.authority,
                    set_authority: self.set_authority,
                    close: self.close,
                    subject: self.subject,
                    audit: self.audit,
                })
            }
            Outcome::Replayed => Code::Replayed,
            Outcome::Unavailable(_) => Code::ReplayUnavailable,
        };
        Commit::Refuse(Refusal {
            code,
            audit: self.audit,
        })
    }
}

/// What `Admission::commit` leaves the host to do.
#[derive(Debug)]
pub enum Commit<'c> {
    Apply(Rewrite<'c>),
    Refuse(Refusal),
}

impl Decision<'_> {
    pub fn code(&self) -> Option<Code> {
        match self {
            Decision::PassThrough { .. } => None,
            Decision::Refuse(r) => Some(r.code),
            Decision::Admit(_) => Some(Code::Admitted),
        }
    }
}

fn refuse(code: Code, audit: Audit) -> Decision<'static> {
    Decision::Refuse(Refusal { code, audit })
}

/// Decides a request. `now` is seconds since the epoch.
pub fn decide<'c>(config: &'c Config, req: &RequestFacts<'_>, now: i64) -> Decision<'c> {
    if !is_console_request(config, req) {
        return Decision::PassThrough {
            strip_cluster_header: req.cluster_header_sent,
        };
    }
    let mut audit = Audit::default();
    if let Some(header) = req.malformed {
        audit.malformed_header = Some(header);
        return refuse(Code::MalformedRequest, audit);
    }
    if !config.is_exact_console_path(req.path_only()) {
        audit.malformed_header = Some(":path");
        return refuse(Code::MalformedRequest, audit);
    }
    if !req.is_websocket_upgrade() {
        return refuse(Code::NotWebsocket, audit);
    }
    let token = match token_param(req.path, &config.token_param) {
        TokenParam::Missing => return refuse(Code::MissingToken, audit),
        TokenParam::Repeated => return refuse(Code::MalformedToken, audit),
        TokenParam::One(token) if token.len() > MAX_TOKEN_LEN => {
            return refuse(Code::MalformedToken, audit)
        }
        TokenParam::One(token) => token,
    };

    let mut scratch = Scratch::new();
    let verified = match jws::verify(&config.keys, token, &mut scratch) {
        Ok(v) => v,
        Err(error) => {
            audit.kid = jws::peek_kid(token);
            let code = match error {
                TokenError::Malformed => Code::MalformedToken,
                TokenError::BadSignature => Code::BadSignature,
            };
            return refuse(code, audit);
        }
    };
    audit.kid = verified.key.kid().map(str::to_string);
    let Some(claims) = Claims::parse(verified.payload) else {
        return refuse(Code::MalformedToken, audit);
    };
    // From here the claims are the portal's own words: safe to log.
    audit.record_claims(&claims);

    if let Some(code) = check_lifetime(config, &claims, now) {
        return refuse(code, audit);
    }
    let console_exp = claims.console_exp.map(|d| d.0);
    if lifetime::already_over(console_exp, now, config.clock_skew_seconds) {
        return refuse(Code::ConsoleExpired, audit);
    }
    if let Some(code) = check_audience_and_issuer(config, &claims) {
        return refuse(code, audit);
    }
    let one_time = if config.one_time_links {
        match claims.jti.as_deref() {
            Some(jti) if valid_jti(jti) => Some(OneTime::new(
                verified.key.kid(),
                claims.tenant.as_deref(),
                jti.to_string(),
                claims
                    .exp
                    .map_or(now, |e| e.0)
                    .saturating_add(config.clock_skew_seconds),
            )),
            _ => return refuse(Code::MalformedToken, audit),
        }
    } else {
        None
    };

    let Some(target) = read_target(&claims) else {
        return refuse(Code::BadTarget, audit);
    };
    audit.host = Some(target.host.canonical());
    audit.ticket_sha256 = Some(crate::audit::ticket_hash(&target.ticket));
    let Some(cluster) = config.upstreams.cluster_for(&target.host) else {
        return refuse(Code::HostNotAllowed, audit);
    };
    audit.cluster = Some(cluster.to_string());
    if let Some(scope) = config.scope_of(verified.key) {
        if let Err(part) = scope.check(&target.host, claims.tenant.as_deref()) {
            audit.key_scope = Some(part.as_str());
            return refuse(Code::KeyScope, audit);
        }
    }

    if let Some(code) = check_origin(config, &claims, req.origin) {
        return refuse(code, audit);
    }
    if let Some(code) = check_client(&claims, req) {
        return refuse(code, audit);
    }
    // Last, like the one-time claim: only a link that is otherwise good
    // is judged against the revocations.
    let subject = match &config.revocation {
        None => Subject::default(),
        Some(source) => {
            let subject = Subject::of(
                claims.sub.as_deref(),
                claims.tenant.as_deref(),
                claims.jti.as_deref(),
            );
            let verdict = req
                .revocations
                .map_or(Verdict::Unavailable, |(view, now_ms)| {
                    view.verdict(&subject, now_ms, source.max_stale_ms)
                });
            match verdict {
                Verdict::Clear => subject,
                Verdict::Revoked => return refuse(Code::Revoked, audit),
                Verdict::Unavailable => return refuse(Code::RevocationUnavailable, audit),
            }
        }
    };

    Decision::Admit(Admission {
        cluster,
        path: config.ticket_path.render(&target.ticket),
        authority: target.host.authority(target.port),
        set_authority: config.upstreams.rewrite_authority,
        one_time,
        close: lifetime::close_for(console_exp, config.max_console_seconds, now),
        subject,
        audit,
    })
}

/// Under `path_prefix`. Headers the host could not hand over count as a
/// console request wherever they were going. A `:path` that is not UTF-8 is judged by its UTF-8
/// prefix, and counts as a console request as soon as that starts with
/// `path_prefix`: whatever the filter cannot read under its prefix, it
/// refuses rather than passes on.
fn is_console_request(config: &Config, req: &RequestFacts<'_>) -> bool {
    if req.malformed == Some(crate::request::HEADER_MAP) {
        return true;
    }
    if req.malformed == Some(":path") {
        return req.path.starts_with(config.path_prefix.as_str());
    }
    config.is_console_path(req.path_only())
}

fn check_lifetime(config: &Config, claims: &Claims<'_>, now: i64) -> Option<Code> {
    let skew = config.clock_skew_seconds;
    let Some(exp) = claims.exp.map(|e| e.0) else {
        return Some(Code::MalformedToken);
    };
    if now >= exp.saturating_add(skew) {
        return Some(Code::Expired);
    }
    if let Some(nbf) = claims.nbf {
        if now.saturating_add(skew) < nbf.0 {
            return Some(Code::NotYetValid);
        }
    }
    if let Some(iat) = claims.iat {
        if iat.0 > now.saturating_add(skew) {
            return Some(Code::NotYetValid);
        }
        if exp.saturating_sub(iat.0) > config.max_ttl_seconds {
            return Some(Code::TtlTooLong);
        }
    }
    if exp.saturating_sub(now) > config.max_ttl_seconds.saturating_add(skew) {
        return Some(Code::TtlTooLong);
    }
    None
}

fn check_audience_and_issuer(config: &Config, claims: &Claims<'_>) -> Option<Code> {
    if let Some(wanted) = &config.audience {
        let ok = match claims.aud {
            Some(raw) => match claims::audience_contains(raw, wanted) {
                Some(found) => found,
                None => return Some(Code::MalformedToken),
            },
            None => false,
        };
        if !ok {
            return Some(Code::WrongAudience);
        }
    }
    if let Some(wanted) = &config.issuer {
        if claims.iss.as_deref() != Some(wanted.as_str()) {
            return Some(Code::WrongIssuer);
        }
    }
    None
}

/// Either `url`, or `host` (+ `port`) + `ticket`; never both forms.
fn read_target(claims: &Claims<'_>) -> Option<Target> {
    match (claims.url, claims.host, claims.ticket) {
        (Some(url), None, None) if claims.port.is_none() => {
            target::parse_webmks_url(&claims::raw_str(url)?)
        }
        (None, Some(host), Some(ticket)) => {
            let host: Host = target::parse_host(&claims::raw_str(host)?)?;
            let ticket = claims::raw_str(ticket)?;
            if !target::valid_ticket(&ticket) {
                return None;
            }
            let port = match claims.port {
                Some(raw) => claims::port(raw)?,
                None => 443,
            };
            Some(Target {
                host,
                port,
                ticket: ticket.into_owned(),
            })
        }
        _ => None,
    }
}

fn check_origin(config: &Config, claims: &Claims<'_>, origin: HeaderValue<'_>) -> Option<Code> {
    let claimed = match claims.origin {
        Some(raw) => match claims::raw_str(raw) {
            Some(o) => Some(o),
            None => return Some(Code::MalformedToken),
        },
        None => None,
    };
    if config.allowed_origins.is_none() && claimed.is_none() {
        return None;
    }
    // Checks are on: exactly one Origin header is required.
    let HeaderValue::One(origin) = origin else {
        return Some(Code::OriginNotAllowed);
    };
    if let Some(allowed) = &config.allowed_origins {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return Some(Code::OriginNotAllowed);
        }
    }
    if let Some(claimed) = claimed {
        if !claimed.eq_ignore_ascii_case(origin) {
            return Some(Code::OriginNotAllowed);
        }
    }
    None
}

fn check_client(claims: &Claims<'_>, req: &RequestFacts<'_>) -> Option<Code> {
    let raw = claims.ip?;
    let Some(network) = claims::raw_str(raw).and_then(|s| crate::cidr::Cidr::parse(&s)) else {
        return Some(Code::MalformedToken);
    };
    let address = match req.client {
        Some(text) => client_ip(text),
        None => req.client_lookup.and_then(|lookup| lookup.client_ip()),
    };
    let Some(address) = address else {
        return Some(Code::ClientNotAllowed);
    };
    if network.contains(address) {
        None
    } else {
        Some(Code::ClientNotAllowed)
    }
}

/// The IP of `source.address` (`ip:port`, `[v6]:port`, or a bare IP).
pub fn client_ip(text: &str) -> Option<IpAddr> {
    if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    text.parse::<IpAddr>().ok()
}

#[cfg(test)]
mod tests;
