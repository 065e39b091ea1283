/* Inference contexts: the KV cache, the scratch arena (sized once from the model and the
 * parameters), and decode(), which splits the input into batches and runs the forward pass
 * of the model's architecture. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quant/kernels.h"
#include "src/model_impl.h"

struct dsi_context_params dsi_context_default_params(void) {
    struct dsi_context_params p = {0, 512, 0, DSI_TYPE_F16, false};
    return p;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Lay out the scratch buffers; with base == NULL only count the bytes needed. */
static size_t carve(struct dsi_context *c, struct dsi_arena *a) {
    const struct dsi_hparams *hp = &c->m->hp;
    int64_t B = c->p.n_batch;
    size_t total = 0;
#define TAKE(ptr, count, type)                                                                     \
    do {                                                                                           \
        size_t bytes_ = (size_t)(count) * sizeof(type);                                            \
        total += dsi_arena_need(bytes_);                                                           \
        if (a) ptr = dsi_arena_alloc(a, bytes_);                                                   \
    } while (0)
    struct dsi_scratch *s = &c->s;
    int64_t q = (int64_t)hp->n_head * hp->head_dim, kv = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t vv = (int64_t)hp->n_head_kv * hp->head_dim_v, o = (int64_t)hp->n_head * hp->head_dim_v;
    TAKE(s->x, B * hp->n_embd, float);
    TAKE(s->xn, B * hp->n_embd, float);
    TAKE(s->tmp, B * hp->n_embd, float);
    TAKE(s->q, B * q, float);
    TAKE(s->k, B * kv, float);
    TAKE(s->v, B * vv, float);
    TAKE(s->attn, B * o, float);
    int64_t ff = hp->n_ff, shared = hp->n_ff_exp * hp->n_expert_shared;
    if (hp->n_ff_exp > ff) ff = hp->n_ff_exp;
    if (shared > ff) ff = shared;
    TAKE(s->gate, B * ff, float);
    TAKE(s->up, B * ff, float);
    struct dsi_attn_params ap = {hp->n_head, hp->n_head_kv > 0 ? hp->n_head_kv : 1, hp->head_dim,
                                 hp->head_dim_v, 1.0f};
    size_t att = dsi_op_attention_scratch(c->p.n_threads, c->p.n_ctx, &ap);
    /* widest K among the matmuls */
    int64_t kmax = hp->n_embd > ff ? hp->n_embd : ff;
    if (o > kmax) kmax = o;
    if (hp->arch == DSI_ARCH_DEEPSEEK2) {
        int64_t H = hp->n_head, R = hp->kv_lora_rank, Rk = R + hp->rope_dims, X = hp->n_expert;
        int64_t k = hp->n_expert_used;
        TAKE(s->qa, B * (hp->q_lora_rank ? hp->q_lora_rank : 1), float);
        TAKE(s->kva, B * Rk, float);
        TAKE(s->qfull, B * H * Rk, float);
        TAKE(s->lat, B * H * R, float);
        TAKE(s->router, B * (X ? X : 1), float);
        TAKE(s->sel, B * (k ? k : 1), int32_t);
        TAKE(s->sel_w, B * (k ? k : 1), float);
        TAKE(s->ex_tok, B * (k ? k : 1), int32_t);
        TAKE(s->ex_w, B * (k ? k : 1), float);
        int64_t kk = k ? k : 1, F = hp->n_ff_exp ? hp->n_ff_exp : 1;
        int64_t S = F * (hp->n_expert_shared ? hp->n_expert_shared : 1);
        TAKE(s->ex_slot, B * kk, int32_t);
        TAKE(s->ex_x, B * kk * hp->n_embd, float);
        TAKE(s->ex_g, B * kk * F, float);
        TAKE(s->ex_u, B * kk * F, float);
        TAKE(s->ex_y, B * kk * hp->n_embd, float);
        size_t rbe = dsi_xq_row_bytes(hp->n_embd), rbf = dsi_xq_row_bytes(F);
        TAKE(s->ex_xqn, (size_t)B * rbe, uint8_t);
        TAKE(s->ex_xq, (size_t)(B * kk) * (rbe > rbf ? rbe : rbf), uint8_t);
        TAKE(s->ex_xqs, (size_t)B * dsi_xq_row_bytes(S), uint8_t);
        struct dsi_attn_params al = {hp->n_head, 1, (int)Rk, (int)R, 1.0f};
        size_t a2 = dsi_op_attention_scratch(c->p.n_threads, c->p.n_ctx, &al);
        if (a2 > att) att = a2;
        /* per-head products quantize T * H rows of qk_nope or kv_lora */
        int64_t kh = H * (R > hp->qk_nope ? R : hp->qk_nope);
        if (kh > kmax) kmax = kh;
    }
    TAKE(s->att_scratch, (int64_t)att, float);
    TAKE(s->pos, B, int32_t);
    if (kmax % DSI_XQ_BLOCK == 0) {
        s->mm.xq_bytes = (size_t)B * dsi_xq_row_bytes(kmax);
        TAKE(s->mm.xq, s->mm.xq_bytes, uint8_t);
    }
    if (dsi_kernels_gemm() && B >= DSI_GEMM_MIN_T && kmax % 32 == 0) {
        s->mm.gemm_stride = dsi_op_gemm_scratch(kmax, B);
        TAKE(s->mm.gemm, (size_t)c->p.n_threads * s->mm.gemm_stride, uint8_t);
    }
    if (dsi_op_have_blas() && B >= DSI_BLAS_MIN_T) {
        s->mm.wbuf_floats = (size_t)c->p.n_threads * DSI_BLAS_BLOCK * (size_t)kmax;
        TAKE(s->mm.wbuf, s->mm.wbuf_floats, float);
    }
#undef TAKE
    return total;
}

