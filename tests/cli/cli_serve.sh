#!/bin/sh
# dsinfer serve: the integration tests in tests/server/server_test.mjs, driven by the official
# `openai` npm client (installed here, outside the source tree, on first use) and raw HTTP.
# Then tests/server/server_vl2_test.mjs with the tiny DeepSeek-VL2 fixture (pictures as
# content parts). Needs node and npm (tools/deps.sh test installs Debian's nodejs and npm
# when missing).
set -e
BIN=${DSI_BIN:-bin/dsinfer}
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "cli_serve: node and npm are needed (apt-get install nodejs npm)"; exit 1
fi
dir=${DSI_NODE_DIR:-build/node}
mkdir -p "$dir"
if [ ! -f "$dir/node_modules/openai/package.json" ]; then
  echo "cli_serve: installing the openai npm client into $dir"
  (cd "$dir" && npm install --no-audit --no-fund --no-save --silent openai@5.23.2)
fi
cp tests/server/harness.mjs tests/server/server_test.mjs tests/server/server_vl2_test.mjs "$dir/"
fail=0
node "$dir/server_test.mjs" "$BIN" "$(pwd)/models/shakespeare-qwen2.gguf" || fail=1

# DeepSeek-VL2 (tiny-vl2-mha): the server's answers against `dsinfer run` for the same message
FIX=${DSI_FIXTURES:-build/fixtures}
case "$FIX" in /*) ;; *) FIX="$(pwd)/$FIX" ;; esac
T=${TMPDIR:-/tmp}/dsi-serve-vl2-$$; mkdir -p "$T"; trap 'rm -rf "$T"' EXIT
"$BIN" convert "$FIX/models/tiny-vl2-mha" "$T/vl2.gguf" --no-progress >/dev/null 2>&1 || {
  echo "FAIL: convert tiny-vl2-mha"; exit 1; }
img="$FIX/models/tiny-vl2-mha/monday.jpg"
"$BIN" run -m "$T/vl2.gguf" --image "$img" -p "<image>
Describe this image." -n 16 --temp 0 --no-echo -t 2 >"$T/want_image" 2>/dev/null || fail=1
"$BIN" run -m "$T/vl2.gguf" -p "hi" -n 16 --temp 0 --no-echo -t 2 >"$T/want_text" 2>/dev/null || fail=1
node "$dir/server_vl2_test.mjs" "$BIN" "$T/vl2.gguf" "$img" "$T/want_image" "$T/want_text" || fail=1
exit $fail
