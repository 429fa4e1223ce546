//! Shared fixture for the end-to-end tests: the shipped
//! `envoy/static-clusters.yaml` in real Envoy with the shipped module, in
//! front of two ESXi stand-ins.
//!
//! Use it from a test file with `mod common;`. The API below is stable:
//! other test files rely on it; add to it rather than change it.
//!
//! ```ignore
//! let gw = Gateway::start().await?;                 // Envoy + 2 stand-ins
//! let link = gw.new_link(A, json!({}));              // fresh ticket on A, signed
//! let mut s = gw.expect_admitted(&link.path, &[]).await;   // 101
//! gw.expect_refused(&link.path, &[], 403, "replayed").await; // one-line check
//! gw.expect_refused(&gw.link(json!({"exp": now() - 100})), &[], 403, "expired").await;
//! ```
//!
//! What [`Gateway::start_with`] sets up:
//!
//! * stand-in `vesxi01.sec.lab` on 127.0.0.2 ([`A`]) and `vesxi02.sec.lab`
//!   on 127.0.0.3 ([`B`]), self-signed, pinned in Envoy by their SHA-256;
//! * a gateway certificate for `console.example.com` ([`GATEWAY_NAME`])
//!   issued by a throw-away [`TestCa`] that the client trusts;
//! * a fresh 64-byte HMAC secret in `MKSGATE_KEY_2026_11` for Envoy
//!   (64 bytes so a test can also build HS384/HS512 keys from it);
//! * Envoy from `shipped::static_clusters`, optionally with shortened idle
//!   timers ([`GatewayOpts::idle_timeout`]) or another plugin JSON
//!   ([`GatewayOpts::plugin`]).
//!
//! The client side ([`Gateway::opts`]) connects to the listener over TLS with
//! SNI and `Host` `console.example.com`, trusts only the test CA, sends
//! `Origin: https://portal.example.com` and offers the wmks subprotocols.
//!
//! Every token and ticket the fixture hands out is remembered, so
//! [`Gateway::assert_no_leaks`] can check that none of them (and not the
//! secret) ever appears in Envoy's log or access log.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mksgate_core::jws::{self, Alg, Key};
use mksgate_core::Code;
use mksgate_host_tests::access_log;
use mksgate_host_tests::client::{connect, ClientOpts, Outcome, Session};
use mksgate_host_tests::clients;
use mksgate_host_tests::envoy::{replace_exact, Envoy, EnvoyOpts};
use mksgate_host_tests::io::HttpResponse;
use mksgate_host_tests::loopback;
use mksgate_host_tests::shipped;
use mksgate_host_tests::standin::{RecordedRequest, Standin, StandinConfig};
use mksgate_host_tests::tls::{CertKey, TestCa, Trust};
use mksgate_testkit::link;
use serde_json::{json, Value};

/// ESXi host A (stand-in on 127.0.0.2, cluster `esxi_vesxi01`).
pub const A: &str = "vesxi01.sec.lab";
/// ESXi host B (stand-in on 127.0.0.3, cluster `esxi_vesxi02`).
pub const B: &str = "vesxi02.sec.lab";
/// The gateway's name (certificate, SNI, `Host`).
pub const GATEWAY_NAME: &str = "console.example.com";
/// A short bound for single steps.
pub const T: Duration = Duration::from_secs(5);

mod observe;
mod plugin_json;
pub use plugin_json::*;

pub use mksgate_host_tests::bounded;

#[allow(unused_imports)] // not every test file uses both
pub use mksgate_testkit::link::{merge, now, random_bytes};

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// Raises this process's open-file soft limit to at least `want` (the
/// testkit's); children started afterwards (Envoy) inherit it.
pub fn raise_fd_limit(want: u64) -> u64 {
    mksgate_testkit::process::raise_nofile(want)
}

/// The `tenant` claim of the test links.
pub const TENANT: &str = "e2e-tenant";

/// Options for [`Gateway::start_with`].
#[derive(Clone, Debug)]
pub struct GatewayOpts {
    /// Envoy worker threads (`--concurrency`). Default 1.
    pub concurrency: u32,
    /// Replace the shipped 3600 s idle timers with this (e.g. `"3s"`), via
    /// `shipped::with_idle_timeout` (which fails unless the shipped values
    /// are the long ones).
    pub idle_timeout: Option<String>,
    /// Stand-in push frames: `Some((interval, payload bytes))`, or `None`
    /// for an idle console. Default 50 ms, 64 bytes.
    pub push: Option<(Duration, usize)>,
    /// Replace the shipped plugin JSON with this one (see [`plugin_json`]).
    pub plugin: Option<Value>,
    /// Envoy `--component-log-level`, e.g. `wasm:debug`.
    pub component_log_level: Option<String>,
    /// More command-line arguments for Envoy (e.g. `--drain-time-s 2`).
    pub extra_args: Vec<String>,
    /// Hot restart on, as `(base id, epoch)` (see `EnvoyOpts::hot_restart`).
    pub hot_restart: Option<(u32, u32)>,
}

