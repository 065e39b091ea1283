/* Synthetic models for benchmarks: a GGUF with the exact shapes and metadata of a real
 * DeepSeek model, filled with seeded random weights of realistic scale, and a real tokenizer
 * when one is given. Written tensor by tensor: a 7B file never needs its size in memory. */
#ifndef DSI_SYNTH_H
#define DSI_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dsi_synth_params {
    const char *arch;      /* r1-qwen-1.5b, r1-qwen-7b, r1-llama-8b, v2-lite, vl2-tiny */
    const char *out;       /* output .gguf */
    int type;              /* storage type of the matrices: DSI_TYPE_F16 (default), BF16, F32 */
    const char *tokenizer; /* .gguf, tokenizer.json or HF directory; NULL: a byte-level stand-in */
    uint64_t seed;
    bool progress;
    int64_t n_layer;       /* > 0: keep only this many layers (quick tests) */
    int64_t n_vocab;       /* > 0: a smaller vocabulary (quick tests; >= the tokenizer's) */
    int64_t max_rows;      /* > 0: cap every matrix's row count (ne1) at this: the real names,
                              row lengths, layer count and metadata, but not a runnable model
                              (tests of quantization type rules) */
};

/* The architecture names dsi_synth accepts, space-separated. */
const char *dsi_synth_archs(void);

enum dsi_status dsi_synth(const struct dsi_synth_params *p);

#ifdef __cplusplus
}
#endif

#endif
