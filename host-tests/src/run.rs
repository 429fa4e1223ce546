//! Running a helper program from a test (a portal snippet, a browser driver,
//! a packaging script) with a time bound, so a stuck child fails the test
//! instead of hanging it.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A command that finished within its bound.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug)]
pub enum RunError {
    /// The program could not be started (not installed, not executable).
    Spawn(std::io::Error),
    /// Waiting for it failed; its process group was killed.
    Wait(std::io::Error),
    /// Still running after the bound; its whole process group was killed.
    TimedOut(Duration),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "cannot start: {e}"),
            RunError::Wait(e) => write!(f, "waiting for it failed: {e}"),
            RunError::TimedOut(limit) => write!(f, "did not finish within {limit:?}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs `cmd` with stdin closed and stdout/stderr captured, in its own
/// process group. Both pipes are drained on threads, so a chatty child
/// cannot block on a full pipe. If it is still running after `limit`, the
/// whole group (the child and anything it started) is killed.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Finished, RunError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(RunError::Spawn)?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        let failure = match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Ok(None) => RunError::TimedOut(limit),
            Err(e) => RunError::Wait(e),
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on our child's process group; no memory involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = child.wait();
        return Err(failure);
    };
    Ok(Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}
