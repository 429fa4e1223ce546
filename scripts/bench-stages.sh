#!/usr/bin/env bash
# The module's own handshake CPU, stage by stage (issue 15's budget): core's
# decision built for wasm32-wasip1 with the shipped release profile
# (bench/stages) and timed in Node's V8, the engine Envoy runs the module
# in. Warm caches; under a minute.
#   scripts/bench-stages.sh [links] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build --quiet --release --target wasm32-wasip1 -p mksgate-stages
command -v node >/dev/null || { echo "node is required" >&2; exit 1; }
echo "node $(node --version) (V8 $(node -p process.versions.v8))"
node --no-warnings bench/stages/run.mjs \
  "${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/mksgate_stages.wasm" "${1:-2000}" "${2:-15}"
