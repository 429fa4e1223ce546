//! The console target named by a link: ESXi host, port and WebMKS ticket.
//!
//! Everything here is strict on purpose: what passes becomes an upstream
//! `:authority`, an SNI and a path, so nothing ambiguous may pass.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest ticket accepted (vSphere's are about 40 characters).
pub const MAX_TICKET_LEN: usize = 256;

/// A host name as the allowlist sees it: lower case, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// The form used as the allowlist key and in `:authority`.
    pub fn canonical(&self) -> String {
        match self {
            Host::Name(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }

    /// `host[:port]` for `:authority`, with brackets around IPv6 and the
    /// port left out when it is 443, as a browser would send it.
    pub fn authority(&self, port: u16) -> String {
        let host = match self {
            Host::Name(name) => name.clone(),
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            Host::Ip(IpAddr::V4(v4)) => v4.to_string(),
        };
        if port == 443 {
            host
        } else {
            format!("{host}:{port}")
        }
    }
}

/// A ticket is 1 to 256 of `A-Z a-z 0-9 . _ ~ -` (RFC 3986 unreserved), so
/// it can never add a path segment, a query or an escape upstream. `.` and
/// `..` alone are refused as well: they are path segments, not tickets.
pub fn valid_ticket(ticket: &str) -> bool {
    !ticket.is_empty()
        && ticket.len() <= MAX_TICKET_LEN
        && ticket != "."
        && ticket != ".."
        && ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// Parses a host claim: a DNS name (letters, digits, hyphens; labels of 1 to
/// 63; at most 253 in all; case folded), an IPv4 literal in dotted-quad form,
/// or an IPv6 literal, bare or in brackets. Refused: trailing dots, empty
/// labels, `_`, `@`, `%`, `:` ports, and names whose last label is all
/// digits (`127.1`, `0x7f.1` style tricks that some resolvers read as IPs).
pub fn parse_host(text: &str) -> Option<Host> {
    if text.is_empty() || text.len() > 253 {
        return None;
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| Host::Ip(IpAddr::V6(v6)));
    }
    if text.contains(':') {
        // Only IPv6 has colons; `%` zone ids are refused by the parser.
        return text
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| Host::Ip(IpAddr::V6(v6)));
    }
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Some(Host::Ip(IpAddr::V4(v4)));
    }
    let name = text.to_ascii_lowercase();
    if !valid_dns_name(&name) {
        return None;
    }
    Some(Host::Name(name))
}

fn valid_dns_name(name: &str) -> bool {
    let mut last_label = "";
    for label in name.split('.') {
        let bytes = label.as_bytes();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return false; // empty label: leading, trailing or double dot
        };
        if bytes.len() > 63
            || *first == b'-'
            || *last == b'-'
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            return false;
        }
        last_label = label;
    }
    !last_label.bytes().all(|b| b.is_ascii_digit())
}

/// A suffix allowlist entry: a dot, then a valid DNS name (`.esxi.example.com`).
pub fn valid_suffix(suffix: &str) -> bool {
    suffix
        .strip_prefix('.')
        .is_some_and(|rest| rest.len() <= 252 && valid_dns_name(rest))
        && suffix == suffix.to_ascii_lowercase()
}

/// Whether a canonical DNS name lies under `suffix` (which starts with a
/// dot): at least one label before it, so `.tenant-a.lab` matches
/// `esxi1.tenant-a.lab` but neither `tenant-a.lab` nor `xtenant-a.lab`.
/// The one suffix rule, for the upstreams and for key scopes.
pub fn name_under_suffix(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() && name.ends_with(suffix)
}

/// A console target, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    pub port: u16,
    pub ticket: String,
}

/// Parses the `url` claim, the WebMKS URL exactly as vSphere returns it:
/// `wss://host[:port]/ticket/<ticket>` and nothing more (no userinfo, query,
/// fragment, escapes or extra segments).
pub fn parse_webmks_url(url: &str) -> Option<Target> {
    let scheme_len = "wss://".len();
    let scheme = url.get(..scheme_len)?;
    if !scheme.eq_ignore_ascii_case("wss://") {
        return None;
    }
    let rest = url.get(scheme_len..)?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    let ticket = path.strip_prefix("/ticket/")?;
    if !valid_ticket(ticket) {
        return None;
    }
    let (host_text, port) = split_authority(authority)?;
    let host = parse_host(host_text)?;
    Some(Target {
        host,
        port,
        ticket: ticket.to_string(),
    })
}

