//! `mksgate sign`: mint a console link with the filter's own codec.

use crate::keys::{check_kid, make_key, AlgArg, KeySource};
use crate::util::{fail, now, random_jti, Outcome};
use mksgate_core::cidr::Cidr;
use mksgate_core::config::{self, valid_origin, DEFAULT_PATH_PREFIX, DEFAULT_TOKEN_PARAM};
use mksgate_core::decision::{self, MAX_JTI_LEN};
use mksgate_core::jws;
use mksgate_core::target::{self, Host};
use serde_json::{json, Map, Value};
use std::process::ExitCode;

/// Mint a signed console link for one WebMKS ticket.
///
/// The target is `--url` (the WebMKS URL exactly as vSphere's
/// AcquireTicket returns it) or `--host` and `--ticket` (and `--port`).
/// Everything is checked with the filter's own validators before signing,
/// and the token is signed by the filter's own JWS codec.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// ESXi host (DNS name or IP literal), with --ticket.
    #[arg(long, value_name = "H", requires = "ticket", conflicts_with = "url")]
    host: Option<String>,
    /// WebMKS ticket, with --host.
    #[arg(long, value_name = "T", requires = "host", conflicts_with = "url")]
    ticket: Option<String>,
    /// ESXi port, with --host [default: 443].
    #[arg(long, value_name = "P", requires = "host", conflicts_with = "url")]
    port: Option<String>,
    /// The WebMKS URL: wss://host[:port]/ticket/<ticket>.
    #[arg(long, value_name = "wss://...")]
    url: Option<String>,

    /// The gateway users connect to: console.example.com,
    /// console.example.com:8443 or https://console.example.com.
    #[arg(long, value_name = "HOST[:PORT]")]
    gateway: String,
    /// The filter's path_prefix.
    #[arg(long, default_value = DEFAULT_PATH_PREFIX)]
    path_prefix: String,
    /// The filter's token_param.
    #[arg(long, default_value = DEFAULT_TOKEN_PARAM)]
    token_param: String,

    #[command(flatten)]
    key: KeySource,
    /// HMAC algorithm of the key.
    #[arg(long, value_enum, default_value = "HS256")]
    alg: AlgArg,
    /// Key id for the token header (needed when the filter has several keys).
    #[arg(long, value_name = "K")]
    kid: Option<String>,

    /// Lifetime in seconds: exp = now + ttl (the filter refuses more than
    /// its max_ttl_seconds, 300 by default).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    ttl: i64,
    /// Audience claim (the filter's `audience`, if it sets one).
    #[arg(long)]
    aud: Option<String>,
    /// Issuer claim (the filter's `issuer`, if it sets one).
    #[arg(long)]
    iss: Option<String>,
    /// Subject claim: who the link is for (logged by the filter).
    #[arg(long)]
    sub: Option<String>,
    /// Tenant claim (logged by the filter).
    #[arg(long)]
    tenant: Option<String>,
    /// Bind the link to a client address or CIDR block.
    #[arg(long, value_name = "ADDRESS[/PREFIX]")]
    ip: Option<String>,
    /// Bind the link to the page's Origin, like https://portal.example.com.
    #[arg(long)]
    origin: Option<String>,
    /// Not valid before now + this many seconds (sets nbf).
    #[arg(long, value_name = "SECONDS")]
    nbf_in: Option<i64>,
    /// Link id for one-time use [default: 128 random bits].
    #[arg(long)]
    jti: Option<String>,
    /// The time, in seconds since the epoch [default: the clock].
    #[arg(long, value_name = "EPOCH", allow_negative_numbers = true)]
    now: Option<i64>,
    /// Print {link, token, claims, header} as JSON.
    #[arg(long)]
    json: bool,
    /// The gateway's plugin configuration (JSON, Envoy or Istio YAML, as
    /// check-config reads): when the key --kid selects there has a scope,
    /// a link outside it is refused here, by the filter's own rule.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

