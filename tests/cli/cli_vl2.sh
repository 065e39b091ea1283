#!/bin/sh
# DeepSeek-VL2 from the command line (fixtures tiny-vl2-mha / tiny-vl2-mla, made with the
# official code): convert, then `run --image` with the prompt of reference.json gives the
# reference's greedy tokens (gen_output); `logits --image` writes one row per prompt token
# (1430 = the processor's input_ids); the prompt echo shows one <image> per picture;
# --raw-prompt with the formatted text gives the same tokens; the placeholder count must
# match the images; hostile images and text-only models are clear errors; with -ngl 99 the
# vision tower runs on the Vulkan device (lavapipe in CI) and the tokens stay the same.
BIN=${DSI_BIN:-bin/dsinfer}; FIX=${DSI_FIXTURES:-build/fixtures}
T=${TMPDIR:-/tmp}/dsi-vl2-$$; mkdir -p "$T"; trap 'rm -rf "$T"' EXIT
fail=0
check() { if [ "$1" != "$2" ]; then echo "FAIL: $3: got '$1', want '$2'"; fail=1; fi; }
ref_json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1" 2>/dev/null ||
  sed -n "$3" "$1"; }

for name in tiny-vl2-mha tiny-vl2-mla; do
  D=$FIX/models/$name
  $BIN convert "$D" "$T/$name.gguf" --no-progress >/dev/null 2>&1
  check $? 0 "convert $name"
  img=$D/$(grep -o '"image": "[^"]*"' "$D/reference.json" | head -1 | sed 's/.*: "//; s/"$//')
  # the user's message of reference.json (its first conversation turn)
  content=$(grep -o '"content": "[^"]*"' "$D/reference.json" | head -1 | sed 's/.*: "//; s/"$//')
  content=$(printf '%b' "$content")
  want=$(tr -d ' \n' < "$D/reference.json" | grep -o '"gen_output":\[[0-9,]*\]' | sed 's/.*\[//; s/\]//; s/,/ /g')
  got=$($BIN run -m "$T/$name.gguf" --image "$img" -p "$content" -n 16 --temp 0 --print-ids -t 2 2>"$T/err")
  check "$got" "$want" "$name: greedy tokens from the JPEG"
  grep -q "1 image(s): 7 views" "$T/err"; check $? 0 "$name: 7 views encoded (stderr)"
  raw=$($BIN run -m "$T/$name.gguf" --image "$img" --raw-prompt -p "<|User|>: $content

<|Assistant|>:" -n 16 --temp 0 --print-ids -t 2 2>/dev/null)
  check "$raw" "$want" "$name: --raw-prompt"
done

D=$FIX/models/tiny-vl2-mha
M=$T/tiny-vl2-mha.gguf
echo=$($BIN run -m $M --image $D/monday.jpg -p "What is it?" -n 1 --temp 0 -t 2 2>/dev/null | head -2 | tr '\n' '|')
check "$echo" "<｜begin▁of▁sentence｜><|User|>: <image>|What is it?|" "the prompt echo (images first when no placeholder)"
$BIN logits -m $M --image $D/monday.jpg -p "<image>
Describe this image." -o "$T/logits.bin" -t 2 2>/dev/null
check "$(stat -c %s "$T/logits.bin" 2>/dev/null)" $((1430 * 4107 * 4)) "logits --image: 1430 rows of 4107"

# the tower on a Vulkan device (lavapipe in CI): the same greedy tokens
if $BIN devices >/dev/null 2>&1; then
  want=$($BIN run -m $M --image $D/monday.jpg -p "Describe this image." -n 8 --temp 0 --print-ids -t 2 -ngl 0 2>/dev/null)
  got=$($BIN run -m $M --image $D/monday.jpg -p "Describe this image." -n 8 --temp 0 --print-ids -t 2 -ngl 99 2>"$T/err")
  check "$got" "$want" "greedy tokens with the vision tower on the GPU"
  grep -q "and the vision tower on" "$T/err"; check $? 0 "-ngl 99 puts the vision tower on the device"
elif [ "${DSI_REQUIRE_VULKAN:-0}" = 1 ]; then
  echo "FAIL: no Vulkan device"; fail=1
fi

# errors: placeholders vs images, hostile files, a text-only model
$BIN run -m $M --image $D/monday.jpg -p "<image> and <image>" -n 1 2>"$T/err" >/dev/null
check $? 1 "two placeholders, one image: exit status"
grep -q "2 <image> placeholders for 1 images" "$T/err"; check $? 0 "placeholder count message"
head -c 5000 $D/monday.jpg > "$T/cut.jpg"
$BIN run -m $M --image "$T/cut.jpg" -p "x" -n 1 2>"$T/err" >/dev/null
check $? 1 "truncated JPEG: exit status"
grep -q "cut.jpg" "$T/err"; check $? 0 "truncated JPEG: the message names the file"
printf 'not an image' > "$T/bad.png"
$BIN run -m $M --image "$T/bad.png" -p "x" -n 1 2>"$T/err" >/dev/null
check $? 1 "garbage image: exit status"
$BIN run -m $M --image "$T/none.jpg" -p "x" -n 1 2>"$T/err" >/dev/null
check $? 1 "missing image: exit status"
$BIN run -m models/shakespeare-qwen2.gguf --image $D/monday.jpg -p "x" -n 1 2>"$T/err" >/dev/null
check $? 1 "text-only model with --image: exit status"
grep -q "needs a model with a vision encoder" "$T/err"; check $? 0 "text-only model: message"
exit $fail
