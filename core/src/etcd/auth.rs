//! etcd's access control through its JSON gateway. etcd ignores a client
//! certificate's common name on the gateway (CVE-2018-16886), so a user
//! there authenticates with a password (`POST /v3/auth/authenticate`) and
//! sends the token it gets in `Authorization` on every call. Tokens end
//! (simple tokens after `--auth-token-ttl` idle, 300 s by default; JWT
//! tokens at their expiry) and are refused then; etcd refuses a call with a
//! bad or missing token before it applies anything, so such a call is sent
//! again, once, after a fresh authentication.

use serde_json::Value;

pub const AUTHENTICATE_PATH: &str = "/v3/auth/authenticate";
/// How often each worker logs in again ahead of need, so a token rarely
/// ends under load (etcd's simple tokens last 300 s idle, JWTs 300 s by
/// default); one login per worker, not one per waiting claim.
pub const REFRESH_SECONDS: i64 = 60;
/// The longest user name accepted.
pub const MAX_USER_LEN: usize = 64;
/// The longest password accepted.
pub const MAX_PASSWORD_LEN: usize = 256;
/// The longest token accepted from etcd (simple tokens are about 20
/// bytes, JWTs a few hundred).
pub const MAX_TOKEN_LEN: usize = 2048;

/// The compiled `replay_store.etcd.auth`: the user, and the body of the
/// authenticate call (which holds the password: never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    user: String,
    authenticate_body: String,
}

impl std::fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The user name rule: 1 to 64 printable ASCII characters.
pub fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER_LEN
        && user.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// The password rule: 1 to 256 bytes of UTF-8.
pub fn valid_password(password: &str) -> bool {
    !password.is_empty() && password.len() <= MAX_PASSWORD_LEN
}

impl EtcdAuth {
    /// `user` and `password` must pass `valid_user` and `valid_password`.
    pub fn new(user: &str, password: &str) -> EtcdAuth {
        let body = serde_json::json!({"name": user, "password": password});
        EtcdAuth {
            user: user.to_string(),
            authenticate_body: body.to_string(),
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub(super) fn body(&self) -> &str {
        &self.authenticate_body
    }
}

/// The token in a successful authenticate answer.
pub(super) fn token_of(status: u16, body: &[u8]) -> Option<String> {
    if status != 200 {
        return None;
    }
    let map = super::object(body)?;
    match map.get("token") {
        Some(Value::String(t))
            if !t.is_empty()
                && t.len() <= MAX_TOKEN_LEN
                && t.bytes().all(|b| (0x21..0x7f).contains(&b)) =>
        {
            Some(t.clone())
        }
        _ => None,
    }
}

/// Whether etcd refused a call for its token (none, a bad one, an ended
/// one, or one from before an auth change): nothing was applied.
pub fn is_token_refusal(status: u16, body: &[u8]) -> bool {
    let Some(map) = super::object(body) else {
        return false;
    };
    match status {
        401 => super::error_is(&map, 16, "etcdserver: invalid auth token"),
        400 => {
            super::error_is(&map, 3, "etcdserver: user name is empty")
                || super::error_is(&map, 3, "etcdserver: revision of auth store is old")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
