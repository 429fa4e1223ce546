//! The link's claims, borrowed from the decoded payload.
//!
//! Target fields (`host`, `port`, `ticket`, `url`) and bindings (`ip`,
//! `origin`, `aud`) are kept as raw JSON and typed later, so a wrong type
//! there is reported with its own code (`bad_target`) instead of failing the
//! whole parse. Unknown claims are ignored.

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Seconds since the epoch (RFC 7519 NumericDate). Fractions are floored;
/// values beyond i64 saturate, which the lifetime checks then refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericDate(pub i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if !v.is_finite() {
                    return Err(E::custom("not a finite number"));
                }
                // `as` saturates for floats, which is what we want here.
                Ok(NumericDate(v.floor() as i64))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
pub struct Claims<'a> {
    #[serde(default)]
    pub exp: Option<NumericDate>,
    #[serde(default)]
    pub nbf: Option<NumericDate>,
    #[serde(default)]
    pub iat: Option<NumericDate>,
    /// When the console opened with this link is closed.
    #[serde(default)]
    pub console_exp: Option<NumericDate>,
    #[serde(borrow, default)]
    pub iss: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub aud: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub jti: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub sub: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tenant: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub host: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub port: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub ticket: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub ip: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub origin: Option<&'a RawValue>,
}

impl<'a> Claims<'a> {
    pub fn parse(payload: &'a [u8]) -> Option<Claims<'a>> {
        // Top level must be an object; serde's struct visitor also accepts a
        // JSON array, which a JWT never is.
        if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return None;
        }
        serde_json::from_slice(payload).ok()
    }
}

/// A raw claim as a string, if it is one (`null` counts as absent upstream).
pub fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<Cow<'_, str>>(raw.get().as_bytes()).ok()
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); `None` when
/// it is neither.
pub fn audience_contains(raw: &RawValue, wanted: &str) -> Option<bool> {
    if let Some(single) = raw_str(raw) {
        return Some(single == wanted);
    }
    let list: Vec<Cow<'_, str>> = serde_json::from_slice(raw.get().as_bytes()).ok()?;
    Some(list.iter().any(|a| a == wanted))
}

/// `port`: a JSON integer 1..=65535, or the same as a decimal string.
pub fn port(raw: &RawValue) -> Option<u16> {
    if let Ok(n) = serde_json::from_slice::<u64>(raw.get().as_bytes()) {
        return u16::try_from(n).ok().filter(|p| *p != 0);
    }
    raw_str(raw).and_then(|s| crate::target::parse_port(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn numeric_dates() {
        let c = Claims::parse(br#"{"exp":1.9,"nbf":-5,"iat":18446744073709551615}"#).unwrap();
        assert_eq!(c.exp, Some(NumericDate(1)));
        assert_eq!(c.nbf, Some(NumericDate(-5)));
        assert_eq!(c.iat, Some(NumericDate(i64::MAX)));
        assert!(Claims::parse(br#"{"exp":"1"}"#).is_none());
        assert!(Claims::parse(br#"{"exp":1e400}"#).is_none());
    }

    #[test]
    fn shapes() {
        assert!(Claims::parse(b"[1]").is_none());
        assert!(Claims::parse(b"").is_none());
        assert!(
            Claims::parse(br#"{"exp":1,"exp":2}"#).is_none(),
            "duplicate claims are ambiguous"
        );
        let c = Claims::parse(br#"{"unknown":{"deep":[1]},"sub":"a\"b","host":7}"#).unwrap();
        assert_eq!(c.sub.as_deref(), Some("a\"b"));
        assert!(raw_str(c.host.unwrap()).is_none());
    }

    #[test]
    fn audiences_and_ports() {
        let c = Claims::parse(br#"{"aud":["x","console"],"port":"8443"}"#).unwrap();
        assert_eq!(audience_contains(c.aud.unwrap(), "console"), Some(true));
        assert_eq!(port(c.port.unwrap()), Some(8443));
        let c = Claims::parse(br#"{"aud":{"a":1},"port":70000}"#).unwrap();
        assert_eq!(audience_contains(c.aud.unwrap(), "console"), None);
        assert_eq!(port(c.port.unwrap()), None);
    }
}