pub fn run(args: &Args) -> Outcome<ExitCode> {
    // Every input is checked before the key is read or anything is signed.
    let mut claims = Map::new();
    let host = target_claims(args, &mut claims)?;
    let gateway = parse_gateway(&args.gateway)?;
    check_link_shape(&args.path_prefix, &args.token_param)?;
    if !(1..=mksgate_core::config::MAX_MAX_TTL_SECONDS).contains(&args.ttl) {
        return Err(fail(format!(
            "--ttl must be 1 to {} seconds",
            mksgate_core::config::MAX_MAX_TTL_SECONDS
        )));
    }
    if args.ttl > mksgate_core::config::DEFAULT_MAX_TTL_SECONDS {
        eprintln!(
            "warning: --ttl {} is above the filter's default max_ttl_seconds ({}); the link is refused unless the config raises it",
            args.ttl,
            mksgate_core::config::DEFAULT_MAX_TTL_SECONDS
        );
    }
    let now = now(args.now)?;
    let exp = now
        .checked_add(args.ttl)
        .ok_or_else(|| fail("--now + --ttl overflows"))?;
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(exp));
    if let Some(delay) = args.nbf_in {
        if !(0..=args.ttl).contains(&delay) {
            return Err(fail("--nbf-in must be from 0 to --ttl seconds"));
        }
        claims.insert("nbf".into(), json!(now + delay));
    }
    for (name, value) in [
        ("aud", &args.aud),
        ("iss", &args.iss),
        ("sub", &args.sub),
        ("tenant", &args.tenant),
    ] {
        if let Some(value) = value {
            if value.is_empty() {
                return Err(fail(format!("--{name} must not be empty (leave it out)")));
            }
            claims.insert(name.into(), json!(value));
        }
    }
    if let Some(ip) = &args.ip {
        if Cidr::parse(ip).is_none() {
            return Err(fail(
                "--ip must be an IP address or a CIDR block with zero host bits (like 10.1.0.0/16)",
            ));
        }
        claims.insert("ip".into(), json!(ip));
    }
    if let Some(origin) = &args.origin {
        if !valid_origin(origin) {
            return Err(fail(
                "--origin must be an origin like https://portal.example.com (scheme://host[:port], no path)",
            ));
        }
        claims.insert("origin".into(), json!(origin));
    }
    let jti = match &args.jti {
        Some(jti) => {
            // The filter's own rule: what it would refuse is refused here.
            if !decision::valid_jti(jti) {
                return Err(fail(format!("--jti must be 1 to {MAX_JTI_LEN} bytes")));
            }
            jti.clone()
        }
        None => random_jti()?,
    };
    claims.insert("jti".into(), json!(jti));
    if let Some(kid) = &args.kid {
        check_kid(kid)?;
    }
    if let Some(path) = &args.config {
        check_scope(path, args.kid.as_deref(), &host, &claims)?;
    }

    let Some((secret, from)) = args.key.secret()? else {
        return Err(fail(
            "sign needs a key: --key-env NAME, --key-file PATH or --key B64",
        ));
    };
    let key = make_key(args.kid.clone(), args.alg.alg(), &secret, &from)?;
    let claims = Value::Object(claims);
    let claims_json = claims.to_string();
    let token = jws::sign(&key, claims_json.as_bytes());
    let link = format!(
        "wss://{gateway}{}?{}={token}",
        args.path_prefix, args.token_param
    );

    if args.json {
        let header = jws::header_json(&key);
        let out = json!({"link": link, "token": token, "claims": claims, "header": header});
        crate::outln!("{out:#}");
    } else {
        crate::outln!("{link}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses a link that the gateway would refuse as `key_scope`: the key
/// `kid` selects in the configuration at `path`, and core's scope rule.
fn check_scope(
    path: &std::path::Path,
    kid: Option<&str>,
    host: &Host,
    claims: &Map<String, Value>,
) -> Outcome<()> {
    let config = crate::load::one_config(path, None, crate::load::EnvMode::ShapeOnly)?;
    let Some(key) = config.keys.select(kid) else {
        return Err(fail(format!(
            "--config {}: no key there is selected by --kid {}",
            path.display(),
            kid.unwrap_or("(none)")
        )));
    };
    let Some(scope) = config.scope_of(key) else {
        return Ok(());
    };
    let tenant = claims.get("tenant").and_then(Value::as_str);
    scope.check(host, tenant).map_err(|part| {
        let what = match part {
            mksgate_core::scope::ScopePart::Host => format!("host {}", host.canonical()),
            mksgate_core::scope::ScopePart::Tenant => match tenant {
                Some(t) => format!("tenant {t}"),
                None => "a link without --tenant".to_string(),
            },
        };
        fail(format!(
            "{what} is outside the scope of key {} in {} (the gateway would refuse it: key_scope)",
            key.kid().unwrap_or("(no kid)"),
            path.display()
        ))
    })
}

/// The target claims; returns the target's host, as the filter parses it.
fn target_claims(args: &Args, claims: &mut Map<String, Value>) -> Outcome<Host> {
    if let Some(url) = &args.url {
        let Some(target) = target::parse_webmks_url(url) else {
            return Err(fail(
                "--url must be a WebMKS URL: wss://host[:port]/ticket/<ticket> (no userinfo, query, fragment or escapes)",
            ));
        };
        claims.insert("url".into(), json!(url));
        return Ok(target.host);
    }
    let (Some(host), Some(ticket)) = (&args.host, &args.ticket) else {
        return Err(fail(
            "sign needs a target: --url wss://host/ticket/T, or --host H --ticket T",
        ));
    };
    let Some(parsed) = target::parse_host(host) else {
        return Err(fail(
            "--host must be a DNS name or an IP literal (no port, no trailing dot, no _)",
        ));
    };
    if !target::valid_ticket(ticket) {
        return Err(fail(format!(
            "--ticket must be 1 to {} of A-Z a-z 0-9 . _ ~ - (and not . or ..)",
            target::MAX_TICKET_LEN
        )));
    }
    claims.insert("host".into(), json!(parsed.canonical()));
    claims.insert("ticket".into(), json!(ticket));
    if let Some(port) = &args.port {
        let Some(port) = target::parse_port(port) else {
            return Err(fail("--port must be 1 to 65535"));
        };
        claims.insert("port".into(), json!(port));
    }
    Ok(parsed)
}

/// `host[:port]`, optionally after `https://` or `wss://`; returns the
/// authority for the link.
pub fn parse_gateway(text: &str) -> Outcome<String> {
    let bad = || {
        fail("--gateway must be host[:port] or https://host[:port], like console.example.com:8443")
    };
    let lower = text.to_ascii_lowercase();
    let rest = if let Some(i) = lower.find("://") {
        let scheme = &lower[..i];
        if scheme != "https" && scheme != "wss" {
            return Err(fail(
                "--gateway: the console is served over TLS; use https://host or a bare host",
            ));
        }
        &text[i + 3..]
    } else {
        text
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(bad());
    }
    if !rest.starts_with('[') && rest.matches(':').count() > 1 {
        return Err(fail(
            "--gateway: put an IPv6 literal in brackets, like [2001:db8::1]:8443",
        ));
    }
    let (host_text, port) = target::split_authority(rest).ok_or_else(bad)?;
    let host: Host = target::parse_host(host_text).ok_or_else(bad)?;
    Ok(host.authority(port))
}

/// Checks `path_prefix` and `token_param` with the filter's own rules, so
/// a link is never built that the filter would not route.
pub fn check_link_shape(path_prefix: &str, token_param: &str) -> Outcome<()> {
    config::check_path_prefix(path_prefix)
        .and_then(|()| config::check_token_param(token_param))
        .map_err(|e| {
            let flag = e.field.replace('_', "-");
            fail(format!("--{flag} {}", e.reason))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways() {
        assert_eq!(
            parse_gateway("console.example.com").unwrap(),
            "console.example.com"
        );
        assert_eq!(
            parse_gateway("Console.Example.com:8443").unwrap(),
            "console.example.com:8443"
        );
        assert_eq!(
            parse_gateway("https://console.example.com:443/").unwrap(),
            "console.example.com"
        );
        assert_eq!(parse_gateway("[::1]:8443").unwrap(), "[::1]:8443");
        for bad in [
            "",
            "http://console.example.com",
            "console.example.com/console",
            "console.example.com:0",
            "user@console",
            "::1",
            "console_x.lab",
        ] {
            assert!(parse_gateway(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn link_shapes() {
        assert!(check_link_shape("/console", "token").is_ok());
        assert!(check_link_shape("/console/", "token").is_err());
        assert!(check_link_shape("/console", "to ken").is_err());
    }
}
