#!/bin/sh
# Runs every test program; prints one line per test and a summary. Usage: run.sh BUILD BIN
build=${1:-build}
export DSI_FIXTURES=${DSI_FIXTURES:-$build/fixtures}
export DSI_BIN=${2:-bin/dsinfer}
pass=0; fail=0; failed=""
for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  case "$t" in *.o|*.d) continue;; esac
  name=$(basename "$t")
  start=$(date +%s.%N)
  if "$t" > "$build/tests/$name.log" 2>&1; then
    pass=$((pass+1)); status=PASS
  else
    fail=$((fail+1)); status=FAIL; failed="$failed $name"
  fi
  end=$(date +%s.%N)
  printf '%-4s %-32s %6.2fs\n' "$status" "$name" "$(awk "BEGIN{print $end - $start}")"
  [ $status = FAIL ] && sed -n '1,40p' "$build/tests/$name.log"
done
for s in tests/cli/*.sh; do
  [ -f "$s" ] || continue
  name=$(basename "$s" .sh)
  if sh "$s" > "$build/tests/$name.log" 2>&1; then pass=$((pass+1)); echo "PASS $name"
  else fail=$((fail+1)); failed="$failed $name"; echo "FAIL $name"; sed -n '1,40p' "$build/tests/$name.log"; fi
done
echo "tests: $pass passed, $fail failed${failed:+ (}${failed# }${failed:+)}"
[ $fail -eq 0 ]
