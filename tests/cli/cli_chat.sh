#!/bin/sh
# dsinfer chat: multi-turn through the model's template with KV-cache reuse, /reset, the
# R1 <think> display (bracketed when not a terminal, hidden with --no-think-display),
# template errors, and DeepSeek-VL2 pictures (/image).
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

# DeepSeek-VL2: /image PATH goes with the next message (placeholders first unless it places
# them); each turn is the whole conversation in VL2's format with every picture so far, the
# cache reused as far as ids and image embeddings agree. No -t: the encoder's default threads.
FIX=${DSI_FIXTURES:-build/fixtures}; D=$FIX/models/tiny-vl2-mha; V=$T/vl2.gguf
$BIN convert $D $V --no-progress >/dev/null 2>&1; check $? 0 "convert tiny-vl2-mha"
want1=$($BIN run -m $V --image $D/monday.jpg -p "<image>
Describe this image." -n 8 --temp 0 --no-echo 2>/dev/null)
reply1=$(printf '%s' "$want1" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
want2=$($BIN run -m $V --image $D/monday.jpg --raw-prompt -p "<|User|>: <image>
Describe this image.

<|Assistant|>:$reply1<｜end▁of▁sentence｜><|User|>: And now?

<|Assistant|>:" -n 8 --temp 0 --no-echo 2>/dev/null)
printf '/image %s\nDescribe this image.\nAnd now?\n/image %s\n/image %s\nTwo <image> <image>?\nWhat about <image> this one?\n' \
  $D/monday.jpg "$T/none.jpg" $FIX/models/tiny-vl2-mla/visual_grounding_1.jpeg |
  $BIN chat -m $V --temp 0 -n 8 -v >"$T/out" 2>"$T/err"
check $? 0 "vl2 chat exit"
check "$(grep -c 'generated' "$T/err")" 3 "vl2 chat: three replies"
check "$(sed -n 1p "$T/out")" "$want1" "vl2 chat: the first reply is run --image's"
check "$(sed -n 2p "$T/out")" "$want2" "vl2 chat: the second reply is run --raw-prompt's of the conversation"
grep -q "cannot load the picture '$T/none.jpg'" "$T/err"; check $? 0 "vl2 chat: a missing picture"
grep -q "cannot build the prompt" "$T/err"; check $? 0 "vl2 chat: placeholders without pictures"
toks() { sed -n 's/^(\([0-9]*\) prompt tokens.*/\1/p' "$T/err" | sed -n "$1p"; }
check "$(toks 1)" 1430 "vl2 chat: first turn, one picture"
[ "$(toks 2)" -lt 20 ] || { echo "FAIL: vl2 chat: no cache reuse through the picture ($(toks 2))"; fail=1; }
# the second picture's 1429 tokens and the text are new; the first picture's are reused
[ "$(toks 3)" -gt 1415 ] && [ "$(toks 3)" -lt 1500 ] ||
  { echo "FAIL: vl2 chat: third turn evaluated $(toks 3) tokens"; fail=1; }
# each picture goes through the tower once: turn 1 encodes the first, turn 2 nothing, turn 3
# only the second (the conversation's image tokens are both pictures')
check "$(grep -c 'new views encoded' "$T/err")" 2 "vl2 chat: pictures encoded on two turns only"
grep -q "1 picture(s): 1415 image tokens; 7 new views" "$T/err"; check $? 0 "vl2 chat: the first picture"
grep -q "2 picture(s): 2844 image tokens; 7 new views" "$T/err"; check $? 0 "vl2 chat: only the second picture is new"
printf '/image %s\nhi\n' $D/monday.jpg | $BIN chat -m $M -n 2 >/dev/null 2>"$T/err"
check $? 0 "/image with a text-only model: exit"
grep -q "/image needs a model with a vision encoder" "$T/err"; check $? 0 "/image with a text-only model"
exit $fail
