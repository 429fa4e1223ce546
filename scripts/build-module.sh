#!/usr/bin/env bash
# Builds the shipped proxy-wasm module(s):
#   scripts/build-module.sh [mksgate|noop|trap|all]      (default: mksgate)
# (`trap` is the test-only module that traps on demand; never shipped.)
#
# For each module: `cargo build --target wasm32-wasip1 --release -p <pkg>`,
# then tools/wasm-post drops every export outside its allowlist (the
# callbacks the filter does not use, so Envoy never calls into the VM for
# them, e.g. per WebSocket data chunk) and garbage-collects what they kept
# alive. Results, in target/wasm32-wasip1/release/:
#   <name>.wasm      the SHIPPED module (cargo's output replaced in place)
#   <name>.raw.wasm  cargo's own output, for before/after comparisons
#
# Note: every `cargo build` of the package, even one with nothing to
# rebuild, copies cargo's raw module back over <name>.wasm. Run this script
# (again) after any such build. Running it twice in a row is fine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

bash "$ROOT/scripts/setup.sh" >/dev/null

WHICH=${1:-mksgate}
case "$WHICH" in
  mksgate) MODULES=(mksgate-filter) ;;
  noop) MODULES=(mksgate-noop-filter) ;;
  trap) MODULES=(mksgate-trap-filter) ;;
  all) MODULES=(mksgate-filter mksgate-noop-filter mksgate-trap-filter) ;;
  *)
    echo "usage: $0 [mksgate|noop|trap|all]" >&2
    exit 2
    ;;
esac

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR="$TARGET_DIR/wasm32-wasip1/release"
POST="$TARGET_DIR/release/mksgate-wasm-post"

cargo build --quiet --release -p mksgate-wasm-post
pkg_args=()
for pkg in "${MODULES[@]}"; do pkg_args+=(-p "$pkg"); done
cargo build --quiet --target wasm32-wasip1 --release "${pkg_args[@]}"

for pkg in "${MODULES[@]}"; do
  name=${pkg//-/_}
  shipped="$OUT_DIR/$name.wasm"
  raw="$OUT_DIR/$name.raw.wasm"
  if [ ! -f "$shipped" ]; then
    echo "build-module: cargo produced no $shipped" >&2
    exit 1
  fi
  # Cargo's output, unless it is still the module this script shipped
  # (cargo left it alone): then the raw copy next to it is current.
  if "$POST" --input "$shipped" --check >/dev/null; then
    if [ ! -f "$raw" ]; then
      # No raw copy: have cargo put its output back.
      rm -f "$shipped"
      cargo build --quiet --target wasm32-wasip1 --release -p "$pkg"
      if "$POST" --input "$shipped" --check >/dev/null; then
        echo "build-module: cannot get cargo's raw $name.wasm back; run 'cargo clean -p $pkg --release --target wasm32-wasip1'" >&2
        exit 1
      fi
      cp "$shipped" "$raw.tmp.$$"
      mv -f "$raw.tmp.$$" "$raw"
    fi
  else
    cp "$shipped" "$raw.tmp.$$"
    mv -f "$raw.tmp.$$" "$raw"
  fi
  echo "== $pkg"
  "$POST" --input "$raw" --output "$shipped"
  "$POST" --input "$shipped" --check >/dev/null
done

echo "== sizes (bytes)"
for pkg in "${MODULES[@]}"; do
  name=${pkg//-/_}
  printf '%-28s raw %8d  shipped %8d\n' "$name.wasm" \
    "$(stat -c %s "$OUT_DIR/$name.raw.wasm")" "$(stat -c %s "$OUT_DIR/$name.wasm")"
done
