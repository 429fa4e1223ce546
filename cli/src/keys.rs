//! Where a signing key comes from, and the HMAC algorithm names.

use crate::util::{fail, Outcome};
use mksgate_core::jws::{decode_secret, Alg, Key, KeyError};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AlgArg {
    #[value(name = "HS256", alias = "hs256")]
    Hs256,
    #[value(name = "HS384", alias = "hs384")]
    Hs384,
    #[value(name = "HS512", alias = "hs512")]
    Hs512,
}

impl AlgArg {
    pub fn alg(self) -> Alg {
        match self {
            AlgArg::Hs256 => Alg::HS256,
            AlgArg::Hs384 => Alg::HS384,
            AlgArg::Hs512 => Alg::HS512,
        }
    }
}

/// The secret: one of three sources. Never echoed, in errors included.
#[derive(Debug, clap::Args)]
#[group(id = "key_source", multiple = false)]
pub struct KeySource {
    /// Environment variable holding the base64url secret (recommended).
    #[arg(long, value_name = "NAME")]
    pub key_env: Option<String>,
    /// File holding the base64url secret (or a `NAME=secret` line, as
    /// `mksgate keygen` prints it).
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// The base64url secret itself. Discouraged: it lands in shell history
    /// and in the process list.
    #[arg(long, value_name = "B64")]
    pub key: Option<String>,
}

impl KeySource {
    pub fn given(&self) -> bool {
        self.key_env.is_some() || self.key_file.is_some() || self.key.is_some()
    }

    /// The decoded secret and a description of where it came from, or
    /// `None` when no source was given.
    pub fn secret(&self) -> Outcome<Option<(Vec<u8>, String)>> {
        let (text, from) = if let Some(name) = &self.key_env {
            let value = std::env::var(name).map_err(|_| {
                fail(format!(
                    "--key-env {name}: the environment variable is not set (or not UTF-8)"
                ))
            })?;
            (value, format!("environment variable {name}"))
        } else if let Some(path) = &self.key_file {
            let content = std::fs::read_to_string(path)
                .map_err(|e| fail(format!("--key-file {}: {e}", path.display())))?;
            (
                secret_from_file(&content).to_string(),
                format!("file {}", path.display()),
            )
        } else if let Some(value) = &self.key {
            eprintln!(
                "warning: --key puts the secret in shell history and the process list; prefer --key-env or --key-file"
            );
            (value.clone(), "--key".to_string())
        } else {
            return Ok(None);
        };
        let secret = decode_secret(&text)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| fail(format!("the key from {from} is not base64url")))?;
        Ok(Some((secret, from)))
    }
}

/// A key file holds the secret alone, or the `NAME=secret` line keygen
/// prints (comments and blank lines are skipped).
fn secret_from_file(content: &str) -> &str {
    let line = content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    match line.split_once('=') {
        Some((name, value))
            if !name.is_empty()
                && !value.trim_end_matches('=').is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            value.trim()
        }
        _ => line,
    }
}

/// Builds a key, with the length rule spelled out when the secret is short.
pub fn make_key(kid: Option<String>, alg: Alg, secret: &[u8], from: &str) -> Outcome<Key> {
    Key::new(kid, alg, secret).map_err(|KeyError::TooShort { min }| {
        fail(format!(
            "the key from {from} is {} bytes; {} needs at least {min}",
            secret.len(),
            alg.name()
        ))
    })
}

/// The plugin configuration's `keys[].kid` rule (core's).
pub fn check_kid(kid: &str) -> Outcome<()> {
    if mksgate_core::jws::valid_kid(kid) {
        Ok(())
    } else {
        Err(fail("--kid must be 1 to 64 printable ASCII characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files() {
        assert_eq!(secret_from_file("abc\n"), "abc");
        assert_eq!(secret_from_file("# x\n\nMKSGATE_KEY_1=abc\n"), "abc");
        assert_eq!(secret_from_file("abc==\n"), "abc==");
        assert_eq!(secret_from_file(""), "");
    }
}