enum dsi_status dsi_context_init(const struct dsi_model *m, const struct dsi_context_params *p,
                                 struct dsi_context **out) {
    *out = NULL;
    struct dsi_context *c = calloc(1, sizeof *c);
    if (!c) return DSI_ERR_NOMEM;
    c->m = m;
    c->p = p ? *p : dsi_context_default_params();
    const struct dsi_hparams *hp = &m->hp;
    if (c->p.n_ctx <= 0) c->p.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (c->p.n_batch <= 0) c->p.n_batch = 512;
    if (c->p.n_batch > c->p.n_ctx) c->p.n_batch = c->p.n_ctx;
    if (c->p.n_threads <= 0) c->p.n_threads = default_threads();
    if (c->p.kv_type != DSI_TYPE_F16 && c->p.kv_type != DSI_TYPE_F32) {
        DSI_LOG_ERR("context: KV cache type %s is not supported (f16, f32)",
                    dsi_type_name(c->p.kv_type));
        free(c);
        return DSI_ERR_UNSUPPORTED;
    }
    if (c->p.n_ctx > ((int64_t)1 << 24)) {
        DSI_LOG_ERR("context: n_ctx %lld is too large", (long long)c->p.n_ctx);
        free(c);
        return DSI_ERR_LIMIT;
    }
    /* KV cache: per layer K [n_ctx][n_kv*hd] and V [n_ctx][n_kv*hd_v]; for latent attention
     * (deepseek2) one row [latent | k_pe] per position, the values a view of its latent */
    size_t es = (size_t)dsi_type_traits(c->p.kv_type)->size;
    int64_t krow = (int64_t)hp->n_head_kv * hp->head_dim, vrow = (int64_t)hp->n_head_kv * hp->head_dim_v;
    bool latent = hp->arch == DSI_ARCH_DEEPSEEK2 && !c->p.mla_naive;
    if (latent) krow = hp->kv_lora_rank + hp->rope_dims, vrow = 0;
    size_t per_layer = (size_t)c->p.n_ctx * (size_t)(krow + vrow) * es;
    c->kv = calloc((size_t)hp->n_layer, sizeof *c->kv);
    c->kv_mem = c->kv ? malloc(per_layer * (size_t)hp->n_layer) : NULL;
    if (!c->kv_mem) {
        DSI_LOG_ERR("context: cannot allocate a KV cache of %.1f MiB for %lld tokens",
                    per_layer * (double)hp->n_layer / 1048576.0, (long long)c->p.n_ctx);
        dsi_context_free(c);
        return DSI_ERR_NOMEM;
    }
    for (int64_t l = 0; l < hp->n_layer; l++) {
        char *base = (char *)c->kv_mem + (size_t)l * per_layer;
        c->kv[l] = (struct dsi_kv_view){c->p.kv_type, base,
                                        base + (size_t)c->p.n_ctx * (size_t)krow * es, krow, vrow};
        if (latent) c->kv[l].v = base, c->kv[l].v_row = krow;
    }
    size_t need = carve(c, NULL);
    if (!dsi_arena_init(&c->arena, need) || carve(c, &c->arena) != need) {
        DSI_LOG_ERR("context: cannot allocate %.1f MiB of scratch", need / 1048576.0);
        dsi_context_free(c);
        return DSI_ERR_NOMEM;
    }
    c->logits_cap = 1;
    c->logits = malloc((size_t)hp->n_vocab * sizeof(float));
    if (!c->logits) {
        dsi_context_free(c);
        return DSI_ERR_NOMEM;
    }
    *out = c;
    return DSI_OK;
}

