//! `mksgate-loadgen`: the mksgate benchmark (issue 5).
//!
//! ```text
//! mksgate-loadgen suite  [--out bench/results/latest.json]     every system, every scenario
//! mksgate-loadgen report [--in FILE] [--md BENCHMARKS.md] [--svg bench/results/benchmarks.svg]
//! mksgate-loadgen scale  [--out bench/results/scale.json] [--md bench/results/scale.md]   open consoles per gateway
//! mksgate-loadgen soak   [--out bench/results/soak.json]    a long life with churn (BENCH_SOAK_*)
//! mksgate-loadgen handshake --addr IP:PORT [--mksgate-key-env VAR] [--concurrency 16] [--rate HS/s] [--secs 5]
//! mksgate-loadgen frames    --addr IP:PORT [--mksgate-key-env VAR] [--sessions 16] [--bytes 64] [--rate RT/s] [--secs 5]
//! mksgate-loadgen bulk      --addr IP:PORT [--mksgate-key-env VAR] [--sessions 4] [--bytes 1048576] [--window 4] [--rate-mb MB/s] [--secs 5]
//! mksgate-loadgen idle      --addr IP:PORT [--mksgate-key-env VAR] [--sessions 1000]
//!   single scenarios also take [--warm S] [--proxy-pid PID] [--standin-pid PID] [--link-ttl S]
//! ```
//!
//! Single scenarios print one JSON sample. Without `--mksgate-key-env` the
//! client asks for `/ticket/<fresh>?host=vesxi01.sec.lab` (the stand-in
//! directly, or a proxy routing on `host`); with it, `/console?token=<link>`
//! signed with the base64url key in that variable (kid 2026-11, the shipped
//! claims). `scripts/bench.sh` runs `suite` then `report`, pinned to CPU 1.

mod deployed;
mod procs;
mod report;
mod results;
mod scale;
mod scenario;
mod soak;
mod suite;
mod svg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

const USAGE: &str = "usage: mksgate-loadgen suite [--out FILE]
       mksgate-loadgen report [--in FILE] [--md FILE] [--svg FILE]
       mksgate-loadgen scale [--out FILE] [--md FILE]
       mksgate-loadgen soak [--out FILE]
       mksgate-loadgen handshake|frames|bulk|idle --addr IP:PORT [--mksgate-key-env VAR]
           [--concurrency N] [--sessions N] [--bytes N] [--window N] [--rate RT/s] [--rate-mb MB/s] [--secs S] [--warm S]
           [--proxy-pid PID] [--standin-pid PID] [--link-ttl S]";

fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .unwrap_or(here)
        .to_path_buf()
}

struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Result<Flags> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                bail!("unexpected argument {a:?}\n{USAGE}");
            };
            let v = it
                .next()
                .ok_or_else(|| anyhow!("--{name} needs a value\n{USAGE}"))?;
            out.push((name.to_string(), v.clone()));
        }
        Ok(Flags(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow!("--{name}: {v:?} is not a number")),
        }
    }

    fn check(&self, allowed: &[&str]) -> Result<()> {
        for (k, _) in &self.0 {
            if !allowed.contains(&k.as_str()) {
                bail!("unknown flag --{k}\n{USAGE}");
            }
        }
        Ok(())
    }
}

