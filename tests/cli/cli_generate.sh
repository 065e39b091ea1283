#!/bin/sh
# run / logits / perplexity from the command line against the fixtures: greedy ids equal the
# transformers reference, seeds reproduce, perplexity 128.96 within 0.1%, bad prompts are
# clear errors.
BIN=${DSI_BIN:-bin/dsinfer}; FIX=${DSI_FIXTURES:-build/fixtures}
M=models/shakespeare-qwen2.gguf; REF=$FIX/models/shakespeare-qwen2/reference.json
T=${TMPDIR:-/tmp}/dsi-gen-$$; mkdir -p "$T"; trap 'rm -rf "$T"' EXIT
fail=0
check() { if [ "$1" != "$2" ]; then echo "FAIL: $3: got '$1', want '$2'"; fail=1; fi; }
ids() { # a JSON int array of reference.json as "a b c"
  tr -d '\n ' < "$REF" | sed -n "s/.*\"$1\":\[\([0-9,]*\)\].*/\1/p" | tr ',' ' '; }

want=$(ids gen_output); prompt=$(ids gen_prompt); n=$(echo $want | wc -w)
got=$($BIN run -m $M --prompt-ids "$prompt" -n $n --temp 0 --print-ids -t 2 2>/dev/null)
check "$got" "$want" "greedy ids equal the transformers reference"

a=$($BIN run -m $M -p "ROMEO:" -n 40 --seed 7 --temp 1 --print-ids 2>/dev/null)
b=$($BIN run -m $M -p "ROMEO:" -n 40 --seed 7 --temp 1 --print-ids 2>/dev/null)
c=$($BIN run -m $M -p "ROMEO:" -n 40 --seed 8 --temp 1 --print-ids 2>/dev/null)
check "$a" "$b" "same seed, same output"
[ "$a" != "$c" ] || { echo "FAIL: different seeds gave the same 40 tokens"; fail=1; }
check "$(echo $a | wc -w)" 40 "-n 40 generates 40 tokens"

$BIN run -m $M -p "ROMEO:" -n 5 --temp 0 >"$T/out" 2>"$T/err"; check $? 0 "run exit"
grep -q "t/s" "$T/err"; check $? 0 "speeds on stderr"
head -c 6 "$T/out" | grep -q "ROMEO:"; check $? 0 "the prompt is echoed"

ppl=$($BIN perplexity -m $M -f $FIX/models/shakespeare-qwen2/val.txt -t 2 2>/dev/null | tail -1)
case "$ppl" in "perplexity: "*) ;; *) echo "FAIL: last line '$ppl'"; fail=1;; esac
awk -v p="${ppl#perplexity: }" 'BEGIN { exit !(p > 128.96*0.999 && p < 128.96*1.001) }'
check $? 0 "perplexity $ppl within 0.1% of 128.96"

$BIN logits -m $M --prompt-ids "$prompt" -o "$T/l.bin" 2>/dev/null; check $? 0 "logits exit"
check "$(wc -c < "$T/l.bin")" $(( $(echo $prompt | wc -w) * 4096 * 4 )) "logits file size"

# stop strings end the text before them, also across token boundaries (greedy continues
# "ROMEO:\n" with "I will be a word to be a word.")
out=$($BIN run -m $M --prompt-ids "825 269" --temp 0 -n 40 --stop "a word" --no-echo 2>"$T/err")
check "$out" "I will be " "stop string"
grep -q "stop: stop string" "$T/err"; check $? 0 "stop reason"
out=$($BIN run -m $M --prompt-ids "825 269" --temp 0 -n 40 --stop "be a w" --no-echo 2>/dev/null)
check "$out" "I will " "stop string across tokens"
out=$($BIN run -m $FIX/models/tiny-qwen2 --prompt-ids "825 269" --temp 0 -n 3 --print-ids 2>/dev/null)
check "$(echo $out | wc -w)" 3 "run from a Hugging Face directory"

printf 'ROMEO: \377\376 bad' > "$T/bad.txt"
$BIN run -m $M -f "$T/bad.txt" -n 4 >/dev/null 2>"$T/err"; check $? 1 "non-UTF-8 prompt file"
grep -q "UTF-8" "$T/err"; check $? 0 "non-UTF-8 message"
$BIN run -m $M -f $FIX/models/shakespeare-qwen2/val.txt -c 64 -n 4 >/dev/null 2>"$T/err"; check $? 1 "prompt longer than the context"
grep -q "more than the context" "$T/err"; check $? 0 "context message"
$BIN run -m $M --prompt-ids "1 99999" -n 2 >/dev/null 2>"$T/err"; check $? 1 "id outside the vocabulary"
$BIN run -m "$T/none.gguf" -p x 2>"$T/err"; check $? 1 "missing model file"
$BIN run -m $M -p x --temp abc 2>/dev/null; check $? 2 "bad option value"
exit $fail
