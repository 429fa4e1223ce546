//! The facts of a request that a decision depends on, gathered by the host.

/// A request header as the decision needs it: a repeated header is kept
/// apart from a single one, so it cannot smuggle a second value past a check
/// that reads only the first (as Envoy's single-header lookup would).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderValue<'a> {
    #[default]
    Absent,
    One(&'a str),
    Repeated,
}

impl<'a> HeaderValue<'a> {
    fn add(self, value: &'a str) -> HeaderValue<'a> {
        match self {
            HeaderValue::Absent => HeaderValue::One(value),
            _ => HeaderValue::Repeated,
        }
    }
}

/// Fetches the downstream address only when a decision needs it (a link
/// bound to a network): reading it is a host call, which most requests
/// never need (issue 15's budget).
pub trait ClientLookup: std::fmt::Debug {
    fn client_ip(&self) -> Option<std::net::IpAddr>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// `:path` as received, query included. When `:path` is not UTF-8
    /// (`malformed` is `Some(":path")`) this is its longest UTF-8 prefix, so
    /// the decision can still tell whether the request is under the prefix.
    pub path: &'a str,
    pub upgrade: HeaderValue<'a>,
    /// `Connection` is a list header and may legally be split across lines;
    /// true when any of them names the `upgrade` token.
    pub connection_upgrade: bool,
    pub origin: HeaderValue<'a>,
    /// The downstream address as Envoy's `source.address` gives it
    /// (`1.2.3.4:5678` or `[::1]:5678`).
    pub client: Option<&'a str>,
    /// Where to ask for the address when `client` is `None`.
    pub client_lookup: Option<&'a dyn ClientLookup>,
    /// The worker's view of the revocations and the time in milliseconds,
    /// with `revocation` configured; without it such a config refuses
    /// every link (`revocation_unavailable`).
    pub revocations: Option<(&'a crate::revocation::View, i64)>,
    /// The client sent the cluster header (under any value): the host must
    /// remove it on every path, so a client never steers routing.
    pub cluster_header_sent: bool,
    /// The first header the decision reads whose value is not UTF-8 (Envoy
    /// lets bytes 0x80-0xFF through as obs-text). The decision cannot read
    /// such a value, so a console request carrying one is refused
    /// (`malformed_request`); every other header's bytes are never looked at.
    pub malformed: Option<&'static str>,
}

/// The name `malformed` gives a header map the host could not hand over.
pub const HEADER_MAP: &str = "(header map)";

/// The name `malformed` gives the cluster header, whatever it is configured
/// as (its configured name is the operator's, not the client's, to log).
pub const CLUSTER_HEADER: &str = "cluster header";

/// The header Envoy's access logs print in place of `:path` when present
/// (`%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`, Istio's default format): the host
/// sets it on every console request to the path without its query, so such
/// a log shows neither the token (in the query) nor, after admission, the
/// ticket (in the rewritten path).
pub const LOGGED_PATH_HEADER: &str = "x-envoy-original-path";

impl<'a> RequestFacts<'a> {
    /// The path without its query: what `LOGGED_PATH_HEADER` carries.
    pub fn path_without_query(&self) -> &'a str {
        self.path
            .split_once('?')
            .map_or(self.path, |(path, _)| path)
    }

