/* Internals of models and contexts, shared by model.c (loading), context.c (KV cache,
 * scratch, decode) and src/models/ (one forward pass per architecture). */
#ifndef DSI_MODEL_IMPL_H
#define DSI_MODEL_IMPL_H

#include "core/arena.h"
#include "core/gguf.h"
#include "core/tensor.h"
#include "src/model.h"
#include "src/ops.h"

enum dsi_arch { DSI_ARCH_QWEN2, DSI_ARCH_LLAMA };

struct dsi_hparams {
    enum dsi_arch arch;
    int64_t n_layer, n_embd, n_ff, n_vocab, n_ctx_train;
    int n_head, n_head_kv, head_dim, head_dim_v;
    float eps;
    /* rope */
    enum dsi_rope_mode rope_mode;
    int rope_dims;
    float rope_theta;
    float rope_linear; /* linear scaling factor (1 = none) */
};

/* One decoder layer's weights; a tensor with data == NULL is absent (optional biases). */
struct dsi_layer {
    const float *attn_norm, *ffn_norm;           /* [n_embd] */
    struct dsi_tensor wq, wk, wv, wo;            /* ne [n_embd, n_head*hd] ... */
    const float *bq, *bk, *bv;                   /* optional biases */
    struct dsi_tensor w_gate, w_up, w_down;      /* SwiGLU FFN */
};

struct dsi_model {
    struct dsi_gguf *gguf;
    struct dsi_tokenizer *tok;
    struct dsi_hparams hp;
    char *name;
    struct dsi_tensor tok_embd, output;          /* output: token_embd when tied */
    const float *out_norm;
    struct dsi_layer *layers;
    float *rope_inv_freq;                        /* [rope_dims / 2] */
    float **owned;                               /* f32 copies of small non-f32 vectors */
    int n_owned;
    uint64_t n_params, weight_bytes;
};

/* Per-forward scratch, carved from the context arena; sized for n_batch tokens. */
struct dsi_scratch {
    float *x, *xn;          /* [B][n_embd] residual stream, normalized input */
    float *q, *k, *v;       /* [B][n_head*hd], [B][n_kv*hd], [B][n_kv*hd_v] */
    float *attn;            /* [B][n_head*hd_v] */
    float *tmp;             /* [B][n_embd] */
    float *gate, *up;       /* [B][n_ff] */
    float *att_scratch;     /* n_threads * (n_ctx + hd_v) */
    int32_t *pos;           /* [B] */
    struct dsi_matmul_scratch mm;
};

struct dsi_context {
    const struct dsi_model *m;
    struct dsi_context_params p;
    struct dsi_arena arena;
    struct dsi_scratch s;
    void *kv_mem;
    struct dsi_kv_view *kv; /* [n_layer] */
    float *logits;          /* [n_logits][n_vocab] */
    int64_t n_logits, logits_cap, n_past;
    dsi_layer_cb layer_cb;
    void *layer_user;
};

enum dsi_logits { DSI_LOGITS_NONE, DSI_LOGITS_LAST, DSI_LOGITS_ALL };

/* Forward passes (src/models/): evaluate T <= n_batch tokens at positions pos0.., leaving
 * the logits the mode asks for in c->logits ([T][n_vocab] for ALL, [n_vocab] for LAST). */
void dsi_forward_dense(struct dsi_context *c, const int32_t *tokens, int64_t T, int64_t pos0,
                       enum dsi_logits mode);

/* Shared blocks (src/models/blocks.c). */
void dsi_block_embed(struct dsi_context *c, const int32_t *tokens, int64_t T);
void dsi_block_attn_gqa(struct dsi_context *c, const struct dsi_layer *l, int il, int64_t T,
                        int64_t pos0);
void dsi_block_ffn_swiglu(struct dsi_context *c, const struct dsi_layer *l, int64_t T);
void dsi_block_output(struct dsi_context *c, int64_t T, enum dsi_logits mode);
void dsi_block_layer_done(struct dsi_context *c, int il, int64_t T);

#endif
