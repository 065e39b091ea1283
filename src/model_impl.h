/* Internals of models and contexts, shared by model.c (loading), context.c (KV cache,
 * scratch, decode) and src/models/ (one forward pass per architecture). */
#ifndef DSI_MODEL_IMPL_H
#define DSI_MODEL_IMPL_H

#include "core/arena.h"
#include "core/backend.h"
#include "core/gguf.h"
#include "core/tensor.h"
#include "src/model.h"
#include "src/ops.h"
#include "src/vision/vl2.h"
#include "vulkan/vk.h"

enum dsi_arch { DSI_ARCH_QWEN2, DSI_ARCH_LLAMA, DSI_ARCH_DEEPSEEK, DSI_ARCH_DEEPSEEK2 };

/* Mixture-of-experts routing (models.md 0.6). */
enum dsi_gating { DSI_GATING_SOFTMAX = 1, DSI_GATING_SIGMOID = 2 };

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
    float attn_scale;  /* softmax scale of attention scores */
    /* YaRN (deepseek2): factor 0 = none */
    float yarn_factor, yarn_beta_fast, yarn_beta_slow, yarn_log_mul;
    int64_t yarn_orig_ctx;
    /* multi-head latent attention (deepseek2); head_dim = qk_nope + qk_rope, rope_dims =
     * qk_rope, head_dim_v = the per-head value size */
    int q_lora_rank, kv_lora_rank, qk_nope;
    bool mla_legacy; /* attn_kv_b [kv_lora, n_head * (qk_nope + v)] instead of attn_k_b/v_b */
    /* mixture of experts */
    int n_expert, n_expert_used, n_expert_shared, n_group, n_group_used, n_layer_dense;
    int64_t n_ff_exp;
    enum dsi_gating gating;
    bool expert_norm;   /* renormalize the top-k weights */
    float expert_scale; /* routed scaling factor */
};

/* One decoder layer's weights; a tensor with data == NULL is absent (optional biases). */
struct dsi_layer {
    const float *attn_norm, *ffn_norm;           /* [n_embd] */
    struct dsi_tensor wq, wk, wv, wo;            /* ne [n_embd, n_head*hd] ... */
    const float *bq, *bk, *bv;                   /* optional biases */
    struct dsi_tensor w_gate, w_up, w_down;      /* SwiGLU FFN (dense layers) */
    /* MLA (deepseek2): q = wq xn, or wq_b rmsnorm(wq_a xn; q_a_norm) with q compression;
     * [latent | k_pe] = wkv_a xn; latent normed with kv_a_norm. wk_b ne [qk_nope, kv_lora,
     * n_head] (per head W_UK^T), wv_b ne [kv_lora, v, n_head] (per head W_UV); legacy files
     * have wkv_b ne [kv_lora, n_head * (qk_nope + v)] instead. */
    struct dsi_tensor wq_a, wq_b, wkv_a, wk_b, wv_b, wkv_b;
    const float *q_a_norm, *kv_a_norm;
    /* MoE: router [n_embd, n_expert] (optional selection bias), stacked experts
     * ne [K, N, n_expert], shared experts as one SwiGLU FFN */
    struct dsi_tensor router, w_gate_exps, w_up_exps, w_down_exps;
    const float *router_bias;
    struct dsi_tensor w_gate_sh, w_up_sh, w_down_sh;
    bool moe;
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
    void *repacked;                              /* repacked matrices, when not in place */
    uint64_t repacked_bytes;                     /* bytes of matrices in a repacked layout */
    /* offload: layers [gpu_from, n_layer) and, with gpu_out, the output head have their
     * weights on the device vk (NULL: none) */
    struct dsi_vk *vk;
    int gpu_from;
    bool gpu_out;
    bool gpu_experts; /* the offloaded MoE layers' routed experts are on the device too */
    struct dsi_vl2 *vl2; /* DeepSeek-VL2's vision tower and projector (NULL: text only) */
};

/* Offload to a Vulkan device as the parameters ask (src/offload.c); fails only for a bad
 * argument, a missing device is a warning and the CPU. */
