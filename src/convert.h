/* Hugging Face checkpoint -> GGUF, in C (docs/models.md A.3, B.4, D.6; docs/gguf.md 4).
 *
 * Reads config.json, the safetensors weights (single or sharded), tokenizer.json,
 * tokenizer_config.json and config.json's special ids, and writes a GGUF with llama.cpp's
 * architecture names, metadata keys, tensor names and shapes, so the file loads in
 * llama.cpp and a llama.cpp-made file loads here. Supported: Qwen2ForCausalLM (`qwen2`),
 * LlamaForCausalLM (`llama`, with llama.cpp's q/k row permutation and the rope_freqs tensor
 * for llama3 rope scaling), DeepseekV2ForCausalLM (`deepseek2`, experts stacked, kv_b split
 * into k_b/v_b as current llama.cpp does). Tensor data streams: memory use is bounded by
 * the largest tensor, not the model. */
#ifndef DSI_CONVERT_H
#define DSI_CONVERT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/dtype.h"
#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dsi_convert_params {
    const char *in_dir;    /* Hugging Face model directory */
    const char *out_path;  /* output .gguf; NULL = into memory (dsi_convert_to_memory) */
    int outtype;           /* DSI_TYPE_F32/F16/BF16, or -1 = auto (bf16 for bf16 weights,
                              else f16) */
    bool progress;         /* progress bar on stderr */
};

/* Convert to a file (written as <out>.tmp, renamed when complete). */
enum dsi_status dsi_convert(const struct dsi_convert_params *p);

/* Convert into a malloc'd GGUF image the caller frees. */
enum dsi_status dsi_convert_to_memory(const struct dsi_convert_params *p, void **mem,
                                      size_t *size);

#ifdef __cplusplus
}
#endif

#endif
