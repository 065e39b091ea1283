#!/bin/sh
# Quantization quality table (docs/QUANTIZATION.md): for each type, dsinfer's quantization of
# BASE and, when a peer quantizer is given, llama.cpp's, both evaluated by dsinfer perplexity
# with --kl-divergence-base BASE. For the peer's files it also evaluates the file's exactly
# dequantized weights (dsinfer quantize --allow-requantize ... F32), which checks our integer
# kernels on foreign files.
#
#   tools/quant_quality.sh BASE.gguf TEXT [PEER_QUANTIZE_CMD] [TYPES]
# PEER_QUANTIZE_CMD is run as: CMD IN OUT TYPE (a wrapper you build outside the project around
# llama.cpp's llama_model_quantize); "" skips the peer.
set -eu
BASE=$1; TEXT=$2; PEER=${3:-}; TYPES=${4:-"Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_S Q4_K_M Q5_K_M Q6_K IQ4_XS"}
BIN=${DSI_BIN:-bin/dsinfer}; T=${TMPDIR:-/tmp}/dsi-qq-$$; mkdir -p "$T"; trap 'rm -rf "$T"' EXIT
ppl() { # MODEL -> "ppl kl_mean kl_se top1" from dsinfer perplexity
  $BIN perplexity -m "$1" -f "$TEXT" --kl-divergence-base "$BASE" 2>/dev/null | awk '
    /^kl divergence/ {kl=$4; se=$6} /^top-1/ {t=$3} /^perplexity:/ {p=$2}
    END {sub(/%/,"",t); print p, kl, se, t}'
}
echo "| type | engine | size MiB | perplexity | vs base | mean KL | top-1 % | dequantized ppl |"
echo "|---|---|---|---|---|---|---|---|"
bp=$($BIN perplexity -m "$BASE" -f "$TEXT" 2>/dev/null | awk '/^perplexity:/ {print $2}')
echo "| base | - | $(($(stat -c %s "$BASE") / 1048576)) | $bp | - | - | - | - |"
for ty in $TYPES; do
  $BIN quantize "$BASE" "$T/d.gguf" "$ty" --no-progress >/dev/null 2>&1
  set -- $(ppl "$T/d.gguf")
  printf '| %s | dsinfer | %.2f | %s | %+.3f%% | %s ± %s | %s | - |\n' "$ty" \
    "$(echo "$(stat -c %s "$T/d.gguf") / 1048576" | bc -l)" "$1" \
    "$(echo "($1 / $bp - 1) * 100" | bc -l)" "$2" "$3" "$4"
  if [ -n "$PEER" ]; then
    $PEER "$BASE" "$T/p.gguf" "$ty" >/dev/null 2>&1
    set -- $(ppl "$T/p.gguf")
    $BIN quantize "$T/p.gguf" "$T/pf.gguf" F32 --allow-requantize --no-progress >/dev/null 2>&1
    dq=$($BIN perplexity -m "$T/pf.gguf" -f "$TEXT" 2>/dev/null | awk '/^perplexity:/ {print $2}')
    printf '| %s | llama.cpp | %.2f | %s | %+.3f%% | %s ± %s | %s | %s (%+.3f%%) |\n' "$ty" \
      "$(echo "$(stat -c %s "$T/p.gguf") / 1048576" | bc -l)" "$1" \
      "$(echo "($1 / $bp - 1) * 100" | bc -l)" "$2" "$3" "$4" "$dq" \
      "$(echo "($1 / $dq - 1) * 100" | bc -l)"
  fi
done
