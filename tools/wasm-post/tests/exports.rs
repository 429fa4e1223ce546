//! The shipped modules (after `scripts/build-module.sh all`) export exactly
//! the allowlist, and cargo's raw output next to them still has the
//! callbacks that were removed.

#![cfg(test)]

mod common;

use common::{export_names, module, shipped, REMOVED_CALLBACKS, SHIPPED_EXPORTS};

fn check(name: &str) {
    let path = shipped(name);
    let bytes = std::fs::read(&path).expect("read shipped");
    let names = export_names(&bytes);
    for kept in SHIPPED_EXPORTS {
        assert!(names.iter().any(|n| n == kept), "{name}: {kept} missing");
    }
    for gone in REMOVED_CALLBACKS {
        assert!(
            !names.iter().any(|n| n == gone),
            "{name}: {gone} still exported"
        );
    }
    // The tool's own check agrees, and the module is valid wasm.
    let keep = mksgate_wasm_post::KeepList::default();
    let all = mksgate_wasm_post::exports(&bytes).expect("exports");
    assert!(mksgate_wasm_post::outside(&all, &keep).is_empty());
    wasmparser::Validator::new()
        .validate_all(&bytes)
        .expect("shipped module validates");

    let (_, raw) = module(&format!("{name}.raw.wasm"));
    let raw_names = export_names(&raw);
    for gone in REMOVED_CALLBACKS {
        assert!(
            raw_names.iter().any(|n| n == gone),
            "{name}.raw.wasm lacks {gone}: is it cargo's output?"
        );
    }
    assert!(
        bytes.len() < raw.len(),
        "{name}: shipped {} bytes, raw {}",
        bytes.len(),
        raw.len()
    );
    println!(
        "{name}: raw {} bytes, shipped {} bytes",
        raw.len(),
        bytes.len()
    );
}

#[test]
fn shipped_mksgate_exports_only_the_allowlist() {
    check("mksgate_filter");
}

#[test]
fn shipped_noop_exports_only_the_allowlist() {
    check("mksgate_noop_filter");
}

#[test]
fn processing_the_raw_module_again_gives_the_shipped_one() {
    for name in ["mksgate_filter", "mksgate_noop_filter"] {
        let (_, raw) = module(&format!("{name}.raw.wasm"));
        let path = shipped(name);
        let shipped = std::fs::read(path).expect("read shipped");
        let keep = mksgate_wasm_post::KeepList::default();
        let once = mksgate_wasm_post::process(&raw, &keep).expect("process raw");
        assert_eq!(once.wasm, shipped, "{name}: not reproducible");
        // Idempotent: the shipped module goes through unchanged in exports.
        let twice = mksgate_wasm_post::process(&shipped, &keep).expect("process shipped");
        assert!(twice.plan.removed.is_empty());
        assert_eq!(export_names(&twice.wasm), export_names(&shipped));
    }
}
