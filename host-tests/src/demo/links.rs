//! The demo's links and what it prints: the page address with a link,
//! the description of a running demo, and a link made wrong on purpose.

use super::*;

/// The demo page URL that opens `link`.
pub fn page_url(page: &str, link: &str) -> String {
    format!("{page}?link={}", percent_encode(link))
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's
/// `--ignore-certificate-errors-spki-list` form).
pub fn spki_sha256_base64(cert: &CertKey) -> Result<String> {
    let key = rcgen::KeyPair::try_from(cert.key_der.as_slice())
        .map_err(|e| anyhow!("parsing the gateway key: {e}"))?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    Ok(STANDARD.encode(Sha256::digest(&spki)))
}

/// The text `make demo` prints.
pub fn describe(i: &DemoInfo) -> String {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line("mksgate demo: everything runs on this machine, on loopback.".into());
    line(String::new());
    line(format!(
        "Gateway   {}   (Envoy + mksgate, envoy/static-clusters.yaml; admin {})",
        i.gateway, i.admin
    ));
    for c in &i.consoles {
        line(format!(
            "ESXi      {} (cluster {}, stand-in {}) -> {}",
            c.host, c.cluster, c.standin, c.detail
        ));
        if let Some(why) = &c.fallback_reason {
            line(format!("          test pattern instead of QEMU: {why}"));
        }
    }
    line("Changed in the shipped config (besides addresses, ports, paths, pins):".into());
    for c in &i.config_changes {
        line(format!("          {c}"));
    }
    line(String::new());
    line(format!(
        "A signed console link (one use, {LINK_TTL_SECONDS} s; host {}):",
        i.consoles.first().map(|c| c.host.as_str()).unwrap_or("")
    ));
    line(format!("  {}", i.link));
    line(String::new());
    line("The demo page, opening that link (\"New link\" signs a fresh one):".into());
    line(format!("  {}", i.page_url));
    if !i.novnc {
        line(
            "  WARNING: noVNC is missing (demo/node_modules): run scripts/setup-browser.sh, \
             or the page cannot show a console"
                .into(),
        );
    }
    line(String::new());
    line(format!(
        "Your browser must trust the gateway's certificate (issued by {}), one of:",
        i.ca_pem
    ));
    line(format!(
        "  - Chromium/Chrome: start it with --user-data-dir=$(mktemp -d) --ignore-certificate-errors-spki-list={}",
        i.gateway_spki_sha256
    ));
    line(format!(
        "  - open https://{}/ once and accept the warning (the gateway then answers 404 not_found), then reload the page with a new link",
        i.gateway_addr
    ));
    line("  - import the CA file above as a trusted authority".into());
    line(String::new());
    line(format!(
        "Decisions: Envoy's access log {} and {}/stats?filter=mksgate",
        i.access_log, i.admin
    ));
    line("Ctrl-C stops everything.".into());
    s
}

/// Flip one character in the middle of a link's signature, so the link is
/// well formed but its signature is wrong (`bad_signature`). The middle, not
/// the end: the last base64url character of a 32-byte MAC carries padding
/// bits a lenient decoder could ignore.
pub fn tamper_signature(link: &str) -> Result<String> {
    let dot = link
        .rfind('.')
        .ok_or_else(|| anyhow!("not a link with a JWS: {link}"))?;
    let mut bytes = link.as_bytes().to_vec();
    let at = dot + 10;
    let c = *bytes
        .get(at)
        .ok_or_else(|| anyhow!("signature too short in {link}"))?;
    bytes[at] = if c == b'A' { b'B' } else { b'A' };
    Ok(String::from_utf8(bytes)?)
}

/// Decode a JWS's claims without checking anything (for display and tests).
pub fn peek_claims(token: &str) -> Result<serde_json::Value> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!("not a JWS"))?;
    let raw = URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&raw)?)
}