enum dsi_status dsi_model_offload(struct dsi_model *m, const struct dsi_model_params *p);
/* The context's Vulkan backend for the model's offloaded layers (c->gpu); without memory for
 * it the context runs everything on the CPU, with a warning. */
void dsi_context_offload(struct dsi_context *c);

/* Per-forward scratch, carved from the context arena; sized for n_batch tokens. */
struct dsi_scratch {
    float *x, *xn;          /* [B][n_embd] residual stream, normalized input */
    float *q, *k, *v;       /* [B][n_head*hd], [B][n_kv*hd], [B][n_kv*hd_v] */
    float *attn;            /* [B][n_head*hd_v] */
    float *tmp;             /* [B][n_embd] */
    float *gate, *up;       /* [B][n_ff] */
    float *att_scratch;     /* n_threads * (n_ctx + hd_v) */
    int32_t *pos;           /* [B] */
    int32_t *tok;           /* [B] the tokens of the current pass */
    const float **embd;     /* [B] rows replacing their token's embedding (NULL: none) */
    bool has_embd;          /* some embd[t] of the current pass is set */
    int64_t *out_rows;      /* [B] tokens of the pass whose logits are wanted */
    /* deepseek2 */
    float *qa;              /* [B][q_lora_rank] */
    float *kva;             /* [B][kv_lora + qk_rope]: latent and k_pe */
    float *qfull;           /* [B][n_head * (kv_lora + qk_rope)]: absorbed queries */
    float *lat;             /* [B][n_head * kv_lora]: attention over latents */
    float *router;          /* [B][n_expert] */
    int32_t *sel;           /* [B][n_expert_used] selected experts */
    float *sel_w;           /* [B][n_expert_used] their weights */
    int32_t *ex_tok;        /* [B * n_expert_used] tokens grouped by expert */
    float *ex_w;            /* [B * n_expert_used] */
    int32_t *ex_slot;       /* [B * n_expert_used] where each selection sits in that order */
    float *ex_x;            /* [B * n_expert_used][n_embd] gathered inputs (float experts) */
    float *ex_g, *ex_u;     /* [B * n_expert_used][n_ff_exp] routed gate/up outputs */
    float *ex_y;            /* [B * n_expert_used][n_embd] routed expert outputs */
    uint8_t *ex_xqn;        /* [B] rows: the normed input quantized to 8 bits */
    uint8_t *ex_xq;         /* [B * n_expert_used] rows: gathered inputs, then down inputs */
    uint8_t *ex_xqs;        /* [B] rows: the shared experts' down inputs */
    struct dsi_matmul_scratch mm;
};


/* The CPU backend (src/backend_cpu.c): host buffers, and for a context its KV cache,
 * positions and runs (rope and cached attention need them). */
struct dsi_backend_cpu {
    struct dsi_backend base;
    struct dsi_context *c;          /* NULL: a standalone backend (no rope, cached attention) */
    float *buf[DSI_ACT_COUNT];      /* DSI_ACT_OUT of a context: its c->out */
    int n_threads;
    struct dsi_matmul_scratch *mm;
    enum dsi_status err;            /* first failure of the pass */
};
/* Over a context's scratch and KV cache. */
void dsi_backend_cpu_init(struct dsi_backend_cpu *b, struct dsi_context *c);
/* Over the caller's buffers (NULL entries: absent). */
void dsi_backend_cpu_init_host(struct dsi_backend_cpu *b, float *const buf[DSI_ACT_COUNT],
                               int n_threads, struct dsi_matmul_scratch *mm);

