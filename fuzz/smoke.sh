#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while (default 30 s each) from the corpora kept in
# fuzz/corpus/<target>, writing new inputs to a scratch directory (pass --keep to add them
# to the repository's corpora instead), and prints the executions per target.
# Needs cargo-fuzz and a nightly toolchain (or RUSTC_BOOTSTRAP=1 on stable).
# A crash stops the script with libFuzzer's report and the reproducer's path:
#   cargo +nightly fuzz run <target> <reproducer>
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
keep=${2:-}
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
"${fuzz[@]}" build -O
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $("${fuzz[@]}" list); do
  mkdir -p "fuzz/corpus/$target" "$scratch/$target"
  if [ "$keep" = "--keep" ]; then dirs=("fuzz/corpus/$target"); else dirs=("$scratch/$target" "fuzz/corpus/$target"); fi
  "${fuzz[@]}" run -O "$target" "${dirs[@]}" -- \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    > "$scratch/$target.log" 2>&1 || { tail -60 "$scratch/$target.log"; echo "fuzz target $target FAILED"; exit 1; }
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$target.log" | grep -o '[0-9]*$' || echo '?')
  printf 'fuzz %-16s %10s executions in %s s, no crash\n' "$target" "$runs" "$secs"
done
