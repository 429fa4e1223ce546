//! Links minted by stock JWT libraries are admitted by the filter in real
//! Envoy: the portal snippets of docs/portal.md, `docs/portal/mint_link.py`
//! (PyJWT, pinned in docs/portal/requirements.txt, installed into
//! .tools/python) and `docs/portal/mint_link.mjs` (jose, pinned in
//! docs/portal/package-lock.json), run as the guide says, against
//! envoy/static-clusters.yaml. A tampered snippet token is refused, and the
//! guide shows the two files byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_host_tests::bounded;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mksgate_core::jws::encode_secret;
use mksgate_host_tests::client::{connect, verify_session, ClientOpts};
use mksgate_host_tests::envoy::{workspace_root, Envoy, EnvoyOpts};
use mksgate_host_tests::loopback;
use mksgate_host_tests::run;
use mksgate_host_tests::shipped::{
    self, Upstream, AUDIENCE, GATEWAY_CERT_FILE, GATEWAY_KEY_FILE, ISSUER, KEY_ENV, KID, LISTENER,
    ORIGIN, STATIC_HOSTS,
};
use mksgate_host_tests::standin::{Standin, StandinConfig};
use mksgate_host_tests::tls::CertKey;

const T: Duration = Duration::from_secs(10);
const GATEWAY: &str = "console.example.com";
const SETUP: &str = "run scripts/setup.sh (it installs PyJWT into .tools/python and runs \
                     `npm ci --prefix docs/portal`)";

fn portal(file: &str) -> PathBuf {
    workspace_root().join("docs/portal").join(file)
}

/// Runs a command with a time bound; its stdout on success, a panic with
/// stderr otherwise. The child is killed if it overruns.
fn run_bounded(cmd: &mut Command, limit: Duration) -> String {
    let shown = format!("{cmd:?}");
    let done = match run::run_bounded(cmd, limit) {
        Ok(done) => done,
        Err(e @ run::RunError::Spawn(_)) => panic!("cannot run {shown}: {e} ({SETUP})"),
        Err(e) => panic!("{shown} {e}"),
    };
    assert!(
        done.status.success(),
        "{shown}: {}\n{}",
        done.status,
        done.stderr
    );
    done.stdout
}

fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} not installed ({} missing): {SETUP}",
        path.display()
    );
}

fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` not found on PATH: {SETUP}");
}

#[derive(Clone, Copy, Debug)]
enum Snippet {
    Python,
    Node,
}

/// Runs a snippet as docs/portal.md says and returns the link it prints.
fn mint_with(snippet: Snippet, secret: &str, host: &str, ticket: &str) -> String {
    let tools = workspace_root().join(".tools/python");
    let mut cmd = match snippet {
        Snippet::Python => {
            require_tool("python3");
            require(&tools.join("jwt/__init__.py"), "PyJWT");
            let mut c = Command::new("python3");
            c.arg(portal("mint_link.py")).env("PYTHONPATH", &tools);
            c
        }
        Snippet::Node => {
            require_tool("node");
            require(&portal("node_modules/jose/package.json"), "jose");
            let mut c = Command::new("node");
            c.arg(portal("mint_link.mjs"));
            c
        }
    };
    cmd.args([GATEWAY, host, ticket, KID])
        .env("MKSGATE_KEY", secret)
        .env("MKSGATE_AUDIENCE", AUDIENCE)
        .env("MKSGATE_ISSUER", ISSUER)
        .current_dir(workspace_root());
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let link = out.trim().to_string();
    assert!(
        link.starts_with(&format!("wss://{GATEWAY}/console?token=")),
        "{snippet:?} printed {out:?}"
    );
    link
}

fn claims_of(link: &str) -> serde_json::Value {
    let token = link.split_once("token=").unwrap().1;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header_of(link: &str) -> serde_json::Value {
    let token = link.split_once("token=").unwrap().1;
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

struct Gateway {
    _envoy: Envoy,
    addr: SocketAddr,
    cert: CertKey,
    esxi: [Standin; 2],
}

async fn start_gateway(secret: &str) -> Gateway {
    let cert = CertKey::self_signed(&[GATEWAY]).unwrap();
    let s1 = Standin::start(StandinConfig::new(STATIC_HOSTS[0].0, loopback(2)))
        .await
        .unwrap();
    let s2 = Standin::start(StandinConfig::new(STATIC_HOSTS[1].0, loopback(3)))
        .await
        .unwrap();
    let up = |s: &Standin| Upstream {
        addr: s.local_addr(),
        pin: s.cert_sha256_hex(),
    };
    let config = shipped::static_clusters(&[up(&s1), up(&s2)]).unwrap();
    let envoy = Envoy::start(
        &config,
        EnvoyOpts {
            env: vec![(KEY_ENV.to_string(), secret.to_string())],
            files: vec![
                (GATEWAY_CERT_FILE.into(), cert.chain_pem().into_bytes()),
                (GATEWAY_KEY_FILE.into(), cert.key_pem.clone().into_bytes()),
            ],
            ready_timeout: Duration::from_secs(40),
            ..EnvoyOpts::default()
        },
    )
    .await
    .unwrap();
    let port = envoy.port_for(LISTENER).await.unwrap();
    Gateway {
        _envoy: envoy,
        addr: SocketAddr::new(loopback(1), port),
        cert,
        esxi: [s1, s2],
    }
}

impl Gateway {
    fn opts(&self) -> ClientOpts {
        ClientOpts::new()
            .connect_to(self.addr)
            .pin(self.cert.cert_der.clone())
            .header("Origin", ORIGIN)
            .wmks_protocols()
            .timeout(T)
    }
}

fn random_secret() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut b).unwrap();
    encode_secret(&b)
}

async fn snippet_link_is_admitted(snippet: Snippet) {
    let secret = random_secret();
    let gw = start_gateway(&secret).await;
    let esxi = &gw.esxi[0];
    let ticket = esxi.issue_ticket();
    let link = mint_with(snippet, &secret, esxi.name(), &ticket);
    let claims = claims_of(&link);
    assert_eq!(
        (&claims["aud"], &claims["iss"], &claims["host"]),
        (
            &serde_json::json!(AUDIENCE),
            &serde_json::json!(ISSUER),
            &serde_json::json!(esxi.name())
        ),
        "{snippet:?}: {claims}"
    );
    assert_eq!(header_of(&link)["kid"], KID);

    let mut session = connect(&link, &gw.opts()).await.unwrap().session().unwrap();
    assert_eq!(session.response.status, 101);
    assert_eq!(session.subprotocol.as_deref(), Some("binary"));
    let rep = verify_session(&mut session, 11).await.unwrap();
    assert_eq!(rep.echoed, 11);
    session.expect_pushes(3, T).await.unwrap();
    session.close(T).await.unwrap();
    let req = &esxi.wait_for_requests(1, T).await.unwrap()[0];
    assert_eq!(req.path, format!("/ticket/{ticket}"));
    assert_eq!(req.status, Some(101));
    assert_eq!(req.sni.as_deref(), Some(esxi.name()));
    assert!(gw.esxi[1].requests().is_empty());

    // The same link again: one-time.
    let r = connect(&link, &gw.opts()).await.unwrap().refusal().unwrap();
    assert_eq!(r.header("x-mksgate-decision"), Some("replayed"));

    // Tampered snippet tokens: the payload retargeted to the other host with
    // the signature kept, and a signature with its first character changed.
    let ticket2 = esxi.issue_ticket();
    let fresh = mint_with(snippet, &secret, esxi.name(), &ticket2);
    let (prefix, token) = fresh.split_once("token=").unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = claims_of(&fresh);
    claims["host"] = serde_json::json!(gw.esxi[1].name());
    let retargeted = format!(
        "{prefix}token={}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    let first = parts[2].chars().next().unwrap();
    let flipped = format!(
        "{prefix}token={}.{}.{}{}",
        parts[0],
        parts[1],
        if first == 'A' { 'B' } else { 'A' },
        &parts[2][1..]
    );
    for bad in [retargeted, flipped] {
        let r = connect(&bad, &gw.opts()).await.unwrap().refusal().unwrap();
        assert_eq!(
            (r.status, r.header("x-mksgate-decision"), r.body_text()),
            (403, Some("bad_signature"), "bad_signature\n".to_string()),
            "{snippet:?}"
        );
    }
    assert!(
        gw.esxi[1].requests().is_empty(),
        "a tampered link reached ESXi"
    );
    // The untampered fresh link still works (the refusals did not burn it).
    let mut s = connect(&fresh, &gw.opts())
        .await
        .unwrap()
        .session()
        .unwrap();
    verify_session(&mut s, 3).await.unwrap();
    s.close(T).await.unwrap();

    // Signed with another secret: refused too.
    let other = mint_with(snippet, &random_secret(), esxi.name(), &esxi.issue_ticket());
    let r = connect(&other, &gw.opts())
        .await
        .unwrap()
        .refusal()
        .unwrap();
    assert_eq!(r.header("x-mksgate-decision"), Some("bad_signature"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_snippet_link_is_admitted_by_envoy() {
    bounded(120, snippet_link_is_admitted(Snippet::Python)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jose_snippet_link_is_admitted_by_envoy() {
    bounded(120, snippet_link_is_admitted(Snippet::Node)).await;
}

/// The fenced block after `heading` in docs/portal.md, as written.
fn code_block(doc: &str, heading: &str, lang: &str) -> String {
    let at = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/portal.md has no {heading:?}"));
    let fence = format!("```{lang}\n");
    let start = at
        + doc[at..]
            .find(&fence)
            .unwrap_or_else(|| panic!("no ```{lang} block after {heading:?}"))
        + fence.len();
    let end = start + doc[start..].find("\n```\n").unwrap() + 1;
    doc[start..end].to_string()
}