impl Default for GatewayOpts {
    fn default() -> Self {
        GatewayOpts {
            concurrency: 1,
            idle_timeout: None,
            push: Some((Duration::from_millis(50), 64)),
            plugin: None,
            component_log_level: None,
            extra_args: Vec::new(),
            hot_restart: None,
        }
    }
}

/// A link the fixture made.
#[derive(Clone, Debug)]
pub struct Link {
    /// Path and query to request: `/console?token=<token>`.
    pub path: String,
    /// The signed token.
    pub token: String,
    /// The ticket in it (issued by the stand-in of `host`).
    pub ticket: String,
    /// The host claim's stand-in name.
    pub host: String,
    /// The claims as signed.
    pub claims: Value,
}

/// Shipped Envoy + module + two ESXi stand-ins. Dropping it stops Envoy
/// (process group) and the stand-ins.
pub struct Gateway {
    /// The running Envoy (admin API, log, temp dir).
    pub envoy: Envoy,
    /// The stand-ins: `[A, B]`.
    pub esxi: [Standin; 2],
    /// CA of the gateway certificate (the client trusts it).
    pub ca: TestCa,
    /// The gateway certificate.
    pub gateway_cert: CertKey,
    /// Where the client connects: `127.0.0.1:<listener port>`.
    pub addr: SocketAddr,
    /// The raw HMAC secret (64 bytes).
    pub secret: Vec<u8>,
    /// The secret as Envoy's environment holds it (base64url).
    pub secret_b64: String,
    /// The configured key (kid `2026-11`, HS256).
    pub key: Key,
    /// The Envoy config as started (with `@TMPDIR@` still in it).
    pub yaml: String,
    handed_out: Mutex<Vec<String>>,
}

/// The session of an upgrade to `path`, or a panic saying why there is none.
fn admitted_session(outcome: Result<Outcome>, path: &str) -> Session {
    outcome
        .unwrap_or_else(|e| panic!("{e:#}"))
        .session()
        .unwrap_or_else(|e| panic!("admission of {}: {e:#}", short(path)))
}

impl Gateway {
    /// [`Gateway::start_with`] with the defaults.
    pub async fn start() -> Result<Gateway> {
        Gateway::start_with(GatewayOpts::default()).await
    }

    /// Starts the stand-ins and Envoy; fails (never skips) when Envoy or the
    /// shipped module is missing.
    pub async fn start_with(opts: GatewayOpts) -> Result<Gateway> {
        Gateway::start_with_yaml_edit(opts, Ok).await
    }

    /// [`Gateway::start_with`], with `edit` applied to the finished Envoy
    /// config (after the `opts` changes) before Envoy starts: for tests of
    /// Envoy's own limits that need a value the shipped file does not have
    /// (e.g. a small connection limit). Use [`replace_exact`] in `edit` so
    /// a change in the shipped file fails loudly.
    pub async fn start_with_yaml_edit(
        opts: GatewayOpts,
        edit: impl FnOnce(String) -> Result<String>,
    ) -> Result<Gateway> {
        let standin = |name: &str, n: u8| {
            let cfg = StandinConfig::new(name, loopback(n));
            match opts.push {
                Some((every, bytes)) => cfg.push(every, bytes),
                None => cfg.no_push(),
            }
        };
        let a = Standin::start(standin(A, 2)).await?;
        let b = Standin::start(standin(B, 3)).await?;
        let ca = TestCa::new("mksgate e2e gateway CA")?;
        let gateway_cert = ca.issue(&[GATEWAY_NAME])?;
        let secret = random_bytes(64);
        let secret_b64 = jws::encode_secret(&secret);
        let key = Key::new(Some(shipped::KID.to_string()), Alg::HS256, &secret)
            .map_err(|e| anyhow!("building the test key: {e:?}"))?;

        let mut yaml = shipped::static_clusters(&[
            shipped::Upstream {
                addr: a.local_addr(),
                pin: a.cert_sha256_hex(),
            },
            shipped::Upstream {
                addr: b.local_addr(),
                pin: b.cert_sha256_hex(),
            },
        ])?;
        if let Some(t) = &opts.idle_timeout {
            yaml = shipped::with_idle_timeout(&yaml, t)?;
        }
        if let Some(plugin) = &opts.plugin {
            yaml = with_plugin_json(&yaml, plugin)?;
        }
        let yaml = edit(yaml)?;
        let envoy = Envoy::start(
            &yaml,
            EnvoyOpts {
                concurrency: opts.concurrency,
                component_log_level: opts.component_log_level.clone(),
                files: vec![
                    (
                        shipped::GATEWAY_CERT_FILE.to_string(),
                        gateway_cert.chain_pem().into_bytes(),
                    ),
                    (
                        shipped::GATEWAY_KEY_FILE.to_string(),
                        gateway_cert.key_pem.clone().into_bytes(),
                    ),
                ],
                env: vec![(shipped::KEY_ENV.to_string(), secret_b64.clone())],
                extra_args: opts.extra_args.clone(),
                hot_restart: opts.hot_restart,
                ..EnvoyOpts::default()
            },
        )
        .await?;
        let port = envoy.port_for(shipped::LISTENER).await?;
        Ok(Gateway {
            envoy,
            esxi: [a, b],
            ca,
            gateway_cert,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            secret,
            secret_b64,
            key,
            yaml,
            handed_out: Mutex::new(Vec::new()),
        })
    }

