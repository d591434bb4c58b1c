#!/usr/bin/env bash
# The bounded fuzzing run of CI: every target for FUZZ_SECONDS (default 60) from a fresh seed
# corpus; a crash fails the run, leaving the input in fuzz/artifacts/<target>/. Needs the release
# CLI (`cargo build --release`) for the seeds; installs cargo-fuzz from crates.io if missing.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked
./seeds.sh
flags=(-O -s none --codegen-units 16)
cargo fuzz build "${flags[@]}"
for target in dsl safetensors checkpoint idx; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|panicked|ERROR|SUMMARY|Failing input|Test unit" || true
  # The pipe hides cargo fuzz's exit status: a crash leaves an artifact.
  if compgen -G "artifacts/$target/*" > /dev/null; then
    echo "fuzz target $target crashed; inputs in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
