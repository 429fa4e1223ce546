//! `mksgate inspect`: decode a link, check its signature, and show the
//! filter's exact decision.

use crate::keys::{make_key, AlgArg, KeySource};
use crate::load::{self, EnvMode};
use crate::util::{fail, now, Outcome, EXIT_REFUSED};
use mksgate_core::audit::ticket_hash;
use mksgate_core::config::DEFAULT_TOKEN_PARAM;
use mksgate_core::jws::{self, decode_secret, Alg, KeySet, Scratch, TokenError};
use mksgate_core::request::{token_param, TokenParam};
use mksgate_core::{decide, log_line, Decision, HeaderValue, RequestFacts};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

/// Decode a console link or token, check its signature, and show the
/// decision the filter would take.
///
/// Without a key or config it only decodes (nothing is verified). With a
/// key it says whether the signature verifies. With --config it runs the
/// filter's own decision for a WebSocket upgrade GET of the link's path.
/// Exit status: 0 admitted (or verified / decoded), 3 refused.
/// The ticket is shown only as a short SHA-256 unless --show-ticket.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The link (wss://gateway/console?token=...), its path, or the token.
    link: String,
    #[command(flatten)]
    key: KeySource,
    /// HMAC algorithm of the key [default: the token header's alg].
    #[arg(long, value_enum)]
    alg: Option<AlgArg>,
    /// Plugin configuration: plugin JSON, Envoy YAML or Istio WasmPlugin
    /// (as for check-config); secret_env values are read from this
    /// environment.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Which configuration in FILE, counting from 0 in check-config's order,
    /// when it holds several.
    #[arg(long, value_name = "N", requires = "config")]
    config_index: Option<usize>,
    /// The time, in seconds since the epoch [default: the clock].
    #[arg(long, value_name = "EPOCH", allow_negative_numbers = true)]
    now: Option<i64>,
    /// The client's address, as Envoy's source.address (1.2.3.4:5678).
    #[arg(long, value_name = "IP:PORT")]
    client: Option<String>,
    /// The request's Origin header.
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
    /// Query parameter holding the token when there is no --config.
    #[arg(long, value_name = "NAME")]
    token_param: Option<String>,
    /// Show the WebMKS ticket instead of its SHA-256 prefix.
    #[arg(long)]
    show_ticket: bool,
}

/// What the input named: a path with a query, or a bare token.
enum Input {
    Path(String),
    Token(String),
}

fn parse_input(text: &str) -> Input {
    let text = text.trim();
    if let Some(i) = text.find("://") {
        let rest = &text[i + 3..];
        let start = rest.find(['/', '?']).unwrap_or(rest.len());
        let path = &rest[start..];
        return Input::Path(if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        });
    }
    if text.starts_with('/') {
        return Input::Path(text.to_string());
    }
    Input::Token(text.to_string())
}

