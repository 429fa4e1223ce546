//! Config text for tests and benchmarks: the shipped files read as they
//! are, exact replacements that fail when the text they patch drifts, and
//! `${NAME}` templates.

use crate::paths::workspace_root;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Read `<workspace>/envoy/<rel>` as is.
pub fn read_envoy_file(rel: &str) -> Result<String> {
    let path = workspace_root().join("envoy").join(rel);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Replace literal strings (for configs without placeholders, such as the
/// shipped ones): every `from` must occur at least once, so a test notices
/// when the file it patches changes under it. Replacements apply in order,
/// each on the result of the previous one.
pub fn replace_exact<F: AsRef<str>, T: AsRef<str>>(text: &str, pairs: &[(F, T)]) -> Result<String> {
    let mut out = text.to_string();
    let mut missing = Vec::new();
    for (from, to) in pairs {
        let from = from.as_ref();
        if from.is_empty() || !out.contains(from) {
            missing.push(format!("{from:?}"));
            continue;
        }
        out = out.replace(from, to.as_ref());
    }
    if !missing.is_empty() {
        bail!("strings to replace not found: {}", missing.join(", "));
    }
    Ok(out)
}

/// Substitute `${NAME}` placeholders (NAME of `A-Z 0-9 _`) from `vars`;
/// fail if any is left or unterminated, listing them. Other `${` text
/// (a comment saying `${...}`) stays. Values are not re-scanned.
pub fn render<K: AsRef<str>, V: AsRef<str>>(template: &str, vars: &[(K, V)]) -> Result<String> {
    let map: BTreeMap<&str, &str> = vars.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    let mut out = String::with_capacity(template.len());
    let mut missing = BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        let name = &after[..len];
        if name.is_empty() {
            out.push_str("${");
            rest = after;
            continue;
        }
        if !after[len..].starts_with('}') {
            missing.insert(format!("(unterminated) {name}"));
            out.push_str("${");
            rest = after;
            continue;
        }
        match map.get(name) {
            Some(v) => out.push_str(v),
            None => {
                missing.insert(name.to_string());
                out.push_str(&rest[start..start + 2 + len + 1]);
            }
        }
        rest = &after[len + 1..];
    }
    out.push_str(rest);
    if !missing.is_empty() {
        bail!(
            "template placeholders left unsubstituted: {}",
            missing
                .into_iter()
                .map(|m| format!("${{{m}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}

/// Read `<workspace>/envoy/<rel>` and [`render`] it.
pub fn render_file<K: AsRef<str>, V: AsRef<str>>(rel: &str, vars: &[(K, V)]) -> Result<String> {
    let text = read_envoy_file(rel)?;
    render(&text, vars).with_context(|| format!("rendering envoy/{rel}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_substitutes_and_rejects_leftovers() {
        let out = render("a: ${A}\nb: ${B_2} ${A}", &[("A", "1"), ("B_2", "two")]).unwrap();
        assert_eq!(out, "a: 1\nb: two 1");
        let err = render("a: ${A} ${C}", &[("A", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("${C}"), "{err}");
        let err = render("a: ${A", &[("A", "1")]).unwrap_err().to_string();
        assert!(err.contains("unterminated"), "{err}");
        // Values are not re-scanned, and a comment's `${...}` stays.
        assert_eq!(render("${A}", &[("A", "${B}")]).unwrap(), "${B}");
        let t = "port ${PORT} # ${...} stays\nmodule ${MODULE}";
        let out = render(t, &[("PORT", "80"), ("MODULE", "/m.wasm")]).unwrap();
        assert_eq!(out, "port 80 # ${...} stays\nmodule /m.wasm");
    }

    #[test]
    fn replace_exact_requires_every_string() {
        let out = replace_exact(
            "port_value: 443 # x",
            &[("port_value: 443", "port_value: 0")],
        )
        .unwrap();
        assert_eq!(out, "port_value: 0 # x");
        let err = replace_exact("abc", &[("a", "b"), ("zzz", "y")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("zzz") && !err.contains("\"a\""), "{err}");
    }
}
