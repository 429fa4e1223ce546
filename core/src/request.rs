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

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// `:path` as received, query included.
    pub path: &'a str,
    pub upgrade: HeaderValue<'a>,
    /// `Connection` is a list header and may legally be split across lines;
    /// true when any of them names the `upgrade` token.
    pub connection_upgrade: bool,
    pub origin: HeaderValue<'a>,
    /// The downstream address as Envoy's `source.address` gives it
    /// (`1.2.3.4:5678` or `[::1]:5678`).
    pub client: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    /// Builds the facts from the request's header pairs (lower-case names,
    /// pseudo-headers included, as Envoy hands them over).
    pub fn from_headers<I>(headers: I, client: Option<&'a str>) -> RequestFacts<'a>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut facts = RequestFacts {
            client,
            ..RequestFacts::default()
        };
        for (name, value) in headers {
            match name {
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
