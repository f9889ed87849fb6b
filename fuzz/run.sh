#!/usr/bin/env bash
# Runs every fuzz target for N executions (default 1,000,000) and prints the
# counts. Seeds each target's corpus (fuzz/corpus/, not committed) from the
# hand-written bodies in fuzz/seeds/ and the recorded bodies in
# tests/fixtures/recorded/.
#
#   fuzz/run.sh [RUNS]
#
# cargo-fuzz needs nightly features; on a stable toolchain RUSTC_BOOTSTRAP=1
# enables them (cargo install cargo-fuzz first).
set -euo pipefail
cd "$(dirname "$0")"
runs="${1:-1000000}"
fixtures=../tests/fixtures/recorded
export RUSTC_BOOTSTRAP=1
for t in here_now where_now set_state get_state events error_body emulator_request response_head dns_response; do
  mkdir -p "corpus/$t"
  cp seeds/* "corpus/$t/" 2>/dev/null || true
  cp "$fixtures"/*.json "corpus/$t/"
  out=$(cargo fuzz run -O "$t" "corpus/$t" -- -runs="$runs" -max_len=4096 2>&1 | tail -n 3)
  done_line=$(echo "$out" | grep -E "Done [0-9]+ runs" || echo "$out")
  echo "$t: $done_line"
done
