//! Post-build step for mksgate's proxy-wasm modules.
//!
//! The proxy-wasm Rust SDK (0.2.5) exports every callback of the ABI, used or
//! not, and the host (proxy-wasm-cpp-host, inside Envoy) calls every callback
//! a module exports: after a WebSocket upgrade that is
//! `proxy_on_request_body` / `proxy_on_response_body` for every data chunk in
//! each direction. The host treats a callback the module does not export as
//! a no-op that continues (`if (!wasm_->on_request_body_) return Continue;`
//! in `src/context.cc`), so a module that exports only what it uses is never
//! entered for the rest.
//!
//! [`process`] keeps the exports on an explicit allowlist ([`KEEP`], plus any
//! `proxy_abi_version_*` marker and the caller's extra names), deletes every
//! other export (so an export a future SDK adds is dropped by default), then
//! garbage-collects the functions, globals, data and types nothing reaches
//! any more, and validates the result.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The exports a proxy-wasm HTTP filter that acts on request headers only
/// needs, each with why. Everything else is removed.
///
/// Not here, on purpose (the host treats each as absent and moves on):
/// `proxy_on_log` (the SDK's only does `active_id = id` then calls the
/// context's `on_log`, a no-op unless overridden; mksgate and the noop
/// filter override none), every other HTTP callback (`proxy_on_request_body`,
/// `_trailers`, `_metadata`, `proxy_on_response_*`), the gRPC out-call
/// callbacks (`proxy_on_grpc_*`),
/// `proxy_on_queue_ready`, `proxy_on_foreign_function`, and the
/// network-filter callbacks (`proxy_on_new_connection`,
/// `proxy_on_downstream_data`, `proxy_on_upstream_data`,
/// `proxy_on_*_connection_close`).
///
/// A filter that starts overriding another callback (say
/// `on_http_response_headers`) must add its export here (or pass
/// `--keep-export`): otherwise the shipped module silently never gets it.
pub const KEEP: &[(&str, &str)] = &[
    (
        "memory",
        "the linear memory; the host reads and writes through it",
    ),
    (
        "_initialize",
        "WASI reactor start: runs the SDK's main! block (sets the root context)",
    ),
    (
        "_start",
        "WASI command start, looked up when there is no _initialize",
    ),
    ("main", "called after _initialize when present"),
    ("__main_void", "called after _initialize when present"),
    (
        "malloc",
        "the host's allocator for data it passes in (first choice)",
    ),
    (
        "proxy_on_memory_allocate",
        "the host's allocator when there is no malloc; without either the VM fails to load",
    ),
    (
        "proxy_on_context_create",
        "creates the SDK's root and HTTP contexts",
    ),
    ("proxy_on_vm_start", "root context: VM start"),
    (
        "proxy_on_configure",
        "root context: reads and checks the plugin configuration",
    ),
    (
        "proxy_on_request_headers",
        "the one HTTP callback mksgate acts on",
    ),
    (
        "proxy_on_http_call_response",
        "etcd's answers (one-time links across a fleet); without it a request waiting for etcd hangs",
    ),
    (
        "proxy_on_tick",
        "root context: the etcd login (etcd's access control); without it no worker ever logs in",
    ),
    (
        "proxy_on_done",
        "context teardown handshake (the SDK answers done=true)",
    ),
    (
        "proxy_on_delete",
        "frees the SDK's per-context state; without it every stream leaks",
    ),
];

/// Exports starting with this mark the ABI version; the host reads it to
/// choose the ABI, so it is always kept.
pub const ABI_MARKER_PREFIX: &str = "proxy_abi_version_";

/// What an export is, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExportKind {
    Func,
    Table,
    Memory,
    Global,
    Tag,
}

impl fmt::Display for ExportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportKind::Func => "func",
            ExportKind::Table => "table",
            ExportKind::Memory => "memory",
            ExportKind::Global => "global",
            ExportKind::Tag => "tag",
        })
    }
}

/// One export of a module.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Export {
    pub name: String,
    pub kind: ExportKind,
}

impl Export {
    /// A proxy-wasm callback: a function the host calls on an event.
    pub fn is_callback(&self) -> bool {
        self.name.starts_with("proxy_on_")
    }
}

/// The tool's errors: a message, already in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(context: &str, e: impl fmt::Display) -> Error {
    Error(format!("{context}: {e}"))
}

/// The allowlist: [`KEEP`], the ABI marker, and `extra` names.
#[derive(Clone, Debug)]
pub struct KeepList {
    names: BTreeSet<String>,
}

impl KeepList {
    /// The default list plus `extra`.
    pub fn with_extra<I, S>(extra: I) -> KeepList
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: BTreeSet<String> = KEEP.iter().map(|(n, _)| (*n).to_string()).collect();
        names.extend(extra.into_iter().map(Into::into));
        KeepList { names }
    }

    pub fn keeps(&self, name: &str) -> bool {
        name.starts_with(ABI_MARKER_PREFIX) || self.names.contains(name)
    }
}