    /// Builds the facts from the request's header pairs (lower-case names,
    /// pseudo-headers included, as Envoy hands them over), as raw bytes:
    /// nothing a client sends can make this fail. Names that are not one the
    /// decision reads are skipped without looking at their value.
    /// `cluster_header` is the configured cluster header's name.
    pub fn from_header_bytes<I>(
        headers: I,
        cluster_header: &str,
        client: Option<&'a str>,
    ) -> RequestFacts<'a>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut facts = RequestFacts {
            client,
            ..RequestFacts::default()
        };
        for (name, raw) in headers {
            let field: &'static str = match name {
                b":method" => ":method",
                b":path" => ":path",
                b"upgrade" => "upgrade",
                b"origin" => "origin",
                b"connection" => "connection",
                _ if !cluster_header.is_empty() && name == cluster_header.as_bytes() => {
                    facts.cluster_header_sent = true;
                    CLUSTER_HEADER
                }
                _ => continue,
            };
            let value = match std::str::from_utf8(raw) {
                Ok(value) => value,
                Err(error) => {
                    facts.malformed = facts.malformed.or(Some(field));
                    if field == ":path" {
                        // `valid_up_to` is a char boundary, so this is whole.
                        facts.path = raw
                            .get(..error.valid_up_to())
                            .and_then(|p| std::str::from_utf8(p).ok())
                            .unwrap_or_default();
                    }
                    continue;
                }
            };
            match field {
                ":method" => facts.method = value,
                ":path" => facts.path = value,
                "upgrade" => facts.upgrade = facts.upgrade.add(value),
                "origin" => facts.origin = facts.origin.add(value),
                "connection" => {
                    facts.connection_upgrade |= value
                        .split(',')
                        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
                }
                _ => {}
            }
        }
        facts
    }

    /// The facts of a request whose header map the host could not hand over
    /// in its own format (a host bug): nothing about it is known, so it is
    /// refused on every path, and any cluster header it may carry removed.
    pub fn unreadable(client: Option<&'a str>) -> RequestFacts<'a> {
        RequestFacts {
            client,
            cluster_header_sent: true,
            malformed: Some(HEADER_MAP),
            ..RequestFacts::default()
        }
    }

    /// `from_header_bytes` for text pairs and no cluster header (tests,
    /// fuzzers, the CLI).
    pub fn from_headers<I>(headers: I, client: Option<&'a str>) -> RequestFacts<'a>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        RequestFacts::from_header_bytes(
            headers
                .into_iter()
                .map(|(name, value)| (name.as_bytes(), value.as_bytes())),
            "",
            client,
        )
    }

    /// GET with `Upgrade: websocket` (once) and `Connection: upgrade`.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.method == "GET"
            && self.connection_upgrade
            && matches!(self.upgrade, HeaderValue::One(u) if u.trim().eq_ignore_ascii_case("websocket"))
    }

    /// The path without its query.
    pub fn path_only(&self) -> &'a str {
        match self.path.split_once('?') {
            Some((path, _)) => path,
            None => self.path,
        }
    }
}

/// What the query holds under the token parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenParam<'a> {
    Missing,
    One(&'a str),
    /// Given more than once: which one would an upstream read?
    Repeated,
}