#[test]
fn the_portals_revocation_key_is_the_gateways() {
    require_tool("python3");
    use mksgate_core::revocation::{key, Kind, DEFAULT_KEY_PREFIX};
    for (kind, value) in [
        (Kind::Sub, "alice@example.com"),
        (Kind::Tenant, "t-1"),
        (Kind::Jti, "0f9e"),
        (Kind::Sub, "Ünïcode"),
    ] {
        let mut cmd = Command::new("python3");
        cmd.arg(portal("revocation_key.py"))
            .args([kind.as_str(), value]);
        let out = run_bounded(&mut cmd, Duration::from_secs(30));
        assert_eq!(out.trim(), key(DEFAULT_KEY_PREFIX, kind, value), "{value}");
    }
}

#[test]
fn portal_guide_shows_the_tested_snippets_verbatim() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/portal.md")).unwrap();
    for (heading, lang, file) in [
        ("### Python (PyJWT)", "python", "mint_link.py"),
        ("### Node (jose)", "javascript", "mint_link.mjs"),
        (
            "### Ending a user's consoles (revocation)",
            "python",
            "revocation_key.py",
        ),
    ] {
        let shown = code_block(&doc, heading, lang);
        let actual = std::fs::read_to_string(portal(file)).unwrap();
        assert!(
            shown == actual,
            "the {lang} block of docs/portal.md differs from docs/portal/{file}; \
             paste the file into the guide"
        );
    }
    // The pins the setup installs are the ones the guide names.
    let req = std::fs::read_to_string(portal("requirements.txt")).unwrap();
    assert!(req.trim().starts_with("PyJWT=="), "{req}");
    let pkg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(portal("package.json")).unwrap()).unwrap();
    assert!(pkg["dependencies"]["jose"].is_string());
}
