//! Shared pieces of the fuzz targets: the fixed keys and configs, the
//! structured input of the `decide` target, and the oracle (which the
//! proptest suite in `core/tests/properties.rs` includes as well).
//!
//! The structured input is laid out so that the all-zero input (which is
//! what `arbitrary` decodes from no data) is a valid, admitted console
//! request: every enum's first variant and every `false`/`None` is the
//! "good" choice. Each byte the fuzzer adds moves one step away from it, so
//! the deep branches (claims, target, origin, client) are reached at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod oracle;

use arbitrary::Arbitrary;
use mksgate_core::config::Config;
use mksgate_core::jws::{self, Alg, Key};
use mksgate_core::request::RequestFacts;
use serde_json::{json, Map, Value};

pub mod fixtures;
pub use fixtures::*;

/// Hosts the allowlists name (their hostile look-alikes: `oracle::HOSTILE`).
pub const LISTED: &[&str] = &[
    "vesxi01.sec.lab",
    "10.0.0.9",
    "2001:db8::7",
    "[2001:db8::7]",
];

pub use oracle::HOSTILE;

/// Makes `text` a DNS label (a-z 0-9 -, no edge hyphen, 1 to 63 long).
pub fn label(text: &str) -> String {
    let s: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .map(|c| c.to_ascii_lowercase())
        .take(63)
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() || s.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only would be an all-numeric label; 62 + 1 stays a label.
        format!("h{}", &s[..s.len().min(62)])
    } else {
        s
    }
}

/// Makes `text` a ticket (unreserved characters, 1 to 256, not `.`/`..`).
pub fn ticket(text: &str) -> String {
    let s: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
        .take(256)
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        format!("t{s}")
    } else {
        s
    }
}

// ---------------------------------------------------------------------
// The structured input of the `decide` target. First variant = good.

