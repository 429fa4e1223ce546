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
use mksgate_host_tests::demo::lifecycle::{main_for, Stops};
use mksgate_host_tests::demo::{ConsoleChoice, Demo, DemoOpts};

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

async fn run(args: Args) -> Result<()> {
    let mut stops = Stops::new()?;
    let Some(mut demo) = stops.unless_stopped(Demo::start(args.opts)).await? else {
        return Ok(());
    };
    if args.json {
        println!("{}", serde_json::to_string(demo.info())?);
    } else {
        print!("{}", demo.describe());
    }
    let why = stops.wait(args.stdin_eof).await;
    eprintln!("mksgate-demo: {why}; stopping Envoy, the stand-ins and the console servers");
    demo.stop();
    Ok(())
}

fn main() -> ExitCode {
    main_for("mksgate-demo", USAGE, parse_args(), run)
}
