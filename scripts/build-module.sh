#!/usr/bin/env bash
# Builds the shipped proxy-wasm module(s):
#   scripts/build-module.sh [mksgate|noop|trap|all]      (default: mksgate)
# (`trap` is the test-only module that traps on demand; never shipped.)
#
# For each module: `cargo build --target wasm32-wasip1 --release -p <pkg>`,
# then tools/wasm-post drops every export outside its allowlist (the
# callbacks the filter does not use, so Envoy never calls into the VM for
# them, e.g. per WebSocket data chunk) and garbage-collects what they kept
# alive. Results, in target/mksgate/ (a directory of this script's own, so a
# later plain `cargo build` can never put an unprocessed module where the
# tests, the docs and the OCI script look):
#   <name>.wasm      the SHIPPED module
#   <name>.raw.wasm  cargo's own output, for before/after comparisons
# Cargo's output under target/wasm32-wasip1/release/ is left as cargo made it.
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
CARGO_OUT="$TARGET_DIR/wasm32-wasip1/release"
OUT_DIR="$TARGET_DIR/mksgate"
POST="$TARGET_DIR/release/mksgate-wasm-post"
mkdir -p "$OUT_DIR"

cargo build --quiet --release -p mksgate-wasm-post
pkg_args=()
for pkg in "${MODULES[@]}"; do pkg_args+=(-p "$pkg"); done
cargo build --quiet --target wasm32-wasip1 --release "${pkg_args[@]}"

for pkg in "${MODULES[@]}"; do
  name=${pkg//-/_}
  built="$CARGO_OUT/$name.wasm"
  if [ ! -f "$built" ]; then
    echo "build-module: cargo produced no $built" >&2
    exit 1
  fi
  raw="$OUT_DIR/$name.raw.wasm"
  cp "$built" "$raw.tmp.$$"
  mv -f "$raw.tmp.$$" "$raw"
  echo "== $pkg"
  "$POST" --input "$raw" --output "$OUT_DIR/$name.wasm"
  "$POST" --input "$OUT_DIR/$name.wasm" --check >/dev/null
done

echo "== sizes (bytes), in $OUT_DIR"
for pkg in "${MODULES[@]}"; do
  name=${pkg//-/_}
  printf '%-28s raw %8d  shipped %8d\n' "$name.wasm" \
    "$(stat -c %s "$OUT_DIR/$name.raw.wasm")" "$(stat -c %s "$OUT_DIR/$name.wasm")"
done
