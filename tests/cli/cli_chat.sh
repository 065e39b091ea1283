#!/bin/sh
# dsinfer chat: multi-turn through the model's template with KV-cache reuse, /reset, the
# R1 <think> display (bracketed when not a terminal, hidden with --no-think-display), and
# template errors.
BIN=${DSI_BIN:-bin/dsinfer}; M=models/shakespeare-qwen2.gguf
T=${TMPDIR:-/tmp}/dsi-chat-$$; mkdir -p "$T"; trap 'rm -rf "$T"' EXIT
fail=0
check() { if [ "$1" != "$2" ]; then echo "FAIL: $3: got '$1', want '$2'"; fail=1; fi; }

printf 'Hello there\nWhat say you?\n/reset\nAgain\n' | $BIN chat -m $M -n 12 --seed 3 -v >"$T/out" 2>"$T/err"
check $? 0 "chat exit"
check "$(grep -c 'generated' "$T/err")" 3 "three replies"
check "$(grep -c 'conversation reset' "$T/err")" 1 "/reset"
# the second turn evaluates only the new tokens: fewer than the whole conversation
first=$(sed -n 's/^(\([0-9]*\) prompt tokens.*/\1/p' "$T/err" | sed -n 1p)
second=$(sed -n 's/^(\([0-9]*\) prompt tokens.*/\1/p' "$T/err" | sed -n 2p)
[ "$second" -lt $((first + 12)) ] || { echo "FAIL: no KV-cache reuse ($first then $second tokens)"; fail=1; }

printf 'hi\n' | $BIN chat -m $M --chat-template deepseek-r1 -n 4 --temp 0 >"$T/out" 2>/dev/null
check $? 0 "chat with a built-in template"
head -c 7 "$T/out" | grep -q '\[think\]'; check $? 0 "thinking is bracketed on a pipe"
printf 'hi\n' | $BIN chat -m $M --chat-template deepseek-r1 -n 4 --temp 0 --no-think-display >"$T/out" 2>/dev/null
grep -q 'think' "$T/out"; check $? 1 "--no-think-display hides it"

printf '{{ raise_exception("no system messages") }}' > "$T/bad.jinja"
printf 'hi\n' | $BIN chat -m $M --chat-template "$T/bad.jinja" -n 4 >/dev/null 2>"$T/err"
check $? 1 "a template that raises"
grep -q "no system messages" "$T/err"; check $? 0 "raise_exception message"
printf 'hi\n' | $BIN chat -m $M --chat-template nonexistent -n 4 >/dev/null 2>"$T/err"
check $? 1 "unknown template name"
grep -q "neither a built-in" "$T/err"; check $? 0 "unknown template message"
exit $fail
