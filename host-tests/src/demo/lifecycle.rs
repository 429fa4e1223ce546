//! What both demo binaries do around their demo: a two-thread runtime,
//! errors printed under the binary's name, and the wait for Ctrl-C,
//! SIGTERM or (when asked) the end of stdin, so a test that starts a demo
//! with a piped stdin cannot leave it behind.

use std::future::Future;
use std::process::ExitCode;

use anyhow::Result;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT and SIGTERM, registered before the demo starts.
pub struct Stops {
    int: Signal,
    term: Signal,
}

impl Stops {
    pub fn new() -> Result<Stops> {
        Ok(Stops {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// `start`, or `None` if a signal came first.
    pub async fn unless_stopped<T>(
        &mut self,
        start: impl Future<Output = Result<T>>,
    ) -> Result<Option<T>> {
        tokio::select! {
            d = start => d.map(Some),
            _ = self.int.recv() => Ok(None),
            _ = self.term.recv() => Ok(None),
        }
    }

    /// Waits for a signal, or for stdin to end when `stdin_eof`; says which.
    pub async fn wait(&mut self, stdin_eof: bool) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "interrupted",
            _ = self.term.recv() => "terminated",
            _ = stdin_closed(), if stdin_eof => "stdin closed",
        }
    }
}

async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Runs `demo` on a two-thread runtime; an error is printed as
/// `<name>: <error>` and the exit code is 1.
pub fn main_with(name: &str, demo: impl Future<Output = Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(demo) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A demo binary's `main`: `parsed` is its arguments (`None` for
/// `--help`, which prints `usage`); a bad argument exits with 2.
pub fn main_for<A, F>(
    name: &str,
    usage: &str,
    parsed: Result<Option<A>>,
    run: impl FnOnce(A) -> F,
) -> ExitCode
where
    F: Future<Output = Result<()>>,
{
    match parsed {
        Ok(Some(args)) => main_with(name, run(args)),
        Ok(None) => {
            println!("{usage}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::from(2)
        }
    }
}
