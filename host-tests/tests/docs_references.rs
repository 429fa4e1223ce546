//! Every `README, "Section"` reference in the shipped files and docs (and
//! every `"Section" below/above` inside the README) names a part of the
//! README that exists: a heading, a bold paragraph lead, or a paragraph
//! that starts with those words. A new user once followed "Logs" and
//! "Gateway API and Envoy Gateway" to nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_testkit::paths::workspace_root;
use std::process::Command;

/// The places a README section can be named from.
fn anchors(readme: &str) -> Vec<String> {
    readme
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches('#').trim();
            let l = l.strip_prefix("**").unwrap_or(l);
            (!l.is_empty()).then(|| l.to_string())
        })
        .collect()
}

/// `README, "X"` (also `README "X"`, `README: "X"`): every X.
fn outside_references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("README") {
        let rest = text[at + "README".len()..].trim_start_matches([',', ':']);
        let rest = rest.trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            if let Some(end) = quoted.find('"') {
                out.push(
                    quoted[..end]
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
        }
    }
    out
}

/// `("X" below)` and `("X" above)` inside the README.
fn inside_references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("(\"") {
        let quoted = &text[at + 2..];
        let Some(end) = quoted.find('"') else {
            continue;
        };
        let after = &quoted[end + 1..];
        if after.starts_with(" below") || after.starts_with(" above") {
            out.push(quoted[..end].to_string());
        }
    }
    out
}

#[test]
fn every_readme_reference_names_a_section() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let anchors = anchors(&readme);
    let exists = |name: &str| anchors.iter().any(|a| a.starts_with(name));
    // Files git tracks, so nothing generated or installed is read.
    let files = Command::new("git")
        .args([
            "ls-files", "--", "*.md", "*.yaml", "*.rs", "*.sh", "*.mjs", "Makefile",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    let mut checked = 0;
    let mut missing = Vec::new();
    for file in String::from_utf8(files.stdout).unwrap().lines() {
        if file.ends_with("docs_references.rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        // A reference may wrap over a comment's line break.
        let joined = text
            .lines()
            .map(|l| {
                l.trim_start()
                    .trim_start_matches("//!")
                    .trim_start_matches("//")
                    .trim_start_matches('#')
            })
            .collect::<Vec<_>>()
            .join(" ");
        let mut names = outside_references(&joined);
        if file == "README.md" {
            names.extend(inside_references(&text));
        }
        for name in names {
            checked += 1;
            if !exists(&name) {
                missing.push(format!("{file}: \"{name}\""));
            }
        }
    }
    assert!(
        checked >= 30,
        "only {checked} references found: the pattern broke"
    );
    assert!(
        missing.is_empty(),
        "README sections that do not exist: {missing:#?}"
    );
}

/// `docs/ARCHITECTURE.md` names files and folders a newcomer will open:
/// each backticked path in it (`core/src/code.rs`, `envoy/`) exists.
#[test]
fn the_architecture_page_names_real_files() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let mut checked = 0;
    let mut missing = Vec::new();
    for (i, part) in text.split('`').enumerate() {
        // Odd parts are inside backticks; a path has a `/` and no spaces.
        let looks_like_path = i % 2 == 1
            && part.contains('/')
            && !part.contains(' ')
            && !part.starts_with('/')
            && part
                .split('/')
                .next()
                .is_some_and(|top| root.join(top).is_dir());
        if looks_like_path {
            checked += 1;
            if !root.join(part).exists() {
                missing.push(part.to_string());
            }
        }
    }
    assert!(checked >= 20, "only {checked} paths found");
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names missing paths: {missing:?}"
    );
}
