//! `mksgate revoke`: write, list and lift revocations in etcd, in the key
//! format the gateways read (`mksgate_core::revocation`).

use crate::etcd_http::{Etcd, TlsFiles};
use crate::util::{fail, one_line, Outcome};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mksgate_core::revocation::{self, Kind};
use serde_json::{json, Value};
use std::process::ExitCode;

/// The default lifetime of a revocation: the shipped `max_ttl_seconds`
/// (300) plus the shipped 12 h console limit, so it outlives every link and
/// console it can name.
pub const DEFAULT_TTL_SECONDS: i64 = 300 + 12 * 3600;
const MAX_REASON_LEN: usize = 200;

/// End live consoles and refuse new links of a `sub`, `tenant` or `jti`,
/// across every gateway that reads this etcd (`revocation` in the plugin
/// configuration); list or lift revocations.
///
/// Exit status: 0 done, 1 error (etcd could not be reached or refused),
/// 2 bad usage. Nothing printed names the revoked value, only its hash.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("who").args(["sub", "tenant", "jti"])))]
pub struct Args {
    /// etcd's client URLs, comma-separated (https://host:port).
    #[arg(long, required = true)]
    etcd: String,
    #[arg(long)]
    cacert: Option<String>,
    /// A client certificate for etcd (PEM), with --key.
    #[arg(long)]
    cert: Option<String>,
    #[arg(long)]
    key: Option<String>,
    /// The name etcd's certificate carries (default: the URL's host).
    #[arg(long)]
    server_name: Option<String>,
    /// etcd user, with access control on (its password from --password-env).
    #[arg(long, requires = "password_env")]
    user: Option<String>,
    /// The environment variable that holds the user's password.
    #[arg(long, requires = "user")]
    password_env: Option<String>,
    /// `revocation.etcd.key_prefix`.
    #[arg(long, default_value = revocation::DEFAULT_KEY_PREFIX)]
    key_prefix: String,
    #[arg(long)]
    sub: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    jti: Option<String>,
    /// How long the revocation stands, in seconds.
    #[arg(long, default_value_t = DEFAULT_TTL_SECONDS, value_parser = clap::value_parser!(i64).range(1..=31_536_000))]
    ttl: i64,
    /// Free text kept with the revocation (shown by --list).
    #[arg(long)]
    reason: Option<String>,
    /// Show the active revocations.
    #[arg(long, conflicts_with_all = ["delete", "who"])]
    list: bool,
    /// Lift the revocation of --sub, --tenant or --jti.
    #[arg(long, requires = "who")]
    delete: bool,
}

pub fn run(args: &Args) -> Outcome<ExitCode> {
    if !mksgate_core::etcd::valid_key_prefix(&args.key_prefix) {
        return Err(usage(
            "--key-prefix must be 1 to 128 printable ASCII characters starting with /",
        ));
    }
    let mut etcd = Etcd::new(
        &args.etcd,
        &TlsFiles {
            cacert: args.cacert.as_deref(),
            cert: args.cert.as_deref(),
            key: args.key.as_deref(),
            server_name: args.server_name.as_deref(),
        },
    )?;
    if let (Some(user), Some(var)) = (&args.user, &args.password_env) {
        let password =
            std::env::var(var).map_err(|_| usage(&format!("--password-env: {var} is not set")))?;
        etcd.authenticate(user, &password)?;
    }
    if args.list {
        return list(&etcd, &args.key_prefix);
    }
    let Some((kind, value)) = who(args) else {
        return Err(usage("give one of --sub, --tenant, --jti (or --list)"));
    };
    let key = revocation::key(&args.key_prefix, kind, value);
    let shown = key.strip_prefix(&args.key_prefix).unwrap_or(&key);
    if args.delete {
        let answer = etcd.post(
            "/v3/kv/deleterange",
            &json!({"key": STANDARD.encode(&key)}).to_string(),
        )?;
        if int(answer.get("deleted")) == 0 {
            return Err(fail(format!("no revocation {shown} to lift")));
        }
        crate::outln!("lifted {shown}");
        return Ok(ExitCode::SUCCESS);
    }
    let reason = args.reason.as_deref().map(one_line).unwrap_or_default();
    if reason.len() > MAX_REASON_LEN {
        return Err(usage(&format!(
            "--reason is longer than {MAX_REASON_LEN} bytes"
        )));
    }
    let until = crate::util::now(None)? + args.ttl;
    let lease = etcd.post(
        "/v3/lease/grant",
        &json!({"TTL": args.ttl.to_string()}).to_string(),
    )?;
    let lease_id = lease
        .get("ID")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("etcd granted no lease"))?
        .to_string();
    let record = json!({"reason": reason, "until": until}).to_string();
    etcd.post(
        "/v3/kv/put",
        &json!({"key": STANDARD.encode(&key), "value": STANDARD.encode(record), "lease": lease_id})
            .to_string(),
    )?;
    crate::outln!("revoked {shown} until {until} (ttl {} s)", args.ttl);
    Ok(ExitCode::SUCCESS)
}

fn who(args: &Args) -> Option<(Kind, &str)> {
    [
        (Kind::Sub, &args.sub),
        (Kind::Tenant, &args.tenant),
        (Kind::Jti, &args.jti),
    ]
    .into_iter()
    .find_map(|(kind, value)| value.as_deref().map(|v| (kind, v)))
}

fn list(etcd: &Etcd, prefix: &str) -> Outcome<ExitCode> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last = last.saturating_add(1);
    }
    let answer = etcd.post(
        "/v3/kv/range",
        &json!({"key": STANDARD.encode(prefix), "range_end": STANDARD.encode(&end)}).to_string(),
    )?;
    let kvs = answer
        .get("kvs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for kv in &kvs {
        let decode = |field: &str| {
            kv.get(field)
                .and_then(Value::as_str)
                .and_then(|s| STANDARD.decode(s).ok())
                .unwrap_or_default()
        };
        let key = String::from_utf8_lossy(&decode("key")).into_owned();
        let record: Value = serde_json::from_slice(&decode("value")).unwrap_or(Value::Null);
        let reason = record.get("reason").and_then(Value::as_str).unwrap_or("");
        let until = record.get("until").and_then(Value::as_i64).unwrap_or(0);
        let shown = key.strip_prefix(prefix).unwrap_or(&key);
        crate::outln!("{shown} until {until} {}", one_line(reason));
    }
    crate::outln!("{} revocation(s)", kvs.len());
    Ok(ExitCode::SUCCESS)
}

fn int(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn usage(message: &str) -> crate::util::Failure {
    crate::util::Failure {
        status: 2,
        message: message.to_string(),
    }
}
