#!/usr/bin/env bash
# What each kind of host call mksgate makes costs Envoy (issue 15's budget):
# for each kind, the do-nothing filter makes that call 20 times per
# handshake (system 4H, BENCH_NOOP_CALLS) and is measured against the same
# filter making none (4P) over the same windows; the difference / 20 is the
# price of one call, proxy CPU at 120 handshakes/s. About 4 minutes.
#
#   scripts/bench-calls.sh            every kind
#   scripts/bench-calls.sh route now  those kinds (bench/noop-filter/src/calls.rs)
#
# Writes target/bench/calls/<kind>.json and .md and prints one line per kind.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(headers address now header shared route counter property)
TIMES=${BENCH_CALL_TIMES:-20}

cargo build --quiet --release -p mksgate-host-tests --bin esxi-standin
cargo build --quiet --release -p mksgate-loadgen
scripts/build-module.sh noop >/dev/null
LOADGEN="$ROOT/target/release/mksgate-loadgen"
OUT="$ROOT/target/bench/calls"
mkdir -p "$OUT"
pin=()
if command -v taskset >/dev/null && taskset -c 1 true 2>/dev/null; then pin=(taskset -c 1); fi

for kind in "${kinds[@]}"; do
  BENCH_NOOP_CALLS="$kind*$TIMES" BENCH_QUICK=1 BENCH_SCENARIOS=handshake-paced \
    BENCH_SYSTEMS=noop-token-log,noop-calls-log \
    BENCH_BUDGET_WINDOWS="${BENCH_BUDGET_WINDOWS:-10}" BENCH_WINDOW_S="${BENCH_WINDOW_S:-2}" \
    "${pin[@]}" "$LOADGEN" suite --out "$OUT/$kind.json" >"$OUT/$kind.log" 2>&1
  "$LOADGEN" report --in "$OUT/$kind.json" --md "$OUT/$kind.md" --svg "$OUT/$kind.svg" >/dev/null 2>&1
  row=$(grep -F '| 4H − 4P |' "$OUT/$kind.md" | head -1)
  total=$(echo "$row" | awk -F'|' '{gsub(/ /,"",$4); print $4}')
  windows=$(echo "$row" | awk -F'|' '{print $5}')
  per=$(awk -v t="$total" -v n="$TIMES" 'BEGIN { if (t ~ /^-?[0-9.]+$/) printf "%.1f", t / n; else print "—" }')
  printf '%-9s %5s µs per call  (%s x%s: %s µs; windows:%s)\n' "$kind" "$per" "$kind" "$TIMES" "$total" "$windows"
done