/// `host[:port]` or `[v6][:port]` (no userinfo) into the host text and the
/// port (443 when absent); the host is not checked here (`parse_host`).
pub fn split_authority(authority: &str) -> Option<(&str, u16)> {
    if authority.contains('@') {
        return None;
    }
    let (host, port_text) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after) = authority.split_at(close + 1);
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port_text {
        None => 443,
        Some(text) => parse_port(text)?,
    };
    Some((host, port))
}

/// 1 to 65535, decimal digits only (no sign, no leading `+`, at most 5 digits).
pub fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn tickets() {
        assert!(valid_ticket("52bd9e3f-aa1c.FOO_bar~9"));
        assert!(valid_ticket(&"a".repeat(256)));
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a?b",
            "a#b",
            "a%2fb",
            "a b",
            "é",
            &"a".repeat(257),
        ] {
            assert!(!valid_ticket(bad), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("VESXI01.Sec.Lab"),
            Some(Host::Name("vesxi01.sec.lab".into()))
        );
        assert_eq!(
            parse_host("10.0.0.1"),
            Some(Host::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(parse_host("::1"), Some(Host::Ip("::1".parse().unwrap())));
        assert_eq!(
            parse_host("[fe80::1]"),
            Some(Host::Ip("fe80::1".parse().unwrap()))
        );
        for bad in [
            "",
            "host.",
            ".host",
            "a..b",
            "a_b.lab",
            "user@host",
            "host#x",
            "host%2e",
            "host:443",
            "fe80::1%eth0",
            "127.1",
            "0x7f.1",
            "1.2.3.4.5",
            "-a.lab",
            "a-.lab",
            "[::1",
            "[host]",
            "h\u{0}x",
            "exa mple",
            "ex\u{e9}mple.com",
        ] {
            assert_eq!(parse_host(bad), None, "{bad:?}");
        }
        assert!(parse_host(&format!("{}.lab", "a".repeat(63))).is_some());
        assert!(parse_host(&format!("{}.lab", "a".repeat(64))).is_none());
    }

    #[test]
    fn authorities() {
        let name = Host::Name("esx.lab".into());
        assert_eq!(name.authority(443), "esx.lab");
        assert_eq!(name.authority(8443), "esx.lab:8443");
        let v6 = Host::Ip("::1".parse().unwrap());
        assert_eq!(v6.authority(443), "[::1]");
        assert_eq!(v6.authority(9), "[::1]:9");
    }

    #[test]
    fn webmks_urls() {
        let t = parse_webmks_url("wss://ESX01.lab/ticket/abc123").unwrap();
        assert_eq!(
            (t.host.canonical().as_str(), t.port, t.ticket.as_str()),
            ("esx01.lab", 443, "abc123")
        );
        let t = parse_webmks_url("WSS://[2001:db8::7]:8443/ticket/x-y").unwrap();
        assert_eq!((t.host.canonical().as_str(), t.port), ("2001:db8::7", 8443));
        for bad in [
            "ws://esx/ticket/a",
            "https://esx/ticket/a",
            "wss://esx/ticket/",
            "wss://esx/ticket/a/b",
            "wss://esx/ticket/a?x=1",
            "wss://esx/ticket/a#f",
            "wss://esx/tickets/a",
            "wss://esx//ticket/a",
            "wss://user@esx/ticket/a",
            "wss://esx:0/ticket/a",
            "wss://esx:65536/ticket/a",
            "wss://esx:+443/ticket/a",
            "wss://esx:/ticket/a",
            "wss://esx./ticket/a",
            "wss://[::1]x/ticket/a",
            "wss://esx/ticket/%2e%2e",
            "wss://",
        ] {
            assert_eq!(parse_webmks_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn suffixes() {
        assert!(valid_suffix(".esxi.example.com"));
        for bad in ["esxi.example.com", ".", "..a", ".A.com", ".a..com", ".com."] {
            assert!(!valid_suffix(bad), "{bad}");
        }
    }
}