pub fn run(args: &Args) -> Outcome<ExitCode> {
    let now = now(args.now)?;
    let config = match &args.config {
        Some(path) => Some(load::one_config(path, args.config_index, EnvMode::Strict)?),
        None => None,
    };
    let param = match (&config, &args.token_param) {
        (_, Some(p)) => p.clone(),
        (Some(c), None) => c.token_param.clone(),
        (None, None) => DEFAULT_TOKEN_PARAM.to_string(),
    };
    let (path, token) = match parse_input(&args.link) {
        Input::Path(path) => {
            let token = match token_param(&path, &param) {
                TokenParam::One(t) => Some(t.to_string()),
                TokenParam::Missing | TokenParam::Repeated => None,
            };
            (Some(path), token)
        }
        Input::Token(token) => (None, Some(token)),
    };
    if token.is_none() && config.is_none() {
        return Err(fail(format!(
            "no single '{param}' query parameter in the link (use --token-param, or pass the token itself)"
        )));
    }

    let mut refused = false;
    if let Some(token) = &token {
        let (header, claims) = show_token(token, args.show_ticket);
        if header.is_none() && config.is_none() && !args.key.given() {
            // The filter would refuse it (malformed_token): exit 3, as for
            // any other link it refuses, with the reason on stderr.
            eprintln!("error: not a JWS: expected three base64url parts of JSON (the filter refuses it: malformed_token)");
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
        if let Some(claims) = &claims {
            print_times(claims, now);
        }
        if args.key.given() {
            let alg = match (args.alg, header.as_ref().and_then(|h| h.get("alg"))) {
                (Some(a), _) => Some(a.alg()),
                (None, Some(Value::String(name))) => Alg::parse(name),
                (None, _) => None,
            };
            let verified = match alg {
                Some(alg) => check_signature(&args.key, alg, token)?,
                None => {
                    crate::outln!(
                        "signature: the header's alg is not HS256, HS384 or HS512 (bad_signature)"
                    );
                    false
                }
            };
            refused |= !verified;
        }
    }

    if let Some(config) = &config {
        let path = match (&path, &token) {
            (Some(p), _) => p.clone(),
            (None, Some(t)) => format!("{}?{}={t}", config.path_prefix, config.token_param),
            (None, None) => return Err(fail("nothing to decide on")),
        };
        let facts = RequestFacts {
            method: "GET",
            path: &path,
            upgrade: HeaderValue::One("websocket"),
            connection_upgrade: true,
            origin: args
                .origin
                .as_deref()
                .map_or(HeaderValue::Absent, HeaderValue::One),
            client: args.client.as_deref(),
            ..Default::default()
        };
        refused |= !print_decision(config, &facts, now, args);
    }
    Ok(if refused {
        ExitCode::from(EXIT_REFUSED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Decodes one base64url JSON segment, if it is one.
fn segment(text: &str) -> Option<Value> {
    let bytes = decode_secret(text)?;
    serde_json::from_slice(&bytes).ok()
}

/// Prints header and claims (unverified) and returns them.
fn show_token(token: &str, show_ticket: bool) -> (Option<Value>, Option<Value>) {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        crate::outln!("token: not three dot-separated parts (malformed_token)");
        return (None, None);
    };
    let header = segment(h);
    let claims = segment(p);
    match &header {
        Some(v) => crate::outln!("header (unverified):\n{v:#}"),
        None => crate::outln!("header: not base64url JSON (malformed_token)"),
    }
    match &claims {
        Some(v) => {
            let shown = if show_ticket {
                v.clone()
            } else {
                mask_ticket(v)
            };
            crate::outln!("claims (unverified):\n{shown:#}");
        }
        None => crate::outln!("claims: not base64url JSON (malformed_token)"),
    }
    (header, claims)
}

fn masked(ticket: &str) -> String {
    format!("<ticket sha256:{}>", ticket_hash(ticket))
}

/// The claims with the ticket (in `ticket` or in `url`) replaced by its hash.
fn mask_ticket(claims: &Value) -> Value {
    let mut out = claims.clone();
    if let Some(map) = out.as_object_mut() {
        if let Some(Value::String(t)) = map.get_mut("ticket") {
            *t = masked(t);
        }
        if let Some(Value::String(url)) = map.get_mut("url") {
            if let Some(i) = url.find("/ticket/") {
                let ticket = url.split_off(i + "/ticket/".len());
                url.push_str(&masked(&ticket));
            }
        }
    }
    out
}

fn print_times(claims: &Value, now: i64) {
    let get = |name: &str| claims.get(name).and_then(Value::as_i64);
    let rel = |t: i64| {
        let d = t.saturating_sub(now);
        if d >= 0 {
            format!("{t} (in {d} s)")
        } else {
            format!("{t} ({} s ago)", d.unsigned_abs())
        }
    };
    let mut parts = vec![format!("now {now}")];
    for name in ["iat", "nbf", "exp"] {
        if let Some(t) = get(name) {
            parts.push(format!("{name} {}", rel(t)));
        }
    }
    crate::outln!("times: {}", parts.join(", "));
}

fn check_signature(source: &KeySource, alg: Alg, token: &str) -> Outcome<bool> {
    let Some((secret, from)) = source.secret()? else {
        return Ok(true);
    };
    let key = make_key(None, alg, &secret, &from)?;
    let keys = KeySet::new(vec![key]);
    let mut scratch = Scratch::new();
    Ok(match jws::verify(&keys, token, &mut scratch) {
        Ok(_) => {
            crate::outln!(
                "signature: verifies with the key from {from} ({})",
                alg.name()
            );
            true
        }
        Err(TokenError::BadSignature) => {
            crate::outln!(
                "signature: does NOT verify with the key from {from} ({}) (bad_signature)",
                alg.name()
            );
            false
        }
        Err(TokenError::Malformed) => {
            crate::outln!("signature: not checked: the token is malformed (malformed_token)");
            false
        }
    })
}

/// Prints the decision; true when admitted.
fn print_decision(
    config: &mksgate_core::Config,
    facts: &RequestFacts<'_>,
    now: i64,
    args: &Args,
) -> bool {
    let show_path = |p: &str| -> String {
        if args.show_ticket {
            return p.to_string();
        }
        // The rewritten path holds the ticket: show its hash instead.
        match &config.ticket_path.render("\u{0}").split_once('\u{0}') {
            Some((before, after)) => match p
                .strip_prefix(before)
                .and_then(|rest| rest.strip_suffix(after))
            {
                Some(ticket) => format!("{before}{}{after}", masked(ticket)),
                None => "<masked>".to_string(),
            },
            None => "<masked>".to_string(),
        }
    };
    match decide(config, facts, now) {
        Decision::PassThrough { .. } => {
            crate::outln!(
                "decision: pass_through: the path is not under path_prefix {} (the filter does not handle it; the route table decides)",
                config.path_prefix
            );
            false
        }
        Decision::Refuse(refusal) => {
            crate::outln!(
                "decision: refused: {} (HTTP {})",
                refusal.code,
                refusal.code.status()
            );
            if refusal.code == mksgate_core::Code::ClientNotAllowed && facts.client.is_none() {
                crate::outln!(
                    "  note: the link is bound to a client address; pass --client IP:PORT"
                );
            }
            if refusal.code == mksgate_core::Code::OriginNotAllowed && args.origin.is_none() {
                crate::outln!("  note: an Origin is checked; pass --origin");
            }
            crate::outln!(
                "  log: {}",
                log_line(refusal.code, &refusal.audit, facts.client)
            );
            false
        }
        Decision::Admit(admission) => {
            crate::outln!(
                "decision: admitted (the filter forwards the upgrade; HTTP 101 comes from ESXi)"
            );
            crate::outln!("  cluster: {}", admission.cluster());
            crate::outln!("  path: {}", show_path(admission.path()));
            crate::outln!("  authority: {}", admission.authority());
            if let Some(one_time) = admission.one_time() {
                crate::outln!(
                    "  one_time: jti {} is recorded on first use and refused (replayed) until {}",
                    one_time.jti,
                    one_time.remember_until
                );
            }
            crate::outln!(
                "  log: {}",
                log_line(
                    mksgate_core::Code::Admitted,
                    admission.audit(),
                    facts.client
                )
            );
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs() {
        match parse_input("wss://gw.example:8443/console?token=a.b.c") {
            Input::Path(p) => assert_eq!(p, "/console?token=a.b.c"),
            Input::Token(_) => panic!("path expected"),
        }
        match parse_input("https://gw?token=x") {
            Input::Path(p) => assert_eq!(p, "/?token=x"),
            Input::Token(_) => panic!("path expected"),
        }
        match parse_input(" a.b.c\n") {
            Input::Token(t) => assert_eq!(t, "a.b.c"),
            Input::Path(_) => panic!("token expected"),
        }
    }

    #[test]
    fn masking() {
        let v =
            serde_json::json!({"ticket": "secret1", "url": "wss://h/ticket/secret2", "host": "h"});
        let m = mask_ticket(&v).to_string();
        assert!(!m.contains("secret1") && !m.contains("secret2"), "{m}");
        assert!(m.contains("wss://h/ticket/<ticket sha256:"));
    }
}