async fn single(cmd: &str, flags: &Flags) -> Result<()> {
    flags.check(&[
        "addr",
        "mksgate-key-env",
        "concurrency",
        "sessions",
        "bytes",
        "window",
        "secs",
        "warm",
        "proxy-pid",
        "standin-pid",
        "link-ttl",
        "rate",
        "rate-mb",
    ])?;
    procs::raise_nofile();
    let addr: SocketAddr = flags
        .get("addr")
        .ok_or_else(|| anyhow!("--addr is required\n{USAGE}"))?
        .parse()
        .context("--addr")?;
    let target = Arc::new(suite::target_from_args(
        addr,
        flags.get("mksgate-key-env"),
        flags.num("link-ttl", 60u64)?,
    )?);
    let probe = scenario::Probe {
        proxy: flags.get("proxy-pid").map(str::parse).transpose()?,
        standin: flags.get("standin-pid").map(str::parse).transpose()?,
    };
    let secs = Duration::from_secs_f64(flags.num("secs", 5.0)?);
    let warm = Duration::from_secs_f64(flags.num("warm", 1.0)?);
    let counter = Arc::new(scenario::Counter::default());
    let pool = match cmd {
        "handshake" => scenario::Pool::handshakes(
            target,
            counter,
            flags.num("concurrency", 16)?,
            flags.get("rate").map(str::parse).transpose()?,
        ),
        "frames" => {
            scenario::Pool::frames(
                target,
                counter,
                flags.num("sessions", 16)?,
                flags.num("bytes", 64)?,
                flags.get("rate").map(str::parse).transpose()?,
            )
            .await
        }
        "bulk" => {
            scenario::Pool::bulk(
                target,
                counter,
                flags.num("sessions", 4)?,
                flags.num("bytes", 1 << 20)?,
                flags.num("window", 4)?,
                flags
                    .get("rate-mb")
                    .map(str::parse::<f64>)
                    .transpose()?
                    .map(|r| r * 1e6),
            )
            .await
        }
        "idle" => {
            let sample = scenario::idle(
                target,
                counter,
                flags.num("sessions", 1000)?,
                Duration::from_secs(1),
                probe,
            )
            .await;
            println!("{}", serde_json::to_string_pretty(&sample)?);
            return Ok(());
        }
        other => bail!("unknown subcommand {other:?}\n{USAGE}"),
    };
    let _ = pool.slice(warm, probe).await;
    let mut sample = pool.slice(secs, probe).await.sample;
    for (k, v) in pool.setup_errors() {
        *sample.errors.entry(format!("setup: {k}")).or_default() += v;
    }
    pool.stop().await;
    println!("{}", serde_json::to_string_pretty(&sample)?);
    Ok(())
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!("{USAGE}");
    };
    let flags = Flags::parse(&args[1..])?;
    let root = workspace_root();
    match cmd.as_str() {
        "suite" => {
            flags.check(&["out"])?;
            let out = flags
                .get("out")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("bench/results/latest.json"));
            let res = suite::run(&root, &out).await?;
            eprintln!(
                "bench: wrote {} ({:.0} s, {} samples, {} problems)",
                out.display(),
                res.meta.wall_seconds,
                res.samples.len(),
                res.problems.len()
            );
            Ok(())
        }
        "report" => {
            flags.check(&["in", "md", "svg"])?;
            let input = flags
                .get("in")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("bench/results/latest.json"));
            let md = flags
                .get("md")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("BENCHMARKS.md"));
            let svg = flags
                .get("svg")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("bench/results/benchmarks.svg"));
            report::write(&root, &input, &md, &svg)
        }
        "scale" => {
            flags.check(&["out", "md"])?;
            let out = flags
                .get("out")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("bench/results/scale.json"));
            let md = flags
                .get("md")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("bench/results/scale.md"));
            let run = scale::run(&root, &out).await?;
            std::fs::write(&md, report::scale::markdown(&run))?;
            eprintln!("bench-scale: wrote {} and {}", out.display(), md.display());
            Ok(())
        }
        "soak" => {
            flags.check(&["out"])?;
            let out = flags
                .get("out")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("bench/results/soak.json"));
            let run = soak::run(&root, &out).await?;
            let md = out.with_extension("md");
            std::fs::write(&md, report::soak::markdown(&run))?;
            eprintln!("soak: wrote {} and {}", out.display(), md.display());
            if !run.problems.is_empty() {
                bail!("soak: {}", run.problems.join("; "));
            }
            Ok(())
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => single(other, &flags).await,
    }
}

fn main() {
    // One thread: the load generator is pinned to one CPU (scripts/bench.sh).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mksgate-loadgen: runtime: {e}");
            std::process::exit(2);
        }
    };
    match rt.block_on(run()) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("mksgate-loadgen: {e:#}");
            std::process::exit(1);
        }
    }
}
