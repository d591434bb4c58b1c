#!/usr/bin/env bash
# The bounded fuzzing run of CI: every target for FUZZ_SECONDS (default 60) from a fresh seed
# corpus; a crash fails the run, leaving the input in fuzz/artifacts/<target>/. Needs the release
# CLI (`cargo build --release`) for the seeds.
#
# The targets are built with cargo and the coverage flags libFuzzer needs (libfuzzer-sys's
# documented manual build; the flags `cargo fuzz build -D -s none` passes), so that CI does not
# spend ~3 minutes compiling cargo-fuzz; it writes to the same place as that command.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
./seeds.sh
host=$(rustc -vV | sed -n 's/^host: //p')
# In cargo-fuzz 0.13's order, so that cargo sees the same flags and `cargo fuzz run -D -s none`
# reuses this build.
coverage=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  --cfg fuzzing
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0
  -Cllvm-args=-sanitizer-coverage-stack-depth
  -Cdebug-assertions
)
# --target keeps the flags away from build scripts, which are not linked with libFuzzer.
RUSTFLAGS="${coverage[*]}" cargo build --bins --target "$host"
for target in dsl safetensors checkpoint idx; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target" "artifacts/$target"
  status=0
  "target/$host/debug/$target" "corpus/$target" "seeds/$target" \
    -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="artifacts/$target/" \
    > "target/$target.log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)" "target/$target.log" || true
  if [ "$status" != 0 ]; then
    tail -n 40 "target/$target.log" >&2
    echo "fuzz target $target failed (exit $status); inputs in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
