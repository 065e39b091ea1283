/* Model quantization: GGUF in, GGUF out, with llama.cpp's per-tensor type choices for each
 * file type ("mix"), so that a file we make has the tensor types llama-quantize would give it
 * and loads in llama.cpp. The rules (llama.cpp src/llama-quant.cpp, docs/gguf.md section 5):
 * the output head (and tied token embeddings) in Q6_K, attn_v and ffn_down bumped in some
 * layers for the _M mixes, fallbacks when a row is not whole blocks. Tensor data streams in
 * chunks of rows over n_threads threads; memory use is bounded by the chunk, not the model. */
#ifndef DSI_QUANTIZE_MODEL_H
#define DSI_QUANTIZE_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/gguf.h"
#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The file types (llama_ftype values, written to general.file_type). */
enum dsi_ftype {
    DSI_FTYPE_F32 = 0,
    DSI_FTYPE_F16 = 1,
    DSI_FTYPE_Q4_0 = 2,
    DSI_FTYPE_Q4_1 = 3,
    DSI_FTYPE_Q8_0 = 7,
    DSI_FTYPE_Q5_0 = 8,
    DSI_FTYPE_Q5_1 = 9,
    DSI_FTYPE_Q2_K = 10,
    DSI_FTYPE_Q3_K_S = 11,
    DSI_FTYPE_Q3_K_M = 12,
    DSI_FTYPE_Q3_K_L = 13,
    DSI_FTYPE_Q4_K_S = 14,
    DSI_FTYPE_Q4_K_M = 15,
    DSI_FTYPE_Q5_K_S = 16,
    DSI_FTYPE_Q5_K_M = 17,
    DSI_FTYPE_Q6_K = 18,
    DSI_FTYPE_IQ4_NL = 25,
    DSI_FTYPE_IQ4_XS = 30,
    DSI_FTYPE_BF16 = 32,
};

/* Parse "Q4_K_M", "q8_0", "IQ4_XS", ... (case-insensitive). False if unknown. */
bool dsi_ftype_from_name(const char *name, enum dsi_ftype *out);
const char *dsi_ftype_name(enum dsi_ftype f);
/* Space-separated list of the names dsi_ftype_from_name accepts (for usage texts). */
const char *dsi_ftype_names(void);

struct dsi_quantize_params {
    const char *in_path, *out_path;
    enum dsi_ftype ftype;
    int n_threads;          /* <= 0: all cores */
    int output_type;        /* force output.weight's type; -1 = the mix's choice */
    int token_embd_type;    /* force token_embd.weight's type; -1 = the mix's choice */
    bool pure;              /* the default type everywhere, no per-tensor bumps */
    bool allow_requantize;  /* accept quantized input tensors (quality suffers) */
    bool progress;          /* progress bar on stderr */
    bool vision_q8;         /* DeepSeek-VL2: the vision tower's and projector's matrices whose
                               rows are whole blocks become Q8_0 (default: kept as they are) */
};

/* The output type of every tensor of `g` (types[i] for tensor i), by the mix rules. Fails
 * (with a message naming the tensor) on quantized input without allow_requantize. */
enum dsi_status dsi_quantize_plan(const struct dsi_gguf *g, const struct dsi_quantize_params *p,
                                  enum dsi_type *types);

/* Quantize in_path into out_path (written as <out>.tmp and renamed when complete). */
enum dsi_status dsi_quantize_model(const struct dsi_quantize_params *p);

#ifdef __cplusplus
}
#endif

#endif
