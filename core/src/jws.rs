//! JWS compact serialization with HMAC only (RFC 7515, RFC 7518 §3.2).
//!
//! Verification decodes into caller-provided stack buffers (no heap), picks
//! the key by `kid`, insists the header's `alg` is the key's configured alg,
//! and compares the MAC in constant time (`Mac::verify_slice`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Sha256, Sha384, Sha512};
use std::borrow::Cow;

/// Longest token accepted, in bytes of its compact form.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Room for any decoded segment of a token within `MAX_TOKEN_LEN`.
pub const MAX_DECODED_LEN: usize = MAX_TOKEN_LEN / 4 * 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "HS256" => Some(Alg::HS256),
            "HS384" => Some(Alg::HS384),
            "HS512" => Some(Alg::HS512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    /// RFC 7518 §3.2: a key of the same size as the hash output or larger.
    pub fn min_secret_len(self) -> usize {
        match self {
            Alg::HS256 => 32,
            Alg::HS384 => 48,
            Alg::HS512 => 64,
        }
    }
}

/// A MAC already keyed at configuration time; each verification clones the
/// keyed state instead of redoing the key schedule.
#[derive(Clone)]
enum KeyedMac {
    HS256(Hmac<Sha256>),
    HS384(Hmac<Sha384>),
    HS512(Hmac<Sha512>),
}

/// A signing key. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    alg: Alg,
    mac: KeyedMac,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// The secret is shorter than the alg's hash output.
    TooShort { min: usize },
}