#[derive(Arbitrary, Debug, Clone)]
pub struct DecideInput {
    pub lenient: bool,
    pub method: Method,
    pub path: PathChoice,
    pub query_before: Vec<QueryPart>,
    pub token: TokenChoice,
    pub query_after: Vec<QueryPart>,
    pub upgrade: Upgrade,
    pub no_connection_upgrade: bool,
    pub origin: OriginHeader,
    pub client: Client,
    pub clock: Clock,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Method {
    Get,
    Post,
    LowerGet,
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum PathChoice {
    Prefix,
    Below(String),
    LookAlike,
    TrailingSlash,
    Other(String),
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum QueryPart {
    Pair(String, String),
    Raw(String),
    Fragment(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum TokenChoice {
    Signed(SignedToken),
    Absent,
    Empty,
    Raw(String),
    Twice(SignedToken),
    EmptyThenSigned(SignedToken),
    SignedThenEmpty(SignedToken),
}

#[derive(Arbitrary, Debug, Clone)]
pub struct SignedToken {
    pub key: KeyChoice,
    pub header: HeaderChoice,
    pub claims: ClaimsChoice,
    pub tamper: Option<(u16, u8)>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum KeyChoice {
    K1,
    K2,
    /// k1's secret, but HS384: the alg does not match the configured one.
    K1Hs384,
    /// A forger's key under kid k1.
    Foreign,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum HeaderChoice {
    Standard,
    NoKid,
    NoTyp,
    Kid(String),
    Alg(String),
    AlgNone,
    Crit,
    Typ(String),
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum ClaimsChoice {
    Structured(Box<ClaimSet>),
    Raw(String),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone)]
pub struct ClaimSet {
    pub exp: Date,
    pub iat: Option<Date>,
    pub nbf: Option<Date>,
    pub iss: Text,
    pub aud: Aud,
    pub jti: Jti,
    pub target: TargetChoice,
    pub ip: Option<IpClaim>,
    pub origin: Option<OriginClaim>,
    pub sub: Option<String>,
    pub extra: Option<(String, i64)>,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Date {
    Good,
    Rel(i32),
    Abs(i64),
    Float(f64),
    Huge,
    Str(String),
    Null,
    Absent,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Text {
    Good,
    Absent,
    Other(String),
    Number(i64),
    Null,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Aud {
    Good,
    InList(Vec<String>),
    Absent,
    Other(String),
    MixedList,
    Object,
    Number,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Jti {
    Good,
    Text(String),
    Absent,
    Empty,
    Long(u8),
    Number(u32),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum TargetChoice {
    Host {
        host: HostChoice,
        port: Port,
        ticket: TicketChoice,
    },
    Url {
        upper_scheme: bool,
        host: HostChoice,
        port: Port,
        ticket: TicketChoice,
        tail: Option<String>,
    },
    RawUrl(String),
    Both,
    Neither,
    HostOnly(HostChoice),
    HostNumber(i64),
    UrlWithPort,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum HostChoice {
    Listed(u8),
    Suffixed { name: String, nested: bool },
    Hostile(u8),
    Upper(u8),
    Mutated { base: u8, at: u8, with: char },
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Port {
    Default,
    Num(u16),
    Big(u64),
    Text(String),
    Negative(i16),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum TicketChoice {
    Good(String),
    Raw(String),
    Dots(bool),
    Number(u32),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum IpClaim {
    ClientV4,
    Block(u8, [u8; 4]),
    V6(u8, [u8; 16]),
    Raw(String),
    Number,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum OriginClaim {
    Portal,
    Other(String),
    Number,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Upgrade {
    Websocket,
    Spaced,
    Absent,
    Repeated,
    Other(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum OriginHeader {
    Allowed(u8),
    Absent,
    Repeated,
    Upper,
    Other(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Client {
    V4,
    V6,
    Mapped,
    Bare,
    Absent,
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Clock {
    Now,
    Offset(i32),
    Raw(i64),
}

impl Clock {
    pub fn now(&self) -> i64 {
        match self {
            Clock::Now => NOW,
            Clock::Offset(o) => NOW.saturating_add(i64::from(*o)),
            Clock::Raw(t) => *t,
        }
    }
}

fn listed(i: u8) -> &'static str {
    LISTED[usize::from(i) % LISTED.len()]
}

impl HostChoice {
    fn text(&self) -> String {
        match self {
            HostChoice::Listed(i) => listed(*i).to_string(),
            HostChoice::Suffixed { name, nested } => {
                let suffix = if *nested {
                    "lab.esxi.example.com"
                } else {
                    "esxi.example.com"
                };
                format!("{}.{suffix}", label(name))
            }
            HostChoice::Hostile(i) => HOSTILE[usize::from(*i) % HOSTILE.len()].to_string(),
            HostChoice::Upper(i) => listed(*i).to_ascii_uppercase(),
            HostChoice::Mutated { base, at, with } => {
                let mut chars: Vec<char> = listed(*base).chars().collect();
                let at = usize::from(*at) % (chars.len() + 1);
                chars.insert(at, *with);
                chars.into_iter().collect()
            }
            HostChoice::Raw(s) => s.clone(),
        }
    }

    /// Bare IPv6 hosts need brackets inside a URL.
    fn url_text(&self) -> String {
        let text = self.text();
        if matches!(self, HostChoice::Listed(_) | HostChoice::Upper(_))
            && text.contains(':')
            && !text.starts_with('[')
        {
            format!("[{text}]")
        } else {
            text
        }
    }

    /// Allowlisted in the config in use (the lenient one lists no IPs).
    fn is_good(&self, lenient: bool) -> bool {
        match self {
            HostChoice::Listed(i) | HostChoice::Upper(i) => {
                !lenient || usize::from(*i) % LISTED.len() == 0
            }
            HostChoice::Suffixed { .. } => true,
            _ => false,
        }
    }
}

impl Port {
    fn json(&self) -> Option<Value> {
        match self {
            Port::Default => None,
            Port::Num(p) => Some(json!(p)),
            Port::Big(p) => Some(json!(p)),
            Port::Text(s) => Some(json!(s)),
            Port::Negative(n) => Some(json!(n)),
        }
    }

    fn url_text(&self) -> String {
        match self {
            Port::Default => String::new(),
            Port::Num(p) => format!(":{p}"),
            Port::Big(p) => format!(":{p}"),
            Port::Text(s) => format!(":{s}"),
            Port::Negative(n) => format!(":{n}"),
        }
    }

    fn is_good(&self) -> bool {
        matches!(self, Port::Default) || matches!(self, Port::Num(p) if *p != 0)
    }
}

impl TicketChoice {
    fn text(&self) -> String {
        match self {
            TicketChoice::Good(s) => ticket(s),
            TicketChoice::Raw(s) => s.clone(),
            TicketChoice::Dots(two) => if *two { ".." } else { "." }.to_string(),
            TicketChoice::Number(n) => n.to_string(),
        }
    }
}

impl Date {
    fn json(&self, now: i64, good: i64) -> Option<Value> {
        Some(match self {
            Date::Good => json!(now.saturating_add(good)),
            Date::Rel(r) => json!(now.saturating_add(i64::from(*r))),
            Date::Abs(t) => json!(t),
            Date::Float(f) => json!(f),
            Date::Huge => json!(u64::MAX),
            Date::Str(s) => json!(s),
            Date::Null => Value::Null,
            Date::Absent => return None,
        })
    }
}

impl ClaimSet {
    pub fn json(&self, now: i64) -> Value {
        let mut c = Map::new();
        let mut put = |name: &str, v: Option<Value>| {
            if let Some(v) = v {
                c.insert(name.to_string(), v);
            }
        };
        put("exp", self.exp.json(now, 60));
        put("iat", self.iat.as_ref().and_then(|d| d.json(now, 0)));
        put("nbf", self.nbf.as_ref().and_then(|d| d.json(now, -5)));
        put(
            "iss",
            match &self.iss {
                Text::Good => Some(json!("portal.example.com")),
                Text::Absent => None,
                Text::Other(s) => Some(json!(s)),
                Text::Number(n) => Some(json!(n)),
                Text::Null => Some(Value::Null),
            },
        );
        put(
            "aud",
            match &self.aud {
                Aud::Good => Some(json!("console.example.com")),
                Aud::InList(others) => {
                    let mut list: Vec<Value> = others.iter().map(|o| json!(o)).collect();
                    list.push(json!("console.example.com"));
                    Some(Value::Array(list))
                }
                Aud::Absent => None,
                Aud::Other(s) => Some(json!(s)),
                Aud::MixedList => Some(json!(["console.example.com", 7])),
                Aud::Object => Some(json!({"aud": "console.example.com"})),
                Aud::Number => Some(json!(1)),
            },
        );
        put(
            "jti",
            match &self.jti {
                Jti::Good => Some(json!("jti-0001")),
                Jti::Text(s) => Some(json!(s)),
                Jti::Absent => None,
                Jti::Empty => Some(json!("")),
                Jti::Long(n) => Some(json!("j".repeat(120 + usize::from(*n % 16)))),
                Jti::Number(n) => Some(json!(n)),
            },
        );
        match &self.target {
            TargetChoice::Host { host, port, ticket } => {
                put("host", Some(json!(host.text())));
                put("port", port.json());
                put("ticket", Some(json!(ticket.text())));
            }
            TargetChoice::Url {
                upper_scheme,
                host,
                port,
                ticket,
                tail,
            } => {
                let scheme = if *upper_scheme { "WSS" } else { "wss" };
                let url = format!(
                    "{scheme}://{}{}/ticket/{}{}",
                    host.url_text(),
                    port.url_text(),
                    ticket.text(),
                    tail.as_deref().unwrap_or_default()
                );
                put("url", Some(json!(url)));
            }
            TargetChoice::RawUrl(s) => put("url", Some(json!(s))),
            TargetChoice::Both => {
                put("url", Some(json!("wss://vesxi01.sec.lab/ticket/abc")));
                put("host", Some(json!("vesxi01.sec.lab")));
                put("ticket", Some(json!("abc")));
            }
            TargetChoice::Neither => {}
            TargetChoice::HostOnly(h) => put("host", Some(json!(h.text()))),
            TargetChoice::HostNumber(n) => {
                put("host", Some(json!(n)));
                put("ticket", Some(json!("abc")));
            }
            TargetChoice::UrlWithPort => {
                put("url", Some(json!("wss://vesxi01.sec.lab/ticket/abc")));
                put("port", Some(json!(8443)));
            }
        }
        put(
            "ip",
            self.ip.as_ref().map(|ip| match ip {
                IpClaim::ClientV4 => json!("192.0.2.10"),
                IpClaim::Block(p, a) => {
                    json!(format!("{}/{}", std::net::Ipv4Addr::from(*a), p % 40))
                }
                IpClaim::V6(p, a) => {
                    json!(format!(
                        "{}/{}",
                        std::net::Ipv6Addr::from(*a),
                        u16::from(*p) % 140
                    ))
                }
                IpClaim::Raw(s) => json!(s),
                IpClaim::Number => json!(3),
            }),
        );
        put(
            "origin",
            self.origin.as_ref().map(|o| match o {
                OriginClaim::Portal => json!("https://portal.example.com"),
                OriginClaim::Other(s) => json!(s),
                OriginClaim::Number => json!(5),
            }),
        );
        put("sub", self.sub.as_ref().map(|s| json!(s)));
        if let Some((name, v)) = &self.extra {
            c.entry(name.clone()).or_insert(json!(v));
        }
        Value::Object(c)
    }

    /// Every claim in its good form (or absent where that is fine).
    fn is_good(&self, lenient: bool) -> bool {
        let date_ok =
            |d: &Option<Date>| matches!(d, None | Some(Date::Good | Date::Null | Date::Absent));
        let target_ok = match &self.target {
            TargetChoice::Host { host, port, ticket } => {
                host.is_good(lenient) && port.is_good() && matches!(ticket, TicketChoice::Good(_))
            }
            TargetChoice::Url {
                host,
                port,
                ticket,
                tail,
                ..
            } => {
                host.is_good(lenient)
                    && port.is_good()
                    && matches!(ticket, TicketChoice::Good(_))
                    && tail.as_deref().unwrap_or_default().is_empty()
            }
            _ => false,
        };
        let extra_ok = match &self.extra {
            None => true,
            Some((name, _)) => !matches!(
                name.as_str(),
                "exp"
                    | "iat"
                    | "nbf"
                    | "iss"
                    | "aud"
                    | "jti"
                    | "host"
                    | "port"
                    | "ticket"
                    | "url"
                    | "ip"
                    | "origin"
                    | "sub"
                    | "tenant"
            ),
        };
        matches!(self.exp, Date::Good)
            && date_ok(&self.iat)
            && date_ok(&self.nbf)
            && matches!(self.iss, Text::Good)
            && matches!(self.aud, Aud::Good | Aud::InList(_))
            && matches!(self.jti, Jti::Good)
            && target_ok
            && matches!(self.ip, None | Some(IpClaim::ClientV4))
            && matches!(self.origin, None | Some(OriginClaim::Portal))
            && extra_ok
    }
}

impl SignedToken {
    pub fn token(&self, now: i64) -> String {
        let key = match self.key {
            KeyChoice::K1 => key_1(),
            KeyChoice::K2 => key_2(),
            KeyChoice::K1Hs384 => Key::new(
                Some("k1".into()),
                Alg::HS384,
                &[SECRET_1, SECRET_1].concat(),
            )
            .unwrap(),
            KeyChoice::Foreign => Key::new(Some("k1".into()), Alg::HS256, FOREIGN).unwrap(),
        };
        let alg = key.alg().name();
        let kid = key.kid().unwrap_or_default().to_string();
        let header = match &self.header {
            HeaderChoice::Standard => json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string(),
            HeaderChoice::NoKid => json!({"alg": alg, "typ": "JWT"}).to_string(),
            HeaderChoice::NoTyp => json!({"alg": alg, "kid": kid}).to_string(),
            HeaderChoice::Kid(k) => json!({"alg": alg, "kid": k}).to_string(),
            HeaderChoice::Alg(a) => json!({"alg": a, "kid": kid}).to_string(),
            HeaderChoice::AlgNone => json!({"alg": "none", "kid": kid}).to_string(),
            HeaderChoice::Crit => json!({"alg": alg, "kid": kid, "crit": ["exp"]}).to_string(),
            HeaderChoice::Typ(t) => json!({"alg": alg, "kid": kid, "typ": t}).to_string(),
            HeaderChoice::Raw(h) => h.clone(),
        };
        let claims = match &self.claims {
            ClaimsChoice::Structured(c) => c.json(now).to_string().into_bytes(),
            ClaimsChoice::Raw(s) => s.clone().into_bytes(),
            ClaimsChoice::Bytes(b) => b.clone(),
        };
        let token = jws::sign_with_header(&key, header.as_bytes(), &claims);
        match self.tamper {
            None => token,
            Some((at, byte)) => {
                let mut bytes = token.into_bytes();
                let at = usize::from(at) % bytes.len().max(1);
                if let Some(b) = bytes.get_mut(at) {
                    *b = byte;
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    fn is_good(&self, lenient: bool, now: i64) -> bool {
        let key_ok = match self.key {
            KeyChoice::K1 => true,
            KeyChoice::K2 => !lenient,
            _ => false,
        };
        let header_ok = match &self.header {
            HeaderChoice::Standard | HeaderChoice::NoTyp => true,
            HeaderChoice::NoKid | HeaderChoice::Kid(_) => lenient,
            _ => false,
        };
        let claims_ok = match &self.claims {
            ClaimsChoice::Structured(c) => c.is_good(lenient),
            _ => false,
        };
        // Long fuzz-chosen kids, subs or audiences can push the token past
        // MAX_TOKEN_LEN, which is refused as it should be.
        key_ok
            && header_ok
            && claims_ok
            && self.tamper.is_none()
            && self.token(now).len() <= jws::MAX_TOKEN_LEN
    }
}

/// An HTTP request as Envoy would hand it over, built from the input.
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub client: Option<String>,
    pub now: i64,
}

impl Request {
    pub fn facts(&self) -> RequestFacts<'_> {
        let mut pairs: Vec<(&str, &str)> = vec![(":method", &self.method), (":path", &self.path)];
        pairs.extend(self.headers.iter().map(|(n, v)| (*n, v.as_str())));
        RequestFacts::from_headers(pairs, self.client.as_deref())
    }
}

fn query_part(part: &QueryPart) -> String {
    match part {
        QueryPart::Pair(k, v) => format!("{k}={v}"),
        QueryPart::Raw(s) => s.clone(),
        QueryPart::Fragment(s) => format!("#{s}"),
    }
}

impl DecideInput {
    pub fn config<'c>(&self, strict: &'c Config, lenient: &'c Config) -> &'c Config {
        if self.lenient {
            lenient
        } else {
            strict
        }
    }

    pub fn request(&self) -> Request {
        let now = self.clock.now();
        let (prefix, param) = if self.lenient {
            ("/mks/console", "t")
        } else {
            ("/console", "token")
        };
        let method = match &self.method {
            Method::Get => "GET".to_string(),
            Method::Post => "POST".to_string(),
            Method::LowerGet => "get".to_string(),
            Method::Raw(m) => m.clone(),
        };
        let mut path = match &self.path {
            PathChoice::Prefix => prefix.to_string(),
            PathChoice::Below(rest) => format!("{prefix}/{rest}"),
            PathChoice::LookAlike => format!("{prefix}x"),
            PathChoice::TrailingSlash => format!("{prefix}/"),
            PathChoice::Other(p) => format!("/{p}"),
            PathChoice::Raw(p) => p.clone(),
        };
        let mut query: Vec<String> = self.query_before.iter().map(query_part).collect();
        match &self.token {
            TokenChoice::Signed(t) => query.push(format!("{param}={}", t.token(now))),
            TokenChoice::Absent => {}
            TokenChoice::Empty => query.push(format!("{param}=")),
            TokenChoice::Raw(s) => query.push(format!("{param}={s}")),
            TokenChoice::Twice(t) => {
                let token = t.token(now);
                query.push(format!("{param}={token}"));
                query.push(format!("{param}={token}"));
            }
            TokenChoice::EmptyThenSigned(t) => {
                query.push(format!("{param}="));
                query.push(format!("{param}={}", t.token(now)));
            }
            TokenChoice::SignedThenEmpty(t) => {
                query.push(format!("{param}={}", t.token(now)));
                query.push(format!("{param}="));
            }
        }
        query.extend(self.query_after.iter().map(query_part));
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query.join("&"));
        }
        let mut headers = Vec::new();
        match &self.upgrade {
            Upgrade::Websocket => headers.push(("upgrade", "websocket".to_string())),
            Upgrade::Spaced => headers.push(("upgrade", " WebSocket ".to_string())),
            Upgrade::Absent => {}
            Upgrade::Repeated => {
                headers.push(("upgrade", "websocket".to_string()));
                headers.push(("upgrade", "websocket".to_string()));
            }
            Upgrade::Other(u) => headers.push(("upgrade", u.clone())),
        }
        if !self.no_connection_upgrade {
            headers.push(("connection", "keep-alive, Upgrade".to_string()));
        }
        match &self.origin {
            OriginHeader::Allowed(i) => headers.push((
                "origin",
                if i % 2 == 0 {
                    "https://portal.example.com"
                } else {
                    "http://localhost:8080"
                }
                .to_string(),
            )),
            OriginHeader::Absent => {}
            OriginHeader::Repeated => {
                headers.push(("origin", "https://portal.example.com".to_string()));
                headers.push(("origin", "https://evil.example.com".to_string()));
            }
            OriginHeader::Upper => {
                headers.push(("origin", "HTTPS://PORTAL.EXAMPLE.COM".to_string()))
            }
            OriginHeader::Other(o) => headers.push(("origin", o.clone())),
        }
        let client = match &self.client {
            Client::V4 => Some("192.0.2.10:55000".to_string()),
            Client::V6 => Some("[2001:db8::10]:55000".to_string()),
            Client::Mapped => Some("[::ffff:192.0.2.10]:55000".to_string()),
            Client::Bare => Some("192.0.2.10".to_string()),
            Client::Absent => None,
            Client::Raw(c) => Some(c.clone()),
        };
        Request {
            method,
            path,
            headers,
            client,
            now,
        }
    }

    /// Whether every choice is a good one, so the request must be admitted.
    pub fn must_admit(&self) -> bool {
        let token_ok = match &self.token {
            TokenChoice::Signed(t) => t.is_good(self.lenient, self.clock.now()),
            _ => false,
        };
        // A claimed origin needs the portal Origin header, and the 2nd
        // allowed origin differs from the claim.
        let origin_ok = match &self.token {
            TokenChoice::Signed(SignedToken {
                claims: ClaimsChoice::Structured(c),
                ..
            }) if c.origin.is_some() => {
                matches!(self.origin, OriginHeader::Allowed(i) if i % 2 == 0)
            }
            _ => matches!(self.origin, OriginHeader::Allowed(_)) || self.lenient,
        };
        let client_ok = match &self.token {
            TokenChoice::Signed(SignedToken {
                claims: ClaimsChoice::Structured(c),
                ..
            }) if c.ip.is_some() => {
                matches!(self.client, Client::V4 | Client::Mapped | Client::Bare)
            }
            _ => true,
        };
        let query_ok = |parts: &[QueryPart]| {
            parts.iter().all(|p| {
                matches!(p, QueryPart::Pair(k, v)
                    if !k.is_empty()
                        && k.bytes().all(|b| b.is_ascii_lowercase())
                        && !k.starts_with('t')
                        && v.bytes().all(|b| b.is_ascii_alphanumeric()))
            })
        };
        // Far from the edges of i64, where `exp` would saturate.
        let now = self.clock.now();
        (-(1i64 << 60)..(1i64 << 60)).contains(&now)
            && matches!(self.method, Method::Get)
            && matches!(self.path, PathChoice::Prefix | PathChoice::TrailingSlash)
            && query_ok(&self.query_before)
            && query_ok(&self.query_after)
            && token_ok
            && matches!(self.upgrade, Upgrade::Websocket | Upgrade::Spaced)
            && !self.no_connection_upgrade
            && origin_ok
            && client_ok
    }
}
