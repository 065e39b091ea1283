#!/bin/sh
# make check: the whole suite under ASan+UBSan, under every CPU-feature mask the machine can
# run, then each fuzzer for a bounded time. Usage: sh tests/check.sh
set -e
jobs=$(nproc 2>/dev/null || echo 2)
make --no-print-directory -j"$jobs" BUILD=build-asan SANITIZE=1 tests fixtures tools
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== ASan+UBSan"
sh tests/run.sh build-asan build-asan/bin/dsinfer
for mask in ${DSI_CHECK_MASKS:-avx512 avx512,avx2}; do
  echo "== DSI_CPU_DISABLE=$mask"
  DSI_CPU_DISABLE=$mask sh tests/run.sh build-asan build-asan/bin/dsinfer
done
echo "== fuzzers (${FUZZ_SECONDS:-30} s each)"
make --no-print-directory fuzz FUZZ_SECONDS=${FUZZ_SECONDS:-30}
