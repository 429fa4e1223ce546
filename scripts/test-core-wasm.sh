#!/usr/bin/env bash
# Runs core's unit tests compiled to wasm32-unknown-unknown under Node, with
# wasm-bindgen-test-runner of exactly the wasm-bindgen version in Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [ -z "$VERSION" ]; then
  cargo generate-lockfile >/dev/null
  cargo test -p mksgate-core --target wasm32-unknown-unknown --no-run >/dev/null
  VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
fi
RUNNER="$ROOT/.tools/cargo/bin/wasm-bindgen-test-runner"
if [ ! -x "$RUNNER" ] || ! "$RUNNER" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "installing wasm-bindgen-cli $VERSION (first run only, a few minutes)"
  cargo install --quiet wasm-bindgen-cli --version "$VERSION" --root "$ROOT/.tools/cargo"
fi
command -v node >/dev/null || { echo "node is required for the wasm tests" >&2; exit 1; }
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$RUNNER" \
  cargo test -p mksgate-core --target wasm32-unknown-unknown
