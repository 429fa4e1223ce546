//! `mksgate-demo` (what `make demo` runs): the gateway with a live console on
//! localhost, until Ctrl-C.
//!
//! ```text
//! mksgate-demo [--console auto|qemu|pattern] [--web-port N] [--work-dir DIR]
//!              [--protocols binary,uint8utf8] [--json] [--exit-on-stdin-eof]
//! ```
//!
//! Starts the console servers (a QEMU VM, or the built-in RFB test pattern
//! when QEMU is absent), two ESXi stand-ins, Envoy with the shipped
//! `envoy/static-clusters.yaml` and the module `make build` left, and the
//! demo page; prints the gateway address, a signed link and the page URL;
//! stops everything on SIGINT/SIGTERM (and on stdin EOF with
//! `--exit-on-stdin-eof`, so a test that starts it with a piped stdin cannot
//! leave it behind). `--json` prints one JSON line (`DemoInfo`) instead of
//! the text.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use mksgate_host_tests::demo::{ConsoleChoice, Demo, DemoOpts};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage: mksgate-demo [--console auto|qemu|pattern] [--web-port N] \
[--work-dir DIR] [--protocols LIST] [--json] [--exit-on-stdin-eof]

Starts an ESXi console stand-in (QEMU VM or built-in RFB test pattern), Envoy with
envoy/static-clusters.yaml and the mksgate module (run `make build` first), and a demo
page with noVNC (run scripts/setup-browser.sh first); prints a signed console link and
the page address; Ctrl-C stops everything.";

struct Args {
    opts: DemoOpts,
    json: bool,
    stdin_eof: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args {
        opts: DemoOpts::default(),
        json: false,
        stdin_eof: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |flag: &str| {
            it.next()
                .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--console" => args.opts.console = val("--console")?.parse::<ConsoleChoice>()?,
            "--web-port" => {
                args.opts.web_port = val("--web-port")?
                    .parse()
                    .map_err(|e| anyhow!("--web-port: {e}"))?
            }
            "--work-dir" => args.opts.work_dir = PathBuf::from(val("--work-dir")?),
            "--protocols" => {
                args.opts.protocols = Some(
                    val("--protocols")?
                        .split(',')
                        .map(|p| p.trim().to_string())
                        .filter(|p| !p.is_empty())
                        .collect(),
                )
            }
            "--json" => args.json = true,
            "--exit-on-stdin-eof" => args.stdin_eof = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(anyhow!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Some(args))
}

async fn stdin_eof() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut demo = tokio::select! {
        d = Demo::start(args.opts) => d?,
        _ = sigint.recv() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
    };
    if args.json {
        println!("{}", serde_json::to_string(demo.info())?);
    } else {
        print!("{}", demo.describe());
    }
    let why = tokio::select! {
        _ = sigint.recv() => "interrupted",
        _ = sigterm.recv() => "terminated",
        _ = stdin_eof(), if args.stdin_eof => "stdin closed",
    };
    eprintln!("mksgate-demo: {why}; stopping Envoy, the stand-ins and the console servers");
    demo.stop();
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mksgate-demo: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mksgate-demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mksgate-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
