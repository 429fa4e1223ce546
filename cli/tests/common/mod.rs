//! Running the built `mksgate` binary, for every CLI test file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_mksgate");
use mksgate_testkit::link::KEY_ENV;

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_with(args: &[&str], env: &[(&str, &str)], unset: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run mksgate");
    Run {
        status: status.code().expect("exit code"),
        stdout: String::from_utf8(stdout).expect("utf8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf8 stderr"),
    }
}

pub fn run(args: &[&str]) -> Run {
    run_with(args, &[], &[KEY_ENV])
}

/// A fresh directory under the target dir for one test.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cli-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// An error is exactly one line on stderr, starting with `error: `.
pub fn assert_one_line_error(r: &Run, expect_status: i32, needle: &str) {
    assert_eq!(
        r.status, expect_status,
        "stdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| !l.starts_with("warning: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected: {:?}", r.stderr);
    assert!(lines[0].starts_with("error: "), "{:?}", r.stderr);
    assert!(
        lines[0].contains(needle),
        "{needle:?} not in {:?}",
        r.stderr
    );
}
