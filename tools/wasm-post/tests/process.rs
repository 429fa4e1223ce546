//! The tool on small modules made here: what stays, what goes, what the GC
//! collects, `--check`, and atomic output.

#![cfg(test)]

use mksgate_wasm_post::{exports, process, KeepList};
use std::process::Command;
use walrus::{FunctionBuilder, Module, ValType};

/// A module shaped like an SDK one: memory, `_initialize`, the ABI marker,
/// an allocator, a used and an unused callback (each calling its own
/// helper), and an export no SDK has today.
fn sdk_like() -> Vec<u8> {
    let mut m = Module::default();
    let mem = m.memories.add_local(false, false, 1, None, None);
    m.exports.add("memory", mem);

    let helper = |m: &mut Module, value: i32| {
        let mut b = FunctionBuilder::new(&mut m.types, &[], &[ValType::I32]);
        b.func_body().i32_const(value);
        b.finish(vec![], &mut m.funcs)
    };
    let used_helper = helper(&mut m, 0);
    let unused_helper = helper(&mut m, 12345);

    let export = |m: &mut Module, name: &str, callee: Option<walrus::FunctionId>| {
        let mut b = FunctionBuilder::new(&mut m.types, &[], &[]);
        if let Some(f) = callee {
            b.func_body().call(f).drop();
        }
        let f = b.finish(vec![], &mut m.funcs);
        m.exports.add(name, f);
    };
    export(&mut m, "_initialize", None);
    export(&mut m, "proxy_abi_version_0_2_1", None);
    export(&mut m, "proxy_on_memory_allocate", None);
    export(&mut m, "proxy_on_request_headers", Some(used_helper));
    export(&mut m, "proxy_on_request_body", Some(unused_helper));
    export(&mut m, "proxy_on_future_thing", None);
    m.emit_wasm()
}

fn names(wasm: &[u8]) -> Vec<String> {
    let mut n: Vec<String> = exports(wasm).unwrap().into_iter().map(|e| e.name).collect();
    n.sort();
    n
}

fn functions(wasm: &[u8]) -> u32 {
    let mut count = 0;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::FunctionSection(r) = payload.unwrap() {
            count = r.count();
        }
    }
    count
}

#[test]
fn keeps_the_allowlist_and_collects_the_rest() {
    let input = sdk_like();
    let out = process(&input, &KeepList::default()).unwrap();
    assert_eq!(
        names(&out.wasm),
        [
            "_initialize",
            "memory",
            "proxy_abi_version_0_2_1",
            "proxy_on_memory_allocate",
            "proxy_on_request_headers"
        ]
    );
    let removed: Vec<&str> = out.plan.removed.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(removed, ["proxy_on_request_body", "proxy_on_future_thing"]);
    // 8 functions in; the two removed exports and the helper only one of
    // them called are gone.
    assert_eq!(functions(&input), 8);
    assert_eq!(functions(&out.wasm), 5);
}

#[test]
fn keep_export_keeps_more() {
    let out = process(
        &sdk_like(),
        &KeepList::with_extra(["proxy_on_request_body"]),
    )
    .unwrap();
    assert!(names(&out.wasm).contains(&"proxy_on_request_body".to_string()));
    assert_eq!(functions(&out.wasm), 7);
}

#[test]
fn refuses_a_module_without_the_abi_marker() {
    let mut m = Module::default();
    let mem = m.memories.add_local(false, false, 1, None, None);
    m.exports.add("memory", mem);
    let e = process(&m.emit_wasm(), &KeepList::default()).unwrap_err();
    assert!(e.0.contains("not a proxy-wasm module"), "{e}");
}

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mksgate-wasm-post"))
}

#[test]
fn cli_processes_checks_and_writes_atomically() {
    let dir = std::env::temp_dir().join(format!("mksgate-wasm-post-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("raw.wasm");
    let out = dir.join("out.wasm");
    std::fs::write(&raw, sdk_like()).unwrap();

    let check_raw = tool()
        .arg("--input")
        .arg(&raw)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(check_raw.status.code(), Some(1), "{check_raw:?}");
    let text = String::from_utf8_lossy(&check_raw.stdout);
    assert!(text.contains("proxy_on_request_body"), "{text}");

    let run = tool()
        .arg("--input")
        .arg(&raw)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("removed (2):"), "{text}");
    assert!(text.contains("kept (5):"), "{text}");

    let check_out = tool()
        .arg("--input")
        .arg(&out)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(check_out.status.code(), Some(0), "{check_out:?}");

    // In place, twice: same result, and no temporary file left behind.
    let again = tool()
        .arg("--input")
        .arg(&out)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    assert_eq!(names(&std::fs::read(&out).unwrap()).len(), 5);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["out.wasm", "raw.wasm"]);

    let usage = tool().arg("--input").arg(&raw).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
