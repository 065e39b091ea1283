#!/bin/sh
# make bench: the project's benchmarks (numbers go to docs/PERFORMANCE.md by hand, with the
# machine and the date). Usage: bench.sh BUILD BIN
build=${1:-build}; bin=${2:-bin/dsinfer}
fix=$build/fixtures
echo "== tokenizer (1 MB of Shakespeare, median of 5)"
for t in qwen2.5 deepseek-v3; do
  "$build/tools/bench_tokenizer" "$fix/tokenizers/$t/tokenizer.json" \
      "$fix/models/shakespeare-qwen2/val.txt" --repeat 9 -r 5
done
