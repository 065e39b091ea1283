#!/bin/sh
# dsinfer quantize: per-tensor type choices against llama.cpp's (tests/fixtures/quant/mixes,
# made by llama.cpp's quantizer on the same thin synthetic models), quality of real
# quantizations (KL divergence from the unquantized model), llama.cpp-quantized input,
# convert --outtype q8_0, and the error paths.
BIN=${DSI_BIN:-bin/dsinfer}; FIX=${DSI_FIXTURES:-build/fixtures}; M=models/shakespeare-qwen2.gguf
T=${TMPDIR:-/tmp}/dsi-quant-$$; mkdir -p "$T"; trap 'rm -rf "$T"' EXIT
fail=0
check() { if [ "$1" != "$2" ]; then echo "FAIL: $3: got '$1', want '$2'"; fail=1; fi; }
# value of "key: v" lines from perplexity output
field() { awk -v k="$1" 'index($0, k ": ") == 1 {sub(k ": ", ""); print; exit}' "$2"; }

# 1. mixes: every llama.cpp file type on five architectures' real tensor names, shapes and
#    layer counts (the rows are capped so the files are small)
for a in r1-qwen-1.5b r1-qwen-7b r1-llama-8b v2-lite vl2-tiny; do
  $BIN synth --arch $a --vocab 2000 --max-rows 1 -o "$T/thin.gguf" 2>"$T/err"
  check $? 0 "synth --max-rows $a"
  want="$FIX/quant/mixes/$a.txt"
  for ft in $(cut -d' ' -f1 "$want" | uniq); do
    grep "^$ft " "$want" > "$T/want"
    # llama.cpp's mixes are of the language model; VL2's vision tensors (v.*, mm.*) keep
    # their type, checked below
    $BIN quantize "$T/thin.gguf" "$T/x.gguf" $ft --dry-run 2>"$T/err" |
      awk -v f=$ft '$1 !~ /^(v|mm)\./ {print f, $1, $4}' | sort > "$T/got"
    $BIN quantize "$T/thin.gguf" "$T/x.gguf" $ft --dry-run 2>"$T/err" |
      awk '$1 ~ /^(v|mm)\./ && $4 != "f16" && $4 != "f32" {print}' > "$T/vis"
    check "$(head -2 "$T/vis")" "" "$a $ft: vision tensors keep f16/f32"
    if ! cmp -s "$T/want" "$T/got"; then
      echo "FAIL: $a $ft: tensor types differ from llama.cpp's:"; diff "$T/want" "$T/got" | head -5
      fail=1
    fi
  done
done
test -f "$T/x.gguf"; check $? 1 "--dry-run writes nothing"

# 2. real quantizations of the BF16 model, judged by KL divergence from it on 4 windows
head -c 4000 "$FIX/models/shakespeare-qwen2/val.txt" > "$T/val.txt"
kl_ok() { # TYPE MAX_MEAN_KL MIN_TOP1
  $BIN quantize $M "$T/q.gguf" $1 -t 2 --no-progress 2>"$T/err"; check $? 0 "quantize $1"
  $BIN perplexity -m "$T/q.gguf" -f "$T/val.txt" --kl-divergence-base $M >"$T/ppl" 2>"$T/err"
  check $? 0 "perplexity $1"
  kl=$(field "kl divergence" "$T/ppl" | awk '{print $2}')
  [ -n "${DSI_VERBOSE:-}" ] && echo "$1: mean KL $kl"
  top=$(field "top-1 agreement" "$T/ppl" | awk '{print $1+0}')
  check "$(awk -v k="$kl" -v m="$2" -v t="$top" -v mt="$3" 'BEGIN {print (k != "" && k <= m && t >= mt) ? "ok" : "bad"}')" ok \
    "$1: mean KL $kl (max $2), top-1 $top% (min $3%)"
}
kl_ok Q8_0 0.0003 96
kl_ok Q4_K_M 0.012 88
kl_ok IQ4_XS 0.015 87
kl_ok Q4_0 0.02 85
$BIN info "$T/q.gguf" > "$T/info"
grep -q "general.file_type *= *2" "$T/info" || grep -q "general.file_type.*2" "$T/info"; check $? 0 "file_type of Q4_0"
grep -q "output.weight *q6_K" "$T/info"; check $? 0 "Q4_0 output head is q6_K (as llama.cpp)"

