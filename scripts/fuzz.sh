#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/fuzz_targets/: token, config, decide) for
# SECONDS (default 60), starting from the committed seeds in
# fuzz/corpus/<target>/ (copied to a scratch corpus, so the seeds stay as
# committed). Exits non-zero if any target crashes (a panic, which is how
# the targets report a broken invariant); the crashing input is kept in
# fuzz/artifacts/<target>/ with the command that reproduces it.
#
#   scripts/fuzz.sh [SECONDS]
#   FUZZ_TARGETS="decide" scripts/fuzz.sh 600   # one target, longer
#   FUZZ_SANITIZER=address scripts/fuzz.sh      # ASan (default: none)
#   FUZZ_KEEP_CORPUS=1 scripts/fuzz.sh          # keep and print the grown corpus
#
# libFuzzer needs nightly rustc flags (-Zsanitizer, -Cpasses=sancov-module);
# on a stable toolchain RUSTC_BOOTSTRAP=1 lets stable rustc accept them, so
# no nightly is needed. cargo-fuzz is installed into .tools/cargo if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SECONDS_PER_TARGET=${1:-60}
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS]" >&2
  exit 2
fi
TARGETS=${FUZZ_TARGETS:-token config decide}
SANITIZER=${FUZZ_SANITIZER:-none}
CARGO_FUZZ_VERSION=0.13.2

export PATH="$ROOT/.tools/cargo/bin:$PATH"
if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/cargo"
  cargo install --quiet --locked cargo-fuzz --version "=$CARGO_FUZZ_VERSION" \
    --root "$ROOT/.tools/cargo"
fi

# Stable rustc accepts the nightly-only flags cargo-fuzz passes.
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi
# fuzz/ is its own workspace; keep its build out of the main target dir.
export CARGO_TARGET_DIR="$ROOT/fuzz/target"

# -a: debug assertions and overflow checks on, so an arithmetic overflow in
# core (which release wasm would silently wrap) is a crash here.
BUILD_FLAGS=(--release --debug-assertions --sanitizer "$SANITIZER")
echo "fuzz: building ($TARGETS) with sanitizer=$SANITIZER"
for target in $TARGETS; do
  cargo fuzz build "${BUILD_FLAGS[@]}" "$target"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mksgate-fuzz.XXXXXX")
if [ -z "${FUZZ_KEEP_CORPUS:-}" ]; then
  trap 'rm -rf "$WORK"' EXIT
fi

failed=()
summary=()
for target in $TARGETS; do
  corpus="$WORK/$target"
  mkdir -p "$corpus" "$ROOT/fuzz/artifacts/$target"
  cp "$ROOT/fuzz/corpus/$target/"* "$corpus/"
  seeds=$(find "$corpus" -type f | wc -l)
  args=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1)
  if [ -f "$ROOT/fuzz/dicts/$target.dict" ]; then
    args+=(-dict="$ROOT/fuzz/dicts/$target.dict")
  fi
  log="$WORK/$target.log"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s from $seeds seeds"
  status=0
  cargo fuzz run "${BUILD_FLAGS[@]}" "$target" "$corpus" -- "${args[@]}" >"$log" 2>&1 || status=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' || true)
  cov=$(sed -nE 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/cov \1, ft \2, corpus \3/p' <<<"$done_line")
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    summary+=("$target: CRASH (exit $status)")
    echo "fuzz: $target FAILED; the invariant that broke:" >&2
    grep -E -A8 "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" | head -n 40 >&2 || tail -n 40 "$log" >&2
    artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
    if [ -n "$artifact" ]; then
      echo "fuzz: reproduce with:" >&2
      echo "  PATH=.tools/cargo/bin:\$PATH RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=fuzz/target \\" >&2
      echo "    cargo fuzz run ${BUILD_FLAGS[*]} $target ${artifact#"$ROOT/"}" >&2
    fi
    cp "$log" "$ROOT/fuzz/artifacts/$target/last-run.log"
    echo "fuzz: full log in fuzz/artifacts/$target/last-run.log" >&2
  else
    summary+=("$target: ok, ${execs:-?} runs, ${rate:-?} exec/s, ${cov:-no stats}")
  fi
done

echo
echo "fuzz summary (${SECONDS_PER_TARGET}s each, sanitizer=$SANITIZER):"
printf '  %s\n' "${summary[@]}"
if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
  echo "  grown corpus and logs kept in $WORK"
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