impl Key {
    pub fn new(kid: Option<String>, alg: Alg, secret: &[u8]) -> Result<Key, KeyError> {
        if secret.len() < alg.min_secret_len() {
            return Err(KeyError::TooShort {
                min: alg.min_secret_len(),
            });
        }
        // HMAC accepts keys of any length, so these constructors cannot fail;
        // the error arm is mapped rather than unwrapped all the same.
        let too_short = KeyError::TooShort {
            min: alg.min_secret_len(),
        };
        let mac = match alg {
            Alg::HS256 => {
                KeyedMac::HS256(Hmac::<Sha256>::new_from_slice(secret).map_err(|_| too_short)?)
            }
            Alg::HS384 => {
                KeyedMac::HS384(Hmac::<Sha384>::new_from_slice(secret).map_err(|_| too_short)?)
            }
            Alg::HS512 => {
                KeyedMac::HS512(Hmac::<Sha512>::new_from_slice(secret).map_err(|_| too_short)?)
            }
        };
        Ok(Key { kid, alg, mac })
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    fn mac_of(&self, signing_input: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + Clone>(mac: &M, parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = mac.clone();
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match &self.mac {
            KeyedMac::HS256(m) => run(m, signing_input),
            KeyedMac::HS384(m) => run(m, signing_input),
            KeyedMac::HS512(m) => run(m, signing_input),
        }
    }

    /// Constant-time check of `signature` over `header_b64 "." payload_b64`.
    fn verifies(&self, header_b64: &[u8], payload_b64: &[u8], signature: &[u8]) -> bool {
        fn run<M: Mac + Clone>(mac: &M, h: &[u8], p: &[u8], sig: &[u8]) -> bool {
            let mut mac = mac.clone();
            mac.update(h);
            mac.update(b".");
            mac.update(p);
            mac.verify_slice(sig).is_ok()
        }
        match &self.mac {
            KeyedMac::HS256(m) => run(m, header_b64, payload_b64, signature),
            KeyedMac::HS384(m) => run(m, header_b64, payload_b64, signature),
            KeyedMac::HS512(m) => run(m, header_b64, payload_b64, signature),
        }
    }
}

/// The configured keys, in configuration order.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub fn new(keys: Vec<Key>) -> KeySet {
        KeySet { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// The key a token's `kid` selects. With one key configured, a token
    /// without `kid` uses it, and so does any `kid` when that key has none;
    /// with several, `kid` is required and must match exactly.
    pub fn select(&self, kid: Option<&str>) -> Option<&Key> {
        if let [only] = self.keys.as_slice() {
            return match (kid, only.kid()) {
                (None, _) | (Some(_), None) => Some(only),
                (Some(want), Some(have)) if want == have => Some(only),
                _ => None,
            };
        }
        let kid = kid?;
        self.keys.iter().find(|k| k.kid() == Some(kid))
    }
}

/// Why a token was not accepted. Each maps to one reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url segments, too long, or a header that is not the
    /// JSON object we require (`typ` other than JWT included).
    Malformed,
    /// Unknown `kid`, an `alg` other than the key's (`none` and asymmetric
    /// algs included), a `crit` header, or a wrong MAC.
    BadSignature,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Scratch space for one verification, on the caller's stack.
pub struct Scratch {
    header: [u8; MAX_DECODED_LEN],
    payload: [u8; MAX_DECODED_LEN],
    signature: [u8; 96],
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            header: [0; MAX_DECODED_LEN],
            payload: [0; MAX_DECODED_LEN],
            signature: [0; 96],
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// A token whose signature checked out.
pub struct Verified<'k, 's> {
    pub key: &'k Key,
    /// The decoded claims JSON.
    pub payload: &'s [u8],
}

/// The `kid` rule (of `keys[].kid` and of the CLI): 1 to 64 printable
/// ASCII characters.
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 64 && kid.bytes().all(|b| b.is_ascii_graphic())
}

/// The protected header `sign` writes for `key`.
pub fn header_json(key: &Key) -> serde_json::Value {
    match key.kid() {
        Some(kid) => serde_json::json!({"alg": key.alg().name(), "typ": "JWT", "kid": kid}),
        None => serde_json::json!({"alg": key.alg().name(), "typ": "JWT"}),
    }
}

/// Longest unverified `kid` copied into a log line, in characters.
const MAX_PEEKED_KID: usize = 64;

/// The header's `kid`, if the token is well formed enough to have one; used
/// only to label refusals in logs, never to trust anything. The kid is
/// unverified client input, so only printable ASCII is copied as it is;
/// anything else (bidi controls such as U+202E, which can make forged-token
/// noise read like a real key id in a SIEM, or other controls) is written as
/// a visible `\u{..}` escape.
pub fn peek_kid(token: &str) -> Option<String> {
    let header_b64 = token.split('.').next()?;
    let mut buf = [0u8; MAX_DECODED_LEN];
    let n = URL_SAFE_NO_PAD
        .decode_slice(header_b64.as_bytes(), &mut buf)
        .ok()?;
    let header: Header = serde_json::from_slice(buf.get(..n)?).ok()?;
    let mut out = String::new();
    for c in header.kid?.chars().take(MAX_PEEKED_KID) {
        if c == ' ' || (c.is_ascii_graphic() && c != '\\') {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    Some(out)
}

fn decode_into<'s>(segment: &str, out: &'s mut [u8]) -> Result<&'s [u8], TokenError> {
    let n = URL_SAFE_NO_PAD
        .decode_slice(segment.as_bytes(), out)
        .map_err(|_| TokenError::Malformed)?;
    out.get(..n).ok_or(TokenError::Malformed)
}

fn is_b64url(segment: &str) -> bool {
    segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Verifies a compact JWS against the key set.
pub fn verify<'k, 's>(
    keys: &'k KeySet,
    token: &str,
    scratch: &'s mut Scratch,
) -> Result<Verified<'k, 's>, TokenError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if header_b64.is_empty()
        || payload_b64.is_empty()
        || !is_b64url(header_b64)
        || !is_b64url(payload_b64)
        || !is_b64url(sig_b64)
    {
        return Err(TokenError::Malformed);
    }
    let header_json = decode_into(header_b64, &mut scratch.header)?;
    let header: Header = serde_json::from_slice(header_json).map_err(|_| TokenError::Malformed)?;
    if let Some(typ) = &header.typ {
        if !typ.eq_ignore_ascii_case("JWT") {
            return Err(TokenError::Malformed);
        }
    }
    if header.crit.is_some() {
        return Err(TokenError::BadSignature);
    }
    let key = keys
        .select(header.kid.as_deref())
        .ok_or(TokenError::BadSignature)?;
    if header.alg != key.alg().name() {
        return Err(TokenError::BadSignature);
    }
    let signature = decode_into(sig_b64, &mut scratch.signature).map_err(|_| {
        // A signature longer than any HMAC output is simply a wrong one.
        TokenError::BadSignature
    })?;
    if !key.verifies(header_b64.as_bytes(), payload_b64.as_bytes(), signature) {
        return Err(TokenError::BadSignature);
    }
    let payload = decode_into(payload_b64, &mut scratch.payload)?;
    Ok(Verified { key, payload })
}

/// Signs `claims_json` with `key`: header `{"alg":..,"typ":"JWT","kid":..}`.
pub fn sign(key: &Key, claims_json: &[u8]) -> String {
    sign_with_header(key, header_json(key).to_string().as_bytes(), claims_json)
}

/// Signs with an arbitrary header; for tests and tools that need to build
/// hostile tokens. The filter never calls it.
pub fn sign_with_header(key: &Key, header_json: &[u8], claims_json: &[u8]) -> String {
    let header_b64 = URL_SAFE_NO_PAD.encode(header_json);
    let payload_b64 = URL_SAFE_NO_PAD.encode(claims_json);
    let mac = key.mac_of(&[header_b64.as_bytes(), b".", payload_b64.as_bytes()]);
    format!("{header_b64}.{payload_b64}.{}", URL_SAFE_NO_PAD.encode(mac))
}

/// Decodes a base64url secret, padded or not (the encoding of
/// `secret_base64url`, of `secret_env` values and of `mksgate keygen`).
pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(trimmed).ok()
}

pub fn encode_secret(secret: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// RFC 7515 Appendix A.1: the HS256 example, key and token verbatim.
    const RFC_KEY_JWK_K: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    const RFC_TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn rfc_keys() -> KeySet {
        let secret = decode_secret(RFC_KEY_JWK_K).unwrap();
        KeySet::new(vec![Key::new(None, Alg::HS256, &secret).unwrap()])
    }

    #[test]
    fn peeked_kid_is_printable_ascii_only() {
        let token = |kid: &str| {
            let header = serde_json::json!({"alg": "HS256", "kid": kid}).to_string();
            format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(header))
        };
        assert_eq!(peek_kid(&token("2026-11")).as_deref(), Some("2026-11"));
        // U+202E (right-to-left override) would show "11-6202" as "2026-11".
        assert_eq!(
            peek_kid(&token("\u{202e}11-6202")).as_deref(),
            Some("\\u{202e}11-6202")
        );
        // Controls, DEL, a backslash (so an escape cannot be forged) and
        // non-ASCII letters are all escaped.
        assert_eq!(
            peek_kid(&token("a\n\u{7f}\\\u{e9}")).as_deref(),
            Some("a\\u{a}\\u{7f}\\u{5c}\\u{e9}")
        );
        let long = "k".repeat(500);
        assert_eq!(peek_kid(&token(&long)).map(|k| k.len()), Some(64));
    }