/// Finds `name=value` in the query of `path`. No percent-decoding: a JWS is
/// base64url and dots, so an escaped token is a malformed one. A name given
/// more than once is `Repeated` whatever the values (so `token=&token=X` and
/// `token=X&token=` are refused alike); given once with an empty value it is
/// `Missing`. A fragment (which browsers never send) ends the query.
pub fn token_param<'a>(path: &'a str, name: &str) -> TokenParam<'a> {
    let Some((_, query)) = path.split_once('?') else {
        return TokenParam::Missing;
    };
    let query = query.split('#').next().unwrap_or_default();
    let mut found: Option<&'a str> = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != name {
            continue;
        }
        if found.is_some() {
            return TokenParam::Repeated;
        }
        found = Some(value);
    }
    match found {
        Some(value) if !value.is_empty() => TokenParam::One(value),
        _ => TokenParam::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn facts(headers: &[(&'static str, &'static str)]) -> RequestFacts<'static> {
        RequestFacts::from_headers(headers.iter().copied(), None)
    }

    #[test]
    fn upgrade_detection() {
        let ok = facts(&[
            (":method", "GET"),
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
        ]);
        assert!(ok.is_websocket_upgrade());
        let split = facts(&[
            (":method", "GET"),
            ("upgrade", "websocket"),
            ("connection", "keep-alive"),
            ("connection", "upgrade"),
        ]);
        assert!(split.is_websocket_upgrade());
        for bad in [
            facts(&[
                (":method", "POST"),
                ("upgrade", "websocket"),
                ("connection", "upgrade"),
            ]),
            facts(&[
                (":method", "GET"),
                ("upgrade", "h2c"),
                ("connection", "upgrade"),
            ]),
            facts(&[(":method", "GET"), ("upgrade", "websocket")]),
            facts(&[(":method", "GET"), ("connection", "upgrade")]),
            facts(&[
                (":method", "GET"),
                ("upgrade", "websocket"),
                ("upgrade", "websocket"),
                ("connection", "upgrade"),
            ]),
            facts(&[
                (":method", "GET"),
                ("upgrade", "websocket"),
                ("connection", "upgraded"),
            ]),
        ] {
            assert!(!bad.is_websocket_upgrade(), "{bad:?}");
        }
    }

    fn byte_facts(headers: &[(&'static [u8], &'static [u8])]) -> RequestFacts<'static> {
        RequestFacts::from_header_bytes(headers.iter().copied(), "x-mksgate-cluster", None)
    }

    #[test]
    fn non_utf8_in_a_header_the_decision_reads_is_named() {
        for (name, field) in [
            (&b":method"[..], ":method"),
            (b":path", ":path"),
            (b"upgrade", "upgrade"),
            (b"connection", "connection"),
            (b"origin", "origin"),
            (b"x-mksgate-cluster", CLUSTER_HEADER),
        ] {
            let f = byte_facts(&[(b":path", b"/console?token=x"), (name, b"a\xffb")]);
            assert_eq!(f.malformed, Some(field), "{field}");
        }
        // The first one found is named.
        let f = byte_facts(&[(b"origin", b"\xe9"), (b"upgrade", b"\xe9")]);
        assert_eq!(f.malformed, Some("origin"));
    }

    #[test]
    fn non_utf8_elsewhere_is_not_looked_at() {
        let f = byte_facts(&[
            (b":method", b"GET"),
            (b":path", b"/console?token=x"),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"cookie", b"a=Espa\xf1a"),
            (b"user-agent", b"\xa1\xb1"),
            (b"x-\xff", b"\xff"),
        ]);
        assert_eq!(f.malformed, None);
        assert!(f.is_websocket_upgrade());
        assert!(!f.cluster_header_sent);
    }

    #[test]
    fn a_non_utf8_path_keeps_its_utf8_prefix() {
        let f = byte_facts(&[(b":path", b"/console/\xc3\xa9x\xff?token=t")]);
        assert_eq!((f.path, f.malformed), ("/console/\u{e9}x", Some(":path")));
        // A cut multi-byte sequence ends the prefix before it.
        let f = byte_facts(&[(b":path", b"/co\xc3")]);
        assert_eq!(f.path, "/co");
    }

    #[test]
    fn the_cluster_header_is_noticed_under_any_value() {
        assert!(byte_facts(&[(b"x-mksgate-cluster", b"esxi_a")]).cluster_header_sent);
        assert!(byte_facts(&[(b"x-mksgate-cluster", b"")]).cluster_header_sent);
        assert!(byte_facts(&[(b"x-mksgate-cluster", b"\x80")]).cluster_header_sent);
        // No configured name: nothing matches, not even an empty name.
        let f = RequestFacts::from_header_bytes([(&b""[..], &b"x"[..])], "", None);
        assert!(!f.cluster_header_sent);
    }

    #[test]
    fn origins_repeat() {
        let f = facts(&[("origin", "https://a"), ("origin", "https://b")]);
        assert_eq!(f.origin, HeaderValue::Repeated);
    }

    #[test]
    fn token_params() {
        assert_eq!(token_param("/console", "token"), TokenParam::Missing);
        assert_eq!(token_param("/console?token=", "token"), TokenParam::Missing);
        assert_eq!(
            token_param("/console?x=1&token=abc", "token"),
            TokenParam::One("abc")
        );
        assert_eq!(
            token_param("/console?token=a&token=b", "token"),
            TokenParam::Repeated
        );
        assert_eq!(
            token_param("/console?token=a&token=", "token"),
            TokenParam::Repeated
        );
        assert_eq!(
            token_param("/console?tokens=a&xtoken=b", "token"),
            TokenParam::Missing
        );
        assert_eq!(
            token_param("/console?token=a#token=b", "token"),
            TokenParam::One("a")
        );
        assert_eq!(token_param("/console?token", "token"), TokenParam::Missing);
    }
}
