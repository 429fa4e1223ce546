//! `esxi-standin`: run one ESXi WebMKS stand-in out of process.
//!
//! ```text
//! esxi-standin --name vesxi01.sec.lab --addr 127.0.0.2 [--port 0]
//!              [--control-port 0] [--control-addr 127.0.0.1]
//!              [--push-interval-ms 50 | 0 for none] [--push-bytes 64]
//!              [--reset-after-frames 3] [--plain] [--sni-mismatch fail|421]
//!              [--cert-out FILE.pem] [--key-out FILE.pem] [--ticket T]...
//!              [--no-stdin-watch] [--any-ticket] [--no-request-log]
//! ```
//!
//! `--any-ticket` and `--no-request-log` are for benchmarks
//! (`bench/loadgen`): every non-empty `/ticket/<t>` is accepted and never
//! used up, and no request or TLS handshake is recorded.
//!
//! When ready it prints one JSON line on stdout (`name`, `addr`, `port`,
//! `control_port`, `scheme`, `cert_sha256`, `cert_sha256_colon`,
//! `cert_pem_path`). It exits on SIGTERM/SIGINT, and when its stdin reaches
//! EOF (so it dies with the test that started it with a piped stdin) unless
//! `--no-stdin-watch` is given. The control API is described in the README.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mksgate_host_tests::standin::{SniMismatch, Standin, StandinConfig};
use tokio::io::AsyncReadExt;

const USAGE: &str = "usage: esxi-standin --name HOST --addr IP [--port N] [--control-port N] \
[--control-addr IP] [--push-interval-ms MS (0 = none)] [--push-bytes N] [--reset-after-frames N] \
[--plain] [--sni-mismatch fail|421] [--cert-out FILE] [--key-out FILE] [--ticket T]... [--no-stdin-watch] \
[--any-ticket] [--no-request-log]";

struct Args {
    cfg: StandinConfig,
    control: SocketAddr,
    cert_out: Option<String>,
    key_out: Option<String>,
    tickets: Vec<String>,
    stdin_watch: bool,
}

fn parse_args() -> Result<Args> {
    let mut name = None;
    let mut addr: Option<IpAddr> = None;
    let mut port = 0u16;
    let mut control_addr: IpAddr = IpAddr::from([127, 0, 0, 1]);
    let mut control_port = 0u16;
    let mut push_ms: u64 = 50;
    let mut push_bytes: usize = 64;
    let mut reset_after: u64 = 3;
    let mut plain = false;
    let mut sni = SniMismatch::FailHandshake;
    let mut cert_out = None;
    let mut key_out = None;
    let mut tickets = Vec::new();
    let mut stdin_watch = true;
    let mut any_ticket = false;
    let mut record = true;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |flag: &str| {
            it.next()
                .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--name" => name = Some(val("--name")?),
            "--addr" => addr = Some(val("--addr")?.parse().context("--addr")?),
            "--port" => port = val("--port")?.parse().context("--port")?,
            "--control-port" => {
                control_port = val("--control-port")?.parse().context("--control-port")?
            }
            "--control-addr" => {
                control_addr = val("--control-addr")?.parse().context("--control-addr")?
            }
            "--push-interval-ms" => {
                push_ms = val("--push-interval-ms")?
                    .parse()
                    .context("--push-interval-ms")?
            }
            "--push-bytes" => push_bytes = val("--push-bytes")?.parse().context("--push-bytes")?,
            "--reset-after-frames" => {
                reset_after = val("--reset-after-frames")?
                    .parse()
                    .context("--reset-after-frames")?
            }
            "--plain" => plain = true,
            "--sni-mismatch" => {
                sni = match val("--sni-mismatch")?.as_str() {
                    "fail" => SniMismatch::FailHandshake,
                    "421" => SniMismatch::Http421,
                    other => bail!("--sni-mismatch: {other:?} is not fail or 421"),
                }
            }
            "--cert-out" => cert_out = Some(val("--cert-out")?),
            "--key-out" => key_out = Some(val("--key-out")?),
            "--ticket" => tickets.push(val("--ticket")?),
            "--no-stdin-watch" => stdin_watch = false,
            "--any-ticket" => any_ticket = true,
            "--no-request-log" => record = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let name = name.ok_or_else(|| anyhow!("--name is required\n{USAGE}"))?;
    let addr = addr.ok_or_else(|| anyhow!("--addr is required\n{USAGE}"))?;
    let mut cfg = StandinConfig::new(&name, addr).port(port);
    cfg.push_interval = (push_ms > 0).then(|| Duration::from_millis(push_ms));
    cfg.push_bytes = push_bytes;
    cfg.reset_after_frames = reset_after;
    cfg.sni_mismatch = sni;
    cfg.any_ticket = any_ticket;
    cfg.record = record;
    if plain {
        cfg = cfg.plain();
    }
    Ok(Args {
        cfg,
        control: SocketAddr::new(control_addr, control_port),
        cert_out,
        key_out,
        tickets,
        stdin_watch,
    })
}

async fn run() -> Result<()> {
    let args = parse_args()?;
    let standin = Standin::start(args.cfg).await?;
    if let Some(p) = &args.cert_out {
        std::fs::write(p, standin.cert_pem()).with_context(|| format!("writing {p}"))?;
    }
    if let Some(p) = &args.key_out {
        std::fs::write(p, &standin.cert().key_pem).with_context(|| format!("writing {p}"))?;
    }
    for t in &args.tickets {
        standin.issue_ticket_with(t);
    }
    let control = standin
        .serve_control(args.control, args.cert_out.clone())
        .await?;
    let info = standin.info(control.addr().port(), args.cert_out.clone());
    println!("{}", serde_json::to_string(&info)?);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stdin_eof = async {
        if !args.stdin_watch {
            return std::future::pending::<()>().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = stdin_eof => {}
    }
    drop(control);
    drop(standin);
    Ok(())
}

#[tokio::main]
async fn main() {
    // Exit explicitly: a blocking read on stdin would otherwise keep the
    // runtime (and the process) alive after a signal.
    match run().await {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("esxi-standin: {e:#}");
            std::process::exit(2);
        }
    }
}
