//! `mksgate-wasm-post --input raw.wasm --output shipped.wasm [--keep-export NAME ...]`
//! `mksgate-wasm-post --input shipped.wasm --check [--keep-export NAME ...]`
//!
//! The first form drops every export outside the allowlist, garbage-collects
//! and writes the result atomically. The second changes nothing and exits 1
//! if the module exports anything outside the allowlist (0 if not).
//! Both print every export of the input and whether it stays. Errors exit 2.

use mksgate_wasm_post::{
    exports, outside, process, section_sizes, write_atomic, Error, Export, KeepList, Plan, KEEP,
};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: mksgate-wasm-post --input IN.wasm (--output OUT.wasm | --check) [--keep-export NAME ...]";

struct Args {
    input: PathBuf,
    output: Option<PathBuf>,
    check: bool,
    extra: Vec<String>,
}

fn parse_args() -> Result<Args, Error> {
    let mut input = None;
    let mut output = None;
    let mut check = false;
    let mut extra = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let mut value = |flag: &str| {
            args.next()
                .ok_or_else(|| Error(format!("{flag} needs a value\n{USAGE}")))
        };
        match arg.as_str() {
            "--input" => input = Some(PathBuf::from(value("--input")?)),
            "--output" => output = Some(PathBuf::from(value("--output")?)),
            "--keep-export" => extra.push(value("--keep-export")?.to_string_lossy().into_owned()),
            "--check" => check = true,
            "-h" | "--help" => return Err(Error(USAGE.into())),
            other => return Err(Error(format!("unknown argument {other:?}\n{USAGE}"))),
        }
    }
    let input = input.ok_or_else(|| Error(format!("--input is required\n{USAGE}")))?;
    if check == output.is_some() {
        return Err(Error(format!(
            "give exactly one of --output and --check\n{USAGE}"
        )));
    }
    Ok(Args {
        input,
        output,
        check,
        extra,
    })
}

fn reason(name: &str) -> &'static str {
    if name.starts_with(mksgate_wasm_post::ABI_MARKER_PREFIX) {
        return "ABI version marker";
    }
    KEEP.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
        .unwrap_or("--keep-export")
}

fn print_plan(plan: &Plan) {
    println!("kept ({}):", plan.kept.len());
    for e in &plan.kept {
        println!(
            "  {:<6} {:<40} {}",
            e.kind.to_string(),
            e.name,
            reason(&e.name)
        );
    }
    println!("removed ({}):", plan.removed.len());
    for e in &plan.removed {
        let what = if e.is_callback() {
            "proxy-wasm callback"
        } else {
            "not on the allowlist"
        };
        println!("  {:<6} {:<40} {what}", e.kind.to_string(), e.name);
    }
}

fn print_sections(label: &str, wasm: &[u8]) -> Result<(), Error> {
    let sections = section_sizes(wasm)?;
    let parts: Vec<String> = sections.iter().map(|(n, s)| format!("{n}={s}")).collect();
    println!("{label} sections: {}", parts.join(" "));
    Ok(())
}

fn run(args: Args) -> Result<ExitCode, Error> {
    let input = std::fs::read(&args.input)
        .map_err(|e| Error(format!("reading {}: {e}", args.input.display())))?;
    let keep = KeepList::with_extra(args.extra);
    println!("input: {} ({} bytes)", args.input.display(), input.len());

    if args.check {
        let all = exports(&input)?;
        let bad: Vec<Export> = outside(&all, &keep);
        print_plan(&Plan::new(&all, &keep));
        if bad.is_empty() {
            println!("check: ok, every export is on the allowlist");
            return Ok(ExitCode::SUCCESS);
        }
        let names: Vec<&str> = bad.iter().map(|e| e.name.as_str()).collect();
        println!(
            "check: FAILED, exports outside the allowlist: {}",
            names.join(", ")
        );
        return Ok(ExitCode::from(1));
    }

    let processed = process(&input, &keep)?;
    print_plan(&processed.plan);
    print_sections("before", &input)?;
    print_sections("after ", &processed.wasm)?;
    let output = args
        .output
        .ok_or_else(|| Error(format!("--output is required\n{USAGE}")))?;
    write_atomic(&output, &processed.wasm)?;
    let before = input.len();
    let after = processed.wasm.len();
    let saved = before.saturating_sub(after);
    println!(
        "output: {} ({after} bytes; {saved} bytes smaller, {:.1}%)",
        output.display(),
        if before == 0 {
            0.0
        } else {
            saved as f64 * 100.0 / before as f64
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mksgate-wasm-post: {e}");
            ExitCode::from(2)
        }
    }
}
