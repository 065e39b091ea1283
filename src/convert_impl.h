/* Internals shared by the converter (convert.c) and the synthetic-model writer (synth.c):
 * the hyper-parameters of a checkpoint in Hugging Face terms, and the pieces that turn them
 * into llama.cpp's GGUF metadata. */
#ifndef DSI_CONVERT_IMPL_H
#define DSI_CONVERT_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/gguf.h"
#include "src/tokenizer.h"

enum dsi_hf_arch { DSI_HF_QWEN2, DSI_HF_LLAMA, DSI_HF_DEEPSEEK2, DSI_HF_DEEPSEEK };

struct dsi_hf_hparams {
    enum dsi_hf_arch arch;
    const char *name; /* GGUF general.architecture */
    int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab, n_ctx, head_dim;
    bool has_head_dim, has_n_ctx, tie;
    double rope_theta, rms_eps;
    bool has_rope_theta, has_rms_eps;
    /* rope scaling (rope_scaling or rope_parameters) */
    char rope_type[32];
    double rope_factor, low_freq, high_freq, beta_fast, beta_slow, mscale_all_dim;
    int64_t rope_orig_ctx;
    bool has_factor, has_orig_ctx, has_beta_fast, has_beta_slow, has_mscale_all_dim;
    /* deepseek2 */
    int64_t q_lora, kv_lora, qk_nope, qk_rope, v_head, n_ff_exp, n_expert, n_expert_used,
        n_shared, first_dense, n_group, topk_group;
    bool has_n_expert, has_n_expert_used, has_n_group, has_topk_group, has_scale, norm_topk;
    double routed_scale;
    char scoring[16];
    /* DeepSeek-VL2 (DeepseekVLV2ForCausalLM): the language model above comes from
     * language_config; the vision tower, projector and image layout from the rest. */
    bool vl2;
    int64_t v_image_size, v_patch, v_width, v_layers, v_heads, v_ff, mm_in, mm_embd,
        mm_downsample, n_cand;
    int32_t cand[64][2]; /* candidate resolutions (w, h) */
};

/* Write general.*, the architecture's keys (llama.cpp's names and order) and, when tok is
 * not NULL, tokenizer.*; `name` goes to general.name. */
enum dsi_status dsi_convert_write_kv(const struct dsi_hf_hparams *h, const char *name,
                                     enum dsi_type outtype, const struct dsi_tokenizer *tok,
                                     struct dsi_gguf_writer *w);

/* llama3 rope: the divisor of each of the dim/2 frequencies (rope_freqs.weight). */
void dsi_convert_llama3_factors(const struct dsi_hf_hparams *h, int64_t dim, float *out);

/* The type llama.cpp's converter stores a tensor in (gguf.md 4.2). */
enum dsi_type dsi_convert_tensor_type(const char *name, uint32_t n_dims, int64_t ne0,
                                      enum dsi_type outtype);

#endif