    #[test]
    fn rfc7515_a1_verifies() {
        let keys = rfc_keys();
        let mut scratch = Scratch::new();
        let verified = verify(&keys, RFC_TOKEN, &mut scratch).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(verified.payload).unwrap();
        assert_eq!(claims["iss"], "joe");
        assert_eq!(claims["exp"], 1300819380);
    }

    #[test]
    fn rfc7515_a1_altered_signature_fails() {
        let keys = rfc_keys();
        let mut bad = RFC_TOKEN.to_string();
        bad.pop();
        bad.push('Y');
        assert_eq!(
            verify(&keys, &bad, &mut Scratch::new()).err(),
            Some(TokenError::BadSignature)
        );
    }

    fn key(kid: &str, alg: Alg) -> Key {
        Key::new(Some(kid.into()), alg, &[7u8; 64]).unwrap()
    }

    #[test]
    fn round_trip_every_alg() {
        for alg in [Alg::HS256, Alg::HS384, Alg::HS512] {
            let k = key("a", alg);
            let token = sign(&k, br#"{"exp":1}"#);
            let keys = KeySet::new(vec![k]);
            let mut scratch = Scratch::new();
            let v = verify(&keys, &token, &mut scratch).unwrap();
            assert_eq!(v.payload, br#"{"exp":1}"#);
        }
    }

    #[test]
    fn short_secrets_refused() {
        assert_eq!(
            Key::new(None, Alg::HS256, &[0; 31]).err(),
            Some(KeyError::TooShort { min: 32 })
        );
        assert!(Key::new(None, Alg::HS384, &[0; 47]).is_err());
        assert!(Key::new(None, Alg::HS512, &[0; 63]).is_err());
        assert!(Key::new(None, Alg::HS512, &[0; 64]).is_ok());
    }

    #[test]
    fn alg_confusion_and_none_refused() {
        let k = key("a", Alg::HS256);
        let keys = KeySet::new(vec![k.clone()]);
        for alg in ["none", "HS384", "RS256", "ES256", "hs256", "EdDSA"] {
            let header = format!(r#"{{"alg":"{alg}","kid":"a"}}"#);
            let token = sign_with_header(&k, header.as_bytes(), br#"{"exp":1}"#);
            assert_eq!(
                verify(&keys, &token, &mut Scratch::new()).err(),
                Some(TokenError::BadSignature),
                "{alg}"
            );
        }
        // alg none with an empty signature, the classic form.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"exp":1}"#)
        );
        assert_eq!(
            verify(&keys, &unsigned, &mut Scratch::new()).err(),
            Some(TokenError::BadSignature)
        );
    }

    #[test]
    fn crit_and_typ() {
        let k = key("a", Alg::HS256);
        let keys = KeySet::new(vec![k.clone()]);
        let crit = sign_with_header(&k, br#"{"alg":"HS256","crit":["exp"]}"#, b"{}");
        assert_eq!(
            verify(&keys, &crit, &mut Scratch::new()).err(),
            Some(TokenError::BadSignature)
        );
        let typ = sign_with_header(&k, br#"{"alg":"HS256","typ":"JOSE"}"#, b"{}");
        assert_eq!(
            verify(&keys, &typ, &mut Scratch::new()).err(),
            Some(TokenError::Malformed)
        );
        let jwt = sign_with_header(&k, br#"{"alg":"HS256","typ":"jwt"}"#, b"{}");
        assert!(verify(&keys, &jwt, &mut Scratch::new()).is_ok());
    }

    #[test]
    fn kid_selection() {
        let a = key("a", Alg::HS256);
        let b = Key::new(Some("b".into()), Alg::HS512, &[9u8; 64]).unwrap();
        let keys = KeySet::new(vec![a.clone(), b.clone()]);
        assert!(verify(&keys, &sign(&b, b"{}"), &mut Scratch::new()).is_ok());
        assert!(verify(&keys, &sign(&a, b"{}"), &mut Scratch::new()).is_ok());
        // Several keys: a token without kid, or with an unknown one, is refused.
        let no_kid = Key::new(None, Alg::HS256, &[7u8; 64]).unwrap();
        assert_eq!(
            verify(&keys, &sign(&no_kid, b"{}"), &mut Scratch::new()).err(),
            Some(TokenError::BadSignature)
        );
        let other = key("c", Alg::HS256);
        assert_eq!(
            verify(&keys, &sign(&other, b"{}"), &mut Scratch::new()).err(),
            Some(TokenError::BadSignature)
        );
        // One key with a kid: a wrong kid is refused, a missing one accepted.
        let single = KeySet::new(vec![a.clone()]);
        assert!(verify(&single, &sign(&no_kid, b"{}"), &mut Scratch::new()).is_ok());
        assert!(verify(&single, &sign(&other, b"{}"), &mut Scratch::new()).is_err());
    }

    #[test]
    fn malformed_shapes() {
        let keys = KeySet::new(vec![key("a", Alg::HS256)]);
        let good = sign(&key("a", Alg::HS256), b"{}");
        let (h, rest) = good.split_once('.').unwrap();
        let cases = [
            String::new(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!(".{rest}"),
            format!("{h}=.{rest}"),
            format!("{h}+.{rest}"),
            "x".repeat(MAX_TOKEN_LEN + 1),
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode("[]")),
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode("not json")),
        ];
        for case in cases {
            assert_eq!(
                verify(&keys, &case, &mut Scratch::new()).err(),
                Some(TokenError::Malformed),
                "{case:.60}"
            );
        }
    }

    #[test]
    fn debug_hides_secret() {
        let k = Key::new(
            Some("kid1".into()),
            Alg::HS256,
            b"0123456789abcdef0123456789abcdefSECRET",
        )
        .unwrap();
        let shown = format!("{k:?}");
        assert!(shown.contains("kid1") && !shown.contains("SECRET"));
    }
}
