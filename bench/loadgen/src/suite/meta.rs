//! What a run records about itself: the machine, the versions, the modules.

use super::*;

pub(crate) fn random_secret() -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

pub fn utc_now() -> String {
    command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
}

pub(crate) fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub(crate) fn meta(root: &Path, paths: &Paths, quick: bool) -> Meta {
    let cpuinfo = read_trim("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "?".into());
    let mem_total_kb = read_trim("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let root_s = root.to_string_lossy().into_owned();
    let dirty = std::process::Command::new("git")
        .args(["-C", &root_s, "status", "--porcelain"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    Meta {
        started_utc: utc_now(),
        wall_seconds: 0.0,
        git_commit: command_line("git", &["-C", &root_s, "rev-parse", "--short", "HEAD"]),
        git_dirty: dirty,
        kernel: command_line("uname", &["-sr"]),
        cpu_model,
        // Online CPUs of the machine (not this process's affinity mask).
        // SAFETY: sysconf has no preconditions.
        cpus: usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(0),
        mem_total_kb,
        loadavg_start: read_trim("/proc/loadavg"),
        loadavg_end: String::new(),
        envoy_version: command_line(&paths.envoy.to_string_lossy(), &["--version"])
            .trim_start_matches(|c: char| c != ':')
            .trim_start_matches([':', ' '])
            .to_string(),
        haproxy_version: command_line(&paths.haproxy.to_string_lossy(), &["-v"]),
        rustc_version: command_line("rustc", &["-V"]),
        clock_ticks_per_s: clock_ticks(),
        cpu_source: if crate::procs::have_schedstat() {
            "/proc/<pid>/task/*/schedstat (run time, ns)".into()
        } else {
            "/proc/<pid>/stat utime+stime (clock ticks)".into()
        },
        quick,
    }
}

/// The `proxy_on_*` callbacks a module exports, sorted (read by
/// `tools/wasm-post`, the one wasm reader of the workspace); none if it does
/// not parse.
pub fn proxy_exports(bytes: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = mksgate_wasm_post::exports(bytes)
        .map(|exports| exports.into_iter().map(|e| e.name).collect())
        .unwrap_or_default();
    out.retain(|name| name.starts_with("proxy_on_"));
    out.sort();
    out
}

pub(crate) fn module_info(paths: &Paths) -> Vec<ModuleInfo> {
    [
        "mksgate_filter.wasm",
        "mksgate_filter.raw.wasm",
        "mksgate_noop_filter.wasm",
        "mksgate_noop_filter.raw.wasm",
    ]
    .iter()
    .filter_map(|name| {
        let path = paths.module(name);
        let bytes = std::fs::read(&path).ok()?;
        Some(ModuleInfo {
            name: name.to_string(),
            path: path
                .strip_prefix(&paths.root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned(),
            bytes: bytes.len() as u64,
            proxy_exports: proxy_exports(&bytes),
        })
    })
    .collect()
}