# 3. a file quantized by llama.cpp (Q4_K_M): our integer kernels give the perplexity of its
#    exactly dequantized weights (within 0.1%)
L="$FIX/quant/shakespeare-q4_k_m-llamacpp.gguf"
$BIN quantize "$L" "$T/deq.gguf" F32 --no-progress 2>"$T/err"; check $? 1 "requantize refused"
grep -q "allow-requantize" "$T/err"; check $? 0 "requantize message names the option"
$BIN quantize "$L" "$T/deq.gguf" F32 --allow-requantize --no-progress 2>"$T/err"; check $? 0 "dequantize to F32"
p1=$($BIN perplexity -m "$L" -f "$T/val.txt" 2>/dev/null | field perplexity /dev/stdin)
p2=$($BIN perplexity -m "$T/deq.gguf" -f "$T/val.txt" 2>/dev/null | field perplexity /dev/stdin)
check "$(awk -v a="$p1" -v b="$p2" 'BEGIN {d = a / b - 1; print (a > 0 && b > 0 && d < 0.001 && d > -0.001) ? "ok" : "bad"}')" ok \
  "llama.cpp Q4_K_M file: perplexity $p1 vs dequantized $p2"

# 4. convert --outtype q8_0
$BIN convert "$FIX/models/shakespeare-qwen2" "$T/c8.gguf" --outtype q8_0 --no-progress 2>"$T/err"
check $? 0 "convert --outtype q8_0"
grep -q "blk.0.ffn_down.weight *q8_0" "$($BIN info "$T/c8.gguf" > "$T/info"; echo "$T/info")"; check $? 0 "converted matrices are q8_0"
$BIN perplexity -m "$T/c8.gguf" -f "$T/val.txt" --kl-divergence-base $M >"$T/ppl" 2>"$T/err"
kl=$(field "kl divergence" "$T/ppl" | awk '{print $2}')
check "$(awk -v k="$kl" 'BEGIN {print (k != "" && k <= 0.0005) ? "ok" : "bad"}')" ok "convert q8_0 mean KL $kl"

# 5. errors
$BIN quantize $M "$T/e.gguf" Q9_9 2>"$T/err"; check $? 2 "unknown type exit"
grep -q "Q4_K_M" "$T/err"; check $? 0 "unknown type message lists the types"
head -c 5000 $M > "$T/trunc.gguf"
$BIN quantize "$T/trunc.gguf" "$T/e.gguf" Q8_0 --no-progress 2>"$T/err"; check $? 1 "truncated input exit"
test -f "$T/e.gguf" || test -f "$T/e.gguf.tmp"; check $? 1 "no output left behind"
$BIN quantize $M /nonexistent-dir/x.gguf Q8_0 --no-progress 2>"$T/err"; check $? 1 "unwritable output exit"
grep -q "nonexistent-dir" "$T/err"; check $? 0 "unwritable output message names the path"
$BIN synth --arch r1-qwen-1.5b --layers 1 --vocab 2000 -o "$T/v2000.gguf" 2>"$T/err"
$BIN perplexity -m $M -f "$T/val.txt" --kl-divergence-base "$T/v2000.gguf" >"$T/ppl" 2>"$T/err"
check $? 1 "--kl-divergence-base with another vocabulary exit"
grep -q "2000 vocabulary entries" "$T/err"; check $? 0 "vocabulary mismatch message"
$BIN perplexity -m $M -f "$T/val.txt" --kl-divergence-base 2>"$T/err"; check $? 2 "--kl-divergence-base without a file"
exit $fail