void dsi_context_free(struct dsi_context *c) {
    if (!c) return;
    free(c->kv_mem);
    free(c->kv);
    free(c->logits);
    dsi_arena_free(&c->arena);
    free(c);
}

enum dsi_status dsi_context_decode(struct dsi_context *c, const int32_t *tokens, int64_t n,
                                   int64_t pos, bool all_logits) {
    const struct dsi_hparams *hp = &c->m->hp;
    if (n <= 0) return DSI_ERR_ARG;
    if (pos < 0 || pos > c->n_past) {
        DSI_LOG_ERR("decode: position %lld is past the %lld tokens in the cache", (long long)pos,
                    (long long)c->n_past);
        return DSI_ERR_ARG;
    }
    if (n > c->p.n_ctx - pos) {
        DSI_LOG_ERR("decode: %lld tokens at position %lld do not fit in the context of %lld tokens",
                    (long long)n, (long long)pos, (long long)c->p.n_ctx);
        return DSI_ERR_LIMIT;
    }
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab) {
            DSI_LOG_ERR("decode: token id %d is outside the vocabulary (0..%lld)", tokens[i],
                        (long long)hp->n_vocab - 1);
            return DSI_ERR_ARG;
        }
    int64_t need = all_logits ? n : 1;
    if (need > c->logits_cap) {
        float *p = realloc(c->logits, (size_t)need * (size_t)hp->n_vocab * sizeof(float));
        if (!p) {
            DSI_LOG_ERR("decode: cannot allocate logits for %lld tokens", (long long)need);
            return DSI_ERR_NOMEM;
        }
        c->logits = p;
        c->logits_cap = need;
    }
    float *all = c->logits;
    for (int64_t done = 0; done < n; done += c->p.n_batch) {
        int64_t T = n - done < c->p.n_batch ? n - done : c->p.n_batch;
        /* each batch writes its logits where they belong in c->logits */
        c->logits = all_logits ? all + (size_t)done * (size_t)hp->n_vocab : all;
        /* logits: of every token, or of the very last one only */
        enum dsi_logits mode = all_logits ? DSI_LOGITS_ALL : done + T >= n ? DSI_LOGITS_LAST : DSI_LOGITS_NONE;
        switch (hp->arch) {
        case DSI_ARCH_QWEN2:
        case DSI_ARCH_LLAMA: dsi_forward_dense(c, tokens + done, T, pos + done, mode); break;
        case DSI_ARCH_DEEPSEEK2: dsi_forward_deepseek2(c, tokens + done, T, pos + done, mode); break;
        }
    }
    c->logits = all;
    c->n_logits = need;
    c->n_past = pos + n;
    return DSI_OK;
}

const float *dsi_context_logits(const struct dsi_context *c, int64_t i) {
    if (i < 0) i = c->n_logits - 1;
    if (i < 0 || i >= c->n_logits) return NULL;
    return c->logits + (size_t)i * (size_t)c->m->hp.n_vocab;
}

int64_t dsi_context_n_ctx(const struct dsi_context *c) { return c->p.n_ctx; }
int64_t dsi_context_n_past(const struct dsi_context *c) { return c->n_past; }
const struct dsi_model *dsi_context_model(const struct dsi_context *c) { return c->m; }

void dsi_context_set_layer_cb(struct dsi_context *c, dsi_layer_cb cb, void *user) {
    c->layer_cb = cb;
    c->layer_user = user;
}