impl Default for KeepList {
    fn default() -> Self {
        KeepList::with_extra(std::iter::empty::<String>())
    }
}

/// Which exports of a module stay and which go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub kept: Vec<Export>,
    pub removed: Vec<Export>,
}

impl Plan {
    pub fn new(exports: &[Export], keep: &KeepList) -> Plan {
        let mut plan = Plan::default();
        for export in exports {
            if keep.keeps(&export.name) {
                plan.kept.push(export.clone());
            } else {
                plan.removed.push(export.clone());
            }
        }
        plan
    }
}

/// The exports of a module, in module order.
pub fn exports(wasm: &[u8]) -> Result<Vec<Export>, Error> {
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| err("parsing the module", e))?;
        if let wasmparser::Payload::ExportSection(reader) = payload {
            for export in reader {
                let export = export.map_err(|e| err("reading the export section", e))?;
                let kind = match export.kind {
                    wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => {
                        ExportKind::Func
                    }
                    wasmparser::ExternalKind::Table => ExportKind::Table,
                    wasmparser::ExternalKind::Memory => ExportKind::Memory,
                    wasmparser::ExternalKind::Global => ExportKind::Global,
                    wasmparser::ExternalKind::Tag => ExportKind::Tag,
                };
                out.push(Export {
                    name: export.name.to_string(),
                    kind,
                });
            }
        }
    }
    Ok(out)
}

/// Size of each section of a module, in module order: (name, bytes).
/// Custom sections are named `custom:<name>`.
pub fn section_sizes(wasm: &[u8]) -> Result<Vec<(String, usize)>, Error> {
    use wasmparser::Payload;
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| err("parsing the module", e))?;
        let (name, size) = match &payload {
            Payload::CustomSection(reader) => {
                (format!("custom:{}", reader.name()), reader.data().len())
            }
            Payload::TypeSection(r) => ("type".into(), r.range().len()),
            Payload::ImportSection(r) => ("import".into(), r.range().len()),
            Payload::FunctionSection(r) => ("function".into(), r.range().len()),
            Payload::TableSection(r) => ("table".into(), r.range().len()),
            Payload::MemorySection(r) => ("memory".into(), r.range().len()),
            Payload::GlobalSection(r) => ("global".into(), r.range().len()),
            Payload::ExportSection(r) => ("export".into(), r.range().len()),
            Payload::ElementSection(r) => ("element".into(), r.range().len()),
            Payload::DataSection(r) => ("data".into(), r.range().len()),
            Payload::CodeSectionStart { size, .. } => ("code".into(), *size as usize),
            _ => continue,
        };
        out.push((name, size));
    }
    Ok(out)
}

/// Names of the exports in `exports` that `keep` does not keep.
pub fn outside(exports: &[Export], keep: &KeepList) -> Vec<Export> {
    Plan::new(exports, keep).removed
}

/// The result of [`process`].
#[derive(Debug)]
pub struct Processed {
    pub plan: Plan,
    pub wasm: Vec<u8>,
}

/// Remove every export `keep` does not keep, garbage-collect, emit, and
/// check that the result is valid and exports exactly the kept names.
pub fn process(input: &[u8], keep: &KeepList) -> Result<Processed, Error> {
    let before = exports(input)?;
    if !before.iter().any(|e| e.name.starts_with(ABI_MARKER_PREFIX)) {
        return Err(Error(format!(
            "not a proxy-wasm module: no `{ABI_MARKER_PREFIX}*` export"
        )));
    }
    if !before
        .iter()
        .any(|e| e.name == "malloc" || e.name == "proxy_on_memory_allocate")
    {
        return Err(Error(
            "not a loadable proxy-wasm module: exports neither malloc nor proxy_on_memory_allocate"
                .into(),
        ));
    }
    let plan = Plan::new(&before, keep);

    // No "processed-by walrus" producers section: the output stays the
    // module rustc made, minus what is gone.
    let mut config = walrus::ModuleConfig::new();
    config.generate_producers_section(false);
    let mut module =
        walrus::Module::from_buffer_with_config(input, &config).map_err(|e| err("loading", e))?;
    let doomed: Vec<walrus::ExportId> = module
        .exports
        .iter()
        .filter(|e| !keep.keeps(&e.name))
        .map(|e| e.id())
        .collect();
    for id in doomed {
        module.exports.delete(id);
    }
    walrus::passes::gc::run(&mut module);
    let wasm = module.emit_wasm();

    wasmparser::Validator::new()
        .validate_all(&wasm)
        .map_err(|e| err("the processed module is not valid", e))?;
    let after = exports(&wasm)?;
    let mut want = plan.kept.clone();
    want.sort();
    let mut got = after;
    got.sort();
    if got != want {
        return Err(Error(format!(
            "the processed module exports {got:?}, expected {want:?}"
        )));
    }
    Ok(Processed { plan, wasm })
}

/// Write `data` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(&format!("writing {}", path.display()), e));
    }
    Ok(())
}
