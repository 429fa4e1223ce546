//! Small shared pieces: the failure type, the clock, randomness, quoting.

use std::process::ExitCode;

/// Writes to stdout. A closed pipe (`mksgate ... | head`) ends the process
/// quietly; any other write error ends it with status 1.
pub fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
}

/// `println!` that does not panic on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::util::emit(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::util::emit(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that does not panic on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::util::emit(format_args!($($arg)*)) };
}

/// Exit status for a link or token the filter would refuse.
pub const EXIT_REFUSED: u8 = 3;

/// Why a command stopped: one line for stderr and an exit status.
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub message: String,
}

pub type Outcome<T> = Result<T, Failure>;

/// A plain error (exit status 1).
pub fn fail(message: impl Into<String>) -> Failure {
    Failure {
        status: 1,
        message: message.into(),
    }
}

impl Failure {
    pub fn exit(&self) -> ExitCode {
        eprintln!("error: {}", one_line(&self.message));
        ExitCode::from(self.status)
    }
}

/// Keeps a message on one line: control characters become spaces and runs
/// of white space collapse.
pub fn one_line(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Seconds since the epoch: `--now` if given, else the system clock.
pub fn now(given: Option<i64>) -> Outcome<i64> {
    if let Some(now) = given {
        return Ok(now);
    }
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| fail("the system clock is before 1970"))?;
    i64::try_from(since.as_secs()).map_err(|_| fail("the system clock is out of range"))
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Outcome<Vec<u8>> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| fail(format!("no randomness from the OS: {e}")))?;
    Ok(buf)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh 128-bit id, written like a UUID (8-4-4-4-12 hex digits).
pub fn random_jti() -> Outcome<String> {
    let h = hex(&random_bytes(16)?);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// A YAML scalar: plain when unambiguously a string (DNS names, IPv4
/// literals, paths, cluster names), else double-quoted (JSON string syntax
/// is valid YAML). Anything starting with a digit other than an IPv4
/// literal is quoted, so YAML 1.1 readers cannot take it for a number.
pub fn yaml_scalar(text: &str) -> String {
    let safe_chars = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    let first_ok = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'/');
    let ipv4 = text.parse::<std::net::Ipv4Addr>().is_ok();
    let keyword = matches!(
        text.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
    );
    if safe_chars && (ipv4 || (first_ok && !keyword)) {
        text.to_string()
    } else {
        json_string(text)
    }
}

pub fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// `YYYY-MM` (UTC) of an epoch second, e.g. the default key id.
pub fn year_month(epoch: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(yaml_scalar("vesxi01.sec.lab"), "vesxi01.sec.lab");
        assert_eq!(yaml_scalar("10.0.0.11"), "10.0.0.11");
        assert_eq!(yaml_scalar("/etc/ca.pem"), "/etc/ca.pem");
        assert_eq!(yaml_scalar("2001:db8::1"), "\"2001:db8::1\"");
        assert_eq!(yaml_scalar("0x1f"), "\"0x1f\"");
        assert_eq!(yaml_scalar("yes"), "\"yes\"");
        assert_eq!(yaml_scalar("a b"), "\"a b\"");
        assert_eq!(yaml_scalar(""), "\"\"");
    }

    #[test]
    fn months() {
        assert_eq!(year_month(0), "1970-01");
        assert_eq!(year_month(1_795_000_000), "2026-11");
        assert_eq!(year_month(951_782_400), "2000-02"); // 2000-02-29
        assert_eq!(year_month(951_868_800), "2000-03");
    }

    #[test]
    fn jti_shape() {
        let j = random_jti().unwrap();
        assert_eq!(j.len(), 36);
        assert_eq!(j.matches('-').count(), 4);
        assert_ne!(j, random_jti().unwrap());
    }

    #[test]
    fn lines() {
        assert_eq!(one_line("a\n  b\tc\r\n"), "a b c");
    }
}
