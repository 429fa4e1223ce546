//! `make release` (scripts/release.sh) builds the module, the OCI image and
//! the CLI of Cargo.toml's version and checks them against each other; here
//! it runs for real, and its output is checked again independently: the
//! image's manifest is the one RELEASE.md names, SHA256SUMS matches the
//! files, and the license is the one Cargo.toml declares.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mksgate_testkit::paths::workspace_root;
use sha2::{Digest, Sha256};
use std::process::Command;

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn make_release_builds_matching_parts() {
    let root = workspace_root();
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    assert_eq!(
        version
            .split('.')
            .filter(|p| p.parse::<u64>().is_ok())
            .count(),
        3,
        "{version}"
    );
    assert!(cargo.contains("license = \"Apache-2.0\""));
    let license = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));

    let out = Command::new("bash")
        .arg(root.join("scripts/release.sh"))
        .current_dir(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("checked: version {version}")),
        "{stdout}"
    );

    let dir = root.join(format!("target/release-{version}"));
    let release = std::fs::read_to_string(dir.join("RELEASE.md")).unwrap();
    let module = std::fs::read(dir.join("mksgate_filter.wasm")).unwrap();
    assert_eq!(
        module,
        std::fs::read(root.join("target/mksgate/mksgate_filter.wasm")).unwrap()
    );
    assert!(release.contains(&hex(&module)), "{release}");
    // The manifest named is the one the layout's index points at.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("oci/mksgate-filter/index.json")).unwrap())
            .unwrap();
    let manifest = index["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        version
    );
    assert!(release.contains(manifest), "{release}");
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    for (file, line) in ["mksgate_filter.wasm", "mksgate"].iter().zip(sums.lines()) {
        let data = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(line, format!("{}  {file}", hex(&data)));
    }
    let cli = Command::new(dir.join("mksgate"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout).trim(),
        format!("mksgate {version}")
    );
}
