/* The compute backend interface: the operators of a decoder layer on activation buffers that
 * live where the backend computes (host memory for the CPU, device memory for Vulkan).
 *
 * The forward pass (src/models/) is written once against this table; the context assigns each
 * layer and the output head to a backend and moves the residual stream at the boundaries. An
 * operator names its activations by buffer (enum dsi_act) and element offset; each backend
 * holds its own set, sized for the context's batch. Weights are the model's tensors; a device
 * backend finds its copy of a weight from the host tensor or pointer it is given.
 *
 * Operators only record or run work; failures (device lost, out of memory) are latched and
 * returned by the next `get`, after which the backend does nothing until the next `begin`. */
#ifndef DSI_CORE_BACKEND_H
#define DSI_CORE_BACKEND_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rotary embedding parameters (models.md 0.4). */
enum dsi_rope_mode {
    DSI_ROPE_NEOX, /* pair (v[i], v[i + d/2]) */
    DSI_ROPE_NORM, /* pair (v[2i], v[2i + 1]) */
};

struct dsi_rope {
    enum dsi_rope_mode mode;
    int n_dims;            /* rotated dimensions: the first n_dims of each head */
    const float *inv_freq; /* [n_dims / 2]: angle_i(p) = p * inv_freq[i] (scaling included) */
    float mscale;          /* multiplier on cos and sin (YaRN magnitude), 1 otherwise */
};

/* cos/sin of p * inv_freq[i] for i < n_dims / 2: the angle rounded to f32 (as PyTorch forms
 * it), the functions evaluated in double and rounded, times mscale. Every backend rotates with
 * this table. */
static inline void dsi_rope_table(float *cs, float *sn, int32_t p, const struct dsi_rope *r) {
    for (int i = 0; i < r->n_dims / 2; i++) {
        float a = (float)p * r->inv_freq[i];
        cs[i] = (float)cos((double)a) * r->mscale;
        sn[i] = (float)sin((double)a) * r->mscale;
    }
}

struct dsi_attn_params {
    int n_head, n_head_kv;
    int head_dim, head_dim_v;
    float scale;
    bool per_key; /* CPU: no prompt path with transposed keys (batch-invariant contexts: a
                   * token's scores then never depend on how its prompt was batched) */
};

/* A run of consecutive tokens of one sequence in a forward pass: tokens [t0, t0 + n) of the
 * pass at positions pos, pos + 1, ... */
struct dsi_seg {
    int32_t seq;
    int64_t t0, n, pos;
};

/* Activation buffers, [n_batch][width] f32 rows each. */
enum dsi_act {
    DSI_ACT_X,    /* residual stream [n_embd] */
    DSI_ACT_XN,   /* normalized input [n_embd] */
    DSI_ACT_TMP,  /* [n_embd] */
    DSI_ACT_Q,    /* [n_head * head_dim] */
    DSI_ACT_K,    /* [n_head_kv * head_dim] */
    DSI_ACT_V,    /* [n_head_kv * head_dim_v] */
    DSI_ACT_ATTN, /* [n_head * head_dim_v] */
    DSI_ACT_GATE, /* [n_ff] */
    DSI_ACT_UP,   /* [n_ff] */
    /* latent attention (deepseek2): */
    DSI_ACT_QA,    /* [q_lora_rank]: compressed queries */
    DSI_ACT_KVA,   /* [kv_lora_rank + rope]: the latent and the rotary key of each token */
    DSI_ACT_QFULL, /* [n_head * (kv_lora_rank + rope)]: queries in latent space */
    DSI_ACT_LAT,   /* [n_head * kv_lora_rank]: attention output in latent space */
    DSI_ACT_ROUTER, /* [n_expert]: router logits (mixture of experts) */
    DSI_ACT_OUT,  /* logits [max_out][n_vocab] */
    DSI_ACT_COUNT
};

/* The routing of a MoE layer (models.md 0.6), for backends that route on the device: softmax
 * (or sigmoid) gating, selection bias, group limits, k experts, weights renormalized or not
 * and scaled (src/models/moe.c dsi_moe_route is the definition). */
struct dsi_moe_gate {
    int n_expert, k, n_group, n_group_used;
    bool sigmoid, norm;
    float scale;
    const float *bias; /* [n_expert] or NULL */
};

struct dsi_backend;

