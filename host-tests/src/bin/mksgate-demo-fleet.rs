//! `mksgate-demo-fleet` (what `make demo-fleet` runs): two gateways sharing
//! one-time links in a 3-member etcd cluster, and a page that shows one
//! link admitted by one gateway and refused as `replayed` by the other
//! (`mksgate_host_tests::demo::fleet`), until Ctrl-C.
//!
//! ```text
//! mksgate-demo-fleet [--web-port N] [--json] [--exit-on-stdin-eof]
//! ```

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use mksgate_host_tests::demo::fleet::FleetDemo;
use mksgate_host_tests::demo::lifecycle::{main_for, Stops};

const USAGE: &str = "usage: mksgate-demo-fleet [--web-port N] [--json] [--exit-on-stdin-eof]

Starts a 3-member etcd cluster, two gateways with envoy/fleet.yaml and the mksgate
module (run `make build` first), two ESXi stand-ins and a page; Ctrl-C stops everything.";

struct Args {
    web_port: u16,
    json: bool,
    stdin_eof: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args {
        web_port: 8081,
        json: false,
        stdin_eof: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--web-port" => {
                args.web_port = it
                    .next()
                    .ok_or_else(|| anyhow!("--web-port needs a value\n{USAGE}"))?
                    .parse()
                    .map_err(|e| anyhow!("--web-port: {e}"))?
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
    let Some(demo) = stops
        .unless_stopped(FleetDemo::start(args.web_port))
        .await?
    else {
        return Ok(());
    };
    if args.json {
        println!("{}", serde_json::to_string(&demo.info())?);
    } else {
        print!("{}", demo.describe());
    }
    let why = stops.wait(args.stdin_eof).await;
    eprintln!("mksgate-demo-fleet: {why}; stopping the gateways, etcd and the stand-ins");
    demo.stop();
    Ok(())
}

fn main() -> ExitCode {
    main_for("mksgate-demo-fleet", USAGE, parse_args(), run)
}
