#!/bin/sh
# dsinfer serve: the integration tests in tests/server/server_test.mjs, driven by the official
# `openai` npm client (installed here, outside the source tree, on first use) and raw HTTP.
# Needs node and npm (tools/deps.sh test installs Debian's nodejs and npm when missing).
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
cp tests/server/server_test.mjs "$dir/server_test.mjs"
node "$dir/server_test.mjs" "$BIN" "$(pwd)/models/shakespeare-qwen2.gguf"