struct dsi_backend_ops {
    const char *name;
    /* Start a forward pass of T tokens made of the runs segs[n_segs], token t at position
     * pos[t]; prompt: the tokens are a prompt (a batch-invariant backend picks its kernels by
     * this, never by T). */
    void (*begin)(struct dsi_backend *b, const struct dsi_seg *segs, int n_segs,
                  const int32_t *pos, int64_t T, bool prompt);
    /* Finish the pass's work (the KV cache writes included); returns the first failure. */
    enum dsi_status (*end)(struct dsi_backend *b);
    /* Host memory of buffer a, when the backend computes in host memory; else NULL. */
    float *(*host)(struct dsi_backend *b, enum dsi_act a);
    /* Copy n floats from the host into buffer a at element off. */
    void (*set)(struct dsi_backend *b, enum dsi_act a, int64_t off, const float *src, int64_t n);
    /* Finish the work recorded so far and copy n floats of buffer a at element off to the
     * host. Returns the first failure since begin. */
    enum dsi_status (*get)(struct dsi_backend *b, enum dsi_act a, int64_t off, float *dst,
                           int64_t n);
    /* y = rmsnorm(x) * w over the first n elements of T rows of ld elements (the rest of a
     * row is left alone); y may be x. */
    void (*rmsnorm)(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, const float *w,
                    int64_t T, int64_t n, int64_t ld, float eps);
    /* y[i] = x W[i]^T (+ bias[i], which may be NULL) for nm <= 4 matrices of one input. */
    void (*matmul)(struct dsi_backend *b, int nm, const enum dsi_act *y, enum dsi_act x,
                   int64_t T, const struct dsi_tensor *const *W, const float *const *bias);
    /* y += x W^T (+ bias, which may be NULL): the residual stream after the attention output
     * or the down projection; may use DSI_ACT_TMP as scratch. */
    void (*matmul_add)(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, int64_t T,
                       const struct dsi_tensor *W, const float *bias);
    /* Rotate x [T][n_head * head_dim] in place at the pass's positions: dimensions
     * [dim0, dim0 + r->n_dims) of each head. */
    void (*rope)(struct dsi_backend *b, enum dsi_act x, int64_t T, int n_head, int head_dim,
                 int dim0, const struct dsi_rope *r);
    /* Store k, v of the pass into layer il's cache of each run's sequence, then causal
     * attention of q against it: out [T][n_head * head_dim_v]. v == k: the values are the
     * first head_dim_v elements of each key (latent attention; the cache holds keys only). */
    void (*attention)(struct dsi_backend *b, int il, enum dsi_act out, enum dsi_act q,
                      enum dsi_act k, enum dsi_act v, const struct dsi_attn_params *p);
    /* g = silu(g) * u, n elements. */
    void (*swiglu)(struct dsi_backend *b, enum dsi_act g, enum dsi_act u, int64_t n);
    /* y += x, n elements. */
    void (*add)(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, int64_t n);
    /* y row k = x row rows[k] (rows of width elements), k < n; y != x. */
    void (*gather)(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, const int64_t *rows,
                   int64_t n, int64_t width);
    /* Latent attention (src/models/deepseek2.c): */
    /* Per-head products with a stack W ne [K, N, n_head]: y rows of n_head * ys, x rows of
     * n_head * xs, y[t][h*ys + n] = sum_k W_h[n][k] x[t][h*xs + xo + k] for n < N; transposed:
     * W ne [N, K, n_head] used as W_h^T (a backend may not support it: DSI_ERR_UNSUPPORTED). */
    void (*matmul_heads)(struct dsi_backend *b, enum dsi_act y, int64_t ys, enum dsi_act x,
                         int64_t xs, int64_t xo, int64_t T, int n_head,
                         const struct dsi_tensor *W, bool transposed);
    /* y[t][h*ys + yo + i] = x[t][h*xs + xo + i] for i < n, h < n_head (rows of n_head * ys
     * and n_head * xs); y != x. */
    void (*copy_heads)(struct dsi_backend *b, enum dsi_act y, int64_t ys, int64_t yo,
                       enum dsi_act x, int64_t xs, int64_t xo, int64_t T, int n_head, int64_t n);
    /* Mixture of experts, after routing (models.md 0.6): x[t] += S(xn[t]) + sum_j w[t][j]
     * E_{sel[t][j]}(xn[t]) for j < k, in that order, E_e(v) = down_e(silu(gate_e v) * up_e v)
     * from the stacks exps = gate, up, down (ne [K, N, n_expert]) and S the shared experts
     * sh = gate, up, down (none when sh[0] has no data). sel, w: host arrays [T][k]. */
    void (*moe)(struct dsi_backend *b, enum dsi_act x, enum dsi_act xn, int64_t T, int k,
                const int32_t *sel, const float *w, const struct dsi_tensor *const exps[3],
                const struct dsi_tensor *const sh[3]);
    /* Route the pass's T tokens on the device from their router logits (DSI_ACT_ROUTER) for
     * the next moe call, which then gets sel = w = NULL (no round trip to the host). Returns
     * false where it does not (then the caller routes on the host). May be NULL. */
    bool (*moe_gate)(struct dsi_backend *b, int64_t T, const struct dsi_moe_gate *g,
                     const struct dsi_tensor *const exps[3]);
    /* Vision encoders (src/vision/): */
    /* y = (x - mean) / sqrt(var + eps) * w + bias per row (LayerNorm, biased variance), T rows
     * of n; y may be x. */
    void (*layernorm)(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, const float *w,
                      const float *bias, int64_t T, int64_t n, float eps);
    /* x = gelu(x) with the tanh approximation, n elements. */
    void (*gelu)(struct dsi_backend *b, enum dsi_act x, int64_t n);
    /* Every token of the pass attends to every token of the pass (no mask, no cache): out
     * [T][n_head * head_dim_v] from q [T][n_head * head_dim], k, v [T][n_head_kv * ...]. */
    void (*attention_full)(struct dsi_backend *b, enum dsi_act out, enum dsi_act q,
                           enum dsi_act k, enum dsi_act v, int64_t T,
                           const struct dsi_attn_params *p);
};

struct dsi_backend {
    const struct dsi_backend_ops *ops;
    int64_t max_out; /* rows DSI_ACT_OUT holds */
};

/* Move n floats of buffer a (element off) from backend `from` to backend `to`. */
static inline enum dsi_status dsi_backend_move(struct dsi_backend *from, struct dsi_backend *to,
                                               enum dsi_act a, int64_t off, int64_t n) {
    if (from == to) return DSI_OK;
    float *h = from->ops->host(from, a);
    if (h) {
        to->ops->set(to, a, off, h + off, n);
        return DSI_OK;
    }
    h = to->ops->host(to, a);
    DSI_ASSERT(h);
    return from->ops->get(from, a, off, h + off, n);
}

#ifdef __cplusplus
}
#endif

#endif