    /// Stand-in A (`vesxi01.sec.lab`).
    pub fn a(&self) -> &Standin {
        &self.esxi[0]
    }

    /// Stand-in B (`vesxi02.sec.lab`).
    pub fn b(&self) -> &Standin {
        &self.esxi[1]
    }

    /// The stand-in called `host` (case-insensitive). Panics for others.
    pub fn standin(&self, host: &str) -> &Standin {
        self.esxi
            .iter()
            .find(|s| s.name().eq_ignore_ascii_case(host))
            .unwrap_or_else(|| panic!("no stand-in called {host}"))
    }

    /// Remember a string (token, ticket) for [`Self::assert_no_leaks`].
    pub fn remember(&self, s: &str) {
        self.handed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s.to_string());
    }

    /// Everything remembered so far.
    pub fn handed_out(&self) -> Vec<String> {
        self.handed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Claims the shipped config admits: `host` + `ticket`, `aud`, `iss`,
    /// `iat` = now, `exp` = now + 60, a fresh `jti`, `sub`, `tenant`.
    pub fn standard_claims(&self, host: &str, ticket: &str) -> Value {
        merge(
            &link::shipped_claims(host, ticket),
            &json!({"sub": "e2e-user", "tenant": TENANT}),
        )
    }

    /// Signs `claims` with the configured key (header
    /// `{"alg":"HS256","typ":"JWT","kid":"2026-11"}`); remembers the token.
    pub fn sign(&self, claims: &Value) -> String {
        let token = jws::sign(&self.key, claims.to_string().as_bytes());
        self.remember(&token);
        token
    }

    /// Signs with the configured secret under an arbitrary header JSON
    /// (the MAC is HS256 unless `alg` is given, then that alg's MAC over the
    /// same secret); remembers the token.
    pub fn sign_with_header(&self, header: &Value, claims: &Value, alg: Alg) -> String {
        let key = Key::new(Some(shipped::KID.to_string()), alg, &self.secret)
            .unwrap_or_else(|e| panic!("key for {alg:?}: {e:?}"));
        let token = jws::sign_with_header(
            &key,
            header.to_string().as_bytes(),
            claims.to_string().as_bytes(),
        );
        self.remember(&token);
        token
    }

    /// `/console?token=<token>`.
    pub fn path_for(token: &str) -> String {
        link::console_path(token)
    }

    /// A signed link to `host` with a fresh ticket from its stand-in and the
    /// [`Self::standard_claims`] with `overrides` merged in (`null` removes
    /// a claim). A `ticket` override replaces the issued ticket in the
    /// claims (the issued one is still returned in [`Link::ticket`] unless
    /// the override is a string, which is then returned).
    pub fn new_link(&self, host: &str, overrides: Value) -> Link {
        let ticket = self.standin(host).issue_ticket();
        self.remember(&ticket);
        let claims = merge(&self.standard_claims(host, &ticket), &overrides);
        let ticket = claims["ticket"].as_str().unwrap_or(&ticket).to_string();
        let token = self.sign(&claims);
        Link {
            path: Gateway::path_for(&token),
            token,
            ticket,
            host: host.to_string(),
            claims,
        }
    }

    /// Path + query of [`Self::new_link`] to host A.
    pub fn link(&self, overrides: Value) -> String {
        self.new_link(A, overrides).path
    }

    /// `wss://console.example.com:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("wss://{GATEWAY_NAME}:{}{path}", self.addr.port())
    }

    /// Client options without `Origin` and without subprotocols: TLS to the
    /// listener, SNI `console.example.com`, only the test CA trusted.
    pub fn bare_opts(&self) -> ClientOpts {
        ClientOpts::new()
            .connect_to(self.addr)
            .trust(Trust::Roots(vec![self.ca.cert_der()]))
            .sni(GATEWAY_NAME)
    }

    /// What a browser running the wmks console sends: [`Self::bare_opts`]
    /// plus `Origin: https://portal.example.com` and the wmks subprotocols.
    pub fn opts(&self) -> ClientOpts {
        self.bare_opts()
            .header("Origin", shipped::ORIGIN)
            .wmks_protocols()
    }

    /// Connect with [`Self::opts`] plus `extra` headers.
    pub async fn connect(&self, path: &str, extra: &[(&str, &str)]) -> Result<Outcome> {
        let mut opts = self.opts();
        for (k, v) in extra {
            opts = opts.header(k, v);
        }
        self.connect_with(path, &opts).await
    }

    /// [`Self::connect`] as the next of many users (its own client address,
    /// [`clients::MANY_USERS`]): for load that is many people's, which the
    /// shipped per-client limit must not refuse.
    #[allow(dead_code)] // not every test binary plays many users
    pub async fn connect_as_user(&self, path: &str) -> Result<Outcome> {
        let opts = self.opts().source(clients::MANY_USERS.next());
        self.connect_with(path, &opts).await
    }

    /// Connect with explicit options.
    pub async fn connect_with(&self, path: &str, opts: &ClientOpts) -> Result<Outcome> {
        connect(&self.url(path), opts)
            .await
            .with_context(|| format!("connecting to {}", short(path)))
    }

    /// Asserts that [`Self::connect`] is refused by the filter with `status`,
    /// body `<code>\n` and `x-mksgate-decision: <code>`, and that neither
    /// stand-in saw a TLS connection or a request meanwhile.
    pub async fn expect_refused(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        status: u16,
        code: &str,
    ) -> HttpResponse {
        let mut opts = self.opts();
        for (k, v) in extra {
            opts = opts.header(k, v);
        }
        self.expect_refused_with(path, &opts, status, code).await
    }

    /// [`Self::expect_refused`] with explicit options.
    pub async fn expect_refused_with(
        &self,
        path: &str,
        opts: &ClientOpts,
        status: u16,
        code: &str,
    ) -> HttpResponse {
        let before = self.upstream_activity();
        let r = self
            .connect_with(path, opts)
            .await
            .unwrap_or_else(|e| panic!("{code}: {e:#}"))
            .refusal()
            .unwrap_or_else(|e| panic!("expected {status} {code} for {}: {e:#}", short(path)));
        assert_eq!(
            (
                r.status,
                r.body_text().as_str(),
                r.header("x-mksgate-decision")
            ),
            (status, format!("{code}\n").as_str(), Some(code)),
            "refusal of {}",
            short(path)
        );
        // Give a (wrongly) forwarded request time to show up.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            self.upstream_activity(),
            before,
            "{code}: a refused request reached an upstream"
        );
        r
    }

    /// Asserts that [`Self::connect`] gets a WebSocket session (101).
    pub async fn expect_admitted(&self, path: &str, extra: &[(&str, &str)]) -> Session {
        admitted_session(self.connect(path, extra).await, path)
    }

    /// [`Self::expect_admitted`] as the next of many users.
    #[allow(dead_code)] // not every test binary plays many users
    pub async fn expect_admitted_as_user(&self, path: &str) -> Session {
        admitted_session(self.connect_as_user(path).await, path)
    }

    /// (TLS handshakes, requests) seen by both stand-ins together.
    pub fn upstream_activity(&self) -> (usize, usize) {
        self.esxi.iter().fold((0, 0), |(h, r), s| {
            (h + s.handshakes().len(), r + s.requests().len())
        })
    }

    /// The requests stand-in `host` recorded for `ticket`.
    pub fn requests_for(&self, host: &str, ticket: &str) -> Vec<RecordedRequest> {
        self.standin(host)
            .requests()
            .into_iter()
            .filter(|r| r.ticket.as_deref() == Some(ticket))
            .collect()
    }
}

/// First 60 characters, for messages.
pub fn short(s: &str) -> String {
    if s.len() > 60 {
        format!("{}...({} bytes)", &s[..60], s.len())
    } else {
        s.to_string()
    }
}

/// Decodes a compact JWS's payload (no verification).
pub fn token_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = jws::decode_secret(payload).unwrap_or_else(|| panic!("payload not base64url"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("payload not JSON: {e}"))
}

/// `token` with its payload replaced by `claims`, header and signature kept
/// (what an attacker editing a link can do).
pub fn with_payload(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().unwrap_or_default();
    let _ = parts.next();
    let sig = parts.next().unwrap_or_default();
    format!(
        "{header}.{}.{sig}",
        jws::encode_secret(claims.to_string().as_bytes())
    )
}

/// The session's upstream request on `host`, waiting (bounded) for it.
pub async fn upstream_request(gw: &Gateway, host: &str, ticket: &str) -> RecordedRequest {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let found = gw.requests_for(host, ticket);
        if let Some(r) = found.into_iter().next() {
            return r;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{host} saw no request for ticket {}", short(ticket));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
