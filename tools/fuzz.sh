#!/usr/bin/env bash
# Fuzzes every reader of users' files (tests/fuzz/targets.rs) with cargo-fuzz on nightly:
#   tools/fuzz.sh [RUNS] [TARGET...]      (default: 1,000,000 runs of every target)
#   FUZZ_SECONDS=N tools/fuzz.sh ...       (also stop each target after N seconds)
# Needs `rustup toolchain install nightly` and `cargo install cargo-fuzz`. Each target starts
# from its seed corpus (tests/fuzz/corpus/<target>/); libFuzzer's limits catch hangs (10 s per
# input) and unbounded allocation (2 GB RSS, 512 MB per malloc). A crash leaves its input in
# tests/fuzz/artifacts/<target>/: fix the reader, then copy the input to
# tests/fuzz/regressions/<target>/ so CI replays it (tests/tests/fuzz_regressions.rs).
# Prints one line per target: executions, seconds, and whether it found anything.
set -euo pipefail
cd "$(dirname "$0")/../tests/fuzz"
runs="${1:-1000000}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(pipeline_yaml mergekit_recipe safetensors safetensors_index config_json trace_jsonl sft_tokens)
fi
cargo +nightly fuzz build --release "${targets[@]/#/}" >/dev/null 2>&1 || cargo +nightly fuzz build --release
for t in "${targets[@]}"; do
  work="$(mktemp -d)"
  cp -r "corpus/$t/." "$work/"
  start=$(date +%s)
  if cargo +nightly fuzz run --release "$t" "$work" -- -runs="$runs" ${FUZZ_SECONDS:+-max_total_time=$FUZZ_SECONDS} -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 >"$work.log" 2>&1; then
    status="ok"
  else
    status="FOUND A FAILURE (see $work.log and artifacts/$t/)"
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$' || echo "?")
  echo "$t: $execs executions in $(( $(date +%s) - start )) s: $status"
done
