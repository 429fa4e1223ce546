//! `mksgate`: keys, signed console links and configurations, checked with
//! the very code the filter runs (`mksgate-core`).

mod check;
mod envoy_config;
mod etcd_http;
mod inspect;
mod keygen;
mod keys;
mod load;
mod revoke;
mod sign;
mod util;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Sign, inspect and check mksgate console links and configurations.
///
/// Exit status: 0 success (inspect: admitted), 1 error, 2 bad usage,
/// 3 refused (inspect: the filter would refuse the link).
#[derive(Debug, Parser)]
#[command(name = "mksgate", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Keygen(keygen::Args),
    Sign(Box<sign::Args>),
    Inspect(inspect::Args),
    CheckConfig(check::Args),
    EnvoyConfig(envoy_config::Args),
    Revoke(Box<revoke::Args>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = match &cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::CheckConfig(args) => check::run(args),
        Command::EnvoyConfig(args) => envoy_config::run(args),
        Command::Revoke(args) => revoke::run(args),
    };
    result.unwrap_or_else(|failure| failure.exit())
}

/// Help and version go out as clap renders them; a usage error becomes one
/// line on stderr and exit status 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
        _ => {
            let rendered = e.render().to_string();
            let text: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("Usage:")
                        && !l.starts_with("For more information")
                })
                .collect();
            let text = text.join(" ");
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprintln!("error: {} (see --help)", util::one_line(text));
            ExitCode::from(2)
        }
    }
}
