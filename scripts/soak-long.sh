#!/usr/bin/env bash
# `make soak-long` (issue 24): 30 minutes of Envoy + mksgate as deployed at
# a steady 2,000 open consoles, 50 opening and closing a second, 5 refused
# links a second, Envoy's heap, RSS and the VMs' memory sampled every 30 s
# (bench/loadgen/src/soak.rs). Writes bench/results/soak.json.
#
#   scripts/soak-long.sh           the full run (about 32 minutes)
#   scripts/soak-long.sh --short   `make test`'s version: 90 s, 1,000
#       consoles, 25 a second churned, samples every 10 s; debug builds;
#       writes target/bench/soak-short.json. Both fail unless the decision
#       counters equal the load generator's tallies and no console was cut;
#       the full run also fails if heap, RSS or VM memory moved more than
#       5% after the first 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
START=$(date +%s)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pin=()
if command -v taskset >/dev/null && taskset -c 1 true 2>/dev/null; then
  pin=(taskset -c 1)
fi
if [ "${1:-}" = "--short" ]; then
  cargo build --quiet -p mksgate-host-tests --bin esxi-standin
  cargo build --quiet -p mksgate-loadgen
  export ESXI_STANDIN_BIN="$ROOT/target/debug/esxi-standin"
  export BENCH_SOAK_SECS=${BENCH_SOAK_SECS:-90} BENCH_SOAK_CONSOLES=${BENCH_SOAK_CONSOLES:-1000}
  export BENCH_SOAK_CHURN=${BENCH_SOAK_CHURN:-25} BENCH_SOAK_SAMPLE_S=${BENCH_SOAK_SAMPLE_S:-10}
  export BENCH_SOAK_WARM_S=${BENCH_SOAK_WARM_S:-30}
  mkdir -p target/bench
  "${pin[@]}" target/debug/mksgate-loadgen soak --out target/bench/soak-short.json
  echo "== soak --short: passed in $(($(date +%s) - START)) s"
  exit 0
fi
cargo build --quiet --release -p mksgate-host-tests --bin esxi-standin
cargo build --quiet --release -p mksgate-loadgen
scripts/build-module.sh all
export BENCH_SOAK_CHECK=1
"${pin[@]}" target/release/mksgate-loadgen soak
echo "== soak-long done in $(($(date +%s) - START)) s: bench/results/soak.json"
