#!/bin/sh
# Command-line behaviour of info, tokenize and convert: outputs, exit statuses, error lines.
BIN=${DSI_BIN:-bin/dsinfer}; FIX=${DSI_FIXTURES:-build/fixtures}
T=${TMPDIR:-/tmp}/dsi-cli-$$; mkdir -p "$T"; trap 'rm -rf "$T"' EXIT
fail=0
check() { if [ "$1" != "$2" ]; then echo "FAIL: $3: got '$1', want '$2'"; fail=1; fi; }

$BIN convert "$FIX/models/tiny-qwen2" "$T/m.gguf" --no-progress 2>"$T/err"; check $? 0 "convert exit"
$BIN info "$T/m.gguf" >"$T/out" 2>"$T/err"; check $? 0 "info exit on a valid file"
grep -q "qwen2.block_count" "$T/out"; check $? 0 "info shows metadata"
grep -q "blk.2.ffn_down.weight *bf16 *\[352, 128\]" "$T/out"; check $? 0 "info shows the tensor table"
head -c 100 "$T/m.gguf" > "$T/trunc.gguf"
$BIN info "$T/trunc.gguf" >"$T/out" 2>"$T/err"; check $? 1 "info exit on a truncated file"
check "$(wc -l < "$T/err")" 1 "one-line reason"
grep -qE "truncated|cannot fit" "$T/err"; check $? 0 "reason names the cause"
$BIN info "$T/missing.gguf" 2>"$T/err"; check $? 1 "info on a missing file"
grep -q "cannot open" "$T/err"; check $? 0 "missing file message"

Q="$FIX/tokenizers/qwen2.5"
check "$($BIN tokenize -m "$Q" -p 'Hello world')" "9707 1879" "tokenize -p"
printf 'Hello, world!' > "$T/t.txt"
check "$($BIN tokenize -m "$Q/tokenizer.json" -f "$T/t.txt")" "9707 11 1879 0" "tokenize -f"
check "$($BIN tokenize -m "$Q" --decode -p '9707 11 1879 0')" "Hello, world!" "tokenize --decode"
check "$($BIN tokenize -m "$FIX/tokenizers/deepseek-v3" --add-special -p 'Hello world')" "0 19923 2058" "--add-special adds BOS"
check "$($BIN tokenize -m "$T/m.gguf" -p 'ROMEO:')" "$($BIN tokenize -m "$FIX/models/tiny-qwen2" -p 'ROMEO:')" "GGUF and HF dir agree"
printf 'ok \377 bad' > "$T/bad.txt"
$BIN tokenize -m "$Q" -f "$T/bad.txt" >/dev/null 2>"$T/err"; check $? 1 "tokenize invalid UTF-8 exit"
grep -q "offset 3" "$T/err"; check $? 0 "invalid UTF-8 message names the offset"
$BIN frobnicate 2>/dev/null; check $? 2 "unknown command"
$BIN convert "$FIX/models/tiny-qwen2" 2>/dev/null; check $? 2 "convert usage error"
exit $fail
