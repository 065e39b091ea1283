#!/bin/sh
# Runs each libFuzzer target for a bounded time from the committed seeds.
# Usage: fuzz.sh BUILD SECONDS
build=${1:-build-fuzz}; secs=${2:-60}
fail=0
for f in "$build"/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f"); seeds=tests/fuzz/seeds/${name#fuzz_}
  corpus="$build/corpus/$name"; mkdir -p "$corpus"
  if "$f" -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=0 -artifact_prefix="$build/crash-$name-" "$corpus" "$seeds" \
       > "$build/$name.log" 2>&1; then
    echo "PASS $name ($secs s, $(ls "$corpus" | wc -l) corpus files)"
  else
    echo "FAIL $name (see $build/$name.log)"; tail -30 "$build/$name.log"; fail=1
  fi
done
exit $fail
