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
    struct dsi_context_params p = {.n_ctx = 0, .n_batch = 512, .n_threads = 0,
                                   .kv_type = DSI_TYPE_F16, .mla_naive = false, .n_seq = 1,
                                   .batch_invariant = false};
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
                                 hp->head_dim_v, 1.0f, false};
    size_t att = dsi_op_attention_scratch(c->p.n_threads, c->p.n_ctx, &ap);
    /* widest K among the matmuls */
    int64_t kmax = hp->n_embd > ff ? hp->n_embd : ff;
    if (o > kmax) kmax = o;
    if (hp->arch == DSI_ARCH_DEEPSEEK2) {
        int64_t H = hp->n_head, R = hp->kv_lora_rank, Rk = R + hp->rope_dims;
        TAKE(s->qa, B * (hp->q_lora_rank ? hp->q_lora_rank : 1), float);
        TAKE(s->kva, B * Rk, float);
        TAKE(s->qfull, B * H * Rk, float);
        TAKE(s->lat, B * H * R, float);
        struct dsi_attn_params al = {hp->n_head, 1, (int)Rk, (int)R, 1.0f, false};
        size_t a2 = dsi_op_attention_scratch(c->p.n_threads, c->p.n_ctx, &al);
        if (a2 > att) att = a2;
        /* per-head products quantize T * H rows of qk_nope or kv_lora */
        int64_t kh = H * (R > hp->qk_nope ? R : hp->qk_nope);
        if (kh > kmax) kmax = kh;
    }
    if (hp->n_expert) {
        int64_t X = hp->n_expert, k = hp->n_expert_used;
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
    }
    TAKE(s->att_scratch, (int64_t)att, float);
    TAKE(s->pos, B, int32_t);
    TAKE(s->tok, B, int32_t);
    TAKE(s->embd, B, const float *);
    TAKE(s->out_rows, B, int64_t);
    TAKE(c->segs, B, struct dsi_seg);
    TAKE(c->att_segs, B, struct dsi_attn_seg);
    if (kmax % DSI_XQ_BLOCK == 0) {
        s->mm.xq_bytes = (size_t)B * dsi_xq_row_bytes(kmax);
        TAKE(s->mm.xq, s->mm.xq_bytes, uint8_t);
    }
    if (dsi_kernels_gemm() && (B >= DSI_GEMM_MIN_T || c->p.batch_invariant) && kmax % 32 == 0) {
        s->mm.gemm_stride = dsi_op_gemm_scratch(kmax, B);
        TAKE(s->mm.gemm, (size_t)c->p.n_threads * s->mm.gemm_stride, uint8_t);
    }
    if (dsi_op_have_blas() && B >= DSI_BLAS_MIN_T && !c->p.batch_invariant) {
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
    if (c->p.n_seq <= 0) c->p.n_seq = 1;
    if (c->p.n_seq > 4096) {
        DSI_LOG_ERR("context: %d sequences is too many", c->p.n_seq);
        free(c);
        return DSI_ERR_LIMIT;
    }
    /* KV cache: per sequence and layer K [n_ctx][n_kv*hd] and V [n_ctx][n_kv*hd_v]; for
     * latent attention (deepseek2) one row [latent | k_pe] per position, the values a view
     * of its latent */
    size_t es = (size_t)dsi_type_traits(c->p.kv_type)->size;
    int64_t krow = (int64_t)hp->n_head_kv * hp->head_dim, vrow = (int64_t)hp->n_head_kv * hp->head_dim_v;
    bool latent = hp->arch == DSI_ARCH_DEEPSEEK2 && !c->p.mla_naive;
    if (latent) krow = hp->kv_lora_rank + hp->rope_dims, vrow = 0;
    size_t per_layer = (size_t)c->p.n_ctx * (size_t)(krow + vrow) * es;
    size_t n_views = (size_t)hp->n_layer * (size_t)c->p.n_seq;
    c->kv = calloc(n_views, sizeof *c->kv);
    c->seq_past = calloc((size_t)c->p.n_seq, sizeof *c->seq_past);
    c->kv_bytes = per_layer * n_views;
    c->kv_mem = c->kv && c->seq_past && per_layer <= SIZE_MAX / n_views ? malloc(c->kv_bytes) : NULL;
    if (!c->kv_mem) {
        DSI_LOG_ERR("context: cannot allocate a KV cache of %.1f MiB for %d x %lld tokens",
                    (double)per_layer * (double)n_views / 1048576.0, c->p.n_seq,
                    (long long)c->p.n_ctx);
        dsi_context_free(c);
        return DSI_ERR_NOMEM;
    }
    for (size_t l = 0; l < n_views; l++) {
        char *base = (char *)c->kv_mem + l * per_layer;
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
    dsi_backend_cpu_init(&c->cpu, c);
    c->gpu_from = (int)hp->n_layer;
    dsi_context_offload(c);
    *out = c;
    return DSI_OK;
}

void dsi_context_free(struct dsi_context *c) {
    if (!c) return;
    dsi_vk_backend_free(c->gpu);
    free(c->kv_mem);
    free(c->kv);
    free(c->seq_past);
    free(c->logits);
    dsi_arena_free(&c->arena);
    free(c);
}

/* Check the runs; sequences once each, positions within their caches, ids in the vocabulary. */
static enum dsi_status check_runs(const struct dsi_context *c, const struct dsi_seq_run *runs,
                                  int n_runs) {
    const struct dsi_hparams *hp = &c->m->hp;
    if (n_runs <= 0) return DSI_ERR_ARG;
    for (int i = 0; i < n_runs; i++) {
        const struct dsi_seq_run *r = &runs[i];
        if (r->seq < 0 || r->seq >= c->p.n_seq || r->n <= 0 || !r->tokens) {
            DSI_LOG_ERR("decode: run %d: sequence %d of %d, %lld tokens", i, r->seq, c->p.n_seq,
                        (long long)r->n);
            return DSI_ERR_ARG;
        }
        for (int j = 0; j < i; j++)
            if (runs[j].seq == r->seq) {
                DSI_LOG_ERR("decode: sequence %d appears in two runs", r->seq);
                return DSI_ERR_ARG;
            }
        if (r->pos < 0 || r->pos > c->seq_past[r->seq]) {
            DSI_LOG_ERR("decode: position %lld is past the %lld tokens in the cache", (long long)r->pos,
                        (long long)c->seq_past[r->seq]);
            return DSI_ERR_ARG;
        }
        if (r->n > c->p.n_ctx - r->pos) {
            DSI_LOG_ERR("decode: %lld tokens at position %lld do not fit in the context of %lld tokens",
                        (long long)r->n, (long long)r->pos, (long long)c->p.n_ctx);
            return DSI_ERR_LIMIT;
        }
        for (int64_t k = 0; k < r->n; k++)
            if (r->tokens[k] < 0 || r->tokens[k] >= hp->n_vocab) {
                DSI_LOG_ERR("decode: token id %d is outside the vocabulary (0..%lld)", r->tokens[k],
                            (long long)hp->n_vocab - 1);
                return DSI_ERR_ARG;
            }
    }
    return DSI_OK;
}

/* Evaluate the runs in passes of at most n_batch tokens; all_logits (one run only): logits
 * of every token, else of the last token of each run that asks for them. */
static enum dsi_status decode(struct dsi_context *c, const struct dsi_seq_run *runs, int n_runs,
                              bool prompt, bool all_logits) {
    const struct dsi_hparams *hp = &c->m->hp;
    enum dsi_status st = check_runs(c, runs, n_runs);
    if (st) return st;
    int64_t need = 0;
    for (int i = 0; i < n_runs; i++) need += all_logits ? runs[i].n : runs[i].logits;
    if (need > c->logits_cap) {
        float *p = realloc(c->logits, (size_t)need * (size_t)hp->n_vocab * sizeof(float));
        if (!p) {
            DSI_LOG_ERR("decode: cannot allocate logits for %lld tokens", (long long)need);
            return DSI_ERR_NOMEM;
        }
        c->logits = p;
        c->logits_cap = need;
    }
    struct dsi_matmul_scratch *mm = &c->s.mm;
    if (c->p.batch_invariant) {
        mm->gemm_min_t = prompt ? 1 : INT64_MAX;
        mm->blas_min_t = INT64_MAX;
    }
    int64_t B = c->p.n_batch, out_base = 0;
    int ri = 0;
    int64_t off = 0; /* tokens of run ri already evaluated */
    while (ri < n_runs) {
        int64_t T = 0;
        c->n_segs = 0;
        c->n_out = 0;
        c->s.has_embd = false;
        while (ri < n_runs && T < B) {
            const struct dsi_seq_run *r = &runs[ri];
            int64_t take = r->n - off < B - T ? r->n - off : B - T;
            c->segs[c->n_segs++] = (struct dsi_seg){r->seq, T, take, r->pos + off};
            memcpy(c->s.tok + T, r->tokens + off, (size_t)take * sizeof(int32_t));
            for (int64_t k = 0; k < take; k++) {
                c->s.embd[T + k] = r->embd ? r->embd[off + k] : NULL;
                c->s.has_embd |= c->s.embd[T + k] != NULL;
            }
            if (all_logits)
                for (int64_t k = 0; k < take; k++) c->s.out_rows[c->n_out++] = T + k;
            else if (r->logits && off + take == r->n)
                c->s.out_rows[c->n_out++] = T + take - 1;
            T += take;
            off += take;
            if (off == r->n) ri++, off = 0;
        }
        c->out = c->logits + (size_t)out_base * (size_t)hp->n_vocab;
        out_base += c->n_out;
        c->pass_prompt = prompt;
        c->pass_err = DSI_OK;
        switch (hp->arch) {
        case DSI_ARCH_QWEN2:
        case DSI_ARCH_LLAMA:
        case DSI_ARCH_DEEPSEEK:
        case DSI_ARCH_DEEPSEEK2: dsi_forward_dense(c, c->s.tok, T); break;
        }
        if (c->pass_err) {
            if (c->gpu && c->pass_err == DSI_ERR_DEVICE) {
                /* the device's caches are gone with it: continue on the CPU, empty */
                DSI_LOG_WRN("decode: the GPU failed (above); this context continues on the CPU "
                            "with an empty cache");
                dsi_vk_backend_free(c->gpu);
                c->gpu = NULL;
                memset(c->seq_past, 0, (size_t)c->p.n_seq * sizeof *c->seq_past);
            }
            return c->pass_err;
        }
    }
    for (int i = 0; i < n_runs; i++) c->seq_past[runs[i].seq] = runs[i].pos + runs[i].n;
    c->n_logits = need;
    return DSI_OK;
}

enum dsi_status dsi_context_decode(struct dsi_context *c, const int32_t *tokens, int64_t n,
                                   int64_t pos, bool all_logits) {
    struct dsi_seq_run r = {0, pos, tokens, n, true, NULL};
    return decode(c, &r, 1, true, all_logits);
}

enum dsi_status dsi_context_decode_embd(struct dsi_context *c, const int32_t *tokens,
                                        const float *const *embd, int64_t n, int64_t pos,
                                        bool all_logits) {
    struct dsi_seq_run r = {0, pos, tokens, n, true, embd};
    return decode(c, &r, 1, true, all_logits);
}

enum dsi_status dsi_context_decode_runs(struct dsi_context *c, const struct dsi_seq_run *runs,
                                        int n_runs, bool prompt) {
    return decode(c, runs, n_runs, prompt, false);
}

const float *dsi_context_logits(const struct dsi_context *c, int64_t i) {
    if (i < 0) i = c->n_logits - 1;
    if (i < 0 || i >= c->n_logits) return NULL;
    return c->logits + (size_t)i * (size_t)c->m->hp.n_vocab;
}

int64_t dsi_context_n_ctx(const struct dsi_context *c) { return c->p.n_ctx; }
int64_t dsi_context_n_past(const struct dsi_context *c) { return c->seq_past[0]; }
int64_t dsi_context_seq_past(const struct dsi_context *c, int seq) {
    return seq >= 0 && seq < c->p.n_seq ? c->seq_past[seq] : 0;
}
int dsi_context_n_seq(const struct dsi_context *c) { return c->p.n_seq; }
void dsi_context_seq_clear(struct dsi_context *c, int seq) {
    if (seq >= 0 && seq < c->p.n_seq) c->seq_past[seq] = 0;
}
uint64_t dsi_context_kv_bytes(const struct dsi_context *c) { return c->kv_bytes; }
const struct dsi_model *dsi_context_model(const struct dsi_context *c) { return c->m; }

void dsi_context_set_layer_cb(struct dsi_context *c, dsi_layer_cb cb, void *user) {
    c->layer_cb = cb;
    c->layer_user = user;
}