struct dsi_context {
    const struct dsi_model *m;
    struct dsi_context_params p;
    struct dsi_arena arena;
    struct dsi_scratch s;
    void *kv_mem;
    size_t kv_bytes;
    struct dsi_kv_view *kv; /* [n_seq][n_layer] */
    int64_t *seq_past;      /* [n_seq] */
    /* the current forward pass: its runs, and the rows whose logits go to `out` */
    struct dsi_seg *segs;   /* [B] */
    struct dsi_attn_seg *att_segs; /* [B] */
    int n_segs;
    int64_t n_out;
    float *out;
    float *logits;          /* [n_logits][n_vocab] */
    int64_t n_logits, logits_cap;
    dsi_layer_cb layer_cb;
    void *layer_user;
    /* backends: layers [0, gpu_from) and, unless gpu_out, the output head run on the CPU;
     * the rest on gpu (NULL: everything on the CPU) */
    struct dsi_backend_cpu cpu;
    struct dsi_backend *gpu;
    int gpu_from;
    bool gpu_out;
    bool gpu_experts; /* the offloaded MoE layers' routed experts are on the device too */
    bool pass_prompt; /* the current pass evaluates prompt tokens */
    enum dsi_status pass_err; /* a backend failure during the current pass */
};

/* The backend that runs layer il (il = n_layer: the output head). */
static inline struct dsi_backend *dsi_ctx_backend(struct dsi_context *c, int il) {
    if (c->gpu && (il < (int)c->m->hp.n_layer ? il >= c->gpu_from : c->gpu_out)) return c->gpu;
    return &c->cpu.base;
}

/* The KV cache of sequence seq, layer il. */
static inline struct dsi_kv_view *dsi_ctx_kv(struct dsi_context *c, int seq, int il) {
    return &c->kv[(size_t)seq * (size_t)c->m->hp.n_layer + (size_t)il];
}

/* Forward passes (src/models/): evaluate the T <= n_batch tokens of the pass (the runs in
 * c->segs), leaving the logits of rows s.out_rows[0..n_out) in c->out ([n_out][n_vocab]). */
void dsi_forward_dense(struct dsi_context *c, const int32_t *tokens, int64_t T);

/* Shared blocks (src/models/blocks.c). */
void dsi_block_embed(struct dsi_context *c, const int32_t *tokens, int64_t T);
void dsi_block_attn_gqa(struct dsi_context *c, struct dsi_backend *be, const struct dsi_layer *l,
                        int il, int64_t T);
void dsi_block_attn_mla(struct dsi_context *c, struct dsi_backend *be, const struct dsi_layer *l,
                        int il, int64_t T);
void dsi_block_ffn_swiglu(struct dsi_context *c, struct dsi_backend *be, const struct dsi_layer *l,
                          int64_t T);
/* x += MoE(rmsnorm(x)): routed experts (tokens grouped by expert) plus shared experts. */
/* x += the MoE feed-forward of rmsnorm(x) on backend be: router on be, routing on the host,
 * the experts on be (experts_here) or the routed ones on the CPU and the shared ones on be. */
void dsi_block_ffn_moe(struct dsi_context *c, struct dsi_backend *be, const struct dsi_layer *l,
                       int64_t T, bool experts_here);
/* The CPU's experts (the backend's moe op on host buffers): y += experts(xn). */
void dsi_moe_cpu(struct dsi_context *c, float *y, const float *xn, int64_t T, const int32_t *sel,
                 const float *w, const struct dsi_tensor *const exps[3],
                 const struct dsi_tensor *const sh[3]);
/* Route T rows of router logits: selected experts and weights, n_expert_used per row. */
void dsi_moe_route(const struct dsi_hparams *hp, const float *logits, const float *bias,
                   int64_t T, int32_t *sel, float *w);
/* Final norm and output head on backend be, whose residual stream holds the pass. */
void dsi_block_output(struct dsi_context *c, struct dsi_backend *be, int64_t T);
/* After layer il (-1: the embedding) on backend be: the layer callback, if any. */
void dsi_block_layer_done(struct dsi_context *c, struct dsi_backend *be, int il, int64_t T);
/* Finish the pass on every backend (c->pass_err: the first failure). */
void dsi_block_end(struct dsi_context *c);
/* Start the pass on every backend the context uses (and set s.pos for it). */
void dsi_block_begin(struct dsi_context *c, int64_t T);

#endif
