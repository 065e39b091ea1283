#!/bin/sh
# Runs every test program; prints one line per test and a summary. Usage: run.sh BUILD BIN
# DSI_ARM_BUILD=dir (make test, make test-arm): also the AArch64 test programs in dir/tests,
# under $DSI_ARM_RUN (qemu-aarch64 -cpu max) once per ISA variant; DSI_ARM_ONLY=1: only those.
build=${1:-build}
export DSI_FIXTURES=${DSI_FIXTURES:-$build/fixtures}
export DSI_BIN=${2:-bin/dsinfer}
# the CLI's default -ngl auto would look for a GPU: the tests pin the CPU unless they ask
export DSINFER_NGL=${DSINFER_NGL:-0}
# Vulkan tests: with the Khronos validation layer when it is installed
[ -f /usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json ] &&
  export DSI_VK_VALIDATION=${DSI_VK_VALIDATION:-1}
# and its synchronization checks, except in sanitizer builds (LeakSanitizer reports the
# memory those checks keep at exit)
case "$build" in
  *asan*|*san*) ;;
  *) export DSI_VK_SYNC_VALIDATION=${DSI_VK_SYNC_VALIDATION:-1};;
esac
pass=0; fail=0; failed=""; skip=0
if [ "${DSI_ARM_ONLY:-0}" != 1 ]; then
  for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.o|*.d) continue;; esac
    name=$(basename "$t")
    start=$(date +%s.%N)
    "$t" > "$build/tests/$name.log" 2>&1; rc=$?
    if [ $rc = 0 ]; then
      pass=$((pass+1)); status=PASS
    elif [ $rc = 77 ]; then
      skip=$((skip+1)); status=SKIP
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
fi
# AArch64: each variant is reached by masking the better ones (test_qdot tests all it can run)
if [ -n "${DSI_ARM_BUILD:-}" ]; then
  for t in "$DSI_ARM_BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.o|*.d|*.log) continue;; esac
    for mask in none i8mm dotprod; do
      [ $mask = none ] && mask=
      name="$(basename "$t")[aarch64${mask:+,no-$mask}]"
      log="$t${mask:+-$mask}.log"
      start=$(date +%s.%N)
      if DSI_CPU_DISABLE=$mask ${DSI_ARM_RUN:-qemu-aarch64 -cpu max} "$t" > "$log" 2>&1; then
        pass=$((pass+1)); status=PASS
      else
        fail=$((fail+1)); status=FAIL; failed="$failed $name"
      fi
      end=$(date +%s.%N)
      printf '%-4s %-32s %6.2fs\n' "$status" "$name" "$(awk "BEGIN{print $end - $start}")"
      [ $status = FAIL ] && sed -n '1,40p' "$log"
    done
  done
fi
sk=; [ $skip -gt 0 ] && sk=", $skip skipped (no device)"
echo "tests: $pass passed, $fail failed${failed:+ (}${failed# }${failed:+)}$sk"
[ $fail -eq 0 ]
