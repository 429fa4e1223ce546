//! Where things are: the workspace, the modules `scripts/build-module.sh`
//! ships, and the Envoy binary `scripts/setup.sh` installs.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target"),
    }
}

/// Where `scripts/build-module.sh` leaves the modules it builds
/// (`<name>.wasm` processed, `<name>.raw.wasm` cargo's own output).
pub fn module_dir() -> PathBuf {
    target_dir().join("mksgate")
}

/// `module_dir()/<file>`, or an error saying how to build it.
pub fn module(file: &str) -> Result<PathBuf> {
    let path = module_dir().join(file);
    if !path.is_file() {
        bail!(
            "no module at {}: run `make build` (scripts/build-module.sh all) first",
            path.display()
        );
    }
    Ok(path)
}

/// The shipped module.
pub fn shipped_module() -> Result<PathBuf> {
    module("mksgate_filter.wasm")
}

/// A test-only module built next to it (`noop`, `trap`).
pub fn test_module(name: &str) -> Result<PathBuf> {
    module(&format!("mksgate_{name}_filter.wasm"))
}

/// The Envoy binary: `$ENVOY_BIN`, else
/// `<workspace>/.tools/envoy/envoy/_bin/envoy`. An error (never a skip) if
/// it is not there.
pub fn envoy_bin() -> Result<PathBuf> {
    resolve_envoy_bin(std::env::var_os("ENVOY_BIN"))
}

fn resolve_envoy_bin(env: Option<std::ffi::OsString>) -> Result<PathBuf> {
    let path = match env {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join(".tools/envoy/envoy/_bin/envoy"),
    };
    if !path.is_file() {
        bail!(
            "Envoy binary not found at {}: run scripts/setup.sh (or set ENVOY_BIN)",
            path.display()
        );
    }
    Ok(path)
}

/// The `mksgate` command, built (debug, as the tests are) if it is not
/// there yet, so a test runs the very binary an operator would.
pub fn cli_bin() -> Result<PathBuf> {
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let path = target_dir().join("debug/mksgate");
    if !*built {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "mksgate-cli", "--bin", "mksgate"])
            .current_dir(workspace_root())
            .status()?;
        if !status.success() || !path.is_file() {
            bail!("building the mksgate command failed: {status}");
        }
        *built = true;
    }
    Ok(path)
}

static UNIQUE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A fresh directory under the system temp dir, named `<prefix>-<pid>-…`
/// so that parallel tests and runs never share one.
pub fn unique_dir(prefix: &str) -> Result<PathBuf> {
    use anyhow::Context as _;
    let n = UNIQUE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_bin_prefers_the_env_and_never_skips() {
        let err = resolve_envoy_bin(Some("/nonexistent/envoy".into())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/envoy"), "{err}");
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
