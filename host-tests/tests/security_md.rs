//! SECURITY.md cannot cite a test that does not exist: every
//! `path/to/file.rs::test_name` in it must name a file of this workspace
//! holding `fn test_name` marked as a test (`#[test]`, `#[tokio::test]`, or
//! `#[test]` inside `proptest!`) and not `#[ignore]`d. Each threat section
//! must cite at least one test and say what is not tested.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn security_md() -> String {
    let path = workspace().join("SECURITY.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `path.rs::name` in `text`, in order of appearance.
fn references(text: &str) -> Vec<(String, String)> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-');
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(".rs::") {
        let at = from + at;
        let start = text[..at].rfind(|c: char| !is_path(c)).map_or(0, |i| i + 1);
        let name_start = at + ".rs::".len();
        let name_end = text[name_start..]
            .find(|c: char| !is_ident(c))
            .map_or(text.len(), |i| name_start + i);
        let path = &text[start..at + ".rs".len()];
        let name = &text[name_start..name_end];
        if !path.is_empty() && !name.is_empty() {
            out.push((path.to_string(), name.to_string()));
        }
        from = name_end.max(at + 1);
    }
    out
}

/// Why `name` in `source` is not a runnable test, or `None` if it is one.
fn not_a_test(source: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let defs: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start();
            let t = t.strip_prefix("pub ").unwrap_or(t);
            let t = t.strip_prefix("async ").unwrap_or(t);
            t.strip_prefix("fn ")
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with('(') || rest.starts_with('<'))
        })
        .map(|(i, _)| i)
        .collect();
    let Some(&def) = defs.first() else {
        return Some(format!("no `fn {name}`"));
    };
    if defs.len() > 1 {
        return Some(format!("`fn {name}` defined {} times", defs.len()));
    }
    // The attributes (and doc comments) right above the definition.
    let mut attrs = Vec::new();
    for l in lines[..def].iter().rev() {
        let t = l.trim();
        if t.starts_with("#[") || t.starts_with("///") || t.starts_with("//") {
            attrs.push(t);
        } else {
            break;
        }
    }
    if attrs.iter().any(|a| a.starts_with("#[ignore")) {
        return Some(format!("`fn {name}` is #[ignore]d"));
    }
    let is_test = attrs
        .iter()
        .any(|a| *a == "#[test]" || a.starts_with("#[tokio::test") || a.starts_with("#[test_case"));
    if !is_test {
        return Some(format!("`fn {name}` is not marked as a test"));
    }
    None
}

#[test]
fn every_cited_test_exists() {
    let text = security_md();
    let refs = references(&text);
    assert!(refs.len() >= 40, "only {} references", refs.len());
    let root = workspace();
    let mut problems = Vec::new();
    let mut distinct = BTreeSet::new();
    for (path, name) in &refs {
        if !distinct.insert((path.clone(), name.clone())) {
            continue;
        }
        let file = root.join(path);
        match std::fs::read_to_string(&file) {
            Err(e) => problems.push(format!("{path}::{name}: {e}")),
            Ok(source) => {
                if let Some(why) = not_a_test(&source, name) {
                    problems.push(format!("{path}::{name}: {why}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "SECURITY.md cites tests that do not exist as such:\n{}",
        problems.join("\n")
    );
    println!(
        "{} references to {} distinct tests in {} files checked",
        refs.len(),
        distinct.len(),
        distinct
            .iter()
            .map(|(p, _)| p)
            .collect::<BTreeSet<_>>()
            .len()
    );
}

#[test]
fn every_threat_cites_tests_and_says_what_is_not_tested() {
    let text = security_md();
    let sections: Vec<&str> = text.split("\n### ").skip(1).collect();
    let titles: Vec<String> = sections
        .iter()
        .map(|s| s.lines().next().unwrap_or("").to_string())
        .collect();
    // The threats the security review must cover.
    for wanted in [
        "Forged and altered tokens",
        "`alg: none`",
        "Key rotation",
        "Replay",
        "Referer",
        "SSRF",
        "Path injection",
        "Header smuggling",
        "Cross-site WebSocket hijacking",
        "Resource exhaustion",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no threat section about {wanted:?}: {titles:?}"
        );
    }
    for (title, body) in titles.iter().zip(&sections) {
        // Only this section, not the next `##` chapter.
        let body = body.split("\n## ").next().unwrap_or(body);
        for part in [
            "**Attack.**",
            "**Mitigation.**",
            "**Tests.**",
            "**Not tested.**",
        ] {
            assert!(body.contains(part), "{title}: no {part}");
        }
        let tests = body
            .split("**Tests.**")
            .nth(1)
            .and_then(|t| t.split("**Not tested.**").next())
            .unwrap_or("");
        assert!(
            !references(tests).is_empty(),
            "{title}: its Tests part cites no test"
        );
    }
}

#[test]
fn reference_parser_reads_the_forms_used() {
    let refs = references(
        "see `core/src/jws.rs::kid_selection`, and host-tests/tests/soak.rs::soak_under_load_and_faults.\n\
         Not a ref: e2e_faults.rs alone, or `::x`.",
    );
    assert_eq!(
        refs,
        vec![
            ("core/src/jws.rs".to_string(), "kid_selection".to_string()),
            (
                "host-tests/tests/soak.rs".to_string(),
                "soak_under_load_and_faults".to_string()
            ),
        ]
    );
    let src = "#[test]\nfn a() {}\n\n/// doc\n#[tokio::test(flavor = \"multi_thread\")]\nasync fn b() {}\nfn c() {}\n#[test]\n#[ignore]\nfn d() {}\n";
    assert_eq!(not_a_test(src, "a"), None);
    assert_eq!(not_a_test(src, "b"), None);
    assert!(not_a_test(src, "c").unwrap().contains("not marked"));
    assert!(not_a_test(src, "d").unwrap().contains("ignore"));
    assert!(not_a_test(src, "e").unwrap().contains("no `fn e`"));
}
